//! `keelctl`: xl-style management tool for keel domains.
//!
//! The binary is a thin wrapper around [`run`]; all hypervisor access goes
//! through the [`backend::Hypervisor`] trait: [`xen::XenBackend`] speaks
//! Xen 4.17's toolstack ABI (`sysctl`, `domctl`, `xen_version`) through
//! `/dev/xen/privcmd` ([`privcmd`]), and tests use in-memory fakes.

#![deny(unsafe_code)]

pub mod backend;
pub mod badfront;
pub mod badptr;
pub mod cli;
pub mod devices;
pub mod disks;
pub mod domu;
pub mod format;
pub mod fuzz;
#[allow(unsafe_code)]
pub mod hotplug;
pub mod monitor;
pub mod names;
#[allow(unsafe_code)]
pub mod netdev;
pub mod nics;
#[allow(unsafe_code)]
pub mod privcmd;
pub mod teardown;
pub mod top;
pub mod xen;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use backend::{BackendError, DomainRef, Hypervisor};
use cli::Command;
use keel_xlcfg::CpuList;

/// Success.
pub const EXIT_OK: i32 = 0;
/// Failure: invalid config or argument, unknown domain, backend error.
pub const EXIT_ERROR: i32 = 1;
/// Command-line usage error (clap's convention).
pub const EXIT_USAGE: i32 = 2;
/// The operation needs hypervisor support keel/keelctl does not have yet.
pub const EXIT_NOT_SUPPORTED: i32 = 3;

/// Output sinks, so tests can capture what a command prints.
pub struct Io<'a> {
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
}

fn not_supported(io: &mut Io, cmd: &str, why: impl std::fmt::Display) -> i32 {
    let _ = writeln!(io.err, "keelctl: '{cmd}' is not supported yet: {why}");
    EXIT_NOT_SUPPORTED
}

fn fail(io: &mut Io, cmd: &str, why: impl std::fmt::Display) -> i32 {
    let _ = writeln!(io.err, "keelctl: {cmd}: {why}");
    EXIT_ERROR
}

/// Map a backend error to a message and exit status.
pub(crate) fn backend_error(io: &mut Io, cmd: &str, e: BackendError) -> i32 {
    match e {
        BackendError::Unavailable(_) | BackendError::NotImplemented(_) => not_supported(io, cmd, e),
        BackendError::NoSuchDomain(_) | BackendError::Failed(_) => fail(io, cmd, e),
    }
}

fn done(io: &mut Io, cmd: &str, r: backend::Result<()>) -> i32 {
    match r {
        Ok(()) => EXIT_OK,
        Err(e) => backend_error(io, cmd, e),
    }
}

/// Parse an xl memory amount: default unit KiB, suffix b/k/m/g/t. Returns KiB.
pub fn parse_mem_kib(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult_bytes): (&str, u64) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_lowercase() {
                'b' => 1,
                'k' => 1 << 10,
                'm' => 1 << 20,
                'g' => 1 << 30,
                't' => 1 << 40,
                _ => {
                    return Err(format!(
                        "invalid memory size '{s}': unknown unit '{c}' (use b, k, m, g or t)"
                    ))
                }
            };
            (&s[..i], m)
        }
        _ => (s, 1 << 10),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid memory size '{s}' (examples: 524288, 512m, 2g)"))?;
    let bytes = n
        .checked_mul(mult_bytes)
        .ok_or_else(|| format!("memory size '{s}' is too large"))?;
    if bytes == 0 {
        return Err("memory size must be greater than 0".into());
    }
    Ok(bytes.div_ceil(1024))
}

fn filter_domains<T>(
    io: &mut Io,
    cmd: &str,
    all: Vec<T>,
    wanted: &[String],
    m: impl Fn(&DomainRef, &T) -> bool,
) -> Result<Vec<T>, i32> {
    if wanted.is_empty() {
        return Ok(all);
    }
    let refs: Vec<DomainRef> = wanted.iter().map(|w| DomainRef::parse(w)).collect();
    for r in &refs {
        if !all.iter().any(|d| m(r, d)) {
            return Err(fail(io, cmd, BackendError::NoSuchDomain(r.clone())));
        }
    }
    Ok(all
        .into_iter()
        .filter(|d| refs.iter().any(|r| m(r, d)))
        .collect())
}

