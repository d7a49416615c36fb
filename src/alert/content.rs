//! What an alert says, independent of any vendor's markup: the severity rule, titles, the
//! per-event facts, digest counts ("and 9,990 more changes"), the markup escapers (Slack mrkdwn,
//! Teams markdown), length cuts and fitting a rendered body under a size limit.
//!
//! Owns the rule "a sensitive file's diff is never sent": [`prepare`] strips it whatever the
//! event carries. Never renders file content other than a non-sensitive event's diff.

use std::os::unix::ffi::OsStrExt;

use super::sink::Batch;
use super::AlertError;
use crate::event::{escape_bytes, Event, Severity};

/// How urgent one change is: the severity the explain stage gave it (DESIGN.md "Severity").
pub fn severity(event: &Event) -> Severity {
    event.severity
}

/// "High" in digests and ticket urgency: high or critical.
pub fn is_high(event: &Event) -> bool {
    event.severity >= Severity::High
}

/// The event as a sink may send it: the diff only when `include_diff` is on, the event is not
/// sensitive and the sink takes diffs, cut to `diff_chars`.
pub fn prepare(mut event: Event, include_diff: bool, diff_chars: usize) -> Event {
    event.diff = match event.diff.take() {
        // An empty diff is dropped too (Jira's ADF rejects an empty text node).
        Some(d) if include_diff && !event.sensitive && diff_chars > 0 && !d.is_empty() => {
            Some(cut(&d, diff_chars, "\n… (diff truncated)"))
        }
        _ => None,
    };
    event
}

/// At most `max` characters of `s`; when cut, the last characters are replaced by `marker`.
pub fn cut(s: &str, max: usize, marker: &str) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let keep = max.saturating_sub(marker.chars().count());
    let end = s
        .char_indices()
        .nth(keep)
        .map(|(i, _)| i)
        .unwrap_or(s.len());
    format!("{}{marker}", &s[..end])
}

/// `9990` → `9,990`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The path on one line: invalid UTF-8 as `\xNN`, control characters escaped.
pub fn shown_path(event: &Event) -> String {
    escape_bytes(event.path_buf().as_os_str().as_bytes())
}

/// A key naming this batch across retries: its oldest event on this host (a retry covers at
/// least the rows it covered before, and ids only grow). 12 hex digits, usable as a Jira
/// label. `None` for a test alert.
pub fn batch_key(batch: &Batch) -> Option<String> {
    use sha2::{Digest, Sha256};
    let first = batch
        .events
        .first()
        .and_then(|e| e.id)
        .filter(|_| !batch.test)?;
    let digest = Sha256::digest(format!("{}\n{first}", batch.host).as_bytes());
    Some(hex::encode(digest)[..12].to_string())
}

/// One line naming the batch: the change itself, or the digest count.
pub fn title(batch: &Batch) -> String {
    if batch.test {
        return format!("[fimd] {}: test alert", batch.host);
    }
    match (batch.total, batch.events.first()) {
        (1, Some(ev)) => format!(
            "[fimd] {}: {} {}",
            batch.host,
            shown_path(ev),
            ev.event.as_str()
        ),
        (n, _) => {
            let high = if batch.high > 0 {
                format!(" ({} high)", thousands(batch.high))
            } else {
                String::new()
            };
            format!("[fimd] {}: {} file changes{high}", batch.host, thousands(n))
        }
    }
}

/// "and 9,990 more changes (12 high)", or `None` when every event is shown.
pub fn omitted_line(batch: &Batch) -> Option<String> {
    let n = batch.omitted();
    if n == 0 {
        return None;
    }
    let shown_high = batch.events.iter().filter(|e| is_high(e)).count();
    let high = batch.high.saturating_sub(shown_high);
    let word = if n == 1 { "change" } else { "changes" };
    Some(match high {
        0 => format!("and {} more {word}", thousands(n)),
        h => format!("and {} more {word} ({} high)", thousands(n), thousands(h)),
    })
}

/// The facts of one event as (label, value) pairs, raw (escape per target).
pub fn facts(event: &Event) -> Vec<(&'static str, String)> {
    let sha = |s: &Option<crate::event::StateJson>| {
        s.as_ref()
            .and_then(|s| s.sha256.clone())
            .unwrap_or_else(|| "-".to_string())
    };
    let mut v = vec![
        ("Path", shown_path(event)),
        ("Change", event.event.as_str().to_string()),
        ("Severity", severity(event).as_str().to_string()),
        ("Reason", event.reason.clone()),
        ("Changed", event.changed.join(", ")),
        ("Old sha256", sha(&event.old)),
        ("New sha256", sha(&event.new)),
        ("Time", event.time.clone()),
        ("Source", event.source.as_str().to_string()),
    ];
    if let Some(id) = event.id {
        v.push(("Event", id.to_string()));
    }
    if let Some(from) = event.from_buf() {
        v.push(("From", escape_bytes(from.as_os_str().as_bytes())));
    }
    if let Some(p) = &event.package {
        v.push(("Package", package_line(p)));
    }
    if let Some(a) = &event.actor {
        v.push(("By", actor_line(a)));
    }
    if event.sensitive {
        v.push(("Sensitive", "yes (content never sent)".to_string()));
    }
    v
}

