//! Normal (incremental) sync between two devices of one user, with the official client.
//!
//! Each scenario is written once, generic over [`SyncServer`], and run twice: `official_*`
//! against the official server proves the scenario (and records how the official server
//! behaves), `ours_*` holds `ankisyncd` to the same story. Devices A and B belong to one
//! user: A full-uploads a realistic collection (`Device::add_rich_content`), B
//! full-downloads it, and from then on only normal syncs move changes between them. User C
//! has a collection of its own, to prove that one user's syncs never touch another's.
//!
//! Modification times have one-second resolution and ids come from the millisecond clock
//! (see `shared/spec/client.md`): where a scenario depends on which edit is newer, or on
//! two devices minting distinct ids, it sleeps past the second.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{
    sync_concurrently, ChangesRequired, ClientVersion, CollectionDump, Device, OfficialServer,
    Server, ServerOptions, SyncServer,
};

const USER: &str = "user";
const PASSWORD: &str = "pass";
const OTHER_USER: &str = "other";
const OTHER_PASSWORD: &str = "secret";

fn options() -> ServerOptions {
    ServerOptions {
        users: vec![
            (USER.to_string(), PASSWORD.to_string()),
            (OTHER_USER.to_string(), OTHER_PASSWORD.to_string()),
        ],
        ..Default::default()
    }
}

fn ours() -> Server {
    Server::start(options())
}

fn official() -> OfficialServer {
    OfficialServer::start(options())
}

fn device_of(user: &str, password: &str, server: &impl SyncServer) -> Device {
    versioned_device(ClientVersion::Current, user, password, server)
}

fn versioned_device(
    version: ClientVersion,
    user: &str,
    password: &str,
    server: &impl SyncServer,
) -> Device {
    let mut device = Device::new(version);
    device.login(user, password, &server.endpoint()).unwrap();
    device
}

/// A normal sync that must succeed and must not ask for a full sync. The client reports
/// `NoChanges` after a completed normal sync as well as when there was nothing to do.
fn sync(device: &mut Device) {
    let outcome = device.sync().unwrap_or_else(|e| panic!("sync failed: {e}"));
    assert_eq!(outcome.required, ChangesRequired::NoChanges, "{outcome:?}");
}

/// Waits until the wall clock is in a later second than now, so that the next change gets a
/// strictly larger modification time (seconds) than any change made before this call.
fn next_second() {
    thread::sleep(Duration::from_millis(1_100));
}

/// Devices A and B of [`USER`], in step: A uploaded a rich collection, B downloaded it.
fn pair(server: &impl SyncServer) -> (Device, Device) {
    pair_of(server, ClientVersion::Current, ClientVersion::Current)
}

/// [`pair`] with the given client versions for A and B.
fn pair_of(server: &impl SyncServer, a: ClientVersion, b: ClientVersion) -> (Device, Device) {
    let mut a = versioned_device(a, USER, PASSWORD, server);
    a.add_rich_content("from A");
    assert_eq!(a.sync().unwrap().required, ChangesRequired::FullUpload);
    a.full_upload().unwrap();
    let mut b = versioned_device(b, USER, PASSWORD, server);
    assert_eq!(b.sync().unwrap().required, ChangesRequired::FullDownload);
    b.full_download().unwrap();
    sync(&mut a);
    sync(&mut b);
    assert_converged(&mut a, &mut b);
    // Whatever follows happens in a later second than the upload.
    next_second();
    (a, b)
}

/// Asserts that A and B hold the same collection and returns A's dump. Devices with a
/// legacy client are compared on what both versions store alike ([`PortableDump`]): besides
/// each version shaping objects its own way, the official server writes decks, notetypes and
/// deck options in the current shape into the schema-11 file a legacy client downloads, so
/// even two legacy devices differ there.
fn assert_converged(a: &mut Device, b: &mut Device) -> CollectionDump {
    let (dump_a, dump_b) = (a.dump(), b.dump());
    if a.version() == ClientVersion::Current && b.version() == ClientVersion::Current {
        assert_same_dump(&dump_a, &dump_b);
    } else {
        let (portable_a, portable_b) = (
            PortableDump::from(dump_a.clone()),
            PortableDump::from(dump_b),
        );
        if portable_a != portable_b {
            panic!("A and B differ:\n{}", differences(&portable_a, &portable_b));
        }
    }
    dump_a
}

/// `assert_eq!` on two dumps, reporting only what differs (dumps are large).
fn assert_same_dump(a: &CollectionDump, b: &CollectionDump) {
    if a != b {
        panic!("A and B differ:\n{}", differences(a, b));
    }
}

