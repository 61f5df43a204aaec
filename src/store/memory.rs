//! The embedded default store.

use super::audit::{AsyncKeyAudit, KeyAudit, KeyFilter};
use super::{AsyncKeyStore, KeyStore, RollPlan, Usage, WriteCondition};
use crate::error::{StoreError, StoreErrorKind};
use crate::feed::{Change, ChangeFeed, ChangePage};
use crate::lent::{CompactRecord, Held, StoredRecord};
use crate::record::{KeyRecord, KeyStatus, OwnerId};
use crate::token::KeyId;
use arc_swap::ArcSwap;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Shards of a new store: 2^12 (32 KiB of pointers). A write copies one
/// shard, so with a million keys a write copies about 250 entries.
const MIN_SHARD_BITS: u32 = 12;
/// [`MemoryKeyStore::with_capacity`] sizes shards for this many keys each.
const TARGET_AVERAGE: usize = 32;
/// Optimistic read attempts before a reader waits for the writer lock.
const READ_ATTEMPTS: usize = 64;

/// A record in a shard, under its id as two big-endian words.
type Entry = ([u64; 2], Arc<CompactRecord>);

fn key_of(id: &KeyId) -> [u64; 2] {
    [id.word_be(false), id.word_be(true)]
}

/// One shard: a small open-addressing hash table of its records (linear
/// probing, at most three quarters full), rebuilt whole by every write that
/// touches the shard. The slot is picked by the id's second word, which is
/// uniformly random and independent of the shard choice, so a lookup
/// usually reads one slot: one cache line.
#[derive(Default)]
struct Table(Box<[Option<Entry>]>);

impl Table {
    /// A table holding `entries` (ids unique).
    fn build(entries: Vec<Entry>) -> Table {
        if entries.is_empty() {
            return Table::default();
        }
        let slots = (entries.len() * 4).div_ceil(3).next_power_of_two();
        let mut table: Vec<Option<Entry>> = (0..slots).map(|_| None).collect();
        for entry in entries {
            let mut i = home(entry.0, slots);
            while let Some(Some(_)) = table.get(i) {
                i = (i + 1) & (slots - 1);
            }
            if let Some(slot) = table.get_mut(i) {
                *slot = Some(entry);
            }
        }
        Table(table.into_boxed_slice())
    }

    fn find(&self, key: [u64; 2]) -> Option<&Arc<CompactRecord>> {
        let slots = self.0.len();
        let mut i = home(key, slots);
        // At most three quarters full: a free slot ends every probe run.
        for _ in 0..slots {
            match self.0.get(i)? {
                None => return None,
                Some(e) if e.0 == key => return Some(&e.1),
                Some(_) => i = (i + 1) & (slots - 1),
            }
        }
        None
    }

    /// A copy with `record` under `key`, inserted or replacing.
    fn with(&self, key: [u64; 2], record: Arc<CompactRecord>) -> Table {
        let mut entries: Vec<Entry> = Vec::with_capacity(self.0.len() + 1);
        entries.extend(self.0.iter().flatten().filter(|e| e.0 != key).cloned());
        entries.push((key, record));
        Table::build(entries)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.iter().flatten().count()
    }
}

/// The home slot of `key` in a table of `slots` slots (a power of two).
fn home(key: [u64; 2], slots: usize) -> usize {
    (key[1] as usize) & slots.wrapping_sub(1)
}

/// The shard array: `2^bits` shards, a key's shard given by the top `bits`
/// bits of its first word (ids are uniformly random).
struct Shards {
    bits: u32,
    tables: Box<[ArcSwap<Table>]>,
}

impl Shards {
    fn new(bits: u32, empty: &Arc<Table>) -> Self {
        Self {
            bits,
            tables: (0..1usize << bits)
                .map(|_| ArcSwap::new(Arc::clone(empty)))
                .collect(),
        }
    }

    fn index(&self, key: [u64; 2]) -> usize {
        key[0].checked_shr(64 - self.bits).unwrap_or(0) as usize
    }

