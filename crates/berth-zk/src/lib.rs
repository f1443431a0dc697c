//! ZooKeeper adapter for berth: broker id claims as ephemeral lock nodes, session expiry, Kafka registration watch.
//!
//! A broker id belongs to the host whose berth holds the EPHEMERAL node `<root>/<cluster>/claims/<id>`
//! ([`ZkCoordination`]). The node lives exactly as long as that host's ZooKeeper session, so the daemon must learn
//! of the session's fate at once: this crate uses `zookeeper-client`, which reports Disconnected and Expired as
//! they happen (docs/decisions/0001-zookeeper-client.md records why not `zookeeper-async`). Kafka's own
//! registration under `/brokers/ids` is read and watched by [`registration::RegistrationWatch`], for the Kafka
//! adapter's proof that the broker really serves. [`listing::list_claims`] reads who holds each id, for
//! `berth plan` and the simulated fleet.

pub mod coordination;
pub mod listing;
mod partitions;
pub mod registration;
mod session;

use berth_core::{BrokerId, Classify, ErrorKind};
use zookeeper_client as zk;

pub use coordination::{ZkCoordination, ZkSettings};
pub use registration::{Registration, RegistrationWatch};
pub use session::SharedSession;

/// A ZooKeeper failure, naming the ensemble, znode or id concerned.
#[derive(Debug, thiserror::Error)]
pub enum ZkError {
    /// No session could be opened by the deadline.
    #[error("cannot open a ZooKeeper session to {connect}")]
    Connect {
        /// The connect string.
        connect: String,
        /// The client's error.
        #[source]
        source: zk::Error,
    },
    /// A request failed.
    #[error("ZooKeeper {op} {path}")]
    Op {
        /// The request (`create`, `get_data`, `delete`, ...).
        op: &'static str,
        /// The znode.
        path: String,
        /// The client's error.
        #[source]
        source: zk::Error,
    },
    /// A wait reached its deadline.
    #[error("timed out at {path} waiting for {waiting_for}")]
    Timeout {
        /// The znode watched.
        path: String,
        /// What was awaited.
        waiting_for: &'static str,
    },
    /// Kafka's registration is not the JSON Kafka writes.
    #[error("{path}: unreadable Kafka registration")]
    RegistrationJson {
        /// The znode.
        path: String,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// Kafka's registration could not be understood.
    #[error("{path}: unreadable Kafka registration: {reason}")]
    BadRegistration {
        /// The znode.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The id is claimed by another host.
    #[error("broker id {id} is claimed by another host ({holder}) at {path}")]
    TakenByOther {
        /// The id.
        id: BrokerId,
        /// The claim znode.
        path: String,
        /// Who holds it (the claim body, or the session when unreadable).
        holder: String,
    },
    /// The claim plan has no candidate id.
    #[error("no broker id can be claimed from this host: {reason}")]
    NoCandidates {
        /// Why (the plan's skipped ids).
        reason: String,
    },
    /// Every candidate stayed claimed until the deadline.
    #[error("every candidate id under {path} ({candidates}) is claimed and none was released by the deadline")]
    AllTaken {
        /// The claims znode.
        path: String,
        /// The candidates, comma separated.
        candidates: String,
    },
    /// The preferred id (its ENI or volume is attached here) stayed claimed by another host until the deadline;
    /// no other id is claimed, which would strand what is attached here.
    #[error("broker id {id} is claimed by {holder}, while {why}: waiting for it, not claiming another id that would strand them")]
    PreferredTaken {
        /// The preferred id.
        id: BrokerId,
        /// Who holds it.
        holder: String,
        /// What is attached here (the plan's reason for preferring the id).
        why: String,
    },
    /// `zookeeper.digest` is not `user:password`.
    #[error("zookeeper.digest must be user:password")]
    BadDigest,
}

impl ZkError {
    pub(crate) fn op(op: &'static str, path: &str, source: zk::Error) -> Self {
        Self::Op {
            op,
            path: path.to_owned(),
            source,
        }
    }
}

impl Classify for ZkError {
    /// Whether retrying can help: connection trouble and waits are retryable; an id held by another host,
    /// refused credentials or ACLs, and unreadable Kafka data are not.
    fn kind(&self) -> ErrorKind {
        match self {
            ZkError::Op { source, .. } | ZkError::Connect { source, .. } => match source {
                zk::Error::NoAuth
                | zk::Error::AuthFailed
                | zk::Error::InvalidAcl
                | zk::Error::BadArguments(_) => ErrorKind::Fatal,
                _ => ErrorKind::Retryable,
            },
            ZkError::Timeout { .. }
            | ZkError::AllTaken { .. }
            | ZkError::PreferredTaken { .. }
            | ZkError::NoCandidates { .. } => ErrorKind::Retryable,
            ZkError::TakenByOther { .. }
            | ZkError::RegistrationJson { .. }
            | ZkError::BadRegistration { .. }
            | ZkError::BadDigest => ErrorKind::Fatal,
        }
    }
}
