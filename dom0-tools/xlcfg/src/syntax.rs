//! Lexer and parser for the xl configuration file syntax.
//!
//! Grammar (keel's reading of xl.cfg(5)):
//!
//! ```text
//! file      := { statement? (NEWLINE | ';') }
//! statement := KEY '=' value
//! value     := STRING | NUMBER | '[' [ value { ',' value } [','] ] ']'
//! KEY       := [A-Za-z_][A-Za-z0-9_.]*
//! STRING    := "..." | '...'          (backslash escapes, no raw newlines)
//! NUMBER    := 0x[0-9a-fA-F]+ | 0[0-7]* | [1-9][0-9]*
//! ```
//!
//! `#` starts a comment up to the end of the line; a backslash immediately
//! before a newline joins the two lines; newlines are free inside lists.

use crate::error::{Location, SyntaxError};

/// Maximum nesting depth of lists; deeper input is rejected (no stack blowup).
pub const MAX_LIST_DEPTH: usize = 32;

/// A parsed value with the location where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    pub location: Location,
    pub kind: ValueKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueKind {
    /// A quoted string, escapes already resolved.
    Str(String),
    /// A number: the source text and its value.
    Num {
        raw: String,
        value: u64,
    },
    List(Vec<Value>),
}

impl Value {
    /// Human name of the value's shape, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            ValueKind::Str(_) => "a string",
            ValueKind::Num { .. } => "a number",
            ValueKind::List(_) => "a list",
        }
    }
}

/// One `key = value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub key_location: Location,
    pub value: Value,
}

/// A whole file, entries in source order (duplicates kept).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Document {
    pub entries: Vec<Entry>,
}

impl Document {
    /// The last entry for `key` (xl semantics: later settings win).
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().rev().find(|e| e.key == key)
    }
}

/// Parse `src` into a [`Document`]. `file` is only used in error messages.
pub fn parse_document(src: &str, file: &str) -> Result<Document, SyntaxError> {
    let mut p = Parser {
        chars: src.chars().collect(),
        pos: 0,
        line: 1,
        col: 1,
        file,
    };
    // Skip a UTF-8 byte order mark.
    if p.peek() == Some('\u{feff}') {
        p.pos += 1;
    }
    p.document()
}

struct Parser<'a> {
    chars: Vec<char>,
    pos: usize,
    line: u32,
    col: u32,
    file: &'a str,
}

fn describe(c: Option<char>) -> String {
    match c {
        None => "end of file".to_string(),
        Some('\n') => "end of line".to_string(),
        Some(c) if c.is_control() => format!("control character {:?}", c),
        Some(c) => format!("'{c}'"),
    }
}

impl<'a> Parser<'a> {
    fn loc(&self) -> Location {
        Location::new(self.line, self.col)
    }

    fn err<T>(&self, loc: Location, message: impl Into<String>) -> Result<T, SyntaxError> {
        Err(SyntaxError {
            file: self.file.to_string(),
            location: loc,
            message: message.into(),
        })
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, off: usize) -> Option<char> {
        self.chars.get(self.pos + off).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.get(self.pos).copied()?;
        self.pos += 1;
        if c == '\n' {
            self.line = self.line.saturating_add(1);
            self.col = 1;
        } else {
            self.col = self.col.saturating_add(1);
        }
        Some(c)
    }

    /// If at `\` followed by optional spaces and a newline, consume it all.
    fn try_continuation(&mut self) -> bool {
        if self.peek() != Some('\\') {
            return false;
        }
        let mut off = 1;
        while matches!(self.peek_at(off), Some(' ' | '\t' | '\r')) {
            off += 1;
        }
        if self.peek_at(off) == Some('\n') {
            for _ in 0..=off {
                self.bump();
            }
            true
        } else {
            false
        }
    }

    /// Skip blanks, comments and line continuations; newlines too if `nl`.
    fn skip_ws(&mut self, nl: bool) {
        loop {
            match self.peek() {
                Some(' ' | '\t' | '\r') => {
                    self.bump();
                }
                Some('\n') if nl => {
                    self.bump();
                }
                Some('#') => {
                    while !matches!(self.peek(), None | Some('\n')) {
                        self.bump();
                    }
                }
                Some('\\') if self.try_continuation() => {}
                _ => return,
            }
        }
    }

