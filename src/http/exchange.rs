//! The client-credentials exchange (RFC 6749 §4.4): an API key presented
//! to a host's token endpoint, verified with the request's facts, so the
//! host can mint its own access token.

use super::credential::{BasicCredential, BasicForm, BasicForms, Credential};
use super::facts::RequestFacts;
use super::headers::{CONTENT_TYPE, Headers};
use super::refusal::{ErrorResponse, Refusal};
use super::verify::Requirements;
use crate::environment::{Environment, KeyKind};
use crate::error::{Rejection, VerifyError};
use crate::ip::TrustedProxies;
use crate::manager::KeyManager;
use crate::origin::HeaderField;
use crate::record::Scopes;
use crate::request::VerifiedKey;
use crate::store::{AsyncKeyStore, KeyStore};
use crate::token::KeyId;
use core::fmt;
use std::net::IpAddr;
use zeroize::Zeroizing;

/// The largest form body read ([`TokenExchange::read`] refuses a longer
/// one with 413): a grant type, a scope list and a pair of credentials.
pub const MAX_EXCHANGE_BODY_LEN: usize = 4096;

/// The `WWW-Authenticate` challenge of a 401 `invalid_client` when Basic
/// credentials are accepted (RFC 6749 §5.2 asks for the scheme the client
/// used).
pub const BASIC_CHALLENGE: &str = r#"Basic realm="api", charset="UTF-8""#;

/// A host's token endpoint for the client-credentials grant: which
/// client authentications it accepts and what it requires of a key.
///
/// The client authenticates with its API key, either
///
/// * in `Authorization: Basic` (RFC 6749 §2.3.1; both [`BasicForm`]s by
///   default: `curl -u sk_live_…:` or `-u <key id>:<token>`), or
/// * in the form body: `client_id=<key id>&client_secret=<token>`
///   (RFC 6749 §2.3.1 allows it; on by default, see
///   [`allow_body_credentials`](Self::allow_body_credentials)),
///
/// never both. The body is `application/x-www-form-urlencoded` with
/// `grant_type=client_credentials` and an optional `scope` (space
/// separated). The key is verified like any request: status, expiry,
/// environment, kind, the endpoint's required scopes, and its `Origin`/
/// `Referer` and IP allow-lists against this request (Moov: "the
/// `Origin`/`Referer` rules apply there"). Requested scopes must all be
/// granted by the key. The host then mints its own token for the
/// [`Granted`] key: carry the key id in it and re-check the key on every
/// call with [`KeyManager::check_key`], so the token dies with its key.
///
/// Two things stay with the host. **Scopes**: `check_key` checks the
/// *key's* scopes; a token minted for fewer ([`Granted::scope`]) must carry
/// them, and the host checks a route's scopes against the token's too.
/// **Servers without an Origin**: a key with a domain allow-list is
/// refused when the request has no `Origin`/`Referer` (as on every route),
/// so give server-to-server clients keys without one.
///
/// ```
/// use api_keys::http::TokenExchange;
/// use api_keys::ip::TrustedProxies;
/// use api_keys::{Actor, KeyManager, MemoryKeyStore, NewKey, OwnerId, RequestContext, Scopes};
///
/// let keys = KeyManager::new(MemoryKeyStore::new());
/// let key = keys.create(&Actor::system(), NewKey::secret(OwnerId::new("acct_1")?, "app")
///     .scopes(["charges:read", "charges:write"]))?;
/// let exchange = TokenExchange::new();
///
/// // POST /oauth2/token, credentials in the form body.
/// let body = format!("grant_type=client_credentials&scope=charges:read\
///                     &client_id={}&client_secret={}", key.record.id, key.token.expose_secret());
/// let headers = [("Content-Type", "application/x-www-form-urlencoded")];
/// let request = exchange.read(&headers[..], "POST", Some("203.0.113.9".parse()?), body.as_bytes())?;
/// let granted = exchange.verify(&keys, &request)?;
/// assert_eq!(granted.scope().map(|s| s.contains("charges:read")), Some(true));
///
/// // The host mints its own token carrying `granted.key().id()`; each call
/// // made with it re-checks the key, so revoking the key ends the token.
/// let id = granted.key().id();
/// assert!(keys.check_key(&id, &RequestContext::new()).is_ok());
///
/// // Refusals are RFC 6749 §5.2 errors.
/// let wrong = exchange.read(&headers[..], "POST", None, b"grant_type=password").unwrap_err();
/// assert_eq!(wrong.response().status, 400);
/// assert_eq!(wrong.response().body, r#"{"error":"unsupported_grant_type"}"#);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct TokenExchange {
    requirements: Requirements,
    body_credentials: bool,
    proxies: TrustedProxies,
}

