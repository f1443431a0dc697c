//! What a drain or a failure releases: everything the boot reached, in reverse, the claim last (so a
//! replacement finds everything free); what a failed action of that release means for the rest
//! ([`after_failure`]); and the end of the release.
//!
//! The ENI's detach and the claim's release are what let another host take the id. They must not run while
//! Kafka may still run here, the volume may still be mounted or attached: so a failed action before them stops
//! the release (they are left undone, and the journal and `/state` say so), and only the calls that tell Auto
//! Scaling still run. The id stays held here until the instance is gone (a replacement's takeover waits for a
//! dying owner: see docs/decisions/0002-ec2-attachment-claims.md).

use super::{
    Effect, Event, ExitReason, Input, Machine, Out, Phase, State, Teardown, TransitionError,
};

/// What a teardown does once one of its actions failed (or ran out of time).
#[derive(Debug, Clone, PartialEq)]
pub enum AfterFailure {
    /// Go on with the next action: nothing after it would let another host take the id while something of
    /// this host's remains.
    Continue,
    /// Stop releasing.
    Stop {
        /// The release actions left undone (the ENI's detach, the claim's release among them).
        kept: Vec<Teardown>,
        /// What still runs: the calls that tell Auto Scaling.
        then: Vec<Teardown>,
    },
}

/// The teardown rule, without I/O: after action `failed` of `actions` failed, stop when a later action would
/// let another host take the id (the failed one left Kafka, the mount, the routes or the volume's attachment
/// behind); otherwise go on.
pub fn after_failure(actions: &[Teardown], failed: usize) -> AfterFailure {
    let Some(action) = actions.get(failed) else {
        return AfterFailure::Continue;
    };
    let rest = &actions[failed + 1..];
    if action.frees_the_id() || action.is_signal() || !rest.iter().any(Teardown::frees_the_id) {
        return AfterFailure::Continue;
    }
    let (then, kept) = rest.iter().cloned().partition(Teardown::is_signal);
    AfterFailure::Stop { kept, then }
}

impl Teardown {
    /// Whether this action tells Auto Scaling, rather than releasing something of this host.
    pub fn is_signal(&self) -> bool {
        matches!(
            self,
            Teardown::CompleteTermination { .. } | Teardown::ReportFailure { .. }
        )
    }

    /// Whether this action lets another host take the id: the ENI's detach (with the `ec2` claim backend the
    /// claim itself) and the claim's release.
    pub fn frees_the_id(&self) -> bool {
        matches!(self, Teardown::DetachEni { .. } | Teardown::ReleaseClaim)
    }
}

impl Machine {
    /// What releases everything reached, in reverse (a step that was running may have done part of its work,
    /// so its undo is included; each undo is a no-op when nothing is there), the claim last. A volume whose
    /// attachment an AttachEni run requested is detached even before AttachEbs. With `keep_volume` the volume is
    /// neither unmounted nor detached.
    pub(super) fn release_plan(&self, keep_volume: bool) -> Vec<Teardown> {
        let reached = |state: State| self.record.furthest >= state;
        let resources = self.facts.resources.clone().unwrap_or_default();
        let mut steps = Vec::new();
        if reached(State::StartKafka) {
            steps.push(Teardown::StopKafka);
        }
        if reached(State::Mount) && !keep_volume {
            steps.push(Teardown::Unmount(self.settings.mount.clone()));
        }
        if let Some(plan) = self.facts.route.clone() {
            steps.push(Teardown::RemoveRoutes(plan));
        }
        if let Some(identity) = &self.facts.identity {
            let volume_requested = reached(State::AttachEbs) || self.record.volume_requested;
            if let (true, false, Some(volume)) = (volume_requested, keep_volume, resources.volume) {
                steps.push(Teardown::DetachVolume {
                    identity: identity.clone(),
                    volume,
                });
            }
            if let (true, Some(eni)) = (reached(State::AttachEni), resources.eni) {
                steps.push(Teardown::DetachEni {
                    identity: identity.clone(),
                    eni,
                });
            }
        }
        steps.push(Teardown::ReleaseClaim);
        steps
    }

    /// The teardown stopped at a failed action ([`after_failure`]): remembered for `/state` and said.
    pub(super) fn on_teardown_stopped(
        &mut self,
        input: &Input,
        out: &mut Out,
    ) -> Result<(), TransitionError> {
        let Input::TeardownStopped { step, error, kept } = input else {
            return Ok(());
        };
        if !self.tearing_down() {
            return Err(TransitionError::NotValidHere {
                state: self.state(),
                input: input.name(),
            });
        }
        self.record.last_error = Some(format!(
            "teardown stopped at {step}: {error}; left undone so the id stays held here: {}",
            kept.join(", ")
        ));
        out.event(Event::TeardownStopped {
            step: step.clone(),
            error: error.clone(),
            kept: kept.clone(),
        });
        Ok(())
    }

    /// The teardown has finished: exit (non-zero after a failure).
    pub(super) fn on_teardown_done(
        &mut self,
        input: &Input,
        out: &mut Out,
    ) -> Result<(), TransitionError> {
        let reason = match &mut self.phase {
            Phase::Draining(drain) if drain.tearing_down => {
                drain.tearing_down = false;
                ExitReason::Drained
            }
            Phase::Failed { tearing_down, .. } if *tearing_down => {
                *tearing_down = false;
                ExitReason::Failed
            }
            _ => {
                return Err(TransitionError::NotValidHere {
                    state: self.state(),
                    input: input.name(),
                })
            }
        };
        out.effect(Effect::Exit(reason));
        Ok(())
    }
}
