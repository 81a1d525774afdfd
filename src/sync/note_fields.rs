//! Derived note columns: `notes.sfld` (sort field) and `notes.csum` (first
//! field checksum).
//!
//! Notes arriving through normal sync carry `""` in both columns; the
//! receiver has to recompute them (spec `collection.md` §2.2, §4.1). When we
//! materialise a collection file for a full download, these values must be
//! byte-for-byte what the official client would have written, because the
//! client uses `csum` for duplicate detection and `sfld` for browser sorting
//! and never recomputes them after a full download.
//!
//! This module owns three pieces of behaviour, each mirroring the official
//! client (checked against Anki 26.9.3 by `tests/fixtures/note_fields.json`):
//!
//! * field clean-up applied on the sync path before anything is derived
//!   (ASCII control characters other than tab and newline are dropped; no NFC
//!   normalisation happens on that path);
//! * HTML stripping that keeps media filenames
//!   ([`strip_html_preserving_media_filenames`]);
//! * SQLite's INTEGER-affinity conversion of the stripped sort field, which
//!   the client gets implicitly by binding text to the `integer`-declared
//!   `sfld` column ([`SortValue`]).

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;
use sha1::{Digest, Sha1};

/// What ends up stored in `notes.sfld`.
///
/// The official client always binds the stripped sort field as text, but the
/// column is declared `integer`, so SQLite's affinity rules turn numeric
/// looking text into INTEGER or REAL. Writers of collection files should bind
/// the matching SQLite type so the file is identical whatever SQLite version
/// (and float parser) they link against.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SortValue {
    Int(i64),
    Real(f64),
    Text(String),
}

/// Media references inside HTML tags. The filename is kept (with a space on
/// each side) so that sorting and duplicate checks still see it after the
/// tags are removed. Exactly one of the three groups participates in a match
/// (double-quoted, single-quoted or bare attribute value), so the replacement
/// `${1}${2}${3}` yields the filename alone.
static MEDIA_TAG: LazyLock<Option<Regex>> = LazyLock::new(|| {
    compile(concat!(
        r"(?si)",
        // An opening media tag.
        r"<\b(?:img|audio|video|object|source)\b",
        // Lazily skip attributes; quoted runs may contain `>`.
        r#"(?:[^>]|"[^"]+?"|'[^']+?')+?"#,
        // The attribute naming the file.
        r"\b(?:src|data)\b=",
        r#"(?:"([^"]+?)"[^>]*>"#,
        r"|'([^']+?)'[^>]*>",
        r"|([^\x20>]+?)(?:\x20[^>]*>|>))",
    ))
});

/// Comments, style and script blocks (removed with their content), and then
/// any other tag. Non-greedy and case-insensitive, dot matching newlines, as
/// the client does; this is deliberately not a real HTML parser, because
/// matching the client's output exactly matters more than being right.
static HTML_TAG: LazyLock<Option<Regex>> = LazyLock::new(|| {
    compile(concat!(
        r"(?si)",
        r"(<!--.*?-->)|(<style.*?>.*?</style>)|(<script.*?>.*?</script>)",
        r"|(<.*?>)",
    ))
});

/// The patterns are constants covered by the tests, so a compile failure
/// is a programming error; `None` (treated as "never matches") keeps the
/// no-panic rule and the fixture test would catch it at once.
fn compile(pattern: &str) -> Option<Regex> {
    Regex::new(pattern).ok()
}

fn replace_all<'t>(re: &Option<Regex>, text: &'t str, rep: &str) -> Cow<'t, str> {
    match re {
        Some(re) => re.replace_all(text, rep),
        None => Cow::Borrowed(text),
    }
}

/// Characters the client removes from every field before saving a note,
/// sync included. The field separator U+001F is one of them, which is why
/// fields are split first.
fn is_invalid_field_char(c: char) -> bool {
    c.is_ascii_control() && c != '\n' && c != '\t'
}

fn clean_field(field: &str) -> Cow<'_, str> {
    if field.contains(is_invalid_field_char) {
        Cow::Owned(field.replace(is_invalid_field_char, ""))
    } else {
        Cow::Borrowed(field)
    }
}

/// The fields as the client stores a note it receives: each field without the control
/// characters above, joined again by U+001F.
pub(crate) fn clean_fields(fields: &str) -> String {
    fields
        .split('\x1f')
        .map(clean_field)
        .collect::<Vec<_>>()
        .join("\x1f")
}

/// Removes HTML while keeping the filenames of media references, then decodes
/// entities. Mirrors the client's stripping used for `sfld`, `csum` and
/// duplicate checks.
pub(crate) fn strip_html_preserving_media_filenames(html: &str) -> Cow<'_, str> {
    // Every pattern of both regexes starts at a `<`: plain text skips them (most fields).
    if !html.contains('<') {
        return decode_entities(html);
    }
    let with_names = replace_all(&MEDIA_TAG, html, " ${1}${2}${3} ");
    let stripped = match with_names {
        Cow::Borrowed(s) => replace_all(&HTML_TAG, s, ""),
        Cow::Owned(s) => Cow::Owned(replace_all(&HTML_TAG, &s, "").into_owned()),
    };
    match stripped {
        Cow::Borrowed(s) => decode_entities(s),
        Cow::Owned(s) => match decode_entities(&s) {
            Cow::Borrowed(_) => Cow::Owned(s),
            Cow::Owned(decoded) => Cow::Owned(decoded),
        },
    }
}

