//! Temporary stand-in; replaced by the real module.
#![allow(missing_docs, clippy::missing_errors_doc)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderField<'a> {
    Absent,
    Single(&'a [u8]),
    Repeated,
}
impl<'a> HeaderField<'a> {
    pub fn from_values<I: IntoIterator<Item = &'a [u8]>>(values: I) -> Self {
        let mut it = values.into_iter();
        match (it.next(), it.next()) {
            (None, _) => Self::Absent,
            (Some(v), None) => Self::Single(v),
            _ => Self::Repeated,
        }
    }
    pub fn is_present(&self) -> bool {
        !matches!(self, Self::Absent)
    }
}
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DomainPattern(String);
impl core::fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainAllowList(Vec<DomainPattern>);
impl DomainAllowList {
    pub fn new<I, S>(entries: I) -> Result<Self, DomainError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Ok(Self(
            entries
                .into_iter()
                .map(|s| DomainPattern(s.as_ref().to_owned()))
                .collect(),
        ))
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn entries(&self) -> &[DomainPattern] {
        &self.0
    }
    pub fn check(
        &self,
        origin: HeaderField<'_>,
        _referer: HeaderField<'_>,
        _allow_http: bool,
    ) -> Result<(), OriginRefusal> {
        if self.0.is_empty() {
            return Ok(());
        }
        match origin {
            HeaderField::Single(o)
                if self
                    .0
                    .iter()
                    .any(|p| o == format!("https://{}", p.0).as_bytes()) =>
            {
                Ok(())
            }
            _ => Err(OriginRefusal::NotListed),
        }
    }
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OriginRefusal {
    NotListed,
}
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DomainError {
    #[error("bad domain")]
    Bad,
}
