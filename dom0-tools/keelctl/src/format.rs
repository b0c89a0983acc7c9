//! Text tables and JSON for the tabular commands (no serde needed).

use std::fmt::Write;

use crate::backend::{BlockInfo, DomainInfo, HostInfo, NicInfo, VcpuInfo, VcpuState};

/// JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// `xl list` style table: Name, ID, Mem (MiB), VCPUs, State, Time(s).
pub fn list_table(domains: &[DomainInfo]) -> String {
    let mut o = format!(
        "{:<40} {:>5} {:>6} {:>5} {:>8} {:>10}\n",
        "Name", "ID", "Mem", "VCPUs", "State", "Time(s)"
    );
    for d in domains {
        let _ = writeln!(
            o,
            "{:<40} {:>5} {:>6} {:>5} {:>8} {:>10.1}",
            d.name,
            d.domid,
            d.mem_kib / 1024,
            d.vcpus,
            d.state.flags(),
            secs(d.cpu_time_ns)
        );
    }
    o
}

/// `xl block-list`'s table (xl_block.c `main_blocklist`), padding and
/// all: Vdev, BE, handle (xl prints the guest's id there), state,
/// evt-ch, ring-ref, BE-path.
pub fn block_list_table(disks: &[BlockInfo]) -> String {
    let mut o = format!(
        "{:<5} {:<3} {:<6} {:<5} {:<6} {:<8} {:<30}\n",
        "Vdev", "BE", "handle", "state", "evt-ch", "ring-ref", "BE-path"
    );
    for d in disks {
        let _ = writeln!(
            o,
            "{:<5} {:<3} {:<6} {:<5} {:<6} {:<8} {:<30}",
            d.devid, d.backend_id, d.frontend_id, d.state, d.evtch, d.ring_ref, d.backend_path
        );
    }
    o
}

/// `xl network-list`'s table (xl_nic.c `main_networklist`), padding
/// and all (the MAC runs into the right-aligned handle, as in xl): Idx,
/// BE, Mac Addr., handle, state, evt-ch, tx-/rx-ring-ref, BE-path.
pub fn network_list_table(nics: &[NicInfo]) -> String {
    let mut o = format!(
        "{:<3} {:<2} {:<17} {:<6} {:<5} {:<6} {:>5}/{:<5} {:<30}\n",
        "Idx", "BE", "Mac Addr.", "handle", "state", "evt-ch", "tx-", "rx-ring-ref", "BE-path"
    );
    for n in nics {
        let _ = writeln!(
            o,
            "{:<3} {:<2} {}{:>6} {:>5} {:>6} {:>5}/{:<11} {:<30}",
            n.devid,
            n.backend_id,
            n.mac,
            n.devid,
            n.state,
            n.evtch,
            n.tx_ring_ref,
            n.rx_ring_ref,
            n.backend_path
        );
    }
    o
}

pub fn list_json(domains: &[DomainInfo]) -> String {
    let items: Vec<String> = domains
        .iter()
        .map(|d| {
            format!(
                "{{\"name\":{},\"domid\":{},\"mem_mib\":{},\"vcpus\":{},\"state\":{},\"cpu_time_s\":{:.3}}}",
                json_str(&d.name),
                d.domid,
                d.mem_kib / 1024,
                d.vcpus,
                json_str(&d.state.flags()),
                secs(d.cpu_time_ns)
            )
        })
        .collect();
    format!("[{}]\n", items.join(","))
}

fn vcpu_state(s: VcpuState) -> &'static str {
    match s {
        VcpuState::Running => "r",
        VcpuState::Blocked => "b",
        VcpuState::Offline => "-",
    }
}

pub fn vcpu_table(vcpus: &[VcpuInfo]) -> String {
    let mut o = format!(
        "{:<32} {:>5} {:>5} {:>5} {:>5} {:>10}  {}\n",
        "Name", "ID", "VCPU", "CPU", "State", "Time(s)", "Affinity (Hard / Soft)"
    );
    for v in vcpus {
        let _ = writeln!(
            o,
            "{:<32} {:>5} {:>5} {:>5} {:>5} {:>10.1}  {} / {}",
            v.domain,
            v.domid,
            v.vcpu,
            v.cpu.map_or("-".to_string(), |c| c.to_string()),
            vcpu_state(v.state),
            secs(v.cpu_time_ns),
            v.hard_affinity,
            v.soft_affinity
        );
    }
    o
}

