//! Header names and the one trait an adapter implements.

use crate::origin::HeaderField;

/// `Authorization` (lower case, as [`Headers::field`] receives names).
pub const AUTHORIZATION: &str = "authorization";
/// `X-Api-Key`: the alternative place for a bearer token.
pub const API_KEY: &str = "x-api-key";
/// `X-Processing-Key` ([`signing::KEY_HEADER`](crate::signing::KEY_HEADER)).
pub const PROCESSING_KEY: &str = "x-processing-key";
/// `X-Processing-Signature` ([`signing::SIGNATURE_HEADER`](crate::signing::SIGNATURE_HEADER)).
pub const PROCESSING_SIGNATURE: &str = "x-processing-signature";
/// `X-Processing-Timestamp` ([`signing::TIMESTAMP_HEADER`](crate::signing::TIMESTAMP_HEADER)).
pub const PROCESSING_TIMESTAMP: &str = "x-processing-timestamp";
/// `X-Processing-Nonce` ([`signing::NONCE_HEADER`](crate::signing::NONCE_HEADER)).
pub const PROCESSING_NONCE: &str = "x-processing-nonce";
/// `Origin`.
pub const ORIGIN: &str = "origin";
/// `Referer`.
pub const REFERER: &str = "referer";
/// `X-Forwarded-For`, read only from a trusted proxy.
pub const X_FORWARDED_FOR: &str = "x-forwarded-for";
/// `Forwarded` (RFC 7239), read only from a trusted proxy.
pub const FORWARDED: &str = "forwarded";
/// `Content-Length`, used to refuse an over-long signed body before reading it.
pub const CONTENT_LENGTH: &str = "content-length";
/// `WWW-Authenticate`, set on refusals ([`ErrorResponse::www_authenticate`](super::ErrorResponse::www_authenticate)).
pub const WWW_AUTHENTICATE: &str = "www-authenticate";
/// `Content-Type`, set on refusals to [`JSON`].
pub const CONTENT_TYPE: &str = "content-type";
/// The content type of every refusal body.
pub const JSON: &str = "application/json";

/// A request's headers, as a framework holds them: the only thing an
/// adapter implements.
///
/// ```
/// use api_keys::http::Headers;
/// use api_keys::HeaderField;
///
/// /// A framework's header map, wrapped by its adapter.
/// struct MyHeaders<'a>(&'a [(String, Vec<u8>)]);
///
/// impl Headers for MyHeaders<'_> {
///     fn field(&self, name: &str) -> HeaderField<'_> {
///         HeaderField::from_values(self.0.iter()
///             .filter(|(n, _)| n.eq_ignore_ascii_case(name))
///             .map(|(_, v)| v.as_slice()))
///     }
/// }
/// let received = [("X-Api-Key".to_owned(), b"sk_test_x".to_vec())];
/// assert_eq!(MyHeaders(&received).field("x-api-key"), HeaderField::Single(b"sk_test_x"));
/// ```
pub trait Headers {
    /// Every value received under `name`, as one [`HeaderField`]:
    /// [`Absent`](HeaderField::Absent), [`Single`](HeaderField::Single) with
    /// the raw bytes as received, or [`Repeated`](HeaderField::Repeated)
    /// when the header line came more than once (never joined with commas).
    ///
    /// `name` is given in lower case; names must be compared
    /// ASCII-case-insensitively ([`HeaderField::from_values`] builds the
    /// answer from an iterator over the values).
    fn field(&self, name: &str) -> HeaderField<'_>;
}

impl<H: Headers + ?Sized> Headers for &H {
    fn field(&self, name: &str) -> HeaderField<'_> {
        (**self).field(name)
    }
}

/// Name/value pairs in the order received (tests, examples, frameworks that
/// hand over a list).
impl Headers for [(&str, &[u8])] {
    fn field(&self, name: &str) -> HeaderField<'_> {
        HeaderField::from_values(
            self.iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v),
        )
    }
}

/// Name/value pairs in the order received, with text values.
impl Headers for [(&str, &str)] {
    fn field(&self, name: &str) -> HeaderField<'_> {
        HeaderField::from_values(
            self.iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_bytes()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_match_names_case_insensitively_and_see_repeats() {
        let pairs: &[(&str, &str)] = &[("X-Api-Key", "a"), ("ORIGIN", "o"), ("x-api-key", "b")];
        assert_eq!(pairs.field(API_KEY), HeaderField::Repeated);
        assert_eq!(pairs.field(ORIGIN), HeaderField::Single(b"o"));
        assert_eq!(pairs.field(REFERER), HeaderField::Absent);
        let raw: &[(&str, &[u8])] = &[("Referer", b"\xff")];
        assert_eq!(raw.field(REFERER), HeaderField::Single(b"\xff"));
        assert_eq!((&raw).field(REFERER), HeaderField::Single(b"\xff"));
    }

    #[test]
    fn names_are_lower_case_and_match_the_signing_headers() {
        use crate::signing::{KEY_HEADER, NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
        for (lower, mixed) in [
            (PROCESSING_KEY, KEY_HEADER),
            (PROCESSING_SIGNATURE, SIGNATURE_HEADER),
            (PROCESSING_TIMESTAMP, TIMESTAMP_HEADER),
            (PROCESSING_NONCE, NONCE_HEADER),
        ] {
            assert_eq!(lower, mixed.to_ascii_lowercase());
        }
        for name in [
            AUTHORIZATION,
            API_KEY,
            ORIGIN,
            REFERER,
            X_FORWARDED_FOR,
            FORWARDED,
            CONTENT_LENGTH,
            WWW_AUTHENTICATE,
            CONTENT_TYPE,
        ] {
            assert_eq!(name, name.to_ascii_lowercase());
        }
    }
}
