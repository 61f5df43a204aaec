//! The pure core: every decision as a function of its inputs. No I/O, no
//! clock reads, no global RNG — `now` and `rng` are arguments.
//!
//! [`KeyManager`](crate::KeyManager) drives it over a store; middleware that
//! brings its own store or runtime can call it directly (parse, look the
//! record up however it likes, then [`Engine::decide_bearer`]).

use crate::environment::{Environment, KeyKind};
use crate::error::{ConfigError, Error, Field, Rejection, VerifyError};
use crate::hash::{KeyHasher, Pepper, SecretHash};
use crate::ip::IpAllowList;
use crate::lent::{Held, RecordView, StoredRecord};
use crate::origin::DomainAllowList;
use crate::policy::Policy;
use crate::record::{self, KeyRecord, KeyStatus, OwnerId, Scopes};
use crate::request::{Decision, RequestContext};
use crate::sealing::SealingKeyRing;
use crate::secret::Token;
use crate::store::RollPlan;
use crate::token::{KeyFormat, KeyId, NewToken, PresentedKey};
use rand::TryCryptoRng;
use time::{Duration, UtcDateTime};

/// The name [`KeyManager::create_default`](crate::KeyManager::create_default)
/// gives an account's first key (Jahuty's "Default API Key").
pub const DEFAULT_KEY_NAME: &str = "Default API Key";

/// What to create: built with [`NewKey::secret`] or
/// [`NewKey::publishable`] and the setters; validated when planned.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub(crate) owner: OwnerId,
    pub(crate) kind: KeyKind,
    pub(crate) environment: Environment,
    pub(crate) name: String,
    pub(crate) note: Option<String>,
    pub(crate) description: Option<String>,
    /// As given: validated when the key is planned.
    pub(crate) scopes: Vec<String>,
    pub(crate) allowed_domains: DomainAllowList,
    pub(crate) allowed_ips: IpAllowList,
    pub(crate) expires_at: Option<UtcDateTime>,
    pub(crate) active: bool,
    pub(crate) signing: bool,
}

impl NewKey {
    /// A secret key for `owner`, live, active, no expiry, no restrictions.
    #[must_use]
    pub fn secret(owner: OwnerId, name: impl Into<String>) -> Self {
        Self::of_kind(owner, KeyKind::Secret, name)
    }

    /// A publishable key for `owner`, live, active, no expiry.
    #[must_use]
    pub fn publishable(owner: OwnerId, name: impl Into<String>) -> Self {
        Self::of_kind(owner, KeyKind::Publishable, name)
    }

    /// A key of `kind`.
    #[must_use]
    pub fn of_kind(owner: OwnerId, kind: KeyKind, name: impl Into<String>) -> Self {
        Self {
            owner,
            kind,
            environment: Environment::Live,
            name: name.into(),
            note: None,
            description: None,
            scopes: Vec::new(),
            allowed_domains: DomainAllowList::default(),
            allowed_ips: IpAllowList::default(),
            expires_at: None,
            active: true,
            signing: false,
        }
    }

    /// Test or live (default live).
    #[must_use]
    pub fn environment(mut self, environment: Environment) -> Self {
        self.environment = environment;
        self
    }

    /// A note, e.g. where the key is stored.
    #[must_use]
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    /// A description.
    #[must_use]
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Scopes (a restricted key): names, or a prebuilt [`Scopes`]. Each
    /// name is validated when the key is created (1–128 of `A-Za-z0-9`
    /// and `:._/-`; a bad one fails the call with [`Error::Invalid`] and
    /// [`Field::Scope`]); duplicates are merged.
    ///
    /// ```
    /// # use api_keys::{NewKey, OwnerId};
    /// # let owner = OwnerId::new("acct_1").unwrap();
    /// let from_config: Vec<String> = vec!["charges:read".into()];
    /// let spec = NewKey::secret(owner, "reporting").scopes(from_config);
    /// # let _ = spec.scopes(["charges:read", "refunds:read"]);
    /// ```
    #[must_use]
    pub fn scopes<I>(mut self, scopes: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Domains allowed in `Origin`/`Referer`.
    #[must_use]
    pub fn allowed_domains(mut self, domains: DomainAllowList) -> Self {
        self.allowed_domains = domains;
        self
    }

    /// Peer addresses allowed.
    #[must_use]
    pub fn allowed_ips(mut self, ips: IpAllowList) -> Self {
        self.allowed_ips = ips;
        self
    }

    /// An expiry instant (must be in the future).
    #[must_use]
    pub fn expires_at(mut self, at: UtcDateTime) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// Create the key inactive: "generate, then activate" (CoinsPaid).
    #[must_use]
    pub fn inactive(mut self) -> Self {
        self.active = false;
        self
    }

    /// Make it a signing key (HMAC request signing): its secret is sealed
    /// in the record under the manager's sealing keys, and it is refused as
    /// a bearer token.
    #[must_use]
    pub fn signing(mut self) -> Self {
        self.signing = true;
        self
    }
}

/// Changes to a key's settings; `None` fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct KeyUpdate {
    pub(crate) name: Option<String>,
    pub(crate) note: Option<Option<String>>,
    pub(crate) description: Option<Option<String>>,
    /// As given: validated when the update is planned.
    pub(crate) scopes: Option<Vec<String>>,
    pub(crate) allowed_domains: Option<DomainAllowList>,
    pub(crate) allowed_ips: Option<IpAllowList>,
    pub(crate) expires_at: Option<Option<UtcDateTime>>,
}

