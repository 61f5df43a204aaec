//! The change feed: every management write (create, activate, deactivate,
//! revoke, update, roll) is numbered, so a cache on another server can
//! learn which keys changed and evict them. Touches (`last_used_at`) are
//! not changes.
//!
//! A feed must never skip a change: a follower reads `seq > last_seen` and
//! moves `last_seen` forward, so a number handed out earlier but committed
//! later would be missed for good. Implementations hand out numbers in
//! commit order (the SQL stores take the next number from a single counter
//! row as the last statement of the write's transaction, so the row lock
//! orders commits and a rolled-back write returns its number). The
//! follower in [`cache`](crate::cache) checks that the numbers it reads are
//! contiguous anyway and stops serving from the cache while a gap is open.

use crate::error::StoreError;
use crate::token::KeyId;
use std::future::Future;

/// One committed change to one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// The change number: 1, 2, 3, … in commit order, without gaps.
    pub seq: u64,
    /// The key that changed (its record must be read again).
    pub key_id: KeyId,
}

/// What [`ChangeFeed::changes_since`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChangePage {
    /// Changes with `seq > after`, ascending, at most `limit` of them.
    pub changes: Vec<Change>,
    /// The feed no longer holds changes numbered up to this (they were
    /// pruned); 0 if none were. When it is above the `after` a follower
    /// asked for, changes the follower never saw are gone: it must drop
    /// everything it cached.
    pub pruned_through: u64,
}

impl ChangePage {
    /// A page.
    #[must_use]
    pub fn new(changes: Vec<Change>, pruned_through: u64) -> Self {
        Self {
            changes,
            pruned_through,
        }
    }
}

/// A numbered log of the keys changed by management writes, which a
/// verification cache follows ([`FeedFollower`](crate::cache::FeedFollower),
/// feature `cache`). [`MemoryKeyStore`](crate::MemoryKeyStore) and the SQL
/// stores implement it.
///
/// Contract:
///
/// * every committed management write to a key (insert, update, roll: both
///   keys) appears as a [`Change`] for that key, with a number above every
///   change committed before it;
/// * numbers are contiguous: a reader that has seen every number up to `n`
///   and reads `seq > n` can never later find a number `≤ n` it did not see
///   (numbers are visible in order, and a write that fails takes none);
/// * a change is visible in `changes_since` no later than its write is
///   visible to `get`.
pub trait ChangeFeed: Send + Sync {
    /// The number of the latest committed change (0 when there is none).
    ///
    /// # Errors
    ///
    /// `Backend` when the feed cannot be read.
    fn head(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// The changes numbered above `after`, ascending, at most `limit`.
    ///
    /// # Errors
    ///
    /// `Backend` when the feed cannot be read.
    fn changes_since(
        &self,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<ChangePage, StoreError>> + Send;
}

impl<T: ChangeFeed + ?Sized> ChangeFeed for std::sync::Arc<T> {
    fn head(&self) -> impl Future<Output = Result<u64, StoreError>> + Send {
        (**self).head()
    }
    fn changes_since(
        &self,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<ChangePage, StoreError>> + Send {
        (**self).changes_since(after, limit)
    }
}

/// Wake-ups for a feed follower (PostgreSQL's `LISTEN`/`NOTIFY`): a hint
/// that there may be new changes, so the follower reads the feed at once
/// instead of at its next poll. A hint only: it may fire when nothing
/// changed, and it may miss changes (a dropped connection loses
/// notifications) — the follower's polling still holds the bound.
pub trait ChangeNotifications: Send {
    /// Resolves at the next notification.
    ///
    /// # Errors
    ///
    /// `Backend` when the notification channel failed; the follower
    /// carries on polling and calls this again after its next poll.
    fn changed(&mut self) -> impl Future<Output = Result<(), StoreError>> + Send;
}
