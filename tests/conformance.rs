//! The store conformance suite: the embedded store passes it, sync and
//! async; and a store that loses any single field of a record fails it,
//! with that field named.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::type_complexity,
    reason = "test code: a failed expectation should panic"
)]
use api_keys::testing::{self, RECORD_FIELDS};
use api_keys::{
    Environment, KeyId, KeyKind, KeyRecord, KeyStatus, KeyStore, MemoryKeyStore, OwnerId, RollPlan,
    StoreError, WriteCondition,
};
use std::sync::Arc;
use time::{Duration, UtcDateTime};

#[test]
fn memory_store_passes_sync_suite() {
    testing::run_conformance(&MemoryKeyStore::new()).unwrap();
}

#[test]
fn memory_store_passes_async_suite() {
    let store = MemoryKeyStore::new();
    // MemoryKeyStore's futures are ready at once; poll to completion.
    let out = futures_lite_block_on(testing::run_conformance_async(&store));
    out.unwrap();
}

fn futures_lite_block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

#[test]
fn shared_store_keeps_both_apis() {
    // `Arc<MemoryKeyStore>` is a `KeyStore` and an `AsyncKeyStore`, so a
    // store shared between a manager and the host keeps the async API.
    let store = Arc::new(MemoryKeyStore::new());
    testing::run_conformance(&store).unwrap();
    futures_lite_block_on(testing::run_conformance_async(&store)).unwrap();
    let keys = api_keys::KeyManager::new(Arc::clone(&store));
    let owner = OwnerId::new("acct_shared").unwrap();
    let created = futures_lite_block_on(keys.create_async(
        &api_keys::Actor::system(),
        api_keys::NewKey::secret(owner.clone(), "shared"),
    ))
    .unwrap();
    // Visible through the host's handle on the same store.
    assert_eq!(
        KeyStore::get(&*store, &created.record.id)
            .unwrap()
            .unwrap()
            .owner,
        owner
    );
}

// ---- lossy stores -------------------------------------------------------

/// Where a lossy store loses a field.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Path {
    /// On every read (`get` and `list_by_owner`).
    Reads,
    /// Only in `list_by_owner`.
    List,
    /// When writing with `insert`.
    Insert,
    /// When writing with `update`.
    Update,
    /// When writing a roll's records.
    Roll,
    /// When writing with `touch`.
    Touch,
}

/// `MemoryKeyStore` with one field mapped wrongly on one path.
struct Lossy {
    inner: MemoryKeyStore,
    path: Path,
    lose: fn(&mut KeyRecord),
}

impl Lossy {
    fn on(&self, path: Path, r: &KeyRecord) -> KeyRecord {
        let mut r = r.clone();
        if self.path == path {
            (self.lose)(&mut r);
        }
        r
    }
    fn read(&self, path: Path, r: &Arc<KeyRecord>) -> Arc<KeyRecord> {
        if self.path == path || (self.path == Path::Reads && path == Path::List) {
            let mut r = (**r).clone();
            (self.lose)(&mut r);
            Arc::new(r)
        } else {
            Arc::clone(r)
        }
    }
}

impl KeyStore for Lossy {
    fn insert(&self, r: &KeyRecord, c: WriteCondition) -> Result<(), StoreError> {
        self.inner.insert(&self.on(Path::Insert, r), c)
    }
    fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        Ok(KeyStore::get(&self.inner, id)?.map(|r| self.read(Path::Reads, &r)))
    }
    fn list_by_owner(&self, o: &OwnerId) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        Ok(KeyStore::list_by_owner(&self.inner, o)?
            .iter()
            .map(|r| self.read(Path::List, r))
            .collect())
    }
    fn update(&self, r: &KeyRecord, v: u64, c: WriteCondition) -> Result<(), StoreError> {
        KeyStore::update(&self.inner, &self.on(Path::Update, r), v, c)
    }
    fn apply_roll(&self, p: &RollPlan) -> Result<(), StoreError> {
        let plan = RollPlan {
            predecessor: self.on(Path::Roll, &p.predecessor),
            expected_version: p.expected_version,
            successor: self.on(Path::Roll, &p.successor),
        };
        KeyStore::apply_roll(&self.inner, &plan)
    }
    fn touch(&self, id: &KeyId, usage: api_keys::Usage) -> Result<(), StoreError> {
        if self.path == Path::Touch {
            // A touch that writes the instant truncated to the second.
            let usage = api_keys::Usage {
                at: whole_seconds(usage.at),
                ..usage
            };
            return KeyStore::touch(&self.inner, id, usage);
        }
        KeyStore::touch(&self.inner, id, usage)
    }
}

