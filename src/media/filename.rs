//! The server's rules for a media filename (protocol.md §5.8). Clients normalise names
//! before syncing; these rules catch what a client must never send, above all a name that
//! could mean another path or another file.

use unicode_normalization::is_nfc;

/// Longest name in bytes, as on the official server (older clients send up to this).
pub(crate) const MAX_NAME_BYTES: usize = 255;

/// Why `name` is not acceptable as a media filename, or `None` if it is.
pub(crate) fn problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty")
    } else if name == "." || name == ".." {
        Some("a directory name")
    } else if name.len() > MAX_NAME_BYTES {
        Some("longer than 255 bytes")
    } else if name.contains(['/', '\\']) {
        Some("contains a path separator")
    } else if name.contains('\0') {
        Some("contains a NUL character")
    } else if !is_nfc(name) {
        // Clients normalise to NFC; two spellings of one name must not become two files.
        Some("not in Unicode NFC form")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_clients_send_are_accepted() {
        for name in [
            "cat.jpg",
            "日本語.png",
            "café.mp3",
            "a..b.jpg",
            ".hidden",
            "x y [1].svg",
        ] {
            assert_eq!(problem(name), None, "{name}");
        }
        assert_eq!(problem(&"a".repeat(255)), None);
    }

    #[test]
    fn dangerous_or_ambiguous_names_are_refused() {
        let decomposed = "cafe\u{301}.mp3";
        for name in [
            "",
            ".",
            "..",
            "a/b.jpg",
            "../x",
            "a\\b.jpg",
            "nul\0.jpg",
            decomposed,
        ] {
            assert!(problem(name).is_some(), "{name:?}");
        }
        assert!(problem(&"a".repeat(256)).is_some());
        assert!(problem(&"é".repeat(128)).is_some()); // 256 bytes
    }
}