/// The rows (by id) and top-level entries in which two dumps differ, one per line, A's
/// version first.
fn differences<T: std::fmt::Debug>(a: &T, b: &T) -> String {
    // Debug output is `Name { field: [Row { id: 1, .. }, ..], .. }`: compare the pretty
    // form line by line per top-level item instead of parsing it.
    let (a, b) = (format!("{a:#?}"), format!("{b:#?}"));
    let items = |text: &str| -> Vec<String> {
        let mut items = Vec::new();
        let mut current = String::new();
        for line in text.lines() {
            // Items of the top-level lists and maps are indented by eight spaces.
            let depth = line.len() - line.trim_start().len();
            if depth <= 8 && !current.is_empty() {
                items.push(std::mem::take(&mut current));
            }
            current.push_str(line.trim());
            current.push(' ');
        }
        items.push(current);
        items
    };
    let (items_a, items_b) = (items(&a), items(&b));
    let set_b: BTreeSet<&String> = items_b.iter().collect();
    let set_a: BTreeSet<&String> = items_a.iter().collect();
    let mut out = String::new();
    for item in items_a.iter().filter(|item| !set_b.contains(item)) {
        out.push_str(&format!("only in A: {item}\n"));
    }
    for item in items_b.iter().filter(|item| !set_a.contains(item)) {
        out.push_str(&format!("only in B: {item}\n"));
    }
    if out.is_empty() {
        out.push_str("the same items in a different order");
    }
    out
}

/// What two client versions store alike: rows, config values, tags, and decks and
/// notetypes by name with their fields, templates and css (each version shapes the JSON of
/// decks, notetypes and deck options its own way), plus the deck option values the
/// scenarios change.
#[derive(Debug, PartialEq)]
struct PortableDump {
    notes: Vec<support::NoteRow>,
    cards: Vec<support::CardRow>,
    revlog: Vec<support::RevlogRow>,
    deck_names: Vec<String>,
    notetypes: BTreeMap<String, (Vec<Value>, Vec<Value>, Value)>,
    deck_configs: BTreeMap<String, (Value, Value)>,
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
            // A card's `data` holds no custom data either as "" (what the legacy client
            // writes) or as "{}" (what a current client stores for a card it receives in a
            // normal sync, whatever the server sent): the same thing, seen the same way.
            cards: dump
                .cards
                .into_iter()
                .map(|mut card| {
                    if card.data == "{}" {
                        card.data.clear();
                    }
                    card
                })
                .collect(),
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
            deck_configs: dump
                .deck_configs
                .into_iter()
                .map(|(name, conf)| {
                    let values = (conf["new"]["perDay"].clone(), conf["rev"]["perDay"].clone());
                    (name, values)
                })
                .collect(),
            tags: dump.tags,
            config: dump.config,
        }
    }
}

fn note_ids(dump: &CollectionDump) -> BTreeSet<i64> {
    dump.notes.iter().map(|n| n.id).collect()
}

fn front(device: &mut Device, nid: i64) -> String {
    device.note_fields(nid).remove(0)
}

fn has_note(device: &mut Device, nid: i64) -> bool {
    !device.find_notes(&format!("nid:{nid}")).is_empty()
}

// ---------------------------------------------------------------------------------------
// Scenarios

/// Scenario 1: Notes (and their cards) added, edited and deleted, and cards moved, suspended and
/// flagged, travel both ways.
fn notes_added_edited_deleted_both_ways(server: &mut impl SyncServer) {
    let (mut a, mut b) = pair(server);
    let before = a.dump();

    let from_a = a.add_notes(3, "anew");
    sync(&mut a);
    sync(&mut b);
    let dump = assert_converged(&mut a, &mut b);
    assert_eq!(dump.notes.len(), before.notes.len() + 3);
    assert_eq!(dump.cards.len(), before.cards.len() + 3);
    assert_eq!(front(&mut b, from_a[1]), "anew 1 front");

    next_second();
    b.edit_note(from_a[0], "Front", "edited on B");
    let rich = b.find_notes("\"deck:Science::Biology::Cells\"");
    assert_eq!(b.delete_notes(&[from_a[1], rich[0]]), 2);
    let from_b = b.add_notes(2, "bnew");
    sync(&mut b);
    sync(&mut a);
    let dump = assert_converged(&mut a, &mut b);
    assert_eq!(front(&mut a, from_a[0]), "edited on B");
    assert!(!has_note(&mut a, from_a[1]));
    assert!(!has_note(&mut a, rich[0]));
    assert!(!dump
        .cards
        .iter()
        .any(|c| c.nid == from_a[1] || c.nid == rich[0]));
    assert_eq!(front(&mut a, from_b[1]), "bnew 1 front");
    assert_eq!(dump.notes.len(), before.notes.len() + 3 - 2 + 2);

    // And back: A deletes what B added, edits one of the rich notes and changes cards.
    next_second();
    a.delete_notes(&from_b[..1]);
    a.edit_note(rich[1], "Back Extra", "edited on A");
    let cards = a.find_cards(&format!("nid:{}", from_a[0]));
    a.move_cards(&cards, "Moved::Here");
    let cloze_cards = a.find_cards(&format!("nid:{}", rich[1]));
    a.suspend_cards(&cloze_cards[..1]);
    a.flag_cards(&cloze_cards[1..2], 4);
    sync(&mut a);
    sync(&mut b);
    let dump = assert_converged(&mut a, &mut b);
    assert!(!has_note(&mut b, from_b[0]));
    assert_eq!(b.note_fields(rich[1])[1], "edited on A");
    let card = |id: i64| dump.cards.iter().find(|c| c.id == id).unwrap().clone();
    assert_eq!(card(cards[0]).did, dump.decks["Moved::Here"]["id"]);
    assert_eq!(card(cloze_cards[0]).queue, -1);
    assert_eq!(card(cloze_cards[1]).flags, 4);
    assert_eq!(b.find_cards("deck:Moved::Here"), cards);
}

