//! Temporary stand-in; replaced by the real module.
#![allow(missing_docs, clippy::missing_errors_doc)]
use zeroize::Zeroizing;
pub struct SealingKey {
    version: u32,
    key: Zeroizing<Vec<u8>>,
}
impl core::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "SealingKey({})", self.version)
    }
}
impl SealingKey {
    pub fn new(version: u32, key: &[u8]) -> Result<Self, SealingError> {
        if key.len() != 32 {
            return Err(SealingError::KeyLength);
        }
        Ok(Self {
            version,
            key: Zeroizing::new(key.to_vec()),
        })
    }
    pub fn version(&self) -> u32 {
        self.version
    }
}
#[derive(Debug)]
pub struct SealingKeyRing {
    keys: Vec<SealingKey>,
}
impl SealingKeyRing {
    pub fn new(current: SealingKey) -> Self {
        Self {
            keys: vec![current],
        }
    }
    pub fn current_version(&self) -> u32 {
        self.keys.first().map_or(0, |k| k.version)
    }
    pub fn seal<R: rand::TryCryptoRng + ?Sized>(
        &self,
        _aad: &[u8],
        secret: &[u8],
        _rng: &mut R,
    ) -> Result<SealedSecret, SealingError> {
        let k = self.keys.first().ok_or(SealingError::Unseal)?;
        Ok(SealedSecret {
            key_version: k.version,
            nonce: [0; 24],
            ciphertext: secret
                .iter()
                .zip(k.key.iter().cycle())
                .map(|(a, b)| a ^ b)
                .collect(),
        })
    }
    pub fn unseal(
        &self,
        _aad: &[u8],
        sealed: &SealedSecret,
    ) -> Result<Zeroizing<Vec<u8>>, SealingError> {
        let k = self
            .keys
            .iter()
            .find(|k| k.version == sealed.key_version)
            .ok_or(SealingError::UnknownVersion(sealed.key_version))?;
        Ok(Zeroizing::new(
            sealed
                .ciphertext
                .iter()
                .zip(k.key.iter().cycle())
                .map(|(a, b)| a ^ b)
                .collect(),
        ))
    }
    pub fn needs_reseal(&self, sealed: &SealedSecret) -> bool {
        sealed.key_version != self.current_version()
    }
}
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SealedSecret {
    pub key_version: u32,
    pub nonce: [u8; 24],
    pub ciphertext: Vec<u8>,
}
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealingError {
    #[error("key length")]
    KeyLength,
    #[error("unknown version {0}")]
    UnknownVersion(u32),
    #[error("unseal")]
    Unseal,
    #[error("randomness")]
    Randomness,
}
