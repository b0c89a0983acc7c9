//! Key tables: what keel interprets, and what xl knows but keel ignores.

/// Keys keel parses into [`crate::DomainConfig`].
pub const TYPED_KEYS: &[&str] = &[
    "name",
    "type",
    "builder",
    "uuid",
    "memory",
    "maxmem",
    "vcpus",
    "maxvcpus",
    "cpus",
    "cpus_soft",
    "pool",
    "kernel",
    "ramdisk",
    "cmdline",
    "extra",
    "root",
    "bootloader",
    "bootloader_args",
    "on_poweroff",
    "on_reboot",
    "on_crash",
    "on_watchdog",
    "on_soft_reset",
    "disk",
    "vif",
];

/// Keys documented in xl.cfg(5) (Xen 4.17) that keel accepts and ignores,
/// with a warning, so existing xl configs still load.
pub const IGNORED_KEYS: &[&str] = &[
    "acpi",
    "acpi_firmware",
    "acpi_laptop_slate",
    "acpi_s3",
    "acpi_s4",
    "altp2m",
    "apic",
    "bios",
    "bios_path_override",
    "boot",
    "cap",
    "channel",
    "claim_mode",
    "colo_proxy_script",
    "cpu_weight",
    "cpuid",
    "device_model_args",
    "device_model_args_hvm",
    "device_model_args_pv",
    "device_model_override",
    "device_model_stubdomain_override",
    "device_model_stubdomain_seclabel",
    "device_model_user",
    "device_model_version",
    "device_tree",
    "dm_restrict",
    "driver_domain",
    "dtdev",
    "e820_host",
    "event_channels",
    "firmware",
    "gfx_passthru",
    "gic_version",
    "hap",
    "hdtype",
    "hpet",
    "init_seclabel",
    "iomem",
    "ioports",
    "irqs",
    "keymap",
    "localtime",
    "max_event_channels",
    "max_grant_frames",
    "max_grant_version",
    "max_maptrack_frames",
    "mca_caps",
    "mmio_hole",
    "ms_vm_genid",
    "msr_relaxed",
    "nestedhvm",
    "nographic",
    "nomigrate",
    "nx",
    "oos",
    "opengl",
    "pae",
    "passthrough",
    "pci",
    "pci_msitranslate",
    "pci_permissive",
    "pci_power_mgmt",
    "pci_seize",
    "pvcalls",
    "pvshim",
    "pvshim_cmdline",
    "pvshim_extra",
    "pvshim_path",
    "rdm",
    "rdm_mem_boundary",
    "rtc_timeoffset",
    "sdl",
    "seclabel",
    "serial",
    "shadow_memory",
    "smbios_firmware",
    "soundhw",
    "spice",
    "spice_clipboard_sharing",
    "spice_image_compression",
    "spice_streaming_video",
    "spiceagent_mouse",
    "spicedisable_ticketing",
    "spicehost",
    "spicepasswd",
    "spiceport",
    "spicetls_port",
    "spiceusbredirection",
    "spicevdagent",
    "stdvga",
    "stubdomain_cmdline",
    "stubdomain_kernel",
    "stubdomain_memory",
    "stubdomain_ramdisk",
    "tee",
    "timer_mode",
    "tsc_mode",
    "usb",
    "usbctrl",
    "usbdev",
    "usbdevice",
    "usbversion",
    "vdispl",
    "vendor_device",
    "vfb",
    "vga",
    "videoram",
    "viridian",
    "vkb",
    "vkb_device",
    "vmtrace_buf_kb",
    "vnc",
    "vncconsole",
    "vncdisplay",
    "vnclisten",
    "vncpasswd",
    "vncunused",
    "vnuma",
    "vpmu",
    "vpt_align",
    "vsnd",
    "vtpm",
    "vuart",
    "xen_platform_pci",
    "xend_suspend_evtchn_compat",
];

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest known key to `key`, if it is plausibly a typo.
pub fn suggest(key: &str) -> Option<&'static str> {
    if key.len() > 64 {
        return None;
    }
    let lower = key.to_ascii_lowercase();
    TYPED_KEYS
        .iter()
        .chain(IGNORED_KEYS)
        .map(|k| (edit_distance(&lower, k), *k))
        .filter(|(d, k)| *d <= 2 && *d < k.len().max(2) / 2 + 1)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(suggest("memroy"), Some("memory"));
        assert_eq!(suggest("VCPUS"), Some("vcpus"));
        assert_eq!(suggest("on_poweof"), Some("on_poweroff"));
        assert_eq!(suggest("zzzzzzzz"), None);
    }

    #[test]
    fn tables_disjoint_and_sorted() {
        for k in TYPED_KEYS {
            assert!(!IGNORED_KEYS.contains(k), "{k}");
        }
        let mut sorted = IGNORED_KEYS.to_vec();
        sorted.sort();
        assert_eq!(sorted, IGNORED_KEYS);
    }
}
