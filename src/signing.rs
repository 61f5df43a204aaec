//! signing (to be written).
