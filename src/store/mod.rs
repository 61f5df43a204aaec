//! Pluggable persistence: [`KeyStore`] for stores that answer without
//! blocking, [`AsyncKeyStore`] for databases, and [`MemoryKeyStore`], the
//! embedded default that implements both.
//!
//! The operation set is small, and the operations that must be atomic are
//! atomic in the trait itself:
//!
//! * [`insert`](KeyStore::insert) refuses an id that exists
//!   ([`StoreErrorKind::Duplicate`]);
//! * [`update`](KeyStore::update) is a compare-and-swap on the record's
//!   version ([`StoreErrorKind::Conflict`]) and never changes a revoked
//!   record;
//! * [`apply_roll`](KeyStore::apply_roll) inserts the successor and cuts the
//!   predecessor's lifetime as one operation, also a compare-and-swap;
//! * a [`WriteCondition`] lets the one-active-key rule be checked in the
//!   same atomic step as the write;
//! * [`touch`](KeyStore::touch) only moves `last_used_at` forward and adds
//!   to `use_count` ([`Usage`]); it does not change the version.
//!
//! Every implementation should pass the conformance suite in
//! [`testing`](crate::testing) (feature `test-util`).
//!
//! Audit queries (every key page by page, keys expiring soon, keys nobody
//! uses) are an optional second capability: [`KeyAudit`] /
//! [`AsyncKeyAudit`], implemented by every store the crate ships.

mod audit;
pub(crate) mod memory;
#[cfg(any(feature = "postgres", feature = "sqlite", feature = "mysql"))]
mod sql;

pub use audit::{AsyncKeyAudit, KeyAudit, KeyFilter, KeyPage, UseRank};
pub use memory::MemoryKeyStore;
#[cfg(feature = "mysql")]
pub use sql::MySqlKeyStore;
#[cfg(feature = "sqlite")]
pub use sql::SqliteKeyStore;
#[cfg(feature = "postgres")]
pub use sql::{PgChangeListener, PostgresKeyStore};

use crate::error::{StoreError, StoreErrorKind};
use crate::lent::StoredRecord;
use crate::record::{KeyRecord, OwnerId};
use crate::token::KeyId;
use std::future::Future;
use std::sync::Arc;
use time::UtcDateTime;

/// An extra condition checked atomically with a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteCondition {
    /// No condition.
    Always,
    /// Refuse with [`StoreErrorKind::ActiveKeyExists`] if the owner has
    /// another key (not the one written) that is active and has not ended
    /// at `now` ([`KeyRecord::is_live_at`]). `created_at` is deliberately
    /// ignored: a key another server created a moment "later" by its clock
    /// must still count.
    NoOtherUsableKey {
        /// The instant of the operation.
        now: UtcDateTime,
    },
}

