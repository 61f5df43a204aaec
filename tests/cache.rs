//! The verification cache and its change feed, over a shared
//! `MemoryKeyStore` (two "servers" in one process, each with its own
//! cache): revokes, deactivations and rolls on A reach B through the feed;
//! nothing is served past the staleness bound (measured on a manual
//! monotonic clock, so the bound is tested by construction, not by timing);
//! a failing store still fails closed; fills never resurrect an evicted
//! record; unknown ids cannot evict real keys. The same scenarios run
//! against real databases in `tests/sql_feed.rs`.
#![cfg(feature = "cache")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed expectation should panic"
)]
use api_keys::cache::{CacheConfig, CachedKeyStore, FeedFollower};
use api_keys::testing::ManualMonotonicClock;
use api_keys::{
    Actor, AsyncKeyStore, Change, ChangeFeed, ChangePage, KeyId, KeyManager, KeyRecord,
    MemoryKeyStore, NewKey, OwnerId, Rejection, RequestContext, RollOptions, RollPlan, StoreError,
    StoreErrorKind, Token, VerifyError, WriteCondition,
};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

const BOUND: Duration = Duration::from_secs(1);
const NS: Duration = Duration::from_nanos(1);

/// A store wrapper whose reads can fail, wait for a signal, or answer with
/// another key's record; counts reads.
#[derive(Default)]
struct Faulty {
    inner: Arc<MemoryKeyStore>,
    gets: AtomicUsize,
    touches: AtomicUsize,
    down: AtomicBool,
    other: Mutex<Option<KeyId>>,
    /// When set, `get` reads the record, then waits for `release`.
    hold: AtomicBool,
    held: Notify,
    release: Notify,
}

impl Faulty {
    fn over(inner: &Arc<MemoryKeyStore>) -> Arc<Self> {
        Arc::new(Self {
            inner: Arc::clone(inner),
            ..Self::default()
        })
    }
    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(SeqCst) {
            Err(StoreError::backend("database down"))
        } else {
            Ok(())
        }
    }
}

impl AsyncKeyStore for Faulty {
    async fn insert(
        &self,
        record: &KeyRecord,
        condition: WriteCondition,
    ) -> Result<(), StoreError> {
        self.check()?;
        AsyncKeyStore::insert(&*self.inner, record, condition).await
    }
    async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        self.gets.fetch_add(1, SeqCst);
        self.check()?;
        let other = *self.other.lock().unwrap();
        let found = AsyncKeyStore::get(&*self.inner, &other.unwrap_or(*id)).await?;
        if self.hold.swap(false, SeqCst) {
            self.held.notify_one();
            self.release.notified().await;
        }
        Ok(found)
    }
    async fn list_by_owner(&self, owner: &OwnerId) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        self.check()?;
        AsyncKeyStore::list_by_owner(&*self.inner, owner).await
    }
    async fn update(
        &self,
        record: &KeyRecord,
        expected_version: u64,
        condition: WriteCondition,
    ) -> Result<(), StoreError> {
        self.check()?;
        AsyncKeyStore::update(&*self.inner, record, expected_version, condition).await
    }
    async fn apply_roll(&self, plan: &RollPlan) -> Result<(), StoreError> {
        self.check()?;
        AsyncKeyStore::apply_roll(&*self.inner, plan).await
    }
    async fn touch(&self, id: &KeyId, usage: api_keys::Usage) -> Result<(), StoreError> {
        self.touches.fetch_add(1, SeqCst);
        self.check()?;
        AsyncKeyStore::touch(&*self.inner, id, usage).await
    }
}

/// A feed wrapper that can fail, stall (never answer), or be replaced by
/// a scripted list of changes.
#[derive(Default)]
struct FeedSwitch {
    inner: Arc<MemoryKeyStore>,
    down: AtomicBool,
    stalled: AtomicBool,
    script: Mutex<Option<(u64, Vec<Change>)>>,
}

impl FeedSwitch {
    fn over(inner: &Arc<MemoryKeyStore>) -> Arc<Self> {
        Arc::new(Self {
            inner: Arc::clone(inner),
            ..Self::default()
        })
    }
    async fn gate(&self) -> Result<(), StoreError> {
        if self.stalled.load(SeqCst) {
            std::future::pending::<()>().await;
        }
        if self.down.load(SeqCst) {
            return Err(StoreError::backend("feed down"));
        }
        Ok(())
    }
}

