//! Payloads too large to hold in memory: a full upload is decompressed straight into a file
//! as it arrives, and a full download is compressed from a file as it is sent. Memory stays
//! flat in the collection's size: at most a few chunks are in flight.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use tokio::sync::mpsc;

use super::{
    legacy, modern, multipart_boundary, reject_declared_oversize, Envelope, EnvelopeError, Limits,
    ResponseBody, SyncRequest, ANKI_SYNC_HEADER, ORIGINAL_SIZE_HEADER,
};

/// Chunks in flight between the network and the (de)compressing thread.
const CHANNEL_DEPTH: usize = 8;
/// Bytes of an upload gathered before they go to the decompressing thread: loopback and LAN
/// frames are often only a few KiB, and a hand-over per frame (a wakeup, often a context
/// switch) cost more than decompressing the frame. 1 MiB, the size from which the allocator
/// maps each buffer for itself (`app::return_large_allocations`): smaller ones, allocated on
/// one thread and freed on another, stayed resident in the allocator's heaps (+20 MB after
/// the load bench's 130 uploads).
const UPLOAD_BATCH: usize = 1024 * 1024;
/// Size of the chunks a download is read and sent in.
const DOWNLOAD_CHUNK: usize = 256 * 1024;
/// zstd level for downloads: the fastest level; loopback and LAN links are rarely the
/// bottleneck, the server's CPU is (benches/README.md, full download).
const DOWNLOAD_ZSTD_LEVEL: i32 = 1;

/// A decoded file payload: kept in memory when it came in a modern envelope and decompressed
/// to at most the caller's `memory_cap`, else written to the caller's file.
#[derive(Debug)]
pub(crate) enum Received {
    Memory(Vec<u8>),
    /// This many bytes are in the file.
    File(u64),
}

impl Received {
    pub(crate) fn len(&self) -> u64 {
        match self {
            Received::Memory(bytes) => bytes.len() as u64,
            Received::File(len) => *len,
        }
    }
}

/// Decode a POST whose payload is a file (a full upload, a media zip): into memory while it
/// stays within `memory_cap` bytes, else into `dest`. Returns the request with an empty body
/// and where the payload is. Over either limit the file is left incomplete and
/// `TooLarge`/`DecompressedTooLarge` returned; the caller removes it.
pub(crate) async fn decode_post_to_file<B>(
    headers: &HeaderMap,
    mut body: B,
    limits: &Limits,
    dest: &Path,
    memory_cap: usize,
) -> Result<(SyncRequest, Received), EnvelopeError>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if let Some(value) = headers.get(ANKI_SYNC_HEADER) {
        let header = modern::parse_header(value)?;
        reject_declared_oversize(headers, &body, limits)?;
        let (sender, receiver) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
        let limit = limits.max_decompressed;
        let path = dest.to_path_buf();
        // Created here, not in the writer thread: if this request is dropped (the client hung
        // up), the caller's guard removes the file, and a writer still running only writes
        // into the removed inode instead of creating a stray file afterwards.
        let file = File::create(&path).map_err(|e| EnvelopeError::storage(&path, e))?;
        let writer = tokio::task::spawn_blocking(move || {
            let decoder = zstd::stream::read::Decoder::new(ChannelReader::new(receiver))
                .map_err(|e| EnvelopeError::Zstd(e.to_string()))?;
            let sink = Spool::new(file, memory_cap);
            write_capped(decoder, sink, &path, limit, EnvelopeError::Zstd)
        });
        let mut total: u64 = 0;
        let mut over = false;
        let mut transport = None;
        let mut writing = true;
        let mut batch = Batch::default();
        while let Some(frame) = body.frame().await {
            let data = match frame {
                Ok(frame) => match frame.into_data() {
                    Ok(data) => data,
                    Err(_) => continue,
                },
                Err(e) => {
                    transport = Some(EnvelopeError::Body(e.into().to_string()));
                    break;
                }
            };
            total = total.saturating_add(data.len() as u64);
            if total > limits.max_body {
                over = true;
                break;
            }
            // Once the writer has stopped (bad data, past the cap, a failed disk) its error
            // is the answer, but the rest of the body is still read and dropped (within the
            // body limit): a client still sending would otherwise never see the answer.
            if !writing {
                continue;
            }
            if let Some(full) = batch.push(data) {
                writing = sender.send(full).await.is_ok();
            }
        }
        if let Some(rest) = batch
            .take()
            .filter(|_| writing && transport.is_none() && !over)
        {
            let _ = sender.send(rest).await;
        }
        drop(sender);
        let written = join(writer).await;
        if over {
            return Err(EnvelopeError::TooLarge {
                limit: limits.max_body,
            });
        }
        if let Some(error) = transport {
            return Err(error);
        }
        let request = SyncRequest {
            envelope: Envelope::for_header_version(header.v),
            sync_version: header.v,
            host_key: header.k,
            session_key: header.s,
            client_version: header.c,
            body: Bytes::new(),
            legacy_media_version: None,
        };
        return Ok((request, written?));
    }
    let boundary = multipart_boundary(headers)?;
    reject_declared_oversize(headers, &body, limits)?;
    let (request, len) = legacy::decode_multipart_to_file(boundary, body, limits, dest).await?;
    Ok((request, Received::File(len)))
}

