//! `ankisyncd check --repair`: applies the fixes of a check's findings in one write
//! transaction and says what each changed. It rebuilds derived data (counts, indexes,
//! reference counts) and removes rows nothing can reach; it never changes a user's rows.
//! Generations waiting for deletion are deleted afterwards, as the running server would.

use std::collections::{BTreeMap, HashMap};

use redb::{ReadableTable, WriteTransaction};

use super::check::{row_usns, CheckReport, Fix};
use super::tables::{
    CollectionRecord, GenerationRecord, GenerationState, HostKeyRecord, MediaRecord, RowKind,
    UserRecord, BLOBS, BLOB_REFS, CARDS, CHANGES, COLLECTIONS, GENERATIONS, GRAVES, HOST_KEYS,
    MEDIA, MEDIA_TOTALS, MEDIA_USN, META, META_NEXT_GENERATION, META_NEXT_USER_ID, NOTES, OBJECTS,
    REVLOG, STAGED, USERS, USER_HOST_KEYS, USER_NAMES,
};
use super::{decode, encode, Store, StoreError};

/// Rows deleted per transaction when generations waiting for deletion are removed.
const DELETE_BATCH: usize = 50_000;
/// Check-and-fix rounds: one fix can reveal what the broken data hid (a generation marked
/// live has its counts checked next round).
const ROUNDS: usize = 4;

/// What `repair` did, and what is left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairReport {
    /// One line per change.
    pub changes: Vec<String>,
    /// A check after the repair: what only a backup can mend.
    pub remaining: CheckReport,
}

impl Store {
    /// Check, fix every repairable finding, check again (a few rounds), and delete the
    /// generations waiting for deletion.
    pub fn repair(&self) -> Result<RepairReport, StoreError> {
        let mut changes = Vec::new();
        for _ in 0..ROUNDS {
            let report = self.check()?;
            if !report.findings.iter().any(|f| f.repairable()) {
                break;
            }
            changes.extend(self.apply_fixes(&report)?);
        }
        let deleted = self.delete_doomed_generations(DELETE_BATCH)?;
        if deleted > 0 {
            changes.push(format!(
                "deleted {deleted} generation(s) waiting for deletion"
            ));
        }
        Ok(RepairReport {
            changes,
            remaining: self.check()?,
        })
    }

    /// Apply the fix of every repairable finding in one transaction; one line per change.
    fn apply_fixes(&self, report: &CheckReport) -> Result<Vec<String>, StoreError> {
        let mut fixes: Vec<(&Fix, String)> = Vec::new();
        for finding in report.findings.iter().filter(|f| f.repairable()) {
            if !fixes.iter().any(|(fix, _)| *fix == &finding.fix) {
                let label = match &finding.user {
                    Some(user) => format!("user {user}: {}", finding.what),
                    None => finding.what.clone(),
                };
                fixes.push((&finding.fix, label));
            }
        }
        // Removing a user's media leaves their blobs counted.
        let removes_media = fixes
            .iter()
            .any(|(fix, _)| matches!(fix, Fix::RemoveMedia { .. }));
        if removes_media && !fixes.iter().any(|(fix, _)| **fix == Fix::BlobRefs) {
            fixes.push((&Fix::BlobRefs, "blob reference counts".to_string()));
        }
        fixes.sort_by_key(|(fix, _)| order(fix));
        let mut done = Vec::new();
        let tx = self.write()?;
        for (fix, label) in fixes {
            done.push(format!("{label}: {}", apply(&tx, fix)?));
        }
        self.commit(tx)?;
        Ok(done)
    }
}

/// Removals first, then the rebuilds they affect; blob counts after every media change.
fn order(fix: &Fix) -> u8 {
    match fix {
        Fix::None => 0,
        Fix::UserNames => 1,
        Fix::RemoveCollection { .. } => 2,
        Fix::HostKeys => 3,
        Fix::Doom { .. } | Fix::MarkLive { .. } | Fix::MarkRetained { .. } => 4,
        Fix::DeleteGeneration { .. } => 5,
        Fix::Counts { .. } => 6,
        Fix::Reindex { .. } => 7,
        Fix::RemoveMedia { .. } => 8,
        Fix::MediaIndex { .. } => 9,
        Fix::BlobRefs => 10,
        Fix::ClearStaged => 11,
        Fix::Meta => 12,
    }
}