impl ChangeFeed for FeedSwitch {
    async fn head(&self) -> Result<u64, StoreError> {
        self.gate().await?;
        if let Some((head, _)) = &*self.script.lock().unwrap() {
            return Ok(*head);
        }
        self.inner.head().await
    }
    async fn changes_since(&self, after: u64, limit: usize) -> Result<ChangePage, StoreError> {
        self.gate().await?;
        if let Some((_, changes)) = &*self.script.lock().unwrap() {
            let page = changes
                .iter()
                .filter(|c| c.seq > after)
                .take(limit)
                .copied()
                .collect();
            return Ok(ChangePage::new(page, 0));
        }
        self.inner.changes_since(after, limit).await
    }
}

/// Server A: its own cache over the shared store (followed by nothing:
/// writes through a cache evict locally). Server B: a cache on a manual
/// monotonic clock, followed through a switchable feed.
struct Servers {
    shared: Arc<MemoryKeyStore>,
    a: KeyManager<CachedKeyStore<Arc<MemoryKeyStore>>>,
    b: KeyManager<CachedKeyStore<Arc<Faulty>>>,
    b_store: Arc<Faulty>,
    feed: Arc<FeedSwitch>,
    follower: FeedFollower<Arc<FeedSwitch>>,
    clock: Arc<ManualMonotonicClock>,
}

fn servers_with(shared: MemoryKeyStore, config: CacheConfig) -> Servers {
    let shared = Arc::new(shared);
    let a = KeyManager::new(CachedKeyStore::new(Arc::clone(&shared), config.clone()).unwrap());
    let clock = Arc::new(ManualMonotonicClock::new());
    let b_store = Faulty::over(&shared);
    let b_cache =
        CachedKeyStore::with_clock(Arc::clone(&b_store), config, Arc::clone(&clock)).unwrap();
    let feed = FeedSwitch::over(&shared);
    let follower = b_cache.follower(Arc::clone(&feed));
    Servers {
        shared,
        a,
        b: KeyManager::new(b_cache),
        b_store,
        feed,
        follower,
        clock,
    }
}

fn servers() -> Servers {
    servers_with(MemoryKeyStore::new(), CacheConfig::default())
}

fn owner() -> OwnerId {
    OwnerId::new("acct_cache").unwrap()
}

async fn create(s: &Servers, name: &str) -> (KeyId, Token) {
    let k =
        s.a.create_async(&Actor::system(), NewKey::secret(owner(), name))
            .await
            .unwrap();
    (k.record.id, k.token)
}

async fn verify_on<S: AsyncKeyStore>(
    m: &KeyManager<S>,
    token: &Token,
) -> Result<api_keys::VerifiedKey, VerifyError> {
    m.verify_async(token.expose_secret(), &RequestContext::new())
        .await
}

fn rejection<T: std::fmt::Debug>(r: Result<T, VerifyError>) -> Rejection {
    r.unwrap_err()
        .rejection()
        .expect("a rejection, not a failure")
}

#[tokio::test]
async fn a_revoke_on_a_reaches_b_at_the_next_feed_read() {
    let mut s = servers();
    let (id, token) = create(&s, "k").await;
    s.follower.poll().await.unwrap();
    verify_on(&s.b, &token).await.unwrap(); // fills B's cache
    let gets = s.b_store.gets.load(SeqCst);
    verify_on(&s.b, &token).await.unwrap();
    assert_eq!(s.b_store.gets.load(SeqCst), gets, "served from the cache");

    s.a.revoke_async(&Actor::system(), &id).await.unwrap();
    // Until B reads the feed it may still serve the record: that is the
    // (bounded) staleness.
    verify_on(&s.b, &token).await.unwrap();
    let report = s.follower.poll().await.unwrap();
    assert!(report.confirmed);
    assert_eq!(report.changes, 1);
    assert_eq!(rejection(verify_on(&s.b, &token).await), Rejection::Revoked);
    assert_eq!(s.b.store().stats().evictions, 1);
}

#[tokio::test]
async fn nothing_is_served_before_the_follower_first_read_the_feed() {
    let s = servers();
    let (_, token) = create(&s, "k").await;
    verify_on(&s.b, &token).await.unwrap();
    verify_on(&s.b, &token).await.unwrap();
    assert_eq!(s.b_store.gets.load(SeqCst), 2, "every lookup read through");
    assert_eq!(s.b.store().stats().unconfirmed, 2);
    assert!(!s.b.store().is_confirmed());
}

