//! What is monitored and what is sensitive: watch roots (resolved once to canonical paths),
//! extension/include/exclude selection with globset, authorized_keys discovery from the passwd
//! file, and the sensitive rules (paths, patterns; content-based key detection lives in `scan`).
//! Pure decisions on paths: the only I/O is resolving roots and reading the passwd file.

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::config::{Config, ConfigError};
use crate::event::Severity;

/// A set of globs split the way DESIGN.md says: patterns without `/` match the file name,
/// patterns with `/` match the full path. `*` never crosses `/`; `**` does.
#[derive(Debug, Clone)]
pub struct Patterns {
    by_name: GlobSet,
    by_path: GlobSet,
    count: usize,
}

impl Patterns {
    pub fn new(patterns: &[String], what: &str) -> Result<Patterns, String> {
        let mut by_name = GlobSetBuilder::new();
        let mut by_path = GlobSetBuilder::new();
        for p in patterns {
            let glob: Glob = GlobBuilder::new(p)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| format!("{what}: invalid glob {p:?}: {}", e.kind()))?;
            if p.contains('/') {
                by_path.add(glob);
            } else {
                by_name.add(glob);
            }
        }
        let build = |b: GlobSetBuilder| b.build().map_err(|e| format!("{what}: {e}"));
        Ok(Patterns {
            by_name: build(by_name)?,
            by_path: build(by_path)?,
            count: patterns.len(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn matches(&self, path: &Path) -> bool {
        if self.count == 0 {
            return false;
        }
        if let Some(name) = path.file_name() {
            if self.by_name.is_match(Path::new(name)) {
                return true;
            }
        }
        self.by_path.is_match(path)
    }
}

/// One compiled `[[watch]]` (or an authorized_keys file target).
#[derive(Debug, Clone)]
pub struct Watch {
    /// As written in the config.
    pub configured: PathBuf,
    /// Canonical path (for a file or symlink root: canonical parent + its name, so a symlink
    /// root is recorded, never followed). Equals `configured` when it does not exist yet.
    pub root: PathBuf,
    /// The root existed when the policy was built.
    pub exists: bool,
    /// A missing root is expected (`optional = true`, an authorized_keys candidate): no warning.
    pub optional: bool,
    /// An authorized_keys candidate from the passwd file (not a `[[watch]]`).
    pub from_users: bool,
    /// The root is a directory (walked); otherwise a single-file target.
    pub is_dir: bool,
    pub recursive: bool,
    extensions: Vec<Vec<u8>>,
    include: Patterns,
    exclude: Patterns,
    /// The lowest severity of an unexplained change below this watch (`severity = "high"`).
    pub severity: Option<Severity>,
    /// A directory root reached through a symlink (the path itself or an ancestor): where it
    /// led when the policy was built (= `root`). Recorded by full scans so a retargeted
    /// link is reported (see `pipeline::retarget`).
    pub redirect: Option<PathBuf>,
}

impl Watch {
    /// Does this watch select `path` (a non-directory)?
    pub fn selects(&self, path: &Path) -> bool {
        if path == self.root {
            // A file root is selected whatever the filters say (they are for trees).
            return !self.exclude.matches(path);
        }
        let Ok(rel) = path.strip_prefix(&self.root) else {
            return false;
        };
        if rel.as_os_str().is_empty() {
            return false;
        }
        if !self.recursive && rel.components().count() != 1 {
            return false;
        }
        if self.exclude.matches(path) {
            return false;
        }
        self.matches_filter(path)
    }

    /// Is `dir` (at or below the root) walked by this watch?
    pub fn walks_dir(&self, dir: &Path) -> bool {
        let Ok(rel) = dir.strip_prefix(&self.root) else {
            return false;
        };
        if rel.as_os_str().is_empty() {
            return true;
        }
        self.recursive && !self.excludes_dir(dir)
    }

    /// Excluded directories are never descended into: a glob that matches the directory
    /// itself, or one that matches everything below it (`dir/**`), which is probed with an
    /// unlikely child and grandchild name.
    pub fn excludes_dir(&self, dir: &Path) -> bool {
        if self.exclude.is_empty() {
            return false;
        }
        const PROBE: &str = "\u{1}fimd-probe\u{1}";
        self.exclude.matches(dir)
            || (self.exclude.matches(&dir.join(PROBE))
                && self.exclude.matches(&dir.join(PROBE).join(PROBE)))
    }

    fn matches_filter(&self, path: &Path) -> bool {
        if self.extensions.is_empty() && self.include.is_empty() {
            return true;
        }
        let name = path.file_name().map(OsStr::as_bytes).unwrap_or_default();
        self.extensions
            .iter()
            .any(|e| name.len() > e.len() && name.ends_with(e))
            || self.include.matches(path)
    }
}

/// The compiled selection and sensitivity rules.
#[derive(Debug, Clone)]
pub struct Policy {
    pub watches: Vec<Watch>,
    sensitive_paths: Vec<PathBuf>,
    sensitive_patterns: Patterns,
    pub detect_private_keys: bool,
    /// Problems found while building (unreadable passwd file...), for the caller to log.
    pub warnings: Vec<String>,
}

impl Policy {
    /// Compile the config: resolve roots, read the passwd file, build glob sets.
    pub fn from_config(cfg: &Config, config_path: &Path) -> Result<Policy, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: config_path.to_path_buf(),
            message,
        };
        let mut watches = Vec::new();
        let mut warnings = Vec::new();
        for (i, w) in cfg.watch.iter().enumerate() {
            let include =
                Patterns::new(&w.include, &format!("watch[{i}].include")).map_err(invalid)?;
            let exclude =
                Patterns::new(&w.exclude, &format!("watch[{i}].exclude")).map_err(invalid)?;
            let extensions = w.extensions.iter().map(|e| e.as_bytes().to_vec()).collect();
            let mut watch =
                Watch::resolve(&w.path, w.recursive, extensions, include, exclude, false);
            watch.severity = w.severity;
            watch.optional = w.optional;
            watches.push(watch);
        }
        if cfg.users.authorized_keys {
            let empty = || Patterns::new(&[], "").map_err(invalid);
            for file in authorized_keys_files(&cfg.users.passwd, &mut warnings) {
                watches.push(Watch::resolve(
                    &file,
                    false,
                    Vec::new(),
                    empty()?,
                    empty()?,
                    true,
                ));
            }
        }
        let sensitive_patterns =
            Patterns::new(&cfg.sensitive.patterns, "sensitive.patterns").map_err(invalid)?;
        let mut sensitive_paths: Vec<PathBuf> = Vec::new();
        for p in &cfg.sensitive.paths {
            sensitive_paths.push(p.clone());
            if let Ok(c) = std::fs::canonicalize(p) {
                if &c != p {
                    sensitive_paths.push(c);
                }
            }
        }
        Ok(Policy {
            watches,
            sensitive_paths,
            sensitive_patterns,
            detect_private_keys: cfg.sensitive.detect_private_keys,
            warnings,
        })
    }

    /// Configured watch paths that did not exist when the policy was built (optional ones
    /// included; authorized_keys candidates not), deduplicated, in config order.
    pub fn missing(&self) -> Vec<&Watch> {
        let mut seen = BTreeSet::new();
        self.watches
            .iter()
            .filter(|w| !w.exists && !w.from_users && seen.insert(&w.configured))
            .collect()
    }

    /// One warning per missing watch path that is not optional. For the commands that
    /// scan or describe the coverage (config-check, init, check, the daemon).
    pub fn warn_missing(&self) {
        for w in self.missing().into_iter().filter(|w| !w.optional) {
            tracing::warn!(
                "{} does not exist: nothing is monitored there",
                crate::event::display_path(&w.configured)
            );
        }
    }

    /// No configured watch path exists: a scan would build an empty baseline.
    pub fn nothing_exists(&self) -> bool {
        self.watches.iter().all(|w| w.from_users || !w.exists)
    }

    /// Is this non-directory path monitored (by any watch)?
    pub fn selects(&self, path: &Path) -> bool {
        self.watches.iter().any(|w| w.selects(path))
    }

    /// Is this directory walked (and recorded for mode/uid/gid) by any watch?
    pub fn walks_dir(&self, dir: &Path) -> bool {
        self.watches.iter().any(|w| w.walks_dir(dir))
    }

    /// The highest `severity` floor of the watches that select `path`, if any sets one.
    pub fn severity_floor(&self, path: &Path) -> Option<Severity> {
        self.watches
            .iter()
            .filter(|w| w.severity.is_some() && (w.selects(path) || w.walks_dir(path)))
            .filter_map(|w| w.severity)
            .max()
    }

    /// Sensitive by name or path (content-based detection is the scanner's job).
    pub fn is_sensitive_path(&self, path: &Path) -> bool {
        self.sensitive_paths.iter().any(|p| path.starts_with(p))
            || self.sensitive_patterns.matches(path)
    }

    /// Distinct directory roots, in config order (overlaps are walked once per root and
    /// deduplicated by the scanner).
    pub fn dir_roots(&self) -> Vec<&Watch> {
        let mut seen = BTreeSet::new();
        self.watches
            .iter()
            .filter(|w| w.is_dir && seen.insert((&w.root, w.recursive)))
            .collect()
    }

    /// Where each configured directory root reached through a symlink leads (`[[watch]]`
    /// paths only), as resolved when the policy was built.
    pub fn redirects(&self) -> std::collections::BTreeMap<PathBuf, PathBuf> {
        self.watches
            .iter()
            .filter(|w| !w.from_users)
            .filter_map(|w| Some((w.configured.clone(), w.redirect.clone()?)))
            .collect()
    }

    /// A configured root's symlink leads elsewhere now than when the policy was built (the
    /// daemon then builds its policy again: see `daemon::run`). Blocking: a few `stat`s.
    pub fn roots_moved(&self) -> bool {
        self.watches
            .iter()
            .filter(|w| !w.from_users)
            .any(|w| locate(&w.configured, false).3 != w.redirect)
    }

    /// Single-file targets (file roots, authorized_keys files), deduplicated.
    pub fn file_targets(&self) -> Vec<&Path> {
        let mut seen = BTreeSet::new();
        self.watches
            .iter()
            .filter(|w| !w.is_dir && seen.insert(&w.root))
            .map(|w| w.root.as_path())
            .collect()
    }
}

impl Watch {
    fn resolve(
        configured: &Path,
        recursive: bool,
        extensions: Vec<Vec<u8>>,
        include: Patterns,
        exclude: Patterns,
        file_target: bool,
    ) -> Watch {
        let (root, exists, is_dir, redirect) = locate(configured, file_target);
        Watch {
            configured: configured.to_path_buf(),
            root,
            exists,
            optional: file_target,
            from_users: file_target,
            is_dir,
            recursive,
            extensions,
            include,
            exclude,
            severity: None,
            redirect,
        }
    }
}

/// Resolve a configured watch path: (root, exists, is_dir, redirect); see [`Watch`].
fn locate(configured: &Path, file_target: bool) -> (PathBuf, bool, bool, Option<PathBuf>) {
    let meta = std::fs::symlink_metadata(configured);
    let follows_to_dir = std::fs::metadata(configured)
        .map(|m| m.is_dir())
        .unwrap_or(false);
    match meta {
        Ok(m) if m.is_dir() || (m.file_type().is_symlink() && follows_to_dir) => {
            let root =
                std::fs::canonicalize(configured).unwrap_or_else(|_| configured.to_path_buf());
            // Through a symlink when the canonical path differs (ignoring a mere trailing
            // slash or `.` component, which `Path` equality already ignores).
            let redirect = (root != configured).then(|| root.clone());
            (root, true, true, redirect)
        }
        Ok(_) => (canonical_parent(configured), true, false, None),
        // Not there yet: resolve the parent; a tree unless it is a single-file target. The
        // scanner looks again (lstat) each time it runs.
        Err(_) => (canonical_parent(configured), false, !file_target, None),
    }
}

/// Canonical parent directory + file name (the file itself is not followed).
fn canonical_parent(path: &Path) -> PathBuf {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => std::fs::canonicalize(parent)
            .map(|p| p.join(name))
            .unwrap_or_else(|_| path.to_path_buf()),
        _ => path.to_path_buf(),
    }
}

