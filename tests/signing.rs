//! Signed requests end to end through `KeyManager`: a Rust client signs with
//! `RequestSigner`, the server verifies with `verify_signed`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::type_complexity,
    reason = "test code: a failed expectation should panic"
)]
use api_keys::replay::MemoryReplayCache;
use api_keys::signing::{ReplayConfig, ReplayRequest};
use api_keys::testing::ManualClock;
use api_keys::{
    Actor, Environment, Error, KeyManager, KeyStore, MemoryKeyStore, NewKey, OwnerId, Policy,
    Rejection, RequestContext, RequestSigner, RollOptions, SealingKey, SealingKeyRing,
    SignatureConfig, SignedRequest, VerifyError, WriteCondition,
};
use std::sync::Arc;
use time::macros::utc_datetime;
use time::{Duration, UtcDateTime};

const T0: UtcDateTime = utc_datetime!(2026-07-01 10:00);
const BODY: &[u8] = br#"{"currency":"BTC","foreign_id":"123456"}"#;

fn ring(version: u32, byte: u8) -> SealingKeyRing {
    SealingKeyRing::new(SealingKey::new(version, &[byte; 32]).unwrap())
}

struct Fx {
    keys: KeyManager<MemoryKeyStore>,
    clock: Arc<ManualClock>,
    admin: Actor,
    owner: OwnerId,
}

fn fx_with(policy: Policy, ring: SealingKeyRing) -> Fx {
    let clock = Arc::new(ManualClock::new(T0));
    Fx {
        keys: KeyManager::builder(MemoryKeyStore::new())
            .clock(Arc::clone(&clock))
            .policy(policy)
            .sealing_keys(ring)
            .replay_cache(MemoryReplayCache::new(1024))
            .build()
            .unwrap(),
        clock,
        admin: Actor::new("ops").unwrap(),
        owner: OwnerId::new("merchant_1").unwrap(),
    }
}

fn fx() -> Fx {
    fx_with(Policy::default(), ring(1, 7))
}

impl Fx {
    fn signing_key(&self, env: Environment) -> (api_keys::KeyRecord, api_keys::Token) {
        let c = self
            .keys
            .create(
                &self.admin,
                NewKey::secret(self.owner.clone(), "api")
                    .environment(env)
                    .signing(),
            )
            .unwrap();
        (c.record, c.token)
    }
    fn send(
        &self,
        key: &str,
        signature: &str,
        body: &[u8],
    ) -> Result<api_keys::VerifiedKey, VerifyError> {
        self.keys.verify_signed(
            &SignedRequest::new(key.as_bytes(), signature.as_bytes(), body),
            &RequestContext::new(),
        )
    }
    fn rejection(&self, key: &str, signature: &str, body: &[u8]) -> Option<Rejection> {
        self.send(key, signature, body)
            .err()
            .and_then(|e| e.rejection())
    }
}

fn signer(token: &api_keys::Token) -> RequestSigner {
    RequestSigner::for_token(token.expose_secret()).unwrap()
}

#[test]
fn vendor_published_check_value() {
    let s = RequestSigner::new("any-key-id", b"AbCdEfG123456").unwrap();
    let h = s.sign(BODY);
    assert_eq!(
        h.signature,
        "03c25fcf7cd35e7d995e402cd5d51edd72d48e1471e865907967809a0c189ba55b90815f20e2bb10f82c7a9e9d865546fda58989c2ae9e8e2ff7bc29195fa1ec"
    );
    assert_eq!(h.key, "any-key-id");
}

#[test]
fn client_and_server_exchange_signed_requests() {
    let f = fx();
    let (rec, token) = f.signing_key(Environment::Live);
    let h = signer(&token).sign(BODY);
    assert_eq!(
        h.key,
        rec.id.to_string(),
        "X-Processing-Key carries the public key id"
    );
    assert!(
        !h.key.contains(&token.expose_secret()[8..]),
        "the secret never travels"
    );
    assert_eq!(h.signature.len(), 128);
    let v = f.send(&h.key, &h.signature, BODY).unwrap();
    assert_eq!(v.id(), rec.id);
    assert!(
        v.is_signed(),
        "the body is known to come from the key holder"
    );
    // Same request from a CoinsPaid-style client (plain HMAC-SHA512 of the
    // body keyed with the secret string).
    let plain = RequestSigner::new(rec.id.to_string(), token.expose_secret().as_bytes()).unwrap();
    assert_eq!(plain.sign(BODY).signature, h.signature);
}

