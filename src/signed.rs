//! Signed requests (`X-Processing-Key` + `X-Processing-Signature`): the
//! request type, the pure decision, and the per-key cache of prepared HMAC
//! states.

use crate::engine::Engine;
use crate::error::{Error, Rejection, VerifyError};
use crate::record::KeyRecord;
use crate::replay::{ReplayCache, ReplayCacheError};
use crate::request::{Decision, RequestContext};
use crate::signing::{
    ReplayVerifyError, RequestHead, RequestSigner, SignatureError, SignatureRefusal, SigningKey,
    parse_signature_header,
};
use crate::token::KeyFormat;
use crate::token::KeyId;
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use time::UtcDateTime;

/// A signed request as the server received it: the raw header values and
/// the exact raw body bytes. Nothing is copied.
///
/// ```
/// use api_keys::SignedRequest;
/// let req = SignedRequest::new(b"4oqXG47O0q0hcARxIYNCAG", b"03c25fcf", br#"{"currency":"BTC"}"#);
/// # let _ = req;
/// ```
#[derive(Clone, Copy)]
pub struct SignedRequest<'a> {
    /// The raw `X-Processing-Key` value: the key id.
    pub key: &'a [u8],
    /// Signature, and for the replay-protected mode timestamp, nonce,
    /// method and path.
    pub head: RequestHead<'a>,
    /// The raw body, exactly as received.
    pub body: &'a [u8],
}

impl<'a> SignedRequest<'a> {
    /// A vendor-compatible (body-only) signed request.
    #[must_use]
    pub fn new(key: &'a [u8], signature: &'a [u8], body: &'a [u8]) -> Self {
        Self {
            key,
            head: RequestHead {
                method: b"",
                path: b"",
                signature,
                timestamp: b"",
                nonce: b"",
            },
            body,
        }
    }

    /// Adds the replay-protected mode's headers and the method and path the
    /// signature binds.
    #[must_use]
    pub fn replay_protected(
        mut self,
        timestamp: &'a [u8],
        nonce: &'a [u8],
        method: &'a [u8],
        path: &'a [u8],
    ) -> Self {
        self.head.timestamp = timestamp;
        self.head.nonce = nonce;
        self.head.method = method;
        self.head.path = path;
        self
    }
}

impl core::fmt::Debug for SignedRequest<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SignedRequest")
            .field("key_len", &self.key.len())
            .field("head", &self.head)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl RequestSigner {
    /// A client-side signer for a token issued by this crate with the
    /// default [`KeyFormat`] (`sk_…`/`pk_…`): the key id (for
    /// `X-Processing-Key`) is read from the token, and the token's text is
    /// the HMAC key, exactly as a CoinsPaid-style client uses its secret
    /// string. For a server with its own prefixes use
    /// [`for_token_with_format`](Self::for_token_with_format).
    ///
    /// # Errors
    ///
    /// [`SignatureError::MalformedToken`] when `token` is not a token of
    /// the default format (the same error type as [`RequestSigner::new`]).
    pub fn for_token(token: &str) -> Result<Self, SignatureError> {
        Self::for_token_with_format(&KeyFormat::default(), token)
    }

    /// [`for_token`](Self::for_token) for a token of `format`.
    ///
    /// # Errors
    ///
    /// [`SignatureError::MalformedToken`] when `token` is not a token of
    /// `format`.
    pub fn for_token_with_format(format: &KeyFormat, token: &str) -> Result<Self, SignatureError> {
        let id = format
            .parse(token)
            .map_err(|_| SignatureError::MalformedToken)?
            .id();
        Self::new(id.to_string(), token.as_bytes())
    }
}

/// Maps a signature refusal to the crate's rejection.
fn refusal(r: SignatureRefusal) -> Rejection {
    match r {
        SignatureRefusal::BodyTooLarge => Rejection::BodyTooLarge,
        SignatureRefusal::StaleTimestamp
        | SignatureRefusal::MalformedTimestamp
        | SignatureRefusal::MalformedNonce => Rejection::StaleRequest,
        SignatureRefusal::ReplayedNonce => Rejection::Replayed,
        _ => Rejection::BadSignature,
    }
}

