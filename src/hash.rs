//! What the store keeps instead of the secret: a SHA-256 digest binding the
//! secret to its key id, environment and kind.
//!
//! # Why a fast hash, not a password hash
//!
//! Passwords are low-entropy, so a leaked hash must be slow to brute-force
//! (Argon2, bcrypt). An API key secret is 160–208 bits from a CSPRNG: there
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
//! 0x02 | env ('t'/'l') | kind ('s'/'p') | secret length | key id (16 bytes) | secret (27–35 characters)
//! ```
//!
//! The secret enters as the characters of the token, not decoded: a verify
//! copies them into the block without a base62 decode. At most 55 bytes, so
//! the message fits one SHA-256 block and a hash costs one compression. Binding the environment and kind means `sk_test_X` and
//! `sk_live_X` never share a hash; binding the id means a hash copied to
//! another record never verifies.

use crate::environment::{Environment, KeyKind};
use crate::secret::MAX_SECRET_CHARS;
use crate::token::{KEY_ID_BYTES, KeyId};
use core::fmt;
use hmac::{KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

const MESSAGE_VERSION: u8 = 2;
const MAX_MESSAGE: usize = SECRET_AT + MAX_SECRET_CHARS;
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
    /// Compares two hashes in constant time (the pepper version is public):
    /// the XOR of the four 64-bit word pairs is OR-ed together without a
    /// branch, and only that one word goes through `subtle`'s comparison.
    #[must_use]
    pub fn ct_eq(&self, other: &SecretHash) -> bool {
        let word = |c: &[u8]| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            u64::from_ne_bytes(b)
        };
        let diff = self
            .digest
            .chunks_exact(8)
            .zip(other.digest.chunks_exact(8))
            .fold(0u64, |acc, (x, y)| acc | (word(x) ^ word(y)));
        bool::from(diff.ct_eq(&0)) && self.pepper_version == other.pepper_version
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

    /// A pepper from hex text, e.g. an environment variable filled with
    /// `openssl rand -hex 32` (32 random bytes, 64 hex digits). Upper- or
    /// lower-case; surrounding whitespace (a trailing newline) is ignored.
    /// The decoded bytes are wiped when the pepper is dropped; the caller
    /// wipes its copy of the text.
    ///
    /// ```
    /// use api_keys::Pepper;
    /// let hex = "4f".repeat(32);           // std::env::var("API_KEYS_PEPPER")?
    /// let pepper = Pepper::from_hex(1, &hex)?;
    /// assert_eq!(pepper.version(), 1);
    /// assert!(Pepper::from_hex(1, "not hex").is_err());
    /// # Ok::<(), api_keys::ConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::PepperHex`](crate::ConfigError::PepperHex) when the
    /// text is not an even number of hex digits (the error does not repeat
    /// it); [`ConfigError::PepperLength`](crate::ConfigError::PepperLength)
    /// when it decodes to fewer than 32 bytes.
    pub fn from_hex(version: u32, hex: &str) -> Result<Self, crate::ConfigError> {
        let key = decode_hex_key(hex).ok_or(crate::ConfigError::PepperHex)?;
        Self::new(version, &key)
    }

    /// The version recorded with hashes made under this pepper.
    #[must_use]
    pub fn version(&self) -> u32 {
        self.version
    }
}

