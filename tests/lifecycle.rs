//! Key lifecycle through `KeyManager` on `MemoryKeyStore`, with a
//! controllable clock: create, list, activate, deactivate, revoke, roll,
//! update, expiry, events, the one-active-key rule, faults and races.
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
    Actor, DomainAllowList, Environment, Error, EventKind, HeaderField, IpAllowList, KeyEvent,
    KeyId, KeyManager, KeyRecord, KeyStatus, KeyStore, KeyUpdate, MemoryKeyStore, NewKey, OwnerId,
    Pepper, Policy, Rejection, RequestContext, RollOptions, RollPlan, Scopes, StoreError,
    WriteCondition,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use time::macros::utc_datetime;
use time::{Duration, UtcDateTime};

const T0: UtcDateTime = utc_datetime!(2026-03-01 09:00);

#[derive(Default)]
struct Recorder(Mutex<Vec<(EventKind, KeyId, Option<String>, Option<KeyId>)>>);
impl Recorder {
    fn push(&self, e: &KeyEvent<'_>) {
        self.0
            .lock()
            .unwrap()
            .push((e.kind, e.key_id, e.actor.map(|a| a.to_string()), e.related));
    }
    fn kinds(&self) -> Vec<EventKind> {
        self.0.lock().unwrap().iter().map(|e| e.0).collect()
    }
}

struct Fx<S = MemoryKeyStore> {
    keys: KeyManager<S>,
    clock: Arc<ManualClock>,
    events: Arc<Recorder>,
    admin: Actor,
    owner: OwnerId,
}

fn fx_with<S>(store: S, policy: Policy) -> Fx<S> {
    let clock = Arc::new(ManualClock::new(T0));
    let events = Arc::new(Recorder::default());
    let keys = KeyManager::builder(store)
        .clock(Arc::clone(&clock))
        .policy(policy)
        .events({
            let events = Arc::clone(&events);
            move |e: &KeyEvent<'_>| events.push(e)
        })
        .build()
        .unwrap();
    Fx {
        keys,
        clock,
        events,
        admin: Actor::new("user:1").unwrap(),
        owner: OwnerId::new("acct_1").unwrap(),
    }
}

fn fx() -> Fx {
    fx_with(MemoryKeyStore::new(), Policy::default())
}

fn ctx() -> RequestContext<'static> {
    RequestContext::new()
}

impl<S: KeyStore> Fx<S> {
    fn create(&self, spec: NewKey) -> (KeyRecord, api_keys::Token) {
        let c = self.keys.create(&self.admin, spec).unwrap();
        (c.record, c.token)
    }
    fn secret(&self) -> (KeyRecord, api_keys::Token) {
        self.create(NewKey::secret(self.owner.clone(), "k"))
    }
    fn check(&self, token: &api_keys::Token) -> Result<bool, Rejection> {
        match self.keys.verify(token.expose_secret(), &ctx()) {
            Ok(v) => Ok(v.in_grace()),
            Err(e) => Err(e.rejection().expect("a rejection, not a failure")),
        }
    }
    fn at(&self, t: UtcDateTime) -> &Self {
        self.clock.set(t);
        self
    }
}

#[test]
fn create_shows_token_once_and_stores_only_hash() {
    let f = fx();
    let (rec, token) = f.create(
        NewKey::secret(f.owner.clone(), "billing")
            .note("in the vault")
            .description("billing service"),
    );
    assert_eq!(rec.status, KeyStatus::Active);
    assert_eq!(rec.created_at, T0);
    assert_eq!(rec.expires_at, None, "no expiry by default");
    let debug = format!("{rec:?}");
    let secret_part = &token.expose_secret()[8 + 22..8 + 22 + 35];
    assert!(
        !debug.contains(secret_part),
        "record Debug leaks the secret"
    );
    assert!(!debug.contains(token.expose_secret()));
    assert!(rec.redacted.starts_with("sk_live_…"));
    assert_eq!(
        rec.redacted.chars().count(),
        "sk_live_…".chars().count() + 4
    );
    assert!(
        token
            .expose_secret()
            .ends_with(&rec.redacted[rec.redacted.len() - 4..])
    );
    assert_eq!(f.check(&token), Ok(false));
    assert_eq!(f.events.kinds(), vec![EventKind::Created]);
    assert_eq!(
        f.events.0.lock().unwrap()[0].2.as_deref(),
        Some("user:1"),
        "events carry the actor"
    );
}

#[test]
fn create_refuses_bad_input_and_stores_nothing() {
    let f = fx();
    let bad = [
        NewKey::secret(f.owner.clone(), "   "),
        NewKey::secret(f.owner.clone(), "x".repeat(201)),
        NewKey::secret(f.owner.clone(), "tab\there"),
        NewKey::secret(f.owner.clone(), "k").expires_at(T0),
        NewKey::secret(f.owner.clone(), "k").expires_at(T0 - Duration::seconds(1)),
        NewKey::secret(f.owner.clone(), "k").note(""),
        NewKey::publishable(f.owner.clone(), "k").scopes(Scopes::new(["charges:write"]).unwrap()),
        NewKey::secret(f.owner.clone(), "k").signing(),
    ];
    for spec in bad {
        let why = format!("{spec:?}");
        assert!(f.keys.create(&f.admin, spec).is_err(), "{why}");
    }
    assert!(f.keys.list(&f.owner).unwrap().is_empty());
    assert!(f.events.kinds().is_empty());
    assert!(Scopes::new(["no spaces"]).is_err());
    assert!(OwnerId::new("").is_err());
    assert!(Actor::new("a b").is_err());
}

#[test]
fn default_publishable_key_and_list() {
    let f = fx();
    let d = f
        .keys
        .create_default(&f.admin, &f.owner, Environment::Test)
        .unwrap();
    assert_eq!(d.record.name, api_keys::DEFAULT_KEY_NAME);
    assert_eq!(d.record.kind, api_keys::KeyKind::Publishable);
    assert!(d.token.expose_secret().starts_with("pk_test_"));
    f.clock.advance(Duration::seconds(1));
    let (s, _) = f.secret();
    let other = OwnerId::new("acct_2").unwrap();
    f.create(NewKey::secret(other.clone(), "theirs"));
    let listed: Vec<_> = f
        .keys
        .list(&f.owner)
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(listed, vec![d.record.id, s.id], "oldest first, owner only");
    assert_eq!(f.keys.get(&s.id).unwrap().name, "k");
    let missing = KeyId::from_bytes([0; 16]);
    assert!(matches!(f.keys.get(&missing), Err(Error::NotFound(id)) if id == missing));
}

#[test]
fn generate_then_activate_then_deactivate() {
    let f = fx();
    let (rec, token) = f.create(NewKey::secret(f.owner.clone(), "k").inactive());
    assert_eq!(rec.status, KeyStatus::Inactive);
    assert_eq!(f.check(&token), Err(Rejection::Inactive));
    let on = f.keys.activate(&f.admin, &rec.id).unwrap();
    assert_eq!(on.status, KeyStatus::Active);
    assert_eq!(on.version, 2);
    assert_eq!(f.check(&token), Ok(false));
    // Idempotent: no new version, no event.
    assert_eq!(f.keys.activate(&f.admin, &rec.id).unwrap().version, 2);
    f.keys.deactivate(&f.admin, &rec.id).unwrap();
    assert_eq!(f.check(&token), Err(Rejection::Inactive));
    f.keys.activate(&f.admin, &rec.id).unwrap();
    assert_eq!(f.check(&token), Ok(false));
    assert_eq!(
        f.events.kinds(),
        vec![
            EventKind::Created,
            EventKind::Activated,
            EventKind::Deactivated,
            EventKind::Activated
        ]
    );
}

