//! The dom0 hypercall fuzzer's generator (`keel-privcmd-fuzz`, issue 12):
//! random hypercalls with random and adversarial arguments, as dom0's
//! userspace can issue them through `/dev/xen/privcmd`.
//!
//! Pure: it draws calls from a seeded PRNG and writes the structures they
//! point to into a caller-provided scratch buffer, so the same seed gives
//! the same sequence (host tests check it) and the binary only executes it.
//!
//! # What it leaves out, and why
//!
//! dom0 is privileged: a real Xen would honour some calls that end or
//! wreck dom0 itself, and keel is right to honour them too. The generator
//! rewrites exactly those ([`tame`]) into harmless neighbours:
//!
//! - `sched_op` shutdown, remote_shutdown (a domid of 0 is dom0) and
//!   watchdog (an unfed watchdog kills the domain), also through the old
//!   `sched_op_compat` (6), whose argument is the reason itself: yield.
//! - `console_io` write: random bytes on the machine's console would forge
//!   or garble the test's markers; it writes 0 bytes (the read stays).
//! - `memory_op` increase/decrease_reservation, populate_physmap,
//!   exchange, add_to_physmap(_batch), remove_from_physmap: they hand dom0
//!   RAM away or map keel's pages over it; the read-only sub-ops stay.
//! - `hvm_op` set_param (CALLBACK_IRQ moves dom0's event vector, others
//!   the store/console rings) and set_evtchn_upcall_vector, and Xen's other
//!   sub-ops that change memory types or inject: get_param.
//! - `vcpu_op` up/down (dom0's own vCPUs), send_nmi, and
//!   register_vcpu_time_memory_area (dom0's clock would be written
//!   elsewhere): is_up. A single-shot timer (`vcpu_op`
//!   set_singleshot_timer, `set_timer_op`) replaces the one Linux
//!   programmed: only deadlines already past (they fire at once and Linux's
//!   handler programs its next event again) and never a stop (that CPU
//!   would get no tick again).
//! - `event_channel_op` close, bind_vcpu and unmask on ports dom0's kernel
//!   owns (its timer, IPIs, ...): only on ports this fuzzer bound itself
//!   (or ones beyond the table). Linux keeps its spinlock kicker's port
//!   masked for good (it only polls it) and its handler is a BUG(): a
//!   random unmask while it was pending ended a QEMU run with `kernel BUG
//!   at arch/x86/xen/spinlock.c:62` in `dummy_handler`. Reset and
//!   init_control (Xen would switch dom0 to the FIFO ABI under Linux's
//!   feet); the old `event_channel_op_compat` (16) carries the same sub-ops
//!   in a struct: xen_version instead.
//! - `grant_table_op` set_version (Linux's table is v1): get_version.
//! - `platform_op`, `domctl`, `sysctl`, `dm_op`, `kexec_op`, `multicall`,
//!   `physdev_op(_compat)`: Xen acts on these when a struct carries the
//!   right interface version or sub-op (enter ACPI sleep, destroy a domain,
//!   kexec, unmap dom0's interrupts, a nested shutdown in a multicall).
//!   Their first field is forced to a value Xen refuses, except
//!   `platform_op`'s settime and get_cpuinfo with the right version, and a
//!   quarter of the sysctls: `perfc_op` at version 0x15 (query or reset of
//!   keel's VM-exit counters, random commands and handles).
//!
//! Pointers: "valid" ones point into the scratch buffer (whose last page is
//! followed by a guard page, so that a write keel makes past it faults
//! there and never reaches the fuzzer's own memory); kernel addresses are
//! the kernel's text (mapped read-only: keel may read, must refuse to
//! write) and the unmapped guard hole of the kernel half, never its data.

