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
//! node whose storage is formatted is never formatted. The decision ([`decide`]) is pure; [`observe`] does the
//! looking.

use std::net::SocketAddr;
use std::time::Duration;

use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::{ApiKey, DescribeQuorumRequest, DescribeQuorumResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::format::StorageState;
use crate::probe::request_header;
use crate::wire::{self, WireError};

/// The DescribeQuorum version berth asks in (Kafka 3.9 and 4.x answer v0-v2; v2 carries directory ids).
pub const DESCRIBE_QUORUM_VERSION: i16 = 2;
/// The metadata log's topic.
const METADATA_TOPIC: &str = "__cluster_metadata";

/// One voter as the leader reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voter {
    /// The node id.
    pub id: i32,
    /// Its directory id (KIP-853; zero in a static quorum).
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

/// What to do with this node's storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageDecision {
    /// Formatted already: Kafka checks the rest.
    LeaveAlone,
    /// Blank, and formatting is safe (why, for the log).
    Format(String),
    /// Blank, and formatting now could lose committed metadata: why, and what would make it safe.
    Refuse(String),
}

/// Decides whether node `me`'s storage may be formatted. Pure.
pub fn decide(
    storage: &StorageState,
    me: i32,
    controller: bool,
    quorum: &Quorum,
) -> StorageDecision {
    if *storage == StorageState::Formatted {
        return StorageDecision::LeaveAlone;
    }
    if !controller {
        return StorageDecision::Format(
            "a broker's metadata comes from the controllers: blank storage is formatted with the cluster id".into(),
        );
    }
    let view = match quorum {
        Quorum::Silent => {
            return StorageDecision::Format(
                "no other controller answers: a fresh cluster, formed with the configured cluster id".into(),
            )
        }
        Quorum::Undescribed(why) => {
            return StorageDecision::Refuse(format!(
                "a controller answers but the quorum could not be described ({why}); a blank controller is not \
                 formatted until the other voters are known to hold the committed metadata"
            ))
        }
        Quorum::Described(view) => view,
    };
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
        StorageDecision::Format(format!(
            "the other voters {} hold everything committed (high watermark {}, leader {} epoch {}): {} of {} \
             voters, a majority; this controller catches up from them",
            ids(&current),
            view.high_watermark,
            view.leader_id,
            view.leader_epoch,
            current.len(),
            view.voters.len()
        ))
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
    /// The connection failed.
    #[error("{controller}: {source}")]
    Connect {
        /// The controller.
        controller: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The exchange failed.
    #[error("{controller}: {source}")]
    Wire {
        /// The controller.
        controller: SocketAddr,
        /// The framing or codec error.
        #[source]
        source: WireError,
    },
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
    /// No answer in time.
    #[error("{controller}: no answer within {after:?}")]
    Timeout {
        /// The controller.
        controller: SocketAddr,
        /// The time allowed.
        after: Duration,
    },
}

/// Sends one DescribeQuorum for the metadata log to `controller`'s controller listener.
pub async fn describe(
    controller: SocketAddr,
    timeout: Duration,
) -> Result<QuorumView, QuorumError> {
    match tokio::time::timeout(timeout, exchange(controller)).await {
        Ok(result) => result,
        Err(_) => Err(QuorumError::Timeout {
            controller,
            after: timeout,
        }),
    }
}

async fn exchange(controller: SocketAddr) -> Result<QuorumView, QuorumError> {
    let wire_error = |source| QuorumError::Wire { controller, source };
    let mut stream = TcpStream::connect(controller)
        .await
        .map_err(|source| QuorumError::Connect { controller, source })?;
    let _ = stream.set_nodelay(true);
    let header = request_header(ApiKey::DescribeQuorum, DESCRIBE_QUORUM_VERSION, 1);
    let request = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
        .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
    let frame = wire::encode_request(&header, &request).map_err(wire_error)?;
    stream
        .write_all(&frame)
        .await
        .map_err(|source| wire_error(WireError::Io(source)))?;
    let frame = wire::read_frame(&mut stream).await.map_err(wire_error)?;
    let (_, response): (i32, DescribeQuorumResponse) =
        wire::decode_response(frame, ApiKey::DescribeQuorum, DESCRIBE_QUORUM_VERSION)
            .map_err(wire_error)?;
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
                directory_id: voter.replica_directory_id.to_string(),
                log_end_offset: voter.log_end_offset,
            })
            .collect(),
    })
}

/// Looks at the other controllers: silent when none accepts a connection, else the first description any of
/// them gives (only the leader answers; followers refuse with NOT_LEADER_OR_FOLLOWER).
pub async fn observe(controllers: &[SocketAddr], timeout: Duration) -> Quorum {
    let mut answered = Vec::new();
    for controller in controllers {
        match describe(*controller, timeout).await {
            Ok(view) => return Quorum::Described(view),
            Err(QuorumError::Connect { .. } | QuorumError::Timeout { .. }) => {}
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
            decide(&StorageState::Formatted, 1, true, &quorum),
            StorageDecision::LeaveAlone
        );
        assert!(matches!(
            decide(&StorageState::Blank, 4, false, &quorum),
            StorageDecision::Format(_)
        ));
    }

    #[test]
    fn a_silent_quorum_is_a_fresh_cluster() {
        assert!(matches!(
            decide(&StorageState::Blank, 0, true, &Quorum::Silent),
            StorageDecision::Format(why) if why.contains("fresh")
        ));
    }

    #[test]
    fn a_blank_controller_is_formatted_only_while_the_others_hold_a_majority() {
        // 3 voters, this one (2) blank: the two others caught up are a majority.
        let ok = view(0, 100, &[(0, 120), (1, 100), (2, 40)]);
        assert!(matches!(
            decide(&StorageState::Blank, 2, true, &ok),
            StorageDecision::Format(_)
        ));
        // One of the others is behind: 1 of 3 is not a majority.
        let behind = view(0, 100, &[(0, 120), (1, 60), (2, 40)]);
        let StorageDecision::Refuse(why) = decide(&StorageState::Blank, 2, true, &behind) else {
            panic!("refused");
        };
        assert!(
            why.contains("behind [1 (log end 60)]") && why.contains("2 are needed"),
            "{why}"
        );
        // 5 voters: three others current are enough, two are not.
        let five = view(0, 10, &[(0, 10), (1, 10), (2, 10), (3, 0), (4, 0)]);
        assert!(matches!(
            decide(&StorageState::Blank, 4, true, &five),
            StorageDecision::Format(_)
        ));
        let five = view(0, 10, &[(0, 10), (1, 10), (2, 3), (3, 0), (4, 0)]);
        assert!(matches!(
            decide(&StorageState::Blank, 4, true, &five),
            StorageDecision::Refuse(_)
        ));
    }

    #[test]
    fn no_leader_or_no_description_is_a_refusal() {
        let leaderless = view(-1, 0, &[(0, 5), (1, 5), (2, 5)]);
        assert!(matches!(
            decide(&StorageState::Blank, 2, true, &leaderless),
            StorageDecision::Refuse(_)
        ));
        let undescribed = Quorum::Undescribed("error 6".into());
        assert!(matches!(
            decide(&StorageState::Blank, 2, true, &undescribed),
            StorageDecision::Refuse(why) if why.contains("error 6")
        ));
    }
}
