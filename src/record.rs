//! What a store persists about a key — never the secret — and the small
//! validated types it is made of.

use crate::environment::{Environment, KeyKind};
use crate::error::{Error, Field};
use crate::hash::SecretHash;
use crate::ip::IpAllowList;
use crate::origin::DomainAllowList;
use crate::sealing::SealedSecret;
use crate::token::KeyId;
use core::fmt;
use time::UtcDateTime;

/// Longest owner id, actor or scope, in bytes.
pub const MAX_ID_LEN: usize = 128;
/// Longest key name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest note or description, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;

fn validate_text(
    text: &str,
    field: Field,
    max_chars: usize,
    allow_newlines: bool,
) -> Result<(), Error> {
    if text.trim().is_empty() {
        return Err(Error::Invalid {
            field,
            reason: "must not be blank",
        });
    }
    if text.chars().count() > max_chars {
        return Err(Error::Invalid {
            field,
            reason: "too long",
        });
    }
    if text
        .chars()
        .any(|c| c.is_control() && !(allow_newlines && (c == '\n' || c == '\t')))
    {
        return Err(Error::Invalid {
            field,
            reason: "must not contain control characters",
        });
    }
    Ok(())
}

pub(crate) fn validate_name(name: &str) -> Result<(), Error> {
    validate_text(name, Field::Name, MAX_NAME_CHARS, false)
}

pub(crate) fn validate_note(note: &str, field: Field) -> Result<(), Error> {
    validate_text(note, field, MAX_TEXT_CHARS, true)
}

fn validate_id(text: &str, field: Field) -> Result<(), Error> {
    if text.is_empty() || text.len() > MAX_ID_LEN {
        return Err(Error::Invalid {
            field,
            reason: "must be 1-128 bytes",
        });
    }
    if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Error::Invalid {
            field,
            reason: "must not contain whitespace or control characters",
        });
    }
    Ok(())
}

/// The account, organisation or merchant that owns keys (the host's id).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OwnerId(Box<str>);

impl OwnerId {
    /// An owner id: 1–128 bytes, no whitespace or control characters.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] with [`Field::Owner`] otherwise.
    pub fn new(id: impl Into<String>) -> Result<Self, Error> {
        let id = id.into();
        validate_id(&id, Field::Owner)?;
        Ok(Self(id.into_boxed_str()))
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for OwnerId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Self::new(s)
    }
}

impl From<OwnerId> for String {
    fn from(o: OwnerId) -> String {
        o.0.into()
    }
}

/// Who performed a management operation, as the host knows them (a user id,
/// a service name). Passed into every change and reported in its event, so
/// the host can keep an audit trail and enforce who may manage keys (Moov's
/// admin/developer roles, SignatureAPI's "Manage API keys" permission: the
/// host checks the permission, the crate records the actor).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Actor(Box<str>);

impl Actor {
    /// An actor id: 1–128 bytes, no whitespace or control characters.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] with [`Field::Actor`] otherwise.
    pub fn new(id: impl Into<String>) -> Result<Self, Error> {
        let id = id.into();
        validate_id(&id, Field::Actor)?;
        Ok(Self(id.into_boxed_str()))
    }

    /// The host itself (automations, account creation): `system`.
    #[must_use]
    pub fn system() -> Self {
        Self("system".into())
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a key is in its life. Expiry is not a status: it is a time
/// predicate checked against `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyStatus {
    /// Accepted (subject to expiry and the other checks).
    Active,
    /// Generated but not yet activated, or deactivated; can be activated.
    Inactive,
    /// Generated without a secret (CoinsPaid's "generate, then activate"):
    /// listed like any key, never accepted. Its first activation
    /// ([`KeyManager::activate_pending`](crate::KeyManager::activate_pending))
    /// mints the secret and returns the token, once; it never comes back
    /// to this status.
    Pending,
    /// Revoked: terminal and absorbing. Nothing changes a revoked key.
    Revoked,
}

impl KeyStatus {
    /// A stable lower-case name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Inactive => "inactive",
            KeyStatus::Pending => "pending",
            KeyStatus::Revoked => "revoked",
        }
    }

    /// Every status, in life order.
    pub const ALL: [KeyStatus; 4] = [
        KeyStatus::Pending,
        KeyStatus::Active,
        KeyStatus::Inactive,
        KeyStatus::Revoked,
    ];
}

