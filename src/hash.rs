//! What the store keeps instead of the secret: a SHA-256 digest binding the
//! secret to its key id, environment and kind.
//!
//! # Why a fast hash, not a password hash
//!
//! Passwords are low-entropy, so a leaked hash must be slow to brute-force
//! (Argon2, bcrypt). An API key secret is 160–256 bits from a CSPRNG: there
//! is nothing to brute-force, one SHA-256 preimage search is already out of
//! reach, and a deliberately slow hash would only make every request slower
//! and hand attackers a cheap denial of service. So the crate stores one
//! SHA-256 of a compact message, and optionally keys it with a host-held
//! pepper (HMAC-SHA256) so a dump of the store alone cannot even confirm a
//! guessed token.
//!
//! # The message
//!
//! ```text
//! 0x01 | env ('t'/'l') | kind ('s'/'p') | secret length | key id (16) | secret (20–32)
//! ```
//!
//! At most 52 bytes: it fits one SHA-256 block (≤ 55 bytes), so a hash costs
//! one compression. Binding the environment and kind means `sk_test_X` and
//! `sk_live_X` never share a hash; binding the id means a hash copied to
//! another record never verifies.

use crate::environment::{Environment, KeyKind};
use crate::secret::{MAX_SECRET_BYTES, SecretBytes};
use crate::token::{KEY_ID_BYTES, KeyId};
use core::fmt;
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

const MESSAGE_VERSION: u8 = 1;
const MAX_MESSAGE: usize = 4 + KEY_ID_BYTES + MAX_SECRET_BYTES;
const _: () = assert!(
    MAX_MESSAGE <= 55,
    "the hashed message must fit one SHA-256 block"
);

/// The stored digest of a key's secret, and the pepper version it was made
/// under (`None` for plain SHA-256).
///
/// Equality is constant-time and is the only comparison offered; `Debug`
/// prints a short fingerprint, never the digest.
#[derive(Clone, Copy)]
pub struct SecretHash {
    /// The pepper version used, or `None` when no pepper was configured.
    pub pepper_version: Option<u32>,
    /// The 32-byte digest.
    pub digest: [u8; 32],
}

impl SecretHash {
    /// Compares two hashes in constant time (four 64-bit words; the pepper
    /// version is public).
    #[must_use]
    pub fn ct_eq(&self, other: &SecretHash) -> bool {
        let words = |d: &[u8; 32]| {
            let mut w = [0u64; 4];
            for (slot, chunk) in w.iter_mut().zip(d.chunks_exact(8)) {
                let mut b = [0u8; 8];
                b.copy_from_slice(chunk);
                *slot = u64::from_ne_bytes(b);
            }
            w
        };
        let (a, b) = (words(&self.digest), words(&other.digest));
        let same = a
            .iter()
            .zip(b.iter())
            .fold(subtle::Choice::from(1), |acc, (x, y)| acc & x.ct_eq(y));
        bool::from(same) && self.pepper_version == other.pepper_version
    }
}

impl PartialEq for SecretHash {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other)
    }
}

impl Eq for SecretHash {}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretHash")
            .field("pepper_version", &self.pepper_version)
            .field("digest", &"[redacted]")
            .finish()
    }
}

/// A host-held key that turns the stored hash into HMAC-SHA256, with a
/// version so peppers can be rotated. Keep it outside the store.
pub struct Pepper {
    version: u32,
    key: Zeroizing<Vec<u8>>,
}

impl Pepper {
    /// A pepper of at least 32 bytes.
    ///
    /// # Errors
    ///
    /// [`ConfigError::PepperLength`](crate::ConfigError::PepperLength) when
    /// `key` is shorter than 32 bytes.
    pub fn new(version: u32, key: &[u8]) -> Result<Self, crate::ConfigError> {
        if key.len() < 32 {
            return Err(crate::ConfigError::PepperLength);
        }
        Ok(Self {
            version,
            key: Zeroizing::new(key.to_vec()),
        })
    }

