//! Fault injection: a `KeyStore` wrapper that fails the n-th call (before or
//! after committing), answers with a stale version of a record, or with a
//! mismatched record (another key's, or the right one with its environment,
//! kind, id or hash altered). Every manager operation is run with a failure
//! injected at each of its store calls in turn.
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
    Actor, Environment, Error, EventKind, KeyEvent, KeyFormat, KeyId, KeyKind, KeyManager,
    KeyRecord, KeyStatus, KeyStore, KeyUpdate, MemoryKeyStore, NewKey, OwnerId, Rejection,
    RequestContext, RequestSigner, RollOptions, RollPlan, SealingKey, SealingKeyRing, SecretHash,
    SignedRequest, StoreError, StoreErrorKind, VerifyError, WriteCondition,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use time::macros::utc_datetime;
use time::{Duration, UtcDateTime};

const T0: UtcDateTime = utc_datetime!(2026-08-01 06:00);
const BODY: &[u8] = br#"{"amount":"1.00"}"#;
const NEVER: usize = usize::MAX;

/// Which store method was called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Insert,
    Get,
    List,
    Update,
    Roll,
    Touch,
}

impl Call {
    fn is_write(self) -> bool {
        matches!(self, Call::Insert | Call::Update | Call::Roll | Call::Touch)
    }
}

/// How `get` answers.
enum GetMode {
    Honest,
    /// The oldest version of the record ever written through this store.
    Stale,
    /// Another key's record, whatever id was asked for.
    Other(KeyId),
    /// The real record, altered.
    Tamper(Box<dyn Fn(&KeyRecord) -> KeyRecord + Send + Sync>),
}

struct FaultStore {
    inner: MemoryKeyStore,
    log: Mutex<Vec<Call>>,
    /// Index (into `log`) of the call to fail; `NEVER` for none.
    fail_at: AtomicUsize,
    /// Fail a write only after the inner store committed it (an ambiguous
    /// commit, like a timeout after the database applied the statement).
    after_commit: AtomicBool,
    history: Mutex<HashMap<KeyId, Vec<KeyRecord>>>,
    get_mode: Mutex<GetMode>,
}

fn injected() -> StoreError {
    StoreError::backend("injected fault")
}

impl FaultStore {
    fn new() -> Self {
        Self {
            inner: MemoryKeyStore::new(),
            log: Mutex::new(Vec::new()),
            fail_at: AtomicUsize::new(NEVER),
            after_commit: AtomicBool::new(false),
            history: Mutex::new(HashMap::new()),
            get_mode: Mutex::new(GetMode::Honest),
        }
    }

    /// Logs the call; whether it is the one to fail.
    fn enter(&self, call: Call) -> bool {
        let mut log = self.log.lock().unwrap();
        log.push(call);
        log.len() - 1 == self.fail_at.load(SeqCst)
    }

    fn calls(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    fn call(&self, index: usize) -> Call {
        self.log.lock().unwrap()[index]
    }

    fn remember(&self, record: &KeyRecord) {
        self.history
            .lock()
            .unwrap()
            .entry(record.id)
            .or_default()
            .push(record.clone());
    }

    fn set_get_mode(&self, mode: GetMode) {
        *self.get_mode.lock().unwrap() = mode;
    }

    /// The committed records, as the inner store holds them.
    fn real(&self, id: &KeyId) -> Option<Arc<KeyRecord>> {
        KeyStore::get(&self.inner, id).unwrap()
    }

    /// A write: fail before, or commit and then fail.
    fn write(
        &self,
        call: Call,
        apply: impl FnOnce() -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let fail = self.enter(call);
        if fail && !self.after_commit.load(SeqCst) {
            return Err(injected());
        }
        apply()?;
        if fail { Err(injected()) } else { Ok(()) }
    }
}

impl KeyStore for FaultStore {
    fn insert(&self, r: &KeyRecord, c: WriteCondition) -> Result<(), StoreError> {
        self.write(Call::Insert, || {
            KeyStore::insert(&self.inner, r, c)?;
            self.remember(r);
            Ok(())
        })
    }
    fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        if self.enter(Call::Get) {
            return Err(injected());
        }
        let real = KeyStore::get(&self.inner, id)?;
        Ok(match &*self.get_mode.lock().unwrap() {
            GetMode::Honest => real,
            GetMode::Stale => self
                .history
                .lock()
                .unwrap()
                .get(id)
                .and_then(|v| v.first().cloned())
                .map(Arc::new)
                .or(real),
            GetMode::Other(other) => KeyStore::get(&self.inner, other)?,
            GetMode::Tamper(f) => real.map(|r| Arc::new(f(&r))),
        })
    }
    fn list_by_owner(&self, o: &OwnerId) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        if self.enter(Call::List) {
            return Err(injected());
        }
        KeyStore::list_by_owner(&self.inner, o)
    }
    fn update(&self, r: &KeyRecord, v: u64, c: WriteCondition) -> Result<(), StoreError> {
        self.write(Call::Update, || {
            KeyStore::update(&self.inner, r, v, c)?;
            self.remember(r);
            Ok(())
        })
    }
    fn apply_roll(&self, p: &RollPlan) -> Result<(), StoreError> {
        self.write(Call::Roll, || {
            KeyStore::apply_roll(&self.inner, p)?;
            self.remember(&p.predecessor);
            self.remember(&p.successor);
            Ok(())
        })
    }
    fn touch(&self, id: &KeyId, usage: api_keys::Usage) -> Result<(), StoreError> {
        self.write(Call::Touch, || KeyStore::touch(&self.inner, id, usage))
    }
}

