//! An unprivileged domain's console output (CONSOLE_IO writes and the test
//! guests' console port): printed on keel's console by line as `(dN) ...`,
//! within a byte budget, so that no guest can flood or stall the serial
//! line (115200 baud is about 11 KiB/s, shared with keel and dom0).
//!
//! The budget is a token bucket: [`BURST`] bytes at once, refilled at
//! [`RATE`] bytes per second. What a guest writes beyond it is dropped,
//! counted, and said on the console when output resumes: nothing is lost
//! without a word. dom0's output is the machine console's and is not
//! limited (as on Xen, where only the hardware domain writes unthrottled).

use alloc::string::String;

/// Bytes a domain may write at once.
pub const BURST: u64 = 16 * 1024;
/// Bytes per second it may write in the long run.
pub const RATE: u64 = 2 * 1024;
/// A longer line is cut and printed in parts.
const MAX_LINE: usize = 400;

/// One domain's console state.
#[derive(Debug)]
pub struct GuestConsole {
    line: String,
    /// Whole bytes of budget left, in millionths (so that slow refills are
    /// not lost to rounding).
    budget_micro: u64,
    last_us: Option<u64>,
    dropped: u64,
}

impl Default for GuestConsole {
    fn default() -> Self {
        GuestConsole {
            line: String::new(),
            budget_micro: BURST * 1_000_000,
            last_us: None,
            dropped: 0,
        }
    }
}

impl GuestConsole {
    /// Takes `bytes` written at `now_us` (keel's clock); `print` gets each
    /// line to show, without the `(dN) ` prefix.
    pub fn write(&mut self, bytes: &[u8], now_us: u64, mut print: impl FnMut(&str)) {
        let elapsed = self.last_us.map_or(0, |t| now_us.saturating_sub(t));
        self.last_us = Some(now_us);
        self.budget_micro = self
            .budget_micro
            .saturating_add(elapsed.saturating_mul(RATE))
            .min(BURST * 1_000_000);
        for &b in bytes {
            if self.budget_micro < 1_000_000 {
                self.dropped += 1;
                continue;
            }
            self.budget_micro -= 1_000_000;
            if self.dropped > 0 {
                // Output resumes: say what was lost, on a line of its own.
                if !self.line.is_empty() {
                    print(&self.line);
                    self.line.clear();
                }
                print(&dropped_notice(self.dropped));
                self.dropped = 0;
            }
            if b == b'\n' || self.line.len() >= MAX_LINE {
                print(&self.line);
                self.line.clear();
            }
            if b != b'\n' && b != b'\r' {
                self.line
                    .push(if b.is_ascii_graphic() || b == b' ' || b == b'\t' {
                        b as char
                    } else {
                        '.'
                    });
            }
        }
    }

    /// The domain is finished: its last partial line, and what was dropped
    /// since output last got through.
    pub fn flush(&mut self, mut print: impl FnMut(&str)) {
        if !self.line.is_empty() {
            print(&self.line);
            self.line.clear();
        }
        if self.dropped > 0 {
            print(&dropped_notice(self.dropped));
            self.dropped = 0;
        }
    }

    /// Bytes dropped since output last got through.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

fn dropped_notice(n: u64) -> String {
    alloc::format!(
        "[keel: {n} bytes of console output dropped: over {} KiB/s]",
        RATE / 1024
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn run(c: &mut GuestConsole, bytes: &[u8], now_us: u64) -> Vec<String> {
        let mut out = Vec::new();
        c.write(bytes, now_us, |l| out.push(String::from(l)));
        out
    }

    #[test]
    fn lines_are_printed_whole_and_cleaned() {
        let mut c = GuestConsole::default();
        assert!(run(&mut c, b"hello ", 0).is_empty());
        assert_eq!(run(&mut c, b"world\r\nx\x01y\n", 1), ["hello world", "x.y"]);
        let long = [b'a'; MAX_LINE + 5];
        let out = run(&mut c, &long, 2);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].len(), MAX_LINE);
    }

    #[test]
    fn a_flood_is_cut_to_the_burst_and_then_to_the_rate() {
        let mut c = GuestConsole::default();
        // 1 MiB at once: the burst gets through, the rest is dropped.
        let line = [b"0123456789abcde".as_slice(), b"\n"].concat();
        let flood: Vec<u8> = line.iter().copied().cycle().take(1 << 20).collect();
        let out = run(&mut c, &flood, 1_000);
        let shown: usize = out.iter().map(|l| l.len() + 1).sum();
        assert_eq!(shown as u64, BURST);
        assert_eq!(c.dropped(), (1 << 20) - BURST);
        // Half a second later: RATE/2 bytes more, after the drop notice.
        let out = run(&mut c, &flood, 501_000);
        assert_eq!(
            out[0],
            alloc::format!(
                "[keel: {} bytes of console output dropped: over 2 KiB/s]",
                (1 << 20) - BURST
            )
        );
        let shown: usize = out[1..].iter().map(|l| l.len() + 1).sum();
        assert_eq!(shown as u64, RATE / 2);
        // A long quiet spell refills the bucket to the burst, no more.
        let out = run(&mut c, &flood, 3_600_000_000);
        let shown: usize = out[1..].iter().map(|l| l.len() + 1).sum();
        assert_eq!(shown as u64, BURST);
    }

    #[test]
    fn a_clock_going_backwards_refills_nothing() {
        let mut c = GuestConsole::default();
        let big = alloc::vec![b'x'; BURST as usize + 10];
        run(&mut c, &big, 5_000_000);
        assert_eq!(c.dropped(), 10);
        run(&mut c, b"y", 1_000);
        assert_eq!(c.dropped(), 11);
        let mut out = Vec::new();
        c.flush(|l| out.push(String::from(l)));
        assert_eq!(
            out,
            [
                "x".repeat(BURST as usize % MAX_LINE),
                "[keel: 11 bytes of console output dropped: over 2 KiB/s]".into()
            ]
        );
    }
}
