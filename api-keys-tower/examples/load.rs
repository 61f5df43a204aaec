//! A bounded load run over loopback: the same axum server with and without
//! `ApiKeyLayer`, bearer keys in a `MemoryKeyStore`, keep-alive HTTP/1.1
//! connections from a hyper client. Prints requests/s and p50/p99 latency
//! for both, and the ratios the layer is held to (≥ 90 % of the bare
//! throughput, < 10 µs added at p50). It measures; it asserts nothing.
//!
//! ```sh
//! cargo run -p api-keys-tower --release --example load
//! cargo run -p api-keys-tower --release --example load -- --requests 50000 --connections 64 --rounds 3
//! ```
//!
//! Server and client run in one process on separate runtimes (threads
//! split by `--server-threads`, default half the CPUs). Rounds alternate
//! bare / layered after a warm-up; each figure is the median over rounds.
//! A second phase sends a tenth as many requests on one connection, one at
//! a time: the latency the layer adds without queueing.
#![allow(clippy::print_stdout, reason = "the report")]

use api_keys::{Actor, KeyManager, MemoryKeyStore, NewKey, OwnerId, Token};
use api_keys_tower::ApiKeyLayer;
use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    requests: usize,
    connections: usize,
    rounds: usize,
    keys: usize,
    server_threads: usize,
}

fn parse_args() -> Result<Args, BoxError> {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut args = Args {
        requests: 50_000,
        connections: 64,
        rounds: 3,
        keys: 1_000,
        server_threads: (cpus / 2).max(1),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value: usize = it
            .next()
            .ok_or("every flag takes a number")?
            .parse()
            .map_err(|_| "not a number")?;
        match flag.as_str() {
            "--requests" => args.requests = value,
            "--connections" => args.connections = value,
            "--rounds" => args.rounds = value,
            "--keys" => args.keys = value,
            "--server-threads" => args.server_threads = value,
            _ => {
                return Err(
                    "flags: --requests --connections --rounds --keys --server-threads".into(),
                );
            }
        }
    }
    if args.requests == 0 || args.connections == 0 || args.rounds == 0 || args.keys == 0 {
        return Err("every number must be at least 1".into());
    }
    Ok(args)
}

/// One measured run.
struct Run {
    requests_per_s: f64,
    p50: Duration,
    p99: Duration,
}