/// Scenario 2: Both devices study: every revlog row reaches both, none twice; cards studied on
/// both sides end the same.
fn reviews_on_both_sides(server: &mut impl SyncServer) {
    let (mut a, mut b) = pair(server);
    let initial = a.dump().revlog.len();

    let by_a = a.answer_cards(6, 3, "Languages");
    assert!(by_a > 0);
    next_second();
    let by_b = b.answer_cards(4, 1, "Default") + b.answer_cards(3, 4, "Languages");
    assert!(by_b > 0);
    sync(&mut a);
    sync(&mut b);
    sync(&mut a);
    let dump = assert_converged(&mut a, &mut b);
    assert_eq!(dump.revlog.len(), initial + by_a + by_b);
    let ids: BTreeSet<i64> = dump.revlog.iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), dump.revlog.len(), "duplicate revlog ids");

    // A second round on top of the merged state.
    next_second();
    let more_a = a.answer_cards(2, 2, "Science");
    let more_b = b.answer_cards(2, 3, "Default");
    sync(&mut b);
    sync(&mut a);
    sync(&mut b);
    let dump = assert_converged(&mut a, &mut b);
    assert_eq!(dump.revlog.len(), initial + by_a + by_b + more_a + more_b);
}

/// Scenario 3: One note edited on both devices: the newer edit wins, whichever device syncs first.
fn newer_edit_wins(server: &mut impl SyncServer) {
    let (mut a, mut b) = pair(server);
    newer_edit_wins_between(&mut a, &mut b);
}

fn newer_edit_wins_between(a: &mut Device, b: &mut Device) {
    let nids = a.find_notes("\"deck:Default\"");
    let (first, second) = (nids[0], nids[1]);

    // The older edit syncs first, the newer one overrides it.
    a.edit_note(first, "Front", "older, from A");
    next_second();
    b.edit_note(first, "Front", "newer, from B");
    sync(a);
    sync(b);
    sync(a);
    assert_converged(a, b);
    assert_eq!(front(a, first), "newer, from B");

    // The newer edit syncs first, the older one arriving later loses.
    next_second();
    b.edit_note(second, "Front", "older, from B");
    next_second();
    a.edit_note(second, "Front", "newer, from A");
    sync(a);
    sync(b);
    sync(a);
    assert_converged(a, b);
    assert_eq!(front(b, second), "newer, from A");
}

/// Scenario 4: Decks (added, renamed), notetype css, deck options, tags and config values travel
/// both ways.
fn collection_objects_propagate(server: &mut impl SyncServer) {
    let (mut a, mut b) = pair(server);

    a.add_deck("Geography::Capitals");
    a.rename_deck("Languages::Français", "Languages::French");
    a.set_deck_config("Intensive", &["new", "perDay"], json!(41));
    a.set_notetype_css("Vocab", ".card { color: #a00; }");
    let spanish = a.find_notes("\"deck:Languages::Spanish\"");
    a.add_tags(&spanish[..2], "fresh::from_a");
    a.set_config("e2eText", json!("changed on A ✓"));
    sync(&mut a);
    sync(&mut b);
    let dump = assert_converged(&mut a, &mut b);
    assert!(dump.decks.contains_key("Geography::Capitals"));
    assert!(dump.decks.contains_key("Languages::French"));
    assert!(!dump.decks.contains_key("Languages::Français"));
    assert_eq!(dump.deck_configs["Intensive"]["new"]["perDay"], 41);
    assert_eq!(dump.notetypes["Vocab"]["css"], ".card { color: #a00; }");
    assert!(
        dump.tags.iter().any(|t| t == "fresh::from_a"),
        "{:?}",
        dump.tags
    );
    assert_eq!(dump.config["e2eText"], "changed on A ✓");

    next_second();
    b.add_deck("History");
    b.rename_deck("Science", "Natural Science");
    b.set_deck_config("Default", &["rev", "perDay"], json!(250));
    b.set_notetype_css("Basic", ".card { font-size: 30px; }");
    b.add_tags(&spanish[2..3], "from_b");
    b.set_config("e2eList", json!(["b", 2]));
    b.set_config("e2eObject", json!({"changed": "on B"}));
    sync(&mut b);
    sync(&mut a);
    let dump = assert_converged(&mut a, &mut b);
    assert!(dump.decks.contains_key("History"));
    assert!(dump.decks.contains_key("Natural Science::Biology::Cells"));
    assert!(!dump.decks.keys().any(|name| name.starts_with("Science")));
    assert_eq!(dump.deck_configs["Default"]["rev"]["perDay"], 250);
    assert_eq!(dump.notetypes["Basic"]["css"], ".card { font-size: 30px; }");
    assert!(dump.tags.iter().any(|t| t == "from_b"), "{:?}", dump.tags);
    assert_eq!(dump.config["e2eList"], json!(["b", 2]));
    assert_eq!(dump.config["e2eObject"], json!({"changed": "on B"}));
}

