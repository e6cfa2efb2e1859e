//! Project paths (being written).
