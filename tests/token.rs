//! The token format: committed vectors, round trips, and the offline parser
//! under hostile input.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::type_complexity,
    reason = "test code: a failed expectation should panic"
)]
use api_keys::{Engine, Environment, KeyFormat, KeyKind, NewKey, OwnerId, Policy, Rejection};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::fmt::Write as _;
use time::macros::utc_datetime;

const VECTORS: &str = "tests/data/token_vectors.tsv";

fn formats() -> Vec<(&'static str, KeyFormat)> {
    vec![
        ("default", KeyFormat::default()),
        (
            "signatureapi",
            KeyFormat::builder().secret_prefix("key").build().unwrap(),
        ),
        (
            "underscored-160bit",
            KeyFormat::builder()
                .secret_prefix("acme_sk")
                .publishable_prefix("acme_pk")
                .secret_bytes(20)
                .build()
                .unwrap(),
        ),
    ]
}

/// Regenerates the vectors from seeded generators. The same seed must give
/// the same token, id, checksum and stored hash forever: if this changes,
/// every issued key stops verifying.
fn render_vectors() -> String {
    let mut out = String::from("# format\tseed\tkind\tenv\ttoken\tkey_id\tsha256_digest\n");
    for (name, format) in formats() {
        let engine = Engine::new(format, Policy::default(), None, &[], None).unwrap();
        for seed in 0u64..4 {
            for kind in KeyKind::ALL {
                for env in Environment::ALL {
                    let mut rng = StdRng::seed_from_u64(seed);
                    let spec = NewKey::of_kind(OwnerId::new("acct").unwrap(), kind, "vector")
                        .environment(env);
                    let (record, token) = engine
                        .plan_create(&spec, utc_datetime!(2026-01-01 00:00), &mut rng)
                        .unwrap();
                    let digest: String = record
                        .secret_hash
                        .unwrap()
                        .digest
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect();
                    writeln!(
                        out,
                        "{name}\t{seed}\t{kind}\t{env}\t{}\t{}\t{digest}",
                        token.expose_secret(),
                        record.id
                    )
                    .unwrap();
                }
            }
        }
    }
    out
}

#[test]
fn committed_vectors_never_drift() {
    let fresh = render_vectors();
    if std::env::var_os("REGENERATE_VECTORS").is_some() {
        std::fs::write(VECTORS, &fresh).unwrap();
    }
    let committed = std::fs::read_to_string(VECTORS)
        .expect("run with REGENERATE_VECTORS=1 once to create the vectors");
    assert_eq!(
        committed, fresh,
        "token format drifted from committed vectors"
    );
}

#[test]
fn committed_tokens_parse_back() {
    let committed = std::fs::read_to_string(VECTORS).unwrap();
    let formats = formats();
    let mut rows = 0;
    for line in committed.lines().filter(|l| !l.starts_with('#')) {
        let cols: Vec<&str> = line.split('\t').collect();
        let format = &formats.iter().find(|(n, _)| *n == cols[0]).unwrap().1;
        let parsed = format.parse(cols[4]).unwrap();
        assert_eq!(parsed.id().to_string(), cols[5]);
        assert_eq!(parsed.kind().as_str(), cols[2]);
        assert_eq!(parsed.environment().as_str(), cols[3]);
        assert_eq!(cols[4].len(), format.token_len(parsed.kind()));
        rows += 1;
    }
    assert_eq!(rows, 3 * 4 * 2 * 2);
}

#[test]
fn documented_shape_and_regex() {
    let f = KeyFormat::default();
    assert_eq!(f.body_len(), 63);
    assert_eq!(f.token_len(KeyKind::Secret), 71);
    assert_eq!(
        f.scanner_regex(),
        r"\b(?:sk|pk)_(?:test|live)_[0-9A-Za-z]{63}\b"
    );
    let t = f.generate(KeyKind::Publishable, Environment::Test).unwrap();
    let text = t.token.expose_secret();
    assert!(text.starts_with("pk_test_"));
    assert!(text[8..].bytes().all(|c| c.is_ascii_alphanumeric()));
    // SignatureAPI's prefixes.
    let sig = KeyFormat::builder().secret_prefix("key").build().unwrap();
    let live = sig.generate(KeyKind::Secret, Environment::Live).unwrap();
    assert!(live.token.expose_secret().starts_with("key_live_"));
}

#[test]
fn os_generation_gives_distinct_keys() {
    let f = KeyFormat::default();
    let a = f.generate(KeyKind::Secret, Environment::Live).unwrap();
    let b = f.generate(KeyKind::Secret, Environment::Live).unwrap();
    assert_ne!(a.id, b.id);
    assert_ne!(a.token.expose_secret(), b.token.expose_secret());
}

#[test]
fn failing_randomness_is_an_error() {
    let err = KeyFormat::default()
        .generate_with_rng(
            KeyKind::Secret,
            Environment::Live,
            &mut api_keys::testing::FailingRng,
        )
        .unwrap_err();
    assert!(matches!(err, api_keys::Error::Randomness));
}

