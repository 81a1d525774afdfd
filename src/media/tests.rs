//! The media methods over a real store, without HTTP: every refused upload changes nothing,
//! and what goes up comes down byte for byte.

use std::io::{Cursor, Read, Write};

use proptest::prelude::*;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

use super::changes::MediaChangesRequest;
use super::sanity::MediaSanityRequest;
use super::upload::UploadChangesReply;
use super::*;
use crate::store::{temp_store, Store};

fn state(id: u64) -> MediaState {
    MediaState::new(&UserRef::new(id, "alice"))
}

fn store_with_user() -> (tempfile::TempDir, Store) {
    let (dir, store) = temp_store();
    store.set_user("alice", "h", 0).unwrap();
    store.set_user("bob", "h", 0).unwrap();
    (dir, store)
}

/// A zip of `(entry name, bytes, method)` plus a `_meta` entry holding `meta` verbatim.
fn zip_with(entries: &[(&str, &[u8], CompressionMethod)], meta: &str) -> Vec<u8> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    for (name, bytes, method) in entries {
        zip.start_file(
            *name,
            SimpleFileOptions::default().compression_method(*method),
        )
        .unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.start_file(
        "_meta",
        SimpleFileOptions::default().compression_method(CompressionMethod::Stored),
    )
    .unwrap();
    zip.write_all(meta.as_bytes()).unwrap();
    zip.finish().unwrap().into_inner()
}

/// A zip as the client builds it: `changes` are `(name, Some(bytes))` adds and
/// `(name, None)` deletes.
fn client_zip(changes: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
    let mut entries = Vec::new();
    let mut meta = Vec::new();
    for (i, (name, bytes)) in changes.iter().enumerate() {
        match bytes {
            Some(bytes) => {
                entries.push((i.to_string(), *bytes));
                meta.push(serde_json::json!([name, i.to_string()]));
            }
            None => meta.push(serde_json::json!([name, null])),
        }
    }
    let entries: Vec<(&str, &[u8], CompressionMethod)> = entries
        .iter()
        .map(|(n, b)| (n.as_str(), *b, CompressionMethod::Stored))
        .collect();
    zip_with(&entries, &serde_json::to_string(&meta).unwrap())
}

/// Upload `zip` as received in memory (as most zips are).
fn upload(store: &Store, user: u64, zip: &[u8]) -> Result<(usize, i32), MediaError> {
    upload_from(store, user, UploadSource::Memory(zip.to_vec()))
}

/// Upload `zip` as received into a scratch file (as zips past `ZIP_IN_MEMORY` are).
fn upload_from_file(store: &Store, user: u64, zip: &[u8]) -> Result<(usize, i32), MediaError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upload.zip");
    std::fs::write(&path, zip).unwrap();
    upload_from(store, user, UploadSource::File(path))
}

fn upload_from(store: &Store, user: u64, zip: UploadSource) -> Result<(usize, i32), MediaError> {
    match upload_changes(store, &state(user), zip, None)? {
        UploadChangesReply::Applied(reply) => Ok(reply.data),
        UploadChangesReply::Refused(refusal) => panic!("refused: {}", refusal.err),
    }
}

/// Upload a bad `zip` from memory and from a file: both are refused the same way and change
/// nothing.
fn refused(store: &Store, zip: &[u8]) -> BadUpload {
    let before = (store.media_status(1).unwrap(), store.blob_stats().unwrap());
    let refusal = |result| match result {
        Err(MediaError::BadUpload(e)) => e,
        other => panic!("expected a refused upload, got {other:?}"),
    };
    let err = refusal(upload(store, 1, zip));
    let from_file = refusal(upload_from_file(store, 1, zip));
    assert_eq!(err.to_string(), from_file.to_string());
    let after = (store.media_status(1).unwrap(), store.blob_stats().unwrap());
    assert_eq!(before, after, "a refused upload changed the store ({err})");
    err
}

