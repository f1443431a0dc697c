//! Draining, and a stop. A drain (a termination notice or an operator's request) first waits for a safe stop
//! when Kafka may run and `kafka.drain_wait` is set: [`Step::DrainCheck`] reads the replication until stopping
//! Kafka leaves every partition at its `min.insync.replicas`, or the bound is reached (a spot notice skips the
//! wait or cuts it short). Then it releases everything (see [`super::release`]) and, when a lifecycle
//! termination notice came (before the drain or during it, a spot notice followed by the lifecycle state), completes
//! the terminate action and waits for its answer (see [`super::lifecycle`]). A stop (SIGTERM) exits at once and
//! leaves everything in place, except that a drain already decided, or a failure's release, finishes first (and
//! then exits without waiting for Auto Scaling's answers, which the daemon's exit grace lets land).

use std::time::Duration;

use super::{Effect, Event, ExitReason, Machine, Out, Phase, State, Step, StepKind};
use crate::drain_wait::DrainWait;
use crate::facts::BrokerId;
use crate::ports::{DrainReason, StepError};
use crate::replication::ReplicationView;
use crate::replication::{bound_reached, drain_start, stop_safety, DrainOutcome, DrainStart};

/// What Draining keeps: why, its wait for a safe stop (kept once ended, for `/state`), whether the teardown
/// runs, and whether it has finished.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Drain {
    pub(super) reason: DrainReason,
    pub(super) wait: DrainWait,
    /// True from the end of the wait until the teardown has finished.
    pub(super) tearing_down: bool,
    /// The teardown has finished (what is left: the terminate action's answer).
    pub(super) released: bool,
}

impl Machine {
    fn drain(&mut self) -> Option<&mut Drain> {
        match &mut self.phase {
            Phase::Draining(drain) => Some(drain),
            _ => None,
        }
    }

    /// True while a drain waits for a safe stop.
    pub(super) fn drain_waits(&self) -> bool {
        matches!(&self.phase, Phase::Draining(drain) if drain.wait.active())
    }

    pub(super) fn on_drain(&mut self, reason: &DrainReason, now: Duration, out: &mut Out) {
        if *reason == DrainReason::LifecycleTerminated {
            // Whatever happens next, Auto Scaling waits for this action: it is kept alive and completed.
            self.begin_termination(now);
        }
        match &self.phase {
            // A failure already lets go: the terminate action is completed once everything is released.
            Phase::Failed(fall) if fall.released => {
                self.complete_termination(out);
                return self.leave_when_done(out);
            }
            Phase::Failed(_) => return,
            // A drain under way finishes; a terminate action that began meanwhile is completed after it.
            Phase::Draining(drain) if drain.released => {
                self.complete_termination(out);
                return;
            }
            Phase::Draining(_) if self.drain_waits() => {
                return self.drain_notice_while_waiting(reason, now, out)
            }
            Phase::Draining(_) => return,
            Phase::Booting(_) | Phase::Healthy(_) => {}
        }
        self.cancel_running(out);
        self.stop_reclaim_retries();
        let kafka_started =
            self.record.furthest >= State::StartKafka && self.broker_spec().is_some();
        let start = drain_start(reason, self.settings.drain_wait.is_some(), kafka_started);
        let wait = match &start {
            DrainStart::Check => {
                DrainWait::begin(now, self.settings.drain_wait.unwrap_or_default())
            }
            DrainStart::Skip(why) => DrainWait::skipped(now, why.clone()),
        };
        let drain = Drain {
            reason: reason.clone(),
            wait,
            tearing_down: false,
            released: false,
        };
        self.enter(Phase::Draining(drain), now, out);
        match start {
            DrainStart::Check => self.run_drain_check(now, out),
            DrainStart::Skip(why) => {
                out.event(Event::DrainDecided {
                    outcome: DrainOutcome::Skipped(why),
                    waited: Duration::ZERO,
                });
                self.begin_teardown(out);
            }
        }
    }

    /// Another notice while the drain waits for a safe stop: only a spot notice (two minutes) cuts the wait
    /// short.
    fn drain_notice_while_waiting(&mut self, reason: &DrainReason, now: Duration, out: &mut Out) {
        if *reason != DrainReason::SpotInterruption {
            return;
        }
        if let Some(drain) = self.drain() {
            drain.reason = reason.clone();
        }
        let why = "a spot interruption notice arrived while the drain waited: stopping Kafka now";
        self.end_drain_wait(DrainOutcome::CutShort(why.into()), now, out);
    }