impl Engine {
    /// Offline checks on a signed request: the key id's form, the signature
    /// header's form and the body size. Nothing that fails here reaches a
    /// store.
    ///
    /// # Errors
    ///
    /// [`Rejection::Malformed`], [`Rejection::BadSignature`],
    /// [`Rejection::BodyTooLarge`].
    pub fn precheck_signed(&self, request: &SignedRequest<'_>) -> Result<KeyId, Rejection> {
        let id = KeyId::parse_bytes(request.key)?;
        let config = &self.policy().signatures;
        parse_signature_header(request.head.signature, config.hex_case).map_err(refusal)?;
        if request.body.len() > config.max_body_len {
            return Err(Rejection::BodyTooLarge);
        }
        Ok(id)
    }

    /// The decision for a signed request against its key's record and the
    /// key's prepared [`SigningKey`]: the signature first, then status and
    /// time, then the request policy — so a caller who knows only a key's
    /// public id learns nothing about its status or allow-lists (all such
    /// refusals come after proof of possession). What cannot be hidden is
    /// decided before: whether the id names a signing key at all (preparing
    /// the key needs its sealed secret), and a sealing-key version the
    /// server lacks (a 500).
    ///
    /// In the replay-protected mode the nonce is recorded **last**, only for
    /// a request that passed every other check, so a refused request (a
    /// revoked, inactive, expired or IP-refused key) never spends
    /// replay-cache space. The window and the cache are checked at `now`:
    /// read it after the record's store lookup, never before. Pass the
    /// request target exactly as the client sent it (behind a router that
    /// strips prefixes, the original URI, not the rewritten one).
    ///
    /// # Errors
    ///
    /// [`VerifyError::Rejected`] when refused (with
    /// [`Rejection::ReplayQuotaExceeded`] when the key holds its share of the
    /// replay cache); [`VerifyError::Failed`] with [`Error::ReplayCache`]
    /// when the replay cache cannot answer.
    pub fn decide_signed(
        &self,
        record: &KeyRecord,
        key: &SigningKey,
        request: &SignedRequest<'_>,
        context: &RequestContext<'_>,
        now: UtcDateTime,
        cache: &dyn ReplayCache,
    ) -> Result<Decision, VerifyError> {
        let config = &self.policy().signatures;
        let nonce = config
            .verify_without_recording(key, &request.head, request.body, now)
            .map_err(refusal)?;
        let decision = self.check_request(record, context, now)?;
        if let Some(nonce) = nonce {
            nonce
                .record(cache, record.id.as_bytes(), now)
                .map_err(|e| match e {
                    ReplayVerifyError::Refused(r) => VerifyError::Rejected(refusal(r)),
                    ReplayVerifyError::Cache(ReplayCacheError::ScopeFull { .. }) => {
                        VerifyError::Rejected(Rejection::ReplayQuotaExceeded)
                    }
                    ReplayVerifyError::Cache(c) => VerifyError::Failed(Error::ReplayCache(c)),
                })?;
        }
        Ok(decision)
    }

    /// Unseals a signing key's secret, checks that it is this record's key
    /// (the sealed secret is the token text: its id, environment, kind and
    /// hash must match the record, so a tampered or mismatched record is
    /// refused), and prepares its HMAC state.
    ///
    /// # Errors
    ///
    /// [`Rejection::NotASigningKey`] (as [`VerifyError::Rejected`]) for a
    /// bearer key; [`Rejection::UnknownKey`] when the record does not match
    /// its sealed secret; [`Error::NoSealingKeys`],
    /// [`Error::UnknownKeyVersion`] or [`Error::Sealing`] (as
    /// [`VerifyError::Failed`]) when it cannot be unsealed.
    pub fn signing_key(&self, record: &KeyRecord) -> Result<SigningKey, VerifyError> {
        let sealed = record
            .sealed_secret
            .as_ref()
            .ok_or(Rejection::NotASigningKey)?;
        let ring = self.sealing().ok_or(Error::NoSealingKeys)?;
        let secret = ring
            .unseal(record.id.as_bytes(), sealed)
            .map_err(|e| match e {
                crate::sealing::SealingError::UnknownVersion(v) => Error::UnknownKeyVersion(v),
                other => Error::Sealing(other),
            })?;
        let text = core::str::from_utf8(&secret).map_err(|_| Rejection::UnknownKey)?;
        let presented = self
            .format()
            .parse(text)
            .map_err(|_| Rejection::UnknownKey)?;
        self.check_possession(&presented, record)?;
        SigningKey::new(&secret).map_err(|_| VerifyError::Rejected(Rejection::NotASigningKey))
    }
}

