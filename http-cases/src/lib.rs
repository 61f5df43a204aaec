//! One table of HTTP cases, run over real loopback HTTP against every
//! adapter built on `api_keys::http` (the tower layer and the actix-web
//! adapter), so they cannot drift apart.
//!
//! An adapter's test starts a [`Fixture`], serves the [`routes`] on
//! 127.0.0.1 with the fixture's key manager ([`trusted_proxies`] on the
//! routes [`behind_proxy`](Route::behind_proxy); handlers answer
//! [`success_body`]; the refusal hook passes [`Refusal::reason`] to
//! [`Fixture::record`]) and calls [`run`] with the server's base URL. `run`
//! sends every case of [`CASES`] and checks the status, the body code, the
//! `WWW-Authenticate` challenge, the precise reason the hook saw, and that
//! no response body or reason ever contains a token, a secret or a
//! signature that was sent.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test support: a broken fixture should panic"
)]

use api_keys::http::{
    BASIC_CHALLENGE, BasicForms, ExchangeError, Granted, Refusal, Requirements, TokenExchange,
};
use api_keys::ip::TrustedProxies;
use api_keys::signing::{ReplayConfig, ReplayRequest, SignedHeaders};
use api_keys::testing::ManualClock;
use api_keys::{
    Actor, CHECKSUM_CHARS, DomainAllowList, Environment, IpAllowList, KEY_ID_CHARS, KeyKind,
    KeyManager, MemoryKeyStore, NewKey, OwnerId, Policy, RequestSigner, RollOptions, Scopes,
    SealingKey, SealingKeyRing, SignatureConfig, Token, VerifiedKey,
};
use std::sync::{Arc, Mutex};
use time::macros::utc_datetime;
use time::{Duration, UtcDateTime};

/// The instant the table runs at (the fixture's clock).
pub const T0: UtcDateTime = utc_datetime!(2026-07-01 10:00);

/// The largest signed body the fixture accepts.
pub const MAX_BODY: usize = 1024;

/// A route every adapter under test serves.
#[derive(Debug, Clone)]
pub struct Route {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// The path.
    pub path: &'static str,
    /// What the route requires of a key.
    pub requirements: Requirements,
    /// Whether the peer (the table's client, 127.0.0.1) is a trusted proxy
    /// on this route: serve it with [`trusted_proxies`] when set.
    pub behind_proxy: bool,
}

/// The proxies a route with [`Route::behind_proxy`] trusts: loopback.
#[must_use]
pub fn trusted_proxies() -> TrustedProxies {
    TrustedProxies::new(IpAllowList::parse("127.0.0.1,::1").unwrap())
}

/// The routes, each answering [`success_body`] once the key is verified.
#[must_use]
pub fn routes() -> Vec<Route> {
    vec![
        Route {
            method: "GET",
            path: "/any",
            requirements: Requirements::new(),
            behind_proxy: false,
        },
        Route {
            method: "GET",
            path: "/scoped",
            requirements: Requirements::new()
                .require_scopes(Scopes::new(["charges:write"]).unwrap()),
            behind_proxy: false,
        },
        Route {
            method: "GET",
            path: "/live",
            requirements: Requirements::new()
                .require_environment(Environment::Live)
                .require_kind(KeyKind::Secret),
            behind_proxy: false,
        },
        Route {
            method: "POST",
            path: "/signed",
            requirements: Requirements::new().require_signed(),
            behind_proxy: false,
        },
        Route {
            method: "GET",
            path: "/proxied",
            requirements: Requirements::new(),
            behind_proxy: true,
        },
        Route {
            method: "GET",
            path: "/basic",
            requirements: Requirements::new().allow_basic(BasicForms::BOTH),
            behind_proxy: false,
        },
        Route {
            method: "GET",
            path: "/basic-stripe",
            requirements: Requirements::new().allow_basic(BasicForms::TOKEN_AS_USER),
            behind_proxy: false,
        },
    ]
}

/// The path of the token endpoint every adapter under test serves (`POST`,
/// [`token_exchange`]): on success it answers [`granted_body`], on refusal
/// the error's response after passing [`ExchangeError::reason`] to
/// [`Fixture::record_exchange`].
pub const TOKEN_PATH: &str = "/oauth2/token";

/// The token endpoint's settings: both Basic forms and body credentials.
#[must_use]
pub fn token_exchange() -> TokenExchange {
    TokenExchange::new()
}