/// Hypercall numbers (Xen's `xen.h`).
pub mod nr {
    pub const SCHED_OP_COMPAT: u64 = 6;
    pub const PLATFORM_OP: u64 = 7;
    pub const MEMORY_OP: u64 = 12;
    pub const MULTICALL: u64 = 13;
    pub const SET_TIMER_OP: u64 = 15;
    pub const EVENT_CHANNEL_OP_COMPAT: u64 = 16;
    pub const XEN_VERSION: u64 = 17;
    pub const CONSOLE_IO: u64 = 18;
    pub const PHYSDEV_OP_COMPAT: u64 = 19;
    pub const GRANT_TABLE_OP: u64 = 20;
    pub const VCPU_OP: u64 = 24;
    pub const SCHED_OP: u64 = 29;
    pub const EVENT_CHANNEL_OP: u64 = 32;
    pub const PHYSDEV_OP: u64 = 33;
    pub const HVM_OP: u64 = 34;
    pub const SYSCTL: u64 = 35;
    pub const DOMCTL: u64 = 36;
    pub const KEXEC_OP: u64 = 37;
    pub const DM_OP: u64 = 41;
}

/// The buffers the calls point into, as dom0's process sees them.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// The scratch buffer (read-write, populated); a guard page follows.
    pub scratch: u64,
    pub scratch_len: u64,
    /// A read-only page of the process (keel may read, not write).
    pub ro: u64,
}

/// The numbers keel serves. sysctl and domctl get random structures:
/// their interface version (0x15) almost never matches, so they test the
/// pointer and version checks (-EFAULT, -EACCES), not the sub-ops.
const SERVED: [u64; 12] = [
    nr::SYSCTL,
    nr::DOMCTL,
    nr::PLATFORM_OP,
    nr::MEMORY_OP,
    nr::SET_TIMER_OP,
    nr::XEN_VERSION,
    nr::CONSOLE_IO,
    nr::GRANT_TABLE_OP,
    nr::VCPU_OP,
    nr::SCHED_OP,
    nr::EVENT_CHANNEL_OP,
    nr::HVM_OP,
];

/// The sysctl sub-ops dom0's fuzzer also sends well-formed (interface
/// version 0x15; a quarter of its sysctls): only ones that change nothing
/// keel or dom0 depend on. `perfc_op` (5): query or reset (keel's VM-exit
/// counters) with random commands, counts and handles.
const SYSCTL_SERVED: [u32; 1] = [keel_xen_abi::sysctl::op::PERFC_OP];

/// The kernel's text in the direct-kernel mapping (PVH boot: no KASLR).
const KERNEL_TEXT: u64 = 0xffff_ffff_8100_0000;

/// xorshift64* (the test guests' fuzzer's generator).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // xorshift's state must not be 0.
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// The high half of the next value (xorshift's low bits are weaker).
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// One call to make: number and the five argument registers, plus what
/// to learn from a success (a port the call allocated).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    pub nr: u64,
    pub args: [u64; 5],
    /// On success, a new event-channel port is at this offset of the
    /// scratch buffer (a u32).
    pub port_at: Option<usize>,
    /// The fuzzer's own port this call closes (forget it whatever the result).
    pub closes: Option<u32>,
}

/// The generator: a PRNG, the layout, the ports it bound.
pub struct Fuzzer {
    pub rng: Rng,
    pub layout: Layout,
    pub own_ports: Vec<u32>,
    /// Hypercall numbers sent as drawn, even where that may wreck dom0
    /// (for experiments, `--untamed`); `u64::MAX` in it: all of them.
    /// Shutdown and console writes stay out whatever this says.
    pub untamed: Vec<u64>,
}

/// Ports the fuzzer keeps bound at most (it closes one beyond that).
const MAX_OWN_PORTS: usize = 32;

impl Fuzzer {
    pub fn new(seed: u64, layout: Layout) -> Fuzzer {
        assert!(layout.scratch_len >= 2 * 4096 && layout.scratch_len.is_multiple_of(4096));
        Fuzzer {
            rng: Rng::new(seed),
            layout,
            own_ports: Vec::new(),
            untamed: Vec::new(),
        }
    }

    /// A pointer into the scratch buffer with room for 256 bytes, 8-aligned.
    fn scratch_ptr(&mut self) -> u64 {
        let l = self.layout;
        l.scratch + (self.rng.below(l.scratch_len - 256) & !7)
    }

