//! End to end over real HTTP: the axum example's application
//! (`examples/common/axum_app.rs`, behind `ApiKeyLayer`) on an ephemeral
//! port of 127.0.0.1, called with a real client. Every response body and
//! every refusal log line is checked for the tokens, their secret parts and
//! the signatures sent. (The shared case table, run against this layer and
//! the actix adapter, is in `tests/cases.rs`.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::type_complexity,
    reason = "test code: a failed expectation should panic"
)]

#[path = "../examples/common/axum_app.rs"]
pub mod axum_app;

use api_keys::ip::TrustedProxies;
use api_keys::signing::{ReplayConfig, ReplayRequest, SignedHeaders};
use api_keys::testing::ManualClock;
use api_keys::{
    Actor, CHECKSUM_CHARS, DomainAllowList, Environment, IpAllowList, KEY_ID_CHARS, KeyManager,
    KeyRecord, KeyStore, MemoryKeyStore, NewKey, OwnerId, Policy, RequestSigner, RollOptions,
    Scopes, SealingKey, SealingKeyRing, SignatureConfig, Token, VerifiedKey, WriteCondition,
};
use api_keys_tower::ApiKeyLayer;
use axum::routing::get;
use axum::{Extension, Router};
use reqwest::RequestBuilder;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use time::UtcDateTime;
use time::macros::utc_datetime;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const T0: UtcDateTime = utc_datetime!(2026-07-01 10:00);
const BODY: &[u8] = br#"{"currency":"BTC","amount":"0.01","foreign_id":"w-1001"}"#;

// ---- server ----------------------------------------------------------------

/// A server on an ephemeral port, stopped gracefully by [`Server::stop`].
struct Server {
    base: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

async fn serve(router: Router) -> Server {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async {
            let _ = stopped.await;
        })
        .await
    });
    Server { base, stop, task }
}

impl Server {
    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

// ---- fixture ---------------------------------------------------------------

fn ring(version: u32) -> SealingKeyRing {
    SealingKeyRing::new(SealingKey::new(version, &[7u8; 32]).unwrap())
}

fn manager(policy: Policy) -> (Arc<KeyManager<MemoryKeyStore>>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(T0));
    let keys = KeyManager::builder(MemoryKeyStore::new())
        .clock(Arc::clone(&clock))
        .policy(policy)
        .sealing_keys(ring(1))
        .build()
        .unwrap();
    (Arc::new(keys), clock)
}

/// A response, fully read.
struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// The public error code of a refusal.
    fn error(&self) -> String {
        self.json()["error"].as_str().unwrap().to_owned()
    }
}

/// The example app with a manual clock, a client, and everything needed to
/// check that nothing secret ever comes back.
struct Fx {
    keys: Arc<KeyManager<MemoryKeyStore>>,
    clock: Arc<ManualClock>,
    admin: Actor,
    owner: OwnerId,
    server: Server,
    client: reqwest::Client,
    /// Refusal log lines, as the example would log them.
    log: Arc<Mutex<Vec<String>>>,
    /// Every response body received.
    bodies: Mutex<Vec<Vec<u8>>>,
    /// What must appear in no response body and no log line.
    secrets: Mutex<Vec<String>>,
}

impl Fx {
    async fn start() -> Self {
        Self::start_with(Policy::default()).await
    }

    async fn start_with(policy: Policy) -> Self {
        let (keys, clock) = manager(policy);
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        let app = axum_app::app_with_refusal_hook(Arc::clone(&keys), move |r| {
            sink.lock().unwrap().push(format!(
                "refused {} {} -> {} ({}) {:?}",
                r.method,
                r.path,
                r.refusal.status(),
                r.refusal.reason(),
                r.refusal.error()
            ));
        })
        .unwrap();
        Self::with_router(keys, clock, log, app).await
    }

    async fn with_router(
        keys: Arc<KeyManager<MemoryKeyStore>>,
        clock: Arc<ManualClock>,
        log: Arc<Mutex<Vec<String>>>,
        router: Router,
    ) -> Self {
        Fx {
            keys,
            clock,
            admin: Actor::new("ops").unwrap(),
            owner: OwnerId::new("merchant_1").unwrap(),
            server: serve(router).await,
            // Loopback only: never through a proxy from the environment.
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
            log,
            bodies: Mutex::new(Vec::new()),
            secrets: Mutex::new(Vec::new()),
        }
    }

