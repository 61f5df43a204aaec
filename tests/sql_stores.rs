//! The SQL stores against real databases: `PostgresKeyStore` (feature
//! `postgres`), `MySqlKeyStore` (feature `mysql`, run on MariaDB) and
//! `SqliteKeyStore` (feature `sqlite`). One generic body per scenario, run
//! once per engine (and, where it applies, on `MemoryKeyStore` as the
//! reference).
//!
//! SQLite runs on a temporary file and needs nothing. PostgreSQL and
//! MariaDB need a server: `API_KEYS_TEST_POSTGRES_URL` and
//! `API_KEYS_TEST_MYSQL_URL`. Without one, each of that engine's tests
//! prints that it was skipped and how to run it, unless
//! `API_KEYS_TEST_REQUIRE_DATABASE=1` (CI sets it), which makes a missing
//! URL a failure. Throwaway servers on 127.0.0.1:
//!
//! ```sh
//! eval "$(.ci/postgres.sh start)"; eval "$(.ci/mariadb.sh start)"
//! cargo test --all-features --test sql_stores
//! .ci/postgres.sh stop; .ci/mariadb.sh stop
//! ```
//!
//! Every test writes keys for owners with random ids, so the tests run in
//! parallel against one database that need not be empty.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    async_fn_in_trait,
    dead_code,
    reason = "test code: a failed expectation should panic"
)]

use api_keys::testing::ManualClock;
use api_keys::{
    Actor, AsyncKeyAudit, AsyncKeyStore, DomainAllowList, Environment, Error, IpAllowList,
    KeyFilter, KeyId, KeyKind, KeyManager, KeyPage, KeyRecord, KeyStatus, KeyUpdate, NewKey,
    OwnerId, Policy, Rejection, RequestContext, RollOptions, Scopes, SealedSecret, SecretHash,
    StoreError, StoreErrorKind, Usage, WriteCondition,
};
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use time::macros::utc_datetime;
use time::{Duration, UtcDateTime};

#[cfg(not(any(feature = "postgres", feature = "sqlite", feature = "mysql")))]
#[test]
fn sql_stores_need_their_features() {
    say(
        "skipped the SQL store tests: each engine has a feature (`postgres`, `sqlite`, \
         `mysql`); run `cargo test --all-features --test sql_stores` (the scenarios still \
         run on MemoryKeyStore here)",
    );
}

// ---- engines ------------------------------------------------------------------

/// Where a test's stores connect; removes what it made when dropped.
struct Location {
    url: String,
    file: Option<std::path::PathBuf>,
}

impl Drop for Location {
    fn drop(&mut self) {
        if let Some(dir) = self.file.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// One engine under test.
trait Db: Send + Sync + 'static {
    type Store: AsyncKeyStore + AsyncKeyAudit + Clone + core::fmt::Debug + Send + Sync + 'static;
    const NAME: &'static str;
    /// The engine's database for this test, or `None` (after saying why)
    /// when it is skipped.
    fn location(test: &str) -> Option<Location>;
    fn connect(url: &str) -> impl Future<Output = Result<Self::Store, StoreError>> + Send;
    fn migrate(store: &Self::Store) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Runs literal SQL on the store's pool.
    async fn raw(store: &Self::Store, sql: &str) {
        assert!(Self::try_raw(store, sql).await, "{sql}");
    }
    /// Runs SQL; whether the database took it.
    async fn try_raw(store: &Self::Store, sql: &str) -> bool;
    /// A binary literal.
    fn blob(bytes: &[u8]) -> String;
    /// An empty namespace (schema, database or file) beside `location`, and
    /// the SQL that drops it (run through `location`).
    async fn fresh(location: &Location) -> (Location, Option<String>);
    /// URLs that must fail to connect.
    fn bad_urls() -> Vec<String>;
}

const REQUIRE: &str = "API_KEYS_TEST_REQUIRE_DATABASE";

/// Writes to the process's standard error directly: the test harness
/// captures `eprintln!` of passing tests, and a skip must be seen.
fn say(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn server_url(var: &str, test: &str, engine: &str, script: &str) -> Option<Location> {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Some(Location { url, file: None }),
        _ => {
            assert!(
                std::env::var_os(REQUIRE).is_none_or(|v| v != "1"),
                "{engine}::{test}: {REQUIRE}=1 but {var} is not set"
            );
            say(&format!(
                "skipped {engine}::{test}: {var} is not set (`eval \"$({script} start)\"` \
                 starts a throwaway server on 127.0.0.1 and sets it)"
            ));
            None
        }
    }
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::TryRng::try_fill_bytes(&mut rand::rngs::SysRng, &mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|x| format!("{x:02x}")).collect()
}

fn temp_sqlite() -> Location {
    let dir = std::env::temp_dir().join(format!("api-keys-sqlite-{}", random_hex(8)));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("keys.db").display());
    Location {
        url,
        file: Some(dir),
    }
}

#[cfg(feature = "postgres")]
struct Postgres;

#[cfg(feature = "postgres")]
impl Db for Postgres {
    type Store = api_keys::PostgresKeyStore;
    const NAME: &'static str = "postgres";
    fn location(test: &str) -> Option<Location> {
        server_url(
            "API_KEYS_TEST_POSTGRES_URL",
            test,
            Self::NAME,
            ".ci/postgres.sh",
        )
    }
    fn connect(url: &str) -> impl Future<Output = Result<Self::Store, StoreError>> + Send {
        api_keys::PostgresKeyStore::connect(url)
    }
    fn migrate(store: &Self::Store) -> impl Future<Output = Result<(), StoreError>> + Send {
        store.migrate()
    }
    async fn try_raw(store: &Self::Store, sql: &str) -> bool {
        sqlx::Executor::execute(store.pool(), sql).await.is_ok()
    }
    fn blob(bytes: &[u8]) -> String {
        format!("decode('{}', 'hex')", hex(bytes))
    }
    async fn fresh(location: &Location) -> (Location, Option<String>) {
        let schema = format!("api_keys_test_{}", random_hex(6));
        let admin = Self::connect(&location.url).await.unwrap();
        Self::raw(&admin, &format!("CREATE SCHEMA {schema}")).await;
        let sep = if location.url.contains('?') { '&' } else { '?' };
        let url = format!("{}{sep}options=-c%20search_path%3D{schema}", location.url);
        (
            Location { url, file: None },
            Some(format!("DROP SCHEMA {schema} CASCADE")),
        )
    }
    fn bad_urls() -> Vec<String> {
        vec![
            "not a url ===".into(),
            // Port 1 on loopback: nothing listens there.
            "postgres://nobody@127.0.0.1:1/none?connect_timeout=5".into(),
        ]
    }
}

#[cfg(feature = "mysql")]
struct MySql;