    /// One argument: a small int, a sub-op, anything, a valid pointer,
    /// one that runs into the guard page, read-only memory, unmapped user
    /// memory, kernel text, the kernel's unmapped guard hole,
    /// non-canonical, zero, huge lengths, domain ids.
    pub fn arg(&mut self) -> u64 {
        let l = self.layout;
        let r = &mut self.rng;
        match r.below(12) {
            0 => r.below(16),
            1 => r.below(41),
            2 => r.next_u64(),
            3 | 4 => l.scratch + r.below(l.scratch_len),
            5 => l.scratch + l.scratch_len - 1 - r.below(16),
            6 => r.pick(&[
                l.ro,
                l.ro + 0xff8,
                0x1000,
                0x7fff_ffff_f000,
                l.scratch + l.scratch_len,
            ]),
            7 => KERNEL_TEXT + r.below(1 << 20),
            8 => 0xffff_8000_0000_0000 | r.below(1 << 42),
            9 => 0x0000_8000_0000_0000 | r.below(1 << 46) | r.pick(&[0, 0x7fff << 48]),
            10 => r.pick(&[
                0,
                0xffff_ffff,
                u64::MAX,
                0x7fff_ffff,
                1 << 31,
                (1 << 20) + 1,
                1 << 40,
                u64::MAX - 7,
            ]),
            _ => r.pick(&[0x7ff0, 0x7ff1, 0x7ff2, 0x7ff4, 0xffff, 0, 1, 2, 20]),
        }
    }

    /// Fills `len` bytes of the scratch buffer at `p` with arguments (the
    /// fields of whatever structure keel reads there).
    fn scribble(&mut self, scratch: &mut [u8], p: u64, len: usize) {
        let off = (p - self.layout.scratch) as usize;
        for i in (0..len).step_by(8) {
            let v = self.arg().to_le_bytes();
            let end = (off + i + 8).min(scratch.len());
            if off + i < end {
                scratch[off + i..end].copy_from_slice(&v[..end - off - i]);
            }
        }
    }

    /// A hypercall number: the Xen range 0..=63, half the time one keel
    /// serves (most of the others only answer -ENOSYS); 64 (keel's former
    /// management call); some beyond (Linux's privcmd refuses 128 and up
    /// itself).
    fn number(&mut self) -> u64 {
        let r = &mut self.rng;
        match r.below(16) {
            0 => 64,
            1 => r.pick(&[65, 100, 127, 128, 0xffff, 0xffff_ffff, u64::MAX]),
            2..=7 => r.pick(&SERVED),
            _ => r.below(64),
        }
    }

    /// The next call; the structures it points to are written into
    /// `scratch` (the buffer at `layout.scratch`).
    pub fn next_call(&mut self, scratch: &mut [u8]) -> Call {
        debug_assert_eq!(scratch.len() as u64, self.layout.scratch_len);
        let nr = self.number();
        let mut args = [0; 5];
        for a in args.iter_mut() {
            *a = self.arg();
        }
        // Mostly a sub-op the families define (they are all below 16 but
        // hvm_op's 23 and memory_op's extent bits).
        if self.rng.below(4) != 0 {
            args[0] = self.rng.below(16);
        }
        // Structures behind the pointers into scratch hold adversarial
        // fields too.
        for a in args {
            if (self.layout.scratch..self.layout.scratch + self.layout.scratch_len - 64)
                .contains(&a)
            {
                self.scribble(scratch, a, 64);
            }
        }
        let mut c = Call {
            nr,
            args,
            port_at: None,
            closes: None,
        };
        self.tame(&mut c, scratch);
        c
    }

    /// Writes `v` at scratch pointer `p` (little-endian).
    fn put(&self, scratch: &mut [u8], p: u64, v: &[u8]) {
        let off = (p - self.layout.scratch) as usize;
        scratch[off..off + v.len()].copy_from_slice(v);
    }

    /// A fresh structure in scratch: `len` scribbled bytes; returns its address.
    fn strukt(&mut self, scratch: &mut [u8], len: usize) -> u64 {
        let p = self.scratch_ptr();
        self.scribble(scratch, p, len);
        p
    }

