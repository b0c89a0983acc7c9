//! `domctl gethvmcontext` / `sethvmcontext`: a domain's HVM state in Xen's
//! save-record format (`hvm/save.h`), as a toolstack building a PVH domU
//! uses it (libxenguest's `vcpu_hvm`, keel-builder through keelctl): read
//! the context for its HEADER and the MTRR records, write back each vCPU's
//! MTRR default type, then the BSP's CPU record, which starts the vCPU at
//! the kernel's PVH entry once the domain is unpaused.
//!
//! What keel keeps of it: per vCPU, the MTRR default type (keel's memory
//! types are its own; the value is kept for the guest's reads of the
//! record), and a CPU record only in the PVH boot state (32-bit flat
//! protected mode, paging off: `StartMode::Pvh32`); any other CPU state
//! (a saved, running guest) is -EOPNOTSUPP, as are records of devices
//! keel does not emulate. `gethvmcontext` gives HEADER, an MTRR record per
//! vCPU and END: no CPU records yet (save/restore is not supported).

use super::Ctx;
use crate::domain::{Domain, Power};
use crate::xen::abi::Errno;
use alloc::vec::Vec;
use keel_xen_abi::domctl::HvmContext;
use keel_xen_abi::hvm::save::{self, Descriptor, Header, HwCpu, HwMtrr};
use keel_xen_abi::Pod;

/// The context's length in bytes: HEADER, an MTRR record per vCPU, END.
pub fn size(d: &Domain) -> usize {
    let rec = |len: usize| Descriptor::SIZE + len;
    rec(Header::SIZE) + d.vcpus.len() * rec(HwMtrr::SIZE) + rec(0)
}

fn push<P: Pod>(out: &mut Vec<u8>, typecode: u16, instance: u16, body: &P) {
    let at = out.len();
    out.resize(at + Descriptor::SIZE + P::SIZE, 0);
    let d = Descriptor {
        typecode,
        instance,
        length: P::SIZE as u32,
    };
    d.write_to(&mut out[at..]).expect("sized");
    body.write_to(&mut out[at + Descriptor::SIZE..])
        .expect("sized");
}

/// The context's bytes (see the module docs).
pub fn records(d: &Domain, cpuid_1_eax: u32, tsc_khz: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(size(d));
    let header = Header {
        magic: save::FILE_MAGIC,
        version: save::FILE_VERSION,
        changeset: 0,
        cpuid: cpuid_1_eax,
        gtsc_khz: tsc_khz,
    };
    push(&mut out, save::HEADER, 0, &header);
    for v in &d.vcpus {
        let mtrr = HwMtrr {
            msr_mtrr_def_type: v.st.lock().mtrr_def_type,
            ..HwMtrr::zeroed()
        };
        push(&mut out, save::MTRR, v.id as u16, &mtrr);
    }
    let end = Descriptor {
        typecode: save::END,
        instance: 0,
        length: 0,
    };
    let at = out.len();
    out.resize(at + Descriptor::SIZE, 0);
    end.write_to(&mut out[at..]).expect("sized");
    out
}

/// `gethvmcontext`: with no buffer, the size; else the records, -ENOSPC
/// if they do not fit. Returns the bytes written (or needed).
pub fn get(cx: &Ctx, d: &Domain, h: &HvmContext) -> Result<u32, Errno> {
    let need = size(d);
    if h.buffer.addr() == 0 {
        return Ok(need as u32);
    }
    if (h.size as usize) < need {
        return Err(Errno::ENOSPC);
    }
    let host = super::host::get()?;
    let eax = host.cpuid(super::host::Cpu::Guest, 1, 0)[0];
    let recs = records(d, eax, host.cpu_khz());
    cx.mem().write(h.buffer.addr(), &recs)?;
    Ok(recs.len() as u32)
}

/// The most a context passed in may hold.
const MAX_CONTEXT: u32 = 1 << 20;

