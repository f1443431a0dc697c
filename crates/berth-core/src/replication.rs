//! Whether this broker may be called Healthy (caught up), and whether it may be stopped (safe drain).
//!
//! "Serving" (registered, answering Metadata) is not "caught up": a replacement re-fetches what it missed, and
//! while it does, the partitions it hosts are under-replicated. Reporting Healthy then lets a rolling update
//! take the next broker down, and with `min.insync.replicas=2` producers using `acks=all` fail. So berth reads
//! the cluster's replication (Metadata with every topic, plus each topic's `min.insync.replicas` through
//! DescribeConfigs) into a [`ReplicationView`], and two pure rules decide from it:
//! * [`catch_up`]: the partitions under-replicated *because of this broker* (a replica, not in the ISR, and the
//!   partition has a leader to fetch from). A partition without a leader cannot be caught up by waiting here,
//!   so it is reported but does not hold the gate.
//! * [`stop_safety`]: whether stopping this broker leaves every partition it is in-sync for with at least
//!   `min.insync.replicas` in-sync replicas. A partition whose replicas other than this one are fewer than its
//!   minimum can never be made safe by waiting (e.g. replication factor 2 with `min.insync.replicas=2`): it is
//!   reported, not waited for. When no other broker is alive, this is the last broker of the cluster: stopping
//!   it takes everything offline whatever berth waits for, so the wait is skipped.
//!
//! [`drain_start`] and [`drain_verdict`] turn those into the drain's decisions: check or skip (a spot
//! interruption gives two minutes, too little to wait), wait or proceed (safe, nothing to wait for, or the
//! bound reached).

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::facts::BrokerId;
use crate::ports::DrainReason;

/// How many partitions a summary names before it says "and N more".
const NAMED: usize = 5;

/// One partition as the cluster describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionReplicas {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The leader, when it has one.
    pub leader: Option<BrokerId>,
    /// Assigned replicas.
    pub replicas: Vec<BrokerId>,
    /// In-sync replicas.
    pub isr: Vec<BrokerId>,
    /// The topic's effective `min.insync.replicas`.
    pub min_insync: u32,
}

impl PartitionReplicas {
    fn name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }
}

/// The cluster's replication, as one broker answered Metadata and DescribeConfigs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationView {
    /// Brokers registered (alive, unfenced).
    pub live_brokers: BTreeSet<BrokerId>,
    /// Every partition of every topic.
    pub partitions: Vec<PartitionReplicas>,
    /// Why the answer does not let berth judge (a topic this broker hosts that its principal may not describe, a
    /// topic or partition answered with an error, a `min.insync.replicas` that cannot be read, an answer too
    /// large): then it is neither caught up nor safe to stop, whatever the partitions say.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cannot_judge: Vec<String>,
}

/// How far this broker is from hosting its partitions fully replicated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatchUpProgress {
    /// Partitions this broker is a replica of.
    pub hosted: usize,
    /// Those still under-replicated because of it (`topic-partition`).
    pub behind: Vec<String>,
    /// Those without a leader: nothing to fetch from, so they do not hold the gate.
    pub leaderless: Vec<String>,
    /// Why the answer does not let berth judge (see [`ReplicationView::cannot_judge`]): holds the gate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cannot_judge: Vec<String>,
}

impl CatchUpProgress {
    /// True when no hosted partition is under-replicated because of this broker, and the answer said so.
    pub fn caught_up(&self) -> bool {
        self.behind.is_empty() && self.cannot_judge.is_empty()
    }
}

impl fmt::Display for CatchUpProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.cannot_judge.is_empty() {
            write!(
                f,
                "cannot judge whether this broker is caught up: {}; ",
                self.cannot_judge.join("; ")
            )?;
        }
        if self.behind.is_empty() {
            write!(f, "in sync for all {} hosted partitions", self.hosted)?;
        } else {
            write!(
                f,
                "{} of {} hosted partitions not yet in sync: {}",
                self.behind.len(),
                self.hosted,
                named(&self.behind)
            )?;
        }
        if !self.leaderless.is_empty() {
            write!(
                f,
                "; {} without a leader (not waited for): {}",
                self.leaderless.len(),
                named(&self.leaderless)
            )?;
        }
        Ok(())
    }
}

