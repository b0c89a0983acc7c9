//! Error, warning and location types shared by the whole crate.

use std::fmt;

/// A 1-based line/column position inside a configuration file.
///
/// Columns count Unicode scalar values (a tab is one column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    pub line: u32,
    pub col: u32,
}

impl Location {
    pub const fn new(line: u32, col: u32) -> Self {
        Location { line, col }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A malformed file: the text is not valid xl configuration syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// File name as given by the caller (`"<string>"` for in-memory input).
    pub file: String,
    pub location: Location,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: error: {}",
            self.file, self.location, self.message
        )
    }
}

impl std::error::Error for SyntaxError {}

/// What is semantically wrong with a syntactically valid configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SemanticErrorKind {
    /// A mandatory key is absent (`name`).
    MissingKey {
        key: &'static str,
    },
    /// The value has the wrong shape (e.g. a list where a string is needed).
    WrongType {
        key: String,
        expected: &'static str,
        found: &'static str,
    },
    /// A numeric value that is not a number, or out of range.
    InvalidNumber {
        key: String,
        value: String,
    },
    /// A key whose value is not one of the accepted words.
    InvalidChoice {
        key: String,
        value: String,
        allowed: &'static [&'static str],
    },
    InvalidName {
        value: String,
        reason: &'static str,
    },
    InvalidUuid {
        value: String,
    },
    ZeroMemory {
        key: &'static str,
    },
    MaxmemBelowMemory {
        memory: u64,
        maxmem: u64,
    },
    ZeroVcpus {
        key: &'static str,
    },
    VcpusAboveMaxvcpus {
        vcpus: u64,
        maxvcpus: u64,
    },
    InvalidCpuList {
        value: String,
        reason: String,
    },
    /// PV guests need either `kernel` or `bootloader`.
    PvNeedsKernel,
    InvalidDisk {
        index: usize,
        spec: String,
        reason: String,
    },
    InvalidVif {
        index: usize,
        spec: String,
        reason: String,
    },
    InvalidMac {
        index: usize,
        value: String,
        reason: &'static str,
    },
    DuplicateVdev {
        vdev: String,
    },
}

impl fmt::Display for SemanticErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use SemanticErrorKind::*;
        match self {
            MissingKey { key } => write!(f, "mandatory key '{key}' is missing"),
            WrongType {
                key,
                expected,
                found,
            } => write!(f, "'{key}' must be {expected}, found {found}"),
            InvalidNumber { key, value } => {
                write!(f, "'{key}' = {value:?} is not a valid non-negative number")
            }
            InvalidChoice {
                key,
                value,
                allowed,
            } => write!(
                f,
                "'{key}' = {value:?} is not valid; expected one of: {}",
                allowed.join(", ")
            ),
            InvalidName { value, reason } => write!(f, "invalid domain name {value:?}: {reason}"),
            InvalidUuid { value } => write!(
                f,
                "invalid uuid {value:?}: expected XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX (hex)"
            ),
            ZeroMemory { key } => write!(f, "'{key}' must be greater than 0"),
            MaxmemBelowMemory { memory, maxmem } => write!(
                f,
                "'maxmem' ({maxmem} MB) must be greater than or equal to 'memory' ({memory} MB)"
            ),
            ZeroVcpus { key } => write!(f, "'{key}' must be at least 1"),
            VcpusAboveMaxvcpus { vcpus, maxvcpus } => write!(
                f,
                "'vcpus' ({vcpus}) must not exceed 'maxvcpus' ({maxvcpus})"
            ),
            InvalidCpuList { value, reason } => write!(f, "invalid CPU list {value:?}: {reason}"),
            PvNeedsKernel => write!(
                f,
                "a PV guest needs either 'kernel' or 'bootloader' to be set"
            ),
            InvalidDisk {
                index,
                spec,
                reason,
            } => write!(f, "disk[{index}] {spec:?}: {reason}"),
            InvalidVif {
                index,
                spec,
                reason,
            } => write!(f, "vif[{index}] {spec:?}: {reason}"),
            InvalidMac {
                index,
                value,
                reason,
            } => write!(f, "vif[{index}]: invalid MAC address {value:?}: {reason}"),
            DuplicateVdev { vdev } => write!(f, "virtual disk '{vdev}' is defined more than once"),
        }
    }
}