struct Fx {
    keys: KeyManager<FaultStore>,
    clock: Arc<ManualClock>,
    events: Arc<Mutex<Vec<(EventKind, KeyId)>>>,
    admin: Actor,
    owner: OwnerId,
}

/// The keys every case starts from.
struct Keys {
    active: KeyId,
    active_token: String,
    inactive: KeyId,
    signing: KeyId,
    signing_token: String,
    other: KeyId,
    other_token: String,
}

fn fx() -> (Fx, Keys) {
    let clock = Arc::new(ManualClock::new(T0));
    let events: Arc<Mutex<Vec<(EventKind, KeyId)>>> = Arc::default();
    let keys = KeyManager::builder(FaultStore::new())
        .clock(Arc::clone(&clock))
        .sealing_keys(SealingKeyRing::new(SealingKey::new(1, &[7u8; 32]).unwrap()))
        .events({
            let events = Arc::clone(&events);
            move |e: &KeyEvent<'_>| events.lock().unwrap().push((e.kind, e.key_id))
        })
        .build()
        .unwrap();
    let f = Fx {
        keys,
        clock,
        events,
        admin: Actor::new("fault-injector").unwrap(),
        owner: OwnerId::new("acct_faults").unwrap(),
    };
    let active = f
        .keys
        .create(&f.admin, NewKey::secret(f.owner.clone(), "active"))
        .unwrap();
    let inactive = f
        .keys
        .create(
            &f.admin,
            NewKey::secret(f.owner.clone(), "inactive").inactive(),
        )
        .unwrap();
    let signing = f
        .keys
        .create(
            &f.admin,
            NewKey::secret(f.owner.clone(), "signing").signing(),
        )
        .unwrap();
    let other = f
        .keys
        .create(&f.admin, NewKey::secret(f.owner.clone(), "other"))
        .unwrap();
    let k = Keys {
        active: active.record.id,
        active_token: active.token.expose_secret().to_owned(),
        inactive: inactive.record.id,
        signing: signing.record.id,
        signing_token: signing.token.expose_secret().to_owned(),
        other: other.record.id,
        other_token: other.token.expose_secret().to_owned(),
    };
    f.events.lock().unwrap().clear();
    (f, k)
}

impl Fx {
    fn store(&self) -> &FaultStore {
        self.keys.store()
    }
    /// Every committed record of the owner, by id.
    fn snapshot(&self) -> Vec<KeyRecord> {
        let mut v: Vec<KeyRecord> = KeyStore::list_by_owner(&self.store().inner, &self.owner)
            .unwrap()
            .iter()
            .map(|r| (**r).clone())
            .collect();
        v.sort_by_key(|r| r.id);
        v
    }
    fn events(&self) -> Vec<(EventKind, KeyId)> {
        self.events.lock().unwrap().clone()
    }
    fn signed(&self, k: &Keys) -> Result<KeyId, VerifyError> {
        let headers = RequestSigner::for_token(&k.signing_token)
            .unwrap()
            .sign(BODY);
        self.keys
            .verify_signed(
                &SignedRequest::new(headers.key.as_bytes(), headers.signature.as_bytes(), BODY),
                &RequestContext::new(),
            )
            .map(|v| v.id())
    }
}

/// The manager operations under test.
#[derive(Debug, Clone, Copy)]
enum Op {
    Create,
    CreateSigning,
    Activate,
    Deactivate,
    Revoke,
    Update,
    Roll,
    RollSigning,
    Verify,
    VerifySigned,
}

const OPS: [Op; 10] = [
    Op::Create,
    Op::CreateSigning,
    Op::Activate,
    Op::Deactivate,
    Op::Revoke,
    Op::Update,
    Op::Roll,
    Op::RollSigning,
    Op::Verify,
    Op::VerifySigned,
];

/// What an operation returned.
#[derive(Debug)]
enum Done {
    /// A management operation; `Some(token)` when it handed one out.
    Manage(Result<Option<String>, Error>),
    /// A verification; the accepted key id.
    Verify(Result<KeyId, VerifyError>),
}

fn run(f: &Fx, k: &Keys, op: Op) -> Done {
    let (keys, admin, owner) = (&f.keys, &f.admin, &f.owner);
    let token = |t: &api_keys::Token| Some(t.expose_secret().to_owned());
    match op {
        Op::Create => Done::Manage(
            keys.create(admin, NewKey::secret(owner.clone(), "new"))
                .map(|c| token(&c.token)),
        ),
        Op::CreateSigning => Done::Manage(
            keys.create(
                admin,
                NewKey::secret(owner.clone(), "new signing").signing(),
            )
            .map(|c| token(&c.token)),
        ),
        Op::Activate => Done::Manage(keys.activate(admin, &k.inactive).map(|_| None)),
        Op::Deactivate => Done::Manage(keys.deactivate(admin, &k.active).map(|_| None)),
        Op::Revoke => Done::Manage(keys.revoke(admin, &k.active).map(|_| None)),
        Op::Update => {
            let version = f.store().real(&k.active).unwrap().version;
            Done::Manage(
                keys.update(admin, &k.active, version, &KeyUpdate::new().name("renamed"))
                    .map(|_| None),
            )
        }
        Op::Roll => Done::Manage(
            keys.roll(admin, &k.active, RollOptions::default())
                .map(|r| token(&r.token)),
        ),
        Op::RollSigning => Done::Manage(
            keys.roll(admin, &k.signing, RollOptions::default())
                .map(|r| token(&r.token)),
        ),
        Op::Verify => Done::Verify(
            keys.verify(&k.active_token, &RequestContext::new())
                .map(|v| v.id()),
        ),
        Op::VerifySigned => Done::Verify(f.signed(k)),
    }
}

