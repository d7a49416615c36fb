//! Real Debian packages in a private dpkg root: build a tiny `.deb` with `dpkg-deb --build`,
//! make an empty dpkg database under `<root>/var/lib/dpkg`, and install, upgrade, downgrade,
//! remove or divert with the real `dpkg --root=<root>`.
//!
//! ```ignore
//! let root = tmp.path().join("root");
//! let admin = debs::empty_root(&root);
//! let v1 = debs::Deb::new("foo", "1.0-1")
//!     .file("/usr/bin/foo", b"#!/bin/sh\n", 0o755)
//!     .file("/etc/foo.conf", b"x = 1\n", 0o644)
//!     .conffile("/etc/foo.conf")
//!     .build(tmp.path());
//! debs::install(&root, &v1);        // again with a newer .deb: an upgrade
//! debs::remove(&root, "foo");       // or debs::purge
//! ```
//!
//! As root, `--root` alone is enough for packages without maintainer scripts (it sets both
//! the install dir and the admin dir); `--log` keeps the run out of the host's
//! `/var/log/dpkg.log` (dpkg 1.21 does not prefix its default log path with `--root`).
//! `--force-script-chrootless` runs a package's maintainer scripts (`Deb::script`) on the
//! host instead of in a chroot of the root (which has no shell): they see `DPKG_ROOT`.
//! Without root dpkg stops at "requested operation requires superuser privilege" unless given
//! `--force-not-root` (not passed here): these helpers are for root; check
//! `is_root() && have_dpkg()` first (see `can_run`).
//!
//! To look at the database in the middle of a transaction, give the package a `postinst`
//! from `pause_script` and start dpkg with `spawn_dpkg`: files are unpacked, `.list` and
//! `.md5sums` rewritten and the new version recorded in `updates/` (not yet in `status`),
//! and dpkg holds its locks, until the test calls `Gate::open`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::Run;

