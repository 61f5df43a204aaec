//! Criterion benches. Every group prints the floor (the bare cost of the
//! work that cannot be avoided) and, where one exists, the peer crate
//! `prefixed-api-key`, beside this crate's figure: ratios from one run are
//! what count on a shared, noisy machine. See BENCHMARKS.md.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use api_keys::{
    Actor, Engine, Environment, KeyFormat, KeyKind, KeyManager, MemoryKeyStore, NewKey, OwnerId,
    Policy, RequestContext,
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// A manager over a store of `n` keys; returns it with `samples` tokens.
fn populated(n: usize, samples: usize) -> (KeyManager<MemoryKeyStore>, Vec<String>) {
    let keys = KeyManager::builder(MemoryKeyStore::with_capacity(n))
        .policy(Policy {
            touch_interval: time::Duration::days(365),
            ..Policy::default()
        })
        .build()
        .unwrap();
    let owner = OwnerId::new("bench").unwrap();
    let actor = Actor::system();
    let mut rng = StdRng::seed_from_u64(7);
    let mut tokens = Vec::with_capacity(samples);
    for i in 0..n {
        let c = keys
            .create_with_rng(&actor, NewKey::secret(owner.clone(), "k"), &mut rng)
            .unwrap();
        if i < samples {
            tokens.push(c.token.expose_secret().to_owned());
        }
    }
    // First use writes last_used_at; do it outside the measurement.
    for t in &tokens {
        keys.verify(t, &RequestContext::new()).unwrap();
    }
    (keys, tokens)
}

/// The floor: SHA-256 of a token-length input, one lookup in a HashMap of
/// the same size (fast hasher on a random id, as the store uses), and a
/// 32-byte constant-time compare.
struct Floor {
    map: HashMap<[u8; 16], [u8; 32], std::hash::BuildHasherDefault<IdHash>>,
    probes: Vec<([u8; 16], String)>,
}

#[derive(Default)]
struct IdHash(u64);
impl std::hash::Hasher for IdHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, b: &[u8]) {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[b.len() - 8..]);
        self.0 ^= u64::from_le_bytes(w);
    }
}

impl Floor {
    fn new(n: usize, token_len: usize) -> Self {
        let mut rng = StdRng::seed_from_u64(9);
        let mut map = HashMap::with_capacity_and_hasher(n, Default::default());
        let mut probes = Vec::new();
        for i in 0..n {
            let mut id = [0u8; 16];
            rand::Rng::fill_bytes(&mut rng, &mut id);
            let token: String = (0..token_len)
                .map(|j| char::from(b'a' + ((i + j) % 26) as u8))
                .collect();
            let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            map.insert(id, digest);
            if i < 1024 {
                probes.push((id, token));
            }
        }
        Self { map, probes }
    }

    fn check(&self, i: usize) -> bool {
        let (id, token) = &self.probes[i % self.probes.len()];
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let stored = self.map.get(id).unwrap();
        bool::from(digest.ct_eq(stored))
    }
}

