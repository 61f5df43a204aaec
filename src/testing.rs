//! Test utilities (feature `test-util`): a controllable clock and the
//! conformance suite every [`KeyStore`] / [`AsyncKeyStore`] implementation
//! should pass.
//!
//! ```
//! use api_keys::{MemoryKeyStore, testing};
//! testing::run_conformance(&MemoryKeyStore::new()).unwrap();
//! ```
//!
//! The suite writes records for owners whose ids start with `conformance-`
//! plus a random suffix, so it can run against a shared database.

pub use crate::clock::ManualClock;
pub use crate::failing_rng::{FailingRng, RngDown};

use crate::engine::{Engine, NewKey, RollOptions, Transition};
use crate::error::{StoreError, StoreErrorKind};
use crate::record::{KeyRecord, KeyStatus, OwnerId};
use crate::store::{AsyncKeyStore, KeyStore, Ready, RollPlan, WriteCondition, complete_now};
use core::fmt;
use time::{Duration, UtcDateTime};

/// A failed conformance check: which property and what was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConformanceError {
    /// The property that does not hold.
    pub check: &'static str,
    /// What the store did instead.
    pub detail: String,
}

impl fmt::Display for ConformanceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "store conformance: {}: {}", self.check, self.detail)
    }
}

impl std::error::Error for ConformanceError {}

type Outcome = Result<(), ConformanceError>;

fn fail(check: &'static str, detail: impl Into<String>) -> ConformanceError {
    ConformanceError {
        check,
        detail: detail.into(),
    }
}

fn ensure(cond: bool, check: &'static str, detail: impl FnOnce() -> String) -> Outcome {
    if cond {
        Ok(())
    } else {
        Err(fail(check, detail()))
    }
}

fn expect_kind(got: Result<(), StoreError>, want: StoreErrorKind, check: &'static str) -> Outcome {
    match got {
        Err(e) if e.kind() == want => Ok(()),
        other => Err(fail(check, format!("expected {want:?}, got {other:?}"))),
    }
}

fn ok<T>(r: Result<T, StoreError>, check: &'static str) -> Result<T, ConformanceError> {
    r.map_err(|e| {
        fail(
            check,
            format!("unexpected store error: {e} ({:?})", e.kind()),
        )
    })
}

/// A fixed instant the suite works at.
fn t0() -> UtcDateTime {
    UtcDateTime::UNIX_EPOCH
        .checked_add(Duration::days(20_000))
        .unwrap_or(UtcDateTime::UNIX_EPOCH)
}

struct Fixture {
    engine: Engine,
    owner: OwnerId,
}

impl Fixture {
    fn new(tag: &str) -> Result<Self, ConformanceError> {
        let mut suffix = [0u8; 8];
        rand::TryRng::try_fill_bytes(&mut rand::rngs::SysRng, &mut suffix)
            .map_err(|_| fail("setup", "no randomness"))?;
        let hex: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
        let owner = OwnerId::new(format!("conformance-{tag}-{hex}"))
            .map_err(|e| fail("setup", e.to_string()))?;
        Ok(Self {
            engine: Engine::defaults(),
            owner,
        })
    }

    fn record(&self, active: bool) -> Result<KeyRecord, ConformanceError> {
        let mut spec = NewKey::secret(self.owner.clone(), "conformance");
        if !active {
            spec = spec.inactive();
        }
        self.engine
            .plan_create(&spec, t0(), &mut rand::rngs::SysRng)
            .map(|(r, _token)| r)
            .map_err(|e| fail("setup", e.to_string()))
    }

    fn roll(&self, r: &KeyRecord) -> Result<RollPlan, ConformanceError> {
        self.engine
            .plan_roll(r, RollOptions::default(), t0(), &mut rand::rngs::SysRng)
            .map(|(p, _token)| p)
            .map_err(|e| fail("setup", e.to_string()))
    }

    fn transition(&self, r: &KeyRecord, t: Transition) -> Result<KeyRecord, ConformanceError> {
        self.engine
            .plan_transition(r, t, t0())
            .map_err(|e| fail("setup", e.to_string()))?
            .ok_or_else(|| fail("setup", "no-op transition"))
    }
}

async fn fetch<S: AsyncKeyStore + ?Sized>(
    store: &S,
    r: &KeyRecord,
    check: &'static str,
) -> Result<KeyRecord, ConformanceError> {
    ok(store.get(&r.id).await, check)?
        .map(|a| (*a).clone())
        .ok_or_else(|| fail(check, "record missing"))
}

