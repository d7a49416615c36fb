//! tracing setup: the journal when systemd started us (JOURNAL_STREAM names stderr, or
//! INVOCATION_ID is set) and the journal socket answers; otherwise readable text on stderr.
//! Also the one journal record per change. Never logs content, a diff or a credential.

use std::os::unix::fs::MetadataExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::event::{Event, Severity};

/// The fixed journal MESSAGE_ID of "file changed" records (a random 128-bit id, as
/// `systemd-id128 new` makes, so `journalctl MESSAGE_ID=...` finds every change).
pub const MESSAGE_ID_FILE_CHANGED: &str = "6d1ac6e2b0c34f0d9c2a4c7e8f31b5a2";

/// Where log records go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Journal,
    Stderr,
}

/// True when systemd connected our stderr to the journal (or runs us as a unit).
pub fn started_by_systemd() -> bool {
    if std::env::var_os("INVOCATION_ID").is_some() {
        return true;
    }
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let stream = stream.to_string_lossy().into_owned();
    let Some((dev, ino)) = stream.split_once(':') else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse::<u64>().ok() == Some(meta.dev()) && ino.parse::<u64>().ok() == Some(meta.ino())
}

/// Install the global subscriber. `level` is the config's; `RUST_LOG` wins when set.
/// `events_on_stderr`: also print change records on stderr (off for `check`, which prints
/// changes on stdout itself).
pub fn init(level: &str, events_on_stderr: bool) -> Output {
    // notify logs its own recoverable internals (a watch already gone) through `log`: only
    // its errors are worth a line; ours say what the user can do.
    // Change records pass whatever the level: a low-severity change is emitted at debug.
    let filter = || {
        EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            EnvFilter::new(format!("{level},notify=error,{EVENT_TARGET}=trace"))
        })
    };
    let is_event = |m: &tracing::Metadata<'_>| m.target() == EVENT_TARGET;
    if started_by_systemd() {
        // Two journald layers: change records with their severity's priorities, the rest
        // with the usual ones.
        if let (Ok(logs), Ok(events)) = (tracing_journald::layer(), tracing_journald::layer()) {
            let logs = logs
                .with_syslog_identifier("fimd".to_string())
                .with_field_prefix(None)
                .with_filter(filter())
                .with_filter(tracing_subscriber::filter::filter_fn(move |m| !is_event(m)));
            let events = events
                .with_syslog_identifier("fimd".to_string())
                .with_field_prefix(None)
                .with_priority_mappings(event_priorities())
                .with_filter(filter())
                .with_filter(tracing_subscriber::filter::filter_fn(is_event));
            if tracing_subscriber::registry()
                .with(logs)
                .with(events)
                .try_init()
                .is_ok()
            {
                return Output::Journal;
            }
        }
    }
    let events_filter = tracing_subscriber::filter::filter_fn(move |m| {
        events_on_stderr || m.target() != EVENT_TARGET
    });
    let fmt = tracing_subscriber::fmt::layer()
        .fmt_fields(QuotedFields)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .with_filter(filter())
        .with_filter(events_filter);
    let _ = tracing_subscriber::registry().with(fmt).try_init();
    Output::Stderr
}

/// The tracing target of change records.
pub const EVENT_TARGET: &str = "fimd::event";

/// One journal record per change. Its journal PRIORITY follows the severity (critical 2,
/// high 3, medium 4, low 5, info 6): each severity is emitted at its own tracing level
/// ([`severity_level`]) and the events' journald layer maps those levels to these
/// priorities (see [`init`]).
pub fn record_event(e: &Event) {
    let changed = e.changed.join(",");
    let id = e.id.unwrap_or(0);
    let path = crate::event::escape_bytes(e.path_buf().as_os_str().as_encoded_bytes());
    let from = e
        .from_buf()
        .map(|f| crate::event::escape_bytes(f.as_os_str().as_encoded_bytes()))
        .unwrap_or_default();
    let actor = e.actor.as_ref();
    let package = e.package.as_ref();
    let text = |v: Option<String>| crate::event::escape_bytes(v.unwrap_or_default().as_bytes());
    let actor_pid = text(actor.map(|a| a.pid.to_string()));
    let actor_comm = text(actor.and_then(|a| a.comm.clone()));
    let actor_uid = text(actor.and_then(|a| a.uid).map(|u| u.to_string()));
    let actor_auid = text(actor.and_then(|a| a.auid).map(|u| u.to_string()));
    let actor_unit = text(actor.and_then(|a| a.unit.clone()));
    let pkg = text(package.map(|p| format!("{} {}", p.name, p.version)));
    let pkg_verified = text(package.map(|p| p.verified.to_string()));
    macro_rules! emit {
        ($lvl:ident) => {
            tracing::$lvl!(
                target: "fimd::event",
                MESSAGE_ID = MESSAGE_ID_FILE_CHANGED,
                FIM_EVENT = e.event.as_str(),
                FIM_PATH = %path,
                FIM_FROM = %from,
                FIM_CHANGED = %changed,
                FIM_SENSITIVE = e.sensitive,
                FIM_EVENT_ID = id,
                FIM_SOURCE = e.source.as_str(),
                FIM_SEVERITY = e.severity.as_str(),
                FIM_REASON = %e.reason,
                FIM_ACTOR_PID = %actor_pid,
                FIM_ACTOR_COMM = %actor_comm,
                FIM_ACTOR_UID = %actor_uid,
                FIM_ACTOR_AUID = %actor_auid,
                FIM_ACTOR_UNIT = %actor_unit,
                FIM_PACKAGE = %pkg,
                FIM_PACKAGE_VERIFIED = %pkg_verified,
                "file {}: {}{} [{}: {}]",
                e.event.as_str(),
                quote_if_needed(&path),
                if changed.is_empty() { String::new() } else { format!(" ({changed})") },
                e.severity.as_str(),
                e.reason
            )
        };
    }
    match severity_level(e.severity) {
        tracing::Level::ERROR => emit!(error),
        tracing::Level::WARN => emit!(warn),
        tracing::Level::INFO => emit!(info),
        tracing::Level::DEBUG => emit!(debug),
        _ => emit!(trace),
    }
}