fn apply(tx: &WriteTransaction, fix: &Fix) -> Result<String, StoreError> {
    match fix {
        Fix::None => Ok("left as it is".to_string()),
        Fix::UserNames => {
            let users = users(tx)?;
            let mut names = tx.open_table(USER_NAMES)?;
            names.retain(|_, _| false)?;
            for (id, name) in &users {
                names.insert(id, name.as_str())?;
            }
            Ok(format!("rebuilt from the {} user(s)", users.len()))
        }
        Fix::RemoveCollection { user_id } => {
            tx.open_table(COLLECTIONS)?.remove(user_id)?;
            Ok("removed".to_string())
        }
        Fix::HostKeys => host_keys(tx),
        Fix::MarkLive {
            user_id,
            generation,
        } => {
            set_generation(tx, *user_id, *generation, GenerationState::Live)?;
            Ok(format!("generation {generation} marked live"))
        }
        Fix::MarkRetained {
            user_id,
            generation,
        } => {
            set_generation(tx, *user_id, *generation, GenerationState::Retained)?;
            Ok(format!("generation {generation} marked retained"))
        }
        Fix::Doom {
            user_id,
            generation,
        } => {
            set_generation(tx, *user_id, *generation, GenerationState::Doomed)?;
            Ok(format!("generation {generation} doomed"))
        }
        Fix::DeleteGeneration { generation } => delete_generation(tx, *generation),
        Fix::Counts {
            user_id,
            retained,
            counts,
        } => {
            match retained {
                None => {
                    let mut table = tx.open_table(COLLECTIONS)?;
                    let found = table.get(user_id)?.map(|v| v.value().to_vec());
                    if let Some(bytes) = found {
                        let mut record: CollectionRecord = decode(&bytes, "collections", user_id)?;
                        record.counts = *counts;
                        table.insert(user_id, encode(&record)?.as_slice())?;
                    }
                }
                Some(generation) => {
                    let mut table = tx.open_table(GENERATIONS)?;
                    let key = (*user_id, *generation);
                    let found = table.get(key)?.map(|v| v.value().to_vec());
                    if let Some(bytes) = found {
                        let mut record: GenerationRecord =
                            decode(&bytes, "generations", generation)?;
                        if let Some(collection) = &mut record.collection {
                            collection.counts = *counts;
                        }
                        table.insert(key, encode(&record)?.as_slice())?;
                    }
                }
            }
            Ok("set to the row counts".to_string())
        }
        Fix::Reindex { generation, from } => reindex(tx, *generation, *from),
        Fix::RemoveMedia { user_id } => {
            let removed = tx
                .open_table(MEDIA)?
                .extract_from_if((*user_id, "")..(*user_id + 1, ""), |_, _| true)?
                .try_fold(0usize, |n, entry| entry.map(|_| n + 1))?;
            tx.open_table(MEDIA_USN)?
                .retain_in((*user_id, i32::MIN)..=(*user_id, i32::MAX), |_, _| false)?;
            tx.open_table(MEDIA_TOTALS)?.remove(user_id)?;
            Ok(format!("removed {removed} media row(s)"))
        }
        Fix::MediaIndex { user_id } => media_index(tx, *user_id),
        Fix::BlobRefs => blob_refs(tx),
        Fix::ClearStaged => {
            tx.open_table(STAGED)?.retain(|_, _| false)?;
            Ok("cleared".to_string())
        }
        Fix::Meta => meta(tx),
    }
}

/// User id → name, from `users`.
fn users(tx: &WriteTransaction) -> Result<BTreeMap<u64, String>, StoreError> {
    let mut out = BTreeMap::new();
    for entry in tx.open_table(USERS)?.iter()? {
        let (name, value) = entry?;
        let record: UserRecord = decode(value.value(), "users", name.value())?;
        out.insert(record.id, name.value().to_string());
    }
    Ok(out)
}

fn host_keys(tx: &WriteTransaction) -> Result<String, StoreError> {
    let users = users(tx)?;
    let mut keys = tx.open_table(HOST_KEYS)?;
    let mut kept = Vec::new();
    let mut stray = Vec::new();
    for entry in keys.iter()? {
        let (hash, value) = entry?;
        let hash = hash.value();
        let record: HostKeyRecord = decode(value.value(), "host_keys", hex::encode(hash))?;
        if users.contains_key(&record.user_id) {
            kept.push((record.user_id, hash));
        } else {
            stray.push(hash);
        }
    }
    for hash in &stray {
        keys.remove(hash)?;
    }
    let mut index = tx.open_table(USER_HOST_KEYS)?;
    index.retain(|_, _| false)?;
    for key in &kept {
        index.insert(key, ())?;
    }
    Ok(format!(
        "removed {} key(s) of removed users, indexed {} key(s)",
        stray.len(),
        kept.len()
    ))
}

fn set_generation(
    tx: &WriteTransaction,
    user_id: u64,
    generation: u64,
    state: GenerationState,
) -> Result<(), StoreError> {
    let mut table = tx.open_table(GENERATIONS)?;
    let found = table
        .get((user_id, generation))?
        .map(|v| v.value().to_vec());
    let mut record = match found {
        Some(bytes) => decode(&bytes, "generations", generation)?,
        None => GenerationRecord {
            state,
            created_ms: 0,
            indexed_from: i32::MIN,
            collection: None,
        },
    };
    record.state = state;
    if state == GenerationState::Live {
        record.collection = None;
    }
    table.insert((user_id, generation), encode(&record)?.as_slice())?;
    Ok(())
}

