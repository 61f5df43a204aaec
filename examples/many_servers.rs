//! Many application servers on one PostgreSQL database: cached verification
//! within a staleness bound, and last-used writes (with use counts) behind
//! the request.
use api_keys::cache::{CacheConfig, CachedKeyStore};
use api_keys::{KeyManager, PostgresKeyStore, WriteBehindConfig, WriteBehindStore};
use std::sync::Arc;
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL")?; // postgres://app:…@db.internal/app
    let pg = PostgresKeyStore::connect(&url).await?;
    pg.migrate().await?;

    // last_used_at written behind the request, in batches (one statement each).
    let behind = WriteBehindStore::new(pg.clone(), WriteBehindConfig::default());
    tokio::spawn(behind.flusher().run(tokio::time::sleep));

    // Records cached within a 1 s staleness bound, following the change feed:
    // polled every third of the bound, and at once on a PostgreSQL NOTIFY.
    let cached = CachedKeyStore::new(behind.clone(), CacheConfig::default())?;
    let listener = pg.change_listener().await?;
    let follower = cached.follower(pg.clone());
    tokio::spawn(follower.run_with_notifications(listener, tokio::time::sleep));

    let keys = Arc::new(KeyManager::new(cached)); // verify_async, create_async, …
    // Uses counted since each key's last write, written every 10 s.
    let usage = tokio::spawn({
        let keys = Arc::clone(&keys);
        async move {
            keys.flush_usage_every(Duration::from_secs(10), tokio::time::sleep)
                .await
        }
    });
    eprintln!("{} keys", keys.list_all_async(None, 100).await?.keys.len());

    // At shutdown: write the counted uses, then flush pending last-used
    // writes, for at most five seconds.
    usage.abort();
    keys.flush_usage_async().await?;
    let report = behind
        .close(Duration::from_secs(5), tokio::time::sleep)
        .await;
    eprintln!("{report:?}");
    Ok(())
}