fn create(
    io: &mut Io,
    hv: &dyn Hypervisor,
    path: &Path,
    dry_run: bool,
    paused: bool,
    quiet: bool,
) -> (i32, Option<u32>) {
    let file = path.display().to_string();
    let parsed = match keel_xlcfg::parse_file(path) {
        Ok(p) => p,
        Err(e) => {
            if let keel_xlcfg::Error::Invalid { warnings, .. } = &e {
                if !quiet {
                    for w in warnings {
                        let _ = writeln!(io.err, "{}", w.render(&file));
                    }
                }
            }
            for line in e.render_lines() {
                let _ = writeln!(io.err, "{line}");
            }
            let _ = writeln!(io.err, "keelctl: create: {file}: configuration is invalid");
            return (EXIT_ERROR, None);
        }
    };
    if !quiet {
        for w in &parsed.warnings {
            let _ = writeln!(io.err, "{}", w.render(&file));
        }
    }
    let c = &parsed.config;
    if dry_run {
        let _ = writeln!(io.out, "{}", describe_config(c));
        return (EXIT_OK, None);
    }
    if !quiet {
        let _ = writeln!(
            io.err,
            "keelctl: {file}: configuration for domain '{}' is valid ({} warning(s))",
            c.name,
            parsed.warnings.len()
        );
    }
    match hv.create_domain(c, paused) {
        Ok(id) => {
            let _ = writeln!(io.out, "Created domain '{}' (id {id})", c.name);
            (EXIT_OK, Some(id))
        }
        Err(e) => (backend_error(io, "create", e), None),
    }
}

/// Human summary printed by `create --dry-run`.
pub fn describe_config(c: &keel_xlcfg::DomainConfig) -> String {
    let mut o = String::new();
    let mut line = |k: &str, v: String| o.push_str(&format!("{k:<12} {v}\n"));
    line("name", c.name.clone());
    line("type", c.guest_type.name().into());
    let mem = |m: Option<u64>| m.map_or("default".to_string(), |m| format!("{m} MiB"));
    line("memory", mem(c.memory_mb));
    line("maxmem", mem(c.effective_maxmem_mb()));
    line(
        "vcpus",
        format!("{} (max {})", c.vcpus, c.effective_maxvcpus()),
    );
    if let Some(k) = &c.kernel {
        line("kernel", k.clone());
    }
    if let Some(r) = &c.ramdisk {
        line("ramdisk", r.clone());
    }
    if let Some(cl) = &c.cmdline {
        line("cmdline", cl.clone());
    }
    line(
        "actions",
        format!(
            "poweroff={} reboot={} crash={}",
            c.on_poweroff.name(),
            c.on_reboot.name(),
            c.on_crash.name()
        ),
    );
    for (i, d) in c.disks.iter().enumerate() {
        line(&format!("disk[{i}]"), d.to_string());
    }
    for (i, v) in c.vifs.iter().enumerate() {
        let mut parts = Vec::new();
        if let Some(m) = v.mac {
            parts.push(format!("mac={m}"));
        }
        if let Some(b) = &v.bridge {
            parts.push(format!("bridge={b}"));
        }
        if let Some(ip) = &v.ip {
            parts.push(format!("ip={ip}"));
        }
        line(
            &format!("vif[{i}]"),
            if parts.is_empty() {
                "(defaults)".into()
            } else {
                parts.join(", ")
            },
        );
    }
    o.trim_end().to_string()
}