#[test]
fn any_change_is_refused() {
    let f = fx();
    let (_, token) = f.signing_key(Environment::Live);
    let h = signer(&token).sign(BODY);
    let mut body = BODY.to_vec();
    for i in 0..body.len() {
        body[i] ^= 1;
        assert_eq!(
            f.rejection(&h.key, &h.signature, &body),
            Some(Rejection::BadSignature)
        );
        body[i] ^= 1;
    }
    for variant in [
        br#"{"foreign_id":"123456","currency":"BTC"}"#.to_vec(),
        br#"{"currency": "BTC","foreign_id":"123456"}"#.to_vec(),
        [BODY, b"\n"].concat(),
        Vec::new(),
    ] {
        assert_eq!(
            f.rejection(&h.key, &h.signature, &variant),
            Some(Rejection::BadSignature)
        );
    }
    let sig = h.signature.as_bytes();
    for i in 0..sig.len() {
        let mut s = sig.to_vec();
        s[i] = if s[i] == b'0' { b'1' } else { b'0' };
        let s = String::from_utf8(s).unwrap();
        assert_eq!(
            f.rejection(&h.key, &s, BODY),
            Some(Rejection::BadSignature),
            "hex digit {i}"
        );
    }
    for bad in [
        String::new(),
        h.signature[..127].to_owned(),
        h.signature[..64].to_owned(),
        h.signature.to_uppercase(),
        format!("sha512={}", h.signature),
        format!(" {}", h.signature),
        format!("{},{}", h.signature, h.signature),
    ] {
        assert_eq!(
            f.rejection(&h.key, &bad, BODY),
            Some(Rejection::BadSignature),
            "{bad:.20}"
        );
    }
}

#[test]
fn stored_hash_is_not_the_hmac_key() {
    let f = fx();
    let (rec, _) = f.signing_key(Environment::Live);
    let stored = f.keys.get(&rec.id).unwrap();
    let forger =
        RequestSigner::new(rec.id.to_string(), &stored.secret_hash.unwrap().digest).unwrap();
    let h = forger.sign(BODY);
    assert_eq!(
        f.rejection(&h.key, &h.signature, BODY),
        Some(Rejection::BadSignature)
    );
    let sealed = stored.sealed_secret.as_ref().unwrap();
    let forger = RequestSigner::new(rec.id.to_string(), &sealed.ciphertext).unwrap();
    let h = forger.sign(BODY);
    assert_eq!(
        f.rejection(&h.key, &h.signature, BODY),
        Some(Rejection::BadSignature)
    );
}

#[test]
fn a_test_key_cannot_sign_for_a_live_key() {
    let f = fx();
    let (live, _) = f.signing_key(Environment::Live);
    let (_, test_token) = f.signing_key(Environment::Test);
    let forged = RequestSigner::new(live.id.to_string(), test_token.expose_secret().as_bytes())
        .unwrap()
        .sign(BODY);
    assert_eq!(
        f.rejection(&forged.key, &forged.signature, BODY),
        Some(Rejection::BadSignature)
    );
    // A test key signs fine for itself, and a live-only endpoint refuses it.
    let h = signer(&test_token).sign(BODY);
    let live_only = RequestContext::new().require_environment(Environment::Live);
    let err = f
        .keys
        .verify_signed(
            &SignedRequest::new(h.key.as_bytes(), h.signature.as_bytes(), BODY),
            &live_only,
        )
        .unwrap_err();
    assert_eq!(err.rejection(), Some(Rejection::WrongEnvironment));
}

