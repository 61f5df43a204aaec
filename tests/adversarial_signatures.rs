//! Adversarial tables for signed requests through `KeyManager::verify_signed`:
//! key and signature header values and bodies in the vendor-compatible
//! mode, then timestamps, nonces, method and path in the replay-protected
//! mode with a `ManualClock`, including the exact tolerance boundaries.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::type_complexity,
    reason = "test code: a failed expectation should panic"
)]
use api_keys::signing::{ReplayConfig, ReplayRequest};
use api_keys::testing::ManualClock;
use api_keys::{
    Actor, Environment, KeyFormat, KeyId, KeyKind, KeyManager, MemoryKeyStore, NewKey, OwnerId,
    Policy, Rejection, RequestContext, RequestSigner, SealingKey, SealingKeyRing, SignatureConfig,
    SignedRequest, VerifyError,
};
use hmac::{Hmac, KeyInit, Mac};
use rand::SeedableRng;
use rand::rngs::StdRng;
use sha2::{Digest, Sha256, Sha512};
use std::sync::Arc;
use time::macros::utc_datetime;
use time::{Duration, UtcDateTime};

const T0: UtcDateTime = utc_datetime!(2026-09-01 08:00);
const BODY: &[u8] = br#"{"currency":"BTC","foreign_id":"123456","amount":"0.01"}"#;
/// A small body limit keeps the at-the-limit rows fast.
const MAX_BODY: usize = 4096;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// HMAC-SHA512 over the concatenation of `parts`, lower-case hex.
fn hmac512(key: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha512>::new_from_slice(key).unwrap();
    for p in parts {
        mac.update(p);
    }
    hex(&mac.finalize().into_bytes())
}

fn hmac256(key: &[u8], msg: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(msg);
    hex(&mac.finalize().into_bytes())
}

