//! HMAC-SHA512 request signing, compatible with CoinsPaid / CryptoProcessing.
//!
//! # The scheme (vendor-compatible mode, the default)
//!
//! The client sends two headers:
//!
//! * [`KEY_HEADER`] (`X-Processing-Key`): the public key id, which tells the server
//!   which secret to use;
//! * [`SIGNATURE_HEADER`] (`X-Processing-Signature`): HMAC-SHA512 of the **exact raw
//!   request body**, keyed with the secret (the bytes of the token string the user
//!   received, e.g. `sk_live_…`, as-is), as 128 lowercase hex characters.
//!
//! The secret never travels on the wire. The server keeps it sealed (see
//! [`crate::sealing`]), unseals it, builds a [`SigningKey`] once (the HMAC key schedule
//! is absorbed there) and checks each request against it.
//!
//! Verification decodes the header to exactly 64 bytes before comparing in constant time
//! (`Mac::verify_slice`). Anything else is refused as malformed: empty, truncated or
//! over-long values, odd lengths, non-hex characters, base64, a `sha512=` prefix,
//! surrounding whitespace, several comma-joined values. Uppercase hex is refused by
//! default ([`HexCase::LowerOnly`], as the vendor documents lowercase) and accepted only
//! when a host opts in with [`HexCase::AnyCase`].
//!
//! Bodies are hashed where they lie (never copied) and bounded by
//! [`SignatureConfig::max_body_len`] (1 MiB by default): one-shot verification checks
//! the length before hashing; [`BodyVerifier`] stops hashing once the limit is passed.
//!
//! ## Replay exposure of the vendor-compatible mode
//!
//! A body-only signature covers neither a time nor the request line: **a captured
//! request can be replayed verbatim**, as often as the attacker likes, and its body can
//! be sent to any endpoint that accepts the same key. Hosts that use this mode must make
//! the operations idempotent on a business identifier inside the signed body (for
//! CoinsPaid, `foreign_id`): the second request with the same identifier must not
//! execute again. Prefer the replay-protected mode below for new integrations.
//!
//! # Replay-protected mode (opt-in)
//!
//! The client also sends [`TIMESTAMP_HEADER`] (integer seconds since the Unix epoch) and
//! [`NONCE_HEADER`] (16 to 64 characters of `[A-Za-z0-9_-]`, unique per request), and
//! the MAC covers this canonical message:
//!
//! ```text
//! "api-keys-v1" LF timestamp LF nonce LF method LF path LF body
//! ```
//!
//! where LF is one `\n` byte and:
//!
//! * `timestamp` is canonical: ASCII digits only, no sign, no leading zero (except `0`
//!   itself), no whitespace, at most 19 digits, at most `i64::MAX`;
//! * `nonce` is 16–64 bytes of `A–Z a–z 0–9 _ -`;
//! * `method` is the request method as an uppercase token (`POST`), or empty;
//! * `path` is the request target as sent (`/v2/withdrawal/crypto?x=1`), without control
//!   characters, or empty;
//! * `body` is the exact raw body.
//!
//! None of the first five fields can contain `\n`, so the message splits back into its
//! fields one way only. **Binding method and path is optional**: a host that does not
//! bind them passes empty strings on both sides, and the message then has empty lines
//! in their place (`…nonce\n\n\nbody`). Binding them is recommended: it stops a signed
//! body from being replayed against another endpoint.
//!
//! The server ([`SignatureConfig::verify_replay_protected`]) checks, in this order:
//! the headers' syntax (cheap, no hashing), that `|now − timestamp| ≤ tolerance`
//! (symmetric, 300 s by default, 0 meaning "exactly now", compared in whole seconds with
//! checked arithmetic), the MAC, and only then records the nonce in a
//! [`ReplayCache`] scoped to the key id — so forged requests can neither consume a
//! legitimate nonce nor fill the cache. A nonce already recorded for the key is refused
//! as [`SignatureRefusal::ReplayedNonce`]. The nonce is remembered until the timestamp
//! has left the window, after which the timestamp check alone refuses the request.
//!
//! A verifier with more checks to make (the key's status, time and policy, as
//! [`KeyManager::verify_signed`](crate::KeyManager::verify_signed) does) checks the
//! signature with [`SignatureConfig::verify_without_recording`] (or
//! [`ReplayBodyVerifier::check_signature`] when streaming) and
//! [`record`](UnrecordedNonce::record)s the nonce only once the request passed them
//! all: a refused request never spends cache space. Recording checks the window
//! again, at the instant passed to it (never older than the one the verification
//! started at), with that same instant given to the cache: pass the clock reading
//! taken after the key lookup and the body, so a nonce whose entry was purged in the
//! meantime is refused as stale, never accepted twice.
//!
//! A key should be used in one mode only: a server that accepts a key in both modes
//! lets a replay-protected request be presented again as a body-only request whose body
//! is the whole canonical message. [`SignatureConfig::replay`] selects the mode for
//! [`SignatureConfig::verify_request`].
//!
//! # Clients
//!
//! A client holding a token issued by this crate signs with
//! [`RequestSigner::for_token`]: the key id for [`KEY_HEADER`] is read from the token,
//! and the token's text is the HMAC key.
//!
//! ```
//! use api_keys::RequestSigner;
//!
//! # fn token_from_env() -> String { api_keys::KeyFormat::default()
//! #     .generate(api_keys::KeyKind::Secret, api_keys::Environment::Live).unwrap()
//! #     .token.expose_secret().to_owned() }
//! let token: String = token_from_env(); // e.g. std::env::var("PAYMENTS_API_KEY")
//! let signer = RequestSigner::for_token(&token)?;
//! let headers = signer.sign(br#"{"currency":"BTC"}"#);
//! assert_eq!(headers.signature.len(), 128);
//! # Ok::<(), api_keys::signing::SignatureError>(())
//! ```
//!
//! # Example: both sides, without a key manager
//!
//! ```
//! use api_keys::replay::MemoryReplayCache;
//! use api_keys::signing::{
//!     ReplayConfig, ReplayRequest, RequestHead, RequestSigner, SignatureConfig, SigningKey,
//! };
//! use time::UtcDateTime;
//!
//! let token = b"sk_live_4eC39HqLyjWDarjtT1zdp7dc";
//! let body = br#"{"currency":"BTC","foreign_id":"123456"}"#;
//!
//! // Client, vendor-compatible mode.
//! let signer = RequestSigner::new("key_01HZX3K7", token)?;
//! let headers = signer.sign(body);
//! assert_eq!(headers.signature.len(), 128);
//!
//! // Server: prepare the key once, verify each request.
//! let key = SigningKey::new(token)?;
//! key.verify(body, headers.signature.as_bytes())?;
//!
//! // Replay-protected mode.
//! let now = UtcDateTime::from_unix_timestamp(1_700_000_000)?;
//! let request = ReplayRequest {
//!     timestamp: now,
//!     nonce: "3f9a1c0e5b7d4a2f8e6c1b0a9d8e7f6c",
//!     method: "POST",
//!     path: "/v2/withdrawal/crypto",
//! };
//! let headers = signer.sign_replay_protected(&request, body)?;
//!
//! let config = SignatureConfig { replay: Some(ReplayConfig::default()), ..Default::default() };
//! let cache = MemoryReplayCache::default();
//! let head = RequestHead {
//!     method: b"POST",
//!     path: b"/v2/withdrawal/crypto",
//!     signature: headers.signature.as_bytes(),
//!     timestamp: headers.timestamp.as_deref().unwrap_or_default().as_bytes(),
//!     nonce: headers.nonce.as_deref().unwrap_or_default().as_bytes(),
//! };
//! config.verify_request(&key, &head, body, now, &cache, b"key_01HZX3K7")?;
//! // The same request again is a replay.
//! assert!(config.verify_request(&key, &head, body, now, &cache, b"key_01HZX3K7").is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha512;
use time::UtcDateTime;

use crate::replay::{ReplayCache, ReplayCacheError};

type HmacSha512 = Hmac<Sha512>;

/// Header carrying the public key id.
pub const KEY_HEADER: &str = "X-Processing-Key";
/// Header carrying the signature: 128 lowercase hex characters.
pub const SIGNATURE_HEADER: &str = "X-Processing-Signature";
/// Header carrying the timestamp, in replay-protected mode.
pub const TIMESTAMP_HEADER: &str = "X-Processing-Timestamp";
/// Header carrying the nonce, in replay-protected mode.
pub const NONCE_HEADER: &str = "X-Processing-Nonce";

/// Length in bytes of an HMAC-SHA512 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Length in characters of a hex-encoded signature.
pub const SIGNATURE_HEX_LEN: usize = 2 * SIGNATURE_LEN;
/// Default body size limit: 1 MiB.
pub const DEFAULT_MAX_BODY_LEN: usize = 1024 * 1024;
/// Default timestamp tolerance in replay-protected mode: 300 seconds either way.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);
/// First line of the replay-protected canonical message (the format version).
pub const REPLAY_LABEL: &str = "api-keys-v1";
/// Minimum length of a replay-protection nonce.
pub const NONCE_MIN_LEN: usize = 16;
/// Maximum length of a replay-protection nonce.
pub const NONCE_MAX_LEN: usize = 64;
/// Maximum number of digits of a replay-protection timestamp.
pub const TIMESTAMP_MAX_DIGITS: usize = 19;

/// HMAC-SHA512 keyed state prepared once per key (ipad/opad absorbed), cloned per
/// request.
///
/// Build it once when the key is loaded (unsealed) and keep it with the key: signing
/// and verifying then cost only SHA-512 over the message. The secret itself is not kept.
///
/// `Debug` prints `SigningKey([redacted])`. There is no `PartialEq`. `Clone` copies the
/// prepared state (needed internally, and to share a key between workers). The prepared
/// state is as sensitive as the secret (it can forge signatures): it is wiped on drop
/// only when the `hmac` crate's `zeroize` feature is enabled in the dependency graph.
#[derive(Clone)]
pub struct SigningKey {
    mac: HmacSha512,
}

impl SigningKey {
    /// Prepares the keyed HMAC-SHA512 state for `secret` (the token's bytes, as-is).
    ///
    /// # Errors
    ///
    /// [`SignatureError::EmptySecret`] when `secret` is empty.
    pub fn new(secret: &[u8]) -> Result<Self, SignatureError> {
        if secret.is_empty() {
            return Err(SignatureError::EmptySecret);
        }
        let mac = <HmacSha512 as KeyInit>::new_from_slice(secret)
            .map_err(|_| SignatureError::InvalidSecret)?;
        Ok(Self { mac })
    }

    /// The vendor-compatible signature: HMAC-SHA512 of `body`.
    #[must_use]
    pub fn sign(&self, body: &[u8]) -> Signature {
        let mut mac = self.mac.clone();
        mac.update(body);
        Signature(finalize(mac))
    }

    /// The replay-protected signature of `body` for `request` (see the
    /// [module documentation](self) for the canonical message).
    ///
    /// # Errors
    ///
    /// [`SignatureError::InvalidTimestamp`], [`InvalidNonce`](SignatureError::InvalidNonce),
    /// [`InvalidMethod`](SignatureError::InvalidMethod) or
    /// [`InvalidPath`](SignatureError::InvalidPath) when a field of `request` cannot be
    /// signed unambiguously (the server would refuse it).
    pub fn sign_replay_protected(
        &self,
        request: &ReplayRequest<'_>,
        body: &[u8],
    ) -> Result<Signature, SignatureError> {
        let timestamp = request.canonical_timestamp()?;
        Ok(self.sign_canonical(request, &timestamp, body))
    }

    /// Checks `header` (the raw `X-Processing-Signature` value) against `body` with the
    /// default [`SignatureConfig`] (1 MiB limit, lowercase hex only).
    ///
    /// # Errors
    ///
    /// See [`SignatureConfig::verify`].
    pub fn verify(&self, body: &[u8], header: &[u8]) -> Result<(), SignatureRefusal> {
        SignatureConfig::default().verify(self, body, header)
    }

    /// A streaming verifier with the default [`SignatureConfig`]: feed the body with
    /// [`BodyVerifier::update`], then call [`BodyVerifier::finish`].
    #[must_use]
    pub fn verifier(&self) -> BodyVerifier {
        SignatureConfig::default().verifier(self)
    }

    /// The state after the canonical lines of the replay-protected message.
    fn replay_mac(&self, timestamp: &[u8], nonce: &[u8], method: &[u8], path: &[u8]) -> HmacSha512 {
        let mut mac = self.mac.clone();
        for line in [REPLAY_LABEL.as_bytes(), timestamp, nonce, method, path] {
            mac.update(line);
            mac.update(b"\n");
        }
        mac
    }

