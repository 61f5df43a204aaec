//! HTTP rules in one place, for every framework: which header carries the
//! credential, what a repeated or ambiguous one means, which request facts
//! the verifier needs, and which status, challenge and body a refusal gets.
//!
//! The module depends on no HTTP stack. A framework adapter implements
//! [`Headers`] (one method: every value received under a name) and converts
//! the [`ErrorResponse`] back into its own response type; everything
//! security-relevant happens here, so two adapters cannot drift apart. With
//! the `http` feature, [`Headers`] is implemented for the `http` crate's
//! `HeaderMap`, `Request` and `request::Parts` (the types hyper, axum, tonic
//! and reqwest share) and [`ErrorResponse::to_http`] builds an
//! `http::Response`.
//!
//! # The steps of an adapter
//!
//! 1. [`Presented::from_headers`]: the one credential of the request and its
//!    facts (`Origin`, `Referer`, the client address behind
//!    [trusted proxies](crate::ip::TrustedProxies)), copied into owned values
//!    that can move to another task or thread. Refused with a typed
//!    [`Refusal`] when there is no credential, two, a repeated header or a
//!    malformed one.
//! 2. If [`Presented::needs_body`] (a signed request), buffer the body with a
//!    [`BodyBuffer`] sized by
//!    [`KeyManager::max_signed_body_len`](crate::KeyManager::max_signed_body_len).
//! 3. [`Presented::verify_async`] (or [`verify`](Presented::verify) for a
//!    synchronous store) against the route's [`Requirements`]: a
//!    [`VerifiedKey`](crate::VerifiedKey) or a [`Refusal`].
//! 4. On refusal, answer [`Refusal::response_for`] the route's requirements
//!    (or [`Refusal::response`]): status, `WWW-Authenticate`
//!    where RFC 6750 asks for it, and a JSON body from a fixed set of public
//!    codes. Log [`Refusal::reason`]: precise, and never a header value.
//!
//! ```
//! use api_keys::http::{Presented, Requirements};
//! use api_keys::ip::TrustedProxies;
//! use api_keys::{Actor, KeyManager, MemoryKeyStore, NewKey, OwnerId};
//!
//! let keys = KeyManager::new(MemoryKeyStore::new());
//! let token = keys.create(&Actor::system(),
//!     NewKey::secret(OwnerId::new("acct_1")?, "server"))?.token;
//!
//! // What the framework received (here: name/value pairs).
//! let authorization = format!("Bearer {}", token.expose_secret());
//! let headers = [("Authorization", authorization.as_str()), ("Origin", "https://shop.example")];
//! let peer = Some("203.0.113.7".parse()?);
//!
//! let presented = Presented::from_headers(&headers[..], "GET", "/v1/charges", peer,
//!                                         &TrustedProxies::none())?;
//! assert!(!presented.needs_body());
//! let key = presented.verify(&keys, &Requirements::new(), b"")?;
//! assert_eq!(key.owner().as_str(), "acct_1");
//!
//! // A refusal: status, challenge and body, never an echo of the request.
//! let missing = Presented::from_headers(&[("Accept", "*/*")][..], "GET", "/", peer,
//!                                       &TrustedProxies::none()).unwrap_err();
//! let response = missing.response();
//! assert_eq!(response.status, 401);
//! assert_eq!(response.www_authenticate, Some("Bearer"));
//! assert_eq!(response.body, r#"{"error":"invalid_api_key"}"#);
//! assert_eq!(missing.reason(), "missing_credentials");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Credentials
//!
//! Exactly one per request, from exactly one place:
//!
//! * `Authorization: Bearer <token>` ([RFC 6750 §2.1]): the scheme is
//!   matched ASCII-case-insensitively; scheme and token are separated by
//!   **one or more spaces** (the RFC's `1*SP`; a tab is not a separator);
//!   spaces and tabs around the whole value are ignored (HTTP's optional
//!   whitespace); the token must be a `token68` (`A-Z a-z 0-9 - . _ ~ + /`,
//!   then optional trailing `=`). Another scheme is
//!   [`UnsupportedScheme`](Refusal::UnsupportedScheme), a `Bearer` value
//!   that breaks this grammar [`MalformedCredentials`](Refusal::MalformedCredentials).
//! * `X-Api-Key: <token>`: the whole value (without surrounding whitespace),
//!   also a `token68`.
//! * `Authorization: Basic <base64>` ([RFC 7617]), only on routes that
//!   [allow it](Requirements::allow_basic): standard padded base64 (no
//!   whitespace, at most [`MAX_BASIC_LEN`] characters before decoding),
//!   split at the first `:` into user-id and password, both UTF-8. Two
//!   forms ([`BasicForm`]): the token as user-id with an empty password
//!   (Stripe's `curl -u sk_test_…:`), or the key id as user-id and the
//!   token as password (Moov's pair: refused as
//!   [`BasicIdMismatch`](Refusal::BasicIdMismatch) unless the id inside
//!   the token is the user-id). A value that cannot be decoded is
//!   [`MalformedBasic`](Refusal::MalformedBasic) (400) on every route; a
//!   well-formed one on a route that does not allow its form is
//!   [`UnsupportedScheme`](Refusal::UnsupportedScheme) (401).
//! * A signed request: any of `X-Processing-Key`, `X-Processing-Signature`,
//!   `X-Processing-Timestamp`, `X-Processing-Nonce`
//!   ([`signing`](crate::signing)); an absent one is passed as empty, and
//!   the key manager's policy decides the mode (body-only or
//!   replay-protected, which also binds the method and the request target).
//!
//! Two places at once ([`AmbiguousCredentials`](Refusal::AmbiguousCredentials),
//! RFC 6750's "more than one method") or one of these headers sent twice
//! ([`RepeatedHeader`](Refusal::RepeatedHeader)) is refused with 400
//! `invalid_request`: the server never chooses between two credentials.
//!
//! # Responses
//!
//! | refusal | status | `WWW-Authenticate` | body `error` |
//! |---|---|---|---|
//! | no credential, another scheme (or a Basic form the route does not allow) | 401 | `Bearer`, and `Basic realm="api"` where the route allows Basic ([`Refusal::response_for`]) | `invalid_api_key` |
//! | two credentials, a repeated or malformed credential header (Basic included) | 400 | `Bearer error="invalid_request"` | `invalid_request` |
//! | key refused ([`Rejection`](crate::Rejection) with status 401), a Basic pair whose ids differ | 401 | `Bearer error="invalid_token"` | `invalid_api_key` |
//! | a bearer key on a signed-only route ([`SignatureRequired`](Refusal::SignatureRequired)) | 401 | `Bearer error="invalid_token"` | `signature_required` |
//! | [`Rejection::MissingScope`](crate::Rejection::MissingScope) | 403 | `Bearer error="insufficient_scope"` | `forbidden` |
//! | other 403 rejections (environment, kind, origin, IP) | 403 | — | `forbidden` |
//! | [`Rejection::BodyTooLarge`](crate::Rejection::BodyTooLarge) | 413 | — | `payload_too_large` |
//! | unusable forwarding header from a trusted proxy, unreadable body | 400 | — | `invalid_request` |
//! | service failure (store, sealing key, replay cache): fail closed | 500 | — | `internal_error` |
//!
//! The body is `{"error":"<code>"}` with `Content-Type: application/json`
//! ([`JSON`]); the codes are the coarse public ones, so a client cannot
//! tell an unknown key from a revoked one. Management errors
//! ([`Error`](crate::Error)) map the same way through [`error_response`].
//!
//! [RFC 6750 §2.1]: https://www.rfc-editor.org/rfc/rfc6750#section-2.1
//! [RFC 7617]: https://www.rfc-editor.org/rfc/rfc7617

mod body;
mod credential;
mod exchange;
mod facts;
mod headers;
#[cfg(feature = "http")]
mod http_crate;
mod refusal;
mod verify;

pub use body::BodyBuffer;
pub use credential::{
    BasicCredential, BasicError, BasicForm, BasicForms, BearerToken, Credential, CredentialSource,
    MAX_BASIC_LEN, SignedCredential, parse_bearer,
};
pub use exchange::{
    BASIC_CHALLENGE, ClientAuth, ExchangeCode, ExchangeError, Granted, MAX_EXCHANGE_BODY_LEN,
    TokenExchange, TokenRequest,
};
pub use facts::RequestFacts;
pub use headers::{
    API_KEY, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, FORWARDED, Headers, JSON, ORIGIN,
    PROCESSING_KEY, PROCESSING_NONCE, PROCESSING_SIGNATURE, PROCESSING_TIMESTAMP, REFERER,
    WWW_AUTHENTICATE, X_FORWARDED_FOR,
};
pub use refusal::{ErrorResponse, Refusal, error_response};
pub use verify::{Presented, Requirements};
