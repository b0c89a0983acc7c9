//! Building a domU from dom0, as libxl does (`xl create`): the
//! [`keel_builder::Guest`] calls over Xen 4.17's toolstack ABI
//! ([`XenGuest`]), and the steps around the build ([`create`]): create the
//! container, allocate the console and xenstore event channels, build,
//! write the domain's xenstore records and introduce it, unpause. A step
//! that fails destroys the half-made domain, so none is left behind.
//!
//! Which hypercall each builder call makes:
//!
//! | `Guest` call | hypercall |
//! |---|---|
//! | `populate` | `memory_op(XENMEM_populate_physmap)` on the domain |
//! | `write`, `zero` | foreign mapping (privcmd `MMAPBATCH_V2`), 1024 pages at a time |
//! | `set_memory_map` | `memory_op(XENMEM_set_memory_map)` |
//! | `set_param` | `hvm_op(HVMOP_set_param)` |
//! | `set_mtrr_def_type` | `domctl gethvmcontext`, then `sethvmcontext` {HEADER, MTRR, END} |
//! | `set_bsp` | `domctl sethvmcontext` {HEADER, CPU 0, END} |
//! | `seed_grant_table` | `memory_op(XENMEM_add_to_physmap)` of the guest's grant frame 0 at a scratch gfn, a foreign map, `XENMEM_remove_from_physmap` (libxenguest's compat seed) |

use keel_builder::abi::{E820Entry, GrantEntryV1};
use keel_builder::{HwCpu, KernelImage};
use keel_xen_abi::domctl::{self as dctl, HvmContext};
use keel_xen_abi::evtchn::{self as ev, AllocUnbound};
use keel_xen_abi::hvm::save::{self, Descriptor, Header, HwMtrr};
use keel_xen_abi::hvm::{self as hvm, HvmParam};
use keel_xen_abi::memory::{
    self as mem, mapspace, AddToPhysmap, ForeignMemoryMap, MemoryMap, MemoryReservation,
    RemoveFromPhysmap,
};
use keel_xen_abi::{hypercall, GuestHandle, Pod};

use crate::backend::{BackendError, Result};
use crate::xen::{XenBackend, XenCall};

const PAGE: u64 = 4096;
/// Pages mapped per foreign mapping when writing.
const MAP_BATCH: u64 = 1024;
/// Extents per `populate_physmap` call.
const POPULATE_BATCH: usize = 512;

fn failed(what: String) -> BackendError {
    BackendError::Failed(what)
}

/// One domain being built, through `xen`.
pub struct XenGuest<'a, T: XenCall> {
    pub xen: &'a XenBackend<T>,
    pub domid: u16,
    /// A gfn beyond the domain's memory, free for the grant seed.
    pub scratch_gfn: u64,
}

impl<T: XenCall> XenGuest<'_, T> {
    fn memory_op<H: Pod>(
        &self,
        what: &str,
        cmd: u32,
        extra: Vec<u8>,
        arg: impl FnOnce(u64) -> H,
    ) -> Result<(H, Vec<u8>, u64)> {
        self.xen
            .call_with(what, hypercall::MEMORY_OP, &[cmd as u64], extra, arg)
    }

    /// The domain's HVM context records (gethvmcontext: the size, then
    /// the records).
    fn hvm_context(&self) -> Result<Vec<u8>> {
        let d = self.domid;
        let (dc, _) = self.xen.domctl(
            "domctl gethvmcontext (size)",
            dctl::op::GETHVMCONTEXT,
            d,
            vec![],
            |_| HvmContext {
                size: 0,
                buffer: GuestHandle::new(0),
            },
        )?;
        let size = dc.op::<HvmContext>().size as usize;
        if size == 0 || size > 1 << 20 {
            return Err(failed(format!(
                "domctl gethvmcontext: implausible size {size}"
            )));
        }
        let (dc, buf) = self.xen.domctl(
            "domctl gethvmcontext",
            dctl::op::GETHVMCONTEXT,
            d,
            vec![0; size],
            |at| HvmContext {
                size: size as u32,
                buffer: GuestHandle::new(at),
            },
        )?;
        let used = (dc.op::<HvmContext>().size as usize).min(buf.len());
        Ok(buf[..used].to_vec())
    }

    fn set_hvm_context(&self, what: &str, records: Vec<u8>) -> Result<()> {
        let size = records.len() as u32;
        self.xen
            .domctl(what, dctl::op::SETHVMCONTEXT, self.domid, records, |at| {
                HvmContext {
                    size,
                    buffer: GuestHandle::new(at),
                }
            })
            .map(|_| ())
    }
}

/// The records of an HVM context, in order: (typecode, instance, body).
pub fn records(buf: &[u8]) -> Result<Vec<(u16, u16, &[u8])>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let d = Descriptor::from_prefix(&buf[at..])
            .ok_or_else(|| failed("HVM context: a truncated record descriptor".into()))?;
        at += Descriptor::SIZE;
        let body = buf.get(at..at + d.length as usize).ok_or_else(|| {
            failed(format!(
                "HVM context: record {} overruns the buffer",
                d.typecode
            ))
        })?;
        at += d.length as usize;
        out.push((d.typecode, d.instance, body));
        if d.typecode == save::END {
            break;
        }
    }
    Ok(out)
}

