//! Keys exchanged for tokens: Basic credentials on API routes, the
//! client-credentials exchange, and tokens derived from a key that die with
//! it (`KeyManager::check_key`). Time runs on a manual clock.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed expectation should panic"
)]

use api_keys::http::{
    BASIC_CHALLENGE, BasicForms, ClientAuth, ExchangeCode, ExchangeError, Presented, Refusal,
    Requirements, TokenExchange,
};
use api_keys::ip::TrustedProxies;
use api_keys::testing::ManualClock;
use api_keys::{
    Actor, CreatedKey, DomainAllowList, Environment, HeaderField, IpAllowList, KeyKind, KeyManager,
    KeyUpdate, MemoryKeyStore, NewKey, OwnerId, Rejection, RequestContext, RollOptions, Scopes,
};
use base64::Engine as _;
use std::net::IpAddr;
use std::sync::Arc;
use time::macros::utc_datetime;
use time::{Duration, UtcDateTime};

const T0: UtcDateTime = utc_datetime!(2026-09-01 09:00);
const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

fn manager() -> (KeyManager<MemoryKeyStore>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(T0));
    let keys = KeyManager::builder(MemoryKeyStore::new())
        .clock(Arc::clone(&clock))
        .build()
        .unwrap();
    (keys, clock)
}

fn owner() -> OwnerId {
    OwnerId::new("acct_moov").unwrap()
}

fn create(keys: &KeyManager<MemoryKeyStore>, spec: NewKey) -> CreatedKey {
    keys.create(&Actor::system(), spec).unwrap()
}

fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

fn peer() -> Option<IpAddr> {
    Some("198.51.100.7".parse().unwrap())
}

fn present(headers: &[(&str, &str)]) -> Presented {
    Presented::from_headers(headers, "GET", "/v1/x", peer(), &TrustedProxies::none()).unwrap()
}