pub fn vcpu_json(vcpus: &[VcpuInfo]) -> String {
    let items: Vec<String> = vcpus
        .iter()
        .map(|v| {
            format!(
                "{{\"name\":{},\"domid\":{},\"vcpu\":{},\"cpu\":{},\"state\":{},\"cpu_time_s\":{:.3},\"affinity_hard\":{},\"affinity_soft\":{}}}",
                json_str(&v.domain),
                v.domid,
                v.vcpu,
                v.cpu.map_or("null".to_string(), |c| c.to_string()),
                json_str(match v.state {
                    VcpuState::Running => "running",
                    VcpuState::Blocked => "blocked",
                    VcpuState::Offline => "offline",
                }),
                secs(v.cpu_time_ns),
                json_str(&v.hard_affinity),
                json_str(&v.soft_affinity)
            )
        })
        .collect();
    format!("[{}]\n", items.join(","))
}

/// `xl info` style MHz: "2994.000" for 2994000 kHz.
fn mhz(khz: u32) -> String {
    format!("{}.{:03}", khz / 1000, khz % 1000)
}

/// `xl sched-credit` rows: (name, id, weight, cap).
pub fn sched_credit_table(rows: &[(String, u32, u16, u16)]) -> String {
    let mut o = format!("{:<32} {:>5} {:>6} {:>4}\n", "Name", "ID", "Weight", "Cap");
    for (name, id, w, c) in rows {
        let _ = writeln!(o, "{name:<32} {id:>5} {w:>6} {c:>4}");
    }
    o
}

/// `xl info` style `key : value` lines.
pub fn info_text(h: &HostInfo) -> String {
    let caps = if h.virt_caps.is_empty() {
        "(none)".to_string()
    } else {
        h.virt_caps.join(" ")
    };
    let rows = [
        ("host", h.host.clone()),
        ("hypervisor", h.hypervisor.clone()),
        ("keel_version", h.version.clone()),
        ("mgmt_abi", h.mgmt_abi.clone()),
        ("cpu_vendor", h.cpu_vendor.clone()),
        ("virt_caps", caps),
        ("nr_cpus", h.nr_cpus.to_string()),
        ("nr_nodes", h.nr_nodes.to_string()),
        ("cpu_mhz", mhz(h.tsc_khz)),
        ("tsc_khz", h.tsc_khz.to_string()),
        ("total_memory", h.total_mem_mib.to_string()),
        ("free_memory", h.free_mem_mib.to_string()),
        ("free_pages", h.free_pages.to_string()),
        ("scheduler", h.scheduler.clone()),
        ("keelctl_version", env!("CARGO_PKG_VERSION").to_string()),
    ];
    rows.iter()
        .map(|(k, v)| format!("{k:<22}: {v}\n"))
        .collect()
}

pub fn info_json(h: &HostInfo) -> String {
    let caps: Vec<String> = h.virt_caps.iter().map(|c| json_str(c)).collect();
    format!(
        "{{\"host\":{},\"hypervisor\":{},\"keel_version\":{},\"mgmt_abi\":{},\"cpu_vendor\":{},\"virt_caps\":[{}],\"nr_cpus\":{},\"nr_nodes\":{},\"tsc_khz\":{},\"total_memory_mib\":{},\"free_memory_mib\":{},\"free_pages\":{},\"scheduler\":{},\"keelctl_version\":{}}}\n",
        json_str(&h.host),
        json_str(&h.hypervisor),
        json_str(&h.version),
        json_str(&h.mgmt_abi),
        json_str(&h.cpu_vendor),
        caps.join(","),
        h.nr_cpus,
        h.nr_nodes,
        h.tsc_khz,
        h.total_mem_mib,
        h.free_mem_mib,
        h.free_pages,
        json_str(&h.scheduler),
        json_str(env!("CARGO_PKG_VERSION"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escaping() {
        assert_eq!(json_str("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\u0001é\"");
    }

    #[test]
    fn mhz_keeps_khz_digits() {
        assert_eq!(mhz(2_994_000), "2994.000");
        assert_eq!(mhz(3_600_042), "3600.042");
        assert_eq!(mhz(999), "0.999");
    }
}
