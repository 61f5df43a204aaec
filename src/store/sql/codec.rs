//! The one record codec of the SQL stores: a [`KeyRecord`] as column
//! values and back, for every engine.
//!
//! Only three column types are used, so the same values bind and decode on
//! PostgreSQL, SQLite and MySQL/MariaDB:
//!
//! | kind | PostgreSQL | SQLite | MySQL/MariaDB | holds |
//! |---|---|---|---|---|
//! | integer | `BIGINT` | `INTEGER` | `BIGINT` | instants (Unix microseconds, UTC), versions |
//! | text | `TEXT` | `TEXT` | `VARCHAR`/`TEXT` | owner, names, enums (stable lower-case names), lists |
//! | bytes | `BYTEA` | `BLOB` | `BINARY`/`VARBINARY`/`BLOB` | ids, digest, sealed secret |
//!
//! Lists are canonical comma-separated text (`''` when empty): scope names
//! and domain patterns cannot contain a comma, and the IP list is its own
//! canonical form. Instants are rounded down to the microsecond on write,
//! so what is read back is exactly what was stored.

use super::Value;
use crate::environment::{Environment, KeyKind};
use crate::error::StoreError;
use crate::hash::SecretHash;
use crate::ip::IpAllowList;
use crate::origin::DomainAllowList;
use crate::record::{KeyRecord, KeyStatus, OwnerId, Scopes};
use crate::sealing::SealedSecret;
use crate::token::{KEY_ID_BYTES, KeyId};
use core::fmt;
use time::UtcDateTime;

/// The columns of `api_keys`, in the order of [`Encoded::insert_params`]
/// and of the `SELECT` list (which adds `api_key_usage.last_used_at` and
/// `api_key_usage.use_count`).
pub(super) const KEY_COLUMNS: [&str; 26] = [
    "id",
    "owner",
    "kind",
    "environment",
    "name",
    "note",
    "description",
    "scopes",
    "allowed_domains",
    "allowed_ips",
    "status",
    "created_at",
    "expires_at",
    "revoked_at",
    "predecessor",
    "successor",
    "rolled_at",
    "grace_ends_at",
    "version",
    "pepper_version",
    "secret_digest",
    "sealed_version",
    "sealed_nonce",
    "sealed_ciphertext",
    "redacted",
    "signing",
];

/// Index of `last_used_at` in a selected row.
const LAST_USED_AT: usize = KEY_COLUMNS.len();
/// Index of `use_count` in a selected row.
const USE_COUNT: usize = KEY_COLUMNS.len() + 1;

/// Read access to a result row by column index: one implementation per
/// engine, over its sqlx row type.
pub(crate) trait SqlRow {
    /// An integer column.
    fn int(&self, index: usize) -> Result<Option<i64>, sqlx::Error>;
    /// A text column.
    fn text(&self, index: usize) -> Result<Option<String>, sqlx::Error>;
    /// A bytes column.
    fn bytes(&self, index: usize) -> Result<Option<Vec<u8>>, sqlx::Error>;
}

// ---- instants ---------------------------------------------------------------

/// An instant as stored: Unix microseconds, rounded down (toward the past).
pub(super) fn micros_floor(t: UtcDateTime) -> i64 {
    // Whole seconds round down and the time of day is never negative, so
    // this is the floor also before 1970. `UtcDateTime` spans ±9999 years:
    // about ±3.2e17 µs, well inside i64 (saturating only to stay total).
    t.unix_timestamp()
        .saturating_mul(1_000_000)
        .saturating_add(i64::from(t.microsecond()))
}

/// Unix microseconds rounded up: for `stored < bound` comparisons, since a
/// stored (whole-microsecond) instant `s` is before `t` exactly when
/// `s < ceil(t)`.
pub(super) fn micros_ceil(t: UtcDateTime) -> i64 {
    micros_floor(t).saturating_add(i64::from(!t.nanosecond().is_multiple_of(1_000)))
}

fn instant(column: &'static str, micros: i64) -> Result<UtcDateTime, StoreError> {
    UtcDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
        .map_err(|e| bad_value(column, e))
}

// ---- records to parameters ----------------------------------------------------