fn download(
    store: &Store,
    user: u64,
    names: &[&str],
) -> Result<Vec<(String, Vec<u8>)>, MediaError> {
    let dir = tempfile::tempdir().unwrap();
    let request = DownloadFilesRequest {
        files: names.iter().map(|n| n.to_string()).collect(),
    };
    let bytes = match download_files(store, &state(user), &request, &dir.path().join("d.zip"))? {
        DownloadZip::Memory(bytes) => bytes,
        DownloadZip::File { mut file, len } => {
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).unwrap();
            assert_eq!(bytes.len() as u64, len);
            bytes
        }
    };
    let mut archive = ZipArchive::new(Cursor::new(bytes)).unwrap();
    let mut meta = String::new();
    archive
        .by_name("_meta")
        .unwrap()
        .read_to_string(&mut meta)
        .unwrap();
    let meta: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&meta).unwrap();
    assert_eq!(
        archive.len(),
        meta.len() + 1,
        "every entry is listed in _meta"
    );
    let mut out = Vec::new();
    for i in 0..meta.len() {
        let entry = i.to_string();
        let mut file = archive.by_name(&entry).unwrap();
        assert_eq!(file.compression(), CompressionMethod::Stored);
        let mut data = Vec::new();
        file.read_to_end(&mut data).unwrap();
        out.push((meta[&entry].as_str().unwrap().to_string(), data));
    }
    Ok(out)
}

/// Set the declared (uncompressed) size of the first entry, in its local header and in
/// the central directory, as a lying client would.
fn declare_size(zip: &mut [u8], size: u32) {
    let local = zip.windows(4).position(|w| w == b"PK\x03\x04").unwrap();
    zip[local + 22..local + 26].copy_from_slice(&size.to_le_bytes());
    let central = zip.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
    zip[central + 24..central + 28].copy_from_slice(&size.to_le_bytes());
}

#[test]
fn an_upload_is_applied_in_meta_order_and_answers_processed_and_usn() {
    let (_dir, store) = store_with_user();
    let reply = upload(
        &store,
        1,
        &client_zip(&[
            ("a.jpg", Some(b"aaa")),
            ("b.mp3", Some(b"bb")),
            ("gone", None),
        ]),
    );
    assert_eq!(reply.unwrap(), (3, 2));
    // Deflated entries (older clients) and "" deletions (AnkiDroid) are accepted.
    let zip = zip_with(
        &[("0", &b"cccccccccccccccc"[..], CompressionMethod::Deflated)],
        r#"[["c.txt","0"],["a.jpg",""]]"#,
    );
    assert_eq!(upload_from_file(&store, 1, &zip).unwrap(), (2, 4));
    let files = download(&store, 1, &["c.txt", "b.mp3"]).unwrap();
    assert_eq!(
        files,
        vec![
            ("c.txt".into(), b"cccccccccccccccc".to_vec()),
            ("b.mp3".into(), b"bb".to_vec())
        ]
    );
}

#[test]
fn zips_that_are_not_zips_are_refused() {
    let (_dir, store) = store_with_user();
    assert!(matches!(refused(&store, b"hello"), BadUpload::NotAZip(_)));
    assert!(matches!(refused(&store, b""), BadUpload::NotAZip(_)));
    let zip = client_zip(&[("a.jpg", Some(&[7u8; 5000]))]);
    for cut in [zip.len() / 2, zip.len() - 10, 30] {
        assert!(
            matches!(refused(&store, &zip[..cut]), BadUpload::NotAZip(_)),
            "cut at {cut}"
        );
    }
}

