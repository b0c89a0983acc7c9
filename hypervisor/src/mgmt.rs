//! keel's management hypercall ([`keel_mgmt`]): what `keelctl` in dom0
//! asks of keel. Only dom0 may call it; every other domain gets -EPERM
//! before any of its arguments is read. The host facts and the caller's
//! memory come through traits, so the dispatch is host-tested.

use alloc::vec;
use alloc::vec::Vec;
use keel_mgmt::{Cmd, DomainEntry, Errno, HostInfo, ABI_VERSION, CONSOLE_CLEAR};

/// What keel knows about itself and its domains.
pub trait Host {
    fn host_info(&self) -> HostInfo;
    /// Domains with id >= `first`, in id order.
    fn domains(&self, first: u32) -> Vec<DomainEntry>;
    /// See [`crate::conring::Ring::read`].
    fn console_read(&self, out: &mut [u8], clear: bool) -> usize;
}

/// The caller's memory, by the guest-virtual addresses it passed.
pub trait CallerMem {
    fn write(&mut self, gva: u64, bytes: &[u8]) -> Result<(), Errno>;
}

/// The most one call copies out (the console ring's size is far below).
const MAX_COPY: u64 = 1 << 20;

/// Serves one management call from domain `caller`: `args` are arg1..arg4
/// (command, buffer, length, command argument).
pub fn call(
    caller: u16,
    args: [u64; 4],
    host: &dyn Host,
    mem: &mut dyn CallerMem,
) -> Result<u64, Errno> {
    if caller != 0 {
        return Err(Errno::EPERM);
    }
    let [cmd, buf, len, arg] = args;
    let cmd = Cmd::from_u64(cmd).ok_or(Errno::EINVAL)?;
    match cmd {
        Cmd::Version => Ok(ABI_VERSION as u64),
        Cmd::HostInfo => {
            if len < HostInfo::SIZE as u64 {
                return Err(Errno::ENOSPC);
            }
            mem.write(buf, &host.host_info().encode())?;
            Ok(HostInfo::SIZE as u64)
        }
        Cmd::DomainList => {
            let fit = (len.min(MAX_COPY) / DomainEntry::SIZE as u64) as usize;
            if fit == 0 {
                return Err(Errno::ENOSPC);
            }
            let first = u32::try_from(arg).map_err(|_| Errno::EINVAL)?;
            let doms = host.domains(first);
            let n = doms.len().min(fit);
            let mut out = Vec::with_capacity(n * DomainEntry::SIZE);
            for d in &doms[..n] {
                out.extend_from_slice(&d.encode());
            }
            mem.write(buf, &out)?;
            Ok(n as u64)
        }
        Cmd::ConsoleRead => {
            if arg & !CONSOLE_CLEAR != 0 {
                return Err(Errno::EINVAL);
            }
            let mut out = vec![0u8; len.min(MAX_COPY) as usize];
            // Read first, clear only once the copy succeeded: a bad buffer
            // must not lose the log.
            let n = host.console_read(&mut out, false);
            mem.write(buf, &out[..n])?;
            if arg & CONSOLE_CLEAR != 0 {
                host.console_read(&mut [], true);
            }
            Ok(n as u64)
        }
    }
}

/// Domain `d` as `keelctl list` sees it.
pub fn domain_entry(d: &crate::domain::Domain) -> DomainEntry {
    use core::sync::atomic::Ordering;
    use keel_mgmt::{dflags, FixedStr};
    let blocked = d.vcpus.iter().all(|v| v.st.lock().wait.is_some());
    let mut flags = if d.is_ending() {
        dflags::SHUTDOWN
    } else if blocked {
        dflags::BLOCKED
    } else {
        dflags::RUNNING
    };
    if d.privileged {
        flags |= dflags::PRIVILEGED;
    }
    DomainEntry {
        domid: d.id as u32,
        flags,
        vcpus: d.vcpus.len() as u32,
        mem_bytes: d.mem.ram_pages * 4096,
        cpu_time_ns: d
            .vcpus
            .iter()
            .map(|v| v.stats.run_ns.load(Ordering::Relaxed))
            .sum(),
        name: FixedStr::new(&d.name),
    }
}

