//! The one way hypercalls reach their caller's memory: by guest-virtual
//! address, through the calling vCPU's own page tables and its domain's
//! p2m, page by page. Any unmapped, non-canonical, read-only (for a
//! write) or non-RAM byte makes the whole access -EFAULT, and nothing
//! keel does with a guest pointer can fault keel itself.
//!
//! Hypercalls come from CPL 0 only ([`super::dispatch`]), so these are
//! supervisor accesses, as Xen's `copy_{to,from}_guest` for HVM/PVH
//! guests (`hvm_copy_*_guest_linear` with no `PFEC_user_mode`): a page
//! the guest's kernel alone may touch (U/S clear) is as good as a user
//! page, and a read-only page refuses a write while CR0.WP is set (as
//! the CPU would refuse the kernel's own store), which Linux always sets.
//! Where keel differs from Xen 4.17: a non-canonical address is -EFAULT
//! (Xen's walk ignores bits 63:48 and reaches the canonical alias), and
//! SMAP is not applied (Xen refuses a user page to a caller with CR4.SMAP
//! set and RFLAGS.AC clear; Linux's privcmd sets AC around the call, so
//! its callers see no difference). The first page of a copy that runs
//! into a bad one has been written when the -EFAULT comes, as on Xen.

use crate::domain::Memory;
use crate::hvm::decode::{self, GuestPhys};
use crate::hvm::vcpu::Vcpu as HwVcpu;
use crate::xen::abi::{Errno, Pod};
use core::mem::{size_of, MaybeUninit};

/// The most one hypercall copies in one go (callers bound their counts;
/// this bounds any single buffer).
pub const MAX_COPY: usize = 1 << 20;

/// CR0.WP: supervisor writes obey read-only entries.
const CR0_WP: u64 = 1 << 16;

/// The calling vCPU's view of memory.
pub struct GuestVirt<'a> {
    mem: &'a Memory,
    cr: [u64; 4],
}

struct Walk<'a>(&'a Memory);

impl GuestPhys for Walk<'_> {
    fn read_u64(&mut self, gpa: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        self.0.read(gpa, &mut b).then(|| u64::from_le_bytes(b))
    }
}

impl<'a> GuestVirt<'a> {
    /// The memory of the vCPU `hw`, whose control registers (paging mode,
    /// page-table root) say how its addresses translate.
    pub fn new(mem: &'a Memory, hw: &dyn HwVcpu) -> Self {
        GuestVirt {
            mem,
            cr: hw.control_regs(),
        }
    }

    /// The guest-physical address of `gva`, checked for this access.
    pub fn gpa(&self, gva: u64, write: bool) -> Result<u64, Errno> {
        let [cr0, cr3, cr4, efer] = self.cr;
        let long = efer & (1 << 10) != 0 && cr0 & (1 << 31) != 0;
        // Bits 63:47 all equal (4-level paging).
        if long && ((gva as i64) << 16 >> 16) as u64 != gva {
            return Err(Errno::EFAULT);
        }
        // A supervisor write honours a read-only entry only under CR0.WP.
        let write = write && cr0 & CR0_WP != 0;
        let gpa = decode::linear_to_gpa_for(&mut Walk(self.mem), cr0, cr3, cr4, efer, gva, write)
            .ok_or(Errno::EFAULT)?;
        if !self.is_ram(gpa) {
            return Err(Errno::EFAULT);
        }
        Ok(gpa)
    }

    /// Guest memory keel may copy to and from: mapped in the p2m and, for
    /// dom0 (whose p2m also maps device MMIO 1:1), the host's RAM.
    fn is_ram(&self, gpa: u64) -> bool {
        let Some(hpa) = self.mem.translate(gpa) else {
            return false;
        };
        !self.mem.identity || crate::mm::host_ram(hpa)
    }

