//! Loading guest images.
pub mod elf;
pub mod pvh;
