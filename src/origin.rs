//! Domain allow-lists checked against a request's `Origin` / `Referer`
//! headers.
//!
//! A key record may carry a [`DomainAllowList`]: the web sites (by host name)
//! allowed to use a *publishable* key from their visitors' browsers. At request
//! time [`DomainAllowList::check`] looks at the `Origin` header (or, when it is
//! absent, the `Referer` header) and refuses the request unless the host the
//! browser reports is on the list.
//!
//! # What this does and does not protect
//!
//! Browsers set `Origin` and `Referer` themselves and scripts cannot forge
//! them, so the check **stops other web sites from using a publishable key in
//! their visitors' browsers** (the key is visible in the page source of the
//! legitimate site, so anybody can copy it).
//!
//! It is **not authentication**. A non-browser client (`curl`, a server, a
//! script) can send any header it likes, including a perfectly valid
//! `Origin: https://your-site.example`. Treat a domain-restricted key as
//! public: give it only the scopes you are willing to expose to anybody, and
//! use secret keys (optionally with an IP allow-list, see [`crate::ip`]) for
//! server-to-server calls.
//!
//! # Allow-list entries
//!
//! Entries are validated once, when the list is built ([`DomainAllowList::new`],
//! [`DomainPattern::parse`]), never at request time. An entry is either
//!
//! * an exact host, `example.com`, which matches only the host `example.com`;
//! * or an explicit wildcard, `*.example.com`, which matches any host *below*
//!   `example.com` on a label boundary (`a.example.com`, `a.b.example.com`),
//!   but never `example.com` itself, `badexample.com` or
//!   `example.com.evil.com`. The `*` must be the whole leftmost label and must
//!   be followed by at least two labels (`*.com` is refused).
//!
//! Normalisation of an entry, in order:
//!
//! 1. surrounding ASCII whitespace is trimmed;
//! 2. **a single trailing dot is stripped** (`example.com.` is stored as
//!    `example.com`); two trailing dots are refused;
//! 3. the name is converted with UTS-46 (`idna::domain_to_ascii_strict`):
//!    it is lower-cased and internationalised (Unicode) names become A-labels
//!    (`bücher.example` → `xn--bcher-kva.example`);
//! 4. the result must be a strict LDH name: labels of 1–63 characters from
//!    `a-z0-9-`, no leading or trailing hyphen, at most 253 characters in
//!    total, at least two labels, and a last label that is not a number.
//!
//! Refused entries: empty entries; anything carrying a scheme, userinfo, path,
//! query, fragment or port (`https://example.com`, `user@example.com`,
//! `example.com/x`, `example.com:443`); IP literals in any spelling
//! (`127.0.0.1`, `127.1`, `0x7f.0.0.1`, `::1`, `[::1]`); and `localhost` in any
//! spelling (`LOCALHOST`, `localhost.`, `foo.localhost`, `*.localhost`,
//! `localhost.localdomain`).
//!
//! # Request-time rules
//!
//! * An **empty list imposes no restriction**: [`DomainAllowList::check`]
//!   returns `Ok(())` whatever the headers.
//! * **`Origin` decides whenever it is present**, even when it is `null`,
//!   empty or malformed (a malformed `Origin` is refused; `Referer` is then not
//!   consulted, even if it would match).
//! * `Referer` is consulted only when `Origin` is absent.
//! * Both absent → [`OriginRefusal::Missing`].
//! * A consulted header that was sent more than once →
//!   [`OriginRefusal::Repeated`]. A repeated header that is not consulted
//!   (a repeated `Referer` next to a single `Origin`) is ignored.
//! * Headers longer than [`MAX_HEADER_LEN`] bytes are refused before parsing.
//!
//! `Origin` must be exactly one serialized origin, `scheme://host[:port]`:
//! visible ASCII only (no whitespace, no Unicode — browsers send A-labels), no
//! userinfo, no path (not even a trailing `/`), no query, no fragment.
//!
//! `Referer` must be an absolute `scheme://host[:port]` URL that may carry a
//! path and a query. Its authority ends at the first `/`, `?` or `#`.
//! **A fragment (`#`) anywhere in `Referer` is refused**: browsers strip the
//! fragment before sending `Referer`, so its presence means the value was not
//! produced by a browser (and `#` is a favourite of URL-confusion tricks such
//! as `https://evil.com#@example.com`).
//!
//! Common to both headers:
//!
//! * The scheme must be `https`; `http` is accepted only when `allow_http` is
//!   `true`. Other schemes, including opaque ones (`data:`, `file://`,
//!   `chrome-extension://`), are refused. The scheme is compared
//!   ASCII-case-insensitively.
//! * Userinfo (`https://example.com@evil.com`) is refused, and so is a
//!   backslash anywhere in the value (`https://evil.com\@example.com`: URL
//!   parsers in browsers treat `\` as `/`).
//! * **Upper-case host letters are accepted** and compared lower-cased
//!   (browsers always send lower case; comparing case-insensitively is
//!   equivalent and allocation-free).
//! * **A host with a trailing dot (`example.com.`) is refused**: it is a
//!   different origin for browsers and never matches an entry.
//! * The host must be a strict LDH name (so `_`, `%`-escapes and Unicode are
//!   refused). IP-literal hosts (`127.0.0.1`, `0x7f.1`, `[::1]`) and
//!   `localhost` / `*.localhost` hosts never match, even if somehow listed.
//! * The port is not part of an allow-list entry: any port is accepted, but it
//!   must be written canonically, as browsers serialize it: 1–5 decimal
//!   digits, no leading zero, 1–65535, and **not the scheme's default port
//!   written explicitly** (`https://example.com:443` and
//!   `http://example.com:80` are refused as non-canonical, as is an empty
//!   port `https://example.com:`).
//!
//! Checking never allocates: headers are parsed in place.

use std::collections::HashSet;
use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

/// Longest `Origin` or `Referer` header value (in bytes) that is parsed at
/// all; longer values are refused with [`OriginRefusal::TooLong`].
///
/// Chromium truncates `Referer` values over 4096 bytes to the origin, so no
/// browser-produced value exceeds this.
pub const MAX_HEADER_LEN: usize = 4096;

/// Longest allow-list entry (in bytes, before trimming) that is considered at
/// all; longer entries are refused with [`DomainError::TooLong`].
pub const MAX_ENTRY_LEN: usize = 1024;

/// How many characters of an offending entry an error message echoes.
const ECHO_MAX_CHARS: usize = 64;

/// Longest DNS name (without a trailing dot).
const MAX_NAME_LEN: usize = 253;

/// Longest DNS label.
const MAX_LABEL_LEN: usize = 63;

// ---------------------------------------------------------------------------
// HeaderField
// ---------------------------------------------------------------------------

/// A request header as the host received it.
///
/// The bytes are the raw value, as received (no decoding). Its `Debug`
/// implementation never prints the bytes — header values may carry secrets in
/// other uses — only `Absent`, `Single(<N bytes>)` or `Repeated`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum HeaderField<'a> {
    /// The header was not sent.
    Absent,
    /// The header was sent exactly once, with this raw value.
    Single(&'a [u8]),
    /// The header was sent more than once.
    Repeated,
}

impl<'a> HeaderField<'a> {
    /// Builds a `HeaderField` from all the values received for one header
    /// name: none → [`Absent`](HeaderField::Absent), one →
    /// [`Single`](HeaderField::Single), more → [`Repeated`](HeaderField::Repeated).
    ///
    /// At most two values are pulled from the iterator.
    ///
    /// ```
    /// use api_keys::origin::HeaderField;
    /// let one: [&[u8]; 1] = [b"https://example.com"];
    /// assert_eq!(HeaderField::from_values(one), HeaderField::Single(b"https://example.com"));
    /// assert_eq!(HeaderField::from_values(Vec::<&[u8]>::new()), HeaderField::Absent);
    /// ```
    pub fn from_values<I: IntoIterator<Item = &'a [u8]>>(values: I) -> Self {
        let mut iter = values.into_iter();
        match (iter.next(), iter.next()) {
            (None, _) => HeaderField::Absent,
            (Some(v), None) => HeaderField::Single(v),
            (Some(_), Some(_)) => HeaderField::Repeated,
        }
    }

    /// Whether the header was sent at all (once or more).
    pub fn is_present(&self) -> bool {
        !matches!(self, HeaderField::Absent)
    }
}