fn expected_id(k: &Keys, op: Op) -> KeyId {
    match op {
        Op::VerifySigned => k.signing,
        _ => k.active,
    }
}

fn is_backend(e: &StoreError) -> bool {
    e.kind() == StoreErrorKind::Backend
}

/// Every operation, with the n-th store call failing (before it commits),
/// for every n the operation reaches.
#[test]
fn a_failure_at_each_store_call_fails_closed_and_changes_nothing() {
    let mut covered = Vec::new();
    for op in OPS {
        // Baseline: how many calls, and success.
        let (f, k) = fx();
        let base = f.store().calls();
        let done = run(&f, &k, op);
        assert!(
            matches!(&done, Done::Manage(Ok(_)) | Done::Verify(Ok(_))),
            "{op:?} baseline failed: {done:?}"
        );
        let calls = f.store().calls() - base;
        assert!(calls >= 1, "{op:?} made no store call");
        for n in 0..calls {
            let (f, k) = fx();
            let before = f.snapshot();
            let base = f.store().calls();
            f.store().fail_at.store(base + n, SeqCst);
            let done = run(&f, &k, op);
            let failed = f.store().call(base + n);
            let why = format!("{op:?} with call #{n} ({failed:?}) failing");
            covered.push(why.clone());
            let after = f.snapshot();
            match done {
                Done::Manage(result) => {
                    match &result {
                        Err(Error::Store(e)) if is_backend(e) => {}
                        other => panic!("{why}: expected Error::Store(Backend), got {other:?}"),
                    }
                    // No token for an uncommitted create or roll; nothing
                    // half-applied; no event for what did not happen.
                    assert_eq!(after, before, "{why}: the store changed");
                    assert_eq!(f.events(), vec![], "{why}: events emitted");
                }
                Done::Verify(result) => match failed {
                    Call::Get => {
                        let e = result.expect_err(&why);
                        assert!(
                            matches!(&e, VerifyError::Store(s) if is_backend(s)),
                            "{why}: expected VerifyError::Store, got {e:?}"
                        );
                        assert_eq!(e.rejection(), None, "{why}: a failure is not a rejection");
                        assert_eq!(e.http_status(), 500, "{why}");
                        assert_eq!(after, before, "{why}: the store changed");
                    }
                    Call::Touch => {
                        // A failed last-used write never changes the outcome.
                        assert_eq!(
                            result.as_ref().ok(),
                            Some(&expected_id(&k, op)),
                            "{why}: {result:?}"
                        );
                        assert_eq!(
                            after, before,
                            "{why}: last_used_at written despite the failure"
                        );
                    }
                    other => panic!("{why}: verification made an unexpected {other:?} call"),
                },
            }
        }
    }
    // Ten operations: creates make one call (insert), the others two.
    assert_eq!(covered.len(), 18, "{covered:#?}");
}

/// A write that commits and then reports a failure (an ambiguous commit).
/// The manager cannot know it committed: it returns the error and hands out
/// no token. The store is consistent (a roll is whole), and the way back is
/// documented behaviour: retry a status change; roll the successor of a
/// roll whose token was lost.
#[test]
fn an_ambiguous_commit_returns_an_error_and_leaves_a_consistent_store() {
    for op in OPS {
        let (f, k) = fx();
        let base = f.store().calls();
        let _ = run(&f, &k, op);
        let calls = f.store().calls() - base;
        for n in 0..calls {
            let (f, k) = fx();
            let base = f.store().calls();
            let before = f.snapshot();
            f.store().after_commit.store(true, SeqCst);
            f.store().fail_at.store(base + n, SeqCst);
            let done = run(&f, &k, op);
            let failed = f.store().call(base + n);
            if !failed.is_write() {
                continue;
            }
            f.store().fail_at.store(NEVER, SeqCst);
            let why = format!("{op:?}, {failed:?} commits then fails");
            let after = f.snapshot();
            match (op, done) {
                (Op::Verify | Op::VerifySigned, Done::Verify(result)) => {
                    assert_eq!(result.ok(), Some(expected_id(&k, op)), "{why}");
                }
                (_, Done::Manage(Ok(t))) => {
                    panic!("{why}: reported success (token: {})", t.is_some())
                }
                (_, Done::Manage(Err(Error::Store(e)))) if is_backend(&e) => {
                    assert_eq!(
                        f.events(),
                        vec![],
                        "{why}: events for an unconfirmed change"
                    );
                    match op {
                        Op::Create | Op::CreateSigning => {
                            assert_eq!(after.len(), before.len() + 1, "{why}");
                        }
                        Op::Roll | Op::RollSigning => {
                            let id = if matches!(op, Op::Roll) {
                                k.active
                            } else {
                                k.signing
                            };
                            let pred = f.store().real(&id).unwrap();
                            let succ = pred.successor.expect("the roll committed");
                            let succ = f.store().real(&succ).expect("a roll is whole");
                            assert_eq!(succ.predecessor, Some(id), "{why}");
                            // The old key keeps working in its grace window …
                            if matches!(op, Op::Roll) {
                                assert!(
                                    f.keys
                                        .verify(&k.active_token, &RequestContext::new())
                                        .unwrap()
                                        .in_grace()
                                );
                            }
                            // … a second roll of it is refused …
                            assert!(matches!(
                                f.keys.roll(&f.admin, &id, RollOptions::default()),
                                Err(Error::InvalidState { .. })
                            ));
                            // … and rolling the successor recovers a usable token.
                            let again = f
                                .keys
                                .roll(&f.admin, &succ.id, RollOptions::default())
                                .unwrap();
                            if matches!(op, Op::Roll) {
                                f.keys
                                    .verify(again.token.expose_secret(), &RequestContext::new())
                                    .unwrap();
                            }
                        }
                        Op::Activate | Op::Deactivate | Op::Revoke | Op::Update => {
                            assert_ne!(after, before, "{why}: the write committed");
                            // A retry is idempotent (status) or a visible conflict (update).
                            let retry = run(&f, &k, op);
                            assert!(
                                matches!(retry, Done::Manage(Ok(None))),
                                "{why}: retry {retry:?}"
                            );
                        }
                        Op::Verify | Op::VerifySigned => unreachable!(),
                    }
                }
                (_, other) => panic!("{why}: {other:?}"),
            }
        }
    }
}

