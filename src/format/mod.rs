//! One event in the shapes SIEMs read natively (DESIGN.md "Formats"): fimd's own JSON, OCSF 1.x
//! "File System Activity" (class 1001), Elastic Common Schema (the FIM integration's field
//! names) and ArcSight CEF. Used by `fimd events --format` and the webhook's `format`.
//!
//! Fields with no home in a schema go under its custom namespace (`unmapped.fimd` in OCSF,
//! `fimd.*` in ECS, `cs1`.. in CEF). Actor and package map to their homes when known and are
//! left out when null.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::event::{Event, EventKind, Severity, StateJson};

/// The OCSF schema version the output follows.
pub const OCSF_VERSION: &str = "1.5.0";

/// `json`, `ocsf`, `ecs` or `cef`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Json,
    Ocsf,
    Ecs,
    Cef,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        Some(match s {
            "json" => Format::Json,
            "ocsf" => Format::Ocsf,
            "ecs" => Format::Ecs,
            "cef" => Format::Cef,
            _ => return None,
        })
    }
}

/// One line: the event in `format` (no trailing newline).
pub fn line(e: &Event, format: Format) -> Result<String, serde_json::Error> {
    match format {
        Format::Json => serde_json::to_string(e),
        Format::Ocsf => serde_json::to_string(&ocsf(e)),
        Format::Ecs => serde_json::to_string(&ecs(e)),
        Format::Cef => Ok(cef(e)),
    }
}

/// The event as a JSON value in `format` (`cef` is a JSON string).
pub fn value(e: &Event, format: Format) -> Result<Value, serde_json::Error> {
    match format {
        Format::Json => serde_json::to_value(e),
        Format::Ocsf => Ok(ocsf(e)),
        Format::Ecs => Ok(ecs(e)),
        Format::Cef => Ok(Value::String(cef(e))),
    }
}