    /// The version recorded with hashes made under this pepper.
    #[must_use]
    pub fn version(&self) -> u32 {
        self.version
    }
}

impl fmt::Debug for Pepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pepper {{ version: {}, key: [redacted] }}", self.version)
    }
}

/// Hashes secrets: plain SHA-256, or HMAC-SHA256 under the current pepper,
/// with older peppers kept for verification. The keyed HMAC states are
/// prepared once, here, and cloned per hash.
#[derive(Clone, Default)]
pub(crate) struct KeyHasher {
    current: Option<(u32, hmac::Hmac<Sha256>)>,
    previous: Vec<(u32, hmac::Hmac<Sha256>)>,
}

impl fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyHasher")
            .field("current_pepper", &self.current.as_ref().map(|c| c.0))
            .field(
                "previous_peppers",
                &self.previous.iter().map(|p| p.0).collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn keyed(p: &Pepper) -> Result<hmac::Hmac<Sha256>, crate::ConfigError> {
    hmac::Hmac::<Sha256>::new_from_slice(&p.key).map_err(|_| crate::ConfigError::PepperLength)
}

impl KeyHasher {
    pub(crate) fn with_peppers(
        current: Option<&Pepper>,
        previous: &[Pepper],
    ) -> Result<Self, crate::ConfigError> {
        let mut seen: Vec<u32> = Vec::new();
        let current = match current {
            Some(p) => {
                seen.push(p.version);
                Some((p.version, keyed(p)?))
            }
            None => None,
        };
        let mut prev = Vec::with_capacity(previous.len());
        for p in previous {
            if seen.contains(&p.version) {
                return Err(crate::ConfigError::DuplicatePepperVersion(p.version));
            }
            seen.push(p.version);
            prev.push((p.version, keyed(p)?));
        }
        Ok(Self {
            current,
            previous: prev,
        })
    }

    /// Hashes under the current scheme (for new keys).
    pub(crate) fn hash_new(
        &self,
        id: &KeyId,
        environment: Environment,
        kind: KeyKind,
        secret: &[u8],
    ) -> SecretHash {
        let (msg, len) = message(id, environment, kind, secret);
        let msg = msg.get(..len).unwrap_or(&[]);
        match &self.current {
            None => SecretHash {
                pepper_version: None,
                digest: Sha256::digest(msg).into(),
            },
            Some((v, mac)) => SecretHash {
                pepper_version: Some(*v),
                digest: mac.clone().chain_update(msg).finalize().into_bytes().into(),
            },
        }
    }

    /// Hashes a presented secret under the scheme `stored` was made with.
    /// `None` when that pepper version is not configured (a configuration
    /// error: the caller fails closed).
    pub(crate) fn hash_like(
        &self,
        stored: &SecretHash,
        id: &KeyId,
        environment: Environment,
        kind: KeyKind,
        secret: &SecretBytes,
    ) -> Option<SecretHash> {
        let (msg, len) = message(id, environment, kind, secret.as_bytes());
        let msg = msg.get(..len)?;
        match stored.pepper_version {
            None => Some(SecretHash {
                pepper_version: None,
                digest: Sha256::digest(msg).into(),
            }),
            Some(v) => {
                let mac = self
                    .current
                    .iter()
                    .chain(self.previous.iter())
                    .find(|(pv, _)| *pv == v)
                    .map(|(_, m)| m)?;
                Some(SecretHash {
                    pepper_version: Some(v),
                    digest: mac.clone().chain_update(msg).finalize().into_bytes().into(),
                })
            }
        }
    }
}

/// Builds the compact message on the stack (zeroized on drop).
fn message(
    id: &KeyId,
    environment: Environment,
    kind: KeyKind,
    secret: &[u8],
) -> (Zeroizing<[u8; MAX_MESSAGE]>, usize) {
    let mut buf = Zeroizing::new([0u8; MAX_MESSAGE]);
    let secret = secret
        .get(..secret.len().min(MAX_SECRET_BYTES))
        .unwrap_or(&[]);
    let header = [
        MESSAGE_VERSION,
        environment.code(),
        kind.code(),
        u8::try_from(secret.len()).unwrap_or(u8::MAX),
    ];
    let len = header.len() + KEY_ID_BYTES + secret.len();
    let parts: [&[u8]; 3] = [&header, id.as_bytes(), secret];
    let mut at = 0usize;
    for part in parts {
        if let Some(dst) = buf.get_mut(at..at + part.len()) {
            dst.copy_from_slice(part);
        }
        at += part.len();
    }
    (buf, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> KeyId {
        KeyId::from_bytes([7; 16])
    }

    #[test]
    fn environment_and_kind_are_bound() {
        let h = KeyHasher::default();
        let s = [9u8; 32];
        let a = h.hash_new(&id(), Environment::Test, KeyKind::Secret, &s);
        let b = h.hash_new(&id(), Environment::Live, KeyKind::Secret, &s);
        let c = h.hash_new(&id(), Environment::Test, KeyKind::Publishable, &s);
        let d = h.hash_new(
            &KeyId::from_bytes([8; 16]),
            Environment::Test,
            KeyKind::Secret,
            &s,
        );
        assert!(a != b && a != c && b != c && a != d);
        assert!(a == h.hash_new(&id(), Environment::Test, KeyKind::Secret, &s));
    }

    #[test]
    fn message_is_plain_sha256_of_documented_layout() {
        let s = [3u8; 20];
        let h = KeyHasher::default().hash_new(&id(), Environment::Live, KeyKind::Secret, &s);
        let mut expected = vec![1u8, b'l', b's', 20];
        expected.extend_from_slice(&[7; 16]);
        expected.extend_from_slice(&s);
        let digest: [u8; 32] = Sha256::digest(&expected).into();
        assert_eq!(h.digest, digest);
        assert_eq!(h.pepper_version, None);
    }

    #[test]
    fn pepper_changes_digest_and_is_versioned() {
        let p1 = Pepper::new(1, &[1; 32]).unwrap();
        let p2 = Pepper::new(2, &[2; 32]).unwrap();
        let old = KeyHasher::with_peppers(Some(&p1), &[]).unwrap();
        let new = KeyHasher::with_peppers(Some(&p2), &[Pepper::new(1, &[1; 32]).unwrap()]).unwrap();
        let s = [5u8; 32];
        let h1 = old.hash_new(&id(), Environment::Test, KeyKind::Secret, &s);
        assert_eq!(h1.pepper_version, Some(1));
        let plain = KeyHasher::default().hash_new(&id(), Environment::Test, KeyKind::Secret, &s);
        assert_ne!(h1.digest, plain.digest);
        let mut presented = SecretBytes::zeroed(32);
        presented.as_mut_bytes().copy_from_slice(&s);
        let again = new
            .hash_like(&h1, &id(), Environment::Test, KeyKind::Secret, &presented)
            .unwrap();
        assert!(
            again == h1,
            "rotated hasher still verifies old-pepper hashes"
        );
        let unknown = SecretHash {
            pepper_version: Some(9),
            digest: h1.digest,
        };
        assert!(
            new.hash_like(
                &unknown,
                &id(),
                Environment::Test,
                KeyKind::Secret,
                &presented
            )
            .is_none()
        );
        assert!(Pepper::new(1, &[0; 31]).is_err());
        assert!(KeyHasher::with_peppers(Some(&p1), &[Pepper::new(1, &[3; 32]).unwrap()]).is_err());
    }

    #[test]
    fn debug_hides_digest() {
        let h = SecretHash {
            pepper_version: None,
            digest: [0xEE; 32],
        };
        assert!(!format!("{h:?}").to_lowercase().contains("ee,"));
        assert!(!format!("{h:?}").contains("238"));
    }
}
