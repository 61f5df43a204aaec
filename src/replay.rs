//! Nonce memory for the replay-protected signing mode.
//!
//! In replay-protected mode (see [`crate::signing`]) every signed request carries a
//! nonce and a timestamp. The timestamp bounds how long a captured request stays
//! acceptable (the tolerance window); the nonce makes each request acceptable **once**
//! inside that window. The verifier asks a [`ReplayCache`] whether a nonce has been seen
//! for the key and, if not, records it until the timestamp has left the window.
//!
//! Nonces are scoped per key: the `scope` passed to the cache is the key id bytes, so
//! two keys may use the same nonce without interfering.
//!
//! [`MemoryReplayCache`] is the embedded implementation: thread-safe, sharded, bounded.
//! A deployment with several verifying processes needs a shared cache (Redis `SET NX PX`,
//! a database table with a unique constraint, …); implement [`ReplayCache`] over it.
//!
//! # What may spend cache space
//!
//! Only a request that passed every other check records its nonce: the verifier
//! ([`KeyManager::verify_signed`](crate::KeyManager::verify_signed)) checks the MAC,
//! then the key's status, time and policy, and records the nonce last. A forged
//! request, or one from a revoked, inactive, expired or IP-refused key, never
//! writes to the cache.
//!
//! # Failing closed, and each key's share
//!
//! A cache that cannot remember a nonce must not accept the request. At capacity,
//! [`MemoryReplayCache`] behaves like this:
//!
//! * **One key at its share.** Each scope (key) may hold at most
//!   [`scope_limit`](MemoryReplayCache::scope_limit) unexpired nonces (a quarter of
//!   the capacity by default). Past it the cache answers
//!   [`ReplayCacheError::ScopeFull`]: that key's requests are refused with
//!   [`Rejection::ReplayQuotaExceeded`](crate::Rejection::ReplayQuotaExceeded)
//!   (HTTP 429) until its oldest nonces expire, and every other key is served as
//!   before. One credential can never exhaust the cache for the others.
//! * **The whole cache full.** When the cache (or the shard a nonce falls in) is full
//!   of unexpired entries it returns [`ReplayCacheError::Full`] instead of forgetting
//!   an entry, and the verifier refuses the request as a failure of the service
//!   (HTTP 500, [`Error::ReplayCache`](crate::Error::ReplayCache)).
//!
//! Size the capacity for the peak number of accepted signed requests per tolerance
//! window (twice the tolerance plus a second, since the window is symmetric), and
//! the scope limit for the busiest single key.
//!
//! # One instant for the window and the cache
//!
//! An entry may be purged once its expiry has passed, and the expiry is the first
//! instant at which the request's timestamp leaves the window. So the window and the
//! cache must be checked with the same instant, taken no earlier than the store
//! lookup: the verifier reads its clock after the lookup and passes that instant to
//! both, and [`MemoryReplayCache`] never checks a nonce at an instant older than one
//! it has already purged with (it uses the later of the two). A captured request can
//! then never be accepted twice because its entry was purged while it was in flight.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::error::Error as StdError;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use time::UtcDateTime;

/// Remembers the nonces of accepted requests, per key, until they expire.
///
/// Implementations must be atomic: two concurrent calls with the same `scope` and
/// `nonce` must not both return `Ok(true)`. They must fail closed: when the nonce cannot
/// be checked or recorded, return an error (the request is then refused), never
/// `Ok(true)`.
///
/// The trait is dyn-compatible; verifiers take `&dyn ReplayCache`.
///
/// # Example
///
/// A minimal (unbounded, single-lock) implementation, to show the contract.
/// Use [`MemoryReplayCache`] in practice.
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::Mutex;
/// use api_keys::replay::{ReplayCache, ReplayCacheError};
/// use time::UtcDateTime;
///
/// #[derive(Default)]
/// struct SimpleCache(Mutex<HashMap<(Vec<u8>, String), UtcDateTime>>);
///
/// impl ReplayCache for SimpleCache {
///     fn check_and_insert(
///         &self,
///         scope: &[u8],
///         nonce: &str,
///         expires_at: UtcDateTime,
///         now: UtcDateTime,
///     ) -> Result<bool, ReplayCacheError> {
///         let mut map = self
///             .0
///             .lock()
///             .map_err(|_| ReplayCacheError::Unavailable("lock poisoned".into()))?;
///         map.retain(|_, expiry| *expiry > now);
///         let key = (scope.to_vec(), nonce.to_owned());
///         if map.contains_key(&key) {
///             return Ok(false); // seen and not yet expired: a replay
///         }
///         map.insert(key, expires_at);
///         Ok(true)
///     }
/// }
///
/// let cache = SimpleCache::default();
/// let now = UtcDateTime::from_unix_timestamp(1_700_000_000)?;
/// let later = UtcDateTime::from_unix_timestamp(1_700_000_601)?;
/// assert!(cache.check_and_insert(b"key_1", "n0nce-0123456789", later, now)?);
/// assert!(!cache.check_and_insert(b"key_1", "n0nce-0123456789", later, now)?);
/// assert!(cache.check_and_insert(b"key_2", "n0nce-0123456789", later, now)?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait ReplayCache: Send + Sync {
    /// Checks whether `nonce` has been seen for `scope` and, if not, records it.
    ///
    /// Returns `Ok(true)` when the nonce is fresh (it is now recorded until
    /// `expires_at`), `Ok(false)` when it was already recorded and has not expired
    /// (a replay). An entry is live while `now < expires_at`; once `now >= expires_at` it
    /// may be forgotten and the same nonce counts as fresh again.
    ///
    /// `now` is the instant the verifier checked the request's window at, taken after
    /// its store lookup. An implementation that forgets entries must never answer
    /// `Ok(true)` for a nonce whose `expires_at` is not after the latest instant it has
    /// forgotten entries at (it cannot know whether that nonce was seen): answer
    /// `Ok(false)`. A shared cache with its own clock (Redis `SET NX PX`, a database
    /// row with a time-to-live) should compare against the later of `now` and its own
    /// time.
    ///
    /// # Errors
    ///
    /// [`ReplayCacheError::ScopeFull`] when this scope (key) holds its share of
    /// unexpired nonces: the key's request is refused (HTTP 429), other keys are not
    /// affected. Any other [`ReplayCacheError`] when the nonce cannot be checked or
    /// recorded (the cache is full, or its backend failed): the verifier then refuses
    /// the request as a failure of the service (fails closed).
    fn check_and_insert(
        &self,
        scope: &[u8],
        nonce: &str,
        expires_at: UtcDateTime,
        now: UtcDateTime,
    ) -> Result<bool, ReplayCacheError>;
}