impl WriteCondition {
    /// Checks the condition for `written` against the owner's other records
    /// (a helper for store implementations).
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::ActiveKeyExists`] when the condition fails.
    pub fn check<'r>(
        &self,
        written: &KeyRecord,
        others: impl IntoIterator<Item = &'r KeyRecord>,
    ) -> Result<(), StoreError> {
        match *self {
            WriteCondition::Always => Ok(()),
            WriteCondition::NoOtherUsableKey { now } => {
                let clash = others
                    .into_iter()
                    .any(|r| r.id != written.id && r.owner == written.owner && r.is_live_at(now));
                if clash {
                    Err(StoreError::new(StoreErrorKind::ActiveKeyExists))
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// Accepted uses of one key, as one touch writes them: the latest instant
/// and how many uses it adds to the record's
/// [`use_count`](KeyRecord::use_count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// The latest use: `last_used_at` moves forward to it, never back.
    pub at: UtcDateTime,
    /// Uses to add to `use_count` (saturating at `u64::MAX`; at `i64::MAX`
    /// in the SQL stores, whose column is a `BIGINT`).
    pub uses: u64,
}

impl Usage {
    /// One use at `at`.
    #[must_use]
    pub const fn once(at: UtcDateTime) -> Self {
        Self { at, uses: 1 }
    }

    /// `self` and `other` as one: the later instant, the sum of the uses.
    #[must_use]
    pub fn merged(self, other: Usage) -> Self {
        Self {
            at: self.at.max(other.at),
            uses: self.uses.saturating_add(other.uses),
        }
    }

    /// Applies this usage to a record the way a store must: `last_used_at`
    /// only forward, `use_count` added to (a helper for store
    /// implementations).
    pub fn apply_to(self, record: &mut KeyRecord) {
        if record.last_used_at.is_none_or(|t| t < self.at) {
            record.last_used_at = Some(self.at);
        }
        record.use_count = record.use_count.saturating_add(self.uses);
    }

    /// A copy of `record` with this usage applied (what overlays of uses
    /// not yet written show).
    pub(crate) fn applied(self, record: &KeyRecord) -> Arc<KeyRecord> {
        let mut counted = record.clone();
        self.apply_to(&mut counted);
        Arc::new(counted)
    }
}

/// A roll, planned by the core and applied atomically by a store: the
/// successor is inserted and the predecessor replaced (its successor link
/// and grace end set, its version incremented) in one step, or neither.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollPlan {
    /// The predecessor as it must be stored after the roll.
    pub predecessor: KeyRecord,
    /// The predecessor's version the plan was made from.
    pub expected_version: u64,
    /// The new key.
    pub successor: KeyRecord,
}

/// Persistence for stores that answer without blocking (memory, a local
/// cache). `Send + Sync`, `&self` methods, dyn-compatible.
///
/// Contract (checked by the conformance suite):
///
/// * `insert`: fails with `Duplicate` if the id exists; checks `condition`.
/// * `get`: the latest committed record; a change that returned is visible
///   to every later `get` (linearizable).
/// * `list_by_owner`: every record of the owner, any order.
/// * `update`: replaces the record if the stored version equals
///   `expected_version` and the stored status is not revoked, else
///   `Conflict`; `NotFound` if absent; checks `condition`; keeps the later
///   of the stored and the new `last_used_at`, and the **stored**
///   `use_count` (only touches change it: a record read with uses not yet
///   written, then updated, must not count them twice).
/// * `apply_roll`: as `update` for the predecessor plus `insert` for the
///   successor, all or nothing.
/// * `touch`: sets `last_used_at` to the usage's instant if later than the
///   stored value and adds its uses to `use_count` ([`Usage::apply_to`]);
///   no version change; `NotFound` if absent.
///
/// Instants must round-trip with at least microsecond precision, and every
/// field of [`KeyRecord`] must come back exactly as written: the
/// conformance suite compares records field by field.
///
/// # Example: a complete implementation
///
/// It passes the conformance suite (feature `test-util`).
///
/// ```
/// use api_keys::{KeyId, KeyRecord, KeyStatus, KeyStore, OwnerId, RollPlan, StoreError,
///                StoreErrorKind, Usage, WriteCondition};
/// use std::{collections::HashMap, sync::{Arc, Mutex}};
///
/// /// The simplest correct store: one mutex around a map.
/// #[derive(Default)]
/// struct MutexStore(Mutex<HashMap<KeyId, Arc<KeyRecord>>>);
///
/// impl MutexStore {
///     fn map(&self) -> std::sync::MutexGuard<'_, HashMap<KeyId, Arc<KeyRecord>>> {
///         self.0.lock().unwrap_or_else(|e| e.into_inner())
///     }
/// }
///
/// fn replace(map: &mut HashMap<KeyId, Arc<KeyRecord>>, new: &KeyRecord, expected: u64)
///     -> Result<(), StoreError>
/// {
///     let old = map.get(&new.id).ok_or(StoreError::new(StoreErrorKind::NotFound))?;
///     if old.version != expected || old.status == KeyStatus::Revoked {
///         return Err(StoreError::new(StoreErrorKind::Conflict));
///     }
///     let mut new = new.clone();
///     new.last_used_at = new.last_used_at.max(old.last_used_at);
///     new.use_count = old.use_count;
///     map.insert(new.id, Arc::new(new));
///     Ok(())
/// }
///
/// impl KeyStore for MutexStore {
///     fn insert(&self, record: &KeyRecord, condition: WriteCondition) -> Result<(), StoreError> {
///         let mut map = self.map();
///         if map.contains_key(&record.id) {
///             return Err(StoreError::new(StoreErrorKind::Duplicate));
///         }
///         condition.check(record, map.values().map(|r| &**r))?;
///         map.insert(record.id, Arc::new(record.clone()));
///         Ok(())
///     }
///     fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
///         Ok(self.map().get(id).cloned())
///     }
///     fn list_by_owner(&self, owner: &OwnerId) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
///         Ok(self.map().values().filter(|r| &r.owner == owner).cloned().collect())
///     }
///     fn update(&self, record: &KeyRecord, expected_version: u64, condition: WriteCondition)
///         -> Result<(), StoreError>
///     {
///         let mut map = self.map();
///         condition.check(record, map.values().map(|r| &**r))?;
///         replace(&mut map, record, expected_version)
///     }
///     fn apply_roll(&self, plan: &RollPlan) -> Result<(), StoreError> {
///         let mut map = self.map();
///         if map.contains_key(&plan.successor.id) {
///             return Err(StoreError::new(StoreErrorKind::Duplicate));
///         }
///         replace(&mut map, &plan.predecessor, plan.expected_version)?;
///         map.insert(plan.successor.id, Arc::new(plan.successor.clone()));
///         Ok(())
///     }
///     fn touch(&self, id: &KeyId, usage: Usage) -> Result<(), StoreError> {
///         let mut map = self.map();
///         let rec = map.get_mut(id).ok_or(StoreError::new(StoreErrorKind::NotFound))?;
///         usage.apply_to(Arc::make_mut(rec));
///         Ok(())
///     }
/// }
///
/// fn main() -> Result<(), api_keys::testing::ConformanceError> {
///     api_keys::testing::run_conformance(&MutexStore::default())?;
///     Ok(())
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a synchronous key store (`KeyStore`)",
    label = "a sync `KeyManager` method needs a `KeyStore`",
    note = "SQL stores are async: call the `*_async` methods of KeyManager (`verify_async`, `create_async`, …)"
)]
pub trait KeyStore: Send + Sync {
    /// Inserts a new record.
    ///
    /// # Errors
    ///
    /// `Duplicate` if the id exists, `ActiveKeyExists` if `condition` fails,
    /// `Backend` on failure.
    fn insert(&self, record: &KeyRecord, condition: WriteCondition) -> Result<(), StoreError>;

