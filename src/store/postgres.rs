//! [`PostgresKeyStore`] (feature `postgres`): keys in PostgreSQL, shared by
//! every application server that connects to the same database.
//!
//! ```no_run
//! use api_keys::{Actor, KeyManager, NewKey, OwnerId, PostgresKeyStore, RequestContext};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // Once per process: a connection pool, and the schema (idempotent).
//! let store = PostgresKeyStore::connect("postgres://app:secret@db.internal/app").await?;
//! store.migrate().await?;
//! let keys = KeyManager::builder(store).build()?;
//!
//! // Issue a key (the token is returned this once) …
//! let admin = Actor::new("user:42")?;
//! let created = keys
//!     .create_async(&admin, NewKey::secret(OwnerId::new("acct_123")?, "billing service"))
//!     .await?;
//!
//! // … and verify it on any server that uses the same database.
//! let verified = keys
//!     .verify_async(created.token.expose_secret(), &RequestContext::new())
//!     .await?;
//! assert_eq!(verified.owner().as_str(), "acct_123");
//! # Ok(()) }
//! ```
//!
//! Every server builds its [`KeyManager`](crate::KeyManager) with the same
//! key format, peppers and sealing keys. Nothing is cached: every
//! verification reads the row, so a revoke or a roll made on one server is
//! seen by the next request on every other. The store is an
//! [`AsyncKeyStore`] only: call the manager's `*_async` methods
//! (`create_async`, `verify_async`, `roll_async`, `revoke_async`, …) from a
//! Tokio runtime.
//!
//! # Connections
//!
//! The store owns a [`deadpool_postgres`] pool (default size: 4 × the number
//! of CPUs; 10-second timeouts to get, create and recycle a connection, so a
//! verification fails closed instead of hanging when the database is
//! unreachable), because application servers verify concurrently and a
//! single `tokio_postgres::Client` would serialise every transaction behind
//! one connection and never reconnect. [`PostgresKeyStore::connect`] speaks
//! plain TCP or a Unix socket without TLS; for TLS, another pool size or your
//! own pool, build a `deadpool_postgres::Pool` (with your TLS connector) and
//! pass it to [`PostgresKeyStore::from_pool`]. Queries are prepared once per
//! connection and cached (`prepare_cached`).
//!
//! # Schema
//!
//! [`PostgresKeyStore::migrate`] runs `migrations/0001_api_keys.sql`
//! (embedded in the crate), which only uses `CREATE … IF NOT EXISTS`, so it
//! can run at every start, from several servers at once. Apply the file by
//! hand instead if the application's role may not create tables.
//!
//! * `api_keys`: one row per key, primary key `id` (the 16-byte key id),
//!   index on `owner`. Text columns for the enums with `CHECK` constraints,
//!   `TEXT[]` for scopes and domain patterns (canonical text), the IP list as
//!   its canonical comma-separated text, `TIMESTAMPTZ` for instants,
//!   `BIGINT` for the version and the (`u32`) pepper and sealing-key
//!   versions, `BYTEA` for ids, the 32-byte digest and the sealed secret.
//!   Never a secret.
//! * `api_key_owners`: one row per owner, used only as a lock (below); rows
//!   are never deleted (a few bytes per owner).
//!
//! The table names are fixed. To keep them in a schema of their own, set
//! the connection's search path, e.g. `?options=-c%20search_path%3Dkeys`
//! in the URL (the schema must exist).
//!
//! Instants are stored with PostgreSQL's microsecond precision: the
//! sub-microsecond part of a `UtcDateTime` is dropped (rounded down) on write.
//!
//! A row that does not decode (an unknown status, a digest of the wrong
//! length, an invalid owner, scope, domain or IP list — only possible if the
//! table was written by something else) is reported as a
//! [`Backend`](StoreErrorKind::Backend) error naming the column, so a
//! verification fails closed; it never panics.
//!
//! # PostgreSQL features relied on, and isolation
//!
//! Only plain tables, `CHECK` constraints, a secondary index, transactions,
//! `INSERT … ON CONFLICT`, `UPDATE … WHERE` (compare-and-swap), `GREATEST`
//! and row locks — no advisory locks, `LISTEN`/`NOTIFY`, triggers, sequences
//! or extensions — so it also runs on PostgreSQL-compatible distributed
//! databases that offer those.
//!
//! * Reads (`get`, `list_by_owner`) and `touch` are single statements.
//! * Writes (`insert`, `update`, `apply_roll`) each run in one transaction
//!   at `READ COMMITTED` (set explicitly). The transaction first takes the
//!   owner's lock row (`INSERT INTO api_key_owners … ON CONFLICT (owner) DO
//!   UPDATE`, which creates and row-locks it in one statement), so all
//!   writes for one owner are serialised and the one-active-key condition
//!   ([`WriteCondition::NoOtherUsableKey`]) is checked by a query that sees
//!   every earlier committed write — including for an owner with no keys
//!   yet, where `SELECT … FOR UPDATE` on the key rows would lock nothing.
//!   Updates are compare-and-swaps
//!   (`UPDATE … WHERE id = $1 AND version = $v AND status <> 'revoked'`),
//!   correct by themselves at any isolation level; new ids use
//!   `INSERT … ON CONFLICT (id) DO NOTHING`. A roll inserts the successor
//!   and swaps the predecessor in the same transaction: both or neither.
//! * A database that runs the transaction at a stronger level (or returns
//!   serialization failures, `40001`, or deadlocks, `40P01`) is fine: such
//!   an operation is retried, up to three attempts in all.

