//! Test utilities (feature `test-util`): a controllable clock and the
//! conformance suite every [`KeyStore`] / [`AsyncKeyStore`] implementation
//! should pass.
//!
//! ```
//! use api_keys::{MemoryKeyStore, testing};
//!
//! fn main() -> Result<(), testing::ConformanceError> {
//!     testing::run_conformance(&MemoryKeyStore::new())?;
//!     Ok(())
//! }
//! ```
//!
//! The suite writes records for owners whose ids start with `conformance-`
//! plus a random suffix, so it can run against a shared database.
//!
//! # What it checks
//!
//! First, that a store keeps **every field** of a record: fully populated
//! records (a signing key with its sealed secret, a peppered hash, scopes,
//! domain and IP lists, note, description, roll links, every instant set,
//! with sub-second parts) go through insert, get, list, update, roll, revoke
//! and touch, and each read is compared field by field with what was
//! written. A store that maps records to columns and forgets one fails with
//! [`ConformanceError::field`] naming it: a dropped allow-list would
//! silently widen what a key may do. Instants must round-trip with at least
//! **microsecond** precision (the suite uses whole microseconds, so a store
//! may drop nanoseconds, as PostgreSQL does, but not milliseconds).
//!
//! Then the operations' contract: unique ids, compare-and-swap, absorbing
//! revoke, the atomic roll, racing plans, listing by owner, `touch` moving
//! forward only, the one-active-key condition, and (sync stores) a threaded
//! race of rolls.
//!
//! The fixtures are public for stores' own tests: [`populated_record`]
//! builds a record with every field set, and [`record_differences`] names
//! the fields in which two records differ.

pub use crate::clock::ManualClock;
pub use crate::clock::ManualMonotonicClock;
pub use crate::failing_rng::{FailingRng, RngDown};

use crate::engine::{Engine, NewKey, RollOptions, Transition};
use crate::environment::Environment;
use crate::error::{StoreError, StoreErrorKind};
use crate::hash::Pepper;
use crate::ip::IpAllowList;
use crate::origin::DomainAllowList;
use crate::policy::Policy;
use crate::record::{KeyRecord, KeyStatus, OwnerId, Scopes};
use crate::sealing::{SealingKey, SealingKeyRing};
use crate::store::{AsyncKeyStore, KeyStore, Ready, RollPlan, Usage, WriteCondition, complete_now};
use crate::token::KeyFormat;
use core::fmt;
use time::{Duration, UtcDateTime};

/// A failed conformance check: which property, which record field (when a
/// field came back wrong) and what was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConformanceError {
    /// The property that does not hold.
    pub check: &'static str,
    /// The record field that came back different from what was written
    /// (one of [`RECORD_FIELDS`]), when that is the failure.
    pub field: Option<&'static str>,
    /// What the store did instead.
    pub detail: String,
}

impl fmt::Display for ConformanceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "store conformance: {}: ", self.check)?;
        if let Some(field) = self.field {
            write!(f, "field `{field}`: ")?;
        }
        f.write_str(&self.detail)
    }
}

impl std::error::Error for ConformanceError {}

type Outcome = Result<(), ConformanceError>;