/// Execute one parsed command against `hv`; returns the exit status.
pub fn run(cmd: Command, hv: &dyn Hypervisor, io: &mut Io) -> i32 {
    let name = cmd.name();
    match cmd {
        Command::Create {
            config,
            config_file,
            dry_run,
            paused,
            console,
            quiet,
            no_monitor,
        } => {
            let path = config.or(config_file).expect("clap requires a config");
            let (rc, domid) = create(io, hv, &path, dry_run, paused, quiet);
            if let (Some(d), false) = (domid, no_monitor) {
                // The config's path as given: the monitor re-reads it to restart.
                let abs = std::fs::canonicalize(&path).unwrap_or(path.clone());
                if let Err(e) = hv.start_monitor(&abs, d) {
                    let _ = writeln!(io.err, "keelctl: create: {e}");
                }
            }
            if let (Some(d), true) = (domid, console) {
                // The daemon attaches the domain when its xenstore watch
                // fires: give it a moment.
                return console_attach(io, d, None, Duration::from_secs(5));
            }
            rc
        }
        Command::Monitor { config, domid } => {
            let parsed = match keel_xlcfg::parse_file(&config) {
                Ok(p) => p,
                Err(e) => return fail(io, name, format!("{}: {e:?}", config.display())),
            };
            let _ = writeln!(io.err, "keelctl monitor: watching domain {domid}");
            let mut log = |l: String| {
                eprintln!("keelctl monitor: {l}");
            };
            match hv.monitor(&parsed.config, domid, &mut log) {
                Ok(why) => {
                    let _ = writeln!(io.err, "keelctl monitor: {why}");
                    EXIT_OK
                }
                Err(e) => backend_error(io, name, e),
            }
        }
        Command::List { json, domains } => {
            let all = match hv.list_domains() {
                Ok(d) => d,
                Err(e) => return backend_error(io, name, e),
            };
            let doms = match filter_domains(io, name, all, &domains, |r, d| r.matches(d)) {
                Ok(d) => d,
                Err(rc) => return rc,
            };
            let text = if json {
                format::list_json(&doms)
            } else {
                format::list_table(&doms)
            };
            let _ = io.out.write_all(text.as_bytes());
            EXIT_OK
        }
        Command::VcpuList { json, domains } => {
            let all = match hv.vcpu_list() {
                Ok(v) => v,
                Err(e) => return backend_error(io, name, e),
            };
            let vcpus = match filter_domains(io, name, all, &domains, |r, v| match r {
                DomainRef::Id(id) => v.domid == *id,
                DomainRef::Name(n) => v.domain == *n,
            }) {
                Ok(v) => v,
                Err(rc) => return rc,
            };
            let text = if json {
                format::vcpu_json(&vcpus)
            } else {
                format::vcpu_table(&vcpus)
            };
            let _ = io.out.write_all(text.as_bytes());
            EXIT_OK
        }
        Command::Info { json } => match hv.host_info() {
            Ok(h) => {
                let text = if json {
                    format::info_json(&h)
                } else {
                    format::info_text(&h)
                };
                let _ = io.out.write_all(text.as_bytes());
                EXIT_OK
            }
            Err(e) => backend_error(io, name, e),
        },
        Command::Dmesg { clear } => match hv.read_console_ring(clear) {
            Ok(s) => {
                let _ = io.out.write_all(s.as_bytes());
                EXIT_OK
            }
            Err(e) => backend_error(io, name, e),
        },
        Command::Destroy { domain } => done(io, name, hv.destroy(&DomainRef::parse(&domain))),
        Command::Pause { domain } => done(io, name, hv.pause(&DomainRef::parse(&domain))),
        Command::Unpause { domain } => done(io, name, hv.unpause(&DomainRef::parse(&domain))),
        Command::Shutdown { all, wait, domain } => {
            let targets = match shutdown_targets(hv, all, domain.as_deref()) {
                Ok(t) => t,
                Err(e) => return backend_error(io, name, e),
            };
            let mut rc = EXIT_OK;
            for d in &targets {
                rc = rc.max(done(io, name, hv.shutdown(&DomainRef::Id(*d))));
            }
            if wait && rc == EXIT_OK {
                rc = wait_gone(io, hv, &targets, SHUTDOWN_WAIT);
            }
            rc
        }
        Command::Reboot { all, domain } => {
            each_domain(io, hv, name, all, domain, |hv, d| hv.reboot(d))
        }
        Command::VcpuPin {
            domain,
            vcpu,
            cpus,
            cpus_soft,
        } => {
            let vcpu = if vcpu == "all" {
                None
            } else {
                match vcpu.parse::<u32>() {
                    Ok(v) => Some(v),
                    Err(_) => {
                        return fail(
                            io,
                            name,
                            format!("invalid vCPU '{vcpu}' (a number or 'all')"),
                        )
                    }
                }
            };
            let hard = match CpuList::parse(&cpus) {
                Ok(l) => l,
                Err(e) => return fail(io, name, format!("invalid CPU list '{cpus}': {e}")),
            };
            let soft = match cpus_soft.as_deref().map(CpuList::parse).transpose() {
                Ok(l) => l,
                Err(e) => return fail(io, name, format!("invalid soft-affinity CPU list: {e}")),
            };
            done(
                io,
                name,
                hv.pin_vcpu(&DomainRef::parse(&domain), vcpu, &hard, soft.as_ref()),
            )
        }
        Command::SchedCredit {
            domain,
            weight,
            cap,
        } => {
            if weight.is_some() || cap.is_some() {
                let Some(d) = domain else {
                    return fail(io, name, "setting -w or -c needs -d DOMAIN");
                };
                return done(
                    io,
                    name,
                    hv.set_sched_credit(&DomainRef::parse(&d), weight, cap),
                );
            }
            let doms = match hv.list_domains() {
                Ok(d) => d,
                Err(e) => return backend_error(io, name, e),
            };
            let doms = match filter_domains(
                io,
                name,
                doms,
                &domain.into_iter().collect::<Vec<_>>(),
                |r, d| r.matches(d),
            ) {
                Ok(d) => d,
                Err(rc) => return rc,
            };
            let mut rows = Vec::new();
            for d in &doms {
                match hv.sched_credit(&DomainRef::Id(d.domid)) {
                    Ok((w, c)) => rows.push((d.name.clone(), d.domid, w, c)),
                    Err(e) => return backend_error(io, name, e),
                }
            }
            let _ = io
                .out
                .write_all(format::sched_credit_table(&rows).as_bytes());
            EXIT_OK
        }
        Command::MemSet { domain, mem } => match parse_mem_kib(&mem) {
            Ok(kib) => done(
                io,
                name,
                hv.set_memory_target(&DomainRef::parse(&domain), kib),
            ),
            Err(e) => fail(io, name, e),
        },
        Command::BlockAttach { domain, disk_spec } => {
            let spec = disk_spec.join(",");
            match keel_xlcfg::parse_disk_spec(&spec) {
                Ok(d) => done(
                    io,
                    name,
                    hv.block_attach(&DomainRef::parse(&domain), &d).map(|_| ()),
                ),
                Err(e) => fail(io, name, format!("invalid disk spec '{spec}': {e}")),
            }
        }
        Command::BlockDetach {
            force,
            domain,
            device,
        } => done(
            io,
            name,
            hv.block_detach(&DomainRef::parse(&domain), &device, force),
        ),
        Command::BlockList { domains } => {
            let mut rows = Vec::new();
            for d in &domains {
                match hv.block_list(&DomainRef::parse(d)) {
                    Ok(r) => rows.extend(r),
                    Err(e) => return backend_error(io, name, e),
                }
            }
            let _ = io.out.write_all(format::block_list_table(&rows).as_bytes());
            EXIT_OK
        }
        Command::NetworkList { domains } => {
            let mut rows = Vec::new();
            for d in &domains {
                match hv.network_list(&DomainRef::parse(d)) {
                    Ok(r) => rows.extend(r),
                    Err(e) => return backend_error(io, name, e),
                }
            }
            let _ = io
                .out
                .write_all(format::network_list_table(&rows).as_bytes());
            EXIT_OK
        }
        Command::NetworkAttach { domain, vif_spec } => {
            let spec = vif_spec.join(",");
            match keel_xlcfg::parse_vif_spec(&spec) {
                Ok(v) => done(
                    io,
                    name,
                    hv.network_attach(&DomainRef::parse(&domain), &v)
                        .map(|_| ()),
                ),
                Err(e) => fail(io, name, format!("invalid vif spec '{spec}': {e}")),
            }
        }
        Command::NetworkDetach { domain, device } => done(
            io,
            name,
            hv.network_detach(&DomainRef::parse(&domain), &device),
        ),
        Command::Console {
            console_type,
            num,
            timeout,
            domain,
        } => console(io, hv, &domain, console_type.as_deref(), num, timeout),
        Command::Save { .. } => not_supported(
            io,
            name,
            "saving domain state needs live-migration support in the keel hypervisor",
        ),
        Command::Restore { .. } => not_supported(
            io,
            name,
            "restoring domain state needs live-migration support in the keel hypervisor",
        ),
        Command::Top {
            batch,
            delay,
            iterations,
            json,
        } => top::run(
            hv,
            &top::Options {
                batch,
                json,
                delay,
                iterations,
            },
            io,
            &mut top::RealClock::new(),
        ),
    }
}

