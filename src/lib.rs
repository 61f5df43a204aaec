#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod base62;
#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub mod cache;
mod clock;
mod engine;
mod environment;
mod error;
mod events;
#[cfg(any(test, feature = "test-util"))]
mod failing_rng;
mod feed;
#[cfg(all(test, target_os = "linux"))]
mod freed_memory;
mod hash;
pub mod http;
mod id_hash;
pub mod ip;
mod lent;
mod manager;
pub mod origin;
mod policy;
mod record;
pub mod replay;
mod request;
pub mod sealing;
mod secret;
mod signed;
pub mod signing;
mod store;
#[cfg(feature = "serde")]
mod stored;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod testing;
mod token;
mod usage;
mod wait;
pub mod write_behind;

// The public interface, in one place.
pub use clock::{Clock, CoarseClock, MonotonicClock, SystemClock, SystemMonotonicClock};
#[cfg(any(test, feature = "test-util"))]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub use clock::{ManualClock, ManualMonotonicClock};
pub use engine::{DEFAULT_KEY_NAME, Engine, KeyUpdate, NewKey, RollOptions};
pub use environment::{Environment, KeyKind, ParseNameError};
pub use error::{ConfigError, Error, Field, Rejection, StoreError, StoreErrorKind, VerifyError};
pub use events::{EventKind, EventSink, KeyEvent};
pub use feed::{Change, ChangeFeed, ChangeNotifications, ChangePage};
pub use hash::{Pepper, SecretHash};
pub use ip::{IpAllowList, IpListError};
pub use lent::StoredRecord;
pub use manager::MAX_PAGE_SIZE;
pub use manager::{CreatedKey, KeyManager, KeyManagerBuilder, RolledKey};
pub use origin::{DomainAllowList, DomainError, HeaderField, OriginRefusal};
pub use policy::{DEFAULT_GRACE, Policy};
pub use record::{
    Actor, KeyRecord, KeyStatus, MAX_ID_LEN, MAX_NAME_CHARS, MAX_TEXT_CHARS, OwnerId, Scopes,
};
pub use replay::{MemoryReplayCache, ReplayCache, ReplayCacheError};
pub use request::{Decision, RequestContext, VerifiedKey};
pub use sealing::{SealedSecret, SealingError, SealingKey, SealingKeyRing};
pub use secret::{MAX_SECRET_BYTES, MIN_SECRET_BYTES, Token};
pub use signed::SignedRequest;
pub use signing::{
    HexCase, KEY_HEADER, NONCE_HEADER, RequestHead, RequestSigner, SIGNATURE_HEADER,
    SignatureConfig, SignedHeaders, SigningKey, TIMESTAMP_HEADER,
};
#[cfg(feature = "mysql")]
#[cfg_attr(docsrs, doc(cfg(feature = "mysql")))]
pub use store::MySqlKeyStore;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use store::SqliteKeyStore;
pub use store::{
    AsyncKeyAudit, AsyncKeyStore, KeyAudit, KeyFilter, KeyPage, KeyStore, MemoryKeyStore, RollPlan,
    Usage, UseRank, WriteCondition,
};
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use store::{PgChangeListener, PostgresKeyStore};
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
pub use stored::RECORD_FORMAT;
/// The `time` crate, re-exported: [`UtcDateTime`](time::UtcDateTime) and
/// [`Duration`](time::Duration) are part of this crate's API.
pub use time;

/// The `sqlx` crate (0.8) the SQL stores are built on, re-exported: build
/// the pool for `from_pool` with `api_keys::sqlx` and its version always
/// matches. A host with its own `sqlx` dependency must use 0.8 too (cargo
/// unifies the two; another major version is a different crate and its
/// pools are not accepted). TLS is a feature of the host's `sqlx`.
#[cfg(any(feature = "postgres", feature = "sqlite", feature = "mysql"))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "postgres", feature = "sqlite", feature = "mysql")))
)]
pub use sqlx;
pub use token::{
    CHECKSUM_CHARS, KEY_ID_BYTES, KEY_ID_CHARS, KeyFormat, KeyFormatBuilder, KeyId, MAX_PREFIX_LEN,
    NewToken, PresentedKey,
};
pub use write_behind::{
    FlushFailure, Flusher, ShutdownReport, WriteBehindConfig, WriteBehindStats, WriteBehindStore,
};
