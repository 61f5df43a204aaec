//! Per-key usage tracking (Mindee, seed 003: "usage is tracked"): every
//! accepted request counts once, refused ones never; uses are written with
//! `last_used_at`, off the request; the audit queries rank keys by use.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed expectation should panic"
)]

use api_keys::testing::ManualClock;
use api_keys::{
    Actor, AsyncKeyStore, IpAllowList, KeyId, KeyManager, KeyRecord, KeyStatus, KeyStore,
    MemoryKeyStore, NewKey, OwnerId, Policy, RequestContext, RollPlan, Scopes, StoreError, Token,
    Usage, WriteBehindConfig, WriteBehindStore, WriteCondition,
};
use proptest::prelude::*;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use time::macros::utc_datetime;
use time::{Duration, UtcDateTime};

const T0: UtcDateTime = utc_datetime!(2026-08-01 12:00);

/// A memory store that counts touch writes and can fail them.
#[derive(Default)]
struct Counting {
    inner: MemoryKeyStore,
    touches: AtomicUsize,
    fail_touches: AtomicBool,
}

impl KeyStore for Counting {
    fn insert(&self, r: &KeyRecord, c: WriteCondition) -> Result<(), StoreError> {
        KeyStore::insert(&self.inner, r, c)
    }
    fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        KeyStore::get(&self.inner, id)
    }
    fn list_by_owner(&self, o: &OwnerId) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        KeyStore::list_by_owner(&self.inner, o)
    }
    fn update(&self, r: &KeyRecord, v: u64, c: WriteCondition) -> Result<(), StoreError> {
        KeyStore::update(&self.inner, r, v, c)
    }
    fn apply_roll(&self, p: &RollPlan) -> Result<(), StoreError> {
        KeyStore::apply_roll(&self.inner, p)
    }
    fn touch(&self, id: &KeyId, usage: Usage) -> Result<(), StoreError> {
        self.touches.fetch_add(1, SeqCst);
        if self.fail_touches.load(SeqCst) {
            return Err(StoreError::backend("database down"));
        }
        KeyStore::touch(&self.inner, id, usage)
    }
    // `touch_many`: the default, one `touch` per key.
}

impl api_keys::KeyAudit for Counting {
    fn scan(
        &self,
        filter: api_keys::KeyFilter,
        after: Option<&KeyId>,
        limit: usize,
    ) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        api_keys::KeyAudit::scan(&self.inner, filter, after, limit)
    }
}

fn manager<S>(store: S) -> (KeyManager<S>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(T0));
    let keys = KeyManager::builder(store)
        .clock(Arc::clone(&clock))
        .policy(Policy {
            touch_interval: Duration::seconds(60),
            ..Policy::default()
        })
        .build()
        .unwrap();
    (keys, clock)
}

fn owner(name: &str) -> OwnerId {
    OwnerId::new(name).unwrap()
}

fn create<S: KeyStore>(keys: &KeyManager<S>, spec: NewKey) -> (KeyId, Token) {
    let created = keys.create(&Actor::system(), spec).unwrap();
    (created.record.id, created.token)
}