/// Appends a record (descriptor and body) to `out`.
pub fn push_record<P: Pod>(out: &mut Vec<u8>, typecode: u16, instance: u16, body: &P) {
    let d = Descriptor {
        typecode,
        instance,
        length: P::SIZE as u32,
    };
    let at = out.len();
    out.resize(at + Descriptor::SIZE + P::SIZE, 0);
    d.write_to(&mut out[at..]).expect("sized");
    body.write_to(&mut out[at + Descriptor::SIZE..])
        .expect("sized");
}

fn push_end(out: &mut Vec<u8>) {
    let at = out.len();
    out.resize(at + Descriptor::SIZE, 0);
    Descriptor {
        typecode: save::END,
        instance: 0,
        length: 0,
    }
    .write_to(&mut out[at..])
    .expect("sized");
}

impl<T: XenCall> keel_builder::Guest for XenGuest<'_, T> {
    type Error = BackendError;

    fn populate(&mut self, gfns: &[u64], order: u32) -> Result<usize> {
        let mut done = 0;
        for chunk in gfns.chunks(POPULATE_BATCH) {
            let list: Vec<u8> = chunk.iter().flat_map(|g| g.to_le_bytes()).collect();
            let n = chunk.len() as u64;
            let domid = self.domid;
            let (_, _, ret) = self.memory_op(
                "memory_op populate_physmap",
                mem::POPULATE_PHYSMAP,
                list,
                |at| MemoryReservation {
                    extent_start: GuestHandle::new(at),
                    nr_extents: n,
                    extent_order: order,
                    mem_flags: 0,
                    domid,
                },
            )?;
            done += ret as usize;
            if ret < n {
                break;
            }
        }
        Ok(done)
    }

    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<()> {
        let mut off = 0usize;
        while off < bytes.len() {
            let at = gpa + off as u64;
            let first = at / PAGE;
            let last = (gpa + bytes.len() as u64 - 1) / PAGE;
            let pages = (last - first + 1).min(MAP_BATCH);
            let gfns: Vec<u64> = (first..first + pages).collect();
            let in_map = (at % PAGE) as usize;
            let n = ((pages * PAGE) as usize - in_map).min(bytes.len() - off);
            let src = &bytes[off..off + n];
            self.xen
                .transport()
                .with_foreign(self.domid, &gfns, &mut |m| {
                    m[in_map..in_map + n].copy_from_slice(src)
                })
                .map_err(|(i, e)| {
                    let frame = gfns
                        .get(i)
                        .map_or(String::new(), |g| format!(" (gfn {g:#x})"));
                    failed(format!(
                        "mapping d{}'s memory at {at:#x}{frame}: errno {}",
                        self.domid, e.errno
                    ))
                })?;
            off += n;
        }
        Ok(())
    }

    fn set_memory_map(&mut self, e820: &[E820Entry]) -> Result<()> {
        let buf: Vec<u8> = e820.iter().flat_map(|e| e.raw().to_bytes()).collect();
        let (n, domid) = (e820.len() as u32, self.domid);
        self.memory_op("memory_op set_memory_map", mem::SET_MEMORY_MAP, buf, |at| {
            ForeignMemoryMap {
                domid,
                map: MemoryMap {
                    nr_entries: n,
                    buffer: GuestHandle::new(at),
                },
            }
        })
        .map(|_| ())
    }

    fn set_param(&mut self, index: u32, value: u64) -> Result<()> {
        let domid = self.domid;
        self.xen
            .call_with(
                &format!("hvm_op set_param {index}"),
                hypercall::HVM_OP,
                &[hvm::SET_PARAM as u64],
                vec![],
                |_| HvmParam {
                    domid,
                    pad: 0,
                    index,
                    value,
                },
            )
            .map(|_| ())
    }

    fn set_mtrr_def_type(&mut self, vcpu: u32, def_type: u64) -> Result<()> {
        let ctx = self.hvm_context()?;
        let recs = records(&ctx)?;
        let header = recs
            .iter()
            .find(|r| r.0 == save::HEADER)
            .and_then(|r| Header::from_prefix(r.2))
            .ok_or_else(|| failed("HVM context without a HEADER record".into()))?;
        let mut mtrr = recs
            .iter()
            .find(|r| r.0 == save::MTRR && r.1 as u32 == vcpu)
            .and_then(|r| HwMtrr::from_prefix(r.2))
            .ok_or_else(|| {
                failed(format!(
                    "HVM context without an MTRR record for vCPU {vcpu}"
                ))
            })?;
        mtrr.msr_mtrr_def_type = def_type;
        let mut out = Vec::new();
        push_record(&mut out, save::HEADER, 0, &header);
        push_record(&mut out, save::MTRR, vcpu as u16, &mtrr);
        push_end(&mut out);
        self.set_hvm_context("domctl sethvmcontext (MTRR)", out)
    }

    fn set_bsp(&mut self, cpu: &HwCpu) -> Result<()> {
        let ctx = self.hvm_context()?;
        let header = records(&ctx)?
            .iter()
            .find(|r| r.0 == save::HEADER)
            .and_then(|r| Header::from_prefix(r.2))
            .ok_or_else(|| failed("HVM context without a HEADER record".into()))?;
        let mut out = Vec::new();
        push_record(&mut out, save::HEADER, 0, &header);
        push_record(&mut out, save::CPU, 0, cpu);
        push_end(&mut out);
        self.set_hvm_context("domctl sethvmcontext (BSP)", out)
    }

    fn seed_grant_table(&mut self, entries: &[(u32, GrantEntryV1)]) -> Result<()> {
        let (domid, gfn) = (self.domid, self.scratch_gfn);
        self.memory_op(
            "memory_op add_to_physmap (grant table)",
            mem::ADD_TO_PHYSMAP,
            vec![],
            |_| AddToPhysmap {
                domid,
                size: 0,
                space: mapspace::GRANT_TABLE,
                idx: 0,
                gpfn: gfn,
            },
        )?;
        let mut bad = None;
        let mapped = self.xen.transport().with_foreign(domid, &[gfn], &mut |m| {
            for (r, e) in entries {
                let at = *r as usize * GrantEntryV1::SIZE;
                match m.get_mut(at..at + GrantEntryV1::SIZE) {
                    Some(slot) => slot.copy_from_slice(&e.to_bytes()),
                    None => bad = Some(*r),
                }
            }
        });
        let removed = self.memory_op(
            "memory_op remove_from_physmap (grant table)",
            mem::REMOVE_FROM_PHYSMAP,
            vec![],
            |_| RemoveFromPhysmap { domid, gpfn: gfn },
        );
        mapped.map_err(|(_, e)| {
            failed(format!("mapping d{domid}'s grant table: errno {}", e.errno))
        })?;
        if let Some(r) = bad {
            return Err(failed(format!(
                "grant reference {r} is beyond the first grant frame"
            )));
        }
        removed.map(|_| ())
    }
}

