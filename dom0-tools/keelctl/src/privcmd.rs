//! `/dev/xen/privcmd` ([`keel_xendev::privcmd`]) as keelctl's hypercall
//! transport.

pub use keel_xendev::privcmd::*;

impl crate::xen::XenCall for Privcmd {
    fn call(&self, op: u64, args: [u64; 5], mem: &mut [u8]) -> Result<u64, CallError> {
        prefault(mem);
        // `mem` stays mutably borrowed for the whole hypercall, so every
        // address in `args` that points into it stays valid and unaliased.
        self.hypercall(op, args)
    }

    fn with_foreign(
        &self,
        dom: u16,
        gfns: &[u64],
        f: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(), (usize, CallError)> {
        let mut m = self.map_foreign(dom, gfns)?;
        f(m.as_mut_slice());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_through_a_file_that_is_not_privcmd_fail_cleanly() {
        let f = std::env::temp_dir().join(format!("keelctl-xencall-{}", std::process::id()));
        std::fs::write(&f, b"").unwrap();
        let p = Privcmd::open(&f).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(
            crate::xen::XenCall::call(&p, 17, [0; 5], &mut buf),
            Err(CallError {
                errno: libc::ENOTTY
            })
        );
        std::fs::remove_file(&f).unwrap();
    }
}
