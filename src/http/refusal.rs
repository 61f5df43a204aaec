//! Why a request is refused, and what the client is answered.

use super::credential::BasicError;
use crate::error::{Error, Rejection, VerifyError};
use crate::ip::ForwardedError;
use core::fmt;

/// Why a request was refused. The reason is precise
/// ([`reason`](Self::reason), for logs and metrics); the answer is coarse
/// ([`response`](Self::response)). Neither ever carries a header value, a
/// token or a signature.
#[derive(Debug)]
#[non_exhaustive]
pub enum Refusal {
    /// No credential at all.
    MissingCredentials,
    /// Credentials in two places at once (e.g. `Authorization` and
    /// `X-Api-Key`, or a bearer token and signature headers).
    AmbiguousCredentials,
    /// A credential header was sent more than once.
    RepeatedHeader,
    /// `Authorization` with another scheme than `Bearer` (or none), or a
    /// `Basic` form the route does not [allow](super::Requirements::allow_basic).
    UnsupportedScheme,
    /// A `Bearer` or `X-Api-Key` value that breaks the grammar (see the
    /// [module documentation](super#credentials)).
    MalformedCredentials,
    /// An `Authorization: Basic` value that could not be decoded (400).
    MalformedBasic(BasicError),
    /// A Basic credential in the pair form whose user-id is not the key id
    /// inside the token (401, like an unknown key).
    BasicIdMismatch,
    /// A bearer token on a route that accepts only signed requests: 401
    /// with the public code `signature_required` (the key itself may be
    /// valid; it was not checked).
    SignatureRequired,
    /// The peer is a trusted proxy and its forwarding header is unusable.
    Forwarding(ForwardedError),
    /// The body of a signed request could not be read.
    UnreadableBody,
    /// The key manager refused the key.
    Rejected(Rejection),
    /// The service could not decide (store, sealing key, replay cache):
    /// fail closed. Its `Display` and `source()` carry no secret.
    Failed(VerifyError),
}