impl fmt::Debug for HeaderField<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderField::Absent => f.write_str("Absent"),
            HeaderField::Single(v) => write!(f, "Single(<{} bytes>)", v.len()),
            HeaderField::Repeated => f.write_str("Repeated"),
        }
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why an allow-list entry was refused.
///
/// Messages name the offending entry (entries are configuration, not
/// secrets), escaped and truncated to 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DomainError {
    /// The entry is empty or only whitespace.
    #[error("empty domain entry")]
    Empty,
    /// The entry is longer than [`MAX_ENTRY_LEN`] bytes, or the converted
    /// name is longer than 253 characters.
    #[error("domain entry {entry:?} is too long")]
    TooLong {
        /// The offending entry (truncated).
        entry: String,
    },
    /// The entry carries a scheme (`https://example.com`).
    #[error("domain entry {entry:?} must not have a scheme")]
    HasScheme {
        /// The offending entry (truncated).
        entry: String,
    },
    /// The entry carries userinfo (`user@example.com`).
    #[error("domain entry {entry:?} must not have userinfo")]
    HasUserinfo {
        /// The offending entry (truncated).
        entry: String,
    },
    /// The entry carries a path, query or fragment (`example.com/x`).
    #[error("domain entry {entry:?} must not have a path, query or fragment")]
    HasPath {
        /// The offending entry (truncated).
        entry: String,
    },
    /// The entry carries a port (`example.com:443`).
    #[error("domain entry {entry:?} must not have a port")]
    HasPort {
        /// The offending entry (truncated).
        entry: String,
    },
    /// The entry is an IP address literal (`127.0.0.1`, `127.1`, `[::1]`).
    #[error("domain entry {entry:?} is an IP address, not a domain")]
    IpLiteral {
        /// The offending entry (truncated).
        entry: String,
    },
    /// The entry's last label is a number (`example.123`): browsers would
    /// parse such a host as an IPv4 address.
    #[error("domain entry {entry:?} ends in a number")]
    NumericTld {
        /// The offending entry (truncated).
        entry: String,
    },
    /// The entry names `localhost` (in any spelling) or a name below it.
    /// Refused because it is nobody's domain: every machine is `localhost`,
    /// so such an entry would let any page served locally, on any computer,
    /// use the key. For local development use a test key without a domain
    /// list, or list a name of your own that your hosts file points at
    /// `127.0.0.1` (e.g. `dev.example.test`).
    #[error(
        "domain entry {entry:?} is localhost, which is never accepted: every machine is \
         localhost, so any page served locally anywhere could use the key; for local \
         development use a test key without a domain list, or a name of your own that \
         your hosts file points at 127.0.0.1 (e.g. dev.example.test)"
    )]
    Localhost {
        /// The offending entry (truncated).
        entry: String,
    },
    /// A `*` anywhere but as the whole leftmost label (`a*.example.com`,
    /// `*.*.example.com`, `*example.com`).
    #[error("domain entry {entry:?}: `*` is allowed only as the whole leftmost label")]
    BadWildcard {
        /// The offending entry (truncated).
        entry: String,
    },
    /// A wildcard followed by fewer than two labels (`*.com`).
    #[error("domain entry {entry:?}: a wildcard must be followed by at least two labels")]
    WildcardTooBroad {
        /// The offending entry (truncated).
        entry: String,
    },
    /// A single-label name (`com`, `intranet`).
    #[error("domain entry {entry:?} must have at least two labels")]
    TooFewLabels {
        /// The offending entry (truncated).
        entry: String,
    },
    /// The entry is not a valid domain name (IDNA conversion failed, or a
    /// label is empty, too long, has a leading/trailing hyphen or a character
    /// outside `a-z0-9-`).
    #[error("domain entry {entry:?} is not a valid domain name")]
    InvalidName {
        /// The offending entry (truncated).
        entry: String,
    },
}

/// Truncates an offending entry for an error message.
fn echo(entry: &str) -> String {
    entry.chars().take(ECHO_MAX_CHARS).collect()
}

/// Why [`DomainAllowList::check`] refused a request.
///
/// [`as_str`](OriginRefusal::as_str) gives a stable snake_case code for logs
/// and metrics; the `Display` text is a short human-readable sentence. Neither
/// echoes the header value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum OriginRefusal {
    /// The list is not empty and neither `Origin` nor `Referer` was sent.
    #[error("neither Origin nor Referer was sent")]
    Missing,
    /// The consulted header (`Origin`, or `Referer` when `Origin` is absent)
    /// was sent more than once.
    #[error("the Origin or Referer header was sent more than once")]
    Repeated,
    /// The consulted header is longer than [`MAX_HEADER_LEN`] bytes.
    #[error("the Origin or Referer header is too long")]
    TooLong,
    /// The consulted header is present but empty.
    #[error("the Origin or Referer header is empty")]
    Empty,
    /// `Origin: null` (sandboxed frames, `file:` pages, some redirects).
    #[error("the Origin is null")]
    NullOrigin,
    /// The value is not a canonical serialized origin / absolute URL: bad
    /// syntax, whitespace, non-ASCII, a path in `Origin`, a fragment in
    /// `Referer`, a backslash, a bad or explicit default port, a trailing dot
    /// or a host that is not a valid LDH name.
    #[error("the Origin or Referer header is malformed")]
    Malformed,
    /// The scheme is neither `https` nor `http` (`data:`, `file://`,
    /// `chrome-extension://`, ...).
    #[error("the Origin or Referer scheme is not supported")]
    UnsupportedScheme,
    /// The scheme is `http` and plain HTTP is not allowed.
    #[error("the Origin or Referer uses plain http")]
    InsecureScheme,
    /// The URL carries userinfo (`https://example.com@evil.com`).
    #[error("the Origin or Referer carries userinfo")]
    Userinfo,
    /// The host is an IP address literal (`127.0.0.1`, `[::1]`).
    #[error("the Origin or Referer host is an IP address")]
    IpLiteralHost,
    /// The host is `localhost` or a name below it.
    #[error("the Origin or Referer host is localhost")]
    LocalhostHost,
    /// The value is well-formed but its host is not on the allow-list.
    #[error("the Origin or Referer host is not on the allow-list")]
    NotListed,
}

impl OriginRefusal {
    /// A stable snake_case code for logs and metrics
    /// (`"missing"`, `"repeated"`, `"too_long"`, `"empty"`, `"null_origin"`,
    /// `"malformed"`, `"unsupported_scheme"`, `"insecure_scheme"`,
    /// `"userinfo"`, `"ip_literal_host"`, `"localhost_host"`, `"not_listed"`).
    pub fn as_str(&self) -> &'static str {
        match self {
            OriginRefusal::Missing => "missing",
            OriginRefusal::Repeated => "repeated",
            OriginRefusal::TooLong => "too_long",
            OriginRefusal::Empty => "empty",
            OriginRefusal::NullOrigin => "null_origin",
            OriginRefusal::Malformed => "malformed",
            OriginRefusal::UnsupportedScheme => "unsupported_scheme",
            OriginRefusal::InsecureScheme => "insecure_scheme",
            OriginRefusal::Userinfo => "userinfo",
            OriginRefusal::IpLiteralHost => "ip_literal_host",
            OriginRefusal::LocalhostHost => "localhost_host",
            OriginRefusal::NotListed => "not_listed",
        }
    }
}

