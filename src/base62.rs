//! Fixed-width base62 over big-endian byte chunks of at most 16 bytes, one
//! `u128` limb per chunk (about 50 ns for 32 bytes, where base58 over a big
//! integer costs microseconds).
//!
//! The alphabet is `0-9A-Za-z`, nothing that needs URL or shell escaping.
//! Why not a 64-symbol alphabet, which would decode with shifts alone: the
//! only word character outside `[0-9A-Za-z]` is `_`, so the second extra
//! symbol would be `-`, `+`, `/` or `.`, and a double-click stops at those
//! in browsers and most editors (which select runs of letters, digits and
//! `_`); `+` and `/` also need escaping in URLs. Widths are fixed per chunk
//! length, so every encoding of `n` bytes has the same length. Decoding is
//! strict: a value that does not fit the chunk (a non-canonical string) is
//! refused, so every accepted string has exactly one byte sequence and the
//! other way round.
//!
//! The hot path uses the fixed-size forms: [`decode_id`] (the 22-character
//! key id, three groups of at most ten digits in `u64`s combined in `u128`)
//! and [`encode_u32`] (the 6-character checksum); the secret is random
//! characters ([`fill_uniform`]) and is never decoded.

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
#[allow(
    clippy::indexing_slicing,
    reason = "compile-time evaluation over 0..=10 on 11-entry tables"
)]
#[cfg(test)]
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
#[cfg(test)]
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

/// The six characters of a 4-byte chunk (the checksum), from a `u32`: the
/// same text as [`encode_into`] of its big-endian bytes.
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

/// 62^10 (< 2^60): ten digits fit a `u64`.
const P10: u64 = 839_299_365_868_340_224;

/// Decodes ten digits into a `u64`, two per multiply-add; invalid digits
/// are collected in `invalid` (valid values are below 0x40).
#[inline(always)]
fn ten(t: &[u8; 10], invalid: &mut u8) -> u64 {
    let d = t.map(digit);
    *invalid |= d.iter().fold(0u8, |acc, &x| acc | x);
    d.chunks_exact(2).fold(0u64, |acc, pair| match pair {
        [a, b] => acc * (62 * 62) + u64::from(*a) * 62 + u64::from(*b),
        _ => acc,
    })
}

/// Decodes the 22-character key id (one 16-byte chunk) into its value:
/// digits 0–9 and 10–19 as `u64`s, the last two, combined in `u128` with
/// checked arithmetic (a value above `u128::MAX` is not canonical).
#[inline]
pub(crate) fn decode_id(text: &[u8]) -> Option<u128> {
    let t: &[u8; 22] = text.try_into().ok()?;
    let (a, rest) = t.split_first_chunk::<10>()?;
    let (b, c) = rest.split_first_chunk::<10>()?;
    let mut invalid = 0u8;
    let high = ten(a, &mut invalid);
    let middle = ten(b, &mut invalid);
    let (c0, c1) = match c {
        [x, y] => (digit(*x), digit(*y)),
        _ => (0xFF, 0xFF),
    };
    invalid |= c0 | c1;
    if invalid & 0xC0 != 0 {
        return None;
    }
    let low = u128::from(c0) * 62 + u128::from(c1);
    // high < 62^10, so high * 62^10 + middle < 62^20 < 2^120.
    let twenty = u128::from(high) * u128::from(P10) + u128::from(middle);
    twenty.checked_mul(62 * 62)?.checked_add(low)
}

/// The 22 characters of a 16-byte chunk (a key id) from its value.
#[inline]
pub(crate) fn encode_id(value: u128) -> [u8; 22] {
    let mut out = [b'0'; 22];
    let p10 = u128::from(P10);
    // value = (top * 62^10 + middle) * 62^10 + low, top < 62^2.
    let (rest, low) = (value / p10, (value % p10) as u64);
    let (top, middle) = ((rest / p10) as u64, (rest % p10) as u64);
    let (head, tail) = out.split_at_mut(12);
    let (top_out, middle_out) = head.split_at_mut(2);
    for (slot_run, mut v) in [(top_out, top), (middle_out, middle), (tail, low)] {
        for slot in slot_run.iter_mut().rev() {
            *slot = ALPHABET.get((v % 62) as usize).copied().unwrap_or(b'0');
            v /= 62;
        }
    }
    out
}

