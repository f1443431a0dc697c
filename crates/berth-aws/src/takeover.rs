//! The takeover rule (when may berth force-detach another instance's attachment?) and the attachments berth
//! refuses to use at all. Pure, so every row is unit-tested; [`crate::attach`] observes and acts.
//!
//! * **terminated**: taken over at once; the instance is gone.
//! * **shutting-down**: the instance is being stopped, and its Kafka may still be in its controlled shutdown
//!   (termination without the lifecycle hook, a hook that timed out, an instance retirement). berth waits up to
//!   `aws.takeover_wait` for it to reach `terminated` or let go by itself (its own berth's drain detaches), and
//!   force-detaches only once the same attachment has stood that long with its owner shutting down.
//! * **unknown** (DescribeInstances does not return the owner): EC2 is eventually consistent and an answer
//!   can be partial, so this is not "terminated": taken over only once the same attachment has stood
//!   [`UNKNOWN_OWNER_BOUND`] with its owner unknown throughout.
//! * **anything else** (`pending`, `running`, `stopping`, `stopped`): never. A stopping or stopped instance
//!   keeps its attachments and may start again with Kafka on them.
//!
//! Refused outright ([`attachment_hazard`]): a volume with multi-attach enabled (EC2 would attach it to a
//! second instance, so the attachment is no lock: ADR 0002), and an attachment with `DeleteOnTermination`
//! (the owner's termination would delete the id's ENI or volume, data included, instead of releasing it).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an attachment must stand unchanged, its owner unknown to DescribeInstances throughout, before berth
/// takes it over. A new instance shows up within seconds; EC2 forgets a terminated one about an hour after it
/// ended; five minutes of an unchanged attachment to an instance EC2 cannot show is no live broker. It is
/// shorter than the default deadlines of `attach_eni` and `attach_ebs` (10 minutes), so a boot gets there.
pub const UNKNOWN_OWNER_BOUND: Duration = Duration::from_secs(300);

/// What the takeover rule allows for a resource attached to another instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerVerdict {
    /// Force-detach it; the reason, for the log.
    TakeOver(String),
    /// Leave it alone; what the owner is, for the error.
    Wait(String),
}

/// The takeover rule, without I/O: `owner_state` is what DescribeInstances says of the owner (None: it does
/// not return the instance), `seen_for` how long this same attachment has been seen with its owner in this
/// state (unknown, or shutting-down), `takeover_wait` the bound for a shutting-down owner
/// (`aws.takeover_wait`).
pub fn judge_owner(
    owner_state: Option<&str>,
    takeover_states: &[String],
    seen_for: Duration,
    takeover_wait: Duration,
) -> OwnerVerdict {
    let took = |what: &str| takeover_states.iter().any(|s| s == what);
    let format = berth_core::duration::format_duration;
    match owner_state {
        Some("shutting-down") if took("shutting-down") => {
            if seen_for >= takeover_wait {
                OwnerVerdict::TakeOver(format!(
                    "the owner has been shutting-down for {}, past aws.takeover_wait ({}), without letting go",
                    format(seen_for),
                    format(takeover_wait)
                ))
            } else {
                OwnerVerdict::Wait(format!(
                    "shutting-down (for {}; its Kafka may still be stopping: berth waits up to aws.takeover_wait = \
                     {} for it to terminate or let go, then force-detaches)",
                    format(seen_for),
                    format(takeover_wait)
                ))
            }
        }
        Some(state) if state != "shutting-down" && took(state) => {
            OwnerVerdict::TakeOver(format!("the owner is {state}"))
        }
        Some(state) => OwnerVerdict::Wait(state.to_owned()),
        None if seen_for >= UNKNOWN_OWNER_BOUND => OwnerVerdict::TakeOver(format!(
            "DescribeInstances has not returned the owner for {}, the attachment unchanged",
            format(seen_for)
        )),
        None => OwnerVerdict::Wait(format!(
            "not returned by DescribeInstances (for {}; taken over after {} with the attachment unchanged)",
            format(seen_for),
            format(UNKNOWN_OWNER_BOUND)
        )),
    }
}

/// Why berth must not use an attachment or volume as it stands, if so: multi-attach, or DeleteOnTermination.
pub fn attachment_hazard(
    resource: &str,
    multi_attach: bool,
    delete_on_termination: Option<&str>,
) -> Option<String> {
    if multi_attach {
        return Some(format!(
            "{resource} has multi-attach enabled: EC2 would attach it to a second instance, so its attachment \
             cannot be the id's lock (docs/decisions/0002); use a volume without multi-attach"
        ));
    }
    delete_on_termination.map(|owner| {
        format!(
            "{resource}'s attachment to {owner} has DeleteOnTermination set: terminating {owner} would delete \
             {resource} (and the broker's identity or data with it) instead of releasing it; turn it off \
             (ModifyNetworkInterfaceAttribute / ModifyInstanceAttribute)"
        )
    })
}

