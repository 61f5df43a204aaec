//! Buffering a signed request's body, with the key manager's limit.

use super::headers::{CONTENT_LENGTH, Headers};
use super::refusal::Refusal;
use crate::error::Rejection;
use crate::origin::HeaderField;

/// Largest capacity reserved up front from `Content-Length` (the rest grows
/// as the body arrives).
const MAX_RESERVE: usize = 64 * 1024;

/// The body of a signed request, collected chunk by chunk and refused as
/// soon as it exceeds the limit (a body of exactly `limit` bytes is
/// accepted, as [`KeyManager::verify_signed`](crate::KeyManager::verify_signed)
/// does).
///
/// ```
/// use api_keys::http::BodyBuffer;
/// let mut body = BodyBuffer::new(8);
/// body.push(b"abcd")?;
/// body.push(b"efgh")?;
/// assert!(body.push(b"i").is_err()); // 9 > 8: 413
/// # Ok::<(), api_keys::http::Refusal>(())
/// ```
#[derive(Debug)]
pub struct BodyBuffer {
    bytes: Vec<u8>,
    limit: usize,
}

impl BodyBuffer {
    /// An empty buffer refusing more than `limit` bytes; use
    /// [`KeyManager::max_signed_body_len`](crate::KeyManager::max_signed_body_len).
    #[must_use]
    pub fn new(limit: usize) -> Self {
        Self {
            bytes: Vec::new(),
            limit,
        }
    }

    /// A buffer for a request with these headers: refuses at once a
    /// `Content-Length` over `limit`, and reserves room for the announced
    /// length (up to 64 KiB). A missing, repeated or unparsable
    /// `Content-Length` is left to the framework's HTTP parser; the limit
    /// is enforced on the bytes that arrive in every case.
    ///
    /// # Errors
    ///
    /// [`Rejection::BodyTooLarge`] when the announced length exceeds `limit`.
    pub fn for_request<H: Headers + ?Sized>(headers: &H, limit: usize) -> Result<Self, Refusal> {
        let mut buffer = Self::new(limit);
        if let HeaderField::Single(value) = headers.field(CONTENT_LENGTH)
            && let Some(announced) = parse_length(value)
        {
            if announced > limit {
                return Err(Rejection::BodyTooLarge.into());
            }
            buffer.bytes.reserve(announced.min(MAX_RESERVE));
        }
        Ok(buffer)
    }

    /// Appends a chunk.
    ///
    /// # Errors
    ///
    /// [`Rejection::BodyTooLarge`] once the body exceeds the limit (the
    /// chunk is not kept).
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), Refusal> {
        match self.bytes.len().checked_add(chunk.len()) {
            Some(len) if len <= self.limit => {
                self.bytes.extend_from_slice(chunk);
                Ok(())
            }
            _ => Err(Rejection::BodyTooLarge.into()),
        }
    }

    /// The bytes collected so far.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The body.
    #[must_use]
    pub fn into_vec(self) -> Vec<u8> {
        self.bytes
    }
}

/// A `Content-Length` value: ASCII digits only, no overflow.
fn parse_length(value: &[u8]) -> Option<usize> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    core::str::from_utf8(value).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_limit_is_inclusive() {
        let mut body = BodyBuffer::new(3);
        body.push(b"").unwrap();
        body.push(b"abc").unwrap();
        assert_eq!(body.push(b"d").unwrap_err().reason(), "body_too_large");
        assert_eq!(body.as_bytes(), b"abc");
        assert_eq!(body.into_vec(), b"abc");
        let mut zero = BodyBuffer::new(0);
        zero.push(b"").unwrap();
        assert_eq!(zero.push(b"x").unwrap_err().status(), 413);
    }

    #[test]
    fn content_length_refuses_early() {
        let over: &[(&str, &str)] = &[("Content-Length", "11")];
        assert_eq!(
            BodyBuffer::for_request(over, 10).unwrap_err().reason(),
            "body_too_large"
        );
        for value in ["10", "0", "", "+5", "1e3", "99999999999999999999999999"] {
            let headers: &[(&str, &str)] = &[("content-length", value)];
            assert!(BodyBuffer::for_request(headers, 10).is_ok(), "{value}");
        }
        let huge: &[(&str, &str)] = &[("content-length", "1000000")];
        let buffer = BodyBuffer::for_request(huge, 2_000_000).unwrap();
        assert!(buffer.bytes.capacity() <= 2 * MAX_RESERVE);
    }

    /// The announced length is reserved up front, up to 64 KiB (as
    /// documented): a body that arrives in many chunks is not copied over
    /// and over while it grows to that size.
    #[test]
    fn content_length_reserves_up_to_64_kib() {
        let small: &[(&str, &str)] = &[("content-length", "3000")];
        let buffer = BodyBuffer::for_request(small, 1 << 20).unwrap();
        assert!(buffer.bytes.capacity() >= 3000);
        let large: &[(&str, &str)] = &[("content-length", "1000000")];
        let buffer = BodyBuffer::for_request(large, 1 << 20).unwrap();
        assert!(buffer.bytes.capacity() >= 64 * 1024);
        assert!(buffer.bytes.capacity() < 1_000_000);
        let none: &[(&str, &str)] = &[];
        assert_eq!(
            BodyBuffer::for_request(none, 1 << 20)
                .unwrap()
                .bytes
                .capacity(),
            0
        );
    }

    proptest! {
        #[test]
        fn keeps_exactly_what_fits(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..10), limit in 0usize..200) {
            let mut body = BodyBuffer::new(limit);
            let mut expected = Vec::new();
            let mut refused = false;
            for chunk in &chunks {
                if refused { break; }
                if expected.len() + chunk.len() <= limit {
                    prop_assert!(body.push(chunk).is_ok());
                    expected.extend_from_slice(chunk);
                } else {
                    prop_assert!(body.push(chunk).is_err());
                    refused = true;
                }
            }
            prop_assert_eq!(body.into_vec(), expected);
        }

        #[test]
        fn content_length_parser_matches_std(value in "[0-9+ -]{0,25}") {
            let ours = parse_length(value.as_bytes());
            let std = if value.bytes().all(|b| b.is_ascii_digit()) { value.parse::<usize>().ok() } else { None };
            prop_assert_eq!(ours, std);
        }
    }
}
