//! A hasher for maps keyed by key ids **the crate generated**: 128 random
//! bits, whose two words are already uniform, so a lookup needs no SipHash
//! round.
//!
//! Only for ids that came out of a store or passed verification (records,
//! the usage tally). A client can make a token with any id it likes (the
//! checksum is public), so a map that may hold ids a client chose (the
//! cache's unknown ids) uses a keyed hash instead (`RandomState`): with
//! this one, chosen ids could all collide.

use core::hash::{BuildHasherDefault, Hasher};

/// The words of a key id, rotated and XOR-ed: `KeyId` hashes as two
/// `write_u64` calls.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only reached through other `Hash` impls; fold the bytes in.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = self.0.rotate_left(32) ^ v;
    }
}

/// [`IdHasher`] for `HashMap` and `quick_cache`.
pub(crate) type IdHash = BuildHasherDefault<IdHasher>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::KeyId;
    use core::hash::BuildHasher;

    #[test]
    fn a_key_id_hashes_to_its_words_rotated_and_xored() {
        let mut bytes = [0u8; 16];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::try_from(i + 1).unwrap_or(0);
        }
        let id = KeyId::from_bytes(bytes);
        let first = u64::from_le_bytes([1, 2, 3, 4, 5, 6, 7, 8]);
        let second = u64::from_le_bytes([9, 10, 11, 12, 13, 14, 15, 16]);
        assert_eq!(
            IdHash::default().hash_one(id),
            first.rotate_left(32) ^ second
        );
    }

    #[test]
    fn bytes_fold_in_order() {
        let mut h = IdHasher::default();
        h.write(&[0x12, 0x34]);
        assert_eq!(h.finish(), 0x1234);
        h.write_u64(0xff);
        assert_eq!(h.finish(), 0x0000_1234_0000_0000 ^ 0xff);
        // A byte meets the bits rotated round from the top: XOR, not OR.
        let mut h = IdHasher::default();
        h.write_u64(u64::MAX);
        h.write(&[0x0f]);
        assert_eq!(h.finish(), u64::MAX ^ 0x0f);
    }
}
