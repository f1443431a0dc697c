//! The protocol half of "Kafka is serving": ApiVersions then Metadata on the advertised listener.
//!
//! A process listening on the port proves little; a broker that answers Metadata listing itself with the ENI
//! address is what clients will see. One connection per probe ([`crate::client`]: TLS and SASL as the listener
//! wants), no topics requested, so a check costs two small round trips after the handshakes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};

use crate::client::{Connection, KafkaClient};
use crate::wire::WireError;

pub use crate::client::API_VERSIONS_VERSION;
/// Highest Metadata version berth asks for (lowered to what the broker supports).
pub const METADATA_MAX_VERSION: i16 = 12;
/// Lowest Metadata version berth can ask with: v0 reads an empty topic list as "all topics".
pub const METADATA_MIN_VERSION: i16 = 1;
/// First Metadata version with `allow_auto_topic_creation` (v1-v3 lack it, and encoding it there fails).
const METADATA_AUTO_CREATE_SINCE: i16 = 4;

/// Who the probe expects to find where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTarget {
    /// Address to connect to (the advertised listener).
    pub listener: SocketAddr,
    /// The broker id Metadata must list.
    pub broker_id: i32,
    /// The host Metadata must give for it (the ENI address).
    pub host: String,
    /// The port Metadata must give for it.
    pub port: u16,
}

/// A broker as Metadata lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenBroker {
    /// Node id.
    pub id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// Rack, if any.
    pub rack: Option<String>,
}

/// What a successful probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    /// Metadata version used.
    pub metadata_version: i16,
    /// Brokers listed.
    pub brokers: Vec<SeenBroker>,
    /// Controller id (-1 when none).
    pub controller_id: i32,
    /// Cluster id, if the broker has one.
    pub cluster_id: Option<String>,
    /// Time from connect to the Metadata answer.
    pub elapsed: Duration,
}

/// Why a probe did not prove the broker serving. Every case is worth retrying until the start deadline.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Nothing accepts connections there.
    #[error("connecting to Kafka's listener {listener}: {source}")]
    Connect {
        /// The listener.
        listener: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
    /// The TLS handshake failed: the broker's certificate (its CA, its name or address), berth's client
    /// certificate, or a listener that does not speak TLS.
    #[error("TLS with Kafka's listener {listener}: {source}")]
    Tls {
        /// The listener.
        listener: SocketAddr,
        /// rustls's reason.
        source: std::io::Error,
    },
    /// SASL authentication was refused or could not be completed.
    #[error("SASL {mechanism} at Kafka's listener {listener}: {detail}")]
    Authentication {
        /// The listener.
        listener: SocketAddr,
        /// The mechanism.
        mechanism: &'static str,
        /// What the broker answered, or what was wrong with its answer.
        detail: String,
    },
    /// No complete answer in time.
    #[error("Kafka's listener {listener} did not answer within {after:?}")]
    Timeout {
        /// The listener.
        listener: SocketAddr,
        /// The time allowed.
        after: Duration,
    },
    /// The exchange broke or could not be decoded.
    #[error("talking to Kafka's listener {listener}: {source}")]
    Wire {
        /// The listener.
        listener: SocketAddr,
        /// The framing or codec error.
        source: WireError,
    },
    /// ApiVersions answered with an error, or without Metadata.
    #[error("Kafka's listener {listener} answered ApiVersions with {detail}")]
    ApiVersions {
        /// The listener.
        listener: SocketAddr,
        /// Error code or what is missing.
        detail: String,
    },
    /// Metadata does not list this broker with the expected endpoint.
    #[error("Metadata from {listener} does not list broker {broker_id} at {expected}; it lists [{seen}]")]
    NotListed {
        /// The listener.
        listener: SocketAddr,
        /// The broker id looked for.
        broker_id: i32,
        /// `host:port` expected.
        expected: String,
        /// What was listed (`id@host:port`, comma separated).
        seen: String,
    },
}

/// The Metadata request berth sends in `version`: no topics, and (where the version has the field) no topic
/// auto-creation. Every field set is one the version carries, so it encodes in every version the probe picks.
pub fn metadata_request(version: i16) -> MetadataRequest {
    let request = MetadataRequest::default().with_topics(Some(Vec::new()));
    if version >= METADATA_AUTO_CREATE_SINCE {
        request.with_allow_auto_topic_creation(false)
    } else {
        request
    }
}

/// One ApiVersions + Metadata round trip on a fresh connection through `client`, bounded by `timeout`.
pub async fn probe(
    client: &KafkaClient,
    target: &ProbeTarget,
    timeout: Duration,
) -> Result<ProbeReport, ProbeError> {
    probe_up_to(client, target, timeout, METADATA_MAX_VERSION).await
}

