//! Request verification through `KeyManager`: the order of checks, what
//! reaches the store, environments, kinds, scopes, IP and domain lists, and
//! side effects.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::type_complexity,
    reason = "test code: a failed expectation should panic"
)]
use api_keys::testing::ManualClock;
use api_keys::{
    Actor, DomainAllowList, Environment, HeaderField, IpAllowList, KeyId, KeyKind, KeyManager,
    KeyRecord, KeyStore, MemoryKeyStore, NewKey, OriginRefusal, OwnerId, Policy, Rejection,
    RequestContext, RollPlan, Scopes, StoreError, Token, Usage, VerifyError, WriteCondition,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use time::macros::utc_datetime;
use time::{Duration, UtcDateTime};

/// Counts every store call.
#[derive(Default)]
struct Counting {
    inner: MemoryKeyStore,
    gets: AtomicUsize,
    writes: AtomicUsize,
}

impl KeyStore for Counting {
    fn insert(&self, r: &KeyRecord, c: WriteCondition) -> Result<(), StoreError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.insert(r, c)
    }
    fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        KeyStore::get(&self.inner, id)
    }
    fn list_by_owner(&self, o: &OwnerId) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        KeyStore::list_by_owner(&self.inner, o)
    }
    fn update(&self, r: &KeyRecord, v: u64, c: WriteCondition) -> Result<(), StoreError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        KeyStore::update(&self.inner, r, v, c)
    }
    fn apply_roll(&self, p: &RollPlan) -> Result<(), StoreError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        KeyStore::apply_roll(&self.inner, p)
    }
    fn touch(&self, id: &KeyId, usage: Usage) -> Result<(), StoreError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        KeyStore::touch(&self.inner, id, usage)
    }
}

const T0: UtcDateTime = utc_datetime!(2026-05-01 12:00);

struct Fx {
    keys: KeyManager<Counting>,
    clock: Arc<ManualClock>,
    admin: Actor,
    owner: OwnerId,
}

fn fx(policy: Policy) -> Fx {
    let clock = Arc::new(ManualClock::new(T0));
    Fx {
        keys: KeyManager::builder(Counting::default())
            .clock(Arc::clone(&clock))
            .policy(policy)
            .build()
            .unwrap(),
        clock,
        admin: Actor::system(),
        owner: OwnerId::new("acct").unwrap(),
    }
}

impl Fx {
    fn create(&self, spec: NewKey) -> Token {
        self.keys.create(&self.admin, spec).unwrap().token
    }
    fn rejection(&self, token: &str, ctx: &RequestContext<'_>) -> Option<Rejection> {
        self.keys
            .verify(token, ctx)
            .err()
            .and_then(|e| e.rejection())
    }
    fn gets(&self) -> usize {
        self.keys.store().gets.load(Ordering::SeqCst)
    }
    fn writes(&self) -> usize {
        self.keys.store().writes.load(Ordering::SeqCst)
    }
}

#[test]
fn offline_refusals_never_reach_the_store() {
    let f = fx(Policy {
        environment: Some(Environment::Live),
        ..Policy::default()
    });
    let test_key = f.create(NewKey::secret(f.owner.clone(), "t").environment(Environment::Test));
    let live = f.create(NewKey::publishable(f.owner.clone(), "p"));
    let t = live.expose_secret();
    let mut bad_checksum = t.to_owned();
    let last = bad_checksum.pop().unwrap();
    bad_checksum.push(if last == 'a' { 'b' } else { 'a' });
    let cases: Vec<(String, RequestContext<'_>, Rejection)> = vec![
        (bad_checksum, RequestContext::new(), Rejection::Malformed),
        (String::new(), RequestContext::new(), Rejection::Malformed),
        (
            format!("Bearer {t}"),
            RequestContext::new(),
            Rejection::Malformed,
        ),
        (
            t[..t.len() - 1].to_owned(),
            RequestContext::new(),
            Rejection::Malformed,
        ),
        ("é".repeat(40), RequestContext::new(), Rejection::Malformed),
        (
            test_key.expose_secret().to_owned(),
            RequestContext::new(),
            Rejection::WrongEnvironment,
        ),
        (
            t.to_owned(),
            RequestContext::new().require_environment(Environment::Test),
            Rejection::WrongEnvironment,
        ),
        (
            t.to_owned(),
            RequestContext::new().require_kind(KeyKind::Secret),
            Rejection::WrongKind,
        ),
    ];
    let before = f.gets();
    for (token, ctx, want) in &cases {
        assert_eq!(f.rejection(token, ctx), Some(*want), "{token:.12}…");
    }
    assert_eq!(f.gets(), before, "an offline refusal reached the store");
    // An unknown (well-formed) key costs exactly one lookup.
    let other = api_keys::KeyFormat::default()
        .generate(KeyKind::Secret, Environment::Live)
        .unwrap();
    assert_eq!(
        f.rejection(other.token.expose_secret(), &RequestContext::new()),
        Some(Rejection::UnknownKey)
    );
    assert_eq!(f.gets(), before + 1);
}