// ---------------------------------------------------------------------------
// Name helpers (allocation-free)
// ---------------------------------------------------------------------------

/// A strict LDH label: 1–63 characters of `A-Za-z0-9-`, no leading or
/// trailing hyphen.
fn is_ldh_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= MAX_LABEL_LEN
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// A strict LDH host name (any letter case): labels per [`is_ldh_label`],
/// at most 253 characters, no empty label (so no leading/trailing dot).
fn is_ldh_name(name: &str) -> bool {
    name.len() <= MAX_NAME_LEN && name.split('.').all(is_ldh_label)
}

/// A label that the WHATWG host parser treats as a number (decimal, or `0x`
/// followed by hex digits, possibly none).
fn is_numeric_label(label: &str) -> bool {
    if !label.is_empty() && label.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    match label
        .strip_prefix("0x")
        .or_else(|| label.strip_prefix("0X"))
    {
        Some(hex) => hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => false,
    }
}

/// Whether the last label of `name` is a number (WHATWG "ends in a number":
/// such hosts are parsed as IPv4 addresses by browsers).
fn ends_in_number(name: &str) -> bool {
    name.rsplit('.').next().is_some_and(is_numeric_label)
}

/// Whether every label of `name` is a number (an IPv4 literal in some
/// spelling).
fn all_numeric(name: &str) -> bool {
    name.split('.').all(is_numeric_label)
}

/// ASCII-case-insensitive `ends_with`.
fn ends_with_ci(s: &str, suffix: &str) -> bool {
    s.len()
        .checked_sub(suffix.len())
        .and_then(|start| s.get(start..))
        .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix))
}

/// `localhost` in any spelling, or a name below it, or the common
/// `localhost.localdomain` aliases. `name` has no trailing dot.
fn is_localhost(name: &str) -> bool {
    name.eq_ignore_ascii_case("localhost")
        || ends_with_ci(name, ".localhost")
        || name.eq_ignore_ascii_case("localhost.localdomain")
        || ends_with_ci(name, ".localhost.localdomain")
        || name.eq_ignore_ascii_case("localhost6.localdomain6")
}

// ---------------------------------------------------------------------------
// DomainPattern
// ---------------------------------------------------------------------------

/// One validated allow-list entry: an exact host `example.com` or a wildcard
/// `*.example.com`.
///
/// See the [module documentation](self) for the accepted syntax and the
/// normalisation applied. `Display` (and [`as_str`](DomainPattern::as_str))
/// give the canonical form: lower-case A-labels, no trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DomainPattern {
    /// Canonical form, including the `*.` prefix for wildcards.
    canonical: String,
    /// Whether `canonical` starts with `*.`.
    wildcard: bool,
}

impl DomainPattern {
    /// Validates and normalises one allow-list entry.
    ///
    /// ```
    /// use api_keys::origin::DomainPattern;
    /// assert_eq!(DomainPattern::parse(" Example.COM. ")?.as_str(), "example.com");
    /// assert_eq!(DomainPattern::parse("*.bücher.example")?.as_str(), "*.xn--bcher-kva.example");
    /// assert!(DomainPattern::parse("https://example.com").is_err());
    /// # Ok::<(), api_keys::origin::DomainError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// Returns a [`DomainError`] naming the reason when the entry is empty,
    /// too long, carries a scheme, userinfo, path or port, is an IP literal or
    /// `localhost`, misuses `*`, has fewer than two labels (three for a
    /// wildcard including the `*`), ends in a number, or is not a valid
    /// (internationalised) domain name.
    pub fn parse(entry: &str) -> Result<Self, DomainError> {
        if entry.len() > MAX_ENTRY_LEN {
            return Err(DomainError::TooLong { entry: echo(entry) });
        }
        let trimmed = entry.trim_matches(|c: char| c.is_ascii_whitespace());
        if trimmed.is_empty() {
            return Err(DomainError::Empty);
        }
        let err_entry = || echo(trimmed);

        // Structural refusals first, for precise messages.
        if trimmed.contains("://") {
            return Err(DomainError::HasScheme { entry: err_entry() });
        }
        if trimmed.contains('@') {
            return Err(DomainError::HasUserinfo { entry: err_entry() });
        }
        if trimmed.starts_with('[') {
            return Err(DomainError::IpLiteral { entry: err_entry() });
        }
        if trimmed.contains(['/', '?', '#', '\\']) {
            return Err(DomainError::HasPath { entry: err_entry() });
        }
        if let Some((before, after)) = trimmed.split_once(':') {
            return Err(if Ipv6Addr::from_str(trimmed).is_ok() {
                DomainError::IpLiteral { entry: err_entry() }
            } else if !after.is_empty() && after.bytes().all(|b| b.is_ascii_digit()) {
                DomainError::HasPort { entry: err_entry() }
            } else if !before.is_empty()
                && before
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
                && !before.contains('.')
            {
                DomainError::HasScheme { entry: err_entry() }
            } else {
                DomainError::HasPort { entry: err_entry() }
            });
        }

        let (wildcard, name) = match trimmed.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        if name.contains('*') {
            return Err(DomainError::BadWildcard { entry: err_entry() });
        }

        // A single trailing dot is accepted and dropped.
        let name = name.strip_suffix('.').unwrap_or(name);
        if name.is_empty() {
            return Err(DomainError::InvalidName { entry: err_entry() });
        }
        if name.is_ascii() && name.len() > MAX_NAME_LEN {
            return Err(DomainError::TooLong { entry: err_entry() });
        }

        let ascii = idna::domain_to_ascii_strict(name)
            .map_err(|_| DomainError::InvalidName { entry: err_entry() })?;

        // Defence in depth: validate the converted name ourselves.
        if ascii.len() > MAX_NAME_LEN {
            return Err(DomainError::TooLong { entry: err_entry() });
        }
        if ascii.is_empty() || !ascii.split('.').all(is_ldh_label) {
            return Err(DomainError::InvalidName { entry: err_entry() });
        }
        if ascii.bytes().any(|b| b.is_ascii_uppercase()) {
            // `domain_to_ascii_strict` lower-cases; anything else is a bug.
            return Err(DomainError::InvalidName { entry: err_entry() });
        }
        if all_numeric(&ascii) {
            return Err(DomainError::IpLiteral { entry: err_entry() });
        }
        if is_localhost(&ascii) {
            return Err(DomainError::Localhost { entry: err_entry() });
        }
        if ends_in_number(&ascii) {
            return Err(DomainError::NumericTld { entry: err_entry() });
        }
        if !ascii.contains('.') {
            return Err(if wildcard {
                DomainError::WildcardTooBroad { entry: err_entry() }
            } else {
                DomainError::TooFewLabels { entry: err_entry() }
            });
        }

        let canonical = if wildcard {
            let mut s = String::with_capacity(ascii.len().saturating_add(2));
            s.push_str("*.");
            s.push_str(&ascii);
            s
        } else {
            ascii
        };
        Ok(DomainPattern {
            canonical,
            wildcard,
        })
    }

    /// The canonical form: `example.com` or `*.example.com` (lower-case
    /// A-labels, no trailing dot).
    pub fn as_str(&self) -> &str {
        &self.canonical
    }

    /// Whether this is a wildcard entry (`*.example.com`).
    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    /// Whether `host` (a bare host name as found in a serialized origin,
    /// normally already lower-case ASCII) matches this entry.
    ///
    /// The comparison is ASCII-case-insensitive. `host` must be a strict LDH
    /// name without a trailing dot; anything else — including IP literals
    /// and `localhost` names — never matches. An exact entry matches only the
    /// identical host; a wildcard `*.example.com` matches hosts ending in
    /// `.example.com` with at least one more label, never `example.com`
    /// itself.
    pub fn matches_host(&self, host: &str) -> bool {
        is_acceptable_host(host) && self.matches_valid_host(host)
    }

