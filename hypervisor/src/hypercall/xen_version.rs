//! XEN_VERSION: keel presents itself as Xen 4.17 ("-keel").

use super::{Ctx, HcResult, Ret};
use crate::hvm::cpuid;
use crate::xen::abi::{self, xenfeat, xenver, XenFeatureInfo};

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
            let mut s = [0u8; xenver::CAPABILITIES_LEN];
            s[..14].copy_from_slice(b"hvm-3.0-x86_64");
            mem.write(arg, &s)?;
            Ok(Ret::Val(0))
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
