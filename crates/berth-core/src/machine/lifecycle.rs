//! The lifecycle actions Auto Scaling holds this instance in, as berth keeps them alive: the launch action,
//! pending from the start until its CONTINUE (or the failure's ABANDON) is answered, and the terminate action,
//! pending from a lifecycle termination notice until its CONTINUE is answered.
//!
//! A pending action hears a heartbeat every interval, the first at once (as soon as the identity, read from the
//! instance metadata before Claim, is known), for as long as berth wants the instance kept: the launch action
//! while booting and while Healthy waits for CONTINUE's answer, whatever step runs; the terminate action until
//! its completion is answered, through the drain's wait, the teardown and a failure's report. Once the boot has
//! failed or a drain began, the launch action hears nothing more: the failure's ABANDON (or the hook's own
//! timeout) ends it. An answer that nothing awaits the call (the action completed, expired, or never there) ends
//! the action: its heartbeats stop.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Effect, Event, ExitReason, Machine, Out, Phase};
use crate::facts::Identity;
use crate::ports::{LaunchResult, LifecycleHook};

/// Where one lifecycle action stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum HookAction {
    /// Not begun: no termination notice yet (the terminate action), or not started (the launch action).
    #[default]
    Idle,
    /// Pending: berth owes Auto Scaling its completion.
    Pending {
        /// When the next heartbeat is due (time since start).
        #[serde(with = "crate::serde_duration")]
        next_heartbeat_at: Duration,
    },
    /// The completion was sent and is not answered yet: heartbeats go on meanwhile.
    Completing {
        /// When the next heartbeat is due (time since start).
        #[serde(with = "crate::serde_duration")]
        next_heartbeat_at: Duration,
    },
    /// Completed, refused as not awaited, or given up: nothing more is sent.
    Over,
}

impl HookAction {
    /// Pending from `now`, its first heartbeat due at once (an action that began stays as it is).
    fn begin(&mut self, now: Duration) {
        if *self == HookAction::Idle {
            *self = HookAction::Pending {
                next_heartbeat_at: now,
            };
        }
    }

    /// Pending or completing: berth still owes or awaits its completion.
    pub fn outstanding(&self) -> bool {
        matches!(
            self,
            HookAction::Pending { .. } | HookAction::Completing { .. }
        )
    }

    /// Its completion is sent now: pending becomes completing (true); anything else stays (false).
    fn complete(&mut self) -> bool {
        match *self {
            HookAction::Pending { next_heartbeat_at } => {
                *self = HookAction::Completing { next_heartbeat_at };
                true
            }
            _ => false,
        }
    }

    fn next_heartbeat_at(&self) -> Option<Duration> {
        match self {
            HookAction::Pending { next_heartbeat_at }
            | HookAction::Completing { next_heartbeat_at } => Some(*next_heartbeat_at),
            HookAction::Idle | HookAction::Over => None,
        }
    }

    /// Whether a heartbeat is due at `now` (then the next is scheduled `every` later).
    fn heartbeat_due(&mut self, now: Duration, every: Duration) -> bool {
        match self {
            HookAction::Pending { next_heartbeat_at }
            | HookAction::Completing { next_heartbeat_at }
                if *next_heartbeat_at <= now =>
            {
                *next_heartbeat_at = now + every;
                true
            }
            _ => false,
        }
    }
}

/// The two lifecycle actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Hooks {
    pub(super) launch: HookAction,
    pub(super) terminate: HookAction,
}

impl Hooks {
    fn of(&mut self, hook: LifecycleHook) -> &mut HookAction {
        match hook {
            LifecycleHook::Launch => &mut self.launch,
            LifecycleHook::Terminate => &mut self.terminate,
        }
    }
}

/// How Auto Scaling took a lifecycle action's completion or heartbeat, in the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", content = "detail", rename_all = "snake_case")]
pub enum HookAnswer {
    /// The completion was taken.
    Completed,
    /// Nothing awaits it: no action pending for this instance on that hook (completed, expired, never there),
    /// or the hook is not configured.
    NotAwaited(String),
    /// Refused for good, or still failing when its retries reached their bound.
    GaveUp(String),
}

impl Machine {
    /// The launch and terminate actions, as berth keeps them.
    pub fn lifecycle(&self) -> (HookAction, HookAction) {
        (self.hooks.launch, self.hooks.terminate)
    }