/// `EVTCHNOP_alloc_unbound` in domain `dom` for `remote` (the backends'
/// ends are bound later, by xenstored and the console daemon).
pub fn alloc_unbound<T: XenCall>(xen: &XenBackend<T>, dom: u16, remote: u16) -> Result<u32> {
    let (a, _, _) = xen.call_with(
        "event_channel_op alloc_unbound",
        hypercall::EVENT_CHANNEL_OP,
        &[ev::ALLOC_UNBOUND as u64],
        vec![],
        |_| AllocUnbound {
            dom,
            remote_dom: remote,
            port: 0,
        },
    )?;
    Ok(a.port)
}

/// The kernel named by a config, parsed (bzImage or PVH ELF).
pub fn read_kernel(path: &str) -> Result<KernelImage> {
    let bytes = std::fs::read(path).map_err(|e| failed(format!("kernel {path}: {e}")))?;
    KernelImage::parse(&bytes).map_err(|e| failed(format!("kernel {path}: {e}")))
}

/// `LIBXL_MAXMEM_CONSTANT`: what libxl adds to a domain's `max_mem` (KiB).
pub const MAXMEM_SLACK_KIB: u64 = 1024;

/// The xenstore records of a new domain, as libxl writes them
/// (`libxl__domain_make`, `libxl__build_post`): the domain's directory,
/// readable by it and owned by dom0, with the subdirectories the guest
/// writes (`control`, `data`, `device`...) owned by it; its name, memory
/// and vCPUs; the rings its frontends find; libxl's own type record.
///
/// `memory/static-max` is the config's maxmem (`static_max_kib`), without
/// the ACPI and special pages and the slack `max_mem` adds: a PVH guest's
/// balloon driver counts static-max minus the RAM it sees as target it
/// cannot have, so a larger one makes it give pages back at once.
pub fn xenstore_nodes(
    domid: u16,
    cfg: &keel_xlcfg::DomainConfig,
    built: &keel_builder::Built,
    spec: &keel_builder::DomainSpec,
    static_max_kib: u64,
) -> Vec<crate::xen::Node> {
    use crate::xen::Node;
    let dom = format!("/local/domain/{domid}");
    let ro = vec!["n0".to_string(), format!("r{domid}")];
    let rw = vec![format!("n{domid}")];
    let node = |path: String, value: String, perms: &Vec<String>| Node {
        path,
        value,
        perms: perms.clone(),
    };
    let target_kib = spec.memory_mib * 1024;
    let mut v = vec![
        node(dom.clone(), String::new(), &ro),
        node(format!("{dom}/name"), cfg.name.clone(), &ro),
        node(format!("{dom}/domid"), domid.to_string(), &ro),
        node(
            format!("{dom}/memory/static-max"),
            static_max_kib.to_string(),
            &ro,
        ),
        node(format!("{dom}/memory/target"), target_kib.to_string(), &ro),
        node(
            format!("{dom}/store/port"),
            spec.store_evtchn.to_string(),
            &ro,
        ),
        node(
            format!("{dom}/store/ring-ref"),
            built.layout.store_pfn.to_string(),
            &ro,
        ),
        node(
            format!("{dom}/console/port"),
            spec.console_evtchn.to_string(),
            &ro,
        ),
        node(
            format!("{dom}/console/ring-ref"),
            built.layout.console_pfn.to_string(),
            &ro,
        ),
        node(format!("{dom}/console/type"), "xenconsoled".into(), &ro),
        node(format!("{dom}/console/limit"), "1048576".into(), &ro),
    ];
    for sub in [
        "control", "data", "device", "drivers", "attr", "error", "messages",
    ] {
        v.push(node(format!("{dom}/{sub}"), String::new(), &rw));
    }
    v.push(node(format!("{dom}/control/shutdown"), String::new(), &rw));
    for f in ["feature-poweroff", "feature-reboot", "feature-suspend"] {
        v.push(node(format!("{dom}/control/platform-{f}"), "1".into(), &ro));
    }
    for i in 0..spec.max_vcpus {
        let state = if i < spec.vcpus { "online" } else { "offline" };
        v.push(node(
            format!("{dom}/cpu/{i}/availability"),
            state.into(),
            &ro,
        ));
    }
    v.push(node(
        format!("/libxl/{domid}/type"),
        "pvh".into(),
        &vec!["n0".into()],
    ));
    v
}

