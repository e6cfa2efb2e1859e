//! Command building (being written).
