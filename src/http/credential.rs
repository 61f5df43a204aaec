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
    /// `Authorization: Basic <base64(user-id:password)>` (RFC 7617).
    Basic,
}

impl CredentialSource {
    /// A stable `snake_case` name for logs: `authorization`,
    /// `api_key_header`, `signature` or `basic`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            CredentialSource::Authorization => "authorization",
            CredentialSource::ApiKeyHeader => "api_key_header",
            CredentialSource::Signature => "signature",
            CredentialSource::Basic => "basic",
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

/// How an `Authorization: Basic` credential (RFC 7617, `user-id:password`)
/// presents a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BasicForm {
    /// The token as the user-id and an empty password: Stripe's
    /// `curl -u sk_test_…:`.
    TokenAsUser,
    /// The public key id as the user-id and the full token as the password
    /// (Moov's public/secret pair); refused unless the id inside the token
    /// is the user-id.
    IdAndToken,
}

/// The `Authorization: Basic` forms a route accepts. Basic credentials are
/// off unless a route allows them
/// ([`Requirements::allow_basic`](super::Requirements::allow_basic)).
///
/// ```
/// use api_keys::http::{BasicForm, BasicForms};
/// assert!(!BasicForms::NONE.allows(BasicForm::TokenAsUser));
/// assert!(BasicForms::TOKEN_AS_USER.allows(BasicForm::TokenAsUser));
/// assert!(!BasicForms::TOKEN_AS_USER.allows(BasicForm::IdAndToken));
/// assert!(BasicForms::BOTH.allows(BasicForm::IdAndToken));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct BasicForms {
    token_as_user: bool,
    id_and_token: bool,
}

impl BasicForms {
    /// No Basic credential (the default).
    pub const NONE: Self = Self {
        token_as_user: false,
        id_and_token: false,
    };
    /// [`BasicForm::TokenAsUser`] only.
    pub const TOKEN_AS_USER: Self = Self {
        token_as_user: true,
        id_and_token: false,
    };
    /// [`BasicForm::IdAndToken`] only.
    pub const ID_AND_TOKEN: Self = Self {
        token_as_user: false,
        id_and_token: true,
    };
    /// Both forms.
    pub const BOTH: Self = Self {
        token_as_user: true,
        id_and_token: true,
    };

    /// Whether `form` is accepted.
    #[must_use]
    pub const fn allows(self, form: BasicForm) -> bool {
        match form {
            BasicForm::TokenAsUser => self.token_as_user,
            BasicForm::IdAndToken => self.id_and_token,
        }
    }

    /// Whether any form is accepted.
    #[must_use]
    pub const fn any(self) -> bool {
        self.token_as_user || self.id_and_token
    }
}

/// Why an `Authorization: Basic` value was refused (400, never echoed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BasicError {
    /// Longer than [`MAX_BASIC_LEN`] before decoding.
    TooLong,
    /// Not one or more spaces then standard, padded base64 (RFC 4648 §4;
    /// no whitespace, no URL-safe alphabet, canonical padding).
    Base64,
    /// The decoded value has no `:` between user-id and password.
    MissingColon,
    /// The user-id or the password is not UTF-8.
    NotUtf8,
    /// The user-id is empty.
    EmptyUser,
}

impl BasicError {
    /// A stable `snake_case` name for logs: `too_long`, `bad_base64`,
    /// `missing_colon`, `not_utf8`, `empty_user`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            BasicError::TooLong => "too_long",
            BasicError::Base64 => "bad_base64",
            BasicError::MissingColon => "missing_colon",
            BasicError::NotUtf8 => "not_utf8",
            BasicError::EmptyUser => "empty_user",
        }
    }
}

impl fmt::Display for BasicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for BasicError {}

/// The longest base64 text of a Basic credential accepted (checked before
/// decoding): ample for a key id, a colon and a token of any format.
pub const MAX_BASIC_LEN: usize = 1024;

/// An `Authorization: Basic` credential, decoded and owned: user-id and
/// password, zeroized on drop. `Debug` prints only their lengths.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicCredential {
    user: Zeroizing<String>,
    password: Zeroizing<String>,
}

