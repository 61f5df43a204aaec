//! The SQL stores: [`PostgresKeyStore`], [`SqliteKeyStore`] and
//! [`MySqlKeyStore`], over the host's sqlx pool.
//!
//! One implementation serves the three engines. [`SqlStore`] holds the
//! store logic — the transaction shape of every write, the
//! compare-and-swap, the atomic roll, the one-active-key check, the retry
//! rules, the migrations and the audit scans — written once, generic over
//! a private [`Engine`]. The record codec ([`codec`]) is shared too. What
//! an engine file (`postgres.rs`, `sqlite.rs`, `mysql.rs`) adds is SQL text
//! (its [`Dialect`](statements::Dialect) and migration files), which error
//! codes are transient, how `connect` opens a pool, and a few lines binding
//! the shared value types to its sqlx types.
//!
//! # The transaction shape
//!
//! Every write (`insert`, `update`, `apply_roll`) is one transaction:
//!
//! 1. begin (`BEGIN ISOLATION LEVEL READ COMMITTED` on PostgreSQL,
//!    `BEGIN IMMEDIATE` on SQLite, `READ COMMITTED` then
//!    `START TRANSACTION` on MySQL/MariaDB);
//! 2. lock the owner's row in `api_key_owners` (created if needed in the
//!    same statement), so one owner's writes are serialised and the
//!    one-active-key check sees every earlier committed write — also for an
//!    owner with no key yet. SQLite needs no lock row: `BEGIN IMMEDIATE`
//!    already serialises every writer of the file;
//! 3. the operation's statements: a plain `INSERT` (a duplicate id is the
//!    engine's unique violation, reported as `Duplicate`), the condition
//!    query, the compare-and-swap `UPDATE … WHERE id AND owner AND version
//!    AND status <> 'revoked'`, the usage row;
//! 4. the change feed, last: the next change numbers from the counter row
//!    of `api_key_feed` (`UPDATE … SET seq = seq + n`, which row-locks it
//!    until commit), one `api_key_changes` row per changed key, and on
//!    PostgreSQL a `pg_notify` that is delivered at commit. The counter's
//!    lock orders the commits of writes, and a rolled-back write gives its
//!    numbers back, so the numbers are visible in order and without gaps.
//!    The lock order is always owner rows, key rows, counter: no cycles;
//! 5. commit — or roll back on any error.
//!
//! A serialization failure, deadlock or lock timeout (PostgreSQL `40001`,
//! `40P01`; MySQL 1213, 1205; SQLite busy or locked after its busy timeout)
//! rolls the transaction back and runs it again, up to [`ATTEMPTS`] times
//! in all. Reads and touches are single statements, retried the same way.

mod codec;
mod statements;

#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(feature = "mysql")]
pub use mysql::MySqlKeyStore;
#[cfg(feature = "postgres")]
pub use postgres::{PgChangeListener, PostgresKeyStore};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteKeyStore;

use super::audit::{KeyFilter, UseRank};
use super::{RollPlan, Usage, WriteCondition};
use crate::error::{StoreError, StoreErrorKind};
use crate::feed::{Change, ChangePage};
use crate::record::{KeyRecord, OwnerId};
use crate::token::KeyId;
use codec::{Encoded, SqlRow, bad_value, decode, micros_ceil, micros_floor};
use sqlx::Connection as _;
use statements::Statements;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// Attempts of an operation that failed transiently (serialization
/// failure, deadlock, lock timeout, busy database).
const ATTEMPTS: usize = 5;

/// The pool timeout `connect` sets: a verification fails closed instead of
/// hanging when the database is unreachable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// A value bound to a statement parameter: the three column types the
/// codec uses on every engine.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Int(Option<i64>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
}

/// Uses as stored (a BIGINT): at most `i64::MAX`, where the count
/// saturates anyway.
fn stored_uses(uses: u64) -> i64 {
    i64::try_from(uses).unwrap_or(i64::MAX)
}

fn id_value(id: &KeyId) -> Value {
    Value::Bytes(Some(id.as_bytes().to_vec()))
}

/// A migration file, embedded.
pub(crate) struct Migration {
    pub(crate) version: i64,
    pub(crate) name: &'static str,
    pub(crate) sql: &'static str,
}

/// Every engine's migrations, from `migrations/<engine>/`: one list of
/// versions for all engines, so none can miss one.
macro_rules! migrations {
    ($engine:literal) => {
        &[
            $crate::store::sql::Migration {
                version: 1,
                name: "api_keys",
                sql: include_str!(concat!(
                    "../../../migrations/",
                    $engine,
                    "/0001_api_keys.sql"
                )),
            },
            $crate::store::sql::Migration {
                version: 2,
                name: "change_feed",
                sql: include_str!(concat!(
                    "../../../migrations/",
                    $engine,
                    "/0002_change_feed.sql"
                )),
            },
        ]
    };
}
use migrations;

type Conn<E> = <<E as Engine>::Db as sqlx::Database>::Connection;