#[test]
fn the_key_decides_the_environment() {
    let f = fx(Policy::default());
    let test = f.create(NewKey::secret(f.owner.clone(), "t").environment(Environment::Test));
    let live = f.create(NewKey::secret(f.owner.clone(), "l"));
    let v = f
        .keys
        .verify(test.expose_secret(), &RequestContext::new())
        .unwrap();
    assert_eq!(v.environment(), Environment::Test);
    let v = f
        .keys
        .verify(live.expose_secret(), &RequestContext::new())
        .unwrap();
    assert_eq!(v.environment(), Environment::Live);
    let only_live = RequestContext::new().require_environment(Environment::Live);
    assert_eq!(
        f.rejection(test.expose_secret(), &only_live),
        Some(Rejection::WrongEnvironment)
    );
    assert_eq!(Rejection::WrongEnvironment.http_status(), 403);
}

#[test]
fn a_forged_secret_with_a_real_id_is_unknown() {
    let f = fx(Policy::default());
    let real = f.create(NewKey::secret(f.owner.clone(), "r"));
    let format = api_keys::KeyFormat::default();
    let id = format.parse(real.expose_secret()).unwrap().id();
    // Build a well-formed token with the real id and another secret: the
    // checksum is public, so this passes the offline checks.
    let other = format.generate(KeyKind::Secret, Environment::Live).unwrap();
    let body_start = "sk_live_".len();
    let mut forged = String::from("sk_live_");
    forged.push_str(&id.to_string());
    forged.push_str(&other.token.expose_secret()[body_start + 22..body_start + 22 + 35]);
    let crc = crc32(forged.as_bytes());
    forged.push_str(&base62_u32(crc));
    assert!(format.parse(&forged).is_ok(), "forged token is well-formed");
    assert_eq!(
        f.rejection(&forged, &RequestContext::new()),
        Some(Rejection::UnknownKey)
    );
    // The same secret in the other environment is another key entirely.
    let flipped_env = real.expose_secret().replacen("sk_live_", "sk_test_", 1);
    let mut flipped = flipped_env[..flipped_env.len() - 6].to_owned();
    let crc = crc32(flipped.as_bytes());
    flipped.push_str(&base62_u32(crc));
    assert_eq!(
        f.rejection(&flipped, &RequestContext::new()),
        Some(Rejection::UnknownKey)
    );
}

fn crc32(bytes: &[u8]) -> u32 {
    // Bitwise CRC-32 (IEEE), independent of the crate's implementation.
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn base62_u32(mut v: u32) -> String {
    const A: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = A[(v % 62) as usize];
        v /= 62;
    }
    String::from_utf8(out.to_vec()).unwrap()
}

