//! Booting, Claim to StartKafka: each state runs its step, built from the facts gathered so far; a retryable
//! failure is retried with the state's backoff until its deadline, a fatal one fails the boot. The launch hook
//! hears a heartbeat while the boot lasts. With the caught-up gate on, StartKafka does not end when Kafka
//! serves: the replication is looked at every `poll` until this broker is in sync, within the gate's own
//! deadline.

use std::time::Duration;

use super::{Effect, Event, Machine, Out, Output, Phase, State, Step, StepKind, Watch};
use crate::duration::format_duration;
use crate::ports::{LaunchResult, LifecycleHook, StepError, Verdict};
use crate::replication::{catch_up, ReplicationView};
use crate::routing::plan_route;

/// What a boot state keeps: when it began, its attempts, the next retry, the caught-up gate's start, and when
/// the launch hook hears from berth next (carried from state to state).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Boot {
    /// Claim to StartKafka.
    pub(super) state: State,
    /// When the state was entered (its deadline counts from here).
    entered: Duration,
    /// Attempts made in the state.
    pub(super) attempts: u32,
    /// When the next attempt starts, after a failed one (or the gate's next look).
    retry_at: Option<Duration>,
    /// When Kafka first served, while the caught-up gate waits (StartKafka only).
    catch_up_since: Option<Duration>,
    /// When the next launch heartbeat is due.
    next_heartbeat_at: Option<Duration>,
}

impl Boot {
    /// `state`, entered at `now`, with the launch heartbeat due at `next_heartbeat_at`.
    pub(super) fn new(state: State, now: Duration, next_heartbeat_at: Option<Duration>) -> Self {
        Self {
            state,
            entered: now,
            attempts: 0,
            retry_at: None,
            catch_up_since: None,
            next_heartbeat_at,
        }
    }

    /// A retry is due at `now`: clears it and says so.
    pub(super) fn retry_due(&mut self, now: Duration) -> bool {
        if self.retry_at.is_some_and(|at| at <= now) {
            self.retry_at = None;
            return true;
        }
        false
    }

    /// A retry is scheduled.
    pub(super) fn retry_pending(&self) -> bool {
        self.retry_at.is_some()
    }

    /// The retry (when `idle`: no step runs and the claim is not lost) and the next heartbeat.
    pub(super) fn next_wake(&self, idle: bool) -> impl Iterator<Item = Duration> {
        idle.then_some(self.retry_at)
            .flatten()
            .into_iter()
            .chain(self.next_heartbeat_at)
    }
}

impl Machine {
    fn boot(&mut self) -> Option<&mut Boot> {
        match &mut self.phase {
            Phase::Booting(boot) => Some(boot),
            _ => None,
        }
    }

    /// `Start`: Claim begins now, and with it the launch heartbeats.
    pub(super) fn start(
        &mut self,
        now: Duration,
        out: &mut Out,
    ) -> Result<(), super::TransitionError> {
        if self.started {
            return Err(super::TransitionError::AlreadyStarted(self.state()));
        }
        self.started = true;
        self.record.timeline[0].entered = now;
        let next_heartbeat_at = self.settings.heartbeat_interval.map(|every| now + every);
        if let Some(boot) = self.boot() {
            boot.entered = now;
            boot.next_heartbeat_at = next_heartbeat_at;
        }
        self.run_state_step(now, out);
        Ok(())
    }

    /// Success in a boot state: the next state, and its step (unless the claim is lost: then it waits for the
    /// reclaim); from StartKafka, Healthy, reported to CloudFormation and the launch hook.
    pub(super) fn advance(&mut self, now: Duration, out: &mut Out) {
        let Some(next) = self.state().next() else {
            return;
        };
        let next_heartbeat_at = self.boot().and_then(|boot| boot.next_heartbeat_at);
        if next != State::Healthy {
            self.enter(
                Phase::Booting(Boot::new(next, now, next_heartbeat_at)),
                now,
                out,
            );
            if !self.claim.is_lost() {
                self.run_state_step(now, out);
            }
            return;
        }
        let watch = Watch::serving(now + self.settings.check_interval);
        self.enter(Phase::Healthy(watch), now, out);
        // Two independent reports: a refused signal must never keep the launch hook waiting.
        out.effect(Effect::SignalStack {
            identity: self.facts.identity.clone(),
            verdict: Verdict::Success,
        });
        if let Some(identity) = self.facts.identity.clone() {
            out.effect(Effect::CompleteLaunch {
                identity,
                result: LaunchResult::Continue,
            });
        }
    }

