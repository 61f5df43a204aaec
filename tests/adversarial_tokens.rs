//! Adversarial table: presented bearer tokens through `KeyFormat::parse` and
//! `KeyManager::verify` — malformed (refused offline, no store call) versus
//! unknown (one store call, refused) versus accepted or refused for status.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::type_complexity,
    reason = "test code: a failed expectation should panic"
)]
use api_keys::testing::ManualClock;
use api_keys::{
    Actor, Environment, KeyFormat, KeyId, KeyKind, KeyManager, KeyRecord, KeyStore, MemoryKeyStore,
    NewKey, OwnerId, Rejection, RequestContext, RollPlan, SealingKey, SealingKeyRing, StoreError,
    VerifyError, WriteCondition,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use time::macros::utc_datetime;
use time::{Duration, UtcDateTime};

const T0: UtcDateTime = utc_datetime!(2026-03-01 09:00);
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// `sk_live_` / `sk_test_` / `pk_live_`: every default head is 8 bytes.
const HEAD: usize = 8;
/// Key id characters, then secret characters, then checksum characters.
const ID: usize = 22;
const SECRET: usize = 35;
const CRC: usize = 6;

/// Counts store lookups, so offline refusals can be shown never to reach it.
#[derive(Default)]
struct Counting {
    inner: MemoryKeyStore,
    gets: AtomicUsize,
}

impl KeyStore for Counting {
    fn insert(&self, r: &KeyRecord, c: WriteCondition) -> Result<(), StoreError> {
        KeyStore::insert(&self.inner, r, c)
    }
    fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        KeyStore::get(&self.inner, id)
    }
    fn list_by_owner(&self, o: &OwnerId) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        KeyStore::list_by_owner(&self.inner, o)
    }
    fn update(&self, r: &KeyRecord, v: u64, c: WriteCondition) -> Result<(), StoreError> {
        KeyStore::update(&self.inner, r, v, c)
    }
    fn apply_roll(&self, p: &RollPlan) -> Result<(), StoreError> {
        KeyStore::apply_roll(&self.inner, p)
    }
    fn touch(&self, id: &KeyId, usage: api_keys::Usage) -> Result<(), StoreError> {
        KeyStore::touch(&self.inner, id, usage)
    }
}

/// The expected outcome of one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Refused offline by the parser (`Rejection::Malformed`), no store call.
    Malformed,
    /// Well-formed, one store call, refused as `Rejection::UnknownKey`.
    Unknown,
    /// Accepted.
    Accepted,
    /// Well-formed, one store call, refused with this rejection.
    Refused(Rejection),
}

/// Six base62 characters of a CRC-32, as the crate writes checksums.
fn b62_u32(mut v: u32) -> String {
    let mut out = [b'0'; CRC];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(v % 62) as usize];
        v /= 62;
    }
    String::from_utf8(out.to_vec()).unwrap()
}

/// Appends a correct checksum to `covered` (everything before the checksum):
/// what an attacker who knows the format can always do — CRC is not a MAC.
fn with_crc(covered: &str) -> String {
    format!("{covered}{}", b62_u32(crc32fast::hash(covered.as_bytes())))
}

/// The token without its checksum.
fn covered(token: &str) -> &str {
    &token[..token.len() - CRC]
}

fn body(token: &str) -> &str {
    &token[HEAD..]
}
fn id_part(token: &str) -> &str {
    &token[HEAD..HEAD + ID]
}
fn secret_part(token: &str) -> &str {
    &token[HEAD + ID..HEAD + ID + SECRET]
}
fn crc_part(token: &str) -> &str {
    &token[token.len() - CRC..]
}

/// Replaces the byte at `at` (ASCII input) with `with`.
fn replace_at(token: &str, at: usize, with: &str) -> String {
    format!("{}{with}{}", &token[..at], &token[at + 1..])
}

fn swap_case(c: char) -> char {
    if c.is_ascii_lowercase() {
        c.to_ascii_uppercase()
    } else {
        c.to_ascii_lowercase()
    }
}

/// Standard base64 (with padding), to present a token the way a confused
/// client might.
fn base64(data: &[u8], url: bool) -> String {
    let table: &[u8; 64] = if url {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(table[((n >> (18 - 6 * i)) & 63) as usize]));
            } else if !url {
                out.push('=');
            }
        }
    }
    out
}