#[cfg(feature = "mysql")]
impl Db for MySql {
    type Store = api_keys::MySqlKeyStore;
    const NAME: &'static str = "mysql";
    fn location(test: &str) -> Option<Location> {
        server_url(
            "API_KEYS_TEST_MYSQL_URL",
            test,
            Self::NAME,
            ".ci/mariadb.sh",
        )
    }
    fn connect(url: &str) -> impl Future<Output = Result<Self::Store, StoreError>> + Send {
        api_keys::MySqlKeyStore::connect(url)
    }
    fn migrate(store: &Self::Store) -> impl Future<Output = Result<(), StoreError>> + Send {
        store.migrate()
    }
    async fn try_raw(store: &Self::Store, sql: &str) -> bool {
        sqlx::Executor::execute(store.pool(), sql).await.is_ok()
    }
    fn blob(bytes: &[u8]) -> String {
        format!("X'{}'", hex(bytes))
    }
    async fn fresh(location: &Location) -> (Location, Option<String>) {
        // The test user may create databases named `api_keys_test…`.
        let name = format!("api_keys_test_{}", random_hex(6));
        let admin = Self::connect(&location.url).await.unwrap();
        Self::raw(&admin, &format!("CREATE DATABASE {name}")).await;
        let (base, query) = match location.url.split_once('?') {
            Some((b, q)) => (b, format!("?{q}")),
            None => (location.url.as_str(), String::new()),
        };
        let (server, _db) = base.rsplit_once('/').unwrap();
        (
            Location {
                url: format!("{server}/{name}{query}"),
                file: None,
            },
            Some(format!("DROP DATABASE {name}")),
        )
    }
    fn bad_urls() -> Vec<String> {
        vec![
            "not a url ===".into(),
            "mysql://nobody@127.0.0.1:1/none".into(),
        ]
    }
}

/// A namespace of one test's own (schema, database or file), dropped when
/// the test ends, also when it fails: no test sees another's rows, nor rows
/// a failed or mutated run left behind.
struct Scratch<D: Db> {
    location: Location,
    base: String,
    drop_sql: Option<String>,
    engine: core::marker::PhantomData<fn() -> D>,
}

impl<D: Db> Scratch<D> {
    /// A fresh namespace beside `base`.
    async fn beside(base: &Location) -> Self {
        let (location, drop_sql) = D::fresh(base).await;
        Self {
            location,
            base: base.url.clone(),
            drop_sql,
            engine: core::marker::PhantomData,
        }
    }
}

impl<D: Db> Drop for Scratch<D> {
    fn drop(&mut self) {
        let Some(sql) = self.drop_sql.take() else {
            return;
        };
        let base = core::mem::take(&mut self.base);
        let statement = sql.clone();
        // Drop has no runtime to await on: a thread with its own. Best
        // effort: a throwaway server is deleted whole afterwards anyway.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let store = D::connect(&base).await.ok()?;
                D::try_raw(&store, &statement).await.then_some(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            say(&format!("could not drop a test namespace: {sql}"));
        }
    }
}

#[cfg(feature = "sqlite")]
struct Sqlite;

#[cfg(feature = "sqlite")]
impl Db for Sqlite {
    type Store = api_keys::SqliteKeyStore;
    const NAME: &'static str = "sqlite";
    fn location(_test: &str) -> Option<Location> {
        Some(temp_sqlite())
    }
    fn connect(url: &str) -> impl Future<Output = Result<Self::Store, StoreError>> + Send {
        api_keys::SqliteKeyStore::connect(url)
    }
    fn migrate(store: &Self::Store) -> impl Future<Output = Result<(), StoreError>> + Send {
        store.migrate()
    }
    async fn try_raw(store: &Self::Store, sql: &str) -> bool {
        sqlx::Executor::execute(store.pool(), sql).await.is_ok()
    }
    fn blob(bytes: &[u8]) -> String {
        format!("X'{}'", hex(bytes))
    }
    async fn fresh(_location: &Location) -> (Location, Option<String>) {
        (temp_sqlite(), None)
    }
    fn bad_urls() -> Vec<String> {
        vec!["sqlite:///nonexistent-dir-api-keys/sub/keys.db".into()]
    }
}

async fn open<D: Db>(url: &str) -> D::Store {
    let store = D::connect(url).await.unwrap();
    D::migrate(&store).await.unwrap();
    store
}

// ---- helpers -------------------------------------------------------------------

fn owner(tag: &str) -> OwnerId {
    OwnerId::new(format!("sqltest-{tag}-{}", random_hex(8))).unwrap()
}

fn random_id() -> KeyId {
    let mut b = [0u8; 16];
    rand::TryRng::try_fill_bytes(&mut rand::rngs::SysRng, &mut b).unwrap();
    KeyId::from_bytes(b)
}

fn admin() -> Actor {
    Actor::new("user:1").unwrap()
}

/// A manager over `store` with a manual clock at `t`.
fn manager<S>(store: S, t: UtcDateTime, policy: Policy) -> (KeyManager<S>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(t));
    let keys = KeyManager::builder(store)
        .clock(Arc::clone(&clock))
        .policy(policy)
        .build()
        .unwrap();
    (keys, clock)
}

/// Verifies at the clock's instant: `Ok(in_grace)` or the rejection.
async fn check<S: AsyncKeyStore>(
    keys: &KeyManager<S>,
    token: &api_keys::Token,
) -> Result<bool, Rejection> {
    match keys
        .verify_async(token.expose_secret(), &RequestContext::new())
        .await
    {
        Ok(v) => Ok(v.in_grace()),
        Err(e) => Err(e.rejection().expect("a rejection, not a failure")),
    }
}

/// A record with every field set, at microsecond precision.
fn full_record() -> KeyRecord {
    let t: UtcDateTime = utc_datetime!(2026-03-01 09:00:00.123_456);
    KeyRecord {
        id: random_id(),
        owner: owner("fields"),
        kind: KeyKind::Publishable,
        environment: Environment::Test,
        name: "name with 'quotes', ünïcode, commas, \"more\" and ; -- ".into(),
        note: Some("line one\nline two\ttab".into()),
        description: Some("described".into()),
        scopes: Scopes::new(["read:keys", "write/all", "x.y-z_1"]).unwrap(),
        allowed_domains: DomainAllowList::new(["example.com", "*.example.org"]).unwrap(),
        allowed_ips: IpAllowList::parse("192.0.2.1,2001:db8::/32").unwrap(),
        status: KeyStatus::Inactive,
        created_at: t,
        expires_at: Some(t + Duration::days(30)),
        last_used_at: Some(t + Duration::seconds(1)),
        use_count: 9_000_000_000,
        revoked_at: Some(t + Duration::seconds(2)),
        predecessor: Some(random_id()),
        successor: Some(random_id()),
        rolled_at: Some(t + Duration::seconds(3)),
        grace_ends_at: Some(t + Duration::hours(12)),
        version: 7,
        secret_hash: Some(SecretHash {
            pepper_version: Some(u32::MAX),
            digest: [0xA5; 32],
        }),
        signing: true,
        sealed_secret: Some(SealedSecret {
            key_version: u32::MAX,
            nonce: [9; 24],
            ciphertext: (0..=255).collect(),
        }),
        redacted: "pk_test_…x9Qa".into(),
    }
}