/// Epoch milliseconds of an RFC 3339 time (0 when it cannot be read).
fn epoch_ms(time: &str) -> i64 {
    // parse_since also takes durations, which never look like an RFC 3339 time.
    crate::timefmt::parse_since(time).map_or(0, |ns| ns / 1_000_000)
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Only content changed → Update; only attributes → Set Attributes / Set Security.
fn ocsf_activity(e: &Event) -> (u8, &'static str) {
    match e.event {
        EventKind::Added => (1, "Create"),
        EventKind::Removed => (4, "Delete"),
        EventKind::Renamed => (5, "Rename"),
        EventKind::Modified => {
            let content = e
                .changed
                .iter()
                .any(|c| matches!(c.as_str(), "sha256" | "size" | "link_target" | "type"));
            let security = e.changed.iter().any(|c| {
                matches!(
                    c.as_str(),
                    "mode" | "uid" | "gid" | "caps" | "acl" | "selinux"
                )
            });
            if content || e.changed.is_empty() {
                (3, "Update")
            } else if security {
                (7, "Set Security")
            } else {
                (6, "Set Attributes")
            }
        }
    }
}

fn severity_id(s: Severity) -> (u8, &'static str) {
    match s {
        Severity::Info => (1, "Informational"),
        Severity::Low => (2, "Low"),
        Severity::Medium => (3, "Medium"),
        Severity::High => (4, "High"),
        Severity::Critical => (5, "Critical"),
    }
}

fn ocsf_type_id(kind: &str) -> u8 {
    match kind {
        "file" => 1,
        "dir" => 2,
        "char" => 3,
        "block" => 4,
        "socket" => 5,
        "fifo" => 6,
        "symlink" => 7,
        _ => 0,
    }
}

fn ocsf_file(path: &str, s: &StateJson) -> Value {
    let mut f = json!({
        "name": basename(path),
        "path": path,
        "type_id": ocsf_type_id(&s.kind),
        "size": s.size,
        "owner": {"uid": s.uid.to_string()},
        "modified_time": epoch_ms(&s.mtime),
    });
    if let Some(h) = &s.sha256 {
        f["hashes"] = json!([{"algorithm_id": 3, "algorithm": "SHA-256", "value": h}]);
    }
    f
}

/// OCSF 1.x File System Activity.
pub fn ocsf(e: &Event) -> Value {
    let (activity_id, activity_name) = ocsf_activity(e);
    let (sev_id, sev_name) = severity_id(e.severity);
    let old_path = e.from.as_deref().unwrap_or(&e.path);
    let (file, result) = match e.event {
        EventKind::Added => (e.new.as_ref().map(|s| ocsf_file(&e.path, s)), None),
        EventKind::Removed => (e.old.as_ref().map(|s| ocsf_file(&e.path, s)), None),
        EventKind::Modified | EventKind::Renamed => (
            e.old.as_ref().map(|s| ocsf_file(old_path, s)),
            e.new.as_ref().map(|s| ocsf_file(&e.path, s)),
        ),
    };
    let file =
        file.unwrap_or_else(|| json!({"name": basename(&e.path), "path": e.path, "type_id": 0}));
    let actor = match &e.actor {
        Some(a) => {
            let mut process = json!({"pid": a.pid});
            if let Some(c) = &a.comm {
                process["name"] = json!(c);
            }
            if let Some(x) = &a.exe {
                process["file"] = json!({"name": basename(x), "path": x, "type_id": 1});
            }
            if !a.cmdline.is_empty() {
                process["cmd_line"] = json!(a.cmdline.join(" "));
            }
            let mut actor = json!({"process": process, "app_name": "fimd"});
            if a.uid.is_some() || a.user.is_some() {
                let mut user = Map::new();
                if let Some(u) = a.uid {
                    user.insert("uid".into(), json!(u.to_string()));
                }
                if let Some(n) = &a.user {
                    user.insert("name".into(), json!(n));
                }
                actor["user"] = Value::Object(user);
            }
            if let Some(s) = a.session {
                actor["session"] = json!({"uid": s.to_string()});
            }
            actor
        }
        None => json!({"app_name": "fimd"}),
    };
    let mut unmapped = json!({
        "source": e.source.as_str(),
        "changed": e.changed,
        "reason": e.reason,
        "sensitive": e.sensitive,
        "event": e.event.as_str(),
    });
    if let Some(p) = &e.package {
        unmapped["package"] = json!(p);
    }
    if let Some(o) = &e.old {
        unmapped["old_mode"] = json!(o.mode);
    }
    if let Some(n) = &e.new {
        unmapped["new_mode"] = json!(n.mode);
    }
    let mut v = json!({
        "class_uid": 1001,
        "class_name": "File System Activity",
        "category_uid": 1,
        "category_name": "System Activity",
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": 100100 + u32::from(activity_id),
        "severity_id": sev_id,
        "severity": sev_name,
        "time": epoch_ms(&e.time),
        "message": format!("{} {}", e.event.as_str(), e.path),
        "metadata": {
            "version": OCSF_VERSION,
            "product": {"name": "fimd", "vendor_name": "fimd", "version": env!("CARGO_PKG_VERSION")},
        },
        "device": {"type_id": 1, "hostname": e.host},
        "actor": actor,
        "file": file,
        "unmapped": {"fimd": unmapped},
    });
    if let Some(uid) = &e.uid {
        v["metadata"]["uid"] = json!(uid);
    }
    if let Some(r) = result {
        v["file_result"] = r;
    }
    v
}

fn ecs_file(path: &str, s: &StateJson) -> Value {
    let mut f = json!({
        "path": path,
        "name": basename(path),
        "type": match s.kind.as_str() { "dir" => "dir", "symlink" => "symlink", "file" => "file", _ => "file" },
        "size": s.size,
        "mode": s.mode,
        "uid": s.uid.to_string(),
        "gid": s.gid.to_string(),
        "inode": s.inode.to_string(),
        "mtime": s.mtime,
        "ctime": s.ctime,
    });
    if let Some(dir) = path
        .rsplit_once('/')
        .map(|(d, _)| if d.is_empty() { "/" } else { d })
    {
        f["directory"] = json!(dir);
    }
    if let Some(h) = &s.sha256 {
        f["hash"] = json!({"sha256": h});
    }
    if let Some(t) = &s.link_target {
        f["target_path"] = json!(t);
    }
    f
}

/// Elastic Common Schema, as Elastic's FIM integration names the fields.
pub fn ecs(e: &Event) -> Value {
    let (ty, action) = match e.event {
        EventKind::Added => ("creation", "created"),
        EventKind::Removed => ("deletion", "deleted"),
        EventKind::Renamed => ("change", "moved"),
        EventKind::Modified => {
            let content = e
                .changed
                .iter()
                .any(|c| matches!(c.as_str(), "sha256" | "size" | "link_target" | "type"));
            match content || e.changed.is_empty() {
                true => ("change", "updated"),
                false => ("change", "attributes_modified"),
            }
        }
    };
    let state = match e.event {
        EventKind::Removed => e.old.as_ref(),
        _ => e.new.as_ref().or(e.old.as_ref()),
    };
    let file = state
        .map(|s| ecs_file(&e.path, s))
        .unwrap_or_else(|| json!({"path": e.path, "name": basename(&e.path)}));
    let mut hashes: Vec<&str> = Vec::new();
    for s in [e.old.as_ref(), e.new.as_ref()].into_iter().flatten() {
        if let Some(h) = s.sha256.as_deref() {
            if !hashes.contains(&h) {
                hashes.push(h);
            }
        }
    }
    let mut fimd = json!({
        "source": e.source.as_str(),
        "changed": e.changed,
        "reason": e.reason,
        "sensitive": e.sensitive,
        "severity": e.severity.as_str(),
    });
    if let Some(o) = &e.old {
        fimd["old"] = json!(o);
    }
    if let Some(f) = &e.from {
        fimd["from"] = json!(f);
    }
    let (sev_id, _) = severity_id(e.severity);
    let mut v = json!({
        "@timestamp": e.time,
        "ecs": {"version": "8.11.0"},
        "event": {
            "kind": "event",
            "category": ["file"],
            "type": [ty],
            "action": action,
            "module": "fim",
            "dataset": "fimd.file",
            "severity": sev_id,
            "reason": e.reason,
        },
        "file": file,
        "host": {"name": e.host, "hostname": e.host},
        "agent": {"type": "fimd", "version": env!("CARGO_PKG_VERSION")},
        "fimd": fimd,
    });
    if let Some(uid) = &e.uid {
        v["event"]["id"] = json!(uid);
    }
    if !hashes.is_empty() {
        v["related"] = json!({"hash": hashes});
    }
    if let Some(a) = &e.actor {
        let mut p = json!({"pid": a.pid});
        if let Some(pp) = a.ppid {
            p["parent"] = json!({"pid": pp});
        }
        if let Some(c) = &a.comm {
            p["name"] = json!(c);
        }
        if let Some(x) = &a.exe {
            p["executable"] = json!(x);
        }
        if !a.cmdline.is_empty() {
            p["args"] = json!(a.cmdline);
            p["command_line"] = json!(a.cmdline.join(" "));
        }
        v["process"] = p;
        let mut user = Map::new();
        if let Some(u) = a.uid {
            user.insert("id".into(), json!(u.to_string()));
        }
        if let Some(n) = &a.user {
            user.insert("name".into(), json!(n));
        }
        if !user.is_empty() {
            v["user"] = Value::Object(user);
        }
    }
    if let Some(p) = &e.package {
        v["package"] = json!({"name": p.name, "version": p.version, "architecture": p.arch, "type": p.manager});
    }
    v
}

/// Escape a CEF header field: `\` and `|`.
pub fn cef_header(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ")
}

/// Escape a CEF extension value: `\`, `=`, and line breaks as `\n` / `\r`.
pub fn cef_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('=', "\\=")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

/// ArcSight CEF:0, one line.
pub fn cef(e: &Event) -> String {
    let sev = match e.severity {
        Severity::Info => 1,
        Severity::Low => 3,
        Severity::Medium => 5,
        Severity::High => 8,
        Severity::Critical => 10,
    };
    let kind = e.event.as_str();
    let name = format!("File {kind}");
    let mut ext: Vec<(&str, String)> = vec![
        ("rt", epoch_ms(&e.time).to_string()),
        ("dvchost", e.host.clone()),
        ("filePath", e.path.clone()),
        ("fname", basename(&e.path).to_string()),
    ];
    if let Some(uid) = &e.uid {
        ext.push(("externalId", uid.clone()));
    }
    if let Some(o) = &e.old {
        if let Some(h) = &o.sha256 {
            ext.push(("oldFileHash", h.clone()));
        }
        ext.push(("oldFilePermission", o.mode.clone()));
        ext.push(("oldFileSize", o.size.to_string()));
    }
    if let Some(n) = &e.new {
        if let Some(h) = &n.sha256 {
            ext.push(("fileHash", h.clone()));
        }
        ext.push(("filePermission", n.mode.clone()));
        ext.push(("fsize", n.size.to_string()));
    }
    if let Some(f) = &e.from {
        ext.push(("oldFilePath", f.clone()));
    }
    if let Some(a) = &e.actor {
        ext.push(("spid", a.pid.to_string()));
        if let Some(u) = &a.user {
            ext.push(("suser", u.clone()));
        }
        if let Some(x) = &a.exe {
            ext.push(("sproc", x.clone()));
        }
    }
    ext.push(("msg", e.reason.clone()));
    ext.push(("cs1Label", "changed".to_string()));
    ext.push(("cs1", e.changed.join(",")));
    ext.push(("cs2Label", "source".to_string()));
    ext.push(("cs2", e.source.as_str().to_string()));
    if let Some(p) = &e.package {
        ext.push(("cs3Label", "package".to_string()));
        ext.push(("cs3", format!("{} {} {}", p.name, p.version, p.arch)));
    }
    let ext: Vec<String> = ext
        .into_iter()
        .map(|(k, v)| format!("{k}={}", cef_value(&v)))
        .collect();
    format!(
        "CEF:0|fimd|fimd|{}|fim:{}|{}|{sev}|{}",
        cef_header(env!("CARGO_PKG_VERSION")),
        cef_header(kind),
        cef_header(&name),
        ext.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Source;

    fn state(sha: &str, mode: &str) -> StateJson {
        StateJson {
            kind: "file".into(),
            size: 10,
            mode: mode.into(),
            uid: 0,
            gid: 0,
            mtime: "2026-12-04T08:00:00Z".into(),
            ctime: "2026-12-04T08:00:00Z".into(),
            inode: 5,
            nlink: 1,
            sha256: Some(sha.into()),
            link_target: None,
            link_target_hex: None,
            caps: None,
            acl: None,
            selinux: None,
            xattrs: None,
            flags: None,
        }
    }

    fn modified() -> Event {
        Event {
            id: Some(42),
            uid: Some("inst:42".into()),
            time: "2026-12-04T08:27:03.123Z".into(),
            host: "web-1".into(),
            changed: vec!["sha256".into(), "size".into()],
            old: Some(state("aa", "0644")),
            new: Some(state("bb", "0600")),
            severity: Severity::High,
            reason: "changed outside any package transaction".into(),
            ..Event::new(Source::Inotify, EventKind::Modified, "/etc/ssh/sshd_config")
        }
    }

    #[test]
    fn ocsf_file_system_activity() {
        let v = ocsf(&modified());
        assert_eq!(v["class_uid"], 1001);
        assert_eq!(v["activity_id"], 3);
        assert_eq!(v["type_uid"], 100103);
        assert_eq!(v["severity_id"], 4);
        assert_eq!(v["time"], 1_796_372_823_123_i64); // 2026-12-04T08:27:03.123Z
        assert_eq!(v["metadata"]["uid"], "inst:42");
        assert_eq!(v["file"]["hashes"][0]["value"], "aa");
        assert_eq!(v["file_result"]["hashes"][0]["value"], "bb");
        assert_eq!(v["device"]["hostname"], "web-1");
        assert_eq!(v["actor"]["app_name"], "fimd");
        let mut attrs = modified();
        attrs.changed = vec!["mode".into()];
        assert_eq!(ocsf(&attrs)["activity_id"], 7);
        attrs.changed = vec!["mtime".into()];
        assert_eq!(ocsf(&attrs)["activity_id"], 6);
    }

    #[test]
    fn ecs_fim_fields() {
        let v = ecs(&modified());
        assert_eq!(v["event"]["category"][0], "file");
        assert_eq!(v["event"]["type"][0], "change");
        assert_eq!(v["event"]["action"], "updated");
        assert_eq!(v["file"]["hash"]["sha256"], "bb");
        assert_eq!(v["file"]["mode"], "0600");
        assert_eq!(v["file"]["uid"], "0");
        assert_eq!(v["related"]["hash"], json!(["aa", "bb"]));
        assert_eq!(v["host"]["name"], "web-1");
        assert_eq!(v["event"]["id"], "inst:42");
    }

    #[test]
    fn cef_escapes_header_and_values() {
        let mut e = modified();
        e.path = "/srv/a=b\\c|d\nx".into();
        let line = cef(&e);
        assert!(line.starts_with("CEF:0|fimd|fimd|"), "{line}");
        assert!(line.contains("|fim:modified|File modified|8|"), "{line}");
        assert!(line.contains("filePath=/srv/a\\=b\\\\c|d\\nx "), "{line}");
        assert!(line.contains("externalId=inst:42"), "{line}");
        assert!(
            line.contains("oldFileHash=aa") && line.contains("fileHash=bb"),
            "{line}"
        );
        assert!(!line.contains('\n'));
        assert_eq!(cef_header("a|b\\c"), "a\\|b\\\\c");
    }
}
