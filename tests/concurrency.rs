//! Bounded, barrier-orchestrated stress tests on `KeyManager<MemoryKeyStore>`
//! (sync API): verifications racing revocation, rolls, deactivation and
//! creation. Properties are stated over a happens-before order recorded with
//! sequentially consistent atomics; nothing asserts on timing.
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
    Actor, Clock, Error, KeyId, KeyManager, KeyRecord, KeyStatus, KeyStore, MemoryKeyStore, NewKey,
    OwnerId, Policy, Rejection, RequestContext, RollOptions, RollPlan, StoreError, VerifyError,
    WriteCondition,
};
use std::hint::spin_loop;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use time::macros::utc_datetime;
use time::{Duration, UtcDateTime};

const T0: UtcDateTime = utc_datetime!(2026-06-01 00:00);
const VERIFIERS: usize = 3;

fn manager(policy: Policy) -> (KeyManager<MemoryKeyStore>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(T0));
    let keys = KeyManager::builder(MemoryKeyStore::new())
        .clock(Arc::clone(&clock))
        .policy(policy)
        .build()
        .unwrap();
    (keys, clock)
}

fn spin(n: usize) {
    for _ in 0..n {
        spin_loop();
    }
}

/// Sets a flag when dropped, so waiting threads are released even if the
/// thread that owns it panics.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, SeqCst);
    }
}

fn rejection<T>(r: &Result<T, VerifyError>) -> Option<Rejection> {
    r.as_ref().err().and_then(VerifyError::rejection)
}

/// After `revoke` returns, no verification that starts afterwards succeeds.
///
/// The revoker sets `revoked` right after `revoke` returns. A verifier reads
/// the flag *before* starting each verification; if it was already set, that
/// verification started after the revoke returned and must be refused as
/// `Revoked`. Earlier ones may go either way, but only as an accept or
/// `Revoked`. Half of the rounds revoke a rolled key inside its grace
/// window: revocation dominates grace.
#[test]
fn no_accept_starts_after_revoke_returned() {
    let (keys, _clock) = manager(Policy::default());
    let admin = Actor::system();
    let accepted_before = AtomicUsize::new(0);
    for round in 0..16usize {
        let owner = OwnerId::new(format!("acct_revoke_{round}")).unwrap();
        let created = keys.create(&admin, NewKey::secret(owner, "k")).unwrap();
        let id = created.record.id;
        let token = created.token.expose_secret().to_owned();
        let in_grace = round % 2 == 1;
        if in_grace {
            keys.roll(&admin, &id, RollOptions::default()).unwrap();
            assert!(
                keys.verify(&token, &RequestContext::new())
                    .unwrap()
                    .in_grace()
            );
        }
        let revoked = AtomicBool::new(false);
        let barrier = Barrier::new(VERIFIERS + 1);
        let after_revoke = AtomicUsize::new(0);
        thread::scope(|s| {
            for _ in 0..VERIFIERS {
                s.spawn(|| {
                    barrier.wait();
                    let mut seen_after = 0;
                    loop {
                        let started_after_revoke = revoked.load(SeqCst);
                        let got = keys.verify(&token, &RequestContext::new());
                        if started_after_revoke {
                            assert_eq!(
                                rejection(&got),
                                Some(Rejection::Revoked),
                                "round {round} (grace: {in_grace}): a verification that started \
                                 after revoke returned was not refused: {got:?}"
                            );
                            seen_after += 1;
                            if seen_after == 25 {
                                break;
                            }
                        } else {
                            assert!(
                                got.is_ok() || rejection(&got) == Some(Rejection::Revoked),
                                "round {round}: unexpected outcome during the race: {got:?}"
                            );
                            if got.is_ok() {
                                accepted_before.fetch_add(1, SeqCst);
                            }
                        }
                    }
                    after_revoke.fetch_add(seen_after, SeqCst);
                });
            }
            s.spawn(|| {
                barrier.wait();
                let _release = SetOnDrop(&revoked);
                spin(round * 400);
                keys.revoke(&admin, &id).unwrap();
                // `_release` sets `revoked` here, right after revoke returned.
            });
        });
        // Every verifier went on verifying after the revoke.
        assert_eq!(after_revoke.load(SeqCst), VERIFIERS * 25, "round {round}");
        assert_eq!(keys.get(&id).unwrap().status, KeyStatus::Revoked);
    }
    // Coverage only (timing-dependent, not asserted): see `--nocapture`.
    eprintln!(
        "revoke race: {} accepts before revoke returned",
        accepted_before.load(SeqCst)
    );
}