fn verify(c: &mut Criterion) {
    let token_len = KeyFormat::default().token_len(KeyKind::Secret);
    let mut g = c.benchmark_group("verify");
    for &n in &[1_000usize, 100_000, 1_000_000] {
        let (keys, tokens) = populated(n, 1024);
        let floor = Floor::new(n, token_len);
        let ctx = RequestContext::new();
        let mut i = 0usize;
        g.bench_with_input(BenchmarkId::new("floor", n), &n, |b, _| {
            b.iter(|| {
                i = i.wrapping_add(1);
                black_box(floor.check(i))
            })
        });
        g.bench_with_input(BenchmarkId::new("manager", n), &n, |b, _| {
            b.iter(|| {
                i = i.wrapping_add(1);
                black_box(keys.verify(&tokens[i % tokens.len()], &ctx).is_ok())
            })
        });
        // The pure core with `now` passed in: parse, lookup, decide.
        let engine = keys.engine();
        let now = keys.now();
        let store = keys.store();
        g.bench_with_input(BenchmarkId::new("core", n), &n, |b, _| {
            b.iter(|| {
                i = i.wrapping_add(1);
                let t = &tokens[i % tokens.len()];
                let p = engine.precheck(t, &ctx).unwrap();
                let rec = api_keys::KeyStore::get_for_verify(store, &p.id())
                    .unwrap()
                    .unwrap();
                black_box(engine.decide_bearer_stored(&p, &rec, &ctx, now).is_ok())
            })
        });
    }
    g.finish();

    // The pure decision alone, no store (record in hand).
    let (keys, tokens) = populated(1, 1);
    let engine = keys.engine();
    let p0 = engine.precheck(&tokens[0], &RequestContext::new()).unwrap();
    let rec = keys.get(&p0.id()).unwrap();
    let now = keys.now();
    c.bench_function("verify/core_no_store", |b| {
        b.iter(|| {
            let p = engine
                .precheck(black_box(&tokens[0]), &RequestContext::new())
                .unwrap();
            black_box(
                engine
                    .decide_bearer(&p, &rec, &RequestContext::new(), now)
                    .is_ok(),
            )
        })
    });
    let input = vec![b'k'; token_len];
    c.bench_function("verify/sha256_token_len", |b| {
        b.iter(|| black_box(Sha256::digest(black_box(&input))))
    });
    // The one clock read per request (issue 16: under 40 ns).
    c.bench_function("verify/clock_read", |b| {
        b.iter(|| black_box(api_keys::Clock::now(&api_keys::SystemClock)))
    });
    let coarse = api_keys::CoarseClock::new(Duration::from_millis(1)).unwrap();
    c.bench_function("verify/clock_read_coarse", |b| {
        b.iter(|| black_box(api_keys::Clock::now(&coarse)))
    });
    let input52 = vec![b'k'; 52];
    c.bench_function("verify/sha256_52_bytes", |b| {
        b.iter(|| black_box(Sha256::digest(black_box(&input52))))
    });
}

fn reject(c: &mut Criterion) {
    let (keys, tokens) = populated(100_000, 16);
    let mut g = c.benchmark_group("reject");
    let mut bad_checksum = tokens[0].clone();
    let last = bad_checksum.pop().unwrap();
    bad_checksum.push(if last == 'a' { 'b' } else { 'a' });
    let unknown = KeyFormat::default()
        .generate(KeyKind::Secret, Environment::Live)
        .unwrap();
    let unknown = unknown.token.expose_secret().to_owned();
    let live_only = RequestContext::new().require_environment(Environment::Test);
    let ctx = RequestContext::new();
    g.bench_function("malformed_checksum", |b| {
        b.iter(|| black_box(keys.verify(black_box(&bad_checksum), &ctx).is_err()))
    });
    g.bench_function("unknown_key", |b| {
        b.iter(|| black_box(keys.verify(black_box(&unknown), &ctx).is_err()))
    });
    g.bench_function("wrong_environment", |b| {
        b.iter(|| black_box(keys.verify(black_box(&tokens[0]), &live_only).is_err()))
    });
    let input = vec![b'k'; tokens[0].len()];
    g.bench_function("floor_sha256_token_len", |b| {
        b.iter(|| black_box(Sha256::digest(black_box(&input))))
    });
    g.finish();
}

fn generate(c: &mut Criterion) {
    let format = KeyFormat::default();
    let mut g = c.benchmark_group("generate");
    g.bench_function("os_random_48_bytes", |b| {
        b.iter(|| {
            let mut buf = [0u8; 48];
            rand::TryRng::try_fill_bytes(&mut rand::rngs::SysRng, &mut buf).unwrap();
            black_box(buf)
        })
    });
    g.bench_function("token", |b| {
        b.iter(|| black_box(format.generate(KeyKind::Secret, Environment::Live).unwrap()))
    });
    let engine = Engine::new(KeyFormat::default(), Policy::default(), None, &[], None).unwrap();
    let spec = NewKey::secret(OwnerId::new("bench").unwrap(), "k");
    let now = time::UtcDateTime::now();
    g.bench_function("record_and_token", |b| {
        b.iter(|| {
            black_box(
                engine
                    .plan_create(&spec, now, &mut rand::rngs::SysRng)
                    .unwrap(),
            )
        })
    });
    g.finish();
}