fn fail(check: &'static str, detail: impl Into<String>) -> ConformanceError {
    ConformanceError {
        check,
        field: None,
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

// ---- field-by-field comparison --------------------------------------------

type FieldCheck = (&'static str, fn(&KeyRecord, &KeyRecord) -> bool);

/// Every field the suite compares, in order. Instants compare exactly (the
/// suite writes whole microseconds).
const FIELD_CHECKS: [FieldCheck; 30] = [
    ("id", |a, b| a.id == b.id),
    ("owner", |a, b| a.owner == b.owner),
    ("kind", |a, b| a.kind == b.kind),
    ("environment", |a, b| a.environment == b.environment),
    ("name", |a, b| a.name == b.name),
    ("note", |a, b| a.note == b.note),
    ("description", |a, b| a.description == b.description),
    ("scopes", |a, b| a.scopes == b.scopes),
    ("allowed_domains", |a, b| {
        a.allowed_domains == b.allowed_domains
    }),
    ("allowed_ips", |a, b| a.allowed_ips == b.allowed_ips),
    ("status", |a, b| a.status == b.status),
    ("created_at", |a, b| a.created_at == b.created_at),
    ("expires_at", |a, b| a.expires_at == b.expires_at),
    ("last_used_at", |a, b| a.last_used_at == b.last_used_at),
    ("use_count", |a, b| a.use_count == b.use_count),
    ("revoked_at", |a, b| a.revoked_at == b.revoked_at),
    ("predecessor", |a, b| a.predecessor == b.predecessor),
    ("successor", |a, b| a.successor == b.successor),
    ("rolled_at", |a, b| a.rolled_at == b.rolled_at),
    ("grace_ends_at", |a, b| a.grace_ends_at == b.grace_ends_at),
    ("version", |a, b| a.version == b.version),
    ("secret_hash", |a, b| {
        a.secret_hash.is_some() == b.secret_hash.is_some()
    }),
    ("secret_hash.digest", |a, b| {
        a.secret_hash.map(|h| h.digest) == b.secret_hash.map(|h| h.digest)
    }),
    ("secret_hash.pepper_version", |a, b| {
        a.secret_hash.map(|h| h.pepper_version) == b.secret_hash.map(|h| h.pepper_version)
    }),
    ("signing", |a, b| a.signing == b.signing),
    ("sealed_secret", |a, b| {
        a.sealed_secret.is_some() == b.sealed_secret.is_some()
    }),
    ("sealed_secret.key_version", |a, b| {
        sealed(a, b, |x, y| x.key_version == y.key_version)
    }),
    ("sealed_secret.nonce", |a, b| {
        sealed(a, b, |x, y| x.nonce == y.nonce)
    }),
    ("sealed_secret.ciphertext", |a, b| {
        sealed(a, b, |x, y| x.ciphertext == y.ciphertext)
    }),
    ("redacted", |a, b| a.redacted == b.redacted),
];

fn sealed(
    a: &KeyRecord,
    b: &KeyRecord,
    same: fn(&crate::sealing::SealedSecret, &crate::sealing::SealedSecret) -> bool,
) -> bool {
    match (&a.sealed_secret, &b.sealed_secret) {
        (Some(x), Some(y)) => same(x, y),
        _ => true,
    }
}

/// Fails to compile when [`KeyRecord`] gains a field, until the field is
/// added to [`FIELD_CHECKS`] (and to the wrappers in `tests/conformance.rs`).
#[allow(dead_code, reason = "a compile-time exhaustiveness guard")]
fn every_field_is_compared(r: &KeyRecord) {
    let KeyRecord {
        id: _,
        owner: _,
        kind: _,
        environment: _,
        name: _,
        note: _,
        description: _,
        scopes: _,
        allowed_domains: _,
        allowed_ips: _,
        status: _,
        created_at: _,
        expires_at: _,
        last_used_at: _,
        use_count: _,
        revoked_at: _,
        predecessor: _,
        successor: _,
        rolled_at: _,
        grace_ends_at: _,
        version: _,
        secret_hash: _,
        signing: _,
        sealed_secret: _,
        redacted: _,
    } = r;
}

/// The record fields the suite compares, by name (`secret_hash` and
/// `sealed_secret` by part), in the order it compares them.
#[allow(
    clippy::indexing_slicing,
    reason = "evaluated at compile time: an index out of range fails the build"
)]
pub const RECORD_FIELDS: [&str; 30] = {
    let mut names = [""; 30];
    let mut i = 0;
    while i < FIELD_CHECKS.len() {
        names[i] = FIELD_CHECKS[i].0;
        i += 1;
    }
    names
};

/// The fields (names from [`RECORD_FIELDS`]) in which `got` differs from
/// `want`, in comparison order; empty when they are equal in every field.
#[must_use]
pub fn record_differences(want: &KeyRecord, got: &KeyRecord) -> Vec<&'static str> {
    FIELD_CHECKS
        .iter()
        .filter(|(_, same)| !same(want, got))
        .map(|(name, _)| *name)
        .collect()
}

