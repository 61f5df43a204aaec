//! The layer, its service and the refusal hook.

use api_keys::http::{
    BasicForms, BodyBuffer, ExchangeError, Granted, MAX_EXCHANGE_BODY_LEN, Presented, Refusal,
    Requirements, TokenExchange,
};
use api_keys::ip::TrustedProxies;
use api_keys::{AsyncKeyStore, Environment, KeyId, KeyKind, KeyManager, Scopes, VerifiedKey};
use bytes::{Buf, Bytes};
use http::request::Parts;
use http::{Method, Request, Response};
use http_body::Body;
use http_body_util::BodyExt;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

/// The TCP peer's address, for services not run by axum: insert it into
/// the request extensions (e.g. from hyper's accept loop) so IP
/// allow-lists and trusted proxies work. Under axum with the `axum`
/// feature, `ConnectInfo<SocketAddr>` is read as well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// A refused request, as reported to the hook set with
/// [`ApiKeyLayer::on_refusal`]. Carries no header value, token or
/// signature: safe to log as is.
#[derive(Debug)]
#[non_exhaustive]
pub struct RefusedRequest<'a> {
    /// Why: [`Refusal::reason`] is precise (the
    /// [`Rejection`](api_keys::Rejection) when the key was refused),
    /// [`Refusal::error`] the service failure behind a 500 (log its
    /// `source()` chain: the store's cause is there).
    pub refusal: &'a Refusal,
    /// The request method.
    pub method: &'a Method,
    /// The request path, without the query string.
    pub path: &'a str,
    /// The public key id the request named, when its credential was well
    /// formed (a bearer token that passed its offline checks, or an
    /// `X-Processing-Key`): which key was refused. Never the secret.
    pub key_id: Option<KeyId>,
    /// Whether the layer knew the TCP peer's address ([`PeerAddr`], or
    /// axum's `ConnectInfo`). When it did not, every key with an IP
    /// allow-list is refused as `ip_not_allowed`: serve axum with
    /// `into_make_service_with_connect_info::<SocketAddr>()`.
    pub peer_known: bool,
}