impl BasicCredential {
    /// Decodes the credentials of `Authorization: Basic <credentials>`
    /// (the part after the scheme and its spaces): standard padded base64,
    /// at most [`MAX_BASIC_LEN`] characters, split at the first `:` (RFC
    /// 7617 §2), both halves UTF-8, the user-id not empty.
    ///
    /// ```
    /// use api_keys::http::{BasicCredential, BasicError, BasicForm};
    /// // base64("sk_test_abc:")
    /// let stripe = BasicCredential::decode(b"c2tfdGVzdF9hYmM6")?;
    /// assert_eq!(stripe.form(), BasicForm::TokenAsUser);
    /// assert_eq!(stripe.token(), "sk_test_abc");
    /// assert_eq!(BasicCredential::decode(b"c2tfdGVzdF9hYmM").unwrap_err(), BasicError::Base64);
    /// # Ok::<(), BasicError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The [`BasicError`] that applies.
    pub fn decode(encoded: &[u8]) -> Result<Self, BasicError> {
        use base64::Engine as _;
        if encoded.len() > MAX_BASIC_LEN {
            return Err(BasicError::TooLong);
        }
        let decoded = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|_| BasicError::Base64)?,
        );
        let colon = decoded
            .iter()
            .position(|&b| b == b':')
            .ok_or(BasicError::MissingColon)?;
        let (user, rest) = decoded
            .split_at_checked(colon)
            .ok_or(BasicError::MissingColon)?;
        let password = rest.get(1..).unwrap_or_default();
        let text = |bytes: &[u8]| {
            core::str::from_utf8(bytes)
                .map(|s| Zeroizing::new(s.to_owned()))
                .map_err(|_| BasicError::NotUtf8)
        };
        let (user, password) = (text(user)?, text(password)?);
        if user.is_empty() {
            return Err(BasicError::EmptyUser);
        }
        Ok(Self { user, password })
    }

    /// The form: [`TokenAsUser`](BasicForm::TokenAsUser) when the password
    /// is empty, else [`IdAndToken`](BasicForm::IdAndToken).
    #[must_use]
    pub fn form(&self) -> BasicForm {
        if self.password.is_empty() {
            BasicForm::TokenAsUser
        } else {
            BasicForm::IdAndToken
        }
    }

    /// The token: the user-id, or the password in the pair form.
    ///
    /// Security: this is the client's secret. Never log it, echo it or keep
    /// it past the request.
    #[must_use]
    pub fn token(&self) -> &str {
        match self.form() {
            BasicForm::TokenAsUser => &self.user,
            BasicForm::IdAndToken => &self.password,
        }
    }

    /// The key id the client claims in the pair form (the user-id), as
    /// sent; `None` in the token-as-user form.
    #[must_use]
    pub fn claimed_id(&self) -> Option<&str> {
        match self.form() {
            BasicForm::TokenAsUser => None,
            BasicForm::IdAndToken => Some(&self.user),
        }
    }

    /// The token to verify, if `forms` accepts this credential's form and,
    /// in the pair form, the user-id is the id inside the token.
    ///
    /// # Errors
    ///
    /// [`Refusal::UnsupportedScheme`] for a form `forms` does not accept;
    /// [`Refusal::Rejected`] for a token that fails its offline checks;
    /// [`Refusal::BasicIdMismatch`] when the user-id is not the token's id.
    pub fn accepted(&self, format: &KeyFormat, forms: BasicForms) -> Result<&str, Refusal> {
        let form = self.form();
        if !forms.allows(form) {
            return Err(Refusal::UnsupportedScheme);
        }
        let token = self.token();
        let presented = format.parse(token)?;
        match self.claimed_id() {
            Some(claimed) if KeyId::parse(claimed).ok() != Some(presented.id()) => {
                Err(Refusal::BasicIdMismatch)
            }
            _ => Ok(token),
        }
    }
}

