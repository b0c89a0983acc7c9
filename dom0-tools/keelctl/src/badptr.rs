//! `keel-privcmd-badptr`'s plan and judge: every toolstack sub-op keel
//! implements, called from dom0's userspace through privcmd with each of
//! its pointers (the argument itself and every guest handle inside it)
//! made bad in each of the ways [`Kind`] lists, with the exact answer
//! keel must give (Xen 4.17's, where Xen has one; `docs/testing.md`).
//!
//! Pure: the binary provides a [`Target`] (its mappings and the privcmd
//! device) and this module decides what every call carries, where each
//! pointer goes and what must come back, so host tests check the plan.
//!
//! # What keel must answer
//!
//! privcmd makes the hypercall at CPL 0 with RFLAGS.AC set, so keel's
//! copies are supervisor accesses, as Xen's `copy_{to,from}_guest` for a
//! PVH domain (`hvm_copy_*_guest_linear` without `PFEC_user_mode`):
//!
//! - an unmapped user page, an unmapped kernel address, a non-canonical
//!   address, and a buffer that runs from a mapped page into an unmapped
//!   one: -EFAULT, whatever the direction;
//! - a read-only user page: fine to read (an input works), -EFAULT to
//!   write (an output);
//! - kernel text and read-only data (mapped, read-only): readable, so an
//!   input's bytes are used (`linux_banner`'s "Linux ve..." is no sysctl
//!   at interface version 0x15: -EACCES), and -EFAULT for an output (the
//!   kernel runs with CR0.WP);
//! - the kernel's direct map of one of this process's pages (mapped,
//!   writable, kernel-only): works both ways, as the user page itself.

use keel_xen_abi::arch_x86::{CpuidLeaf, MsrEntry};
use keel_xen_abi::domctl::{
    self as dctl, affinity, schedop, scheduler, CreateDomain, GetDomainInfo, GetVcpuInfo, MaxMem,
    MaxVcpus, SchedCredit, SchedOpU, SchedulerOp, SetDomainHandle, VcpuAffinity, XenDomctl,
};
use keel_xen_abi::sysctl::{
    self as sctl, cpu_policy, cpupool_op, featureset, perfcop, CpuFeatureset, CpuPolicy, CpuTopo,
    CpuTopoInfo, CpupoolOp, GetDomainInfoList, MemInfo, NumaInfo, PerfcDesc, PerfcOp, ReadConsole,
    SchedCreditParams, SchedulerOpU, XenSysctl,
};
use keel_xen_abi::version::{self as ver, BuildId, CompileInfo, FeatureInfo, PlatformParameters};
use keel_xen_abi::{hypercall, GuestHandle, Pod, XenctlBitmap};

/// A call's result: its value, or the errno of a negative one.
pub type Answer = Result<u64, i32>;

/// The number of cases [`plan`] makes (the scenarios look for it in the
/// summary line: `tests/harness`'s `PRIVCMD_BADPTR_CASES`).
pub const CASES: usize = 377;

/// What the hypervisor does with a pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Only reads it.
    In,
    /// Only writes it.
    Out,
    /// Reads it, then writes it back.
    InOut,
}

/// How a pointer is bad (or, for the last three, unusual but fine).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A user page mmap'ed then munmap'ed.
    UserUnmapped,
    /// The unmapped guard hole at the start of the kernel half.
    KernelUnmapped,
    /// The kernel's text (`_text`): mapped read-only. Only for outputs
    /// (what an input would read there is not known here).
    KernelText,
    /// The kernel's read-only data at `linux_banner` ("Linux version ...").
    KernelRodata,
    /// The value's first half at the end of a mapped page, the rest in
    /// the PROT_NONE page after it.
    Straddle,
    /// A good address with bit 63 set (bits 63:47 differ).
    NonCanonical,
    /// A PROT_READ user page holding the good value.
    ReadOnly,
    /// The kernel's direct map of the user page holding the good value.
    KernelDirect,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::UserUnmapped,
        Kind::KernelUnmapped,
        Kind::KernelText,
        Kind::KernelRodata,
        Kind::Straddle,
        Kind::NonCanonical,
        Kind::ReadOnly,
        Kind::KernelDirect,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::UserUnmapped => "user-unmapped",
            Kind::KernelUnmapped => "kernel-unmapped",
            Kind::KernelText => "kernel-text",
            Kind::KernelRodata => "kernel-rodata",
            Kind::Straddle => "straddle",
            Kind::NonCanonical => "non-canonical",
            Kind::ReadOnly => "read-only",
            Kind::KernelDirect => "kernel-direct-map",
        }
    }
}

/// The first bytes of `linux_banner`, where [`Kind::KernelRodata`] points.
pub const RODATA_BYTES: &[u8; 8] = b"Linux ve";

/// One pointer of a call: slot 0 is the hypercall's argument, the others
/// the guest handles inside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub name: &'static str,
    pub dir: Dir,
    /// Bytes the hypervisor reads or writes there.
    pub len: usize,
}

/// What the calls need to know of the machine (from good calls first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Env {
    /// CPUs keel runs on (physinfo).
    pub ncpus: u32,
    /// dom0's vCPU 0's hard affinity as getvcpuaffinity gave it
    /// ([`CPUMAP_BYTES`]): setvcpuaffinity sets it again.
    pub hard: Vec<u8>,
    /// dom0's handle (xen_version guest_handle): setdomainhandle sets it again.
    pub handle: [u8; 16],
    /// Words in the host's featureset (get_cpu_featureset).
    pub featureset_words: u32,
    /// CPUID leaves and MSRs in the host's policy (get_cpu_policy).
    pub policy_leaves: u32,
    pub policy_msrs: u32,
    /// The credit scheduler's pool parameters (sysctl scheduler_op get):
    /// the put sets them again.
    pub credit: SchedCreditParams,
    /// keel's performance counters and their values (perfc_op query).
    pub perfc_counters: u32,
    pub perfc_vals: u32,
    /// dom0's maximum memory, KiB (getdomaininfo): max_mem sets it again.
    pub max_memkb: u64,
}

