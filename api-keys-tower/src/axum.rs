//! axum glue: the [`ApiKey`] extractor and [`ManagementError`].

use api_keys::VerifiedKey;
use api_keys::http::{ErrorResponse, error_response};
use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::request::Parts;

/// The key [`ApiKeyLayer`](crate::ApiKeyLayer) verified for this request,
/// as an axum extractor.
///
/// On a route without the layer there is no key: the handler is not run
/// and the client gets 500 `internal_error` (a wiring mistake fails
/// closed, never open).
#[derive(Debug, Clone)]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub struct ApiKey(pub VerifiedKey);

impl<State: Send + Sync> FromRequestParts<State> for ApiKey {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &State) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<VerifiedKey>() {
            Some(key) => Ok(ApiKey(key.clone())),
            None => Err(ErrorResponse::INTERNAL_ERROR.to_http::<Body>()),
        }
    }
}

/// A failed management operation (create, roll, revoke, …) as an axum
/// response: [`api_keys::http::error_response`], i.e. the status of
/// [`Error::http_status`](api_keys::Error::http_status) and
/// `{"error":"<public code>"}`, never the error's message.
#[derive(Debug)]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub struct ManagementError(pub api_keys::Error);

impl From<api_keys::Error> for ManagementError {
    fn from(e: api_keys::Error) -> Self {
        ManagementError(e)
    }
}

impl IntoResponse for ManagementError {
    fn into_response(self) -> Response {
        error_response(&self.0).to_http::<Body>()
    }
}
