//! The protocol half of "Kafka is serving": ApiVersions then Metadata on the advertised listener.
//!
//! A process listening on the port proves little; a broker that answers Metadata listing itself with the ENI
//! address is what clients will see. One TCP connection per probe (TCP_NODELAY, each frame one write), no topics
//! requested, so a check costs two small round trips.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
    RequestHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::wire::{self, WireError};

/// ApiVersions version berth sends (Kafka 2.4+ answers it).
pub const API_VERSIONS_VERSION: i16 = 3;
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

fn wire_error(listener: SocketAddr) -> impl Fn(WireError) -> ProbeError {
    move |source| ProbeError::Wire { listener, source }
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

/// One ApiVersions + Metadata round trip on a fresh connection, bounded by `timeout`.
pub async fn probe(target: &ProbeTarget, timeout: Duration) -> Result<ProbeReport, ProbeError> {
    probe_up_to(target, timeout, METADATA_MAX_VERSION).await
}

/// As [`probe`], asking Metadata in at most `max_version` (the broker's highest if lower): the tests use it
/// to send every version the probe may pick to a real broker.
pub async fn probe_up_to(
    target: &ProbeTarget,
    timeout: Duration,
    max_version: i16,
) -> Result<ProbeReport, ProbeError> {
    within(target.listener, timeout, exchange(target, max_version)).await
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

async fn exchange(target: &ProbeTarget, max_version: i16) -> Result<ProbeReport, ProbeError> {
    let listener = target.listener;
    let started = Instant::now();
    let (mut stream, versions) = open(listener).await?;
    let version = metadata_version(&versions, max_version, listener)?;
    let metadata: MetadataResponse = round_trip(
        &mut stream,
        listener,
        (ApiKey::Metadata, version, 2),
        &metadata_request(version),
    )
    .await?;
    judge_metadata(target, &metadata, version, started.elapsed())
}

/// Connects to `listener` (TCP_NODELAY) and asks which API versions it speaks.
pub(crate) async fn open(
    listener: SocketAddr,
) -> Result<(TcpStream, ApiVersionsResponse), ProbeError> {
    let mut stream = TcpStream::connect(listener)
        .await
        .map_err(|source| ProbeError::Connect { listener, source })?;
    stream
        .set_nodelay(true)
        .map_err(|source| ProbeError::Connect { listener, source })?;
    let request = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("berth"))
        .with_client_software_version(StrBytes::from_static_str(berth_core::VERSION));
    let versions: ApiVersionsResponse = round_trip(
        &mut stream,
        listener,
        (ApiKey::ApiVersions, API_VERSIONS_VERSION, 1),
        &request,
    )
    .await?;
    if versions.error_code != 0 {
        return Err(ProbeError::ApiVersions {
            listener,
            detail: format!("error code {}", versions.error_code),
        });
    }
    Ok((stream, versions))
}

/// The highest version of `api` that berth (`ours`) and the broker both speak.
pub(crate) fn api_version(
    versions: &ApiVersionsResponse,
    api: ApiKey,
    ours: std::ops::RangeInclusive<i16>,
    listener: SocketAddr,
) -> Result<i16, ProbeError> {
    let theirs = versions
        .api_keys
        .iter()
        .find(|key| key.api_key == api as i16)
        .ok_or_else(|| ProbeError::ApiVersions {
            listener,
            detail: format!("no {api:?} API listed"),
        })?;
    let version = (*ours.end()).min(theirs.max_version);
    if version < theirs.min_version.max(*ours.start()) {
        return Err(ProbeError::ApiVersions {
            listener,
            detail: format!(
                "{api:?} versions {}..={} only",
                theirs.min_version, theirs.max_version
            ),
        });
    }
    Ok(version)
}

/// Sends one request (`api`, version, correlation id) and reads its response.
pub(crate) async fn round_trip<Request: Encodable, Response: Decodable>(
    stream: &mut TcpStream,
    listener: SocketAddr,
    (api, version, correlation_id): (ApiKey, i16, i32),
    request: &Request,
) -> Result<Response, ProbeError> {
    let header = request_header(api, version, correlation_id);
    let frame = wire::encode_request(&header, request).map_err(wire_error(listener))?;
    stream
        .write_all(&frame)
        .await
        .map_err(|source| ProbeError::Wire {
            listener,
            source: WireError::Io(source),
        })?;
    let frame = wire::read_frame(stream)
        .await
        .map_err(wire_error(listener))?;
    let (_, response) = wire::decode_response(frame, api, version).map_err(wire_error(listener))?;
    Ok(response)
}

/// The Metadata version to ask for: the highest that berth, `max_version` and the broker all speak.
fn metadata_version(
    versions: &ApiVersionsResponse,
    max_version: i16,
    listener: SocketAddr,
) -> Result<i16, ProbeError> {
    api_version(
        versions,
        ApiKey::Metadata,
        METADATA_MIN_VERSION..=max_version.min(METADATA_MAX_VERSION),
        listener,
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

pub(crate) fn request_header(api: ApiKey, version: i16, correlation_id: i32) -> RequestHeader {
    RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("berth")))
}

#[cfg(test)]
mod tests {
    use super::*;
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