fn whole_seconds(t: UtcDateTime) -> UtcDateTime {
    t.replace_nanosecond(0).unwrap()
}

fn millis(t: UtcDateTime) -> UtcDateTime {
    t.replace_millisecond(t.millisecond()).unwrap()
}

fn other_id() -> KeyId {
    KeyId::from_bytes([0x42; 16])
}

/// One way to lose each field, on every read.
const LOSSES: &[(&str, fn(&mut KeyRecord))] = &[
    ("id", |r| r.id = other_id()),
    ("owner", |r| r.owner = OwnerId::new("someone-else").unwrap()),
    ("kind", |r| r.kind = KeyKind::Secret),
    ("environment", |r| r.environment = Environment::Live),
    ("name", |r| {
        r.name = r.name.trim_end_matches(|c| c != ':').into()
    }),
    ("note", |r| r.note = None),
    ("description", |r| r.description = None),
    ("scopes", |r| r.scopes = Default::default()),
    ("allowed_domains", |r| {
        r.allowed_domains = Default::default()
    }),
    ("allowed_ips", |r| r.allowed_ips = Default::default()),
    ("status", |r| {
        if r.status == KeyStatus::Revoked {
            r.status = KeyStatus::Inactive;
        }
    }),
    ("created_at", |r| r.created_at = whole_seconds(r.created_at)),
    ("expires_at", |r| r.expires_at = None),
    ("last_used_at", |r| r.last_used_at = None),
    ("use_count", |r| r.use_count = 0),
    ("revoked_at", |r| r.revoked_at = None),
    ("predecessor", |r| r.predecessor = None),
    ("successor", |r| r.successor = None),
    ("rolled_at", |r| r.rolled_at = None),
    ("grace_ends_at", |r| r.grace_ends_at = None),
    ("version", |r| r.version = r.version.saturating_add(1)),
    ("secret_hash", |r| r.secret_hash = None),
    ("secret_hash.digest", |r| {
        if let Some(h) = &mut r.secret_hash {
            h.digest[31] ^= 1;
        }
    }),
    ("secret_hash.pepper_version", |r| {
        if let Some(h) = &mut r.secret_hash {
            h.pepper_version = None;
        }
    }),
    ("signing", |r| r.signing = false),
    ("sealed_secret", |r| r.sealed_secret = None),
    ("sealed_secret.key_version", |r| {
        if let Some(s) = &mut r.sealed_secret {
            s.key_version = s.key_version.wrapping_add(1);
        }
    }),
    ("sealed_secret.nonce", |r| {
        if let Some(s) = &mut r.sealed_secret {
            s.nonce[0] ^= 1;
        }
    }),
    ("sealed_secret.ciphertext", |r| {
        if let Some(s) = &mut r.sealed_secret {
            s.ciphertext.pop();
        }
    }),
    ("redacted", |r| r.redacted = r.redacted.to_uppercase()),
];

/// The sub-second part of each instant, lost on every read (to the
/// millisecond: a store must keep microseconds).
const TRUNCATIONS: &[(&str, fn(&mut KeyRecord))] = &[
    ("created_at", |r| r.created_at = millis(r.created_at)),
    ("expires_at", |r| r.expires_at = r.expires_at.map(millis)),
    ("last_used_at", |r| {
        r.last_used_at = r.last_used_at.map(millis)
    }),
    ("revoked_at", |r| r.revoked_at = r.revoked_at.map(millis)),
    ("rolled_at", |r| r.rolled_at = r.rolled_at.map(millis)),
    ("grace_ends_at", |r| {
        r.grace_ends_at = r.grace_ends_at.map(whole_seconds)
    }),
];

fn assert_caught(path: Path, field: &str, lose: fn(&mut KeyRecord)) {
    let store = Lossy {
        inner: MemoryKeyStore::new(),
        path,
        lose,
    };
    let err = testing::run_conformance(&store)
        .expect_err(&format!("a store losing `{field}` on {path:?} passed"));
    assert_eq!(
        err.field,
        Some(field),
        "losing `{field}` on {path:?} was reported as: {err}"
    );
    assert!(err.to_string().contains(field), "{err}");
}

#[test]
fn a_store_losing_any_field_fails_with_the_field_named() {
    for (field, lose) in LOSSES {
        assert_caught(Path::Reads, field, *lose);
    }
}

#[test]
fn a_store_losing_the_sub_second_part_of_any_instant_fails() {
    for (field, lose) in TRUNCATIONS {
        assert_caught(Path::Reads, field, *lose);
    }
}

