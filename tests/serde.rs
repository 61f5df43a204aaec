//! The record's serde form (feature `serde`): a storage format with a
//! stability promise. Records round-trip and carry no secret; the committed
//! fixtures in `tests/data/records/` are read back and written byte for
//! byte, so a change that would break stored records fails here.
//!
//! Without the `serde` feature there is nothing to test: run
//! `cargo test --features serde --test serde` (or `--all-features`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed expectation should panic"
)]

#[cfg(not(feature = "serde"))]
#[test]
fn serde_tests_need_the_serde_feature() {
    // Straight to stderr: the harness captures `eprintln!` of passing tests.
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "skipped tests/serde.rs: the record codec exists only with the `serde` feature; \
         run `cargo test --features serde --test serde` (CI runs it with --all-features)"
    );
}

#[cfg(feature = "serde")]
mod codec {
    use api_keys::{
        Actor, DomainAllowList, Environment, IpAllowList, KeyId, KeyKind, KeyManager, KeyRecord,
        KeyStatus, MemoryKeyStore, NewKey, OwnerId, RECORD_FORMAT, RollOptions, Scopes,
        SealedSecret, SealingKey, SealingKeyRing, SecretHash,
    };
    use std::path::PathBuf;
    use time::macros::utc_datetime;

    fn fixture_path(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/records")
            .join(name)
    }

    /// The committed fixture, written once: with `API_KEYS_WRITE_FIXTURES=1`
    /// a missing fixture is created from the current writer. An existing
    /// one is never overwritten — stored records do not change.
    fn fixture(name: &str, record: &KeyRecord) -> String {
        let path = fixture_path(name);
        if !path.exists() && std::env::var_os("API_KEYS_WRITE_FIXTURES").is_some_and(|v| v == "1") {
            let mut json = serde_json::to_string_pretty(record).unwrap();
            json.push('\n');
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, json).unwrap();
        }
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn id(text: &str) -> KeyId {
        KeyId::parse(text).unwrap()
    }

    /// A signing key in its grace window, every field set, instants with
    /// nanoseconds.
    fn signing_key() -> KeyRecord {
        KeyRecord {
            id: id("1NkQ4JdUdzkOeuj5ODfaLf"),
            owner: OwnerId::new("acct_fixture").unwrap(),
            kind: KeyKind::Secret,
            environment: Environment::Live,
            name: "billing service — ünïcode, \"quotes\"".into(),
            note: Some("in the vault\nsecond line".into()),
            description: Some("signs webhooks".into()),
            scopes: Scopes::new(["charges:write", "refunds/read"]).unwrap(),
            allowed_domains: DomainAllowList::new(["example.com", "*.example.org"]).unwrap(),
            allowed_ips: IpAllowList::parse("10.0.0.0/8, 2001:db8::1").unwrap(),
            status: KeyStatus::Active,
            created_at: utc_datetime!(2026-03-01 09:00:00.123_456_789),
            expires_at: Some(utc_datetime!(2027-03-01 00:00)),
            last_used_at: Some(utc_datetime!(2026-03-02 10:30:00.5)),
            use_count: 0,
            revoked_at: None,
            predecessor: Some(id("0aVXhVb3JmN2UY8Thbb0Cu")),
            successor: Some(id("3Zk0fL7s2Qe9XcVbN1mPqR")),
            rolled_at: Some(utc_datetime!(2026-03-03 00:00:00.000_001)),
            grace_ends_at: Some(utc_datetime!(2026-03-03 12:00:00.000_001)),
            version: 4,
            secret_hash: Some(SecretHash {
                pepper_version: Some(2),
                digest: core::array::from_fn(|i| i as u8 * 7),
            }),
            signing: true,
            sealed_secret: Some(SealedSecret {
                key_version: 3,
                nonce: core::array::from_fn(|i| 0xF0 ^ i as u8),
                ciphertext: (0..48).map(|i| (i * 5) as u8).collect(),
            }),
            redacted: "sk_live_…9Qa2".into(),
        }
    }

