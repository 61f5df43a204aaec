//! Sealing signing secrets at rest.
//!
//! A bearer key can be stored as a hash, but an HMAC signing key cannot: the verifier
//! needs the secret itself to recompute the signature. So the record stores the secret
//! **sealed**: encrypted and authenticated with XChaCha20-Poly1305 under a 32-byte
//! [`SealingKey`] that the host keeps outside the store (an environment variable, a KMS,
//! a secrets manager). A dump of the store alone yields nothing usable.
//!
//! # Format
//!
//! A [`SealedSecret`] is `(key_version, nonce, ciphertext)`:
//!
//! * `key_version`: the [`SealingKey::version`] that sealed it;
//! * `nonce`: 24 random bytes from the caller's CSPRNG (XChaCha20's 192-bit nonce makes
//!   random nonces safe for any realistic number of seals under one key);
//! * `ciphertext`: the encrypted secret followed by the 16-byte Poly1305 tag.
//!
//! The associated data authenticated with it is
//! [`SEAL_LABEL`]` || key_version.to_be_bytes() || aad`, where `aad` is what the caller
//! passes — the key id of the record. So a sealed secret copied into another record
//! (another key id), relabelled with another key version, or altered in any byte fails to
//! unseal with [`SealingError::Unseal`].
//!
//! # Rotation
//!
//! A [`SealingKeyRing`] holds one current key (used to seal) and any number of previous
//! keys (used only to unseal). To rotate: add a new current key, keep the old one as
//! previous, re-seal records for which [`SealingKeyRing::needs_reseal`] is true (for
//! example with [`SealingKeyRing::reseal`] when they are next read), then drop the old
//! key once none remain.
//!
//! # Example
//!
//! ```
//! use api_keys::sealing::{SealingKey, SealingKeyRing};
//!
//! // In production: from the environment or a KMS, never from the store.
//! // Make one with `openssl rand -hex 32`.
//! let hex = "07".repeat(32);                 // std::env::var("API_KEYS_SEALING_KEY")?
//! let ring = SealingKeyRing::new(SealingKey::from_hex(1, &hex)?);
//!
//! let key_id = b"key_01HZX3";
//! let sealed = ring.seal(key_id, b"sk_live_secret")?;
//! let secret = ring.unseal(key_id, &sealed)?;
//! assert_eq!(secret.as_slice(), b"sk_live_secret");
//!
//! // Moved to another record: refused.
//! assert!(ring.unseal(b"key_other", &sealed).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;

