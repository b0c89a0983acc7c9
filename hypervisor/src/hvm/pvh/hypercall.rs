//! The Xen hypercalls of a PVH domain: RAX = number, arguments in RDI,
//! RSI, RDX, R10, R8; the result in RAX. Guest buffers are reached through
//! the calling vCPU's page tables (-EFAULT on a bad pointer).

use super::{Domain, Power, Step};
use crate::hvm::cpuid;
use crate::hvm::guestmem::{self, HostTables};
use crate::hvm::vcpu::Vcpu;
use crate::mm::p2m::Perm;
use crate::mm::paging::PageSize;
use crate::xen::abi::{self, Errno, Hypercall, VcpuInfo, VcpuTimeInfo};
use crate::xen::evtchn::{Peer, Pending};
use alloc::format;
use alloc::string::String;

/// The calling vCPU's memory, by guest-virtual address.
struct CallerMem<'a> {
    d: &'a Domain,
    v: &'a dyn Vcpu,
}

impl crate::mgmt::CallerMem for CallerMem<'_> {
    fn write(&mut self, gva: u64, bytes: &[u8]) -> Result<(), keel_mgmt::Errno> {
        self.d
            .write(self.v, gva, bytes)
            .map_err(|e| keel_mgmt::Errno(e.0))
    }
}

impl Domain {
    /// EVENT_CHANNEL_OP: the 2-level ABI on this domain's own table.
    fn evtchn_op(&mut self, v: &mut dyn Vcpu, cmd: u64, arg: u64) -> Result<Step, Errno> {
        let mut b = [0u8; 12];
        let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        match cmd {
            abi::evtchnop::BIND_VIRQ => {
                self.read(v, arg, &mut b)?;
                let port = self.chans.bind_virq(u32_at(&b, 0), u32_at(&b, 4))?;
                self.write(v, arg + 8, &port.to_le_bytes())?;
            }
            abi::evtchnop::BIND_IPI => {
                self.read(v, arg, &mut b[..8])?;
                let port = self.chans.bind_ipi(u32_at(&b, 0))?;
                self.write(v, arg + 4, &port.to_le_bytes())?;
            }
            abi::evtchnop::ALLOC_UNBOUND => {
                self.read(v, arg, &mut b[..8])?;
                let remote = u16::from_le_bytes([b[2], b[3]]);
                let port = self
                    .chans
                    .alloc_unbound(abi::resolve_domid(remote, self.id))?;
                self.write(v, arg + 4, &port.to_le_bytes())?;
            }
            abi::evtchnop::SEND => {
                self.read(v, arg, &mut b[..4])?;
                if let Some(sig) = self.chans.send(u32_at(&b, 0))? {
                    if sig.dom == self.id {
                        self.signal(sig.port);
                    }
                }
            }
            abi::evtchnop::UNMASK => {
                self.read(v, arg, &mut b[..4])?;
                let port = u32_at(&b, 0);
                let vcpu = self.chans.notify_vcpu(port)?;
                if self.with_pending(vcpu as usize, |p, vi| p.unmask(port, vcpu, vi))? {
                    self.raise_upcall(vcpu as usize);
                }
            }
            abi::evtchnop::CLOSE => {
                self.read(v, arg, &mut b[..4])?;
                let port = u32_at(&b, 0);
                self.chans.close(Peer::Local, port)?;
                let _ = Pending::new(self.shared_info()).clear(port);
            }
            abi::evtchnop::BIND_VCPU => {
                self.read(v, arg, &mut b[..8])?;
                self.chans.bind_vcpu(u32_at(&b, 0), u32_at(&b, 4))?;
            }
            // No FIFO event channels: Linux falls back to 2-level, and
            // priorities are a FIFO feature (Xen's 2-level ABI answers
            // -ENOSYS too).
            abi::evtchnop::INIT_CONTROL | abi::evtchnop::SET_PRIORITY => return Err(Errno::ENOSYS),
            _ => {
                self.unimplemented += 1;
                log::debug!("d{}: event_channel_op {cmd}: -ENOSYS", self.id);
                return Err(Errno::ENOSYS);
            }
        }
        v.regs_mut().rax = 0;
        Ok(Step::Go)
    }

