//! "The key is refused" ([`Rejection`]) versus "the service failed"
//! ([`Error`], [`StoreError`]), and [`VerifyError`] which carries either.
//!
//! No error in this module carries a secret, a token or a raw header value:
//! they hold reasons, key ids and configuration details only.

use crate::origin::OriginRefusal;
use crate::token::KeyId;
use core::fmt;

/// Why a presented key was refused.
///
/// Reasons are precise for logs and metrics ([`as_str`](Self::as_str), and
/// [`detail`](Self::detail) for the finer reason some variants carry); the
/// HTTP mapping ([`http_status`](Self::http_status)) is deliberately coarse:
/// 401 for everything about the key itself, 403 for policy, so a client
/// cannot tell an unknown key from a revoked one unless the host tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rejection {
    /// Not a well-formed token or key id (length, alphabet, layout, checksum,
    /// prefix). Refused offline, before any store call.
    Malformed,
    /// No record with this key id, or the secret does not match it.
    UnknownKey,
    /// The key was revoked (permanent).
    Revoked,
    /// The key is inactive: generated but not yet activated, or deactivated.
    Inactive,
    /// The key's expiry has passed (`now >= expires_at`).
    Expired,
    /// The key was rolled and its grace window has ended.
    GraceEnded,
    /// The key's validity has not started yet (`now < created_at`, e.g. after
    /// the clock stepped backwards).
    NotYetValid,
    /// The key belongs to the other environment than the one required.
    WrongEnvironment,
    /// The key is of the other kind than the one required (e.g. a
    /// publishable key where a secret key is required).
    WrongKind,
    /// The key does not grant a required scope.
    MissingScope,
    /// The request's `Origin`/`Referer` does not pass the key's domain list;
    /// the [`OriginRefusal`] says precisely why (no header, a malformed or
    /// `null` one, plain http, a host not on the list, …). Log it with
    /// [`detail`](Self::detail); the HTTP mapping and
    /// [`as_str`](Self::as_str) are the same whatever the reason.
    OriginNotAllowed(OriginRefusal),
    /// The request's address is not in the key's IP allow-list — or the
    /// host passed no address at all
    /// ([`RequestContext::peer_ip`](crate::RequestContext::peer_ip) is
    /// `None`, e.g. axum served without `ConnectInfo`), which refuses every
    /// key that has a list.
    IpNotAllowed,
    /// A signing key was presented as a bearer token; its secret must never
    /// travel on the wire.
    SigningKeyAsBearer,
    /// A signed request named a key that is not a signing key.
    NotASigningKey,
    /// The request signature is missing, malformed or does not match.
    BadSignature,
    /// The signed body exceeds the configured limit.
    BodyTooLarge,
    /// Replay-protected mode: the timestamp is malformed or outside the
    /// tolerance window.
    StaleRequest,
    /// Replay-protected mode: the nonce was already used.
    Replayed,
    /// Replay-protected mode: the key already holds its share of the replay
    /// cache (as many unexpired nonces as one key may hold). The key's
    /// requests are refused until its oldest nonces expire; other keys are
    /// not affected. HTTP 429.
    ReplayQuotaExceeded,
}

impl Rejection {
    /// Every rejection, so hosts can pre-register metric labels
    /// ([`as_str`](Self::as_str)) and map each to a response. A variant that
    /// carries a detail appears once, with one representative detail
    /// (`OriginNotAllowed(OriginRefusal::NotListed)`): names and statuses do
    /// not depend on it.
    pub const ALL: [Rejection; 19] = [
        Rejection::Malformed,
        Rejection::UnknownKey,
        Rejection::Revoked,
        Rejection::Inactive,
        Rejection::Expired,
        Rejection::GraceEnded,
        Rejection::NotYetValid,
        Rejection::WrongEnvironment,
        Rejection::WrongKind,
        Rejection::MissingScope,
        Rejection::OriginNotAllowed(OriginRefusal::NotListed),
        Rejection::IpNotAllowed,
        Rejection::SigningKeyAsBearer,
        Rejection::NotASigningKey,
        Rejection::BadSignature,
        Rejection::BodyTooLarge,
        Rejection::StaleRequest,
        Rejection::Replayed,
        Rejection::ReplayQuotaExceeded,
    ];