use chacha20poly1305::{AeadInOut, KeyInit, XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

/// Length in bytes of a [`SealingKey`]'s key material.
pub const SEALING_KEY_LEN: usize = 32;

/// Length in bytes of [`SealedSecret::nonce`].
pub const SEALED_NONCE_LEN: usize = 24;

/// Length in bytes of the authentication tag at the end of [`SealedSecret::ciphertext`].
pub const SEALED_TAG_LEN: usize = 16;

/// Domain-separation label at the start of the associated data of every seal
/// (version 1 of the sealing format).
pub const SEAL_LABEL: &[u8] = b"api-keys sealed secret v1\0";

/// A 32-byte XChaCha20-Poly1305 key with a version number, kept by the host outside
/// the store (environment variable, KMS).
///
/// The key material is wiped from memory when the value is dropped. `Debug` prints only
/// the version. It is deliberately neither `Clone` (one owner, one copy to wipe) nor
/// `PartialEq`.
pub struct SealingKey {
    version: u32,
    /// Holds the key; wipes it on drop (chacha20poly1305's `zeroize` feature).
    cipher: XChaCha20Poly1305,
}

impl SealingKey {
    /// Creates a sealing key from exactly [`SEALING_KEY_LEN`] (32) bytes of key material.
    ///
    /// The material should come from a CSPRNG (`openssl rand -hex 32`, then
    /// [`from_hex`](Self::from_hex)). The caller remains responsible for wiping its own
    /// copy of `key`.
    ///
    /// # Errors
    ///
    /// [`SealingError::KeyLength`] when `key` is not exactly 32 bytes: shorter keys are
    /// refused and so are longer ones (they are not truncated or hashed, so a
    /// mis-encoded key is noticed instead of silently used).
    pub fn new(version: u32, key: &[u8]) -> Result<Self, SealingError> {
        if key.len() != SEALING_KEY_LEN {
            return Err(SealingError::KeyLength);
        }
        let cipher = XChaCha20Poly1305::new_from_slice(key).map_err(|_| SealingError::KeyLength)?;
        Ok(Self { version, cipher })
    }

    /// A sealing key from hex text: exactly 64 hex digits (32 bytes), e.g.
    /// an environment variable filled with `openssl rand -hex 32`. Upper-
    /// or lower-case; surrounding whitespace (a trailing newline) is
    /// ignored. The decoded bytes are wiped; the caller wipes its copy of
    /// the text.
    ///
    /// ```
    /// use api_keys::{SealingKey, SealingKeyRing};
    /// let hex = "5a".repeat(32);            // std::env::var("API_KEYS_SEALING_KEY")?
    /// let ring = SealingKeyRing::new(SealingKey::from_hex(1, &hex)?);
    /// assert_eq!(ring.current_version(), 1);
    /// assert!(SealingKey::from_hex(1, "5a5a").is_err());      // 2 bytes, not 32
    /// # Ok::<(), api_keys::SealingError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`SealingError::KeyHex`] when the text is not hex digits, and
    /// [`SealingError::KeyLength`] when it does not decode to exactly 32
    /// bytes. Neither repeats the text.
    pub fn from_hex(version: u32, hex: &str) -> Result<Self, SealingError> {
        let key = crate::hash::decode_hex_key(hex).ok_or(SealingError::KeyHex)?;
        Self::new(version, &key)
    }

    /// The version number recorded in every secret this key seals.
    #[must_use]
    pub fn version(&self) -> u32 {
        self.version
    }
}

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealingKey")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl zeroize::ZeroizeOnDrop for SealingKey {}

/// Several [`SealingKey`]s active at once so they can be rotated: one current (used to
/// seal), the others only unseal.
///
/// Versions are unique within a ring. `Debug` lists the versions only.
pub struct SealingKeyRing {
    current: SealingKey,
    previous: Vec<SealingKey>,
}

impl SealingKeyRing {
    /// A ring whose only key, `current`, seals and unseals.
    #[must_use]
    pub fn new(current: SealingKey) -> Self {
        Self {
            current,
            previous: Vec::new(),
        }
    }

    /// Adds a previous key, used only to unseal secrets sealed under its version.
    ///
    /// # Errors
    ///
    /// [`SealingError::DuplicateVersion`] when the ring already has a key with that
    /// version (the ring is dropped, and its keys wiped).
    pub fn with_previous(mut self, key: SealingKey) -> Result<Self, SealingError> {
        if self.key(key.version).is_some() {
            return Err(SealingError::DuplicateVersion(key.version));
        }
        self.previous.push(key);
        Ok(self)
    }

    /// Makes `key` the current key; the former current key becomes a previous key.
    ///
    /// # Errors
    ///
    /// [`SealingError::DuplicateVersion`] when the ring already has a key with that
    /// version (the ring is dropped, and its keys wiped).
    pub fn rotate(mut self, key: SealingKey) -> Result<Self, SealingError> {
        if self.key(key.version).is_some() {
            return Err(SealingError::DuplicateVersion(key.version));
        }
        let former = std::mem::replace(&mut self.current, key);
        self.previous.insert(0, former);
        Ok(self)
    }

    /// The version of the key that seals.
    #[must_use]
    pub fn current_version(&self) -> u32 {
        self.current.version
    }

    /// Every version in the ring: the current one first, then the previous ones in the
    /// order they were added.
    pub fn versions(&self) -> impl Iterator<Item = u32> + '_ {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .map(SealingKey::version)
    }

    /// Seals `secret` under the current key, bound to `aad` (the record's key id), with
    /// a 24-byte nonce from the operating system's CSPRNG.
    ///
    /// # Errors
    ///
    /// * [`SealingError::EmptySecret`] when `secret` is empty;
    /// * [`SealingError::Randomness`] when the OS generator fails (never a panic);
    /// * [`SealingError::Seal`] when the secret is too long for the cipher (over 256 GiB).
    pub fn seal(&self, aad: &[u8], secret: &[u8]) -> Result<SealedSecret, SealingError> {
        self.seal_with_rng(aad, secret, &mut rand::rngs::SysRng)
    }

    /// [`seal`](Self::seal) with the nonce drawn from `rng` (a seeded generator in
    /// tests).
    ///
    /// # Errors
    ///
    /// As [`seal`](Self::seal); [`SealingError::Randomness`] when `rng` fails.
    pub fn seal_with_rng<R: rand::TryCryptoRng + ?Sized>(
        &self,
        aad: &[u8],
        secret: &[u8],
        rng: &mut R,
    ) -> Result<SealedSecret, SealingError> {
        if secret.is_empty() {
            return Err(SealingError::EmptySecret);
        }
        let mut nonce = [0u8; SEALED_NONCE_LEN];
        rng.try_fill_bytes(&mut nonce)
            .map_err(|_| SealingError::Randomness)?;

        let key = &self.current;
        let full_aad = associated_data(key.version, aad);
        // The buffer holds the plaintext until it is encrypted in place: wipe it if
        // encryption fails. Room for the tag up front, so no reallocation leaves a copy.
        let mut buffer = Zeroizing::new(Vec::with_capacity(secret.len() + SEALED_TAG_LEN));
        buffer.extend_from_slice(secret);
        key.cipher
            .encrypt_in_place(&XNonce::from(nonce), &full_aad, &mut *buffer)
            .map_err(|_| SealingError::Seal)?;
        Ok(SealedSecret {
            key_version: key.version,
            nonce,
            ciphertext: std::mem::take(&mut *buffer),
        })
    }

    /// Unseals a secret sealed under any key of the ring, checking it is bound to `aad`
    /// (the record's key id). The plaintext is wiped when the returned value is dropped.
    ///
    /// # Errors
    ///
    /// * [`SealingError::UnknownVersion`] when the ring has no key with
    ///   `sealed.key_version`;
    /// * [`SealingError::Unseal`] when authentication fails: wrong `aad` (another
    ///   record), a modified nonce, ciphertext or version, or a wrong key.
    pub fn unseal(
        &self,
        aad: &[u8],
        sealed: &SealedSecret,
    ) -> Result<Zeroizing<Vec<u8>>, SealingError> {
        let key = self
            .key(sealed.key_version)
            .ok_or(SealingError::UnknownVersion(sealed.key_version))?;
        if sealed.ciphertext.len() < SEALED_TAG_LEN {
            return Err(SealingError::Unseal);
        }
        let full_aad = associated_data(key.version, aad);
        let mut buffer = Zeroizing::new(sealed.ciphertext.clone());
        key.cipher
            .decrypt_in_place(&XNonce::from(sealed.nonce), &full_aad, &mut *buffer)
            .map_err(|_| SealingError::Unseal)?;
        Ok(buffer)
    }

    /// Whether `sealed` was sealed under a key other than the current one and should be
    /// re-sealed (see [`reseal`](Self::reseal)).
    #[must_use]
    pub fn needs_reseal(&self, sealed: &SealedSecret) -> bool {
        sealed.key_version != self.current.version
    }

    /// Unseals `sealed` and seals the secret again under the current key with a fresh
    /// nonce from the OS CSPRNG. The plaintext is wiped before returning.
    ///
    /// # Errors
    ///
    /// Those of [`unseal`](Self::unseal) and [`seal`](Self::seal).
    pub fn reseal(&self, aad: &[u8], sealed: &SealedSecret) -> Result<SealedSecret, SealingError> {
        self.reseal_with_rng(aad, sealed, &mut rand::rngs::SysRng)
    }

    /// [`reseal`](Self::reseal) with the nonce drawn from `rng`.
    ///
    /// # Errors
    ///
    /// Those of [`unseal`](Self::unseal) and [`seal_with_rng`](Self::seal_with_rng).
    pub fn reseal_with_rng<R: rand::TryCryptoRng + ?Sized>(
        &self,
        aad: &[u8],
        sealed: &SealedSecret,
        rng: &mut R,
    ) -> Result<SealedSecret, SealingError> {
        let secret = self.unseal(aad, sealed)?;
        self.seal_with_rng(aad, &secret, rng)
    }

    fn key(&self, version: u32) -> Option<&SealingKey> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|key| key.version == version)
    }
}

