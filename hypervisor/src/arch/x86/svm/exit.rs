//! Decoding a #VMEXIT into the neutral [`Exit`]: pure, host-tested.
//! (Exits the backend finishes itself, like EFER accesses or #DF, are
//! handled in `hw.rs` before this is consulted.)

use super::vmcb::exit;
use crate::hvm::vcpu::{Access, Exit};

/// What the VMCB says about an exit.
#[derive(Clone, Copy, Debug)]
pub struct RawExit {
    pub code: u64,
    pub info1: u64,
    pub info2: u64,
    pub rip: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
}

/// Maps an exit onto [`Exit`]. `len` gives the exiting instruction's length
/// (next-RIP or decoding) and is only called for exits that need it.
pub fn decode(r: &RawExit, len: impl FnOnce() -> u8) -> Exit {
    match r.code {
        // An SMI is intercepted (as KVM does) so that SMM is entered from
        // host context once keel sets GIF again, never inside guest mode.
        exit::INTR | exit::NMI | exit::SMI => Exit::ExternalInterrupt,
        exit::MONITOR | exit::MWAIT | exit::MWAIT_ARMED => Exit::MonitorMwait,
        exit::VINTR => Exit::InterruptWindow,
        exit::INIT => Exit::Init,
        exit::CPUID => Exit::Cpuid { len: len() },
        exit::HLT => Exit::Hlt { len: len() },
        exit::PAUSE => Exit::Pause { len: len() },
        exit::VMMCALL => Exit::Hypercall { len: len() },
        exit::XSETBV => Exit::Xsetbv { len: len() },
        exit::SHUTDOWN => Exit::TripleFault,
        exit::IOIO => {
            // EXITINFO1: bit 0 IN, bit 2 string, bit 3 REP, bits 4-6 size
            // (one-hot 8/16/32), bits 16-31 port. EXITINFO2: the next RIP.
            let size = match (r.info1 >> 4) & 7 {
                1 => 1,
                2 => 2,
                _ => 4,
            };
            Exit::Io {
                port: (r.info1 >> 16) as u16,
                size,
                write: r.info1 & 1 == 0,
                string: r.info1 & 4 != 0,
                rep: r.info1 & 8 != 0,
                len: r.info2.wrapping_sub(r.rip) as u8,
            }
        }
        exit::MSR => {
            let msr = r.rcx as u32;
            if r.info1 == 1 {
                let value = (r.rdx << 32) | (r.rax & 0xffff_ffff);
                Exit::MsrWrite {
                    msr,
                    value,
                    len: len(),
                }
            } else {
                Exit::MsrRead { msr, len: len() }
            }
        }
        exit::NPF => Exit::NestedPageFault {
            gpa: r.info2,
            // EXITINFO1 is a #PF-style error code: P, RW, US, RSV, ID.
            access: if r.info1 & 0x10 != 0 {
                Access::Execute
            } else if r.info1 & 2 != 0 {
                Access::Write
            } else {
                Access::Read
            },
            present: r.info1 & 1 != 0,
        },
        c if c & 0xffff_ffff == exit::INVALID_LOW32 => Exit::InvalidGuestState {
            detail:
                "VMRUN refused the VMCB (VMEXIT_INVALID); no named check failed in keel's pre-check",
            code: c,
        },
        c if (exit::EXCP_BASE..exit::EXCP_BASE + 32).contains(&c) => Exit::Exception {
            vector: (c - exit::EXCP_BASE) as u8,
            error_code: Some(r.info1 as u32),
        },
        c => Exit::Unhandled { reason: c },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(code: u64, info1: u64, info2: u64) -> RawExit {
        RawExit {
            code,
            info1,
            info2,
            rip: 0x1000,
            rax: 0x1122_3344_5566_7788,
            rcx: 0x4000_00f0,
            rdx: 0xaabb_ccdd,
        }
    }

    #[test]
    fn io_exits() {
        // out dx, al to 0x510 (next RIP 0x1001)
        assert_eq!(
            decode(&raw(0x7b, (0x510 << 16) | 0x10, 0x1001), || unreachable!()),
            Exit::Io {
                port: 0x510,
                size: 1,
                write: true,
                string: false,
                rep: false,
                len: 1
            }
        );
        // in eax, dx from 0x511
        assert_eq!(
            decode(
                &raw(0x7b, (0x511 << 16) | 0x40 | 1, 0x1002),
                || unreachable!()
            ),
            Exit::Io {
                port: 0x511,
                size: 4,
                write: false,
                string: false,
                rep: false,
                len: 2
            }
        );
        // rep outsw
        assert_eq!(
            decode(&raw(0x7b, (0x3f8 << 16) | 0x20 | 0xc, 0x1002), || 0),
            Exit::Io {
                port: 0x3f8,
                size: 2,
                write: true,
                string: true,
                rep: true,
                len: 2
            }
        );
    }

    #[test]
    fn msr_and_simple_exits() {
        assert_eq!(
            decode(&raw(0x7c, 0, 0), || 2),
            Exit::MsrRead {
                msr: 0x4000_00f0,
                len: 2
            }
        );
        assert_eq!(
            decode(&raw(0x7c, 1, 0), || 2),
            Exit::MsrWrite {
                msr: 0x4000_00f0,
                value: 0xaabb_ccdd_5566_7788,
                len: 2
            }
        );
        assert_eq!(decode(&raw(0x72, 0, 0), || 2), Exit::Cpuid { len: 2 });
        assert_eq!(decode(&raw(0x81, 0, 0), || 3), Exit::Hypercall { len: 3 });
        assert_eq!(decode(&raw(0x78, 0, 0), || 1), Exit::Hlt { len: 1 });
        assert_eq!(
            decode(&raw(0x7f, 0, 0), || unreachable!()),
            Exit::TripleFault
        );
        assert_eq!(
            decode(&raw(0x60, 0, 0), || unreachable!()),
            Exit::ExternalInterrupt
        );
        assert_eq!(
            decode(&raw(0x64, 0, 0), || unreachable!()),
            Exit::InterruptWindow
        );
    }

    #[test]
    fn nested_page_faults() {
        // The figures QEMU TCG reported in a probe: read 0x1_00000004, write 0x1_00000006.
        assert_eq!(
            decode(&raw(0x400, 0x1_0000_0004, 0x8000_0000), || unreachable!()),
            Exit::NestedPageFault {
                gpa: 0x8000_0000,
                access: Access::Read,
                present: false
            }
        );
        assert_eq!(
            decode(&raw(0x400, 0x1_0000_0006, 0x40_0000), || unreachable!()),
            Exit::NestedPageFault {
                gpa: 0x40_0000,
                access: Access::Write,
                present: false
            }
        );
        assert_eq!(
            decode(&raw(0x400, 0x2_0000_0015, 0x9000), || unreachable!()),
            Exit::NestedPageFault {
                gpa: 0x9000,
                access: Access::Execute,
                present: true
            }
        );
    }

    #[test]
    fn smi_and_mwait() {
        // An intercepted SMI is taken on the host after the exit.
        assert_eq!(
            decode(&raw(0x62, 0, 0), || unreachable!()),
            Exit::ExternalInterrupt
        );
        for code in [0x8a, 0x8b, 0x8c] {
            assert_eq!(
                decode(&raw(code, 0, 0), || unreachable!()),
                Exit::MonitorMwait
            );
        }
    }

    #[test]
    fn invalid_and_unknown() {
        // Real hardware stores -1; QEMU stores 0xffffffff.
        for code in [u64::MAX, 0xffff_ffff] {
            assert!(matches!(
                decode(&raw(code, 0, 0), || 0),
                Exit::InvalidGuestState { .. }
            ));
        }
        assert_eq!(
            decode(&raw(0x4e, 2, 0), || 0),
            Exit::Exception {
                vector: 14,
                error_code: Some(2)
            }
        );
        assert_eq!(
            decode(&raw(0x99, 0, 0), || 0),
            Exit::Unhandled { reason: 0x99 }
        );
    }
}
