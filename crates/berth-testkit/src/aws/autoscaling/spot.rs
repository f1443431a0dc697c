//! Spot interruptions in the Auto Scaling model: EC2 takes a Spot Instance back with two minutes' notice, and its
//! group, warned, terminates it through its terminate hook, which cannot hold the instance past the notice.
//!
//! The rules, and where they come from:
//!
//! * EC2 gives a two-minute interruption notice, readable in IMDS `spot/instance-action` as
//!   `{"action": "terminate", "time": "<UTC>"}` ("Spot Instance interruptions" and "Spot Instance interruption
//!   notices", Amazon EC2 User Guide). [`GroupEvent::SpotInterruption`] asks the control plane to set it.
//! * The group starts terminating the instance: `Terminating:Wait` while its terminate hook waits, its IMDS
//!   target lifecycle state `Terminated`; a launch still pending is over. A lifecycle hook does not keep a Spot
//!   Instance beyond its interruption ("Considerations and limitations for lifecycle hooks", Amazon EC2 Auto
//!   Scaling User Guide): at the notice's time EC2 reclaims it whatever its action's state, and the action ends
//!   with it ([`GroupEvent::Reclaimed`]: the instance goes at once, no shutdown grace).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{AutoScaling, GroupEvent, LifecycleState};

impl AutoScaling {
    /// EC2 interrupts Spot Instance `instance_id` with `notice` (AWS: two minutes): the group terminates it
    /// through its terminate hook, and EC2 reclaims it when the notice runs out. Returns when, or None for an
    /// instance not in any group.
    pub fn interrupt_spot(
        &mut self,
        instance_id: &str,
        notice: Duration,
        now: Instant,
    ) -> Option<Instant> {
        let slot = self.members.get_mut(instance_id)?;
        let reclaim_at = now + notice;
        slot.reclaim_at = Some(reclaim_at);
        if slot.member.state == LifecycleState::PendingWait {
            slot.action = None;
        }
        self.events.push_back(GroupEvent::SpotInterruption {
            instance_id: instance_id.to_owned(),
            notice: spot_notice(SystemTime::now() + notice),
        });
        self.record(
            instance_id,
            format!("EC2 interrupts Spot Instance {instance_id}: reclaimed in {notice:?}"),
        );
        self.terminate(instance_id, "a Spot Instance interruption", now);
        Some(reclaim_at)
    }

    /// Reclaims the interrupted instances whose notice ran out by `now` (their lifecycle action ends).
    pub(super) fn reclaim_interrupted(&mut self, now: Instant) {
        let due: Vec<String> = self
            .members
            .iter()
            .filter(|(_, slot)| slot.member.state != LifecycleState::TerminatingProceed)
            .filter(|(_, slot)| slot.reclaim_at.is_some_and(|at| at <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for instance_id in due {
            let pending = self.members[&instance_id].action.is_some();
            let action = if pending {
                "its lifecycle action still pending"
            } else {
                "no lifecycle action pending"
            };
            self.record(
                &instance_id,
                format!("EC2 reclaimed Spot Instance {instance_id} ({action})"),
            );
            if let Some(slot) = self.members.get_mut(&instance_id) {
                slot.member.state = LifecycleState::TerminatingProceed;
                slot.action = None;
            }
            self.events.push_back(GroupEvent::Reclaimed(instance_id));
        }
    }

    /// The earliest reclaim of an interrupted instance still to come.
    pub(super) fn next_reclaim(&self) -> Option<Instant> {
        self.members
            .values()
            .filter(|slot| slot.member.state != LifecycleState::TerminatingProceed)
            .filter_map(|slot| slot.reclaim_at)
            .min()
    }
}

/// IMDS `spot/instance-action` for an interruption at `at`.
pub fn spot_notice(at: SystemTime) -> String {
    format!(
        r#"{{"action": "terminate", "time": "{}"}}"#,
        utc_seconds(at)
    )
}

/// `at` as `YYYY-MM-DDThh:mm:ssZ` (the civil date from days since the epoch, proleptic Gregorian).
pub(super) fn utc_seconds(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notice_names_the_interruption_time_in_utc() {
        let at = UNIX_EPOCH + Duration::from_secs(1_764_990_123);
        assert_eq!(
            spot_notice(at),
            r#"{"action": "terminate", "time": "2025-12-06T03:02:03Z"}"#
        );
        assert_eq!(
            utc_seconds(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
    }
}
