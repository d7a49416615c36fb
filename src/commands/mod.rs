//! Command dispatch: turns the parsed CLI into a loaded config, a store and a pipeline, runs
//! one command and maps the outcome to an AIDE-compatible exit code. The only place (with
//! `main`) that prints to stdout.

mod fleet;
mod history;
mod scan;
mod setup;

pub use setup::build_sinks;

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::config::ConfigError;
use crate::store::StoreError;

/// How fimd exits (DESIGN.md): 0 clean; for `check` the OR of 1 added, 2 removed, 4 changed;
/// 15 invalid argument; 17 invalid configuration; 18 I/O or database error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Clean,
    Changes(u8),
    Usage,
    Config,
    Io,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(match e {
            Exit::Clean => 0,
            Exit::Changes(bits) => bits & 7,
            Exit::Usage => 15,
            Exit::Config => 17,
            Exit::Io => 18,
        })
    }
}

/// A command failure: one line for the user, and its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(String),
}

impl CmdError {
    pub fn exit(&self) -> Exit {
        match self {
            CmdError::Usage(_) => Exit::Usage,
            CmdError::Config(_) | CmdError::Store(StoreError::TamperKey { .. }) => Exit::Config,
            CmdError::Store(_) | CmdError::Io(_) => Exit::Io,
        }
    }
}

/// Run the command the user asked for.
pub async fn run(cli: Cli) -> Result<Exit, CmdError> {
    let command = match (cli.command, cli.legacy_init) {
        (Some(_), true) => {
            return Err(CmdError::Usage(
                "--init cannot be combined with a command".into(),
            ))
        }
        (None, true) => Command::Init { force: false },
        (None, false) => Command::Check {
            json: false,
            dry_run: false,
            full: false,
        },
        (Some(c), false) => c,
    };
    crate::secrets::set_identity(cli.managed_identity.clone());
    let events_on_stderr = matches!(command, Command::Run);
    let strict = crate::perms::enforced(cli.insecure_permissions);
    let with_sinks = !matches!(
        command,
        Command::Events { .. }
            | Command::Diff { .. }
            | Command::Status { .. }
            | Command::Verify { .. }
            | Command::Fleet { .. }
    );
    let ctx = setup::Context::load(
        cli.config.as_deref(),
        &cli.sinks,
        events_on_stderr,
        strict,
        with_sinks,
    )?;
    // Every command that reads or writes the local database (fleet queries and notify-test
    // do not); config-check too, so it reports what `run` would refuse.
    if !matches!(command, Command::Fleet { .. } | Command::NotifyTest) {
        ctx.check_database()?;
    }
    match command {
        Command::Init { force } => scan::init(&ctx, force).await,
        Command::Check {
            json,
            dry_run,
            full,
        } => scan::check(&ctx, json, dry_run, full).await,
        Command::Events {
            json,
            since,
            path,
            limit,
            severity,
            format,
        } => history::events(&ctx, json, since, path, limit, severity, format).await,
        Command::Diff { id, raw } => history::diff(&ctx, id, raw).await,
        Command::Status { json } => history::status(&ctx, json).await,
        Command::Verify {
            json,
            rekey,
            old_hmac_key,
        } => history::verify(&ctx, json, rekey, old_hmac_key).await,
        Command::ConfigCheck => setup::config_check(&ctx),
        Command::Run => run_daemon(ctx).await,
        Command::NotifyTest => setup::notify_test(&ctx).await,
        Command::Fleet { command } => fleet::run(&ctx, command).await,
    }
}

/// `run`: the daemon until SIGTERM or SIGINT (exit 0), or until it fails (exit 18).
async fn run_daemon(ctx: setup::Context) -> Result<Exit, CmdError> {
    use tokio::signal::unix::{signal, SignalKind};
    let handler = |kind: SignalKind, name: &str| {
        signal(kind).map_err(|e| CmdError::Io(format!("cannot install the {name} handler: {e}")))
    };
    let mut term = handler(SignalKind::terminate(), "SIGTERM")?;
    let mut int = handler(SignalKind::interrupt(), "SIGINT")?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    };
    let mac_key = ctx.mac_key()?;
    ctx.policy.warn_missing();
    let daemon_ctx = crate::daemon::DaemonContext {
        mac_key,
        cfg: ctx.cfg,
        config_path: ctx.config_path,
        config_explicit: ctx.config_explicit,
        policy: ctx.policy,
        sinks: ctx.sinks,
        flags: ctx.flags,
        strict: ctx.strict,
    };
    crate::daemon::run(daemon_ctx, shutdown)
        .await
        .map_err(|e| match e {
            crate::daemon::DaemonError::Store(e) => CmdError::Store(e),
            e => CmdError::Io(e.to_string()),
        })?;
    Ok(Exit::Clean)
}
