//! No secret ever reaches a formatted string: every event (`{}` and `{:?}`),
//! every public value the lifecycle touches (`{:?}` and `{:#?}`) and every
//! error (`{}` too) is checked for tokens, their secret parts, signature
//! hex values and the Origin / Referer / forwarding header values passed in.
//! Plus compile-time proofs that secret-bearing types do not implement
//! `Clone`, `PartialEq`, `Display` or `Serialize`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::type_complexity,
    reason = "test code: a failed expectation should panic"
)]
use api_keys::ip::{ProxyHeader, TrustedProxies, client_ip};
use api_keys::replay::MemoryReplayCache;
use api_keys::signing::{BodyVerifier, ReplayConfig, ReplayRequest, SigningKey};
use api_keys::testing::ManualClock;
use api_keys::{
    Actor, CreatedKey, DomainAllowList, Engine, Environment, HeaderField, IpAllowList, KeyEvent,
    KeyFormat, KeyKind, KeyManager, KeyUpdate, MemoryKeyStore, NewKey, NewToken, OwnerId, Pepper,
    Policy, PresentedKey, RequestContext, RequestSigner, RollOptions, RolledKey, Scopes,
    SealingKey, SealingKeyRing, SignatureConfig, SignedRequest, Token,
};
use std::fmt::{Debug, Display};
use std::sync::{Arc, Mutex};
use time::Duration;
use time::macros::utc_datetime;

// ---------------------------------------------------------------------------
// Compile-time proofs: "does not implement".
//
// The classic stable-Rust trick (as in `static_assertions::assert_not_impl_any`):
// a trait with a blanket impl over `()` and one over a private marker for
// every type implementing the trait under test. `<T as AmbiguousIfImpl<_>>`
// is then ambiguous — a compile error — exactly when `T` implements it.
// ---------------------------------------------------------------------------

macro_rules! assert_not_impl {
    ($ty:ty: $($tr:path),+ $(,)?) => {
        const _: fn() = || {
            trait AmbiguousIfImpl<A> {
                fn some_item() {}
            }
            impl<T: ?Sized> AmbiguousIfImpl<()> for T {}
            $({
                #[allow(dead_code, reason = "only its impl matters")]
                struct Invalid;
                impl<T: ?Sized + $tr> AmbiguousIfImpl<Invalid> for T {}
            })+
            let _ = <$ty as AmbiguousIfImpl<_>>::some_item;
        };
    };
}

// One copy of each secret, compared only in constant time, never displayed.
assert_not_impl!(Token: Clone);
assert_not_impl!(Token: PartialEq);
assert_not_impl!(Token: Display);
assert_not_impl!(PresentedKey: Clone);
assert_not_impl!(PresentedKey: PartialEq);
assert_not_impl!(PresentedKey: Display);
assert_not_impl!(NewToken: Clone);
assert_not_impl!(NewToken: PartialEq);
assert_not_impl!(CreatedKey: Clone);
assert_not_impl!(CreatedKey: PartialEq);
assert_not_impl!(RolledKey: Clone);
assert_not_impl!(RolledKey: PartialEq);
assert_not_impl!(SealingKey: Clone);
assert_not_impl!(SealingKey: PartialEq);
assert_not_impl!(SealingKey: Display);
assert_not_impl!(SealingKeyRing: Clone);
assert_not_impl!(SealingKeyRing: PartialEq);
assert_not_impl!(Pepper: Clone);
assert_not_impl!(Pepper: PartialEq);
assert_not_impl!(Pepper: Display);
// `SigningKey` and `RequestSigner` are `Clone` by design (documented: the
// prepared state is shared between workers), but never compared or shown.
assert_not_impl!(SigningKey: PartialEq);
assert_not_impl!(SigningKey: Display);
assert_not_impl!(RequestSigner: PartialEq);
assert_not_impl!(RequestSigner: Display);
assert_not_impl!(BodyVerifier: Clone);
assert_not_impl!(BodyVerifier: PartialEq);
// Holders of peppers and sealing keys.
assert_not_impl!(Engine: Clone);
assert_not_impl!(KeyManager<MemoryKeyStore>: Clone);

