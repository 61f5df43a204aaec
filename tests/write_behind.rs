//! `WriteBehindStore`: touches are buffered and written in batches, never
//! lost while the buffer has room, never moved backwards; overflow drops
//! the oldest; failures go to the hook; shutdown flushes within a deadline.
//! Time-based parts run on Tokio's paused clock.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed expectation should panic"
)]
use api_keys::Usage;
use api_keys::{
    Actor, AsyncKeyAudit, AsyncKeyStore, FlushFailure, KeyId, KeyManager, KeyRecord, KeyStore,
    MemoryKeyStore, NewKey, OwnerId, RequestContext, RollPlan, StoreError, WriteBehindConfig,
    WriteBehindStore, WriteCondition,
};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::UtcDateTime;
use time::macros::utc_datetime;

const T0: UtcDateTime = utc_datetime!(2026-08-01 06:00);

/// Counts calls; `touch_many` can be made to fail or to hang.
#[derive(Default)]
struct Spy {
    inner: Arc<MemoryKeyStore>,
    touches: AtomicUsize,
    batches: Mutex<Vec<usize>>,
    fail: AtomicBool,
    hang: AtomicBool,
    /// When set, `touch_many` waits for `release` first.
    gated: AtomicBool,
    release: tokio::sync::Notify,
}

impl AsyncKeyStore for Spy {
    fn insert(
        &self,
        record: &KeyRecord,
        condition: WriteCondition,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        AsyncKeyStore::insert(&self.inner, record, condition)
    }
    fn get(
        &self,
        id: &KeyId,
    ) -> impl Future<Output = Result<Option<Arc<KeyRecord>>, StoreError>> + Send {
        AsyncKeyStore::get(&self.inner, id)
    }
    fn list_by_owner(
        &self,
        owner: &OwnerId,
    ) -> impl Future<Output = Result<Vec<Arc<KeyRecord>>, StoreError>> + Send {
        AsyncKeyStore::list_by_owner(&self.inner, owner)
    }
    fn update(
        &self,
        record: &KeyRecord,
        expected_version: u64,
        condition: WriteCondition,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        AsyncKeyStore::update(&self.inner, record, expected_version, condition)
    }
    fn apply_roll(&self, plan: &RollPlan) -> impl Future<Output = Result<(), StoreError>> + Send {
        AsyncKeyStore::apply_roll(&self.inner, plan)
    }
    fn touch(
        &self,
        id: &KeyId,
        usage: Usage,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.touches.fetch_add(1, SeqCst);
        AsyncKeyStore::touch(&self.inner, id, usage)
    }
    async fn touch_many(&self, touches: &[(KeyId, Usage)]) -> Result<(), StoreError> {
        if self.gated.load(SeqCst) {
            self.release.notified().await;
        }
        if self.hang.load(SeqCst) {
            std::future::pending::<()>().await;
        }
        if self.fail.load(SeqCst) {
            return Err(StoreError::backend("database down"));
        }
        self.batches.lock().unwrap().push(touches.len());
        KeyStore::touch_many(&self.inner, touches)
    }
}

fn owner() -> OwnerId {
    OwnerId::new("acct_wb").unwrap()
}

fn last_used(store: &Spy, id: &KeyId) -> Option<UtcDateTime> {
    KeyStore::get(&store.inner, id)
        .unwrap()
        .unwrap()
        .last_used_at
}

/// `n` keys in the inner store (written directly, so no touch yet).
fn keys(store: &Spy, n: usize) -> Vec<(KeyId, api_keys::Token)> {
    let m = KeyManager::new(Arc::clone(&store.inner));
    (0..n)
        .map(|i| {
            let k = m
                .create(&Actor::system(), NewKey::secret(owner(), format!("k{i}")))
                .unwrap();
            (k.record.id, k.token)
        })
        .collect()
}