/// The caught-up rule: partitions where `me` is a replica, not in the ISR, and a leader exists.
pub fn catch_up(view: &ReplicationView, me: BrokerId) -> CatchUpProgress {
    let mut progress = CatchUpProgress {
        cannot_judge: view.cannot_judge.clone(),
        ..CatchUpProgress::default()
    };
    for partition in view.partitions.iter().filter(|p| p.replicas.contains(&me)) {
        progress.hosted += 1;
        if partition.isr.contains(&me) {
            continue;
        }
        match partition.leader {
            Some(_) => progress.behind.push(partition.name()),
            None => progress.leaderless.push(partition.name()),
        }
    }
    progress
}

/// Whether stopping this broker keeps every partition at its `min.insync.replicas`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "safety", rename_all = "snake_case")]
pub enum StopSafety {
    /// Every partition this broker is in sync for keeps enough in-sync replicas without it.
    Safe {
        /// Partitions whose other replicas can never reach their minimum (reported, not waited for).
        never_safe: Vec<String>,
    },
    /// Stopping now would leave these partitions below their minimum (`topic-partition: in-sync/min`).
    Unsafe {
        /// The partitions at risk, with what they would keep.
        at_risk: Vec<String>,
        /// Partitions that can never be made safe (reported, not waited for).
        never_safe: Vec<String>,
    },
    /// No other broker is alive: this is the last of the cluster, nothing can take over its partitions.
    LastBroker,
    /// The answer does not let berth judge (see [`ReplicationView::cannot_judge`]): not safe, why.
    CannotJudge {
        /// The reasons.
        reasons: Vec<String>,
    },
}

impl fmt::Display for StopSafety {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let never = |f: &mut fmt::Formatter<'_>, never_safe: &[String]| {
            if never_safe.is_empty() {
                return Ok(());
            }
            write!(
                f,
                "; {} can never keep their minimum without this broker (fewer other replicas than \
                 min.insync.replicas), not waited for: {}",
                never_safe.len(),
                named(never_safe)
            )
        };
        match self {
            StopSafety::Safe { never_safe } => {
                f.write_str("stopping this broker keeps every partition at its min.insync.replicas")?;
                never(f, never_safe)
            }
            StopSafety::Unsafe {
                at_risk,
                never_safe,
            } => {
                write!(
                    f,
                    "stopping this broker now would leave {} partitions below min.insync.replicas \
                     (in-sync without it/min): {}",
                    at_risk.len(),
                    named(at_risk)
                )?;
                never(f, never_safe)
            }
            StopSafety::CannotJudge { reasons } => write!(
                f,
                "cannot judge whether stopping this broker is safe: {}",
                reasons.join("; ")
            ),
            StopSafety::LastBroker => f.write_str(
                "no other broker is alive: this is the last one, stopping it takes its partitions offline \
                 whatever berth waits for",
            ),
        }
    }
}

/// The safe-stop rule for broker `me`.
pub fn stop_safety(view: &ReplicationView, me: BrokerId) -> StopSafety {
    // First: an answer that cannot be judged may not even list the live brokers.
    if !view.cannot_judge.is_empty() {
        return StopSafety::CannotJudge {
            reasons: view.cannot_judge.clone(),
        };
    }
    if view.live_brokers.iter().all(|id| *id == me) {
        return StopSafety::LastBroker;
    }
    let (mut at_risk, mut never_safe) = (Vec::new(), Vec::new());
    for partition in view.partitions.iter().filter(|p| p.isr.contains(&me)) {
        let others = partition.isr.iter().filter(|id| **id != me).count();
        let min = partition.min_insync as usize;
        if others >= min {
            continue;
        }
        let other_replicas = partition.replicas.iter().filter(|id| **id != me).count();
        if other_replicas < min {
            never_safe.push(partition.name());
        } else {
            at_risk.push(format!("{}: {others}/{min}", partition.name()));
        }
    }
    if at_risk.is_empty() {
        StopSafety::Safe { never_safe }
    } else {
        StopSafety::Unsafe {
            at_risk,
            never_safe,
        }
    }
}