#[test]
fn signing_and_bearer_keys_stay_apart() {
    let f = fx();
    let (_, signing) = f.signing_key(Environment::Live);
    let err = f
        .keys
        .verify(signing.expose_secret(), &RequestContext::new())
        .unwrap_err();
    assert_eq!(
        err.rejection(),
        Some(Rejection::SigningKeyAsBearer),
        "its secret must never travel"
    );
    let bearer = f
        .keys
        .create(&f.admin, NewKey::secret(f.owner.clone(), "bearer"))
        .unwrap();
    let h = signer(&bearer.token).sign(BODY);
    assert_eq!(
        f.rejection(&h.key, &h.signature, BODY),
        Some(Rejection::NotASigningKey)
    );
    // Without sealing keys no signing key can be created.
    let plain = KeyManager::new(MemoryKeyStore::new());
    assert!(matches!(
        plain.create(&f.admin, NewKey::secret(f.owner.clone(), "s").signing()),
        Err(Error::NoSealingKeys)
    ));
}

#[test]
fn offline_checks_and_unknown_keys() {
    let f = fx();
    let (_, token) = f.signing_key(Environment::Live);
    let h = signer(&token).sign(BODY);
    assert_eq!(
        f.rejection("not-an-id", &h.signature, BODY),
        Some(Rejection::Malformed)
    );
    assert_eq!(
        f.rejection("", &h.signature, BODY),
        Some(Rejection::Malformed)
    );
    let unknown = api_keys::KeyId::from_bytes([9; 16]).to_string();
    assert_eq!(
        f.rejection(&unknown, &h.signature, BODY),
        Some(Rejection::UnknownKey)
    );
    let big = vec![b'x'; (1 << 20) + 1];
    assert_eq!(
        f.rejection(&h.key, &h.signature, &big),
        Some(Rejection::BodyTooLarge)
    );
    assert_eq!(Rejection::BodyTooLarge.http_status(), 413);
}

#[test]
fn signatures_across_a_roll() {
    let f = fx();
    let (rec, old) = f.signing_key(Environment::Live);
    f.clock.advance(Duration::hours(1));
    let rolled = f
        .keys
        .roll(&f.admin, &rec.id, RollOptions::default())
        .unwrap();
    assert!(
        rolled.successor.sealed_secret.is_some(),
        "the successor is a signing key too"
    );
    let old_h = signer(&old).sign(BODY);
    let new_h = signer(&rolled.token).sign(BODY);
    assert_ne!(old_h.key, new_h.key);
    assert!(
        f.send(&old_h.key, &old_h.signature, BODY)
            .unwrap()
            .in_grace()
    );
    assert!(
        !f.send(&new_h.key, &new_h.signature, BODY)
            .unwrap()
            .in_grace()
    );
    // Each secret only under its own key id.
    assert_eq!(
        f.rejection(&new_h.key, &old_h.signature, BODY),
        Some(Rejection::BadSignature)
    );
    assert_eq!(
        f.rejection(&old_h.key, &new_h.signature, BODY),
        Some(Rejection::BadSignature)
    );
    f.clock.advance(Duration::hours(12));
    assert_eq!(
        f.rejection(&old_h.key, &old_h.signature, BODY),
        Some(Rejection::GraceEnded)
    );
    assert!(f.send(&new_h.key, &new_h.signature, BODY).is_ok());
    f.keys.revoke(&f.admin, &rolled.successor.id).unwrap();
    assert_eq!(
        f.rejection(&new_h.key, &new_h.signature, BODY),
        Some(Rejection::Revoked)
    );
}

