//! Loading what every command needs: the config (explicit path, default path or built-in
//! defaults), the compiled policy, the store and the pipeline; and `config-check`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{CmdError, Exit};
use crate::alert::{self, SinkFlags, Sinks};
use crate::cli::SinkArgs;
use crate::config::{Config, DEFAULT_CONFIG_PATH};
use crate::event::display_path;
use crate::pipeline::Pipeline;
use crate::policy::Policy;
use crate::store::Store;

/// The loaded configuration and compiled policy.
pub struct Context {
    pub cfg: Config,
    pub config_path: PathBuf,
    /// False when no config file exists and the built-in defaults apply.
    pub config_found: bool,
    /// The user named the config file (`--config` / `FIMD_CONFIG`).
    pub config_explicit: bool,
    pub policy: Arc<Policy>,
    /// The configured alert sinks (credentials merged from flags, environment, systemd
    /// credentials and the file).
    pub sinks: Sinks,
    /// The notifier flags and variables, applied again on every reload.
    pub flags: SinkFlags,
    /// Ownership and permission checks apply (root, no `--insecure-permissions`): the config
    /// is checked on every load, the database before it is opened.
    pub strict: bool,
}

impl Context {
    pub fn load(
        explicit: Option<&Path>,
        flags: &SinkArgs,
        events_on_stderr: bool,
        strict: bool,
        with_sinks: bool,
    ) -> Result<Context, CmdError> {
        let config_path = explicit
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
        let config_found = config_path.exists();
        Config::check_permissions(&config_path, strict)?;
        let mut cfg = Config::load(&config_path, explicit.is_some())?;
        crate::logging::init(&cfg.daemon.log_level, events_on_stderr);
        let flags = sink_flags(flags);
        // Commands that only read history (status, events, diff, verify, fleet queries) do
        // not fetch the sinks' secrets: a vault that is down must not hide the history.
        let sinks = if with_sinks {
            build_sinks(&mut cfg, &flags, &config_path)?
        } else {
            Sinks::from_config(&Default::default(), &cfg.host())
                .map_err(|e| CmdError::Io(e.to_string()))?
        };
        let policy = Policy::from_config(&cfg, &config_path)?;
        for w in &policy.warnings {
            tracing::warn!("{w}");
        }
        Ok(Context {
            cfg,
            config_path,
            config_found,
            config_explicit: explicit.is_some(),
            policy: Arc::new(policy),
            sinks,
            flags,
            strict,
        })
    }

    /// Refuse an unsafe database path before anything opens it (see [`crate::perms`]).
    pub fn check_database(&self) -> Result<(), CmdError> {
        Ok(crate::store::check_permissions(
            &self.cfg.daemon.database,
            self.strict,
        )?)
    }

    pub async fn open_store(&self) -> Result<Store, CmdError> {
        Ok(Store::open(&self.cfg.daemon.database).await?)
    }

    /// The tamper-evidence key (`[store] hmac_key`, resolved), if one is set.
    pub fn mac_key(&self) -> Result<Option<crate::store::MacKey>, CmdError> {
        resolve_mac_key(&self.cfg, &self.config_path)
    }

    /// Open the store for writing and apply the tamper-evidence key (signing an unsigned
    /// database once, refusing a missing or different key).
    pub async fn open_signed_store(&self) -> Result<Store, CmdError> {
        let store = self.open_store().await?;
        store.apply_key(self.mac_key()?).await?;
        Ok(store)
    }

    pub async fn open_existing_store(&self) -> Result<Store, CmdError> {
        Ok(Store::open_existing(&self.cfg.daemon.database).await?)
    }

    pub fn pipeline(&self, store: Store, full: bool) -> Result<Pipeline, CmdError> {
        Pipeline::for_config(
            store,
            &self.cfg,
            self.policy.clone(),
            self.cfg.notify.routes_for(&self.sinks.names()),
            full,
        )
        .map_err(|e| CmdError::Io(format!("cannot start hashing threads: {e}")))
    }
}