#[test]
fn revoke_is_immediate_permanent_and_absorbing() {
    let f = fx();
    let (rec, token) = f.secret();
    assert_eq!(f.check(&token), Ok(false));
    let revoked = f.keys.revoke(&f.admin, &rec.id).unwrap();
    assert_eq!(revoked.status, KeyStatus::Revoked);
    assert_eq!(revoked.revoked_at, Some(T0));
    assert_eq!(f.check(&token), Err(Rejection::Revoked));
    assert!(matches!(
        f.keys.activate(&f.admin, &rec.id),
        Err(Error::Revoked(_))
    ));
    assert!(matches!(
        f.keys.deactivate(&f.admin, &rec.id),
        Err(Error::Revoked(_))
    ));
    assert!(matches!(
        f.keys.roll(&f.admin, &rec.id, RollOptions::default()),
        Err(Error::Revoked(_))
    ));
    assert!(matches!(
        f.keys
            .update(&f.admin, &rec.id, 2, &KeyUpdate::new().name("x")),
        Err(Error::Revoked(_))
    ));
    // Revoke again: idempotent.
    assert_eq!(f.keys.revoke(&f.admin, &rec.id).unwrap().version, 2);
    assert_eq!(f.check(&token), Err(Rejection::Revoked));
}

#[test]
fn validity_is_half_open_at_exact_boundaries() {
    let f = fx();
    let end = T0 + Duration::days(30);
    let (_, token) = f.create(NewKey::secret(f.owner.clone(), "k").expires_at(end));
    assert_eq!(
        f.at(T0).check(&token),
        Ok(false),
        "valid at exactly created_at"
    );
    assert_eq!(
        f.at(T0 - Duration::nanoseconds(1)).check(&token),
        Err(Rejection::NotYetValid),
        "not valid before created_at"
    );
    assert_eq!(
        f.at(end - Duration::nanoseconds(1)).check(&token),
        Ok(false)
    );
    assert_eq!(
        f.at(end).check(&token),
        Err(Rejection::Expired),
        "refused at exactly expires_at"
    );
    assert!(f.events.kinds().contains(&EventKind::ExpiredOnUse));
}

#[test]
fn grace_is_twelve_hours_half_open() {
    let f = fx();
    let (rec, old) = f.secret();
    f.clock.advance(Duration::hours(1));
    let rolled_at = f.keys.now();
    let rolled = f
        .keys
        .roll(&f.admin, &rec.id, RollOptions::default())
        .unwrap();
    assert_eq!(
        rolled.predecessor.grace_ends_at,
        Some(rolled_at + Duration::hours(12))
    );
    assert_eq!(rolled.successor.name, rec.name);
    assert_eq!(rolled.successor.predecessor, Some(rec.id));
    assert_eq!(f.check(&old), Ok(true), "old key works during grace");
    assert_eq!(f.check(&rolled.token), Ok(false));
    let end = rolled_at + Duration::hours(12);
    assert_eq!(
        f.at(end - Duration::seconds(1)).check(&old),
        Ok(true),
        "one second before the end"
    );
    assert_eq!(
        f.at(end).check(&old),
        Err(Rejection::GraceEnded),
        "refused at exactly the end"
    );
    assert_eq!(f.check(&rolled.token), Ok(false), "successor keeps working");
    let kinds = f.events.kinds();
    assert!(kinds.contains(&EventKind::Rolled));
    assert!(kinds.contains(&EventKind::UsedDuringGrace));
}

#[test]
fn roll_never_extends_a_key_life() {
    let f = fx();
    let end = T0 + Duration::hours(2);
    let (rec, old) = f.create(NewKey::secret(f.owner.clone(), "k").expires_at(end));
    let rolled = f
        .keys
        .roll(&f.admin, &rec.id, RollOptions::default())
        .unwrap();
    assert_eq!(
        rolled.predecessor.effective_end(),
        Some(end),
        "2 h left stay 2 h"
    );
    assert_eq!(
        rolled.successor.expires_at,
        Some(end),
        "successor inherits the expiry"
    );
    assert_eq!(f.at(end - Duration::seconds(1)).check(&old), Ok(true));
    assert_eq!(f.at(end).check(&old), Err(Rejection::Expired));
}

#[test]
fn grace_per_call_zero_and_capped() {
    let f = fx();
    let (rec, old) = f.secret();
    let r = f
        .keys
        .roll(&f.admin, &rec.id, RollOptions::with_grace(Duration::ZERO))
        .unwrap();
    assert_eq!(f.check(&old), Err(Rejection::GraceEnded), "grace 0 = now");
    let r2 = f
        .keys
        .roll(
            &f.admin,
            &r.successor.id,
            RollOptions::with_grace(Duration::days(365)),
        )
        .unwrap();
    assert_eq!(
        r2.predecessor.grace_ends_at,
        Some(T0 + Duration::days(7)),
        "capped by max_grace"
    );
    assert!(matches!(
        f.keys.roll(
            &f.admin,
            &r2.successor.id,
            RollOptions::with_grace(Duration::seconds(-1))
        ),
        Err(Error::Invalid { .. })
    ));
}

#[test]
fn double_roll_and_rolling_rules() {
    let f = fx();
    let (rec, first) = f.secret();
    let r1 = f
        .keys
        .roll(&f.admin, &rec.id, RollOptions::default())
        .unwrap();
    assert!(
        matches!(
            f.keys.roll(&f.admin, &rec.id, RollOptions::default()),
            Err(Error::InvalidState { .. })
        ),
        "a key is rolled once"
    );
    f.clock.advance(Duration::hours(1));
    let r2 = f
        .keys
        .roll(&f.admin, &r1.successor.id, RollOptions::default())
        .unwrap();
    assert_eq!(f.check(&first), Ok(true));
    assert_eq!(f.check(&r1.token), Ok(true));
    assert_eq!(f.check(&r2.token), Ok(false));
    f.clock.advance(Duration::hours(11));
    assert_eq!(f.check(&first), Err(Rejection::GraceEnded));
    assert_eq!(f.check(&r1.token), Ok(true));
    // Inactive and expired keys cannot be rolled.
    let (inactive, _) = f.create(NewKey::secret(f.owner.clone(), "i").inactive());
    assert!(matches!(
        f.keys.roll(&f.admin, &inactive.id, RollOptions::default()),
        Err(Error::InvalidState { .. })
    ));
    let now = f.keys.now();
    let (expiring, _) =
        f.create(NewKey::secret(f.owner.clone(), "e").expires_at(now + Duration::minutes(1)));
    f.clock.advance(Duration::minutes(1));
    assert!(matches!(
        f.keys.roll(&f.admin, &expiring.id, RollOptions::default()),
        Err(Error::InvalidState { .. })
    ));
}

#[test]
fn revoke_during_grace_each_side() {
    let f = fx();
    let (rec, old) = f.secret();
    let r = f
        .keys
        .roll(&f.admin, &rec.id, RollOptions::default())
        .unwrap();
    f.keys.revoke(&f.admin, &rec.id).unwrap();
    assert_eq!(
        f.check(&old),
        Err(Rejection::Revoked),
        "revoke dominates grace"
    );
    assert_eq!(
        f.check(&r.token),
        Ok(false),
        "the successor is not affected"
    );

    let (rec, old) = f.secret();
    let r = f
        .keys
        .roll(&f.admin, &rec.id, RollOptions::default())
        .unwrap();
    f.keys.revoke(&f.admin, &r.successor.id).unwrap();
    assert_eq!(f.check(&r.token), Err(Rejection::Revoked));
    assert_eq!(
        f.check(&old),
        Ok(true),
        "revoking the successor leaves the grace alone"
    );
}

