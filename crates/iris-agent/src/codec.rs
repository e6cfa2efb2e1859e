//! The stream-json codec (being written).
