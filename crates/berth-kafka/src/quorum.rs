//! The KRaft quorum as its leader describes it (`DescribeQuorum` v2, the API behind `kafka-metadata-quorum
//! describe --replication`), and what berth reads from it.
//!
//! Only the leader answers DescribeQuorum (`KafkaRaftClient.handleDescribeQuorumRequest`; followers answer
//! NOT_LEADER_OR_FOLLOWER), so berth asks every other controller at once ([`observe`]) and keeps the answer
//! of the highest epoch. How an ask ended matters to the decisions built on it ([`crate::format_rule`]): a
//! connection every controller refused is silence, a timeout or an error is "could not describe", never
//! silence, and an ask is not made at all when less than its timeout remains ([`ask_timeout`]).
//!
//! What the leader reports, as `raft/LeaderState.java` and `RaftUtil.toReplicaState` build it (Kafka 3.9-4.x):
//! the high watermark is `-1` until a majority has fetched past the start of the leader's epoch; a voter that
//! has not fetched in this epoch has log end `-1`; `last_fetch_timestamp` is the leader's wall clock at the
//! voter's last fetch (`-1` if none), and the leader reports its own as the time of the answer, so a voter's
//! staleness is measured on the leader's clock alone ([`Voter::fetched_within`]). Also read here: whether this
//! node is a voter ([`membership`], KIP-853 directory ids) and whether it is a voter at the high watermark
//! ([`at_high_watermark`]).

use std::net::SocketAddr;
use std::time::Duration;

use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::describe_quorum_response::ReplicaState;
use kafka_protocol::messages::{ApiKey, DescribeQuorumRequest, DescribeQuorumResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::client::{KafkaClient, Peer};
use crate::probe::{self, ProbeError};

/// The DescribeQuorum version berth asks in (Kafka 3.9 and 4.x answer v0-v2; v2 carries directory ids).
pub const DESCRIBE_QUORUM_VERSION: i16 = 2;
/// The metadata log's topic.
const METADATA_TOPIC: &str = "__cluster_metadata";
/// A voter whose last fetch is older than this, on the leader's clock, is not counted as current: its reported
/// log end may belong to an incarnation that has since died (and come back blank). Followers fetch without
/// pause (Kafka's `controller.quorum.fetch.timeout.ms` is 2 s: a follower silent that long starts an election),
/// so 10 s is five such timeouts.
pub const FETCH_FRESHNESS: Duration = Duration::from_secs(10);
/// Kafka's `Uuid.ZERO` as printed: the directory id of a voter in a static quorum (voters carry none).
pub const NO_DIRECTORY_ID: &str = "AAAAAAAAAAAAAAAAAAAAAA";

/// One voter (or observer) as the leader reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voter {
    /// The node id.
    pub id: i32,
    /// Its directory id (KIP-853) as Kafka writes it in `meta.properties` (22 characters of base64url;
    /// [`NO_DIRECTORY_ID`] in a static quorum).
    pub directory_id: String,
    /// How far its log reaches, as the leader last saw it; `-1`: unknown (no fetch in this epoch).
    pub log_end_offset: i64,
    /// The leader's wall clock (ms) at its last fetch; `-1`: unknown. The leader reports its own as now.
    pub last_fetch_timestamp: i64,
}

impl Voter {
    /// Whether it fetched within `freshness` of `now` (the leader's clock); unknown is not.
    pub fn fetched_within(&self, now: Option<i64>, freshness: Duration) -> bool {
        match now {
            Some(now) if self.last_fetch_timestamp >= 0 => {
                now.saturating_sub(self.last_fetch_timestamp) <= freshness.as_millis() as i64
            }
            _ => false,
        }
    }
}

/// The quorum as its leader describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumView {
    /// The leader (-1: none).
    pub leader_id: i32,
    /// The leader's epoch.
    pub leader_epoch: i32,
    /// Everything below it is committed; `-1`: unknown (not yet committed in this epoch).
    pub high_watermark: i64,
    /// The voter set.
    pub voters: Vec<Voter>,
    /// Observers (brokers, and controllers that are not voters).
    pub observers: Vec<Voter>,
    /// The controller listener that answered (the leader's).
    pub answered_by: Option<SocketAddr>,
}

impl QuorumView {
    /// The leader's clock at the answer: its own `last_fetch_timestamp`.
    pub fn leader_now(&self) -> Option<i64> {
        self.voters
            .iter()
            .find(|voter| voter.id == self.leader_id)
            .map(|leader| leader.last_fetch_timestamp)
            .filter(|now| *now >= 0)
    }

