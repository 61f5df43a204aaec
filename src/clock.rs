//! Time as an input: the drivers read a [`Clock`] once per operation and pass
//! the instant to the pure core.

use time::UtcDateTime;

/// A source of the current time. The manager reads it exactly once per
/// operation; everything below takes `now` as an argument.
pub trait Clock: Send + Sync + core::fmt::Debug {
    /// The current instant.
    fn now(&self) -> UtcDateTime;
}

/// The operating system's clock (the default), exact to the nanosecond.
///
/// A read is one `clock_gettime` (through the vDSO on Linux) plus, once
/// per second per thread, the calendar conversion: within a second each
/// thread reuses the date and time of day it computed last and only
/// replaces the nanoseconds, which costs a few instructions instead of the
/// full conversion (about 40 ns saved per read).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

std::thread_local! {
    /// The last whole second converted on this thread, and its instant.
    static LAST_SECOND: core::cell::Cell<(u64, UtcDateTime)> =
        const { core::cell::Cell::new((0, UtcDateTime::UNIX_EPOCH)) };
}

impl Clock for SystemClock {
    fn now(&self) -> UtcDateTime {
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(since) => LAST_SECOND.with(|last| at(last, since.as_secs(), since.subsec_nanos())),
            // Before 1970: the plain conversion.
            Err(_) => UtcDateTime::now(),
        }
    }
}

/// The instant `secs.nanos` after the Unix epoch, converting the whole
/// second only when it differs from the one in `last`.
fn at(last: &core::cell::Cell<(u64, UtcDateTime)>, secs: u64, nanos: u32) -> UtcDateTime {
    let (cached, whole) = last.get();
    let whole = if cached == secs && secs != 0 {
        whole
    } else {
        let converted = i64::try_from(secs)
            .ok()
            .and_then(|s| UtcDateTime::from_unix_timestamp(s).ok());
        match converted {
            Some(w) => {
                last.set((secs, w));
                w
            }
            // Beyond year 9999: the plain conversion (which saturates).
            None => return UtcDateTime::now(),
        }
    };
    // `nanos < 10^9` always: the replacement cannot fail.
    whole.replace_nanosecond(nanos).unwrap_or(whole)
}

/// A clock refreshed by a background thread every `resolution`: a read is
/// one atomic load (plus, once per second per thread, the calendar
/// conversion), for hosts where even `clock_gettime` shows in a profile.
///
/// Opt in knowingly: every instant it returns may be up to `resolution`
/// old, so a key is still accepted up to `resolution` after its expiry or
/// the end of its grace window, and refused as not yet valid for up to
/// `resolution` after it was created. The thread ends when the clock is
/// dropped (at its next tick).
///
/// ```
/// use api_keys::{CoarseClock, KeyManager, MemoryKeyStore};
/// let clock = CoarseClock::new(std::time::Duration::from_millis(1))?;
/// let keys = KeyManager::builder(MemoryKeyStore::new()).clock(clock).build()?;
/// # let _ = keys;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct CoarseClock {
    shared: std::sync::Arc<CoarseState>,
}

#[derive(Debug)]
struct CoarseState {
    /// Nanoseconds since the Unix epoch at the last tick.
    nanos: std::sync::atomic::AtomicU64,
    stop: std::sync::atomic::AtomicBool,
}

/// Nanoseconds since the Unix epoch now (0 before 1970, saturating far in
/// the future).
fn unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl CoarseClock {
    /// Starts the clock and its refreshing thread.
    ///
    /// # Errors
    ///
    /// The operating system's error when the thread cannot be spawned.
    pub fn new(resolution: std::time::Duration) -> std::io::Result<Self> {
        use std::sync::atomic::Ordering;
        let shared = std::sync::Arc::new(CoarseState {
            nanos: std::sync::atomic::AtomicU64::new(unix_nanos()),
            stop: std::sync::atomic::AtomicBool::new(false),
        });
        let ticker = std::sync::Arc::clone(&shared);
        std::thread::Builder::new()
            .name("api-keys-coarse-clock".into())
            .spawn(move || {
                while !ticker.stop.load(Ordering::Relaxed) {
                    std::thread::sleep(resolution);
                    ticker.nanos.store(unix_nanos(), Ordering::Relaxed);
                }
            })?;
        Ok(Self { shared })
    }
}

