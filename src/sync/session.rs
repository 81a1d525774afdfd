//! One normal sync in progress: who started it (its session key), the usns it works
//! between, the server rows still to send, and the STAGE: everything the client sent,
//! already merged against the live collection but not yet written. Nothing reaches the
//! database before `finish`, which writes the stage in one transaction; dropping the session
//! (abort, a newer `start`, a failed sanity check, the user's actor retiring) discards it.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use serde_json::{Map, Value};
use unicase::UniCase;

use super::note_fields::{clean_fields, first_field_checksum, sort_field, SortValue};
use super::state::Counted;
use super::SyncError;
use crate::clock::now_secs;
use crate::protocol::{parse_card, parse_note, parse_revlog, Changes, Chunk, Graves};
use crate::store::{
    CardRow, ChangedIds, Counts, HostKeyHash, NoteRow, ObjectKind, ObjectRecord, RevlogRow,
    RowKind, Snapshot, SortField, Spill, SpilledRow, Store, StoreError, SyncCommit,
};

/// Grave kinds on the wire and in the graves table.
pub(crate) const GRAVE_CARD: u8 = 0;
pub(crate) const GRAVE_NOTE: u8 = 1;
pub(crate) const GRAVE_DECK: u8 = 2;

#[derive(Debug)]
pub(crate) struct SyncSession {
    pub key: String,
    /// The device that started it (its host-key hash), so revoking that device alone
    /// discards it.
    pub device: HostKeyHash,
    pub user_id: u64,
    pub generation: u64,
    /// The usn this sync stamps on everything it writes (the collection's usn at `start`).
    pub server_usn: i32,
    /// The server usn as of the client's last sync: rows at or after it are new to the client.
    pub client_usn: i32,
    pub client_is_newer: bool,
    /// Rows the stage keeps in memory before moving them to the database
    /// (`stage_memory_rows`): a huge sync must not grow the server's memory with it.
    pub memory_rows: usize,
    /// Counts of the live collection when the sync started.
    pub base_counts: Counts,
    /// Server rows not yet sent by `chunk`; taken on the first `chunk` call.
    pub outgoing: Option<ChangedIds>,
    pub stage: Stage,
    /// When `start` opened it: `finish` reports the sync's duration.
    pub started: Instant,
    /// Counts this session among those in progress until it is dropped.
    pub _live: Counted,
}

/// A row as it will be after the sync, whether it existed before (for the counts), and
/// whether this sync changed it: entries read only to compare against stay unwritten, so
/// `finish` rewrites (and re-indexes) nothing the client did not change.
#[derive(Debug)]
struct Staged<T> {
    existed: bool,
    after: Option<T>,
    changed: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Stage {
    notes: BTreeMap<i64, Staged<NoteRow>>,
    cards: BTreeMap<i64, Staged<CardRow>>,
    revlog: BTreeMap<i64, RevlogRow>,
    objects: BTreeMap<(u8, String), (ObjectKind, Staged<ObjectRecord>)>,
    config: Option<Vec<(String, ObjectRecord)>>,
    graves: BTreeSet<(u8, i64)>,
    created_secs: Option<i64>,
    /// Some rows were moved to the database's staging table (`memory_rows`), and where.
    spilled: Option<Spill>,
}

fn bad(message: String) -> SyncError {
    SyncError::BadRequest(message)
}

impl SyncSession {
    /// Rows staged in memory (the ones `memory_rows` bounds).
    pub(crate) fn stage_rows(&self) -> usize {
        self.stage.notes.len() + self.stage.cards.len() + self.stage.revlog.len()
    }

    /// Whether the first `chunk` has listed the rows to send.
    pub(crate) fn has_outgoing(&self) -> bool {
        self.outgoing.is_some()
    }

    /// Whether some of this sync's rows were moved to the database's staging table.
    pub(crate) fn spilled(&self) -> bool {
        self.stage.spilled.is_some()
    }