/// A [`ReplayCache`] could not check or record a nonce. The request must be refused.
///
/// This is a failure of the service (HTTP 503/500), not a verdict on the request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayCacheError {
    /// The cache (or the shard the nonce falls in) holds `capacity` entries that have
    /// not expired yet; it refuses rather than forget one.
    #[error("replay cache is full of unexpired nonces (capacity {capacity})")]
    Full {
        /// The capacity of the part of the cache that is full.
        capacity: usize,
    },
    /// This scope (key) already holds `limit` unexpired nonces, its share of the
    /// cache. Not a failure of the service: the verifier refuses the request with
    /// [`Rejection::ReplayQuotaExceeded`](crate::Rejection::ReplayQuotaExceeded)
    /// (HTTP 429), and other keys are served as before.
    #[error("this key holds its share of unexpired nonces (limit {limit})")]
    ScopeFull {
        /// The most unexpired nonces one scope may hold.
        limit: usize,
    },
    /// The cache backend failed; the cause is kept as the error's source.
    #[error("replay cache unavailable")]
    Unavailable(#[source] Box<dyn StdError + Send + Sync + 'static>),
}

/// In-memory, thread-safe, bounded [`ReplayCache`].
///
/// Entries are spread over shards (each a `Mutex<HashMap>`) by a randomly keyed hash,
/// so concurrent verifications rarely contend and an attacker cannot aim nonces at one
/// shard. The capacity is divided among the shards; a shard that is full of unexpired
/// entries first drops its expired entries and, if none has expired, returns
/// [`ReplayCacheError::Full`] (fails closed) even if other shards have room.
///
/// Each scope (key) may hold at most [`scope_limit`](Self::scope_limit) unexpired
/// nonces (default: a quarter of the capacity, see
/// [`with_scope_limit`](Self::with_scope_limit)); past it the cache answers
/// [`ReplayCacheError::ScopeFull`] for that scope only.
///
/// The cache never checks a nonce at an instant older than the latest one it has
/// been asked about (purges included), in any shard: an entry it forgot can never
/// make a replay look fresh, and after a clock step backwards every key sees the
/// same, deterministic answer (a request whose window ended before that latest
/// instant is refused as a replay until the clock catches up).
///
/// Memory per entry is roughly the scope plus the nonce plus about 80 bytes of
/// bookkeeping. It is local to one process: several verifying processes need a shared
/// implementation of [`ReplayCache`].
///
/// Keep a handle to purge it from a background task: the cache is implemented for
/// `Arc<MemoryReplayCache>` too.
///
/// ```
/// use std::sync::Arc;
/// use api_keys::{KeyManager, MemoryKeyStore, replay::MemoryReplayCache};
///
/// let cache = Arc::new(MemoryReplayCache::new(10_000).with_scope_limit(1_000));
/// let keys = KeyManager::builder(MemoryKeyStore::new())
///     .replay_cache(Arc::clone(&cache))
///     .build()?;
/// // Periodically, e.g. once a minute:
/// let purged = cache.purge_expired(keys.now());
/// assert_eq!(purged, 0);
/// # Ok::<(), api_keys::ConfigError>(())
/// ```
pub struct MemoryReplayCache {
    shards: Box<[Mutex<Shard>]>,
    /// Per-scope accounting, sharded by scope.
    ledgers: Box<[Mutex<Ledger>]>,
    hasher: RandomState,
    capacity: usize,
    scope_limit: usize,
    /// The latest instant the cache was asked about, in Unix microseconds
    /// rounded up (`i64::MIN`: none yet). Shared by every shard.
    horizon: AtomicI64,
}

