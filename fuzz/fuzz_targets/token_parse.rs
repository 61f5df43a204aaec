//! Token parsing: never panics; whatever parses re-renders to the same text.
#![no_main]
use api_keys::{KeyFormat, KeyId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for format in [
        KeyFormat::default(),
        KeyFormat::builder()
            .secret_prefix("key")
            .publishable_prefix("acme_pk")
            .secret_bytes(20)
            .build()
            .unwrap(),
    ] {
        if let Ok(p) = format.parse(&text) {
            // Oracle: an accepted token has the format's exact length, its
            // id is the 22 characters after the head, and its prefix and
            // environment are the ones parsed.
            assert_eq!(text.len(), format.token_len(p.kind()));
            let head = format!("{}_{}_", format.prefix(p.kind()), p.environment());
            assert!(text.starts_with(&head));
            assert_eq!(&text[head.len()..head.len() + 22], p.id().to_string());
        }
    }
    if let Ok(id) = KeyId::parse_bytes(data) {
        assert_eq!(id.to_string().as_bytes(), data);
    }
});
