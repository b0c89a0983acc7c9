//! Console output: bytes to keel's CONSOLE port; keel prints whole lines.
use core::fmt;

pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            crate::arch::outb(crate::proto::CONSOLE, b);
        }
        Ok(())
    }
}

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _ = writeln!($crate::console::Console, $($arg)*);
    }};
}

/// A fixed-size message (failure details), truncated when full.
pub struct Msg {
    buf: [u8; 192],
    len: usize,
}

impl Msg {
    pub const fn new() -> Self {
        Msg {
            buf: [0; 192],
            len: 0,
        }
    }
    pub fn as_str(&self) -> &str {
        // Only whole `str`s are appended, cut at a char boundary.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("<bad utf-8>")
    }
}

impl fmt::Write for Msg {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - self.len;
        let mut n = s.len().min(room);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

impl fmt::Display for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `Err(Msg)` built like `format!`.
#[macro_export]
macro_rules! fail {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let mut m = $crate::console::Msg::new();
        let _ = write!(m, $($arg)*);
        return Err(m);
    }};
}
