//! Command-line definition (clap derive). Subcommands follow xl(1).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "keelctl",
    version,
    about = "Manage keel domains (xl-compatible command names)",
    after_help = "Exit status: 0 success, 1 error (bad config, unknown domain...), \
                  2 usage error, 3 not supported yet on this keel build/host."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a domain from an xl-style configuration file
    Create {
        /// Domain configuration file (xl.cfg(5) syntax)
        #[arg(value_name = "CONFIG", required_unless_present = "config_file")]
        config: Option<PathBuf>,
        /// Configuration file (alternative to the positional argument)
        #[arg(
            short = 'f',
            long = "defconfig",
            value_name = "FILE",
            conflicts_with = "config"
        )]
        config_file: Option<PathBuf>,
        /// Dry run: parse and validate the config, print it, create nothing
        #[arg(short = 'n', long)]
        dry_run: bool,
        /// Leave the domain paused after creation
        #[arg(short, long)]
        paused: bool,
        /// Attach to the console after creation
        #[arg(short, long)]
        console: bool,
        /// Only print errors
        #[arg(short, long)]
        quiet: bool,
        /// Do not start the monitor that carries out on_poweroff, on_reboot
        /// and on_crash (as `xl create -e`)
        #[arg(short = 'e', long = "no-monitor")]
        no_monitor: bool,
    },
    /// List domains (columns as `xl list`)
    List {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
        /// Only these domains (name or id)
        domains: Vec<String>,
    },
    /// Terminate a domain immediately
    Destroy { domain: String },
    /// Ask a domain to shut down
    Shutdown {
        /// Shut down all domains
        #[arg(short, long, conflicts_with = "domain")]
        all: bool,
        /// Wait for the domain(s) to finish shutting down
        #[arg(short, long)]
        wait: bool,
        #[arg(required_unless_present = "all")]
        domain: Option<String>,
    },
    /// Ask a domain to reboot
    Reboot {
        /// Reboot all domains
        #[arg(short, long, conflicts_with = "domain")]
        all: bool,
        #[arg(required_unless_present = "all")]
        domain: Option<String>,
    },
    /// Pause a domain
    Pause { domain: String },
    /// Unpause a paused domain
    Unpause { domain: String },
    /// Attach to a domain's console (through keel-consoled; Ctrl-] leaves)
    Console {
        /// Console type: pv or serial (only pv is served)
        #[arg(short = 't', long = "type", value_parser = ["pv", "serial"])]
        console_type: Option<String>,
        /// Console number (only 0)
        #[arg(short, long)]
        num: Option<u32>,
        /// Leave after this many seconds (for scripts: with stdin not a
        /// terminal, the end of stdin does not end the session)
        #[arg(long, value_name = "SECS", value_parser = parse_delay)]
        timeout: Option<f64>,
        /// Domain name or id
        domain: String,
    },
    /// Show host and hypervisor information
    Info {
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Read the hypervisor's console ring
    Dmesg {
        /// Clear the ring after reading it
        #[arg(short, long)]
        clear: bool,
    },
    /// List vCPUs of domains
    #[command(name = "vcpu-list")]
    VcpuList {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
        /// Only these domains (name or id)
        domains: Vec<String>,
    },
    /// Pin vCPUs to physical CPUs
    #[command(name = "vcpu-pin")]
    VcpuPin {
        domain: String,
        /// vCPU number or "all"
        vcpu: String,
        /// Hard affinity, a CPU list such as "0-3,^1" or "all"
        cpus: String,
        /// Soft affinity (optional)
        cpus_soft: Option<String>,
    },
    /// Show or set credit scheduler parameters (weight, cap), as `xl sched-credit`
    #[command(name = "sched-credit")]
    SchedCredit {
        /// Only this domain (name or id); all domains without it
        #[arg(short, long)]
        domain: Option<String>,
        /// Weight (1-65535; default 256): CPU share relative to other domains
        #[arg(short, long, value_parser = clap::value_parser!(u16).range(1..))]
        weight: Option<u16>,
        /// Cap in percent of one CPU (0 = none; at most 100 per vCPU)
        #[arg(short, long)]
        cap: Option<u16>,
    },
    /// Set a domain's memory target (default unit kiB; suffix b, k, m, g, t)
    #[command(name = "mem-set")]
    MemSet {
        domain: String,
        /// Amount, e.g. 524288 (kiB) or 512m
        mem: String,
    },
    /// Hot-plug a block device into a running domain
    /// (xl-disk-configuration(5) spec)
    #[command(name = "block-attach")]
    BlockAttach {
        domain: String,
        /// Disk spec; several arguments are joined with ','
        #[arg(required = true, num_args = 1..)]
        disk_spec: Vec<String>,
    },
    /// Hot-unplug a block device from a running domain
    #[command(name = "block-detach")]
    BlockDetach {
        /// Remove it even when the guest does not let go of it (as
        /// `xl block-detach -f`)
        #[arg(short = 'f', long)]
        force: bool,
        domain: String,
        /// The disk: its vdev (xvdb) or device id (51728)
        #[arg(value_name = "DEVID|VDEV")]
        device: String,
    },
    /// List a domain's virtual block devices (columns as `xl block-list`)
    #[command(name = "block-list")]
    BlockList {
        /// Domains (name or id)
        #[arg(required = true, num_args = 1..)]
        domains: Vec<String>,
    },
    /// List a domain's network interfaces (columns as `xl network-list`)
    #[command(name = "network-list")]
    NetworkList {
        /// Domains (name or id)
        #[arg(required = true, num_args = 1..)]
        domains: Vec<String>,
    },
    /// Hot-plug a network interface into a running domain
    /// (xl-network-configuration(5) spec)
    #[command(name = "network-attach")]
    NetworkAttach {
        domain: String,
        /// vif spec items (key=value); several are joined with ','
        vif_spec: Vec<String>,
    },
    /// Hot-unplug a network interface from a running domain
    #[command(name = "network-detach")]
    NetworkDetach {
        domain: String,
        /// The interface: its device id (0) or MAC address
        #[arg(value_name = "DEVID|MAC")]
        device: String,
    },
    /// Save a domain's state to a file
    Save {
        /// Leave the domain running after saving
        #[arg(short = 'c')]
        checkpoint: bool,
        /// Leave the domain paused after saving
        #[arg(short = 'p')]
        paused: bool,
        domain: String,
        checkpoint_file: PathBuf,
        /// Config to store in the image instead of the running one
        config: Option<PathBuf>,
    },
    /// Restore a domain from a saved state file
    Restore {
        /// Leave the domain paused after restore
        #[arg(short = 'p')]
        paused: bool,
        /// Config file (optional) followed by the checkpoint file
        #[arg(required = true, num_args = 1..=2, value_name = "[CONFIG] CHECKPOINT")]
        files: Vec<PathBuf>,
    },
    /// Monitor domains live, as xentop: CPU %, memory, vCPUs, state and VM
    /// exits per second by reason
    Top {
        /// Plain lines for scripts (a header and a row per domain each
        /// iteration), as `xentop -b`
        #[arg(short, long)]
        batch: bool,
        /// Seconds between updates
        #[arg(short, long, default_value_t = 3.0, value_parser = parse_delay)]
        delay: f64,
        /// Stop after N iterations (the first has no rates yet)
        #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        iterations: Option<u32>,
        /// One JSON object per iteration, one a line
        #[arg(long)]
        json: bool,
    },
    /// The per-domain monitor `create` starts in the background (as xl's
    /// child that waits for the domain's death): carries out the config's
    /// on_poweroff/on_reboot/on_crash actions for domain DOMID
    #[command(hide = true)]
    Monitor {
        /// The domain's configuration file
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        domid: u32,
    },
}