    /// The drain's release plan, now.
    fn begin_teardown(&mut self, out: &mut Out) {
        let teardown = self.release_plan(false);
        let Some(drain) = self.drain() else {
            return;
        };
        drain.tearing_down = true;
        out.effect(Effect::Teardown(teardown));
    }

    fn run_drain_check(&mut self, now: Duration, out: &mut Out) {
        let (Some(spec), Some(bound_at)) = (
            self.broker_spec(),
            self.drain().map(|drain| drain.wait.bound_at()),
        ) else {
            return;
        };
        let tag = self.next_tag(StepKind::DrainCheck);
        self.running = Some(tag);
        out.effect(Effect::Run {
            tag,
            step: Step::DrainCheck { spec },
            deadline: bound_at.max(now),
        });
    }

    /// A drain check's result (the replication, or why it could not be read): stop Kafka now, or look again.
    pub(super) fn on_drain_check(
        &mut self,
        checked: Result<&ReplicationView, &StepError>,
        now: Duration,
        out: &mut Out,
    ) {
        let me = self.facts.broker_id.unwrap_or(BrokerId(u32::MAX));
        let safety = checked.map(|view| stop_safety(view, me));
        let Phase::Draining(drain) = &mut self.phase else {
            return;
        };
        if !drain.wait.active() {
            return;
        }
        let outcome = match &safety {
            Ok(safety) => drain.wait.checked(Ok(safety), now, &mut self.jitter),
            Err(error) => drain
                .wait
                .checked(Err(&error.message), now, &mut self.jitter),
        };
        let unsafe_because = drain.wait.last.clone();
        match (outcome, unsafe_because) {
            (Some(outcome), _) => self.end_drain_wait(outcome, now, out),
            (None, Some(why)) => out.event(Event::Waiting {
                step: StepKind::DrainCheck,
                reason: why,
            }),
            (None, None) => {}
        }
    }

    /// Ends the drain's wait with `outcome` (a check still running is abandoned) and starts the teardown.
    fn end_drain_wait(&mut self, outcome: DrainOutcome, now: Duration, out: &mut Out) {
        self.cancel_running(out);
        if let Some(drain) = self.drain() {
            drain.wait.end(outcome.clone(), now);
            let waited = drain.wait.waited(now);
            out.event(Event::DrainDecided { outcome, waited });
        }
        self.begin_teardown(out);
    }

    /// While the drain waits: the bound ends it; a due check runs.
    pub(super) fn on_drain_wait_tick(&mut self, now: Duration, out: &mut Out) {
        let running = self.running.is_some();
        let Some(wait) = self
            .drain()
            .map(|drain| &mut drain.wait)
            .filter(|wait| wait.active())
        else {
            return;
        };
        if now >= wait.bound_at() {
            let why = wait
                .last
                .clone()
                .unwrap_or_else(|| "the first check had not answered".into());
            let outcome = bound_reached(wait.bound(), &why);
            return self.end_drain_wait(outcome, now, out);
        }
        if !running && wait.check_due(now) {
            self.run_drain_check(now, out);
        }
    }

    /// SIGTERM: exit now and leave everything in place, unless a drain was decided or a release runs (then it
    /// finishes first, and the daemon exits once released, without waiting for Auto Scaling's answers).
    pub(super) fn on_stop(&mut self, now: Duration, out: &mut Out) {
        if matches!(self.phase, Phase::Draining(_) | Phase::Failed(_)) {
            // Half-released resources help nobody: a release in progress is finished first.
            self.stopping = true;
            if self.drain_waits() {
                // The drain was decided: a stop ends its wait, and the drain finishes before the daemon exits.
                let why = "berth was asked to stop while the drain waited: stopping Kafka now, then exiting";
                return self.end_drain_wait(DrainOutcome::CutShort(why.into()), now, out);
            }
            return self.leave_when_done(out);
        }
        self.cancel_running(out);
        self.stop_reclaim_retries();
        out.effect(Effect::Exit(ExitReason::Stopped));
    }
}
