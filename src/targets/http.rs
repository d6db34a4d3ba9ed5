//! The `http` target (being written).
