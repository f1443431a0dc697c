//! The boot state machine: `Claim → AttachEni → Route → AttachEbs → Mount → StartKafka → Healthy`, plus
//! `Draining` (a drain: release everything, then exit) and `Failed` (after the retry budget or a fatal error:
//! report, let go of everything but a refused volume, ask Auto Scaling for a replacement, exit non-zero).
//!
//! Three ways out, each an [`ExitReason`]: a drain (only on a termination notice or an operator's request), a
//! failure's release, and a stop (SIGTERM), which leaves Kafka and everything berth set up in place for the next
//! berth to adopt. A claim lost while this host may be the broker is re-claimed for as long as it takes; only
//! another holder *and* the ENI gone from here make the machine let go (see [`ReclaimOutcome`]).
//!
//! [`Machine::decide`] is pure: it takes the current machine, one [`Input`] (a step's result, a timer, a
//! signal, a session event) and the time, and returns a [`Decision`]: the next machine, the [`Effect`]s to run
//! and the [`Event`]s that happened (a transition, a step done or failed, the caught-up gate's verdict, what a
//! step waits for, the drain's decision), which the daemon logs. It does no I/O, reads no clock and draws no
//! randomness of its own, so every decision is reproducible in a unit test. The daemon runs the effects through
//! the adapters and feeds their results back as inputs.
//!
//! The machine is a phase with the data only it has, one sub-machine per module: [`boot`] (Claim to StartKafka:
//! attempts, retry, deadline, the caught-up gate, launch heartbeats), [`watch`] (Healthy: checks, unhealthy
//! after a grace), [`drain`] (Draining: the wait for a safe stop, then the teardown; and a stop), [`failure`]
//! (Failed: report and release), with the claim's re-claiming beside them in [`reclaim`] (a claim can be lost
//! in any phase but the last two) and what a drain or a failure undoes in [`release`].
//!
//! The two attachments overlap: the AttachEni step's first run also requests the volume's attachment (one pass
//! of AttachEbs's rules, not waited for), so EC2 attaches both at once. AttachEni owns the ENI's wait and
//! AttachEbs the volume's; the request's answer never reaches the machine, because AttachEbs observes the volume
//! again (a lost or refused request costs only time).
//!
//! Every step is idempotent and starts by observing reality, so the machine always starts at `Claim` and a
//! restarted daemon converges by re-running each step, which finds its work already done.

mod boot;
mod drain;
mod effect;
mod event;
mod failure;
mod input;
mod reclaim;
mod release;
mod settings;
mod state;
mod step;
mod watch;

use std::time::Duration;

pub use effect::{Effect, ExitReason, Teardown};
pub use event::Event;
pub use failure::Failure;
pub use input::{Input, ReclaimOutcome, TransitionError};
pub use release::{after_failure, AfterFailure};
pub use settings::{CatchUpGate, Settings, StatePolicies, DEFAULT_RECLAIM_ATTEMPT};
pub use state::{ClaimState, State, StateTiming};
pub use step::{Output, Step, StepKind, StepTag};

use boot::Boot;
use drain::Drain;
use reclaim::Claim;
use watch::Watch;

use crate::drain_wait::DrainWait;
use crate::facts::Facts;
use crate::ports::{BrokerSpec, DrainReason, ErrorKind, StepError};
use crate::retry::Jitter;

/// The current phase, with the data only it has.
#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// Claim to StartKafka.
    Booting(Boot),
    /// Serving, Kafka watched.
    Healthy(Watch),
    /// Releasing everything, once stopping Kafka is safe (or the wait is over).
    Draining(Drain),
    /// Failed: reported, releasing what it held.
    Failed {
        /// Why.
        failure: Failure,
        /// True until the release has finished.
        tearing_down: bool,
    },
}

/// What the machine keeps of its whole run: the timeline, how far the boot got (what a release must undo),
/// counters and the last error.
#[derive(Debug, Clone, PartialEq)]
struct Record {
    timeline: Vec<StateTiming>,
    /// The furthest boot state reached (Healthy included).
    furthest: State,
    /// The volume's attachment was requested with an AttachEni run (once per boot).
    volume_requested: bool,
    transitions: u64,
    retries: u64,
    last_error: Option<String>,
}