impl fmt::Debug for SealingKeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let previous: Vec<u32> = self.previous.iter().map(SealingKey::version).collect();
        f.debug_struct("SealingKeyRing")
            .field("current", &self.current.version)
            .field("previous", &previous)
            .finish()
    }
}

/// [`SEAL_LABEL`] `||` version (big-endian) `||` the caller's associated data.
fn associated_data(version: u32, aad: &[u8]) -> Vec<u8> {
    let mut full = Vec::with_capacity(SEAL_LABEL.len() + 4 + aad.len());
    full.extend_from_slice(SEAL_LABEL);
    full.extend_from_slice(&version.to_be_bytes());
    full.extend_from_slice(aad);
    full
}

/// What the record stores for a signing secret. Public fields so hosts can map it to
/// columns (an integer, a 24-byte binary and a variable binary).
///
/// Not secret by itself (useless without the sealing key), but `Debug` shows only the
/// version and the ciphertext length.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret {
    /// Version of the [`SealingKey`] that sealed the secret.
    pub key_version: u32,
    /// The random XChaCha20 nonce used for this seal.
    pub nonce: [u8; SEALED_NONCE_LEN],
    /// The encrypted secret followed by the 16-byte Poly1305 tag.
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedSecret")
            .field("key_version", &self.key_version)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