#[test]
fn a_sealed_secret_moved_to_another_record_does_not_unseal() {
    let f = fx();
    let (a, a_token) = f.signing_key(Environment::Live);
    let (b, _) = f.signing_key(Environment::Live);
    // An attacker with write access to the store copies A's sealed secret
    // into B's record, then signs for B with A's secret.
    let mut moved = (*f.keys.get(&b.id).unwrap()).clone();
    moved.sealed_secret = f.keys.get(&a.id).unwrap().sealed_secret.clone();
    moved.version += 1;
    KeyStore::update(f.keys.store(), &moved, b.version, WriteCondition::Always).unwrap();
    let forged = RequestSigner::new(b.id.to_string(), a_token.expose_secret().as_bytes())
        .unwrap()
        .sign(BODY);
    let err = f.send(&forged.key, &forged.signature, BODY).unwrap_err();
    assert!(
        matches!(err, VerifyError::Failed(Error::Sealing(_))),
        "{err:?}"
    );
    assert_eq!(err.http_status(), 500, "fails closed");
}

#[test]
fn sealing_key_rotation_and_reseal() {
    let f = fx_with(Policy::default(), ring(1, 7));
    let (rec, token) = f.signing_key(Environment::Live);
    // The host rotates: version 2 current, version 1 still opens old secrets.
    let rotated = ring(2, 8)
        .with_previous(SealingKey::new(1, &[7; 32]).unwrap())
        .unwrap();
    let store = MemoryKeyStore::new();
    KeyStore::insert(
        &store,
        &f.keys.get(&rec.id).unwrap(),
        WriteCondition::Always,
    )
    .unwrap();
    let keys = KeyManager::builder(store)
        .clock(Arc::clone(&f.clock))
        .sealing_keys(rotated)
        .build()
        .unwrap();
    let h = signer(&token).sign(BODY);
    let req = SignedRequest::new(h.key.as_bytes(), h.signature.as_bytes(), BODY);
    assert!(keys.verify_signed(&req, &RequestContext::new()).is_ok());
    assert_eq!(keys.keys_needing_reseal(&f.owner).unwrap(), vec![rec.id]);
    let resealed = keys.reseal(&f.admin, &rec.id).unwrap();
    assert_eq!(resealed.sealed_secret.as_ref().unwrap().key_version, 2);
    assert!(keys.keys_needing_reseal(&f.owner).unwrap().is_empty());
    assert!(keys.verify_signed(&req, &RequestContext::new()).is_ok());
    // Once resealed, version 1 can be retired.
    let store = MemoryKeyStore::new();
    KeyStore::insert(&store, &keys.get(&rec.id).unwrap(), WriteCondition::Always).unwrap();
    let only_v2 = KeyManager::builder(store)
        .clock(Arc::clone(&f.clock))
        .sealing_keys(ring(2, 8))
        .build()
        .unwrap();
    assert!(only_v2.verify_signed(&req, &RequestContext::new()).is_ok());
    // A manager missing the version fails closed, not "bad signature".
    let store = MemoryKeyStore::new();
    KeyStore::insert(
        &store,
        &f.keys.get(&rec.id).unwrap(),
        WriteCondition::Always,
    )
    .unwrap();
    let stale = KeyManager::builder(store)
        .clock(Arc::clone(&f.clock))
        .sealing_keys(ring(3, 9))
        .build()
        .unwrap();
    let err = stale
        .verify_signed(&req, &RequestContext::new())
        .unwrap_err();
    assert!(
        matches!(err, VerifyError::Failed(Error::UnknownKeyVersion(1))),
        "{err:?}"
    );
}

