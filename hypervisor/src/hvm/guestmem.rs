//! Guest-physical memory through a p2m, for the backends' own needs
//! (fetching an instruction's bytes, reading a guest's IDT).
use crate::mm::p2m::P2m;
use crate::mm::phys::{self, Tables};

/// Copies guest-physical memory out; false if any byte is unmapped.
pub fn read(p2m: &P2m, mut gpa: u64, buf: &mut [u8]) -> bool {
    let mut done = 0;
    while done < buf.len() {
        let Some((hpa, _, _)) = p2m.translate(&mut Tables, gpa) else {
            return false;
        };
        let n = ((4096 - (gpa & 0xfff)) as usize).min(buf.len() - done);
        phys::read(hpa, &mut buf[done..done + n]);
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
