//! origin (to be written).