impl Env {
    /// What holds until good calls tell more: room enough in every buffer
    /// (the answers then say how much was used).
    pub fn initial() -> Env {
        Env {
            ncpus: 1,
            hard: vec![0xff; CPUMAP_BYTES],
            handle: [0; 16],
            featureset_words: 64,
            policy_leaves: (4096 / CpuidLeaf::SIZE) as u32,
            policy_msrs: 16,
            credit: SchedCreditParams::zeroed(),
            perfc_counters: 1,
            perfc_vals: 1,
            max_memkb: 0,
        }
    }
}

/// Bytes of every CPU bitmap passed (512 CPUs).
pub const CPUMAP_BYTES: usize = 64;
/// Console bytes asked for (the ring holds more by the time dom0 runs).
pub const CONSOLE_COUNT: u32 = 256;
/// What an output buffer holds before a call.
pub const CANARY: u8 = 0xa5;

/// Every sub-op keel implements that takes a pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    ReadConsole,
    PhysInfo,
    SchedId,
    GetDomainInfoList,
    CpupoolInfo,
    CpupoolFreeInfo,
    NumaInfo,
    CpuTopoInfo,
    CpuFeatureset,
    CpuPolicy,
    SysctlSchedGet,
    SysctlSchedPut,
    PerfcQuery,
    GetDomainInfo,
    GetVcpuInfo,
    GetVcpuAffinity,
    SetVcpuAffinity,
    SchedGet,
    SchedPut,
    SetDomainHandle,
    PauseDomain,
    UnpauseDomain,
    /// With a config keel refuses once read (flags 0: PV): the program
    /// makes no domain it would have to clean up.
    CreateDomain,
    DestroyDomain,
    MaxVcpus,
    MaxMem,
    /// A `xen_version` sub-op with a buffer.
    Version(u32),
}

pub const OPS: [Op; 35] = [
    Op::ReadConsole,
    Op::PhysInfo,
    Op::SchedId,
    Op::GetDomainInfoList,
    Op::CpupoolInfo,
    Op::CpupoolFreeInfo,
    Op::NumaInfo,
    Op::CpuTopoInfo,
    Op::CpuFeatureset,
    Op::CpuPolicy,
    Op::SysctlSchedGet,
    Op::SysctlSchedPut,
    Op::PerfcQuery,
    Op::GetDomainInfo,
    Op::GetVcpuInfo,
    Op::GetVcpuAffinity,
    Op::SetVcpuAffinity,
    Op::SchedGet,
    Op::SchedPut,
    Op::SetDomainHandle,
    Op::PauseDomain,
    Op::UnpauseDomain,
    Op::CreateDomain,
    Op::DestroyDomain,
    Op::MaxVcpus,
    Op::MaxMem,
    Op::Version(ver::EXTRAVERSION),
    Op::Version(ver::COMPILE_INFO),
    Op::Version(ver::CAPABILITIES),
    Op::Version(ver::CHANGESET),
    Op::Version(ver::PLATFORM_PARAMETERS),
    Op::Version(ver::GET_FEATURES),
    Op::Version(ver::GUEST_HANDLE),
    Op::Version(ver::COMMANDLINE),
    Op::Version(ver::BUILD_ID),
];

fn enc<T: Pod>(v: &T) -> Vec<u8> {
    let mut b = vec![0u8; T::SIZE];
    v.write_to(&mut b).expect("sized for T");
    b
}

fn slot(name: &'static str, dir: Dir, len: usize) -> Slot {
    Slot { name, dir, len }
}

fn bitmap(addr: u64) -> XenctlBitmap {
    XenctlBitmap {
        bitmap: GuestHandle::new(addr),
        nr_bits: (CPUMAP_BYTES * 8) as u32,
    }
}

/// The CPUs keel runs on, as a mask (below 64).
fn all_cpus(env: &Env) -> u64 {
    if env.ncpus >= 64 {
        u64::MAX
    } else {
        (1u64 << env.ncpus) - 1
    }
}