/// Why Kafka may not start yet on a broker whose log dirs hold no partition, in a cluster that exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlankStartRefusal {
    /// Partitions this broker shares with other replicas that have no live leader other than it.
    pub unled: Vec<String>,
    /// Why the answer does not let berth judge (see [`ReplicationView::cannot_judge`]).
    pub cannot_judge: Vec<String>,
}

impl fmt::Display for BlankStartRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.cannot_judge.is_empty() {
            return write!(
                f,
                "cannot judge whether this blank broker would lead an empty log: {}",
                self.cannot_judge.join("; ")
            );
        }
        write!(
            f,
            "{} partitions this broker replicates with others have no live leader but it: {}; Kafka elects a \
             partition's last known leader when no in-sync or eligible replica is left, and this broker's \
             log dirs are empty, so its followers would truncate to nothing. Waiting for another replica to \
             lead them (see the runbook: a replica that holds the data made leader)",
            self.unled.len(),
            named(&self.unled)
        )
    }
}

/// The blank-start rule for broker `me`, whose log dirs hold no partition, in a cluster that exists: Kafka may
/// start only when every partition `me` replicates with other brokers has a live leader other than `me`, so it
/// returns as a follower and fetches. A partition no other broker replicates lost its data with the volume:
/// there is nothing elsewhere to protect, so it does not hold the start. Returns the partitions checked.
pub fn blank_start(view: &ReplicationView, me: BrokerId) -> Result<usize, BlankStartRefusal> {
    if !view.cannot_judge.is_empty() {
        return Err(BlankStartRefusal {
            unled: Vec::new(),
            cannot_judge: view.cannot_judge.clone(),
        });
    }
    let shared: Vec<&PartitionReplicas> = view
        .partitions
        .iter()
        .filter(|p| p.replicas.contains(&me) && p.replicas.iter().any(|id| *id != me))
        .collect();
    let led_by_another = |p: &PartitionReplicas| {
        p.leader
            .is_some_and(|leader| leader != me && view.live_brokers.contains(&leader))
    };
    let unled: Vec<String> = shared
        .iter()
        .filter(|p| !led_by_another(p))
        .map(|p| p.name())
        .collect();
    if unled.is_empty() {
        Ok(shared.len())
    } else {
        Err(BlankStartRefusal {
            unled,
            cannot_judge: Vec::new(),
        })
    }
}

/// How a drain begins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "start", content = "why", rename_all = "snake_case")]
pub enum DrainStart {
    /// Check that stopping Kafka is safe first.
    Check,
    /// Stop without checking, and why.
    Skip(String),
}

/// Whether a drain for `reason` checks before stopping Kafka: not when the wait is off, when Kafka was never
/// started here, or on a spot interruption (two minutes' notice).
pub fn drain_start(reason: &DrainReason, wait_enabled: bool, kafka_started: bool) -> DrainStart {
    if !wait_enabled {
        DrainStart::Skip(
            "kafka.drain_wait is 0s: Kafka is stopped without checking replicas".into(),
        )
    } else if !kafka_started {
        DrainStart::Skip("Kafka was not started here: nothing to check".into())
    } else if *reason == DrainReason::SpotInterruption {
        DrainStart::Skip(
            "spot interruption: the two minutes' notice leaves no time to wait for replicas; stopping now"
                .into(),
        )
    } else {
        DrainStart::Check
    }
}

/// How a drain's wait for safety ended (or did not begin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", content = "why", rename_all = "snake_case")]
pub enum DrainOutcome {
    /// Stopping was safe (or nothing could be made safer by waiting).
    Safe(String),
    /// The check was skipped.
    Skipped(String),
    /// The bound was reached while still unsafe: stopped anyway, since the instance is going away.
    BoundReached(String),
    /// Cut short (a spot notice or a stop request arrived while waiting).
    CutShort(String),
}

