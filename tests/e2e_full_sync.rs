//! Full sync (one-way upload and download of the whole collection) with the official client.
//!
//! Each scenario is written once, generic over [`SyncServer`], and run twice: `official_*`
//! against the official server proves the scenario and the harness, `ours_*` holds
//! `ankisyncd` to the same story. Collections carry realistic content
//! (`Device::add_rich_content`), and devices are compared row by row after the transfer.

mod support;

use std::collections::BTreeMap;

use serde_json::Value;
use support::{
    make_dataset, ChangesRequired, ClientVersion, CollectionDump, Device, OfficialServer, Server,
    ServerOptions, SyncServer,
};

const USER: &str = "user";
const PASSWORD: &str = "pass";

fn ours() -> Server {
    Server::start(ServerOptions::with_user(USER, PASSWORD))
}

fn official() -> OfficialServer {
    OfficialServer::start(ServerOptions::with_user(USER, PASSWORD))
}

fn device(version: ClientVersion, server: &impl SyncServer) -> Device {
    let mut device = Device::new(version);
    device.login(USER, PASSWORD, &server.endpoint()).unwrap();
    device
}

fn required(device: &mut Device) -> ChangesRequired {
    device.sync().unwrap().required
}

/// What two client versions store alike: rows, config values, tags, and decks and
/// notetypes by name with their fields and templates (each version shapes the JSON of
/// decks, notetypes and deck options its own way).
#[derive(Debug, PartialEq)]
struct PortableDump {
    notes: Vec<support::NoteRow>,
    cards: Vec<support::CardRow>,
    revlog: Vec<support::RevlogRow>,
    deck_names: Vec<String>,
    notetypes: BTreeMap<String, (Vec<Value>, Vec<Value>, Value)>,
    deck_config_names: Vec<String>,
    tags: Vec<String>,
    config: BTreeMap<String, Value>,
}

impl From<CollectionDump> for PortableDump {
    fn from(dump: CollectionDump) -> Self {
        let names = |items: &Value, key: &str| -> Vec<Value> {
            let items = items.as_array().expect("a list");
            items.iter().map(|item| item[key].clone()).collect()
        };
        PortableDump {
            notes: dump.notes,
            cards: dump.cards,
            revlog: dump.revlog,
            deck_names: dump.decks.into_keys().collect(),
            notetypes: dump
                .notetypes
                .into_iter()
                .map(|(name, nt)| {
                    let shape = (
                        names(&nt["flds"], "name"),
                        names(&nt["tmpls"], "name"),
                        nt["css"].clone(),
                    );
                    (name, shape)
                })
                .collect(),
            deck_config_names: dump.deck_configs.into_keys().collect(),
            tags: dump.tags,
            config: dump.config,
        }
    }
}

/// Asserts that `a` and `b` hold the same collection, as far as their versions allow.
fn assert_same_collection(a: &mut Device, b: &mut Device) {
    let (dump_a, dump_b) = (a.dump(), b.dump());
    if a.version() == b.version() {
        assert_eq!(dump_a, dump_b);
    } else {
        assert_eq!(PortableDump::from(dump_a), PortableDump::from(dump_b));
    }
}

/// A uploads a rich collection; the server restarts; B, new, must download it and ends up
/// with the same collection; afterwards both are in step with the server.
fn upload_then_download(
    server: &mut impl SyncServer,
    uploader: ClientVersion,
    downloader: ClientVersion,
) {
    let mut a = device(uploader, server);
    let added = a.add_rich_content("from A");
    // A new account holds an empty collection: the client decides on an upload itself.
    assert_eq!(required(&mut a), ChangesRequired::FullUpload);
    a.full_upload().unwrap();
    assert_eq!(required(&mut a), ChangesRequired::NoChanges);

    // The upload must be on disk, not just in memory.
    let endpoint = server.restart();
    a.set_endpoint(&endpoint);

    let mut b = device(downloader, server);
    assert_eq!(required(&mut b), ChangesRequired::FullDownload);
    b.full_download().unwrap();
    assert_eq!(b.note_count(), added);
    assert_same_collection(&mut a, &mut b);

    assert_eq!(required(&mut a), ChangesRequired::NoChanges);
    assert_eq!(required(&mut b), ChangesRequired::NoChanges);
    assert_same_collection(&mut a, &mut b);
}

