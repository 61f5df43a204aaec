//! The embedded store passes the store conformance suite, sync and async.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::type_complexity,
    reason = "test code: a failed expectation should panic"
)]
use api_keys::{MemoryKeyStore, testing};

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
    let store = std::sync::Arc::new(MemoryKeyStore::new());
    testing::run_conformance(&store).unwrap();
    futures_lite_block_on(testing::run_conformance_async(&store)).unwrap();
    let keys = api_keys::KeyManager::new(std::sync::Arc::clone(&store));
    let owner = api_keys::OwnerId::new("acct_shared").unwrap();
    let created = futures_lite_block_on(keys.create_async(
        &api_keys::Actor::system(),
        api_keys::NewKey::secret(owner.clone(), "shared"),
    ))
    .unwrap();
    // Visible through the host's handle on the same store.
    assert_eq!(
        api_keys::KeyStore::get(&*store, &created.record.id)
            .unwrap()
            .unwrap()
            .owner,
        owner
    );
}