#[test]
fn kinds_and_scopes() {
    let policy = Policy {
        publishable_scopes: Scopes::new(["catalog:read", "checkout:create"]).unwrap(),
        ..Policy::default()
    };
    let f = fx(policy);
    let pk = f.create(NewKey::publishable(f.owner.clone(), "browser"));
    let narrow_pk = f.create(
        NewKey::publishable(f.owner.clone(), "narrow")
            .scopes(Scopes::new(["catalog:read"]).unwrap()),
    );
    let sk = f.create(NewKey::secret(f.owner.clone(), "server"));
    let restricted = f.create(
        NewKey::secret(f.owner.clone(), "restricted")
            .scopes(Scopes::new(["refunds:write"]).unwrap()),
    );
    let need = |s: &[&str]| Scopes::new(s.iter().copied()).unwrap();
    // Publishable keys: only publishable-safe scopes.
    assert_eq!(
        f.rejection(
            pk.expose_secret(),
            &RequestContext::new().require_scopes(&need(&["catalog:read", "checkout:create"]))
        ),
        None
    );
    assert_eq!(
        f.rejection(
            pk.expose_secret(),
            &RequestContext::new().require_scopes(&need(&["refunds:write"]))
        ),
        Some(Rejection::MissingScope)
    );
    assert_eq!(
        f.rejection(
            narrow_pk.expose_secret(),
            &RequestContext::new().require_scopes(&need(&["checkout:create"]))
        ),
        Some(Rejection::MissingScope)
    );
    // A secret key without scopes is unrestricted; a restricted one is not.
    assert_eq!(
        f.rejection(
            sk.expose_secret(),
            &RequestContext::new().require_scopes(&need(&["refunds:write", "anything"]))
        ),
        None
    );
    assert_eq!(
        f.rejection(
            restricted.expose_secret(),
            &RequestContext::new().require_scopes(&need(&["refunds:write"]))
        ),
        None
    );
    assert_eq!(
        f.rejection(
            restricted.expose_secret(),
            &RequestContext::new().require_scopes(&need(&["refunds:write", "charges:write"]))
        ),
        Some(Rejection::MissingScope)
    );
    // Endpoints that require a secret key refuse publishable ones (offline).
    let secret_only = RequestContext::new().require_kind(KeyKind::Secret);
    assert_eq!(
        f.rejection(pk.expose_secret(), &secret_only),
        Some(Rejection::WrongKind)
    );
    assert_eq!(f.rejection(sk.expose_secret(), &secret_only), None);
    assert_eq!(Rejection::MissingScope.http_status(), 403);
}

#[test]
fn ip_allow_list_through_the_manager() {
    let f = fx(Policy::default());
    let t = f.create(
        NewKey::secret(f.owner.clone(), "ips")
            .allowed_ips(IpAllowList::parse("203.0.113.0/24, 2001:db8::1").unwrap()),
    );
    let at = |ip: &str| RequestContext::new().peer_ip(ip.parse().unwrap());
    assert_eq!(f.rejection(t.expose_secret(), &at("203.0.113.9")), None);
    assert_eq!(
        f.rejection(t.expose_secret(), &at("::ffff:203.0.113.9")),
        None,
        "mapped v4"
    );
    assert_eq!(f.rejection(t.expose_secret(), &at("2001:db8::1")), None);
    assert_eq!(
        f.rejection(t.expose_secret(), &at("203.0.114.1")),
        Some(Rejection::IpNotAllowed)
    );
    assert_eq!(
        f.rejection(t.expose_secret(), &RequestContext::new()),
        Some(Rejection::IpNotAllowed),
        "no peer address with a list = refused"
    );
    let any = f.create(
        NewKey::secret(f.owner.clone(), "any").allowed_ips(IpAllowList::parse(" ").unwrap()),
    );
    assert_eq!(
        f.rejection(any.expose_secret(), &RequestContext::new()),
        None,
        "blank = any"
    );
    assert_eq!(Rejection::IpNotAllowed.http_status(), 403);
}