/// Compares a record read back with the one written, naming the first field
/// that differs. The detail shows both values of that field, except for the
/// digest and the sealed secret (only that they differ).
fn same_record(want: &KeyRecord, got: &KeyRecord, check: &'static str, after: &str) -> Outcome {
    let Some(field) = record_differences(want, got).first().copied() else {
        return Ok(());
    };
    let shown = |r: &KeyRecord| -> String {
        match field {
            "id" => format!("{}", r.id),
            "owner" => format!("{:?}", r.owner.as_str()),
            "kind" => format!("{:?}", r.kind),
            "environment" => format!("{:?}", r.environment),
            "name" => format!("{:?}", r.name),
            "note" => format!("{:?}", r.note),
            "description" => format!("{:?}", r.description),
            "scopes" => format!("{:?}", r.scopes),
            "allowed_domains" => format!("{:?}", r.allowed_domains),
            "allowed_ips" => format!("{:?}", r.allowed_ips.to_string()),
            "status" => format!("{:?}", r.status),
            "created_at" => format!("{:?}", r.created_at),
            "expires_at" => format!("{:?}", r.expires_at),
            "last_used_at" => format!("{:?}", r.last_used_at),
            "use_count" => format!("{}", r.use_count),
            "signing" => format!("{}", r.signing),
            "secret_hash" => if r.secret_hash.is_some() {
                "set"
            } else {
                "none"
            }
            .into(),
            "revoked_at" => format!("{:?}", r.revoked_at),
            "predecessor" => format!("{:?}", r.predecessor),
            "successor" => format!("{:?}", r.successor),
            "rolled_at" => format!("{:?}", r.rolled_at),
            "grace_ends_at" => format!("{:?}", r.grace_ends_at),
            "version" => format!("{}", r.version),
            "secret_hash.pepper_version" => {
                format!("{:?}", r.secret_hash.map(|h| h.pepper_version))
            }
            "sealed_secret" | "sealed_secret.key_version" => format!("{:?}", r.sealed_secret),
            "redacted" => format!("{:?}", r.redacted),
            _ => "(not shown)".into(),
        }
    };
    Err(ConformanceError {
        check,
        field: Some(field),
        detail: format!(
            "came back different after {after}: wrote {}, read {}",
            shown(want),
            shown(got)
        ),
    })
}

// ---- fixtures ---------------------------------------------------------------

/// A fixed instant the suite works at.
fn t0() -> UtcDateTime {
    UtcDateTime::UNIX_EPOCH
        .checked_add(Duration::days(20_000))
        .unwrap_or(UtcDateTime::UNIX_EPOCH)
}

/// `t0` plus whole microseconds: sub-second instants a store must keep.
fn at_us(micros: i64) -> UtcDateTime {
    t0().checked_add(Duration::microseconds(micros))
        .unwrap_or(UtcDateTime::UNIX_EPOCH)
}

fn setup<T, E: fmt::Display>(r: Result<T, E>) -> Result<T, ConformanceError> {
    r.map_err(|e| fail("setup", e.to_string()))
}

/// An owner id `conformance-<tag>-<random hex>`.
fn owner_for(tag: &str) -> Result<OwnerId, ConformanceError> {
    let mut suffix = [0u8; 8];
    rand::TryRng::try_fill_bytes(&mut rand::rngs::SysRng, &mut suffix)
        .map_err(|_| fail("setup", "no randomness"))?;
    let hex: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    setup(OwnerId::new(format!("conformance-{tag}-{hex}")))
}

/// The core that makes fully populated records: a pepper (version 7), so
/// hashes carry a pepper version, and sealing keys (version 3), so signing
/// keys carry a sealed secret.
fn full_engine() -> Result<Engine, ConformanceError> {
    let pepper = setup(Pepper::new(7, &[0x5e; 32]))?;
    let ring = SealingKeyRing::new(setup(SealingKey::new(3, &[0xa7; 32]))?);
    let policy = Policy {
        publishable_scopes: setup(Scopes::new(["checkout:read", "checkout:write"]))?,
        ..Policy::default()
    };
    setup(Engine::new(
        KeyFormat::default(),
        policy,
        Some(&pepper),
        &[],
        Some(ring),
    ))
}