/// What the layer calls for every refused request.
type RefusalHook = Arc<dyn Fn(&RefusedRequest<'_>) + Send + Sync>;

/// The requirements and settings of the routes a layer protects.
#[derive(Clone)]
struct Settings {
    requirements: Requirements,
    proxies: TrustedProxies,
    on_refusal: Option<RefusalHook>,
}

/// Requires a valid API key on the services it wraps, with per-route
/// requirements. Build one per set of requirements (with axum:
/// `.route_layer(...)` on each route). Cheap to clone.
///
/// Credentials, refusal statuses and bodies follow
/// [`api_keys::http`]; on success the [`VerifiedKey`] is in the request
/// extensions and, for a signed request, the body handed on is exactly the
/// bytes the signature covered.
pub struct ApiKeyLayer<S> {
    keys: Arc<KeyManager<S>>,
    settings: Settings,
}

impl<S: AsyncKeyStore> ApiKeyLayer<S> {
    /// Any valid key of `keys`: no scope, environment or kind required,
    /// bearer or signed; no proxy trusted; refusals unreported.
    #[must_use]
    pub fn new(keys: Arc<KeyManager<S>>) -> Self {
        Self {
            keys,
            settings: Settings {
                requirements: Requirements::new(),
                proxies: TrustedProxies::none(),
                on_refusal: None,
            },
        }
    }
}

impl<S> ApiKeyLayer<S> {
    /// Replaces all the requirements at once.
    #[must_use]
    pub fn requirements(mut self, requirements: Requirements) -> Self {
        self.settings.requirements = requirements;
        self
    }

    /// The key must grant all of these scopes (403 otherwise). Owned, so
    /// scopes read from configuration need no `'static` borrow:
    /// `.require_scopes(Scopes::new(config.scopes)?)`.
    #[must_use]
    pub fn require_scopes(mut self, scopes: Scopes) -> Self {
        self.settings.requirements = self.settings.requirements.require_scopes(scopes);
        self
    }

    /// The key must be of this environment (403 otherwise).
    #[must_use]
    pub fn require_environment(mut self, environment: Environment) -> Self {
        self.settings.requirements = self.settings.requirements.require_environment(environment);
        self
    }

    /// The key must be of this kind, e.g. secret keys only (403 otherwise).
    #[must_use]
    pub fn require_kind(mut self, kind: KeyKind) -> Self {
        self.settings.requirements = self.settings.requirements.require_kind(kind);
        self
    }

    /// Only signed requests are accepted (a bearer token gets 401
    /// `signature_required`). The body is buffered up to
    /// [`KeyManager::max_signed_body_len`] (413 past it).
    #[must_use]
    pub fn require_signed(mut self) -> Self {
        self.settings.requirements = self.settings.requirements.require_signed();
        self
    }

    /// Also accepts these `Authorization: Basic` forms (RFC 7617): the
    /// token as user name with an empty password (`curl -u sk_live_…:`),
    /// and/or the key id as user name with the token as password. Default:
    /// none.
    #[must_use]
    pub fn allow_basic(mut self, forms: BasicForms) -> Self {
        self.settings.requirements = self.settings.requirements.allow_basic(forms);
        self
    }

    /// The peer is a reverse proxy in this list: take the client address
    /// from `X-Forwarded-For` / `Forwarded` (see
    /// [`api_keys::ip::client_ip`]). Default: no proxy is trusted.
    #[must_use]
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.settings.proxies = proxies;
        self
    }

    /// Called for every refused request, e.g. to log or count it. It gets
    /// the precise reason, the key id when one was presented and whether
    /// the peer address was known ([`RefusedRequest`]), never a header
    /// value.
    #[must_use]
    pub fn on_refusal(
        mut self,
        hook: impl Fn(&RefusedRequest<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.settings.on_refusal = Some(Arc::new(hook));
        self
    }

    /// The requirements in effect.
    #[must_use]
    pub fn current_requirements(&self) -> &Requirements {
        &self.settings.requirements
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

impl<S> fmt::Debug for ApiKeyLayer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyLayer")
            .field("requirements", &self.settings.requirements)
            .field("proxies", &self.settings.proxies)
            .field("on_refusal", &self.settings.on_refusal.is_some())
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

/// The service [`ApiKeyLayer`] wraps around an inner service.
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

impl<S, I> fmt::Debug for ApiKeyService<S, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyService")
            .field("requirements", &self.settings.requirements)
            .finish_non_exhaustive()
    }
}

/// The future of [`ApiKeyService`].
pub type ResponseFuture<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

impl<S, I, ReqBody, ResBody> Service<Request<ReqBody>> for ApiKeyService<S, I>
where
    S: AsyncKeyStore + 'static,
    I: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    I::Future: Send + 'static,
    ReqBody: Body + From<Bytes> + Send + 'static,
    ReqBody::Data: Send,
    ResBody: From<&'static str> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = I::Error;
    type Future = ResponseFuture<Response<ResBody>, I::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The service that was polled ready serves this request; a clone
        // takes its place for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let keys = Arc::clone(&self.keys);
        let settings = Arc::clone(&self.settings);
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            match authenticate(&keys, &settings, &parts, body).await {
                Ok((key, body)) => {
                    parts.extensions.insert(key);
                    inner.call(Request::from_parts(parts, body)).await
                }
                Err((refusal, key_id)) => {
                    if let Some(hook) = &settings.on_refusal {
                        hook(&RefusedRequest {
                            refusal: &refusal,
                            method: &parts.method,
                            path: parts.uri.path(),
                            key_id,
                            peer_known: peer_ip(&parts).is_some(),
                        });
                    }
                    Ok(refusal.response_for(&settings.requirements).to_http())
                }
            }
        })
    }
}

