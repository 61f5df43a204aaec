//! Figures for BENCHMARKS.md ("Running many servers"): verification
//! throughput and latency against a real PostgreSQL, uncached (inline
//! touch, write-behind touch, no touch), cached, and `MemoryKeyStore` for
//! reference; statements per verify; revoke propagation from server A to
//! server B (two managers, two caches, one database).
//!
//! ```sh
//! eval "$(.ci/postgres.sh start)"
//! nice cargo run --release --example scale --features postgres,cache
//! .ci/postgres.sh stop "$API_KEYS_PG_DIR"
//! ```
//!
//! It works in a schema of its own, `api_keys_scale`, which it drops and
//! creates again: point it at a throwaway database.
//!
//! Environment: `API_KEYS_TEST_POSTGRES_URL` (required), `SCALE_SECONDS`
//! (per cell, default 3), `SCALE_KEYS` (the larger key set, default
//! 100 000), `SCALE_REVOKES` (default 500). Tokio runs with
//! 2 worker threads, like the issue's measurement.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::cast_precision_loss,
    reason = "a benchmark program: it prints, and stops on any failure"
)]

use api_keys::cache::{CacheConfig, CachedKeyStore};
use api_keys::{
    Actor, AsyncKeyStore, ChangeFeed, ChangePage, KeyId, KeyManager, KeyRecord, MemoryKeyStore,
    NewKey, OwnerId, Policy, PostgresKeyStore, RequestContext, RollPlan, StoreError, Usage,
    WriteBehindConfig, WriteBehindStore, WriteCondition,
};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use time::UtcDateTime;

/// Counts the statements a store and a feed send (one per call on the SQL
/// stores: `get`, `touch` and `touch_many` are single statements).
#[derive(Clone)]
struct Counted<S> {
    inner: S,
    statements: Arc<AtomicU64>,
}

impl<S: AsyncKeyStore> AsyncKeyStore for Counted<S> {
    fn insert(
        &self,
        record: &KeyRecord,
        condition: WriteCondition,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.insert(record, condition)
    }
    fn get(
        &self,
        id: &KeyId,
    ) -> impl Future<Output = Result<Option<Arc<KeyRecord>>, StoreError>> + Send {
        self.statements.fetch_add(1, Relaxed);
        self.inner.get(id)
    }
    fn list_by_owner(
        &self,
        owner: &OwnerId,
    ) -> impl Future<Output = Result<Vec<Arc<KeyRecord>>, StoreError>> + Send {
        self.inner.list_by_owner(owner)
    }
    fn update(
        &self,
        record: &KeyRecord,
        expected_version: u64,
        condition: WriteCondition,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.update(record, expected_version, condition)
    }
    fn apply_roll(&self, plan: &RollPlan) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.apply_roll(plan)
    }
    fn touch(
        &self,
        id: &KeyId,
        usage: Usage,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.statements.fetch_add(1, Relaxed);
        self.inner.touch(id, usage)
    }
    fn touch_many(
        &self,
        touches: &[(KeyId, Usage)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.statements.fetch_add(1, Relaxed);
        self.inner.touch_many(touches)
    }
}

impl<S: ChangeFeed> ChangeFeed for Counted<S> {
    fn head(&self) -> impl Future<Output = Result<u64, StoreError>> + Send {
        self.statements.fetch_add(1, Relaxed);
        self.inner.head()
    }
    fn changes_since(
        &self,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<ChangePage, StoreError>> + Send {
        self.statements.fetch_add(1, Relaxed);
        self.inner.changes_since(after, limit)
    }
}

struct Cell {
    per_second: f64,
    p50_us: f64,
    p99_us: f64,
    statements_per_verify: f64,
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[i.min(sorted.len() - 1)]) / 1_000.0
}