    /// The record with this id, if any.
    ///
    /// # Errors
    ///
    /// `Backend` on failure (never "not found": that is `Ok(None)`).
    fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError>;

    /// Every record of an owner.
    ///
    /// # Errors
    ///
    /// `Backend` on failure.
    fn list_by_owner(&self, owner: &OwnerId) -> Result<Vec<Arc<KeyRecord>>, StoreError>;

    /// Compare-and-swap replace.
    ///
    /// # Errors
    ///
    /// `NotFound`, `Conflict` (version differs or stored record revoked),
    /// `ActiveKeyExists`, `Backend`.
    fn update(
        &self,
        record: &KeyRecord,
        expected_version: u64,
        condition: WriteCondition,
    ) -> Result<(), StoreError>;

    /// Applies a roll atomically.
    ///
    /// # Errors
    ///
    /// As `update` for the predecessor, `Duplicate` for the successor.
    fn apply_roll(&self, plan: &RollPlan) -> Result<(), StoreError>;

    /// Records uses: moves `last_used_at` forward and adds to `use_count`
    /// ([`Usage::apply_to`]), without changing the version.
    ///
    /// # Errors
    ///
    /// `NotFound`, `Backend`.
    fn touch(&self, id: &KeyId, usage: Usage) -> Result<(), StoreError>;