/// What one engine supplies: its sqlx database, SQL text, migrations,
/// transient error codes, and the binding of [`Value`]s and [`SqlRow`] to
/// its driver.
pub(crate) trait Engine: Send + Sync + 'static {
    type Db: sqlx::Database;
    type Row: SqlRow + Send;

    /// The engine's statements (built once).
    fn statements() -> &'static Statements;

    /// The engine's migrations, in version order.
    const MIGRATIONS: &'static [Migration];

    /// Runs a statement; the number of rows it affected (MySQL: matched).
    fn execute<'c>(
        conn: &'c mut Conn<Self>,
        sql: &'c str,
        params: Vec<Value>,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'c;

    /// Runs a query; its rows.
    fn fetch<'c>(
        conn: &'c mut Conn<Self>,
        sql: &'c str,
        params: Vec<Value>,
    ) -> impl Future<Output = Result<Vec<Self::Row>, sqlx::Error>> + Send + 'c;

    /// Runs a script of several statements without parameters.
    fn run_script<'c>(
        conn: &'c mut Conn<Self>,
        sql: &'c str,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send + 'c;

    /// Whether the error is worth running the transaction again for.
    fn is_transient(e: &(dyn sqlx::error::DatabaseError + 'static)) -> bool;
}

/// `connect`'s first connection, made directly (not through the pool) so
/// its error is the driver's own, within [`ACQUIRE_TIMEOUT`]. Closed
/// again: the pool opens its connections as they are needed.
#[cfg(any(feature = "postgres", feature = "mysql"))]
async fn first_connection<C: sqlx::Connection>(options: &C::Options) -> Result<(), StoreError> {
    use sqlx::ConnectOptions as _;
    match tokio::time::timeout(ACQUIRE_TIMEOUT, options.connect()).await {
        Ok(Ok(connection)) => {
            // A failure to say goodbye does not make the server unusable.
            let _ignored = connection.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(StoreError::backend(e)),
        Err(_elapsed) => Err(StoreError::backend(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no connection to the database within 10 seconds",
        ))),
    }
}

fn db(e: sqlx::Error) -> StoreError {
    if missing_table(&e) {
        StoreError::with_source(StoreErrorKind::SchemaMissing, e)
    } else {
        StoreError::backend(e)
    }
}

/// Whether a statement failed because a table does not exist — the
/// schema was never applied (`migrate()` not called): PostgreSQL
/// `42P01`, MySQL/MariaDB 1146 (`42S02`), SQLite `no such table`.
fn missing_table(e: &sqlx::Error) -> bool {
    let Some(e) = e.as_database_error() else {
        return false;
    };
    matches!(e.code().as_deref(), Some("42P01" | "42S02"))
        || e.message().starts_with("no such table")
}

/// One write, as the transaction shape runs it.
enum Write<'a> {
    Insert {
        record: &'a KeyRecord,
        row: &'a Encoded,
        condition: WriteCondition,
    },
    Update {
        record: &'a KeyRecord,
        row: &'a Encoded,
        expected: i64,
        condition: WriteCondition,
    },
    Roll {
        plan: &'a RollPlan,
        predecessor: &'a Encoded,
        successor: &'a Encoded,
        expected: i64,
    },
}

impl Write<'_> {
    /// The keys the write changes, as the change feed records them.
    fn changed(&self) -> Vec<KeyId> {
        match self {
            Write::Insert { record, .. } | Write::Update { record, .. } => vec![record.id],
            Write::Roll { plan, .. } => vec![plan.predecessor.id, plan.successor.id],
        }
    }

    /// The owners whose lock rows the write takes, in a fixed order so two
    /// writes never wait on each other in a cycle.
    fn owners(&self) -> Vec<&OwnerId> {
        let mut owners = match self {
            Write::Insert { record, .. } | Write::Update { record, .. } => vec![&record.owner],
            Write::Roll { plan, .. } => vec![&plan.predecessor.owner, &plan.successor.owner],
        };
        owners.sort();
        owners.dedup();
        owners
    }
}

/// The store logic of every SQL engine (see the module docs).
pub(crate) struct SqlStore<E: Engine> {
    pool: sqlx::Pool<E::Db>,
    /// Whether writes notify followers (where the engine can).
    notify: bool,
    engine: PhantomData<fn() -> E>,
}

impl<E: Engine> Clone for SqlStore<E> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            notify: self.notify,
            engine: PhantomData,
        }
    }
}

impl<E: Engine> SqlStore<E> {
    pub(crate) fn new(pool: sqlx::Pool<E::Db>) -> Self {
        Self {
            pool,
            notify: true,
            engine: PhantomData,
        }
    }

    /// Only PostgreSQL notifies (`PostgresKeyStore::notifications`).
    #[cfg(feature = "postgres")]
    pub(crate) fn set_notify(&mut self, notify: bool) {
        self.notify = notify;
    }

    pub(crate) fn pool(&self) -> &sqlx::Pool<E::Db> {
        &self.pool
    }

    async fn acquire(&self) -> Result<sqlx::pool::PoolConnection<E::Db>, StoreError> {
        self.pool.acquire().await.map_err(db)
    }

    // ---- migrations ------------------------------------------------------

    /// Applies every migration not yet recorded in
    /// `api_keys_schema_migrations`, in order. Each migration file is
    /// idempotent (`IF NOT EXISTS` throughout), so a migration run twice —
    /// by two servers starting at once on an engine without transactional
    /// DDL, or after a crash half-way — is harmless.
    pub(crate) async fn migrate(&self) -> Result<(), StoreError> {
        let sql = E::statements();
        // Two servers creating the bookkeeping table at once may see a
        // unique violation on PostgreSQL's catalog: the loser retries and
        // finds the table.
        retry_any(|| async {
            let mut conn = self.acquire().await?;
            E::run_script(&mut conn, sql.create_migrations_table)
                .await
                .map_err(db)
        })
        .await?;
        retry_any(|| self.migrate_once()).await
    }

