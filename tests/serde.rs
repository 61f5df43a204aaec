//! With the `serde` feature, records round-trip and carry no secret.
#![cfg(feature = "serde")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed expectation should panic"
)]
use api_keys::{
    Actor, DomainAllowList, IpAllowList, KeyManager, KeyRecord, MemoryKeyStore, NewKey, OwnerId,
    RollOptions, Scopes, SealingKey, SealingKeyRing,
};

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
                .allowed_domains(DomainAllowList::new(["example.com", "*.example.org"]).unwrap())
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
    // Deserialization validates: a bad allow-list entry is refused.
    let json = serde_json::to_string(&*keys.get(&created.record.id).unwrap()).unwrap();
    let bad = json.replace("example.com", "localhost");
    assert!(serde_json::from_str::<KeyRecord>(&bad).is_err());
}