impl fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::str::FromStr for KeyStatus {
    type Err = crate::environment::ParseNameError;
    /// Parses the stable name ([`as_str`](Self::as_str)): `active`,
    /// `inactive`, `pending` or `revoked`, exact case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or(crate::environment::ParseNameError::new("key status"))
    }
}

/// A permission name: 1–128 bytes of `A-Za-z0-9` and `:._/-`. Matched
/// exactly (no wildcards, no hierarchy).
pub(crate) fn validate_scope(scope: &str) -> Result<(), Error> {
    let ok = !scope.is_empty()
        && scope.len() <= MAX_ID_LEN
        && scope
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b":._/-".contains(&c));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid {
            field: Field::Scope,
            reason: "scopes are 1-128 of A-Za-z0-9 and :._/-",
        })
    }
}

static NO_SCOPES: Scopes = Scopes::EMPTY;

/// A sorted, de-duplicated set of scope names.
///
/// An empty set on a **secret** key means unrestricted (a standard secret
/// key); on a **publishable** key it means the policy's publishable-safe
/// scopes. A non-empty set grants exactly its members (a restricted key) —
/// on a publishable key, only those the policy in force still allows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Scopes(Vec<String>);

impl Scopes {
    /// No scopes (see [`Scopes`] for what empty means).
    pub(crate) const EMPTY: Self = Self(Vec::new());

    /// The empty set, borrowed for as long as needed (what a
    /// [`RequestContext`](crate::RequestContext) requires by default).
    pub(crate) const fn none() -> &'static Scopes {
        &NO_SCOPES
    }

    /// Validates, sorts and de-duplicates scope names.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] with [`Field::Scope`] for a name outside the
    /// allowed alphabet or length.
    pub fn new<I, S>(scopes: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut v = Vec::new();
        for s in scopes {
            let s = s.into();
            validate_scope(&s)?;
            v.push(s);
        }
        v.sort_unstable();
        v.dedup();
        Ok(Self(v))
    }

    /// Whether the set has this scope (binary search, no allocation).
    #[must_use]
    pub fn contains(&self, scope: &str) -> bool {
        self.0.binary_search_by(|s| s.as_str().cmp(scope)).is_ok()
    }

    /// Whether the set is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The names, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// Whether every member is also in `other`.
    #[must_use]
    pub fn is_subset(&self, other: &Scopes) -> bool {
        self.iter().all(|s| other.contains(s))
    }
}

impl IntoIterator for Scopes {
    type Item = String;
    type IntoIter = std::vec::IntoIter<String>;
    /// The names, sorted: so a prebuilt set can be passed wherever names
    /// are taken ([`NewKey::scopes`](crate::NewKey::scopes)).
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Scopes {
    type Item = &'a str;
    type IntoIter = core::iter::Map<core::slice::Iter<'a, String>, fn(&String) -> &str>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(String::as_str)
    }
}

impl TryFrom<Vec<String>> for Scopes {
    type Error = Error;
    fn try_from(v: Vec<String>) -> Result<Self, Error> {
        Self::new(v)
    }
}

impl From<Scopes> for Vec<String> {
    fn from(s: Scopes) -> Vec<String> {
        s.0
    }
}