    /// Matching for a host already checked with [`is_acceptable_host`].
    fn matches_valid_host(&self, host: &str) -> bool {
        if self.wildcard {
            // `suffix` is ".example.com": the leading dot enforces a label
            // boundary, and the length check requires at least one label in
            // front of it.
            let suffix = self.canonical.strip_prefix('*').unwrap_or(&self.canonical);
            host.len() > suffix.len() && ends_with_ci(host, suffix)
        } else {
            host.eq_ignore_ascii_case(&self.canonical)
        }
    }
}

/// A host that may match an entry at all: strict LDH name, no trailing dot,
/// not an IP literal in any spelling, not localhost.
fn is_acceptable_host(host: &str) -> bool {
    is_ldh_name(host) && !ends_in_number(host) && !is_localhost(host)
}

impl fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical)
    }
}

impl FromStr for DomainPattern {
    type Err = DomainError;

    /// Same as [`DomainPattern::parse`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DomainPattern::parse(s)
    }
}

impl AsRef<str> for DomainPattern {
    fn as_ref(&self) -> &str {
        &self.canonical
    }
}

// ---------------------------------------------------------------------------
// Header parsing (allocation-free)
// ---------------------------------------------------------------------------

/// Which header a value came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum HeaderKind {
    Origin,
    Referer,
}

/// A URL scheme's first character and the rest (`ALPHA *( ALPHA / DIGIT /
/// "+" / "-" / "." )`).
fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    match bytes.next() {
        Some(first) if first.is_ascii_alphabetic() => {
            bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        }
        _ => false,
    }
}

/// A canonical port: 1–5 digits, no leading zero, 1–65535, and not the
/// scheme's default port.
fn is_canonical_port(port: &str, default_port: &str) -> bool {
    !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && !port.starts_with('0')
        && port.parse::<u32>().is_ok_and(|p| p <= 65_535)
        && port != default_port
}

/// Parses an `Origin` or `Referer` value and returns its host (original
/// letter case), after every check except the allow-list lookup.
fn parse_header(value: &[u8], kind: HeaderKind, allow_http: bool) -> Result<&str, OriginRefusal> {
    if value.len() > MAX_HEADER_LEN {
        return Err(OriginRefusal::TooLong);
    }
    if value.is_empty() {
        return Err(OriginRefusal::Empty);
    }
    // Visible ASCII only: no whitespace, no controls, no NUL, no Unicode.
    // Backslashes are refused everywhere (browsers treat `\` as `/`).
    if !value
        .iter()
        .all(|&b| (0x21..=0x7e).contains(&b) && b != b'\\')
    {
        return Err(OriginRefusal::Malformed);
    }
    let value = std::str::from_utf8(value).map_err(|_| OriginRefusal::Malformed)?;
    if value == "null" {
        return Err(match kind {
            HeaderKind::Origin => OriginRefusal::NullOrigin,
            HeaderKind::Referer => OriginRefusal::Malformed,
        });
    }

    let (scheme, rest) = value.split_once(':').ok_or(OriginRefusal::Malformed)?;
    if !is_scheme(scheme) {
        return Err(OriginRefusal::Malformed);
    }
    let (is_http, default_port) = if scheme.eq_ignore_ascii_case("https") {
        (false, "443")
    } else if scheme.eq_ignore_ascii_case("http") {
        (true, "80")
    } else {
        return Err(OriginRefusal::UnsupportedScheme);
    };
    let rest = rest.strip_prefix("//").ok_or(OriginRefusal::Malformed)?;

    let authority = match kind {
        HeaderKind::Origin => {
            if rest.contains(['/', '?', '#']) {
                return Err(OriginRefusal::Malformed);
            }
            rest
        }
        HeaderKind::Referer => {
            if rest.contains('#') {
                return Err(OriginRefusal::Malformed);
            }
            match rest.find(['/', '?']) {
                Some(end) => rest.get(..end).ok_or(OriginRefusal::Malformed)?,
                None => rest,
            }
        }
    };
    if authority.contains('@') {
        return Err(OriginRefusal::Userinfo);
    }

    // Split host and port.
    let (host, ip_literal) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (inner, after) = bracketed.split_once(']').ok_or(OriginRefusal::Malformed)?;
        if Ipv6Addr::from_str(inner).is_err() {
            return Err(OriginRefusal::Malformed);
        }
        if let Some(port) = after.strip_prefix(':') {
            if !is_canonical_port(port, default_port) {
                return Err(OriginRefusal::Malformed);
            }
        } else if !after.is_empty() {
            return Err(OriginRefusal::Malformed);
        }
        (inner, true)
    } else {
        let host = match authority.split_once(':') {
            Some((host, port)) => {
                if !is_canonical_port(port, default_port) {
                    return Err(OriginRefusal::Malformed);
                }
                host
            }
            None => authority,
        };
        if host.is_empty() || host.ends_with('.') {
            return Err(OriginRefusal::Malformed);
        }
        (host, false)
    };

    if is_http && !allow_http {
        return Err(OriginRefusal::InsecureScheme);
    }
    if ip_literal || ends_in_number(host) {
        return Err(OriginRefusal::IpLiteralHost);
    }
    if is_localhost(host) {
        return Err(OriginRefusal::LocalhostHost);
    }
    if !is_ldh_name(host) {
        return Err(OriginRefusal::Malformed);
    }
    Ok(host)
}

// ---------------------------------------------------------------------------
// DomainAllowList
// ---------------------------------------------------------------------------

/// The domains allowed to use a key from browsers. Empty = no domain
/// restriction.
///
/// See the [module documentation](self) for the rules.
///
/// ```
/// use api_keys::origin::{DomainAllowList, HeaderField, OriginRefusal};
/// let list = DomainAllowList::new(["example.com", "*.example.com"])?;
/// let ok = HeaderField::Single(b"https://app.example.com");
/// assert_eq!(list.check(ok, HeaderField::Absent, false), Ok(()));
/// let evil = HeaderField::Single(b"https://badexample.com");
/// assert_eq!(list.check(evil, HeaderField::Absent, false), Err(OriginRefusal::NotListed));
/// # Ok::<(), api_keys::origin::DomainError>(())
/// ```
///
/// With the `serde` feature it serializes as a sequence of canonical entry
/// strings and deserializes through [`DomainAllowList::new`] (validating).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainAllowList {
    entries: Vec<DomainPattern>,
}

impl DomainAllowList {
    /// The empty list: no restriction.
    pub(crate) const ANY: Self = Self {
        entries: Vec::new(),
    };

