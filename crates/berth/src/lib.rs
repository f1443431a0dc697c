//! The `berth` daemon and its command line, as a library so tests drive the same code the binary runs.
//!
//! [`daemon::run`] is the state loop; [`health`] the HTTP endpoints; [`notify`] the systemd notify protocol;
//! [`logging`] journald or stderr; [`view`] builds the `/state` document (its schema and client are the
//! `berth-state` crate's) and [`metrics`] renders the `/metrics` exposition; [`summary`] says in one line where
//! berth is and what it waits for; [`waiting`] what the running step waits for; [`adapters`] builds the
//! production adapters from the configuration; [`cli`] the command line's shape.

pub mod adapters;
pub mod cli;
pub mod daemon;
pub mod drain;
pub mod health;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod plan;
mod process_metrics;
pub mod summary;
pub mod view;
pub mod waiting;

/// How this binary was built, as `/state` reports it (`build`): `release` for what the package
/// ships (optimised, without crash points); a test build says what differs (the e2e crate turns `failpoints` on).
pub const BUILD: &str = match (cfg!(debug_assertions), cfg!(feature = "failpoints")) {
    (false, false) => "release",
    (false, true) => "release, failpoints",
    (true, false) => "debug",
    (true, true) => "debug, failpoints",
};

/// berth.service's `TimeoutStopSec=` as shipped (systemd/berth.service): how long systemd waits for a stop before
/// berth's `EXTEND_TIMEOUT_USEC` messages, which it sends while a drain or a failure releases, extend it.
pub const UNIT_TIMEOUT_STOP: std::time::Duration = std::time::Duration::from_secs(300);

/// Exit status for a configuration error (sysexits.h EX_CONFIG); berth.service does not restart on it.
pub const EX_CONFIG: u8 = 78;
/// Exit status for a failure to start (adapters could not be built, the health port is taken, ...).
pub const EX_SOFTWARE: u8 = 70;
/// Exit status after Failed (sysexits.h EX_UNAVAILABLE): berth let go of what it held and asked Auto Scaling
/// for a replacement; berth.service does not restart on it (a restart would claim again what it just released).
pub const EX_FAILED: u8 = 69;
/// Exit status of `berth status` when the broker is not healthy, and of `berth drain` when the daemon answered
/// but did not drain.
pub const EX_NOT_DONE: u8 = 1;
/// Exit status of `berth status` and `berth drain` when the daemon cannot be reached (as LSB's `status` uses 3
/// for "not running").
pub const EX_UNREACHABLE: u8 = 3;