    /// Never to be seen again: the token and its secret part.
    fn forbid_token(&self, token: &str) {
        let body = token.rsplit('_').next().unwrap();
        let secret = &body[KEY_ID_CHARS..body.len() - CHECKSUM_CHARS];
        assert!(secret.len() >= 27, "secret part of {} chars", secret.len());
        let mut secrets = self.secrets.lock().unwrap();
        secrets.push(token.to_owned());
        secrets.push(secret.to_owned());
    }

    async fn key(&self, spec: NewKey) -> (KeyRecord, Token) {
        let created = self.keys.create_async(&self.admin, spec).await.unwrap();
        self.forbid_token(created.token.expose_secret());
        (created.record, created.token)
    }

    fn secret_key(&self) -> NewKey {
        NewKey::secret(self.owner.clone(), "server")
    }

    /// Signs `body` with a signing key's token; the signature is forbidden
    /// in responses from now on.
    fn sign(&self, token: &Token, body: &[u8]) -> SignedHeaders {
        let signer = RequestSigner::for_token(token.expose_secret()).unwrap();
        let headers = signer.sign(body);
        self.secrets.lock().unwrap().push(headers.signature.clone());
        headers
    }

    fn get(&self, path: &str) -> RequestBuilder {
        self.client.get(format!("{}{path}", self.server.base))
    }

    fn post(&self, path: &str) -> RequestBuilder {
        self.client.post(format!("{}{path}", self.server.base))
    }

    fn signed_post(&self, path: &str, headers: &SignedHeaders, body: &[u8]) -> RequestBuilder {
        let mut request = self.post(path).body(body.to_vec());
        for (name, value) in headers.pairs() {
            request = request.header(name, value);
        }
        request
    }