impl Default for TokenExchange {
    fn default() -> Self {
        Self::new()
    }
}

impl TokenExchange {
    /// Accepts both Basic forms and body credentials; requires a **secret**
    /// key (RFC 6749 §4.4: the grant is for confidential clients; a
    /// publishable key lives in browsers, where its Origin list is its only
    /// guard — [`any_kind`](Self::any_kind) to accept it anyway) valid for
    /// this request; trusts no proxy.
    #[must_use]
    pub fn new() -> Self {
        Self {
            requirements: Requirements::new()
                .allow_basic(BasicForms::BOTH)
                .require_kind(KeyKind::Secret),
            body_credentials: true,
            proxies: TrustedProxies::none(),
        }
    }

    /// The `Authorization: Basic` forms accepted ([`BasicForms::NONE`]:
    /// credentials in the body only).
    #[must_use]
    pub fn allow_basic(mut self, forms: BasicForms) -> Self {
        self.requirements = self.requirements.allow_basic(forms);
        self
    }

    /// Whether `client_id` / `client_secret` in the form body are accepted
    /// (default `true`; RFC 6749 §2.3.1 recommends Basic).
    #[must_use]
    pub fn allow_body_credentials(mut self, allow: bool) -> Self {
        self.body_credentials = allow;
        self
    }

    /// The key must grant all of these scopes to be exchanged at all
    /// (`unauthorized_client` otherwise).
    #[must_use]
    pub fn require_scopes(mut self, scopes: Scopes) -> Self {
        self.requirements = self.requirements.require_scopes(scopes);
        self
    }

    /// The key must be of this environment.
    #[must_use]
    pub fn require_environment(mut self, environment: Environment) -> Self {
        self.requirements = self.requirements.require_environment(environment);
        self
    }

    /// The key must be of this kind (default: [`KeyKind::Secret`]).
    #[must_use]
    pub fn require_kind(mut self, kind: KeyKind) -> Self {
        self.requirements = self.requirements.require_kind(kind);
        self
    }

    /// Keys of either kind may be exchanged, publishable ones included
    /// (`unauthorized_client` otherwise).
    #[must_use]
    pub fn any_kind(mut self) -> Self {
        self.requirements.kind = None;
        self
    }

