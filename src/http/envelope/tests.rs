use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use super::test_support::*;
use super::*;

/// Bombs must fail after decoding about one cap's worth, not after inflating a gigabyte;
/// the bound is loose so that a loaded CI machine does not flake.
const FAST: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------- modern envelope

#[tokio::test]
async fn modern_round_trip() {
    let payload = br#"{"v":11,"cv":"anki,25.02 (abcd1234),mac"}"#;
    let request = decode_post(
        &current_client_headers(),
        full(zstd(payload)),
        &Limits::default(),
    )
    .await
    .expect("decodes");
    assert_eq!(
        request,
        SyncRequest {
            envelope: Envelope::Modern,
            sync_version: 11,
            host_key: "hostkey123".into(),
            session_key: "Xy7Pq".into(),
            client_version: "25.02,abcdef,linux".into(),
            body: Bytes::from_static(payload),
            legacy_media_version: None,
        }
    );
}

#[tokio::test]
async fn modern_chunked_body_without_content_length() {
    let payload: Vec<u8> = (0..200_000u32).flat_map(|n| n.to_le_bytes()).collect();
    let compressed = zstd(&payload);
    for chunk in [1, 7, 4096, compressed.len()] {
        let request = decode_post(
            &current_client_headers(),
            chunked(&compressed, chunk),
            &Limits::default(),
        )
        .await
        .expect("decodes");
        assert_eq!(request.body, payload, "chunk size {chunk}");
    }
}

#[tokio::test]
async fn modern_accepts_every_supported_version_and_answers_below_11_in_plain_bytes() {
    // The body is zstd whatever the version; the official server compresses its answer only
    // for version 11 (spec §1.1).
    for (v, answer) in [
        (8, Envelope::Legacy),
        (9, Envelope::Legacy),
        (10, Envelope::Legacy),
        (11, Envelope::Modern),
    ] {
        let headers = modern_headers(v, "k", "c", "s");
        let request = decode_post(&headers, full(zstd(b"{}")), &Limits::default())
            .await
            .expect("decodes");
        assert_eq!(request.sync_version, v);
        assert_eq!(request.body, &b"{}"[..]);
        assert_eq!(request.envelope, answer, "v{v}");
        let (key, file_answer) = header_host_key(&headers)
            .expect("parses")
            .expect("has a header");
        assert_eq!((key.as_str(), file_answer), ("k", answer), "v{v}");
    }
}

#[tokio::test]
async fn modern_empty_body_stays_empty() {
    let request = decode_post(
        &current_client_headers(),
        full(Bytes::new()),
        &Limits::default(),
    )
    .await
    .expect("decodes");
    assert!(request.body.is_empty());
}

#[tokio::test]
async fn modern_header_tolerates_unknown_fields_and_empty_host_key() {
    let headers = headers_with(
        "anki-sync",
        r#"{"v":11,"k":"","c":"x","s":"abc","future":[1,2]}"#,
    );
    let request = decode_post(&headers, full(zstd(b"{}")), &Limits::default())
        .await
        .expect("decodes");
    assert_eq!(request.host_key, "");
    assert_eq!(request.session_key, "abc");
}

#[tokio::test]
async fn modern_header_with_utf8_client_version() {
    let mut headers = HeaderMap::new();
    let json = sync_header_json(11, "k", "25.02,ünïcode", "s");
    headers.insert(
        "anki-sync",
        http::HeaderValue::from_bytes(json.as_bytes()).expect("obs-text is allowed"),
    );
    let request = decode_post(&headers, full(zstd(b"{}")), &Limits::default())
        .await
        .expect("decodes");
    assert_eq!(request.client_version, "25.02,ünïcode");
}

#[tokio::test]
async fn modern_bad_header_json() {
    for bad in [
        "",
        "not json",
        "{\"v\":11,",
        "[11,\"k\",\"c\",\"s\"]",
        "null",
    ] {
        let error = decode_post(
            &headers_with("anki-sync", bad),
            full(zstd(b"{}")),
            &Limits::default(),
        )
        .await
        .expect_err(bad);
        assert!(
            matches!(error, EnvelopeError::BadHeader(_)),
            "{bad}: {error:?}"
        );
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
    }
}

