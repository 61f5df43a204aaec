//! The `http` crate's types (shared by hyper, axum, tonic and reqwest):
//! [`Headers`] for its request types, and [`ErrorResponse::to_http`].

use super::headers::{CONTENT_TYPE, Headers, JSON, WWW_AUTHENTICATE};
use super::refusal::ErrorResponse;
use crate::origin::HeaderField;
use ::http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};

impl Headers for HeaderMap {
    fn field(&self, name: &str) -> HeaderField<'_> {
        // The names this module asks for, pre-parsed: a lookup by
        // `HeaderName` skips parsing and lower-casing the name.
        let known = match name {
            super::AUTHORIZATION => Some(::http::header::AUTHORIZATION),
            super::ORIGIN => Some(::http::header::ORIGIN),
            super::REFERER => Some(::http::header::REFERER),
            super::FORWARDED => Some(::http::header::FORWARDED),
            super::CONTENT_LENGTH => Some(::http::header::CONTENT_LENGTH),
            super::API_KEY => Some(HeaderName::from_static(super::API_KEY)),
            super::PROCESSING_KEY => Some(HeaderName::from_static(super::PROCESSING_KEY)),
            super::PROCESSING_SIGNATURE => {
                Some(HeaderName::from_static(super::PROCESSING_SIGNATURE))
            }
            super::PROCESSING_TIMESTAMP => {
                Some(HeaderName::from_static(super::PROCESSING_TIMESTAMP))
            }
            super::PROCESSING_NONCE => Some(HeaderName::from_static(super::PROCESSING_NONCE)),
            super::X_FORWARDED_FOR => Some(HeaderName::from_static(super::X_FORWARDED_FOR)),
            _ => None,
        };
        let values = match known {
            Some(name) => self.get_all(name),
            None => self.get_all(name),
        };
        HeaderField::from_values(values.iter().map(HeaderValue::as_bytes))
    }
}

impl Headers for ::http::request::Parts {
    fn field(&self, name: &str) -> HeaderField<'_> {
        self.headers.field(name)
    }
}

impl<B> Headers for Request<B> {
    fn field(&self, name: &str) -> HeaderField<'_> {
        self.headers().field(name)
    }
}

impl ErrorResponse {
    /// This answer as an `http::Response` with a body built from the JSON
    /// text (`axum::body::Body`, `String`, `http_body_util::Full<Bytes>`,
    /// …), `Content-Type: application/json` and, where due,
    /// `WWW-Authenticate`.
    ///
    /// ```
    /// # use api_keys::http::Refusal;
    /// let response: http::Response<String> = Refusal::MissingCredentials.response().to_http();
    /// assert_eq!(response.status(), 401);
    /// assert_eq!(response.headers()["www-authenticate"], "Bearer");
    /// assert_eq!(response.body(), r#"{"error":"invalid_api_key"}"#);
    /// ```
    #[must_use]
    pub fn to_http<B: From<&'static str>>(&self) -> Response<B> {
        let mut response = Response::new(B::from(self.body));
        *response.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let headers = response.headers_mut();
        headers.insert(
            HeaderName::from_static(CONTENT_TYPE),
            HeaderValue::from_static(JSON),
        );
        if let Some(challenge) = self.www_authenticate {
            headers.insert(
                HeaderName::from_static(WWW_AUTHENTICATE),
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;
    use crate::http::{Presented, Refusal};
    use crate::ip::TrustedProxies;
    use crate::{OriginRefusal, Rejection};

    #[test]
    fn header_maps_see_repeats_and_any_case() {
        let mut map = HeaderMap::new();
        map.append("x-api-key", HeaderValue::from_static("a"));
        map.append("X-Api-Key", HeaderValue::from_static("b"));
        map.append("Origin", HeaderValue::from_static("https://a.example"));
        assert_eq!(map.field("x-api-key"), HeaderField::Repeated);
        assert_eq!(
            map.field("origin"),
            HeaderField::Single(b"https://a.example")
        );
        assert_eq!(map.field("not a name"), HeaderField::Absent);
        // Every name the module asks for, pre-parsed or not, in any case.
        for name in [
            crate::http::AUTHORIZATION,
            crate::http::API_KEY,
            crate::http::PROCESSING_KEY,
            crate::http::PROCESSING_SIGNATURE,
            crate::http::PROCESSING_TIMESTAMP,
            crate::http::PROCESSING_NONCE,
            crate::http::ORIGIN,
            crate::http::REFERER,
            crate::http::X_FORWARDED_FOR,
            crate::http::FORWARDED,
            crate::http::CONTENT_LENGTH,
            "x-other",
        ] {
            let mut map = HeaderMap::new();
            map.append(
                HeaderName::from_bytes(name.to_ascii_uppercase().as_bytes()).unwrap(),
                HeaderValue::from_static("v"),
            );
            assert_eq!(map.field(name), HeaderField::Single(b"v"), "{name}");
        }
        let request = Request::builder()
            .header("authorization", "Bearer t")
            .body(())
            .unwrap();
        assert_eq!(
            request.field("authorization"),
            HeaderField::Single(b"Bearer t")
        );
        let (parts, ()) = request.into_parts();
        assert_eq!(
            parts.field("authorization"),
            HeaderField::Single(b"Bearer t")
        );
        let presented =
            Presented::from_headers(&parts, "GET", "/", None, &TrustedProxies::none()).unwrap();
        assert!(!presented.needs_body());
    }

    #[test]
    fn responses_carry_status_challenge_and_json() {
        for (refusal, challenge) in [
            (Refusal::MissingCredentials, Some("Bearer")),
            (
                Refusal::Rejected(Rejection::OriginNotAllowed(OriginRefusal::Missing)),
                None,
            ),
        ] {
            let want = refusal.response();
            let got: Response<String> = want.to_http();
            assert_eq!(got.status().as_u16(), want.status);
            assert_eq!(got.headers()["content-type"], "application/json");
            assert_eq!(
                got.headers()
                    .get("www-authenticate")
                    .map(|v| v.to_str().unwrap()),
                challenge
            );
            assert_eq!(got.body(), want.body);
        }
    }
}
