//! Scheduling (being written).
