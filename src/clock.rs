//! Time as an input: the drivers read a [`Clock`] once per operation and pass
//! the instant to the pure core.

use time::UtcDateTime;

/// A source of the current time. The manager reads it exactly once per
/// operation; everything below takes `now` as an argument.
pub trait Clock: Send + Sync + core::fmt::Debug {
    /// The current instant.
    fn now(&self) -> UtcDateTime;
}

/// The operating system's clock (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UtcDateTime {
        UtcDateTime::now()
    }
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
pub struct ManualClock {
    now: std::sync::Mutex<UtcDateTime>,
}

#[cfg(any(test, feature = "test-util"))]
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
impl Clock for ManualClock {
    fn now(&self) -> UtcDateTime {
        *self.lock()
    }
}

#[cfg(any(test, feature = "test-util"))]
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
