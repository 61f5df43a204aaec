//! A generator that always fails, for testing that randomness failures are
//! reported as errors and never panic.

use core::fmt;

/// A cryptographic generator whose every call fails with [`RngDown`]: pass
/// it to any `*_with_rng` function to check the failure path.
///
/// ```
/// use api_keys::{Environment, KeyFormat, KeyKind, testing::FailingRng};
/// let out = KeyFormat::default().generate_with_rng(KeyKind::Secret, Environment::Live, &mut FailingRng);
/// assert!(matches!(out, Err(api_keys::Error::Randomness)));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct FailingRng;

/// The error [`FailingRng`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RngDown;

impl fmt::Display for RngDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("entropy source unavailable")
    }
}

impl std::error::Error for RngDown {}

impl rand::TryRng for FailingRng {
    type Error = RngDown;
    fn try_next_u32(&mut self) -> Result<u32, RngDown> {
        Err(RngDown)
    }
    fn try_next_u64(&mut self) -> Result<u64, RngDown> {
        Err(RngDown)
    }
    fn try_fill_bytes(&mut self, _dst: &mut [u8]) -> Result<(), RngDown> {
        Err(RngDown)
    }
}

impl rand::TryCryptoRng for FailingRng {}
