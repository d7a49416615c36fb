//! The man page, fimd(8), as roff. Commands and options come from the clap definitions;
//! CONFIGURATION is rendered from the shipped `config/fimd.toml` (every key with its default
//! and the file's own comments), so the page cannot drift from the config or the CLI.
//! `examples/gen-assets.rs` writes it for the package; a test renders it with `groff -ww`.

use clap::{Arg, Command};

use crate::config::SHIPPED_CONFIG;

/// Escape text for roff: backslashes, hyphens in words, and a leading `.` or `'`.
fn esc(text: &str) -> String {
    let mut out = text.replace('\\', "\\e").replace('-', "\\-");
    if out.starts_with('.') || out.starts_with('\'') {
        out.insert_str(0, "\\&");
    }
    out
}

/// `--name <VALUE>` for an option, `<NAME>` for a positional.
fn arg_usage(a: &Arg) -> String {
    let value = a
        .get_value_names()
        .and_then(|v| v.first())
        .map(|v| v.to_string());
    match (a.get_long(), value) {
        (Some(long), Some(v)) if a.get_action().takes_values() => {
            format!("\\fB\\-\\-{}\\fR \\fI{}\\fR", esc(long), esc(&v))
        }
        (Some(long), _) => format!("\\fB\\-\\-{}\\fR", esc(long)),
        (None, Some(v)) => format!("\\fI{}\\fR", esc(&v)),
        (None, None) => format!("\\fI{}\\fR", esc(a.get_id().as_str())),
    }
}

fn arg_help(a: &Arg) -> String {
    let mut help = a
        .get_long_help()
        .or_else(|| a.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default();
    if let Some(env) = a.get_env() {
        help += &format!(" (environment: {})", env.to_string_lossy());
    }
    esc(&help)
}

/// `.TP` entries for arguments.
fn args(out: &mut String, list: &[&Arg]) {
    for a in list {
        out.push_str(&format!(".TP\n{}\n{}\n", arg_usage(a), arg_help(a)));
    }
}

/// The arguments a subcommand defines itself (not the propagated global ones, not help).
fn own_args(cmd: &Command) -> Vec<&Arg> {
    cmd.get_arguments()
        .filter(|a| !a.is_global_set() && !a.is_hide_set() && a.get_id() != "help")
        .collect()
}

/// fimd(8) as roff.
pub fn render(cmd: &Command) -> String {
    let version = cmd.get_version().unwrap_or("");
    let mut o = String::new();
    o += &format!(
        ".TH FIMD 8 \"\" \"fimd {}\" \"System Administration\"\n",
        esc(version)
    );
    o += ".SH NAME\nfimd \\- file integrity monitoring daemon\n";
    o += ".SH SYNOPSIS\n.B fimd\n[\\fIOPTIONS\\fR] [\\fICOMMAND\\fR] [\\fICOMMAND OPTIONS\\fR]\n";
    o += ".br\n.B fimd \\-\\-init\n";
    o += ".SH DESCRIPTION\n";
    o += &esc(
        "fimd keeps a SHA-256 and metadata baseline of the files that matter on a server \
         (configuration, certificates, keys, startup scripts, systemd units, cron, sudoers, \
         PAM, every user's authorized_keys, /root) in a SQLite database, and reports every \
         change: added, removed or modified, with the attributes that changed and a unified \
         diff for text files. Sensitive files are monitored by hash and metadata only: their \
         contents are never stored, logged or sent.",
    );
    o += "\n.PP\n";
    o += &esc(
        "It runs as a one-shot check (from cron, with AIDE-compatible exit codes) or as a \
         systemd service (fimd run) watching with inotify. Changes go to the journal and, \
         through a persistent outbox with retry and backoff, to Slack, Microsoft Teams, Jira, \
         ServiceNow, Rapid7 InsightConnect and webhooks. Without a command, fimd runs check; \
         fimd --init is fimd init.",
    );
    o += "\n.SH COMMANDS\n";
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let own = own_args(sub);
        let usage: Vec<String> = own
            .iter()
            .map(|a| match a.is_required_set() {
                true => arg_usage(a),
                false => format!("[{}]", arg_usage(a)),
            })
            .collect();
        o += &format!(
            ".TP\n\\fBfimd {}\\fR {}\n",
            esc(sub.get_name()),
            usage.join(" ")
        );
        let about = sub
            .get_long_about()
            .or_else(|| sub.get_about())
            .map(|a| a.to_string())
            .unwrap_or_default();
        o += &esc(&about);
        o += "\n";
        if !own.is_empty() {
            o += ".RS\n";
            args(&mut o, &own);
            o += ".RE\n";
        }
    }
    o += ".SH OPTIONS\n";
    let heading = |a: &&Arg| a.get_help_heading().is_some();
    let general: Vec<&Arg> = cmd
        .get_arguments()
        .filter(|a| !heading(a) && a.get_id() != "help" && a.get_id() != "version")
        .collect();
    args(&mut o, &general);
    o += ".TP\n\\fB\\-h\\fR, \\fB\\-\\-help\\fR\nPrint help (also after a command).\n";
    o += ".TP\n\\fB\\-V\\fR, \\fB\\-\\-version\\fR\nPrint the version.\n";
    let notifier: Vec<&Arg> = cmd.get_arguments().filter(heading).collect();
    if let Some(h) = notifier.first().and_then(|a| a.get_help_heading()) {
        o += &format!(".SS {}\n", esc(h));
        o += &esc(
            "Accepted by every command. Each can also come from its environment variable, \
             from a systemd credential named like the flag ($CREDENTIALS_DIRECTORY/slack-webhook-url) \
             or from the [notify.*] sections of the configuration.",
        );
        o += "\n";
        args(&mut o, &notifier);
    }
    o += ".SH CONFIGURATION\n";
    o += &configuration();
    o += FIXED_SECTIONS;
    o
}