    /// A stable `snake_case` name for logs and metrics.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Rejection::Malformed => "malformed",
            Rejection::UnknownKey => "unknown_key",
            Rejection::Revoked => "revoked",
            Rejection::Inactive => "inactive",
            Rejection::Expired => "expired",
            Rejection::GraceEnded => "grace_ended",
            Rejection::NotYetValid => "not_yet_valid",
            Rejection::WrongEnvironment => "wrong_environment",
            Rejection::WrongKind => "wrong_kind",
            Rejection::MissingScope => "missing_scope",
            Rejection::OriginNotAllowed(_) => "origin_not_allowed",
            Rejection::IpNotAllowed => "ip_not_allowed",
            Rejection::SigningKeyAsBearer => "signing_key_as_bearer",
            Rejection::NotASigningKey => "not_a_signing_key",
            Rejection::BadSignature => "bad_signature",
            Rejection::BodyTooLarge => "body_too_large",
            Rejection::StaleRequest => "stale_request",
            Rejection::Replayed => "replayed",
            Rejection::ReplayQuotaExceeded => "replay_quota_exceeded",
        }
    }

    /// The HTTP status a host should answer with: 401 when the key itself is
    /// not acceptable (malformed, unknown, revoked, inactive, expired, bad
    /// signature, …), 403 when a valid key is not allowed this request
    /// (environment, kind, scope, origin, IP), 413 for an over-long signed
    /// body, 429 for a key past its share of the replay cache.
    #[must_use]
    pub const fn http_status(self) -> u16 {
        match self {
            Rejection::WrongEnvironment
            | Rejection::WrongKind
            | Rejection::MissingScope
            | Rejection::OriginNotAllowed(_)
            | Rejection::IpNotAllowed => 403,
            Rejection::BodyTooLarge => 413,
            Rejection::ReplayQuotaExceeded => 429,
            _ => 401,
        }
    }

    /// The precise reason within the rejection, for logs: for
    /// [`OriginNotAllowed`](Self::OriginNotAllowed) the
    /// [`OriginRefusal::as_str`] code (`"missing"`, `"null_origin"`,
    /// `"insecure_scheme"`, `"not_listed"`, …); `None` for rejections that
    /// carry no detail. Never a header value. Log it next to
    /// [`as_str`](Self::as_str); do not send it to clients.
    #[must_use]
    pub fn detail(self) -> Option<&'static str> {
        match self {
            Rejection::OriginNotAllowed(why) => Some(why.as_str()),
            _ => None,
        }
    }

    /// The coarse public code matching [`http_status`](Self::http_status):
    /// `invalid_api_key`, `forbidden`, `payload_too_large` or
    /// `too_many_requests`. Send this to clients; log
    /// [`as_str`](Self::as_str).
    #[must_use]
    pub const fn public_code(self) -> &'static str {
        match self.http_status() {
            403 => "forbidden",
            413 => "payload_too_large",
            429 => "too_many_requests",
            _ => "invalid_api_key",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for Rejection {
    /// The precise reason, when the rejection carries one (the
    /// [`OriginRefusal`] of an origin refusal).
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Rejection::OriginNotAllowed(why) => Some(why),
            _ => None,
        }
    }
}

/// What kind of failure a [`StoreError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// An insert found the key id already present.
    Duplicate,
    /// A compare-and-swap found another version than expected.
    Conflict,
    /// The record to change does not exist.
    NotFound,
    /// The write would leave two usable keys for an owner under the
    /// one-active-key rule.
    ActiveKeyExists,
    /// The backend failed (I/O, connection, driver, timeout, …).
    Backend,
    /// The store's tables do not exist: the schema was never applied. Call
    /// the store's `migrate()` at start (or apply its migration files by
    /// hand). The driver's error is the
    /// [`source`](std::error::Error::source).
    SchemaMissing,
}

