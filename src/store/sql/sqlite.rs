//! SQLite: SQL text, transient errors, `open` and `connect`.

use super::statements::{
    Dialect, ON_CONFLICT_UPSERT_TOUCH, ON_CONFLICT_UPSERT_USAGE, touch_set, triples,
};
use super::{ACQUIRE_TIMEOUT, Migration, migrations, sql_store, sqlx_engine};
use crate::error::StoreError;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use std::path::Path;
use std::time::Duration;

/// How long a connection waits for another writer (another connection of
/// the pool, or another process on the same file) before reporting busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The SQLite engine.
pub(crate) struct Lite;

/// `UPDATE … FROM (VALUES …)` (SQLite 3.33+), the batch grouped by key
/// first.
fn touch_many(n: usize) -> String {
    format!(
        "UPDATE api_key_usage SET {} FROM \
         (SELECT column1 AS id, MAX(column2) AS at, SUM(column3) AS uses \
         FROM (VALUES {}) GROUP BY column1) AS v \
         WHERE api_key_usage.id = v.id",
        touch_set("api_key_usage."),
        triples(n)
    )
}

const DIALECT: Dialect = Dialect {
    numbered: false,
    before_begin: None,
    // Takes the database's write lock at the start (waiting up to the busy
    // timeout), so every writer is serialised and a transaction never has
    // to upgrade a read lock it cannot get.
    begin: "BEGIN IMMEDIATE",
    lock_owner: None,
    upsert_usage: ON_CONFLICT_UPSERT_USAGE,
    upsert_touch: ON_CONFLICT_UPSERT_TOUCH,
    create_migrations_table: "CREATE TABLE IF NOT EXISTS api_keys_schema_migrations (\
         version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL) STRICT",
    // `BEGIN IMMEDIATE` already serialises migrators.
    lock_migrations: None,
    record_migration: "INSERT INTO api_keys_schema_migrations (version, name) VALUES (?, ?) \
         ON CONFLICT (version) DO NOTHING",
    bump_feed: "UPDATE api_key_feed SET seq = seq + ? WHERE id = 1 RETURNING seq",
    bump_returns: true,
    notify: None,
    touch_many,
};

const MIGRATIONS: &[Migration] = migrations!("sqlite");

/// `SQLITE_BUSY` and `SQLITE_LOCKED`, with their extended codes: another
/// writer held the lock past the busy timeout.
fn transient(e: &(dyn sqlx::error::DatabaseError + 'static)) -> bool {
    e.code()
        .and_then(|c| c.parse::<i32>().ok())
        .is_some_and(|c| matches!(c & 0xff, 5 | 6))
}

sqlx_engine! {
    engine: Lite,
    db: sqlx::Sqlite,
    row: sqlx::sqlite::SqliteRow,
    dialect: DIALECT,
    migrations: MIGRATIONS,
    text: |row, index| sqlx::Row::try_get(row, index),
    transient: transient,
}

sql_store! {
    /// Keys in a SQLite file, on the host's sqlx
    /// [`SqlitePool`](https://docs.rs/sqlx/0.8/sqlx/type.SqlitePool.html) (feature `sqlite`, SQLite bundled):
    /// the recommended persistent store for a single-server service. An
    /// [`AsyncKeyStore`](crate::AsyncKeyStore) and
    /// [`AsyncKeyAudit`](crate::AsyncKeyAudit): call the manager's
    /// `*_async` methods from a Tokio runtime.
    ///
    /// ```no_run
    /// use api_keys::{KeyManager, SqliteKeyStore};
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = SqliteKeyStore::open("keys.db").await?; // created on first use
    /// store.migrate().await?;
    /// let keys = KeyManager::new(store);
    /// # let _ = keys; Ok(()) }
    /// ```
    ///
    /// The same guarantees as the server stores: no caching, each write one
    /// transaction (`BEGIN IMMEDIATE`, which serialises every writer of the
    /// file, so the one-active-key check needs no lock row), compare-and-swap
    /// updates, atomic rolls, busy databases retried. [`open`](Self::open)
    /// and [`connect`](Self::connect) create the file if needed and use WAL
    /// journaling with a 10-second busy timeout, so readers never wait for
    /// a writer and a second process (a CLI, a cron job) can use the same
    /// file safely; synchronous commits stay at SQLite's default (`FULL`),
    /// so a confirmed revoke survives a power loss. A pool built by the host
    /// should set the same (`SqliteConnectOptions::journal_mode(Wal)`,
    /// `busy_timeout`, `create_if_missing`). The file is local: do not put
    /// it on a network file system.
    ///
    /// Cloning is cheap and shares the pool.
    pub struct SqliteKeyStore(Lite, sqlx::SqlitePool, "sqlite");
}

impl SqliteKeyStore {
    /// Opens (creating if needed) the database file at `path`: WAL
    /// journaling, a 10-second busy timeout, a pool of sqlx's default size
    /// with a 10-second timeout to get a connection.
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Backend`](crate::StoreErrorKind::Backend) if the
    /// file cannot be opened or created (its directory must exist).
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(SqliteConnectOptions::new().filename(path)).await
    }

    /// As [`open`](Self::open), for a sqlx SQLite URL
    /// (`sqlite://keys.db`, `sqlite:///var/lib/app/keys.db`).
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Backend`](crate::StoreErrorKind::Backend) if the
    /// URL does not parse or the file cannot be opened or created.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options: SqliteConnectOptions = url.parse().map_err(StoreError::backend)?;
        Self::open_with(options).await
    }

    async fn open_with(options: SqliteConnectOptions) -> Result<Self, StoreError> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(StoreError::backend)?;
        Ok(Self::from_pool(pool))
    }
}