    async fn migrate_once(&self) -> Result<(), StoreError> {
        let sql = E::statements();
        let mut conn = self.acquire().await?;
        if let Some(before) = sql.before_begin {
            E::run_script(&mut conn, before).await.map_err(db)?;
        }
        let mut tx = conn.begin_with(sql.begin).await.map_err(db)?;
        let outcome = async {
            if let Some(lock) = sql.lock_migrations {
                E::run_script(&mut tx, lock).await.map_err(db)?;
            }
            let rows = E::fetch(&mut tx, &sql.applied_migrations, Vec::new())
                .await
                .map_err(db)?;
            let mut applied = Vec::with_capacity(rows.len());
            for row in &rows {
                applied.push(
                    row.int(0)
                        .map_err(|e| bad_value("api_keys_schema_migrations.version", e))?,
                );
            }
            for m in E::MIGRATIONS {
                if applied.contains(&Some(m.version)) {
                    continue;
                }
                E::run_script(&mut tx, m.sql).await.map_err(db)?;
                let record = vec![
                    Value::Int(Some(m.version)),
                    Value::Text(Some(m.name.to_owned())),
                ];
                E::execute(&mut tx, &sql.record_migration, record)
                    .await
                    .map_err(db)?;
            }
            Ok(())
        }
        .await;
        finish(tx, outcome).await
    }

    // ---- writes: the transaction shape -------------------------------------

    /// Runs a write in one transaction, again after a transient failure.
    async fn write(&self, write: &Write<'_>) -> Result<(), StoreError> {
        retry::<E, _, _, _>(|| self.write_once(write)).await
    }

    async fn write_once(&self, write: &Write<'_>) -> Result<(), StoreError> {
        let sql = E::statements();
        let mut conn = self.acquire().await?;
        if let Some(before) = sql.before_begin {
            E::run_script(&mut conn, before).await.map_err(db)?;
        }
        let mut tx = conn.begin_with(sql.begin).await.map_err(db)?;
        let outcome = async {
            Self::steps(&mut tx, write).await?;
            Self::record_changes(&mut tx, &write.changed(), self.notify).await
        }
        .await;
        finish(tx, outcome).await
    }

    /// The change feed's part of a write, its last statements: the next
    /// numbers from the counter row (locked until commit), one change row
    /// per key, and the notification.
    async fn record_changes(
        tx: &mut Conn<E>,
        ids: &[KeyId],
        notify: bool,
    ) -> Result<(), StoreError> {
        let sql = E::statements();
        let n = i64::try_from(ids.len()).map_err(|_| StoreError::backend("too many changes"))?;
        let bump = vec![Value::Int(Some(n))];
        let head = if sql.bump_returns {
            let rows = E::fetch(tx, &sql.bump_feed, bump).await.map_err(db)?;
            feed_number(rows.first())?
        } else {
            let bumped = E::execute(tx, &sql.bump_feed, bump).await.map_err(db)?;
            if bumped != 1 {
                return Err(StoreError::backend(
                    "the change feed counter row is missing: run migrate()",
                ));
            }
            let rows = E::fetch(tx, &sql.feed_head, Vec::new()).await.map_err(db)?;
            feed_number(rows.first())?
        };
        let first = head - n;
        for (seq, id) in (first + 1..).zip(ids) {
            let change = vec![Value::Int(Some(seq)), id_value(id)];
            E::execute(tx, &sql.record_change, change)
                .await
                .map_err(db)?;
        }
        if let (Some(notify_sql), true) = (&sql.notify, notify) {
            let payload = vec![Value::Text(Some(head.to_string()))];
            E::execute(tx, notify_sql, payload).await.map_err(db)?;
        }
        Ok(())
    }

    /// The statements of a write, inside its transaction.
    async fn steps(tx: &mut Conn<E>, write: &Write<'_>) -> Result<(), StoreError> {
        let sql = E::statements();
        if let Some(lock) = &sql.lock_owner {
            for owner in write.owners() {
                let params = vec![Value::Text(Some(owner.as_str().to_owned()))];
                E::execute(tx, lock, params).await.map_err(db)?;
            }
        }
        match *write {
            Write::Insert {
                record,
                row,
                condition,
            } => {
                Self::insert_row(tx, row).await?;
                Self::check_condition(tx, record, condition).await
            }
            Write::Update {
                record,
                row,
                expected,
                condition,
            } => {
                Self::check_condition(tx, record, condition).await?;
                Self::compare_and_swap(tx, row, expected).await
            }
            Write::Roll {
                predecessor,
                successor,
                expected,
                ..
            } => {
                Self::insert_row(tx, successor).await?;
                Self::compare_and_swap(tx, predecessor, expected).await
            }
        }
    }