    /// Builds a list from entries, validating each with
    /// [`DomainPattern::parse`]. Duplicates (after normalisation) are
    /// removed; the order of first occurrence is kept. No entries → an empty
    /// list, which imposes no restriction.
    ///
    /// # Errors
    ///
    /// Returns the [`DomainError`] of the first bad entry; the whole list is
    /// refused.
    pub fn new<I, S>(entries: I) -> Result<Self, DomainError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut seen = HashSet::new();
        let mut list = Vec::new();
        for entry in entries {
            let pattern = DomainPattern::parse(entry.as_ref())?;
            if seen.insert(pattern.canonical.clone()) {
                list.push(pattern);
            }
        }
        Ok(DomainAllowList { entries: list })
    }

    /// Builds a list from already-validated patterns, removing duplicates and
    /// keeping the order of first occurrence.
    pub fn from_patterns<I: IntoIterator<Item = DomainPattern>>(patterns: I) -> Self {
        let mut seen = HashSet::new();
        let list: Vec<DomainPattern> = patterns
            .into_iter()
            .filter(|pattern| seen.insert(pattern.canonical.clone()))
            .collect();
        DomainAllowList { entries: list }
    }

    /// Whether the list is empty (no domain restriction).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The validated entries, in order.
    pub fn entries(&self) -> &[DomainPattern] {
        &self.entries
    }

    /// Whether a bare host matches an entry (see
    /// [`DomainPattern::matches_host`]). An empty list matches nothing here:
    /// use [`is_empty`](DomainAllowList::is_empty) or
    /// [`check`](DomainAllowList::check) for the "no restriction" rule.
    pub fn matches_host(&self, host: &str) -> bool {
        is_acceptable_host(host) && self.entries.iter().any(|p| p.matches_valid_host(host))
    }

    /// Checks a request's `Origin` and `Referer` headers against the list.
    ///
    /// `allow_http` admits `http://` origins in addition to `https://` ones.
    /// An empty list returns `Ok(())` without looking at the headers. See the
    /// [module documentation](self) for the exact rules. Never allocates and
    /// never panics, whatever the header bytes.
    ///
    /// # Errors
    ///
    /// Returns the [`OriginRefusal`] explaining why the request is refused:
    /// headers missing or repeated, a header that is not a canonical
    /// serialized origin / URL, a disallowed scheme, an IP-literal or
    /// localhost host, or a host not on the list.
    pub fn check(
        &self,
        origin: HeaderField<'_>,
        referer: HeaderField<'_>,
        allow_http: bool,
    ) -> Result<(), OriginRefusal> {
        if self.entries.is_empty() {
            return Ok(());
        }
        let (value, kind) = match origin {
            HeaderField::Single(v) => (v, HeaderKind::Origin),
            HeaderField::Repeated => return Err(OriginRefusal::Repeated),
            HeaderField::Absent => match referer {
                HeaderField::Single(v) => (v, HeaderKind::Referer),
                HeaderField::Repeated => return Err(OriginRefusal::Repeated),
                HeaderField::Absent => return Err(OriginRefusal::Missing),
            },
        };
        let host = parse_header(value, kind, allow_http)?;
        if self.entries.iter().any(|p| p.matches_valid_host(host)) {
            Ok(())
        } else {
            Err(OriginRefusal::NotListed)
        }
    }
}

