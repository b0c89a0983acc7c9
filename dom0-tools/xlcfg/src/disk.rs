//! Disk specifications, per xl-disk-configuration(5).
//!
//! Accepts the modern form (positional `target,format,vdev,access` mixed
//! with `key=value` parameters and flags) and the deprecated xend form
//! `[prefix:]target,vdev[:cdrom],access` (e.g. `phy:/dev/vg/x,xvda,w`).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFormat {
    Raw,
    Qcow,
    Qcow2,
    Vhd,
    Qed,
}

impl DiskFormat {
    pub const NAMES: &'static [&'static str] = &["raw", "qcow", "qcow2", "vhd", "qed"];

    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "raw" => DiskFormat::Raw,
            "qcow" => DiskFormat::Qcow,
            "qcow2" => DiskFormat::Qcow2,
            "vhd" => DiskFormat::Vhd,
            "qed" => DiskFormat::Qed,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow => "qcow",
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Vhd => "vhd",
            DiskFormat::Qed => "qed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskAccess {
    ReadOnly,
    ReadWrite,
}

impl DiskAccess {
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "r" | "ro" => Some(DiskAccess::ReadOnly),
            "w" | "rw" => Some(DiskAccess::ReadWrite),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskBackendType {
    Phy,
    Qdisk,
    Standalone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskSpecification {
    Xen,
    Virtio,
}

/// One parsed `disk=[...]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    /// Device or image path; `None` only for an empty cdrom drive.
    pub target: Option<String>,
    pub format: DiskFormat,
    /// Guest device name, e.g. `xvda`.
    pub vdev: String,
    pub access: DiskAccess,
    pub cdrom: bool,
    /// Backend domain name (default: dom0).
    pub backend: Option<String>,
    pub backend_type: Option<DiskBackendType>,
    pub script: Option<String>,
    pub specification: Option<DiskSpecification>,
    pub direct_io_safe: bool,
    /// `Some(false)` for `no-discard`.
    pub discard: Option<bool>,
    /// `Some(false)` for `untrusted`.
    pub trusted: Option<bool>,
    /// The deprecated `prefix:target,vdev,access` syntax was used.
    pub legacy_syntax: bool,
    /// Options accepted for xl compatibility but ignored by keel (COLO).
    pub ignored_options: Vec<String>,
}

const SCRIPT_PREFIXES: &[&str] = &["iscsi", "nbd", "enbd", "drbd"];
const IGNORED_PREFIXES: &[&str] = &["tapdisk", "tap", "tap2", "aio", "ioemu", "file", "phy"];
const IGNORED_KV: &[&str] = &[
    "colo-host",
    "colo-port",
    "colo-export",
    "active-disk",
    "hidden-disk",
];

/// Is `s` a guest block device name keel understands (see xen-vbd-interface(7))?
pub fn is_valid_vdev(s: &str) -> bool {
    fn letters_digits(s: &str, max_letters: usize) -> bool {
        let letters = s.bytes().take_while(u8::is_ascii_lowercase).count();
        let rest = &s[letters..];
        (1..=max_letters).contains(&letters)
            && rest.bytes().all(|b| b.is_ascii_digit())
            && rest.len() <= 3
    }
    if let Some(r) = s.strip_prefix("xvd") {
        return letters_digits(r, 4);
    }
    if let Some(r) = s.strip_prefix("hd").or_else(|| s.strip_prefix("sd")) {
        return letters_digits(r, 4);
    }
    if let Some(r) = s.strip_prefix('d') {
        let (disk, part) = match r.split_once('p') {
            Some((d, p)) => (d, Some(p)),
            None => (r, None),
        };
        let num = |x: &str| !x.is_empty() && x.len() <= 6 && x.bytes().all(|b| b.is_ascii_digit());
        return num(disk) && part.is_none_or(num);
    }
    !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit())
}

