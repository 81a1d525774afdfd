//! A database with something in every table, written through the store's own API, for the
//! tests of backups and checks (unit tests only).

use std::io::{self, Write};

use super::tables::{
    CardRow, CollectionRecord, Counts, HostKeyRecord, NoteRow, ObjectKind, ObjectRecord, RevlogRow,
    RowKind, SortField, SpilledRow,
};
use super::{temp_store, MediaBytes, MediaContent, MediaUpdate, RowBatch, Store, SyncCommit};

pub(crate) const ALICE: u64 = 1;
pub(crate) const BOB: u64 = 2;
pub(crate) const CAROL: u64 = 3;

/// Users alice, bob and (removed) carol. Alice uploaded twice (one generation live, one
/// retained) and synced once; bob uploaded once; carol's generation waits for deletion.
/// Alice and bob share one media blob, bob deleted a file. Everything is consistent: `check`
/// finds nothing to repair.
pub(crate) fn populated_store() -> (tempfile::TempDir, Store) {
    let (dir, store) = temp_store();
    for name in ["alice", "bob", "carol"] {
        store.set_user(name, "hash", 1_000).unwrap();
    }
    for (user, key) in [(ALICE, [1u8; 32]), (BOB, [2u8; 32])] {
        let record = HostKeyRecord {
            user_id: user,
            created: 1,
            client_version: "test".into(),
            last_seen: 1,
        };
        assert!(store.add_host_key(&key, &record).unwrap());
    }
    upload(&store, ALICE, "first", 5, 10);
    upload(&store, ALICE, "second", 7, 20);
    sync_once(&store, ALICE);
    upload(&store, BOB, "bob", 3, 30);
    upload(&store, CAROL, "carol", 2, 40);
    assert!(store.remove_user("carol").unwrap().is_some());
    media(
        &store,
        ALICE,
        &[("a.jpg", Some(b"same")), ("b.txt", Some(b"x"))],
    );
    media(
        &store,
        BOB,
        &[("c.jpg", Some(b"same")), ("d.txt", Some(b"y"))],
    );
    media(&store, BOB, &[("d.txt", None)]);
    (dir, store)
}

/// What a running server has in flight: a sync's staged rows (bob) and an upload being
/// written (bob). A stopped server's file should not have them.
pub(crate) fn add_in_flight(store: &Store) {
    let row = SpilledRow::Revlog(review(99));
    store
        .spill(BOB, &[(RowKind::Revlog as u8, 99, row)])
        .unwrap();
    let generation = store.begin_generation(BOB, 0, 50).unwrap();
    let batch = RowBatch {
        notes: vec![(1, note("half", 0))],
        ..Default::default()
    };
    store.write_batch(generation.id, &batch).unwrap();
}

pub(crate) fn note(text: &str, usn: i32) -> NoteRow {
    NoteRow {
        guid: text.into(),
        mid: 1,
        modified: 1,
        usn,
        tags: String::new(),
        fields: text.into(),
        sort_field: SortField::Text(text.into()),
        checksum: 0,
        flags: 0,
        data: String::new(),
    }
}

fn card(nid: i64, usn: i32) -> CardRow {
    CardRow {
        nid,
        did: 1,
        ord: 0,
        modified: 1,
        usn,
        ctype: 0,
        queue: 0,
        due: 1,
        ivl: 0,
        factor: 0,
        reps: 0,
        lapses: 0,
        left: 0,
        odue: 0,
        odid: 0,
        flags: 0,
        data: String::new(),
    }
}

fn review(cid: i64) -> RevlogRow {
    RevlogRow {
        cid,
        usn: 0,
        ease: 3,
        ivl: 1,
        last_ivl: 0,
        factor: 2500,
        time: 1000,
        rtype: 0,
    }
}

fn object(usn: i32) -> ObjectRecord {
    ObjectRecord {
        usn,
        json: "{}".into(),
    }
}

/// A full upload of `n` notes (a card and a review each), a grave, one object of each kind;
/// rows with usn 1 (of 0 and 1) are indexed, as an upload of a collection at usn 1 does.
fn upload(store: &Store, user: u64, text: &str, n: i64, modified_ms: i64) {
    let generation = store.begin_generation(user, 1, modified_ms).unwrap();
    let mut batch = RowBatch::default();
    for id in 1..=n {
        let usn = i32::from(id % 2 == 0);
        batch.notes.push((id, note(&format!("{text} {id}"), usn)));
        batch.cards.push((id * 10, card(id, usn)));
        batch.revlog.push((id * 100, review(id * 10)));
        if usn >= 1 {
            batch.changes.push((usn, RowKind::Note as u8, id));
            batch.changes.push((usn, RowKind::Card as u8, id * 10));
        }
    }
    batch.graves.push((0, 1, 1_000));
    for (kind, key) in [
        (ObjectKind::Notetype, "1"),
        (ObjectKind::Deck, "1"),
        (ObjectKind::DeckConfig, "1"),
        (ObjectKind::Tag, "tag"),
        (ObjectKind::Config, "curModel"),
    ] {
        batch.objects.push((kind as u8, key.into(), object(0)));
    }
    store.write_batch(generation.id, &batch).unwrap();
    let n = u64::try_from(n).unwrap();
    let record = CollectionRecord {
        usn: 1,
        modified_ms,
        counts: Counts {
            notes: n,
            cards: n,
            revlog: n,
            graves: 1,
            notetypes: 1,
            decks: 1,
            deck_configs: 1,
        },
        ..CollectionRecord::empty(modified_ms)
    };
    assert!(store
        .activate_generation(user, generation, record, 1)
        .unwrap());
}

/// A normal sync of the user's live collection: a note edited, one deleted (with its card
/// and a grave), a review added, a deck added.
fn sync_once(store: &Store, user: u64) {
    let record = store.collection(user).unwrap().unwrap();
    let usn = record.usn;
    let mut counts = record.counts;
    counts.notes -= 1;
    counts.cards -= 1;
    counts.revlog += 1;
    counts.graves += 2;
    counts.decks += 1;
    let commit = SyncCommit {
        notes: vec![(1, Some(note("edited", usn))), (2, None)],
        cards: vec![(20, None)],
        revlog: vec![(5_000, RevlogRow { usn, ..review(10) })],
        objects: vec![(ObjectKind::Deck, "2".into(), Some(object(usn)))],
        graves: vec![(1, 2), (0, 20)],
        counts,
        ..Default::default()
    };
    let done = store
        .commit_sync(user, record.generation, usn, commit, None, 60)
        .unwrap();
    assert!(matches!(done, super::CommitOutcome::Committed(_)));
}

struct Bytes(Vec<Vec<u8>>);

impl MediaBytes for Bytes {
    fn copy_entry(&mut self, entry: usize, out: &mut dyn Write) -> io::Result<()> {
        out.write_all(&self.0[entry])
    }
}

fn media(store: &Store, user: u64, changes: &[(&str, Option<&[u8]>)]) {
    use sha1::Digest;
    let mut bytes = Bytes(Vec::new());
    let updates: Vec<MediaUpdate> = changes
        .iter()
        .map(|(name, data)| MediaUpdate {
            name: name.to_string(),
            content: data.map(|data| {
                bytes.0.push(data.to_vec());
                MediaContent {
                    sha1: sha1::Sha1::digest(data).into(),
                    blake3: blake3::hash(data).into(),
                    size: data.len() as u64,
                    entry: bytes.0.len() - 1,
                }
            }),
        })
        .collect();
    let applied = store
        .apply_media_updates(user, &updates, &mut bytes, None)
        .unwrap();
    assert!(matches!(applied, super::MediaApplied::Done(_)));
}