/// A failure of the persistence layer. Opaque: a [`kind`](Self::kind) and,
/// for backend failures, the underlying cause through
/// [`source()`](std::error::Error::source).
///
/// Verification never turns a store error into "unknown key" or an accept:
/// it fails closed with [`VerifyError::Store`].
#[derive(Debug)]
pub struct StoreError {
    kind: StoreErrorKind,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl StoreError {
    /// An error of `kind` without a cause.
    #[must_use]
    pub fn new(kind: StoreErrorKind) -> Self {
        Self { kind, source: None }
    }

    /// A backend failure that keeps its cause. The cause must not carry
    /// secrets (records never hold any).
    pub fn backend(source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self {
            kind: StoreErrorKind::Backend,
            source: Some(source.into()),
        }
    }

    /// An error of `kind` that keeps its cause (e.g.
    /// [`StoreErrorKind::SchemaMissing`] with the driver's error). The
    /// cause must not carry secrets (records never hold any; a connection
    /// URL may hold a password: never put one in).
    pub fn with_source(
        kind: StoreErrorKind,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Self {
            kind,
            source: Some(source.into()),
        }
    }

    /// The kind of failure.
    #[must_use]
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            StoreErrorKind::Duplicate => "key store: duplicate key id",
            StoreErrorKind::Conflict => "key store: version conflict",
            StoreErrorKind::NotFound => "key store: no such key",
            StoreErrorKind::ActiveKeyExists => "key store: owner already has an active key",
            StoreErrorKind::Backend => "key store: backend failure (see the error's source)",
            StoreErrorKind::SchemaMissing => {
                "key store: the schema is missing: call the store's `migrate()` at start \
                 (or apply its migration files by hand)"
            }
        })
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// A configuration refused at construction time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A prefix is empty, longer than 32 bytes, non-ASCII or not of the form
    /// `[a-z][a-z0-9_]*` without `__` or a trailing `_`.
    #[error("key prefix must be 1-32 of a-z0-9_, start with a letter, no trailing or double '_'")]
    Prefix,
    /// Secret and publishable keys share a prefix.
    #[error("secret and publishable keys need different prefixes")]
    SamePrefix,
    /// The secret strength is outside 20..=26 bytes (160 to 208 bits).
    #[error("secret length {bytes} bytes is outside 20..=26 (160 to 208 bits)")]
    SecretLength {
        /// The length asked for.
        bytes: usize,
    },
    /// A pepper shorter than 32 bytes.
    #[error("a pepper must be at least 32 bytes")]
    PepperLength,
    /// A pepper given as text ([`Pepper::from_hex`](crate::Pepper::from_hex))
    /// is not an even number of hex digits. The text is not repeated.
    #[error(
        "a pepper in hex must be hex digits only, an even number of them (`openssl rand -hex 32`)"
    )]
    PepperHex,
    /// Two peppers share a version.
    #[error("pepper version {0} is configured twice")]
    DuplicatePepperVersion(u32),
    /// A policy value is out of range.
    #[error("policy: {0}")]
    Policy(&'static str),
    /// A verification cache setting is out of range.
    #[error("cache: {0}")]
    Cache(&'static str),
}

/// Which input of a management call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Field {
    /// The key's name.
    Name,
    /// The note.
    Note,
    /// The description.
    Description,
    /// The owner id.
    Owner,
    /// The actor.
    Actor,
    /// A scope.
    Scope,
    /// The expiry instant.
    ExpiresAt,
    /// The grace period of a roll.
    Grace,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Name => "name",
            Field::Note => "note",
            Field::Description => "description",
            Field::Owner => "owner",
            Field::Actor => "actor",
            Field::Scope => "scope",
            Field::ExpiresAt => "expires_at",
            Field::Grace => "grace",
        })
    }
}

