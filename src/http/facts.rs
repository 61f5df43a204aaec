//! The request facts a [`RequestContext`] needs, owned.

use super::headers::{FORWARDED, Headers, ORIGIN, REFERER, X_FORWARDED_FOR};
use super::refusal::Refusal;
use super::verify::Requirements;
use crate::ip::{TrustedProxies, client_ip};
use crate::origin::{HeaderField, MAX_HEADER_LEN};
use crate::request::RequestContext;
use core::fmt;
use std::net::IpAddr;

/// An owned [`HeaderField`].
#[derive(Clone, PartialEq, Eq)]
enum OwnedField {
    Absent,
    Single(Box<[u8]>),
    Repeated,
}

impl OwnedField {
    /// Copies a field. A value longer than the origin check accepts
    /// ([`MAX_HEADER_LEN`]) is cut one byte past it: refused the same way,
    /// without copying an arbitrarily long header.
    fn copy(field: HeaderField<'_>) -> Self {
        match field {
            HeaderField::Absent => OwnedField::Absent,
            HeaderField::Repeated => OwnedField::Repeated,
            HeaderField::Single(value) => {
                let kept = value.get(..=MAX_HEADER_LEN).unwrap_or(value);
                OwnedField::Single(kept.into())
            }
        }
    }

    fn get(&self) -> HeaderField<'_> {
        match self {
            OwnedField::Absent => HeaderField::Absent,
            OwnedField::Single(value) => HeaderField::Single(value),
            OwnedField::Repeated => HeaderField::Repeated,
        }
    }
}

/// What the verifier checks about a request besides its credential:
/// `Origin` and `Referer` as received, and the client address (the peer,
/// or behind [trusted proxies](TrustedProxies) the forwarded client, as
/// [`client_ip`] decides). Owned: it can move to another task or thread;
/// [`context`](Self::context) lends the borrowed [`RequestContext`] the
/// verifier takes, without copying.
///
/// `Debug` prints lengths, never the header values.
///
/// ```
/// use api_keys::http::{RequestFacts, Requirements};
/// use api_keys::ip::TrustedProxies;
/// use api_keys::{HeaderField, IpAllowList, Scopes};
///
/// let headers = [("Origin", "https://shop.example"), ("X-Forwarded-For", "198.51.100.4")];
/// let proxy = "10.0.0.2".parse()?;
/// let proxies = TrustedProxies::new(IpAllowList::parse("10.0.0.0/8")?);
/// let facts = RequestFacts::from_headers(&headers[..], Some(proxy), &proxies)?;
/// assert_eq!(facts.client_ip(), Some("198.51.100.4".parse()?));
///
/// let facts = std::thread::spawn(move || facts).join().unwrap(); // owned
/// let route = Requirements::new().require_scopes(Scopes::new(["charges:read"])?);
/// let context = facts.context(&route);
/// assert_eq!(context.origin, HeaderField::Single(b"https://shop.example"));
/// assert!(context.scopes.contains("charges:read"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RequestFacts {
    origin: OwnedField,
    referer: OwnedField,
    client_ip: Option<IpAddr>,
}

impl RequestFacts {
    /// Reads `Origin`, `Referer` and the client address. `peer` is the TCP
    /// peer's address (`None` when the framework does not know it: then
    /// every key with an IP allow-list is refused); forwarding headers are
    /// read only when `peer` is one of `proxies`.
    ///
    /// # Errors
    ///
    /// [`Refusal::Forwarding`] when the peer is a trusted proxy and its
    /// forwarding header is unusable (fail closed: the client is not
    /// guessed).
    pub fn from_headers<H: Headers + ?Sized>(
        headers: &H,
        peer: Option<IpAddr>,
        proxies: &TrustedProxies,
    ) -> Result<Self, Refusal> {
        let client_ip = match peer {
            // The forwarding headers are looked up only when they count
            // (`client_ip` returns an untrusted peer without reading them).
            Some(peer) if proxies.is_trusted(peer.to_canonical()) => Some(
                client_ip(
                    peer,
                    headers.field(X_FORWARDED_FOR),
                    headers.field(FORWARDED),
                    proxies,
                )
                .map_err(Refusal::Forwarding)?,
            ),
            Some(peer) => Some(peer.to_canonical()),
            None => None,
        };
        Ok(Self {
            origin: OwnedField::copy(headers.field(ORIGIN)),
            referer: OwnedField::copy(headers.field(REFERER)),
            client_ip,
        })
    }