/// `~/.ssh/authorized_keys` and `authorized_keys2` of every passwd user, plus root's.
pub fn authorized_keys_files(passwd: &Path, warnings: &mut Vec<String>) -> Vec<PathBuf> {
    let mut homes: BTreeSet<PathBuf> = BTreeSet::new();
    homes.insert(PathBuf::from("/root"));
    match std::fs::read(passwd) {
        Ok(bytes) => {
            for line in bytes.split(|b| *b == b'\n') {
                if line.starts_with(b"#") {
                    continue;
                }
                let fields: Vec<&[u8]> = line.split(|b| *b == b':').collect();
                if let Some(home) = fields.get(5) {
                    if home.starts_with(b"/") && *home != b"/" {
                        homes.insert(PathBuf::from(OsStr::from_bytes(home)));
                    }
                }
            }
        }
        Err(e) => warnings.push(format!(
            "cannot read passwd file {}: {e}; only /root is searched for authorized_keys",
            passwd.display()
        )),
    }
    homes
        .into_iter()
        .flat_map(|h| {
            [
                h.join(".ssh/authorized_keys"),
                h.join(".ssh/authorized_keys2"),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WatchConfig;

    fn pats(v: &[&str]) -> Patterns {
        let v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        Patterns::new(&v, "t").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn globs_follow_design_rules() {
        let p = pats(&["*.key", "/etc/ssh/*", "/srv/**/secret"]);
        assert!(p.matches(Path::new("/any/where/host.key")));
        assert!(p.matches(Path::new("/etc/ssh/sshd_config")));
        assert!(
            !p.matches(Path::new("/etc/ssh/sub/file")),
            "* must not cross /"
        );
        assert!(p.matches(Path::new("/srv/a/b/secret")));
        assert!(!p.matches(Path::new("/etc/keys.txt")));
        assert!(Patterns::new(&["[".to_string()], "x").is_err());
    }

    fn cfg_with(watch: Vec<WatchConfig>) -> Config {
        let mut c = Config {
            watch,
            ..Config::default()
        };
        c.users.authorized_keys = false;
        c
    }

    #[test]
    fn selection_extensions_include_exclude_recursive() {
        let dir = std::env::temp_dir();
        let root = std::fs::canonicalize(&dir).unwrap_or(dir);
        let w = WatchConfig {
            path: root.clone(),
            recursive: true,
            extensions: vec![".conf".into()],
            include: vec!["rc.local".into()],
            exclude: vec!["skip.conf".into(), "**/private/**".into()],
            severity: None,
            optional: false,
        };
        let pol = Policy::from_config(&cfg_with(vec![w.clone()]), Path::new("f"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(pol.selects(&root.join("a/b.conf")));
        assert!(pol.selects(&root.join("rc.local")));
        assert!(!pol.selects(&root.join("a/b.txt")));
        assert!(!pol.selects(&root.join("a/skip.conf")));
        assert!(!pol.selects(&root.join("x/private/y.conf")));
        assert!(
            !pol.selects(&root.join(".conf")),
            "a bare extension is not a match"
        );
        assert!(!pol.selects(Path::new("/elsewhere/b.conf")));
        let flat = WatchConfig {
            recursive: false,
            ..w
        };
        let pol = Policy::from_config(&cfg_with(vec![flat]), Path::new("f"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(pol.selects(&root.join("top.conf")));
        assert!(!pol.selects(&root.join("a/deep.conf")));
    }

    #[test]
    fn sensitive_paths_cover_directories() {
        let mut c = cfg_with(vec![]);
        c.sensitive.paths = vec![
            PathBuf::from("/etc/ssl/private"),
            PathBuf::from("/etc/shadow"),
        ];
        c.sensitive.patterns = vec!["*.key".into()];
        let pol = Policy::from_config(&c, Path::new("f")).unwrap_or_else(|e| panic!("{e}"));
        assert!(pol.is_sensitive_path(Path::new("/etc/ssl/private/x.crt")));
        assert!(pol.is_sensitive_path(Path::new("/etc/shadow")));
        assert!(!pol.is_sensitive_path(Path::new("/etc/shadowy")));
        assert!(pol.is_sensitive_path(Path::new("/opt/a.key")));
    }

    #[test]
    fn authorized_keys_from_passwd() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let passwd = dir.path().join("passwd");
        std::fs::write(&passwd, "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\nnobody:x:65534:65534::/:/usr/sbin/nologin\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let mut warnings = vec![];
        let files = authorized_keys_files(&passwd, &mut warnings);
        assert!(files.contains(&PathBuf::from("/home/alice/.ssh/authorized_keys")));
        assert!(files.contains(&PathBuf::from("/home/alice/.ssh/authorized_keys2")));
        assert!(files.contains(&PathBuf::from("/root/.ssh/authorized_keys")));
        assert_eq!(files.len(), 4);
        let _ = authorized_keys_files(&dir.path().join("missing"), &mut warnings);
        assert_eq!(warnings.len(), 1);
    }

    #[test]
    fn default_root_watch_skips_toolchains_and_caches_and_fimd_config_is_watched() {
        // Only meaningful where /root is a real directory (as on any Linux server).
        let pol = Policy::from_config(&cfg_with(crate::config::default_watches()), Path::new("f"))
            .unwrap_or_else(|e| panic!("{e}"));
        if !pol
            .watches
            .iter()
            .any(|w| w.configured == Path::new("/root") && w.root == Path::new("/root"))
        {
            return;
        }
        for skipped in [
            "/root/.pyenv/versions/3.12/lib/os.py",
            "/root/.nvm/versions/node/bin/node",
            "/root/.rbenv/shims/ruby",
            "/root/.local/lib/python3.11/site-packages/x.py",
            "/root/.local/share/virtualenvs/app/bin/python",
            "/root/.cache/pip/http/a",
            "/root/go/pkg/mod/x.go",
            "/root/.m2/repository/a.jar",
            "/root/.gradle/caches/a.bin",
            "/root/app/node_modules/left-pad/index.js",
            "/root/app/__pycache__/m.cpython-311.pyc",
            "/root/.cargo/registry/cache/a.crate",
            "/root/.rustup/toolchains/x",
            "/root/.npm/_cacache/x",
        ] {
            assert!(!pol.selects(Path::new(skipped)), "{skipped} is selected");
        }
        for dir in [
            "/root/.pyenv",
            "/root/app/node_modules",
            "/root/app/__pycache__",
            "/root/go/pkg",
        ] {
            assert!(!pol.walks_dir(Path::new(dir)), "{dir} is walked");
        }
        assert!(pol.selects(Path::new("/root/app/main.py")));
        assert!(pol.selects(Path::new("/root/go/src/main.go")));
        assert!(pol.selects(Path::new("/root/.local/bin/tool")));
        // fimd's own configuration, whatever the file name or extension.
        assert!(pol.selects(Path::new("/etc/fimd/fimd.toml")));
        assert!(pol.selects(Path::new("/etc/fimd/creds/slack-webhook-url")));
    }
}