/// Runs every check against an async store. Await it in your runtime.
///
/// # Errors
///
/// The first [`ConformanceError`]: the property that does not hold.
pub async fn run_conformance_async<S: AsyncKeyStore + ?Sized>(store: &S) -> Outcome {
    insert_get_duplicate(store).await?;
    compare_and_swap(store).await?;
    revoke_is_absorbing(store).await?;
    atomic_roll(store).await?;
    racing_plans(store).await?;
    list_by_owner(store).await?;
    touch_forward_only(store).await?;
    one_active_key(store).await?;
    Ok(())
}

async fn insert_get_duplicate<S: AsyncKeyStore + ?Sized>(store: &S) -> Outcome {
    const C: &str = "insert/get/unique ids";
    let f = Fixture::new("insert")?;
    let r = f.record(true)?;
    ensure(ok(store.get(&r.id).await, C)?.is_none(), C, || {
        "get of an absent id must be Ok(None)".into()
    })?;
    ok(store.insert(&r, WriteCondition::Always).await, C)?;
    let back = fetch(store, &r, C).await?;
    ensure(back == r, C, || {
        format!("round trip changed the record: {back:?}")
    })?;
    let mut twin = f.record(true)?;
    twin.id = r.id;
    expect_kind(
        store.insert(&twin, WriteCondition::Always).await,
        StoreErrorKind::Duplicate,
        C,
    )?;
    let after = fetch(store, &r, C).await?;
    ensure(after == r, C, || {
        "a refused duplicate changed the record".into()
    })
}

async fn compare_and_swap<S: AsyncKeyStore + ?Sized>(store: &S) -> Outcome {
    const C: &str = "compare-and-swap";
    let f = Fixture::new("cas")?;
    let r = f.record(true)?;
    ok(store.insert(&r, WriteCondition::Always).await, C)?;
    let mut v2 = r.clone();
    v2.name = "renamed".into();
    v2.version = 2;
    ok(store.update(&v2, 1, WriteCondition::Always).await, C)?;
    ensure(fetch(store, &r, C).await?.name == "renamed", C, || {
        "update not visible to the next get".into()
    })?;
    let mut stale = r.clone();
    stale.name = "lost update".into();
    stale.version = 2;
    expect_kind(
        store.update(&stale, 1, WriteCondition::Always).await,
        StoreErrorKind::Conflict,
        C,
    )?;
    ensure(fetch(store, &r, C).await?.name == "renamed", C, || {
        "a stale update overwrote the record".into()
    })?;
    let ghost = f.record(true)?;
    expect_kind(
        store.update(&ghost, 1, WriteCondition::Always).await,
        StoreErrorKind::NotFound,
        C,
    )
}

async fn revoke_is_absorbing<S: AsyncKeyStore + ?Sized>(store: &S) -> Outcome {
    const C: &str = "revoke is absorbing";
    let f = Fixture::new("revoke")?;
    let r = f.record(true)?;
    ok(store.insert(&r, WriteCondition::Always).await, C)?;
    let revoked = f.transition(&r, Transition::Revoke)?;
    ok(store.update(&revoked, 1, WriteCondition::Always).await, C)?;
    // Even a write carrying the current version must not change it.
    let mut back = revoked.clone();
    back.status = KeyStatus::Active;
    back.version = 3;
    expect_kind(
        store.update(&back, 2, WriteCondition::Always).await,
        StoreErrorKind::Conflict,
        C,
    )?;
    let mut plan = f.roll(&r)?;
    plan.expected_version = 2;
    plan.predecessor.version = 3;
    expect_kind(store.apply_roll(&plan).await, StoreErrorKind::Conflict, C)?;
    ensure(
        ok(store.get(&plan.successor.id).await, C)?.is_none(),
        C,
        || "a refused roll of a revoked key left its successor behind".into(),
    )?;
    ensure(
        fetch(store, &r, C).await?.status == KeyStatus::Revoked,
        C,
        || "revoked key came back".into(),
    )
}

