//! PVH boot (being written).
