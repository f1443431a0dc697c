//! The teardown: a drain's or a failure's release, run in the order the machine gave (Kafka stopped first, the
//! claim released last), each action within its own limit and retried with [`retry`](super::retry)'s backoff
//! while it fails retryably (a throttled detach must not leave the volume attached when the drain moves on). A
//! failed action is logged and the next one runs; at the end the machine hears [`Input::TeardownDone`].

use berth_core::ports::Deadline;
use berth_core::{ErrorKind, Input, State, StepError, Teardown};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::deliveries::known_identity;
use super::retry::{retrying, Bound};
use super::{Adapters, DaemonOptions, STEP_OVERRUN_GRACE};

/// Runs `actions` in order as a task, then feeds [`Input::TeardownDone`].
pub(super) fn spawn(
    actions: Vec<Teardown>,
    state: State,
    options: &DaemonOptions,
    adapters: &Adapters,
    inputs: mpsc::Sender<Input>,
) -> JoinHandle<()> {
    let adapters = adapters.clone();
    let (stop_timeout, each) = (options.stop_timeout, options.teardown_timeout);
    tokio::spawn(async move {
        for action in actions {
            let name = action.name();
            let limit = if matches!(action, Teardown::StopKafka) {
                stop_timeout
            } else {
                each
            };
            let outcome = tokio::time::timeout(
                limit + STEP_OVERRUN_GRACE,
                undo_until(action, state, Deadline::after(limit), &adapters),
            )
            .await;
            match outcome {
                Ok(Ok(done)) => info!(berth_state = state.name(), berth_teardown = name, "{done}"),
                Ok(Err(error)) => {
                    error!(berth_state = state.name(), berth_teardown = name, error = %error, "teardown step {name} failed, continuing: {error}")
                }
                Err(_) => error!(
                    berth_state = state.name(),
                    berth_teardown = name,
                    "teardown step timed out; continuing"
                ),
            }
        }
        let _ = inputs.send(Input::TeardownDone).await;
    })
}

/// Runs one teardown action, again while it fails retryably and its deadline allows.
async fn undo_until(
    action: Teardown,
    state: State,
    deadline: Deadline,
    adapters: &Adapters,
) -> Result<String, StepError> {
    let name = action.name();
    retrying(
        name,
        Bound::Until(deadline),
        || undo(action.clone(), deadline, adapters),
        |error, attempt, pause| {
            warn!(berth_state = state.name(), berth_teardown = name, error = %error, attempt, "teardown step {name} failed, retrying in {pause:?}: {error}");
        },
    )
    .await
}

/// Runs one teardown action; what it did, for the log.
async fn undo(
    action: Teardown,
    deadline: Deadline,
    adapters: &Adapters,
) -> Result<String, StepError> {
    let done = |what: &str| Ok(format!("teardown step done: {what}"));
    match action {
        Teardown::StopKafka => {
            adapters.broker.stop(deadline).await?;
            done("Kafka stopped")
        }
        Teardown::Unmount(plan) => {
            adapters.storage.unmount(&plan).await?;
            done("unmounted")
        }
        Teardown::RemoveRoutes(plan) => {
            adapters.network.teardown(&plan).await?;
            done("routes removed")
        }
        Teardown::DetachVolume { identity, volume } => {
            adapters
                .attachments
                .detach_volume(&identity, &volume)
                .await?;
            done("volume detached")
        }
        Teardown::DetachEni { identity, eni } => {
            adapters.attachments.detach_eni(&identity, &eni).await?;
            done("ENI detached")
        }
        Teardown::ReleaseClaim => {
            adapters.coordination.release().await?;
            done("claim released")
        }
        Teardown::CompleteTermination { identity } => {
            let delivery = adapters.signals.complete_termination(&identity).await?;
            Ok(format!("terminating lifecycle action: {delivery:?}"))
        }
        Teardown::ReportFailure { identity } => {
            let Some(identity) = known_identity(adapters.metadata.as_ref(), identity).await else {
                return Err(StepError::new(
                    ErrorKind::Retryable,
                    "failure not reported to Auto Scaling: identity unknown",
                ));
            };
            let report = adapters.signals.report_failure(&identity).await?;
            Ok(format!("failure reported to Auto Scaling: {report:?}"))
        }
    }
}