/// Since when each resource's current attachment has been seen with its owner in a waited-on state (unknown,
/// or shutting-down): the clock restarts whenever the attachment or the state changes. Kept across a step's
/// retries, since the adapter lives as long as the daemon.
#[derive(Debug, Default)]
pub struct OwnerWatch(Mutex<HashMap<String, (String, Instant)>>);

impl OwnerWatch {
    /// How long `resource` has been seen as `seen` (an attachment and its owner's state); `None` forgets it.
    pub fn seen_for(&self, resource: &str, seen: Option<String>) -> Duration {
        self.seen_for_at(resource, seen, Instant::now())
    }

    /// As [`OwnerWatch::seen_for`], at `now`.
    pub fn seen_for_at(&self, resource: &str, seen: Option<String>, now: Instant) -> Duration {
        let mut watched = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(seen) = seen else {
            watched.remove(resource);
            return Duration::ZERO;
        };
        let entry = watched
            .entry(resource.to_owned())
            .or_insert_with(|| (seen.clone(), now));
        if entry.0 != seen {
            *entry = (seen, now);
        }
        now.saturating_duration_since(entry.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Vec<String> {
        vec!["shutting-down".into(), "terminated".into()]
    }

    const WAIT: Duration = Duration::from_secs(120);

    #[test]
    fn an_owner_ec2_does_not_return_is_unknown_not_terminated() {
        assert!(matches!(
            judge_owner(None, &defaults(), Duration::ZERO, WAIT),
            OwnerVerdict::Wait(state) if state.contains("not returned by DescribeInstances")
        ));
        assert!(matches!(
            judge_owner(
                None,
                &defaults(),
                UNKNOWN_OWNER_BOUND - Duration::from_secs(1),
                WAIT
            ),
            OwnerVerdict::Wait(_)
        ));
        assert!(matches!(
            judge_owner(None, &defaults(), UNKNOWN_OWNER_BOUND, WAIT),
            OwnerVerdict::TakeOver(_)
        ));
    }

    #[test]
    fn a_terminated_owner_is_taken_over_at_once_and_a_shutting_down_one_after_the_wait() {
        assert!(matches!(
            judge_owner(Some("terminated"), &defaults(), Duration::ZERO, WAIT),
            OwnerVerdict::TakeOver(_)
        ));
        let early = judge_owner(Some("shutting-down"), &defaults(), WAIT / 2, WAIT);
        assert!(
            matches!(&early, OwnerVerdict::Wait(why) if why.contains("shutting-down (for 1m") && why.contains("aws.takeover_wait = 2m")),
            "{early:?}"
        );
        assert!(matches!(
            judge_owner(Some("shutting-down"), &defaults(), WAIT, WAIT),
            OwnerVerdict::TakeOver(why) if why.contains("past aws.takeover_wait")
        ));
        // Without shutting-down among the states, only termination lets go.
        let terminated_only = vec!["terminated".to_owned()];
        assert_eq!(
            judge_owner(Some("shutting-down"), &terminated_only, WAIT * 10, WAIT),
            OwnerVerdict::Wait("shutting-down".into())
        );
    }

    #[test]
    fn a_live_stopping_or_stopped_owner_is_never_taken_over() {
        for state in ["running", "pending", "stopping", "stopped"] {
            assert_eq!(
                judge_owner(Some(state), &defaults(), UNKNOWN_OWNER_BOUND * 10, WAIT),
                OwnerVerdict::Wait(state.into())
            );
        }
    }

    #[test]
    fn multi_attach_and_delete_on_termination_are_refused_by_name() {
        assert_eq!(attachment_hazard("vol-1", false, None), None);
        let multi = attachment_hazard("vol-1", true, None).unwrap();
        assert!(multi.contains("vol-1 has multi-attach enabled"), "{multi}");
        let deleted = attachment_hazard("eni-1", false, Some("i-9")).unwrap();
        assert!(
            deleted.contains("eni-1's attachment to i-9 has DeleteOnTermination"),
            "{deleted}"
        );
    }

    #[test]
    fn the_watch_restarts_its_clock_when_the_attachment_or_state_changes() {
        let watch = OwnerWatch::default();
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let seen = |who: &str, secs| watch.seen_for_at("eni-1", Some(who.into()), at(secs));
        assert_eq!(seen("i-1 shutting-down", 0), Duration::ZERO);
        assert_eq!(seen("i-1 shutting-down", 30), Duration::from_secs(30));
        assert_eq!(seen("i-2 shutting-down", 31), Duration::ZERO);
        assert_eq!(seen("i-2 shutting-down", 36), Duration::from_secs(5));
        assert_eq!(watch.seen_for_at("eni-1", None, at(40)), Duration::ZERO);
        assert_eq!(seen("i-2 shutting-down", 41), Duration::ZERO);
    }
}
