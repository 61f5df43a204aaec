//! Pending keys (CoinsPaid, seed 001): "generate" a key with no secret,
//! "activate" it (optionally with an IP list) and see the secret exactly
//! once, then deactivate it and generate and activate a replacement.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed expectation should panic"
)]

use api_keys::testing::ManualClock;
use api_keys::{
    Actor, Error, EventKind, EventSink, IpAllowList, KeyEvent, KeyId, KeyManager, KeyRecord,
    KeyStatus, KeyStore, KeyUpdate, MemoryKeyStore, NewKey, OwnerId, Policy, Rejection,
    RequestContext, RequestSigner, RollOptions, RollPlan, SealingKey, SealingKeyRing,
    SignedRequest, StoreError, Usage, WriteCondition,
};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use time::macros::utc_datetime;
use time::{Duration, UtcDateTime};

const T0: UtcDateTime = utc_datetime!(2026-07-01 09:00);
const BODY: &[u8] = br#"{"currency":"BTC","amount":"0.01"}"#;

fn ring() -> SealingKeyRing {
    SealingKeyRing::new(SealingKey::new(1, &[0x42; 32]).unwrap())
}

#[derive(Default)]
struct Events(Mutex<Vec<(EventKind, KeyId)>>);

impl EventSink for Events {
    fn on_event(&self, event: &KeyEvent<'_>) {
        self.0.lock().unwrap().push((event.kind, event.key_id));
    }
}

/// A merchant account as CoinsPaid runs it: one active key per merchant,
/// signing keys.
fn coinspaid<S>(store: S) -> (KeyManager<S>, Arc<ManualClock>, Arc<Events>) {
    let clock = Arc::new(ManualClock::new(T0));
    let events = Arc::new(Events::default());
    let keys = KeyManager::builder(store)
        .policy(Policy {
            one_active_key_per_owner: true,
            ..Policy::default()
        })
        .sealing_keys(ring())
        .clock(Arc::clone(&clock))
        .events({
            let events = Arc::clone(&events);
            move |event: &KeyEvent<'_>| events.on_event(event)
        })
        .build()
        .unwrap();
    (keys, clock, events)
}

fn merchant() -> OwnerId {
    OwnerId::new("merchant_42").unwrap()
}

fn admin() -> Actor {
    Actor::new("user:7").unwrap()
}

fn from(ip: &str) -> RequestContext<'static> {
    RequestContext::new().peer_ip(ip.parse::<IpAddr>().unwrap())
}

fn signed<S: KeyStore>(
    keys: &KeyManager<S>,
    signer: &RequestSigner,
    ip: &str,
) -> Result<KeyId, Rejection> {
    let h = signer.sign(BODY);
    keys.verify_signed(
        &SignedRequest::new(h.key.as_bytes(), h.signature.as_bytes(), BODY),
        &from(ip),
    )
    .map(|v| v.id())
    .map_err(|e| e.rejection().expect("a rejection"))
}

