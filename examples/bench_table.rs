//! Prints the issue-16 table of BENCHMARKS.md from the last criterion run
//! (medians in `target/criterion`), so every row comes from one run:
//!
//! ```sh
//! cargo bench --bench api_keys -- --warm-up-time 1 --measurement-time 3 \
//!   'verify/(floor|core|manager)/(1000|100000)$|concurrent/verify_threads|peer/|generate/'
//! cargo build --release --example verify_loop --example memory_footprint
//! cargo run --release --example bench_table -- --callgrind --memory
//! ```
//!
//! `--callgrind` runs `valgrind --tool=callgrind` on `verify_loop` (verify,
//! the one-block SHA-256 floor, and their setup-only baselines);
//! `--memory` runs `memory_footprint 1000000`. Both need the release
//! examples built first.
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::process::Command;

/// Median time in nanoseconds of a criterion benchmark id (`group/name`;
/// criterion stores a `/` inside the name as `_`).
fn median(id: &str) -> Option<f64> {
    let (group, name) = id.split_once('/')?;
    let path = Path::new("target/criterion")
        .join(group)
        .join(name.replace('/', "_"))
        .join("new/estimates.json");
    let path = if path.exists() {
        path
    } else {
        Path::new("target/criterion")
            .join(id)
            .join("new/estimates.json")
    };
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("median")?.get("point_estimate")?.as_f64()
}

fn ns(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} µs", v / 1000.0)
    } else {
        format!("{v:.0} ns")
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "**met**" } else { "missed" }
}

/// Total instructions of one `verify_loop` run under callgrind.
fn instructions(args: &[&str]) -> Option<u64> {
    let out = Command::new("valgrind")
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg("target/release/examples/verify_loop")
        .args(args)
        .output()
        .ok()?;
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().find(|l| l.contains("refs:"))?;
    line.rsplit(' ').next()?.replace(',', "").parse().ok()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |id: &str| median(id).unwrap_or(f64::NAN);
    println!("| figure | floor / peer | this crate | ratio | goal | |");
    println!("|---|---|---|---|---|---|");
    for (n, goal) in [(1000, 1.35), (100_000, 1.5)] {
        let (floor, core) = (
            get(&format!("verify/floor/{n}")),
            get(&format!("verify/core/{n}")),
        );
        let r = core / floor;
        println!(
            "| pure core verify ÷ floor, {n} keys | {} | {} | {r:.2}× | ≤ {goal}× | {} |",
            ns(floor),
            ns(core),
            verdict(r <= goal)
        );
    }
    let (floor, manager) = (get("verify/floor/1000"), get("verify/manager/1000"));
    let r = manager / floor;
    println!(
        "| `KeyManager::verify` ÷ floor, 1000 keys | {} | {} | {r:.2}× | ≤ 1.75× | {} |",
        ns(floor),
        ns(manager),
        verdict(r <= 1.75)
    );
    if args.iter().any(|a| a == "--callgrind") {
        let n = 100_000u64;
        let counts = (
            instructions(&["100000"]),
            instructions(&["0"]),
            instructions(&["sha256", "100000", "52"]),
            instructions(&["sha256", "0"]),
        );
        if let (Some(v), Some(v0), Some(h), Some(h0)) = counts {
            let per_verify = v.saturating_sub(v0) / n;
            let per_hash = h.saturating_sub(h0) / n;
            let r = per_verify as f64 / per_hash as f64;
            println!(
                "| callgrind instructions per verify ÷ one-block SHA-256 | {per_hash} | {per_verify} | {r:.2}× | ≤ 1.25× | {} |",
                verdict(r <= 1.25)
            );
        } else {
            println!(
                "| callgrind instructions per verify | (valgrind or verify_loop missing) | | | ≤ 1.25× | |"
            );
        }
    }
    let (one, two) = (
        get("concurrent/verify_threads/1"),
        get("concurrent/verify_threads/2"),
    );
    // Each iteration is one verify per thread: throughput = threads / time.
    let r = 2.0 * one / two;
    println!(
        "| two threads ÷ one thread (throughput) | 1 thread {:.2} M/s | 2 threads {:.2} M/s | {r:.2}× | ≥ 1.85× | {} |",
        1000.0 / one,
        2000.0 / two,
        verdict(r >= 1.85)
    );
    let (os, token) = (get("generate/os_random_48_bytes"), get("generate/token"));
    let r = token / os;
    println!(
        "| token generation ÷ the OS random call | {} | {} | {r:.2}× | ≤ 1.4× | {} |",
        ns(os),
        ns(token),
        verdict(r <= 1.4)
    );
    let (peer, ours) = (
        get("peer/prefixed_api_key/verify_100k"),
        get("peer/api_keys/verify_100k"),
    );
    let r = peer / ours;
    println!(
        "| vs prefixed-api-key 0.3: full verify, 100 000 keys | {} | {} | {r:.2}× faster | ≥ 1.5× | {} |",
        ns(peer),
        ns(ours),
        verdict(r >= 1.5)
    );
    let (peer, ours) = (
        get("peer/prefixed_api_key/generate"),
        get("peer/api_keys/generate"),
    );
    let r = peer / ours;
    println!(
        "| vs prefixed-api-key 0.3: generation (record + token) | {} | {} | {r:.2}× faster | ≥ 4× | {} |",
        ns(peer),
        ns(ours),
        verdict(r >= 4.0)
    );
    if args.iter().any(|a| a == "--memory") {
        let out = Command::new("target/release/examples/memory_footprint")
            .arg("1000000")
            .output();
        let text = out
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let field = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<u64>().ok())
        };
        match (field("overhead beyond strings:"), field("bytes per key:")) {
            (Some(over), Some(total)) => println!(
                "| memory per key beyond its strings, 1 M keys in `MemoryKeyStore` | — | {over} B ({total} B in all) | — | < 300 B | {} |",
                verdict(over < 300)
            ),
            _ => println!("| memory per key (memory_footprint missing) | | | | < 300 B | |"),
        }
    }
}
