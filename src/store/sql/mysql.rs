//! MySQL and MariaDB: SQL text, transient errors and `connect`.

use super::statements::{Dialect, touch_set};
use super::{ACQUIRE_TIMEOUT, Migration, migrations, sql_store, sqlx_engine};
use crate::error::StoreError;

/// The MySQL/MariaDB engine.
pub(crate) struct My;

/// A multi-table `UPDATE` over a derived table (`UNION ALL`: MariaDB has
/// no `VALUES ROW`), the batch grouped by key first.
fn touch_many(n: usize) -> String {
    let mut rows = vec!["SELECT ? AS id, ? AS at, ? AS uses".to_owned()];
    rows.extend((1..n).map(|_| "SELECT ?, ?, ?".to_owned()));
    format!(
        "UPDATE api_key_usage u JOIN (SELECT id, MAX(at) AS at, SUM(uses) AS uses FROM ({}) b \
         GROUP BY id) v ON u.id = v.id SET {}",
        rows.join(" UNION ALL "),
        touch_set("u.")
    )
}

const DIALECT: Dialect = Dialect {
    numbered: false,
    // InnoDB's default is REPEATABLE READ, whose snapshot and gap locks
    // this store does not need: every check runs after the owner's lock row
    // is held and must see the latest committed rows.
    before_begin: Some("SET TRANSACTION ISOLATION LEVEL READ COMMITTED"),
    begin: "START TRANSACTION",
    // An exclusive lock on the owner's row, created if needed.
    lock_owner: Some(
        "INSERT INTO api_key_owners (owner) VALUES (?) \
         ON DUPLICATE KEY UPDATE owner = VALUES(owner)",
    ),
    upsert_usage: "INSERT INTO api_key_usage (id, last_used_at, use_count) VALUES (?, ?, ?) \
         ON DUPLICATE KEY UPDATE last_used_at = CASE \
         WHEN VALUES(last_used_at) IS NOT NULL \
         AND (last_used_at IS NULL OR last_used_at < VALUES(last_used_at)) \
         THEN VALUES(last_used_at) ELSE last_used_at END, \
         use_count = use_count",
    upsert_touch: "INSERT INTO api_key_usage (id, last_used_at, use_count) VALUES (?, ?, ?) \
         ON DUPLICATE KEY UPDATE last_used_at = CASE \
         WHEN last_used_at IS NULL OR last_used_at < VALUES(last_used_at) \
         THEN VALUES(last_used_at) ELSE last_used_at END, \
         use_count = CASE WHEN use_count > 9223372036854775807 - VALUES(use_count) \
         THEN 9223372036854775807 ELSE use_count + VALUES(use_count) END",
    create_migrations_table: "CREATE TABLE IF NOT EXISTS api_keys_schema_migrations (\
         version BIGINT NOT NULL PRIMARY KEY, name VARCHAR(255) NOT NULL) \
         ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    // DDL is not transactional here (each statement commits): migrations
    // rely on every statement being idempotent instead of on a lock.
    lock_migrations: None,
    record_migration: "INSERT INTO api_keys_schema_migrations (version, name) VALUES (?, ?) \
         ON DUPLICATE KEY UPDATE name = VALUES(name)",
    bump_feed: "UPDATE api_key_feed SET seq = seq + ? WHERE id = 1",
    bump_returns: false,
    notify: None,
    touch_many,
};

const MIGRATIONS: &[Migration] = migrations!("mysql");