#[test]
fn the_coinspaid_flow_generate_list_activate_sign_deactivate_replace() {
    let (keys, clock, events) = coinspaid(MemoryKeyStore::new());
    let shop = merchant();

    // Generate: a public id in the list of generated keys, no secret yet.
    let first = keys
        .create_pending(&admin(), NewKey::secret(shop.clone(), "shop").signing())
        .unwrap();
    assert_eq!(first.status, KeyStatus::Pending);
    assert!(first.is_pending() && first.is_signing_key());
    assert_eq!(first.secret_hash, None);
    assert_eq!(first.sealed_secret, None);
    assert_eq!(first.redacted, "sk_live_…");
    let listed = keys.list(&shop).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].status, KeyStatus::Pending);
    // Nothing verifies for it: a signature under any secret is refused.
    let guess = RequestSigner::new(first.id.to_string(), b"guessed-secret").unwrap();
    assert!(signed(&keys, &guess, "203.0.113.7").is_err());

    // Activate, with the IP list, in one step: the secret, once.
    clock.advance(Duration::minutes(5));
    let ips = IpAllowList::parse("203.0.113.7, 2001:db8::7").unwrap();
    let active = keys
        .activate_pending(&admin(), &first.id, Some(ips.clone()))
        .unwrap();
    assert_eq!(active.record.id, first.id);
    assert_eq!(active.record.status, KeyStatus::Active);
    assert_eq!(active.record.allowed_ips, ips);
    assert!(active.record.secret_hash.is_some() && active.record.sealed_secret.is_some());
    assert!(active.token.expose_secret().starts_with("sk_live_"));
    assert_eq!(active.record.redacted, active.token.redacted());
    assert_eq!(keys.get(&first.id).unwrap().as_ref(), &active.record);

    // Sign requests with it: accepted from a listed address only.
    let signer = RequestSigner::for_token(active.token.expose_secret()).unwrap();
    assert_eq!(signed(&keys, &signer, "203.0.113.7"), Ok(first.id));
    assert_eq!(signed(&keys, &signer, "2001:db8::7"), Ok(first.id));
    assert_eq!(
        signed(&keys, &signer, "198.51.100.1"),
        Err(Rejection::IpNotAllowed)
    );
    // A signing key is never a bearer key.
    assert!(
        keys.verify(active.token.expose_secret(), &from("203.0.113.7"))
            .is_err()
    );

    // The secret is shown once: never again, whatever is called.
    assert!(matches!(
        keys.activate_pending(&admin(), &first.id, None),
        Err(Error::SecretAlreadyRevealed(id)) if id == first.id
    ));
    let again = keys.activate(&admin(), &first.id).unwrap();
    assert_eq!(again.status, KeyStatus::Active);

    // One active key per merchant: a second generated key stays pending
    // (and secret-less) while the first is active.
    let second = keys
        .create_pending(&admin(), NewKey::secret(shop.clone(), "shop v2").signing())
        .unwrap();
    assert!(matches!(
        keys.activate_pending(&admin(), &second.id, None),
        Err(Error::AnotherKeyActive)
    ));
    let still = keys.get(&second.id).unwrap();
    assert_eq!(still.status, KeyStatus::Pending);
    assert_eq!(still.secret_hash, None);

    // Lost the secret: deactivate, then generate and activate a new one.
    keys.deactivate(&admin(), &first.id).unwrap();
    assert_eq!(
        signed(&keys, &signer, "203.0.113.7"),
        Err(Rejection::Inactive)
    );
    let replacement = keys.activate_pending(&admin(), &second.id, None).unwrap();
    let new_signer = RequestSigner::for_token(replacement.token.expose_secret()).unwrap();
    assert_eq!(signed(&keys, &new_signer, "198.51.100.1"), Ok(second.id));
    assert_ne!(
        replacement.token.expose_secret(),
        active.token.expose_secret()
    );

    let seen = events.0.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            (EventKind::Created, first.id),
            (EventKind::Activated, first.id),
            (EventKind::Created, second.id),
            (EventKind::Deactivated, first.id),
            (EventKind::Activated, second.id),
        ]
    );
}

/// A generator that hands out chosen bytes first, then the OS's: with a
/// pending key's id first, `KeyFormat::generate_with_rng` makes a
/// well-formed token (valid checksum) for that id.
struct Chosen(Vec<u8>);

impl rand::TryRng for Chosen {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for byte in dst.iter_mut() {
            *byte = if self.0.is_empty() {
                rand::TryRng::try_next_u32(&mut rand::rngs::SysRng).map_or(7, |v| v as u8)
            } else {
                self.0.remove(0)
            };
        }
        Ok(())
    }
}

impl rand::TryCryptoRng for Chosen {}