/// The replay-protected signature over arbitrary (even non-canonical) field
/// bytes: what a client that does not validate its own fields would send.
fn replay_sig(
    token: &str,
    ts: &[u8],
    nonce: &[u8],
    method: &[u8],
    path: &[u8],
    body: &[u8],
) -> String {
    hmac512(
        token.as_bytes(),
        &[
            b"api-keys-v1\n",
            ts,
            b"\n",
            nonce,
            b"\n",
            method,
            b"\n",
            path,
            b"\n",
            body,
        ],
    )
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
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
                out.push(char::from(T[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn ring() -> SealingKeyRing {
    SealingKeyRing::new(SealingKey::new(1, &[7u8; 32]).unwrap())
}

/// Expected outcome of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Accepted as this key.
    Accepted(KeyId),
    /// Refused with this rejection.
    Refused(Rejection),
}

/// One signed request as the server receives it.
struct Row {
    key: Vec<u8>,
    signature: Vec<u8>,
    body: Vec<u8>,
    expect: Expect,
    why: &'static str,
}

fn row(
    key: impl AsRef<[u8]>,
    signature: impl AsRef<[u8]>,
    body: impl AsRef<[u8]>,
    expect: Expect,
    why: &'static str,
) -> Row {
    Row {
        key: key.as_ref().to_vec(),
        signature: signature.as_ref().to_vec(),
        body: body.as_ref().to_vec(),
        expect,
        why,
    }
}

struct Key {
    id: KeyId,
    token: String,
}

impl Key {
    fn id_text(&self) -> String {
        self.id.to_string()
    }
    fn sign(&self, body: &[u8]) -> String {
        RequestSigner::for_token(&self.token)
            .unwrap()
            .sign(body)
            .signature
    }
}

fn create(keys: &KeyManager<MemoryKeyStore>, rng: &mut StdRng, spec: NewKey) -> Key {
    let c = keys.create_with_rng(&Actor::system(), spec, rng).unwrap();
    Key {
        id: c.record.id,
        token: c.token.expose_secret().to_owned(),
    }
}

#[test]
fn vendor_mode_table() {
    let keys = KeyManager::builder(MemoryKeyStore::new())
        .sealing_keys(ring())
        .policy(Policy {
            signatures: SignatureConfig {
                max_body_len: MAX_BODY,
                ..SignatureConfig::default()
            },
            ..Policy::default()
        })
        .build()
        .unwrap();
    let owner = OwnerId::new("merchant_adversarial").unwrap();
    let mut rng = StdRng::seed_from_u64(0x5eed_5160);
    let a = create(
        &keys,
        &mut rng,
        NewKey::secret(owner.clone(), "a").signing(),
    );
    let b = create(
        &keys,
        &mut rng,
        NewKey::secret(owner.clone(), "b").signing(),
    );
    let bearer = create(&keys, &mut rng, NewKey::secret(owner.clone(), "bearer"));
    let revoked = create(
        &keys,
        &mut rng,
        NewKey::secret(owner.clone(), "revoked").signing(),
    );
    let inactive = create(
        &keys,
        &mut rng,
        NewKey::secret(owner.clone(), "inactive")
            .signing()
            .inactive(),
    );
    keys.revoke(&Actor::system(), &revoked.id).unwrap();
    let unknown = KeyFormat::default()
        .generate_with_rng(KeyKind::Secret, Environment::Live, &mut rng)
        .unwrap()
        .id
        .to_string();

    let ida = a.id_text();
    let sig = a.sign(BODY);
    // Client side agrees with a plain HMAC-SHA512 keyed with the token text.
    assert_eq!(sig, hmac512(a.token.as_bytes(), &[BODY]));
    let raw_sig: Vec<u8> = (0..64)
        .map(|i| u8::from_str_radix(&sig[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let secret_part = &a.token[8 + 22..8 + 22 + 35];
    let mut flipped_body = BODY.to_vec();
    flipped_body[5] ^= 0x01;
    let mut g_sig = sig.clone();
    g_sig.replace_range(10..11, "g");
    let mut one_upper = sig.clone();
    let letter = one_upper.find(|c: char| c.is_ascii_alphabetic()).unwrap();
    one_upper.replace_range(letter..=letter, &sig[letter..=letter].to_uppercase());
    let at_limit = vec![b'x'; MAX_BODY];
    let over_limit = vec![b'x'; MAX_BODY + 1];
    let pretty_body = String::from_utf8(BODY.to_vec()).unwrap().replace(',', ", ");

    use Expect::{Accepted, Refused};
    let ok_a = Accepted(a.id);
    let bad = Refused(Rejection::BadSignature);
    let malformed = Refused(Rejection::Malformed);
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        row(&ida, &sig, BODY, ok_a, "genuine signed request"),
        row(&ida, a.sign(b""), b"", ok_a, "empty body, genuinely signed"),
        row(b.id_text(), b.sign(BODY), BODY, Accepted(b.id), "another key's genuine request"),
        // ---- the body must be exactly what was signed
        row(&ida, &sig, [BODY, b"\n".as_slice()].concat(), bad, "body with a trailing newline"),
        row(&ida, &sig, &flipped_body, bad, "one body bit flipped"),
        row(&ida, &sig, pretty_body.as_bytes(), bad, "body re-serialized with spaces"),
        row(&ida, &sig, b"", bad, "body dropped"),
        row(&ida, &sig, [BODY, BODY].concat(), bad, "body sent twice"),
        // ---- signature header form
        row(&ida, sig.to_uppercase(), BODY, bad, "upper-case hex refused (LowerOnly)"),
        row(&ida, &one_upper, BODY, bad, "one upper-case hex letter"),
        row(&ida, format!("sha512={sig}"), BODY, bad, "sha512= prefix"),
        row(&ida, format!("hmac-sha512 {sig}"), BODY, bad, "scheme prefix"),
        row(&ida, format!(" {sig}"), BODY, bad, "leading space"),
        row(&ida, format!("{sig} "), BODY, bad, "trailing space"),
        row(&ida, format!("{sig}\n"), BODY, bad, "trailing newline"),
        row(&ida, format!("{sig}\0"), BODY, bad, "trailing NUL"),
        row(&ida, &sig[..127], BODY, bad, "127 hex characters (odd length)"),
        row(&ida, &sig[..126], BODY, bad, "126 hex characters (truncated tag)"),
        row(&ida, &sig[..64], BODY, bad, "first half of the tag"),
        row(&ida, format!("{sig}0"), BODY, bad, "129 hex characters"),
        row(&ida, format!("{sig}00"), BODY, bad, "130 hex characters (extra byte)"),
        row(&ida, "", BODY, bad, "empty signature header"),
        row(&ida, "0".repeat(128), BODY, bad, "all-zero tag"),
        row(&ida, "f".repeat(128), BODY, bad, "all-ones tag"),
        row(&ida, base64(&raw_sig), BODY, bad, "base64 of the right tag"),
        row(&ida, &raw_sig, BODY, bad, "the raw 64 tag bytes"),
        row(&ida, format!("{sig},{sig}"), BODY, bad, "two values comma-joined"),
        row(&ida, format!("{sig}, {sig}"), BODY, bad, "two values comma-space-joined"),
        row(&ida, &g_sig, BODY, bad, "non-hex letter"),
        row(&ida, format!("{}\u{e9}", &sig[..126]), BODY, bad, "non-ASCII character (same byte length)"),
        row(&ida, format!("0x{}", &sig[..126]), BODY, bad, "0x prefix"),
        // ---- the wrong key or the wrong construction
        row(&ida, hmac256(a.token.as_bytes(), BODY), BODY, bad, "HMAC-SHA256 instead of SHA512"),
        row(&ida, hex(&Sha512::digest(BODY)), BODY, bad, "unkeyed SHA-512 of the body"),
        row(&ida, hmac512(secret_part.as_bytes(), &[BODY]), BODY, bad, "keyed with the 35-character secret part only"),
        row(&ida, hmac512(ida.as_bytes(), &[BODY]), BODY, bad, "keyed with the public key id"),
        row(&ida, hmac512(format!("{}\n", a.token).as_bytes(), &[BODY]), BODY, bad, "keyed with the token and a newline"),
        row(&ida, hmac512(a.token.replace("_live_", "_test_").as_bytes(), &[BODY]), BODY, bad, "keyed with the token in the other environment"),
        row(&ida, hmac512(a.token.as_bytes(), &[ida.as_bytes(), BODY]), BODY, bad, "key id prepended to the signed message"),
        row(&ida, b.sign(BODY), BODY, bad, "another key's signature under this key id"),
        row(b.id_text(), &sig, BODY, bad, "this key's signature under another key id"),
        // ---- the key header
        row(&a.token, &sig, BODY, malformed, "the whole token as key id"),
        row(format!("{ida} "), &sig, BODY, malformed, "key id with a trailing space"),
        row(format!(" {ida}"), &sig, BODY, malformed, "key id with a leading space"),
        row(format!("{ida}\r\n"), &sig, BODY, malformed, "key id with CRLF"),
        row("", &sig, BODY, malformed, "empty key id"),
        row(&ida[..21], &sig, BODY, malformed, "21-character key id"),
        row(format!("{ida}0"), &sig, BODY, malformed, "23-character key id"),
        row("z".repeat(22), &sig, BODY, malformed, "non-canonical key id (overflows 128 bits)"),
        row(ida.replace(|c: char| c.is_ascii_digit(), "%30"), &sig, BODY, malformed, "percent-encoded key id"),
        row(format!("sk_live_{ida}"), &sig, BODY, malformed, "prefixed key id"),
        row(&unknown, &sig, BODY, Refused(Rejection::UnknownKey), "well-formed id that was never issued"),
        row(&unknown, "xyz", BODY, bad, "unknown id and malformed signature: the signature form is checked offline first"),
        row("not-an-id", "xyz", BODY, malformed, "malformed id and signature: the id is checked first"),
        // ---- the key's kind and status
        row(bearer.id_text(), hmac512(bearer.token.as_bytes(), &[BODY]), BODY, Refused(Rejection::NotASigningKey), "bearer key used for signing"),
        row(bearer.id_text(), "0".repeat(128), BODY, Refused(Rejection::NotASigningKey), "bearer key id with a forged signature"),
        row(revoked.id_text(), revoked.sign(BODY), BODY, Refused(Rejection::Revoked), "revoked signing key, genuine signature"),
        row(revoked.id_text(), "0".repeat(128), BODY, bad, "revoked key, forged signature: status is not revealed"),
        row(inactive.id_text(), inactive.sign(BODY), BODY, Refused(Rejection::Inactive), "inactive signing key, genuine signature"),
        row(inactive.id_text(), "0".repeat(128), BODY, bad, "inactive key, forged signature: status is not revealed"),
        // ---- the body limit
        row(&ida, a.sign(&at_limit), &at_limit, ok_a, "body exactly at max_body_len"),
        row(&ida, a.sign(&over_limit), &over_limit, Refused(Rejection::BodyTooLarge), "body one byte over max_body_len"),
        row(&ida, "xyz", &over_limit, bad, "over-long body and malformed signature: signature form first"),
        row(&unknown, a.sign(&over_limit), &over_limit, Refused(Rejection::BodyTooLarge), "over-long body refused before the store"),
    ];
    assert!(rows.len() >= 60, "table shrank: {}", rows.len());
    for r in &rows {
        let request = SignedRequest::new(&r.key, &r.signature, &r.body);
        check(&keys, &request, r.expect, r.why);
    }
    // Replay-mode headers next to a vendor-mode signature are ignored in
    // vendor mode (they are not part of what was signed).
    let request = SignedRequest::new(ida.as_bytes(), sig.as_bytes(), BODY)
        .replay_protected(b"junk", b"!", b"post", b"/\n");
    check(
        &keys,
        &request,
        ok_a,
        "replay headers ignored in vendor mode",
    );
}

fn check(
    keys: &KeyManager<MemoryKeyStore>,
    request: &SignedRequest<'_>,
    expect: Expect,
    why: &str,
) {
    let got = keys.verify_signed(request, &RequestContext::new());
    match (expect, &got) {
        (Expect::Accepted(id), Ok(v)) => assert_eq!(v.id(), id, "{why}: accepted as another key"),
        (Expect::Refused(r), Err(VerifyError::Rejected(g))) if r == *g => {}
        _ => panic!("{why}: expected {expect:?}, got {got:?}"),
    }
}

/// One replay-protected request: the clock, the key, the five head fields,
/// the signature and the body.
struct ReplayRow {
    now: UtcDateTime,
    key: usize,
    ts: Vec<u8>,
    nonce: Vec<u8>,
    method: Vec<u8>,
    path: Vec<u8>,
    signature: String,
    expect: Expect,
    why: String,
}

#[test]
fn replay_mode_table() {
    let clock = Arc::new(ManualClock::new(T0));
    let keys = KeyManager::builder(MemoryKeyStore::new())
        .clock(Arc::clone(&clock))
        .sealing_keys(ring())
        .policy(Policy {
            signatures: SignatureConfig {
                replay: Some(ReplayConfig::default()),
                ..SignatureConfig::default()
            },
            ..Policy::default()
        })
        .build()
        .unwrap();
    let owner = OwnerId::new("merchant_replay").unwrap();
    let mut rng = StdRng::seed_from_u64(0x5eed_4e91);
    let ks = [
        create(
            &keys,
            &mut rng,
            NewKey::secret(owner.clone(), "a").signing(),
        ),
        create(
            &keys,
            &mut rng,
            NewKey::secret(owner.clone(), "b").signing(),
        ),
    ];
    let tolerance = i64::try_from(ReplayConfig::default().tolerance.as_secs()).unwrap();
    assert_eq!(tolerance, 300);
    let t0 = T0.unix_timestamp();
    let ts = |offset: i64| (t0 + offset).to_string();
    let at = |offset: i64| T0 + Duration::seconds(offset);

    // The raw helper agrees with the crate's client for canonical input.
    let signer = RequestSigner::for_token(&ks[0].token).unwrap();
    let headers = signer
        .sign_replay_protected(
            &ReplayRequest {
                timestamp: T0,
                nonce: "check-nonce-0000",
                method: "POST",
                path: "/v1/pay",
            },
            BODY,
        )
        .unwrap();
    assert_eq!(
        headers.signature,
        replay_sig(
            &ks[0].token,
            ts(0).as_bytes(),
            b"check-nonce-0000",
            b"POST",
            b"/v1/pay",
            BODY
        )
    );

    let mut counter = 0u32;
    let mut fresh = || {
        counter += 1;
        format!("row-nonce-{counter:06}").into_bytes()
    };
    use Expect::{Accepted, Refused};
    let ok = |k: usize| Accepted(ks[k].id);
    let stale = Refused(Rejection::StaleRequest);
    let bad = Refused(Rejection::BadSignature);
    let replayed = Refused(Rejection::Replayed);

    let mut rows: Vec<ReplayRow> = Vec::new();
    // A row signed correctly over exactly the bytes sent.
    let mut signed =
        |now: UtcDateTime, key: usize, ts: &[u8], nonce: &[u8], expect: Expect, why: String| {
            rows.push(ReplayRow {
                now,
                key,
                ts: ts.to_vec(),
                nonce: nonce.to_vec(),
                method: b"POST".to_vec(),
                path: b"/v1/pay".to_vec(),
                signature: replay_sig(&ks[key].token, ts, nonce, b"POST", b"/v1/pay", BODY),
                expect,
                why,
            });
        };

    // ---- canonical
    signed(
        T0,
        0,
        ts(0).as_bytes(),
        &fresh(),
        ok(0),
        "canonical timestamp and nonce".into(),
    );
    // ---- non-canonical timestamps, each signed over the very bytes sent
    let t = ts(0);
    let max_plus_one = "9223372036854775808";
    #[rustfmt::skip]
    let timestamp_rows: Vec<(String, Expect, &str)> = vec![
        (format!("+{t}"), stale, "plus sign"),
        (format!("0{t}"), stale, "leading zero"),
        (format!(" {t}"), stale, "leading space"),
        (format!("{t} "), stale, "trailing space"),
        (format!("{t}\t"), stale, "trailing tab"),
        (format!("{t}.0"), stale, "decimal fraction"),
        (format!("{t}000"), stale, "milliseconds instead of seconds"),
        (format!("{}e{}", &t[..1], t.len() - 1), stale, "scientific notation"),
        (format!("{:#x}", t0), stale, "hexadecimal"),
        (format!("-{t}"), stale, "negative"),
        (format!("{t:0>20}"), stale, "zero-padded to 20 digits"),
        ("+1".into(), stale, "+1"),
        ("01".into(), stale, "01"),
        (" 1".into(), stale, "space then 1"),
        ("1 ".into(), stale, "1 then space"),
        ("1.0".into(), stale, "1.0"),
        ("1e3".into(), stale, "1e3"),
        ("0x10".into(), stale, "0x10"),
        ("-1".into(), stale, "-1"),
        ("-0".into(), stale, "-0"),
        ("0".into(), stale, "the epoch: canonical, far outside the window"),
        ("1".into(), stale, "canonical 1, far outside the window"),
        ("1".repeat(20), stale, "20 digits"),
        (i64::MAX.to_string(), stale, "i64::MAX: canonical, far in the future"),
        (max_plus_one.into(), stale, "i64::MAX + 1 (19 digits, overflows)"),
        (u64::MAX.to_string(), stale, "u64::MAX"),
        (t.chars().map(|c| char::from_u32(0xff10 + c.to_digit(10).unwrap()).unwrap()).collect(), stale, "full-width digits"),
        (t.chars().map(|c| char::from_u32(0x0660 + c.to_digit(10).unwrap()).unwrap()).collect(), stale, "Arabic-Indic digits"),
        (String::new(), bad, "empty timestamp: the header is missing"),
    ];
    for (ts_text, expect, why) in timestamp_rows {
        signed(
            T0,
            0,
            ts_text.as_bytes(),
            &fresh(),
            expect,
            format!("timestamp {ts_text:?}: {why}"),
        );
    }
    // ---- exact tolerance boundaries, both directions
    for (now, offset, expect, why) in [
        (at(0), -tolerance, ok(0), "exactly tolerance in the past"),
        (
            at(0),
            -tolerance - 1,
            stale,
            "one second beyond the past edge",
        ),
        (at(0), tolerance, ok(0), "exactly tolerance in the future"),
        (
            at(0),
            tolerance + 1,
            stale,
            "one second beyond the future edge",
        ),
        (
            at(0) + Duration::milliseconds(999),
            -tolerance,
            ok(0),
            "sub-second now is truncated: still exactly at the edge",
        ),
        (
            at(0) + Duration::milliseconds(999),
            tolerance,
            ok(0),
            "sub-second now, future edge",
        ),
        (
            at(1),
            -tolerance,
            stale,
            "one second later the past edge is stale",
        ),
        (
            at(-1),
            tolerance,
            stale,
            "one second earlier the future edge is stale",
        ),
        (at(0), 0, ok(0), "timestamp equal to now"),
    ] {
        signed(
            now,
            0,
            ts(offset).as_bytes(),
            &fresh(),
            expect,
            format!("boundary: {why}"),
        );
    }
    // ---- nonces (valid timestamp)
    #[rustfmt::skip]
    let nonce_rows: Vec<(Vec<u8>, Expect, &str)> = vec![
        (b"a".repeat(15), stale, "15 characters: too short"),
        (b"b".repeat(16), ok(0), "16 characters: shortest"),
        (b"c".repeat(64), ok(0), "64 characters: longest"),
        (b"d".repeat(65), stale, "65 characters: too long"),
        (b"Az09_-Az09_-Az09_-".to_vec(), ok(0), "every allowed character class"),
        (b"nonce.with.dots.0".to_vec(), stale, "dots"),
        (b"nonce/with/slash/0".to_vec(), stale, "slashes"),
        (b"nonce+with+plus+00".to_vec(), stale, "plus signs (base64)"),
        (b"bm9uY2Utbm9uY2U=".to_vec(), stale, "base64 padding"),
        (b"nonce:with:colons".to_vec(), stale, "colons"),
        (b"nonce with spaces0".to_vec(), stale, "spaces"),
        (b"nonce\nPOST\n/v1/pay".to_vec(), stale, "newlines forging the canonical message"),
        (b"nonce\0with\0nul\0-00".to_vec(), stale, "NUL bytes"),
        ("nonce-caf\u{e9}-000000".as_bytes().to_vec(), stale, "non-ASCII letter"),
        ("\u{ff4e}\u{ff4f}\u{ff4e}\u{ff43}\u{ff45}-0000000".as_bytes().to_vec(), stale, "full-width letters"),
        (b"nonce%2Dencoded%2D0".to_vec(), stale, "percent-encoding"),
        (Vec::new(), bad, "empty nonce: the header is missing"),
    ];
    for (nonce, expect, why) in nonce_rows {
        signed(
            T0,
            0,
            ts(0).as_bytes(),
            &nonce,
            expect,
            format!("nonce: {why}"),
        );
    }
    // ---- replays and nonce scope
    let n1 = b"replay-nonce-0001";
    signed(
        T0,
        0,
        ts(0).as_bytes(),
        n1,
        ok(0),
        "first use of a nonce".into(),
    );
    signed(
        T0,
        0,
        ts(0).as_bytes(),
        n1,
        replayed,
        "the same request again".into(),
    );
    signed(
        T0,
        0,
        ts(5).as_bytes(),
        n1,
        replayed,
        "the same nonce with a new timestamp inside the window".into(),
    );
    signed(
        T0,
        1,
        ts(0).as_bytes(),
        n1,
        ok(1),
        "the same nonce under another key: nonces are per key".into(),
    );
    signed(
        T0,
        0,
        ts(-tolerance - 1).as_bytes(),
        n1,
        stale,
        "used nonce with a stale timestamp: the timestamp is checked first".into(),
    );
    // ---- forged requests cannot burn a nonce
    let n2 = b"forged-nonce-0001";
    rows.push(ReplayRow {
        now: T0,
        key: 0,
        ts: ts(0).into_bytes(),
        nonce: n2.to_vec(),
        method: b"POST".to_vec(),
        path: b"/v1/pay".to_vec(),
        signature: "0".repeat(128),
        expect: bad,
        why: "forged signature with a fresh nonce".into(),
    });
    let mut signed =
        |now: UtcDateTime, key: usize, ts: &[u8], nonce: &[u8], expect: Expect, why: String| {
            rows.push(ReplayRow {
                now,
                key,
                ts: ts.to_vec(),
                nonce: nonce.to_vec(),
                method: b"POST".to_vec(),
                path: b"/v1/pay".to_vec(),
                signature: replay_sig(&ks[key].token, ts, nonce, b"POST", b"/v1/pay", BODY),
                expect,
                why,
            });
        };
    signed(
        T0,
        0,
        ts(0).as_bytes(),
        n2,
        ok(0),
        "the genuine request with the nonce a forgery tried".into(),
    );
    // ---- nonce memory ends exactly when the timestamp leaves the window
    let n3 = b"expiry-nonce-0001";
    signed(
        at(0),
        0,
        ts(0).as_bytes(),
        n3,
        ok(0),
        "nonce recorded at t0".into(),
    );
    signed(
        at(tolerance),
        0,
        ts(tolerance).as_bytes(),
        n3,
        replayed,
        "at t0+tolerance the nonce is still remembered".into(),
    );
    signed(
        at(tolerance + 1),
        0,
        ts(0).as_bytes(),
        n3,
        stale,
        "the original request is stale at t0+tolerance+1".into(),
    );
    signed(
        at(tolerance + 1),
        0,
        ts(tolerance + 1).as_bytes(),
        n3,
        ok(0),
        "at t0+tolerance+1 the nonce may be reused with a fresh timestamp".into(),
    );

    // ---- method, path and construction (raw rows)
    let n = |i: u32| format!("method-nonce-{i:04}").into_bytes();
    let sig_with = |ts: &[u8], nonce: &[u8], method: &[u8], path: &[u8]| {
        replay_sig(&ks[0].token, ts, nonce, method, path, BODY)
    };
    // After the expiry rows the clock is at t0+tolerance+1: the replay cache
    // never checks at an earlier instant again, so these rows run there.
    let base = tolerance + 1;
    let t = ts(base).into_bytes();
    #[rustfmt::skip]
    let raw: Vec<(Vec<u8>, Vec<u8>, Vec<u8>, String, Expect, &str)> = vec![
        // nonce, method, path (as the server passes them), signature, expected, why
        (n(1), b"POST".to_vec(), b"/v1/pay".to_vec(), sig_with(&t, &n(1), b"POST", b"/v1/pay"), ok(0), "method and path bound"),
        (n(2), b"".to_vec(), b"".to_vec(), sig_with(&t, &n(2), b"", b""), ok(0), "method and path not bound (empty on both sides)"),
        (n(3), b"GET".to_vec(), b"/v1/pay".to_vec(), sig_with(&t, &n(3), b"POST", b"/v1/pay"), bad, "signed for POST, sent as GET"),
        (n(4), b"POST".to_vec(), b"/v1/pay?x=1".to_vec(), sig_with(&t, &n(4), b"POST", b"/v1/pay"), bad, "query appended to the path"),
        (n(5), b"POST".to_vec(), b"/v1/refund".to_vec(), sig_with(&t, &n(5), b"POST", b"/v1/pay"), bad, "body replayed against another endpoint"),
        (n(6), b"".to_vec(), b"".to_vec(), sig_with(&t, &n(6), b"POST", b"/v1/pay"), bad, "signed with method and path, server binds none"),
        (n(7), b"post".to_vec(), b"/v1/pay".to_vec(), sig_with(&t, &n(7), b"post", b"/v1/pay"), bad, "lower-case method cannot be bound"),
        (n(8), b"POST".to_vec(), b"/v1/pay\n".to_vec(), sig_with(&t, &n(8), b"POST", b"/v1/pay\n"), bad, "newline in the path cannot be bound"),
        (n(9), b"POST".to_vec(), b"/v1/\tpay".to_vec(), sig_with(&t, &n(9), b"POST", b"/v1/\tpay"), bad, "tab in the path cannot be bound"),
        (n(10), b"POST".to_vec(), b"/v1/pay".to_vec(), hmac512(ks[0].token.as_bytes(), &[BODY]), bad, "vendor-mode signature in replay mode"),
        (n(11), b"POST".to_vec(), b"/v1/pay".to_vec(), hmac512(ks[0].token.as_bytes(), &[b"api-keys-v2\n", &t, b"\n", &n(11), b"\nPOST\n/v1/pay\n", BODY]), bad, "another label version"),
        (n(12), b"POST".to_vec(), b"/v1/pay".to_vec(), hmac512(ks[0].token.as_bytes(), &[&t, b"\n", &n(12), b"\nPOST\n/v1/pay\n", BODY]), bad, "label missing"),
        (n(13), b"POST".to_vec(), b"/v1/pay".to_vec(), sig_with(&t, &n(13), b"POST", b"/v1/pay").to_uppercase(), bad, "upper-case hex in replay mode"),
        (n(14), b"POST".to_vec(), b"/v1/pay".to_vec(), replay_sig(&ks[1].token, &t, &n(14), b"POST", b"/v1/pay", BODY), bad, "another key's replay signature"),
    ];
    for (nonce, method, path, signature, expect, why) in raw {
        rows.push(ReplayRow {
            now: at(base),
            key: 0,
            ts: t.clone(),
            nonce,
            method,
            path,
            signature,
            expect,
            why: format!("method/path: {why}"),
        });
    }
    // Signed over the canonical timestamp, sent with a non-canonical one.
    rows.push(ReplayRow {
        now: at(base),
        key: 0,
        ts: format!("0{}", ts(base)).into_bytes(),
        nonce: b"sent-noncanonical-01".to_vec(),
        method: b"POST".to_vec(),
        path: b"/v1/pay".to_vec(),
        signature: replay_sig(
            &ks[0].token,
            ts(base).as_bytes(),
            b"sent-noncanonical-01",
            b"POST",
            b"/v1/pay",
            BODY,
        ),
        expect: stale,
        why: "signed over the canonical timestamp, sent zero-padded".into(),
    });

    assert!(rows.len() >= 80, "table shrank: {}", rows.len());
    for r in &rows {
        clock.set(r.now);
        let id = ks[r.key].id.to_string();
        let request = SignedRequest::new(id.as_bytes(), r.signature.as_bytes(), BODY)
            .replay_protected(&r.ts, &r.nonce, &r.method, &r.path);
        check(&keys, &request, r.expect, &r.why);
    }
}
