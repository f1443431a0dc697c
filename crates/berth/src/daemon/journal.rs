//! The journal: the structured log lines of what the machine says happened ([`Event`]), and the exit. What a step
//! waits for goes to the [`WaitingBoard`], which logs it as its rule says (at info when it changes, at most every
//! 30 s while it stays the same) and keeps it for `/state` (and STATUS=, the daemon's summary of `/state`).

use std::time::Duration;

use berth_core::machine::ExitReason;
use berth_core::replication::DrainOutcome;
use berth_core::{Event, Machine, State, StepKind};
use tracing::{error, info, warn};

use crate::waiting::WaitingBoard;

/// Logs one event of a decision; `machine` is the machine after it.
pub(super) fn record(event: &Event, machine: &Machine, waiting: &WaitingBoard) {
    let state = machine.state();
    let broker_id = machine.facts().broker_id.map(|id| id.0);
    match event {
        Event::Transition { from, .. } => log_transition(machine, *from),
        Event::StepDone { step } => waiting.clear(*step),
        Event::StepFailed {
            step,
            error,
            state,
            attempts,
        } => {
            if error.is_retryable() {
                // The reason alone (no attempt count): an unchanged reason is logged at most every 30 s.
                waiting.set(*step, &error.to_string(), *state);
            } else {
                warn!(
                    berth_state = state.name(),
                    berth_broker_id = broker_id,
                    berth_error_kind = ?error.kind,
                    berth_attempt = attempts,
                    error = %error,
                    "step failed: {error}"
                )
            }
        }
        Event::ClaimLost => warn!(
            berth_state = state.name(),
            berth_broker_id = broker_id,
            "ZooKeeper session expired: claim lost, re-claiming (Kafka keeps running)"
        ),
        Event::ClaimReestablished => {
            waiting.clear(StepKind::Reclaim);
            info!(
                berth_state = state.name(),
                berth_broker_id = broker_id,
                "claim re-established on a new session"
            )
        }
        Event::CaughtUp(progress) => info!(
            berth_state = state.name(),
            berth_partitions_hosted = progress.hosted,
            "caught up: {progress}"
        ),
        Event::Waiting { step, reason } => waiting.set(*step, reason, state),
        Event::TeardownStopped { step, error, kept } => error!(
            berth_state = state.name(),
            berth_broker_id = broker_id,
            berth_teardown = step.as_str(),
            berth_teardown_kept = kept.join(","),
            error = %error,
            "teardown stopped at {step}: {error}; left undone so the id stays held here (Kafka, the mount or \
             an attachment may remain): {}",
            kept.join(", ")
        ),
        Event::DrainDecided { outcome, waited } => {
            waiting.clear(StepKind::DrainCheck);
            log_drain_outcome(outcome, state.name(), millis(*waited));
        }
    }
}

/// Why the daemon exits.
pub(super) fn exit(reason: ExitReason, machine: &Machine) {
    let state = machine.state();
    match reason {
        ExitReason::Drained => info!(berth_state = state.name(), "drain complete; exiting"),
        ExitReason::Stopped => info!(
            berth_state = state.name(),
            "stopped; everything left in place for the next berth to adopt"
        ),
        ExitReason::Failed => error!(
            berth_state = state.name(),
            berth_failure = machine.failure().unwrap_or_default(),
            "failed: released what it held and asked Auto Scaling for a replacement; exiting"
        ),
    }
}

fn log_transition(machine: &Machine, before: State) {
    let facts = machine.facts();
    let broker_id = facts.broker_id.map(|id| id.0);
    let resources = facts.resources.as_ref();
    let eni_id = resources
        .and_then(|r| r.eni.as_ref())
        .map(|e| e.eni_id.as_str());
    let volume_id = resources
        .and_then(|r| r.volume.as_ref())
        .map(|v| v.volume_id.as_str());
    let state = machine.state();
    match state {
        State::Failed => error!(
            berth_state = state.name(),
            berth_previous_state = before.name(),
            berth_broker_id = broker_id,
            berth_eni_id = eni_id,
            berth_volume_id = volume_id,
            berth_failure = machine.failure().unwrap_or_default(),
            "boot failed: {}",
            machine.failure().unwrap_or_default()
        ),
        _ => info!(
            berth_state = state.name(),
            berth_previous_state = before.name(),
            berth_broker_id = broker_id,
            berth_eni_id = eni_id,
            berth_volume_id = volume_id,
            "entered {state}"
        ),
    }
}

/// How a drain's wait ended: info when safe, a warning when skipped or cut short, an error when the bound was
/// reached while stopping was still unsafe.
fn log_drain_outcome(outcome: &DrainOutcome, state: &'static str, waited_ms: u64) {
    // The outcomes that waited: the same fields, at the outcome's level.
    macro_rules! waited {
        ($level:ident, $outcome:literal, $message:literal) => {
            $level!(
                berth_state = state,
                berth_drain_waited_ms = waited_ms,
                berth_drain_outcome = $outcome,
                $message
            )
        };
    }
    match outcome {
        DrainOutcome::Safe(why) => waited!(info, "safe", "drain: stopping Kafka: {why}"),
        DrainOutcome::Skipped(why) => warn!(
            berth_state = state,
            berth_drain_outcome = "skipped",
            "drain: replicas not checked: {why}"
        ),
        DrainOutcome::CutShort(why) => waited!(warn, "cut_short", "drain: wait cut short: {why}"),
        DrainOutcome::BoundReached(why) => waited!(
            error,
            "bound_reached",
            "drain: stopping Kafka although it is not safe: {why}"
        ),
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