    fn shard(&self, key: [u64; 2]) -> Result<&ArcSwap<Table>, StoreError> {
        self.tables
            .get(self.index(key))
            .ok_or_else(|| StoreError::backend("MemoryKeyStore shard out of range"))
    }
}

/// The shard count for `keys` keys: an average of at most
/// [`TARGET_AVERAGE`] per shard, at least 2^[`MIN_SHARD_BITS`] and at most
/// 2^20 (8 MiB of pointers; beyond ~32 M keys shards grow instead).
fn bits_for(keys: usize) -> u32 {
    (keys / TARGET_AVERAGE)
        .next_power_of_two()
        .trailing_zeros()
        .clamp(MIN_SHARD_BITS, 20)
}

/// What the writer lock guards: the owner index and the change feed.
#[derive(Default)]
struct Writer {
    owners: HashMap<OwnerId, Vec<KeyId>>,
    log: ChangeLog,
}

/// The last changes, numbered in write order (writes append while they hold
/// the writer lock, after publishing).
#[derive(Debug)]
struct ChangeLog {
    head: u64,
    pruned_through: u64,
    retention: usize,
    changes: VecDeque<Change>,
}

impl Default for ChangeLog {
    fn default() -> Self {
        Self::new(MemoryKeyStore::DEFAULT_CHANGE_RETENTION)
    }
}

impl ChangeLog {
    fn new(retention: usize) -> Self {
        Self {
            head: 0,
            pruned_through: 0,
            retention,
            changes: VecDeque::new(),
        }
    }

    fn record(&mut self, key_id: KeyId) {
        self.head = self.head.saturating_add(1);
        self.changes.push_back(Change {
            seq: self.head,
            key_id,
        });
        while self.changes.len() > self.retention {
            if let Some(old) = self.changes.pop_front() {
                self.pruned_through = old.seq;
            }
        }
    }

    fn since(&self, after: u64, limit: usize) -> ChangePage {
        // Numbers are contiguous: the first held change is pruned_through + 1.
        let skip = usize::try_from(after.saturating_sub(self.pruned_through)).unwrap_or(usize::MAX);
        let changes = self
            .changes
            .iter()
            .skip(skip)
            .take(limit)
            .copied()
            .collect();
        ChangePage::new(changes, self.pruned_through)
    }
}

/// A thread-safe, linearizable in-memory store; the embedded default.
///
/// **Reads write no shared memory.** Each shard is an immutable small hash
/// table behind an atomically swapped pointer ([`arc_swap`]); a
/// verification loads the pointer, probes the table (usually one slot) and
/// clones the record's `Arc` (the record's own reference count is the only
/// memory it writes). Two cores verifying different keys never
/// contend: no lock word, no shared counter.
///
/// **Writes** (management operations, last-used touches) are serialised by
/// one writer lock, which also guards the owner index and makes
/// [`WriteCondition`] and [`apply_roll`](KeyStore::apply_roll) atomic. A
/// write copies one shard's table and publishes it; a roll whose two keys
/// live in different shards publishes both inside a sequence-counter
/// window that readers check, so no reader sees one half of it. Every
/// write is visible to every read that starts after it returned. The shard
/// count is fixed when the store is made: 4096 by default, and
/// [`with_capacity`](Self::with_capacity) picks one with about 32 keys per
/// shard (a store far beyond its capacity keeps working; its writes copy
/// larger tables).
///
/// **Memory.** Records are kept in a compact layout (the fields a
/// verification reads inline, the rarely set ones behind one pointer):
/// about 260 bytes per key beyond its strings at a million keys
/// (`examples/memory_footprint.rs`). [`get`](KeyStore::get) and
/// [`list_by_owner`](KeyStore::list_by_owner) build full [`KeyRecord`]s;
/// the verify path ([`get_for_verify`](KeyStore::get_for_verify)) lends the
/// compact form and allocates nothing.
///
/// Implements both [`KeyStore`] and [`AsyncKeyStore`], and
/// [`ChangeFeed`]: every write is numbered in a log of the last
/// [`DEFAULT_CHANGE_RETENTION`](Self::DEFAULT_CHANGE_RETENTION) changes
/// (see [`change_retention`](Self::change_retention)), so verification
/// caches in the same process can follow a shared store.
pub struct MemoryKeyStore {
    shards: Shards,
    /// Odd while a write that spans two shards is being published.
    seq: AtomicU64,
    writer: Mutex<Writer>,
    count: AtomicUsize,
}