#[tokio::test]
async fn verification_does_not_write_and_the_flush_batches() {
    let spy = Arc::new(Spy::default());
    let tokens = keys(&spy, 25);
    let store = WriteBehindStore::new(
        Arc::clone(&spy),
        WriteBehindConfig::default().batch_size(10),
    );
    let keys = KeyManager::new(store);
    for (_, token) in &tokens {
        let v = keys
            .verify_async(token.expose_secret(), &RequestContext::new())
            .await
            .unwrap();
        assert!(v.touched());
    }
    // Nothing reached the store on the request path.
    assert_eq!(spy.touches.load(SeqCst), 0);
    assert!(spy.batches.lock().unwrap().is_empty());
    assert_eq!(keys.store().stats().pending, 25);
    for (id, _) in &tokens {
        assert_eq!(last_used(&spy, id), None);
    }

    assert_eq!(keys.store().flush().await.unwrap(), 25);
    assert_eq!(*spy.batches.lock().unwrap(), [10, 10, 5]);
    assert_eq!(spy.touches.load(SeqCst), 0, "written with touch_many only");
    for (id, _) in &tokens {
        assert!(last_used(&spy, id).is_some());
    }
    let stats = keys.store().stats();
    assert_eq!((stats.pending, stats.written, stats.batches), (0, 25, 3));
}

#[tokio::test]
async fn one_entry_per_key_with_the_latest_instant_never_backwards() {
    let spy = Arc::new(Spy::default());
    let ids: Vec<KeyId> = keys(&spy, 2).into_iter().map(|(id, _)| id).collect();
    let store = WriteBehindStore::new(Arc::clone(&spy), WriteBehindConfig::default());
    let later = T0 + time::Duration::minutes(5);
    store.touch(&ids[0], Usage::once(T0)).await.unwrap();
    store.touch(&ids[0], Usage::once(later)).await.unwrap();
    store.touch(&ids[0], Usage::once(T0)).await.unwrap(); // older: its use counts, not its instant
    store.touch(&ids[1], Usage::once(T0)).await.unwrap();
    assert_eq!(store.stats().pending, 2);
    store.flush().await.unwrap();
    assert_eq!(last_used(&spy, &ids[0]), Some(later));
    let uses = |id: &KeyId| KeyStore::get(&spy.inner, id).unwrap().unwrap().use_count;
    assert_eq!(
        (uses(&ids[0]), uses(&ids[1])),
        (3, 1),
        "every touch's use counts"
    );
    // A later flush of an older instant does not move it back.
    store.touch(&ids[0], Usage::once(T0)).await.unwrap();
    store.flush().await.unwrap();
    assert_eq!(last_used(&spy, &ids[0]), Some(later));
}

#[tokio::test]
async fn a_failed_flush_loses_nothing_while_there_is_room_and_is_reported() {
    let spy = Arc::new(Spy::default());
    let ids: Vec<KeyId> = keys(&spy, 5).into_iter().map(|(id, _)| id).collect();
    let failures = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&failures);
    let store = WriteBehindStore::new(Arc::clone(&spy), WriteBehindConfig::default().batch_size(2))
        .on_flush_error(move |f: &FlushFailure<'_>| {
            // The hook gets the count and the cause, never a request.
            seen.lock().unwrap().push((f.keys, f.error.to_string()));
        });
    for id in &ids {
        store.touch(id, Usage::once(T0)).await.unwrap();
    }
    spy.fail.store(true, SeqCst);
    assert!(store.flush().await.is_err());
    assert_eq!(store.stats().pending, 5, "the failed batch went back");
    assert_eq!(store.stats().failed_flushes, 1);
    assert_eq!(failures.lock().unwrap().len(), 1);
    assert_eq!(failures.lock().unwrap()[0].0, 2);
    // A newer touch while the database is down keeps the newer instant.
    let later = T0 + time::Duration::minutes(1);
    store.touch(&ids[0], Usage::once(later)).await.unwrap();

    spy.fail.store(false, SeqCst);
    assert_eq!(store.flush().await.unwrap(), 5);
    assert_eq!(last_used(&spy, &ids[0]), Some(later));
    for id in &ids[1..] {
        assert_eq!(last_used(&spy, id), Some(T0));
    }
    assert_eq!(store.stats().dropped, 0);
}

#[tokio::test]
async fn overflow_drops_the_oldest_pending_and_counts_it() {
    let spy = Arc::new(Spy::default());
    let ids: Vec<KeyId> = keys(&spy, 5).into_iter().map(|(id, _)| id).collect();
    let store = WriteBehindStore::new(Arc::clone(&spy), WriteBehindConfig::default().capacity(3));
    for id in &ids {
        store.touch(id, Usage::once(T0)).await.unwrap();
    }
    let stats = store.stats();
    assert_eq!((stats.pending, stats.dropped), (3, 2));
    store.flush().await.unwrap();
    assert_eq!(last_used(&spy, &ids[0]), None, "oldest dropped");
    assert_eq!(last_used(&spy, &ids[1]), None, "second oldest dropped");
    for id in &ids[2..] {
        assert_eq!(last_used(&spy, id), Some(T0));
    }
}