#[test]
fn clock_stepping_backwards() {
    let f = fx();
    let (rec, old) = f.secret();
    f.clock.advance(Duration::hours(5));
    let r = f
        .keys
        .roll(&f.admin, &rec.id, RollOptions::default())
        .unwrap();
    let end = r.predecessor.grace_ends_at.unwrap();
    // The clock steps back an hour: the grace end stays an absolute instant
    // and is not extended; the successor is not valid before its creation.
    f.clock.advance(Duration::hours(-1));
    assert_eq!(f.check(&old), Ok(true));
    assert_eq!(f.check(&r.token), Err(Rejection::NotYetValid));
    f.clock.set(end);
    assert_eq!(f.check(&old), Err(Rejection::GraceEnded));
    assert_eq!(f.check(&r.token), Ok(false));
    // last_used_at only moves forward.
    f.clock.set(end + Duration::hours(2));
    f.check(&r.token).unwrap();
    f.clock.set(end + Duration::hours(1));
    f.check(&r.token).unwrap();
    assert_eq!(
        f.keys.get(&r.successor.id).unwrap().last_used_at,
        Some(end + Duration::hours(2))
    );
}

#[test]
fn update_is_compare_and_swap() {
    let f = fx();
    let (rec, token) = f.secret();
    let u = f
        .keys
        .update(
            &f.admin,
            &rec.id,
            1,
            &KeyUpdate::new()
                .name("renamed")
                .note("moved to vault")
                .scopes(Scopes::new(["read"]).unwrap())
                .expires_at(T0 + Duration::days(1)),
        )
        .unwrap();
    assert_eq!((u.name.as_str(), u.version), ("renamed", 2));
    assert!(
        matches!(
            f.keys
                .update(&f.admin, &rec.id, 1, &KeyUpdate::new().name("lost")),
            Err(Error::Conflict(_))
        ),
        "a stale version is a conflict, not a lost update"
    );
    assert_eq!(f.keys.get(&rec.id).unwrap().name, "renamed");
    assert!(matches!(
        f.keys
            .update(&f.admin, &rec.id, 2, &KeyUpdate::new().expires_at(T0)),
        Err(Error::Invalid { .. })
    ));
    assert!(matches!(
        f.keys
            .update(&f.admin, &rec.id, 2, &KeyUpdate::new().name("")),
        Err(Error::Invalid { .. })
    ));
    assert_eq!(
        f.keys.get(&rec.id).unwrap().version,
        2,
        "refused updates change nothing"
    );
    let scoped = Scopes::new(["read"]).unwrap();
    let v = f
        .keys
        .verify(token.expose_secret(), &ctx().require_scopes(&scoped))
        .unwrap();
    assert!(v.scopes().contains("read"));
    let w = Scopes::new(["write"]).unwrap();
    assert_eq!(
        f.keys
            .verify(token.expose_secret(), &ctx().require_scopes(&w))
            .unwrap_err()
            .rejection(),
        Some(Rejection::MissingScope)
    );
}

#[test]
fn one_active_key_per_owner() {
    let f = fx_with(
        MemoryKeyStore::new(),
        Policy {
            one_active_key_per_owner: true,
            ..Policy::default()
        },
    );
    let (a, _) = f.secret();
    assert!(matches!(
        f.keys
            .create(&f.admin, NewKey::secret(f.owner.clone(), "b")),
        Err(Error::AnotherKeyActive)
    ));
    let (b, _) = f.create(NewKey::secret(f.owner.clone(), "b").inactive());
    assert!(matches!(
        f.keys.activate(&f.admin, &b.id),
        Err(Error::AnotherKeyActive)
    ));
    f.keys.deactivate(&f.admin, &a.id).unwrap();
    f.keys.activate(&f.admin, &b.id).unwrap();
    // Another owner is independent.
    f.create(NewKey::secret(OwnerId::new("acct_2").unwrap(), "x"));
    // Rolling is allowed; the predecessor in grace counts as active.
    let r = f
        .keys
        .roll(&f.admin, &b.id, RollOptions::default())
        .unwrap();
    f.keys.deactivate(&f.admin, &r.successor.id).unwrap();
    let (c, _) = f.create(NewKey::secret(f.owner.clone(), "c").inactive());
    assert!(
        matches!(
            f.keys.activate(&f.admin, &c.id),
            Err(Error::AnotherKeyActive)
        ),
        "the predecessor in its grace window still counts"
    );
    f.clock.advance(Duration::hours(12));
    f.keys.activate(&f.admin, &c.id).unwrap();
}

/// A store wrapper that fails the n-th call (counting from 1), optionally
/// after applying it (an ambiguous commit).
struct FaultyStore {
    inner: MemoryKeyStore,
    calls: AtomicUsize,
    fail_at: usize,
    after_apply: bool,
}

impl FaultyStore {
    fn new(inner: MemoryKeyStore, fail_at: usize, after_apply: bool) -> Self {
        Self {
            inner,
            calls: AtomicUsize::new(0),
            fail_at,
            after_apply,
        }
    }
    fn step<T>(&self, op: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if n != self.fail_at {
            return op();
        }
        if self.after_apply {
            let _ = op();
        }
        Err(StoreError::backend(std::io::Error::other("injected fault")))
    }
}

impl KeyStore for FaultyStore {
    fn insert(&self, r: &KeyRecord, c: WriteCondition) -> Result<(), StoreError> {
        self.step(|| self.inner.insert(r, c))
    }
    fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        self.step(|| KeyStore::get(&self.inner, id))
    }
    fn list_by_owner(&self, o: &OwnerId) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        self.step(|| KeyStore::list_by_owner(&self.inner, o))
    }
    fn update(&self, r: &KeyRecord, v: u64, c: WriteCondition) -> Result<(), StoreError> {
        self.step(|| KeyStore::update(&self.inner, r, v, c))
    }
    fn apply_roll(&self, p: &RollPlan) -> Result<(), StoreError> {
        self.step(|| KeyStore::apply_roll(&self.inner, p))
    }
    fn touch(&self, id: &KeyId, usage: api_keys::Usage) -> Result<(), StoreError> {
        self.step(|| KeyStore::touch(&self.inner, id, usage))
    }
}

#[test]
fn roll_with_each_store_call_failing() {
    // Creating the key is store call 1; a roll then makes two calls (get,
    // apply_roll). Fail each in turn.
    for fail_at in 2..=3 {
        let g = fx_with(
            FaultyStore::new(MemoryKeyStore::new(), fail_at, false),
            Policy::default(),
        );
        let (rec, old) = g.secret();
        let out = g.keys.roll(&g.admin, &rec.id, RollOptions::default());
        assert!(
            matches!(out, Err(Error::Store(_))),
            "fail_at={fail_at}: {out:?}"
        );
        // No secret was handed out and nothing half-rolled is visible.
        let after = g.keys.get(&rec.id).unwrap();
        assert_eq!(after.version, 1);
        assert_eq!(after.successor, None);
        assert_eq!(g.keys.list(&g.owner).unwrap().len(), 1);
        assert_eq!(g.check(&old), Ok(false));
        assert!(!g.events.kinds().contains(&EventKind::Rolled));
    }
}

#[test]
fn ambiguous_commit_never_hands_out_the_token() {
    // apply_roll succeeds in the backend but the call reports a failure
    // (e.g. a lost connection after COMMIT): the caller gets an error and no
    // token, so the successor is a dead key nobody holds; the old key keeps
    // its grace window and can be revoked.
    let g = fx_with(
        FaultyStore::new(MemoryKeyStore::new(), 3, true),
        Policy::default(),
    );
    let (rec, old) = g.secret();
    assert!(matches!(
        g.keys.roll(&g.admin, &rec.id, RollOptions::default()),
        Err(Error::Store(_))
    ));
    assert_eq!(g.check(&old), Ok(true));
    let after = g.keys.get(&rec.id).unwrap();
    assert!(after.successor.is_some(), "the roll did commit");
}