impl core::fmt::Debug for MemoryKeyStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MemoryKeyStore")
            .field("keys", &self.len())
            .finish()
    }
}

impl Default for MemoryKeyStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryKeyStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An empty store sized for `keys` records (about 32 per shard, at
    /// least 4096 shards).
    #[must_use]
    pub fn with_capacity(keys: usize) -> Self {
        // Every shard starts on one shared empty table.
        let empty = Arc::new(Table::default());
        Self {
            shards: Shards::new(bits_for(keys), &empty),
            seq: AtomicU64::new(0),
            writer: Mutex::new(Writer::default()),
            count: AtomicUsize::new(0),
        }
    }

    /// How many changes the change feed keeps by default.
    pub const DEFAULT_CHANGE_RETENTION: usize = 65_536;

    /// Keeps the last `changes` changes in the change feed (at least 1).
    /// A follower that falls further behind drops its whole cache and
    /// starts again.
    #[must_use]
    pub fn change_retention(self, changes: usize) -> Self {
        self.writer().log.retention = changes.max(1);
        self
    }

    /// The number of records.
    #[must_use]
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Whether the store is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The record under `key` in the current tables.
    fn find(&self, key: [u64; 2]) -> Result<Option<Arc<CompactRecord>>, StoreError> {
        let table = self.shards.shard(key)?.load();
        Ok(table.find(key).cloned())
    }

    /// A linearizable read without a lock: retried while a two-shard write
    /// is being published, and after a few attempts done under the writer
    /// lock (which no publication holds back for long).
    fn lend(&self, id: &KeyId) -> Result<Option<Arc<CompactRecord>>, StoreError> {
        let key = key_of(id);
        if let Some(found) = self.read_optimistically(key)? {
            return Ok(found);
        }
        let _publishers_done = self.writer();
        self.find(key)
    }

    /// The lock-free part of [`lend`](Self::lend): `Some(found)` from a read
    /// that no two-shard publication overlapped, `None` if every attempt
    /// overlapped one (the caller then reads under the writer lock).
    fn read_optimistically(
        &self,
        key: [u64; 2],
    ) -> Result<Option<Option<Arc<CompactRecord>>>, StoreError> {
        for _ in 0..READ_ATTEMPTS {
            let before = self.seq.load(Ordering::Acquire);
            if before & 1 == 0 {
                let found = self.find(key)?;
                fence(Ordering::Acquire);
                if self.seq.load(Ordering::Relaxed) == before {
                    return Ok(Some(found));
                }
            }
            core::hint::spin_loop();
        }
        Ok(None)
    }

    /// Publishes `record` in its shard (insert or replace). Writer lock held.
    fn publish(&self, _w: &Writer, record: Arc<CompactRecord>) -> Result<(), StoreError> {
        let key = key_of(&record.id);
        let shard = self.shards.shard(key)?;
        let next = shard.load().with(key, record);
        shard.store(Arc::new(next));
        Ok(())
    }

    fn owner_records(&self, w: &Writer, owner: &OwnerId) -> Result<Vec<KeyRecord>, StoreError> {
        let mut out = Vec::new();
        for id in w.owners.get(owner).map(Vec::as_slice).unwrap_or(&[]) {
            if let Some(r) = self.find(key_of(id))? {
                out.push(r.to_record());
            }
        }
        Ok(out)
    }

    /// Checks a write condition against the owner's records (only read
    /// when there is a condition: an owner may have many keys).
    fn check_condition(
        &self,
        w: &Writer,
        record: &KeyRecord,
        condition: WriteCondition,
    ) -> Result<(), StoreError> {
        if condition == WriteCondition::Always {
            return Ok(());
        }
        let mine = self.owner_records(w, &record.owner)?;
        condition.check(record, mine.iter())
    }

    /// Validates a compare-and-swap against the stored record and returns
    /// the compact record to store, keeping the later `last_used_at` and
    /// the stored `use_count`.
    fn checked_replacement(
        &self,
        new: &KeyRecord,
        expected: u64,
    ) -> Result<Arc<CompactRecord>, StoreError> {
        let old = self
            .find(key_of(&new.id))?
            .ok_or(StoreError::new(StoreErrorKind::NotFound))?;
        if old.version != expected || old.status == KeyStatus::Revoked || old.owner != new.owner {
            return Err(StoreError::new(StoreErrorKind::Conflict));
        }
        let mut next = CompactRecord::of(new);
        next.last_used_at = next.last_used_at.max(old.last_used_at);
        next.use_count = old.use_count;
        Ok(Arc::new(next))
    }

    fn insert_now(&self, record: &KeyRecord, condition: WriteCondition) -> Result<(), StoreError> {
        let mut w = self.writer();
        if self.find(key_of(&record.id))?.is_some() {
            return Err(StoreError::new(StoreErrorKind::Duplicate));
        }
        self.check_condition(&w, record, condition)?;
        let keys = self.len() + 1;
        self.publish(&w, Arc::new(CompactRecord::of(record)))?;
        w.owners
            .entry(record.owner.clone())
            .or_default()
            .push(record.id);
        w.log.record(record.id);
        self.count.store(keys, Ordering::Release);
        Ok(())
    }

    fn update_now(
        &self,
        record: &KeyRecord,
        expected: u64,
        condition: WriteCondition,
    ) -> Result<(), StoreError> {
        let mut w = self.writer();
        let new = self.checked_replacement(record, expected)?;
        self.check_condition(&w, record, condition)?;
        self.publish(&w, new)?;
        w.log.record(record.id);
        Ok(())
    }

    fn roll_now(&self, plan: &RollPlan) -> Result<(), StoreError> {
        let mut w = self.writer();
        let successor_key = key_of(&plan.successor.id);
        if self.find(successor_key)?.is_some() {
            return Err(StoreError::new(StoreErrorKind::Duplicate));
        }
        let predecessor = self.checked_replacement(&plan.predecessor, plan.expected_version)?;
        let keys = self.len() + 1;
        let successor = Arc::new(CompactRecord::of(&plan.successor));
        let predecessor_key = key_of(&predecessor.id);
        let (a, b) = (
            self.shards.shard(predecessor_key)?,
            self.shards.shard(successor_key)?,
        );
        if core::ptr::eq(a, b) {
            // One shard: one publication.
            let next = a
                .load()
                .with(successor_key, successor)
                .with(predecessor_key, predecessor);
            a.store(Arc::new(next));
        } else {
            // Two shards: readers retry while the sequence number is odd or
            // has moved, so they see both tables or neither.
            self.seq.fetch_add(1, Ordering::SeqCst);
            b.store(Arc::new(b.load().with(successor_key, successor)));
            #[cfg(test)]
            tests::between_the_two_shards(self);
            a.store(Arc::new(a.load().with(predecessor_key, predecessor)));
            self.seq.fetch_add(1, Ordering::SeqCst);
        }
        w.owners
            .entry(plan.successor.owner.clone())
            .or_default()
            .push(plan.successor.id);
        w.log.record(plan.predecessor.id);
        w.log.record(plan.successor.id);
        self.count.store(keys, Ordering::Release);
        Ok(())
    }

    fn touch_now(&self, id: &KeyId, usage: Usage) -> Result<(), StoreError> {
        let w = self.writer();
        self.touch_locked(&w, id, usage)
    }

    /// Every touch of a batch under one writer lock; unknown ids skipped.
    fn touch_many_now(&self, touches: &[(KeyId, Usage)]) -> Result<(), StoreError> {
        let w = self.writer();
        for (id, usage) in touches {
            match self.touch_locked(&w, id, *usage) {
                Err(e) if e.kind() != StoreErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    fn touch_locked(&self, w: &Writer, id: &KeyId, usage: Usage) -> Result<(), StoreError> {
        let current = self
            .find(key_of(id))?
            .ok_or(StoreError::new(StoreErrorKind::NotFound))?;
        let later = current.last_used_at.is_none_or(|t| t < usage.at);
        if later || usage.uses > 0 {
            let mut next = (*current).clone();
            if later {
                next.last_used_at = Some(usage.at);
            }
            next.use_count = next.use_count.saturating_add(usage.uses);
            self.publish(w, Arc::new(next))?;
        }
        Ok(())
    }

    fn get_now(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        Ok(self.lend(id)?.map(|c| Arc::new(c.to_record())))
    }

    fn get_for_verify_now(&self, id: &KeyId) -> Result<Option<StoredRecord>, StoreError> {
        Ok(self.lend(id)?.map(|c| StoredRecord(Held::Compact(c))))
    }

    fn list_now(&self, owner: &OwnerId) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        let w = self.writer();
        Ok(self
            .owner_records(&w, owner)?
            .into_iter()
            .map(Arc::new)
            .collect())
    }

    /// One shard at a time (no global lock, so verifications go on), each
    /// shard's matches merged into the running page.
    fn scan_now(
        &self,
        filter: KeyFilter,
        after: Option<&KeyId>,
        limit: usize,
    ) -> Vec<Arc<KeyRecord>> {
        if limit == 0 {
            return Vec::new();
        }
        // The `limit` smallest matching ids, kept sorted and cut back
        // whenever twice as many have gathered; only the page is built into
        // full records.
        let mut best: Vec<Arc<CompactRecord>> = Vec::new();
        for shard in self.shards.tables.iter() {
            let table = shard.load();
            for (_, c) in table.0.iter().flatten() {
                if after.is_some_and(|a| c.id <= *a)
                    || !filter.matches_parts(c.status, c.created_at, c.expires_at, c.last_used_at)
                {
                    continue;
                }
                best.push(Arc::clone(c));
                if best.len() >= limit.saturating_mul(2).max(64) {
                    best.sort_unstable_by_key(|c| c.id);
                    best.truncate(limit);
                }
            }
        }
        best.sort_unstable_by_key(|c| c.id);
        best.truncate(limit);
        best.into_iter().map(|c| Arc::new(c.to_record())).collect()
    }
}

impl KeyStore for MemoryKeyStore {
    fn insert(&self, record: &KeyRecord, condition: WriteCondition) -> Result<(), StoreError> {
        self.insert_now(record, condition)
    }
    fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        self.get_now(id)
    }
    fn list_by_owner(&self, owner: &OwnerId) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        self.list_now(owner)
    }
    fn update(
        &self,
        record: &KeyRecord,
        expected_version: u64,
        condition: WriteCondition,
    ) -> Result<(), StoreError> {
        self.update_now(record, expected_version, condition)
    }
    fn apply_roll(&self, plan: &RollPlan) -> Result<(), StoreError> {
        self.roll_now(plan)
    }
    fn touch(&self, id: &KeyId, usage: Usage) -> Result<(), StoreError> {
        self.touch_now(id, usage)
    }
    fn touch_many(&self, touches: &[(KeyId, Usage)]) -> Result<(), StoreError> {
        self.touch_many_now(touches)
    }
    fn get_for_verify(&self, id: &KeyId) -> Result<Option<StoredRecord>, StoreError> {
        self.get_for_verify_now(id)
    }
}

