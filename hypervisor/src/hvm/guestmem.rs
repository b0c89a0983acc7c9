//! Guest memory from the hypervisor's side: table memory for p2m tables and
//! byte access to guest-physical memory through a p2m and the direct map.
use crate::arch::x86::cpu;
use crate::mm::p2m::P2m;
use crate::mm::paging::TableMemory;
use crate::mm::phys::frames;

/// Page-table frames from keel's frame allocator, reached via the direct map.
pub struct HostTables;

impl TableMemory for HostTables {
    fn alloc_table(&mut self) -> Option<u64> {
        let f = frames().alloc(1)?;
        self.table(f).fill(0);
        Some(f)
    }
    fn table(&mut self, phys: u64) -> &mut [u64; 512] {
        // SAFETY: `phys` is a page-table frame keel allocated; the direct
        // map covers it read/write.
        unsafe { &mut *(cpu::phys_to_virt(phys) as *mut [u64; 512]) }
    }
}

/// Copies guest-physical memory out; false if any byte is unmapped.
pub fn read(p2m: &P2m, mut gpa: u64, buf: &mut [u8]) -> bool {
    let mut done = 0;
    while done < buf.len() {
        let Some((hpa, _, _)) = p2m.translate(&mut HostTables, gpa) else {
            return false;
        };
        let n = ((4096 - (gpa & 0xfff)) as usize).min(buf.len() - done);
        // SAFETY: `hpa` is guest memory keel allocated and mapped in the
        // p2m; the direct map covers it; n stays within the 4 KiB page.
        unsafe {
            core::ptr::copy_nonoverlapping(
                cpu::phys_to_virt(hpa) as *const u8,
                buf[done..].as_mut_ptr(),
                n,
            )
        };
        done += n;
        gpa += n as u64;
    }
    true
}

/// Copies into guest-physical memory; false if any byte is unmapped.
pub fn write(p2m: &P2m, mut gpa: u64, data: &[u8]) -> bool {
    let mut done = 0;
    while done < data.len() {
        let Some((hpa, _, _)) = p2m.translate(&mut HostTables, gpa) else {
            return false;
        };
        let n = ((4096 - (gpa & 0xfff)) as usize).min(data.len() - done);
        // SAFETY: as in `read`.
        unsafe {
            core::ptr::copy_nonoverlapping(
                data[done..].as_ptr(),
                cpu::phys_to_virt(hpa) as *mut u8,
                n,
            )
        };
        done += n;
        gpa += n as u64;
    }
    true
}

/// Guest-physical reads for page walks (`hvm::decode::linear_to_gpa`).
pub struct P2mReader<'a>(pub &'a P2m);

impl crate::hvm::decode::GuestPhys for P2mReader<'_> {
    fn read_u64(&mut self, gpa: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        read(self.0, gpa, &mut b).then(|| u64::from_le_bytes(b))
    }
}
