//! The two axes every key carries: its [`Environment`] (test or live) and its
//! [`KeyKind`] (secret or publishable).

use core::fmt;

/// The mode a key runs requests in. It is written into the token (`…_test_…` /
/// `…_live_…`) and into the record, so the key itself decides the mode
/// (SignatureAPI), and test and live keys are always separate (Moov).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Environment {
    /// Test mode: build and try an integration without real effects.
    Test,
    /// Live (production) mode.
    Live,
}

impl Environment {
    /// Both environments, test first.
    pub const ALL: [Environment; 2] = [Environment::Test, Environment::Live];

    /// The lower-case word used in tokens: `test` or `live`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Environment::Test => "test",
            Environment::Live => "live",
        }
    }

    /// Parses the token word (`test` / `live`, exact case).
    #[must_use]
    pub fn from_token_word(word: &[u8]) -> Option<Self> {
        match word {
            b"test" => Some(Environment::Test),
            b"live" => Some(Environment::Live),
            _ => None,
        }
    }

    /// A one-byte code bound into the stored hash.
    pub(crate) const fn code(self) -> u8 {
        match self {
            Environment::Test => b't',
            Environment::Live => b'l',
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a key may be trusted with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum KeyKind {
    /// Full power, kept on the holder's servers (default prefix `sk`).
    Secret,
    /// Identifies an account with limited permissions; safe to publish in a
    /// browser or a mobile app (default prefix `pk`, Jahuty's "public" keys).
    Publishable,
}

impl KeyKind {
    /// Both kinds, secret first.
    pub const ALL: [KeyKind; 2] = [KeyKind::Secret, KeyKind::Publishable];

    /// A stable lower-case name: `secret` or `publishable`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            KeyKind::Secret => "secret",
            KeyKind::Publishable => "publishable",
        }
    }

    /// A one-byte code bound into the stored hash.
    pub(crate) const fn code(self) -> u8 {
        match self {
            KeyKind::Secret => b's',
            KeyKind::Publishable => b'p',
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