#[test]
fn basic_forms_on_api_routes() {
    let (keys, _) = manager();
    let key = create(
        &keys,
        NewKey::secret(owner(), "server").scopes(Scopes::new(["read"]).unwrap()),
    );
    let other = create(&keys, NewKey::secret(owner(), "other"));
    let token = key.token.expose_secret();
    let stripe = basic(token, "");
    let pair = basic(&key.record.id.to_string(), token);
    let crossed = basic(&other.record.id.to_string(), token);

    let both = Requirements::new().allow_basic(BasicForms::BOTH);
    for value in [&stripe, &pair] {
        let got = present(&[("Authorization", value)])
            .verify(&keys, &both, b"")
            .unwrap();
        assert_eq!(got.id(), key.record.id);
    }
    let refused = |value: &str, route: &Requirements| {
        present(&[("Authorization", value)])
            .verify(&keys, route, b"")
            .unwrap_err()
    };
    // Off by default, and per form.
    let r = refused(&stripe, &Requirements::new());
    assert_eq!((r.reason(), r.status()), ("unsupported_scheme", 401));
    let stripe_only = Requirements::new().allow_basic(BasicForms::TOKEN_AS_USER);
    assert_eq!(refused(&pair, &stripe_only).reason(), "unsupported_scheme");
    let pair_only = Requirements::new().allow_basic(BasicForms::ID_AND_TOKEN);
    assert_eq!(refused(&stripe, &pair_only).reason(), "unsupported_scheme");
    // The pair's user-id must be the token's id.
    let r = refused(&crossed, &both);
    assert_eq!((r.reason(), r.status()), ("basic_id_mismatch", 401));
    assert_eq!(r.response().body, r#"{"error":"invalid_api_key"}"#);
    // A Basic key is checked like any other: revoked, scopes, signed-only.
    let scoped = both.clone().require_scopes(Scopes::new(["admin"]).unwrap());
    assert_eq!(refused(&stripe, &scoped).reason(), "missing_scope");
    assert_eq!(
        refused(&stripe, &both.clone().require_signed()).reason(),
        "signature_required"
    );
    keys.revoke(&Actor::system(), &key.record.id).unwrap();
    assert_eq!(refused(&pair, &both).reason(), "revoked");
    // Basic beside another credential is refused without choosing.
    let r = Presented::from_headers(
        &[("Authorization", stripe.as_str()), ("X-Api-Key", token)][..],
        "GET",
        "/",
        peer(),
        &TrustedProxies::none(),
    )
    .unwrap_err();
    assert_eq!(r.reason(), "ambiguous_credentials");
}

/// A token endpoint's request: the form body and extra headers.
fn read(
    exchange: &TokenExchange,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<api_keys::http::TokenRequest, ExchangeError> {
    let mut all = vec![FORM];
    all.extend_from_slice(headers);
    exchange.read(&all[..], "POST", peer(), body.as_bytes())
}

fn exchange<S: api_keys::KeyStore>(
    keys: &KeyManager<S>,
    exchange: &TokenExchange,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<api_keys::http::Granted, ExchangeError> {
    let request = read(exchange, headers, body)?;
    exchange.verify(keys, &request)
}

fn expect_error(
    result: Result<api_keys::http::Granted, ExchangeError>,
    code: ExchangeCode,
    reason: &str,
    status: u16,
) {
    let e = result.unwrap_err();
    assert_eq!(
        (e.code(), e.reason(), e.response().status),
        (code, reason, status)
    );
}

#[test]
fn the_exchange_accepts_each_client_authentication() {
    let (keys, _) = manager();
    let key = create(
        &keys,
        NewKey::secret(owner(), "app").scopes(Scopes::new(["a", "b"]).unwrap()),
    );
    let token = key.token.expose_secret();
    let id = key.record.id.to_string();
    let x = TokenExchange::new();
    let grant = "grant_type=client_credentials";

    let via = |headers: &[(&str, &str)], body: &str| {
        let request = read(&x, headers, body).unwrap();
        let auth = request.client_auth();
        let granted = x.verify(&keys, &request).unwrap();
        assert_eq!(granted.key().id(), key.record.id);
        auth
    };
    assert_eq!(
        via(&[("Authorization", &basic(token, ""))], grant),
        ClientAuth::Basic(api_keys::http::BasicForm::TokenAsUser)
    );
    assert_eq!(
        via(&[("Authorization", &basic(&id, token))], grant),
        ClientAuth::Basic(api_keys::http::BasicForm::IdAndToken)
    );
    let body = format!("{grant}&client_id={id}&client_secret={token}");
    assert_eq!(via(&[], &body), ClientAuth::Body);
    // A client_id beside Basic is allowed when it names the same key.
    let body = format!("{grant}&client_id={id}");
    assert_eq!(
        via(&[("Authorization", &basic(token, ""))], &body),
        ClientAuth::Basic(api_keys::http::BasicForm::TokenAsUser)
    );
    // Unknown parameters are ignored; the content type may carry a charset.
    let body = format!("{grant}&audience=x&client_id={id}&client_secret={token}");
    let request = x
        .read(
            &[(
                "content-type",
                "Application/X-WWW-Form-Urlencoded; charset=UTF-8",
            )][..],
            "POST",
            peer(),
            body.as_bytes(),
        )
        .unwrap();
    assert!(x.verify(&keys, &request).is_ok());

    // Requested scopes: granted ones come back, others are invalid_scope.
    let body = format!("{grant}&scope=a&client_id={id}&client_secret={token}");
    let granted = exchange(&keys, &x, &[], &body).unwrap();
    assert_eq!(granted.scope(), Some(&Scopes::new(["a"]).unwrap()));
    let body = format!("{grant}&scope=a+c&client_id={id}&client_secret={token}");
    expect_error(
        exchange(&keys, &x, &[], &body),
        ExchangeCode::InvalidScope,
        "missing_scope",
        400,
    );
    for scope in ["a++b", "+a", "a+"] {
        let body = format!("{grant}&scope={scope}&client_id={id}&client_secret={token}");
        expect_error(
            exchange(&keys, &x, &[], &body),
            ExchangeCode::InvalidScope,
            "malformed_scope",
            400,
        );
    }
    let body = format!("{grant}&client_id={id}&client_secret={token}");
    assert_eq!(exchange(&keys, &x, &[], &body).unwrap().scope(), None);
}

#[test]
fn the_exchange_refuses_with_rfc_6749_errors() {
    let (keys, _) = manager();
    let key = create(&keys, NewKey::secret(owner(), "app"));
    let other = create(&keys, NewKey::secret(owner(), "other"));
    let token = key.token.expose_secret();
    let id = key.record.id.to_string();
    let grant = "grant_type=client_credentials";
    let x = TokenExchange::new();
    let stripe = basic(token, "");
    let body_creds = format!("{grant}&client_id={id}&client_secret={token}");
    use ExchangeCode::*;

    // The request itself.
    let e = x
        .read(&[FORM][..], "GET", peer(), body_creds.as_bytes())
        .unwrap_err();
    assert_eq!((e.code(), e.reason()), (InvalidRequest, "method_not_post"));
    let e = x
        .read(
            &[("Content-Type", "application/json")][..],
            "POST",
            peer(),
            body_creds.as_bytes(),
        )
        .unwrap_err();
    assert_eq!((e.code(), e.reason()), (InvalidRequest, "content_type"));
    let e = x
        .read(
            &[] as &[(&str, &str)],
            "POST",
            peer(),
            body_creds.as_bytes(),
        )
        .unwrap_err();
    assert_eq!(e.reason(), "content_type");
    let long = format!(
        "{body_creds}&pad={}",
        "x".repeat(api_keys::http::MAX_EXCHANGE_BODY_LEN)
    );
    expect_error(
        exchange(&keys, &x, &[], &long),
        PayloadTooLarge,
        "body_too_large",
        413,
    );
    expect_error(
        exchange(
            &keys,
            &x,
            &[],
            &format!("client_id={id}&client_secret={token}"),
        ),
        InvalidRequest,
        "missing_grant_type",
        400,
    );
    expect_error(
        exchange(
            &keys,
            &x,
            &[("Authorization", &stripe)],
            "grant_type=password",
        ),
        UnsupportedGrantType,
        "unsupported_grant_type",
        400,
    );
    expect_error(
        exchange(
            &keys,
            &x,
            &[],
            &format!("{body_creds}&grant_type=client_credentials"),
        ),
        InvalidRequest,
        "repeated_parameter",
        400,
    );

    // Client authentication: none, two, unsupported, incomplete.
    let e = exchange(&keys, &x, &[], grant).unwrap_err();
    assert_eq!(
        (
            e.code(),
            e.reason(),
            e.response().status,
            e.response().www_authenticate
        ),
        (
            InvalidClient,
            "missing_client_authentication",
            401,
            Some(BASIC_CHALLENGE)
        )
    );
    assert_eq!(e.response().body, r#"{"error":"invalid_client"}"#);
    expect_error(
        exchange(&keys, &x, &[("Authorization", &stripe)], &body_creds),
        InvalidRequest,
        "multiple_client_authentication",
        400,
    );
    for (name, value) in [
        ("Authorization", format!("Bearer {token}")),
        ("X-Api-Key", token.to_owned()),
        ("Authorization", "Digest abc".to_owned()),
    ] {
        expect_error(
            exchange(&keys, &x, &[(name, &value)], grant),
            InvalidClient,
            "unsupported_client_authentication",
            401,
        );
    }
    expect_error(
        exchange(
            &keys,
            &x,
            &[("Authorization", &stripe), ("Authorization", &stripe)],
            grant,
        ),
        InvalidRequest,
        "multiple_client_authentication",
        400,
    );
    expect_error(
        exchange(&keys, &x, &[("Authorization", "Basic !!")], grant),
        InvalidRequest,
        "malformed_basic_credentials",
        400,
    );
    expect_error(
        exchange(&keys, &x, &[], &format!("{grant}&client_secret={token}")),
        InvalidRequest,
        "missing_client_id",
        400,
    );
    expect_error(
        exchange(&keys, &x, &[], &format!("{grant}&client_id={id}")),
        InvalidClient,
        "missing_client_secret",
        401,
    );

    // The claimed id must be the token's.
    let other_id = other.record.id.to_string();
    for (headers, body, reason) in [
        (
            vec![],
            format!("{grant}&client_id={other_id}&client_secret={token}"),
            "client_id_mismatch",
        ),
        (
            vec![("Authorization", basic(&other_id, token))],
            grant.to_owned(),
            "basic_id_mismatch",
        ),
        (
            vec![("Authorization", stripe.clone())],
            format!("{grant}&client_id={other_id}"),
            "client_id_mismatch",
        ),
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let e = exchange(&keys, &x, &headers, &body).unwrap_err();
        assert_eq!((e.code(), e.reason()), (InvalidClient, reason), "{body}");
    }
    // A garbled token is refused before any lookup.
    expect_error(
        exchange(
            &keys,
            &x,
            &[],
            &format!("{grant}&client_id={id}&client_secret=sk_live_nope"),
        ),
        InvalidClient,
        "malformed",
        401,
    );

    // Forms the endpoint does not accept.
    let body_only = TokenExchange::new().allow_basic(BasicForms::NONE);
    // The client tried the Authorization header: 401 and a challenge for
    // the scheme it used (RFC 6749 §5.2), although Basic is not accepted.
    let e = exchange(&keys, &body_only, &[("Authorization", &stripe)], grant).unwrap_err();
    let answer = e.response();
    assert_eq!(
        (e.code(), e.reason(), answer.status, answer.www_authenticate),
        (
            InvalidClient,
            "unsupported_client_authentication",
            401,
            Some(BASIC_CHALLENGE)
        )
    );
    assert!(exchange(&keys, &body_only, &[], &body_creds).is_ok());
    // Without a header attempt and without Basic: 400, no challenge.
    let e = exchange(&keys, &body_only, &[], grant).unwrap_err();
    let answer = e.response();
    assert_eq!(
        (e.code(), answer.status, answer.www_authenticate),
        (InvalidClient, 400, None)
    );
    // A bearer header beside body credentials is two methods.
    let bearer = format!("Bearer {token}");
    expect_error(
        exchange(&keys, &x, &[("Authorization", &bearer)], &body_creds),
        InvalidRequest,
        "multiple_client_authentication",
        400,
    );
    // RFC 6749 §3.1: an empty parameter is omitted.
    expect_error(
        exchange(&keys, &x, &[("Authorization", &stripe)], "grant_type="),
        InvalidRequest,
        "missing_grant_type",
        400,
    );
    let empty_scope = format!("{grant}&scope=");
    let granted = exchange(&keys, &x, &[("Authorization", &stripe)], &empty_scope).unwrap();
    assert_eq!(granted.scope(), None);
    let basic_only = TokenExchange::new().allow_body_credentials(false);
    expect_error(
        exchange(&keys, &basic_only, &[], &body_creds),
        InvalidClient,
        "unsupported_client_authentication",
        401,
    );
    let pair_only = TokenExchange::new().allow_basic(BasicForms::ID_AND_TOKEN);
    expect_error(
        exchange(&keys, &pair_only, &[("Authorization", &stripe)], grant),
        InvalidClient,
        "unsupported_client_authentication",
        401,
    );

    // The key's state and the endpoint's requirements.
    let live_only = TokenExchange::new()
        .require_environment(Environment::Test)
        .require_kind(KeyKind::Secret);
    expect_error(
        exchange(&keys, &live_only, &[("Authorization", &stripe)], grant),
        UnauthorizedClient,
        "wrong_environment",
        400,
    );
    keys.revoke(&Actor::system(), &key.record.id).unwrap();
    expect_error(
        exchange(&keys, &x, &[("Authorization", &stripe)], grant),
        InvalidClient,
        "revoked",
        401,
    );
}

#[test]
fn publishable_keys_are_not_exchanged_unless_allowed() {
    let (keys, _) = manager();
    let pk = create(&keys, NewKey::publishable(owner(), "browser"));
    let stripe = basic(pk.token.expose_secret(), "");
    let grant = "grant_type=client_credentials";
    expect_error(
        exchange(
            &keys,
            &TokenExchange::new(),
            &[("Authorization", &stripe)],
            grant,
        ),
        ExchangeCode::UnauthorizedClient,
        "wrong_kind",
        400,
    );
    let any = TokenExchange::new().any_kind();
    assert_eq!(
        exchange(&keys, &any, &[("Authorization", &stripe)], grant)
            .unwrap()
            .key()
            .kind(),
        KeyKind::Publishable
    );
}

#[test]
fn the_exchange_applies_origin_and_ip_rules() {
    let (keys, _) = manager();
    let key = create(
        &keys,
        NewKey::secret(owner(), "web")
            .allowed_domains(DomainAllowList::new(["app.example.com"]).unwrap())
            .allowed_ips(IpAllowList::parse("198.51.100.0/24").unwrap()),
    );
    let stripe = basic(key.token.expose_secret(), "");
    let x = TokenExchange::new();
    let grant = "grant_type=client_credentials";
    let ok = [
        ("Authorization", stripe.as_str()),
        ("Origin", "https://app.example.com"),
    ];
    assert!(exchange(&keys, &x, &ok, grant).is_ok());
    let evil = [
        ("Authorization", stripe.as_str()),
        ("Origin", "https://evil.example.com"),
    ];
    expect_error(
        exchange(&keys, &x, &evil, grant),
        ExchangeCode::UnauthorizedClient,
        "origin_not_allowed",
        400,
    );
    let request = x
        .read(
            &[FORM, ok[0], ok[1]][..],
            "POST",
            Some("203.0.113.1".parse().unwrap()),
            grant.as_bytes(),
        )
        .unwrap();
    let e = x.verify(&keys, &request).unwrap_err();
    assert_eq!(e.reason(), "ip_not_allowed");
}

#[test]
fn exchange_errors_and_requests_never_show_secrets() {
    let (keys, _) = manager();
    let key = create(&keys, NewKey::secret(owner(), "app"));
    let token = key.token.expose_secret();
    let x = TokenExchange::new();
    let body = format!(
        "grant_type=client_credentials&client_id={}&client_secret={token}",
        key.record.id
    );
    let request = read(&x, &[], &body).unwrap();
    let text = format!("{request:?}");
    assert!(
        !text.contains(token) && !text.contains(&key.record.id.to_string()),
        "{text}"
    );
    let e = exchange(&keys, &x, &[("Authorization", &basic(token, ""))], &body).unwrap_err();
    for text in [
        format!("{e:?}"),
        e.to_string(),
        e.response().body.to_owned(),
    ] {
        assert!(!text.contains(token), "{text}");
    }
}

#[tokio::test]
async fn the_async_exchange_matches_the_sync_one() {
    let (keys, _) = manager();
    let key = create(&keys, NewKey::secret(owner(), "app"));
    let x = TokenExchange::new();
    let request = read(
        &x,
        &[("Authorization", &basic(key.token.expose_secret(), ""))],
        "grant_type=client_credentials",
    )
    .unwrap();
    assert_eq!(
        x.verify_async(&keys, &request).await.unwrap().key().id(),
        key.record.id
    );
    keys.deactivate(&Actor::system(), &key.record.id).unwrap();
    let e = x.verify_async(&keys, &request).await.unwrap_err();
    assert_eq!(e.reason(), "inactive");
}

/// A token derived from a key re-checks the key on every call: it stops
/// when the key is revoked, deactivated, expires, ends its roll grace or
/// no longer allows the caller's origin.
#[test]
fn derived_tokens_die_with_their_key() {
    let (keys, clock) = manager();
    let spec = |name: &str| {
        NewKey::secret(owner(), name)
            .scopes(Scopes::new(["read"]).unwrap())
            .allowed_domains(DomainAllowList::new(["app.example.com"]).unwrap())
    };
    let origin = HeaderField::Single(b"https://app.example.com");
    let from_app = RequestContext::new().origin(origin);
    let check = |id, context: &RequestContext<'_>| {
        keys.check_key(id, context)
            .map_err(|e| e.rejection().unwrap())
    };

    // Revoke.
    let k = create(&keys, spec("revoke"));
    assert_eq!(check(&k.record.id, &from_app).unwrap().id(), k.record.id);
    keys.revoke(&Actor::system(), &k.record.id).unwrap();
    assert_eq!(
        check(&k.record.id, &from_app).unwrap_err(),
        Rejection::Revoked
    );

    // Deactivate, then activate again.
    let k = create(&keys, spec("deactivate"));
    keys.deactivate(&Actor::system(), &k.record.id).unwrap();
    assert_eq!(
        check(&k.record.id, &from_app).unwrap_err(),
        Rejection::Inactive
    );
    keys.activate(&Actor::system(), &k.record.id).unwrap();
    assert!(check(&k.record.id, &from_app).is_ok());

    // Expiry.
    let k = create(&keys, spec("expiring").expires_at(T0 + Duration::hours(1)));
    assert!(check(&k.record.id, &from_app).is_ok());
    clock.advance(Duration::hours(1));
    assert_eq!(
        check(&k.record.id, &from_app).unwrap_err(),
        Rejection::Expired
    );

    // Roll: the old key's derived tokens live through the grace, not after.
    let k = create(&keys, spec("rolled"));
    let rolled = keys
        .roll(&Actor::system(), &k.record.id, RollOptions::default())
        .unwrap();
    let old = check(&k.record.id, &from_app).unwrap();
    assert!(old.in_grace());
    assert_eq!(old.successor(), Some(rolled.successor.id));
    clock.advance(Duration::hours(12) - Duration::seconds(1));
    assert!(check(&k.record.id, &from_app).is_ok());
    clock.advance(Duration::seconds(1));
    assert_eq!(
        check(&k.record.id, &from_app).unwrap_err(),
        Rejection::GraceEnded
    );
    assert!(check(&rolled.successor.id, &from_app).is_ok());

    // An origin change: the key's list no longer allows the caller.
    let k = create(&keys, spec("origin"));
    assert!(check(&k.record.id, &from_app).is_ok());
    let version = keys.get(&k.record.id).unwrap().version;
    keys.update(
        &Actor::system(),
        &k.record.id,
        version,
        &KeyUpdate::new().allowed_domains(DomainAllowList::new(["new.example.com"]).unwrap()),
    )
    .unwrap();
    assert_eq!(
        check(&k.record.id, &from_app).unwrap_err(),
        Rejection::OriginNotAllowed(api_keys::OriginRefusal::NotListed)
    );
    let from_new = RequestContext::new().origin(HeaderField::Single(b"https://new.example.com"));
    assert!(check(&k.record.id, &from_new).is_ok());

    // Everything else of a request applies too; an unknown id is unknown.
    let scoped = Scopes::new(["admin"]).unwrap();
    assert_eq!(
        check(&k.record.id, &from_new.require_scopes(&scoped)).unwrap_err(),
        Rejection::MissingScope
    );
    let stranger = KeyManager::new(MemoryKeyStore::new())
        .create(&Actor::system(), NewKey::secret(owner(), "x"))
        .unwrap();
    assert_eq!(
        check(&stranger.record.id, &from_new).unwrap_err(),
        Rejection::UnknownKey
    );
}

#[test]
fn check_key_moves_last_used_like_a_verification() {
    let (keys, clock) = manager();
    let k = create(&keys, NewKey::secret(owner(), "used"));
    assert_eq!(keys.get(&k.record.id).unwrap().last_used_at, None);
    let checked = keys
        .check_key(&k.record.id, &RequestContext::new())
        .unwrap();
    assert!(checked.touched());
    assert_eq!(keys.get(&k.record.id).unwrap().last_used_at, Some(T0));
    clock.advance(Duration::seconds(1));
    let again = keys
        .check_key(&k.record.id, &RequestContext::new())
        .unwrap();
    assert!(!again.touched(), "within the touch interval");
}

#[tokio::test]
async fn check_key_async_matches() {
    let (keys, _) = manager();
    let k = create(&keys, NewKey::secret(owner(), "a"));
    assert!(
        keys.check_key_async(&k.record.id, &RequestContext::new())
            .await
            .is_ok()
    );
    keys.revoke(&Actor::system(), &k.record.id).unwrap();
    let e = keys
        .check_key_async(&k.record.id, &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.rejection(), Some(Rejection::Revoked));
}

/// A store that is down: every call fails with a backend error.
struct Down;

impl api_keys::KeyStore for Down {
    fn insert(
        &self,
        _: &api_keys::KeyRecord,
        _: api_keys::WriteCondition,
    ) -> Result<(), api_keys::StoreError> {
        Err(down())
    }
    fn get(
        &self,
        _: &api_keys::KeyId,
    ) -> Result<Option<Arc<api_keys::KeyRecord>>, api_keys::StoreError> {
        Err(down())
    }
    fn list_by_owner(
        &self,
        _: &OwnerId,
    ) -> Result<Vec<Arc<api_keys::KeyRecord>>, api_keys::StoreError> {
        Err(down())
    }
    fn update(
        &self,
        _: &api_keys::KeyRecord,
        _: u64,
        _: api_keys::WriteCondition,
    ) -> Result<(), api_keys::StoreError> {
        Err(down())
    }
    fn apply_roll(&self, _: &api_keys::RollPlan) -> Result<(), api_keys::StoreError> {
        Err(down())
    }
    fn touch(&self, _: &api_keys::KeyId, _: api_keys::Usage) -> Result<(), api_keys::StoreError> {
        Err(down())
    }
}

fn down() -> api_keys::StoreError {
    api_keys::StoreError::new(api_keys::StoreErrorKind::Backend)
}

/// A store failure is a 500 that keeps its cause, and so is a failure an
/// adapter hands over as a `Refusal`.
#[test]
fn the_exchange_fails_closed_and_keeps_the_cause() {
    use std::error::Error as _;
    let (keys, _) = manager();
    let key = create(&keys, NewKey::secret(owner(), "app"));
    let broken = KeyManager::new(Down);
    let x = TokenExchange::new();
    let e = exchange(
        &broken,
        &x,
        &[("Authorization", &basic(key.token.expose_secret(), ""))],
        "grant_type=client_credentials",
    )
    .unwrap_err();
    assert_eq!(
        (e.code(), e.reason(), e.response().status),
        (ExchangeCode::ServerError, "service_failure", 500)
    );
    let cause = e.error().expect("the store failure");
    assert_eq!(e.to_string(), format!("service_failure: {cause}"));
    assert_eq!(e.source().map(ToString::to_string), Some(cause.to_string()));

    // Adapters reading the body with a `BodyBuffer` convert its refusals.
    let e = ExchangeError::from(Refusal::Rejected(Rejection::BodyTooLarge));
    assert_eq!(
        (e.code(), e.reason(), e.response().status),
        (ExchangeCode::PayloadTooLarge, "body_too_large", 413)
    );
    let e = ExchangeError::from(Refusal::MissingCredentials);
    assert_eq!(
        (e.code(), e.reason(), e.response().status),
        (ExchangeCode::InvalidRequest, "missing_credentials", 400)
    );
    assert!(e.error().is_none() && e.source().is_none());
    assert_eq!(e.to_string(), "missing_credentials");
    let failure = broken
        .verify(key.token.expose_secret(), &RequestContext::new())
        .unwrap_err();
    let e = ExchangeError::from(Refusal::Failed(failure));
    assert_eq!(
        (e.code(), e.reason(), e.response().status),
        (ExchangeCode::ServerError, "service_failure", 500)
    );
    assert!(e.error().is_some() && e.source().is_some());
}

#[test]
fn the_exchange_settings_apply() {
    let (keys, _) = manager();
    let admin = create(
        &keys,
        NewKey::secret(owner(), "admin")
            .scopes(Scopes::new(["admin", "read"]).unwrap())
            .allowed_ips(IpAllowList::parse("198.51.100.0/24").unwrap()),
    );
    let reader = create(
        &keys,
        NewKey::secret(owner(), "reader").scopes(Scopes::new(["read"]).unwrap()),
    );
    let grant = "grant_type=client_credentials";
    let auth = |key: &CreatedKey| basic(key.token.expose_secret(), "");

    // Required scopes: a key without them is not exchanged at all.
    let admins = TokenExchange::new().require_scopes(Scopes::new(["admin"]).unwrap());
    assert!(exchange(&keys, &admins, &[("Authorization", &auth(&admin))], grant).is_ok());
    expect_error(
        exchange(&keys, &admins, &[("Authorization", &auth(&reader))], grant),
        ExchangeCode::UnauthorizedClient,
        "missing_scope",
        400,
    );
    // Required kind.
    let publishable = create(&keys, NewKey::publishable(owner(), "web"));
    let secret_only = TokenExchange::new().require_kind(KeyKind::Secret);
    expect_error(
        exchange(
            &keys,
            &secret_only,
            &[("Authorization", &auth(&publishable))],
            grant,
        ),
        ExchangeCode::UnauthorizedClient,
        "wrong_kind",
        400,
    );

    // Behind a trusted proxy, the client address is the forwarded one.
    let proxy: IpAddr = "10.0.0.1".parse().unwrap();
    let admin_auth = auth(&admin);
    let headers = [
        FORM,
        ("Authorization", admin_auth.as_str()),
        ("X-Forwarded-For", "198.51.100.9"),
    ];
    let proxied = TokenExchange::new().trusted_proxies(TrustedProxies::new(
        IpAllowList::parse("10.0.0.0/8").unwrap(),
    ));
    let request = proxied
        .read(&headers[..], "POST", Some(proxy), grant.as_bytes())
        .unwrap();
    assert_eq!(
        request.facts().client_ip(),
        Some("198.51.100.9".parse().unwrap())
    );
    assert!(proxied.verify(&keys, &request).is_ok());
    let x = TokenExchange::new();
    let request = x
        .read(&headers[..], "POST", Some(proxy), grant.as_bytes())
        .unwrap();
    assert_eq!(request.facts().client_ip(), Some(proxy));
    assert_eq!(
        x.verify(&keys, &request).unwrap_err().reason(),
        "ip_not_allowed"
    );

    // A body of exactly the limit is read; one byte more is 413.
    let body = format!("{grant}&scope=read&pad=");
    let body = format!(
        "{body}{}",
        "x".repeat(api_keys::http::MAX_EXCHANGE_BODY_LEN - body.len())
    );
    let request = read(&x, &[("Authorization", &auth(&reader))], &body).unwrap();
    assert_eq!(request.scope(), Some(&Scopes::new(["read"]).unwrap()));
    let granted = x.verify(&keys, &request).unwrap();
    let (key, scope) = granted.into_parts();
    assert_eq!(key.id(), reader.record.id);
    assert_eq!(scope, Some(Scopes::new(["read"]).unwrap()));
    let e = read(
        &x,
        &[("Authorization", &auth(&reader))],
        &format!("{body}x"),
    )
    .unwrap_err();
    assert_eq!(e.response().status, 413);
    // Requests show what they are, but no value sent.
    let text = format!("{request:?}");
    assert!(
        text.starts_with(
            r#"TokenRequest { client_auth: Basic(TokenAsUser), scope: Some(Scopes(["read"])), facts: RequestFacts {"#
        ),
        "{text}"
    );
    assert_eq!(
        read(&x, &[], &format!("{grant}&client_id=a&client_secret=b"))
            .unwrap()
            .client_auth(),
        ClientAuth::Body
    );
}
