//! XEN_VERSION: keel presents itself as Xen 4.17 ("-keel"), with what
//! Xen's toolstack and Linux's `/sys/hypervisor` read: compile info,
//! capabilities, changeset, platform parameters, the caller's handle, and
//! (privileged callers only, as Xen's default policy) keel's command line.

use super::{Ctx, HcResult, Ret};
use crate::hvm::cpuid;
use crate::xen::abi::{self, xenfeat, xenver, Errno, XenFeatureInfo};
use alloc::format;
use alloc::string::String;
use keel_xen_abi::version::{CompileInfo, PlatformParameters};

/// What keel can run, in Xen's words: 64-bit PVH/HVM guests (keel runs
/// no PV guests, but `xen-3.0-x86_64` is what Xen 4.17 on x86_64 always
/// lists and what tools look for).
const CAPABILITIES: &str = "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64";

/// The start of the hypervisor's reserved virtual range on x86_64, as Xen
/// reports it (`HYPERVISOR_VIRT_START`; meaningless for HVM guests).
const VIRT_START: u64 = 0xffff_8000_0000_0000;

/// keel's command line as `XENVER_commandline` reports it: with a
/// `dom0_mem=` saying dom0's size when the operator gave none, so that
/// `xl` and libvirt see dom0's memory as fixed and do not balloon it.
pub fn commandline(raw: &str, dom0_mib: Option<u64>) -> String {
    let has = raw.split_whitespace().any(|w| w.starts_with("dom0_mem="));
    match dom0_mib {
        Some(mib) if !has => format!("{} dom0_mem={mib}M", raw.trim())
            .trim_start()
            .into(),
        _ => String::from(raw.trim()),
    }
}

/// A C string field of `N` bytes holding `s` (cut to fit, NUL-terminated).
fn cstr<const N: usize>(s: &str) -> [u8; N] {
    let mut b = [0u8; N];
    let n = s.len().min(N - 1);
    b[..n].copy_from_slice(&s.as_bytes()[..n]);
    b
}

pub fn call(cx: &mut Ctx, cmd: u64, arg: u64) -> HcResult {
    let mem = cx.mem();
    match cmd {
        xenver::VERSION => Ok(Ret::Val(xenver::encode(
            cpuid::XEN_MAJOR as u16,
            cpuid::XEN_MINOR as u16,
        ))),
        xenver::EXTRAVERSION => {
            let mut s = [0u8; xenver::EXTRAVERSION_LEN];
            s[..6].copy_from_slice(b"-keel\0");
            mem.write(arg, &s)?;
            Ok(Ret::Val(0))
        }
        xenver::CAPABILITIES => {
            mem.write(arg, &cstr::<{ xenver::CAPABILITIES_LEN }>(CAPABILITIES))?;
            Ok(Ret::Val(0))
        }
        xenver::COMPILE_INFO => {
            let ci = CompileInfo {
                compiler: cstr(concat!("rustc (keel ", env!("CARGO_PKG_VERSION"), ")")),
                compile_by: cstr("keel"),
                compile_domain: cstr("keel"),
                compile_date: cstr(""),
            };
            mem.write_abi(arg, &ci)?;
            Ok(Ret::Val(0))
        }
        xenver::CHANGESET => {
            let cs = concat!("keel ", env!("CARGO_PKG_VERSION"));
            mem.write(arg, &cstr::<{ xenver::CHANGESET_LEN }>(cs))?;
            Ok(Ret::Val(0))
        }
        xenver::PLATFORM_PARAMETERS => {
            mem.write_abi(
                arg,
                &PlatformParameters {
                    virt_start: VIRT_START,
                },
            )?;
            Ok(Ret::Val(0))
        }
        xenver::GUEST_HANDLE => {
            mem.write(arg, &*cx.dom.handle.lock())?;
            Ok(Ret::Val(0))
        }
        xenver::COMMANDLINE | xenver::BUILD_ID if !cx.dom.privileged => Err(Errno::EPERM),
        xenver::COMMANDLINE => {
            let raw = super::host::get()?.commandline();
            let dom0 = crate::domain::table::get(0).map(|d| (d.mem.ram_pages * 4096) >> 20);
            mem.write(arg, &cstr::<1024>(&commandline(&raw, dom0)))?;
            Ok(Ret::Val(0))
        }
        // keel is linked without a GNU build-id note: Xen answers -ENODATA
        // then, after it has read the header of a non-NULL buffer (a bad
        // pointer is -EFAULT, a zero length -EINVAL, as on Xen).
        xenver::BUILD_ID => {
            if arg != 0 && mem.read_u32(arg)? == 0 {
                return Err(Errno::EINVAL);
            }
            Err(Errno::ENODATA)
        }
        xenver::GET_FEATURES => {
            let fi: XenFeatureInfo = mem.read_obj(arg)?;
            let map = if fi.submap_idx == 0 {
                xenfeat::pvh_submap(cx.dom.privileged)
            } else {
                0
            };
            super::guest::put!(mem, arg, XenFeatureInfo, submap, map)?;
            Ok(Ret::Val(0))
        }
        xenver::PAGESIZE => Ok(Ret::Val(abi::PAGE_SIZE as u64)),
        _ => Err(cx.unimplemented(format_args!("xen_version {cmd}"))),
    }
}