    /// The voter ids, for messages.
    pub fn voter_ids(&self) -> String {
        self.voters
            .iter()
            .map(|voter| voter.id.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What berth saw of the quorum when it asked the other controllers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Quorum {
    /// Every other controller refused the connection (nothing listens), or there is no other controller.
    Silent,
    /// A controller (the leader) described the quorum.
    Described(QuorumView),
    /// Some controller could not describe it: an error (no leader yet: NOT_LEADER_OR_FOLLOWER), a timeout, an
    /// unreachable address: why.
    Undescribed(String),
    /// Not asked: too little of the deadline was left (why).
    NotAsked(String),
}

/// The time an ask may take, or why not to ask: asking with less than `ask` left in the deadline would end
/// in timeouts that prove nothing. Pure.
pub fn ask_timeout(remaining: Duration, ask: Duration) -> Result<Duration, String> {
    if remaining >= ask {
        Ok(ask)
    } else {
        Err(format!(
            "only {} of the deadline is left, less than the {} an ask of the quorum may take: not asked",
            berth_core::duration::format_duration(remaining),
            berth_core::duration::format_duration(ask)
        ))
    }
}

/// Why a controller could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    /// It was not reached, not secured or authenticated, did not answer in time, or the exchange broke.
    #[error(transparent)]
    Unreachable(#[from] ProbeError),
    /// The controller answered with an error code (e.g. 6, NOT_LEADER_OR_FOLLOWER).
    #[error("{controller} answered DescribeQuorum with error {code}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Refused {
        /// The controller.
        controller: SocketAddr,
        /// Kafka's error code.
        code: i16,
        /// Its message.
        message: Option<String>,
    },
    /// The ask's task ended without an answer.
    #[error("the ask was aborted: {reason}")]
    Aborted {
        /// Why.
        reason: String,
    },
}

/// Sends one DescribeQuorum for the metadata log to a controller's listener, through `client` (the controller
/// listener's security), within `timeout`.
pub async fn describe(
    client: &KafkaClient,
    controller: Peer,
    timeout: Duration,
) -> Result<QuorumView, QuorumError> {
    let started = std::time::Instant::now();
    let mut connection = client
        .connect(controller.listener, controller.id, timeout)
        .await?;
    let remaining = timeout.saturating_sub(started.elapsed());
    let request = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
        .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
    let response: DescribeQuorumResponse = probe::within(
        controller.listener,
        remaining,
        connection.round_trip(ApiKey::DescribeQuorum, DESCRIBE_QUORUM_VERSION, &request),
    )
    .await?;
    view_of(controller.listener, &response)
}

/// The quorum as a controller's answer describes it, or its refusal.
fn view_of(
    controller: SocketAddr,
    response: &DescribeQuorumResponse,
) -> Result<QuorumView, QuorumError> {
    let refused = |code, message: Option<&StrBytes>| QuorumError::Refused {
        controller,
        code,
        message: message.map(|m| m.to_string()),
    };
    if response.error_code != 0 {
        return Err(refused(
            response.error_code,
            response.error_message.as_ref(),
        ));
    }
    let partition = response
        .topics
        .iter()
        .flat_map(|topic| &topic.partitions)
        .next()
        .ok_or_else(|| refused(-1, None))?;
    if partition.error_code != 0 {
        return Err(refused(
            partition.error_code,
            partition.error_message.as_ref(),
        ));
    }
    let states = |replicas: &[ReplicaState]| replicas.iter().map(voter_of).collect();
    Ok(QuorumView {
        leader_id: partition.leader_id.0,
        leader_epoch: partition.leader_epoch,
        high_watermark: partition.high_watermark,
        voters: states(&partition.current_voters),
        observers: states(&partition.observers),
        answered_by: Some(controller),
    })
}

fn voter_of(replica: &ReplicaState) -> Voter {
    Voter {
        id: replica.replica_id.0,
        directory_id: kafka_uuid(replica.replica_directory_id.as_bytes()),
        log_end_offset: replica.log_end_offset,
        last_fetch_timestamp: replica.last_fetch_timestamp,
    }
}

/// A UUID as Kafka prints it (`Uuid.toString()`): its 16 bytes in base64url without padding.
pub fn kafka_uuid(bytes: &[u8; 16]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(22);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// Asks every controller at once through `client` (the controller listener's security), each bounded by
/// `timeout`, and sums up what they said ([`summarize`]).
pub async fn observe(client: &KafkaClient, controllers: &[Peer], timeout: Duration) -> Quorum {
    let mut asks = tokio::task::JoinSet::new();
    for controller in controllers {
        let (client, controller) = (client.clone(), *controller);
        asks.spawn(async move { describe(&client, controller, timeout).await });
    }
    let mut answers = Vec::with_capacity(controllers.len());
    while let Some(answer) = asks.join_next().await {
        answers.push(answer.unwrap_or_else(|error| {
            Err(QuorumError::Aborted {
                reason: error.to_string(),
            })
        }));
    }
    summarize(answers)
}

/// The quorum from the answers of every controller asked: the description of the highest epoch when any
/// gave one; silence only when every one refused the connection (nothing listens there, a positive answer
/// of its host); anything else (an error, a timeout, an unreachable address, a failed TLS or SASL step) is
/// "could not describe". Pure.
pub fn summarize(answers: Vec<Result<QuorumView, QuorumError>>) -> Quorum {
    let mut views = Vec::new();
    let mut undescribed = Vec::new();
    for answer in answers {
        match answer {
            Ok(view) => views.push(view),
            Err(QuorumError::Unreachable(ProbeError::Connect { source, .. }))
                if source.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Err(error) => undescribed.push(error.to_string()),
        }
    }
    if let Some(view) = views.into_iter().max_by_key(|view| view.leader_epoch) {
        return Quorum::Described(view);
    }
    if undescribed.is_empty() {
        Quorum::Silent
    } else {
        Quorum::Undescribed(undescribed.join("; "))
    }
}

/// Whether this node, as `(id, directory id)`, is a voter of the described quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    /// It is.
    Voter,
    /// It is not: why, and the `kafka-metadata-quorum` commands that make it one.
    NotVoter {
        /// What the quorum shows.
        reason: String,
        /// The commands that fix it, to run on this node.
        fix: String,
    },
}

/// Confirms that node `me` with directory id `directory_id` is a voter. In a static quorum voters carry no
/// directory id and the id alone decides; in a dynamic one (KIP-853) the pair must be in the voter set: a
/// voter with this id and another directory id is a stale voter (this node's storage came back blank), and
/// this node is then an observer until the stale voter is removed and it is added (by hand, or by Kafka's
/// `controller.quorum.auto.join.enable`, 4.2+). Pure.
pub fn membership(view: &QuorumView, me: i32, directory_id: &str, dynamic: bool) -> Membership {
    let mine: Vec<&Voter> = view.voters.iter().filter(|v| v.id == me).collect();
    if mine
        .iter()
        .any(|voter| !dynamic || voter.directory_id == directory_id)
    {
        return Membership::Voter;
    }
    let leader = view
        .answered_by
        .map_or_else(|| "<leader host:port>".to_owned(), |a| a.to_string());
    let add = format!(
        "kafka-metadata-quorum.sh --bootstrap-controller {leader} --command-config <this node's server.properties> add-controller"
    );
    let observer = if view.observers.iter().any(|o| o.id == me) {
        "an observer"
    } else {
        "not in the quorum"
    };
    match mine.first() {
        Some(stale) if dynamic => Membership::NotVoter {
            reason: format!(
                "node {me} (directory {directory_id}) is {observer}; the voter set [{}] still holds node {me} with \
                 directory {} (a stale voter: this node's storage was formatted again)",
                view.voter_ids(),
                stale.directory_id
            ),
            fix: format!(
                "kafka-metadata-quorum.sh --bootstrap-controller {leader} remove-controller --controller-id {me} \
                 --controller-directory-id {}; then {add} (or set controller.quorum.auto.join.enable=true, \
                 Kafka 4.2+)",
                stale.directory_id
            ),
        },
        _ => Membership::NotVoter {
            reason: format!(
                "node {me} (directory {directory_id}) is {observer}: the voter set is [{}]",
                view.voter_ids()
            ),
            fix: if dynamic {
                format!("{add} (or set controller.quorum.auto.join.enable=true, Kafka 4.2+)")
            } else {
                "a static voter set comes from controller.quorum.voters: this node's id must be in \
                 kafka.controller_ids on every node"
                    .to_owned()
            },
        },
    }
}

/// Whether node `me` is a voter at the quorum's committed high watermark: a leader, a high watermark above 0
/// (something committed), this node a voter ([`membership`]) whose log reaches it and that fetched within
/// [`FETCH_FRESHNESS`] (the leader always has). The evidence, or why not. Pure.
pub fn at_high_watermark(
    view: &QuorumView,
    me: i32,
    directory_id: &str,
    dynamic: bool,
) -> Result<String, String> {
    if view.leader_id < 0 {
        return Err("the quorum has no leader".into());
    }
    if view.high_watermark <= 0 {
        return Err(format!(
            "the quorum's high watermark is {} (nothing committed in epoch {} yet)",
            view.high_watermark, view.leader_epoch
        ));
    }
    if let Membership::NotVoter { reason, .. } = membership(view, me, directory_id, dynamic) {
        return Err(reason);
    }
    let now = view.leader_now();
    let me_voter = view
        .voters
        .iter()
        .find(|v| v.id == me && (!dynamic || v.directory_id == directory_id))
        .ok_or_else(|| format!("node {me} is not a voter"))?;
    if me_voter.log_end_offset < view.high_watermark {
        return Err(format!(
            "node {me}'s log ends at {}, below the high watermark {}",
            me_voter.log_end_offset, view.high_watermark
        ));
    }
    if me != view.leader_id && !me_voter.fetched_within(now, FETCH_FRESHNESS) {
        return Err(format!(
            "node {me} last fetched at {} (the leader's clock is at {}): not within {}",
            me_voter.last_fetch_timestamp,
            now.unwrap_or(-1),
            berth_core::duration::format_duration(FETCH_FRESHNESS)
        ));
    }
    Ok(format!(
        "voter {me} at the high watermark {} (leader {} epoch {}, log end {})",
        view.high_watermark, view.leader_id, view.leader_epoch, me_voter.log_end_offset
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A voter as the leader reports it: `(id, log end, last fetch)` with no directory id.
    pub(crate) fn voter(id: i32, end: i64, fetched: i64) -> Voter {
        Voter {
            id,
            directory_id: NO_DIRECTORY_ID.into(),
            log_end_offset: end,
            last_fetch_timestamp: fetched,
        }
    }

    fn view(leader: i32, high_watermark: i64, voters: Vec<Voter>) -> QuorumView {
        QuorumView {
            leader_id: leader,
            leader_epoch: 3,
            high_watermark,
            voters,
            observers: Vec::new(),
            answered_by: Some("10.0.1.10:9093".parse().unwrap()),
        }
    }

    #[test]
    fn directory_ids_read_as_kafka_writes_them() {
        // Kafka's Uuid.toString() of 7fffffff-ffff-ffff-8000-000000000001 (base64url without padding, as Python's base64.urlsafe_b64encode gives it).
        let bytes = [
            0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1,
        ];
        assert_eq!(kafka_uuid(&bytes), "f_________-AAAAAAAAAAQ");
        assert_eq!(kafka_uuid(&[0; 16]), NO_DIRECTORY_ID);
    }

    fn refused(controller: &str) -> QuorumError {
        QuorumError::Unreachable(ProbeError::Connect {
            listener: controller.parse().unwrap(),
            source: std::io::ErrorKind::ConnectionRefused.into(),
        })
    }

    #[test]
    fn only_refused_connections_are_silence_and_a_timeout_is_could_not_describe() {
        assert_eq!(summarize(Vec::new()), Quorum::Silent);
        assert_eq!(
            summarize(vec![
                Err(refused("10.0.1.10:9093")),
                Err(refused("10.0.2.10:9093"))
            ]),
            Quorum::Silent
        );
        let timed_out = summarize(vec![
            Err(refused("10.0.1.10:9093")),
            Err(QuorumError::Unreachable(ProbeError::Timeout {
                listener: "10.0.2.10:9093".parse().unwrap(),
                after: Duration::from_secs(3),
            })),
        ]);
        assert!(
            matches!(&timed_out, Quorum::Undescribed(why)
                if why.contains("listener 10.0.2.10:9093 did not answer within 3s")),
            "{timed_out:?}"
        );
        let unreachable = summarize(vec![Err(QuorumError::Unreachable(ProbeError::Connect {
            listener: "10.0.2.10:9093".parse().unwrap(),
            source: std::io::ErrorKind::HostUnreachable.into(),
        }))]);
        assert!(
            matches!(unreachable, Quorum::Undescribed(_)),
            "{unreachable:?}"
        );
        let newer = view(1, 9, vec![voter(1, 9, 5)]);
        let older = QuorumView {
            leader_epoch: 2,
            ..view(0, 5, vec![voter(0, 5, 5)])
        };
        assert_eq!(
            summarize(vec![
                Ok(older),
                Err(refused("10.0.1.10:9093")),
                Ok(newer.clone())
            ]),
            Quorum::Described(newer)
        );
    }

    #[test]
    fn an_ask_needs_its_whole_timeout_left_in_the_deadline() {
        let ask = Duration::from_secs(3);
        assert_eq!(ask_timeout(Duration::from_secs(10), ask), Ok(ask));
        assert_eq!(ask_timeout(ask, ask), Ok(ask));
        let why = ask_timeout(Duration::from_millis(2999), ask).unwrap_err();
        assert!(why.contains("less than the 3s"), "{why}");
        assert!(ask_timeout(Duration::ZERO, ask).is_err());
    }

    #[test]
    fn a_fetch_is_fresh_only_when_known_and_recent_on_the_leaders_clock() {
        let fresh = FETCH_FRESHNESS.as_millis() as i64;
        assert!(voter(1, 5, 1_000).fetched_within(Some(1_000 + fresh), FETCH_FRESHNESS));
        assert!(!voter(1, 5, 1_000).fetched_within(Some(1_001 + fresh), FETCH_FRESHNESS));
        assert!(!voter(1, 5, -1).fetched_within(Some(1_000), FETCH_FRESHNESS));
        assert!(!voter(1, 5, 1_000).fetched_within(None, FETCH_FRESHNESS));
        let described = view(0, 5, vec![voter(0, 5, 77), voter(1, 5, 70)]);
        assert_eq!(described.leader_now(), Some(77));
    }

    #[test]
    fn a_static_voter_is_its_id_and_a_dynamic_one_its_id_and_directory() {
        let static_view = view(0, 5, vec![voter(0, 5, 9), voter(1, 5, 9)]);
        assert_eq!(
            membership(&static_view, 1, "whatever", false),
            Membership::Voter
        );
        let Membership::NotVoter { fix, .. } = membership(&static_view, 2, "x", false) else {
            panic!("2 is not a voter");
        };
        assert!(fix.contains("kafka.controller_ids"), "{fix}");

        let mut dynamic = view(0, 5, vec![voter(0, 5, 9), voter(1, 5, 9)]);
        dynamic.voters[1].directory_id = "old_________________A".into();
        dynamic.observers.push(Voter {
            directory_id: "new_________________A".into(),
            ..voter(1, 5, 9)
        });
        assert_eq!(
            membership(&dynamic, 1, "old_________________A", true),
            Membership::Voter
        );
        let Membership::NotVoter { reason, fix } =
            membership(&dynamic, 1, "new_________________A", true)
        else {
            panic!("a new directory id is not the voter");
        };
        assert!(
            reason.contains("an observer") && reason.contains("stale voter"),
            "{reason}"
        );
        assert!(
            fix.contains("remove-controller --controller-id 1 --controller-directory-id old_________________A")
                && fix.contains("--bootstrap-controller 10.0.1.10:9093")
                && fix.contains("add-controller"),
            "{fix}"
        );
        let Membership::NotVoter { fix, .. } = membership(&dynamic, 2, "two", true) else {
            panic!("2 is not a voter");
        };
        assert!(
            fix.contains("add-controller") && !fix.contains("remove-controller"),
            "{fix}"
        );
    }

    #[test]
    fn a_voter_at_the_high_watermark_has_a_leader_a_commit_its_log_and_a_fresh_fetch() {
        let good = view(0, 50, vec![voter(0, 60, 10_000), voter(1, 50, 9_000)]);
        assert!(at_high_watermark(&good, 1, "", false).is_ok());
        assert!(at_high_watermark(&good, 0, "", false).is_ok());
        let no_commit = view(0, -1, vec![voter(0, 60, 10_000), voter(1, 60, 9_000)]);
        assert!(at_high_watermark(&no_commit, 1, "", false)
            .unwrap_err()
            .contains("high watermark is -1"));
        let behind = view(0, 50, vec![voter(0, 60, 10_000), voter(1, 49, 9_000)]);
        assert!(at_high_watermark(&behind, 1, "", false)
            .unwrap_err()
            .contains("below the high watermark 50"));
        let stale = view(0, 50, vec![voter(0, 60, 30_000), voter(1, 50, 9_000)]);
        assert!(at_high_watermark(&stale, 1, "", false)
            .unwrap_err()
            .contains("not within 10s"));
        assert!(at_high_watermark(&good, 2, "", false).is_err());
    }
}
