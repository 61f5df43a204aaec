//! Audit queries: every key page by page, keys about to expire, keys
//! nobody uses, the most and least used keys. An optional capability of a
//! store ([`KeyAudit`], [`AsyncKeyAudit`]), offered to operators through
//! [`KeyManager::list_all`](crate::KeyManager::list_all),
//! [`expiring_before`](crate::KeyManager::expiring_before),
//! [`unused_since`](crate::KeyManager::unused_since),
//! [`most_used`](crate::KeyManager::most_used) and
//! [`least_used`](crate::KeyManager::least_used).

use crate::error::StoreError;
use crate::record::{KeyRecord, KeyStatus, OwnerId};
use crate::token::KeyId;
use std::future::Future;
use std::sync::Arc;
use time::UtcDateTime;

/// Which records an audit scan returns. Every scan is in ascending key-id
/// order (see [`KeyAudit::scan`]).
///
/// `#[non_exhaustive]`: a store written against this version can still
/// answer a filter added later with [`matches`](Self::matches), which is the
/// definition of every filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyFilter {
    /// Every record, revoked ones included.
    All,
    /// Records that are not revoked and whose `expires_at` is set and
    /// strictly before the instant: the keys whose owners should be warned
    /// (already expired ones included; compare `expires_at` with now to
    /// tell them apart).
    ExpiringBefore(UtcDateTime),
    /// Records that are not revoked, were created before the instant, and
    /// have not been used since it: never used, or `last_used_at` strictly
    /// before it. The stale keys an operator may want to revoke; a key
    /// created after the instant is not stale, however unused.
    UnusedSince(UtcDateTime),
}

impl KeyFilter {
    /// Whether `record` passes the filter: the definition every store
    /// implements (SQL stores in their `WHERE` clauses).
    #[must_use]
    pub fn matches(&self, record: &KeyRecord) -> bool {
        self.matches_parts(
            record.status,
            record.created_at,
            record.expires_at,
            record.last_used_at,
        )
    }

    /// [`matches`](Self::matches) on the fields it reads (for stores that
    /// keep records in another form).
    pub(crate) fn matches_parts(
        &self,
        status: KeyStatus,
        created_at: UtcDateTime,
        expires_at: Option<UtcDateTime>,
        last_used_at: Option<UtcDateTime>,
    ) -> bool {
        match *self {
            KeyFilter::All => true,
            KeyFilter::ExpiringBefore(before) => {
                status != KeyStatus::Revoked && expires_at.is_some_and(|end| end < before)
            }
            KeyFilter::UnusedSince(since) => {
                status != KeyStatus::Revoked
                    && created_at < since
                    && last_used_at.is_none_or(|used| used < since)
            }
        }
    }
}

/// Which end of the usage ranking
/// ([`KeyAudit::ranked_by_use`]): keys that are not revoked, by
/// [`use_count`](KeyRecord::use_count), ties in ascending key-id order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UseRank {
    /// Highest `use_count` first.
    MostUsed,
    /// Lowest `use_count` first (never-used and pending keys included).
    LeastUsed,
}

impl UseRank {
    /// Whether `a` comes before `b` in this ranking (the order every store
    /// implements; SQL stores in their `ORDER BY`).
    #[must_use]
    pub fn order(self, a: &KeyRecord, b: &KeyRecord) -> core::cmp::Ordering {
        let by_use = match self {
            UseRank::MostUsed => b.use_count.cmp(&a.use_count),
            UseRank::LeastUsed => a.use_count.cmp(&b.use_count),
        };
        by_use.then(a.id.cmp(&b.id))
    }
}

/// Scan pages a default ranking reads at a time.
const RANK_PAGE: usize = 1_000;

/// The best `limit` records seen so far, in ranking order.
struct Ranking<'a> {
    rank: UseRank,
    owner: Option<&'a OwnerId>,
    limit: usize,
    kept: Vec<Arc<KeyRecord>>,
    after: Option<KeyId>,
}

impl<'a> Ranking<'a> {
    fn new(rank: UseRank, owner: Option<&'a OwnerId>, limit: usize) -> Self {
        Self {
            rank,
            owner,
            limit,
            kept: Vec::new(),
            after: None,
        }
    }

    fn trim(&mut self) {
        let rank = self.rank;
        self.kept.sort_by(|a, b| rank.order(a, b));
        self.kept.truncate(self.limit);
    }