    /// Deletions from the client: the objects go, and graves tell other devices.
    pub(crate) fn apply_graves(
        &mut self,
        snapshot: &Snapshot,
        graves: &Graves,
    ) -> Result<(), SyncError> {
        let generation = self.generation;
        let user = self.user_id;
        for id in &graves.notes {
            self.stage.note(snapshot, user, generation, *id)?.set(None);
            self.stage.graves.insert((GRAVE_NOTE, *id));
        }
        for id in &graves.cards {
            self.stage.card(snapshot, user, generation, *id)?.set(None);
            self.stage.graves.insert((GRAVE_CARD, *id));
        }
        for id in &graves.decks {
            self.stage
                .object(snapshot, generation, ObjectKind::Deck, &id.to_string())?
                .set(None);
            self.stage.graves.insert((GRAVE_DECK, *id));
        }
        Ok(())
    }

    /// The client's notetypes, decks, deck configs, tags and (when it is newer) config.
    /// Objects win when they are not older than ours (ties favour the incoming one).
    pub(crate) fn apply_changes(
        &mut self,
        snapshot: &Snapshot,
        changes: Changes,
    ) -> Result<(), SyncError> {
        let generation = self.generation;
        let usn = self.server_usn;
        // Reading every stored name costs more than the rest of a small sync: only when
        // the client sends some.
        let mut notetype_names = if changes.notetypes.is_empty() {
            Names::default()
        } else {
            self.names(snapshot, ObjectKind::Notetype)?
        };
        for notetype in changes.notetypes {
            self.merge_object(
                snapshot,
                ObjectKind::Notetype,
                notetype,
                Some(&mut notetype_names),
                |existing, incoming| {
                    let len = |object: &Map<String, Value>, key: &str| {
                        object
                            .get(key)
                            .and_then(Value::as_array)
                            .map_or(0, Vec::len)
                    };
                    if len(existing, "flds") != len(incoming, "flds")
                        || len(existing, "tmpls") != len(incoming, "tmpls")
                    {
                        return Err(bad(
                            "notetype schema changed: a full sync is required".into()
                        ));
                    }
                    Ok(())
                },
            )?;
        }
        let (decks, deck_configs) = changes.decks_and_configs;
        let mut deck_names = if decks.is_empty() {
            Names::default()
        } else {
            self.names(snapshot, ObjectKind::Deck)?
        };
        for deck in decks {
            self.merge_object(
                snapshot,
                ObjectKind::Deck,
                deck,
                Some(&mut deck_names),
                |_, _| Ok(()),
            )?;
        }
        for config in deck_configs {
            self.merge_object(
                snapshot,
                ObjectKind::DeckConfig,
                config,
                None,
                |_, _| Ok(()),
            )?;
        }
        for tag in changes.tags {
            let staged = self
                .stage
                .object(snapshot, generation, ObjectKind::Tag, &tag)?;
            staged.set(Some(ObjectRecord {
                usn,
                json: String::new(),
            }));
        }
        if let Some(created) = changes.created_secs {
            self.stage.created_secs = Some(created);
        }
        if let Some(config) = changes.config {
            self.stage.config = Some(
                config
                    .into_iter()
                    .map(|(key, value)| {
                        let json = value.to_string();
                        (key, ObjectRecord { usn, json })
                    })
                    .collect(),
            );
        }
        Ok(())
    }

    fn merge_object(
        &mut self,
        snapshot: &Snapshot,
        kind: ObjectKind,
        mut incoming: Map<String, Value>,
        names: Option<&mut Names>,
        check: impl Fn(&Map<String, Value>, &Map<String, Value>) -> Result<(), SyncError>,
    ) -> Result<(), SyncError> {
        let id = incoming
            .get("id")
            .and_then(crate::protocol::lenient_i64)
            .ok_or_else(|| bad(format!("{kind:?} without an id")))?;
        let usn = self.server_usn;
        let staged = self
            .stage
            .object(snapshot, self.generation, kind, &id.to_string())?;
        if let Some(existing) = &staged.after {
            let existing: Map<String, Value> = serde_json::from_str(&existing.json)
                .map_err(|e| SyncError::Internal(format!("stored {kind:?} {id}: {e}")))?;
            if modified(&existing) > modified(&incoming) {
                return Ok(());
            }
            check(&existing, &incoming)?;
        }
        if let Some(names) = names {
            names.claim(&id.to_string(), &mut incoming);
        }
        incoming.insert("usn".into(), usn.into());
        staged.set(Some(ObjectRecord {
            usn,
            json: Value::Object(incoming).to_string(),
        }));
        Ok(())
    }

