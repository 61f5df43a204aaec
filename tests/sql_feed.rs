//! The change feed and the verification cache on real databases: two
//! "servers" (two managers, two caches, two pools) on one database.
//!
//! * PostgreSQL: a revoke on A is refused on B with notifications, with
//!   notifications lost, with polling only, and — feed stalled — at exactly
//!   the staleness bound (B's monotonic clock is a manual one, so the bound
//!   is tested by construction, never by timing); a database that is down
//!   fails closed; a roll on A is grace on B; two interleaved write
//!   transactions cannot commit out of number order (the second waits on
//!   the counter) and the follower sees both; the cache never serves a
//!   record for another id; touches written behind are batched, never lost
//!   while the buffer has room, and flushed at shutdown.
//! * MariaDB and SQLite: the feed's numbering (contiguous under concurrent
//!   writes, one change per key written, none for touches), a revoke
//!   reaching the other server, pruning; MariaDB also the interleaved
//!   transactions.
//!
//! Each test works in a namespace of its own (a PostgreSQL schema, a
//! MariaDB database, a SQLite file). Servers: `API_KEYS_TEST_POSTGRES_URL`
//! and `API_KEYS_TEST_MYSQL_URL` (see `tests/sql_stores.rs`; `.ci/run`
//! starts both and sets `API_KEYS_TEST_REQUIRE_DATABASE=1`).
#![cfg(all(
    feature = "cache",
    any(feature = "postgres", feature = "mysql", feature = "sqlite")
))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    dead_code,
    reason = "test code: a failed expectation should panic"
)]

use api_keys::cache::{CacheConfig, CachedKeyStore, FeedFollower};
use api_keys::testing::ManualMonotonicClock;
use api_keys::{
    Actor, AsyncKeyStore, ChangeFeed, ChangeNotifications, KeyId, KeyManager, NewKey, OwnerId,
    Rejection, RequestContext, RollOptions, StoreError, Token, VerifyError, WriteBehindConfig,
    WriteBehindStore,
};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

const REQUIRE: &str = "API_KEYS_TEST_REQUIRE_DATABASE";
/// A guard against a hung test, never an assertion on speed.
const PATIENCE: Duration = Duration::from_secs(30);

fn say(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::TryRng::try_fill_bytes(&mut rand::rngs::SysRng, &mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn server(var: &str, test: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os(REQUIRE).is_none_or(|v| v != "1"),
                "{test}: {REQUIRE}=1 but {var} is not set"
            );
            say(&format!("skipped {test}: {var} is not set"));
            None
        }
    }
}

/// One engine: a fresh namespace, and stores connected to it.
trait Db: Sized + Send + Sync + 'static {
    type Store: AsyncKeyStore + ChangeFeed + Clone + Send + Sync + 'static;
    /// A fresh namespace for `test`, or `None` (skipped).
    fn namespace(test: &str) -> impl Future<Output = Option<Self>> + Send;
    /// A store on its own pool, migrated.
    fn store(&self) -> impl Future<Output = Self::Store> + Send;
    fn prune(store: &Self::Store, keep: u64) -> impl Future<Output = u64> + Send;
}

#[cfg(feature = "postgres")]
struct Pg {
    url: String,
}

#[cfg(feature = "postgres")]
impl Db for Pg {
    type Store = api_keys::PostgresKeyStore;
    async fn namespace(test: &str) -> Option<Self> {
        let base = server("API_KEYS_TEST_POSTGRES_URL", test)?;
        let schema = format!("api_keys_feed_{}", random_hex(6));
        let admin = api_keys::PostgresKeyStore::connect(&base).await.unwrap();
        sqlx::Executor::execute(admin.pool(), format!("CREATE SCHEMA {schema}").as_str())
            .await
            .unwrap();
        let sep = if base.contains('?') { '&' } else { '?' };
        Some(Self {
            url: format!("{base}{sep}options=-c%20search_path%3D{schema}"),
        })
    }
    async fn store(&self) -> Self::Store {
        let s = api_keys::PostgresKeyStore::connect(&self.url)
            .await
            .unwrap();
        s.migrate().await.unwrap();
        s
    }
    async fn prune(store: &Self::Store, keep: u64) -> u64 {
        store.prune_changes(keep).await.unwrap()
    }
}

#[cfg(feature = "mysql")]
struct My {
    url: String,
}