    /// Signs an already validated request (`timestamp` is its canonical form).
    fn sign_canonical(
        &self,
        request: &ReplayRequest<'_>,
        timestamp: &str,
        body: &[u8],
    ) -> Signature {
        let mut mac = self.replay_mac(
            timestamp.as_bytes(),
            request.nonce.as_bytes(),
            request.method.as_bytes(),
            request.path.as_bytes(),
        );
        mac.update(body);
        Signature(finalize(mac))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey([redacted])")
    }
}

fn finalize(mac: HmacSha512) -> [u8; SIGNATURE_LEN] {
    mac.finalize().into_bytes().into()
}

/// An HMAC-SHA512 signature.
///
/// Not secret, but `Debug` shows only its first 8 hex characters to keep logs short.
/// Compare signatures with [`SigningKey::verify`], never with `==` on hex strings.
#[derive(Clone)]
pub struct Signature([u8; SIGNATURE_LEN]);

impl Signature {
    /// The header value: 128 lowercase hex characters.
    #[must_use]
    pub fn to_hex(&self) -> String {
        let mut buf = [0u8; SIGNATURE_HEX_LEN];
        base16ct::lower::encode_str(&self.0, &mut buf)
            .map(str::to_owned)
            .unwrap_or_default()
    }

    /// The 64 raw bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; SIGNATURE_LEN] {
        &self.0
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, ..] = self.0;
        write!(f, "Signature({a:02x}{b:02x}{c:02x}{d:02x}…)")
    }
}

/// Which hex letters a signature header may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HexCase {
    /// Only `0-9a-f` (the default: the vendor documents lowercase hex).
    #[default]
    LowerOnly,
    /// `0-9a-f` and `A-F`, for hosts whose clients send uppercase hex (opt-in).
    AnyCase,
}

/// Decodes a raw `X-Processing-Signature` value into the 64 signature bytes.
///
/// Exactly 128 hex characters are accepted, nothing around them.
///
/// # Errors
///
/// * [`SignatureRefusal::Missing`] when `header` is empty;
/// * [`SignatureRefusal::Malformed`] for any other length, a non-hex character, or an
///   uppercase letter under [`HexCase::LowerOnly`].
pub fn parse_signature_header(
    header: &[u8],
    policy: HexCase,
) -> Result<[u8; SIGNATURE_LEN], SignatureRefusal> {
    if header.is_empty() {
        return Err(SignatureRefusal::Missing);
    }
    if header.len() != SIGNATURE_HEX_LEN {
        return Err(SignatureRefusal::Malformed);
    }
    let mut out = [0u8; SIGNATURE_LEN];
    let decoded = match policy {
        HexCase::LowerOnly => base16ct::lower::decode(header, &mut out),
        HexCase::AnyCase => base16ct::mixed::decode(header, &mut out),
    };
    // Length checked again: a short tag must never reach the comparison.
    if decoded.is_ok_and(|bytes| bytes.len() == SIGNATURE_LEN) {
        Ok(out)
    } else {
        Err(SignatureRefusal::Malformed)
    }
}

/// Why a signed request was refused. A verdict on the request (HTTP 4xx), not a failure
/// of the service; carries no header value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureRefusal {
    /// A required header (signature, timestamp or nonce) is absent or empty.
    Missing,
    /// The signature header is not exactly 128 hex characters (of the accepted case).
    Malformed,
    /// The signature does not match the message.
    Mismatch,
    /// The body is longer than [`SignatureConfig::max_body_len`].
    BodyTooLarge,
    /// Replay mode: the timestamp is outside the tolerance window around `now`.
    StaleTimestamp,
    /// Replay mode: the timestamp is not canonical integer seconds.
    MalformedTimestamp,
    /// Replay mode: the nonce is not 16–64 characters of `[A-Za-z0-9_-]`.
    MalformedNonce,
    /// Replay mode: the nonce was already used with this key inside the window.
    ReplayedNonce,
    /// Replay mode: the method passed by the host is not an uppercase token.
    MalformedMethod,
    /// Replay mode: the path passed by the host contains a control character.
    MalformedPath,
}

impl SignatureRefusal {
    /// A stable identifier for logs and metrics, e.g. `"signature_mismatch"`.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Missing => "signature_missing",
            Self::Malformed => "signature_malformed",
            Self::Mismatch => "signature_mismatch",
            Self::BodyTooLarge => "body_too_large",
            Self::StaleTimestamp => "timestamp_stale",
            Self::MalformedTimestamp => "timestamp_malformed",
            Self::MalformedNonce => "nonce_malformed",
            Self::ReplayedNonce => "nonce_replayed",
            Self::MalformedMethod => "method_malformed",
            Self::MalformedPath => "path_malformed",
        }
    }

    /// The HTTP status to answer with: 413 for [`BodyTooLarge`](Self::BodyTooLarge),
    /// 400 for a method or path the host could not bind, 401 otherwise.
    #[must_use]
    pub fn http_status(&self) -> u16 {
        match self {
            Self::BodyTooLarge => 413,
            Self::MalformedMethod | Self::MalformedPath => 400,
            _ => 401,
        }
    }
}

impl fmt::Display for SignatureRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for SignatureRefusal {}

/// A signing key or a request to sign could not be used. Carries no secret and no
/// header value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The secret is empty.
    #[error("the signing secret is empty")]
    EmptySecret,
    /// The HMAC implementation refused the secret (not expected: HMAC takes any length).
    #[error("the signing secret cannot key HMAC-SHA512")]
    InvalidSecret,
    /// The key id is empty or not visible ASCII, so it cannot be sent in a header.
    #[error("the key id must be non-empty visible ASCII")]
    InvalidKeyId,
    /// The timestamp is before the Unix epoch.
    #[error("the timestamp must not be before 1970-01-01T00:00:00Z")]
    InvalidTimestamp,
    /// The nonce is not 16–64 characters of `[A-Za-z0-9_-]`.
    #[error("the nonce must be 16 to 64 characters of [A-Za-z0-9_-]")]
    InvalidNonce,
    /// The method is not an uppercase token.
    #[error("the method must be an uppercase token")]
    InvalidMethod,
    /// The path contains a control character.
    #[error("the path must not contain control characters")]
    InvalidPath,
    /// The random number generator failed to produce a nonce.
    #[error("the random number generator failed")]
    Randomness,
    /// [`RequestSigner::for_token`] was given a string that is not a token of the key
    /// format (wrong prefix, length, alphabet or checksum). The string is not echoed.
    #[error("not a token of this key format")]
    MalformedToken,
}

/// Replay-protected verification did not accept the request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayVerifyError {
    /// The request is refused (HTTP 4xx; see [`SignatureRefusal::http_status`]).
    #[error("signed request refused: {0}")]
    Refused(#[from] SignatureRefusal),
    /// The replay cache failed, so the nonce could not be checked: the request is
    /// refused too (fail closed), but this is a failure of the service (HTTP 503).
    #[error("replay cache failed")]
    Cache(#[from] ReplayCacheError),
}

impl ReplayVerifyError {
    /// The refusal, when the request itself was refused.
    #[must_use]
    pub fn refusal(&self) -> Option<SignatureRefusal> {
        match self {
            Self::Refused(refusal) => Some(*refusal),
            Self::Cache(_) => None,
        }
    }
}

/// Replay-protected mode settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayConfig {
    /// How far the timestamp may be from `now`, either way. Default: 300 seconds
    /// ([`DEFAULT_TOLERANCE`]). Whole seconds (the sub-second part is ignored); zero
    /// accepts only a timestamp equal to `now` (never "no check").
    pub tolerance: Duration,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        Self {
            tolerance: DEFAULT_TOLERANCE,
        }
    }
}

/// Server-side verification settings. Every field has a safe default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignatureConfig {
    /// Largest accepted body, in bytes. Default: 1 MiB ([`DEFAULT_MAX_BODY_LEN`]).
    pub max_body_len: usize,
    /// Accepted hex case in the signature header. Default: [`HexCase::LowerOnly`].
    pub hex_case: HexCase,
    /// `None` (the default): vendor-compatible body-only mode. `Some`: requests must use
    /// the replay-protected mode with these settings. Selects the mode of
    /// [`verify_request`](Self::verify_request); the mode-specific methods ignore it,
    /// except that [`verify_replay_protected`](Self::verify_replay_protected) takes its
    /// tolerance from it (the default tolerance when `None`).
    pub replay: Option<ReplayConfig>,
}

impl Default for SignatureConfig {
    fn default() -> Self {
        Self {
            max_body_len: DEFAULT_MAX_BODY_LEN,
            hex_case: HexCase::LowerOnly,
            replay: None,
        }
    }
}

/// What the server received for a signed request, as raw bytes (an absent header is an
/// empty slice).
#[derive(Clone, Copy)]
pub struct RequestHead<'a> {
    /// The request method (`POST`), or empty when the host does not bind it.
    pub method: &'a [u8],
    /// The request target (`/v2/withdrawal/crypto?x=1`), or empty when the host does not
    /// bind it.
    pub path: &'a [u8],
    /// The raw [`SIGNATURE_HEADER`] value.
    pub signature: &'a [u8],
    /// The raw [`TIMESTAMP_HEADER`] value (replay-protected mode).
    pub timestamp: &'a [u8],
    /// The raw [`NONCE_HEADER`] value (replay-protected mode).
    pub nonce: &'a [u8],
}

impl fmt::Debug for RequestHead<'_> {
    /// Shows the method and the path's length only: header values are left out, and so
    /// is the path, whose query string may carry something sensitive.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestHead")
            .field("method", &String::from_utf8_lossy(self.method))
            .field("path_len", &self.path.len())
            .finish_non_exhaustive()
    }
}

impl SignatureConfig {
    /// Checks a vendor-compatible (body-only) signature.
    ///
    /// Order: the header is decoded (no hashing for a malformed one), the body length is
    /// checked, then the MAC is compared in constant time.
    ///
    /// # Errors
    ///
    /// [`SignatureRefusal::Missing`], [`Malformed`](SignatureRefusal::Malformed),
    /// [`BodyTooLarge`](SignatureRefusal::BodyTooLarge) or
    /// [`Mismatch`](SignatureRefusal::Mismatch).
    pub fn verify(
        &self,
        key: &SigningKey,
        body: &[u8],
        header: &[u8],
    ) -> Result<(), SignatureRefusal> {
        let tag = parse_signature_header(header, self.hex_case)?;
        if body.len() > self.max_body_len {
            return Err(SignatureRefusal::BodyTooLarge);
        }
        let mut verifier = self.verifier(key);
        verifier.update(body);
        verifier.finish_decoded(&tag)
    }

    /// A streaming verifier for a vendor-compatible signature, for bodies that arrive
    /// in chunks.
    #[must_use]
    pub fn verifier(&self, key: &SigningKey) -> BodyVerifier {
        self.body_verifier(key.mac.clone())
    }

    /// A body verifier continuing from `mac` under this configuration's limits.
    fn body_verifier(&self, mac: HmacSha512) -> BodyVerifier {
        BodyVerifier {
            mac,
            seen: 0,
            max: u64::try_from(self.max_body_len).unwrap_or(u64::MAX),
            hex_case: self.hex_case,
        }
    }

    /// Checks a replay-protected request: headers' syntax, timestamp window, MAC, then
    /// records the nonce in `cache` under `scope` (the key id bytes).
    ///
    /// `now` is the instant of the request, read once by the caller.
    ///
    /// # Errors
    ///
    /// * [`ReplayVerifyError::Refused`] with [`SignatureRefusal::Missing`],
    ///   [`Malformed`](SignatureRefusal::Malformed),
    ///   [`MalformedTimestamp`](SignatureRefusal::MalformedTimestamp),
    ///   [`MalformedNonce`](SignatureRefusal::MalformedNonce),
    ///   [`MalformedMethod`](SignatureRefusal::MalformedMethod),
    ///   [`MalformedPath`](SignatureRefusal::MalformedPath),
    ///   [`StaleTimestamp`](SignatureRefusal::StaleTimestamp),
    ///   [`BodyTooLarge`](SignatureRefusal::BodyTooLarge),
    ///   [`Mismatch`](SignatureRefusal::Mismatch) or
    ///   [`ReplayedNonce`](SignatureRefusal::ReplayedNonce);
    /// * [`ReplayVerifyError::Cache`] when the cache cannot check or record the nonce
    ///   (the request is refused: fail closed).
    pub fn verify_replay_protected(
        &self,
        key: &SigningKey,
        head: &RequestHead<'_>,
        body: &[u8],
        now: UtcDateTime,
        cache: &dyn ReplayCache,
        scope: &[u8],
    ) -> Result<(), ReplayVerifyError> {
        let mut verifier = self.replay_verifier(key, head, now)?;
        if body.len() > self.max_body_len {
            return Err(SignatureRefusal::BodyTooLarge.into());
        }
        verifier.update(body);
        verifier.finish(cache, scope, now)
    }