#[test]
fn nothing_verifies_for_a_pending_key() {
    let (keys, _, _) = coinspaid(MemoryKeyStore::new());
    for signing in [false, true] {
        let mut spec = NewKey::secret(merchant(), "probe");
        if signing {
            spec = spec.signing();
        }
        let pending = keys.create_pending(&admin(), spec).unwrap();
        // A well-formed bearer token for its id: unknown (no secret matches).
        let forged = keys
            .engine()
            .format()
            .generate_with_rng(
                api_keys::KeyKind::Secret,
                api_keys::Environment::Live,
                &mut Chosen(pending.id.as_bytes().to_vec()),
            )
            .unwrap();
        assert_eq!(forged.id, pending.id);
        let refused = keys
            .verify(forged.token.expose_secret(), &RequestContext::new())
            .unwrap_err();
        assert_eq!(refused.rejection(), Some(Rejection::UnknownKey));
        // Signed with that token as the secret: refused too.
        let signer = RequestSigner::for_token(forged.token.expose_secret()).unwrap();
        assert!(signed(&keys, &signer, "203.0.113.7").is_err());
        // Re-checked by id (a derived token's path): not active.
        let by_id = keys
            .check_key(&pending.id, &RequestContext::new())
            .unwrap_err();
        assert_eq!(by_id.rejection(), Some(Rejection::Inactive));
        assert_eq!(keys.get(&pending.id).unwrap().use_count, 0);
    }
}

#[test]
fn a_pending_key_takes_no_other_transition_and_keeps_its_settings() {
    let (keys, clock, _) = coinspaid(MemoryKeyStore::new());
    let key = keys
        .create_pending(
            &admin(),
            NewKey::secret(merchant(), "shop").expires_at(T0 + Duration::days(1)),
        )
        .unwrap();
    for refused in [
        keys.activate(&admin(), &key.id),
        keys.deactivate(&admin(), &key.id),
    ] {
        assert!(
            matches!(refused, Err(Error::InvalidState { id, .. }) if id == key.id),
            "{refused:?}"
        );
    }
    assert!(matches!(
        keys.roll(&admin(), &key.id, RollOptions::new()),
        Err(Error::InvalidState { .. })
    ));
    // Settings can be changed before the first activation.
    let renamed = keys
        .update(
            &admin(),
            &key.id,
            key.version,
            &KeyUpdate::new().name("shop (EU)"),
        )
        .unwrap();
    assert_eq!(renamed.status, KeyStatus::Pending);
    assert_eq!(renamed.name, "shop (EU)");
    // An expired pending key is never activated.
    clock.set(T0 + Duration::days(1));
    assert!(matches!(
        keys.activate_pending(&admin(), &key.id, None),
        Err(Error::InvalidState { .. })
    ));
    // Revoking discards it for good.
    keys.revoke(&admin(), &key.id).unwrap();
    assert!(matches!(
        keys.activate_pending(&admin(), &key.id, None),
        Err(Error::Revoked(_))
    ));
}

#[test]
fn bad_input_is_refused_before_anything_is_stored() {
    let keys = KeyManager::new(MemoryKeyStore::new());
    assert!(matches!(
        keys.create_pending(&admin(), NewKey::secret(merchant(), "  ")),
        Err(Error::Invalid { .. })
    ));
    // A signing key needs sealing keys, already at generation.
    assert!(matches!(
        keys.create_pending(&admin(), NewKey::secret(merchant(), "s").signing()),
        Err(Error::NoSealingKeys)
    ));
    assert!(keys.list(&merchant()).unwrap().is_empty());
    let unknown = KeyId::from_bytes([7; 16]);
    assert!(matches!(
        keys.activate_pending(&admin(), &unknown, None),
        Err(Error::NotFound(_))
    ));
}

/// A memory store whose next `update` fails, before or after committing.
#[derive(Default)]
struct Flaky {
    inner: MemoryKeyStore,
    fail_next: AtomicBool,
    commit_anyway: AtomicBool,
}