#[test]
fn configuration_is_validated() {
    use api_keys::ConfigError::*;
    let bad = |b: api_keys::KeyFormatBuilder| b.build().unwrap_err();
    assert_eq!(bad(KeyFormat::builder().secret_prefix("")), Prefix);
    assert_eq!(bad(KeyFormat::builder().secret_prefix("Sk")), Prefix);
    assert_eq!(bad(KeyFormat::builder().secret_prefix("sk_")), Prefix);
    assert_eq!(bad(KeyFormat::builder().secret_prefix("s__k")), Prefix);
    assert_eq!(bad(KeyFormat::builder().secret_prefix("1sk")), Prefix);
    assert_eq!(bad(KeyFormat::builder().secret_prefix("ѕk")), Prefix); // Cyrillic
    assert_eq!(bad(KeyFormat::builder().secret_prefix("s-k")), Prefix);
    assert_eq!(
        bad(KeyFormat::builder().secret_prefix("a".repeat(33))),
        Prefix
    );
    assert_eq!(
        bad(KeyFormat::builder().publishable_prefix("sk")),
        SamePrefix
    );
    assert_eq!(
        bad(KeyFormat::builder().secret_bytes(19)),
        SecretLength { bytes: 19 }
    );
    assert_eq!(
        bad(KeyFormat::builder().secret_bytes(27)),
        SecretLength { bytes: 27 }
    );
    assert!(
        KeyFormat::builder()
            .secret_prefix("a".repeat(32))
            .build()
            .is_ok()
    );
}

#[test]
fn hostile_inputs_are_malformed() {
    let f = KeyFormat::default();
    let good = f.generate(KeyKind::Secret, Environment::Live).unwrap();
    let t = good.token.expose_secret();
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "empty"),
        (format!("Bearer {t}"), "scheme prefix"),
        (format!(" {t}"), "leading space"),
        (format!("{t}\n"), "trailing newline"),
        (t.replacen("sk_live_", "sk%5Flive_", 1), "percent-encoded"),
        (t.replacen("sk", "ѕk", 1), "homoglyph prefix (Cyrillic s)"),
        (t.replacen("live", "LIVE", 1), "upper-case env"),
        (t.replacen("sk_", "xk_", 1), "unknown prefix"),
        (
            t.replacen("live", "test", 1),
            "test->live flip fails the checksum",
        ),
        (format!("{}\0", &t[..t.len() - 1]), "NUL byte"),
        (
            format!("{}é", &t[..t.len() - 2]),
            "multi-byte char at the end",
        ),
        (format!("é{}", &t[2..]), "multi-byte char at the start"),
        (t[..t.len() - 1].to_owned(), "truncated"),
        (format!("{t}a"), "extended"),
        ("x".repeat(1 << 20), "1 MiB"),
        (t.to_uppercase(), "upper-cased"),
    ];
    for (input, why) in cases {
        assert_eq!(f.parse(&input).unwrap_err(), Rejection::Malformed, "{why}");
    }
}

fn token_strategy() -> impl Strategy<Value = (KeyKind, Environment, u64)> {
    (
        prop_oneof![Just(KeyKind::Secret), Just(KeyKind::Publishable)],
        prop_oneof![Just(Environment::Test), Just(Environment::Live)],
        any::<u64>(),
    )
}

const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_";

proptest! {
    #[test]
    fn generated_tokens_parse_back((kind, env, seed) in token_strategy()) {
        let f = KeyFormat::default();
        let new = f.generate_with_rng(kind, env, &mut StdRng::seed_from_u64(seed)).unwrap();
        let p = f.parse(new.token.expose_secret()).unwrap();
        prop_assert_eq!(p.id(), new.id);
        prop_assert_eq!(p.kind(), kind);
        prop_assert_eq!(p.environment(), env);
    }

    #[test]
    fn every_substitution_is_refused(
        (kind, env, seed) in token_strategy(),
        pos in any::<prop::sample::Index>(),
        ch in any::<prop::sample::Index>(),
    ) {
        let f = KeyFormat::default();
        let new = f.generate_with_rng(kind, env, &mut StdRng::seed_from_u64(seed)).unwrap();
        let mut bytes = new.token.expose_secret().as_bytes().to_vec();
        let i = pos.index(bytes.len());
        let c = ALPHABET[ch.index(ALPHABET.len())];
        prop_assume!(bytes[i] != c);
        bytes[i] = c;
        let text = String::from_utf8(bytes).unwrap();
        prop_assert_eq!(f.parse(&text).unwrap_err(), Rejection::Malformed);
    }

    #[test]
    fn every_deletion_and_insertion_is_refused(
        (kind, env, seed) in token_strategy(),
        pos in any::<prop::sample::Index>(),
        ch in any::<prop::sample::Index>(),
    ) {
        let f = KeyFormat::default();
        let new = f.generate_with_rng(kind, env, &mut StdRng::seed_from_u64(seed)).unwrap();
        let text = new.token.expose_secret();
        let i = pos.index(text.len());
        let mut deleted = text.to_owned();
        deleted.remove(i);
        prop_assert!(f.parse(&deleted).is_err());
        let mut inserted = text.to_owned();
        inserted.insert(i, char::from(ALPHABET[ch.index(ALPHABET.len())]));
        prop_assert!(f.parse(&inserted).is_err());
    }

    #[test]
    fn adjacent_swaps_are_refused((kind, env, seed) in token_strategy(), pos in any::<prop::sample::Index>()) {
        let f = KeyFormat::default();
        let new = f.generate_with_rng(kind, env, &mut StdRng::seed_from_u64(seed)).unwrap();
        let mut bytes = new.token.expose_secret().as_bytes().to_vec();
        let i = pos.index(bytes.len() - 1);
        prop_assume!(bytes[i] != bytes[i + 1]);
        bytes.swap(i, i + 1);
        prop_assert!(f.parse(std::str::from_utf8(&bytes).unwrap()).is_err());
    }

    #[test]
    fn arbitrary_strings_never_panic(s in ".{0,200}") {
        let _ = KeyFormat::default().parse(&s);
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..120)) {
        let s = String::from_utf8_lossy(&b);
        let _ = KeyFormat::default().parse(&s);
        let _ = api_keys::KeyId::parse_bytes(&b);
    }

    #[test]
    fn right_length_garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 71)) {
        let s = String::from_utf8_lossy(&b);
        let _ = KeyFormat::default().parse(&s);
    }
}
