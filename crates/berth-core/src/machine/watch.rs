//! Healthy: Kafka is checked every `check_interval`; a failed check turns `/health` to 503 at once, and once
//! Kafka has been lost for `unhealthy_after` while the claim is held, Auto Scaling is told (once per loss). While
//! the claim is lost nothing is checked or held against Kafka (see [`super::reclaim`]).

use std::time::Duration;

use super::{Claim, Effect, Machine, Out, Phase, Step, StepKind};

/// What Healthy keeps: whether Kafka serves, since when it has been lost, and when to check next.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct Watch {
    pub(super) serving: bool,
    /// When checks started failing while the claim was held.
    pub(super) lost_since: Option<Duration>,
    /// Auto Scaling has been told the instance is unhealthy (once per loss).
    marked_unhealthy: bool,
    pub(super) next_check_at: Option<Duration>,
}

impl Watch {
    /// Kafka serves; the next check is due at `next_check_at`.
    pub(super) fn serving(next_check_at: Duration) -> Self {
        Self {
            serving: true,
            next_check_at: Some(next_check_at),
            ..Self::default()
        }
    }

    /// A check succeeded: serving, nothing lost, the next check at `next_check_at`.
    pub(super) fn serving_again(&mut self, next_check_at: Duration) {
        *self = Self::serving(next_check_at);
    }

    /// A check is due at `now`: clears it and says so.
    pub(super) fn check_due(&mut self, now: Duration) -> bool {
        if self.next_check_at.is_some_and(|at| at <= now) {
            self.next_check_at = None;
            return true;
        }
        false
    }

    /// The next check (when `may_check`: no step runs and the claim is held) and the end of the grace.
    pub(super) fn next_wake(
        &self,
        may_check: bool,
        unhealthy_after: Duration,
    ) -> impl Iterator<Item = Duration> {
        let grace_end = self
            .lost_since
            .filter(|_| !self.marked_unhealthy)
            .map(|since| since + unhealthy_after);
        may_check
            .then_some(self.next_check_at)
            .flatten()
            .into_iter()
            .chain(grace_end)
    }
}

impl Machine {
    /// Healthy's watch, when Healthy.
    pub(super) fn watch(&mut self) -> Option<&mut Watch> {
        match &mut self.phase {
            Phase::Healthy(watch) => Some(watch),
            _ => None,
        }
    }

    /// One health check now (when the broker's spec is known).
    pub(super) fn run_check(&mut self, now: Duration, out: &mut Out) {
        let Some(spec) = self.broker_spec() else {
            return;
        };
        let tag = self.next_tag(StepKind::Check);
        self.running = Some(tag);
        out.effect(Effect::Run {
            tag,
            step: Step::Check { spec },
            deadline: now + self.settings.check_interval.max(Duration::from_secs(1)),
        });
    }

    /// A failed check: 503 now, the loss counted from now while the claim is held, the next check one interval
    /// on.
    pub(super) fn on_check_failed(&mut self, now: Duration) {
        let held = self.claim == Claim::Held;
        let next_check_at = now + self.settings.check_interval;
        if let Some(watch) = self.watch() {
            watch.serving = false;
            if held {
                watch.lost_since.get_or_insert(now);
            }
            watch.next_check_at = Some(next_check_at);
        }
    }

    /// Tells Auto Scaling, once per loss, when Kafka has been lost for `unhealthy_after` with the claim held.
    pub(super) fn mark_unhealthy_when_lost_too_long(&mut self, now: Duration, out: &mut Out) {
        let (held, unhealthy_after) = (self.claim == Claim::Held, self.settings.unhealthy_after);
        let identity = self.facts.identity.clone();
        let (true, Some(watch), Some(identity)) = (held, self.watch(), identity) else {
            return;
        };
        let lost_too_long = watch
            .lost_since
            .is_some_and(|since| now >= since + unhealthy_after);
        if lost_too_long && !watch.marked_unhealthy {
            watch.marked_unhealthy = true;
            out.effect(Effect::MarkUnhealthy { identity });
        }
    }
}
