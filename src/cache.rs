//! A verification cache with a bounded-staleness revocation feed (feature
//! `cache`).
//!
//! [`CachedKeyStore`] wraps any [`AsyncKeyStore`] and keeps the records
//! that verifications read, by key id, in a bounded concurrent cache
//! ([`quick_cache`](https://docs.rs/quick_cache)); unknown ids are kept
//! negatively, for a short time, in a separate bounded space, so a flood of
//! random well-formed ids cannot evict real keys. A [`FeedFollower`] the
//! host spawns reads the store's [`ChangeFeed`] and evicts every key that
//! changed on any server.
//!
//! # The staleness bound
//!
//! The cache serves an entry only while the feed is *confirmed*: a read of
//! the feed that started less than [`CacheConfig::max_staleness`] ago
//! (default 1 second, measured on a [`MonotonicClock`]) returned every
//! change up to its end, and the follower evicted them. Every change
//! committed before that read started was therefore evicted, so a revoke,
//! deactivation, roll or update on any server is honoured here at most
//! `max_staleness` after it committed. When the feed cannot be confirmed —
//! the database or the feed is down, the follower is not running or is
//! stuck, notifications are lost and a poll fails, a gap in the change
//! numbers is open — the cache stops serving and every verification reads
//! through to the store, whose errors fail closed as always. The follower
//! polls every [`CacheConfig::poll_interval`] (default a third of the
//! bound) even when notifications arrive, because a notification that did
//! not arrive proves nothing.
//!
//! Management writes made through this wrapper evict their keys as soon as
//! the store returns (even when it returns an error: the write may have
//! committed). A read-through that started before an eviction never puts
//! the record it read back after the eviction (an eviction epoch is read
//! before the store is, and the entry is dropped if it moved), and an entry
//! is never replaced by a lower record version.
//!
//! ```
//! use api_keys::cache::{CacheConfig, CachedKeyStore};
//! use api_keys::{KeyManager, MemoryKeyStore};
//! use std::sync::Arc;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Arc::new(MemoryKeyStore::new()); // or a SQL store shared by many servers
//! let cached = CachedKeyStore::new(Arc::clone(&store), CacheConfig::default())?;
//! // The follower: a future the host spawns, with its runtime's timer.
//! tokio::spawn(cached.follower(store).run(tokio::time::sleep));
//! let keys = KeyManager::builder(cached).build()?;
//! # Ok(()) }
//! ```

use crate::clock::{MonotonicClock, SystemMonotonicClock};
use crate::error::{ConfigError, StoreError};
use crate::feed::{ChangeFeed, ChangeNotifications};
use crate::id_hash::IdHash;
use crate::lent::StoredRecord;
use crate::record::{KeyRecord, OwnerId};
use crate::store::{
    AsyncKeyAudit, AsyncKeyStore, KeyFilter, RollPlan, Usage, UseRank, WriteCondition,
};
use crate::token::KeyId;
use crate::wait::{First, first};
use core::hash::BuildHasher;
use quick_cache::sync::{Cache, DefaultLifecycle, EntryAction, EntryResult};
use quick_cache::{OptionsBuilder, UnitWeighter};
use std::future::Future;
use std::hash::RandomState;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The records' map hashes ids with [`IdHash`] (they came from the store:
/// ids the crate generated); the unknown ids' map holds ids a client chose,
/// so it hashes with a keyed hash (`RandomState`), where chosen ids cannot
/// be made to collide.
type Map<V, H> = Cache<KeyId, V, UnitWeighter, H, DefaultLifecycle<KeyId, V>>;