/// Exactly one of N concurrent rolls of one key wins; the losers get no
/// token and leave nothing behind; a reader never sees half a roll.
#[test]
fn exactly_one_concurrent_roll_wins() {
    const ROLLERS: usize = 4;
    let (keys, _clock) = manager(Policy::default());
    let admin = Actor::system();
    for round in 0..16 {
        let owner = OwnerId::new(format!("acct_roll_{round}")).unwrap();
        let created = keys
            .create(&admin, NewKey::secret(owner.clone(), "k"))
            .unwrap();
        let id = created.record.id;
        let barrier = Barrier::new(ROLLERS + 1);
        let done = AtomicBool::new(false);
        let results: Vec<Result<api_keys::RolledKey, Error>> = thread::scope(|s| {
            // A reader: whenever the predecessor names a successor, that
            // successor exists and points back (the roll is one step).
            s.spawn(|| {
                barrier.wait();
                while !done.load(SeqCst) {
                    let pred = keys.get(&id).unwrap();
                    if let Some(succ) = pred.successor {
                        let succ = keys.get(&succ).expect("successor named but not stored");
                        assert_eq!(
                            succ.predecessor,
                            Some(id),
                            "round {round}: half-applied roll"
                        );
                        assert!(
                            pred.grace_ends_at.is_some(),
                            "round {round}: no grace on the predecessor"
                        );
                    }
                }
            });
            let handles: Vec<_> = (0..ROLLERS)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        keys.roll(&admin, &id, RollOptions::default())
                    })
                })
                .collect();
            let joined: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
            done.store(true, SeqCst);
            joined.into_iter().map(|r| r.unwrap()).collect()
        });
        let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        for r in &results {
            match r {
                Ok(_) => {}
                Err(Error::Conflict(k)) => assert_eq!(*k, id),
                Err(Error::InvalidState { id: k, .. }) => assert_eq!(*k, id),
                Err(e) => panic!("round {round}: unexpected loser error {e:?}"),
            }
        }
        let winner = winners[0];
        let stored = keys.list(&owner).unwrap();
        assert_eq!(
            stored.len(),
            2,
            "round {round}: exactly one successor stored"
        );
        let pred = keys.get(&id).unwrap();
        assert_eq!(pred.successor, Some(winner.successor.id));
        assert_eq!(
            pred.version, 2,
            "round {round}: the predecessor changed once"
        );
        let new = keys
            .verify(winner.token.expose_secret(), &RequestContext::new())
            .unwrap();
        assert_eq!(new.id(), winner.successor.id);
        assert!(!new.in_grace());
        let old = keys
            .verify(created.token.expose_secret(), &RequestContext::new())
            .unwrap();
        assert!(old.in_grace());
    }
}

