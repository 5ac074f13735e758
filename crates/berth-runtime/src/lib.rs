//! Container runtime (being written).