    /// Takes one scan page; `Ok(true)` when the scan is over (an empty
    /// page: a store may answer fewer records than asked for). A page that
    /// does not move past the cursor is refused (a store that ignores it
    /// would loop forever).
    fn offer(&mut self, page: Vec<Arc<KeyRecord>>) -> Result<bool, StoreError> {
        let over = page.is_empty();
        for record in page {
            if self.after.is_some_and(|a| record.id <= a) {
                return Err(StoreError::backend(
                    "the store's audit scan is not in ascending id order after the cursor",
                ));
            }
            self.after = Some(record.id);
            if record.status != KeyStatus::Revoked && self.owner.is_none_or(|o| *o == record.owner)
            {
                self.kept.push(record);
            }
        }
        if self.kept.len() >= self.limit.saturating_mul(2).max(RANK_PAGE) {
            self.trim();
        }
        Ok(over)
    }

    fn finish(mut self) -> Vec<Arc<KeyRecord>> {
        self.trim();
        self.kept
    }
}

/// The default ranking: every page of a scan of all records, the best
/// `limit` kept (one loop for the sync and the async trait).
async fn rank_by_scanning<F, Fut>(
    mut scan: F,
    rank: UseRank,
    owner: Option<&OwnerId>,
    limit: usize,
) -> Result<Vec<Arc<KeyRecord>>, StoreError>
where
    F: FnMut(Option<KeyId>) -> Fut,
    Fut: Future<Output = Result<Vec<Arc<KeyRecord>>, StoreError>>,
{
    let mut ranking = Ranking::new(rank, owner, limit);
    loop {
        let page = scan(ranking.after).await?;
        if ranking.offer(page)? {
            return Ok(ranking.finish());
        }
    }
}

/// One page of an audit scan, from
/// [`KeyManager::list_all`](crate::KeyManager::list_all) and its siblings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyPage {
    /// The records, in ascending key-id order.
    pub keys: Vec<Arc<KeyRecord>>,
    /// The cursor of the next page: the id of the last record of this
    /// page, or `None` when there are no more records. Pass it back as
    /// `after`.
    pub next: Option<KeyId>,
}

/// Audit queries on a synchronous store. Optional: a host store that
/// implements it gets [`KeyManager::list_all`](crate::KeyManager::list_all),
/// [`expiring_before`](crate::KeyManager::expiring_before) and
/// [`unused_since`](crate::KeyManager::unused_since).
///
/// ```
/// use api_keys::{KeyAudit, KeyFilter, KeyId, KeyRecord, StoreError};
/// use std::sync::{Arc, Mutex};
///
/// /// A store over a sorted map answers a scan with a range.
/// struct Sorted(Mutex<std::collections::BTreeMap<KeyId, Arc<KeyRecord>>>);
///
/// impl KeyAudit for Sorted {
///     fn scan(&self, filter: KeyFilter, after: Option<&KeyId>, limit: usize)
///         -> Result<Vec<Arc<KeyRecord>>, StoreError>
///     {
///         let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
///         let from = after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
///         Ok(map
///             .range((from, std::ops::Bound::Unbounded))
///             .map(|(_, r)| r)
///             .filter(|r| filter.matches(r))
///             .take(limit)
///             .cloned()
///             .collect())
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not answer synchronous audit queries (`KeyAudit`)",
    note = "SQL stores are async: call the `*_async` methods of KeyManager (`list_all_async`, …); a host store implements `KeyAudit::scan`"
)]
pub trait KeyAudit: Send + Sync {
    /// Up to `limit` records that pass `filter` and whose id is greater
    /// than `after` (all of them when `after` is `None`), in ascending
    /// key-id order (the byte order of [`KeyId::as_bytes`], which is also
    /// `KeyId`'s `Ord`).
    ///
    /// The order is stable: ids never change, so paging with the last id
    /// of each page as the next `after` visits every record that existed
    /// for the whole scan exactly once. A record created during the scan
    /// may or may not be seen. Records are as `get` would return them.
    ///
    /// # Errors
    ///
    /// `Backend` on failure.
    fn scan(
        &self,
        filter: KeyFilter,
        after: Option<&KeyId>,
        limit: usize,
    ) -> Result<Vec<Arc<KeyRecord>>, StoreError>;

    /// Up to `limit` records that are not revoked (of `owner` only, when
    /// given), ranked by `use_count` ([`UseRank::order`]). The default reads
    /// every record with [`scan`](Self::scan), a page at a time, keeping
    /// at most a few pages in memory; the SQL stores answer with one
    /// ordered query.
    ///
    /// # Errors
    ///
    /// `Backend` on failure, or when the scan does not advance.
    fn ranked_by_use(
        &self,
        rank: UseRank,
        owner: Option<&OwnerId>,
        limit: usize,
    ) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        let scan = |after: Option<KeyId>| {
            core::future::ready(self.scan(KeyFilter::All, after.as_ref(), RANK_PAGE))
        };
        super::complete_now(rank_by_scanning(scan, rank, owner, limit))
            .unwrap_or_else(|| Err(StoreError::backend("a synchronous scan did not complete")))
    }
}

