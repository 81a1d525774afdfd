//! Per-user quotas with real clients: a full upload, a normal sync or a media upload that
//! would take the user over a limit is refused whole, the user's Anki shows why (quota and
//! current usage), and what fits goes through.

mod support;

use ankisyncd::store::Store;
use support::{ChangesRequired, ClientVersion, Device, Server, ServerOptions};

/// How the client raises a server's message (an upload's reply text, a media `err`, a
/// `meta` message): its generic backend error, carrying the text as it is.
const SERVER_MESSAGE: &str = "BackendError";

const USER: &str = "user";
const PASSWORD: &str = "pass";

fn server_with(quota_env: &str) -> Server {
    let mut options = ServerOptions::with_user(USER, PASSWORD);
    options.extra_env.push((quota_env.into(), "1".into()));
    Server::start(options)
}

fn device(server: &Server) -> Device {
    let mut device = Device::new(ClientVersion::Current);
    device.login(USER, PASSWORD, &server.endpoint()).unwrap();
    device
}

/// Notes with long fields: about 1.3 MB of collection data in all, over a 1 MiB quota.
fn add_a_lot(device: &mut Device) {
    device.add_notes_bulk(3_000, &"long field text ".repeat(12));
}

#[test]
fn the_collection_quota_refuses_uploads_and_syncs_that_grow_past_it() {
    let mut server = server_with("ANKISYNCD_QUOTA_COLLECTION_MEGS");
    let mut small = device(&server);
    small.add_notes(3, "small");
    assert_eq!(small.sync().unwrap().required, ChangesRequired::FullUpload);
    small.full_upload().unwrap();
    let kept = small.dump();

    // A full upload over the quota: the reply says why, and nothing changes.
    let mut big = device(&server);
    add_a_lot(&mut big);
    assert_eq!(big.sync().unwrap().required, ChangesRequired::FullSync);
    let failure = big.full_upload().unwrap_err();
    assert_eq!(failure.kind, SERVER_MESSAGE, "{failure}");
    assert!(failure.message.contains("quota of 1.0 MB"), "{failure}");
    assert!(failure.message.contains("now uses 0.0 MB"), "{failure}");
    assert_eq!(small.sync().unwrap().required, ChangesRequired::NoChanges);

    // A normal sync over the quota fails at its end with nothing stored; the next attempt
    // tells the user why.
    add_a_lot(&mut small);
    let failure = small.sync().unwrap_err();
    // The client shows a failed request by its status only.
    assert_eq!(failure.kind, "NETWORK", "{failure}");
    assert!(
        failure.message.contains("413 Payload Too Large"),
        "{failure}"
    );
    let failure = small.sync().unwrap_err();
    assert_eq!(failure.kind, SERVER_MESSAGE, "{failure}");
    assert!(failure.message.contains("quota of 1.0 MB"), "{failure}");
    assert!(failure.message.contains("now uses 0.0 MB"), "{failure}");

    let mut other = device(&server);
    assert_eq!(
        other.sync().unwrap().required,
        ChangesRequired::FullDownload
    );
    other.full_download().unwrap();
    assert_eq!(other.dump(), kept, "the refused sync left nothing behind");

    // What fits goes through.
    other.add_notes(2, "fits");
    assert_eq!(other.sync().unwrap().required, ChangesRequired::NoChanges);
    assert_eq!(other.note_count(), 5);
    server.stop();
    let store = Store::open(server.db_path()).unwrap();
    let record = store.collection(1).unwrap().unwrap();
    assert_eq!(record.counts.notes, 5);
    assert!(record.data_bytes.unwrap() < 1024 * 1024);
}

#[test]
fn the_media_quota_refuses_a_batch_that_grows_past_it() {
    let mut server = server_with("ANKISYNCD_QUOTA_MEDIA_MEGS");
    let mut device = device(&server);
    device.write_media(&[("small.bin", 100_000, 1)]);
    device.sync_media().unwrap();

    device.write_media(&[("big1.bin", 600_000, 2), ("big2.bin", 600_000, 3)]);
    let failure = device.sync_media().unwrap_err();
    assert_eq!(failure.kind, SERVER_MESSAGE, "{failure}");
    assert!(failure.message.contains("quota of 1.0 MB"), "{failure}");
    assert!(failure.message.contains("now uses 0.1 MB"), "{failure}");
    assert!(failure.message.contains("need 1.2 MB"), "{failure}");

    // Another device sees only the file that fitted.
    let mut other = Device::new(ClientVersion::Current);
    other.login(USER, PASSWORD, &server.endpoint()).unwrap();
    other.sync_media().unwrap();
    let names: Vec<String> = other.media_files().into_keys().collect();
    assert_eq!(names, ["small.bin"]);

    server.stop();
    let store = Store::open(server.db_path()).unwrap();
    let status = store.media_status(1).unwrap().unwrap();
    assert_eq!((status.files, status.bytes), (1, 100_000));
    assert_eq!(
        store.blob_stats().unwrap().blobs,
        1,
        "no bytes of the refused files"
    );
}
