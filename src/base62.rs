//! Fixed-width base62 over big-endian byte chunks of at most 16 bytes, one
//! `u128` limb per chunk (about 50 ns for 32 bytes, where base58 over a big
//! integer costs microseconds).
//!
//! The alphabet is `0-9A-Za-z`: no `_`, so a double-click selects a whole
//! token, and nothing that needs URL or shell escaping. Widths are fixed per
//! chunk length, so every encoding of `n` bytes has the same length. Decoding
//! is strict: a value that does not fit the chunk (a non-canonical string) is
//! refused, so every accepted string has exactly one byte sequence and the
//! other way round.

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Characters per chunk length 0..=16, computed at compile time.
#[expect(
    clippy::indexing_slicing,
    reason = "compile-time evaluation; n ranges over 0..=16 and the table has 17 entries"
)]
const WIDTHS: [usize; 17] = {
    let mut t = [0usize; 17];
    let mut n = 0;
    while n <= 16 {
        t[n] = compute_width(n);
        n += 1;
    }
    t
};

/// The number of base62 characters that encode `n` bytes (`n <= 16`).
#[inline]
#[expect(
    clippy::indexing_slicing,
    reason = "guarded by n <= 16; the table has 17 entries (slice::get is not const)"
)]
pub(crate) const fn chunk_width(n: usize) -> usize {
    if n <= 16 { WIDTHS[n] } else { 0 }
}

const fn compute_width(n: usize) -> usize {
    // Smallest w with 62^w >= 256^n, computed with saturating u128 arithmetic.
    let mut w = 0usize;
    let mut cap: u128 = 1;
    let limit: u128 = if n >= 16 {
        u128::MAX
    } else {
        (1u128 << (8 * n)) - 1
    };
    while cap <= limit && cap != 0 {
        w += 1;
        cap = match cap.checked_mul(62) {
            Some(c) => c,
            None => 0, // overflow: 62^w exceeds every u128, so it covers `limit`
        };
    }
    w
}

/// The number of characters that encode `n` bytes in 16-byte chunks.
pub(crate) const fn encoded_len(n: usize) -> usize {
    let full = n / 16;
    let rest = n % 16;
    full * chunk_width(16) + if rest == 0 { 0 } else { chunk_width(rest) }
}

/// Appends the encoding of `bytes` to `out`.
pub(crate) fn encode_into(bytes: &[u8], out: &mut String) {
    for chunk in bytes.chunks(16) {
        let mut value: u128 = 0;
        for &b in chunk {
            value = (value << 8) | u128::from(b);
        }
        let width = chunk_width(chunk.len());
        let mut digits = [b'0'; 22];
        // Right to left, ten digits per u128 division, the rest in u64.
        let mut end = width.min(digits.len());
        while end > 0 {
            let group = end.min(10);
            let scale = u128::from(POW62.get(group).copied().unwrap_or(1));
            let mut low = (value % scale) as u64; // < 62^10: fits
            value /= scale;
            let start = end - group;
            for slot in digits
                .get_mut(start..end)
                .unwrap_or(&mut [])
                .iter_mut()
                .rev()
            {
                // `low % 62 < 62`: always inside the alphabet.
                *slot = ALPHABET.get((low % 62) as usize).copied().unwrap_or(b'0');
                low /= 62;
            }
            end = start;
        }
        for &d in digits.iter().take(width) {
            out.push(char::from(d));
        }
    }
}

/// Digit values by byte; 0xFF outside the alphabet.
#[expect(
    clippy::indexing_slicing,
    reason = "compile-time evaluation over fixed bounds (62 letters, 256 slots)"
)]
const DIGITS: [u8; 256] = {
    let mut t = [0xFFu8; 256];
    let mut i = 0;
    while i < 62 {
        t[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// 62^k for k in 0..=10 (62^10 < 2^60, so ten digits fit a `u64`).
#[expect(
    clippy::indexing_slicing,
    reason = "compile-time evaluation over 0..=10 on an 11-entry table"
)]
const POW62: [u64; 11] = {
    let mut t = [1u64; 11];
    let mut k = 1;
    while k <= 10 {
        t[k] = t[k - 1] * 62;
        k += 1;
    }
    t
};

/// The value of a digit byte, 0xFF outside the alphabet.
#[inline(always)]
fn digit(c: u8) -> u8 {
    DIGITS.get(usize::from(c)).copied().unwrap_or(0xFF)
}

/// `u128::MAX / 62^k`: a value above it overflows when scaled by 62^k.
#[expect(
    clippy::indexing_slicing,
    reason = "compile-time evaluation over 0..=10 on 11-entry tables"
)]
const SCALE_LIMIT: [u128; 11] = {
    let mut t = [u128::MAX; 11];
    let mut k = 1;
    while k <= 10 {
        t[k] = u128::MAX / (POW62[k] as u128);
        k += 1;
    }
    t
};