    /// Fills the hypercall page: entry `i` is `mov eax, i; vmcall|vmmcall; ret`.
    pub(super) fn write_hypercall_page(&self, v: &dyn Vcpu, gpa: u64) -> Result<(), String> {
        let call: [u8; 3] = if v.backend() == "VT-x" {
            [0x0f, 0x01, 0xc1]
        } else {
            [0x0f, 0x01, 0xd9]
        };
        let mut page = [0xccu8; 4096];
        for i in 0..(4096 / abi::HYPERCALL_PAGE_ENTRY_SIZE) {
            let e = &mut page[i * abi::HYPERCALL_PAGE_ENTRY_SIZE..];
            e[0] = 0xb8;
            e[1..5].copy_from_slice(&(i as u32).to_le_bytes());
            e[5..8].copy_from_slice(&call);
            e[8] = 0xc3;
        }
        if !guestmem::write(&self.p2m, gpa, &page) {
            return Err(format!(
                "hypercall page at {gpa:#x} is outside the domain's memory"
            ));
        }
        log::debug!("d{}: hypercall page at {gpa:#x}", self.id);
        Ok(())
    }

    /// One hypercall from the current vCPU.
    pub(super) fn hypercall(&mut self, v: &mut dyn Vcpu) -> Result<Step, Errno> {
        let r = *v.regs();
        let (a1, a2, a3) = (r.rdi, r.rsi, r.rdx);
        let ok = |v: &mut dyn Vcpu, x: u64| {
            v.regs_mut().rax = x;
            Ok(Step::Go)
        };
        if r.rax == keel_mgmt::HYPERCALL {
            let args = [a1, a2, a3, r.r10];
            let mut mem = CallerMem { d: self, v };
            let res = crate::mgmt::call(self.id, args, &crate::kernel::KeelHost, &mut mem);
            return match res {
                Ok(x) => ok(v, x),
                Err(e) => Err(Errno(e.0)),
            };
        }
        let Some(call) = Hypercall::from_u64(r.rax) else {
            self.unimplemented += 1;
            log::debug!("d{}: hypercall {} unknown: -ENOSYS", self.id, r.rax);
            return Err(Errno::ENOSYS);
        };
        match call {
            Hypercall::ConsoleIo => match a1 {
                abi::consoleio::WRITE => {
                    let mut buf = alloc::vec![0u8; (a2 as usize).min(16 * 1024)];
                    self.read(v, a3, &mut buf)?;
                    if self.initial {
                        // dom0 owns the console: its bytes go out as they are.
                        crate::console::guest_write(&buf);
                    } else {
                        for b in buf {
                            self.console(b);
                        }
                    }
                    ok(v, 0)
                }
                // Serial input switched to dom0 (three Ctrl-A toggle).
                abi::consoleio::READ if self.initial => {
                    let mut res = Ok(());
                    let n = crate::console::take_input(a2 as usize, |b| {
                        res = self.write(v, a3, b);
                        res.is_ok()
                    });
                    res?;
                    ok(v, n as u64)
                }
                abi::consoleio::READ => ok(v, 0),
                _ => Err(Errno::EINVAL),
            },
            Hypercall::XenVersion => match a1 {
                abi::xenver::VERSION => ok(
                    v,
                    abi::xenver::encode(cpuid::XEN_MAJOR as u16, cpuid::XEN_MINOR as u16),
                ),
                abi::xenver::EXTRAVERSION => {
                    let mut s = [0u8; abi::xenver::EXTRAVERSION_LEN];
                    s[..6].copy_from_slice(b"-keel\0");
                    self.write(v, a2, &s)?;
                    ok(v, 0)
                }
                abi::xenver::CAPABILITIES => {
                    let mut s = [0u8; abi::xenver::CAPABILITIES_LEN];
                    s[..14].copy_from_slice(b"hvm-3.0-x86_64");
                    self.write(v, a2, &s)?;
                    ok(v, 0)
                }
                abi::xenver::GET_FEATURES => {
                    let idx = {
                        let mut b = [0u8; 4];
                        self.read(v, a2, &mut b)?;
                        u32::from_le_bytes(b)
                    };
                    let map = if idx == 0 {
                        abi::xenfeat::pvh_submap(self.initial)
                    } else {
                        0
                    };
                    self.write(v, a2 + 4, &map.to_le_bytes())?;
                    ok(v, 0)
                }
                abi::xenver::PAGESIZE => ok(v, 4096),
                _ => {
                    self.unimplemented += 1;
                    Err(Errno::ENOSYS)
                }
            },
            Hypercall::MemoryOp => match a1 & abi::xenmem::MEMOP_CMD_MASK {
                abi::xenmem::MEMORY_MAP | abi::xenmem::MACHINE_MEMORY_MAP => {
                    // struct xen_memory_map { uint nr_entries; handle buffer }
                    let mut hdr = [0u8; 16];
                    self.read(v, a2, &mut hdr)?;
                    let max = u32::from_le_bytes(hdr[..4].try_into().unwrap()) as usize;
                    let buf = u64::from_le_bytes(hdr[8..].try_into().unwrap());
                    let n = self.e820.len().min(max);
                    for (i, &(addr, size, kind)) in self.e820[..n].iter().enumerate() {
                        let mut e = [0u8; 20];
                        e[..8].copy_from_slice(&addr.to_le_bytes());
                        e[8..16].copy_from_slice(&size.to_le_bytes());
                        e[16..].copy_from_slice(&(kind as u32).to_le_bytes());
                        self.write(v, buf + 20 * i as u64, &e)?;
                    }
                    self.write(v, a2, &(n as u32).to_le_bytes())?;
                    ok(v, 0)
                }
                abi::xenmem::ADD_TO_PHYSMAP => {
                    // struct xen_add_to_physmap { domid u16; size u16; space u32; idx u64; gpfn u64 }
                    let mut b = [0u8; 24];
                    self.read(v, a2, &mut b)?;
                    let space = u32::from_le_bytes(b[4..8].try_into().unwrap());
                    let gpfn = u64::from_le_bytes(b[16..24].try_into().unwrap());
                    let idx = u64::from_le_bytes(b[8..16].try_into().unwrap());
                    let hpa = match space {
                        abi::xenmapspace::SHARED_INFO => self.shared_info,
                        abi::xenmapspace::GRANT_TABLE => self.grant_frame(idx)?,
                        _ => {
                            self.unimplemented += 1;
                            log::debug!("d{}: add_to_physmap space {space}: -ENOSYS", self.id);
                            return Err(Errno::ENOSYS);
                        }
                    };
                    if gpfn >= 1 << 40 {
                        return Err(Errno::EINVAL);
                    }
                    let gpa = gpfn << 12;
                    let _ = self.p2m.unmap(&mut HostTables, gpa, PageSize::Size4K);
                    self.p2m
                        .map(&mut HostTables, gpa, hpa, PageSize::Size4K, Perm::RW)
                        .map_err(|_| Errno::EINVAL)?;
                    // Flush point: a present gfn now points elsewhere, for
                    // this vCPU now and for the others before their next entry.
                    v.flush_p2m();
                    self.p2m_changed();
                    if space == abi::xenmapspace::SHARED_INFO {
                        self.update_time();
                    }
                    log::debug!("d{}: space {space} idx {idx} at gfn {gpfn:#x}", self.id);
                    ok(v, 0)
                }
                abi::xenmem::CURRENT_RESERVATION | abi::xenmem::MAXIMUM_RESERVATION => {
                    ok(v, self.ram_pages)
                }
                abi::xenmem::MAXIMUM_GPFN => ok(v, self.gfn_limit - 1),
                _ => {
                    self.unimplemented += 1;
                    Err(Errno::ENOSYS)
                }
            },
            Hypercall::HvmOp => match a1 {
                abi::hvmop::SET_PARAM | abi::hvmop::GET_PARAM => {
                    // struct xen_hvm_param { domid u16; pad; index u32; value u64 }
                    let mut b = [0u8; 16];
                    self.read(v, a2, &mut b)?;
                    let index = u32::from_le_bytes(b[4..8].try_into().unwrap()) as usize;
                    let slot = self.params.get_mut(index).ok_or(Errno::EINVAL)?;
                    if a1 == abi::hvmop::SET_PARAM {
                        let val = u64::from_le_bytes(b[8..].try_into().unwrap());
                        *slot = val;
                        // CALLBACK_IRQ of type 2 (vector) names the upcall vector.
                        if index == abi::hvm_param::CALLBACK_IRQ as usize && val >> 56 == 2 {
                            self.callback_vector = val as u8;
                        }
                    } else {
                        let val = *slot;
                        self.write(v, a2 + 8, &val.to_le_bytes())?;
                    }
                    ok(v, 0)
                }
                abi::hvmop::SET_EVTCHN_UPCALL_VECTOR => {
                    // struct xen_hvm_evtchn_upcall_vector { u32 vcpu; u8 vector }
                    let mut b = [0u8; 5];
                    self.read(v, a2, &mut b)?;
                    let vcpu = u32::from_le_bytes(b[..4].try_into().unwrap()) as usize;
                    if b[4] < 16 {
                        return Err(Errno::EINVAL);
                    }
                    self.vcpus.get_mut(vcpu).ok_or(Errno::ENOENT)?.lapic_upcall = Some(b[4]);
                    ok(v, 0)
                }
                _ => {
                    self.unimplemented += 1;
                    Err(Errno::ENOSYS)
                }
            },
            Hypercall::SchedOp => match a1 {
                abi::schedop::YIELD => ok(v, 0),
                abi::schedop::BLOCK => {
                    // Sleep until an event or a timer is due.
                    v.regs_mut().rax = 0;
                    Ok(Step::Halt)
                }
                abi::schedop::POLL => {
                    // struct sched_poll { handle ports; u32 nr_ports; u64 timeout }
                    let mut b = [0u8; 24];
                    self.read(v, a2, &mut b)?;
                    let ptr = u64::from_le_bytes(b[..8].try_into().unwrap());
                    let n = u32::from_le_bytes(b[8..12].try_into().unwrap()) as usize;
                    let timeout = u64::from_le_bytes(b[16..24].try_into().unwrap());
                    if n > 128 {
                        return Err(Errno::EINVAL); // Xen's limit
                    }
                    let mut raw = alloc::vec![0u8; 4 * n];
                    self.read(v, ptr, &mut raw)?;
                    let ports: alloc::vec::Vec<u32> = raw
                        .chunks(4)
                        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
                        .collect();
                    if ports.iter().any(|&p| !self.chans.port_is_valid(p)) {
                        return Err(Errno::EINVAL);
                    }
                    let i = self.cur;
                    self.vcpus[i].poll = ports;
                    self.vcpus[i].poll_timeout_ns = (timeout != 0).then_some(timeout);
                    v.regs_mut().rax = 0;
                    if self.poll_done(i) {
                        self.vcpus[i].poll.clear();
                        self.vcpus[i].poll_timeout_ns = None;
                        return Ok(Step::Go);
                    }
                    Ok(Step::Halt)
                }
                abi::schedop::SHUTDOWN => {
                    let mut b = [0u8; 4];
                    self.read(v, a2, &mut b)?;
                    Ok(Step::End(super::Outcome::Shutdown(u32::from_le_bytes(b))))
                }
                _ => {
                    self.unimplemented += 1;
                    log::debug!("d{}: sched_op {a1}: -ENOSYS", self.id);
                    Err(Errno::ENOSYS)
                }
            },
            Hypercall::VcpuOp => self.vcpu_op(v, a1, a2 as usize, a3),
            Hypercall::SetTimerOp => {
                // a1 = absolute system time in ns; 0 cancels.
                self.vcpus[self.cur].xen_timer_ns = (a1 != 0).then_some(a1);
                ok(v, 0)
            }
            Hypercall::EventChannelOp => self.evtchn_op(v, a1, a2),
            Hypercall::GrantTableOp => self.grant_table_op(v, a1, a2, a3),
            Hypercall::PlatformOp => self.platform_op(v, a1),
            other => {
                self.unimplemented += 1;
                log::debug!(
                    "d{}: hypercall {other:?} ({a1:#x}, {a2:#x}, {a3:#x}) at RIP {:#x}: -ENOSYS",
                    self.id,
                    r.rip
                );
                Err(Errno::ENOSYS)
            }
        }
    }

