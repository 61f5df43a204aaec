//! Bytes per key in `MemoryKeyStore`, measured with a counting allocator:
//! `cargo run --release --example memory_footprint [keys]` (default 1 000 000).
#![allow(clippy::print_stdout)]

use api_keys::{Actor, KeyManager, MemoryKeyStore, NewKey, OwnerId, RequestContext};
use rand::SeedableRng;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let owners: Vec<OwnerId> = (0..1000)
        .map(|i| OwnerId::new(format!("acct_{i:04}")))
        .collect::<Result<_, _>>()?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let actor = Actor::system();
    let mut strings = 0usize;
    let mut sample = None;
    // Everything the store holds, its pre-sized tables included.
    let region = Region::new(GLOBAL);
    let keys = KeyManager::new(MemoryKeyStore::with_capacity(n));
    for i in 0..n {
        let owner = owners.get(i % owners.len()).ok_or("owner")?.clone();
        let c = keys.create_with_rng(&actor, NewKey::secret(owner, "service key"), &mut rng)?;
        strings += c.record.owner.as_str().len() + c.record.name.len() + c.record.redacted.len();
        if sample.is_none() {
            sample = Some(c.token);
        }
        // `c.record` (a copy returned to the caller) is dropped here.
    }
    let stats = region.change();
    let live = stats
        .bytes_allocated
        .saturating_sub(stats.bytes_deallocated);
    println!("keys:                       {n}");
    println!("bytes held by the store:    {live}");
    println!("bytes per key:              {}", live / n.max(1));
    println!("string bytes per key:       {}", strings / n.max(1));
    println!(
        "overhead beyond strings:    {}",
        live.saturating_sub(strings) / n.max(1)
    );
    println!(
        "size_of::<KeyRecord>():     {}",
        size_of::<api_keys::KeyRecord>()
    );
    if let Some(t) = sample {
        let ok = keys
            .verify(t.expose_secret(), &RequestContext::new())
            .is_ok();
        println!("sample verifies:            {ok}");
    }
    println!("records:                    {}", keys.store().len());
    Ok(())
}