use super::{AsyncKeyStore, RollPlan, WriteCondition};
use crate::environment::{Environment, KeyKind};
use crate::error::{StoreError, StoreErrorKind};
use crate::hash::SecretHash;
use crate::ip::IpAllowList;
use crate::origin::DomainAllowList;
use crate::record::{KeyRecord, KeyStatus, OwnerId, Scopes};
use crate::sealing::SealedSecret;
use crate::token::{KEY_ID_BYTES, KeyId};
use core::fmt;
use deadpool_postgres::{Manager, Object, Pool, Runtime, Transaction};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration as StdDuration;
use time::{Duration, OffsetDateTime, UtcDateTime};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::{IsolationLevel, NoTls, Row};

/// The schema, applied by [`PostgresKeyStore::migrate`].
const MIGRATION: &str = include_str!("../../migrations/0001_api_keys.sql");

/// Attempts of an operation that failed with a serialization failure or a
/// deadlock (or, for the migration, lost a concurrent `CREATE`).
const ATTEMPTS: usize = 3;

/// Pool timeouts set by [`PostgresKeyStore::connect`].
const POOL_TIMEOUT: StdDuration = StdDuration::from_secs(10);

/// The columns of `api_keys`, in parameter order (`$1` … `$26`).
macro_rules! columns {
    () => {
        "id, owner, kind, environment, name, note, description, scopes, \
         allowed_domains, allowed_ips, status, created_at, expires_at, \
         last_used_at, revoked_at, predecessor, successor, rolled_at, \
         grace_ends_at, version, pepper_version, secret_digest, sealed_version, \
         sealed_nonce, sealed_ciphertext, redacted"
    };
}

const GET: &str = concat!("SELECT ", columns!(), " FROM api_keys WHERE id = $1");

const LIST: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM api_keys WHERE owner = $1 ORDER BY created_at, id"
);

const INSERT: &str = concat!(
    "INSERT INTO api_keys (",
    columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
     $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26) \
     ON CONFLICT (id) DO NOTHING"
);

