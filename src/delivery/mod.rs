//! The delivery engine (being written).
