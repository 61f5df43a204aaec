//! Finding the one credential of a request.

use super::headers::{
    API_KEY, AUTHORIZATION, Headers, PROCESSING_KEY, PROCESSING_NONCE, PROCESSING_SIGNATURE,
    PROCESSING_TIMESTAMP,
};
use super::refusal::Refusal;
use crate::origin::HeaderField;
use crate::signed::SignedRequest;
use crate::token::{KeyFormat, KeyId};
use core::fmt;
use zeroize::Zeroizing;

/// Where a request carried its credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CredentialSource {
    /// `Authorization: Bearer <token>`.
    Authorization,
    /// `X-Api-Key: <token>`.
    ApiKeyHeader,
    /// The `X-Processing-*` signed-request headers.
    Signature,
}

impl CredentialSource {
    /// A stable `snake_case` name for logs: `authorization`,
    /// `api_key_header` or `signature`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            CredentialSource::Authorization => "authorization",
            CredentialSource::ApiKeyHeader => "api_key_header",
            CredentialSource::Signature => "signature",
        }
    }
}

/// A bearer token as presented, owned. Zeroized on drop; `Debug` prints
/// only its length.
pub struct BearerToken(Zeroizing<String>);

impl BearerToken {
    /// The token text, to pass to
    /// [`KeyManager::verify`](crate::KeyManager::verify).
    ///
    /// Security: this is the client's secret. Never log it, echo it or keep
    /// it past the request.
    #[must_use]
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BearerToken(<{} bytes>)", self.0.len())
    }
}

/// The signed-request headers as presented, owned, with the method and
/// request target the replay-protected mode binds. An absent header is
/// empty. `Debug` prints lengths only.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedCredential {
    key: Vec<u8>,
    signature: Vec<u8>,
    timestamp: Vec<u8>,
    nonce: Vec<u8>,
    method: Vec<u8>,
    target: Vec<u8>,
}

impl SignedCredential {
    /// The [`SignedRequest`] over `body` (the exact raw bytes received) that
    /// [`KeyManager::verify_signed`](crate::KeyManager::verify_signed)
    /// checks. Always carries timestamp, nonce, method and target: the key
    /// manager's policy decides whether they count.
    #[must_use]
    pub fn request<'a>(&'a self, body: &'a [u8]) -> SignedRequest<'a> {
        SignedRequest::new(&self.key, &self.signature, body).replay_protected(
            &self.timestamp,
            &self.nonce,
            &self.method,
            &self.target,
        )
    }
}

impl fmt::Debug for SignedCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedCredential")
            .field("key_len", &self.key.len())
            .field("signature_len", &self.signature.len())
            .field("timestamp_len", &self.timestamp.len())
            .field("nonce_len", &self.nonce.len())
            .field("target_len", &self.target.len())
            .finish_non_exhaustive()
    }
}

/// The one credential a request presents.
#[derive(Debug)]
#[non_exhaustive]
pub enum Credential {
    /// A bearer token, from `Authorization` or `X-Api-Key`.
    Bearer {
        /// The token.
        token: BearerToken,
        /// Which header carried it.
        source: CredentialSource,
    },
    /// A signed request: verify it against the body.
    Signed(SignedCredential),
}

