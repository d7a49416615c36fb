//! Real rpm packages and a real sqlite rpmdb for tests, with Debian's `rpm` (4.18) and
//! `rpmbuild`.
//!
//! ```ignore
//! use common::rpms::{self, RpmFile, RpmRoot, RpmSpec};
//! if !common::can_run(rpms::available(), "FIMD_REQUIRE_RPM", rpms::MISSING) { return; }
//! let tmp = tempfile::tempdir()?;                      // keep it alive for the test
//! let base = std::fs::canonicalize(tmp.path())?;
//! let v1 = RpmSpec::new("hello", "1.0")
//!     .file(RpmFile::new("/usr/bin/hello", b"v1\n", 0o755))
//!     .file(RpmFile::new("/etc/hello.conf", b"a=1\n", 0o644).config());
//! let rpm1 = rpms::build(&base.join("build"), &v1);  // .../hello-1.0-1.noarch.rpm
//! let root = RpmRoot::new(&base.join("root"));       // <root>/var/lib/rpm/rpmdb.sqlite
//! root.install(&rpm1);                               // rpm -i
//! root.upgrade(&rpm2);                               // rpm -U
//! root.downgrade(&rpm1);                             // rpm -U --oldpackage
//! root.erase("hello");                               // rpm -e
//! // A transaction held open: RpmSpec::pre_lua / post_lua with a lua loop waiting for a
//! // file, installed with root.command().args(["-U", "--nodeps"]).arg(&rpm).spawn().
//! // root.db_dir(): the rpmdb directory to hand to `RpmIndex::load(db_dir, &root.root)`;
//! // root.path("/usr/bin/hello"): the real file, `<root>/usr/bin/hello`.
//! ```
//!
//! Every rpm call runs with `--root <root> --dbpath /var/lib/rpm` (rpm's `--dbpath` is
//! *inside* the root: `--dbpath <root>/var/lib/rpm` would make `<root><root>/var/lib/rpm`),
//! `_db_backend sqlite`, `--nodeps --noscripts`, and `HOME` pointed at a scratch directory so
//! no `~/.rpmmacros` leaks in (Debian's default `_dbpath` is `~/.rpmdb`). As root, rpm
//! chroots into `<root>` to unpack. Each build and root is its own directory, so tests can run
//! in parallel. A failing rpm command panics with its output.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Why a test that needs these helpers cannot run (for `common::can_run`).
pub const MISSING: &str = "needs rpm and rpmbuild (Debian: apt install rpm)";

