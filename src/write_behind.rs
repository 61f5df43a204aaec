//! [`WriteBehindStore`]: `last_used_at` written behind the request, in
//! batches.
//!
//! `last_used_at` and `use_count` are for operators ("which keys are
//! stale?", "which are used most?"), not security decisions, so a
//! verification should not wait for them. The wrapper records each touch
//! in a bounded in-process buffer (key id → latest instant and uses) and
//! returns at once; a flusher the host spawns writes
//! the buffer in batches with [`touch_many`](AsyncKeyStore::touch_many)
//! (one statement per batch on the SQL stores), which never moves a value
//! backwards. Everything else goes straight to the wrapped store.
//!
//! * **Overflow**: when the buffer holds `capacity` keys, a touch of a new
//!   key drops the oldest pending one, with its uses (counted in
//!   [`WriteBehindStats::dropped`]). Keys already pending only move their
//!   instant forward and add their uses, so the buffer holds at most one
//!   entry per key.
//! * **Failures**: a failed batch goes back into the buffer (as far as
//!   there is room) and is retried at the next flush; each failure is
//!   reported to the [`on_flush_error`](WriteBehindStore::on_flush_error)
//!   hook and counted ([`WriteBehindStats::failed_flushes`]). Never to the
//!   request: the verification has already returned.
//! * **Shutdown**: [`close`](WriteBehindStore::close) flushes what is
//!   pending within a deadline and reports what it could not write. Call
//!   it after the server stopped taking requests. Dropping the store
//!   without closing it loses what is pending (a destructor cannot wait
//!   for the database); the hook is told how many touches were abandoned.
//! * **Crashes**: a process that dies loses the uses in its buffer (at
//!   most one flush interval's worth, or `capacity` keys' worth): counts
//!   can be low by that much, never high, except that a batch whose commit
//!   was lost with the connection and is written again counts twice.
//!
//! Without the wrapper the manager writes `last_used_at` inline, as before
//! (at most once per [`Policy::touch_interval`](crate::Policy) per key).
//!
//! ```
//! use api_keys::{KeyManager, MemoryKeyStore, WriteBehindConfig, WriteBehindStore};
//! use std::time::Duration;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = WriteBehindStore::new(MemoryKeyStore::new(), WriteBehindConfig::default())
//!     .on_flush_error(|failure: &api_keys::FlushFailure<'_>| {
//!         eprintln!("last-used writes failed for {} keys: {}", failure.keys, failure.error);
//!     });
//! // The flusher: a future the host spawns on its runtime, with its timer.
//! tokio::spawn(store.flusher().run(tokio::time::sleep));
//! let keys = KeyManager::builder(store).build()?;
//! // … serve requests with keys.verify_async(…) …
//!
//! // At shutdown, after the server stopped taking requests:
//! let report = keys.store().close(Duration::from_secs(5), tokio::time::sleep).await;
//! assert_eq!(report.abandoned, 0);
//! # Ok(()) }
//! ```

use crate::error::StoreError;
use crate::lent::StoredRecord;
use crate::record::{KeyRecord, OwnerId};
use crate::store::{
    AsyncKeyAudit, AsyncKeyStore, KeyFilter, RollPlan, Usage, UseRank, WriteCondition,
};
use crate::token::KeyId;
use crate::wait::first;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Settings of a [`WriteBehindStore`], with documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriteBehindConfig {
    /// The most keys the buffer holds; a touch of a new key beyond it drops
    /// the oldest pending one. Default: 100 000 (a few MiB).
    pub capacity: usize,
    /// Keys per [`touch_many`](AsyncKeyStore::touch_many) call. Default:
    /// 1 000.
    pub batch_size: usize,
    /// How often the flusher writes the buffer. Default: 1 second.
    pub flush_interval: Duration,
}

impl Default for WriteBehindConfig {
    fn default() -> Self {
        Self {
            capacity: 100_000,
            batch_size: 1_000,
            flush_interval: Duration::from_secs(1),
        }
    }
}

impl WriteBehindConfig {
    /// Sets [`capacity`](Self::capacity) (at least 1).
    #[must_use]
    pub fn capacity(mut self, keys: usize) -> Self {
        self.capacity = keys.max(1);
        self
    }

    /// Sets [`batch_size`](Self::batch_size) (at least 1).
    #[must_use]
    pub fn batch_size(mut self, keys: usize) -> Self {
        self.batch_size = keys.max(1);
        self
    }