/// Settings of a [`CachedKeyStore`] and its [`FeedFollower`], with
/// documented defaults. Checked by [`CachedKeyStore::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheConfig {
    /// The most records cached. Default: 100 000.
    pub capacity: usize,
    /// The most unknown ids cached (a separate space). Default: 10 000.
    pub negative_capacity: usize,
    /// How long an unknown id is remembered (unless the feed says it was
    /// created sooner). Default: 10 seconds.
    pub negative_ttl: Duration,
    /// The staleness bound: nothing is served from the cache unless the
    /// feed was confirmed caught up by a read that started less than this
    /// long ago. Default: 1 second.
    pub max_staleness: Duration,
    /// How often the follower reads the feed, notifications or not. Must be
    /// below `max_staleness`. Default: a third of it.
    pub poll_interval: Duration,
    /// How long the follower waits for a gap in the change numbers to fill
    /// (it serves nothing meanwhile) before it drops the whole cache and
    /// moves on. Default: 10 seconds.
    pub gap_timeout: Duration,
    /// Changes read per feed query. Default: 1 000.
    pub page_size: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            capacity: 100_000,
            negative_capacity: 10_000,
            negative_ttl: Duration::from_secs(10),
            max_staleness: Duration::from_secs(1),
            poll_interval: Duration::from_millis(333),
            gap_timeout: Duration::from_secs(10),
            page_size: 1_000,
        }
    }
}

impl CacheConfig {
    /// Sets [`capacity`](Self::capacity).
    #[must_use]
    pub fn capacity(mut self, records: usize) -> Self {
        self.capacity = records;
        self
    }

    /// Sets [`negative_capacity`](Self::negative_capacity).
    #[must_use]
    pub fn negative_capacity(mut self, ids: usize) -> Self {
        self.negative_capacity = ids;
        self
    }

    /// Sets [`negative_ttl`](Self::negative_ttl).
    #[must_use]
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// Sets [`max_staleness`](Self::max_staleness) and the poll interval to
    /// a third of it.
    #[must_use]
    pub fn max_staleness(mut self, bound: Duration) -> Self {
        self.max_staleness = bound;
        self.poll_interval = bound / 3;
        self
    }

    /// Sets [`poll_interval`](Self::poll_interval) (after
    /// [`max_staleness`](Self::max_staleness), which resets it).
    #[must_use]
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }

    /// Sets [`gap_timeout`](Self::gap_timeout).
    #[must_use]
    pub fn gap_timeout(mut self, timeout: Duration) -> Self {
        self.gap_timeout = timeout;
        self
    }

    /// Sets [`page_size`](Self::page_size).
    #[must_use]
    pub fn page_size(mut self, changes: usize) -> Self {
        self.page_size = changes;
        self
    }

    /// Checks the values.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Cache`] for a zero capacity, bound, or page size, or
    /// a poll interval not below the bound.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.capacity == 0 || self.negative_capacity == 0 {
            return Err(ConfigError::Cache("capacities must be at least 1"));
        }
        if self.max_staleness.is_zero() {
            return Err(ConfigError::Cache("max_staleness must be above zero"));
        }
        if self.poll_interval >= self.max_staleness {
            return Err(ConfigError::Cache(
                "poll_interval must be below max_staleness",
            ));
        }
        if self.page_size == 0 {
            return Err(ConfigError::Cache("page_size must be at least 1"));
        }
        Ok(())
    }
}

/// Counters of a [`CachedKeyStore`] (for metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Lookups answered from the cache (records).
    pub hits: u64,
    /// Lookups answered from the negative space (unknown ids).
    pub negative_hits: u64,
    /// Lookups that read the store although the feed was confirmed.
    pub misses: u64,
    /// Lookups that read the store because the feed was not confirmed
    /// within the bound.
    pub unconfirmed: u64,
    /// Keys evicted because they changed.
    pub evictions: u64,
    /// Times the whole cache was dropped (start, fell behind the feed's
    /// retention, a gap that did not fill).
    pub resyncs: u64,
    /// Feed reads that failed.
    pub feed_errors: u64,
    /// Records cached now.
    pub records: usize,
    /// Unknown ids cached now.
    pub unknown: usize,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    negative_hits: AtomicU64,
    misses: AtomicU64,
    unconfirmed: AtomicU64,
    evictions: AtomicU64,
    resyncs: AtomicU64,
    feed_errors: AtomicU64,
}