#[tokio::test(start_paused = true)]
async fn the_flusher_writes_every_interval_until_closed() {
    let spy = Arc::new(Spy::default());
    let ids: Vec<KeyId> = keys(&spy, 3).into_iter().map(|(id, _)| id).collect();
    let store = WriteBehindStore::new(
        Arc::clone(&spy),
        WriteBehindConfig::default().flush_interval(Duration::from_secs(2)),
    );
    let flusher = tokio::spawn(store.flusher().run(tokio::time::sleep));
    store.touch(&ids[0], Usage::once(T0)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(last_used(&spy, &ids[0]), None, "not before the interval");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(last_used(&spy, &ids[0]), Some(T0));

    store.touch(&ids[1], Usage::once(T0)).await.unwrap();
    store.touch(&ids[2], Usage::once(T0)).await.unwrap();
    let report = store
        .close(Duration::from_secs(5), tokio::time::sleep)
        .await;
    assert_eq!((report.written, report.abandoned), (2, 0));
    assert_eq!(last_used(&spy, &ids[1]), Some(T0));
    assert_eq!(last_used(&spy, &ids[2]), Some(T0));
    tokio::time::timeout(Duration::from_secs(10), flusher)
        .await
        .expect("the flusher stops after close")
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn close_gives_up_at_the_deadline_and_reports_what_was_abandoned() {
    let spy = Arc::new(Spy::default());
    let ids: Vec<KeyId> = keys(&spy, 4).into_iter().map(|(id, _)| id).collect();
    let store = WriteBehindStore::new(Arc::clone(&spy), WriteBehindConfig::default());
    for id in &ids {
        store.touch(id, Usage::once(T0)).await.unwrap();
    }
    spy.hang.store(true, SeqCst);
    let report = store
        .close(Duration::from_secs(3), tokio::time::sleep)
        .await;
    assert_eq!((report.written, report.abandoned), (0, 4));

    // The same with a failing database: retried until the deadline.
    spy.hang.store(false, SeqCst);
    spy.fail.store(true, SeqCst);
    let store = WriteBehindStore::new(Arc::clone(&spy), WriteBehindConfig::default());
    store.touch(&ids[0], Usage::once(T0)).await.unwrap();
    let report = store
        .close(Duration::from_secs(1), tokio::time::sleep)
        .await;
    assert_eq!(report.abandoned, 1);
    assert!(store.stats().failed_flushes > 1, "retried before giving up");
}

#[test]
fn dropping_with_touches_pending_tells_the_hook() {
    let spy = Arc::new(Spy::default());
    let ids: Vec<KeyId> = keys(&spy, 2).into_iter().map(|(id, _)| id).collect();
    let abandoned = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&abandoned);
    let store = WriteBehindStore::new(Arc::clone(&spy), WriteBehindConfig::default())
        .on_flush_error(move |f: &FlushFailure<'_>| {
            seen.fetch_add(f.keys, SeqCst);
        });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        for id in &ids {
            store.touch(id, Usage::once(T0)).await.unwrap();
        }
    });
    drop(store);
    assert_eq!(abandoned.load(SeqCst), 2);
}

#[tokio::test]
async fn the_manager_touches_once_per_interval_through_the_buffer() {
    let spy = Arc::new(Spy::default());
    let (_, token) = keys(&spy, 1).pop().unwrap();
    let t0 = UtcDateTime::now() + time::Duration::seconds(1);
    let clock = Arc::new(api_keys::testing::ManualClock::new(t0));
    let keys = KeyManager::builder(WriteBehindStore::new(
        Arc::clone(&spy),
        WriteBehindConfig::default(),
    ))
    .clock(Arc::clone(&clock))
    .build()
    .unwrap();
    let ctx = RequestContext::new();
    assert!(
        keys.verify_async(token.expose_secret(), &ctx)
            .await
            .unwrap()
            .touched()
    );
    keys.store().flush().await.unwrap();
    // Written: within the interval the next verify does not touch.
    clock.set(t0 + time::Duration::seconds(30));
    assert!(
        !keys
            .verify_async(token.expose_secret(), &ctx)
            .await
            .unwrap()
            .touched()
    );
    clock.set(t0 + time::Duration::seconds(61));
    assert!(
        keys.verify_async(token.expose_secret(), &ctx)
            .await
            .unwrap()
            .touched()
    );
    assert_eq!(keys.store().stats().pending, 1);
}

