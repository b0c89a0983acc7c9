//! `keel-xlcfg`: parser for xl-style domain configuration files.
//!
//! keel reads the domain configuration format of Xen's `xl` toolstack
//! (xl.cfg(5), xl-disk-configuration(5), xl-network-configuration(5)) so
//! that existing guest configs work unchanged. This is keel's own
//! implementation written from those manual pages.
//!
//! Parsing happens in two stages:
//!
//! 1. [`parse_document`]: syntax only. A malformed file yields a
//!    [`SyntaxError`] with file, line and column.
//! 2. [`interpret`]: typed keys and semantic validation. Problems are
//!    [`SemanticError`]s (all of them are reported, each with a location
//!    where one exists); unknown or unsupported keys are [`Warning`]s.
//!
//! [`parse_str`] and [`parse_file`] do both.
//!
//! ```
//! let parsed = keel_xlcfg::parse_str(
//!     "name = 'web'\ntype = 'pvh'\nkernel = '/boot/vmlinuz'\nmemory = 512\n\
//!      disk = [ 'phy:/dev/vg/web,xvda,w' ]\nvif = [ 'bridge=xenbr0' ]\n",
//!     "web.cfg",
//! )
//! .unwrap();
//! assert_eq!(parsed.config.name, "web");
//! assert_eq!(parsed.config.disks[0].vdev, "xvda");
//! ```

#![forbid(unsafe_code)]

pub mod config;
pub mod cpus;
pub mod disk;
pub mod error;
pub mod keys;
pub mod syntax;
pub mod vif;

use std::path::Path;

pub use config::{interpret, Action, DomainConfig, GuestType, Parsed};
pub use cpus::{CpuAffinity, CpuList, CpuTarget, CpuTerm};
pub use disk::{parse_disk_spec, DiskAccess, DiskFormat, DiskSpec};
pub use error::{
    Error, Location, SemanticError, SemanticErrorKind, SyntaxError, Warning, WarningKind,
};
pub use syntax::{parse_document, Document, Entry, Value, ValueKind};
pub use vif::{parse_vif_spec, MacAddr, VifRate, VifSpec, VifType};

/// Largest configuration file accepted (xl configs are a few KiB).
pub const MAX_FILE_SIZE: u64 = 1 << 20;

/// Parse and validate configuration text. `file` names it in messages.
pub fn parse_str(src: &str, file: &str) -> Result<Parsed, Error> {
    let doc = parse_document(src, file).map_err(Error::Syntax)?;
    interpret(&doc).map_err(|(errors, warnings)| Error::Invalid {
        file: file.to_string(),
        errors,
        warnings,
    })
}

/// Read, parse and validate a configuration file.
pub fn parse_file(path: impl AsRef<Path>) -> Result<Parsed, Error> {
    let path = path.as_ref();
    let file = path.display().to_string();
    let io = |source| Error::Io {
        file: file.clone(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.is_dir() {
        return Err(io(std::io::Error::other("is a directory")));
    }
    if meta.len() > MAX_FILE_SIZE {
        return Err(io(std::io::Error::other(format!(
            "file is larger than {MAX_FILE_SIZE} bytes; not a domain configuration"
        ))));
    }
    let bytes = std::fs::read(path).map_err(io)?;
    let src = match std::str::from_utf8(&bytes) {
        Ok(s) => s,
        Err(e) => {
            let valid = &bytes[..e.valid_up_to()];
            let valid = std::str::from_utf8(valid).unwrap_or_default();
            let line = valid.matches('\n').count() as u32 + 1;
            let col = valid.rsplit('\n').next().unwrap_or("").chars().count() as u32 + 1;
            return Err(Error::Syntax(SyntaxError {
                file,
                location: Location::new(line, col),
                message: "file is not valid UTF-8".into(),
            }));
        }
    };
    parse_str(src, &file)
}
