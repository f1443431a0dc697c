//! The listener: answers ApiVersions and Metadata (brokers = itself) as a Kafka broker would; any other request
//! closes the connection (a client of the stand-in must not believe it can produce or fetch).

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, BrokerId, MetadataResponse};
use kafka_protocol::protocol::StrBytes;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use berth_kafka::wire::{self, WireError};

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
        let frame = wire::read_frame(&mut stream).await?;
        let response = answer(frame, identity)?;
        stream.write_all(&response).await?;
    }
}

fn answer(frame: Bytes, identity: &Identity) -> Result<Bytes, WireError> {
    let (header, _body) = wire::decode_request_header(frame)?;
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
                return wire::encode_response(correlation, ApiKey::ApiVersions, 0, &response);
            }
            wire::encode_response(correlation, ApiKey::ApiVersions, version, &response)
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
            wire::encode_response(correlation, ApiKey::Metadata, version, &response)
        }
        _ => Err(WireError::UnknownApi(key)),
    }
}
