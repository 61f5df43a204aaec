//! A request's credential and facts, owned, and their verification against
//! a route's requirements.

use super::credential::{BasicForms, Credential, SignedCredential};
use super::facts::RequestFacts;
use super::headers::Headers;
use super::refusal::Refusal;
use crate::environment::{Environment, KeyKind};
use crate::ip::TrustedProxies;
use crate::manager::KeyManager;
use crate::record::Scopes;
use crate::request::VerifiedKey;
use crate::store::{AsyncKeyStore, KeyStore};
use crate::token::{KeyFormat, KeyId};
use std::net::IpAddr;

/// What a route requires of a key, besides being valid. The default
/// requires nothing. Owned (scopes loaded from configuration need no
/// `'static` borrow): build it once per route and keep it.
///
/// ```
/// use api_keys::http::Requirements;
/// use api_keys::{Environment, KeyKind, Scopes};
/// let withdraw = Requirements::new()
///     .require_scopes(Scopes::new(["withdrawals:write"])?)
///     .require_environment(Environment::Live)
///     .require_kind(KeyKind::Secret)
///     .require_signed();
/// # let _ = withdraw;
/// # Ok::<(), api_keys::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Requirements {
    /// Scopes the key must all grant (403 otherwise). Default: none.
    pub scopes: Scopes,
    /// The environment the key must be of (403 otherwise). Default: any.
    pub environment: Option<Environment>,
    /// The kind the key must be of, e.g. secret keys only (403 otherwise).
    /// Default: any.
    pub kind: Option<KeyKind>,
    /// Only signed requests are accepted (a bearer token gets 401,
    /// [`Refusal::SignatureRequired`]). Default: `false`.
    pub signed: bool,
    /// The `Authorization: Basic` forms accepted (see
    /// [`BasicForms`]). Default: none (a Basic credential gets 401
    /// [`Refusal::UnsupportedScheme`]).
    pub basic: BasicForms,
}

impl Requirements {
    /// Requires nothing.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires all of `scopes` (the same spelling as
    /// [`RequestContext::require_scopes`](crate::RequestContext::require_scopes)).
    #[must_use]
    pub fn require_scopes(mut self, scopes: Scopes) -> Self {
        self.scopes = scopes;
        self
    }

    /// Requires an environment.
    #[must_use]
    pub fn require_environment(mut self, environment: Environment) -> Self {
        self.environment = Some(environment);
        self
    }

    /// Requires a kind.
    #[must_use]
    pub fn require_kind(mut self, kind: KeyKind) -> Self {
        self.kind = Some(kind);
        self
    }

    /// Requires a signed request.
    #[must_use]
    pub fn require_signed(mut self) -> Self {
        self.signed = true;
        self
    }

    /// Also accepts these `Authorization: Basic` forms (RFC 7617): the
    /// token as user-id with an empty password (`curl -u sk_live_…:`),
    /// and/or the key id as user-id with the token as password.
    #[must_use]
    pub fn allow_basic(mut self, forms: BasicForms) -> Self {
        self.basic = forms;
        self
    }
}

/// Everything a request presents for verification, owned: its one
/// [`Credential`] and its [`RequestFacts`]. `Send + Sync + 'static`, so an
/// adapter can move it into a future, a task or a thread. `Debug` prints no
/// value.
#[derive(Debug)]
#[non_exhaustive]
pub struct Presented {
    /// The credential.
    pub credential: Credential,
    /// Origin, Referer and the client address.
    pub facts: RequestFacts,
}

impl Presented {
    /// Reads the credential ([`Credential::from_headers`]) and the facts
    /// ([`RequestFacts::from_headers`]) of a request. `method` and `target`
    /// (the request target exactly as the client sent it, path and query —
    /// behind a router that strips a prefix, the original one) matter only
    /// for a signed request in the replay-protected mode; `peer` is the TCP
    /// peer's address.
    ///
    /// # Errors
    ///
    /// The credential's refusals (401/400), then
    /// [`Refusal::Forwarding`] (400).
    pub fn from_headers<H: Headers + ?Sized>(
        headers: &H,
        method: &str,
        target: &str,
        peer: Option<IpAddr>,
        proxies: &TrustedProxies,
    ) -> Result<Self, Refusal> {
        let credential = Credential::from_headers(headers, method, target)?;
        let facts = RequestFacts::from_headers(headers, peer, proxies)?;
        Ok(Self { credential, facts })
    }

