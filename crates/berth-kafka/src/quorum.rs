//! KRaft quorum safety: whether a controller's blank storage may be formatted.
//!
//! Kafka's documentation (operations, "replace_disk") warns that a controller formatted blank and started while
//! the quorum exists can lose committed metadata, unless a majority of the other voters hold everything
//! committed. So before formatting a controller's blank storage berth looks at the quorum:
//! * nothing answers on any other controller's port: a fresh cluster (every host formats with the configured
//!   cluster id and the static voters berth renders);
//! * something answers: berth asks for `DescribeQuorum` (the API `kafka-metadata-quorum describe --replication`
//!   uses) and formats only when the other voters that have fetched up to the high watermark are a majority of
//!   the voter set; otherwise it refuses, retryably, saying who is behind, and Kafka stays stopped.
//!
//! A node that is only a broker is formatted without asking (its metadata comes from the controllers), and a
//! node whose storage is formatted is never formatted. In a dynamic quorum (KIP-853) the controller with the
//! lowest id forms a fresh quorum (`--standalone`); the others wait for its leader and join with
//! `--no-initial-controllers`, as does a controller whose storage comes back blank (its new directory id makes
//! it an observer until Kafka's auto-join, 4.2+, or an operator's remove/add makes it a voter again). The
//! decision ([`decide`]) is pure; [`observe`] does the looking.

use std::net::SocketAddr;
use std::time::Duration;

use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::{ApiKey, DescribeQuorumRequest, DescribeQuorumResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::client::{KafkaClient, Peer};
use crate::format::StorageState;
use crate::probe::{self, ProbeError};

/// The DescribeQuorum version berth asks in (Kafka 3.9 and 4.x answer v0-v2; v2 carries directory ids).
pub const DESCRIBE_QUORUM_VERSION: i16 = 2;
/// The metadata log's topic.
const METADATA_TOPIC: &str = "__cluster_metadata";

/// One voter as the leader reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voter {
    /// The node id.
    pub id: i32,
    /// Its directory id (KIP-853) as Kafka writes it in `meta.properties` (22 characters of base64url; all
    /// `A` in a static quorum, where voters carry none).
    pub directory_id: String,
    /// How far its log reaches, as the leader last saw it.
    pub log_end_offset: i64,
}

/// The quorum as its leader describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumView {
    /// The leader (-1: none).
    pub leader_id: i32,
    /// The leader's epoch.
    pub leader_epoch: i32,
    /// Everything below it is committed.
    pub high_watermark: i64,
    /// The voter set.
    pub voters: Vec<Voter>,
}

/// What berth saw of the quorum before formatting a controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Quorum {
    /// No other controller answers on its port.
    Silent,
    /// A controller described the quorum.
    Described(QuorumView),
    /// Some controller answers, but none described the quorum (no leader yet, or an error): why.
    Undescribed(String),
}

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

/// What to do with this node's storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageDecision {
    /// Formatted already: Kafka checks the rest.
    LeaveAlone,
    /// Blank, and formatting is safe: why (for the log), and the storage tool's quorum arguments.
    Format(String, Vec<String>),
    /// Blank, and formatting now could lose committed metadata: why, and what would make it safe.
    Refuse(String),
}

/// Decides whether node `me`'s storage may be formatted, and how. Pure.
pub fn decide(storage: &StorageState, me: i32, role: Role, quorum: &Quorum) -> StorageDecision {
    if *storage == StorageState::Formatted {
        return StorageDecision::LeaveAlone;
    }
    let join = match role {
        Role::Broker => {
            return StorageDecision::Format(
                "a broker's metadata comes from the controllers: blank storage is formatted with the cluster id"
                    .into(),
                Vec::new(),
            )
        }
        Role::StaticController => Vec::new(),
        Role::DynamicController { .. } => vec!["--no-initial-controllers".to_owned()],
    };
    let view = match (quorum, role) {
        (Quorum::Silent, Role::DynamicController { first: false }) => {
            return StorageDecision::Refuse(
                "dynamic quorum and no controller answers: the controller with the lowest id forms it \
                 (--standalone); this one joins once that one leads"
                    .into(),
            )
        }
        (Quorum::Silent, _) => {
            let arguments = match role {
                Role::DynamicController { .. } => vec!["--standalone".to_owned()],
                _ => Vec::new(),
            };
            return StorageDecision::Format(
                "no other controller answers: a fresh cluster, formed with the configured cluster id".into(),
                arguments,
            );
        }
        (Quorum::Undescribed(why), _) => {
            return StorageDecision::Refuse(format!(
                "a controller answers but the quorum could not be described ({why}); a blank controller is not \
                 formatted until the other voters are known to hold the committed metadata"
            ))
        }
        (Quorum::Described(view), _) => view,
    };
    majority_rule(view, me, join)
}