/// A full scan: O(n log limit) per page. Fine for audits of an in-memory
/// store; not meant for the request path.
impl KeyAudit for MemoryKeyStore {
    fn scan(
        &self,
        filter: KeyFilter,
        after: Option<&KeyId>,
        limit: usize,
    ) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        Ok(self.scan_now(filter, after, limit))
    }
}

impl AsyncKeyAudit for MemoryKeyStore {
    fn scan(
        &self,
        filter: KeyFilter,
        after: Option<&KeyId>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Arc<KeyRecord>>, StoreError>> + Send {
        core::future::ready(Ok(self.scan_now(filter, after, limit)))
    }
}

impl AsyncKeyStore for MemoryKeyStore {
    fn insert(
        &self,
        record: &KeyRecord,
        condition: WriteCondition,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        core::future::ready(self.insert_now(record, condition))
    }
    fn get(
        &self,
        id: &KeyId,
    ) -> impl Future<Output = Result<Option<Arc<KeyRecord>>, StoreError>> + Send {
        core::future::ready(self.get_now(id))
    }
    fn list_by_owner(
        &self,
        owner: &OwnerId,
    ) -> impl Future<Output = Result<Vec<Arc<KeyRecord>>, StoreError>> + Send {
        core::future::ready(self.list_now(owner))
    }
    fn update(
        &self,
        record: &KeyRecord,
        expected_version: u64,
        condition: WriteCondition,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        core::future::ready(self.update_now(record, expected_version, condition))
    }
    fn apply_roll(&self, plan: &RollPlan) -> impl Future<Output = Result<(), StoreError>> + Send {
        core::future::ready(self.roll_now(plan))
    }
    fn touch(
        &self,
        id: &KeyId,
        usage: Usage,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        core::future::ready(self.touch_now(id, usage))
    }
    fn touch_many(
        &self,
        touches: &[(KeyId, Usage)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        core::future::ready(self.touch_many_now(touches))
    }
    fn get_for_verify(
        &self,
        id: &KeyId,
    ) -> impl Future<Output = Result<Option<StoredRecord>, StoreError>> + Send {
        core::future::ready(self.get_for_verify_now(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(first: u8, n: u64) -> KeyId {
        let mut b = [0u8; 16];
        b[0] = first;
        b[8..].copy_from_slice(&n.to_be_bytes());
        KeyId::from_bytes(b)
    }

    /// What a test runs in the middle of a two-shard roll.
    type MidRoll = Box<dyn FnMut(&MemoryKeyStore)>;

    std::thread_local! {
        /// Called by `roll_now` between the two shard stores of a two-shard
        /// roll, on the writing thread (which holds the writer lock).
        static MID_ROLL: core::cell::RefCell<Option<MidRoll>> =
            core::cell::RefCell::new(None);
    }

    pub(super) fn between_the_two_shards(store: &MemoryKeyStore) {
        MID_ROLL.with(|hook| {
            if let Some(f) = hook.borrow_mut().as_mut() {
                f(store);
            }
        });
    }

    /// A roll whose predecessor (first byte 0x00) and successor (0x80) live
    /// in different shards, with `during` run between their publications.
    fn roll_across_shards(during: impl FnMut(&MemoryKeyStore) + 'static) -> (MemoryKeyStore, u64) {
        let store = MemoryKeyStore::new();
        let (old, new) = (id(0x00, 1), id(0x80, 2));
        let mut predecessor = crate::lent::sample_record(old);
        assert!(KeyStore::insert(&store, &predecessor, WriteCondition::Always).is_ok());
        let shards = &store.shards;
        assert_ne!(shards.index(key_of(&old)), shards.index(key_of(&new)));
        let expected_version = predecessor.version;
        predecessor.successor = Some(new);
        predecessor.version += 1;
        let mut successor = crate::lent::sample_record(new);
        successor.predecessor = Some(old);
        MID_ROLL.with(|hook| *hook.borrow_mut() = Some(Box::new(during)));
        let rolled = KeyStore::apply_roll(
            &store,
            &RollPlan {
                predecessor,
                expected_version,
                successor,
            },
        );
        MID_ROLL.with(|hook| *hook.borrow_mut() = None);
        assert!(rolled.is_ok());
        let seq = store.seq.load(Ordering::SeqCst);
        (store, seq)
    }

    #[test]
    fn no_lock_free_read_overlaps_a_two_shard_publication() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let (store, seq) = roll_across_shards(move |store| {
            // The successor is published, the predecessor not yet: a read
            // now must not answer, or a reader could see the new key
            // beside an old key that does not know it was rolled.
            for key in [key_of(&id(0x80, 2)), key_of(&id(0x00, 1))] {
                let read = store.read_optimistically(key).ok().map(|r| r.is_some());
                log.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(read);
            }
        });
        let seen = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
        assert_eq!(seen, [Some(false), Some(false)]);
        // The sequence number is even again, and has moved once per store.
        assert_eq!(seq, 2);
        // Afterwards reads answer without the lock, and see both halves.
        let new = store.read_optimistically(key_of(&id(0x80, 2))).ok();
        assert_eq!(
            new.map(|r| r.map(|f| f.map(|c| c.id))),
            Some(Some(Some(id(0x80, 2))))
        );
        let old = store.read_optimistically(key_of(&id(0x00, 1))).ok();
        assert_eq!(
            old.map(|r| r.map(|f| f.and_then(|c| crate::lent::RecordView::successor(&*c)))),
            Some(Some(Some(id(0x80, 2))))
        );
        // And through the store's own read path.
        let lent = store
            .lend(&id(0x00, 1))
            .ok()
            .map(|f| f.and_then(|c| crate::lent::RecordView::successor(&*c)));
        assert_eq!(lent, Some(Some(id(0x80, 2))));
    }

    #[test]
    fn shard_bits_follow_the_size() {
        assert_eq!(bits_for(0), MIN_SHARD_BITS);
        assert_eq!(bits_for(1_000_000), 15);
        assert_eq!(bits_for(10_000), MIN_SHARD_BITS);
        assert_eq!(bits_for(usize::MAX), 20);
        let s = Shards::new(3, &Arc::new(Table::default()));
        assert_eq!(s.index([0, 0]), 0);
        assert_eq!(s.index([u64::MAX, 0]), 7);
        assert_eq!(s.index([1 << 61, 0]), 1);
    }

    #[test]
    fn tables_find_insert_and_replace() {
        let rec = |n: u64| Arc::new(CompactRecord::of(&crate::lent::sample_record(id(0, n))));
        let mut t = Table::default();
        assert!(t.find(key_of(&id(0, 1))).is_none());
        // Colliding home slots (same low bits of the second word) probe on.
        for n in [5u64, 1, 9, 3, 7, 5 + 64, 5 + 128] {
            t = t.with(key_of(&id(0, n)), rec(n));
        }
        assert_eq!(t.len(), 7);
        assert!(t.0.len() >= 7 * 4 / 3);
        let t = t.with(key_of(&id(0, 5)), rec(5));
        assert_eq!(t.len(), 7);
        for n in [5u64, 1, 9, 3, 7, 5 + 64, 5 + 128] {
            assert_eq!(t.find(key_of(&id(0, n))).map(|r| r.id), Some(id(0, n)));
        }
        assert!(t.find(key_of(&id(0, 8))).is_none());
        assert!(t.find(key_of(&id(1, 5))).is_none());
    }
}

impl ChangeFeed for MemoryKeyStore {
    fn head(&self) -> impl Future<Output = Result<u64, StoreError>> + Send {
        core::future::ready(Ok(self.writer().log.head))
    }
    fn changes_since(
        &self,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<ChangePage, StoreError>> + Send {
        core::future::ready(Ok(self.writer().log.since(after, limit)))
    }
}

#[cfg(test)]
mod change_log_tests {
    use super::*;

    fn id(n: u8) -> KeyId {
        KeyId::from_bytes([n; crate::token::KEY_ID_BYTES])
    }

    #[test]
    fn change_log_pages_and_prunes() {
        let mut log = ChangeLog::new(3);
        for n in 1..=5 {
            log.record(id(n));
        }
        assert_eq!(log.head, 5);
        assert_eq!(log.pruned_through, 2);
        let page = log.since(0, 10);
        assert_eq!(page.pruned_through, 2);
        assert_eq!(
            page.changes.iter().map(|c| c.seq).collect::<Vec<_>>(),
            [3, 4, 5]
        );
        let page = log.since(3, 1);
        assert_eq!(
            page.changes,
            [Change {
                seq: 4,
                key_id: id(4)
            }]
        );
        assert!(log.since(5, 10).changes.is_empty());
    }
}