/// What the management hypercall reports about this machine.
#[cfg(target_os = "none")]
pub struct KeelHost;

#[cfg(target_os = "none")]
impl Host for KeelHost {
    fn host_info(&self) -> HostInfo {
        use crate::arch::x86::{cpu, smp, time};
        use keel_mgmt::{feature, FixedStr, Vendor};
        let (vendor, features) = match cpu::features().vendor {
            cpu::Vendor::Intel => (
                Vendor::Intel,
                feature::VMX | feature::EPT | feature::TAGGED_TLB,
            ),
            cpu::Vendor::Amd => (
                Vendor::Amd,
                feature::SVM | feature::NPT | feature::TAGGED_TLB,
            ),
            cpu::Vendor::Other => (Vendor::Unknown, 0),
        };
        HostInfo {
            version: FixedStr::new(env!("CARGO_PKG_VERSION")),
            vendor: vendor as u32,
            hvm_features: features,
            nr_cpus: smp::online_count(),
            tsc_khz: time::tsc_khz() as u32,
            total_bytes: crate::bootinfo::get().map_or(0, |b| b.usable_bytes()),
            free_bytes: crate::mm::phys::frames().free_bytes(),
            scheduler: FixedStr::new("credit"),
            console_ring_bytes: crate::conring::RING_BYTES as u32,
        }
    }

    fn domains(&self, first: u32) -> Vec<DomainEntry> {
        crate::domain::table::all()
            .iter()
            .filter(|d| d.id as u32 >= first)
            .map(|d| domain_entry(d))
            .collect()
    }

