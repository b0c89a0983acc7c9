//! Typed domain configuration and semantic validation.

use std::collections::HashMap;

use crate::cpus::{CpuAffinity, CpuList};
use crate::disk::{parse_disk_spec, DiskSpec};
use crate::error::{Location, SemanticError, SemanticErrorKind as K, Warning, WarningKind as W};
use crate::keys;
use crate::syntax::{Document, Entry, Value, ValueKind};
use crate::vif::{parse_vif_spec, VifError, VifSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestType {
    Pv,
    Pvh,
    Hvm,
}

impl GuestType {
    pub fn name(self) -> &'static str {
        match self {
            GuestType::Pv => "pv",
            GuestType::Pvh => "pvh",
            GuestType::Hvm => "hvm",
        }
    }
}

/// What to do when the guest powers off, reboots, crashes, ...
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Destroy,
    Restart,
    RenameRestart,
    Preserve,
    CoredumpDestroy,
    CoredumpRestart,
    SoftReset,
}

impl Action {
    pub const NAMES: &'static [&'static str] = &[
        "destroy",
        "restart",
        "rename-restart",
        "preserve",
        "coredump-destroy",
        "coredump-restart",
        "soft-reset",
    ];

    pub fn from_name(s: &str) -> Option<Action> {
        Some(match s {
            "destroy" => Action::Destroy,
            "restart" => Action::Restart,
            "rename-restart" => Action::RenameRestart,
            "preserve" => Action::Preserve,
            "coredump-destroy" => Action::CoredumpDestroy,
            "coredump-restart" => Action::CoredumpRestart,
            "soft-reset" => Action::SoftReset,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// A validated domain configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainConfig {
    pub name: String,
    /// `type=` (or deprecated `builder=`); PV when absent, as xl on x86.
    pub guest_type: GuestType,
    pub uuid: Option<String>,
    /// Initial memory in MiB (`memory=`); `None` = toolstack default.
    pub memory_mb: Option<u64>,
    /// Maximum memory in MiB (`maxmem=`); `None` = same as memory.
    pub maxmem_mb: Option<u64>,
    /// vCPUs online at start (default 1).
    pub vcpus: u32,
    /// Maximum vCPUs (`maxvcpus=`); `None` = same as vcpus.
    pub maxvcpus: Option<u32>,
    pub cpus: Option<CpuAffinity>,
    pub cpus_soft: Option<CpuAffinity>,
    pub pool: Option<String>,
    pub kernel: Option<String>,
    pub ramdisk: Option<String>,
    /// Kernel command line combined from cmdline/root/extra as xl does.
    pub cmdline: Option<String>,
    pub bootloader: Option<String>,
    pub bootloader_args: Vec<String>,
    pub on_poweroff: Action,
    pub on_reboot: Action,
    pub on_crash: Action,
    pub on_watchdog: Action,
    pub on_soft_reset: Action,
    pub disks: Vec<DiskSpec>,
    pub vifs: Vec<VifSpec>,
    /// Keys present in the file but not interpreted (known-ignored or unknown).
    pub ignored: Vec<Entry>,
}

impl DomainConfig {
    pub fn effective_maxmem_mb(&self) -> Option<u64> {
        self.maxmem_mb.or(self.memory_mb)
    }

    pub fn effective_maxvcpus(&self) -> u32 {
        self.maxvcpus.unwrap_or(self.vcpus)
    }
}

/// A successful parse: the configuration plus non-fatal warnings.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub config: DomainConfig,
    pub warnings: Vec<Warning>,
}

struct Ctx {
    errors: Vec<SemanticError>,
    warnings: Vec<Warning>,
}

impl Ctx {
    fn error(&mut self, loc: Option<Location>, kind: K) {
        self.errors.push(SemanticError {
            location: loc,
            kind,
        });
    }

    fn warn(&mut self, loc: Option<Location>, kind: W) {
        self.warnings.push(Warning {
            location: loc,
            kind,
        });
    }

    fn wrong_type(&mut self, key: &str, v: &Value, expected: &'static str) {
        self.error(
            Some(v.location),
            K::WrongType {
                key: key.to_string(),
                expected,
                found: v.type_name(),
            },
        );
    }

    /// String value (numbers are accepted as their source text, as xl does).
    fn string(&mut self, e: Option<&Entry>) -> Option<String> {
        let e = e?;
        match &e.value.kind {
            ValueKind::Str(s) => Some(s.clone()),
            ValueKind::Num { raw, .. } => Some(raw.clone()),
            ValueKind::List(_) => {
                self.wrong_type(&e.key, &e.value, "a string");
                None
            }
        }
    }

    /// Non-negative number; quoted numbers are accepted, as xl does.
    fn number(&mut self, e: Option<&Entry>) -> Option<(u64, Location)> {
        let e = e?;
        let loc = e.value.location;
        match &e.value.kind {
            ValueKind::Num { value, .. } => Some((*value, loc)),
            ValueKind::Str(s) => match parse_c_number(s.trim()) {
                Some(n) => Some((n, loc)),
                None => {
                    self.error(
                        Some(loc),
                        K::InvalidNumber {
                            key: e.key.clone(),
                            value: s.clone(),
                        },
                    );
                    None
                }
            },
            ValueKind::List(_) => {
                self.wrong_type(&e.key, &e.value, "a number");
                None
            }
        }
    }

    fn number_u32(&mut self, e: Option<&Entry>) -> Option<(u32, Location)> {
        let (n, loc) = self.number(e)?;
        match u32::try_from(n) {
            Ok(n) => Some((n, loc)),
            Err(_) => {
                self.error(
                    Some(loc),
                    K::InvalidNumber {
                        key: e.map(|e| e.key.clone()).unwrap_or_default(),
                        value: n.to_string(),
                    },
                );
                None
            }
        }
    }

    /// A list of strings; each with its location.
    fn string_list(&mut self, e: Option<&Entry>) -> Vec<(String, Location)> {
        let Some(e) = e else { return Vec::new() };
        match &e.value.kind {
            ValueKind::List(items) => items
                .iter()
                .filter_map(|v| match &v.kind {
                    ValueKind::Str(s) => Some((s.clone(), v.location)),
                    _ => {
                        self.wrong_type(&e.key, v, "a list of strings");
                        None
                    }
                })
                .collect(),
            _ => {
                self.wrong_type(&e.key, &e.value, "a list of strings");
                Vec::new()
            }
        }
    }

    fn action(&mut self, e: Option<&Entry>, default: Action) -> Action {
        let loc = e.map(|e| e.value.location);
        match self.string(e) {
            None => default,
            Some(s) => match Action::from_name(&s) {
                Some(a) => a,
                None => {
                    self.error(
                        loc,
                        K::InvalidChoice {
                            key: e.map(|e| e.key.clone()).unwrap_or_default(),
                            value: s,
                            allowed: Action::NAMES,
                        },
                    );
                    default
                }
            },
        }
    }

    fn affinity(&mut self, e: Option<&Entry>) -> Option<CpuAffinity> {
        let e = e?;
        let one = |ctx: &mut Ctx, s: &str, loc: Location| match CpuList::parse(s) {
            Ok(l) => Some(l),
            Err(reason) => {
                ctx.error(
                    Some(loc),
                    K::InvalidCpuList {
                        value: s.to_string(),
                        reason,
                    },
                );
                None
            }
        };
        match &e.value.kind {
            ValueKind::Str(s) => one(self, s, e.value.location).map(CpuAffinity::AllVcpus),
            ValueKind::Num { raw, .. } => {
                one(self, raw, e.value.location).map(CpuAffinity::AllVcpus)
            }
            ValueKind::List(items) => {
                let mut out = Vec::new();
                for v in items {
                    let s = match &v.kind {
                        ValueKind::Str(s) => s.clone(),
                        ValueKind::Num { raw, .. } => raw.clone(),
                        ValueKind::List(_) => {
                            self.wrong_type(&e.key, v, "a CPU list string or a list of them");
                            return None;
                        }
                    };
                    out.push(one(self, &s, v.location)?);
                }
                Some(CpuAffinity::PerVcpu(out))
            }
        }
    }
}

/// C `strtoul(s, NULL, 0)`-style: decimal, `0x` hex or leading-0 octal.
pub(crate) fn parse_c_number(s: &str) -> Option<u64> {
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if h.is_empty() || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(h, 16).ok()
    } else if s.len() > 1 && s.starts_with('0') {
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        u64::from_str_radix(&s[1..], 8).ok()
    } else {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    }
}