#[test]
fn verify_fails_closed_on_store_errors() {
    let g = fx_with(
        FaultyStore::new(MemoryKeyStore::new(), 2, false),
        Policy::default(),
    );
    let (_, token) = g.secret();
    let err = g.keys.verify(token.expose_secret(), &ctx()).unwrap_err();
    assert!(matches!(err, api_keys::VerifyError::Store(_)), "{err:?}");
    assert_eq!(
        err.rejection(),
        None,
        "a store failure is never 'unknown key'"
    );
    assert_eq!(err.http_status(), 500);
    // A failing touch never changes the outcome.
    let g = fx_with(
        FaultyStore::new(MemoryKeyStore::new(), 3, false),
        Policy::default(),
    );
    let (_, token) = g.secret();
    assert!(g.keys.verify(token.expose_secret(), &ctx()).is_ok());
}

#[test]
fn concurrent_rolls_exactly_one_wins() {
    for _ in 0..20 {
        let f = fx();
        let (rec, _) = f.secret();
        let barrier = std::sync::Barrier::new(4);
        let wins: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        f.keys
                            .roll(&f.admin, &rec.id, RollOptions::default())
                            .is_ok()
                    })
                })
                .collect();
            hs.into_iter().map(|h| usize::from(h.join().unwrap())).sum()
        });
        assert_eq!(wins, 1);
        assert_eq!(f.keys.list(&f.owner).unwrap().len(), 2);
    }
}

#[test]
fn concurrent_revoke_and_roll_never_resurrect() {
    for _ in 0..50 {
        let f = fx();
        let (rec, old) = f.secret();
        let barrier = std::sync::Barrier::new(2);
        let (rolled, revoked) = std::thread::scope(|s| {
            let a = s.spawn(|| {
                barrier.wait();
                f.keys.roll(&f.admin, &rec.id, RollOptions::default())
            });
            let b = s.spawn(|| {
                barrier.wait();
                f.keys.revoke(&f.admin, &rec.id)
            });
            (a.join().unwrap(), b.join().unwrap())
        });
        assert!(
            revoked.is_ok(),
            "revoke always succeeds (it retries its CAS)"
        );
        assert_eq!(f.check(&old), Err(Rejection::Revoked));
        match rolled {
            // The roll committed first: its successor lives, the revoke hit
            // only the predecessor.
            Ok(r) => assert_eq!(f.check(&r.token), Ok(false)),
            // The revoke came first: no successor exists.
            Err(e) => {
                assert!(matches!(e, Error::Revoked(_) | Error::Conflict(_)), "{e:?}");
                assert_eq!(f.keys.list(&f.owner).unwrap().len(), 1);
            }
        }
    }
}

#[test]
fn async_api_matches_sync() {
    let f = fx();
    let c = block_on(
        f.keys
            .create_async(&f.admin, NewKey::secret(f.owner.clone(), "async")),
    )
    .unwrap();
    let v = block_on(f.keys.verify_async(c.token.expose_secret(), &ctx())).unwrap();
    assert_eq!(v.id(), c.record.id);
    let r = block_on(
        f.keys
            .roll_async(&f.admin, &c.record.id, RollOptions::default()),
    )
    .unwrap();
    assert_eq!(f.check(&c.token), Ok(true));
    block_on(f.keys.revoke_async(&f.admin, &r.successor.id)).unwrap();
    assert_eq!(f.check(&r.token), Err(Rejection::Revoked));
    assert_eq!(block_on(f.keys.list_async(&f.owner)).unwrap().len(), 2);
}

/// MemoryKeyStore's futures are ready at once: one poll completes them.
fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("memory store futures complete at once"),
    }
}

