//! The shared HTTP case table (`http-cases`) against `ApiKeyMiddleware`
//! behind actix-web, over real HTTP on 127.0.0.1. `api-keys-tower` runs the
//! same table.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed expectation should panic"
)]

use actix_web::web::{self, Bytes};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
use api_keys::VerifiedKey;
use api_keys_actix::{ApiKeyMiddleware, to_response};
use api_keys_http_cases::{
    Fixture, TOKEN_PATH, granted_body, routes, run, success_body, token_exchange, trusted_proxies,
};
use std::sync::Arc;

async fn handler(key: web::ReqData<VerifiedKey>, body: Bytes) -> String {
    success_body(&key, &body)
}

#[actix_web::test]
async fn the_shared_case_table_passes_on_actix() {
    let fixture = Arc::new(Fixture::new());
    let app_fixture = Arc::clone(&fixture);
    let server = HttpServer::new(move || {
        let mut app = App::new();
        for route in routes() {
            let recorder = Arc::clone(&app_fixture);
            let auth = ApiKeyMiddleware::new(Arc::clone(&app_fixture.keys))
                .requirements(route.requirements)
                .on_refusal(move |r| recorder.record(r.refusal));
            let auth = if route.behind_proxy {
                auth.trusted_proxies(trusted_proxies())
            } else {
                auth
            };
            let method = match route.method {
                "GET" => web::get(),
                "POST" => web::post(),
                other => panic!("method {other}"),
            };
            app = app.service(
                web::resource(route.path)
                    .wrap(auth)
                    .route(method.to(handler)),
            );
        }
        // The token endpoint (the client-credentials exchange).
        let endpoint = Arc::clone(&app_fixture);
        app.route(
            TOKEN_PATH,
            web::post().to(move |request: HttpRequest, payload: web::Payload| {
                let fx = Arc::clone(&endpoint);
                async move {
                    let exchanged =
                        api_keys_actix::exchange(&fx.keys, &token_exchange(), &request, payload)
                            .await;
                    match exchanged {
                        Ok(granted) => HttpResponse::Ok().body(granted_body(&granted)),
                        Err(refused) => {
                            fx.record_exchange(&refused);
                            to_response(refused.response())
                        }
                    }
                }
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .unwrap();
    let base = format!("http://{}", server.addrs()[0]);
    let server = server.run();
    let handle = server.handle();
    let task = actix_web::rt::spawn(server);
    run(&fixture, &base).await;
    handle.stop(true).await;
    task.await.unwrap().unwrap();
}