    /// The peer is a reverse proxy in this list: the client address comes
    /// from its forwarding header ([`crate::ip::client_ip`]).
    #[must_use]
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.proxies = proxies;
        self
    }

    /// Reads a token request: the method (`POST`), the content type, the
    /// form body (at most [`MAX_EXCHANGE_BODY_LEN`] bytes; each parameter
    /// at most once, unknown ones ignored as RFC 6749 §3.2 asks), the
    /// grant type, the requested scope, the one client authentication and
    /// the request's facts (`Origin`, `Referer`, the client address behind
    /// trusted proxies). `peer` is the TCP peer's address.
    ///
    /// # Errors
    ///
    /// An [`ExchangeError`]: `invalid_request`, `unsupported_grant_type`,
    /// `invalid_scope` or `invalid_client` (no, or an unaccepted, client
    /// authentication); 413 for an over-long body.
    pub fn read<H: Headers + ?Sized>(
        &self,
        headers: &H,
        method: &str,
        peer: Option<IpAddr>,
        body: &[u8],
    ) -> Result<TokenRequest, ExchangeError> {
        use ExchangeCode::{InvalidRequest, UnsupportedGrantType};
        if method != "POST" {
            return Err(ExchangeError::new(InvalidRequest, "method_not_post"));
        }
        if body.len() > MAX_EXCHANGE_BODY_LEN {
            return Err(ExchangeError::new(
                ExchangeCode::PayloadTooLarge,
                "body_too_large",
            ));
        }
        if !is_form(headers.field(CONTENT_TYPE)) {
            return Err(ExchangeError::new(InvalidRequest, "content_type"));
        }
        let form = Form::parse(body)?;
        match form.grant_type.as_deref().map(String::as_str) {
            None => return Err(ExchangeError::new(InvalidRequest, "missing_grant_type")),
            Some("client_credentials") => {}
            Some(_) => {
                return Err(ExchangeError::new(
                    UnsupportedGrantType,
                    "unsupported_grant_type",
                ));
            }
        }
        let scope = match form.scope.as_deref() {
            None => None,
            Some(text) => Some(parse_scope(text)?),
        };
        let client = self.client(headers, form)?;
        let facts = RequestFacts::from_headers(headers, peer, &self.proxies)
            .map_err(|_| ExchangeError::new(InvalidRequest, "bad_forwarding_header"))?;
        Ok(TokenRequest {
            client,
            scope,
            facts,
        })
    }

    /// The one client authentication of the request.
    fn client<H: Headers + ?Sized>(
        &self,
        headers: &H,
        form: Form,
    ) -> Result<Client, ExchangeError> {
        use ExchangeCode::InvalidRequest;
        let in_body = form.client_id.is_some() || form.client_secret.is_some();
        let two = || ExchangeError::new(InvalidRequest, "multiple_client_authentication");
        let header = match Credential::from_headers(headers, "POST", "") {
            Err(Refusal::MissingCredentials) => None,
            Ok(Credential::Basic(basic)) => Some(basic),
            Err(Refusal::MalformedBasic(_)) => {
                return Err(ExchangeError::new(
                    InvalidRequest,
                    "malformed_basic_credentials",
                ));
            }
            Err(Refusal::RepeatedHeader | Refusal::AmbiguousCredentials) => return Err(two()),
            // Bearer, X-Api-Key, signature headers, another scheme: with
            // body credentials that is two methods; alone, one this
            // endpoint does not accept (a header attempt: 401, RFC 6749 §5.2).
            Ok(_) | Err(_) if in_body => return Err(two()),
            Ok(_) | Err(_) => {
                return Err(self.invalid_client("unsupported_client_authentication", true));
            }
        };
        match header {
            Some(basic) => {
                if form.client_secret.is_some() {
                    return Err(two());
                }
                if !self.requirements.basic.allows(basic.form()) {
                    return Err(self.invalid_client("unsupported_client_authentication", true));
                }
                Ok(Client {
                    // A `client_id` beside Basic must name the same key.
                    also_claimed: form.client_id,
                    basic: Some(basic),
                    secret: None,
                })
            }
            None if !in_body => Err(self.invalid_client("missing_client_authentication", false)),
            None if !self.body_credentials => {
                Err(self.invalid_client("unsupported_client_authentication", false))
            }
            None => match (form.client_id, form.client_secret) {
                (Some(id), Some(secret)) => Ok(Client {
                    also_claimed: Some(id),
                    basic: None,
                    secret: Some(secret),
                }),
                (None, Some(_)) => Err(ExchangeError::new(InvalidRequest, "missing_client_id")),
                (_, None) => Err(self.invalid_client("missing_client_secret", false)),
            },
        }
    }

    /// `invalid_client`: 401 with a Basic challenge when the client tried
    /// the `Authorization` header (RFC 6749 §5.2 requires it) or Basic is
    /// accepted (the challenge says how to authenticate); else 400.
    fn invalid_client(&self, reason: &'static str, via_header: bool) -> ExchangeError {
        ExchangeError {
            challenge: via_header || self.requirements.basic.any(),
            ..ExchangeError::new(ExchangeCode::InvalidClient, reason)
        }
    }

    /// Verifies the client's key against a synchronous store: the token's
    /// offline checks, the claimed key id, then
    /// [`KeyManager::verify`] with the request's facts and this endpoint's
    /// requirements, then the requested scopes.
    ///
    /// # Errors
    ///
    /// `invalid_client` (401 with [`BASIC_CHALLENGE`] when Basic is
    /// accepted, else 400) for a key that is refused as a credential
    /// (unknown, revoked, inactive, expired, a claimed id that is not the
    /// token's); `unauthorized_client` (400) for a valid key this request
    /// may not use (environment, kind, a required scope, origin, IP);
    /// `invalid_scope` for a requested scope the key does not grant; 500
    /// when the service cannot decide (fail closed).
    pub fn verify<S: KeyStore>(
        &self,
        keys: &KeyManager<S>,
        request: &TokenRequest,
    ) -> Result<Granted, ExchangeError> {
        let token = self.token(keys, request)?;
        let key = keys.verify(token, &request.facts.context(&self.requirements));
        self.grant(keys, request, key)
    }

    /// Verifies against an asynchronous store: as [`verify`](Self::verify).
    ///
    /// # Errors
    ///
    /// As [`verify`](Self::verify).
    pub async fn verify_async<S: AsyncKeyStore>(
        &self,
        keys: &KeyManager<S>,
        request: &TokenRequest,
    ) -> Result<Granted, ExchangeError> {
        let token = self.token(keys, request)?;
        let key = keys
            .verify_async(token, &request.facts.context(&self.requirements))
            .await;
        self.grant(keys, request, key)
    }

    /// The token to verify, once every claimed id is the token's own.
    fn token<'a, S>(
        &self,
        keys: &KeyManager<S>,
        request: &'a TokenRequest,
    ) -> Result<&'a str, ExchangeError> {
        let client = &request.client;
        let format = keys.engine().format();
        let token = match &client.basic {
            Some(basic) => basic
                .accepted(format, self.requirements.basic)
                .map_err(|refusal| self.invalid_client(refusal.reason(), true))?,
            None => client.secret.as_deref().map_or("", |s| s.as_str()),
        };
        let presented = format
            .parse(token)
            .map_err(|r| self.invalid_client(r.as_str(), client.basic.is_some()))?;
        if let Some(claimed) = &client.also_claimed
            && KeyId::parse(claimed).ok() != Some(presented.id())
        {
            return Err(self.invalid_client("client_id_mismatch", client.basic.is_some()));
        }
        Ok(token)
    }

    fn grant<S>(
        &self,
        keys: &KeyManager<S>,
        request: &TokenRequest,
        key: Result<VerifiedKey, VerifyError>,
    ) -> Result<Granted, ExchangeError> {
        let key = key.map_err(|e| match e.rejection() {
            Some(r) if r.http_status() == 401 => {
                self.invalid_client(r.as_str(), request.client.basic.is_some())
            }
            Some(r) => ExchangeError::new(ExchangeCode::UnauthorizedClient, r.as_str()),
            None => ExchangeError::failed(e),
        })?;
        if let Some(scope) = &request.scope
            && !scope.iter().all(|s| keys.engine().grants(key.record(), s))
        {
            return Err(ExchangeError::new(
                ExchangeCode::InvalidScope,
                Rejection::MissingScope.as_str(),
            ));
        }
        Ok(Granted {
            key,
            scope: request.scope.clone(),
        })
    }
}