/// The daemon's whole decision state. Cheap to clone; [`Machine::decide`] returns a new one.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    settings: Settings,
    phase: Phase,
    started: bool,
    facts: Facts,
    claim: Claim,
    /// The session expired while a claim or reclaim was running: its result may name a node that is gone.
    session_suspect: bool,
    /// The step run the machine awaits (a boot step, a catch-up look, a check, a drain check).
    running: Option<StepTag>,
    /// Step runs started so far (each run's number).
    runs: u64,
    record: Record,
    jitter: Jitter,
}

/// The result of a decision: the next machine, what to do, and what happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The next machine.
    pub machine: Machine,
    /// What the daemon must do, in order.
    pub effects: Vec<Effect>,
    /// What happened, in order (for the journal and `/state`'s waiting reason).
    pub events: Vec<Event>,
}

/// What a decision produces besides the next machine, collected while it is made.
#[derive(Debug, Default)]
struct Out {
    effects: Vec<Effect>,
    events: Vec<Event>,
}

impl Out {
    fn effect(&mut self, effect: Effect) {
        self.effects.push(effect);
    }

    fn event(&mut self, event: Event) {
        self.events.push(event);
    }
}

impl Machine {
    /// A machine at the start of Claim, not yet started.
    pub fn new(settings: Settings, jitter_seed: u64) -> Self {
        Self {
            settings,
            phase: Phase::Booting(Boot::new(State::Claim, Duration::ZERO, None)),
            started: false,
            facts: Facts::default(),
            claim: Claim::None,
            session_suspect: false,
            running: None,
            runs: 0,
            record: Record {
                timeline: vec![StateTiming {
                    state: State::Claim,
                    entered: Duration::ZERO,
                    left: None,
                    attempts: 0,
                }],
                furthest: State::Claim,
                volume_requested: false,
                transitions: 0,
                retries: 0,
                last_error: None,
            },
            jitter: Jitter::new(jitter_seed),
        }
    }

    /// Current state.
    pub fn state(&self) -> State {
        match &self.phase {
            Phase::Booting(boot) => boot.state,
            Phase::Healthy(_) => State::Healthy,
            Phase::Draining(_) => State::Draining,
            Phase::Failed { .. } => State::Failed,
        }
    }

    /// What has been learnt so far.
    pub fn facts(&self) -> &Facts {
        &self.facts
    }

    /// The settings the machine decides with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// True when `/health` must answer 200: Healthy, Kafka serving, claim held.
    pub fn is_serving(&self) -> bool {
        matches!(&self.phase, Phase::Healthy(watch) if watch.serving) && self.claim == Claim::Held
    }

    /// The most recent error (retryable or not), for `/state`.
    pub fn last_error(&self) -> Option<&str> {
        self.record.last_error.as_deref()
    }

    /// Why the machine failed, when in Failed.
    pub fn failure(&self) -> Option<&str> {
        self.failure_details()
            .map(|failure| failure.reason.as_str())
    }

    /// The failure with what it means for the teardown, when in Failed.
    pub fn failure_details(&self) -> Option<&Failure> {
        match &self.phase {
            Phase::Failed { failure, .. } => Some(failure),
            _ => None,
        }
    }

    /// True while a teardown (a drain's or a failure's) runs.
    pub fn tearing_down(&self) -> bool {
        match &self.phase {
            Phase::Draining(drain) => drain.tearing_down,
            Phase::Failed { tearing_down, .. } => *tearing_down,
            Phase::Booting(_) | Phase::Healthy(_) => false,
        }
    }

    /// Per-state timeline.
    pub fn timeline(&self) -> &[StateTiming] {
        &self.record.timeline
    }

    /// Whether the volume's attachment was requested with an AttachEni run (the boot's first one).
    pub fn volume_requested(&self) -> bool {
        self.record.volume_requested
    }

    /// Number of state transitions so far.
    pub fn transitions(&self) -> u64 {
        self.record.transitions
    }

    /// Number of retries scheduled so far.
    pub fn retries(&self) -> u64 {
        self.record.retries
    }

    /// The furthest boot state reached (Healthy included).
    pub fn furthest(&self) -> State {
        self.record.furthest
    }

    /// Attempts made in the current state (boot states only; zero elsewhere).
    pub fn attempts(&self) -> u32 {
        match &self.phase {
            Phase::Booting(boot) => boot.attempts,
            _ => 0,
        }
    }

    /// The step run the machine awaits, if any (the reclaim is [`Machine::running_reclaim`]).
    pub fn running_step(&self) -> Option<StepTag> {
        self.running
    }