/// Translates the request for [`api_keys::http`] and back: the key, and the
/// body to hand on (the same bytes for a signed request); on refusal, the
/// refusal and the key id the request named (for the hook).
async fn authenticate<S, B>(
    keys: &KeyManager<S>,
    settings: &Settings,
    parts: &Parts,
    body: B,
) -> Result<(VerifiedKey, B), (Refusal, Option<KeyId>)>
where
    S: AsyncKeyStore,
    B: Body + From<Bytes> + Send,
    B::Data: Send,
{
    let presented = Presented::from_headers(
        parts,
        parts.method.as_str(),
        request_target(parts),
        peer_ip(parts),
        &settings.proxies,
    )
    .map_err(|refusal| (refusal, None))?;
    let named = |refusal: Refusal| {
        let key_id = presented.key_id(keys.engine().format());
        (refusal, key_id)
    };
    let requirements = &settings.requirements;
    if presented.needs_body() {
        // Boxed: the bearer path's future stays small.
        let bytes = Box::pin(read_body(parts, body, keys.max_signed_body_len()))
            .await
            .map_err(named)?;
        let key = presented
            .verify_async(keys, requirements, &bytes)
            .await
            .map_err(named)?;
        Ok((key, B::from(bytes)))
    } else {
        let key = presented
            .verify_async(keys, requirements, b"")
            .await
            .map_err(named)?;
        Ok((key, body))
    }
}

/// A host's token endpoint (the client-credentials grant): reads the form
/// body (at most [`MAX_EXCHANGE_BODY_LEN`] bytes) and the peer address
/// ([`PeerAddr`] or axum's `ConnectInfo`), then
/// [`TokenExchange::read`] and [`TokenExchange::verify_async`]. Mint your
/// access token for the [`Granted`] key, carrying its id, and re-check
/// the key on every call made with it
/// ([`KeyManager::check_key_async`]).
///
/// ```no_run
/// use api_keys_tower::api_keys::http::TokenExchange;
/// use api_keys_tower::api_keys::{KeyManager, MemoryKeyStore};
/// use axum::body::Body;
/// use axum::extract::{Request, State};
/// use axum::response::Response;
/// use std::sync::Arc;
///
/// async fn token(State(keys): State<Arc<KeyManager<MemoryKeyStore>>>, request: Request) -> Response {
///     match api_keys_tower::exchange(&keys, &TokenExchange::new(), request).await {
///         Ok(granted) => {
///             let id = granted.key().id();
///             // … mint an access token carrying `id` …
///             # let _ = id;
///             Response::new(Body::from(r#"{"access_token":"…","token_type":"Bearer"}"#))
///         }
///         Err(refused) => refused.response().to_http(),
///     }
/// }
/// ```
///
/// # Errors
///
/// The [`ExchangeError`] to answer with its
/// [`response`](ExchangeError::response).
pub async fn exchange<S, B>(
    keys: &KeyManager<S>,
    exchange: &TokenExchange,
    request: Request<B>,
) -> Result<Granted, ExchangeError>
where
    S: AsyncKeyStore,
    B: Body,
{
    let (parts, body) = request.into_parts();
    let body = read_body(&parts, body, MAX_EXCHANGE_BODY_LEN).await?;
    let request = exchange.read(&parts, parts.method.as_str(), peer_ip(&parts), &body)?;
    exchange.verify_async(keys, &request).await
}

/// Buffers a body ([`BodyBuffer`]: `Content-Length` first, then the limit
/// on the bytes that arrive).
async fn read_body<B: Body>(parts: &Parts, body: B, limit: usize) -> Result<Bytes, Refusal> {
    let mut buffer = BodyBuffer::for_request(parts, limit)?;
    let mut body = std::pin::pin!(body);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| Refusal::UnreadableBody)?;
        if let Ok(mut data) = frame.into_data() {
            while data.has_remaining() {
                let chunk = data.chunk();
                let len = chunk.len();
                buffer.push(chunk)?;
                data.advance(len);
            }
        }
    }
    Ok(Bytes::from(buffer.into_vec()))
}

/// The request target as the client sent it: axum's `OriginalUri` inside a
/// nested router, else the URI.
fn request_target(parts: &Parts) -> &str {
    #[cfg(feature = "axum")]
    let uri = match parts.extensions.get::<axum::extract::OriginalUri>() {
        Some(axum::extract::OriginalUri(original)) => original,
        None => &parts.uri,
    };
    #[cfg(not(feature = "axum"))]
    let uri = &parts.uri;
    uri.path_and_query().map_or("/", |p| p.as_str())
}

/// The TCP peer: [`PeerAddr`], or axum's `ConnectInfo<SocketAddr>`.
fn peer_ip(parts: &Parts) -> Option<IpAddr> {
    if let Some(PeerAddr(addr)) = parts.extensions.get::<PeerAddr>() {
        return Some(addr.ip());
    }
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(addr)) = parts
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(addr.ip());
    }
    None
}