fn concurrent(c: &mut Criterion) {
    let (keys, tokens) = populated(100_000, 1024);
    let keys = &keys;
    let tokens = &tokens;
    let mut g = c.benchmark_group("concurrent");
    for threads in [1usize, 2] {
        g.throughput(Throughput::Elements(threads as u64));
        g.bench_with_input(
            BenchmarkId::new("verify_threads", threads),
            &threads,
            |b, &t| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    std::thread::scope(|s| {
                        for k in 0..t {
                            s.spawn(move || {
                                let ctx = RequestContext::new();
                                for i in 0..iters as usize {
                                    // Each thread works its own half of the sample.
                                    let idx = (i * 2 + k) % tokens.len();
                                    black_box(keys.verify(&tokens[idx], &ctx).is_ok());
                                }
                            });
                        }
                    });
                    start.elapsed()
                })
            },
        );
    }
    g.finish();
}

fn peer(c: &mut Criterion) {
    use prefixed_api_key::PrefixedApiKeyController;
    let controller = PrefixedApiKeyController::configure()
        .prefix("mycompany".to_owned())
        .seam_defaults()
        .finalize()
        .unwrap();
    let mut g = c.benchmark_group("peer");
    g.bench_function("prefixed_api_key/generate", |b| {
        b.iter(|| black_box(controller.generate_key_and_hash()))
    });
    let format = KeyFormat::default();
    let engine = Engine::new(KeyFormat::default(), Policy::default(), None, &[], None).unwrap();
    let spec = NewKey::secret(OwnerId::new("bench").unwrap(), "k");
    let now = time::UtcDateTime::now();
    g.bench_function("api_keys/generate", |b| {
        b.iter(|| {
            black_box(
                engine
                    .plan_create(&spec, now, &mut rand::rngs::SysRng)
                    .unwrap(),
            )
        })
    });
    // Check: parse + hash check, record in hand.
    let (pak, hash) = controller.generate_key_and_hash();
    let pak_text = pak.to_string();
    g.bench_function("prefixed_api_key/check", |b| {
        b.iter(|| {
            let p = prefixed_api_key::PrefixedApiKey::from_string(black_box(&pak_text)).unwrap();
            black_box(controller.check_hash(&p, &hash))
        })
    });
    let (keys, tokens) = populated(1, 1);
    let rec = keys.get(&format.parse(&tokens[0]).unwrap().id()).unwrap();
    let ctx = RequestContext::new();
    g.bench_function("api_keys/check", |b| {
        b.iter(|| {
            let p = keys.engine().precheck(black_box(&tokens[0]), &ctx).unwrap();
            black_box(keys.engine().decide_bearer(&p, &rec, &ctx, now).is_ok())
        })
    });
    // Full verify on a 100k store: the peer's natural store is a map from
    // its short token to its hash.
    let n = 100_000;
    let mut peer_store: HashMap<String, String> = HashMap::with_capacity(n);
    let mut peer_tokens = Vec::new();
    for i in 0..n {
        let (k, h) = controller.generate_key_and_hash();
        if i < 1024 {
            peer_tokens.push(k.to_string());
        }
        peer_store.insert(k.short_token().to_owned(), h);
    }
    let mut i = 0usize;
    g.bench_function("prefixed_api_key/verify_100k", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let t = &peer_tokens[i % peer_tokens.len()];
            let p = prefixed_api_key::PrefixedApiKey::from_string(t).unwrap();
            let h = peer_store.get(p.short_token()).unwrap();
            black_box(controller.check_hash(&p, h))
        })
    });
    let (keys, tokens) = populated(n, 1024);
    g.bench_function("api_keys/verify_100k", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(keys.verify(&tokens[i % tokens.len()], &ctx).is_ok())
        })
    });
    g.finish();
}

fn sign(c: &mut Criterion) {
    use api_keys::signing::SigningKey;
    use sha2::Sha512;
    let key = SigningKey::new(b"sk_live_bench_signing_secret_0123456789").unwrap();
    let mut g = c.benchmark_group("sign");
    for &len in &[64usize, 1024, 64 * 1024, 1024 * 1024] {
        let body = vec![0x5au8; len];
        let header = key.sign(&body).to_hex();
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::new("floor_sha512", len), &len, |b, _| {
            b.iter(|| black_box(Sha512::digest(black_box(&body))))
        });
        g.bench_with_input(BenchmarkId::new("sign", len), &len, |b, _| {
            b.iter(|| black_box(key.sign(black_box(&body))))
        });
        g.bench_with_input(BenchmarkId::new("verify", len), &len, |b, _| {
            b.iter(|| black_box(key.verify(black_box(&body), header.as_bytes()).is_ok()))
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = verify, reject, generate, concurrent, peer, sign
}
criterion_main!(benches);