    fn console_read(&self, out: &mut [u8], clear: bool) -> usize {
        crate::console::ring_read(out, clear)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::RefCell;
    use keel_mgmt::{dflags, FixedStr};
    use std::collections::BTreeMap;

    struct FakeHost {
        ring: RefCell<Vec<u8>>,
        doms: Vec<DomainEntry>,
    }

    impl Host for FakeHost {
        fn host_info(&self) -> HostInfo {
            HostInfo {
                version: FixedStr::new("0.1.0"),
                nr_cpus: 2,
                ..Default::default()
            }
        }
        fn domains(&self, first: u32) -> Vec<DomainEntry> {
            self.doms
                .iter()
                .filter(|d| d.domid >= first)
                .copied()
                .collect()
        }
        fn console_read(&self, out: &mut [u8], clear: bool) -> usize {
            let r = self.ring.borrow();
            let n = r.len().min(out.len());
            out[..n].copy_from_slice(&r[r.len() - n..]);
            drop(r);
            if clear {
                self.ring.borrow_mut().clear();
            }
            n
        }
    }

    /// Guest memory: writable pages only in [0x1000, 0x3000).
    #[derive(Default)]
    struct Mem(BTreeMap<u64, u8>, u32);

    impl CallerMem for Mem {
        fn write(&mut self, gva: u64, bytes: &[u8]) -> Result<(), Errno> {
            self.1 += 1;
            let end = gva.checked_add(bytes.len() as u64).ok_or(Errno::EFAULT)?;
            if gva < 0x1000 || end > 0x3000 {
                return Err(Errno::EFAULT);
            }
            for (i, b) in bytes.iter().enumerate() {
                self.0.insert(gva + i as u64, *b);
            }
            Ok(())
        }
    }

    impl Mem {
        fn get(&self, gva: u64, n: usize) -> Vec<u8> {
            (0..n as u64).map(|i| self.0[&(gva + i)]).collect()
        }
    }

    fn host() -> FakeHost {
        let d = |id: u32, name: &str| DomainEntry {
            domid: id,
            flags: dflags::RUNNING,
            vcpus: 1,
            mem_bytes: 1 << 20,
            cpu_time_ns: 0,
            name: FixedStr::new(name),
        };
        FakeHost {
            ring: RefCell::new(b"(XEN) hello\n(XEN) world\n".to_vec()),
            doms: vec![d(0, "Domain-0"), d(1, "one"), d(2, "two")],
        }
    }

    #[test]
    fn only_dom0_may_call_and_nothing_is_touched_otherwise() {
        let h = host();
        let mut m = Mem::default();
        for cmd in 0..5 {
            assert_eq!(
                call(1, [cmd, 0x1000, 4096, 0], &h, &mut m),
                Err(Errno::EPERM)
            );
        }
        assert_eq!(m.1, 0, "no memory access for a refused caller");
        assert_eq!(call(0, [0, 0, 0, 0], &h, &mut m), Ok(ABI_VERSION as u64));
    }

    #[test]
    fn host_info_round_trips() {
        let h = host();
        let mut m = Mem::default();
        assert_eq!(
            call(0, [1, 0x1000, HostInfo::SIZE as u64, 0], &h, &mut m),
            Ok(HostInfo::SIZE as u64)
        );
        let got = HostInfo::decode(&m.get(0x1000, HostInfo::SIZE)).unwrap();
        assert_eq!(got, h.host_info());
        assert_eq!(
            call(0, [1, 0x1000, HostInfo::SIZE as u64 - 1, 0], &h, &mut m),
            Err(Errno::ENOSPC)
        );
        // A buffer that runs off the caller's memory.
        assert_eq!(
            call(0, [1, 0x2fc0, 4096, 0], &h, &mut m),
            Err(Errno::EFAULT)
        );
    }

    #[test]
    fn domain_list_pages() {
        let h = host();
        let mut m = Mem::default();
        // Room for two: the first page holds 0 and 1.
        assert_eq!(call(0, [2, 0x1000, 128, 0], &h, &mut m), Ok(2));
        let e = DomainEntry::decode(&m.get(0x1040, 64)).unwrap();
        assert_eq!((e.domid, e.name.as_str()), (1, "one"));
        // The next page starts after the last id.
        assert_eq!(call(0, [2, 0x1000, 128, 2], &h, &mut m), Ok(1));
        assert_eq!(DomainEntry::decode(&m.get(0x1000, 64)).unwrap().domid, 2);
        assert_eq!(call(0, [2, 0x1000, 128, 3], &h, &mut m), Ok(0));
        assert_eq!(call(0, [2, 0x1000, 63, 0], &h, &mut m), Err(Errno::ENOSPC));
        assert_eq!(
            call(0, [2, 0x1000, 128, 1 << 40], &h, &mut m),
            Err(Errno::EINVAL)
        );
    }

    #[test]
    fn console_read_and_clear() {
        let h = host();
        let mut m = Mem::default();
        assert_eq!(call(0, [3, 0x1000, 4096, 0], &h, &mut m), Ok(24));
        assert_eq!(m.get(0x1000, 24), b"(XEN) hello\n(XEN) world\n");
        // Small buffer: the newest bytes.
        assert_eq!(call(0, [3, 0x1000, 6, 0], &h, &mut m), Ok(6));
        assert_eq!(m.get(0x1000, 6), b"world\n");
        // A failed copy does not clear.
        assert_eq!(
            call(0, [3, 0x2ff0, 4096, CONSOLE_CLEAR], &h, &mut m),
            Err(Errno::EFAULT)
        );
        assert_eq!(h.ring.borrow().len(), 24);
        assert_eq!(
            call(0, [3, 0x1000, 4096, CONSOLE_CLEAR], &h, &mut m),
            Ok(24)
        );
        assert!(h.ring.borrow().is_empty());
        assert_eq!(
            call(0, [3, 0x1000, 4096, 2], &h, &mut m),
            Err(Errno::EINVAL)
        );
    }

    #[test]
    fn hostile_arguments() {
        let h = host();
        let mut m = Mem::default();
        assert_eq!(call(0, [99, 0, 0, 0], &h, &mut m), Err(Errno::EINVAL));
        assert_eq!(call(0, [u64::MAX, 0, 0, 0], &h, &mut m), Err(Errno::EINVAL));
        // Huge lengths are capped, wrapping addresses fault.
        assert_eq!(
            call(0, [3, u64::MAX - 4, u64::MAX, 0], &h, &mut m),
            Err(Errno::EFAULT)
        );
        assert_eq!(
            call(0, [2, u64::MAX - 4, u64::MAX, 0], &h, &mut m),
            Err(Errno::EFAULT)
        );
    }
}
