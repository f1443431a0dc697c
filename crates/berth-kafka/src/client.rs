//! The one way berth reaches a Kafka listener, for every read it makes: the serving probe, the replication read
//! (the caught-up gate and the drain check) and DescribeQuorum.
//!
//! Production clusters are rarely open, so a connection speaks the listener's security protocol: TCP
//! (TCP_NODELAY, each frame one write), then TLS through rustls when the protocol is `SSL` or `SASL_SSL` (the
//! configured CA bundle, berth's client certificate when the listener requires one, and the broker's name or
//! address verified), then ApiVersions, then SASL (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`) through
//! SaslHandshake v1 and SaslAuthenticate when the protocol is `SASL_*`, exactly the order Kafka's own clients
//! use. Only then does the caller send its requests. Every failure says which step failed; none prints a secret.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_core::security::{SaslMechanism, Secret, SecurityProtocol};
use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::probe::{self, ProbeError};
use crate::sasl::{self, Scram};
use crate::settings::ClientSettings;
use crate::wire::{self, WireError};

/// ApiVersions version berth sends (Kafka 2.4+ answers it).
pub const API_VERSIONS_VERSION: i16 = 3;
/// SaslHandshake v1: the tokens then travel in SaslAuthenticate requests (KIP-152).
const SASL_HANDSHAKE_VERSION: i16 = 1;
/// SaslAuthenticate versions berth speaks.
const SASL_AUTHENTICATE_VERSIONS: RangeInclusive<i16> = 0..=2;

/// A Kafka error code with its name, as the protocol guide lists it (`29 TopicAuthorizationFailed`).
pub fn kafka_error(code: i16) -> String {
    match kafka_protocol::error::ResponseError::try_from_code(code) {
        Some(kafka_protocol::error::ResponseError::Unknown(_)) | None => format!("error {code}"),
        Some(error) => format!("error {code} ({error})"),
    }
}

/// A broker (or controller) to ask: its listener, and its id when known (for a TLS server name with `{id}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The listener.
    pub listener: SocketAddr,
    /// The broker id.
    pub id: Option<u32>,
}

impl From<SocketAddr> for Peer {
    fn from(listener: SocketAddr) -> Self {
        Self { listener, id: None }
    }
}

impl Peer {
    /// `listener` of broker `id`.
    pub fn new(id: u32, listener: SocketAddr) -> Self {
        Self {
            listener,
            id: Some(id),
        }
    }
}

/// TLS settings, ready to connect.
#[derive(Clone)]
struct Tls {
    connector: tokio_rustls::TlsConnector,
    /// The name to verify (`{id}` for the broker id); empty: the address connected to.
    server_name: String,
}

/// SASL settings.
#[derive(Clone)]
struct Sasl {
    mechanism: SaslMechanism,
    username: String,
    password: Secret,
}

/// How to reach one kind of listener (the probed one, or the controllers'): security protocol, TLS, SASL.
#[derive(Clone)]
pub struct KafkaClient {
    protocol: SecurityProtocol,
    tls: Option<Tls>,
    sasl: Option<Sasl>,
}

impl std::fmt::Debug for KafkaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaClient")
            .field("protocol", &self.protocol.name())
            .field(
                "sasl",
                &self
                    .sasl
                    .as_ref()
                    .map(|sasl| (sasl.mechanism.name(), &sasl.username)),
            )
            .finish_non_exhaustive()
    }
}

impl KafkaClient {
    /// A client of `PLAINTEXT` listeners.
    pub fn plaintext() -> Self {
        Self {
            protocol: SecurityProtocol::Plaintext,
            tls: None,
            sasl: None,
        }
    }