    fn each_page(
        &self,
        gva: u64,
        len: usize,
        write: bool,
        mut f: impl FnMut(u64, usize, usize) -> bool,
    ) -> Result<(), Errno> {
        if len > MAX_COPY || gva.checked_add(len as u64).is_none() {
            return Err(Errno::EFAULT);
        }
        let mut done = 0;
        while done < len {
            let a = gva + done as u64;
            let n = ((4096 - (a & 0xfff)) as usize).min(len - done);
            let gpa = self.gpa(a, write)?;
            if !f(gpa, done, n) {
                return Err(Errno::EFAULT);
            }
            done += n;
        }
        Ok(())
    }

    /// Copies `buf.len()` bytes from guest-virtual `gva`.
    pub fn read(&self, gva: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let len = buf.len();
        self.each_page(gva, len, false, |gpa, off, n| {
            self.mem.read(gpa, &mut buf[off..off + n])
        })
    }

    /// Copies `data` to guest-virtual `gva` (every byte must be writable
    /// through the guest's page tables).
    pub fn write(&self, gva: u64, data: &[u8]) -> Result<(), Errno> {
        self.each_page(gva, data.len(), true, |gpa, off, n| {
            self.mem.write(gpa, &data[off..off + n])
        })
    }

    /// A `T` from guest-virtual `gva`.
    pub fn read_obj<T: Pod>(&self, gva: u64) -> Result<T, Errno> {
        let mut t = MaybeUninit::<T>::zeroed();
        // SAFETY: the bytes of a zeroed `MaybeUninit<T>` are initialized;
        // the slice covers exactly them and lives as long as `t`.
        let bytes =
            unsafe { core::slice::from_raw_parts_mut(t.as_mut_ptr() as *mut u8, size_of::<T>()) };
        self.read(gva, bytes)?;
        // SAFETY: `T: Pod`: every bit pattern is a valid `T`.
        Ok(unsafe { t.assume_init() })
    }

    /// An array of `n` `T`s from guest-virtual `gva`.
    pub fn read_array<T: Pod>(&self, gva: u64, n: usize) -> Result<alloc::vec::Vec<T>, Errno> {
        let size = size_of::<T>();
        if n.checked_mul(size).is_none_or(|b| b > MAX_COPY) {
            return Err(Errno::EFAULT);
        }
        (0..n)
            .map(|i| self.read_obj(gva + (i * size) as u64))
            .collect()
    }

    /// A toolstack-ABI value (`keel_xen_abi`, decoded field by field)
    /// from guest-virtual `gva`.
    pub fn read_abi<T: keel_xen_abi::Pod>(&self, gva: u64) -> Result<T, Errno> {
        let mut b = alloc::vec![0u8; T::SIZE];
        self.read(gva, &mut b)?;
        T::from_bytes(&b).ok_or(Errno::EFAULT)
    }

    /// Writes a toolstack-ABI value (padding zeroed) to guest-virtual `gva`.
    pub fn write_abi<T: keel_xen_abi::Pod>(&self, gva: u64, v: &T) -> Result<(), Errno> {
        let mut b = alloc::vec![0u8; T::SIZE];
        v.write_to(&mut b).ok_or(Errno::EFAULT)?;
        self.write(gva, &b)
    }

    pub fn write_u16(&self, gva: u64, v: u16) -> Result<(), Errno> {
        self.write(gva, &v.to_le_bytes())
    }
    pub fn write_u32(&self, gva: u64, v: u32) -> Result<(), Errno> {
        self.write(gva, &v.to_le_bytes())
    }
    pub fn write_u64(&self, gva: u64, v: u64) -> Result<(), Errno> {
        self.write(gva, &v.to_le_bytes())
    }
    pub fn read_u32(&self, gva: u64) -> Result<u32, Errno> {
        let mut b = [0u8; 4];
        self.read(gva, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
}

/// Writes field `$f` of a `$t` at guest-virtual `$base` (only that field:
/// keel never copies a struct's padding out).
macro_rules! put {
    ($g:expr, $base:expr, $t:ty, $f:ident, $v:expr) => {{
        let v = $v;
        $g.write(
            $base + core::mem::offset_of!($t, $f) as u64,
            &v.to_le_bytes(),
        )
    }};
}
pub(crate) use put;