/// Compare-and-swap: `$27` is the expected version. The owner cannot change.
const UPDATE: &str = "UPDATE api_keys SET kind = $3, environment = $4, name = $5, \
     note = $6, description = $7, scopes = $8, allowed_domains = $9, allowed_ips = $10, \
     status = $11, created_at = $12, expires_at = $13, \
     last_used_at = GREATEST(last_used_at, $14), revoked_at = $15, predecessor = $16, \
     successor = $17, rolled_at = $18, grace_ends_at = $19, version = $20, \
     pepper_version = $21, secret_digest = $22, sealed_version = $23, sealed_nonce = $24, \
     sealed_ciphertext = $25, redacted = $26 \
     WHERE id = $1 AND owner = $2 AND version = $27 AND status <> 'revoked'";

const EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM api_keys WHERE id = $1)";

const TOUCH: &str = "UPDATE api_keys SET last_used_at = $2 \
     WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)";

/// Creates the owner's lock row if needed and row-locks it until the end of
/// the transaction.
const LOCK_OWNER: &str = "INSERT INTO api_key_owners (owner) VALUES ($1) \
     ON CONFLICT (owner) DO UPDATE SET owner = EXCLUDED.owner";

/// Whether the owner has a key other than `$2` that is live at `$3`
/// ([`KeyRecord::is_live_at`]: active and not ended; `created_at` is
/// ignored so clock skew between servers cannot let a second key in).
const OTHER_USABLE: &str = "SELECT EXISTS (SELECT 1 FROM api_keys \
     WHERE owner = $1 AND id <> $2 AND status = 'active' \
     AND (expires_at IS NULL OR $3 < expires_at) \
     AND (grace_ends_at IS NULL OR $3 < grace_ends_at))";

/// A [`KeyStore`](crate::KeyStore)-contract store in PostgreSQL, for servers
/// that share one database: implements [`AsyncKeyStore`] over
/// `tokio-postgres` with a `deadpool-postgres` connection pool. Feature
/// `postgres`.
///
/// ```no_run
/// use api_keys::{KeyManager, PostgresKeyStore, RequestContext};
///
/// # async fn run(token: &str) -> Result<(), Box<dyn std::error::Error>> {
/// let store = PostgresKeyStore::connect("postgres://app:secret@db.internal/app").await?;
/// store.migrate().await?;
/// let keys = KeyManager::builder(store).build()?;
/// let verified = keys.verify_async(token, &RequestContext::new()).await?;
/// # let _ = verified; Ok(()) }
/// ```
///
/// No caching: every `get` reads the row, so a revoke is refused by every
/// server from its next request on. Writes are one `READ COMMITTED`
/// transaction each, serialised per owner by a lock row in
/// `api_key_owners`; updates are compare-and-swaps on the version; a roll is
/// all or nothing. It uses no advisory locks, `LISTEN`/`NOTIFY` or triggers.
/// Instants are stored with microsecond precision. The module source
/// (`src/store/postgres.rs`) documents the schema and the choices in full.
///
/// Cloning is cheap and shares the pool.
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
#[derive(Clone)]
pub struct PostgresKeyStore {
    pool: Pool,
}

impl fmt::Debug for PostgresKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the connection string: it may hold a password.
        let status = self.pool.status();
        f.debug_struct("PostgresKeyStore")
            .field("max_size", &status.max_size)
            .field("size", &status.size)
            .field("available", &status.available)
            .finish()
    }
}