/// `top -d`: seconds, at least 0.1 and at most a day.
fn parse_delay(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(d) if (0.1..=86_400.0).contains(&d) => Ok(d),
        _ => Err(format!("'{s}' is not a delay in seconds from 0.1 to 86400")),
    }
}

impl Command {
    /// The subcommand's name as typed (for messages).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Create { .. } => "create",
            Command::List { .. } => "list",
            Command::Destroy { .. } => "destroy",
            Command::Shutdown { .. } => "shutdown",
            Command::Reboot { .. } => "reboot",
            Command::Pause { .. } => "pause",
            Command::Unpause { .. } => "unpause",
            Command::Console { .. } => "console",
            Command::Info { .. } => "info",
            Command::Dmesg { .. } => "dmesg",
            Command::VcpuList { .. } => "vcpu-list",
            Command::VcpuPin { .. } => "vcpu-pin",
            Command::SchedCredit { .. } => "sched-credit",
            Command::MemSet { .. } => "mem-set",
            Command::BlockAttach { .. } => "block-attach",
            Command::BlockDetach { .. } => "block-detach",
            Command::BlockList { .. } => "block-list",
            Command::NetworkList { .. } => "network-list",
            Command::NetworkAttach { .. } => "network-attach",
            Command::NetworkDetach { .. } => "network-detach",
            Command::Save { .. } => "save",
            Command::Restore { .. } => "restore",
            Command::Top { .. } => "top",
            Command::Monitor { .. } => "monitor",
        }
    }
}

/// Every subcommand name, for tests and docs.
pub const SUBCOMMANDS: &[&str] = &[
    "create",
    "list",
    "destroy",
    "shutdown",
    "reboot",
    "pause",
    "unpause",
    "console",
    "info",
    "dmesg",
    "vcpu-list",
    "vcpu-pin",
    "sched-credit",
    "mem-set",
    "block-attach",
    "block-detach",
    "block-list",
    "network-list",
    "network-attach",
    "network-detach",
    "save",
    "restore",
    "top",
    "monitor",
];

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
        let names: Vec<String> = Cli::command()
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .collect();
        assert_eq!(names, SUBCOMMANDS);
    }
}