struct Shared {
    records: Map<Arc<KeyRecord>, IdHash>,
    /// Unknown ids, with the monotonic nanosecond they expire at.
    negative: Map<u64, RandomState>,
    /// Moved before every eviction; a fill that saw it move drops what it
    /// inserted.
    epoch: AtomicU64,
    /// 1 + the monotonic nanosecond at which the last confirming feed read
    /// started; 0 = never confirmed.
    confirmed: AtomicU64,
    clock: Arc<dyn MonotonicClock>,
    config: CacheConfig,
    counters: Counters,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn map<V: Clone, H: BuildHasher + Clone + Default>(
    capacity: usize,
) -> Result<Map<V, H>, ConfigError> {
    let options = OptionsBuilder::new()
        .estimated_items_capacity(capacity)
        .weight_capacity(capacity as u64)
        .build()
        .map_err(|_| ConfigError::Cache("capacity out of range"))?;
    Ok(Cache::with_options(
        options,
        UnitWeighter,
        H::default(),
        DefaultLifecycle::default(),
    ))
}

impl Shared {
    fn now(&self) -> u64 {
        nanos(self.clock.elapsed())
    }

    /// Whether a confirmation is recent enough to serve at `now`.
    fn fresh(&self, now: u64) -> bool {
        match self.confirmed.load(Ordering::SeqCst) {
            0 => false,
            c => now.saturating_sub(c - 1) < nanos(self.config.max_staleness),
        }
    }

    /// Records that every change committed before `started` was evicted.
    fn confirm(&self, started: u64) {
        self.confirmed
            .fetch_max(started.saturating_add(1), Ordering::SeqCst);
    }

    fn evict(&self, ids: impl IntoIterator<Item = KeyId>) {
        let mut ids = ids.into_iter().peekable();
        if ids.peek().is_none() {
            return;
        }
        self.epoch.fetch_add(1, Ordering::SeqCst);
        for id in ids {
            self.records.remove(&id);
            self.negative.remove(&id);
            self.counters.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.records.clear();
        self.negative.clear();
        self.counters.resyncs.fetch_add(1, Ordering::Relaxed);
    }

    /// Caches `record` (read after `epoch` was `seen`), never over a higher
    /// version, and never past an eviction that happened meanwhile.
    fn fill(&self, record: &Arc<KeyRecord>, seen: u64) {
        let id = record.id;
        match self.records.entry(&id, None, |_, cached| {
            if cached.version <= record.version {
                *cached = Arc::clone(record);
            }
            EntryAction::Retain(())
        }) {
            EntryResult::Vacant(guard) => {
                let _ = guard.insert(Arc::clone(record));
            }
            EntryResult::Retained(())
            | EntryResult::Removed(..)
            | EntryResult::Replaced(..)
            | EntryResult::Timeout => {}
        }
        self.negative.remove(&id);
        if self.epoch.load(Ordering::SeqCst) != seen {
            self.records.remove(&id);
        }
    }

    fn fill_unknown(&self, id: KeyId, now: u64, seen: u64) {
        self.negative
            .insert(id, now.saturating_add(nanos(self.config.negative_ttl)));
        if self.epoch.load(Ordering::SeqCst) != seen {
            self.negative.remove(&id);
        }
    }

    /// After a touch: the cached record carries the new `last_used_at`, so
    /// the manager does not touch again within the interval, and, when the
    /// store wrote them, the uses.
    fn touched(&self, id: &KeyId, usage: Usage, written: bool) {
        let seen = self.epoch.load(Ordering::SeqCst);
        let Some(current) = self.records.peek(id) else {
            return;
        };
        let usage = if written {
            usage
        } else {
            Usage { uses: 0, ..usage }
        };
        if usage.uses == 0 && current.last_used_at.is_some_and(|t| t >= usage.at) {
            return;
        }
        let next = usage.applied(&current);
        // Only over the same version; never recreates an evicted entry.
        match self.records.entry(id, None, |_, cached| {
            if cached.version == next.version {
                *cached = Arc::clone(&next);
            }
            EntryAction::Retain(())
        }) {
            EntryResult::Vacant(guard) => drop(guard),
            EntryResult::Retained(())
            | EntryResult::Removed(..)
            | EntryResult::Replaced(..)
            | EntryResult::Timeout => {}
        }
        if self.epoch.load(Ordering::SeqCst) != seen {
            self.records.remove(id);
        }
    }
}

/// An [`AsyncKeyStore`] wrapper that caches verification lookups within a
/// staleness bound: see the [module docs](crate::cache). Cloning it clones
/// a handle to the same cache and a clone of the store.
pub struct CachedKeyStore<S> {
    store: S,
    shared: Arc<Shared>,
}

impl<S: Clone> Clone for CachedKeyStore<S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S> core::fmt::Debug for CachedKeyStore<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CachedKeyStore")
            .field("config", &self.shared.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl<S> CachedKeyStore<S> {
    /// Wraps `store`, with the system's monotonic clock.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Cache`] for an invalid `config`.
    pub fn new(store: S, config: CacheConfig) -> Result<Self, ConfigError> {
        Self::with_clock(store, config, SystemMonotonicClock::new())
    }

    /// Wraps `store`, measuring the staleness bound and negative entries'
    /// lifetime on `clock` (a [`ManualMonotonicClock`](crate::ManualMonotonicClock)
    /// in tests).
    ///
    /// # Errors
    ///
    /// [`ConfigError::Cache`] for an invalid `config`.
    pub fn with_clock(
        store: S,
        config: CacheConfig,
        clock: impl MonotonicClock + 'static,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            store,
            shared: Arc::new(Shared {
                records: map(config.capacity)?,
                negative: map(config.negative_capacity)?,
                epoch: AtomicU64::new(0),
                confirmed: AtomicU64::new(0),
                clock: Arc::new(clock),
                config,
                counters: Counters::default(),
            }),
        })
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.store
    }