/// Entity decoding is all-or-nothing, as in the client (which uses the same
/// `htmlescape` crate): one unknown or malformed entity anywhere (for example
/// `&apos;`, which is not in its HTML 4 table, or a bare `&`) leaves the whole
/// text undecoded, and only a successful decode turns U+00A0 into a space.
fn decode_entities(text: &str) -> Cow<'_, str> {
    if !text.contains('&') {
        return Cow::Borrowed(text);
    }
    match htmlescape::decode_html(text) {
        Ok(decoded) => Cow::Owned(decoded.replace('\u{a0}', " ")),
        Err(_) => Cow::Borrowed(text),
    }
}

/// `sfld` for a note whose fields are joined by U+001F and whose notetype
/// sorts on field `sort_index`. An out-of-range index gives an empty sort
/// field, as in the client.
pub(crate) fn sort_field(fields: &str, sort_index: usize) -> SortValue {
    let field = fields.split('\x1f').nth(sort_index).unwrap_or("");
    let cleaned = clean_field(field);
    let stripped = strip_html_preserving_media_filenames(&cleaned);
    integer_affinity(&stripped)
}

/// `csum`: the first four bytes (big-endian) of the SHA-1 of the stripped
/// first field. Returned as i64 because that is how SQLite stores it.
pub(crate) fn first_field_checksum(fields: &str) -> i64 {
    let first = fields.split('\x1f').next().unwrap_or("");
    let cleaned = clean_field(first);
    let stripped = strip_html_preserving_media_filenames(&cleaned);
    let digest = Sha1::digest(stripped.as_bytes());
    let bytes = [digest[0], digest[1], digest[2], digest[3]];
    i64::from(u32::from_be_bytes(bytes))
}