    /// VCPUOP_*: `vcpu` is the target vCPU's number.
    fn vcpu_op(
        &mut self,
        v: &mut dyn Vcpu,
        cmd: u64,
        vcpu: usize,
        arg: u64,
    ) -> Result<Step, Errno> {
        if vcpu >= self.vcpus.len() {
            return Err(Errno::ENOENT);
        }
        let me = vcpu == self.cur;
        let ret = match cmd {
            abi::vcpuop::IS_UP => (self.vcpus[vcpu].power == Power::Up) as u64,
            abi::vcpuop::REGISTER_VCPU_INFO => {
                // struct vcpu_register_vcpu_info { u64 mfn; u32 offset; u32 rsvd }
                let mut b = [0u8; 16];
                self.read(v, arg, &mut b)?;
                let gfn = u64::from_le_bytes(b[..8].try_into().unwrap());
                let offset = u32::from_le_bytes(b[8..12].try_into().unwrap()) as u64;
                let size = core::mem::size_of::<VcpuInfo>() as u64;
                if offset + size > 4096 || gfn >= self.gfn_limit {
                    return Err(Errno::EINVAL);
                }
                if self.vcpus[vcpu].vcpu_info_gpa.is_some() {
                    return Err(Errno::EINVAL); // Xen allows it once
                }
                let gpa = (gfn << 12) + offset;
                self.vcpus[vcpu].vcpu_info_gpa = Some(gpa);
                self.update_time();
                log::debug!("d{}: vCPU{vcpu} vcpu_info at {gpa:#x}", self.id);
                0
            }
            abi::vcpuop::REGISTER_VCPU_TIME_MEMORY_AREA => {
                // struct vcpu_register_time_memory_area { guest virtual
                // address of a vcpu_time_info }: keel resolves it once, to
                // the guest-physical page behind it (a kernel page).
                let mut b = [0u8; 8];
                self.read(v, arg, &mut b)?;
                let gva = u64::from_le_bytes(b);
                let size = core::mem::size_of::<VcpuTimeInfo>() as u64;
                if gva & 0xfff > 4096 - size {
                    return Err(Errno::EINVAL);
                }
                let gpa = self.gpa_of(v, gva, false).ok_or(Errno::EFAULT)?;
                if gpa >> 12 >= self.gfn_limit {
                    return Err(Errno::EINVAL);
                }
                self.vcpus[vcpu].time_area_gpa = Some(gpa);
                self.update_time();
                0
            }
            abi::vcpuop::SET_SINGLESHOT_TIMER if me => {
                // struct vcpu_set_singleshot_timer { u64 timeout_abs_ns; u32 flags }
                let mut b = [0u8; 12];
                self.read(v, arg, &mut b)?;
                let t = u64::from_le_bytes(b[..8].try_into().unwrap());
                let flags = u32::from_le_bytes(b[8..12].try_into().unwrap());
                if flags & abi::vcpuop::VCPU_SSHOTTMR_FUTURE != 0 && t < self.now_ns() {
                    return Err(Errno::ETIME);
                }
                self.vcpus[vcpu].xen_timer_ns = Some(t);
                0
            }
            abi::vcpuop::STOP_SINGLESHOT_TIMER if me => {
                self.vcpus[vcpu].xen_timer_ns = None;
                0
            }
            // Xen only lets a vCPU set its own timers.
            abi::vcpuop::SET_SINGLESHOT_TIMER | abi::vcpuop::STOP_SINGLESHOT_TIMER => {
                return Err(Errno::EINVAL)
            }
            // keel has no periodic vCPU timer to stop.
            abi::vcpuop::STOP_PERIODIC_TIMER => 0,
            // Accepted; keel does not account steal time yet, so the area
            // stays as the guest left it (all zero).
            abi::vcpuop::REGISTER_RUNSTATE_MEMORY_AREA => 0,
            _ => {
                self.unimplemented += 1;
                log::debug!("d{}: vcpu_op {cmd}: -ENOSYS", self.id);
                return Err(Errno::ENOSYS);
            }
        };
        v.regs_mut().rax = ret;
        Ok(Step::Go)
    }