/// Field by field, so a failure names the field.
fn assert_same(got: &KeyRecord, want: &KeyRecord) {
    assert_eq!(got.id, want.id, "id");
    assert_eq!(got.owner, want.owner, "owner");
    assert_eq!(got.kind, want.kind, "kind");
    assert_eq!(got.environment, want.environment, "environment");
    assert_eq!(got.name, want.name, "name");
    assert_eq!(got.note, want.note, "note");
    assert_eq!(got.description, want.description, "description");
    assert_eq!(got.scopes, want.scopes, "scopes");
    assert_eq!(got.allowed_domains, want.allowed_domains, "allowed_domains");
    assert_eq!(got.allowed_ips, want.allowed_ips, "allowed_ips");
    assert_eq!(got.status, want.status, "status");
    assert_eq!(got.created_at, want.created_at, "created_at");
    assert_eq!(got.expires_at, want.expires_at, "expires_at");
    assert_eq!(got.last_used_at, want.last_used_at, "last_used_at");
    assert_eq!(got.revoked_at, want.revoked_at, "revoked_at");
    assert_eq!(got.predecessor, want.predecessor, "predecessor");
    assert_eq!(got.successor, want.successor, "successor");
    assert_eq!(got.rolled_at, want.rolled_at, "rolled_at");
    assert_eq!(got.grace_ends_at, want.grace_ends_at, "grace_ends_at");
    assert_eq!(got.version, want.version, "version");
    assert_eq!(got.secret_hash, want.secret_hash, "secret_hash");
    assert_eq!(got.sealed_secret, want.sealed_secret, "sealed_secret");
    assert_eq!(got.redacted, want.redacted, "redacted");
    assert_eq!(got, want);
}

// ---- scenarios: any store --------------------------------------------------------

/// Every field, including the rarely set ones, survives a round trip
/// through insert, get, list and update; sub-microsecond parts are rounded
/// down; touch moves forward only and leaves the version alone.
async fn every_field_round_trips<S: AsyncKeyStore>(store: &S, lossy_nanos: bool) {
    let record = full_record();
    store.insert(&record, WriteCondition::Always).await.unwrap();
    assert_same(&store.get(&record.id).await.unwrap().unwrap(), &record);
    let listed = store.list_by_owner(&record.owner).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_same(&listed[0], &record);

    // An update rewrites every field (owner and id excepted).
    let mut changed = record.clone();
    changed.kind = KeyKind::Secret;
    changed.environment = Environment::Live;
    changed.name = "renamed".into();
    changed.note = None;
    changed.scopes = Scopes::new(["only"]).unwrap();
    changed.allowed_domains = DomainAllowList::default();
    changed.allowed_ips = IpAllowList::parse("10.0.0.0/8").unwrap();
    changed.status = KeyStatus::Active;
    changed.expires_at = None;
    changed.last_used_at = Some(record.created_at + Duration::days(2));
    changed.revoked_at = None;
    changed.successor = None;
    changed.version = 8;
    changed.secret_hash = changed.secret_hash.map(|h| SecretHash {
        pepper_version: None,
        ..h
    });
    changed.sealed_secret = None;
    changed.signing = false;
    changed.redacted = "sk_live_…abcd".into();
    store
        .update(&changed, 7, WriteCondition::Always)
        .await
        .unwrap();
    assert_same(&store.get(&record.id).await.unwrap().unwrap(), &changed);

    // A bare record: every optional field empty.
    let mut bare = record.clone();
    bare.id = random_id();
    bare.note = None;
    bare.description = None;
    bare.scopes = Scopes::default();
    bare.allowed_domains = DomainAllowList::default();
    bare.allowed_ips = IpAllowList::default();
    bare.expires_at = None;
    bare.last_used_at = None;
    bare.revoked_at = None;
    bare.predecessor = None;
    bare.successor = None;
    bare.rolled_at = None;
    bare.grace_ends_at = None;
    bare.secret_hash = bare.secret_hash.map(|h| SecretHash {
        pepper_version: None,
        ..h
    });
    bare.sealed_secret = None;
    bare.signing = false;
    bare.use_count = 0;
    let micro = bare.created_at;
    bare.created_at = utc_datetime!(2026-03-01 09:00:00.123_456_789);
    store.insert(&bare, WriteCondition::Always).await.unwrap();
    let back = store.get(&bare.id).await.unwrap().unwrap();
    if lossy_nanos {
        assert_eq!(back.created_at, micro, "rounded down to the microsecond");
        bare.created_at = micro;
    }
    assert_same(&back, &bare);

    // touch at sub-microsecond precision: forward only, no version change.
    let later = utc_datetime!(2026-03-02 00:00:00.000_001_999);
    store.touch(&bare.id, Usage::once(later)).await.unwrap();
    store
        .touch(
            &bare.id,
            Usage::once(utc_datetime!(2026-03-02 00:00:00.000_001_500)),
        )
        .await
        .unwrap();
    let back = store.get(&bare.id).await.unwrap().unwrap();
    let want = if lossy_nanos {
        utc_datetime!(2026-03-02 00:00:00.000_001)
    } else {
        later
    };
    assert_eq!(back.last_used_at, Some(want));
    assert_eq!(back.version, bare.version);
}

/// Two application servers, one database: each has its own manager and
/// store (pool).
async fn two_servers_share_one_database<S: AsyncKeyStore + AsyncKeyAudit>(a: S, b: S) {
    let a = KeyManager::builder(a).build().unwrap();
    let b = KeyManager::builder(b).build().unwrap();
    let req = RequestContext::new();
    let shop = owner("servers");

    // Created on A, accepted on B.
    let k1 = a
        .create_async(&admin(), NewKey::secret(shop.clone(), "billing"))
        .await
        .unwrap();
    let t1 = k1.token.expose_secret();
    let v = b.verify_async(t1, &req).await.unwrap();
    assert_eq!(v.owner(), &shop);
    assert!(!v.in_grace());

    // Rolled on A: B accepts the old token in grace, and the new one.
    let rolled = a
        .roll_async(&admin(), &k1.record.id, RollOptions::default())
        .await
        .unwrap();
    let t2 = rolled.token.expose_secret();
    let v = b.verify_async(t1, &req).await.unwrap();
    assert!(v.in_grace());
    assert_eq!(v.successor(), Some(rolled.successor.id));
    let v = b.verify_async(t2, &req).await.unwrap();
    assert_eq!(v.id(), rolled.successor.id);

    // Revoked on B: A refuses it at once, grace or not.
    a.verify_async(t1, &req).await.unwrap();
    b.revoke_async(&admin(), &k1.record.id).await.unwrap();
    let refused = a.verify_async(t1, &req).await.unwrap_err();
    assert_eq!(refused.rejection(), Some(Rejection::Revoked));
    a.verify_async(t2, &req).await.unwrap();

    // Revoked on A: B refuses it on its next verification.
    b.verify_async(t2, &req).await.unwrap();
    a.revoke_async(&admin(), &rolled.successor.id)
        .await
        .unwrap();
    let refused = b.verify_async(t2, &req).await.unwrap_err();
    assert_eq!(refused.rejection(), Some(Rejection::Revoked));

    // Both servers list the same keys, and see them in the audit scan.
    let ids = |keys: Vec<Arc<KeyRecord>>| keys.iter().map(|r| r.id).collect::<Vec<_>>();
    let la = ids(a.list_async(&shop).await.unwrap());
    let lb = ids(b.list_async(&shop).await.unwrap());
    assert_eq!(la, lb);
    assert_eq!(la.len(), 2);
    let all = scan_all(&b, KeyFilter::All, 50).await;
    for id in &la {
        assert!(all.iter().any(|r| r.id == *id));
    }
}