    async fn send(&self, request: RequestBuilder) -> Reply {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap().to_vec();
        self.bodies.lock().unwrap().push(body.clone());
        Reply {
            status,
            headers,
            body,
        }
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Stops the server and checks no body or log line leaked a secret.
    async fn finish(self) {
        self.server.stop().await;
        let secrets = self.secrets.into_inner().unwrap();
        assert!(!secrets.is_empty());
        let bodies = self.bodies.into_inner().unwrap();
        assert!(!bodies.is_empty());
        let log = self.log.lock().unwrap();
        for secret in &secrets {
            for body in &bodies {
                let body = String::from_utf8_lossy(body);
                assert!(
                    !body.contains(secret.as_str()),
                    "a response leaked a secret: {body}"
                );
            }
            for line in log.iter() {
                assert!(
                    !line.contains(secret.as_str()),
                    "a log line leaked a secret: {line}"
                );
            }
        }
    }
}

fn assert_refused(reply: &Reply, status: u16, code: &str) {
    assert_eq!(
        reply.status,
        status,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.error(), code);
    assert_eq!(
        reply.headers[reqwest::header::CONTENT_TYPE],
        "application/json"
    );
    if status == 401
        || status == 400
            && code == "invalid_request"
            && reply
                .headers
                .contains_key(reqwest::header::WWW_AUTHENTICATE)
    {
        let challenge = reply.headers[reqwest::header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
    }
}

// ---- bearer keys -------------------------------------------------------------

#[tokio::test]
async fn valid_key_reaches_the_handler_with_its_verified_key() {
    let fx = Fx::start().await;
    let (record, token) = fx.key(fx.secret_key().environment(Environment::Test)).await;

    for request in [
        fx.get("/v1/whoami").bearer_auth(token.expose_secret()),
        fx.get("/v1/whoami")
            .header("Authorization", format!("bearer {}", token.expose_secret())),
        fx.get("/v1/whoami")
            .header("X-Api-Key", token.expose_secret()),
    ] {
        let reply = fx.send(request).await;
        assert_eq!(reply.status, 200);
        let json = reply.json();
        assert_eq!(json["owner"], "merchant_1");
        assert_eq!(json["environment"], Environment::Test.to_string());
        assert_eq!(json["kind"], record.kind.to_string());
        assert_eq!(json["key_id"], record.id.to_string());
        assert_eq!(json["in_grace"], false);
    }
    assert!(fx.log().is_empty(), "{:?}", fx.log());
    fx.finish().await;
}

#[tokio::test]
async fn missing_unknown_ambiguous_and_malformed_credentials() {
    let fx = Fx::start().await;
    let (_, token) = fx.key(fx.secret_key()).await;
    let token = token.expose_secret();
    // A well-formed key this server never issued.
    let stranger = KeyManager::new(MemoryKeyStore::new())
        .create(&fx.admin, fx.secret_key())
        .unwrap()
        .token;
    fx.forbid_token(stranger.expose_secret());

    let cases = [
        ("no credentials", fx.get("/v1/whoami"), 401),
        (
            "unknown key",
            fx.get("/v1/whoami").bearer_auth(stranger.expose_secret()),
            401,
        ),
        (
            "unknown key in X-Api-Key",
            fx.get("/v1/whoami")
                .header("X-Api-Key", stranger.expose_secret()),
            401,
        ),
        (
            "live changed to test (checksum)",
            fx.get("/v1/whoami")
                .bearer_auth(token.replacen("sk_live_", "sk_test_", 1)),
            401,
        ),
        (
            "garbage",
            fx.get("/v1/whoami").bearer_auth("not-a-key"),
            401,
        ),
        (
            "another scheme",
            fx.get("/v1/whoami").basic_auth(token, Some("x")),
            401,
        ),
        (
            "token without a scheme",
            fx.get("/v1/whoami").header("Authorization", token),
            401,
        ),
        (
            "both headers, both valid",
            fx.get("/v1/whoami")
                .bearer_auth(token)
                .header("X-Api-Key", token),
            400,
        ),
        (
            "X-Api-Key twice",
            fx.get("/v1/whoami")
                .header("X-Api-Key", token)
                .header("X-Api-Key", token),
            400,
        ),
        (
            "bearer and signature headers",
            fx.get("/v1/whoami")
                .bearer_auth(token)
                .header("X-Processing-Key", "4oqXG47O0q0hcARxIYNCAG"),
            400,
        ),
        (
            "a space inside the token",
            fx.get("/v1/whoami")
                .header("Authorization", format!("Bearer {token} x")),
            400,
        ),
    ];
    for (label, request, status) in cases {
        let reply = fx.send(request).await;
        assert_eq!(reply.status, status, "{label}");
        let code = if status == 400 {
            "invalid_request"
        } else {
            "invalid_api_key"
        };
        assert_refused(&reply, status, code);
    }
    let log = fx.log();
    assert_eq!(log.len(), 11, "{log:?}");
    assert!(log[0].contains("missing_credentials"), "{log:?}");
    assert!(log[1].contains("unknown_key"), "{log:?}");
    assert!(log[5].contains("unsupported_scheme"), "{log:?}");
    assert!(log[7].contains("ambiguous_credentials"), "{log:?}");
    assert!(log[8].contains("repeated_header"), "{log:?}");
    assert!(log[10].contains("malformed_credentials"), "{log:?}");
    fx.finish().await;
}

#[tokio::test]
async fn a_revoked_key_is_refused_on_the_next_request() {
    let fx = Fx::start().await;
    let (record, token) = fx.key(fx.secret_key()).await;
    let whoami = || fx.get("/v1/whoami").bearer_auth(token.expose_secret());

    assert_eq!(fx.send(whoami()).await.status, 200);
    fx.keys.revoke_async(&fx.admin, &record.id).await.unwrap();
    assert_refused(&fx.send(whoami()).await, 401, "invalid_api_key");
    assert!(fx.log()[0].contains("(revoked)"), "{:?}", fx.log());
    fx.finish().await;
}

#[tokio::test]
async fn a_rolled_key_works_during_its_grace_window_only() {
    let fx = Fx::start().await;
    let (record, old) = fx.key(fx.secret_key()).await;
    let rolled = fx
        .keys
        .roll_async(&fx.admin, &record.id, RollOptions::default())
        .await
        .unwrap();
    fx.forbid_token(rolled.token.expose_secret());
    let whoami = |token: &Token| fx.get("/v1/whoami").bearer_auth(token.expose_secret());

    let reply = fx.send(whoami(&old)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["in_grace"], true);
    assert_eq!(reply.json()["key_id"], record.id.to_string());
    let reply = fx.send(whoami(&rolled.token)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["in_grace"], false);
    assert_eq!(reply.json()["key_id"], rolled.successor.id.to_string());

    fx.clock
        .advance(time::Duration::hours(12) - time::Duration::seconds(1));
    assert_eq!(fx.send(whoami(&old)).await.status, 200);
    fx.clock.advance(time::Duration::seconds(1));
    assert_refused(&fx.send(whoami(&old)).await, 401, "invalid_api_key");
    assert_eq!(fx.send(whoami(&rolled.token)).await.status, 200);
    assert!(fx.log()[0].contains("(grace_ended)"), "{:?}", fx.log());
    fx.finish().await;
}

// ---- route requirements ------------------------------------------------------

#[tokio::test]
async fn environment_and_kind_required_by_a_route() {
    let fx = Fx::start().await;
    let (_, test_key) = fx.key(fx.secret_key().environment(Environment::Test)).await;
    let (_, live_key) = fx.key(fx.secret_key()).await;
    let (_, publishable) = fx.key(NewKey::publishable(fx.owner.clone(), "web")).await;
    let balance = |token: &Token| {
        fx.get("/v1/live/balance")
            .bearer_auth(token.expose_secret())
    };

    assert_refused(&fx.send(balance(&test_key)).await, 403, "forbidden");
    assert_refused(&fx.send(balance(&publishable)).await, 403, "forbidden");
    let reply = fx.send(balance(&live_key)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["environment"], Environment::Live.to_string());
    let log = fx.log();
    assert!(log[0].contains("(wrong_environment)"), "{log:?}");
    assert!(log[1].contains("(wrong_kind)"), "{log:?}");
    fx.finish().await;
}

#[tokio::test]
async fn a_missing_scope_is_403() {
    let fx = Fx::start().await;
    let (_, read_only) = fx
        .key(
            fx.secret_key()
                .scopes(Scopes::new(["charges:read"]).unwrap()),
        )
        .await;
    let (_, unrestricted) = fx.key(fx.secret_key()).await;

    let list = fx
        .send(fx.get("/v1/charges").bearer_auth(read_only.expose_secret()))
        .await;
    assert_eq!(list.status, 200);
    assert_eq!(list.json()["owner"], "merchant_1");
    let create = fx
        .send(
            fx.post("/v1/charges")
                .bearer_auth(read_only.expose_secret()),
        )
        .await;
    assert_refused(&create, 403, "forbidden");
    let create = fx
        .send(
            fx.post("/v1/charges")
                .bearer_auth(unrestricted.expose_secret()),
        )
        .await;
    assert_eq!(create.status, 201);
    assert_eq!(create.json()["created"], true);
    assert!(fx.log()[0].contains("(missing_scope)"), "{:?}", fx.log());
    fx.finish().await;
}

// ---- allow-lists -------------------------------------------------------------

#[tokio::test]
async fn origin_allow_list() {
    let fx = Fx::start().await;
    let (_, token) = fx
        .key(
            fx.secret_key()
                .allowed_domains(DomainAllowList::new(["shop.example.com"]).unwrap()),
        )
        .await;
    let whoami = || fx.get("/v1/whoami").bearer_auth(token.expose_secret());

    let evil = fx
        .send(whoami().header("Origin", "https://evil.example.com"))
        .await;
    assert_refused(&evil, 403, "forbidden");
    assert_refused(&fx.send(whoami()).await, 403, "forbidden");
    let twice = whoami()
        .header("Origin", "https://shop.example.com")
        .header("Origin", "https://shop.example.com");
    assert_refused(&fx.send(twice).await, 403, "forbidden");

    let shop = fx
        .send(whoami().header("Origin", "https://shop.example.com"))
        .await;
    assert_eq!(shop.status, 200);
    let referer = fx
        .send(whoami().header("Referer", "https://shop.example.com/checkout?step=2"))
        .await;
    assert_eq!(referer.status, 200);
    let log = fx.log();
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(
        log.iter().all(|l| l.contains("(origin_not_allowed)")),
        "{log:?}"
    );
    fx.finish().await;
}

#[tokio::test]
async fn ip_allow_list_uses_the_peer_address() {
    let fx = Fx::start().await;
    let (_, elsewhere) = fx
        .key(
            fx.secret_key()
                .allowed_ips(IpAllowList::parse("203.0.113.0/24").unwrap()),
        )
        .await;
    let (_, local) = fx
        .key(
            fx.secret_key()
                .allowed_ips(IpAllowList::parse("127.0.0.1").unwrap()),
        )
        .await;

    let refused = fx
        .send(fx.get("/v1/whoami").bearer_auth(elsewhere.expose_secret()))
        .await;
    assert_refused(&refused, 403, "forbidden");
    // Forwarding headers are ignored: no proxy is trusted.
    let spoofed = fx
        .get("/v1/whoami")
        .bearer_auth(elsewhere.expose_secret())
        .header("X-Forwarded-For", "203.0.113.9");
    assert_refused(&fx.send(spoofed).await, 403, "forbidden");
    let accepted = fx
        .send(fx.get("/v1/whoami").bearer_auth(local.expose_secret()))
        .await;
    assert_eq!(accepted.status, 200);
    assert!(fx.log()[0].contains("(ip_not_allowed)"), "{:?}", fx.log());
    fx.finish().await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_address_counts() {
    let (keys, clock) = manager(Policy::default());
    let proxies = TrustedProxies::new(IpAllowList::parse("127.0.0.1").unwrap());
    let router = Router::new().route(
        "/whoami",
        get(|Extension(key): Extension<VerifiedKey>| async move { key.owner().to_string() })
            .route_layer(ApiKeyLayer::new(Arc::clone(&keys)).trusted_proxies(proxies)),
    );
    let fx = Fx::with_router(keys, clock, Arc::default(), router).await;
    let (_, token) = fx
        .key(
            fx.secret_key()
                .allowed_ips(IpAllowList::parse("203.0.113.0/24").unwrap()),
        )
        .await;
    let whoami = || fx.get("/whoami").bearer_auth(token.expose_secret());

    let forwarded = fx
        .send(whoami().header("X-Forwarded-For", "203.0.113.9"))
        .await;
    assert_eq!(forwarded.status, 200);
    assert_eq!(forwarded.body, b"merchant_1");
    assert_refused(&fx.send(whoami()).await, 403, "forbidden");
    let other = fx
        .send(whoami().header("X-Forwarded-For", "198.51.100.1"))
        .await;
    assert_refused(&other, 403, "forbidden");
    let malformed = fx
        .send(whoami().header("X-Forwarded-For", "203.0.113.9,,"))
        .await;
    assert_refused(&malformed, 400, "invalid_request");
    fx.finish().await;
}

// ---- signed requests ---------------------------------------------------------

#[tokio::test]
async fn signed_requests_over_the_raw_body() {
    let fx = Fx::start().await;
    let (record, token) = fx.key(fx.secret_key().signing()).await;
    let (_, bearer) = fx.key(fx.secret_key()).await;
    let headers = fx.sign(&token, BODY);
    assert_eq!(headers.key, record.id.to_string());

    let reply = fx
        .send(fx.signed_post("/v1/withdrawals", &headers, BODY))
        .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let json = reply.json();
    assert_eq!(json["owner"], "merchant_1");
    assert_eq!(json["body_len"], BODY.len());
    assert_eq!(json["body"].as_str().unwrap().as_bytes(), BODY);

    // One byte changed.
    let mut tampered = BODY.to_vec();
    tampered[15] ^= 1;
    let reply = fx
        .send(fx.signed_post("/v1/withdrawals", &headers, &tampered))
        .await;
    assert_refused(&reply, 401, "invalid_api_key");
    // The signature of another body.
    let other = fx.sign(&token, b"{}");
    let reply = fx
        .send(fx.signed_post("/v1/withdrawals", &other, BODY))
        .await;
    assert_refused(&reply, 401, "invalid_api_key");
    // Upper-case hex, a missing signature, a repeated key header.
    let upper = SignedHeaders {
        signature: headers.signature.to_uppercase(),
        ..headers.clone()
    };
    let reply = fx
        .send(fx.signed_post("/v1/withdrawals", &upper, BODY))
        .await;
    assert_refused(&reply, 401, "invalid_api_key");
    let unsigned = fx
        .post("/v1/withdrawals")
        .header("X-Processing-Key", &headers.key)
        .body(BODY);
    assert_refused(&fx.send(unsigned).await, 401, "invalid_api_key");
    let repeated = fx
        .signed_post("/v1/withdrawals", &headers, BODY)
        .header("X-Processing-Key", &headers.key);
    assert_refused(&fx.send(repeated).await, 400, "invalid_request");
    // A bearer key's id cannot sign.
    let bearer_id = fx
        .keys
        .engine()
        .format()
        .parse(bearer.expose_secret())
        .unwrap()
        .id();
    let not_signing = SignedHeaders {
        key: bearer_id.to_string(),
        ..headers.clone()
    };
    let reply = fx
        .send(fx.signed_post("/v1/withdrawals", &not_signing, BODY))
        .await;
    assert_refused(&reply, 401, "invalid_api_key");
    // The signing key's secret never travels as a bearer token; a bearer
    // key cannot call a signed-only route.
    let as_bearer = fx.get("/v1/whoami").bearer_auth(token.expose_secret());
    assert_refused(&fx.send(as_bearer).await, 401, "invalid_api_key");
    let bearer_on_signed = fx
        .post("/v1/withdrawals")
        .bearer_auth(bearer.expose_secret())
        .body(BODY);
    assert_refused(&fx.send(bearer_on_signed).await, 401, "signature_required");
    // A signed request also works on a route that does not require one.
    let empty = fx.sign(&token, b"");
    let whoami = fx
        .get("/v1/whoami")
        .header("X-Processing-Key", &empty.key)
        .header("X-Processing-Signature", &empty.signature);
    let reply = fx.send(whoami).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["key_id"], record.id.to_string());

    let log = fx.log();
    assert_eq!(log.len(), 8, "{log:?}");
    assert!(log[0].contains("(bad_signature)"), "{log:?}");
    assert!(log[4].contains("(repeated_header)"), "{log:?}");
    assert!(log[5].contains("(not_a_signing_key)"), "{log:?}");
    assert!(log[6].contains("(signing_key_as_bearer)"), "{log:?}");
    assert!(log[7].contains("(signature_required)"), "{log:?}");
    fx.finish().await;
}

#[tokio::test]
async fn an_oversized_signed_body_is_413() {
    let policy = Policy {
        signatures: SignatureConfig {
            max_body_len: 1024,
            ..SignatureConfig::default()
        },
        ..Policy::default()
    };
    let fx = Fx::start_with(policy).await;
    let (_, token) = fx.key(fx.secret_key().signing()).await;

    let at_limit = vec![b'a'; 1024];
    let headers = fx.sign(&token, &at_limit);
    let reply = fx
        .send(fx.signed_post("/v1/withdrawals", &headers, &at_limit))
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["body_len"], 1024);

    let over = vec![b'a'; 1025];
    let headers = fx.sign(&token, &over);
    let reply = fx
        .send(fx.signed_post("/v1/withdrawals", &headers, &over))
        .await;
    assert_refused(&reply, 413, "payload_too_large");
    assert!(fx.log()[0].contains("(body_too_large)"), "{:?}", fx.log());
    fx.finish().await;
}

#[tokio::test]
async fn replay_protected_mode_binds_method_and_path() {
    let policy = Policy {
        signatures: SignatureConfig {
            replay: Some(ReplayConfig::default()),
            ..SignatureConfig::default()
        },
        ..Policy::default()
    };
    let fx = Fx::start_with(policy).await;
    let (_, token) = fx.key(fx.secret_key().signing()).await;
    let signer = RequestSigner::for_token(token.expose_secret()).unwrap();
    let sign = |nonce: &str, path: &str| {
        let headers = signer
            .sign_replay_protected(
                &ReplayRequest {
                    timestamp: T0,
                    nonce,
                    method: "POST",
                    path,
                },
                BODY,
            )
            .unwrap();
        fx.secrets.lock().unwrap().push(headers.signature.clone());
        headers
    };

    let first = sign("nonce-0000000000000001", "/v1/withdrawals");
    let reply = fx
        .send(fx.signed_post("/v1/withdrawals", &first, BODY))
        .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    // The same request again is a replay.
    let again = fx
        .send(fx.signed_post("/v1/withdrawals", &first, BODY))
        .await;
    assert_refused(&again, 401, "invalid_api_key");
    // Signed for another path.
    let elsewhere = sign("nonce-0000000000000002", "/v1/withdrawals?to=attacker");
    let reply = fx
        .send(fx.signed_post("/v1/withdrawals", &elsewhere, BODY))
        .await;
    assert_refused(&reply, 401, "invalid_api_key");
    // A body-only signature is not enough in this mode.
    let body_only = fx.sign(&token, BODY);
    let reply = fx
        .send(fx.signed_post("/v1/withdrawals", &body_only, BODY))
        .await;
    assert_refused(&reply, 401, "invalid_api_key");
    let log = fx.log();
    assert!(log[0].contains("(replayed)"), "{log:?}");
    assert!(log[1].contains("(bad_signature)"), "{log:?}");
    fx.finish().await;
}

#[tokio::test]
async fn replay_protected_mode_inside_a_nested_router_binds_the_full_path() {
    let policy = Policy {
        signatures: SignatureConfig {
            replay: Some(ReplayConfig::default()),
            ..SignatureConfig::default()
        },
        ..Policy::default()
    };
    let (keys, clock) = manager(policy);
    let router = Router::new().nest("/api", axum_app::app(Arc::clone(&keys)).unwrap());
    let fx = Fx::with_router(keys, clock, Arc::default(), router).await;
    let (_, token) = fx.key(fx.secret_key().signing()).await;
    let signer = RequestSigner::for_token(token.expose_secret()).unwrap();
    let sign = |nonce: &str, path: &str| {
        let request = ReplayRequest {
            timestamp: T0,
            nonce,
            method: "POST",
            path,
        };
        let headers = signer.sign_replay_protected(&request, BODY).unwrap();
        fx.secrets.lock().unwrap().push(headers.signature.clone());
        headers
    };

    // The client signs the path it sends, prefix included.
    let full = sign("nonce-0000000000000001", "/api/v1/withdrawals");
    let reply = fx
        .send(fx.signed_post("/api/v1/withdrawals", &full, BODY))
        .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let stripped = sign("nonce-0000000000000002", "/v1/withdrawals");
    let reply = fx
        .send(fx.signed_post("/api/v1/withdrawals", &stripped, BODY))
        .await;
    assert_refused(&reply, 401, "invalid_api_key");
    fx.finish().await;
}

// ---- failures ----------------------------------------------------------------

#[tokio::test]
async fn a_service_failure_is_500_and_fails_closed() {
    // A signing key sealed under a sealing key this server does not have.
    let (issuer, _) = manager(Policy::default());
    let created = issuer
        .create_async(
            &Actor::new("ops").unwrap(),
            NewKey::secret(OwnerId::new("merchant_1").unwrap(), "server").signing(),
        )
        .await
        .unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let keys = Arc::new(
        KeyManager::builder(MemoryKeyStore::new())
            .clock(Arc::clone(&clock))
            .sealing_keys(ring(2))
            .build()
            .unwrap(),
    );
    keys.store()
        .insert(&created.record, WriteCondition::Always)
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&log);
    let app = axum_app::app_with_refusal_hook(Arc::clone(&keys), move |r| {
        sink.lock().unwrap().push(format!(
            "{} {} {:?}",
            r.refusal.status(),
            r.refusal.reason(),
            r.refusal.error()
        ));
    })
    .unwrap();
    let fx = Fx::with_router(keys, clock, log, app).await;
    fx.forbid_token(created.token.expose_secret());

