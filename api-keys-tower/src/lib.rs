#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "axum")]
mod axum;
mod layer;

// The public interface, in one place.
#[cfg(feature = "axum")]
pub use crate::axum::{ApiKey, ManagementError};
pub use layer::{ApiKeyLayer, ApiKeyService, PeerAddr, RefusedRequest, ResponseFuture};