/// `openssh-server 1:9.2p1-2+deb12u2 -> 1:9.2p1-2+deb12u3 (dpkg upgrade, verified)`.
pub fn package_line(p: &crate::event::PackageInfo) -> String {
    let versions = match &p.old_version {
        Some(old) if old != &p.version => format!("{old} -> {}", p.version),
        _ => p.version.clone(),
    };
    let action = p
        .action
        .as_deref()
        .unwrap_or("changed outside the package manager");
    let verified = if p.verified {
        "verified"
    } else {
        "NOT verified"
    };
    format!("{} {versions} ({} {action}, {verified})", p.name, p.manager)
}

/// `vim[4711] uid=root (login alice)`.
pub fn actor_line(a: &crate::event::Actor) -> String {
    let mut s = format!("{}[{}]", a.comm.as_deref().unwrap_or("?"), a.pid);
    match (&a.user, a.uid) {
        (Some(u), _) => s.push_str(&format!(" uid={u}")),
        (None, Some(uid)) => s.push_str(&format!(" uid={uid}")),
        _ => {}
    }
    if let Some(login) = &a.login_user {
        s.push_str(&format!(" (login {login})"));
    }
    if let Some(unit) = &a.unit {
        s.push_str(&format!(" unit={unit}"));
    }
    escape_bytes(s.as_bytes())
}

/// The event as plain text lines (ServiceNow, Jira DC, Jira ADF code blocks).
pub fn plain_text(event: &Event) -> String {
    let mut out = format!(
        "[{}] {} {}",
        severity(event).as_str().to_uppercase(),
        event.event.as_str(),
        shown_path(event)
    );
    for (label, value) in facts(event).into_iter().skip(3) {
        out.push_str(&format!("\n{label}: {value}"));
    }
    out
}

/// Slack mrkdwn: `&`, `<`, `>` become entities (so a file named `<!channel>` cannot ping and
/// `<http://x|y>` cannot spoof a link); a backtick becomes `ˋ` (U+02CB) so a name cannot close
/// a code span.
pub fn slack_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '`' => out.push('ˋ'),
            c => out.push(c),
        }
    }
    out
}

/// Teams (Adaptive Card) markdown: backslash-escape every character that starts markup.
pub fn teams_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(
            c,
            '\\' | '*'
                | '_'
                | '`'
                | '['
                | ']'
                | '('
                | ')'
                | '#'
                | '~'
                | '<'
                | '>'
                | '-'
                | '+'
                | '!'
                | '|'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Render `batch` and, if the body exceeds `max_bytes`, render again without diffs, then with
/// fewer events shown (the dropped ones join the "more changes" count). Never drops an event
/// from `total`; only digest sinks may use this.
pub fn fit<F>(batch: &Batch, max_bytes: usize, render: F) -> Result<Vec<u8>, AlertError>
where
    F: Fn(&Batch) -> Result<Vec<u8>, AlertError>,
{
    let body = render(batch)?;
    if body.len() <= max_bytes {
        return Ok(body);
    }
    let mut smaller = batch.clone();
    for e in &mut smaller.events {
        e.diff = None;
    }
    loop {
        let body = render(&smaller)?;
        if body.len() <= max_bytes || smaller.events.len() <= 1 {
            return Ok(body);
        }
        let keep = smaller.events.len() / 2;
        smaller.events.truncate(keep.max(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventKind, Source};

    pub(crate) fn ev(path: &str, sensitive: bool) -> Event {
        Event {
            id: Some(1),
            time: "2026-11-30T08:00:00Z".into(),
            host: "web1".into(),
            changed: vec!["sha256".into()],
            sensitive,
            diff: Some("-a\n+b".into()),
            ..Event::new(Source::Inotify, EventKind::Modified, path)
        }
    }

    #[test]
    fn diffs_only_when_allowed() {
        assert_eq!(
            prepare(ev("/etc/a", false), true, 100).diff.as_deref(),
            Some("-a\n+b")
        );
        assert_eq!(prepare(ev("/etc/a", false), false, 100).diff, None);
        assert_eq!(prepare(ev("/etc/a", true), true, 100).diff, None);
        assert_eq!(prepare(ev("/etc/a", false), true, 0).diff, None);
        let mut empty = ev("/etc/a", false);
        empty.diff = Some(String::new());
        assert_eq!(prepare(empty, true, 100).diff, None);
        let mut long = ev("/etc/a", false);
        long.diff = Some("x".repeat(500));
        let d = prepare(long, true, 100).diff.unwrap_or_default();
        assert_eq!(d.chars().count(), 100);
        assert!(d.ends_with("(diff truncated)"));
    }

    #[test]
    fn escapes_and_numbers() {
        assert_eq!(
            slack_escape("<!channel> & `x`"),
            "&lt;!channel&gt; &amp; ˋxˋ"
        );
        assert_eq!(teams_escape("[a](b)*_"), "\\[a\\]\\(b\\)\\*\\_");
        assert_eq!(thousands(9990), "9,990");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(12), "12");
        assert_eq!(cut("héllo wörld", 5, "…"), "héll…");
    }

    #[test]
    fn digest_lines() {
        let b = Batch {
            host: "web1".into(),
            events: vec![ev("/etc/a", false)],
            total: 10_000,
            high: 3,
            test: false,
        };
        assert_eq!(title(&b), "[fimd] web1: 10,000 file changes (3 high)");
        assert_eq!(
            omitted_line(&b).as_deref(),
            Some("and 9,999 more changes (3 high)")
        );
        let one = Batch {
            total: 1,
            high: 0,
            ..b
        };
        assert_eq!(title(&one), "[fimd] web1: /etc/a modified");
        assert_eq!(omitted_line(&one), None);
    }
}