impl KeyUpdate {
    /// No changes yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
    /// Rename.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Set the note (as [`NewKey::note`]).
    #[must_use]
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(Some(note.into()));
        self
    }
    /// Remove the note.
    #[must_use]
    pub fn clear_note(mut self) -> Self {
        self.note = Some(None);
        self
    }
    /// Set the description (as [`NewKey::description`]).
    #[must_use]
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(Some(description.into()));
        self
    }
    /// Remove the description.
    #[must_use]
    pub fn clear_description(mut self) -> Self {
        self.description = Some(None);
        self
    }
    /// Replace the scopes (as [`NewKey::scopes`]: names or a prebuilt
    /// [`Scopes`], validated when the update is applied; an empty list
    /// removes every restriction from a secret key).
    #[must_use]
    pub fn scopes<I>(mut self, scopes: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }
    /// Replace the domain allow-list.
    #[must_use]
    pub fn allowed_domains(mut self, domains: DomainAllowList) -> Self {
        self.allowed_domains = Some(domains);
        self
    }
    /// Replace the IP allow-list.
    #[must_use]
    pub fn allowed_ips(mut self, ips: IpAllowList) -> Self {
        self.allowed_ips = Some(ips);
        self
    }
    /// Set the expiry (as [`NewKey::expires_at`]: must be in the future).
    /// The expiry of a key that has ended cannot be moved.
    #[must_use]
    pub fn expires_at(mut self, at: UtcDateTime) -> Self {
        self.expires_at = Some(Some(at));
        self
    }
    /// Remove the expiry: the key no longer expires. The expiry of a key
    /// that has ended cannot be removed.
    #[must_use]
    pub fn clear_expiry(mut self) -> Self {
        self.expires_at = Some(None);
        self
    }
}

/// Options of a roll, built like [`NewKey`]: `RollOptions::new()` (or
/// `default()`) keeps the policy's grace and the predecessor's expiry.
///
/// ```
/// use api_keys::RollOptions;
/// use api_keys::time::{Duration, UtcDateTime};
/// # let in_a_year = UtcDateTime::now() + Duration::days(365);
/// let options = RollOptions::new()
///     .grace(Duration::hours(1))              // the old key works one more hour
///     .successor_expires_at(in_a_year);       // the new key gets its own expiry
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RollOptions {
    pub(crate) grace: Option<Duration>,
    pub(crate) successor_expires_at: Option<Option<UtcDateTime>>,
}

impl RollOptions {
    /// The defaults: the policy's [`default_grace`](Policy::default_grace)
    /// (12 hours unless changed), and the successor inherits the
    /// predecessor's expiry instant.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A roll with this grace period: shorthand for
    /// `RollOptions::new().grace(grace)`.
    #[must_use]
    pub fn with_grace(grace: Duration) -> Self {
        Self::new().grace(grace)
    }

    /// How long the old key keeps working; zero = it stops now. A negative
    /// grace fails the roll ([`Error::Invalid`], [`Field::Grace`]).
    ///
    /// **Capped, by design**: a grace longer than the policy's
    /// [`max_grace`](Policy::max_grace) is cut to it (the roll does not
    /// fail), and the grace never outlives the old key's own expiry. The
    /// grace end actually applied is the predecessor's
    /// [`grace_ends_at`](crate::KeyRecord#structfield.grace_ends_at) in the returned
    /// [`RolledKey`](crate::RolledKey).
    #[must_use]
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = Some(grace);
        self
    }

    /// The successor expires at `at` (must be in the future) instead of
    /// inheriting the predecessor's expiry.
    #[must_use]
    pub fn successor_expires_at(mut self, at: UtcDateTime) -> Self {
        self.successor_expires_at = Some(Some(at));
        self
    }

    /// The successor never expires, whatever the predecessor's expiry.
    #[must_use]
    pub fn successor_without_expiry(mut self) -> Self {
        self.successor_expires_at = Some(None);
        self
    }
}

/// A status transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    Activate,
    Deactivate,
    Revoke,
}

