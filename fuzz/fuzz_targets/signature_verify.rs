//! Signature header parsing and verification: never panics; a verified
//! signature equals the independently computed HMAC-SHA512 (differential
//! oracle), in lower-case hex.
#![no_main]
use api_keys::signing::{HexCase, SigningKey, parse_signature_header};
use hmac::{KeyInit, Mac};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cut = data.iter().position(|b| *b == b'|').unwrap_or(data.len());
    let (header, body) = data.split_at(cut);
    let body = body.get(1..).unwrap_or(&[]);
    let _ = parse_signature_header(header, HexCase::AnyCase);
    let key = SigningKey::new(b"AbCdEfG123456").unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha512>::new_from_slice(b"AbCdEfG123456").unwrap();
    mac.update(body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let verified = key.verify(body, header).is_ok();
    assert_eq!(verified, header == expected.as_bytes(), "oracle disagrees");
    // And the crate's own signature always verifies.
    let sig = key.sign(body).to_hex();
    assert_eq!(sig, expected);
    assert!(key.verify(body, sig.as_bytes()).is_ok());
});
