//! [`Policy`]: the decisions a deployment makes once, with documented
//! defaults.

use crate::environment::Environment;
use crate::error::ConfigError;
use crate::record::Scopes;
use crate::signing::SignatureConfig;
use time::Duration;

/// The default grace window of a roll: the old key keeps working for 12
/// hours after the replacement is generated (Jahuty).
pub const DEFAULT_GRACE: Duration = Duration::hours(12);

/// Deployment-wide rules. Build it with struct-update syntax from
/// [`Policy::default()`]; [`KeyManager`](crate::KeyManager) validates it.
///
/// ```
/// use api_keys::Policy;
/// let policy = Policy { one_active_key_per_owner: true, ..Policy::default() };
/// assert_eq!(policy.default_grace, time::Duration::hours(12));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Grace window of a roll when the caller does not choose one.
    /// Default: 12 hours.
    pub default_grace: Duration,
    /// The longest grace a roll may ask for; longer requests are capped.
    /// Default: 7 days. Must be at least `default_grace`.
    pub max_grace: Duration,
    /// Allow only one usable key per owner at a time (CoinsPaid): creating
    /// an active key or activating one fails with
    /// [`Error::AnotherKeyActive`](crate::Error::AnotherKeyActive) while the
    /// owner has another usable key. A roll is allowed (it is how the key is
    /// replaced) and a predecessor inside its grace window counts as usable
    /// until the window ends. Default: off.
    pub one_active_key_per_owner: bool,
    /// Scopes that publishable keys may carry, and that a publishable key
    /// with no scopes of its own grants. Default: none, so a publishable key
    /// only identifies its owner and passes no scope check. Checked at every
    /// verification, not only when a key is written: narrowing it takes the
    /// removed scopes from existing publishable keys at once (and a key
    /// still carrying one cannot be rolled until its scopes are updated).
    pub publishable_scopes: Scopes,
    /// Accept `http://` origins and referers (not only `https://`).
    /// Default: off.
    pub allow_http_origins: bool,
    /// Restrict this verifier to one environment (a live server refusing
    /// test keys, before any store call). Default: none.
    pub environment: Option<Environment>,
    /// Write `last_used_at` at most once per this interval per key.
    /// Default: 60 seconds.
    pub touch_interval: Duration,
    /// Request signing: the largest signed body (checked before hashing,
    /// default 1 MiB), the accepted hex case of the signature header
    /// (default lower-case only, as the vendor documents), and whether the
    /// replay-protected mode is required (default: no, the vendor-compatible
    /// body-only mode).
    pub signatures: SignatureConfig,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            default_grace: DEFAULT_GRACE,
            max_grace: Duration::days(7),
            one_active_key_per_owner: false,
            publishable_scopes: Scopes::default(),
            allow_http_origins: false,
            environment: None,
            touch_interval: Duration::seconds(60),
            signatures: SignatureConfig::default(),
        }
    }
}

impl Policy {
    /// Checks the values are in range.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Policy`] for a negative grace or touch interval, or a
    /// default grace above the cap.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.default_grace.is_negative() || self.max_grace.is_negative() {
            return Err(ConfigError::Policy("grace must not be negative"));
        }
        if self.default_grace > self.max_grace {
            return Err(ConfigError::Policy("default_grace exceeds max_grace"));
        }
        if self.touch_interval.is_negative() {
            return Err(ConfigError::Policy("touch_interval must not be negative"));
        }
        Ok(())
    }
}
