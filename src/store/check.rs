//! `ankisyncd check`: the invariants the rest of the store keeps, verified from one read
//! snapshot. Each broken one is a [`Finding`] that says what, for which user, what was
//! expected and what was found, and carries the [`Fix`] that `repair` (store/repair.rs)
//! applies. Fixes rebuild derived data only: counts, indexes, reference counts, and rows
//! nothing can reach any more. User rows are never changed; what only a backup can mend is
//! reported as such.
//!
//! The invariants, by table:
//! - `users` ↔ `user_names` ↔ `collections`, `host_keys` ↔ `user_host_keys`: every user has
//!   its name index and collection record, every key a user and its index entry;
//! - `meta`: the next user id and generation are above every one in use;
//! - `generations`: a collection points at a live generation and a live generation is
//!   pointed at; no generation of a removed user outlives it; no rows under a generation
//!   nobody records; no upload left half written;
//! - counts in each collection record (and each retained generation's) equal its rows;
//! - `changes`: every row with a usn at least the generation's `indexed_from` is indexed
//!   under its usn, and every entry has its row;
//! - `media_usn` holds exactly one entry per media row, `media_totals` the present files,
//!   the collection record's media usn is not behind any file;
//! - `blob_refs` counts the media rows pointing at each blob; no blob without references,
//!   no reference without its blob;
//! - `staged` is empty: no sync survives a stop.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata};

use super::tables::{
    CardRow, CollectionRecord, Counts, GenerationRecord, GenerationState, HostKeyRecord,
    MediaRecord, NoteRow, ObjectKind, RevlogRow, RowKind, UserRecord, BLOBS, BLOB_REFS, CARDS,
    CHANGES, COLLECTIONS, GENERATIONS, GRAVES, HOST_KEYS, MEDIA, MEDIA_TOTALS, MEDIA_USN, META,
    META_NEXT_GENERATION, META_NEXT_USER_ID, NOTES, OBJECTS, REVLOG, STAGED, USERS, USER_HOST_KEYS,
    USER_NAMES,
};
use super::{decode, decode_row, Store, StoreError};

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The user it concerns (name, or `#id` for a user that no longer exists).
    pub user: Option<String>,
    pub what: String,
    pub expected: String,
    pub found: String,
    pub(super) fix: Fix,
}

impl Finding {
    /// Whether `repair` can mend it (derived data), or only a backup can.
    pub fn repairable(&self) -> bool {
        self.fix != Fix::None
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(user) = &self.user {
            write!(f, "user {user}: ")?;
        }
        write!(
            f,
            "{}: expected {}, found {}",
            self.what, self.expected, self.found
        )?;
        if !self.repairable() {
            write!(f, " (not derived data: restore a backup)")?;
        }
        Ok(())
    }
}

/// How `repair` mends a finding; every fix touches derived data or unreachable rows only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Fix {
    /// Only a backup can mend it.
    None,
    UserNames,
    HostKeys,
    Meta,
    /// Remove the collection record of a user that no longer exists.
    RemoveCollection {
        user_id: u64,
    },
    /// Make the generation the collection points at its live one (creating its record).
    MarkLive {
        user_id: u64,
        generation: u64,
    },
    /// A live generation the collection does not point at becomes a retained one.
    MarkRetained {
        user_id: u64,
        generation: u64,
    },
    /// Doom a generation whose user was removed.
    Doom {
        user_id: u64,
        generation: u64,
    },
    /// Delete every row of a generation nobody can reach (and its record).
    DeleteGeneration {
        generation: u64,
    },
    /// Set the counts of a live (`None`) or retained generation's collection record.
    Counts {
        user_id: u64,
        retained: Option<u64>,
        counts: Counts,
    },
    /// Rebuild a generation's changes index from its rows.
    Reindex {
        generation: u64,
        from: i32,
    },
    /// Rebuild a user's `media_usn`, `media_totals` and media usn from the media rows.
    MediaIndex {
        user_id: u64,
    },
    /// Remove the media rows of a user that no longer exists.
    RemoveMedia {
        user_id: u64,
    },
    /// Rebuild every blob reference count and drop blobs nothing refers to.
    BlobRefs,
    ClearStaged,
}

/// Everything `check` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    pub findings: Vec<Finding>,
    /// Facts that are not faults (e.g. generations waiting for deletion).
    pub notes: Vec<String>,
    pub users: u64,
    pub generations: u64,
    /// Collection rows (notes, cards, reviews) of live and retained generations.
    pub rows: u64,
}

impl CheckReport {
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

impl Store {
    /// Verify every invariant from one snapshot. Reads the whole file.
    pub fn check(&self) -> Result<CheckReport, StoreError> {
        let tx = self.read()?;
        let mut checker = Checker::new(&tx)?;
        checker.users()?;
        checker.generations()?;
        checker.media()?;
        checker.staged()?;
        Ok(checker.report)
    }
}

struct Checker<'t> {
    tx: &'t ReadTransaction,
    /// User id → name, from `users`.
    names: BTreeMap<u64, String>,
    report: CheckReport,
}