#[tokio::test]
async fn a_stalled_feed_stops_the_cache_at_exactly_the_bound() {
    let mut s = servers();
    let (id, token) = create(&s, "k").await;
    s.follower.poll().await.unwrap(); // confirmed at t = 0
    verify_on(&s.b, &token).await.unwrap();
    s.feed.stalled.store(true, SeqCst);
    // The follower's next read never returns.
    let stalled = tokio::time::timeout(Duration::from_millis(20), s.follower.poll()).await;
    assert!(stalled.is_err());

    s.a.revoke_async(&Actor::system(), &id).await.unwrap();
    s.clock.advance(BOUND - NS);
    // Within the bound the cache may serve the stale record …
    verify_on(&s.b, &token).await.unwrap();
    // … and at the bound it stops serving and reads through.
    s.clock.advance(NS);
    assert_eq!(rejection(verify_on(&s.b, &token).await), Rejection::Revoked);
    assert!(!s.b.store().is_confirmed());

    // Database down too: a store error fails closed, never "unknown key"
    // and never an accept.
    s.b_store.down.store(true, SeqCst);
    let (_, other) = create(&s, "other").await;
    for t in [&token, &other] {
        let err = verify_on(&s.b, t).await.unwrap_err();
        assert!(matches!(err, VerifyError::Store(_)), "{err:?}");
    }
}

#[tokio::test]
async fn a_failing_feed_is_not_a_confirmation() {
    let mut s = servers();
    let (id, token) = create(&s, "k").await;
    s.follower.poll().await.unwrap();
    verify_on(&s.b, &token).await.unwrap();
    s.feed.down.store(true, SeqCst);
    s.a.revoke_async(&Actor::system(), &id).await.unwrap();
    for _ in 0..3 {
        s.clock.advance(BOUND / 3);
        assert!(s.follower.poll().await.is_err());
    }
    s.clock.advance(BOUND - (BOUND / 3) * 3); // exactly the bound
    assert_eq!(rejection(verify_on(&s.b, &token).await), Rejection::Revoked);
    assert_eq!(s.b.store().stats().feed_errors, 3);
    // The feed comes back: B catches up and serves from the cache again.
    s.feed.down.store(false, SeqCst);
    assert!(s.follower.poll().await.unwrap().confirmed);
    let (_, fresh) = create(&s, "fresh").await;
    verify_on(&s.b, &fresh).await.unwrap();
    let gets = s.b_store.gets.load(SeqCst);
    verify_on(&s.b, &fresh).await.unwrap();
    assert_eq!(s.b_store.gets.load(SeqCst), gets);
}

#[tokio::test]
async fn deactivation_update_and_roll_on_a_reach_b_a_roll_as_grace() {
    let mut s = servers();
    let (id, token) = create(&s, "k").await;
    s.follower.poll().await.unwrap();
    let v = verify_on(&s.b, &token).await.unwrap();
    assert!(!v.in_grace());

    let rolled =
        s.a.roll_async(&Actor::system(), &id, RollOptions::default())
            .await
            .unwrap();
    s.follower.poll().await.unwrap();
    let v = verify_on(&s.b, &token).await.unwrap();
    assert!(v.in_grace(), "B sees the roll");
    assert_eq!(v.successor(), Some(rolled.successor.id));
    verify_on(&s.b, &rolled.token).await.unwrap();

    s.a.deactivate_async(&Actor::system(), &rolled.successor.id)
        .await
        .unwrap();
    s.follower.poll().await.unwrap();
    assert_eq!(
        rejection(verify_on(&s.b, &rolled.token).await),
        Rejection::Inactive
    );
}

#[tokio::test]
async fn writes_through_a_cache_evict_it_at_once() {
    let mut s = servers();
    let (id, token) = create(&s, "k").await;
    s.follower.poll().await.unwrap();
    verify_on(&s.b, &token).await.unwrap();
    // Revoked through B itself: no feed read needed.
    s.b.revoke_async(&Actor::system(), &id).await.unwrap();
    assert_eq!(rejection(verify_on(&s.b, &token).await), Rejection::Revoked);
}

#[tokio::test]
async fn a_fill_that_read_before_an_eviction_is_not_kept() {
    let mut s = servers();
    let (id, token) = create(&s, "k").await;
    s.follower.poll().await.unwrap();
    // B's lookup reads the (still active) record, then waits …
    s.b_store.hold.store(true, SeqCst);
    let b = Arc::new(s.b);
    let b2 = Arc::clone(&b);
    let tok = token.expose_secret().to_owned();
    let pending =
        tokio::spawn(async move { b2.verify_async(&tok, &RequestContext::new()).await.is_ok() });
    s.b_store.held.notified().await;
    // … meanwhile A revokes and B's follower evicts the key.
    s.a.revoke_async(&Actor::system(), &id).await.unwrap();
    s.follower.poll().await.unwrap();
    s.b_store.release.notify_one();
    // That lookup decided on what it read (the revoke raced it) …
    assert!(pending.await.unwrap());
    // … but did not leave the pre-revoke record in the cache.
    assert_eq!(rejection(verify_on(&*b, &token).await), Rejection::Revoked);
}

