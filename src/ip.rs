//! IP allow-lists checked against the peer address, and the client address
//! behind trusted reverse proxies.
//!
//! A key record may carry an [`IpAllowList`]: the addresses and networks
//! allowed to use a key. [`IpAllowList::allows`] checks one address; an
//! **empty list allows any address**.
//!
//! # Entries
//!
//! An allow-list is written as comma-separated entries, each one of
//!
//! * an IPv4 address in dotted-quad form, exactly four decimal octets without
//!   leading zeros (`192.0.2.7`). Other spellings accepted by some C
//!   libraries (`127.1`, `0x7f.0.0.1`, octal `0177.0.0.1`, `01.2.3.4`,
//!   `2130706433`) are refused;
//! * an IPv6 address as parsed by the standard library (`2001:db8::7`);
//! * a CIDR network `address/length`, the length in decimal without leading
//!   zeros, at most 32 (IPv4) or 128 (IPv6). Host bits must be zero:
//!   `10.0.0.1/8` is refused (write `10.0.0.0/8`).
//!
//! Whitespace is allowed around entries but not inside them. Zone ids
//! (`fe80::1%eth0`), brackets (`[::1]`), ports (`192.0.2.7:80`), host names
//! and anything else are refused. A list that is empty or only ASCII
//! whitespace means "any address"; any other list must parse **entirely** or
//! is refused as a whole — an empty item (`1.2.3.4,,5.6.7.8`, a trailing
//! comma) is an error, so a typo never turns a list into "allow any".
//!
//! # Canonical comparison
//!
//! * **IPv4-mapped IPv6 entries are converted to IPv4 when parsed**
//!   (`::ffff:192.0.2.7` is stored and displayed as `192.0.2.7`,
//!   `::ffff:0:0/96` as `0.0.0.0/0`), in [`IpNet::new`] as well as when
//!   parsing. (IPv4-*compatible* addresses like `::192.0.2.7`, deprecated by
//!   RFC 4291, stay IPv6.)
//! * The peer is canonicalized with [`IpAddr::to_canonical`] before the
//!   check, so a dual-stack socket's `::ffff:192.0.2.7` is `192.0.2.7`.
//! * IPv4 networks never contain IPv6 addresses and vice versa: `::/0` does
//!   **not** admit IPv4 clients (not even ones reported as
//!   `::ffff:192.0.2.7`), and `0.0.0.0/0` does not admit IPv6 clients.
//!
//! # Behind reverse proxies
//!
//! [`client_ip`] finds the client address when the peer may be a reverse
//! proxy you operate. It trusts forwarding headers **only** when the peer is
//! in [`TrustedProxies`]; otherwise it returns the peer and ignores the
//! headers (anybody can send them). From a trusted peer it walks the hops
//! right to left (nearest first), skipping trusted proxies, and returns the
//! first untrusted address; if every hop is trusted it returns the leftmost.
//! Everything left of the returned address was written by the client and is
//! never believed. Any malformed header is an error (fail closed): a
//! repeated header, an empty element, an unparsable address, an `unknown`
//! or obfuscated (`_hidden`) identifier, an over-long value (over
//! [`MAX_FORWARDED_LEN`] bytes).
//!
//! Which header is read is set with [`TrustedProxies::with_header`]; by
//! default ([`ProxyHeader::Auto`]) `X-Forwarded-For` is read when only it is
//! present, `Forwarded` (RFC 7239) when only it is present, and the request is
//! refused ([`ForwardedError::Ambiguous`]) when both are present, because the
//! one your proxies do not write could have been supplied by the client.
//! **Pin the header your proxies actually write** to avoid that refusal. When
//! the consulted header is absent, the trusted peer itself is returned (a
//! request that originated at the proxy, such as a health check).
//!
//! Addresses returned by [`client_ip`] are canonicalized
//! ([`IpAddr::to_canonical`]).
//!
//! Checks ([`IpAllowList::allows`], [`client_ip`]) never allocate.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::origin::HeaderField;

/// Longest allow-list text (in bytes) that [`IpAllowList::parse`] accepts.
pub const MAX_LIST_LEN: usize = 65_536;

/// Longest `X-Forwarded-For` / `Forwarded` value (in bytes) that
/// [`client_ip`] parses; longer values are refused with
/// [`ForwardedError::TooLong`].
pub const MAX_FORWARDED_LEN: usize = 8192;

/// Longest single allow-list entry; the longest valid one
/// (`ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255/128`) has 49 bytes.
const MAX_ENTRY_LEN: usize = 64;

/// How many characters of an offending entry an error message echoes.
const ECHO_MAX_CHARS: usize = 64;

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why an IP allow-list or one of its entries was refused.
///
/// Messages name the offending entry (configuration, not a secret), escaped
/// and truncated to 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IpListError {
    /// The list text is longer than [`MAX_LIST_LEN`] bytes.
    #[error("IP allow-list is too long")]
    ListTooLong,
    /// An empty item in a non-blank list (`1.2.3.4,,5.6.7.8`, a leading or
    /// trailing comma).
    #[error("empty entry at position {position} of the IP allow-list")]
    EmptyEntry {
        /// 1-based position of the empty item.
        position: usize,
    },
    /// Whitespace inside an entry (`1.2.3.4 /24`, `1.2.3.4 5.6.7.8`).
    #[error("IP entry {entry:?} contains whitespace")]
    Whitespace {
        /// The offending entry (truncated).
        entry: String,
    },
    /// An IPv6 zone id (`fe80::1%eth0`).
    #[error("IP entry {entry:?} has a zone id, which is not allowed")]
    ZoneId {
        /// The offending entry (truncated).
        entry: String,
    },
    /// Brackets (`[::1]`).
    #[error("IP entry {entry:?} has brackets, which are not allowed")]
    Brackets {
        /// The offending entry (truncated).
        entry: String,
    },
    /// A port (`1.2.3.4:80`).
    #[error("IP entry {entry:?} has a port, which is not allowed")]
    Port {
        /// The offending entry (truncated).
        entry: String,
    },
    /// Not an IPv4 dotted quad or an IPv6 address.
    #[error("IP entry {entry:?} is not an IPv4 or IPv6 address")]
    InvalidAddress {
        /// The offending entry (truncated).
        entry: String,
    },
    /// A prefix length that is not canonical decimal or exceeds 32 / 128.
    #[error("IP entry {entry:?} has an invalid prefix length")]
    InvalidPrefix {
        /// The offending entry (truncated).
        entry: String,
    },
    /// A network whose address has host bits set (`10.0.0.1/8`).
    #[error("IP entry {entry:?} has host bits set (did you mean {network}?)")]
    HostBitsSet {
        /// The offending entry (truncated).
        entry: String,
        /// The network with host bits cleared (`10.0.0.0/8`).
        network: String,
    },
}

impl IpListError {
    /// A stable name for logs, metrics and tests: the variant's name
    /// (`"ListTooLong"`, `"EmptyEntry"`, `"Whitespace"`, `"ZoneId"`,
    /// `"Brackets"`, `"Port"`, `"InvalidAddress"`, `"InvalidPrefix"`,
    /// `"HostBitsSet"`). Unlike `Display`, it never echoes the entry.
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            IpListError::ListTooLong => "ListTooLong",
            IpListError::EmptyEntry { .. } => "EmptyEntry",
            IpListError::Whitespace { .. } => "Whitespace",
            IpListError::ZoneId { .. } => "ZoneId",
            IpListError::Brackets { .. } => "Brackets",
            IpListError::Port { .. } => "Port",
            IpListError::InvalidAddress { .. } => "InvalidAddress",
            IpListError::InvalidPrefix { .. } => "InvalidPrefix",
            IpListError::HostBitsSet { .. } => "HostBitsSet",
        }
    }
}

