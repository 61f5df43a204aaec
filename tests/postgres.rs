//! `PostgresKeyStore` against a real PostgreSQL server (feature `postgres`).
//!
//! Needs `API_KEYS_TEST_DATABASE_URL`; without it every test prints why it
//! is skipped and passes, unless `API_KEYS_TEST_REQUIRE_DATABASE=1` (CI sets
//! it), which makes a missing URL a failure. A throwaway server:
//!
//! ```sh
//! eval "$(.ci/postgres.sh start)"
//! cargo test --all-features --test postgres
//! .ci/postgres.sh stop
//! ```
//!
//! Every test writes keys for owners with random ids, so the tests can run
//! in parallel and against a database that is not empty.
#![cfg(feature = "postgres")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed expectation should panic"
)]

use api_keys::testing;
use api_keys::{
    Actor, DomainAllowList, Environment, Error, IpAllowList, KeyId, KeyKind, KeyManager, KeyRecord,
    KeyStatus, NewKey, OwnerId, Policy, PostgresKeyStore, Rejection, RequestContext, RollOptions,
    Scopes, SealedSecret, SecretHash, StoreErrorKind, WriteCondition,
};
use api_keys::{AsyncKeyStore, VerifyError};
use std::sync::Arc;
use time::macros::utc_datetime;
use time::{Duration, UtcDateTime};

const URL_VAR: &str = "API_KEYS_TEST_DATABASE_URL";

/// The database URL, or `None` (after saying why) when the test is skipped.
fn database_url(test: &str) -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("API_KEYS_TEST_REQUIRE_DATABASE").is_none_or(|v| v != "1"),
                "{test}: API_KEYS_TEST_REQUIRE_DATABASE=1 but {URL_VAR} is not set"
            );
            eprintln!(
                "skipped {test}: {URL_VAR} is not set (`eval \"$(.ci/postgres.sh start)\"` \
                 starts a throwaway PostgreSQL and sets it)"
            );
            None
        }
    }
}