/// A revoke racing a roll: the revoke always takes effect on the key it
/// names; a live successor exists only if the roll committed first (the
/// predecessor's version history is create → roll → revoke), and then it
/// was not revoked with it (revoke targets only the predecessor).
#[test]
fn revoke_racing_roll_never_leaves_an_unexplained_live_successor() {
    const ROUNDS: usize = 40;
    let (keys, _clock) = manager(Policy::default());
    let admin = Actor::system();
    // Outcomes seen: roll first, revoke before the roll read, revoke between
    // the roll's read and its write. Coverage only, not asserted.
    let mut seen = [0usize; 3];
    for round in 0..ROUNDS {
        let owner = OwnerId::new(format!("acct_race_{round}")).unwrap();
        let created = keys
            .create(&admin, NewKey::secret(owner.clone(), "k"))
            .unwrap();
        let id = created.record.id;
        let barrier = Barrier::new(2);
        let (rolled, revoked) = thread::scope(|s| {
            // A sweep of head starts for the revoke, so both orders occur.
            let roll = s.spawn(|| {
                barrier.wait();
                keys.roll(&admin, &id, RollOptions::default())
            });
            let revoke = s.spawn(|| {
                barrier.wait();
                spin(round * round * 40);
                keys.revoke(&admin, &id)
            });
            (roll.join().unwrap(), revoke.join().unwrap())
        });
        let revoked = revoked.unwrap_or_else(|e| panic!("round {round}: revoke failed: {e:?}"));
        assert_eq!(revoked.status, KeyStatus::Revoked);
        let pred = keys.get(&id).unwrap();
        assert_eq!(pred.status, KeyStatus::Revoked, "round {round}");
        let stored = keys.list(&owner).unwrap();
        match rolled {
            Ok(r) => {
                seen[0] += 1;
                // The roll committed first: create (1) → roll (2) → revoke (3).
                assert_eq!(pred.version, 3, "round {round}");
                assert_eq!(pred.successor, Some(r.successor.id), "round {round}");
                assert_eq!(stored.len(), 2, "round {round}");
                let succ = keys.get(&r.successor.id).unwrap();
                assert_eq!(
                    succ.status,
                    KeyStatus::Active,
                    "round {round}: only the predecessor is revoked"
                );
                assert_eq!(succ.predecessor, Some(id));
                keys.verify(r.token.expose_secret(), &RequestContext::new())
                    .unwrap();
            }
            Err(e) => {
                seen[if matches!(e, Error::Revoked(_)) { 1 } else { 2 }] += 1;
                assert!(
                    matches!(e, Error::Revoked(k) | Error::Conflict(k) if k == id),
                    "round {round}: unexpected roll error {e:?}"
                );
                // The revoke committed first: no successor, no roll.
                assert_eq!(pred.version, 2, "round {round}");
                assert_eq!(pred.successor, None, "round {round}");
                assert_eq!(stored.len(), 1, "round {round}: a successor without a roll");
            }
        }
        assert_eq!(
            rejection(&keys.verify(created.token.expose_secret(), &RequestContext::new())),
            Some(Rejection::Revoked),
            "round {round}: revoked predecessor still verifies"
        );
    }
    // Both orders are possible and both were checked above; which one won
    // is timing-dependent and not asserted.
    eprintln!(
        "revoke vs roll over {ROUNDS} rounds: roll first {}, revoke first {}, revoke between \
         the roll's read and write {}",
        seen[0], seen[1], seen[2]
    );
}

