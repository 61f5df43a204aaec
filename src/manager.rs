//! [`KeyManager`]: the operations users call. Each is a thin driver: read
//! the clock once, call the store, call the pure [`Engine`].
//!
//! Every operation is written once, as an `async fn` over an
//! [`AsyncKeyStore`]. The `*_async` methods run it over the host's async
//! store; the synchronous methods run the very same code over the sync
//! [`KeyStore`] through a private adapter whose futures are always ready, so
//! the two APIs cannot drift apart.

use crate::clock::{Clock, SystemClock};
use crate::engine::{DEFAULT_KEY_NAME, Engine, KeyUpdate, NewKey, RollOptions, Transition};
use crate::environment::Environment;
use crate::error::{ConfigError, Error, Rejection, StoreError, StoreErrorKind, VerifyError};
use crate::events::{EventKind, EventSink, KeyEvent};
use crate::hash::Pepper;
use crate::ip::IpAllowList;
use crate::lent::Held;
use crate::policy::Policy;
use crate::record::{Actor, KeyRecord, OwnerId};
use crate::replay::{MemoryReplayCache, ReplayCache};
use crate::request::{Decision, RequestContext, VerifiedKey};
use crate::sealing::SealingKeyRing;
use crate::secret::Token;
use crate::signed::{SignedRequest, SigningKeyCache};
use crate::store::{
    AsyncKeyAudit, AsyncKeyStore, KeyAudit, KeyFilter, KeyPage, KeyStore, Ready, Usage, UseRank,
    WriteCondition, complete_now,
};
use crate::token::{KeyFormat, KeyId};
use crate::usage::{FLUSH_BATCH, UsageTally};
use rand::TryCryptoRng;
use std::future::Future;
use std::sync::Arc;
use time::UtcDateTime;

/// How many times a status change re-reads and retries after losing a
/// compare-and-swap race.
const CAS_ATTEMPTS: usize = 16;

/// The largest page an audit query returns; a larger `limit` is clamped.
pub const MAX_PAGE_SIZE: usize = 1000;

/// A key just created: the record as stored, and the token — the only time
/// the secret leaves the crate.
#[derive(Debug)]
#[non_exhaustive]
pub struct CreatedKey {
    /// The stored record.
    pub record: KeyRecord,
    /// The secret token: show it once.
    pub token: Token,
}

/// The result of a roll: both records as stored and the successor's token.
#[derive(Debug)]
#[non_exhaustive]
pub struct RolledKey {
    /// The old key, now limited to its grace window: its
    /// [`grace_ends_at`](crate::KeyRecord#structfield.grace_ends_at) is the end actually
    /// applied (the requested grace capped at
    /// [`Policy::max_grace`](crate::Policy::max_grace) and at the key's own
    /// expiry).
    pub predecessor: KeyRecord,
    /// The new key.
    pub successor: KeyRecord,
    /// The successor's token: show it once.
    pub token: Token,
}

/// Issues, manages and verifies keys over a store.
///
/// Sync methods need `S: KeyStore`; `*_async` methods need
/// `S: AsyncKeyStore`. [`MemoryKeyStore`](crate::MemoryKeyStore) is both.
pub struct KeyManager<S> {
    store: S,
    engine: Engine,
    clock: Arc<dyn Clock>,
    events: Option<Arc<dyn EventSink>>,
    replay: Arc<dyn ReplayCache>,
    signing_keys: SigningKeyCache,
    usage: UsageTally,
}

impl<S> core::fmt::Debug for KeyManager<S> {
    /// A summary: the token prefixes, the policy's main settings, the
    /// clock, and whether peppers, sealing keys and an event sink are
    /// configured. Never key material.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let format = self.engine.format();
        let policy = self.engine.policy();
        f.debug_struct("KeyManager")
            .field(
                "prefixes",
                &format_args!(
                    "{}/{}",
                    format.prefix(crate::KeyKind::Secret),
                    format.prefix(crate::KeyKind::Publishable)
                ),
            )
            .field("default_grace", &format_args!("{}", policy.default_grace))
            .field("one_active_key_per_owner", &policy.one_active_key_per_owner)
            .field("replay_protected", &policy.signatures.replay.is_some())
            .field("clock", &self.clock)
            .field("pepper_version", &self.engine.pepper_version())
            .field(
                "sealing_key_version",
                &self.engine.sealing().map(SealingKeyRing::current_version),
            )
            .field("events", &self.events.is_some())
            .finish_non_exhaustive()
    }
}

/// Builder for [`KeyManager`]. Every setting has a documented default.
pub struct KeyManagerBuilder<S> {
    store: S,
    format: KeyFormat,
    policy: Policy,
    clock: Arc<dyn Clock>,
    pepper: Option<Pepper>,
    previous_peppers: Vec<Pepper>,
    sealing: Option<SealingKeyRing>,
    events: Option<Arc<dyn EventSink>>,
    replay: Option<Arc<dyn ReplayCache>>,
}

