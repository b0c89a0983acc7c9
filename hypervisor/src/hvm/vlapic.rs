//! A virtual local APIC in x2APIC mode (registers as MSRs 0x800-0x8ff):
//! the register file, the interrupt request/service logic and the timer.
//! Pure: time comes in as nanoseconds, so it is tested on the host.
//!
//! keel offers guests x2APIC already enabled (APIC base MSR with EXTD set),
//! so Linux talks to it through MSR exits and never needs MMIO emulation.
//! IPIs written to the ICR come back to the caller as an [`Ipi`], which the
//! domain routes to its vCPUs (fixed interrupts, INIT and start-up IPIs).
//! Not yet: NMI/SMI delivery, LINT pins, thermal/performance interrupts.

pub const MSR_BASE: u32 = 0x800;
pub const MSR_END: u32 = 0x8ff;

// x2APIC register MSRs (Intel SDM vol. 3, table 11-6).
const ID: u32 = 0x802;
const VERSION: u32 = 0x803;
const TPR: u32 = 0x808;
const PPR: u32 = 0x80a;
pub const EOI: u32 = 0x80b;
const LDR: u32 = 0x80d;
const SVR: u32 = 0x80f;
const ISR0: u32 = 0x810;
const TMR0: u32 = 0x818;
const IRR0: u32 = 0x820;
const ESR: u32 = 0x828;
const LVT_CMCI: u32 = 0x82f;
const ICR: u32 = 0x830;
#[cfg(test)]
const LVT_TIMER: u32 = 0x832;
const LVT_ERROR: u32 = 0x837;
const TIMER_INIT: u32 = 0x838;
const TIMER_CUR: u32 = 0x839;
const TIMER_DIV: u32 = 0x83e;
const SELF_IPI: u32 = 0x83f;

const LVT_MASKED: u32 = 1 << 16;
const TIMER_PERIODIC: u32 = 1 << 17;
const SVR_ENABLED: u32 = 1 << 8;
/// The virtual APIC timer's input clock (the "bus"): 1 GHz, so a count is
/// a nanosecond before division.
pub const BUS_HZ: u64 = 1_000_000_000;

/// Who an IPI is for (x2APIC: IDs are 32 bits; vCPU `n` has APIC ID `n`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dest {
    /// Physical destination mode: one APIC ID.
    Physical(u32),
    /// x2APIC logical (cluster) mode: cluster in bits 31-16, a bitmap of
    /// the 16 APICs of that cluster in bits 15-0.
    Logical(u32),
    /// Shorthands.
    SelfOnly,
    All,
    AllButSelf,
}

impl Dest {
    /// Whether the APIC with `id` is a target, when `from` sends.
    pub fn matches(self, id: u32, from: u32) -> bool {
        match self {
            Dest::Physical(d) => d == id || d == u32::MAX,
            Dest::Logical(d) => d >> 16 == id >> 4 && d & (1 << (id & 15)) != 0,
            Dest::SelfOnly => id == from,
            Dest::All => true,
            Dest::AllButSelf => id != from,
        }
    }
}

/// What an ICR write asks the domain to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ipi {
    Fixed {
        dest: Dest,
        vector: u8,
    },
    /// INIT, level assert: the target waits for a start-up IPI.
    Init {
        dest: Dest,
    },
    /// Start-up IPI: the target starts in real mode at `vector << 12`.
    Startup {
        dest: Dest,
        vector: u8,
    },
    /// NMI, SMI, lowest priority and the INIT level de-assert: no effect
    /// in keel (the de-assert has none on modern CPUs either).
    Ignored {
        mode: u32,
    },
}

/// The guest touched a register in a way the hardware refuses: #GP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gp;

#[derive(Clone, Debug)]
pub struct Vlapic {
    id: u32,
    tpr: u32,
    svr: u32,
    esr: u32,
    lvt: [u32; 7], // CMCI, timer, thermal, perf, LINT0, LINT1, error (0x82f, 0x832-0x837)
    irr: [u32; 8],
    isr: [u32; 8],
    tmr: [u32; 8],
    timer_init: u32,
    timer_div: u32,
    /// When the current count started (ns) and when it next fires.
    timer_start_ns: u64,
    timer_deadline_ns: Option<u64>,
}

fn lvt_index(msr: u32) -> Option<usize> {
    match msr {
        LVT_CMCI => Some(0),
        0x832..=LVT_ERROR => Some((msr - 0x832 + 1) as usize),
        _ => None,
    }
}

