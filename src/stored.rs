//! The storage form of a record (feature `serde`): what [`KeyRecord`],
//! [`SecretHash`] and [`SealedSecret`] serialize to, for hosts that keep
//! records as documents (JSON columns, key-value stores, files).
//!
//! ```json
//! {
//!   "format": 1,
//!   "id": "2xhNbQlXm3wWc1kk4e9RTx",
//!   "owner": "acct_123",
//!   "kind": "secret",
//!   "environment": "live",
//!   "name": "billing service",
//!   "note": null,
//!   "description": null,
//!   "scopes": ["read", "write"],
//!   "allowed_domains": ["example.com", "*.example.org"],
//!   "allowed_ips": "10.0.0.0/8,2001:db8::1",
//!   "status": "active",
//!   "created_at": "2026-03-01T09:00:00.123456789Z",
//!   "expires_at": null,
//!   "last_used_at": null,
//!   "use_count": 42,
//!   "revoked_at": null,
//!   "predecessor": null,
//!   "successor": null,
//!   "rolled_at": null,
//!   "grace_ends_at": null,
//!   "version": 1,
//!   "secret_hash": { "pepper_version": null, "digest": "a5a5…(64 hex digits)" },
//!   "sealed_secret": null,
//!   "redacted": "sk_live_…x9Qa"
//! }
//! ```
//!
//! * `format`: the version of this form, [`RECORD_FORMAT`] (1). A reader
//!   refuses a record without it or with a later one.
//! * instants: RFC 3339 in UTC (`Z`), with as many fractional digits as the
//!   instant needs (nanoseconds at most), so nothing is lost; on reading,
//!   any RFC 3339 offset is accepted and converted to UTC.
//! * ids: the 22-character base62 key id (as displayed); enums: their
//!   stable lower-case names; scopes and domain patterns: arrays of
//!   canonical strings; the IP allow-list: its canonical comma-separated
//!   string (`""` = any address).
//! * the digest (32 bytes), the sealing nonce (24 bytes) and the sealed
//!   ciphertext: lower-case hex (either case is read).
//! * `secret_hash` is `null` exactly for a `pending` key (it has no secret
//!   yet); `use_count` is written when it is not 0 (absent reads as 0);
//!   `signing` is written only for a pending signing key (absent: a key
//!   signs exactly when it has a `sealed_secret`). Records written before
//!   these fields existed read, and are written, byte for byte as before.
//!
//! Reading validates like the constructors do: a bad owner, scope, domain,
//! IP list, id, length or instant is a deserialization error, never a
//! record that breaks a rule.
//!
//! # Stability
//!
//! This is a storage format, and it is kept:
//!
//! * every later version of the crate reads every record format it ever
//!   wrote — the committed fixtures in `tests/data/records/` are read back
//!   and written byte for byte by the test suite, and are never edited;
//! * within a format, no field is removed, renamed, or changes type or
//!   meaning; a field may be added only if it is optional and its absence
//!   means the previous behaviour;
//! * a reader ignores fields it does not know, so records written by a
//!   later version of the same format still read (write them back only with
//!   the later version: an older one drops the new fields);
//! * a change that cannot follow these rules gets a new `format` number, and
//!   the older formats stay readable.

use crate::environment::{Environment, KeyKind};
use crate::hash::SecretHash;
use crate::ip::IpAllowList;
use crate::origin::DomainAllowList;
use crate::record::{KeyRecord, KeyStatus, OwnerId, Scopes};
use crate::sealing::{SEALED_NONCE_LEN, SealedSecret};
use crate::token::KeyId;
use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::UtcDateTime;
use time::format_description::well_known::Rfc3339;

/// The version of the record's serde form this crate writes (and the
/// newest it reads). See the [`KeyRecord`] serde documentation in the
/// README ("The record codec").
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
pub const RECORD_FORMAT: u32 = 1;

// ---- instants -------------------------------------------------------------------

mod instant {
    use super::*;

    pub(super) fn serialize<S: Serializer>(t: &UtcDateTime, s: S) -> Result<S::Ok, S::Error> {
        let text = time::OffsetDateTime::from(*t)
            .format(&Rfc3339)
            .map_err(S::Error::custom)?;
        s.serialize_str(&text)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<UtcDateTime, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        time::OffsetDateTime::parse(&text, &Rfc3339)
            .map(UtcDateTime::from)
            .map_err(|_| D::Error::custom("an instant must be RFC 3339"))
    }
}

mod opt_instant {
    use super::*;

    pub(super) fn serialize<S: Serializer>(
        t: &Option<UtcDateTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => instant::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<UtcDateTime>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "instant")] UtcDateTime);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}

