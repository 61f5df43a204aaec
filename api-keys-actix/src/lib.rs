//! actix-web middleware that checks API keys issued by `api-keys`, written
//! only against [`api_keys::http`]: it converts actix's request and response
//! types and nothing else, which is what proves the module
//! framework-neutral (the shared HTTP case table runs against it and
//! against `api-keys-tower`).
//!
//! ```no_run
//! use std::sync::Arc;
//! use actix_web::{App, HttpServer, web};
//! use api_keys::{KeyKind, KeyManager, MemoryKeyStore, Scopes, VerifiedKey};
//! use api_keys_actix::ApiKeyMiddleware;
//!
//! async fn whoami(key: web::ReqData<VerifiedKey>) -> String {
//!     key.owner().as_str().to_owned()
//! }
//!
//! # async fn serve() -> std::io::Result<()> {
//! let keys = Arc::new(KeyManager::new(MemoryKeyStore::new()));
//! HttpServer::new(move || {
//!     let auth = ApiKeyMiddleware::new(Arc::clone(&keys));
//!     App::new()
//!         .service(web::resource("/v1/whoami").wrap(auth.clone()).route(web::get().to(whoami)))
//!         .service(web::resource("/v1/charges")
//!             .wrap(auth.require_kind(KeyKind::Secret)
//!                 .require_scopes(Scopes::new(["charges:write"]).unwrap()))
//!             .route(web::post().to(whoami)))
//! })
//! .bind(("127.0.0.1", 8080))?
//! .run()
//! .await
//! # }
//! ```

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::HeaderMap;
use actix_web::http::{Method, StatusCode};
use actix_web::web::Bytes;
use actix_web::{HttpMessage, HttpResponse};
use api_keys::http::{
    BasicForms, BodyBuffer, CONTENT_TYPE, ErrorResponse, ExchangeError, Granted, Headers,
    MAX_EXCHANGE_BODY_LEN, Presented, Refusal, Requirements, TokenExchange, WWW_AUTHENTICATE,
};
use api_keys::ip::TrustedProxies;
use api_keys::{
    AsyncKeyStore, Environment, HeaderField, KeyId, KeyKind, KeyManager, Scopes, VerifiedKey,
};
use futures_util::StreamExt;
use std::fmt;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

/// actix's header map, as [`api_keys::http`] reads headers.
#[derive(Debug, Clone, Copy)]
pub struct ActixHeaders<'a>(pub &'a HeaderMap);

impl Headers for ActixHeaders<'_> {
    fn field(&self, name: &str) -> HeaderField<'_> {
        HeaderField::from_values(self.0.get_all(name).map(|v| v.as_bytes()))
    }
}

/// An [`ErrorResponse`] as an actix response.
#[must_use]
pub fn to_response(answer: ErrorResponse) -> HttpResponse {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(status);
    response.insert_header((CONTENT_TYPE, api_keys::http::JSON));
    if let Some(challenge) = answer.www_authenticate {
        response.insert_header((WWW_AUTHENTICATE, challenge));
    }
    response.body(answer.body)
}

/// A refused request, as reported to the hook set with
/// [`ApiKeyMiddleware::on_refusal`]. Carries no header value.
#[derive(Debug)]
#[non_exhaustive]
pub struct RefusedRequest<'a> {
    /// Why ([`Refusal::reason`] is precise).
    pub refusal: &'a Refusal,
    /// The request method.
    pub method: &'a Method,
    /// The request path, without the query string.
    pub path: &'a str,
    /// The public key id the request named, when well formed.
    pub key_id: Option<KeyId>,
    /// Whether the peer address was known (without it, keys with an IP
    /// allow-list are refused as `ip_not_allowed`).
    pub peer_known: bool,
}

type RefusalHook = Arc<dyn Fn(&RefusedRequest<'_>) + Send + Sync>;

/// Requires a valid API key on the resources it wraps; the
/// [`VerifiedKey`] is then in the request extensions (`web::ReqData`).
pub struct ApiKeyMiddleware<S> {
    keys: Arc<KeyManager<S>>,
    requirements: Requirements,
    proxies: TrustedProxies,
    on_refusal: Option<RefusalHook>,
}

impl<S> Clone for ApiKeyMiddleware<S> {
    fn clone(&self) -> Self {
        Self {
            keys: Arc::clone(&self.keys),
            requirements: self.requirements.clone(),
            proxies: self.proxies.clone(),
            on_refusal: self.on_refusal.clone(),
        }
    }
}

impl<S> fmt::Debug for ApiKeyMiddleware<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyMiddleware")
            .field("requirements", &self.requirements)
            .field("proxies", &self.proxies)
            .finish_non_exhaustive()
    }
}

impl<S: AsyncKeyStore> ApiKeyMiddleware<S> {
    /// Any valid key of `keys`, bearer or signed; no proxy trusted.
    #[must_use]
    pub fn new(keys: Arc<KeyManager<S>>) -> Self {
        Self {
            keys,
            requirements: Requirements::new(),
            proxies: TrustedProxies::none(),
            on_refusal: None,
        }
    }

    /// Replaces all the requirements at once.
    #[must_use]
    pub fn requirements(mut self, requirements: Requirements) -> Self {
        self.requirements = requirements;
        self
    }

    /// The key must grant all of these scopes.
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

