//! Who gets the serial console's input: dom0 (the default) or keel
//! itself. Three Ctrl-A in a row switch between them, as on Xen. Ctrl-A
//! bytes that do not make three in a row are not lost: they go to the
//! current owner ahead of the byte that broke the run.

use alloc::collections::VecDeque;

/// Ctrl-A.
pub const SWITCH_CODE: u8 = 0x01;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    Dom0,
    Keel,
}

/// What to do with the input bytes seen so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing yet (a Ctrl-A that may start the switch sequence).
    Hold,
    /// Deliver `byte` to the owner, `held` Ctrl-A's before it.
    Deliver { owner: Owner, held: u8, byte: u8 },
    /// Input now goes to this owner.
    Switched(Owner),
}

pub struct Switch {
    owner: Owner,
    held: u8,
}

impl Switch {
    pub const fn new() -> Self {
        Switch {
            owner: Owner::Dom0,
            held: 0,
        }
    }

    pub fn owner(&self) -> Owner {
        self.owner
    }

    pub fn feed(&mut self, b: u8) -> Action {
        if b == SWITCH_CODE {
            self.held += 1;
            if self.held == 3 {
                self.held = 0;
                self.owner = match self.owner {
                    Owner::Dom0 => Owner::Keel,
                    Owner::Keel => Owner::Dom0,
                };
                return Action::Switched(self.owner);
            }
            return Action::Hold;
        }
        let held = core::mem::take(&mut self.held);
        Action::Deliver {
            owner: self.owner,
            held,
            byte: b,
        }
    }
}

impl Default for Switch {
    fn default() -> Self {
        Self::new()
    }
}

/// dom0's pending console input: bounded; when full the oldest bytes go
/// (a flood of typing cannot eat keel's memory).
pub struct InputQueue {
    q: VecDeque<u8>,
    cap: usize,
    pub dropped: u64,
}

impl InputQueue {
    pub const fn new(cap: usize) -> Self {
        InputQueue {
            q: VecDeque::new(),
            cap,
            dropped: 0,
        }
    }

    pub fn push(&mut self, b: u8) {
        if self.q.len() >= self.cap {
            self.q.pop_front();
            self.dropped += 1;
        }
        self.q.push_back(b);
    }

    /// Moves up to `out.len()` bytes out, oldest first.
    pub fn pop_into(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.q.len());
        for (o, b) in out.iter_mut().zip(self.q.drain(..n)) {
            *o = b;
        }
        n
    }

    /// Copies up to `out.len()` bytes without taking them.
    pub fn peek_into(&self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.q.len());
        for (o, b) in out.iter_mut().zip(self.q.iter()) {
            *o = *b;
        }
        n
    }

    /// Drops the `n` oldest bytes.
    pub fn discard(&mut self, n: usize) {
        self.q.drain(..n.min(self.q.len()));
    }

    pub fn len(&self) -> usize {
        self.q.len()
    }

    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn run(s: &mut Switch, bytes: &[u8]) -> Vec<Action> {
        bytes.iter().map(|&b| s.feed(b)).collect()
    }

    #[test]
    fn three_ctrl_a_switch_and_switch_back() {
        let mut s = Switch::new();
        assert_eq!(s.owner(), Owner::Dom0);
        let a = run(&mut s, &[1, 1, 1]);
        assert_eq!(a[..2], [Action::Hold, Action::Hold]);
        assert_eq!(a[2], Action::Switched(Owner::Keel));
        assert_eq!(
            s.feed(b'h'),
            Action::Deliver {
                owner: Owner::Keel,
                held: 0,
                byte: b'h'
            }
        );
        assert_eq!(run(&mut s, &[1, 1, 1])[2], Action::Switched(Owner::Dom0));
        assert_eq!(s.owner(), Owner::Dom0);
    }

    #[test]
    fn fewer_than_three_are_passed_on() {
        let mut s = Switch::new();
        assert_eq!(s.feed(1), Action::Hold);
        assert_eq!(s.feed(1), Action::Hold);
        assert_eq!(
            s.feed(b'x'),
            Action::Deliver {
                owner: Owner::Dom0,
                held: 2,
                byte: b'x'
            }
        );
        // The count starts again after the break.
        assert_eq!(run(&mut s, &[1, 1]), [Action::Hold, Action::Hold]);
        assert_eq!(s.owner(), Owner::Dom0);
    }

    #[test]
    fn queue_is_bounded_and_ordered() {
        let mut q = InputQueue::new(4);
        for b in b"abcdef" {
            q.push(*b);
        }
        assert_eq!(q.len(), 4);
        assert_eq!(q.dropped, 2);
        let mut out = [0u8; 3];
        assert_eq!(q.pop_into(&mut out), 3);
        assert_eq!(&out, b"cde");
        assert_eq!(q.pop_into(&mut out), 1);
        assert_eq!(out[0], b'f');
        assert!(q.is_empty());
        assert_eq!(q.pop_into(&mut out), 0);
        // peek + discard: a failed delivery keeps the bytes.
        q.push(b'x');
        q.push(b'y');
        assert_eq!(q.peek_into(&mut out), 2);
        assert_eq!(&out[..2], b"xy");
        assert_eq!(q.len(), 2);
        q.discard(1);
        assert_eq!(q.peek_into(&mut out), 1);
        assert_eq!(out[0], b'y');
        q.discard(5);
        assert!(q.is_empty());
    }
}