/// The pure core: the key format, the policy, the hashing and sealing keys.
/// Cheap to share; holds no store and reads no clock.
#[derive(Debug)]
pub struct Engine {
    format: KeyFormat,
    policy: Policy,
    hasher: KeyHasher,
    sealing: Option<SealingKeyRing>,
}

impl Engine {
    /// Builds a core from validated parts.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the policy is out of range or peppers clash.
    pub fn new(
        format: KeyFormat,
        policy: Policy,
        pepper: Option<&Pepper>,
        previous_peppers: &[Pepper],
        sealing: Option<SealingKeyRing>,
    ) -> Result<Self, ConfigError> {
        policy.validate()?;
        Ok(Self {
            format,
            policy,
            hasher: KeyHasher::with_peppers(pepper, previous_peppers)?,
            sealing,
        })
    }

    /// The default core: default format and policy, no pepper, no sealing
    /// keys (valid by construction).
    pub(crate) fn defaults() -> Self {
        Self {
            format: KeyFormat::default(),
            policy: Policy::default(),
            hasher: KeyHasher::default(),
            sealing: None,
        }
    }

    /// The key format.
    #[must_use]
    pub fn format(&self) -> &KeyFormat {
        &self.format
    }

    /// The policy.
    #[must_use]
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The current pepper's version, if any.
    pub(crate) fn pepper_version(&self) -> Option<u32> {
        self.hasher.current_version()
    }

    pub(crate) fn sealing(&self) -> Option<&SealingKeyRing> {
        self.sealing.as_ref()
    }

    /// Offline checks on a presented bearer token: format, checksum, and the
    /// environment and kind the request (or the policy) requires. Nothing
    /// that fails here may reach a store.
    ///
    /// # Errors
    ///
    /// [`Rejection::Malformed`], [`Rejection::WrongEnvironment`],
    /// [`Rejection::WrongKind`].
    pub fn precheck(
        &self,
        token: &str,
        request: &RequestContext<'_>,
    ) -> Result<PresentedKey, Rejection> {
        let presented = self.format.parse(token)?;
        self.check_environment(presented.environment(), request)?;
        if request.kind.is_some_and(|k| k != presented.kind()) {
            return Err(Rejection::WrongKind);
        }
        Ok(presented)
    }

    fn check_environment(
        &self,
        environment: Environment,
        request: &RequestContext<'_>,
    ) -> Result<(), Rejection> {
        let wrong = |want: Option<Environment>| want.is_some_and(|w| w != environment);
        if wrong(self.policy.environment) || wrong(request.environment) {
            return Err(Rejection::WrongEnvironment);
        }
        Ok(())
    }

    /// The decision for a bearer token against the record the store
    /// returned for its id: record consistency, constant-time secret check,
    /// then [`check_request`](Self::check_request).
    ///
    /// # Errors
    ///
    /// [`VerifyError::Rejected`] when the key is refused;
    /// [`VerifyError::Failed`] with [`Error::UnknownKeyVersion`] when the
    /// record was hashed under a pepper this engine does not have (fail
    /// closed).
    pub fn decide_bearer(
        &self,
        presented: &PresentedKey,
        record: &KeyRecord,
        request: &RequestContext<'_>,
        now: UtcDateTime,
    ) -> Result<Decision, VerifyError> {
        self.decide_bearer_on(presented, record, request, now)
    }

    /// [`decide_bearer`](Self::decide_bearer) on the record as a store lent
    /// it ([`KeyStore::get_for_verify`](crate::KeyStore::get_for_verify)):
    /// with the [`MemoryKeyStore`](crate::MemoryKeyStore) no full record is
    /// built and nothing is allocated.
    ///
    /// # Errors
    ///
    /// As [`decide_bearer`](Self::decide_bearer).
    pub fn decide_bearer_stored(
        &self,
        presented: &PresentedKey,
        record: &StoredRecord,
        request: &RequestContext<'_>,
        now: UtcDateTime,
    ) -> Result<Decision, VerifyError> {
        match &record.0 {
            Held::Full(r) => self.decide_bearer_on(presented, &**r, request, now),
            Held::Compact(c) => self.decide_bearer_on(presented, &**c, request, now),
        }
    }

    /// [`decide_bearer`](Self::decide_bearer) on any form of the record.
    pub(crate) fn decide_bearer_on<V: RecordView + ?Sized>(
        &self,
        presented: &PresentedKey,
        record: &V,
        request: &RequestContext<'_>,
        now: UtcDateTime,
    ) -> Result<Decision, VerifyError> {
        self.check_possession(presented, record)?;
        if record.is_signing_key() {
            return Err(Rejection::SigningKeyAsBearer.into());
        }
        Ok(self.request_checks(record, request, now)?)
    }

