//! Both digests of a media file, taken in one pass over its bytes: SHA-1 is what clients
//! compare files by, blake3 is the key of the file's blob in the store.

use std::io::{self, Write};

use sha1::{Digest, Sha1};

/// A `Write` sink that hashes what goes through it.
#[derive(Default)]
pub(crate) struct Digests {
    sha1: Sha1,
    blake3: blake3::Hasher,
}

impl Digests {
    /// (SHA-1, blake3) of everything written.
    pub(crate) fn finish(self) -> ([u8; 20], [u8; 32]) {
        (self.sha1.finalize().into(), self.blake3.finalize().into())
    }
}

impl Write for Digests {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.sha1.update(data);
        self.blake3.update(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