/// Truncates an offending entry for an error message.
fn echo(entry: &str) -> String {
    entry.chars().take(ECHO_MAX_CHARS).collect()
}

/// Why [`client_ip`] could not determine the client address.
///
/// Neither the message nor [`as_str`](ForwardedError::as_str) echoes the
/// header value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardedError {
    /// The consulted forwarding header was sent more than once.
    #[error("the forwarding header was sent more than once")]
    Repeated,
    /// The consulted header is longer than [`MAX_FORWARDED_LEN`] bytes.
    #[error("the forwarding header is too long")]
    TooLong,
    /// Bad syntax: non-ASCII or control bytes, an unterminated or escaped
    /// quoted string, a duplicate `for=`, a bad port, stray characters.
    #[error("the forwarding header is malformed")]
    Malformed,
    /// An empty element (empty value, `,,`, a leading or trailing comma).
    #[error("the forwarding header has an empty element")]
    EmptyElement,
    /// A hop that is not a valid IP address (`01.2.3.4`, a host name, an
    /// unbracketed IPv6 address in `Forwarded`).
    #[error("the forwarding header has an invalid address")]
    InvalidAddress,
    /// A hop reported as `unknown`.
    #[error("the forwarding header has an unknown hop")]
    UnknownNode,
    /// A hop with an obfuscated identifier (`_hidden`).
    #[error("the forwarding header has an obfuscated hop")]
    ObfuscatedNode,
    /// A `Forwarded` element without a `for=` parameter.
    #[error("a Forwarded element has no for= parameter")]
    MissingFor,
    /// Both `X-Forwarded-For` and `Forwarded` were sent and
    /// [`ProxyHeader::Auto`] is in effect.
    #[error("both X-Forwarded-For and Forwarded were sent")]
    Ambiguous,
}

impl ForwardedError {
    /// The HTTP status a host should answer with: 400, the forwarding
    /// headers are unusable (fail closed rather than guess the client).
    #[must_use]
    pub const fn http_status(&self) -> u16 {
        400
    }

    /// A stable snake_case code for logs and metrics (`"repeated"`,
    /// `"too_long"`, `"malformed"`, `"empty_element"`, `"invalid_address"`,
    /// `"unknown_node"`, `"obfuscated_node"`, `"missing_for"`,
    /// `"ambiguous"`).
    pub fn as_str(&self) -> &'static str {
        match self {
            ForwardedError::Repeated => "repeated",
            ForwardedError::TooLong => "too_long",
            ForwardedError::Malformed => "malformed",
            ForwardedError::EmptyElement => "empty_element",
            ForwardedError::InvalidAddress => "invalid_address",
            ForwardedError::UnknownNode => "unknown_node",
            ForwardedError::ObfuscatedNode => "obfuscated_node",
            ForwardedError::MissingFor => "missing_for",
            ForwardedError::Ambiguous => "ambiguous",
        }
    }
}

// ---------------------------------------------------------------------------
// Address parsing helpers (allocation-free)
// ---------------------------------------------------------------------------

/// Exactly four decimal octets, 0–255, no leading zeros, no sign.
fn is_dotted_quad(s: &str) -> bool {
    let mut parts = 0usize;
    for part in s.split('.') {
        parts = parts.saturating_add(1);
        let ok = !part.is_empty()
            && part.len() <= 3
            && part.bytes().all(|b| b.is_ascii_digit())
            && (part.len() == 1 || !part.starts_with('0'))
            && part.parse::<u16>().is_ok_and(|v| v <= 255);
        if !ok || parts > 4 {
            return false;
        }
    }
    parts == 4
}

/// A strict IPv4 dotted quad.
fn parse_v4(s: &str) -> Option<Ipv4Addr> {
    if is_dotted_quad(s) {
        Ipv4Addr::from_str(s).ok()
    } else {
        None
    }
}

/// A strict IPv4 dotted quad or an IPv6 address (no brackets, no zone).
fn parse_ip(s: &str) -> Option<IpAddr> {
    if s.contains(':') {
        Ipv6Addr::from_str(s).ok().map(IpAddr::V6)
    } else {
        parse_v4(s).map(IpAddr::V4)
    }
}

/// Netmask with the `prefix` high bits set (`prefix` ≤ 32).
fn mask_v4(prefix: u8) -> u32 {
    u32::MAX
        .checked_shl(32u32.saturating_sub(u32::from(prefix)))
        .unwrap_or(0)
}

/// Netmask with the `prefix` high bits set (`prefix` ≤ 128).
fn mask_v6(prefix: u8) -> u128 {
    u128::MAX
        .checked_shl(128u32.saturating_sub(u32::from(prefix)))
        .unwrap_or(0)
}

