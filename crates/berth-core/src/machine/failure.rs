//! Failed, from any state: the retry budget ran out, an error was fatal, or another host is this broker now.
//! FAILURE goes to CloudFormation at once; then everything is let go of (Kafka stopped; a refused volume left
//! untouched) and, last, Auto Scaling is asked for a replacement: ABANDON while the launch action is pending,
//! else SetInstanceHealth Unhealthy. A report that lands neither is tried again with backoff for as long as it
//! takes (berth stays up and says so) rather than exiting into silence: a restart would claim the broker again,
//! and an exit would leave an instance in service with no broker. Once reported, berth exits non-zero; when it
//! was reported unhealthy and a terminate hook is configured, it first waits for the termination notice and
//! completes that hook (everything is released already), so Auto Scaling does not wait out the hook's timeout.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Effect, Event, HookAction, Machine, Out, Phase, Teardown};
use crate::ports::{FailureReport, StepError, Verdict};
use crate::retry::RetryPolicy;

/// Between reports that did not land: 30 s doubling to 5 min (no deadline: the report is worth the wait).
const REPORT_RETRY: RetryPolicy = RetryPolicy {
    initial: Duration::from_secs(30),
    max: Duration::from_secs(300),
    multiplier: 2.0,
    deadline: Duration::MAX,
};

/// Why the machine failed, and what that means for the teardown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The reason, for logs, `/state` and the STATUS line.
    pub reason: String,
    /// The volume was refused (a fatal Mount: another broker's data, not blank, another filesystem): nothing
    /// on it is touched, not even to unmount or detach it.
    pub volume_refused: bool,
}

/// Where telling Auto Scaling about the failure stands.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "report", rename_all = "snake_case")]
pub enum FailureReportState {
    /// The release runs; the report comes last.
    #[default]
    Releasing,
    /// Sent (attempt `attempts`), not answered yet.
    Sending {
        /// Reports sent so far.
        attempts: u32,
    },
    /// Neither ABANDON nor SetInstanceHealth landed: sent again at `retry_at`.
    NotLanded {
        /// Reports sent so far.
        attempts: u32,
        /// Why the last one did not land.
        error: String,
        /// When the next is sent (time since start).
        #[serde(with = "crate::serde_duration")]
        retry_at: Duration,
    },
    /// Auto Scaling took it.
    Landed(FailureReport),
}

/// What Failed keeps: why, whether the release has finished, and the report.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Fall {
    pub(super) failure: Failure,
    /// The release has finished.
    pub(super) released: bool,
    pub(super) report: FailureReportState,
}

impl Fall {
    /// Nothing is left to do: reported, and (reported unhealthy, with a terminate hook) the terminate action
    /// begun, so that berth completes it before leaving.
    pub(super) fn done(&self, terminate_hook: bool, terminate: HookAction) -> bool {
        match &self.report {
            FailureReportState::Landed(FailureReport::MarkedUnhealthy) => {
                !terminate_hook || terminate != HookAction::Idle
            }
            FailureReportState::Landed(FailureReport::Abandoned) => true,
            _ => false,
        }
    }
}

impl Machine {
    fn fall(&mut self) -> Option<&mut Fall> {
        match &mut self.phase {
            Phase::Failed(fall) => Some(fall),
            _ => None,
        }
    }

    /// Where the failure's report to Auto Scaling stands, when in Failed.
    pub fn failure_report(&self) -> Option<&FailureReportState> {
        match &self.phase {
            Phase::Failed(fall) => Some(&fall.report),
            _ => None,
        }
    }

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
            Phase::Failed(Fall {
                failure,
                released: false,
                report: FailureReportState::Releasing,
            }),
            now,
            out,
        );
        out.effect(Effect::SignalStack {
            identity: self.facts.identity.clone(),
            verdict: Verdict::Failure(reason),
        });
        let teardown: Vec<Teardown> = self.release_plan(volume_refused);
        out.effect(Effect::Teardown(teardown));
    }

    /// The release has finished: Auto Scaling is told now (and a pending terminate action completed).
    pub(super) fn failure_released(&mut self, out: &mut Out) {
        if let Some(fall) = self.fall() {
            fall.released = true;
        }
        self.send_failure_report(1, out);
        self.complete_termination(out);
    }

    fn send_failure_report(&mut self, attempts: u32, out: &mut Out) {
        let identity = self.facts.identity.clone();
        if let Some(fall) = self.fall() {
            fall.report = FailureReportState::Sending { attempts };
            out.effect(Effect::ReportFailure { identity });
        }
    }

    /// Auto Scaling's answer to the failure's report (the daemon's retries included): landed, or tried again
    /// after a backoff.
    pub(super) fn on_failure_reported(
        &mut self,
        answer: &Result<FailureReport, StepError>,
        now: Duration,
        out: &mut Out,
    ) {
        let Some(FailureReportState::Sending { attempts }) = self.failure_report().cloned() else {
            return;
        };
        match answer {
            Ok(report) => {
                // Either way the launch action is over: abandoned, or no longer pending.
                self.hooks.launch = HookAction::Over;
                if let Some(fall) = self.fall() {
                    fall.report = FailureReportState::Landed(*report);
                }
                out.event(Event::FailureReported(Ok(*report)));
                self.leave_when_done(out);
            }
            Err(error) => {
                let delay = REPORT_RETRY.delay(attempts, &mut self.jitter);
                if let Some(fall) = self.fall() {
                    fall.report = FailureReportState::NotLanded {
                        attempts,
                        error: error.to_string(),
                        retry_at: now + delay,
                    };
                }
                out.event(Event::FailureReported(Err(NotLanded {
                    error: error.clone(),
                    attempts,
                    retry_in: delay,
                })));
            }
        }
    }

    /// A report that did not land is sent again once its backoff has passed.
    pub(super) fn retry_failure_report_when_due(&mut self, now: Duration, out: &mut Out) {
        if let Some(FailureReportState::NotLanded {
            attempts, retry_at, ..
        }) = self.failure_report().cloned()
        {
            if retry_at <= now {
                self.send_failure_report(attempts + 1, out);
            }
        }
    }

    /// When the next report is due, if one did not land.
    pub(super) fn next_failure_report(&self) -> Option<Duration> {
        match self.failure_report()? {
            FailureReportState::NotLanded { retry_at, .. } => Some(*retry_at),
            _ => None,
        }
    }
}

/// A failure report that did not land, as the journal tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct NotLanded {
    /// Why the last attempt did not land (ABANDON's and SetInstanceHealth's errors).
    pub error: StepError,
    /// Reports sent so far.
    pub attempts: u32,
    /// When the next is sent.
    pub retry_in: Duration,
}