#[test]
fn domain_allow_list_through_the_manager() {
    let f = fx(Policy::default());
    let t = f.create(
        NewKey::publishable(f.owner.clone(), "web")
            .allowed_domains(DomainAllowList::new(["shop.example.com", "*.example.org"]).unwrap()),
    );
    let tok = t.expose_secret();
    let origin = |o: &'static str| RequestContext::new().origin(HeaderField::Single(o.as_bytes()));
    assert_eq!(f.rejection(tok, &origin("https://shop.example.com")), None);
    assert_eq!(f.rejection(tok, &origin("https://a.example.org")), None);
    // The precise reason is kept for logs; the status is 403 whatever it is.
    for (bad, why) in [
        ("https://evil.example.com", OriginRefusal::NotListed),
        ("https://example.org", OriginRefusal::NotListed),
        (
            "https://shop.example.com.evil.com",
            OriginRefusal::NotListed,
        ),
        ("http://shop.example.com", OriginRefusal::InsecureScheme),
        ("null", OriginRefusal::NullOrigin),
        ("", OriginRefusal::Empty),
    ] {
        let got = f.rejection(tok, &origin(bad));
        assert_eq!(got, Some(Rejection::OriginNotAllowed(why)), "{bad}");
        let got = got.unwrap();
        assert_eq!(
            (got.as_str(), got.http_status()),
            ("origin_not_allowed", 403)
        );
        assert_eq!(got.detail(), Some(why.as_str()));
    }
    // Referer only when Origin is absent; Origin decides when present.
    let referer =
        RequestContext::new().referer(HeaderField::Single(b"https://shop.example.com/cart?x=1"));
    assert_eq!(f.rejection(tok, &referer), None);
    assert_eq!(
        f.rejection(
            tok,
            &referer.origin(HeaderField::Single(b"https://evil.com"))
        ),
        Some(Rejection::OriginNotAllowed(OriginRefusal::NotListed))
    );
    assert_eq!(
        f.rejection(tok, &RequestContext::new()),
        Some(Rejection::OriginNotAllowed(OriginRefusal::Missing)),
        "neither header"
    );
    assert_eq!(
        f.rejection(tok, &RequestContext::new().origin(HeaderField::Repeated)),
        Some(Rejection::OriginNotAllowed(OriginRefusal::Repeated))
    );
}

#[test]
fn refused_requests_write_nothing_and_touch_is_rate_limited() {
    let f = fx(Policy::default());
    let t = f.create(
        NewKey::secret(f.owner.clone(), "w")
            .allowed_ips(IpAllowList::parse("10.0.0.1").unwrap())
            .scopes(Scopes::new(["a"]).unwrap()),
    );
    let writes = f.writes();
    let outside = RequestContext::new().peer_ip("10.0.0.2".parse().unwrap());
    let b = Scopes::new(["b"]).unwrap();
    let scope = RequestContext::new()
        .peer_ip("10.0.0.1".parse().unwrap())
        .require_scopes(&b);
    for _ in 0..3 {
        assert!(f.keys.verify(t.expose_secret(), &outside).is_err());
        assert!(f.keys.verify(t.expose_secret(), &scope).is_err());
    }
    assert_eq!(f.writes(), writes, "a refused request wrote to the store");
    let inside = RequestContext::new().peer_ip("10.0.0.1".parse().unwrap());
    let v = f.keys.verify(t.expose_secret(), &inside).unwrap();
    assert!(v.touched());
    assert_eq!(f.writes(), writes + 1);
    // Within the touch interval: no more writes.
    f.clock.advance(Duration::seconds(59));
    assert!(!f.keys.verify(t.expose_secret(), &inside).unwrap().touched());
    assert_eq!(f.writes(), writes + 1);
    f.clock.advance(Duration::seconds(1));
    assert!(f.keys.verify(t.expose_secret(), &inside).unwrap().touched());
    assert_eq!(f.writes(), writes + 2);
}

