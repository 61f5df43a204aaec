//! api-keys: issue and check API keys (being assembled).

pub mod ip;
pub mod origin;
pub mod replay;
pub mod sealing;
pub mod signing;