    /// Rewrites what would end or wreck dom0 itself (the module's top).
    fn tame(&mut self, c: &mut Call, scratch: &mut [u8]) {
        const SCHEDOP_YIELD: u64 = 0;
        const XENVER_VERSION: u64 = 0;
        let a = &mut c.args;
        match c.nr {
            // shutdown 2, remote_shutdown 4, watchdog 6.
            nr::SCHED_OP | nr::SCHED_OP_COMPAT if matches!(a[0], 2 | 4 | 6) => a[0] = SCHEDOP_YIELD,
            nr::CONSOLE_IO if a[0] == 0 => a[1] = 0,
            // SCHEDOP_poll: half the time a well-formed struct sched_poll
            // { u64 ports; u32 nr_ports; u64 timeout } with few ports, none
            // at all, too many, and deadlines past, near, far and none.
            nr::SCHED_OP if a[0] == 3 && self.rng.below(2) == 0 => {
                let p = self.scratch_ptr();
                let ports = self.strukt(scratch, 64);
                let nr_ports: u32 = self.rng.pick(&[0, 0, 1, 2, 8, 128, 129]);
                let r = &mut self.rng;
                let timeout = match r.below(4) {
                    0 => 0,
                    1 => 1 + r.below(1_000_000),
                    2 => r.below(1 << 40),
                    _ => r.next_u64(),
                };
                self.put(scratch, p, &ports.to_le_bytes());
                self.put(scratch, p + 8, &nr_ports.to_le_bytes());
                self.put(scratch, p + 16, &timeout.to_le_bytes());
                a[1] = p;
            }
            n if self.untamed.contains(&n) || self.untamed.contains(&u64::MAX) => {}
            nr::MEMORY_OP if matches!(a[0] & 0x3f, 0 | 1 | 6 | 7 | 11 | 15 | 23) => {
                // Read-only: maximum_ram_page, current/maximum_reservation,
                // memory_map, machine_memory_map, maximum_gpfn.
                a[0] = self.rng.pick(&[2, 3, 4, 9, 10, 14]);
            }
            // Only get_param (1) and numbers Xen does not know.
            nr::HVM_OP if a[0] != 1 && a[0] < 64 => a[0] = 1,
            nr::VCPU_OP => match a[0] {
                // initialise, up, down, stop_singleshot_timer, send_nmi,
                // register_vcpu_time_memory_area -> is_up.
                0 | 1 | 2 | 9 | 11 | 13 => a[0] = 3,
                8 => {
                    // struct vcpu_set_singleshot_timer { u64 timeout_abs_ns; u32 flags; }
                    let p = self.scratch_ptr();
                    let t = self.rng.below(1_000_000) + 1;
                    let flags = self.rng.below(2) as u32;
                    self.put(scratch, p, &t.to_le_bytes());
                    self.put(scratch, p + 8, &flags.to_le_bytes());
                    a[2] = p;
                }
                _ => {}
            },
            // 0 would stop the timer, a later deadline delay Linux's.
            nr::SET_TIMER_OP => a[0] = self.rng.below(1_000_000) + 1,
            nr::EVENT_CHANNEL_OP_COMPAT => {
                c.nr = nr::XEN_VERSION;
                a[0] = XENVER_VERSION;
            }
            nr::EVENT_CHANNEL_OP => self.tame_evtchn(c, scratch),
            // set_version -> get_version.
            nr::GRANT_TABLE_OP if a[0] == 8 => a[0] = 10,
            nr::PLATFORM_OP => {
                // struct xen_platform_op { u32 cmd; u32 interface_version; union u }
                let p = self.strukt(scratch, 128);
                let cmd: u32 = self.rng.pick(&[17, 55, 62, 0xdead]);
                let version: u32 = self.rng.pick(&[0x0300_0001, 0x0300_0002, 0]);
                self.put(scratch, p, &cmd.to_le_bytes());
                self.put(scratch, p + 4, &version.to_le_bytes());
                a[0] = p;
            }
            nr::SYSCTL if self.rng.below(4) == 0 => {
                // struct xen_sysctl { u32 cmd; u32 interface_version; union
                // at 8 }; perfc_op { u32 cmd; u32 nr_counters; u32 nr_vals;
                // u64 desc at 16; u64 val at 24 }, both handles sometimes NULL.
                let p = self.strukt(scratch, 136);
                let cmd = self.rng.pick(&SYSCTL_SERVED);
                self.put(scratch, p, &cmd.to_le_bytes());
                self.put(
                    scratch,
                    p + 4,
                    &keel_xen_abi::sysctl::INTERFACE_VERSION.to_le_bytes(),
                );
                let sub: u32 = self.rng.pick(&[1, 2, 2, 2, 0, 3, u32::MAX]);
                self.put(scratch, p + 8, &sub.to_le_bytes());
                for at in [p + 24, p + 32] {
                    let h = if self.rng.below(3) == 0 {
                        0
                    } else {
                        self.arg()
                    };
                    self.put(scratch, at, &h.to_le_bytes());
                }
                a[0] = p;
            }
            nr::DOMCTL | nr::SYSCTL | nr::MULTICALL | nr::PHYSDEV_OP_COMPAT => {
                // The structure's first field is the interface version
                // (domctl, sysctl), the first entry's call (multicall) or
                // the sub-op (physdev_op_compat): one Xen refuses.
                let p = self.strukt(scratch, 128);
                self.put(scratch, p, &0xdead_beefu32.to_le_bytes());
                a[0] = p;
                if c.nr == nr::MULTICALL {
                    a[1] = a[1].min(1);
                }
            }
            // kexec_get_range (3) only reads; the other commands would act.
            nr::KEXEC_OP => a[0] = 3,
            // The target domain: DOMID_INVALID.
            nr::DM_OP => a[0] = 0x7ff4,
            // Sub-ops 0..=31 manage dom0's interrupts and devices.
            nr::PHYSDEV_OP => a[0] = 32 + self.rng.below(32),
            _ => {}
        }
    }