impl PostgresKeyStore {
    /// Connects to the database at `url` (a libpq-style URL or key-value
    /// string, e.g. `postgres://user:password@host:5432/dbname` or
    /// `host=/run/postgresql dbname=app`), without TLS: a pool of the
    /// default size (4 × the number of CPUs) with 10-second timeouts to get,
    /// create or recycle a connection. Opens one connection before it
    /// returns, so a wrong URL or an unreachable server is reported here.
    ///
    /// Must be called inside a Tokio runtime (the pool spawns a task per
    /// connection). For TLS or other pool settings use
    /// [`from_pool`](Self::from_pool).
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Backend`] if the URL does not parse or the first
    /// connection fails; the driver's error is the
    /// [`source`](std::error::Error::source).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let config: tokio_postgres::Config = url.parse().map_err(StoreError::backend)?;
        let pool = Pool::builder(Manager::new(config, NoTls))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_TIMEOUT))
            .create_timeout(Some(POOL_TIMEOUT))
            .recycle_timeout(Some(POOL_TIMEOUT))
            .build()
            .map_err(StoreError::backend)?;
        let store = Self { pool };
        drop(store.client().await?);
        Ok(store)
    }

    /// A store over a pool the host built (for TLS, its own size and
    /// timeouts, or to share the pool with its own queries). Connections
    /// are made lazily.
    #[must_use]
    pub fn from_pool(pool: Pool) -> Self {
        Self { pool }
    }

    /// Creates the tables and index if they do not exist
    /// (`migrations/0001_api_keys.sql`, embedded). Idempotent: call it at
    /// every start; several servers may call it at once.
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Backend`] if the statements fail (for instance the
    /// role may not create tables: then apply the file by hand).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut attempt = 1;
        loop {
            let client = self.client().await?;
            // One simple-query batch: PostgreSQL runs it as one implicit
            // transaction.
            match client.batch_execute(MIGRATION).await {
                Ok(()) => return Ok(()),
                // Two servers creating the same table at once: the loser
                // sees it exists on the next attempt.
                Err(e) if attempt < ATTEMPTS && lost_create_race(&e) => attempt += 1,
                Err(e) => return Err(StoreError::backend(e)),
            }
        }
    }

    async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(StoreError::backend)
    }

    async fn insert_once(
        &self,
        record: &KeyRecord,
        row: &RowParams<'_>,
        condition: WriteCondition,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        let outcome = async {
            lock_owner(&tx, &record.owner).await?;
            if execute(&tx, INSERT, &row.values()).await? == 0 {
                return Err(StoreError::new(StoreErrorKind::Duplicate));
            }
            check_condition(&tx, record, condition).await
        }
        .await;
        finish(tx, outcome).await
    }

    async fn update_once(
        &self,
        record: &KeyRecord,
        row: &RowParams<'_>,
        expected: i64,
        condition: WriteCondition,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        let outcome = async {
            lock_owner(&tx, &record.owner).await?;
            check_condition(&tx, record, condition).await?;
            compare_and_swap(&tx, record, row, expected).await
        }
        .await;
        finish(tx, outcome).await
    }

    async fn roll_once(
        &self,
        plan: &RollPlan,
        predecessor: &RowParams<'_>,
        successor: &RowParams<'_>,
        expected: i64,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        let outcome = async {
            // Lock in a fixed order, so two rolls never wait on each other
            // in a cycle.
            let (a, b) = (&plan.predecessor.owner, &plan.successor.owner);
            lock_owner(&tx, a.min(b)).await?;
            if a != b {
                lock_owner(&tx, a.max(b)).await?;
            }
            if execute(&tx, INSERT, &successor.values()).await? == 0 {
                return Err(StoreError::new(StoreErrorKind::Duplicate));
            }
            compare_and_swap(&tx, &plan.predecessor, predecessor, expected).await
        }
        .await;
        finish(tx, outcome).await
    }

    async fn get_once(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(GET).await.map_err(db)?;
        let row = client
            .query_opt(&stmt, &[&id.as_bytes().as_slice()])
            .await
            .map_err(db)?;
        row.map(|r| decode(&r).map(Arc::new)).transpose()
    }

    async fn list_once(&self, owner: &OwnerId) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(LIST).await.map_err(db)?;
        let rows = client.query(&stmt, &[&owner.as_str()]).await.map_err(db)?;
        rows.iter().map(|r| decode(r).map(Arc::new)).collect()
    }

    async fn touch_once(&self, id: &KeyId, at: OffsetDateTime) -> Result<(), StoreError> {
        let client = self.client().await?;
        let id = id.as_bytes().as_slice();
        let stmt = client.prepare_cached(TOUCH).await.map_err(db)?;
        if client.execute(&stmt, &[&id, &at]).await.map_err(db)? > 0 {
            return Ok(());
        }
        // Nothing changed: the stored value is as late, or there is no row.
        let stmt = client.prepare_cached(EXISTS).await.map_err(db)?;
        let exists: bool = client
            .query_one(&stmt, &[&id])
            .await
            .map_err(db)?
            .try_get(0)
            .map_err(db)?;
        if exists {
            Ok(())
        } else {
            Err(StoreError::new(StoreErrorKind::NotFound))
        }
    }
}