    /// Whether `record` is the presented key's: same id, environment and
    /// kind, and the secret's hash matches (constant time). A record that is
    /// not (a stale, mismatched or tampered store answer) is refused like an
    /// unknown key.
    pub(crate) fn check_possession<V: RecordView + ?Sized>(
        &self,
        presented: &PresentedKey,
        record: &V,
    ) -> Result<(), VerifyError> {
        if record.id() != presented.id()
            || record.environment() != presented.environment()
            || record.kind() != presented.kind()
        {
            return Err(Rejection::UnknownKey.into());
        }
        // A pending key has no secret yet: nothing presented is its.
        let Some(stored) = record.secret_hash() else {
            return Err(Rejection::UnknownKey.into());
        };
        // The presented message binds the presented id, environment and
        // kind, just checked equal to the record's.
        let computed = self
            .hasher
            .hash_like(stored, presented.message())
            .ok_or_else(|| Error::UnknownKeyVersion(stored.pepper_version.unwrap_or_default()))?;
        if computed.ct_eq(stored) {
            Ok(())
        } else {
            Err(Rejection::UnknownKey.into())
        }
    }

    /// Status, time, environment, kind, scopes, IP, origin — in that order
    /// — for a key whose possession is already proven.
    ///
    /// # Errors
    ///
    /// The first [`Rejection`] that applies. Revocation dominates
    /// everything, grace included.
    pub fn check_request(
        &self,
        record: &KeyRecord,
        request: &RequestContext<'_>,
        now: UtcDateTime,
    ) -> Result<Decision, Rejection> {
        self.request_checks(record, request, now)
    }

    fn request_checks<V: RecordView + ?Sized>(
        &self,
        record: &V,
        request: &RequestContext<'_>,
        now: UtcDateTime,
    ) -> Result<Decision, Rejection> {
        Self::validity(record, now)?;
        self.policy_checks(record, request, now)
    }

    /// [`check_request`](Self::check_request) on the record as a store lent
    /// it: for a key the host already authenticated (a token derived from
    /// it), with no secret to check.
    pub(crate) fn check_request_stored(
        &self,
        record: &StoredRecord,
        request: &RequestContext<'_>,
        now: UtcDateTime,
    ) -> Result<Decision, Rejection> {
        self.request_checks(record.0.view(), request, now)
    }

    /// Status and time only: revoked, inactive, not yet valid, expired,
    /// grace ended (all 401).
    ///
    /// # Errors
    ///
    /// The first [`Rejection`] that applies.
    pub fn check_validity(record: &KeyRecord, now: UtcDateTime) -> Result<(), Rejection> {
        Self::validity(record, now)
    }

    fn validity<V: RecordView + ?Sized>(record: &V, now: UtcDateTime) -> Result<(), Rejection> {
        match record.status() {
            KeyStatus::Revoked => return Err(Rejection::Revoked),
            // A pending key is refused before this (it has no secret to
            // possess); a record checked directly is refused as not active.
            KeyStatus::Inactive | KeyStatus::Pending => return Err(Rejection::Inactive),
            KeyStatus::Active => {}
        }
        if now < record.created_at() {
            return Err(Rejection::NotYetValid);
        }
        if record.expires_at().is_some_and(|end| now >= end) {
            return Err(Rejection::Expired);
        }
        if record.grace_ends_at().is_some_and(|end| now >= end) {
            return Err(Rejection::GraceEnded);
        }
        Ok(())
    }

    /// The request policy of a valid key: environment, kind, scopes, IP,
    /// origin (all 403), then whether `last_used_at` is due.
    ///
    /// # Errors
    ///
    /// The first [`Rejection`] that applies.
    pub fn check_policy(
        &self,
        record: &KeyRecord,
        request: &RequestContext<'_>,
        now: UtcDateTime,
    ) -> Result<Decision, Rejection> {
        self.policy_checks(record, request, now)
    }

    fn policy_checks<V: RecordView + ?Sized>(
        &self,
        record: &V,
        request: &RequestContext<'_>,
        now: UtcDateTime,
    ) -> Result<Decision, Rejection> {
        self.check_environment(record.environment(), request)?;
        if request.kind.is_some_and(|k| k != record.kind()) {
            return Err(Rejection::WrongKind);
        }
        for scope in request.scopes.iter() {
            if !self.grants_to(record.kind(), record.scopes(), scope) {
                return Err(Rejection::MissingScope);
            }
        }
        let ips = record.allowed_ips();
        if !ips.is_any() {
            match request.peer_ip {
                Some(ip) if ips.allows(ip) => {}
                _ => return Err(Rejection::IpNotAllowed),
            }
        }
        record
            .allowed_domains()
            .check(
                request.origin,
                request.referer,
                self.policy.allow_http_origins,
            )
            .map_err(Rejection::OriginNotAllowed)?;
        // Whole seconds are precise enough for a write-rate limit, and much
        // cheaper than date arithmetic on the hot path.
        let touch = match record.last_used_at() {
            None => true,
            Some(last) => crate::clock::elapsed_seconds(last, now)
                .is_some_and(|elapsed| elapsed >= self.policy.touch_interval.whole_seconds()),
        };
        Ok(Decision {
            in_grace: record.successor().is_some(),
            touch,
        })
    }

