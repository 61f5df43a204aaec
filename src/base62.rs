//! Fixed-width base62 over big-endian 8-byte limbs: every 8 bytes become
//! 11 characters (62^11 > 2^64), a shorter last limb the fewest characters
//! that hold it. One `u64` per limb, so encoding divides by a constant and
//! decoding is one multiply-add per character (two digits per step): no
//! `u128` and no big-integer arithmetic.
//!
//! The alphabet is `0-9A-Za-z`. Why not a 64-symbol alphabet, which would
//! decode with shifts alone: the only word character outside `[0-9A-Za-z]`
//! is `_`, so the second extra symbol would be `-`, `+`, `/` or `.`, and a
//! double-click stops at those in browsers and most editors (which select
//! runs of letters, digits and `_`); `+` and `/` also need escaping in URLs.
//! The power-of-two alphabet of word characters alone is base32, which makes
//! the default token 13 characters longer. With 8-byte limbs base62 costs
//! about as many instructions per character as base32 or base64.
//!
//! Widths are fixed per byte length, so every encoding of `n` bytes has the
//! same length. Decoding is strict: a limb whose value does not fit its
//! bytes (a non-canonical string) is refused, so every accepted string has
//! exactly one byte sequence and the other way round.

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Bytes per limb.
const LIMB: usize = 8;
/// Characters of a full limb.
const LIMB_CHARS: usize = 11;

/// The number of characters that encode a limb of `n` bytes (`n <= 8`):
/// the smallest `w` with `62^w >= 256^n` (checked by a unit test).
#[inline]
pub(crate) const fn limb_width(n: usize) -> usize {
    match n {
        0 => 0,
        1 => 2,
        2 => 3,
        3 => 5,
        4 => 6,
        5 => 7,
        6 => 9,
        7 => 10,
        _ => LIMB_CHARS,
    }
}

/// The number of characters that encode `n` bytes.
pub(crate) const fn encoded_len(n: usize) -> usize {
    (n / LIMB) * LIMB_CHARS + limb_width(n % LIMB)
}

/// Writes the encoding of `bytes` into `out`, which must be exactly
/// [`encoded_len`]`(bytes.len())` long (`None` otherwise).
pub(crate) fn encode_to(bytes: &[u8], out: &mut [u8]) -> Option<()> {
    if out.len() != encoded_len(bytes.len()) {
        return None;
    }
    let mut rest = out;
    for limb in bytes.chunks(LIMB) {
        let (digits, tail) = rest.split_at_mut_checked(limb_width(limb.len()))?;
        rest = tail;
        let mut value = limb.iter().fold(0u64, |v, &b| (v << 8) | u64::from(b));
        if let Ok(full) = <&mut [u8; LIMB_CHARS]>::try_from(&mut *digits) {
            *full = encode_word(value);
            continue;
        }
        for slot in digits.iter_mut().rev() {
            // `value % 62 < 62`: always inside the alphabet.
            *slot = ALPHABET.get((value % 62) as usize).copied().unwrap_or(b'0');
            value /= 62;
        }
    }
    Some(())
}

/// The eleven characters of a full limb: the low five digits from the
/// remainder modulo 62^5 in `u32` arithmetic, the high six from the
/// quotient (< 62^6 < 2^36) in `u64`, all divisions by constants.
#[inline]
pub(crate) fn encode_word(value: u64) -> [u8; LIMB_CHARS] {
    const P5: u64 = 62 * 62 * 62 * 62 * 62;
    let mut out = [b'0'; LIMB_CHARS];
    let (mut high, mut low) = (value / P5, (value % P5) as u32);
    let (head, tail) = out.split_at_mut(LIMB_CHARS - 5);
    for slot in tail.iter_mut().rev() {
        *slot = ALPHABET.get((low % 62) as usize).copied().unwrap_or(b'0');
        low /= 62;
    }
    for slot in head.iter_mut().rev() {
        *slot = ALPHABET.get((high % 62) as usize).copied().unwrap_or(b'0');
        high /= 62;
    }
    out
}