/// Failures the store reports with a kind: duplicates and the one-active
/// rule map to management errors; nothing is handed out.
#[test]
fn store_error_kinds_map_to_management_errors_without_tokens() {
    struct Refusing(StoreErrorKind);
    impl KeyStore for Refusing {
        fn insert(&self, _: &KeyRecord, _: WriteCondition) -> Result<(), StoreError> {
            Err(StoreError::new(self.0))
        }
        fn get(&self, _: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
            Ok(None)
        }
        fn list_by_owner(&self, _: &OwnerId) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
            Ok(Vec::new())
        }
        fn update(&self, _: &KeyRecord, _: u64, _: WriteCondition) -> Result<(), StoreError> {
            Err(StoreError::new(self.0))
        }
        fn apply_roll(&self, _: &RollPlan) -> Result<(), StoreError> {
            Err(StoreError::new(self.0))
        }
        fn touch(&self, _: &KeyId, _: api_keys::Usage) -> Result<(), StoreError> {
            Err(StoreError::new(self.0))
        }
    }
    let owner = OwnerId::new("acct_kinds").unwrap();
    for (kind, check) in [
        (
            StoreErrorKind::Duplicate,
            (|e: &Error| matches!(e, Error::Store(s) if s.kind() == StoreErrorKind::Duplicate))
                as fn(&Error) -> bool,
        ),
        (StoreErrorKind::ActiveKeyExists, |e: &Error| {
            matches!(e, Error::AnotherKeyActive)
        }),
        (StoreErrorKind::Conflict, |e: &Error| {
            matches!(e, Error::Conflict(_))
        }),
        (
            StoreErrorKind::Backend,
            |e: &Error| matches!(e, Error::Store(s) if s.kind() == StoreErrorKind::Backend),
        ),
    ] {
        let keys = KeyManager::new(Refusing(kind));
        let e = keys
            .create(&Actor::system(), NewKey::secret(owner.clone(), "k"))
            .err()
            .unwrap_or_else(|| panic!("{kind:?}: a token was handed out"));
        assert!(check(&e), "{kind:?}: {e:?}");
    }
    // A store that has no record answers "unknown key", never an accept.
    let keys = KeyManager::new(Refusing(StoreErrorKind::Backend));
    let token = KeyFormat::default()
        .generate(KeyKind::Secret, Environment::Live)
        .unwrap();
    let got = keys.verify(token.token.expose_secret(), &RequestContext::new());
    assert_eq!(
        got.err().and_then(|e| e.rejection()),
        Some(Rejection::UnknownKey)
    );
}

// ---------------------------------------------------------------------------
// Stale reads
// ---------------------------------------------------------------------------

/// A stale `get` (an older version of the record) never turns into a lost
/// update or an uncommitted roll: every write is a compare-and-swap on the
/// version the stale read carried, so it fails as a conflict.
#[test]
fn stale_reads_become_conflicts_never_lost_updates() {
    for op in [Op::Revoke, Op::Deactivate, Op::Update, Op::Roll] {
        let (f, k) = fx();
        // Version 2 of the active key, then reads go stale (version 1).
        let v2 = f
            .keys
            .update(&f.admin, &k.active, 1, &KeyUpdate::new().name("v2"))
            .unwrap();
        f.events.lock().unwrap().clear();
        let before = f.snapshot();
        f.store().set_get_mode(GetMode::Stale);
        let done = match op {
            // The caller passes the version it knows (the real one).
            Op::Update => Done::Manage(
                f.keys
                    .update(
                        &f.admin,
                        &k.active,
                        v2.version,
                        &KeyUpdate::new().name("v3"),
                    )
                    .map(|_| None),
            ),
            _ => run(&f, &k, op),
        };
        let why = format!("{op:?} on a stale read");
        assert!(
            matches!(&done, Done::Manage(Err(Error::Conflict(id))) if *id == k.active),
            "{why}: {done:?}"
        );
        assert_eq!(f.snapshot(), before, "{why}: the store changed");
        assert_eq!(f.events(), vec![], "{why}");
        // The same operation with a caller that is stale too.
        if matches!(op, Op::Update) {
            let got = f
                .keys
                .update(&f.admin, &k.active, 1, &KeyUpdate::new().name("v3"));
            assert!(matches!(got, Err(Error::Conflict(_))), "{why}: {got:?}");
            assert_eq!(f.snapshot(), before, "{why}: lost update");
        }
    }
}

