//! The TOML configuration: schema, built-in defaults (equal to the shipped `config/fimd.toml`),
//! loading with precise errors (file, line, column, key) and validation.
//! Never logs a secret: sink credentials are [`notify::Secret`]s.

pub mod notify;

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use notify::{NotifyConfig, Secret, SinkRoute};

use crate::event::Severity;

/// Where `fimd` looks when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/fimd/fimd.toml";

/// The shipped default config, byte for byte; a test proves it parses to `Config::default()`.
pub const SHIPPED_CONFIG: &str = include_str!("../../config/fimd.toml");

/// An invalid configuration: always names the file, and the line, column and key when known.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    /// Root runs fimd and someone else could write the config (see [`crate::perms`]).
    #[error("config {} refused: {source}", .path.display())]
    Insecure {
        path: PathBuf,
        #[source]
        source: crate::perms::Insecure,
    },
}

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub daemon: DaemonConfig,
    #[serde(default)]
    pub content: ContentConfig,
    /// One per monitored tree or file. A file without any `[[watch]]` gets the built-in ones.
    #[serde(default = "default_watches")]
    pub watch: Vec<WatchConfig>,
    #[serde(default)]
    pub sensitive: SensitiveConfig,
    #[serde(default)]
    pub users: UsersConfig,
    #[serde(default)]
    pub notify: NotifyConfig,
    #[serde(default)]
    pub packages: PackagesConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub fleet: FleetConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            daemon: DaemonConfig::default(),
            content: ContentConfig::default(),
            watch: default_watches(),
            sensitive: SensitiveConfig::default(),
            users: UsersConfig::default(),
            notify: NotifyConfig::default(),
            packages: PackagesConfig::default(),
            store: StoreConfig::default(),
            fleet: FleetConfig::default(),
        }
    }
}

/// `[daemon]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// SQLite database; created 0600 in a 0700 directory.
    pub database: PathBuf,
    /// Full rescan period (1s and up).
    #[serde(with = "humantime_serde")]
    pub rescan_interval: Duration,
    /// Changes to one path within this window give one event.
    #[serde(with = "humantime_serde")]
    pub debounce: Duration,
    /// Hashing threads; 0 = 4 per CPU, at most 16 (cold scans wait on the disk).
    pub hash_workers: usize,
    /// Bytes per second all hashing threads may read together; 0 = no limit.
    pub hash_rate: u64,
    /// Hashing threads run at nice 10 and the lowest best-effort I/O priority.
    pub low_priority: bool,
    /// Name used in alerts; empty = the system hostname.
    pub host: String,
    /// Log level (`error`, `warn`, `info`, `debug`, `trace`); `RUST_LOG` overrides it.
    pub log_level: String,
    /// Who made each real-time change: `auto` (fanotify when allowed, else inotify without
    /// actors), `off`, or `require` (refuse to start without it).
    pub whodata: String,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            database: PathBuf::from("/var/lib/fimd/fimd.db"),
            rescan_interval: Duration::from_secs(3600),
            debounce: Duration::from_millis(200),
            hash_workers: 0,
            hash_rate: 0,
            low_priority: true,
            host: String::new(),
            log_level: "info".to_string(),
            whodata: "auto".to_string(),
        }
    }
}

/// `[content]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContentConfig {
    /// Keep contents and diffs only for text files up to this size.
    pub max_bytes: u64,
}

impl Default for ContentConfig {
    fn default() -> Self {
        ContentConfig {
            max_bytes: 1_048_576,
        }
    }
}

/// `[[watch]]`: one monitored tree or file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WatchConfig {
    /// Literal path (never a glob), resolved once to its canonical form.
    pub path: PathBuf,
    /// `false`: direct children only. Ignored for a file.
    #[serde(default = "yes")]
    pub recursive: bool,
    /// File name endings (`.conf`); a file is selected if it matches `extensions` OR `include`.
    #[serde(default)]
    pub extensions: Vec<String>,
    #[serde(default)]
    pub include: Vec<String>,
    /// Always wins; excluded directories are not descended into.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// `high` or `critical`: the lowest severity of an unexplained change below this watch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// A path that may not exist on every machine: no warning when it is missing.
    #[serde(default)]
    pub optional: bool,
}

fn yes() -> bool {
    true
}