/// Whether a `Content-Type` is `application/x-www-form-urlencoded`
/// (parameters such as `charset` allowed).
fn is_form(field: HeaderField<'_>) -> bool {
    let HeaderField::Single(value) = field else {
        return false;
    };
    let media = value.split(|&b| b == b';').next().unwrap_or_default();
    media
        .trim_ascii()
        .eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
}

/// `scope = scope-token *( SP scope-token )` (RFC 6749 §3.3).
fn parse_scope(text: &str) -> Result<Scopes, ExchangeError> {
    let invalid = || ExchangeError::new(ExchangeCode::InvalidScope, "malformed_scope");
    if text.is_empty() || text.split(' ').any(str::is_empty) {
        return Err(invalid());
    }
    Scopes::new(text.split(' ')).map_err(|_| invalid())
}

type Secret = Zeroizing<String>;

/// The parameters of a token request that count.
#[derive(Default)]
struct Form {
    grant_type: Option<Secret>,
    scope: Option<Secret>,
    client_id: Option<Secret>,
    client_secret: Option<Secret>,
}

impl Form {
    fn parse(body: &[u8]) -> Result<Self, ExchangeError> {
        let mut form = Form::default();
        for (name, value) in form_urlencoded::parse(body) {
            // RFC 6749 §3.1: a parameter without a value is omitted.
            if value.is_empty() {
                continue;
            }
            let value = Zeroizing::new(value.into_owned());
            let slot = match &*name {
                "grant_type" => &mut form.grant_type,
                "scope" => &mut form.scope,
                "client_id" => &mut form.client_id,
                "client_secret" => &mut form.client_secret,
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return Err(ExchangeError::new(
                    ExchangeCode::InvalidRequest,
                    "repeated_parameter",
                ));
            }
        }
        Ok(form)
    }
}

