//! The watchers: tasks that turn the outside's news into inputs for the loop, for as long as the daemon runs
//! (the ZooKeeper session's events, the instance metadata's termination notices) or until they have it (the
//! instance's identity, read once at the start so the lifecycle actions hear from berth before Claim ends).

use std::sync::Arc;
use std::time::Duration;

use berth_core::ports::{DrainReason, Metadata, SessionEvent};
use berth_core::{Coordination, Input};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::retry::{retrying, Bound};

/// Forwards a session expiry as [`Input::ClaimLost`]; logs the other session events.
pub(super) fn forward_session_events(
    coordination: Arc<dyn Coordination>,
    inputs: mpsc::Sender<Input>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match coordination.next_session_event().await {
                SessionEvent::Expired => {
                    if inputs.send(Input::ClaimLost).await.is_err() {
                        return;
                    }
                }
                SessionEvent::Disconnected => {
                    warn!("ZooKeeper connection lost; the session (and claim) may still be alive")
                }
                SessionEvent::Connected => info!("ZooKeeper connected"),
                SessionEvent::Closed => info!("ZooKeeper session closed"),
            }
        }
    })
}

/// Asks IMDS every `every` whether this instance is being terminated, for as long as the daemon runs: each new
/// notice becomes a drain input (a spot notice can be followed by the lifecycle state, whose terminate action
/// berth must then complete).
pub(super) fn poll_termination_notice(
    metadata: Arc<dyn Metadata>,
    every: Duration,
    inputs: mpsc::Sender<Input>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut announced: Vec<DrainReason> = Vec::new();
        loop {
            interval.tick().await;
            match metadata.termination_notices().await {
                Ok(notices) => {
                    for reason in notices {
                        if announced.contains(&reason) {
                            continue;
                        }
                        info!(berth_drain_reason = %reason, "instance metadata announces termination");
                        announced.push(reason.clone());
                        if inputs.send(Input::Drain(reason)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(error) => debug!(error = %error, "termination notice poll failed"),
            }
        }
    })
}

/// Reads this instance's identity from IMDS as soon as the daemon starts (retried for as long as it takes), so
/// the launch action hears a heartbeat while Claim still waits.
pub(super) fn identify(metadata: Arc<dyn Metadata>, inputs: mpsc::Sender<Input>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let identity = retrying(
            "identity",
            Bound::Unbounded,
            || metadata.identity(),
            |error, attempt, pause| {
                warn!(error = %error, attempt, "instance identity not read yet, retrying in {pause:?}: {error}")
            },
        )
        .await;
        if let Ok(identity) = identity {
            let _ = inputs.send(Input::Identified(identity)).await;
        }
    })
}