/// What the token endpoint answers on success (RFC 6749 §5.1 fields; the
/// access token is a stand-in: minting is the host's business).
#[must_use]
pub fn granted_body(granted: &Granted) -> String {
    serde_json::json!({
        "access_token": format!("at_{}", granted.key().id()),
        "token_type": "Bearer",
        "expires_in": 300,
        "key_id": granted.key().id().to_string(),
        "scope": granted.scope().map(|s| s.iter().collect::<Vec<_>>().join(" ")),
    })
    .to_string()
}

/// What every route answers on success: the verified key's id, whether it
/// is in its grace window, and the body it was handed (length and text), so
/// the table sees the body of a signed request arrive unchanged.
#[must_use]
pub fn success_body(key: &VerifiedKey, body: &[u8]) -> String {
    serde_json::json!({
        "key_id": key.id().to_string(),
        "in_grace": key.in_grace(),
        "signed": key.is_signed(),
        "body_len": body.len(),
        "body": String::from_utf8_lossy(body),
    })
    .to_string()
}

/// The keys of the table, created once per fixture.
#[derive(Debug)]
pub struct Fixture {
    /// The manager the server under test verifies with (replay-protected
    /// signing mode, [`MAX_BODY`]).
    pub keys: Arc<KeyManager<MemoryKeyStore>>,
    /// Its clock, at [`T0`].
    pub clock: Arc<ManualClock>,
    reasons: Mutex<Vec<String>>,
    secrets: Mutex<Vec<String>>,
    valid: Token,
    test_env: Token,
    publishable: Token,
    read_only: Token,
    revoked: Token,
    in_grace: Token,
    after_grace: Token,
    expired: Token,
    origin_bound: Token,
    ip_bound: Token,
    signing: Token,
    unknown: Token,
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

impl Fixture {
    /// A manager with a manual clock and every key the table uses.
    #[must_use]
    pub fn new() -> Self {
        let clock = Arc::new(ManualClock::new(T0 - Duration::hours(13)));
        let policy = Policy {
            signatures: SignatureConfig {
                max_body_len: MAX_BODY,
                replay: Some(ReplayConfig::default()),
                ..SignatureConfig::default()
            },
            ..Policy::default()
        };
        let keys = Arc::new(
            KeyManager::builder(MemoryKeyStore::new())
                .clock(Arc::clone(&clock))
                .policy(policy)
                .sealing_keys(SealingKeyRing::new(SealingKey::new(1, &[9u8; 32]).unwrap()))
                .build()
                .unwrap(),
        );
        let admin = Actor::new("table").unwrap();
        let owner = OwnerId::new("merchant_1").unwrap();
        let secret = |name: &str| NewKey::secret(owner.clone(), name);
        let create = |spec: NewKey| keys.create(&admin, spec).unwrap();

        // 13 h before T0: a key rolled now is past its 12 h grace at T0;
        // a key expiring 1 h before T0 is expired.
        let after_grace = create(secret("rolled long ago"));
        keys.roll(&admin, &after_grace.record.id, RollOptions::default())
            .unwrap();
        let expired = create(secret("expired").expires_at(T0 - Duration::hours(1)));
        // 1 h before T0: rolled, still in grace at T0.
        clock.set(T0 - Duration::hours(1));
        let in_grace = create(secret("rolled recently"));
        keys.roll(&admin, &in_grace.record.id, RollOptions::default())
            .unwrap();
        clock.set(T0);

        let revoked = create(secret("revoked"));
        keys.revoke(&admin, &revoked.record.id).unwrap();
        let unknown = KeyManager::new(MemoryKeyStore::new())
            .create(&admin, secret("elsewhere"))
            .unwrap();
        let fixture = Self {
            valid: create(secret("valid")).token,
            test_env: create(secret("test").environment(Environment::Test)).token,
            publishable: create(NewKey::publishable(owner.clone(), "web")).token,
            read_only: create(secret("read only").scopes(Scopes::new(["charges:read"]).unwrap()))
                .token,
            origin_bound: create(
                secret("shop").allowed_domains(DomainAllowList::new(["shop.example.com"]).unwrap()),
            )
            .token,
            ip_bound: create(
                secret("office").allowed_ips(IpAllowList::parse("203.0.113.0/24").unwrap()),
            )
            .token,
            signing: create(secret("signer").signing()).token,
            revoked: revoked.token,
            in_grace: in_grace.token,
            after_grace: after_grace.token,
            expired: expired.token,
            unknown: unknown.token,
            keys: Arc::clone(&keys),
            clock,
            reasons: Mutex::new(Vec::new()),
            secrets: Mutex::new(Vec::new()),
        };
        for token in [
            &fixture.valid,
            &fixture.test_env,
            &fixture.publishable,
            &fixture.read_only,
            &fixture.revoked,
            &fixture.in_grace,
            &fixture.after_grace,
            &fixture.expired,
            &fixture.origin_bound,
            &fixture.ip_bound,
            &fixture.signing,
            &fixture.unknown,
        ] {
            fixture.forbid_token(token.expose_secret());
        }
        fixture
    }