/// Deactivate/activate flapping while verifying.
///
/// The flipper publishes a generation counter `g` whose phase `g % 4` is
/// 0 = "activate returned, deactivate not yet called", 1 = "deactivating",
/// 2 = "deactivate returned, activate not yet called", 3 = "activating",
/// incrementing *before* calling and *after* the call returned. A verifier
/// reads `g` before and after a verification; if both reads are equal, the
/// whole verification ran inside that phase, so phase 0 must accept and
/// phase 2 must refuse as `Inactive`. In the transitional phases either
/// outcome is fine — but nothing else.
#[test]
fn flapping_never_accepts_a_key_inactive_throughout() {
    let (keys, _clock) = manager(Policy::default());
    let admin = Actor::system();
    let created = keys
        .create(
            &admin,
            NewKey::secret(OwnerId::new("acct_flap").unwrap(), "k"),
        )
        .unwrap();
    let id = created.record.id;
    let token = created.token.expose_secret();
    let generation = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let barrier = Barrier::new(VERIFIERS + 1);
    let stable = [AtomicUsize::new(0), AtomicUsize::new(0)];
    // 1 + the latest generation in which a whole verification ran: the
    // flipper holds each stable phase until one did (bounded), so both
    // stable phases are exercised without any timing assumption.
    let observed = AtomicU64::new(0);
    let hold = |g: u64| {
        for _ in 0..200_000 {
            if observed.load(SeqCst) > g {
                break;
            }
            thread::yield_now();
        }
    };
    thread::scope(|s| {
        for _ in 0..VERIFIERS {
            s.spawn(|| {
                barrier.wait();
                while !done.load(SeqCst) {
                    let g1 = generation.load(SeqCst);
                    let got = keys.verify(token, &RequestContext::new());
                    let g2 = generation.load(SeqCst);
                    assert!(
                        got.is_ok() || rejection(&got) == Some(Rejection::Inactive),
                        "unexpected outcome {got:?}"
                    );
                    if g1 == g2 {
                        observed.fetch_max(g1 + 1, SeqCst);
                        match g1 % 4 {
                            0 => {
                                assert!(
                                    got.is_ok(),
                                    "refused while active throughout (g={g1}): {got:?}"
                                );
                                stable[0].fetch_add(1, SeqCst);
                            }
                            2 => {
                                assert_eq!(
                                    rejection(&got),
                                    Some(Rejection::Inactive),
                                    "accepted while inactive throughout (g={g1})"
                                );
                                stable[1].fetch_add(1, SeqCst);
                            }
                            _ => {}
                        }
                    }
                }
            });
        }
        s.spawn(|| {
            barrier.wait();
            let _release = SetOnDrop(&done);
            for cycle in 0..40usize {
                generation.fetch_add(1, SeqCst); // 1: deactivating
                keys.deactivate(&admin, &id).unwrap();
                let inactive = generation.fetch_add(1, SeqCst) + 1; // 2: inactive
                hold(inactive);
                spin(cycle * 50);
                generation.fetch_add(1, SeqCst); // 3: activating
                keys.activate(&admin, &id).unwrap();
                let active = generation.fetch_add(1, SeqCst) + 1; // 0: active
                hold(active);
                spin(cycle * 50);
            }
        });
    });
    assert_eq!(generation.load(SeqCst), 160);
    assert_eq!(keys.get(&id).unwrap().status, KeyStatus::Active);
    assert_eq!(
        keys.get(&id).unwrap().version,
        81,
        "40 deactivations and 40 activations"
    );
    // How often each stable phase was observed is timing-dependent and not
    // asserted.
    eprintln!(
        "flapping: {} verifications entirely while active, {} entirely while inactive",
        stable[0].load(SeqCst),
        stable[1].load(SeqCst)
    );
}

/// Under `one_active_key_per_owner`, N concurrent creations of active keys
/// and activations of inactive keys for one owner leave exactly one usable
/// key (the clock is fixed, so every operation sees the same instant).
#[test]
fn one_active_key_rule_holds_under_concurrent_creates_and_activations() {
    const CREATORS: usize = 3;
    const ACTIVATORS: usize = 2;
    let (keys, clock) = manager(Policy {
        one_active_key_per_owner: true,
        ..Policy::default()
    });
    let admin = Actor::system();
    for round in 0..16 {
        let owner = OwnerId::new(format!("acct_one_{round}")).unwrap();
        let inactive: Vec<KeyId> = (0..ACTIVATORS)
            .map(|i| {
                keys.create(
                    &admin,
                    NewKey::secret(owner.clone(), format!("standby {i}")).inactive(),
                )
                .unwrap()
                .record
                .id
            })
            .collect();
        let barrier = Barrier::new(CREATORS + ACTIVATORS);
        let (created, activated): (Vec<Result<_, Error>>, Vec<Result<_, Error>>) =
            thread::scope(|s| {
                let creators: Vec<_> = (0..CREATORS)
                    .map(|i| {
                        let owner = owner.clone();
                        let (keys, admin, barrier) = (&keys, &admin, &barrier);
                        s.spawn(move || {
                            barrier.wait();
                            keys.create(admin, NewKey::secret(owner, format!("new {i}")))
                                .map(|c| c.record.id)
                        })
                    })
                    .collect();
                let activators: Vec<_> = inactive
                    .iter()
                    .map(|id| {
                        let (keys, admin, barrier) = (&keys, &admin, &barrier);
                        s.spawn(move || {
                            barrier.wait();
                            keys.activate(admin, id).map(|r| r.id)
                        })
                    })
                    .collect();
                (
                    creators.into_iter().map(|h| h.join().unwrap()).collect(),
                    activators.into_iter().map(|h| h.join().unwrap()).collect(),
                )
            });
        let successes = created
            .iter()
            .chain(&activated)
            .filter(|r| r.is_ok())
            .count();
        assert_eq!(
            successes, 1,
            "round {round}: created {created:?}, activated {activated:?}"
        );
        for r in created.iter().chain(&activated) {
            assert!(
                matches!(r, Ok(_) | Err(Error::AnotherKeyActive)),
                "round {round}: unexpected {r:?}"
            );
        }
        // Refused creations stored nothing; exactly one record is usable.
        let records = keys.list(&owner).unwrap();
        let created_ok = created.iter().filter(|r| r.is_ok()).count();
        assert_eq!(
            records.len(),
            ACTIVATORS + created_ok,
            "round {round}: {records:?}"
        );
        let usable = records
            .iter()
            .filter(|r| r.is_usable_at(clock.now()))
            .count();
        assert_eq!(usable, 1, "round {round}");
    }
}

