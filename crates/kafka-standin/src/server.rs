//! The listener: answers ApiVersions and Metadata (brokers = itself) as a Kafka broker would; any other request
//! closes the connection (a client of the stand-in must not believe it can produce or fetch).
//!
//! The framing is the stand-in's own (server side): berth's probe has the client side in `berth_kafka::wire`,
//! and the two share no code, so a framing mistake in one cannot be mirrored in the other.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, MetadataResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Largest request accepted (Kafka's `socket.request.max.bytes` default is 100 MiB; the stand-in only needs a
/// few hundred bytes).
const MAX_REQUEST: usize = 1024 * 1024;

/// Why a connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The socket failed or closed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A request size out of bounds (Kafka closes the connection too).
    #[error("request of {0} bytes is out of bounds")]
    Size(i64),
    /// `kafka-protocol` could not decode a request or encode a response.
    #[error("api key {api_key} v{version}: {reason}")]
    Codec {
        /// The API key.
        api_key: i16,
        /// The version.
        version: i16,
        /// The codec's message.
        reason: String,
    },
    /// An API the stand-in does not answer.
    #[error("api key {0} is not answered by the stand-in")]
    UnknownApi(i16),
}

async fn read_request<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Bytes, WireError> {
    let size = reader.read_i32().await?;
    if size < 4 || size as usize > MAX_REQUEST {
        return Err(WireError::Size(size.into()));
    }
    let mut frame = vec![0u8; size as usize];
    reader.read_exact(&mut frame).await?;
    Ok(Bytes::from(frame))
}

fn codec<E: std::fmt::Display>(api_key: i16, version: i16) -> impl FnOnce(E) -> WireError {
    move |error| WireError::Codec {
        api_key,
        version,
        reason: error.to_string(),
    }
}

/// The request header, decoded in the header version its API and version call for.
fn decode_header(mut frame: Bytes) -> Result<RequestHeader, WireError> {
    let key = (&frame[..2]).get_i16();
    let version = (&frame[2..4]).get_i16();
    let api = ApiKey::try_from(key).map_err(|_| WireError::UnknownApi(key))?;
    RequestHeader::decode(&mut frame, api.request_header_version(version))
        .map_err(codec(key, version))
}

/// A response frame (size, header, body) in one buffer, so it leaves in one write.
fn encode_response<M: Encodable>(
    correlation_id: i32,
    api: ApiKey,
    version: i16,
    body: &M,
) -> Result<Bytes, WireError> {
    let key = api as i16;
    let mut frame = BytesMut::with_capacity(256);
    frame.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut frame, api.response_header_version(version))
        .map_err(codec(key, version))?;
    body.encode(&mut frame, version)
        .map_err(codec(key, version))?;
    let size = (frame.len() - 4) as i32;
    frame[..4].copy_from_slice(&size.to_be_bytes());
    Ok(frame.freeze())
}

/// Kafka's UNSUPPORTED_VERSION error code.
const UNSUPPORTED_VERSION: i16 = 35;

/// Who the stand-in says it is.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Broker / node id.
    pub id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: u16,
    /// Rack.
    pub rack: Option<String>,
    /// Cluster id, when known.
    pub cluster_id: Option<String>,
}

/// The APIs answered, with the versions `kafka-protocol` can encode.
fn supported() -> Vec<ApiVersion> {
    [ApiKey::ApiVersions, ApiKey::Metadata]
        .into_iter()
        .map(|api| {
            let versions = api.valid_versions();
            ApiVersion::default()
                .with_api_key(api as i16)
                .with_min_version(versions.min)
                .with_max_version(versions.max)
        })
        .collect()
}

/// Accepts connections until the task is dropped.
pub async fn serve(listener: TcpListener, identity: Arc<Identity>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let identity = identity.clone();
                tokio::spawn(async move {
                    if let Err(error) = connection(stream, &identity).await {
                        if !matches!(&error, WireError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof)
                        {
                            eprintln!(
                                "WARN [KafkaStandIn id={}] connection closed: {error}",
                                identity.id
                            );
                        }
                    }
                });
            }
            Err(error) => eprintln!("WARN [KafkaStandIn] accept failed: {error}"),
        }
    }
}

async fn connection(mut stream: TcpStream, identity: &Identity) -> Result<(), WireError> {
    stream.set_nodelay(true)?;
    loop {
        let frame = read_request(&mut stream).await?;
        let response = answer(frame, identity)?;
        stream.write_all(&response).await?;
    }
}

fn answer(frame: Bytes, identity: &Identity) -> Result<Bytes, WireError> {
    let header = decode_header(frame)?;
    let (key, version, correlation) = (
        header.request_api_key,
        header.request_api_version,
        header.correlation_id,
    );
    match ApiKey::try_from(key) {
        Ok(ApiKey::ApiVersions) => {
            let range = ApiKey::ApiVersions.valid_versions();
            let response = ApiVersionsResponse::default().with_api_keys(supported());
            if version > range.max || version < range.min {
                // As Kafka does: answer in version 0 with the error, so the client can pick a version.
                let response = response.with_error_code(UNSUPPORTED_VERSION);
                return encode_response(correlation, ApiKey::ApiVersions, 0, &response);
            }
            encode_response(correlation, ApiKey::ApiVersions, version, &response)
        }
        Ok(ApiKey::Metadata) => {
            let me = MetadataResponseBroker::default()
                .with_node_id(BrokerId(identity.id))
                .with_host(StrBytes::from_string(identity.host.clone()))
                .with_port(i32::from(identity.port))
                .with_rack(identity.rack.clone().map(StrBytes::from_string));
            let response = MetadataResponse::default()
                .with_brokers(vec![me])
                .with_controller_id(BrokerId(identity.id))
                .with_cluster_id(identity.cluster_id.clone().map(StrBytes::from_string));
            encode_response(correlation, ApiKey::Metadata, version, &response)
        }
        _ => Err(WireError::UnknownApi(key)),
    }
}