/// A stale read of an already rolled key cannot fork it into two
/// successors.
#[test]
fn stale_read_cannot_fork_a_roll() {
    let (f, k) = fx();
    let first = f
        .keys
        .roll(&f.admin, &k.active, RollOptions::default())
        .unwrap();
    f.store().set_get_mode(GetMode::Stale);
    let again = f.keys.roll(&f.admin, &k.active, RollOptions::default());
    assert!(matches!(again, Err(Error::Conflict(_))), "{again:?}");
    f.store().set_get_mode(GetMode::Honest);
    let successors: Vec<_> = f
        .snapshot()
        .into_iter()
        .filter(|r| r.predecessor == Some(k.active))
        .map(|r| r.id)
        .collect();
    assert_eq!(successors, vec![first.successor.id]);
}

/// `deactivate` (and `activate`) answer "already in that state" without a
/// write, so a stale read that shows the target state makes the manager
/// report success while the stored key is unchanged. With a store serving
/// reads from a lagging replica, deactivating a re-activated key is a no-op
/// that says it worked.
#[test]
fn stale_read_makes_deactivate_report_success_without_effect() {
    let (f, k) = fx();
    // inactive (v1) → active (v2); reads go stale and show v1, inactive.
    f.keys.activate(&f.admin, &k.inactive).unwrap();
    f.store().set_get_mode(GetMode::Stale);
    let got = f.keys.deactivate(&f.admin, &k.inactive);
    let stored = f.store().real(&k.inactive).unwrap();
    assert!(
        got.is_err() || stored.status == KeyStatus::Inactive,
        "deactivate returned {:?} but the stored key is {:?}",
        got.map(|r| r.status),
        stored.status
    );
}

// ---------------------------------------------------------------------------
// Mismatched records
// ---------------------------------------------------------------------------

fn flip_env(r: &KeyRecord) -> KeyRecord {
    let mut r = r.clone();
    r.environment = match r.environment {
        Environment::Live => Environment::Test,
        Environment::Test => Environment::Live,
    };
    r
}

fn flip_kind(r: &KeyRecord) -> KeyRecord {
    let mut r = r.clone();
    r.kind = match r.kind {
        KeyKind::Secret => KeyKind::Publishable,
        KeyKind::Publishable => KeyKind::Secret,
    };
    r
}

/// Bearer verification refuses any record that is not the presented key's:
/// another key's record, its id, environment, kind or hash altered — as an
/// unknown key, or, for an unknown pepper version, as a service failure.
/// Never an accept, and nothing is written for the refused request.
#[test]
fn bearer_verification_refuses_mismatched_records() {
    let (f, k) = fx();
    let other_record = f.store().real(&k.other).unwrap();
    let other_hash = other_record.secret_hash;
    let active_id = k.active;
    let other_id = k.other;
    let cases: Vec<(&str, GetMode, Option<Rejection>)> = vec![
        (
            "another key's record",
            GetMode::Other(k.other),
            Some(Rejection::UnknownKey),
        ),
        (
            "environment flipped",
            GetMode::Tamper(Box::new(flip_env)),
            Some(Rejection::UnknownKey),
        ),
        (
            "kind flipped",
            GetMode::Tamper(Box::new(flip_kind)),
            Some(Rejection::UnknownKey),
        ),
        (
            "id replaced",
            GetMode::Tamper(Box::new(move |r| KeyRecord {
                id: other_id,
                ..r.clone()
            })),
            Some(Rejection::UnknownKey),
        ),
        (
            "another key's record under this id",
            GetMode::Tamper(Box::new({
                let other_record = (*other_record).clone();
                move |_| KeyRecord {
                    id: active_id,
                    ..other_record.clone()
                }
            })),
            Some(Rejection::UnknownKey),
        ),
        (
            "hash replaced by another key's",
            GetMode::Tamper(Box::new(move |r| KeyRecord {
                secret_hash: other_hash,
                ..r.clone()
            })),
            Some(Rejection::UnknownKey),
        ),
        (
            "hash zeroed",
            GetMode::Tamper(Box::new(|r| KeyRecord {
                secret_hash: Some(SecretHash {
                    pepper_version: None,
                    digest: [0; 32],
                }),
                ..r.clone()
            })),
            Some(Rejection::UnknownKey),
        ),
        (
            "hash under an unknown pepper version",
            GetMode::Tamper(Box::new(|r| KeyRecord {
                secret_hash: r.secret_hash.map(|h| SecretHash {
                    pepper_version: Some(9),
                    ..h
                }),
                ..r.clone()
            })),
            None,
        ),
    ];
    for (why, mode, want) in cases {
        let before = f.snapshot();
        f.store().set_get_mode(mode);
        let got = f.keys.verify(&k.active_token, &RequestContext::new());
        f.store().set_get_mode(GetMode::Honest);
        match (want, &got) {
            (Some(r), Err(VerifyError::Rejected(g))) if r == *g => {}
            (None, Err(VerifyError::Failed(Error::UnknownKeyVersion(9)))) => {
                assert_eq!(got.as_ref().unwrap_err().http_status(), 500, "{why}");
            }
            _ => panic!("{why}: expected {want:?}, got {got:?}"),
        }
        assert_eq!(f.snapshot(), before, "{why}: something was written");
    }
    // The other key's own token still works.
    f.keys
        .verify(&k.other_token, &RequestContext::new())
        .unwrap();
}