/// `[packages]`: explain changes with the package managers' own records (DESIGN.md "Packages").
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PackagesConfig {
    /// Off automatically when no package database is found.
    pub enabled: bool,
    /// The file system the package databases describe (`dpkg --root` / `rpm --root`).
    pub root: PathBuf,
    /// dpkg's admin directory; empty = `<root>/var/lib/dpkg`.
    pub dpkg_admin_dir: PathBuf,
    /// The directory holding `rpmdb.sqlite`, or `auto` (`<root>/usr/lib/sysimage/rpm`, then
    /// `<root>/var/lib/rpm`).
    pub rpm_db: String,
    /// The longest a change waits for a running transaction to record its digests.
    #[serde(with = "humantime_serde")]
    pub settle: Duration,
}

impl Default for PackagesConfig {
    fn default() -> Self {
        PackagesConfig {
            enabled: true,
            root: PathBuf::from("/"),
            dpkg_admin_dir: PathBuf::new(),
            rpm_db: "auto".to_string(),
            settle: Duration::from_secs(600),
        }
    }
}

impl PackagesConfig {
    /// dpkg's admin directory (`dpkg_admin_dir`, or `<root>/var/lib/dpkg`).
    pub fn dpkg_admin_dir(&self) -> PathBuf {
        if self.dpkg_admin_dir.as_os_str().is_empty() {
            self.root.join("var/lib/dpkg")
        } else {
            self.dpkg_admin_dir.clone()
        }
    }

    /// The rpmdb directory, if there is one.
    pub fn rpm_db_dir(&self) -> Option<PathBuf> {
        if self.rpm_db == "auto" {
            crate::packages::rpm::find_db(&self.root)
        } else {
            Some(PathBuf::from(&self.rpm_db))
        }
    }
}

/// `[store]`: the database's own protection and the history's retention.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The tamper-evidence key (a secret reference: `${credential:fimd-hmac-key}`): every
    /// baseline row and the chain of events carry an HMAC-SHA256 under it. Unset = off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hmac_key: Option<Secret>,
    /// How long events are kept: older ones (with their diffs and delivered alerts) are
    /// pruned by the daemon after each full rescan and by `check`; an event whose alert is
    /// not delivered yet is kept. `"0s"` keeps everything.
    #[serde(with = "humantime_serde")]
    pub keep_events: Duration,
}

/// The default history: PCI DSS 10.5.1 asks for one year, plus a margin.
pub const DEFAULT_KEEP_EVENTS: Duration = Duration::from_secs(400 * 24 * 3600);

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            hmac_key: None,
            keep_events: DEFAULT_KEEP_EVENTS,
        }
    }
}

/// `[fleet]`: where `fimd fleet` reads every host's events (a `fim_reader` login).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    /// A libpq URL; a secret (reference) since it may hold the password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<Secret>,
    /// The schema's table prefix (default `fim_`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table_prefix: Option<String>,
}

/// `[sensitive]`: only classifies, never selects.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SensitiveConfig {
    /// Literal paths; a directory covers everything below it.
    pub paths: Vec<PathBuf>,
    /// Globs on the file name (no `/`) or the full path (with `/`).
    pub patterns: Vec<String>,
    /// Any file whose content holds a private key is sensitive, whatever its name.
    pub detect_private_keys: bool,
}

impl Default for SensitiveConfig {
    fn default() -> Self {
        SensitiveConfig {
            paths: [
                "/etc/shadow",
                "/etc/gshadow",
                "/etc/passwd",
                "/etc/shadow-",
                "/etc/gshadow-",
                "/etc/passwd-",
                "/etc/security/opasswd",
                "/etc/ssl/private",
                "/etc/krb5.keytab",
            ]
            .iter()
            .map(PathBuf::from)
            .collect(),
            patterns: strings(&[
                "*.key",
                "*.pem",
                "*shadow*",
                "*passwd*",
                "id_*",
                "*.pfx",
                "*.p12",
                "ssh_host_*_key",
                "*.keytab",
            ]),
            detect_private_keys: true,
        }
    }
}

/// `[users]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsersConfig {
    /// Monitor ~/.ssh/authorized_keys and authorized_keys2 of root and every passwd user.
    pub authorized_keys: bool,
    pub passwd: PathBuf,
}

