//! The Linux calls of Xen's `vif-bridge` hotplug script (what `brctl
//! addbr`, `brctl addif`, `ip link set ... up` and `ip link set ... name`
//! do), for [`crate::hotplug::LinuxHost`]: `ioctl(2)` on a socket with a
//! `struct ifreq`, as bridge-utils and net-tools make them.
//!
//! The only `unsafe` of keelctl's network interfaces: the `ioctl(2)`
//! calls, each in its own small function.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

/// `IFNAMSIZ`: an interface name is at most 15 bytes, then a NUL.
pub const IFNAMSIZ: usize = 16;

// linux/sockios.h
const SIOCGIFFLAGS: libc::c_ulong = 0x8913;
const SIOCSIFFLAGS: libc::c_ulong = 0x8914;
const SIOCSIFNAME: libc::c_ulong = 0x8923;
const SIOCGIFINDEX: libc::c_ulong = 0x8933;
const SIOCBRADDBR: libc::c_ulong = 0x89a0;
const SIOCBRADDIF: libc::c_ulong = 0x89a2;
/// `IFF_UP` (linux/if.h).
const IFF_UP: libc::c_short = 0x1;

/// `struct ifreq` (linux/if.h): a name, then a 24-byte union of which
/// keelctl uses `ifr_flags` (short), `ifr_ifindex` (int) and
/// `ifr_newname` (a name).
#[repr(C, align(8))]
struct IfReq {
    name: [u8; IFNAMSIZ],
    data: [u8; 24],
}

const _: () = assert!(std::mem::size_of::<IfReq>() == 40);

/// Is `name` a name Linux accepts for an interface (`dev_valid_name`)?
pub fn valid_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("an interface name is not empty".into());
    }
    if name.len() >= IFNAMSIZ {
        return Err(format!(
            "'{name}' is {} bytes long: an interface name is at most {} (IFNAMSIZ)",
            name.len(),
            IFNAMSIZ - 1
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("'{name}' is not an interface name"));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c == '\0')
    {
        return Err(format!(
            "'{name}': an interface name has no '/', ':', NUL or white space"
        ));
    }
    Ok(())
}