#[tokio::test]
async fn modern_header_missing_field() {
    let error = decode_post(
        &headers_with("anki-sync", r#"{"v":11,"k":"key","c":"client"}"#),
        full(zstd(b"{}")),
        &Limits::default(),
    )
    .await
    .expect_err("s is required");
    assert!(matches!(error, EnvelopeError::BadHeader(_)));
    assert_eq!(error.to_string(), "bad anki-sync header: missing field `s`");
}

#[tokio::test]
async fn modern_header_with_wrong_types() {
    for bad in [
        r#"{"v":"11","k":"k","c":"c","s":"s"}"#,
        r#"{"v":11,"k":1,"c":"c","s":"s"}"#,
        r#"{"v":300,"k":"k","c":"c","s":"s"}"#,
        r#"{"v":-1,"k":"k","c":"c","s":"s"}"#,
        r#"{"v":11.5,"k":"k","c":"c","s":"s"}"#,
        // As the official server (serde into its struct), a repeated key is refused.
        r#"{"v":11,"k":"k","c":"c","s":"s","k":"other"}"#,
        r#" ["11","k","c","s"]"#,
    ] {
        let error = decode_post(
            &headers_with("anki-sync", bad),
            full(zstd(b"{}")),
            &Limits::default(),
        )
        .await
        .expect_err(bad);
        assert!(
            matches!(error, EnvelopeError::BadHeader(_)),
            "{bad}: {error:?}"
        );
    }
}

#[tokio::test]
async fn modern_unsupported_versions() {
    for v in [0, 7, 12, 255] {
        let error = decode_post(
            &modern_headers(v, "k", "c", "s"),
            full(zstd(b"{}")),
            &Limits::default(),
        )
        .await
        .expect_err("out of range");
        assert!(matches!(error, EnvelopeError::UnsupportedVersion(got) if got == v));
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
    }
    let error = decode_post(
        &modern_headers(12, "k", "c", "s"),
        full(zstd(b"{}")),
        &Limits::default(),
    )
    .await
    .expect_err("12");
    assert_eq!(
        error.to_string(),
        "unsupported sync version 12 (this server speaks 8..=11)"
    );
}

#[tokio::test]
async fn modern_bad_zstd() {
    let error = decode_post(
        &current_client_headers(),
        full(&b"this is not zstd at all"[..]),
        &Limits::default(),
    )
    .await
    .expect_err("garbage");
    assert!(matches!(error, EnvelopeError::Zstd(_)), "{error:?}");
    assert_eq!(error.status(), StatusCode::BAD_REQUEST);
    assert!(error.to_string().starts_with("decoding zstd body: "));
}

#[tokio::test]
async fn modern_truncated_zstd() {
    let compressed = zstd(&vec![7u8; 100_000]);
    let truncated = compressed[..compressed.len() / 2].to_vec();
    let error = decode_post(
        &current_client_headers(),
        full(truncated),
        &Limits::default(),
    )
    .await
    .expect_err("truncated");
    assert!(matches!(error, EnvelopeError::Zstd(_)), "{error:?}");
}

#[tokio::test]
async fn modern_trailing_garbage_after_frame() {
    let mut compressed = zstd(b"{}");
    compressed.extend_from_slice(b"junk");
    let error = decode_post(
        &current_client_headers(),
        full(compressed),
        &Limits::default(),
    )
    .await
    .expect_err("trailing junk");
    assert!(matches!(error, EnvelopeError::Zstd(_)), "{error:?}");
}

#[tokio::test]
async fn modern_concatenated_frames_are_one_payload() {
    let mut compressed = zstd(b"hello ");
    compressed.extend_from_slice(&zstd(b"world"));
    let request = decode_post(
        &current_client_headers(),
        full(compressed),
        &Limits::default(),
    )
    .await
    .expect("decodes");
    assert_eq!(request.body, &b"hello world"[..]);
}

#[test]
fn zstd_rle_bomb_is_a_valid_frame() {
    assert_eq!(unzstd(&zstd_rle_bomb(3)), vec![0u8; 3 * 128 * 1024]);
}

#[tokio::test]
async fn modern_zstd_bomb_fails_fast() {
    let one_gib_of_zeros = zstd_rle_bomb(8192);
    assert!(one_gib_of_zeros.len() < 64 * 1024);
    let started = Instant::now();
    let error = decode_post(
        &current_client_headers(),
        full(one_gib_of_zeros),
        &limits(ONE_MIB, ONE_MIB),
    )
    .await
    .expect_err("bomb");
    assert!(
        matches!(error, EnvelopeError::DecompressedTooLarge { limit } if limit == ONE_MIB as u64),
        "{error:?}"
    );
    assert_eq!(error.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(started.elapsed() < FAST, "took {:?}", started.elapsed());
}

#[tokio::test]
async fn modern_multi_frame_zstd_bomb_fails_fast() {
    // Many small frames instead of one big one: the cap must span frames.
    let frame = zstd(&vec![0u8; ONE_MIB]);
    let bomb: Vec<u8> = std::iter::repeat_n(&frame[..], 1024)
        .flatten()
        .copied()
        .collect();
    let started = Instant::now();
    let error = decode_post(
        &current_client_headers(),
        chunked(&bomb, 16 * 1024),
        &limits(2 * ONE_MIB, 4 * ONE_MIB),
    )
    .await
    .expect_err("bomb");
    assert!(
        matches!(error, EnvelopeError::DecompressedTooLarge { .. }),
        "{error:?}"
    );
    assert!(started.elapsed() < FAST, "took {:?}", started.elapsed());
}

#[tokio::test]
async fn modern_decompressed_size_exactly_at_limit_is_accepted() {
    let payload = vec![1u8; 4096];
    let request = decode_post(
        &current_client_headers(),
        full(zstd(&payload)),
        &limits(ONE_MIB, 4096),
    )
    .await
    .expect("exactly at the cap");
    assert_eq!(request.body.len(), 4096);

    let error = decode_post(
        &current_client_headers(),
        full(zstd(&[1u8; 4097])),
        &limits(ONE_MIB, 4096),
    )
    .await
    .expect_err("one byte over");
    assert_eq!(error.to_string(), "decompressed request body exceeds 4 KiB");
}

#[tokio::test]
async fn modern_body_over_max_body_with_content_length_fails_before_reading() {
    let mut headers = current_client_headers();
    headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(2048u32),
    );
    // Reading this body would yield a transport error, so TooLarge proves nothing was read.
    let error = decode_post(&headers, failing_after(b""), &limits(1024, ONE_MIB))
        .await
        .expect_err("declared too large");
    assert!(
        matches!(error, EnvelopeError::TooLarge { limit: 1024 }),
        "{error:?}"
    );
    assert_eq!(error.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error.to_string(), "request body exceeds 1 KiB");
}

#[tokio::test]
async fn modern_body_over_max_body_by_size_hint() {
    // Full<Bytes> reports an exact size hint, as hyper does for a Content-Length body.
    let error = decode_post(
        &current_client_headers(),
        full(vec![0u8; 1025]),
        &limits(1024, ONE_MIB),
    )
    .await
    .expect_err("too large");
    assert!(matches!(error, EnvelopeError::TooLarge { limit: 1024 }));
}

#[tokio::test]
async fn modern_body_over_max_body_chunked() {
    let compressed = zstd(
        &(0..100_000u32)
            .flat_map(|n| n.to_be_bytes())
            .collect::<Vec<_>>(),
    );
    assert!(compressed.len() > 1024);
    let error = decode_post(
        &current_client_headers(),
        chunked(&compressed, 100),
        &limits(1024, 100 * ONE_MIB),
    )
    .await
    .expect_err("too large");
    assert!(matches!(error, EnvelopeError::TooLarge { limit: 1024 }));
}

#[tokio::test]
async fn modern_body_exactly_max_body_is_accepted() {
    let compressed = zstd(b"{\"exact\":true}");
    let request = decode_post(
        &current_client_headers(),
        chunked(&compressed, 3),
        &limits(compressed.len(), ONE_MIB),
    )
    .await
    .expect("exactly at the cap");
    assert_eq!(request.body, &b"{\"exact\":true}"[..]);
}

#[tokio::test]
async fn modern_unparseable_content_length_is_ignored() {
    let mut headers = current_client_headers();
    headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from_static("lots"),
    );
    let request = decode_post(&headers, full(zstd(b"{}")), &Limits::default())
        .await
        .expect("the streamed size is still enforced, so the header can be ignored");
    assert_eq!(request.body, &b"{}"[..]);
}