impl AsyncKeyStore for PostgresKeyStore {
    async fn insert(
        &self,
        record: &KeyRecord,
        condition: WriteCondition,
    ) -> Result<(), StoreError> {
        let row = RowParams::new(record)?;
        retry(|| self.insert_once(record, &row, condition)).await
    }

    async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        retry(|| self.get_once(id)).await
    }

    async fn list_by_owner(&self, owner: &OwnerId) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        retry(|| self.list_once(owner)).await
    }

    async fn update(
        &self,
        record: &KeyRecord,
        expected_version: u64,
        condition: WriteCondition,
    ) -> Result<(), StoreError> {
        let row = RowParams::new(record)?;
        // A version beyond BIGINT was never stored: the swap cannot match.
        let Ok(expected) = i64::try_from(expected_version) else {
            return Err(StoreError::new(StoreErrorKind::Conflict));
        };
        retry(|| self.update_once(record, &row, expected, condition)).await
    }

    async fn apply_roll(&self, plan: &RollPlan) -> Result<(), StoreError> {
        let predecessor = RowParams::new(&plan.predecessor)?;
        let successor = RowParams::new(&plan.successor)?;
        let Ok(expected) = i64::try_from(plan.expected_version) else {
            return Err(StoreError::new(StoreErrorKind::Conflict));
        };
        retry(|| self.roll_once(plan, &predecessor, &successor, expected)).await
    }

    async fn touch(&self, id: &KeyId, at: UtcDateTime) -> Result<(), StoreError> {
        let at = to_db_time(at);
        retry(|| self.touch_once(id, at)).await
    }
}

// ---- transactions ----------------------------------------------------------

async fn begin(client: &mut Object) -> Result<Transaction<'_>, StoreError> {
    client
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .await
        .map_err(db)
}

