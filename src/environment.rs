//! The two axes every key carries: its [`Environment`] (test or live) and its
//! [`KeyKind`] (secret or publishable).

use core::fmt;

/// The mode a key runs requests in. It is written into the token (`…_test_…` /
/// `…_live_…`) and into the record, so the key itself decides the mode
/// (SignatureAPI), and test and live keys are always separate (Moov).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

impl core::str::FromStr for Environment {
    type Err = ParseNameError;
    /// Parses the stable name ([`as_str`](Self::as_str)): `test` or `live`,
    /// exact case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_token_word(s.as_bytes()).ok_or(ParseNameError::new("environment"))
    }
}

/// What a key may be trusted with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

impl core::str::FromStr for KeyKind {
    type Err = ParseNameError;
    /// Parses the stable name ([`as_str`](Self::as_str)): `secret` or
    /// `publishable`, exact case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "secret" => Ok(KeyKind::Secret),
            "publishable" => Ok(KeyKind::Publishable),
            _ => Err(ParseNameError::new("key kind")),
        }
    }
}

/// A stable name ([`Environment`], [`KeyKind`],
/// [`KeyStatus`](crate::KeyStatus)) did not parse. Says which type was
/// expected, never the text that was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseNameError {
    what: &'static str,
}

impl ParseNameError {
    pub(crate) const fn new(what: &'static str) -> Self {
        Self { what }
    }

    /// The type that was expected (`environment`, `key kind`, `key status`).
    #[must_use]
    pub const fn expected(&self) -> &'static str {
        self.what
    }
}

impl fmt::Display for ParseNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a valid {} name", self.what)
    }
}

impl std::error::Error for ParseNameError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_refuse_neighbours() {
        for e in Environment::ALL {
            assert_eq!(e.to_string().parse::<Environment>(), Ok(e));
        }
        for k in KeyKind::ALL {
            assert_eq!(k.to_string().parse::<KeyKind>(), Ok(k));
        }
        for bad in ["", "Test", "LIVE", "live ", "prod", "secret"] {
            let err = bad.parse::<Environment>().unwrap_err();
            assert_eq!(err.expected(), "environment");
            assert!(!err.to_string().contains(bad) || bad.is_empty());
        }
        for bad in ["", "Secret", "public", "pk", "test"] {
            assert_eq!(
                bad.parse::<KeyKind>().unwrap_err().to_string(),
                "not a valid key kind name"
            );
        }
    }
}