/// Rolls of one key from both servers at once: exactly one wins, and only
/// its successor exists.
async fn concurrent_rolls_have_one_winner<S: AsyncKeyStore + 'static>(a: S, b: S) {
    let servers = [
        Arc::new(KeyManager::builder(a).build().unwrap()),
        Arc::new(KeyManager::builder(b).build().unwrap()),
    ];
    for round in 0..5 {
        let shop = owner("rolls");
        let key = servers[0]
            .create_async(&admin(), NewKey::secret(shop.clone(), "raced"))
            .await
            .unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let server = Arc::clone(&servers[i % 2]);
                let id = key.record.id;
                tokio::spawn(async move {
                    server
                        .roll_async(&admin(), &id, RollOptions::default())
                        .await
                })
            })
            .collect();
        let mut wins = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => wins += 1,
                Err(Error::Conflict(_) | Error::InvalidState { .. }) => {}
                Err(e) => panic!("round {round}: unexpected error {e:?}"),
            }
        }
        assert_eq!(wins, 1, "round {round}");
        let keys = servers[1].list_async(&shop).await.unwrap();
        assert_eq!(keys.len(), 2, "round {round}: original and one successor");
    }
}

/// The one-active-key rule holds across servers, also for an owner's very
/// first key (no key rows to lock yet), with the servers' clocks a minute
/// apart either way (the rule ignores `created_at`).
async fn one_active_key_holds_across_servers<S: AsyncKeyStore + 'static>(a: S, b: S) {
    let policy = Policy {
        one_active_key_per_owner: true,
        ..Policy::default()
    };
    let mut servers = Vec::new();
    for (store, skew) in [(a, -60), (b, 60)] {
        let (keys, _clock) = manager(
            store,
            utc_datetime!(2026-03-01 09:00) + Duration::seconds(skew),
            policy.clone(),
        );
        servers.push(Arc::new(keys));
    }
    for round in 0..5 {
        let shop = owner("sole");
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let server = Arc::clone(&servers[i % 2]);
                let shop = shop.clone();
                tokio::spawn(async move {
                    server
                        .create_async(&admin(), NewKey::secret(shop, format!("key {i}")))
                        .await
                })
            })
            .collect();
        let mut created = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => created += 1,
                Err(Error::AnotherKeyActive) => {}
                Err(e) => panic!("round {round}: unexpected error {e:?}"),
            }
        }
        assert_eq!(created, 1, "round {round}");
        assert_eq!(servers[0].list_async(&shop).await.unwrap().len(), 1);
    }
}

/// A key's life through the manager, at instants with microsecond
/// precision: generate then activate, half-open validity, a roll's grace,
/// revoke dominating grace and absorbing, compare-and-swap updates,
/// last-used moving forward only.
async fn lifecycle<S: AsyncKeyStore>(store: S) {
    let t0: UtcDateTime = utc_datetime!(2026-03-01 09:00:00.000_007);
    let (keys, clock) = manager(store, t0, Policy::default());
    let shop = owner("life");
    let us = Duration::microseconds(1);

    // Generate, then activate; deactivate; activate again.
    let c = keys
        .create_async(&admin(), NewKey::secret(shop.clone(), "k").inactive())
        .await
        .unwrap();
    let token = c.token;
    assert_eq!(check(&keys, &token).await, Err(Rejection::Inactive));
    let on = keys.activate_async(&admin(), &c.record.id).await.unwrap();
    assert_eq!((on.status, on.version), (KeyStatus::Active, 2));
    assert_eq!(check(&keys, &token).await, Ok(false));
    keys.deactivate_async(&admin(), &c.record.id).await.unwrap();
    assert_eq!(check(&keys, &token).await, Err(Rejection::Inactive));
    keys.activate_async(&admin(), &c.record.id).await.unwrap();
    assert_eq!(check(&keys, &token).await, Ok(false));

    // Validity is half-open: [created_at, expires_at).
    let end = t0 + Duration::days(30);
    let e = keys
        .create_async(&admin(), NewKey::secret(shop.clone(), "e").expires_at(end))
        .await
        .unwrap();
    clock.set(t0 - us);
    assert_eq!(check(&keys, &e.token).await, Err(Rejection::NotYetValid));
    clock.set(end - us);
    assert_eq!(check(&keys, &e.token).await, Ok(false));
    clock.set(end);
    assert_eq!(check(&keys, &e.token).await, Err(Rejection::Expired));

    // A roll: the old key works until exactly the end of its grace.
    clock.set(t0 + Duration::hours(1));
    let rolled = keys
        .roll_async(&admin(), &c.record.id, RollOptions::default())
        .await
        .unwrap();
    let grace_end = t0 + Duration::hours(13);
    assert_eq!(rolled.predecessor.grace_ends_at, Some(grace_end));
    let stored = keys.get_async(&c.record.id).await.unwrap();
    assert_eq!(stored.grace_ends_at, Some(grace_end));
    assert_eq!(stored.successor, Some(rolled.successor.id));
    assert_eq!(rolled.successor.predecessor, Some(c.record.id));
    assert_eq!(check(&keys, &token).await, Ok(true));
    assert!(matches!(
        keys.roll_async(&admin(), &c.record.id, RollOptions::default())
            .await,
        Err(Error::InvalidState { .. })
    ));
    clock.set(grace_end - us);
    assert_eq!(check(&keys, &token).await, Ok(true));
    clock.set(grace_end);
    assert_eq!(check(&keys, &token).await, Err(Rejection::GraceEnded));
    assert_eq!(check(&keys, &rolled.token).await, Ok(false));

    // Revoke dominates grace, is absorbing, and leaves the successor alone.
    let r2 = keys
        .roll_async(&admin(), &rolled.successor.id, RollOptions::default())
        .await
        .unwrap();
    assert_eq!(check(&keys, &rolled.token).await, Ok(true));
    keys.revoke_async(&admin(), &rolled.successor.id)
        .await
        .unwrap();
    assert_eq!(check(&keys, &rolled.token).await, Err(Rejection::Revoked));
    assert_eq!(check(&keys, &r2.token).await, Ok(false));
    assert!(matches!(
        keys.activate_async(&admin(), &rolled.successor.id).await,
        Err(Error::Revoked(_))
    ));
    assert!(matches!(
        keys.roll_async(&admin(), &rolled.successor.id, RollOptions::default())
            .await,
        Err(Error::Revoked(_))
    ));

    // Updates are compare-and-swaps on the version.
    let id = r2.successor.id;
    let v = keys.get_async(&id).await.unwrap().version;
    let u = keys
        .update_async(&admin(), &id, v, &KeyUpdate::new().name("renamed"))
        .await
        .unwrap();
    assert_eq!((u.name.as_str(), u.version), ("renamed", v + 1));
    assert!(matches!(
        keys.update_async(&admin(), &id, v, &KeyUpdate::new().name("lost"))
            .await,
        Err(Error::Conflict(_))
    ));
    assert_eq!(keys.get_async(&id).await.unwrap().name, "renamed");

    // last_used_at only moves forward, also when the clock steps back.
    let late = grace_end + Duration::hours(2);
    clock.set(late);
    check(&keys, &r2.token).await.unwrap();
    clock.set(grace_end + Duration::hours(1));
    check(&keys, &r2.token).await.unwrap();
    assert_eq!(keys.get_async(&id).await.unwrap().last_used_at, Some(late));

    // The owner's keys, oldest first.
    let listed = keys.list_async(&shop).await.unwrap();
    assert_eq!(listed.len(), 4);
    assert!(
        listed
            .windows(2)
            .all(|w| (w[0].created_at, w[0].id) < (w[1].created_at, w[1].id))
    );
}