#[test]
fn every_compared_field_has_a_lossy_store() {
    let covered: Vec<&str> = LOSSES.iter().map(|(f, _)| *f).collect();
    assert_eq!(
        covered, RECORD_FIELDS,
        "a field the kit compares is untested"
    );
}

#[test]
fn a_store_losing_a_field_on_one_path_fails() {
    let allowed_ips: fn(&mut KeyRecord) = |r| r.allowed_ips = Default::default();
    let note: fn(&mut KeyRecord) = |r| r.note = None;
    let sealed: fn(&mut KeyRecord) = |r| r.sealed_secret = None;
    let scopes: fn(&mut KeyRecord) = |r| r.scopes = Default::default();
    let created: fn(&mut KeyRecord) = |r| r.created_at = millis(r.created_at);
    let grace: fn(&mut KeyRecord) = |r| r.grace_ends_at = r.grace_ends_at.map(millis);
    let cases: [(Path, &str, fn(&mut KeyRecord)); 6] = [
        (Path::List, "allowed_ips", allowed_ips),
        (Path::Insert, "created_at", created),
        (Path::Update, "note", note),
        (Path::Roll, "sealed_secret", sealed),
        (Path::Roll, "grace_ends_at", grace),
        (Path::Insert, "scopes", scopes),
    ];
    for (path, field, lose) in cases {
        assert_caught(path, field, lose);
    }
    // A touch that keeps only whole seconds.
    assert_caught(Path::Touch, "last_used_at", |_| {});
}

#[test]
fn the_populated_record_sets_every_field() {
    let owner = OwnerId::new("conformance-fixture").unwrap();
    let r = testing::populated_record(&owner).unwrap();
    assert_eq!(r.owner, owner);
    assert_eq!(
        (r.kind, r.environment, r.status),
        (KeyKind::Publishable, Environment::Test, KeyStatus::Revoked)
    );
    assert!(r.note.is_some() && r.description.is_some());
    assert!(!r.scopes.is_empty() && !r.allowed_domains.is_empty() && !r.allowed_ips.is_any());
    let instants = [
        Some(r.created_at),
        r.expires_at,
        r.last_used_at,
        r.revoked_at,
        r.rolled_at,
        r.grace_ends_at,
    ];
    for t in instants {
        let t = t.expect("every instant is set");
        assert_ne!(t.microsecond() % 1000, 0, "sub-millisecond part in {t}");
        assert_eq!(t.nanosecond() % 1000, 0, "whole microseconds in {t}");
    }
    assert!(r.predecessor.is_some() && r.successor.is_some());
    assert!(r.secret_hash.unwrap().pepper_version.is_some());
    assert!(r.sealed_secret.is_some() && r.signing);
    assert!(r.use_count > 0);
    assert!(r.grace_ends_at <= r.expires_at);
    // Equal to itself in every field, and a change is named.
    assert!(testing::record_differences(&r, &r).is_empty());
    let mut other = r.clone();
    other.rolled_at = other.rolled_at.map(|t| t + Duration::microseconds(1));
    other.note = None;
    assert_eq!(
        testing::record_differences(&r, &other),
        ["note", "rolled_at"]
    );
}

#[test]
fn the_memory_store_counts_its_keys() {
    let store = MemoryKeyStore::new();
    assert!(store.is_empty());
    assert_eq!(store.len(), 0);
    let keys = api_keys::KeyManager::new(store);
    for name in ["a", "b"] {
        keys.create(
            &api_keys::Actor::system(),
            api_keys::NewKey::secret(OwnerId::new("acct_len").unwrap(), name),
        )
        .unwrap();
    }
    assert!(!keys.store().is_empty());
    assert_eq!(keys.store().len(), 2);
    assert_eq!(format!("{:?}", keys.store()), "MemoryKeyStore { keys: 2 }");
}

#[tokio::test]
async fn the_memory_store_keeps_the_changes_it_is_told_to() {
    use api_keys::ChangeFeed;
    let keys = api_keys::KeyManager::new(MemoryKeyStore::new().change_retention(2));
    for name in ["a", "b", "c"] {
        keys.create(
            &api_keys::Actor::system(),
            api_keys::NewKey::secret(OwnerId::new("acct_feed").unwrap(), name),
        )
        .unwrap();
    }
    let page = keys.store().changes_since(0, 10).await.unwrap();
    assert_eq!(
        page.pruned_through, 1,
        "the oldest of three changes is gone"
    );
    assert_eq!(page.changes.len(), 2);
}