    /// Whether `record` grants `scope` (see [`Scopes`] for empty sets).
    ///
    /// A publishable key never grants a scope outside the policy's
    /// [`publishable_scopes`](Policy::publishable_scopes) in force now, even
    /// one it was given when the policy was wider: narrowing the policy
    /// narrows every existing publishable key at once.
    #[must_use]
    pub fn grants(&self, record: &KeyRecord, scope: &str) -> bool {
        self.grants_to(record.kind, &record.scopes, scope)
    }

    /// [`grants`](Self::grants) for a key of `kind` with `scopes`.
    fn grants_to(&self, kind: KeyKind, scopes: &Scopes, scope: &str) -> bool {
        let own = scopes.is_empty() || scopes.contains(scope);
        match kind {
            KeyKind::Secret => own,
            KeyKind::Publishable => own && self.policy.publishable_scopes.contains(scope),
        }
    }

    fn validate_scopes(&self, kind: KeyKind, scopes: &Scopes) -> Result<(), Error> {
        if kind == KeyKind::Publishable && !scopes.is_subset(&self.policy.publishable_scopes) {
            return Err(Error::Invalid {
                field: Field::Scope,
                reason: "publishable keys may only carry the policy's publishable scopes",
            });
        }
        Ok(())
    }

    fn validate_expiry(expires_at: Option<UtcDateTime>, now: UtcDateTime) -> Result<(), Error> {
        if expires_at.is_some_and(|t| t <= now) {
            return Err(Error::Invalid {
                field: Field::ExpiresAt,
                reason: "must be in the future",
            });
        }
        Ok(())
    }

    fn validate_texts(
        name: &str,
        note: Option<&str>,
        description: Option<&str>,
    ) -> Result<(), Error> {
        record::validate_name(name)?;
        if let Some(n) = note {
            record::validate_note(n, Field::Note)?;
        }
        if let Some(d) = description {
            record::validate_note(d, Field::Description)?;
        }
        Ok(())
    }

    /// Plans a new key: validates the request, draws the secret, hashes (and
    /// for signing keys seals) it. Returns the record to insert and the
    /// token, which the caller must hand out only once the insert committed.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for bad input (nothing is drawn),
    /// [`Error::NoSealingKeys`], [`Error::Randomness`], [`Error::Sealing`].
    pub fn plan_create<R: TryCryptoRng + ?Sized>(
        &self,
        spec: &NewKey,
        now: UtcDateTime,
        rng: &mut R,
    ) -> Result<(KeyRecord, Token), Error> {
        let scopes = self.validate_spec(spec, now)?;
        let fresh = self
            .format
            .generate_with_rng(spec.kind, spec.environment, rng)?;
        let record = self.new_record(spec, scopes, &fresh, now, None);
        let record = self.seal_if(spec.signing, record, &fresh.token, rng)?;
        Ok((record, fresh.token))
    }

    /// Checks a new key's settings; returns its scopes.
    fn validate_spec(&self, spec: &NewKey, now: UtcDateTime) -> Result<Scopes, Error> {
        Self::validate_texts(
            &spec.name,
            spec.note.as_deref(),
            spec.description.as_deref(),
        )?;
        let scopes = Scopes::new(spec.scopes.iter().map(String::as_str))?;
        self.validate_scopes(spec.kind, &scopes)?;
        Self::validate_expiry(spec.expires_at, now)?;
        if spec.signing && self.sealing.is_none() {
            return Err(Error::NoSealingKeys);
        }
        Ok(scopes)
    }

    /// The record of a freshly generated key with `spec`'s settings.
    fn new_record(
        &self,
        spec: &NewKey,
        scopes: Scopes,
        fresh: &NewToken,
        now: UtcDateTime,
        predecessor: Option<KeyId>,
    ) -> KeyRecord {
        let status = if spec.active {
            KeyStatus::Active
        } else {
            KeyStatus::Inactive
        };
        KeyRecord {
            predecessor,
            secret_hash: Some(self.hash_of(fresh)),
            redacted: fresh.token.redacted(),
            ..Self::settings_record(spec, scopes, fresh.id, status, now)
        }
    }