impl Vlapic {
    pub fn new(id: u32) -> Self {
        Vlapic {
            id,
            tpr: 0,
            svr: 0xff,
            esr: 0,
            lvt: [LVT_MASKED; 7],
            irr: [0; 8],
            isr: [0; 8],
            tmr: [0; 8],
            timer_init: 0,
            timer_div: 0,
            timer_start_ns: 0,
            timer_deadline_ns: None,
        }
    }

    /// Divide configuration register -> divisor (1, 2, 4, ... 128).
    fn divisor(&self) -> u64 {
        let d = (self.timer_div & 0b11) | ((self.timer_div >> 1) & 0b100);
        if d == 0b111 {
            1
        } else {
            2 << d
        }
    }

    fn period_ns(&self) -> u64 {
        self.timer_init as u64 * self.divisor() * 1_000_000_000 / BUS_HZ
    }

    fn highest(bits: &[u32; 8]) -> Option<u8> {
        (0..8)
            .rev()
            .find(|&i| bits[i] != 0)
            .map(|i| (i as u32 * 32 + 31 - bits[i].leading_zeros()) as u8)
    }

    fn set(bits: &mut [u32; 8], v: u8) {
        bits[v as usize / 32] |= 1 << (v % 32);
    }
    fn clear(bits: &mut [u32; 8], v: u8) {
        bits[v as usize / 32] &= !(1 << (v % 32));
    }

    fn ppr(&self) -> u32 {
        let isrv = Self::highest(&self.isr).map_or(0, |v| v as u32);
        if (self.tpr & 0xf0) >= (isrv & 0xf0) {
            self.tpr
        } else {
            isrv & 0xf0
        }
    }

    /// Raises `vector` (from the timer, a self-IPI or the hypervisor).
    pub fn raise(&mut self, vector: u8) {
        if vector >= 16 {
            Self::set(&mut self.irr, vector);
        }
    }

    /// The vector to deliver now, if any (the caller injects it when the
    /// vCPU can take an interrupt, then calls [`Vlapic::accept`]).
    pub fn pending(&self) -> Option<u8> {
        if self.svr & SVR_ENABLED == 0 {
            return None;
        }
        let v = Self::highest(&self.irr)?;
        ((v as u32 & 0xf0) > (self.ppr() & 0xf0)).then_some(v)
    }

    /// The vector an EOI would retire now (the highest in service).
    pub fn in_service(&self) -> Option<u8> {
        Self::highest(&self.isr)
    }

    /// The guest took `vector`: it moves from IRR to ISR.
    pub fn accept(&mut self, vector: u8) {
        Self::clear(&mut self.irr, vector);
        Self::set(&mut self.isr, vector);
    }

    /// Advances the timer to `now_ns`, raising its vector if it fired.
    pub fn tick(&mut self, now_ns: u64) {
        let Some(dl) = self.timer_deadline_ns else {
            return;
        };
        if now_ns < dl {
            return;
        }
        let lvt = self.lvt[1];
        if lvt & LVT_MASKED == 0 {
            self.raise(lvt as u8);
        }
        self.timer_deadline_ns = if lvt & TIMER_PERIODIC != 0 && self.period_ns() > 0 {
            let p = self.period_ns();
            // Catch up without raising a burst: the next edge after now.
            self.timer_start_ns = dl + (now_ns - dl) / p * p;
            Some(self.timer_start_ns + p)
        } else {
            None
        };
    }

    /// Enables the APIC and arms its timer one-shot with `vector`, to fire
    /// at `deadline_ns` (keel's test guests' TIMER port).
    pub fn arm_oneshot(&mut self, vector: u8, deadline_ns: u64) {
        self.svr |= SVR_ENABLED;
        self.lvt[1] = vector as u32;
        self.timer_deadline_ns = Some(deadline_ns);
    }

    /// When the timer next fires (for a halted vCPU's sleep).
    pub fn next_deadline(&self) -> Option<u64> {
        self.timer_deadline_ns
    }

