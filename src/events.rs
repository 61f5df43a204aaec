//! What happened to keys, for audit logs and metrics. Events carry ids,
//! owners, actors and instants — never a secret, a token or a header value.

use crate::record::{Actor, OwnerId};
use crate::token::KeyId;
use time::UtcDateTime;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// A key was created (active or inactive).
    Created,
    /// A key was activated.
    Activated,
    /// A key was deactivated.
    Deactivated,
    /// A key was revoked.
    Revoked,
    /// A key was rolled; `related` is the successor.
    Rolled,
    /// A key's name, note, scopes, allow-lists or expiry changed.
    Updated,
    /// A request presented a key past its expiry (refused).
    ExpiredOnUse,
    /// A request presented a rolled key inside its grace window (accepted);
    /// `related` is the successor the client should switch to.
    UsedDuringGrace,
}

impl EventKind {
    /// A stable `snake_case` name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::Activated => "activated",
            EventKind::Deactivated => "deactivated",
            EventKind::Revoked => "revoked",
            EventKind::Rolled => "rolled",
            EventKind::Updated => "updated",
            EventKind::ExpiredOnUse => "expired_on_use",
            EventKind::UsedDuringGrace => "used_during_grace",
        }
    }
}

impl core::fmt::Display for EventKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event. Borrowed, so emitting allocates nothing.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct KeyEvent<'a> {
    /// What happened.
    pub kind: EventKind,
    /// The key it happened to.
    pub key_id: KeyId,
    /// The key's owner.
    pub owner: &'a OwnerId,
    /// Who did it (`None` for events caused by a request, not a person).
    pub actor: Option<&'a Actor>,
    /// When (the manager's clock reading for the operation).
    pub at: UtcDateTime,
    /// Another key involved: the successor of a roll.
    pub related: Option<KeyId>,
}

impl core::fmt::Display for KeyEvent<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} key={} owner={}", self.kind, self.key_id, self.owner)?;
        if let Some(a) = self.actor {
            write!(f, " actor={a}")?;
        }
        if let Some(r) = self.related {
            write!(f, " related={r}")?;
        }
        write!(f, " at={}", self.at)
    }
}

/// Receives events. Called synchronously after the change committed (or
/// after the verification decided); keep it fast and non-blocking (push to
/// a channel for slow sinks).
pub trait EventSink: Send + Sync {
    /// Called once per event.
    fn on_event(&self, event: &KeyEvent<'_>);
}

impl<F> EventSink for F
where
    F: Fn(&KeyEvent<'_>) + Send + Sync,
{
    fn on_event(&self, event: &KeyEvent<'_>) {
        self(event);
    }
}
