//! The token format: `<prefix>_<env>_<body>`, its configuration
//! ([`KeyFormat`]), generation, and the offline parser.
//!
//! # Layout
//!
//! ```text
//! sk_live_4Hq0…(22 chars: key id)…(35 chars: secret)…(6 chars: checksum)
//! ^^ ^^^^ ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
//! |  |    body: base62 (0-9A-Za-z), fixed length
//! |  environment: `test` or `live`
//! prefix: per kind, default `sk` (secret) / `pk` (publishable)
//! ```
//!
//! * The **key id** (16 bytes from the OS CSPRNG, 22 characters: one
//!   128-bit big-endian number in base62) is public: it names the record in
//!   the store, in logs and in `X-Processing-Key`.
//! * The **secret** is 35 characters drawn uniformly from the 62-letter
//!   alphabet with the OS CSPRNG (208 bits; at least 27 characters = 160
//!   bits with [`KeyFormatBuilder::secret_bytes`]). It is what proves
//!   possession, and its characters are what the stored hash covers, so a
//!   verify decodes nothing but the id.
//! * The **checksum** is CRC-32 (IEEE) over every byte before it, prefix and
//!   environment included, as 6 base62 characters. CRC-32 detects every
//!   error burst of up to 32 bits, so any single substituted character and
//!   any swap of two adjacent characters is refused offline; a deletion or an
//!   insertion changes the fixed length; `test`→`live` changes the checksum.
//!   It is not a MAC: it keeps typos and truncations away from the store and
//!   lets secret scanners recognise leaked tokens with few false positives.
//!
//! The body is fixed-length and its alphabet has no `_`, so the token is
//! parsed from the right and a prefix may itself contain `_`. With the
//! default format a token is 71 characters; [`KeyFormat::scanner_regex`]
//! gives the regular expression a secret scanner would use.

use crate::base62;
use crate::environment::{Environment, KeyKind};
use crate::error::{ConfigError, Error, Rejection};
use crate::hash::MessageBlock;
use crate::secret::{MAX_SECRET_BYTES, MAX_SECRET_CHARS, MIN_SECRET_BYTES, Token};
use core::fmt;
use core::hash::{Hash, Hasher};
use rand::TryCryptoRng;
use zeroize::Zeroizing;

/// Bytes in a key id.
pub const KEY_ID_BYTES: usize = 16;
/// Characters of a key id in base62.
pub const KEY_ID_CHARS: usize = base62::encoded_len(KEY_ID_BYTES);
/// Characters of the checksum at the end of every token.
pub const CHECKSUM_CHARS: usize = base62::encoded_len(4);
/// The longest prefix a [`KeyFormat`] accepts.
pub const MAX_PREFIX_LEN: usize = 32;
/// Length of the environment word (`test` / `live`).
const ENV_CHARS: usize = 4;

/// The public, stable, non-secret identifier of a key: 16 random bytes,
/// written as 22 base62 characters.
///
/// It is what logs, dashboards, revoke-by-id and the `X-Processing-Key`
/// header carry, and how a store finds a record. Knowing it grants nothing.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyId([u8; KEY_ID_BYTES]);

impl KeyId {
    /// Builds an id from its 16 bytes (for stores that keep ids as binary).
    #[must_use]
    pub const fn from_bytes(bytes: [u8; KEY_ID_BYTES]) -> Self {
        Self(bytes)
    }