/// `dpkg`, `dpkg-deb` and `dpkg-divert` are on PATH.
pub fn have_dpkg() -> bool {
    ["dpkg", "dpkg-deb", "dpkg-divert"].iter().all(|tool| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// A package to build: architecture `all`, no dependencies, maintainer scripts only if
/// added.
#[derive(Debug, Clone)]
pub struct Deb {
    pub name: String,
    pub version: String,
    /// (absolute path in the package, content, mode).
    pub files: Vec<(String, Vec<u8>, u32)>,
    /// Absolute paths of files (among `files`) dpkg treats as conffiles.
    pub conffiles: Vec<String>,
    /// Maintainer scripts: (`preinst`|`postinst`|`prerm`|`postrm`, body).
    pub scripts: Vec<(String, String)>,
}

impl Deb {
    pub fn new(name: &str, version: &str) -> Deb {
        Deb {
            name: name.to_string(),
            version: version.to_string(),
            files: Vec::new(),
            conffiles: Vec::new(),
            scripts: Vec::new(),
        }
    }

    /// Add a maintainer script (`preinst`, `postinst`, `prerm`, `postrm`); `body` is the
    /// whole script, `#!/bin/sh` line included.
    pub fn script(mut self, name: &str, body: &str) -> Deb {
        self.scripts.push((name.to_string(), body.to_string()));
        self
    }

    /// Add a regular file (`path` absolute, e.g. `/usr/bin/foo`).
    pub fn file(mut self, path: &str, content: &[u8], mode: u32) -> Deb {
        self.files.push((path.to_string(), content.to_vec(), mode));
        self
    }

    /// Mark `path` (added with `file`) a conffile.
    pub fn conffile(mut self, path: &str) -> Deb {
        self.conffiles.push(path.to_string());
        self
    }

    /// Build `<out_dir>/<name>_<version>_all.deb` and return its path.
    pub fn build(&self, out_dir: &Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let tree = out_dir.join(format!("{}_{}.tree", self.name, self.version));
        let _ = std::fs::remove_dir_all(&tree);
        std::fs::create_dir_all(tree.join("DEBIAN")).expect("mkdir DEBIAN");
        let control = format!(
            "Package: {}\nVersion: {}\nArchitecture: all\nMaintainer: fimd tests <fimd@localhost>\nDescription: fimd test package\n",
            self.name, self.version
        );
        std::fs::write(tree.join("DEBIAN/control"), control).expect("write control");
        if !self.conffiles.is_empty() {
            let list = self.conffiles.join("\n") + "\n";
            std::fs::write(tree.join("DEBIAN/conffiles"), list).expect("write conffiles");
        }
        for (name, body) in &self.scripts {
            let p = tree.join("DEBIAN").join(name);
            std::fs::write(&p, body).expect("write maintainer script");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        for (path, content, mode) in &self.files {
            let p = tree.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().expect("file in a directory")).expect("mkdir -p");
            std::fs::write(&p, content).expect("write package file");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).expect("chmod");
        }
        let deb = out_dir.join(format!("{}_{}_all.deb", self.name, self.version));
        let r = Run::from(
            Command::new("dpkg-deb")
                .args(["--root-owner-group", "-Zgzip", "--build"])
                .arg(&tree)
                .arg(&deb)
                .output()
                .expect("run dpkg-deb"),
        );
        assert_eq!(r.code, 0, "dpkg-deb --build failed: {}", r.stderr);
        std::fs::remove_dir_all(&tree).expect("remove build tree");
        deb
    }
}

/// An empty dpkg database for the file system at `root` (created): `var/lib/dpkg/{status,
/// available,info/,updates/,triggers/}`. Returns the admin dir.
pub fn empty_root(root: &Path) -> PathBuf {
    let admin = admin_dir(root);
    for dir in ["info", "updates", "triggers"] {
        std::fs::create_dir_all(admin.join(dir)).expect("mkdir admin dir");
    }
    for file in ["status", "available"] {
        std::fs::write(admin.join(file), "").expect("write empty database file");
    }
    std::fs::create_dir_all(root.join("var/log")).expect("mkdir var/log");
    admin
}

/// `<root>/var/lib/dpkg`.
pub fn admin_dir(root: &Path) -> PathBuf {
    root.join("var/lib/dpkg")
}

/// Where these helpers make dpkg log: `<root>/var/log/dpkg.log`.
pub fn dpkg_log(root: &Path) -> PathBuf {
    root.join("var/log/dpkg.log")
}

/// `dpkg --root=<root> --log=<root>/var/log/dpkg.log --force-script-chrootless ARGS`.
fn dpkg_command(root: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("dpkg");
    c.arg(format!("--root={}", root.display()))
        .arg(format!("--log={}", dpkg_log(root).display()))
        .arg("--force-script-chrootless")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive");
    c
}

/// Run dpkg in the root with ARGS (e.g. `["-i", deb]`), whatever its outcome.
pub fn dpkg(root: &Path, args: &[&str]) -> Run {
    Run::from(dpkg_command(root, args).output().expect("run dpkg"))
}

/// Start dpkg in the root with ARGS in the background (output discarded); `wait()` on it.
pub fn spawn_dpkg(root: &Path, args: &[&str]) -> std::process::Child {
    dpkg_command(root, args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn dpkg")
}

/// A pair of marker files for `pause_script`: the script creates `reached` and waits until
/// `open` exists.
pub struct Gate {
    pub reached: PathBuf,
    pub open: PathBuf,
}

impl Gate {
    /// Markers in `dir` (outside the dpkg root), named after `name`.
    pub fn new(dir: &Path, name: &str) -> Gate {
        Gate {
            reached: dir.join(format!("{name}.reached")),
            open: dir.join(format!("{name}.open")),
        }
    }

    /// Wait (at most `timeout`) until the script is paused; false if it never got there.
    pub fn wait_reached(&self, timeout: std::time::Duration) -> bool {
        super::wait_until(timeout, || self.reached.exists())
    }

    /// Let the script (and dpkg) go on.
    pub fn open(&self) {
        std::fs::write(&self.open, "").expect("open the gate");
    }
}

/// A maintainer script that stops at `gate` (for at most 60 s, so a failed test cannot
/// hang dpkg forever).
pub fn pause_script(gate: &Gate) -> String {
    format!(
        "#!/bin/sh\ntouch '{}'\ni=0\nwhile [ ! -e '{}' ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done\n",
        gate.reached.display(),
        gate.open.display()
    )
}

fn dpkg_ok(root: &Path, args: &[&str]) -> Run {
    let r = dpkg(root, args);
    assert_eq!(r.code, 0, "dpkg {args:?} failed: {}", r.stderr);
    r
}

/// Install (or upgrade, downgrade, reinstall: `dpkg -i` does them all) a `.deb`. On a
/// conffile the admin changed, dpkg keeps the admin's version (`--force-confold`).
pub fn install(root: &Path, deb: &Path) -> Run {
    let deb = deb.to_str().expect("UTF-8 .deb path");
    dpkg_ok(root, &["--force-confold", "-i", deb])
}

/// `dpkg -r`: files removed, conffiles kept (state config-files).
pub fn remove(root: &Path, package: &str) -> Run {
    dpkg_ok(root, &["-r", package])
}

/// `dpkg -P`: everything removed, conffiles too.
pub fn purge(root: &Path, package: &str) -> Run {
    dpkg_ok(root, &["-P", package])
}

/// `dpkg-divert --package <by> --rename --divert <to> --add <from>` in the root: another
/// package's `from` now lives at `to` (moved there if already installed).
pub fn divert(root: &Path, by: &str, from: &str, to: &str) -> Run {
    let r = Run::from(
        Command::new("dpkg-divert")
            .arg(format!("--root={}", root.display()))
            .args(["--package", by, "--rename", "--divert", to, "--add", from])
            .output()
            .expect("run dpkg-divert"),
    );
    assert_eq!(r.code, 0, "dpkg-divert failed: {}", r.stderr);
    r
}
