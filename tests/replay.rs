//! The replay-protected signing mode through `KeyManager`: which requests
//! may spend replay-cache space, how the cache is shared between keys, and
//! which instant the window and the cache are checked at.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::type_complexity,
    reason = "test code: a failed expectation should panic"
)]
use api_keys::replay::{MemoryReplayCache, ReplayCache, ReplayCacheError};
use api_keys::signing::{ReplayConfig, ReplayRequest};
use api_keys::testing::ManualClock;
use api_keys::{
    Actor, Clock, IpAllowList, KeyId, KeyManager, KeyRecord, KeyStore, MemoryKeyStore, NewKey,
    OwnerId, Policy, Rejection, RequestContext, RequestSigner, RollPlan, SealingKey,
    SealingKeyRing, SignatureConfig, SignedRequest, StoreError, Token, VerifiedKey, VerifyError,
    WriteCondition,
};
use std::sync::{Arc, Mutex};
use time::macros::utc_datetime;
use time::{Duration, UtcDateTime};

const T0: UtcDateTime = utc_datetime!(2026-07-01 10:00);
const BODY: &[u8] = br#"{"currency":"BTC","foreign_id":"123456"}"#;
const PATH: &str = "/v2/withdrawal/crypto";

/// A replay cache the test keeps a handle on (to purge it, to count its
/// entries) while the manager owns another.
#[derive(Clone)]
struct Shared(Arc<MemoryReplayCache>);

impl ReplayCache for Shared {
    fn check_and_insert(
        &self,
        scope: &[u8],
        nonce: &str,
        expires_at: UtcDateTime,
        now: UtcDateTime,
    ) -> Result<bool, ReplayCacheError> {
        self.0.check_and_insert(scope, nonce, expires_at, now)
    }
}

/// A store that runs a hook (once) when a record is looked up: what another
/// thread or server does while a verification waits for the store.
#[derive(Default)]
struct Hooked {
    inner: MemoryKeyStore,
    on_get: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl KeyStore for Hooked {
    fn insert(&self, r: &KeyRecord, c: WriteCondition) -> Result<(), StoreError> {
        self.inner.insert(r, c)
    }
    fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let out = KeyStore::get(&self.inner, id);
        let hook = self.on_get.lock().unwrap().take();
        if let Some(hook) = hook {
            hook();
        }
        out
    }
    fn list_by_owner(&self, o: &OwnerId) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        KeyStore::list_by_owner(&self.inner, o)
    }
    fn update(&self, r: &KeyRecord, v: u64, c: WriteCondition) -> Result<(), StoreError> {
        KeyStore::update(&self.inner, r, v, c)
    }
    fn apply_roll(&self, p: &RollPlan) -> Result<(), StoreError> {
        KeyStore::apply_roll(&self.inner, p)
    }
    fn touch(&self, id: &KeyId, usage: api_keys::Usage) -> Result<(), StoreError> {
        KeyStore::touch(&self.inner, id, usage)
    }
}

struct Fx {
    keys: KeyManager<Hooked>,
    clock: Arc<ManualClock>,
    cache: Arc<MemoryReplayCache>,
    admin: Actor,
    owner: OwnerId,
}

fn fx(cache: MemoryReplayCache) -> Fx {
    let clock = Arc::new(ManualClock::new(T0));
    let cache = Arc::new(cache);
    let policy = Policy {
        signatures: SignatureConfig {
            replay: Some(ReplayConfig::default()),
            ..SignatureConfig::default()
        },
        ..Policy::default()
    };
    Fx {
        keys: KeyManager::builder(Hooked::default())
            .clock(Arc::clone(&clock))
            .policy(policy)
            .sealing_keys(SealingKeyRing::new(SealingKey::new(1, &[7; 32]).unwrap()))
            .replay_cache(Shared(Arc::clone(&cache)))
            .build()
            .unwrap(),
        clock,
        cache,
        admin: Actor::new("ops").unwrap(),
        owner: OwnerId::new("merchant_1").unwrap(),
    }
}

impl Fx {
    fn signing_key(&self, spec: NewKey) -> (KeyRecord, Token) {
        let c = self.keys.create(&self.admin, spec.signing()).unwrap();
        (c.record, c.token)
    }

    fn key(&self, name: &str) -> (KeyRecord, Token) {
        self.signing_key(NewKey::secret(self.owner.clone(), name))
    }

    /// Signs `BODY` for POST `PATH` at `at` with `nonce` and verifies it at
    /// the manager's clock.
    fn send(
        &self,
        token: &Token,
        at: UtcDateTime,
        nonce: &str,
        context: &RequestContext<'_>,
    ) -> Result<VerifiedKey, VerifyError> {
        let signer = RequestSigner::for_token(token.expose_secret()).unwrap();
        let h = signer
            .sign_replay_protected(
                &ReplayRequest {
                    timestamp: at,
                    nonce,
                    method: "POST",
                    path: PATH,
                },
                BODY,
            )
            .unwrap();
        let timestamp = h.timestamp.unwrap();
        let nonce = h.nonce.unwrap();
        self.keys.verify_signed(
            &SignedRequest::new(h.key.as_bytes(), h.signature.as_bytes(), BODY).replay_protected(
                timestamp.as_bytes(),
                nonce.as_bytes(),
                b"POST",
                PATH.as_bytes(),
            ),
            context,
        )
    }
}