    /// The follower that keeps this cache in step with `feed` (the wrapped
    /// store's feed, usually the store itself): spawn
    /// [`run`](FeedFollower::run). Until its first read of the feed
    /// succeeds, the cache serves nothing.
    #[must_use]
    pub fn follower<F: ChangeFeed>(&self, feed: F) -> FeedFollower<F> {
        FeedFollower {
            feed,
            shared: Arc::clone(&self.shared),
            last_seen: None,
            gap_since: None,
            on_error: None,
        }
    }

    /// Whether the cache may serve now (the feed was confirmed within the
    /// bound).
    pub fn is_confirmed(&self) -> bool {
        self.shared.fresh(self.shared.now())
    }

    /// How long ago the feed was last confirmed (`None`: never).
    pub fn confirmed_ago(&self) -> Option<Duration> {
        match self.shared.confirmed.load(Ordering::SeqCst) {
            0 => None,
            c => Some(Duration::from_nanos(
                self.shared.now().saturating_sub(c - 1),
            )),
        }
    }

    /// Drops every cached entry.
    pub fn clear(&self) {
        self.shared.clear();
    }

    /// The counters.
    pub fn stats(&self) -> CacheStats {
        let c = &self.shared.counters;
        CacheStats {
            hits: c.hits.load(Ordering::Relaxed),
            negative_hits: c.negative_hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            unconfirmed: c.unconfirmed.load(Ordering::Relaxed),
            evictions: c.evictions.load(Ordering::Relaxed),
            resyncs: c.resyncs.load(Ordering::Relaxed),
            feed_errors: c.feed_errors.load(Ordering::Relaxed),
            records: self.shared.records.len(),
            unknown: self.shared.negative.len(),
        }
    }
}

impl<S: AsyncKeyStore> CachedKeyStore<S> {
    async fn get_cached(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let shared = &*self.shared;
        let now = shared.now();
        if shared.fresh(now) {
            if let Some(record) = shared.records.get(id) {
                shared.counters.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(Some(record));
            }
            if shared.negative.get(id).is_some_and(|expires| now < expires) {
                shared
                    .counters
                    .negative_hits
                    .fetch_add(1, Ordering::Relaxed);
                return Ok(None);
            }
            shared.counters.misses.fetch_add(1, Ordering::Relaxed);
        } else {
            shared.counters.unconfirmed.fetch_add(1, Ordering::Relaxed);
        }
        let seen = shared.epoch.load(Ordering::SeqCst);
        let found = self.store.get(id).await?;
        match &found {
            // A store that answers with another key's record is broken:
            // neither cache it nor hand it on.
            Some(record) if record.id != *id => {
                return Err(StoreError::backend(
                    "the store returned a record with another key id",
                ));
            }
            Some(record) => shared.fill(record, seen),
            None => shared.fill_unknown(*id, now, seen),
        }
        Ok(found)
    }