fn main() -> Result<(), BoxError> {
    let args = parse_args()?;
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let client_threads = cpus.saturating_sub(args.server_threads).max(1);

    let keys = Arc::new(KeyManager::new(MemoryKeyStore::new()));
    let owner = OwnerId::new("acct_load")?;
    let tokens: Vec<Token> = (0..args.keys)
        .map(|i| {
            keys.create(
                &Actor::system(),
                NewKey::secret(owner.clone(), format!("k{i}")),
            )
        })
        .map(|created| created.map(|c| c.token))
        .collect::<Result<_, _>>()?;
    let headers: Arc<Vec<String>> = Arc::new(
        tokens
            .iter()
            .map(|t| format!("Bearer {}", t.expose_secret()))
            .collect(),
    );

    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.server_threads)
        .enable_all()
        .build()?;
    let bare = Router::new().route("/v1/ping", get(|| async { "ok" }));
    let layered = Router::new().route(
        "/v1/ping",
        get(|| async { "ok" }).route_layer(ApiKeyLayer::new(Arc::clone(&keys))),
    );
    let bare_addr = server_rt.block_on(serve(bare))?;
    let layered_addr = server_rt.block_on(serve(layered))?;

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(client_threads)
        .enable_all()
        .build()?;
    if cfg!(debug_assertions) {
        println!("(an unoptimised build: these figures mean nothing; add --release)");
    }
    println!(
        "{} requests x {} rounds, {} keep-alive connections, {} keys; server {} thread(s), client {} thread(s)",
        args.requests,
        args.rounds,
        args.connections,
        args.keys,
        args.server_threads,
        client_threads
    );
    // Warm-up: connections, allocator, branch predictors.
    let warm = (args.requests / 10).max(args.connections);
    client_rt.block_on(load(bare_addr, &headers, warm, args.connections))?;
    client_rt.block_on(load(layered_addr, &headers, warm, args.connections))?;

    let mut bare_runs = Vec::new();
    let mut layered_runs = Vec::new();
    for _ in 0..args.rounds {
        bare_runs.push(client_rt.block_on(load(
            bare_addr,
            &headers,
            args.requests,
            args.connections,
        ))?);
        layered_runs.push(client_rt.block_on(load(
            layered_addr,
            &headers,
            args.requests,
            args.connections,
        ))?);
    }
    let bare = median(&bare_runs);
    let layered = median(&layered_runs);

    // Latency without queueing: one connection, one request at a time. At
    // 64 connections a saturated server's p50 is mostly waiting in line
    // (64 / throughput), so the cost the layer adds to one request shows
    // here.
    let sequential = (args.requests / 10).max(1);
    let mut bare_seq = Vec::new();
    let mut layered_seq = Vec::new();
    for _ in 0..args.rounds {
        bare_seq.push(client_rt.block_on(load(bare_addr, &headers, sequential, 1))?);
        layered_seq.push(client_rt.block_on(load(layered_addr, &headers, sequential, 1))?);
    }
    let bare_seq = median(&bare_seq);
    let layered_seq = median(&layered_seq);

    println!();
    println!("| server | requests/s | p50 | p99 |");
    println!("|---|---:|---:|---:|");
    for (name, run) in [("axum, bare", &bare), ("axum + ApiKeyLayer", &layered)] {
        println!(
            "| {name} | {:.0} | {:.1} µs | {:.1} µs |",
            run.requests_per_s,
            micros(run.p50),
            micros(run.p99)
        );
    }
    for (name, run) in [
        ("1 connection, sequential: bare", &bare_seq),
        ("1 connection, sequential: + ApiKeyLayer", &layered_seq),
    ] {
        println!(
            "| {name} | {:.0} | {:.1} µs | {:.1} µs |",
            run.requests_per_s,
            micros(run.p50),
            micros(run.p99)
        );
    }
    let kept = 100.0 * layered.requests_per_s / bare.requests_per_s;
    let added = micros(layered.p50) - micros(bare.p50);
    let added_seq = micros(layered_seq.p50) - micros(bare_seq.p50);
    println!();
    println!(
        "throughput kept at {} connections: {kept:.1} % (goal ≥ 90 %)",
        args.connections
    );
    println!(
        "p50 added: {added_seq:.1} µs on one connection (goal < 10 µs); {added:.1} µs at {} connections (mostly queueing: connections / throughput)",
        args.connections
    );
    Ok(())
}

async fn serve(app: Router) -> Result<SocketAddr, BoxError> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    Ok(addr)
}

/// `total` requests over `connections` keep-alive connections.
async fn load(
    addr: SocketAddr,
    headers: &Arc<Vec<String>>,
    total: usize,
    connections: usize,
) -> Result<Run, BoxError> {
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(connections);
    for c in 0..connections {
        let share = total / connections + usize::from(c < total % connections);
        let headers = Arc::clone(headers);
        tasks.push(tokio::spawn(async move {
            connection(addr, &headers, c, share).await
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    Ok(Run {
        requests_per_s: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile(&latencies, 50),
        p99: percentile(&latencies, 99),
    })
}

/// One connection sending `count` requests in sequence.
async fn connection(
    addr: SocketAddr,
    headers: &[String],
    offset: usize,
    count: usize,
) -> Result<Vec<Duration>, BoxError> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut latencies = Vec::with_capacity(count);
    for i in 0..count {
        let authorization = headers
            .get((offset + i * 7) % headers.len().max(1))
            .ok_or("no key")?;
        let request = Request::get("/v1/ping")
            .header("host", "127.0.0.1")
            .header("authorization", authorization)
            .body(Empty::<Bytes>::new())?;
        let sent = Instant::now();
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        response.into_body().collect().await?;
        latencies.push(sent.elapsed());
        if status != 200 {
            return Err(format!("status {status}").into());
        }
    }
    Ok(latencies)
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let index = (sorted.len() * p / 100).min(sorted.len().saturating_sub(1));
    sorted.get(index).copied().unwrap_or_default()
}

fn median(runs: &[Run]) -> Run {
    let pick = |f: &dyn Fn(&Run) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or_default()
    };
    Run {
        requests_per_s: pick(&|r| r.requests_per_s),
        p50: Duration::from_secs_f64(pick(&|r| r.p50.as_secs_f64())),
        p99: Duration::from_secs_f64(pick(&|r| r.p99.as_secs_f64())),
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