impl Refusal {
    /// A stable `snake_case` name for logs and metrics: the rejection's
    /// [`as_str`](Rejection::as_str), or `missing_credentials`,
    /// `ambiguous_credentials`, `repeated_header`, `unsupported_scheme`,
    /// `malformed_credentials`, `malformed_basic_credentials`,
    /// `basic_id_mismatch`, `signature_required`,
    /// `bad_forwarding_header`, `unreadable_body`, `service_failure`.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::MissingCredentials => "missing_credentials",
            Refusal::AmbiguousCredentials => "ambiguous_credentials",
            Refusal::RepeatedHeader => "repeated_header",
            Refusal::UnsupportedScheme => "unsupported_scheme",
            Refusal::MalformedCredentials => "malformed_credentials",
            Refusal::MalformedBasic(_) => "malformed_basic_credentials",
            Refusal::BasicIdMismatch => "basic_id_mismatch",
            Refusal::SignatureRequired => "signature_required",
            Refusal::Forwarding(_) => "bad_forwarding_header",
            Refusal::UnreadableBody => "unreadable_body",
            Refusal::Rejected(r) => r.as_str(),
            Refusal::Failed(_) => "service_failure",
        }
    }

    /// The key manager's rejection, when it refused the key.
    #[must_use]
    pub fn rejection(&self) -> Option<Rejection> {
        match self {
            Refusal::Rejected(r) => Some(*r),
            _ => None,
        }
    }

    /// The service failure, when the status is 500.
    #[must_use]
    pub fn error(&self) -> Option<&VerifyError> {
        match self {
            Refusal::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// The HTTP status: 400, 401, 403, 413 or 500 (see the
    /// [module documentation](super#responses)).
    #[must_use]
    pub fn status(&self) -> u16 {
        self.response().status
    }

    /// The answer to send on a route with these requirements: as
    /// [`response`](Self::response), and where the route
    /// [allows Basic](super::Requirements::allow_basic) a 401 also
    /// challenges for it (RFC 7235 §4.1: one challenge per scheme the route
    /// accepts; realm `api`), so a client that waits for a challenge (wget)
    /// sends its Basic credentials. A signed-only route never adds it.
    #[must_use]
    pub fn response_for(&self, requirements: &super::Requirements) -> ErrorResponse {
        let mut answer = self.response();
        if requirements.basic.any() && !requirements.signed && answer.status == 401 {
            answer.www_authenticate = Some(match answer.www_authenticate {
                Some(INVALID_TOKEN_CHALLENGE) => INVALID_TOKEN_AND_BASIC_CHALLENGE,
                _ => CHALLENGE_AND_BASIC,
            });
        }
        answer
    }

    /// The answer to send: status, `WWW-Authenticate`, JSON body.
    #[must_use]
    pub fn response(&self) -> ErrorResponse {
        match self {
            Refusal::MissingCredentials | Refusal::UnsupportedScheme => {
                ErrorResponse::new(401, Some(CHALLENGE), INVALID_API_KEY)
            }
            Refusal::AmbiguousCredentials
            | Refusal::RepeatedHeader
            | Refusal::MalformedCredentials
            | Refusal::MalformedBasic(_) => {
                ErrorResponse::new(400, Some(INVALID_REQUEST_CHALLENGE), INVALID_REQUEST)
            }
            Refusal::BasicIdMismatch => {
                ErrorResponse::new(401, Some(INVALID_TOKEN_CHALLENGE), INVALID_API_KEY)
            }
            // The key may well be valid: say what is missing instead of
            // "invalid_api_key", so a client knows to sign.
            Refusal::SignatureRequired => {
                ErrorResponse::new(401, Some(INVALID_TOKEN_CHALLENGE), SIGNATURE_REQUIRED)
            }
            Refusal::Forwarding(_) | Refusal::UnreadableBody => {
                ErrorResponse::new(400, None, INVALID_REQUEST)
            }
            Refusal::Rejected(r) => rejection_response(*r),
            Refusal::Failed(_) => ErrorResponse::new(500, None, INTERNAL_ERROR),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Failed(e) => write!(f, "service_failure: {e}"),
            Refusal::Forwarding(e) => write!(f, "bad_forwarding_header: {}", e.as_str()),
            Refusal::MalformedBasic(e) => write!(f, "malformed_basic_credentials: {e}"),
            other => f.write_str(other.reason()),
        }
    }
}

impl std::error::Error for Refusal {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Refusal::Failed(e) => Some(e),
            Refusal::Forwarding(e) => Some(e),
            Refusal::Rejected(r) => Some(r),
            Refusal::MalformedBasic(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Rejection> for Refusal {
    fn from(r: Rejection) -> Self {
        Refusal::Rejected(r)
    }
}

impl From<VerifyError> for Refusal {
    /// A rejection stays a rejection; anything else is a service failure.
    fn from(e: VerifyError) -> Self {
        match e.rejection() {
            Some(r) => Refusal::Rejected(r),
            None => Refusal::Failed(e),
        }
    }
}

impl From<ForwardedError> for Refusal {
    fn from(e: ForwardedError) -> Self {
        Refusal::Forwarding(e)
    }
}

/// `WWW-Authenticate` without an error code: no (bearer) credential sent
/// (RFC 6750 §3: no error code then).
const CHALLENGE: &str = "Bearer";
/// RFC 6750 §3.1 `invalid_request`.
const INVALID_REQUEST_CHALLENGE: &str = r#"Bearer error="invalid_request""#;
/// RFC 6750 §3.1 `invalid_token`.
const INVALID_TOKEN_CHALLENGE: &str = r#"Bearer error="invalid_token""#;
/// [`CHALLENGE`] and a Basic challenge, on routes that allow Basic.
const CHALLENGE_AND_BASIC: &str = r#"Bearer, Basic realm="api", charset="UTF-8""#;
/// [`INVALID_TOKEN_CHALLENGE`] and a Basic challenge.
const INVALID_TOKEN_AND_BASIC_CHALLENGE: &str =
    r#"Bearer error="invalid_token", Basic realm="api", charset="UTF-8""#;
/// RFC 6750 §3.1 `insufficient_scope`.
const INSUFFICIENT_SCOPE_CHALLENGE: &str = r#"Bearer error="insufficient_scope""#;

const INVALID_API_KEY: &str = "invalid_api_key";
const INVALID_REQUEST: &str = "invalid_request";
const SIGNATURE_REQUIRED: &str = "signature_required";
const INTERNAL_ERROR: &str = "internal_error";

fn rejection_response(r: Rejection) -> ErrorResponse {
    let status = r.http_status();
    let challenge = match (status, r) {
        (_, Rejection::MissingScope) => Some(INSUFFICIENT_SCOPE_CHALLENGE),
        (401, _) => Some(INVALID_TOKEN_CHALLENGE),
        _ => None,
    };
    ErrorResponse::new(status, challenge, r.public_code())
}

/// The JSON body for a public code; every code this crate hands out has
/// one (tested), anything else is answered as an internal error.
fn body_for(code: &str) -> Option<&'static str> {
    Some(match code {
        "invalid_api_key" => r#"{"error":"invalid_api_key"}"#,
        "invalid_request" => r#"{"error":"invalid_request"}"#,
        "signature_required" => r#"{"error":"signature_required"}"#,
        "forbidden" => r#"{"error":"forbidden"}"#,
        "payload_too_large" => r#"{"error":"payload_too_large"}"#,
        "too_many_requests" => r#"{"error":"too_many_requests"}"#,
        "internal_error" => r#"{"error":"internal_error"}"#,
        "not_found" => r#"{"error":"not_found"}"#,
        "conflict" => r#"{"error":"conflict"}"#,
        "key_revoked" => r#"{"error":"key_revoked"}"#,
        "invalid_state" => r#"{"error":"invalid_state"}"#,
        "another_key_active" => r#"{"error":"another_key_active"}"#,
        "secret_already_revealed" => r#"{"error":"secret_already_revealed"}"#,
        "invalid_client" => r#"{"error":"invalid_client"}"#,
        "unauthorized_client" => r#"{"error":"unauthorized_client"}"#,
        "unsupported_grant_type" => r#"{"error":"unsupported_grant_type"}"#,
        "invalid_scope" => r#"{"error":"invalid_scope"}"#,
        _ => return None,
    })
}

/// An HTTP error answer: what an adapter converts into its framework's
/// response. Every part is a constant: nothing from the request is echoed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ErrorResponse {
    /// The status code.
    pub status: u16,
    /// The `WWW-Authenticate` value to send, if any: on every 401, and on a
    /// missing scope (RFC 6750 §3).
    pub www_authenticate: Option<&'static str>,
    /// The public code, also in the body.
    pub code: &'static str,
    /// The body, `{"error":"<code>"}`; send it with
    /// `Content-Type: application/json` ([`JSON`](super::JSON)).
    pub body: &'static str,
}

impl ErrorResponse {
    pub(super) fn new(
        status: u16,
        www_authenticate: Option<&'static str>,
        code: &'static str,
    ) -> Self {
        match body_for(code) {
            Some(body) => Self {
                status,
                www_authenticate,
                code,
                body,
            },
            None => Self::INTERNAL_ERROR,
        }
    }

    /// 500 `internal_error`: the answer when the service cannot decide, for
    /// adapters that detect a failure of their own (e.g. a handler asking
    /// for a verified key on a route without the layer). Fail closed.
    pub const INTERNAL_ERROR: ErrorResponse = ErrorResponse {
        status: 500,
        www_authenticate: None,
        code: INTERNAL_ERROR,
        body: r#"{"error":"internal_error"}"#,
    };
}

/// The answer to a failed management operation (create, roll, revoke, …):
/// [`Error::http_status`] and a body from [`Error::public_code`]; never the
/// error's message, which may name a key id or a configuration detail.
///
/// ```
/// use api_keys::{Error, KeyId};
/// let response = api_keys::http::error_response(&Error::NotFound(KeyId::from_bytes([1; 16])));
/// assert_eq!((response.status, response.body), (404, r#"{"error":"not_found"}"#));
/// ```
#[must_use]
pub fn error_response(error: &Error) -> ErrorResponse {
    ErrorResponse::new(error.http_status(), None, error.public_code())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use crate::error::{Field, StoreError, StoreErrorKind};
    use crate::token::KeyId;

    #[test]
    fn every_rejection_has_a_consistent_answer() {
        for r in Rejection::ALL {
            let response = Refusal::from(r).response();
            assert_eq!(response.status, r.http_status(), "{r:?}");
            assert_eq!(response.code, r.public_code(), "{r:?}");
            assert_eq!(
                response.body,
                format!(r#"{{"error":"{}"}}"#, r.public_code())
            );
            assert_eq!(
                response.status == 401,
                response.www_authenticate.is_some() && r != Rejection::MissingScope
            );
            assert_eq!(Refusal::from(r).reason(), r.as_str());
            assert_eq!(Refusal::from(r).rejection(), Some(r));
        }
        assert_eq!(
            Refusal::from(Rejection::MissingScope)
                .response()
                .www_authenticate,
            Some(r#"Bearer error="insufficient_scope""#)
        );
        assert_eq!(
            Refusal::from(Rejection::Revoked)
                .response()
                .www_authenticate,
            Some(r#"Bearer error="invalid_token""#)
        );
    }

    #[test]
    fn request_refusals() {
        let cases = [
            (
                Refusal::MissingCredentials,
                401,
                Some("Bearer"),
                "invalid_api_key",
            ),
            (
                Refusal::UnsupportedScheme,
                401,
                Some("Bearer"),
                "invalid_api_key",
            ),
            (
                Refusal::AmbiguousCredentials,
                400,
                Some(r#"Bearer error="invalid_request""#),
                "invalid_request",
            ),
            (
                Refusal::RepeatedHeader,
                400,
                Some(r#"Bearer error="invalid_request""#),
                "invalid_request",
            ),
            (
                Refusal::MalformedCredentials,
                400,
                Some(r#"Bearer error="invalid_request""#),
                "invalid_request",
            ),
            (
                Refusal::SignatureRequired,
                401,
                Some(r#"Bearer error="invalid_token""#),
                "signature_required",
            ),
            (
                Refusal::Forwarding(ForwardedError::Malformed),
                400,
                None,
                "invalid_request",
            ),
            (Refusal::UnreadableBody, 400, None, "invalid_request"),
            (
                Refusal::MalformedBasic(BasicError::Base64),
                400,
                Some(r#"Bearer error="invalid_request""#),
                "invalid_request",
            ),
            (
                Refusal::BasicIdMismatch,
                401,
                Some(r#"Bearer error="invalid_token""#),
                "invalid_api_key",
            ),
            (
                Refusal::from(VerifyError::Store(StoreError::new(StoreErrorKind::Backend))),
                500,
                None,
                "internal_error",
            ),
        ];
        for (refusal, status, challenge, code) in cases {
            let response = refusal.response();
            assert_eq!(response.status, status, "{refusal:?}");
            assert_eq!(refusal.status(), status, "{refusal:?}");
            assert_eq!(response.www_authenticate, challenge, "{refusal:?}");
            assert_eq!(response.code, code, "{refusal:?}");
            assert_eq!(response.body, format!(r#"{{"error":"{code}"}}"#));
        }
        let failed = Refusal::from(VerifyError::Store(StoreError::new(StoreErrorKind::Backend)));
        assert!(failed.error().is_some());
        assert_eq!(failed.reason(), "service_failure");
        assert!(failed.to_string().starts_with("service_failure: key store"));
        assert!(Refusal::UnreadableBody.error().is_none());
        let basic = Refusal::MalformedBasic(BasicError::MissingColon);
        assert_eq!(
            basic.to_string(),
            "malformed_basic_credentials: missing_colon"
        );
        assert!(std::error::Error::source(&basic).is_some());
    }

    /// A logger that walks `source()` finds the cause of each refusal that
    /// has one, as its own typed error, and nothing for the others.
    #[test]
    fn source_chains_lead_to_the_cause() {
        use std::error::Error as _;
        let failed = Refusal::from(VerifyError::Store(StoreError::new(StoreErrorKind::Backend)));
        let cause = failed.source().unwrap();
        let store = cause.downcast_ref::<VerifyError>().unwrap();
        assert!(matches!(store, VerifyError::Store(_)));

        let forwarding = Refusal::from(ForwardedError::EmptyElement);
        let cause = forwarding.source().unwrap();
        assert_eq!(
            cause.downcast_ref::<ForwardedError>(),
            Some(&ForwardedError::EmptyElement)
        );
        assert_eq!(
            forwarding.to_string(),
            format!(
                "bad_forwarding_header: {}",
                ForwardedError::EmptyElement.as_str()
            )
        );

        let rejected = Refusal::from(Rejection::Revoked);
        let cause = rejected.source().unwrap();
        assert_eq!(cause.downcast_ref::<Rejection>(), Some(&Rejection::Revoked));

        let basic = Refusal::MalformedBasic(BasicError::Base64);
        assert_eq!(
            basic.source().unwrap().downcast_ref::<BasicError>(),
            Some(&BasicError::Base64)
        );

        for refusal in [
            Refusal::MissingCredentials,
            Refusal::AmbiguousCredentials,
            Refusal::RepeatedHeader,
            Refusal::UnsupportedScheme,
            Refusal::MalformedCredentials,
            Refusal::BasicIdMismatch,
            Refusal::SignatureRequired,
            Refusal::UnreadableBody,
        ] {
            assert!(refusal.source().is_none(), "{refusal:?}");
        }
    }

    #[test]
    fn routes_that_allow_basic_also_challenge_for_it() {
        use super::super::{BasicForms, Requirements};
        let bearer_only = Requirements::new();
        let basic = Requirements::new().allow_basic(BasicForms::TOKEN_AS_USER);
        let cases = [
            (
                Refusal::MissingCredentials,
                r#"Bearer, Basic realm="api", charset="UTF-8""#,
            ),
            (
                Refusal::UnsupportedScheme,
                r#"Bearer, Basic realm="api", charset="UTF-8""#,
            ),
            (
                Refusal::BasicIdMismatch,
                r#"Bearer error="invalid_token", Basic realm="api", charset="UTF-8""#,
            ),
            (
                Refusal::from(Rejection::Revoked),
                r#"Bearer error="invalid_token", Basic realm="api", charset="UTF-8""#,
            ),
        ];
        for (refusal, challenge) in cases {
            assert_eq!(refusal.response_for(&bearer_only), refusal.response());
            let answer = refusal.response_for(&basic);
            assert_eq!(answer.www_authenticate, Some(challenge), "{refusal:?}");
            assert_eq!((answer.status, answer.body), (401, refusal.response().body));
        }
        // Not a 401: unchanged.
        for refusal in [
            Refusal::MalformedBasic(BasicError::Base64),
            Refusal::from(Rejection::MissingScope),
            Refusal::from(Rejection::IpNotAllowed),
        ] {
            assert_ne!(refusal.status(), 401, "{refusal:?}");
            assert_eq!(
                refusal.response_for(&basic),
                refusal.response(),
                "{refusal:?}"
            );
        }
        // A signed-only route never invites Basic, even if it lists it.
        let signed = basic.clone().require_signed();
        for refusal in [Refusal::SignatureRequired, Refusal::MissingCredentials] {
            assert_eq!(
                refusal.response_for(&signed),
                refusal.response(),
                "{refusal:?}"
            );
        }
    }

    #[test]
    fn management_errors_use_the_public_code() {
        let id = KeyId::from_bytes([7; 16]);
        let errors = [
            Error::Invalid {
                field: Field::Name,
                reason: "must not be blank",
            },
            Error::NotFound(id),
            Error::Revoked(id),
            Error::InvalidState { id, reason: "x" },
            Error::Conflict(id),
            Error::AnotherKeyActive,
            Error::SecretAlreadyRevealed(id),
            Error::Randomness,
            Error::NoSealingKeys,
        ];
        for e in errors {
            let response = error_response(&e);
            assert_eq!(response.status, e.http_status(), "{e:?}");
            assert_eq!(response.code, e.public_code(), "{e:?}");
            assert_eq!(
                response.body,
                format!(r#"{{"error":"{}"}}"#, e.public_code())
            );
            assert!(!response.body.contains(&id.to_string()));
            assert_eq!(response.www_authenticate, None);
        }
    }

    #[test]
    fn an_unknown_code_is_an_internal_error() {
        assert_eq!(
            ErrorResponse::new(404, None, "made_up"),
            ErrorResponse::INTERNAL_ERROR
        );
        assert_eq!(
            Refusal::Failed(VerifyError::Failed(Error::Incomplete)).response(),
            ErrorResponse::INTERNAL_ERROR
        );
    }
}