    pub fn read(&self, msr: u32, now_ns: u64) -> Result<u64, Gp> {
        let r = |bits: &[u32; 8], base: u32| bits[(msr - base) as usize] as u64;
        Ok(match msr {
            ID => self.id as u64,
            // Version 0x14, 7 LVT entries (max LVT index 6).
            VERSION => 0x0006_0014,
            TPR => self.tpr as u64,
            PPR => self.ppr() as u64,
            // x2APIC logical ID: cluster (id >> 4) << 16 | 1 << (id & 15).
            LDR => (((self.id >> 4) << 16) | (1 << (self.id & 15))) as u64,
            SVR => self.svr as u64,
            ISR0..=0x817 => r(&self.isr, ISR0),
            TMR0..=0x81f => r(&self.tmr, TMR0),
            IRR0..=0x827 => r(&self.irr, IRR0),
            ESR => self.esr as u64,
            ICR => 0,
            TIMER_INIT => self.timer_init as u64,
            TIMER_CUR => match self.timer_deadline_ns {
                Some(dl) if dl > now_ns => {
                    ((dl - now_ns) * BUS_HZ / 1_000_000_000 / self.divisor()).min(u32::MAX as u64)
                }
                _ => 0,
            },
            TIMER_DIV => self.timer_div as u64,
            m => match lvt_index(m) {
                Some(i) => self.lvt[i] as u64,
                None => return Err(Gp), // EOI and SELF_IPI are write-only; others reserved
            },
        })
    }

