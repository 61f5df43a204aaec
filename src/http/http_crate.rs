//! The `http` crate's types (shared by hyper, axum, tonic and reqwest):
//! [`Headers`] for its request types, [`ErrorResponse::to_http`] and
//! [`SignedHeaders::apply_to`].

use super::headers::{CONTENT_TYPE, Headers, JSON, WWW_AUTHENTICATE};
use super::refusal::ErrorResponse;
use crate::origin::HeaderField;
use crate::signing::SignedHeaders;
use ::http::header::InvalidHeaderValue;
use ::http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};

#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
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

#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl Headers for ::http::request::Parts {
    fn field(&self, name: &str) -> HeaderField<'_> {
        self.headers.field(name)
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl<B> Headers for Request<B> {
    fn field(&self, name: &str) -> HeaderField<'_> {
        self.headers().field(name)
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
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

#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl SignedHeaders {
    /// Sets the signed-request headers on an `http` request's header map
    /// (reqwest, hyper, …): `X-Processing-Key`, `X-Processing-Signature` and,
    /// in the replay-protected mode, `X-Processing-Timestamp` and
    /// `X-Processing-Nonce`, replacing any already there. The signature is
    /// marked sensitive (kept out of HTTP/2 header compression tables).
    ///
    /// ```
    /// use api_keys::RequestSigner;
    /// # let token = api_keys::KeyFormat::default()
    /// #     .generate(api_keys::KeyKind::Secret, api_keys::Environment::Live)?.token;
    /// let signer = RequestSigner::for_token(token.expose_secret())?;
    /// let body = br#"{"currency":"BTC"}"#;
    /// let mut request = http::Request::post("/v2/withdrawal/crypto").body(body.to_vec())?;
    /// signer.sign(body).apply_to(request.headers_mut())?;
    /// assert_eq!(request.headers()["x-processing-signature"].len(), 128);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`InvalidHeaderValue`] when a field holds a byte a header value cannot
    /// carry: never for headers made by [`RequestSigner`](crate::RequestSigner),
    /// only for hand-edited ones. The map is then left unchanged.
    pub fn apply_to(&self, headers: &mut HeaderMap) -> Result<(), InvalidHeaderValue> {
        let mut values = Vec::with_capacity(4);
        for (name, value) in self.pairs() {
            let mut value = HeaderValue::from_str(value)?;
            if name == crate::signing::SIGNATURE_HEADER {
                value.set_sensitive(true);
            }
            values.push((HeaderName::from_static(lower(name)), value));
        }
        for (name, value) in values {
            headers.insert(name, value);
        }
        Ok(())
    }
}

/// The lower-case spelling of a signing header name (`HeaderName` wants it).
fn lower(name: &'static str) -> &'static str {
    match name {
        crate::signing::KEY_HEADER => super::PROCESSING_KEY,
        crate::signing::SIGNATURE_HEADER => super::PROCESSING_SIGNATURE,
        crate::signing::TIMESTAMP_HEADER => super::PROCESSING_TIMESTAMP,
        _ => super::PROCESSING_NONCE,
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
    fn signed_headers_apply_to_a_header_map() {
        let signer = crate::RequestSigner::new("4oqXG47O0q0hcARxIYNCAG", b"secret").unwrap();
        let mut map = HeaderMap::new();
        map.insert("x-processing-key", HeaderValue::from_static("stale"));
        let headers = signer.sign(b"{}");
        headers.apply_to(&mut map).unwrap();
        assert_eq!(map.len(), 2);
        assert_eq!(map["x-processing-key"], "4oqXG47O0q0hcARxIYNCAG");
        assert_eq!(map["x-processing-signature"], headers.signature.as_str());
        assert!(map["x-processing-signature"].is_sensitive());
        // The replay-protected mode adds its two headers.
        let replay = crate::signing::ReplayRequest {
            timestamp: time::UtcDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
            nonce: "3f9a1c0e5b7d4a2f8e6c1b0a9d8e7f6c",
            method: "POST",
            path: "/x",
        };
        let headers = signer.sign_replay_protected(&replay, b"{}").unwrap();
        headers.apply_to(&mut map).unwrap();
        assert_eq!(map.len(), 4);
        assert_eq!(map["x-processing-timestamp"], "1700000000");
        assert_eq!(map["x-processing-nonce"], replay.nonce);
        // A hand-edited value that no header can carry changes nothing.
        let mut bad = headers.clone();
        bad.key = "line\nbreak".into();
        let mut fresh = HeaderMap::new();
        assert!(bad.apply_to(&mut fresh).is_err());
        assert!(fresh.is_empty());
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
