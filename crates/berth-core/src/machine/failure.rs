//! Failed, from any state: the retry budget ran out, an error was fatal, or another host is this broker now.
//! FAILURE goes to CloudFormation at once; then everything is let go of (Kafka stopped; a refused volume left
//! untouched) and, last, Auto Scaling is asked for a replacement; the daemon exits non-zero.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Effect, Machine, Out, Phase, Teardown};
use crate::ports::Verdict;

/// Why the machine failed, and what that means for the teardown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The reason, for logs, `/state` and the STATUS line.
    pub reason: String,
    /// The volume was refused (a fatal Mount: another broker's data, not blank, another filesystem): nothing
    /// on it is touched, not even to unmount or detach it.
    pub volume_refused: bool,
}

impl Machine {
    /// Fails with `reason` (the volume not refused).
    pub(super) fn fail(&mut self, reason: String, now: Duration, out: &mut Out) {
        self.fail_with(reason, false, now, out);
    }

    /// Fails with `reason`, saying whether the failure is the volume's refusal.
    pub(super) fn fail_with(
        &mut self,
        reason: String,
        volume_refused: bool,
        now: Duration,
        out: &mut Out,
    ) {
        self.cancel_running(out);
        self.record.last_error = Some(reason.clone());
        self.stop_reclaim_retries();
        let failure = Failure {
            reason: reason.clone(),
            volume_refused,
        };
        self.enter(
            Phase::Failed {
                failure,
                tearing_down: true,
            },
            now,
            out,
        );
        out.effect(Effect::SignalStack {
            identity: self.facts.identity.clone(),
            verdict: Verdict::Failure(reason),
        });
        let mut teardown = self.release_plan(volume_refused);
        teardown.push(Teardown::ReportFailure {
            identity: self.facts.identity.clone(),
        });
        out.effect(Effect::Teardown(teardown));
    }
}