fn name_bytes(name: &str) -> io::Result<[u8; IFNAMSIZ]> {
    valid_name(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut b = [0u8; IFNAMSIZ];
    b[..name.len()].copy_from_slice(name.as_bytes());
    Ok(b)
}

impl IfReq {
    fn new(name: &str) -> io::Result<IfReq> {
        Ok(IfReq {
            name: name_bytes(name)?,
            data: [0; 24],
        })
    }
    fn flags(&self) -> libc::c_short {
        libc::c_short::from_ne_bytes([self.data[0], self.data[1]])
    }
    fn set_flags(&mut self, f: libc::c_short) {
        self.data[..2].copy_from_slice(&f.to_ne_bytes());
    }
    fn index(&self) -> libc::c_int {
        libc::c_int::from_ne_bytes(self.data[..4].try_into().expect("4 bytes"))
    }
    fn set_index(&mut self, i: libc::c_int) {
        self.data[..4].copy_from_slice(&i.to_ne_bytes());
    }
}

/// `/sys/class/net/<name>/<rest>`.
pub fn sys_net(name: &str, rest: &str) -> PathBuf {
    let mut p = PathBuf::from("/sys/class/net");
    p.push(name);
    if !rest.is_empty() {
        p.push(rest);
    }
    p
}

/// A socket to make the requests on (as `brctl`: a local one; Linux
/// takes the interface requests on a socket of any family).
fn socket() -> io::Result<UnixDatagram> {
    UnixDatagram::unbound()
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// An ioctl taking a `struct ifreq`, which the kernel reads and may fill.
fn ioctl_ifreq(s: &UnixDatagram, request: libc::c_ulong, r: &mut IfReq) -> io::Result<()> {
    // SAFETY: `r` is a live, fully initialised `struct ifreq` (repr(C),
    // 40 bytes, size checked above) that the kernel reads and writes only
    // within those bytes, for the duration of the call; `s` keeps the
    // descriptor open.
    check(unsafe { libc::ioctl(s.as_raw_fd(), request as _, r as *mut IfReq) })
}

/// `SIOCBRADDBR`, whose argument is the new bridge's NUL-terminated name.
fn ioctl_addbr(s: &UnixDatagram, name: &[u8; IFNAMSIZ]) -> io::Result<()> {
    // SAFETY: `name` is a live 16-byte buffer holding a NUL-terminated
    // name (at most 15 bytes, checked by `name_bytes`), which the kernel
    // only reads (at most IFNAMSIZ bytes) during the call; `s` keeps the
    // descriptor open.
    check(unsafe { libc::ioctl(s.as_raw_fd(), SIOCBRADDBR as _, name.as_ptr()) })
}

/// `brctl addbr NAME`.
pub fn bridge_create(name: &str) -> io::Result<()> {
    let n = name_bytes(name)?;
    ioctl_addbr(&socket()?, &n)
}

/// The index of interface `name` (`SIOCGIFINDEX`).
fn index(s: &UnixDatagram, name: &str) -> io::Result<libc::c_int> {
    let mut r = IfReq::new(name)?;
    ioctl_ifreq(s, SIOCGIFINDEX, &mut r)?;
    Ok(r.index())
}

/// `brctl addif BRIDGE DEV`.
pub fn bridge_add_port(bridge: &str, dev: &str) -> io::Result<()> {
    let s = socket()?;
    let i = index(&s, dev)?;
    let mut r = IfReq::new(bridge)?;
    r.set_index(i);
    ioctl_ifreq(&s, SIOCBRADDIF, &mut r)
}

/// `ip link set NAME up`.
pub fn link_up(name: &str) -> io::Result<()> {
    let s = socket()?;
    let mut r = IfReq::new(name)?;
    ioctl_ifreq(&s, SIOCGIFFLAGS, &mut r)?;
    let f = r.flags();
    if f & IFF_UP != 0 {
        return Ok(());
    }
    r.set_flags(f | IFF_UP);
    ioctl_ifreq(&s, SIOCSIFFLAGS, &mut r)
}

/// `ip link set FROM name TO` (FROM must be down).
pub fn link_rename(from: &str, to: &str) -> io::Result<()> {
    let s = socket()?;
    let mut r = IfReq::new(from)?;
    r.data[..IFNAMSIZ].copy_from_slice(&name_bytes(to)?);
    ioctl_ifreq(&s, SIOCSIFNAME, &mut r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_as_linux_takes_them() {
        for ok in ["xenbr0", "vif7.0", "br-lan", "a23456789012345"] {
            assert_eq!(valid_name(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("", "not empty"),
            (
                "a234567890123456",
                "16 bytes long: an interface name is at most 15",
            ),
            ("..", "not an interface name"),
            ("br/0", "no '/'"),
            ("br 0", "white space"),
            ("eth0:1", "':'"),
        ] {
            let e = valid_name(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn ifreq_fields_sit_where_linux_has_them() {
        let mut r = IfReq::new("vif7.0").unwrap();
        assert_eq!(&r.name[..7], b"vif7.0\0");
        r.set_index(0x0102_0304);
        assert_eq!(r.index(), 0x0102_0304);
        r.set_flags(IFF_UP | 0x40);
        assert_eq!(r.flags(), 0x41);
        assert_eq!(r.data[0..2], 0x41i16.to_ne_bytes());
        // A name too long never reaches the kernel.
        let e = bridge_create("a-very-long-bridge").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(sys_net("xenbr0", "brif/vif7.0").ends_with("xenbr0/brif/vif7.0"));
    }

    /// A real interface that does not exist: the calls reach the kernel
    /// and come back with its answer (no root needed).
    #[test]
    fn calls_on_a_missing_interface_fail_cleanly() {
        let e = link_up("keelnosuch0").unwrap_err();
        assert!(
            matches!(
                e.raw_os_error(),
                Some(libc::ENODEV | libc::EPERM | libc::EACCES)
            ),
            "{e}"
        );
        let e = bridge_add_port("keelnosuchbr", "keelnosuch0").unwrap_err();
        assert!(
            matches!(
                e.raw_os_error(),
                Some(libc::ENODEV | libc::EPERM | libc::EACCES)
            ),
            "{e}"
        );
    }
}