/// Prepared HMAC states, one per signing key, so a signature check costs
/// one pass over the body plus two blocks, not an unseal and two extra
/// SHA-512 blocks. An entry is used only while the record still holds the
/// very sealed blob it was made from (same sealing-key version and nonce),
/// and the record's environment, kind and hash are the ones it was checked
/// against, so a roll, reseal or record change can never be served a stale
/// or mismatched secret; status and policy are always checked on the fresh
/// record.
#[derive(Default)]
pub(crate) struct SigningKeyCache {
    map: RwLock<HashMap<KeyId, CachedKey>>,
}

/// A prepared key, the sealed blob (version, nonce) it came from, and the
/// record fields it was checked against.
struct CachedKey {
    version: u32,
    nonce: [u8; 24],
    environment: crate::environment::Environment,
    kind: crate::environment::KeyKind,
    hash: crate::hash::SecretHash,
    key: Arc<SigningKey>,
}

impl CachedKey {
    /// Whether this entry was prepared from, and checked against, exactly
    /// this record's sealed secret, environment, kind and hash.
    fn matches(&self, record: &KeyRecord, version: u32, nonce: &[u8; 24]) -> bool {
        self.version == version
            && self.nonce == *nonce
            && self.environment == record.environment
            && self.kind == record.kind
            && record
                .secret_hash
                .as_ref()
                .is_some_and(|hash| self.hash.ct_eq(hash))
    }
}

/// Entries kept before the cache is cleared and refilled.
const SIGNING_CACHE_CAPACITY: usize = 16_384;

impl SigningKeyCache {
    pub(crate) fn get_or_prepare(
        &self,
        engine: &Engine,
        record: &KeyRecord,
    ) -> Result<Arc<SigningKey>, VerifyError> {
        let sealed = record
            .sealed_secret
            .as_ref()
            .ok_or(Rejection::NotASigningKey)?;
        {
            let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(c) = map.get(&record.id)
                && c.matches(record, sealed.key_version, &sealed.nonce)
            {
                return Ok(Arc::clone(&c.key));
            }
        }
        let key = Arc::new(engine.signing_key(record)?);
        // Checked by `signing_key` (possession): a record without a hash
        // never gets this far.
        let hash = record.secret_hash.ok_or(Rejection::UnknownKey)?;
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= SIGNING_CACHE_CAPACITY {
            map.clear();
        }
        map.insert(
            record.id,
            CachedKey {
                version: sealed.key_version,
                nonce: sealed.nonce,
                environment: record.environment,
                kind: record.kind,
                hash,
                key: Arc::clone(&key),
            },
        );
        Ok(key)
    }

    pub(crate) fn forget(&self, id: &KeyId) {
        self.map
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }
}