impl DrainOutcome {
    /// The text for logs and `/state`.
    pub fn why(&self) -> &str {
        match self {
            DrainOutcome::Safe(why)
            | DrainOutcome::Skipped(why)
            | DrainOutcome::BoundReached(why)
            | DrainOutcome::CutShort(why) => why,
        }
    }
}

/// What to do after one safety check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum DrainVerdict {
    /// Stop Kafka now.
    Proceed(DrainOutcome),
    /// Check again later; why.
    Wait(String),
}

/// The drain's rule after a check (`Err` when the check itself failed) at `waited` into a wait of `bound`.
pub fn drain_verdict(
    checked: Result<&StopSafety, &str>,
    waited: Duration,
    bound: Duration,
) -> DrainVerdict {
    let unsafe_why = match checked {
        Ok(safety @ (StopSafety::Safe { .. } | StopSafety::LastBroker)) => {
            return DrainVerdict::Proceed(DrainOutcome::Safe(safety.to_string()))
        }
        Ok(safety) => safety.to_string(),
        Err(error) => format!("replication could not be read: {error}"),
    };
    if waited >= bound {
        DrainVerdict::Proceed(bound_reached(bound, &unsafe_why))
    } else {
        DrainVerdict::Wait(unsafe_why)
    }
}

/// The outcome of a wait that reached its `bound` while stopping was still unsafe (`why`).
pub fn bound_reached(bound: Duration, why: &str) -> DrainOutcome {
    DrainOutcome::BoundReached(format!(
        "waited {} (kafka.drain_wait) and still: {why}; stopping Kafka anyway, the instance is going away",
        crate::duration::format_duration(bound)
    ))
}