#[test]
fn meta_must_exist_parse_and_agree_with_the_entries() {
    let (_dir, store) = store_with_user();
    let mut no_meta = ZipWriter::new(Cursor::new(Vec::new()));
    no_meta
        .start_file("0", SimpleFileOptions::default())
        .unwrap();
    no_meta.write_all(b"x").unwrap();
    let no_meta = no_meta.finish().unwrap().into_inner();
    assert_eq!(refused(&store, &no_meta), BadUpload::NoMeta);
    assert!(matches!(
        refused(&store, &zip_with(&[], "{}")),
        BadUpload::BadMeta(_)
    ));
    assert!(matches!(
        refused(&store, &zip_with(&[], "[[1,2]]")),
        BadUpload::BadMeta(_)
    ));
    assert!(matches!(
        refused(&store, &zip_with(&[], "not json")),
        BadUpload::BadMeta(_)
    ));
    assert_eq!(
        refused(&store, &zip_with(&[], r#"[["a.jpg","0"]]"#)),
        BadUpload::MissingEntry("0".into())
    );
    let empty = zip_with(
        &[("0", b"", CompressionMethod::Stored)],
        r#"[["a.jpg","0"]]"#,
    );
    assert_eq!(refused(&store, &empty), BadUpload::EmptyEntry("0".into()));
    let many: Vec<String> = (0..26).map(|i| format!(r#"["f{i}",null]"#)).collect();
    let many = zip_with(&[], &format!("[{}]", many.join(",")));
    assert_eq!(refused(&store, &many), BadUpload::TooManyFiles(26));
    let names: Vec<String> = (0..26).map(|i| i.to_string()).collect();
    let entries: Vec<(&str, &[u8], CompressionMethod)> = names
        .iter()
        .map(|n| (n.as_str(), &b"x"[..], CompressionMethod::Stored))
        .collect();
    assert_eq!(
        refused(&store, &zip_with(&entries, "[]")),
        BadUpload::TooManyEntries(27)
    );
}

#[test]
fn bad_filenames_are_refused_and_nothing_of_the_zip_is_kept() {
    let (_dir, store) = store_with_user();
    let long = "a".repeat(256);
    let decomposed = "cafe\u{301}.jpg";
    for name in [
        "a/b.jpg",
        "a\\b.jpg",
        "..",
        ".",
        "",
        "nul\0.jpg",
        long.as_str(),
        decomposed,
    ] {
        // A good file first: it must not be stored either.
        let zip = client_zip(&[("good.jpg", Some(b"good")), (name, Some(b"bad"))]);
        match refused(&store, &zip) {
            BadUpload::BadName {
                name: refused_name, ..
            } => assert_eq!(refused_name, name),
            other => panic!("{name:?}: {other}"),
        }
    }
}

#[test]
fn lying_sizes_bombs_and_bad_checksums_are_refused() {
    let (_dir, store) = store_with_user();
    // Declared larger than it is.
    let mut zip = client_zip(&[("a.jpg", Some(&[1u8; 1000]))]);
    declare_size(&mut zip, 2000);
    assert!(matches!(
        refused(&store, &zip),
        BadUpload::SizeMismatch { .. } | BadUpload::Corrupt { .. }
    ),);
    // Declared smaller than it is.
    let mut zip = client_zip(&[("a.jpg", Some(&[1u8; 1000]))]);
    declare_size(&mut zip, 10);
    assert!(matches!(
        refused(&store, &zip),
        BadUpload::SizeMismatch { .. } | BadUpload::Corrupt { .. }
    ),);
    // Declared over 100 MiB: refused before reading.
    let mut zip = client_zip(&[("a.jpg", Some(&[1u8; 1000]))]);
    declare_size(&mut zip, 200 * 1024 * 1024);
    assert!(matches!(refused(&store, &zip), BadUpload::TooLarge { .. }));
    // 16 MiB of zeros deflate to a few KiB.
    let zeros = vec![0u8; 16 * 1024 * 1024];
    let bomb = zip_with(
        &[("0", &zeros, CompressionMethod::Deflated)],
        r#"[["a.bin","0"]]"#,
    );
    assert!(matches!(refused(&store, &bomb), BadUpload::Bomb { .. }));
    // A flipped data byte fails the CRC.
    let mut zip = client_zip(&[("a.jpg", Some(b"0123456789abcdef"))]);
    let at = zip
        .windows(16)
        .position(|w| w == b"0123456789abcdef")
        .unwrap();
    zip[at + 3] ^= 0xff;
    assert!(matches!(refused(&store, &zip), BadUpload::Corrupt { .. }));
}

#[test]
fn a_file_over_100_mib_is_refused() {
    let (_dir, store) = store_with_user();
    let big = vec![9u8; (MAX_FILE_SIZE + 1) as usize];
    let zip = zip_with(
        &[("0", &big, CompressionMethod::Stored)],
        r#"[["big.bin","0"]]"#,
    );
    assert!(matches!(refused(&store, &zip), BadUpload::TooLarge { .. }));
}

#[test]
fn downloads_follow_the_size_cutoff_and_refuse_unknown_files() {
    let (_dir, store) = store_with_user();
    let mib: Vec<u8> = (0..1024 * 1024).map(|i| (i % 253) as u8).collect();
    let names = ["1", "2", "3", "4", "5"];
    let changes: Vec<(&str, Option<&[u8]>)> = names.iter().map(|n| (*n, Some(&mib[..]))).collect();
    upload(&store, 1, &client_zip(&changes)).unwrap();
    let got = download(&store, 1, &names).unwrap();
    // 1 + 1 = 2 MiB is under 2.5; the third file crosses it and is the last one sent.
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|(_, data)| *data == mib));
    assert_eq!(got[2].0, "3");
    upload(&store, 1, &client_zip(&[("2", None)])).unwrap();
    assert!(
        matches!(download(&store, 1, &["1", "2"]), Err(MediaError::NotOnServer(n)) if n == "2")
    );
    assert!(matches!(
        download(&store, 1, &["nope"]),
        Err(MediaError::NotOnServer(_))
    ));
    assert!(
        matches!(download(&store, 2, &["1"]), Err(MediaError::NotOnServer(_))),
        "bob has none"
    );
    let many: Vec<String> = (0..26).map(|i| i.to_string()).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert!(matches!(
        download(&store, 1, &many),
        Err(MediaError::BadRequest(_))
    ));
}

#[test]
fn a_zip_past_8_mib_is_built_in_a_file_and_smaller_ones_in_memory() {
    let (_dir, store) = store_with_user();
    let big: Vec<u8> = (0..9 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    upload(
        &store,
        1,
        &client_zip(&[("big", Some(&big[..])), ("small", Some(b"x"))]),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let zip_of = |names: &[&str]| {
        let request = DownloadFilesRequest {
            files: names.iter().map(|n| n.to_string()).collect(),
        };
        download_files(&store, &state(1), &request, &dir.path().join("d.zip")).unwrap()
    };
    assert!(matches!(zip_of(&["small"]), DownloadZip::Memory(_)));
    assert!(matches!(zip_of(&["big"]), DownloadZip::File { .. }));
    let got = download(&store, 1, &["small", "big"]).unwrap();
    assert_eq!(
        got,
        vec![
            ("small".to_string(), b"x".to_vec()),
            ("big".to_string(), big)
        ]
    );
}

#[test]
fn json_replies_have_the_official_shapes() {
    let (_dir, store) = store_with_user();
    let s = state(1);
    let missing = begin(
        &store,
        &s,
        &BeginRequest {
            client_version: String::new(),
        },
        "k".into(),
    );
    assert!(matches!(missing, Err(MediaError::BadRequest(_))));
    let ok = begin(
        &store,
        &s,
        &BeginRequest {
            client_version: "26.09".into(),
        },
        "hk".into(),
    )
    .unwrap();
    assert_eq!(
        serde_json::to_string(&ok).unwrap(),
        r#"{"data":{"usn":0,"sk":"hk"},"err":""}"#
    );
    upload(
        &store,
        1,
        &client_zip(&[("a", Some(b"x")), ("b", Some(b"y"))]),
    )
    .unwrap();
    upload(&store, 1, &client_zip(&[("b", None)])).unwrap();
    let changes = media_changes(&store, &s, &MediaChangesRequest { last_usn: 0 }).unwrap();
    assert_eq!(
        serde_json::to_string(&changes).unwrap(),
        r#"{"data":[["a",1,"11f6ad8ec52a2984abaafd7c3b516503785c2072"],["b",3,""]],"err":""}"#
    );
    let sanity = |local| {
        serde_json::to_string(&media_sanity(&store, &s, &MediaSanityRequest { local }).unwrap())
            .unwrap()
    };
    assert_eq!(sanity(1), r#"{"data":"OK","err":""}"#);
    assert_eq!(sanity(2), r#"{"data":"mediaSanity","err":""}"#);
    let reply = upload_changes_json(&store);
    assert_eq!(reply, r#"{"data":[1,4],"err":""}"#);
}

fn upload_changes_json(store: &Store) -> String {
    let zip = UploadSource::Memory(client_zip(&[("c", Some(b"z"))]));
    serde_json::to_string(&upload_changes(store, &state(1), zip, None).unwrap()).unwrap()
}

#[test]
fn an_upload_over_the_media_quota_is_refused_whole_with_a_message() {
    let (_dir, store) = temp_store();
    store.set_user("u", "h", 0).unwrap();
    let upload_with_quota = |zip: &[u8], quota: u64| {
        let zip = UploadSource::Memory(zip.to_vec());
        serde_json::to_value(upload_changes(&store, &state(1), zip, Some(quota)).unwrap()).unwrap()
    };
    let reply = upload_with_quota(&client_zip(&[("a", Some(&[1u8; 600][..]))]), 1000);
    assert_eq!(reply, serde_json::json!({"data": [1, 1], "err": ""}));

    let before = (store.media_status(1).unwrap(), store.blob_stats().unwrap());
    let zip = client_zip(&[("b", Some(&[2u8; 300][..])), ("c", Some(&[3u8; 300][..]))]);
    let reply = upload_with_quota(&zip, 1000);
    let err = reply["err"].as_str().unwrap();
    assert_eq!(reply.as_object().unwrap().len(), 1, "no data: {reply}");
    assert!(err.contains("quota of 0.0 MB"), "{err}");
    let after = (store.media_status(1).unwrap(), store.blob_stats().unwrap());
    assert_eq!(before, after, "nothing of the refused zip is stored");

    // Deleting while over a lowered quota is still allowed.
    let reply = upload_with_quota(&client_zip(&[("a", None)]), 100);
    assert_eq!(reply, serde_json::json!({"data": [1, 2], "err": ""}));
}

/// Whatever arrives as an upload, the server answers; it never panics. One store for all
/// cases: creating a database per case would dominate the run time.
#[test]
fn arbitrary_bytes_as_an_upload_never_panic() {
    let (_dir, store) = store_with_user();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(512));
    runner
        .run(&proptest::collection::vec(any::<u8>(), 0..2048), |bytes| {
            let _ = upload(&store, 1, &bytes);
            Ok(())
        })
        .unwrap();
}

/// A real zip damaged anywhere is refused whole, or (when the damage missed everything that
/// matters) taken whole; it never panics.
#[test]
fn damaged_zips_never_panic() {
    let (_dir, store) = store_with_user();
    let zip = client_zip(&[
        ("a.jpg", Some(b"0123456789")),
        ("b.jpg", None),
        ("c.jpg", Some(b"xyz")),
    ]);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(512));
    runner
        .run(&(0..zip.len(), any::<u8>()), |(at, value)| {
            let mut damaged = zip.clone();
            damaged[at] = value;
            let before = store.media_status(1).unwrap().unwrap().last_usn;
            match upload(&store, 1, &damaged) {
                Ok((processed, _)) => prop_assert_eq!(processed, 3),
                Err(_) => prop_assert_eq!(store.media_status(1).unwrap().unwrap().last_usn, before),
            }
            Ok(())
        })
        .unwrap();
}