    /// Why the daemon is draining, when it is.
    pub fn drain_reason(&self) -> Option<&DrainReason> {
        match &self.phase {
            Phase::Draining(drain) => Some(&drain.reason),
            _ => None,
        }
    }

    /// The drain's wait for a safe stop: while it waits, and how it ended.
    pub fn drain_wait(&self) -> Option<&DrainWait> {
        match &self.phase {
            Phase::Draining(drain) => Some(&drain.wait),
            _ => None,
        }
    }

    /// What Kafka must be told, once the id, the ENI and the identity are known.
    pub fn broker_spec(&self) -> Option<BrokerSpec> {
        Some(BrokerSpec {
            broker_id: self.facts.broker_id?,
            advertised_ip: self.facts.eni.as_ref()?.eni.private_ip,
            rack: self.facts.identity.as_ref()?.availability_zone.clone(),
            log_dirs: self.settings.mount.log_dirs.clone(),
            voters: self.facts.peers.clone(),
        })
    }

    /// When the machine next needs a [`Input::Tick`] (time since start), if ever.
    pub fn next_wake(&self) -> Option<Duration> {
        let mut wakes = Vec::new();
        // While the claim is lost the boot is paused: a due retry waits for the reclaim, not for a timer.
        let idle = self.running.is_none() && !self.claim.is_lost();
        match &self.phase {
            Phase::Booting(boot) => wakes.extend(boot.next_wake(idle)),
            Phase::Healthy(watch) => wakes.extend(watch.next_wake(
                idle && self.claim == Claim::Held,
                self.settings.unhealthy_after,
            )),
            Phase::Draining(drain) => wakes.extend(drain.wait.next_wake(self.running.is_some())),
            Phase::Failed { .. } => {}
        }
        wakes.extend(self.claim.next_wake());
        wakes.into_iter().min()
    }

    /// The pure decision: the next machine, the effects and the events of `input` at time `now` (time since
    /// start).
    pub fn decide(&self, input: &Input, now: Duration) -> Result<Decision, TransitionError> {
        let mut machine = self.clone();
        let mut out = Out::default();
        machine.apply(input, now, &mut out)?;
        machine.housekeeping(now, &mut out);
        Ok(Decision {
            machine,
            effects: out.effects,
            events: out.events,
        })
    }

    fn apply(
        &mut self,
        input: &Input,
        now: Duration,
        out: &mut Out,
    ) -> Result<(), TransitionError> {
        match input {
            Input::Start => self.start(now, out)?,
            Input::Tick => self.on_tick(now, out),
            Input::StepDone { tag, output } => {
                self.finish_step(*tag)?;
                self.on_done(*tag, output, now, out);
            }
            Input::StepFailed { tag, error } => {
                self.finish_step(*tag)?;
                self.on_failed(tag.kind, error, now, out);
            }
            Input::ClaimLost => self.on_claim_lost(now, out),
            Input::Reclaimed { tag, outcome } => {
                self.finish_reclaim(*tag)?;
                self.on_reclaimed(outcome, now, out);
            }
            Input::ReclaimFailed { tag, error } => {
                self.finish_reclaim(*tag)?;
                self.on_reclaim_failed(error, now, out);
            }
            Input::Drain(reason) => self.on_drain(reason, now, out),
            Input::Stop => self.on_stop(now, out),
            Input::TeardownStopped { .. } => self.on_teardown_stopped(input, out)?,
            Input::TeardownDone => self.on_teardown_done(input, out)?,
        }
        Ok(())
    }

    /// Timers due every decision: heartbeats (the terminating hook's while a drain waits, the launch hook's
    /// while booting) and telling Auto Scaling once Kafka has been lost too long.
    fn housekeeping(&mut self, now: Duration, out: &mut Out) {
        self.drain_heartbeat(now, out);
        self.launch_heartbeat(now, out);
        self.mark_unhealthy_when_lost_too_long(now, out);
    }

    fn on_tick(&mut self, now: Duration, out: &mut Out) {
        if self.drain_waits() {
            return self.on_drain_wait_tick(now, out);
        }
        self.retry_reclaim_when_due(now, out);
        if self.running.is_some() || self.claim.is_lost() {
            return;
        }
        let due = match &mut self.phase {
            Phase::Booting(boot) => boot.retry_due(now),
            Phase::Healthy(watch) => watch.check_due(now),
            Phase::Draining(_) | Phase::Failed { .. } => false,
        };
        match (due, &self.phase) {
            (true, Phase::Booting(_)) => self.run_state_step(now, out),
            (true, Phase::Healthy(_)) => self.run_check(now, out),
            _ => {}
        }
    }