impl<'t> Checker<'t> {
    fn new(tx: &'t ReadTransaction) -> Result<Checker<'t>, StoreError> {
        let mut names = BTreeMap::new();
        for entry in tx.open_table(USERS)?.iter()? {
            let (name, value) = entry?;
            let record: UserRecord = decode(value.value(), "users", name.value())?;
            names.insert(record.id, name.value().to_string());
        }
        Ok(Checker {
            tx,
            report: CheckReport {
                users: names.len() as u64,
                ..CheckReport::default()
            },
            names,
        })
    }

    fn name(&self, user_id: u64) -> String {
        self.names
            .get(&user_id)
            .cloned()
            .unwrap_or_else(|| format!("#{user_id}"))
    }

    fn find(
        &mut self,
        user_id: Option<u64>,
        what: impl Into<String>,
        expected: impl fmt::Display,
        found: impl fmt::Display,
        fix: Fix,
    ) {
        let user = user_id.map(|id| self.name(id));
        self.report.findings.push(Finding {
            user,
            what: what.into(),
            expected: expected.to_string(),
            found: found.to_string(),
            fix,
        });
    }

    /// Users, their name index, collection records, host keys and the id counter.
    fn users(&mut self) -> Result<(), StoreError> {
        let tx = self.tx;
        let by_id = tx.open_table(USER_NAMES)?;
        for (id, name) in self.names.clone() {
            let indexed = by_id.get(id)?.map(|v| v.value().to_string());
            if indexed.as_deref() != Some(name.as_str()) {
                self.find(
                    Some(id),
                    "name index (user_names)",
                    format!("{id} → {name}"),
                    describe(indexed),
                    Fix::UserNames,
                );
            }
        }
        for entry in by_id.iter()? {
            let (id, name) = entry?;
            if !self.names.contains_key(&id.value()) {
                self.find(
                    None,
                    "name index (user_names)",
                    "no entry for a user that does not exist",
                    format!("{} → {}", id.value(), name.value()),
                    Fix::UserNames,
                );
            }
        }
        let collections = tx.open_table(COLLECTIONS)?;
        for id in self.names.keys().copied().collect::<Vec<_>>() {
            if collections.get(id)?.is_none() {
                self.find(Some(id), "collection record", "a record", "none", Fix::None);
            }
        }
        for entry in collections.iter()? {
            let user_id = entry?.0.value();
            if !self.names.contains_key(&user_id) {
                self.find(
                    Some(user_id),
                    "collection record of a removed user",
                    "none",
                    "a record",
                    Fix::RemoveCollection { user_id },
                );
            }
        }
        self.host_keys()?;
        let meta = tx.open_table(META)?;
        let next_user = meta.get(META_NEXT_USER_ID)?.map_or(1, |v| v.value());
        let highest = self.names.keys().next_back().copied().unwrap_or(0);
        if next_user <= highest {
            self.find(
                None,
                "next user id (meta)",
                format!("above {highest}"),
                next_user,
                Fix::Meta,
            );
        }
        Ok(())
    }

    fn host_keys(&mut self) -> Result<(), StoreError> {
        let keys = self.tx.open_table(HOST_KEYS)?;
        let index = self.tx.open_table(USER_HOST_KEYS)?;
        let mut stray = 0u64;
        let mut unindexed = 0u64;
        for entry in keys.iter()? {
            let (hash, value) = entry?;
            let hash = hash.value();
            let record: HostKeyRecord = decode(value.value(), "host_keys", hex::encode(hash))?;
            if !self.names.contains_key(&record.user_id) {
                stray += 1;
            } else if index.get((record.user_id, hash))?.is_none() {
                unindexed += 1;
            }
        }
        let mut dangling = 0u64;
        for entry in index.iter()? {
            let (user_id, hash) = entry?.0.value();
            let owner = keys
                .get(hash)?
                .map(|v| decode::<HostKeyRecord>(v.value(), "host_keys", hex::encode(hash)))
                .transpose()?
                .map(|r| r.user_id);
            if owner != Some(user_id) {
                dangling += 1;
            }
        }
        if stray + unindexed + dangling > 0 {
            self.find(
                None,
                "host keys (host_keys, user_host_keys)",
                "every key of an existing user, indexed under it",
                format!(
                    "{stray} key(s) of removed users, {unindexed} not indexed, {dangling} \
                     index entries without their key"
                ),
                Fix::HostKeys,
            );
        }
        Ok(())
    }

    /// Generation records, what points at them, their rows, counts and changes index.
    fn generations(&mut self) -> Result<(), StoreError> {
        let tx = self.tx;
        let mut records: BTreeMap<u64, (u64, GenerationRecord)> = BTreeMap::new();
        for entry in tx.open_table(GENERATIONS)?.iter()? {
            let (key, value) = entry?;
            let (user_id, generation) = key.value();
            let record: GenerationRecord = decode(value.value(), "generations", generation)?;
            records.insert(generation, (user_id, record));
        }
        self.report.generations = records.len() as u64;
        let collections = self.collection_records()?;
        for (&user_id, collection) in &collections {
            let generation = collection.generation;
            if generation == 0 {
                self.counts(user_id, None, 0, &collection.counts)?;
                continue;
            }
            match records.get(&generation) {
                Some((owner, record))
                    if *owner == user_id && record.state == GenerationState::Live => {}
                found => {
                    let found = match found {
                        None => "no record".to_string(),
                        Some((owner, record)) => {
                            format!("{:?}, of user #{owner}", record.state)
                        }
                    };
                    self.find(
                        Some(user_id),
                        format!("generation {generation} (the collection's)"),
                        "live",
                        found,
                        Fix::MarkLive {
                            user_id,
                            generation,
                        },
                    );
                }
            }
        }
        let mut pending_deletion = 0;
        for (&generation, (user_id, record)) in &records {
            let user_id = *user_id;
            let exists = self.names.contains_key(&user_id);
            match record.state {
                GenerationState::Doomed => {
                    pending_deletion += 1;
                    continue;
                }
                GenerationState::Building => {
                    self.find(
                        Some(user_id),
                        format!("generation {generation}"),
                        "no upload left half written",
                        "an interrupted upload (the next start discards it)",
                        Fix::DeleteGeneration { generation },
                    );
                    continue;
                }
                _ if !exists => {
                    self.find(
                        Some(user_id),
                        format!("generation {generation} of a removed user"),
                        "doomed",
                        format!("{:?}", record.state),
                        Fix::Doom {
                            user_id,
                            generation,
                        },
                    );
                    continue;
                }
                GenerationState::Live => {
                    let pointed = collections.get(&user_id).map(|c| c.generation);
                    if pointed != Some(generation) {
                        self.find(
                            Some(user_id),
                            format!("generation {generation}"),
                            "live only if the collection points at it",
                            format!("live, the collection points at {}", describe(pointed)),
                            Fix::MarkRetained {
                                user_id,
                                generation,
                            },
                        );
                    } else if let Some(collection) = collections.get(&user_id) {
                        self.counts(user_id, None, generation, &collection.counts)?;
                    }
                }
                GenerationState::Retained => {
                    if let Some(collection) = &record.collection {
                        self.counts(user_id, Some(generation), generation, &collection.counts)?;
                    }
                }
            }
            self.changes_index(user_id, generation, record.indexed_from)?;
        }
        if pending_deletion > 0 {
            self.report.notes.push(format!(
                "{pending_deletion} generation(s) of replaced uploads or removed users wait for \
                 deletion (the running server deletes them; `check --repair` too)"
            ));
        }
        let pointed: BTreeSet<u64> = collections.values().map(|c| c.generation).collect();
        self.orphan_rows(&records, &pointed)?;
        let highest = records.keys().next_back().copied().unwrap_or(0);
        let next = tx
            .open_table(META)?
            .get(META_NEXT_GENERATION)?
            .map_or(1, |v| v.value());
        if next <= highest {
            self.find(
                None,
                "next generation (meta)",
                format!("above {highest}"),
                next,
                Fix::Meta,
            );
        }
        Ok(())
    }

    fn collection_records(&self) -> Result<BTreeMap<u64, CollectionRecord>, StoreError> {
        let mut out = BTreeMap::new();
        for entry in self.tx.open_table(COLLECTIONS)?.iter()? {
            let (key, value) = entry?;
            let user_id = key.value();
            out.insert(user_id, decode(value.value(), "collections", user_id)?);
        }
        Ok(out)
    }

    /// The counts a collection record holds against the rows of its generation.
    fn counts(
        &mut self,
        user_id: u64,
        retained: Option<u64>,
        generation: u64,
        recorded: &Counts,
    ) -> Result<(), StoreError> {
        let actual = if generation == 0 {
            Counts::default()
        } else {
            count_rows(self.tx, generation)?
        };
        self.report.rows += actual.notes + actual.cards + actual.revlog;
        if actual != *recorded {
            let whose = match retained {
                None => "collection record".to_string(),
                Some(g) => format!("retained generation {g}'s record"),
            };
            self.find(
                Some(user_id),
                format!("row counts in the {whose}"),
                format!("{} (the rows)", show_counts(&actual)),
                show_counts(recorded),
                Fix::Counts {
                    user_id,
                    retained,
                    counts: actual,
                },
            );
        }
        Ok(())
    }

    fn changes_index(
        &mut self,
        user_id: u64,
        generation: u64,
        from: i32,
    ) -> Result<(), StoreError> {
        let tx = self.tx;
        let changes = tx.open_table(CHANGES)?;
        let mut missing = 0u64;
        let mut indexed = |kind: RowKind, id: i64, usn: i32| -> Result<(), StoreError> {
            if usn >= from && changes.get((generation, usn, kind as u8, id))?.is_none() {
                missing += 1;
            }
            Ok(())
        };
        row_usns(
            &tx.open_table(NOTES)?,
            &tx.open_table(CARDS)?,
            &tx.open_table(REVLOG)?,
            generation,
            &mut indexed,
        )?;
        let mut stale = 0u64;
        let (notes, cards, revlog) = (
            tx.open_table(NOTES)?,
            tx.open_table(CARDS)?,
            tx.open_table(REVLOG)?,
        );
        for entry in changes.range(
            (generation, i32::MIN, 0u8, i64::MIN)..=(generation, i32::MAX, u8::MAX, i64::MAX),
        )? {
            let (_, usn, kind, id) = entry?.0.value();
            let row_usn = match kind {
                k if k == RowKind::Note as u8 => notes
                    .get((generation, id))?
                    .map(|v| decode_row::<NoteRow>(v.value(), "notes", id).map(|r| r.usn))
                    .transpose()?,
                k if k == RowKind::Card as u8 => cards
                    .get((generation, id))?
                    .map(|v| decode_row::<CardRow>(v.value(), "cards", id).map(|r| r.usn))
                    .transpose()?,
                k if k == RowKind::Revlog as u8 => revlog
                    .get((generation, id))?
                    .map(|v| decode_row::<RevlogRow>(v.value(), "revlog", id).map(|r| r.usn))
                    .transpose()?,
                _ => None,
            };
            if row_usn != Some(usn) {
                stale += 1;
            }
        }
        if missing + stale > 0 {
            self.find(
                Some(user_id),
                format!("changes index of generation {generation}"),
                format!("every row with usn ≥ {from} indexed under its usn, nothing else"),
                format!("{missing} row(s) missing, {stale} entry(ies) without their row or usn"),
                Fix::Reindex { generation, from },
            );
        }
        Ok(())
    }

    /// Rows under a generation number that has no record and no collection points at:
    /// nothing can reach them.
    fn orphan_rows(
        &mut self,
        records: &BTreeMap<u64, (u64, GenerationRecord)>,
        pointed: &BTreeSet<u64>,
    ) -> Result<(), StoreError> {
        let tx = self.tx;
        let mut seen = BTreeSet::new();
        for table in [NOTES, CARDS, REVLOG] {
            let table = tx.open_table(table)?;
            seen.extend(distinct(|g| {
                Ok(table
                    .range((g, i64::MIN)..)?
                    .next()
                    .transpose()?
                    .map(|(k, _)| k.value().0))
            })?);
        }
        for table in [GRAVES, CHANGES] {
            let table = tx.open_table(table)?;
            seen.extend(distinct(|g| {
                Ok(table
                    .range((g, i32::MIN, 0u8, i64::MIN)..)?
                    .next()
                    .transpose()?
                    .map(|(k, _)| k.value().0))
            })?);
        }
        let objects = tx.open_table(OBJECTS)?;
        seen.extend(distinct(|g| {
            Ok(objects
                .range((g, 0u8, "")..)?
                .next()
                .transpose()?
                .map(|(k, _)| k.value().0))
        })?);
        for generation in seen {
            if !records.contains_key(&generation) && !pointed.contains(&generation) {
                self.find(
                    None,
                    format!("rows of generation {generation}"),
                    "a generation record for every generation with rows",
                    "rows nothing refers to",
                    Fix::DeleteGeneration { generation },
                );
            }
        }
        Ok(())
    }

    /// The media index, totals and usn of each user, and the blob store's reference counts.
    fn media(&mut self) -> Result<(), StoreError> {
        let tx = self.tx;
        let collections = self.collection_records()?;
        let by_usn = tx.open_table(MEDIA_USN)?;
        let media = tx.open_table(MEDIA)?;
        #[derive(Default)]
        struct Seen {
            files: u64,
            bytes: u64,
            max_usn: i32,
            unindexed: u64,
        }
        let mut users: BTreeMap<u64, Seen> = BTreeMap::new();
        let mut refs: HashMap<[u8; 32], u64> = HashMap::new();
        for entry in media.iter()? {
            let (key, value) = entry?;
            let (user_id, name) = key.value();
            let record: MediaRecord = decode(value.value(), "media", name)?;
            let seen = users.entry(user_id).or_default();
            if let Some(blob) = record.blob {
                seen.files += 1;
                seen.bytes += record.size;
                *refs.entry(blob).or_default() += 1;
            }
            seen.max_usn = seen.max_usn.max(record.usn);
            if by_usn
                .get((user_id, record.usn))?
                .map(|v| v.value() == name)
                != Some(true)
            {
                seen.unindexed += 1;
            }
        }
        let mut stale: BTreeMap<u64, u64> = BTreeMap::new();
        for entry in by_usn.iter()? {
            let (key, name) = entry?;
            let (user_id, usn) = key.value();
            let record = media
                .get((user_id, name.value()))?
                .map(|v| decode::<MediaRecord>(v.value(), "media", name.value()))
                .transpose()?;
            if record.map(|r| r.usn) != Some(usn) {
                *stale.entry(user_id).or_default() += 1;
            }
        }
        let totals = tx.open_table(MEDIA_TOTALS)?;
        let mut with_totals = BTreeSet::new();
        for entry in totals.iter()? {
            with_totals.insert(entry?.0.value());
        }
        let all_users: BTreeSet<u64> = users
            .keys()
            .chain(stale.keys())
            .chain(with_totals.iter())
            .copied()
            .collect();
        for user_id in all_users {
            if !self.names.contains_key(&user_id) {
                self.find(
                    Some(user_id),
                    "media of a removed user",
                    "none",
                    "media rows or totals",
                    Fix::RemoveMedia { user_id },
                );
                continue;
            }
            let seen = users.remove(&user_id).unwrap_or_default();
            let stale = stale.get(&user_id).copied().unwrap_or(0);
            if seen.unindexed + stale > 0 {
                self.find(
                    Some(user_id),
                    "media usn index (media_usn)",
                    "one entry per media file, under its usn",
                    format!(
                        "{} file(s) not indexed, {stale} entry(ies) without their file",
                        seen.unindexed
                    ),
                    Fix::MediaIndex { user_id },
                );
            }
            let recorded = totals.get(user_id)?.map_or((0, 0), |v| v.value());
            if recorded != (seen.files, seen.bytes) {
                self.find(
                    Some(user_id),
                    "media totals (files, bytes)",
                    format!("({}, {}) (the files)", seen.files, seen.bytes),
                    format!("({}, {})", recorded.0, recorded.1),
                    Fix::MediaIndex { user_id },
                );
            }
            let media_usn = collections.get(&user_id).map_or(0, |c| c.media_usn);
            if media_usn < seen.max_usn {
                self.find(
                    Some(user_id),
                    "media usn in the collection record",
                    format!("at least {} (the newest file's)", seen.max_usn),
                    media_usn,
                    Fix::MediaIndex { user_id },
                );
            }
        }
        self.blobs(refs)
    }

    fn blobs(&mut self, mut expected: HashMap<[u8; 32], u64>) -> Result<(), StoreError> {
        let tx = self.tx;
        let referenced: BTreeSet<[u8; 32]> = expected.keys().copied().collect();
        let mut wrong = 0u64;
        for entry in tx.open_table(BLOB_REFS)?.iter()? {
            let (blob, count) = entry?;
            if expected.remove(&blob.value()) != Some(count.value()) {
                wrong += 1;
            }
        }
        let uncounted = expected.len() as u64;
        let blobs = tx.open_table(BLOBS)?;
        let mut stored = BTreeSet::new();
        let mut next = Some([0u8; 32]);
        while let Some(from) = next {
            let Some(entry) = blobs.range((from, 0u32)..)?.next() else {
                break;
            };
            let blob = entry?.0.value().0;
            stored.insert(blob);
            next = successor(blob);
        }
        let unreferenced = stored.difference(&referenced).count();
        let missing = referenced.difference(&stored).count();
        if wrong + uncounted > 0 || unreferenced > 0 {
            self.find(
                None,
                "blob reference counts (blob_refs)",
                "one count per blob, equal to the media files using it; no blob unused",
                format!(
                    "{wrong} count(s) wrong, {uncounted} missing, {unreferenced} blob(s) \
                     nothing uses"
                ),
                Fix::BlobRefs,
            );
        }
        if missing > 0 {
            self.find(
                None,
                "media bytes (blobs)",
                "the bytes of every media file",
                format!("{missing} file content(s) missing"),
                Fix::None,
            );
        }
        Ok(())
    }

    fn staged(&mut self) -> Result<(), StoreError> {
        let staged = self.tx.open_table(STAGED)?.len()?;
        if staged > 0 {
            self.find(
                None,
                "staged rows of unfinished syncs",
                "none on a stopped server",
                format!("{staged} (the next start clears them)"),
                Fix::ClearStaged,
            );
        }
        Ok(())
    }
}

/// Calls `f(kind, id, usn)` for every note, card and review of a generation.
pub(super) fn row_usns(
    notes: &impl ReadableTable<(u64, i64), &'static [u8]>,
    cards: &impl ReadableTable<(u64, i64), &'static [u8]>,
    revlog: &impl ReadableTable<(u64, i64), &'static [u8]>,
    generation: u64,
    f: &mut impl FnMut(RowKind, i64, i32) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let range = (generation, i64::MIN)..=(generation, i64::MAX);
    for entry in notes.range(range.clone())? {
        let (key, value) = entry?;
        let id = key.value().1;
        f(
            RowKind::Note,
            id,
            decode_row::<NoteRow>(value.value(), "notes", id)?.usn,
        )?;
    }
    for entry in cards.range(range.clone())? {
        let (key, value) = entry?;
        let id = key.value().1;
        f(
            RowKind::Card,
            id,
            decode_row::<CardRow>(value.value(), "cards", id)?.usn,
        )?;
    }
    for entry in revlog.range(range)? {
        let (key, value) = entry?;
        let id = key.value().1;
        f(
            RowKind::Revlog,
            id,
            decode_row::<RevlogRow>(value.value(), "revlog", id)?.usn,
        )?;
    }
    Ok(())
}

/// Row counts of a generation, as a collection record keeps them.
pub(super) fn count_rows(tx: &ReadTransaction, generation: u64) -> Result<Counts, StoreError> {
    let rows = (generation, i64::MIN)..=(generation, i64::MAX);
    let objects = tx.open_table(OBJECTS)?;
    let kind = |kind: ObjectKind| -> Result<u64, StoreError> {
        let k = kind as u8;
        Ok(objects
            .range((generation, k, "")..(generation, k + 1, ""))?
            .count() as u64)
    };
    Ok(Counts {
        notes: tx.open_table(NOTES)?.range(rows.clone())?.count() as u64,
        cards: tx.open_table(CARDS)?.range(rows.clone())?.count() as u64,
        revlog: tx.open_table(REVLOG)?.range(rows)?.count() as u64,
        graves: tx
            .open_table(GRAVES)?
            .range(
                (generation, i32::MIN, 0u8, i64::MIN)..=(generation, i32::MAX, u8::MAX, i64::MAX),
            )?
            .count() as u64,
        notetypes: kind(ObjectKind::Notetype)?,
        decks: kind(ObjectKind::Deck)?,
        deck_configs: kind(ObjectKind::DeckConfig)?,
    })
}

/// Every distinct first key component, visiting one key per value: `first_from(g)` gives
/// the first component of the first key at or after `g`.
fn distinct(
    mut first_from: impl FnMut(u64) -> Result<Option<u64>, StoreError>,
) -> Result<BTreeSet<u64>, StoreError> {
    let mut found = BTreeSet::new();
    let mut next = Some(0u64);
    while let Some(from) = next {
        let Some(generation) = first_from(from)? else {
            break;
        };
        found.insert(generation);
        next = generation.checked_add(1);
    }
    Ok(found)
}

/// The next 32-byte key in order, if any.
fn successor(mut key: [u8; 32]) -> Option<[u8; 32]> {
    for byte in key.iter_mut().rev() {
        if *byte == u8::MAX {
            *byte = 0;
        } else {
            *byte += 1;
            return Some(key);
        }
    }
    None
}

fn show_counts(c: &Counts) -> String {
    format!(
        "notes {}, cards {}, reviews {}, graves {}, notetypes {}, decks {}, deck configs {}",
        c.notes, c.cards, c.revlog, c.graves, c.notetypes, c.decks, c.deck_configs
    )
}

fn describe<T: fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "nothing".to_string(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use redb::WriteTransaction;

    use super::super::fixture::{add_in_flight, note, populated_store, ALICE, BOB, CAROL};
    use super::super::{encode, encode_row};
    use super::*;

    /// Break the file behind the store's back.
    fn corrupt(store: &Store, damage: impl FnOnce(&WriteTransaction)) {
        let tx = store.write().unwrap();
        damage(&tx);
        tx.commit().unwrap();
    }

    fn collection(tx: &WriteTransaction, user: u64) -> CollectionRecord {
        let table = tx.open_table(COLLECTIONS).unwrap();
        let bytes = table.get(user).unwrap().unwrap().value().to_vec();
        decode(&bytes, "collections", user).unwrap()
    }

    fn set_collection(tx: &WriteTransaction, user: u64, record: &CollectionRecord) {
        tx.open_table(COLLECTIONS)
            .unwrap()
            .insert(user, encode(record).unwrap().as_slice())
            .unwrap();
    }

    /// Everything a user's devices could see or get back: rows and objects of live and
    /// retained generations, and media rows. Repairs must never change it.
    fn user_rows(store: &Store) -> Vec<String> {
        let tx = store.read().unwrap();
        let mut kept = BTreeSet::new();
        for entry in tx.open_table(GENERATIONS).unwrap().iter().unwrap() {
            let (k, v) = entry.unwrap();
            let record: GenerationRecord = decode(v.value(), "generations", 0).unwrap();
            if matches!(
                record.state,
                GenerationState::Live | GenerationState::Retained
            ) {
                kept.insert(k.value().1);
            }
        }
        let mut out = Vec::new();
        for table in [NOTES, CARDS, REVLOG] {
            for entry in tx.open_table(table).unwrap().iter().unwrap() {
                let (k, v) = entry.unwrap();
                if kept.contains(&k.value().0) {
                    out.push(format!("{:?} {:?}", k.value(), v.value()));
                }
            }
        }
        for entry in tx.open_table(OBJECTS).unwrap().iter().unwrap() {
            let (k, v) = entry.unwrap();
            if kept.contains(&k.value().0) {
                out.push(format!("{:?} {:?}", k.value(), v.value()));
            }
        }
        for entry in tx.open_table(MEDIA).unwrap().iter().unwrap() {
            let (k, v) = entry.unwrap();
            out.push(format!("{:?} {:?}", k.value(), v.value()));
        }
        out
    }

    /// Check finds exactly `what` (by the start of each finding's text, sorted).
    fn detected(store: &Store, what: &[&str]) {
        let report = store.check().unwrap();
        let mut found: Vec<String> = report.findings.iter().map(|f| f.to_string()).collect();
        found.sort();
        assert_eq!(found.len(), what.len(), "{found:#?}");
        for (finding, expected) in found.iter().zip(what) {
            assert!(
                finding.starts_with(expected),
                "{finding:?} should start with {expected:?}"
            );
        }
    }

    /// Repair leaves a file that checks clean.
    fn repaired(store: &Store) {
        let repair = store.repair().unwrap();
        assert!(!repair.changes.is_empty());
        let after = store.check().unwrap();
        assert_eq!(after, repair.remaining);
        assert!(
            after.is_clean(),
            "after {:#?}: {:#?}",
            repair.changes,
            after.findings
        );
    }

    /// Check finds exactly `what`, repair fixes it without touching a user's rows.
    fn detected_and_repaired(store: &Store, what: &[&str]) {
        detected(store, what);
        let rows = user_rows(store);
        repaired(store);
        assert!(user_rows(store) == rows, "a repair changed a user's rows");
    }

    #[test]
    fn a_consistent_file_passes() {
        let (_dir, store) = populated_store();
        let report = store.check().unwrap();
        assert!(report.is_clean(), "{:#?}", report.findings);
        assert_eq!(report.users, 2);
        // Alice: 7 notes, 1 deleted by a sync, cards likewise, 8 reviews; her retained
        // generation: 5 of each; bob: 3 of each.
        assert_eq!(report.rows, (6 + 6 + 8) + 15 + 9);
        assert_eq!(report.notes.len(), 1, "carol's generation awaits deletion");
    }

    #[test]
    fn a_wrong_count_is_found_and_rebuilt() {
        let (_dir, store) = populated_store();
        corrupt(&store, |tx| {
            let mut record = collection(tx, ALICE);
            record.counts.notes += 1;
            record.counts.decks = 0;
            set_collection(tx, ALICE, &record);
        });
        let finding = &store.check().unwrap().findings[0];
        assert_eq!(finding.user.as_deref(), Some("alice"));
        assert!(finding
            .expected
            .starts_with("notes 6, cards 6, reviews 8, graves 3"));
        assert!(finding.found.starts_with("notes 7,"), "{finding}");
        detected_and_repaired(&store, &["user alice: row counts in the collection record"]);
        assert_eq!(store.collection(ALICE).unwrap().unwrap().counts.notes, 6);
    }

    #[test]
    fn a_retained_generations_counts_are_checked_too() {
        let (_dir, store) = populated_store();
        corrupt(&store, |tx| {
            let mut table = tx.open_table(GENERATIONS).unwrap();
            let (key, mut record) = table
                .iter()
                .unwrap()
                .map(Result::unwrap)
                .map(|(k, v)| {
                    (
                        k.value(),
                        decode::<GenerationRecord>(v.value(), "", 0).unwrap(),
                    )
                })
                .find(|(_, r)| r.state == GenerationState::Retained)
                .unwrap();
            record.collection.as_mut().unwrap().counts.cards = 99;
            table
                .insert(key, encode(&record).unwrap().as_slice())
                .unwrap();
        });
        detected_and_repaired(
            &store,
            &["user alice: row counts in the retained generation"],
        );
    }

    #[test]
    fn the_changes_index_must_match_the_rows() {
        let (_dir, store) = populated_store();
        let generation = store.collection(ALICE).unwrap().unwrap().generation;
        corrupt(&store, |tx| {
            let mut changes = tx.open_table(CHANGES).unwrap();
            // The sync's edit of note 1 forgotten, and an entry for a row that is not there.
            assert!(changes
                .remove((generation, 1, RowKind::Note as u8, 1))
                .unwrap()
                .is_some());
            changes
                .insert((generation, 1, RowKind::Card as u8, 12345), ())
                .unwrap();
        });
        let report = store.check().unwrap();
        assert_eq!(
            report.findings[0].found,
            "1 row(s) missing, 1 entry(ies) without their row or usn"
        );
        detected_and_repaired(&store, &["user alice: changes index of generation"]);
    }

    #[test]
    fn the_media_index_totals_and_usn_must_match_the_files() {
        let (_dir, store) = populated_store();
        corrupt(&store, |tx| {
            tx.open_table(MEDIA_USN)
                .unwrap()
                .retain_in((BOB, 0)..=(BOB, 1), |_, _| false)
                .unwrap();
            tx.open_table(MEDIA_TOTALS)
                .unwrap()
                .insert(ALICE, (5, 5))
                .unwrap();
            let mut record = collection(tx, ALICE);
            record.media_usn = 1;
            set_collection(tx, ALICE, &record);
        });
        detected_and_repaired(
            &store,
            &[
                "user alice: media totals",
                "user alice: media usn in the collection record",
                "user bob: media usn index",
            ],
        );
        assert_eq!(store.media_status(ALICE).unwrap().unwrap().last_usn, 2);
        assert_eq!(store.media_changes(BOB, 0, 10).unwrap().len(), 2);
    }

    #[test]
    fn blob_reference_counts_must_match_the_files() {
        let (_dir, store) = populated_store();
        let same: [u8; 32] = blake3::hash(b"same").into();
        corrupt(&store, |tx| {
            tx.open_table(BLOB_REFS).unwrap().insert(same, 7).unwrap();
            // A blob nobody refers to, counted and not.
            tx.open_table(BLOB_REFS)
                .unwrap()
                .insert([9u8; 32], 1)
                .unwrap();
            tx.open_table(BLOBS)
                .unwrap()
                .insert(([8u8; 32], 0), b"lost".as_slice())
                .unwrap();
        });
        detected_and_repaired(&store, &["blob reference counts"]);
        let stats = store.blob_stats().unwrap();
        assert_eq!(
            (stats.blobs, stats.chunks),
            (2, 2),
            "same (twice used) and x"
        );
    }

    #[test]
    fn missing_media_bytes_are_reported_as_not_repairable() {
        let (_dir, store) = populated_store();
        let x: [u8; 32] = blake3::hash(b"x").into();
        corrupt(&store, |tx| {
            tx.open_table(BLOBS).unwrap().remove((x, 0)).unwrap();
        });
        let report = store.check().unwrap();
        assert_eq!(report.findings.len(), 1);
        assert!(!report.findings[0].repairable());
        assert!(report.findings[0]
            .to_string()
            .ends_with("restore a backup)"));
    }

    #[test]
    fn rows_under_no_generation_and_leftovers_of_a_running_server_are_removed() {
        let (_dir, store) = populated_store();
        add_in_flight(&store);
        corrupt(&store, |tx| {
            tx.open_table(NOTES)
                .unwrap()
                .insert((999, 1), encode_row(&note("stray", 0)).unwrap().as_slice())
                .unwrap();
        });
        detected_and_repaired(
            &store,
            &[
                "rows of generation 999",
                "staged rows of unfinished syncs",
                "user bob: generation",
            ],
        );
        assert!(
            store.doomed_generations().unwrap().is_empty(),
            "carol's went too"
        );
    }

    #[test]
    fn generation_pointers_must_agree() {
        let (_dir, store) = populated_store();
        corrupt(&store, |tx| {
            // Bob's collection points at a generation without a record; carol's doomed
            // generation is live again though carol is gone.
            let mut record = collection(tx, BOB);
            let bobs = record.generation;
            tx.open_table(GENERATIONS)
                .unwrap()
                .remove((BOB, bobs))
                .unwrap();
            record.counts = Counts::default();
            set_collection(tx, BOB, &record);
            let mut generations = tx.open_table(GENERATIONS).unwrap();
            let carols = generations
                .range((CAROL, 0)..=(CAROL, u64::MAX))
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .0
                .value();
            let live = GenerationRecord {
                state: GenerationState::Live,
                created_ms: 0,
                indexed_from: 0,
                collection: None,
            };
            generations
                .insert(carols, encode(&live).unwrap().as_slice())
                .unwrap();
        });
        detected(&store, &["user #3: generation", "user bob: generation"]);
        repaired(&store);
        // Bob's rows are reachable again, and counted; carol's are gone.
        let bobs = store.collection(BOB).unwrap().unwrap();
        assert_eq!(bobs.counts.notes, 3);
        let notes = store
            .snapshot()
            .unwrap()
            .notes(bobs.generation)
            .unwrap()
            .count();
        assert_eq!(notes, 3);
        assert_eq!(
            store.check().unwrap().generations,
            3,
            "alice's two and bob's"
        );
    }

    #[test]
    fn user_and_host_key_indexes_and_counters_are_rebuilt() {
        let (_dir, store) = populated_store();
        corrupt(&store, |tx| {
            tx.open_table(USER_NAMES)
                .unwrap()
                .insert(ALICE, "mallory")
                .unwrap();
            let key = HostKeyRecord {
                user_id: CAROL,
                created: 0,
                client_version: String::new(),
                last_seen: 0,
            };
            tx.open_table(HOST_KEYS)
                .unwrap()
                .insert([3u8; 32], encode(&key).unwrap().as_slice())
                .unwrap();
            tx.open_table(USER_HOST_KEYS)
                .unwrap()
                .remove((BOB, [2u8; 32]))
                .unwrap();
            let mut meta = tx.open_table(META).unwrap();
            meta.insert(META_NEXT_USER_ID, 2).unwrap();
            meta.insert(META_NEXT_GENERATION, 1).unwrap();
        });
        detected_and_repaired(
            &store,
            &[
                "host keys",
                "next generation",
                "next user id",
                "user alice: name index",
            ],
        );
        assert_eq!(
            store.list_users().unwrap()[1].devices,
            1,
            "bob's key is listed"
        );
        assert_eq!(store.resolve_host_key(&[3u8; 32]).unwrap(), None);
    }

    #[test]
    fn a_removed_users_media_and_record_are_removed() {
        let (_dir, store) = populated_store();
        corrupt(&store, |tx| {
            let record = collection(tx, ALICE);
            tx.open_table(USERS).unwrap().remove("alice").unwrap();
            tx.open_table(USER_NAMES).unwrap().remove(ALICE).unwrap();
            set_collection(tx, ALICE, &record);
        });
        let rows = user_rows(&store);
        store.repair().unwrap();
        let after = store.check().unwrap();
        assert!(after.is_clean(), "{:#?}", after.findings);
        assert!(
            user_rows(&store).len() < rows.len(),
            "alice's rows are gone"
        );
        assert_eq!(store.media_status(ALICE).unwrap(), None);
    }
}
