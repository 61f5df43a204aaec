//! Temporary stand-in; replaced by the real module.