    /// A step run's result, by what it learnt.
    fn on_done(&mut self, tag: StepTag, output: &Output, now: Duration, out: &mut Out) {
        if !tag.kind.produces(output) {
            // A bug in an adapter or the daemon; failing the run (retried like any failure) keeps the boot going.
            let error = StepError::new(
                ErrorKind::Retryable,
                format!("internal: {} returned {}", tag.kind, output.name()),
            );
            return self.on_failed(tag.kind, &error, now, out);
        }
        out.event(Event::StepDone { step: tag.kind });
        match output {
            Output::Claimed { .. } => return self.on_claimed(output, now, out),
            Output::EniReady(attachment) => self.facts.eni = Some(attachment.clone()),
            Output::Routed => {}
            Output::VolumeReady(attachment) => self.facts.volume = Some(attachment.clone()),
            Output::Mounted(report) => self.facts.mount = Some(report.clone()),
            Output::Serving(evidence) => {
                self.facts.serving = Some(evidence.clone());
                let next_check_at = now + self.settings.check_interval;
                if let Some(watch) = self.watch() {
                    return watch.serving_again(next_check_at);
                }
                if self.enter_catch_up_gate(now, out) {
                    return;
                }
            }
            Output::CatchUpView(view) => return self.on_catch_up(view, now, out),
            Output::DrainCheckView(view) => return self.on_drain_check(Ok(view), now, out),
        }
        self.advance(now, out);
    }

    /// A step run's failure, by the step that failed.
    fn on_failed(&mut self, kind: StepKind, error: &StepError, now: Duration, out: &mut Out) {
        out.event(Event::StepFailed {
            step: kind,
            error: error.clone(),
            state: self.state(),
            attempts: self.attempts(),
        });
        self.record.last_error = Some(format!("{kind}: {error}"));
        match kind {
            StepKind::DrainCheck => self.on_drain_check(Err(error), now, out),
            StepKind::CatchUp => {
                // Not reading the replication is no verdict on Kafka: look again until the gate's deadline.
                self.record.retries += 1;
                self.wait_for_catch_up(error.to_string(), now, out);
            }
            StepKind::Check => self.on_check_failed(now),
            StepKind::Boot(_) | StepKind::Reclaim => {
                self.on_boot_step_failed(kind, error, now, out)
            }
        }
    }

    /// Moves to `phase`: the timeline closes the current state's visit and opens the next one's.
    fn enter(&mut self, phase: Phase, now: Duration, out: &mut Out) {
        let (from, attempts) = (self.state(), self.attempts());
        if let Some(current) = self.record.timeline.last_mut() {
            current.left = Some(now);
            current.attempts = attempts;
        }
        self.phase = phase;
        let to = self.state();
        self.record.timeline.push(StateTiming {
            state: to,
            entered: now,
            left: None,
            attempts: 0,
        });
        if to.is_booting() || to == State::Healthy {
            self.record.furthest = self.record.furthest.max(to);
        }
        self.record.transitions += 1;
        if from != to {
            out.event(Event::Transition { from, to });
        }
    }

    /// Accepts the result of the step run `tag`; any other run's result is stale.
    fn finish_step(&mut self, tag: StepTag) -> Result<(), TransitionError> {
        let state = self.state();
        accept(&mut self.running, tag, state)
    }

    /// A new tag for a run of `kind`.
    fn next_tag(&mut self, kind: StepKind) -> StepTag {
        self.runs += 1;
        StepTag {
            kind,
            run: self.runs,
        }
    }

    /// Abandons the running step, if any (its result will be stale).
    fn cancel_running(&mut self, out: &mut Out) {
        if self.running.take().is_some() {
            out.effect(Effect::Cancel);
        }
    }
}

/// Clears `running` when it is the run `tag`; a result of any other run is stale.
fn accept(
    running: &mut Option<StepTag>,
    tag: StepTag,
    state: State,
) -> Result<(), TransitionError> {
    if *running != Some(tag) {
        return Err(TransitionError::Stale { state, tag });
    }
    *running = None;
    Ok(())
}
