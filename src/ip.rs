//! ip (to be written).
