//! sealing (to be written).
