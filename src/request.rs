//! [`RequestContext`]: what the host tells the verifier about a request,
//! and [`VerifiedKey`], what it gets back.

use crate::environment::{Environment, KeyKind};
use crate::lent::Held;
use crate::origin::HeaderField;
use crate::record::{KeyRecord, OwnerId, Scopes};
use crate::token::KeyId;
use core::fmt;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

/// The request facts a verifier checks a key against, filled by the host
/// from its framework. Header values are passed exactly as received
/// (present-but-empty and sent-more-than-once included).
///
/// ```
/// use api_keys::{HeaderField, RequestContext, Scopes};
/// let needed = Scopes::new(["charges:write"])?;      // once, e.g. at start
/// let ctx = RequestContext::new()
///     .origin(HeaderField::Single(b"https://shop.example.com"))
///     .peer_ip("203.0.113.7".parse()?)
///     .require_scopes(&needed);
/// # let _ = ctx;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct RequestContext<'a> {
    /// The `Origin` header.
    pub origin: HeaderField<'a>,
    /// The `Referer` header.
    pub referer: HeaderField<'a>,
    /// The peer address (see [`client_ip`](crate::ip::client_ip) behind
    /// trusted proxies). `None` fails any key with an IP allow-list.
    pub peer_ip: Option<IpAddr>,
    /// The environment the endpoint requires, if any.
    pub environment: Option<Environment>,
    /// The kind the endpoint requires, if any (e.g. secret keys only).
    pub kind: Option<KeyKind>,
    /// Scopes the endpoint requires; the key must grant all of them.
    /// Default: none.
    pub scopes: &'a Scopes,
}

impl Default for RequestContext<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> RequestContext<'a> {
    /// A context with no headers, no peer address and no requirements.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            origin: HeaderField::Absent,
            referer: HeaderField::Absent,
            peer_ip: None,
            environment: None,
            kind: None,
            scopes: Scopes::none(),
        }
    }

    /// Sets the `Origin` header.
    #[must_use]
    pub const fn origin(mut self, origin: HeaderField<'a>) -> Self {
        self.origin = origin;
        self
    }

    /// Sets the `Referer` header.
    #[must_use]
    pub const fn referer(mut self, referer: HeaderField<'a>) -> Self {
        self.referer = referer;
        self
    }

    /// Sets the peer address.
    #[must_use]
    pub const fn peer_ip(mut self, ip: IpAddr) -> Self {
        self.peer_ip = Some(ip);
        self
    }

    /// Requires an environment.
    #[must_use]
    pub const fn require_environment(mut self, environment: Environment) -> Self {
        self.environment = Some(environment);
        self
    }

    /// Requires a kind.
    #[must_use]
    pub const fn require_kind(mut self, kind: KeyKind) -> Self {
        self.kind = Some(kind);
        self
    }

    /// Requires every scope of `scopes` (the same spelling as
    /// [`http::Requirements::require_scopes`](crate::http::Requirements::require_scopes)).
    #[must_use]
    pub const fn require_scopes(mut self, scopes: &'a Scopes) -> Self {
        self.scopes = scopes;
        self
    }
}

/// The pure decision on an accepted key: what the driver should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decision {
    /// The key was rolled and is inside its grace window.
    pub in_grace: bool,
    /// `last_used_at` is due to be written.
    pub touch: bool,
}

/// A key that passed every check. Cheap to clone (shares the record).
#[derive(Clone)]
pub struct VerifiedKey {
    record: Held,
    /// The full record, materialised on the first call to
    /// [`record`](Self::record) when the store lent a compact form.
    full: OnceLock<Arc<KeyRecord>>,
    decision: Decision,
    signed: bool,
}

impl fmt::Debug for VerifiedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedKey")
            .field("id", &self.id())
            .field("owner", self.owner())
            .field("kind", &self.kind())
            .field("environment", &self.environment())
            .field("decision", &self.decision)
            .field("signed", &self.signed)
            .finish_non_exhaustive()
    }
}

impl VerifiedKey {
    pub(crate) fn new(record: Held, decision: Decision, signed: bool) -> Self {
        Self {
            record,
            full: OnceLock::new(),
            decision,
            signed,
        }
    }

    /// Whether the request was authenticated by a signature over its body
    /// ([`KeyManager::verify_signed`](crate::KeyManager::verify_signed)),
    /// as opposed to a bearer token: only then is the body known to come
    /// from the key holder.
    #[must_use]
    pub fn is_signed(&self) -> bool {
        self.signed
    }

    /// The key id.
    #[must_use]
    pub fn id(&self) -> KeyId {
        self.record.view().id()
    }

    /// The owner the request acts for.
    #[must_use]
    pub fn owner(&self) -> &OwnerId {
        self.record.view().owner()
    }

    /// Secret or publishable.
    #[must_use]
    pub fn kind(&self) -> KeyKind {
        self.record.view().kind()
    }

    /// The mode the request runs in: the key decides.
    #[must_use]
    pub fn environment(&self) -> Environment {
        self.record.view().environment()
    }

    /// The key's own scopes (see [`Scopes`] for what empty means).
    #[must_use]
    pub fn scopes(&self) -> &Scopes {
        self.record.view().scopes()
    }

    /// Whether this is a rolled key inside its grace window: the client
    /// should switch to [`successor`](Self::successor).
    #[must_use]
    pub fn in_grace(&self) -> bool {
        self.decision.in_grace
    }

    /// The key that replaced this one, if it was rolled.
    #[must_use]
    pub fn successor(&self) -> Option<KeyId> {
        self.record.view().successor()
    }

    /// Whether `last_used_at` was due to be written for this request.
    #[must_use]
    pub fn touched(&self) -> bool {
        self.decision.touch
    }

    /// The whole record as read for this request. With a store that lends
    /// a compact form ([`MemoryKeyStore`](crate::MemoryKeyStore)) the first
    /// call builds it (and allocates); the accessors above never do.
    #[must_use]
    pub fn record(&self) -> &KeyRecord {
        match &self.record {
            Held::Full(r) => r,
            Held::Compact(c) => self.full.get_or_init(|| Arc::new(c.to_record())),
        }
    }
}