#[cfg(feature = "mysql")]
impl Db for My {
    type Store = api_keys::MySqlKeyStore;
    async fn namespace(test: &str) -> Option<Self> {
        let base = server("API_KEYS_TEST_MYSQL_URL", test)?;
        let name = format!("api_keys_test_{}", random_hex(6));
        let admin = api_keys::MySqlKeyStore::connect(&base).await.unwrap();
        sqlx::Executor::execute(admin.pool(), format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap();
        let (server, _) = base.rsplit_once('/').unwrap();
        Some(Self {
            url: format!("{server}/{name}"),
        })
    }
    async fn store(&self) -> Self::Store {
        let s = api_keys::MySqlKeyStore::connect(&self.url).await.unwrap();
        s.migrate().await.unwrap();
        s
    }
    async fn prune(store: &Self::Store, keep: u64) -> u64 {
        store.prune_changes(keep).await.unwrap()
    }
}

#[cfg(feature = "sqlite")]
struct Lite {
    dir: std::path::PathBuf,
}

#[cfg(feature = "sqlite")]
impl Drop for Lite {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(feature = "sqlite")]
impl Db for Lite {
    type Store = api_keys::SqliteKeyStore;
    async fn namespace(_test: &str) -> Option<Self> {
        let dir = std::env::temp_dir().join(format!("api-keys-feed-{}", random_hex(8)));
        std::fs::create_dir_all(&dir).unwrap();
        Some(Self { dir })
    }
    async fn store(&self) -> Self::Store {
        let s = api_keys::SqliteKeyStore::open(self.dir.join("keys.db"))
            .await
            .unwrap();
        s.migrate().await.unwrap();
        s
    }
    async fn prune(store: &Self::Store, keep: u64) -> u64 {
        store.prune_changes(keep).await.unwrap()
    }
}

fn owner() -> OwnerId {
    OwnerId::new(format!("acct_{}", random_hex(6))).unwrap()
}

async fn create<S: AsyncKeyStore>(
    m: &KeyManager<S>,
    owner: &OwnerId,
    name: &str,
) -> (KeyId, Token) {
    let k = m
        .create_async(&Actor::system(), NewKey::secret(owner.clone(), name))
        .await
        .unwrap();
    (k.record.id, k.token)
}

async fn verify<S: AsyncKeyStore>(
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

/// Verifies on `m` until it refuses (the feed reached it), within
/// [`PATIENCE`]; the refusal.
async fn refused_eventually<S: AsyncKeyStore>(m: &KeyManager<S>, token: &Token) -> Rejection {
    let wait = async {
        loop {
            match verify(m, token).await {
                Ok(_) => tokio::time::sleep(Duration::from_millis(2)).await,
                Err(e) => return e.rejection().expect("a rejection, not a failure"),
            }
        }
    };
    tokio::time::timeout(PATIENCE, wait)
        .await
        .expect("the change did not reach the other server")
}

/// Notifications that never arrive.
struct Deaf;
impl ChangeNotifications for Deaf {
    async fn changed(&mut self) -> Result<(), StoreError> {
        std::future::pending().await
    }
}

/// Server A (its own cache and pool) and server B (a cache on a manual
/// monotonic clock, its own pool).
struct Two<D: Db> {
    db: D,
    a: KeyManager<CachedKeyStore<D::Store>>,
    b: KeyManager<CachedKeyStore<D::Store>>,
    b_raw: D::Store,
    clock: Arc<ManualMonotonicClock>,
    config: CacheConfig,
}

async fn two<D: Db>(db: D, config: CacheConfig) -> Two<D> {
    let a_store = db.store().await;
    let b_raw = db.store().await;
    let clock = Arc::new(ManualMonotonicClock::new());
    let a = KeyManager::new(CachedKeyStore::new(a_store, config.clone()).unwrap());
    let b = KeyManager::new(
        CachedKeyStore::with_clock(b_raw.clone(), config.clone(), Arc::clone(&clock)).unwrap(),
    );
    Two {
        db,
        a,
        b,
        b_raw,
        clock,
        config,
    }
}

impl<D: Db> Two<D> {
    fn follower(&self) -> FeedFollower<D::Store> {
        self.b.store().follower(self.b_raw.clone())
    }

    /// Waits until B's follower has confirmed the feed once.
    async fn confirmed(&self) {
        tokio::time::timeout(PATIENCE, async {
            while !self.b.store().is_confirmed() {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await
        .expect("the follower never confirmed the feed");
    }

    /// A key created on A and cached on B.
    async fn cached_key(&self) -> (KeyId, Token) {
        let (id, token) = create(&self.a, &owner(), "k").await;
        // B learns of the key through the feed (its negative entry, if any,
        // is evicted) and then caches it.
        // (A fill that races the eviction of the create is dropped: verify
        // until B answers from its cache.)
        let wait = async {
            loop {
                let hits = self.b.store().stats().hits;
                if verify(&self.b, &token).await.is_ok() && self.b.store().stats().hits > hits {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        };
        tokio::time::timeout(PATIENCE, wait)
            .await
            .expect("B never served the key from its cache");
        (id, token)
    }

    /// The bound, by construction: whatever B's follower did, once B's
    /// clock has moved `max_staleness` past A's revoke, B refuses at once.
    async fn revoke_is_refused_at_the_bound(&self) {
        let (id, token) = self.cached_key().await;
        self.a.revoke_async(&Actor::system(), &id).await.unwrap();
        self.clock.advance(self.config.max_staleness);
        assert_eq!(rejection(verify(&self.b, &token).await), Rejection::Revoked);
    }
}

// ---- PostgreSQL: every mode ---------------------------------------------------

/// Notifications on: polls every hour, so only a notification can carry
/// the revoke across in time.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn pg_revoke_reaches_b_through_notifications() {
    let Some(db) = Pg::namespace("pg_revoke_reaches_b_through_notifications").await else {
        return;
    };
    let config = CacheConfig::default()
        .max_staleness(Duration::from_secs(7_200))
        .poll_interval(Duration::from_secs(3_600));
    let s = two(db, config).await;
    let listener = s.b_raw.change_listener().await.unwrap();
    let follower = tokio::spawn(
        s.follower()
            .run_with_notifications(listener, tokio::time::sleep),
    );
    s.confirmed().await;
    let (id, token) = s.cached_key().await;
    s.a.revoke_async(&Actor::system(), &id).await.unwrap();
    // B's clock has not moved: the refusal comes from the eviction.
    assert_eq!(refused_eventually(&s.b, &token).await, Rejection::Revoked);
    assert!(s.b.store().is_confirmed());

    // A roll on A is grace on B.
    let (id, token) = s.cached_key().await;
    let rolled =
        s.a.roll_async(&Actor::system(), &id, RollOptions::default())
            .await
            .unwrap();
    let wait = async {
        loop {
            if verify(&s.b, &token).await.unwrap().in_grace() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    tokio::time::timeout(PATIENCE, wait).await.unwrap();
    let v = verify(&s.b, &token).await.unwrap();
    assert_eq!(v.successor(), Some(rolled.successor.id));
    verify(&s.b, &rolled.token).await.unwrap();

    s.revoke_is_refused_at_the_bound().await;
    follower.abort();
}

/// Notifications lost: the follower listens to a channel that never
/// fires; its polls carry the revoke.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn pg_revoke_reaches_b_when_notifications_are_lost() {
    let Some(db) = Pg::namespace("pg_revoke_reaches_b_when_notifications_are_lost").await else {
        return;
    };
    let config = CacheConfig::default()
        .max_staleness(Duration::from_secs(7_200))
        .poll_interval(Duration::from_millis(20));
    let s = two(db, config).await;
    let follower = tokio::spawn(
        s.follower()
            .run_with_notifications(Deaf, tokio::time::sleep),
    );
    s.confirmed().await;
    let (id, token) = s.cached_key().await;
    s.a.revoke_async(&Actor::system(), &id).await.unwrap();
    assert_eq!(refused_eventually(&s.b, &token).await, Rejection::Revoked);
    s.revoke_is_refused_at_the_bound().await;
    follower.abort();
}

/// Polling only, and A's writes send no notifications at all (a
/// PostgreSQL-compatible database without `LISTEN`/`NOTIFY`).
#[cfg(feature = "postgres")]
#[tokio::test]
async fn pg_revoke_reaches_b_by_polling_only() {
    let Some(db) = Pg::namespace("pg_revoke_reaches_b_by_polling_only").await else {
        return;
    };
    let config = CacheConfig::default()
        .max_staleness(Duration::from_secs(7_200))
        .poll_interval(Duration::from_millis(20));
    let a_quiet = KeyManager::new(db.store().await.notifications(false));
    let s = two(db, config).await;
    let follower = tokio::spawn(s.follower().run(tokio::time::sleep));
    s.confirmed().await;
    let (id, token) = s.cached_key().await;
    a_quiet.revoke_async(&Actor::system(), &id).await.unwrap();
    assert_eq!(refused_eventually(&s.b, &token).await, Rejection::Revoked);
    s.revoke_is_refused_at_the_bound().await;
    follower.abort();
}

/// The feed stalls (B's follower read it once and never again): B serves
/// its cached record up to the bound and not a moment longer; then the
/// database goes down and B fails closed.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn pg_a_stalled_feed_fails_closed_at_the_bound() {
    let Some(db) = Pg::namespace("pg_a_stalled_feed_fails_closed_at_the_bound").await else {
        return;
    };
    let s = two(db, CacheConfig::default()).await;
    let mut follower = s.follower();
    follower.poll().await.unwrap();
    let (id, token) = create(&s.a, &owner(), "k").await;
    follower.poll().await.unwrap(); // the create (B has no entry yet)
    verify(&s.b, &token).await.unwrap();
    s.a.revoke_async(&Actor::system(), &id).await.unwrap();
    // No more feed reads. Within the bound B may serve the stale record …
    s.clock
        .advance(s.config.max_staleness - Duration::from_nanos(1));
    verify(&s.b, &token).await.unwrap();
    // … at the bound it reads through and refuses.
    s.clock.advance(Duration::from_nanos(1));
    assert_eq!(rejection(verify(&s.b, &token).await), Rejection::Revoked);
    // Database down (B's pool closed): every verification fails closed.
    let (_, other) = create(&s.a, &owner(), "other").await;
    s.b_raw.pool().close().await;
    for t in [&token, &other] {
        let err = verify(&s.b, t).await.unwrap_err();
        assert!(matches!(err, VerifyError::Store(_)), "{err:?}");
    }
    assert!(follower.poll().await.is_err());
}

/// Two write transactions that would commit in the opposite order of their
/// numbers: the first takes a number and stays open; the second (a revoke
/// through the store) must wait on the counter instead of taking the next
/// number and committing first, and the follower sees both, in order.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn pg_interleaved_writes_cannot_skip_a_change() {
    let Some(db) = Pg::namespace("pg_interleaved_writes_cannot_skip_a_change").await else {
        return;
    };
    let s = two(db, CacheConfig::default()).await;
    let (x, _) = create(&s.a, &owner(), "x").await;
    let (y, y_token) = create(&s.a, &owner(), "y").await;
    let mut follower = s.follower();
    follower.poll().await.unwrap();
    verify(&s.b, &y_token).await.unwrap();
    let head = s.b_raw.head().await.unwrap();

    // Transaction 1, by hand: the statements a write ends with.
    let pool = s.b_raw.pool().clone();
    let mut tx1 = pool.begin().await.unwrap();
    let tx1_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *tx1)
        .await
        .unwrap();
    let n1: i64 =
        sqlx::query_scalar("UPDATE api_key_feed SET seq = seq + 1 WHERE id = 1 RETURNING seq")
            .fetch_one(&mut *tx1)
            .await
            .unwrap();
    sqlx::query("INSERT INTO api_key_changes (seq, key_id) VALUES ($1, $2)")
        .bind(n1)
        .bind(x.as_bytes().to_vec())
        .execute(&mut *tx1)
        .await
        .unwrap();
    // Transaction 2: a revoke of y on A, which would be ready to commit
    // first.
    let a = Arc::new(s.a);
    let a2 = Arc::clone(&a);
    let revoke = tokio::spawn(async move { a2.revoke_async(&Actor::system(), &y).await });
    // It waits on the counter's row lock.
    tokio::time::timeout(PATIENCE, async {
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE $1 = ANY(pg_blocking_pids(pid)) AND query LIKE 'UPDATE api_key_feed%'",
            )
            .bind(tx1_pid)
            .fetch_one(&pool)
            .await
            .unwrap();
            if waiting > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the second write did not wait on the counter");
    assert!(!revoke.is_finished());
    // Meanwhile the follower sees neither.
    let page = s.b_raw.changes_since(head, 100).await.unwrap();
    assert!(page.changes.is_empty(), "{page:?}");
    follower.poll().await.unwrap();
    verify(&s.b, &y_token).await.unwrap();

    tx1.commit().await.unwrap();
    revoke.await.unwrap().unwrap();
    let page = s.b_raw.changes_since(head, 100).await.unwrap();
    let seqs: Vec<u64> = page.changes.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, [head + 1, head + 2]);
    assert_eq!(page.changes[0].key_id, x);
    assert_eq!(page.changes[1].key_id, y);
    let r = follower.poll().await.unwrap();
    assert_eq!((r.changes, r.last_seen), (2, head + 2));
    assert_eq!(rejection(verify(&s.b, &y_token).await), Rejection::Revoked);
}

/// Many keys, verifications racing revokes and evictions through the real
/// feed: every accept on B is for the key presented.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_the_cache_never_serves_a_record_for_another_id() {
    let Some(db) = Pg::namespace("pg_the_cache_never_serves_a_record_for_another_id").await else {
        return;
    };
    let config = CacheConfig::default().poll_interval(Duration::from_millis(10));
    let s = two(db, config).await;
    let follower = tokio::spawn(s.follower().run(tokio::time::sleep));
    s.confirmed().await;
    let who = owner();
    let mut keys = Vec::new();
    for i in 0..40 {
        let (id, t) = create(&s.a, &who, &format!("k{i}")).await;
        keys.push((id, t.expose_secret().to_owned()));
    }
    let b = Arc::new(s.b);
    let keys = Arc::new(keys);
    let mut tasks = Vec::new();
    for t in 0..4 {
        let b = Arc::clone(&b);
        let keys = Arc::clone(&keys);
        tasks.push(tokio::spawn(async move {
            for round in 0..20 {
                for (i, (id, tok)) in keys.iter().enumerate() {
                    if (i + round + t) % 2 == 0 {
                        continue;
                    }
                    match b.verify_async(tok, &RequestContext::new()).await {
                        Ok(v) => assert_eq!(v.id(), *id),
                        Err(e) => assert!(
                            matches!(
                                e.rejection(),
                                Some(Rejection::Revoked | Rejection::UnknownKey)
                            ),
                            "{e:?}"
                        ),
                    }
                }
            }
        }));
    }
    for (i, (id, _)) in keys.iter().enumerate() {
        if i % 3 == 0 {
            s.a.revoke_async(&Actor::system(), id).await.unwrap();
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    follower.abort();
}

/// Touches written behind on PostgreSQL: one `touch_many` statement per
/// batch, every key written while the buffer has room, and a close at
/// shutdown flushes what is pending.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn pg_touches_are_batched_and_flushed_at_shutdown() {
    let Some(db) = Pg::namespace("pg_touches_are_batched_and_flushed_at_shutdown").await else {
        return;
    };
    let pg = db.store().await;
    let behind = WriteBehindStore::new(pg.clone(), WriteBehindConfig::default().batch_size(100));
    let keys = KeyManager::new(behind.clone());
    let who = owner();
    let mut tokens = Vec::new();
    for i in 0..250 {
        tokens.push(create(&keys, &who, &format!("t{i}")).await);
    }
    for (_, t) in &tokens {
        assert!(verify(&keys, t).await.unwrap().touched());
    }
    let never: i64 =
        sqlx::query_scalar("SELECT count(*) FROM api_key_usage WHERE last_used_at IS NULL")
            .fetch_one(pg.pool())
            .await
            .unwrap();
    assert_eq!(never, 250, "nothing written on the request path");
    let report = behind
        .close(Duration::from_secs(20), tokio::time::sleep)
        .await;
    assert_eq!((report.written, report.abandoned), (250, 0));
    let stats = behind.stats();
    assert_eq!(stats.batches, 3, "250 keys in batches of 100");
    let never: i64 =
        sqlx::query_scalar("SELECT count(*) FROM api_key_usage WHERE last_used_at IS NULL")
            .fetch_one(pg.pool())
            .await
            .unwrap();
    assert_eq!(never, 0);
    for (id, _) in tokens.iter().take(3) {
        assert!(keys.get_async(id).await.unwrap().last_used_at.is_some());
    }
}

// ---- every engine: numbering, propagation, pruning -------------------------------

async fn numbering_and_pruning<D: Db>(db: D) {
    let s = two(db, CacheConfig::default()).await;
    let mut follower = s.follower();
    follower.poll().await.unwrap();
    let head = s.b_raw.head().await.unwrap();

    // Concurrent creates on A: contiguous numbers, one per key.
    let a = Arc::new(s.a);
    let mut tasks = Vec::new();
    for i in 0..12 {
        let a = Arc::clone(&a);
        tasks.push(tokio::spawn(async move {
            create(&a, &owner(), &format!("c{i}")).await
        }));
    }
    let mut created = Vec::new();
    for t in tasks {
        created.push(t.await.unwrap());
    }
    let page = s.b_raw.changes_since(head, 100).await.unwrap();
    let seqs: Vec<u64> = page.changes.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, (head + 1..=head + 12).collect::<Vec<_>>());
    let mut ids: Vec<KeyId> = page.changes.iter().map(|c| c.key_id).collect();
    let mut want: Vec<KeyId> = created.iter().map(|(id, _)| *id).collect();
    ids.sort();
    want.sort();
    assert_eq!(ids, want);
    let r = follower.poll().await.unwrap();
    assert!(r.confirmed);
    assert_eq!(r.last_seen, head + 12);

    // Touches are not changes; a roll is two.
    let (id, token) = &created[0];
    verify(&s.b, token).await.unwrap(); // touches (inline)
    let after_touch = s.b_raw.head().await.unwrap();
    assert_eq!(after_touch, head + 12);
    a.roll_async(&Actor::system(), id, RollOptions::default())
        .await
        .unwrap();
    assert_eq!(s.b_raw.head().await.unwrap(), head + 14);
    follower.poll().await.unwrap();
    assert!(verify(&s.b, token).await.unwrap().in_grace());

    // A revoke on A reaches B at the next read of the feed.
    let (id, token) = &created[1];
    verify(&s.b, token).await.unwrap();
    a.revoke_async(&Actor::system(), id).await.unwrap();
    follower.poll().await.unwrap();
    assert_eq!(rejection(verify(&s.b, token).await), Rejection::Revoked);

    // Pruning: a follower that falls behind it drops everything.
    let (id, token) = &created[2];
    verify(&s.b, token).await.unwrap();
    a.revoke_async(&Actor::system(), id).await.unwrap();
    for i in 0..3 {
        create(&a, &owner(), &format!("p{i}")).await;
    }
    let removed = D::prune(&s.b_raw, 2).await;
    assert!(removed >= 2, "removed {removed}");
    let resyncs = s.b.store().stats().resyncs;
    let r = follower.poll().await.unwrap();
    assert!(r.resynced && r.confirmed);
    assert_eq!(s.b.store().stats().resyncs, resyncs + 1);
    assert_eq!(rejection(verify(&s.b, token).await), Rejection::Revoked);
    // Pruning everything but nothing is a no-op.
    assert_eq!(D::prune(&s.b_raw, 1_000_000).await, 0);
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn pg_numbering_and_pruning() {
    if let Some(db) = Pg::namespace("pg_numbering_and_pruning").await {
        numbering_and_pruning(db).await;
    }
}

#[cfg(feature = "mysql")]
#[tokio::test]
async fn mysql_numbering_and_pruning() {
    if let Some(db) = My::namespace("mysql_numbering_and_pruning").await {
        numbering_and_pruning(db).await;
    }
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_numbering_and_pruning() {
    if let Some(db) = Lite::namespace("sqlite_numbering_and_pruning").await {
        numbering_and_pruning(db).await;
    }
}

/// MariaDB: the interleaved transactions (its counter has no `RETURNING`:
/// the store reads the value back under the lock).
#[cfg(feature = "mysql")]
#[tokio::test]
async fn mysql_interleaved_writes_cannot_skip_a_change() {
    let Some(db) = My::namespace("mysql_interleaved_writes_cannot_skip_a_change").await else {
        return;
    };
    let s = two(db, CacheConfig::default()).await;
    let (x, _) = create(&s.a, &owner(), "x").await;
    let (y, y_token) = create(&s.a, &owner(), "y").await;
    let mut follower = s.follower();
    follower.poll().await.unwrap();
    verify(&s.b, &y_token).await.unwrap();
    let head = s.b_raw.head().await.unwrap();

    let pool = s.b_raw.pool().clone();
    let mut tx1 = pool.begin().await.unwrap();
    sqlx::query("UPDATE api_key_feed SET seq = seq + 1 WHERE id = 1")
        .execute(&mut *tx1)
        .await
        .unwrap();
    let n1: i64 = sqlx::query_scalar("SELECT seq FROM api_key_feed WHERE id = 1")
        .fetch_one(&mut *tx1)
        .await
        .unwrap();
    sqlx::query("INSERT INTO api_key_changes (seq, key_id) VALUES (?, ?)")
        .bind(n1)
        .bind(x.as_bytes().to_vec())
        .execute(&mut *tx1)
        .await
        .unwrap();
    let a = Arc::new(s.a);
    let a2 = Arc::clone(&a);
    let revoke = tokio::spawn(async move { a2.revoke_async(&Actor::system(), &y).await });
    tokio::time::timeout(PATIENCE, async {
        loop {
            // The revoke's counter update still running while transaction
            // 1 holds the row: it waits for the lock. (The test user sees
            // its own sessions without the PROCESS privilege.)
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
                 WHERE DB = DATABASE() AND COMMAND <> 'Sleep' AND ID <> CONNECTION_ID() \
                 AND INFO LIKE 'UPDATE api_key_feed%'",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            if waiting > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the second write did not wait on the counter");
    assert!(!revoke.is_finished());
    assert!(
        s.b_raw
            .changes_since(head, 100)
            .await
            .unwrap()
            .changes
            .is_empty()
    );

    tx1.commit().await.unwrap();
    revoke.await.unwrap().unwrap();
    let page = s.b_raw.changes_since(head, 100).await.unwrap();
    let got: Vec<(u64, KeyId)> = page.changes.iter().map(|c| (c.seq, c.key_id)).collect();
    assert_eq!(got, [(head + 1, x), (head + 2, y)]);
    follower.poll().await.unwrap();
    assert_eq!(rejection(verify(&s.b, &y_token).await), Rejection::Revoked);
}

/// `notifications(false)`: that store's writes send nothing; another
/// store's do, with the feed's new head as the payload. The channel is the
/// whole database's, where other tests write too: this schema's counter
/// starts at a random number far above theirs, so its notifications are
/// told apart.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn pg_a_quiet_store_sends_no_notification() {
    let Some(db) = Pg::namespace("pg_a_quiet_store_sends_no_notification").await else {
        return;
    };
    let loud = db.store().await;
    let start = 1_000_000_000 + u64::from(u32::from_str_radix(&random_hex(3), 16).unwrap());
    sqlx::Executor::execute(
        loud.pool(),
        format!("UPDATE api_key_feed SET seq = {start}, pruned_through = {start} WHERE id = 1")
            .as_str(),
    )
    .await
    .unwrap();
    let quiet = KeyManager::new(db.store().await.notifications(false));
    let loud = KeyManager::new(loud);
    let mut listener = sqlx::postgres::PgListener::connect_with(quiet.store().pool())
        .await
        .unwrap();
    listener.listen("api_key_changes").await.unwrap();
    create(&quiet, &owner(), "quiet").await;
    create(&loud, &owner(), "loud").await;
    // The quiet write took change start + 1 and told no one; the first
    // notification of this schema is the loud write's, start + 2.
    let ours = async {
        loop {
            let n = listener.recv().await.unwrap();
            if let Some(seq) = n.payload().parse::<u64>().ok().filter(|s| *s > start) {
                return seq;
            }
        }
    };
    let first = tokio::time::timeout(PATIENCE, ours).await.unwrap();
    assert_eq!(first, start + 2);
}

/// The listener waits for a write (it is not ready before one), resumes a
/// wait that was given up, and shows nothing of its connection.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn pg_the_change_listener_waits_for_a_write() {
    let Some(db) = Pg::namespace("pg_the_change_listener_waits_for_a_write").await else {
        return;
    };
    let store = db.store().await;
    let mut listener = store.change_listener().await.unwrap();
    assert_eq!(format!("{listener:?}"), "PgChangeListener { .. }");
    {
        // Nothing was written: not ready at the first look.
        let mut waiting = std::pin::pin!(listener.changed());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
    }
    let keys = KeyManager::new(store);
    create(&keys, &owner(), "k").await;
    tokio::time::timeout(PATIENCE, listener.changed())
        .await
        .unwrap()
        .unwrap();
}