    /// The names of the collection's decks or notetypes as this sync leaves them so far.
    fn names(&self, snapshot: &Snapshot, kind: ObjectKind) -> Result<Names, SyncError> {
        let mut by_id = BTreeMap::new();
        for (id, record) in snapshot.objects(self.generation, kind)? {
            by_id.insert(id, object_name(&record.json));
        }
        for ((staged_kind, id), (_, staged)) in &self.stage.objects {
            if *staged_kind != kind as u8 {
                continue;
            }
            match &staged.after {
                Some(record) => by_id.insert(id.clone(), object_name(&record.json)),
                None => by_id.remove(id),
            };
        }
        let owners = by_id
            .iter()
            .map(|(id, name)| (UniCase::new(name.clone()), id.clone()))
            .collect();
        Ok(Names { by_id, owners })
    }

    /// Reviews are added if new; cards and notes replace ours unless ours changed since the
    /// client's last sync and is not older.
    pub(crate) fn apply_chunk(
        &mut self,
        snapshot: &Snapshot,
        chunk: &Chunk,
    ) -> Result<(), SyncError> {
        let generation = self.generation;
        let user = self.user_id;
        let (client_usn, usn) = (self.client_usn, self.server_usn);
        for row in &chunk.revlog {
            let (id, mut review) = parse_revlog(row).map_err(bad)?;
            let spilled = self.stage.spilled.is_some()
                && snapshot.staged(user, RowKind::Revlog as u8, id)?.is_some();
            if !spilled
                && !self.stage.revlog.contains_key(&id)
                && snapshot.review(generation, id)?.is_none()
            {
                review.usn = usn;
                self.stage.revlog.insert(id, review);
            }
        }
        for row in &chunk.cards {
            let (id, mut card) = parse_card(row).map_err(bad)?;
            let staged = self.stage.card(snapshot, user, generation, id)?;
            if newer(
                staged.after.as_ref().map(|c| (c.usn, c.modified)),
                client_usn,
                card.modified,
            ) {
                card.usn = usn;
                staged.set(Some(card));
            }
        }
        let mut shapes: HashMap<i64, NotetypeShape> = HashMap::new();
        for row in &chunk.notes {
            let (id, mut note) = parse_note(row).map_err(bad)?;
            let current = self.stage.note(snapshot, user, generation, id)?;
            if !newer(
                current.after.as_ref().map(|n| (n.usn, n.modified)),
                client_usn,
                note.modified,
            ) {
                continue;
            }
            let shape = match shapes.get(&note.mid) {
                Some(shape) => *shape,
                None => {
                    let notetype = self
                        .stage
                        .object(
                            snapshot,
                            generation,
                            ObjectKind::Notetype,
                            &note.mid.to_string(),
                        )?
                        .after
                        .as_ref()
                        .ok_or_else(|| {
                            bad(format!(
                                "note {id} uses notetype {} which does not exist",
                                note.mid
                            ))
                        })?;
                    let shape = NotetypeShape::parse(note.mid, &notetype.json)?;
                    shapes.insert(note.mid, shape);
                    shape
                }
            };
            prepare_note(id, &mut note, shape)?;
            note.usn = usn;
            self.stage
                .note(snapshot, user, generation, id)?
                .set(Some(note));
        }
        Ok(())
    }