fn named(names: &[String]) -> String {
    let mut text = names
        .iter()
        .take(NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > NAMED {
        text.push_str(&format!(" and {} more", names.len() - NAMED));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[u32]) -> Vec<BrokerId> {
        list.iter().copied().map(BrokerId).collect()
    }

    fn partition(
        index: i32,
        leader: Option<u32>,
        replicas: &[u32],
        isr: &[u32],
    ) -> PartitionReplicas {
        PartitionReplicas {
            topic: "events".into(),
            partition: index,
            leader: leader.map(BrokerId),
            replicas: ids(replicas),
            isr: ids(isr),
            min_insync: 2,
        }
    }

    fn view(live: &[u32], partitions: Vec<PartitionReplicas>) -> ReplicationView {
        ReplicationView {
            live_brokers: ids(live).into_iter().collect(),
            partitions,
            cannot_judge: Vec::new(),
        }
    }

    #[test]
    fn a_broker_is_behind_where_it_is_a_replica_out_of_sync_with_a_leader() {
        let cluster = view(
            &[0, 1, 2],
            vec![
                partition(0, Some(0), &[0, 1, 2], &[0, 1]),
                partition(1, Some(1), &[1, 2, 0], &[1, 2, 0]),
                partition(2, None, &[2, 0], &[0]),
                partition(3, Some(0), &[0, 1], &[0, 1]),
            ],
        );
        let progress = catch_up(&cluster, BrokerId(2));
        assert_eq!(progress.hosted, 3);
        assert_eq!(progress.behind, ["events-0"]);
        assert_eq!(progress.leaderless, ["events-2"]);
        assert!(!progress.caught_up());
        assert_eq!(
            progress.to_string(),
            "1 of 3 hosted partitions not yet in sync: events-0; 1 without a leader (not waited for): events-2"
        );
        let done = catch_up(&cluster, BrokerId(1));
        assert!(done.caught_up(), "{done}");
        assert_eq!(done.hosted, 3);
        assert!(catch_up(&view(&[7], Vec::new()), BrokerId(7)).caught_up());
    }

    #[test]
    fn a_blank_broker_starts_only_where_another_live_replica_leads() {
        let mut cluster = view(
            &[0, 1, 2],
            vec![
                partition(0, Some(1), &[0, 1, 2], &[1, 2]),
                partition(1, Some(2), &[2, 0], &[2]),
                partition(2, None, &[0], &[]),
                partition(3, Some(0), &[1, 2], &[1, 2]),
            ],
        );
        assert_eq!(blank_start(&cluster, BrokerId(0)), Ok(2));
        cluster.partitions.push(partition(4, None, &[0, 1, 2], &[]));
        cluster
            .partitions
            .push(partition(5, Some(0), &[0, 1], &[0]));
        cluster
            .partitions
            .push(partition(6, Some(3), &[0, 3], &[3]));
        let refusal = blank_start(&cluster, BrokerId(0)).unwrap_err();
        assert_eq!(refusal.unled, ["events-4", "events-5", "events-6"]);
        assert!(refusal.to_string().starts_with(
            "3 partitions this broker replicates with others have no live leader but it: events-4, events-5, events-6;"
        ));
        cluster
            .cannot_judge
            .push("topic secret: TopicAuthorizationFailed".into());
        let refusal = blank_start(&cluster, BrokerId(0)).unwrap_err();
        assert!(refusal.unled.is_empty());
        assert_eq!(
            refusal.to_string(),
            "cannot judge whether this blank broker would lead an empty log: topic secret: TopicAuthorizationFailed"
        );
    }

    #[test]
    fn an_answer_that_cannot_be_judged_is_neither_caught_up_nor_safe_to_stop() {
        let mut judged = view(
            &[0, 1, 2],
            vec![partition(0, Some(1), &[0, 1, 2], &[0, 1, 2])],
        );
        assert!(catch_up(&judged, BrokerId(0)).caught_up());
        assert!(matches!(
            stop_safety(&judged, BrokerId(0)),
            StopSafety::Safe { .. }
        ));
        judged.cannot_judge = vec!["topic secret: error 29 (TopicAuthorizationFailed)".into()];
        let progress = catch_up(&judged, BrokerId(0));
        assert!(!progress.caught_up());
        assert!(
            progress.to_string().starts_with(
                "cannot judge whether this broker is caught up: topic secret: error 29 (TopicAuthorizationFailed); \
                 in sync"
            ),
            "{progress}"
        );
        let safety = stop_safety(&judged, BrokerId(0));
        assert_eq!(
            safety.to_string(),
            "cannot judge whether stopping this broker is safe: topic secret: error 29 (TopicAuthorizationFailed)"
        );
        let alone = ReplicationView {
            live_brokers: BTreeSet::new(),
            ..judged.clone()
        };
        assert_eq!(
            stop_safety(&alone, BrokerId(0)),
            safety,
            "no broker listed is no evidence of being the last one"
        );
        let verdict = drain_verdict(Ok(&safety), Duration::from_secs(1), Duration::from_secs(60));
        assert!(matches!(verdict, DrainVerdict::Wait(why) if why.contains("cannot judge")));
        assert!(matches!(
            drain_verdict(
                Ok(&safety),
                Duration::from_secs(60),
                Duration::from_secs(60)
            ),
            DrainVerdict::Proceed(DrainOutcome::BoundReached(_))
        ));
    }

    #[test]
    fn summaries_name_a_few_partitions_and_count_the_rest() {
        let many: Vec<_> = (0..8)
            .map(|i| partition(i, Some(0), &[0, 1], &[0]))
            .collect();
        let progress = catch_up(&view(&[0, 1], many), BrokerId(1));
        assert!(
            progress.to_string().ends_with("events-4 and 3 more"),
            "{progress}"
        );
    }

    #[test]
    fn stopping_is_safe_only_while_every_partition_keeps_its_minimum() {
        let healthy = view(
            &[0, 1, 2],
            vec![partition(0, Some(0), &[0, 1, 2], &[0, 1, 2])],
        );
        assert_eq!(
            stop_safety(&healthy, BrokerId(0)),
            StopSafety::Safe {
                never_safe: Vec::new()
            }
        );
        // Broker 2 is behind: stopping 0 would leave only 1 in sync.
        let degraded = view(&[0, 1, 2], vec![partition(0, Some(0), &[0, 1, 2], &[0, 1])]);
        assert_eq!(
            stop_safety(&degraded, BrokerId(0)),
            StopSafety::Unsafe {
                at_risk: vec!["events-0: 1/2".into()],
                never_safe: Vec::new()
            }
        );
        // Broker 2 itself is out of sync: stopping it changes no ISR.
        assert!(matches!(
            stop_safety(&degraded, BrokerId(2)),
            StopSafety::Safe { .. }
        ));
    }

    #[test]
    fn a_partition_that_can_never_keep_its_minimum_is_reported_not_waited_for() {
        // Replication factor 2 with min.insync.replicas=2: no wait makes stopping either replica safe.
        let cluster = view(&[0, 1], vec![partition(0, Some(0), &[0, 1], &[0, 1])]);
        let safety = stop_safety(&cluster, BrokerId(0));
        assert_eq!(
            safety,
            StopSafety::Safe {
                never_safe: vec!["events-0".into()]
            }
        );
        assert!(
            safety.to_string().contains("not waited for: events-0"),
            "{safety}"
        );
    }

    #[test]
    fn the_last_live_broker_has_nothing_to_wait_for() {
        let alone = view(&[0], vec![partition(0, Some(0), &[0, 1, 2], &[0])]);
        assert_eq!(stop_safety(&alone, BrokerId(0)), StopSafety::LastBroker);
    }

    #[test]
    fn a_spot_interruption_an_unstarted_kafka_or_a_zero_bound_skip_the_check() {
        let lifecycle = DrainReason::LifecycleTerminated;
        assert_eq!(drain_start(&lifecycle, true, true), DrainStart::Check);
        assert_eq!(
            drain_start(&DrainReason::Requested, true, true),
            DrainStart::Check
        );
        let DrainStart::Skip(why) = drain_start(&DrainReason::SpotInterruption, true, true) else {
            panic!("a spot interruption skips the wait");
        };
        assert!(why.contains("spot interruption"), "{why}");
        assert!(matches!(
            drain_start(&lifecycle, true, false),
            DrainStart::Skip(_)
        ));
        assert!(matches!(
            drain_start(&lifecycle, false, true),
            DrainStart::Skip(_)
        ));
    }

    #[test]
    fn the_drain_waits_while_unsafe_and_proceeds_when_safe_or_at_the_bound() {
        let bound = Duration::from_secs(300);
        let unsafe_now = StopSafety::Unsafe {
            at_risk: vec!["events-0: 1/2".into()],
            never_safe: Vec::new(),
        };
        assert!(matches!(
            drain_verdict(Ok(&unsafe_now), Duration::from_secs(10), bound),
            DrainVerdict::Wait(why) if why.contains("events-0: 1/2")
        ));
        assert!(matches!(
            drain_verdict(Err("connection refused"), Duration::from_secs(10), bound),
            DrainVerdict::Wait(why) if why.contains("connection refused")
        ));
        let DrainVerdict::Proceed(DrainOutcome::BoundReached(why)) =
            drain_verdict(Ok(&unsafe_now), bound, bound)
        else {
            panic!("the bound ends the wait");
        };
        assert!(
            why.contains("waited 5m") && why.contains("events-0"),
            "{why}"
        );
        let safe = StopSafety::Safe {
            never_safe: Vec::new(),
        };
        assert!(matches!(
            drain_verdict(Ok(&safe), Duration::ZERO, bound),
            DrainVerdict::Proceed(DrainOutcome::Safe(_))
        ));
        assert!(matches!(
            drain_verdict(Ok(&StopSafety::LastBroker), Duration::ZERO, bound),
            DrainVerdict::Proceed(DrainOutcome::Safe(why)) if why.contains("last one")
        ));
    }
}
