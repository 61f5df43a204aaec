//! Keys that survive a restart: the same steps as the quickstart, against a
//! SQLite file instead of memory. Each run is a new process; the file is
//! what they share.
//!
//! ```sh
//! cargo run --example persistent --features sqlite -- create keys.db acct_123
//! cargo run --example persistent --features sqlite -- verify keys.db sk_live_…
//! cargo run --example persistent --features sqlite -- list keys.db
//! cargo run --example persistent --features sqlite -- revoke keys.db <key id>
//! ```
//!
//! `create` prints the token alone on standard output (shown this once:
//! only its hash is stored) and the rest on standard error, so a script can
//! capture it. `verify` exits with status 1 when the key is refused.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use api_keys::{Actor, KeyId, KeyManager, NewKey, OwnerId, RequestContext, SqliteKeyStore};
use std::process::ExitCode;

const USAGE: &str = "usage: persistent create <db file> <owner> [name]
       persistent verify <db file> <token>
       persistent revoke <db file> <key id>
       persistent list   <db file>";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(command), Some(db)) = (args.first(), args.get(1)) else {
        eprintln!("{USAGE}");
        return Ok(ExitCode::from(2));
    };

    // Three lines: open the file (created on first use), bring the schema
    // up to date, build the manager.
    let store = SqliteKeyStore::open(db).await?;
    store.migrate().await?;
    let keys = KeyManager::new(store);
    let admin = Actor::new("cli")?;

    match (command.as_str(), args.get(2)) {
        ("create", Some(owner)) => {
            let name = args.get(3).map_or("main", String::as_str);
            let created = keys
                .create_async(&admin, NewKey::secret(OwnerId::new(owner.as_str())?, name))
                .await?;
            eprintln!(
                "created key {} for {} in {db}; the token is shown this once:",
                created.record.id, created.record.owner
            );
            println!("{}", created.token.expose_secret());
        }
        ("verify", Some(token)) => match keys.verify_async(token, &RequestContext::new()).await {
            Ok(key) => {
                println!("accepted: key {} of {}", key.id(), key.owner());
                // A process about to exit writes the uses it counted.
                keys.flush_usage_async().await?;
            }
            Err(e) => {
                println!(
                    "refused: {} (HTTP {})",
                    e.rejection().map_or("service failure", |r| r.as_str()),
                    e.http_status()
                );
                return Ok(ExitCode::FAILURE);
            }
        },
        ("revoke", Some(id)) => {
            let id: KeyId = id.parse().map_err(|_| "not a key id")?;
            let revoked = keys.revoke_async(&admin, &id).await?;
            println!("revoked key {} ({})", revoked.id, revoked.redacted);
        }
        ("list", None) => {
            let mut after = None;
            loop {
                let page = keys.list_all_async(after, 100).await?;
                for key in &page.keys {
                    println!(
                        "{}  {:<8}  {}  {}  {} uses",
                        key.id,
                        key.status.as_str(),
                        key.owner,
                        key.redacted,
                        key.use_count
                    );
                }
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
        }
        _ => {
            eprintln!("{USAGE}");
            return Ok(ExitCode::from(2));
        }
    }
    Ok(ExitCode::SUCCESS)
}