async fn atomic_roll<S: AsyncKeyStore + ?Sized>(store: &S) -> Outcome {
    const C: &str = "atomic roll";
    let f = Fixture::new("roll")?;
    let r = f.record(true)?;
    ok(store.insert(&r, WriteCondition::Always).await, C)?;
    // Duplicate successor id: nothing changes.
    let other = f.record(true)?;
    ok(store.insert(&other, WriteCondition::Always).await, C)?;
    let mut clash = f.roll(&r)?;
    clash.successor.id = other.id;
    expect_kind(store.apply_roll(&clash).await, StoreErrorKind::Duplicate, C)?;
    ensure(fetch(store, &r, C).await? == r, C, || {
        "a refused roll changed the predecessor".into()
    })?;
    // Stale version: nothing changes.
    let mut stale = f.roll(&r)?;
    stale.expected_version = 7;
    expect_kind(store.apply_roll(&stale).await, StoreErrorKind::Conflict, C)?;
    ensure(
        ok(store.get(&stale.successor.id).await, C)?.is_none(),
        C,
        || "a refused roll inserted its successor".into(),
    )?;
    // A good roll: both sides visible.
    let plan = f.roll(&r)?;
    ok(store.apply_roll(&plan).await, C)?;
    let p = fetch(store, &r, C).await?;
    let s = fetch(store, &plan.successor, C).await?;
    ensure(
        p.successor == Some(s.id) && p.grace_ends_at.is_some() && p.version == 2,
        C,
        || format!("predecessor not cut: {p:?}"),
    )?;
    ensure(s.predecessor == Some(r.id), C, || {
        "successor lost its link".into()
    })
}

async fn racing_plans<S: AsyncKeyStore + ?Sized>(store: &S) -> Outcome {
    const C: &str = "racing changes";
    let f = Fixture::new("race")?;
    // Two rolls planned from the same version: exactly one applies.
    let r = f.record(true)?;
    ok(store.insert(&r, WriteCondition::Always).await, C)?;
    let (a, b) = (f.roll(&r)?, f.roll(&r)?);
    let ra = store.apply_roll(&a).await;
    let rb = store.apply_roll(&b).await;
    ensure(ra.is_ok() != rb.is_ok(), C, || {
        format!("two rolls of one version: {ra:?} / {rb:?}")
    })?;
    ensure(
        ok(store.get(&b.successor.id).await, C)?.is_none(),
        C,
        || "the losing roll's successor exists".into(),
    )?;
    // Revoke first, then a roll planned before it: the roll must fail and
    // no live successor of the revoked key may exist.
    let r = f.record(true)?;
    ok(store.insert(&r, WriteCondition::Always).await, C)?;
    let plan = f.roll(&r)?;
    let revoked = f.transition(&r, Transition::Revoke)?;
    ok(store.update(&revoked, 1, WriteCondition::Always).await, C)?;
    expect_kind(store.apply_roll(&plan).await, StoreErrorKind::Conflict, C)?;
    ensure(
        ok(store.get(&plan.successor.id).await, C)?.is_none(),
        C,
        || "a roll planned before a revoke resurrected the key".into(),
    )?;
    // Roll first, then a revoke planned before it: the revoke must fail
    // (the manager re-reads and revokes the rolled predecessor only).
    let r = f.record(true)?;
    ok(store.insert(&r, WriteCondition::Always).await, C)?;
    let revoked = f.transition(&r, Transition::Revoke)?;
    let plan = f.roll(&r)?;
    ok(store.apply_roll(&plan).await, C)?;
    expect_kind(
        store.update(&revoked, 1, WriteCondition::Always).await,
        StoreErrorKind::Conflict,
        C,
    )
}

async fn list_by_owner<S: AsyncKeyStore + ?Sized>(store: &S) -> Outcome {
    const C: &str = "list by owner";
    let f = Fixture::new("list")?;
    let g = Fixture::new("list-other")?;
    let a = f.record(true)?;
    let b = f.record(false)?;
    let x = g.record(true)?;
    for r in [&a, &b, &x] {
        ok(store.insert(r, WriteCondition::Always).await, C)?;
    }
    let plan = f.roll(&a)?;
    ok(store.apply_roll(&plan).await, C)?;
    let mut ids: Vec<_> = ok(store.list_by_owner(&f.owner).await, C)?
        .iter()
        .map(|r| r.id)
        .collect();
    ids.sort();
    let mut want = vec![a.id, b.id, plan.successor.id];
    want.sort();
    ensure(ids == want, C, || format!("got {ids:?}, want {want:?}"))
}