impl MemoryReplayCache {
    /// Capacity of [`MemoryReplayCache::default`]: 100 000 nonces, enough for about
    /// 160 signed requests per second with the default 300-second tolerance, and
    /// about 40 per second from any single key (its default share, a quarter).
    pub const DEFAULT_CAPACITY: usize = 100_000;

    /// Largest number of shards used by [`MemoryReplayCache::new`].
    pub const DEFAULT_SHARDS: usize = 16;

    /// Smallest shard capacity [`MemoryReplayCache::new`] aims for, so that a shard
    /// does not fill up long before the whole cache does.
    pub const MIN_SHARD_CAPACITY: usize = 1024;

    /// A cache holding at most `capacity` unexpired nonces, at most a quarter of them
    /// (at least 1) for any one scope ([`with_scope_limit`](Self::with_scope_limit)
    /// to change that).
    ///
    /// Uses `capacity / MIN_SHARD_CAPACITY` shards, at least 1 and at most
    /// [`DEFAULT_SHARDS`](Self::DEFAULT_SHARDS): a small cache is a single shard, whose
    /// capacity is exactly `capacity`. A capacity of 0 refuses every nonce (every check
    /// fails closed).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        let shards = (capacity / Self::MIN_SHARD_CAPACITY).clamp(1, Self::DEFAULT_SHARDS);
        Self::with_shards(capacity, shards)
    }

    /// A cache holding at most `capacity` unexpired nonces, over `shards` shards.
    ///
    /// `shards` is clamped to `1..=capacity` (at least one shard). The capacity is split
    /// as evenly as possible: the shards' capacities add up to exactly `capacity`. The
    /// scope limit is the default, a quarter of the capacity (at least 1).
    #[must_use]
    pub fn with_shards(capacity: usize, shards: usize) -> Self {
        let count = shards.clamp(1, capacity.max(1));
        let base = capacity / count;
        let extra = capacity % count;
        let shards = (0..count)
            .map(|i| Mutex::new(Shard::new(base + usize::from(i < extra))))
            .collect();
        let ledgers = (0..count)
            .map(|i| Mutex::new(Ledger::new(base + usize::from(i < extra))))
            .collect();
        Self {
            shards,
            ledgers,
            hasher: RandomState::new(),
            capacity,
            scope_limit: (capacity / 4).max(1),
            horizon: AtomicI64::new(i64::MIN),
        }
    }

    /// Records `now` and returns the instant to check at: the later of `now`
    /// and every instant the cache was asked about before. Called with the
    /// shard's lock held (and before any purge), so a check that follows a
    /// purge in the same shard always sees that purge's instant.
    fn observe(&self, now: UtcDateTime) -> UtcDateTime {
        // Rounded up, so the stored horizon is never before an instant seen.
        let nanos = now.unix_timestamp_nanos();
        let micros = nanos.div_euclid(1000) + i128::from(nanos.rem_euclid(1000) != 0);
        let micros = i64::try_from(micros).unwrap_or(i64::MAX);
        let before = self.horizon.fetch_max(micros, Ordering::SeqCst);
        if before <= micros {
            return now;
        }
        UtcDateTime::from_unix_timestamp_nanos(i128::from(before) * 1000)
            .map_or(now, |latest| latest.max(now))
    }

    /// The same cache with at most `limit` unexpired nonces per scope (key), clamped
    /// to `1..=capacity`. Set it to the most signed requests the busiest single key
    /// may make per tolerance window; a key past it gets
    /// [`ReplayCacheError::ScopeFull`] (its requests are refused with HTTP 429), the
    /// others are unaffected.
    #[must_use]
    pub fn with_scope_limit(mut self, limit: usize) -> Self {
        self.scope_limit = limit.clamp(1, self.capacity.max(1));
        self
    }

    /// The total number of nonces the cache can hold.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The most unexpired nonces one scope (key) may hold.
    #[must_use]
    pub fn scope_limit(&self) -> usize {
        self.scope_limit
    }

    /// The number of entries currently held, expired ones included until they are
    /// purged.
    #[must_use]
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| lock(shard).entries.len())
            .sum()
    }

    /// Whether the cache holds no entry.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every entry that has expired at `now`; returns how many were dropped.
    ///
    /// Optional: full shards purge themselves. A host may call this periodically to
    /// release memory sooner.
    pub fn purge_expired(&self, now: UtcDateTime) -> usize {
        let now = self.observe(now);
        for ledger in &self.ledgers {
            lock(ledger).sweep(now);
        }
        self.shards
            .iter()
            .map(|shard| {
                let mut shard = lock(shard);
                let now = self.observe(now);
                shard.purge(now)
            })
            .sum()
    }

    fn index(&self, bytes: &[u8], len: usize) -> Option<usize> {
        let count = u64::try_from(len).ok()?;
        let hash = self.hasher.hash_one(bytes);
        usize::try_from(hash.checked_rem(count)?).ok()
    }

    fn shard_for(&self, entry: &[u8]) -> Option<&Mutex<Shard>> {
        self.shards.get(self.index(entry, self.shards.len())?)
    }

    fn ledger_for(&self, scope: &[u8]) -> Option<&Mutex<Ledger>> {
        self.ledgers.get(self.index(scope, self.ledgers.len())?)
    }
}