/// `config-check`: the config is valid (or we never got here); print what it means.
pub fn config_check(ctx: &Context) -> Result<Exit, CmdError> {
    ctx.policy.warn_missing();
    let mut out = String::new();
    let cfg = &ctx.cfg;
    let source = if ctx.config_found {
        String::new()
    } else {
        " (not found: built-in defaults)".to_string()
    };
    out += &format!("config: {}{source}: OK\n", ctx.config_path.display());
    out += &format!("database: {}\n", cfg.daemon.database.display());
    out += &format!("host: {}\n", cfg.host());
    out += &format!(
        "rescan_interval: {}, debounce: {}, hash_workers: {}\n",
        humantime::format_duration(cfg.daemon.rescan_interval),
        humantime::format_duration(cfg.daemon.debounce),
        cfg.hash_workers()
    );
    out += "targets:\n";
    let (watches, keys) = ctx
        .policy
        .watches
        .split_at(cfg.watch.len().min(ctx.policy.watches.len()));
    for w in watches {
        let state = match (w.exists, w.optional) {
            (true, _) => "",
            (false, false) => " (missing: nothing is monitored there)",
            (false, true) => " (missing, optional)",
        };
        let canon = if w.root != w.configured {
            format!(" -> {}", display_path(&w.root))
        } else {
            String::new()
        };
        let kind = if !w.is_dir {
            "file"
        } else if w.recursive {
            "tree"
        } else {
            "directory"
        };
        let floor = w
            .severity
            .map(|s| format!(" (severity at least {s})"))
            .unwrap_or_default();
        out += &format!(
            "  {kind} {}{canon}{state}{floor}\n",
            display_path(&w.configured)
        );
    }
    if cfg.users.authorized_keys {
        let present: Vec<&crate::policy::Watch> = keys.iter().filter(|w| w.exists).collect();
        out += &format!(
            "  authorized_keys: {} candidate files from {}, {} present\n",
            keys.len(),
            cfg.users.passwd.display(),
            present.len()
        );
        for w in present {
            out += &format!("    file {}\n", display_path(&w.root));
        }
    }
    for (i, w) in cfg.watch.iter().enumerate() {
        if !w.extensions.is_empty() || !w.include.is_empty() || !w.exclude.is_empty() {
            out += &format!(
                "  watch[{i}] {}: extensions {:?}, {} include, {} exclude globs\n",
                w.path.display(),
                w.extensions,
                w.include.len(),
                w.exclude.len()
            );
        }
    }
    let s = &cfg.sensitive;
    out += &format!(
        "sensitive: {} paths, {} patterns, detect_private_keys = {}\n",
        s.paths.len(),
        s.patterns.len(),
        s.detect_private_keys
    );
    let p = &cfg.packages;
    out += &if p.enabled {
        let explainer = crate::explain::Explainer::load(p, ctx.policy.clone());
        format!(
            "packages: {} (root {}, settle {})\n",
            explainer.describe(),
            p.root.display(),
            humantime::format_duration(p.settle)
        )
    } else {
        "packages: off\n".to_string()
    };
    let routes = cfg.notify.routes_for(&ctx.sinks.names());
    out += &format!(
        "sinks: {}\n",
        if routes.is_empty() {
            "none configured".to_string()
        } else {
            routes
                .iter()
                .map(|r| format!("{} (min_severity {})", r.name, r.min))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    out += &secret_lines(ctx);
    print_stdout(&out)?;
    Ok(Exit::Clean)
}

/// `config-check`'s `secrets:` section: each reference, its store, the identity used and
/// whether it resolved. Never a value.
fn secret_lines(ctx: &Context) -> String {
    let mut lines: Vec<String> = ctx.sinks.references().iter().map(|r| r.line()).collect();
    if let Some(key) = &ctx.cfg.store.hmac_key {
        if let Ok(r) = crate::secrets::parse(key.expose()) {
            if r != crate::secrets::Reference::Literal {
                let state = match ctx.mac_key() {
                    Ok(_) => "resolved".to_string(),
                    Err(e) => format!("FAILED: {e}"),
                };
                lines.push(format!(
                    "store.hmac_key = {} (store {}, identity {}): {state}",
                    key.expose(),
                    r.store(),
                    r.identity()
                ));
            }
        }
    }
    let identity =
        crate::secrets::identity().unwrap_or_else(|| "system-assigned / default".to_string());
    match lines.is_empty() {
        true => "secrets: no references\n".to_string(),
        false => format!(
            "secrets (managed identity: {identity}):\n{}",
            lines.iter().map(|l| format!("  {l}\n")).collect::<String>()
        ),
    }
}

/// Print to stdout; a closed pipe (`fimd events | head`) is not an error worth a message.
pub fn print_stdout(text: &str) -> Result<(), CmdError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CmdError::Io(format!("cannot write to stdout: {e}"))),
    }
}

/// Merge the sink credentials (flags/environment > systemd credentials > file) into `cfg` and
/// build the sinks. Used at start and on every reload.
pub fn build_sinks(
    cfg: &mut Config,
    flags: &SinkFlags,
    config_path: &Path,
) -> Result<Sinks, CmdError> {
    let invalid = |message: String| crate::config::ConfigError::Invalid {
        path: config_path.to_path_buf(),
        message,
    };
    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
    alert::apply_overrides(&mut cfg.notify, flags, credentials.as_deref())
        .map_err(|e| invalid(e.to_string()))?;
    // Secret references (in the file, flags, environment or credentials) become their values
    // here; the config as written is kept for fetching them again after a 401/403.
    let raw = cfg.notify.clone();
    let references = crate::secrets::resolve_notify(&mut cfg.notify).map_err(invalid)?;
    Sinks::from_config(&cfg.notify, &cfg.host())
        .map(|s| s.with_references(raw, references))
        .map_err(|e| match e {
            alert::AlertError::Config { .. } => CmdError::Config(invalid(e.to_string())),
            other => CmdError::Io(other.to_string()),
        })
}

