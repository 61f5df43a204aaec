//! The SQL text of the stores. Most statements are the same on every
//! engine and are written here once, with `?` placeholders; an engine's
//! [`Dialect`] supplies the few that differ (transaction start, the owner
//! lock, upserts, the migration bookkeeping) and its placeholder style.

use super::codec::KEY_COLUMNS;

/// Every selected row: the key's columns, its `last_used_at` and its
/// `use_count` (a `LEFT JOIN`, so a key without a usage row still reads, as
/// never used).
const FROM_KEYS: &str = "FROM api_keys k LEFT JOIN api_key_usage u ON u.id = k.id";

/// Parameter: id.
const KEY_EXISTS: &str = "SELECT 1 FROM api_keys WHERE id = ?";

/// Parameter: id.
const USAGE_EXISTS: &str = "SELECT 1 FROM api_key_usage WHERE id = ?";

/// `last_used_at`, forward only, and `use_count`, added to (saturating at
/// the largest BIGINT), in the narrow usage table (parameters: at, at,
/// uses, uses, id): a touch rewrites one small row and re-checks none of
/// the key table's constraints.
const TOUCH: &str = "UPDATE api_key_usage SET \
     last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at < ? THEN ? \
     ELSE last_used_at END, \
     use_count = CASE WHEN use_count > 9223372036854775807 - ? THEN 9223372036854775807 \
     ELSE use_count + ? END \
     WHERE id = ?";

#[cfg(any(feature = "postgres", feature = "sqlite"))]
/// [`Dialect::upsert_usage`] where the engine has `INSERT … ON CONFLICT`
/// and the `excluded` row (PostgreSQL, SQLite; case-insensitive).
pub(crate) const ON_CONFLICT_UPSERT_USAGE: &str = "INSERT INTO api_key_usage (id, last_used_at, use_count) VALUES (?, ?, ?) \
     ON CONFLICT (id) DO UPDATE SET last_used_at = CASE \
     WHEN excluded.last_used_at IS NOT NULL AND (api_key_usage.last_used_at IS NULL \
     OR api_key_usage.last_used_at < excluded.last_used_at) \
     THEN excluded.last_used_at ELSE api_key_usage.last_used_at END, \
     use_count = api_key_usage.use_count";

#[cfg(any(feature = "postgres", feature = "sqlite"))]
/// [`Dialect::upsert_touch`], likewise.
pub(crate) const ON_CONFLICT_UPSERT_TOUCH: &str = "INSERT INTO api_key_usage (id, last_used_at, use_count) VALUES (?, ?, ?) \
     ON CONFLICT (id) DO UPDATE SET last_used_at = CASE \
     WHEN api_key_usage.last_used_at IS NULL \
     OR api_key_usage.last_used_at < excluded.last_used_at \
     THEN excluded.last_used_at ELSE api_key_usage.last_used_at END, \
     use_count = CASE WHEN api_key_usage.use_count > 9223372036854775807 - excluded.use_count \
     THEN 9223372036854775807 ELSE api_key_usage.use_count + excluded.use_count END";

/// The usage ranking's order ([`UseRank`](crate::UseRank)): most used
/// first, and least used first; ties by id.
const RANK_ORDER: [&str; 2] = [
    "COALESCE(u.use_count, 0) DESC, k.id",
    "COALESCE(u.use_count, 0), k.id",
];

/// Whether the owner has a key other than the one written that is live at
/// `now` ([`KeyRecord::is_live_at`](crate::KeyRecord::is_live_at): active
/// and not ended; `created_at` is ignored so clock skew between servers
/// cannot let a second key in). Parameters: owner, id, now, now.
const OTHER_USABLE: &str = "SELECT 1 FROM api_keys \
     WHERE owner = ? AND id <> ? AND status = 'active' \
     AND (expires_at IS NULL OR expires_at > ?) \
     AND (grace_ends_at IS NULL OR grace_ends_at > ?) LIMIT 1";