    /// The 16 bytes of the id.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; KEY_ID_BYTES] {
        &self.0
    }

    /// Parses the 22-character base62 form (as shown by `Display`).
    ///
    /// # Errors
    ///
    /// [`Rejection::Malformed`] when the text is not exactly a canonical
    /// 22-character base62 id.
    pub fn parse(text: &str) -> Result<Self, Rejection> {
        Self::parse_bytes(text.as_bytes())
    }

    /// Parses the base62 form from raw header bytes.
    ///
    /// # Errors
    ///
    /// [`Rejection::Malformed`] when the bytes are not exactly a canonical
    /// 22-character base62 id.
    pub fn parse_bytes(text: &[u8]) -> Result<Self, Rejection> {
        let value = base62::decode_id(text).ok_or(Rejection::Malformed)?;
        Ok(Self(value.to_be_bytes()))
    }

    /// The first (`false`) or last (`true`) 8 bytes as a big-endian word.
    pub(crate) fn word_be(&self, second: bool) -> u64 {
        let (a, b) = self.0.split_at(8);
        let half = if second { b } else { a };
        let mut w = [0u8; 8];
        w.copy_from_slice(half);
        u64::from_be_bytes(w)
    }

    /// The first 8 bytes as a word, for hashing and sharding: the id is
    /// uniformly random, so they are already a good hash.
    pub(crate) fn word(&self, second: bool) -> u64 {
        let (a, b) = self.0.split_at(8);
        let half = if second { b } else { a };
        let mut w = [0u8; 8];
        w.copy_from_slice(half);
        u64::from_le_bytes(w)
    }
}

impl core::str::FromStr for KeyId {
    type Err = Rejection;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Hash for KeyId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.word(false));
        state.write_u64(self.word(true));
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(KEY_ID_CHARS);
        base62::encode_into(&self.0, &mut s);
        f.write_str(&s)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl serde::Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl<'de> serde::Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        KeyId::parse(&text).map_err(|_| serde::de::Error::custom("malformed key id"))
    }
}

/// The shape of the tokens a deployment issues: a prefix per kind and the
/// secret length. Validated at construction, immutable afterwards.
///
/// | setting | default | allowed |
/// |---|---|---|
/// | secret prefix | `sk` | 1–32 of `a-z0-9_`, starts with a letter, no `_` at the end, no `__` |
/// | publishable prefix | `pk` | the same, and different from the secret prefix |
/// | secret bytes (of randomness) | 26 (208 bits, 35 characters) | 20 (160 bits, 27 characters) to 26 |
///
/// ```
/// use api_keys::KeyFormat;
/// // SignatureAPI's `key_test_…` / `key_live_…` for secret keys:
/// let format = KeyFormat::builder().secret_prefix("key").build()?;
/// assert_eq!(format.secret_prefix(), "key");
/// # Ok::<(), api_keys::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFormat {
    secret_prefix: String,
    publishable_prefix: String,
    secret_bytes: usize,
    /// Derived lengths, computed once: body, secret-key token, publishable
    /// token.
    lens: Lengths,
    /// The checksum state after each head, computed once.
    heads: HeadChecksums,
}

/// CRC-32 states after each head `<prefix>_<env>_`, by kind then
/// environment: the parser matched the head exactly, so it continues the
/// checksum from here over the body only (no CPU-feature detection and no
/// head bytes per token). Derived from the prefixes, so two formats with
/// the same prefixes have the same states: equality looks no further.
#[derive(Clone)]
struct HeadChecksums([[crc32fast::Hasher; 2]; 2]);

impl HeadChecksums {
    fn of(secret_prefix: &str, publishable_prefix: &str) -> Self {
        let state = |p: &str, env: Environment| {
            let mut h = crc32fast::Hasher::new();
            for part in [p, "_", env.as_str(), "_"] {
                h.update(part.as_bytes());
            }
            h
        };
        let both = |p: &str| [state(p, Environment::Test), state(p, Environment::Live)];
        Self([both(secret_prefix), both(publishable_prefix)])
    }

    fn get(&self, kind: KeyKind, environment: Environment) -> crc32fast::Hasher {
        let [secret, publishable] = &self.0;
        let [test, live] = match kind {
            KeyKind::Secret => secret,
            KeyKind::Publishable => publishable,
        };
        match environment {
            Environment::Test => test.clone(),
            Environment::Live => live.clone(),
        }
    }
}

impl PartialEq for HeadChecksums {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for HeadChecksums {}

impl fmt::Debug for HeadChecksums {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HeadChecksums")
    }
}