/// A publishable test-environment signing key of `owner` with every setting:
/// note (with a tab and a newline), description (non-ASCII), scopes, a
/// domain list with a wildcard, an IPv4 and IPv6 list, and a sub-second
/// expiry; created at a sub-second instant.
fn full_spec(owner: &OwnerId) -> Result<NewKey, ConformanceError> {
    Ok(
        NewKey::publishable(owner.clone(), "conformance: every field")
            .environment(Environment::Test)
            .note("in the vault,\trow 7\nsecond line")
            .description("clé de paiement ✓")
            .scopes(setup(Scopes::new(["checkout:read", "checkout:write"]))?)
            .allowed_domains(setup(DomainAllowList::new([
                "shop.example.com",
                "*.example.org",
            ]))?)
            .allowed_ips(setup(IpAllowList::parse(
                "203.0.113.0/24, 2001:db8::1, 198.51.100.7",
            ))?)
            .expires_at(at_us(86_400_000_000 * 30 + 654_321))
            .signing(),
    )
}

/// A record with **every** field set, consistent with the crate's rules: a
/// revoked signing key in the middle of a roll chain. It was created by
/// rolling another key (so `predecessor` is set), used, rolled in turn
/// (`successor`, `rolled_at`, `grace_ends_at`), then revoked
/// (`revoked_at`). It is a publishable test-environment key with a note,
/// a description, scopes, a domain list and an IP list, an expiry, a hash
/// under a pepper (`pepper_version` set) and a sealed secret. Every instant
/// has a sub-second part in whole microseconds.
///
/// For stores' own tests: insert it, read it back, and compare with
/// [`record_differences`].
///
/// # Errors
///
/// [`ConformanceError`] with check `"setup"` if the OS random number
/// generator fails.
pub fn populated_record(owner: &OwnerId) -> Result<KeyRecord, ConformanceError> {
    let engine = full_engine()?;
    let rng = &mut rand::rngs::SysRng;
    let (first, _) = setup(engine.plan_create(&full_spec(owner)?, at_us(123_456), rng))?;
    let (roll, _) = setup(engine.plan_roll(
        &first,
        RollOptions::with_grace(Duration::hours(1)),
        at_us(1_234_567),
        rng,
    ))?;
    let mut middle = roll.successor;
    middle.last_used_at = Some(at_us(2_345_678));
    middle.use_count = 1_234_567_890_123;
    let (roll, _) = setup(engine.plan_roll(
        &middle,
        RollOptions::with_grace(Duration::minutes(30)),
        at_us(3_456_789),
        rng,
    ))?;
    let revoked =
        setup(engine.plan_transition(&roll.predecessor, Transition::Revoke, at_us(4_567_891)))?;
    revoked.ok_or_else(|| fail("setup", "revoke planned no change"))
}

struct Fixture {
    engine: Engine,
    owner: OwnerId,
}

