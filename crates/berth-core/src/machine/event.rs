//! What happened in a decision, said by the machine itself ([`Event`]): the daemon logs these and keeps
//! `/state`'s waiting reason from them, instead of comparing the machine before and after.

use std::time::Duration;

use super::{State, StepKind};
use crate::ports::StepError;
use crate::replication::{CatchUpProgress, DrainOutcome};

/// One thing that happened in a decision, in the order it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The machine left one state for another.
    Transition {
        /// The state it left.
        from: State,
        /// The state it entered.
        to: State,
    },
    /// A step run's result was taken: whatever it waited for is over.
    StepDone {
        /// The step.
        step: StepKind,
    },
    /// A step run failed (a retryable failure is retried, or waited on; a fatal one fails the boot).
    StepFailed {
        /// The step.
        step: StepKind,
        /// Why.
        error: StepError,
        /// The state it failed in.
        state: State,
        /// Attempts made in that state, this one included.
        attempts: u32,
    },
    /// The coordination session expired: the claim is gone and is re-claimed (Kafka keeps running).
    ClaimLost,
    /// The claim is held again, on a new session.
    ClaimReestablished,
    /// The caught-up gate found every partition this broker hosts in sync.
    CaughtUp(CatchUpProgress),
    /// A step waits, and why: the reclaim (another holder, a failed attempt), the caught-up gate (behind), or
    /// the drain's check (stopping Kafka is unsafe).
    Waiting {
        /// The step that waits.
        step: StepKind,
        /// What it waits for.
        reason: String,
    },
    /// The teardown stopped at a failed action, leaving what would free the id undone.
    TeardownStopped {
        /// The failed action.
        step: String,
        /// Why it failed.
        error: String,
        /// The actions left undone.
        kept: Vec<String>,
    },
    /// The drain's wait for a safe stop ended (or was skipped): the teardown begins.
    DrainDecided {
        /// How it ended.
        outcome: DrainOutcome,
        /// How long the drain waited.
        waited: Duration,
    },
}