/// Key material from hex text (surrounding ASCII whitespace ignored, either
/// case), decoded in constant time into memory wiped on drop. `None` for
/// anything but an even number of hex digits.
pub(crate) fn decode_hex_key(hex: &str) -> Option<Zeroizing<Vec<u8>>> {
    let hex = hex.trim_ascii();
    if hex.is_empty() || !hex.len().is_multiple_of(2) {
        return None;
    }
    let mut key = Zeroizing::new(vec![0u8; hex.len() / 2]);
    base16ct::mixed::decode(hex, &mut key).ok()?;
    Some(key)
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

    /// The current pepper's version, if new keys are peppered.
    pub(crate) fn current_version(&self) -> Option<u32> {
        self.current.as_ref().map(|c| c.0)
    }

    /// Hashes under the current scheme (for new keys).
    pub(crate) fn hash_new(
        &self,
        id: &KeyId,
        environment: Environment,
        kind: KeyKind,
        secret: &[u8],
    ) -> SecretHash {
        let block = MessageBlock::new(id, environment, kind, secret);
        match &self.current {
            None => SecretHash {
                pepper_version: None,
                digest: block.sha256(),
            },
            Some((v, mac)) => SecretHash {
                pepper_version: Some(*v),
                digest: block.hmac(mac),
            },
        }
    }

    /// Hashes a presented message under the scheme `stored` was made with.
    /// `None` when that pepper version is not configured (a configuration
    /// error: the caller fails closed).
    pub(crate) fn hash_like(
        &self,
        stored: &SecretHash,
        block: &MessageBlock,
    ) -> Option<SecretHash> {
        match stored.pepper_version {
            None => Some(SecretHash {
                pepper_version: None,
                digest: block.sha256(),
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
                    digest: block.hmac(mac),
                })
            }
        }
    }
}

/// Where the secret starts in the message.
const SECRET_AT: usize = 4 + KEY_ID_BYTES;

/// SHA-256's initial state (FIPS 180-4, 5.3.3).
const H0: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// The hashed message, already laid out as the one padded SHA-256 block it
/// fits in (FIPS 180-4, 5.1.1): the message, `0x80`, zeros, and the
/// message length in bits as a big-endian `u64` in the last 8 bytes.
///
/// The parser decodes a presented secret straight into it, so a verify
/// copies the secret nowhere else; the secret's bytes are zeroized on drop
/// (the rest of the block is public: header, key id, padding).
pub(crate) struct MessageBlock {
    block: [u8; 64],
    secret_len: usize,
}

impl MessageBlock {
    /// The block of a message with this secret (its characters; at most
    /// [`MAX_SECRET_CHARS`], longer is cut, which no format produces).
    pub(crate) fn new(id: &KeyId, environment: Environment, kind: KeyKind, secret: &[u8]) -> Self {
        let secret = secret.get(..MAX_SECRET_CHARS).unwrap_or(secret);
        let secret_len = secret.len();
        let mut block = [0u8; 64];
        let header = [
            MESSAGE_VERSION,
            environment.code(),
            kind.code(),
            u8::try_from(secret_len).unwrap_or(u8::MAX),
        ];
        let len = SECRET_AT + secret_len;
        let bits = (len as u64 * 8).to_be_bytes();
        let parts: [(usize, &[u8]); 5] = [
            (0, &header),
            (4, id.as_bytes()),
            (SECRET_AT, secret),
            (len, &[0x80]),
            (56, &bits),
        ];
        for (at, part) in parts {
            if let Some(dst) = block.get_mut(at..at + part.len()) {
                dst.copy_from_slice(part);
            }
        }
        Self { block, secret_len }
    }

    /// The secret's bytes inside the block.
    fn secret_mut(&mut self) -> Option<&mut [u8]> {
        self.block.get_mut(SECRET_AT..SECRET_AT + self.secret_len)
    }

    /// The message without its padding (for HMAC).
    fn message(&self) -> &[u8] {
        self.block
            .get(..SECRET_AT + self.secret_len)
            .unwrap_or_default()
    }

    /// SHA-256 of the message: one compression of the padded block.
    fn sha256(&self) -> [u8; 32] {
        let mut state = H0;
        sha2::block_api::compress256(&mut state, core::slice::from_ref(&self.block));
        let mut out = [0u8; 32];
        for (dst, word) in out.chunks_exact_mut(4).zip(state) {
            dst.copy_from_slice(&word.to_be_bytes());
        }
        out
    }

    /// HMAC-SHA256 of the message under a prepared keyed state.
    fn hmac(&self, mac: &hmac::Hmac<Sha256>) -> [u8; 32] {
        mac.clone()
            .chain_update(self.message())
            .finalize()
            .into_bytes()
            .into()
    }
}

impl Drop for MessageBlock {
    fn drop(&mut self) {
        if let Some(secret) = self.secret_mut() {
            secret.zeroize();
        }
    }
}