#[test]
fn rejection_names_and_statuses_are_stable() {
    use Rejection::*;
    let table = [
        (Malformed, "malformed", 401),
        (UnknownKey, "unknown_key", 401),
        (Revoked, "revoked", 401),
        (Inactive, "inactive", 401),
        (Expired, "expired", 401),
        (GraceEnded, "grace_ended", 401),
        (NotYetValid, "not_yet_valid", 401),
        (WrongEnvironment, "wrong_environment", 403),
        (WrongKind, "wrong_kind", 403),
        (MissingScope, "missing_scope", 403),
        (
            OriginNotAllowed(OriginRefusal::NotListed),
            "origin_not_allowed",
            403,
        ),
        (IpNotAllowed, "ip_not_allowed", 403),
        (SigningKeyAsBearer, "signing_key_as_bearer", 401),
        (NotASigningKey, "not_a_signing_key", 401),
        (BadSignature, "bad_signature", 401),
        (BodyTooLarge, "body_too_large", 413),
        (StaleRequest, "stale_request", 401),
        (Replayed, "replayed", 401),
        (ReplayQuotaExceeded, "replay_quota_exceeded", 429),
    ];
    for (r, name, status) in table {
        assert_eq!(r.as_str(), name);
        assert_eq!(r.http_status(), status, "{name}");
        assert_eq!(r.to_string(), name);
    }
    // Clients cannot tell unknown from revoked.
    assert_eq!(UnknownKey.public_code(), Revoked.public_code());
    let e = VerifyError::from(Revoked);
    assert_eq!(e.http_status(), 401);
}

/// Defect 4 (review of 0.1): publishable keys' scopes are checked against
/// the policy in force, not only when written. Narrowing
/// `Policy::publishable_scopes` takes the removed scope away from existing
/// publishable keys at once, and a roll refuses to carry it over.
#[test]
fn narrowing_publishable_scopes_applies_to_existing_keys() {
    let store = Arc::new(MemoryKeyStore::new());
    let clock = Arc::new(ManualClock::new(T0));
    let manager = |scopes: &[&str]| {
        KeyManager::builder(Arc::clone(&store))
            .clock(Arc::clone(&clock))
            .policy(Policy {
                publishable_scopes: Scopes::new(scopes.iter().copied()).unwrap(),
                ..Policy::default()
            })
            .build()
            .unwrap()
    };
    let owner = OwnerId::new("acct").unwrap();
    let wide = manager(&["checkout:read", "checkout:write"]);
    let restricted = wide
        .create(
            &Actor::system(),
            NewKey::publishable(owner.clone(), "restricted")
                .scopes(Scopes::new(["checkout:read", "checkout:write"]).unwrap()),
        )
        .unwrap();
    let default_scoped = wide
        .create(&Actor::system(), NewKey::publishable(owner, "default"))
        .unwrap();
    let write = Scopes::new(["checkout:write"]).unwrap();
    let read = Scopes::new(["checkout:read"]).unwrap();
    for key in [&restricted, &default_scoped] {
        wide.verify(
            key.token.expose_secret(),
            &RequestContext::new().require_scopes(&write),
        )
        .unwrap();
    }

    let narrow = manager(&["checkout:read"]);
    for key in [&restricted, &default_scoped] {
        let refused = narrow
            .verify(
                key.token.expose_secret(),
                &RequestContext::new().require_scopes(&write),
            )
            .unwrap_err();
        assert_eq!(refused.rejection(), Some(Rejection::MissingScope));
        narrow
            .verify(
                key.token.expose_secret(),
                &RequestContext::new().require_scopes(&read),
            )
            .unwrap();
    }
    // A roll does not carry the removed scope over to a successor.
    let rolled = narrow.roll(
        &Actor::system(),
        &restricted.record.id,
        api_keys::RollOptions::default(),
    );
    assert!(
        matches!(rolled, Err(api_keys::Error::InvalidState { .. })),
        "{rolled:?}"
    );
    assert_eq!(
        narrow.get(&restricted.record.id).unwrap().version,
        1,
        "a refused roll changes nothing"
    );
    // A key whose scopes are all still allowed rolls as before.
    narrow
        .roll(
            &Actor::system(),
            &default_scoped.record.id,
            api_keys::RollOptions::default(),
        )
        .unwrap();
}

