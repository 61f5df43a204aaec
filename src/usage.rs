//! The manager's usage tally: accepted uses per key, counted in memory on
//! the request and written later, with `last_used_at`, in one touch per key
//! (Mindee's "usage is tracked").
//!
//! Counting is a lock of one of [`SHARDS`] small maps and an add; it never
//! waits for a store. The uses leave the tally when the key's
//! `last_used_at` write is due (at most once per
//! [`Policy::touch_interval`](crate::Policy::touch_interval)) or when the
//! host flushes ([`KeyManager::flush_usage`](crate::KeyManager::flush_usage)),
//! and go back into it when that write fails.

use crate::id_hash::IdHash;
use crate::store::Usage;
use crate::token::KeyId;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Shards of the tally: enough that two cores rarely meet on one lock.
const SHARDS: usize = 64;

/// Keys per `touch_many` call of a flush.
pub(crate) const FLUSH_BATCH: usize = 1_000;

/// Only keys that passed verification enter: ids the crate generated.
type Shard = HashMap<KeyId, Usage, IdHash>;

/// Uses counted and not yet written, per key.
pub(crate) struct UsageTally {
    shards: Box<[Mutex<Shard>]>,
}

impl Default for UsageTally {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl UsageTally {
    fn shard(&self, id: &KeyId) -> Option<MutexGuard<'_, Shard>> {
        // The second word picks the shard; the map hashes the first.
        let i = (id.word(true) as usize) % SHARDS;
        self.shards
            .get(i)
            .map(|m| m.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Counts `usage` for `id` (merged with what is pending).
    pub(crate) fn add(&self, id: KeyId, usage: Usage) {
        if let Some(mut shard) = self.shard(&id) {
            match shard.get_mut(&id) {
                Some(u) => *u = u.merged(usage),
                None => {
                    shard.insert(id, usage);
                }
            }
        }
    }

    /// Takes what is pending for `id`.
    pub(crate) fn take(&self, id: &KeyId) -> Option<Usage> {
        self.shard(id).and_then(|mut shard| shard.remove(id))
    }

    /// What is pending for `id`, left in place.
    pub(crate) fn peek(&self, id: &KeyId) -> Option<Usage> {
        self.shard(id).and_then(|shard| shard.get(id).copied())
    }

    /// Takes everything pending.
    pub(crate) fn drain(&self) -> Vec<(KeyId, Usage)> {
        let mut all = Vec::new();
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            all.extend(shard.drain());
        }
        all
    }

    /// Puts back uses whose write failed.
    pub(crate) fn put_back(&self, batch: &[(KeyId, Usage)]) {
        for (id, usage) in batch {
            self.add(*id, *usage);
        }
    }

    /// How many keys have uses pending.
    pub(crate) fn pending(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::utc_datetime;

    #[test]
    fn uses_merge_per_key_and_leave_once() {
        let tally = UsageTally::default();
        let a = KeyId::from_bytes([1; 16]);
        let b = KeyId::from_bytes([2; 16]);
        let t1 = utc_datetime!(2026-01-01 00:00);
        let t2 = utc_datetime!(2026-01-01 00:01);
        tally.add(a, Usage::once(t2));
        tally.add(a, Usage::once(t1));
        tally.add(b, Usage { at: t1, uses: 5 });
        assert_eq!(tally.pending(), 2);
        assert_eq!(tally.peek(&a), Some(Usage { at: t2, uses: 2 }));
        assert_eq!(tally.take(&a), Some(Usage { at: t2, uses: 2 }));
        assert_eq!(tally.take(&a), None);
        let all = tally.drain();
        assert_eq!(all, vec![(b, Usage { at: t1, uses: 5 })]);
        assert_eq!(tally.pending(), 0);
        tally.put_back(&all);
        tally.put_back(&all);
        assert_eq!(tally.peek(&b), Some(Usage { at: t1, uses: 10 }));
    }
}