    /// For the adapter's refusal hook: the precise reason it was given.
    pub fn record(&self, refusal: &Refusal) {
        self.reasons
            .lock()
            .unwrap()
            .push(refusal.reason().to_owned());
    }

    /// For the token endpoint: the precise reason of a refused exchange.
    pub fn record_exchange(&self, error: &ExchangeError) {
        self.reasons.lock().unwrap().push(error.reason().to_owned());
    }

    /// The token and its secret part must never be seen in a response.
    fn forbid_token(&self, token: &str) {
        let body = token.rsplit('_').next().unwrap();
        let secret = &body[KEY_ID_CHARS..body.len() - CHECKSUM_CHARS];
        let mut secrets = self.secrets.lock().unwrap();
        secrets.push(token.to_owned());
        secrets.push(secret.to_owned());
    }

    fn sign(&self, nonce: &str, timestamp: UtcDateTime, body: &[u8]) -> SignedHeaders {
        let signer = RequestSigner::for_token(self.signing.expose_secret()).unwrap();
        let request = ReplayRequest {
            timestamp,
            nonce,
            method: "POST",
            path: "/signed",
        };
        let headers = signer.sign_replay_protected(&request, body).unwrap();
        self.secrets.lock().unwrap().push(headers.signature.clone());
        headers
    }
}

/// One request of the table.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// A path of [`routes`].
    pub path: &'static str,
    /// Headers in order (a name may repeat).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Request {
    fn get(path: &'static str) -> Self {
        Self {
            method: "GET",
            path,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    fn basic(self, user: &str, password: &str) -> Self {
        use base64::Engine as _;
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.header("Authorization", format!("Basic {encoded}"))
    }

    /// `curl -u <token>:`.
    fn stripe(self, token: &Token) -> Self {
        self.basic(token.expose_secret(), "")
    }

    /// `<key id>:<token>`.
    fn pair(self, token: &Token) -> Self {
        self.basic(&key_id(token), token.expose_secret())
    }

    /// A token request to [`TOKEN_PATH`] with this form body.
    fn token(body: &str) -> Self {
        Self {
            method: "POST",
            path: TOKEN_PATH,
            headers: vec![(
                "Content-Type".to_owned(),
                "application/x-www-form-urlencoded".to_owned(),
            )],
            body: body.as_bytes().to_vec(),
        }
    }

    fn bearer(self, token: &Token) -> Self {
        self.header("Authorization", format!("Bearer {}", token.expose_secret()))
    }

    fn signed(headers: &SignedHeaders, body: &[u8]) -> Self {
        let mut request = Self {
            method: "POST",
            path: "/signed",
            headers: Vec::new(),
            body: body.to_vec(),
        };
        for (name, value) in headers.pairs() {
            request = request.header(name, value);
        }
        request
    }
}

/// The public key id of a token (its text between the prefix and the
/// secret).
fn key_id(token: &Token) -> String {
    let body = token.expose_secret().rsplit('_').next().unwrap();
    body[..KEY_ID_CHARS].to_owned()
}

/// The expected answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// 200, the route's [`success_body`].
    Ok {
        /// `in_grace` in the body.
        in_grace: bool,
    },
    /// 200 from the token endpoint, [`granted_body`].
    Granted {
        /// The `scope` granted, if one was asked for.
        scope: Option<&'static str>,
    },
    /// A refusal.
    Refused {
        /// The status.
        status: u16,
        /// The body's public code.
        code: &'static str,
        /// The `WWW-Authenticate` value, if any.
        challenge: Option<&'static str>,
        /// The precise reason the adapter's hook saw.
        reason: &'static str,
    },
}

const OK: Expect = Expect::Ok { in_grace: false };
const fn refused(
    status: u16,
    code: &'static str,
    challenge: Option<&'static str>,
    reason: &'static str,
) -> Expect {
    Expect::Refused {
        status,
        code,
        challenge,
        reason,
    }
}
const INVALID_TOKEN: Option<&str> = Some(r#"Bearer error="invalid_token""#);
const INVALID_REQUEST: Option<&str> = Some(r#"Bearer error="invalid_request""#);
const fn invalid_key(reason: &'static str) -> Expect {
    refused(401, "invalid_api_key", INVALID_TOKEN, reason)
}
const fn bad_request(reason: &'static str) -> Expect {
    refused(400, "invalid_request", INVALID_REQUEST, reason)
}
const fn forbidden(reason: &'static str) -> Expect {
    refused(403, "forbidden", None, reason)
}
const fn malformed_basic() -> Expect {
    bad_request("malformed_basic_credentials")
}
const BEARER_AND_BASIC: &str = r#"Bearer, Basic realm="api", charset="UTF-8""#;
const INVALID_TOKEN_AND_BASIC: &str =
    r#"Bearer error="invalid_token", Basic realm="api", charset="UTF-8""#;
const GRANTED: Expect = Expect::Granted { scope: None };
const fn invalid_client(reason: &'static str) -> Expect {
    refused(401, "invalid_client", Some(BASIC_CHALLENGE), reason)
}
const fn oauth_error(code: &'static str, reason: &'static str) -> Expect {
    refused(400, code, None, reason)
}
const CLIENT_CREDENTIALS: &str = "grant_type=client_credentials";

/// One case: a request built from the fixture, sent once per expected
/// answer (a replay sends the same request twice).
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// What it shows.
    pub name: &'static str,
    /// The request.
    pub request: fn(&Fixture) -> Request,
    /// The answers, in order.
    pub expect: &'static [Expect],
}

/// The signed body of the table.
const BODY: &[u8] = br#"{"currency":"BTC","amount":"0.01"}"#;

/// The table.
pub const CASES: &[Case] = &[
    Case {
        name: "valid bearer",
        request: |fx| Request::get("/any").bearer(&fx.valid),
        expect: &[OK],
    },
    Case {
        name: "valid X-Api-Key",
        request: |fx| Request::get("/any").header("X-Api-Key", fx.valid.expose_secret()),
        expect: &[OK],
    },
    Case {
        name: "lower-case scheme, two spaces",
        request: |fx| {
            Request::get("/any").header(
                "Authorization",
                format!("bearer  {}", fx.valid.expose_secret()),
            )
        },
        expect: &[OK],
    },
    Case {
        name: "no credentials",
        request: |_| Request::get("/any"),
        expect: &[refused(
            401,
            "invalid_api_key",
            Some("Bearer"),
            "missing_credentials",
        )],
    },
    Case {
        name: "unknown key",
        request: |fx| Request::get("/any").bearer(&fx.unknown),
        expect: &[invalid_key("unknown_key")],
    },
    Case {
        name: "revoked key",
        request: |fx| Request::get("/any").bearer(&fx.revoked),
        expect: &[invalid_key("revoked")],
    },
    Case {
        name: "rolled key within grace",
        request: |fx| Request::get("/any").bearer(&fx.in_grace),
        expect: &[Expect::Ok { in_grace: true }],
    },
    Case {
        name: "rolled key after grace",
        request: |fx| Request::get("/any").bearer(&fx.after_grace),
        expect: &[invalid_key("grace_ended")],
    },
    Case {
        name: "expired key",
        request: |fx| Request::get("/any").bearer(&fx.expired),
        expect: &[invalid_key("expired")],
    },
    Case {
        name: "wrong environment",
        request: |fx| Request::get("/live").bearer(&fx.test_env),
        expect: &[forbidden("wrong_environment")],
    },
    Case {
        name: "wrong kind",
        request: |fx| Request::get("/live").bearer(&fx.publishable),
        expect: &[forbidden("wrong_kind")],
    },
    Case {
        name: "live secret key on the live route",
        request: |fx| Request::get("/live").bearer(&fx.valid),
        expect: &[OK],
    },
    Case {
        name: "missing scope",
        request: |fx| Request::get("/scoped").bearer(&fx.read_only),
        expect: &[refused(
            403,
            "forbidden",
            Some(r#"Bearer error="insufficient_scope""#),
            "missing_scope",
        )],
    },
    Case {
        name: "origin refused",
        request: |fx| {
            Request::get("/any")
                .bearer(&fx.origin_bound)
                .header("Origin", "https://evil.example.com")
        },
        expect: &[forbidden("origin_not_allowed")],
    },
    Case {
        name: "origin allowed",
        request: |fx| {
            Request::get("/any")
                .bearer(&fx.origin_bound)
                .header("Origin", "https://shop.example.com")
        },
        expect: &[OK],
    },
    Case {
        name: "IP refused (the peer is 127.0.0.1; X-Forwarded-For from an untrusted peer is ignored)",
        request: |fx| {
            Request::get("/any")
                .bearer(&fx.ip_bound)
                .header("X-Forwarded-For", "203.0.113.9")
        },
        expect: &[forbidden("ip_not_allowed")],
    },
    Case {
        name: "behind a trusted proxy: the forwarded client is in the IP list",
        request: |fx| {
            Request::get("/proxied")
                .bearer(&fx.ip_bound)
                .header("X-Forwarded-For", "203.0.113.9")
        },
        expect: &[OK],
    },
    Case {
        name: "behind a trusted proxy: the forwarded client is not in the IP list",
        request: |fx| {
            Request::get("/proxied")
                .bearer(&fx.ip_bound)
                .header("X-Forwarded-For", "198.51.100.1")
        },
        expect: &[forbidden("ip_not_allowed")],
    },
    Case {
        name: "behind a trusted proxy: a malformed forwarding header",
        request: |fx| {
            Request::get("/proxied")
                .bearer(&fx.ip_bound)
                .header("X-Forwarded-For", "203.0.113.9,,")
        },
        expect: &[refused(
            400,
            "invalid_request",
            None,
            "bad_forwarding_header",
        )],
    },
    Case {
        name: "both credentials",
        request: |fx| {
            Request::get("/any")
                .bearer(&fx.valid)
                .header("X-Api-Key", fx.valid.expose_secret())
        },
        expect: &[bad_request("ambiguous_credentials")],
    },
    Case {
        name: "bearer and signature headers",
        request: |fx| {
            Request::get("/any")
                .bearer(&fx.valid)
                .header("X-Processing-Key", "4oqXG47O0q0hcARxIYNCAG")
        },
        expect: &[bad_request("ambiguous_credentials")],
    },
    Case {
        name: "repeated header",
        request: |fx| Request::get("/any").bearer(&fx.valid).bearer(&fx.valid),
        expect: &[bad_request("repeated_header")],
    },
    Case {
        name: "malformed bearer",
        request: |fx| {
            Request::get("/any").header(
                "Authorization",
                format!("Bearer {} x", fx.valid.expose_secret()),
            )
        },
        expect: &[bad_request("malformed_credentials")],
    },
    Case {
        name: "another scheme",
        request: |_| Request::get("/any").header("Authorization", "Basic dXNlcjpwYXNz"),
        expect: &[refused(
            401,
            "invalid_api_key",
            Some("Bearer"),
            "unsupported_scheme",
        )],
    },
    Case {
        name: "signed valid",
        request: |fx| Request::signed(&fx.sign("nonce-valid-000000001", T0, BODY), BODY),
        expect: &[OK],
    },
    Case {
        name: "signed tampered",
        request: |fx| {
            let headers = fx.sign("nonce-tampered-0000001", T0, BODY);
            Request::signed(&headers, br#"{"currency":"BTC","amount":"9.01"}"#)
        },
        expect: &[invalid_key("bad_signature")],
    },
    Case {
        name: "signed body too large",
        request: |fx| {
            let body = vec![b'a'; MAX_BODY + 1];
            Request::signed(&fx.sign("nonce-large-000000001", T0, &body), &body)
        },
        expect: &[refused(413, "payload_too_large", None, "body_too_large")],
    },
    Case {
        name: "signed body at the limit",
        request: |fx| {
            let body = vec![b'a'; MAX_BODY];
            Request::signed(&fx.sign("nonce-limit-000000001", T0, &body), &body)
        },
        expect: &[OK],
    },
    Case {
        name: "replay",
        request: |fx| Request::signed(&fx.sign("nonce-replay-00000001", T0, BODY), BODY),
        expect: &[OK, invalid_key("replayed")],
    },
    Case {
        name: "signed stale timestamp",
        request: |fx| {
            let stale = T0 - Duration::hours(1);
            Request::signed(&fx.sign("nonce-stale-000000001", stale, BODY), BODY)
        },
        expect: &[invalid_key("stale_request")],
    },
    Case {
        name: "bearer on a signed-only route",
        request: |fx| {
            let mut request = Request::get("/signed").bearer(&fx.valid);
            request.method = "POST";
            request
        },
        expect: &[refused(
            401,
            "signature_required",
            INVALID_TOKEN,
            "signature_required",
        )],
    },
    Case {
        name: "Basic: token as user name, empty password (Stripe)",
        request: |fx| Request::get("/basic").stripe(&fx.valid),
        expect: &[OK],
    },
    Case {
        name: "Basic: key id and token (Moov's pair)",
        request: |fx| Request::get("/basic").pair(&fx.valid),
        expect: &[OK],
    },
    Case {
        name: "Basic: the pair form on a Stripe-form-only route",
        request: |fx| Request::get("/basic-stripe").pair(&fx.valid),
        expect: &[refused(
            401,
            "invalid_api_key",
            Some(BEARER_AND_BASIC),
            "unsupported_scheme",
        )],
    },
    Case {
        name: "Basic route, no credentials: both challenges",
        request: |_| Request::get("/basic"),
        expect: &[refused(
            401,
            "invalid_api_key",
            Some(BEARER_AND_BASIC),
            "missing_credentials",
        )],
    },
    Case {
        name: "Basic: the Stripe form on its route",
        request: |fx| Request::get("/basic-stripe").stripe(&fx.valid),
        expect: &[OK],
    },
    Case {
        name: "Basic: on a route that does not allow it",
        request: |fx| Request::get("/any").stripe(&fx.valid),
        expect: &[refused(
            401,
            "invalid_api_key",
            Some("Bearer"),
            "unsupported_scheme",
        )],
    },
    Case {
        name: "Basic: the pair names another key",
        request: |fx| {
            Request::get("/basic").basic(&key_id(&fx.read_only), fx.valid.expose_secret())
        },
        expect: &[refused(
            401,
            "invalid_api_key",
            Some(INVALID_TOKEN_AND_BASIC),
            "basic_id_mismatch",
        )],
    },
    Case {
        name: "Basic: a revoked key",
        request: |fx| Request::get("/basic").pair(&fx.revoked),
        expect: &[refused(
            401,
            "invalid_api_key",
            Some(INVALID_TOKEN_AND_BASIC),
            "revoked",
        )],
    },
    Case {
        name: "Basic: malformed base64",
        request: |_| Request::get("/basic").header("Authorization", "Basic c2tfdGVzdF9hYmM6="),
        expect: &[malformed_basic()],
    },
    Case {
        name: "Basic: URL-safe alphabet",
        request: |_| Request::get("/basic").header("Authorization", "Basic -_-_"),
        expect: &[malformed_basic()],
    },
    Case {
        name: "Basic: no colon",
        request: |_| Request::get("/basic").header("Authorization", "Basic c2tfdGVzdF9hYmM="),
        expect: &[malformed_basic()],
    },
    Case {
        name: "Basic: not UTF-8",
        request: |_| Request::get("/basic").header("Authorization", "Basic /zp4"),
        expect: &[malformed_basic()],
    },
    Case {
        name: "Basic: over-long",
        request: |_| {
            Request::get("/basic").header("Authorization", format!("Basic {}", "QUFB".repeat(300)))
        },
        expect: &[malformed_basic()],
    },
    Case {
        name: "Basic: malformed even where Basic is not allowed",
        request: |_| Request::get("/any").header("Authorization", "Basic !!"),
        expect: &[malformed_basic()],
    },
    Case {
        name: "Basic and X-Api-Key",
        request: |fx| {
            Request::get("/basic")
                .stripe(&fx.valid)
                .header("X-Api-Key", fx.valid.expose_secret())
        },
        expect: &[bad_request("ambiguous_credentials")],
    },
    Case {
        name: "Basic repeated",
        request: |fx| Request::get("/basic").stripe(&fx.valid).stripe(&fx.valid),
        expect: &[bad_request("repeated_header")],
    },
    Case {
        name: "Basic on a signed-only route",
        request: |fx| {
            let mut request = Request::get("/signed").stripe(&fx.valid);
            request.method = "POST";
            request
        },
        expect: &[refused(
            401,
            "signature_required",
            INVALID_TOKEN,
            "signature_required",
        )],
    },
    Case {
        name: "exchange: Basic, Stripe form",
        request: |fx| Request::token(CLIENT_CREDENTIALS).stripe(&fx.valid),
        expect: &[GRANTED],
    },
    Case {
        name: "exchange: Basic, pair form",
        request: |fx| Request::token(CLIENT_CREDENTIALS).pair(&fx.valid),
        expect: &[GRANTED],
    },
    Case {
        name: "exchange: credentials in the form body, a granted scope",
        request: |fx| {
            Request::token(&format!(
                "{CLIENT_CREDENTIALS}&scope=charges%3Aread&client_id={}&client_secret={}",
                key_id(&fx.read_only),
                fx.read_only.expose_secret()
            ))
        },
        expect: &[Expect::Granted {
            scope: Some("charges:read"),
        }],
    },
    Case {
        name: "exchange: a scope the key does not grant",
        request: |fx| {
            Request::token(&format!("{CLIENT_CREDENTIALS}&scope=charges:write"))
                .stripe(&fx.read_only)
        },
        expect: &[oauth_error("invalid_scope", "missing_scope")],
    },
    Case {
        name: "exchange: no client authentication",
        request: |_| Request::token(CLIENT_CREDENTIALS),
        expect: &[invalid_client("missing_client_authentication")],
    },
    Case {
        name: "exchange: Basic and body credentials at once",
        request: |fx| {
            Request::token(&format!(
                "{CLIENT_CREDENTIALS}&client_id={}&client_secret={}",
                key_id(&fx.valid),
                fx.valid.expose_secret()
            ))
            .stripe(&fx.valid)
        },
        expect: &[oauth_error(
            "invalid_request",
            "multiple_client_authentication",
        )],
    },
    Case {
        name: "exchange: a bearer token is not a client authentication",
        request: |fx| Request::token(CLIENT_CREDENTIALS).bearer(&fx.valid),
        expect: &[invalid_client("unsupported_client_authentication")],
    },
    Case {
        name: "exchange: another grant type",
        request: |fx| Request::token("grant_type=password").stripe(&fx.valid),
        expect: &[oauth_error(
            "unsupported_grant_type",
            "unsupported_grant_type",
        )],
    },
    Case {
        name: "exchange: a repeated parameter",
        request: |fx| {
            Request::token(&format!("{CLIENT_CREDENTIALS}&{CLIENT_CREDENTIALS}")).stripe(&fx.valid)
        },
        expect: &[oauth_error("invalid_request", "repeated_parameter")],
    },
    Case {
        name: "exchange: the body id is another key's",
        request: |fx| {
            Request::token(&format!(
                "{CLIENT_CREDENTIALS}&client_id={}&client_secret={}",
                key_id(&fx.read_only),
                fx.valid.expose_secret()
            ))
        },
        expect: &[invalid_client("client_id_mismatch")],
    },
    Case {
        name: "exchange: a revoked key",
        request: |fx| Request::token(CLIENT_CREDENTIALS).stripe(&fx.revoked),
        expect: &[invalid_client("revoked")],
    },
    Case {
        name: "exchange: a rolled key after its grace",
        request: |fx| Request::token(CLIENT_CREDENTIALS).pair(&fx.after_grace),
        expect: &[invalid_client("grace_ended")],
    },
    Case {
        name: "exchange: a publishable key (secret keys only by default)",
        request: |fx| Request::token(CLIENT_CREDENTIALS).stripe(&fx.publishable),
        expect: &[oauth_error("unauthorized_client", "wrong_kind")],
    },
    Case {
        name: "exchange: the Origin rules apply there too",
        request: |fx| {
            Request::token(CLIENT_CREDENTIALS)
                .stripe(&fx.origin_bound)
                .header("Origin", "https://evil.example.com")
        },
        expect: &[oauth_error("unauthorized_client", "origin_not_allowed")],
    },
    Case {
        name: "exchange: an allowed Origin",
        request: |fx| {
            Request::token(CLIENT_CREDENTIALS)
                .stripe(&fx.origin_bound)
                .header("Origin", "https://shop.example.com")
        },
        expect: &[GRANTED],
    },
    Case {
        name: "exchange: malformed Basic",
        request: |_| Request::token(CLIENT_CREDENTIALS).header("Authorization", "Basic !!"),
        expect: &[oauth_error(
            "invalid_request",
            "malformed_basic_credentials",
        )],
    },
    Case {
        name: "exchange: not a form",
        request: |fx| {
            let mut request = Request::token(CLIENT_CREDENTIALS).stripe(&fx.valid);
            request.headers[0].1 = "application/json".to_owned();
            request
        },
        expect: &[oauth_error("invalid_request", "content_type")],
    },
    Case {
        name: "exchange: an over-long body",
        request: |fx| {
            Request::token(&format!("{CLIENT_CREDENTIALS}&pad={}", "x".repeat(5000)))
                .stripe(&fx.valid)
        },
        expect: &[refused(413, "invalid_request", None, "body_too_large")],
    },
];

/// Sends every case to the server at `base` (`http://127.0.0.1:port`) and
/// panics with the list of every mismatch.
pub async fn run(fixture: &Fixture, base: &str) {
    // Loopback only: never through a proxy from the environment.
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut failures = Vec::new();
    let mut sent = 0;
    for case in CASES {
        let request = (case.request)(fixture);
        for (round, expect) in case.expect.iter().enumerate() {
            fixture.reasons.lock().unwrap().clear();
            let method = reqwest::Method::from_bytes(request.method.as_bytes()).unwrap();
            let mut builder = client
                .request(method, format!("{base}{}", request.path))
                .body(request.body.clone());
            for (name, value) in &request.headers {
                builder = builder.header(name, value);
            }
            let response = builder.send().await.unwrap();
            sent += 1;
            let status = response.status().as_u16();
            let challenge = response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned());
            let content_type = response
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned());
            let body = response.text().await.unwrap();
            let reasons = fixture.reasons.lock().unwrap().clone();
            let label = format!("{} (send {})", case.name, round + 1);
            if let Err(why) = check(
                *expect,
                status,
                challenge.as_deref(),
                content_type.as_deref(),
                &body,
                &reasons,
                request.body.len(),
            ) {
                failures.push(format!("{label}: {why}"));
            }
            for secret in fixture.secrets.lock().unwrap().iter() {
                if body.contains(secret.as_str())
                    || reasons.iter().any(|r| r.contains(secret.as_str()))
                {
                    failures.push(format!("{label}: a response or reason leaked a secret"));
                }
            }
        }
    }
    assert!(sent >= CASES.len());
    assert!(
        failures.is_empty(),
        "{} of {sent} requests did not answer as the table says:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn check(
    expect: Expect,
    status: u16,
    challenge: Option<&str>,
    content_type: Option<&str>,
    body: &str,
    reasons: &[String],
    sent_len: usize,
) -> Result<(), String> {
    let got = || format!("got {status} {challenge:?} {body} reasons {reasons:?}");
    match expect {
        Expect::Ok { in_grace } => {
            let json: serde_json::Value =
                serde_json::from_str(body).map_err(|_| format!("not JSON: {}", got()))?;
            if status != 200 || json["in_grace"] != in_grace || !reasons.is_empty() {
                return Err(format!("expected 200 in_grace={in_grace}, {}", got()));
            }
            if json["body_len"] != sent_len && json["signed"] == true {
                return Err(format!("the signed body changed: {}", got()));
            }
        }
        Expect::Granted { scope } => {
            let json: serde_json::Value =
                serde_json::from_str(body).map_err(|_| format!("not JSON: {}", got()))?;
            if status != 200
                || json["token_type"] != "Bearer"
                || json["scope"].as_str() != scope
                || !reasons.is_empty()
            {
                return Err(format!(
                    "expected a granted token scope={scope:?}, {}",
                    got()
                ));
            }
        }
        Expect::Refused {
            status: want_status,
            code,
            challenge: want_challenge,
            reason,
        } => {
            let want_body = format!(r#"{{"error":"{code}"}}"#);
            if status != want_status
                || body != want_body
                || challenge != want_challenge
                || content_type != Some("application/json")
                || reasons != [reason]
            {
                return Err(format!(
                    "expected {want_status} {want_challenge:?} {want_body} reason {reason}, {}",
                    got()
                ));
            }
        }
    }
    Ok(())
}
