//! Verifies one key N times (default 100 000) through `KeyManager` on the
//! memory store, for instruction counts under callgrind:
//!
//! ```sh
//! cargo build --release --example verify_loop
//! valgrind --tool=callgrind target/release/examples/verify_loop 100000
//! ```
//!
//! With `sha256` as the first argument it hashes a message N times instead
//! (`verify_loop sha256 N [LEN]`, LEN 52 by default, the length of the
//! one-block SHA-256 floor; 71 is the length of a default token): the
//! floors the verify count is compared with. With `generate` it generates N
//! tokens from the OS generator (callgrind counts the instructions around
//! the system call, not the kernel's).
#![allow(clippy::print_stdout)]

use api_keys::{Actor, KeyManager, MemoryKeyStore, NewKey, OwnerId, Policy, RequestContext};
use sha2::{Digest, Sha256};
use std::hint::black_box;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let first = args.next().unwrap_or_default();
    let (mode, n) = if first == "sha256" || first == "generate" {
        (
            first.as_str(),
            args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000),
        )
    } else {
        ("verify", first.parse().unwrap_or(100_000))
    };
    if mode == "sha256" {
        let len: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(52);
        let msg = vec![7u8; len];
        for _ in 0..n {
            black_box(Sha256::digest(black_box(&msg)));
        }
        println!("hashed {n} times");
        return Ok(());
    }
    if mode == "generate" {
        let format = api_keys::KeyFormat::default();
        for _ in 0..n {
            black_box(format.generate(api_keys::KeyKind::Secret, api_keys::Environment::Live)?);
        }
        println!("generated {n} tokens");
        return Ok(());
    }
    let keys = KeyManager::builder(MemoryKeyStore::new())
        .policy(Policy {
            touch_interval: time::Duration::days(365),
            ..Policy::default()
        })
        .build()?;
    let token = keys
        .create(&Actor::system(), NewKey::secret(OwnerId::new("acct")?, "k"))?
        .token;
    let ctx = RequestContext::new();
    let mut ok = 0usize;
    for _ in 0..n {
        ok += usize::from(keys.verify(black_box(token.expose_secret()), &ctx).is_ok());
    }
    println!("verified {ok} of {n}");
    Ok(())
}