impl Op {
    pub fn name(self) -> String {
        match self {
            Op::ReadConsole => "sysctl readconsole".into(),
            Op::PhysInfo => "sysctl physinfo".into(),
            Op::SchedId => "sysctl sched_id".into(),
            Op::GetDomainInfoList => "sysctl getdomaininfolist".into(),
            Op::CpupoolInfo => "sysctl cpupool_op INFO".into(),
            Op::CpupoolFreeInfo => "sysctl cpupool_op FREEINFO".into(),
            Op::NumaInfo => "sysctl numainfo".into(),
            Op::CpuTopoInfo => "sysctl cputopoinfo".into(),
            Op::CpuFeatureset => "sysctl get_cpu_featureset".into(),
            Op::CpuPolicy => "sysctl get_cpu_policy".into(),
            Op::SysctlSchedGet => "sysctl scheduler_op getinfo".into(),
            Op::SysctlSchedPut => "sysctl scheduler_op putinfo".into(),
            Op::PerfcQuery => "sysctl perfc_op query".into(),
            Op::CreateDomain => "domctl createdomain".into(),
            Op::DestroyDomain => "domctl destroydomain".into(),
            Op::MaxVcpus => "domctl max_vcpus".into(),
            Op::MaxMem => "domctl max_mem".into(),
            Op::GetDomainInfo => "domctl getdomaininfo".into(),
            Op::GetVcpuInfo => "domctl getvcpuinfo".into(),
            Op::GetVcpuAffinity => "domctl getvcpuaffinity".into(),
            Op::SetVcpuAffinity => "domctl setvcpuaffinity".into(),
            Op::SchedGet => "domctl scheduler_op getinfo".into(),
            Op::SchedPut => "domctl scheduler_op putinfo".into(),
            Op::SetDomainHandle => "domctl setdomainhandle".into(),
            Op::PauseDomain => "domctl pausedomain".into(),
            Op::UnpauseDomain => "domctl unpausedomain".into(),
            Op::Version(c) => format!(
                "xen_version {}",
                match c {
                    ver::EXTRAVERSION => "extraversion",
                    ver::COMPILE_INFO => "compile_info",
                    ver::CAPABILITIES => "capabilities",
                    ver::CHANGESET => "changeset",
                    ver::PLATFORM_PARAMETERS => "platform_parameters",
                    ver::GET_FEATURES => "get_features",
                    ver::GUEST_HANDLE => "guest_handle",
                    ver::COMMANDLINE => "commandline",
                    ver::BUILD_ID => "build_id",
                    _ => "?",
                }
            ),
        }
    }

    fn is_sysctl(self) -> bool {
        matches!(
            self,
            Op::ReadConsole
                | Op::PhysInfo
                | Op::SchedId
                | Op::GetDomainInfoList
                | Op::CpupoolInfo
                | Op::CpupoolFreeInfo
                | Op::NumaInfo
                | Op::CpuTopoInfo
                | Op::CpuFeatureset
                | Op::CpuPolicy
                | Op::SysctlSchedGet
                | Op::SysctlSchedPut
                | Op::PerfcQuery
        )
    }

    /// The hypercall number and the arguments before the pointer.
    pub fn call(self) -> (u64, Vec<u64>) {
        match self {
            Op::Version(c) => (hypercall::XEN_VERSION, vec![c as u64]),
            o if o.is_sysctl() => (hypercall::SYSCTL, vec![]),
            _ => (hypercall::DOMCTL, vec![]),
        }
    }

    /// The pointers the call carries: the argument, then its handles.
    pub fn slots(self, env: &Env) -> Vec<Slot> {
        // A sysctl is always copied back; a domctl only by the getters
        // (as Xen's `copyback`); getvcpuaffinity writes its bitmaps alone.
        let sys = slot("arg", Dir::InOut, XenSysctl::SIZE);
        let dom = |dir| slot("arg", dir, XenDomctl::SIZE);
        let map = |name, dir| slot(name, dir, CPUMAP_BYTES);
        match self {
            Op::ReadConsole => vec![sys, slot("buffer", Dir::Out, CONSOLE_COUNT as usize)],
            Op::PhysInfo | Op::SchedId | Op::SysctlSchedGet | Op::SysctlSchedPut => vec![sys],
            Op::CpuFeatureset => vec![
                sys,
                slot("features", Dir::Out, 4 * env.featureset_words as usize),
            ],
            Op::PerfcQuery => vec![
                sys,
                slot(
                    "desc",
                    Dir::Out,
                    PerfcDesc::SIZE * env.perfc_counters as usize,
                ),
                slot("val", Dir::Out, 4 * env.perfc_vals as usize),
            ],
            Op::CpuPolicy => vec![
                sys,
                slot(
                    "leaves",
                    Dir::Out,
                    CpuidLeaf::SIZE * env.policy_leaves as usize,
                ),
                slot("msrs", Dir::Out, MsrEntry::SIZE * env.policy_msrs as usize),
            ],
            Op::GetDomainInfoList => vec![sys, slot("buffer", Dir::Out, GetDomainInfo::SIZE)],
            Op::CpupoolInfo | Op::CpupoolFreeInfo => vec![sys, map("cpumap", Dir::Out)],
            Op::NumaInfo => vec![
                sys,
                slot("meminfo", Dir::Out, MemInfo::SIZE),
                slot("distance", Dir::Out, 4),
            ],
            Op::CpuTopoInfo => vec![
                sys,
                slot("cputopo", Dir::Out, CpuTopo::SIZE * env.ncpus as usize),
            ],
            Op::GetDomainInfo | Op::GetVcpuInfo | Op::SchedGet => vec![dom(Dir::InOut)],
            Op::GetVcpuAffinity => vec![
                dom(Dir::In),
                map("cpumap_hard", Dir::Out),
                map("cpumap_soft", Dir::Out),
            ],
            Op::SetVcpuAffinity => vec![
                dom(Dir::In),
                map("cpumap_hard", Dir::InOut),
                map("cpumap_soft", Dir::InOut),
            ],
            // createdomain copies back (the new id) only after it made one.
            Op::SchedPut
            | Op::SetDomainHandle
            | Op::PauseDomain
            | Op::UnpauseDomain
            | Op::CreateDomain
            | Op::DestroyDomain
            | Op::MaxVcpus
            | Op::MaxMem => vec![dom(Dir::In)],
            Op::Version(c) => vec![match c {
                ver::EXTRAVERSION => slot("arg", Dir::Out, ver::EXTRAVERSION_LEN),
                ver::COMPILE_INFO => slot("arg", Dir::Out, CompileInfo::SIZE),
                ver::CAPABILITIES => slot("arg", Dir::Out, ver::CAPABILITIES_INFO_LEN),
                ver::CHANGESET => slot("arg", Dir::Out, ver::CHANGESET_INFO_LEN),
                ver::PLATFORM_PARAMETERS => slot("arg", Dir::Out, PlatformParameters::SIZE),
                ver::GET_FEATURES => slot("arg", Dir::InOut, FeatureInfo::SIZE),
                ver::GUEST_HANDLE => slot("arg", Dir::Out, 16),
                ver::COMMANDLINE => slot("arg", Dir::Out, 1024),
                // The header (its `len`): keel has no build id to write.
                ver::BUILD_ID => slot("arg", Dir::In, BuildId::SIZE),
                _ => unreachable!("not in OPS"),
            }],
        }
    }

