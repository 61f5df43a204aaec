//! The main job, end to end against the embedded store: issue a key and show
//! it once, list keys, verify requests (accepted and refused), see each
//! key's usage, roll with a grace window, revoke.
//!
//! Run with `cargo run --example quickstart`.
#![allow(clippy::print_stdout)]

use api_keys::time::UtcDateTime;
use api_keys::{
    Actor, DomainAllowList, Environment, HeaderField, IpAllowList, KeyManager, MemoryKeyStore,
    NewKey, OwnerId, RequestContext, RollOptions, VerifyError,
};

fn show(label: &str, outcome: &Result<api_keys::VerifiedKey, VerifyError>) {
    match outcome {
        Ok(key) => println!(
            "  {label:<42} -> accepted: key {} ({} {}){}",
            key.id(),
            key.environment(),
            key.kind(),
            if key.in_grace() {
                ", in roll grace"
            } else {
                ""
            }
        ),
        Err(e) => println!(
            "  {label:<42} -> refused: {}{} (HTTP {})",
            e.rejection().map_or("service failure", |r| r.as_str()),
            // The finer reason, for logs (never sent to the client).
            e.rejection()
                .and_then(|r| r.detail())
                .map_or_else(String::new, |d| format!(", {d}")),
            e.http_status()
        ),
    }
}

/// `2026-03-01 09:00:05 UTC`: zero-padded, whole seconds.
fn timestamp(t: UtcDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The owner's keys: id, name, kind, status, uses, last use, display form.
fn list(
    keys: &KeyManager<MemoryKeyStore>,
    shop: &OwnerId,
) -> Result<(), Box<dyn std::error::Error>> {
    for record in keys.list(shop)? {
        println!(
            "  {}  {:<15} {:<11} {:<6} {:>3} uses, last {:<23} {}",
            record.id,
            record.name,
            record.kind,
            record.status.as_str(),
            record.use_count,
            record
                .last_used_at
                .map_or_else(|| "never".to_owned(), timestamp),
            record.redacted
        );
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let keys = KeyManager::new(MemoryKeyStore::new());
    let admin = Actor::new("user:42")?;
    let shop = OwnerId::new("acct_123")?;

    println!("1. Create a live secret key, restricted to a domain and an IP range");
    let created = keys.create(
        &admin,
        NewKey::secret(shop.clone(), "storefront")
            .environment(Environment::Live)
            .note("stored as STOREFRONT_KEY in the web tier")
            .allowed_domains(DomainAllowList::new(["shop.example.com"])?)
            .allowed_ips(IpAllowList::parse("203.0.113.0/24, 2001:db8::/32")?),
    )?;
    let token = created.token;
    println!(
        "  token (shown once, copy it now): {}",
        token.expose_secret()
    );
    println!(
        "  what the store keeps:            {}",
        created.record.redacted
    );

    let publishable = keys.create_default(&admin, &shop, Environment::Live)?;
    println!(
        "  default publishable key:         {}",
        publishable.record.redacted
    );

    println!("\n2. List the account's keys (no secrets)");
    list(&keys, &shop)?;

    println!("\n3. Verify requests");
    let good = RequestContext::new()
        .origin(HeaderField::Single(b"https://shop.example.com"))
        .peer_ip("203.0.113.7".parse()?);
    show(
        "from the shop, allowed IP",
        &keys.verify(token.expose_secret(), &good),
    );
    show(
        "from another website",
        &keys.verify(
            token.expose_secret(),
            &good.origin(HeaderField::Single(b"https://evil.example.net")),
        ),
    );
    show(
        "from an address outside the list",
        &keys.verify(
            token.expose_secret(),
            &good.peer_ip("198.51.100.1".parse()?),
        ),
    );
    show(
        "on a test-only endpoint",
        &keys.verify(
            token.expose_secret(),
            &good.require_environment(Environment::Test),
        ),
    );
    // One mistyped character in the middle of the body.
    let typo: String = token
        .expose_secret()
        .char_indices()
        .map(|(i, c)| match (i, c) {
            (20, 'a') => 'b',
            (20, _) => 'a',
            _ => c,
        })
        .collect();
    show("with a typo (refused offline)", &keys.verify(&typo, &good));

    for _ in 0..2 {
        keys.verify(token.expose_secret(), &good)?;
    }
    println!("\n   Usage is tracked per key (the refused requests do not count)");
    list(&keys, &shop)?;

    println!("\n4. Roll: new secret, the old key keeps working for 12 hours");
    let id = created.record.id;
    let rolled = keys.roll(&admin, &id, RollOptions::default())?;
    println!(
        "  new token (shown once):          {}",
        rolled.token.expose_secret()
    );
    println!(
        "  old key works until:             {}",
        rolled
            .predecessor
            .effective_end()
            .map_or_else(|| "forever".to_owned(), timestamp)
    );
    show(
        "old token during grace",
        &keys.verify(token.expose_secret(), &good),
    );
    show(
        "new token",
        &keys.verify(rolled.token.expose_secret(), &good),
    );

    println!("\n5. Revoke the old key: immediate, grace or not");
    keys.revoke(&admin, &id)?;
    show(
        "old token after revoke",
        &keys.verify(token.expose_secret(), &good),
    );
    show(
        "new token still works",
        &keys.verify(rolled.token.expose_secret(), &good),
    );
    Ok(())
}