/// `rpm` and `rpmbuild` are on `PATH`.
pub fn available() -> bool {
    ["rpm", "rpmbuild"].iter().all(|tool| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// One file a package ships.
#[derive(Debug, Clone)]
pub struct RpmFile {
    /// Absolute path inside the package (`/usr/bin/hello`); no spaces or `%`.
    pub path: String,
    pub content: Vec<u8>,
    /// Permission bits (`0o755`).
    pub mode: u32,
    /// `%config(noreplace)`.
    pub config: bool,
    /// `%ghost`: listed (no digest) but not shipped; `content` is ignored.
    pub ghost: bool,
}

impl RpmFile {
    pub fn new(path: &str, content: &[u8], mode: u32) -> RpmFile {
        assert!(path.starts_with('/'), "package paths are absolute: {path}");
        assert!(
            !path.contains([' ', '%', '"', '\'', '\n']),
            "keep package paths plain: {path:?}"
        );
        RpmFile {
            path: path.to_string(),
            content: content.to_vec(),
            mode,
            config: false,
            ghost: false,
        }
    }

    /// Mark as `%config(noreplace)`.
    pub fn config(mut self) -> RpmFile {
        self.config = true;
        self
    }

    /// Mark as `%ghost`.
    pub fn ghost(mut self) -> RpmFile {
        self.ghost = true;
        self
    }
}

/// A tiny noarch package.
#[derive(Debug, Clone)]
pub struct RpmSpec {
    pub name: String,
    pub version: String,
    /// `1` unless set.
    pub release: String,
    pub epoch: Option<u32>,
    pub files: Vec<RpmFile>,
    /// `_binary_filedigest_algorithm`: 8 (SHA-256, the default), 1 (MD5), 2 (SHA-1),
    /// 9 (SHA-384), 10 (SHA-512).
    pub digest_algo: u32,
    /// A `%pre -p <lua>` scriptlet (lua runs inside rpm, chrooted into the root, so the root
    /// needs no shell); it only runs when installed without `--noscripts` (see
    /// [`RpmRoot::command`]).
    pub pre_lua: Option<String>,
    /// A `%post -p <lua>` scriptlet, likewise. rpm runs it after it unpacked the files and
    /// added the new header, and before it erases the old header of an upgrade.
    pub post_lua: Option<String>,
}

impl RpmSpec {
    pub fn new(name: &str, version: &str) -> RpmSpec {
        RpmSpec {
            name: name.to_string(),
            version: version.to_string(),
            release: "1".to_string(),
            epoch: None,
            files: Vec::new(),
            digest_algo: 8,
            pre_lua: None,
            post_lua: None,
        }
    }

    pub fn file(mut self, file: RpmFile) -> RpmSpec {
        self.files.push(file);
        self
    }

    pub fn release(mut self, release: &str) -> RpmSpec {
        self.release = release.to_string();
        self
    }

    pub fn epoch(mut self, epoch: u32) -> RpmSpec {
        self.epoch = Some(epoch);
        self
    }

    pub fn digest_algo(mut self, algo: u32) -> RpmSpec {
        self.digest_algo = algo;
        self
    }

    pub fn pre_lua(mut self, script: &str) -> RpmSpec {
        self.pre_lua = Some(script.to_string());
        self
    }

    pub fn post_lua(mut self, script: &str) -> RpmSpec {
        self.post_lua = Some(script.to_string());
        self
    }

    /// `[epoch:]version-release`, as the rpm index reports it.
    pub fn evr(&self) -> String {
        match self.epoch {
            Some(e) => format!("{e}:{}-{}", self.version, self.release),
            None => format!("{}-{}", self.version, self.release),
        }
    }

    fn spec_text(&self, sources: &Path) -> String {
        let mut s = String::new();
        s.push_str(&format!("Name: {}\n", self.name));
        s.push_str(&format!("Version: {}\n", self.version));
        s.push_str(&format!("Release: {}\n", self.release));
        if let Some(e) = self.epoch {
            s.push_str(&format!("Epoch: {e}\n"));
        }
        s.push_str("Summary: fimd test package\nLicense: MIT\nBuildArch: noarch\n");
        s.push_str("%description\nfimd test package\n\n");
        if let Some(lua) = &self.pre_lua {
            s.push_str(&format!("%pre -p <lua>\n{lua}\n\n"));
        }
        if let Some(lua) = &self.post_lua {
            s.push_str(&format!("%post -p <lua>\n{lua}\n\n"));
        }
        s.push_str("%install\n");
        for (i, f) in self.files.iter().enumerate() {
            if f.ghost {
                continue;
            }
            s.push_str(&format!(
                "install -D -m {:o} {}/src{i} %{{buildroot}}{}\n",
                f.mode,
                sources.display(),
                f.path
            ));
        }
        s.push_str("\n%files\n");
        for f in &self.files {
            let mut line = format!("%attr({:o},root,root) ", f.mode);
            if f.config {
                line.push_str("%config(noreplace) ");
            }
            if f.ghost {
                line.push_str("%ghost ");
            }
            line.push_str(&f.path);
            s.push_str(&line);
            s.push('\n');
        }
        s
    }
}

/// Build `spec` with `rpmbuild -bb` in `<work>/<name>-<evr>/` (a fresh `_topdir`); returns the
/// `.rpm`. `work` is created if needed; several builds can share it.
pub fn build(work: &Path, spec: &RpmSpec) -> PathBuf {
    let top = work.join(format!(
        "{}-{}-{}",
        spec.name,
        spec.evr().replace(':', "_"),
        spec.digest_algo
    ));
    let sources = top.join("SOURCES");
    std::fs::create_dir_all(&sources).expect("mkdir SOURCES");
    for (i, f) in spec.files.iter().enumerate() {
        std::fs::write(sources.join(format!("src{i}")), &f.content).expect("write source");
    }
    let spec_file = top.join(format!("{}.spec", spec.name));
    std::fs::write(&spec_file, spec.spec_text(&sources)).expect("write spec");
    let out = Command::new("rpmbuild")
        .env("HOME", &top)
        .arg("-bb")
        .arg("--nodeps")
        .arg("--define")
        .arg(format!("_topdir {}", top.display()))
        .arg("--define")
        .arg(format!("_binary_filedigest_algorithm {}", spec.digest_algo))
        .arg("--define")
        .arg("debug_package %{nil}")
        .arg("--define")
        .arg("_build_id_links none")
        // No brp-* post-processing (stripping, compressing, shebang mangling): the files
        // must be installed byte for byte as given.
        .arg("--define")
        .arg("__os_install_post %{nil}")
        .arg(&spec_file)
        .output()
        .expect("run rpmbuild");
    check("rpmbuild -bb", &out);
    let rpm = top.join("RPMS/noarch").join(format!(
        "{}-{}-{}.noarch.rpm",
        spec.name, spec.version, spec.release
    ));
    assert!(rpm.is_file(), "rpmbuild made no {}", rpm.display());
    rpm
}

/// A file system root with its own sqlite rpmdb at `<root>/var/lib/rpm`.
#[derive(Debug, Clone)]
pub struct RpmRoot {
    /// The root (`rpm --root`).
    pub root: PathBuf,
    /// Scratch `HOME` for rpm, outside the root.
    home: PathBuf,
}

impl RpmRoot {
    /// Create `root` and an empty sqlite rpmdb in it (`rpm --initdb`). Pass a canonical path
    /// (the index reports real paths).
    pub fn new(root: &Path) -> RpmRoot {
        std::fs::create_dir_all(root.join("var/lib/rpm")).expect("mkdir rpmdb dir");
        let home = root.with_extension("rpmhome");
        std::fs::create_dir_all(&home).expect("mkdir rpm home");
        let r = RpmRoot {
            root: root.to_path_buf(),
            home,
        };
        r.run(&["--initdb"]);
        assert!(
            r.db_dir().join("rpmdb.sqlite").is_file(),
            "rpm --initdb made no sqlite rpmdb"
        );
        r
    }

    /// The rpmdb directory (`<root>/var/lib/rpm`, holding `rpmdb.sqlite`).
    pub fn db_dir(&self) -> PathBuf {
        self.root.join("var/lib/rpm")
    }

    /// The real path of a package path: `<root>/usr/bin/x` for `/usr/bin/x`.
    pub fn path(&self, package_path: &str) -> PathBuf {
        self.root.join(package_path.trim_start_matches('/'))
    }

    /// `rpm -i` (`--nodeps --noscripts`).
    pub fn install(&self, rpm: &Path) {
        self.run_with(&["-i", "--nodeps", "--noscripts"], rpm);
    }

    /// `rpm -U` (`--nodeps --noscripts`).
    pub fn upgrade(&self, rpm: &Path) {
        self.run_with(&["-U", "--nodeps", "--noscripts"], rpm);
    }

    /// `rpm -U --oldpackage` (`--nodeps --noscripts`): install an older version over a newer.
    pub fn downgrade(&self, rpm: &Path) {
        self.run_with(&["-U", "--oldpackage", "--nodeps", "--noscripts"], rpm);
    }

    /// `rpm -e NAME` (`--nodeps --noscripts`).
    pub fn erase(&self, name: &str) {
        self.run(&["-e", "--nodeps", "--noscripts", name]);
    }

    /// `rpm -qa` as `name-[epoch:]version-release.arch` lines, sorted.
    pub fn query_all(&self) -> Vec<String> {
        let out = self.rpm(&["-qa", "--qf", "%{NAME}-%{EVR}.%{ARCH}\\n"]);
        check("rpm -qa", &out);
        let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    }

    /// Any rpm command against this root (`--root`, `--dbpath`, sqlite backend added); the
    /// output is returned unchecked.
    pub fn rpm(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run rpm")
    }

    /// An `rpm` command set up for this root, to add arguments to (e.g. to spawn and hold).
    pub fn command(&self) -> Command {
        let mut c = Command::new("rpm");
        c.env("HOME", &self.home)
            .arg("--root")
            .arg(&self.root)
            .arg("--dbpath")
            .arg("/var/lib/rpm")
            .arg("--define")
            .arg("_db_backend sqlite");
        c
    }

    fn run(&self, args: &[&str]) {
        let out = self.rpm(args);
        check(&format!("rpm {}", args.join(" ")), &out);
    }

    fn run_with(&self, args: &[&str], rpm: &Path) {
        let out = self
            .command()
            .args(args)
            .arg(rpm)
            .output()
            .expect("run rpm");
        check(&format!("rpm {} {}", args.join(" "), rpm.display()), &out);
    }
}

fn check(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