fn sink_flags(a: &SinkArgs) -> SinkFlags {
    SinkFlags {
        servicenow_instance: a.servicenow_instance.clone(),
        servicenow_user: a.servicenow_user.clone(),
        servicenow_password: a.servicenow_password.clone(),
        rapid7_api_key: a.rapid7_api_key.clone(),
        rapid7_workflow_id: a.rapid7_workflow_id.clone(),
        jira_url: a.jira_url.clone(),
        jira_user: a.jira_user.clone(),
        jira_api_token: a.jira_api_token.clone(),
        jira_project_key: a.jira_project_key.clone(),
        slack_webhook_url: a.slack_webhook_url.clone(),
        teams_webhook_url: a.teams_webhook_url.clone(),
    }
}

/// `notify-test`: one test alert per sink through the normal request path.
pub async fn notify_test(ctx: &Context) -> Result<Exit, CmdError> {
    if ctx.sinks.is_empty() {
        return Err(CmdError::Config(crate::config::ConfigError::Invalid {
            path: ctx.config_path.clone(),
            message: "no alert sink is configured ([notify.*], flags, environment or credentials)"
                .into(),
        }));
    }
    let store = match Store::open_existing(&ctx.cfg.daemon.database).await {
        Ok(store) => Some(store),
        // No database yet (a fresh host): nothing can be parked.
        Err(crate::store::StoreError::NoDatabase(_)) => None,
        Err(e) => {
            eprintln!("fimd: notify-test: cannot read the outbox ({e}); testing the sinks only");
            None
        }
    };
    let parked = match &store {
        Some(store) => alert::outbox::parked(store.pool())
            .await
            .map_err(|e| CmdError::Io(format!("outbox database: {e}")))?,
        None => Vec::new(),
    };
    let mut failed = 0;
    let mut passed = Vec::new();
    let mut out = String::new();
    for (sink, result) in alert::notify_test(&ctx.sinks).await {
        let parked = parked.iter().find(|p| p.sink == sink);
        match result {
            Ok(msg) => {
                out += &format!("{sink}: OK {msg}\n");
                passed.push(sink);
            }
            Err(msg) => {
                failed += 1;
                out += &format!("{sink}: FAILED {msg}\n");
                if let Some(p) = parked {
                    out += &format!(
                        "{sink}: {} parked ({}); they are sent again after a successful notify-test, a reload or a restart\n",
                        crate::timefmt::plural(usize::try_from(p.rows).unwrap_or(0), "alert", "alerts"),
                        p.last_error.as_deref().unwrap_or("no error recorded")
                    );
                }
            }
        }
    }
    if let Some(store) = &store {
        out += &send_requeued(ctx, store, &passed).await?;
        store.close().await;
    }
    print_stdout(&out)?;
    if failed > 0 {
        return Err(CmdError::Io(format!(
            "{failed} sink(s) failed the test alert"
        )));
    }
    Ok(Exit::Clean)
}

/// After a successful test alert: requeue the parked alerts of the sinks that passed and send
/// what is due in one delivery pass (the batch window is honoured, so a running daemon and
/// this command never send the same rows). Returns the lines to print.
async fn send_requeued(
    ctx: &Context,
    store: &Store,
    passed: &[String],
) -> Result<String, CmdError> {
    let db = |e: alert::AlertError| CmdError::Io(e.to_string());
    let names: Vec<&str> = passed.iter().map(String::as_str).collect();
    let requeued = alert::requeue_parked(store.pool(), &names)
        .await
        .map_err(db)?;
    if requeued.is_empty() {
        return Ok(String::new());
    }
    let mut out = String::new();
    for p in &requeued {
        out += &format!(
            "{}: {} requeued (parked because: {})\n",
            p.sink,
            crate::timefmt::plural(
                usize::try_from(p.rows).unwrap_or(0),
                "parked alert",
                "parked alerts"
            ),
            p.last_error.as_deref().unwrap_or("no error recorded")
        );
    }
    let pass = alert::deliver_due_at(
        store.pool(),
        &ctx.sinks,
        &ctx.cfg.notify,
        crate::timefmt::now_ns(),
    )
    .await
    .map_err(db)?;
    let left = alert::outbox::pending(store.pool(), &names)
        .await
        .map_err(|e| CmdError::Io(format!("outbox database: {e}")))?;
    out += &format!(
        "requeued alerts: {} delivered, {} still queued{}\n",
        pass.delivered,
        left,
        if left > 0 {
            " (the daemon or the next check sends them)"
        } else {
            ""
        }
    );
    Ok(out)
}

/// `[store] hmac_key` resolved into a key; a reference that cannot be resolved is a
/// configuration error naming the reference (never a value).
pub fn resolve_mac_key(
    cfg: &Config,
    config_path: &Path,
) -> Result<Option<crate::store::MacKey>, CmdError> {
    let Some(secret) = &cfg.store.hmac_key else {
        return Ok(None);
    };
    let value = crate::secrets::resolve(secret).map_err(|message| {
        CmdError::Config(crate::config::ConfigError::Invalid {
            path: config_path.to_path_buf(),
            message: format!("store.hmac_key: {message}"),
        })
    })?;
    Ok(Some(crate::store::MacKey::new(value.expose())))
}
