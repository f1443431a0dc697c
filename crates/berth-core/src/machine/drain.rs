//! Draining, and a stop. A drain (a termination notice or an operator's request) first waits for a safe stop
//! when Kafka may run and `kafka.drain_wait` is set: [`Step::DrainCheck`] reads the replication until stopping
//! Kafka leaves every partition at its `min.insync.replicas`, or the bound is reached (a spot notice skips the
//! wait or cuts it short). Then it releases everything (see [`super::release`]) and, on a lifecycle
//! termination, completes the terminating action. A stop (SIGTERM) exits at once and leaves everything in place,
//! except that a drain already decided finishes first.

use std::time::Duration;

use super::{Effect, Event, ExitReason, Machine, Out, Phase, State, Step, StepKind, Teardown};
use crate::drain_wait::DrainWait;
use crate::facts::BrokerId;
use crate::ports::{DrainReason, LifecycleHook, StepError};
use crate::replication::ReplicationView;
use crate::replication::{bound_reached, drain_start, stop_safety, DrainOutcome, DrainStart};

/// What Draining keeps: why, its wait for a safe stop (kept once ended, for `/state`), and whether the
/// teardown runs.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Drain {
    pub(super) reason: DrainReason,
    pub(super) wait: DrainWait,
    /// True from the end of the wait until the teardown has finished.
    pub(super) tearing_down: bool,
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
        // A drain or a failure's release is already under way: it finishes, and then the daemon exits.
        if self.tearing_down() {
            return;
        }
        if self.drain_waits() {
            // Waiting for a safe stop: only a spot notice (two minutes) cuts the wait short.
            if *reason == DrainReason::SpotInterruption {
                if let Some(drain) = self.drain() {
                    drain.reason = reason.clone();
                }
                let why =
                    "a spot interruption notice arrived while the drain waited: stopping Kafka now";
                self.end_drain_wait(DrainOutcome::CutShort(why.into()), now, out);
            }
            return;
        }
        self.cancel_running(out);
        self.stop_reclaim_retries();
        let kafka_started =
            self.record.furthest >= State::StartKafka && self.broker_spec().is_some();
        let start = drain_start(reason, self.settings.drain_wait.is_some(), kafka_started);
        let wait = match &start {
            DrainStart::Check => {
                let heartbeat = self
                    .settings
                    .terminate_heartbeat_interval
                    .filter(|_| *reason == DrainReason::LifecycleTerminated);
                let bound = self.settings.drain_wait.unwrap_or_default();
                DrainWait::begin(now, bound, heartbeat)
            }
            DrainStart::Skip(why) => DrainWait::skipped(now, why.clone()),
        };
        let drain = Drain {
            reason: reason.clone(),
            wait,
            tearing_down: false,
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

    /// The drain's release plan (and, on a lifecycle termination, completing its action), now.
    fn begin_teardown(&mut self, out: &mut Out) {
        let mut teardown = self.release_plan(false);
        let identity = self.facts.identity.clone();
        let Some(drain) = self.drain() else {
            return;
        };
        if let (DrainReason::LifecycleTerminated, Some(identity)) = (&drain.reason, identity) {
            teardown.push(Teardown::CompleteTermination { identity });
        }
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

    /// The terminating hook's heartbeat, when due while the drain waits.
    pub(super) fn drain_heartbeat(&mut self, now: Duration, out: &mut Out) {
        let identity = self.facts.identity.clone();
        let (Some(drain), Some(identity)) = (self.drain(), identity) else {
            return;
        };
        if drain.wait.heartbeat_due(now) {
            out.effect(Effect::Heartbeat {
                identity,
                hook: LifecycleHook::Terminate,
            });
        }
    }

    /// SIGTERM: exit now and leave everything in place, unless a teardown runs or a drain was decided (then it
    /// finishes first).
    pub(super) fn on_stop(&mut self, now: Duration, out: &mut Out) {
        // A teardown in progress is finished first: half-released resources help nobody.
        if self.tearing_down() {
            return;
        }
        if self.drain_waits() {
            // The drain was decided: a stop ends its wait, and the drain finishes before the daemon exits.
            let why =
                "berth was asked to stop while the drain waited: stopping Kafka now, then exiting";
            return self.end_drain_wait(DrainOutcome::CutShort(why.into()), now, out);
        }
        self.cancel_running(out);
        self.stop_reclaim_retries();
        out.effect(Effect::Exit(ExitReason::Stopped));
    }
}