/// The number of base62 characters that carry `bytes` bytes of randomness:
/// the smallest `n` with `62^n >= 256^bytes` (for the allowed 20 to 26
/// bytes; checked by a unit test).
const fn secret_chars(bytes: usize) -> usize {
    match bytes {
        ..=20 => 27,
        21 => 29,
        22 => 30,
        23 => 31,
        24 => 33,
        25 => 34,
        _ => MAX_SECRET_CHARS,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Lengths {
    body: usize,
    secret_chars: usize,
    secret_token: usize,
    publishable_token: usize,
}

impl Lengths {
    fn of(secret_prefix: &str, publishable_prefix: &str, secret_bytes: usize) -> Self {
        let secret_chars = secret_chars(secret_bytes);
        let body = KEY_ID_CHARS + secret_chars + CHECKSUM_CHARS;
        let token = |p: &str| p.len() + 1 + ENV_CHARS + 1 + body;
        Self {
            body,
            secret_chars,
            secret_token: token(secret_prefix),
            publishable_token: token(publishable_prefix),
        }
    }
}

impl Default for KeyFormat {
    fn default() -> Self {
        Self {
            secret_prefix: "sk".to_owned(),
            publishable_prefix: "pk".to_owned(),
            secret_bytes: MAX_SECRET_BYTES,
            lens: Lengths::of("sk", "pk", MAX_SECRET_BYTES),
            heads: HeadChecksums::of("sk", "pk"),
        }
    }
}

/// Builder for [`KeyFormat`]; [`build`](KeyFormatBuilder::build) validates.
#[derive(Debug, Clone)]
pub struct KeyFormatBuilder {
    format: KeyFormat,
}

impl KeyFormatBuilder {
    /// The prefix of secret keys (default `sk`).
    #[must_use]
    pub fn secret_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.format.secret_prefix = prefix.into();
        self
    }

    /// The prefix of publishable keys (default `pk`).
    #[must_use]
    pub fn publishable_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.format.publishable_prefix = prefix.into();
        self
    }

    /// The secret's strength in bytes of randomness (default 26 = 208 bits;
    /// 20 to 26). The secret is written as the fewest base62 characters that
    /// carry it: 27 characters for 20 bytes, 35 for 26. If in doubt, do not
    /// change this value.
    #[must_use]
    pub fn secret_bytes(mut self, bytes: usize) -> Self {
        self.format.secret_bytes = bytes;
        self
    }

    /// Validates and returns the format.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Prefix`] for an empty, over-long, non-ASCII or
    /// ill-formed prefix, [`ConfigError::SamePrefix`] when both kinds share a
    /// prefix, [`ConfigError::SecretLength`] for a secret weaker than 160
    /// bits or stronger than 208 (26 bytes).
    pub fn build(self) -> Result<KeyFormat, ConfigError> {
        let mut f = self.format;
        validate_prefix(&f.secret_prefix)?;
        validate_prefix(&f.publishable_prefix)?;
        if f.secret_prefix == f.publishable_prefix {
            return Err(ConfigError::SamePrefix);
        }
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&f.secret_bytes) {
            return Err(ConfigError::SecretLength {
                bytes: f.secret_bytes,
            });
        }
        f.lens = Lengths::of(&f.secret_prefix, &f.publishable_prefix, f.secret_bytes);
        f.heads = HeadChecksums::of(&f.secret_prefix, &f.publishable_prefix);
        Ok(f)
    }
}

fn validate_prefix(prefix: &str) -> Result<(), ConfigError> {
    let b = prefix.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= MAX_PREFIX_LEN
        && b.first().is_some_and(u8::is_ascii_lowercase)
        && b.last() != Some(&b'_')
        && !prefix.contains("__")
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_');
    if ok { Ok(()) } else { Err(ConfigError::Prefix) }
}

impl KeyFormat {
    /// Starts a builder from the defaults.
    #[must_use]
    pub fn builder() -> KeyFormatBuilder {
        KeyFormatBuilder {
            format: KeyFormat::default(),
        }
    }

    /// The prefix of secret keys.
    #[must_use]
    pub fn secret_prefix(&self) -> &str {
        &self.secret_prefix
    }

    /// The prefix of publishable keys.
    #[must_use]
    pub fn publishable_prefix(&self) -> &str {
        &self.publishable_prefix
    }