/// Every page of a scan, checking the paging contract on the way.
async fn scan_all<S: AsyncKeyStore + AsyncKeyAudit>(
    keys: &KeyManager<S>,
    filter: KeyFilter,
    limit: usize,
) -> Vec<Arc<KeyRecord>> {
    let mut out: Vec<Arc<KeyRecord>> = Vec::new();
    let mut after = None;
    loop {
        let page: KeyPage = match filter {
            KeyFilter::All => keys.list_all_async(after, limit).await,
            KeyFilter::ExpiringBefore(t) => keys.expiring_before_async(t, after, limit).await,
            KeyFilter::UnusedSince(t) => keys.unused_since_async(t, after, limit).await,
            _ => unreachable!(),
        }
        .unwrap();
        let limit = limit.max(1);
        assert!(page.keys.len() <= limit);
        for r in &page.keys {
            assert!(filter.matches(r), "{filter:?} returned {r:?}");
            if let Some(last) = out.last() {
                assert!(last.id < r.id, "ascending ids across pages");
            }
            out.push(Arc::clone(r));
        }
        match page.next {
            Some(next) => {
                assert_eq!(page.keys.len(), limit, "a page with a next is full");
                assert_eq!(Some(next), page.keys.last().map(|r| r.id));
                after = Some(next);
            }
            None => return out,
        }
    }
}

/// The audit queries: every key paged exactly once, keys expiring before an
/// instant, keys unused since an instant, at microsecond and sub-microsecond
/// boundaries.
async fn audit_queries<S: AsyncKeyStore + AsyncKeyAudit>(store: S) {
    let t: UtcDateTime = utc_datetime!(2031-05-05 10:00:00.000_001);
    let (keys, clock) = manager(store, t, Policy::default());
    let shop = owner("audit");
    let actor = admin();
    let create = |name: &str, expires: Option<UtcDateTime>| {
        let mut spec = NewKey::secret(shop.clone(), name);
        if let Some(e) = expires {
            spec = spec.expires_at(e);
        }
        keys.create_async(&actor, spec)
    };
    let none = create("none", None).await.unwrap();
    let exp1 = create("exp1", Some(t + Duration::days(10))).await.unwrap();
    let exp2 = create("exp2", Some(t + Duration::days(20))).await.unwrap();
    let gone = create("gone", Some(t + Duration::days(5))).await.unwrap();
    keys.revoke_async(&admin(), &gone.record.id).await.unwrap();
    let used = create("used", None).await.unwrap();
    clock.set(t + Duration::hours(1));
    check(&keys, &used.token).await.unwrap();
    assert_eq!(
        keys.get_async(&used.record.id).await.unwrap().last_used_at,
        Some(t + Duration::hours(1))
    );

    let mine = |records: Vec<Arc<KeyRecord>>| -> BTreeSet<KeyId> {
        records
            .iter()
            .filter(|r| r.owner == shop)
            .map(|r| r.id)
            .collect()
    };
    let set = |ids: &[&KeyId]| ids.iter().map(|id| **id).collect::<BTreeSet<_>>();
    let (n, e1, e2, g, u) = (
        &none.record.id,
        &exp1.record.id,
        &exp2.record.id,
        &gone.record.id,
        &used.record.id,
    );

    // Every key, exactly once, in small pages (the clamp makes 0 one).
    for limit in [0, 2, 7] {
        let all = scan_all(&keys, KeyFilter::All, limit).await;
        let ours: Vec<_> = all.iter().filter(|r| r.owner == shop).collect();
        assert_eq!(ours.len(), 5, "limit {limit}");
        assert_eq!(mine(all), set(&[n, e1, e2, g, u]));
    }

    let expiring = |b: UtcDateTime| scan_all(&keys, KeyFilter::ExpiringBefore(b), 7);
    assert_eq!(mine(expiring(t + Duration::days(15)).await), set(&[e1]));
    assert_eq!(mine(expiring(t + Duration::days(30)).await), set(&[e1, e2]));
    assert_eq!(
        mine(expiring(t + Duration::days(10)).await),
        set(&[]),
        "strictly before"
    );
    assert_eq!(
        mine(expiring(t + Duration::days(10) + Duration::nanoseconds(1)).await),
        set(&[e1]),
        "a sub-microsecond bound"
    );

    let unused = |s: UtcDateTime| scan_all(&keys, KeyFilter::UnusedSince(s), 7);
    assert_eq!(
        mine(unused(t + Duration::minutes(30)).await),
        set(&[n, e1, e2])
    );
    assert_eq!(
        mine(unused(t + Duration::hours(2)).await),
        set(&[n, e1, e2, u])
    );
    assert_eq!(
        mine(unused(t + Duration::hours(1)).await),
        set(&[n, e1, e2]),
        "used exactly at the bound"
    );
    assert_eq!(
        mine(unused(t).await),
        set(&[]),
        "created at the bound: not stale"
    );
    assert_eq!(
        mine(unused(t + Duration::nanoseconds(1)).await),
        set(&[n, e1, e2]),
        "created a nanosecond before the bound: stale unless used since"
    );
}

// ---- scenarios: SQL only -----------------------------------------------------------