/// `sethvmcontext`: the records of the buffer, checked whole first, then
/// applied. The domain must be paused (the toolstack builds it so).
pub fn set(cx: &Ctx, d: &Domain, h: &HvmContext) -> Result<(), Errno> {
    if !d.is_paused() {
        return Err(Errno::EBUSY);
    }
    if h.size > MAX_CONTEXT {
        return Err(Errno::EINVAL);
    }
    let mut buf = alloc::vec![0u8; h.size as usize];
    cx.mem().read(h.buffer.addr(), &mut buf)?;
    let recs = parse(&buf)?;
    // Check everything before changing anything.
    let mut plan = Vec::new();
    for (typecode, instance, body) in &recs {
        let v = *instance as usize;
        match *typecode {
            save::HEADER => {}
            save::MTRR => {
                d.vcpus.get(v).ok_or(Errno::EINVAL)?;
                let m = HwMtrr::from_bytes(body).ok_or(Errno::EINVAL)?;
                plan.push(Apply::Mtrr(v, m.msr_mtrr_def_type));
            }
            save::CPU => {
                d.vcpus.get(v).ok_or(Errno::EINVAL)?;
                let c = HwCpu::from_bytes(body).ok_or(Errno::EINVAL)?;
                let (entry, ebx) = pvh_boot_state(&c)?;
                plan.push(Apply::Start(v, entry, ebx));
            }
            // Devices keel does not emulate (PIC, IOAPIC, PIT, RTC, HPET,
            // PM timer) or state it does not load yet (LAPIC, XSAVE...).
            _ => return Err(Errno::EOPNOTSUPP),
        }
    }
    for a in plan {
        match a {
            Apply::Mtrr(v, def) => d.vcpus[v].st.lock().mtrr_def_type = def,
            Apply::Start(v, entry, ebx) => {
                let vcpu = &d.vcpus[v];
                let mut st = vcpu.st.lock();
                st.power = Power::StartPvh { entry, ebx };
                d.poke(vcpu, &mut st);
                log::info!(
                    "d{}v{v}: PVH entry {entry:#x}, start_info at {ebx:#x}",
                    d.id
                );
            }
        }
    }
    Ok(())
}

enum Apply {
    Mtrr(usize, u64),
    Start(usize, u32, u32),
}

/// One save record: typecode, instance, body.
pub type Record<'a> = (u16, u16, &'a [u8]);

/// The records of a context: (typecode, instance, body) up to END, which
/// must come, after a first HEADER of this format (-EINVAL otherwise, and
/// for a record overrunning the buffer).
pub fn parse(buf: &[u8]) -> Result<Vec<Record<'_>>, Errno> {
    let mut out = Vec::new();
    let mut at = 0usize;
    loop {
        let d =
            Descriptor::from_prefix(buf.get(at..).ok_or(Errno::EINVAL)?).ok_or(Errno::EINVAL)?;
        at += Descriptor::SIZE;
        let end = at.checked_add(d.length as usize).ok_or(Errno::EINVAL)?;
        let body = buf.get(at..end).ok_or(Errno::EINVAL)?;
        at = end;
        if out.is_empty() {
            let h = Header::from_bytes(body).ok_or(Errno::EINVAL)?;
            if d.typecode != save::HEADER
                || h.magic != save::FILE_MAGIC
                || h.version != save::FILE_VERSION
            {
                return Err(Errno::EINVAL);
            }
        }
        if d.typecode == save::END {
            return Ok(out);
        }
        out.push((d.typecode, d.instance, body));
    }
}

/// CR0.PE, CR0.ET, CR0.PG.
const CR0_PE: u64 = 1;
const CR0_ET: u64 = 1 << 4;
const CR0_PG: u64 = 1 << 31;
/// Segment attributes in Xen's save format (`segment_register.attr`, 12
/// bits): type (bits 0-3), S (4), DPL (5-6), P (7), AVL (8), L (9), D/B
/// (10), G (11). A flat 32-bit segment is present, S, D/B; code has type
/// bit 3.
const AR_PRESENT: u32 = 1 << 7;
const AR_S: u32 = 1 << 4;
const AR_DB: u32 = 1 << 10;
const AR_CODE: u32 = 1 << 3;

/// The entry point and start_info address of a CPU record in the PVH boot
/// state (what libxl and keel-builder send for the BSP): protected mode
/// with paging off, no long mode, flat 4 GiB 32-bit code and data
/// segments, EIP and EBX below 4 GiB. Anything else -EOPNOTSUPP (keel
/// loads no other CPU state yet), a state no CPU could hold -EINVAL.
fn pvh_boot_state(c: &HwCpu) -> Result<(u32, u32), Errno> {
    let flat = |base: u64, limit: u32, ar: u32| {
        base == 0
            && limit == 0xffff_ffff
            && ar & (AR_PRESENT | AR_S | AR_DB) == AR_PRESENT | AR_S | AR_DB
    };
    if c.cr0 & CR0_PG != 0 && c.cr0 & CR0_PE == 0 {
        return Err(Errno::EINVAL);
    }
    let pvh = c.cr0 & (CR0_PE | CR0_PG) == CR0_PE
        && c.cr0 & CR0_ET != 0
        && c.msr_efer == 0
        && flat(c.cs_base, c.cs_limit, c.cs_arbytes)
        && c.cs_arbytes & AR_CODE != 0
        && flat(c.ds_base, c.ds_limit, c.ds_arbytes)
        && flat(c.ss_base, c.ss_limit, c.ss_arbytes)
        && c.rip >> 32 == 0
        && c.rbx >> 32 == 0;
    if !pvh {
        return Err(Errno::EOPNOTSUPP);
    }
    Ok((c.rip as u32, c.rbx as u32))
}