    /// The host frame behind grant-table frame `idx`, allocated (zeroed)
    /// on first use; the table grows to include it.
    fn grant_frame(&mut self, idx: u64) -> Result<u64, Errno> {
        if idx & abi::xenmapspace::XENMAPIDX_GRANT_TABLE_STATUS != 0 {
            return Err(Errno::EINVAL); // status frames are v2's
        }
        let idx = self.grant.map_frame(idx)? as usize;
        while self.grant_frames.len() <= idx {
            let f = crate::mm::phys::frames().alloc(1).ok_or(Errno::ENOMEM)?;
            super::zero(f, 4096);
            self.grant_frames.push(f);
        }
        Ok(self.grant_frames[idx])
    }

    /// GNTTABOP_*: the table's size and version. Mapping and copying
    /// grants (for backends) come with the split drivers: -ENOSYS.
    fn grant_table_op(
        &mut self,
        v: &mut dyn Vcpu,
        cmd: u64,
        arg: u64,
        count: u64,
    ) -> Result<Step, Errno> {
        let mut b = [0u8; 16];
        let own = |b: &[u8], me: u16| {
            let d = u16::from_le_bytes([b[0], b[1]]);
            d == abi::DOMID_SELF || d == me
        };
        match cmd {
            abi::gnttabop::QUERY_SIZE => {
                if count != 1 {
                    return Err(Errno::EINVAL);
                }
                // struct gnttab_query_size { u16 dom; u32 nr_frames, max_nr_frames; i16 status }
                self.read(v, arg, &mut b)?;
                let (n, max) = self.grant.query_size();
                let status: i16 = if own(&b, self.id) {
                    b[4..8].copy_from_slice(&n.to_le_bytes());
                    b[8..12].copy_from_slice(&max.to_le_bytes());
                    0
                } else {
                    -1 // GNTST_general_error: only its own table
                };
                b[12..14].copy_from_slice(&status.to_le_bytes());
                self.write(v, arg, &b)?;
            }
            abi::gnttabop::SET_VERSION => {
                let mut w = [0u8; 4];
                self.read(v, arg, &mut w)?;
                let r = self.grant.set_version(u32::from_le_bytes(w));
                self.write(v, arg, &self.grant.get_version().to_le_bytes())?;
                r?;
            }
            abi::gnttabop::GET_VERSION => {
                self.read(v, arg, &mut b[..8])?;
                if !own(&b, self.id) {
                    return Err(Errno::EPERM);
                }
                self.write(v, arg + 4, &self.grant.get_version().to_le_bytes())?;
            }
            _ => {
                self.unimplemented += 1;
                log::debug!("d{}: grant_table_op {cmd}: -ENOSYS", self.id);
                return Err(Errno::ENOSYS);
            }
        }
        v.regs_mut().rax = 0;
        Ok(Step::Go)
    }