/// Signed verification refuses another key's record (by id) and a record
/// whose sealed secret belongs to another key (the seal binds the key id).
#[test]
fn signed_verification_refuses_records_of_other_keys() {
    let (f, k) = fx();
    let second = f
        .keys
        .create(
            &f.admin,
            NewKey::secret(f.owner.clone(), "second signing").signing(),
        )
        .unwrap()
        .record;
    let signing_id = k.signing;
    let cases: Vec<(&str, GetMode)> = vec![
        ("another signing key's record", GetMode::Other(second.id)),
        ("another bearer key's record", GetMode::Other(k.other)),
        (
            "id replaced",
            GetMode::Tamper(Box::new({
                let id = second.id;
                move |r| KeyRecord { id, ..r.clone() }
            })),
        ),
        (
            "another key's sealed secret under this id",
            GetMode::Tamper(Box::new({
                let sealed = second.sealed_secret.clone();
                move |r| KeyRecord {
                    sealed_secret: sealed.clone(),
                    ..r.clone()
                }
            })),
        ),
        (
            "another signing key's record under this id",
            GetMode::Tamper(Box::new({
                let second = second.clone();
                move |_| KeyRecord {
                    id: signing_id,
                    ..second.clone()
                }
            })),
        ),
        (
            "sealed secret removed",
            GetMode::Tamper(Box::new(|r| KeyRecord {
                sealed_secret: None,
                ..r.clone()
            })),
        ),
    ];
    for (why, mode) in cases {
        f.store().set_get_mode(mode);
        let got = f.signed(&k);
        f.store().set_get_mode(GetMode::Honest);
        let e = got.expect_err(why);
        assert!(
            matches!(
                e,
                VerifyError::Rejected(Rejection::UnknownKey | Rejection::NotASigningKey)
                    | VerifyError::Failed(Error::Sealing(_))
            ),
            "{why}: {e:?}"
        );
    }
    // The genuine request still verifies afterwards (no poisoned cache).
    assert_eq!(f.signed(&k).unwrap(), k.signing);
}

/// The environment and kind of a signing key are written in its secret (the
/// token text the client signs with), but signed verification never checks
/// the stored record's environment, kind or hash against it: a record whose
/// environment was flipped verifies and runs the request in the other mode.
/// Bearer verification refuses the same records (hash binds environment and
/// kind).
#[test]
fn signed_verification_refuses_records_with_another_environment_kind_or_hash() {
    let (f, k) = fx();
    let other_hash = f.store().real(&k.other).unwrap().secret_hash;
    let cases: Vec<(&str, GetMode)> = vec![
        ("environment flipped", GetMode::Tamper(Box::new(flip_env))),
        ("kind flipped", GetMode::Tamper(Box::new(flip_kind))),
        (
            "hash replaced",
            GetMode::Tamper(Box::new(move |r| KeyRecord {
                secret_hash: other_hash,
                ..r.clone()
            })),
        ),
    ];
    let headers = RequestSigner::for_token(&k.signing_token)
        .unwrap()
        .sign(BODY);
    let request = SignedRequest::new(headers.key.as_bytes(), headers.signature.as_bytes(), BODY);
    let mut accepted = Vec::new();
    for (why, mode) in cases {
        f.store().set_get_mode(mode);
        let got = f.keys.verify_signed(&request, &RequestContext::new());
        f.store().set_get_mode(GetMode::Honest);
        if let Ok(v) = got {
            accepted.push(format!(
                "{why}: accepted as {} {}",
                v.environment(),
                v.kind()
            ));
        }
    }
    assert!(accepted.is_empty(), "{accepted:#?}");
}