/// Commits on success, rolls back on failure.
async fn finish(tx: Transaction<'_>, outcome: Result<(), StoreError>) -> Result<(), StoreError> {
    match outcome {
        Ok(()) => tx.commit().await.map_err(db),
        Err(e) => {
            // Best effort: if the connection is gone, so is the transaction.
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

async fn execute(
    tx: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, StoreError> {
    let stmt = tx.prepare_cached(sql).await.map_err(db)?;
    tx.execute(&stmt, params).await.map_err(db)
}

async fn lock_owner(tx: &Transaction<'_>, owner: &OwnerId) -> Result<(), StoreError> {
    execute(tx, LOCK_OWNER, &[&owner.as_str()]).await.map(drop)
}

async fn check_condition(
    tx: &Transaction<'_>,
    written: &KeyRecord,
    condition: WriteCondition,
) -> Result<(), StoreError> {
    let now = match condition {
        WriteCondition::Always => return Ok(()),
        WriteCondition::NoOtherUsableKey { now } => to_db_time(now),
    };
    let stmt = tx.prepare_cached(OTHER_USABLE).await.map_err(db)?;
    let clash: bool = tx
        .query_one(
            &stmt,
            &[
                &written.owner.as_str(),
                &written.id.as_bytes().as_slice(),
                &now,
            ],
        )
        .await
        .map_err(db)?
        .try_get(0)
        .map_err(db)?;
    if clash {
        Err(StoreError::new(StoreErrorKind::ActiveKeyExists))
    } else {
        Ok(())
    }
}

/// The compare-and-swap `UPDATE`; on no match, `NotFound` or `Conflict`.
async fn compare_and_swap(
    tx: &Transaction<'_>,
    record: &KeyRecord,
    row: &RowParams<'_>,
    expected: i64,
) -> Result<(), StoreError> {
    let values = row.values();
    let mut params: Vec<&(dyn ToSql + Sync)> = values.to_vec();
    params.push(&expected);
    if execute(tx, UPDATE, &params).await? > 0 {
        return Ok(());
    }
    let stmt = tx.prepare_cached(EXISTS).await.map_err(db)?;
    let exists: bool = tx
        .query_one(&stmt, &[&record.id.as_bytes().as_slice()])
        .await
        .map_err(db)?
        .try_get(0)
        .map_err(db)?;
    Err(StoreError::new(if exists {
        StoreErrorKind::Conflict
    } else {
        StoreErrorKind::NotFound
    }))
}

/// Runs `op` again after a serialization failure or a deadlock: the
/// transaction was rolled back, so a new attempt is safe.
async fn retry<T, F, Fut>(mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if attempt < ATTEMPTS && is_transient(&e) => attempt += 1,
            outcome => return outcome,
        }
    }
}

fn sql_state(e: &StoreError) -> Option<&SqlState> {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<tokio_postgres::Error>())
        .and_then(tokio_postgres::Error::code)
}

fn is_transient(e: &StoreError) -> bool {
    sql_state(e).is_some_and(|c| {
        *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    })
}

fn lost_create_race(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        *c == SqlState::UNIQUE_VIOLATION
            || *c == SqlState::DUPLICATE_TABLE
            || *c == SqlState::DUPLICATE_OBJECT
            || *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::T_R_DEADLOCK_DETECTED
    })
}

fn db(e: tokio_postgres::Error) -> StoreError {
    StoreError::backend(e)
}

// ---- records to rows -------------------------------------------------------

/// A record as query parameters, in [`columns!`] order.
struct RowParams<'a> {
    id: &'a [u8],
    owner: &'a str,
    kind: &'static str,
    environment: &'static str,
    name: &'a str,
    note: Option<&'a str>,
    description: Option<&'a str>,
    scopes: Vec<&'a str>,
    allowed_domains: Vec<String>,
    allowed_ips: String,
    status: &'static str,
    created_at: OffsetDateTime,
    expires_at: Option<OffsetDateTime>,
    last_used_at: Option<OffsetDateTime>,
    revoked_at: Option<OffsetDateTime>,
    predecessor: Option<&'a [u8]>,
    successor: Option<&'a [u8]>,
    rolled_at: Option<OffsetDateTime>,
    grace_ends_at: Option<OffsetDateTime>,
    version: i64,
    pepper_version: Option<i64>,
    secret_digest: &'a [u8],
    sealed_version: Option<i64>,
    sealed_nonce: Option<&'a [u8]>,
    sealed_ciphertext: Option<&'a [u8]>,
    redacted: &'a str,
}

impl<'a> RowParams<'a> {
    fn new(r: &'a KeyRecord) -> Result<Self, StoreError> {
        let version = i64::try_from(r.version).map_err(|e| bad_value("version", e))?;
        let sealed = r.sealed_secret.as_ref();
        Ok(Self {
            id: r.id.as_bytes().as_slice(),
            owner: r.owner.as_str(),
            kind: r.kind.as_str(),
            environment: r.environment.as_str(),
            name: &r.name,
            note: r.note.as_deref(),
            description: r.description.as_deref(),
            scopes: r.scopes.iter().collect(),
            allowed_domains: domains_to_db(&r.allowed_domains),
            allowed_ips: ips_to_db(&r.allowed_ips),
            status: r.status.as_str(),
            created_at: to_db_time(r.created_at),
            expires_at: r.expires_at.map(to_db_time),
            last_used_at: r.last_used_at.map(to_db_time),
            revoked_at: r.revoked_at.map(to_db_time),
            predecessor: r.predecessor.as_ref().map(|id| id.as_bytes().as_slice()),
            successor: r.successor.as_ref().map(|id| id.as_bytes().as_slice()),
            rolled_at: r.rolled_at.map(to_db_time),
            grace_ends_at: r.grace_ends_at.map(to_db_time),
            version,
            pepper_version: r.secret_hash.pepper_version.map(i64::from),
            secret_digest: r.secret_hash.digest.as_slice(),
            sealed_version: sealed.map(|s| i64::from(s.key_version)),
            sealed_nonce: sealed.map(|s| s.nonce.as_slice()),
            sealed_ciphertext: sealed.map(|s| s.ciphertext.as_slice()),
            redacted: &r.redacted,
        })
    }