    /// The bytes each slot holds before the call, given where the slots
    /// are (`addrs[i]` for slot `i`): outputs hold [`CANARY`].
    pub fn image(self, env: &Env, addrs: &[u64]) -> Vec<Vec<u8>> {
        let slots = self.slots(env);
        assert_eq!(addrs.len(), slots.len());
        let h = |i: usize| addrs[i];
        let sys = |cmd, arg: Vec<u8>| {
            let mut s = XenSysctl::new(cmd, &0u8);
            s.u = sctl::SysctlU::from_prefix(&{
                let mut u = arg;
                u.resize(sctl::SysctlU::SIZE, 0);
                u
            })
            .expect("128 bytes");
            enc(&s)
        };
        let dom = |cmd, arg: Vec<u8>| {
            let mut d = XenDomctl::without_arg(cmd, 0);
            d.u = dctl::DomctlU::from_prefix(&{
                let mut u = arg;
                u.resize(dctl::DomctlU::SIZE, 0);
                u
            })
            .expect("128 bytes");
            enc(&d)
        };
        let arg = match self {
            Op::ReadConsole => sys(
                sctl::op::READCONSOLE,
                enc(&ReadConsole {
                    clear: 0,
                    incremental: 0,
                    pad0: 0,
                    pad1: 0,
                    index: 0,
                    buffer: GuestHandle::new(h(1)),
                    count: CONSOLE_COUNT,
                }),
            ),
            Op::PhysInfo => sys(sctl::op::PHYSINFO, vec![CANARY; 128]),
            Op::SchedId => sys(sctl::op::SCHED_ID, vec![CANARY; 128]),
            Op::GetDomainInfoList => sys(
                sctl::op::GETDOMAININFOLIST,
                enc(&GetDomainInfoList {
                    first_domain: 0,
                    max_domains: 1,
                    buffer: GuestHandle::new(h(1)),
                    num_domains: 0,
                }),
            ),
            Op::CpupoolInfo | Op::CpupoolFreeInfo => sys(
                sctl::op::CPUPOOL_OP,
                enc(&CpupoolOp {
                    op: if self == Op::CpupoolInfo {
                        cpupool_op::INFO
                    } else {
                        cpupool_op::FREEINFO
                    },
                    cpupool_id: 0,
                    sched_id: 0,
                    domid: 0,
                    cpu: 0,
                    n_dom: 0,
                    cpumap: bitmap(h(1)),
                }),
            ),
            Op::NumaInfo => sys(
                sctl::op::NUMAINFO,
                enc(&NumaInfo {
                    num_nodes: 1,
                    meminfo: GuestHandle::new(h(1)),
                    distance: GuestHandle::new(h(2)),
                }),
            ),
            Op::CpuTopoInfo => sys(
                sctl::op::CPUTOPOINFO,
                enc(&CpuTopoInfo {
                    num_cpus: env.ncpus,
                    cputopo: GuestHandle::new(h(1)),
                }),
            ),
            Op::CpuFeatureset => sys(
                sctl::op::GET_CPU_FEATURESET,
                enc(&CpuFeatureset {
                    index: featureset::HOST,
                    nr_features: env.featureset_words,
                    features: GuestHandle::new(h(1)),
                }),
            ),
            Op::CpuPolicy => sys(
                sctl::op::GET_CPU_POLICY,
                enc(&CpuPolicy {
                    index: cpu_policy::HOST,
                    nr_leaves: env.policy_leaves,
                    nr_msrs: env.policy_msrs,
                    rsvd: 0,
                    leaves: GuestHandle::new(h(1)),
                    msrs: GuestHandle::new(h(2)),
                }),
            ),
            Op::SysctlSchedGet | Op::SysctlSchedPut => sys(
                sctl::op::SCHEDULER_OP,
                enc(&sctl::SchedulerOp {
                    cpupool_id: 0,
                    sched_id: scheduler::CREDIT,
                    cmd: if self == Op::SysctlSchedGet {
                        schedop::GETINFO
                    } else {
                        schedop::PUTINFO
                    },
                    // Put: the parameters a get gave (keel's are fixed).
                    u: SchedulerOpU::new(&env.credit),
                }),
            ),
            Op::GetDomainInfo => dom(dctl::op::GETDOMAININFO, vec![CANARY; 128]),
            Op::GetVcpuInfo => dom(
                dctl::op::GETVCPUINFO,
                enc(&GetVcpuInfo {
                    vcpu: 0,
                    ..GetVcpuInfo::zeroed()
                }),
            ),
            Op::GetVcpuAffinity | Op::SetVcpuAffinity => dom(
                if self == Op::GetVcpuAffinity {
                    dctl::op::GETVCPUAFFINITY
                } else {
                    dctl::op::SETVCPUAFFINITY
                },
                enc(&VcpuAffinity {
                    vcpu: 0,
                    flags: affinity::HARD | affinity::SOFT,
                    cpumap_hard: bitmap(h(1)),
                    cpumap_soft: bitmap(h(2)),
                }),
            ),
            Op::SchedGet | Op::SchedPut => dom(
                dctl::op::SCHEDULER_OP,
                enc(&SchedulerOp {
                    sched_id: scheduler::CREDIT,
                    cmd: if self == Op::SchedGet {
                        schedop::GETINFO
                    } else {
                        schedop::PUTINFO
                    },
                    // Put: weight 0 and cap 0xffff change nothing.
                    u: SchedOpU::new(&SchedCredit {
                        weight: 0,
                        cap: u16::MAX,
                    }),
                }),
            ),
            Op::SetDomainHandle => dom(
                dctl::op::SETDOMAINHANDLE,
                enc(&SetDomainHandle { handle: env.handle }),
            ),
            Op::PerfcQuery => sys(
                sctl::op::PERFC_OP,
                enc(&PerfcOp {
                    cmd: perfcop::QUERY,
                    nr_counters: 0,
                    nr_vals: 0,
                    desc: GuestHandle::new(h(1)),
                    val: GuestHandle::new(h(2)),
                }),
            ),
            Op::CreateDomain => dom(
                dctl::op::CREATEDOMAIN,
                enc(&CreateDomain {
                    max_vcpus: 1,
                    grant_opts: 1,
                    ..CreateDomain::zeroed()
                }),
            ),
            Op::DestroyDomain => dom(dctl::op::DESTROYDOMAIN, vec![]),
            Op::MaxVcpus => dom(dctl::op::MAX_VCPUS, enc(&MaxVcpus { max: 0 })),
            Op::MaxMem => dom(
                dctl::op::MAX_MEM,
                enc(&MaxMem {
                    max_memkb: env.max_memkb,
                }),
            ),
            Op::PauseDomain => dom(dctl::op::PAUSEDOMAIN, vec![]),
            Op::UnpauseDomain => dom(dctl::op::UNPAUSEDOMAIN, vec![]),
            Op::Version(ver::GET_FEATURES) => enc(&FeatureInfo {
                submap_idx: 0,
                submap: u32::from_le_bytes([CANARY; 4]),
            }),
            Op::Version(ver::BUILD_ID) => enc(&BuildId { len: 64 }),
            Op::Version(_) => vec![CANARY; slots[0].len],
        };
        let mut out = vec![arg];
        for s in &slots[1..] {
            out.push(match (self, s.dir) {
                (Op::SetVcpuAffinity, _) if s.name == "cpumap_hard" => env.hard.clone(),
                (Op::SetVcpuAffinity, _) => vec![0xff; CPUMAP_BYTES],
                _ => vec![CANARY; s.len],
            });
        }
        out
    }