/// Management operations trust the id of the record the store returns: a
/// store answering `get(A)` with B's record makes `revoke(A)` revoke B and
/// report success, and `roll(A)` roll B and hand out B's successor token.
/// Verification checks the id (`decide_bearer`, `verify_signed_in`);
/// management does not (`get_in`).
#[test]
fn management_refuses_a_record_with_another_id() {
    let mut wrong = Vec::new();
    for op in [Op::Revoke, Op::Deactivate, Op::Update, Op::Roll] {
        let (f, k) = fx();
        let before_a = f.store().real(&k.active).unwrap();
        let before_b = f.store().real(&k.other).unwrap();
        f.store().set_get_mode(GetMode::Other(k.other));
        let done = run(&f, &k, op);
        f.store().set_get_mode(GetMode::Honest);
        let a = f.store().real(&k.active).unwrap();
        let b = f.store().real(&k.other).unwrap();
        let succeeded = matches!(done, Done::Manage(Ok(_)));
        if b != before_b || (succeeded && a == before_a) {
            let result = match &done {
                Done::Manage(Ok(Some(_))) => "Ok, a token was handed out".to_owned(),
                other => format!("{other:?}"),
            };
            wrong.push(format!(
                "{op:?}(A): {result}; A changed: {}; B changed: {}",
                a != before_a,
                b != before_b
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// Time is checked on the record the store returned: a key "created in the
/// future" (the clock stepped back) is not yet valid, and a record that says
/// it expired is refused as expired whatever its status.
#[test]
fn time_is_checked_on_the_record_returned() {
    let (f, k) = fx();
    f.clock.set(T0 - Duration::seconds(1));
    let got = f.keys.verify(&k.active_token, &RequestContext::new());
    assert_eq!(
        got.err().and_then(|e| e.rejection()),
        Some(Rejection::NotYetValid)
    );
    f.clock.set(T0);
    f.store()
        .set_get_mode(GetMode::Tamper(Box::new(|r| KeyRecord {
            expires_at: Some(T0),
            ..r.clone()
        })));
    let got = f.keys.verify(&k.active_token, &RequestContext::new());
    assert_eq!(
        got.err().and_then(|e| e.rejection()),
        Some(Rejection::Expired)
    );
}

/// Audit queries over a store whose `scan` or `ranked_by_use` ignores the
/// contract: the manager refuses the answer (`Error::Store`, `Backend`)
/// rather than page forever, skip keys or show revoked or foreign keys.
mod audit_answers {
    use super::*;
    use api_keys::{KeyAudit, KeyFilter, Usage, UseRank};

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Lie {
        None,
        /// Pages in descending id order.
        Reversed,
        /// Starts again from the first key, whatever the cursor.
        IgnoresCursor,
        /// Starts at the cursor's key instead of after it.
        IncludesCursor,
        /// Returns every key, whatever the limit.
        IgnoresLimit,
        /// Rankings include revoked keys.
        KeepsRevoked,
        /// Rankings of one owner include the others' keys.
        IgnoresOwner,
    }

    struct Lying {
        inner: MemoryKeyStore,
        lie: Lie,
    }

    impl KeyStore for Lying {
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
            KeyStore::update(&self.inner, r, v, c)
        }
        fn apply_roll(&self, p: &RollPlan) -> Result<(), StoreError> {
            KeyStore::apply_roll(&self.inner, p)
        }
        fn touch(&self, id: &KeyId, usage: Usage) -> Result<(), StoreError> {
            KeyStore::touch(&self.inner, id, usage)
        }
    }

    impl KeyAudit for Lying {
        fn scan(
            &self,
            filter: KeyFilter,
            after: Option<&KeyId>,
            limit: usize,
        ) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
            let (after, limit) = match self.lie {
                Lie::IgnoresCursor => (None, limit),
                Lie::IgnoresLimit => (after, usize::MAX),
                _ => (after, limit),
            };
            let mut keys = if let (Lie::IncludesCursor, Some(cursor)) = (self.lie, after) {
                let mut all = KeyAudit::scan(&self.inner, filter, None, usize::MAX)?;
                all.retain(|r| r.id >= *cursor);
                all.truncate(limit);
                all
            } else {
                KeyAudit::scan(&self.inner, filter, after, limit)?
            };
            if self.lie == Lie::Reversed {
                keys.reverse();
            }
            Ok(keys)
        }
        fn ranked_by_use(
            &self,
            rank: UseRank,
            owner: Option<&OwnerId>,
            limit: usize,
        ) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
            let all = KeyAudit::scan(&self.inner, KeyFilter::All, None, usize::MAX)?;
            let mut keys: Vec<_> = all
                .into_iter()
                .filter(|r| self.lie == Lie::KeepsRevoked || r.status != KeyStatus::Revoked)
                .filter(|r| self.lie == Lie::IgnoresOwner || owner.is_none_or(|o| *o == r.owner))
                .collect();
            keys.sort_by(|a, b| rank.order(a, b));
            if self.lie == Lie::Reversed {
                keys.reverse();
            }
            if self.lie != Lie::IgnoresLimit {
                keys.truncate(limit);
            }
            Ok(keys)
        }
    }

    /// Five keys of two owners, used 1..=5 times, the last one revoked.
    fn manager(lie: Lie) -> (KeyManager<Lying>, OwnerId) {
        let store = Lying {
            inner: MemoryKeyStore::new(),
            lie,
        };
        let keys = KeyManager::builder(store)
            .clock(Arc::new(ManualClock::new(T0)))
            .build()
            .unwrap();
        let (a, b) = (
            OwnerId::new("acct_a").unwrap(),
            OwnerId::new("acct_b").unwrap(),
        );
        for (n, owner) in [&a, &b, &a, &b, &a].into_iter().enumerate() {
            let created = keys
                .create(&Actor::system(), NewKey::publishable(owner.clone(), "k"))
                .unwrap();
            for _ in 0..=n {
                keys.verify(created.token.expose_secret(), &RequestContext::new())
                    .unwrap();
            }
            if n == 4 {
                keys.revoke(&Actor::system(), &created.record.id).unwrap();
            }
        }
        keys.flush_usage().unwrap();
        (keys, a)
    }

    fn refused<T: core::fmt::Debug>(answer: Result<T, Error>) -> bool {
        matches!(&answer, Err(Error::Store(e)) if e.kind() == StoreErrorKind::Backend)
    }

    /// Every page of `list_all` with pages of `limit`.
    fn pages(keys: &KeyManager<Lying>, limit: usize) -> Result<Vec<Vec<KeyId>>, Error> {
        let (mut pages, mut after) = (Vec::new(), None);
        loop {
            let page = keys.list_all(after, limit)?;
            pages.push(page.keys.iter().map(|r| r.id).collect());
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(pages),
            }
            assert!(pages.len() <= 5, "the scan does not end");
        }
    }

    #[test]
    fn an_honest_store_pages_every_key_once_and_ends() {
        let (keys, owner) = manager(Lie::None);
        for limit in 1..=6 {
            let pages = pages(&keys, limit).unwrap();
            let ids: Vec<KeyId> = pages.iter().flatten().copied().collect();
            let mut sorted = ids.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!((ids.len(), &sorted), (5, &ids), "pages of {limit}");
            assert_eq!(pages.len(), 5usize.div_ceil(limit), "pages of {limit}");
            assert!(pages.iter().all(|p| !p.is_empty() && p.len() <= limit));
        }
        let counts = |r: Vec<Arc<KeyRecord>>| r.iter().map(|k| k.use_count).collect::<Vec<_>>();
        assert_eq!(counts(keys.most_used(None, 10).unwrap()), [4, 3, 2, 1]);
        assert_eq!(counts(keys.least_used(None, 3).unwrap()), [1, 2, 3]);
        assert_eq!(counts(keys.most_used(Some(&owner), 10).unwrap()), [3, 1]);
        assert_eq!(counts(keys.most_used(Some(&owner), 1).unwrap()), [3]);
    }

    #[test]
    fn a_scan_out_of_order_past_the_cursor_or_the_limit_is_refused() {
        for lie in [
            Lie::Reversed,
            Lie::IgnoresCursor,
            Lie::IncludesCursor,
            Lie::IgnoresLimit,
        ] {
            let (keys, _) = manager(lie);
            assert!(refused(pages(&keys, 2)), "{lie:?}");
        }
        // Refused at once, not at a later page that happens to fit.
        for lie in [Lie::Reversed, Lie::IgnoresLimit] {
            let (keys, _) = manager(lie);
            assert!(refused(keys.list_all(None, 2)), "{lie:?}");
        }
    }

    #[test]
    fn a_ranking_out_of_order_with_revoked_or_foreign_keys_or_too_long_is_refused() {
        for (lie, owner_only) in [
            (Lie::Reversed, false),
            (Lie::KeepsRevoked, false),
            (Lie::IgnoresOwner, true),
            (Lie::IgnoresLimit, false),
        ] {
            let (keys, owner) = manager(lie);
            let owner = owner_only.then_some(&owner);
            let limit = if lie == Lie::IgnoresLimit { 2 } else { 10 };
            assert!(refused(keys.most_used(owner, limit)), "{lie:?}");
            assert!(refused(keys.least_used(owner, limit)), "{lie:?}");
        }
    }
}

#[test]
fn the_signed_body_limit_is_the_policys_and_the_builder_shows_its_settings() {
    let policy = |max_body_len| {
        let mut policy = api_keys::Policy::default();
        policy.signatures.max_body_len = max_body_len;
        policy
    };
    for len in [0, 1, 4096, 1 << 20] {
        let keys = KeyManager::builder(MemoryKeyStore::new())
            .policy(policy(len))
            .build()
            .unwrap();
        assert_eq!(keys.max_signed_body_len(), len);
    }
    let builder = KeyManager::builder(MemoryKeyStore::new()).policy(policy(4321));
    let shown = format!("{builder:?}");
    assert!(shown.starts_with("KeyManagerBuilder"), "{shown}");
    assert!(shown.contains("4321"), "{shown}");
    assert!(shown.contains("format"), "{shown}");
}

/// A key the host's store deleted between a call's read and its write: the
/// write's `NotFound` reaches the caller as `Error::NotFound` of that key.
#[test]
fn a_key_gone_before_the_write_is_not_found() {
    struct GoneOnWrite(MemoryKeyStore);
    impl KeyStore for GoneOnWrite {
        fn insert(&self, r: &KeyRecord, c: WriteCondition) -> Result<(), StoreError> {
            KeyStore::insert(&self.0, r, c)
        }
        fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
            KeyStore::get(&self.0, id)
        }
        fn list_by_owner(&self, o: &OwnerId) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
            KeyStore::list_by_owner(&self.0, o)
        }
        fn update(&self, _: &KeyRecord, _: u64, _: WriteCondition) -> Result<(), StoreError> {
            Err(StoreError::new(StoreErrorKind::NotFound))
        }
        fn apply_roll(&self, _: &RollPlan) -> Result<(), StoreError> {
            Err(StoreError::new(StoreErrorKind::NotFound))
        }
        fn touch(&self, id: &KeyId, usage: api_keys::Usage) -> Result<(), StoreError> {
            KeyStore::touch(&self.0, id, usage)
        }
    }
    let keys = KeyManager::new(GoneOnWrite(MemoryKeyStore::new()));
    let owner = OwnerId::new("acct_gone").unwrap();
    let id = keys
        .create(&Actor::system(), NewKey::secret(owner, "k"))
        .unwrap()
        .record
        .id;
    let gone = |e: Result<KeyRecord, Error>| matches!(e, Err(Error::NotFound(k)) if k == id);
    assert!(gone(keys.deactivate(&Actor::system(), &id)));
    assert!(gone(keys.revoke(&Actor::system(), &id)));
    assert!(gone(keys.update(
        &Actor::system(),
        &id,
        1,
        &KeyUpdate::new().name("n")
    )));
    let rolled = keys.roll(&Actor::system(), &id, RollOptions::default());
    assert!(
        matches!(rolled, Err(Error::NotFound(k)) if k == id),
        "{rolled:?}"
    );
}