    /// Runs a write, then evicts the keys it wrote (whatever the outcome:
    /// a write that reported an error may still have committed).
    async fn write<T, const N: usize>(
        &self,
        ids: [KeyId; N],
        write: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let result = write.await;
        self.shared.evict(ids);
        result
    }
}

impl<S: AsyncKeyStore> AsyncKeyStore for CachedKeyStore<S> {
    fn insert(
        &self,
        record: &KeyRecord,
        condition: WriteCondition,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.write([record.id], self.store.insert(record, condition))
    }
    /// From the cache while the feed is confirmed within the bound, else
    /// from the store (and cached).
    fn get(
        &self,
        id: &KeyId,
    ) -> impl Future<Output = Result<Option<Arc<KeyRecord>>, StoreError>> + Send {
        self.get_cached(id)
    }
    /// As [`get`](Self::get): the cached record, lent as it is.
    fn get_for_verify(
        &self,
        id: &KeyId,
    ) -> impl Future<Output = Result<Option<StoredRecord>, StoreError>> + Send {
        let get = self.get_cached(id);
        async move { Ok(get.await?.map(StoredRecord::from)) }
    }
    /// Always from the store (management reads are not cached).
    fn list_by_owner(
        &self,
        owner: &OwnerId,
    ) -> impl Future<Output = Result<Vec<Arc<KeyRecord>>, StoreError>> + Send {
        self.store.list_by_owner(owner)
    }
    fn update(
        &self,
        record: &KeyRecord,
        expected_version: u64,
        condition: WriteCondition,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.write(
            [record.id],
            self.store.update(record, expected_version, condition),
        )
    }
    fn apply_roll(&self, plan: &RollPlan) -> impl Future<Output = Result<(), StoreError>> + Send {
        let ids = [plan.predecessor.id, plan.successor.id];
        self.write(ids, self.store.apply_roll(plan))
    }
    /// Writes through, and moves the cached record's `last_used_at` (also
    /// when the store failed: it is a hint, and a failing database should
    /// not get a write on every request); adds the uses to it only when the
    /// store wrote them (the manager keeps the others for a later write).
    async fn touch(&self, id: &KeyId, usage: Usage) -> Result<(), StoreError> {
        let result = self.store.touch(id, usage).await;
        self.shared.touched(id, usage, result.is_ok());
        result
    }
    /// Writes through; once the store wrote the batch, the cached records
    /// carry it too.
    async fn touch_many(&self, touches: &[(KeyId, Usage)]) -> Result<(), StoreError> {
        self.store.touch_many(touches).await?;
        for (id, usage) in touches {
            self.shared.touched(id, *usage, true);
        }
        Ok(())
    }
}

/// Audit scans always read the store (management reads are not cached).
impl<S: AsyncKeyAudit> AsyncKeyAudit for CachedKeyStore<S> {
    fn scan(
        &self,
        filter: KeyFilter,
        after: Option<&KeyId>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Arc<KeyRecord>>, StoreError>> + Send {
        self.store.scan(filter, after, limit)
    }
    fn ranked_by_use(
        &self,
        rank: UseRank,
        owner: Option<&OwnerId>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Arc<KeyRecord>>, StoreError>> + Send {
        self.store.ranked_by_use(rank, owner, limit)
    }
}

/// What one [`FeedFollower::poll`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PollReport {
    /// Changes read.
    pub changes: usize,
    /// Whether the cache was confirmed (it may serve for another
    /// `max_staleness`).
    pub confirmed: bool,
    /// Whether the whole cache was dropped.
    pub resynced: bool,
    /// The last change number seen (contiguously).
    pub last_seen: u64,
}

type ErrorHook = Box<dyn Fn(&StoreError) + Send + Sync>;

/// Keeps a [`CachedKeyStore`] in step with a [`ChangeFeed`]: evicts the
/// keys that changed, and confirms the cache when it read the feed to its
/// end. Spawn [`run`](Self::run) (polling) or
/// [`run_with_notifications`](Self::run_with_notifications) on the host's
/// runtime; it returns when the cache was dropped.
pub struct FeedFollower<F> {
    feed: F,
    shared: Arc<Shared>,
    last_seen: Option<u64>,
    /// The monotonic nanosecond at which a gap was first seen.
    gap_since: Option<u64>,
    on_error: Option<ErrorHook>,
}

impl<F> core::fmt::Debug for FeedFollower<F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FeedFollower")
            .field("last_seen", &self.last_seen)
            .finish_non_exhaustive()
    }
}

