//! Keys exchanged for tokens, end to end over HTTP on 127.0.0.1: a client
//! presents its API key to `POST /oauth2/token` (the client-credentials
//! grant, with HTTP Basic as `curl -u` sends it, or the key id and token
//! pair), gets a short-lived access token the host minted, and calls the
//! API with it. Every call with the access token re-checks the key it came
//! from (`KeyManager::check_key_async`): revoking the key stops the token
//! on the next call.
//!
//! ```sh
//! cargo run -p api-keys-tower --example token_exchange
//! ```
#![allow(clippy::print_stdout, reason = "demo output")]

use api_keys_tower::api_keys::http::{
    BasicForms, Refusal, RequestFacts, Requirements, TokenExchange, parse_bearer,
};
use api_keys_tower::api_keys::ip::TrustedProxies;
use api_keys_tower::api_keys::{
    Actor, DomainAllowList, KeyId, KeyManager, MemoryKeyStore, NewKey, OwnerId, Rejection, Scopes,
};
use api_keys_tower::{ApiKey, ApiKeyLayer};
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::TryRng;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long an access token lives.
const ACCESS_TOKEN_TTL: Duration = Duration::from_secs(300);

/// The host's own access tokens: random, opaque, kept server-side with the
/// key they came from. (Any format works, a signed JWT included, as long
/// as it carries the key id and the key is re-checked on every call.)
#[derive(Default)]
struct AccessTokens(Mutex<HashMap<String, (KeyId, Instant)>>);

impl AccessTokens {
    fn mint(&self, key: KeyId) -> Result<String, BoxError> {
        let mut bytes = [0u8; 32];
        rand::rngs::SysRng
            .try_fill_bytes(&mut bytes)
            .map_err(|_| "the OS random generator failed")?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let expires = Instant::now() + ACCESS_TOKEN_TTL;
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token.clone(), (key, expires));
        Ok(token)
    }

    /// The key an unexpired access token was minted for.
    fn key_of(&self, token: &str) -> Option<KeyId> {
        let tokens = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match tokens.get(token) {
            Some(&(key, expires)) if Instant::now() < expires => Some(key),
            _ => None,
        }
    }
}

struct App {
    keys: Arc<KeyManager<MemoryKeyStore>>,
    exchange: TokenExchange,
    tokens: AccessTokens,
}