    /// A version-1 record of `spec`'s settings with no secret, never used
    /// and in no roll: what a new key starts from.
    fn settings_record(
        spec: &NewKey,
        scopes: Scopes,
        id: KeyId,
        status: KeyStatus,
        now: UtcDateTime,
    ) -> KeyRecord {
        KeyRecord {
            id,
            owner: spec.owner.clone(),
            kind: spec.kind,
            environment: spec.environment,
            name: spec.name.clone(),
            note: spec.note.clone(),
            description: spec.description.clone(),
            scopes,
            allowed_domains: spec.allowed_domains.clone(),
            allowed_ips: spec.allowed_ips.clone(),
            status,
            created_at: now,
            expires_at: spec.expires_at,
            last_used_at: None,
            use_count: 0,
            revoked_at: None,
            predecessor: None,
            successor: None,
            rolled_at: None,
            grace_ends_at: None,
            version: 1,
            secret_hash: None,
            signing: spec.signing,
            sealed_secret: None,
            redacted: String::new(),
        }
    }

    fn hash_of(&self, fresh: &NewToken) -> SecretHash {
        self.hasher.hash_new(
            &fresh.id,
            fresh.environment,
            fresh.kind,
            fresh.secret_text(&self.format),
        )
    }

    /// Plans a **pending** key (CoinsPaid's "generate"): `spec`'s settings
    /// and a fresh id, but no secret; it cannot verify until its first
    /// activation ([`plan_first_activation`](Self::plan_first_activation))
    /// mints one. `spec`'s active flag is ignored.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for bad input (nothing is drawn),
    /// [`Error::NoSealingKeys`] for a signing key without sealing keys,
    /// [`Error::Randomness`].
    pub fn plan_pending<R: TryCryptoRng + ?Sized>(
        &self,
        spec: &NewKey,
        now: UtcDateTime,
        rng: &mut R,
    ) -> Result<KeyRecord, Error> {
        let scopes = self.validate_spec(spec, now)?;
        let id = KeyFormat::generate_id(rng)?;
        Ok(KeyRecord {
            redacted: self.format.redacted_head(spec.kind, spec.environment),
            ..Self::settings_record(spec, scopes, id, KeyStatus::Pending, now)
        })
    }

    /// Plans a pending key's first activation: mints its secret (sealed
    /// for a signing key), makes it active, and applies `allowed_ips` when
    /// given, as one record to write with a compare-and-swap. The token
    /// must be handed out only once that write committed.
    ///
    /// # Errors
    ///
    /// [`Error::Revoked`]; [`Error::SecretAlreadyRevealed`] when the key is
    /// not pending (its first activation already happened);
    /// [`Error::InvalidState`] when it has expired; [`Error::NoSealingKeys`],
    /// [`Error::Randomness`], [`Error::Sealing`].
    pub fn plan_first_activation<R: TryCryptoRng + ?Sized>(
        &self,
        current: &KeyRecord,
        allowed_ips: Option<&IpAllowList>,
        now: UtcDateTime,
        rng: &mut R,
    ) -> Result<(KeyRecord, Token), Error> {
        match current.status {
            KeyStatus::Pending => {}
            KeyStatus::Revoked => return Err(Error::Revoked(current.id)),
            KeyStatus::Active | KeyStatus::Inactive => {
                return Err(Error::SecretAlreadyRevealed(current.id));
            }
        }
        if current.effective_end().is_some_and(|end| now >= end) {
            return Err(Error::InvalidState {
                id: current.id,
                reason: "an expired key cannot be activated",
            });
        }
        if current.signing && self.sealing.is_none() {
            return Err(Error::NoSealingKeys);
        }
        let fresh =
            self.format
                .generate_for_id(current.id, current.kind, current.environment, rng)?;
        let mut next = current.clone();
        next.status = KeyStatus::Active;
        next.secret_hash = Some(self.hash_of(&fresh));
        next.redacted = fresh.token.redacted();
        if let Some(ips) = allowed_ips {
            next.allowed_ips = ips.clone();
        }
        next.version = bump(current)?;
        let next = self.seal_if(current.signing, next, &fresh.token, rng)?;
        Ok((next, fresh.token))
    }

    fn seal_if<R: TryCryptoRng + ?Sized>(
        &self,
        signing: bool,
        mut record: KeyRecord,
        token: &Token,
        rng: &mut R,
    ) -> Result<KeyRecord, Error> {
        if signing {
            let ring = self.sealing.as_ref().ok_or(Error::NoSealingKeys)?;
            record.sealed_secret = Some(ring.seal_with_rng(
                record.id.as_bytes(),
                token.expose_secret().as_bytes(),
                rng,
            )?);
        }
        Ok(record)
    }