/// A full upload replaces whatever the server held: first from a device that never synced
/// and holds other content, then from a device in step with the server that forces a
/// one-way sync. Every other device then has to download the newest upload.
fn a_later_upload_replaces_the_collection(server: &mut impl SyncServer) {
    let mut a = device(ClientVersion::Current, server);
    a.add_rich_content("from A");
    assert_eq!(required(&mut a), ChangesRequired::FullUpload);
    a.full_upload().unwrap();

    // Both sides hold a collection the other has never seen: the user must choose.
    let mut c = device(ClientVersion::Current, server);
    c.add_rich_content("from C");
    assert_eq!(required(&mut c), ChangesRequired::FullSync);
    c.full_upload().unwrap();
    assert_eq!(required(&mut c), ChangesRequired::NoChanges);

    let mut d = device(ClientVersion::Current, server);
    assert_eq!(required(&mut d), ChangesRequired::FullDownload);
    d.full_download().unwrap();
    assert_same_collection(&mut c, &mut d);
    let texts: Vec<String> = d.dump().notes.into_iter().map(|n| n.flds).collect();
    assert!(texts.iter().any(|t| t.contains("from C")), "{texts:?}");
    assert!(!texts.iter().any(|t| t.contains("from A")), "{texts:?}");

    // A's collection no longer matches the server's schema: a one-way sync is due.
    assert_eq!(required(&mut a), ChangesRequired::FullSync);
    a.full_download().unwrap();
    assert_same_collection(&mut a, &mut d);

    // A device in step with the server forces its own collection onto it.
    d.add_notes(2, "from D");
    d.force_full_sync();
    assert_eq!(required(&mut d), ChangesRequired::FullSync);
    d.full_upload().unwrap();
    assert_eq!(required(&mut c), ChangesRequired::FullSync);
    c.full_download().unwrap();
    assert_same_collection(&mut c, &mut d);
    assert_eq!(c.note_count(), d.note_count());
    assert_eq!(required(&mut a), ChangesRequired::FullSync);
}

/// A generated collection (the benchmarks' input, here small) travels intact: proves that
/// `make_dataset.py` writes collections the client and server accept.
fn a_generated_dataset_round_trips(server: &mut impl SyncServer) {
    let dir = tempfile::TempDir::new().expect("create the dataset directory");
    let path = dir.path().join("dataset.anki2");
    let summary = make_dataset(&path, 2_000, 1);
    assert_eq!(summary["notes"], 2_000, "{summary}");

    let mut a = device(ClientVersion::Current, server);
    assert_eq!(a.open_dataset(&path), 2_000);
    assert_eq!(required(&mut a), ChangesRequired::FullUpload);
    a.full_upload().unwrap();

    let mut b = device(ClientVersion::Current, server);
    assert_eq!(required(&mut b), ChangesRequired::FullDownload);
    b.full_download().unwrap();
    assert_eq!(b.card_count(), 4_000);
    assert_same_collection(&mut a, &mut b);
}

#[test]
fn official_current_uploads_and_current_downloads() {
    upload_then_download(
        &mut official(),
        ClientVersion::Current,
        ClientVersion::Current,
    );
}

#[test]
fn official_legacy_uploads_and_current_downloads() {
    upload_then_download(
        &mut official(),
        ClientVersion::Legacy,
        ClientVersion::Current,
    );
}

#[test]
fn official_current_uploads_and_legacy_downloads() {
    upload_then_download(
        &mut official(),
        ClientVersion::Current,
        ClientVersion::Legacy,
    );
}

#[test]
fn official_a_later_upload_replaces_the_collection() {
    a_later_upload_replaces_the_collection(&mut official());
}

#[test]
fn official_a_generated_dataset_round_trips() {
    a_generated_dataset_round_trips(&mut official());
}

#[test]
fn ours_current_uploads_and_current_downloads() {
    upload_then_download(&mut ours(), ClientVersion::Current, ClientVersion::Current);
}

#[test]
fn ours_legacy_uploads_and_current_downloads() {
    upload_then_download(&mut ours(), ClientVersion::Legacy, ClientVersion::Current);
}

#[test]
fn ours_current_uploads_and_legacy_downloads() {
    upload_then_download(&mut ours(), ClientVersion::Current, ClientVersion::Legacy);
}

#[test]
fn ours_a_later_upload_replaces_the_collection() {
    a_later_upload_replaces_the_collection(&mut ours());
}

#[test]
fn ours_a_generated_dataset_round_trips() {
    a_generated_dataset_round_trips(&mut ours());
}

/// Later devices get the download built for the first one, from the cache: the plain file
/// for a legacy client, the stored compressed copy for a current one.
#[test]
fn ours_cached_downloads_serve_both_kinds_of_client() {
    let server = ours();
    let mut a = device(ClientVersion::Current, &server);
    a.add_rich_content("cached");
    assert_eq!(required(&mut a), ChangesRequired::FullUpload);
    a.full_upload().unwrap();
    let mut first = device(ClientVersion::Current, &server);
    first.full_download().unwrap();
    let mut legacy = device(ClientVersion::Legacy, &server);
    legacy.full_download().unwrap();
    let mut current = device(ClientVersion::Current, &server);
    current.full_download().unwrap();
    // The first may also come from the cache: a download is prepared right after an upload.
    assert!(server.log().matches("full download from the cache").count() >= 2);
    assert_eq!(a.dump(), first.dump());
    assert_eq!(a.dump(), current.dump());
    assert_eq!(
        PortableDump::from(a.dump()),
        PortableDump::from(legacy.dump())
    );
}