impl core::fmt::Debug for SigningKeyCache {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let n = self.map.read().map(|m| m.len()).unwrap_or(0);
        write!(f, "SigningKeyCache {{ entries: {n} }}")
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        reason = "test code: a failed expectation should panic"
    )]
    use super::*;
    use crate::engine::NewKey;
    use crate::environment::{Environment, KeyKind};
    use crate::policy::Policy;
    use crate::record::OwnerId;
    use crate::sealing::{SealingKey, SealingKeyRing};
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use time::macros::utc_datetime;

    const T0: UtcDateTime = utc_datetime!(2026-07-01 10:00);

    fn engine() -> Engine {
        let ring = SealingKeyRing::new(SealingKey::new(1, &[7; 32]).unwrap());
        Engine::new(
            KeyFormat::default(),
            Policy::default(),
            None,
            &[],
            Some(ring),
        )
        .unwrap()
    }

    /// A signing key's record, drawn from `seed`.
    fn record(engine: &Engine, seed: u64) -> KeyRecord {
        let spec = NewKey::secret(OwnerId::new("acct_1").unwrap(), "api").signing();
        let mut rng = StdRng::seed_from_u64(seed);
        engine.plan_create(&spec, T0, &mut rng).unwrap().0
    }

    fn prepare(
        cache: &SigningKeyCache,
        engine: &Engine,
        record: &KeyRecord,
    ) -> Result<Arc<SigningKey>, VerifyError> {
        cache.get_or_prepare(engine, record)
    }

    fn entries(cache: &SigningKeyCache) -> usize {
        cache.map.read().unwrap().len()
    }

    #[test]
    fn a_prepared_key_is_reused_for_the_record_it_came_from() {
        let engine = engine();
        let cache = SigningKeyCache::default();
        let rec = record(&engine, 1);
        let first = prepare(&cache, &engine, &rec).unwrap();
        let again = prepare(&cache, &engine, &rec).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "the cached state is reused");
        assert_eq!(entries(&cache), 1);
        assert_eq!(format!("{cache:?}"), "SigningKeyCache { entries: 1 }");
    }

    /// Each field the entry was prepared from and checked against, changed
    /// alone on the record (a tampered or out-of-date store answer): the
    /// cached state is not served; the record is checked afresh, and
    /// refused.
    #[test]
    fn a_prepared_key_is_not_served_for_a_changed_record() {
        let engine = engine();
        let rec = record(&engine, 1);
        type Change = fn(&mut KeyRecord);
        type Expected = fn(&VerifyError) -> bool;
        let changes: [(&str, Change, Expected); 5] = [
            (
                "sealing-key version",
                |r| r.sealed_secret.as_mut().unwrap().key_version = 2,
                |e| matches!(e, VerifyError::Failed(Error::UnknownKeyVersion(2))),
            ),
            (
                "sealing nonce",
                |r| r.sealed_secret.as_mut().unwrap().nonce[0] ^= 1,
                |e| matches!(e, VerifyError::Failed(Error::Sealing(_))),
            ),
            (
                "environment",
                |r| r.environment = Environment::Test,
                |e| e.rejection() == Some(Rejection::UnknownKey),
            ),
            (
                "kind",
                |r| r.kind = KeyKind::Publishable,
                |e| e.rejection() == Some(Rejection::UnknownKey),
            ),
            (
                "secret hash",
                |r| r.secret_hash.as_mut().unwrap().digest[0] ^= 1,
                |e| e.rejection() == Some(Rejection::UnknownKey),
            ),
        ];
        for (what, change, expected) in changes {
            let cache = SigningKeyCache::default();
            prepare(&cache, &engine, &rec).unwrap();
            let mut changed = rec.clone();
            change(&mut changed);
            let err = prepare(&cache, &engine, &changed).err();
            assert!(
                err.as_ref().is_some_and(expected),
                "{what} changed: {err:?}"
            );
            // The entry of the intact record still serves it.
            prepare(&cache, &engine, &rec).unwrap();
        }
    }

    #[test]
    fn a_resealed_record_gets_a_fresh_entry_and_forget_drops_one() {
        let old = engine();
        let cache = SigningKeyCache::default();
        let rec = record(&old, 1);
        let first = prepare(&cache, &old, &rec).unwrap();

        let ring = SealingKeyRing::new(SealingKey::new(2, &[8; 32]).unwrap())
            .with_previous(SealingKey::new(1, &[7; 32]).unwrap())
            .unwrap();
        let mut resealed = rec.clone();
        let sealed = rec.sealed_secret.as_ref().unwrap();
        resealed.sealed_secret = Some(ring.reseal(rec.id.as_bytes(), sealed).unwrap());
        let new = Engine::new(
            KeyFormat::default(),
            Policy::default(),
            None,
            &[],
            Some(ring),
        )
        .unwrap();
        let second = prepare(&cache, &new, &resealed).unwrap();
        assert!(!Arc::ptr_eq(&first, &second), "prepared from the new blob");
        assert!(Arc::ptr_eq(
            &second,
            &prepare(&cache, &new, &resealed).unwrap()
        ));
        assert_eq!(entries(&cache), 1, "one entry per key id");

        cache.forget(&rec.id);
        assert_eq!(entries(&cache), 0, "forget drops the entry");
        assert_eq!(format!("{cache:?}"), "SigningKeyCache { entries: 0 }");
        let third = prepare(&cache, &new, &resealed).unwrap();
        assert!(!Arc::ptr_eq(&second, &third), "prepared again after forget");
    }

    #[test]
    fn entries_of_several_keys_coexist_and_the_cache_is_bounded() {
        let engine = engine();
        let cache = SigningKeyCache::default();
        let a = record(&engine, 1);
        let b = record(&engine, 2);
        let first_a = prepare(&cache, &engine, &a).unwrap();
        let first_b = prepare(&cache, &engine, &b).unwrap();
        assert_eq!(entries(&cache), 2);
        assert!(Arc::ptr_eq(
            &first_a,
            &prepare(&cache, &engine, &a).unwrap()
        ));
        assert!(Arc::ptr_eq(
            &first_b,
            &prepare(&cache, &engine, &b).unwrap()
        ));

        // Fill the cache to its capacity with other ids: the next new key
        // clears it before going in.
        {
            let mut map = cache.map.write().unwrap();
            let template = map.get(&a.id).map(|c| CachedKey {
                version: c.version,
                nonce: c.nonce,
                environment: c.environment,
                kind: c.kind,
                hash: c.hash,
                key: Arc::clone(&c.key),
            });
            let template = template.unwrap();
            let mut n: u128 = 0;
            while map.len() < SIGNING_CACHE_CAPACITY {
                n += 1;
                map.insert(
                    KeyId::from_bytes(n.to_be_bytes()),
                    CachedKey {
                        key: Arc::clone(&template.key),
                        ..template
                    },
                );
            }
        }
        // A cached key is served without growing the map.
        assert!(Arc::ptr_eq(
            &first_a,
            &prepare(&cache, &engine, &a).unwrap()
        ));
        assert_eq!(entries(&cache), SIGNING_CACHE_CAPACITY);
        let c = record(&engine, 3);
        prepare(&cache, &engine, &c).unwrap();
        assert_eq!(entries(&cache), 1, "cleared at capacity, then refilled");
        assert!(
            !Arc::ptr_eq(&first_a, &prepare(&cache, &engine, &a).unwrap()),
            "a cleared entry is prepared again"
        );
        assert_eq!(entries(&cache), 2);
    }

    #[test]
    fn debug_shows_lengths_not_values() {
        let req = SignedRequest::new(b"4oqXG47O0q0hcARxIYNCAG", b"03c25fcf", b"{\"a\":1}")
            .replay_protected(
                b"1782900000",
                b"nonce-value-1",
                b"POST",
                b"/v1/pay?x=secret",
            );
        let shown = format!("{req:?}");
        assert_eq!(
            shown,
            "SignedRequest { key_len: 22, head: RequestHead { method: \"POST\", path_len: 16, .. }, body_len: 7 }"
        );
    }

    /// `decide_signed` called directly (a host that skipped
    /// `precheck_signed`): an over-long body is still refused as too large
    /// (413), not as a bad signature (401).
    #[test]
    fn decide_signed_refuses_an_over_long_body_as_too_large() {
        let ring = SealingKeyRing::new(SealingKey::new(1, &[7; 32]).unwrap());
        let mut policy = Policy::default();
        policy.signatures.max_body_len = 4;
        let engine = Engine::new(KeyFormat::default(), policy, None, &[], Some(ring)).unwrap();
        let rec = record(&engine, 1);
        let key = engine.signing_key(&rec).unwrap();
        let cache = crate::replay::MemoryReplayCache::new(16);
        let id = rec.id.to_string();
        let decide = |body: &[u8]| {
            let signature = key.sign(body).to_hex();
            let request = SignedRequest::new(id.as_bytes(), signature.as_bytes(), body);
            engine.decide_signed(&rec, &key, &request, &RequestContext::new(), T0, &cache)
        };
        assert!(decide(b"1234").is_ok(), "at the limit");
        let err = decide(b"12345").unwrap_err();
        assert_eq!(err.rejection(), Some(Rejection::BodyTooLarge));
        assert_eq!(err.rejection().map(Rejection::http_status), Some(413));
    }
}