mod model {
    //! Model-based test: random operation sequences against a reference
    //! state machine of what each key should do at each instant.
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Create {
            inactive: bool,
            ttl_h: Option<i64>,
        },
        /// A pending key (no secret until `ActivatePending`).
        CreatePending {
            ttl_h: Option<i64>,
        },
        ActivatePending(usize),
        Activate(usize),
        Deactivate(usize),
        Revoke(usize),
        Roll(usize, i64),
        /// Move the expiry to now + hours (`None`: clear it).
        SetExpiry(usize, Option<i64>),
        Advance(i64),
        Verify(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (any::<bool>(), proptest::option::of(1i64..48))
                .prop_map(|(inactive, ttl_h)| Op::Create { inactive, ttl_h }),
            proptest::option::of(1i64..48).prop_map(|ttl_h| Op::CreatePending { ttl_h }),
            (0usize..8).prop_map(Op::ActivatePending),
            (0usize..8).prop_map(Op::Activate),
            (0usize..8).prop_map(Op::Deactivate),
            (0usize..8).prop_map(Op::Revoke),
            (0usize..8, 0i64..20).prop_map(|(i, g)| Op::Roll(i, g)),
            (0usize..8, proptest::option::of(-1i64..48)).prop_map(|(i, h)| Op::SetExpiry(i, h)),
            (-2i64..30).prop_map(Op::Advance),
            (0usize..8).prop_map(Op::Verify),
            (0usize..8).prop_map(Op::Verify),
        ]
    }

    #[derive(Debug, Clone)]
    struct M {
        status: KeyStatus,
        created: UtcDateTime,
        expires: Option<UtcDateTime>,
        grace_end: Option<UtcDateTime>,
        rolled: bool,
    }

    impl M {
        fn expect(&self, now: UtcDateTime) -> Result<bool, Rejection> {
            match self.status {
                KeyStatus::Revoked => return Err(Rejection::Revoked),
                KeyStatus::Inactive | KeyStatus::Pending => return Err(Rejection::Inactive),
                KeyStatus::Active => {}
            }
            if now < self.created {
                return Err(Rejection::NotYetValid);
            }
            if self.expires.is_some_and(|e| now >= e) {
                return Err(Rejection::Expired);
            }
            if self.grace_end.is_some_and(|e| now >= e) {
                return Err(Rejection::GraceEnded);
            }
            Ok(self.rolled)
        }
        fn end(&self) -> Option<UtcDateTime> {
            match (self.expires, self.grace_end) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
        #[test]
        fn manager_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
            let f = fx();
            // A pending key has no token until its first activation.
            let mut keys: Vec<(KeyId, Option<api_keys::Token>, M)> = Vec::new();
            for op in ops {
                let now = f.keys.now();
                match op {
                    Op::Create { inactive, ttl_h } => {
                        let mut spec = NewKey::secret(f.owner.clone(), "m");
                        if inactive { spec = spec.inactive(); }
                        if let Some(h) = ttl_h { spec = spec.expires_at(now + Duration::hours(h)); }
                        let c = f.keys.create(&f.admin, spec).unwrap();
                        keys.push((c.record.id, Some(c.token), M {
                            status: if inactive { KeyStatus::Inactive } else { KeyStatus::Active },
                            created: now,
                            expires: ttl_h.map(|h| now + Duration::hours(h)),
                            grace_end: None,
                            rolled: false,
                        }));
                    }
                    Op::CreatePending { ttl_h } => {
                        let mut spec = NewKey::secret(f.owner.clone(), "p");
                        if let Some(h) = ttl_h { spec = spec.expires_at(now + Duration::hours(h)); }
                        let r = f.keys.create_pending(&f.admin, spec).unwrap();
                        prop_assert_eq!(r.status, KeyStatus::Pending);
                        keys.push((r.id, None, M {
                            status: KeyStatus::Pending,
                            created: now,
                            expires: ttl_h.map(|h| now + Duration::hours(h)),
                            grace_end: None,
                            rolled: false,
                        }));
                    }
                    Op::ActivatePending(i) => {
                        let Some((id, token, m)) = keys.get_mut(i) else { continue };
                        let res = f.keys.activate_pending(&f.admin, id, None);
                        match m.status {
                            KeyStatus::Pending if m.end().is_none_or(|e| now < e) => {
                                let created = res.unwrap();
                                prop_assert!(token.is_none(), "a second secret");
                                *token = Some(created.token);
                                m.status = KeyStatus::Active;
                            }
                            KeyStatus::Pending => {
                                prop_assert!(matches!(res, Err(Error::InvalidState { .. })), "{:?}", res);
                            }
                            KeyStatus::Revoked => {
                                prop_assert!(matches!(res, Err(Error::Revoked(_))), "{:?}", res);
                            }
                            KeyStatus::Active | KeyStatus::Inactive => {
                                prop_assert!(
                                    matches!(res, Err(Error::SecretAlreadyRevealed(_))),
                                    "{:?}", res
                                );
                            }
                        }
                    }
                    Op::Activate(i) | Op::Deactivate(i) | Op::Revoke(i) => {
                        let Some((id, _, m)) = keys.get_mut(i) else { continue };
                        let (res, target) = match op {
                            Op::Activate(_) => (f.keys.activate(&f.admin, id), KeyStatus::Active),
                            Op::Deactivate(_) => (f.keys.deactivate(&f.admin, id), KeyStatus::Inactive),
                            _ => (f.keys.revoke(&f.admin, id), KeyStatus::Revoked),
                        };
                        // A pending key takes only a revoke (or its first
                        // activation, above).
                        let allowed = target == KeyStatus::Revoked
                            || (m.status != KeyStatus::Pending
                                && (m.status == target
                                    || (m.status != KeyStatus::Revoked
                                        && (target != KeyStatus::Active
                                            || (!m.rolled && m.end().is_none_or(|e| now < e))))));
                        prop_assert_eq!(res.is_ok(), allowed, "{:?} on {:?}: {:?}", op, m, res);
                        if allowed { m.status = target; }
                    }
                    Op::Roll(i, g) => {
                        let Some((id, m)) = keys.get(i).map(|(a, _, c)| (*a, c.clone())) else { continue };
                        let res = f.keys.roll(&f.admin, &id, RollOptions::with_grace(Duration::hours(g)));
                        let allowed = m.status == KeyStatus::Active && !m.rolled && m.end().is_none_or(|e| now < e);
                        prop_assert_eq!(res.is_ok(), allowed, "roll {:?}: {:?}", m, res);
                        if let Ok(r) = res {
                            let pm = &mut keys[i].2;
                            pm.rolled = true;
                            // Never past the key's own expiry.
                            let grace = now + Duration::hours(g);
                            pm.grace_end = Some(pm.expires.map_or(grace, |e| e.min(grace)));
                            let expires = pm.expires;
                            keys.push((r.successor.id, Some(r.token), M {
                                status: KeyStatus::Active, created: now, expires,
                                grace_end: None, rolled: false,
                            }));
                        }
                    }
                    Op::SetExpiry(i, h) => {
                        let Some((id, _, m)) = keys.get_mut(i) else { continue };
                        let to = h.map(|h| now + Duration::hours(h));
                        let version = f.keys.get(id).unwrap().version;
                        let update = match to {
                            Some(t) => KeyUpdate::new().expires_at(t),
                            None => KeyUpdate::new().clear_expiry(),
                        };
                        let res = f.keys.update(&f.admin, id, version, &update);
                        // An ended key's expiry is frozen (no revival); a
                        // new expiry must be in the future.
                        let allowed = m.status != KeyStatus::Revoked
                            && (to == m.expires
                                || (m.end().is_none_or(|e| now < e)
                                    && to.is_none_or(|t| t > now)));
                        prop_assert_eq!(res.is_ok(), allowed, "{:?} on {:?}: {:?}", op, m, res);
                        if allowed {
                            m.expires = to;
                            m.grace_end = m.grace_end.map(|g| to.map_or(g, |t| t.min(g)));
                        }
                    }
                    Op::Advance(h) => f.clock.advance(Duration::hours(h)),
                    Op::Verify(i) => {
                        let Some((_, Some(token), m)) = keys.get(i) else { continue };
                        prop_assert_eq!(f.check(token), m.expect(now));
                    }
                }
            }
            // Finally every key agrees with the model.
            let now = f.keys.now();
            for (id, token, m) in &keys {
                prop_assert_eq!(f.keys.get(id).unwrap().status, m.status);
                if let Some(token) = token {
                    prop_assert_eq!(f.check(token), m.expect(now));
                }
            }
        }
    }
}

/// A store that runs a hook (once) when the next record is looked up: what
/// another server does while a management call waits for the store.
#[derive(Default)]
struct HookedStore {
    inner: Arc<MemoryKeyStore>,
    on_get: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl KeyStore for HookedStore {
    fn insert(&self, r: &KeyRecord, c: WriteCondition) -> Result<(), StoreError> {
        self.inner.insert(r, c)
    }
    fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let out = KeyStore::get(&*self.inner, id);
        let hook = self.on_get.lock().unwrap().take();
        if let Some(hook) = hook {
            hook();
        }
        out
    }
    fn list_by_owner(&self, o: &OwnerId) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        KeyStore::list_by_owner(&*self.inner, o)
    }
    fn update(&self, r: &KeyRecord, v: u64, c: WriteCondition) -> Result<(), StoreError> {
        KeyStore::update(&*self.inner, r, v, c)
    }
    fn apply_roll(&self, p: &RollPlan) -> Result<(), StoreError> {
        KeyStore::apply_roll(&*self.inner, p)
    }
    fn touch(&self, id: &KeyId, usage: api_keys::Usage) -> Result<(), StoreError> {
        KeyStore::touch(&*self.inner, id, usage)
    }
}

fn one_active() -> Policy {
    Policy {
        one_active_key_per_owner: true,
        ..Policy::default()
    }
}

/// Defect 3 (review of 0.1): an update must not revive a key that has
/// ended. Before the fix an expired key A could have its expiry cleared
/// while the owner's replacement B was active, leaving two usable keys under
/// the one-active-key rule.
#[test]
fn update_cannot_revive_an_expired_key() {
    let f = fx_with(MemoryKeyStore::new(), one_active());
    let (a, a_token) =
        f.create(NewKey::secret(f.owner.clone(), "a").expires_at(T0 + Duration::hours(1)));
    f.at(T0 + Duration::hours(2));
    let (_, b_token) = f.create(NewKey::secret(f.owner.clone(), "b"));
    for update in [
        KeyUpdate::new().clear_expiry(),
        KeyUpdate::new().expires_at(T0 + Duration::days(30)),
    ] {
        let out = f.keys.update(&f.admin, &a.id, 1, &update);
        assert!(
            matches!(out, Err(Error::InvalidState { .. })),
            "an ended key's expiry cannot be moved: {out:?}"
        );
    }
    assert_eq!(f.keys.get(&a.id).unwrap().version, 1, "nothing changed");
    assert_eq!(f.check(&a_token), Err(Rejection::Expired));
    assert_eq!(f.check(&b_token), Ok(false));
    // Settings other than the expiry may still change (e.g. a note for the
    // audit trail).
    f.keys
        .update(&f.admin, &a.id, 1, &KeyUpdate::new().name("a (expired)"))
        .unwrap();
    assert_eq!(f.check(&a_token), Err(Rejection::Expired));
}