    /// The key row and its usage row; a duplicate id is `Duplicate`.
    async fn insert_row(tx: &mut Conn<E>, row: &Encoded) -> Result<(), StoreError> {
        let sql = E::statements();
        match E::execute(tx, &sql.insert_key, row.insert_params()).await {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::new(StoreErrorKind::Duplicate));
            }
            Err(e) => return Err(db(e)),
        }
        E::execute(tx, &sql.upsert_usage, row.usage_params())
            .await
            .map(drop)
            .map_err(db)
    }

    async fn check_condition(
        tx: &mut Conn<E>,
        written: &KeyRecord,
        condition: WriteCondition,
    ) -> Result<(), StoreError> {
        let now = match condition {
            WriteCondition::Always => return Ok(()),
            // A stored end `e` (whole microseconds) is after `now` exactly
            // when it is after `now` rounded down.
            WriteCondition::NoOtherUsableKey { now } => micros_floor(now),
        };
        let params = vec![
            Value::Text(Some(written.owner.as_str().to_owned())),
            id_value(&written.id),
            Value::Int(Some(now)),
            Value::Int(Some(now)),
        ];
        let clash = E::fetch(tx, &E::statements().other_usable, params)
            .await
            .map_err(db)?;
        if clash.is_empty() {
            Ok(())
        } else {
            Err(StoreError::new(StoreErrorKind::ActiveKeyExists))
        }
    }

    /// The compare-and-swap `UPDATE`; on no match, `NotFound` or
    /// `Conflict`. Then `last_used_at`, forward only (the stored
    /// `use_count` stays).
    async fn compare_and_swap(
        tx: &mut Conn<E>,
        row: &Encoded,
        expected: i64,
    ) -> Result<(), StoreError> {
        let sql = E::statements();
        let swapped = E::execute(tx, &sql.update_key, row.update_params(expected))
            .await
            .map_err(db)?;
        if swapped == 0 {
            let exists = E::fetch(tx, &sql.key_exists, vec![row.id()])
                .await
                .map_err(db)?;
            return Err(StoreError::new(if exists.is_empty() {
                StoreErrorKind::NotFound
            } else {
                StoreErrorKind::Conflict
            }));
        }
        // Also for a record never used: one statement for every update
        // (management writes are rare) instead of a test that could skip
        // a `last_used_at` to move forward.
        E::execute(tx, &sql.upsert_usage, row.usage_params())
            .await
            .map(drop)
            .map_err(db)
    }

    pub(crate) async fn insert(
        &self,
        record: &KeyRecord,
        condition: WriteCondition,
    ) -> Result<(), StoreError> {
        let row = Encoded::new(record)?;
        self.write(&Write::Insert {
            record,
            row: &row,
            condition,
        })
        .await
    }

    pub(crate) async fn update(
        &self,
        record: &KeyRecord,
        expected_version: u64,
        condition: WriteCondition,
    ) -> Result<(), StoreError> {
        let row = Encoded::new(record)?;
        // A version beyond BIGINT was never stored: the swap cannot match.
        let Ok(expected) = i64::try_from(expected_version) else {
            return Err(StoreError::new(StoreErrorKind::Conflict));
        };
        self.write(&Write::Update {
            record,
            row: &row,
            expected,
            condition,
        })
        .await
    }

    pub(crate) async fn apply_roll(&self, plan: &RollPlan) -> Result<(), StoreError> {
        let predecessor = Encoded::new(&plan.predecessor)?;
        let successor = Encoded::new(&plan.successor)?;
        let Ok(expected) = i64::try_from(plan.expected_version) else {
            return Err(StoreError::new(StoreErrorKind::Conflict));
        };
        self.write(&Write::Roll {
            plan,
            predecessor: &predecessor,
            successor: &successor,
            expected,
        })
        .await
    }

    // ---- touch and reads ----------------------------------------------------

    pub(crate) async fn touch(&self, id: &KeyId, usage: Usage) -> Result<(), StoreError> {
        let at = micros_floor(usage.at);
        let uses = stored_uses(usage.uses);
        retry::<E, _, _, _>(|| self.touch_once(id, at, uses)).await
    }

    async fn touch_once(&self, id: &KeyId, at: i64, uses: i64) -> Result<(), StoreError> {
        let sql = E::statements();
        let mut conn = self.acquire().await?;
        let (at, uses) = (Value::Int(Some(at)), Value::Int(Some(uses)));
        let params = vec![
            at.clone(),
            at.clone(),
            uses.clone(),
            uses.clone(),
            id_value(id),
        ];
        if E::execute(&mut conn, &sql.touch, params)
            .await
            .map_err(db)?
            > 0
        {
            return Ok(());
        }
        // Nothing changed: the usage row is missing (a key row written by
        // something else), there is no key, or (MySQL counts changed rows)
        // the touch changed nothing.
        let exists = E::fetch(&mut conn, &sql.key_exists, vec![id_value(id)])
            .await
            .map_err(db)?;
        if exists.is_empty() {
            return Err(StoreError::new(StoreErrorKind::NotFound));
        }
        // The MySQL case: the row exists and the upsert adds nothing more
        // than the update did (no uses, no later instant).
        let exists_usage = E::fetch(&mut conn, &sql.usage_exists, vec![id_value(id)])
            .await
            .map_err(db)?;
        if !exists_usage.is_empty() {
            return Ok(());
        }
        E::execute(&mut conn, &sql.upsert_touch, vec![id_value(id), at, uses])
            .await
            .map(drop)
            .map_err(db)
    }

    pub(crate) async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        retry::<E, _, _, _>(|| async {
            let rows = self.query(&E::statements().get, vec![id_value(id)]).await?;
            rows.first().map(|r| decode(r).map(Arc::new)).transpose()
        })
        .await
    }

    pub(crate) async fn list_by_owner(
        &self,
        owner: &OwnerId,
    ) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        retry::<E, _, _, _>(|| async {
            let params = vec![Value::Text(Some(owner.as_str().to_owned()))];
            let rows = self.query(&E::statements().list_by_owner, params).await?;
            rows.iter().map(|r| decode(r).map(Arc::new)).collect()
        })
        .await
    }

    pub(crate) async fn scan(
        &self,
        filter: KeyFilter,
        after: Option<&KeyId>,
        limit: usize,
    ) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        let (index, mut params) = match filter {
            KeyFilter::ExpiringBefore(before) => (1, vec![Value::Int(Some(micros_ceil(before)))]),
            KeyFilter::UnusedSince(since) => {
                let bound = Value::Int(Some(micros_ceil(since)));
                (2, vec![bound.clone(), bound])
            }
            KeyFilter::All => (0, Vec::new()),
        };
        if let Some(after) = after {
            params.push(id_value(after));
        }
        params.push(Value::Int(Some(i64::try_from(limit).unwrap_or(i64::MAX))));
        let sql = E::statements()
            .scan
            .get(index)
            .and_then(|by_cursor| by_cursor.get(usize::from(after.is_some())))
            .ok_or_else(|| StoreError::backend("no scan statement"))?;
        retry::<E, _, _, _>(|| async {
            let rows = self.query(sql, params.clone()).await?;
            rows.iter().map(|r| decode(r).map(Arc::new)).collect()
        })
        .await
    }

    /// Records uses of many keys in one transaction, one statement per
    /// chunk of 500 keys (chunks in id order; within a statement the
    /// database picks the order, and a deadlock between two servers is
    /// retried): all or nothing, so a failed batch put back and written
    /// again is not counted twice.
    pub(crate) async fn touch_many(&self, touches: &[(KeyId, Usage)]) -> Result<(), StoreError> {
        let mut sorted: Vec<(KeyId, Usage)> = touches.to_vec();
        sorted.sort_unstable_by_key(|(id, _)| *id);
        // One entry per key (a batch may name a key twice).
        sorted.dedup_by(|later, earlier| {
            if later.0 == earlier.0 {
                earlier.1 = earlier.1.merged(later.1);
                true
            } else {
                false
            }
        });
        let sorted: Vec<(KeyId, i64, i64)> = sorted
            .iter()
            .map(|(id, u)| (*id, micros_floor(u.at), stored_uses(u.uses)))
            .collect();
        if sorted.is_empty() {
            return Ok(());
        }
        retry::<E, _, _, _>(|| self.touch_many_once(&sorted)).await
    }

    async fn touch_many_once(&self, sorted: &[(KeyId, i64, i64)]) -> Result<(), StoreError> {
        let sql = E::statements();
        let mut conn = self.acquire().await?;
        if let Some(before) = sql.before_begin {
            E::run_script(&mut conn, before).await.map_err(db)?;
        }
        let mut tx = conn.begin_with(sql.begin).await.map_err(db)?;
        let outcome = Self::touch_chunks(&mut tx, sorted).await;
        finish(tx, outcome).await
    }

    async fn touch_chunks(
        tx: &mut Conn<E>,
        sorted: &[(KeyId, i64, i64)],
    ) -> Result<(), StoreError> {
        let sql = E::statements();
        let largest = statements::TOUCH_SIZES.last().copied().unwrap_or(1);
        for chunk in sorted.chunks(largest) {
            let Some((size, statement)) = statements::TOUCH_SIZES
                .iter()
                .zip(&sql.touch_many)
                .find(|(size, _)| **size >= chunk.len())
            else {
                return Err(StoreError::backend("no batch touch statement"));
            };
            // Padded to the statement's size with the last key and no uses
            // (the statement groups by key, so the repeats change nothing).
            let padding = chunk.last().map(|&(id, at, _)| (id, at, 0));
            let mut params = Vec::with_capacity(size * 3);
            for (id, at, uses) in chunk
                .iter()
                .copied()
                .chain(core::iter::repeat(padding).flatten())
                .take(*size)
            {
                params.push(id_value(&id));
                params.push(Value::Int(Some(at)));
                params.push(Value::Int(Some(uses)));
            }
            E::execute(tx, statement, params).await.map_err(db)?;
        }
        Ok(())
    }

    /// The usage ranking in one ordered query.
    pub(crate) async fn ranked_by_use(
        &self,
        rank: UseRank,
        owner: Option<&OwnerId>,
        limit: usize,
    ) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        let by_rank = match rank {
            UseRank::MostUsed => 0,
            UseRank::LeastUsed => 1,
        };
        let sql = E::statements()
            .ranked
            .get(by_rank)
            .and_then(|by_owner| by_owner.get(usize::from(owner.is_some())))
            .ok_or_else(|| StoreError::backend("no ranking statement"))?;
        let mut params = Vec::new();
        if let Some(owner) = owner {
            params.push(Value::Text(Some(owner.as_str().to_owned())));
        }
        params.push(Value::Int(Some(i64::try_from(limit).unwrap_or(i64::MAX))));
        retry::<E, _, _, _>(|| async {
            let rows = self.query(sql, params.clone()).await?;
            rows.iter().map(|r| decode(r).map(Arc::new)).collect()
        })
        .await
    }

    // ---- the change feed ------------------------------------------------------

    pub(crate) async fn feed_head(&self) -> Result<u64, StoreError> {
        retry::<E, _, _, _>(|| async {
            let rows = self.query(&E::statements().feed_head, Vec::new()).await?;
            let head = feed_number(rows.first())?;
            u64::try_from(head).map_err(|e| bad_value("api_key_feed.seq", e))
        })
        .await
    }

    pub(crate) async fn changes_since(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<ChangePage, StoreError> {
        let params = vec![
            Value::Int(Some(i64::try_from(after).unwrap_or(i64::MAX))),
            Value::Int(Some(i64::try_from(limit).unwrap_or(i64::MAX))),
        ];
        let rows =
            retry::<E, _, _, _>(|| self.query(&E::statements().changes_since, params.clone()))
                .await?;
        let mut changes = Vec::with_capacity(rows.len());
        let mut pruned_through = None;
        for row in &rows {
            let seq = row
                .int(0)
                .map_err(|e| bad_value("api_key_changes.seq", e))?
                .and_then(|s| u64::try_from(s).ok())
                .ok_or_else(|| StoreError::backend("a change without a valid number"))?;
            match row
                .bytes(1)
                .map_err(|e| bad_value("api_key_changes.key_id", e))?
            {
                Some(bytes) => {
                    let bytes: [u8; crate::token::KEY_ID_BYTES] = bytes
                        .try_into()
                        .map_err(|_| StoreError::backend("a change with a malformed key id"))?;
                    changes.push(Change {
                        seq,
                        key_id: KeyId::from_bytes(bytes),
                    });
                }
                None => pruned_through = Some(seq),
            }
        }
        let pruned_through = pruned_through.ok_or_else(|| {
            StoreError::backend("the change feed counter row is missing: run migrate()")
        })?;
        changes.sort_unstable_by_key(|c| c.seq);
        Ok(ChangePage::new(changes, pruned_through))
    }

    /// Deletes the changes older than the last `keep`, and marks them
    /// pruned; returns how many were deleted.
    pub(crate) async fn prune_changes(&self, keep: u64) -> Result<u64, StoreError> {
        let head = self.feed_head().await?;
        let Some(through) = head.checked_sub(keep).filter(|t| *t > 0) else {
            return Ok(0);
        };
        let through = i64::try_from(through).map_err(|e| bad_value("api_key_feed.seq", e))?;
        retry::<E, _, _, _>(|| async {
            let sql = E::statements();
            let mut conn = self.acquire().await?;
            if let Some(before) = sql.before_begin {
                E::run_script(&mut conn, before).await.map_err(db)?;
            }
            let mut tx = conn.begin_with(sql.begin).await.map_err(db)?;
            let mut deleted = 0;
            let outcome = async {
                let mark = vec![Value::Int(Some(through)), Value::Int(Some(through))];
                E::execute(&mut tx, &sql.mark_pruned, mark)
                    .await
                    .map_err(db)?;
                deleted = E::execute(
                    &mut tx,
                    &sql.delete_changes,
                    vec![Value::Int(Some(through))],
                )
                .await
                .map_err(db)?;
                Ok(())
            }
            .await;
            finish(tx, outcome).await.map(|()| deleted)
        })
        .await
    }

    async fn query(&self, sql: &str, params: Vec<Value>) -> Result<Vec<E::Row>, StoreError> {
        let mut conn = self.acquire().await?;
        E::fetch(&mut conn, sql, params).await.map_err(db)
    }
}

