use clap::Parser;
use keelctl::{backend, cli::Cli, run, Io};

fn main() {
    let cli = Cli::parse();
    let hv = backend::open(&backend::privcmd_path());
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    let rc = run(
        cli.command,
        hv.as_ref(),
        &mut Io {
            out: &mut out,
            err: &mut err,
        },
    );
    drop(out);
    std::process::exit(rc);
}