    /// Records uses of many keys: each pair as [`touch`](Self::touch),
    /// except that an id the store does not hold is skipped (a batch is not
    /// refused for one key). The default loops over `touch`; a database
    /// store should override it with one atomic statement or transaction
    /// per batch (what [`WriteBehindStore`](crate::WriteBehindStore) and
    /// [`KeyManager::flush_usage`](crate::KeyManager::flush_usage) call).
    ///
    /// # Errors
    ///
    /// `Backend`. With the default loop some pairs may have been written
    /// when it fails; the caller puts the whole batch back, so their uses
    /// may be counted twice (the SQL stores write a batch in one
    /// transaction: all or nothing).
    fn touch_many(&self, touches: &[(KeyId, Usage)]) -> Result<(), StoreError> {
        for (id, usage) in touches {
            match self.touch(id, *usage) {
                Err(e) if e.kind() != StoreErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// The record with this id, for a verification: what
    /// [`KeyManager::verify`](crate::KeyManager::verify) reads. The default
    /// wraps [`get`](Self::get); a store that keeps records in another form
    /// (the [`MemoryKeyStore`]'s compact layout) lends that form instead of
    /// building a [`KeyRecord`]. Same contract as `get`.
    ///
    /// # Errors
    ///
    /// `Backend` on failure (never "not found": that is `Ok(None)`).
    fn get_for_verify(&self, id: &KeyId) -> Result<Option<StoredRecord>, StoreError> {
        Ok(self.get(id)?.map(StoredRecord::from))
    }
}

/// The same operations as [`KeyStore`] for stores that do I/O. Implementors
/// write `async fn`; the futures are `Send`, so generic middleware can spawn
/// them. There is deliberately no blanket implementation from `KeyStore`: a
/// store chooses which it is (or, like [`MemoryKeyStore`], both).
///
/// The contract is [`KeyStore`]'s, method for method.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an asynchronous key store (`AsyncKeyStore`)",
    label = "a `*_async` `KeyManager` method needs an `AsyncKeyStore`",
    note = "a store that only implements `KeyStore` is used through the sync methods (`verify`, `create`, …); `MemoryKeyStore` implements both"
)]
pub trait AsyncKeyStore: Send + Sync {
    /// See [`KeyStore::insert`].
    fn insert(
        &self,
        record: &KeyRecord,
        condition: WriteCondition,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// See [`KeyStore::get`].
    fn get(
        &self,
        id: &KeyId,
    ) -> impl Future<Output = Result<Option<Arc<KeyRecord>>, StoreError>> + Send;
    /// See [`KeyStore::list_by_owner`].
    fn list_by_owner(
        &self,
        owner: &OwnerId,
    ) -> impl Future<Output = Result<Vec<Arc<KeyRecord>>, StoreError>> + Send;
    /// See [`KeyStore::update`].
    fn update(
        &self,
        record: &KeyRecord,
        expected_version: u64,
        condition: WriteCondition,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// See [`KeyStore::apply_roll`].
    fn apply_roll(&self, plan: &RollPlan) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// See [`KeyStore::touch`].
    fn touch(
        &self,
        id: &KeyId,
        usage: Usage,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// See [`KeyStore::touch_many`]; the default awaits `touch` for each
    /// pair in turn.
    fn touch_many(
        &self,
        touches: &[(KeyId, Usage)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move {
            for (id, usage) in touches {
                match self.touch(id, *usage).await {
                    Err(e) if e.kind() != StoreErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            Ok(())
        }
    }

    /// See [`KeyStore::get_for_verify`]; the default wraps
    /// [`get`](Self::get).
    fn get_for_verify(
        &self,
        id: &KeyId,
    ) -> impl Future<Output = Result<Option<StoredRecord>, StoreError>> + Send {
        let get = self.get(id);
        async move { Ok(get.await?.map(StoredRecord::from)) }
    }
}

impl<T: KeyStore + ?Sized> KeyStore for Arc<T> {
    fn insert(&self, record: &KeyRecord, condition: WriteCondition) -> Result<(), StoreError> {
        (**self).insert(record, condition)
    }
    fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        (**self).get(id)
    }
    fn list_by_owner(&self, owner: &OwnerId) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        (**self).list_by_owner(owner)
    }
    fn update(
        &self,
        record: &KeyRecord,
        expected_version: u64,
        condition: WriteCondition,
    ) -> Result<(), StoreError> {
        (**self).update(record, expected_version, condition)
    }
    fn apply_roll(&self, plan: &RollPlan) -> Result<(), StoreError> {
        (**self).apply_roll(plan)
    }
    fn touch(&self, id: &KeyId, usage: Usage) -> Result<(), StoreError> {
        (**self).touch(id, usage)
    }
    fn touch_many(&self, touches: &[(KeyId, Usage)]) -> Result<(), StoreError> {
        (**self).touch_many(touches)
    }

    fn get_for_verify(&self, id: &KeyId) -> Result<Option<StoredRecord>, StoreError> {
        (**self).get_for_verify(id)
    }
}

impl<T: AsyncKeyStore + ?Sized> AsyncKeyStore for Arc<T> {
    fn insert(
        &self,
        record: &KeyRecord,
        condition: WriteCondition,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).insert(record, condition)
    }
    fn get(
        &self,
        id: &KeyId,
    ) -> impl Future<Output = Result<Option<Arc<KeyRecord>>, StoreError>> + Send {
        (**self).get(id)
    }
    fn list_by_owner(
        &self,
        owner: &OwnerId,
    ) -> impl Future<Output = Result<Vec<Arc<KeyRecord>>, StoreError>> + Send {
        (**self).list_by_owner(owner)
    }
    fn update(
        &self,
        record: &KeyRecord,
        expected_version: u64,
        condition: WriteCondition,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).update(record, expected_version, condition)
    }
    fn apply_roll(&self, plan: &RollPlan) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).apply_roll(plan)
    }
    fn touch(
        &self,
        id: &KeyId,
        usage: Usage,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).touch(id, usage)
    }
    fn touch_many(
        &self,
        touches: &[(KeyId, Usage)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).touch_many(touches)
    }