/// Defect 3: "an expired key cannot be activated" must not be bypassed by
/// moving its expiry first.
#[test]
fn update_then_activate_cannot_bypass_expiry() {
    let f = fx();
    let (a, a_token) = f.create(
        NewKey::secret(f.owner.clone(), "a")
            .inactive()
            .expires_at(T0 + Duration::hours(1)),
    );
    f.at(T0 + Duration::hours(2));
    let moved = f.keys.update(
        &f.admin,
        &a.id,
        1,
        &KeyUpdate::new().expires_at(T0 + Duration::days(1)),
    );
    assert!(
        matches!(moved, Err(Error::InvalidState { .. })),
        "{moved:?}"
    );
    assert!(matches!(
        f.keys.activate(&f.admin, &a.id),
        Err(Error::InvalidState { .. })
    ));
    assert_eq!(f.check(&a_token), Err(Rejection::Inactive));
}

/// Defect 3, store path: an update planned a moment before the key ends and
/// written after another server created the owner's replacement must not
/// leave two usable keys. Moving an active key's expiry takes the
/// one-active-key condition.
#[test]
fn an_expiry_move_racing_a_replacement_keeps_one_active_key() {
    // Clearing the expiry, and moving it later.
    for update in [
        KeyUpdate::new().clear_expiry(),
        KeyUpdate::new().expires_at(T0 + Duration::days(1)),
    ] {
        expiry_move_racing_a_replacement(&update);
    }
}

fn expiry_move_racing_a_replacement(update: &KeyUpdate) {
    let store = HookedStore::default();
    let shared = Arc::clone(&store.inner);
    let f = fx_with(store, one_active());
    let other = KeyManager::builder(Arc::clone(&shared))
        .clock(Arc::clone(&f.clock))
        .policy(one_active())
        .build()
        .unwrap();
    let (a, a_token) =
        f.create(NewKey::secret(f.owner.clone(), "a").expires_at(T0 + Duration::seconds(10)));
    f.at(T0 + Duration::seconds(9));
    // While the update waits for the store, A ends and another server
    // creates B.
    let (clock, owner) = (Arc::clone(&f.clock), f.owner.clone());
    let b_token: Arc<Mutex<Option<api_keys::Token>>> = Arc::default();
    let b_slot = Arc::clone(&b_token);
    *f.keys.store().on_get.lock().unwrap() = Some(Box::new(move || {
        clock.set(T0 + Duration::seconds(11));
        let b = other
            .create(&Actor::system(), NewKey::secret(owner, "b"))
            .unwrap();
        *b_slot.lock().unwrap() = Some(b.token);
    }));
    let out = f.keys.update(&f.admin, &a.id, 1, update);
    let b_token = b_token.lock().unwrap().take().unwrap();
    let usable = [&a_token, &b_token]
        .iter()
        .filter(|t| f.check(t).is_ok())
        .count();
    assert_eq!(usable, 1, "two usable keys after {out:?}");
    assert!(matches!(out, Err(Error::AnotherKeyActive)), "{out:?}");
}

/// Every `KeyUpdate` setter has a visible effect, and the text setters take
/// what `NewKey`'s take.
#[test]
fn update_setters_set_and_clear() {
    let f = fx();
    let (rec, _) = f.create(
        NewKey::secret(f.owner.clone(), "k")
            .note("first note")
            .description("first description")
            .expires_at(T0 + Duration::days(1)),
    );
    let set = f
        .keys
        .update(
            &f.admin,
            &rec.id,
            1,
            &KeyUpdate::new()
                .note("second note")
                .description(String::from("second description"))
                .expires_at(T0 + Duration::days(2)),
        )
        .unwrap();
    assert_eq!(set.note.as_deref(), Some("second note"));
    assert_eq!(set.description.as_deref(), Some("second description"));
    assert_eq!(set.expires_at, Some(T0 + Duration::days(2)));
    let cleared = f
        .keys
        .update(
            &f.admin,
            &rec.id,
            2,
            &KeyUpdate::new()
                .clear_note()
                .clear_description()
                .clear_expiry(),
        )
        .unwrap();
    assert_eq!(
        (cleared.note, cleared.description, cleared.expires_at),
        (None, None, None)
    );
    // An empty update changes only the version.
    let same = f
        .keys
        .update(&f.admin, &rec.id, 3, &KeyUpdate::new())
        .unwrap();
    assert_eq!((same.name.as_str(), same.version), ("k", 4));
}

/// `grace_ends_at` tells the truth: a roll never records a grace end after
/// the key's own expiry, and shortening a rolled key's expiry shortens it.
#[test]
fn grace_end_never_outlives_the_expiry() {
    let f = fx();
    let (rec, old) =
        f.create(NewKey::secret(f.owner.clone(), "k").expires_at(T0 + Duration::hours(1)));
    let rolled = f
        .keys
        .roll(&f.admin, &rec.id, RollOptions::default())
        .unwrap();
    assert_eq!(
        rolled.predecessor.grace_ends_at,
        Some(T0 + Duration::hours(1))
    );
    assert_eq!(
        rolled.predecessor.grace_ends_at,
        rolled.predecessor.effective_end()
    );
    let shorter = f
        .keys
        .update(
            &f.admin,
            &rec.id,
            2,
            &KeyUpdate::new().expires_at(T0 + Duration::minutes(30)),
        )
        .unwrap();
    assert_eq!(shorter.grace_ends_at, Some(T0 + Duration::minutes(30)));
    // Moving the expiry later again does not give the grace window back.
    let later = f
        .keys
        .update(
            &f.admin,
            &rec.id,
            3,
            &KeyUpdate::new().expires_at(T0 + Duration::days(1)),
        )
        .unwrap();
    assert_eq!(later.effective_end(), Some(T0 + Duration::minutes(30)));
    f.at(T0 + Duration::minutes(30));
    assert_eq!(f.check(&old), Err(Rejection::GraceEnded));
}

// ---- setters and messages from the new-user trial ---------------------------

#[test]
fn scopes_are_names_validated_when_the_key_is_written() {
    let f = fx();
    // Names as loaded from configuration, a literal array, or a prebuilt set.
    let from_config: Vec<String> = vec!["b:read".into(), "a:write".into(), "b:read".into()];
    let (rec, _) = f.create(NewKey::secret(f.owner.clone(), "cfg").scopes(from_config));
    assert_eq!(rec.scopes.iter().collect::<Vec<_>>(), ["a:write", "b:read"]);
    let (rec, _) = f.create(NewKey::secret(f.owner.clone(), "lit").scopes(["x"]));
    assert!(rec.scopes.contains("x"));
    let prebuilt = Scopes::new(["y"]).unwrap();
    let (rec, _) = f.create(NewKey::secret(f.owner.clone(), "set").scopes(prebuilt.clone()));
    assert_eq!(rec.scopes, prebuilt);

    // A bad name fails the call, nothing is stored.
    let before = f.keys.list(&f.owner).unwrap().len();
    let bad = f
        .keys
        .create(
            &f.admin,
            NewKey::secret(f.owner.clone(), "bad").scopes(["ok", "not ok"]),
        )
        .unwrap_err();
    assert!(
        matches!(
            bad,
            Error::Invalid {
                field: api_keys::Field::Scope,
                ..
            }
        ),
        "{bad:?}"
    );
    assert_eq!(f.keys.list(&f.owner).unwrap().len(), before);

    // Updates take names too, validated the same way.
    let updated = f
        .keys
        .update(
            &f.admin,
            &rec.id,
            rec.version,
            &KeyUpdate::new().scopes(vec![String::from("z")]),
        )
        .unwrap();
    assert_eq!(updated.scopes.iter().collect::<Vec<_>>(), ["z"]);
    let bad = f
        .keys
        .update(
            &f.admin,
            &rec.id,
            updated.version,
            &KeyUpdate::new().scopes([""]),
        )
        .unwrap_err();
    assert!(matches!(bad, Error::Invalid { .. }), "{bad:?}");
    assert_eq!(f.keys.get(&rec.id).unwrap().scopes, updated.scopes);
}

