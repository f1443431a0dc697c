//! Logging: structured entries to journald when it is there, plain lines to stderr otherwise.
//!
//! Operators read berth with `journalctl -u berth`; fields such as `BERTH_STATE`, `BERTH_BROKER_ID`,
//! `BERTH_ENI_ID` and `BERTH_VOLUME_ID` let them filter (`journalctl -u berth BERTH_STATE=failed`). tracing
//! fields are named in lower case (`berth_state`) and journald upper-cases them; no prefix is added.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Where log entries go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    /// The systemd journal (native protocol).
    Journald,
    /// Standard error, human-readable.
    Stderr,
}

/// Installs the global subscriber. `RUST_LOG` (or `BERTH_LOG`) sets the filter; default `info`.
/// journald is used when its socket exists and `JOURNAL_STREAM` or `INVOCATION_ID` says systemd started us.
pub fn init() -> LogTarget {
    let filter = std::env::var("BERTH_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let under_systemd =
        std::env::var_os("JOURNAL_STREAM").is_some() || std::env::var_os("INVOCATION_ID").is_some();
    if under_systemd {
        if let Ok(journald) = tracing_journald::layer() {
            let journald = journald
                .with_field_prefix(None)
                .with_syslog_identifier("berth".into());
            if tracing_subscriber::registry()
                .with(filter)
                .with(journald)
                .try_init()
                .is_ok()
            {
                return LogTarget::Journald;
            }
            return LogTarget::Stderr;
        }
    }
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .try_init();
    LogTarget::Stderr
}