    /// The prefix for a kind.
    #[must_use]
    pub fn prefix(&self, kind: KeyKind) -> &str {
        match kind {
            KeyKind::Secret => &self.secret_prefix,
            KeyKind::Publishable => &self.publishable_prefix,
        }
    }

    /// The secret's strength in bytes of randomness.
    #[must_use]
    pub fn secret_bytes(&self) -> usize {
        self.secret_bytes
    }

    /// Characters of the secret in a token.
    #[must_use]
    pub fn secret_chars(&self) -> usize {
        self.lens.secret_chars
    }

    /// Characters in a token body (id, secret, checksum).
    #[must_use]
    pub fn body_len(&self) -> usize {
        self.lens.body
    }

    /// The exact length of every token of `kind`.
    #[must_use]
    pub fn token_len(&self, kind: KeyKind) -> usize {
        match kind {
            KeyKind::Secret => self.lens.secret_token,
            KeyKind::Publishable => self.lens.publishable_token,
        }
    }

    /// The longest token this format produces; the parser refuses anything
    /// longer before looking at a byte.
    #[must_use]
    pub fn max_token_len(&self) -> usize {
        self.token_len(KeyKind::Secret)
            .max(self.token_len(KeyKind::Publishable))
    }

    /// A regular expression matching exactly the tokens of this format, for
    /// secret scanners, e.g. with the defaults
    /// `\b(?:sk|pk)_(?:test|live)_[0-9A-Za-z]{63}\b`.
    #[must_use]
    pub fn scanner_regex(&self) -> String {
        format!(
            r"\b(?:{}|{})_(?:test|live)_[0-9A-Za-z]{{{}}}\b",
            self.secret_prefix,
            self.publishable_prefix,
            self.body_len()
        )
    }

    /// Length of `<prefix>_<env>_` for a kind (for redaction).
    pub(crate) fn head_len(&self, kind: KeyKind) -> usize {
        self.prefix(kind).len() + 1 + ENV_CHARS + 1
    }

    /// Generates a new key from the operating system's CSPRNG.
    ///
    /// # Errors
    ///
    /// [`Error::Randomness`] when the operating system cannot provide random
    /// bytes; never panics.
    pub fn generate(&self, kind: KeyKind, environment: Environment) -> Result<NewToken, Error> {
        self.generate_with_rng(kind, environment, &mut rand::rngs::SysRng)
    }

    /// Generates a new key from the caller's CSPRNG (for deterministic tests
    /// and vectors; production code uses [`generate`](Self::generate)).
    ///
    /// Draws the key id and the secret in one call to the generator.
    ///
    /// # Errors
    ///
    /// [`Error::Randomness`] when the generator fails.
    pub fn generate_with_rng<R: TryCryptoRng + ?Sized>(
        &self,
        kind: KeyKind,
        environment: Environment,
        rng: &mut R,
    ) -> Result<NewToken, Error> {
        self.generate_token(None, kind, environment, rng)
    }

    /// A new token for an existing key id: the secret a pending key gets
    /// at its first activation (its id was drawn when it was generated).
    pub(crate) fn generate_for_id<R: TryCryptoRng + ?Sized>(
        &self,
        id: KeyId,
        kind: KeyKind,
        environment: Environment,
        rng: &mut R,
    ) -> Result<NewToken, Error> {
        self.generate_token(Some(id), kind, environment, rng)
    }

    /// A new key id alone, from the caller's CSPRNG (a pending key's).
    pub(crate) fn generate_id<R: TryCryptoRng + ?Sized>(rng: &mut R) -> Result<KeyId, Error> {
        let mut id = [0u8; KEY_ID_BYTES];
        rng.try_fill_bytes(&mut id).map_err(|_| Error::Randomness)?;
        Ok(KeyId(id))
    }

    /// The redacted form of a pending key, which has no token yet:
    /// `<prefix>_<environment>_…`.
    pub(crate) fn redacted_head(&self, kind: KeyKind, environment: Environment) -> String {
        format!("{}_{}_…", self.prefix(kind), environment.as_str())
    }

