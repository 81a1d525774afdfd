//! Hostile and random input: the decoder must never panic and must answer every input with
//! a request or a typed client error (never a 5xx); well-formed input must round-trip.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use proptest::collection::vec;
use proptest::prelude::*;

use super::test_support::*;
use super::*;

/// Small enough that random input regularly trips both caps.
fn tight_limits() -> Limits {
    limits(4 * 1024, 16 * 1024)
}

fn check_typed(result: &Result<SyncRequest, EnvelopeError>) -> Result<(), TestCaseError> {
    if let Err(error) = result {
        prop_assert!(
            matches!(
                error.status(),
                StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE
            ),
            "{error:?} -> {}",
            error.status()
        );
        prop_assert!(!error.to_string().is_empty());
    }
    Ok(())
}

/// Pieces that look like multipart syntax, so that random sequences of them reach deep
/// into the parser instead of failing at the first byte.
fn multipart_piece() -> impl Strategy<Value = Vec<u8>> {
    let fixed = |text: &'static str| Just(text.as_bytes().to_vec());
    prop_oneof![
        fixed("--B\r\n"),
        fixed("--B--\r\n"),
        fixed("--B"),
        fixed("\r\n"),
        fixed("\r\n\r\n"),
        fixed("Content-Disposition: form-data; name=\"data\"\r\n"),
        fixed("Content-Disposition: form-data; name=\"data\"; filename=\"data\"\r\n"),
        fixed("Content-Disposition: form-data; name=\"c\"\r\n\r\n1"),
        fixed("Content-Disposition: form-data; name=\"c\"\r\n\r\n0"),
        fixed("Content-Disposition: form-data; name=\"k\"\r\n\r\nkey"),
        fixed("Content-Disposition: form-data\r\n"),
        fixed("Content-Type: application/octet-stream\r\n"),
        fixed("Content-Type: text/plain; charset=latin1\r\n"),
        vec(any::<u8>(), 0..64),
        vec(any::<u8>(), 0..256).prop_map(|data| gzip(&data)),
        (1u32..64).prop_map(|n| vec![b'z'; n as usize * 100]),
        Just(gzip_bomb(1)),
    ]
}

/// Mostly-right header objects: each field may be missing or of the wrong type, and `v`
/// ranges over and beyond u8, so every branch of header validation is reached.
fn header_object() -> impl Strategy<Value = Vec<u8>> {
    let text = || {
        prop_oneof![
            9 => "[a-zA-Z0-9,.]{0,12}".prop_map(serde_json::Value::from),
            1 => any::<i64>().prop_map(serde_json::Value::from),
        ]
    };
    let version = prop_oneof![
        8 => (6i64..14).prop_map(serde_json::Value::from),
        1 => any::<i64>().prop_map(serde_json::Value::from),
        1 => "[0-9]{1,2}".prop_map(serde_json::Value::from),
    ];
    (
        prop::option::weighted(0.9, version),
        prop::option::weighted(0.9, text()),
        prop::option::weighted(0.9, text()),
        prop::option::weighted(0.9, text()),
        prop::option::of(text()),
    )
        .prop_map(|(v, k, c, s, extra)| {
            let mut object = serde_json::Map::new();
            for (name, value) in [("v", v), ("k", k), ("c", c), ("s", s), ("extra", extra)] {
                if let Some(value) = value {
                    object.insert(name.to_owned(), value);
                }
            }
            serde_json::Value::Object(object).to_string().into_bytes()
        })
}

