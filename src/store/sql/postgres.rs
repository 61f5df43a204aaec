//! PostgreSQL: SQL text, transient errors and `connect`.

use super::statements::{
    Dialect, ON_CONFLICT_UPSERT_TOUCH, ON_CONFLICT_UPSERT_USAGE, touch_set, triples,
};
use super::{ACQUIRE_TIMEOUT, Migration, migrations, sql_store, sqlx_engine};
use crate::error::StoreError;
use std::future::Future;

/// The PostgreSQL engine.
pub(crate) struct Pg;

/// `UPDATE … FROM (VALUES …)`, the batch grouped by key first.
fn touch_many(n: usize) -> String {
    // The first row's casts type the whole VALUES list.
    let mut values = String::from("(?::bytea, ?::bigint, ?::bigint)");
    if n > 1 {
        values.push_str(", ");
        values.push_str(&triples(n - 1));
    }
    format!(
        "UPDATE api_key_usage AS u SET {} FROM (SELECT id, MAX(at) AS at, \
         SUM(uses)::bigint AS uses FROM (VALUES {values}) AS b (id, at, uses) GROUP BY id) AS v \
         WHERE u.id = v.id",
        touch_set("u.")
    )
}

const DIALECT: Dialect = Dialect {
    numbered: true,
    before_begin: None,
    begin: "BEGIN ISOLATION LEVEL READ COMMITTED",
    // Creates and row-locks the owner's lock row in one statement.
    lock_owner: Some(
        "INSERT INTO api_key_owners (owner) VALUES (?) \
         ON CONFLICT (owner) DO UPDATE SET owner = EXCLUDED.owner",
    ),
    upsert_usage: ON_CONFLICT_UPSERT_USAGE,
    upsert_touch: ON_CONFLICT_UPSERT_TOUCH,
    create_migrations_table: "CREATE TABLE IF NOT EXISTS api_keys_schema_migrations (\
         version BIGINT PRIMARY KEY, name TEXT NOT NULL)",
    // Transactional DDL: one migrator at a time applies and records.
    lock_migrations: Some("LOCK TABLE api_keys_schema_migrations IN EXCLUSIVE MODE"),
    record_migration: "INSERT INTO api_keys_schema_migrations (version, name) VALUES (?, ?) \
         ON CONFLICT (version) DO NOTHING",
    bump_feed: "UPDATE api_key_feed SET seq = seq + ? WHERE id = 1 RETURNING seq",
    bump_returns: true,
    notify: Some("SELECT pg_notify('api_key_changes', ?)"),
    touch_many,
};

const MIGRATIONS: &[Migration] = migrations!("postgres");

