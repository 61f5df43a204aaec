//! The verify path allocates nothing: a counting global allocator (in this
//! test binary only) sees zero allocations across accepted and refused
//! verifications.
//!
//! This binary has no test harness (`harness = false`): the counter is
//! global, and libtest's own threads would otherwise allocate while the
//! region is measured.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::type_complexity,
    reason = "test code: a failed expectation should panic"
)]
use api_keys::{Actor, KeyManager, MemoryKeyStore, NewKey, OwnerId, Policy, RequestContext};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;
use time::Duration;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn main() {
    verify_does_not_allocate();
    #[allow(clippy::print_stdout, reason = "the plain closing line CI reads")]
    {
        println!("1 passed, 0 failed");
    }
}

fn verify_does_not_allocate() {
    // Touch interval large enough that no last-used write (which clones a
    // record) happens inside the measured region.
    let keys = KeyManager::builder(MemoryKeyStore::new())
        .policy(Policy {
            touch_interval: Duration::days(1),
            ..Policy::default()
        })
        .build()
        .unwrap();
    let owner = OwnerId::new("acct").unwrap();
    let token = keys
        .create(&Actor::system(), NewKey::secret(owner, "k"))
        .unwrap()
        .token;
    let need = api_keys::Scopes::new(["a"]).unwrap();
    let ctx = RequestContext::new().require_scopes(&need);
    // Warm up: the first use writes last_used_at; the second is counted in
    // the usage tally, whose map allocates its table once (a map keeps its
    // capacity when uses leave it, so the steady state allocates nothing).
    keys.verify(token.expose_secret(), &ctx).unwrap();
    keys.verify(token.expose_secret(), &ctx).unwrap();
    let mut bad = token.expose_secret().to_owned();
    bad.replace_range(10..11, if &bad[10..11] == "A" { "B" } else { "A" });

    let region = Region::new(GLOBAL);
    for _ in 0..1000 {
        let ok = keys.verify(token.expose_secret(), &ctx);
        assert!(ok.is_ok());
        drop(ok);
        let refused = keys.verify(&bad, &ctx);
        assert!(refused.is_err());
    }
    let stats = region.change();
    assert_eq!(stats.allocations, 0, "verify allocated: {stats:?}");
    assert_eq!(stats.reallocations, 0);
}