/// A key used a moment ago is not "unused" because its touch is still in
/// the buffer: audit scans and owner listings see pending touches, and
/// pages stay full when the overlay takes records out of the filter.
#[tokio::test]
async fn audit_scans_and_listings_see_pending_touches() {
    let clock = Arc::new(api_keys::ManualClock::new(T0));
    let inner = Arc::new(MemoryKeyStore::new());
    let store = WriteBehindStore::new(Arc::clone(&inner), WriteBehindConfig::default());
    let keys = KeyManager::builder(store)
        .clock(Arc::clone(&clock))
        .build()
        .unwrap();
    let mut created = Vec::new();
    for i in 0..6 {
        let k = keys
            .create_async(&Actor::system(), NewKey::secret(owner(), format!("k{i}")))
            .await
            .unwrap();
        created.push((k.record.id, k.token));
    }
    created.sort_by_key(|(id, _)| *id);
    clock.advance(time::Duration::days(1));
    // Use the first four (in id order): only the last two stay unused.
    for (_, token) in created.iter().take(4) {
        keys.verify_async(token.expose_secret(), &RequestContext::new())
            .await
            .unwrap();
    }
    let since = T0 + time::Duration::hours(1);
    let unused: Vec<KeyId> = created.iter().skip(4).map(|(id, _)| *id).collect();

    // The store alone has not seen the touches yet.
    let direct = KeyManager::new(Arc::clone(&inner));
    let page = direct.unused_since(since, None, 10).unwrap();
    assert_eq!(page.keys.len(), 6);

    // Through the buffer: the two unused keys, on one full page of two.
    let page = keys.unused_since_async(since, None, 2).await.unwrap();
    let ids: Vec<KeyId> = page.keys.iter().map(|r| r.id).collect();
    assert_eq!(ids, unused);
    // Page by page, the same two and then the end.
    let first = keys.unused_since_async(since, None, 1).await.unwrap();
    assert_eq!(first.keys.len(), 1);
    let second = keys.unused_since_async(since, first.next, 1).await.unwrap();
    assert_eq!(second.next, None);
    let paged: Vec<KeyId> = first
        .keys
        .iter()
        .chain(&second.keys)
        .map(|r| r.id)
        .collect();
    assert_eq!(paged, unused);

    // The owner's listing shows the pending instants too.
    let listed = keys.list_async(&owner()).await.unwrap();
    let used = listed
        .iter()
        .filter(|r| r.last_used_at == Some(T0 + time::Duration::days(1)))
        .count();
    assert_eq!(used, 4);

    // After the flush the store agrees.
    keys.store().flush().await.unwrap();
    let page = direct.unused_since(since, None, 10).unwrap();
    assert_eq!(page.keys.iter().map(|r| r.id).collect::<Vec<_>>(), unused);
}

#[tokio::test]
async fn a_failed_batch_put_back_into_a_full_buffer_is_dropped_and_counted() {
    let spy = Arc::new(Spy::default());
    let ids: Vec<KeyId> = keys(&spy, 4).into_iter().map(|(id, _)| id).collect();
    let config = WriteBehindConfig::default().capacity(2).batch_size(2);
    let store = WriteBehindStore::new(Arc::clone(&spy), config);
    for id in &ids[..2] {
        store.touch(id, Usage::once(T0)).await.unwrap();
    }
    spy.gated.store(true, SeqCst);
    spy.fail.store(true, SeqCst);
    let flushing = tokio::spawn({
        let store = store.clone();
        async move { store.flush().await }
    });
    while store.stats().in_flight < 2 {
        tokio::task::yield_now().await;
    }
    // The buffer fills again while the batch is being written…
    for id in &ids[2..] {
        store.touch(id, Usage::once(T0)).await.unwrap();
    }
    assert_eq!(store.stats().pending, 2);
    // …so the failed batch finds no room: dropped, counted, never past
    // the capacity.
    spy.release.notify_one();
    assert!(flushing.await.unwrap().is_err());
    let stats = store.stats();
    assert_eq!((stats.pending, stats.dropped, stats.in_flight), (2, 2, 0));
}

#[tokio::test]
async fn dropping_a_store_with_nothing_pending_reports_nothing() {
    let spy = Arc::new(Spy::default());
    let ids: Vec<KeyId> = keys(&spy, 1).into_iter().map(|(id, _)| id).collect();
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let store = WriteBehindStore::new(Arc::clone(&spy), WriteBehindConfig::default())
        .on_flush_error(move |_: &FlushFailure<'_>| {
            seen.fetch_add(1, SeqCst);
        });
    store.touch(&ids[0], Usage::once(T0)).await.unwrap();
    assert_eq!(store.flush().await.unwrap(), 1);
    drop(store);
    assert_eq!(calls.load(SeqCst), 0, "nothing was abandoned");
}

