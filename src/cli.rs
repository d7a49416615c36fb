//! The command line (clap derive). Seed-compatible: `fimd --init` is `fimd init`, a bare
//! `fimd` is `fimd check`, and the original script's eleven notifier flags (with their
//! environment variables) work on every command. Secret values are never shown in `--help`.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// fimd: file integrity monitoring daemon (SHA-256 + metadata baseline in SQLite, inotify,
/// alerts to the journal, Slack, Teams, Jira, ServiceNow, Rapid7 and webhooks).
#[derive(Debug, Parser)]
#[command(name = "fimd", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file [default: /etc/fimd/fimd.toml; built-in defaults when it is absent]
    #[arg(
        long,
        global = true,
        env = "FIMD_CONFIG",
        value_name = "PATH",
        display_order = 900
    )]
    pub config: Option<PathBuf>,

    /// Same as the `init` command (compatibility with the original script).
    #[arg(long = "init", display_order = 901)]
    pub legacy_init: bool,

    /// The managed identity that fetches `${azurekv:...}` and `${gcpsm:...}` secrets: an Azure
    /// user-assigned identity's client id or resource id (/subscriptions/...), or a GCP service
    /// account email [default: the system-assigned identity / the default service account]
    #[arg(
        long,
        global = true,
        env = "FIMD_MANAGED_IDENTITY",
        value_name = "ID",
        display_order = 902
    )]
    pub managed_identity: Option<String>,

    /// Accept a config or database that users other than root could write, or a database
    /// path that is a symlink (test rigs only). Without it, fimd running as root refuses
    /// them: exit 17 for the config, 18 for the database, like sshd's StrictModes.
    #[arg(long, global = true, display_order = 903)]
    pub insecure_permissions: bool,

    #[command(
        flatten,
        next_help_heading = "Notifier options (flag > environment > credential > config file)"
    )]
    pub sinks: SinkArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The original script's notifier flags. Precedence: flag > environment > systemd credential
/// (`$CREDENTIALS_DIRECTORY/<flag name>`) > config file.
#[derive(Debug, Default, Clone, Args)]
pub struct SinkArgs {
    /// ServiceNow instance name (https://NAME.service-now.com)
    #[arg(
        long,
        global = true,
        env = "SERVICENOW_INSTANCE",
        hide_env_values = true
    )]
    pub servicenow_instance: Option<String>,
    /// ServiceNow user
    #[arg(long, global = true, env = "SERVICENOW_USER", hide_env_values = true)]
    pub servicenow_user: Option<String>,
    /// ServiceNow password
    #[arg(
        long,
        global = true,
        env = "SERVICENOW_PASSWORD",
        hide_env_values = true
    )]
    pub servicenow_password: Option<String>,
    /// Rapid7 InsightConnect API key
    #[arg(long, global = true, env = "RAPID7_API_KEY", hide_env_values = true)]
    pub rapid7_api_key: Option<String>,
    /// Rapid7 InsightConnect workflow id
    #[arg(
        long,
        global = true,
        env = "RAPID7_WORKFLOW_ID",
        hide_env_values = true
    )]
    pub rapid7_workflow_id: Option<String>,
    /// Jira base URL
    #[arg(long, global = true, env = "JIRA_URL", hide_env_values = true)]
    pub jira_url: Option<String>,
    /// Jira user (Cloud: the account e-mail)
    #[arg(long, global = true, env = "JIRA_USER", hide_env_values = true)]
    pub jira_user: Option<String>,
    /// Jira API token
    #[arg(long, global = true, env = "JIRA_API_TOKEN", hide_env_values = true)]
    pub jira_api_token: Option<String>,
    /// Jira project key
    #[arg(long, global = true, env = "JIRA_PROJECT_KEY", hide_env_values = true)]
    pub jira_project_key: Option<String>,
    /// Slack incoming webhook URL
    #[arg(long, global = true, env = "SLACK_WEBHOOK_URL", hide_env_values = true)]
    pub slack_webhook_url: Option<String>,
    /// Microsoft Teams Workflows webhook URL
    #[arg(long, global = true, env = "TEAMS_WEBHOOK_URL", hide_env_values = true)]
    pub teams_webhook_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build the baseline (progress bar on a terminal); refuses to replace one without --force.
    Init {
        /// Replace an existing baseline (the event history is kept).
        #[arg(long)]
        force: bool,
    },
    /// One full scan now: records events, advances the baseline, queues and sends alerts.
    /// Exit code: 0 nothing changed, else the OR of 1 added, 2 removed, 4 changed.
    Check {
        /// One JSON event per line on stdout.
        #[arg(long)]
        json: bool,
        /// Compare only; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Re-hash every file, even those whose metadata equals the baseline.
        #[arg(long)]
        full: bool,
    },
    /// Run the daemon (systemd Type=notify); builds the baseline first if there is none.
    Run,
    /// The recorded alert history, oldest first.
    Events {
        /// One JSON event per line.
        #[arg(long)]
        json: bool,
        /// RFC 3339 time (2026-11-30T08:00:00Z) or a duration ago (1h, 2days).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only paths matching this glob (`*` stays within a directory, `**` crosses).
        #[arg(long, value_name = "GLOB")]
        path: Option<String>,
        /// Only the last N events.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Only events of this severity and above (critical, high, medium, low, info).
        #[arg(long, value_name = "LEVEL")]
        severity: Option<String>,
        /// One event per line as json, ocsf (OCSF 1.x), ecs (Elastic) or cef (ArcSight).
        #[arg(long, value_name = "FORMAT", conflicts_with = "json")]
        format: Option<String>,
    },
    /// Check the tamper evidence: every baseline row's MAC and the chain of events. Exit 0
    /// intact, 4 tampered (each bad row named).
    Verify {
        #[arg(long)]
        json: bool,
        /// After verifying under the old key, sign everything with `[store] hmac_key`.
        #[arg(long, requires = "old_hmac_key")]
        rekey: bool,
        /// The key the database is signed with now (a secret reference like the config's).
        #[arg(long, value_name = "REF")]
        old_hmac_key: Option<String>,
    },
    /// Print the stored diff of one event (control and bidi characters escaped).
    Diff {
        /// The event's id (`fimd events` shows it).
        #[arg(value_name = "EVENT-ID")]
        id: i64,
        /// Print the stored diff exactly, control characters included (for a file or a
        /// pipe, not a terminal).
        #[arg(long)]
        raw: bool,
    },
    /// Baseline size, last full scan, watches, outbox backlog and failures.
    Status {
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Send one test alert to every configured sink and report each result.
    NotifyTest,
    /// Validate the config; print the effective targets and which sinks are on.
    ConfigCheck,
    /// Every host's events in PostgreSQL: the schema to apply, and queries over the fleet.
    Fleet {
        #[command(subcommand)]
        command: FleetCommand,
    },
}