/// [`KeyFilter::ExpiringBefore`](crate::KeyFilter::ExpiringBefore).
/// Parameter: the bound, rounded up to the microsecond.
const EXPIRING_BEFORE: &str = "k.status <> 'revoked' AND k.expires_at < ?";

/// [`KeyFilter::UnusedSince`](crate::KeyFilter::UnusedSince). Parameters:
/// the bound twice, rounded up to the microsecond.
const UNUSED_SINCE: &str = "k.status <> 'revoked' AND k.created_at < ? \
     AND (u.last_used_at IS NULL OR u.last_used_at < ?)";

/// The latest change number (the change feed's head).
const FEED_HEAD: &str = "SELECT seq FROM api_key_feed WHERE id = 1";

/// One change row (parameters: seq, key id).
const RECORD_CHANGE: &str = "INSERT INTO api_key_changes (seq, key_id) VALUES (?, ?)";

/// The changes after a number, at most a page of them, and — as a row with
/// a NULL key id — the number up to which changes were pruned, in one
/// statement (one snapshot). Parameters: after, limit.
const CHANGES_SINCE: &str = "SELECT seq, key_id FROM (SELECT seq, key_id FROM api_key_changes      WHERE seq > ? ORDER BY seq LIMIT ?) c      UNION ALL SELECT pruned_through, NULL FROM api_key_feed WHERE id = 1";

/// Marks changes up to a number as pruned (parameters: the number twice);
/// takes the counter's lock, like a write.
const MARK_PRUNED: &str =
    "UPDATE api_key_feed SET pruned_through = ? WHERE id = 1 AND pruned_through < ?";

/// Deletes the changes up to a number.
const DELETE_CHANGES: &str = "DELETE FROM api_key_changes WHERE seq <= ?";

const APPLIED_MIGRATIONS: &str = "SELECT version FROM api_keys_schema_migrations";

/// What differs between engines, as SQL text.
pub(crate) struct Dialect {
    /// Placeholders: `?` as written, or numbered `$1`, `$2`, … (PostgreSQL).
    pub(crate) numbered: bool,
    /// Run on the connection before the transaction starts (MySQL's
    /// `SET TRANSACTION ISOLATION LEVEL …`, which applies to the next one).
    pub(crate) before_begin: Option<&'static str>,
    /// Starts a write transaction.
    pub(crate) begin: &'static str,
    /// Creates the owner's lock row if needed and row-locks it until the end
    /// of the transaction (one parameter: the owner). `None` where the
    /// transaction start already serialises every writer (SQLite's
    /// `BEGIN IMMEDIATE`).
    pub(crate) lock_owner: Option<&'static str>,
    /// Inserts the usage row, or keeps the later `last_used_at` and the
    /// stored `use_count` (parameters: id, last_used_at, use_count): what
    /// an insert or an update of a key writes. Never moves a value back,
    /// and a NULL `last_used_at` changes nothing; only touches change a
    /// stored count.
    pub(crate) upsert_usage: &'static str,
    /// Inserts the usage row, or moves `last_used_at` forward and adds to
    /// `use_count` (parameters: id, at, uses): a touch of a key whose
    /// usage row is missing.
    pub(crate) upsert_touch: &'static str,
    /// Creates the migration bookkeeping table if it does not exist.
    pub(crate) create_migrations_table: &'static str,
    /// Serialises concurrent `migrate()` calls inside the migration
    /// transaction, where the engine has transactional DDL and a way to.
    pub(crate) lock_migrations: Option<&'static str>,
    /// Records an applied migration (version, name), idempotently.
    pub(crate) record_migration: &'static str,
    /// Takes the next change numbers: adds the parameter to the feed
    /// counter, locking its row until the end of the transaction.
    pub(crate) bump_feed: &'static str,
    /// Whether `bump_feed` returns the new value (`RETURNING`); if not, the
    /// store reads it back in the same transaction.
    pub(crate) bump_returns: bool,
    /// Wakes the followers at commit (PostgreSQL `pg_notify`; one
    /// parameter, the payload).
    pub(crate) notify: Option<&'static str>,
    /// The batch touch for `n` (id, at, uses) triples: one statement that
    /// moves each existing usage row's `last_used_at` forward and adds the
    /// uses (a triple may repeat: see [`touch_set`]).
    pub(crate) touch_many: fn(usize) -> String,
}

