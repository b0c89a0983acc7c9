//! Domains (being written).