    /// Sets [`flush_interval`](Self::flush_interval).
    #[must_use]
    pub fn flush_interval(mut self, every: Duration) -> Self {
        self.flush_interval = every;
        self
    }
}

/// A failed flush, as reported to the hook.
#[derive(Debug)]
#[non_exhaustive]
pub struct FlushFailure<'a> {
    /// How many keys' touches the failed batch held (put back in the
    /// buffer as far as there was room), or were abandoned at drop.
    pub keys: usize,
    /// Why.
    pub error: &'a StoreError,
}

/// Counters of a [`WriteBehindStore`] (for metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriteBehindStats {
    /// Keys waiting to be written now.
    pub pending: usize,
    /// Keys in a batch being written now.
    pub in_flight: usize,
    /// Touches written (one per key per batch).
    pub written: u64,
    /// Batches written (`touch_many` calls that succeeded).
    pub batches: u64,
    /// Pending touches dropped because the buffer was full.
    pub dropped: u64,
    /// Flushes that failed.
    pub failed_flushes: u64,
}

/// What [`WriteBehindStore::close`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Keys whose touches were written during the close.
    pub written: usize,
    /// Keys whose touches were not written when the deadline passed.
    pub abandoned: usize,
}

type Hook = Arc<dyn Fn(&FlushFailure<'_>) + Send + Sync>;

/// Pending touches: the latest instant and the uses per key, and the keys
/// in the order they entered (the front is the oldest).
#[derive(Default)]
struct Pending {
    latest: HashMap<KeyId, Usage>,
    order: VecDeque<KeyId>,
}

struct Shared<S> {
    store: S,
    config: WriteBehindConfig,
    pending: Mutex<Pending>,
    in_flight: AtomicUsize,
    written: AtomicU64,
    batches: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    closed: AtomicBool,
    hook: Option<Hook>,
}

impl<S> Shared<S> {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, id: KeyId, usage: Usage) {
        let mut p = self.lock();
        if let Some(u) = p.latest.get_mut(&id) {
            *u = u.merged(usage);
            return;
        }
        while p.latest.len() >= self.config.capacity {
            let Some(old) = p.order.pop_front() else {
                break;
            };
            p.latest.remove(&old);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        p.latest.insert(id, usage);
        p.order.push_back(id);
    }

    /// Takes up to a batch of the oldest pending touches, counted in flight.
    fn take_batch(&self) -> Vec<(KeyId, Usage)> {
        let mut p = self.lock();
        let n = p.order.len().min(self.config.batch_size);
        let mut batch = Vec::with_capacity(n);
        for _ in 0..n {
            let Some(id) = p.order.pop_front() else {
                break;
            };
            if let Some(usage) = p.latest.remove(&id) {
                batch.push((id, usage));
            }
        }
        self.in_flight.fetch_add(batch.len(), Ordering::SeqCst);
        // Sorted by id: two servers flushing overlapping batches lock rows
        // in the same order.
        batch.sort_unstable_by_key(|(id, _)| *id);
        batch
    }

    /// Puts a failed batch back as the oldest entries, as far as there is
    /// room; a key touched again meanwhile keeps the later instant and
    /// the sum of the uses.
    fn requeue(&self, batch: &[(KeyId, Usage)]) {
        let mut p = self.lock();
        for &(id, usage) in batch.iter().rev() {
            if let Some(u) = p.latest.get_mut(&id) {
                *u = u.merged(usage);
            } else if p.latest.len() < self.config.capacity {
                p.latest.insert(id, usage);
                p.order.push_front(id);
            } else {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn report(&self, keys: usize, error: &StoreError) {
        if let Some(hook) = &self.hook {
            hook(&FlushFailure { keys, error });
        }
    }
}

impl<S> Drop for Shared<S> {
    fn drop(&mut self) {
        let left = self.lock().latest.len();
        if left > 0 {
            self.report(
                left,
                &StoreError::backend("write-behind store dropped with touches pending"),
            );
        }
    }
}

impl<S: AsyncKeyStore> Shared<S> {
    /// Writes what is pending now, batch by batch; stops at the first
    /// failure. Returns how many keys were written.
    async fn flush(&self) -> Result<usize, StoreError> {
        let mut rounds = self.lock().order.len().div_ceil(self.config.batch_size);
        let mut written = 0;
        while rounds > 0 {
            rounds -= 1;
            let batch = self.take_batch();
            if batch.is_empty() {
                break;
            }
            let result = self.store.touch_many(&batch).await;
            self.in_flight.fetch_sub(batch.len(), Ordering::SeqCst);
            match result {
                Ok(()) => {
                    written += batch.len();
                    self.written
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    self.batches.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    self.requeue(&batch);
                    self.failed.fetch_add(1, Ordering::Relaxed);
                    self.report(batch.len(), &e);
                    return Err(e);
                }
            }
        }
        Ok(written)
    }
}

/// An [`AsyncKeyStore`] wrapper that writes `last_used_at` behind the
/// request: see the [module docs](crate::write_behind). Cloning it clones
/// a handle to the same buffer and store.
pub struct WriteBehindStore<S> {
    shared: Arc<Shared<S>>,
}

impl<S> Clone for WriteBehindStore<S> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S> core::fmt::Debug for WriteBehindStore<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WriteBehindStore")
            .field("config", &self.shared.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl<S> WriteBehindStore<S> {
    /// Wraps `store`.
    #[must_use]
    pub fn new(store: S, config: WriteBehindConfig) -> Self {
        let config = WriteBehindConfig {
            capacity: config.capacity.max(1),
            batch_size: config.batch_size.max(1),
            ..config
        };
        Self {
            shared: Arc::new(Shared {
                store,
                config,
                pending: Mutex::new(Pending::default()),
                in_flight: AtomicUsize::new(0),
                written: AtomicU64::new(0),
                batches: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                closed: AtomicBool::new(false),
                hook: None,
            }),
        }
    }

    /// Calls `hook` for every failed flush (and once at drop if touches
    /// were abandoned). Set it before cloning the store or starting the
    /// flusher: it has no effect once there is another handle.
    #[must_use]
    pub fn on_flush_error(
        mut self,
        hook: impl Fn(&FlushFailure<'_>) + Send + Sync + 'static,
    ) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.hook = Some(Arc::new(hook));
        }
        self
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.shared.store
    }

    /// The counters.
    pub fn stats(&self) -> WriteBehindStats {
        let pending = self.shared.lock().latest.len();
        WriteBehindStats {
            pending,
            in_flight: self.shared.in_flight.load(Ordering::SeqCst),
            written: self.shared.written.load(Ordering::Relaxed),
            batches: self.shared.batches.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            failed_flushes: self.shared.failed.load(Ordering::Relaxed),
        }
    }

    /// The flusher: spawn [`Flusher::run`] on the host's runtime.
    #[must_use]
    pub fn flusher(&self) -> Flusher<S> {
        Flusher {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: AsyncKeyStore> WriteBehindStore<S> {
    /// Writes every touch pending now (in batches), and returns how many
    /// keys were written.
    ///
    /// # Errors
    ///
    /// The store's error for the first batch that failed (it is back in
    /// the buffer, and was reported to the hook).
    pub async fn flush(&self) -> Result<usize, StoreError> {
        self.shared.flush().await
    }

    /// Shutdown: stops the flusher's loop and writes what is pending,
    /// retrying failed batches, until nothing is pending or in flight, or
    /// `deadline` has passed (measured with `sleep`, the host's timer, e.g.
    /// `tokio::time::sleep`).
    pub async fn close<Sl, Fut>(&self, deadline: Duration, mut sleep: Sl) -> ShutdownReport
    where
        Sl: FnMut(Duration) -> Fut,
        Fut: Future,
    {
        self.shared.closed.store(true, Ordering::SeqCst);
        let timer = sleep(deadline);
        let mut written = 0usize;
        let shared = &self.shared;
        let drain = async {
            loop {
                let round = shared.flush().await;
                if let Ok(n) = round {
                    written = written.saturating_add(n);
                }
                let idle =
                    shared.lock().latest.is_empty() && shared.in_flight.load(Ordering::SeqCst) == 0;
                if idle {
                    return;
                }
                // Another flush is in flight, or this one failed: wait a
                // little before trying again.
                sleep(Duration::from_millis(if round.is_ok() { 1 } else { 50 })).await;
            }
        };
        let _ = first(drain, timer).await;
        let abandoned =
            self.shared.lock().latest.len() + self.shared.in_flight.load(Ordering::SeqCst);
        ShutdownReport { written, abandoned }
    }
}

/// The background half of a [`WriteBehindStore`]: spawn
/// [`run`](Self::run) on the host's runtime.
pub struct Flusher<S> {
    shared: Arc<Shared<S>>,
}

impl<S> core::fmt::Debug for Flusher<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Flusher").finish_non_exhaustive()
    }
}

impl<S: AsyncKeyStore> Flusher<S> {
    /// Every `flush_interval` (slept with `sleep`, the host's timer, e.g.
    /// `tokio::time::sleep`), writes what is pending. Failures are reported
    /// to the hook and retried at the next round. Returns once the store
    /// was [closed](WriteBehindStore::close) or every other handle to it
    /// was dropped (after a last flush).
    pub async fn run<Sl, Fut>(self, mut sleep: Sl)
    where
        Sl: FnMut(Duration) -> Fut,
        Fut: Future,
    {
        loop {
            sleep(self.shared.config.flush_interval).await;
            if self.shared.closed.load(Ordering::SeqCst) {
                return;
            }
            let _reported = self.shared.flush().await;
            if Arc::strong_count(&self.shared) == 1 {
                return;
            }
        }
    }
}

impl<S: AsyncKeyStore> AsyncKeyStore for WriteBehindStore<S> {
    fn insert(
        &self,
        record: &KeyRecord,
        condition: WriteCondition,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.shared.store.insert(record, condition)
    }
    /// The store's record, with the touch still pending applied.
    async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let record = self.shared.store.get(id).await?;
        Ok(record.map(|r| {
            let p = self.shared.lock();
            overlaid(&p, r)
        }))
    }
    fn get_for_verify(
        &self,
        id: &KeyId,
    ) -> impl Future<Output = Result<Option<StoredRecord>, StoreError>> + Send {
        self.shared.store.get_for_verify(id)
    }
    /// The store's records, with the touches still pending applied.
    async fn list_by_owner(&self, owner: &OwnerId) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        let records = self.shared.store.list_by_owner(owner).await?;
        Ok(self.shared.overlay(records))
    }
    fn update(
        &self,
        record: &KeyRecord,
        expected_version: u64,
        condition: WriteCondition,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.shared
            .store
            .update(record, expected_version, condition)
    }
    fn apply_roll(&self, plan: &RollPlan) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.shared.store.apply_roll(plan)
    }
    /// Records the touch in the buffer and returns at once (an unknown id
    /// is skipped when the batch is written).
    fn touch(
        &self,
        id: &KeyId,
        usage: Usage,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.shared.record(*id, usage);
        core::future::ready(Ok(()))
    }
    /// Records every touch in the buffer.
    fn touch_many(
        &self,
        touches: &[(KeyId, Usage)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        for &(id, usage) in touches {
            self.shared.record(id, usage);
        }
        core::future::ready(Ok(()))
    }
}

impl<S> Shared<S> {
    /// The records with any pending touch applied (`last_used_at` moved
    /// forward, uses added).
    fn overlay(&self, records: Vec<Arc<KeyRecord>>) -> Vec<Arc<KeyRecord>> {
        let p = self.lock();
        if p.latest.is_empty() {
            return records;
        }
        records.into_iter().map(|r| overlaid(&p, r)).collect()
    }
}

/// `record` with its pending touch, if any, applied.
fn overlaid(p: &Pending, record: Arc<KeyRecord>) -> Arc<KeyRecord> {
    match p.latest.get(&record.id) {
        Some(usage) => usage.applied(&record),
        None => record,
    }
}

/// Audit scans see the touches still pending in the buffer: a key used a
/// moment ago is not reported by `unused_since` because its `last_used_at`
/// has not been written yet. (A batch being written is briefly visible to
/// neither the buffer nor the store.)
impl<S: AsyncKeyAudit + AsyncKeyStore> AsyncKeyAudit for WriteBehindStore<S> {
    async fn scan(
        &self,
        filter: KeyFilter,
        after: Option<&KeyId>,
        limit: usize,
    ) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        let mut out = Vec::new();
        let mut cursor = after.copied();
        loop {
            let page = self
                .shared
                .store
                .scan(filter, cursor.as_ref(), limit)
                .await?;
            let more = page.len() >= limit && limit > 0;
            cursor = page.last().map(|r| r.id);
            // A pending touch only moves `last_used_at` later, so it can
            // only take a record out of the filter: re-check, and read on
            // until the page is full.
            for record in self.shared.overlay(page) {
                if out.len() < limit && filter.matches(&record) {
                    out.push(record);
                }
            }
            if out.len() >= limit || !more {
                return Ok(out);
            }
        }
    }

    /// Writes what is pending first ([`flush`](WriteBehindStore::flush)),
    /// so the store ranks exact counts.
    async fn ranked_by_use(
        &self,
        rank: UseRank,
        owner: Option<&OwnerId>,
        limit: usize,
    ) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        self.shared.flush().await?;
        self.shared.store.ranked_by_use(rank, owner, limit).await
    }
}