    let headers = fx.sign(&created.token, BODY);
    let reply = fx
        .send(fx.signed_post("/v1/withdrawals", &headers, BODY))
        .await;
    assert_refused(&reply, 500, "internal_error");
    let log = fx.log();
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(log[0].starts_with("500 service_failure Some("), "{log:?}");
    fx.finish().await;
}

#[tokio::test]
async fn the_plain_app_serves_without_a_hook() {
    let (keys, clock) = manager(Policy::default());
    let app = axum_app::app(Arc::clone(&keys)).unwrap();
    let fx = Fx::with_router(keys, clock, Arc::default(), app).await;
    let (_, token) = fx.key(fx.secret_key()).await;
    let ok = fx
        .send(fx.get("/v1/whoami").bearer_auth(token.expose_secret()))
        .await;
    assert_eq!(ok.status, 200);
    assert_refused(&fx.send(fx.get("/v1/whoami")).await, 401, "invalid_api_key");
    // Unknown routes and methods are the router's business, not the layer's.
    assert_eq!(fx.send(fx.get("/v1/nothing")).await.status, 404);
    assert_eq!(fx.send(fx.post("/v1/whoami")).await.status, 405);
    fx.finish().await;
}

// ---- extractor, management errors, plain tower ---------------------------------

#[tokio::test]
async fn the_extractor_without_the_layer_fails_closed() {
    let (keys, clock) = manager(Policy::default());
    let router = Router::new()
        .route(
            "/unguarded",
            get(
                |api_keys_tower::ApiKey(key): api_keys_tower::ApiKey| async move {
                    key.owner().to_string()
                },
            ),
        )
        .route(
            "/manage",
            get(|| async {
                Err::<(), _>(api_keys_tower::ManagementError(api_keys::Error::NotFound(
                    api_keys::KeyId::from_bytes([3; 16]),
                )))
            }),
        );
    let fx = Fx::with_router(keys, clock, Arc::default(), router).await;
    let (_, token) = fx.key(fx.secret_key()).await;
    let reply = fx
        .send(fx.get("/unguarded").bearer_auth(token.expose_secret()))
        .await;
    assert_refused(&reply, 500, "internal_error");
    let reply = fx.send(fx.get("/manage")).await;
    assert_refused(&reply, 404, "not_found");
    fx.finish().await;
}