/// Rows written by something else: one that does not decode is a backend
/// error naming the column (verification fails closed), never a panic or
/// "not found"; a key row without its usage row reads as never used, and a
/// touch adds the usage row.
async fn foreign_rows<D: Db>(store: &D::Store) {
    let shop = owner("corrupt");
    let insert = |id: &KeyId, owner: &str, scopes: &str, domains: &str, ips: &str, created: i64| {
        format!(
            "INSERT INTO api_keys (id, owner, kind, environment, name, scopes, allowed_domains, \
             allowed_ips, status, created_at, version, secret_digest, redacted) VALUES \
             ({}, '{owner}', 'secret', 'live', 'corrupt', '{scopes}', '{domains}', '{ips}', \
             'active', {created}, 1, {}, 'sk_live_…')",
            D::blob(id.as_bytes()),
            D::blob(&[0u8; 32])
        )
    };
    let now = 1_780_000_000_000_000_i64;
    let cases = [
        ("owner with a space", "", "", "", now, "api_keys.owner"),
        (
            shop.as_str(),
            "not a scope!",
            "",
            "",
            now,
            "api_keys.scopes",
        ),
        (
            shop.as_str(),
            "",
            "localhost",
            "",
            now,
            "api_keys.allowed_domains",
        ),
        (
            shop.as_str(),
            "",
            "",
            "not-an-address",
            now,
            "api_keys.allowed_ips",
        ),
        (shop.as_str(), "", "", "", i64::MAX, "api_keys.created_at"),
    ];
    for (row_owner, scopes, domains, ips, created, column) in cases {
        let id = random_id();
        D::raw(
            store,
            &insert(&id, row_owner, scopes, domains, ips, created),
        )
        .await;
        let e = store.get(&id).await.unwrap_err();
        assert_eq!(e.kind(), StoreErrorKind::Backend, "{e}");
        let cause = std::error::Error::source(&e).unwrap().to_string();
        assert!(cause.starts_with(column), "{column}: {cause}");
    }
    let e = store.list_by_owner(&shop).await.unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::Backend);

    // A valid row without a usage row.
    let good = owner("foreign");
    let id = random_id();
    D::raw(
        store,
        &insert(&id, good.as_str(), "a,b", "example.com", "", now),
    )
    .await;
    let r = store.get(&id).await.unwrap().unwrap();
    assert_eq!(r.last_used_at, None);
    assert_eq!(r.scopes, Scopes::new(["a", "b"]).unwrap());
    let at = utc_datetime!(2026-06-01 00:00:00.000_001);
    store.touch(&id, Usage::once(at)).await.unwrap();
    assert_eq!(
        store.get(&id).await.unwrap().unwrap().last_used_at,
        Some(at)
    );
    // The usage row the touch created counts on.
    store.touch(&id, Usage { at, uses: 4 }).await.unwrap();
    assert_eq!(store.get(&id).await.unwrap().unwrap().use_count, 5);

    // The schema refuses rows that break the pending and signing rules,
    // and takes the same statement with the rule kept (so the refusal is
    // the rule's, not a typo's).
    let row = |status: &str, signing: u8| {
        insert(&random_id(), good.as_str(), "", "", "", now)
            .replace(
                "secret_digest, redacted)",
                "secret_digest, redacted, signing)",
            )
            .replace("'sk_live_…')", &format!("'sk_live_…', {signing})"))
            .replace("'active'", &format!("'{status}'"))
    };
    assert!(D::try_raw(store, &row("active", 0)).await);
    assert!(
        !D::try_raw(store, &row("active", 1)).await,
        "signing, unsealed"
    );
    assert!(
        !D::try_raw(store, &row("pending", 0)).await,
        "pending, with a digest"
    );

    // Records that break the pending and signing rules are refused before
    // they are written, naming the column.
    let mut pending_with_hash = full_record();
    pending_with_hash.status = KeyStatus::Pending;
    let mut signing_unflagged = full_record();
    signing_unflagged.signing = false;
    for (bad, column) in [
        (pending_with_hash, "api_keys.secret_digest"),
        (signing_unflagged, "api_keys.signing"),
    ] {
        let e = store
            .insert(&bad, WriteCondition::Always)
            .await
            .unwrap_err();
        let cause = std::error::Error::source(&e).unwrap().to_string();
        assert!(cause.starts_with(column), "{column}: {cause}");
        assert!(store.get(&bad.id).await.unwrap().is_none());
    }

    // A usage row that does not decode names its column too.
    D::raw(
        store,
        &format!(
            "UPDATE api_key_usage SET last_used_at = {} WHERE id = {}",
            i64::MAX,
            D::blob(id.as_bytes())
        ),
    )
    .await;
    let cause = std::error::Error::source(&store.get(&id).await.unwrap_err())
        .unwrap()
        .to_string();
    assert!(cause.starts_with("api_key_usage.last_used_at"), "{cause}");
    D::raw(
        store,
        &format!(
            "DELETE FROM api_keys WHERE owner IN ('{}', '{}', 'owner with a space')",
            shop.as_str(),
            good.as_str()
        ),
    )
    .await;
}

/// `migrate` is idempotent and safe when several servers start at once, on
/// an empty schema each round; the migrated schema then works.
async fn concurrent_migrations<D: Db>(location: &Location) {
    let admin_store = D::connect(&location.url).await.unwrap();
    for round in 0..3 {
        let (fresh, drop_sql) = D::fresh(location).await;
        let mut stores = Vec::new();
        for _ in 0..4 {
            stores.push(D::connect(&fresh.url).await.unwrap());
        }
        let tasks: Vec<_> = stores
            .iter()
            .cloned()
            .map(|s| tokio::spawn(async move { D::migrate(&s).await }))
            .collect();
        for task in tasks {
            task.await
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: {e:?}"));
        }
        D::migrate(&stores[0]).await.unwrap();
        let keys = KeyManager::new(stores[1].clone());
        let created = keys
            .create_async(&admin(), NewKey::secret(owner("migrated"), "k"))
            .await
            .unwrap();
        keys.verify_async(created.token.expose_secret(), &RequestContext::new())
            .await
            .unwrap();
        drop((stores, keys));
        if let Some(sql) = drop_sql {
            D::raw(&admin_store, &sql).await;
        }
    }
}

async fn connect_reports_a_bad_location<D: Db>() {
    for url in D::bad_urls() {
        let e = D::connect(&url).await.unwrap_err();
        assert_eq!(e.kind(), StoreErrorKind::Backend, "{url}");
        assert!(std::error::Error::source(&e).is_some());
        // The error never repeats the URL (it may hold a password).
        assert!(!e.to_string().contains(&url));
    }
}

// ---- the tests, per engine ---------------------------------------------------------