    fn generate_token<R: TryCryptoRng + ?Sized>(
        &self,
        given: Option<KeyId>,
        kind: KeyKind,
        environment: Environment,
        rng: &mut R,
    ) -> Result<NewToken, Error> {
        let mut raw = SecretRandom::default();
        rng.try_fill_bytes(&mut raw.0)
            .map_err(|_| Error::Randomness)?;
        let (id_bytes, mut random) = raw.0.split_at(KEY_ID_BYTES);
        let mut id = [0u8; KEY_ID_BYTES];
        id.copy_from_slice(id_bytes);
        let id = given.unwrap_or(KeyId(id));

        // The whole token in one buffer: head, id, secret, then the
        // checksum over all of it. The lengths come from the format, so the
        // `None` arms below are unreachable (and reported, never a panic).
        let bug = || Error::Randomness;
        let head = self.head_len(kind);
        let len = self.token_len(kind);
        let secret_at = head + KEY_ID_CHARS;
        let secret_chars = self.lens.secret_chars;
        let covered = len - CHECKSUM_CHARS;
        let mut text = Zeroizing::new(vec![0u8; len]);
        let (head_out, body) = text.split_at_mut_checked(head).ok_or_else(bug)?;
        let parts = self.prefix(kind).as_bytes().iter().chain(b"_");
        let parts = parts.chain(environment.as_str().as_bytes()).chain(b"_");
        for (dst, src) in head_out.iter_mut().zip(parts) {
            *dst = *src;
        }
        let (id_out, rest) = body.split_at_mut_checked(KEY_ID_CHARS).ok_or_else(bug)?;
        id_out.copy_from_slice(&base62::encode_id(u128::from_be_bytes(*id.as_bytes())));
        let (secret_out, _) = rest.split_at_mut_checked(secret_chars).ok_or_else(bug)?;
        // Characters drawn uniformly from the alphabet; a rejected draw is
        // rare enough (about 1 in 10 000 tokens) that the refill is a loop.
        let mut filled = base62::fill_uniform(random, secret_out, 0);
        while filled < secret_chars {
            rng.try_fill_bytes(&mut raw.0)
                .map_err(|_| Error::Randomness)?;
            random = &raw.0;
            filled = base62::fill_uniform(random, secret_out, filled);
        }
        let mut crc = self.heads.get(kind, environment);
        crc.update(text.get(head..covered).ok_or_else(bug)?);
        let crc = crc.finalize();
        text.get_mut(covered..)
            .ok_or_else(bug)?
            .copy_from_slice(&base62::encode_u32(crc));
        // Every byte written is ASCII (prefix, environment, alphabet).
        let text = String::from_utf8(core::mem::take(&mut *text)).map_err(|_| bug())?;
        Ok(NewToken {
            id,
            kind,
            environment,
            token: Token::new(text, head),
            secret_at,
        })
    }