fn strip_devtype(s: &str) -> Result<(&str, bool), String> {
    match s.split_once(':') {
        Some((v, "cdrom")) => Ok((v, true)),
        Some((v, "disk")) => Ok((v, false)),
        Some((_, t)) => Err(format!(
            "unknown device type ':{t}' (only ':cdrom' is supported)"
        )),
        None => Ok((s, false)),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Target = 0,
    Format = 1,
    Vdev = 2,
    Access = 3,
}

impl fmt::Display for DiskSpec {
    /// Canonical key=value form (round-trips through [`parse_disk_spec`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "format={}, vdev={}, access={}",
            self.format.name(),
            self.vdev,
            match self.access {
                DiskAccess::ReadOnly => "ro",
                DiskAccess::ReadWrite => "rw",
            }
        )?;
        if self.cdrom {
            f.write_str(", devtype=cdrom")?;
        }
        if let Some(b) = &self.backend {
            write!(f, ", backend={b}")?;
        }
        if let Some(t) = self.backend_type {
            f.write_str(match t {
                DiskBackendType::Phy => ", backendtype=phy",
                DiskBackendType::Qdisk => ", backendtype=qdisk",
                DiskBackendType::Standalone => ", backendtype=standalone",
            })?;
        }
        if let Some(s) = &self.script {
            write!(f, ", script={s}")?;
        }
        if let Some(s) = self.specification {
            f.write_str(match s {
                DiskSpecification::Xen => ", specification=xen",
                DiskSpecification::Virtio => ", specification=virtio",
            })?;
        }
        if self.direct_io_safe {
            f.write_str(", direct-io-safe")?;
        }
        match self.discard {
            Some(true) => f.write_str(", discard")?,
            Some(false) => f.write_str(", no-discard")?,
            None => {}
        }
        match self.trusted {
            Some(true) => f.write_str(", trusted")?,
            Some(false) => f.write_str(", untrusted")?,
            None => {}
        }
        if let Some(t) = &self.target {
            write!(f, ", target={t}")?;
        }
        Ok(())
    }
}