impl Fixture {
    fn new(tag: &str) -> Result<Self, ConformanceError> {
        Ok(Self {
            engine: Engine::defaults(),
            owner: owner_for(tag)?,
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

/// The record with `want`'s id, read with `get` and with `list_by_owner`,
/// each compared field by field with `want`.
async fn read_back<S: AsyncKeyStore + ?Sized>(
    store: &S,
    want: &KeyRecord,
    check: &'static str,
    after: &str,
) -> Outcome {
    let got = fetch(store, want, check).await?;
    same_record(want, &got, check, &format!("{after}, then get"))?;
    let listed = ok(store.list_by_owner(&want.owner).await, check)?;
    let got = listed
        .iter()
        .find(|r| r.id == want.id)
        .ok_or_else(|| fail(check, format!("{after}: list_by_owner misses the record")))?;
    same_record(want, got, check, &format!("{after}, then list_by_owner"))
}

/// Fully populated records through insert, get, list, touch, update, roll,
/// revoke, activate, each read compared field by field.
async fn every_field_round_trips<S: AsyncKeyStore + ?Sized>(store: &S) -> Outcome {
    const C: &str = "every field round-trips";
    let engine = full_engine()?;
    let rng = &mut rand::rngs::SysRng;
    let owner = owner_for("fields")?;

    // Insert a record with every field set at once (a revoked key in the
    // middle of a roll chain), and read it back.
    let full = populated_record(&owner)?;
    ok(store.insert(&full, WriteCondition::Always).await, C)?;
    read_back(store, &full, C, "insert").await?;

    // A live signing key with every setting, used before.
    let (mut a, _) = setup(engine.plan_create(&full_spec(&owner)?, at_us(123_456), rng))?;
    a.last_used_at = Some(at_us(500_001));
    ok(store.insert(&a, WriteCondition::Always).await, C)?;
    read_back(store, &a, C, "insert").await?;

    // Touch: only last_used_at and use_count move.
    ok(store.touch(&a.id, uses(1_000_001, 3)).await, C)?;
    a.last_used_at = Some(at_us(1_000_001));
    a.use_count = 3;
    read_back(store, &a, C, "touch").await?;

    // Update every setting; the update carries an older last_used_at and
    // another use_count, which the store must not take.
    let mut changed = a.clone();
    changed.name = "conformance: renamed".into();
    changed.note = Some("moved to the other vault".into());
    changed.description = Some("second description".into());
    changed.scopes = setup(Scopes::new(["checkout:read"]))?;
    changed.allowed_domains = setup(DomainAllowList::new(["pay.example.net"]))?;
    changed.allowed_ips = setup(IpAllowList::parse("2001:db8:aa::/48"))?;
    changed.expires_at = Some(at_us(86_400_000_000 * 60 + 777_777));
    changed.version = a.version.saturating_add(1);
    changed.last_used_at = Some(at_us(1));
    changed.use_count = 1_000;
    ok(
        store
            .update(&changed, a.version, WriteCondition::Always)
            .await,
        C,
    )?;
    changed.last_used_at = a.last_used_at;
    changed.use_count = a.use_count;
    read_back(store, &changed, C, "update").await?;

    // Roll: the predecessor gains successor, rolled_at and grace_ends_at;
    // the successor has a predecessor and a new sealed secret.
    let current = fetch(store, &changed, C).await?;
    let (plan, _) = setup(engine.plan_roll(
        &current,
        RollOptions::with_grace(Duration::microseconds(3_600_000_001)),
        at_us(2_000_002),
        rng,
    ))?;
    ok(store.apply_roll(&plan).await, C)?;
    read_back(store, &plan.predecessor, C, "apply_roll (predecessor)").await?;
    read_back(store, &plan.successor, C, "apply_roll (successor)").await?;

    // Revoke the predecessor: status and revoked_at.
    let revoked =
        setup(engine.plan_transition(&plan.predecessor, Transition::Revoke, at_us(3_000_003)))?
            .ok_or_else(|| fail("setup", "revoke planned no change"))?;
    ok(
        store
            .update(&revoked, plan.predecessor.version, WriteCondition::Always)
            .await,
        C,
    )?;
    read_back(store, &revoked, C, "update (revoke)").await?;

    // Touch the successor.
    ok(store.touch(&plan.successor.id, uses(4_000_004, 1)).await, C)?;
    let mut successor = plan.successor.clone();
    successor.last_used_at = Some(at_us(4_000_004));
    successor.use_count = 1;
    read_back(store, &successor, C, "touch").await?;

    // A pending signing key with every setting: no secret hash, no sealed
    // secret, the signing flag; then its first activation, which adds
    // both and narrows the IP list.
    let pending = setup(engine.plan_pending(&full_spec(&owner)?, at_us(4_500_004), rng))?;
    ok(store.insert(&pending, WriteCondition::Always).await, C)?;
    read_back(store, &pending, C, "insert (pending)").await?;
    let ips = setup(IpAllowList::parse("192.0.2.44"))?;
    let (first, _) =
        setup(engine.plan_first_activation(&pending, Some(&ips), at_us(4_600_004), rng))?;
    ok(
        store
            .update(&first, pending.version, WriteCondition::Always)
            .await,
        C,
    )?;
    read_back(store, &first, C, "update (first activation)").await?;

    // A plain secret live key, inactive, with every optional field empty:
    // a store must not fill in defaults (an empty note, an expiry).
    let (b, _) = setup(engine.plan_create(
        &NewKey::secret(owner.clone(), "conformance: bare").inactive(),
        at_us(5_000_005),
        rng,
    ))?;
    ok(store.insert(&b, WriteCondition::Always).await, C)?;
    read_back(store, &b, C, "insert").await?;
    let active = setup(engine.plan_transition(&b, Transition::Activate, at_us(6_000_006)))?
        .ok_or_else(|| fail("setup", "activate planned no change"))?;
    ok(
        store
            .update(&active, b.version, WriteCondition::Always)
            .await,
        C,
    )?;
    read_back(store, &active, C, "update (activate)").await
}

/// Runs every check against an async store. Await it in your runtime.
///
/// # Errors
///
/// The first [`ConformanceError`]: the property that does not hold, and
/// for a field that came back wrong, its name
/// ([`ConformanceError::field`]).
pub async fn run_conformance_async<S: AsyncKeyStore + ?Sized>(store: &S) -> Outcome {
    every_field_round_trips(store).await?;
    insert_get_duplicate(store).await?;
    compare_and_swap(store).await?;
    revoke_is_absorbing(store).await?;
    atomic_roll(store).await?;
    racing_plans(store).await?;
    list_by_owner(store).await?;
    touch_forward_only(store).await?;
    touch_many_batches(store).await?;
    one_active_key(store).await?;
    pending_keys(store).await?;
    Ok(())
}

/// `uses` uses, the latest at `t0 + micros`.
fn uses(micros: i64, uses: u64) -> Usage {
    Usage {
        at: at_us(micros),
        uses,
    }
}

async fn pending_keys<S: AsyncKeyStore + ?Sized>(store: &S) -> Outcome {
    const C: &str = "pending keys";
    let f = Fixture::new("pending")?;
    let rng = &mut rand::rngs::SysRng;
    let pending = setup(f.engine.plan_pending(
        &NewKey::secret(f.owner.clone(), "conformance: pending"),
        t0(),
        rng,
    ))?;
    // A pending key is not live: it never blocks another key's activation.
    ok(store.insert(&pending, WriteCondition::Always).await, C)?;
    let cond = WriteCondition::NoOtherUsableKey { now: t0() };
    let a = f.record(true)?;
    ok(store.insert(&a, cond).await, C)?;
    // Its first activation is checked like any activation…
    let (first, _) = setup(f.engine.plan_first_activation(&pending, None, t0(), rng))?;
    expect_kind(
        store.update(&first, pending.version, cond).await,
        StoreErrorKind::ActiveKeyExists,
        C,
    )?;
    same_record(
        &pending,
        &fetch(store, &pending, C).await?,
        C,
        "a refused first activation",
    )?;
    // …and, once it committed, a second one planned from the same read
    // loses the compare-and-swap: one secret, ever.
    let off = f.transition(&a, Transition::Deactivate)?;
    ok(
        store.update(&off, a.version, WriteCondition::Always).await,
        C,
    )?;
    let (again, _) = setup(f.engine.plan_first_activation(&pending, None, t0(), rng))?;
    ok(store.update(&first, pending.version, cond).await, C)?;
    expect_kind(
        store.update(&again, pending.version, cond).await,
        StoreErrorKind::Conflict,
        C,
    )?;
    same_record(
        &first,
        &fetch(store, &first, C).await?,
        C,
        "first activation",
    )
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
    same_record(&r, &back, C, "insert")?;
    let mut twin = f.record(true)?;
    twin.id = r.id;
    expect_kind(
        store.insert(&twin, WriteCondition::Always).await,
        StoreErrorKind::Duplicate,
        C,
    )?;
    let after = fetch(store, &r, C).await?;
    same_record(&r, &after, C, "a refused duplicate insert")
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
    same_record(&r, &fetch(store, &r, C).await?, C, "a refused roll")?;
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
    const C: &str = "touch moves forward only and counts uses";
    let f = Fixture::new("touch")?;
    let r = f.record(true)?;
    ok(store.insert(&r, WriteCondition::Always).await, C)?;
    let later = t0().checked_add(Duration::hours(1)).unwrap_or(t0());
    ok(store.touch(&r.id, Usage { at: later, uses: 2 }).await, C)?;
    ok(store.touch(&r.id, Usage { at: t0(), uses: 5 }).await, C)?;
    let back = fetch(store, &r, C).await?;
    ensure(back.last_used_at == Some(later), C, || {
        format!("last_used_at = {:?}", back.last_used_at)
    })?;
    ensure(back.use_count == 7, C, || {
        format!(
            "use_count = {}, want 2 + 5 (an earlier use still counts)",
            back.use_count
        )
    })?;
    ensure(back.version == r.version, C, || {
        "touch must not change the version".into()
    })?;
    // A CAS update carrying an older last_used_at and another count keeps
    // the later instant and the stored count: a smaller one (read before
    // a touch) must not lower it, a larger one (read with uses a manager
    // had not written yet) must not count them twice.
    for (version, carried) in [(2, 0), (3, 100)] {
        let mut next = r.clone();
        next.version = version;
        next.use_count = carried;
        ok(
            store
                .update(&next, version - 1, WriteCondition::Always)
                .await,
            C,
        )?;
        let back = fetch(store, &r, C).await?;
        ensure(back.last_used_at == Some(later), C, || {
            "an update moved last_used_at backwards".into()
        })?;
        ensure(back.use_count == 7, C, || {
            format!(
                "an update carrying {carried} set use_count to {}",
                back.use_count
            )
        })?;
    }
    // The count saturates instead of wrapping or failing.
    ok(
        store
            .touch(
                &r.id,
                Usage {
                    at: t0(),
                    uses: u64::MAX,
                },
            )
            .await,
        C,
    )?;
    let back = fetch(store, &r, C).await?;
    ensure(back.use_count >= i64::MAX.unsigned_abs(), C, || {
        format!("use_count = {} after a saturating add", back.use_count)
    })?;
    let ghost = f.record(true)?;
    expect_kind(
        store.touch(&ghost.id, Usage::once(t0())).await,
        StoreErrorKind::NotFound,
        C,
    )
}

async fn touch_many_batches<S: AsyncKeyStore + ?Sized>(store: &S) -> Outcome {
    const C: &str = "touch_many moves forward only, counts uses and skips unknown ids";
    let f = Fixture::new("batch")?;
    let a = f.record(true)?;
    let b = f.record(true)?;
    let ghost = f.record(true)?;
    ok(store.insert(&a, WriteCondition::Always).await, C)?;
    ok(store.insert(&b, WriteCondition::Always).await, C)?;
    let later = t0().checked_add(Duration::hours(2)).unwrap_or(t0());
    ok(store.touch(&a.id, Usage { at: later, uses: 1 }).await, C)?;
    // A key named twice in one batch: both its uses count.
    let batch = [
        (a.id, Usage { at: t0(), uses: 2 }),
        (ghost.id, Usage { at: later, uses: 9 }),
        (b.id, Usage { at: later, uses: 4 }),
        (a.id, Usage { at: t0(), uses: 3 }),
    ];
    ok(store.touch_many(&batch).await, C)?;
    for (r, want, count) in [(&a, later, 6), (&b, later, 4)] {
        let back = fetch(store, r, C).await?;
        ensure(back.last_used_at == Some(want), C, || {
            format!("last_used_at = {:?}, want {want:?}", back.last_used_at)
        })?;
        ensure(back.use_count == count, C, || {
            format!("use_count = {}, want {count}", back.use_count)
        })?;
        ensure(back.version == r.version, C, || {
            "touch_many must not change the version".into()
        })?;
    }
    ensure(ok(store.get(&ghost.id).await, C)?.is_none(), C, || {
        "touch_many must not create a record".into()
    })
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
