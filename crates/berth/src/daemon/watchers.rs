//! The watchers: tasks that turn the outside's news into inputs for the loop, for as long as the daemon runs
//! (the ZooKeeper session's events, and the instance metadata's termination notice).

use std::sync::Arc;
use std::time::Duration;

use berth_core::ports::{Metadata, SessionEvent};
use berth_core::{Coordination, Input};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

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

/// Asks IMDS every `every` whether this instance is being terminated; the first notice becomes a drain.
pub(super) fn poll_termination_notice(
    metadata: Arc<dyn Metadata>,
    every: Duration,
    inputs: mpsc::Sender<Input>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            match metadata.termination_notice().await {
                Ok(Some(reason)) => {
                    info!(berth_drain_reason = %reason, "instance metadata announces termination");
                    let _ = inputs.send(Input::Drain(reason)).await;
                    return;
                }
                Ok(None) => {}
                Err(error) => debug!(error = %error, "termination notice poll failed"),
            }
        }
    })
}
