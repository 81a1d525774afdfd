//! Malformed and oversized requests against the running server: each gets a clear error with
//! the status the official client understands, nothing changes in the database, and the server
//! keeps serving.

mod support;

use std::io::Write;

use support::{
    http_get, http_request, multipart, post_multipart, ChangesRequired, ClientVersion, Device,
    Server, ServerOptions,
};

fn modern_header(host_key: &str, version: u8) -> String {
    format!(r#"{{"v":{version},"k":"{host_key}","c":"test","s":"abc"}}"#)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn login(server: &Server) -> String {
    let (status, body) = post_multipart(
        &server.endpoint(),
        "/sync/hostKey",
        &multipart(&[("c", b"0"), ("data", br#"{"u":"user","p":"pass"}"#)]),
    );
    assert_eq!(status, 200, "{body}");
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    reply["key"].as_str().unwrap().to_string()
}

#[test]
fn malformed_requests_get_clear_errors_and_change_nothing() {
    let mut options = ServerOptions::with_user("user", "pass");
    options.extra_env = vec![("ANKISYNCD_MAX_PAYLOAD_MEGS".into(), "1".into())];
    let mut server = Server::start(options);
    let key = login(&server);
    let endpoint = server.endpoint();
    let zstd_json = zstd::encode_all(&br#"{"v":11,"cv":"x"}"#[..], 3).unwrap();
    let bomb = gzip(&vec![0u8; 16 * 1024 * 1024]);
    let big = vec![b'x'; 1536 * 1024];

    let modern = |header: &str, body: &[u8]| {
        http_request(
            &endpoint,
            "POST",
            "/sync/meta",
            &[("anki-sync", header)],
            body,
        )
    };
    let cases: Vec<(&str, (u16, String), u16, &str)> = vec![
        (
            "header not JSON",
            modern("{nope", &zstd_json),
            400,
            "anki-sync",
        ),
        (
            "header missing a field",
            modern(r#"{"v":11,"k":"x"}"#, &zstd_json),
            400,
            "missing field",
        ),
        (
            "unsupported version",
            modern(&modern_header(&key, 12), &zstd_json),
            400,
            "12",
        ),
        (
            "body not zstd",
            modern(&modern_header(&key, 11), b"plain text"),
            400,
            "zstd",
        ),
        (
            "neither header nor multipart",
            http_request(
                &endpoint,
                "POST",
                "/sync/meta",
                &[("Content-Type", "text/plain")],
                b"hi",
            ),
            400,
            "multipart",
        ),
        (
            "truncated multipart",
            post_multipart(
                &server.endpoint(),
                "/sync/meta",
                &multipart(&[("k", key.as_bytes())])[..30],
            ),
            400,
            "multipart",
        ),
        (
            "gzip flag on plain data",
            post_multipart(
                &server.endpoint(),
                "/sync/meta",
                &multipart(&[("k", key.as_bytes()), ("c", b"1"), ("data", b"{}")]),
            ),
            400,
            "gzip",
        ),
        (
            "declared length over the limit",
            http_request(
                &endpoint,
                "POST",
                "/sync/meta",
                &[
                    ("anki-sync", &modern_header(&key, 11)),
                    ("Content-Length", "2097152"),
                ],
                b"",
            ),
            413,
            "",
        ),
        (
            "streamed body over the limit",
            post_multipart(
                &server.endpoint(),
                "/sync/meta",
                &multipart(&[("k", key.as_bytes()), ("c", b"0"), ("data", &big)]),
            ),
            413,
            "",
        ),
        (
            "gzip bomb",
            post_multipart(
                &server.endpoint(),
                "/sync/meta",
                &multipart(&[("k", key.as_bytes()), ("c", b"1"), ("data", &bomb)]),
            ),
            413,
            "",
        ),
        (
            "JSON that does not parse",
            post_multipart(
                &server.endpoint(),
                "/sync/meta",
                &multipart(&[("k", key.as_bytes()), ("c", b"0"), ("data", b"{")]),
            ),
            400,
            "invalid request body",
        ),
        (
            "login without a password",
            post_multipart(
                &server.endpoint(),
                "/sync/hostKey",
                &multipart(&[("c", b"0"), ("data", br#"{"u":"user"}"#)]),
            ),
            400,
            "missing field",
        ),
        (
            "meta from a client speaking version 5",
            post_multipart(
                &server.endpoint(),
                "/sync/meta",
                &multipart(&[
                    ("k", key.as_bytes()),
                    ("c", b"0"),
                    ("data", br#"{"v":5,"cv":"old"}"#),
                ]),
            ),
            501,
            "",
        ),
        (
            "unknown host key",
            post_multipart(
                &server.endpoint(),
                "/sync/meta",
                &multipart(&[("k", b"feedface"), ("c", b"0"), ("data", br#"{"v":10}"#)]),
            ),
            403,
            "",
        ),
        (
            "unknown method",
            http_request(
                &endpoint,
                "POST",
                "/sync/nope",
                &[("anki-sync", &modern_header(&key, 11))],
                &zstd_json,
            ),
            404,
            "",
        ),
    ];
    for (name, (status, body), expected, text) in cases {
        assert_eq!(status, expected, "{name}: {body}");
        assert!(
            body.contains(text),
            "{name}: the message says what is wrong: {body:?}"
        );
        assert_eq!(
            http_get(&endpoint, "/health").0,
            200,
            "{name}: still serving"
        );
    }

    // The well-formed request still works, in both envelopes.
    let (status, body) = post_multipart(
        &server.endpoint(),
        "/sync/meta",
        &multipart(&[
            ("k", key.as_bytes()),
            ("c", b"0"),
            ("data", br#"{"v":10,"cv":"x"}"#),
        ]),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""empty":true"#), "{body}");
    let mut device = Device::new(ClientVersion::Current);
    device.login("user", "pass", &endpoint).unwrap();
    device.add_notes(1, "n");
    assert_eq!(device.sync().unwrap().required, ChangesRequired::FullUpload);

    // Nothing was created or changed: one user, the two devices that logged in properly.
    server.stop();
    let (status, out, _) = server.run_cli(&["user", "list"], "");
    assert!(status.success());
    let users: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(users.len(), 1, "{out}");
    assert_eq!(users[0].split_whitespace().nth(2), Some("2"), "{out}");
    assert!(!server.log().contains("panicked"), "{}", server.log());
}