/// 32 for IPv4, 128 for IPv6.
fn max_prefix(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

// ---------------------------------------------------------------------------
// IpNet
// ---------------------------------------------------------------------------

/// An IP network: an address and a prefix length, with no host bits set.
///
/// A single address is a network with the full prefix (`/32` or `/128`).
/// IPv4-mapped IPv6 networks are stored in their IPv4 form (see the
/// [module documentation](self)). `Display` gives the canonical form:
/// `192.0.2.0/24`, `2001:db8::/32`, and a single address without `/32` or
/// `/128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Builds a network from its address and prefix length.
    ///
    /// An IPv4-mapped IPv6 address with a prefix of at least 96 is converted
    /// to IPv4 (`::ffff:192.0.2.0/120` → `192.0.2.0/24`).
    ///
    /// # Errors
    ///
    /// [`IpListError::InvalidPrefix`] when `prefix` exceeds 32 (IPv4) or 128
    /// (IPv6); [`IpListError::HostBitsSet`] when `addr` has bits set beyond
    /// the prefix (`10.0.0.1/8`).
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, IpListError> {
        Self::build(addr, prefix, || format!("{addr}/{prefix}"))
    }

    /// A network holding exactly one address (canonicalized with
    /// [`IpAddr::to_canonical`]).
    pub fn single(addr: IpAddr) -> Self {
        let addr = addr.to_canonical();
        IpNet {
            addr,
            prefix: max_prefix(addr),
        }
    }

    /// [`IpNet::new`], with the entry text for error messages supplied by
    /// `entry`.
    fn build(
        addr: IpAddr,
        prefix: u8,
        entry: impl FnOnce() -> String,
    ) -> Result<Self, IpListError> {
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix.saturating_sub(96)),
                None => (addr, prefix),
            },
            _ => (addr, prefix),
        };
        if prefix > max_prefix(addr) {
            return Err(IpListError::InvalidPrefix {
                entry: echo(&entry()),
            });
        }
        let network = match addr {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask_v4(prefix))),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask_v6(prefix))),
        };
        if network != addr {
            return Err(IpListError::HostBitsSet {
                entry: echo(&entry()),
                network: IpNet {
                    addr: network,
                    prefix,
                }
                .to_string(),
            });
        }
        Ok(IpNet { addr, prefix })
    }

    /// Whether `ip` (canonicalized with [`IpAddr::to_canonical`]) is in this
    /// network. IPv4 networks never contain IPv6 addresses and vice versa.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.contains_canonical(ip.to_canonical())
    }

    /// [`contains`](IpNet::contains) for an already canonical address.
    fn contains_canonical(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                u32::from(ip) & mask_v4(self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                u128::from(ip) & mask_v6(self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }

    /// The network address (host bits zero).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length: 0–32 for IPv4, 0–128 for IPv6.
    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix == max_prefix(self.addr) {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

impl FromStr for IpNet {
    type Err = IpListError;

    /// Parses one entry: `address` or `address/length` (see the
    /// [module documentation](self)). No surrounding whitespace is allowed.
    fn from_str(entry: &str) -> Result<Self, Self::Err> {
        let err_entry = || echo(entry);
        if entry.is_empty() || entry.len() > MAX_ENTRY_LEN {
            return Err(IpListError::InvalidAddress { entry: err_entry() });
        }
        if entry.chars().any(char::is_whitespace) {
            return Err(IpListError::Whitespace { entry: err_entry() });
        }
        if entry.contains('%') {
            return Err(IpListError::ZoneId { entry: err_entry() });
        }
        if entry.contains(['[', ']']) {
            return Err(IpListError::Brackets { entry: err_entry() });
        }
        let (addr_text, prefix_text) = match entry.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (entry, None),
        };
        let addr = match parse_ip(addr_text) {
            Some(addr) => addr,
            None => {
                let looks_like_port = addr_text
                    .split_once(':')
                    .is_some_and(|(host, port)| is_dotted_quad(host) && !port.contains(':'));
                return Err(if looks_like_port {
                    IpListError::Port { entry: err_entry() }
                } else {
                    IpListError::InvalidAddress { entry: err_entry() }
                });
            }
        };
        let prefix = match prefix_text {
            None => max_prefix(addr),
            Some(p) => {
                let canonical = !p.is_empty()
                    && p.len() <= 3
                    && p.bytes().all(|b| b.is_ascii_digit())
                    && (p.len() == 1 || !p.starts_with('0'));
                match p.parse::<u8>() {
                    Ok(v) if canonical => v,
                    _ => return Err(IpListError::InvalidPrefix { entry: err_entry() }),
                }
            }
        };
        IpNet::build(addr, prefix, || entry.to_owned())
    }
}

impl From<IpAddr> for IpNet {
    /// Same as [`IpNet::single`].
    fn from(addr: IpAddr) -> Self {
        IpNet::single(addr)
    }
}

// ---------------------------------------------------------------------------
// IpAllowList
// ---------------------------------------------------------------------------

/// The addresses allowed to use a key. Empty = any address.
///
/// ```
/// use api_keys::ip::IpAllowList;
/// let list = IpAllowList::parse(" 192.0.2.0/24, 2001:db8::1 ")?;
/// assert!(list.allows("192.0.2.200".parse().unwrap()));
/// assert!(list.allows("::ffff:192.0.2.7".parse().unwrap()));
/// assert!(!list.allows("198.51.100.1".parse().unwrap()));
/// assert_eq!(list.to_string(), "192.0.2.0/24,2001:db8::1");
/// assert!(IpAllowList::parse("192.0.2.1,").is_err());
/// assert!(IpAllowList::parse("  ")?.is_any());
/// # Ok::<(), api_keys::ip::IpListError>(())
/// ```
///
/// With the `serde` feature it serializes as its `Display` string and
/// deserializes through [`IpAllowList::parse`] (validating).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpAllowList {
    nets: Vec<IpNet>,
}

impl IpAllowList {
    /// The empty list: any address.
    pub(crate) const ANY: Self = Self { nets: Vec::new() };

    /// Parses a comma-separated list (see the [module documentation](self)).
    ///
    /// A blank list (empty or only ASCII whitespace) allows any address.
    /// Duplicates (after canonicalization) are removed; order is kept.
    ///
    /// # Errors
    ///
    /// [`IpListError::ListTooLong`] over [`MAX_LIST_LEN`] bytes;
    /// [`IpListError::EmptyEntry`] for an empty item in a non-blank list;
    /// otherwise the error of the first bad entry. The whole list is refused.
    pub fn parse(list: &str) -> Result<Self, IpListError> {
        if list.len() > MAX_LIST_LEN {
            return Err(IpListError::ListTooLong);
        }
        if list.bytes().all(|b| b.is_ascii_whitespace()) {
            return Ok(IpAllowList::default());
        }
        let mut seen = HashSet::new();
        let mut nets: Vec<IpNet> = Vec::new();
        for (index, item) in list.split(',').enumerate() {
            let item = item.trim_matches(|c: char| c.is_ascii_whitespace());
            if item.is_empty() {
                return Err(IpListError::EmptyEntry {
                    position: index.saturating_add(1),
                });
            }
            let net = IpNet::from_str(item)?;
            if seen.insert(net) {
                nets.push(net);
            }
        }
        Ok(IpAllowList { nets })
    }

    /// Builds a list from networks, removing duplicates and keeping order.
    /// No networks → a list that allows any address.
    pub fn from_nets<I: IntoIterator<Item = IpNet>>(nets: I) -> Self {
        let mut seen = HashSet::new();
        let list: Vec<IpNet> = nets.into_iter().filter(|net| seen.insert(*net)).collect();
        IpAllowList { nets: list }
    }

    /// Whether `peer` may use the key: `true` for an empty list, otherwise
    /// whether a network contains the canonicalized peer
    /// ([`IpAddr::to_canonical`]).
    pub fn allows(&self, peer: IpAddr) -> bool {
        self.nets.is_empty() || self.contains(peer)
    }

    /// Whether a network of the list contains the canonicalized `ip`. Unlike
    /// [`allows`](IpAllowList::allows), an empty list contains nothing.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains_canonical(ip))
    }

    /// Whether the list is empty, i.e. imposes no restriction. (A list such
    /// as `0.0.0.0/0,::/0` also admits every address but is not "any".)
    pub fn is_any(&self) -> bool {
        self.nets.is_empty()
    }

    /// The networks, in order.
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }
}

impl fmt::Display for IpAllowList {
    /// Canonical comma-separated form (no spaces); round-trips through
    /// [`IpAllowList::parse`]. An empty list displays as the empty string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, net) in self.nets.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

impl FromStr for IpAllowList {
    type Err = IpListError;

    /// Same as [`IpAllowList::parse`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IpAllowList::parse(s)
    }
}

#[cfg(feature = "serde")]
mod serde_impls {
    use super::{IpAllowList, IpNet};
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::str::FromStr;

    #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
    impl Serialize for IpAllowList {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_str(self)
        }
    }

    #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
    impl<'de> Deserialize<'de> for IpAllowList {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            let text = String::deserialize(deserializer)?;
            IpAllowList::parse(&text).map_err(D::Error::custom)
        }
    }

    #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
    impl Serialize for IpNet {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_str(self)
        }
    }

    #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
    impl<'de> Deserialize<'de> for IpNet {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            let text = String::deserialize(deserializer)?;
            IpNet::from_str(&text).map_err(D::Error::custom)
        }
    }
}

// ---------------------------------------------------------------------------
// Trusted proxies and the client address
// ---------------------------------------------------------------------------

/// Which forwarding header [`client_ip`] reads from a trusted proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ProxyHeader {
    /// `X-Forwarded-For` if only it is present, `Forwarded` if only it is
    /// present, [`ForwardedError::Ambiguous`] if both are.
    #[default]
    Auto,
    /// Only `X-Forwarded-For`; `Forwarded` is ignored.
    XForwardedFor,
    /// Only `Forwarded` (RFC 7239); `X-Forwarded-For` is ignored.
    Forwarded,
}

/// Proxies whose forwarding headers the host trusts.
///
/// Only list reverse proxies you operate, that append (or overwrite) the
/// forwarding header. **An empty list trusts nobody** — unlike an empty
/// [`IpAllowList`] used as an allow-list, which allows anybody. To trust
/// every peer (only sensible when the service is unreachable except through
/// your proxies) list `0.0.0.0/0,::/0` explicitly.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    proxies: IpAllowList,
    header: ProxyHeader,
}