/// Percent-encodes everything but unreserved characters, as a form encoder would.
fn form_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_modern_body_never_panics(
        body in vec(any::<u8>(), 0..8192),
        chunk in 1usize..1024,
    ) {
        let result = block_on(decode_post(
            &current_client_headers(),
            chunked(&body, chunk),
            &tight_limits(),
        ));
        check_typed(&result)?;
    }

    #[test]
    fn corrupted_zstd_never_panics(
        payload in vec(any::<u8>(), 0..4096),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        keep in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let mut compressed = zstd(&payload);
        for (index, byte) in flips {
            let at = index.index(compressed.len());
            compressed[at] ^= byte;
        }
        if let Some(keep) = keep {
            compressed.truncate(keep.index(compressed.len() + 1));
        }
        let result = block_on(decode_post(
            &current_client_headers(),
            full(compressed),
            &tight_limits(),
        ));
        check_typed(&result)?;
    }

    #[test]
    fn arbitrary_anki_sync_header_never_panics(
        raw in prop_oneof![
            vec(any::<u8>(), 0..128),
            r#"\{("[vkcsx]":("[a-z]{0,3}"|-?[0-9]{1,4}|null|true|\[\]),?){0,6}\}"#
                .prop_map(String::into_bytes),
            header_object(),
        ],
    ) {
        let Ok(value) = HeaderValue::from_bytes(&raw) else {
            return Ok(());
        };
        let mut headers = HeaderMap::new();
        headers.insert("anki-sync", value);
        let result = block_on(decode_post(&headers, full(zstd(b"{}")), &tight_limits()));
        check_typed(&result)?;
        match result {
            Ok(request) => {
                prop_assert!((MIN_SYNC_VERSION..=MAX_SYNC_VERSION).contains(&request.sync_version));
                let answer = if request.sync_version == 11 { Envelope::Modern } else { Envelope::Legacy };
                prop_assert_eq!(request.envelope, answer);
            }
            Err(error) => prop_assert!(
                matches!(error, EnvelopeError::BadHeader(_) | EnvelopeError::UnsupportedVersion(_)),
                "{:?}", error
            ),
        }
    }

    #[test]
    fn sync_header_fields_round_trip(
        v in any::<u8>(),
        k in "\\PC{0,40}",
        c in "\\PC{0,40}",
        s in "\\PC{0,12}",
    ) {
        let json = sync_header_json(v, &k, &c, &s);
        let Ok(value) = HeaderValue::from_bytes(json.as_bytes()) else {
            return Ok(());
        };
        let mut headers = HeaderMap::new();
        headers.insert("anki-sync", value);
        let result = block_on(decode_post(&headers, full(zstd(b"{}")), &tight_limits()));
        if (MIN_SYNC_VERSION..=MAX_SYNC_VERSION).contains(&v) {
            let request = result.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(request.sync_version, v);
            prop_assert_eq!(request.host_key, k);
            prop_assert_eq!(request.client_version, c);
            prop_assert_eq!(request.session_key, s);
        } else {
            prop_assert!(matches!(result, Err(EnvelopeError::UnsupportedVersion(got)) if got == v));
        }
    }

    #[test]
    fn arbitrary_content_type_never_panics(
        content_type in prop_oneof![
            "\\PC{0,60}",
            "multipart/form-data; ?(boundary=\"?[A-Za-z0-9=;-]{0,20}\"?)?",
        ],
        body in vec(any::<u8>(), 0..512),
    ) {
        let Ok(value) = HeaderValue::from_str(&content_type) else {
            return Ok(());
        };
        let mut headers = HeaderMap::new();
        headers.insert(http::header::CONTENT_TYPE, value);
        let result = block_on(decode_post(&headers, full(body), &tight_limits()));
        check_typed(&result)?;
        if let Ok(request) = result {
            prop_assert_eq!(request.envelope, Envelope::Legacy);
        }
    }

    #[test]
    fn arbitrary_multipart_ish_body_never_panics(
        pieces in vec(multipart_piece(), 0..16),
        chunk in 1usize..512,
    ) {
        let body: Vec<u8> = pieces.concat();
        let result = block_on(decode_post(&multipart_headers("B"), chunked(&body, chunk), &tight_limits()));
        check_typed(&result)?;
        if let Ok(request) = result {
            prop_assert_eq!(request.envelope, Envelope::Legacy);
            prop_assert_eq!(request.sync_version, LEGACY_SYNC_VERSION);
            prop_assert!(!request.body.is_empty());
            prop_assert!(request.body.len() as u64 <= tight_limits().max_decompressed);
        }
    }

    #[test]
    fn modern_payload_round_trips(
        payload in vec(any::<u8>(), 0..32 * 1024),
        level in 1i32..=6,
        chunk in 1usize..8192,
    ) {
        let compressed = zstd::stream::encode_all(&payload[..], level)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let request = block_on(decode_post(
            &current_client_headers(),
            chunked(&compressed, chunk),
            &Limits::default(),
        ))
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(request.body, payload);
    }

    #[test]
    fn multipart_payload_round_trips(
        payload in vec(any::<u8>(), 0..16 * 1024),
        gzipped in any::<bool>(),
        send_flag in any::<bool>(),
        order in Just((0..5usize).collect::<Vec<_>>()).prop_shuffle(),
        boundary in "[A-Za-z0-9'_+.-]{1,70}",
        key in "[A-Za-z0-9]{0,40}",
        session in "[A-Za-z0-9]{0,8}",
        version in "[A-Za-z0-9 ,.:()-]{0,40}",
        chunk in 1usize..4096,
    ) {
        let data = if gzipped { gzip(&payload) } else { payload.clone() };
        let delimiter = format!("\r\n--{boundary}");
        prop_assume!(!data.windows(delimiter.len()).any(|w| w == delimiter.as_bytes()));
        let flag: Option<&[u8]> = match (gzipped, send_flag) {
            (true, _) => Some(b"1"),
            (false, true) => Some(b"0"),
            (false, false) => None,
        };
        let all = [
            Some(file("data", &data)),
            flag.map(|flag| field("c", flag)),
            Some(field("k", key.as_bytes())),
            Some(field("s", session.as_bytes())),
            Some(field("v", version.as_bytes())),
        ];
        let mut parts = Vec::new();
        for index in order {
            if let Some(part) = &all[index] {
                parts.push(Part { name: part.name, value: part.value, file: part.file });
            }
        }
        let body = multipart(&boundary, &parts);
        let request = block_on(decode_post(
            &multipart_headers(&boundary),
            chunked(&body, chunk),
            &Limits::default(),
        ))
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let expected: &[u8] = if payload.is_empty() { b"{}" } else { &payload };
        prop_assert_eq!(&request.body[..], expected);
        prop_assert_eq!(request.host_key, key);
        prop_assert_eq!(request.session_key, session);
        prop_assert_eq!(request.client_version, version.clone());
        prop_assert_eq!(request.legacy_media_version, Some(version));
    }

    #[test]
    fn arbitrary_query_never_panics(query in prop_oneof!["\\PC{0,80}", "[kv%=&+0-9A-Fa-f]{0,40}"]) {
        match decode_media_begin_query(Some(&query)) {
            Ok(request) => {
                prop_assert_eq!(request.envelope, Envelope::Legacy);
                let json: serde_json::Value = serde_json::from_slice(&request.body)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(json["v"].as_str(), Some(request.client_version.as_str()));
            }
            Err(error) => {
                prop_assert!(matches!(error, EnvelopeError::BadQuery(_)), "{:?}", error);
            }
        }
    }

    #[test]
    fn begin_query_round_trips(k in "\\PC{0,40}", v in "\\PC{0,40}", k_first in any::<bool>()) {
        let (k_pair, v_pair) = (format!("k={}", form_encode(&k)), format!("v={}", form_encode(&v)));
        let query = if k_first { format!("{k_pair}&{v_pair}") } else { format!("{v_pair}&{k_pair}") };
        let request = decode_media_begin_query(Some(&query))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&request.host_key, &k);
        prop_assert_eq!(&request.client_version, &v);
        let json: serde_json::Value = serde_json::from_slice(&request.body)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(json, serde_json::json!({ "v": v }));
    }

    #[test]
    fn encode_ok_round_trips(payload in vec(any::<u8>(), 0..32 * 1024)) {
        let payload = Bytes::from(payload);
        let modern = encode_ok(&Envelope::Modern, payload.clone())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let size = modern
            .headers()
            .get(ORIGINAL_SIZE_HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.parse::<u32>().ok());
        prop_assert_eq!(size, Some(payload.len() as u32));
        let body = block_on(body_of(modern));
        prop_assert_eq!(unzstd(&body), payload.to_vec());

        let legacy = encode_ok(&Envelope::Legacy, payload.clone())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(legacy.headers().get(ORIGINAL_SIZE_HEADER).is_none());
        let body = block_on(body_of(legacy));
        prop_assert_eq!(body, payload);
    }
}