async fn store(url: &str) -> PostgresKeyStore {
    let store = PostgresKeyStore::connect(url).await.unwrap();
    store.migrate().await.unwrap();
    store
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::TryRng::try_fill_bytes(&mut rand::rngs::SysRng, &mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn owner(tag: &str) -> OwnerId {
    OwnerId::new(format!("pgtest-{tag}-{}", random_hex(8))).unwrap()
}

fn random_id() -> KeyId {
    let mut b = [0u8; 16];
    rand::TryRng::try_fill_bytes(&mut rand::rngs::SysRng, &mut b).unwrap();
    KeyId::from_bytes(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_conformance_suite() {
    let Some(url) = database_url("passes_the_conformance_suite") else {
        return;
    };
    let store = store(&url).await;
    testing::run_conformance_async(&store).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_is_idempotent_even_when_servers_start_together() {
    let Some(url) = database_url("migrate_is_idempotent_even_when_servers_start_together") else {
        return;
    };
    let a = PostgresKeyStore::connect(&url).await.unwrap();
    let b = PostgresKeyStore::connect(&url).await.unwrap();
    for _ in 0..3 {
        let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
        ra.unwrap();
        rb.unwrap();
    }
}

#[tokio::test]
async fn connect_reports_a_bad_url_or_server() {
    // Needs no database: run it whenever the suite runs for real.
    if database_url("connect_reports_a_bad_url_or_server").is_none() {
        return;
    }
    let e = PostgresKeyStore::connect("not a url ===")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::Backend);
    assert!(std::error::Error::source(&e).is_some());
    // Port 1 on loopback: nothing listens there.
    let e = PostgresKeyStore::connect("postgres://nobody@127.0.0.1:1/none?connect_timeout=5")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::Backend);
}

/// Every field, including the rarely set ones, survives a round trip; the
/// sub-microsecond part of an instant is rounded down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_field_round_trips() {
    let Some(url) = database_url("every_field_round_trips") else {
        return;
    };
    let store = store(&url).await;
    let t: UtcDateTime = utc_datetime!(2026-03-01 09:00:00.123_456);
    let record = KeyRecord {
        id: random_id(),
        owner: owner("fields"),
        kind: KeyKind::Publishable,
        environment: Environment::Test,
        name: "name with 'quotes', ünïcode and \"more\"".into(),
        note: Some("line one\nline two\ttab".into()),
        description: Some("described".into()),
        scopes: Scopes::new(["read:keys", "write/all", "x.y-z_1"]).unwrap(),
        allowed_domains: DomainAllowList::new(["example.com", "*.example.org"]).unwrap(),
        allowed_ips: IpAllowList::parse("192.0.2.1,2001:db8::1").unwrap(),
        status: KeyStatus::Inactive,
        created_at: t,
        expires_at: Some(t + Duration::days(30)),
        last_used_at: Some(t + Duration::seconds(1)),
        revoked_at: Some(t + Duration::seconds(2)),
        predecessor: Some(random_id()),
        successor: Some(random_id()),
        rolled_at: Some(t + Duration::seconds(3)),
        grace_ends_at: Some(t + Duration::hours(12)),
        version: 7,
        secret_hash: SecretHash {
            pepper_version: Some(u32::MAX),
            digest: [0xA5; 32],
        },
        sealed_secret: Some(SealedSecret {
            key_version: u32::MAX,
            nonce: [9; 24],
            ciphertext: (0..=255).collect(),
        }),
        redacted: "pk_test_…x9Qa".into(),
    };
    store.insert(&record, WriteCondition::Always).await.unwrap();
    let back = store.get(&record.id).await.unwrap().unwrap();
    assert_eq!(*back, record);
    let listed = store.list_by_owner(&record.owner).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(*listed[0], record);

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
    bare.secret_hash.pepper_version = None;
    bare.sealed_secret = None;
    // Nanoseconds are rounded down to the microsecond.
    bare.created_at = utc_datetime!(2026-03-01 09:00:00.123_456_789);
    store.insert(&bare, WriteCondition::Always).await.unwrap();
    let back = store.get(&bare.id).await.unwrap().unwrap();
    assert_eq!(back.created_at, t);
    bare.created_at = t;
    assert_eq!(*back, bare);

    // touch at sub-microsecond precision: stored rounded down, forward only.
    store
        .touch(&bare.id, utc_datetime!(2026-03-02 00:00:00.000_001_999))
        .await
        .unwrap();
    store
        .touch(&bare.id, utc_datetime!(2026-03-02 00:00:00.000_001_500))
        .await
        .unwrap();
    let back = store.get(&bare.id).await.unwrap().unwrap();
    assert_eq!(
        back.last_used_at,
        Some(utc_datetime!(2026-03-02 00:00:00.000_001))
    );
    assert_eq!(back.version, bare.version);
}

/// A row written by something else that does not decode is a backend error
/// (verification fails closed), never a panic or "not found".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_row_is_a_backend_error() {
    let Some(url) = database_url("an_undecodable_row_is_a_backend_error") else {
        return;
    };
    let store = store(&url).await;
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let conn = tokio::spawn(connection);
    let owner = owner("corrupt");
    let insert = "INSERT INTO api_keys (id, owner, kind, environment, name, scopes, \
         allowed_domains, allowed_ips, status, created_at, version, secret_digest, redacted) \
         VALUES ($1, $2, 'secret', 'live', 'corrupt', $3, '{}', $4, 'active', now(), 1, \
         $5, 'sk_live_…')";
    let cases: [(&str, &[&str], &str); 3] = [
        ("owner with a space", &[], ""),
        (owner.as_str(), &["not a scope!"], ""),
        (owner.as_str(), &[], "not-an-address"),
    ];
    for (row_owner, scopes, ips) in cases {
        let id = random_id();
        let scopes: Vec<&str> = scopes.to_vec();
        client
            .execute(
                insert,
                &[
                    &id.as_bytes().as_slice(),
                    &row_owner,
                    &scopes,
                    &ips,
                    &[0u8; 32].as_slice(),
                ],
            )
            .await
            .unwrap();
        let e = store.get(&id).await.unwrap_err();
        assert_eq!(e.kind(), StoreErrorKind::Backend, "{e}");
        let cause = std::error::Error::source(&e).unwrap().to_string();
        assert!(cause.starts_with("api_keys."), "{cause}");
    }
    let e = store.list_by_owner(&owner).await.unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::Backend);
    client
        .execute("DELETE FROM api_keys WHERE owner = $1", &[&owner.as_str()])
        .await
        .unwrap();
    client
        .execute(
            "DELETE FROM api_keys WHERE owner = 'owner with a space'",
            &[],
        )
        .await
        .unwrap();
    drop(client);
    conn.await.unwrap().unwrap();
}