/// Serialization failure and deadlock: the transaction was rolled back.
fn transient(e: &(dyn sqlx::error::DatabaseError + 'static)) -> bool {
    matches!(e.code().as_deref(), Some("40001" | "40P01"))
}

sqlx_engine! {
    engine: Pg,
    db: sqlx::Postgres,
    row: sqlx::postgres::PgRow,
    dialect: DIALECT,
    migrations: MIGRATIONS,
    text: |row, index| sqlx::Row::try_get(row, index),
    transient: transient,
}

sql_store! {
    /// Keys in PostgreSQL, on the host's sqlx [`PgPool`](https://docs.rs/sqlx/0.8/sqlx/type.PgPool.html)
    /// (feature `postgres`): for application servers that share one
    /// database. An [`AsyncKeyStore`](crate::AsyncKeyStore) and
    /// [`AsyncKeyAudit`](crate::AsyncKeyAudit): call the manager's
    /// `*_async` methods from a Tokio runtime.
    ///
    /// ```no_run
    /// use api_keys::{KeyManager, PostgresKeyStore};
    /// # async fn run(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
    /// let store = PostgresKeyStore::from_pool(pool);
    /// store.migrate().await?;
    /// let keys = KeyManager::new(store);
    /// # let _ = keys; Ok(()) }
    /// ```
    ///
    /// No caching: every `get` reads the row, so a revoke is refused by
    /// every server from its next request on. Each write is one
    /// `READ COMMITTED` transaction, serialised per owner by a lock row in
    /// `api_key_owners`; updates are compare-and-swaps on the version; a
    /// roll is all or nothing; serialization failures (`40001`) and
    /// deadlocks (`40P01`) are retried. No advisory locks, triggers,
    /// sequences or extensions, so it also runs on PostgreSQL-compatible
    /// databases. The tables live in the connection's search path: to keep
    /// them in a schema of their own, set it on the pool (e.g.
    /// `?options=-c%20search_path%3Dkeys` in the URL; the schema must
    /// exist). The crate's README ("Stores") describes the schema and the
    /// guarantees in full.
    ///
    /// Cloning is cheap and shares the pool.
    pub struct PostgresKeyStore(Pg, sqlx::PgPool, "postgres");
}

impl PostgresKeyStore {
    /// Opens a pool to the database at `url`
    /// (`postgres://user:password@host:5432/dbname`): sqlx's default size,
    /// and a 10-second timeout to get a connection, so a verification fails
    /// closed instead of hanging when the database is unreachable. Opens one
    /// connection before it returns, so a wrong URL or an unreachable
    /// server is reported here. TLS is available when the host enables one
    /// of sqlx's TLS features; for other pool settings build the pool and
    /// use [`from_pool`](Self::from_pool).
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Backend`](crate::StoreErrorKind::Backend) if the
    /// URL does not parse or the first connection fails; the driver's error
    /// is the [`source`](std::error::Error::source).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options: sqlx::postgres::PgConnectOptions = url.parse().map_err(StoreError::backend)?;
        // One direct connection first: the pool retries a refused
        // connection until its timeout and then reports only "timed out";
        // this reports the cause ("connection refused", a bad password).
        super::first_connection::<sqlx::postgres::PgConnection>(&options).await?;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        Ok(Self::from_pool(pool))
    }
}

impl PostgresKeyStore {
    /// Whether writes send a `pg_notify` to the change feed's followers
    /// (default: yes). Turn it off on a PostgreSQL-compatible database
    /// without `LISTEN`/`NOTIFY`: followers then rely on their polls alone,
    /// which hold the same staleness bound.
    #[must_use]
    pub fn notifications(mut self, on: bool) -> Self {
        self.inner.set_notify(on);
        self
    }

    /// A `LISTEN` connection for a
    /// [`FeedFollower`](crate::cache::FeedFollower)
    /// ([`run_with_notifications`](crate::cache::FeedFollower::run_with_notifications)):
    /// wakes it as soon as a write on any server commits. It takes one
    /// connection of the pool for itself and reconnects after a dropped
    /// connection (notifications sent meanwhile are lost; the follower's
    /// polls cover them).
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Backend`](crate::StoreErrorKind::Backend) if the
    /// connection or the `LISTEN` fails.
    pub async fn change_listener(&self) -> Result<PgChangeListener, StoreError> {
        let mut listener = sqlx::postgres::PgListener::connect_with(self.pool())
            .await
            .map_err(StoreError::backend)?;
        listener
            .listen(CHANNEL)
            .await
            .map_err(StoreError::backend)?;
        Ok(PgChangeListener {
            state: Listening::Idle(Box::new(listener)),
        })
    }
}

/// The notification channel of the change feed.
const CHANNEL: &str = "api_key_changes";

type Receiving = std::pin::Pin<
    Box<
        dyn Future<
                Output = (
                    Box<sqlx::postgres::PgListener>,
                    Result<sqlx::postgres::PgNotification, sqlx::Error>,
                ),
            > + Send,
    >,
>;

enum Listening {
    Idle(Box<sqlx::postgres::PgListener>),
    /// A receive in progress, kept across calls: a follower that stops
    /// waiting (its poll timer fired first) resumes the same receive next
    /// time instead of cancelling it half-way through a message.
    Receiving(Receiving),
    Gone,
}

/// PostgreSQL `LISTEN` on the change feed's channel, from
/// [`PostgresKeyStore::change_listener`]: the
/// [`ChangeNotifications`](crate::ChangeNotifications) of a
/// [`FeedFollower`](crate::cache::FeedFollower).
pub struct PgChangeListener {
    state: Listening,
}

impl core::fmt::Debug for PgChangeListener {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PgChangeListener").finish_non_exhaustive()
    }
}

impl crate::feed::ChangeNotifications for PgChangeListener {
    async fn changed(&mut self) -> Result<(), StoreError> {
        self.state = match std::mem::replace(&mut self.state, Listening::Gone) {
            Listening::Idle(mut listener) => Listening::Receiving(Box::pin(async move {
                let received = listener.recv().await;
                (listener, received)
            })),
            other => other,
        };
        let Listening::Receiving(receiving) = &mut self.state else {
            return Err(StoreError::backend("the change listener was lost"));
        };
        let (listener, received) = receiving.as_mut().await;
        self.state = Listening::Idle(listener);
        received.map(drop).map_err(StoreError::backend)
    }
}