#[tokio::test]
async fn an_announced_oversized_body_is_refused_before_it_is_read() {
    let fx = Fx::start().await;
    let (_, token) = fx.key(fx.secret_key().signing()).await;
    let headers = fx.sign(&token, b"{}");
    let limit = fx.keys.max_signed_body_len();
    // Announces more than the limit, sends two bytes: the server must
    // answer from `Content-Length` alone, without waiting for the body.
    let request = fx
        .post("/v1/withdrawals")
        .header("X-Processing-Key", &headers.key)
        .header("X-Processing-Signature", &headers.signature)
        .header("Content-Length", (limit + 1).to_string())
        .body(&b"{}"[..]);
    let reply = fx.send(request).await;
    assert_refused(&reply, 413, "payload_too_large");
    fx.finish().await;
}

#[tokio::test]
async fn plain_tower_with_a_peer_addr_extension() {
    use api_keys_tower::PeerAddr;
    use axum::body::Body;
    use tower::{ServiceBuilder, ServiceExt};

    let (keys, _) = manager(Policy::default());
    let owner = OwnerId::new("merchant_1").unwrap();
    let created = keys
        .create(
            &Actor::new("ops").unwrap(),
            NewKey::secret(owner, "x").allowed_ips(IpAllowList::parse("192.0.2.0/24").unwrap()),
        )
        .unwrap();
    let token = created.token;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let service = ServiceBuilder::new()
        .layer(ApiKeyLayer::new(Arc::clone(&keys)).on_refusal(move |r| {
            sink.lock()
                .unwrap()
                .push((r.refusal.reason(), r.key_id, r.peer_known));
        }))
        .service_fn(|request: http::Request<Body>| async move {
            let key = request.extensions().get::<VerifiedKey>().cloned();
            Ok::<_, std::convert::Infallible>(http::Response::new(Body::from(
                key.map(|k| k.owner().to_string()).unwrap_or_default(),
            )))
        });
    let call = |peer: Option<&str>| {
        let mut request = http::Request::get("/")
            .header("authorization", format!("Bearer {}", token.expose_secret()))
            .body(Body::empty())
            .unwrap();
        if let Some(peer) = peer {
            request
                .extensions_mut()
                .insert(PeerAddr(peer.parse().unwrap()));
        }
        service.clone().oneshot(request)
    };
    assert_eq!(call(Some("192.0.2.7:4000")).await.unwrap().status(), 200);
    assert_eq!(call(Some("198.51.100.7:4000")).await.unwrap().status(), 403);
    // No peer known: an IP-restricted key cannot be checked, so it is refused.
    assert_eq!(call(None).await.unwrap().status(), 403);
    // The hook says which key was refused and whether the peer was known,
    // so "no ConnectInfo" is told apart from "not on the list".
    let id = Some(created.record.id);
    assert_eq!(
        *seen.lock().unwrap(),
        [("ip_not_allowed", id, true), ("ip_not_allowed", id, false)]
    );
    // No credential, or a malformed one: no key id.
    let anonymous = http::Request::get("/").body(Body::empty()).unwrap();
    assert_eq!(
        service.clone().oneshot(anonymous).await.unwrap().status(),
        401
    );
    let garbled = http::Request::get("/")
        .header("x-api-key", "sk_live_not-a-token")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        service.clone().oneshot(garbled).await.unwrap().status(),
        401
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen[2], ("missing_credentials", None, false));
    assert_eq!(seen[3].1, None);
}
