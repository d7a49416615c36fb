//! The systemd notification protocol (sd-notify 0.5): READY, RELOADING (with MONOTONIC_USEC),
//! STOPPING, STATUS, WATCHDOG and EXTEND_TIMEOUT_USEC. Without `NOTIFY_SOCKET` every call is
//! a no-op. A failed send is logged at debug level only: the service works without systemd.

use sd_notify::NotifyState;
use std::time::Duration;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "sd_notify failed");
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