/// A failure of a management operation or of the service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed; the cause is kept.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The operating system (or the given generator) could not provide
    /// random bytes.
    #[error("random number generator failed")]
    Randomness,
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An input was refused; nothing was changed.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Which input.
        field: Field,
        /// Why, in a few words (never the value itself).
        reason: &'static str,
    },
    /// The domain allow-list was refused; nothing was changed.
    #[error(transparent)]
    Domain(#[from] crate::origin::DomainError),
    /// The IP allow-list was refused; nothing was changed.
    #[error(transparent)]
    IpList(#[from] crate::ip::IpListError),
    /// No key with this id.
    #[error("no key with id {0}")]
    NotFound(KeyId),
    /// The key is revoked; revocation is permanent, nothing can change it.
    #[error("key {0} is revoked")]
    Revoked(KeyId),
    /// The operation does not apply to the key in its current state (e.g.
    /// rolling an expired or already-rolled key).
    #[error("key {id}: {reason}")]
    InvalidState {
        /// The key.
        id: KeyId,
        /// Why, in a few words.
        reason: &'static str,
    },
    /// The record changed since the caller read it (compare-and-swap on the
    /// version failed): re-read and retry.
    #[error("key {0} was changed concurrently; re-read it and retry")]
    Conflict(KeyId),
    /// [`activate_pending`](crate::KeyManager::activate_pending) on a key
    /// that is not pending: its secret was already shown (at its first
    /// activation, perhaps by a call whose answer was lost, or at its
    /// creation), and a secret is shown once. Deactivate the key and
    /// generate a new one (or roll an active key).
    #[error(
        "key {0} is not pending: its secret was already shown, and a secret is never \
         shown again; deactivate it and generate a new key"
    )]
    SecretAlreadyRevealed(KeyId),
    /// The one-active-key-per-owner rule is on and the owner already has a
    /// usable key: deactivate it first.
    #[error("the owner already has an active key; deactivate it first")]
    AnotherKeyActive,
    /// A stored record uses a pepper or sealing-key version this manager was
    /// not given.
    #[error("stored key material uses version {0}, which is not configured")]
    UnknownKeyVersion(u32),
    /// Sealing or unsealing a signing secret failed.
    #[error(transparent)]
    Sealing(#[from] crate::sealing::SealingError),
    /// Signing keys need sealing keys: configure a
    /// [`SealingKeyRing`](crate::SealingKeyRing) with
    /// [`KeyManagerBuilder::sealing_keys`](crate::KeyManagerBuilder::sealing_keys).
    #[error(
        "signing keys need sealing keys: build the manager with \
         `KeyManager::builder(store).sealing_keys(SealingKeyRing::new(..))`"
    )]
    NoSealingKeys,
    /// The replay cache could not check or record a nonce (fail closed).
    #[error(transparent)]
    ReplayCache(#[from] crate::replay::ReplayCacheError),
    /// A synchronous store returned a pending future (cannot happen with a
    /// correct [`KeyStore`](crate::KeyStore)).
    #[error("a synchronous store did not complete")]
    Incomplete,
}

impl Error {
    /// The HTTP status a management API should answer with: 400 for
    /// invalid input, 404 for an unknown key, 409 for a conflict (a
    /// concurrent change, a revoked key, an operation that does not apply
    /// to the key's state, another active key), 500 for failures of the
    /// service (store, randomness, configuration, sealing).
    #[must_use]
    pub fn http_status(&self) -> u16 {
        match self {
            Error::Invalid { .. } | Error::Domain(_) | Error::IpList(_) => 400,
            Error::NotFound(_) => 404,
            Error::Revoked(_)
            | Error::InvalidState { .. }
            | Error::Conflict(_)
            | Error::SecretAlreadyRevealed(_)
            | Error::AnotherKeyActive => 409,
            _ => 500,
        }
    }