impl Drop for CoarseClock {
    fn drop(&mut self) {
        self.shared
            .stop
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Clock for CoarseClock {
    fn now(&self) -> UtcDateTime {
        let nanos = self.shared.nanos.load(std::sync::atomic::Ordering::Relaxed);
        let (secs, sub) = (nanos / 1_000_000_000, (nanos % 1_000_000_000) as u32);
        LAST_SECOND.with(|last| at(last, secs, sub))
    }
}

/// Whole seconds from `earlier` to `later` (negative when `later` is
/// earlier). Within one day it is the difference of the seconds of the
/// day, without the calendar arithmetic of a Unix timestamp.
pub(crate) fn elapsed_seconds(earlier: UtcDateTime, later: UtcDateTime) -> Option<i64> {
    if earlier.date() == later.date() {
        let of_day = |t: UtcDateTime| {
            let (h, m, s) = t.as_hms();
            i64::from(h) * 3600 + i64::from(m) * 60 + i64::from(s)
        };
        return Some(of_day(later) - of_day(earlier));
    }
    later.unix_timestamp().checked_sub(earlier.unix_timestamp())
}

/// A clock that only moves when told to: set it, advance it, step it back.
/// For tests of everything time-based (expiry, grace, replay windows).
///
/// ```
/// use api_keys::{Clock, ManualClock};
/// use time::{Duration, macros::utc_datetime};
/// let clock = ManualClock::new(utc_datetime!(2026-01-01 00:00));
/// clock.advance(Duration::hours(12));
/// assert_eq!(clock.now(), utc_datetime!(2026-01-01 12:00));
/// clock.advance(Duration::seconds(-1)); // step back
/// assert_eq!(clock.now(), utc_datetime!(2026-01-01 11:59:59));
/// ```
///
/// Give a [`KeyManager`](crate::KeyManager) a shared handle
/// (`Arc<ManualClock>` is a [`Clock`]) and keep one to move time in the test:
///
/// ```
/// use std::sync::Arc;
/// use api_keys::{Actor, KeyManager, ManualClock, MemoryKeyStore, NewKey, OwnerId,
///                Rejection, RequestContext};
/// use time::{Duration, macros::utc_datetime};
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let clock = Arc::new(ManualClock::new(utc_datetime!(2026-01-01 00:00)));
///     let keys = KeyManager::builder(MemoryKeyStore::new())
///         .clock(Arc::clone(&clock))
///         .build()?;
///     let expiring = NewKey::secret(OwnerId::new("acct_1")?, "trial")
///         .expires_at(utc_datetime!(2026-01-02 00:00));
///     let key = keys.create(&Actor::system(), expiring)?;
///
///     clock.advance(Duration::days(1));
///     let refused = keys.verify(key.token.expose_secret(), &RequestContext::new());
///     assert_eq!(refused.unwrap_err().rejection(), Some(Rejection::Expired));
///     Ok(())
/// }
/// ```
#[cfg(any(test, feature = "test-util"))]
#[derive(Debug)]
#[cfg_attr(docsrs, doc(auto_cfg = false), doc(cfg(feature = "test-util")))]
pub struct ManualClock {
    now: std::sync::Mutex<UtcDateTime>,
}

#[cfg(any(test, feature = "test-util"))]
#[cfg_attr(docsrs, doc(auto_cfg = false), doc(cfg(feature = "test-util")))]
impl ManualClock {
    /// A clock showing `start`.
    #[must_use]
    pub fn new(start: UtcDateTime) -> Self {
        Self {
            now: std::sync::Mutex::new(start),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, UtcDateTime> {
        self.now
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sets the time (forwards or backwards).
    pub fn set(&self, to: UtcDateTime) {
        *self.lock() = to;
    }

    /// Moves the time by `by` (negative steps back); saturates at the ends
    /// of the representable range.
    pub fn advance(&self, by: time::Duration) {
        let mut now = self.lock();
        *now = now.checked_add(by).unwrap_or(*now);
    }
}

#[cfg(any(test, feature = "test-util"))]
#[cfg_attr(docsrs, doc(auto_cfg = false), doc(cfg(feature = "test-util")))]
impl Clock for ManualClock {
    fn now(&self) -> UtcDateTime {
        *self.lock()
    }
}

#[cfg(any(test, feature = "test-util"))]
#[cfg_attr(docsrs, doc(auto_cfg = false), doc(cfg(feature = "test-util")))]
impl Clock for std::sync::Arc<ManualClock> {
    fn now(&self) -> UtcDateTime {
        ManualClock::now(self)
    }
}

/// A monotonic clock for the verification cache's staleness bound and the
/// write-behind buffer's deadlines: how much real time has passed since a
/// fixed origin. Unlike [`Clock`] it never steps back, so a bound measured
/// with it holds across wall-clock adjustments.
pub trait MonotonicClock: Send + Sync + core::fmt::Debug {
    /// Time elapsed since the clock's origin.
    fn elapsed(&self) -> std::time::Duration;
}

/// [`std::time::Instant`]-based [`MonotonicClock`] (the default).
#[derive(Debug, Clone, Copy)]
pub struct SystemMonotonicClock {
    origin: std::time::Instant,
}

impl SystemMonotonicClock {
    /// A clock whose origin is now.
    #[must_use]
    pub fn new() -> Self {
        Self {
            origin: std::time::Instant::now(),
        }
    }
}

impl Default for SystemMonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl MonotonicClock for SystemMonotonicClock {
    fn elapsed(&self) -> std::time::Duration {
        self.origin.elapsed()
    }
}

/// A [`MonotonicClock`] that only moves when told to, for tests of the
/// cache's staleness bound: share it (`Arc<ManualMonotonicClock>` is a
/// clock) and [`advance`](Self::advance) it.
#[cfg(any(test, feature = "test-util"))]
#[derive(Debug, Default)]
pub struct ManualMonotonicClock {
    nanos: std::sync::atomic::AtomicU64,
}

#[cfg(any(test, feature = "test-util"))]
impl ManualMonotonicClock {
    /// A clock at its origin.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `by` (saturating).
    pub fn advance(&self, by: std::time::Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let _ = self.nanos.fetch_update(
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
            |n| Some(n.saturating_add(by)),
        );
    }
}

#[cfg(any(test, feature = "test-util"))]
impl MonotonicClock for ManualMonotonicClock {
    fn elapsed(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.nanos.load(std::sync::atomic::Ordering::SeqCst))
    }
}

impl<T: MonotonicClock + ?Sized> MonotonicClock for std::sync::Arc<T> {
    fn elapsed(&self) -> std::time::Duration {
        (**self).elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_conversion_equals_the_plain_one() {
        let last = core::cell::Cell::new((0, UtcDateTime::UNIX_EPOCH));
        let cases = [
            (1, 0),
            (1, 999_999_999),
            (1_767_225_599, 5),
            (1_767_225_599, 6), // same second: served from the cache
            (1_767_225_600, 0), // the next day
            (1_767_225_600, 123_456_789),
            (951_782_400, 42),    // 2000-02-29
            (253_402_300_799, 1), // 9999-12-31 23:59:59
        ];
        for (secs, nanos) in cases {
            let expected = UtcDateTime::from_unix_timestamp_nanos(
                i128::from(secs) * 1_000_000_000 + i128::from(nanos),
            )
            .unwrap();
            assert_eq!(at(&last, secs, nanos), expected, "{secs}.{nanos}");
            assert_eq!(last.get().0, secs);
        }
        // The epoch itself is never taken from the (zero-initialised) cache.
        let fresh = core::cell::Cell::new((0, UtcDateTime::MAX));
        assert_eq!(
            at(&fresh, 0, 7),
            UtcDateTime::UNIX_EPOCH.replace_nanosecond(7).unwrap()
        );
    }

    #[test]
    fn elapsed_seconds_within_and_across_days() {
        use time::macros::utc_datetime;
        let a = utc_datetime!(2026-03-01 10:00:00.9);
        let cases = [
            (utc_datetime!(2026-03-01 10:00:59), 59),
            (utc_datetime!(2026-03-01 09:59:59), -1),
            (utc_datetime!(2026-03-02 10:00:00), 86_400),
            (utc_datetime!(2026-02-28 10:00:00), -86_400),
            (utc_datetime!(2027-03-01 10:00:00), 365 * 86_400),
        ];
        for (b, secs) in cases {
            assert_eq!(elapsed_seconds(a, b), Some(secs), "{b}");
            assert_eq!(b.unix_timestamp() - a.unix_timestamp(), secs);
        }
    }

    #[test]
    fn coarse_clock_reads_the_published_instant() {
        let clock = CoarseClock::new(std::time::Duration::from_secs(3600)).unwrap();
        // The first tick is an hour away: every read returns the instant
        // published at start, converted like the system clock's.
        let nanos = clock
            .shared
            .nanos
            .load(std::sync::atomic::Ordering::Relaxed);
        let expected = UtcDateTime::from_unix_timestamp_nanos(i128::from(nanos)).unwrap();
        assert_eq!(clock.now(), expected);
        assert_eq!(clock.now(), expected);
        drop(clock);
    }

    #[test]
    fn system_clock_reads() {
        // Only that it reads and lands after 2020; no time is asserted.
        assert!(SystemClock.now().year() >= 2020);
    }
}