#[tokio::test]
async fn modern_transport_error_is_a_body_error() {
    let error = decode_post(
        &current_client_headers(),
        failing_after(&zstd(b"{}")),
        &Limits::default(),
    )
    .await
    .expect_err("connection dropped");
    assert!(matches!(error, EnvelopeError::Body(_)), "{error:?}");
    assert_eq!(error.status(), StatusCode::BAD_REQUEST);
    assert!(error.to_string().contains("connection reset"), "{error}");
}

#[tokio::test]
async fn modern_header_wins_over_multipart_content_type() {
    let mut headers = multipart_headers("xyz");
    headers.extend(current_client_headers());
    let request = decode_post(&headers, full(zstd(b"{}")), &Limits::default())
        .await
        .expect("envelope is chosen by the anki-sync header");
    assert_eq!(request.envelope, Envelope::Modern);
}

#[test]
fn decode_post_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let headers = current_client_headers();
    let limits = Limits::default();
    let future = decode_post(&headers, full(Bytes::new()), &limits);
    assert_send(&future);
}

// ---------------------------------------------------------------- legacy envelope

const BOUNDARY: &str = "----AnkiBoundary7MA4YWxk";

async fn decode_legacy(parts: &[Part<'_>]) -> Result<SyncRequest, EnvelopeError> {
    decode_post(
        &multipart_headers(BOUNDARY),
        full(multipart(BOUNDARY, parts)),
        &Limits::default(),
    )
    .await
}

#[tokio::test]
async fn legacy_gzip_data() {
    let payload = br#"{"minUsn":0,"lnewer":true}"#;
    let gz = gzip(payload);
    let request = decode_legacy(&[
        field("c", b"1"),
        field("k", b"hostkey"),
        field("s", b"sess"),
        file("data", &gz),
    ])
    .await
    .expect("decodes");
    assert_eq!(
        request,
        SyncRequest {
            envelope: Envelope::Legacy,
            sync_version: LEGACY_SYNC_VERSION,
            host_key: "hostkey".into(),
            session_key: "sess".into(),
            client_version: String::new(),
            body: Bytes::from_static(payload),
            legacy_media_version: None,
        }
    );
}

#[tokio::test]
async fn legacy_any_flag_other_than_zero_means_gzip() {
    let gz = gzip(b"[1,2,3]");
    for flag in [&b"1"[..], b"true", b"", b"00"] {
        let request = decode_legacy(&[field("c", flag), file("data", &gz)])
            .await
            .expect("decodes");
        assert_eq!(request.body, &b"[1,2,3]"[..]);
    }
}

#[tokio::test]
async fn legacy_c0_is_uncompressed() {
    let zip = b"PK\x03\x04 pretend this is a zip";
    let request = decode_legacy(&[field("c", b"0"), field("sk", b"key"), file("data", zip)])
        .await
        .expect("decodes");
    assert_eq!(request.body, &zip[..]);
}

#[tokio::test]
async fn legacy_missing_c_is_uncompressed() {
    let request = decode_legacy(&[field("k", b"key"), file("data", b"{\"a\":1}")])
        .await
        .expect("decodes");
    assert_eq!(request.body, &b"{\"a\":1}"[..]);
}

#[tokio::test]
async fn legacy_sk_instead_of_k() {
    let request = decode_legacy(&[field("sk", b"media-key"), field("c", b"0")])
        .await
        .expect("decodes");
    assert_eq!(request.host_key, "media-key");
    assert_eq!(request.session_key, "");
}

#[tokio::test]
async fn legacy_k_and_sk_are_one_field_and_the_last_wins() {
    // As on the official server: real clients send one or the other, never both.
    let request = decode_legacy(&[field("sk", b"from-sk"), field("k", b"from-k")])
        .await
        .expect("decodes");
    assert_eq!(request.host_key, "from-k");
    let request = decode_legacy(&[field("k", b"from-k"), field("sk", b"from-sk")])
        .await
        .expect("decodes");
    assert_eq!(request.host_key, "from-sk");
    let request = decode_legacy(&[field("sk", b"from-sk"), field("k", b"")])
        .await
        .expect("decodes");
    assert_eq!(request.host_key, "");
}

#[tokio::test]
async fn legacy_without_data_is_empty_object() {
    let request = decode_legacy(&[field("c", b"1"), field("k", b"key"), field("s", b"x")])
        .await
        .expect("decodes");
    assert_eq!(request.body, &b"{}"[..]);
    assert_eq!(request.sync_version, 10);
}

#[tokio::test]
async fn legacy_empty_data_is_empty_object() {
    // Even with the gzip flag: an empty part is not a gzip stream.
    let request = decode_legacy(&[field("c", b"1"), file("data", b"")])
        .await
        .expect("decodes");
    assert_eq!(request.body, &b"{}"[..]);
}

#[tokio::test]
async fn legacy_no_fields_at_all() {
    let request = decode_legacy(&[]).await.expect("decodes");
    assert_eq!(request.body, &b"{}"[..]);
    assert_eq!(request.host_key, "");
    assert_eq!(request.legacy_media_version, None);
}

#[tokio::test]
async fn legacy_with_v() {
    let request = decode_legacy(&[
        field("sk", b"key"),
        field("v", b"ankidesktop,2.1.49,lin:ubuntu:22.04"),
    ])
    .await
    .expect("decodes");
    assert_eq!(
        request.client_version,
        "ankidesktop,2.1.49,lin:ubuntu:22.04"
    );
    assert_eq!(
        request.legacy_media_version.as_deref(),
        Some("ankidesktop,2.1.49,lin:ubuntu:22.04")
    );
}

#[tokio::test]
async fn legacy_field_order_unknown_and_repeated_fields() {
    let gz = gzip(b"payload");
    let request = decode_legacy(&[
        file("data", &gz),
        field("extra", b"ignored"),
        file("upload", b"also ignored"),
        field("s", b"first"),
        field("s", b"second"),
        field("c", b"1"),
        field("k", b"key"),
    ])
    .await
    .expect("decodes");
    assert_eq!(request.body, &b"payload"[..]);
    assert_eq!(request.session_key, "second");
    assert_eq!(request.host_key, "key");
}

#[tokio::test]
async fn legacy_chunked_body() {
    let gz = gzip(&vec![b'x'; 50_000]);
    let body = multipart(
        BOUNDARY,
        &[field("c", b"1"), file("data", &gz), field("k", b"k")],
    );
    for chunk in [1, 13, 1000] {
        let request = decode_post(
            &multipart_headers(BOUNDARY),
            chunked(&body, chunk),
            &Limits::default(),
        )
        .await
        .expect("decodes");
        assert_eq!(request.body, vec![b'x'; 50_000], "chunk {chunk}");
    }
}

#[tokio::test]
async fn legacy_quoted_boundary_and_charset() {
    let headers = headers_with(
        "content-type",
        &format!("multipart/form-data; charset=utf-8; boundary=\"{BOUNDARY}\""),
    );
    let request = decode_post(
        &headers,
        full(multipart(BOUNDARY, &[field("k", b"key")])),
        &Limits::default(),
    )
    .await
    .expect("decodes");
    assert_eq!(request.host_key, "key");
}

#[tokio::test]
async fn legacy_bad_boundary() {
    let body = multipart("the-real-boundary", &[field("k", b"key")]);
    let error = decode_post(
        &multipart_headers("a-different-boundary"),
        full(body),
        &Limits::default(),
    )
    .await
    .expect_err("boundary mismatch");
    assert!(matches!(error, EnvelopeError::BadMultipart(_)), "{error:?}");
    assert_eq!(error.status(), StatusCode::BAD_REQUEST);
    assert!(error.to_string().starts_with("malformed multipart body: "));
}

#[tokio::test]
async fn legacy_truncated() {
    let body = multipart(
        BOUNDARY,
        &[field("k", b"key"), file("data", b"some data here")],
    );
    for cut in [body.len() - 10, body.len() / 2, 20] {
        let error = decode_post(
            &multipart_headers(BOUNDARY),
            full(body[..cut].to_vec()),
            &Limits::default(),
        )
        .await
        .expect_err("truncated");
        assert!(
            matches!(error, EnvelopeError::BadMultipart(_)),
            "cut {cut}: {error:?}"
        );
    }
}

#[tokio::test]
async fn legacy_bad_gzip() {
    let error = decode_legacy(&[field("c", b"1"), file("data", b"{\"not\":\"gzip\"}")])
        .await
        .expect_err("not gzip");
    assert!(matches!(error, EnvelopeError::Gzip(_)), "{error:?}");
    assert_eq!(error.status(), StatusCode::BAD_REQUEST);
    assert!(error.to_string().starts_with("invalid gzip data: "));

    let gz = gzip(b"{\"truncated\":true}");
    let error = decode_legacy(&[field("c", b"1"), file("data", &gz[..gz.len() - 6])])
        .await
        .expect_err("truncated gzip");
    assert!(matches!(error, EnvelopeError::Gzip(_)), "{error:?}");
}

#[tokio::test]
async fn legacy_concatenated_gzip_members() {
    let mut gz = gzip(b"hello ");
    gz.extend_from_slice(&gzip(b"world"));
    let request = decode_legacy(&[field("c", b"1"), file("data", &gz)])
        .await
        .expect("decodes");
    assert_eq!(request.body, &b"hello world"[..]);
}

#[test]
fn gzip_bomb_is_a_valid_gzip_stream() {
    assert_eq!(gunzip(&gzip_bomb(3)), vec![0u8; 3 * ONE_MIB]);
}

#[tokio::test]
async fn legacy_gzip_bomb_fails_fast() {
    let one_gib_of_zeros = gzip_bomb(1024);
    assert!(one_gib_of_zeros.len() < 2 * ONE_MIB);
    let body = multipart(
        BOUNDARY,
        &[field("c", b"1"), file("data", &one_gib_of_zeros)],
    );
    let started = Instant::now();
    let error = decode_post(
        &multipart_headers(BOUNDARY),
        full(body),
        &limits(4 * ONE_MIB, ONE_MIB),
    )
    .await
    .expect_err("bomb");
    assert!(
        matches!(error, EnvelopeError::DecompressedTooLarge { limit } if limit == ONE_MIB as u64),
        "{error:?}"
    );
    assert_eq!(error.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error.to_string(), "decompressed request body exceeds 1 MiB");
    assert!(started.elapsed() < FAST, "took {:?}", started.elapsed());
}

#[tokio::test]
async fn legacy_plain_data_over_max_decompressed() {
    let body = multipart(BOUNDARY, &[field("c", b"0"), file("data", &[b'a'; 2000])]);
    let error = decode_post(
        &multipart_headers(BOUNDARY),
        full(body),
        &limits(ONE_MIB, 1000),
    )
    .await
    .expect_err("over the decompressed cap");
    assert!(matches!(
        error,
        EnvelopeError::DecompressedTooLarge { limit: 1000 }
    ));
    assert_eq!(
        error.to_string(),
        "decompressed request body exceeds 1000 bytes"
    );
}

#[tokio::test]
async fn legacy_body_over_max_body() {
    let body = multipart(
        BOUNDARY,
        &[field("c", b"0"), file("data", &vec![b'a'; 10_000])],
    );

    let mut headers = multipart_headers(BOUNDARY);
    headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(body.len()),
    );
    let error = decode_post(&headers, failing_after(b""), &limits(4096, ONE_MIB))
        .await
        .expect_err("declared too large");
    assert!(
        matches!(error, EnvelopeError::TooLarge { limit: 4096 }),
        "{error:?}"
    );

    let error = decode_post(
        &multipart_headers(BOUNDARY),
        chunked(&body, 512),
        &limits(4096, ONE_MIB),
    )
    .await
    .expect_err("streamed too large");
    assert!(
        matches!(error, EnvelopeError::TooLarge { limit: 4096 }),
        "{error:?}"
    );
    assert_eq!(error.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // Skipped parts count as much as recognised ones.
    let body = multipart(
        BOUNDARY,
        &[file("junk", &vec![b'a'; 10_000]), field("k", b"k")],
    );
    let error = decode_post(
        &multipart_headers(BOUNDARY),
        chunked(&body, 512),
        &limits(4096, ONE_MIB),
    )
    .await
    .expect_err("streamed too large");
    assert!(
        matches!(error, EnvelopeError::TooLarge { limit: 4096 }),
        "{error:?}"
    );
}

#[tokio::test]
async fn legacy_transport_error_is_a_body_error() {
    let body = multipart(BOUNDARY, &[field("k", b"key"), file("data", b"{}")]);
    let error = decode_post(
        &multipart_headers(BOUNDARY),
        failing_after(&body[..body.len() / 2]),
        &Limits::default(),
    )
    .await
    .expect_err("connection dropped");
    assert!(matches!(error, EnvelopeError::Body(_)), "{error:?}");
    assert!(error.to_string().contains("connection reset"), "{error}");
}

#[tokio::test]
async fn not_multipart_without_sync_header() {
    let cases = [
        None,
        Some("application/octet-stream"),
        Some("text/plain"),
        Some("application/json"),
        Some("multipart/form-data"),
        Some("multipart/mixed; boundary=abc"),
        Some("application/x-www-form-urlencoded"),
        Some("garbage;;;"),
    ];
    for content_type in cases {
        let headers =
            content_type.map_or_else(HeaderMap::new, |value| headers_with("content-type", value));
        let error = decode_post(&headers, full(zstd(b"{}")), &Limits::default())
            .await
            .expect_err("not multipart");
        assert!(
            matches!(error, EnvelopeError::NotMultipart),
            "{content_type:?}: {error:?}"
        );
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
    }
}

// ---------------------------------------------------------------- GET /msync/begin

#[test]
fn begin_query_decodes_percent_encoding() {
    let request = decode_media_begin_query(Some(
        "k=abc%2Fdef%3D%3d&v=ankidroid%2C2.15+alpha%C3%A9&unused=%%%",
    ))
    .expect("decodes");
    assert_eq!(
        request,
        SyncRequest {
            envelope: Envelope::Legacy,
            sync_version: LEGACY_SYNC_VERSION,
            host_key: "abc/def==".into(),
            session_key: String::new(),
            client_version: "ankidroid,2.15 alphaé".into(),
            body: Bytes::from_static("{\"v\":\"ankidroid,2.15 alphaé\"}".as_bytes()),
            legacy_media_version: Some("ankidroid,2.15 alphaé".into()),
        }
    );
}

#[test]
fn begin_query_body_is_json_with_escaping() {
    let request = decode_media_begin_query(Some("v=a%22b%5Cc&k=")).expect("decodes");
    assert_eq!(request.body, &br#"{"v":"a\"b\\c"}"#[..]);
    assert_eq!(request.host_key, "");
    let value: serde_json::Value = serde_json::from_slice(&request.body).expect("json");
    assert_eq!(value["v"], "a\"b\\c");
}

#[test]
fn begin_query_accepts_encoded_names_and_empty_pairs() {
    let request = decode_media_begin_query(Some("&%6B=key&&v&")).expect("decodes");
    assert_eq!(request.host_key, "key");
    assert_eq!(request.client_version, "");
}

#[test]
fn begin_query_missing_fields() {
    for (query, missing) in [
        (None, "k"),
        (Some(""), "k"),
        (Some("v=1"), "k"),
        (Some("k=1"), "v"),
        (Some("kk=1&vv=2"), "k"),
    ] {
        let error = decode_media_begin_query(query).expect_err("missing");
        assert!(matches!(error, EnvelopeError::BadQuery(_)), "{query:?}");
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            error.to_string(),
            format!("bad query string: missing parameter `{missing}`")
        );
    }
}

#[test]
fn begin_query_rejects_malformed_input() {
    for query in [
        "k=%zz&v=1",
        "k=1&v=%4",
        "k=1&v=%",
        "k=%FF&v=1",
        "%=1&k=1&v=1",
        "k=1&k=2&v=1",
    ] {
        let error = decode_media_begin_query(Some(query)).expect_err(query);
        assert!(
            matches!(error, EnvelopeError::BadQuery(_)),
            "{query}: {error:?}"
        );
    }
}

// ---------------------------------------------------------------- responses

#[tokio::test]
async fn encode_ok_modern_sets_original_size_and_round_trips() {
    let payload = Bytes::from(
        (0..10_000u32)
            .flat_map(|n| (n % 97).to_le_bytes())
            .collect::<Vec<_>>(),
    );
    let response = encode_ok(&Envelope::Modern, payload.clone()).expect("encodes");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers().get(ORIGINAL_SIZE_HEADER),
        Some(&http::HeaderValue::from(payload.len()))
    );
    assert!(response
        .headers()
        .get(http::header::CONTENT_ENCODING)
        .is_none());
    let body = body_of(response).await;
    assert!(body.len() < payload.len());
    assert_eq!(unzstd(&body), payload);
}