impl<S> core::fmt::Debug for KeyManagerBuilder<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KeyManagerBuilder")
            .field("format", &self.format)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl<S> KeyManagerBuilder<S> {
    /// The token format (default: `sk`/`pk`, 32-byte secrets).
    #[must_use]
    pub fn format(mut self, format: KeyFormat) -> Self {
        self.format = format;
        self
    }

    /// The policy (default: [`Policy::default`]).
    #[must_use]
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// The clock (default: [`SystemClock`]). In tests pass an
    /// `Arc<ManualClock>` (feature `test-util`) and keep a clone to move
    /// time: `.clock(Arc::clone(&clock))`.
    #[must_use]
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// A shared clock.
    #[must_use]
    pub fn shared_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Hash new keys with HMAC-SHA256 under this pepper (default: plain
    /// SHA-256).
    #[must_use]
    pub fn pepper(mut self, pepper: Pepper) -> Self {
        self.pepper = Some(pepper);
        self
    }

    /// An older pepper still accepted for keys hashed under it.
    #[must_use]
    pub fn previous_pepper(mut self, pepper: Pepper) -> Self {
        self.previous_peppers.push(pepper);
        self
    }

    /// Sealing keys for signing keys (default: none; creating a signing key
    /// then fails with [`Error::NoSealingKeys`]).
    #[must_use]
    pub fn sealing_keys(mut self, ring: SealingKeyRing) -> Self {
        self.sealing = Some(ring);
        self
    }

    /// Receives an event after every change and on notable uses.
    #[must_use]
    pub fn events(mut self, sink: impl EventSink + 'static) -> Self {
        self.events = Some(Arc::new(sink));
        self
    }

    /// Where the replay-protected signing mode records nonces (default: a
    /// [`MemoryReplayCache`], which only protects one process: servers that
    /// share keys need a shared cache). Pass an `Arc` of the cache to keep a
    /// handle on it (to purge it, or read its size).
    #[must_use]
    pub fn replay_cache(mut self, cache: impl ReplayCache + 'static) -> Self {
        self.replay = Some(Arc::new(cache));
        self
    }

    /// Validates the configuration.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for an out-of-range policy or clashing pepper
    /// versions.
    pub fn build(self) -> Result<KeyManager<S>, ConfigError> {
        let engine = Engine::new(
            self.format,
            self.policy,
            self.pepper.as_ref(),
            &self.previous_peppers,
            self.sealing,
        )?;
        Ok(KeyManager {
            store: self.store,
            engine,
            clock: self.clock,
            events: self.events,
            replay: self
                .replay
                .unwrap_or_else(|| Arc::new(MemoryReplayCache::default())),
            signing_keys: SigningKeyCache::default(),
            usage: UsageTally::default(),
        })
    }
}

impl<S> KeyManager<S> {
    /// A manager with every default (`sk`/`pk` keys, 12-hour grace, system
    /// clock, no pepper, no sealing keys).
    #[must_use]
    pub fn new(store: S) -> Self {
        Self {
            store,
            engine: Engine::defaults(),
            clock: Arc::new(SystemClock),
            events: None,
            replay: Arc::new(MemoryReplayCache::default()),
            signing_keys: SigningKeyCache::default(),
            usage: UsageTally::default(),
        }
    }

    /// Starts a builder.
    #[must_use]
    pub fn builder(store: S) -> KeyManagerBuilder<S> {
        KeyManagerBuilder {
            store,
            format: KeyFormat::default(),
            policy: Policy::default(),
            clock: Arc::new(SystemClock),
            pepper: None,
            previous_peppers: Vec::new(),
            sealing: None,
            events: None,
            replay: None,
        }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The pure core (format, policy, hashing).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The largest signed body this manager accepts (the policy's
    /// `signatures.max_body_len`): size your body buffer with it.
    pub fn max_signed_body_len(&self) -> usize {
        self.engine.policy().signatures.max_body_len
    }

    /// The clock reading this manager would use now.
    pub fn now(&self) -> UtcDateTime {
        self.clock.now()
    }

    fn emit(
        &self,
        kind: EventKind,
        record: &KeyRecord,
        actor: Option<&Actor>,
        at: UtcDateTime,
        related: Option<KeyId>,
    ) {
        if let Some(sink) = &self.events {
            sink.on_event(&KeyEvent {
                kind,
                key_id: record.id,
                owner: &record.owner,
                actor,
                at,
                related,
            });
        }
    }

    /// [`emit`](Self::emit) for a verification's record (no actor; the
    /// related key is its successor).
    fn emit_view(&self, kind: EventKind, record: &Held, at: UtcDateTime) {
        if let Some(sink) = &self.events {
            sink.on_event(&KeyEvent {
                kind,
                key_id: record.view().id(),
                owner: record.view().owner(),
                actor: None,
                at,
                related: record.view().successor(),
            });
        }
    }

    fn exclusive(&self, now: UtcDateTime) -> WriteCondition {
        if self.engine.policy().one_active_key_per_owner {
            WriteCondition::NoOtherUsableKey { now }
        } else {
            WriteCondition::Always
        }
    }

    // ---- the one implementation of each operation -------------------------

    async fn create_in<A, R>(
        &self,
        store: &A,
        actor: &Actor,
        spec: NewKey,
        rng: &mut R,
    ) -> Result<CreatedKey, Error>
    where
        A: AsyncKeyStore + ?Sized,
        R: TryCryptoRng + Send + ?Sized,
    {
        let now = self.clock.now();
        let (record, token) = self.engine.plan_create(&spec, now, rng)?;
        let condition = if spec.active {
            self.exclusive(now)
        } else {
            WriteCondition::Always
        };
        self.insert_new(store, actor, &record, condition, now)
            .await?;
        Ok(CreatedKey { record, token })
    }

    /// Inserts a new key under `condition` and reports it created.
    async fn insert_new<A: AsyncKeyStore + ?Sized>(
        &self,
        store: &A,
        actor: &Actor,
        record: &KeyRecord,
        condition: WriteCondition,
        now: UtcDateTime,
    ) -> Result<(), Error> {
        store
            .insert(record, condition)
            .await
            .map_err(|e| map_write(e, record.id))?;
        self.emit(EventKind::Created, record, Some(actor), now, None);
        Ok(())
    }

    async fn create_pending_in<A, R>(
        &self,
        store: &A,
        actor: &Actor,
        spec: NewKey,
        rng: &mut R,
    ) -> Result<KeyRecord, Error>
    where
        A: AsyncKeyStore + ?Sized,
        R: TryCryptoRng + Send + ?Sized,
    {
        let now = self.clock.now();
        let record = self.engine.plan_pending(&spec, now, rng)?;
        // A pending key is not live: no one-active-key condition.
        self.insert_new(store, actor, &record, WriteCondition::Always, now)
            .await?;
        Ok(record)
    }

    async fn activate_pending_in<A, R>(
        &self,
        store: &A,
        actor: &Actor,
        id: &KeyId,
        allowed_ips: Option<IpAllowList>,
        rng: &mut R,
    ) -> Result<CreatedKey, Error>
    where
        A: AsyncKeyStore + ?Sized,
        R: TryCryptoRng + Send + ?Sized,
    {
        let now = self.clock.now();
        for _ in 0..CAS_ATTEMPTS {
            let current = self.get_in(store, id).await?;
            let (next, token) =
                self.engine
                    .plan_first_activation(&current, allowed_ips.as_ref(), now, rng)?;
            // The token is dropped (and wiped) unless this write commits; a
            // retry re-reads the key, which is no longer pending if the
            // write did commit, so no second secret is ever minted for it.
            let write = store
                .update(&next, current.version, self.exclusive(now))
                .await;
            if committed(write, id)? {
                self.emit(EventKind::Activated, &next, Some(actor), now, None);
                return Ok(CreatedKey {
                    record: next,
                    token,
                });
            }
        }
        Err(Error::Conflict(*id))
    }

    /// The record with the uses this manager has counted and not yet
    /// written added (what `get` and `list` show).
    fn with_pending_uses(&self, record: Arc<KeyRecord>) -> Arc<KeyRecord> {
        match self.usage.peek(&record.id) {
            Some(usage) => usage.applied(&record),
            None => record,
        }
    }

    async fn read_in<A: AsyncKeyStore + ?Sized>(
        &self,
        store: &A,
        id: &KeyId,
    ) -> Result<Arc<KeyRecord>, Error> {
        Ok(self.with_pending_uses(self.get_in(store, id).await?))
    }

    async fn listed_in<A: AsyncKeyStore + ?Sized>(
        &self,
        store: &A,
        owner: &OwnerId,
    ) -> Result<Vec<Arc<KeyRecord>>, Error> {
        let keys = self.list_in(store, owner).await?;
        Ok(keys
            .into_iter()
            .map(|r| self.with_pending_uses(r))
            .collect())
    }

    /// Writes every use counted and not yet written, in batches; a batch
    /// that fails goes back into the tally (with the rest), to be written
    /// by a later flush or touch.
    async fn flush_usage_in<A: AsyncKeyStore + ?Sized>(&self, store: &A) -> Result<usize, Error> {
        let pending = self.usage.drain();
        let mut written = 0;
        let mut chunks = pending.chunks(FLUSH_BATCH);
        while let Some(chunk) = chunks.next() {
            if let Err(e) = store.touch_many(chunk).await {
                self.usage.put_back(chunk);
                for rest in chunks {
                    self.usage.put_back(rest);
                }
                return Err(Error::Store(e));
            }
            written += chunk.len();
        }
        Ok(written)
    }

    async fn rank_in<A: AsyncKeyStore + AsyncKeyAudit + ?Sized>(
        &self,
        store: &A,
        rank: UseRank,
        owner: Option<&OwnerId>,
        limit: usize,
    ) -> Result<Vec<Arc<KeyRecord>>, Error> {
        // Best effort, as for the scans.
        let _kept_for_later = self.flush_usage_in(store).await;
        let limit = limit.clamp(1, MAX_PAGE_SIZE);
        let keys = store.ranked_by_use(rank, owner, limit).await?;
        // A store that ignores the order, the filter or the limit would
        // mislead an operator: refuse its answer.
        let ordered = keys
            .windows(2)
            .all(|w| matches!(w, [a, b] if rank.order(a, b).is_lt()));
        let filtered = keys.iter().all(|r| {
            r.status != crate::record::KeyStatus::Revoked && owner.is_none_or(|o| *o == r.owner)
        });
        if !ordered || !filtered || keys.len() > limit {
            return Err(Error::Store(StoreError::backend(
                "the store's usage ranking is not in order, filtered or limited",
            )));
        }
        Ok(keys)
    }

    async fn get_in<A: AsyncKeyStore + ?Sized>(
        &self,
        store: &A,
        id: &KeyId,
    ) -> Result<Arc<KeyRecord>, Error> {
        let record = store.get(id).await?.ok_or(Error::NotFound(*id))?;
        // A store answering with another key's record is broken; acting on
        // that record would change or roll the wrong key.
        if record.id != *id {
            return Err(Error::Store(StoreError::backend(
                "the store returned a record with another key id",
            )));
        }
        Ok(record)
    }

    async fn list_in<A: AsyncKeyStore + ?Sized>(
        &self,
        store: &A,
        owner: &OwnerId,
    ) -> Result<Vec<Arc<KeyRecord>>, Error> {
        let mut keys = store.list_by_owner(owner).await?;
        keys.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(keys)
    }

    /// One page of an audit scan: asks the store for one record more than
    /// the page holds, so `next` is `None` exactly when the scan is over.
    async fn scan_in<A: AsyncKeyStore + AsyncKeyAudit + ?Sized>(
        &self,
        store: &A,
        filter: KeyFilter,
        after: Option<KeyId>,
        limit: usize,
    ) -> Result<KeyPage, Error> {
        // The uses counted here first, so `last_used_at` and `use_count`
        // are as exact as the store can make them. Best effort: a store
        // that cannot take writes (a read-only replica) still answers, and
        // the uses stay in the tally.
        let _kept_for_later = self.flush_usage_in(store).await;
        let limit = limit.clamp(1, MAX_PAGE_SIZE);
        let mut keys = store.scan(filter, after.as_ref(), limit + 1).await?;
        // A store that ignores the cursor, the order or the limit would make
        // a caller loop forever or skip keys: refuse its answer.
        let ordered = keys.windows(2).all(|w| matches!(w, [a, b] if a.id < b.id));
        let past_cursor = after.is_none_or(|a| keys.first().is_none_or(|r| r.id > a));
        if !ordered || !past_cursor || keys.len() > limit + 1 {
            return Err(Error::Store(StoreError::backend(
                "the store's audit scan is not in ascending id order after the cursor",
            )));
        }
        let next = if keys.len() > limit {
            keys.truncate(limit);
            keys.last().map(|r| r.id)
        } else {
            None
        };
        Ok(KeyPage { keys, next })
    }

    async fn transition_in<A: AsyncKeyStore + ?Sized>(
        &self,
        store: &A,
        actor: &Actor,
        id: &KeyId,
        transition: Transition,
    ) -> Result<KeyRecord, Error> {
        let now = self.clock.now();
        let condition = match transition {
            Transition::Activate => self.exclusive(now),
            Transition::Deactivate | Transition::Revoke => WriteCondition::Always,
        };
        for _ in 0..CAS_ATTEMPTS {
            let current = self.get_in(store, id).await?;
            let Some(next) = self.engine.plan_transition(&current, transition, now)? else {
                if transition != Transition::Deactivate {
                    return Ok((*current).clone());
                }
                // Already inactive by this read: confirm it with a
                // compare-and-swap, so a stale read can never turn the
                // deactivation of a compromised key into a silent no-op.
                let mut same = (*current).clone();
                same.version = current.version.checked_add(1).ok_or(Error::Conflict(*id))?;
                if committed(store.update(&same, current.version, condition).await, id)? {
                    return Ok(same);
                }
                continue;
            };
            if committed(store.update(&next, current.version, condition).await, id)? {
                let kind = match transition {
                    Transition::Activate => EventKind::Activated,
                    Transition::Deactivate => EventKind::Deactivated,
                    Transition::Revoke => EventKind::Revoked,
                };
                self.emit(kind, &next, Some(actor), now, None);
                return Ok(next);
            }
        }
        Err(Error::Conflict(*id))
    }

    async fn update_in<A: AsyncKeyStore + ?Sized>(
        &self,
        store: &A,
        actor: &Actor,
        id: &KeyId,
        expected_version: u64,
        update: &KeyUpdate,
    ) -> Result<KeyRecord, Error> {
        let now = self.clock.now();
        let current = self.get_in(store, id).await?;
        if current.version != expected_version {
            // Nothing changes a revoked key: say so rather than "retry".
            if current.status == crate::record::KeyStatus::Revoked {
                return Err(Error::Revoked(*id));
            }
            return Err(Error::Conflict(*id));
        }
        let next = self.engine.plan_update(&current, update, now)?;
        // Extending an active key's expiry keeps it usable longer: under the
        // one-active-key rule it is checked like an activation, atomically
        // with the write, so a key that ends while this update is in flight
        // (and whose replacement another server creates meanwhile) is not
        // revived next to it. A key without an end cannot end in flight.
        let extends = match (current.expires_at, next.expires_at) {
            (Some(old), Some(new)) => new > old,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let condition = if extends
            && next.status == crate::record::KeyStatus::Active
            && current.effective_end().is_some()
        {
            self.exclusive(now)
        } else {
            WriteCondition::Always
        };
        store
            .update(&next, expected_version, condition)
            .await
            .map_err(|e| map_write(e, *id))?;
        self.emit(EventKind::Updated, &next, Some(actor), now, None);
        Ok(next)
    }

    async fn roll_in<A, R>(
        &self,
        store: &A,
        actor: &Actor,
        id: &KeyId,
        options: RollOptions,
        rng: &mut R,
    ) -> Result<RolledKey, Error>
    where
        A: AsyncKeyStore + ?Sized,
        R: TryCryptoRng + Send + ?Sized,
    {
        let now = self.clock.now();
        let current = self.get_in(store, id).await?;
        let (plan, token) = self.engine.plan_roll(&current, options, now, rng)?;
        // The token is returned only once the store committed the roll.
        store
            .apply_roll(&plan)
            .await
            .map_err(|e| map_write(e, *id))?;
        self.emit(
            EventKind::Rolled,
            &plan.predecessor,
            Some(actor),
            now,
            Some(plan.successor.id),
        );
        self.emit(EventKind::Created, &plan.successor, Some(actor), now, None);
        Ok(RolledKey {
            predecessor: plan.predecessor,
            successor: plan.successor,
            token,
        })
    }

    async fn verify_in<A: AsyncKeyStore + ?Sized>(
        &self,
        store: &A,
        token: &str,
        request: &RequestContext<'_>,
    ) -> Result<VerifiedKey, VerifyError> {
        // Offline checks first: a malformed token costs no clock read.
        let presented = self.engine.precheck(token, request)?;
        let now = self.clock.now();
        let record = store
            .get_for_verify(&presented.id())
            .await?
            .ok_or(Rejection::UnknownKey)?;
        let outcome = self
            .engine
            .decide_bearer_stored(&presented, &record, request, now);
        self.conclude(store, record.0, outcome, now, false).await
    }

    async fn check_key_in<A: AsyncKeyStore + ?Sized>(
        &self,
        store: &A,
        id: &KeyId,
        request: &RequestContext<'_>,
    ) -> Result<VerifiedKey, VerifyError> {
        let record = store
            .get_for_verify(id)
            .await?
            .ok_or(Rejection::UnknownKey)?;
        let now = self.clock.now();
        // A store answer for another id is refused like an unknown key.
        let outcome = if record.id() == *id {
            self.engine
                .check_request_stored(&record, request, now)
                .map_err(VerifyError::from)
        } else {
            Err(Rejection::UnknownKey.into())
        };
        self.conclude(store, record.0, outcome, now, false).await
    }

    async fn verify_signed_in<A: AsyncKeyStore + ?Sized>(
        &self,
        store: &A,
        request: &SignedRequest<'_>,
        context: &RequestContext<'_>,
    ) -> Result<VerifiedKey, VerifyError> {
        let id = self.engine.precheck_signed(request)?;
        let record = store.get(&id).await?.ok_or(Rejection::UnknownKey)?;
        // Read after the lookup: the replay window and the replay cache are
        // checked at this instant, so an entry purged while the lookup was
        // in flight cannot let a captured request through again.
        let now = self.clock.now();
        if record.id != id {
            return Err(Rejection::UnknownKey.into());
        }
        let key = self.signing_keys.get_or_prepare(&self.engine, &record)?;
        let outcome =
            self.engine
                .decide_signed(&record, &key, request, context, now, self.replay.as_ref());
        self.conclude(store, Held::Full(record), outcome, now, true)
            .await
    }

    async fn reseal_in<A: AsyncKeyStore + ?Sized>(
        &self,
        store: &A,
        actor: &Actor,
        id: &KeyId,
    ) -> Result<KeyRecord, Error> {
        let now = self.clock.now();
        let ring = self.engine.sealing().ok_or(Error::NoSealingKeys)?;
        for _ in 0..CAS_ATTEMPTS {
            let current = self.get_in(store, id).await?;
            let Some(sealed) = current.sealed_secret.as_ref() else {
                return Ok((*current).clone());
            };
            if !ring.needs_reseal(sealed) {
                return Ok((*current).clone());
            }
            if current.status == crate::record::KeyStatus::Revoked {
                return Err(Error::Revoked(*id));
            }
            let mut next = (*current).clone();
            next.sealed_secret = Some(ring.reseal(id.as_bytes(), sealed)?);
            next.version = current.version.checked_add(1).ok_or(Error::Conflict(*id))?;
            let write = store
                .update(&next, current.version, WriteCondition::Always)
                .await;
            if committed(write, id)? {
                self.signing_keys.forget(id);
                self.emit(EventKind::Updated, &next, Some(actor), now, None);
                return Ok(next);
            }
        }
        Err(Error::Conflict(*id))
    }

    async fn needing_reseal_in<A: AsyncKeyStore + ?Sized>(
        &self,
        store: &A,
        owner: &OwnerId,
    ) -> Result<Vec<KeyId>, Error> {
        let ring = self.engine.sealing().ok_or(Error::NoSealingKeys)?;
        Ok(self
            .list_in(store, owner)
            .await?
            .iter()
            .filter(|r| {
                r.status != crate::record::KeyStatus::Revoked
                    && r.sealed_secret
                        .as_ref()
                        .is_some_and(|s| ring.needs_reseal(s))
            })
            .map(|r| r.id)
            .collect())
    }

    /// The side effects of a decision that need no store, after every
    /// check that can refuse: an accepted request reports use during grace,
    /// a refusal for expiry reports it, and an accepted use is counted.
    /// Returns the outcome and, when `last_used_at` is due, the uses to
    /// write with it (the caller writes them with [`store_uses`]; a failed
    /// write never changes the outcome). A refused request counts nothing
    /// and writes nothing.
    ///
    /// [`store_uses`]: Self::store_uses
    fn settle(
        &self,
        record: Held,
        outcome: Result<Decision, VerifyError>,
        now: UtcDateTime,
        signed: bool,
    ) -> (Result<VerifiedKey, VerifyError>, Option<Usage>) {
        match outcome {
            Ok(decision) => {
                if decision.in_grace {
                    self.emit_view(EventKind::UsedDuringGrace, &record, now);
                }
                let id = record.view().id();
                let due = if decision.touch {
                    let this = Usage::once(now);
                    Some(self.usage.take(&id).map_or(this, |u| u.merged(this)))
                } else {
                    self.usage.add(id, Usage::once(now));
                    None
                };
                (Ok(VerifiedKey::new(record, decision, signed)), due)
            }
            Err(e) => {
                if matches!(
                    e.rejection(),
                    Some(Rejection::Expired | Rejection::GraceEnded)
                ) {
                    self.emit_view(EventKind::ExpiredOnUse, &record, now);
                }
                (Err(e), None)
            }
        }
    }

    /// After a failed write of due uses: they go back into the tally.
    fn store_uses(&self, id: KeyId, usage: Usage, written: Result<(), StoreError>) {
        if written.is_err() {
            self.usage.add(id, usage);
        }
    }

    /// [`settle`](Self::settle), then the last-used write.
    async fn conclude<A: AsyncKeyStore + ?Sized>(
        &self,
        store: &A,
        record: Held,
        outcome: Result<Decision, VerifyError>,
        now: UtcDateTime,
        signed: bool,
    ) -> Result<VerifiedKey, VerifyError> {
        let id = record.view().id();
        let (result, due) = self.settle(record, outcome, now, signed);
        if let Some(usage) = due {
            self.store_uses(id, usage, store.touch(&id, usage).await);
        }
        result
    }
}

/// The outcome of one compare-and-swap attempt in a retry loop: `true`
/// committed, `false` lost the race (re-read and retry), or the error.
fn committed(write: Result<(), StoreError>, id: &KeyId) -> Result<bool, Error> {
    match write {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == StoreErrorKind::Conflict => Ok(false),
        Err(e) => Err(map_write(e, *id)),
    }
}

/// Maps a store error of a write to the management error a caller acts on.
fn map_write(e: StoreError, id: KeyId) -> Error {
    match e.kind() {
        StoreErrorKind::Conflict => Error::Conflict(id),
        StoreErrorKind::NotFound => Error::NotFound(id),
        StoreErrorKind::ActiveKeyExists => Error::AnotherKeyActive,
        _ => Error::Store(e),
    }
}

/// Runs an operation built over a [`Ready`] store to completion.
fn sync<T, E: From<Error>>(out: Option<Result<T, E>>) -> Result<T, E> {
    out.unwrap_or_else(|| Err(Error::Incomplete.into()))
}

macro_rules! both {
    (
        $(#[$doc:meta])*
        fn $name:ident / $async_name:ident
            ($($arg:ident : $ty:ty),*) -> $out:ty => $impl:ident($($call:expr),*);
    ) => {
        both! {
            where [KeyStore] / [AsyncKeyStore];
            $(#[$doc])*
            fn $name / $async_name ($($arg : $ty),*) -> $out => $impl($($call),*);
        }
    };
    (
        where [$($sync:tt)+] / [$($async:tt)+];
        $(#[$doc:meta])*
        fn $name:ident / $async_name:ident
            ($($arg:ident : $ty:ty),*) -> $out:ty => $impl:ident($($call:expr),*);
    ) => {
        // Bounds on the methods, not the impl blocks: a call on the wrong
        // kind of store then reports the traits' `on_unimplemented` notes.
        impl<S> KeyManager<S> {
            $(#[$doc])*
            pub fn $name(&self, $($arg: $ty),*) -> $out
            where
                S: $($sync)+,
            {
                sync(complete_now(self.$impl(&Ready(&self.store), $($call),*)))
            }

            $(#[$doc])*
            ///
            #[doc = concat!("(Asynchronous variant, for stores implementing `", stringify!($($async)+), "`.)")]
            pub async fn $async_name(&self, $($arg: $ty),*) -> $out
            where
                S: $($async)+,
            {
                self.$impl(&self.store, $($call),*).await
            }
        }
    };
}

both! {
    /// Creates a key and returns it with its token, shown this once.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] (blank name, expiry in the past, publishable key
    /// with a non-publishable scope, …), [`Error::AnotherKeyActive`] under
    /// the one-active-key rule, [`Error::NoSealingKeys`] for a signing key
    /// without sealing keys, [`Error::Randomness`], [`Error::Store`].
    /// Nothing is stored on error.
    fn create / create_async(actor: &Actor, spec: NewKey) -> Result<CreatedKey, Error>
        => create_in(actor, spec, &mut rand::rngs::SysRng);
}

both! {
    /// Generates a **pending** key (CoinsPaid: "generate, then activate"):
    /// `spec`'s settings and a public id, but no secret yet, so nothing can
    /// leak or verify before the owner activates it. It is listed like any
    /// key (status [`Pending`](crate::KeyStatus::Pending), redacted form
    /// `sk_live_…`). Its first activation,
    /// [`activate_pending`](Self::activate_pending), mints the secret and
    /// returns the token, once. `spec`'s active flag is ignored.
    ///
    /// ```
    /// use api_keys::{Actor, IpAllowList, KeyManager, KeyStatus, MemoryKeyStore, NewKey, OwnerId,
    ///                RequestContext};
    /// let keys = KeyManager::new(MemoryKeyStore::new());
    /// let merchant = OwnerId::new("merchant_1")?;
    /// let pending = keys.create_pending(&Actor::system(), NewKey::secret(merchant.clone(), "shop"))?;
    /// assert_eq!(pending.status, KeyStatus::Pending);
    /// assert_eq!(keys.list(&merchant)?.len(), 1); // listed, no secret anywhere
    ///
    /// // Later: the first activation, with the IP list, reveals the secret once.
    /// let ips = IpAllowList::parse("203.0.113.7")?;
    /// let active = keys.activate_pending(&Actor::system(), &pending.id, Some(ips))?;
    /// let peer = "203.0.113.7".parse()?;
    /// assert!(keys.verify(active.token.expose_secret(), &RequestContext::new().peer_ip(peer)).is_ok());
    /// // Never again:
    /// assert!(keys.activate_pending(&Actor::system(), &pending.id, None).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`], [`Error::NoSealingKeys`] for a signing key
    /// without sealing keys, [`Error::Randomness`], [`Error::Store`].
    /// Nothing is stored on error.
    fn create_pending / create_pending_async(actor: &Actor, spec: NewKey) -> Result<KeyRecord, Error>
        => create_pending_in(actor, spec, &mut rand::rngs::SysRng);
}

both! {
    /// The first activation of a [pending](Self::create_pending) key: mints
    /// its secret from the OS CSPRNG (sealed for a signing key), stores the
    /// hash, makes it active and, when `allowed_ips` is given, sets its IP
    /// allow-list, in one compare-and-swap write checked against the
    /// one-active-key rule. Returns the token, shown this once: a later
    /// call never returns a secret again ([`Error::SecretAlreadyRevealed`]),
    /// also when the earlier call's answer was lost after its write
    /// committed. A failed write returns no token. Later activations of the
    /// key (after a deactivation) are [`activate`](Self::activate).
    ///
    /// # Errors
    ///
    /// [`Error::SecretAlreadyRevealed`], [`Error::Revoked`],
    /// [`Error::InvalidState`] for an expired key,
    /// [`Error::AnotherKeyActive`] under the one-active-key rule,
    /// [`Error::NoSealingKeys`], [`Error::Randomness`], [`Error::Conflict`]
    /// when concurrent changes kept winning, [`Error::NotFound`],
    /// [`Error::Store`].
    fn activate_pending / activate_pending_async(actor: &Actor, id: &KeyId, allowed_ips: Option<IpAllowList>)
        -> Result<CreatedKey, Error>
        => activate_pending_in(actor, id, allowed_ips, &mut rand::rngs::SysRng);
}

both! {
    /// Writes the accepted uses this manager has counted and not written
    /// yet ([`KeyRecord::use_count`], `last_used_at`), in batches of 1 000
    /// keys with the store's [`touch_many`](KeyStore::touch_many); returns
    /// how many keys were written.
    ///
    /// Uses are counted in memory on every accepted request and written
    /// with `last_used_at` when it is due (at most once per
    /// [`Policy::touch_interval`](crate::Policy::touch_interval) per key);
    /// the uses of a key's last interval wait for its next use or for this
    /// call. Call it periodically (say every few seconds, or spawn
    /// [`flush_usage_every`](Self::flush_usage_every)) and at shutdown. A
    /// process that stops without it loses those uses: counts can be low
    /// by at most the unflushed tally. The audit queries call it first
    /// (best effort: a store that refuses writes still answers them); `get`
    /// and `list` add the tally without writing.
    ///
    /// # Errors
    ///
    /// [`Error::Store`]: the batch that failed and the ones after it go
    /// back into the tally.
    fn flush_usage / flush_usage_async() -> Result<usize, Error> => flush_usage_in();
}

impl<S> KeyManager<S> {
    /// How many keys have uses counted and not yet written (for metrics).
    #[must_use]
    pub fn pending_usage(&self) -> usize {
        self.usage.pending()
    }

    /// Every `every` (slept with `sleep`, the host's timer, e.g.
    /// `tokio::time::sleep`), [flushes](Self::flush_usage_async) the usage
    /// tally; a failed flush is retried at the next round. Never returns:
    /// spawn it (with the manager in an `Arc`) and abort it at shutdown,
    /// then call `flush_usage_async` once more.
    pub async fn flush_usage_every<Sl, Fut>(&self, every: std::time::Duration, mut sleep: Sl)
    where
        S: AsyncKeyStore,
        Sl: FnMut(std::time::Duration) -> Fut,
        Fut: Future,
    {
        loop {
            sleep(every).await;
            let _retried_next_round = self.flush_usage_async().await;
        }
    }
}

both! {
    where [KeyStore + KeyAudit] / [AsyncKeyStore + AsyncKeyAudit];
    /// The `limit` most used keys that are not revoked (of `owner` only,
    /// when given), highest [`use_count`](KeyRecord::use_count) first, ties
    /// by id ([`UseRank::MostUsed`]). Writes the counted uses first
    /// ([`flush_usage`](Self::flush_usage); best effort: if the store
    /// refuses the write, the ranking is of the counts it holds). `limit` is clamped to
    /// 1..=[`MAX_PAGE_SIZE`].
    ///
    /// # Errors
    ///
    /// [`Error::Store`], also when the store's answer is out of order.
    fn most_used / most_used_async(owner: Option<&OwnerId>, limit: usize) -> Result<Vec<Arc<KeyRecord>>, Error>
        => rank_in(UseRank::MostUsed, owner, limit);
}

both! {
    where [KeyStore + KeyAudit] / [AsyncKeyStore + AsyncKeyAudit];
    /// The `limit` least used keys that are not revoked (of `owner` only,
    /// when given), lowest [`use_count`](KeyRecord::use_count) first (never
    /// used and pending keys first), ties by id ([`UseRank::LeastUsed`]).
    /// Writes the counted uses first (best effort). `limit` is clamped to
    /// 1..=[`MAX_PAGE_SIZE`].
    ///
    /// # Errors
    ///
    /// [`Error::Store`], also when the store's answer is out of order.
    fn least_used / least_used_async(owner: Option<&OwnerId>, limit: usize) -> Result<Vec<Arc<KeyRecord>>, Error>
        => rank_in(UseRank::LeastUsed, owner, limit);
}

both! {
    /// Creates the publishable "Default API Key" a new account gets
    /// (Jahuty): call it when the host creates an account.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    fn create_default / create_default_async
        (actor: &Actor, owner: &OwnerId, environment: Environment) -> Result<CreatedKey, Error>
        => create_in(actor, NewKey::publishable(owner.clone(), DEFAULT_KEY_NAME).environment(environment), &mut rand::rngs::SysRng);
}

both! {
    /// The record with this id (no secret in it).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::Store`].
    fn get / get_async(id: &KeyId) -> Result<Arc<KeyRecord>, Error> => read_in(id);
}

both! {
    /// Every key of an owner, oldest first. Records carry the redacted
    /// display form (`sk_live_…x9Qa`), never a secret.
    ///
    /// # Errors
    ///
    /// [`Error::Store`].
    fn list / list_async(owner: &OwnerId) -> Result<Vec<Arc<KeyRecord>>, Error> => listed_in(owner);
}

both! {
    where [KeyStore + KeyAudit] / [AsyncKeyStore + AsyncKeyAudit];
    /// Every key of every owner, revoked ones included, one page at a time
    /// in ascending key-id order: pass `None` for the first page, then the
    /// previous page's [`next`](KeyPage::next) until it is `None`. `limit`
    /// is clamped to 1..=[`MAX_PAGE_SIZE`]. A key created during the scan
    /// may or may not be listed; every other key is listed exactly once.
    ///
    /// ```
    /// use api_keys::{Actor, KeyManager, MemoryKeyStore, NewKey, OwnerId};
    /// let keys = KeyManager::new(MemoryKeyStore::new());
    /// for owner in ["acct_1", "acct_2", "acct_3"] {
    ///     keys.create(&Actor::system(), NewKey::secret(OwnerId::new(owner)?, "main"))?;
    /// }
    /// let (mut seen, mut after) = (0, None);
    /// loop {
    ///     let page = keys.list_all(after, 2)?;
    ///     seen += page.keys.len();
    ///     match page.next {
    ///         Some(next) => after = Some(next),
    ///         None => break,
    ///     }
    /// }
    /// assert_eq!(seen, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Store`], also when the store answers out of order.
    fn list_all / list_all_async(after: Option<KeyId>, limit: usize) -> Result<KeyPage, Error>
        => scan_in(KeyFilter::All, after, limit);
}

both! {
    where [KeyStore + KeyAudit] / [AsyncKeyStore + AsyncKeyAudit];
    /// Keys that are not revoked and expire strictly before `before`
    /// ([`KeyFilter::ExpiringBefore`]), paged like
    /// [`list_all`](Self::list_all): the keys whose owners to warn, e.g.
    /// with `before = keys.now() + Duration::days(14)`. Already expired
    /// keys are included (their `expires_at` is before now).
    ///
    /// # Errors
    ///
    /// [`Error::Store`].
    fn expiring_before / expiring_before_async(before: UtcDateTime, after: Option<KeyId>, limit: usize)
        -> Result<KeyPage, Error>
        => scan_in(KeyFilter::ExpiringBefore(before), after, limit);
}

both! {
    where [KeyStore + KeyAudit] / [AsyncKeyStore + AsyncKeyAudit];
    /// Keys that are not revoked, existed at `since`, and have not been
    /// used since ([`KeyFilter::UnusedSince`]: never used, or last used
    /// strictly before `since`), paged like [`list_all`](Self::list_all):
    /// the stale keys to review or revoke, e.g. with
    /// `since = keys.now() - Duration::days(90)`.
    ///
    /// `last_used_at` is written at most once per
    /// [`Policy::touch_interval`](crate::Policy::touch_interval), so a key
    /// used within that interval before `since` may still be listed.
    ///
    /// # Errors
    ///
    /// [`Error::Store`].
    fn unused_since / unused_since_async(since: UtcDateTime, after: Option<KeyId>, limit: usize)
        -> Result<KeyPage, Error>
        => scan_in(KeyFilter::UnusedSince(since), after, limit);
}

both! {
    /// Activates an inactive key ("generate, then activate"). Idempotent.
    ///
    /// # Errors
    ///
    /// [`Error::Revoked`], [`Error::InvalidState`] for an expired or rolled
    /// key, [`Error::AnotherKeyActive`] under the one-active-key rule,
    /// [`Error::NotFound`], [`Error::Store`].
    fn activate / activate_async(actor: &Actor, id: &KeyId) -> Result<KeyRecord, Error>
        => transition_in(actor, id, Transition::Activate);
}

both! {
    /// Deactivates a key: refused from the next request on, can be activated
    /// again. Idempotent.
    ///
    /// # Errors
    ///
    /// [`Error::Revoked`], [`Error::NotFound`], [`Error::Store`].
    fn deactivate / deactivate_async(actor: &Actor, id: &KeyId) -> Result<KeyRecord, Error>
        => transition_in(actor, id, Transition::Deactivate);
}

both! {
    /// Revokes a key: permanent, immediate (the next verification refuses
    /// it, grace or not), and absorbing. Idempotent. Revoking a rolled key
    /// revokes only it, not its successor.
    ///
    /// This is what the vendors call **deleting** a key: it is refused from
    /// the next request on (401). The record is kept (status `Revoked`,
    /// `revoked_at`), for the audit trail and the roll links.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::Store`].
    fn revoke / revoke_async(actor: &Actor, id: &KeyId) -> Result<KeyRecord, Error>
        => transition_in(actor, id, Transition::Revoke);
}

both! {
    /// Changes a key's settings, if its version is still
    /// `expected_version` (no lost updates).
    ///
    /// The expiry of a key that has ended (expired, or rolled and past its
    /// grace) cannot be moved: that would revive it. Under the
    /// one-active-key rule, extending an active key's expiry is checked like
    /// an activation, atomically with the write: it fails with
    /// [`Error::AnotherKeyActive`] while another key of the owner is usable
    /// (including a rolled predecessor still in its grace window).
    ///
    /// # Errors
    ///
    /// [`Error::Revoked`] when the key is revoked (whatever the version),
    /// [`Error::Conflict`] when the key changed since it was read,
    /// [`Error::Invalid`], [`Error::InvalidState`] for
    /// an expiry change on a key that has ended, [`Error::AnotherKeyActive`],
    /// [`Error::NotFound`], [`Error::Store`].
    fn update / update_async(actor: &Actor, id: &KeyId, expected_version: u64, update: &KeyUpdate)
        -> Result<KeyRecord, Error>
        => update_in(actor, id, expected_version, update);
}

both! {
    /// Rolls a key: a successor with a new secret and the same settings;
    /// the old key keeps working until `min(its expiry, now + grace)`
    /// (default grace 12 hours).
    ///
    /// # Errors
    ///
    /// [`Error::Revoked`], [`Error::InvalidState`] (inactive, expired or
    /// already rolled, or a publishable key with a scope the policy no
    /// longer allows), [`Error::Conflict`] when a concurrent change won,
    /// [`Error::Invalid`], [`Error::Randomness`], [`Error::Store`]. No token
    /// is returned unless the store committed the roll.
    fn roll / roll_async(actor: &Actor, id: &KeyId, options: RollOptions) -> Result<RolledKey, Error>
        => roll_in(actor, id, options, &mut rand::rngs::SysRng);
}

impl<S> KeyManager<S> {
    /// Verifies a bearer token for a request: offline checks, one store
    /// lookup, a constant-time secret check, then status, time,
    /// environment, kind, scopes, IP and origin. Writes `last_used_at` at
    /// most once per touch interval, and only for accepted requests.
    ///
    /// (The hot path: the same steps as [`verify_async`](Self::verify_async),
    /// called directly rather than through the ready-future adapter.)
    ///
    /// # Errors
    ///
    /// [`VerifyError::Rejected`] when the key is refused;
    /// [`VerifyError::Store`] / [`VerifyError::Failed`] when the service
    /// cannot decide (fail closed — never an accept, never "unknown key").
    pub fn verify(
        &self,
        token: &str,
        request: &RequestContext<'_>,
    ) -> Result<VerifiedKey, VerifyError>
    where
        S: KeyStore,
    {
        // Offline checks first: a malformed token costs no clock read.
        let presented = self.engine.precheck(token, request)?;
        let now = self.clock.now();
        let record =
            KeyStore::get_for_verify(&self.store, &presented.id())?.ok_or(Rejection::UnknownKey)?;
        let outcome = self
            .engine
            .decide_bearer_stored(&presented, &record, request, now);
        let id = record.id();
        let (result, due) = self.settle(record.0, outcome, now, false);
        if let Some(usage) = due {
            self.store_uses(id, usage, KeyStore::touch(&self.store, &id, usage));
        }
        result
    }
}

impl<S> KeyManager<S> {
    /// Verifies a bearer token for a request: offline checks, one store
    /// lookup, a constant-time secret check, then status, time,
    /// environment, kind, scopes, IP and origin. Writes `last_used_at` at
    /// most once per touch interval, and only for accepted requests.
    ///
    /// (Asynchronous variant, for [`AsyncKeyStore`]s.)
    ///
    /// # Errors
    ///
    /// [`VerifyError::Rejected`] when the key is refused;
    /// [`VerifyError::Store`] / [`VerifyError::Failed`] when the service
    /// cannot decide (fail closed — never an accept, never "unknown key").
    pub async fn verify_async(
        &self,
        token: &str,
        request: &RequestContext<'_>,
    ) -> Result<VerifiedKey, VerifyError>
    where
        S: AsyncKeyStore,
    {
        self.verify_in(&self.store, token, request).await
    }
}

impl<S> KeyManager<S> {
    /// [`create`](Self::create) with the caller's CSPRNG (deterministic
    /// tests and vectors; never store or reuse a seeded generator in
    /// production).
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    pub fn create_with_rng<R: TryCryptoRng + Send + ?Sized>(
        &self,
        actor: &Actor,
        spec: NewKey,
        rng: &mut R,
    ) -> Result<CreatedKey, Error>
    where
        S: KeyStore,
    {
        sync(complete_now(self.create_in(
            &Ready(&self.store),
            actor,
            spec,
            rng,
        )))
    }

    /// [`roll`](Self::roll) with the caller's CSPRNG.
    ///
    /// # Errors
    ///
    /// As [`roll`](Self::roll).
    pub fn roll_with_rng<R: TryCryptoRng + Send + ?Sized>(
        &self,
        actor: &Actor,
        id: &KeyId,
        options: RollOptions,
        rng: &mut R,
    ) -> Result<RolledKey, Error>
    where
        S: KeyStore,
    {
        sync(complete_now(self.roll_in(
            &Ready(&self.store),
            actor,
            id,
            options,
            rng,
        )))
    }
}

impl<S> KeyManager<S> {
    /// [`create_async`](Self::create_async) with the caller's CSPRNG.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    pub async fn create_with_rng_async<R: TryCryptoRng + Send + ?Sized>(
        &self,
        actor: &Actor,
        spec: NewKey,
        rng: &mut R,
    ) -> Result<CreatedKey, Error>
    where
        S: AsyncKeyStore,
    {
        self.create_in(&self.store, actor, spec, rng).await
    }

    /// [`roll_async`](Self::roll_async) with the caller's CSPRNG.
    ///
    /// # Errors
    ///
    /// As [`roll`](Self::roll).
    pub async fn roll_with_rng_async<R: TryCryptoRng + Send + ?Sized>(
        &self,
        actor: &Actor,
        id: &KeyId,
        options: RollOptions,
        rng: &mut R,
    ) -> Result<RolledKey, Error>
    where
        S: AsyncKeyStore,
    {
        self.roll_in(&self.store, actor, id, options, rng).await
    }
}

both! {
    /// Re-checks a key the host has already authenticated, by its id alone:
    /// status, time (expiry, a roll's grace), environment, kind, scopes, IP
    /// and origin against `request`: every check of
    /// [`verify`](Self::verify) except the secret. For tokens the host
    /// derived from a key (the access token of a
    /// [client-credentials exchange](crate::http::TokenExchange), a
    /// session): carry the key id in the derived token and call this on
    /// every request made with it, so revoking, deactivating or rolling the
    /// key (at the end of its grace) stops its derived tokens on the next
    /// call, and the key's origin and IP lists keep applying. Moves
    /// `last_used_at` like a verification.
    ///
    /// Security: the id is public. Call this only with an id taken from a
    /// credential the host itself issued and authenticated (a signed or
    /// encrypted token, a server-side session), never with an id a client
    /// merely names.
    ///
    /// ```
    /// use api_keys::{Actor, KeyManager, MemoryKeyStore, NewKey, OwnerId, Rejection, RequestContext};
    /// let keys = KeyManager::new(MemoryKeyStore::new());
    /// let key = keys.create(&Actor::system(), NewKey::secret(OwnerId::new("acct_1")?, "app"))?;
    /// // The host verified the key once and issued its own token carrying the id…
    /// let id = keys.verify(key.token.expose_secret(), &RequestContext::new())?.id();
    /// // …and re-checks the key on every call made with that token.
    /// assert!(keys.check_key(&id, &RequestContext::new()).is_ok());
    /// keys.revoke(&Actor::system(), &id)?;
    /// let refused = keys.check_key(&id, &RequestContext::new()).unwrap_err();
    /// assert_eq!(refused.rejection(), Some(Rejection::Revoked));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`VerifyError::Rejected`] with [`Rejection::UnknownKey`] (no such
    /// key) or the rejections of [`verify`](Self::verify) after the secret
    /// check; [`VerifyError::Store`] when the store fails (fail closed).
    fn check_key / check_key_async(id: &KeyId, request: &RequestContext<'_>)
        -> Result<VerifiedKey, VerifyError>
        => check_key_in(id, request);
}

both! {
    /// Verifies a signed request (CoinsPaid's scheme): the key id from
    /// `X-Processing-Key`, HMAC-SHA512 of the exact raw body in
    /// `X-Processing-Signature` (128 lower-case hex characters), or the
    /// replay-protected mode when the policy requires it. Offline checks
    /// first (id form, signature form, body size), then one store lookup,
    /// the signature (constant time, with the key's prepared HMAC state),
    /// then status, time, environment, kind, scopes, IP and origin — the
    /// same checks as bearer verification — and, in the replay-protected
    /// mode, the nonce is recorded last, only for a request that passed
    /// every check. The clock is read after the store lookup; the window
    /// and the replay cache are checked at that instant. During a roll's
    /// grace both the old and the new key verify, each under its own key
    /// id.
    ///
    /// # Errors
    ///
    /// [`VerifyError::Rejected`] ([`Rejection::BadSignature`],
    /// [`Rejection::NotASigningKey`], [`Rejection::BodyTooLarge`],
    /// [`Rejection::StaleRequest`], [`Rejection::Replayed`],
    /// [`Rejection::ReplayQuotaExceeded`] and the bearer rejections);
    /// [`VerifyError::Store`] / [`VerifyError::Failed`] when the service
    /// cannot decide (fail closed).
    fn verify_signed / verify_signed_async(request: &SignedRequest<'_>, context: &RequestContext<'_>)
        -> Result<VerifiedKey, VerifyError>
        => verify_signed_in(request, context);
}

both! {
    /// Re-seals a signing key's secret under the current sealing key (after
    /// a sealing-key rotation). Idempotent; a no-op for bearer keys.
    ///
    /// # Errors
    ///
    /// [`Error::NoSealingKeys`], [`Error::Sealing`] (the old version is no
    /// longer configured), [`Error::Revoked`], [`Error::NotFound`],
    /// [`Error::Store`].
    fn reseal / reseal_async(actor: &Actor, id: &KeyId) -> Result<KeyRecord, Error>
        => reseal_in(actor, id);
}

both! {
    /// The owner's live signing keys still sealed under an older sealing
    /// key version: re-seal them with [`reseal`](Self::reseal) before
    /// retiring that version.
    ///
    /// # Errors
    ///
    /// [`Error::NoSealingKeys`], [`Error::Store`].
    fn keys_needing_reseal / keys_needing_reseal_async(owner: &OwnerId) -> Result<Vec<KeyId>, Error>
        => needing_reseal_in(owner);
}