/// Gunzip (or copy) a legacy `data` part that was saved as it came, into `dest`.
pub(super) async fn finish_legacy_file(
    raw: PathBuf,
    dest: PathBuf,
    gzipped: bool,
    limit: u64,
) -> Result<u64, EnvelopeError> {
    // Both files exist before the thread starts, for the same reason as above.
    let input = File::open(&raw).map_err(|e| EnvelopeError::storage(&raw, e))?;
    let _ = std::fs::remove_file(&raw);
    let output = File::create(&dest).map_err(|e| EnvelopeError::storage(&dest, e))?;
    let task = tokio::task::spawn_blocking(move || {
        let sink = Spool::new(output, 0);
        if gzipped {
            write_capped(
                flate2::read::MultiGzDecoder::new(std::io::BufReader::new(input)),
                sink,
                &dest,
                limit,
                EnvelopeError::Gzip,
            )
        } else {
            write_capped(input, sink, &dest, limit, EnvelopeError::Body)
        }
    });
    join(task).await.map(|received| received.len())
}

/// Copy at most `limit` bytes into `out` (whose file is at `path`, for messages); one byte
/// more is `DecompressedTooLarge`.
fn write_capped(
    reader: impl Read,
    mut out: Spool,
    path: &Path,
    limit: u64,
    codec_error: fn(String) -> EnvelopeError,
) -> Result<Received, EnvelopeError> {
    let mut reader = reader.take(limit.saturating_add(1));
    let mut buffer = vec![0u8; 64 * 1024];
    let mut written: u64 = 0;
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(codec_error(e.to_string())),
        };
        written += n as u64;
        if written > limit {
            return Err(EnvelopeError::DecompressedTooLarge { limit });
        }
        out.write_all(&buffer[..n])
            .map_err(|e| EnvelopeError::storage(path, e))?;
    }
    out.finish().map_err(|e| EnvelopeError::storage(path, e))
}

/// Where a payload is written as it is decoded: memory up to `cap` bytes, then (everything)
/// the file. Media zips are mostly a few MiB; keeping them off the disk saves writing,
/// re-reading and deleting a file per zip.
struct Spool {
    memory: Vec<u8>,
    cap: usize,
    /// Until it spills.
    file: Option<File>,
    spilled: Option<BufWriter<File>>,
    written: u64,
}

impl Spool {
    fn new(file: File, cap: usize) -> Self {
        Spool {
            // Grown from 1 MiB (when it may hold that much), so every buffer it goes through
            // is mapped for itself and unmapped when freed (see `UPLOAD_BATCH`).
            memory: Vec::with_capacity(cap.min(UPLOAD_BATCH)),
            cap,
            file: Some(file),
            spilled: None,
            written: 0,
        }
    }

    fn finish(mut self) -> std::io::Result<Received> {
        match self.spilled.take() {
            Some(mut out) => {
                out.flush()?;
                Ok(Received::File(self.written))
            }
            // A caller that wants a file gets one, even for an empty payload.
            None if self.cap == 0 => Ok(Received::File(0)),
            None => Ok(Received::Memory(self.memory)),
        }
    }
}

impl Write for Spool {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.spilled.is_none() && self.memory.len() + data.len() > self.cap {
            let file = self
                .file
                .take()
                .ok_or_else(|| std::io::Error::other("the scratch file was already handed over"))?;
            let mut out = BufWriter::with_capacity(DOWNLOAD_CHUNK, file);
            out.write_all(&std::mem::take(&mut self.memory))?;
            self.spilled = Some(out);
        }
        match &mut self.spilled {
            Some(out) => out.write_all(data)?,
            None => self.memory.extend_from_slice(data),
        }
        self.written += data.len() as u64;
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.spilled.as_mut().map_or(Ok(()), |out| out.flush())
    }
}

async fn join<T: Send + 'static>(
    task: tokio::task::JoinHandle<Result<T, EnvelopeError>>,
) -> Result<T, EnvelopeError> {
    match task.await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(EnvelopeError::Body(format!("cancelled: {e}"))),
    }
}

/// Frames of a body gathered into chunks of at least [`UPLOAD_BATCH`] bytes.
#[derive(Default)]
struct Batch {
    pending: bytes::BytesMut,
}

