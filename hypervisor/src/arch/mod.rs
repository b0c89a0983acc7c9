//! Architecture support. keel runs on x86-64 only.
pub mod x86;