/// Decodes up to 22 digits into a `u128`: ten digits at a time in a `u64`
/// (62^10 < 2^60: no overflow), then one `u128` multiply-add per group
/// whose overflow is ruled out by a comparison with a compile-time limit.
/// Invalid digits are collected in a mask and checked once.
#[inline]
fn decode_chunk(digits: &[u8]) -> Option<u128> {
    let mut value: u128 = 0;
    let mut invalid = 0u8;
    for group in digits.chunks(10) {
        // Horner's rule two digits at a time: the multiply chain that
        // bounds the speed is half as long.
        let mut acc: u64 = 0;
        let mut pairs = group.chunks_exact(2);
        for pair in &mut pairs {
            let (a, b) = match pair {
                [a, b] => (digit(*a), digit(*b)),
                _ => (0xFF, 0xFF),
            };
            invalid |= a | b;
            let two = u64::from(a & 0x3F) * 62 + u64::from(b & 0x3F);
            acc = acc.wrapping_mul(62 * 62).wrapping_add(two);
        }
        if let [c] = pairs.remainder() {
            let d = digit(*c);
            invalid |= d;
            acc = acc.wrapping_mul(62).wrapping_add(u64::from(d & 0x3F));
        }
        let k = group.len();
        if value > SCALE_LIMIT.get(k).copied().unwrap_or(0) {
            return None;
        }
        let scale = u128::from(POW62.get(k).copied().unwrap_or(0));
        value = value.wrapping_mul(scale).checked_add(u128::from(acc))?;
    }
    // Valid digit values are < 62 < 0x40; 0xFF marks an invalid byte.
    if invalid & 0xC0 != 0 {
        return None;
    }
    Some(value)
}

/// Decodes `text` into `out`, which fixes the expected byte length.
/// Returns `None` when `text` has the wrong length, leaves the alphabet or is
/// not canonical.
pub(crate) fn decode_into(text: &[u8], out: &mut [u8]) -> Option<()> {
    if text.len() != encoded_len(out.len()) {
        return None;
    }
    let mut rest = text;
    for chunk in out.chunks_mut(16) {
        let width = chunk_width(chunk.len());
        let (digits, tail) = rest.split_at_checked(width)?;
        rest = tail;
        let value = decode_chunk(digits)?;
        let be = value.to_be_bytes();
        let (high, low) = be.split_at_checked(16 - chunk.len())?;
        // Canonical: the value must fit the chunk.
        if high.iter().any(|b| *b != 0) {
            return None;
        }
        chunk.copy_from_slice(low);
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn widths() {
        assert_eq!(chunk_width(16), 22);
        assert_eq!(chunk_width(8), 11);
        assert_eq!(chunk_width(4), 6);
        assert_eq!(chunk_width(1), 2);
        assert_eq!(encoded_len(32), 44);
        assert_eq!(encoded_len(20), 28);
    }

    #[test]
    fn extremes_round_trip() {
        for n in 1..=40 {
            for fill in [0u8, 0xff] {
                let bytes = vec![fill; n];
                let mut s = String::new();
                encode_into(&bytes, &mut s);
                assert_eq!(s.len(), encoded_len(n));
                let mut back = vec![0u8; n];
                decode_into(s.as_bytes(), &mut back).unwrap();
                assert_eq!(back, bytes);
            }
        }
    }

    #[test]
    fn non_canonical_refused() {
        // 22 'z's is 62^22 - 1 > u128::MAX
        let mut out = [0u8; 16];
        assert!(decode_into(&[b'z'; 22], &mut out).is_none());
        // 6 'z's exceeds u32
        let mut out = [0u8; 4];
        assert!(decode_into(b"zzzzzz", &mut out).is_none());
        assert!(decode_into(b"00000_", &mut out).is_none());
        assert!(decode_into(b"00000", &mut out).is_none());
    }

    proptest! {
        #[test]
        fn round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..70)) {
            let mut s = String::new();
            encode_into(&bytes, &mut s);
            prop_assert_eq!(s.len(), encoded_len(bytes.len()));
            prop_assert!(s.bytes().all(|c| c.is_ascii_alphanumeric()));
            let mut back = vec![0u8; bytes.len()];
            prop_assert!(decode_into(s.as_bytes(), &mut back).is_some());
            prop_assert_eq!(back, bytes);
        }

        #[test]
        fn decode_never_panics(text in proptest::collection::vec(any::<u8>(), 0..80), n in 0usize..40) {
            let mut out = vec![0u8; n];
            let _ = decode_into(&text, &mut out);
        }
    }
}