/// Usage tracking through the manager: counted on accepted requests only,
/// written with `last_used_at` in batches, ranked by the store (one ordered
/// query on the SQL stores).
async fn usage_tracking<S: AsyncKeyStore + AsyncKeyAudit>(store: S) {
    let t: UtcDateTime = utc_datetime!(2032-01-01 00:00:00.000_001);
    let (keys, clock) = manager(store, t, Policy::default());
    let org = owner("usage");
    let mut made = Vec::new();
    for (name, uses) in [("a", 3u64), ("b", 0), ("c", 7), ("d", 3)] {
        let k = keys
            .create_async(&admin(), NewKey::secret(org.clone(), name))
            .await
            .unwrap();
        for _ in 0..uses {
            check(&keys, &k.token).await.unwrap();
        }
        made.push((k, uses));
    }
    // Refused requests never count.
    keys.deactivate_async(&admin(), &made[1].0.record.id)
        .await
        .unwrap();
    assert_eq!(
        check(&keys, &made[1].0.token).await,
        Err(Rejection::Inactive)
    );
    for (k, uses) in &made {
        let r = keys.get_async(&k.record.id).await.unwrap();
        assert_eq!(r.use_count, *uses, "{}", r.name);
        // The store has the first use of each used key so far.
        let written = keys.store().get(&k.record.id).await.unwrap().unwrap();
        assert_eq!(written.use_count, (*uses).min(1), "{}", r.name);
    }
    // A ranking writes the counted uses first, then asks the store.
    let most = keys.most_used_async(Some(&org), 10).await.unwrap();
    let ranked: Vec<(&str, u64)> = most
        .iter()
        .map(|r| (r.name.as_str(), r.use_count))
        .collect();
    let (a, d) = (made[0].0.record.id, made[3].0.record.id);
    let ties = if a < d { ["a", "d"] } else { ["d", "a"] };
    assert_eq!(
        ranked,
        [("c", 7), (ties[0], 3), (ties[1], 3), ("b", 0)],
        "most used, ties by id"
    );
    for (k, uses) in &made {
        let written = keys.store().get(&k.record.id).await.unwrap().unwrap();
        assert_eq!(written.use_count, *uses);
    }
    let least = keys.least_used_async(Some(&org), 2).await.unwrap();
    assert_eq!(least.first().map(|r| r.name.as_str()), Some("b"));
    assert_eq!(least.len(), 2);
    // A revoked key leaves the ranking; later uses add up across writes.
    keys.revoke_async(&admin(), &made[2].0.record.id)
        .await
        .unwrap();
    clock.set(t + Duration::minutes(5));
    for _ in 0..4 {
        check(&keys, &made[0].0.token).await.unwrap();
    }
    let most = keys.most_used_async(Some(&org), 1).await.unwrap();
    assert_eq!((most[0].name.as_str(), most[0].use_count), ("a", 7));
    assert_eq!(most[0].last_used_at, Some(t + Duration::minutes(5)));
    // The ranking wrote them: the store holds the same count.
    let written = keys.store().get(&a).await.unwrap().unwrap();
    assert_eq!(written.use_count, 7);

    // Every owner's keys (the statement without an owner): in order.
    let all = keys.most_used_async(None, 50).await.unwrap();
    assert!(!all.is_empty() && all.len() <= 50);
    assert!(all.windows(2).all(|w| w[0].use_count > w[1].use_count
        || (w[0].use_count == w[1].use_count && w[0].id < w[1].id)));
    assert!(all.iter().all(|r| r.status != KeyStatus::Revoked));

    // A batch of several statements (over 500 keys, unknown ids among
    // them, a key named twice) is written whole.
    let mut batch: Vec<(KeyId, Usage)> =
        (0..1_200).map(|_| (random_id(), Usage::once(t))).collect();
    batch.insert(600, (a, Usage { at: t, uses: 2 }));
    batch.push((d, Usage { at: t, uses: 1 }));
    batch.push((a, Usage { at: t, uses: 1 }));
    AsyncKeyStore::touch_many(keys.store(), &batch)
        .await
        .unwrap();
    for (id, want) in [(a, 10), (d, 4)] {
        let written = keys.store().get(&id).await.unwrap().unwrap();
        assert_eq!(written.use_count, want);
    }
}

/// CoinsPaid's flow on a store: generate (pending, listed, no secret),
/// activate with an IP list (the secret, once), sign, deactivate, replace.
async fn pending_flow<S: AsyncKeyStore>(store: S) {
    use api_keys::{RequestSigner, SealingKey, SealingKeyRing, SignedRequest};
    let t: UtcDateTime = utc_datetime!(2032-02-01 00:00:00.000_001);
    let clock = Arc::new(ManualClock::new(t));
    let keys = KeyManager::builder(store)
        .clock(Arc::clone(&clock))
        .policy(Policy {
            one_active_key_per_owner: true,
            ..Policy::default()
        })
        .sealing_keys(SealingKeyRing::new(SealingKey::new(1, &[3; 32]).unwrap()))
        .build()
        .unwrap();
    let shop = owner("pending");
    let first = keys
        .create_pending_async(&admin(), NewKey::secret(shop.clone(), "shop").signing())
        .await
        .unwrap();
    let listed = keys.list_async(&shop).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].as_ref(), &first);
    assert_eq!(first.status, KeyStatus::Pending);
    assert!(first.secret_hash.is_none() && first.sealed_secret.is_none() && first.signing);

    let ips = IpAllowList::parse("203.0.113.7, 2001:db8::7").unwrap();
    let active = keys
        .activate_pending_async(&admin(), &first.id, Some(ips.clone()))
        .await
        .unwrap();
    assert_eq!(active.record.allowed_ips, ips);
    assert_eq!(
        keys.get_async(&first.id).await.unwrap().as_ref(),
        &active.record
    );
    let body = b"{\"amount\":\"1\"}";
    let verify = |signer: RequestSigner, peer: &'static str| {
        let keys = &keys;
        async move {
            let h = signer.sign(body);
            let ctx = RequestContext::new().peer_ip(peer.parse().unwrap());
            keys.verify_signed_async(
                &SignedRequest::new(h.key.as_bytes(), h.signature.as_bytes(), body),
                &ctx,
            )
            .await
            .map(|v| v.id())
            .map_err(|e| e.rejection())
        }
    };
    let signer = || RequestSigner::for_token(active.token.expose_secret()).unwrap();
    assert_eq!(verify(signer(), "203.0.113.7").await, Ok(first.id));
    assert_eq!(
        verify(signer(), "198.51.100.9").await,
        Err(Some(Rejection::IpNotAllowed))
    );
    assert!(matches!(
        keys.activate_pending_async(&admin(), &first.id, None).await,
        Err(Error::SecretAlreadyRevealed(_))
    ));

    let second = keys
        .create_pending_async(&admin(), NewKey::secret(shop.clone(), "shop v2").signing())
        .await
        .unwrap();
    assert!(matches!(
        keys.activate_pending_async(&admin(), &second.id, None)
            .await,
        Err(Error::AnotherKeyActive)
    ));
    assert_eq!(
        keys.get_async(&second.id).await.unwrap().status,
        KeyStatus::Pending
    );
    keys.deactivate_async(&admin(), &first.id).await.unwrap();
    assert_eq!(
        verify(signer(), "203.0.113.7").await,
        Err(Some(Rejection::Inactive))
    );
    let replacement = keys
        .activate_pending_async(&admin(), &second.id, None)
        .await
        .unwrap();
    let new_signer = RequestSigner::for_token(replacement.token.expose_secret()).unwrap();
    assert_eq!(verify(new_signer, "198.51.100.9").await, Ok(second.id));
}

