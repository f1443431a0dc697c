//! What the Kafka adapter reads, built by the daemon from `[kafka]`, `cluster.kafka_cluster_id` and, in
//! ZooKeeper mode, the `[zookeeper]` keys that say where Kafka registers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_core::security::{SaslMechanism, Secret, SecurityProtocol};
use berth_core::{BrokerId, KafkaMode};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::format::Formatter;

/// How Kafka is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Supervision {
    /// `systemctl start|restart|stop <unit>` (production).
    Systemd {
        /// The unit, e.g. `kafka.service`.
        unit: String,
    },
    /// A child process of berth (hosts without systemd, the simulation).
    Process {
        /// The command line (program and arguments); the overlay's path is appended.
        command: Vec<String>,
    },
}

/// ZooKeeper mode: the ensemble Kafka registers in, and its chroot there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationSettings {
    /// The ensemble, `host:port,...`.
    pub connect: String,
    /// Session timeout of the watch's own session (when it cannot borrow the claim's).
    pub session_timeout: Duration,
    /// Kafka's chroot (where `/brokers/ids` lives); empty is the root.
    pub kafka_chroot: String,
}

/// The Kafka adapter's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSettings {
    /// ZooKeeper or KRaft mode.
    pub mode: KafkaMode,
    /// systemd or a child process.
    pub supervision: Supervision,
    /// Where berth writes the settings it owns (the overlay).
    pub overlay_path: PathBuf,
    /// Listener name in `advertised.listeners`.
    pub listener_name: String,
    /// Listener port.
    pub port: u16,
    /// Interval of health checks while Healthy (a probe never waits longer than it).
    pub check_interval: Duration,
    /// Time allowed for a controlled shutdown.
    pub stop_timeout: Duration,
    /// KRaft: the controllers' port, for `controller.quorum.voters`.
    pub controller_port: u16,
    /// KRaft: render `controller.quorum.voters` from the controller ids' ENI addresses.
    pub quorum_voters: bool,
    /// KRaft: the ids that are controllers (voters); required with `quorum_voters`, otherwise empty means
    /// every id.
    pub controller_ids: Vec<BrokerId>,
    /// The cluster's size (`cluster.broker_count`): its ids are `0..broker_count`.
    pub broker_count: u32,
    /// KRaft: the storage tool that formats blank storage.
    pub formatter: Formatter,
    /// KRaft: the cluster id blank storage is formatted with.
    pub cluster_id: Option<String>,
    /// ZooKeeper mode: where Kafka registers (unused in KRaft mode).
    pub registrations: RegistrationSettings,
    /// How berth reaches `listener_name` (the probe, the replication read).
    pub security: ClientSettings,
    /// KRaft: how berth reaches the controllers' listener (DescribeQuorum).
    pub controller_security: ClientSettings,
}

/// How berth reaches one kind of listener (`[kafka.security]`, `[kafka.controller_security]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientSettings {
    /// The listener's security protocol.
    pub protocol: SecurityProtocol,
    /// With `SASL_*`: how berth authenticates.
    pub sasl: Option<SaslSettings>,
    /// With `SSL`/`SASL_SSL`: what berth trusts and shows.
    pub tls: Option<TlsSettings>,
}

/// SASL: the mechanism and berth's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslSettings {
    /// PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    pub mechanism: SaslMechanism,
    /// berth's user name.
    pub username: String,
    /// Its password (never printed).
    pub password: Secret,
}

/// TLS: the CA certificates, berth's client certificate and key (mutual TLS), and the name to verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The CA certificates that signed the brokers' certificates.
    pub roots: Vec<CertificateDer<'static>>,
    /// berth's certificate chain and private key, for listeners that require a client certificate.
    pub client: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
    /// The name the broker's certificate must carry (`{id}`: the broker id asked); empty: the address.
    pub server_name: String,
}
