//! The systemd notification protocol (sd-notify 0.5): READY, RELOADING (with MONOTONIC_USEC),
//! STOPPING, STATUS, WATCHDOG and EXTEND_TIMEOUT_USEC. Without `NOTIFY_SOCKET` every call is
//! a no-op. A failed send is logged at debug level only: the service works without systemd.

use sd_notify::NotifyState;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// A message for the sender thread: the send itself, and where to say it was done.
type Job = (Box<dyn FnOnce() + Send>, SyncSender<()>);

/// How long a caller waits for its message to be sent. A datagram send blocks while the
/// receiver's queue is full (10 datagrams by default): a stalled receiver must never stall
/// the daemon's loop or its exit (seen: SIGTERM not obeyed after a burst of STATUS lines).
const SEND_WAIT: Duration = Duration::from_millis(500);

/// Messages are sent in order by one thread; callers wait at most [`SEND_WAIT`]. When the
/// thread is stuck and its queue full, further messages are dropped (logged at debug).
fn send(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let text: Vec<String> = states.iter().map(ToString::to_string).collect();
    let job = move || {
        let owned: Vec<NotifyState> = text.iter().map(|t| NotifyState::Custom(t)).collect();
        if let Err(e) = sd_notify::notify(&owned) {
            tracing::debug!(error = %e, "sd_notify failed");
        }
    };
    let (done_tx, done_rx) = sync_channel(1);
    let queued = sender()
        .lock()
        .map(|tx| tx.try_send((Box::new(job), done_tx)));
    match queued {
        Ok(Ok(())) => {
            if done_rx.recv_timeout(SEND_WAIT).is_err() {
                tracing::debug!("sd_notify: the receiver is not reading; not waiting");
            }
        }
        _ => tracing::debug!("sd_notify: sender queue full; message dropped"),
    }
}

fn sender() -> &'static Mutex<SyncSender<Job>> {
    static SENDER: OnceLock<Mutex<SyncSender<Job>>> = OnceLock::new();
    SENDER.get_or_init(|| {
        let (tx, rx) = sync_channel::<Job>(64);
        let spawned = std::thread::Builder::new()
            .name("fimd-sd-notify".into())
            .spawn(move || run_sender(rx));
        if let Err(e) = spawned {
            tracing::debug!(error = %e, "sd_notify: cannot start the sender thread");
        }
        Mutex::new(tx)
    })
}

fn run_sender(rx: Receiver<Job>) {
    for (job, done) in rx {
        job();
        let _ = done.try_send(());
    }
}

/// `READY=1` with a status line.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `RELOADING=1` + `MONOTONIC_USEC` (systemd's `Type=notify-reload` protocol).
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// `STOPPING=1`.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// `STATUS=...`.
pub fn status(text: &str) {
    send(&[NotifyState::Status(text)]);
}

/// `WATCHDOG=1`.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// `EXTEND_TIMEOUT_USEC=...` with a status line: "still starting, give me `by` more".
pub fn extend_timeout(by: Duration, status: &str) {
    let usec = u32::try_from(by.as_micros()).unwrap_or(u32::MAX);
    send(&[
        NotifyState::ExtendTimeoutUsec(usec),
        NotifyState::Status(status),
    ]);
}

/// The watchdog ping interval: half of `WATCHDOG_USEC`, when systemd asked for pings.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
        .filter(|d| !d.is_zero())
        .map(|d| d / 2)
}