/// As [`probe`], asking Metadata in at most `max_version` (the broker's highest if lower): the tests use it
/// to send every version the probe may pick to a real broker.
pub async fn probe_up_to(
    client: &KafkaClient,
    target: &ProbeTarget,
    timeout: Duration,
    max_version: i16,
) -> Result<ProbeReport, ProbeError> {
    let started = Instant::now();
    let connection = client
        .connect(
            target.listener,
            u32::try_from(target.broker_id).ok(),
            timeout,
        )
        .await?;
    let remaining = timeout.saturating_sub(started.elapsed());
    within(
        target.listener,
        remaining,
        exchange(connection, target, max_version, started),
    )
    .await
}

/// Awaits an exchange with `listener`, or fails with [`ProbeError::Timeout`] once `timeout` has passed.
pub(crate) async fn within<T>(
    listener: SocketAddr,
    timeout: Duration,
    exchange: impl std::future::Future<Output = Result<T, ProbeError>>,
) -> Result<T, ProbeError> {
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(ProbeError::Timeout {
                listener,
                after: timeout,
            })
        })
}

async fn exchange(
    mut connection: Connection,
    target: &ProbeTarget,
    max_version: i16,
    started: Instant,
) -> Result<ProbeReport, ProbeError> {
    let version = metadata_version(&connection, max_version)?;
    let metadata: MetadataResponse = connection
        .round_trip(ApiKey::Metadata, version, &metadata_request(version))
        .await?;
    judge_metadata(target, &metadata, version, started.elapsed())
}

/// The Metadata version to ask for: the highest that berth, `max_version` and the broker all speak.
pub(crate) fn metadata_version(
    connection: &Connection,
    max_version: i16,
) -> Result<i16, ProbeError> {
    connection.api_version(
        ApiKey::Metadata,
        METADATA_MIN_VERSION..=max_version.min(METADATA_MAX_VERSION),
    )
}

/// The report, when the metadata lists the target broker at its advertised address.
fn judge_metadata(
    target: &ProbeTarget,
    metadata: &MetadataResponse,
    version: i16,
    elapsed: Duration,
) -> Result<ProbeReport, ProbeError> {
    let brokers: Vec<SeenBroker> = metadata
        .brokers
        .iter()
        .map(|broker| SeenBroker {
            id: broker.node_id.0,
            host: broker.host.to_string(),
            port: broker.port,
            rack: broker.rack.as_ref().map(|rack| rack.to_string()),
        })
        .collect();
    let listed = brokers.iter().any(|broker| {
        broker.id == target.broker_id
            && broker.host == target.host
            && broker.port == i32::from(target.port)
    });
    if !listed {
        let seen: Vec<String> = brokers
            .iter()
            .map(|b| format!("{}@{}:{}", b.id, b.host, b.port))
            .collect();
        return Err(ProbeError::NotListed {
            listener: target.listener,
            broker_id: target.broker_id,
            expected: format!("{}:{}", target.host, target.port),
            seen: seen.join(", "),
        });
    }
    Ok(ProbeReport {
        metadata_version: version,
        brokers,
        controller_id: metadata.controller_id.0,
        cluster_id: metadata.cluster_id.as_ref().map(|id| id.to_string()),
        elapsed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::request_header;
    use crate::wire;
    use kafka_protocol::messages::RequestHeader;
    use kafka_protocol::protocol::Decodable;

    /// Every version the probe may pick encodes, and a decoder (a broker's side of `kafka-protocol`) reads the
    /// request berth meant: no topics, and no auto-creation where the version can say so.
    #[test]
    fn the_metadata_request_encodes_in_every_version_the_probe_may_pick() {
        for version in METADATA_MIN_VERSION..=METADATA_MAX_VERSION {
            let header = request_header(ApiKey::Metadata, version, 7);
            let frame = wire::encode_request(&header, &metadata_request(version))
                .unwrap_or_else(|error| panic!("Metadata v{version}: {error}"));
            let mut body = frame.slice(4..);
            let header_version = ApiKey::Metadata.request_header_version(version);
            let decoded_header = RequestHeader::decode(&mut body, header_version).unwrap();
            assert_eq!(decoded_header.request_api_version, version);
            let request = MetadataRequest::decode(&mut body, version).unwrap();
            assert_eq!(
                request.topics,
                Some(Vec::new()),
                "v{version}: no topics, not all"
            );
            assert_eq!(
                request.allow_auto_topic_creation,
                version < METADATA_AUTO_CREATE_SINCE,
                "v{version}: absent fields decode to Kafka's default (true)"
            );
            assert!(body.is_empty(), "v{version}: nothing left over");
        }
    }
}