impl Credential {
    /// Finds the one credential of a request (see the
    /// [module documentation](super#credentials) for the rules). `method`
    /// and `target` (the request target exactly as sent, path and query,
    /// e.g. `/v1/withdrawals?x=1`) are kept only for a signed request.
    ///
    /// # Errors
    ///
    /// [`Refusal::MissingCredentials`], [`Refusal::AmbiguousCredentials`],
    /// [`Refusal::RepeatedHeader`], [`Refusal::UnsupportedScheme`],
    /// [`Refusal::MalformedCredentials`].
    pub fn from_headers<H: Headers + ?Sized>(
        headers: &H,
        method: &str,
        target: &str,
    ) -> Result<Self, Refusal> {
        let authorization = headers.field(AUTHORIZATION);
        let api_key = headers.field(API_KEY);
        let key = headers.field(PROCESSING_KEY);
        let signature = headers.field(PROCESSING_SIGNATURE);
        let timestamp = headers.field(PROCESSING_TIMESTAMP);
        let nonce = headers.field(PROCESSING_NONCE);
        let signed = key.is_present()
            || signature.is_present()
            || timestamp.is_present()
            || nonce.is_present();
        match (authorization.is_present(), api_key.is_present(), signed) {
            (false, false, false) => Err(Refusal::MissingCredentials),
            (true, false, false) => {
                let token = parse_bearer(single(authorization)?)?;
                Ok(Credential::bearer(token, CredentialSource::Authorization))
            }
            (false, true, false) => {
                let token =
                    token68(trim_ows(single(api_key)?)).ok_or(Refusal::MalformedCredentials)?;
                Ok(Credential::bearer(token, CredentialSource::ApiKeyHeader))
            }
            (false, false, true) => Ok(Credential::Signed(SignedCredential {
                key: optional(key)?.to_vec(),
                signature: optional(signature)?.to_vec(),
                timestamp: optional(timestamp)?.to_vec(),
                nonce: optional(nonce)?.to_vec(),
                method: method.as_bytes().to_vec(),
                target: target.as_bytes().to_vec(),
            })),
            _ => Err(Refusal::AmbiguousCredentials),
        }
    }

    fn bearer(token: &str, source: CredentialSource) -> Self {
        Credential::Bearer {
            token: BearerToken(Zeroizing::new(token.to_owned())),
            source,
        }
    }

    /// The public key id the credential names, for logs: from a bearer
    /// token of `format` that passes its offline checks (layout, alphabet,
    /// checksum), or from a well-formed `X-Processing-Key`. `None` for
    /// anything else: nothing unchecked from the request comes back.
    #[must_use]
    pub fn key_id(&self, format: &KeyFormat) -> Option<KeyId> {
        match self {
            Credential::Bearer { token, .. } => format
                .parse(token.expose_secret())
                .ok()
                .map(|presented| presented.id()),
            Credential::Signed(signed) => KeyId::parse_bytes(&signed.key).ok(),
        }
    }

    /// Where the credential was found.
    #[must_use]
    pub fn source(&self) -> CredentialSource {
        match self {
            Credential::Bearer { source, .. } => *source,
            Credential::Signed(_) => CredentialSource::Signature,
        }
    }
}

/// A header that must be there exactly once.
fn single(field: HeaderField<'_>) -> Result<&[u8], Refusal> {
    match field {
        HeaderField::Single(value) => Ok(value),
        HeaderField::Repeated => Err(Refusal::RepeatedHeader),
        HeaderField::Absent => Err(Refusal::MissingCredentials),
    }
}

/// A header that may be absent (empty) but not repeated.
fn optional(field: HeaderField<'_>) -> Result<&[u8], Refusal> {
    match field {
        HeaderField::Absent => Ok(b""),
        HeaderField::Single(value) => Ok(value),
        HeaderField::Repeated => Err(Refusal::RepeatedHeader),
    }
}

/// Strips HTTP optional whitespace (spaces and tabs) around a value.
fn trim_ows(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    value.get(start..end).unwrap_or_default()
}

/// `token68` (RFC 9110 §11.2): `1*( ALPHA / DIGIT / "-" / "." / "_" / "~"
/// / "+" / "/" ) *"="`, as text.
fn token68(value: &[u8]) -> Option<&str> {
    let body_len = value
        .iter()
        .position(|&b| !matches!(b, b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'+' | b'/'))
        .unwrap_or(value.len());
    let padding = value.get(body_len..)?;
    if body_len == 0 || !padding.iter().all(|&b| b == b'=') {
        return None;
    }
    // All ASCII by now.
    core::str::from_utf8(value).ok()
}