    /// Runs the current boot state's step (or fails when what it needs is not known).
    pub(super) fn run_state_step(&mut self, now: Duration, out: &mut Out) {
        let step = match self.state_step() {
            Ok(step) => step,
            Err(reason) => return self.fail(reason, now, out),
        };
        match &step {
            Step::Route { plan } => self.facts.route = Some(plan.clone()),
            Step::AttachEni {
                volume: Some(_), ..
            } => self.record.volume_requested = true,
            _ => {}
        }
        let tag = self.next_tag(step.kind());
        self.running = Some(tag);
        let (gate, policies) = (self.settings.catch_up, self.settings.policies);
        let Some(boot) = self.boot() else {
            return;
        };
        boot.attempts += 1;
        let attempts = boot.attempts;
        let deadline = match (boot.catch_up_since, gate) {
            (Some(since), Some(gate)) => since + gate.deadline,
            _ => boot.entered + policies.of(boot.state).deadline,
        };
        if let Some(current) = self.record.timeline.last_mut() {
            current.attempts = attempts;
        }
        out.effect(Effect::Run {
            tag,
            step,
            deadline,
        });
    }

    /// The step for the current boot state, built from the facts gathered so far.
    fn state_step(&self) -> Result<Step, String> {
        let missing = |what: &str| {
            format!(
                "internal: {} needs {what}, which is not known",
                self.state()
            )
        };
        let facts = &self.facts;
        let identity = || {
            facts
                .identity
                .clone()
                .ok_or_else(|| missing("the identity"))
        };
        let resources = || {
            facts
                .resources
                .clone()
                .ok_or_else(|| missing("the claimed resources"))
        };
        let Phase::Booting(boot) = &self.phase else {
            return Err(missing("a boot state"));
        };
        Ok(match boot.state {
            State::Claim => Step::Claim,
            State::AttachEni => {
                let resources = resources()?;
                Step::AttachEni {
                    identity: identity()?,
                    eni: resources.eni.ok_or_else(|| missing("the ENI"))?,
                    // Requested once per boot, and only while the claim is held.
                    volume: resources
                        .volume
                        .filter(|_| !self.record.volume_requested && self.claim.is_held()),
                }
            }
            State::Route => {
                let eni = facts
                    .eni
                    .as_ref()
                    .ok_or_else(|| missing("the attached ENI"))?;
                let plan = plan_route(&identity()?, &eni.eni, &self.settings.routing)
                    .map_err(|e| e.to_string())?;
                Step::Route { plan }
            }
            State::AttachEbs => Step::AttachEbs {
                identity: identity()?,
                volume: resources()?.volume.ok_or_else(|| missing("the volume"))?,
            },
            State::Mount => Step::Mount {
                device: facts
                    .volume
                    .as_ref()
                    .ok_or_else(|| missing("the attached volume"))?
                    .device
                    .clone(),
                plan: self.settings.mount.clone(),
                broker_id: facts.broker_id.ok_or_else(|| missing("the broker id"))?,
            },
            State::StartKafka => {
                let spec = self.broker_spec().ok_or_else(|| missing("the ENI"))?;
                match boot.catch_up_since {
                    Some(_) => Step::CatchUp { spec },
                    None => Step::StartKafka { spec },
                }
            }
            State::Healthy | State::Draining | State::Failed => {
                return Err(missing("a boot state"))
            }
        })
    }

    /// A boot step failed: fail on a fatal error, else retry after the state's backoff unless that would pass
    /// its deadline.
    pub(super) fn on_boot_step_failed(
        &mut self,
        kind: StepKind,
        error: &StepError,
        now: Duration,
        out: &mut Out,
    ) {
        if kind == StepKind::Boot(State::Claim) {
            // The next claim starts on a session of its own.
            self.session_suspect = false;
        }
        let state = self.state();
        if !error.is_retryable() {
            // A fatal Mount is the volume's refusal (another broker's data, not blank, another filesystem).
            let reason = format!("{state}: {error}");
            return self.fail_with(reason, state == State::Mount, now, out);
        }
        let policy = *self.settings.policies.of(state);
        let Phase::Booting(boot) = &mut self.phase else {
            return;
        };
        let delay = policy.delay(boot.attempts, &mut self.jitter);
        if now + delay < boot.entered + policy.deadline {
            boot.retry_at = Some(now + delay);
            self.record.retries += 1;
            return;
        }
        let reason = format!(
            "{state} did not succeed within its deadline of {} ({} attempts); last error: {error}",
            format_duration(policy.deadline),
            boot.attempts
        );
        self.fail(reason, now, out);
    }

