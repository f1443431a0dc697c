//! The claim and its re-claiming. A claim lost (the coordination session expired) while this host may be the
//! broker is re-claimed on a new session, with backoff, for as long as it takes: the boot pauses and Healthy
//! stops judging Kafka meanwhile, and Kafka keeps running. Another holder is waited out while EC2 still shows
//! the id's ENI attached here (nobody else can serve the id); only another holder *and* the ENI gone from here
//! fail the machine. A claim or reclaim whose session expired before its answer came is not trusted as held:
//! it is re-claimed first.

use std::time::Duration;

use super::{accept, Effect, Event, Machine, Out, Phase, State, Step, StepKind, StepTag};
use super::{ClaimState, ReclaimOutcome, TransitionError};
use crate::ports::{ErrorKind, StepError};

/// The claim, with what a lost claim keeps while it is re-claimed.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Claim {
    None,
    Held,
    Lost(Reclaiming),
}

/// The re-claiming of a lost claim.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Reclaiming {
    /// When the claim was lost.
    since: Duration,
    /// Attempts so far.
    attempts: u32,
    /// When the next attempt starts, after a failed one.
    retry_at: Option<Duration>,
    /// The attempt running now.
    running: Option<StepTag>,
}

impl Claim {
    pub(super) fn is_held(&self) -> bool {
        *self == Claim::Held
    }

    pub(super) fn is_lost(&self) -> bool {
        matches!(self, Claim::Lost(_))
    }

    fn reclaiming(&mut self) -> Option<&mut Reclaiming> {
        match self {
            Claim::Lost(reclaiming) => Some(reclaiming),
            Claim::None | Claim::Held => None,
        }
    }

    /// The next re-claim attempt, unless one runs.
    pub(super) fn next_wake(&self) -> Option<Duration> {
        match self {
            Claim::Lost(reclaiming) if reclaiming.running.is_none() => reclaiming.retry_at,
            _ => None,
        }
    }
}

impl Machine {
    /// When the claim was lost (time since start), while re-claiming.
    pub fn claim_lost_since(&self) -> Option<Duration> {
        match &self.claim {
            Claim::Lost(reclaiming) => Some(reclaiming.since),
            Claim::None | Claim::Held => None,
        }
    }

    /// Re-claim attempts since the claim was lost.
    pub fn reclaim_attempts(&self) -> u32 {
        match &self.claim {
            Claim::Lost(reclaiming) => reclaiming.attempts,
            Claim::None | Claim::Held => 0,
        }
    }

    /// Claim state.
    pub fn claim_state(&self) -> ClaimState {
        match self.claim {
            Claim::None => ClaimState::None,
            Claim::Held => ClaimState::Held,
            Claim::Lost(_) => ClaimState::Lost,
        }
    }

    /// The reclaim running now, if any.
    pub fn running_reclaim(&self) -> Option<StepTag> {
        match &self.claim {
            Claim::Lost(reclaiming) => reclaiming.running,
            Claim::None | Claim::Held => None,
        }
    }

    pub(super) fn on_claim_lost(&mut self, now: Duration, out: &mut Out) {
        if matches!(self.state(), State::Draining | State::Failed) {
            return;
        }
        out.event(Event::ClaimLost);
        match self.claim {
            Claim::Held => {
                self.lose_claim(now);
                self.start_reclaim(now, out);
            }
            // A claim or reclaim in flight may have created its node on the session that just expired: its
            // result is not trusted as Held (see `on_claimed` and `on_reclaimed`).
            Claim::None
                if self
                    .running
                    .is_some_and(|t| t.kind == StepKind::Boot(State::Claim)) =>
            {
                self.session_suspect = true;
            }
            Claim::Lost(Reclaiming {
                running: Some(_), ..
            }) => self.session_suspect = true,
            Claim::None | Claim::Lost(_) => {}
        }
    }

    /// The claim is gone: pause the boot (or the checks) until it is re-claimed.
    pub(super) fn lose_claim(&mut self, now: Duration) {
        self.claim = Claim::Lost(Reclaiming {
            since: now,
            attempts: 0,
            retry_at: None,
            running: None,
        });
        self.record.last_error = Some("coordination session expired: the claim is gone".into());
        // Checks are not run (and a failed one not held against Kafka) while coordination is lost: in ZooKeeper
        // mode Kafka's registration cannot even be read. Asking for a replacement would turn a ZooKeeper outage
        // into a Kafka outage; the first check after the re-claim judges Kafka again.
        if let Some(watch) = self.watch() {
            watch.lost_since = None;
        }
    }