#[tokio::test]
async fn encode_ok_modern_empty_body() {
    let response = encode_ok(&Envelope::Modern, Bytes::new()).expect("encodes");
    assert_eq!(
        response.headers().get(ORIGINAL_SIZE_HEADER),
        Some(&http::HeaderValue::from_static("0"))
    );
    assert!(unzstd(&body_of(response).await).is_empty());
}

#[tokio::test]
async fn encode_ok_legacy_is_plain() {
    let payload = Bytes::from_static(b"{\"data\":null,\"err\":\"\"}");
    let response = encode_ok(&Envelope::Legacy, payload.clone()).expect("encodes");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().is_empty(), "{:?}", response.headers());
    assert_eq!(body_of(response).await, payload);
}

#[test]
fn original_size_must_fit_in_u32() {
    assert_eq!(
        original_size_header(u32::MAX as usize).expect("fits"),
        http::HeaderValue::from(u32::MAX)
    );
    if let Ok(too_big) = usize::try_from(u64::from(u32::MAX) + 1) {
        let error = original_size_header(too_big).expect_err("over u32");
        assert!(matches!(error, EnvelopeError::Encode(_)));
        assert_eq!(error.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(error.to_string().starts_with("encoding response: "));
    }
}

// ---------------------------------------------------------------- errors and limits

#[test]
fn status_codes() {
    let bad_request = [
        EnvelopeError::BadHeader(String::new()),
        EnvelopeError::UnsupportedVersion(7),
        EnvelopeError::NotMultipart,
        EnvelopeError::BadMultipart(String::new()),
        EnvelopeError::Gzip(String::new()),
        EnvelopeError::Zstd(String::new()),
        EnvelopeError::BadQuery(String::new()),
        EnvelopeError::Body(String::new()),
    ];
    for error in bad_request {
        assert_eq!(error.status(), StatusCode::BAD_REQUEST, "{error:?}");
    }
    assert_eq!(
        EnvelopeError::TooLarge { limit: 1 }.status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        EnvelopeError::DecompressedTooLarge { limit: 1 }.status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        EnvelopeError::Encode(String::new()).status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
}

#[test]
fn messages_are_readable() {
    let limits = Limits::default();
    assert_eq!(
        EnvelopeError::TooLarge {
            limit: limits.max_body
        }
        .to_string(),
        "request body exceeds 100 MiB"
    );
    assert_eq!(
        EnvelopeError::DecompressedTooLarge {
            limit: limits.max_decompressed
        }
        .to_string(),
        "decompressed request body exceeds 300 MiB"
    );
    assert_eq!(
        EnvelopeError::TooLarge { limit: 1 }.to_string(),
        "request body exceeds 1 byte"
    );
    assert_eq!(
        EnvelopeError::TooLarge { limit: 0 }.to_string(),
        "request body exceeds 0 bytes"
    );
    assert_eq!(
        EnvelopeError::TooLarge { limit: 1536 }.to_string(),
        "request body exceeds 1536 bytes"
    );
    assert_eq!(
        EnvelopeError::NotMultipart.to_string(),
        "request has no anki-sync header and is not multipart/form-data with a boundary"
    );
    assert_eq!(
        EnvelopeError::BadQuery("missing parameter `k`".into()).to_string(),
        "bad query string: missing parameter `k`"
    );
    assert_eq!(
        EnvelopeError::Body("connection reset".into()).to_string(),
        "reading request body: connection reset"
    );
}

#[test]
fn limits_follow_max_sync_payload_megs() {
    assert_eq!(
        Limits::default(),
        Limits {
            max_body: 100 * 1024 * 1024,
            max_decompressed: 300 * 1024 * 1024,
        }
    );
    assert_eq!(
        Limits::from_payload_megs(1),
        Limits {
            max_body: 1024 * 1024,
            max_decompressed: 3 * 1024 * 1024,
        }
    );
    assert_eq!(
        Limits::from_payload_megs(u64::MAX),
        Limits {
            max_body: u64::MAX,
            max_decompressed: u64::MAX,
        }
    );
}

#[test]
fn unknown_header_fields_are_named() {
    let value = HeaderValue::from_static(r#"{"v":11,"k":"x","c":"y","s":"z","new":1}"#);
    assert_eq!(super::unknown_header_fields(&value), ["new"]);
    let value = HeaderValue::from_static(r#"{"v":11,"k":"x","c":"y","s":"z"}"#);
    assert!(super::unknown_header_fields(&value).is_empty());
    assert!(super::unknown_header_fields(&HeaderValue::from_static("[1]")).is_empty());
}