    /// event_channel_op: the sub-ops that allocate remember their port;
    /// close and bind_vcpu only on those; no reset (10, 14) or
    /// init_control (11, FIFO).
    fn tame_evtchn(&mut self, c: &mut Call, scratch: &mut [u8]) {
        let a = &mut c.args;
        match a[0] {
            // bind_interdomain: struct { u16 remote_dom; u32 remote_port; u32 local_port }
            0 => {
                let p = self.strukt(scratch, 16);
                if let Some(&port) = self.own_ports.last() {
                    if self.rng.below(2) == 0 {
                        self.put(scratch, p, &0x7ff0u16.to_le_bytes()); // DOMID_SELF
                        self.put(scratch, p + 4, &port.to_le_bytes());
                    }
                }
                a[1] = p;
                c.port_at = Some(8);
            }
            // bind_virq { u32 virq; u32 vcpu; u32 port }
            1 => {
                let p = self.strukt(scratch, 16);
                let virq = self.rng.below(24) as u32;
                let vcpu = self.rng.below(3) as u32;
                self.put(scratch, p, &virq.to_le_bytes());
                self.put(scratch, p + 4, &vcpu.to_le_bytes());
                a[1] = p;
                c.port_at = Some(8);
            }
            // bind_ipi { u32 vcpu; u32 port }
            7 => {
                let p = self.strukt(scratch, 8);
                let vcpu = self.rng.below(3) as u32;
                self.put(scratch, p, &vcpu.to_le_bytes());
                a[1] = p;
                c.port_at = Some(4);
            }
            // alloc_unbound { u16 dom; u16 remote_dom; u32 port }
            6 => {
                let p = self.strukt(scratch, 8);
                self.put(scratch, p, &0x7ff0u16.to_le_bytes());
                let remote: u16 = self.rng.pick(&[0x7ff0, 0, 1, 0x7ff1]);
                self.put(scratch, p + 2, &remote.to_le_bytes());
                a[1] = p;
                c.port_at = Some(4);
            }
            // close { u32 port } / bind_vcpu { u32 port; u32 vcpu }
            3 | 8 => {
                if self.own_ports.is_empty() {
                    a[0] = 5; // status: reads only
                    return;
                }
                let i = self.rng.below(self.own_ports.len() as u64) as usize;
                let port = self.own_ports[i];
                let p = self.strukt(scratch, 8);
                self.put(scratch, p, &port.to_le_bytes());
                if a[0] == 8 {
                    let vcpu = self.rng.below(3) as u32;
                    self.put(scratch, p + 4, &vcpu.to_le_bytes());
                } else {
                    self.own_ports.swap_remove(i);
                    c.closes = Some(port);
                }
                a[1] = p;
            }
            // unmask { u32 port }: Linux keeps some of its ports masked
            // for good (the spinlock kicker is only ever polled; its
            // handler is BUG()): an unmask would deliver their events.
            9 => {
                let p = self.strukt(scratch, 8);
                let port = match self.own_ports.len() as u64 {
                    n if n > 0 && self.rng.below(2) == 0 => {
                        self.own_ports[self.rng.below(n) as usize]
                    }
                    _ => self.rng.pick(&[4096, 4097, 1 << 20, u32::MAX]),
                };
                self.put(scratch, p, &port.to_le_bytes());
                a[1] = p;
            }
            10 | 11 | 14 => a[0] = 5,
            _ => {}
        }
        // Too many of its own: close one instead.
        if c.port_at.is_some() && self.own_ports.len() >= MAX_OWN_PORTS {
            c.port_at = None;
            let port = self.own_ports.swap_remove(0);
            let p = self.scratch_ptr();
            self.put(scratch, p, &port.to_le_bytes());
            c.args[0] = 3;
            c.args[1] = p;
            c.closes = Some(port);
        }
    }