    /// Parses a presented token offline: length cap, alphabet, layout from
    /// the right, checksum, environment and kind. No store is consulted and
    /// nothing is allocated.
    ///
    /// Surrounding whitespace, a `Bearer ` prefix, percent-encoding or any
    /// other decoration is refused: strip the scheme in the HTTP layer.
    ///
    /// # Errors
    ///
    /// [`Rejection::Malformed`] for anything that is not a well-formed token
    /// of this format (including a bad checksum).
    pub fn parse(&self, presented: &str) -> Result<PresentedKey, Rejection> {
        let bytes = presented.as_bytes();
        // O(1) length cap before any byte is read.
        if bytes.len() != self.lens.secret_token && bytes.len() != self.lens.publishable_token {
            return Err(Rejection::Malformed);
        }
        let body_len = self.body_len();
        let split = bytes
            .len()
            .checked_sub(body_len)
            .ok_or(Rejection::Malformed)?;
        let (head, body) = bytes.split_at_checked(split).ok_or(Rejection::Malformed)?;
        // head = <prefix>_<env>_
        let head = head.strip_suffix(b"_").ok_or(Rejection::Malformed)?;
        let env_at = head
            .len()
            .checked_sub(ENV_CHARS)
            .ok_or(Rejection::Malformed)?;
        let (prefix, env) = head.split_at_checked(env_at).ok_or(Rejection::Malformed)?;
        let prefix = prefix.strip_suffix(b"_").ok_or(Rejection::Malformed)?;
        let environment = Environment::from_token_word(env).ok_or(Rejection::Malformed)?;
        let kind = if prefix == self.secret_prefix.as_bytes() {
            KeyKind::Secret
        } else if prefix == self.publishable_prefix.as_bytes() {
            KeyKind::Publishable
        } else {
            return Err(Rejection::Malformed);
        };

        let secret_chars = self.lens.secret_chars;
        let (id_text, rest) = body
            .split_at_checked(KEY_ID_CHARS)
            .ok_or(Rejection::Malformed)?;
        let (secret_text, crc_text) = rest
            .split_at_checked(secret_chars)
            .ok_or(Rejection::Malformed)?;

        // Encoding the computed checksum and comparing text is cheaper than
        // decoding the presented one, and as strict: the encoding is unique.
        let covered = body
            .get(..body.len().saturating_sub(CHECKSUM_CHARS))
            .ok_or(Rejection::Malformed)?;
        let crc = self.checksum(kind, environment, covered);
        if crc_text != base62::encode_u32(crc) {
            return Err(Rejection::Malformed);
        }

        let id = KeyId::parse_bytes(id_text)?;
        if !base62::is_alphabet(secret_text) {
            return Err(Rejection::Malformed);
        }
        // The secret's text is what is hashed: no decoding.
        let message = MessageBlock::new(&id, environment, kind, secret_text);
        Ok(PresentedKey {
            id,
            kind,
            environment,
            message,
        })
    }
}

impl KeyFormat {
    /// CRC-32 of `<prefix>_<env>_` followed by `body`, continued from the
    /// head's precomputed checksum.
    fn checksum(&self, kind: KeyKind, environment: Environment, body: &[u8]) -> u32 {
        let mut h = self.heads.get(kind, environment);
        h.update(body);
        h.finalize()
    }
}

/// Bytes drawn from the generator per call: the key id, then 32 bytes that
/// give 42 candidate characters for a secret of at most 35.
const DRAW_BYTES: usize = KEY_ID_BYTES + 32;

/// Random bytes for one key, zeroized on drop.
struct SecretRandom([u8; DRAW_BYTES]);

impl Default for SecretRandom {
    fn default() -> Self {
        Self([0; DRAW_BYTES])
    }
}

impl Drop for SecretRandom {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// A freshly generated key: its public id and the one-time token.
#[derive(Debug)]
pub struct NewToken {
    /// The public key id embedded in the token.
    pub id: KeyId,
    /// The kind written in the token's prefix.
    pub kind: KeyKind,
    /// The environment written in the token.
    pub environment: Environment,
    /// The secret token, to be shown once.
    pub token: Token,
    /// Where the secret's characters start in the token.
    secret_at: usize,
}

impl NewToken {
    /// The secret's characters (what the stored hash covers).
    pub(crate) fn secret_text(&self, format: &KeyFormat) -> &[u8] {
        let end = self.secret_at + format.lens.secret_chars;
        self.token
            .expose_secret()
            .as_bytes()
            .get(self.secret_at..end)
            .unwrap_or_default()
    }
}

/// A token that passed the offline checks: its parts, with the secret kept
/// in a zeroizing buffer that only the crate reads.
pub struct PresentedKey {
    id: KeyId,
    kind: KeyKind,
    environment: Environment,
    /// The hashed message (id, environment, kind, secret), padded.
    message: MessageBlock,
}

impl PresentedKey {
    /// The public key id.
    #[must_use]
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The kind named by the prefix.
    #[must_use]
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The environment named in the token.
    #[must_use]
    pub fn environment(&self) -> Environment {
        self.environment
    }