impl TrustedProxies {
    /// Trusts the proxies in `list` (an empty list trusts nobody), reading
    /// headers as per [`ProxyHeader::Auto`].
    pub fn new(list: IpAllowList) -> Self {
        TrustedProxies {
            proxies: list,
            header: ProxyHeader::Auto,
        }
    }

    /// Trusts no proxy: [`client_ip`] always returns the peer.
    pub fn none() -> Self {
        TrustedProxies::default()
    }

    /// Sets which forwarding header is read (see [`ProxyHeader`]).
    #[must_use]
    pub fn with_header(mut self, header: ProxyHeader) -> Self {
        self.header = header;
        self
    }

    /// Which forwarding header is read.
    pub fn header(&self) -> ProxyHeader {
        self.header
    }

    /// The trusted proxies.
    pub fn proxies(&self) -> &IpAllowList {
        &self.proxies
    }

    /// Whether `ip` (canonicalized) is a trusted proxy. Always `false` for an
    /// empty list.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.proxies.contains(ip)
    }
}

/// Determines the client address of a request.
///
/// `peer` is the address of the TCP peer; `x_forwarded_for` and `forwarded`
/// are the request's `X-Forwarded-For` and `Forwarded` headers. If the peer
/// is not a trusted proxy it is returned and the headers are ignored.
/// Otherwise the consulted header (see [`ProxyHeader`]) is walked from right
/// to left, skipping trusted proxies, and the first untrusted address is
/// returned; if all hops are trusted, the leftmost is returned; if the
/// header is absent, the peer is returned. The result is canonicalized
/// ([`IpAddr::to_canonical`]). See the [module documentation](self).
///
/// `X-Forwarded-For` elements are IP addresses (IPv4 dotted quad or IPv6),
/// optionally bracketed (`[2001:db8::1]`) and optionally with a port
/// (`192.0.2.7:4711`, `[2001:db8::1]:4711`). `Forwarded` elements must each
/// carry exactly one `for=` parameter whose value is a token or a quoted
/// string (quoted-pair escapes are refused); IPv6 nodes must be bracketed
/// (`for="[2001:db8::1]:4711"`); unquoted values may contain `:`, `[` and
/// `]` (`for=192.0.2.7:80`) although RFC 7239 requires quoting them. Other
/// parameters (`by`, `proto`, `host`) are checked for syntax and ignored.
///
/// Never allocates and never panics, whatever the header bytes.
///
/// # Errors
///
/// Returns a [`ForwardedError`] when the peer is trusted and the consulted
/// header is repeated, too long, malformed, has an empty element, an invalid
/// address, an `unknown` or obfuscated hop, or a `Forwarded` element without
/// `for=`; or when both headers are present under [`ProxyHeader::Auto`].
/// Every hop is validated, including those left of the returned address.
pub fn client_ip(
    peer: IpAddr,
    x_forwarded_for: HeaderField<'_>,
    forwarded: HeaderField<'_>,
    trusted: &TrustedProxies,
) -> Result<IpAddr, ForwardedError> {
    let peer = peer.to_canonical();
    if !trusted.is_trusted(peer) {
        return Ok(peer);
    }
    let (field, is_xff) = match trusted.header {
        ProxyHeader::XForwardedFor => (x_forwarded_for, true),
        ProxyHeader::Forwarded => (forwarded, false),
        ProxyHeader::Auto => match (x_forwarded_for.is_present(), forwarded.is_present()) {
            (true, true) => return Err(ForwardedError::Ambiguous),
            (true, false) => (x_forwarded_for, true),
            (false, true) => (forwarded, false),
            (false, false) => return Ok(peer),
        },
    };
    let value = match field {
        HeaderField::Absent => return Ok(peer),
        HeaderField::Repeated => return Err(ForwardedError::Repeated),
        HeaderField::Single(value) => value,
    };
    if value.len() > MAX_FORWARDED_LEN {
        return Err(ForwardedError::TooLong);
    }
    // Visible ASCII, space and tab only.
    if !value
        .iter()
        .all(|&b| (0x20..=0x7e).contains(&b) || b == b'\t')
    {
        return Err(ForwardedError::Malformed);
    }
    let value = std::str::from_utf8(value).map_err(|_| ForwardedError::Malformed)?;

    let mut walk = Walk {
        trusted,
        leftmost: None,
        rightmost_untrusted: None,
    };
    if is_xff {
        parse_xff(value, &mut walk)?;
    } else {
        parse_forwarded(value, &mut walk)?;
    }
    walk.rightmost_untrusted
        .or(walk.leftmost)
        .ok_or(ForwardedError::EmptyElement)
}

/// State of the hop walk. Hops are fed left to right; the answer is the
/// rightmost untrusted hop, else the leftmost hop — the same as walking
/// right to left and stopping at the first untrusted hop, but every hop is
/// still validated.
struct Walk<'t> {
    trusted: &'t TrustedProxies,
    leftmost: Option<IpAddr>,
    rightmost_untrusted: Option<IpAddr>,
}

impl Walk<'_> {
    fn hop(&mut self, ip: IpAddr) {
        let ip = ip.to_canonical();
        if self.leftmost.is_none() {
            self.leftmost = Some(ip);
        }
        if !self.trusted.is_trusted(ip) {
            self.rightmost_untrusted = Some(ip);
        }
    }
}

/// Optional whitespace of HTTP field values.
fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Trims HTTP optional whitespace.
fn trim_ows(s: &str) -> &str {
    s.trim_matches(|c: char| c == ' ' || c == '\t')
}

/// Parses `X-Forwarded-For`: comma-separated nodes.
fn parse_xff(value: &str, walk: &mut Walk<'_>) -> Result<(), ForwardedError> {
    for item in value.split(',') {
        let item = trim_ows(item);
        if item.is_empty() {
            return Err(ForwardedError::EmptyElement);
        }
        walk.hop(parse_node(item, true)?);
    }
    Ok(())
}

/// A port after a node: 1–5 digits up to 65535, or an obfuscated port
/// (`_` followed by `ALPHA / DIGIT / "." / "_" / "-"`).
fn is_node_port(port: &str) -> bool {
    if let Some(obf) = port.strip_prefix('_') {
        return !obf.is_empty()
            && obf
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    }
    !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u32>().is_ok_and(|p| p <= 65_535)
}

/// Parses one hop: `unknown` and obfuscated names are refused; IPv4 dotted
/// quad with an optional port; bracketed IPv6 with an optional port; bare
/// IPv6 only when `bare_v6` (X-Forwarded-For).
fn parse_node(node: &str, bare_v6: bool) -> Result<IpAddr, ForwardedError> {
    if node.eq_ignore_ascii_case("unknown") {
        return Err(ForwardedError::UnknownNode);
    }
    if node.starts_with('_') {
        return Err(ForwardedError::ObfuscatedNode);
    }
    if let Some(rest) = node.strip_prefix('[') {
        let (inner, after) = rest.split_once(']').ok_or(ForwardedError::InvalidAddress)?;
        let ip = Ipv6Addr::from_str(inner).map_err(|_| ForwardedError::InvalidAddress)?;
        if !after.is_empty() && !after.strip_prefix(':').is_some_and(is_node_port) {
            return Err(ForwardedError::Malformed);
        }
        return Ok(IpAddr::V6(ip));
    }
    if let Some(v4) = parse_v4(node) {
        return Ok(IpAddr::V4(v4));
    }
    if bare_v6 && let Ok(v6) = Ipv6Addr::from_str(node) {
        return Ok(IpAddr::V6(v6));
    }
    if let Some((host, port)) = node.split_once(':')
        && let Some(v4) = parse_v4(host)
    {
        return if is_node_port(port) {
            Ok(IpAddr::V4(v4))
        } else {
            Err(ForwardedError::Malformed)
        };
    }
    Err(ForwardedError::InvalidAddress)
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// Characters of an unquoted `Forwarded` value: `tchar`, plus `:`, `[`, `]`
/// (tolerated although RFC 7239 requires quoting them).
fn is_value_char(b: u8) -> bool {
    is_tchar(b) || matches!(b, b':' | b'[' | b']')
}

/// A cursor over the bytes of an ASCII header value.
struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn bump(&mut self) {
        self.pos = self.pos.saturating_add(1);
    }

    fn skip_ows(&mut self) {
        while self.peek().is_some_and(is_ows) {
            self.bump();
        }
    }

    /// Consumes bytes while `pred` holds and returns them.
    fn take_while(&mut self, pred: impl Fn(u8) -> bool) -> Result<&'a str, ForwardedError> {
        let start = self.pos;
        while self.peek().is_some_and(&pred) {
            self.bump();
        }
        self.text
            .get(start..self.pos)
            .ok_or(ForwardedError::Malformed)
    }
}