    /// After a successful call: remember the port it bound.
    pub fn completed(&mut self, c: &Call, scratch: &[u8]) {
        if let Some(at) = c.port_at {
            let off = (c.args[1] - self.layout.scratch) as usize + at;
            let port = u32::from_le_bytes(scratch[off..off + 4].try_into().unwrap());
            if port != 0 && !self.own_ports.contains(&port) {
                self.own_ports.push(port);
            }
        }
    }
}

/// A return code's histogram bucket: `0`, `>0`, or `-ENAME` for an errno.
pub fn rc_bucket(r: Result<u64, i32>) -> String {
    match r {
        Ok(0) => "0".into(),
        Ok(_) => ">0".into(),
        Err(e) => {
            let name = match e {
                1 => "EPERM",
                2 => "ENOENT",
                3 => "ESRCH",
                4 => "EINTR",
                7 => "E2BIG",
                12 => "ENOMEM",
                13 => "EACCES",
                14 => "EFAULT",
                16 => "EBUSY",
                17 => "EEXIST",
                22 => "EINVAL",
                25 => "ENOTTY",
                28 => "ENOSPC",
                38 => "ENOSYS",
                62 => "ETIME",
                95 => "EOPNOTSUPP",
                _ => return format!("-{e}"),
            };
            format!("-{name}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAYOUT: Layout = Layout {
        scratch: 0x7f00_0000_0000,
        scratch_len: 1 << 20,
        ro: 0x5555_0000_0000,
    };

    fn run(seed: u64, n: usize) -> (Vec<Call>, Vec<u8>) {
        let mut f = Fuzzer::new(seed, LAYOUT);
        let mut s = vec![0u8; LAYOUT.scratch_len as usize];
        let calls = (0..n)
            .map(|_| {
                let c = f.next_call(&mut s);
                // Pretend every call succeeded and bound port 1000 + i.
                if let Some(at) = c.port_at {
                    let off = (c.args[1] - LAYOUT.scratch) as usize + at;
                    let port = 1000 + f.own_ports.len() as u32;
                    s[off..off + 4].copy_from_slice(&port.to_le_bytes());
                }
                f.completed(&c, &s);
                c
            })
            .collect();
        (calls, s)
    }

    #[test]
    fn same_seed_same_sequence() {
        let (a, sa) = run(7, 5000);
        let (b, sb) = run(7, 5000);
        assert_eq!(a, b);
        assert_eq!(sa, sb);
        let (c, _) = run(8, 5000);
        assert_ne!(a, c);
    }

    #[test]
    fn nothing_that_ends_dom0() {
        let mut f = Fuzzer::new(12, LAYOUT);
        let mut s = vec![0u8; LAYOUT.scratch_len as usize];
        let mut seen = std::collections::BTreeSet::new();
        let mut served = 0;
        for i in 0..200_000u32 {
            let c = f.next_call(&mut s);
            let u32_at = |p: u64| {
                let o = (p - LAYOUT.scratch) as usize;
                u32::from_le_bytes(s[o..o + 4].try_into().unwrap())
            };
            let a = c.args;
            seen.insert(c.nr);
            match c.nr {
                nr::SCHED_OP | nr::SCHED_OP_COMPAT => assert!(!matches!(a[0], 2 | 4 | 6)),
                nr::CONSOLE_IO if a[0] == 0 => assert_eq!(a[1], 0),
                nr::MEMORY_OP => assert!(!matches!(a[0] & 0x3f, 0 | 1 | 6 | 7 | 11 | 15 | 23)),
                nr::HVM_OP => assert!(a[0] == 1 || a[0] >= 64),
                nr::VCPU_OP => assert!(!matches!(a[0], 0 | 1 | 2 | 9 | 11 | 13)),
                nr::SET_TIMER_OP => assert!((1..=1_000_000).contains(&a[0])),
                nr::EVENT_CHANNEL_OP_COMPAT => panic!("compat evtchn op issued"),
                nr::EVENT_CHANNEL_OP => {
                    assert!(!matches!(a[0], 10 | 11 | 14));
                    if matches!(a[0], 3 | 8 | 9) {
                        // Only ports it bound itself (1,000,000 and up
                        // here) or none at all.
                        assert!(u32_at(a[1]) >= 4096);
                    }
                }
                nr::GRANT_TABLE_OP => assert_ne!(a[0], 8),
                // Only the served sub-ops at the interface version keel
                // acts on; every other sysctl and domctl a version it refuses.
                nr::SYSCTL | nr::DOMCTL => {
                    if u32_at(a[0] + 4) == 0x15 {
                        assert_eq!(c.nr, nr::SYSCTL);
                        assert!(SYSCTL_SERVED.contains(&u32_at(a[0])));
                        served += 1;
                    } else {
                        assert_eq!(u32_at(a[0]), 0xdead_beef);
                    }
                }
                _ => {}
            }
            // Pretend every call succeeded and bound a new port.
            if let Some(at) = c.port_at {
                let off = (c.args[1] - LAYOUT.scratch) as usize + at;
                s[off..off + 4].copy_from_slice(&(1_000_000 + i).to_le_bytes());
            }
            f.completed(&c, &s);
        }
        // The whole range is covered, and keel's own call.
        for n in 0..64 {
            if n != nr::EVENT_CHANNEL_OP_COMPAT {
                assert!(seen.contains(&n), "{n}");
            }
        }
        assert!(seen.contains(&64));
        assert!(served > 100, "{served} well-formed perfc_ops");
    }

    #[test]
    fn own_ports_bounded_and_closed() {
        let mut f = Fuzzer::new(3, LAYOUT);
        let mut s = vec![0u8; LAYOUT.scratch_len as usize];
        let mut closes = 0;
        let mut next_port = 100u32;
        for _ in 0..100_000 {
            let c = f.next_call(&mut s);
            if let Some(at) = c.port_at {
                let off = (c.args[1] - LAYOUT.scratch) as usize + at;
                s[off..off + 4].copy_from_slice(&next_port.to_le_bytes());
                next_port += 1;
            }
            if let Some(p) = c.closes {
                assert!(!f.own_ports.contains(&p));
                assert_eq!(c.nr, nr::EVENT_CHANNEL_OP);
                closes += 1;
            }
            f.completed(&c, &s);
            assert!(f.own_ports.len() <= MAX_OWN_PORTS);
        }
        assert!(closes > 10, "{closes}");
    }

    #[test]
    fn buckets() {
        assert_eq!(rc_bucket(Ok(0)), "0");
        assert_eq!(rc_bucket(Ok(5)), ">0");
        assert_eq!(rc_bucket(Err(38)), "-ENOSYS");
        assert_eq!(rc_bucket(Err(200)), "-200");
    }
}