/// `Engine::grants` answers like verification's scope check: a secret key
/// without scopes grants every scope, a restricted one its own; a
/// publishable key only scopes of its own that the policy allows now.
#[test]
fn engine_grants_like_the_scope_check() {
    let policy = Policy {
        publishable_scopes: Scopes::new(["catalog:read", "checkout:create"]).unwrap(),
        ..Policy::default()
    };
    let f = fx(policy);
    let record = |spec: NewKey| f.keys.create(&f.admin, spec).unwrap().record;
    let sk = record(NewKey::secret(f.owner.clone(), "server"));
    let restricted = record(
        NewKey::secret(f.owner.clone(), "restricted")
            .scopes(Scopes::new(["refunds:write"]).unwrap()),
    );
    let pk = record(NewKey::publishable(f.owner.clone(), "browser"));
    let narrow_pk = record(
        NewKey::publishable(f.owner.clone(), "narrow")
            .scopes(Scopes::new(["catalog:read"]).unwrap()),
    );
    let engine = f.keys.engine();
    for (key, scope, granted) in [
        (&sk, "refunds:write", true),
        (&sk, "anything", true),
        (&restricted, "refunds:write", true),
        (&restricted, "refunds:read", false),
        (&pk, "catalog:read", true),
        (&pk, "checkout:create", true),
        (&pk, "refunds:write", false),
        (&narrow_pk, "catalog:read", true),
        (&narrow_pk, "checkout:create", false),
    ] {
        assert_eq!(engine.grants(key, scope), granted, "{} {scope}", key.name);
    }
}

/// The two forms a store lends a record in: full records (`Counting`, like
/// the SQL stores and the cache) and the memory store's compact form.
/// Each refuses a signing key sent as a bearer token, also when the record
/// lost its signing flag (a host store that drops it), and reports a
/// rolled key's grace.
#[test]
fn both_record_forms_refuse_signing_keys_as_bearer_and_report_grace() {
    fn check<S: KeyStore>(store: S, rewrite: impl Fn(&S, &KeyRecord)) {
        let ring = api_keys::SealingKeyRing::new(api_keys::SealingKey::new(1, &[4; 32]).unwrap());
        let keys = KeyManager::builder(store)
            .sealing_keys(ring)
            .build()
            .unwrap();
        let owner = OwnerId::new("acct_forms").unwrap();
        let signing = keys
            .create(
                &Actor::system(),
                NewKey::secret(owner.clone(), "s").signing(),
            )
            .unwrap();
        let refused = |token: &Token| {
            keys.verify(token.expose_secret(), &RequestContext::new())
                .unwrap_err()
                .rejection()
        };
        assert_eq!(refused(&signing.token), Some(Rejection::SigningKeyAsBearer));
        let mut lost = signing.record.clone();
        lost.signing = false;
        lost.version += 1;
        rewrite(keys.store(), &lost);
        assert!(!keys.get(&lost.id).unwrap().signing, "the flag is gone");
        assert_eq!(refused(&signing.token), Some(Rejection::SigningKeyAsBearer));

        let bearer = keys
            .create(&Actor::system(), NewKey::secret(owner, "b"))
            .unwrap();
        keys.roll(
            &Actor::system(),
            &bearer.record.id,
            api_keys::RollOptions::default(),
        )
        .unwrap();
        let old = keys
            .verify(bearer.token.expose_secret(), &RequestContext::new())
            .unwrap();
        assert!(old.in_grace());
    }
    check(Counting::default(), |s, r| {
        KeyStore::update(&s.inner, r, r.version - 1, WriteCondition::Always).unwrap();
    });
    check(MemoryKeyStore::new(), |s, r| {
        KeyStore::update(s, r, r.version - 1, WriteCondition::Always).unwrap();
    });
}

/// A verified key's `Debug` names the key and its owner, never its secret.
#[test]
fn a_verified_key_shows_its_id_and_owner_and_no_secret() {
    let keys = KeyManager::new(MemoryKeyStore::new());
    let owner = OwnerId::new("acct_debug").unwrap();
    let created = keys
        .create(&Actor::system(), NewKey::secret(owner, "k"))
        .unwrap();
    let verified = keys
        .verify(created.token.expose_secret(), &RequestContext::new())
        .unwrap();
    let shown = format!("{verified:?}");
    assert!(shown.starts_with("VerifiedKey"), "{shown}");
    assert!(shown.contains("acct_debug"), "{shown}");
    assert!(shown.contains(&created.record.id.to_string()), "{shown}");
    assert!(!shown.contains(created.token.expose_secret()), "{shown}");
}