/// The sizes of the batch touch statements; a batch is padded (with its
/// last key repeated, with no uses) to the next size, so each connection
/// prepares at most four of them.
pub(crate) const TOUCH_SIZES: [usize; 4] = [1, 8, 64, 500];

#[cfg(any(feature = "postgres", feature = "sqlite"))]
/// `(?, ?, ?), (?, ?, ?), …` — `n` triples.
pub(crate) fn triples(n: usize) -> String {
    vec!["(?, ?, ?)"; n].join(", ")
}

/// The batch touch's `SET` list for usage row `u` and the batch row `v`
/// (columns `id`, `at`, `uses`), where `v` is the batch grouped by id
/// (`MAX(at)`, `SUM(uses)`), so the padding's repeats change nothing.
pub(crate) fn touch_set(u: &str) -> String {
    format!(
        "last_used_at = CASE WHEN {u}last_used_at IS NULL OR {u}last_used_at < v.at THEN v.at \
         ELSE {u}last_used_at END, \
         use_count = CASE WHEN {u}use_count > 9223372036854775807 - v.uses \
         THEN 9223372036854775807 ELSE {u}use_count + v.uses END"
    )
}

/// Every statement of one engine, placeholders in its style.
pub(crate) struct Statements {
    pub(crate) before_begin: Option<&'static str>,
    pub(crate) begin: &'static str,
    pub(crate) lock_owner: Option<String>,
    pub(crate) get: String,
    pub(crate) list_by_owner: String,
    pub(crate) insert_key: String,
    pub(crate) update_key: String,
    pub(crate) key_exists: String,
    pub(crate) usage_exists: String,
    pub(crate) touch: String,
    pub(crate) upsert_usage: String,
    pub(crate) upsert_touch: String,
    pub(crate) other_usable: String,
    /// `[rank][has owner]`: ranks in the order MostUsed, LeastUsed.
    pub(crate) ranked: [[String; 2]; 2],
    /// `[filter][has cursor]`: filters in the order All, ExpiringBefore,
    /// UnusedSince.
    pub(crate) scan: [[String; 2]; 3],
    pub(crate) create_migrations_table: &'static str,
    pub(crate) lock_migrations: Option<&'static str>,
    pub(crate) applied_migrations: String,
    pub(crate) record_migration: String,
    pub(crate) bump_feed: String,
    pub(crate) bump_returns: bool,
    pub(crate) notify: Option<String>,
    /// The batch touch per size of [`TOUCH_SIZES`].
    pub(crate) touch_many: [String; 4],
    pub(crate) feed_head: String,
    pub(crate) record_change: String,
    pub(crate) changes_since: String,
    pub(crate) mark_pruned: String,
    pub(crate) delete_changes: String,
}

