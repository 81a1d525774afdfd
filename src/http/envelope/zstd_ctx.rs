//! zstd contexts kept per thread. Creating a context costs more than compressing a small
//! sync reply (4–5 % of the server's CPU under a load of small syncs, benches/README.md),
//! so each thread keeps one compression and one decompression context and resets it
//! between uses.

use std::cell::RefCell;
use std::io::{self, Read};

use zstd::zstd_safe::{CCtx, DCtx, ResetDirective};

/// The most output space reserved up front on the frame's word.
const PREALLOCATE: u64 = 1024 * 1024;

thread_local! {
    static COMPRESS: RefCell<Option<CCtx<'static>>> = const { RefCell::new(None) };
    static DECOMPRESS: RefCell<Option<DCtx<'static>>> = const { RefCell::new(None) };
}

/// `data` compressed at `level` in one frame.
pub(crate) fn compress(data: &[u8], level: i32) -> io::Result<Vec<u8>> {
    COMPRESS.with(|cell| {
        let mut slot = cell.borrow_mut();
        let ctx = slot.get_or_insert_with(CCtx::create);
        ctx.reset(ResetDirective::SessionAndParameters)
            .map_err(zstd_error)?;
        ctx.set_parameter(zstd::zstd_safe::CParameter::CompressionLevel(level))
            .map_err(zstd_error)?;
        let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(data.len()));
        ctx.compress2(&mut out, data).map_err(zstd_error)?;
        Ok(out)
    })
}

/// Decompress `input` (one or more frames), reading at most `limit + 1` bytes of output;
/// `None` means the output passed `limit`.
pub(crate) fn decompress_capped(input: &[u8], limit: u64) -> io::Result<Option<Vec<u8>>> {
    DECOMPRESS.with(|cell| {
        let mut slot = cell.borrow_mut();
        let ctx = slot.get_or_insert_with(DCtx::create);
        // A previous use may have stopped mid-frame (an error, the cap).
        ctx.reset(ResetDirective::SessionOnly).map_err(zstd_error)?;
        let decoder = zstd::stream::read::Decoder::with_context(input, ctx);
        // Clients state the size in the frame: one allocation instead of doubling from
        // nothing. A claimed size is only believed up to PREALLOCATE.
        let claimed = zstd::zstd_safe::get_frame_content_size(input)
            .ok()
            .flatten()
            .unwrap_or(0);
        let capacity = claimed.min(limit.saturating_add(1)).min(PREALLOCATE);
        let mut out = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
        decoder
            .take(limit.saturating_add(1))
            .read_to_end(&mut out)?;
        Ok((out.len() as u64 <= limit).then_some(out))
    })
}

fn zstd_error(code: usize) -> io::Error {
    io::Error::other(zstd::zstd_safe::get_error_name(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_survives_a_failed_use() {
        let data = b"the same context, again and again ".repeat(100);
        let packed = compress(&data, 3).expect("compress");
        assert_eq!(
            decompress_capped(&packed, 1 << 20).expect("decompress"),
            Some(data.clone())
        );
        // Stopped by the cap mid-frame, then corrupt input: the next use starts clean.
        assert_eq!(decompress_capped(&packed, 10).expect("capped"), None);
        assert!(decompress_capped(&packed[..packed.len() / 2], 1 << 20).is_err());
        assert_eq!(
            decompress_capped(&packed, 1 << 20).expect("decompress after failures"),
            Some(data.clone())
        );
        assert_eq!(
            zstd::stream::decode_all(&compress(&data, 1).expect("level 1")[..]).expect("decode"),
            data
        );
    }
}