fn percent_encode_all(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

struct Fx {
    keys: KeyManager<Counting>,
    format: KeyFormat,
}

impl Fx {
    fn gets(&self) -> usize {
        self.keys.store().gets.load(Ordering::SeqCst)
    }
}

/// The tokens the table is built from.
struct Tokens {
    live: String,
    test: String,
    publishable: String,
    signing: String,
    revoked: String,
    inactive: String,
    expired: String,
    never_stored: String,
    other_prefix: String,
    same_length_other_prefix: String,
    short_secret_format: String,
}

fn fixture() -> (Fx, Tokens) {
    let clock = Arc::new(ManualClock::new(T0));
    let keys = KeyManager::builder(Counting::default())
        .clock(Arc::clone(&clock))
        .sealing_keys(SealingKeyRing::new(SealingKey::new(1, &[7u8; 32]).unwrap()))
        .build()
        .unwrap();
    let admin = Actor::new("security-tests").unwrap();
    let owner = OwnerId::new("acct_adversarial").unwrap();
    let mut rng = StdRng::seed_from_u64(0x5eed_0001);
    let mut create = |spec: NewKey| {
        keys.create_with_rng(&admin, spec, &mut rng)
            .unwrap()
            .token
            .expose_secret()
            .to_owned()
    };
    let live = create(NewKey::secret(owner.clone(), "live"));
    let test = create(NewKey::secret(owner.clone(), "test").environment(Environment::Test));
    let publishable = create(NewKey::publishable(owner.clone(), "pk"));
    let signing = create(NewKey::secret(owner.clone(), "signing").signing());
    let revoked = create(NewKey::secret(owner.clone(), "revoked"));
    let inactive = create(NewKey::secret(owner.clone(), "inactive").inactive());
    let expired =
        create(NewKey::secret(owner.clone(), "expiring").expires_at(T0 + Duration::hours(1)));
    let revoked_id = KeyId::parse(id_part(&revoked)).unwrap();
    keys.revoke(&admin, &revoked_id).unwrap();
    // Everything below is evaluated two hours later: the expiring key has expired.
    clock.set(T0 + Duration::hours(2));

    let format = KeyFormat::default();
    let mut rng = StdRng::seed_from_u64(0x5eed_0002);
    let gen_with = |f: &KeyFormat, rng: &mut StdRng| {
        f.generate_with_rng(KeyKind::Secret, Environment::Live, rng)
            .unwrap()
            .token
            .expose_secret()
            .to_owned()
    };
    let never_stored = gen_with(&format, &mut rng);
    let other_prefix = gen_with(
        &KeyFormat::builder().secret_prefix("key").build().unwrap(),
        &mut rng,
    );
    let same_length_other_prefix = gen_with(
        &KeyFormat::builder()
            .secret_prefix("ak")
            .publishable_prefix("bk")
            .build()
            .unwrap(),
        &mut rng,
    );
    let short_secret_format = gen_with(
        &KeyFormat::builder().secret_bytes(20).build().unwrap(),
        &mut rng,
    );
    (
        Fx { keys, format },
        Tokens {
            live,
            test,
            publishable,
            signing,
            revoked,
            inactive,
            expired,
            never_stored,
            other_prefix,
            same_length_other_prefix,
            short_secret_format,
        },
    )
}

fn rows(t: &Tokens) -> Vec<(String, Expect, &'static str)> {
    use Expect::{Accepted, Malformed, Refused, Unknown};
    let live = t.live.as_str();
    let b = body(live);
    let id = id_part(live);
    let secret = secret_part(live);
    let crc = crc_part(live);
    let mib = 1 << 20;

    // A letter in the checksum whose case can be flipped.
    let crc_letter = live.len() - CRC
        + crc
            .find(|c: char| c.is_ascii_alphabetic())
            .expect("seed gives an all-digit checksum; pick another seed");
    // Two different neighbours in the secret, to swap.
    let swap_at = (HEAD + ID..HEAD + ID + SECRET - 1)
        .find(|&i| live.as_bytes()[i] != live.as_bytes()[i + 1])
        .unwrap();
    let mut swapped = live.as_bytes().to_vec();
    swapped.swap(swap_at, swap_at + 1);
    let swapped = String::from_utf8(swapped).unwrap();
    // A letter in the secret whose case can be flipped.
    let secret_letter = HEAD
        + ID
        + secret
            .find(|c: char| c.is_ascii_alphabetic())
            .expect("secret without letters");
    let flipped = swap_case(char::from(live.as_bytes()[secret_letter]));

    vec![
        // ---- the genuine articles and their statuses
        (t.live.clone(), Accepted, "genuine live secret token"),
        (t.test.clone(), Accepted, "genuine test secret token"),
        (t.publishable.clone(), Accepted, "genuine publishable token"),
        (
            t.signing.clone(),
            Refused(Rejection::SigningKeyAsBearer),
            "a signing key's secret must never travel as a bearer token",
        ),
        (
            t.revoked.clone(),
            Refused(Rejection::Revoked),
            "revoked key",
        ),
        (
            t.inactive.clone(),
            Refused(Rejection::Inactive),
            "key generated inactive",
        ),
        (
            t.expired.clone(),
            Refused(Rejection::Expired),
            "key past its expiry",
        ),
        (
            t.never_stored.clone(),
            Unknown,
            "well-formed token of this format that was never issued here",
        ),
        // ---- HTTP decoration: the scheme must be stripped by the host
        (
            format!("Bearer {live}"),
            Malformed,
            "Bearer scheme not stripped",
        ),
        (
            format!("bearer {live}"),
            Malformed,
            "lower-case bearer scheme",
        ),
        (
            format!("Bearer  {live}"),
            Malformed,
            "Bearer with two spaces",
        ),
        (format!("Bearer\t{live}"), Malformed, "Bearer with a tab"),
        (format!("Token {live}"), Malformed, "Token scheme"),
        (
            format!("Basic {}", base64(format!("{live}:").as_bytes(), false)),
            Malformed,
            "HTTP Basic with the token as user name",
        ),
        (format!("api_key={live}"), Malformed, "query-string form"),
        (format!("\"{live}\""), Malformed, "JSON-quoted"),
        (format!("'{live}'"), Malformed, "single-quoted"),
        // ---- whitespace, controls, invisible characters
        (format!(" {live}"), Malformed, "leading space"),
        (format!("{live} "), Malformed, "trailing space"),
        (
            format!("{live}\n"),
            Malformed,
            "trailing LF (copied from a file)",
        ),
        (format!("{live}\r\n"), Malformed, "trailing CRLF"),
        (format!("\t{live}"), Malformed, "leading tab"),
        (format!("{live}\0"), Malformed, "trailing NUL (C string)"),
        (format!("\0{live}"), Malformed, "leading NUL"),
        (
            replace_at(live, 40, "\0"),
            Malformed,
            "NUL replacing a body character (same length)",
        ),
        (
            with_crc(&replace_at(covered(live), 40, "\0")),
            Malformed,
            "NUL inside the body with a recomputed checksum",
        ),
        (
            replace_at(live, 40, "\n"),
            Malformed,
            "LF replacing a body character",
        ),
        (
            replace_at(live, 40, " "),
            Malformed,
            "space replacing a body character",
        ),
        (
            format!("\u{a0}{live}"),
            Malformed,
            "leading non-breaking space",
        ),
        (
            format!("\u{feff}{live}"),
            Malformed,
            "leading byte-order mark",
        ),
        (
            format!("{live}\u{200b}"),
            Malformed,
            "trailing zero-width space",
        ),
        // ---- Unicode look-alikes
        (
            with_crc(&format!("\u{455}_live_{}", covered(b))),
            Malformed,
            "Cyrillic dze for `sk`: same byte length, recomputed checksum",
        ),
        (
            format!("\u{455}k_live_{b}"),
            Malformed,
            "Cyrillic dze for `s`",
        ),
        (
            format!("s\u{3ba}_live_{b}"),
            Malformed,
            "Greek kappa for `k`",
        ),
        (
            format!("\u{ff53}\u{ff4b}_live_{b}"),
            Malformed,
            "full-width `sk`",
        ),
        (
            format!("sk_l\u{456}ve_{b}"),
            Malformed,
            "Cyrillic i in `live`",
        ),
        (
            with_crc(&format!("sk_live_\u{ff10}{}", &covered(b)[3..])),
            Malformed,
            "full-width digit (3 bytes) for 3 id characters: same length, recomputed checksum",
        ),
        (
            format!(
                "{}\u{ff10}{}",
                &live[..live.len() - 3],
                &live[live.len() - 2..]
            ),
            Malformed,
            "full-width digit in the checksum (changes the length)",
        ),
        (
            with_crc(&format!(
                "sk_live_{}\u{661}{}",
                &covered(b)[..30],
                &covered(b)[32..]
            )),
            Malformed,
            "Arabic-Indic digit (2 bytes) in the secret",
        ),
        // ---- case and separators
        (
            with_crc(&format!("sk_Live_{}", covered(b))),
            Malformed,
            "mixed-case environment, recomputed checksum",
        ),
        (
            with_crc(&format!("sk_LIVE_{}", covered(b))),
            Malformed,
            "upper-case environment, recomputed checksum",
        ),
        (
            with_crc(&format!("SK_live_{}", covered(b))),
            Malformed,
            "upper-case prefix, recomputed checksum",
        ),
        (
            with_crc(&format!("Sk_live_{}", covered(b))),
            Malformed,
            "capitalised prefix, recomputed checksum",
        ),
        (live.to_uppercase(), Malformed, "whole token upper-cased"),
        (live.to_lowercase(), Malformed, "whole token lower-cased"),
        (
            with_crc(&format!("sk__live_{}", &covered(b)[1..])),
            Malformed,
            "double underscore after the prefix (same length)",
        ),
        (
            with_crc(&format!("sk_live__{}", &covered(b)[1..])),
            Malformed,
            "double underscore before the body (same length)",
        ),
        (
            with_crc(&format!("sk-live-{}", covered(b))),
            Malformed,
            "hyphens instead of underscores",
        ),
        (
            with_crc(&format!("sk.live.{}", covered(b))),
            Malformed,
            "dots instead of underscores",
        ),
        (
            with_crc(&format!("sk_tset_{}", covered(b))),
            Malformed,
            "unknown environment word",
        ),
        (
            with_crc(&format!("xk_live_{}", covered(b))),
            Malformed,
            "unknown prefix, recomputed checksum",
        ),
        // ---- truncation and extension
        (
            live[..live.len() - 1].to_owned(),
            Malformed,
            "last character cut",
        ),
        (live[1..].to_owned(), Malformed, "first character cut"),
        (covered(live).to_owned(), Malformed, "checksum missing"),
        (
            live[..HEAD + ID].to_owned(),
            Malformed,
            "head and key id only",
        ),
        (live[..HEAD].to_owned(), Malformed, "head only"),
        ("sk".to_owned(), Malformed, "prefix only"),
        (String::new(), Malformed, "empty"),
        (format!("{live}A"), Malformed, "one extra character"),
        (format!("{live}{live}"), Malformed, "token pasted twice"),
        ("a".repeat(mib), Malformed, "1 MiB of letters"),
        (
            live.repeat(mib / live.len() + 1),
            Malformed,
            "the token repeated past 1 MiB",
        ),
        (
            format!("{live}{}", " ".repeat(mib)),
            Malformed,
            "the token followed by 1 MiB of spaces",
        ),
        (
            "_".repeat(live.len()),
            Malformed,
            "right length, only underscores",
        ),
        // ---- right length, wrong alphabet (checksums recomputed)
        (
            with_crc(&replace_at(covered(live), 40, "-")),
            Malformed,
            "base64url `-` in the secret",
        ),
        (
            with_crc(&replace_at(covered(live), 40, "+")),
            Malformed,
            "base64 `+` in the secret",
        ),
        (
            with_crc(&replace_at(covered(live), 40, "/")),
            Malformed,
            "base64 `/` in the secret",
        ),
        (
            with_crc(&replace_at(covered(live), covered(live).len() - 1, "=")),
            Malformed,
            "base64 padding at the end of the secret",
        ),
        (
            with_crc(&replace_at(covered(live), 40, "_")),
            Malformed,
            "underscore in the secret",
        ),
        (
            with_crc(&replace_at(covered(live), 12, ".")),
            Malformed,
            "dot in the key id",
        ),
        (
            with_crc(&format!("sk_live_{}{secret}", "z".repeat(ID))),
            Malformed,
            "non-canonical key id (22 `z` overflow 128 bits)",
        ),
        (
            with_crc(&format!("sk_live_{id}{}", "z".repeat(SECRET))),
            Unknown,
            "secret of all `z` with a real id: well-formed (every alphabet string is a secret), unknown",
        ),
        (
            with_crc(&format!("sk_live_{}{secret}", "LygHa16AHYGLygHa16AHYF")),
            Malformed,
            "non-canonical key id (above 2^128 - 1)",
        ),
        (
            format!("{}zzzzzz", covered(live)),
            Malformed,
            "non-canonical checksum (`zzzzzz` exceeds 32 bits)",
        ),
        // ---- checksum mismatches (typos, another token's checksum)
        (
            format!("{}{}", covered(live), crc_part(&t.publishable)),
            Malformed,
            "checksum of another token",
        ),
        (
            format!("{}{}", covered(live), crc_part(&t.test)),
            Malformed,
            "checksum of another key's token (test key)",
        ),
        (
            format!(
                "{}{}",
                covered(live),
                crc_part(&with_crc(&format!("sk_test_{}", covered(b))))
            ),
            Malformed,
            "checksum of the same body under the other environment",
        ),
        (
            replace_at(
                live,
                crc_letter,
                &swap_case(char::from(live.as_bytes()[crc_letter])).to_string(),
            ),
            Malformed,
            "case of a checksum letter flipped",
        ),
        (
            swapped,
            Malformed,
            "two neighbouring secret characters swapped",
        ),
        (
            replace_at(
                live,
                HEAD + 3,
                if live.as_bytes()[HEAD + 3] == b'a' {
                    "b"
                } else {
                    "a"
                },
            ),
            Malformed,
            "one key-id character substituted",
        ),
        // ---- CRC is not a MAC: recomputed checksums pass offline, the store refuses
        (
            with_crc(&replace_at(
                covered(live),
                secret_letter,
                &flipped.to_string(),
            )),
            Unknown,
            "case of one secret letter flipped, checksum recomputed",
        ),
        (
            with_crc(&format!("sk_live_{id}{}", "0".repeat(SECRET))),
            Unknown,
            "real key id with an all-zero secret",
        ),
        (
            with_crc(&format!("sk_live_{id}{}", secret_part(&t.publishable))),
            Unknown,
            "real key id with another key's secret",
        ),
        (
            with_crc(&format!("sk_live_{}{secret}", id_part(&t.publishable))),
            Unknown,
            "publishable key's id under the secret prefix",
        ),
        (
            format!("sk_test_{b}"),
            Malformed,
            "live -> test swap without a new checksum",
        ),
        (
            with_crc(&format!("sk_test_{}", covered(b))),
            Unknown,
            "live -> test swap with a recomputed checksum: the env-bound hash refuses it",
        ),
        (
            with_crc(&format!("sk_live_{}", covered(body(&t.test)))),
            Unknown,
            "test -> live swap with a recomputed checksum",
        ),
        (
            format!("pk_live_{b}"),
            Malformed,
            "publishable prefix on a secret body, old checksum",
        ),
        (
            with_crc(&format!("pk_live_{}", covered(b))),
            Unknown,
            "publishable prefix on a secret body, recomputed checksum",
        ),
        (
            with_crc(&format!("sk_live_{}", covered(body(&t.publishable)))),
            Unknown,
            "secret prefix on a publishable body, recomputed checksum",
        ),
        (
            with_crc(&format!("pk_test_{}", covered(b))),
            Unknown,
            "kind and environment both swapped",
        ),
        // ---- tokens of other formats
        (
            t.other_prefix.clone(),
            Malformed,
            "valid token of KeyFormat with prefix `key` (81 characters)",
        ),
        (
            t.same_length_other_prefix.clone(),
            Malformed,
            "valid token of a same-length format with prefix `ak`",
        ),
        (
            t.short_secret_format.clone(),
            Malformed,
            "valid token of a 160-bit-secret format (63 characters)",
        ),
        (
            with_crc(&format!("key_live_{}", &covered(b)[1..])),
            Malformed,
            "prefix `key` squeezed into the default length",
        ),
        // ---- encodings of the token
        (
            live.replace('_', "%5F"),
            Malformed,
            "underscores percent-encoded",
        ),
        (
            percent_encode_all(live),
            Malformed,
            "every byte percent-encoded",
        ),
        (
            format!("sk_live_%{}", &b[1..]),
            Malformed,
            "a stray percent sign (same length)",
        ),
        (
            base64(live.as_bytes(), false),
            Malformed,
            "base64 of the token",
        ),
        (
            base64(live.as_bytes(), true),
            Malformed,
            "base64url of the token, unpadded",
        ),
        (
            live.bytes().map(|c| format!("{c:02x}")).collect(),
            Malformed,
            "hex of the token",
        ),
        (
            live.replace('_', "\\u005f"),
            Malformed,
            "JSON unicode escapes for underscores",
        ),
    ]
}

#[test]
fn presented_tokens_table() {
    let (f, t) = fixture();
    let rows = rows(&t);
    assert!(rows.len() >= 90, "table shrank: {} rows", rows.len());
    for (input, expect, why) in &rows {
        let shown: String = input.chars().take(100).collect();
        // The offline parser alone.
        let parsed = f.format.parse(input);
        match expect {
            Expect::Malformed => assert_eq!(
                parsed.as_ref().err(),
                Some(&Rejection::Malformed),
                "{why}: parse({shown:?}) should refuse"
            ),
            _ => assert!(
                parsed.is_ok(),
                "{why}: parse({shown:?}) should accept the form"
            ),
        }
        // The manager: offline refusals never reach the store; everything
        // else costs exactly one lookup.
        let before = f.gets();
        let got = f.keys.verify(input, &RequestContext::new());
        let lookups = f.gets() - before;
        match (expect, &got) {
            (Expect::Accepted, Ok(v)) => {
                assert_eq!(
                    v.id(),
                    parsed.unwrap().id(),
                    "{why}: accepted as another key"
                );
            }
            (Expect::Malformed, Err(VerifyError::Rejected(Rejection::Malformed)))
            | (Expect::Unknown, Err(VerifyError::Rejected(Rejection::UnknownKey))) => {}
            (Expect::Refused(r), Err(VerifyError::Rejected(got))) if r == got => {}
            _ => panic!("{why}: verify({shown:?}) expected {expect:?}, got {got:?}"),
        }
        let want_lookups = usize::from(*expect != Expect::Malformed);
        assert_eq!(lookups, want_lookups, "{why}: store lookups for {shown:?}");
        if let Err(e) = &got {
            assert_eq!(
                e.http_status(),
                401,
                "{why}: every row here is about the key itself"
            );
        }
    }
}

/// The publishable prefix on the signing key's body, with a fresh checksum,
/// is an unknown key too (the hash binds the kind), not a bearer accept.
#[test]
fn signing_body_under_other_kind_or_environment_is_unknown() {
    let (f, t) = fixture();
    let s = t.signing.as_str();
    for (input, why) in [
        (
            with_crc(&format!("pk_live_{}", covered(body(s)))),
            "pk on a signing body",
        ),
        (
            with_crc(&format!("sk_test_{}", covered(body(s)))),
            "test env on a signing body",
        ),
    ] {
        let got = f.keys.verify(&input, &RequestContext::new());
        assert_eq!(
            got.err().and_then(|e| e.rejection()),
            Some(Rejection::UnknownKey),
            "{why}"
        );
    }
}

/// Offline checks that depend on the request or the policy: required
/// environment and kind are refused before the store.
#[test]
fn required_environment_and_kind_are_offline() {
    let (f, t) = fixture();
    #[rustfmt::skip]
    let rows: Vec<(&str, RequestContext<'_>, Option<Rejection>, &str)> = vec![
        (t.test.as_str(), RequestContext::new().require_environment(Environment::Live), Some(Rejection::WrongEnvironment), "test key on a live-only endpoint"),
        (t.live.as_str(), RequestContext::new().require_environment(Environment::Test), Some(Rejection::WrongEnvironment), "live key on a test-only endpoint"),
        (t.publishable.as_str(), RequestContext::new().require_kind(KeyKind::Secret), Some(Rejection::WrongKind), "publishable key on a secret-only endpoint"),
        (t.live.as_str(), RequestContext::new().require_kind(KeyKind::Publishable), Some(Rejection::WrongKind), "secret key on a publishable-only endpoint"),
        (t.never_stored.as_str(), RequestContext::new().require_environment(Environment::Test), Some(Rejection::WrongEnvironment), "unknown live key refused by environment before the store"),
    ];
    for (token, ctx, want, why) in rows {
        let before = f.gets();
        let got = f.keys.verify(token, &ctx);
        assert_eq!(got.err().and_then(|e| e.rejection()), want, "{why}");
        assert_eq!(f.gets(), before, "{why}: must not reach the store");
    }
}