    /// Checks a request's signature in the mode selected by [`replay`](Self::replay)
    /// without recording anything: for a verifier that has more checks to make (the
    /// key's status, time and policy) before the request may spend replay-cache space.
    /// Returns the nonce to [`record`](UnrecordedNonce::record) once every other check
    /// has passed, or `None` in the vendor-compatible mode (nothing to record).
    ///
    /// # Errors
    ///
    /// The refusals of [`verify`](Self::verify) or
    /// [`verify_replay_protected`](Self::verify_replay_protected), except
    /// [`ReplayedNonce`](SignatureRefusal::ReplayedNonce), which only recording finds.
    pub fn verify_without_recording<'a>(
        &self,
        key: &SigningKey,
        head: &RequestHead<'a>,
        body: &[u8],
        now: UtcDateTime,
    ) -> Result<Option<UnrecordedNonce<'a>>, SignatureRefusal> {
        if self.replay.is_none() {
            return self.verify(key, body, head.signature).map(|()| None);
        }
        let mut verifier = self.replay_verifier(key, head, now)?;
        if body.len() > self.max_body_len {
            return Err(SignatureRefusal::BodyTooLarge);
        }
        verifier.update(body);
        verifier.check_signature().map(Some)
    }

    /// Checks a request in the mode selected by [`replay`](Self::replay): body-only when
    /// `None` (only `head.signature` is used), replay-protected when `Some`.
    ///
    /// # Errors
    ///
    /// Those of [`verify`](Self::verify) or
    /// [`verify_replay_protected`](Self::verify_replay_protected).
    pub fn verify_request(
        &self,
        key: &SigningKey,
        head: &RequestHead<'_>,
        body: &[u8],
        now: UtcDateTime,
        cache: &dyn ReplayCache,
        scope: &[u8],
    ) -> Result<(), ReplayVerifyError> {
        match self.replay {
            None => Ok(self.verify(key, body, head.signature)?),
            Some(_) => self.verify_replay_protected(key, head, body, now, cache, scope),
        }
    }

    /// Starts a streaming replay-protected verification: checks the headers' syntax and
    /// the timestamp window now (before any body byte is read), then returns a verifier
    /// to feed the body to.
    ///
    /// # Errors
    ///
    /// [`SignatureRefusal::Missing`], [`Malformed`](SignatureRefusal::Malformed),
    /// [`MalformedTimestamp`](SignatureRefusal::MalformedTimestamp),
    /// [`MalformedNonce`](SignatureRefusal::MalformedNonce),
    /// [`MalformedMethod`](SignatureRefusal::MalformedMethod),
    /// [`MalformedPath`](SignatureRefusal::MalformedPath) or
    /// [`StaleTimestamp`](SignatureRefusal::StaleTimestamp).
    pub fn replay_verifier<'a>(
        &self,
        key: &SigningKey,
        head: &RequestHead<'a>,
        now: UtcDateTime,
    ) -> Result<ReplayBodyVerifier<'a>, SignatureRefusal> {
        let tag = parse_signature_header(head.signature, self.hex_case)?;
        let timestamp = parse_timestamp(head.timestamp)?;
        let nonce = parse_nonce(head.nonce)?;
        if !is_method(head.method) {
            return Err(SignatureRefusal::MalformedMethod);
        }
        if !is_path(head.path) {
            return Err(SignatureRefusal::MalformedPath);
        }
        let tolerance = self.replay.unwrap_or_default().tolerance;
        check_window(timestamp, now, tolerance)?;
        let mac = key.replay_mac(head.timestamp, head.nonce, head.method, head.path);
        Ok(ReplayBodyVerifier {
            body: self.body_verifier(mac),
            tag,
            nonce: UnrecordedNonce {
                nonce,
                timestamp,
                tolerance,
                checked_at: now,
            },
        })
    }
}

/// Parses a canonical timestamp: 1–19 ASCII digits, no leading zero, at most `i64::MAX`.
fn parse_timestamp(raw: &[u8]) -> Result<i64, SignatureRefusal> {
    match raw {
        [] => Err(SignatureRefusal::Missing),
        [b'0', _, ..] => Err(SignatureRefusal::MalformedTimestamp),
        _ if raw.len() > TIMESTAMP_MAX_DIGITS => Err(SignatureRefusal::MalformedTimestamp),
        _ => raw
            .iter()
            .try_fold(0i64, |acc, &byte| {
                let digit = byte.is_ascii_digit().then(|| i64::from(byte - b'0'))?;
                acc.checked_mul(10)?.checked_add(digit)
            })
            .ok_or(SignatureRefusal::MalformedTimestamp),
    }
}

/// Parses a nonce: 16–64 bytes of `[A-Za-z0-9_-]`.
fn parse_nonce(raw: &[u8]) -> Result<&str, SignatureRefusal> {
    if raw.is_empty() {
        return Err(SignatureRefusal::Missing);
    }
    if !is_nonce(raw) {
        return Err(SignatureRefusal::MalformedNonce);
    }
    std::str::from_utf8(raw).map_err(|_| SignatureRefusal::MalformedNonce)
}

fn is_nonce(raw: &[u8]) -> bool {
    (NONCE_MIN_LEN..=NONCE_MAX_LEN).contains(&raw.len())
        && raw
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
}

/// An uppercase HTTP token (RFC 9110 `tchar` without lowercase letters), or empty.
fn is_method(raw: &[u8]) -> bool {
    raw.iter()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(b))
}

/// A request target without control characters (so without `\n`), or empty.
fn is_path(raw: &[u8]) -> bool {
    !raw.iter().any(u8::is_ascii_control)
}

/// Checks `|now − timestamp| ≤ tolerance` in whole seconds; returns until when the
/// nonce must be remembered: the first instant at which the timestamp is stale.
fn check_window(
    timestamp: i64,
    now: UtcDateTime,
    tolerance: Duration,
) -> Result<UtcDateTime, SignatureRefusal> {
    let tolerance = tolerance.as_secs();
    let distance = now
        .unix_timestamp()
        .checked_sub(timestamp)
        .map(i64::unsigned_abs)
        .ok_or(SignatureRefusal::StaleTimestamp)?;
    if distance > tolerance {
        return Err(SignatureRefusal::StaleTimestamp);
    }
    let expires_at = i64::try_from(tolerance)
        .ok()
        .and_then(|tolerance| timestamp.checked_add(tolerance)?.checked_add(1))
        .and_then(|end| UtcDateTime::from_unix_timestamp(end).ok())
        .unwrap_or(UtcDateTime::MAX);
    Ok(expires_at)
}

/// Streaming verification of a vendor-compatible signature.
///
/// Feed the body in chunks with [`update`](Self::update) (nothing is copied), then call
/// [`finish`](Self::finish) with the signature header. Once more than the configured
/// limit has been fed, hashing stops and `finish` returns
/// [`SignatureRefusal::BodyTooLarge`].
pub struct BodyVerifier {
    mac: HmacSha512,
    seen: u64,
    max: u64,
    hex_case: HexCase,
}

impl BodyVerifier {
    /// Absorbs the next chunk of the body.
    pub fn update(&mut self, chunk: &[u8]) {
        let len = u64::try_from(chunk.len()).unwrap_or(u64::MAX);
        self.seen = self.seen.saturating_add(len);
        if self.seen <= self.max {
            self.mac.update(chunk);
        }
    }

    /// The number of body bytes fed so far (saturating).
    #[must_use]
    pub fn bytes_seen(&self) -> u64 {
        self.seen
    }

    /// Checks `header` (the raw `X-Processing-Signature` value) against the body fed.
    ///
    /// # Errors
    ///
    /// [`SignatureRefusal::Missing`], [`Malformed`](SignatureRefusal::Malformed),
    /// [`BodyTooLarge`](SignatureRefusal::BodyTooLarge) or
    /// [`Mismatch`](SignatureRefusal::Mismatch).
    pub fn finish(self, header: &[u8]) -> Result<(), SignatureRefusal> {
        let tag = parse_signature_header(header, self.hex_case)?;
        self.finish_decoded(&tag)
    }

    fn finish_decoded(self, tag: &[u8; SIGNATURE_LEN]) -> Result<(), SignatureRefusal> {
        if self.seen > self.max {
            return Err(SignatureRefusal::BodyTooLarge);
        }
        self.mac
            .verify_slice(tag)
            .map_err(|_| SignatureRefusal::Mismatch)
    }
}

impl fmt::Debug for BodyVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyVerifier")
            .field("bytes_seen", &self.seen)
            .field("max_body_len", &self.max)
            .finish_non_exhaustive()
    }
}

/// Streaming verification of a replay-protected request, created by
/// [`SignatureConfig::replay_verifier`] once the headers and timestamp have been checked.
pub struct ReplayBodyVerifier<'a> {
    body: BodyVerifier,
    tag: [u8; SIGNATURE_LEN],
    nonce: UnrecordedNonce<'a>,
}

impl<'a> ReplayBodyVerifier<'a> {
    /// Absorbs the next chunk of the body.
    pub fn update(&mut self, chunk: &[u8]) {
        self.body.update(chunk);
    }

    /// The number of body bytes fed so far (saturating).
    #[must_use]
    pub fn bytes_seen(&self) -> u64 {
        self.body.bytes_seen()
    }

    /// Checks the MAC and, only if it matches, records the nonce in `cache` under
    /// `scope` (the key id bytes) at `now`: [`check_signature`](Self::check_signature)
    /// then [`UnrecordedNonce::record`].
    ///
    /// `now` is the instant the nonce is recorded, read after the body was received
    /// (and after the key's store lookup): the window is checked again at it, so a
    /// slow body or a long lookup cannot stretch the window past the cache entry's
    /// life.
    ///
    /// # Errors
    ///
    /// * [`ReplayVerifyError::Refused`] with [`SignatureRefusal::BodyTooLarge`],
    ///   [`Mismatch`](SignatureRefusal::Mismatch),
    ///   [`StaleTimestamp`](SignatureRefusal::StaleTimestamp) or
    ///   [`ReplayedNonce`](SignatureRefusal::ReplayedNonce);
    /// * [`ReplayVerifyError::Cache`] when the cache fails (fail closed).
    pub fn finish(
        self,
        cache: &dyn ReplayCache,
        scope: &[u8],
        now: UtcDateTime,
    ) -> Result<(), ReplayVerifyError> {
        self.check_signature()?.record(cache, scope, now)
    }

    /// Checks the MAC only; the nonce is returned unrecorded, to be
    /// [`record`](UnrecordedNonce::record)ed once every other check on the request
    /// (the key's status, time and policy) has passed. A refused request then never
    /// spends replay-cache space.
    ///
    /// # Errors
    ///
    /// [`SignatureRefusal::BodyTooLarge`] or [`Mismatch`](SignatureRefusal::Mismatch).
    pub fn check_signature(self) -> Result<UnrecordedNonce<'a>, SignatureRefusal> {
        self.body.finish_decoded(&self.tag)?;
        Ok(self.nonce)
    }
}

impl fmt::Debug for ReplayBodyVerifier<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayBodyVerifier")
            .field("bytes_seen", &self.body.seen)
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

/// The nonce of a replay-protected request whose signature verified, not yet
/// recorded: from [`ReplayBodyVerifier::check_signature`] or
/// [`SignatureConfig::verify_without_recording`]. Record it with
/// [`record`](Self::record) once the request has passed every other check; until then
/// the request is not accepted (it may still be a replay).
#[must_use = "the request is not accepted until its nonce is recorded"]
pub struct UnrecordedNonce<'a> {
    nonce: &'a str,
    timestamp: i64,
    tolerance: Duration,
    /// When the window was first checked: recording never uses an older instant.
    checked_at: UtcDateTime,
}

impl UnrecordedNonce<'_> {
    /// Records the nonce in `cache` under `scope` (the key id bytes), checking the
    /// window and the cache with one instant: the later of `now` and the instant
    /// the verification started at. An entry is purged only once its expiry has
    /// passed, and the expiry is when the timestamp leaves the window; so a request
    /// whose entry may already be gone is refused as stale, never accepted twice.
    ///
    /// # Errors
    ///
    /// * [`ReplayVerifyError::Refused`] with
    ///   [`StaleTimestamp`](SignatureRefusal::StaleTimestamp) or
    ///   [`ReplayedNonce`](SignatureRefusal::ReplayedNonce);
    /// * [`ReplayVerifyError::Cache`] when the cache fails (fail closed) or the key
    ///   holds its share of the cache ([`ReplayCacheError::ScopeFull`]).
    pub fn record(
        self,
        cache: &dyn ReplayCache,
        scope: &[u8],
        now: UtcDateTime,
    ) -> Result<(), ReplayVerifyError> {
        let now = now.max(self.checked_at);
        let expires_at = check_window(self.timestamp, now, self.tolerance)?;
        if cache.check_and_insert(scope, self.nonce, expires_at, now)? {
            Ok(())
        } else {
            Err(SignatureRefusal::ReplayedNonce.into())
        }
    }
}