#[test]
fn replay_protected_mode() {
    let policy = Policy {
        signatures: SignatureConfig {
            replay: Some(ReplayConfig::default()),
            ..SignatureConfig::default()
        },
        ..Policy::default()
    };
    let f = fx_with(policy, ring(1, 7));
    let (_, token) = f.signing_key(Environment::Live);
    let s = signer(&token);
    let sign_at = |t: UtcDateTime, nonce: &str| {
        s.sign_replay_protected(
            &ReplayRequest {
                timestamp: t,
                nonce,
                method: "POST",
                path: "/v2/withdrawal/crypto",
            },
            BODY,
        )
        .unwrap()
    };
    let send = |h: &api_keys::SignedHeaders, method: &str, path: &str| {
        f.keys
            .verify_signed(
                &SignedRequest::new(h.key.as_bytes(), h.signature.as_bytes(), BODY)
                    .replay_protected(
                        h.timestamp.as_deref().unwrap_or("").as_bytes(),
                        h.nonce.as_deref().unwrap_or("").as_bytes(),
                        method.as_bytes(),
                        path.as_bytes(),
                    ),
                &RequestContext::new(),
            )
            .map_err(|e| e.rejection())
    };
    let h = sign_at(T0, "nonce-0000000000000001");
    assert!(send(&h, "POST", "/v2/withdrawal/crypto").is_ok());
    assert_eq!(
        send(&h, "POST", "/v2/withdrawal/crypto").unwrap_err(),
        Some(Rejection::Replayed)
    );
    let h = sign_at(T0, "nonce-0000000000000002");
    assert_eq!(
        send(&h, "PUT", "/v2/withdrawal/crypto").unwrap_err(),
        Some(Rejection::BadSignature),
        "method bound"
    );
    assert_eq!(
        send(&h, "POST", "/v2/other").unwrap_err(),
        Some(Rejection::BadSignature),
        "path bound"
    );
    // Tolerance is symmetric: ±300 s accepted, ±301 s refused.
    for (offset, ok) in [(300i64, true), (-300, true), (301, false), (-301, false)] {
        let nonce = format!(
            "nonce-offset-{}{}-xyz",
            if offset < 0 { "m" } else { "p" },
            offset.unsigned_abs()
        );
        let h = sign_at(T0 + Duration::seconds(offset), &nonce);
        let out = send(&h, "POST", "/v2/withdrawal/crypto");
        assert_eq!(out.is_ok(), ok, "offset {offset}");
        if !ok {
            assert_eq!(out.unwrap_err(), Some(Rejection::StaleRequest));
        }
    }
    // The vendor-compatible (body-only) signature is refused in this mode.
    let body_only = s.sign(BODY);
    assert!(send(&body_only, "POST", "/v2/withdrawal/crypto").is_err());
}

#[test]
fn for_token_fails_like_new_without_echoing_the_input() {
    let not_a_token = "sk_live_definitely-not-a-valid-token-value";
    let err = RequestSigner::for_token(not_a_token).unwrap_err();
    assert!(matches!(
        err,
        api_keys::signing::SignatureError::MalformedToken
    ));
    assert!(!err.to_string().contains("definitely"), "{err}");
    assert!(!format!("{err:?}").contains("definitely"));
    // The same error type as `RequestSigner::new`.
    let err: api_keys::signing::SignatureError = RequestSigner::new("", b"x").unwrap_err();
    assert!(matches!(
        err,
        api_keys::signing::SignatureError::InvalidKeyId
    ));
}

/// A server with its own key format: its signing keys are unsealed and
/// checked against that format (not the default one), and its clients sign
/// with `for_token_with_format`.
#[test]
fn signing_keys_of_a_custom_format() {
    let format = api_keys::KeyFormat::builder()
        .secret_prefix("acme")
        .publishable_prefix("acmepub")
        .build()
        .unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let keys = KeyManager::builder(MemoryKeyStore::new())
        .clock(Arc::clone(&clock))
        .format(format.clone())
        .sealing_keys(ring(1, 7))
        .build()
        .unwrap();
    assert!(
        format!("{keys:?}").contains("prefixes: acme/acmepub"),
        "{keys:?}"
    );
    let admin = Actor::new("ops").unwrap();
    let owner = OwnerId::new("merchant_1").unwrap();
    let c = keys
        .create(&admin, NewKey::secret(owner, "api").signing())
        .unwrap();
    assert!(c.token.expose_secret().starts_with("acme_live_"));
    assert!(RequestSigner::for_token(c.token.expose_secret()).is_err());
    let h = RequestSigner::for_token_with_format(&format, c.token.expose_secret())
        .unwrap()
        .sign(BODY);
    let v = keys
        .verify_signed(
            &SignedRequest::new(h.key.as_bytes(), h.signature.as_bytes(), BODY),
            &RequestContext::new(),
        )
        .unwrap();
    assert_eq!(v.id(), c.record.id);
}