    pub(crate) fn message(&self) -> &MessageBlock {
        &self.message
    }
}

impl fmt::Debug for PresentedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresentedKey")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("environment", &self.environment)
            .field("secret", &"[redacted]")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_chars_carry_the_randomness_and_fit_one_block() {
        for bytes in MIN_SECRET_BYTES..=MAX_SECRET_BYTES {
            let chars = secret_chars(bytes);
            let bits = |n: usize| n as f64 * 62f64.log2();
            assert!(bits(chars) >= (8 * bytes) as f64, "{bytes}");
            assert!(bits(chars - 1) < (8 * bytes) as f64, "{bytes}");
        }
        assert_eq!(secret_chars(MAX_SECRET_BYTES), MAX_SECRET_CHARS);
        // Header, id and the longest secret fit one SHA-256 block.
        const { assert!(4 + KEY_ID_BYTES + MAX_SECRET_CHARS <= 55) };
    }

    #[test]
    fn lengths_follow_the_prefixes_and_the_strength() {
        let d = KeyFormat::default();
        assert_eq!(
            (d.secret_bytes(), d.secret_chars(), d.body_len()),
            (26, 35, 63)
        );
        assert_eq!(
            (d.token_len(KeyKind::Publishable), d.max_token_len()),
            (71, 71)
        );
        let f = KeyFormat::builder()
            .secret_prefix("acme_sk")
            .secret_bytes(20)
            .build()
            .unwrap();
        assert_eq!(
            (f.secret_bytes(), f.secret_chars(), f.body_len()),
            (20, 27, 55)
        );
        assert_eq!(f.token_len(KeyKind::Secret), 68);
        assert_eq!(f.token_len(KeyKind::Publishable), 63);
        assert_eq!(f.max_token_len(), 68);
        let g = KeyFormat::builder()
            .publishable_prefix("public")
            .build()
            .unwrap();
        assert_eq!(g.max_token_len(), 75);
        assert_eq!((d.secret_prefix(), d.publishable_prefix()), ("sk", "pk"));
        assert_eq!(
            (g.secret_prefix(), g.publishable_prefix()),
            ("sk", "public")
        );
        assert_eq!(g.prefix(KeyKind::Publishable), "public");
    }

    #[test]
    fn prefixes_may_hold_digits_and_single_underscores() {
        for ok in ["k8s", "k8s_sk", "a1_b2_c3", "x"] {
            let f = KeyFormat::builder().secret_prefix(ok).build();
            assert_eq!(f.map(|f| f.secret_prefix().to_owned()), Ok(ok.to_owned()));
        }
    }

    #[test]
    fn key_id_hashes_cover_both_halves() {
        use std::hash::BuildHasher;
        let hasher = std::collections::hash_map::RandomState::new();
        let base = KeyId::from_bytes([0x11; KEY_ID_BYTES]);
        let mut first = [0x11; KEY_ID_BYTES];
        first[3] = 0x12;
        let mut second = [0x11; KEY_ID_BYTES];
        second[12] = 0x12;
        let h = |id: KeyId| hasher.hash_one(id);
        assert_eq!(h(base), h(KeyId::from_bytes([0x11; KEY_ID_BYTES])));
        assert_ne!(h(base), h(KeyId::from_bytes(first)));
        assert_ne!(h(base), h(KeyId::from_bytes(second)));
    }

    #[test]
    fn debug_forms() {
        let f = KeyFormat::default();
        let t = f.generate(KeyKind::Publishable, Environment::Test).unwrap();
        let id = t.id.to_string();
        assert_eq!(format!("{:?}", t.id), format!("KeyId({id})"));
        let presented = f.parse(t.token.expose_secret()).unwrap();
        assert_eq!(
            format!("{presented:?}"),
            format!(
                "PresentedKey {{ id: KeyId({id}), kind: Publishable, environment: Test, \
                 secret: \"[redacted]\" }}"
            )
        );
        assert!(format!("{f:?}").contains("heads: HeadChecksums }"), "{f:?}");
    }

