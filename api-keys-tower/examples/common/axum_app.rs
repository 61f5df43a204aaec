//! The demo API: a few axum routes, each behind an [`ApiKeyLayer`] with its
//! own requirements. Shared by `examples/axum_middleware.rs` and
//! `tests/e2e.rs`.
//!
//! | route | requires |
//! |---|---|
//! | `GET /v1/whoami` | any valid key |
//! | `GET /v1/charges` | scope `charges:read` |
//! | `POST /v1/charges` | a secret key with scope `charges:write` |
//! | `GET /v1/live/balance` | a live secret key |
//! | `POST /v1/withdrawals` | a signed request, scope `withdrawals:write` |

use api_keys::{Environment, Error, KeyKind, KeyManager, MemoryKeyStore, Scopes};
use api_keys_tower::{ApiKey, ApiKeyLayer, RefusedRequest};
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use std::sync::Arc;

/// The demo API, refusals unreported.
///
/// # Errors
///
/// Only for a malformed scope name (scopes are validated when the routes
/// are built).
pub fn app(keys: Arc<KeyManager<MemoryKeyStore>>) -> Result<Router, Error> {
    routes(ApiKeyLayer::new(keys))
}

/// The demo API, every refusal reported to `on_refusal` (e.g. a logger).
///
/// # Errors
///
/// As [`app`].
pub fn app_with_refusal_hook(
    keys: Arc<KeyManager<MemoryKeyStore>>,
    on_refusal: impl Fn(&RefusedRequest<'_>) + Send + Sync + 'static,
) -> Result<Router, Error> {
    routes(ApiKeyLayer::new(keys).on_refusal(on_refusal))
}

fn routes(auth: ApiKeyLayer<MemoryKeyStore>) -> Result<Router, Error> {
    Ok(Router::new()
        .route("/v1/whoami", get(whoami).route_layer(auth.clone()))
        .route(
            "/v1/charges",
            get(list_charges)
                .route_layer(auth.clone().require_scopes(Scopes::new(["charges:read"])?)),
        )
        .route(
            "/v1/charges",
            post(create_charge).route_layer(
                auth.clone()
                    .require_kind(KeyKind::Secret)
                    .require_scopes(Scopes::new(["charges:write"])?),
            ),
        )
        .route(
            "/v1/live/balance",
            get(balance).route_layer(
                auth.clone()
                    .require_environment(Environment::Live)
                    .require_kind(KeyKind::Secret),
            ),
        )
        .route(
            "/v1/withdrawals",
            post(withdraw).route_layer(
                auth.require_signed()
                    .require_scopes(Scopes::new(["withdrawals:write"])?),
            ),
        ))
}

/// Who is calling: the key the layer verified.
async fn whoami(ApiKey(key): ApiKey) -> Json<Value> {
    Json(json!({
        "owner": key.owner().as_str(),
        "environment": key.environment().to_string(),
        "kind": key.kind().to_string(),
        "key_id": key.id().to_string(),
        // A rolled key inside its grace window: the client should switch.
        "in_grace": key.in_grace(),
    }))
}

async fn list_charges(ApiKey(key): ApiKey) -> Json<Value> {
    Json(json!({ "owner": key.owner().as_str(), "charges": [] }))
}

async fn create_charge(ApiKey(key): ApiKey) -> (StatusCode, Json<Value>) {
    (
        StatusCode::CREATED,
        Json(json!({ "owner": key.owner().as_str(), "created": true })),
    )
}

async fn balance(ApiKey(key): ApiKey) -> Json<Value> {
    Json(json!({
        "owner": key.owner().as_str(),
        "environment": key.environment().to_string(),
        "available": 0,
    }))
}

/// A signed request: the body is exactly the bytes the signature covers.
async fn withdraw(ApiKey(key): ApiKey, body: Bytes) -> Json<Value> {
    Json(json!({
        "owner": key.owner().as_str(),
        "body_len": body.len(),
        "body": String::from_utf8_lossy(&body),
    }))
}
