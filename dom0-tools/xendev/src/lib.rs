//! Linux's Xen device files, as keel's dom0 tools use them: `privcmd`
//! (hypercalls from userspace, and mapping another domain's pages) and
//! `gntdev` (mapping pages another domain granted to dom0); `gntalloc`
//! and `evtchn` for a frontend played by hand in tests. One
//! crate so that keelctl (the toolstack and domain builder) and
//! keel-xenstored (which maps each domU's xenstore ring) share one thin,
//! audited layer of `unsafe`. [`domctl`] asks the hypervisor about a
//! domain (`getdomaininfo`) through privcmd.

pub mod domctl;
pub mod evtchn;
pub mod gntalloc;
pub mod gntdev;
pub mod privcmd;