/// `keelctl console`: the PV console of a domain (name or id), through
/// keel-consoled's socket (`$KEEL_CONSOLE_SOCK`, else
/// `/run/keel/console.sock`).
fn console(
    io: &mut Io,
    hv: &dyn Hypervisor,
    domain: &str,
    console_type: Option<&str>,
    num: Option<u32>,
    timeout: Option<f64>,
) -> i32 {
    if console_type == Some("serial") {
        return not_supported(
            io,
            "console",
            "keel-consoled serves the PV console only (no emulated serial port)",
        );
    }
    if num.is_some_and(|n| n != 0) {
        return not_supported(io, "console", "only console 0 (the PV console) exists");
    }
    let r = DomainRef::parse(domain);
    let domid = match hv.list_domains() {
        Ok(d) => match d.iter().find(|d| r.matches(d)) {
            Some(d) => d.domid,
            None => return fail(io, "console", BackendError::NoSuchDomain(r)),
        },
        Err(e) => return backend_error(io, "console", e),
    };
    if domid == 0 {
        return fail(
            io,
            "console",
            "Domain-0 has no PV console here: use the machine's console",
        );
    }
    console_attach(
        io,
        domid,
        timeout.map(Duration::from_secs_f64),
        Duration::ZERO,
    )
}

/// Attaches to `domid`'s console; while the daemon does not know the
/// domain yet, retries for `grace`.
fn console_attach(io: &mut Io, domid: u32, timeout: Option<Duration>, grace: Duration) -> i32 {
    use keel_consoled::client::{self, AttachError};
    let socket = client::socket_path();
    let t0 = std::time::Instant::now();
    loop {
        match client::attach(&socket, domid, client::ESCAPE, timeout) {
            Ok(_) => return EXIT_OK,
            Err(AttachError::Refused(_)) if t0.elapsed() < grace => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return fail(io, "console", e),
        }
    }
}