    /// What the call answers with every pointer good.
    pub fn good(self) -> Answer {
        match self {
            // dom0 is the caller: it may not pause, destroy or size
            // itself, and it is not paused (as Xen: -EINVAL all).
            Op::PauseDomain | Op::UnpauseDomain | Op::DestroyDomain | Op::MaxVcpus => {
                Err(libc::EINVAL)
            }
            // A PV domain (no HVM and HAP flags): keel runs none.
            Op::CreateDomain => Err(libc::EOPNOTSUPP),
            Op::Version(ver::BUILD_ID) => Err(libc::ENODATA),
            _ => Ok(0),
        }
    }

    /// What the call answers when slot `i`, an input, is read from
    /// `linux_banner` ([`RODATA_BYTES`], then more of the banner).
    fn on_rodata(self, env: &Env, i: usize) -> Answer {
        match (self, i) {
            // Read, then the copy back into rodata fails.
            (Op::Version(ver::GET_FEATURES), 0) => Err(libc::EFAULT),
            // Read: its `len` ("Linu") is not 0; keel has no build id.
            (Op::Version(ver::BUILD_ID), 0) => Err(libc::ENODATA),
            // A sysctl or domctl read: "x ve" is no interface version 0x15.
            (_, 0) => Err(libc::EACCES),
            // The soft map (read first) is "Linux ve" & the CPUs: CPU 0
            // ('L' is 0x4c) is missing, and keel has no narrower soft
            // affinity than every CPU.
            (Op::SetVcpuAffinity, 2) => Err(libc::EOPNOTSUPP),
            // The hard map: no CPU is -EINVAL; else the vCPU is pinned
            // there (the next good call pins it back) and the copy back
            // into rodata fails.
            (Op::SetVcpuAffinity, 1) => {
                if u64::from_le_bytes(*RODATA_BYTES) & all_cpus(env) == 0 {
                    Err(libc::EINVAL)
                } else {
                    Err(libc::EFAULT)
                }
            }
            _ => unreachable!("{} has no input slot {i}", self.name()),
        }
    }
}

/// One call: `op` with slot `bad.0` made bad as `bad.1` (all good if none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Case {
    pub op: Op,
    pub bad: Option<(usize, Kind)>,
}

impl Case {
    pub fn name(&self, env: &Env) -> String {
        match self.bad {
            None => format!("{} (good)", self.op.name()),
            Some((i, k)) => format!(
                "{} {} {}",
                self.op.name(),
                self.op.slots(env)[i].name,
                k.name()
            ),
        }
    }