/// Parse one DISKSPEC string. The error is a human-readable reason.
pub fn parse_disk_spec(spec: &str) -> Result<DiskSpec, String> {
    let mut slots: [Option<String>; 4] = Default::default();
    let mut specified = [false; 4];
    let mut legacy = false;
    let mut cdrom = false;
    let mut d = DiskSpec {
        target: None,
        format: DiskFormat::Raw,
        vdev: String::new(),
        access: DiskAccess::ReadWrite,
        cdrom: false,
        backend: None,
        backend_type: None,
        script: None,
        specification: None,
        direct_io_safe: false,
        discard: None,
        trusted: None,
        legacy_syntax: false,
        ignored_options: Vec::new(),
    };
    let mut seen_named: Vec<String> = Vec::new();

    let mut rest = spec;
    let mut first = true;
    loop {
        if !first {
            match rest.split_once(',') {
                Some((_, r)) => rest = r,
                None => break,
            }
        }
        first = false;
        let trimmed = rest.trim_start();
        if let Some(t) = trimmed.strip_prefix("target=") {
            // `target=` swallows the rest of the spec, commas included.
            if specified[Slot::Target as usize]
                && slots[Slot::Target as usize]
                    .as_deref()
                    .is_some_and(|s| !s.is_empty())
            {
                return Err("target given twice".into());
            }
            slots[Slot::Target as usize] = Some(t.to_string());
            break;
        }
        let param = trimmed.split(',').next().unwrap_or("").trim_end();

        if let Some((k, v)) = param.split_once('=') {
            let (k, v) = (k.trim(), v.trim());
            if seen_named.iter().any(|s| s == k) {
                return Err(format!("parameter '{k}' given more than once"));
            }
            seen_named.push(k.to_string());
            let slot = match k {
                "format" => Some(Slot::Format),
                "vdev" => Some(Slot::Vdev),
                "access" => Some(Slot::Access),
                _ => None,
            };
            if let Some(slot) = slot {
                if specified[slot as usize] {
                    return Err(format!("'{k}' given more than once"));
                }
                specified[slot as usize] = true;
                slots[slot as usize] = Some(v.to_string());
                continue;
            }
            let opt = |v: &str| (!v.is_empty()).then(|| v.to_string());
            match k {
                "devtype" => match v {
                    "cdrom" => cdrom = true,
                    "" | "disk" => {}
                    _ => return Err(format!("unknown devtype '{v}' (only 'cdrom' is supported)")),
                },
                "backend" => d.backend = opt(v),
                "backendtype" => {
                    d.backend_type = match v {
                        "phy" => Some(DiskBackendType::Phy),
                        "qdisk" => Some(DiskBackendType::Qdisk),
                        "standalone" => Some(DiskBackendType::Standalone),
                        "" => None,
                        _ => {
                            return Err(format!(
                                "unknown backendtype '{v}' (expected phy, qdisk or standalone)"
                            ))
                        }
                    }
                }
                "script" => d.script = opt(v),
                "specification" => {
                    d.specification = match v {
                        "xen" => Some(DiskSpecification::Xen),
                        "virtio" => Some(DiskSpecification::Virtio),
                        "" => None,
                        _ => {
                            return Err(format!(
                                "unknown specification '{v}' (expected xen or virtio)"
                            ))
                        }
                    }
                }
                _ if IGNORED_KV.contains(&k) => d.ignored_options.push(k.to_string()),
                _ => return Err(format!("unknown disk parameter '{k}'")),
            }
            continue;
        }

        match param {
            "cdrom" => {
                cdrom = true;
                continue;
            }
            "direct-io-safe" => {
                d.direct_io_safe = true;
                continue;
            }
            "discard" | "no-discard" => {
                d.discard = Some(param == "discard");
                continue;
            }
            "trusted" | "untrusted" => {
                d.trusted = Some(param == "trusted");
                continue;
            }
            "colo" => {
                d.ignored_options.push("colo".into());
                continue;
            }
            _ => {}
        }

        // Positional parameter.
        let order: &[Slot] = if legacy {
            &[Slot::Target, Slot::Vdev, Slot::Access]
        } else {
            &[Slot::Target, Slot::Format, Slot::Vdev, Slot::Access]
        };
        let Some(&slot) = order.iter().find(|s| !specified[**s as usize]) else {
            if param.is_empty() {
                continue;
            }
            return Err(format!(
                "unexpected parameter '{param}': target, format, vdev and access are already given"
            ));
        };
        let mut value = param.to_string();
        let mut slot = slot;
        if slot == Slot::Target {
            // Deprecated prefixes: `raw:`, `phy:`, `tap:aio:`, `iscsi:` ...
            while let Some((pfx, r)) = value.split_once(':') {
                if let Some(fmt) = DiskFormat::from_name(pfx) {
                    if specified[Slot::Format as usize] {
                        return Err("format given twice".into());
                    }
                    specified[Slot::Format as usize] = true;
                    slots[Slot::Format as usize] = Some(fmt.name().to_string());
                } else if SCRIPT_PREFIXES.contains(&pfx) {
                    d.script = Some(format!("block-{pfx}"));
                } else if !IGNORED_PREFIXES.contains(&pfx) {
                    break;
                }
                legacy = true;
                value = r.to_string();
            }
        } else if slot == Slot::Format
            && !value.is_empty()
            && DiskFormat::from_name(&value).is_none()
        {
            let (v, _) = strip_devtype(&value).unwrap_or((&value, false));
            if legacy || is_valid_vdev(v) {
                // xend ordering: target,vdev[:devtype],access
                legacy = true;
                slot = Slot::Vdev;
            } else {
                return Err(format!(
                    "unknown disk format '{value}' (expected one of: {})",
                    DiskFormat::NAMES.join(", ")
                ));
            }
        }
        specified[slot as usize] = true;
        slots[slot as usize] = Some(value);
    }

    d.legacy_syntax = legacy;
    let [target, format, vdev, access] = slots;
    d.target = target.filter(|t| !t.is_empty());
    if let Some(f) = format.filter(|f| !f.is_empty()) {
        d.format = DiskFormat::from_name(&f).ok_or_else(|| {
            format!(
                "unknown disk format '{f}' (expected one of: {})",
                DiskFormat::NAMES.join(", ")
            )
        })?;
    }
    let vdev = vdev.unwrap_or_default();
    let (vdev, vdev_cdrom) = strip_devtype(&vdev)?;
    cdrom |= vdev_cdrom;
    if vdev.is_empty() {
        return Err("no vdev (guest device name such as xvda) given; it is mandatory".into());
    }
    if !is_valid_vdev(vdev) {
        return Err(format!(
            "invalid vdev '{vdev}' (expected a name such as xvda, xvdb1, hda, sda or d0p1)"
        ));
    }
    d.vdev = vdev.to_string();
    d.cdrom = cdrom;
    d.access = match access.filter(|a| !a.is_empty()) {
        None if cdrom => DiskAccess::ReadOnly,
        None => DiskAccess::ReadWrite,
        Some(a) => DiskAccess::from_name(&a)
            .ok_or_else(|| format!("invalid access '{a}' (expected r, ro, w or rw)"))?,
    };
    if cdrom && d.access == DiskAccess::ReadWrite {
        return Err("a cdrom device must be read-only".into());
    }
    if d.target.is_none() && !cdrom {
        return Err(
            "no target (device or image path) given; only an empty cdrom may omit it".into(),
        );
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> DiskSpec {
        parse_disk_spec(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn man_page_equivalences() {
        let a = p("/dev/vg/guest-volume,,hda");
        for s in [
            "/dev/vg/guest-volume,raw,hda,rw",
            "format=raw, vdev=hda, access=rw, target=/dev/vg/guest-volume",
            "raw:/dev/vg/guest-volume,hda,w",
        ] {
            let b = p(s);
            assert_eq!(
                (&a.target, a.format, &a.vdev, a.access),
                (&b.target, b.format, &b.vdev, b.access),
                "{s}"
            );
        }
        let c = p("/root/image.iso,,hdc,cdrom");
        assert!(c.cdrom && c.access == DiskAccess::ReadOnly);
        for s in [
            "/root/image.iso,,hdc,,cdrom",
            "/root/image.iso,raw,hdc,devtype=cdrom",
            "format=raw, vdev=hdc, access=ro, devtype=cdrom, target=/root/image.iso",
            "raw:/root/image.iso,hdc:cdrom,ro",
        ] {
            let b = p(s);
            assert_eq!(
                (&c.target, c.format, &c.vdev, c.access, c.cdrom),
                (&b.target, b.format, &b.vdev, b.access, b.cdrom),
                "{s}"
            );
        }
    }

    #[test]
    fn legacy_forms() {
        let d = p("phy:/dev/vg/guest,xvda,w");
        assert_eq!(d.target.as_deref(), Some("/dev/vg/guest"));
        assert_eq!(d.vdev, "xvda");
        assert!(d.legacy_syntax);
        let d = p("file:/x.img,xvda1,r");
        assert_eq!((d.vdev.as_str(), d.access), ("xvda1", DiskAccess::ReadOnly));
        let d = p("tap:aio:qcow2:/x.qcow2,xvdb,w");
        assert_eq!(d.format, DiskFormat::Qcow2);
        let d = p("iscsi:iqn.2001-05.com.example:disk,xvdc,w");
        assert_eq!(d.script.as_deref(), Some("block-iscsi"));
        let d = p(",hdc:cdrom,r");
        assert!(d.cdrom && d.target.is_none());
    }

    #[test]
    fn target_swallows_commas_and_flags() {
        let d = p("vdev=xvda, no-discard, untrusted, backend=dd, target=/a,b c ");
        assert_eq!(d.target.as_deref(), Some("/a,b c "));
        assert_eq!(
            (d.discard, d.trusted, d.backend.as_deref()),
            (Some(false), Some(false), Some("dd"))
        );
        let round = p(&d.to_string());
        assert_eq!(round, d);
    }

    #[test]
    fn errors() {
        for (s, frag) in [
            ("/x.img", "no vdev"),
            ("/x.img,qcow9,xvda", "unknown disk format"),
            ("/x.img,raw,xvda,rx", "invalid access"),
            ("/x.img,raw,bogus!", "invalid vdev"),
            ("vdev=xvda", "no target"),
            ("/x,raw,xvda,rw,extra", "unexpected parameter"),
            ("/x,,xvda,foo=1", "unknown disk parameter"),
            ("/x,,xvda,vdev=xvdb", "more than once"),
            ("/x,,hdc,rw,cdrom", "read-only"),
            ("/x,,xvda:floppy", "device type"),
        ] {
            let e = parse_disk_spec(s).expect_err(s);
            assert!(e.contains(frag), "{s:?}: {e}");
        }
    }

    #[test]
    fn vdev_names() {
        for ok in ["xvda", "xvdaa1", "hda", "sdb3", "d0p1", "d12", "51712"] {
            assert!(is_valid_vdev(ok), "{ok}");
        }
        for bad in ["", "xvd", "xvdA", "/dev/xvda", "d", "dp1", "rw", "hd1"] {
            assert!(!is_valid_vdev(bad), "{bad}");
        }
    }
}
