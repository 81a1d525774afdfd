//! Running behind a reverse proxy and being friendly about it: a `path_prefix`, the URL
//! shapes real clients produce when users type addresses, the `/` page, `/metrics` counting
//! what real syncs did, `ankisyncd healthcheck`, and compatibility notes in the log.

mod support;

use std::collections::BTreeMap;

use support::{
    http_get, http_request, ChangesRequired, ClientVersion, Device, Server, ServerOptions,
};

const USER: &str = "user";
const PASSWORD: &str = "pass";

fn server(env: &[(&str, &str)]) -> Server {
    let mut options = ServerOptions::with_user(USER, PASSWORD);
    for (k, v) in env {
        options.env(k, v);
    }
    Server::start(options)
}

fn device(version: ClientVersion, endpoint: &str) -> Device {
    let mut device = Device::new(version);
    device.login(USER, PASSWORD, endpoint).unwrap();
    device
}

/// `/metrics` as series → value.
fn metrics(server: &Server) -> BTreeMap<String, f64> {
    let (status, page) = http_get(&server.endpoint(), "/metrics");
    assert_eq!(status, 200, "{page}");
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn value(metrics: &BTreeMap<String, f64>, series: &str) -> f64 {
    metrics.get(series).copied().unwrap_or(0.0)
}

/// The server's own request log: (method, status) → number of requests.
fn logged_requests(server: &Server) -> BTreeMap<(String, u16), usize> {
    let mut counts = BTreeMap::new();
    for line in server.log().lines().filter(|l| l.contains(" request ")) {
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(&format!("{name}=")))
                .map(str::to_string)
        };
        if let (Some(method), Some(status)) = (field("method"), field("status")) {
            *counts.entry((method, status.parse().unwrap())).or_default() += 1;
        }
    }
    counts
}

/// Every address a user might type for a server under `/anki`: the exact one, the sync
/// URL itself (`…/sync/`), no trailing slash (the client then drops `anki`), doubled
/// slashes, and the server root. Media goes through the same addresses.
#[test]
fn a_path_prefix_and_the_addresses_users_type() {
    let server = server(&[("ANKISYNCD_PATH_PREFIX", "/anki/")]);
    let root = server.endpoint();
    let exact = format!("{root}anki/");
    let mut a = device(ClientVersion::Current, &exact);
    a.add_notes(4, "prefixed");
    a.write_media(&[("one.jpg", 3000, 1)]);
    assert_eq!(a.sync().unwrap().required, ChangesRequired::FullUpload);
    a.full_upload().unwrap();
    a.sync_media().unwrap();

    for endpoint in [
        format!("{root}anki/sync/"),
        format!("{root}anki"),
        format!("{root}anki//"),
        root.clone(),
    ] {
        let mut b = device(ClientVersion::Current, &endpoint);
        assert_eq!(
            b.sync().unwrap().required,
            ChangesRequired::FullDownload,
            "{endpoint}"
        );
        b.full_download().unwrap();
        b.sync_media().unwrap();
        assert_eq!(a.dump(), b.dump(), "{endpoint}");
        assert_eq!(a.media_files(), b.media_files(), "{endpoint}");
    }
    let mut legacy = device(ClientVersion::Legacy, &format!("{root}anki/sync/"));
    assert_eq!(
        legacy.sync().unwrap().required,
        ChangesRequired::FullDownload
    );
    legacy.full_download().unwrap();
    assert_eq!(legacy.note_count(), 4);

    // Anything else under the prefix is not ours.
    let (status, _) = http_request(&root, "POST", "/other/sync/meta", &[], b"");
    assert_eq!(status, 404);
}

#[test]
fn the_index_page_names_the_address_for_each_app() {
    let server = server(&[("ANKISYNCD_PATH_PREFIX", "anki")]);
    let root = server.endpoint();
    let (status, page) = http_get(&root, "/anki/");
    assert_eq!(status, 200);
    let url = format!("{root}anki/");
    assert!(page.contains(env!("CARGO_PKG_VERSION")), "{page}");
    assert!(page.contains(", 1 user)"), "{page}");
    assert!(
        page.contains(&format!("Self-hosted sync server: {url}\n")),
        "{page}"
    );
    assert!(
        page.contains(&format!("media sync URL {url}msync/\n")),
        "{page}"
    );

    // Behind a TLS-terminating proxy, the page gives the address the visitor used.
    let (status, page) = http_request(
        &root,
        "GET",
        "/anki",
        &[
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "anki.example.org, inner"),
        ],
        b"",
    );
    assert_eq!(status, 200);
    assert!(
        page.contains("Self-hosted sync server: https://anki.example.org/anki/\n"),
        "{page}"
    );
}