/// The six characters of a 4-byte limb (the checksum), from a `u32`.
#[inline]
pub(crate) fn encode_u32(mut value: u32) -> [u8; 6] {
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        // `value % 62 < 62`: always inside the alphabet.
        *slot = ALPHABET.get((value % 62) as usize).copied().unwrap_or(b'0');
        value /= 62;
    }
    out
}

/// Appends the encoding of `bytes` to `out` (for ids and test code; the
/// token generator writes into its own buffer with [`encode_to`]).
pub(crate) fn encode_into(bytes: &[u8], out: &mut String) {
    let mut buf = [0u8; 2 * LIMB_CHARS];
    for chunk in bytes.chunks(2 * LIMB) {
        let len = encoded_len(chunk.len());
        if let Some(dst) = buf.get_mut(..len)
            && encode_to(chunk, dst).is_some()
        {
            // Only alphabet bytes were written: always ASCII.
            out.push_str(core::str::from_utf8(dst).unwrap_or_default());
        }
    }
}

/// Whether every byte of `text` is in the alphabet. Written as a fold
/// without early exit so that it compiles to vector code.
#[inline]
pub(crate) fn is_alphabet(text: &[u8]) -> bool {
    fn all(t: &[u8]) -> bool {
        t.iter().fold(true, |ok, c| ok & c.is_ascii_alphanumeric())
    }
    // From 32 to 64 bytes: two overlapping fixed 32-byte windows, which
    // compile to straight vector code with no scalar tail.
    let first = text.first_chunk::<32>();
    let last = text.last_chunk::<32>();
    match (first, last) {
        (Some(a), Some(b)) if text.len() <= 64 => all(a) & all(b),
        _ => all(text),
    }
}

/// The alphabet padded to 64 entries, so that any 6-bit group indexes it;
/// the two extra entries are never kept.
#[expect(
    clippy::indexing_slicing,
    reason = "compile-time evaluation over 0..62 on 62- and 64-entry tables"
)]
const ALPHABET_64: [u8; 64] = {
    let mut t = [b'0'; 64];
    let mut i = 0;
    while i < 62 {
        t[i] = ALPHABET[i];
        i += 1;
    }
    t
};