    #[test]
    fn formats_with_the_same_settings_are_equal() {
        assert_eq!(KeyFormat::default(), KeyFormat::builder().build().unwrap());
        let acme = || {
            KeyFormat::builder()
                .secret_prefix("acme_sk")
                .secret_bytes(20)
                .build()
                .unwrap()
        };
        assert_eq!(acme(), acme());
        assert_ne!(acme(), KeyFormat::default());
    }

    #[test]
    fn each_key_is_one_draw_of_id_then_secret_candidates() {
        // A generator that hands out 0, 1, 2, ... and records each request.
        struct Counter(u8, Vec<usize>);
        impl rand::TryRng for Counter {
            type Error = core::convert::Infallible;
            fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
                unreachable!()
            }
            fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
                unreachable!()
            }
            fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
                self.1.push(dst.len());
                for b in dst {
                    *b = self.0;
                    self.0 = self.0.wrapping_add(1);
                }
                Ok(())
            }
        }
        impl TryCryptoRng for Counter {}
        let f = KeyFormat::default();
        let mut rng = Counter(0, Vec::new());
        let first = f
            .generate_with_rng(KeyKind::Secret, Environment::Live, &mut rng)
            .unwrap();
        let second = f
            .generate_with_rng(KeyKind::Secret, Environment::Live, &mut rng)
            .unwrap();
        // One call per key: 16 id bytes, then 32 bytes of candidates (42
        // groups, enough for the 35 characters here).
        assert_eq!(rng.1, [48, 48]);
        assert_eq!(first.id.as_bytes(), &core::array::from_fn(|i| i as u8));
        assert_eq!(
            second.id.as_bytes(),
            &core::array::from_fn(|i| (i + 48) as u8)
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn drop_wipes_the_random_bytes_from_freed_memory() {
        use crate::freed_memory::{Memory, holds_any_of};
        let mut random = Box::new(SecretRandom::default());
        for (i, b) in random.0.iter_mut().enumerate() {
            *b = 0x80 | i as u8;
        }
        let drawn = random.0;
        let at = random.0.as_ptr() as usize;
        let mut memory = Memory::open(DRAW_BYTES);
        assert_eq!(memory.read(at), &drawn[..]);
        drop(random);
        // Past the allocator's bookkeeping at the start of the freed block.
        let freed = memory.read(at);
        assert!(!holds_any_of(&freed[16..], &drawn), "{freed:?}");
    }

    #[test]
    fn continued_checksum_equals_the_whole_one() {
        let f = KeyFormat::builder()
            .secret_prefix("acme_sk")
            .build()
            .unwrap();
        for kind in KeyKind::ALL {
            for env in Environment::ALL {
                let head = format!("{}_{}_", f.prefix(kind), env.as_str());
                let body = b"0123456789abcdefXYZ";
                let mut whole = head.into_bytes();
                whole.extend_from_slice(body);
                assert_eq!(f.checksum(kind, env, body), crc32fast::hash(&whole));
            }
        }
    }

    #[test]
    fn secret_characters_are_uniform_and_refills_work() {
        // A generator of all-ones bytes gives only rejected groups (63):
        // generation must refill, and fail closed when the generator fails
        // rather than loop or hand out a short secret.
        struct Ones(usize);
        impl rand::TryRng for Ones {
            type Error = core::convert::Infallible;
            fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
                Ok(u32::MAX)
            }
            fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
                Ok(u64::MAX)
            }
            fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
                self.0 += 1;
                // After three all-ones draws, bytes whose groups are all 0.
                dst.fill(if self.0 > 3 { 0 } else { 0xFF });
                Ok(())
            }
        }
        impl TryCryptoRng for Ones {}
        let f = KeyFormat::default();
        let t = f
            .generate_with_rng(KeyKind::Secret, Environment::Live, &mut Ones(0))
            .unwrap();
        let text = t.token.expose_secret();
        assert_eq!(text.len(), f.token_len(KeyKind::Secret));
        let secret = &text[8 + KEY_ID_CHARS..8 + KEY_ID_CHARS + MAX_SECRET_CHARS];
        assert_eq!(secret, "0".repeat(MAX_SECRET_CHARS));
        assert!(f.parse(text).is_ok());
    }
}