    /// A client as `settings` say; an error names the setting rustls refused (`tls_ca_file`,
    /// `tls_key_file`) and why.
    pub fn new(settings: &ClientSettings) -> Result<Self, (&'static str, String)> {
        let tls = match &settings.tls {
            None => None,
            Some(tls) => {
                let mut roots = rustls::RootCertStore::empty();
                for root in &tls.roots {
                    roots
                        .add(root.clone())
                        .map_err(|e| ("tls_ca_file", e.to_string()))?;
                }
                let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::aws_lc_rs::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map_err(|e| ("protocol", e.to_string()))?
                .with_root_certificates(roots);
                let config = match &tls.client {
                    Some((chain, key)) => builder
                        .with_client_auth_cert(chain.clone(), key.clone_key())
                        .map_err(|e| ("tls_key_file", e.to_string()))?,
                    None => builder.with_no_client_auth(),
                };
                Some(Tls {
                    connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
                    server_name: tls.server_name.clone(),
                })
            }
        };
        let sasl = settings.sasl.as_ref().map(|sasl| Sasl {
            mechanism: sasl.mechanism,
            username: sasl.username.clone(),
            password: sasl.password.clone(),
        });
        Ok(Self {
            protocol: settings.protocol,
            tls,
            sasl,
        })
    }

    /// The security protocol it speaks.
    pub fn protocol(&self) -> SecurityProtocol {
        self.protocol
    }

    /// Connects to `listener` (broker `broker`, for a server name with `{id}`), secures and authenticates the
    /// connection, and asks which API versions the broker speaks, all within `timeout`. A listener that does not
    /// accept the connection in time is [`ProbeError::Connect`] (nothing answers there); one that accepts it but
    /// does not finish the handshakes is [`ProbeError::Timeout`] (something answers, but not as it should).
    pub async fn connect(
        &self,
        listener: SocketAddr,
        broker: Option<u32>,
        timeout: Duration,
    ) -> Result<Connection, ProbeError> {
        let started = Instant::now();
        let tcp = match tokio::time::timeout(timeout, TcpStream::connect(listener)).await {
            Ok(connected) => connected,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("not accepted within {timeout:?}"),
            )),
        }
        .map_err(|source| ProbeError::Connect { listener, source })?;
        tcp.set_nodelay(true)
            .map_err(|source| ProbeError::Connect { listener, source })?;
        let remaining = timeout.saturating_sub(started.elapsed());
        probe::within(listener, remaining, self.handshakes(tcp, listener, broker)).await
    }

    /// TLS, ApiVersions and SASL on a connected socket.
    async fn handshakes(
        &self,
        tcp: TcpStream,
        listener: SocketAddr,
        broker: Option<u32>,
    ) -> Result<Connection, ProbeError> {
        let stream: Box<dyn Stream> = match &self.tls {
            None => Box::new(tcp),
            Some(tls) => {
                let name = if tls.server_name.is_empty() {
                    ServerName::IpAddress(listener.ip().into())
                } else {
                    let id = broker.map(|id| id.to_string()).unwrap_or_default();
                    ServerName::try_from(tls.server_name.replace("{id}", &id)).map_err(|error| {
                        ProbeError::Tls {
                            listener,
                            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, error),
                        }
                    })?
                };
                let secured = tls
                    .connector
                    .connect(name, tcp)
                    .await
                    .map_err(|source| ProbeError::Tls { listener, source })?;
                Box::new(secured)
            }
        };
        let mut connection = Connection {
            stream,
            listener,
            versions: ApiVersionsResponse::default(),
            next_correlation: 1,
        };
        connection.versions = connection.api_versions().await?;
        if let Some(sasl) = &self.sasl {
            connection.authenticate(sasl).await?;
        }
        Ok(connection)
    }
}

/// What a connection runs over: TCP, or TLS over TCP.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A connection ready for requests (secured, authenticated, its API versions known).
pub struct Connection {
    stream: Box<dyn Stream>,
    listener: SocketAddr,
    versions: ApiVersionsResponse,
    next_correlation: i32,
}

impl Connection {
    /// The listener it is connected to.
    pub fn listener(&self) -> SocketAddr {
        self.listener
    }