    /// The identity, read from the instance metadata before the claim: heartbeats may go out from now on.
    pub(super) fn on_identified(&mut self, identity: &Identity) {
        if self.facts.identity.is_none() {
            self.facts.identity = Some(identity.clone());
        }
    }

    /// A lifecycle termination notice: the terminate action is pending from now.
    pub(super) fn begin_termination(&mut self, now: Duration) {
        self.hooks.terminate.begin(now);
    }

    /// The heartbeat interval of `hook`, while berth wants that action kept.
    fn heartbeat_interval(&self, hook: LifecycleHook) -> Option<Duration> {
        match hook {
            LifecycleHook::Launch => self
                .settings
                .heartbeat_interval
                .filter(|_| matches!(self.phase, Phase::Booting(_) | Phase::Healthy(_))),
            LifecycleHook::Terminate => self.settings.terminate_heartbeat_interval,
        }
    }

    /// The heartbeats due at `now` (none before the identity is known).
    pub(super) fn lifecycle_heartbeats(&mut self, now: Duration, out: &mut Out) {
        let Some(identity) = self.facts.identity.clone() else {
            return;
        };
        for hook in [LifecycleHook::Launch, LifecycleHook::Terminate] {
            let Some(every) = self.heartbeat_interval(hook) else {
                continue;
            };
            if self.hooks.of(hook).heartbeat_due(now, every) {
                out.effect(Effect::Heartbeat {
                    identity: identity.clone(),
                    hook,
                });
            }
        }
    }

    /// When the next heartbeat is due, if one will be.
    pub(super) fn next_heartbeat(&self) -> Option<Duration> {
        self.facts.identity.as_ref()?;
        [
            (LifecycleHook::Launch, self.hooks.launch),
            (LifecycleHook::Terminate, self.hooks.terminate),
        ]
        .into_iter()
        .filter(|(hook, _)| self.heartbeat_interval(*hook).is_some())
        .filter_map(|(_, action)| action.next_heartbeat_at())
        .min()
    }

    /// CONTINUE for the launch action, when it is still pending (an action found not awaited is not completed).
    pub(super) fn complete_launch(&mut self, out: &mut Out) {
        let Some(identity) = self.facts.identity.clone() else {
            return;
        };
        if self.hooks.launch.complete() {
            out.effect(Effect::CompleteLaunch {
                identity,
                result: LaunchResult::Continue,
            });
        }
    }

    /// CONTINUE for the terminate action, when it is pending (without an identity nothing can be sent: the
    /// action is given up to its timeout).
    pub(super) fn complete_termination(&mut self, out: &mut Out) {
        let Some(identity) = self.facts.identity.clone() else {
            if self.hooks.terminate.outstanding() {
                self.hooks.terminate = HookAction::Over;
            }
            return;
        };
        if self.hooks.terminate.complete() {
            out.effect(Effect::CompleteTermination { identity });
        }
    }

    /// Auto Scaling's answer about `hook`: the action is over (a heartbeat's answer counts only when nothing
    /// awaits it). The daemon exits once nothing is left to wait for.
    pub(super) fn on_hook_answered(
        &mut self,
        hook: LifecycleHook,
        answer: &HookAnswer,
        out: &mut Out,
    ) {
        let action = self.hooks.of(hook);
        if *action == HookAction::Over {
            return;
        }
        *action = HookAction::Over;
        out.event(Event::HookAnswered {
            hook,
            answer: answer.clone(),
        });
        self.leave_when_done(out);
    }

    /// Exits once a drain or a failure has nothing left to do: released, reported, and the terminate action
    /// answered (a failure reported as unhealthy, with a terminate hook, also waits for that action to begin);
    /// after a stop, as soon as released (what is in flight gets the daemon's exit grace).
    pub(super) fn leave_when_done(&mut self, out: &mut Out) {
        let (terminate_hook, terminate) = (self.settings.terminate_hook, self.hooks.terminate);
        let (released, done, exit) = match &self.phase {
            Phase::Draining(drain) => (drain.released, true, ExitReason::Drained),
            Phase::Failed(fall) => (
                fall.released,
                fall.done(terminate_hook, terminate),
                ExitReason::Failed,
            ),
            Phase::Booting(_) | Phase::Healthy(_) => return,
        };
        let done = released && (self.stopping || (done && !terminate.outstanding()));
        if done && !self.exited {
            self.exited = true;
            out.effect(Effect::Exit(exit));
        }
    }
}