// ---- bytes as hex -----------------------------------------------------------------

mod hex {
    use super::*;

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base16ct::lower::encode_string(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        base16ct::mixed::decode_vec(text.as_bytes())
            .map_err(|_| D::Error::custom("bytes must be hex"))
    }

    pub(super) fn array<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let bytes = deserialize(d)?;
        <[u8; N]>::try_from(bytes.as_slice())
            .map_err(|_| D::Error::custom(format!("expected {N} bytes of hex")))
    }
}

// ---- names, owner ids and scopes -------------------------------------------------
//
// Written by hand rather than derived, so each impl carries its feature badge in
// the docs. Enums are their stable lower-case names; an owner id its text;
// scopes a list of names. Reading validates like the constructors, and an
// error never repeats the value.

/// Serialized as the stable name (`Display`), read back with `FromStr`.
macro_rules! serde_as_name {
    ($($ty:ty),*) => {$(
        #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(D::Error::custom)
            }
        }
    )*};
}

serde_as_name!(Environment, KeyKind, KeyStatus);

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl Serialize for OwnerId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl<'de> Deserialize<'de> for OwnerId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        OwnerId::new(String::deserialize(d)?).map_err(D::Error::custom)
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl Serialize for Scopes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl<'de> Deserialize<'de> for Scopes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Scopes::new(Vec::<String>::deserialize(d)?).map_err(D::Error::custom)
    }
}

// ---- the digest and the sealed secret --------------------------------------------

#[derive(Serialize)]
struct HashOut<'a> {
    pepper_version: Option<u32>,
    #[serde(with = "hex")]
    digest: &'a [u8],
}

#[derive(Deserialize)]
struct HashIn {
    pepper_version: Option<u32>,
    #[serde(deserialize_with = "hex::array")]
    digest: [u8; 32],
}

/// `{"pepper_version": 1 | null, "digest": "<64 hex digits>"}`.
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl Serialize for SecretHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        HashOut {
            pepper_version: self.pepper_version,
            digest: &self.digest,
        }
        .serialize(s)
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl<'de> Deserialize<'de> for SecretHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let h = HashIn::deserialize(d)?;
        Ok(SecretHash {
            pepper_version: h.pepper_version,
            digest: h.digest,
        })
    }
}

#[derive(Serialize)]
struct SealedOut<'a> {
    key_version: u32,
    #[serde(with = "hex")]
    nonce: &'a [u8],
    #[serde(with = "hex")]
    ciphertext: &'a [u8],
}

#[derive(Deserialize)]
struct SealedIn {
    key_version: u32,
    #[serde(deserialize_with = "hex::array")]
    nonce: [u8; SEALED_NONCE_LEN],
    #[serde(deserialize_with = "hex::deserialize")]
    ciphertext: Vec<u8>,
}

/// `{"key_version": 1, "nonce": "<48 hex digits>", "ciphertext": "<hex>"}`.
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl Serialize for SealedSecret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SealedOut {
            key_version: self.key_version,
            nonce: &self.nonce,
            ciphertext: &self.ciphertext,
        }
        .serialize(s)
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl<'de> Deserialize<'de> for SealedSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = SealedIn::deserialize(d)?;
        Ok(SealedSecret {
            key_version: s.key_version,
            nonce: s.nonce,
            ciphertext: s.ciphertext,
        })
    }
}

// ---- the record ---------------------------------------------------------------------

#[derive(Serialize)]
struct RecordOut<'a> {
    format: u32,
    id: &'a KeyId,
    owner: &'a OwnerId,
    kind: KeyKind,
    environment: Environment,
    name: &'a str,
    note: Option<&'a str>,
    description: Option<&'a str>,
    scopes: &'a Scopes,
    allowed_domains: &'a DomainAllowList,
    allowed_ips: &'a IpAllowList,
    status: KeyStatus,
    #[serde(with = "instant")]
    created_at: UtcDateTime,
    #[serde(with = "opt_instant")]
    expires_at: Option<UtcDateTime>,
    #[serde(with = "opt_instant")]
    last_used_at: Option<UtcDateTime>,
    #[serde(skip_serializing_if = "is_zero")]
    use_count: u64,
    #[serde(with = "opt_instant")]
    revoked_at: Option<UtcDateTime>,
    predecessor: Option<&'a KeyId>,
    successor: Option<&'a KeyId>,
    #[serde(with = "opt_instant")]
    rolled_at: Option<UtcDateTime>,
    #[serde(with = "opt_instant")]
    grace_ends_at: Option<UtcDateTime>,
    version: u64,
    secret_hash: Option<&'a SecretHash>,
    /// Written only where it says more than `sealed_secret` does (a
    /// pending signing key), so records of earlier versions are written
    /// byte for byte as before.
    #[serde(skip_serializing_if = "Option::is_none")]
    signing: Option<bool>,
    sealed_secret: Option<&'a SealedSecret>,
    redacted: &'a str,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Format 1. Optional fields may be absent (read as `null`), so a field