    /// Plans a status change. `Ok(None)` means the key is already in the
    /// target state (the operation is idempotent).
    ///
    /// # Errors
    ///
    /// [`Error::Revoked`] for any change of a revoked key but revoke itself;
    /// [`Error::InvalidState`] when activating an expired or rolled key.
    pub(crate) fn plan_transition(
        &self,
        current: &KeyRecord,
        transition: Transition,
        now: UtcDateTime,
    ) -> Result<Option<KeyRecord>, Error> {
        let target = match transition {
            Transition::Activate => KeyStatus::Active,
            Transition::Deactivate => KeyStatus::Inactive,
            Transition::Revoke => KeyStatus::Revoked,
        };
        if current.status == target {
            return Ok(None);
        }
        if current.status == KeyStatus::Revoked {
            return Err(Error::Revoked(current.id));
        }
        if current.status == KeyStatus::Pending && transition != Transition::Revoke {
            return Err(Error::InvalidState {
                id: current.id,
                reason: "a pending key has no secret yet: its first activation is \
                         `activate_pending`, which reveals the secret (or revoke it)",
            });
        }
        if transition == Transition::Activate {
            if current.successor.is_some() {
                return Err(Error::InvalidState {
                    id: current.id,
                    reason: "a rolled key cannot be activated again",
                });
            }
            if current.effective_end().is_some_and(|end| now >= end) {
                return Err(Error::InvalidState {
                    id: current.id,
                    reason: "an expired key cannot be activated",
                });
            }
        }
        let mut next = current.clone();
        next.status = target;
        if target == KeyStatus::Revoked {
            next.revoked_at = Some(now);
        }
        next.version = bump(current)?;
        Ok(Some(next))
    }

    /// Plans a settings change. The expiry of a key that has ended (expired,
    /// or rolled and past its grace) cannot be moved: that would revive it.
    ///
    /// # Errors
    ///
    /// [`Error::Revoked`], [`Error::Invalid`], [`Error::InvalidState`] for
    /// an expiry change on a key that has ended.
    pub(crate) fn plan_update(
        &self,
        current: &KeyRecord,
        update: &KeyUpdate,
        now: UtcDateTime,
    ) -> Result<KeyRecord, Error> {
        if current.status == KeyStatus::Revoked {
            return Err(Error::Revoked(current.id));
        }
        let mut next = current.clone();
        if let Some(n) = &update.name {
            next.name.clone_from(n);
        }
        if let Some(n) = &update.note {
            next.note.clone_from(n);
        }
        if let Some(d) = &update.description {
            next.description.clone_from(d);
        }
        Self::validate_texts(
            &next.name,
            next.note.as_deref(),
            next.description.as_deref(),
        )?;
        if let Some(s) = &update.scopes {
            let scopes = Scopes::new(s.iter().map(String::as_str))?;
            self.validate_scopes(next.kind, &scopes)?;
            next.scopes = scopes;
        }
        if let Some(d) = &update.allowed_domains {
            next.allowed_domains = d.clone();
        }
        if let Some(i) = &update.allowed_ips {
            next.allowed_ips = i.clone();
        }
        if let Some(e) = update.expires_at
            && e != current.expires_at
        {
            // Moving the expiry of a key that has ended would revive it:
            // past the one-active-key rule, and past "an expired key cannot
            // be activated".
            if current.effective_end().is_some_and(|end| now >= end) {
                return Err(Error::InvalidState {
                    id: current.id,
                    reason: "the key has ended: its expiry cannot be changed; create a new key",
                });
            }
            Self::validate_expiry(e, now)?;
            next.expires_at = e;
            // A rolled key's grace end never outlives its expiry.
            next.grace_ends_at = clamp_grace(next.grace_ends_at, e);
        }
        next.version = bump(current)?;
        Ok(next)
    }