/// SQLite's whitespace set for numeric conversion (`sqlite3Isspace`).
fn is_sqlite_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// What SQLite stores when text is bound to a column with INTEGER affinity:
/// a well-formed integer literal (surrounding ASCII whitespace allowed)
/// becomes INTEGER if it fits in i64 and REAL otherwise; a well-formed real
/// literal becomes INTEGER when its value is exactly integral and strictly
/// inside the i64 range, else REAL; anything else stays TEXT unchanged.
fn integer_affinity(text: &str) -> SortValue {
    let bytes = text.as_bytes();
    let start = bytes
        .iter()
        .position(|&b| !is_sqlite_space(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| !is_sqlite_space(b))
        .map_or(start, |i| i + 1);
    let core = &text[start..end];
    match classify_number(core.as_bytes()) {
        NumberShape::NotNumber => SortValue::Text(text.to_owned()),
        NumberShape::Integer => match core.parse::<i64>() {
            Ok(i) => SortValue::Int(i),
            // Too large for i64: SQLite falls back to REAL, and such a value
            // is outside the range where it would be turned back into an int.
            Err(_) => core
                .parse::<f64>()
                .map_or_else(|_| SortValue::Text(text.to_owned()), SortValue::Real),
        },
        NumberShape::Real => match core.parse::<f64>() {
            Ok(r) => real_to_value(r),
            Err(_) => SortValue::Text(text.to_owned()),
        },
    }
}

/// SQLite keeps a REAL only when converting it to an integer would lose
/// information; the bounds are exclusive, as in `sqlite3VdbeIntegerAffinity`.
fn real_to_value(r: f64) -> SortValue {
    // 2^63 as f64; every integral f64 strictly between -2^63 and 2^63 fits.
    const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
    if r.is_finite() && r.fract() == 0.0 && r > -TWO_POW_63 && r < TWO_POW_63 {
        // Exact: r is integral and in range, so the cast cannot saturate.
        #[allow(clippy::cast_possible_truncation)]
        let i = r as i64;
        SortValue::Int(i)
    } else {
        SortValue::Real(r)
    }
}

enum NumberShape {
    NotNumber,
    /// Digits only (with optional sign): SQLite's "pure integer" literal.
    Integer,
    /// Has a decimal point and/or an exponent.
    Real,
}

/// The literal grammar accepted by `sqlite3AtoF` for a whole string:
/// `[+-]? digits? ('.' digits?)? ([eE] [+-]? digits)?` with at least one
/// mantissa digit. Hex, `inf`, `nan` and digit separators are not numbers to
/// SQLite, so they are rejected here before Rust's more lenient parser runs.
fn classify_number(s: &[u8]) -> NumberShape {
    let mut i = 0;
    if matches!(s.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let int_start = i;
    while s.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let mut digits = i - int_start;
    let mut is_real = false;
    if s.get(i) == Some(&b'.') {
        is_real = true;
        i += 1;
        let frac_start = i;
        while s.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        digits += i - frac_start;
    }
    if digits == 0 {
        return NumberShape::NotNumber;
    }
    if matches!(s.get(i), Some(b'e' | b'E')) {
        is_real = true;
        i += 1;
        if matches!(s.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp_start = i;
        while s.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == exp_start {
            return NumberShape::NotNumber;
        }
    }
    if i != s.len() {
        NumberShape::NotNumber
    } else if is_real {
        NumberShape::Real
    } else {
        NumberShape::Integer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_checksums() {
        // Values from the client's own unit tests.
        assert_eq!(first_field_checksum("test"), 2_840_236_005);
        assert_eq!(first_field_checksum("今日"), 1_464_653_051);
    }

    #[test]
    fn stripping() {
        assert_eq!(
            strip_html_preserving_media_filenames("<img src=foo.jpg>"),
            " foo.jpg "
        );
        assert_eq!(
            strip_html_preserving_media_filenames("<img src='foo.jpg'><html>"),
            " foo.jpg "
        );
        assert_eq!(strip_html_preserving_media_filenames("<html>"), "");
        assert_eq!(
            strip_html_preserving_media_filenames("a&amp;b&nbsp;c"),
            "a&b c"
        );
        assert_eq!(
            strip_html_preserving_media_filenames("a&apos;b&amp;"),
            "a&apos;b&amp;"
        );
        assert!(matches!(
            strip_html_preserving_media_filenames("plain"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn affinity() {
        assert_eq!(integer_affinity(" 12 "), SortValue::Int(12));
        assert_eq!(integer_affinity("007"), SortValue::Int(7));
        assert_eq!(integer_affinity("1e3"), SortValue::Int(1000));
        assert_eq!(integer_affinity("3.5"), SortValue::Real(3.5));
        assert_eq!(integer_affinity("0x10"), SortValue::Text("0x10".into()));
        assert_eq!(integer_affinity("inf"), SortValue::Text("inf".into()));
        assert_eq!(integer_affinity(""), SortValue::Text(String::new()));
        assert_eq!(integer_affinity("."), SortValue::Text(".".into()));
        assert_eq!(
            integer_affinity("9223372036854775807"),
            SortValue::Int(i64::MAX)
        );
        assert_eq!(
            integer_affinity("9223372036854775808"),
            SortValue::Real(9_223_372_036_854_775_808.0)
        );
    }

    /// One case of `tests/fixtures/note_fields.json`, produced by the real
    /// client with `tests/fixtures/make_note_fields.py`.
    struct Case {
        fields: String,
        sortf: usize,
        expected: SortValue,
        csum: i64,
    }

    fn load_cases() -> Vec<Case> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/note_fields.json"
        );
        let text = std::fs::read_to_string(path).expect("fixture readable");
        let json: serde_json::Value = serde_json::from_str(&text).expect("fixture is JSON");
        let cases = json.as_array().expect("fixture is a list");
        cases
            .iter()
            .map(|c| {
                let sfld = &c["sfld"];
                let expected = match c["sfld_type"].as_str().expect("sfld_type") {
                    "integer" => SortValue::Int(sfld.as_i64().expect("int sfld")),
                    // Reals are stored as Python repr() so inf and exact
                    // digits survive JSON.
                    "real" => SortValue::Real(
                        sfld.as_str()
                            .expect("real sfld as repr")
                            .parse()
                            .expect("float repr"),
                    ),
                    "text" => SortValue::Text(sfld.as_str().expect("text sfld").to_owned()),
                    other => panic!("unexpected sfld_type {other}"),
                };
                Case {
                    fields: c["fields"].as_str().expect("fields").to_owned(),
                    sortf: usize::try_from(c["sortf"].as_u64().expect("sortf")).expect("usize"),
                    expected,
                    csum: c["csum"].as_i64().expect("csum"),
                }
            })
            .collect()
    }

    #[test]
    fn matches_real_client() {
        let cases = load_cases();
        assert!(cases.len() > 50, "fixture unexpectedly small");
        let mut failures = Vec::new();
        for case in &cases {
            let got_sort = sort_field(&case.fields, case.sortf);
            let got_csum = first_field_checksum(&case.fields);
            // Compare reals bitwise so -0.0 vs 0.0 or ULP drift would show.
            let sort_ok = match (&got_sort, &case.expected) {
                (SortValue::Real(a), SortValue::Real(b)) => a.to_bits() == b.to_bits(),
                (a, b) => a == b,
            };
            if !sort_ok || got_csum != case.csum {
                failures.push(format!(
                    "fields={:?} sortf={}: sfld got {:?} want {:?}; csum got {} want {}",
                    case.fields, case.sortf, got_sort, case.expected, got_csum, case.csum
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn fields_lose_control_characters_but_keep_separators_tabs_and_newlines() {
        assert_eq!(clean_fields("a\rb\x1fc\td\ne\u{7f}"), "ab\x1fc\td\ne");
        assert_eq!(clean_fields("plain\x1f"), "plain\x1f");
    }
}