#[cfg(feature = "serde")]
mod serde_impls {
    use super::{DomainAllowList, DomainPattern};
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
    impl Serialize for DomainAllowList {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_seq(self.entries.iter().map(DomainPattern::as_str))
        }
    }

    #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
    impl<'de> Deserialize<'de> for DomainAllowList {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            let entries = Vec::<String>::deserialize(deserializer)?;
            DomainAllowList::new(entries).map_err(D::Error::custom)
        }
    }

    #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
    impl Serialize for DomainPattern {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_str(self.as_str())
        }
    }

    #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
    impl<'de> Deserialize<'de> for DomainPattern {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            let entry = String::deserialize(deserializer)?;
            DomainPattern::parse(&entry).map_err(D::Error::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use HeaderField::{Absent, Repeated};
    use OriginRefusal as R;
    use proptest::prelude::*;

    /// Short name of a [`DomainError`] variant, for table rows.
    fn kind(e: &DomainError) -> &'static str {
        match e {
            DomainError::Empty => "Empty",
            DomainError::TooLong { .. } => "TooLong",
            DomainError::HasScheme { .. } => "HasScheme",
            DomainError::HasUserinfo { .. } => "HasUserinfo",
            DomainError::HasPath { .. } => "HasPath",
            DomainError::HasPort { .. } => "HasPort",
            DomainError::IpLiteral { .. } => "IpLiteral",
            DomainError::NumericTld { .. } => "NumericTld",
            DomainError::Localhost { .. } => "Localhost",
            DomainError::BadWildcard { .. } => "BadWildcard",
            DomainError::WildcardTooBroad { .. } => "WildcardTooBroad",
            DomainError::TooFewLabels { .. } => "TooFewLabels",
            DomainError::InvalidName { .. } => "InvalidName",
        }
    }

    #[test]
    fn entry_table() {
        let long_label = format!("{}.com", "a".repeat(64));
        let max_label = format!("{}.com", "a".repeat(63));
        let long_name = format!("{}com", "abcdefghi.".repeat(26));
        let huge = "a".repeat(MAX_ENTRY_LEN + 1);
        #[rustfmt::skip]
        let rows: Vec<(&str, Result<&str, &str>, &str)> = vec![
            ("example.com", Ok("example.com"), "plain domain"),
            ("  Example.COM \t", Ok("example.com"), "trimmed and lower-cased"),
            ("example.com.", Ok("example.com"), "single trailing dot stripped"),
            ("example.com..", Err("InvalidName"), "two trailing dots: empty label"),
            (".example.com", Err("InvalidName"), "leading dot: empty label"),
            ("a..example.com", Err("InvalidName"), "empty label inside"),
            ("*.example.com", Ok("*.example.com"), "explicit wildcard"),
            ("*.Example.COM.", Ok("*.example.com"), "wildcard normalised too"),
            ("*.co.uk", Ok("*.co.uk"), "wildcard followed by two labels is allowed"),
            ("*.com", Err("WildcardTooBroad"), "wildcard needs two labels after it"),
            ("*", Err("BadWildcard"), "bare star"),
            ("*.", Err("InvalidName"), "star and dot only"),
            ("a.*.example.com", Err("BadWildcard"), "star not leftmost"),
            ("*example.com", Err("BadWildcard"), "star not a whole label"),
            ("a*.example.com", Err("BadWildcard"), "star inside a label"),
            ("*.*.example.com", Err("BadWildcard"), "two stars"),
            ("", Err("Empty"), "empty"),
            ("   ", Err("Empty"), "only whitespace"),
            ("https://example.com", Err("HasScheme"), "scheme"),
            ("https:example.com", Err("HasScheme"), "scheme without slashes"),
            ("//example.com", Err("HasPath"), "scheme-relative"),
            ("example.com/x", Err("HasPath"), "path"),
            ("example.com/", Err("HasPath"), "trailing slash"),
            ("example.com?x=1", Err("HasPath"), "query"),
            ("example.com#x", Err("HasPath"), "fragment"),
            ("example.com\\x", Err("HasPath"), "backslash"),
            ("example.com:443", Err("HasPort"), "port"),
            ("example.com:", Err("HasPort"), "empty port"),
            ("user@example.com", Err("HasUserinfo"), "userinfo"),
            ("127.0.0.1", Err("IpLiteral"), "IPv4 dotted quad"),
            ("127.1", Err("IpLiteral"), "IPv4 short form"),
            ("0x7f.0.0.1", Err("IpLiteral"), "IPv4 hex spelling"),
            ("0177.0.0.1", Err("IpLiteral"), "IPv4 octal spelling"),
            ("2130706433", Err("IpLiteral"), "IPv4 as one number"),
            ("[::1]", Err("IpLiteral"), "bracketed IPv6"),
            ("::1", Err("IpLiteral"), "bare IPv6"),
            ("2001:db8::1", Err("IpLiteral"), "bare IPv6"),
            ("localhost", Err("Localhost"), "localhost"),
            ("LOCALHOST", Err("Localhost"), "localhost upper-case"),
            ("localhost.", Err("Localhost"), "localhost with trailing dot"),
            ("foo.localhost", Err("Localhost"), "below localhost"),
            ("*.localhost", Err("Localhost"), "wildcard below localhost"),
            ("localhost.localdomain", Err("Localhost"), "localhost alias"),
            ("ｌｏｃａｌｈｏｓｔ", Err("Localhost"), "full-width localhost maps to localhost"),
            ("com", Err("TooFewLabels"), "single label"),
            ("intranet", Err("TooFewLabels"), "single label"),
            ("example.123", Err("NumericTld"), "last label numeric"),
            ("example.0x1f", Err("NumericTld"), "last label hex number"),
            ("123.example.com", Ok("123.example.com"), "numeric labels are fine when not last"),
            ("bücher.example", Ok("xn--bcher-kva.example"), "IDN converted to A-label"),
            ("BÜCHER.example", Ok("xn--bcher-kva.example"), "IDN upper-case"),
            ("*.bücher.example", Ok("*.xn--bcher-kva.example"), "IDN wildcard"),
            ("xn--bcher-kva.example", Ok("xn--bcher-kva.example"), "A-label accepted as is"),
            ("xn--a.com", Err("InvalidName"), "invalid punycode"),
            ("ｅｘａｍｐｌｅ.com", Ok("example.com"), "full-width letters map to ASCII"),
            ("example。com", Ok("example.com"), "ideographic full stop maps to a dot"),
            ("exa_mple.com", Err("InvalidName"), "underscore is not LDH"),
            ("-example.com", Err("InvalidName"), "leading hyphen"),
            ("example-.com", Err("InvalidName"), "trailing hyphen"),
            ("ex ample.com", Err("InvalidName"), "inner space"),
            ("exa\0mple.com", Err("InvalidName"), "NUL"),
            ("exa%41mple.com", Err("InvalidName"), "percent escape"),
            (&max_label, Ok(&max_label), "63-character label"),
            (&long_label, Err("InvalidName"), "64-character label"),
            (&long_name, Err("TooLong"), "name over 253 characters"),
            (&huge, Err("TooLong"), "entry over MAX_ENTRY_LEN"),
        ];
        for (entry, expected, why) in rows {
            let got = DomainPattern::parse(entry);
            match (&got, expected) {
                (Ok(p), Ok(canonical)) => {
                    assert_eq!(p.as_str(), canonical, "{entry:?}: {why}");
                    assert_eq!(p.to_string(), canonical, "{entry:?}: {why}");
                    assert_eq!(p.is_wildcard(), canonical.starts_with("*."), "{why}");
                    // Canonical form is a fixed point.
                    assert_eq!(DomainPattern::parse(canonical).as_ref(), Ok(p), "{why}");
                }
                (Err(e), Err(k)) => assert_eq!(kind(e), k, "{entry:?}: {why}"),
                _ => panic!("{entry:?}: {why}: got {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn error_messages_echo_short_entry() {
        let long = format!("https://{}", "a".repeat(500));
        let err = DomainPattern::parse(&long).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("https://aaa"), "{msg}");
        assert!(msg.len() < 160, "{msg}");
        // Control characters are escaped.
        let err = DomainPattern::parse("exa\nmple.com/x").unwrap_err();
        assert!(!err.to_string().contains('\n'));
    }

    #[test]
    fn list_dedup_order_and_refusal() {
        let list = DomainAllowList::new([
            "b.example.com",
            "example.com",
            "EXAMPLE.com.",
            "*.example.com",
            "b.example.com",
        ])
        .unwrap();
        let got: Vec<&str> = list.entries().iter().map(DomainPattern::as_str).collect();
        assert_eq!(got, ["b.example.com", "example.com", "*.example.com"]);
        assert!(!list.is_empty());

        let err = DomainAllowList::new(["example.com", "localhost"]).unwrap_err();
        assert_eq!(kind(&err), "Localhost");
        // The message says why, and what to do for local development.
        let message = err.to_string();
        for part in [
            "never accepted",
            "test key without a domain list",
            "dev.example.test",
        ] {
            assert!(message.contains(part), "{message}");
        }
        assert!(DomainAllowList::new(["dev.example.test"]).is_ok());

        let empty = DomainAllowList::new(Vec::<String>::new()).unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty, DomainAllowList::default());

        let from = DomainAllowList::from_patterns(
            list.entries()
                .iter()
                .cloned()
                .chain(list.entries().iter().cloned()),
        );
        assert_eq!(from, list);
    }

    #[test]
    fn matches_host_table() {
        let exact = DomainPattern::parse("example.com").unwrap();
        let wild = DomainPattern::parse("*.example.com").unwrap();
        #[rustfmt::skip]
        let rows: [(&str, bool, bool, &str); 14] = [
            // host, exact matches, wildcard matches, why
            ("example.com", true, false, "apex: exact only"),
            ("EXAMPLE.COM", true, false, "case-insensitive"),
            ("a.example.com", false, true, "one label below"),
            ("a.b.example.com", false, true, "two labels below"),
            ("badexample.com", false, false, "no label boundary"),
            ("evil-example.com", false, false, "hyphenated neighbour"),
            ("example.com.evil.com", false, false, "suffix attack"),
            ("a.example.com.evil.com", false, false, "suffix attack under wildcard"),
            (".example.com", false, false, "empty leftmost label"),
            ("example.com.", false, false, "trailing dot"),
            ("a.example.com.", false, false, "trailing dot under wildcard"),
            ("a_b.example.com", false, false, "not LDH"),
            ("1.2.3.example.com", false, true, "numeric labels fine when not last"),
            ("", false, false, "empty host"),
        ];
        for (host, e, w, why) in rows {
            assert_eq!(exact.matches_host(host), e, "exact {host:?}: {why}");
            assert_eq!(wild.matches_host(host), w, "wildcard {host:?}: {why}");
        }
    }

    fn s(v: &str) -> HeaderField<'_> {
        HeaderField::Single(v.as_bytes())
    }

    /// Origin, Referer, allow_http, expected outcome, why.
    type CheckRow<'a> = (
        HeaderField<'a>,
        HeaderField<'a>,
        bool,
        Result<(), OriginRefusal>,
        &'a str,
    );

    #[test]
    fn check_table() {
        let list =
            DomainAllowList::new(["example.com", "*.example.org", "bücher.example"]).unwrap();
        let too_long = format!("https://{}.example.org", "a.".repeat(MAX_HEADER_LEN / 2));
        let long_referer = format!("https://example.com/{}", "a".repeat(3000));
        #[rustfmt::skip]
        let rows: Vec<CheckRow<'_>> = vec![
            // Origin alone
            (s("https://example.com"), Absent, false, Ok(()), "exact match"),
            (s("https://EXAMPLE.COM"), Absent, false, Ok(()), "upper-case host is lower-cased"),
            (s("HTTPS://Example.com"), Absent, false, Ok(()), "scheme compared case-insensitively"),
            (s("https://example.com:8443"), Absent, false, Ok(()), "non-default port allowed"),
            (s("https://example.com:443"), Absent, false, Err(R::Malformed), "explicit default port is not canonical"),
            (s("http://example.com:80"), Absent, true, Err(R::Malformed), "explicit default http port"),
            (s("https://example.com:80"), Absent, false, Ok(()), "80 is not the https default"),
            (s("https://example.com:0"), Absent, false, Err(R::Malformed), "port zero"),
            (s("https://example.com:65535"), Absent, false, Ok(()), "highest port"),
            (s("https://example.com:65536"), Absent, false, Err(R::Malformed), "port out of range"),
            (s("https://example.com:08443"), Absent, false, Err(R::Malformed), "leading zero in port"),
            (s("https://example.com:"), Absent, false, Err(R::Malformed), "empty port"),
            (s("https://example.com:8443:1"), Absent, false, Err(R::Malformed), "two ports"),
            (s("http://example.com"), Absent, false, Err(R::InsecureScheme), "http not allowed"),
            (s("http://example.com"), Absent, true, Ok(()), "http allowed on request"),
            (s("http://example.com:8080"), Absent, true, Ok(()), "http with port"),
            (s("https://example.com/"), Absent, false, Err(R::Malformed), "trailing slash"),
            (s("https://example.com/path"), Absent, false, Err(R::Malformed), "path in Origin"),
            (s("https://example.com?x=1"), Absent, false, Err(R::Malformed), "query in Origin"),
            (s("https://example.com#x"), Absent, false, Err(R::Malformed), "fragment in Origin"),
            (s("https://example.com."), Absent, false, Err(R::Malformed), "trailing dot is not canonical"),
            (s("https://evil-example.com"), Absent, false, Err(R::NotListed), "hyphenated neighbour"),
            (s("https://badexample.com"), Absent, false, Err(R::NotListed), "no label boundary"),
            (s("https://example.com.evil.com"), Absent, false, Err(R::NotListed), "suffix attack"),
            (s("https://sub.example.com"), Absent, false, Err(R::NotListed), "exact entry does not cover subdomains"),
            (s("https://example.com@evil.com"), Absent, false, Err(R::Userinfo), "userinfo trick"),
            (s("https://user:pw@example.com"), Absent, false, Err(R::Userinfo), "credentials"),
            (s("https://evil.com#@example.com"), Absent, false, Err(R::Malformed), "fragment trick"),
            (s("https://evil.com\\@example.com"), Absent, false, Err(R::Malformed), "backslash trick"),
            (s("https://evil.com\\.example.com"), Absent, false, Err(R::Malformed), "backslash anywhere"),
            (s("null"), Absent, false, Err(R::NullOrigin), "opaque origin"),
            (s(""), Absent, false, Err(R::Empty), "empty Origin"),
            (s(" https://example.com"), Absent, false, Err(R::Malformed), "leading whitespace"),
            (s("https://example.com "), Absent, false, Err(R::Malformed), "trailing whitespace"),
            (s("https://exam ple.com"), Absent, false, Err(R::Malformed), "inner whitespace"),
            (s("https://example.com\0"), Absent, false, Err(R::Malformed), "NUL"),
            (s("https://example.com\r\n"), Absent, false, Err(R::Malformed), "CRLF"),
            (s("data:text/html,hi"), Absent, false, Err(R::UnsupportedScheme), "opaque data: scheme"),
            (s("file://"), Absent, false, Err(R::UnsupportedScheme), "file scheme"),
            (s("chrome-extension://abcdefghijklmnop"), Absent, false, Err(R::UnsupportedScheme), "extension scheme"),
            (s("wss://example.com"), Absent, false, Err(R::UnsupportedScheme), "websocket scheme"),
            (s("https:example.com"), Absent, false, Err(R::Malformed), "no slashes"),
            (s("https:/example.com"), Absent, false, Err(R::Malformed), "one slash"),
            (s("https://"), Absent, false, Err(R::Malformed), "no host"),
            (s("https://:443"), Absent, false, Err(R::Malformed), "empty host with port"),
            (s("//example.com"), Absent, false, Err(R::Malformed), "no scheme"),
            (s("example.com"), Absent, false, Err(R::Malformed), "bare host"),
            (s("1https://example.com"), Absent, false, Err(R::Malformed), "invalid scheme"),
            (s("https://ex\u{0430}mple.com"), Absent, false, Err(R::Malformed), "Cyrillic look-alike (raw UTF-8)"),
            (s("https://xn--exmple-4nf.com"), Absent, false, Err(R::NotListed), "Cyrillic look-alike as punycode"),
            (s("https://xn--bcher-kva.example"), Absent, false, Ok(()), "punycode matches Unicode entry"),
            (s("https://bücher.example"), Absent, false, Err(R::Malformed), "browsers never send Unicode hosts"),
            (s("https://a.example.org"), Absent, false, Ok(()), "wildcard, one label"),
            (s("https://a.b.example.org:8443"), Absent, false, Ok(()), "wildcard, two labels, port"),
            (s("https://example.org"), Absent, false, Err(R::NotListed), "wildcard never matches apex"),
            (s("https://badexample.org"), Absent, false, Err(R::NotListed), "wildcard label boundary"),
            (s("https://a.example.org.evil.com"), Absent, false, Err(R::NotListed), "wildcard suffix attack"),
            (s("https://a..example.org"), Absent, false, Err(R::Malformed), "empty label"),
            (s("https://-a.example.org"), Absent, false, Err(R::Malformed), "leading hyphen"),
            (s("https://a_b.example.org"), Absent, false, Err(R::Malformed), "underscore"),
            (s("https://a%2eexample.org"), Absent, false, Err(R::Malformed), "percent escape"),
            (s("https://127.0.0.1"), Absent, false, Err(R::IpLiteralHost), "IPv4 literal"),
            (s("https://0x7f.1"), Absent, false, Err(R::IpLiteralHost), "IPv4 hex short spelling"),
            (s("https://2130706433"), Absent, false, Err(R::IpLiteralHost), "IPv4 as one number"),
            (s("https://[::1]"), Absent, false, Err(R::IpLiteralHost), "IPv6 literal"),
            (s("https://[::1]:8443"), Absent, false, Err(R::IpLiteralHost), "IPv6 literal with port"),
            (s("https://[::1"), Absent, false, Err(R::Malformed), "unclosed bracket"),
            (s("https://[nope]"), Absent, false, Err(R::Malformed), "bracket without IPv6"),
            (s("https://localhost"), Absent, false, Err(R::LocalhostHost), "localhost"),
            (s("https://LocalHost:3000"), Absent, false, Err(R::LocalhostHost), "localhost, any case, port"),
            (s("https://app.localhost"), Absent, false, Err(R::LocalhostHost), "below localhost"),
            (s(&too_long), Absent, false, Err(R::TooLong), "over MAX_HEADER_LEN"),
            (Repeated, Absent, false, Err(R::Repeated), "Origin sent twice"),
            // Both headers: Origin decides
            (s("https://evil.com"), s("https://example.com/"), false, Err(R::NotListed), "Origin decides even if Referer matches"),
            (s("null"), s("https://example.com/"), false, Err(R::NullOrigin), "null Origin decides"),
            (s(""), s("https://example.com/"), false, Err(R::Empty), "empty Origin decides"),
            (s("garbage"), s("https://example.com/"), false, Err(R::Malformed), "malformed Origin decides"),
            (Repeated, s("https://example.com/"), false, Err(R::Repeated), "repeated Origin decides"),
            (s("https://example.com"), Repeated, false, Ok(()), "repeated Referer is not consulted"),
            (s("https://example.com"), s("https://evil.com/"), false, Ok(()), "Referer ignored when Origin present"),
            // Referer only
            (Absent, s("https://example.com/page?q=1"), false, Ok(()), "Referer with path and query"),
            (Absent, s("https://example.com"), false, Ok(()), "Referer without path"),
            (Absent, s("https://example.com:8443/"), false, Ok(()), "Referer with port"),
            (Absent, s("https://example.com?x"), false, Ok(()), "Referer authority ends at ?"),
            (Absent, s("https://a.example.org/x/y"), false, Ok(()), "Referer wildcard"),
            (Absent, s(&long_referer), false, Ok(()), "long Referer under the cap"),
            (Absent, s("https://example.com/#frag"), false, Err(R::Malformed), "fragment in Referer is refused"),
            (Absent, s("https://evil.com#@example.com"), false, Err(R::Malformed), "fragment trick in Referer"),
            (Absent, s("https://evil.com?@example.com"), false, Err(R::NotListed), "@ in query is not userinfo"),
            (Absent, s("https://evil.com/@example.com"), false, Err(R::NotListed), "@ in path is not userinfo"),
            (Absent, s("https://evil.com/https://example.com"), false, Err(R::NotListed), "allowed URL in path"),
            (Absent, s("https://example.com@evil.com/"), false, Err(R::Userinfo), "userinfo in Referer"),
            (Absent, s("https://evil.com\\@example.com/"), false, Err(R::Malformed), "backslash in Referer"),
            (Absent, s("https://example.com:443/"), false, Err(R::Malformed), "explicit default port in Referer"),
            (Absent, s("https://example.com./"), false, Err(R::Malformed), "trailing dot in Referer"),
            (Absent, s("http://example.com/"), false, Err(R::InsecureScheme), "http Referer not allowed"),
            (Absent, s("http://example.com/"), true, Ok(()), "http Referer allowed"),
            (Absent, s("null"), false, Err(R::Malformed), "null is not a Referer"),
            (Absent, s(""), false, Err(R::Empty), "empty Referer"),
            (Absent, s("about:blank"), false, Err(R::UnsupportedScheme), "about: Referer"),
            (Absent, s("https://127.0.0.1/"), false, Err(R::IpLiteralHost), "IP Referer"),
            (Absent, s("https://localhost/"), false, Err(R::LocalhostHost), "localhost Referer"),
            (Absent, Repeated, false, Err(R::Repeated), "Referer sent twice"),
            (Absent, Absent, false, Err(R::Missing), "no header"),
        ];
        for (origin, referer, allow_http, expected, why) in rows {
            assert_eq!(
                list.check(origin, referer, allow_http),
                expected,
                "{why}: origin={origin:?} referer={referer:?}"
            );
        }
    }

    #[test]
    fn empty_list_allows_everything() {
        let list = DomainAllowList::default();
        for (origin, referer) in [
            (Absent, Absent),
            (Repeated, Repeated),
            (s("null"), Absent),
            (s("https://evil.com"), Absent),
            (HeaderField::Single(&[0xff, 0xfe]), Absent),
        ] {
            assert_eq!(list.check(origin, referer, false), Ok(()));
        }
    }

    #[test]
    fn header_field_basics() {
        let none: Vec<&[u8]> = Vec::new();
        assert_eq!(HeaderField::from_values(none), Absent);
        assert_eq!(HeaderField::from_values([&b"a"[..]]), s("a"));
        assert_eq!(HeaderField::from_values([&b"a"[..], b"b", b"c"]), Repeated);
        assert!(!Absent.is_present());
        assert!(s("").is_present());
        assert!(Repeated.is_present());
        let secret = HeaderField::Single(b"Bearer sk_live_secret");
        assert_eq!(format!("{secret:?}"), "Single(<21 bytes>)");
        assert_eq!(format!("{Absent:?}"), "Absent");
        assert_eq!(format!("{Repeated:?}"), "Repeated");
    }

    #[test]
    fn refusal_codes_are_distinct_snake_case() {
        let all = [
            R::Missing,
            R::Repeated,
            R::TooLong,
            R::Empty,
            R::NullOrigin,
            R::Malformed,
            R::UnsupportedScheme,
            R::InsecureScheme,
            R::Userinfo,
            R::IpLiteralHost,
            R::LocalhostHost,
            R::NotListed,
        ];
        let codes: HashSet<&str> = all.iter().map(R::as_str).collect();
        assert_eq!(codes.len(), all.len());
        for code in codes {
            assert!(
                code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{code}"
            );
        }
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_deserializes_through_new() {
        use serde::Deserialize;
        use serde::de::IntoDeserializer;
        use serde::de::value::{Error, SeqDeserializer};

        let de: SeqDeserializer<_, Error> =
            vec!["Example.com.", "*.bücher.example", "example.com"].into_deserializer();
        let list = DomainAllowList::deserialize(de).unwrap();
        let got: Vec<&str> = list.entries().iter().map(DomainPattern::as_str).collect();
        assert_eq!(got, ["example.com", "*.xn--bcher-kva.example"]);

        let de: SeqDeserializer<_, Error> = vec!["example.com", "localhost"].into_deserializer();
        assert!(DomainAllowList::deserialize(de).is_err());
    }

    // -- property tests -----------------------------------------------------

    fn arb_header() -> impl Strategy<Value = (u8, Vec<u8>)> {
        (0u8..3, prop::collection::vec(any::<u8>(), 0..80))
    }

    fn field(kind: u8, bytes: &[u8]) -> HeaderField<'_> {
        match kind {
            0 => Absent,
            1 => HeaderField::Single(bytes),
            _ => Repeated,
        }
    }

    /// Valid exact domains (filtered through the real parser).
    fn arb_domain() -> impl Strategy<Value = String> {
        (
            prop::collection::vec("[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?", 1..4),
            "[a-z]{2,6}",
        )
            .prop_filter_map("valid entry", |(labels, tld)| {
                let name = format!("{}.{tld}", labels.join("."));
                DomainPattern::parse(&name)
                    .ok()
                    .filter(|p| p.as_str() == name)
                    .map(|_| name)
            })
    }

    /// An origin derived from `entry` by one mutation.
    fn mutate(entry: &str, m: u8, pos: usize, byte: u8, port: u16) -> Vec<u8> {
        let base = format!("https://{entry}");
        let mut v = base.clone().into_bytes();
        let at = pos % (v.len() + 1);
        match m % 16 {
            0 => {}
            1 => v.extend(format!(":{port}").bytes()),
            2 => v.extend(b":443"),
            3 => v.push(b'.'),
            4 => v.push(b'/'),
            5 => v = format!("https://a.{entry}").into_bytes(),
            6 => v.extend(b".evil.com"),
            7 => v = format!("http://{entry}").into_bytes(),
            8 => v = format!("https://{entry}@evil.com").into_bytes(),
            9 => {
                if at < v.len() {
                    v.remove(at);
                }
            }
            10 => v.insert(at, byte),
            11 => {
                if let Some(b) = v.get_mut(at) {
                    *b = byte;
                }
            }
            12 => v.make_ascii_uppercase(),
            13 => v = format!("https://x{entry}").into_bytes(),
            14 => v.extend(format!(":0{port}").bytes()),
            _ => {
                if let Some(b) = v.get_mut(at) {
                    b.make_ascii_uppercase();
                }
            }
        }
        v
    }

    proptest! {
        #[test]
        fn check_never_panics(
            (ok, ov) in arb_header(),
            (rk, rv) in arb_header(),
            allow_http in any::<bool>(),
        ) {
            let list = DomainAllowList::new(["example.com", "*.example.org"]).unwrap();
            let _ = list.check(field(ok, &ov), field(rk, &rv), allow_http);
            if let Ok(host) = std::str::from_utf8(&ov) {
                let _ = list.matches_host(host);
                let _ = DomainPattern::parse(host);
            }
        }

        #[test]
        fn check_never_panics_on_url_like_input(
            tail in "[a-zA-Z0-9.:/?#@\\[\\]%_\\\\-]{0,40}",
            scheme in prop::sample::select(vec!["https://", "http://", "HTTPS://", "data:", ""]),
            allow_http in any::<bool>(),
        ) {
            let list = DomainAllowList::new(["example.com", "*.example.org"]).unwrap();
            let value = format!("{scheme}{tail}");
            let _ = list.check(HeaderField::Single(value.as_bytes()), Absent, allow_http);
            let _ = list.check(Absent, HeaderField::Single(value.as_bytes()), allow_http);
        }

        #[test]
        fn accepted_origin_is_a_canonical_serialization(
            entries in prop::collection::vec(arb_domain(), 1..4),
            pick in any::<prop::sample::Index>(),
            m in any::<u8>(),
            pos in any::<usize>(),
            byte in any::<u8>(),
            port in any::<u16>(),
        ) {
            let list = DomainAllowList::new(&entries).unwrap();
            let entry = pick.get(&entries);
            let origin = mutate(entry, m, pos, byte, port);
            if list.check(HeaderField::Single(&origin), Absent, false).is_ok() {
                // Hosts and schemes are compared case-insensitively, so the
                // property holds for the lower-cased value (byte-equal when
                // the origin was already lower-case, as browsers send it).
                let lower = String::from_utf8(origin.to_ascii_lowercase()).unwrap();
                let ok = entries.iter().any(|e| {
                    let canonical = format!("https://{e}");
                    match lower.strip_prefix(&canonical) {
                        Some("") => true,
                        Some(rest) => rest.strip_prefix(':').is_some_and(|p| {
                            !p.starts_with('0')
                                && p != "443"
                                && p.parse::<u16>().is_ok_and(|n| n.to_string() == p && n != 0)
                        }),
                        None => false,
                    }
                });
                prop_assert!(ok, "accepted non-canonical origin {lower:?} for {entries:?}");
            }
        }
    }
}