fn delete_generation(tx: &WriteTransaction, generation: u64) -> Result<String, StoreError> {
    let rows = (generation, i64::MIN)..=(generation, i64::MAX);
    let mut deleted = 0;
    for table in [NOTES, CARDS, REVLOG] {
        deleted += tx
            .open_table(table)?
            .extract_from_if(rows.clone(), |_, _| true)?
            .try_fold(0usize, |n, entry| entry.map(|_| n + 1))?;
    }
    for table in [GRAVES, CHANGES] {
        deleted += tx
            .open_table(table)?
            .extract_from_if(
                (generation, i32::MIN, 0u8, i64::MIN)..=(generation, i32::MAX, u8::MAX, i64::MAX),
                |_, _| true,
            )?
            .try_fold(0usize, |n, entry| entry.map(|_| n + 1))?;
    }
    deleted += tx
        .open_table(OBJECTS)?
        .extract_from_if((generation, 0u8, "")..(generation + 1, 0u8, ""), |_, _| {
            true
        })?
        .try_fold(0usize, |n, entry| entry.map(|_| n + 1))?;
    tx.open_table(GENERATIONS)?
        .retain(|key, _| key.1 != generation)?;
    Ok(format!("deleted generation {generation} ({deleted} rows)"))
}

fn reindex(tx: &WriteTransaction, generation: u64, from: i32) -> Result<String, StoreError> {
    let mut changes = tx.open_table(CHANGES)?;
    changes.retain_in(
        (generation, i32::MIN, 0u8, i64::MIN)..=(generation, i32::MAX, u8::MAX, i64::MAX),
        |_, _| false,
    )?;
    let mut indexed = 0;
    let mut index = |kind: RowKind, id: i64, usn: i32| -> Result<(), StoreError> {
        if usn >= from {
            changes.insert((generation, usn, kind as u8, id), ())?;
            indexed += 1;
        }
        Ok(())
    };
    row_usns(
        &tx.open_table(NOTES)?,
        &tx.open_table(CARDS)?,
        &tx.open_table(REVLOG)?,
        generation,
        &mut index,
    )?;
    Ok(format!("rebuilt with {indexed} entries"))
}

fn media_index(tx: &WriteTransaction, user_id: u64) -> Result<String, StoreError> {
    let mut by_usn = tx.open_table(MEDIA_USN)?;
    by_usn.retain_in((user_id, i32::MIN)..=(user_id, i32::MAX), |_, _| false)?;
    let (mut files, mut bytes, mut max_usn) = (0u64, 0u64, 0i32);
    for entry in tx
        .open_table(MEDIA)?
        .range((user_id, "")..(user_id + 1, ""))?
    {
        let (key, value) = entry?;
        let name = key.value().1;
        let record: MediaRecord = decode(value.value(), "media", name)?;
        by_usn.insert((user_id, record.usn), name)?;
        if record.blob.is_some() {
            files += 1;
            bytes += record.size;
        }
        max_usn = max_usn.max(record.usn);
    }
    tx.open_table(MEDIA_TOTALS)?
        .insert(user_id, (files, bytes))?;
    let mut collections = tx.open_table(COLLECTIONS)?;
    let found = collections.get(user_id)?.map(|v| v.value().to_vec());
    if let Some(found) = found {
        let mut record: CollectionRecord = decode(&found, "collections", user_id)?;
        if record.media_usn < max_usn {
            record.media_usn = max_usn;
            collections.insert(user_id, encode(&record)?.as_slice())?;
        }
    }
    Ok(format!(
        "rebuilt: {files} file(s), {bytes} bytes, media usn at least {max_usn}"
    ))
}

fn blob_refs(tx: &WriteTransaction) -> Result<String, StoreError> {
    let mut counts: HashMap<[u8; 32], u64> = HashMap::new();
    for entry in tx.open_table(MEDIA)?.iter()? {
        let (key, value) = entry?;
        let record: MediaRecord = decode(value.value(), "media", key.value().1)?;
        if let Some(blob) = record.blob {
            *counts.entry(blob).or_default() += 1;
        }
    }
    let mut refs = tx.open_table(BLOB_REFS)?;
    refs.retain(|_, _| false)?;
    for (blob, count) in &counts {
        refs.insert(blob, count)?;
    }
    let mut dropped = 0;
    tx.open_table(BLOBS)?.retain(|(blob, _), _| {
        let keep = counts.contains_key(&blob);
        dropped += usize::from(!keep);
        keep
    })?;
    Ok(format!(
        "{} blob(s) counted, {dropped} unused chunk(s) dropped",
        counts.len()
    ))
}

fn meta(tx: &WriteTransaction) -> Result<String, StoreError> {
    let next_user = users(tx)?.keys().next_back().map_or(1, |id| id + 1);
    let mut next_generation = 1;
    for entry in tx.open_table(GENERATIONS)?.iter()? {
        next_generation = next_generation.max(entry?.0.value().1 + 1);
    }
    let mut meta = tx.open_table(META)?;
    let mut raise = |key: &str, at_least: u64| -> Result<u64, StoreError> {
        let current = meta.get(key)?.map_or(1, |v| v.value());
        let value = current.max(at_least);
        meta.insert(key, value)?;
        Ok(value)
    };
    let user = raise(META_NEXT_USER_ID, next_user)?;
    let generation = raise(META_NEXT_GENERATION, next_generation)?;
    Ok(format!("next user id {user}, next generation {generation}"))
}
