//! The systemd notify protocol (`Type=notify`): READY, STATUS, STOPPING, EXTEND_TIMEOUT_USEC and WATCHDOG
//! messages sent as unix datagrams to `$NOTIFY_SOCKET`.
//!
//! Small enough to own: one datagram per message, abstract-namespace sockets (`@...`) included. Without
//! `NOTIFY_SOCKET` (not under systemd) every call is a no-op, so the daemon needs no special mode.
//! Not the `sd-notify` crate: these five messages and the watchdog rule are a few dozen tested lines of std,
//! fewer than the dependency would add to review.
//!
//! `EXTEND_TIMEOUT_USEC=<µs>` (systemd 236 and later, sd_notify(3)): the service must send another message
//! within that time, and the stop times out only then, once the runtime is past `TimeoutStopSec=`. berth sends
//! it every few seconds while a drain or a failure releases, so a drain whose teardown outlasts the unit's
//! `TimeoutStopSec=` (Kafka's controlled shutdown, a throttled detach) is not killed half-way.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

/// Where notifications go, if anywhere.
#[derive(Debug, Clone)]
pub struct Notifier {
    socket: Option<PathBuf>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From the environment: `NOTIFY_SOCKET`, and `WATCHDOG_USEC` (honoured only when `WATCHDOG_PID` is unset or
    /// names this process, as sd_watchdog_enabled does).
    pub fn from_env() -> Self {
        let socket = std::env::var_os("NOTIFY_SOCKET").map(PathBuf::from);
        let pid_matches = std::env::var("WATCHDOG_PID")
            .map(|pid| pid.parse::<u32>().ok() == Some(std::process::id()))
            .unwrap_or(true);
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|usec| usec.parse::<u64>().ok())
            .filter(|usec| *usec > 0 && pid_matches)
            .map(Duration::from_micros);
        Self { socket, watchdog }
    }

    /// A notifier sending to `socket` (tests).
    pub fn to_socket(socket: impl Into<PathBuf>, watchdog: Option<Duration>) -> Self {
        Self {
            socket: Some(socket.into()),
            watchdog,
        }
    }

    /// A notifier that sends nothing.
    pub fn disabled() -> Self {
        Self {
            socket: None,
            watchdog: None,
        }
    }

    /// How often to ping the watchdog: half its timeout, as systemd recommends.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|timeout| timeout / 2)
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    /// `STATUS=<status>`.
    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={status}"));
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// `EXTEND_TIMEOUT_USEC=<extension>`: systemd waits at least that much longer for the next message.
    pub fn extend_timeout(&self, extension: Duration) {
        self.send(&format!("EXTEND_TIMEOUT_USEC={}", extension.as_micros()));
    }

    /// `WATCHDOG=1`.
    pub fn watchdog(&self) {
        if self.watchdog.is_some() {
            self.send("WATCHDOG=1");
        }
    }

    fn send(&self, message: &str) {
        let Some(socket) = &self.socket else { return };
        if let Err(error) = send_datagram(socket, message) {
            tracing::warn!(socket = %socket.display(), %error, "systemd notification failed");
        }
    }
}

fn send_datagram(socket: &std::path::Path, message: &str) -> io::Result<()> {
    let datagram = UnixDatagram::unbound()?;
    // Never block the state loop on a full socket queue: a lost STATUS is better than a stalled daemon.
    datagram.set_nonblocking(true)?;
    let text = socket.to_string_lossy();
    if let Some(name) = text.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        datagram.send_to_addr(message.as_bytes(), &address)?;
    } else {
        datagram.send_to(message.as_bytes(), socket)?;
    }
    Ok(())
}