    /// A stable `snake_case` code matching [`http_status`](Self::http_status)
    /// for response bodies: `invalid_request`, `not_found`, `conflict`,
    /// `key_revoked`, `invalid_state`, `secret_already_revealed`,
    /// `another_key_active` or `internal_error`. Never carries a value from the request.
    #[must_use]
    pub fn public_code(&self) -> &'static str {
        match self {
            Error::Invalid { .. } | Error::Domain(_) | Error::IpList(_) => "invalid_request",
            Error::NotFound(_) => "not_found",
            Error::Revoked(_) => "key_revoked",
            Error::InvalidState { .. } => "invalid_state",
            Error::Conflict(_) => "conflict",
            Error::SecretAlreadyRevealed(_) => "secret_already_revealed",
            Error::AnotherKeyActive => "another_key_active",
            _ => "internal_error",
        }
    }
}

/// The outcome of a failed verification: the key was refused, or the service
/// could not decide (fail closed: answer 500/503, not 401).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The key is refused: answer [`Rejection::http_status`].
    #[error("rejected: {0}")]
    Rejected(#[from] Rejection),
    /// The store failed: the request must not be served.
    #[error(transparent)]
    Store(StoreError),
    /// Another service failure (missing pepper or sealing key, replay cache
    /// full, …): the request must not be served.
    #[error(transparent)]
    Failed(Error),
}

impl VerifyError {
    /// The rejection, if the key was refused (as opposed to a failure).
    #[must_use]
    pub fn rejection(&self) -> Option<Rejection> {
        match self {
            VerifyError::Rejected(r) => Some(*r),
            _ => None,
        }
    }

    /// The HTTP status to answer: the rejection's, or 500 for failures.
    #[must_use]
    pub fn http_status(&self) -> u16 {
        match self {
            VerifyError::Rejected(r) => r.http_status(),
            _ => 500,
        }
    }
}

impl From<StoreError> for VerifyError {
    fn from(e: StoreError) -> Self {
        VerifyError::Store(e)
    }
}

impl From<Error> for VerifyError {
    fn from(e: Error) -> Self {
        match e {
            Error::Store(s) => VerifyError::Store(s),
            other => VerifyError::Failed(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_rejections_are_listed_once_with_distinct_names() {
        let mut names: Vec<&str> = Rejection::ALL.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Rejection::ALL.len());
        // Exhaustive match: a new variant fails to compile here until it is
        // added to `ALL`.
        for r in Rejection::ALL {
            match r {
                Rejection::Malformed
                | Rejection::UnknownKey
                | Rejection::Revoked
                | Rejection::Inactive
                | Rejection::Expired
                | Rejection::GraceEnded
                | Rejection::NotYetValid
                | Rejection::WrongEnvironment
                | Rejection::WrongKind
                | Rejection::MissingScope
                | Rejection::OriginNotAllowed(_)
                | Rejection::IpNotAllowed
                | Rejection::SigningKeyAsBearer
                | Rejection::NotASigningKey
                | Rejection::BadSignature
                | Rejection::BodyTooLarge
                | Rejection::StaleRequest
                | Rejection::Replayed
                | Rejection::ReplayQuotaExceeded => {}
            }
        }
    }

    #[test]
    fn management_errors_map_to_http() {
        let id = KeyId::from_bytes([7; 16]);
        let cases: [(Error, u16, &str); 9] = [
            (
                Error::Invalid {
                    field: Field::Name,
                    reason: "must not be blank",
                },
                400,
                "invalid_request",
            ),
            (Error::NotFound(id), 404, "not_found"),
            (Error::Revoked(id), 409, "key_revoked"),
            (
                Error::InvalidState {
                    id,
                    reason: "an expired key cannot be rolled",
                },
                409,
                "invalid_state",
            ),
            (Error::Conflict(id), 409, "conflict"),
            (Error::AnotherKeyActive, 409, "another_key_active"),
            (
                Error::Store(StoreError::new(StoreErrorKind::Backend)),
                500,
                "internal_error",
            ),
            (Error::Randomness, 500, "internal_error"),
            (Error::NoSealingKeys, 500, "internal_error"),
        ];
        for (e, status, code) in cases {
            assert_eq!(e.http_status(), status, "{e:?}");
            assert_eq!(e.public_code(), code, "{e:?}");
        }
    }
}