    fn get_for_verify(
        &self,
        id: &KeyId,
    ) -> impl Future<Output = Result<Option<StoredRecord>, StoreError>> + Send {
        (**self).get_for_verify(id)
    }
}

/// Runs a synchronous store through the async code path: every future is
/// ready at once. Private, so the one-implementation drivers serve both the
/// sync and the async API without a public blanket impl.
pub(crate) struct Ready<'a, S: ?Sized>(pub(crate) &'a S);

impl<S: KeyStore + ?Sized> AsyncKeyStore for Ready<'_, S> {
    fn insert(
        &self,
        record: &KeyRecord,
        condition: WriteCondition,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        core::future::ready(self.0.insert(record, condition))
    }
    fn get(
        &self,
        id: &KeyId,
    ) -> impl Future<Output = Result<Option<Arc<KeyRecord>>, StoreError>> + Send {
        core::future::ready(self.0.get(id))
    }
    fn list_by_owner(
        &self,
        owner: &OwnerId,
    ) -> impl Future<Output = Result<Vec<Arc<KeyRecord>>, StoreError>> + Send {
        core::future::ready(self.0.list_by_owner(owner))
    }
    fn update(
        &self,
        record: &KeyRecord,
        expected_version: u64,
        condition: WriteCondition,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        core::future::ready(self.0.update(record, expected_version, condition))
    }
    fn apply_roll(&self, plan: &RollPlan) -> impl Future<Output = Result<(), StoreError>> + Send {
        core::future::ready(self.0.apply_roll(plan))
    }
    fn touch(
        &self,
        id: &KeyId,
        usage: Usage,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        core::future::ready(self.0.touch(id, usage))
    }
    fn touch_many(
        &self,
        touches: &[(KeyId, Usage)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        core::future::ready(self.0.touch_many(touches))
    }

    fn get_for_verify(
        &self,
        id: &KeyId,
    ) -> impl Future<Output = Result<Option<StoredRecord>, StoreError>> + Send {
        core::future::ready(self.0.get_for_verify(id))
    }
}

/// Polls a future once with a no-op waker: used for futures built only from
/// [`Ready`] stores, which complete on the first poll.
pub(crate) fn complete_now<F: Future>(fut: F) -> Option<F::Output> {
    let mut fut = core::pin::pin!(fut);
    let mut cx = core::task::Context::from_waker(core::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        core::task::Poll::Ready(v) => Some(v),
        core::task::Poll::Pending => None,
    }
}