    /// The highest version of `api` that berth (`ours`) and the broker both speak.
    pub fn api_version(&self, api: ApiKey, ours: RangeInclusive<i16>) -> Result<i16, ProbeError> {
        let listener = self.listener;
        let theirs = self
            .versions
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

    /// Sends one request in `version` and reads its response (checking that it answers this request).
    pub async fn round_trip<Request: Encodable, Response: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &Request,
    ) -> Result<Response, ProbeError> {
        let listener = self.listener;
        let wire_error = |source| ProbeError::Wire { listener, source };
        let correlation_id = self.next_correlation;
        self.next_correlation += 1;
        let header = request_header(api, version, correlation_id);
        let frame = wire::encode_request(&header, request).map_err(wire_error)?;
        let sent = async {
            self.stream.write_all(&frame).await?;
            self.stream.flush().await
        };
        sent.await
            .map_err(|source| wire_error(WireError::Io(source)))?;
        let frame = wire::read_frame(&mut self.stream)
            .await
            .map_err(wire_error)?;
        let (answered, response) =
            wire::decode_response(frame, api, version).map_err(wire_error)?;
        if answered != correlation_id {
            return Err(wire_error(WireError::Correlation {
                expected: correlation_id,
                answered,
            }));
        }
        Ok(response)
    }

    async fn api_versions(&mut self) -> Result<ApiVersionsResponse, ProbeError> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("berth"))
            .with_client_software_version(StrBytes::from_static_str(berth_core::VERSION));
        let versions: ApiVersionsResponse = self
            .round_trip(ApiKey::ApiVersions, API_VERSIONS_VERSION, &request)
            .await?;
        if versions.error_code != 0 {
            return Err(ProbeError::ApiVersions {
                listener: self.listener,
                detail: kafka_error(versions.error_code),
            });
        }
        Ok(versions)
    }

    /// SaslHandshake, then the mechanism's exchange in SaslAuthenticate requests.
    async fn authenticate(&mut self, sasl: &Sasl) -> Result<(), ProbeError> {
        let mechanism = sasl.mechanism.name();
        let listener = self.listener;
        let failed = |detail: String| ProbeError::Authentication {
            listener,
            mechanism,
            detail,
        };
        let handshake: SaslHandshakeResponse = self
            .round_trip(
                ApiKey::SaslHandshake,
                SASL_HANDSHAKE_VERSION,
                &SaslHandshakeRequest::default()
                    .with_mechanism(StrBytes::from_static_str(mechanism)),
            )
            .await?;
        if handshake.error_code != 0 {
            let enabled: Vec<&str> = handshake.mechanisms.iter().map(|m| m.as_str()).collect();
            return Err(failed(format!(
                "SaslHandshake answered {}; the listener enables [{}]",
                kafka_error(handshake.error_code),
                enabled.join(", ")
            )));
        }
        let version = self.api_version(ApiKey::SaslAuthenticate, SASL_AUTHENTICATE_VERSIONS)?;
        match sasl.mechanism {
            SaslMechanism::Plain => {
                let message = sasl::plain_message(&sasl.username, &sasl.password);
                self.sasl_step(version, message, &failed).await?;
            }
            SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
                let mut scram = Scram::start(sasl.mechanism, &sasl.username, &sasl.password)
                    .map_err(|e| failed(e.0))?;
                let server_first = self
                    .sasl_step(version, scram.client_first(), &failed)
                    .await?;
                let client_final = scram.client_final(&server_first).map_err(|e| failed(e.0))?;
                let server_final = self.sasl_step(version, client_final, &failed).await?;
                scram
                    .verify_server_final(&server_final)
                    .map_err(|e| failed(e.0))?;
            }
        }
        Ok(())
    }

    /// One SaslAuthenticate round trip: the client's bytes out, the server's back (or why it refused).
    async fn sasl_step(
        &mut self,
        version: i16,
        message: Vec<u8>,
        failed: &impl Fn(String) -> ProbeError,
    ) -> Result<Bytes, ProbeError> {
        let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(message));
        let response: SaslAuthenticateResponse = self
            .round_trip(ApiKey::SaslAuthenticate, version, &request)
            .await?;
        if response.error_code != 0 {
            return Err(failed(format!(
                "{}{}",
                kafka_error(response.error_code),
                response
                    .error_message
                    .as_ref()
                    .map(|message| format!(": {message}"))
                    .unwrap_or_default()
            )));
        }
        Ok(response.auth_bytes)
    }
}

/// The header of a request berth sends.
pub(crate) fn request_header(api: ApiKey, version: i16, correlation_id: i32) -> RequestHeader {
    RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("berth")))
}