impl<F: ChangeFeed> FeedFollower<F> {
    /// Calls `hook` for every failed read of the feed or of notifications
    /// (the cache stops serving at the bound and reads through meanwhile).
    #[must_use]
    pub fn on_error(mut self, hook: impl Fn(&StoreError) + Send + Sync + 'static) -> Self {
        self.on_error = Some(Box::new(hook));
        self
    }

    fn report(&self, e: &StoreError) {
        self.shared
            .counters
            .feed_errors
            .fetch_add(1, Ordering::Relaxed);
        if let Some(hook) = &self.on_error {
            hook(e);
        }
    }

    /// Reads the feed to its end once: evicts the keys that changed and, if
    /// the read was complete and without a gap, confirms the cache as of
    /// the instant the last query started. The first poll drops the whole
    /// cache and starts from the feed's head.
    ///
    /// # Errors
    ///
    /// The feed's error (the cache is not confirmed; it is also reported to
    /// the hook).
    pub async fn poll(&mut self) -> Result<PollReport, StoreError> {
        let result = self.poll_inner().await;
        if let Err(e) = &result {
            self.report(e);
        }
        result
    }

    async fn poll_inner(&mut self) -> Result<PollReport, StoreError> {
        let shared = Arc::clone(&self.shared);
        let config = &shared.config;
        let mut report = PollReport::default();
        let Some(mut last) = self.last_seen else {
            // Start: everything committed up to `head` is reflected by the
            // store, and nothing cached before now is trusted.
            let started = shared.now();
            let head = self.feed.head().await?;
            shared.clear();
            self.last_seen = Some(head);
            shared.confirm(started);
            return Ok(PollReport {
                confirmed: true,
                resynced: true,
                last_seen: head,
                ..report
            });
        };
        loop {
            let started = shared.now();
            let page = self.feed.changes_since(last, config.page_size).await?;
            let full = page.changes.len() >= config.page_size;
            report.changes += page.changes.len();
            let newest = page.changes.iter().map(|c| c.seq).max().unwrap_or(last);
            if page.pruned_through > last {
                // Changes this follower never saw are gone.
                shared.clear();
                report.resynced = true;
                last = newest.max(page.pruned_through);
                self.last_seen = Some(last);
                self.gap_since = None;
                if full {
                    continue;
                }
                shared.confirm(started);
                report.confirmed = true;
                report.last_seen = last;
                return Ok(report);
            }
            shared.evict(page.changes.iter().map(|c| c.key_id));
            let mut contiguous = last;
            // Pages are ascending (the feed's contract): the run of numbers
            // that follows `last` without a hole. Anything else (a hole, or
            // a number repeated by a broken feed) ends it, so at worst the
            // follower waits as for a gap.
            for change in &page.changes {
                if change.seq != contiguous.saturating_add(1) {
                    break;
                }
                contiguous = change.seq;
            }
            if contiguous < newest {
                // A gap: a change numbered below one already visible is not
                // visible (yet). Serve nothing until it fills or times out.
                let since = *self.gap_since.get_or_insert(started);
                if started.saturating_sub(since) < nanos(config.gap_timeout) {
                    self.last_seen = Some(contiguous);
                    report.last_seen = contiguous;
                    return Ok(report);
                }
                shared.clear();
                report.resynced = true;
                contiguous = newest;
            }
            self.gap_since = None;
            last = contiguous;
            self.last_seen = Some(last);
            if !full {
                shared.confirm(started);
                report.confirmed = true;
                report.last_seen = last;
                return Ok(report);
            }
        }
    }