/// The tracing level a change record of this severity is emitted at.
pub fn severity_level(s: Severity) -> tracing::Level {
    match s {
        Severity::Critical => tracing::Level::ERROR,
        Severity::High => tracing::Level::WARN,
        Severity::Medium => tracing::Level::INFO,
        Severity::Low => tracing::Level::DEBUG,
        Severity::Info => tracing::Level::TRACE,
    }
}

/// The journald priorities of change records, level by level (see [`severity_level`]).
fn event_priorities() -> tracing_journald::PriorityMappings {
    use tracing_journald::Priority;
    tracing_journald::PriorityMappings {
        error: Priority::Critical,
        warn: Priority::Error,
        info: Priority::Warning,
        debug: Priority::Notice,
        trace: Priority::Informational,
    }
}

/// `text` as it is when it is one plain token, else quoted with Rust's escapes: in the text
/// log a value (a file name chosen by whoever can write a watched directory) can then never
/// look like more `KEY=value` fields (#16 item 6).
pub fn quote_if_needed(text: &str) -> std::borrow::Cow<'_, str> {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '=' | '\\'));
    if plain {
        std::borrow::Cow::Borrowed(text)
    } else {
        std::borrow::Cow::Owned(format!("{text:?}"))
    }
}

/// The text log's field formatter: `KEY=value`, the value quoted unless it is one plain
/// token (tracing's default writes `%` values bare, so a name with spaces forged fields).
struct QuotedFields;

impl<'w> tracing_subscriber::field::MakeVisitor<tracing_subscriber::fmt::format::Writer<'w>>
    for QuotedFields
{
    type Visitor = QuotedVisitor<'w>;

    fn make_visitor(
        &self,
        writer: tracing_subscriber::fmt::format::Writer<'w>,
    ) -> QuotedVisitor<'w> {
        QuotedVisitor {
            writer,
            first: true,
            result: Ok(()),
        }
    }
}

struct QuotedVisitor<'w> {
    writer: tracing_subscriber::fmt::format::Writer<'w>,
    first: bool,
    result: std::fmt::Result,
}

impl QuotedVisitor<'_> {
    fn write(&mut self, field: &tracing::field::Field, text: &str) {
        if self.result.is_err() {
            return;
        }
        let sep = if std::mem::take(&mut self.first) {
            ""
        } else {
            " "
        };
        self.result = if field.name() == "message" {
            // fimd's own sentence; the values it holds are quoted where they are made.
            write!(self.writer, "{sep}{text}")
        } else {
            write!(
                self.writer,
                "{sep}{}={}",
                field.name(),
                quote_if_needed(text)
            )
        };
    }
}

impl tracing::field::Visit for QuotedVisitor<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.write(field, value);
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.write(field, &format!("{value:?}"));
    }
}

impl tracing_subscriber::field::VisitOutput<std::fmt::Result> for QuotedVisitor<'_> {
    fn finish(self) -> std::fmt::Result {
        self.result
    }
}

impl tracing_subscriber::field::VisitFmt for QuotedVisitor<'_> {
    fn writer(&mut self) -> &mut dyn std::fmt::Write {
        &mut self.writer
    }
}

#[cfg(test)]
mod tests {
    use super::quote_if_needed;

    #[test]
    fn values_that_could_forge_fields_are_quoted() {
        assert_eq!(
            quote_if_needed("/etc/ssh/sshd_config"),
            "/etc/ssh/sshd_config"
        );
        assert_eq!(
            quote_if_needed("/x FIM_EVENT=removed FIM_SENSITIVE=true.conf"),
            "\"/x FIM_EVENT=removed FIM_SENSITIVE=true.conf\""
        );
        assert_eq!(quote_if_needed("a\"b"), "\"a\\\"b\"");
        assert_eq!(quote_if_needed(""), "\"\"");
        assert_eq!(quote_if_needed("x=y"), "\"x=y\"");
    }
}