    fn values(&self) -> [&(dyn ToSql + Sync); 26] {
        [
            &self.id,
            &self.owner,
            &self.kind,
            &self.environment,
            &self.name,
            &self.note,
            &self.description,
            &self.scopes,
            &self.allowed_domains,
            &self.allowed_ips,
            &self.status,
            &self.created_at,
            &self.expires_at,
            &self.last_used_at,
            &self.revoked_at,
            &self.predecessor,
            &self.successor,
            &self.rolled_at,
            &self.grace_ends_at,
            &self.version,
            &self.pepper_version,
            &self.secret_digest,
            &self.sealed_version,
            &self.sealed_nonce,
            &self.sealed_ciphertext,
            &self.redacted,
        ]
    }
}

/// An instant as stored: rounded down to the microsecond (PostgreSQL's
/// precision), so what is written is exactly what is read back.
fn to_db_time(t: UtcDateTime) -> OffsetDateTime {
    let sub_micro = i64::from(t.nanosecond() % 1_000);
    let t = t.checked_sub(Duration::nanoseconds(sub_micro)).unwrap_or(t);
    OffsetDateTime::from(t)
}

fn domains_to_db(list: &DomainAllowList) -> Vec<String> {
    list.entries().iter().map(ToString::to_string).collect()
}

fn domains_from_db(entries: Vec<String>) -> Result<DomainAllowList, StoreError> {
    DomainAllowList::new(entries).map_err(|e| bad_value("allowed_domains", e))
}

fn ips_to_db(list: &IpAllowList) -> String {
    list.to_string()
}

fn ips_from_db(text: String) -> Result<IpAllowList, StoreError> {
    IpAllowList::parse(&text).map_err(|e| bad_value("allowed_ips", e))
}

// ---- rows to records -------------------------------------------------------

/// A value that cannot be written or a stored value that does not decode.
#[derive(Debug)]
struct BadValue {
    column: &'static str,
    reason: Box<dyn std::error::Error + Send + Sync>,
}

impl fmt::Display for BadValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "api_keys.{}: {}", self.column, self.reason)
    }
}

impl std::error::Error for BadValue {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.reason)
    }
}