/// Decodes `text` into `out`, which fixes the expected byte length.
/// Returns `None` when `text` has the wrong length, leaves the alphabet or is
/// not canonical.
#[cfg(test)]
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
    fn every_width_is_the_fewest_characters_that_carry_the_bytes() {
        // The smallest w with w * log2(62) >= 8n (never an exact tie: 62^w
        // is not a power of two), so no bytes need no characters.
        for n in 0..=16 {
            let w = (8 * n) as f64 / 62f64.log2();
            assert_eq!(chunk_width(n), w.ceil() as usize, "{n}");
        }
        assert_eq!(chunk_width(0), 0);
        assert_eq!(chunk_width(17), 0);
        assert_eq!(encoded_len(0), 0);
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

    #[test]
    fn fixed_forms_equal_the_chunk_encoding() {
        for v in [0u32, 1, 61, 62, 0xDEAD_BEEF, u32::MAX] {
            let mut s = String::new();
            encode_into(&v.to_be_bytes(), &mut s);
            assert_eq!(encode_u32(v), s.as_bytes());
        }
        for v in [
            0u128,
            1,
            61,
            62,
            u128::from(u64::MAX) + 1,
            u128::MAX,
            0x0123_4567_89AB_CDEF_FEDC_BA98_7654_3210,
        ] {
            let mut s = String::new();
            encode_into(&v.to_be_bytes(), &mut s);
            assert_eq!(encode_id(v), s.as_bytes(), "{v}");
            assert_eq!(decode_id(s.as_bytes()), Some(v));
            let mut bytes = [0u8; 16];
            decode_into(s.as_bytes(), &mut bytes).unwrap();
            assert_eq!(u128::from_be_bytes(bytes), v);
        }
        // One above u128::MAX, and the largest 22-digit string.
        assert_eq!(decode_id(b"7n42DGM5Tflk9n8mt7Fhc8"), None);
        assert_eq!(decode_id(&[b'z'; 22]), None);
        assert_eq!(decode_id(b"7n42DGM5Tflk9n8mt7Fhc"), None);
        assert_eq!(decode_id(b"7n42DGM5Tflk9n8mt7Fh_7"), None);
        // One bad byte anywhere, or two in the same group, must not pass
        // (nor cancel out).
        for at in 0..22 {
            let mut text = [b'0'; 22];
            text[at] = b'_';
            assert_eq!(decode_id(&text), None, "{at}");
        }
        for bad in [
            &b"__00000000000000000000"[..],
            b"0000000000_0_000000000",
            b"00000000000000000000__",
        ] {
            assert_eq!(decode_id(bad), None, "{bad:?}");
        }
        assert_eq!(decode_id(b"0000000000000000000000"), Some(0));
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
    fn uniform_fill_keeps_groups_below_62_in_order() {
        // 0x000000 -> groups 0,0,0,0; 0xFFFFFF -> 63,63,63,63 (all skipped);
        // 0xF7DF7D -> 61,61,61,61; a trailing pair 0x0410 -> 1, 1.
        let random = [0, 0, 0, 0xFF, 0xFF, 0xFF, 0xF7, 0xDF, 0x7D, 0x04, 0x10];
        let mut out = [b'.'; 12];
        let n = fill_uniform(&random, &mut out, 2);
        assert_eq!(n, 12);
        assert_eq!(&out, b"..0000zzzz11");
        // 0xFBEFBE -> 62,62,62,62: the first group outside the alphabet,
        // skipped like 63 (keeping it would bias the characters).
        let mut out = [b'.'; 4];
        assert_eq!(fill_uniform(&[0xFB, 0xEF, 0xBE, 0, 0, 0], &mut out, 0), 4);
        assert_eq!(&out, b"0000");
        let mut out = [b'.'; 4];
        assert_eq!(
            fill_uniform(&[0xFB, 0xEF, 0xBE, 0xF7, 0xDF, 0x7D], &mut out, 0),
            4
        );
        assert_eq!(&out, b"zzzz");
        // Never writes past `out`.
        let mut short = [b'.'; 3];
        assert_eq!(fill_uniform(&[0; 30], &mut short, 1), 3);
        assert_eq!(&short, b".00");
    }

    proptest! {
        #[test]
        fn id_decoding_agrees_with_the_chunk_decoder(text in proptest::collection::vec(any::<u8>(), 22)) {
            let mut bytes = [0u8; 16];
            let chunk = decode_into(&text, &mut bytes).map(|()| u128::from_be_bytes(bytes));
            prop_assert_eq!(decode_id(&text), chunk);
        }

        #[test]
        fn id_decoding_agrees_on_alphabet_strings(text in "[0-9A-Za-z]{22}") {
            let mut bytes = [0u8; 16];
            let chunk = decode_into(text.as_bytes(), &mut bytes).map(|()| u128::from_be_bytes(bytes));
            prop_assert_eq!(decode_id(text.as_bytes()), chunk);
        }
    }
}