impl Batch {
    /// Add a frame; a chunk comes back once enough has gathered. A frame that is a chunk by
    /// itself, with nothing pending, passes through without a copy.
    fn push(&mut self, frame: Bytes) -> Option<Bytes> {
        if self.pending.is_empty() && frame.len() >= UPLOAD_BATCH {
            return Some(frame);
        }
        if self.pending.is_empty() {
            // One buffer of the whole batch, not a series of doublings up to it.
            self.pending.reserve(UPLOAD_BATCH);
        }
        self.pending.extend_from_slice(&frame);
        (self.pending.len() >= UPLOAD_BATCH).then(|| self.pending.split().freeze())
    }

    /// What is left at the end of the body.
    fn take(&mut self) -> Option<Bytes> {
        (!self.pending.is_empty()).then(|| self.pending.split().freeze())
    }
}

/// A blocking `Read` over chunks arriving from the async side.
struct ChannelReader {
    receiver: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl ChannelReader {
    fn new(receiver: mpsc::Receiver<Bytes>) -> Self {
        ChannelReader {
            receiver,
            current: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.receiver.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// A file as a successful response in the request's envelope, streamed: zstd-compressed on
/// the fly with `anki-original-size` for modern clients, as it is for legacy ones.
pub(crate) fn encode_file(
    envelope: &Envelope,
    file: File,
    len: u64,
) -> Result<Response<ResponseBody>, EnvelopeError> {
    let (sender, receiver) = mpsc::channel::<std::io::Result<Bytes>>(CHANNEL_DEPTH);
    let compress = *envelope == Envelope::Modern;
    tokio::task::spawn_blocking(move || {
        let result = if compress {
            send_compressed(file, &sender)
        } else {
            send_plain(file, &sender)
        };
        if let Err(e) = result {
            // The client sees a truncated body and fails the download; the log says why.
            tracing::warn!("sending a file failed: {e}");
            let _ = sender.blocking_send(Err(e));
        }
    });
    let mut builder = Response::builder().status(StatusCode::OK);
    if compress {
        builder = builder.header(ORIGINAL_SIZE_HEADER, original_size(len)?);
    } else {
        builder = builder.header(http::header::CONTENT_LENGTH, len);
    }
    builder
        .body(StreamBody::new(frames(receiver)).boxed_unsync())
        .map_err(|e| EnvelopeError::Encode(e.to_string()))
}

/// A file whose zstd-compressed copy is already on disk (a cached full download), streamed
/// without compressing anything: modern clients get `compressed` with `anki-original-size`,
/// legacy ones the plain `file`.
pub(crate) fn encode_precompressed_file(
    envelope: &Envelope,
    file: File,
    len: u64,
    compressed: File,
) -> Result<Response<ResponseBody>, EnvelopeError> {
    let mut builder = Response::builder().status(StatusCode::OK);
    let source = if *envelope == Envelope::Modern {
        builder = builder.header(ORIGINAL_SIZE_HEADER, original_size(len)?);
        compressed
    } else {
        builder = builder.header(http::header::CONTENT_LENGTH, len);
        file
    };
    let (sender, receiver) = mpsc::channel::<std::io::Result<Bytes>>(CHANNEL_DEPTH);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = send_plain(source, &sender) {
            tracing::warn!("sending a file failed: {e}");
            let _ = sender.blocking_send(Err(e));
        }
    });
    builder
        .body(StreamBody::new(frames(receiver)).boxed_unsync())
        .map_err(|e| EnvelopeError::Encode(e.to_string()))
}

/// A download small enough to hold in memory, prepared for the request's envelope off the
/// async runtime: zstd-compressed (at the download level) for the v11 envelope, as it is
/// for the legacy one.
#[derive(Debug)]
pub(crate) struct Packed {
    body: Bytes,
    /// `anki-original-size`, for a compressed body.
    original: Option<u32>,
}

/// Prepare `body` for `envelope`; blocking work (compression), for the blocking pool.
pub(crate) fn pack(envelope: &Envelope, body: Vec<u8>) -> Result<Packed, EnvelopeError> {
    if *envelope != Envelope::Modern {
        return Ok(Packed {
            body: Bytes::from(body),
            original: None,
        });
    }
    let original = original_size(body.len() as u64)?;
    let compressed = super::zstd_ctx::compress(&body, DOWNLOAD_ZSTD_LEVEL)
        .map_err(|e| EnvelopeError::Encode(format!("zstd: {e}")))?;
    Ok(Packed {
        body: Bytes::from(compressed),
        original: Some(original),
    })
}

/// The response carrying a packed body.
pub(crate) fn encode_packed(packed: Packed) -> Result<Response<ResponseBody>, EnvelopeError> {
    let mut builder = Response::builder().status(StatusCode::OK);
    if let Some(original) = packed.original {
        builder = builder.header(ORIGINAL_SIZE_HEADER, original);
    }
    builder
        .body(
            http_body_util::Full::new(packed.body)
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .map_err(|e| EnvelopeError::Encode(e.to_string()))
}

/// The chunks a sending thread produces, as response body frames.
fn frames(
    receiver: mpsc::Receiver<std::io::Result<Bytes>>,
) -> impl futures_util::Stream<Item = std::io::Result<http_body::Frame<Bytes>>> {
    futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver
            .recv()
            .await
            .map(|item| (item.map(http_body::Frame::data), receiver))
    })
}

fn original_size(len: u64) -> Result<u32, EnvelopeError> {
    u32::try_from(len).map_err(|_| {
        EnvelopeError::Encode(format!(
            "a {len}-byte file is too large for anki-original-size (u32)"
        ))
    })
}

fn send_plain(
    mut file: File,
    sender: &mpsc::Sender<std::io::Result<Bytes>>,
) -> std::io::Result<()> {
    loop {
        let mut buffer = vec![0u8; DOWNLOAD_CHUNK];
        let n = file.read(&mut buffer)?;
        if n == 0 {
            return Ok(());
        }
        buffer.truncate(n);
        if sender.blocking_send(Ok(Bytes::from(buffer))).is_err() {
            return Ok(()); // the client went away
        }
    }
}

fn send_compressed(
    file: File,
    sender: &mpsc::Sender<std::io::Result<Bytes>>,
) -> std::io::Result<()> {
    let sink = ChannelWriter {
        sender,
        buffer: Vec::with_capacity(DOWNLOAD_CHUNK),
    };
    let mut encoder = zstd::stream::write::Encoder::new(sink, DOWNLOAD_ZSTD_LEVEL)?;
    std::io::copy(
        &mut std::io::BufReader::with_capacity(DOWNLOAD_CHUNK, file),
        &mut encoder,
    )?;
    let mut sink = encoder.finish()?;
    sink.flush()
}

/// A blocking `Write` that hands full chunks to the async side.
struct ChannelWriter<'a> {
    sender: &'a mpsc::Sender<std::io::Result<Bytes>>,
    buffer: Vec<u8>,
}

