//! What the SQL stores report when they are set up wrong: a schema that was
//! never applied, a database that is not there. No server needed.
#![cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use api_keys::StoreErrorKind;
use std::error::Error as _;
use std::time::Instant;

/// The error's `Display` and every `source()` below it, one per line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        text.push_str("\n  caused by: ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn a_store_used_before_migrate_says_so() {
    use api_keys::{Actor, Error, KeyManager, NewKey, OwnerId, RequestContext, SqliteKeyStore};
    let dir = std::env::temp_dir().join(format!(
        "api-keys-no-schema-{}-{:?}",
        std::process::id(),
        Instant::now()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let store = SqliteKeyStore::open(dir.join("keys.db")).await.unwrap();
    let keys = KeyManager::new(store); // no migrate()

    let created = keys
        .create_async(
            &Actor::system(),
            NewKey::secret(OwnerId::new("acct_1").unwrap(), "k"),
        )
        .await
        .unwrap_err();
    let Error::Store(store_error) = &created else {
        panic!("{created:?}")
    };
    assert_eq!(store_error.kind(), StoreErrorKind::SchemaMissing);
    assert!(created.to_string().contains("migrate()"), "{created}");
    // The driver's error is kept as the cause.
    assert!(
        chain(&created).contains("no such table"),
        "{}",
        chain(&created)
    );

    let token = api_keys::KeyFormat::default()
        .generate(api_keys::KeyKind::Secret, api_keys::Environment::Live)
        .unwrap()
        .token;
    let refused = keys
        .verify_async(token.expose_secret(), &RequestContext::new())
        .await
        .unwrap_err();
    assert!(refused.rejection().is_none(), "fails closed: {refused:?}");
    assert!(refused.to_string().contains("migrate()"), "{refused}");
    drop(keys);
    let _ = std::fs::remove_dir_all(dir);
}

/// A closed port: the cause ("connection refused") is reported, not a pool
/// timeout; the URL (and its password) never
/// appears.
async fn refused_at_once<T: std::fmt::Debug>(
    connect: impl Future<Output = Result<T, api_keys::StoreError>>,
) {
    // No time is asserted: a pool timeout would say "timed out", never
    // "refused", so the text alone shows the cause was not lost.
    let e = connect.await.unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::Backend);
    let text = chain(&e);
    assert!(text.to_lowercase().contains("refused"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!format!("{e:?}").contains("hunter2"));
    assert!(e.source().is_some());
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_connect_reports_the_real_cause() {
    refused_at_once(api_keys::PostgresKeyStore::connect(
        "postgres://app:hunter2@127.0.0.1:1/app",
    ))
    .await;
}

#[cfg(feature = "mysql")]
#[tokio::test]
async fn mysql_connect_reports_the_real_cause() {
    refused_at_once(api_keys::MySqlKeyStore::connect(
        "mysql://app:hunter2@127.0.0.1:1/app",
    ))
    .await;
}