/// A semantic error with the location of the offending value (when known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SemanticError {
    pub location: Option<Location>,
    pub kind: SemanticErrorKind,
}

impl SemanticError {
    /// Render as `file:line:col: error: message` (or `file: error: message`).
    pub fn render(&self, file: &str) -> String {
        match self.location {
            Some(loc) => format!("{file}:{loc}: error: {}", self.kind),
            None => format!("{file}: error: {}", self.kind),
        }
    }
}

impl fmt::Display for SemanticError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some(loc) => write!(f, "{loc}: {}", self.kind),
            None => write!(f, "{}", self.kind),
        }
    }
}

/// Non-fatal findings: the configuration is usable but something was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WarningKind {
    /// A key xl does not know either (probably a typo).
    UnknownKey {
        key: String,
        suggestion: Option<&'static str>,
    },
    /// A key that xl understands but keel does not implement; it is ignored.
    IgnoredKey { key: String },
    /// The same key was set more than once; the last value wins.
    DuplicateKey { key: String, first: Location },
    /// `cmdline` wins over `root`/`extra`, as in xl.
    CmdlineOverrides { ignored: &'static str },
    /// A deprecated spelling that is still accepted.
    Deprecated { what: String, instead: String },
    /// An option inside a disk spec keel accepts but ignores.
    IgnoredDiskOption { index: usize, option: String },
    /// A vif option that is not known.
    UnknownVifOption { index: usize, option: String },
}

impl fmt::Display for WarningKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use WarningKind::*;
        match self {
            UnknownKey {
                key,
                suggestion: Some(s),
            } => write!(f, "unknown key '{key}' ignored (did you mean '{s}'?)"),
            UnknownKey {
                key,
                suggestion: None,
            } => write!(f, "unknown key '{key}' ignored"),
            IgnoredKey { key } => write!(
                f,
                "key '{key}' is valid for xl but not supported by keel; ignored"
            ),
            DuplicateKey { key, first } => write!(
                f,
                "key '{key}' set again (first set at {first}); the last value wins"
            ),
            CmdlineOverrides { ignored } => write!(
                f,
                "'{ignored}' ignored because 'cmdline' is set (as xl does)"
            ),
            Deprecated { what, instead } => write!(f, "{what} is deprecated; use {instead}"),
            IgnoredDiskOption { index, option } => {
                write!(
                    f,
                    "disk[{index}]: option '{option}' is not supported by keel; ignored"
                )
            }
            UnknownVifOption { index, option } => {
                write!(f, "vif[{index}]: unknown option '{option}' ignored")
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub location: Option<Location>,
    pub kind: WarningKind,
}

impl Warning {
    /// Render as `file:line:col: warning: message`.
    pub fn render(&self, file: &str) -> String {
        match self.location {
            Some(loc) => format!("{file}:{loc}: warning: {}", self.kind),
            None => format!("{file}: warning: {}", self.kind),
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some(loc) => write!(f, "{loc}: {}", self.kind),
            None => write!(f, "{}", self.kind),
        }
    }
}

/// Everything that can make [`crate::parse_file`] / [`crate::parse_str`] fail.
#[derive(Debug)]
pub enum Error {
    /// The file could not be read.
    Io {
        file: String,
        source: std::io::Error,
    },
    /// The file is not valid xl syntax (first error only: parsing stops).
    Syntax(SyntaxError),
    /// The file parsed but its content is invalid; all problems found are listed.
    Invalid {
        file: String,
        errors: Vec<SemanticError>,
        /// Warnings collected before validation failed.
        warnings: Vec<Warning>,
    },
}

impl Error {
    /// One line per problem, each `file:line:col: error: message`.
    pub fn render_lines(&self) -> Vec<String> {
        match self {
            Error::Io { file, source } => {
                vec![format!("{file}: error: cannot read file: {source}")]
            }
            Error::Syntax(e) => vec![e.to_string()],
            Error::Invalid { file, errors, .. } => errors.iter().map(|e| e.render(file)).collect(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.render_lines().join("\n"))
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Syntax(e) => Some(e),
            Error::Invalid { .. } => None,
        }
    }
}