impl Write for ChannelWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= DOWNLOAD_CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(DOWNLOAD_CHUNK));
        self.sender
            .blocking_send(Ok(Bytes::from(chunk)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_keep_every_byte_in_order_and_are_full_but_the_last() {
        let mut seed = 7u64;
        let mut sent = Vec::new();
        let mut chunks = Vec::new();
        let mut batch = Batch::default();
        for i in 0..300 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Mostly small frames, now and then one past a whole batch.
            let len = if i % 50 == 0 {
                UPLOAD_BATCH + 3
            } else {
                (seed >> 33) as usize % 20_000
            };
            let frame: Vec<u8> = (0..len).map(|j| (i + j) as u8).collect();
            sent.extend_from_slice(&frame);
            chunks.extend(batch.push(Bytes::from(frame)));
        }
        let last = batch.take();
        assert!(chunks.iter().all(|c| c.len() >= UPLOAD_BATCH));
        assert!(last.as_ref().is_some_and(|l| l.len() < UPLOAD_BATCH));
        chunks.extend(last);
        assert_eq!(chunks.concat(), sent);
        assert_eq!(batch.take(), None);
    }

    /// Write `chunks` through a spool with `cap` into a fresh file; returns what the spool
    /// reports and the file's bytes.
    fn spooled(cap: usize, chunks: &[&[u8]]) -> (Received, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("body");
        let mut spool = Spool::new(File::create(&path).unwrap(), cap);
        for chunk in chunks {
            spool.write_all(chunk).unwrap();
        }
        (spool.finish().unwrap(), std::fs::read(&path).unwrap())
    }

    #[test]
    fn a_spool_keeps_a_small_body_in_memory_and_moves_a_larger_one_whole_to_the_file() {
        let (received, file) = spooled(10, &[b"abcd", b"efghij"]);
        assert!(matches!(&received, Received::Memory(m) if m == b"abcdefghij"));
        assert!(file.is_empty());

        let (received, file) = spooled(10, &[b"abcd", b"efghij", b"k", b"lmn"]);
        assert!(matches!(received, Received::File(14)));
        assert_eq!(file, b"abcdefghijklmn");

        // A cap of 0 always means a file, even for nothing.
        assert!(matches!(spooled(0, &[]).0, Received::File(0)));
        let (received, file) = spooled(0, &[b"x"]);
        assert!(matches!(received, Received::File(1)));
        assert_eq!(file, b"x");
    }

    #[test]
    fn a_large_frame_with_nothing_pending_is_not_copied() {
        let frame = Bytes::from(vec![1u8; UPLOAD_BATCH]);
        let passed = Batch::default().push(frame.clone());
        assert_eq!(passed.map(|p| p.as_ptr()), Some(frame.as_ptr()));
    }
}
