//! How a store hands a record to the verify path: [`StoredRecord`], either a
//! shared [`KeyRecord`] or the memory store's compact form, and the
//! read-only view the pure core decides on.
//!
//! A verification reads a dozen fields of a record; a management call reads
//! all of them. The memory store keeps each key in a compact layout (the
//! fields a verification reads inline, the rare ones behind one pointer)
//! and materialises a full [`KeyRecord`] only for management calls, so a
//! million keys cost a few hundred bytes each and a verification allocates
//! nothing.

use crate::environment::{Environment, KeyKind};
use crate::hash::SecretHash;
use crate::ip::IpAllowList;
use crate::origin::DomainAllowList;
use crate::record::{KeyRecord, KeyStatus, OwnerId, Scopes};
use crate::sealing::SealedSecret;
use crate::token::KeyId;
use std::sync::Arc;
use time::UtcDateTime;

/// A key's record as a store lends it to the verify path
/// ([`KeyStore::get_for_verify`](crate::KeyStore::get_for_verify)): a
/// shared [`KeyRecord`], or an embedded store's own compact form of it.
/// Cheap to clone; opaque on purpose.
///
/// A store that keeps full records builds one with `From<Arc<KeyRecord>>`
/// or `From<KeyRecord>`.
#[derive(Clone)]
pub struct StoredRecord(pub(crate) Held);

#[derive(Clone)]
pub(crate) enum Held {
    Full(Arc<KeyRecord>),
    Compact(Arc<CompactRecord>),
}

impl StoredRecord {
    /// The key id.
    #[must_use]
    pub fn id(&self) -> KeyId {
        match &self.0 {
            Held::Full(r) => r.id,
            Held::Compact(c) => c.id,
        }
    }

    /// The full record (materialised from a compact form: allocates).
    #[must_use]
    pub fn to_record(&self) -> Arc<KeyRecord> {
        match &self.0 {
            Held::Full(r) => Arc::clone(r),
            Held::Compact(c) => Arc::new(c.to_record()),
        }
    }
}

impl From<Arc<KeyRecord>> for StoredRecord {
    fn from(record: Arc<KeyRecord>) -> Self {
        Self(Held::Full(record))
    }
}

impl From<KeyRecord> for StoredRecord {
    fn from(record: KeyRecord) -> Self {
        Self(Held::Full(Arc::new(record)))
    }
}

impl core::fmt::Debug for StoredRecord {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("StoredRecord").field(&self.id()).finish()
    }
}

/// What the pure core reads of a record to decide a request: implemented by
/// [`KeyRecord`] and [`CompactRecord`], so one decision procedure serves
/// both.
pub(crate) trait RecordView {
    fn id(&self) -> KeyId;
    fn owner(&self) -> &OwnerId;
    fn kind(&self) -> KeyKind;
    fn environment(&self) -> Environment;
    fn status(&self) -> KeyStatus;
    fn created_at(&self) -> UtcDateTime;
    fn expires_at(&self) -> Option<UtcDateTime>;
    fn grace_ends_at(&self) -> Option<UtcDateTime>;
    fn last_used_at(&self) -> Option<UtcDateTime>;
    fn successor(&self) -> Option<KeyId>;
    fn secret_hash(&self) -> Option<&SecretHash>;
    fn is_signing_key(&self) -> bool;
    fn scopes(&self) -> &Scopes;
    fn allowed_ips(&self) -> &IpAllowList;
    fn allowed_domains(&self) -> &DomainAllowList;
}

impl RecordView for KeyRecord {
    fn id(&self) -> KeyId {
        self.id
    }
    fn owner(&self) -> &OwnerId {
        &self.owner
    }
    fn kind(&self) -> KeyKind {
        self.kind
    }
    fn environment(&self) -> Environment {
        self.environment
    }
    fn status(&self) -> KeyStatus {
        self.status
    }
    fn created_at(&self) -> UtcDateTime {
        self.created_at
    }
    fn expires_at(&self) -> Option<UtcDateTime> {
        self.expires_at
    }
    fn grace_ends_at(&self) -> Option<UtcDateTime> {
        self.grace_ends_at
    }
    fn last_used_at(&self) -> Option<UtcDateTime> {
        self.last_used_at
    }
    fn successor(&self) -> Option<KeyId> {
        self.successor
    }
    fn secret_hash(&self) -> Option<&SecretHash> {
        self.secret_hash.as_ref()
    }
    fn is_signing_key(&self) -> bool {
        KeyRecord::is_signing_key(self)
    }
    fn scopes(&self) -> &Scopes {
        &self.scopes
    }
    fn allowed_ips(&self) -> &IpAllowList {
        &self.allowed_ips
    }
    fn allowed_domains(&self) -> &DomainAllowList {
        &self.allowed_domains
    }
}

impl Held {
    /// The record as a view (one dispatch, then direct field reads).
    pub(crate) fn view(&self) -> &dyn RecordView {
        match self {
            Held::Full(r) => &**r,
            Held::Compact(c) => &**c,
        }
    }
}