/// After real syncs of every kind, `/metrics` counts exactly what happened: the syncs the
/// test made, and every request the server's own log lists.
#[test]
fn metrics_agree_with_real_syncs() {
    let server = server(&[("ANKISYNCD_METRICS_PER_USER", "true")]);
    let endpoint = server.endpoint();
    let mut a = device(ClientVersion::Current, &endpoint);
    a.add_notes(30, "metered");
    a.write_media(&[("a.png", 5000, 7), ("b.png", 7000, 8)]);
    assert_eq!(a.sync().unwrap().required, ChangesRequired::FullUpload);
    a.full_upload().unwrap();
    a.sync_media().unwrap();
    let mut b = device(ClientVersion::Current, &endpoint);
    assert_eq!(b.sync().unwrap().required, ChangesRequired::FullDownload);
    b.full_download().unwrap();
    b.sync_media().unwrap();
    b.add_notes(3, "from b");
    b.sync().unwrap();
    a.sync().unwrap();
    let mut legacy = device(ClientVersion::Legacy, &endpoint);
    assert_eq!(
        legacy.sync().unwrap().required,
        ChangesRequired::FullDownload
    );
    legacy.full_download().unwrap();
    assert_eq!(a.note_count(), 33);

    let m = metrics(&server);
    let get = |series: &str| value(&m, series);
    // b sent its notes and a fetched them: two normal syncs.
    let expected = [
        (r#"ankisyncd_full_syncs_total{direction="upload"}"#, 1.0),
        (r#"ankisyncd_full_syncs_total{direction="download"}"#, 2.0),
        (
            r#"ankisyncd_sync_duration_seconds_count{kind="full_upload"}"#,
            1.0,
        ),
        (
            r#"ankisyncd_sync_duration_seconds_count{kind="full_download"}"#,
            2.0,
        ),
        (
            r#"ankisyncd_sync_duration_seconds_count{kind="normal"}"#,
            2.0,
        ),
        (
            r#"ankisyncd_requests_total{method="sync/hostKey",status="200"}"#,
            3.0,
        ),
        (
            r#"ankisyncd_requests_total{method="sync/upload",status="200"}"#,
            1.0,
        ),
        (
            r#"ankisyncd_requests_total{method="sync/download",status="200"}"#,
            2.0,
        ),
        (
            r#"ankisyncd_requests_total{method="sync/finish",status="200"}"#,
            2.0,
        ),
        ("ankisyncd_users", 1.0),
        ("ankisyncd_sync_sessions", 0.0),
        (r#"ankisyncd_actors{supervisor="collection"}"#, 1.0),
        (r#"ankisyncd_actors{supervisor="media"}"#, 1.0),
    ];
    for (series, value) in expected {
        assert_eq!(get(series), value, "{series}");
    }
    assert!(get("ankisyncd_db_commit_duration_seconds_count") >= 3.0);
    assert!(m.contains_key(r#"ankisyncd_user_last_sync_age_seconds{user="user"}"#));

    // Every request the log lists, the metrics count (the scrape itself is counted after
    // its page is written, so it is not in the page).
    let logged = logged_requests(&server);
    let mut counted = BTreeMap::new();
    for (series, v) in &m {
        if let Some(labels) = series.strip_prefix("ankisyncd_requests_total{") {
            let method = labels.split('"').nth(1).unwrap().to_string();
            let status: u16 = labels.split('"').nth(3).unwrap().parse().unwrap();
            if method != "health" {
                counted.insert((method, status), *v as usize);
            }
        }
    }
    let logged: BTreeMap<_, _> = logged
        .into_iter()
        .filter(|((m, _), _)| m != "/health" && m != "/metrics")
        .collect();
    assert_eq!(counted, logged);
    // The upload's body as received: what the log says it read.
    let upload_bytes: f64 = server
        .log()
        .lines()
        .find(|l| l.contains("method=sync/upload"))
        .and_then(|l| {
            l.split_whitespace()
                .find_map(|f| f.strip_prefix("bytes_in="))
        })
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        get(r#"ankisyncd_received_bytes_total{method="sync/upload"}"#),
        upload_bytes
    );
    assert!(get(r#"ankisyncd_sent_bytes_total{method="sync/download"}"#) > 0.0);
}

#[test]
fn metrics_can_be_switched_off_and_name_no_user_by_default() {
    let server_default = server(&[]);
    let m = metrics(&server_default);
    assert!(m.keys().all(|k| !k.contains("user=")), "{m:?}");
    let off = server(&[("ANKISYNCD_METRICS", "false")]);
    assert_eq!(http_get(&off.endpoint(), "/metrics").0, 404);
}

#[test]
fn healthcheck_exits_0_when_healthy_and_1_when_not() {
    let mut server = server(&[("ANKISYNCD_PATH_PREFIX", "/anki")]);
    let port = server.port().to_string();
    let prefix = [("ANKISYNCD_PATH_PREFIX", "/anki")];
    let (status, stdout, stderr) =
        server.run_cli_with_env(&["--port", &port, "healthcheck"], "", &prefix);
    assert!(status.success(), "{stdout}{stderr}");
    assert_eq!(stdout.trim(), "healthy");
    server.stop();
    let (status, _, stderr) =
        server.run_cli_with_env(&["--port", &port, "healthcheck"], "", &prefix);
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("cannot reach 127.0.0.1"), "{stderr}");
}

/// Logins name the client and its protocol; real clients of both generations cause no
/// compatibility warning; a newer client, a newer protocol and an unknown field each cause
/// exactly one, however often they come.
#[test]
fn clients_are_named_at_login_and_surprises_warned_about_once() {
    let server = server(&[]);
    let endpoint = server.endpoint();
    let mut a = device(ClientVersion::Current, &endpoint);
    a.add_notes(2, "x");
    a.write_media(&[("m.png", 100, 1)]);
    assert_eq!(a.sync().unwrap().required, ChangesRequired::FullUpload);
    a.full_upload().unwrap();
    a.sync_media().unwrap();
    a.add_notes(1, "y");
    a.sync().unwrap();
    let mut legacy = device(ClientVersion::Legacy, &endpoint);
    legacy.sync().unwrap();
    legacy.full_download().unwrap();
    legacy.add_notes(1, "z");
    legacy.sync().unwrap();
    legacy.sync_media().unwrap();

    let log = server.log();
    let logins: Vec<&str> = log.lines().filter(|l| l.contains(" login ")).collect();
    assert_eq!(logins.len(), 2, "{log}");
    assert!(
        // The client pads its month: 26.09.3.
        logins[0].contains(r#"client="26.09.3,"#) && logins[0].contains("sync_version=11"),
        "{}",
        logins[0]
    );
    assert!(logins[1].contains("sync_version=10"), "{}", logins[1]);
    let warnings = |log: &str| -> Vec<String> {
        log.lines()
            .filter(|l| l.contains(" WARN ") && l.contains("compat"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(warnings(&log), Vec::<String>::new());

    let key = a.host_key();
    let meta = |header_extra: &str, client: &str, version: u8, body: &str| {
        let header =
            format!(r#"{{"v":{version},"k":"{key}","c":"{client}","s":"abc"{header_extra}}}"#);
        let body = zstd::encode_all(body.as_bytes(), 3).unwrap();
        http_request(
            &endpoint,
            "POST",
            "/sync/meta",
            &[("anki-sync", &header)],
            &body,
        )
        .0
    };
    let known = r#"{"v":11,"cv":"anki,26.9.3 (x),linux"}"#;
    for _ in 0..3 {
        let extra_field = r#"{"v":11,"cv":"anki,26.9.3 (x),linux","shiny":1}"#;
        assert_eq!(meta("", "26.9.3,x,linux", 11, extra_field), 200);
        let newer = r#"{"v":11,"cv":"anki,99.1.0 (x),linux"}"#;
        assert_eq!(meta("", "99.1.0,x,linux", 11, newer), 200);
        let newer_protocol = r#"{"v":12,"cv":"anki,99.1.0 (x),linux"}"#;
        assert_eq!(meta("", "99.1.0,x,linux", 12, newer_protocol), 400);
        assert_eq!(meta(r#","z":true"#, "26.9.3,x,linux", 11, known), 200);
    }
    let warned = warnings(&server.log());
    assert_eq!(warned.len(), 4, "{warned:#?}");
    assert!(
        warned[0].contains("`shiny`") && warned[0].contains("sync/meta"),
        "{}",
        warned[0]
    );
    assert!(warned[1].contains("Anki 99.1.0 is newer"), "{}", warned[1]);
    assert!(
        warned[2].contains("sync protocol version 12"),
        "{}",
        warned[2]
    );
    assert!(
        warned[3].contains("`z`") && warned[3].contains("anki-sync header"),
        "{}",
        warned[3]
    );
}