/// A record as column values (see [`KEY_COLUMNS`]), validated for storage.
pub(super) struct Encoded {
    values: [Value; KEY_COLUMNS.len()],
    id: Vec<u8>,
    last_used_at: Option<i64>,
    use_count: i64,
}

impl Encoded {
    pub(super) fn new(r: &KeyRecord) -> Result<Self, StoreError> {
        let version = i64::try_from(r.version).map_err(|e| bad_value("version", e))?;
        // A BIGINT: the count saturates there (as a touch's add does).
        let use_count = i64::try_from(r.use_count).unwrap_or(i64::MAX);
        let hash = r.secret_hash.as_ref();
        // The rules a read enforces, refused before they are written.
        let pending = r.status == KeyStatus::Pending;
        if hash.is_some() == pending {
            return Err(bad_value(
                "secret_digest",
                "a pending key has no secret hash; any other key has one",
            ));
        }
        if (pending && r.sealed_secret.is_some())
            || (!pending && r.signing != r.sealed_secret.is_some())
        {
            return Err(bad_value(
                "signing",
                "a signing key has a sealed secret once it is not pending; no other key has one",
            ));
        }
        let sealed = r.sealed_secret.as_ref();
        let time = |t: Option<UtcDateTime>| Value::Int(t.map(micros_floor));
        let text = |t: &str| Value::Text(Some(t.to_owned()));
        let id = |k: Option<&KeyId>| Value::Bytes(k.map(|k| k.as_bytes().to_vec()));
        Ok(Self {
            values: [
                id(Some(&r.id)),
                text(r.owner.as_str()),
                text(r.kind.as_str()),
                text(r.environment.as_str()),
                text(&r.name),
                Value::Text(r.note.clone()),
                Value::Text(r.description.clone()),
                Value::Text(Some(join(r.scopes.iter()))),
                Value::Text(Some(domains_to_text(&r.allowed_domains))),
                Value::Text(Some(r.allowed_ips.to_string())),
                text(r.status.as_str()),
                time(Some(r.created_at)),
                time(r.expires_at),
                time(r.revoked_at),
                id(r.predecessor.as_ref()),
                id(r.successor.as_ref()),
                time(r.rolled_at),
                time(r.grace_ends_at),
                Value::Int(Some(version)),
                Value::Int(hash.and_then(|h| h.pepper_version).map(i64::from)),
                Value::Bytes(hash.map(|h| h.digest.to_vec())),
                Value::Int(sealed.map(|s| i64::from(s.key_version))),
                Value::Bytes(sealed.map(|s| s.nonce.to_vec())),
                Value::Bytes(sealed.map(|s| s.ciphertext.clone())),
                text(&r.redacted),
                Value::Int(Some(i64::from(r.signing))),
            ],
            id: r.id.as_bytes().to_vec(),
            last_used_at: r.last_used_at.map(micros_floor),
            use_count,
        })
    }

    /// Every column, for the `INSERT`.
    pub(super) fn insert_params(&self) -> Vec<Value> {
        self.values.to_vec()
    }

    /// The compare-and-swap `UPDATE`'s parameters: every column but `id`
    /// and `owner` (which never change), then `id`, `owner` and the
    /// expected version for the `WHERE` clause.
    pub(super) fn update_params(&self, expected_version: i64) -> Vec<Value> {
        let mut params: Vec<Value> = self.values.iter().skip(2).cloned().collect();
        params.extend(self.values.iter().take(2).cloned());
        params.push(Value::Int(Some(expected_version)));
        params
    }

    /// The key id as bytes.
    pub(super) fn id(&self) -> Value {
        Value::Bytes(Some(self.id.clone()))
    }

    /// The usage row's upsert parameters: id, `last_used_at`, `use_count`.
    pub(super) fn usage_params(&self) -> Vec<Value> {
        vec![
            self.id(),
            Value::Int(self.last_used_at),
            Value::Int(Some(self.use_count)),
        ]
    }
}

fn join<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items.collect::<Vec<_>>().join(",")
}

