//! tracing setup: the journal when systemd started us (JOURNAL_STREAM names stderr, or
//! INVOCATION_ID is set) and the journal socket answers; otherwise readable text on stderr.
//! Also the one journal record per change. Never logs content, a diff or a credential.

use std::os::unix::fs::MetadataExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::event::{Event, EventKind};

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
    let filter = || {
        EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new(format!("{level},notify=error")))
    };
    if started_by_systemd() {
        if let Ok(layer) = tracing_journald::layer() {
            let layer = layer
                .with_syslog_identifier("fimd".to_string())
                .with_field_prefix(None);
            if tracing_subscriber::registry()
                .with(layer.with_filter(filter()))
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

/// One journal record per change (priority warning; notice for metadata-only changes).
pub fn record_event(e: &Event) {
    let changed = e.changed.join(",");
    let id = e.id.unwrap_or(0);
    let path = crate::event::escape_bytes(e.path_buf().as_os_str().as_encoded_bytes());
    let metadata_only = e.event == EventKind::Modified
        && !e
            .changed
            .iter()
            .any(|c| matches!(c.as_str(), "sha256" | "type" | "link_target" | "size"));
    macro_rules! emit {
        ($lvl:ident) => {
            tracing::$lvl!(
                target: "fimd::event",
                MESSAGE_ID = MESSAGE_ID_FILE_CHANGED,
                FIM_EVENT = e.event.as_str(),
                FIM_PATH = %path,
                FIM_CHANGED = %changed,
                FIM_SENSITIVE = e.sensitive,
                FIM_EVENT_ID = id,
                FIM_SOURCE = e.source.as_str(),
                "file {}: {}{}",
                e.event.as_str(),
                path,
                if changed.is_empty() { String::new() } else { format!(" ({changed})") }
            )
        };
    }
    if metadata_only {
        emit!(info);
    } else {
        emit!(warn);
    }
}