/// `fimd fleet ...` (reads PostgreSQL with a read-only role).
#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Print the SQL (tables, indexes, view, roles, row-level security) for an admin to apply.
    Schema {
        /// Table and role prefix [default: `[fleet] table_prefix` or fim_]
        #[arg(long, value_name = "PREFIX")]
        table_prefix: Option<String>,
    },
    /// Events from every host, oldest first.
    Events {
        #[command(flatten)]
        conn: FleetConn,
        /// RFC 3339 time or a duration ago (1h, 2days).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only paths matching this glob (`*` stays within a directory, `**` crosses).
        #[arg(long, value_name = "GLOB")]
        path: Option<String>,
        /// Only events of this severity and above.
        #[arg(long, value_name = "LEVEL")]
        severity: Option<String>,
        /// Only this host.
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
        /// Only the newest N.
        #[arg(long, value_name = "N")]
        limit: Option<i64>,
    },
    /// Every host's latest heartbeat: silent agents, stale scans, backlogs, missing events.
    Hosts {
        #[command(flatten)]
        conn: FleetConn,
        /// A host is silent when its last heartbeat is older than this.
        #[arg(long, value_name = "DURATION", default_value = "15m")]
        silent: String,
        /// A scan is stale when the last full scan is older than this.
        #[arg(long, value_name = "DURATION", default_value = "2days")]
        stale_scan: String,
    },
    /// How many hosts hold each sha256 of PATH now (by their latest event for it).
    Prevalence {
        #[command(flatten)]
        conn: FleetConn,
        #[arg(value_name = "PATH")]
        path: String,
    },
    /// Hosts whose stored event ids skip (deleted local history, lost rows), and hosts whose
    /// reported tamper-evidence chain head does not extend what they reported before.
    Gaps {
        #[command(flatten)]
        conn: FleetConn,
    },
}

/// The reader connection and output format shared by the fleet queries.
#[derive(Debug, Clone, Args)]
pub struct FleetConn {
    /// PostgreSQL URL (a secret reference allowed) [default: `[fleet] url`]
    #[arg(
        long,
        value_name = "URL",
        env = "FIMD_FLEET_URL",
        hide_env_values = true
    )]
    pub url: Option<String>,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn subcommand_help_lists_its_own_options_first_and_notifier_flags_under_one_heading() {
        let mut cmd = Cli::command();
        cmd.build();
        let help = cmd
            .find_subcommand_mut("check")
            .map(|c| c.render_help().to_string())
            .unwrap_or_default();
        let pos = |s: &str| help.find(s).unwrap_or(usize::MAX);
        assert!(pos("--json") < pos("--config"), "{help}");
        let heading = pos("Notifier options");
        assert!(heading < usize::MAX, "{help}");
        for flag in [
            "--servicenow-instance",
            "--servicenow-user",
            "--servicenow-password",
            "--rapid7-api-key",
            "--rapid7-workflow-id",
            "--jira-url",
            "--jira-user",
            "--jira-api-token",
            "--jira-project-key",
            "--slack-webhook-url",
            "--teams-webhook-url",
        ] {
            assert!(
                pos(flag) > heading && pos(flag) < usize::MAX,
                "{flag}: {help}"
            );
        }
        assert!(pos("--full") < heading, "{help}");
        // --init is offered by the completions, so the help lists it too.
        let top = Cli::command().render_help().to_string();
        assert!(top.contains("--init"), "{top}");
    }
}