/// `POST /oauth2/token`: the key in, an access token out (RFC 6749 §5.1).
async fn token(State(app): State<Arc<App>>, request: Request) -> Response {
    let granted = match api_keys_tower::exchange(&app.keys, &app.exchange, request).await {
        Ok(granted) => granted,
        Err(refused) => {
            eprintln!("token endpoint refused: {}", refused.reason());
            return refused.response().to_http();
        }
    };
    let Ok(access_token) = app.tokens.mint(granted.key().id()) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let body = format!(
        r#"{{"access_token":"{access_token}","token_type":"Bearer","expires_in":{}}}"#,
        ACCESS_TOKEN_TTL.as_secs()
    );
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            // RFC 6749 §5.1: a token response is never cached.
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// `GET /v1/balance` with an access token: the token names its key, and the
/// key is checked again (status, expiry, grace, origin, IP, scopes) on
/// this very request.
async fn balance(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let refuse = |refusal: Refusal| refusal.response().to_http::<Body>();
    let Some(authorization) = headers.get(header::AUTHORIZATION) else {
        return refuse(Refusal::MissingCredentials);
    };
    let key = match parse_bearer(authorization.as_bytes()).map(|t| app.tokens.key_of(t)) {
        Ok(Some(key)) => key,
        Ok(None) => {
            return refuse(Refusal::Rejected(Rejection::UnknownKey));
        }
        Err(refusal) => return refuse(refusal),
    };
    let facts = match RequestFacts::from_headers(&headers, Some(peer.ip()), &TrustedProxies::none())
    {
        Ok(facts) => facts,
        Err(refusal) => return refuse(refusal),
    };
    let route = Requirements::new();
    match app.keys.check_key_async(&key, &facts.context(&route)).await {
        Ok(key) => format!(r#"{{"owner":"{}","balance":"12.50"}}"#, key.owner()).into_response(),
        Err(e) => refuse(Refusal::from(e)),
    }
}

/// `GET /v1/whoami` straight with the key in HTTP Basic (Stripe's
/// `curl -u sk_test_…:`), no exchange.
async fn whoami(ApiKey(key): ApiKey) -> String {
    key.owner().as_str().to_owned()
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let keys = Arc::new(KeyManager::new(MemoryKeyStore::new()));
    let admin = Actor::new("demo:admin")?;
    let created = keys
        .create_async(
            &admin,
            NewKey::secret(OwnerId::new("acct_demo")?, "partner integration")
                .scopes(Scopes::new(["balance:read"])?)
                .allowed_domains(DomainAllowList::new(["partner.example"])?),
        )
        .await?;
    let app = Arc::new(App {
        keys: Arc::clone(&keys),
        exchange: TokenExchange::new().require_scopes(Scopes::new(["balance:read"])?),
        tokens: AccessTokens::default(),
    });
    let router = Router::new()
        .route("/oauth2/token", post(token))
        .route("/v1/balance", get(balance))
        .route(
            "/v1/whoami",
            get(whoami)
                .route_layer(ApiKeyLayer::new(Arc::clone(&keys)).allow_basic(BasicForms::BOTH)),
        )
        .with_state(app);
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });

    let secret = created.token.expose_secret();
    let id = created.record.id.to_string();
    println!("Listening on {base}. The flow, as curl would run it:");
    println!(
        "  curl -u {secret}: -H 'Origin: https://partner.example' -d grant_type=client_credentials {base}/oauth2/token"
    );
    println!(
        "  curl -H 'Authorization: Bearer <access_token>' -H 'Origin: https://partner.example' {base}/v1/balance"
    );

    let client = reqwest::Client::builder().no_proxy().build()?;
    let origin = "https://partner.example";
    let expect = |what: &str, got: StatusCode, want: u16| -> Result<(), BoxError> {
        println!("{what}: {got}");
        if got.as_u16() == want {
            Ok(())
        } else {
            Err(format!("{what}: expected {want}, got {got}").into())
        }
    };

    // HTTP Basic straight on an API route (Stripe's form).
    let r = client
        .get(format!("{base}/v1/whoami"))
        .basic_auth(secret, Some(""))
        .header("Origin", origin)
        .send()
        .await?;
    expect("GET /v1/whoami with -u <key>:", r.status(), 200)?;

    // The exchange, with the key id and token pair (Moov's form).
    let r = client
        .post(format!("{base}/oauth2/token"))
        .basic_auth(&id, Some(secret))
        .header("Origin", origin)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await?;
    expect("POST /oauth2/token", r.status(), 200)?;
    let body: serde_json::Value = serde_json::from_str(&r.text().await?)?;
    let access = body
        .get("access_token")
        .and_then(serde_json::Value::as_str)
        .ok_or("no access_token")?
        .to_owned();

    // From an origin the key does not allow: refused at the token endpoint.
    let r = client
        .post(format!("{base}/oauth2/token"))
        .basic_auth(secret, Some(""))
        .header("Origin", "https://evil.example")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await?;
    expect("POST /oauth2/token from another origin", r.status(), 400)?;

    let call = || {
        client
            .get(format!("{base}/v1/balance"))
            .bearer_auth(&access)
            .header("Origin", origin)
            .send()
    };
    expect(
        "GET /v1/balance with the access token",
        call().await?.status(),
        200,
    )?;
    let r = client
        .get(format!("{base}/v1/balance"))
        .bearer_auth(&access)
        .header("Origin", "https://evil.example")
        .send()
        .await?;
    expect("GET /v1/balance from another origin", r.status(), 403)?;

    // Revoke the key: its access token stops at the next call.
    keys.revoke_async(&admin, &created.record.id).await?;
    expect(
        "GET /v1/balance after revoking the key",
        call().await?.status(),
        401,
    )?;

    server.abort();
    println!("Done.");
    Ok(())
}