// ---------------------------------------------------------------------------
// The one-active-key rule with a moving clock
// ---------------------------------------------------------------------------

/// A store that holds the first write (insert or update) at a gate until
/// the test releases it, so an interleaving can be forced.
struct GateStore {
    inner: MemoryKeyStore,
    gate: Mutex<Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>>,
}

impl GateStore {
    fn new() -> (Self, mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (arrived_tx, arrived_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        let store = Self {
            inner: MemoryKeyStore::new(),
            gate: Mutex::new(Some((arrived_tx, release_rx))),
        };
        (store, arrived_rx, release_tx)
    }

    fn pass_gate(&self) {
        let gate = self.gate.lock().unwrap().take();
        if let Some((arrived, release)) = gate {
            arrived.send(()).unwrap();
            release.recv().unwrap();
        }
    }
}

impl KeyStore for GateStore {
    fn insert(&self, r: &KeyRecord, c: WriteCondition) -> Result<(), StoreError> {
        self.pass_gate();
        KeyStore::insert(&self.inner, r, c)
    }
    fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        KeyStore::get(&self.inner, id)
    }
    fn list_by_owner(&self, o: &OwnerId) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        KeyStore::list_by_owner(&self.inner, o)
    }
    fn update(&self, r: &KeyRecord, v: u64, c: WriteCondition) -> Result<(), StoreError> {
        self.pass_gate();
        KeyStore::update(&self.inner, r, v, c)
    }
    fn apply_roll(&self, p: &RollPlan) -> Result<(), StoreError> {
        KeyStore::apply_roll(&self.inner, p)
    }
    fn touch(&self, id: &KeyId, usage: api_keys::Usage) -> Result<(), StoreError> {
        KeyStore::touch(&self.inner, id, usage)
    }
}