/// The counter value in the first column of `row`.
fn feed_number<R: SqlRow>(row: Option<&R>) -> Result<i64, StoreError> {
    row.ok_or_else(|| StoreError::backend("the change feed counter row is missing: run migrate()"))?
        .int(0)
        .map_err(|e| bad_value("api_key_feed.seq", e))?
        .ok_or_else(|| StoreError::backend("the change feed counter is NULL"))
}

/// Commits on success; rolls back on failure (best effort: if the
/// connection is gone, so is the transaction).
async fn finish<DB: sqlx::Database>(
    tx: sqlx::Transaction<'_, DB>,
    outcome: Result<(), StoreError>,
) -> Result<(), StoreError> {
    match outcome {
        Ok(()) => tx.commit().await.map_err(db),
        Err(e) => {
            let _ignored = tx.rollback().await;
            Err(e)
        }
    }
}

/// The database error behind a store error, if any.
fn database_error(e: &StoreError) -> Option<&(dyn sqlx::error::DatabaseError + 'static)> {
    match std::error::Error::source(e)?.downcast_ref::<sqlx::Error>()? {
        sqlx::Error::Database(db) => Some(&**db),
        _ => None,
    }
}

/// Runs `op` again after a transient failure: the transaction was rolled
/// back, so a new attempt is safe.
async fn retry<E: Engine, T, F, Fut>(mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if attempt < ATTEMPTS && database_error(&e).is_some_and(E::is_transient) => {
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

/// Runs `op` again after any database error (migrations: a concurrent
/// `CREATE` by another server, a deadlock between two migrators).
async fn retry_any<T, F, Fut>(mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if attempt < ATTEMPTS && database_error(&e).is_some() => attempt += 1,
            outcome => return outcome,
        }
    }
}