    /// A publishable test key with nothing optional set.
    fn bare_key() -> KeyRecord {
        KeyRecord {
            id: id("7Bx3mWq9PzL2kD5nR8tYvA"),
            owner: OwnerId::new("acct_bare").unwrap(),
            kind: KeyKind::Publishable,
            environment: Environment::Test,
            name: "Default API Key".into(),
            note: None,
            description: None,
            scopes: Scopes::default(),
            allowed_domains: DomainAllowList::default(),
            allowed_ips: IpAllowList::default(),
            status: KeyStatus::Revoked,
            created_at: utc_datetime!(2026-01-01 00:00),
            expires_at: None,
            last_used_at: None,
            use_count: 0,
            revoked_at: Some(utc_datetime!(2026-01-02 00:00)),
            predecessor: None,
            successor: None,
            rolled_at: None,
            grace_ends_at: None,
            version: 2,
            secret_hash: Some(SecretHash {
                pepper_version: None,
                digest: [0xA5; 32],
            }),
            signing: false,
            sealed_secret: None,
            redacted: "pk_test_…AbCd".into(),
        }
    }

    /// A pending signing key (no secret yet), with uses counted: the fields
    /// format 1 gained with pending keys and usage counts.
    fn pending_key() -> KeyRecord {
        let mut r = bare_key();
        r.id = id("4PqZr8Ld2VxN6tWc0KbHsE");
        r.kind = KeyKind::Secret;
        r.environment = Environment::Live;
        r.status = KeyStatus::Pending;
        r.revoked_at = None;
        r.secret_hash = None;
        r.signing = true;
        r.use_count = 0;
        r.redacted = "sk_live_…".into();
        r
    }

    /// An active key with uses counted.
    fn used_key() -> KeyRecord {
        let mut r = bare_key();
        r.id = id("5RsAt9Me3WyO7uXd1LcItF");
        r.status = KeyStatus::Active;
        r.revoked_at = None;
        r.last_used_at = Some(utc_datetime!(2026-01-05 08:00:00.000_001));
        r.use_count = 18_446_744_073_709_551_615;
        r
    }

    #[test]
    fn committed_fixtures_read_back_and_are_written_byte_for_byte() {
        for (name, record) in [
            ("v1_signing_key.json", signing_key()),
            ("v1_bare_key.json", bare_key()),
            ("v1_pending_key.json", pending_key()),
            ("v1_used_key.json", used_key()),
        ] {
            let stored = fixture(name, &record);
            let read: KeyRecord = serde_json::from_str(&stored).unwrap();
            assert_eq!(read, record, "{name}: reading changed");
            let mut written = serde_json::to_string_pretty(&record).unwrap();
            written.push('\n');
            assert_eq!(written, stored, "{name}: writing changed");
        }
    }

    /// A record written by hand (or by a later version of format 1): absent
    /// optional fields, another UTC offset, upper-case hex and an unknown
    /// field all read.
    #[test]
    fn lenient_reading_within_format_1() {
        let stored = std::fs::read_to_string(fixture_path("v1_hand_written.json")).unwrap();
        let read: KeyRecord = serde_json::from_str(&stored).unwrap();
        let mut want = bare_key();
        want.status = KeyStatus::Active;
        want.revoked_at = None;
        want.created_at = utc_datetime!(2026-01-01 00:00:00.25);
        assert_eq!(read, want);
    }