/// Scenario: both devices create a deck of one name (differing only in case, which the
/// collection ignores) and a notetype of one name. Observed on the official server: the
/// object that reaches the server second is renamed with a "+" there, and the other device
/// gets it under that name; each client does the same to the object it receives, so the
/// second device keeps its own name and calls the first device's object "…+".
fn name_clashes_get_a_suffix(server: &mut impl SyncServer) {
    let (mut a, mut b) = pair(server);
    let deck_a = a.add_deck("Travel");
    let deck_b = b.add_deck("travel");
    let notetype_a = a.add_notetype("Phrase", "Basic");
    let notetype_b = b.add_notetype("Phrase", "Basic");
    sync(&mut a);
    sync(&mut b);
    sync(&mut a);

    let ids = |dump: &CollectionDump| {
        let id = |objects: &BTreeMap<String, Value>, name: &str| {
            objects.get(name).map(|object| object["id"].clone())
        };
        [
            id(&dump.decks, "Travel"),
            id(&dump.decks, "travel+"),
            id(&dump.decks, "Travel+"),
            id(&dump.decks, "travel"),
            id(&dump.notetypes, "Phrase"),
            id(&dump.notetypes, "Phrase+"),
        ]
    };
    let (deck_a, deck_b) = (Some(json!(deck_a)), Some(json!(deck_b)));
    let (notetype_a, notetype_b) = (Some(json!(notetype_a)), Some(json!(notetype_b)));
    let renamed_b = [
        deck_a.clone(),
        deck_b.clone(),
        None,
        None,
        notetype_a.clone(),
        notetype_b.clone(),
    ];
    assert_eq!(ids(&a.dump()), renamed_b, "A");
    let mut c = device_of(USER, PASSWORD, server);
    assert_eq!(c.sync().unwrap().required, ChangesRequired::FullDownload);
    c.full_download().unwrap();
    assert_eq!(ids(&c.dump()), renamed_b, "the server's collection");
    let renamed_a = [None, None, deck_a, deck_b, notetype_b, notetype_a];
    assert_eq!(ids(&b.dump()), renamed_a, "B");
}

/// Scenario 5: A note deleted on one device and edited on the other. Observed on the official
/// server: the deletion wins in every order, even when the edit is newer than the deletion
/// and reached the server first (graves are applied without comparing modification times,
/// and a deleted note is never sent again).
fn deletion_against_edit(server: &mut impl SyncServer) {
    let (mut a, mut b) = pair(server);
    deletion_against_edit_between(&mut a, &mut b);
}

fn deletion_against_edit_between(a: &mut Device, b: &mut Device) {
    let nids = a.find_notes("\"deck:Default\"");
    let (first, second, third) = (nids[0], nids[1], nids[2]);

    // A deletes and syncs first; B's newer edit arrives afterwards.
    a.delete_notes(&[first]);
    next_second();
    b.edit_note(first, "Front", "edited on B after A deleted");
    sync(a);
    sync(b);
    sync(a);
    assert_converged(a, b);
    assert!(!has_note(a, first) && !has_note(b, first));

    // B edits and syncs first; A's newer deletion arrives afterwards.
    next_second();
    b.edit_note(second, "Front", "edited on B before A deleted");
    next_second();
    a.delete_notes(&[second]);
    sync(b);
    sync(a);
    sync(b);
    assert_converged(a, b);
    assert!(!has_note(a, second) && !has_note(b, second));

    // A deletes; B's edit is newer and reaches the server first; A's older deletion
    // arrives afterwards and still wins.
    next_second();
    a.delete_notes(&[third]);
    next_second();
    b.edit_note(third, "Front", "edited on B after A deleted, synced first");
    sync(b);
    sync(a);
    sync(b);
    let dump = assert_converged(a, b);
    assert!(!has_note(a, third) && !has_note(b, third));
    assert!(!dump
        .cards
        .iter()
        .any(|c| [first, second, third].contains(&c.nid)));
}