    fn cache_dropped(&self) -> bool {
        Arc::strong_count(&self.shared) == 1
    }

    /// Polls every [`poll_interval`](CacheConfig::poll_interval), slept with
    /// `sleep` (the host's timer, e.g. `tokio::time::sleep`). Returns when
    /// every [`CachedKeyStore`] handle was dropped.
    pub async fn run<Sl, Fut>(mut self, mut sleep: Sl)
    where
        Sl: FnMut(Duration) -> Fut,
        Fut: Future,
    {
        let every = self.shared.config.poll_interval;
        loop {
            let _reported = self.poll().await;
            if self.cache_dropped() {
                return;
            }
            sleep(every).await;
        }
    }

    /// As [`run`](Self::run), and also polls at once whenever
    /// `notifications` fires (PostgreSQL `LISTEN`), so changes arrive in
    /// milliseconds; the regular polls still hold the bound when
    /// notifications are lost. A failing notification channel is reported
    /// and tried again after the next regular poll.
    pub async fn run_with_notifications<N, Sl, Fut>(mut self, mut notifications: N, mut sleep: Sl)
    where
        N: ChangeNotifications,
        Sl: FnMut(Duration) -> Fut,
        Fut: Future,
    {
        let every = self.shared.config.poll_interval;
        loop {
            let _reported = self.poll().await;
            if self.cache_dropped() {
                return;
            }
            match first(sleep(every), notifications.changed()).await {
                First::Left(_) | First::Right(Ok(())) => {}
                First::Right(Err(e)) => {
                    self.report(&e);
                    sleep(every).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fill_never_replaces_a_newer_cached_version() {
        let cache = CachedKeyStore::with_clock(
            crate::MemoryKeyStore::new(),
            CacheConfig::default(),
            crate::ManualMonotonicClock::new(),
        )
        .unwrap_or_else(|_| unreachable!());
        let shared = &cache.shared;
        let version = |v: u64| {
            let mut record = crate::lent::sample_record(KeyId::from_bytes([7; 16]));
            record.version = v;
            Arc::new(record)
        };
        let cached = |id| shared.records.peek(&id).map(|r| r.version);
        let id = version(1).id;
        shared.fill(&version(1), 0);
        assert_eq!(cached(id), Some(1));
        shared.fill(&version(3), 0);
        assert_eq!(cached(id), Some(3), "a newer version replaces");
        shared.fill(&version(2), 0);
        assert_eq!(cached(id), Some(3), "an older one does not");
        let mut same = (*version(3)).clone();
        same.use_count = 9;
        shared.fill(&Arc::new(same), 0);
        assert_eq!(
            shared.records.peek(&id).map(|r| r.use_count),
            Some(9),
            "the same version refreshes"
        );
        // A fill that saw an older epoch leaves nothing behind.
        shared.fill(&version(4), 1);
        assert_eq!(cached(id), None);
    }
}