impl fmt::Debug for UnrecordedNonce<'_> {
    /// The timestamp only: the nonce is left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnrecordedNonce")
            .field("timestamp", &self.timestamp)
            .finish_non_exhaustive()
    }
}

/// What a client signs in replay-protected mode, besides the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayRequest<'a> {
    /// When the request is signed; sent as whole seconds since the Unix epoch (the
    /// sub-second part is dropped). Must not be before the epoch.
    pub timestamp: UtcDateTime,
    /// A value unique per request: 16–64 characters of `[A-Za-z0-9_-]`
    /// (see [`generate_nonce`]).
    pub nonce: &'a str,
    /// The request method as an uppercase token (`POST`), or `""` when the server does
    /// not bind it.
    pub method: &'a str,
    /// The request target exactly as sent (`/v2/withdrawal/crypto?x=1`), or `""` when
    /// the server does not bind it.
    pub path: &'a str,
}

impl ReplayRequest<'_> {
    /// Validates every field; returns the canonical timestamp string.
    fn canonical_timestamp(&self) -> Result<String, SignatureError> {
        let seconds = self.timestamp.unix_timestamp();
        if seconds < 0 {
            return Err(SignatureError::InvalidTimestamp);
        }
        if !is_nonce(self.nonce.as_bytes()) {
            return Err(SignatureError::InvalidNonce);
        }
        if !is_method(self.method.as_bytes()) {
            return Err(SignatureError::InvalidMethod);
        }
        if !is_path(self.path.as_bytes()) {
            return Err(SignatureError::InvalidPath);
        }
        Ok(seconds.to_string())
    }
}

/// Draws a fresh nonce from `rng`: 32 lowercase hex characters (128 bits).
///
/// # Errors
///
/// [`SignatureError::Randomness`] when `rng` fails (never a panic).
pub fn generate_nonce<R: rand::TryCryptoRng + ?Sized>(
    rng: &mut R,
) -> Result<String, SignatureError> {
    let mut bytes = [0u8; 16];
    rng.try_fill_bytes(&mut bytes)
        .map_err(|_| SignatureError::Randomness)?;
    let mut hex = [0u8; 32];
    base16ct::lower::encode_str(&bytes, &mut hex)
        .map(str::to_owned)
        .map_err(|_| SignatureError::Randomness)
}

/// Client side: produces the header values for a request body.
///
/// For a token issued by this crate use
/// [`RequestSigner::for_token`](RequestSigner::for_token): it reads the key id from the
/// token. [`RequestSigner::new`] takes the key id and the secret separately (a
/// CoinsPaid-style client that was given both). Both fail with [`SignatureError`].
///
/// Holds the key id and a [`SigningKey`]; `Debug` shows the key id, never the secret.
#[derive(Clone)]
pub struct RequestSigner {
    key_id: String,
    key: SigningKey,
}

impl RequestSigner {
    /// A signer for the key `key_id` with the secret `secret` (the token's bytes).
    ///
    /// # Errors
    ///
    /// * [`SignatureError::InvalidKeyId`] when `key_id` is empty or has a character
    ///   outside visible ASCII (it must fit in a header value);
    /// * [`SignatureError::EmptySecret`] when `secret` is empty.
    pub fn new(key_id: impl Into<String>, secret: &[u8]) -> Result<Self, SignatureError> {
        let key_id = key_id.into();
        if key_id.is_empty() || !key_id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(SignatureError::InvalidKeyId);
        }
        Ok(Self {
            key_id,
            key: SigningKey::new(secret)?,
        })
    }

    /// The public key id sent in [`KEY_HEADER`].
    #[must_use]
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Vendor-compatible headers: key id and body-only signature.
    ///
    /// Such a request can be replayed verbatim (see the [module documentation](self)).
    #[must_use]
    pub fn sign(&self, body: &[u8]) -> SignedHeaders {
        SignedHeaders {
            key: self.key_id.clone(),
            signature: self.key.sign(body).to_hex(),
            timestamp: None,
            nonce: None,
        }
    }

    /// Replay-protected headers: key id, signature, timestamp and nonce.
    ///
    /// # Errors
    ///
    /// See [`SigningKey::sign_replay_protected`].
    pub fn sign_replay_protected(
        &self,
        request: &ReplayRequest<'_>,
        body: &[u8],
    ) -> Result<SignedHeaders, SignatureError> {
        let timestamp = request.canonical_timestamp()?;
        let signature = self.key.sign_canonical(request, &timestamp, body).to_hex();
        Ok(SignedHeaders {
            key: self.key_id.clone(),
            signature,
            timestamp: Some(timestamp),
            nonce: Some(request.nonce.to_owned()),
        })
    }

    /// Replay-protected headers with a nonce drawn from `rng`, at `now`.
    ///
    /// # Errors
    ///
    /// [`SignatureError::Randomness`] when `rng` fails; otherwise those of
    /// [`sign_replay_protected`](Self::sign_replay_protected).
    pub fn sign_replay_protected_with_rng<R: rand::TryCryptoRng + ?Sized>(
        &self,
        now: UtcDateTime,
        method: &str,
        path: &str,
        body: &[u8],
        rng: &mut R,
    ) -> Result<SignedHeaders, SignatureError> {
        let nonce = generate_nonce(rng)?;
        let request = ReplayRequest {
            timestamp: now,
            nonce: &nonce,
            method,
            path,
        };
        self.sign_replay_protected(&request, body)
    }

    /// Replay-protected headers for a request sent now: reads the system clock and
    /// draws the nonce from the operating system's generator. For tests, use
    /// [`sign_replay_protected_with_rng`](Self::sign_replay_protected_with_rng).
    ///
    /// # Errors
    ///
    /// [`SignatureError::Randomness`] when the operating system's generator fails;
    /// otherwise those of [`sign_replay_protected`](Self::sign_replay_protected).
    pub fn sign_replay_protected_now(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<SignedHeaders, SignatureError> {
        self.sign_replay_protected_with_rng(
            UtcDateTime::now(),
            method,
            path,
            body,
            &mut rand::rngs::SysRng,
        )
    }
}

impl fmt::Debug for RequestSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestSigner")
            .field("key_id", &self.key_id)
            .field("key", &self.key)
            .finish()
    }
}

/// Header values for a signed request.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// [`KEY_HEADER`] value: the public key id.
    pub key: String,
    /// [`SIGNATURE_HEADER`] value: 128 lowercase hex characters.
    pub signature: String,
    /// [`TIMESTAMP_HEADER`] value, in replay-protected mode.
    pub timestamp: Option<String>,
    /// [`NONCE_HEADER`] value, in replay-protected mode.
    pub nonce: Option<String>,
}

impl SignedHeaders {
    /// `(header name, value)` pairs to add to the request, in a fixed order.
    #[must_use]
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        let mut pairs = vec![
            (KEY_HEADER, self.key.as_str()),
            (SIGNATURE_HEADER, self.signature.as_str()),
        ];
        if let Some(timestamp) = &self.timestamp {
            pairs.push((TIMESTAMP_HEADER, timestamp.as_str()));
        }
        if let Some(nonce) = &self.nonce {
            pairs.push((NONCE_HEADER, nonce.as_str()));
        }
        pairs
    }
}

impl fmt::Debug for SignedHeaders {
    /// Shows the key id, the timestamp, the nonce and the first 8 characters of the
    /// signature.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = self.signature.get(..8).unwrap_or_default();
        f.debug_struct("SignedHeaders")
            .field("key", &self.key)
            .field("signature", &format_args!("{prefix}…"))
            .field("timestamp", &self.timestamp)
            .field("nonce", &self.nonce)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::MemoryReplayCache;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    // ---------------------------------------------------------------- RFC 4231

    /// RFC 4231 section 4, HMAC-SHA-512 values: (case, key, data, tag).
    const RFC4231: &[(u8, &[u8], &[u8], &str)] = &[
        (
            1,
            &[0x0b; 20],
            b"Hi There",
            "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde\
             daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
        ),
        (
            2,
            b"Jefe",
            b"what do ya want for nothing?",
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554\
             9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
        ),
        (
            3,
            &[0xaa; 20],
            &[0xdd; 50],
            "fa73b0089d56a284efb0f0756c890be9b1b5dbdd8ee81a3655f83e33b2279d39\
             bf3e848279a722c806b485a47e67c807b946a337bee8942674278859e13292fb",
        ),
        (
            4,
            &[
                0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e,
                0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19,
            ],
            &[0xcd; 50],
            "b0ba465637458c6990e5a8c5f61d4af7e576d97ff94b872de76f8050361ee3db\
             a91ca5c11aa25eb4d679275cc5788063a5f19741120c4f2de2adebeb10a298dd",
        ),
        (
            6,
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
            "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352\
             6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598",
        ),
        (
            7,
            &[0xaa; 131],
            b"This is a test using a larger than block-size key and a larger than \
              block-size data. The key needs to be hashed before being used by the \
              HMAC algorithm.",
            "e37b6a775dc87dbaa4dfa9f96e5e3ffddebd71f8867289865df5a32d20cdc944\
             b6022cac3c4982b10d5eeb55c3e4de15134676fb6de0446065c97440fa8c6a58",
        ),
    ];

    #[test]
    fn rfc4231_vectors_sign_and_verify() {
        for &(case, key, data, tag) in RFC4231 {
            let key = SigningKey::new(key).unwrap();
            let signature = key.sign(data);
            assert_eq!(signature.to_hex(), tag, "RFC 4231 case {case}");
            assert_eq!(hex(signature.as_bytes()), tag, "RFC 4231 case {case}");
            assert_eq!(key.verify(data, tag.as_bytes()), Ok(()), "case {case}");
            let mut streaming = key.verifier();
            for chunk in data.chunks(7) {
                streaming.update(chunk);
            }
            assert_eq!(streaming.finish(tag.as_bytes()), Ok(()), "case {case}");
        }
    }

    #[test]
    fn rfc4231_case5_truncated_tag_is_refused() {
        // Case 5: key 0x0c * 20, data "Test With Truncation", tag truncated to 128 bits.
        const TRUNCATED: &str = "415fad6271580a531d4179bc891d87a6";
        let key = SigningKey::new(&[0x0c; 20]).unwrap();
        let data = b"Test With Truncation";
        // It is a genuine prefix of the full tag...
        assert!(key.sign(data).to_hex().starts_with(TRUNCATED));
        // ...and still never verifies.
        assert_eq!(
            key.verify(data, TRUNCATED.as_bytes()),
            Err(SignatureRefusal::Malformed)
        );
        assert_eq!(
            key.verifier().finish(TRUNCATED.as_bytes()),
            Err(SignatureRefusal::Malformed)
        );
        let any_case = SignatureConfig {
            hex_case: HexCase::AnyCase,
            ..SignatureConfig::default()
        };
        assert_eq!(
            any_case.verify(&key, data, TRUNCATED.as_bytes()),
            Err(SignatureRefusal::Malformed)
        );
    }

    // ------------------------------------------------------- vendor check value

    const VENDOR_SECRET: &[u8] = b"AbCdEfG123456";
    const VENDOR_BODY: &[u8] = br#"{"currency":"BTC","foreign_id":"123456"}"#;
    const VENDOR_SIGNATURE: &str = "03c25fcf7cd35e7d995e402cd5d51edd72d48e1471e865907967809a0c189ba5\
                                    5b90815f20e2bb10f82c7a9e9d865546fda58989c2ae9e8e2ff7bc29195fa1ec";

    #[test]
    fn vendor_check_value() {
        let key = SigningKey::new(VENDOR_SECRET).unwrap();
        assert_eq!(key.sign(VENDOR_BODY).to_hex(), VENDOR_SIGNATURE);
        assert_eq!(key.verify(VENDOR_BODY, VENDOR_SIGNATURE.as_bytes()), Ok(()));

        let signer = RequestSigner::new("merchant-key-1", VENDOR_SECRET).unwrap();
        let headers = signer.sign(VENDOR_BODY);
        assert_eq!(headers.key, "merchant-key-1");
        assert_eq!(headers.signature, VENDOR_SIGNATURE);
        assert_eq!(headers.timestamp, None);
        assert_eq!(headers.nonce, None);
        assert_eq!(
            headers.pairs(),
            [
                ("X-Processing-Key", "merchant-key-1"),
                ("X-Processing-Signature", VENDOR_SIGNATURE),
            ]
        );
    }