/// Two application servers, one database: each has its own `KeyManager`
/// and its own `PostgresKeyStore` (pool).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_one_database() {
    let Some(url) = database_url("two_servers_share_one_database") else {
        return;
    };
    let a = KeyManager::builder(store(&url).await).build().unwrap();
    let b = KeyManager::builder(store(&url).await).build().unwrap();
    let admin = Actor::new("user:1").unwrap();
    let req = RequestContext::new();
    let shop = owner("servers");

    // Created on A, accepted on B.
    let k1 = a
        .create_async(&admin, NewKey::secret(shop.clone(), "billing"))
        .await
        .unwrap();
    let t1 = k1.token.expose_secret();
    let v = b.verify_async(t1, &req).await.unwrap();
    assert_eq!(v.owner(), &shop);
    assert!(!v.in_grace());

    // Rolled on A: B accepts the old token in grace, and the new one.
    let rolled = a
        .roll_async(&admin, &k1.record.id, RollOptions::default())
        .await
        .unwrap();
    let t2 = rolled.token.expose_secret();
    let v = b.verify_async(t1, &req).await.unwrap();
    assert!(v.in_grace());
    assert_eq!(v.successor(), Some(rolled.successor.id));
    let v = b.verify_async(t2, &req).await.unwrap();
    assert!(!v.in_grace());
    assert_eq!(v.id(), rolled.successor.id);

    // Revoked on B (which has just read it): A refuses it at once, grace or
    // not, and still accepts the successor.
    a.verify_async(t1, &req).await.unwrap();
    b.revoke_async(&admin, &k1.record.id).await.unwrap();
    let refused = a.verify_async(t1, &req).await.unwrap_err();
    assert_eq!(refused.rejection(), Some(Rejection::Revoked));
    a.verify_async(t2, &req).await.unwrap();

    // Revoked on A: B refuses it on its next verification.
    b.verify_async(t2, &req).await.unwrap();
    a.revoke_async(&admin, &rolled.successor.id).await.unwrap();
    let refused = b.verify_async(t2, &req).await.unwrap_err();
    assert!(matches!(refused, VerifyError::Rejected(Rejection::Revoked)));

    // Both servers list the same keys.
    let mut la: Vec<_> = a
        .list_async(&shop)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    let mut lb: Vec<_> = b
        .list_async(&shop)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    la.sort();
    lb.sort();
    assert_eq!(la, lb);
    assert_eq!(la.len(), 2);
}

/// Rolls of one key from both servers at once: exactly one wins, and only
/// its successor exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_rolls_from_two_servers_have_one_winner() {
    let Some(url) = database_url("concurrent_rolls_from_two_servers_have_one_winner") else {
        return;
    };
    let servers = [
        Arc::new(KeyManager::builder(store(&url).await).build().unwrap()),
        Arc::new(KeyManager::builder(store(&url).await).build().unwrap()),
    ];
    let admin = Actor::new("user:1").unwrap();
    for round in 0..5 {
        let shop = owner("rolls");
        let key = servers[0]
            .create_async(&admin, NewKey::secret(shop.clone(), "raced"))
            .await
            .unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let server = Arc::clone(&servers[i % 2]);
                let admin = admin.clone();
                let id = key.record.id;
                tokio::spawn(
                    async move { server.roll_async(&admin, &id, RollOptions::default()).await },
                )
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
/// first key (no key rows to lock yet): concurrent creates for one owner
/// from two servers, exactly one succeeds.
///
/// The servers' clocks are skewed by a minute in either direction: a key
/// created "later" by another server's clock still counts (the rule ignores
/// `created_at`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_active_key_holds_across_servers() {
    let Some(url) = database_url("one_active_key_holds_across_servers") else {
        return;
    };
    let policy = Policy {
        one_active_key_per_owner: true,
        ..Policy::default()
    };
    let mut servers = Vec::new();
    for skew in [-60, 60] {
        let clock = Arc::new(testing::ManualClock::new(
            utc_datetime!(2026-03-01 09:00) + Duration::seconds(skew),
        ));
        let keys = KeyManager::builder(store(&url).await)
            .policy(policy.clone())
            .clock(clock)
            .build()
            .unwrap();
        servers.push(Arc::new(keys));
    }
    let admin = Actor::new("user:1").unwrap();
    for round in 0..5 {
        let shop = owner("sole");
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let server = Arc::clone(&servers[i % 2]);
                let admin = admin.clone();
                let shop = shop.clone();
                tokio::spawn(async move {
                    server
                        .create_async(&admin, NewKey::secret(shop, format!("key {i}")))
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

/// The tables can live in a schema of their own, chosen by the connection's
/// search path (as the module documentation says).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_path_selects_the_schema() {
    let Some(url) = database_url("search_path_selects_the_schema") else {
        return;
    };
    if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
        eprintln!("skipped search_path_selects_the_schema: needs a URL-style {URL_VAR}");
        return;
    }
    let schema = format!("api_keys_test_{}", random_hex(6));
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let conn = tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    let scoped = format!("{url}{sep}options=-c%20search_path%3D{schema}");
    let store = store(&scoped).await;
    let keys = KeyManager::builder(store).build().unwrap();
    let admin = Actor::new("user:1").unwrap();
    let created = keys
        .create_async(&admin, NewKey::secret(owner("schema"), "scoped"))
        .await
        .unwrap();
    keys.verify_async(created.token.expose_secret(), &RequestContext::new())
        .await
        .unwrap();
    let row = client
        .query_one(
            &format!("SELECT count(*) FROM {schema}.api_keys WHERE id = $1"),
            &[&created.record.id.as_bytes().as_slice()],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
    drop(client);
    conn.await.unwrap().unwrap();
}
