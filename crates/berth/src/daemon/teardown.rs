//! The teardown: a drain's or a failure's release, run in the order the machine gave (Kafka stopped first, the
//! claim released last), each action within its own limit and retried with [`retry`](super::retry)'s backoff
//! while it fails retryably (a throttled detach must not leave the volume attached when the drain moves on). A
//! failed action stops the release when a later one would let another host take the id
//! ([`berth_core::machine::after_failure`]): the machine hears [`Input::TeardownStopped`] (for the journal and
//! `/state`) and only the calls to Auto Scaling still run; any other failure is logged and the next action
//! runs. At the end the machine hears [`Input::TeardownDone`].

use berth_core::machine::{after_failure, AfterFailure};
use berth_core::ports::Deadline;
use berth_core::{ErrorKind, Input, State, StepError, Teardown};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::deliveries::known_identity;
use super::retry::{retrying, Bound};
use super::{Adapters, DaemonOptions, STEP_OVERRUN_GRACE};

/// Runs `actions` in order as a task (stopping the release at a failure that must stop it), then feeds
/// [`Input::TeardownDone`].
pub(super) fn spawn(
    mut actions: Vec<Teardown>,
    state: State,
    options: &DaemonOptions,
    adapters: &Adapters,
    inputs: mpsc::Sender<Input>,
) -> JoinHandle<()> {
    let adapters = adapters.clone();
    let limits = (options.stop_timeout, options.teardown_timeout);
    tokio::spawn(async move {
        let mut next = 0;
        while let Some(action) = actions.get(next).cloned() {
            let name = action.name();
            match within_limit(action, state, limits, &adapters).await {
                Ok(done) => info!(berth_state = state.name(), berth_teardown = name, "{done}"),
                Err(why) => {
                    if let AfterFailure::Stop { kept, then } = after_failure(&actions, next) {
                        // The journal says it, from the machine's event.
                        let kept = kept.iter().map(|a| a.name().to_owned()).collect();
                        let stopped = Input::TeardownStopped {
                            step: name.to_owned(),
                            error: why,
                            kept,
                        };
                        let _ = inputs.send(stopped).await;
                        actions.truncate(next + 1);
                        actions.extend(then);
                    } else {
                        error!(berth_state = state.name(), berth_teardown = name, error = %why, "teardown step {name} failed, continuing: {why}");
                    }
                }
            }
            next += 1;
        }
        let _ = inputs.send(Input::TeardownDone).await;
    })
}

/// Runs one action within its limit (`limits`: Kafka's stop, any other action); why it failed or timed out.
async fn within_limit(
    action: Teardown,
    state: State,
    (stop_timeout, each): (std::time::Duration, std::time::Duration),
    adapters: &Adapters,
) -> Result<String, String> {
    let limit = if matches!(action, Teardown::StopKafka) {
        stop_timeout
    } else {
        each
    };
    let outcome = tokio::time::timeout(
        limit + STEP_OVERRUN_GRACE,
        undo_until(action, state, Deadline::after(limit), adapters),
    )
    .await;
    match outcome {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!(
            "timed out after {}",
            berth_core::duration::format_duration(limit + STEP_OVERRUN_GRACE)
        )),
    }
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