    #[test]
    fn vendor_signature_refuses_other_bodies() {
        let key = SigningKey::new(VENDOR_SECRET).unwrap();
        let others: [&[u8]; 6] = [
            br#"{"foreign_id":"123456","currency":"BTC"}"#,
            br#"{"currency": "BTC", "foreign_id": "123456"}"#,
            b"{\"currency\":\"BTC\",\"foreign_id\":\"123456\"}\n",
            b"",
            br#"{"currency":"BTC","foreign_id":"123457"}"#,
            br#"{"currency":"BTC","foreign_id":"123456"} "#,
        ];
        for body in others {
            assert_eq!(
                key.verify(body, VENDOR_SIGNATURE.as_bytes()),
                Err(SignatureRefusal::Mismatch),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // Another secret (one character off, or the same with a newline) refuses too.
        for secret in [&b"AbCdEfG123457"[..], b"abcdefg123456", b"AbCdEfG123456\n"] {
            let other = SigningKey::new(secret).unwrap();
            assert_eq!(
                other.verify(VENDOR_BODY, VENDOR_SIGNATURE.as_bytes()),
                Err(SignatureRefusal::Mismatch)
            );
        }
    }

    // --------------------------------------------------------- header parsing

    #[test]
    fn header_parsing_table() {
        let good = VENDOR_SIGNATURE;
        let tag = key_tag();
        let upper = good.to_ascii_uppercase();
        let mixed = format!("{}{}", &good[..64], &upper[64..]);
        let base64_of_tag = "A8Jfz3zTXn2ZXkAs1dUe3XLUjhRx6GWQeWeAmgwYm6VbkIFfIOK7sQ+\
                             Cx6np2GVUb9pYmJwq6ejiL/e8KRlfoew=";
        let nul_padded = format!("{}\0", &good[..127]);
        let cases: Vec<(&str, Vec<u8>, SignatureRefusal)> = vec![
            ("empty", vec![], SignatureRefusal::Missing),
            ("127 chars", good[..127].into(), SignatureRefusal::Malformed),
            (
                "129 chars",
                format!("{good}0").into(),
                SignatureRefusal::Malformed,
            ),
            ("126 chars", good[..126].into(), SignatureRefusal::Malformed),
            ("odd length 1", b"a".to_vec(), SignatureRefusal::Malformed),
            (
                "double length",
                format!("{good}{good}").into(),
                SignatureRefusal::Malformed,
            ),
            (
                "non-hex g",
                format!("{}g", &good[..127]).into(),
                SignatureRefusal::Malformed,
            ),
            ("NUL", nul_padded.into(), SignatureRefusal::Malformed),
            (
                "uppercase",
                upper.clone().into(),
                SignatureRefusal::Malformed,
            ),
            (
                "mixed case",
                mixed.clone().into(),
                SignatureRefusal::Malformed,
            ),
            ("base64", base64_of_tag.into(), SignatureRefusal::Malformed),
            (
                "sha512= prefix",
                format!("sha512={good}").into(),
                SignatureRefusal::Malformed,
            ),
            (
                "sha512= prefix, length kept",
                format!("sha512={}", &good[..121]).into(),
                SignatureRefusal::Malformed,
            ),
            (
                "0x prefix",
                format!("0x{}", &good[..126]).into(),
                SignatureRefusal::Malformed,
            ),
            (
                "leading space",
                format!(" {good}").into(),
                SignatureRefusal::Malformed,
            ),
            (
                "trailing space",
                format!("{good} ").into(),
                SignatureRefusal::Malformed,
            ),
            (
                "space in place of a digit",
                format!(" {}", &good[1..]).into(),
                SignatureRefusal::Malformed,
            ),
            (
                "trailing newline",
                format!("{good}\n").into(),
                SignatureRefusal::Malformed,
            ),
            (
                "two values comma-joined",
                format!("{good},{good}").into(),
                SignatureRefusal::Malformed,
            ),
            (
                "two values comma-space-joined",
                format!("{good}, {good}").into(),
                SignatureRefusal::Malformed,
            ),
            (
                "non-ASCII",
                format!("{}é", &good[..126]).into(),
                SignatureRefusal::Malformed,
            ),
        ];
        let key = SigningKey::new(VENDOR_SECRET).unwrap();
        for (name, header, expected) in &cases {
            assert_eq!(
                parse_signature_header(header, HexCase::LowerOnly).err(),
                Some(*expected),
                "{name}"
            );
            assert_eq!(key.verify(VENDOR_BODY, header), Err(*expected), "{name}");
        }
        // Under AnyCase, only the case rows change outcome.
        for (name, header, expected) in &cases {
            let result = parse_signature_header(header, HexCase::AnyCase);
            if name.contains("case") {
                assert_eq!(result, Ok(tag), "{name}");
            } else {
                assert_eq!(result.err(), Some(*expected), "{name} (AnyCase)");
            }
        }
        assert_eq!(
            parse_signature_header(good.as_bytes(), HexCase::LowerOnly),
            Ok(tag)
        );
        assert_eq!(
            parse_signature_header(good.as_bytes(), HexCase::AnyCase),
            Ok(tag)
        );
    }

    fn key_tag() -> [u8; 64] {
        *SigningKey::new(VENDOR_SECRET)
            .unwrap()
            .sign(VENDOR_BODY)
            .as_bytes()
    }

    #[test]
    fn uppercase_policy() {
        assert_eq!(HexCase::default(), HexCase::LowerOnly);
        assert_eq!(SignatureConfig::default().hex_case, HexCase::LowerOnly);
        let key = SigningKey::new(VENDOR_SECRET).unwrap();
        let upper = VENDOR_SIGNATURE.to_ascii_uppercase();
        assert_eq!(
            key.verify(VENDOR_BODY, upper.as_bytes()),
            Err(SignatureRefusal::Malformed)
        );
        let any_case = SignatureConfig {
            hex_case: HexCase::AnyCase,
            ..SignatureConfig::default()
        };
        assert_eq!(any_case.verify(&key, VENDOR_BODY, upper.as_bytes()), Ok(()));
        let mut streaming = any_case.verifier(&key);
        streaming.update(VENDOR_BODY);
        assert_eq!(streaming.finish(upper.as_bytes()), Ok(()));
        // AnyCase still checks the MAC.
        assert_eq!(
            any_case.verify(&key, b"{}", upper.as_bytes()),
            Err(SignatureRefusal::Mismatch)
        );
    }

    // ------------------------------------------------------ limits and streaming

    #[test]
    fn body_limit_one_shot() {
        let key = SigningKey::new(b"secret").unwrap();
        let config = SignatureConfig {
            max_body_len: 10,
            ..SignatureConfig::default()
        };
        let at_limit = [b'x'; 10];
        let over = [b'x'; 11];
        let sig = key.sign(&at_limit).to_hex();
        assert_eq!(config.verify(&key, &at_limit, sig.as_bytes()), Ok(()));
        let sig = key.sign(&over).to_hex();
        assert_eq!(
            config.verify(&key, &over, sig.as_bytes()),
            Err(SignatureRefusal::BodyTooLarge)
        );
        // The default limit is 1 MiB.
        assert_eq!(SignatureConfig::default().max_body_len, 1024 * 1024);
        let big = vec![0u8; DEFAULT_MAX_BODY_LEN + 1];
        let sig = key.sign(&big).to_hex();
        assert_eq!(
            key.verify(&big, sig.as_bytes()),
            Err(SignatureRefusal::BodyTooLarge)
        );
        let exact = &big[..DEFAULT_MAX_BODY_LEN];
        let sig = key.sign(exact).to_hex();
        assert_eq!(key.verify(exact, sig.as_bytes()), Ok(()));
    }

    #[test]
    fn body_limit_streaming() {
        let key = SigningKey::new(b"secret").unwrap();
        let config = SignatureConfig {
            max_body_len: 10,
            ..SignatureConfig::default()
        };
        let body = [b'y'; 12];
        let sig = key.sign(&body[..10]).to_hex();

        let mut v = config.verifier(&key);
        v.update(&body[..6]);
        v.update(&body[6..10]);
        assert_eq!(v.bytes_seen(), 10);
        assert_eq!(v.finish(sig.as_bytes()), Ok(()));

        let mut v = config.verifier(&key);
        v.update(&body[..6]);
        v.update(&body[6..11]);
        v.update(&[]);
        assert_eq!(v.bytes_seen(), 11);
        assert_eq!(
            v.finish(key.sign(&body[..11]).to_hex().as_bytes()),
            Err(SignatureRefusal::BodyTooLarge)
        );

        // Zero limit: only the empty body.
        let zero = SignatureConfig {
            max_body_len: 0,
            ..SignatureConfig::default()
        };
        assert_eq!(
            zero.verify(&key, b"", key.sign(b"").to_hex().as_bytes()),
            Ok(())
        );
        assert_eq!(
            zero.verify(&key, b"a", key.sign(b"a").to_hex().as_bytes()),
            Err(SignatureRefusal::BodyTooLarge)
        );
    }

    #[test]
    fn key_and_signer_construction() {
        assert!(matches!(
            SigningKey::new(b""),
            Err(SignatureError::EmptySecret)
        ));
        assert!(matches!(
            RequestSigner::new("id", b""),
            Err(SignatureError::EmptySecret)
        ));
        for bad_id in ["", "key id", "key\nid", "key\tid", "clé", "id\0"] {
            assert!(
                matches!(
                    RequestSigner::new(bad_id, b"secret"),
                    Err(SignatureError::InvalidKeyId)
                ),
                "{bad_id:?}"
            );
        }
        assert_eq!(
            RequestSigner::new("key_01", b"s").unwrap().key_id(),
            "key_01"
        );
        // A one-byte secret is a valid HMAC key.
        assert!(SigningKey::new(b"k").is_ok());
    }

    #[test]
    fn debug_output_is_redacted() {
        let secret = b"sk_live_SuperSecretValue0123456789";
        let key = SigningKey::new(secret).unwrap();
        assert_eq!(format!("{key:?}"), "SigningKey([redacted])");
        assert_eq!(format!("{:?}", key.clone()), "SigningKey([redacted])");

        let signer = RequestSigner::new("key_public_id", secret).unwrap();
        let shown = format!("{signer:?}");
        assert!(shown.contains("key_public_id"));
        assert!(!shown.contains("SuperSecret"));

        let body = b"{}";
        let signature = key.sign(body);
        let full = signature.to_hex();
        let shown = format!("{signature:?}");
        assert_eq!(shown, format!("Signature({}…)", &full[..8]));

        let headers = signer.sign(body);
        let shown = format!("{headers:?}");
        assert!(shown.contains(&full[..8]));
        assert!(!shown.contains(&full[..9]));
        assert!(!shown.contains("SuperSecret"));

        let mut verifier = key.verifier();
        verifier.update(body);
        let shown = format!("{verifier:?}");
        assert!(shown.contains("bytes_seen: 2"));
        assert!(!shown.contains("SuperSecret"));

        let head = RequestHead {
            method: b"POST",
            path: b"/x",
            signature: full.as_bytes(),
            timestamp: b"1700000000",
            nonce: b"0123456789abcdef",
        };
        let shown = format!("{head:?}");
        assert_eq!(shown, "RequestHead { method: \"POST\", path_len: 2, .. }");
        let replay = SignatureConfig::default()
            .replay_verifier(&key, &head, at(1_700_000_000))
            .unwrap();
        let shown = format!("{replay:?}");
        assert!(!shown.contains(&full[..8]) && !shown.contains("SuperSecret"));
        assert!(!shown.contains("0123456789abcdef"), "no nonce: {shown}");
        assert_eq!(
            shown,
            "ReplayBodyVerifier { bytes_seen: 0, nonce: UnrecordedNonce { timestamp: 1700000000, .. }, .. }"
        );
        // The mismatching MAC is refused; an unrecorded nonce shows no nonce.
        assert!(replay.check_signature().is_err());
        let sig = key.sign_replay_protected(
            &ReplayRequest {
                timestamp: at(1_700_000_000),
                nonce: "0123456789abcdef",
                method: "POST",
                path: "/x",
            },
            b"",
        );
        let sig = sig.unwrap().to_hex();
        let head = RequestHead {
            signature: sig.as_bytes(),
            ..head
        };
        let pending = SignatureConfig::default()
            .replay_verifier(&key, &head, at(1_700_000_000))
            .unwrap()
            .check_signature()
            .unwrap();
        let shown = format!("{pending:?}");
        assert_eq!(shown, "UnrecordedNonce { timestamp: 1700000000, .. }");

        for err in [
            SignatureError::EmptySecret,
            SignatureError::InvalidKeyId,
            SignatureError::InvalidNonce,
        ] {
            let text = format!("{err} {err:?}");
            assert!(!text.contains("SuperSecret"));
        }
    }

    #[test]
    fn refusal_identifiers() {
        let all = [
            SignatureRefusal::Missing,
            SignatureRefusal::Malformed,
            SignatureRefusal::Mismatch,
            SignatureRefusal::BodyTooLarge,
            SignatureRefusal::StaleTimestamp,
            SignatureRefusal::MalformedTimestamp,
            SignatureRefusal::MalformedNonce,
            SignatureRefusal::ReplayedNonce,
            SignatureRefusal::MalformedMethod,
            SignatureRefusal::MalformedPath,
        ];
        let mut names: Vec<_> = all.iter().map(SignatureRefusal::as_str).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len());
        assert_eq!(SignatureRefusal::Mismatch.to_string(), "signature_mismatch");
        assert_eq!(SignatureRefusal::Mismatch.http_status(), 401);
        assert_eq!(SignatureRefusal::ReplayedNonce.http_status(), 401);
        assert_eq!(SignatureRefusal::BodyTooLarge.http_status(), 413);
        assert_eq!(SignatureRefusal::MalformedPath.http_status(), 400);
    }

    // ------------------------------------------------------------ replay mode

    const NOW: i64 = 1_700_000_000;
    const NONCE: &str = "n0nce_0123456789-abcdef";
    const SCOPE: &[u8] = b"key_01HZX3K7";
    const TOKEN: &[u8] = b"sk_live_4eC39HqLyjWDarjtT1zdp7dc";
    const BODY: &[u8] = br#"{"currency":"BTC","foreign_id":"123456"}"#;

    fn at(secs: i64) -> UtcDateTime {
        UtcDateTime::from_unix_timestamp(secs).unwrap()
    }

    fn replay_config(tolerance: u64) -> SignatureConfig {
        SignatureConfig {
            replay: Some(ReplayConfig {
                tolerance: Duration::from_secs(tolerance),
            }),
            ..SignatureConfig::default()
        }
    }

    /// Signs like a client and returns the headers.
    fn client_sign(
        timestamp: i64,
        nonce: &str,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> SignedHeaders {
        RequestSigner::new("key_01HZX3K7", TOKEN)
            .unwrap()
            .sign_replay_protected(
                &ReplayRequest {
                    timestamp: at(timestamp),
                    nonce,
                    method,
                    path,
                },
                body,
            )
            .unwrap()
    }

    fn head<'a>(headers: &'a SignedHeaders, method: &'a [u8], path: &'a [u8]) -> RequestHead<'a> {
        RequestHead {
            method,
            path,
            signature: headers.signature.as_bytes(),
            timestamp: headers.timestamp.as_deref().unwrap_or_default().as_bytes(),
            nonce: headers.nonce.as_deref().unwrap_or_default().as_bytes(),
        }
    }

