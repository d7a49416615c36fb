//! Which paths matter by what they are (DESIGN.md "Severity", rules 1 and 2). Pure code on
//! paths: `explain` decides when a rule applies (unexplained changes only, for rule 2).

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Paths whose unexplained change is high: authorized_keys, sudoers, the SSH daemon's config,
/// PAM (config and modules), cron, startup and service files (systemd units, SysV init
/// scripts, rc.local), and the account databases.
pub fn is_high_path(path: &Path) -> bool {
    const NAMES: &[&str] = &[
        "authorized_keys",
        "authorized_keys2",
        "sshd_config",
        "sudoers",
        "rc.local",
        "crontab",
        "anacrontab",
        "ld.so.preload",
    ];
    const EXACT: &[&str] = &["/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow"];
    const PREFIXES: &[&str] = &[
        "/etc/sudoers.d/",
        "/etc/ssh/sshd_config.d/",
        "/etc/pam.d/",
        "/etc/security/",
        "/etc/systemd/",
        "/lib/systemd/",
        "/usr/lib/systemd/",
        "/usr/local/lib/systemd/",
        "/run/systemd/system/",
        "/etc/init.d/",
        "/etc/init/",
        "/etc/rc.d/",
        "/etc/cron",
        "/var/spool/cron/",
        "/lib/security/",
        "/usr/lib/security/",
        "/lib64/security/",
        "/usr/lib64/security/",
    ];
    let text = String::from_utf8_lossy(path.as_os_str().as_bytes());
    let name = path
        .file_name()
        .map(|n| String::from_utf8_lossy(n.as_bytes()).into_owned())
        .unwrap_or_default();
    NAMES.contains(&name.as_str())
        || EXACT.contains(&text.as_ref())
        || PREFIXES.iter().any(|p| text.starts_with(p))
        || text.contains("/.config/systemd/user/")
        || is_multiarch_pam_module(&text)
        || is_sysv_rc_dir(&text)
}

/// What kind of high path, for the reason sentence.
pub fn high_path_kind(path: &Path) -> &'static str {
    let text = String::from_utf8_lossy(path.as_os_str().as_bytes());
    let name = path
        .file_name()
        .map(|n| String::from_utf8_lossy(n.as_bytes()).into_owned())
        .unwrap_or_default();
    if name.starts_with("authorized_keys") {
        "SSH authorized keys"
    } else if text.contains("sudoers") {
        "sudo configuration"
    } else if text.contains("sshd_config") {
        "SSH daemon configuration"
    } else if text.contains("/pam.d/") || text.contains("/security/") {
        "PAM configuration"
    } else if text.contains("cron") {
        "cron job"
    } else if text.contains("systemd") {
        "systemd unit"
    } else if ["/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow"].contains(&text.as_ref())
    {
        "account database"
    } else {
        "startup file"
    }
}

/// `/etc/ld.so.preload`: every dynamically linked program loads what it names.
pub fn is_ld_preload(path: &Path) -> bool {
    path == Path::new("/etc/ld.so.preload")
}

/// `/lib/x86_64-linux-gnu/security/pam_unix.so` and the like.
fn is_multiarch_pam_module(text: &str) -> bool {
    ["/lib/", "/usr/lib/"].iter().any(|prefix| {
        text.strip_prefix(prefix)
            .and_then(|rest| rest.split_once('/'))
            .is_some_and(|(_triplet, rest)| rest.starts_with("security/"))
    })
}

/// `/etc/rc0.d/` … `/etc/rc6.d/`, `/etc/rcS.d/`.
fn is_sysv_rc_dir(text: &str) -> bool {
    text.strip_prefix("/etc/rc")
        .and_then(|rest| rest.get(..4))
        .is_some_and(|head| head.ends_with(".d/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn high_paths() {
        for p in [
            "/root/.ssh/authorized_keys",
            "/home/u/.ssh/authorized_keys2",
            "/etc/sudoers",
            "/etc/sudoers.d/90-cloud",
            "/etc/systemd/system/evil.service",
            "/usr/lib/systemd/system/ssh.service",
            "/lib/systemd/system/cron.service",
            "/etc/init.d/ssh",
            "/etc/rc.local",
            "/etc/rc2.d/S01x",
            "/etc/crontab",
            "/etc/cron.d/job",
            "/etc/cron.daily/logrotate",
            "/var/spool/cron/crontabs/root",
            "/etc/ssh/sshd_config",
            "/etc/ssh/sshd_config.d/50-cloud.conf",
            "/etc/pam.d/sshd",
            "/etc/passwd",
            "/etc/group",
            "/usr/lib/x86_64-linux-gnu/security/pam_unix.so",
            "/home/u/.config/systemd/user/x.service",
        ] {
            assert!(is_high_path(Path::new(p)), "{p}");
        }
        for p in [
            "/etc/nginx/nginx.conf",
            "/etc/hosts",
            "/etc/ssh/ssh_config",
            "/etc/rcfoo",
            "/etc/passwd.bak",
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
        ] {
            assert!(!is_high_path(Path::new(p)), "{p}");
        }
        assert_eq!(
            high_path_kind(Path::new("/etc/sudoers.d/x")),
            "sudo configuration"
        );
        assert_eq!(high_path_kind(Path::new("/etc/group")), "account database");
    }
}