/// How the client authenticated.
struct Client {
    basic: Option<BasicCredential>,
    secret: Option<Secret>,
    /// `client_id` from the body: must be the token's key id.
    also_claimed: Option<Secret>,
}

/// A token request that was read: the client's credentials, the requested
/// scope and the request's facts, owned. `Debug` prints no value.
pub struct TokenRequest {
    client: Client,
    scope: Option<Scopes>,
    facts: RequestFacts,
}

impl TokenRequest {
    /// The scopes the client asked for (`scope`), if it asked.
    #[must_use]
    pub fn scope(&self) -> Option<&Scopes> {
        self.scope.as_ref()
    }

    /// How the client authenticated: [`Basic`](ClientAuth::Basic) with its
    /// form, or [`Body`](ClientAuth::Body).
    #[must_use]
    pub fn client_auth(&self) -> ClientAuth {
        match &self.client.basic {
            Some(basic) => ClientAuth::Basic(basic.form()),
            None => ClientAuth::Body,
        }
    }

    /// Origin, Referer and the client address.
    #[must_use]
    pub fn facts(&self) -> &RequestFacts {
        &self.facts
    }
}

impl fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRequest")
            .field("client_auth", &self.client_auth())
            .field("scope", &self.scope)
            .field("facts", &self.facts)
            .finish()
    }
}

/// How a client authenticated at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClientAuth {
    /// `Authorization: Basic`, in this form.
    Basic(BasicForm),
    /// `client_id` and `client_secret` in the form body.
    Body,
}

/// A key that may be exchanged: mint the access token for it.
#[derive(Debug)]
#[non_exhaustive]
pub struct Granted {
    key: VerifiedKey,
    scope: Option<Scopes>,
}

impl Granted {
    /// The verified key: put its [`id`](VerifiedKey::id) in the token you
    /// mint and re-check it with [`KeyManager::check_key`] on every call.
    #[must_use]
    pub fn key(&self) -> &VerifiedKey {
        &self.key
    }

    /// The scopes requested (all granted by the key), if the client asked
    /// for some; else the token's scope is the host's choice (e.g. the
    /// key's own).
    #[must_use]
    pub fn scope(&self) -> Option<&Scopes> {
        self.scope.as_ref()
    }

    /// The key and the requested scopes.
    #[must_use]
    pub fn into_parts(self) -> (VerifiedKey, Option<Scopes>) {
        (self.key, self.scope)
    }
}