fn majority_rule(view: &QuorumView, me: i32, arguments: Vec<String>) -> StorageDecision {
    if view.leader_id < 0 {
        return StorageDecision::Refuse(
            "the quorum has no leader: a blank controller is not formatted until the other voters elect one".into(),
        );
    }
    let majority = view.voters.len() / 2 + 1;
    let (current, behind): (Vec<&Voter>, Vec<&Voter>) = view
        .voters
        .iter()
        .filter(|voter| voter.id != me)
        .partition(|voter| voter.log_end_offset >= view.high_watermark);
    let ids = |voters: &[&Voter]| {
        voters
            .iter()
            .map(|v| format!("{} (log end {})", v.id, v.log_end_offset))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if current.len() >= majority {
        StorageDecision::Format(
            format!(
                "the other voters {} hold everything committed (high watermark {}, leader {} epoch {}): {} of \
                 {} voters, a majority; this controller catches up from them",
                ids(&current),
                view.high_watermark,
                view.leader_id,
                view.leader_epoch,
                current.len(),
                view.voters.len()
            ),
            arguments,
        )
    } else {
        StorageDecision::Refuse(format!(
            "only {} of {} voters other than this one hold everything committed (high watermark {}): current \
             [{}], behind [{}]; {} are needed. Formatting this controller now could lose committed metadata \
             (Kafka's replace_disk rule): waiting for the others to catch up",
            current.len(),
            view.voters.len(),
            view.high_watermark,
            ids(&current),
            ids(&behind),
            majority
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
    Ok(QuorumView {
        leader_id: partition.leader_id.0,
        leader_epoch: partition.leader_epoch,
        high_watermark: partition.high_watermark,
        voters: partition
            .current_voters
            .iter()
            .map(|voter| Voter {
                id: voter.replica_id.0,
                directory_id: kafka_uuid(voter.replica_directory_id.as_bytes()),
                log_end_offset: voter.log_end_offset,
            })
            .collect(),
    })
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

/// Looks at the other controllers: silent when none accepts a connection, else the first description any of
/// them gives (only the leader answers; followers refuse with NOT_LEADER_OR_FOLLOWER). A controller that
/// accepts the connection but fails its TLS, SASL or DescribeQuorum in time answers, and undescribed.
pub async fn observe(client: &KafkaClient, controllers: &[Peer], timeout: Duration) -> Quorum {
    let mut answered = Vec::new();
    for controller in controllers {
        match describe(client, *controller, timeout).await {
            Ok(view) => return Quorum::Described(view),
            Err(QuorumError::Unreachable(ProbeError::Connect { .. })) => {}
            Err(error) => answered.push(error.to_string()),
        }
    }
    if answered.is_empty() {
        Quorum::Silent
    } else {
        Quorum::Undescribed(answered.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(leader: i32, high_watermark: i64, ends: &[(i32, i64)]) -> Quorum {
        Quorum::Described(QuorumView {
            leader_id: leader,
            leader_epoch: 3,
            high_watermark,
            voters: ends
                .iter()
                .map(|(id, end)| Voter {
                    id: *id,
                    directory_id: String::new(),
                    log_end_offset: *end,
                })
                .collect(),
        })
    }

    #[test]
    fn formatted_storage_is_never_formatted_and_a_brokers_blank_storage_is() {
        let quorum = Quorum::Undescribed("x".into());
        assert_eq!(
            decide(&StorageState::Formatted, 1, Role::StaticController, &quorum),
            StorageDecision::LeaveAlone
        );
        assert!(matches!(
            decide(&StorageState::Blank, 4, Role::Broker, &quorum),
            StorageDecision::Format(_, _)
        ));
    }

    #[test]
    fn directory_ids_read_as_kafka_writes_them() {
        // Kafka's Uuid.toString() of 7fffffff-ffff-ffff-8000-000000000001 (base64url without padding, as Python's base64.urlsafe_b64encode gives it).
        let bytes = [
            0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1,
        ];
        assert_eq!(kafka_uuid(&bytes), "f_________-AAAAAAAAAAQ");
        assert_eq!(kafka_uuid(&[0; 16]), "AAAAAAAAAAAAAAAAAAAAAA");
    }

    #[test]
    fn a_silent_quorum_is_a_fresh_cluster() {
        assert!(matches!(
            decide(&StorageState::Blank, 0, Role::StaticController, &Quorum::Silent),
            StorageDecision::Format(why, args) if why.contains("fresh") && args.is_empty()
        ));
    }

    #[test]
    fn a_blank_controller_is_formatted_only_while_the_others_hold_a_majority() {
        // 3 voters, this one (2) blank: the two others caught up are a majority.
        let ok = view(0, 100, &[(0, 120), (1, 100), (2, 40)]);
        assert!(matches!(
            decide(&StorageState::Blank, 2, Role::StaticController, &ok),
            StorageDecision::Format(_, _)
        ));
        // One of the others is behind: 1 of 3 is not a majority.
        let behind = view(0, 100, &[(0, 120), (1, 60), (2, 40)]);
        let StorageDecision::Refuse(why) =
            decide(&StorageState::Blank, 2, Role::StaticController, &behind)
        else {
            panic!("refused");
        };
        assert!(
            why.contains("behind [1 (log end 60)]") && why.contains("2 are needed"),
            "{why}"
        );
        // 5 voters: three others current are enough, two are not.
        let five = view(0, 10, &[(0, 10), (1, 10), (2, 10), (3, 0), (4, 0)]);
        assert!(matches!(
            decide(&StorageState::Blank, 4, Role::StaticController, &five),
            StorageDecision::Format(_, _)
        ));
        let five = view(0, 10, &[(0, 10), (1, 10), (2, 3), (3, 0), (4, 0)]);
        assert!(matches!(
            decide(&StorageState::Blank, 4, Role::StaticController, &five),
            StorageDecision::Refuse(_)
        ));
    }

    #[test]
    fn a_dynamic_quorum_is_formed_by_the_first_controller_and_joined_by_the_others() {
        let first = Role::DynamicController { first: true };
        let other = Role::DynamicController { first: false };
        assert_eq!(
            decide(&StorageState::Blank, 0, first, &Quorum::Silent),
            StorageDecision::Format(
                "no other controller answers: a fresh cluster, formed with the configured cluster id".into(),
                vec!["--standalone".into()]
            )
        );
        assert!(matches!(
            decide(&StorageState::Blank, 1, other, &Quorum::Silent),
            StorageDecision::Refuse(why) if why.contains("lowest id")
        ));
        let led = view(0, 7, &[(0, 7)]);
        assert!(matches!(
            decide(&StorageState::Blank, 1, other, &led),
            StorageDecision::Format(_, args) if args == ["--no-initial-controllers"]
        ));
    }

    #[test]
    fn no_leader_or_no_description_is_a_refusal() {
        let leaderless = view(-1, 0, &[(0, 5), (1, 5), (2, 5)]);
        assert!(matches!(
            decide(&StorageState::Blank, 2, Role::StaticController, &leaderless),
            StorageDecision::Refuse(_)
        ));
        let undescribed = Quorum::Undescribed("error 6".into());
        assert!(matches!(
            decide(&StorageState::Blank, 2, Role::StaticController, &undescribed),
            StorageDecision::Refuse(why) if why.contains("error 6")
        ));
    }
}
