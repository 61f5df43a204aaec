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