fn bad_value(
    column: &'static str,
    reason: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> StoreError {
    StoreError::backend(BadValue {
        column,
        reason: reason.into(),
    })
}

fn col<'r, T: FromSql<'r>>(row: &'r Row, column: &'static str) -> Result<T, StoreError> {
    row.try_get(column).map_err(db)
}

fn bytes<const N: usize>(column: &'static str, v: &[u8]) -> Result<[u8; N], StoreError> {
    <[u8; N]>::try_from(v)
        .map_err(|_| bad_value(column, format!("{} bytes, expected {N}", v.len())))
}

fn key_id(column: &'static str, v: &[u8]) -> Result<KeyId, StoreError> {
    bytes::<KEY_ID_BYTES>(column, v).map(KeyId::from_bytes)
}

fn opt_key_id(column: &'static str, v: Option<&[u8]>) -> Result<Option<KeyId>, StoreError> {
    v.map(|v| key_id(column, v)).transpose()
}

fn time_col(row: &Row, column: &'static str) -> Result<Option<UtcDateTime>, StoreError> {
    Ok(col::<Option<OffsetDateTime>>(row, column)?.map(UtcDateTime::from))
}

fn u32_col(row: &Row, column: &'static str) -> Result<Option<u32>, StoreError> {
    col::<Option<i64>>(row, column)?
        .map(|v| u32::try_from(v).map_err(|e| bad_value(column, e)))
        .transpose()
}

fn status_from_db(text: &str) -> Result<KeyStatus, StoreError> {
    match text {
        "active" => Ok(KeyStatus::Active),
        "inactive" => Ok(KeyStatus::Inactive),
        "revoked" => Ok(KeyStatus::Revoked),
        other => Err(bad_value("status", format!("unknown status {other:?}"))),
    }
}

fn kind_from_db(text: &str) -> Result<KeyKind, StoreError> {
    KeyKind::ALL
        .into_iter()
        .find(|k| k.as_str() == text)
        .ok_or_else(|| bad_value("kind", format!("unknown kind {text:?}")))
}

fn environment_from_db(text: &str) -> Result<Environment, StoreError> {
    Environment::ALL
        .into_iter()
        .find(|e| e.as_str() == text)
        .ok_or_else(|| bad_value("environment", format!("unknown environment {text:?}")))
}

fn sealed_from_db(row: &Row) -> Result<Option<SealedSecret>, StoreError> {
    let version = u32_col(row, "sealed_version")?;
    let nonce: Option<&[u8]> = col(row, "sealed_nonce")?;
    let ciphertext: Option<Vec<u8>> = col(row, "sealed_ciphertext")?;
    match (version, nonce, ciphertext) {
        (Some(key_version), Some(nonce), Some(ciphertext)) => Ok(Some(SealedSecret {
            key_version,
            nonce: bytes("sealed_nonce", nonce)?,
            ciphertext,
        })),
        (None, None, None) => Ok(None),
        _ => Err(bad_value(
            "sealed_version",
            "sealed_version, sealed_nonce and sealed_ciphertext must be all set or all null",
        )),
    }
}

/// A row of `api_keys` as a record; any bad value is a `Backend` error.
fn decode(row: &Row) -> Result<KeyRecord, StoreError> {
    let created_at =
        time_col(row, "created_at")?.ok_or_else(|| bad_value("created_at", "must not be null"))?;
    let version =
        u64::try_from(col::<i64>(row, "version")?).map_err(|e| bad_value("version", e))?;
    Ok(KeyRecord {
        id: key_id("id", col(row, "id")?)?,
        owner: OwnerId::new(col::<String>(row, "owner")?).map_err(|e| bad_value("owner", e))?,
        kind: kind_from_db(col(row, "kind")?)?,
        environment: environment_from_db(col(row, "environment")?)?,
        name: col(row, "name")?,
        note: col(row, "note")?,
        description: col(row, "description")?,
        scopes: Scopes::new(col::<Vec<String>>(row, "scopes")?)
            .map_err(|e| bad_value("scopes", e))?,
        allowed_domains: domains_from_db(col(row, "allowed_domains")?)?,
        allowed_ips: ips_from_db(col(row, "allowed_ips")?)?,
        status: status_from_db(col(row, "status")?)?,
        created_at,
        expires_at: time_col(row, "expires_at")?,
        last_used_at: time_col(row, "last_used_at")?,
        revoked_at: time_col(row, "revoked_at")?,
        predecessor: opt_key_id("predecessor", col(row, "predecessor")?)?,
        successor: opt_key_id("successor", col(row, "successor")?)?,
        rolled_at: time_col(row, "rolled_at")?,
        grace_ends_at: time_col(row, "grace_ends_at")?,
        version,
        secret_hash: SecretHash {
            pepper_version: u32_col(row, "pepper_version")?,
            digest: bytes("secret_digest", col(row, "secret_digest")?)?,
        },
        sealed_secret: sealed_from_db(row)?,
        redacted: col(row, "redacted")?,
    })
}