    /// Kafka serves in StartKafka: with the caught-up gate on, the gate begins (its first look now, unless the
    /// claim is lost) and true is returned; without it, false (Healthy follows).
    pub(super) fn enter_catch_up_gate(&mut self, now: Duration, out: &mut Out) -> bool {
        if self.settings.catch_up.is_none() {
            return false;
        }
        // Serving is not caught up: look at the replication until this broker is in sync.
        if let Some(boot) = self.boot() {
            boot.catch_up_since = Some(now);
        }
        if !self.claim.is_lost() {
            self.run_state_step(now, out);
        }
        true
    }

    /// A look at the replication during the caught-up gate: Healthy once in sync, else look again.
    pub(super) fn on_catch_up(&mut self, view: &ReplicationView, now: Duration, out: &mut Out) {
        let Some(me) = self.facts.broker_id else {
            return self.fail("internal: catch_up without a broker id".into(), now, out);
        };
        let progress = catch_up(view, me);
        self.facts.catch_up = Some(progress.clone());
        if progress.caught_up() {
            out.event(Event::CaughtUp(progress));
            return self.advance(now, out);
        }
        let why = progress.to_string();
        self.wait_for_catch_up(why.clone(), now, out);
        if self.state() == State::StartKafka {
            out.event(Event::Waiting {
                step: StepKind::CatchUp,
                reason: why,
            });
        }
    }

    /// Looks again after the gate's interval, or fails once that would pass its deadline.
    pub(super) fn wait_for_catch_up(&mut self, why: String, now: Duration, out: &mut Out) {
        let gate = self.settings.catch_up;
        let since = self.boot().and_then(|boot| boot.catch_up_since);
        let (Some(gate), Some(since)) = (gate, since) else {
            return self.fail(
                format!("internal: catch_up outside the gate: {why}"),
                now,
                out,
            );
        };
        if now + gate.poll < since + gate.deadline {
            if let Some(boot) = self.boot() {
                boot.retry_at = Some(now + gate.poll);
            }
            return;
        }
        self.fail(
            format!(
                "Kafka serves but did not catch up within kafka.caught_up_deadline ({}): {why}",
                format_duration(gate.deadline)
            ),
            now,
            out,
        );
    }

    /// The launch hook's heartbeat, when due while booting.
    pub(super) fn launch_heartbeat(&mut self, now: Duration, out: &mut Out) {
        let every = self.settings.heartbeat_interval;
        let identity = self.facts.identity.clone();
        let (Some(boot), Some(every)) = (self.boot(), every) else {
            return;
        };
        if boot.next_heartbeat_at.is_none_or(|at| at > now) {
            return;
        }
        boot.next_heartbeat_at = Some(now + every);
        if let Some(identity) = identity {
            out.effect(Effect::Heartbeat {
                identity,
                hook: LifecycleHook::Launch,
            });
        }
    }

    /// A claimed id: its identity, resources and peers are facts now, and the claim is held (unless the session
    /// it was made on expired before the answer: then it is re-claimed first).
    pub(super) fn on_claimed(&mut self, output: &Output, now: Duration, out: &mut Out) {
        let Output::Claimed {
            identity,
            broker_id,
            resources,
            peers,
        } = output
        else {
            return;
        };
        self.facts.identity = Some(identity.clone());
        self.facts.broker_id = Some(*broker_id);
        self.facts.resources = Some(resources.clone());
        self.facts.peers = peers.clone();
        self.claim = super::Claim::Held;
        if self.session_suspect {
            // The session the claim was made on expired before this result: the node may be gone.
            self.lose_claim(now);
        }
        self.advance(now, out);
        if self.claim.is_lost() {
            self.start_reclaim(now, out);
        }
    }
}
