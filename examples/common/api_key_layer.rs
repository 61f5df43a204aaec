//! A tower [`Layer`] that checks API keys with `api-keys`, for axum (or any
//! tower stack over `axum::body::Body`). Copy this file into your service.
//!
//! Credentials, exactly one per request:
//!
//! * `Authorization: Bearer <token>` (scheme case-insensitive), or
//!   `X-Api-Key: <token>`;
//! * a signed request: `X-Processing-Key` (key id) and
//!   `X-Processing-Signature` (HMAC-SHA512 of the raw body), plus
//!   `X-Processing-Timestamp` / `X-Processing-Nonce` when the manager's
//!   policy requires the replay-protected mode. The body is buffered up to
//!   the policy's `max_body_len`, verified, and handed on unchanged.
//!
//! Two credentials at once, a repeated credential header or another
//! `Authorization` scheme are refused with 401. On success the
//! [`VerifiedKey`] is inserted as a request extension: read it in a handler
//! with `Extension<VerifiedKey>`. Refusals answer the crate's status (401,
//! 403, 413; 500 when the service fails, 400 for an unreadable body or a
//! malformed forwarding header from a trusted proxy) and a JSON body
//! `{"error":"<code>"}` with a coarse public code; nothing from the request
//! (token, signature, header values) is ever echoed back.

use api_keys::ip::{TrustedProxies, client_ip};
use api_keys::signing::{KEY_HEADER, NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use api_keys::{
    AsyncKeyStore, Environment, HeaderField, KeyKind, KeyManager, Rejection, RequestContext,
    SignedRequest, VerifiedKey, VerifyError,
};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, OriginalUri};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// The alternative bearer header.
const API_KEY_HEADER: &str = "x-api-key";

/// A refused request, as reported to the hook set with
/// [`ApiKeyLayer::on_refusal`]. Carries no header value, token or
/// signature: safe to log as is.
#[derive(Debug)]
#[non_exhaustive]
pub struct Refusal<'a> {
    /// Precise reason for logs and metrics (`Rejection::as_str()`, or
    /// `missing_credentials`, `ambiguous_credentials`,
    /// `unsupported_scheme`, `bad_forwarding_header`, `unreadable_body`,
    /// `service_failure`).
    pub reason: &'static str,
    /// The status answered.
    pub status: StatusCode,
    /// The request method.
    pub method: &'a Method,
    /// The request path, without the query string.
    pub path: &'a str,
    /// The service failure, when `status` is 500 (its `Display` and
    /// `source()` carry no secret).
    pub error: Option<&'a VerifyError>,
}

/// What the layer calls for every refused request.
type RefusalHook = Arc<dyn Fn(&Refusal<'_>) + Send + Sync>;

/// The requirements of the routes a layer protects.
#[derive(Clone)]
struct Settings {
    scopes: &'static [&'static str],
    environment: Option<Environment>,
    kind: Option<KeyKind>,
    signed_only: bool,
    max_body_len: usize,
    proxies: TrustedProxies,
    on_refusal: Option<RefusalHook>,
}

/// Requires a valid API key on the routes it wraps. Build one per set of
/// requirements (`.route_layer(...)` on each axum route).
pub struct ApiKeyLayer<S> {
    keys: Arc<KeyManager<S>>,
    settings: Settings,
}

impl<S: AsyncKeyStore> ApiKeyLayer<S> {
    /// Any valid key of `keys`, no scope, environment or kind required;
    /// signed bodies up to the manager's policy limit.
    #[must_use]
    pub fn new(keys: Arc<KeyManager<S>>) -> Self {
        let max_body_len = keys.max_signed_body_len();
        Self {
            keys,
            settings: Settings {
                scopes: &[],
                environment: None,
                kind: None,
                signed_only: false,
                max_body_len,
                proxies: TrustedProxies::none(),
                on_refusal: None,
            },
        }
    }
}

impl<S> ApiKeyLayer<S> {
    /// The key must grant all of these scopes (403 otherwise).
    #[must_use]
    pub fn require_scopes(mut self, scopes: &'static [&'static str]) -> Self {
        self.settings.scopes = scopes;
        self
    }

    /// The key must be of this environment (403 otherwise).
    #[must_use]
    pub fn require_environment(mut self, environment: Environment) -> Self {
        self.settings.environment = Some(environment);
        self
    }

    /// The key must be of this kind, e.g. secret keys only (403 otherwise).
    #[must_use]
    pub fn require_kind(mut self, kind: KeyKind) -> Self {
        self.settings.kind = Some(kind);
        self
    }

    /// Only signed requests are accepted (a bearer key gets 401).
    #[must_use]
    pub fn require_signed(mut self) -> Self {
        self.settings.signed_only = true;
        self
    }

    /// The peer is a reverse proxy in this list: take the client address
    /// from `X-Forwarded-For` / `Forwarded` (see `api_keys::ip::client_ip`).
    /// Default: no proxy is trusted, the peer address is the client's.
    #[must_use]
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.settings.proxies = proxies;
        self
    }

    /// Called for every refused request, e.g. to log it or count it.
    #[must_use]
    pub fn on_refusal(mut self, hook: impl Fn(&Refusal<'_>) + Send + Sync + 'static) -> Self {
        self.settings.on_refusal = Some(Arc::new(hook));
        self
    }
}