    /// XENPF_* (dom0 only): the physical CPUs and setting the wall clock.
    /// Others (firmware info, power management, ...): -ENOSYS.
    fn platform_op(&mut self, v: &mut dyn Vcpu, arg: u64) -> Result<Step, Errno> {
        const INTERFACE_VERSION: u32 = 0x0300_0001;
        const GET_CPUINFO: u32 = 55;
        const SETTIME32: u32 = 17;
        const SETTIME64: u32 = 62;
        const PCPU_ONLINE: u32 = 1;
        const PCPU_INVALID: u32 = 2;
        if !self.initial {
            return Err(Errno::EPERM);
        }
        // struct xen_platform_op { u32 cmd; u32 interface_version; union u @ 8 }
        let mut b = [0u8; 28];
        self.read(v, arg, &mut b)?;
        let cmd = u32::from_le_bytes(b[0..4].try_into().unwrap());
        if u32::from_le_bytes(b[4..8].try_into().unwrap()) != INTERFACE_VERSION {
            return Err(Errno::EACCES);
        }
        match cmd {
            SETTIME32 | SETTIME64 => {
                // settime32 { u32 secs; u32 nsecs; u64 system_time }
                // settime64 { u64 secs; u32 nsecs; u32 mbz; u64 system_time }
                let (secs, nsecs, system_time) = if cmd == SETTIME32 {
                    let w = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
                    (
                        w(8) as u64,
                        w(12),
                        u64::from_le_bytes(b[16..24].try_into().unwrap()),
                    )
                } else {
                    let mut t = [0u8; 32];
                    self.read(v, arg, &mut t)?;
                    let q = |o: usize| u64::from_le_bytes(t[o..o + 8].try_into().unwrap());
                    if q(16) >> 32 != 0 {
                        return Err(Errno::EINVAL); // mbz
                    }
                    (q(8), q(16) as u32, q(24))
                };
                if nsecs >= 1_000_000_000 {
                    return Err(Errno::EINVAL);
                }
                self.set_wallclock(secs, nsecs, system_time);
                v.regs_mut().rax = 0;
                return Ok(Step::Go);
            }
            GET_CPUINFO => {
                // struct xenpf_pcpuinfo { u32 xen_cpuid (in); u32
                // max_present, flags, apic_id, acpi_id (out) }
                use crate::arch::x86::smp;
                let cpu = u32::from_le_bytes(b[8..12].try_into().unwrap());
                let n = smp::online_count();
                let (flags, apic) = match smp::apic_id_of(cpu).filter(|_| cpu < n) {
                    Some(a) => (PCPU_ONLINE, a),
                    None => (PCPU_INVALID, 0),
                };
                for (o, x) in [(12, n - 1), (16, flags), (20, apic), (24, cpu)] {
                    b[o..o + 4].copy_from_slice(&x.to_le_bytes());
                }
                self.write(v, arg, &b)?;
            }
            _ => {
                self.unimplemented += 1;
                log::debug!("d{}: platform_op {cmd}: -ENOSYS", self.id);
                return Err(Errno::ENOSYS);
            }
        }
        v.regs_mut().rax = 0;
        Ok(Step::Go)
    }

    /// Sets the wall clock so that `secs.nsecs` was the time at system
    /// time `system_time` (ns): shared_info then holds the wall time at
    /// system time 0, as Xen's `do_settime` keeps it.
    pub(super) fn set_wallclock(&mut self, secs: u64, nsecs: u32, system_time: u64) {
        let at = secs as u128 * 1_000_000_000 + nsecs as u128;
        let base = at.saturating_sub(system_time as u128);
        let (sec, nsec) = ((base / 1_000_000_000) as u64, (base % 1_000_000_000) as u32);
        let si = self.shared_info();
        si.wc_version = si.wc_version.wrapping_add(1) | 1;
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        si.wc_sec = sec as u32;
        si.wc_sec_hi = (sec >> 32) as u32;
        si.wc_nsec = nsec;
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        si.wc_version = si.wc_version.wrapping_add(1);
    }
}