    #[test]
    fn the_format_is_versioned_and_checked() {
        assert_eq!(RECORD_FORMAT, 1);
        let json = serde_json::to_value(bare_key()).unwrap();
        assert_eq!(json["format"], 1);
        assert_eq!(json["created_at"], "2026-01-01T00:00:00Z");
        assert_eq!(json["secret_hash"]["digest"], "a5".repeat(32));
        for (field, value, why) in [
            ("format", serde_json::json!(2), "a later format"),
            (
                "created_at",
                serde_json::json!([2026, 1, 0, 0, 0, 0]),
                "the old array form",
            ),
            (
                "created_at",
                serde_json::json!("2026-01-01 00:00:00"),
                "not RFC 3339",
            ),
            (
                "secret_hash",
                serde_json::json!({"pepper_version": null, "digest": "a5"}),
                "a short digest",
            ),
            (
                "secret_hash",
                serde_json::json!({"pepper_version": null, "digest": vec![165u8; 32]}),
                "the old number array",
            ),
            ("owner", serde_json::json!("has space"), "an invalid owner"),
            (
                "allowed_domains",
                serde_json::json!(["localhost"]),
                "a refused domain",
            ),
            (
                "allowed_ips",
                serde_json::json!("not-an-address"),
                "a bad IP list",
            ),
            ("id", serde_json::json!("short"), "a malformed id"),
            (
                "status",
                serde_json::json!("Active"),
                "a status in the wrong case",
            ),
        ] {
            let mut bad = json.clone();
            bad[field] = value;
            assert!(
                serde_json::from_value::<KeyRecord>(bad).is_err(),
                "{why} must be refused"
            );
        }
        let mut missing = json;
        missing.as_object_mut().unwrap().remove("format");
        assert!(serde_json::from_value::<KeyRecord>(missing).is_err());

        // A hash exactly when the key is not pending, a sealed secret
        // exactly when a non-pending key signs.
        let pending = serde_json::to_value(pending_key()).unwrap();
        assert_eq!(pending["secret_hash"], serde_json::Value::Null);
        assert_eq!(pending["signing"], true);
        let active = serde_json::to_value(bare_key()).unwrap();
        for (base, field, value, why) in [
            (
                &pending,
                "secret_hash",
                active["secret_hash"].clone(),
                "a pending key with a hash",
            ),
            (
                &active,
                "secret_hash",
                serde_json::Value::Null,
                "a key without a hash",
            ),
            (
                &active,
                "signing",
                serde_json::json!(true),
                "a signing key without a sealed secret",
            ),
            (
                &pending,
                "status",
                serde_json::json!("active"),
                "an active key without a hash",
            ),
            (
                &active,
                "use_count",
                serde_json::json!(-1),
                "a negative count",
            ),
        ] {
            let mut bad = base.clone();
            bad[field] = value;
            assert!(
                serde_json::from_value::<KeyRecord>(bad).is_err(),
                "{why} must be refused"
            );
        }
    }

    #[test]
    fn records_round_trip_without_secrets() {
        let keys = KeyManager::builder(MemoryKeyStore::new())
            .sealing_keys(SealingKeyRing::new(SealingKey::new(1, &[3; 32]).unwrap()))
            .build()
            .unwrap();
        let created = keys
            .create(
                &Actor::system(),
                NewKey::secret(OwnerId::new("acct").unwrap(), "serde")
                    .note("a note")
                    .scopes(Scopes::new(["a", "b"]).unwrap())
                    .allowed_domains(
                        DomainAllowList::new(["example.com", "*.example.org"]).unwrap(),
                    )
                    .allowed_ips(IpAllowList::parse("10.0.0.0/8, 2001:db8::1").unwrap())
                    .signing(),
            )
            .unwrap();
        let rolled = keys
            .roll(&Actor::system(), &created.record.id, RollOptions::default())
            .unwrap();
        for (record, token) in [
            (rolled.predecessor, created.token),
            (rolled.successor, rolled.token),
        ] {
            let json = serde_json::to_string(&record).unwrap();
            let secret_part = &token.expose_secret()[8 + 22..8 + 22 + 35];
            assert!(
                !json.contains(secret_part),
                "serialized record leaks the secret"
            );
            assert!(json.contains("\"environment\":\"live\""));
            let back: KeyRecord = serde_json::from_str(&json).unwrap();
            assert_eq!(back, record);
        }
    }
}