fn nonce(tag: &str, i: usize) -> String {
    format!("{tag}-nonce-{i:08}")
}

/// Defect 1 (review of 0.1): a key that is refused for its status, its time
/// or its policy proved possession of the secret, but its request is refused:
/// it must not spend replay-cache space. Before the fix the nonce was
/// recorded right after the MAC check, so a revoked key could fill the shared
/// cache and make every other key's requests fail closed.
#[test]
fn refused_signed_requests_record_no_nonce() {
    let f = fx(MemoryReplayCache::new(4));
    let (revoked, revoked_token) = f.key("revoked");
    f.keys.revoke(&f.admin, &revoked.id).unwrap();
    let (_, inactive_token) = f.signing_key(NewKey::secret(f.owner.clone(), "inactive").inactive());
    let (_, expired_token) = f.signing_key(
        NewKey::secret(f.owner.clone(), "expiring").expires_at(T0 + Duration::minutes(1)),
    );
    let (_, ip_token) = f.signing_key(
        NewKey::secret(f.owner.clone(), "ip-bound")
            .allowed_ips(IpAllowList::parse("203.0.113.0/24").unwrap()),
    );
    let (_, good_token) = f.key("good");
    f.clock.set(T0 + Duration::minutes(2));
    let now = f.clock.now();
    let outside: RequestContext<'_> =
        RequestContext::new().peer_ip("198.51.100.7".parse().unwrap());
    let refused = [
        (&revoked_token, RequestContext::new(), Rejection::Revoked),
        (&inactive_token, RequestContext::new(), Rejection::Inactive),
        (&expired_token, RequestContext::new(), Rejection::Expired),
        (&ip_token, outside, Rejection::IpNotAllowed),
    ];
    for (i, (token, context, why)) in refused.iter().enumerate() {
        // Many more requests than the cache holds, each with a new nonce.
        for n in 0..10 {
            let out = f.send(token, now, &nonce(&format!("r{i}"), n), context);
            assert_eq!(
                out.unwrap_err().rejection(),
                Some(*why),
                "refused for its own reason, not for a full cache"
            );
        }
    }
    assert_eq!(f.cache.len(), 0, "no refused request recorded a nonce");
    // Another key is still served.
    f.send(&good_token, now, &nonce("good", 0), &RequestContext::new())
        .unwrap();
}

/// Defect 1, second half: even a key whose requests are all accepted gets
/// only a bounded share of the cache, so one credential can never exhaust
/// it for the others.
#[test]
fn one_key_cannot_exhaust_the_replay_cache() {
    let f = fx(MemoryReplayCache::new(64));
    let (_, busy) = f.key("busy");
    let (_, quiet) = f.key("quiet");
    let now = f.clock.now();
    assert_eq!(f.cache.scope_limit(), 16, "a quarter of the capacity");
    for n in 0..16 {
        f.send(&busy, now, &nonce("busy", n), &RequestContext::new())
            .unwrap();
    }
    let refused = f
        .send(&busy, now, &nonce("busy", 16), &RequestContext::new())
        .unwrap_err();
    assert_eq!(refused.rejection(), Some(Rejection::ReplayQuotaExceeded));
    assert_eq!(refused.http_status(), 429);
    assert_eq!(f.cache.len(), 16, "the refused nonce was not stored");
    // The other keys are served.
    for n in 0..16 {
        f.send(&quiet, now, &nonce("quiet", n), &RequestContext::new())
            .unwrap();
    }
    // The busy key's share comes back as its nonces leave the window.
    f.clock.set(T0 + Duration::seconds(301));
    let later = f.clock.now();
    f.send(&busy, later, &nonce("busy", 17), &RequestContext::new())
        .unwrap();
}

/// Defect 2 (review of 0.1): the window and the cache must be checked with
/// one instant that is never older than the store lookup. Here the nonce's
/// entry is purged while the verification waits for the store (the clock
/// has passed the entry's expiry by then); a verifier still using the
/// instant it read before the lookup would find the window open and the
/// cache empty, and accept the captured request a second time.
#[test]
fn a_purge_during_the_lookup_cannot_let_a_replay_through() {
    let f = fx(MemoryReplayCache::new(1024));
    let (_, token) = f.key("k");
    let first = f.send(&token, T0, &nonce("captured", 0), &RequestContext::new());
    first.unwrap();
    // The replay arrives while the request is still inside the window by
    // the clock read on arrival; during the lookup the clock passes the
    // window and a purge forgets the nonce.
    f.clock.set(T0 + Duration::seconds(300));
    let clock = Arc::clone(&f.clock);
    let cache = Arc::clone(&f.cache);
    *f.keys.store().on_get.lock().unwrap() = Some(Box::new(move || {
        clock.set(T0 + Duration::seconds(301));
        cache.purge_expired(clock.now());
    }));
    let replay = f.send(&token, T0, &nonce("captured", 0), &RequestContext::new());
    let rejection = replay.unwrap_err().rejection();
    assert!(
        matches!(
            rejection,
            Some(Rejection::StaleRequest | Rejection::Replayed)
        ),
        "the captured request was accepted twice: {rejection:?}"
    );
}