    fn document(&mut self) -> Result<Document, SyntaxError> {
        let mut doc = Document::default();
        loop {
            self.skip_ws(false);
            match self.peek() {
                None => return Ok(doc),
                Some('\n' | ';') => {
                    self.bump();
                }
                Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                    doc.entries.push(self.entry()?);
                    self.skip_ws(false);
                    match self.peek() {
                        None => return Ok(doc),
                        Some('\n' | ';') => {
                            self.bump();
                        }
                        c => {
                            return self.err(
                                self.loc(),
                                format!(
                                    "expected end of line or ';' after the value, found {}",
                                    describe(c)
                                ),
                            )
                        }
                    }
                }
                Some(c @ ('"' | '\'')) => {
                    return self.err(
                        self.loc(),
                        format!("expected a key name, found a string starting with {c}"),
                    )
                }
                c => {
                    return self.err(
                        self.loc(),
                        format!("expected a key name, found {}", describe(c)),
                    )
                }
            }
        }
    }

    fn ident(&mut self) -> String {
        let mut s = String::new();
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                s.push(c);
                self.bump();
            } else {
                break;
            }
        }
        s
    }

    fn entry(&mut self) -> Result<Entry, SyntaxError> {
        let key_location = self.loc();
        let key = self.ident();
        self.skip_ws(false);
        match self.peek() {
            Some('=') => {
                self.bump();
            }
            Some('-') if self.peek_at(1).is_some_and(|c| c.is_ascii_alphanumeric()) => {
                return self.err(
                    self.loc(),
                    format!("invalid character '-' in key '{key}' (key names use '_')"),
                )
            }
            c => {
                return self.err(
                    self.loc(),
                    format!("expected '=' after key '{key}', found {}", describe(c)),
                )
            }
        }
        self.skip_ws(false);
        let value = self.value(0, false)?;
        Ok(Entry {
            key,
            key_location,
            value,
        })
    }

    fn value(&mut self, depth: usize, in_list: bool) -> Result<Value, SyntaxError> {
        let location = self.loc();
        match self.peek() {
            Some(q @ ('"' | '\'')) => Ok(Value {
                location,
                kind: ValueKind::Str(self.string(q)?),
            }),
            Some(c) if c.is_ascii_digit() => self.number(),
            Some('[') => {
                if depth >= MAX_LIST_DEPTH {
                    return self.err(
                        location,
                        format!("lists nested more than {MAX_LIST_DEPTH} levels deep"),
                    );
                }
                self.bump();
                let mut items = Vec::new();
                loop {
                    self.skip_ws(true);
                    if self.peek() == Some(']') {
                        self.bump();
                        break;
                    }
                    items.push(self.value(depth + 1, true)?);
                    self.skip_ws(true);
                    match self.peek() {
                        Some(',') => {
                            self.bump();
                        }
                        Some(']') => {
                            self.bump();
                            break;
                        }
                        None => {
                            return self.err(
                                location,
                                "unterminated list: '[' opened here is never closed",
                            )
                        }
                        c => {
                            return self.err(
                                self.loc(),
                                format!(
                                "expected ',' or ']' in the list opened at {location}, found {}",
                                describe(c)
                            ),
                            )
                        }
                    }
                }
                Ok(Value {
                    location,
                    kind: ValueKind::List(items),
                })
            }
            Some(c) if c.is_alphabetic() || c == '_' || c == '/' => {
                let start = self.pos;
                let mut end = start;
                while self
                    .chars
                    .get(end)
                    .is_some_and(|c| !c.is_whitespace() && !matches!(c, ',' | ']' | ';' | '#'))
                {
                    end += 1;
                }
                let word: String = self.chars[start..end].iter().collect();
                self.err(
                    location,
                    format!("expected a value, found bare word '{word}'; strings must be quoted, e.g. \"{word}\""),
                )
            }
            Some(']') if in_list => self.err(location, "expected a value, found ']'"),
            Some(',') if in_list => self.err(location, "empty list element (two ',' in a row?)"),
            c => self.err(
                location,
                format!(
                    "expected a value (quoted string, number or [list]), found {}",
                    describe(c)
                ),
            ),
        }
    }

    fn string(&mut self, quote: char) -> Result<String, SyntaxError> {
        let start = self.loc();
        self.bump();
        let mut s = String::new();
        loop {
            let here = self.loc();
            match self.bump() {
                None => return self.err(start, "unterminated string: missing closing quote"),
                Some('\n') => {
                    return self.err(
                        start,
                        "unterminated string: missing closing quote before end of line",
                    )
                }
                Some(c) if c == quote => return Ok(s),
                Some('\\') => {
                    let c = self.bump();
                    match c {
                        Some('\\') => s.push('\\'),
                        Some('"') => s.push('"'),
                        Some('\'') => s.push('\''),
                        Some('n') => s.push('\n'),
                        Some('t') => s.push('\t'),
                        Some('r') => s.push('\r'),
                        Some('\n') => {} // line continuation inside a string
                        Some('x') => {
                            let mut v = 0u32;
                            for _ in 0..2 {
                                match self.peek().and_then(|c| c.to_digit(16)) {
                                    Some(d) => {
                                        v = v * 16 + d;
                                        self.bump();
                                    }
                                    None => {
                                        return self
                                            .err(here, "invalid escape: \\x needs two hex digits")
                                    }
                                }
                            }
                            match char::from_u32(v) {
                                Some(ch) if v != 0 => s.push(ch),
                                _ => return self.err(here, "NUL character not allowed in strings"),
                            }
                        }
                        None => {
                            return self.err(start, "unterminated string: missing closing quote")
                        }
                        Some(c) => {
                            return self.err(
                                here,
                                format!(
                                    "unknown escape sequence '\\{}' in string",
                                    c.escape_default()
                                ),
                            )
                        }
                    }
                }
                Some('\0') => return self.err(here, "NUL character not allowed in strings"),
                Some(c) => s.push(c),
            }
        }
    }

    fn number(&mut self) -> Result<Value, SyntaxError> {
        let location = self.loc();
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            self.bump();
        }
        let raw: String = self.chars[start..self.pos].iter().collect();
        let parsed = if let Some(hex) = raw.strip_prefix("0x").or_else(|| raw.strip_prefix("0X")) {
            if hex.is_empty() {
                None
            } else {
                u64::from_str_radix(hex, 16).ok()
            }
        } else if raw.len() > 1 && raw.starts_with('0') {
            u64::from_str_radix(&raw[1..], 8).ok()
        } else {
            raw.parse::<u64>().ok()
        };
        match parsed {
            Some(value) => Ok(Value {
                location,
                kind: ValueKind::Num { raw, value },
            }),
            None => {
                let digits = raw.chars().all(|c| c.is_ascii_digit());
                let hex = raw.len() > 2
                    && (raw.starts_with("0x") || raw.starts_with("0X"))
                    && raw[2..].chars().all(|c| c.is_ascii_hexdigit());
                let msg = if digits && raw.starts_with('0') && raw.contains(['8', '9']) {
                    format!("invalid octal number '{raw}' (a leading 0 means octal; digits 8 and 9 are not allowed)")
                } else if digits || hex {
                    format!("number '{raw}' is too large")
                } else {
                    format!("invalid number '{raw}'; use a plain decimal or 0x hex number, or quote it as a string")
                };
                self.err(location, msg)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(src: &str) -> Document {
        parse_document(src, "t.cfg").unwrap_or_else(|e| panic!("{e}"))
    }

    fn bad(src: &str) -> SyntaxError {
        parse_document(src, "t.cfg").expect_err("should fail")
    }

    #[test]
    fn basic_values() {
        let d = ok("name = \"a\"\nmemory=0x10 ; vcpus = 010\nx = 'b'\n");
        assert_eq!(d.entries.len(), 4);
        assert_eq!(d.entries[0].value.kind, ValueKind::Str("a".into()));
        assert!(matches!(
            d.entries[1].value.kind,
            ValueKind::Num { value: 16, .. }
        ));
        assert!(matches!(
            d.entries[2].value.kind,
            ValueKind::Num { value: 8, .. }
        ));
        assert_eq!(d.entries[2].key_location, Location::new(2, 15));
        assert_eq!(d.get("x").unwrap().value.kind, ValueKind::Str("b".into()));
    }

    #[test]
    fn lists_span_lines_with_comments_and_trailing_comma() {
        let d = ok("disk = [ 'a', # first\n  'b',\n\n  [1, 2],\n]\n");
        match &d.entries[0].value.kind {
            ValueKind::List(v) => {
                assert_eq!(v.len(), 3);
                assert_eq!(v[1].location, Location::new(2, 3));
            }
            _ => panic!(),
        }
        assert_eq!(ok("x = []").entries.len(), 1);
    }

    #[test]
    fn continuation_and_escapes() {
        let d = ok("extra = \\\n  \"a\\tb\\x41\\\"\"\nname='it\\'s'");
        assert_eq!(d.entries[0].value.kind, ValueKind::Str("a\tbA\"".into()));
        assert_eq!(d.entries[1].value.kind, ValueKind::Str("it's".into()));
        assert_eq!(d.entries[1].key_location.line, 3);
    }

    #[test]
    fn errors_have_locations() {
        let e = bad("name = \"x\"\nmemory = 512M\n");
        assert_eq!(e.location, Location::new(2, 10));
        assert!(e.message.contains("invalid number '512M'"), "{}", e.message);
        let e = bad("name = \"x\n");
        assert_eq!(e.location, Location::new(1, 8));
        assert!(e.message.contains("unterminated string"));
        let e = bad("type = hvm");
        assert!(e.message.contains("bare word 'hvm'"));
        assert_eq!(e.to_string(), format!("t.cfg:1:8: error: {}", e.message));
        let e = bad("disk = [ 'a'\n");
        assert_eq!(e.location, Location::new(1, 8));
        let e = bad("disk = [ 'a' 'b' ]");
        assert_eq!(e.location, Location::new(1, 14));
        let e = bad("on-crash = 'destroy'");
        assert!(e.message.contains("'-'"));
        let e = bad("memory = 1 2");
        assert_eq!(e.location, Location::new(1, 12));
        let e = bad("= 3");
        assert_eq!(e.location, Location::new(1, 1));
        let e = bad("x = 099");
        assert!(e.message.contains("octal"));
        let e = bad("x = 99999999999999999999999");
        assert!(e.message.contains("too large"), "{}", e.message);
        let e = bad("x = 'a\\q'");
        assert!(e.message.contains("escape"));
    }

    #[test]
    fn deep_nesting_rejected() {
        let src = format!("x = {}", "[".repeat(10_000));
        assert!(bad(&src).message.contains("nested"));
    }
}