impl Default for UsersConfig {
    fn default() -> Self {
        UsersConfig {
            authorized_keys: true,
            passwd: PathBuf::from("/etc/passwd"),
        }
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn watch(path: &str, extensions: &[&str], include: &[&str], exclude: &[&str]) -> WatchConfig {
    WatchConfig {
        path: PathBuf::from(path),
        recursive: true,
        extensions: strings(extensions),
        include: strings(include),
        exclude: strings(exclude),
        severity: None,
        optional: false,
    }
}

/// Like [`watch`], for a path many machines do not have.
fn optional(path: &str) -> WatchConfig {
    WatchConfig {
        optional: true,
        ..watch(path, &[], &[], &[])
    }
}

/// The built-in watch list: what a Linux server needs watched.
pub fn default_watches() -> Vec<WatchConfig> {
    vec![
        watch(
            "/etc",
            &[
                ".conf", ".ini", ".cfg", ".cnf", ".crt", ".csr", ".der", ".pem", ".pfx", ".key",
            ],
            &[
                "/etc/passwd",
                "/etc/passwd-",
                "/etc/group",
                "/etc/group-",
                "/etc/shadow",
                "/etc/shadow-",
                "/etc/gshadow",
                "/etc/gshadow-",
                "/etc/hosts",
                "/etc/hosts.allow",
                "/etc/hosts.deny",
                "/etc/environment",
                "/etc/rc.local",
                "/etc/crontab",
                "/etc/cron.*/**",
                "/etc/anacrontab",
                "/etc/init.d/**",
                "/etc/systemd/**",
                "/etc/ssh/**",
                "/etc/sudoers",
                "/etc/sudoers.d/**",
                "/etc/pam.d/**",
                "/etc/security/**",
                "/etc/ld.so.preload",
                "/etc/profile",
                "/etc/profile.d/**",
                "/etc/bash.bashrc",
                "/etc/apache2/**",
                "/etc/httpd/**",
                "/etc/nginx/**",
                "/etc/nagios*/**",
                "/etc/ssl/**",
                "/etc/pki/**",
                "/etc/letsencrypt/**",
                "/etc/krb5.keytab",
            ],
            &["/etc/mtab", "/etc/ld.so.cache", "/etc/adjtime"],
        ),
        optional("/lib/systemd/system"),
        optional("/usr/lib/systemd/system"),
        watch("/usr/bin", &[], &[], &[]),
        watch("/usr/sbin", &[], &[], &[]),
        optional("/usr/local/bin"),
        optional("/usr/local/sbin"),
        optional("/boot"),
        optional("/usr/lib/x86_64-linux-gnu/security"),
        optional("/usr/lib64/security"),
        WatchConfig {
            optional: true,
            ..watch(
                "/var/lib/dpkg/info",
                &[
                    ".md5sums",
                    ".list",
                    ".conffiles",
                    ".preinst",
                    ".postinst",
                    ".prerm",
                    ".postrm",
                    ".triggers",
                ],
                &[],
                &[],
            )
        },
        optional("/var/lib/rpm"),
        optional("/usr/lib/sysimage/rpm"),
        optional("/var/spool/cron"),
        optional("/usr/local/nagios/etc"),
        optional("/etc/fimd"),
        watch(
            "/root",
            &[],
            &[],
            &[
                "/root/.cache/**",
                "/root/.cargo/registry/**",
                "/root/.cargo/git/**",
                "/root/.rustup/**",
                "/root/.npm/**",
                "/root/.nvm/**",
                "/root/.pyenv/**",
                "/root/.rbenv/**",
                "/root/.local/lib/**",
                "/root/.local/share/virtualenvs/**",
                "/root/.local/share/Trash/**",
                "/root/go/pkg/**",
                "/root/.m2/**",
                "/root/.gradle/**",
                "**/node_modules/**",
                "**/__pycache__/**",
                ".bash_history",
                ".zsh_history",
                ".python_history",
                ".lesshst",
                ".viminfo",
                ".wget-hsts",
                ".mysql_history",
                ".psql_history",
            ],
        ),
    ]
}

impl Config {
    /// Load `path`. `explicit` says the user named it: then a missing file is an error;
    /// otherwise a missing file means the built-in defaults.
    pub fn load(path: &Path, explicit: bool) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                return Ok(Config::default());
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let cfg = Config::parse(&text, path)?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Refuse a config (or a directory above it) that a user other than root could write,
    /// when `enforce` (see [`crate::perms`]). A missing file is checked for its directories.
    pub fn check_permissions(path: &Path, enforce: bool) -> Result<(), ConfigError> {
        if !enforce {
            return Ok(());
        }
        crate::perms::check(path, crate::perms::Kind::Config).map_err(|source| {
            ConfigError::Insecure {
                path: path.to_path_buf(),
                source,
            }
        })
    }

    /// Parse TOML text; errors carry `path:line:column`.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        toml::from_str::<Config>(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|span| line_col(text, span.start))
                .unwrap_or((1, 1));
            let mut message = e.message().trim().to_string();
            // `[watch]` where `[[watch]]` is meant: name the key and the fix.
            let header = text.lines().nth(line.saturating_sub(1)).unwrap_or("").trim();
            if message.contains("expected a sequence") && !header.starts_with("[[") {
                if let Some(key) = header
                    .strip_prefix('[')
                    .and_then(|h| h.split(']').next())
                    .map(str::trim)
                {
                    message = format!(
                        "[{key}] must be written [[{key}]]: it is a list of tables, one per entry ({message})"
                    );
                }
            }
            ConfigError::Parse {
                path: path.to_path_buf(),
                line,
                column,
                message,
            }
        })
    }

    /// Checks serde cannot express. Glob syntax is checked when the policy is built.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        if self.daemon.rescan_interval < Duration::from_secs(1) {
            return Err(bad("daemon.rescan_interval must be at least 1s".into()));
        }
        if self.daemon.debounce > Duration::from_secs(60) {
            return Err(bad("daemon.debounce must be at most 60s".into()));
        }
        if self.daemon.database.as_os_str().is_empty() {
            return Err(bad("daemon.database must not be empty".into()));
        }
        if !["auto", "off", "require"].contains(&self.daemon.whodata.as_str()) {
            return Err(bad(format!(
                "daemon.whodata {:?} is not one of auto, off, require",
                self.daemon.whodata
            )));
        }
        if self.daemon.log_level.parse::<tracing::Level>().is_err() {
            return Err(bad(format!(
                "daemon.log_level {:?} is not one of error, warn, info, debug, trace",
                self.daemon.log_level
            )));
        }
        for (i, w) in self.watch.iter().enumerate() {
            let text = w.path.as_os_str().as_encoded_bytes();
            if text.iter().any(|b| b"*?[]{}".contains(b)) {
                return Err(bad(format!(
                    "watch[{i}].path {:?}: watch paths are literal; put patterns in include",
                    w.path
                )));
            }
            if !w.path.is_absolute() {
                return Err(bad(format!(
                    "watch[{i}].path {:?} must be absolute",
                    w.path
                )));
            }
            if let Some(s) = w.severity.filter(|s| *s < Severity::High) {
                return Err(bad(format!(
                    "watch[{i}].severity {:?}: a watch can only raise unexplained changes to \"high\" or \"critical\"",
                    s.as_str()
                )));
            }
            if let Some(e) = w
                .extensions
                .iter()
                .find(|e| e.is_empty() || e.contains('/'))
            {
                return Err(bad(format!(
                    "watch[{i}].extensions: {e:?} is not a file name ending"
                )));
            }
        }
        for (i, p) in self.sensitive.paths.iter().enumerate() {
            if !p.is_absolute() {
                return Err(bad(format!("sensitive.paths[{i}] {p:?} must be absolute")));
            }
        }
        let p = &self.packages;
        if !p.root.is_absolute() {
            return Err(bad(format!("packages.root {:?} must be absolute", p.root)));
        }
        if p.rpm_db != "auto" && !Path::new(&p.rpm_db).is_absolute() {
            return Err(bad(format!(
                "packages.rpm_db {:?} must be \"auto\" or an absolute path",
                p.rpm_db
            )));
        }
        let n = &self.notify;
        if n.backoff_initial.is_zero() || n.backoff_initial > n.backoff_max {
            return Err(bad(
                "notify.backoff_initial must be > 0 and <= notify.backoff_max".into(),
            ));
        }
        Ok(())
    }

    /// Hashing threads to use (`hash_workers`). 0 means 4 per CPU, at most 16 (not "one per
    /// CPU" as DESIGN.md says): a cold-cache scan waits on the disk, and at 100k files 8
    /// threads took 4.4 s where 2 took 8.2 s; warm, both take the same time (benches/README).
    pub fn hash_workers(&self) -> usize {
        match self.daemon.hash_workers {
            0 => default_hash_workers(
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1),
            ),
            n => n,
        }
    }

    /// The host name for events and alerts.
    pub fn host(&self) -> String {
        if !self.daemon.host.is_empty() {
            return self.daemon.host.clone();
        }
        system_hostname()
    }
}