#[test]
fn roll_options_setters_have_their_effect() {
    let f = fx();
    let end = T0 + Duration::days(30);
    let later = T0 + Duration::days(90);
    let spec = || NewKey::secret(f.owner.clone(), "k").expires_at(end);

    // Defaults: the policy's grace, the predecessor's expiry.
    let (a, _) = f.create(spec());
    let rolled = f.keys.roll(&f.admin, &a.id, RollOptions::new()).unwrap();
    assert_eq!(
        rolled.predecessor.grace_ends_at,
        Some(T0 + Duration::hours(12))
    );
    assert_eq!(rolled.successor.expires_at, Some(end));

    // grace(..)
    let (b, _) = f.create(spec());
    let rolled = f
        .keys
        .roll(
            &f.admin,
            &b.id,
            RollOptions::new().grace(Duration::hours(2)),
        )
        .unwrap();
    assert_eq!(
        rolled.predecessor.grace_ends_at,
        Some(T0 + Duration::hours(2))
    );

    // Capped at the policy's max_grace, without failing: the applied end is
    // the predecessor's grace_ends_at.
    let (c, _) = f.create(spec());
    let rolled = f
        .keys
        .roll(
            &f.admin,
            &c.id,
            RollOptions::new().grace(Duration::days(365)),
        )
        .unwrap();
    let cap = Policy::default().max_grace;
    assert_eq!(rolled.predecessor.grace_ends_at, Some(T0 + cap));

    // successor_expires_at(..) and successor_without_expiry()
    let (d, _) = f.create(spec());
    let rolled = f
        .keys
        .roll(
            &f.admin,
            &d.id,
            RollOptions::new().successor_expires_at(later),
        )
        .unwrap();
    assert_eq!(rolled.successor.expires_at, Some(later));
    let (e, _) = f.create(spec());
    let rolled = f
        .keys
        .roll(
            &f.admin,
            &e.id,
            RollOptions::new().successor_without_expiry(),
        )
        .unwrap();
    assert_eq!(rolled.successor.expires_at, None);
    assert_eq!(
        RollOptions::with_grace(Duration::hours(1)),
        RollOptions::new().grace(Duration::hours(1))
    );
}

#[test]
fn a_stale_update_of_a_revoked_key_says_revoked() {
    let f = fx();
    let (rec, _) = f.create(NewKey::secret(f.owner.clone(), "k"));
    f.keys.revoke(&f.admin, &rec.id).unwrap();
    // The caller still holds version 1; the key is revoked meanwhile.
    let err = f
        .keys
        .update(&f.admin, &rec.id, rec.version, &KeyUpdate::new().name("x"))
        .unwrap_err();
    assert!(matches!(err, Error::Revoked(id) if id == rec.id), "{err:?}");
    // A stale version on a live key is still a conflict.
    let (live, _) = f.create(NewKey::secret(f.owner.clone(), "live"));
    f.keys
        .update(
            &f.admin,
            &live.id,
            live.version,
            &KeyUpdate::new().name("y"),
        )
        .unwrap();
    let err = f
        .keys
        .update(
            &f.admin,
            &live.id,
            live.version,
            &KeyUpdate::new().name("z"),
        )
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
}

#[test]
fn a_signing_key_without_sealing_keys_names_the_builder_setting() {
    let f = fx();
    let err = f
        .keys
        .create(&f.admin, NewKey::secret(f.owner.clone(), "s").signing())
        .unwrap_err();
    assert!(matches!(err, Error::NoSealingKeys), "{err:?}");
    assert!(err.to_string().contains(".sealing_keys("), "{err}");
}

#[test]
fn the_manager_debug_is_a_summary() {
    let f = fx();
    let text = format!("{:?}", f.keys);
    for field in [
        "prefixes: sk/pk",
        "default_grace: 12h",
        "one_active_key_per_owner: false",
        "replay_protected: false",
        "clock:",
        "pepper_version: None",
        "sealing_key_version: None",
        "events: true",
    ] {
        assert!(text.contains(field), "{field} missing in {text}");
    }
    // Not the policy's every field, nor the engine's internals.
    for noise in ["publishable_scopes", "touch_interval", "hasher", "Lengths"] {
        assert!(!text.contains(noise), "{noise} in {text}");
    }
}

/// An update replaces the allow-lists, and the new lists are what verify
/// enforces from the next request on; the texts are set and cleared.
#[test]
fn update_replaces_allow_lists_and_texts() {
    let f = fx();
    let (rec, token) = f.create(
        NewKey::secret(f.owner.clone(), "k")
            .note("in vault")
            .description("billing")
            .allowed_ips(IpAllowList::parse("203.0.113.0/24").unwrap())
            .allowed_domains(DomainAllowList::new(["old.example.com"]).unwrap()),
    );
    let tok = token.expose_secret();
    let req = |ip: &str, origin: &'static str| {
        RequestContext::new()
            .peer_ip(ip.parse().unwrap())
            .origin(HeaderField::Single(origin.as_bytes()))
    };
    let refused = |r: &RequestContext<'_>| f.keys.verify(tok, r).err().and_then(|e| e.rejection());
    assert_eq!(
        refused(&req("203.0.113.9", "https://old.example.com")),
        None
    );

    let u = f
        .keys
        .update(
            &f.admin,
            &rec.id,
            1,
            &KeyUpdate::new()
                .description("payouts")
                .allowed_ips(IpAllowList::parse("198.51.100.7").unwrap())
                .allowed_domains(DomainAllowList::new(["new.example.com"]).unwrap()),
        )
        .unwrap();
    assert_eq!(u.description.as_deref(), Some("payouts"));
    assert_eq!(u.note.as_deref(), Some("in vault"), "untouched");
    assert_eq!(u.allowed_ips, IpAllowList::parse("198.51.100.7").unwrap());
    assert_eq!(
        u.allowed_domains,
        DomainAllowList::new(["new.example.com"]).unwrap()
    );
    assert_eq!(
        f.keys.get(&rec.id).unwrap().description.as_deref(),
        Some("payouts")
    );

    assert_eq!(
        refused(&req("203.0.113.9", "https://new.example.com")),
        Some(Rejection::IpNotAllowed),
        "the old address range no longer passes"
    );
    assert!(
        matches!(
            refused(&req("198.51.100.7", "https://old.example.com")),
            Some(Rejection::OriginNotAllowed(_))
        ),
        "the old domain no longer passes"
    );
    assert_eq!(
        refused(&req("198.51.100.7", "https://new.example.com")),
        None
    );

    let u = f
        .keys
        .update(
            &f.admin,
            &rec.id,
            2,
            &KeyUpdate::new().clear_note().clear_description(),
        )
        .unwrap();
    assert_eq!((u.note, u.description, u.version), (None, None, 3));
    assert_eq!(f.keys.get(&rec.id).unwrap().note, None);
}