/// The paths [`xenstore_nodes`] writes under, to remove on failure.
pub fn xenstore_roots(domid: u16) -> Vec<String> {
    vec![format!("/local/domain/{domid}"), format!("/libxl/{domid}")]
}

/// What [`create`] did, for the caller to print.
#[derive(Debug, Clone)]
pub struct Created {
    pub domid: u16,
    pub built: keel_builder::Built,
    pub console_port: u32,
    pub store_port: u32,
}

/// `keelctl create`: a PVH domU from `cfg`, built as libxl builds one,
/// paused when `paused`. On any failure after the domain exists, the
/// domain is destroyed and its xenstore records removed, so nothing is
/// left behind; the error names the step.
///
/// Disks (`disk=`) are served by dom0's blkback ([`crate::disks`]):
/// checked before the domain exists, made ready (a loop device for an
/// image file) and their records written after the domain's own and
/// before it runs; a failure takes them back too.
///
/// Network interfaces (`vif=`) are served by dom0's netback
/// ([`crate::nics`]): checked before the domain exists (device ids, MAC
/// addresses, what keelctl cannot honour), their records written after
/// the disks', then each put on its bridge as `vif-bridge` does, before
/// the domain runs; a failure takes them back too.
pub fn create<T: XenCall>(
    xen: &XenBackend<T>,
    cfg: &keel_xlcfg::DomainConfig,
    paused: bool,
) -> Result<Created> {
    use keel_builder::{DomainSpec, Layout};
    let kernel_path = cfg.kernel.as_deref().ok_or_else(|| {
        failed("the configuration has no kernel= (keelctl builds PVH domains from a kernel image; bootloader= is not supported)".into())
    })?;
    let mut spec = DomainSpec::from_xl(cfg).map_err(|e| failed(format!("{e}")))?;
    let kernel = read_kernel(kernel_path)?;
    let ramdisk = match &cfg.ramdisk {
        Some(p) => Some(std::fs::read(p).map_err(|e| failed(format!("ramdisk {p}: {e}")))?),
        None => None,
    };
    // The layout is checked before anything is created.
    let layout = Layout::new(&kernel, ramdisk.as_ref().map(|r| r.len() as u64), &spec)
        .map_err(|e| failed(format!("{e}")))?;
    let maxmem_mib = cfg
        .effective_maxmem_mb()
        .unwrap_or(spec.memory_mib)
        .max(spec.memory_mib);
    let max_mem_kib = maxmem_mib * 1024 + layout.extra_pages() * 4 + MAXMEM_SLACK_KIB;
    let disks = if cfg.disks.is_empty() {
        Vec::new()
    } else {
        let domains: Vec<u32> = xen
            .domain_infos()?
            .iter()
            .map(|d| d.domain as u32)
            .collect();
        crate::disks::check(&cfg.disks, &*xen.store, &*xen.host, &domains).map_err(failed)?
    };
    let nics = crate::nics::check(&cfg.vifs, &*xen.host).map_err(failed)?;
    let domid = xen.create_container(spec.max_vcpus, max_mem_kib)? as u16;
    let attached = std::cell::RefCell::new(Vec::new());
    let undo = |e: BackendError| {
        crate::nics::undo(&*xen.store, domid, &nics);
        crate::disks::undo(&*xen.store, &*xen.host, domid, &disks, &attached.borrow());
        let _ = xen.store.remove(&xenstore_roots(domid));
        let _ = xen.domctl_plain(dctl::op::DESTROYDOMAIN, domid, "destroying it again", "");
        e
    };
    let mut rest = || -> Result<Created> {
        let console_port = alloc_unbound(xen, domid, spec.console_domid)?;
        let store_port = alloc_unbound(xen, domid, spec.store_domid)?;
        spec.console_evtchn = console_port;
        spec.store_evtchn = store_port;
        // A frame above everything the layout uses, for the grant seed.
        let top = layout.ram.iter().map(|r| r.1).max().unwrap_or(0) / PAGE;
        let mut guest = XenGuest {
            xen,
            domid,
            scratch_gfn: top.max(0x10_0000) + 1,
        };
        let built = keel_builder::build(&mut guest, &kernel, ramdisk.as_deref(), &spec)
            .map_err(|e| failed(format!("d{domid}: {e}")))?;
        xen.store
            .publish(&xenstore_nodes(
                domid,
                cfg,
                &built,
                &spec,
                maxmem_mib * 1024,
            ))
            .map_err(|e| failed(format!("d{domid}: {e}")))?;
        xen.store
            .introduce(domid as u32, built.layout.store_pfn, store_port)
            .map_err(|e| failed(format!("d{domid}: {e}")))?;
        crate::disks::add(
            &*xen.store,
            &*xen.host,
            domid,
            &disks,
            &mut attached.borrow_mut(),
        )
        .map_err(|e| failed(format!("d{domid}: {e}")))?;
        crate::nics::add(&*xen.store, &*xen.host, domid, &nics, xen.device_timeout)
            .map_err(|e| failed(format!("d{domid}: {e}")))?;
        if !paused {
            xen.domctl_plain(
                dctl::op::UNPAUSEDOMAIN,
                domid,
                &format!("unpausing d{domid}"),
                "it is not paused",
            )?;
        }
        Ok(Created {
            domid,
            built,
            console_port,
            store_port,
        })
    };
    rest().map_err(undo)
}