impl<S> Clone for ApiKeyLayer<S> {
    fn clone(&self) -> Self {
        Self {
            keys: Arc::clone(&self.keys),
            settings: self.settings.clone(),
        }
    }
}

impl<S> std::fmt::Debug for ApiKeyLayer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyLayer")
            .field("scopes", &self.settings.scopes)
            .field("environment", &self.settings.environment)
            .field("kind", &self.settings.kind)
            .field("signed_only", &self.settings.signed_only)
            .finish_non_exhaustive()
    }
}

impl<S, I> Layer<I> for ApiKeyLayer<S> {
    type Service = ApiKeyService<S, I>;

    fn layer(&self, inner: I) -> Self::Service {
        ApiKeyService {
            inner,
            keys: Arc::clone(&self.keys),
            settings: Arc::new(self.settings.clone()),
        }
    }
}

/// The service [`ApiKeyLayer`] wraps around a route.
pub struct ApiKeyService<S, I> {
    inner: I,
    keys: Arc<KeyManager<S>>,
    settings: Arc<Settings>,
}

impl<S, I: Clone> Clone for ApiKeyService<S, I> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            keys: Arc::clone(&self.keys),
            settings: Arc::clone(&self.settings),
        }
    }
}

impl<S, I> std::fmt::Debug for ApiKeyService<S, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyService").finish_non_exhaustive()
    }
}

/// The boxed future of [`ApiKeyService`].
type ResponseFuture<E> = Pin<Box<dyn Future<Output = Result<Response, E>> + Send>>;

impl<S, I> Service<Request<Body>> for ApiKeyService<S, I>
where
    S: AsyncKeyStore + Send + Sync + 'static,
    I: Service<Request<Body>, Response = Response> + Clone + Send + 'static,
    I::Future: Send + 'static,
{
    type Response = Response;
    type Error = I::Error;
    type Future = ResponseFuture<I::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The service that was polled ready serves this request; a clone
        // takes its place for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let keys = Arc::clone(&self.keys);
        let settings = Arc::clone(&self.settings);
        Box::pin(async move {
            match authenticate(&keys, &settings, request).await {
                Ok(request) => inner.call(request).await,
                Err(refused) => Ok(refused),
            }
        })
    }
}

/// Checks the request; on success returns it with the [`VerifiedKey`] as an
/// extension (and, for a signed request, the same body bytes).
async fn authenticate<S: AsyncKeyStore>(
    keys: &KeyManager<S>,
    settings: &Settings,
    request: Request<Body>,
) -> Result<Request<Body>, Response> {
    let (mut parts, body) = request.into_parts();
    match verify(keys, settings, &parts, body).await {
        Ok((key, body)) => {
            parts.extensions.insert(key);
            Ok(Request::from_parts(parts, body))
        }
        Err(refused) => {
            if let Some(hook) = &settings.on_refusal {
                hook(&Refusal {
                    reason: refused.reason(),
                    status: refused.status(),
                    method: &parts.method,
                    path: parts.uri.path(),
                    error: match &refused {
                        Refused::Failed(e) => Some(e),
                        _ => None,
                    },
                });
            }
            Err(refused.into_response())
        }
    }
}

async fn verify<S: AsyncKeyStore>(
    keys: &KeyManager<S>,
    settings: &Settings,
    parts: &Parts,
    body: Body,
) -> Result<(VerifiedKey, Body), Refused> {
    let headers = &parts.headers;
    let mut context = RequestContext::new()
        .origin(field(headers, header::ORIGIN.as_str()))
        .referer(field(headers, header::REFERER.as_str()))
        .require_scopes(settings.scopes);
    // The peer address, set by `into_make_service_with_connect_info`.
    if let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() {
        let ip = client_ip(
            peer.ip(),
            field(headers, "x-forwarded-for"),
            field(headers, "forwarded"),
            &settings.proxies,
        )
        .map_err(|_| Refused::BadForwarding)?;
        context = context.peer_ip(ip);
    }
    if let Some(environment) = settings.environment {
        context = context.require_environment(environment);
    }
    if let Some(kind) = settings.kind {
        context = context.require_kind(kind);
    }

    match credential(headers)? {
        Credential::Bearer(_) if settings.signed_only => Err(Rejection::BadSignature.into()),
        Credential::Bearer(token) => Ok((keys.verify_async(token, &context).await?, body)),
        Credential::Signed => {
            let bytes = read_body(body, settings.max_body_len).await?;
            // The request target as sent, even inside a nested router
            // (which strips its prefix from `parts.uri`).
            let uri = match parts.extensions.get::<OriginalUri>() {
                Some(OriginalUri(original)) => original,
                None => &parts.uri,
            };
            let path = uri.path_and_query().map_or("", |p| p.as_str());
            let signed = SignedRequest::new(
                single(headers, KEY_HEADER)?,
                single(headers, SIGNATURE_HEADER)?,
                &bytes,
            )
            .replay_protected(
                single(headers, TIMESTAMP_HEADER)?,
                single(headers, NONCE_HEADER)?,
                parts.method.as_str().as_bytes(),
                path.as_bytes(),
            );
            let key = keys.verify_signed_async(&signed, &context).await?;
            Ok((key, Body::from(bytes)))
        }
    }
}