/// Pepper rotation over three versions: each manager hashes new keys under
/// its current version (shown in its `Debug`), and verifies keys hashed
/// under any version it still holds; a version it lacks fails closed.
#[test]
fn pepper_rotation_over_several_versions() {
    let clock = Arc::new(ManualClock::new(T0));
    let admin = Actor::new("user:1").unwrap();
    let owner = OwnerId::new("acct_1").unwrap();
    let pepper = |v: u32| Pepper::new(v, &[u8::try_from(v).unwrap(); 32]).unwrap();
    let manager = |current: u32, previous: &[u32], records: &[&KeyRecord]| {
        let store = MemoryKeyStore::new();
        for r in records {
            KeyStore::insert(&store, r, WriteCondition::Always).unwrap();
        }
        let mut b = KeyManager::builder(store)
            .clock(Arc::clone(&clock))
            .pepper(pepper(current));
        for v in previous {
            b = b.previous_pepper(pepper(*v));
        }
        b.build().unwrap()
    };
    let v1 = manager(1, &[], &[]);
    assert!(
        format!("{v1:?}").contains("pepper_version: Some(1)"),
        "{v1:?}"
    );
    let old = v1
        .create(&admin, NewKey::secret(owner.clone(), "old"))
        .unwrap();
    assert_eq!(old.record.secret_hash.unwrap().pepper_version, Some(1));

    let v2 = manager(2, &[1], &[&old.record]);
    assert!(
        format!("{v2:?}").contains("pepper_version: Some(2)"),
        "{v2:?}"
    );
    let mid = v2
        .create(&admin, NewKey::secret(owner.clone(), "mid"))
        .unwrap();
    assert_eq!(mid.record.secret_hash.unwrap().pepper_version, Some(2));

    let v3 = manager(3, &[2, 1], &[&old.record, &mid.record]);
    assert!(
        format!("{v3:?}").contains("pepper_version: Some(3)"),
        "{v3:?}"
    );
    let new = v3
        .create(&admin, NewKey::secret(owner.clone(), "new"))
        .unwrap();
    assert_eq!(new.record.secret_hash.unwrap().pepper_version, Some(3));
    for t in [&old.token, &mid.token, &new.token] {
        assert!(v3.verify(t.expose_secret(), &ctx()).is_ok());
    }

    // Version 1 retired: its keys fail closed, the others still verify.
    let retired = manager(3, &[2], &[&old.record, &mid.record, &new.record]);
    let err = retired
        .verify(old.token.expose_secret(), &ctx())
        .unwrap_err();
    assert!(
        matches!(
            err,
            api_keys::VerifyError::Failed(Error::UnknownKeyVersion(1))
        ),
        "{err:?}"
    );
    assert!(retired.verify(mid.token.expose_secret(), &ctx()).is_ok());
    assert!(retired.verify(new.token.expose_secret(), &ctx()).is_ok());
}

/// A write that loses a race (another server changed the key between this
/// call's read and its write) is planned again over the new version, not
/// reported as a conflict; both changes survive.
#[test]
fn a_lost_race_is_retried_over_the_new_version() {
    for op in ["deactivate", "revoke"] {
        let store = HookedStore::default();
        let shared = Arc::clone(&store.inner);
        let f = fx_with(store, Policy::default());
        let other = KeyManager::builder(Arc::clone(&shared))
            .clock(Arc::clone(&f.clock))
            .build()
            .unwrap();
        let (a, _) = f.create(NewKey::secret(f.owner.clone(), "a"));
        let id = a.id;
        *f.keys.store().on_get.lock().unwrap() = Some(Box::new(move || {
            other
                .update(
                    &Actor::system(),
                    &id,
                    1,
                    &KeyUpdate::new().note("by the other server"),
                )
                .unwrap();
        }));
        let out = if op == "revoke" {
            f.keys.revoke(&f.admin, &id)
        } else {
            f.keys.deactivate(&f.admin, &id)
        };
        assert!(out.is_ok(), "{op}: {out:?}");
        let now = f.keys.get(&id).unwrap();
        assert_eq!(now.note.as_deref(), Some("by the other server"), "{op}");
        assert_eq!(now.version, 3, "{op}: two writes");
    }
}

/// The record's own answers about status and time, at the boundaries: a
/// key is usable from `created_at` (inclusive) to its effective end
/// (exclusive), only while active; live ignores `created_at`; grace is a
/// rolled key still usable.
#[test]
fn record_status_and_time_answers_hold_at_their_boundaries() {
    let f = fx();
    let (mut r, _) = f.create(NewKey::secret(f.owner.clone(), "k"));
    let created = r.created_at;
    let second = Duration::seconds(1);
    r.expires_at = Some(created + Duration::hours(2));
    r.grace_ends_at = Some(created + Duration::hours(1));
    assert_eq!(r.effective_end(), Some(created + Duration::hours(1)));
    let end = created + Duration::hours(1);
    for (now, usable, live) in [
        (created - second, false, true),
        (created, true, true),
        (end - second, true, true),
        (end, false, false),
        (end + second, false, false),
    ] {
        assert_eq!(r.is_usable_at(now), usable, "usable at {now}");
        assert_eq!(r.is_live_at(now), live, "live at {now}");
        assert!(!r.in_grace_at(now), "no successor: never in grace");
    }
    r.successor = Some(KeyId::from_bytes([5; 16]));
    assert!(r.in_grace_at(created) && r.in_grace_at(end - second));
    assert!(!r.in_grace_at(end) && !r.in_grace_at(created - second));
    assert!(!r.is_pending());
    for status in [KeyStatus::Inactive, KeyStatus::Revoked, KeyStatus::Pending] {
        r.status = status;
        assert_eq!(r.is_pending(), status == KeyStatus::Pending);
        assert!(!r.is_usable_at(created), "{status:?}");
        assert!(!r.is_live_at(created), "{status:?}");
        assert!(!r.in_grace_at(created), "{status:?}");
    }
    r.status = KeyStatus::Active;
    r.grace_ends_at = None;
    r.expires_at = None;
    assert_eq!(r.effective_end(), None);
    assert!(r.is_usable_at(created + Duration::days(10_000)));
}

#[test]
fn scopes_convert_to_and_from_lists_of_names() {
    let scopes = Scopes::new(["write", "read"]).unwrap();
    let names: Vec<String> = scopes.clone().into();
    assert_eq!(Scopes::new(names.clone()).unwrap(), scopes);
    assert_eq!(names.len(), 2);
    assert!(names.iter().any(|n| n == "read") && names.iter().any(|n| n == "write"));
    assert_eq!(Scopes::try_from(names).unwrap(), scopes);
    assert!(Scopes::try_from(vec!["not a scope".to_owned()]).is_err());
    assert!(Vec::<String>::from(Scopes::default()).is_empty());
}

/// Names, notes and ids at exactly their longest length are taken; one
/// character or byte more is refused (multi-byte characters count as one).
#[test]
fn texts_and_ids_are_taken_up_to_their_longest_length() {
    let f = fx();
    let name = |n: usize| "é".repeat(n);
    assert!(
        f.keys
            .create(
                &f.admin,
                NewKey::secret(f.owner.clone(), name(api_keys::MAX_NAME_CHARS))
            )
            .is_ok()
    );
    assert!(
        f.keys
            .create(
                &f.admin,
                NewKey::secret(f.owner.clone(), name(api_keys::MAX_NAME_CHARS + 1))
            )
            .is_err()
    );
    let note = |n: usize| NewKey::secret(f.owner.clone(), "k").note("ü".repeat(n));
    assert!(
        f.keys
            .create(&f.admin, note(api_keys::MAX_TEXT_CHARS))
            .is_ok()
    );
    assert!(
        f.keys
            .create(&f.admin, note(api_keys::MAX_TEXT_CHARS + 1))
            .is_err()
    );
    assert!(OwnerId::new("o".repeat(api_keys::MAX_ID_LEN)).is_ok());
    assert!(OwnerId::new("o".repeat(api_keys::MAX_ID_LEN + 1)).is_err());
}