/// The RFC 6749 §5.2 error code of a refused exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExchangeCode {
    /// 400 `invalid_request`: not `POST`, not a form, a repeated
    /// parameter, no grant type, two client authentications, a secret
    /// without a `client_id`, a malformed Basic value or forwarding header.
    InvalidRequest,
    /// `invalid_client`: no, an unaccepted or a refused client
    /// authentication (401 with [`BASIC_CHALLENGE`] when Basic is
    /// accepted, else 400).
    InvalidClient,
    /// 400 `unauthorized_client`: a valid key this request may not use
    /// (environment, kind, a required scope, origin, IP).
    UnauthorizedClient,
    /// 400 `unsupported_grant_type`.
    UnsupportedGrantType,
    /// 400 `invalid_scope`: malformed, or not granted by the key.
    InvalidScope,
    /// 413: the body is longer than [`MAX_EXCHANGE_BODY_LEN`].
    PayloadTooLarge,
    /// 500: the service could not decide (fail closed).
    ServerError,
}

/// A refused token request: a coarse RFC 6749 §5.2 answer
/// ([`response`](Self::response)) and a precise reason for logs
/// ([`reason`](Self::reason)). Never carries a credential or a header
/// value.
#[derive(Debug)]
pub struct ExchangeError {
    code: ExchangeCode,
    reason: &'static str,
    challenge: bool,
    failure: Option<VerifyError>,
}

impl ExchangeError {
    fn new(code: ExchangeCode, reason: &'static str) -> Self {
        Self {
            code,
            reason,
            challenge: false,
            failure: None,
        }
    }

    /// 500: the service could not decide; the cause is kept for logs.
    fn failed(e: VerifyError) -> Self {
        Self {
            failure: Some(e),
            ..Self::new(ExchangeCode::ServerError, "service_failure")
        }
    }

    /// The error code.
    #[must_use]
    pub fn code(&self) -> ExchangeCode {
        self.code
    }

    /// A stable `snake_case` reason for logs and metrics, e.g.
    /// `missing_client_authentication`, `client_id_mismatch`, `revoked`,
    /// `origin_not_allowed`, `repeated_parameter`.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        self.reason
    }

    /// The service failure behind a 500.
    #[must_use]
    pub fn error(&self) -> Option<&VerifyError> {
        self.failure.as_ref()
    }

    /// The answer: status, `WWW-Authenticate` (a 401 `invalid_client`
    /// only) and `{"error":"<code>"}`.
    #[must_use]
    pub fn response(&self) -> ErrorResponse {
        let (status, challenge, code) = match self.code {
            ExchangeCode::InvalidRequest => (400, None, "invalid_request"),
            ExchangeCode::InvalidClient if self.challenge => {
                (401, Some(BASIC_CHALLENGE), "invalid_client")
            }
            ExchangeCode::InvalidClient => (400, None, "invalid_client"),
            ExchangeCode::UnauthorizedClient => (400, None, "unauthorized_client"),
            ExchangeCode::UnsupportedGrantType => (400, None, "unsupported_grant_type"),
            ExchangeCode::InvalidScope => (400, None, "invalid_scope"),
            ExchangeCode::PayloadTooLarge => (413, None, "invalid_request"),
            ExchangeCode::ServerError => return ErrorResponse::INTERNAL_ERROR,
        };
        ErrorResponse::new(status, challenge, code)
    }
}

/// For adapters reading the body with a [`BodyBuffer`](super::BodyBuffer)
/// sized [`MAX_EXCHANGE_BODY_LEN`]: a body over the limit is 413, an
/// unreadable one `invalid_request`.
impl From<Refusal> for ExchangeError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Rejected(Rejection::BodyTooLarge) => {
                ExchangeError::new(ExchangeCode::PayloadTooLarge, "body_too_large")
            }
            Refusal::Failed(e) => ExchangeError::failed(e),
            other => ExchangeError::new(ExchangeCode::InvalidRequest, other.reason()),
        }
    }
}

impl fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.failure {
            Some(e) => write!(f, "{}: {e}", self.reason),
            None => f.write_str(self.reason),
        }
    }
}

impl std::error::Error for ExchangeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.failure
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
