//! Starting an emulator, following its serial log, bounding it in time and
//! deciding the outcome.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::emulator::{self, Launch};
use crate::images::{self, Tools};
use crate::markers::Console;
use crate::scenario::{self, Exit, Progress, Scenario, Status, Verdict};

/// How long an emulator may take to exit by itself once its result is on
/// the console (a FATAL diagnostic is still being printed, S5 in progress).
pub const GRACE: Duration = Duration::from_secs(5);
/// Lines of console shown with a failure.
pub const TAIL_LINES: usize = 40;

#[derive(Debug, Clone)]
pub struct Record {
    pub console: Console,
    pub exit: Exit,
    pub wall: Duration,
}

/// Runs `launch` until it exits, `progress` says the result is in (then at
/// most [`GRACE`] more), or `timeout` passes. With `stream`, console bytes are
/// copied to stdout as they arrive.
pub fn run(
    launch: &Launch,
    timeout: Option<Duration>,
    silence: Option<Duration>,
    stream: bool,
    progress: &dyn Fn(&Console) -> Progress,
) -> Result<Record, String> {
    let mut cmd = launch.command()?;
    let interactive = launch.console == emulator::Console::Terminal;
    let qemu_on_tty = interactive && launch.emulator == scenario::Emulator::Qemu;
    if !qemu_on_tty {
        let log = File::create(launch.emulator_log())
            .map_err(|e| format!("{}: {e}", launch.emulator_log().display()))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
    }
    let stream = stream || (interactive && !qemu_on_tty);
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| {
        format!(
            "cannot start {:?}: {e} (is it installed?)",
            cmd.get_program()
        )
    })?;
    let serial = launch.serial_log();
    let mut shown = 0usize;
    let mut done_at: Option<Instant> = None;
    let mut parsed_len = usize::MAX;
    let exit = loop {
        let status = child.try_wait().map_err(|e| e.to_string())?;
        let bytes = std::fs::read(&serial).unwrap_or_default();
        if stream && bytes.len() > shown {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&bytes[shown..]);
            let _ = out.flush();
            shown = bytes.len();
        }
        if let Some(st) = status {
            break Exit::Status(st.code());
        }
        // Re-parse only when the log grew.
        if done_at.is_none() && bytes.len() != parsed_len {
            parsed_len = bytes.len();
            if progress(&Console::from_bytes(&bytes)) == Progress::Done {
                done_at = Some(Instant::now());
            }
        }
        if done_at.is_some_and(|t| t.elapsed() >= GRACE) {
            let _ = child.kill();
            let _ = child.wait();
            break Exit::Stopped;
        }
        if bytes.is_empty() && silence.is_some_and(|t| start.elapsed() >= t) {
            let _ = child.kill();
            let _ = child.wait();
            break Exit::Silent;
        }
        if timeout.is_some_and(|t| start.elapsed() >= t) {
            let _ = child.kill();
            let _ = child.wait();
            break Exit::TimedOut;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let wall = start.elapsed();
    let bytes = std::fs::read(&serial).unwrap_or_default();
    if stream && bytes.len() > shown {
        let _ = std::io::stdout().write_all(&bytes[shown..]);
        let _ = std::io::stdout().flush();
    }
    Ok(Record {
        console: Console::from_bytes(&bytes),
        exit,
        wall,
    })
}

/// A finished scenario.
#[derive(Debug, Clone)]
pub struct Report {
    pub scenario: Scenario,
    pub verdict: Verdict,
    /// Emulator wall time (image preparation not included).
    pub wall: Duration,
    /// Image preparation time.
    pub prepare: Duration,
    pub record: Option<Record>,
    pub work_dir: std::path::PathBuf,
}

impl Report {
    /// The failure report: reason, console tail and where the logs are.
    pub fn details(&self) -> String {
        let mut s = format!("  reason: {}\n", self.verdict.reason);
        s += &format!(
            "  scenario: {}\n  cmdline: {}\n",
            self.scenario.description, self.scenario.cmdline
        );
        if let Some(r) = &self.record {
            if r.console.lines.is_empty() {
                s += "  (nothing on the serial console)\n";
                let emu =
                    std::fs::read_to_string(self.work_dir.join("emulator.log")).unwrap_or_default();
                // QEMU warns once per CPU about each EPYC feature TCG lacks.
                let tail: Vec<&str> = emu
                    .lines()
                    .filter(|l| !l.contains("TCG doesn't support requested feature"))
                    .rev()
                    .take(15)
                    .collect();
                if !tail.is_empty() {
                    s += "  --- emulator output (last lines) ---\n";
                    for l in tail.iter().rev() {
                        s += &format!("  | {l}\n");
                    }
                }
            } else {
                s += &format!("  --- console, last {TAIL_LINES} lines ---\n");
                for l in r.console.tail(TAIL_LINES) {
                    s += &format!("  | {}\n", l.replace('\x1b', "^["));
                }
            }
        }
        s += &format!("  logs: {}\n", self.work_dir.display());
        s
    }
}

/// Prepares the image and runs one scenario headless under `work_root/<name>`.
pub fn run_scenario(s: &Scenario, tools: &Tools, work_root: &Path) -> Report {
    let dir = work_root.join(&s.name);
    let _ = std::fs::remove_dir_all(&dir);
    let t0 = Instant::now();
    let fail = |reason: String, prepare| Report {
        scenario: s.clone(),
        verdict: Verdict {
            status: Status::Failed,
            reason,
        },
        wall: Duration::ZERO,
        prepare,
        record: None,
        work_dir: dir.clone(),
    };
    let image = match images::prepare(s, tools, &dir) {
        Ok(i) => i,
        Err(e) => return fail(format!("image: {e}"), t0.elapsed()),
    };
    let prepare = t0.elapsed();
    let launch = Launch {
        emulator: s.emulator,
        vendor: s.vendor,
        firmware: s.firmware,
        cpus: s.cpus,
        memory_mib: s.memory_mib,
        image,
        work_dir: dir.clone(),
        console: emulator::Console::File,
        accel: emulator::Accel::Tcg,
    };
    let progress = |c: &Console| scenario::progress(s, c);
    match run(
        &launch,
        Some(s.timeout),
        Some(s.silence_timeout),
        false,
        &progress,
    ) {
        Ok(record) => Report {
            scenario: s.clone(),
            verdict: scenario::decide(s, &record.console, record.exit),
            wall: record.wall,
            prepare,
            record: Some(record),
            work_dir: dir,
        },
        Err(e) => fail(e, prepare),
    }
}