    /// Counts as they will be after this sync.
    pub(crate) fn counts(&self, snapshot: &Snapshot) -> Result<Counts, SyncError> {
        let base = self.base_counts;
        let delta = |existed: bool, after: bool| i64::from(after) - i64::from(existed);
        let mut notes: i64 = self
            .stage
            .notes
            .values()
            .map(|s| delta(s.existed, s.after.is_some()))
            .sum();
        let mut cards: i64 = self
            .stage
            .cards
            .values()
            .map(|s| delta(s.existed, s.after.is_some()))
            .sum();
        let mut revlog = self.stage.revlog.len() as u64;
        if self.stage.spilled.is_some() {
            // Rows back in memory supersede their spilled copies.
            for (_, id, row) in snapshot.staged_rows(self.user_id)? {
                match row {
                    SpilledRow::Note { existed, after } if !self.stage.notes.contains_key(&id) => {
                        notes += delta(existed, after.is_some());
                    }
                    SpilledRow::Card { existed, after } if !self.stage.cards.contains_key(&id) => {
                        cards += delta(existed, after.is_some());
                    }
                    SpilledRow::Revlog(_) if !self.stage.revlog.contains_key(&id) => revlog += 1,
                    _ => {}
                }
            }
        }
        let objects = |kind: ObjectKind| -> i64 {
            self.stage
                .objects
                .values()
                .filter(|(k, _)| *k == kind)
                .map(|(_, s)| delta(s.existed, s.after.is_some()))
                .sum()
        };
        let apply = |start: u64, delta: i64| {
            u64::try_from(
                i64::try_from(start)
                    .unwrap_or(i64::MAX)
                    .saturating_add(delta)
                    .max(0),
            )
            .unwrap_or(0)
        };
        Ok(Counts {
            notes: apply(base.notes, notes),
            cards: apply(base.cards, cards),
            revlog: base.revlog + revlog,
            graves: base.graves + self.stage.graves.len() as u64,
            notetypes: apply(base.notetypes, objects(ObjectKind::Notetype)),
            decks: apply(base.decks, objects(ObjectKind::Deck)),
            deck_configs: apply(base.deck_configs, objects(ObjectKind::DeckConfig)),
        })
    }

    /// Move the stage's rows to the database once it holds more than `memory_rows`.
    pub(crate) fn bound_memory(&mut self, store: &Store) -> Result<(), SyncError> {
        let staged = self.stage_rows();
        if staged <= self.memory_rows {
            return Ok(());
        }
        let stage = &mut self.stage;
        let mut rows = Vec::with_capacity(staged);
        // Unchanged entries are dropped, not spilled: they are the live rows, read again
        // when touched.
        for (id, s) in std::mem::take(&mut stage.notes)
            .into_iter()
            .filter(|(_, s)| s.changed)
        {
            let row = SpilledRow::Note {
                existed: s.existed,
                after: s.after,
            };
            rows.push((RowKind::Note as u8, id, row));
        }
        for (id, s) in std::mem::take(&mut stage.cards)
            .into_iter()
            .filter(|(_, s)| s.changed)
        {
            let row = SpilledRow::Card {
                existed: s.existed,
                after: s.after,
            };
            rows.push((RowKind::Card as u8, id, row));
        }
        for (id, row) in std::mem::take(&mut stage.revlog) {
            rows.push((RowKind::Revlog as u8, id, SpilledRow::Revlog(row)));
        }
        let spill = store.spill(self.user_id, &rows)?;
        if stage.spilled.is_some_and(|earlier| earlier != spill) {
            // The file was reopened after a disk fault: the earlier spill may be gone.
            return Err(SyncError::Store(StoreError::Interrupted));
        }
        stage.spilled = Some(spill);
        tracing::debug!(
            user_id = self.user_id,
            rows = rows.len(),
            "sync stage moved out of memory"
        );
        Ok(())
    }

    /// The stage as one set of writes for `Store::commit_sync`.
    pub(crate) fn into_commit(self, counts: Counts) -> SyncCommit {
        let stage = self.stage;
        SyncCommit {
            notes: stage
                .notes
                .into_iter()
                .filter(|(_, s)| s.changed)
                .map(|(id, s)| (id, s.after))
                .collect(),
            cards: stage
                .cards
                .into_iter()
                .filter(|(_, s)| s.changed)
                .map(|(id, s)| (id, s.after))
                .collect(),
            revlog: stage.revlog.into_iter().collect(),
            objects: stage
                .objects
                .into_iter()
                .filter(|(_, (_, s))| s.changed)
                .map(|((_, key), (kind, s))| (kind, key, s.after))
                .collect(),
            config: stage.config,
            graves: stage.graves.into_iter().collect(),
            created_secs: stage.created_secs,
            counts,
            spilled: stage.spilled,
        }
    }
}

impl Stage {
    /// Whether this sync deletes the note (a grave from the client): the server must not
    /// send it back, as the official server, which applies graves before choosing what to
    /// send, does not.
    pub(crate) fn deletes_note(&self, id: i64) -> bool {
        self.graves.contains(&(GRAVE_NOTE, id))
    }

    pub(crate) fn deletes_card(&self, id: i64) -> bool {
        self.graves.contains(&(GRAVE_CARD, id))
    }

