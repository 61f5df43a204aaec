//! Temporary stand-in; replaced by the real module.
#![allow(missing_docs, clippy::missing_errors_doc)]
use std::net::IpAddr;
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpAllowList(Vec<IpAddr>);
impl IpAllowList {
    pub fn parse(list: &str) -> Result<Self, IpListError> {
        if list.trim().is_empty() {
            return Ok(Self::default());
        }
        list.split(',')
            .map(|s| s.trim().parse().map_err(|_| IpListError::Bad))
            .collect::<Result<_, _>>()
            .map(Self)
    }
    pub fn allows(&self, peer: IpAddr) -> bool {
        self.0.is_empty() || self.0.contains(&peer.to_canonical())
    }
    pub fn is_any(&self) -> bool {
        self.0.is_empty()
    }
}
impl core::fmt::Display for IpAllowList {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, ip) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{ip}")?;
        }
        Ok(())
    }
}
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IpListError {
    #[error("bad ip")]
    Bad,
}