fn stored<S: KeyStore>(keys: &KeyManager<S>, id: &KeyId) -> Arc<KeyRecord> {
    KeyStore::get(keys.store(), id).unwrap().unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn accepted_requests_count_and_refused_ones_never() {
    let (keys, _) = manager(Counting::default());
    let read = Scopes::new(["read"]).unwrap();
    let spec = NewKey::secret(owner("org_mindee"), "ocr")
        .scopes(read.clone())
        .allowed_ips(IpAllowList::parse("192.0.2.0/24").unwrap());
    let (id, token) = create(&keys, spec);
    let ok = RequestContext::new()
        .peer_ip(ip("192.0.2.9"))
        .require_scopes(&read);
    let write = Scopes::new(["write"]).unwrap();
    for _ in 0..7 {
        assert!(keys.verify(token.expose_secret(), &ok).is_ok());
    }
    // Refused: another address, a missing scope, a wrong secret.
    let elsewhere = RequestContext::new().peer_ip(ip("198.51.100.1"));
    assert!(keys.verify(token.expose_secret(), &elsewhere).is_err());
    let scoped = RequestContext::new()
        .peer_ip(ip("192.0.2.9"))
        .require_scopes(&write);
    assert!(keys.verify(token.expose_secret(), &scoped).is_err());
    let mut forged = token.expose_secret().to_owned();
    forged.replace_range(20..21, if &forged[20..21] == "a" { "b" } else { "a" });
    assert!(keys.verify(&forged, &ok).is_err());

    // One write so far (the first use); the manager's reads add the rest.
    assert_eq!(keys.store().touches.load(SeqCst), 1);
    assert_eq!(stored(&keys, &id).use_count, 1);
    assert_eq!(keys.get(&id).unwrap().use_count, 7);
    assert_eq!(keys.list(&owner("org_mindee")).unwrap()[0].use_count, 7);
    assert_eq!(keys.pending_usage(), 1);
    // A flush writes them: one touch for the key.
    assert_eq!(keys.flush_usage().unwrap(), 1);
    assert_eq!(stored(&keys, &id).use_count, 7);
    assert_eq!(keys.pending_usage(), 0);
    assert_eq!(keys.flush_usage().unwrap(), 0);
    assert_eq!(keys.get(&id).unwrap().use_count, 7);
}

#[test]
fn the_due_last_used_write_carries_the_counted_uses() {
    let (keys, clock) = manager(Counting::default());
    let (id, token) = create(&keys, NewKey::secret(owner("org"), "k"));
    let ctx = RequestContext::new();
    for _ in 0..5 {
        keys.verify(token.expose_secret(), &ctx).unwrap();
    }
    assert_eq!(stored(&keys, &id).use_count, 1);
    assert_eq!(stored(&keys, &id).last_used_at, Some(T0));
    // The next use after the touch interval writes all six, in one touch.
    clock.advance(Duration::seconds(61));
    keys.verify(token.expose_secret(), &ctx).unwrap();
    assert_eq!(keys.store().touches.load(SeqCst), 2);
    let record = stored(&keys, &id);
    assert_eq!(record.use_count, 6);
    assert_eq!(record.last_used_at, Some(T0 + Duration::seconds(61)));
    assert_eq!(record.version, 1, "a use never changes the version");
    assert_eq!(keys.pending_usage(), 0);
}

#[test]
fn failed_writes_keep_the_uses_for_the_next_one() {
    let (keys, clock) = manager(Counting::default());
    let (id, token) = create(&keys, NewKey::secret(owner("org"), "k"));
    let ctx = RequestContext::new();
    keys.store().fail_touches.store(true, SeqCst);
    // The due write fails: the request is still accepted, the use kept.
    for _ in 0..3 {
        keys.verify(token.expose_secret(), &ctx).unwrap();
    }
    assert_eq!(stored(&keys, &id).use_count, 0);
    assert_eq!(keys.get(&id).unwrap().use_count, 3);
    assert!(keys.flush_usage().is_err());
    assert_eq!(keys.pending_usage(), 1, "a failed flush puts the uses back");
    assert_eq!(keys.get(&id).unwrap().use_count, 3);
    // The database is back: the next write carries every use once.
    keys.store().fail_touches.store(false, SeqCst);
    clock.advance(Duration::seconds(61));
    keys.verify(token.expose_secret(), &ctx).unwrap();
    assert_eq!(stored(&keys, &id).use_count, 4);
    assert_eq!(keys.flush_usage().unwrap(), 0);
}

#[test]
fn most_and_least_used_rank_live_keys_by_count() {
    let (keys, _) = manager(Counting::default());
    let ctx = RequestContext::new();
    let org = owner("org_a");
    let mut ids = Vec::new();
    for (name, uses) in [("k0", 0), ("k5", 5), ("k2", 2), ("k9", 9), ("k2b", 2)] {
        let (id, token) = create(&keys, NewKey::secret(org.clone(), name));
        for _ in 0..uses {
            keys.verify(token.expose_secret(), &ctx).unwrap();
        }
        ids.push((name, id));
    }
    let (other, other_token) = create(&keys, NewKey::secret(owner("org_b"), "b"));
    for _ in 0..50 {
        keys.verify(other_token.expose_secret(), &ctx).unwrap();
    }
    let revoked = ids[3].1;
    keys.revoke(&Actor::system(), &revoked).unwrap();
    let pending = keys
        .create_pending(&Actor::system(), NewKey::secret(org.clone(), "pending"))
        .unwrap();

    let counts =
        |records: &[Arc<KeyRecord>]| -> Vec<u64> { records.iter().map(|r| r.use_count).collect() };
    // Ties in ascending id order.
    let tie_ordered = |records: &[Arc<KeyRecord>]| {
        records
            .windows(2)
            .all(|w| w[0].use_count != w[1].use_count || w[0].id < w[1].id)
    };
    // Counted uses are written first, so the ranking is exact.
    let most = keys.most_used(None, 3).unwrap();
    assert_eq!(keys.pending_usage(), 0);
    assert_eq!(counts(&most), [50, 5, 2]);
    assert_eq!(most[0].id, other);
    let mine = keys.most_used(Some(&org), 10).unwrap();
    assert_eq!(
        counts(&mine),
        [5, 2, 2, 0, 0],
        "the revoked k9 is not ranked"
    );
    assert!(tie_ordered(&mine));
    assert!(mine.iter().all(|r| r.owner == org && r.id != revoked));
    assert!(
        mine.iter()
            .any(|r| r.id == pending.id && r.status == KeyStatus::Pending)
    );
    let least = keys.least_used(Some(&org), 10).unwrap();
    assert_eq!(counts(&least), [0, 0, 2, 2, 5]);
    assert!(tie_ordered(&least));
    let least_two = keys.least_used(None, 2).unwrap();
    assert_eq!(counts(&least_two), [0, 0]);
    // `limit` is clamped to at least one key.
    assert_eq!(keys.most_used(None, 0).unwrap().len(), 1);
}

#[test]
fn two_threads_count_every_use_exactly_once() {
    let (keys, _) = manager(MemoryKeyStore::new());
    let (id, token) = create(&keys, NewKey::secret(owner("org"), "hot"));
    let keys = &keys;
    std::thread::scope(|s| {
        for _ in 0..2 {
            let token = &token;
            s.spawn(move || {
                for _ in 0..5_000 {
                    keys.verify(token.expose_secret(), &RequestContext::new())
                        .unwrap();
                }
            });
        }
    });
    keys.flush_usage().unwrap();
    assert_eq!(stored(keys, &id).use_count, 10_000);
}

#[tokio::test]
async fn with_a_write_behind_store_counts_reach_the_database_once() {
    let inner = Arc::new(MemoryKeyStore::new());
    let store = WriteBehindStore::new(Arc::clone(&inner), WriteBehindConfig::default());
    let (keys, clock) = manager(store);
    let created = keys
        .create_async(&Actor::system(), NewKey::secret(owner("org"), "k"))
        .await
        .unwrap();
    let id = created.record.id;
    for round in 0..3 {
        for _ in 0..4 {
            keys.verify_async(created.token.expose_secret(), &RequestContext::new())
                .await
                .unwrap();
        }
        clock.advance(Duration::seconds(61 + round));
    }
    // The manager's tally and the store's buffer both hold uses; the
    // manager's reads see them all.
    let read = keys.get_async(&id).await.unwrap();
    assert_eq!(read.use_count, 12);
    // An update of a record read with unwritten uses does not count them
    // twice: only touches change a stored count.
    keys.update_async(
        &Actor::system(),
        &id,
        read.version,
        &api_keys::KeyUpdate::new().name("renamed"),
    )
    .await
    .unwrap();
    keys.flush_usage_async().await.unwrap();
    keys.store().flush().await.unwrap();
    let written = AsyncKeyStore::get(&*inner, &id).await.unwrap().unwrap();
    assert_eq!(written.use_count, 12);
    assert_eq!(written.status, KeyStatus::Active);
    // A ranking through the write-behind store writes its buffer first.
    for _ in 0..2 {
        keys.verify_async(created.token.expose_secret(), &RequestContext::new())
            .await
            .unwrap();
        clock.advance(Duration::seconds(61));
    }
    let most = keys.most_used_async(None, 5).await.unwrap();
    let ranked: Vec<(KeyId, u64)> = most.iter().map(|r| (r.id, r.use_count)).collect();
    assert_eq!(ranked, [(id, 14)]);
    let written = AsyncKeyStore::get(&*inner, &id).await.unwrap().unwrap();
    assert_eq!(written.use_count, 14);
}

#[derive(Debug, Clone)]
enum Step {
    Accept,
    Refuse,
    Advance(u16),
    Flush,
    FailWrites(bool),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => Just(Step::Accept),
        2 => Just(Step::Refuse),
        2 => (0u16..200).prop_map(Step::Advance),
        1 => Just(Step::Flush),
        1 => any::<bool>().prop_map(Step::FailWrites),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the interleaving of uses, refusals, time, flushes and
    /// failing writes: the count the manager shows is the number of
    /// accepted requests, the store's is never more, and once writes work
    /// again a flush makes the store's exact.
    #[test]
    fn the_count_is_the_number_of_accepted_requests(steps in prop::collection::vec(step(), 1..60)) {
        let (keys, clock) = manager(Counting::default());
        let spec = NewKey::secret(owner("org"), "k")
            .allowed_ips(IpAllowList::parse("192.0.2.0/24").unwrap());
        let (id, token) = create(&keys, spec);
        let ctx = RequestContext::new().peer_ip(ip("192.0.2.1"));
        // Refused after every check but the last: the secret, status and
        // time pass, the address does not.
        let elsewhere = RequestContext::new().peer_ip(ip("198.51.100.1"));
        let mut accepted = 0u64;
        for s in steps {
            match s {
                Step::Accept => {
                    prop_assert!(keys.verify(token.expose_secret(), &ctx).is_ok());
                    accepted += 1;
                }
                Step::Refuse => {
                    prop_assert!(keys.verify(token.expose_secret(), &elsewhere).is_err());
                }
                Step::Advance(s) => clock.advance(Duration::seconds(i64::from(s))),
                Step::Flush => {
                    let _ = keys.flush_usage();
                }
                Step::FailWrites(on) => keys.store().fail_touches.store(on, SeqCst),
            }
            prop_assert_eq!(keys.get(&id).unwrap().use_count, accepted);
            prop_assert!(stored(&keys, &id).use_count <= accepted);
        }
        keys.store().fail_touches.store(false, SeqCst);
        keys.flush_usage().unwrap();
        prop_assert_eq!(stored(&keys, &id).use_count, accepted);
    }
}

#[test]
fn audit_queries_work_over_a_shared_store() {
    // `Arc<MemoryKeyStore>`: the store shared by several managers.
    let shared = Arc::new(MemoryKeyStore::new());
    let (keys, _) = manager(Arc::clone(&shared));
    let (busy, token) = create(&keys, NewKey::secret(owner("org"), "busy"));
    let (idle, _) = create(&keys, NewKey::secret(owner("org"), "idle"));
    for _ in 0..3 {
        keys.verify(token.expose_secret(), &RequestContext::new())
            .unwrap();
    }
    let all = keys.list_all(None, 10).unwrap();
    assert_eq!(all.keys.len(), 2);
    let most = keys.most_used(None, 10).unwrap();
    let ranked: Vec<(KeyId, u64)> = most.iter().map(|r| (r.id, r.use_count)).collect();
    assert_eq!(ranked, [(busy, 3), (idle, 0)]);
    assert_eq!(
        KeyStore::get(&*shared, &busy).unwrap().unwrap().use_count,
        3
    );
}

#[test]
fn the_memory_store_writes_last_used_at_once_per_interval() {
    // The compact records the memory store lends carry `last_used_at`: a
    // key used again within the interval is not written again.
    let (keys, clock) = manager(MemoryKeyStore::new());
    let (id, token) = create(&keys, NewKey::secret(owner("org"), "k"));
    for _ in 0..3 {
        keys.verify(token.expose_secret(), &RequestContext::new())
            .unwrap();
    }
    assert_eq!(stored(&keys, &id).use_count, 1);
    assert_eq!(keys.pending_usage(), 1);
    clock.advance(Duration::seconds(60));
    keys.verify(token.expose_secret(), &RequestContext::new())
        .unwrap();
    assert_eq!(stored(&keys, &id).use_count, 4);
    assert_eq!(keys.pending_usage(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_background_flush_writes_the_tally_every_period() {
    let (keys, _) = manager(MemoryKeyStore::new());
    let keys = Arc::new(keys);
    let (id, token) = create(&keys, NewKey::secret(owner("org_timer"), "k"));
    for _ in 0..3 {
        let verified = keys.verify(token.expose_secret(), &RequestContext::new());
        assert!(verified.is_ok());
    }
    // The first use was written with its touch; two wait in the tally.
    assert_eq!((stored(&keys, &id).use_count, keys.pending_usage()), (1, 1));
    let every = std::time::Duration::from_secs(10);
    let flusher = tokio::spawn({
        let keys = Arc::clone(&keys);
        async move { keys.flush_usage_every(every, tokio::time::sleep).await }
    });
    tokio::time::sleep(std::time::Duration::from_secs(9)).await;
    assert_eq!(keys.pending_usage(), 1, "not before the period");
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!((stored(&keys, &id).use_count, keys.pending_usage()), (3, 0));
    // And again at every period.
    assert!(
        keys.verify(token.expose_secret(), &RequestContext::new())
            .is_ok()
    );
    tokio::time::sleep(every).await;
    assert_eq!((stored(&keys, &id).use_count, keys.pending_usage()), (4, 0));
    flusher.abort();
}

#[test]
fn a_usage_moves_last_use_forward_only_and_adds_its_uses() {
    let (keys, _) = manager(MemoryKeyStore::new());
    let (id, _) = create(&keys, NewKey::secret(owner("org_apply"), "k"));
    let mut record = (*stored(&keys, &id)).clone();
    assert_eq!(record.last_used_at, None);
    let (t1, t2) = (T0 + Duration::minutes(1), T0 + Duration::minutes(2));
    Usage { at: t1, uses: 2 }.apply_to(&mut record);
    assert_eq!((record.last_used_at, record.use_count), (Some(t1), 2));
    Usage { at: t2, uses: 3 }.apply_to(&mut record);
    assert_eq!((record.last_used_at, record.use_count), (Some(t2), 5));
    Usage { at: t1, uses: 1 }.apply_to(&mut record);
    assert_eq!((record.last_used_at, record.use_count), (Some(t2), 6));
}

/// The default `touch_many` of a host store: one `touch` per key, unknown
/// keys skipped, any other failure returned.
#[test]
fn the_default_batch_touch_skips_unknown_keys_and_fails_on_the_rest() {
    let (keys, _) = manager(Counting::default());
    let (id, _) = create(&keys, NewKey::secret(owner("org_batch"), "k"));
    let unknown = KeyId::from_bytes([3; 16]);
    let batch = [
        (unknown, Usage { at: T0, uses: 1 }),
        (id, Usage { at: T0, uses: 4 }),
    ];
    assert!(KeyStore::touch_many(keys.store(), &batch).is_ok());
    assert_eq!(stored(&keys, &id).use_count, 4);
    keys.store().fail_touches.store(true, SeqCst);
    let failed = KeyStore::touch_many(keys.store(), &batch);
    assert!(failed.is_err_and(|e| e.kind() == api_keys::StoreErrorKind::Backend));
}