#[cfg(feature = "serde")]
mod serde_proofs {
    use super::*;
    assert_not_impl!(Token: serde::Serialize, serde::Deserialize<'static>);
    assert_not_impl!(PresentedKey: serde::Serialize, serde::Deserialize<'static>);
    assert_not_impl!(NewToken: serde::Serialize);
    assert_not_impl!(CreatedKey: serde::Serialize);
    assert_not_impl!(RolledKey: serde::Serialize);
    assert_not_impl!(SealingKey: serde::Serialize, serde::Deserialize<'static>);
    assert_not_impl!(SealingKeyRing: serde::Serialize);
    assert_not_impl!(Pepper: serde::Serialize, serde::Deserialize<'static>);
    assert_not_impl!(SigningKey: serde::Serialize, serde::Deserialize<'static>);
    assert_not_impl!(RequestSigner: serde::Serialize);
    assert_not_impl!(Engine: serde::Serialize);
    assert_not_impl!(KeyManager<MemoryKeyStore>: serde::Serialize);
}

// ---------------------------------------------------------------------------
// Runtime: every formatted string is free of secrets.
// ---------------------------------------------------------------------------

/// Everything formatted during the test.
#[derive(Default)]
struct Shown(Vec<(String, String)>);

impl Shown {
    /// `{:?}` and `{:#?}`.
    fn debug<T: Debug + ?Sized>(&mut self, what: &str, value: &T) {
        self.0
            .push((format!("{what} {{:?}}"), format!("{value:?}")));
        self.0
            .push((format!("{what} {{:#?}}"), format!("{value:#?}")));
    }
    /// `{}`, `{:?}` and `{:#?}`.
    fn both<T: Debug + Display + ?Sized>(&mut self, what: &str, value: &T) {
        self.0.push((format!("{what} {{}}"), format!("{value}")));
        self.debug(what, value);
    }
}

/// What must never appear.
#[derive(Default)]
struct Secrets(Vec<(String, String)>);

impl Secrets {
    fn add(&mut self, what: impl Into<String>, value: impl Into<String>) {
        self.0.push((what.into(), value.into()));
    }
    /// A token, its 35-character secret part and every 8-character window
    /// of the secret part.
    fn token(&mut self, what: &str, token: &str) {
        let head = token.len() - 63;
        let secret = &token[head + 22..head + 57];
        self.add(format!("{what}: token"), token);
        self.add(format!("{what}: secret part"), secret);
        for i in 0..=secret.len() - 8 {
            self.add(format!("{what}: secret window {i}"), &secret[i..i + 8]);
        }
    }
    /// A signature's hex value and every 16-character window of it (the
    /// crate shows 8 characters of a signature by design).
    fn signature(&mut self, what: &str, hex: &str) {
        assert_eq!(hex.len(), 128);
        self.add(format!("{what}: signature"), hex);
        for i in (0..=hex.len() - 16).step_by(4) {
            self.add(format!("{what}: signature window {i}"), &hex[i..i + 16]);
        }
    }
}

const T0: time::UtcDateTime = utc_datetime!(2026-04-01 12:00);
const BODY: &[u8] = br#"{"currency":"BTC","foreign_id":"leak-check-1"}"#;

/// Header values passed in; none may be echoed.
const ORIGIN_OK: &str = "https://shop.leakcheck-origin.example";
const REFERER_OK: &str = "https://shop.leakcheck-origin.example/cart?session=leakcheckSESSIONvalue";
const ORIGIN_EVIL: &str = "https://evil.leakcheck-attacker.example";
const REFERER_EVIL: &str = "https://evil.leakcheck-attacker.example/steal?k=leakcheckREFERERvalue";
const XFF_GARBAGE: &str = "leakcheck-forwarded-garbage, 203.0.113.250";

#[test]
fn nothing_formatted_contains_a_secret() {
    let events: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let kinds: Arc<Mutex<Vec<String>>> = Arc::default();
    let clock = Arc::new(ManualClock::new(T0));
    let pepper_bytes = [0x42u8; 32];
    let old_pepper_bytes = [0x43u8; 32];
    let sealing_bytes = [0x5au8; 32];
    let old_sealing_bytes = [0x5bu8; 32];
    let ring = || {
        SealingKeyRing::new(SealingKey::new(2, &sealing_bytes).unwrap())
            .with_previous(SealingKey::new(1, &old_sealing_bytes).unwrap())
            .unwrap()
    };
    let policy = Policy {
        publishable_scopes: Scopes::new(["catalog:read"]).unwrap(),
        ..Policy::default()
    };
    let store = Arc::new(MemoryKeyStore::new());
    let keys = KeyManager::builder(Arc::clone(&store))
        .clock(Arc::clone(&clock))
        .policy(policy.clone())
        .pepper(Pepper::new(2, &pepper_bytes).unwrap())
        .previous_pepper(Pepper::new(1, &old_pepper_bytes).unwrap())
        .sealing_keys(ring())
        .replay_cache(MemoryReplayCache::new(64))
        .events({
            let events = Arc::clone(&events);
            let kinds = Arc::clone(&kinds);
            move |e: &KeyEvent<'_>| {
                kinds.lock().unwrap().push(e.kind.as_str().to_owned());
                let mut ev = events.lock().unwrap();
                ev.push(("event {}".into(), format!("{e}")));
                ev.push(("event {:?}".into(), format!("{e:?}")));
                ev.push(("event {:#?}".into(), format!("{e:#?}")));
            }
        })
        .build()
        .unwrap();
    let admin = Actor::new("leak-checker").unwrap();
    let owner = OwnerId::new("acct_leaks").unwrap();
    let mut shown = Shown::default();
    let mut secrets = Secrets::default();
    secrets.add("origin header", ORIGIN_OK);
    secrets.add("referer header", REFERER_OK);
    secrets.add("referer session", "leakcheckSESSIONvalue");
    secrets.add("evil origin header", ORIGIN_EVIL);
    secrets.add("evil host", "evil.leakcheck-attacker.example");
    secrets.add("evil referer header", REFERER_EVIL);
    secrets.add("evil referer value", "leakcheckREFERERvalue");
    secrets.add("forwarded garbage", "leakcheck-forwarded-garbage");
    for (what, bytes) in [
        ("pepper", pepper_bytes),
        ("old pepper", old_pepper_bytes),
        ("sealing key", sealing_bytes),
        ("old sealing key", old_sealing_bytes),
    ] {
        secrets.add(
            format!("{what} as Debug bytes"),
            format!("{:?}", &bytes[..4])
                .trim_end_matches(']')
                .to_owned(),
        );
        secrets.add(
            format!("{what} as hex"),
            bytes[..4]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
        );
    }

    // ---- create every kind
    let domains = DomainAllowList::new(["shop.leakcheck-origin.example"]).unwrap();
    let ips = IpAllowList::parse("198.51.100.0/24, 2001:db8::/32").unwrap();
    let secret_spec = NewKey::secret(owner.clone(), "billing")
        .note("stored in vault")
        .description("server to server")
        .scopes(Scopes::new(["charges:write", "charges:read"]).unwrap())
        .allowed_domains(domains.clone())
        .allowed_ips(ips.clone());
    shown.debug("NewKey", &secret_spec);
    let secret = keys.create(&admin, secret_spec).unwrap();
    let publishable = keys
        .create(
            &admin,
            NewKey::publishable(owner.clone(), "web").environment(Environment::Test),
        )
        .unwrap();
    let signing = keys
        .create(&admin, NewKey::secret(owner.clone(), "signing").signing())
        .unwrap();
    let inactive = keys
        .create(&admin, NewKey::secret(owner.clone(), "later").inactive())
        .unwrap();
    let expiring = keys
        .create(
            &admin,
            NewKey::secret(owner.clone(), "short").expires_at(T0 + Duration::minutes(5)),
        )
        .unwrap();
    let default_key = keys
        .create_default(&admin, &owner, Environment::Live)
        .unwrap();
    for (what, c) in [
        ("secret", &secret),
        ("publishable", &publishable),
        ("signing", &signing),
        ("inactive", &inactive),
        ("expiring", &expiring),
        ("default", &default_key),
    ] {
        secrets.token(what, c.token.expose_secret());
        shown.debug(&format!("CreatedKey {what}"), c);
        shown.debug(&format!("KeyRecord {what}"), &c.record);
        shown.debug(&format!("Token {what}"), &c.token);
        shown.debug(&format!("SecretHash {what}"), &c.record.secret_hash);
        shown
            .0
            .push((format!("redacted {what}"), c.token.redacted()));
    }
    shown.debug(
        "SealedSecret",
        signing.record.sealed_secret.as_ref().unwrap(),
    );
    let t_secret = secret.token.expose_secret();
    let t_signing = signing.token.expose_secret();

    // ---- offline parsing and generation
    let format = KeyFormat::default();
    let presented = format.parse(t_secret).unwrap();
    shown.debug("PresentedKey", &presented);
    let generated = format.generate(KeyKind::Secret, Environment::Live).unwrap();
    secrets.token("generated", generated.token.expose_secret());
    shown.debug("NewToken", &generated);
    shown.debug("KeyFormat", &format);
    shown.both(
        "Rejection from parse",
        &format.parse(&format!("{t_secret} ")).unwrap_err(),
    );

    // ---- verify: accepted
    let charges_write = Scopes::new(["charges:write"]).unwrap();
    let refunds_write = Scopes::new(["refunds:write"]).unwrap();
    let good_ctx = RequestContext::new()
        .origin(HeaderField::Single(ORIGIN_OK.as_bytes()))
        .referer(HeaderField::Single(REFERER_OK.as_bytes()))
        .peer_ip("198.51.100.7".parse().unwrap())
        .require_scopes(&charges_write);
    shown.debug("RequestContext", &good_ctx);
    shown.debug("HeaderField", &good_ctx.origin);
    shown.debug("HeaderField referer", &good_ctx.referer);
    let verified = keys.verify(t_secret, &good_ctx).unwrap();
    shown.debug("VerifiedKey", &verified);
    shown.debug("VerifiedKey record", verified.record());
    let publishable_ok = keys
        .verify(publishable.token.expose_secret(), &RequestContext::new())
        .unwrap();
    shown.debug("VerifiedKey publishable", &publishable_ok);

    // ---- verify: refused in many ways
    let evil_ctx = RequestContext::new()
        .origin(HeaderField::Single(ORIGIN_EVIL.as_bytes()))
        .referer(HeaderField::Single(REFERER_EVIL.as_bytes()))
        .peer_ip("198.51.100.7".parse().unwrap());
    let bad_ip = RequestContext::new()
        .origin(HeaderField::Single(ORIGIN_OK.as_bytes()))
        .peer_ip("203.0.113.9".parse().unwrap());
    let mut unknown = t_secret[..t_secret.len() - 6].to_owned();
    let replacement = if unknown.as_bytes()[40] == b'A' {
        "B"
    } else {
        "A"
    };
    unknown.replace_range(40..41, replacement);
    let unknown = format!("{unknown}{}", {
        let crc = crc32fast::hash(unknown.as_bytes());
        let mut v = crc;
        let mut out = [b'0'; 6];
        for slot in out.iter_mut().rev() {
            *slot = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                [(v % 62) as usize];
            v /= 62;
        }
        String::from_utf8(out.to_vec()).unwrap()
    });
    secrets.token("unknown", &unknown);
    let refusals: Vec<(&str, String, RequestContext<'_>)> = vec![
        (
            "malformed",
            format!("Bearer {t_secret}"),
            RequestContext::new(),
        ),
        ("unknown", unknown.clone(), good_ctx),
        ("origin", t_secret.to_owned(), evil_ctx),
        ("ip", t_secret.to_owned(), bad_ip),
        (
            "no peer",
            t_secret.to_owned(),
            RequestContext::new().origin(HeaderField::Single(ORIGIN_OK.as_bytes())),
        ),
        (
            "scope",
            t_secret.to_owned(),
            good_ctx.require_scopes(&refunds_write),
        ),
        (
            "environment",
            t_secret.to_owned(),
            RequestContext::new().require_environment(Environment::Test),
        ),
        (
            "kind",
            t_secret.to_owned(),
            RequestContext::new().require_kind(KeyKind::Publishable),
        ),
        (
            "publishable scope",
            publishable.token.expose_secret().to_owned(),
            RequestContext::new().require_scopes(&charges_write),
        ),
        (
            "inactive",
            inactive.token.expose_secret().to_owned(),
            RequestContext::new(),
        ),
        (
            "signing as bearer",
            t_signing.to_owned(),
            RequestContext::new(),
        ),
        (
            "repeated origin",
            t_secret.to_owned(),
            RequestContext::new()
                .origin(HeaderField::Repeated)
                .peer_ip("198.51.100.7".parse().unwrap()),
        ),
    ];
    for (what, token, ctx) in &refusals {
        let e = keys.verify(token, ctx).unwrap_err();
        shown.both(&format!("VerifyError {what}"), &e);
        shown.both(&format!("Rejection {what}"), &e.rejection().unwrap());
        shown.debug(&format!("RequestContext {what}"), ctx);
    }
    clock.advance(Duration::minutes(10));
    let e = keys
        .verify(expiring.token.expose_secret(), &RequestContext::new())
        .unwrap_err();
    shown.both("VerifyError expired", &e);

    // ---- signed requests
    let signer = RequestSigner::for_token_with_format(&format, t_signing).unwrap();
    shown.debug("RequestSigner", &signer);
    let headers = signer.sign(BODY);
    secrets.signature("vendor", &headers.signature);
    shown.debug("SignedHeaders", &headers);
    let replay_headers = signer
        .sign_replay_protected(
            &ReplayRequest {
                timestamp: keys.now(),
                nonce: "leakcheck-nonce-0001",
                method: "POST",
                path: "/v1/pay?leak=check",
            },
            BODY,
        )
        .unwrap();
    secrets.signature("replay", &replay_headers.signature);
    shown.debug("SignedHeaders replay", &replay_headers);
    let signing_key = SigningKey::new(t_signing.as_bytes()).unwrap();
    shown.debug("SigningKey", &signing_key);
    shown.debug("Signature", &signing_key.sign(BODY));
    shown.debug("BodyVerifier", &signing_key.verifier());
    let request = SignedRequest::new(headers.key.as_bytes(), headers.signature.as_bytes(), BODY);
    shown.debug("SignedRequest", &request);
    shown.debug("RequestHead", &request.head);
    let ok = keys
        .verify_signed(&request, &RequestContext::new())
        .unwrap();
    shown.debug("VerifiedKey signed", &ok);
    let other_sig = signer.sign(b"another body").signature;
    secrets.signature("other body", &other_sig);
    let bearer_sig = RequestSigner::for_token_with_format(&format, t_secret)
        .unwrap()
        .sign(BODY)
        .signature;
    secrets.signature("bearer", &bearer_sig);
    let upper = headers.signature.to_uppercase();
    let bearer_id = secret.record.id.to_string();
    let signed_refusals: Vec<(&str, SignedRequest<'_>)> = vec![
        (
            "bad signature",
            SignedRequest::new(headers.key.as_bytes(), other_sig.as_bytes(), BODY),
        ),
        (
            "truncated",
            SignedRequest::new(
                headers.key.as_bytes(),
                &headers.signature.as_bytes()[..100],
                BODY,
            ),
        ),
        (
            "upper-case",
            SignedRequest::new(headers.key.as_bytes(), upper.as_bytes(), BODY),
        ),
        (
            "token as key",
            SignedRequest::new(t_signing.as_bytes(), headers.signature.as_bytes(), BODY),
        ),
        (
            "not a signing key",
            SignedRequest::new(bearer_id.as_bytes(), bearer_sig.as_bytes(), BODY),
        ),
    ];
    for (what, r) in &signed_refusals {
        let e = keys.verify_signed(r, &RequestContext::new()).unwrap_err();
        shown.both(&format!("VerifyError signed {what}"), &e);
        shown.debug(&format!("SignedRequest {what}"), r);
    }
    // Replay-protected mode on a second manager over the same store.
    let replay_keys = KeyManager::builder(Arc::clone(&store))
        .clock(Arc::clone(&clock))
        .sealing_keys(ring())
        .pepper(Pepper::new(2, &pepper_bytes).unwrap())
        .policy(Policy {
            signatures: SignatureConfig {
                replay: Some(ReplayConfig::default()),
                ..SignatureConfig::default()
            },
            ..Policy::default()
        })
        .build()
        .unwrap();
    let replay_request = SignedRequest::new(
        replay_headers.key.as_bytes(),
        replay_headers.signature.as_bytes(),
        BODY,
    )
    .replay_protected(
        replay_headers.timestamp.as_deref().unwrap().as_bytes(),
        replay_headers.nonce.as_deref().unwrap().as_bytes(),
        b"POST",
        b"/v1/pay?leak=check",
    );
    shown.debug("SignedRequest replay", &replay_request);
    replay_keys
        .verify_signed(&replay_request, &RequestContext::new())
        .unwrap();
    let e = replay_keys
        .verify_signed(&replay_request, &RequestContext::new())
        .unwrap_err();
    shown.both("VerifyError replayed", &e);
    let stale = replay_request.replay_protected(b"01", b"short", b"post", b"/\n");
    let e = replay_keys
        .verify_signed(&stale, &RequestContext::new())
        .unwrap_err();
    shown.both("VerifyError stale", &e);
    shown.debug("SignedRequest stale", &stale);

    // ---- roll, grace, revoke, deactivate, activate, update
    let rolled = keys
        .roll(
            &admin,
            &secret.record.id,
            RollOptions::with_grace(Duration::hours(1)),
        )
        .unwrap();
    secrets.token("rolled successor", rolled.token.expose_secret());
    shown.debug("RolledKey", &rolled);
    shown.debug("RollOptions", &RollOptions::default());
    let in_grace = keys.verify(t_secret, &good_ctx).unwrap();
    shown.debug("VerifiedKey in grace", &in_grace);
    let rolled_signing = keys
        .roll(&admin, &signing.record.id, RollOptions::default())
        .unwrap();
    secrets.token(
        "rolled signing successor",
        rolled_signing.token.expose_secret(),
    );
    shown.debug("RolledKey signing", &rolled_signing);
    clock.advance(Duration::hours(2));
    shown.both(
        "VerifyError grace ended",
        &keys.verify(t_secret, &good_ctx).unwrap_err(),
    );
    let update = KeyUpdate::new()
        .name("billing v2")
        .note("moved")
        .allowed_ips(IpAllowList::parse("198.51.100.7").unwrap());
    shown.debug("KeyUpdate", &update);
    let successor = &rolled.successor;
    let updated = keys
        .update(&admin, &successor.id, successor.version, &update)
        .unwrap();
    shown.debug("KeyRecord updated", &updated);
    shown.debug(
        "KeyRecord activated",
        &keys.activate(&admin, &inactive.record.id).unwrap(),
    );
    shown.debug(
        "KeyRecord deactivated",
        &keys.deactivate(&admin, &inactive.record.id).unwrap(),
    );
    shown.debug(
        "KeyRecord revoked",
        &keys.revoke(&admin, &publishable.record.id).unwrap(),
    );
    shown.both(
        "VerifyError revoked",
        &keys
            .verify(publishable.token.expose_secret(), &RequestContext::new())
            .unwrap_err(),
    );
    shown.debug("list", &keys.list(&owner).unwrap());
    shown.debug("get", &keys.get(&successor.id).unwrap());

    // ---- sealing-key rotation and reseal
    let rotated = KeyManager::builder(Arc::clone(&store))
        .clock(Arc::clone(&clock))
        .pepper(Pepper::new(2, &pepper_bytes).unwrap())
        .sealing_keys(
            ring()
                .rotate(SealingKey::new(3, &[0x5cu8; 32]).unwrap())
                .unwrap(),
        )
        .build()
        .unwrap();
    let due = rotated.keys_needing_reseal(&owner).unwrap();
    shown.debug("keys needing reseal", &due);
    for id in &due {
        shown.debug("KeyRecord resealed", &rotated.reseal(&admin, id).unwrap());
    }

    // ---- management errors
    let errors: Vec<(&str, api_keys::Error)> = vec![
        (
            "revoked",
            keys.update(
                &admin,
                &publishable.record.id,
                keys.get(&publishable.record.id).unwrap().version,
                &KeyUpdate::new().name("x"),
            )
            .unwrap_err(),
        ),
        (
            "conflict",
            keys.update(&admin, &successor.id, 1, &KeyUpdate::new().name("x"))
                .unwrap_err(),
        ),
        (
            "invalid state",
            keys.roll(&admin, &inactive.record.id, RollOptions::default())
                .unwrap_err(),
        ),
        (
            "already rolled",
            keys.roll(&admin, &secret.record.id, RollOptions::default())
                .unwrap_err(),
        ),
        ("not found", keys.get(&generated.id).unwrap_err()),
        (
            "invalid name",
            keys.create(&admin, NewKey::secret(owner.clone(), " "))
                .unwrap_err(),
        ),
        (
            "invalid scope",
            keys.create(
                &admin,
                NewKey::publishable(owner.clone(), "p")
                    .scopes(Scopes::new(["charges:write"]).unwrap()),
            )
            .unwrap_err(),
        ),
        (
            "expiry in the past",
            keys.create(&admin, NewKey::secret(owner.clone(), "p").expires_at(T0))
                .unwrap_err(),
        ),
        (
            "no sealing keys",
            KeyManager::new(MemoryKeyStore::new())
                .create(&admin, NewKey::secret(owner.clone(), "s").signing())
                .unwrap_err(),
        ),
        (
            "domain",
            DomainAllowList::new(["https://x.example"])
                .unwrap_err()
                .into(),
        ),
        (
            "ip list",
            IpAllowList::parse("10.0.0.1/8").unwrap_err().into(),
        ),
        ("owner", OwnerId::new("has space").unwrap_err()),
    ];
    for (what, e) in &errors {
        shown.both(&format!("Error {what}"), e);
    }
    let one_active = KeyManager::builder(MemoryKeyStore::new())
        .policy(Policy {
            one_active_key_per_owner: true,
            ..Policy::default()
        })
        .build()
        .unwrap();
    let only = one_active
        .create(&admin, NewKey::secret(owner.clone(), "one"))
        .unwrap();
    secrets.token("one active", only.token.expose_secret());
    shown.both(
        "Error another key active",
        &one_active
            .create(&admin, NewKey::secret(owner.clone(), "two"))
            .unwrap_err(),
    );
    let trusted = TrustedProxies::new(IpAllowList::parse("10.0.0.0/8").unwrap())
        .with_header(ProxyHeader::XForwardedFor);
    shown.debug("TrustedProxies", &trusted);
    let e = client_ip(
        "10.0.0.1".parse().unwrap(),
        HeaderField::Single(XFF_GARBAGE.as_bytes()),
        HeaderField::Absent,
        &trusted,
    )
    .unwrap_err();
    shown.both("ForwardedError", &e);
    let origin_refusal = domains
        .check(
            HeaderField::Single(ORIGIN_EVIL.as_bytes()),
            HeaderField::Absent,
            false,
        )
        .unwrap_err();
    shown.both("OriginRefusal", &origin_refusal);

    // ---- the holders of secrets themselves
    shown.debug("KeyManager", &keys);
    shown.debug("KeyManager replay", &replay_keys);
    shown.debug("Engine", keys.engine());
    shown.debug("Policy", keys.engine().policy());
    shown.debug("Pepper", &Pepper::new(2, &pepper_bytes).unwrap());
    shown.debug("SealingKey", &SealingKey::new(2, &sealing_bytes).unwrap());
    shown.debug("SealingKeyRing", &ring());
    shown.debug("MemoryKeyStore", &*store);
    shown.debug("MemoryReplayCache", &MemoryReplayCache::new(8));

    // ---- the check
    let events = events.lock().unwrap().clone();
    let mut all = shown.0;
    all.extend(events);
    for (what, text) in &all {
        for (secret_what, secret) in &secrets.0 {
            assert!(
                !text.contains(secret.as_str()),
                "{what} leaks {secret_what}: {}",
                text.chars().take(600).collect::<String>()
            );
        }
    }
    // Every kind of event was seen, so the event check covered them all.
    let kinds = kinds.lock().unwrap();
    for kind in [
        "created",
        "activated",
        "deactivated",
        "revoked",
        "rolled",
        "updated",
        "expired_on_use",
        "used_during_grace",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "no {kind} event was emitted"
        );
    }
    assert!(all.len() > 250, "only {} strings checked", all.len());
    assert!(
        secrets.0.len() > 300,
        "only {} secrets checked",
        secrets.0.len()
    );
}