/// CONFIGURATION, rendered from the shipped config: each section with its comments, each key
/// with its default (`key = value`), the sink sections the file shows commented out.
fn configuration() -> String {
    let mut o = String::new();
    o += &esc(
        "The configuration is /etc/fimd/fimd.toml (--config or FIMD_CONFIG to use another \
         file); without a file the built-in defaults apply, which are exactly the shipped file \
         rendered below. Unknown keys are an error. A file that has any [[watch]] table uses \
         only its own watches; missing keys of a section take their defaults. Check a file \
         with fimd config-check; apply it to the daemon with systemctl reload fimd.",
    );
    o += "\n";
    let mut comments: Vec<String> = Vec::new();
    let mut in_header = true;
    let mut watch_documented = false;
    let mut pending_key: Option<String> = None;
    let flush_comments = |o: &mut String, comments: &mut Vec<String>| {
        if !comments.is_empty() {
            o.push_str(&esc(&comments.join(" ")));
            o.push('\n');
            comments.clear();
        }
    };
    let lines: Vec<&str> = SHIPPED_CONFIG.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_end();
        i += 1;
        if let Some(key) = pending_key.as_mut() {
            // The rest of a multi-line array.
            key.push(' ');
            key.push_str(line.trim());
            if line.trim_start().starts_with(']') {
                let entry = std::mem::take(key);
                pending_key = None;
                o += &format!(".TP\n\\fB{}\\fR\n", esc(&tidy(&entry)));
                flush_comments(&mut o, &mut comments);
            }
            continue;
        }
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        if in_header {
            // The file's own header (where it lives, how to check it) is said above.
            if trimmed.starts_with('#') {
                continue;
            }
            in_header = false;
        }
        if let Some(raw) = trimmed.strip_prefix('#') {
            let c = raw.trim();
            // A commented-out sink section and its keys: examples, not defaults.
            if c.starts_with("[notify.") {
                if !comments.is_empty() {
                    o += ".PP\n";
                    flush_comments(&mut o, &mut comments);
                }
                let (header, note) = split_comment(c);
                o += &format!(".SS {}\n", esc(header));
                o += &esc("Not set by default; keys and example values:");
                o += "\n";
                if !note.is_empty() {
                    o += &esc(note);
                    o += "\n";
                }
                continue;
            }
            if is_key_line(c) && o.contains(".SS [notify.") {
                let (entry, note) = split_comment(c);
                o += &format!(".TP\n\\fB{}\\fR\n{}\n", esc(entry), esc(note));
                continue;
            }
            if raw.starts_with("   ") {
                // The aligned key list of [[watch]]: keep its layout.
                comments.push(format!("\n.nf\n{}\n.fi\n", esc(c)));
                continue;
            }
            comments.push(c.to_string());
            continue;
        }
        if trimmed.starts_with("[[watch]]") {
            if !watch_documented {
                watch_documented = true;
                o += ".SS [[watch]]\n";
                o += &watch_keys(&mut comments);
                o += &esc("The default watches:");
                o += "\n";
            }
            // One default watch: its keys on one line, its comment as the description.
            let mut entry = Vec::new();
            while i < lines.len() && is_key_line(lines[i].trim()) {
                let mut l = lines[i].trim().to_string();
                i += 1;
                if l.ends_with('[') {
                    while i < lines.len() {
                        let next = lines[i].trim();
                        i += 1;
                        l.push(' ');
                        l.push_str(next);
                        if next.starts_with(']') {
                            break;
                        }
                    }
                }
                entry.push(l);
            }
            o += &format!(".TP\n\\fB{}\\fR\n", esc(&tidy(&entry.join("; "))));
            flush_comments(&mut o, &mut comments);
            continue;
        }
        if trimmed.starts_with('[') {
            o += &format!(".SS {}\n", esc(trimmed));
            flush_comments(&mut o, &mut comments);
            continue;
        }
        if is_key_line(trimmed) {
            if trimmed.ends_with('[') {
                pending_key = Some(trimmed.to_string());
                continue;
            }
            o += &format!(".TP\n\\fB{}\\fR\n", esc(trimmed));
            flush_comments(&mut o, &mut comments);
        }
    }
    o
}