impl Default for MemoryReplayCache {
    /// [`MemoryReplayCache::new`] with [`DEFAULT_CAPACITY`](Self::DEFAULT_CAPACITY).
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

impl fmt::Debug for MemoryReplayCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryReplayCache")
            .field("capacity", &self.capacity)
            .field("scope_limit", &self.scope_limit)
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

impl ReplayCache for MemoryReplayCache {
    fn check_and_insert(
        &self,
        scope: &[u8],
        nonce: &str,
        expires_at: UtcDateTime,
        now: UtcDateTime,
    ) -> Result<bool, ReplayCacheError> {
        let full = ReplayCacheError::Full {
            capacity: self.capacity,
        };
        let entry = entry_key(scope, nonce);
        let shard = self.shard_for(&entry).ok_or(full)?;
        let mut shard = lock(shard);
        let now = self.observe(now);
        match shard.lookup(&entry, expires_at, now)? {
            Slot::Replayed => Ok(false),
            Slot::Rearm | Slot::New => {
                // Lock order: entry shard, then ledger. The scope's share is
                // taken only once the entry is known to be storable.
                let ledger = self.ledger_for(scope).ok_or(ReplayCacheError::Full {
                    capacity: self.capacity,
                })?;
                lock(ledger).reserve(scope, expires_at, now, self.scope_limit)?;
                shard.store(entry, expires_at);
                Ok(true)
            }
        }
    }
}

/// Shared handles: keep one to purge the cache or read its size while a
/// [`KeyManager`](crate::KeyManager) owns another.
impl<T: ReplayCache + ?Sized> ReplayCache for Arc<T> {
    fn check_and_insert(
        &self,
        scope: &[u8],
        nonce: &str,
        expires_at: UtcDateTime,
        now: UtcDateTime,
    ) -> Result<bool, ReplayCacheError> {
        (**self).check_and_insert(scope, nonce, expires_at, now)
    }
}

/// The map key: the scope's length, the scope, then the nonce, so that no
/// (scope, nonce) pair can collide with another.
fn entry_key(scope: &[u8], nonce: &str) -> Box<[u8]> {
    let scope_len = u64::try_from(scope.len()).unwrap_or(u64::MAX);
    let mut key = Vec::with_capacity(8 + scope.len() + nonce.len());
    key.extend_from_slice(&scope_len.to_be_bytes());
    key.extend_from_slice(scope);
    key.extend_from_slice(nonce.as_bytes());
    key.into_boxed_slice()
}

/// Nothing panics while a shard is locked (no user code runs under the lock), so a
/// poisoned lock still guards a consistent map: recover it rather than fail forever.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Shard {
    entries: HashMap<Box<[u8]>, UtcDateTime>,
    capacity: usize,
    /// The earliest expiry among `entries` (or earlier): no entry can be purged before.
    earliest: Option<UtcDateTime>,
}

/// Where a nonce stands in its shard.
enum Slot {
    /// Recorded and unexpired, or too old to be remembered: not fresh.
    Replayed,
    /// Recorded but expired: fresh, the entry is re-armed.
    Rearm,
    /// Not recorded, and there is room: fresh.
    New,
}

impl Shard {
    fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity,
            earliest: None,
        }
    }

    fn lookup(
        &mut self,
        entry: &[u8],
        expires_at: UtcDateTime,
        now: UtcDateTime,
    ) -> Result<Slot, ReplayCacheError> {
        match self.entries.get(entry) {
            Some(expiry) if *expiry > now => return Ok(Slot::Replayed),
            // An entry that would be expired as soon as it is written cannot guard
            // anything: the request can no longer be told apart from a replay.
            _ if expires_at <= now => return Ok(Slot::Replayed),
            Some(_) => return Ok(Slot::Rearm),
            None => {}
        }
        if self.entries.len() >= self.capacity {
            self.purge(now);
            if self.entries.len() >= self.capacity {
                return Err(ReplayCacheError::Full {
                    capacity: self.capacity,
                });
            }
        }
        Ok(Slot::New)
    }

    fn store(&mut self, entry: Box<[u8]>, expires_at: UtcDateTime) {
        self.entries.insert(entry, expires_at);
        self.earliest = Some(self.earliest.map_or(expires_at, |e| e.min(expires_at)));
    }

    fn purge(&mut self, now: UtcDateTime) -> usize {
        if self.earliest.is_none_or(|earliest| earliest > now) {
            return 0;
        }
        let before = self.entries.len();
        self.entries.retain(|_, expiry| *expiry > now);
        self.earliest = self.entries.values().min().copied();
        before - self.entries.len()
    }
}

