//! Whether this node's blank KRaft storage may be formatted: the birth rule and the majority check, failing
//! closed ([ADR 0003](../../../docs/decisions/0003-kraft-birth-rule.md), docs/kafka.md).
//!
//! Kafka's documentation (operations, "replace_disk") warns that a controller formatted blank and started while
//! its quorum exists can lose committed metadata: a blank voter counts towards a majority without holding what
//! was committed, and with a voter that is behind it can elect a leader without it (KAFKA-14077). So a blank
//! controller is formatted only
//! * as the cluster's **birth**: EC2 shows every controller's volume and none carries the birth mark
//!   ([`berth_core::birth`]), and no leader describes a quorum (a lone voter without a leader, refusals and
//!   timeouts all look alike at a staggered birth, and the durable evidence, not they, decides); or
//! * beside a **majority**: a leader describes the quorum, its high watermark is known, and the other voters
//!   that hold everything committed (log end at or past it, fetched within [`FETCH_FRESHNESS`] on the
//!   leader's clock) are a majority of the voter set.
//!
//! Anything berth cannot tell is a refusal, saying why: the birth evidence incomplete, the quorum not asked
//! (too little of the deadline left), a born cluster that nobody describes, a high watermark or log end of
//! `-1` (unknown, never current), a stale fetch. A node that is only a broker is formatted without asking (its
//! metadata comes from the controllers), and formatted storage is never formatted. In a dynamic quorum
//! (KIP-853) the controller with the lowest id forms the quorum at birth (`--standalone`); the others, and a
//! blank controller of a born quorum, join with `--no-initial-controllers`. [`decide`] is pure.

use berth_core::birth::Birth;

use crate::format::StorageState;
use crate::quorum::{Quorum, QuorumView, Voter, FETCH_FRESHNESS};

/// This node's part in the quorum, from `process.roles` and how the quorum is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Broker only.
    Broker,
    /// A voter of a static quorum (`controller.quorum.voters`).
    StaticController,
    /// A controller of a dynamic quorum (KIP-853, `controller.quorum.bootstrap.servers`); `first` when it has
    /// the lowest controller id, the one that forms a fresh quorum (`--standalone`).
    DynamicController {
        /// Lowest controller id.
        first: bool,
    },
}

/// What allowed a format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// A broker's blank storage: its metadata comes from the controllers.
    Broker,
    /// The cluster's birth: no controller volume carries the birth mark and no leader describes a quorum.
    Birth,
    /// A majority of the other voters holds everything committed.
    Majority,
}

impl Basis {
    /// The name the journal and `/state` show.
    pub fn name(self) -> &'static str {
        match self {
            Basis::Broker => "broker",
            Basis::Birth => "birth",
            Basis::Majority => "majority",
        }
    }
}

/// What to do with this node's storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageDecision {
    /// Formatted already: Kafka checks the rest.
    LeaveAlone,
    /// Blank, and formatting is safe.
    Format {
        /// What allowed it.
        basis: Basis,
        /// Why, with the evidence (for the journal).
        why: String,
        /// The storage tool's quorum arguments.
        arguments: Vec<String>,
    },
    /// Blank, and formatting now could lose committed metadata, or berth cannot tell: why, and what would
    /// make it safe.
    Refuse(String),
}

/// Decides whether node `me`'s storage may be formatted, and how, from the birth evidence and what the other
/// controllers said. Pure.
pub fn decide(
    storage: &StorageState,
    me: i32,
    role: Role,
    birth: &Birth,
    quorum: &Quorum,
) -> StorageDecision {
    if *storage == StorageState::Formatted {
        return StorageDecision::LeaveAlone;
    }
    let (dynamic, first) = match role {
        Role::Broker => {
            return StorageDecision::Format {
                basis: Basis::Broker,
                why: "a broker's metadata comes from the controllers: blank storage is formatted with the \
                      cluster id"
                    .into(),
                arguments: Vec::new(),
            }
        }
        Role::StaticController => (false, false),
        Role::DynamicController { first } => (true, first),
    };
    if let Birth::Unknown { reason } = birth {
        return StorageDecision::Refuse(format!(
            "the birth evidence is incomplete ({reason}); a blank controller is formatted only as the cluster's \
             birth or beside a majority that holds everything committed"
        ));
    }
    match quorum {
        Quorum::NotAsked(why) => StorageDecision::Refuse(format!(
            "the quorum was not asked ({why}); a blank controller is not formatted on a guess"
        )),
        // A leader describing the quorum is Kafka's own evidence that the cluster exists, marked or not.
        Quorum::Described(view) => majority_rule(view, me, dynamic),
        _ if matches!(birth, Birth::Born { .. }) => StorageDecision::Refuse(format!(
            "the cluster was born ({birth}) and no leader describes its quorum ({}): a blank controller is \
             formatted only beside a majority of voters that hold everything committed; waiting for the other \
             controllers",
            undescribed(quorum)
        )),
        _ => birth_rule(birth, quorum, dynamic, first),
    }
}