/// Everything a store persists about one key. Never the secret: a
/// [`SecretHash`] of it, and for signing keys a [`SealedSecret`] only the
/// host's sealing keys can open.
///
/// Fields are public on purpose, so hosts can map records to rows; the
/// [`KeyManager`](crate::KeyManager) is what keeps them consistent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// Public key id (unique).
    pub id: KeyId,
    /// Owning account / organisation / merchant.
    pub owner: OwnerId,
    /// Secret or publishable.
    pub kind: KeyKind,
    /// Test or live.
    pub environment: Environment,
    /// Human name ("billing service", "staging"), required.
    pub name: String,
    /// Optional note, e.g. where the key is stored (Moov).
    pub note: Option<String>,
    /// Optional description (SignatureAPI).
    pub description: Option<String>,
    /// Scopes granted (see [`Scopes`] for what empty means).
    pub scopes: Scopes,
    /// Domains allowed in `Origin`/`Referer`; empty = no restriction.
    pub allowed_domains: DomainAllowList,
    /// Peer addresses allowed; empty = any.
    pub allowed_ips: IpAllowList,
    /// Pending, active, inactive or revoked.
    pub status: KeyStatus,
    /// Start of validity (inclusive).
    pub created_at: UtcDateTime,
    /// End of validity (exclusive), if any. Keys do not expire by default.
    pub expires_at: Option<UtcDateTime>,
    /// Last accepted use, as written so far (see [`use_count`](Self::use_count)).
    pub last_used_at: Option<UtcDateTime>,
    /// Accepted uses written so far (Mindee's "usage is tracked"): refused
    /// requests never count. Uses are tallied in memory and written with
    /// `last_used_at`, off the request; the manager's reads add the uses it
    /// has not written yet. What a crash can lose is documented in the
    /// crate docs ("Usage").
    pub use_count: u64,
    /// When the key was revoked.
    pub revoked_at: Option<UtcDateTime>,
    /// The key this one replaced in a roll.
    pub predecessor: Option<KeyId>,
    /// The key that replaced this one in a roll.
    pub successor: Option<KeyId>,
    /// When this key was rolled (replaced).
    pub rolled_at: Option<UtcDateTime>,
    /// End of the roll's grace window (exclusive), set by a roll: never
    /// later than `expires_at` (the roll and later expiry changes clamp
    /// it), so it is when a rolled key stops working. For "works until" in
    /// a UI, show [`effective_end`](Self::effective_end), which also covers
    /// keys that were not rolled.
    pub grace_ends_at: Option<UtcDateTime>,
    /// Version for compare-and-swap; every change increments it.
    pub version: u64,
    /// Hash of the secret (never the secret); `None` exactly while the key
    /// is [`Pending`](KeyStatus::Pending) (it has no secret yet).
    pub secret_hash: Option<SecretHash>,
    /// Whether the key signs requests (fixed at creation). A signing key's
    /// secret is also sealed in [`sealed_secret`](Self::sealed_secret) once
    /// it has one.
    pub signing: bool,
    /// For signing keys: the signing secret sealed under a host-held key.
    /// `None` for bearer keys and pending keys.
    pub sealed_secret: Option<SealedSecret>,
    /// Redacted display form of the token, e.g. `sk_live_…x9Qa`; for a
    /// pending key only its prefix, `sk_live_…`.
    pub redacted: String,
}

impl KeyRecord {
    /// The instant the key stops working: the earlier of its expiry and the
    /// end of a roll's grace window.
    #[must_use]
    pub fn effective_end(&self) -> Option<UtcDateTime> {
        match (self.expires_at, self.grace_ends_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether the key would be accepted at `now`, status and time only:
    /// active, `created_at <= now`, and `now` before the effective end.
    #[must_use]
    pub fn is_usable_at(&self, now: UtcDateTime) -> bool {
        self.status == KeyStatus::Active
            && self.created_at <= now
            && self.effective_end().is_none_or(|end| now < end)
    }

    /// Whether the key is active and has not ended at `now`, whatever its
    /// `created_at` (what the one-active-key rule counts, robust to clock
    /// skew between servers).
    #[must_use]
    pub fn is_live_at(&self, now: UtcDateTime) -> bool {
        self.status == KeyStatus::Active && self.effective_end().is_none_or(|end| now < end)
    }

    /// Whether the key has been rolled and is still inside its grace window.
    #[must_use]
    pub fn in_grace_at(&self, now: UtcDateTime) -> bool {
        self.successor.is_some() && self.is_usable_at(now)
    }

    /// Whether this is a signing key (its secret is sealed, not only
    /// hashed, once it has one).
    #[must_use]
    pub fn is_signing_key(&self) -> bool {
        // Either says so: a record whose flag was lost (a host store that
        // drops it) still never lets a sealed secret travel as a bearer.
        self.signing || self.sealed_secret.is_some()
    }

    /// Whether the key is pending: generated, with no secret yet.
    #[must_use]
    pub fn is_pending(&self) -> bool {
        self.status == KeyStatus::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_round_trip_and_refuse_neighbours() {
        for s in KeyStatus::ALL {
            assert_eq!(s.to_string().parse::<KeyStatus>(), Ok(s));
            assert_eq!(s.to_string(), s.as_str());
        }
        for bad in ["", "Active", "REVOKED", "deleted", "active\n"] {
            let err = bad.parse::<KeyStatus>().unwrap_err();
            assert_eq!(err.expected(), "key status");
        }
    }
}