macro_rules! engine_tests {
    ($module:ident, $feature:literal, $db:ty) => {
        #[cfg(feature = $feature)]
        mod $module {
            use super::*;
            type D = $db;

            /// The server's database, shared (tests that make their own
            /// namespaces, or need none).
            macro_rules! located {
                ($test:literal) => {
                    match D::location($test) {
                        Some(location) => location,
                        None => return,
                    }
                };
            }

            /// A namespace of this test's own, dropped at its end.
            macro_rules! scratch {
                ($test:literal) => {
                    Scratch::<D>::beside(&located!($test)).await
                };
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn passes_the_conformance_suite() {
                let scratch = scratch!("passes_the_conformance_suite");
                let loc = &scratch.location;
                let store = open::<D>(&loc.url).await;
                api_keys::testing::run_conformance_async(&store)
                    .await
                    .unwrap();
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn every_field_round_trips() {
                let scratch = scratch!("every_field_round_trips");
                let loc = &scratch.location;
                super::every_field_round_trips(&open::<D>(&loc.url).await, true).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn lifecycle() {
                let scratch = scratch!("lifecycle");
                let loc = &scratch.location;
                super::lifecycle(open::<D>(&loc.url).await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn audit_queries() {
                let scratch = scratch!("audit_queries");
                let loc = &scratch.location;
                super::audit_queries(open::<D>(&loc.url).await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn usage_tracking() {
                let scratch = scratch!("usage_tracking");
                let loc = &scratch.location;
                super::usage_tracking(open::<D>(&loc.url).await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn pending_flow() {
                let scratch = scratch!("pending_flow");
                let loc = &scratch.location;
                super::pending_flow(open::<D>(&loc.url).await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn two_servers_share_one_database() {
                let scratch = scratch!("two_servers_share_one_database");
                let loc = &scratch.location;
                let (a, b) = (open::<D>(&loc.url).await, open::<D>(&loc.url).await);
                super::two_servers_share_one_database(a, b).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_rolls_have_one_winner() {
                let scratch = scratch!("concurrent_rolls_have_one_winner");
                let loc = &scratch.location;
                let (a, b) = (open::<D>(&loc.url).await, open::<D>(&loc.url).await);
                super::concurrent_rolls_have_one_winner(a, b).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn one_active_key_holds_across_servers() {
                let scratch = scratch!("one_active_key_holds_across_servers");
                let loc = &scratch.location;
                let (a, b) = (open::<D>(&loc.url).await, open::<D>(&loc.url).await);
                super::one_active_key_holds_across_servers(a, b).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn foreign_rows_fail_closed() {
                let loc = located!("foreign_rows_fail_closed");
                // A database of its own: its corrupt rows must not meet
                // the other tests' scans of every key.
                let (fresh, drop_sql) = D::fresh(&loc).await;
                let store = open::<D>(&fresh.url).await;
                super::foreign_rows::<D>(&store).await;
                drop(store);
                if let Some(sql) = drop_sql {
                    D::raw(&D::connect(&loc.url).await.unwrap(), &sql).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn migrations_are_idempotent_and_concurrent_safe() {
                let loc = located!("migrations_are_idempotent_and_concurrent_safe");
                super::concurrent_migrations::<D>(&loc).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn connect_reports_a_bad_location() {
                // Needs no database: run it whenever the engine runs.
                let _loc = located!("connect_reports_a_bad_location");
                super::connect_reports_a_bad_location::<D>().await;
            }
        }
    };
}

engine_tests!(postgres, "postgres", Postgres);
engine_tests!(mysql, "mysql", MySql);
engine_tests!(sqlite, "sqlite", Sqlite);

/// The generic scenarios hold for the reference store too, so a failure on
/// an engine is the engine's.
mod memory {
    use super::*;
    use api_keys::MemoryKeyStore;

    #[tokio::test]
    async fn every_field_round_trips() {
        super::every_field_round_trips(&MemoryKeyStore::new(), false).await;
    }

    #[tokio::test]
    async fn lifecycle() {
        super::lifecycle(MemoryKeyStore::new()).await;
    }

    #[tokio::test]
    async fn audit_queries() {
        super::audit_queries(MemoryKeyStore::new()).await;
    }

    #[tokio::test]
    async fn usage_tracking() {
        super::usage_tracking(MemoryKeyStore::new()).await;
    }

    #[tokio::test]
    async fn pending_flow() {
        super::pending_flow(MemoryKeyStore::new()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_servers_share_one_store() {
        let store = Arc::new(MemoryKeyStore::new());
        two_servers_share_one_database(Arc::clone(&store), store).await;
    }
}

// ---- engine specifics ----------------------------------------------------------------

/// The tables can live in a schema of their own, chosen by the connection's
/// search path.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_search_path_selects_the_schema() {
    let Some(loc) = Postgres::location("search_path_selects_the_schema") else {
        return;
    };
    let (scoped, drop_sql) = Postgres::fresh(&loc).await;
    let schema = drop_sql
        .as_deref()
        .and_then(|s| s.split_whitespace().nth(2))
        .unwrap()
        .to_owned();
    let store = open::<Postgres>(&scoped.url).await;
    let keys = KeyManager::new(store);
    let created = keys
        .create_async(&admin(), NewKey::secret(owner("schema"), "scoped"))
        .await
        .unwrap();
    keys.verify_async(created.token.expose_secret(), &RequestContext::new())
        .await
        .unwrap();
    let admin_store = Postgres::connect(&loc.url).await.unwrap();
    let (count,): (i64,) = sqlx::query_as(&format!(
        "SELECT count(*) FROM {schema}.api_keys WHERE id = $1"
    ))
    .bind(created.record.id.as_bytes().as_slice())
    .fetch_one(admin_store.pool())
    .await
    .unwrap();
    assert_eq!(count, 1);
    Postgres::raw(&admin_store, drop_sql.as_deref().unwrap()).await;
}

/// The file survives the store: a second store on the same file (a
/// restart, or another process) sees the keys, and a revoke made through
/// one is refused through the other.
#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_persists_and_is_shared() {
    let loc = temp_sqlite();
    let path = loc.file.as_ref().unwrap().join("keys.db");
    let created = {
        let store = api_keys::SqliteKeyStore::open(&path).await.unwrap();
        store.migrate().await.unwrap();
        let keys = KeyManager::new(store.clone());
        let created = keys
            .create_async(&admin(), NewKey::secret(owner("file"), "persisted"))
            .await
            .unwrap();
        store.pool().close().await;
        created
    };
    assert!(path.exists());
    let a = KeyManager::new(api_keys::SqliteKeyStore::open(&path).await.unwrap());
    let b = KeyManager::new(api_keys::SqliteKeyStore::open(&path).await.unwrap());
    let token = created.token.expose_secret();
    a.verify_async(token, &RequestContext::new()).await.unwrap();
    b.revoke_async(&admin(), &created.record.id).await.unwrap();
    let refused = a
        .verify_async(token, &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(refused.rejection(), Some(Rejection::Revoked));
    let mode: (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(a.store().pool())
        .await
        .unwrap();
    assert_eq!(mode.0, "wal");
}

/// Owner ids compare exactly on MySQL/MariaDB (binary collation): owners
/// differing only in case are two owners.
#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_owner_ids_compare_exactly() {
    let Some(base) = MySql::location("owner_ids_compare_exactly") else {
        return;
    };
    let scratch = Scratch::<MySql>::beside(&base).await;
    let loc = &scratch.location;
    let policy = Policy {
        one_active_key_per_owner: true,
        ..Policy::default()
    };
    let (keys, _) = manager(
        open::<MySql>(&loc.url).await,
        utc_datetime!(2026-03-01 09:00),
        policy,
    );
    let suffix = random_hex(6);
    let lower = OwnerId::new(format!("acct-{suffix}")).unwrap();
    let upper = OwnerId::new(format!("ACCT-{suffix}")).unwrap();
    keys.create_async(&admin(), NewKey::secret(lower.clone(), "a"))
        .await
        .unwrap();
    keys.create_async(&admin(), NewKey::secret(upper.clone(), "b"))
        .await
        .unwrap();
    assert_eq!(keys.list_async(&lower).await.unwrap().len(), 1);
    assert_eq!(keys.list_async(&upper).await.unwrap().len(), 1);
}