/// Sealing or unsealing failed. Carries no secret material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealingError {
    /// The sealing key is not exactly 32 bytes.
    #[error("sealing key must be exactly 32 bytes (`openssl rand -hex 32` makes one)")]
    KeyLength,
    /// A sealing key given as text ([`SealingKey::from_hex`]) is not an
    /// even number of hex digits. The text is not repeated.
    #[error("a sealing key in hex must be 64 hex digits (`openssl rand -hex 32`)")]
    KeyHex,
    /// The key ring already has a key with this version.
    #[error("sealing key version {0} is already in the key ring")]
    DuplicateVersion(u32),
    /// The key ring has no key with the version the secret was sealed under.
    #[error("no sealing key with version {0} in the key ring")]
    UnknownVersion(u32),
    /// The random number generator failed to produce a nonce.
    #[error("the random number generator failed")]
    Randomness,
    /// Authentication failed: wrong associated data (another record), wrong key, or a
    /// modified sealed secret.
    #[error("the sealed secret does not unseal (wrong record, wrong key or altered data)")]
    Unseal,
    /// An empty secret cannot be sealed.
    #[error("cannot seal an empty secret")]
    EmptySecret,
    /// The cipher refused to seal (the secret is too long).
    #[error("the secret cannot be sealed (too long)")]
    Seal,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chacha20poly1305::aead::Aead;
    use chacha20poly1305::aead::Payload;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const KEY_1: [u8; 32] = [0x11; 32];
    const KEY_2: [u8; 32] = [0x22; 32];
    const SECRET: &[u8] = b"sk_live_4eC39HqLyjWDarjtT1zdp7dc";
    const KEY_ID: &[u8] = b"key_01HZX3K7";

    fn ring_v1() -> SealingKeyRing {
        SealingKeyRing::new(SealingKey::new(1, &KEY_1).unwrap())
    }

    use crate::failing_rng::FailingRng;

    /// A generator that fills with 0, 1, 2, … so the committed vector below is stable
    /// regardless of `StdRng`'s algorithm.
    struct CountingRng(u8);

    impl rand::TryRng for CountingRng {
        type Error = std::convert::Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            let mut b = [0; 4];
            self.try_fill_bytes(&mut b)?;
            Ok(u32::from_le_bytes(b))
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            let mut b = [0; 8];
            self.try_fill_bytes(&mut b)?;
            Ok(u64::from_le_bytes(b))
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            for byte in dst {
                *byte = self.0;
                self.0 = self.0.wrapping_add(1);
            }
            Ok(())
        }
    }

    impl rand::TryCryptoRng for CountingRng {}

    #[test]
    fn seal_draws_its_nonce_from_the_os() {
        let ring = ring_v1();
        let a = ring.seal(KEY_ID, SECRET).unwrap();
        let b = ring.seal(KEY_ID, SECRET).unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_eq!(ring.unseal(KEY_ID, &a).unwrap().as_slice(), SECRET);
        let again = ring.reseal(KEY_ID, &a).unwrap();
        assert_ne!(again.nonce, a.nonce);
        assert_eq!(ring.unseal(KEY_ID, &again).unwrap().as_slice(), SECRET);
    }

    #[test]
    fn round_trip() {
        let ring = ring_v1();
        let sealed = ring
            .seal_with_rng(KEY_ID, SECRET, &mut StdRng::seed_from_u64(1))
            .unwrap();
        assert_eq!(sealed.key_version, 1);
        assert_eq!(sealed.ciphertext.len(), SECRET.len() + SEALED_TAG_LEN);
        assert_ne!(&sealed.ciphertext[..SECRET.len()], SECRET);
        let opened = ring.unseal(KEY_ID, &sealed).unwrap();
        assert_eq!(opened.as_slice(), SECRET);
        assert!(!ring.needs_reseal(&sealed));
    }

    #[test]
    fn committed_vector() {
        // seal(KEY_ID, SECRET) under KEY_1 (0x11 * 32), version 1, nonce 00 01 .. 17.
        // Cross-checked outside Rust: HChaCha20 subkey + ChaCha20-Poly1305 (Python
        // `cryptography`) over the documented associated data. A change here means
        // stored secrets no longer unseal.
        const EXPECTED: &str = "e8718d1e8b5a3908dd4d200f51415b9578d50f9d611d10f1863a6fe6b8246de7\
                                3b838b917a6f23c5d09f3fe196316c38";
        let ring = ring_v1();
        let sealed = ring
            .seal_with_rng(KEY_ID, SECRET, &mut CountingRng(0))
            .unwrap();
        let nonce: Vec<u8> = (0..24).collect();
        assert_eq!(sealed.nonce.as_slice(), nonce.as_slice());
        let mut hex = [0u8; 2 * (32 + SEALED_TAG_LEN)];
        let hex = base16ct::lower::encode_str(&sealed.ciphertext, &mut hex).unwrap();
        assert_eq!(hex, EXPECTED);
    }

    #[test]
    fn format_matches_documentation() {
        // Independent reconstruction of the documented associated data.
        let ring = ring_v1();
        let sealed = ring
            .seal_with_rng(KEY_ID, SECRET, &mut StdRng::seed_from_u64(2))
            .unwrap();
        let mut aad = b"api-keys sealed secret v1\0".to_vec();
        aad.extend_from_slice(&[0, 0, 0, 1]);
        aad.extend_from_slice(KEY_ID);
        let cipher = XChaCha20Poly1305::new_from_slice(&KEY_1).unwrap();
        let plain = cipher
            .decrypt(
                &XNonce::from(sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &aad,
                },
            )
            .unwrap();
        assert_eq!(plain, SECRET);
    }

    #[test]
    fn wrong_aad_fails() {
        let ring = ring_v1();
        let sealed = ring
            .seal_with_rng(KEY_ID, SECRET, &mut StdRng::seed_from_u64(3))
            .unwrap();
        for other in [&b"key_01HZX3K8"[..], b"", b"key_01HZX3K", b"key_01HZX3K7\0"] {
            assert!(matches!(
                ring.unseal(other, &sealed),
                Err(SealingError::Unseal)
            ));
        }
    }

    #[test]
    fn tampering_fails() {
        let ring = ring_v1()
            .with_previous(SealingKey::new(2, &KEY_1).unwrap())
            .unwrap();
        let sealed = ring
            .seal_with_rng(KEY_ID, SECRET, &mut StdRng::seed_from_u64(4))
            .unwrap();

        for i in 0..sealed.ciphertext.len() {
            let mut t = sealed.clone();
            t.ciphertext[i] ^= 0x01;
            assert!(matches!(ring.unseal(KEY_ID, &t), Err(SealingError::Unseal)));
        }
        for i in 0..SEALED_NONCE_LEN {
            let mut t = sealed.clone();
            t.nonce[i] ^= 0x80;
            assert!(matches!(ring.unseal(KEY_ID, &t), Err(SealingError::Unseal)));
        }
        // Truncated (tag cut off), empty, extended.
        let mut t = sealed.clone();
        t.ciphertext.truncate(SEALED_TAG_LEN - 1);
        assert!(matches!(ring.unseal(KEY_ID, &t), Err(SealingError::Unseal)));
        let mut t = sealed.clone();
        t.ciphertext.clear();
        assert!(matches!(ring.unseal(KEY_ID, &t), Err(SealingError::Unseal)));
        let mut t = sealed.clone();
        t.ciphertext.push(0);
        assert!(matches!(ring.unseal(KEY_ID, &t), Err(SealingError::Unseal)));

        // Relabelled to another version whose key has the same bytes: the version is
        // authenticated, so it still fails.
        let mut t = sealed.clone();
        t.key_version = 2;
        assert!(matches!(ring.unseal(KEY_ID, &t), Err(SealingError::Unseal)));
        // Relabelled to a version the ring does not have.
        let mut t = sealed;
        t.key_version = 9;
        assert!(matches!(
            ring.unseal(KEY_ID, &t),
            Err(SealingError::UnknownVersion(9))
        ));
    }

    #[test]
    fn rotation() {
        let old_ring = ring_v1();
        let old = old_ring
            .seal_with_rng(KEY_ID, SECRET, &mut StdRng::seed_from_u64(5))
            .unwrap();

        let ring = SealingKeyRing::new(SealingKey::new(2, &KEY_2).unwrap())
            .with_previous(SealingKey::new(1, &KEY_1).unwrap())
            .unwrap();
        assert_eq!(ring.current_version(), 2);
        assert_eq!(ring.versions().collect::<Vec<_>>(), [2, 1]);
        assert!(ring.needs_reseal(&old));
        assert_eq!(ring.unseal(KEY_ID, &old).unwrap().as_slice(), SECRET);

        let new = ring
            .reseal_with_rng(KEY_ID, &old, &mut StdRng::seed_from_u64(6))
            .unwrap();
        assert_eq!(new.key_version, 2);
        assert!(!ring.needs_reseal(&new));
        assert_eq!(ring.unseal(KEY_ID, &new).unwrap().as_slice(), SECRET);
        // The old ring cannot read the new seal.
        assert!(matches!(
            old_ring.unseal(KEY_ID, &new),
            Err(SealingError::UnknownVersion(2))
        ));

        // rotate() reaches the same state.
        let rotated = ring_v1()
            .rotate(SealingKey::new(2, &KEY_2).unwrap())
            .unwrap();
        assert_eq!(rotated.versions().collect::<Vec<_>>(), [2, 1]);
        assert_eq!(rotated.unseal(KEY_ID, &old).unwrap().as_slice(), SECRET);
    }

    #[test]
    fn duplicate_versions_refused() {
        let err = ring_v1()
            .with_previous(SealingKey::new(1, &KEY_2).unwrap())
            .unwrap_err();
        assert!(matches!(err, SealingError::DuplicateVersion(1)));
        let err = ring_v1()
            .with_previous(SealingKey::new(2, &KEY_2).unwrap())
            .unwrap()
            .with_previous(SealingKey::new(2, &KEY_1).unwrap())
            .unwrap_err();
        assert!(matches!(err, SealingError::DuplicateVersion(2)));
        let err = ring_v1()
            .rotate(SealingKey::new(1, &KEY_2).unwrap())
            .unwrap_err();
        assert!(matches!(err, SealingError::DuplicateVersion(1)));
    }

    #[test]
    fn key_lengths() {
        for len in [0usize, 1, 16, 31, 33, 64] {
            let material = vec![0x42; len];
            assert!(
                matches!(SealingKey::new(1, &material), Err(SealingError::KeyLength)),
                "{len}-byte key accepted"
            );
        }
        assert_eq!(SealingKey::new(7, &[0x42; 32]).unwrap().version(), 7);
    }

    #[test]
    fn deterministic_with_seeded_rng() {
        let ring = ring_v1();
        let a = ring
            .seal_with_rng(KEY_ID, SECRET, &mut StdRng::seed_from_u64(42))
            .unwrap();
        let b = ring
            .seal_with_rng(KEY_ID, SECRET, &mut StdRng::seed_from_u64(42))
            .unwrap();
        let c = ring
            .seal_with_rng(KEY_ID, SECRET, &mut StdRng::seed_from_u64(43))
            .unwrap();
        assert_eq!(a, b);
        assert_ne!(a.nonce, c.nonce);
        assert_ne!(a.ciphertext, c.ciphertext);
        // One generator, two seals: different nonces.
        let mut rng = StdRng::seed_from_u64(42);
        let d = ring.seal_with_rng(KEY_ID, SECRET, &mut rng).unwrap();
        let e = ring.seal_with_rng(KEY_ID, SECRET, &mut rng).unwrap();
        assert_eq!(a, d);
        assert_ne!(d.nonce, e.nonce);
    }

    #[test]
    fn failing_rng_is_an_error() {
        let ring = ring_v1();
        assert!(matches!(
            ring.seal_with_rng(KEY_ID, SECRET, &mut FailingRng),
            Err(SealingError::Randomness)
        ));
        let sealed = ring
            .seal_with_rng(KEY_ID, SECRET, &mut StdRng::seed_from_u64(7))
            .unwrap();
        assert!(matches!(
            ring.reseal_with_rng(KEY_ID, &sealed, &mut FailingRng),
            Err(SealingError::Randomness)
        ));
    }

    #[test]
    fn empty_secret_refused() {
        assert!(matches!(
            ring_v1().seal_with_rng(KEY_ID, b"", &mut StdRng::seed_from_u64(8)),
            Err(SealingError::EmptySecret)
        ));
    }

    #[test]
    fn debug_is_redacted() {
        let key = SealingKey::new(3, &[0xab; 32]).unwrap();
        let shown = format!("{key:?}");
        assert_eq!(shown, "SealingKey { version: 3, .. }");
        let ring = SealingKeyRing::new(key)
            .with_previous(SealingKey::new(1, &KEY_1).unwrap())
            .unwrap();
        assert_eq!(
            format!("{ring:?}"),
            "SealingKeyRing { current: 3, previous: [1] }"
        );
        let sealed = ring
            .seal_with_rng(KEY_ID, SECRET, &mut StdRng::seed_from_u64(9))
            .unwrap();
        assert_eq!(
            format!("{sealed:?}"),
            format!(
                "SealedSecret {{ key_version: 3, ciphertext_len: {}, .. }}",
                SECRET.len() + SEALED_TAG_LEN
            )
        );
        for err in [
            SealingError::KeyLength,
            SealingError::Unseal,
            SealingError::Randomness,
        ] {
            let text = format!("{err} {err:?}");
            assert!(!text.contains("sk_live"));
        }
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_round_trip_is_possible() {
        fn assert_serde<T: serde::Serialize + serde::de::DeserializeOwned>() {}
        assert_serde::<SealedSecret>();
    }
}