/// added later as optional reads the same way.
#[derive(Deserialize)]
struct RecordIn {
    format: u32,
    id: KeyId,
    owner: OwnerId,
    kind: KeyKind,
    environment: Environment,
    name: String,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    description: Option<String>,
    scopes: Scopes,
    allowed_domains: DomainAllowList,
    allowed_ips: IpAllowList,
    status: KeyStatus,
    #[serde(with = "instant")]
    created_at: UtcDateTime,
    #[serde(default, with = "opt_instant")]
    expires_at: Option<UtcDateTime>,
    #[serde(default, with = "opt_instant")]
    last_used_at: Option<UtcDateTime>,
    #[serde(default)]
    use_count: u64,
    #[serde(default, with = "opt_instant")]
    revoked_at: Option<UtcDateTime>,
    #[serde(default)]
    predecessor: Option<KeyId>,
    #[serde(default)]
    successor: Option<KeyId>,
    #[serde(default, with = "opt_instant")]
    rolled_at: Option<UtcDateTime>,
    #[serde(default, with = "opt_instant")]
    grace_ends_at: Option<UtcDateTime>,
    version: u64,
    /// `null` exactly for a pending key.
    secret_hash: Option<SecretHash>,
    /// Absent: a signing key exactly when it has a sealed secret.
    #[serde(default)]
    signing: Option<bool>,
    #[serde(default)]
    sealed_secret: Option<SealedSecret>,
    redacted: String,
}

/// The storage form described in the README ("The record codec"): format
/// 1, RFC 3339 instants, hex bytes.
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl Serialize for KeyRecord {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        RecordOut {
            format: RECORD_FORMAT,
            id: &self.id,
            owner: &self.owner,
            kind: self.kind,
            environment: self.environment,
            name: &self.name,
            note: self.note.as_deref(),
            description: self.description.as_deref(),
            scopes: &self.scopes,
            allowed_domains: &self.allowed_domains,
            allowed_ips: &self.allowed_ips,
            status: self.status,
            created_at: self.created_at,
            expires_at: self.expires_at,
            last_used_at: self.last_used_at,
            use_count: self.use_count,
            revoked_at: self.revoked_at,
            predecessor: self.predecessor.as_ref(),
            successor: self.successor.as_ref(),
            rolled_at: self.rolled_at,
            grace_ends_at: self.grace_ends_at,
            version: self.version,
            secret_hash: self.secret_hash.as_ref(),
            signing: (self.signing != self.sealed_secret.is_some()).then_some(self.signing),
            sealed_secret: self.sealed_secret.as_ref(),
            redacted: &self.redacted,
        }
        .serialize(s)
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl<'de> Deserialize<'de> for KeyRecord {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = RecordIn::deserialize(d)?;
        if r.format != RECORD_FORMAT {
            return Err(D::Error::custom(format!(
                "record format {} is not supported (this version reads format {RECORD_FORMAT})",
                r.format
            )));
        }
        let pending = r.status == KeyStatus::Pending;
        if r.secret_hash.is_some() == pending {
            return Err(D::Error::custom(
                "secret_hash must be null for a pending key and set for any other",
            ));
        }
        let sealed = r.sealed_secret.is_some();
        let signing = r.signing.unwrap_or(sealed);
        if (pending && sealed) || (!pending && signing != sealed) {
            return Err(D::Error::custom(
                "a signing key has a sealed secret once it is not pending; no other key has one",
            ));
        }
        Ok(KeyRecord {
            id: r.id,
            owner: r.owner,
            kind: r.kind,
            environment: r.environment,
            name: r.name,
            note: r.note,
            description: r.description,
            scopes: r.scopes,
            allowed_domains: r.allowed_domains,
            allowed_ips: r.allowed_ips,
            status: r.status,
            created_at: r.created_at,
            expires_at: r.expires_at,
            last_used_at: r.last_used_at,
            use_count: r.use_count,
            revoked_at: r.revoked_at,
            predecessor: r.predecessor,
            successor: r.successor,
            rolled_at: r.rolled_at,
            grace_ends_at: r.grace_ends_at,
            version: r.version,
            secret_hash: r.secret_hash,
            signing,
            sealed_secret: r.sealed_secret,
            redacted: r.redacted,
        })
    }
}