#[tokio::test]
async fn the_cache_never_serves_a_record_for_another_id() {
    let mut s = servers();
    let (a_id, a_token) = create(&s, "a").await;
    let (b_id, b_token) = create(&s, "b").await;
    s.follower.poll().await.unwrap();
    // A broken store answering with another key's record: a failure, and
    // nothing is cached.
    *s.b_store.other.lock().unwrap() = Some(a_id);
    let err = verify_on(&s.b, &b_token).await.unwrap_err();
    assert!(matches!(err, VerifyError::Store(_)), "{err:?}");
    *s.b_store.other.lock().unwrap() = None;
    assert_eq!(verify_on(&s.b, &b_token).await.unwrap().id(), b_id);
    assert_eq!(verify_on(&s.b, &a_token).await.unwrap().id(), a_id);

    // Many keys, concurrent lookups, evictions and revokes: every accept
    // is for the key presented.
    let mut keys = Vec::new();
    for i in 0..64 {
        keys.push(create(&s, &format!("k{i}")).await);
    }
    let b = Arc::new(s.b);
    let mut tasks = Vec::new();
    for t in 0..4 {
        let b = Arc::clone(&b);
        let keys: Vec<(KeyId, String)> = keys
            .iter()
            .map(|(id, tok)| (*id, tok.expose_secret().to_owned()))
            .collect();
        tasks.push(tokio::spawn(async move {
            for round in 0..50 {
                for (i, (id, tok)) in keys.iter().enumerate() {
                    if (i + round + t) % 3 != 0 {
                        continue;
                    }
                    match b.verify_async(tok, &RequestContext::new()).await {
                        Ok(v) => assert_eq!(v.id(), *id),
                        Err(e) => assert_eq!(e.rejection(), Some(Rejection::Revoked)),
                    }
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    for (i, (id, _)) in keys.iter().enumerate() {
        if i % 4 == 0 {
            s.a.revoke_async(&Actor::system(), id).await.unwrap();
        }
        if i % 8 == 0 {
            s.follower.poll().await.unwrap();
        }
        tokio::task::yield_now().await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    s.follower.poll().await.unwrap();
    for (i, (id, tok)) in keys.iter().enumerate() {
        let r = verify_on(&*b, tok).await;
        if i % 4 == 0 {
            assert_eq!(rejection(r), Rejection::Revoked);
        } else {
            assert_eq!(r.unwrap().id(), *id);
        }
    }
}

#[tokio::test]
async fn unknown_ids_are_cached_apart_and_cannot_evict_real_keys() {
    let config = CacheConfig::default()
        .capacity(8)
        .negative_capacity(4)
        .negative_ttl(Duration::from_secs(5));
    let mut s = servers_with(MemoryKeyStore::new(), config);
    let (_, token) = create(&s, "real").await;
    s.follower.poll().await.unwrap();
    verify_on(&s.b, &token).await.unwrap();
    // A flood of well-formed random ids (valid checksums, unknown ids).
    let stranger = MemoryKeyStore::new();
    let strangers = KeyManager::new(stranger);
    for i in 0..200 {
        let t = strangers
            .create(&Actor::system(), NewKey::secret(owner(), format!("x{i}")))
            .unwrap()
            .token;
        assert_eq!(rejection(verify_on(&s.b, &t).await), Rejection::UnknownKey);
    }
    assert!(s.b.store().stats().unknown <= 4);
    let gets = s.b_store.gets.load(SeqCst);
    verify_on(&s.b, &token).await.unwrap();
    assert_eq!(
        s.b_store.gets.load(SeqCst),
        gets,
        "the real key stayed cached"
    );

    // A repeated unknown id is answered from the negative space …
    let t = strangers
        .create(&Actor::system(), NewKey::secret(owner(), "again"))
        .unwrap()
        .token;
    verify_on(&s.b, &t).await.unwrap_err();
    let gets = s.b_store.gets.load(SeqCst);
    verify_on(&s.b, &t).await.unwrap_err();
    assert_eq!(s.b_store.gets.load(SeqCst), gets);
    // … until its short lifetime ends.
    s.follower.poll().await.unwrap(); // keep the feed confirmed
    s.clock.advance(Duration::from_secs(5));
    s.follower.poll().await.unwrap();
    verify_on(&s.b, &t).await.unwrap_err();
    assert_eq!(s.b_store.gets.load(SeqCst), gets + 1);
}

#[tokio::test]
async fn a_key_created_on_a_evicts_bs_negative_entry() {
    let mut s = servers();
    s.follower.poll().await.unwrap();
    // Make a key on a scratch store, remember B's negative answer for its
    // id, then insert that very record on A.
    let scratch = KeyManager::new(MemoryKeyStore::new());
    let k = scratch
        .create(&Actor::system(), NewKey::secret(owner(), "late"))
        .unwrap();
    assert_eq!(
        rejection(verify_on(&s.b, &k.token).await),
        Rejection::UnknownKey
    );
    AsyncKeyStore::insert(&*s.shared, &k.record, WriteCondition::Always)
        .await
        .unwrap();
    s.follower.poll().await.unwrap();
    verify_on(&s.b, &k.token).await.unwrap();
}

#[tokio::test]
async fn falling_behind_the_feeds_retention_drops_everything() {
    let mut s = servers_with(
        MemoryKeyStore::new().change_retention(2),
        CacheConfig::default(),
    );
    let (id, token) = create(&s, "k").await;
    s.follower.poll().await.unwrap();
    verify_on(&s.b, &token).await.unwrap();
    s.a.revoke_async(&Actor::system(), &id).await.unwrap();
    for i in 0..5 {
        create(&s, &format!("n{i}")).await;
    }
    let report = s.follower.poll().await.unwrap();
    assert!(report.resynced && report.confirmed);
    assert_eq!(rejection(verify_on(&s.b, &token).await), Rejection::Revoked);
}

#[tokio::test]
async fn a_gap_in_the_numbers_stops_serving_until_it_fills_or_times_out() {
    // Not the default (10 s), so the setting is shown to apply.
    let config = CacheConfig::default().gap_timeout(Duration::from_secs(30));
    let mut s = servers_with(MemoryKeyStore::new(), config);
    let (id, token) = create(&s, "k").await;
    let (other, _) = create(&s, "other").await;
    *s.feed.script.lock().unwrap() = Some((0, Vec::new()));
    s.follower.poll().await.unwrap();
    verify_on(&s.b, &token).await.unwrap();
    // Change 2 is visible, change 1 is not (yet).
    *s.feed.script.lock().unwrap() = Some((
        0,
        vec![Change {
            seq: 2,
            key_id: other,
        }],
    ));
    let r = s.follower.poll().await.unwrap();
    assert!(!r.confirmed);
    assert_eq!(r.last_seen, 0);
    s.clock.advance(BOUND);
    let gets = s.b_store.gets.load(SeqCst);
    verify_on(&s.b, &token).await.unwrap();
    assert_eq!(s.b_store.gets.load(SeqCst), gets + 1, "read through");
    // The gap fills: both are taken, the cache serves again.
    *s.feed.script.lock().unwrap() = Some((
        0,
        vec![
            Change { seq: 1, key_id: id },
            Change {
                seq: 2,
                key_id: other,
            },
        ],
    ));
    let r = s.follower.poll().await.unwrap();
    assert!(r.confirmed);
    assert_eq!(r.last_seen, 2);

    // A gap that never fills: after the timeout everything is dropped and
    // the follower moves on.
    *s.feed.script.lock().unwrap() = Some((
        0,
        vec![Change {
            seq: 4,
            key_id: other,
        }],
    ));
    assert!(!s.follower.poll().await.unwrap().confirmed);
    s.clock.advance(Duration::from_secs(29));
    let r = s.follower.poll().await.unwrap();
    assert!(!r.confirmed && !r.resynced, "still within the gap timeout");
    s.clock.advance(Duration::from_secs(1));
    let r = s.follower.poll().await.unwrap();
    assert!(r.confirmed && r.resynced);
    assert_eq!(r.last_seen, 4);
}

#[tokio::test]
async fn touches_update_the_cached_record_so_they_stay_rare() {
    let mut s = servers();
    let (_, token) = create(&s, "k").await;
    s.follower.poll().await.unwrap();
    assert!(verify_on(&s.b, &token).await.unwrap().touched());
    for _ in 0..10 {
        assert!(!verify_on(&s.b, &token).await.unwrap().touched());
    }
    assert_eq!(s.b_store.touches.load(SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn the_follower_runs_and_stops_with_the_cache() {
    let s = servers();
    let (id, token) = create(&s, "k").await;
    let follower = tokio::spawn(s.follower.run(tokio::time::sleep));
    tokio::time::sleep(Duration::from_millis(10)).await;
    verify_on(&s.b, &token).await.unwrap();
    s.a.revoke_async(&Actor::system(), &id).await.unwrap();
    tokio::time::sleep(CacheConfig::default().poll_interval).await;
    assert_eq!(rejection(verify_on(&s.b, &token).await), Rejection::Revoked);
    drop(s.b);
    tokio::time::timeout(Duration::from_secs(5), follower)
        .await
        .expect("the follower returns once the cache is gone")
        .unwrap();
}

#[test]
fn the_configuration_is_checked() {
    let store = MemoryKeyStore::new();
    for bad in [
        CacheConfig::default().capacity(0),
        CacheConfig::default().negative_capacity(0),
        CacheConfig::default().max_staleness(Duration::ZERO),
        CacheConfig::default().poll_interval(BOUND),
        CacheConfig::default().page_size(0),
    ] {
        assert!(CachedKeyStore::new(&store, bad).is_err());
    }
    let _ = StoreErrorKind::Backend;
}

#[tokio::test]
async fn max_staleness_sets_the_bound() {
    let bound = Duration::from_secs(3);
    let mut s = servers_with(
        MemoryKeyStore::new(),
        CacheConfig::default().max_staleness(bound),
    );
    let (id, token) = create(&s, "k").await;
    s.follower.poll().await.unwrap();
    verify_on(&s.b, &token).await.unwrap();
    s.a.revoke_async(&Actor::system(), &id).await.unwrap();
    s.clock.advance(bound - NS);
    verify_on(&s.b, &token).await.unwrap();
    s.clock.advance(NS);
    assert_eq!(rejection(verify_on(&s.b, &token).await), Rejection::Revoked);
}

#[tokio::test]
async fn a_poll_reads_page_after_page_to_the_end() {
    let mut s = servers_with(MemoryKeyStore::new(), CacheConfig::default().page_size(2));
    let (id, token) = create(&s, "k").await;
    s.follower.poll().await.unwrap();
    verify_on(&s.b, &token).await.unwrap();
    for i in 0..5 {
        create(&s, &format!("n{i}")).await;
    }
    s.a.revoke_async(&Actor::system(), &id).await.unwrap();
    let r = s.follower.poll().await.unwrap();
    assert!(r.confirmed);
    assert_eq!(r.changes, 6);
    assert_eq!(rejection(verify_on(&s.b, &token).await), Rejection::Revoked);
}

#[tokio::test(start_paused = true)]
async fn the_follower_polls_at_its_interval() {
    let config = CacheConfig::default()
        .max_staleness(Duration::from_secs(60))
        .poll_interval(Duration::from_secs(20));
    let s = servers_with(MemoryKeyStore::new(), config);
    let (id, token) = create(&s, "k").await;
    let follower = tokio::spawn(s.follower.run(tokio::time::sleep));
    tokio::time::sleep(Duration::from_millis(10)).await;
    verify_on(&s.b, &token).await.unwrap();
    s.a.revoke_async(&Actor::system(), &id).await.unwrap();
    tokio::time::sleep(Duration::from_secs(19)).await;
    verify_on(&s.b, &token).await.unwrap(); // not polled yet
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(rejection(verify_on(&s.b, &token).await), Rejection::Revoked);
    follower.abort();
}

/// Notifications rung by hand; `Err` when `broken`.
struct Bell {
    ring: Arc<Notify>,
    broken: Arc<AtomicBool>,
}

impl api_keys::ChangeNotifications for Bell {
    async fn changed(&mut self) -> Result<(), StoreError> {
        if self.broken.load(SeqCst) {
            return Err(StoreError::backend("listener lost"));
        }
        self.ring.notified().await;
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_notification_triggers_a_read_at_once_and_a_broken_channel_falls_back_to_polls() {
    let config = CacheConfig::default()
        .max_staleness(Duration::from_secs(60))
        .poll_interval(Duration::from_secs(20));
    let s = servers_with(MemoryKeyStore::new(), config);
    let (id, token) = create(&s, "k").await;
    let (id2, token2) = create(&s, "k2").await;
    let ring = Arc::new(Notify::new());
    let broken = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&errors);
    let bell = Bell {
        ring: Arc::clone(&ring),
        broken: Arc::clone(&broken),
    };
    let follower = tokio::spawn(
        s.follower
            .on_error(move |_| {
                seen.fetch_add(1, SeqCst);
            })
            .run_with_notifications(bell, tokio::time::sleep),
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    verify_on(&s.b, &token).await.unwrap();
    verify_on(&s.b, &token2).await.unwrap();
    s.a.revoke_async(&Actor::system(), &id).await.unwrap();
    ring.notify_one();
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(rejection(verify_on(&s.b, &token).await), Rejection::Revoked);

    // The channel breaks: reported, and the regular polls carry on.
    broken.store(true, SeqCst);
    tokio::time::sleep(Duration::from_secs(21)).await;
    assert!(errors.load(SeqCst) >= 1);
    s.a.revoke_async(&Actor::system(), &id2).await.unwrap();
    tokio::time::sleep(Duration::from_secs(41)).await;
    assert_eq!(
        rejection(verify_on(&s.b, &token2).await),
        Rejection::Revoked
    );
    assert!(s.b.store().is_confirmed());
    follower.abort();
}

#[tokio::test]
async fn audit_scans_read_the_store_not_the_cache() {
    let s = servers();
    let (id, token) = create(&s, "k").await;
    verify_on(&s.a, &token).await.unwrap(); // now cached in A
    // Revoked behind A's back, straight in the shared store.
    KeyManager::new(Arc::clone(&s.shared))
        .revoke(&Actor::system(), &id)
        .unwrap();
    let page = s.a.list_all_async(None, 10).await.unwrap();
    assert_eq!(page.keys.len(), 1);
    assert_eq!(page.keys[0].status, api_keys::KeyStatus::Revoked);
}

/// The manager's counts through a cache: uses the store did not take stay
/// with the manager (never counted in the cached record too), and a flush
/// reaches the cached record, so `get` served from the cache is exact.
#[tokio::test]
async fn use_counts_through_the_cache_are_exact() {
    let shared = Arc::new(MemoryKeyStore::new());
    let faulty = Faulty::over(&shared);
    let cache = CachedKeyStore::with_clock(
        Arc::clone(&faulty),
        CacheConfig::default(),
        Arc::new(ManualMonotonicClock::new()),
    )
    .unwrap();
    let mut follower = cache.follower(FeedSwitch::over(&shared));
    let wall = Arc::new(api_keys::testing::ManualClock::new(
        time::macros::utc_datetime!(2026-09-01 00:00),
    ));
    let keys = KeyManager::builder(cache)
        .clock(Arc::clone(&wall))
        .build()
        .unwrap();
    let key = keys
        .create_async(&Actor::system(), NewKey::secret(owner(), "counted"))
        .await
        .unwrap();
    let id = key.record.id;
    follower.poll().await.unwrap();
    let written = || async { shared.get(&id).await.unwrap().unwrap().use_count };
    for _ in 0..3 {
        verify_on(&keys, &key.token).await.unwrap();
    }
    // The first use was written (and is in the cached record), two wait.
    assert_eq!(written().await, 1);
    assert_eq!(keys.get_async(&id).await.unwrap().use_count, 3);
    // The database refuses the next due write: the cached record must not
    // count those uses, which the manager keeps for a later write.
    faulty.down.store(true, SeqCst);
    wall.advance(time::Duration::seconds(61));
    verify_on(&keys, &key.token).await.unwrap();
    assert_eq!(faulty.touches.load(SeqCst), 2);
    assert_eq!(keys.pending_usage(), 1);
    assert_eq!(keys.get_async(&id).await.unwrap().use_count, 4);
    // Back up: a flush writes them, and the cached record follows.
    faulty.down.store(false, SeqCst);
    keys.flush_usage_async().await.unwrap();
    assert_eq!(written().await, 4);
    assert_eq!(keys.get_async(&id).await.unwrap().use_count, 4);
}

#[tokio::test]
async fn a_failed_touch_still_moves_the_cached_last_use_so_a_down_store_is_not_hammered() {
    let mut s = servers();
    let (id, token) = create(&s, "k").await;
    s.follower.poll().await.unwrap();
    // Cached, never used yet: the first accepted request touches.
    assert!(s.b.get_async(&id).await.unwrap().last_used_at.is_none());
    s.b_store.down.store(true, SeqCst);
    let touches = s.b_store.touches.load(SeqCst);
    for _ in 0..5 {
        verify_on(&s.b, &token).await.unwrap();
    }
    assert_eq!(
        s.b_store.touches.load(SeqCst),
        touches + 1,
        "one touch tried"
    );
    // The uses the store did not take stay counted by the manager.
    assert_eq!(s.b.pending_usage(), 1, "one key with uses to write");
    assert_eq!(s.b.get_async(&id).await.unwrap().use_count, 5);
}

#[tokio::test]
async fn the_cache_shows_its_settings_and_counters_and_no_record() {
    let mut s = servers_with(
        MemoryKeyStore::new(),
        CacheConfig::default().gap_timeout(Duration::from_secs(31)),
    );
    let (_, token) = create(&s, "k").await;
    s.follower.poll().await.unwrap();
    verify_on(&s.b, &token).await.unwrap();
    verify_on(&s.b, &token).await.unwrap();
    let shown = format!("{:?}", s.b.store());
    assert!(shown.starts_with("CachedKeyStore"), "{shown}");
    assert!(shown.contains("gap_timeout: 31s"), "{shown}");
    assert!(shown.contains("hits: 1"), "{shown}");
    assert!(shown.contains("records: 1"), "{shown}");
    assert!(!shown.contains(token.expose_secret()), "{shown}");
    let follower = format!("{:?}", s.follower);
    assert!(follower.starts_with("FeedFollower"), "{follower}");
    assert!(follower.contains("last_seen: Some(1)"), "{follower}");
}

#[tokio::test]
async fn the_cache_tells_how_long_ago_the_feed_was_confirmed_and_can_be_emptied() {
    let mut s = servers();
    let (_, token) = create(&s, "k").await;
    assert_eq!(s.b.store().confirmed_ago(), None, "never confirmed");
    s.clock.advance(Duration::from_secs(5));
    // The first read starts at the feed's head: confirmed, from scratch.
    let first = s.follower.poll().await.unwrap();
    assert!(first.confirmed && first.resynced, "{first:?}");
    assert_eq!(first.last_seen, 1);
    s.clock.advance(Duration::from_millis(250));
    assert_eq!(
        s.b.store().confirmed_ago(),
        Some(Duration::from_millis(250))
    );
    verify_on(&s.b, &token).await.unwrap();
    let (gets, resyncs) = (s.b_store.gets.load(SeqCst), s.b.store().stats().resyncs);
    verify_on(&s.b, &token).await.unwrap();
    assert_eq!(s.b_store.gets.load(SeqCst), gets, "served from the cache");
    s.b.store().clear();
    assert_eq!(s.b.store().stats().records, 0);
    assert_eq!(s.b.store().stats().resyncs, resyncs + 1);
    verify_on(&s.b, &token).await.unwrap();
    assert_eq!(
        s.b_store.gets.load(SeqCst),
        gets + 1,
        "read again after clear"
    );
}

#[tokio::test]
async fn a_failed_touch_moves_an_older_cached_last_use_too() {
    let mut s = servers();
    let (_, token) = create(&s, "k").await;
    s.follower.poll().await.unwrap();
    // From the creating server's clock on: the key is valid.
    let clock = Arc::new(api_keys::testing::ManualClock::new(
        s.a.now() + time::Duration::seconds(1),
    ));
    let interval = time::Duration::seconds(60);
    let b = KeyManager::builder(s.b.store().clone())
        .clock(Arc::clone(&clock))
        .policy(api_keys::Policy {
            touch_interval: interval,
            ..api_keys::Policy::default()
        })
        .build()
        .unwrap();
    let touches = s.b_store.touches.load(SeqCst);
    assert!(verify_on(&b, &token).await.unwrap().touched(), "written");
    // Later, the store is down: one touch is tried, and the cached record
    // remembers it, so the next requests within the interval try none.
    clock.advance(interval * 2);
    s.b_store.down.store(true, SeqCst);
    for _ in 0..3 {
        verify_on(&b, &token).await.unwrap();
    }
    assert_eq!(s.b_store.touches.load(SeqCst), touches + 2);
}

/// The default `touch_many` of an async host store (`Faulty` keeps it):
/// one `touch` per key, unknown keys skipped, any other failure returned.
#[tokio::test]
async fn the_default_async_batch_touch_skips_unknown_keys_and_fails_on_the_rest() {
    let s = servers();
    let (id, _) = create(&s, "k").await;
    let at = s.a.now();
    let batch = [
        (KeyId::from_bytes([3; 16]), api_keys::Usage { at, uses: 1 }),
        (id, api_keys::Usage { at, uses: 4 }),
    ];
    assert!(AsyncKeyStore::touch_many(&*s.b_store, &batch).await.is_ok());
    assert_eq!(s.shared.get(&id).await.unwrap().unwrap().use_count, 4);
    s.b_store.down.store(true, SeqCst);
    let failed = AsyncKeyStore::touch_many(&*s.b_store, &batch).await;
    assert!(failed.is_err_and(|e| e.kind() == StoreErrorKind::Backend));
}
