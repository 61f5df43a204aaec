//! Replay-protected mode header parsing: never panics; anything accepted
//! has a canonical timestamp within the tolerance and a well-formed nonce.
#![no_main]
use api_keys::replay::MemoryReplayCache;
use api_keys::signing::{RequestHead, SignatureConfig, SigningKey, ReplayConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|b| *b == b'|');
    let timestamp = parts.next().unwrap_or(&[]);
    let nonce = parts.next().unwrap_or(&[]);
    let method = parts.next().unwrap_or(&[]);
    let path = parts.next().unwrap_or(&[]);
    let signature = parts.next().unwrap_or(&[]);
    let body = parts.next().unwrap_or(&[]);
    let key = SigningKey::new(b"fuzz-secret").unwrap();
    let config = SignatureConfig { replay: Some(ReplayConfig::default()), ..SignatureConfig::default() };
    let now = time::UtcDateTime::from_unix_timestamp(1_800_000_000).unwrap();
    let cache = MemoryReplayCache::new(64);
    let head = RequestHead { method, path, signature, timestamp, nonce };
    if config.verify_replay_protected(&key, &head, body, now, &cache, b"k").is_ok() {
        let ts: i64 = std::str::from_utf8(timestamp).unwrap().parse().unwrap();
        assert_eq!(ts.to_string().as_bytes(), timestamp, "canonical timestamp");
        assert!((ts - 1_800_000_000).abs() <= 300);
        assert!((16..=64).contains(&nonce.len()));
        // A second identical request is a replay.
        assert!(config.verify_replay_protected(&key, &head, body, now, &cache, b"k").is_err());
    }
});