    /// No further re-claim attempts: the daemon is leaving.
    pub(super) fn stop_reclaim_retries(&mut self) {
        if let Some(reclaiming) = self.claim.reclaiming() {
            reclaiming.retry_at = None;
        }
    }

    pub(super) fn start_reclaim(&mut self, now: Duration, out: &mut Out) {
        let Some(broker_id) = self.facts.broker_id else {
            return;
        };
        self.session_suspect = false;
        let tag = self.next_tag(StepKind::Reclaim);
        let Some(reclaiming) = self.claim.reclaiming() else {
            return;
        };
        reclaiming.running = Some(tag);
        out.effect(Effect::Run {
            tag,
            step: Step::Reclaim { broker_id },
            deadline: now + self.settings.reclaim_attempt,
        });
    }

    /// A failed re-claim's retry, when due (and none runs).
    pub(super) fn retry_reclaim_when_due(&mut self, now: Duration, out: &mut Out) {
        let Some(reclaiming) = self.claim.reclaiming() else {
            return;
        };
        if reclaiming.running.is_none() && reclaiming.retry_at.is_some_and(|at| at <= now) {
            reclaiming.retry_at = None;
            self.start_reclaim(now, out);
        }
    }

    /// Accepts the result of the reclaim run `tag`; any other run's result is stale.
    pub(super) fn finish_reclaim(&mut self, tag: StepTag) -> Result<(), TransitionError> {
        let state = self.state();
        match self.claim.reclaiming() {
            Some(reclaiming) => accept(&mut reclaiming.running, tag, state),
            None => Err(TransitionError::Stale { state, tag }),
        }
    }

    pub(super) fn on_reclaimed(&mut self, outcome: &ReclaimOutcome, now: Duration, out: &mut Out) {
        if !self.claim.is_lost() {
            return;
        }
        let id = self.broker_id_text();
        match outcome {
            // The session the reclaim created its node on expired before the answer came: claim again.
            ReclaimOutcome::Held if self.session_suspect => self.start_reclaim(now, out),
            ReclaimOutcome::Held => self.claim_held_again(now, out),
            ReclaimOutcome::Taken {
                holder,
                eni_held_here: true,
            } => {
                // Nobody else can serve the id while its ENI is attached here: keep Kafka and keep asking.
                out.event(Event::Waiting {
                    step: StepKind::Reclaim,
                    reason: format!(
                        "broker id {id} is claimed by {holder}, while its ENI is still attached here"
                    ),
                });
                let error = StepError::new(
                    ErrorKind::Retryable,
                    format!("broker id {id} is claimed by {holder}, but its ENI is still attached here, so nobody else can serve it; re-claiming"),
                );
                self.schedule_reclaim(&error, now);
            }
            ReclaimOutcome::Taken {
                holder,
                eni_held_here: false,
            } => self.fail(
                format!("broker id {id} is claimed by {holder} and its ENI is no longer attached here: another host is this broker now"),
                now,
                out,
            ),
        }
    }

    /// Held again: Healthy checks at once; a paused boot resumes its step.
    fn claim_held_again(&mut self, now: Duration, out: &mut Out) {
        self.claim = Claim::Held;
        out.event(Event::ClaimReestablished);
        let resume = match &mut self.phase {
            Phase::Healthy(watch) => {
                watch.next_check_at = Some(now);
                false
            }
            Phase::Booting(boot) => self.running.is_none() && !boot.retry_pending(),
            Phase::Draining(_) | Phase::Failed { .. } => false,
        };
        if resume {
            self.run_state_step(now, out);
        }
    }

    pub(super) fn on_reclaim_failed(&mut self, error: &StepError, now: Duration, out: &mut Out) {
        out.event(Event::Waiting {
            step: StepKind::Reclaim,
            reason: error.to_string(),
        });
        if self.claim.is_lost() {
            self.schedule_reclaim(error, now);
        }
    }

    /// Re-claim again after a backoff. No deadline: while this host may be the broker, the claim is worth
    /// waiting for (the claim deadline governs only the first claim at boot).
    fn schedule_reclaim(&mut self, error: &StepError, now: Duration) {
        self.record.last_error = Some(format!("reclaim: {error}"));
        let policy = self.settings.policies.claim;
        let Claim::Lost(reclaiming) = &mut self.claim else {
            return;
        };
        reclaiming.attempts += 1;
        let delay = policy.delay(reclaiming.attempts, &mut self.jitter);
        reclaiming.retry_at = Some(now + delay);
        self.record.retries += 1;
    }

    /// The claimed id, for messages ("?" before the claim).
    fn broker_id_text(&self) -> String {
        self.facts
            .broker_id
            .map(|id| id.0.to_string())
            .unwrap_or_else(|| "?".into())
    }
}