/// The credential a request presents.
enum Credential<'a> {
    Bearer(&'a str),
    Signed,
}

/// Exactly one credential: a bearer token (either header) or a signature.
fn credential(headers: &HeaderMap) -> Result<Credential<'_>, Refused> {
    let authorization = field(headers, header::AUTHORIZATION.as_str());
    let api_key = field(headers, API_KEY_HEADER);
    let signed = headers.contains_key(KEY_HEADER) || headers.contains_key(SIGNATURE_HEADER);
    match (authorization, api_key, signed) {
        (HeaderField::Absent, HeaderField::Absent, false) => Err(Refused::NoCredentials),
        (HeaderField::Single(value), HeaderField::Absent, false) => {
            bearer(value).map(Credential::Bearer)
        }
        (HeaderField::Absent, HeaderField::Single(value), false) => {
            // The crate refuses anything that is not exactly a token.
            Ok(Credential::Bearer(
                std::str::from_utf8(value).map_err(|_| Rejection::Malformed)?,
            ))
        }
        (HeaderField::Absent, HeaderField::Absent, true) => Ok(Credential::Signed),
        _ => Err(Refused::Ambiguous),
    }
}

/// The token of an `Authorization: Bearer <token>` value.
fn bearer(value: &[u8]) -> Result<&str, Refused> {
    let scheme_len = b"Bearer ".len();
    let (scheme, token) = value
        .split_at_checked(scheme_len)
        .ok_or(Refused::UnsupportedScheme)?;
    if !scheme.eq_ignore_ascii_case(b"Bearer ") {
        return Err(Refused::UnsupportedScheme);
    }
    let token = token.trim_ascii_start();
    Ok(std::str::from_utf8(token).map_err(|_| Rejection::Malformed)?)
}

/// A header as received: absent, once (raw bytes) or repeated.
fn field<'a>(headers: &'a HeaderMap, name: &str) -> HeaderField<'a> {
    HeaderField::from_values(headers.get_all(name).iter().map(HeaderValue::as_bytes))
}

/// A header that may appear at most once (absent = empty).
fn single<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a [u8], Refused> {
    match field(headers, name) {
        HeaderField::Absent => Ok(b""),
        HeaderField::Single(value) => Ok(value),
        HeaderField::Repeated => Err(Rejection::Malformed.into()),
    }
}

/// Buffers the body, refusing it past `limit` bytes.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, Refused> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(Rejection::BodyTooLarge.into()),
        Err(_) => Err(Refused::UnreadableBody),
    }
}

/// Why the layer answers instead of the route.
#[derive(Debug)]
enum Refused {
    /// The crate refused the key.
    Rejected(Rejection),
    /// The service could not decide (fail closed).
    Failed(VerifyError),
    NoCredentials,
    Ambiguous,
    UnsupportedScheme,
    BadForwarding,
    UnreadableBody,
}

impl From<Rejection> for Refused {
    fn from(r: Rejection) -> Self {
        Refused::Rejected(r)
    }
}

impl From<VerifyError> for Refused {
    fn from(e: VerifyError) -> Self {
        match e.rejection() {
            Some(r) => Refused::Rejected(r),
            None => Refused::Failed(e),
        }
    }
}

impl Refused {
    fn reason(&self) -> &'static str {
        match self {
            Refused::Rejected(r) => r.as_str(),
            Refused::Failed(_) => "service_failure",
            Refused::NoCredentials => "missing_credentials",
            Refused::Ambiguous => "ambiguous_credentials",
            Refused::UnsupportedScheme => "unsupported_scheme",
            Refused::BadForwarding => "bad_forwarding_header",
            Refused::UnreadableBody => "unreadable_body",
        }
    }

    fn status(&self) -> StatusCode {
        let code = match self {
            Refused::Rejected(r) => r.http_status(),
            Refused::Failed(e) => e.http_status(),
            Refused::NoCredentials | Refused::Ambiguous | Refused::UnsupportedScheme => 401,
            Refused::BadForwarding | Refused::UnreadableBody => 400,
        };
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The coarse code clients see.
    fn public_code(&self) -> &'static str {
        match self {
            Refused::Rejected(r) => r.public_code(),
            Refused::NoCredentials | Refused::Ambiguous | Refused::UnsupportedScheme => {
                "invalid_api_key"
            }
            Refused::BadForwarding | Refused::UnreadableBody => "bad_request",
            Refused::Failed(_) => "internal",
        }
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = Json(serde_json::json!({ "error": self.public_code() }));
        if status == StatusCode::UNAUTHORIZED {
            let challenge = [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))];
            (status, challenge, body).into_response()
        } else {
            (status, body).into_response()
        }
    }
}