impl Statements {
    pub(crate) fn new(d: &Dialect) -> Self {
        let p = |sql: &str| placeholders(sql, d.numbered);
        let select = select_list();
        let from = format!("SELECT {select} {FROM_KEYS}");
        let scan = |filter: &str| {
            let mut out = [String::new(), String::new()];
            for (slot, cursor) in out.iter_mut().zip([false, true]) {
                let mut conditions: Vec<&str> = Vec::new();
                if !filter.is_empty() {
                    conditions.push(filter);
                }
                if cursor {
                    conditions.push("k.id > ?");
                }
                let clause = if conditions.is_empty() {
                    String::new()
                } else {
                    format!(" WHERE {}", conditions.join(" AND "))
                };
                *slot = p(&format!("{from}{clause} ORDER BY k.id LIMIT ?"));
            }
            out
        };
        Self {
            before_begin: d.before_begin,
            begin: d.begin,
            lock_owner: d.lock_owner.map(p),
            get: p(&format!("{from} WHERE k.id = ?")),
            list_by_owner: p(&format!(
                "{from} WHERE k.owner = ? ORDER BY k.created_at, k.id"
            )),
            insert_key: p(&insert_key()),
            update_key: p(&update_key()),
            key_exists: p(KEY_EXISTS),
            usage_exists: p(USAGE_EXISTS),
            touch: p(TOUCH),
            upsert_usage: p(d.upsert_usage),
            upsert_touch: p(d.upsert_touch),
            ranked: RANK_ORDER.map(|order| {
                [false, true].map(|owner| {
                    let only = if owner { " AND k.owner = ?" } else { "" };
                    p(&format!(
                        "{from} WHERE k.status <> 'revoked'{only} ORDER BY {order} LIMIT ?"
                    ))
                })
            }),
            other_usable: p(OTHER_USABLE),
            scan: [scan(""), scan(EXPIRING_BEFORE), scan(UNUSED_SINCE)],
            create_migrations_table: d.create_migrations_table,
            lock_migrations: d.lock_migrations,
            applied_migrations: p(APPLIED_MIGRATIONS),
            record_migration: p(d.record_migration),
            bump_feed: p(d.bump_feed),
            bump_returns: d.bump_returns,
            notify: d.notify.map(p),
            touch_many: TOUCH_SIZES.map(|n| p(&(d.touch_many)(n))),
            feed_head: p(FEED_HEAD),
            record_change: p(RECORD_CHANGE),
            changes_since: p(CHANGES_SINCE),
            mark_pruned: p(MARK_PRUNED),
            delete_changes: p(DELETE_CHANGES),
        }
    }
}

/// `k.id, k.owner, …, u.last_used_at, u.use_count`.
fn select_list() -> String {
    let mut cols: Vec<String> = KEY_COLUMNS.iter().map(|c| format!("k.{c}")).collect();
    cols.push("u.last_used_at".into());
    cols.push("u.use_count".into());
    cols.join(", ")
}

fn insert_key() -> String {
    let marks = vec!["?"; KEY_COLUMNS.len()].join(", ");
    format!(
        "INSERT INTO api_keys ({}) VALUES ({marks})",
        KEY_COLUMNS.join(", ")
    )
}

/// Compare-and-swap: sets every column but `id` and `owner`, where the id,
/// the owner and the version match and the stored key is not revoked.
fn update_key() -> String {
    let sets: Vec<String> = KEY_COLUMNS
        .iter()
        .skip(2)
        .map(|c| format!("{c} = ?"))
        .collect();
    format!(
        "UPDATE api_keys SET {} WHERE id = ? AND owner = ? AND version = ? AND status <> 'revoked'",
        sets.join(", ")
    )
}

/// Rewrites `?` placeholders as `$1`, `$2`, … when `numbered`. The shared
/// statements contain no `?` other than placeholders.
fn placeholders(sql: &str, numbered: bool) -> String {
    if !numbered {
        return sql.to_owned();
    }
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_order() {
        assert_eq!(
            placeholders("a = ? AND b > ? LIMIT ?", true),
            "a = $1 AND b > $2 LIMIT $3"
        );
        assert_eq!(placeholders("a = ?", false), "a = ?");
    }

    #[test]
    fn the_update_binds_every_column_once() {
        let sql = update_key();
        assert_eq!(sql.matches('?').count(), KEY_COLUMNS.len() + 1);
        let sql = insert_key();
        assert_eq!(sql.matches('?').count(), KEY_COLUMNS.len());
    }
}