async fn touch_forward_only<S: AsyncKeyStore + ?Sized>(store: &S) -> Outcome {
    const C: &str = "touch moves forward only";
    let f = Fixture::new("touch")?;
    let r = f.record(true)?;
    ok(store.insert(&r, WriteCondition::Always).await, C)?;
    let later = t0().checked_add(Duration::hours(1)).unwrap_or(t0());
    ok(store.touch(&r.id, later).await, C)?;
    ok(store.touch(&r.id, t0()).await, C)?;
    let back = fetch(store, &r, C).await?;
    ensure(back.last_used_at == Some(later), C, || {
        format!("last_used_at = {:?}", back.last_used_at)
    })?;
    ensure(back.version == r.version, C, || {
        "touch must not change the version".into()
    })?;
    // A CAS update carrying an older last_used_at keeps the later one.
    let mut v2 = r.clone();
    v2.version = 2;
    ok(store.update(&v2, 1, WriteCondition::Always).await, C)?;
    ensure(
        fetch(store, &r, C).await?.last_used_at == Some(later),
        C,
        || "an update moved last_used_at backwards".into(),
    )?;
    let ghost = f.record(true)?;
    expect_kind(
        store.touch(&ghost.id, t0()).await,
        StoreErrorKind::NotFound,
        C,
    )
}

async fn one_active_key<S: AsyncKeyStore + ?Sized>(store: &S) -> Outcome {
    const C: &str = "one-active-key condition";
    let f = Fixture::new("sole")?;
    let cond = WriteCondition::NoOtherUsableKey { now: t0() };
    let a = f.record(true)?;
    ok(store.insert(&a, cond).await, C)?;
    let b = f.record(true)?;
    expect_kind(
        store.insert(&b, cond).await,
        StoreErrorKind::ActiveKeyExists,
        C,
    )?;
    ensure(ok(store.get(&b.id).await, C)?.is_none(), C, || {
        "a refused insert was stored".into()
    })?;
    let c = f.record(false)?;
    ok(store.insert(&c, WriteCondition::Always).await, C)?;
    let activated = f.transition(&c, Transition::Activate)?;
    expect_kind(
        store.update(&activated, 1, cond).await,
        StoreErrorKind::ActiveKeyExists,
        C,
    )?;
    // Once `a` is deactivated, `c` may be activated.
    let off = f.transition(&a, Transition::Deactivate)?;
    ok(store.update(&off, 1, WriteCondition::Always).await, C)?;
    ok(store.update(&activated, 1, cond).await, C)?;
    // An expired key does not count.
    let later = t0().checked_add(Duration::days(1)).unwrap_or(t0());
    let g = Fixture::new("sole-expired")?;
    let mut old = g.record(true)?;
    old.expires_at = Some(later);
    ok(store.insert(&old, WriteCondition::Always).await, C)?;
    let fresh = g.record(true)?;
    let after = WriteCondition::NoOtherUsableKey {
        now: later.checked_add(Duration::seconds(1)).unwrap_or(later),
    };
    ok(store.insert(&fresh, after).await, C)
}

/// Runs every check against a synchronous store, plus a threaded race:
/// many threads roll the same key at once and exactly one wins.
///
/// # Errors
///
/// The first [`ConformanceError`].
pub fn run_conformance<S: KeyStore + ?Sized>(store: &S) -> Outcome {
    complete_now(run_conformance_async(&Ready(store)))
        .unwrap_or_else(|| Err(fail("sync store", "a KeyStore returned a pending future")))?;
    threaded_rolls(store)
}

fn threaded_rolls<S: KeyStore + ?Sized>(store: &S) -> Outcome {
    const C: &str = "concurrent rolls";
    let f = Fixture::new("threads")?;
    for _round in 0..8 {
        let r = f.record(true)?;
        ok(store.insert(&r, WriteCondition::Always), C)?;
        let plans = (0..4).map(|_| f.roll(&r)).collect::<Result<Vec<_>, _>>()?;
        let barrier = std::sync::Barrier::new(plans.len());
        let results: Vec<bool> = std::thread::scope(|s| {
            let handles: Vec<_> = plans
                .iter()
                .map(|p| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        store.apply_roll(p).is_ok()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(false))
                .collect()
        });
        let wins = results.iter().filter(|w| **w).count();
        ensure(wins == 1, C, || format!("{wins} of 4 concurrent rolls won"))?;
        let live = plans
            .iter()
            .filter(|p| matches!(store.get(&p.successor.id), Ok(Some(_))))
            .count();
        ensure(live == 1, C, || format!("{live} successors exist"))?;
    }
    Ok(())
}