    /// The public key id the credential names, when it is well formed (see
    /// [`Credential::key_id`]): for refusal logs. Pass the manager's
    /// format (`keys.engine().format()`).
    #[must_use]
    pub fn key_id(&self, format: &KeyFormat) -> Option<KeyId> {
        self.credential.key_id(format)
    }

    /// Whether the body is needed: a signed request. Buffer it with a
    /// [`BodyBuffer`](super::BodyBuffer) before verifying (not needed, and
    /// better not read, when the route requires a signature and the
    /// credential is a bearer token: [`verify`](Self::verify) refuses it
    /// without the body).
    #[must_use]
    pub fn needs_body(&self) -> bool {
        matches!(self.credential, Credential::Signed(_))
    }

    /// Verifies against a synchronous store.
    ///
    /// `body` is the exact raw body for a signed request
    /// ([`needs_body`](Self::needs_body)), ignored otherwise.
    ///
    /// # Errors
    ///
    /// [`Refusal::SignatureRequired`] for a bearer token on a signed-only
    /// route; [`Refusal::UnsupportedScheme`] or
    /// [`Refusal::BasicIdMismatch`] for a Basic credential the route does
    /// not accept; [`Refusal::Rejected`] when the key is refused;
    /// [`Refusal::Failed`] when the service cannot decide.
    pub fn verify<S: KeyStore>(
        &self,
        keys: &KeyManager<S>,
        requirements: &Requirements,
        body: &[u8],
    ) -> Result<VerifiedKey, Refusal> {
        let context = self.facts.context(requirements);
        match self.checked(keys, requirements)? {
            Checked::Bearer(token) => Ok(keys.verify(token, &context)?),
            Checked::Signed(signed) => Ok(keys.verify_signed(&signed.request(body), &context)?),
        }
    }

    /// Verifies against an asynchronous store: as [`verify`](Self::verify).
    ///
    /// # Errors
    ///
    /// As [`verify`](Self::verify).
    pub async fn verify_async<S: AsyncKeyStore>(
        &self,
        keys: &KeyManager<S>,
        requirements: &Requirements,
        body: &[u8],
    ) -> Result<VerifiedKey, Refusal> {
        let context = self.facts.context(requirements);
        match self.checked(keys, requirements)? {
            Checked::Bearer(token) => Ok(keys.verify_async(token, &context).await?),
            Checked::Signed(signed) => Ok(keys
                .verify_signed_async(&signed.request(body), &context)
                .await?),
        }
    }

    /// What to verify: the token of a bearer or Basic credential the
    /// route accepts, or the signed request.
    fn checked<S>(
        &self,
        keys: &KeyManager<S>,
        requirements: &Requirements,
    ) -> Result<Checked<'_>, Refusal> {
        Ok(match &self.credential {
            Credential::Signed(signed) => Checked::Signed(signed),
            _ if requirements.signed => return Err(Refusal::SignatureRequired),
            Credential::Basic(basic) => {
                Checked::Bearer(basic.accepted(keys.engine().format(), requirements.basic)?)
            }
            Credential::Bearer { token, .. } => Checked::Bearer(token.expose_secret()),
        })
    }
}