fn is_valid_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Turn a parsed [`Document`] into a validated [`DomainConfig`].
pub fn interpret(doc: &Document) -> Result<Parsed, (Vec<SemanticError>, Vec<Warning>)> {
    let mut cx = Ctx {
        errors: Vec::new(),
        warnings: Vec::new(),
    };

    // Unknown / ignored / duplicate keys.
    let mut first_seen: HashMap<&str, Location> = HashMap::new();
    let mut ignored = Vec::new();
    for e in &doc.entries {
        if let Some(first) = first_seen.get(e.key.as_str()) {
            cx.warn(
                Some(e.key_location),
                W::DuplicateKey {
                    key: e.key.clone(),
                    first: *first,
                },
            );
        } else {
            first_seen.insert(&e.key, e.key_location);
        }
        if keys::TYPED_KEYS.contains(&e.key.as_str()) {
            continue;
        }
        if keys::IGNORED_KEYS.contains(&e.key.as_str()) {
            cx.warn(Some(e.key_location), W::IgnoredKey { key: e.key.clone() });
        } else {
            cx.warn(
                Some(e.key_location),
                W::UnknownKey {
                    key: e.key.clone(),
                    suggestion: keys::suggest(&e.key),
                },
            );
        }
        ignored.push(e.clone());
    }

    let get = |k: &str| doc.get(k);

    // name
    let name_entry = get("name");
    let name = cx.string(name_entry);
    match (&name, name_entry) {
        (None, None) => cx.error(None, K::MissingKey { key: "name" }),
        (Some(n), Some(e)) => {
            let reason = if n.is_empty() {
                Some("it is empty")
            } else if n.chars().any(char::is_control) {
                Some("it contains control characters")
            } else if n.bytes().all(|b| b.is_ascii_digit()) {
                Some("an all-digit name would be confused with a domain id")
            } else if n.len() > 64 {
                Some("it is longer than 64 bytes")
            } else {
                None
            };
            if let Some(reason) = reason {
                cx.error(
                    Some(e.value.location),
                    K::InvalidName {
                        value: n.clone(),
                        reason,
                    },
                );
            }
        }
        _ => {}
    }

    // type / builder
    let errors_before_type = cx.errors.len();
    let mut guest_type = GuestType::Pv;
    if let Some(e) = get("type") {
        if let Some(t) = cx.string(Some(e)) {
            guest_type = match t.as_str() {
                "pv" => GuestType::Pv,
                "pvh" => GuestType::Pvh,
                "hvm" => GuestType::Hvm,
                _ => {
                    cx.error(
                        Some(e.value.location),
                        K::InvalidChoice {
                            key: "type".into(),
                            value: t,
                            allowed: &["pv", "pvh", "hvm"],
                        },
                    );
                    GuestType::Pv
                }
            };
        }
        if let Some(b) = get("builder") {
            cx.warn(
                Some(b.key_location),
                W::Deprecated {
                    what: "'builder' together with 'type'".into(),
                    instead: "only 'type' ('builder' is ignored)".into(),
                },
            );
        }
    } else if let Some(e) = get("builder") {
        if let Some(b) = cx.string(Some(e)) {
            cx.warn(
                Some(e.key_location),
                W::Deprecated {
                    what: format!("builder=\"{b}\""),
                    instead: "type=\"pv\" or type=\"hvm\"".into(),
                },
            );
            guest_type = match b.as_str() {
                "generic" => GuestType::Pv,
                "hvm" => GuestType::Hvm,
                _ => {
                    cx.error(
                        Some(e.value.location),
                        K::InvalidChoice {
                            key: "builder".into(),
                            value: b,
                            allowed: &["generic", "hvm"],
                        },
                    );
                    GuestType::Pv
                }
            };
        }
    }

    let type_ok = cx.errors.len() == errors_before_type;

    // uuid
    let uuid = cx.string(get("uuid"));
    if let Some(u) = &uuid {
        if !is_valid_uuid(u) {
            cx.error(
                get("uuid").map(|e| e.value.location),
                K::InvalidUuid { value: u.clone() },
            );
        }
    }

    // memory
    let memory = cx.number(get("memory"));
    let maxmem = cx.number(get("maxmem"));
    if let Some((0, loc)) = memory {
        cx.error(Some(loc), K::ZeroMemory { key: "memory" });
    }
    if let Some((0, loc)) = maxmem {
        cx.error(Some(loc), K::ZeroMemory { key: "maxmem" });
    }
    if let (Some((m, _)), Some((mx, loc))) = (memory, maxmem) {
        if mx != 0 && mx < m {
            cx.error(
                Some(loc),
                K::MaxmemBelowMemory {
                    memory: m,
                    maxmem: mx,
                },
            );
        }
    }

    // vcpus
    let vcpus = cx.number_u32(get("vcpus"));
    let maxvcpus = cx.number_u32(get("maxvcpus"));
    if let Some((0, loc)) = vcpus {
        cx.error(Some(loc), K::ZeroVcpus { key: "vcpus" });
    }
    if let Some((0, loc)) = maxvcpus {
        cx.error(Some(loc), K::ZeroVcpus { key: "maxvcpus" });
    }
    if let (Some((v, loc)), Some((mx, _))) = (vcpus, maxvcpus) {
        if mx != 0 && v > mx {
            cx.error(
                Some(loc),
                K::VcpusAboveMaxvcpus {
                    vcpus: v.into(),
                    maxvcpus: mx.into(),
                },
            );
        }
    }

    let cpus = cx.affinity(get("cpus"));
    let cpus_soft = cx.affinity(get("cpus_soft"));
    let pool = cx.string(get("pool"));
    let kernel = cx.string(get("kernel"));
    let ramdisk = cx.string(get("ramdisk"));
    let bootloader = cx.string(get("bootloader"));
    let bootloader_args = match get("bootloader_args") {
        Some(e) if matches!(e.value.kind, ValueKind::Str(_)) => {
            cx.warn(
                Some(e.key_location),
                W::Deprecated {
                    what: "bootloader_args as a plain string".into(),
                    instead: "a list of strings".into(),
                },
            );
            cx.string(Some(e))
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect()
        }
        e => cx.string_list(e).into_iter().map(|(s, _)| s).collect(),
    };

    // cmdline / root / extra, combined the way xl does it.
    let cmdline_s = cx.string(get("cmdline"));
    let root = cx.string(get("root"));
    let extra = cx.string(get("extra"));
    let cmdline = match (cmdline_s, root, extra) {
        (Some(c), root, extra) => {
            if root.is_some() {
                cx.warn(
                    get("root").map(|e| e.key_location),
                    W::CmdlineOverrides { ignored: "root" },
                );
            }
            if extra.is_some() {
                cx.warn(
                    get("extra").map(|e| e.key_location),
                    W::CmdlineOverrides { ignored: "extra" },
                );
            }
            Some(c)
        }
        (None, Some(r), Some(x)) => Some(format!("root={r} {x}")),
        (None, Some(r), None) => Some(format!("root={r}")),
        (None, None, x) => x,
    };

    if type_ok && guest_type == GuestType::Pv && kernel.is_none() && bootloader.is_none() {
        cx.error(None, K::PvNeedsKernel);
    }

    let on_poweroff = cx.action(get("on_poweroff"), Action::Destroy);
    let on_reboot = cx.action(get("on_reboot"), Action::Restart);
    let on_crash = cx.action(get("on_crash"), Action::Destroy);
    let on_watchdog = cx.action(get("on_watchdog"), Action::Destroy);
    let on_soft_reset = cx.action(get("on_soft_reset"), Action::SoftReset);

    // disks
    let mut disks: Vec<DiskSpec> = Vec::new();
    for (index, (spec, loc)) in cx.string_list(get("disk")).into_iter().enumerate() {
        match parse_disk_spec(&spec) {
            Ok(d) => {
                for option in &d.ignored_options {
                    cx.warn(
                        Some(loc),
                        W::IgnoredDiskOption {
                            index,
                            option: option.clone(),
                        },
                    );
                }
                if d.legacy_syntax {
                    cx.warn(
                        Some(loc),
                        W::Deprecated {
                            what: format!("disk[{index}] uses the xend 'prefix:target,vdev,access' syntax which"),
                            instead: "'target,format,vdev,access' or key=value form".into(),
                        },
                    );
                }
                if disks.iter().any(|o| o.vdev == d.vdev) {
                    cx.error(
                        Some(loc),
                        K::DuplicateVdev {
                            vdev: d.vdev.clone(),
                        },
                    );
                }
                disks.push(d);
            }
            Err(reason) => cx.error(
                Some(loc),
                K::InvalidDisk {
                    index,
                    spec,
                    reason,
                },
            ),
        }
    }

    // vifs
    let mut vifs = Vec::new();
    for (index, (spec, loc)) in cx.string_list(get("vif")).into_iter().enumerate() {
        match parse_vif_spec(&spec) {
            Ok(v) => {
                for option in &v.unknown_options {
                    cx.warn(
                        Some(loc),
                        W::UnknownVifOption {
                            index,
                            option: option.clone(),
                        },
                    );
                }
                vifs.push(v);
            }
            Err(VifError::Mac { value, reason }) => cx.error(
                Some(loc),
                K::InvalidMac {
                    index,
                    value,
                    reason,
                },
            ),
            Err(VifError::Other(reason)) => cx.error(
                Some(loc),
                K::InvalidVif {
                    index,
                    spec,
                    reason,
                },
            ),
        }
    }

    // Report in file order; stable, so same-location items keep their order.
    cx.warnings.sort_by_key(|w| w.location);
    cx.errors.sort_by_key(|e| e.location);
    if !cx.errors.is_empty() {
        return Err((cx.errors, cx.warnings));
    }
    Ok(Parsed {
        config: DomainConfig {
            name: name.unwrap_or_default(),
            guest_type,
            uuid,
            memory_mb: memory.map(|m| m.0),
            maxmem_mb: maxmem.map(|m| m.0),
            vcpus: vcpus.map_or(1, |v| v.0),
            maxvcpus: maxvcpus.map(|v| v.0),
            cpus,
            cpus_soft,
            pool,
            kernel,
            ramdisk,
            cmdline,
            bootloader,
            bootloader_args,
            on_poweroff,
            on_reboot,
            on_crash,
            on_watchdog,
            on_soft_reset,
            disks,
            vifs,
            ignored,
        },
        warnings: cx.warnings,
    })
}