/// [`KeyAudit`] for stores that do I/O; the same contract.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not answer asynchronous audit queries (`AsyncKeyAudit`)",
    note = "a store that only implements `KeyAudit` is queried through the sync methods (`list_all`, …); a host store implements `AsyncKeyAudit::scan`"
)]
pub trait AsyncKeyAudit: Send + Sync {
    /// See [`KeyAudit::scan`].
    fn scan(
        &self,
        filter: KeyFilter,
        after: Option<&KeyId>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Arc<KeyRecord>>, StoreError>> + Send;

    /// See [`KeyAudit::ranked_by_use`]; the same default over `scan`.
    fn ranked_by_use(
        &self,
        rank: UseRank,
        owner: Option<&OwnerId>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Arc<KeyRecord>>, StoreError>> + Send {
        let scan = move |after: Option<KeyId>| async move {
            self.scan(KeyFilter::All, after.as_ref(), RANK_PAGE).await
        };
        rank_by_scanning(scan, rank, owner, limit)
    }
}

impl<T: KeyAudit + ?Sized> KeyAudit for Arc<T> {
    fn scan(
        &self,
        filter: KeyFilter,
        after: Option<&KeyId>,
        limit: usize,
    ) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        (**self).scan(filter, after, limit)
    }
    fn ranked_by_use(
        &self,
        rank: UseRank,
        owner: Option<&OwnerId>,
        limit: usize,
    ) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        (**self).ranked_by_use(rank, owner, limit)
    }
}

impl<T: AsyncKeyAudit + ?Sized> AsyncKeyAudit for Arc<T> {
    fn scan(
        &self,
        filter: KeyFilter,
        after: Option<&KeyId>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Arc<KeyRecord>>, StoreError>> + Send {
        (**self).scan(filter, after, limit)
    }
    fn ranked_by_use(
        &self,
        rank: UseRank,
        owner: Option<&OwnerId>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Arc<KeyRecord>>, StoreError>> + Send {
        (**self).ranked_by_use(rank, owner, limit)
    }
}

impl<S: KeyAudit + ?Sized> AsyncKeyAudit for super::Ready<'_, S> {
    fn scan(
        &self,
        filter: KeyFilter,
        after: Option<&KeyId>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Arc<KeyRecord>>, StoreError>> + Send {
        core::future::ready(self.0.scan(filter, after, limit))
    }
    fn ranked_by_use(
        &self,
        rank: UseRank,
        owner: Option<&OwnerId>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Arc<KeyRecord>>, StoreError>> + Send {
        core::future::ready(self.0.ranked_by_use(rank, owner, limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lent::sample_record;
    use time::Duration;

    fn record(n: u8) -> KeyRecord {
        sample_record(KeyId::from_bytes([n; 16]))
    }

    #[test]
    fn each_filter_is_its_definition() {
        let base = record(1);
        let t = base.created_at;
        let soon = t + Duration::days(10);
        let mut expiring = record(2);
        expiring.expires_at = Some(t + Duration::days(5));
        let mut revoked = expiring.clone();
        revoked.status = KeyStatus::Revoked;
        let mut used = record(3);
        used.last_used_at = Some(t + Duration::days(3));
        let mut young = record(4);
        young.created_at = t + Duration::days(20);

        let since = t + Duration::days(2);
        let cases = [
            (KeyFilter::All, &base, true),
            (KeyFilter::All, &revoked, true),
            (KeyFilter::ExpiringBefore(soon), &expiring, true),
            (KeyFilter::ExpiringBefore(soon), &base, false),
            (KeyFilter::ExpiringBefore(soon), &revoked, false),
            (
                KeyFilter::ExpiringBefore(t + Duration::days(5)),
                &expiring,
                false,
            ),
            (KeyFilter::UnusedSince(since), &base, true),
            (KeyFilter::UnusedSince(since), &used, false),
            (KeyFilter::UnusedSince(t + Duration::days(4)), &used, true),
            (KeyFilter::UnusedSince(since), &young, false),
            (KeyFilter::UnusedSince(since), &revoked, false),
        ];
        for (filter, r, want) in cases {
            assert_eq!(filter.matches(r), want, "{filter:?} on {:?}", r.id);
        }
    }
}