/// Generates a public store type over [`SqlStore`]: the struct, `Clone`,
/// a `Debug` that never shows the connection string, `from_pool`, `pool`,
/// `migrate`, and the [`AsyncKeyStore`](crate::AsyncKeyStore) and
/// [`AsyncKeyAudit`](crate::AsyncKeyAudit) implementations.
macro_rules! sql_store {
    (
        $(#[$doc:meta])*
        pub struct $name:ident($engine:ty, $pool:ty, $feature:literal);
    ) => {
        $(#[$doc])*
        // The badge names the store's own feature, not also the private
        // `sql` module's "any SQL feature".
        #[cfg_attr(docsrs, doc(auto_cfg = false), doc(cfg(feature = $feature)))]
        #[derive(Clone)]
        pub struct $name {
            inner: $crate::store::sql::SqlStore<$engine>,
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                // Never the connection options: they may hold a password.
                let pool = self.inner.pool();
                f.debug_struct(stringify!($name))
                    .field("connections", &pool.size())
                    .field("idle", &pool.num_idle())
                    .field("closed", &pool.is_closed())
                    .finish()
            }
        }

        impl $name {
            /// A store over a pool the host already has (shared with its own
            /// queries). Opens nothing; call [`migrate`](Self::migrate) once
            /// at start unless the schema is applied by hand.
            #[must_use]
            pub fn from_pool(pool: $pool) -> Self {
                Self {
                    inner: $crate::store::sql::SqlStore::new(pool),
                }
            }

            /// The pool the store runs on.
            #[must_use]
            pub fn pool(&self) -> &$pool {
                self.inner.pool()
            }

            /// Brings the schema up to date: applies every migration of
            #[doc = concat!("`migrations/", $feature, "/` not yet recorded in")]
            /// `api_keys_schema_migrations`. Idempotent: call it at every
            /// start; several servers may call it at once.
            ///
            /// # Errors
            ///
            /// [`StoreErrorKind::Backend`](crate::StoreErrorKind::Backend)
            /// if a statement fails (for instance the role may not create
            /// tables: then apply the files by hand).
            pub async fn migrate(&self) -> Result<(), $crate::StoreError> {
                self.inner.migrate().await
            }

            /// Deletes all but the last `keep` changes of the change feed
            /// and returns how many it deleted. Call it now and then (say
            /// daily, from any one server; concurrent calls are safe) with
            /// a `keep` well above the changes a follower may miss while
            /// down: a [`FeedFollower`](crate::cache::FeedFollower) that
            /// finds changes it never saw pruned drops its whole cache and
            /// starts again, which is safe but costs a cold cache.
            ///
            /// # Errors
            ///
            /// [`StoreErrorKind::Backend`](crate::StoreErrorKind::Backend).
            pub async fn prune_changes(&self, keep: u64) -> Result<u64, $crate::StoreError> {
                self.inner.prune_changes(keep).await
            }
        }

        impl $crate::AsyncKeyStore for $name {
            async fn insert(
                &self,
                record: &$crate::KeyRecord,
                condition: $crate::WriteCondition,
            ) -> Result<(), $crate::StoreError> {
                self.inner.insert(record, condition).await
            }

            async fn get(
                &self,
                id: &$crate::KeyId,
            ) -> Result<Option<std::sync::Arc<$crate::KeyRecord>>, $crate::StoreError> {
                self.inner.get(id).await
            }

            async fn list_by_owner(
                &self,
                owner: &$crate::OwnerId,
            ) -> Result<Vec<std::sync::Arc<$crate::KeyRecord>>, $crate::StoreError> {
                self.inner.list_by_owner(owner).await
            }

            async fn update(
                &self,
                record: &$crate::KeyRecord,
                expected_version: u64,
                condition: $crate::WriteCondition,
            ) -> Result<(), $crate::StoreError> {
                self.inner.update(record, expected_version, condition).await
            }

            async fn apply_roll(&self, plan: &$crate::RollPlan) -> Result<(), $crate::StoreError> {
                self.inner.apply_roll(plan).await
            }

            async fn touch(
                &self,
                id: &$crate::KeyId,
                usage: $crate::Usage,
            ) -> Result<(), $crate::StoreError> {
                self.inner.touch(id, usage).await
            }

            /// One transaction, one statement per 500 keys (all or
            /// nothing); never moves a value backwards; skips unknown ids.
            async fn touch_many(
                &self,
                touches: &[($crate::KeyId, $crate::Usage)],
            ) -> Result<(), $crate::StoreError> {
                self.inner.touch_many(touches).await
            }
        }

        impl $crate::ChangeFeed for $name {
            async fn head(&self) -> Result<u64, $crate::StoreError> {
                self.inner.feed_head().await
            }

            async fn changes_since(
                &self,
                after: u64,
                limit: usize,
            ) -> Result<$crate::ChangePage, $crate::StoreError> {
                self.inner.changes_since(after, limit).await
            }
        }

        impl $crate::AsyncKeyAudit for $name {
            async fn scan(
                &self,
                filter: $crate::KeyFilter,
                after: Option<&$crate::KeyId>,
                limit: usize,
            ) -> Result<Vec<std::sync::Arc<$crate::KeyRecord>>, $crate::StoreError> {
                self.inner.scan(filter, after, limit).await
            }

            /// One ordered query (`ORDER BY use_count`, then id).
            async fn ranked_by_use(
                &self,
                rank: $crate::UseRank,
                owner: Option<&$crate::OwnerId>,
                limit: usize,
            ) -> Result<Vec<std::sync::Arc<$crate::KeyRecord>>, $crate::StoreError> {
                self.inner.ranked_by_use(rank, owner, limit).await
            }
        }
    };
}
use sql_store;

/// Implements [`Engine`] and [`SqlRow`] for one sqlx database: the same
/// few lines for each, over its concrete types.
macro_rules! sqlx_engine {
    (
        engine: $engine:ty,
        db: $db:ty,
        row: $row:ty,
        dialect: $dialect:expr,
        migrations: $migrations:expr,
        text: $text:expr,
        transient: $transient:expr,
    ) => {
        fn bind<'q>(
            mut query: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>>,
            params: Vec<$crate::store::sql::Value>,
        ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>> {
            use $crate::store::sql::Value;
            for value in params {
                query = match value {
                    Value::Int(v) => query.bind(v),
                    Value::Text(v) => query.bind(v),
                    Value::Bytes(v) => query.bind(v),
                };
            }
            query
        }

        impl $crate::store::sql::codec::SqlRow for $row {
            fn int(&self, index: usize) -> Result<Option<i64>, sqlx::Error> {
                sqlx::Row::try_get(self, index)
            }
            fn text(&self, index: usize) -> Result<Option<String>, sqlx::Error> {
                let text: fn(&$row, usize) -> Result<Option<String>, sqlx::Error> = $text;
                text(self, index)
            }
            fn bytes(&self, index: usize) -> Result<Option<Vec<u8>>, sqlx::Error> {
                sqlx::Row::try_get(self, index)
            }
        }

        impl $crate::store::sql::Engine for $engine {
            type Db = $db;
            type Row = $row;

            fn statements() -> &'static $crate::store::sql::statements::Statements {
                static STATEMENTS: std::sync::OnceLock<$crate::store::sql::statements::Statements> =
                    std::sync::OnceLock::new();
                STATEMENTS
                    .get_or_init(|| $crate::store::sql::statements::Statements::new(&$dialect))
            }

            const MIGRATIONS: &'static [$crate::store::sql::Migration] = $migrations;

            fn execute<'c>(
                conn: &'c mut <$db as sqlx::Database>::Connection,
                sql: &'c str,
                params: Vec<$crate::store::sql::Value>,
            ) -> impl std::future::Future<Output = Result<u64, sqlx::Error>> + Send + 'c {
                async move {
                    let done = bind(sqlx::query(sql), params).execute(&mut *conn).await?;
                    Ok(done.rows_affected())
                }
            }

            fn fetch<'c>(
                conn: &'c mut <$db as sqlx::Database>::Connection,
                sql: &'c str,
                params: Vec<$crate::store::sql::Value>,
            ) -> impl std::future::Future<Output = Result<Vec<$row>, sqlx::Error>> + Send + 'c {
                bind(sqlx::query(sql), params).fetch_all(conn)
            }

            fn run_script<'c>(
                conn: &'c mut <$db as sqlx::Database>::Connection,
                sql: &'c str,
            ) -> impl std::future::Future<Output = Result<(), sqlx::Error>> + Send + 'c {
                // A string without arguments runs unprepared (PostgreSQL's
                // simple query protocol, MySQL's text protocol), where
                // several statements are allowed.
                let run = sqlx::Executor::execute(conn, sql);
                async move { run.await.map(drop) }
            }

            fn is_transient(e: &(dyn sqlx::error::DatabaseError + 'static)) -> bool {
                let transient: fn(&(dyn sqlx::error::DatabaseError + 'static)) -> bool = $transient;
                transient(e)
            }
        }
    };
}
use sqlx_engine;