impl RecordView for CompactRecord {
    fn id(&self) -> KeyId {
        self.id
    }
    fn owner(&self) -> &OwnerId {
        &self.owner
    }
    fn kind(&self) -> KeyKind {
        self.kind
    }
    fn environment(&self) -> Environment {
        self.environment
    }
    fn status(&self) -> KeyStatus {
        self.status
    }
    fn created_at(&self) -> UtcDateTime {
        self.created_at
    }
    fn expires_at(&self) -> Option<UtcDateTime> {
        self.expires_at
    }
    fn grace_ends_at(&self) -> Option<UtcDateTime> {
        self.grace_ends_at
    }
    fn last_used_at(&self) -> Option<UtcDateTime> {
        self.last_used_at
    }
    fn successor(&self) -> Option<KeyId> {
        self.cold.as_ref().and_then(|c| c.successor)
    }
    fn secret_hash(&self) -> Option<&SecretHash> {
        self.secret_hash.as_ref()
    }
    fn is_signing_key(&self) -> bool {
        self.signing
            || self
                .cold
                .as_ref()
                .is_some_and(|c| c.sealed_secret.is_some())
    }
    fn scopes(&self) -> &Scopes {
        self.cold.as_ref().map_or(&NO_SCOPES, |c| &c.scopes)
    }
    fn allowed_ips(&self) -> &IpAllowList {
        self.cold.as_ref().map_or(&ANY_IP, |c| &c.allowed_ips)
    }
    fn allowed_domains(&self) -> &DomainAllowList {
        self.cold
            .as_ref()
            .map_or(&ANY_DOMAIN, |c| &c.allowed_domains)
    }
}

static NO_SCOPES: Scopes = Scopes::EMPTY;
static ANY_IP: IpAllowList = IpAllowList::ANY;
static ANY_DOMAIN: DomainAllowList = DomainAllowList::ANY;

/// The memory store's layout of a record: the fields a verification
/// reads, inline, and the fields most keys leave empty behind one shared
/// pointer. Immutable: a change replaces the whole value.
///
/// `repr(C)` to fix the order: what a verification reads comes first, and
/// the last 56 bytes (version, owner, name, redacted form) are fields it
/// does not read. In a run of records allocated one after the other, the
/// next record's reference count (which its verifier writes) can share a
/// cache line only with those last bytes, so two cores verifying
/// neighbouring keys do not invalidate each other's reads.
#[derive(Clone)]
#[repr(C)]
pub(crate) struct CompactRecord {
    pub(crate) secret_hash: Option<SecretHash>,
    pub(crate) id: KeyId,
    /// `None` when every rare field is empty (most keys).
    pub(crate) cold: Option<Arc<Cold>>,
    pub(crate) created_at: UtcDateTime,
    pub(crate) expires_at: Option<UtcDateTime>,
    pub(crate) grace_ends_at: Option<UtcDateTime>,
    pub(crate) last_used_at: Option<UtcDateTime>,
    pub(crate) kind: KeyKind,
    pub(crate) environment: Environment,
    pub(crate) status: KeyStatus,
    pub(crate) signing: bool,
    // Not read by a verification:
    pub(crate) version: u64,
    pub(crate) use_count: u64,
    pub(crate) owner: OwnerId,
    pub(crate) name: Box<str>,
    pub(crate) redacted: Box<str>,
}

/// The fields most keys leave empty.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Cold {
    note: Option<String>,
    description: Option<String>,
    scopes: Scopes,
    allowed_domains: DomainAllowList,
    allowed_ips: IpAllowList,
    revoked_at: Option<UtcDateTime>,
    predecessor: Option<KeyId>,
    successor: Option<KeyId>,
    rolled_at: Option<UtcDateTime>,
    sealed_secret: Option<SealedSecret>,
}

impl CompactRecord {
    /// The compact form of a record (every field kept).
    pub(crate) fn of(record: &KeyRecord) -> Self {
        // Destructured, so a field added to `KeyRecord` fails to compile
        // here until it is kept.
        let KeyRecord {
            id,
            owner,
            kind,
            environment,
            name,
            note,
            description,
            scopes,
            allowed_domains,
            allowed_ips,
            status,
            created_at,
            expires_at,
            last_used_at,
            use_count,
            revoked_at,
            predecessor,
            successor,
            rolled_at,
            grace_ends_at,
            version,
            secret_hash,
            signing,
            sealed_secret,
            redacted,
        } = record;
        let cold = Cold {
            note: note.clone(),
            description: description.clone(),
            scopes: scopes.clone(),
            allowed_domains: allowed_domains.clone(),
            allowed_ips: allowed_ips.clone(),
            revoked_at: *revoked_at,
            predecessor: *predecessor,
            successor: *successor,
            rolled_at: *rolled_at,
            sealed_secret: sealed_secret.clone(),
        };
        Self {
            id: *id,
            secret_hash: *secret_hash,
            owner: owner.clone(),
            name: name.as_str().into(),
            redacted: redacted.as_str().into(),
            version: *version,
            use_count: *use_count,
            signing: *signing,
            created_at: *created_at,
            expires_at: *expires_at,
            last_used_at: *last_used_at,
            grace_ends_at: *grace_ends_at,
            kind: *kind,
            environment: *environment,
            status: *status,
            cold: (cold != Cold::default()).then(|| Arc::new(cold)),
        }
    }