    /// Writes a register; an ICR write returns the IPI it sends (a fixed
    /// IPI to this APIC alone is raised here directly).
    pub fn write(&mut self, msr: u32, val: u64, now_ns: u64) -> Result<Option<Ipi>, Gp> {
        let v32 = val as u32;
        match msr {
            TPR => self.tpr = v32 & 0xff,
            EOI => {
                if val != 0 {
                    return Err(Gp);
                }
                if let Some(v) = Self::highest(&self.isr) {
                    Self::clear(&mut self.isr, v);
                }
            }
            SVR => self.svr = v32 & 0x1ff,
            ESR => self.esr = 0,
            ICR => {
                let vector = v32 as u8;
                let dest = match (v32 >> 18) & 3 {
                    1 => Dest::SelfOnly,
                    2 => Dest::All,
                    3 => Dest::AllButSelf,
                    _ if v32 & (1 << 11) != 0 => Dest::Logical((val >> 32) as u32),
                    _ => Dest::Physical((val >> 32) as u32),
                };
                let ipi = match (v32 >> 8) & 7 {
                    0 if dest == Dest::SelfOnly || dest == Dest::Physical(self.id) => {
                        self.raise(vector);
                        return Ok(None);
                    }
                    0 => Ipi::Fixed { dest, vector },
                    5 if v32 & (1 << 14) != 0 => Ipi::Init { dest },
                    6 => Ipi::Startup { dest, vector },
                    mode => Ipi::Ignored { mode },
                };
                return Ok(Some(ipi));
            }
            TIMER_INIT => {
                self.timer_init = v32;
                self.timer_start_ns = now_ns;
                self.timer_deadline_ns = (v32 != 0).then(|| now_ns + self.period_ns());
            }
            TIMER_DIV => self.timer_div = v32 & 0b1011,
            SELF_IPI => self.raise(v32 as u8),
            ID | VERSION | PPR | LDR | TIMER_CUR | ISR0..=0x827 => return Err(Gp),
            m => match lvt_index(m) {
                Some(i) => self.lvt[i] = v32 & 0x3_17ff,
                None => return Err(Gp),
            },
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled() -> Vlapic {
        let mut a = Vlapic::new(0);
        a.write(SVR, 0x1ff, 0).unwrap();
        a
    }

    #[test]
    fn registers() {
        let a = Vlapic::new(3);
        assert_eq!(a.read(ID, 0), Ok(3));
        assert_eq!(a.read(LDR, 0), Ok(1 << 3));
        assert_eq!(a.read(LVT_TIMER, 0), Ok(LVT_MASKED as u64));
        assert_eq!(a.read(EOI, 0), Err(Gp));
        assert_eq!(Vlapic::new(0).clone().write(ID, 1, 0), Err(Gp));
        assert_eq!(Vlapic::new(0).write(0x8a0, 1, 0), Err(Gp));
    }

    #[test]
    fn one_shot_timer_fires_once() {
        let mut a = enabled();
        a.write(TIMER_DIV, 0b1011, 0).unwrap(); // divide by 1
        a.write(LVT_TIMER, 0xec, 0).unwrap();
        a.write(TIMER_INIT, 1000, 5_000).unwrap(); // 1000 ns at 1 GHz
        assert_eq!(a.next_deadline(), Some(6_000));
        assert_eq!(a.read(TIMER_CUR, 5_500), Ok(500));
        a.tick(5_999);
        assert_eq!(a.pending(), None);
        a.tick(6_000);
        assert_eq!(a.pending(), Some(0xec));
        assert_eq!(a.next_deadline(), None);
        a.accept(0xec);
        assert_eq!(a.pending(), None);
        assert_eq!(a.read(ISR0 + 7, 0), Ok(1 << (0xec - 224)));
        a.write(EOI, 0, 0).unwrap();
        assert_eq!(a.read(ISR0 + 7, 0), Ok(0));
    }

    #[test]
    fn periodic_timer_and_divider() {
        let mut a = enabled();
        a.write(TIMER_DIV, 0b0011, 0).unwrap(); // divide by 16
        a.write(LVT_TIMER, (TIMER_PERIODIC | 0x30) as u64, 0)
            .unwrap();
        a.write(TIMER_INIT, 100, 0).unwrap(); // 1600 ns
        assert_eq!(a.next_deadline(), Some(1600));
        a.tick(5000); // late: no burst, the next edge after now
        assert_eq!(a.pending(), Some(0x30));
        assert_eq!(a.next_deadline(), Some(6400));
    }

    #[test]
    fn priorities_tpr_and_masking() {
        let mut a = enabled();
        a.raise(0x41);
        a.raise(0x80);
        assert_eq!(a.pending(), Some(0x80));
        a.accept(0x80);
        // 0x41 is in a lower priority class than the in-service 0x80
        assert_eq!(a.pending(), None);
        a.write(EOI, 0, 0).unwrap();
        assert_eq!(a.pending(), Some(0x41));
        a.write(TPR, 0x50, 0).unwrap();
        assert_eq!(a.pending(), None);
        // a masked timer raises nothing; a disabled APIC delivers nothing
        let mut b = Vlapic::new(0);
        b.raise(0x90);
        assert_eq!(b.pending(), None, "software-disabled APIC");
        let mut c = enabled();
        c.write(TIMER_INIT, 10, 0).unwrap();
        c.tick(1_000_000);
        assert_eq!(c.pending(), None, "masked LVT");
        // self IPI through the ICR and SELF_IPI
        assert_eq!(c.write(ICR, (1 << 18) | 0x55, 0), Ok(None));
        c.write(SELF_IPI, 0x66, 0).unwrap();
        assert_eq!(c.pending(), Some(0x66));
    }

    #[test]
    fn icr_ipis_to_other_vcpus() {
        let mut a = Vlapic::new(0);
        // Linux's INIT (level, assert), INIT de-assert, then SIPI to APIC 1.
        let init = a.write(ICR, (1u64 << 32) | 0xc500, 0).unwrap();
        assert_eq!(
            init,
            Some(Ipi::Init {
                dest: Dest::Physical(1)
            })
        );
        assert_eq!(
            a.write(ICR, (1u64 << 32) | 0x8500, 0).unwrap(),
            Some(Ipi::Ignored { mode: 5 })
        );
        let sipi = a.write(ICR, (1u64 << 32) | 0x0699, 0).unwrap();
        assert_eq!(
            sipi,
            Some(Ipi::Startup {
                dest: Dest::Physical(1),
                vector: 0x99
            })
        );
        // Fixed to another APIC, in logical cluster mode, and all-but-self.
        assert_eq!(
            a.write(ICR, (1u64 << 32) | 0x0800 | 0xfd, 0).unwrap(),
            Some(Ipi::Fixed {
                dest: Dest::Logical(1),
                vector: 0xfd
            })
        );
        assert_eq!(
            a.write(ICR, (3 << 18) | 0x40, 0).unwrap(),
            Some(Ipi::Fixed {
                dest: Dest::AllButSelf,
                vector: 0x40
            })
        );
        assert!(Dest::Logical(0x0000_0002).matches(1, 0));
        assert!(!Dest::Logical(0x0001_0002).matches(1, 0), "other cluster");
        assert!(Dest::Logical(0x0001_0001).matches(16, 0));
        assert!(Dest::AllButSelf.matches(1, 0) && !Dest::AllButSelf.matches(0, 0));
        assert!(Dest::Physical(u32::MAX).matches(5, 0), "broadcast");
    }
}