    /// Plans a roll: a successor with a new secret and the predecessor's
    /// settings, and the predecessor cut to `min(its end, now + grace)`.
    /// The token must be handed out only after the store applied the plan.
    ///
    /// # Errors
    ///
    /// [`Error::Revoked`]; [`Error::InvalidState`] for an inactive, expired
    /// or already-rolled key, or a publishable key carrying a scope the
    /// policy no longer allows; [`Error::Invalid`] for a negative grace or a
    /// successor expiry in the past; [`Error::Randomness`];
    /// [`Error::Sealing`].
    pub fn plan_roll<R: TryCryptoRng + ?Sized>(
        &self,
        current: &KeyRecord,
        options: RollOptions,
        now: UtcDateTime,
        rng: &mut R,
    ) -> Result<(RollPlan, Token), Error> {
        let state = |reason| Error::InvalidState {
            id: current.id,
            reason,
        };
        match current.status {
            KeyStatus::Revoked => return Err(Error::Revoked(current.id)),
            KeyStatus::Inactive | KeyStatus::Pending => {
                return Err(state("only an active key can be rolled"));
            }
            KeyStatus::Active => {}
        }
        if current.successor.is_some() {
            return Err(state("the key was already rolled"));
        }
        if current.effective_end().is_some_and(|end| now >= end) {
            return Err(state("an expired key cannot be rolled"));
        }
        // The successor is written now, so its scopes must be valid under
        // the policy in force now (a narrowed `publishable_scopes`).
        if self.validate_scopes(current.kind, &current.scopes).is_err() {
            return Err(state(
                "its scopes are no longer allowed for publishable keys: update them first",
            ));
        }
        let grace = options.grace.unwrap_or(self.policy.default_grace);
        if grace.is_negative() {
            return Err(Error::Invalid {
                field: Field::Grace,
                reason: "must not be negative",
            });
        }
        // Capped by design (documented on `RollOptions::grace`): the
        // policy's `max_grace` bounds how long a replaced secret lives, and
        // the effective end is the predecessor's `grace_ends_at`.
        let grace = grace.min(self.policy.max_grace);
        let grace_end = now.checked_add(grace).ok_or(Error::Invalid {
            field: Field::Grace,
            reason: "out of range",
        })?;
        let successor_expiry = options.successor_expires_at.unwrap_or(current.expires_at);
        Self::validate_expiry(successor_expiry, now)?;

        let fresh = self
            .format
            .generate_with_rng(current.kind, current.environment, rng)?;
        // The successor carries the predecessor's settings.
        let settings = NewKey {
            owner: current.owner.clone(),
            kind: current.kind,
            environment: current.environment,
            name: current.name.clone(),
            note: current.note.clone(),
            description: current.description.clone(),
            scopes: Vec::new(),
            allowed_domains: current.allowed_domains.clone(),
            allowed_ips: current.allowed_ips.clone(),
            expires_at: successor_expiry,
            active: true,
            signing: current.is_signing_key(),
        };
        let successor = self.new_record(
            &settings,
            current.scopes.clone(),
            &fresh,
            now,
            Some(current.id),
        );
        let successor = self.seal_if(current.is_signing_key(), successor, &fresh.token, rng)?;
        let mut predecessor = current.clone();
        predecessor.successor = Some(successor.id);
        predecessor.rolled_at = Some(now);
        // Never extends: the grace window ends at the key's own expiry at
        // the latest, so the field tells the truth on its own.
        predecessor.grace_ends_at = clamp_grace(Some(grace_end), current.expires_at);
        predecessor.version = bump(current)?;
        Ok((
            RollPlan {
                predecessor,
                expected_version: current.version,
                successor,
            },
            fresh.token,
        ))
    }
}

/// A grace end no later than the key's expiry.
fn clamp_grace(
    grace_ends_at: Option<UtcDateTime>,
    expires_at: Option<UtcDateTime>,
) -> Option<UtcDateTime> {
    match (grace_ends_at, expires_at) {
        (Some(grace), Some(end)) => Some(grace.min(end)),
        (grace, _) => grace,
    }
}

fn bump(record: &KeyRecord) -> Result<u64, Error> {
    record.version.checked_add(1).ok_or(Error::InvalidState {
        id: record.id,
        reason: "version counter exhausted",
    })
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed expectation should panic"
    )]
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use time::macros::utc_datetime;

    const T0: UtcDateTime = utc_datetime!(2026-07-01 10:00);

    /// `Engine::check_validity`, the public status-and-time check, on its
    /// own: each refusal at its boundary instant, and revocation first.
    #[test]
    fn check_validity_refuses_at_each_boundary() {
        let engine = Engine::defaults();
        let spec = NewKey::secret(OwnerId::new("acct_1").unwrap(), "k");
        let (rec, _) = engine
            .plan_create(&spec, T0, &mut StdRng::seed_from_u64(1))
            .unwrap();
        let check = |r: &KeyRecord, at: UtcDateTime| Engine::check_validity(r, at);
        assert_eq!(check(&rec, T0), Ok(()));
        assert_eq!(
            check(&rec, T0 - Duration::nanoseconds(1)),
            Err(Rejection::NotYetValid)
        );

        let mut expiring = rec.clone();
        expiring.expires_at = Some(T0 + Duration::hours(1));
        expiring.grace_ends_at = Some(T0 + Duration::hours(2));
        let just_before = T0 + Duration::hours(1) - Duration::nanoseconds(1);
        assert_eq!(check(&expiring, just_before), Ok(()));
        assert_eq!(
            check(&expiring, T0 + Duration::hours(1)),
            Err(Rejection::Expired)
        );

        let mut rolled = rec.clone();
        rolled.grace_ends_at = Some(T0 + Duration::hours(1));
        assert_eq!(check(&rolled, just_before), Ok(()));
        assert_eq!(
            check(&rolled, T0 + Duration::hours(1)),
            Err(Rejection::GraceEnded)
        );

        let mut inactive = rec.clone();
        inactive.status = KeyStatus::Inactive;
        assert_eq!(check(&inactive, T0), Err(Rejection::Inactive));
        let mut revoked = expiring;
        revoked.status = KeyStatus::Revoked;
        assert_eq!(
            check(&revoked, T0 + Duration::hours(3)),
            Err(Rejection::Revoked),
            "revocation dominates"
        );
    }
}
