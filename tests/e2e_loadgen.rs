//! The load generator (`tests/support/loadgen.rs`) checked against the real client: what
//! it writes through the protocol must be what the official client 26.9.3 then downloads,
//! from our server and from the official one alike. Without this, a load benchmark could
//! measure a conversation no real client would have.
//!
//! Story, on each server: the generator logs in, full-uploads the generated 1k-note
//! collection, and syncs edits of 20 notes four times (the last round edits notes the first
//! one edited, so a note changed twice must arrive as last written); a `meta` with nothing
//! changed reports no changes. Then a new device running the real client full-downloads,
//! and its notes must equal the generator's, field for field, usn for usn, with the counts
//! the generator reported in its sanity checks. Finally the two servers' downloads must
//! agree with each other.

mod support;

#[path = "support/loadgen.rs"]
mod loadgen;

use loadgen::{dataset, prepare_upload, Collection, PreparedUpload, SyncClient};
use support::{
    ChangesRequired, ClientVersion, CollectionDump, Device, NoteRow, OfficialServer, Server,
    ServerOptions, SyncServer,
};
use tempfile::TempDir;

const USER: &str = "loadgen";
const PASSWORD: &str = "loadgen-pass";
const NOTES: usize = 1000;
const EDITS: usize = 20;
/// (round, offset): rounds 0–2 edit notes 0–59; round 3 wraps around to notes 0–19 again.
const ROUNDS: [(u64, usize); 4] = [(0, 0), (1, 0), (2, 0), (3, NOTES - 3 * EDITS)];

fn options() -> ServerOptions {
    ServerOptions::with_user(USER, PASSWORD)
}

/// The generator's story on `server`, then the real client's download of the result.
fn generate_then_download(
    server: &impl SyncServer,
    upload: &PreparedUpload,
) -> (Collection, CollectionDump) {
    let mut client = SyncClient::login(&server.endpoint(), USER, PASSWORD)
        .unwrap_or_else(|e| panic!("login: {e}"));
    let mut collection = client
        .full_upload(upload)
        .unwrap_or_else(|e| panic!("full upload: {e}"));
    for (round, offset) in ROUNDS {
        collection.edit_notes(EDITS, round, offset);
        assert_eq!(collection.pending_notes(), EDITS);
        client
            .sync(&mut collection)
            .unwrap_or_else(|e| panic!("sync of round {round}: {e}"));
    }
    client
        .check_no_changes(&collection)
        .unwrap_or_else(|e| panic!("nothing-changed meta: {e}"));

    let mut device = Device::new(ClientVersion::Current);
    device.login(USER, PASSWORD, &server.endpoint()).unwrap();
    let outcome = device.sync().unwrap();
    assert_eq!(outcome.required, ChangesRequired::FullDownload);
    device.full_download().unwrap();
    (collection, device.dump())
}

fn as_rows(collection: &Collection) -> Vec<NoteRow> {
    collection
        .notes
        .iter()
        .map(|note| NoteRow {
            id: note.id,
            guid: note.guid.clone(),
            mid: note.mid,
            r#mod: note.modified,
            usn: note.usn,
            tags: note.tags.clone(),
            flds: note.fields.clone(),
        })
        .collect()
}

/// The downloaded collection is the generator's: every note row, and the counts it sent.
fn assert_downloaded_what_was_written(
    server: &str,
    upload: &PreparedUpload,
    written: &Collection,
    dump: &CollectionDump,
) {
    assert_eq!(dump.notes, as_rows(written), "{server}: notes");
    let counts = written.counts;
    assert_eq!(
        (
            dump.cards.len(),
            dump.revlog.len(),
            dump.notetypes.len(),
            dump.decks.len(),
            dump.deck_configs.len(),
        ),
        (
            counts.cards as usize,
            counts.revlog as usize,
            counts.notetypes as usize,
            counts.decks as usize,
            counts.deck_configs as usize,
        ),
        "{server}: (cards, revlog, notetypes, decks, deck configs)"
    );
    // The story changed 60 distinct notes: had the edits not travelled, the download would
    // equal the uploaded file instead.
    let changed = dump
        .notes
        .iter()
        .zip(&upload.collection.notes)
        .filter(|(downloaded, uploaded)| downloaded.flds != uploaded.fields)
        .count();
    assert_eq!(changed, 3 * EDITS, "{server}: notes changed by the syncs");
    let twice = &dump.notes[0].flds;
    assert!(
        twice.contains(" [edit 3]") && !twice.contains(" [edit 0]"),
        "{server}: a note edited in rounds 0 and 3 must hold the second edit: {twice:?}"
    );
}

/// Modification times come from the clock of each run; everything else must be equal.
fn without_note_times(mut dump: CollectionDump) -> CollectionDump {
    for note in &mut dump.notes {
        note.r#mod = 0;
    }
    dump
}

#[test]
fn what_the_generator_syncs_the_official_client_downloads_from_both_servers() {
    let dir = TempDir::new().unwrap();
    let upload = prepare_upload(&dataset(NOTES), dir.path());
    assert_eq!(upload.collection.notes.len(), NOTES);

    let mut official = OfficialServer::start(options());
    let (official_written, official_dump) = generate_then_download(&official, &upload);
    official.stop();
    assert_downloaded_what_was_written("official", &upload, &official_written, &official_dump);

    let mut ours = Server::start(options());
    let (our_written, our_dump) = generate_then_download(&ours, &upload);
    ours.stop();
    assert_downloaded_what_was_written("ours", &upload, &our_written, &our_dump);

    assert_eq!(
        without_note_times(our_dump),
        without_note_times(official_dump),
        "the two servers' downloads differ"
    );
}
