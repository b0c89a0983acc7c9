//! The Xen public guest ABI (being written).
