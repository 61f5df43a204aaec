#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "axum")]
mod axum;
mod layer;

// The public interface, in one place.

#[cfg(feature = "axum")]
pub use crate::axum::{ApiKey, ManagementError};
/// The `api-keys` crate this layer is built on, re-exported: `KeyManager`,
/// stores, `Scopes`, `NewKey`, … without a second dependency line (and
/// always the version the layer was built with).
pub use api_keys;
pub use layer::{ApiKeyLayer, ApiKeyService, PeerAddr, RefusedRequest, ResponseFuture, exchange};
