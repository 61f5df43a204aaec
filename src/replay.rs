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
//! # Failing closed
//!
//! A cache that cannot remember a nonce must not accept the request: when
//! [`MemoryReplayCache`] is full of entries that have not expired yet it returns
//! [`ReplayCacheError::Full`] instead of forgetting an entry, and the verifier refuses the
//! request. Size the capacity for the peak number of signed requests per tolerance
//! window (twice the tolerance, since the window is symmetric).

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, MutexGuard, PoisonError};

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
    /// may be forgotten and the same nonce counts as fresh again. `now` is the instant the
    /// verifier used for the request (the clock is read once per request, by the caller).
    ///
    /// # Errors
    ///
    /// [`ReplayCacheError`] when the nonce cannot be checked or recorded: the cache is
    /// full of unexpired entries, or its backend failed. The verifier then refuses the
    /// request (fails closed).
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
/// Memory per entry is roughly the scope plus the nonce plus about 60 bytes of
/// bookkeeping. It is local to one process: several verifying processes need a shared
/// implementation of [`ReplayCache`].
pub struct MemoryReplayCache {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    capacity: usize,
}

impl MemoryReplayCache {
    /// Capacity of [`MemoryReplayCache::default`]: 100 000 nonces, enough for about
    /// 160 signed requests per second with the default 300-second tolerance.
    pub const DEFAULT_CAPACITY: usize = 100_000;

    /// Largest number of shards used by [`MemoryReplayCache::new`].
    pub const DEFAULT_SHARDS: usize = 16;

    /// Smallest shard capacity [`MemoryReplayCache::new`] aims for, so that a shard
    /// does not fill up long before the whole cache does.
    pub const MIN_SHARD_CAPACITY: usize = 1024;

    /// A cache holding at most `capacity` unexpired nonces.
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
    /// as evenly as possible: the shards' capacities add up to exactly `capacity`.
    #[must_use]
    pub fn with_shards(capacity: usize, shards: usize) -> Self {
        let count = shards.clamp(1, capacity.max(1));
        let base = capacity / count;
        let extra = capacity % count;
        let shards = (0..count)
            .map(|i| Mutex::new(Shard::new(base + usize::from(i < extra))))
            .collect();
        Self {
            shards,
            hasher: RandomState::new(),
            capacity,
        }
    }

    /// The total number of nonces the cache can hold.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.capacity
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
        self.shards.iter().map(|shard| lock(shard).purge(now)).sum()
    }

    fn shard_for(&self, entry: &[u8]) -> Option<&Mutex<Shard>> {
        let count = u64::try_from(self.shards.len()).ok()?;
        let hash = self.hasher.hash_one(entry);
        let index = usize::try_from(hash.checked_rem(count)?).ok()?;
        self.shards.get(index)
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
        let entry = entry_key(scope, nonce);
        let shard = self.shard_for(&entry).ok_or(ReplayCacheError::Full {
            capacity: self.capacity,
        })?;
        lock(shard).check_and_insert(entry, expires_at, now)
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
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Shard {
    entries: HashMap<Box<[u8]>, UtcDateTime>,
    capacity: usize,
    /// The earliest expiry among `entries` (or earlier): no entry can be purged before.
    earliest: Option<UtcDateTime>,
}

impl Shard {
    fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity,
            earliest: None,
        }
    }

    fn check_and_insert(
        &mut self,
        entry: Box<[u8]>,
        expires_at: UtcDateTime,
        now: UtcDateTime,
    ) -> Result<bool, ReplayCacheError> {
        match self.entries.get_mut(&entry) {
            Some(expiry) if *expiry > now => return Ok(false),
            Some(expiry) => *expiry = expires_at,
            None => {
                if self.entries.len() >= self.capacity {
                    self.purge(now);
                    if self.entries.len() >= self.capacity {
                        return Err(ReplayCacheError::Full {
                            capacity: self.capacity,
                        });
                    }
                }
                self.entries.insert(entry, expires_at);
            }
        }
        self.earliest = Some(self.earliest.map_or(expires_at, |e| e.min(expires_at)));
        Ok(true)
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
        let cache = MemoryReplayCache::with_shards(2, 1);
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
        assert_eq!(cache.purge_expired(at(NOW + 4)), 0);
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
}