    /// Verifies a request signed at `signed_at`, checked at `now`, with a fresh cache.
    fn check_at(signed_at: i64, now: i64, tolerance: u64) -> Result<(), ReplayVerifyError> {
        let key = SigningKey::new(TOKEN).unwrap();
        let headers = client_sign(signed_at, NONCE, "POST", "/v2/withdrawal", BODY);
        replay_config(tolerance).verify_replay_protected(
            &key,
            &head(&headers, b"POST", b"/v2/withdrawal"),
            BODY,
            at(now),
            &MemoryReplayCache::new(16),
            SCOPE,
        )
    }

    fn refusal(result: Result<(), ReplayVerifyError>) -> Option<SignatureRefusal> {
        result.err().and_then(|e| e.refusal())
    }

    /// A method is any upper-case RFC 9110 token: digits and the token
    /// symbols are allowed (extension methods such as `M-SEARCH`), and each
    /// signs and verifies; lower case, spaces and separators are refused.
    #[test]
    fn methods_are_upper_case_tokens() {
        let key = SigningKey::new(TOKEN).unwrap();
        let config = replay_config(300);
        for method in [
            "M-SEARCH",
            "X_CUSTOM.2",
            "PROPFIND",
            "V1",
            "A!#$%&'*+-.^_`|~",
        ] {
            let headers = client_sign(NOW, NONCE, method, "/p", BODY);
            let got = config.verify_replay_protected(
                &key,
                &head(&headers, method.as_bytes(), b"/p"),
                BODY,
                at(NOW),
                &MemoryReplayCache::new(4),
                SCOPE,
            );
            assert!(got.is_ok(), "{method}: {got:?}");
        }
        let headers = client_sign(NOW, NONCE, "POST", "/p", BODY);
        for method in ["Post", "PO ST", "GET(", "A/B", "A:B", "A\"B", "É"] {
            assert_eq!(
                config
                    .replay_verifier(&key, &head(&headers, method.as_bytes(), b"/p"), at(NOW))
                    .err(),
                Some(SignatureRefusal::MalformedMethod),
                "{method}"
            );
        }
    }