    /// The answer the case must get.
    pub fn expect(&self, env: &Env) -> Answer {
        let Some((i, kind)) = self.bad else {
            return self.op.good();
        };
        let dir = self.op.slots(env)[i].dir;
        match kind {
            Kind::UserUnmapped
            | Kind::KernelUnmapped
            | Kind::KernelText
            | Kind::Straddle
            | Kind::NonCanonical => Err(libc::EFAULT),
            Kind::KernelRodata if dir == Dir::Out => Err(libc::EFAULT),
            Kind::KernelRodata => self.op.on_rodata(env, i),
            Kind::ReadOnly if dir == Dir::In => self.op.good(),
            Kind::ReadOnly => Err(libc::EFAULT),
            Kind::KernelDirect => self.op.good(),
        }
    }
}

/// Every case: each op, each of its pointers, each kind that applies.
pub fn plan(env: &Env) -> Vec<Case> {
    let mut v = Vec::new();
    for op in OPS {
        for (i, s) in op.slots(env).iter().enumerate() {
            for k in Kind::ALL {
                if k == Kind::KernelText && s.dir != Dir::Out {
                    continue;
                }
                // The counter values (19 x 64 u32s) span two pages, and
                // this process's pages are not contiguous in the direct map.
                if k == Kind::KernelDirect && op == Op::PerfcQuery && s.name == "val" {
                    continue;
                }
                v.push(Case {
                    op,
                    bad: Some((i, k)),
                });
            }
        }
    }
    v
}

/// Where the calls' bytes go, and the hypervisor.
pub trait Target {
    /// The address to pass for slot `slot` (`len` bytes) placed as `kind`
    /// (`None`: a good, writable user page).
    fn addr(&mut self, slot: usize, kind: Option<Kind>, len: usize) -> u64;
    /// Puts `bytes` where [`Target::addr`] pointed for the same arguments
    /// (what of them can be put there).
    fn fill(&mut self, slot: usize, kind: Option<Kind>, bytes: &[u8]);
    /// The `len` bytes at slot `slot` placed as `kind` after the call, as
    /// this process sees them (`None` where it cannot see them).
    fn read(&mut self, slot: usize, kind: Option<Kind>, len: usize) -> Option<Vec<u8>>;
    fn hypercall(&mut self, nr: u64, args: [u64; 5]) -> Answer;
}

/// What a case got and whether that is right.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub got: Answer,
    pub want: Answer,
    /// Why it is wrong even with the right answer.
    pub note: Option<String>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.got == self.want && self.note.is_none()
    }
}

/// "0" or "-EFAULT (-14)".
pub fn answer_text(a: Answer) -> String {
    match a {
        Ok(v) => format!("{v}"),
        Err(e) => {
            let n = match e {
                libc::EPERM => "EPERM",
                libc::EFAULT => "EFAULT",
                libc::EINVAL => "EINVAL",
                libc::EACCES => "EACCES",
                libc::ENOSYS => "ENOSYS",
                libc::ENODATA => "ENODATA",
                libc::ENOBUFS => "ENOBUFS",
                libc::EOPNOTSUPP => "EOPNOTSUPP",
                libc::ESRCH => "ESRCH",
                _ => "",
            };
            format!("-{n} (-{e})")
        }
    }
}

/// Makes the call of `case` and judges it. A good output through the
/// kernel's direct map must also have landed in the user page.
pub fn run<T: Target>(t: &mut T, env: &Env, case: &Case) -> Outcome {
    let slots = case.op.slots(env);
    let kind = |i: usize| case.bad.filter(|b| b.0 == i).map(|b| b.1);
    let addrs: Vec<u64> = (0..slots.len())
        .map(|i| t.addr(i, kind(i), slots[i].len))
        .collect();
    let image = case.op.image(env, &addrs);
    for (i, b) in image.iter().enumerate() {
        t.fill(i, kind(i), b);
    }
    let (nr, pre) = case.op.call();
    let mut args = [0u64; 5];
    args[..pre.len()].copy_from_slice(&pre);
    args[pre.len()] = addrs[0];
    let got = t.hypercall(nr, args);
    let want = case.expect(env);
    let mut note = None;
    if let Some((i, Kind::KernelDirect)) = case.bad {
        if got.is_ok() && slots[i].dir == Dir::Out {
            match t.read(i, Some(Kind::KernelDirect), slots[i].len) {
                Some(b) if b.iter().all(|&c| c == CANARY) => {
                    note = Some("the output did not reach the page behind the direct map".into())
                }
                Some(_) => {}
                None => note = Some("cannot read the page behind the direct map".into()),
            }
        }
    }
    Outcome { got, want, note }
}

/// The line printed for a case that went wrong.
pub fn failure_line(env: &Env, case: &Case, o: &Outcome) -> String {
    format!(
        "KEEL-LINUX: privcmd-badptr: FAIL {}: got {}, want {}{}",
        case.name(env),
        answer_text(o.got),
        answer_text(o.want),
        o.note
            .as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default()
    )
}