    /// The key must be of this kind.
    #[must_use]
    pub fn require_kind(mut self, kind: KeyKind) -> Self {
        self.requirements = self.requirements.require_kind(kind);
        self
    }

    /// Only signed requests are accepted.
    #[must_use]
    pub fn require_signed(mut self) -> Self {
        self.requirements = self.requirements.require_signed();
        self
    }

    /// Also accepts these `Authorization: Basic` forms (see
    /// [`Requirements::allow_basic`]). Default: none.
    #[must_use]
    pub fn allow_basic(mut self, forms: BasicForms) -> Self {
        self.requirements = self.requirements.allow_basic(forms);
        self
    }

    /// Forwarding headers are read from these proxies.
    #[must_use]
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.proxies = proxies;
        self
    }

    /// Called for every refused request.
    #[must_use]
    pub fn on_refusal(
        mut self,
        hook: impl Fn(&RefusedRequest<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.on_refusal = Some(Arc::new(hook));
        self
    }
}

impl<S, Svc, B> Transform<Svc, ServiceRequest> for ApiKeyMiddleware<S>
where
    S: AsyncKeyStore + 'static,
    Svc: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = ApiKeyService<S, Svc>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: Svc) -> Self::Future {
        ready(Ok(ApiKeyService {
            service: Rc::new(service),
            settings: Rc::new(self.clone()),
        }))
    }
}

/// The service [`ApiKeyMiddleware`] wraps around a resource.
pub struct ApiKeyService<S, Svc> {
    service: Rc<Svc>,
    settings: Rc<ApiKeyMiddleware<S>>,
}

impl<S, Svc> fmt::Debug for ApiKeyService<S, Svc> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyService").finish_non_exhaustive()
    }
}

type LocalFuture<T> = Pin<Box<dyn Future<Output = T>>>;

impl<S, Svc, B> Service<ServiceRequest> for ApiKeyService<S, Svc>
where
    S: AsyncKeyStore + 'static,
    Svc: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalFuture<Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, mut request: ServiceRequest) -> Self::Future {
        let service = Rc::clone(&self.service);
        let settings = Rc::clone(&self.settings);
        Box::pin(async move {
            match authenticate(&settings, &mut request).await {
                Ok(key) => {
                    request.extensions_mut().insert(key);
                    Ok(service.call(request).await?.map_into_left_body())
                }
                Err((refusal, key_id)) => {
                    if let Some(hook) = &settings.on_refusal {
                        hook(&RefusedRequest {
                            refusal: &refusal,
                            method: request.method(),
                            path: request.path(),
                            key_id,
                            peer_known: request.peer_addr().is_some(),
                        });
                    }
                    let response = to_response(refusal.response_for(&settings.requirements));
                    Ok(request.into_response(response).map_into_right_body())
                }
            }
        })
    }
}

/// Translates the request for [`api_keys::http`]; puts a signed body back.
/// On refusal, the key id the request named (for the hook).
async fn authenticate<S: AsyncKeyStore>(
    settings: &ApiKeyMiddleware<S>,
    request: &mut ServiceRequest,
) -> Result<VerifiedKey, (Refusal, Option<KeyId>)> {
    let headers = ActixHeaders(request.headers());
    let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let presented = Presented::from_headers(
        &headers,
        request.method().as_str(),
        target,
        request.peer_addr().map(|addr| addr.ip()),
        &settings.proxies,
    )
    .map_err(|refusal| (refusal, None))?;
    let keys = &settings.keys;
    let named = |refusal: Refusal| {
        let key_id = presented.key_id(keys.engine().format());
        (refusal, key_id)
    };
    if !presented.needs_body() {
        return presented
            .verify_async(keys, &settings.requirements, b"")
            .await
            .map_err(named);
    }
    let mut buffer =
        BodyBuffer::for_request(&headers, keys.max_signed_body_len()).map_err(named)?;
    let mut payload = request.take_payload();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| named(Refusal::UnreadableBody))?;
        buffer.push(&chunk).map_err(named)?;
    }
    let body = Bytes::from(buffer.into_vec());
    let key = presented
        .verify_async(keys, &settings.requirements, &body)
        .await
        .map_err(named)?;
    request.set_payload(Payload::from(body));
    Ok(key)
}

/// A host's token endpoint (the client-credentials grant) under actix-web:
/// reads the form body (at most [`MAX_EXCHANGE_BODY_LEN`] bytes) and the
/// peer address, then [`TokenExchange::read`] and
/// [`TokenExchange::verify_async`]. Answer a refusal with
/// `to_response(error.response())`.
///
/// # Errors
///
/// The [`ExchangeError`] to answer.
pub async fn exchange<S: AsyncKeyStore>(
    keys: &KeyManager<S>,
    exchange: &TokenExchange,
    request: &actix_web::HttpRequest,
    mut payload: actix_web::web::Payload,
) -> Result<Granted, ExchangeError> {
    let headers = ActixHeaders(request.headers());
    let mut buffer = BodyBuffer::for_request(&headers, MAX_EXCHANGE_BODY_LEN)?;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| Refusal::UnreadableBody)?;
        buffer.push(&chunk)?;
    }
    let request = exchange.read(
        &headers,
        request.method().as_str(),
        request.peer_addr().map(|addr| addr.ip()),
        buffer.as_bytes(),
    )?;
    exchange.verify_async(keys, &request).await
}