/// The expiries of each scope's unexpired nonces, for the per-scope share.
///
/// Independent of the entries themselves: an entry is only ever purged once it has
/// expired, and an expired expiry no longer counts here either.
struct Ledger {
    scopes: HashMap<Box<[u8]>, BinaryHeap<Reverse<UtcDateTime>>>,
    /// Expiries held, expired ones included until they are swept.
    total: usize,
    /// Above this many expiries, sweep expired ones out of every scope.
    soft_capacity: usize,
    /// The earliest expiry held (or earlier).
    earliest: Option<UtcDateTime>,
}

impl Ledger {
    fn new(soft_capacity: usize) -> Self {
        Self {
            scopes: HashMap::new(),
            total: 0,
            soft_capacity,
            earliest: None,
        }
    }

    /// Takes one of `scope`'s `limit` places until `expires_at`.
    fn reserve(
        &mut self,
        scope: &[u8],
        expires_at: UtcDateTime,
        now: UtcDateTime,
        limit: usize,
    ) -> Result<(), ReplayCacheError> {
        if self.total >= self.soft_capacity {
            self.sweep(now);
        }
        let heap = match self.scopes.get_mut(scope) {
            Some(heap) => heap,
            None => self.scopes.entry(scope.into()).or_default(),
        };
        let mut released = 0;
        while heap.peek().is_some_and(|Reverse(e)| *e <= now) {
            heap.pop();
            released += 1;
        }
        if heap.len() >= limit {
            self.total = self.total.saturating_sub(released);
            return Err(ReplayCacheError::ScopeFull { limit });
        }
        heap.push(Reverse(expires_at));
        self.total = self.total.saturating_sub(released).saturating_add(1);
        self.earliest = Some(self.earliest.map_or(expires_at, |e| e.min(expires_at)));
        Ok(())
    }