    /// The full record.
    pub(crate) fn to_record(&self) -> KeyRecord {
        let cold = self.cold.as_deref().cloned().unwrap_or_default();
        KeyRecord {
            id: self.id,
            owner: self.owner.clone(),
            kind: self.kind,
            environment: self.environment,
            name: self.name.to_string(),
            note: cold.note,
            description: cold.description,
            scopes: cold.scopes,
            allowed_domains: cold.allowed_domains,
            allowed_ips: cold.allowed_ips,
            status: self.status,
            created_at: self.created_at,
            expires_at: self.expires_at,
            last_used_at: self.last_used_at,
            use_count: self.use_count,
            revoked_at: cold.revoked_at,
            predecessor: cold.predecessor,
            successor: cold.successor,
            rolled_at: cold.rolled_at,
            grace_ends_at: self.grace_ends_at,
            version: self.version,
            secret_hash: self.secret_hash,
            signing: self.signing,
            sealed_secret: cold.sealed_secret,
            redacted: self.redacted.to_string(),
        }
    }
}

/// A plain record with this id, for unit tests.
#[cfg(test)]
pub(crate) fn sample_record(id: KeyId) -> KeyRecord {
    use time::macros::utc_datetime;
    KeyRecord {
        id,
        owner: OwnerId::new("acct").unwrap_or_else(|_| unreachable!()),
        kind: KeyKind::Secret,
        environment: Environment::Live,
        name: "n".into(),
        note: None,
        description: None,
        scopes: Scopes::default(),
        allowed_domains: DomainAllowList::default(),
        allowed_ips: IpAllowList::default(),
        status: KeyStatus::Active,
        created_at: utc_datetime!(2026-01-01 00:00),
        expires_at: None,
        last_used_at: None,
        use_count: 0,
        revoked_at: None,
        predecessor: None,
        successor: None,
        rolled_at: None,
        grace_ends_at: None,
        version: 1,
        secret_hash: Some(SecretHash {
            pepper_version: None,
            digest: [9; 32],
        }),
        signing: false,
        sealed_secret: None,
        redacted: "sk_live_…abcd".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::KeyStatus;
    use time::macros::utc_datetime;

    fn plain() -> KeyRecord {
        sample_record(KeyId::from_bytes([3; 16]))
    }

    #[test]
    fn compact_round_trips_every_field() {
        let a = plain();
        let c = CompactRecord::of(&a);
        assert!(c.cold.is_none(), "a plain key has no cold part");
        assert_eq!(c.to_record(), a);

        let mut b = plain();
        b.note = Some("vault".into());
        b.description = Some("d".into());
        b.scopes = Scopes::new(["charges:read"]).unwrap();
        b.allowed_domains = DomainAllowList::new(["example.com"]).unwrap();
        b.allowed_ips = IpAllowList::parse("10.0.0.0/8").unwrap();
        b.status = KeyStatus::Revoked;
        b.expires_at = Some(utc_datetime!(2027-01-01 00:00));
        b.last_used_at = Some(utc_datetime!(2026-02-01 00:00:00.5));
        b.revoked_at = Some(utc_datetime!(2026-03-01 00:00));
        b.predecessor = Some(KeyId::from_bytes([1; 16]));
        b.successor = Some(KeyId::from_bytes([2; 16]));
        b.rolled_at = Some(utc_datetime!(2026-02-02 00:00));
        b.grace_ends_at = Some(utc_datetime!(2026-02-02 12:00));
        b.version = 7;
        b.use_count = 41;
        b.signing = true;
        b.sealed_secret = Some(SealedSecret {
            key_version: 1,
            nonce: [5; crate::sealing::SEALED_NONCE_LEN],
            ciphertext: vec![1, 2, 3],
        });
        let c = CompactRecord::of(&b);
        assert_eq!(c.to_record(), b);
        let held = Held::Compact(Arc::new(c));
        let view = held.view();
        assert_eq!(view.successor(), b.successor);
        assert!(view.is_signing_key());
        assert_eq!(view.scopes(), &b.scopes);
        assert_eq!(view.allowed_ips(), &b.allowed_ips);
        assert_eq!(view.allowed_domains(), &b.allowed_domains);
    }

    #[test]
    fn a_lent_record_shows_its_id_only() {
        let record = plain();
        let shown = format!("{:?}", StoredRecord::from(record.clone()));
        assert_eq!(shown, format!("StoredRecord({:?})", record.id));
        let compact = StoredRecord(Held::Compact(Arc::new(CompactRecord::of(&record))));
        assert_eq!(format!("{compact:?}"), shown);
    }

    #[test]
    fn the_compact_layout_stays_small() {
        // The memory store's per-key budget: this value plus its `Arc`
        // header, a 24-byte index entry and the owner index stay under
        // 300 bytes (see BENCHMARKS.md).
        assert!(
            size_of::<CompactRecord>() <= 200,
            "{}",
            size_of::<CompactRecord>()
        );
    }
}