/// Scenario 6: Thousands of new notes in one sync: many chunks up from A, many down to B.
fn thousands_of_notes_in_one_sync(server: &mut impl SyncServer) {
    const BULK: usize = 5_500;
    let (mut a, mut b) = pair(server);
    let before = a.note_count();
    assert_eq!(a.add_notes_bulk(BULK, "bulk"), BULK);
    sync(&mut a);
    sync(&mut b);
    assert_eq!(b.note_count(), before + BULK);
    assert_eq!(b.card_count(), a.card_count());
    let dump = assert_converged(&mut a, &mut b);
    assert_eq!(dump.notes.len(), before + BULK);

    // Many changes to existing rows the other way: every bulk note tagged by B.
    next_second();
    let bulk = b.find_notes("bulk");
    assert_eq!(bulk.len(), BULK);
    assert_eq!(b.add_tags(&bulk, "bulk_tagged"), BULK);
    sync(&mut b);
    sync(&mut a);
    assert_converged(&mut a, &mut b);
    assert_eq!(a.find_notes("tag:bulk_tagged").len(), BULK);
}

/// Scenario 7: A schema change (a field added to a notetype) on one device: its next sync must be a
/// full sync, and the other device then has to take the new collection in full too.
fn schema_change_forces_full_sync(server: &mut impl SyncServer) {
    let (mut a, mut b) = pair(server);
    a.add_field("Vocab", "Etymology");
    assert_eq!(a.sync().unwrap().required, ChangesRequired::FullSync);
    a.full_upload().unwrap();
    sync(&mut a);
    assert_eq!(b.sync().unwrap().required, ChangesRequired::FullSync);
    b.full_download().unwrap();
    let dump = assert_converged(&mut a, &mut b);
    let fields = dump.notetypes["Vocab"]["flds"].as_array().unwrap().len();
    assert_eq!(fields, 5);
    // Back to normal syncs afterwards.
    next_second();
    let nid = b.add_notes(1, "after schema")[0];
    sync(&mut b);
    sync(&mut a);
    assert_converged(&mut a, &mut b);
    assert!(has_note(&mut a, nid));
}

/// Scenario 8: A sync with nothing to do says so and changes nothing, right after the full sync and
/// right after a normal sync.
fn nothing_changed(server: &mut impl SyncServer) {
    let (mut a, mut b) = pair(server);
    let before = a.dump();
    for device in [&mut a, &mut b] {
        let outcome = device.sync().unwrap();
        assert_eq!(outcome.required, ChangesRequired::NoChanges);
        assert_eq!(device.dump(), before);
    }

    a.add_notes(1, "one");
    sync(&mut a);
    sync(&mut b);
    let after = assert_converged(&mut a, &mut b);
    for _ in 0..2 {
        for device in [&mut a, &mut b] {
            let outcome = device.sync().unwrap();
            assert_eq!(outcome.required, ChangesRequired::NoChanges);
            assert_eq!(device.dump(), after);
        }
    }
}

