//! What the daemon feeds the machine ([`Input`]), and the typed refusal of an input that does not fit
//! ([`TransitionError`]).

use serde::{Deserialize, Serialize};

use super::{Output, State, StepTag};
use crate::ports::{DrainReason, StepError};

/// Something that happened, fed to [`Machine::decide`](super::Machine::decide).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "input", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // one value per transition; boxing would only add noise
pub enum Input {
    /// The daemon has initialised; begin with Claim.
    Start,
    /// Time passed (a timer the machine asked for via [`Machine::next_wake`](super::Machine::next_wake)).
    Tick,
    /// A step run (boot, catch-up, check or drain check) succeeded.
    StepDone {
        /// The run it belongs to.
        tag: StepTag,
        /// What it learnt.
        output: Output,
    },
    /// A step run (boot, catch-up, check or drain check) failed.
    StepFailed {
        /// The run it belongs to.
        tag: StepTag,
        /// Why.
        error: StepError,
    },
    /// The coordination session expired: the claim is gone.
    ClaimLost,
    /// The reclaim step got an answer.
    Reclaimed {
        /// The run it belongs to.
        tag: StepTag,
        /// The answer.
        outcome: ReclaimOutcome,
    },
    /// The reclaim step failed (ZooKeeper unreachable, a timeout): it is tried again, for as long as it takes.
    ReclaimFailed {
        /// The run it belongs to.
        tag: StepTag,
        /// Why.
        error: StepError,
    },
    /// Release everything and exit: a termination notice or an operator's `berth drain`.
    Drain(DrainReason),
    /// Exit, leaving Kafka, the mount, the routes, the attachments and the claim as they are (SIGTERM).
    Stop,
    /// The teardown stopped releasing at a failed action ([`after_failure`](super::after_failure)): what
    /// would let another host take the id is left undone.
    TeardownStopped {
        /// The failed action ([`Teardown::name`](super::Teardown::name)).
        step: String,
        /// Why it failed.
        error: String,
        /// The actions left undone.
        kept: Vec<String>,
    },
    /// The teardown the machine asked for (a drain's, or a failure's release) has finished.
    TeardownDone,
}

impl Input {
    /// Short name, for [`TransitionError::NotValidHere`].
    pub fn name(&self) -> &'static str {
        match self {
            Input::Start => "start",
            Input::Tick => "tick",
            Input::StepDone { .. } => "step_done",
            Input::StepFailed { .. } => "step_failed",
            Input::ClaimLost => "claim_lost",
            Input::Reclaimed { .. } => "reclaimed",
            Input::ReclaimFailed { .. } => "reclaim_failed",
            Input::Drain(_) => "drain",
            Input::Stop => "stop",
            Input::TeardownStopped { .. } => "teardown_stopped",
            Input::TeardownDone => "teardown_done",
        }
    }
}

/// What a reclaim found, with what the daemon observed to judge it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ReclaimOutcome {
    /// The claim is ours again.
    Held,
    /// Another host holds the claim.
    Taken {
        /// Who, as its claim node says.
        holder: String,
        /// Whether EC2 still shows the id's ENI attached to this instance (then nobody else can serve the id,
        /// and berth keeps Kafka running and keeps re-claiming).
        eni_held_here: bool,
    },
}

/// An input that does not fit the machine's state: a bug in the caller, never silently ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The result of a step run that is no longer awaited (cancelled by a drain or a failure, or superseded).
    #[error("a result of {tag} arrived in {state}, which no longer awaits it")]
    Stale {
        /// Current state.
        state: State,
        /// The run the result belongs to.
        tag: StepTag,
    },
    /// `Start` after the machine has started.
    #[error("start arrived in {0} after the machine had started")]
    AlreadyStarted(State),
    /// `TeardownDone` while no teardown runs.
    #[error("{input} is not valid in {state}")]
    NotValidHere {
        /// Current state.
        state: State,
        /// The input's name ([`Input::name`]).
        input: &'static str,
    },
}
