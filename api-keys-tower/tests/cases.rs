//! The shared HTTP case table (`http-cases`) against `ApiKeyLayer` behind
//! axum, over real HTTP on 127.0.0.1. `api-keys-actix` runs the same table.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed expectation should panic"
)]

use api_keys_http_cases::{
    Fixture, TOKEN_PATH, granted_body, routes, run, success_body, token_exchange, trusted_proxies,
};
use api_keys_tower::{ApiKey, ApiKeyLayer};
use axum::Router;
use axum::body::Bytes;
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, get, post};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

async fn handler(ApiKey(key): ApiKey, body: Bytes) -> String {
    success_body(&key, &body)
}

#[tokio::test]
async fn the_shared_case_table_passes_on_tower() {
    let fixture = Arc::new(Fixture::new());
    let mut app = Router::new();
    for route in routes() {
        let recorder = Arc::clone(&fixture);
        let layer = ApiKeyLayer::new(Arc::clone(&fixture.keys))
            .requirements(route.requirements)
            .on_refusal(move |r| recorder.record(r.refusal));
        let layer = if route.behind_proxy {
            layer.trusted_proxies(trusted_proxies())
        } else {
            layer
        };
        let method: MethodRouter = match route.method {
            "GET" => get(handler),
            "POST" => post(handler),
            other => panic!("method {other}"),
        };
        app = app.route(route.path, method.route_layer(layer));
    }
    // The token endpoint (the client-credentials exchange).
    let endpoint = Arc::clone(&fixture);
    app = app.route(
        TOKEN_PATH,
        post(move |request: axum::extract::Request| {
            let fx = Arc::clone(&endpoint);
            async move {
                match api_keys_tower::exchange(&fx.keys, &token_exchange(), request).await {
                    Ok(granted) => granted_body(&granted).into_response(),
                    Err(refused) => {
                        fx.record_exchange(&refused);
                        refused.response().to_http()
                    }
                }
            }
        }),
    );
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    run(&fixture, &base).await;
    server.abort();
}