/// Runs `in_flight` verifying tasks for `seconds` over `tokens`, each task
/// walking the tokens from its own offset.
async fn measure<S: AsyncKeyStore + 'static>(
    keys: Arc<KeyManager<S>>,
    tokens: Arc<Vec<String>>,
    in_flight: usize,
    seconds: f64,
    statements: &AtomicU64,
) -> Cell {
    let warmup = Duration::from_millis(300);
    let run = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..in_flight {
        let keys = Arc::clone(&keys);
        let tokens = Arc::clone(&tokens);
        tasks.push(tokio::spawn(async move {
            let ctx = RequestContext::new();
            let mut i = t * tokens.len() / in_flight.max(1);
            let mut lat = Vec::with_capacity(1 << 16);
            let mut counted = 0u64;
            loop {
                let now = Instant::now();
                if now - start >= warmup + run {
                    break;
                }
                let token = &tokens[i % tokens.len()];
                i = i.wrapping_add(7919);
                keys.verify_async(token, &ctx).await.unwrap();
                // A served request yields to the runtime (its socket does);
                // a cached verification alone never would, and would starve
                // the feed follower on the same worker.
                if i.is_multiple_of(16) {
                    tokio::task::yield_now().await;
                }
                if now - start >= warmup {
                    lat.push(u32::try_from(now.elapsed().as_nanos()).unwrap_or(u32::MAX));
                    counted += 1;
                }
            }
            (lat, counted)
        }));
    }
    tokio::time::sleep(warmup).await;
    let s0 = statements.load(Relaxed);
    let mut all = Vec::new();
    let mut total = 0u64;
    for t in tasks {
        let (lat, n) = t.await.unwrap();
        all.extend(lat);
        total += n;
    }
    let used = statements.load(Relaxed) - s0;
    all.sort_unstable();
    Cell {
        per_second: total as f64 / seconds,
        p50_us: percentile(&all, 0.50),
        p99_us: percentile(&all, 0.99),
        statements_per_verify: used as f64 / total.max(1) as f64,
    }
}

fn default_policy() -> Policy {
    Policy::default()
}

fn no_touch_policy() -> Policy {
    Policy {
        touch_interval: time::Duration::days(3650),
        ..Policy::default()
    }
}

/// Every key used a moment ago: with a 10-year touch interval nothing is
/// written (a key never used is always touched on its first use).
async fn set_last_used_now(pg: &PostgresKeyStore) {
    let now = UtcDateTime::now().unix_timestamp() * 1_000_000;
    sqlx::query("UPDATE api_key_usage SET last_used_at = $1")
        .bind(now)
        .execute(pg.pool())
        .await
        .unwrap();
}

async fn reset_last_used(pg: &PostgresKeyStore) {
    sqlx::query("UPDATE api_key_usage SET last_used_at = NULL")
        .execute(pg.pool())
        .await
        .unwrap();
}