/// The summary line: `cases` calls with bad pointers, `good` of them as
/// expected, then the good calls after them.
pub fn summary_line(cases: usize, expected: usize, after: usize, after_ok: usize) -> String {
    format!(
        "KEEL-LINUX: privcmd-badptr: {cases} cases, {expected} as expected; good calls after: {after}, {after_ok} as expected"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(ncpus: u32) -> Env {
        Env {
            ncpus,
            handle: [7; 16],
            featureset_words: 17,
            policy_leaves: 120,
            policy_msrs: 2,
            ..Env::initial()
        }
    }

    #[test]
    fn every_pointer_of_every_op_gets_every_kind() {
        let e = env(2);
        let p = plan(&e);
        assert_eq!(p.len(), CASES);
        // The count does not depend on the machine.
        assert_eq!(plan(&env(4)).len(), CASES);
        for op in OPS {
            let slots = op.slots(&e);
            for (i, s) in slots.iter().enumerate() {
                for k in Kind::ALL {
                    let n = p
                        .iter()
                        .filter(|c| c.op == op && c.bad == Some((i, k)))
                        .count();
                    let want = usize::from(
                        (k != Kind::KernelText || s.dir == Dir::Out)
                            && (k != Kind::KernelDirect || s.name != "val"),
                    );
                    assert_eq!(n, want, "{} {} {}", op.name(), s.name, k.name());
                }
            }
        }
        // Nested handles: every handle field of the sub-ops that have them.
        let names = |op: Op| -> Vec<&str> { op.slots(&e).iter().map(|s| s.name).collect() };
        assert_eq!(names(Op::NumaInfo), ["arg", "meminfo", "distance"]);
        assert_eq!(
            names(Op::SetVcpuAffinity),
            ["arg", "cpumap_hard", "cpumap_soft"]
        );
        assert_eq!(names(Op::ReadConsole), ["arg", "buffer"]);
        assert_eq!(names(Op::CpuPolicy), ["arg", "leaves", "msrs"]);
        assert_eq!(names(Op::CpuFeatureset), ["arg", "features"]);
    }

    #[test]
    fn images_point_at_the_slots() {
        let e = env(2);
        let addrs = [0x1000, 0x2000, 0x3000];
        let img = Op::NumaInfo.image(&e, &addrs);
        let s = XenSysctl::from_bytes(&img[0]).unwrap();
        assert_eq!(s.cmd, sctl::op::NUMAINFO);
        assert!(s.version_ok());
        let n: NumaInfo = s.op();
        assert_eq!(
            (n.num_nodes, n.meminfo.addr(), n.distance.addr()),
            (1, 0x2000, 0x3000)
        );
        assert_eq!(img[1], [CANARY; 16]);
        let img = Op::SetVcpuAffinity.image(&e, &addrs);
        let d = XenDomctl::from_bytes(&img[0]).unwrap();
        assert_eq!(d.cmd, dctl::op::SETVCPUAFFINITY);
        assert!(d.version_ok());
        let a: VcpuAffinity = d.op();
        assert_eq!(a.cpumap_hard.bitmap.addr(), 0x2000);
        assert_eq!(a.cpumap_soft.bitmap.addr(), 0x3000);
        assert_eq!(a.cpumap_hard.nr_bits, 512);
        assert_eq!(img[1], e.hard);
        let img = Op::ReadConsole.image(&e, &addrs[..2]);
        let r: ReadConsole = XenSysctl::from_bytes(&img[0]).unwrap().op();
        assert_eq!((r.buffer.addr(), r.count, r.clear), (0x2000, 256, 0));
        assert_eq!(img[1].len(), 256);
        // Every slot's bytes are as long as the slot.
        for op in OPS {
            let slots = op.slots(&e);
            let img = op.image(&e, &addrs[..slots.len()]);
            for (s, b) in slots.iter().zip(&img) {
                assert_eq!(s.len, b.len(), "{} {}", op.name(), s.name);
            }
        }
        let img = Op::CpuPolicy.image(&e, &addrs);
        let cp: CpuPolicy = XenSysctl::from_bytes(&img[0]).unwrap().op();
        assert_eq!(
            (cp.nr_leaves, cp.nr_msrs, cp.leaves.addr(), cp.msrs.addr()),
            (120, 2, 0x2000, 0x3000)
        );
        assert_eq!(img[1].len(), 120 * 24);
        let img = Op::CpuFeatureset.image(&e, &addrs[..2]);
        let fs: CpuFeatureset = XenSysctl::from_bytes(&img[0]).unwrap().op();
        assert_eq!((fs.nr_features, fs.features.addr()), (17, 0x2000));
        let e2 = Env {
            credit: SchedCreditParams {
                tslice_ms: 30,
                ratelimit_us: 1000,
                vcpu_migr_delay_us: 0,
            },
            ..e.clone()
        };
        let img = Op::SysctlSchedPut.image(&e2, &addrs[..1]);
        let so: sctl::SchedulerOp = XenSysctl::from_bytes(&img[0]).unwrap().op();
        assert_eq!(so.cmd, schedop::PUTINFO);
        assert_eq!(so.u.get::<SchedCreditParams>(), e2.credit);
        let put = Op::SchedPut.image(&e, &addrs[..1]);
        let so: SchedulerOp = XenDomctl::from_bytes(&put[0]).unwrap().op();
        let c: SchedCredit = so.u.get();
        assert_eq!((so.cmd, c.weight, c.cap), (schedop::PUTINFO, 0, 0xffff));
    }

    #[test]
    fn what_each_kind_must_get() {
        let e = env(2);
        let case = |op, i, k| Case {
            op,
            bad: Some((i, k)),
        };
        let ex = |op, i, k| case(op, i, k).expect(&e);
        for k in [
            Kind::UserUnmapped,
            Kind::KernelUnmapped,
            Kind::Straddle,
            Kind::NonCanonical,
        ] {
            for op in OPS {
                for i in 0..op.slots(&e).len() {
                    assert_eq!(ex(op, i, k), Err(libc::EFAULT));
                }
            }
        }
        // Read-only: an input works, an output (or a copy back) does not.
        assert_eq!(ex(Op::SchedPut, 0, Kind::ReadOnly), Ok(0));
        assert_eq!(ex(Op::GetVcpuAffinity, 0, Kind::ReadOnly), Ok(0));
        assert_eq!(ex(Op::PauseDomain, 0, Kind::ReadOnly), Err(libc::EINVAL));
        assert_eq!(
            ex(Op::Version(ver::BUILD_ID), 0, Kind::ReadOnly),
            Err(libc::ENODATA)
        );
        assert_eq!(ex(Op::PhysInfo, 0, Kind::ReadOnly), Err(libc::EFAULT));
        assert_eq!(ex(Op::GetDomainInfo, 0, Kind::ReadOnly), Err(libc::EFAULT));
        assert_eq!(
            ex(Op::SetVcpuAffinity, 1, Kind::ReadOnly),
            Err(libc::EFAULT)
        );
        // Kernel read-only data: read, and its bytes are no valid struct.
        assert_eq!(ex(Op::PhysInfo, 0, Kind::KernelRodata), Err(libc::EACCES));
        assert_eq!(ex(Op::SchedPut, 0, Kind::KernelRodata), Err(libc::EACCES));
        assert_eq!(
            ex(Op::Version(ver::GET_FEATURES), 0, Kind::KernelRodata),
            Err(libc::EFAULT)
        );
        assert_eq!(
            ex(Op::ReadConsole, 1, Kind::KernelRodata),
            Err(libc::EFAULT)
        );
        assert_eq!(
            ex(Op::SetVcpuAffinity, 2, Kind::KernelRodata),
            Err(libc::EOPNOTSUPP)
        );
        // 'L' (0x4c) names no CPU of two, CPUs 2 and 3 of four.
        assert_eq!(
            ex(Op::SetVcpuAffinity, 1, Kind::KernelRodata),
            Err(libc::EINVAL)
        );
        assert_eq!(
            case(Op::SetVcpuAffinity, 1, Kind::KernelRodata).expect(&env(4)),
            Err(libc::EFAULT)
        );
        // The direct map: as the user page.
        for op in OPS {
            for i in 0..op.slots(&e).len() {
                assert_eq!(ex(op, i, Kind::KernelDirect), op.good());
            }
        }
        assert_eq!(
            ex(Op::Version(ver::COMMANDLINE), 0, Kind::KernelText),
            Err(libc::EFAULT)
        );
    }

    /// A target that answers from a table and remembers what it was given.
    struct Fake {
        answers: Vec<Answer>,
        calls: Vec<(u64, [u64; 5])>,
        filled: Vec<(usize, Option<Kind>, Vec<u8>)>,
        direct_landed: bool,
    }

    impl Target for Fake {
        fn addr(&mut self, slot: usize, kind: Option<Kind>, _len: usize) -> u64 {
            0x10_0000 * (slot as u64 + 1) + kind.map_or(0, |k| k as u64 + 1)
        }
        fn fill(&mut self, slot: usize, kind: Option<Kind>, bytes: &[u8]) {
            self.filled.push((slot, kind, bytes.to_vec()));
        }
        fn read(&mut self, _: usize, _: Option<Kind>, len: usize) -> Option<Vec<u8>> {
            Some(if self.direct_landed {
                vec![0; len]
            } else {
                vec![CANARY; len]
            })
        }
        fn hypercall(&mut self, nr: u64, args: [u64; 5]) -> Answer {
            self.calls.push((nr, args));
            self.answers.remove(0)
        }
    }

    #[test]
    fn the_runner_passes_the_bad_pointer_and_judges_the_answer() {
        let e = env(2);
        let mut f = Fake {
            answers: vec![Err(libc::EFAULT), Ok(0), Ok(0), Ok(0)],
            calls: vec![],
            filled: vec![],
            direct_landed: true,
        };
        let c = Case {
            op: Op::NumaInfo,
            bad: Some((2, Kind::UserUnmapped)),
        };
        let o = run(&mut f, &e, &c);
        assert!(o.ok());
        assert_eq!(f.calls[0].0, hypercall::SYSCTL);
        assert_eq!(f.calls[0].1[0], 0x10_0000);
        // The sysctl names the bad distance pointer and the good meminfo one.
        let img = &f.filled[0].2;
        let n: NumaInfo = XenSysctl::from_bytes(img).unwrap().op();
        assert_eq!(n.meminfo.addr(), 0x20_0000);
        assert_eq!(n.distance.addr(), 0x30_0000 + Kind::UserUnmapped as u64 + 1);
        // A wrong answer is a failure, with a line that says what and why.
        let o = run(&mut f, &e, &c);
        assert!(!o.ok());
        assert_eq!(
            failure_line(&e, &c, &o),
            "KEEL-LINUX: privcmd-badptr: FAIL sysctl numainfo distance user-unmapped: got 0, want -EFAULT (-14)"
        );
        // xen_version: the sub-op first, the pointer second.
        let v = Case {
            op: Op::Version(ver::CAPABILITIES),
            bad: Some((0, Kind::KernelDirect)),
        };
        assert!(run(&mut f, &e, &v).ok());
        assert_eq!(f.calls[2].1[..2], [ver::CAPABILITIES as u64, 0x10_0000 + 8]);
        // Through the direct map, an output must show in the user page.
        f.direct_landed = false;
        let o = run(&mut f, &e, &v);
        assert!(!o.ok());
        assert!(failure_line(&e, &v, &o)
            .ends_with("got 0, want 0 (the output did not reach the page behind the direct map)"));
        assert_eq!(
            summary_line(377, 376, 35, 35),
            "KEEL-LINUX: privcmd-badptr: 377 cases, 376 as expected; good calls after: 35, 35 as expected"
        );
    }
}