    /// The client address, canonical (`::ffff:1.2.3.4` is `1.2.3.4`).
    #[must_use]
    pub fn client_ip(&self) -> Option<IpAddr> {
        self.client_ip
    }

    /// The `Origin` header as received.
    #[must_use]
    pub fn origin(&self) -> HeaderField<'_> {
        self.origin.get()
    }

    /// The `Referer` header as received.
    #[must_use]
    pub fn referer(&self) -> HeaderField<'_> {
        self.referer.get()
    }

    /// The context the verifier checks: these facts and the route's
    /// requirements. Borrows; copies nothing.
    #[must_use]
    pub fn context<'a>(&'a self, requirements: &'a Requirements) -> RequestContext<'a> {
        let mut context = RequestContext::new()
            .origin(self.origin.get())
            .referer(self.referer.get())
            .require_scopes(&requirements.scopes);
        context.peer_ip = self.client_ip;
        context.environment = requirements.environment;
        context.kind = requirements.kind;
        context
    }
}

impl fmt::Debug for RequestFacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestFacts")
            .field("origin", &self.origin.get())
            .field("referer", &self.referer.get())
            .field("client_ip", &self.client_ip)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;
    use crate::environment::{Environment, KeyKind};
    use crate::{IpAllowList, Scopes};

    fn proxies() -> TrustedProxies {
        TrustedProxies::new(IpAllowList::parse("10.0.0.0/8").unwrap())
    }

    #[test]
    fn copies_origin_referer_and_the_client() {
        let headers: &[(&str, &str)] = &[
            ("Origin", "https://a.example"),
            ("Referer", "https://b.example/x"),
            ("Referer", "https://c.example/y"),
            ("X-Forwarded-For", "203.0.113.9"),
        ];
        let peer: IpAddr = "10.1.2.3".parse().unwrap();
        let facts = RequestFacts::from_headers(headers, Some(peer), &proxies()).unwrap();
        assert_eq!(facts.origin(), HeaderField::Single(b"https://a.example"));
        assert_eq!(facts.referer(), HeaderField::Repeated);
        assert_eq!(facts.client_ip(), Some("203.0.113.9".parse().unwrap()));
        // Not a proxy: the forwarding header is ignored.
        let direct: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let facts = RequestFacts::from_headers(headers, Some(direct), &proxies()).unwrap();
        assert_eq!(facts.client_ip(), Some("192.0.2.1".parse().unwrap()));
        // No peer known.
        let facts = RequestFacts::from_headers(headers, None, &proxies()).unwrap();
        assert_eq!(facts.client_ip(), None);
        assert_eq!(facts.origin(), HeaderField::Single(b"https://a.example"));
        let empty: &[(&str, &str)] = &[];
        let facts = RequestFacts::from_headers(empty, None, &proxies()).unwrap();
        assert_eq!(facts.origin(), HeaderField::Absent);
    }

    /// Headers that record the names asked for.
    struct Recording<'a> {
        pairs: &'a [(&'a str, &'a str)],
        asked: std::cell::RefCell<Vec<String>>,
    }

    impl Headers for Recording<'_> {
        fn field(&self, name: &str) -> HeaderField<'_> {
            self.asked.borrow_mut().push(name.to_owned());
            self.pairs.field(name)
        }
    }

    /// From a peer that is not a trusted proxy the forwarding headers are
    /// not even read (whatever they hold cannot count); from a trusted one
    /// they are.
    #[test]
    fn forwarding_headers_are_read_only_from_a_trusted_proxy() {
        let pairs: &[(&str, &str)] = &[("X-Forwarded-For", "203.0.113.9")];
        let forwarding = |asked: &[String]| {
            asked
                .iter()
                .filter(|n| *n == X_FORWARDED_FOR || *n == FORWARDED)
                .count()
        };
        let direct = Recording {
            pairs,
            asked: std::cell::RefCell::default(),
        };
        let peer: IpAddr = "192.0.2.1".parse().unwrap();
        let facts = RequestFacts::from_headers(&direct, Some(peer), &proxies()).unwrap();
        assert_eq!(facts.client_ip(), Some(peer));
        assert_eq!(forwarding(&direct.asked.borrow()), 0);

        let proxied = Recording {
            pairs,
            asked: std::cell::RefCell::default(),
        };
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let facts = RequestFacts::from_headers(&proxied, Some(proxy), &proxies()).unwrap();
        assert_eq!(facts.client_ip(), Some("203.0.113.9".parse().unwrap()));
        assert!(forwarding(&proxied.asked.borrow()) > 0);
    }

    #[test]
    fn an_unusable_forwarding_header_is_refused() {
        let headers: &[(&str, &str)] = &[("X-Forwarded-For", "203.0.113.9,,")];
        let peer: IpAddr = "10.1.2.3".parse().unwrap();
        let refusal = RequestFacts::from_headers(headers, Some(peer), &proxies()).unwrap_err();
        assert_eq!(refusal.reason(), "bad_forwarding_header");
        assert_eq!(refusal.status(), 400);
    }

    #[test]
    fn context_carries_facts_and_requirements() {
        let headers: &[(&str, &str)] = &[("Origin", "https://a.example")];
        let peer: IpAddr = "192.0.2.1".parse().unwrap();
        let facts = RequestFacts::from_headers(headers, Some(peer), &proxies()).unwrap();
        let requirements = Requirements::new()
            .require_scopes(Scopes::new(["a", "b"]).unwrap())
            .require_environment(Environment::Live)
            .require_kind(KeyKind::Secret);
        let context = facts.context(&requirements);
        assert_eq!(context.origin, HeaderField::Single(b"https://a.example"));
        assert_eq!(context.referer, HeaderField::Absent);
        assert_eq!(context.peer_ip, Some(peer));
        assert_eq!(context.scopes.iter().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(context.environment, Some(Environment::Live));
        assert_eq!(context.kind, Some(KeyKind::Secret));
    }

    #[test]
    fn an_over_long_origin_is_cut_past_the_limit_and_still_refused() {
        let long = format!("https://{}.example", "a".repeat(2 * MAX_HEADER_LEN));
        let headers: &[(&str, &str)] = &[("Origin", &long)];
        let facts = RequestFacts::from_headers(headers, None, &proxies()).unwrap();
        let HeaderField::Single(kept) = facts.origin() else {
            panic!("not single")
        };
        assert_eq!(kept.len(), MAX_HEADER_LEN + 1);
        let list = crate::DomainAllowList::new(["a.example"]).unwrap();
        assert_eq!(
            list.check(facts.origin(), HeaderField::Absent, false),
            list.check(
                HeaderField::Single(long.as_bytes()),
                HeaderField::Absent,
                false
            )
        );
        assert!(
            list.check(facts.origin(), HeaderField::Absent, false)
                .is_err()
        );
    }

    #[test]
    fn debug_never_shows_values() {
        let headers: &[(&str, &str)] = &[("Origin", "https://secret.example")];
        let facts = RequestFacts::from_headers(headers, None, &proxies()).unwrap();
        let text = format!("{facts:?}");
        assert!(!text.contains("secret"), "{text}");
    }
}