/// `retry` and `retry_any` over database errors with chosen codes (the
/// engines' own errors are tested against real servers in
/// `tests/sql_stores.rs`).
#[cfg(test)]
#[cfg(all(feature = "postgres", feature = "sqlite"))]
mod retry_tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;
    use std::borrow::Cow;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A database error with a code, as a driver reports it.
    #[derive(Debug)]
    struct Coded(&'static str);

    impl core::fmt::Display for Coded {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            write!(f, "error {}", self.0)
        }
    }

    impl std::error::Error for Coded {}

    impl sqlx::error::DatabaseError for Coded {
        fn message(&self) -> &str {
            "coded"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    enum Fail {
        /// A database error with this code.
        Code(&'static str),
        /// A store error with no database error behind it.
        Plain,
    }

    /// How `how` ends when the first `failures` attempts fail, and how many
    /// attempts it made.
    fn run<F, Fut>(failures: usize, fail: Fail, how: F) -> (Result<usize, StoreError>, usize)
    where
        F: FnOnce(Box<dyn FnMut() -> core::future::Ready<Result<usize, StoreError>>>) -> Fut,
        Fut: Future<Output = Result<usize, StoreError>>,
    {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let op = Box::new(move || {
            let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
            core::future::ready(if n > failures {
                Ok(n)
            } else {
                Err(match fail {
                    Fail::Code(code) => db(sqlx::Error::Database(Box::new(Coded(code)))),
                    Fail::Plain => StoreError::backend("not a database error"),
                })
            })
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let out = runtime.block_on(how(op));
        (out, calls.load(Ordering::SeqCst))
    }

    fn pg(failures: usize, fail: Fail) -> (Result<usize, StoreError>, usize) {
        run(failures, fail, retry::<postgres::Pg, _, _, _>)
    }

    fn lite(failures: usize, fail: Fail) -> (Result<usize, StoreError>, usize) {
        run(failures, fail, retry::<sqlite::Lite, _, _, _>)
    }

    fn any(failures: usize, fail: Fail) -> (Result<usize, StoreError>, usize) {
        run(failures, fail, retry_any)
    }

    fn ok(out: (Result<usize, StoreError>, usize)) -> Option<usize> {
        let (result, calls) = out;
        result.ok().filter(|n| *n == calls)
    }

    fn failed(out: (Result<usize, StoreError>, usize)) -> Option<usize> {
        let (result, calls) = out;
        result.is_err().then_some(calls)
    }

    #[test]
    fn transient_failures_are_retried_up_to_five_attempts() {
        for code in ["40001", "40P01"] {
            assert_eq!(ok(pg(0, Fail::Code(code))), Some(1), "{code}");
            assert_eq!(ok(pg(1, Fail::Code(code))), Some(2), "{code}");
            assert_eq!(
                ok(pg(ATTEMPTS - 1, Fail::Code(code))),
                Some(ATTEMPTS),
                "{code}"
            );
            assert_eq!(
                failed(pg(ATTEMPTS, Fail::Code(code))),
                Some(ATTEMPTS),
                "{code}"
            );
            assert_eq!(failed(pg(100, Fail::Code(code))), Some(ATTEMPTS), "{code}");
        }
        // SQLite: BUSY and LOCKED, with their extended codes.
        for code in ["5", "6", "261", "517", "262"] {
            assert_eq!(ok(lite(2, Fail::Code(code))), Some(3), "{code}");
            assert_eq!(
                failed(lite(100, Fail::Code(code))),
                Some(ATTEMPTS),
                "{code}"
            );
        }
    }

    #[test]
    fn other_failures_are_not_retried() {
        // A unique violation, a syntax error, a missing table.
        for code in ["23505", "42601", "42P01"] {
            assert_eq!(failed(pg(1, Fail::Code(code))), Some(1), "{code}");
        }
        // SQLite: constraint, generic error, read-only.
        for code in ["19", "1", "8", "2067"] {
            assert_eq!(failed(lite(1, Fail::Code(code))), Some(1), "{code}");
        }
        assert_eq!(failed(pg(1, Fail::Plain)), Some(1));
        assert_eq!(failed(any(1, Fail::Plain)), Some(1));
    }

    #[test]
    fn migrations_retry_every_database_error_up_to_five_attempts() {
        assert_eq!(ok(any(0, Fail::Code("23505"))), Some(1));
        assert_eq!(ok(any(ATTEMPTS - 1, Fail::Code("23505"))), Some(ATTEMPTS));
        assert_eq!(failed(any(ATTEMPTS, Fail::Code("42P07"))), Some(ATTEMPTS));
        assert_eq!(failed(any(100, Fail::Code("40001"))), Some(ATTEMPTS));
    }

    #[test]
    fn a_missing_table_is_told_apart() {
        for code in ["42P01", "42S02"] {
            let e = db(sqlx::Error::Database(Box::new(Coded(code))));
            assert_eq!(e.kind(), StoreErrorKind::SchemaMissing, "{code}");
        }
        let e = db(sqlx::Error::Database(Box::new(Coded("23505"))));
        assert_eq!(e.kind(), StoreErrorKind::Backend);
        assert_eq!(
            db(sqlx::Error::PoolTimedOut).kind(),
            StoreErrorKind::Backend
        );
    }
}
