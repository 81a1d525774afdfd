//! Request builders shared by the unit and property tests.

use std::future::Future;
use std::io::{Read, Write};
use std::sync::OnceLock;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};

use super::Limits;

pub(super) const ONE_MIB: usize = 1024 * 1024;

pub(super) type ChunkedBody = StreamBody<
    futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, std::io::Error>>>,
>;

/// A body with no size hint, delivered in `chunk`-byte frames, like chunked transfer
/// encoding.
pub(super) fn chunked(data: &[u8], chunk: usize) -> ChunkedBody {
    let frames: Vec<_> = data
        .chunks(chunk.max(1))
        .map(|piece| Ok(Frame::data(Bytes::copy_from_slice(piece))))
        .collect();
    StreamBody::new(futures_util::stream::iter(frames))
}

/// Delivers `data` and then fails the way a dropped connection does.
pub(super) fn failing_after(data: &[u8]) -> ChunkedBody {
    let frames = vec![
        Ok(Frame::data(Bytes::copy_from_slice(data))),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset by peer",
        )),
    ];
    StreamBody::new(futures_util::stream::iter(frames))
}

pub(super) fn full(data: impl Into<Bytes>) -> Full<Bytes> {
    Full::new(data.into())
}

pub(super) fn limits(max_body: usize, max_decompressed: usize) -> Limits {
    Limits {
        max_body: max_body as u64,
        max_decompressed: max_decompressed as u64,
    }
}

pub(super) fn headers_with(name: &'static str, value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        name,
        HeaderValue::from_str(value).expect("test header value"),
    );
    headers
}

pub(super) fn sync_header_json(v: u8, k: &str, c: &str, s: &str) -> String {
    serde_json::json!({ "v": v, "k": k, "c": c, "s": s }).to_string()
}

pub(super) fn modern_headers(v: u8, k: &str, c: &str, s: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let json = sync_header_json(v, k, c, s);
    headers.insert(
        "anki-sync",
        HeaderValue::from_bytes(json.as_bytes()).expect("test header value"),
    );
    headers
}

pub(super) fn current_client_headers() -> HeaderMap {
    modern_headers(11, "hostkey123", "25.02,abcdef,linux", "Xy7Pq")
}

pub(super) fn multipart_headers(boundary: &str) -> HeaderMap {
    headers_with(
        "content-type",
        &format!("multipart/form-data; boundary={boundary}"),
    )
}

pub(super) fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 0).expect("zstd compress")
}

pub(super) fn unzstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::decode_all(data).expect("zstd decompress")
}

pub(super) fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).expect("gzip write");
    encoder.finish().expect("gzip finish")
}

pub(super) fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("gunzip");
    out
}

/// One form field. `file` mimics how legacy clients attach `data` (as a file part with a
/// content type), which multer must treat like any other field.
pub(super) struct Part<'a> {
    pub(super) name: &'a str,
    pub(super) value: &'a [u8],
    pub(super) file: bool,
}

pub(super) fn field<'a>(name: &'a str, value: &'a [u8]) -> Part<'a> {
    Part {
        name,
        value,
        file: false,
    }
}

pub(super) fn file<'a>(name: &'a str, value: &'a [u8]) -> Part<'a> {
    Part {
        name,
        value,
        file: true,
    }
}

pub(super) fn multipart(boundary: &str, parts: &[Part<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        if part.file {
            out.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n",
                    part.name, part.name
                )
                .as_bytes(),
            );
        } else {
            out.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{}\"\r\n\r\n",
                    part.name
                )
                .as_bytes(),
            );
        }
        out.extend_from_slice(part.value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

/// A single zstd frame of `blocks` × 128 KiB zeros built from RLE blocks (4 bytes each),
/// so a 1 GiB bomb costs 32 KiB and no compression time in the test.
pub(super) fn zstd_rle_bomb(blocks: usize) -> Vec<u8> {
    const BLOCK: u32 = 128 * 1024;
    let mut out = vec![0x28, 0xb5, 0x2f, 0xfd];
    // Frame header: no content size, no checksum; window 2^(10+7) = 128 KiB.
    out.extend_from_slice(&[0x00, 7 << 3]);
    for index in 0..blocks {
        let last = u32::from(index + 1 == blocks);
        let rle_block = 1 << 1;
        let header = (BLOCK << 3) | rle_block | last;
        out.extend_from_slice(&header.to_le_bytes()[..3]);
        out.push(0);
    }
    out
}

/// A single-member gzip stream of `mib` MiB of zeros with a correct trailer. The deflate
/// block for one MiB is produced once and repeated: it is byte-aligned by the sync flush
/// and its back-references only ever see zeros, so each copy inflates to another MiB.
pub(super) fn gzip_bomb(mib: u32) -> Vec<u8> {
    let zeros = vec![0u8; ONE_MIB];
    let mut compressor = flate2::Compress::new(flate2::Compression::best(), false);
    let mut block = Vec::with_capacity(64 * 1024);
    compressor
        .compress_vec(&zeros, &mut block, flate2::FlushCompress::Sync)
        .expect("deflate");
    assert_eq!(
        compressor.total_in(),
        ONE_MIB as u64,
        "block buffer too small"
    );

    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    for _ in 0..mib {
        out.extend_from_slice(&block);
    }
    // An empty final block with fixed Huffman codes.
    out.extend_from_slice(&[0x03, 0x00]);

    let mut one = flate2::Crc::new();
    one.update(&zeros);
    let mut all = flate2::Crc::new();
    all.update(&zeros);
    for _ in 1..mib {
        all.combine(&one);
    }
    out.extend_from_slice(&all.sum().to_le_bytes());
    let isize = (u64::from(mib) * ONE_MIB as u64) as u32;
    out.extend_from_slice(&isize.to_le_bytes());
    out
}

/// One runtime for all property-test cases: building one per case would dominate the run.
pub(super) fn block_on<F: Future>(future: F) -> F::Output {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .build()
                .expect("test runtime")
        })
        .block_on(future)
}

pub(super) async fn body_of(response: http::Response<Full<Bytes>>) -> Bytes {
    match response.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(never) => match never {},
    }
}