    /// Drops every expired expiry, and scopes left with none.
    fn sweep(&mut self, now: UtcDateTime) {
        if self.earliest.is_none_or(|earliest| earliest > now) {
            return;
        }
        let mut total = 0;
        let mut earliest: Option<UtcDateTime> = None;
        self.scopes.retain(|_, heap| {
            while heap.peek().is_some_and(|Reverse(e)| *e <= now) {
                heap.pop();
            }
            total += heap.len();
            if let Some(Reverse(e)) = heap.peek() {
                earliest = Some(earliest.map_or(*e, |x| x.min(*e)));
            }
            !heap.is_empty()
        });
        self.total = total;
        self.earliest = earliest;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn at(secs: i64) -> UtcDateTime {
        UtcDateTime::from_unix_timestamp(secs).unwrap()
    }

    const NOW: i64 = 1_700_000_000;

    #[test]
    fn fresh_then_replayed() {
        let cache = MemoryReplayCache::new(10);
        assert!(
            cache
                .check_and_insert(b"k", "nonce", at(NOW + 10), at(NOW))
                .unwrap()
        );
        assert!(
            !cache
                .check_and_insert(b"k", "nonce", at(NOW + 10), at(NOW))
                .unwrap()
        );
        // Still live one second before expiry.
        assert!(
            !cache
                .check_and_insert(b"k", "nonce", at(NOW + 10), at(NOW + 9))
                .unwrap()
        );
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn expired_entry_counts_as_fresh() {
        let cache = MemoryReplayCache::new(10);
        assert!(
            cache
                .check_and_insert(b"k", "nonce", at(NOW + 10), at(NOW))
                .unwrap()
        );
        // At exactly `expires_at` the entry is gone.
        assert!(
            cache
                .check_and_insert(b"k", "nonce", at(NOW + 20), at(NOW + 10))
                .unwrap()
        );
        // And it was re-armed with the new expiry.
        assert!(
            !cache
                .check_and_insert(b"k", "nonce", at(NOW + 20), at(NOW + 19))
                .unwrap()
        );
    }

    #[test]
    fn scopes_are_separate_and_unambiguous() {
        let cache = MemoryReplayCache::new(10);
        let exp = at(NOW + 10);
        assert!(cache.check_and_insert(b"a", "nonce", exp, at(NOW)).unwrap());
        assert!(cache.check_and_insert(b"b", "nonce", exp, at(NOW)).unwrap());
        // ("ab", "c") and ("a", "bc") must not collide.
        assert!(cache.check_and_insert(b"ab", "c", exp, at(NOW)).unwrap());
        assert!(cache.check_and_insert(b"a", "bc", exp, at(NOW)).unwrap());
        assert!(!cache.check_and_insert(b"ab", "c", exp, at(NOW)).unwrap());
    }

    #[test]
    fn full_of_unexpired_entries_fails_closed() {
        let cache = MemoryReplayCache::with_shards(2, 1).with_scope_limit(2);
        let exp = at(NOW + 10);
        assert!(cache.check_and_insert(b"k", "n1", exp, at(NOW)).unwrap());
        assert!(cache.check_and_insert(b"k", "n2", exp, at(NOW)).unwrap());
        let err = cache
            .check_and_insert(b"k", "n3", exp, at(NOW))
            .unwrap_err();
        assert!(matches!(err, ReplayCacheError::Full { capacity: 2 }));
        // Known nonces are still reported as replays, not forgotten.
        assert!(!cache.check_and_insert(b"k", "n1", exp, at(NOW)).unwrap());
        // Once entries expire, room is made.
        assert!(
            cache
                .check_and_insert(b"k", "n3", at(NOW + 30), at(NOW + 10))
                .unwrap()
        );
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn zero_capacity_refuses_everything() {
        let cache = MemoryReplayCache::new(0);
        assert!(
            cache
                .check_and_insert(b"k", "n", at(NOW + 1), at(NOW))
                .is_err()
        );
        assert!(cache.is_empty());
    }

    #[test]
    fn capacity_is_split_exactly() {
        let cache = MemoryReplayCache::with_shards(10, 4);
        let total: usize = cache.shards.iter().map(|s| lock(s).capacity).sum();
        assert_eq!(total, 10);
        let shards: Vec<usize> = cache.shards.iter().map(|s| lock(s).capacity).collect();
        assert_eq!(shards, [3, 3, 2, 2], "as even as possible");
        // Each scope ledger sweeps at its shard's capacity: the ledgers,
        // like the shards, hold about `capacity` expiries in all.
        let ledgers: Vec<usize> = cache
            .ledgers
            .iter()
            .map(|l| lock(l).soft_capacity)
            .collect();
        assert_eq!(ledgers, shards);
        assert_eq!(cache.capacity(), 10);
        assert_eq!(MemoryReplayCache::new(3).shards.len(), 1);
        assert_eq!(MemoryReplayCache::new(2047).shards.len(), 1);
        assert_eq!(MemoryReplayCache::new(4096).shards.len(), 4);
        assert_eq!(MemoryReplayCache::default().shards.len(), 16);
        assert_eq!(MemoryReplayCache::with_shards(3, 8).shards.len(), 3);
        assert_eq!(MemoryReplayCache::with_shards(0, 8).shards.len(), 1);
    }

    #[test]
    fn purge_expired_releases_entries() {
        let cache = MemoryReplayCache::new(100);
        for i in 0..10 {
            let exp = at(NOW + i);
            cache
                .check_and_insert(b"k", &format!("n{i}"), exp, at(NOW - 1))
                .unwrap();
        }
        assert_eq!(cache.purge_expired(at(NOW + 4)), 5);
        assert_eq!(cache.len(), 5);
        assert!(!cache.is_empty());
        assert_eq!(cache.purge_expired(at(NOW + 4)), 0);
        assert_eq!(cache.purge_expired(at(NOW + 10)), 5);
        assert!(cache.is_empty());
    }

    /// Entries spread over the shards: a sharded cache holds far more than
    /// one shard's share (1024 here) before any shard fills.
    #[test]
    fn entries_spread_over_the_shards() {
        let cache = MemoryReplayCache::with_shards(4096, 4).with_scope_limit(4096);
        for i in 0..3000 {
            let fresh = cache.check_and_insert(b"k", &format!("n{i}"), at(NOW + 60), at(NOW));
            assert!(matches!(fresh, Ok(true)), "nonce {i}: {fresh:?}");
        }
        assert_eq!(cache.len(), 3000);
        for shard in &cache.shards {
            let held = lock(shard).entries.len();
            assert!((1..1024).contains(&held), "{held} in one shard");
        }
    }

    #[test]
    fn debug_shows_no_entries() {
        let cache = MemoryReplayCache::new(4);
        cache
            .check_and_insert(b"key_id", "secret-looking-nonce", at(NOW + 1), at(NOW))
            .unwrap();
        let shown = format!("{cache:?}");
        assert!(shown.contains("capacity: 4"));
        assert!(!shown.contains("secret-looking-nonce"));
    }

    #[test]
    fn concurrent_same_nonce_accepted_once() {
        let cache = Arc::new(MemoryReplayCache::default());
        let accepted = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let cache = Arc::clone(&cache);
                let accepted = Arc::clone(&accepted);
                std::thread::spawn(move || {
                    for i in 0..200 {
                        let nonce = format!("nonce-{i}");
                        if cache
                            .check_and_insert(b"k", &nonce, at(NOW + 60), at(NOW))
                            .unwrap()
                        {
                            accepted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(accepted.load(Ordering::Relaxed), 200);
        assert_eq!(cache.len(), 200);
    }

    #[test]
    fn error_keeps_its_cause() {
        let err = ReplayCacheError::Unavailable("connection reset".into());
        assert_eq!(err.to_string(), "replay cache unavailable");
        assert_eq!(err.source().unwrap().to_string(), "connection reset");
    }

    #[test]
    fn one_scope_gets_a_bounded_share() {
        let cache = MemoryReplayCache::new(8);
        assert_eq!(
            cache.scope_limit(),
            2,
            "a quarter of the capacity by default"
        );
        let exp = at(NOW + 10);
        assert!(cache.check_and_insert(b"busy", "n1", exp, at(NOW)).unwrap());
        assert!(cache.check_and_insert(b"busy", "n2", exp, at(NOW)).unwrap());
        let err = cache
            .check_and_insert(b"busy", "n3", exp, at(NOW))
            .unwrap_err();
        assert!(matches!(err, ReplayCacheError::ScopeFull { limit: 2 }));
        // A refused nonce was not stored, known ones are still replays, and
        // other scopes are served.
        assert_eq!(cache.len(), 2);
        assert!(!cache.check_and_insert(b"busy", "n1", exp, at(NOW)).unwrap());
        assert!(
            cache
                .check_and_insert(b"quiet", "n1", exp, at(NOW))
                .unwrap()
        );
        // Once the busy scope's nonces expire, its share is free again.
        assert!(
            cache
                .check_and_insert(b"busy", "n3", at(NOW + 20), at(NOW + 10))
                .unwrap()
        );
    }

    #[test]
    fn scope_limit_is_clamped() {
        assert_eq!(MemoryReplayCache::new(3).scope_limit(), 1);
        assert_eq!(MemoryReplayCache::new(0).scope_limit(), 1);
        assert_eq!(
            MemoryReplayCache::new(100)
                .with_scope_limit(0)
                .scope_limit(),
            1
        );
        assert_eq!(
            MemoryReplayCache::new(100)
                .with_scope_limit(1000)
                .scope_limit(),
            100
        );
        assert_eq!(
            MemoryReplayCache::new(100)
                .with_scope_limit(7)
                .scope_limit(),
            7
        );
    }

    #[test]
    fn a_purged_nonce_is_never_fresh_at_an_older_instant() {
        let cache = MemoryReplayCache::new(16);
        let exp = at(NOW + 10);
        assert!(cache.check_and_insert(b"k", "nonce", exp, at(NOW)).unwrap());
        assert_eq!(cache.purge_expired(at(NOW + 10)), 1);
        // A verifier that read its clock before the purge: the entry is gone,
        // but the nonce cannot be told apart from a replay.
        assert!(
            !cache
                .check_and_insert(b"k", "nonce", exp, at(NOW + 9))
                .unwrap()
        );
        assert!(cache.is_empty(), "nothing is stored for it either");
        // A nonce that outlives the purge instant is still fresh.
        assert!(
            cache
                .check_and_insert(b"k", "other", at(NOW + 11), at(NOW + 9))
                .unwrap()
        );
    }

    /// The ledger sweeps once it holds its soft capacity, also when every
    /// expiry it holds has expired since: scopes that are never used again
    /// do not pile up.
    #[test]
    fn a_full_ledger_of_expired_scopes_is_swept() {
        let cache = MemoryReplayCache::new(8).with_scope_limit(8);
        for i in 0..8i64 {
            let scope = i.to_be_bytes();
            assert!(
                cache
                    .check_and_insert(&scope, "nonce", at(NOW + 10), at(NOW))
                    .unwrap()
            );
        }
        for i in 0..100i64 {
            let scope = (1000 + i).to_be_bytes();
            let now = NOW + 20 + i;
            assert!(
                cache
                    .check_and_insert(&scope, "nonce", at(now + 1), at(now))
                    .unwrap()
            );
        }
        let scopes: usize = cache.ledgers.iter().map(|l| lock(l).scopes.len()).sum();
        assert!(scopes <= 9, "{scopes} scopes");
    }

    /// `total` counts the expiries held: those a scope releases itself are
    /// taken off, and a sweep recounts exactly what is left.
    #[test]
    fn the_ledger_counts_what_it_holds() {
        let mut ledger = Ledger::new(100);
        ledger.reserve(b"a", at(NOW + 1), at(NOW), 10).unwrap();
        ledger.reserve(b"a", at(NOW + 50), at(NOW), 10).unwrap();
        assert_eq!(ledger.total, 2);
        // The expired expiry of "a" is released when "a" reserves again.
        ledger.reserve(b"a", at(NOW + 60), at(NOW + 2), 10).unwrap();
        assert_eq!(ledger.total, 2);
        ledger.reserve(b"b", at(NOW + 5), at(NOW + 2), 10).unwrap();
        ledger.reserve(b"c", at(NOW + 40), at(NOW + 2), 10).unwrap();
        assert_eq!(ledger.total, 4);
        // At NOW + 5 the expiry of "b" has expired (an expiry is the first
        // instant it no longer counts): swept, with its scope.
        ledger.sweep(at(NOW + 5));
        assert_eq!((ledger.total, ledger.scopes.len()), (3, 2));
        assert_eq!(ledger.earliest, Some(at(NOW + 40)));
        ledger.sweep(at(NOW + 40));
        assert_eq!((ledger.total, ledger.scopes.len()), (2, 1));
        ledger.sweep(at(NOW + 60));
        assert_eq!(
            (ledger.total, ledger.scopes.len(), ledger.earliest),
            (0, 0, None)
        );
    }

    #[test]
    fn the_scope_ledger_does_not_grow_without_bound() {
        let cache = MemoryReplayCache::new(8).with_scope_limit(8);
        for i in 0..1000i64 {
            let scope = i.to_be_bytes();
            assert!(
                cache
                    .check_and_insert(&scope, "nonce", at(NOW + i + 1), at(NOW + i))
                    .unwrap()
            );
        }
        let ledgers: usize = cache.ledgers.iter().map(|l| lock(l).total).sum();
        let scopes: usize = cache.ledgers.iter().map(|l| lock(l).scopes.len()).sum();
        assert!(
            ledgers <= 8 && scopes <= 8,
            "{ledgers} expiries, {scopes} scopes"
        );
        cache.purge_expired(at(NOW + 2000));
        let scopes: usize = cache.ledgers.iter().map(|l| lock(l).scopes.len()).sum();
        assert_eq!((scopes, cache.len()), (0, 0));
    }

    #[test]
    fn a_shared_handle_is_the_same_cache() {
        let cache = Arc::new(MemoryReplayCache::new(8));
        let handle: Box<dyn ReplayCache> = Box::new(Arc::clone(&cache));
        assert!(
            handle
                .check_and_insert(b"k", "n", at(NOW + 1), at(NOW))
                .unwrap()
        );
        assert_eq!(cache.len(), 1);
        assert!(
            !cache
                .check_and_insert(b"k", "n", at(NOW + 1), at(NOW))
                .unwrap()
        );
    }

    #[test]
    fn a_later_instant_seen_anywhere_holds_in_every_shard() {
        // After the cache was asked about NOW + 500 (in whichever shard), a
        // check at NOW (a clock stepped back) is made at NOW + 500 in every
        // shard: deterministic, whatever shard a nonce hashes to.
        let cache = MemoryReplayCache::with_shards(4096, 16);
        assert!(
            cache
                .check_and_insert(b"k", "late", at(NOW + 800), at(NOW + 500))
                .unwrap()
        );
        for i in 0..64 {
            let nonce = format!("early-{i}");
            // Its window (NOW + 300) ended before the latest instant seen.
            assert!(
                !cache
                    .check_and_insert(b"k", &nonce, at(NOW + 300), at(NOW))
                    .unwrap(),
                "{nonce}"
            );
            // One that is still inside the window at NOW + 500 is fresh.
            assert!(
                cache
                    .check_and_insert(b"k2", &nonce, at(NOW + 600), at(NOW))
                    .unwrap(),
                "{nonce}"
            );
        }
    }

    #[test]
    fn the_horizon_rounds_up_to_the_microsecond() {
        let cache = MemoryReplayCache::new(8);
        let t =
            UtcDateTime::from_unix_timestamp_nanos(i128::from(NOW) * 1_000_000_000 + 1).unwrap();
        assert_eq!(cache.observe(t), t);
        // An earlier instant is checked at (at least) `t`, never before it.
        assert!(cache.observe(at(NOW)) >= t);
    }

    /// What a single-shard cache must answer, written plainly.
    #[derive(Default)]
    struct Model {
        entries: HashMap<(u8, u8), UtcDateTime>,
        latest: Option<UtcDateTime>,
    }

    impl Model {
        fn check(
            &mut self,
            scope: u8,
            nonce: u8,
            expires_at: UtcDateTime,
            now: UtcDateTime,
            capacity: usize,
            limit: usize,
        ) -> Result<bool, &'static str> {
            let now = self.latest.map_or(now, |l| l.max(now));
            self.latest = Some(now);
            let live = |e: &UtcDateTime| *e > now;
            let existing = self.entries.get(&(scope, nonce)).copied();
            if existing.as_ref().is_some_and(live) || expires_at <= now {
                return Ok(false);
            }
            if existing.is_none() && self.entries.len() >= capacity {
                // A full shard forgets its expired entries first.
                self.entries.retain(|_, e| live(e));
                if self.entries.len() >= capacity {
                    return Err("full");
                }
            }
            let mine = self
                .entries
                .iter()
                .filter(|((s, _), e)| *s == scope && live(e))
                .count();
            if mine >= limit {
                return Err("scope_full");
            }
            self.entries.insert((scope, nonce), expires_at);
            Ok(true)
        }
    }

    proptest::proptest! {
        /// The cache (one shard) answers like the model under any sequence of
        /// checks, clock moves (forwards and backwards) and purges.
        #[test]
        fn matches_the_model(
            capacity in 1usize..6,
            limit in 1usize..6,
            ops in proptest::collection::vec((0u8..4, 0u8..3, 0u8..4, 1i64..5, -2i64..4), 1..80),
        ) {
            let cache = MemoryReplayCache::with_shards(capacity, 1).with_scope_limit(limit);
            let limit = cache.scope_limit();
            let mut model = Model::default();
            let mut now = NOW;
            for (op, scope, nonce, ttl, step) in ops {
                now += step;
                if op == 0 {
                    cache.purge_expired(at(now));
                    let latest = model.latest.map_or(at(now), |l| l.max(at(now)));
                    model.latest = Some(latest);
                    model.entries.retain(|_, e| *e > latest);
                    continue;
                }
                let expires_at = at(now + ttl);
                let got = cache
                    .check_and_insert(&[scope], &format!("{nonce}"), expires_at, at(now))
                    .map_err(|e| match e {
                        ReplayCacheError::Full { .. } => "full",
                        ReplayCacheError::ScopeFull { .. } => "scope_full",
                        _ => "other",
                    });
                let want = model.check(scope, nonce, expires_at, at(now), capacity, limit);
                proptest::prop_assert_eq!(got, want);
            }
        }
    }
}