/// A multi-line array joined on one line: `[ "a", "b", ]` -> `["a", "b"]`.
fn tidy(entry: &str) -> String {
    entry.replace("[ ", "[").replace(", ]", "]")
}

/// The `[[watch]]` key list from the comments before the first watch table; the comments
/// that follow it (about the first default watch) stay.
fn watch_keys(comments: &mut Vec<String>) -> String {
    let split = comments
        .iter()
        .rposition(|c| c.starts_with("\n.nf\n") || c.starts_with("Globs:") || c.starts_with("`/`"))
        .map_or(0, |p| p + 1);
    let head: Vec<String> = comments.drain(..split).collect();
    let mut o = String::new();
    for c in head {
        if c.starts_with("\n.nf\n") {
            o += c.trim_start_matches('\n');
        } else {
            o += &esc(&c);
            o += "\n";
        }
    }
    o += ".PP\n";
    o
}

/// `key = value` (a TOML key line, possibly inside a comment).
fn is_key_line(s: &str) -> bool {
    let Some((key, _)) = s.split_once('=') else {
        return false;
    };
    let key = key.trim();
    !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `value   # note` -> (`value`, `note`), for commented example lines.
fn split_comment(s: &str) -> (&str, &str) {
    match s.find("  #") {
        Some(p) => (s[..p].trim(), s[p + 3..].trim()),
        None => (s.trim(), ""),
    }
}

const FIXED_SECTIONS: &str = r#".SH FILES
.TP
.I /etc/fimd/fimd.toml
The configuration (a conffile: edits survive upgrades). Run as root, fimd refuses a configuration or database that another user could change (like sshd's StrictModes): the file and every directory above it must be owned by root and not writable by group or others (a root\-owned sticky directory such as /tmp is accepted), and the database path must not be a symbolic link. \-\-insecure\-permissions turns this off for test rigs.
.TP
.I /var/lib/fimd/fimd.db
The SQLite database (with \-wal and \-shm files): baseline, event history, alert outbox. Mode 0600 in a 0700 directory.
.TP
.I /lib/systemd/system/fimd.service
The systemd unit (installed, not enabled).
.TP
.I $CREDENTIALS_DIRECTORY/<flag name>
Sink secrets as systemd credentials (LoadCredential=, LoadCredentialEncrypted=).
.SH ENVIRONMENT
.TP
.B FIMD_CONFIG
The configuration file (like \-\-config).
.TP
.B RUST_LOG
Log filter; overrides daemon.log_level.
.TP
.B CREDENTIALS_DIRECTORY
Set by systemd: where sink credentials are read.
.TP
.B NOTIFY_SOCKET\fR, \fBWATCHDOG_USEC
Set by systemd for fimd run (Type=notify, watchdog).
.TP
.B SERVICENOW_INSTANCE\fR, \fBSERVICENOW_USER\fR, \fBSERVICENOW_PASSWORD\fR, \fBRAPID7_API_KEY\fR, \fBRAPID7_WORKFLOW_ID\fR, \fBJIRA_URL\fR, \fBJIRA_USER\fR, \fBJIRA_API_TOKEN\fR, \fBJIRA_PROJECT_KEY\fR, \fBSLACK_WEBHOOK_URL\fR, \fBTEAMS_WEBHOOK_URL
The notifier options (see OPTIONS).
.TP
.B FIMD_MANAGED_IDENTITY
The managed identity that fetches secret references (like \-\-managed\-identity).
.TP
.B IDENTITY_ENDPOINT\fR, \fBIDENTITY_HEADER\fR, \fBIMDS_ENDPOINT\fR, \fBAZURE_POD_IDENTITY_AUTHORITY_HOST\fR, \fBAWS_REGION\fR, \fBAWS_EC2_METADATA_SERVICE_ENDPOINT\fR, \fBAWS_ENDPOINT_URL_SECRETS_MANAGER\fR, \fBGCE_METADATA_HOST\fR, \fBVAULT_ADDR\fR, \fBVAULT_TOKEN\fR, \fBVAULT_ROLE_ID\fR, \fBVAULT_SECRET_ID
Where secret references (${azurekv:...}, ${awssm:...}, ${gcpsm:...}, ${vault:...}) are fetched from; see the README, "Secrets from cloud stores".
.SH EXIT STATUS
AIDE-compatible, so wrappers written for aide \-\-check keep working.
.TP
.B 0
Nothing changed (or the command succeeded).
.TP
.B 1\fR, \fB2\fR, \fB4
check: files added (1), removed (2), changed (4), OR\-ed (3, 5, 6, 7).
.TP
.B 15
Invalid argument.
.TP
.B 17
Invalid configuration (the message names file, line, column and key); a watch path with glob characters; init or check when no watch path exists; a configuration another user could change (the message names the path and the fix).
.TP
.B 18
I/O or database error: no baseline yet, init over an existing baseline without \-\-force, a corrupt or locked database, permission denied (run as root), a daemon already running on the database, a database another user could change or a database path that is a symbolic link, a database removed, replaced or truncated under the running daemon.
.SH SIGNALS
.TP
.B SIGHUP
fimd run reloads the configuration (systemctl reload fimd). An invalid file is refused with one error line and the running configuration stays.
.TP
.BR SIGTERM ", " SIGINT
fimd run finishes the open transaction and exits 0 within about 5 seconds; the next start rescans.
.SH EXAMPLES
.nf
fimd config\-check                  # what will be watched
fimd init                          # build the baseline
fimd check || echo "changes: exit $?"
fimd check \-\-json \-\-dry\-run        # compare only, one JSON event per line
fimd events \-\-since 1d \-\-path '/etc/ssh/**'
fimd diff 42                       # the stored diff of event 42
fimd status \-\-json
systemctl enable \-\-now fimd        # the daemon
journalctl \-u fimd FIM_EVENT=modified
.fi
.SH SEE ALSO
.BR systemd.exec (5),
.BR journalctl (1),
.BR inotify (7),
.BR aide (1)
"#;
