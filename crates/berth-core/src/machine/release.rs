//! What a drain or a failure releases: everything the boot reached, in reverse, the claim last (so a
//! replacement finds everything free); and the end of that release.

use super::{Effect, ExitReason, Input, Machine, Out, Phase, State, Teardown, TransitionError};

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