fn domains_to_text(list: &DomainAllowList) -> String {
    list.entries()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn split(text: &str) -> impl Iterator<Item = &str> {
    text.split(',').filter(|s| !s.is_empty())
}

// ---- rows to records ------------------------------------------------------------

/// A value that cannot be written, or a stored value that does not decode.
/// Names the column; never carries a secret (records hold none).
#[derive(Debug)]
struct BadValue {
    column: &'static str,
    reason: Box<dyn std::error::Error + Send + Sync>,
}

impl fmt::Display for BadValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.column.contains('.') {
            write!(f, "{}: {}", self.column, self.reason)
        } else {
            write!(f, "api_keys.{}: {}", self.column, self.reason)
        }
    }
}

impl std::error::Error for BadValue {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.reason)
    }
}

/// A [`Backend`](crate::StoreErrorKind::Backend) error naming the column
/// (`api_keys.<column>` or `api_key_usage.<column>`).
pub(super) fn bad_value(
    column: &'static str,
    reason: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> StoreError {
    StoreError::backend(BadValue {
        column,
        reason: reason.into(),
    })
}

/// Decodes selected rows: `KEY_COLUMNS` then `last_used_at`.
struct Reader<'r, R> {
    row: &'r R,
}

impl<R: SqlRow> Reader<'_, R> {
    fn name(index: usize) -> &'static str {
        match KEY_COLUMNS.get(index) {
            Some(name) => name,
            None if index == LAST_USED_AT => "api_key_usage.last_used_at",
            None => "api_key_usage.use_count",
        }
    }

    fn int(&self, index: usize) -> Result<Option<i64>, StoreError> {
        self.row
            .int(index)
            .map_err(|e| bad_value(Self::name(index), e))
    }

    fn text(&self, index: usize) -> Result<Option<String>, StoreError> {
        self.row
            .text(index)
            .map_err(|e| bad_value(Self::name(index), e))
    }

    fn bytes(&self, index: usize) -> Result<Option<Vec<u8>>, StoreError> {
        self.row
            .bytes(index)
            .map_err(|e| bad_value(Self::name(index), e))
    }

    fn required<T>(&self, index: usize, value: Option<T>) -> Result<T, StoreError> {
        value.ok_or_else(|| bad_value(Self::name(index), "must not be null"))
    }

    fn req_text(&self, index: usize) -> Result<String, StoreError> {
        let v = self.text(index)?;
        self.required(index, v)
    }

    fn time(&self, index: usize) -> Result<Option<UtcDateTime>, StoreError> {
        self.int(index)?
            .map(|m| instant(Self::name(index), m))
            .transpose()
    }

    fn u32(&self, index: usize) -> Result<Option<u32>, StoreError> {
        self.int(index)?
            .map(|v| u32::try_from(v).map_err(|e| bad_value(Self::name(index), e)))
            .transpose()
    }

    fn array<const N: usize>(&self, index: usize) -> Result<Option<[u8; N]>, StoreError> {
        self.bytes(index)?
            .map(|v| {
                <[u8; N]>::try_from(v.as_slice()).map_err(|_| {
                    bad_value(
                        Self::name(index),
                        format!("{} bytes, expected {N}", v.len()),
                    )
                })
            })
            .transpose()
    }

    /// The secret's hash: absent exactly while the key is pending.
    fn secret_hash(&self, status: KeyStatus) -> Result<Option<SecretHash>, StoreError> {
        match (self.u32(19)?, self.array(20)?) {
            (pepper_version, Some(digest)) if status != KeyStatus::Pending => {
                Ok(Some(SecretHash {
                    pepper_version,
                    digest,
                }))
            }
            (None, None) if status == KeyStatus::Pending => Ok(None),
            _ => Err(bad_value(
                "secret_digest",
                "a pending key has no secret_digest (nor pepper_version); any other key has one",
            )),
        }
    }

    /// The signing flag, 0 or 1, which a sealed secret must agree with.
    fn signing(&self, status: KeyStatus, sealed: bool) -> Result<bool, StoreError> {
        let signing = match self.int(25)? {
            Some(0) => false,
            Some(1) => true,
            _ => return Err(bad_value("signing", "must be 0 or 1")),
        };
        let agrees = if status == KeyStatus::Pending {
            !sealed
        } else {
            signing == sealed
        };
        if agrees {
            Ok(signing)
        } else {
            Err(bad_value(
                "signing",
                "a signing key has a sealed secret once it is not pending; no other key has one",
            ))
        }
    }

    fn key_id(&self, index: usize) -> Result<Option<KeyId>, StoreError> {
        Ok(self.array::<KEY_ID_BYTES>(index)?.map(KeyId::from_bytes))
    }

    fn parsed<T: core::str::FromStr>(&self, index: usize) -> Result<T, StoreError>
    where
        T::Err: std::error::Error + Send + Sync + 'static,
    {
        self.req_text(index)?
            .parse()
            .map_err(|e| bad_value(Self::name(index), e))
    }

    fn sealed(&self) -> Result<Option<SealedSecret>, StoreError> {
        match (self.u32(21)?, self.array(22)?, self.bytes(23)?) {
            (Some(key_version), Some(nonce), Some(ciphertext)) => Ok(Some(SealedSecret {
                key_version,
                nonce,
                ciphertext,
            })),
            (None, None, None) => Ok(None),
            _ => Err(bad_value(
                "sealed_version",
                "sealed_version, sealed_nonce and sealed_ciphertext must be all set or all null",
            )),
        }
    }
}