/// Scenario 9: Twenty rounds of small changes, alternating between the devices, each followed by
/// syncs of both: the collections stay equal after every round.
fn twenty_alternating_syncs(server: &mut impl SyncServer) {
    let (mut a, mut b) = pair(server);
    let nids = a.find_notes("\"deck:Default\"");
    let mut expected_notes = a.note_count();
    for round in 0..20 {
        let (writer, reader) = if round % 2 == 0 {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        let nid = nids[round % nids.len()];
        writer.edit_note(nid, "Back", &format!("round {round}"));
        match round % 4 {
            0 => {
                writer.add_notes(1, &format!("round{round}"));
                expected_notes += 1;
            }
            1 => {
                writer.answer_cards(1, 3, "Default");
            }
            2 => {
                writer.add_tags(&[nid], &format!("round{round}"));
            }
            _ => writer.set_config("e2eText", json!(format!("round {round}"))),
        }
        sync(writer);
        sync(reader);
        let dump = assert_converged(writer, reader);
        assert_eq!(dump.notes.len(), expected_notes, "round {round}");
        assert_eq!(reader.note_fields(nid)[1], format!("round {round}"));
        // The next round's edit on the other device must be newer than this one.
        next_second();
    }
    sync(&mut a);
    sync(&mut b);
    assert_converged(&mut a, &mut b);
}

/// Scenario 10: Both devices sync at the same moment. Either both succeed, or one of them gets an
/// error (the official server lets one sync at a time per user); no change is lost, and a
/// final round of syncs makes both equal. Repeated a few times to meet both outcomes.
fn two_devices_sync_at_the_same_moment(server: &mut impl SyncServer) {
    let (mut a, mut b) = pair(server);
    race_between(&mut a, &mut b, 4);
}

/// `rounds` rounds of notes added on both devices and synced at the same moment.
fn race_between(a: &mut Device, b: &mut Device, rounds: usize) {
    let mut expected: Vec<(i64, String)> = Vec::new();
    for round in 0..rounds {
        let from_a = a.add_notes(20, &format!("race{round}a"));
        thread::sleep(Duration::from_millis(50)); // distinct millisecond ids for B's notes
        let from_b = b.add_notes(20, &format!("race{round}b"));
        expected.push((from_a[19], format!("race{round}a 19 front")));
        expected.push((from_b[19], format!("race{round}b 19 front")));
        let results = sync_concurrently(&mut [&mut *a, &mut *b]);
        eprintln!("round {round}: concurrent syncs -> {results:?}");
        for result in &results {
            match result {
                Ok(outcome) => {
                    assert_eq!(outcome.required, ChangesRequired::NoChanges, "{results:?}")
                }
                // What the official client reports when the server answers with its
                // conflict status (HTTP 409): seen on the official server for one or
                // (most often) both devices.
                Err(failure) => assert!(
                    failure.message.contains("Only one copy of Anki can sync"),
                    "{results:?}"
                ),
            }
        }
        // A final round: whichever lost the race syncs again.
        sync(a);
        sync(b);
        sync(a);
        assert_converged(a, b);
        for (nid, text) in &expected {
            assert_eq!(&front(a, *nid), text);
        }
    }
}

/// Scenario 11: A server restarted between syncs keeps everything it acknowledged.
fn server_restart_between_syncs(server: &mut impl SyncServer) {
    let (mut a, mut b) = pair(server);
    let nid = a.add_notes(2, "before restart")[0];
    a.answer_cards(2, 3, "Default");
    a.set_config("e2eText", json!("before restart"));
    sync(&mut a);

    let endpoint = server.restart();
    a.set_endpoint(&endpoint);
    b.set_endpoint(&endpoint);
    sync(&mut b);
    assert_converged(&mut a, &mut b);
    assert!(has_note(&mut b, nid));

    next_second();
    b.edit_note(nid, "Front", "edited on B");
    b.add_deck("After restart");
    sync(&mut b);
    let endpoint = server.restart();
    a.set_endpoint(&endpoint);
    b.set_endpoint(&endpoint);
    sync(&mut a);
    let dump = assert_converged(&mut a, &mut b);
    assert_eq!(front(&mut a, nid), "edited on B");
    assert!(dump.decks.contains_key("After restart"));
    assert_eq!(a.sync().unwrap().required, ChangesRequired::NoChanges);
}

/// Scenario 12: User C's collection is untouched by everything A and B do, and theirs by C's.
fn other_users_are_isolated(server: &mut impl SyncServer) {
    let mut c = device_of(OTHER_USER, OTHER_PASSWORD, server);
    c.add_rich_content("from C");
    assert_eq!(c.sync().unwrap().required, ChangesRequired::FullUpload);
    c.full_upload().unwrap();
    sync(&mut c);
    let c_before = c.dump();

    let (mut a, mut b) = pair(server);
    a.add_notes(5, "only for A and B");
    let default = a.find_notes("\"deck:Default\"");
    a.delete_notes(&default[..1]);
    a.set_config("e2eText", json!("A's text"));
    sync(&mut a);
    sync(&mut b);
    b.add_deck("B only");
    sync(&mut b);
    sync(&mut a);
    let ab = assert_converged(&mut a, &mut b);

    // C syncs: nothing of A's or B's arrives, nothing of C's leaves.
    assert_eq!(c.sync().unwrap().required, ChangesRequired::NoChanges);
    assert_eq!(c.dump(), c_before);
    let mut c2 = device_of(OTHER_USER, OTHER_PASSWORD, server);
    assert_eq!(c2.sync().unwrap().required, ChangesRequired::FullDownload);
    c2.full_download().unwrap();
    assert_eq!(c2.dump(), c_before);

    // C changes things; A and B see none of it.
    next_second();
    c.add_notes(3, "only for C");
    c.add_deck("C only");
    sync(&mut c);
    sync(&mut c2);
    assert_converged(&mut c, &mut c2);
    sync(&mut a);
    sync(&mut b);
    assert_eq!(a.dump(), ab);
    assert!(note_ids(&ab).is_disjoint(&note_ids(&c2.dump())));
    assert!(!ab.decks.contains_key("C only"));
    assert!(!c.dump().decks.contains_key("B only"));
}

/// Scenario 13: Devices of different client versions (`a` uploads, `b` downloads) exchange every
/// kind of change through normal syncs: the legacy client speaks sync v10, the current one
/// v11, to one collection on the server.
fn mixed_versions_exchange_changes(
    server: &mut impl SyncServer,
    a_version: ClientVersion,
    b_version: ClientVersion,
) {
    let (mut a, mut b) = pair_of(server, a_version, b_version);
    let initial = a.dump();

    let from_a = a.add_notes(3, "anew");
    let default = a.find_notes("\"deck:Default\"");
    a.edit_note(default[0], "Front", "edited on A");
    let by_a = a.answer_cards(4, 3, "Languages");
    a.set_notetype_css("Vocab", ".card { color: #0a0; }");
    a.set_deck_config("Intensive", &["new", "perDay"], json!(43));
    sync(&mut a);
    sync(&mut b);
    assert_converged(&mut a, &mut b);
    assert_eq!(front(&mut b, default[0]), "edited on A");
    assert_eq!(front(&mut b, from_a[2]), "anew 2 front");

    next_second();
    b.edit_note(from_a[0], "Back", "edited on B");
    assert_eq!(b.delete_notes(&from_a[1..2]), 1);
    let by_b = b.answer_cards(3, 1, "Default");
    b.add_deck("Mixed::Versions");
    b.rename_deck("Languages::Français", "Languages::French");
    b.set_deck_config("Default", &["rev", "perDay"], json!(222));
    b.add_tags(&default, "mixed::versions");
    b.set_config("e2eText", json!("set on B"));
    assert_eq!(b.add_notes_bulk(1_000, "bulk"), 1_000);
    sync(&mut b);
    sync(&mut a);
    let dump = assert_converged(&mut a, &mut b);
    assert_eq!(dump.notes.len(), initial.notes.len() + 3 - 1 + 1_000);
    assert_eq!(dump.revlog.len(), initial.revlog.len() + by_a + by_b);
    assert_eq!(a.note_fields(from_a[0])[1], "edited on B");
    assert!(!has_note(&mut a, from_a[1]));
    assert!(dump.decks.contains_key("Languages::French"));
    assert_eq!(dump.config["e2eText"], "set on B");

    // A schema change on the legacy device: its next sync must be a full one.
    let (legacy, other) = if a_version == ClientVersion::Legacy {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    legacy.add_field("Vocab", "Etymology");
    assert_eq!(legacy.sync().unwrap().required, ChangesRequired::FullSync);
    legacy.full_upload().unwrap();
    assert_eq!(other.sync().unwrap().required, ChangesRequired::FullSync);
    other.full_download().unwrap();
    let dump = assert_converged(&mut a, &mut b);
    assert_eq!(dump.notetypes["Vocab"]["flds"].as_array().unwrap().len(), 5);
}

/// Scenario 14: Two legacy devices in conflict: edits on both sides (the newer wins), a
/// deletion against an edit (the deletion wins), and syncs at the same moment (the loser is
/// told another device is syncing, and nothing is lost).
fn legacy_devices_in_conflict(server: &mut impl SyncServer) {
    let (mut a, mut b) = pair_of(server, ClientVersion::Legacy, ClientVersion::Legacy);
    newer_edit_wins_between(&mut a, &mut b);
    deletion_against_edit_between(&mut a, &mut b);
    race_between(&mut a, &mut b, 2);
}

fn current_and_legacy(server: &mut impl SyncServer) {
    mixed_versions_exchange_changes(server, ClientVersion::Current, ClientVersion::Legacy);
}

fn legacy_and_current(server: &mut impl SyncServer) {
    mixed_versions_exchange_changes(server, ClientVersion::Legacy, ClientVersion::Current);
}

// ---------------------------------------------------------------------------------------
// Official server: proves each scenario

/// Runs a scenario and reports how long it took (visible with `--nocapture`).
fn timed(name: &str, scenario: impl FnOnce()) {
    let start = Instant::now();
    scenario();
    eprintln!("{name}: {:.1?}", start.elapsed());
}

#[test]
fn official_notes_added_edited_deleted_both_ways() {
    timed("official_notes_added_edited_deleted_both_ways", || {
        notes_added_edited_deleted_both_ways(&mut official())
    });
}

#[test]
fn official_reviews_on_both_sides() {
    timed("official_reviews_on_both_sides", || {
        reviews_on_both_sides(&mut official())
    });
}

#[test]
fn official_newer_edit_wins() {
    timed("official_newer_edit_wins", || {
        newer_edit_wins(&mut official())
    });
}

#[test]
fn official_collection_objects_propagate() {
    timed("official_collection_objects_propagate", || {
        collection_objects_propagate(&mut official())
    });
}

#[test]
fn official_deletion_against_edit() {
    timed("official_deletion_against_edit", || {
        deletion_against_edit(&mut official())
    });
}

#[test]
fn official_name_clashes_get_a_suffix() {
    timed("official_name_clashes_get_a_suffix", || {
        name_clashes_get_a_suffix(&mut official())
    });
}

#[test]
fn official_thousands_of_notes_in_one_sync() {
    timed("official_thousands_of_notes_in_one_sync", || {
        thousands_of_notes_in_one_sync(&mut official())
    });
}

#[test]
fn official_schema_change_forces_full_sync() {
    timed("official_schema_change_forces_full_sync", || {
        schema_change_forces_full_sync(&mut official())
    });
}

#[test]
fn official_nothing_changed() {
    timed("official_nothing_changed", || {
        nothing_changed(&mut official())
    });
}

#[test]
fn official_twenty_alternating_syncs() {
    timed("official_twenty_alternating_syncs", || {
        twenty_alternating_syncs(&mut official())
    });
}

#[test]
fn official_two_devices_sync_at_the_same_moment() {
    timed("official_two_devices_sync_at_the_same_moment", || {
        two_devices_sync_at_the_same_moment(&mut official())
    });
}

#[test]
fn official_server_restart_between_syncs() {
    timed("official_server_restart_between_syncs", || {
        server_restart_between_syncs(&mut official())
    });
}

#[test]
fn official_other_users_are_isolated() {
    timed("official_other_users_are_isolated", || {
        other_users_are_isolated(&mut official())
    });
}

// ---------------------------------------------------------------------------------------
// Our server: the same stories

#[test]
fn ours_notes_added_edited_deleted_both_ways() {
    timed("ours_notes_added_edited_deleted_both_ways", || {
        notes_added_edited_deleted_both_ways(&mut ours())
    });
}

#[test]
fn ours_reviews_on_both_sides() {
    timed("ours_reviews_on_both_sides", || {
        reviews_on_both_sides(&mut ours())
    });
}

#[test]
fn ours_newer_edit_wins() {
    timed("ours_newer_edit_wins", || newer_edit_wins(&mut ours()));
}

#[test]
fn ours_collection_objects_propagate() {
    timed("ours_collection_objects_propagate", || {
        collection_objects_propagate(&mut ours())
    });
}

#[test]
fn ours_deletion_against_edit() {
    timed("ours_deletion_against_edit", || {
        deletion_against_edit(&mut ours())
    });
}

#[test]
fn ours_name_clashes_get_a_suffix() {
    timed("ours_name_clashes_get_a_suffix", || {
        name_clashes_get_a_suffix(&mut ours())
    });
}

#[test]
fn ours_thousands_of_notes_in_one_sync() {
    timed("ours_thousands_of_notes_in_one_sync", || {
        thousands_of_notes_in_one_sync(&mut ours())
    });
}

#[test]
fn ours_schema_change_forces_full_sync() {
    timed("ours_schema_change_forces_full_sync", || {
        schema_change_forces_full_sync(&mut ours())
    });
}

#[test]
fn ours_nothing_changed() {
    timed("ours_nothing_changed", || nothing_changed(&mut ours()));
}

#[test]
fn ours_twenty_alternating_syncs() {
    timed("ours_twenty_alternating_syncs", || {
        twenty_alternating_syncs(&mut ours())
    });
}

#[test]
fn ours_two_devices_sync_at_the_same_moment() {
    timed("ours_two_devices_sync_at_the_same_moment", || {
        two_devices_sync_at_the_same_moment(&mut ours())
    });
}

#[test]
fn ours_server_restart_between_syncs() {
    timed("ours_server_restart_between_syncs", || {
        server_restart_between_syncs(&mut ours())
    });
}

#[test]
fn ours_other_users_are_isolated() {
    timed("ours_other_users_are_isolated", || {
        other_users_are_isolated(&mut ours())
    });
}

#[test]
fn official_current_and_legacy() {
    timed("official_current_and_legacy", || {
        current_and_legacy(&mut official())
    });
}

#[test]
fn official_legacy_and_current() {
    timed("official_legacy_and_current", || {
        legacy_and_current(&mut official())
    });
}

#[test]
fn official_legacy_devices_in_conflict() {
    timed("official_legacy_devices_in_conflict", || {
        legacy_devices_in_conflict(&mut official())
    });
}

#[test]
fn ours_legacy_devices_in_conflict() {
    timed("ours_legacy_devices_in_conflict", || {
        legacy_devices_in_conflict(&mut ours())
    });
}

#[test]
fn ours_current_and_legacy() {
    timed(
        "ours_current_and_legacy",
        || current_and_legacy(&mut ours()),
    );
}

#[test]
fn ours_legacy_and_current() {
    timed(
        "ours_legacy_and_current",
        || legacy_and_current(&mut ours()),
    );
}

/// A sync larger than the stage's memory bound: the overflow waits in the database until
/// `finish`, and the outcome is the same.
#[test]
fn ours_thousands_of_notes_with_a_small_stage() {
    timed("ours_thousands_of_notes_with_a_small_stage", || {
        let mut options = options();
        options
            .extra_env
            .push(("ANKISYNCD_STAGE_MEMORY_ROWS".into(), "500".into()));
        let mut server = Server::start(options);
        thousands_of_notes_in_one_sync(&mut server);
        assert!(
            server.log().contains("sync stage moved out of memory"),
            "the stage never spilled"
        );
    });
}