/// The token of an `Authorization` value, per RFC 6750 §2.1:
/// `Bearer 1*SP token68`, the scheme ASCII-case-insensitive, surrounding
/// spaces and tabs ignored.
///
/// ```
/// use api_keys::http::{parse_bearer, Refusal};
/// assert_eq!(parse_bearer(b"Bearer abc.DEF-1=").ok(), Some("abc.DEF-1="));
/// assert_eq!(parse_bearer(b"bEaReR   abc").ok(), Some("abc")); // one or more spaces
/// assert!(matches!(parse_bearer(b"Basic YWJj"), Err(Refusal::UnsupportedScheme)));
/// assert!(matches!(parse_bearer(b"Bearer\tabc"), Err(Refusal::MalformedCredentials)));
/// assert!(matches!(parse_bearer(b"Bearer a b"), Err(Refusal::MalformedCredentials)));
/// ```
///
/// # Errors
///
/// [`Refusal::UnsupportedScheme`] for another scheme (or a bare token
/// without one); [`Refusal::MalformedCredentials`] when the scheme is
/// `Bearer` but the rest is not one or more spaces and a `token68`.
pub fn parse_bearer(value: &[u8]) -> Result<&str, Refusal> {
    let value = trim_ows(value);
    let scheme_len = value
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(value.len());
    let (scheme, rest) = value.split_at_checked(scheme_len).unwrap_or((value, b""));
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(Refusal::UnsupportedScheme);
    }
    // `1*SP`: spaces only, at least one (a bare `Bearer` has none).
    let token_start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    if token_start == 0 {
        return Err(Refusal::MalformedCredentials);
    }
    rest.get(token_start..)
        .and_then(token68)
        .ok_or(Refusal::MalformedCredentials)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;
    use proptest::prelude::*;

    fn classify(pairs: &[(&str, &str)]) -> Result<Credential, Refusal> {
        Credential::from_headers(pairs, "POST", "/p?q=1")
    }

    #[test]
    fn key_ids_only_from_well_formed_credentials() {
        let format = KeyFormat::default();
        let fresh = format
            .generate(crate::KeyKind::Secret, crate::Environment::Live)
            .unwrap();
        let bearer = classify(&[("X-Api-Key", fresh.token.expose_secret())]).unwrap();
        assert_eq!(bearer.key_id(&format), Some(fresh.id));
        // Another format's prefixes: not a token of this server.
        let other = KeyFormat::builder().secret_prefix("key").build().unwrap();
        assert_eq!(bearer.key_id(&other), None);
        let garbled = classify(&[("X-Api-Key", "sk_live_abc")]).unwrap();
        assert_eq!(garbled.key_id(&format), None);
        let id = fresh.id.to_string();
        let signed = classify(&[("X-Processing-Key", &id), ("X-Processing-Signature", "00")]);
        assert_eq!(signed.unwrap().key_id(&format), Some(fresh.id));
        let signed = classify(&[
            ("X-Processing-Key", "nope"),
            ("X-Processing-Signature", "00"),
        ]);
        assert_eq!(signed.unwrap().key_id(&format), None);
    }

    fn bearer_of(pairs: &[(&str, &str)]) -> String {
        match classify(pairs).unwrap() {
            Credential::Bearer { token, .. } => token.expose_secret().to_owned(),
            Credential::Signed(_) => panic!("signed"),
        }
    }

    #[test]
    fn bearer_grammar() {
        let ok: &[(&[u8], &str)] = &[
            (b"Bearer abc", "abc"),
            (b"bearer abc", "abc"),
            (b"BEARER abc", "abc"),
            (b"Bearer  abc", "abc"),
            (b"  Bearer abc \t", "abc"),
            (b"Bearer a+/b~c.d_e-f==", "a+/b~c.d_e-f=="),
            (b"Bearer sk_live_0123456789", "sk_live_0123456789"),
        ];
        for (value, token) in ok {
            assert_eq!(parse_bearer(value).unwrap(), *token, "{value:?}");
        }
        let unsupported: &[&[u8]] = &[
            b"Basic YWJjOmRlZg==",
            b"sk_live_abc",
            b"Bearerabc",
            b"",
            b"   ",
            b"Bear abc",
            b"\xffBearer abc",
        ];
        for value in unsupported {
            assert!(
                matches!(parse_bearer(value), Err(Refusal::UnsupportedScheme)),
                "{value:?}"
            );
        }
        let malformed: &[&[u8]] = &[
            b"Bearer",
            b"Bearer ",
            b"Bearer\tabc",
            b"Bearer \tabc",
            b"Bearer a b",
            b"Bearer a,b",
            b"Bearer =abc",
            b"Bearer ab=c",
            b"Bearer abc\x00",
            b"Bearer \xc3\xa9",
            b"Bearer \"abc\"",
        ];
        for value in malformed {
            assert!(
                matches!(parse_bearer(value), Err(Refusal::MalformedCredentials)),
                "{value:?}"
            );
        }
    }

    #[test]
    fn one_credential_from_one_place() {
        assert_eq!(bearer_of(&[("Authorization", "Bearer t1")]), "t1");
        assert_eq!(bearer_of(&[("X-Api-Key", " t2 ")]), "t2");
        assert_eq!(
            classify(&[("x-api-key", "t")]).unwrap().source(),
            CredentialSource::ApiKeyHeader
        );
        let signed = classify(&[("X-Processing-Key", "k"), ("X-Processing-Signature", "s")]);
        let Ok(Credential::Signed(signed)) = signed else {
            panic!("not signed")
        };
        let request = signed.request(b"body");
        assert_eq!(request.key, b"k");
        assert_eq!(request.head.signature, b"s");
        assert_eq!(request.head.timestamp, b"");
        assert_eq!(request.head.method, b"POST");
        assert_eq!(request.head.path, b"/p?q=1");
        assert_eq!(request.body, b"body");

        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "missing_credentials"),
            (&[("Accept", "*/*")], "missing_credentials"),
            (
                &[("Authorization", "Bearer a"), ("X-Api-Key", "a")],
                "ambiguous_credentials",
            ),
            (
                &[("Authorization", "Bearer a"), ("X-Processing-Key", "k")],
                "ambiguous_credentials",
            ),
            (
                &[("X-Api-Key", "a"), ("X-Processing-Nonce", "n")],
                "ambiguous_credentials",
            ),
            (
                &[("Authorization", "Bearer a"), ("Authorization", "Bearer a")],
                "repeated_header",
            ),
            (&[("X-Api-Key", "a"), ("X-Api-Key", "a")], "repeated_header"),
            (
                &[("X-Processing-Key", "k"), ("X-Processing-Key", "k")],
                "repeated_header",
            ),
            (
                &[
                    ("X-Processing-Key", "k"),
                    ("X-Processing-Nonce", "n"),
                    ("x-processing-nonce", "n"),
                ],
                "repeated_header",
            ),
            (&[("Authorization", "Basic YQ==")], "unsupported_scheme"),
            (&[("Authorization", "Bearer a b")], "malformed_credentials"),
            (&[("X-Api-Key", "")], "malformed_credentials"),
            (&[("X-Api-Key", "a b")], "malformed_credentials"),
        ];
        for (pairs, reason) in cases {
            let refusal = classify(pairs).unwrap_err();
            assert_eq!(refusal.reason(), *reason, "{pairs:?}");
        }
    }

    #[test]
    fn debug_never_shows_values() {
        let pairs: &[(&str, &str)] = &[("Authorization", "Bearer sekrit_token")];
        let text = format!("{:?}", classify(pairs).unwrap());
        assert!(!text.contains("sekrit"), "{text}");
        let pairs: &[(&str, &str)] = &[
            ("X-Processing-Key", "keyid123"),
            ("X-Processing-Signature", "deadbeef"),
            ("X-Processing-Nonce", "nonce-abcdefghijkl"),
        ];
        let text = format!("{:?}", classify(pairs).unwrap());
        for value in ["keyid123", "deadbeef", "nonce-abc", "/p"] {
            assert!(!text.contains(value), "{text}");
        }
    }

    fn token68_strategy() -> impl Strategy<Value = String> {
        "[A-Za-z0-9._~+/-]{1,80}={0,2}"
    }

    proptest! {
        #[test]
        fn parse_bearer_never_panics(value in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_bearer(&value);
        }

        #[test]
        fn any_scheme_case_any_spaces_round_trip(
            token in token68_strategy(),
            upper in proptest::collection::vec(any::<bool>(), 6),
            spaces in 1usize..5,
            lead in "[ \t]{0,3}",
            trail in "[ \t]{0,3}",
        ) {
            let scheme: String = "bearer"
                .chars()
                .zip(&upper)
                .map(|(c, &u)| if u { c.to_ascii_uppercase() } else { c })
                .collect();
            let value = format!("{lead}{scheme}{}{token}{trail}", " ".repeat(spaces));
            prop_assert_eq!(parse_bearer(value.as_bytes()).ok(), Some(token.as_str()));
        }

        #[test]
        fn accepted_tokens_are_token68(value in proptest::collection::vec(any::<u8>(), 0..120)) {
            let mut header = b"Bearer ".to_vec();
            header.extend_from_slice(&value);
            if let Ok(token) = parse_bearer(&header) {
                prop_assert!(!token.is_empty());
                prop_assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b)));
                let unpadded = token.trim_end_matches('=');
                prop_assert!(!unpadded.is_empty() && !unpadded.contains('='));
            }
        }

        /// Whatever the bytes, extraction answers (never panics) and its
        /// `Debug` never shows a value sent.
        #[test]
        fn arbitrary_values_never_panic_nor_leak(
            auth in proptest::collection::vec(any::<u8>(), 0..80),
            api in proptest::collection::vec(any::<u8>(), 0..80),
            key in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            which in 0usize..3,
        ) {
            let mut pairs: Vec<(&str, &[u8])> = Vec::new();
            if which != 1 { pairs.push(("authorization", &auth)); }
            if which != 0 { pairs.push(("x-api-key", &api)); }
            if let Some(key) = &key { pairs.push(("x-processing-key", key)); }
            let got = Credential::from_headers(&pairs[..], "POST", "/secret-path");
            let text = match &got {
                Ok(credential) => format!("{credential:?}"),
                Err(refusal) => format!("{refusal:?} {refusal}"),
            };
            for value in [&auth, &api].into_iter().chain(key.as_ref()) {
                if value.len() >= 8 {
                    let needle = String::from_utf8_lossy(value);
                    prop_assert!(!text.contains(needle.as_ref()), "{}", text);
                }
            }
            prop_assert!(!text.contains("secret-path"));
        }

        /// The classification follows a simple model: count the places.
        #[test]
        fn classification_matches_the_model(
            auth in 0usize..3, api in 0usize..3, key in 0usize..3, sig in 0usize..3,
        ) {
            let mut pairs: Vec<(&str, &str)> = Vec::new();
            pairs.extend(std::iter::repeat_n(("Authorization", "Bearer tok"), auth));
            pairs.extend(std::iter::repeat_n(("X-Api-Key", "tok"), api));
            pairs.extend(std::iter::repeat_n(("X-Processing-Key", "k"), key));
            pairs.extend(std::iter::repeat_n(("X-Processing-Signature", "s"), sig));
            let places = usize::from(auth > 0) + usize::from(api > 0) + usize::from(key + sig > 0);
            let repeated = auth > 1 || api > 1 || key > 1 || sig > 1;
            let got = classify(&pairs).map_err(|r| r.reason());
            match (places, repeated) {
                (0, _) => prop_assert_eq!(got.err(), Some("missing_credentials")),
                (2.., _) => prop_assert_eq!(got.err(), Some("ambiguous_credentials")),
                (1, true) => prop_assert_eq!(got.err(), Some("repeated_header")),
                (1, false) => prop_assert!(got.is_ok()),
            }
        }
    }
}