/// An unborn cluster and no leader: the controllers form the cluster.
fn birth_rule(birth: &Birth, quorum: &Quorum, dynamic: bool, first: bool) -> StorageDecision {
    let arguments = match (dynamic, first) {
        (false, _) => Vec::new(),
        (true, true) => vec!["--standalone".to_owned()],
        (true, false) => {
            return StorageDecision::Refuse(
                "dynamic quorum, not yet born: the controller with the lowest id forms it (--standalone); this \
                 one joins once that one leads"
                    .into(),
            )
        }
    };
    StorageDecision::Format {
        basis: Basis::Birth,
        why: format!(
            "the cluster's birth: {birth}, and no leader describes a quorum ({})",
            undescribed(quorum)
        ),
        arguments,
    }
}

fn undescribed(quorum: &Quorum) -> String {
    match quorum {
        Quorum::Silent => "no other controller accepts a connection".into(),
        Quorum::Undescribed(why) => format!("could not describe: {why}"),
        Quorum::NotAsked(why) => why.clone(),
        Quorum::Described(view) => format!("leader {}", view.leader_id),
    }
}

/// Why one other voter is not current, if it is not.
fn not_current(voter: &Voter, view: &QuorumView, now: Option<i64>) -> Option<String> {
    if voter.log_end_offset < 0 {
        return Some(format!("{} (log end unknown)", voter.id));
    }
    if voter.log_end_offset < view.high_watermark {
        return Some(format!("{} (log end {})", voter.id, voter.log_end_offset));
    }
    if voter.id != view.leader_id && !voter.fetched_within(now, FETCH_FRESHNESS) {
        return Some(match now {
            Some(now) if voter.last_fetch_timestamp >= 0 => format!(
                "{} (last fetch {} ms ago)",
                voter.id,
                now - voter.last_fetch_timestamp
            ),
            _ => format!("{} (last fetch unknown)", voter.id),
        });
    }
    None
}