/// Parses `Forwarded` (RFC 7239): comma-separated elements of
/// semicolon-separated `name=value` pairs.
fn parse_forwarded(value: &str, walk: &mut Walk<'_>) -> Result<(), ForwardedError> {
    let mut cur = Cursor {
        text: value,
        pos: 0,
    };
    loop {
        // One element.
        cur.skip_ows();
        if matches!(cur.peek(), None | Some(b',')) {
            return Err(ForwardedError::EmptyElement);
        }
        let mut for_value: Option<&str> = None;
        let more = loop {
            // One pair.
            cur.skip_ows();
            let name = cur.take_while(is_tchar)?;
            if name.is_empty() || cur.peek() != Some(b'=') {
                return Err(ForwardedError::Malformed);
            }
            cur.bump();
            let pair_value = if cur.peek() == Some(b'"') {
                cur.bump();
                let inner = cur.take_while(|b| b != b'"' && b != b'\\')?;
                if cur.peek() != Some(b'"') {
                    // Unterminated, or a quoted-pair escape (not supported).
                    return Err(ForwardedError::Malformed);
                }
                cur.bump();
                inner
            } else {
                cur.take_while(is_value_char)?
            };
            if pair_value.is_empty() {
                return Err(ForwardedError::Malformed);
            }
            if name.eq_ignore_ascii_case("for") {
                if for_value.is_some() {
                    return Err(ForwardedError::Malformed);
                }
                for_value = Some(pair_value);
            }
            cur.skip_ows();
            match cur.peek() {
                Some(b';') => cur.bump(),
                Some(b',') => {
                    cur.bump();
                    break true;
                }
                None => break false,
                Some(_) => return Err(ForwardedError::Malformed),
            }
        };
        let node = for_value.ok_or(ForwardedError::MissingFor)?;
        walk.hop(parse_node(node, false)?);
        if !more {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use HeaderField::{Absent, Repeated};
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn entry_table() {
        #[rustfmt::skip]
        let rows: &[(&str, Result<&str, &str>, &str)] = &[
            ("192.0.2.7", Ok("192.0.2.7"), "single IPv4"),
            ("192.0.2.0/24", Ok("192.0.2.0/24"), "IPv4 network"),
            ("192.0.2.7/32", Ok("192.0.2.7"), "/32 displays as a single address"),
            ("0.0.0.0/0", Ok("0.0.0.0/0"), "all IPv4"),
            ("10.0.0.1/8", Err("HostBitsSet"), "host bits set"),
            ("192.0.2.7/0", Err("HostBitsSet"), "host bits set with /0"),
            ("192.0.2.0/33", Err("InvalidPrefix"), "prefix over 32"),
            ("192.0.2.0/024", Err("InvalidPrefix"), "leading zero in prefix"),
            ("192.0.2.0/", Err("InvalidPrefix"), "empty prefix"),
            ("192.0.2.0/+24", Err("InvalidPrefix"), "signed prefix"),
            ("192.0.2.0/24/1", Err("InvalidPrefix"), "two slashes"),
            ("192.0.2.0/1000", Err("InvalidPrefix"), "prefix out of u8"),
            ("01.2.3.4", Err("InvalidAddress"), "leading zero octet"),
            ("1.2.3.04", Err("InvalidAddress"), "leading zero, last octet"),
            ("0x7f.0.0.1", Err("InvalidAddress"), "hex spelling"),
            ("0177.0.0.1", Err("InvalidAddress"), "octal spelling"),
            ("127.1", Err("InvalidAddress"), "short form"),
            ("2130706433", Err("InvalidAddress"), "integer form"),
            ("1.2.3.4.5", Err("InvalidAddress"), "five octets"),
            ("256.0.0.1", Err("InvalidAddress"), "octet out of range"),
            ("-1.2.3.4", Err("InvalidAddress"), "sign"),
            ("example.com", Err("InvalidAddress"), "host name"),
            ("*", Err("InvalidAddress"), "wildcard"),
            ("", Err("InvalidAddress"), "empty entry via FromStr"),
            ("::1", Ok("::1"), "IPv6 loopback"),
            ("::1/128", Ok("::1"), "/128 displays as a single address"),
            ("2001:DB8::/32", Ok("2001:db8::/32"), "IPv6 network, upper-case"),
            ("2001:db8:0:0::/64", Ok("2001:db8::/64"), "IPv6 canonical compression"),
            ("2001:db8::1/32", Err("HostBitsSet"), "IPv6 host bits set"),
            ("::/0", Ok("::/0"), "all IPv6"),
            ("2001:db8::/129", Err("InvalidPrefix"), "prefix over 128"),
            ("::ffff:192.0.2.7", Ok("192.0.2.7"), "IPv4-mapped entry becomes IPv4"),
            ("::ffff:192.0.2.0/120", Ok("192.0.2.0/24"), "IPv4-mapped network becomes IPv4"),
            ("::ffff:0:0/96", Ok("0.0.0.0/0"), "whole mapped range becomes 0.0.0.0/0"),
            ("::ffff:0:0/95", Err("HostBitsSet"), "mapped address with short prefix"),
            ("::ffff:01.2.3.4", Err("InvalidAddress"), "leading zero in embedded IPv4"),
            ("::192.0.2.7", Ok("::c000:207"), "IPv4-compatible stays IPv6"),
            ("fe80::1%eth0", Err("ZoneId"), "zone id"),
            ("fe80::1%1", Err("ZoneId"), "numeric zone id"),
            ("[::1]", Err("Brackets"), "brackets"),
            ("[::1]/128", Err("Brackets"), "brackets with prefix"),
            ("192.0.2.7:80", Err("Port"), "port"),
            ("[2001:db8::1]:80", Err("Brackets"), "bracketed IPv6 with port"),
            ("192.0.2.7 /24", Err("Whitespace"), "space before prefix"),
            ("192.0.2.7\t", Err("Whitespace"), "trailing tab via FromStr"),
            ("192.0.2.7\u{a0}", Err("Whitespace"), "non-breaking space"),
            ("192.0.2.7\0", Err("InvalidAddress"), "NUL"),
        ];
        for &(entry, expected, why) in rows {
            let got = IpNet::from_str(entry);
            match (&got, expected) {
                (Ok(net), Ok(display)) => {
                    assert_eq!(net.to_string(), display, "{entry:?}: {why}");
                    assert_eq!(IpNet::from_str(display).as_ref(), Ok(net), "{why}");
                }
                (Err(e), Err(k)) => assert_eq!(e.as_str(), k, "{entry:?}: {why}"),
                _ => panic!("{entry:?}: {why}: got {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn new_and_accessors() {
        let net = IpNet::new(ip("::ffff:10.0.0.0"), 104).unwrap();
        assert_eq!(net.addr(), ip("10.0.0.0"));
        assert_eq!(net.prefix_len(), 8);
        assert!(IpNet::new(ip("10.0.0.0"), 33).is_err());
        let err = IpNet::new(ip("10.0.0.1"), 8).unwrap_err();
        assert_eq!(
            err,
            IpListError::HostBitsSet {
                entry: "10.0.0.1/8".into(),
                network: "10.0.0.0/8".into()
            }
        );
        assert!(err.to_string().contains("10.0.0.0/8"));
        assert_eq!(IpNet::single(ip("::ffff:1.2.3.4")).to_string(), "1.2.3.4");
        assert_eq!(IpNet::from(ip("2001:db8::1")).prefix_len(), 128);
        // Long entries are echoed truncated.
        let long = "9".repeat(300);
        let msg = IpNet::from_str(&long).unwrap_err().to_string();
        assert!(msg.len() < 140, "{msg}");
    }

    #[test]
    fn list_table() {
        let too_long = "1.2.3.4,".repeat(MAX_LIST_LEN / 8 + 1);
        #[rustfmt::skip]
        let rows: Vec<(&str, Result<&str, &str>, &str)> = vec![
            ("", Ok(""), "empty = any"),
            ("  \t\r\n ", Ok(""), "only whitespace = any"),
            ("192.0.2.7", Ok("192.0.2.7"), "one entry"),
            (" 192.0.2.7 , 10.0.0.0/8 ", Ok("192.0.2.7,10.0.0.0/8"), "whitespace around entries"),
            ("192.0.2.7,192.0.2.7,::ffff:192.0.2.7", Ok("192.0.2.7"), "duplicates removed after canonicalization"),
            ("2001:db8::/32,192.0.2.0/24", Ok("2001:db8::/32,192.0.2.0/24"), "order kept"),
            ("192.0.2.7,,192.0.2.8", Err("EmptyEntry"), "empty item inside"),
            ("192.0.2.7,", Err("EmptyEntry"), "trailing comma"),
            (",192.0.2.7", Err("EmptyEntry"), "leading comma"),
            (",", Err("EmptyEntry"), "only a comma"),
            ("192.0.2.7, ,192.0.2.8", Err("EmptyEntry"), "blank item inside"),
            ("192.0.2.7, bogus", Err("InvalidAddress"), "one bad entry refuses the list"),
            ("192.0.2.7;192.0.2.8", Err("InvalidAddress"), "wrong separator"),
            ("192.0.2.7 192.0.2.8", Err("Whitespace"), "space-separated"),
            ("\u{a0}", Err("Whitespace"), "non-ASCII whitespace is not blank"),
            ("10.0.0.1/8", Err("HostBitsSet"), "host bits set"),
            ("*", Err("InvalidAddress"), "star is not any"),
            (&too_long, Err("ListTooLong"), "over MAX_LIST_LEN"),
        ];
        for (text, expected, why) in rows {
            let got = IpAllowList::parse(text);
            match (&got, expected) {
                (Ok(list), Ok(display)) => {
                    assert_eq!(list.to_string(), display, "{text:?}: {why}");
                    assert_eq!(list.is_any(), display.is_empty(), "{why}");
                    assert_eq!(IpAllowList::parse(display).as_ref(), Ok(list), "{why}");
                }
                (Err(e), Err(k)) => assert_eq!(e.as_str(), k, "{text:?}: {why}"),
                _ => panic!("{text:?}: {why}: got {got:?}, expected {expected:?}"),
            }
        }
        assert_eq!(
            IpAllowList::parse("1.2.3.4,,5.6.7.8"),
            Err(IpListError::EmptyEntry { position: 2 })
        );
    }

    #[test]
    fn allows_table() {
        #[rustfmt::skip]
        let rows: &[(&str, &str, bool, &str)] = &[
            ("10.0.0.0/8", "10.0.0.0", true, "first address of range"),
            ("10.0.0.0/8", "10.255.255.255", true, "last address of range"),
            ("10.0.0.0/8", "11.0.0.0", false, "one past the end"),
            ("10.0.0.0/8", "9.255.255.255", false, "one before the start"),
            ("10.0.0.0/8", "::ffff:10.1.2.3", true, "IPv4-mapped peer is canonicalized"),
            ("192.0.2.7", "192.0.2.7", true, "single address"),
            ("192.0.2.7/32", "192.0.2.8", false, "/32 is one address"),
            ("::ffff:192.0.2.7", "192.0.2.7", true, "mapped entry matches IPv4 peer"),
            ("::ffff:192.0.2.7", "::ffff:192.0.2.7", true, "mapped entry matches mapped peer"),
            ("::/0", "192.0.2.7", false, "::/0 does not admit IPv4"),
            ("::/0", "::ffff:192.0.2.7", false, "::/0 does not admit mapped IPv4"),
            ("::/0", "2001:db8::1", true, "::/0 admits IPv6"),
            ("0.0.0.0/0", "2001:db8::1", false, "0.0.0.0/0 does not admit IPv6"),
            ("0.0.0.0/0", "8.8.8.8", true, "0.0.0.0/0 admits IPv4"),
            ("::ffff:0:0/96", "203.0.113.9", true, "whole mapped range = all IPv4"),
            ("::ffff:0:0/96", "::1", false, "whole mapped range is not IPv6"),
            ("2001:db8::/32", "2001:db8::", true, "first IPv6 address"),
            ("2001:db8::/32", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", true, "last IPv6 address"),
            ("2001:db8::/32", "2001:db9::", false, "one past the end"),
            ("2001:db8::/32", "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", false, "one before the start"),
            ("::1/128", "::1", true, "/128 exact"),
            ("::1/128", "::2", false, "/128 neighbour"),
            ("127.0.0.1", "::1", false, "IPv4 loopback is not IPv6 loopback"),
            ("::192.0.2.7", "192.0.2.7", false, "IPv4-compatible entry is IPv6"),
            ("", "203.0.113.9", true, "empty list allows any IPv4"),
            ("", "2001:db8::1", true, "empty list allows any IPv6"),
            ("192.0.2.0/24, 2001:db8::/32", "2001:db8::5", true, "mixed list, IPv6 hit"),
            ("192.0.2.0/24, 2001:db8::/32", "198.51.100.1", false, "mixed list, miss"),
        ];
        for &(list, peer, expected, why) in rows {
            let parsed = IpAllowList::parse(list).unwrap();
            assert_eq!(parsed.allows(ip(peer)), expected, "{list} vs {peer}: {why}");
        }
        let net = IpNet::from_str("10.0.0.0/8").unwrap();
        assert!(net.contains(ip("::ffff:10.0.0.1")));
        assert!(!IpAllowList::default().contains(ip("10.0.0.1")));
    }

    fn proxies() -> TrustedProxies {
        TrustedProxies::new(IpAllowList::parse("10.0.0.0/8, 2001:db8:ffff::/48").unwrap())
    }

    fn s(v: &str) -> HeaderField<'_> {
        HeaderField::Single(v.as_bytes())
    }

    /// peer, X-Forwarded-For, Forwarded, expected client address, why.
    type ClientRow<'a> = (
        &'a str,
        HeaderField<'a>,
        HeaderField<'a>,
        Result<&'a str, ForwardedError>,
        &'a str,
    );

    #[test]
    fn client_ip_table() {
        use ForwardedError as E;
        let t = proxies();
        let too_long = "1.2.3.4, ".repeat(MAX_FORWARDED_LEN / 9 + 1);
        #[rustfmt::skip]
        let rows: Vec<ClientRow<'_>> = vec![
            // Untrusted peer: headers ignored.
            ("203.0.113.5", s("1.2.3.4"), Absent, Ok("203.0.113.5"), "untrusted peer, XFF ignored"),
            ("203.0.113.5", s("garbage"), s("garbage"), Ok("203.0.113.5"), "untrusted peer, garbage ignored"),
            ("203.0.113.5", Repeated, Repeated, Ok("203.0.113.5"), "untrusted peer, repeats ignored"),
            ("::ffff:203.0.113.5", Absent, Absent, Ok("203.0.113.5"), "peer canonicalized"),
            // Trusted peer, X-Forwarded-For.
            ("10.0.0.1", s("1.2.3.4"), Absent, Ok("1.2.3.4"), "one hop"),
            ("10.0.0.1", s("1.2.3.4, 10.0.0.2"), Absent, Ok("1.2.3.4"), "skip trusted hop"),
            ("10.0.0.1", s("6.6.6.6, 1.2.3.4, 10.0.0.2"), Absent, Ok("1.2.3.4"), "spoofed leftmost ignored"),
            ("10.0.0.1", s("10.0.0.3,10.0.0.2"), Absent, Ok("10.0.0.3"), "all trusted: leftmost"),
            ("10.0.0.1", s(" 1.2.3.4 \t"), Absent, Ok("1.2.3.4"), "OWS trimmed"),
            ("::ffff:10.0.0.1", s("1.2.3.4"), Absent, Ok("1.2.3.4"), "mapped trusted peer"),
            ("2001:db8:ffff::1", s("2001:db8::7"), Absent, Ok("2001:db8::7"), "IPv6 proxy, bare IPv6 hop"),
            ("10.0.0.1", s("[2001:db8::7]:443"), Absent, Ok("2001:db8::7"), "bracketed IPv6 with port"),
            ("10.0.0.1", s("[2001:db8::7]"), Absent, Ok("2001:db8::7"), "bracketed IPv6"),
            ("10.0.0.1", s("1.2.3.4:5678"), Absent, Ok("1.2.3.4"), "IPv4 with port"),
            ("10.0.0.1", s("::ffff:1.2.3.4"), Absent, Ok("1.2.3.4"), "mapped hop canonicalized"),
            ("10.0.0.1", s("::ffff:10.0.0.9, 1.2.3.4"), Absent, Ok("1.2.3.4"), "mapped hop recognized as trusted"),
            ("10.0.0.1", Absent, Absent, Ok("10.0.0.1"), "no header: the proxy itself"),
            ("10.0.0.1", s("1.2.3.4,,10.0.0.2"), Absent, Err(E::EmptyElement), "empty element"),
            ("10.0.0.1", s("1.2.3.4,"), Absent, Err(E::EmptyElement), "trailing comma"),
            ("10.0.0.1", s(""), Absent, Err(E::EmptyElement), "empty value"),
            ("10.0.0.1", s("unknown, 1.2.3.4"), Absent, Err(E::UnknownNode), "unknown hop, even on the left"),
            ("10.0.0.1", s("_hidden"), Absent, Err(E::ObfuscatedNode), "obfuscated hop"),
            ("10.0.0.1", s("01.2.3.4"), Absent, Err(E::InvalidAddress), "leading zero octet"),
            ("10.0.0.1", s("0x7f.0.0.1"), Absent, Err(E::InvalidAddress), "hex IPv4"),
            ("10.0.0.1", s("127.1"), Absent, Err(E::InvalidAddress), "short IPv4"),
            ("10.0.0.1", s("example.com"), Absent, Err(E::InvalidAddress), "host name"),
            ("10.0.0.1", s("1.2.3.4 5.6.7.8"), Absent, Err(E::InvalidAddress), "missing comma"),
            ("10.0.0.1", s("fe80::1%eth0"), Absent, Err(E::InvalidAddress), "zone id"),
            ("10.0.0.1", s("1.2.3.4:99999"), Absent, Err(E::Malformed), "port out of range"),
            ("10.0.0.1", s("[::1"), Absent, Err(E::InvalidAddress), "unclosed bracket"),
            ("10.0.0.1", s("1.2.3.4\0"), Absent, Err(E::Malformed), "NUL"),
            ("10.0.0.1", s("1.2.3.4\u{e9}"), Absent, Err(E::Malformed), "non-ASCII"),
            ("10.0.0.1", s(&too_long), Absent, Err(E::TooLong), "over the cap"),
            ("10.0.0.1", Repeated, Absent, Err(E::Repeated), "repeated XFF"),
            // Trusted peer, Forwarded.
            ("10.0.0.1", Absent, s("for=1.2.3.4"), Ok("1.2.3.4"), "simple Forwarded"),
            ("10.0.0.1", Absent, s("For=1.2.3.4"), Ok("1.2.3.4"), "parameter names are case-insensitive"),
            ("10.0.0.1", Absent, s("for=\"[2001:db8::7]:4711\""), Ok("2001:db8::7"), "quoted IPv6 with port"),
            ("10.0.0.1", Absent, s("for=\"[2001:db8::7]\""), Ok("2001:db8::7"), "quoted IPv6"),
            ("10.0.0.1", Absent, s("for=1.2.3.4:80"), Ok("1.2.3.4"), "unquoted IPv4 with port tolerated"),
            ("10.0.0.1", Absent, s("for=\"1.2.3.4:_abc\""), Ok("1.2.3.4"), "obfuscated port"),
            ("10.0.0.1", Absent, s("for=192.0.2.60;proto=http;by=203.0.113.43"), Ok("192.0.2.60"), "RFC 7239 example"),
            ("10.0.0.1", Absent, s("proto=https;for=1.2.3.4"), Ok("1.2.3.4"), "for not first"),
            ("10.0.0.1", Absent, s("for=1.2.3.4 ; proto=http"), Ok("1.2.3.4"), "OWS around ;"),
            ("10.0.0.1", Absent, s("for=6.6.6.6, for=1.2.3.4;proto=https, for=10.0.0.2"), Ok("1.2.3.4"), "chain: skip trusted, ignore spoofed"),
            ("10.0.0.1", Absent, s("for=10.0.0.3,for=10.0.0.2"), Ok("10.0.0.3"), "all trusted: leftmost"),
            ("10.0.0.1", Absent, s("for=unknown"), Err(E::UnknownNode), "unknown"),
            ("10.0.0.1", Absent, s("for=\"_gazonk\""), Err(E::ObfuscatedNode), "obfuscated identifier"),
            ("10.0.0.1", Absent, s("for=\"2001:db8::7\""), Err(E::InvalidAddress), "IPv6 must be bracketed"),
            ("10.0.0.1", Absent, s("proto=https"), Err(E::MissingFor), "no for="),
            ("10.0.0.1", Absent, s("for=1.2.3.4;for=5.6.7.8"), Err(E::Malformed), "duplicate for="),
            ("10.0.0.1", Absent, s("for=1.2.3.4,"), Err(E::EmptyElement), "trailing comma"),
            ("10.0.0.1", Absent, s(",for=1.2.3.4"), Err(E::EmptyElement), "leading comma"),
            ("10.0.0.1", Absent, s("for=\"1.2.3.4"), Err(E::Malformed), "unterminated quote"),
            ("10.0.0.1", Absent, s("for=\"1.2.3.\\4\""), Err(E::Malformed), "quoted-pair escapes refused"),
            ("10.0.0.1", Absent, s("for="), Err(E::Malformed), "empty value"),
            ("10.0.0.1", Absent, s("for = 1.2.3.4"), Err(E::Malformed), "whitespace around ="),
            ("10.0.0.1", Absent, s("for=1.2.3.4;;proto=http"), Err(E::Malformed), "empty pair"),
            ("10.0.0.1", Absent, s("for=1.2.3.4 x"), Err(E::Malformed), "trailing junk"),
            ("10.0.0.1", Absent, s("1.2.3.4"), Err(E::Malformed), "XFF syntax in Forwarded"),
            ("10.0.0.1", Absent, Repeated, Err(E::Repeated), "repeated Forwarded"),
            // Both headers.
            ("10.0.0.1", s("1.2.3.4"), s("for=5.6.7.8"), Err(E::Ambiguous), "both present under Auto"),
            ("203.0.113.5", s("1.2.3.4"), s("for=5.6.7.8"), Ok("203.0.113.5"), "untrusted peer: no ambiguity"),
        ];
        for (peer, xff, fwd, expected, why) in rows {
            let got = client_ip(ip(peer), xff, fwd, &t);
            assert_eq!(
                got,
                expected.map(ip),
                "{why}: peer={peer} xff={xff:?} fwd={fwd:?}"
            );
        }
    }

    #[test]
    fn client_ip_pinned_header_and_empty_trust() {
        let xff_only = proxies().with_header(ProxyHeader::XForwardedFor);
        assert_eq!(xff_only.header(), ProxyHeader::XForwardedFor);
        let fwd_only = proxies().with_header(ProxyHeader::Forwarded);
        let peer = ip("10.0.0.1");
        // Pinned: the other header is ignored, even when garbage or repeated.
        assert_eq!(
            client_ip(peer, s("1.2.3.4"), s("for=5.6.7.8"), &xff_only),
            Ok(ip("1.2.3.4"))
        );
        assert_eq!(
            client_ip(peer, s("1.2.3.4"), Repeated, &xff_only),
            Ok(ip("1.2.3.4"))
        );
        assert_eq!(
            client_ip(peer, s("garbage"), s("for=5.6.7.8"), &fwd_only),
            Ok(ip("5.6.7.8"))
        );
        assert_eq!(
            client_ip(peer, Absent, s("for=5.6.7.8"), &xff_only),
            Ok(peer)
        );
        // Empty trust list trusts nobody (unlike an empty allow-list).
        for t in [
            TrustedProxies::none(),
            TrustedProxies::new(IpAllowList::default()),
        ] {
            assert!(!t.is_trusted(peer));
            assert!(t.proxies().is_any());
            assert_eq!(client_ip(peer, s("1.2.3.4"), Absent, &t), Ok(peer));
        }
        // Trusting everybody must be explicit.
        let all = TrustedProxies::new(IpAllowList::parse("0.0.0.0/0,::/0").unwrap());
        assert_eq!(
            client_ip(ip("203.0.113.5"), s("1.2.3.4"), Absent, &all),
            Ok(ip("1.2.3.4"))
        );
        // With everybody trusted, the leftmost hop is returned.
        assert_eq!(
            client_ip(ip("203.0.113.5"), s("1.2.3.4, 5.6.7.8"), Absent, &all),
            Ok(ip("1.2.3.4"))
        );
    }

    #[test]
    fn forwarded_error_codes_are_distinct() {
        use ForwardedError as E;
        let all = [
            E::Repeated,
            E::TooLong,
            E::Malformed,
            E::EmptyElement,
            E::InvalidAddress,
            E::UnknownNode,
            E::ObfuscatedNode,
            E::MissingFor,
            E::Ambiguous,
        ];
        let codes: HashSet<&str> = all.iter().map(E::as_str).collect();
        assert_eq!(codes.len(), all.len());
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_deserializes_through_parse() {
        use serde::Deserialize;
        use serde::de::IntoDeserializer;
        use serde::de::value::{Error, StrDeserializer};

        let de: StrDeserializer<'_, Error> = " 10.0.0.0/8 , ::ffff:1.2.3.4".into_deserializer();
        let list = IpAllowList::deserialize(de).unwrap();
        assert_eq!(list.to_string(), "10.0.0.0/8,1.2.3.4");
        let de: StrDeserializer<'_, Error> = "10.0.0.1/8".into_deserializer();
        assert!(IpAllowList::deserialize(de).is_err());
        let de: StrDeserializer<'_, Error> = "1.2.3.4,".into_deserializer();
        assert!(IpAllowList::deserialize(de).is_err());
    }

    // -- property tests -----------------------------------------------------

    fn arb_net() -> impl Strategy<Value = IpNet> {
        prop_oneof![
            (any::<u32>(), 0u8..=32).prop_map(|(a, p)| {
                IpNet::new(IpAddr::V4(Ipv4Addr::from(a & mask_v4(p))), p).unwrap()
            }),
            (any::<u128>(), 0u8..=128).prop_map(|(a, p)| {
                IpNet::new(IpAddr::V6(Ipv6Addr::from(a & mask_v6(p))), p).unwrap()
            }),
            // IPv4-mapped networks, canonicalized to IPv4.
            (any::<u32>(), 96u8..=128).prop_map(|(a, p)| {
                let v6 = Ipv4Addr::from(a).to_ipv6_mapped();
                IpNet::new(IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask_v6(p))), p).unwrap()
            }),
        ]
    }

    fn arb_header() -> impl Strategy<Value = (u8, Vec<u8>)> {
        (0u8..3, prop::collection::vec(any::<u8>(), 0..60))
    }

    fn field(kind: u8, bytes: &[u8]) -> HeaderField<'_> {
        match kind {
            0 => Absent,
            1 => HeaderField::Single(bytes),
            _ => Repeated,
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in any::<String>()) {
            let _ = IpAllowList::parse(&text);
            let _ = IpNet::from_str(&text);
        }

        #[test]
        fn parse_never_panics_on_ip_like_text(text in "[0-9a-fA-F:./%\\[\\], x]{0,60}") {
            if let Ok(list) = IpAllowList::parse(&text) {
                prop_assert_eq!(IpAllowList::parse(&list.to_string()), Ok(list));
            }
        }

        #[test]
        fn display_round_trips(nets in prop::collection::vec(arb_net(), 0..8)) {
            let list = IpAllowList::from_nets(nets);
            let text = list.to_string();
            prop_assert_eq!(IpAllowList::parse(&text), Ok(list.clone()));
            for net in list.nets() {
                prop_assert!(list.allows(net.addr()));
                prop_assert_eq!(IpNet::from_str(&net.to_string()), Ok(*net));
            }
        }

        #[test]
        fn client_ip_never_panics(
            (xk, xv) in arb_header(),
            (fk, fv) in arb_header(),
            peer in any::<u32>(),
            header in 0u8..3,
        ) {
            let header = match header {
                0 => ProxyHeader::Auto,
                1 => ProxyHeader::XForwardedFor,
                _ => ProxyHeader::Forwarded,
            };
            let all = TrustedProxies::new(IpAllowList::parse("0.0.0.0/0,::/0").unwrap())
                .with_header(header);
            let _ = client_ip(IpAddr::V4(Ipv4Addr::from(peer)), field(xk, &xv), field(fk, &fv), &all);
        }

        #[test]
        fn client_ip_never_panics_on_forwarded_like_text(
            text in "[0-9a-fA-F:.\\[\\]\"_,;= ]{0,60}|(for|by|proto)=[0-9a-f:.\\[\\]\"_,;= ]{0,40}",
        ) {
            let all = TrustedProxies::new(IpAllowList::parse("0.0.0.0/0,::/0").unwrap());
            let peer = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
            let _ = client_ip(peer, Absent, HeaderField::Single(text.as_bytes()), &all);
            let _ = client_ip(peer, HeaderField::Single(text.as_bytes()), Absent, &all);
        }
    }
}
