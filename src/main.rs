//! The `fimd` binary: parse the command line, run one command, exit with DESIGN.md's codes.
//! Errors are printed once, on one line, prefixed `fimd:`.

use clap::Parser;
use std::process::ExitCode;

use fimd::cli::Cli;
use fimd::commands::{self, Exit};

fn main() -> ExitCode {
    fimd::memory::limit_arenas();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let _ = e.print();
            return match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => Exit::Clean.into(),
                // Never clap's default 2, which means "files removed" here.
                _ => Exit::Usage.into(),
            };
        }
    };
    // Who-data: the fanotify group needs CAP_SYS_ADMIN, held only until it exists, and
    // before the runtime's threads start (capabilities are per thread).
    if matches!(cli.command, Some(fimd::cli::Command::Run)) {
        fimd::daemon::whodata::prepare();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fimd: cannot start the async runtime: {e}");
            return Exit::Io.into();
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("fimd: {e}");
            e.exit().into()
        }
    }
}