/// Two operations under `one_active_key_per_owner` with a real (moving)
/// clock: A reads the clock at t, B reads it at t + 1 s and commits first;
/// A's write is then checked with `NoOtherUsableKey { now: t }`, for which
/// B's key (created at t + 1 s) is "not yet valid", hence not usable — so A
/// commits too and the owner ends up with two usable keys.
#[test]
fn one_active_key_rule_with_a_moving_clock() {
    let mut violations = Vec::new();
    for first_is_activation in [false, true] {
        let (store, arrived, release) = GateStore::new();
        let clock = Arc::new(ManualClock::new(T0));
        let keys = KeyManager::builder(store)
            .clock(Arc::clone(&clock))
            .policy(Policy {
                one_active_key_per_owner: true,
                ..Policy::default()
            })
            .build()
            .unwrap();
        let admin = Actor::system();
        let owner = OwnerId::new("acct_moving_clock").unwrap();
        let standby = if first_is_activation {
            // Created inactive through the gate-free path: disarm, create, re-arm.
            let gate = keys.store().gate.lock().unwrap().take();
            let id = keys
                .create(&admin, NewKey::secret(owner.clone(), "standby").inactive())
                .unwrap()
                .record
                .id;
            *keys.store().gate.lock().unwrap() = gate;
            Some(id)
        } else {
            None
        };
        let (a, b) = thread::scope(|s| {
            let a = s.spawn(|| match standby {
                // A: reads the clock (t0), then waits at the gate before its write.
                Some(id) => keys.activate(&admin, &id).map(|r| r.id),
                None => keys
                    .create(&admin, NewKey::secret(owner.clone(), "a"))
                    .map(|c| c.record.id),
            });
            arrived.recv().unwrap();
            // B: one second later, creates and commits an active key.
            clock.advance(Duration::seconds(1));
            let b = keys
                .create(&admin, NewKey::secret(owner.clone(), "b"))
                .map(|c| c.record.id);
            release.send(()).unwrap();
            (a.join().unwrap(), b)
        });
        clock.advance(Duration::seconds(1));
        let now = keys.now();
        let usable = keys
            .list(&owner)
            .unwrap()
            .iter()
            .filter(|r| r.is_usable_at(now))
            .count();
        if usable > 1 {
            violations.push(format!(
                "A = {}: {a:?}, B = create: {b:?}: {usable} usable keys",
                if first_is_activation {
                    "activate"
                } else {
                    "create"
                }
            ));
        }
    }
    assert!(violations.is_empty(), "{violations:#?}");
}

/// The same root cause without threads: after the clock steps back (NTP
/// correction, a host clock moved by an operator), a key created "in the
/// future" is ignored by the one-active-key check.
#[test]
fn one_active_key_rule_after_a_clock_step_back() {
    let (keys, clock) = manager(Policy {
        one_active_key_per_owner: true,
        ..Policy::default()
    });
    let admin = Actor::system();
    let owner = OwnerId::new("acct_step_back").unwrap();
    clock.set(T0 + Duration::seconds(10));
    keys.create(&admin, NewKey::secret(owner.clone(), "first"))
        .unwrap();
    clock.set(T0);
    let second = keys.create(&admin, NewKey::secret(owner.clone(), "second"));
    assert!(
        matches!(second, Err(Error::AnotherKeyActive)),
        "a second active key was created: {second:?}"
    );
}

// ---------------------------------------------------------------------------
// last_used_at under concurrent writes
// ---------------------------------------------------------------------------

/// The store contract: `update` keeps the later of the stored and the new
/// `last_used_at`, and `touch` only moves it forward. So once a `touch(t)`
/// has returned, `last_used_at >= t` forever. (Timing-dependent: the race
/// is hit a few times per thousand rounds on a 2-core machine.)
#[test]
fn touch_racing_update_never_moves_last_used_back() {
    let store = Arc::new(MemoryKeyStore::new());
    let keys = KeyManager::new(Arc::clone(&store));
    let admin = Actor::system();
    let created = keys
        .create(
            &admin,
            NewKey::secret(OwnerId::new("acct_touch").unwrap(), "k"),
        )
        .unwrap();
    let id = created.record.id;
    let mut lost = Vec::new();
    for round in 0..2000i64 {
        let at = T0 + Duration::seconds(round);
        let barrier = Barrier::new(2);
        thread::scope(|s| {
            s.spawn(|| {
                barrier.wait();
                KeyStore::touch(&*store, &id, api_keys::Usage::once(at)).unwrap();
            });
            s.spawn(|| {
                barrier.wait();
                let current = KeyStore::get(&*store, &id).unwrap().unwrap();
                let mut next = (*current).clone();
                next.name = format!("name {round}");
                next.version += 1;
                // A conflict is fine (another writer won); a lost touch is not.
                let _ = KeyStore::update(&*store, &next, current.version, WriteCondition::Always);
            });
        });
        let stored = KeyStore::get(&*store, &id).unwrap().unwrap();
        if stored.last_used_at.is_none_or(|t| t < at) {
            lost.push((round, stored.last_used_at));
            // Repair, so later rounds test the race afresh.
            KeyStore::touch(&*store, &id, api_keys::Usage::once(at)).unwrap();
        }
    }
    assert!(
        lost.is_empty(),
        "touches lost to a concurrent update: {lost:?}"
    );
}