#[allow(clippy::too_many_lines)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run())
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let base = std::env::var("API_KEYS_TEST_POSTGRES_URL")
        .map_err(|_| "set API_KEYS_TEST_POSTGRES_URL (eval \"$(.ci/postgres.sh start)\")")?;
    let seconds: f64 = std::env::var("SCALE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let revokes: usize = std::env::var("SCALE_REVOKES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    let total: usize = std::env::var("SCALE_KEYS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000)
        .max(1_000);
    {
        let admin = PostgresKeyStore::connect(&base).await?;
        sqlx::query("DROP SCHEMA IF EXISTS api_keys_scale CASCADE")
            .execute(admin.pool())
            .await?;
        sqlx::query("CREATE SCHEMA api_keys_scale")
            .execute(admin.pool())
            .await?;
    }
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3Dapi_keys_scale");
    let pg = PostgresKeyStore::connect(&url).await?;
    pg.migrate().await?;

    // 100 000 keys in the database (and in a MemoryKeyStore for reference),
    // spread over 1 000 owners.
    let creator = Arc::new(KeyManager::new(pg.clone()));
    let memory = Arc::new(MemoryKeyStore::with_capacity(total));
    let mut tokens = Vec::with_capacity(total);
    let started = Instant::now();
    for chunk in 0..total / 1_000 {
        let mut batch = Vec::new();
        for i in 0..1_000 {
            let creator = Arc::clone(&creator);
            let memory = Arc::clone(&memory);
            batch.push(tokio::spawn(async move {
                let owner = OwnerId::new(format!("acct_{i}")).unwrap();
                let k = creator
                    .create_async(&Actor::system(), NewKey::secret(owner, format!("k{chunk}")))
                    .await
                    .unwrap();
                AsyncKeyStore::insert(&*memory, &k.record, WriteCondition::Always)
                    .await
                    .unwrap();
                k.token.expose_secret().to_owned()
            }));
        }
        for t in batch {
            tokens.push(t.await?);
        }
    }
    println!(
        "created {} keys in {:.1} s",
        tokens.len(),
        started.elapsed().as_secs_f64()
    );
    let sets = [
        (1_000usize, Arc::new(tokens[..1_000].to_vec())),
        (tokens.len(), Arc::new(tokens.clone())),
    ];

    println!("\n| keys | mode | in flight | verifies/s | p50 µs | p99 µs | statements/verify |");
    println!("|---|---|---|---|---|---|---|");
    let print = |keys: usize, mode: &str, n: usize, c: &Cell| {
        println!(
            "| {keys} | {mode} | {n} | {:.0} | {:.1} | {:.1} | {:.3} |",
            c.per_second, c.p50_us, c.p99_us, c.statements_per_verify
        );
    };
    for (count, set) in &sets {
        for n in [1usize, 4, 16, 64] {
            // MemoryKeyStore, for reference.
            let zero = AtomicU64::new(0);
            let m = Arc::new(
                KeyManager::builder(Arc::clone(&memory))
                    .policy(default_policy())
                    .build()?,
            );
            let c = measure(m, Arc::clone(set), n, seconds, &zero).await;
            print(*count, "memory", n, &c);

            // Uncached, touch inline (what verify_async did before).
            reset_last_used(&pg).await;
            let statements = Arc::new(AtomicU64::new(0));
            let counted = Counted {
                inner: pg.clone(),
                statements: Arc::clone(&statements),
            };
            let m = Arc::new(
                KeyManager::builder(counted.clone())
                    .policy(default_policy())
                    .build()?,
            );
            let c = measure(m, Arc::clone(set), n, seconds, &statements).await;
            print(*count, "uncached, inline touch", n, &c);

            // Uncached, no touch at all (the reference for write-behind).
            set_last_used_now(&pg).await;
            let m = Arc::new(
                KeyManager::builder(counted.clone())
                    .policy(no_touch_policy())
                    .build()?,
            );
            let c = measure(m, Arc::clone(set), n, seconds, &statements).await;
            print(*count, "uncached, no touch", n, &c);

            // Uncached, write-behind touch.
            reset_last_used(&pg).await;
            let behind = WriteBehindStore::new(counted.clone(), WriteBehindConfig::default());
            let flusher = tokio::spawn(behind.flusher().run(tokio::time::sleep));
            let m = Arc::new(
                KeyManager::builder(behind.clone())
                    .policy(default_policy())
                    .build()?,
            );
            let c = measure(m, Arc::clone(set), n, seconds, &statements).await;
            behind
                .close(Duration::from_secs(10), tokio::time::sleep)
                .await;
            flusher.abort();
            print(*count, "uncached, write-behind touch", n, &c);
        }

        // Cached (write-behind touch, feed with notifications): one cache
        // per key set, warmed with one untimed verification of every key.
        reset_last_used(&pg).await;
        let statements = Arc::new(AtomicU64::new(0));
        let counted = Counted {
            inner: pg.clone(),
            statements: Arc::clone(&statements),
        };
        let behind = WriteBehindStore::new(counted.clone(), WriteBehindConfig::default());
        let flusher = tokio::spawn(behind.flusher().run(tokio::time::sleep));
        let cached = CachedKeyStore::new(
            behind.clone(),
            CacheConfig::default().capacity(2 * set.len()),
        )?;
        let listener = pg.change_listener().await?;
        let follower = tokio::spawn(
            cached
                .follower(counted.clone())
                .run_with_notifications(listener, tokio::time::sleep),
        );
        let m = Arc::new(
            KeyManager::builder(cached)
                .policy(default_policy())
                .build()?,
        );
        while !m.store().is_confirmed() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let warm = Instant::now();
        let mut warmers = Vec::new();
        for w in 0..16 {
            let m = Arc::clone(&m);
            let set = Arc::clone(set);
            warmers.push(tokio::spawn(async move {
                for token in set.iter().skip(w).step_by(16) {
                    m.verify_async(token, &RequestContext::new()).await.unwrap();
                }
            }));
        }
        for w in warmers {
            w.await?;
        }
        println!(
            "| {count} | (cache warmed: {} keys in {:.1} s) | | | | | |",
            set.len(),
            warm.elapsed().as_secs_f64()
        );
        for n in [1usize, 4, 16, 64] {
            let c = measure(Arc::clone(&m), Arc::clone(set), n, seconds, &statements).await;
            print(*count, "cached", n, &c);
        }
        let stats = m.store().stats();
        println!(
            "| {count} | (cache: {} hits, {} misses, {} unconfirmed, {} records) | | | | | |",
            stats.hits, stats.misses, stats.unconfirmed, stats.records
        );
        drop(m);
        follower.abort();
        behind
            .close(Duration::from_secs(10), tokio::time::sleep)
            .await;
        flusher.abort();
    }

    for notifications in [true, false] {
        let (p50, p99, max) = propagation(&pg, revokes, notifications).await?;
        println!(
            "\nrevoke propagation A → B ({}): {revokes} revokes, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            if notifications {
                "notifications and polling"
            } else {
                "polling only"
            },
            p50,
            p99,
            max
        );
    }
    Ok(())
}