fn majority_rule(view: &QuorumView, me: i32, dynamic: bool) -> StorageDecision {
    if view.leader_id < 0 {
        return StorageDecision::Refuse(
            "the quorum has no leader: a blank controller is not formatted until the other voters elect one".into(),
        );
    }
    if view.high_watermark < 0 {
        return StorageDecision::Refuse(format!(
            "the high watermark is unknown (-1: leader {} has not committed in epoch {} yet), so no voter can be \
             shown to hold everything committed: waiting",
            view.leader_id, view.leader_epoch
        ));
    }
    if !dynamic && view.voters.iter().all(|voter| voter.id != me) {
        return StorageDecision::Refuse(format!(
            "this node ({me}) is not a voter of the described quorum [{}]: its configured voter set differs from \
             the cluster's",
            view.voter_ids()
        ));
    }
    let majority = view.voters.len() / 2 + 1;
    let now = view.leader_now();
    let (mut current, mut behind) = (Vec::new(), Vec::new());
    for voter in view.voters.iter().filter(|voter| voter.id != me) {
        match not_current(voter, view, now) {
            None => current.push(format!("{} (log end {})", voter.id, voter.log_end_offset)),
            Some(why) => behind.push(why),
        }
    }
    if current.len() >= majority {
        StorageDecision::Format {
            basis: Basis::Majority,
            why: format!(
                "the other voters {} hold everything committed (high watermark {}, leader {} epoch {}): {} of {} \
                 voters, a majority; this controller catches up from them",
                current.join(", "),
                view.high_watermark,
                view.leader_id,
                view.leader_epoch,
                current.len(),
                view.voters.len()
            ),
            arguments: if dynamic {
                vec!["--no-initial-controllers".to_owned()]
            } else {
                Vec::new()
            },
        }
    } else {
        StorageDecision::Refuse(format!(
            "only {} of {} voters other than this one hold everything committed (high watermark {}): current \
             [{}], not current [{}]; {} are needed. Formatting this controller now could lose committed metadata \
             (Kafka's replace_disk rule): waiting for the others to catch up",
            current.len(),
            view.voters.len(),
            view.high_watermark,
            current.join(", "),
            behind.join(", "),
            majority
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use berth_core::birth::Marked;
    use berth_core::BrokerId;

    use super::*;
    use crate::probe::ProbeError;
    use crate::quorum::{ask_timeout, summarize, QuorumError, NO_DIRECTORY_ID};

    /// The leader's clock in these views.
    const NOW: i64 = 1_000_000;

    fn view(leader: i32, high_watermark: i64, ends: &[(i32, i64)]) -> Quorum {
        Quorum::Described(QuorumView {
            leader_id: leader,
            leader_epoch: 3,
            high_watermark,
            voters: ends
                .iter()
                .map(|(id, end)| Voter {
                    id: *id,
                    directory_id: NO_DIRECTORY_ID.into(),
                    log_end_offset: *end,
                    // The leader reports its own fetch as the time of the answer; the others fetched 100 ms ago.
                    last_fetch_timestamp: if *id == leader { NOW } else { NOW - 100 },
                })
                .collect(),
            observers: Vec::new(),
            answered_by: None,
        })
    }

    fn unborn() -> Birth {
        Birth::Unborn {
            volumes: (0..3)
                .map(|id| (BrokerId(id), format!("vol-{id}")))
                .collect(),
        }
    }

    fn born() -> Birth {
        Birth::Born {
            marked: vec![Marked {
                id: BrokerId(0),
                volume_id: "vol-0".into(),
                mark: "cluster=x voters=0@a:1".into(),
            }],
        }
    }

    fn unknown() -> Birth {
        Birth::Unknown {
            reason: "no volume is tagged for controller 1".into(),
        }
    }

    const BLANK: StorageState = StorageState::Blank;
    const STATIC: Role = Role::StaticController;

    fn refusal(decision: StorageDecision) -> String {
        match decision {
            StorageDecision::Refuse(why) => why,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn basis(decision: &StorageDecision) -> Option<Basis> {
        match decision {
            StorageDecision::Format { basis, .. } => Some(*basis),
            _ => None,
        }
    }

    #[test]
    fn formatted_storage_is_never_formatted_and_a_brokers_blank_storage_is() {
        let quorum = Quorum::Undescribed("x".into());
        assert_eq!(
            decide(&StorageState::Formatted, 1, STATIC, &unknown(), &quorum),
            StorageDecision::LeaveAlone
        );
        assert_eq!(
            basis(&decide(&BLANK, 4, Role::Broker, &unknown(), &quorum)),
            Some(Basis::Broker)
        );
    }

    #[test]
    fn an_unborn_cluster_without_a_leader_is_born_however_the_others_answered() {
        let lone_voter =
            Quorum::Undescribed("10.0.1.10:9093 answered DescribeQuorum with error 6".into());
        let timed_out = Quorum::Undescribed("10.0.2.10:9093: no answer within 3s".into());
        for quorum in [Quorum::Silent, lone_voter, timed_out] {
            let decision = decide(&BLANK, 2, STATIC, &unborn(), &quorum);
            let StorageDecision::Format {
                basis,
                why,
                arguments,
                ..
            } = &decision
            else {
                panic!("{quorum:?}: {decision:?}");
            };
            assert_eq!(*basis, Basis::Birth);
            assert!(
                why.contains("birth") && why.contains("vol-1 (controller 1)"),
                "{why}"
            );
            assert!(arguments.is_empty());
        }
    }

    #[test]
    fn a_born_cluster_is_never_formatted_on_silence_or_a_timeout() {
        let silent = refusal(decide(&BLANK, 0, STATIC, &born(), &Quorum::Silent));
        assert!(
            silent.contains("born") && silent.contains("no other controller accepts"),
            "{silent}"
        );
        let timeout = summarize(vec![Err(QuorumError::Unreachable(ProbeError::Timeout {
            listener: "10.0.2.10:9093".parse().unwrap(),
            after: Duration::from_secs(3),
        }))]);
        let timed_out = refusal(decide(&BLANK, 0, STATIC, &born(), &timeout));
        assert!(
            timed_out.contains(
                "could not describe: Kafka's listener 10.0.2.10:9093 did not answer within 3s"
            ),
            "{timed_out}"
        );
    }

    #[test]
    fn incomplete_birth_evidence_or_a_deadline_too_short_to_ask_refuses() {
        let why = refusal(decide(&BLANK, 0, STATIC, &unknown(), &Quorum::Silent));
        assert!(
            why.contains("no volume is tagged for controller 1"),
            "{why}"
        );
        let too_short =
            ask_timeout(Duration::from_millis(900), Duration::from_secs(3)).unwrap_err();
        for birth in [unborn(), born()] {
            let why = refusal(decide(
                &BLANK,
                0,
                STATIC,
                &birth,
                &Quorum::NotAsked(too_short.clone()),
            ));
            assert!(
                why.contains("not asked") && why.contains("less than the 3s"),
                "{why}"
            );
        }
    }

    #[test]
    fn a_blank_controller_is_formatted_only_while_the_others_hold_a_majority() {
        // 3 voters, this one (2) blank: the two others caught up are a majority.
        let ok = view(0, 100, &[(0, 120), (1, 100), (2, 40)]);
        let decision = decide(&BLANK, 2, STATIC, &born(), &ok);
        assert_eq!(basis(&decision), Some(Basis::Majority), "{decision:?}");
        // Kafka's own description of a leader is evidence of a born cluster, marked or not.
        assert_eq!(
            basis(&decide(&BLANK, 2, STATIC, &unborn(), &ok)),
            Some(Basis::Majority)
        );
        // One of the others is behind: 1 of 3 is not a majority.
        let behind = view(0, 100, &[(0, 120), (1, 60), (2, 40)]);
        let why = refusal(decide(&BLANK, 2, STATIC, &born(), &behind));
        assert!(
            why.contains("not current [1 (log end 60)]") && why.contains("2 are needed"),
            "{why}"
        );
        // 5 voters: three others current are enough, two are not.
        let five = view(0, 10, &[(0, 10), (1, 10), (2, 10), (3, 0), (4, 0)]);
        assert!(matches!(
            decide(&BLANK, 4, STATIC, &born(), &five),
            StorageDecision::Format { .. }
        ));
        let five = view(0, 10, &[(0, 10), (1, 10), (2, 3), (3, 0), (4, 0)]);
        refusal(decide(&BLANK, 4, STATIC, &born(), &five));
    }

    #[test]
    fn an_unknown_high_watermark_is_never_caught_up() {
        // After an election the leader reports -1 until a majority fetched in its epoch: every log end is
        // "at or past" it, and none of them counts.
        let unknown_hw = view(0, -1, &[(0, 120), (1, 100), (2, -1)]);
        let why = refusal(decide(&BLANK, 2, STATIC, &born(), &unknown_hw));
        assert!(why.contains("high watermark is unknown (-1"), "{why}");
        assert!(why.contains("epoch 3"), "{why}");
    }

    #[test]
    fn an_unknown_log_end_is_not_current() {
        let unknown_end = view(0, 0, &[(0, 10), (1, -1), (2, -1)]);
        let why = refusal(decide(&BLANK, 2, STATIC, &born(), &unknown_end));
        assert!(why.contains("1 (log end unknown)"), "{why}");
    }

    #[test]
    fn a_voter_whose_last_fetch_is_stale_is_not_current() {
        let Quorum::Described(mut stale) = view(0, 100, &[(0, 120), (1, 100), (2, 0)]) else {
            unreachable!()
        };
        stale.voters[1].last_fetch_timestamp = NOW - FETCH_FRESHNESS.as_millis() as i64 - 1;
        let why = refusal(decide(
            &BLANK,
            2,
            STATIC,
            &born(),
            &Quorum::Described(stale.clone()),
        ));
        assert!(why.contains("1 (last fetch 10001 ms ago)"), "{why}");
        stale.voters[1].last_fetch_timestamp = -1;
        let why = refusal(decide(
            &BLANK,
            2,
            STATIC,
            &born(),
            &Quorum::Described(stale.clone()),
        ));
        assert!(why.contains("1 (last fetch unknown)"), "{why}");
        // Without the leader's own timestamp there is no clock to measure freshness on: nobody but the
        // leader is current.
        stale.voters[1].last_fetch_timestamp = NOW;
        stale.voters[0].last_fetch_timestamp = -1;
        refusal(decide(
            &BLANK,
            2,
            STATIC,
            &born(),
            &Quorum::Described(stale),
        ));
    }

    #[test]
    fn a_node_outside_the_described_static_voter_set_is_refused() {
        let others = view(0, 10, &[(0, 10), (1, 10), (2, 10)]);
        let why = refusal(decide(&BLANK, 5, STATIC, &born(), &others));
        assert!(why.contains("not a voter"), "{why}");
    }

    #[test]
    fn a_dynamic_quorum_is_formed_by_the_first_controller_and_joined_by_the_others() {
        let first = Role::DynamicController { first: true };
        let other = Role::DynamicController { first: false };
        let formed = decide(&BLANK, 0, first, &unborn(), &Quorum::Silent);
        assert!(
            matches!(&formed, StorageDecision::Format { basis: Basis::Birth, arguments, .. } if arguments == &["--standalone"]),
            "{formed:?}"
        );
        assert!(
            refusal(decide(&BLANK, 1, other, &unborn(), &Quorum::Silent)).contains("lowest id")
        );
        // Born: the first controller never forms a second quorum.
        refusal(decide(&BLANK, 0, first, &born(), &Quorum::Silent));
        let led = view(0, 7, &[(0, 7)]);
        assert!(matches!(
            decide(&BLANK, 1, other, &unborn(), &led),
            StorageDecision::Format { basis: Basis::Majority, arguments, .. } if arguments == ["--no-initial-controllers"]
        ));
    }

    #[test]
    fn no_leader_is_a_refusal() {
        let leaderless = view(-1, 0, &[(0, 5), (1, 5), (2, 5)]);
        refusal(decide(&BLANK, 2, STATIC, &born(), &leaderless));
    }
}