impl fmt::Debug for BasicCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicCredential")
            .field("user_len", &self.user.len())
            .field("password_len", &self.password.len())
            .finish()
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
    /// `Authorization: Basic`, decoded: accepted only on routes that
    /// [allow](super::Requirements::allow_basic) its form.
    Basic(BasicCredential),
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
            (true, false, false) => authorization_credential(single(authorization)?),
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
        let token = match self {
            Credential::Signed(signed) => return KeyId::parse_bytes(&signed.key).ok(),
            Credential::Bearer { token, .. } => token.expose_secret(),
            Credential::Basic(basic) => basic.token(),
        };
        format.parse(token).ok().map(|presented| presented.id())
    }

    /// Where the credential was found.
    #[must_use]
    pub fn source(&self) -> CredentialSource {
        match self {
            Credential::Bearer { source, .. } => *source,
            Credential::Signed(_) => CredentialSource::Signature,
            Credential::Basic(_) => CredentialSource::Basic,
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

/// An `Authorization` value split into its scheme and the rest (surrounding
/// spaces and tabs ignored).
fn split_scheme(value: &[u8]) -> (&[u8], &[u8]) {
    let value = trim_ows(value);
    let scheme_len = value
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(value.len());
    value.split_at_checked(scheme_len).unwrap_or((value, b""))
}

/// The credentials after a scheme: `1*SP` (spaces only, at least one),
/// then the rest.
fn after_spaces(rest: &[u8]) -> Option<&[u8]> {
    let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    if start == 0 {
        return None;
    }
    rest.get(start..)
}

/// The credential of an `Authorization` value: `Bearer` or `Basic`.
fn authorization_credential(value: &[u8]) -> Result<Credential, Refusal> {
    let (scheme, rest) = split_scheme(value);
    if scheme.eq_ignore_ascii_case(b"basic") {
        let encoded = after_spaces(rest).ok_or(Refusal::MalformedBasic(BasicError::Base64))?;
        return Ok(Credential::Basic(
            BasicCredential::decode(encoded).map_err(Refusal::MalformedBasic)?,
        ));
    }
    let token = parse_bearer(value)?;
    Ok(Credential::bearer(token, CredentialSource::Authorization))
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
    let (scheme, rest) = split_scheme(value);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(Refusal::UnsupportedScheme);
    }
    after_spaces(rest)
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
            other => panic!("not a bearer token: {other:?}"),
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
            (&[("Authorization", "Digest YQ==")], "unsupported_scheme"),
            (
                &[("Authorization", "Basic YQ==")],
                "malformed_basic_credentials",
            ),
            (
                &[("Authorization", "Basic YTpi"), ("X-Api-Key", "a")],
                "ambiguous_credentials",
            ),
            (
                &[
                    ("Authorization", "Basic YTpi"),
                    ("Authorization", "Basic YTpi"),
                ],
                "repeated_header",
            ),
            (&[("Authorization", "Bearer a b")], "malformed_credentials"),
            (&[("X-Api-Key", "")], "malformed_credentials"),
            (&[("X-Api-Key", "a b")], "malformed_credentials"),
        ];
        for (pairs, reason) in cases {
            let refusal = classify(pairs).unwrap_err();
            assert_eq!(refusal.reason(), *reason, "{pairs:?}");
        }
    }

    fn b64(text: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    #[test]
    fn basic_decoding() {
        let ok: &[(&[u8], BasicForm, &str, Option<&str>)] = &[
            (b"tok:", BasicForm::TokenAsUser, "tok", None),
            (b"id:tok", BasicForm::IdAndToken, "tok", Some("id")),
            // Split at the first colon: the password may hold colons.
            (b"id:t:o:k", BasicForm::IdAndToken, "t:o:k", Some("id")),
            (
                b"\xc3\xa9:\xc3\xa9",
                BasicForm::IdAndToken,
                "\u{e9}",
                Some("\u{e9}"),
            ),
        ];
        for (plain, form, token, claimed) in ok {
            let basic = BasicCredential::decode(b64(plain).as_bytes()).unwrap();
            assert_eq!(basic.form(), *form, "{plain:?}");
            assert_eq!(basic.token(), *token, "{plain:?}");
            assert_eq!(basic.claimed_id(), *claimed, "{plain:?}");
        }
        let bad: &[(&[u8], BasicError)] = &[
            (b"dG9rOg", BasicError::Base64),    // padding missing
            (b"dG9rOg===", BasicError::Base64), // too much padding
            (b"dG9r Og==", BasicError::Base64), // whitespace inside
            (b"dG9rOg==\n", BasicError::Base64),
            (b"-_-_", BasicError::Base64),     // URL-safe alphabet
            (b"dG9rOh==", BasicError::Base64), // non-canonical trailing bits
            (b"", BasicError::MissingColon),   // decodes to nothing
        ];
        for (encoded, error) in bad {
            assert_eq!(
                BasicCredential::decode(encoded).unwrap_err(),
                *error,
                "{encoded:?}"
            );
        }
        let cases: &[(&[u8], BasicError)] = &[
            (b"token-without-colon", BasicError::MissingColon),
            (b":tok", BasicError::EmptyUser),
            (b":", BasicError::EmptyUser),
            (b"\xff:tok", BasicError::NotUtf8),
            (b"id:\xfe", BasicError::NotUtf8),
        ];
        for (plain, error) in cases {
            let encoded = b64(plain);
            assert_eq!(
                BasicCredential::decode(encoded.as_bytes()).unwrap_err(),
                *error,
                "{plain:?}"
            );
        }
        // The bound applies to the text before decoding.
        let long = b64(&[b'a'; 800]);
        assert!(long.len() > MAX_BASIC_LEN);
        assert_eq!(
            BasicCredential::decode(long.as_bytes()).unwrap_err(),
            BasicError::TooLong
        );
        let at_limit = "A".repeat(MAX_BASIC_LEN);
        assert_ne!(
            BasicCredential::decode(at_limit.as_bytes()).unwrap_err(),
            BasicError::TooLong
        );
        for (error, name) in [
            (BasicError::TooLong, "too_long"),
            (BasicError::Base64, "bad_base64"),
            (BasicError::MissingColon, "missing_colon"),
            (BasicError::NotUtf8, "not_utf8"),
            (BasicError::EmptyUser, "empty_user"),
        ] {
            assert_eq!(error.as_str(), name);
            assert_eq!(error.to_string(), name);
        }
    }

    #[test]
    fn basic_in_the_authorization_header() {
        let value = format!("bAsIc   {} ", b64(b"sk_test_x:"));
        let Credential::Basic(basic) = classify(&[("Authorization", &value)]).unwrap() else {
            panic!("not basic")
        };
        assert_eq!(basic.token(), "sk_test_x");
        assert_eq!(
            classify(&[("Authorization", &value)]).unwrap().source(),
            CredentialSource::Basic
        );
        for bad in ["Basic", "Basic ", "Basic\tYTpi", "Basic YTpi YTpi"] {
            let refusal = classify(&[("Authorization", bad)]).unwrap_err();
            assert_eq!(refusal.reason(), "malformed_basic_credentials", "{bad:?}");
            assert_eq!(refusal.status(), 400);
        }
    }

    #[test]
    fn basic_forms_are_accepted_only_when_allowed_and_ids_must_match() {
        let format = KeyFormat::default();
        let key = format
            .generate(crate::KeyKind::Secret, crate::Environment::Test)
            .unwrap();
        let other = format
            .generate(crate::KeyKind::Secret, crate::Environment::Test)
            .unwrap();
        let token = key.token.expose_secret();
        let decode =
            |plain: String| BasicCredential::decode(b64(plain.as_bytes()).as_bytes()).unwrap();
        let stripe = decode(format!("{token}:"));
        let pair = decode(format!("{}:{token}", key.id));
        let wrong_pair = decode(format!("{}:{token}", other.id));
        let not_an_id = decode(format!("acct_1:{token}"));
        let garbled = decode("sk_test_nope:".to_owned());

        assert_eq!(
            stripe.accepted(&format, BasicForms::TOKEN_AS_USER).unwrap(),
            token
        );
        assert_eq!(stripe.accepted(&format, BasicForms::BOTH).unwrap(), token);
        assert_eq!(
            pair.accepted(&format, BasicForms::ID_AND_TOKEN).unwrap(),
            token
        );
        assert_eq!(pair.accepted(&format, BasicForms::BOTH).unwrap(), token);
        let reason = |r: Result<&str, Refusal>| r.unwrap_err().reason();
        assert_eq!(
            reason(stripe.accepted(&format, BasicForms::NONE)),
            "unsupported_scheme"
        );
        assert_eq!(
            reason(stripe.accepted(&format, BasicForms::ID_AND_TOKEN)),
            "unsupported_scheme"
        );
        assert_eq!(
            reason(pair.accepted(&format, BasicForms::TOKEN_AS_USER)),
            "unsupported_scheme"
        );
        assert_eq!(
            reason(wrong_pair.accepted(&format, BasicForms::BOTH)),
            "basic_id_mismatch"
        );
        assert_eq!(
            reason(not_an_id.accepted(&format, BasicForms::BOTH)),
            "basic_id_mismatch"
        );
        assert_eq!(
            reason(garbled.accepted(&format, BasicForms::BOTH)),
            "malformed"
        );
        // Key ids for logs come from the token, whichever form.
        for basic in [stripe, pair] {
            assert_eq!(Credential::Basic(basic).key_id(&format), Some(key.id));
        }
        assert_eq!(Credential::Basic(garbled).key_id(&format), None);
        assert!(BasicForms::BOTH.any() && !BasicForms::NONE.any());
        assert!(BasicForms::ID_AND_TOKEN.any() && BasicForms::TOKEN_AS_USER.any());
        assert_eq!(BasicForms::default(), BasicForms::NONE);
    }

    #[test]
    fn debug_never_shows_values() {
        let basic = format!("Basic {}", b64(b"sekrit_user:sekrit_pass"));
        let text = format!("{:?}", classify(&[("Authorization", &basic)]).unwrap());
        assert!(!text.contains("sekrit"), "{text}");
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

    #[test]
    fn debug_shows_lengths_and_names() {
        let bearer = classify(&[("Authorization", "Bearer sekrit_token")]).unwrap();
        assert_eq!(
            format!("{bearer:?}"),
            "Bearer { token: BearerToken(<12 bytes>), source: Authorization }"
        );
        let basic = format!("Basic {}", b64(b"user:password"));
        assert_eq!(
            format!("{:?}", classify(&[("Authorization", &basic)]).unwrap()),
            "Basic(BasicCredential { user_len: 4, password_len: 8 })"
        );
        let pairs: &[(&str, &str)] = &[
            ("X-Processing-Key", "keyid123"),
            ("X-Processing-Signature", "deadbeef00"),
            ("X-Processing-Nonce", "nonce"),
        ];
        assert_eq!(
            format!("{:?}", classify(pairs).unwrap()),
            "Signed(SignedCredential { key_len: 8, signature_len: 10, timestamp_len: 0, \
             nonce_len: 5, target_len: 6, .. })"
        );
        for (source, name) in [
            (CredentialSource::Authorization, "authorization"),
            (CredentialSource::ApiKeyHeader, "api_key_header"),
            (CredentialSource::Signature, "signature"),
            (CredentialSource::Basic, "basic"),
        ] {
            assert_eq!(source.as_str(), name);
        }
    }

    fn token68_strategy() -> impl Strategy<Value = String> {
        "[A-Za-z0-9._~+/-]{1,80}={0,2}"
    }

    proptest! {
        /// Any user-id without a colon and any password round-trip, and
        /// arbitrary bytes never panic.
        #[test]
        fn basic_round_trips_and_never_panics(
            user in "[^:]{1,40}",
            password in ".{0,40}",
            junk in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let basic = BasicCredential::decode(b64(format!("{user}:{password}").as_bytes()).as_bytes()).unwrap();
            if password.is_empty() {
                prop_assert_eq!(basic.token(), user.as_str());
                prop_assert_eq!(basic.claimed_id(), None);
            } else {
                prop_assert_eq!(basic.token(), password.as_str());
                prop_assert_eq!(basic.claimed_id(), Some(user.as_str()));
            }
            let _ = BasicCredential::decode(&junk);
            let mut header = b"Basic ".to_vec();
            header.extend_from_slice(&junk);
            let _ = authorization_credential(&header);
        }

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
