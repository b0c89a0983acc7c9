//! `domctl getdomaininfo` through privcmd: whether a domain still exists,
//! is dying, or has shut down. keel-xenstored asks this of every domain it
//! has introduced when `VIRQ_DOM_EXC` fires, as Xen's xenstored does.
//!
//! In Xen 4.17 (and keel) `getdomaininfo` answers for the first existing
//! domain whose id is *at least* the one asked for, so an answer about a
//! different domain, or `-ESRCH` (no domain at or above it), means the
//! domain asked about is gone.

use std::io;

use keel_xen_abi::domctl::{dominf, op, GetDomainInfo, XenDomctl};
use keel_xen_abi::{hypercall, Pod, DOMID_FIRST_RESERVED};

use crate::privcmd::{prefault, CallError, Privcmd};

/// What `getdomaininfo` says about a domain that still exists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DomainState {
    /// `XEN_DOMINF_dying`: being destroyed; its resources are going.
    pub dying: bool,
    /// `XEN_DOMINF_shutdown`: the guest shut down (powered off, rebooted,
    /// crashed, suspended); it stays until the toolstack destroys it.
    pub shutdown: bool,
    /// The `SHUTDOWN_*` code, meaningful when `shutdown` is set.
    pub shutdown_code: u32,
}

impl DomainState {
    pub fn from_info(info: &GetDomainInfo) -> DomainState {
        DomainState {
            dying: info.flags & dominf::DYING != 0,
            shutdown: info.flags & dominf::SHUTDOWN != 0,
            shutdown_code: info.shutdown_code(),
        }
    }
}

/// The `struct xen_domctl` of a `getdomaininfo` call about `domid`.
pub fn request(domid: u16) -> XenDomctl {
    XenDomctl::new(op::GETDOMAININFO, domid, &GetDomainInfo::zeroed())
}

/// Reads the hypervisor's answer to [`request`]`(domid)`: `ret` is the
/// hypercall's result, `answer` the `struct xen_domctl` it left behind.
/// `Ok(None)`: no such domain (`-ESRCH`, or the answer is about another,
/// higher, domain).
pub fn decode(
    domid: u16,
    ret: Result<u64, CallError>,
    answer: &XenDomctl,
) -> io::Result<Option<DomainState>> {
    match ret {
        Err(CallError { errno }) if errno == libc::ESRCH => return Ok(None),
        Err(CallError { errno }) => {
            let e = io::Error::from_raw_os_error(errno);
            return Err(io::Error::new(
                e.kind(),
                format!("domctl getdomaininfo of domain {domid}: {e}"),
            ));
        }
        Ok(_) => {}
    }
    let info: GetDomainInfo = answer.op();
    if answer.domain != domid || info.domain != domid {
        return Ok(None);
    }
    Ok(Some(DomainState::from_info(&info)))
}

/// Asks the hypervisor about domain `domid` (see the module docs).
/// `Ok(None)`: it no longer exists.
pub fn domain_info(privcmd: &Privcmd, domid: u32) -> io::Result<Option<DomainState>> {
    let dom = u16::try_from(domid)
        .ok()
        .filter(|&d| d < DOMID_FIRST_RESERVED)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("domain {domid}: not a domain id"),
            )
        })?;
    let mut mem = vec![0u8; XenDomctl::SIZE];
    request(dom)
        .write_to(&mut mem)
        .expect("sized for struct xen_domctl");
    // The hypervisor reads and writes `mem` through dom0's page tables and
    // does not fault pages in.
    prefault(&mut mem);
    let addr = mem.as_ptr() as u64;
    // `mem` is neither moved nor freed until after the call.
    let ret = privcmd.hypercall(hypercall::DOMCTL, [addr, 0, 0, 0, 0]);
    let answer = XenDomctl::from_bytes(&mem).expect("sized for struct xen_domctl");
    decode(dom, ret, &answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_xen_abi::domctl::INTERFACE_VERSION;

    fn answer(domid: u16, info_dom: u16, flags: u32) -> XenDomctl {
        let info = GetDomainInfo {
            domain: info_dom,
            flags,
            ..GetDomainInfo::zeroed()
        };
        let mut dc = XenDomctl::new(op::GETDOMAININFO, domid, &info);
        dc.domain = domid;
        dc
    }

    #[test]
    fn request_is_getdomaininfo_at_4_17() {
        let dc = request(7);
        assert_eq!(
            (dc.cmd, dc.interface_version, dc.domain),
            (op::GETDOMAININFO, INTERFACE_VERSION, 7)
        );
        assert_eq!(XenDomctl::SIZE, 8 + 8 + 128);
    }

    #[test]
    fn flags_decode() {
        let a = answer(3, 3, dominf::SHUTDOWN | (3 << dominf::SHUTDOWNSHIFT));
        assert_eq!(
            decode(3, Ok(0), &a).unwrap(),
            Some(DomainState {
                dying: false,
                shutdown: true,
                shutdown_code: 3
            })
        );
        let a = answer(3, 3, dominf::DYING | dominf::RUNNING);
        let s = decode(3, Ok(0), &a).unwrap().unwrap();
        assert!(s.dying && !s.shutdown);
        let a = answer(3, 3, dominf::RUNNING);
        assert_eq!(decode(3, Ok(0), &a).unwrap(), Some(DomainState::default()));
    }

    #[test]
    fn gone_domains() {
        // The next domain up answered: ours is gone.
        assert_eq!(decode(3, Ok(0), &answer(5, 5, 0)).unwrap(), None);
        // A header and record that disagree are not an answer about it.
        assert_eq!(decode(3, Ok(0), &answer(3, 5, 0)).unwrap(), None);
        // No domain at or above it.
        let none = decode(3, Err(CallError { errno: libc::ESRCH }), &request(3));
        assert_eq!(none.unwrap(), None);
    }

    #[test]
    fn other_failures_are_errors() {
        let e = decode(3, Err(CallError { errno: libc::EPERM }), &request(3)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("domain 3"), "{e}");
    }

    #[test]
    fn off_privcmd_fails_cleanly() {
        let f = std::env::temp_dir().join(format!("keel-xendev-domctl-{}", std::process::id()));
        std::fs::write(&f, b"").unwrap();
        let p = Privcmd::open(&f).unwrap();
        // A regular file: the ioctl is ENOTTY, an error (not "gone").
        let e = domain_info(&p, 1).unwrap_err();
        assert_eq!(e.raw_os_error(), None);
        assert!(e.to_string().contains("getdomaininfo"), "{e}");
        assert_eq!(
            domain_info(&p, 0x7ff0).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        std::fs::remove_file(&f).unwrap();
    }
}