/// Fills `out[filled..]` with characters drawn uniformly from the alphabet
/// and returns how many of `out` are filled afterwards: `random` is read as
/// 6-bit groups (four per three bytes, two from a trailing pair), a group
/// below 62 is a character, 62 and 63 are skipped (rejection sampling: no
/// bias). Every group is written at the next free position, which only an
/// accepted one advances: a skipped group's byte is overwritten by the next
/// one, or lies beyond the returned count.
pub(crate) fn fill_uniform(random: &[u8], out: &mut [u8], mut filled: usize) -> usize {
    let mut put = |group: u32| {
        let g = (group & 0x3F) as usize;
        if let Some(slot) = out.get_mut(filled) {
            *slot = ALPHABET_64.get(g).copied().unwrap_or(b'0');
        }
        filled += usize::from(g < 62);
    };
    let mut triples = random.chunks_exact(3);
    for t in &mut triples {
        if let [a, b, c] = *t {
            let w = u32::from(a) << 16 | u32::from(b) << 8 | u32::from(c);
            put(w >> 18);
            put(w >> 12);
            put(w >> 6);
            put(w);
        }
    }
    if let [a, b] = *triples.remainder() {
        let w = u32::from(a) << 8 | u32::from(b);
        put(w >> 10);
        put(w >> 4);
    }
    filled.min(out.len())
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

/// The value of a digit byte, 0xFF outside the alphabet.
#[inline(always)]
fn digit(c: u8) -> u8 {
    DIGITS.get(usize::from(c)).copied().unwrap_or(0xFF)
}

/// Decodes the digits of one limb of `bytes` bytes (tests only: the crate
/// decodes only full limbs, the key id's halves). Horner's rule two
/// digits at a time over the first ten digits (62^10 < 2^60: no overflow),
/// then a checked step for an eleventh; invalid digits are collected in a
/// mask and checked once.
#[cfg(test)]
fn decode_limb(digits: &[u8], bytes: usize) -> Option<u64> {
    let (head, last) = digits.split_at_checked(digits.len().min(10))?;
    let mut acc: u64 = 0;
    let mut invalid = 0u8;
    let mut pairs = head.chunks_exact(2);
    for pair in &mut pairs {
        let (a, b) = match pair {
            [a, b] => (digit(*a), digit(*b)),
            _ => (0xFF, 0xFF),
        };
        invalid |= a | b;
        acc = acc * (62 * 62) + u64::from(a & 0x3F) * 62 + u64::from(b & 0x3F);
    }
    for &c in pairs.remainder().iter().chain(last) {
        let d = digit(c);
        invalid |= d;
        acc = acc.checked_mul(62)?.checked_add(u64::from(d & 0x3F))?;
    }
    // Valid digit values are < 62 < 0x40; 0xFF marks an invalid byte.
    if invalid & 0xC0 != 0 {
        return None;
    }
    // Canonical: a short limb's value must fit its bytes.
    if bytes < LIMB && acc >> (8 * bytes) != 0 {
        return None;
    }
    Some(acc)
}

/// Decodes exactly 11 characters, a full limb, into a `u64`: unrolled,
/// two digits per multiply-add, one widening multiply for the last digit
/// so that a value above `u64::MAX` is refused without a branch per step.
#[inline(always)]
fn decode_full(t: &[u8; LIMB_CHARS]) -> Option<u64> {
    let d = t.map(digit);
    let invalid = d.iter().fold(0u8, |acc, &x| acc | x);
    let pair = |i: usize| {
        let a = d.get(i).copied().unwrap_or(0xFF);
        let b = d.get(i + 1).copied().unwrap_or(0xFF);
        u64::from(a) * 62 + u64::from(b)
    };
    // Ten digits < 62^10 < 2^60: wrapping never happens for valid input,
    // and invalid input is refused below whatever the arithmetic gave.
    let mut acc = pair(0);
    for i in [2, 4, 6, 8] {
        acc = acc.wrapping_mul(62 * 62).wrapping_add(pair(i));
    }
    let last = d.get(10).copied().unwrap_or(0xFF);
    let wide = u128::from(acc) * 62 + u128::from(last);
    // Valid digit values are < 62 < 0x40; 0xFF marks an invalid byte.
    if invalid & 0xC0 != 0 {
        return None;
    }
    u64::try_from(wide).ok()
}

/// Decodes `text` into `out`, which fixes the expected byte length.
/// Returns `None` when `text` has the wrong length, leaves the alphabet or is
/// not canonical. (Tests only: the inverse of [`encode_into`].)
#[cfg(test)]
pub(crate) fn decode_into(text: &[u8], out: &mut [u8]) -> Option<()> {
    if text.len() != encoded_len(out.len()) {
        return None;
    }
    let mut rest = text;
    for chunk in out.chunks_mut(LIMB) {
        let (digits, tail) = rest.split_at_checked(limb_width(chunk.len()))?;
        rest = tail;
        let value = match <&[u8; LIMB_CHARS]>::try_from(digits) {
            Ok(full) => decode_full(full)?,
            Err(_) => decode_limb(digits, chunk.len())?,
        }
        .to_be_bytes();
        let low = value.get(LIMB - chunk.len()..)?;
        chunk.copy_from_slice(low);
    }
    Some(())
}

/// Decodes exactly 11 characters into the 8 bytes of one full limb, as a
/// big-endian `u64` (the key id's halves).
#[inline]
pub(crate) fn decode_word(text: &[u8]) -> Option<u64> {
    decode_full(text.try_into().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn widths_are_minimal() {
        for n in 1..=LIMB {
            let need = 8 * n as u32;
            let w = limb_width(n) as u32;
            // 62^w >= 2^need and 62^(w-1) < 2^need
            let pow = |e: u32| 62f64.powi(e as i32).log2();
            assert!(pow(w) >= f64::from(need), "n={n}");
            assert!(pow(w - 1) < f64::from(need), "n={n}");
        }
        assert_eq!(encoded_len(16), 22);
        assert_eq!(encoded_len(4), 6);
        assert_eq!(encoded_len(32), 44);
        assert_eq!(encoded_len(20), 28);
    }

    #[test]
    fn limbs_are_big_endian_base62() {
        let mut s = String::new();
        encode_into(&[0, 0, 0, 0, 0, 0, 0, 61, 0, 0, 0, 62], &mut s);
        assert_eq!(s, "0000000000z000010");
        let mut back = [0u8; 12];
        decode_into(s.as_bytes(), &mut back).unwrap();
        assert_eq!(back, [0, 0, 0, 0, 0, 0, 0, 61, 0, 0, 0, 62]);
        assert_eq!(decode_word(b"0000000000z"), Some(61));
        assert_eq!(decode_word(b"LygHa16AHYF"), Some(u64::MAX));
    }

    #[test]
    fn uniform_fill_keeps_groups_below_62_in_order() {
        // 0x000000 -> groups 0,0,0,0; 0xFFFFFF -> 63,63,63,63 (all skipped);
        // 0xF7DF7D -> 61,61,61,61; a trailing pair 0x0410 -> 1, 1.
        let random = [0, 0, 0, 0xFF, 0xFF, 0xFF, 0xF7, 0xDF, 0x7D, 0x04, 0x10];
        let mut out = [b'.'; 12];
        let n = fill_uniform(&random, &mut out, 2);
        assert_eq!(n, 12);
        assert_eq!(&out, b"..0000zzzz11");
        // Never writes past `out`.
        let mut short = [b'.'; 3];
        assert_eq!(fill_uniform(&[0; 30], &mut short, 1), 3);
        assert_eq!(&short, b".00");
    }

    #[test]
    fn checksum_encoding_is_the_limb_encoding() {
        for v in [0u32, 1, 61, 62, 0xDEAD_BEEF, u32::MAX] {
            let mut s = String::new();
            encode_into(&v.to_be_bytes(), &mut s);
            assert_eq!(encode_u32(v), s.as_bytes());
        }
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
        // 11 'z's is 62^11 - 1 > u64::MAX; one above u64::MAX too.
        let mut out = [0u8; 8];
        assert!(decode_into(&[b'z'; 11], &mut out).is_none());
        assert!(decode_into(b"LygHa16AHYG", &mut out).is_none());
        assert!(decode_word(b"LygHa16AHYG").is_none());
        // 6 'z's exceeds u32
        let mut out = [0u8; 4];
        assert!(decode_into(b"zzzzzz", &mut out).is_none());
        assert!(decode_into(b"4gfFC4", &mut out).is_none()); // 2^32
        assert!(decode_into(b"4gfFC3", &mut out).is_some()); // 2^32 - 1
        assert!(decode_into(b"00000_", &mut out).is_none());
        assert!(decode_into(b"00000", &mut out).is_none());
        assert!(decode_word(b"0000000000").is_none());
    }

    #[test]
    fn alphabet_check_sees_every_position() {
        for len in 0..=70 {
            let good = vec![b'a'; len];
            assert!(is_alphabet(&good));
            for at in 0..len {
                for bad in [b'_', b'-', 0u8, 0x80, 0xFF, b'{', b'@', b'`', b'/', b':'] {
                    let mut t = good.clone();
                    t[at] = bad;
                    assert!(!is_alphabet(&t), "{len} {at} {bad:#x}");
                }
            }
        }
    }

    #[test]
    fn every_invalid_byte_is_refused_in_every_position() {
        let mut good = String::new();
        encode_into(&[0x5A; 8], &mut good);
        for bad in (0u8..=255).filter(|b| !b.is_ascii_alphanumeric()) {
            for at in 0..good.len() {
                let mut text = good.clone().into_bytes();
                text[at] = bad;
                assert!(decode_word(&text).is_none(), "{bad:#x} at {at}");
            }
        }
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
        fn decode_is_injective(text in "[0-9A-Za-z]{17}") {
            // Whatever decodes re-encodes to the same text.
            let mut out = [0u8; 12];
            if decode_into(text.as_bytes(), &mut out).is_some() {
                let mut again = String::new();
                encode_into(&out, &mut again);
                prop_assert_eq!(again, text);
            }
        }

        #[test]
        fn decode_never_panics(text in proptest::collection::vec(any::<u8>(), 0..80), n in 0usize..40) {
            let mut out = vec![0u8; n];
            let _ = decode_into(&text, &mut out);
        }
    }
}