impl KeyStore for Flaky {
    fn insert(&self, r: &KeyRecord, c: WriteCondition) -> Result<(), StoreError> {
        KeyStore::insert(&self.inner, r, c)
    }
    fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        KeyStore::get(&self.inner, id)
    }
    fn list_by_owner(&self, o: &OwnerId) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        KeyStore::list_by_owner(&self.inner, o)
    }
    fn update(&self, r: &KeyRecord, v: u64, c: WriteCondition) -> Result<(), StoreError> {
        if self.fail_next.swap(false, SeqCst) {
            if self.commit_anyway.load(SeqCst) {
                // The write commits; its answer is lost with the connection.
                KeyStore::update(&self.inner, r, v, c)?;
            }
            return Err(StoreError::backend("connection reset"));
        }
        KeyStore::update(&self.inner, r, v, c)
    }
    fn apply_roll(&self, p: &RollPlan) -> Result<(), StoreError> {
        KeyStore::apply_roll(&self.inner, p)
    }
    fn touch(&self, id: &KeyId, usage: Usage) -> Result<(), StoreError> {
        KeyStore::touch(&self.inner, id, usage)
    }
}

#[test]
fn a_failed_first_activation_returns_no_token_and_the_key_stays_pending() {
    let (keys, _, _) = coinspaid(Flaky::default());
    let key = keys
        .create_pending(&admin(), NewKey::secret(merchant(), "shop"))
        .unwrap();
    keys.store().fail_next.store(true, SeqCst);
    assert!(matches!(
        keys.activate_pending(&admin(), &key.id, None),
        Err(Error::Store(_))
    ));
    assert_eq!(keys.get(&key.id).unwrap().status, KeyStatus::Pending);
    // A retry mints the secret then.
    let active = keys.activate_pending(&admin(), &key.id, None).unwrap();
    assert!(
        keys.verify(active.token.expose_secret(), &RequestContext::new())
            .is_ok()
    );
}

#[test]
fn a_retry_after_an_ambiguous_commit_never_reveals_a_second_secret() {
    let (keys, _, _) = coinspaid(Flaky::default());
    let key = keys
        .create_pending(&admin(), NewKey::secret(merchant(), "shop"))
        .unwrap();
    keys.store().commit_anyway.store(true, SeqCst);
    keys.store().fail_next.store(true, SeqCst);
    // The write committed, the answer was lost: no token reached the caller.
    assert!(matches!(
        keys.activate_pending(&admin(), &key.id, None),
        Err(Error::Store(_))
    ));
    let stored = keys.get(&key.id).unwrap();
    assert_eq!(stored.status, KeyStatus::Active);
    // The retry says so clearly, and mints nothing.
    let retry = keys.activate_pending(&admin(), &key.id, None).unwrap_err();
    assert!(matches!(retry, Error::SecretAlreadyRevealed(id) if id == key.id));
    assert_eq!(retry.http_status(), 409);
    assert_eq!(retry.public_code(), "secret_already_revealed");
    assert_eq!(keys.get(&key.id).unwrap().as_ref(), stored.as_ref());
    // The operator's way out, as CoinsPaid documents it: deactivate the
    // key and generate a new one.
    keys.deactivate(&admin(), &key.id).unwrap();
    let next = keys
        .create_pending(&admin(), NewKey::secret(merchant(), "shop v2"))
        .unwrap();
    assert!(keys.activate_pending(&admin(), &next.id, None).is_ok());
}

#[test]
fn the_secret_and_the_token_never_appear_in_errors_or_debug_output() {
    let (keys, _, _) = coinspaid(MemoryKeyStore::new());
    let key = keys
        .create_pending(&admin(), NewKey::secret(merchant(), "shop").signing())
        .unwrap();
    let active = keys.activate_pending(&admin(), &key.id, None).unwrap();
    let secret = active.token.expose_secret().to_owned();
    let body = &secret[secret.len() - 20..];
    let err = keys.activate_pending(&admin(), &key.id, None).unwrap_err();
    for shown in [
        format!("{active:?}"),
        format!("{:?}", keys.get(&key.id).unwrap()),
        err.to_string(),
        format!("{err:?}"),
    ] {
        assert!(!shown.contains(body), "{shown}");
    }
}
