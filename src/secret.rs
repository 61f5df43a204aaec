//! Secret material: the one-time [`Token`].
//!
//! Every secret type here zeroizes its memory on drop, prints a redacted form
//! through `Debug`, and has no `Display`, `Serialize`, `Clone` or `PartialEq`.
//! The only way to the secret is the one audited accessor
//! [`Token::expose_secret`].

use core::fmt;
use zeroize::Zeroize;

/// The number of trailing characters of a token that a redacted display shows.
pub(crate) const HINT_LEN: usize = 4;

/// The full API key string, handed to the host exactly once, when a key is
/// created or rolled.
///
/// Show it to the user once and never store it: the crate keeps only a hash
/// (and, for signing keys, a sealed copy). `Debug` prints only the prefix,
/// the environment and the last four characters, e.g. `Token(sk_live_…x9Qa)`.
///
/// ```compile_fail
/// // A token cannot be cloned: there is exactly one copy of the secret.
/// fn dup(t: &api_keys::Token) -> api_keys::Token { t.clone() }
/// ```
///
/// ```compile_fail
/// // Tokens cannot be compared with `==` (that would not be constant-time).
/// fn same(a: &api_keys::Token, b: &api_keys::Token) -> bool { a == b }
/// ```
///
/// ```compile_fail
/// // No `Display`: a token never ends up in a log line by accident.
/// fn show(t: &api_keys::Token) -> String { format!("{t}") }
/// ```
///
#[cfg_attr(
    feature = "serde",
    doc = r#"
```compile_fail
// No `Serialize`, even with the `serde` feature on.
fn ser<T: serde::Serialize>(_: &T) {}
fn leak(t: &api_keys::Token) { ser(t) }
```
"#
)]
pub struct Token {
    /// Zeroized on drop (see `Drop`): every token is built at its exact
    /// length, so the text is the whole allocation.
    text: String,
    /// Length of `<prefix>_<env>_`, for the redacted form.
    head: usize,
}

impl Token {
    pub(crate) fn new(text: String, head: usize) -> Self {
        Self { text, head }
    }

    /// Returns the secret token text.
    ///
    /// # Security
    ///
    /// This is the one place where the secret leaves the crate. Give it to
    /// the user once (a response body, a one-time screen, a secrets manager)
    /// and drop it. Do not log it, store it, put it in a URL or an error
    /// message, or compare it with `==`: present it to
    /// [`KeyManager::verify`](crate::KeyManager::verify) instead, which
    /// compares in constant time.
    #[must_use]
    pub fn expose_secret(&self) -> &str {
        &self.text
    }

    /// The redacted display form: prefix, environment and the last four
    /// characters, e.g. `sk_live_…x9Qa`. Safe to show in a key list.
    #[must_use]
    pub fn redacted(&self) -> String {
        redact(&self.text, self.head)
    }
}

/// `<head>…<last 4>`, never more than the head and four characters.
pub(crate) fn redact(text: &str, head: usize) -> String {
    let prefix = text.get(..head).unwrap_or("");
    let tail_start = text.len().saturating_sub(HINT_LEN).max(head);
    let tail = text.get(tail_start..).unwrap_or("");
    let mut out = String::with_capacity(prefix.len() + 3 + tail.len());
    out.push_str(prefix);
    out.push('…');
    out.push_str(tail);
    out
}

impl Drop for Token {
    fn drop(&mut self) {
        // Wipes the whole allocation, spare capacity included (none is left
        // by the generator, which builds tokens at their exact length).
        let mut bytes = core::mem::take(&mut self.text).into_bytes();
        let len = bytes.capacity();
        bytes.resize(len, 0);
        bytes.as_mut_slice().zeroize();
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Token").field(&self.redacted()).finish()
    }
}

/// The strongest secret a [`KeyFormat`](crate::KeyFormat) allows, in bytes
/// of randomness: 26 (208 bits, 35 characters), the most whose text fits
/// the one-block hashed message.
pub const MAX_SECRET_BYTES: usize = 26;
/// The weakest secret allowed, in bytes of randomness (160 bits).
pub const MIN_SECRET_BYTES: usize = 20;
/// The characters of the strongest secret: 35 base62 characters carry
/// 208.4 bits.
pub(crate) const MAX_SECRET_CHARS: usize = 35;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let text = "sk_live_0123456789abcdefghijSECRETPARTxyzW".to_owned();
        let token = Token::new(text, 8);
        let shown = format!("{token:?}");
        assert_eq!(shown, "Token(\"sk_live_…xyzW\")");
        assert!(!shown.contains("SECRETPART"));
        assert_eq!(token.redacted(), "sk_live_…xyzW");
    }

    #[test]
    fn redact_short_text_never_overlaps() {
        assert_eq!(redact("sk_live_ab", 8), "sk_live_…ab");
        assert_eq!(redact("", 8), "…");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn drop_wipes_the_token_from_freed_memory() {
        use crate::freed_memory::{Memory, holds_any_of};
        let text = "sk_live_0123456789abcdefghijSECRETPARTxyzWsecretsecretsecretsecret";
        let token = Token::new(text.to_owned(), 8);
        let at = token.expose_secret().as_ptr() as usize;
        let mut memory = Memory::open(text.len());
        // The reader sees the live token...
        assert_eq!(memory.read(at), text.as_bytes());
        drop(token);
        // ...and none of it once the token is dropped (past the allocator's
        // bookkeeping at the start of the freed block).
        let freed = memory.read(at);
        assert!(
            !holds_any_of(&freed[16..], text.as_bytes()),
            "{:?}",
            String::from_utf8_lossy(freed)
        );
    }
}