/// The kernel's host name, or `localhost` when it cannot be read.
pub fn system_hostname() -> String {
    // uname(2), not /proc/sys/kernel/hostname: the unit hides /proc's non-process files
    // (ProcSubset=pid).
    let name = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .trim()
        .to_string();
    if name.is_empty() {
        "localhost".to_string()
    } else {
        name
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, column)
}

/// The default hashing pool for `cpus` CPUs (see [`Config::hash_workers`]).
fn default_hash_workers(cpus: usize) -> usize {
    cpus.saturating_mul(4).clamp(1, 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_workers_zero_means_four_per_cpu_at_most_16() {
        assert_eq!(default_hash_workers(0), 1);
        assert_eq!(default_hash_workers(1), 4);
        assert_eq!(default_hash_workers(2), 8);
        assert_eq!(default_hash_workers(64), 16);
        let mut cfg = Config::default();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(cfg.hash_workers(), (cpus * 4).min(16));
        cfg.daemon.hash_workers = 3;
        assert_eq!(cfg.hash_workers(), 3);
    }

    #[test]
    fn shipped_config_equals_builtin_defaults() {
        let shipped = Config::parse(SHIPPED_CONFIG, Path::new("config/fimd.toml"));
        let shipped = shipped.map_err(|e| e.to_string());
        assert_eq!(shipped, Ok(Config::default()));
    }

    #[test]
    fn unknown_key_names_key_line_and_column() {
        let text = "[daemon]\ndebounce = \"1s\"\nbogus_key = 3\n";
        let err = Config::parse(text, Path::new("/x/fimd.toml"))
            .map(|_| ())
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("/x/fimd.toml:3:1: "), "{msg}");
        assert!(msg.contains("bogus_key"), "{msg}");
    }

    #[test]
    fn unknown_key_in_watch_and_sink() {
        let text = "[[watch]]\npath = \"/etc\"\nrecursiv = true\n";
        let msg = Config::parse(text, Path::new("f"))
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("recursiv") && msg.starts_with("f:3:1"),
            "{msg}"
        );
        let text = "[notify.slack]\nwebhook_url = \"https://x\"\nchannel = \"#a\"\n";
        let msg = Config::parse(text, Path::new("f"))
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("channel") && msg.starts_with("f:3:1"), "{msg}");
    }

    #[test]
    fn durations_and_partial_sections() {
        let text = "[daemon]\ndebounce = \"250ms\"\nrescan_interval = \"2h\"\n";
        let cfg = Config::parse(text, Path::new("f")).map_err(|e| e.to_string());
        let cfg = cfg.unwrap_or_default();
        assert_eq!(cfg.daemon.debounce, Duration::from_millis(250));
        assert_eq!(cfg.daemon.rescan_interval, Duration::from_secs(7200));
        assert_eq!(cfg.daemon.database, DaemonConfig::default().database);
        assert_eq!(cfg.watch, default_watches());
        let bad = Config::parse("[daemon]\ndebounce = \"soon\"\n", Path::new("f"));
        assert!(bad
            .map(|_| ())
            .unwrap_err()
            .to_string()
            .starts_with("f:2:12"));
    }

    #[test]
    fn validation() {
        let mut cfg = Config::default();
        cfg.daemon.rescan_interval = Duration::from_millis(500);
        assert!(cfg.validate(Path::new("f")).is_err());
        let mut cfg = Config::default();
        cfg.watch[0].path = PathBuf::from("etc");
        assert!(cfg
            .validate(Path::new("f"))
            .unwrap_err()
            .to_string()
            .contains("absolute"));
        assert!(Config::default().validate(Path::new("f")).is_ok());
    }

    #[test]
    fn single_bracket_watch_names_the_key_and_the_fix() {
        let text = "[daemon]\nhost = \"h\"\n\n[watch]\npath = \"/etc\"\n";
        let msg = Config::parse(text, Path::new("f"))
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("f:4:"), "{msg}");
        assert!(msg.contains("[[watch]]"), "{msg}");
    }

    #[test]
    fn watch_paths_with_glob_characters_are_invalid() {
        for path in ["/etc/*.conf", "/srv/**", "/etc/nginx?", "/etc/[ab]"] {
            let mut cfg = Config::default();
            cfg.watch[0].path = PathBuf::from(path);
            let err = cfg.validate(Path::new("f")).unwrap_err();
            assert!(matches!(err, ConfigError::Invalid { .. }), "{path}: {err}");
            assert!(err.to_string().contains("include"), "{err}");
        }
    }
}