    /// In the replay-protected mode, as in the body-only one, a body of
    /// exactly `max_body_len` bytes is accepted and one byte more is refused
    /// as too large, by the recording and the non-recording checks alike.
    #[test]
    fn replay_protected_body_limit_is_inclusive() {
        let key = SigningKey::new(TOKEN).unwrap();
        let headers = client_sign(NOW, NONCE, "POST", "/p", BODY);
        let good = head(&headers, b"POST", b"/p");
        let limit = |max_body_len| SignatureConfig {
            max_body_len,
            ..replay_config(300)
        };
        let at_limit = limit(BODY.len());
        let under = limit(BODY.len() - 1);

        let unrecorded = at_limit.verify_without_recording(&key, &good, BODY, at(NOW));
        assert!(matches!(unrecorded, Ok(Some(_))), "{unrecorded:?}");
        assert_eq!(
            under
                .verify_without_recording(&key, &good, BODY, at(NOW))
                .err(),
            Some(SignatureRefusal::BodyTooLarge)
        );

        let cache = MemoryReplayCache::new(16);
        assert_eq!(
            refusal(under.verify_replay_protected(&key, &good, BODY, at(NOW), &cache, SCOPE)),
            Some(SignatureRefusal::BodyTooLarge)
        );
        assert!(cache.is_empty(), "a refused request records nothing");
        assert!(
            at_limit
                .verify_replay_protected(&key, &good, BODY, at(NOW), &cache, SCOPE)
                .is_ok()
        );
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn canonical_message_format() {
        let headers = client_sign(NOW, NONCE, "POST", "/v2/withdrawal?x=1", BODY);
        assert_eq!(headers.timestamp.as_deref(), Some("1700000000"));
        assert_eq!(headers.nonce.as_deref(), Some(NONCE));
        // Independent computation over the documented message.
        let mut message =
            b"api-keys-v1\n1700000000\nn0nce_0123456789-abcdef\nPOST\n/v2/withdrawal?x=1\n"
                .to_vec();
        message.extend_from_slice(BODY);
        let mut mac = <HmacSha512 as KeyInit>::new_from_slice(TOKEN).unwrap();
        mac.update(&message);
        assert_eq!(headers.signature, hex(&mac.finalize().into_bytes()));
        // It is exactly the body-only signature of the canonical message.
        let key = SigningKey::new(TOKEN).unwrap();
        assert_eq!(headers.signature, key.sign(&message).to_hex());

        // Unbound method and path are empty lines.
        let unbound = client_sign(NOW, NONCE, "", "", BODY);
        let mut message = b"api-keys-v1\n1700000000\nn0nce_0123456789-abcdef\n\n\n".to_vec();
        message.extend_from_slice(BODY);
        assert_eq!(unbound.signature, key.sign(&message).to_hex());
        assert_eq!(
            unbound.pairs(),
            [
                (KEY_HEADER, "key_01HZX3K7"),
                (SIGNATURE_HEADER, unbound.signature.as_str()),
                (TIMESTAMP_HEADER, "1700000000"),
                (NONCE_HEADER, NONCE),
            ]
        );
        // Sub-second part of the timestamp is dropped.
        let precise = UtcDateTime::from_unix_timestamp_nanos(1_700_000_000_999_999_999).unwrap();
        let signer = RequestSigner::new("key_01HZX3K7", TOKEN).unwrap();
        let request = ReplayRequest {
            timestamp: precise,
            nonce: NONCE,
            method: "",
            path: "",
        };
        assert_eq!(
            signer.sign_replay_protected(&request, BODY).unwrap(),
            unbound
        );
        assert_eq!(
            key.sign_replay_protected(&request, BODY).unwrap().to_hex(),
            unbound.signature
        );
    }

    #[test]
    fn replay_round_trip_and_replay_refused() {
        let key = SigningKey::new(TOKEN).unwrap();
        let config = replay_config(300);
        let cache = MemoryReplayCache::new(16);
        let headers = client_sign(NOW, NONCE, "POST", "/v2/withdrawal", BODY);
        let head = head(&headers, b"POST", b"/v2/withdrawal");
        assert!(
            config
                .verify_replay_protected(&key, &head, BODY, at(NOW), &cache, SCOPE)
                .is_ok()
        );
        assert_eq!(
            refusal(config.verify_replay_protected(&key, &head, BODY, at(NOW + 10), &cache, SCOPE)),
            Some(SignatureRefusal::ReplayedNonce)
        );
        // Still a replay at the very end of the window.
        assert_eq!(
            refusal(config.verify_replay_protected(
                &key,
                &head,
                BODY,
                at(NOW + 300),
                &cache,
                SCOPE
            )),
            Some(SignatureRefusal::ReplayedNonce)
        );
        // After the window it is stale (the nonce may have been forgotten).
        assert_eq!(
            refusal(config.verify_replay_protected(
                &key,
                &head,
                BODY,
                at(NOW + 301),
                &cache,
                SCOPE
            )),
            Some(SignatureRefusal::StaleTimestamp)
        );
        // Nonces are per key: another key id with the same nonce is fresh.
        let other_key = SigningKey::new(b"sk_live_other").unwrap();
        let other = RequestSigner::new("key_other", b"sk_live_other")
            .unwrap()
            .sign_replay_protected(
                &ReplayRequest {
                    timestamp: at(NOW),
                    nonce: NONCE,
                    method: "POST",
                    path: "/v2/withdrawal",
                },
                BODY,
            )
            .unwrap();
        let other_head = RequestHead {
            signature: other.signature.as_bytes(),
            ..head
        };
        assert!(
            config
                .verify_replay_protected(
                    &other_key,
                    &other_head,
                    BODY,
                    at(NOW),
                    &cache,
                    b"key_other"
                )
                .is_ok()
        );
    }

    #[test]
    fn tolerance_boundaries() {
        // Exactly at the tolerance, both directions: accepted.
        assert!(check_at(NOW - 300, NOW, 300).is_ok());
        assert!(check_at(NOW + 300, NOW, 300).is_ok());
        assert!(check_at(NOW, NOW, 300).is_ok());
        // One second past, both directions: refused.
        assert_eq!(
            refusal(check_at(NOW - 301, NOW, 300)),
            Some(SignatureRefusal::StaleTimestamp)
        );
        assert_eq!(
            refusal(check_at(NOW + 301, NOW, 300)),
            Some(SignatureRefusal::StaleTimestamp)
        );
        // Far away.
        assert_eq!(
            refusal(check_at(0, NOW, 300)),
            Some(SignatureRefusal::StaleTimestamp)
        );
        // The default tolerance is 300 s.
        assert_eq!(ReplayConfig::default().tolerance, Duration::from_secs(300));
    }

    #[test]
    fn zero_tolerance_means_exact() {
        assert!(check_at(NOW, NOW, 0).is_ok());
        assert_eq!(
            refusal(check_at(NOW - 1, NOW, 0)),
            Some(SignatureRefusal::StaleTimestamp)
        );
        assert_eq!(
            refusal(check_at(NOW + 1, NOW, 0)),
            Some(SignatureRefusal::StaleTimestamp)
        );
        // Sub-second `now` is compared in whole seconds.
        let now =
            UtcDateTime::from_unix_timestamp_nanos(i128::from(NOW) * 1_000_000_000 + 999_999_999)
                .unwrap();
        assert_eq!(check_window(NOW, now, Duration::ZERO), Ok(at(NOW + 1)));
    }

    #[test]
    fn window_arithmetic_never_overflows() {
        let extremes = [UtcDateTime::MIN, UtcDateTime::MAX, at(0), at(NOW)];
        let tolerances = [
            Duration::ZERO,
            DEFAULT_TOLERANCE,
            Duration::from_secs(u64::MAX),
            Duration::MAX,
        ];
        for now in extremes {
            for tolerance in tolerances {
                for timestamp in [0, 1, NOW, i64::MAX, i64::MAX - 1] {
                    let _ = check_window(timestamp, now, tolerance);
                }
            }
        }
        assert_eq!(
            check_window(i64::MAX, at(NOW), DEFAULT_TOLERANCE),
            Err(SignatureRefusal::StaleTimestamp)
        );
        assert_eq!(
            check_window(i64::MAX, UtcDateTime::MIN, Duration::MAX),
            Err(SignatureRefusal::StaleTimestamp)
        );
        // A huge tolerance accepts and saturates the expiry.
        assert_eq!(
            check_window(i64::MAX, at(NOW), Duration::MAX),
            Ok(UtcDateTime::MAX)
        );
        // The nonce is kept until the first instant the timestamp is stale.
        assert_eq!(
            check_window(NOW, at(NOW), DEFAULT_TOLERANCE),
            Ok(at(NOW + 301))
        );
        assert_eq!(
            check_window(NOW - 300, at(NOW), DEFAULT_TOLERANCE),
            Ok(at(NOW + 1))
        );
        // The largest canonical timestamp parses and is refused as stale, not malformed.
        let key = SigningKey::new(TOKEN).unwrap();
        let sig = key.sign(b"").to_hex();
        let head = RequestHead {
            method: b"",
            path: b"",
            signature: sig.as_bytes(),
            timestamp: b"9223372036854775807",
            nonce: NONCE.as_bytes(),
        };
        assert_eq!(
            replay_config(300)
                .replay_verifier(&key, &head, at(NOW))
                .err(),
            Some(SignatureRefusal::StaleTimestamp)
        );
    }

    #[test]
    fn non_canonical_timestamps_refused() {
        assert_eq!(parse_timestamp(b"0"), Ok(0));
        assert_eq!(parse_timestamp(b"5"), Ok(5));
        assert_eq!(parse_timestamp(b"1700000000"), Ok(NOW));
        assert_eq!(parse_timestamp(b"9223372036854775807"), Ok(i64::MAX));
        assert_eq!(parse_timestamp(b""), Err(SignatureRefusal::Missing));
        let bad: [&[u8]; 20] = [
            b"+5",
            b"05",
            b"00",
            b"0000000001700000000",
            b" 5",
            b"5 ",
            b"5\n",
            b"5.0",
            b"1e3",
            b"-1",
            b"-0",
            b"0x10",
            b"12345678901234567890",
            b"9223372036854775808",
            b"9999999999999999999",
            b"1_700_000_000",
            b"1,700",
            "١٧".as_bytes(),
            "５".as_bytes(),
            b"\xff",
        ];
        for raw in bad {
            assert_eq!(
                parse_timestamp(raw),
                Err(SignatureRefusal::MalformedTimestamp),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        // Through the verifier: a correct MAC over a non-canonical timestamp still fails
        // on syntax, before the MAC.
        let key = SigningKey::new(TOKEN).unwrap();
        for raw in ["+1700000000", "01700000000", " 1700000000", "1700000000.0"] {
            let mut message = format!("api-keys-v1\n{raw}\n{NONCE}\n\n\n").into_bytes();
            message.extend_from_slice(BODY);
            let sig = key.sign(&message).to_hex();
            let head = RequestHead {
                method: b"",
                path: b"",
                signature: sig.as_bytes(),
                timestamp: raw.as_bytes(),
                nonce: NONCE.as_bytes(),
            };
            let result = replay_config(300).verify_replay_protected(
                &key,
                &head,
                BODY,
                at(NOW),
                &MemoryReplayCache::new(4),
                SCOPE,
            );
            assert_eq!(
                refusal(result),
                Some(SignatureRefusal::MalformedTimestamp),
                "{raw}"
            );
        }
    }

    #[test]
    fn bad_nonces_refused() {
        let key = SigningKey::new(TOKEN).unwrap();
        let sig = key.sign(b"").to_hex();
        let bad: [&str; 11] = [
            "0123456789abcde",                                                   // 15
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0", // 65
            "0123456789\nabcdef",
            "0123456789\rabcdef",
            "0123456789 abcdef",
            "0123456789.abcdef",
            "0123456789=abcdef",
            "0123456789+/abcdef",
            "0123456789abcdé",
            "0123456789,abcdef",
            "0123456789\0abcdef",
        ];
        for nonce in bad {
            let head = RequestHead {
                method: b"",
                path: b"",
                signature: sig.as_bytes(),
                timestamp: b"1700000000",
                nonce: nonce.as_bytes(),
            };
            assert_eq!(
                replay_config(300)
                    .replay_verifier(&key, &head, at(NOW))
                    .err(),
                Some(SignatureRefusal::MalformedNonce),
                "{nonce:?}"
            );
            let request = ReplayRequest {
                timestamp: at(NOW),
                nonce,
                method: "",
                path: "",
            };
            assert!(matches!(
                key.sign_replay_protected(&request, b""),
                Err(SignatureError::InvalidNonce)
            ));
        }
        // Boundaries 16 and 64 are fine.
        assert!(parse_nonce(&[b'a'; 16]).is_ok());
        assert!(parse_nonce(&[b'Z'; 64]).is_ok());
        assert!(parse_nonce(b"_-_-_-_-_-_-_-_-").is_ok());
        assert_eq!(parse_nonce(b""), Err(SignatureRefusal::Missing));
    }

    #[test]
    fn missing_replay_headers() {
        let key = SigningKey::new(TOKEN).unwrap();
        let headers = client_sign(NOW, NONCE, "", "", BODY);
        let full = head(&headers, b"", b"");
        let config = replay_config(300);
        for head in [
            RequestHead {
                signature: b"",
                ..full
            },
            RequestHead {
                timestamp: b"",
                ..full
            },
            RequestHead { nonce: b"", ..full },
        ] {
            assert_eq!(
                config.replay_verifier(&key, &head, at(NOW)).err(),
                Some(SignatureRefusal::Missing)
            );
        }
    }

    #[test]
    fn method_and_path_are_bound() {
        let key = SigningKey::new(TOKEN).unwrap();
        let config = replay_config(300);
        let headers = client_sign(NOW, NONCE, "POST", "/v2/withdrawal?amount=1", BODY);
        let cache = MemoryReplayCache::new(16);
        let mismatches: [(&[u8], &[u8]); 5] = [
            (b"PUT", b"/v2/withdrawal?amount=1"),
            (b"POST", b"/v2/withdrawal?amount=2"),
            (b"POST", b"/v2/withdrawal"),
            (b"", b""),
            (b"POST", b""),
        ];
        for (method, path) in mismatches {
            assert_eq!(
                refusal(config.verify_replay_protected(
                    &key,
                    &head(&headers, method, path),
                    BODY,
                    at(NOW),
                    &cache,
                    SCOPE
                )),
                Some(SignatureRefusal::Mismatch)
            );
        }
        // Timestamp or nonce swapped for other valid values: mismatch.
        let good = head(&headers, b"POST", b"/v2/withdrawal?amount=1");
        for tampered in [
            RequestHead {
                timestamp: b"1700000001",
                ..good
            },
            RequestHead {
                nonce: b"n0nce_0123456789-abcdeF",
                ..good
            },
        ] {
            assert_eq!(
                refusal(config.verify_replay_protected(
                    &key,
                    &tampered,
                    BODY,
                    at(NOW),
                    &cache,
                    SCOPE
                )),
                Some(SignatureRefusal::Mismatch)
            );
        }
        // Host-supplied method/path that cannot be bound.
        assert_eq!(
            config
                .replay_verifier(
                    &key,
                    &RequestHead {
                        path: b"/a\nb",
                        ..good
                    },
                    at(NOW)
                )
                .err(),
            Some(SignatureRefusal::MalformedPath)
        );
        assert_eq!(
            config
                .replay_verifier(
                    &key,
                    &RequestHead {
                        method: b"post",
                        ..good
                    },
                    at(NOW)
                )
                .err(),
            Some(SignatureRefusal::MalformedMethod)
        );
        assert_eq!(
            config
                .replay_verifier(
                    &key,
                    &RequestHead {
                        method: b"PO ST",
                        ..good
                    },
                    at(NOW)
                )
                .err(),
            Some(SignatureRefusal::MalformedMethod)
        );
        // And the client refuses to sign them.
        for (method, path, expected) in [
            ("POST", "/a\nb", "path"),
            ("POST", "/a\rb", "path"),
            ("post", "/a", "method"),
            ("PO\nST", "/a", "method"),
        ] {
            let request = ReplayRequest {
                timestamp: at(NOW),
                nonce: NONCE,
                method,
                path,
            };
            let err = key.sign_replay_protected(&request, BODY).unwrap_err();
            match expected {
                "path" => assert!(matches!(err, SignatureError::InvalidPath)),
                _ => assert!(matches!(err, SignatureError::InvalidMethod)),
            }
        }
        // The original still verifies: none of the above consumed the nonce.
        assert!(
            config
                .verify_replay_protected(&key, &good, BODY, at(NOW), &cache, SCOPE)
                .is_ok()
        );
    }

    #[test]
    fn pre_epoch_timestamp_cannot_be_signed() {
        let key = SigningKey::new(TOKEN).unwrap();
        let request = ReplayRequest {
            timestamp: at(-1),
            nonce: NONCE,
            method: "",
            path: "",
        };
        assert!(matches!(
            key.sign_replay_protected(&request, BODY),
            Err(SignatureError::InvalidTimestamp)
        ));
    }

    /// Counts the calls reaching the cache.
    struct CountingCache {
        inner: MemoryReplayCache,
        calls: AtomicUsize,
    }

    impl ReplayCache for CountingCache {
        fn check_and_insert(
            &self,
            scope: &[u8],
            nonce: &str,
            expires_at: UtcDateTime,
            now: UtcDateTime,
        ) -> Result<bool, ReplayCacheError> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            self.inner.check_and_insert(scope, nonce, expires_at, now)
        }
    }

    #[test]
    fn invalid_mac_does_not_consume_the_nonce() {
        let key = SigningKey::new(TOKEN).unwrap();
        let config = replay_config(300);
        let cache = CountingCache {
            inner: MemoryReplayCache::new(16),
            calls: AtomicUsize::new(0),
        };
        let headers = client_sign(NOW, NONCE, "POST", "/p", BODY);
        let good = head(&headers, b"POST", b"/p");
        let mut forged_sig = headers.signature.clone().into_bytes();
        forged_sig[0] = if forged_sig[0] == b'0' { b'1' } else { b'0' };
        let forged = RequestHead {
            signature: &forged_sig,
            ..good
        };
        for _ in 0..3 {
            assert_eq!(
                refusal(config.verify_replay_protected(
                    &key,
                    &forged,
                    BODY,
                    at(NOW),
                    &cache,
                    SCOPE
                )),
                Some(SignatureRefusal::Mismatch)
            );
            // A stale or oversized request does not reach the cache either.
            assert_eq!(
                refusal(config.verify_replay_protected(
                    &key,
                    &good,
                    BODY,
                    at(NOW + 301),
                    &cache,
                    SCOPE
                )),
                Some(SignatureRefusal::StaleTimestamp)
            );
            let small = SignatureConfig {
                max_body_len: 4,
                ..config
            };
            assert_eq!(
                refusal(small.verify_replay_protected(&key, &good, BODY, at(NOW), &cache, SCOPE)),
                Some(SignatureRefusal::BodyTooLarge)
            );
        }
        assert_eq!(cache.calls.load(Ordering::Relaxed), 0);
        assert!(cache.inner.is_empty());
        assert!(
            config
                .verify_replay_protected(&key, &good, BODY, at(NOW), &cache, SCOPE)
                .is_ok()
        );
        assert_eq!(cache.calls.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn cache_exhaustion_fails_closed() {
        let key = SigningKey::new(TOKEN).unwrap();
        let config = replay_config(300);
        let cache = MemoryReplayCache::with_shards(2, 1).with_scope_limit(2);
        let nonces = [
            "nonce-aaaaaaaaaaaa",
            "nonce-bbbbbbbbbbbb",
            "nonce-cccccccccccc",
        ];
        let signed: Vec<_> = nonces
            .iter()
            .map(|n| client_sign(NOW, n, "", "", BODY))
            .collect();
        assert!(
            config
                .verify_replay_protected(
                    &key,
                    &head(&signed[0], b"", b""),
                    BODY,
                    at(NOW),
                    &cache,
                    SCOPE
                )
                .is_ok()
        );
        assert!(
            config
                .verify_replay_protected(
                    &key,
                    &head(&signed[1], b"", b""),
                    BODY,
                    at(NOW),
                    &cache,
                    SCOPE
                )
                .is_ok()
        );
        let err = config
            .verify_replay_protected(
                &key,
                &head(&signed[2], b"", b""),
                BODY,
                at(NOW),
                &cache,
                SCOPE,
            )
            .unwrap_err();
        assert!(matches!(
            err,
            ReplayVerifyError::Cache(ReplayCacheError::Full { .. })
        ));
        assert_eq!(err.refusal(), None);
        // Once the first two have left the window, there is room again.
        let later = client_sign(NOW + 400, nonces[2], "", "", BODY);
        assert!(
            config
                .verify_replay_protected(
                    &key,
                    &head(&later, b"", b""),
                    BODY,
                    at(NOW + 400),
                    &cache,
                    SCOPE
                )
                .is_ok()
        );
    }

    #[test]
    fn streaming_replay_verifier() {
        let key = SigningKey::new(TOKEN).unwrap();
        let config = replay_config(300);
        let cache = MemoryReplayCache::new(16);
        let headers = client_sign(NOW, NONCE, "POST", "/p", BODY);
        let good = head(&headers, b"POST", b"/p");
        let mut verifier = config.replay_verifier(&key, &good, at(NOW)).unwrap();
        for chunk in BODY.chunks(5) {
            verifier.update(chunk);
        }
        assert_eq!(verifier.bytes_seen(), BODY.len() as u64);
        assert!(verifier.finish(&cache, SCOPE, at(NOW)).is_ok());
        // Over the limit while streaming.
        let small = SignatureConfig {
            max_body_len: 8,
            ..config
        };
        let other = client_sign(NOW, "another-nonce-0001", "POST", "/p", BODY);
        let mut verifier = small
            .replay_verifier(&key, &head(&other, b"POST", b"/p"), at(NOW))
            .unwrap();
        verifier.update(BODY);
        assert_eq!(
            refusal(verifier.finish(&cache, SCOPE, at(NOW))),
            Some(SignatureRefusal::BodyTooLarge)
        );
    }

    /// Defect 2 (review of 0.1), streaming form: the window is checked again
    /// at the instant the nonce is recorded. A body that arrives slowly, while
    /// the nonce's first entry is purged, cannot be accepted a second time.
    #[test]
    fn streaming_finish_checks_the_window_at_the_record_instant() {
        let key = SigningKey::new(TOKEN).unwrap();
        let config = replay_config(300);
        let cache = MemoryReplayCache::new(16);
        let headers = client_sign(NOW, NONCE, "POST", "/p", BODY);
        let good = head(&headers, b"POST", b"/p");
        config
            .verify_replay_protected(&key, &good, BODY, at(NOW), &cache, SCOPE)
            .unwrap();
        // The replay starts inside the window …
        let mut verifier = config.replay_verifier(&key, &good, at(NOW + 300)).unwrap();
        verifier.update(BODY);
        // … and while its body streams in, the first entry expires and is purged.
        assert_eq!(cache.purge_expired(at(NOW + 301)), 1);
        assert_eq!(
            refusal(verifier.finish(&cache, SCOPE, at(NOW + 301))),
            Some(SignatureRefusal::StaleTimestamp)
        );
        assert!(
            config.replay_verifier(&key, &good, at(NOW + 301)).is_err(),
            "stale at start"
        );
        // Recording never uses an instant older than the one streaming
        // started at: a fresh nonce recorded "at NOW" after a start at
        // NOW + 300 is remembered until NOW + 301, not checked at NOW.
        let fresh = MemoryReplayCache::new(16);
        let other = client_sign(NOW, "another-nonce-0002", "POST", "/p", BODY);
        let other = head(&other, b"POST", b"/p");
        let mut late = config.replay_verifier(&key, &other, at(NOW + 300)).unwrap();
        late.update(BODY);
        late.check_signature()
            .unwrap()
            .record(&fresh, SCOPE, at(NOW))
            .unwrap();
        assert_eq!(fresh.purge_expired(at(NOW + 300)), 0);
        assert_eq!(fresh.purge_expired(at(NOW + 301)), 1);
    }

    #[test]
    fn verify_request_follows_the_configured_mode() {
        let key = SigningKey::new(VENDOR_SECRET).unwrap();
        let cache = MemoryReplayCache::new(16);
        let body_only = RequestHead {
            method: b"POST",
            path: b"/",
            signature: VENDOR_SIGNATURE.as_bytes(),
            timestamp: b"",
            nonce: b"",
        };
        let vendor = SignatureConfig::default();
        assert!(
            vendor
                .verify_request(&key, &body_only, VENDOR_BODY, at(NOW), &cache, SCOPE)
                .is_ok()
        );
        // Body-only mode can be replayed (documented); the cache is not involved.
        assert!(
            vendor
                .verify_request(&key, &body_only, VENDOR_BODY, at(NOW), &cache, SCOPE)
                .is_ok()
        );
        assert!(cache.is_empty());
        // Replay mode refuses a body-only request.
        assert_eq!(
            refusal(replay_config(300).verify_request(
                &key,
                &body_only,
                VENDOR_BODY,
                at(NOW),
                &cache,
                SCOPE
            )),
            Some(SignatureRefusal::Missing)
        );
        // And the body-only verifier refuses a replay-protected signature.
        let signer = RequestSigner::new("k", VENDOR_SECRET).unwrap();
        let replayed = signer
            .sign_replay_protected(
                &ReplayRequest {
                    timestamp: at(NOW),
                    nonce: NONCE,
                    method: "POST",
                    path: "/",
                },
                VENDOR_BODY,
            )
            .unwrap();
        assert_eq!(
            key.verify(VENDOR_BODY, replayed.signature.as_bytes()),
            Err(SignatureRefusal::Mismatch)
        );
        assert!(
            replay_config(300)
                .verify_request(
                    &key,
                    &head(&replayed, b"POST", b"/"),
                    VENDOR_BODY,
                    at(NOW),
                    &cache,
                    SCOPE
                )
                .is_ok()
        );
    }

    use crate::failing_rng::FailingRng;

    #[test]
    fn nonces_from_rng() {
        let nonce = generate_nonce(&mut StdRng::seed_from_u64(1)).unwrap();
        assert_eq!(nonce.len(), 32);
        assert!(parse_nonce(nonce.as_bytes()).is_ok());
        assert_eq!(
            nonce,
            generate_nonce(&mut StdRng::seed_from_u64(1)).unwrap()
        );
        assert_ne!(
            nonce,
            generate_nonce(&mut StdRng::seed_from_u64(2)).unwrap()
        );
        assert!(matches!(
            generate_nonce(&mut FailingRng),
            Err(SignatureError::Randomness)
        ));

        let signer = RequestSigner::new("key_01HZX3K7", TOKEN).unwrap();
        let a = signer
            .sign_replay_protected_with_rng(
                at(NOW),
                "POST",
                "/p",
                BODY,
                &mut StdRng::seed_from_u64(9),
            )
            .unwrap();
        let b = signer
            .sign_replay_protected_with_rng(
                at(NOW),
                "POST",
                "/p",
                BODY,
                &mut StdRng::seed_from_u64(9),
            )
            .unwrap();
        assert_eq!(a, b);
        assert!(matches!(
            signer.sign_replay_protected_with_rng(at(NOW), "POST", "/p", BODY, &mut FailingRng),
            Err(SignatureError::Randomness)
        ));

        // The clock-reading convenience produces a request the server accepts now.
        let now_signed = signer
            .sign_replay_protected_now("POST", "/p", BODY)
            .unwrap();
        let key = SigningKey::new(TOKEN).unwrap();
        assert!(
            replay_config(300)
                .verify_replay_protected(
                    &key,
                    &head(&now_signed, b"POST", b"/p"),
                    BODY,
                    UtcDateTime::now(),
                    &MemoryReplayCache::new(4),
                    SCOPE,
                )
                .is_ok()
        );
    }

    // --------------------------------------------------------------- proptest

    proptest! {
        #[test]
        fn round_trip(secret in prop::collection::vec(any::<u8>(), 1..200),
                      body in prop::collection::vec(any::<u8>(), 0..2048)) {
            let key = SigningKey::new(&secret).unwrap();
            let sig = key.sign(&body).to_hex();
            prop_assert_eq!(sig.len(), 128);
            prop_assert!(sig.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            prop_assert_eq!(key.verify(&body, sig.as_bytes()), Ok(()));
            let signer = RequestSigner::new("k", &secret).unwrap();
            prop_assert_eq!(signer.sign(&body).signature, sig);
        }

        #[test]
        fn flipped_signature_bit_refused(body in prop::collection::vec(any::<u8>(), 0..512),
                                          bit in 0usize..512) {
            let key = SigningKey::new(TOKEN).unwrap();
            let mut tag = *key.sign(&body).as_bytes();
            tag[bit / 8] ^= 1 << (bit % 8);
            let header = hex(&tag);
            prop_assert_eq!(key.verify(&body, header.as_bytes()), Err(SignatureRefusal::Mismatch));
        }

        #[test]
        fn flipped_header_bit_refused(body in prop::collection::vec(any::<u8>(), 0..512),
                                      bit in 0usize..(128 * 8)) {
            let key = SigningKey::new(TOKEN).unwrap();
            let mut header = key.sign(&body).to_hex().into_bytes();
            header[bit / 8] ^= 1 << (bit % 8);
            let any_case = SignatureConfig { hex_case: HexCase::AnyCase, ..SignatureConfig::default() };
            // Flipping bit 5 of a letter changes only its case: still a refusal under
            // LowerOnly; under AnyCase it may decode to the same tag.
            prop_assert!(key.verify(&body, &header).is_err());
            let same_tag = parse_signature_header(&header, HexCase::AnyCase).ok() == Some(*key.sign(&body).as_bytes());
            prop_assert_eq!(any_case.verify(&key, &body, &header).is_ok(), same_tag);
        }

        #[test]
        fn flipped_body_bit_refused(body in prop::collection::vec(any::<u8>(), 1..512),
                                    bit in any::<prop::sample::Index>()) {
            let key = SigningKey::new(TOKEN).unwrap();
            let header = key.sign(&body).to_hex();
            let mut tampered = body.clone();
            let bit = bit.index(body.len() * 8);
            tampered[bit / 8] ^= 1 << (bit % 8);
            prop_assert_eq!(key.verify(&tampered, header.as_bytes()), Err(SignatureRefusal::Mismatch));
        }

        #[test]
        fn streaming_equals_one_shot(body in prop::collection::vec(any::<u8>(), 0..4096),
                                     cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12)) {
            let key = SigningKey::new(TOKEN).unwrap();
            let header = key.sign(&body).to_hex();
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(body.len() + 1)).collect();
            points.push(0);
            points.push(body.len());
            points.sort_unstable();
            let mut verifier = key.verifier();
            for pair in points.windows(2) {
                verifier.update(&body[pair[0]..pair[1]]);
            }
            prop_assert_eq!(verifier.bytes_seen(), body.len() as u64);
            prop_assert_eq!(verifier.finish(header.as_bytes()), Ok(()));
        }

        #[test]
        fn parse_never_panics(header in prop::collection::vec(any::<u8>(), 0..300)) {
            let lower = parse_signature_header(&header, HexCase::LowerOnly);
            let any = parse_signature_header(&header, HexCase::AnyCase);
            if lower.is_ok() {
                prop_assert_eq!(lower, any);
            }
            let key = SigningKey::new(TOKEN).unwrap();
            let _ = key.verify(b"body", &header);
        }

        #[test]
        fn replay_headers_never_panic(timestamp in prop::collection::vec(any::<u8>(), 0..30),
                                      nonce in prop::collection::vec(any::<u8>(), 0..80),
                                      path in prop::collection::vec(any::<u8>(), 0..40),
                                      now in any::<i64>()) {
            let key = SigningKey::new(TOKEN).unwrap();
            let sig = key.sign(b"").to_hex();
            let head = RequestHead { method: b"POST", path: &path, signature: sig.as_bytes(), timestamp: &timestamp, nonce: &nonce };
            let now = UtcDateTime::from_unix_timestamp(now.clamp(UtcDateTime::MIN.unix_timestamp(), UtcDateTime::MAX.unix_timestamp())).unwrap();
            let result = replay_config(300).verify_replay_protected(&key, &head, b"", now, &MemoryReplayCache::new(4), SCOPE);
            // Random headers never verify against a signature over a different message.
            prop_assert!(result.is_err());
        }

        #[test]
        fn replay_round_trip(body in prop::collection::vec(any::<u8>(), 0..1024),
                             skew in -300i64..=300,
                             nonce in "[A-Za-z0-9_-]{16,64}",
                             path in "/[ -~]{0,40}") {
            let key = SigningKey::new(TOKEN).unwrap();
            let headers = client_sign(NOW + skew, &nonce, "PATCH", &path, &body);
            let result = replay_config(300).verify_replay_protected(
                &key, &head(&headers, b"PATCH", path.as_bytes()), &body, at(NOW), &MemoryReplayCache::new(4), SCOPE);
            prop_assert!(result.is_ok());
        }
    }
}