/// keel-builder's synthetic kernels (its test helpers), for the tests.
#[cfg(test)]
#[path = "../../builder/tests/common/mod.rs"]
mod test_kernels;

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::privcmd::CallError;
    use crate::xen::fake::{backend, err, get, put, put_bytes, FakeXen};
    use keel_builder::abi::GTF_PERMIT_ACCESS;
    use keel_xen_abi::domctl::XenDomctl;
    use keel_xen_abi::hvm::param;
    use std::collections::BTreeMap;

    use super::test_kernels as kernels;

    /// The vCPUs the fake's HVM context has records for.
    const FAKE_VCPUS: u16 = 2;

    /// What a domain being built sees: its frames, params, memory map,
    /// the HVM contexts set, its grant frame; `fail` makes the call
    /// (hypercall, first argument) fail with EINVAL.
    #[derive(Default)]
    pub struct FakeDomU {
        pub frames: BTreeMap<u64, Vec<u8>>,
        /// Frames it may have at most.
        pub max_frames: usize,
        pub params: Vec<(u32, u64)>,
        pub e820: Vec<u8>,
        pub contexts: Vec<Vec<u8>>,
        /// The grant frame's contents when it left the physmap.
        pub grant: Vec<u8>,
        pub grant_gfn: Option<u64>,
        pub unpaused: bool,
        pub ports: u32,
        pub fail: Option<(u64, u64)>,
        /// Gets "unpause" when the domain is unpaused (shared with a
        /// [`crate::xen::fake::MemStore`]'s events, for the order).
        pub events: std::rc::Rc<std::cell::RefCell<Vec<String>>>,
    }

    impl FakeDomU {
        /// The hypercalls a build makes on a created domain (`None`:
        /// not one of them).
        pub fn call(
            &mut self,
            created: &[u16],
            op: u64,
            args: [u64; 5],
            mem: &mut [u8],
        ) -> Option<std::result::Result<u64, CallError>> {
            let is_dom = |d: u16| created.contains(&d);
            if self.fail == Some((op, args[0])) {
                return Some(err(libc::EINVAL));
            }
            let r = match op {
                hypercall::MEMORY_OP => self.memory_op(&is_dom, args, mem),
                hypercall::HVM_OP if args[0] == hvm::SET_PARAM as u64 => (|| {
                    let p: HvmParam = get(mem, args[1])?;
                    if !is_dom(p.domid) {
                        return err(libc::ESRCH);
                    }
                    self.params.push((p.index, p.value));
                    Ok(0)
                })(),
                hypercall::EVENT_CHANNEL_OP if args[0] == ev::ALLOC_UNBOUND as u64 => (|| {
                    let mut a: AllocUnbound = get(mem, args[1])?;
                    if !is_dom(a.dom) || a.remote_dom != 0 {
                        return err(libc::EINVAL);
                    }
                    self.ports += 1;
                    a.port = self.ports;
                    put(mem, args[1], &a).map(|_| 0)
                })(
                ),
                hypercall::DOMCTL => {
                    let dc: XenDomctl = match get(mem, args[0]) {
                        Ok(d) => d,
                        Err(e) => return Some(Err(e)),
                    };
                    if !is_dom(dc.domain) {
                        return None;
                    }
                    match dc.cmd {
                        dctl::op::GETHVMCONTEXT => Self::get_context(dc, args[0], mem),
                        dctl::op::SETHVMCONTEXT => (|| {
                            let h: HvmContext = dc.op();
                            let o = crate::xen::fake::at(mem, h.buffer.addr(), h.size as usize)?;
                            self.contexts.push(mem[o..o + h.size as usize].to_vec());
                            Ok(0)
                        })(),
                        dctl::op::UNPAUSEDOMAIN => {
                            self.unpaused = true;
                            self.events.borrow_mut().push("unpause".into());
                            Ok(0)
                        }
                        _ => return None,
                    }
                }
                _ => return None,
            };
            Some(r)
        }

        fn get_context(
            mut dc: XenDomctl,
            at: u64,
            mem: &mut [u8],
        ) -> std::result::Result<u64, CallError> {
            let mut rec = Vec::new();
            push_record(
                &mut rec,
                save::HEADER,
                0,
                &Header {
                    magic: save::FILE_MAGIC,
                    version: save::FILE_VERSION,
                    changeset: 0,
                    cpuid: 0x800f12,
                    gtsc_khz: 1_000_000,
                },
            );
            for v in 0..FAKE_VCPUS {
                push_record(&mut rec, save::MTRR, v, &HwMtrr::zeroed());
            }
            push_end(&mut rec);
            let mut h: HvmContext = dc.op();
            if h.buffer.addr() != 0 {
                if (h.size as usize) < rec.len() {
                    return err(libc::ENOSPC);
                }
                put_bytes(mem, h.buffer.addr(), &rec)?;
            }
            h.size = rec.len() as u32;
            dc.u = dctl::DomctlU::new(&h);
            put(mem, at, &dc).map(|_| 0)
        }

        fn memory_op(
            &mut self,
            is_dom: &dyn Fn(u16) -> bool,
            args: [u64; 5],
            mem: &mut [u8],
        ) -> std::result::Result<u64, CallError> {
            match args[0] as u32 {
                mem::POPULATE_PHYSMAP => {
                    let r: MemoryReservation = get(mem, args[1])?;
                    if !is_dom(r.domid) {
                        return err(libc::ESRCH);
                    }
                    let mut done = 0;
                    for i in 0..r.nr_extents {
                        let gfn: u64 = get(mem, r.extent_start.addr() + 8 * i)?;
                        let n = 1usize << r.extent_order;
                        // The fake has no 1 GiB pages, and a frame limit.
                        if r.extent_order >= 18 || self.frames.len() + n > self.max_frames {
                            break;
                        }
                        for f in gfn..gfn + n as u64 {
                            self.frames.insert(f, vec![0; 4096]);
                        }
                        done += 1;
                    }
                    Ok(done)
                }
                mem::SET_MEMORY_MAP => {
                    let m: ForeignMemoryMap = get(mem, args[1])?;
                    if !is_dom(m.domid) {
                        return err(libc::ESRCH);
                    }
                    let len = 20 * m.map.nr_entries as usize;
                    let o = crate::xen::fake::at(mem, m.map.buffer.addr(), len)?;
                    self.e820 = mem[o..o + len].to_vec();
                    Ok(0)
                }
                mem::ADD_TO_PHYSMAP => {
                    let a: AddToPhysmap = get(mem, args[1])?;
                    if !is_dom(a.domid) || a.space != mapspace::GRANT_TABLE || a.idx != 0 {
                        return err(libc::EINVAL);
                    }
                    self.frames.insert(a.gpfn, vec![0; 4096]);
                    self.grant_gfn = Some(a.gpfn);
                    Ok(0)
                }
                mem::REMOVE_FROM_PHYSMAP => {
                    let r: RemoveFromPhysmap = get(mem, args[1])?;
                    if !is_dom(r.domid) {
                        return err(libc::ESRCH);
                    }
                    let f = self.frames.remove(&r.gpfn).ok_or(CallError {
                        errno: libc::ENOENT,
                    })?;
                    if self.grant_gfn == Some(r.gpfn) {
                        self.grant = f;
                    }
                    Ok(0)
                }
                _ => err(libc::ENOSYS),
            }
        }

        pub fn with_foreign(
            &mut self,
            gfns: &[u64],
            f: &mut dyn FnMut(&mut [u8]),
        ) -> std::result::Result<(), (usize, CallError)> {
            let mut buf = Vec::with_capacity(gfns.len() * 4096);
            for (i, g) in gfns.iter().enumerate() {
                let page = self.frames.get(g).ok_or((
                    i,
                    CallError {
                        errno: libc::EFAULT,
                    },
                ))?;
                buf.extend_from_slice(page);
            }
            f(&mut buf);
            for (i, g) in gfns.iter().enumerate() {
                self.frames
                    .get_mut(g)
                    .unwrap()
                    .copy_from_slice(&buf[i * 4096..(i + 1) * 4096]);
            }
            Ok(())
        }

        /// `len` bytes of guest memory at `gpa`.
        pub fn read(&self, gpa: u64, len: usize) -> Vec<u8> {
            (gpa..gpa + len as u64)
                .map(|a| self.frames[&(a / 4096)][(a % 4096) as usize])
                .collect()
        }
    }

    pub(crate) struct Files(std::path::PathBuf);
    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A config for a 64 MiB, 2-vCPU PVH domain whose kernel (Linux-like,
    /// synthetic) and ramdisk are files in a fresh directory.
    pub(crate) fn config(tag: &str) -> (keel_xlcfg::DomainConfig, Files) {
        let dir = std::env::temp_dir().join(format!("keelctl-domu-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (k, r) = (dir.join("kernel"), dir.join("initrd"));
        std::fs::write(&k, kernels::linux_like()).unwrap();
        std::fs::write(&r, b"RAMDISK!".repeat(1000)).unwrap();
        let text = format!(
            "name = \"web\"\ntype = \"pvh\"\nkernel = \"{}\"\nramdisk = \"{}\"\nmemory = 64\nvcpus = 2\nextra = \"console=hvc0\"\n",
            k.display(),
            r.display()
        );
        let cfg = keel_xlcfg::parse_str(&text, "web.cfg").unwrap().config;
        (cfg, Files(dir))
    }

    /// A xenstore that keeps what is published and introduced.
    #[derive(Default)]
    struct Store {
        nodes: std::cell::RefCell<Vec<crate::xen::Node>>,
        introduced: std::cell::RefCell<Vec<(u32, u64, u32)>>,
        removed: std::cell::RefCell<Vec<String>>,
    }
    impl crate::xen::Xenstore for std::rc::Rc<Store> {
        fn name(&self, _: u32) -> Option<String> {
            None
        }
        fn publish(&self, nodes: &[crate::xen::Node]) -> std::result::Result<(), String> {
            self.nodes.borrow_mut().extend_from_slice(nodes);
            Ok(())
        }
        fn introduce(&self, d: u32, gfn: u64, port: u32) -> std::result::Result<(), String> {
            self.introduced.borrow_mut().push((d, gfn, port));
            Ok(())
        }
        fn remove(&self, paths: &[String]) -> std::result::Result<(), String> {
            self.removed.borrow_mut().extend_from_slice(paths);
            Ok(())
        }
    }

    fn fake() -> (XenBackend<FakeXen>, std::rc::Rc<Store>) {
        let x = FakeXen::new();
        x.domu.borrow_mut().max_frames = 64 * 256 + 64;
        let mut b = backend(x);
        let store = std::rc::Rc::new(Store::default());
        b.store = Box::new(store.clone());
        (b, store)
    }

    #[test]
    fn create_builds_the_domain_through_the_toolstack_calls() {
        let (cfg, _files) = config("ok");
        let (b, store) = fake();
        let c = create(&b, &cfg, true).unwrap();
        assert_eq!(c.domid, 7);
        assert_eq!((c.console_port, c.store_port), (1, 2));
        let d = b.transport().domu.borrow();
        // The kernel's bytes at its physical address; the start_info's
        // magic where RBX of the BSP points.
        let k = kernels::linux_like();
        let text_at = k.windows(4).position(|w| w == [1, 8, 15, 22]).unwrap();
        assert_eq!(d.read(0x100_0000, 4), k[text_at..text_at + 4]);
        let bsp = records(&d.contexts[FAKE_VCPUS as usize])
            .unwrap()
            .into_iter()
            .find(|r| r.0 == save::CPU)
            .map(|r| HwCpu::from_prefix(r.2).unwrap())
            .unwrap();
        assert_eq!(bsp.rip, 0x100_0850);
        assert_eq!(d.read(bsp.rbx, 4), 0x336e_c578u32.to_le_bytes());
        // One MTRR context per vCPU (write-back, enabled), then the BSP's.
        assert_eq!(d.contexts.len(), FAKE_VCPUS as usize + 1);
        for (v, ctx) in d.contexts[..2].iter().enumerate() {
            let r = records(ctx).unwrap();
            assert_eq!(
                r.iter().map(|r| r.0).collect::<Vec<_>>(),
                [save::HEADER, save::MTRR, save::END]
            );
            assert_eq!(r[1].1 as usize, v);
            assert_eq!(
                HwMtrr::from_prefix(r[1].2).unwrap().msr_mtrr_def_type,
                6 | 1 << 11
            );
        }
        // The rings' params and event channels.
        let p = |i| d.params.iter().find(|x| x.0 == i).map(|x| x.1);
        assert_eq!(p(param::CONSOLE_EVTCHN), Some(1));
        assert_eq!(p(param::STORE_EVTCHN), Some(2));
        assert_eq!(p(param::STORE_PFN), Some(c.built.layout.store_pfn));
        // Grant entries 0 (console) and 1 (xenstore) for dom0, and the
        // scratch frame taken away again.
        let e = |r: usize| GrantEntryV1::from_bytes(&d.grant[r * 8..r * 8 + 8]).unwrap();
        assert_eq!(
            (e(0).flags, e(0).domid, e(0).frame as u64),
            (GTF_PERMIT_ACCESS, 0, c.built.layout.console_pfn)
        );
        assert_eq!(e(1).frame as u64, c.built.layout.store_pfn);
        assert!(!d.frames.contains_key(&d.grant_gfn.unwrap()));
        assert_eq!(d.e820.len() % 20, 0);
        assert!(!d.unpaused, "-p leaves it paused");
        assert!(b.transport().destroyed.borrow().is_empty());
        // Its xenstore records, and the daemon told of its ring.
        let nodes = store.nodes.borrow();
        let node = |p: &str| {
            nodes
                .iter()
                .find(|n| n.path == p)
                .unwrap_or_else(|| panic!("{p}"))
        };
        assert_eq!(node("/local/domain/7/name").value, "web");
        assert_eq!(node("/local/domain/7").perms, ["n0", "r7"]);
        assert_eq!(node("/local/domain/7/control/shutdown").perms, ["n7"]);
        assert_eq!(node("/local/domain/7/console/port").value, "1");
        assert_eq!(
            node("/local/domain/7/store/ring-ref").value,
            c.built.layout.store_pfn.to_string()
        );
        assert_eq!(node("/local/domain/7/cpu/1/availability").value, "online");
        assert_eq!(node("/libxl/7/type").value, "pvh");
        assert_eq!(
            *store.introduced.borrow(),
            [(7, c.built.layout.store_pfn, 2)]
        );
    }

    #[test]
    fn create_unpauses_unless_asked_not_to() {
        let (cfg, _files) = config("run");
        let (b, _) = fake();
        create(&b, &cfg, false).unwrap();
        assert!(b.transport().domu.borrow().unpaused);
    }

    #[test]
    fn a_failed_step_destroys_the_half_made_domain() {
        for (fail, want) in [
            (
                (hypercall::MEMORY_OP, mem::SET_MEMORY_MAP as u64),
                "SetMemoryMap",
            ),
            ((hypercall::HVM_OP, hvm::SET_PARAM as u64), "SetParams"),
            (
                (hypercall::EVENT_CHANNEL_OP, ev::ALLOC_UNBOUND as u64),
                "alloc_unbound",
            ),
            (
                (hypercall::MEMORY_OP, mem::ADD_TO_PHYSMAP as u64),
                "GrantTable",
            ),
        ] {
            let (cfg, _files) = config("fail");
            let (b, store) = fake();
            b.transport().domu.borrow_mut().fail = Some(fail);
            let e = create(&b, &cfg, false).unwrap_err();
            assert!(e.to_string().contains(want), "{want}: {e}");
            assert_eq!(*b.transport().destroyed.borrow(), [7], "{want}");
            assert!(!b.transport().domu.borrow().unpaused);
            assert_eq!(*store.removed.borrow(), xenstore_roots(7));
        }
        // Too little memory for the domain: the build's order-0 populate
        // comes up short.
        let (cfg, _files) = config("small");
        let (b, _) = fake();
        b.transport().domu.borrow_mut().max_frames = 100;
        let e = create(&b, &cfg, false).unwrap_err();
        assert!(e.to_string().contains("PopulateRam"), "{e}");
        assert_eq!(*b.transport().destroyed.borrow(), [7]);
    }

    #[test]
    fn bad_configs_are_refused_before_a_domain_exists() {
        let (mut cfg, _files) = config("bad");
        let (b, _) = fake();
        cfg.kernel = None;
        assert!(create(&b, &cfg, false)
            .unwrap_err()
            .to_string()
            .contains("no kernel="));
        cfg.kernel = Some("/nonexistent/keel/vmlinuz".into());
        assert!(create(&b, &cfg, false)
            .unwrap_err()
            .to_string()
            .contains("/nonexistent/keel/vmlinuz"));
        let (mut cfg, files) = config("bad2");
        let junk = files.0.join("junk");
        std::fs::write(&junk, b"not a kernel").unwrap();
        cfg.kernel = Some(junk.display().to_string());
        assert!(create(&b, &cfg, false).is_err());
        assert!(
            b.transport().created.borrow().is_empty(),
            "no domain was made"
        );
    }

    #[test]
    fn hvm_context_records_parse_and_refuse_overruns() {
        let mut r = Vec::new();
        push_record(&mut r, save::MTRR, 1, &HwMtrr::zeroed());
        push_end(&mut r);
        let recs = records(&r).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(
            (recs[0].0, recs[0].1, recs[0].2.len()),
            (save::MTRR, 1, save::MTRR_LENGTH)
        );
        assert!(records(&r[..20]).is_err());
        assert!(records(&r[..4]).is_err());
    }
}