/// Deadlock (1213, the transaction was rolled back) and lock wait timeout
/// (1205; the store rolls the transaction back itself).
fn transient(e: &(dyn sqlx::error::DatabaseError + 'static)) -> bool {
    e.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
        .is_some_and(|e| matches!(e.number(), 1205 | 1213))
}

/// Text columns are declared `utf8mb4_bin` (exact comparison of owner ids),
/// which the protocol flags as binary: read the bytes, check the UTF-8.
fn text(row: &sqlx::mysql::MySqlRow, index: usize) -> Result<Option<String>, sqlx::Error> {
    let bytes: Option<Vec<u8>> = sqlx::Row::try_get(row, index)?;
    bytes
        .map(|b| String::from_utf8(b).map_err(|e| sqlx::Error::Decode(Box::new(e))))
        .transpose()
}

sqlx_engine! {
    engine: My,
    db: sqlx::MySql,
    row: sqlx::mysql::MySqlRow,
    dialect: DIALECT,
    migrations: MIGRATIONS,
    text: text,
    transient: transient,
}

sql_store! {
    /// Keys in MySQL (8.0.16 or later) or MariaDB (10.5 or later), on the
    /// host's sqlx [`MySqlPool`](https://docs.rs/sqlx/0.8/sqlx/type.MySqlPool.html) (feature `mysql`): for
    /// application servers that share one database. An
    /// [`AsyncKeyStore`](crate::AsyncKeyStore) and
    /// [`AsyncKeyAudit`](crate::AsyncKeyAudit): call the manager's
    /// `*_async` methods from a Tokio runtime.
    ///
    /// ```no_run
    /// use api_keys::{KeyManager, MySqlKeyStore};
    /// # async fn run(pool: sqlx::MySqlPool) -> Result<(), Box<dyn std::error::Error>> {
    /// let store = MySqlKeyStore::from_pool(pool);
    /// store.migrate().await?;
    /// let keys = KeyManager::new(store);
    /// # let _ = keys; Ok(()) }
    /// ```
    ///
    /// The same guarantees as [`PostgresKeyStore`](crate::PostgresKeyStore)
    /// where that feature is on: no caching; each write one InnoDB
    /// transaction at `READ COMMITTED`, serialised per owner by an exclusive
    /// lock on its row in `api_key_owners`; compare-and-swap updates; atomic
    /// rolls; deadlocks (1213) and lock wait timeouts (1205) retried. Tables
    /// are `utf8mb4` with the binary collation, so owner ids compare
    /// exactly (`Acct` and `acct` are two owners). The database is the one
    /// in the URL.
    ///
    /// Cloning is cheap and shares the pool.
    pub struct MySqlKeyStore(My, sqlx::MySqlPool, "mysql");
}

impl MySqlKeyStore {
    /// Opens a pool to the database at `url`
    /// (`mysql://user:password@host:3306/dbname`): sqlx's default size, and
    /// a 10-second timeout to get a connection. Opens one connection before
    /// it returns, so a wrong URL or an unreachable server is reported
    /// here. For TLS or other pool settings build the pool and use
    /// [`from_pool`](Self::from_pool).
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Backend`](crate::StoreErrorKind::Backend) if the
    /// URL does not parse or the first connection fails.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options: sqlx::mysql::MySqlConnectOptions = url.parse().map_err(StoreError::backend)?;
        // One direct connection first: the pool retries a refused
        // connection until its timeout and then reports only "timed out";
        // this reports the cause ("connection refused", a bad password).
        super::first_connection::<sqlx::mysql::MySqlConnection>(&options).await?;
        let pool = sqlx::mysql::MySqlPoolOptions::new()
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        Ok(Self::from_pool(pool))
    }
}

/// The engine's own errors, from a real server: `API_KEYS_TEST_MYSQL_URL`
/// (see `tests/sql_stores.rs`); skipped without it, unless
/// `API_KEYS_TEST_REQUIRE_DATABASE=1`.
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "test code")]
    use sqlx::Connection as _;

    #[tokio::test]
    async fn deadlocks_and_lock_wait_timeouts_are_transient_and_nothing_else() {
        let Ok(url) = std::env::var("API_KEYS_TEST_MYSQL_URL") else {
            let required = std::env::var_os("API_KEYS_TEST_REQUIRE_DATABASE");
            assert!(required.is_none_or(|v| v != "1"), "no MySQL server");
            return;
        };
        let mut conn = sqlx::mysql::MySqlConnection::connect(&url).await.unwrap();
        // Duplicate key, missing table, syntax error: not worth a retry.
        for (errno, transient) in [
            (1213, true),
            (1205, true),
            (1062, false),
            (1146, false),
            (1064, false),
        ] {
            let signal = format!("SIGNAL SQLSTATE '40001' SET MYSQL_ERRNO = {errno}");
            let Err(e) = sqlx::raw_sql(&signal).execute(&mut conn).await else {
                panic!("SIGNAL did not fail");
            };
            let db = e.as_database_error().unwrap();
            assert_eq!(super::transient(db), transient, "{errno}");
        }
    }
}