/// Two servers: A revokes, B (its own cache, following the feed) verifies
/// until it refuses. Measured from A's revoke returning to B's first
/// refusal.
async fn propagation(
    pg: &PostgresKeyStore,
    revokes: usize,
    notifications: bool,
) -> Result<(f64, f64, f64), Box<dyn std::error::Error>> {
    let a = KeyManager::new(CachedKeyStore::new(pg.clone(), CacheConfig::default())?);
    let b_cache = CachedKeyStore::new(pg.clone(), CacheConfig::default())?;
    let follower = if notifications {
        let listener = pg.change_listener().await?;
        tokio::spawn(
            b_cache
                .follower(pg.clone())
                .run_with_notifications(listener, tokio::time::sleep),
        )
    } else {
        tokio::spawn(b_cache.follower(pg.clone()).run(tokio::time::sleep))
    };
    let b = KeyManager::new(b_cache);
    let owner = OwnerId::new("acct_propagation")?;
    let mut keys = Vec::new();
    for i in 0..revokes {
        keys.push(
            a.create_async(
                &Actor::system(),
                NewKey::secret(owner.clone(), format!("p{i}")),
            )
            .await?,
        );
    }
    while !b.store().is_confirmed() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ctx = RequestContext::new();
    let mut took = Vec::with_capacity(revokes);
    let interval = CacheConfig::default().poll_interval;
    for k in &keys {
        let token = k.token.expose_secret();
        b.verify_async(token, &ctx).await?; // cached on B
        // A pause of a random part of B's poll interval, so the revokes do
        // not fall into step with B's polls.
        let jitter = f64::from(k.record.id.as_bytes()[0]) / 256.0;
        tokio::time::sleep(interval.mul_f64(jitter)).await;
        a.revoke_async(&Actor::system(), &k.record.id).await?;
        let revoked = Instant::now();
        while b.verify_async(token, &ctx).await.is_ok() {
            tokio::time::sleep(Duration::from_micros(100)).await;
        }
        took.push(revoked.elapsed().as_secs_f64() * 1_000.0);
    }
    follower.abort();
    took.sort_by(f64::total_cmp);
    let at = |p: f64| took[((took.len() - 1) as f64 * p).round() as usize];
    Ok((at(0.5), at(0.99), at(1.0)))
}