    pub(crate) fn deletes_object(&self, kind: ObjectKind, key: &str) -> bool {
        self.objects
            .get(&(kind as u8, key.to_string()))
            .is_some_and(|(_, s)| s.after.is_none())
    }

    fn note(
        &mut self,
        snapshot: &Snapshot,
        user_id: u64,
        generation: u64,
        id: i64,
    ) -> Result<&mut Staged<NoteRow>, SyncError> {
        let spilled = self.spilled.is_some();
        staged(&mut self.notes, id, || {
            if spilled {
                if let Some(SpilledRow::Note { existed, after }) =
                    snapshot.staged(user_id, RowKind::Note as u8, id)?
                {
                    return Ok(Staged {
                        existed,
                        after,
                        changed: true,
                    });
                }
            }
            Ok(Staged::from_live(snapshot.note(generation, id)?))
        })
    }

    fn card(
        &mut self,
        snapshot: &Snapshot,
        user_id: u64,
        generation: u64,
        id: i64,
    ) -> Result<&mut Staged<CardRow>, SyncError> {
        let spilled = self.spilled.is_some();
        staged(&mut self.cards, id, || {
            if spilled {
                if let Some(SpilledRow::Card { existed, after }) =
                    snapshot.staged(user_id, RowKind::Card as u8, id)?
                {
                    return Ok(Staged {
                        existed,
                        after,
                        changed: true,
                    });
                }
            }
            Ok(Staged::from_live(snapshot.card(generation, id)?))
        })
    }

    fn object(
        &mut self,
        snapshot: &Snapshot,
        generation: u64,
        kind: ObjectKind,
        key: &str,
    ) -> Result<&mut Staged<ObjectRecord>, SyncError> {
        let entry = match self.objects.entry((kind as u8, key.to_string())) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                let live = snapshot.object(generation, kind, key)?;
                entry.insert((kind, Staged::from_live(live)))
            }
        };
        Ok(&mut entry.1)
    }
}

impl<T> Staged<T> {
    /// What the sync makes of the row (`None` deletes it).
    fn set(&mut self, after: Option<T>) {
        self.after = after;
        self.changed = true;
    }

    fn from_live(live: Option<T>) -> Self {
        Staged {
            existed: live.is_some(),
            after: live,
            changed: false,
        }
    }
}

/// The staged entry for `id`, first loaded (from the staging table or the live collection)
/// if it is not in memory.
fn staged<T>(
    map: &mut BTreeMap<i64, Staged<T>>,
    id: i64,
    load: impl FnOnce() -> Result<Staged<T>, crate::store::StoreError>,
) -> Result<&mut Staged<T>, SyncError> {
    Ok(match map.entry(id) {
        Entry::Occupied(entry) => entry.into_mut(),
        Entry::Vacant(entry) => entry.insert(load()?),
    })
}

/// Whether an incoming card or note replaces ours: we have none, ours has not changed since
/// the client's last sync, or ours is strictly older.
fn newer(ours: Option<(i32, i64)>, client_usn: i32, incoming_modified: i64) -> bool {
    match ours {
        None => true,
        Some((usn, modified)) => usn < client_usn || modified < incoming_modified,
    }
}

/// Deck and notetype names, which the collection keeps unique case-insensitively (its
/// `unicase` collation). A client can bring a name another object of ours already has (two
/// devices each created "Spanish"); the official server then appends "+" until the name is
/// free and marks the object modified now, and so do we: a collection with two decks of one
/// name would break every client that downloads it.
#[derive(Default)]
struct Names {
    by_id: BTreeMap<String, String>,
    owners: HashMap<UniCase<String>, String>,
}

impl Names {
    fn claim(&mut self, id: &str, incoming: &mut Map<String, Value>) {
        let Some(mut name) = incoming
            .get("name")
            .and_then(Value::as_str)
            .map(String::from)
        else {
            return;
        };
        let taken = |owners: &HashMap<UniCase<String>, String>, name: &str| match owners
            .get(&UniCase::new(name.to_string()))
        {
            Some(owner) => owner != id,
            None => false,
        };
        if taken(&self.owners, &name) {
            while taken(&self.owners, &name) {
                name.push('+');
            }
            incoming.insert("name".into(), name.clone().into());
            incoming.insert("mod".into(), now_secs().into());
        }
        if let Some(old) = self.by_id.insert(id.to_string(), name.clone()) {
            let old = UniCase::new(old);
            if self.owners.get(&old).is_some_and(|owner| owner == id) {
                self.owners.remove(&old);
            }
        }
        self.owners.insert(UniCase::new(name), id.to_string());
    }
}