/// A selected row as a record. Any value that does not decode is a
/// `Backend` error naming its column (fail closed), never a panic.
pub(super) fn decode(row: &impl SqlRow) -> Result<KeyRecord, StoreError> {
    let r = Reader { row };
    let id = r.key_id(0)?;
    let created_at = r.time(11)?;
    let version = r.int(18)?;
    let status = r.parsed::<KeyStatus>(10)?;
    let sealed_secret = r.sealed()?;
    let use_count = r.int(USE_COUNT)?.unwrap_or(0);
    Ok(KeyRecord {
        id: r.required(0, id)?,
        owner: OwnerId::new(r.req_text(1)?).map_err(|e| bad_value("owner", e))?,
        kind: r.parsed::<KeyKind>(2)?,
        environment: r.parsed::<Environment>(3)?,
        name: r.req_text(4)?,
        note: r.text(5)?,
        description: r.text(6)?,
        scopes: Scopes::new(split(&r.req_text(7)?)).map_err(|e| bad_value("scopes", e))?,
        allowed_domains: DomainAllowList::new(split(&r.req_text(8)?))
            .map_err(|e| bad_value("allowed_domains", e))?,
        allowed_ips: IpAllowList::parse(&r.req_text(9)?)
            .map_err(|e| bad_value("allowed_ips", e))?,
        status,
        created_at: r.required(11, created_at)?,
        expires_at: r.time(12)?,
        last_used_at: r.time(LAST_USED_AT)?,
        // No usage row (a key written by something else): never used.
        use_count: u64::try_from(use_count).map_err(|e| bad_value("api_key_usage.use_count", e))?,
        revoked_at: r.time(13)?,
        predecessor: r.key_id(14)?,
        successor: r.key_id(15)?,
        rolled_at: r.time(16)?,
        grace_ends_at: r.time(17)?,
        version: u64::try_from(r.required(18, version)?).map_err(|e| bad_value("version", e))?,
        secret_hash: r.secret_hash(status)?,
        signing: r.signing(status, sealed_secret.is_some())?,
        sealed_secret,
        redacted: r.req_text(24)?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;
    use time::macros::utc_datetime;

    #[test]
    fn instants_round_to_whole_microseconds() {
        let t = utc_datetime!(2026-03-01 09:00:00.123_456_789);
        assert_eq!(micros_floor(t) % 1_000_000, 123_456);
        assert_eq!(micros_ceil(t) - micros_floor(t), 1);
        let whole = utc_datetime!(2026-03-01 09:00:00.123_456);
        assert_eq!(micros_ceil(whole), micros_floor(whole));
        // Before the epoch, still toward the past / the future.
        let before = utc_datetime!(1969-12-31 23:59:59.999_999_500);
        assert_eq!(micros_floor(before), -1);
        assert_eq!(micros_ceil(before), 0);
        assert_eq!(instant("t", micros_floor(whole)).unwrap(), whole);
        assert!(instant("t", i64::MAX).is_err());
        for t in [UtcDateTime::MIN, UtcDateTime::MAX] {
            let nanos = t.unix_timestamp_nanos();
            assert_eq!(i128::from(micros_floor(t)), nanos.div_euclid(1_000));
            assert_eq!(i128::from(micros_ceil(t)), -(-nanos).div_euclid(1_000));
        }
    }

    /// A row whose every column fails to read.
    struct Unreadable;

    impl SqlRow for Unreadable {
        fn int(&self, _: usize) -> Result<Option<i64>, sqlx::Error> {
            Err(sqlx::Error::ColumnNotFound("int".into()))
        }
        fn text(&self, _: usize) -> Result<Option<String>, sqlx::Error> {
            Err(sqlx::Error::ColumnNotFound("text".into()))
        }
        fn bytes(&self, _: usize) -> Result<Option<Vec<u8>>, sqlx::Error> {
            Err(sqlx::Error::ColumnNotFound("bytes".into()))
        }
    }

    #[test]
    fn errors_name_their_column_and_keep_their_cause() {
        type R<'r> = Reader<'r, Unreadable>;
        assert_eq!(R::name(0), "id");
        assert_eq!(R::name(LAST_USED_AT), "api_key_usage.last_used_at");
        assert_eq!(R::name(USE_COUNT), "api_key_usage.use_count");
        let reader = Reader { row: &Unreadable };
        for (e, column) in [
            (
                reader.int(USE_COUNT).unwrap_err(),
                "api_key_usage.use_count",
            ),
            (
                reader.int(LAST_USED_AT).unwrap_err(),
                "api_key_usage.last_used_at",
            ),
            (decode(&Unreadable).unwrap_err(), "api_keys.id"),
        ] {
            let bad = std::error::Error::source(&e).unwrap();
            assert!(bad.to_string().starts_with(column), "{bad}");
            // The driver's error is the next link of the chain.
            let cause = bad.source().unwrap();
            assert!(cause.to_string().starts_with("no column found"), "{cause}");
        }
    }

    /// A row holding only the hash columns (19: pepper version, 20: digest).
    struct HashColumns(Option<i64>, Option<Vec<u8>>);

    impl SqlRow for HashColumns {
        fn int(&self, index: usize) -> Result<Option<i64>, sqlx::Error> {
            match index {
                19 => Ok(self.0),
                _ => Err(sqlx::Error::ColumnNotFound(index.to_string())),
            }
        }
        fn text(&self, index: usize) -> Result<Option<String>, sqlx::Error> {
            Err(sqlx::Error::ColumnNotFound(index.to_string()))
        }
        fn bytes(&self, index: usize) -> Result<Option<Vec<u8>>, sqlx::Error> {
            match index {
                20 => Ok(self.1.clone()),
                _ => Err(sqlx::Error::ColumnNotFound(index.to_string())),
            }
        }
    }

    /// The schema's CHECK keeps such rows out; the codec refuses them too
    /// (a database without the CHECK, or edited by hand).
    #[test]
    fn a_digest_exactly_when_not_pending() {
        let digest = Some(vec![7u8; 32]);
        for (row, status, ok) in [
            (
                HashColumns(Some(2), digest.clone()),
                KeyStatus::Active,
                true,
            ),
            (HashColumns(None, digest.clone()), KeyStatus::Revoked, true),
            (HashColumns(None, None), KeyStatus::Pending, true),
            (HashColumns(None, digest.clone()), KeyStatus::Pending, false),
            (HashColumns(Some(1), None), KeyStatus::Pending, false),
            (HashColumns(None, None), KeyStatus::Active, false),
            (HashColumns(None, None), KeyStatus::Inactive, false),
        ] {
            let read = Reader { row: &row }.secret_hash(status);
            assert_eq!(read.is_ok(), ok, "{status:?} {:?}", row.0);
            if let Ok(hash) = read {
                assert_eq!(hash.is_some(), status != KeyStatus::Pending);
            }
        }
    }

    proptest::proptest! {
        /// Floor and ceiling of the nanosecond count, over the whole range.
        #[test]
        fn instants_are_the_floor_and_ceiling_in_microseconds(
            nanos in UtcDateTime::MIN.unix_timestamp_nanos()..=UtcDateTime::MAX.unix_timestamp_nanos()
        ) {
            let t = UtcDateTime::from_unix_timestamp_nanos(nanos).unwrap();
            proptest::prop_assert_eq!(i128::from(micros_floor(t)), nanos.div_euclid(1_000));
            proptest::prop_assert_eq!(i128::from(micros_ceil(t)), -(-nanos).div_euclid(1_000));
        }
    }
}