impl fmt::Debug for MessageBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageBlock([redacted; {}])", self.secret_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_hex_text() {
        let hex = "0123456789abcdefABCDEF0123456789".repeat(2);
        let key = decode_hex_key(&format!("  {hex}\n")).unwrap();
        assert_eq!(key.len(), 32);
        assert_eq!(key.first(), Some(&0x01));
        assert_eq!(key.get(5), Some(&0xab));
        for bad in ["", "\n", "abc", "zz", "0x00", "00 00", "é0"] {
            assert!(decode_hex_key(bad).is_none(), "{bad:?}");
        }
        // Peppers: at least 32 bytes, and the text never comes back.
        let pepper = Pepper::from_hex(3, &hex).unwrap();
        assert_eq!(pepper.version(), 3);
        assert_eq!(
            Pepper::from_hex(1, &"ab".repeat(31)).unwrap_err(),
            crate::ConfigError::PepperLength
        );
        let secretish = "s3cr3t-n0t-h3x-".repeat(5);
        let err = Pepper::from_hex(1, &secretish).unwrap_err();
        assert_eq!(err, crate::ConfigError::PepperHex);
        assert!(!err.to_string().contains("s3cr3t"));
        assert!(!format!("{err:?}").contains("s3cr3t"));
        // Sealing keys: exactly 32 bytes.
        let sealing = crate::SealingKey::from_hex(2, &hex).unwrap();
        assert_eq!(sealing.version(), 2);
        assert!(matches!(
            crate::SealingKey::from_hex(1, &"ab".repeat(33)),
            Err(crate::SealingError::KeyLength)
        ));
        let err = crate::SealingKey::from_hex(1, &secretish).unwrap_err();
        assert!(matches!(err, crate::SealingError::KeyHex));
        assert!(!err.to_string().contains("s3cr3t"));
    }

    fn id() -> KeyId {
        KeyId::from_bytes([7; 16])
    }

    fn block(secret: &[u8]) -> MessageBlock {
        MessageBlock::new(&id(), Environment::Test, KeyKind::Secret, secret)
    }

    #[test]
    fn one_block_padding_matches_sha256_for_every_length() {
        use sha2::Digest;
        for len in 0..=MAX_SECRET_CHARS {
            let secret: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let b = block(&secret);
            let digest: [u8; 32] = Sha256::digest(b.message()).into();
            assert_eq!(b.sha256(), digest, "secret of {len} bytes");
            assert_eq!(b.message().len(), 4 + 16 + len);
        }
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
        let s = [b'Q'; 35];
        let h = KeyHasher::default().hash_new(&id(), Environment::Live, KeyKind::Secret, &s);
        let mut expected = vec![2u8, b'l', b's', 35];
        expected.extend_from_slice(&[7; 16]);
        expected.extend_from_slice(&s);
        let digest: [u8; 32] = <Sha256 as sha2::Digest>::digest(&expected).into();
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
        let presented = block(&s);
        let again = new.hash_like(&h1, &presented).unwrap();
        assert!(
            again == h1,
            "rotated hasher still verifies old-pepper hashes"
        );
        let unknown = SecretHash {
            pepper_version: Some(9),
            digest: h1.digest,
        };
        assert!(new.hash_like(&unknown, &presented).is_none());
        assert!(Pepper::new(1, &[0; 31]).is_err());
        assert!(KeyHasher::with_peppers(Some(&p1), &[Pepper::new(1, &[3; 32]).unwrap()]).is_err());
    }

    #[test]
    fn peppered_digest_is_hmac_sha256_of_the_documented_layout() {
        let pepper = Pepper::new(4, &[0x5A; 32]).unwrap();
        let hasher = KeyHasher::with_peppers(Some(&pepper), &[]).unwrap();
        let s = [b'Q'; 35];
        let h = hasher.hash_new(&id(), Environment::Live, KeyKind::Secret, &s);
        let mut message = vec![2u8, b'l', b's', 35];
        message.extend_from_slice(&[7; 16]);
        message.extend_from_slice(&s);
        let mac = hmac::Hmac::<Sha256>::new_from_slice(&[0x5A; 32]).unwrap();
        let expected: [u8; 32] = mac.chain_update(&message).finalize().into_bytes().into();
        assert_eq!(h.digest, expected);
        assert_eq!(h.pepper_version, Some(4));
        // Another secret, another digest.
        let other = hasher.hash_new(&id(), Environment::Live, KeyKind::Secret, &[b'R'; 35]);
        assert_ne!(other.digest, h.digest);
        assert!(hasher.hash_like(&h, &block_live(&[b'R'; 35])).unwrap() != h);
        assert!(hasher.hash_like(&h, &block_live(&s)).unwrap() == h);
    }

    fn block_live(secret: &[u8]) -> MessageBlock {
        MessageBlock::new(&id(), Environment::Live, KeyKind::Secret, secret)
    }

    #[test]
    fn equality_sees_every_word_and_the_pepper_version() {
        let digest: [u8; 32] = core::array::from_fn(|i| i as u8 * 7 + 1);
        let hash = |pepper_version, digest| SecretHash {
            pepper_version,
            digest,
        };
        let base = hash(Some(1), digest);
        assert!(base.ct_eq(&hash(Some(1), digest)) && base == hash(Some(1), digest));
        for byte in 0..32 {
            for bit in 0..8 {
                let mut other = digest;
                other[byte] ^= 1 << bit;
                assert!(!base.ct_eq(&hash(Some(1), other)), "{byte} {bit}");
                assert!(base != hash(Some(1), other));
            }
        }
        // The same difference in two words must not cancel out.
        let mut twice = digest;
        twice[0] ^= 0x10;
        twice[8] ^= 0x10;
        assert!(!base.ct_eq(&hash(Some(1), twice)));
        for version in [None, Some(2)] {
            assert!(!base.ct_eq(&hash(version, digest)), "{version:?}");
            assert!(base != hash(version, digest));
        }
    }

    #[test]
    fn debug_forms() {
        let h = SecretHash {
            pepper_version: Some(2),
            digest: [0xEE; 32],
        };
        assert_eq!(
            format!("{h:?}"),
            r#"SecretHash { pepper_version: Some(2), digest: "[redacted]" }"#
        );
        let pepper = Pepper::new(3, &[0xAB; 32]).unwrap();
        assert_eq!(
            format!("{pepper:?}"),
            "Pepper { version: 3, key: [redacted] }"
        );
        let hasher = KeyHasher::with_peppers(
            Some(&Pepper::new(2, &[2; 32]).unwrap()),
            &[pepper, Pepper::new(1, &[1; 32]).unwrap()],
        )
        .unwrap();
        assert_eq!(
            format!("{hasher:?}"),
            "KeyHasher { current_pepper: Some(2), previous_peppers: [3, 1] }"
        );
        assert_eq!(
            format!("{:?}", block(&[b'x'; 27])),
            "MessageBlock([redacted; 27])"
        );
    }

    #[test]
    fn current_pepper_version() {
        assert_eq!(KeyHasher::default().current_version(), None);
        let p = Pepper::new(7, &[7; 32]).unwrap();
        let h = KeyHasher::with_peppers(Some(&p), &[]).unwrap();
        assert_eq!(h.current_version(), Some(7));
        let only_old = KeyHasher::with_peppers(None, &[p]).unwrap();
        assert_eq!(only_old.current_version(), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn drop_wipes_the_secret_from_freed_memory() {
        use crate::freed_memory::{Memory, holds_any_of};
        let secret: Vec<u8> = (0..MAX_SECRET_CHARS as u8).map(|i| b'A' + i).collect();
        let boxed = Box::new(block(&secret));
        let at = boxed.block.as_ptr() as usize;
        let mut memory = Memory::open(64);
        // The reader sees the secret in the live block...
        assert_eq!(&memory.read(at)[SECRET_AT..][..secret.len()], &secret[..]);
        drop(boxed);
        // ...and none of it once the block is dropped (the secret lies past
        // the allocator's bookkeeping at the start of the freed block).
        let freed = memory.read(at);
        assert!(!holds_any_of(freed, &secret), "{freed:?}");
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