/// A credential the route accepts, ready to verify.
enum Checked<'a> {
    Bearer(&'a str),
    Signed(&'a SignedCredential),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
    use super::*;
    use crate::error::Rejection;
    use crate::record::{Actor, OwnerId, Scopes};
    use crate::store::MemoryKeyStore;
    use crate::{IpAllowList, NewKey};

    fn assert_send_static<T: Send + Sync + 'static>() {}

    #[test]
    fn presented_moves_between_threads() {
        assert_send_static::<Presented>();
        assert_send_static::<Refusal>();
    }

    fn keys() -> KeyManager<MemoryKeyStore> {
        KeyManager::new(MemoryKeyStore::new())
    }

    fn present(pairs: &[(&str, &str)]) -> Presented {
        let peer: IpAddr = "192.0.2.1".parse().unwrap();
        Presented::from_headers(pairs, "GET", "/", Some(peer), &TrustedProxies::none()).unwrap()
    }

    #[test]
    fn bearer_tokens_from_either_header_and_requirements() {
        let keys = keys();
        let owner = OwnerId::new("acct").unwrap();
        let token = keys
            .create(
                &Actor::system(),
                NewKey::secret(owner, "k")
                    .scopes(Scopes::new(["read"]).unwrap())
                    .allowed_ips(IpAllowList::parse("192.0.2.0/24").unwrap()),
            )
            .unwrap()
            .token;
        let auth = format!("Bearer {}", token.expose_secret());
        for presented in [
            present(&[("Authorization", &auth)]),
            present(&[("X-Api-Key", token.expose_secret())]),
        ] {
            assert!(!presented.needs_body());
            let key = presented.verify(&keys, &Requirements::new(), b"").unwrap();
            assert!(!key.is_signed());
            let scoped = Requirements::new().require_scopes(Scopes::new(["read"]).unwrap());
            assert!(presented.verify(&keys, &scoped, b"").is_ok());
            let missing = presented
                .verify(
                    &keys,
                    &Requirements::new().require_scopes(Scopes::new(["write"]).unwrap()),
                    b"",
                )
                .unwrap_err();
            assert_eq!(missing.rejection(), Some(Rejection::MissingScope));
            let env = presented
                .verify(
                    &keys,
                    &Requirements::new().require_environment(Environment::Test),
                    b"",
                )
                .unwrap_err();
            assert_eq!(env.rejection(), Some(Rejection::WrongEnvironment));
            let kind = presented
                .verify(
                    &keys,
                    &Requirements::new().require_kind(KeyKind::Publishable),
                    b"",
                )
                .unwrap_err();
            assert_eq!(kind.rejection(), Some(Rejection::WrongKind));
            let signed = presented
                .verify(&keys, &Requirements::new().require_signed(), b"")
                .unwrap_err();
            assert_eq!(signed.reason(), "signature_required");
        }
        // The client address counts.
        let elsewhere = Presented::from_headers(
            &[("Authorization", auth.as_str())][..],
            "GET",
            "/",
            Some("198.51.100.1".parse().unwrap()),
            &TrustedProxies::none(),
        )
        .unwrap();
        let refused = elsewhere
            .verify(&keys, &Requirements::new(), b"")
            .unwrap_err();
        assert_eq!(refused.rejection(), Some(Rejection::IpNotAllowed));
    }

    /// The key id for refusal logs: the one the token names, from either
    /// header; nothing for a value that fails the token's offline checks.
    #[test]
    fn key_id_names_the_presented_key() {
        let keys = keys();
        let created = keys
            .create(
                &Actor::system(),
                NewKey::secret(OwnerId::new("acct").unwrap(), "k"),
            )
            .unwrap();
        let token = created.token.expose_secret();
        let format = keys.engine().format();
        let auth = format!("Bearer {token}");
        for presented in [
            present(&[("Authorization", &auth)]),
            present(&[("X-Api-Key", token)]),
        ] {
            assert_eq!(presented.key_id(format), Some(created.record.id));
        }
        // One character changed: the checksum fails, no id comes back.
        let mut forged = token.to_owned();
        let last = forged.pop().unwrap();
        forged.push(if last == 'A' { 'B' } else { 'A' });
        assert_eq!(present(&[("X-Api-Key", &forged)]).key_id(format), None);
    }

    #[test]
    fn signed_requests_need_their_body() {
        use crate::{RequestSigner, SealingKey, SealingKeyRing};
        let keys = KeyManager::builder(MemoryKeyStore::new())
            .sealing_keys(SealingKeyRing::new(SealingKey::new(1, &[5; 32]).unwrap()))
            .build()
            .unwrap();
        let owner = OwnerId::new("acct").unwrap();
        let token = keys
            .create(&Actor::system(), NewKey::secret(owner, "s").signing())
            .unwrap()
            .token;
        let signer = RequestSigner::for_token(token.expose_secret()).unwrap();
        let headers = signer.sign(b"{}");
        let presented = present(&[
            ("X-Processing-Key", &headers.key),
            ("X-Processing-Signature", &headers.signature),
        ]);
        assert!(presented.needs_body());
        let key = presented
            .verify(&keys, &Requirements::new().require_signed(), b"{}")
            .unwrap();
        assert!(key.is_signed());
        let tampered = presented
            .verify(&keys, &Requirements::new(), b"{ }")
            .unwrap_err();
        assert_eq!(tampered.rejection(), Some(Rejection::BadSignature));
        assert_eq!(tampered.status(), 401);
    }

    #[test]
    fn requirements_builders_set_their_field() {
        let r = Requirements::new();
        assert_eq!(r, Requirements::default());
        let scopes = Scopes::new(["a"]).unwrap();
        assert_eq!(r.clone().require_scopes(scopes.clone()).scopes, scopes);
        assert_eq!(
            r.clone().require_environment(Environment::Test).environment,
            Some(Environment::Test)
        );
        assert_eq!(
            r.clone().require_kind(KeyKind::Secret).kind,
            Some(KeyKind::Secret)
        );
        assert!(r.require_signed().signed);
    }
}
