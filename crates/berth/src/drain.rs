//! `berth drain`: the operator's way to drain a running daemon (SIGTERM no longer does).
//!
//! The daemon names its process id in `/state`; this sends it SIGUSR1 (which the daemon turns into a drain),
//! after checking that the process really is `berth`, then follows `/state` until the daemon is gone. Sending a
//! signal needs the same rights as `systemctl kill -s SIGUSR1 berth`, which does the same without the wait.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use berth_state::StateView;

/// How often `/state` is read while following the drain.
const FOLLOW_EVERY: Duration = Duration::from_millis(200);

/// Why the drain could not be requested.
#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    /// The health endpoint did not answer.
    #[error("cannot reach the daemon at {address}: {source} (is berth.service running?)")]
    Unreachable {
        /// The endpoint.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// `/state` was not a state document.
    #[error("unexpected /state from {address}: {reason}")]
    BadState {
        /// The endpoint.
        address: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The pid `/state` names is not a berth process.
    #[error(
        "process {pid} named by {address}/state is {comm:?}, not berth; refusing to signal it"
    )]
    NotBerth {
        /// The endpoint.
        address: SocketAddr,
        /// The pid.
        pid: u32,
        /// What `/proc/<pid>/comm` says.
        comm: String,
    },
    /// The signal could not be sent.
    #[error("cannot signal berth (pid {pid}): {source}")]
    Signal {
        /// The pid.
        pid: u32,
        /// Why.
        source: nix::Error,
    },
}

/// How a requested drain ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrainOutcome {
    /// The daemon exited; the last state it showed.
    Gone {
        /// `draining` after a drain.
        last_state: String,
    },
    /// Still running when the wait ended.
    StillRunning {
        /// Its state then.
        state: String,
    },
}

impl DrainOutcome {
    /// True when the daemon drained and exited.
    pub fn drained(&self) -> bool {
        matches!(self, DrainOutcome::Gone { last_state } if last_state == "draining")
    }
}

impl fmt::Display for DrainOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DrainOutcome::Gone { last_state } if last_state == "draining" => {
                f.write_str("drained: Kafka stopped, volume unmounted, routes removed, ENI and volume detached, claim released")
            }
            DrainOutcome::Gone { last_state } => {
                write!(f, "the daemon exited in state {last_state}, not after a drain")
            }
            DrainOutcome::StillRunning { state } => {
                write!(f, "still running (state {state}) when the wait ended")
            }
        }
    }
}

/// Asks the daemon at `address` to drain and waits up to `timeout` for it to exit; `progress` sees each `/state`
/// read while it drains (`berth drain` prints what it waits for as that changes).
pub async fn request(
    address: SocketAddr,
    timeout: Duration,
    mut progress: impl FnMut(&StateView),
) -> Result<DrainOutcome, DrainError> {
    let view = state(address).await?;
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", view.pid)).unwrap_or_default();
    if comm.trim() != "berth" {
        return Err(DrainError::NotBerth {
            address,
            pid: view.pid,
            comm: comm.trim().to_owned(),
        });
    }
    kill(Pid::from_raw(view.pid as i32), Signal::SIGUSR1).map_err(|source| DrainError::Signal {
        pid: view.pid,
        source,
    })?;
    let started = Instant::now();
    let mut last_state = view.state;
    while started.elapsed() < timeout {
        tokio::time::sleep(FOLLOW_EVERY).await;
        match state(address).await {
            Ok(view) => {
                progress(&view);
                last_state = view.state;
            }
            Err(DrainError::Unreachable { .. }) => return Ok(DrainOutcome::Gone { last_state }),
            Err(error) => return Err(error),
        }
    }
    Ok(DrainOutcome::StillRunning { state: last_state })
}

async fn state(address: SocketAddr) -> Result<StateView, DrainError> {
    let (_, body) = berth_state::client::get(address, "/state")
        .await
        .map_err(|source| DrainError::Unreachable { address, source })?;
    serde_json::from_str(&body).map_err(|error| DrainError::BadState {
        address,
        reason: error.to_string(),
    })
}