#[tokio::test]
async fn a_flush_writes_what_was_pending_when_it_started() {
    let spy = Arc::new(Spy::default());
    let ids: Vec<KeyId> = keys(&spy, 3).into_iter().map(|(id, _)| id).collect();
    let store = WriteBehindStore::new(Arc::clone(&spy), WriteBehindConfig::default().batch_size(1));
    for id in &ids[..2] {
        store.touch(id, Usage::once(T0)).await.unwrap();
    }
    spy.gated.store(true, SeqCst);
    let flushing = tokio::spawn({
        let store = store.clone();
        async move { store.flush().await }
    });
    while store.stats().in_flight < 1 {
        tokio::task::yield_now().await;
    }
    // A touch that arrives during the flush waits for the next one: a
    // flush under steady traffic ends.
    store.touch(&ids[2], Usage::once(T0)).await.unwrap();
    spy.gated.store(false, SeqCst);
    spy.release.notify_one();
    assert_eq!(flushing.await.unwrap().unwrap(), 2);
    assert_eq!(store.stats().pending, 1);
    assert_eq!(last_used(&spy, &ids[2]), None);
    let shown = format!("{store:?}");
    assert!(
        shown.starts_with("WriteBehindStore") && shown.contains("pending: 1"),
        "{shown}"
    );
}

#[tokio::test]
async fn close_returns_as_soon_as_nothing_is_pending() {
    let spy = Arc::new(Spy::default());
    let ids: Vec<KeyId> = keys(&spy, 1).into_iter().map(|(id, _)| id).collect();
    let store = WriteBehindStore::new(Arc::clone(&spy), WriteBehindConfig::default());
    store.touch(&ids[0], Usage::once(T0)).await.unwrap();
    // A timer that never fires: close must not need it.
    let sleeps = AtomicUsize::new(0);
    let sleep = |_: Duration| {
        sleeps.fetch_add(1, SeqCst);
        std::future::pending::<()>()
    };
    let report = store.close(Duration::from_secs(3600), sleep).await;
    assert_eq!((report.written, report.abandoned), (1, 0));
    assert_eq!(sleeps.load(SeqCst), 1, "only the deadline's timer");
}

#[tokio::test(start_paused = true)]
async fn the_flusher_keeps_flushing_while_the_store_is_in_use() {
    let spy = Arc::new(Spy::default());
    let ids: Vec<KeyId> = keys(&spy, 2).into_iter().map(|(id, _)| id).collect();
    let store = WriteBehindStore::new(Arc::clone(&spy), WriteBehindConfig::default());
    let flusher = store.flusher();
    assert!(format!("{flusher:?}").starts_with("Flusher"));
    let running = tokio::spawn(flusher.run(tokio::time::sleep));
    for (round, id) in ids.iter().enumerate() {
        store.touch(id, Usage::once(T0)).await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(store.stats().written, round as u64 + 1, "round {round}");
    }
    assert!(!running.is_finished());
    drop(store);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(running.is_finished(), "the last handle is gone: it stops");
}

#[tokio::test]
async fn audit_pages_stay_full_and_bounded_when_pending_touches_filter_records_out() {
    let spy = Spy::default();
    let mut ids: Vec<KeyId> = keys(&spy, 4).into_iter().map(|(id, _)| id).collect();
    ids.sort();
    let store = WriteBehindStore::new(Arc::clone(&spy.inner), WriteBehindConfig::default());
    // All four keys are unused since `since`; the first was used just now
    // (pending), so it leaves the filter.
    let since = UtcDateTime::now() + time::Duration::days(1);
    store.touch(&ids[0], Usage::once(since)).await.unwrap();
    let filter = api_keys::KeyFilter::UnusedSince(since);
    let page = AsyncKeyAudit::scan(&store, filter, None, 2).await.unwrap();
    let got: Vec<KeyId> = page.iter().map(|r| r.id).collect();
    // Read on past the filtered record, and stop at the limit even though
    // the second page read holds one more.
    assert_eq!(got, [ids[1], ids[2]]);
    let one = AsyncKeyAudit::scan(&store, filter, None, 1).await.unwrap();
    assert_eq!(one.len(), 1, "never more than asked");
}