fn object_name(json: &str) -> String {
    /// Only the name: the rest of the object is skipped, not built.
    #[derive(serde::Deserialize)]
    struct Named {
        #[serde(default)]
        name: Option<Value>,
    }
    serde_json::from_str::<Named>(json)
        .ok()
        .and_then(|object| object.name?.as_str().map(String::from))
        .unwrap_or_default()
}

fn modified(object: &Map<String, Value>) -> i64 {
    object
        .get("mod")
        .and_then(crate::protocol::lenient_i64)
        .unwrap_or(0)
}

/// What a note's checks need of its notetype: read once per notetype and chunk, without
/// building the rest (templates and CSS are most of a notetype's JSON).
#[derive(Debug, Clone, Copy)]
struct NotetypeShape {
    fields: usize,
    sort_index: usize,
}

impl NotetypeShape {
    fn parse(mid: i64, json: &str) -> Result<NotetypeShape, SyncError> {
        #[derive(serde::Deserialize)]
        struct Shape {
            #[serde(default)]
            flds: Option<Value>,
            #[serde(default)]
            sortf: Option<Value>,
        }
        let shape: Shape = serde_json::from_str(json)
            .map_err(|e| SyncError::Internal(format!("stored notetype {mid}: {e}")))?;
        Ok(NotetypeShape {
            fields: shape
                .flds
                .as_ref()
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
                .max(1),
            sort_index: shape
                .sortf
                .as_ref()
                .and_then(crate::protocol::lenient_i64)
                .and_then(|i| usize::try_from(i).ok())
                .unwrap_or(0),
        })
    }
}

/// Check the note against its notetype and compute what the sender leaves empty.
fn prepare_note(id: i64, note: &mut NoteRow, notetype: NotetypeShape) -> Result<(), SyncError> {
    let expected = notetype.fields;
    note.fields = clean_fields(&note.fields);
    let found = note.fields.split('\u{1f}').count();
    if found != expected {
        return Err(bad(format!(
            "note {id} has {found} fields, its notetype {expected}"
        )));
    }
    note.sort_field = match sort_field(&note.fields, notetype.sort_index) {
        SortValue::Int(i) => SortField::Int(i),
        SortValue::Real(f) => SortField::Real(f),
        SortValue::Text(t) => SortField::Text(t),
    };
    note.checksum = first_field_checksum(&note.fields);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(objects: &[(&str, &str)]) -> Names {
        let by_id: BTreeMap<String, String> = objects
            .iter()
            .map(|(id, name)| (id.to_string(), name.to_string()))
            .collect();
        let owners = by_id
            .iter()
            .map(|(id, name)| (UniCase::new(name.clone()), id.clone()))
            .collect();
        Names { by_id, owners }
    }

    fn object(name: &str) -> Map<String, Value> {
        let mut object = Map::new();
        object.insert("name".into(), name.into());
        object.insert("mod".into(), 1.into());
        object
    }

    #[test]
    fn a_taken_name_gets_plus_signs_until_free_ignoring_case() {
        let mut names = names(&[("1", "Travel"), ("2", "TRAVEL+")]);
        let mut incoming = object("travel");
        names.claim("3", &mut incoming);
        assert_eq!(incoming["name"], "travel++");
        assert!(incoming["mod"].as_i64().unwrap() > 1);
        // The new name is now taken too.
        let mut next = object("Travel++");
        names.claim("4", &mut next);
        assert_eq!(next["name"], "Travel+++");
    }

    #[test]
    fn an_object_keeps_its_own_name_and_frees_the_old_one() {
        let mut names = names(&[("1", "Travel"), ("2", "Work")]);
        let mut renamed = object("Trips");
        names.claim("1", &mut renamed);
        assert_eq!(renamed["mod"], 1, "not renamed, not re-stamped");
        let mut same = object("Work");
        names.claim("2", &mut same);
        assert_eq!(same["name"], "Work");
        let mut reuse = object("travel");
        names.claim("3", &mut reuse);
        assert_eq!(reuse["name"], "travel", "the old name was freed");
    }
}