/// How long `shutdown -w` waits for the domains to go.
pub const SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

/// The ids `shutdown` acts on: one domain, or every domain but dom0.
fn shutdown_targets(
    hv: &dyn Hypervisor,
    all: bool,
    domain: Option<&str>,
) -> backend::Result<Vec<u32>> {
    let doms = hv.list_domains()?;
    if all {
        return Ok(doms
            .iter()
            .filter(|d| d.domid != 0)
            .map(|d| d.domid)
            .collect());
    }
    let r = DomainRef::parse(domain.unwrap_or_default());
    doms.iter()
        .find(|d| r.matches(d))
        .map(|d| vec![d.domid])
        .ok_or(backend::BackendError::NoSuchDomain(r))
}

/// `shutdown -w`: until none of `ids` exists any more (as `xl shutdown
/// -w` waits for their death), polling the domain list.
fn wait_gone(io: &mut Io, hv: &dyn Hypervisor, ids: &[u32], limit: std::time::Duration) -> i32 {
    let t0 = std::time::Instant::now();
    loop {
        let left: Vec<u32> = match hv.list_domains() {
            Ok(d) => d
                .iter()
                .map(|d| d.domid)
                .filter(|d| ids.contains(d))
                .collect(),
            Err(e) => return backend_error(io, "shutdown", e),
        };
        if left.is_empty() {
            return EXIT_OK;
        }
        if t0.elapsed() >= limit {
            let _ = writeln!(
                io.err,
                "keelctl: shutdown: domain(s) {left:?} still there after {} s",
                limit.as_secs()
            );
            return EXIT_ERROR;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

fn each_domain(
    io: &mut Io,
    hv: &dyn Hypervisor,
    name: &str,
    all: bool,
    domain: Option<String>,
    op: impl Fn(&dyn Hypervisor, &DomainRef) -> backend::Result<()>,
) -> i32 {
    if !all {
        let d = DomainRef::parse(domain.as_deref().unwrap_or_default());
        return done(io, name, op(hv, &d));
    }
    let doms = match hv.list_domains() {
        Ok(d) => d,
        Err(e) => return backend_error(io, name, e),
    };
    let mut rc = EXIT_OK;
    for d in doms.iter().filter(|d| d.domid != 0) {
        let r = done(io, name, op(hv, &DomainRef::Id(d.domid)));
        rc = rc.max(r);
    }
    rc
}

#[cfg(test)]
mod tests;
