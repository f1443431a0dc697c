//! Shared set-up for the adapter's tests: [`standin`] runs the Kafka stand-in as a child process against a real
//! ZooKeeper, [`real`] runs real Apache Kafka; both build the adapter's settings with [`HostSettings`] and read
//! what Kafka registered in ZooKeeper with the helpers here.
#![allow(dead_code)]

pub mod real;
pub mod standin;

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_core::ports::{Broker, Deadline};
use berth_core::{BrokerId, KafkaMode};
use berth_kafka::format::Formatter;
use berth_kafka::supervisor::RestartPolicy;
use berth_kafka::{KafkaBroker, KafkaSettings, RegistrationSettings, Supervision};

/// The cluster id of KRaft tests (as `kafka-storage.sh random-uuid` prints one).
pub const CLUSTER_ID: &str = "MkU3OEVBNTcwNTJENDM2Qg";

/// Kafka's chroot in the test ensemble (ZooKeeper mode).
pub const CHROOT: &str = "/kafka";

/// Where Kafka registers broker `id` in ZooKeeper mode.
pub fn registration_path(id: u32) -> String {
    format!("{CHROOT}/brokers/ids/{id}")
}

/// Broker `id`'s registration, read with a client of the test's own, and the stat of its node.
pub async fn registration(
    zk: &zookeeper_client::Client,
    id: u32,
) -> (berth_zk::Registration, zookeeper_client::Stat) {
    let (body, stat) = zk
        .get_data(&registration_path(id))
        .await
        .expect("registered");
    let registration = berth_zk::Registration::parse(BrokerId(id), &registration_path(id), &body)
        .expect("a registration Kafka wrote");
    (registration, stat)
}

/// Asserts broker `id` has no registration (`why` says when that is expected).
pub async fn assert_unregistered(zk: &zookeeper_client::Client, id: u32, why: &str) {
    assert_eq!(
        zk.check_stat(&registration_path(id)).await.unwrap(),
        None,
        "{why}"
    );
}

/// Stops Kafka, expecting a clean stop within `within`.
pub async fn stop_cleanly(broker: &KafkaBroker, within: Duration) {
    broker
        .stop(Deadline::after(within))
        .await
        .expect("clean stop");
}

/// The adapter with `settings`, restarting a dead Kafka after `delay` (a test should not wait systemd's usual
/// seconds).
pub fn broker_restarting_after(settings: KafkaSettings, delay: Duration) -> KafkaBroker {
    let policy = RestartPolicy {
        delay,
        ..RestartPolicy::default()
    };
    KafkaBroker::with_restart_policy(settings, policy).expect("the Kafka adapter")
}

/// The adapter's settings on one broker host run by the process supervisor: listener `PLAINTEXT`, Kafka
/// registering under [`CHROOT`] in ZooKeeper mode, in KRaft mode formatting with [`CLUSTER_ID`] (controllers
/// on 9093, voters left to the operator unless a test says otherwise).
pub struct HostSettings<'a> {
    /// The ZooKeeper connect string (read in ZooKeeper mode only).
    pub connect: &'a str,
    /// ZooKeeper's session timeout.
    pub session_timeout: Duration,
    /// The supervisor's command (the overlay path is appended by the supervisor).
    pub command: &'a [String],
    /// berth's overlay.
    pub overlay: &'a Path,
    /// Kafka's client port.
    pub port: u16,
    /// The health check's interval.
    pub check_interval: Duration,
    /// How long a stop may take.
    pub stop_timeout: Duration,
    /// KRaft mode's storage tool; `None` is ZooKeeper mode.
    pub kraft: Option<Formatter>,
}

impl HostSettings<'_> {
    /// The adapter's settings.
    pub fn settings(&self) -> KafkaSettings {
        let (mode, formatter, cluster_id) = match &self.kraft {
            Some(formatter) => (KafkaMode::Kraft, formatter.clone(), Some(CLUSTER_ID.into())),
            None => (
                KafkaMode::Zookeeper,
                Formatter {
                    command: Vec::new(),
                    server_properties: PathBuf::new(),
                },
                None,
            ),
        };
        KafkaSettings {
            mode,
            supervision: Supervision::Process {
                command: self.command.to_vec(),
            },
            overlay_path: self.overlay.to_owned(),
            listener_name: "PLAINTEXT".into(),
            port: self.port,
            check_interval: self.check_interval,
            stop_timeout: self.stop_timeout,
            controller_port: 9093,
            quorum_voters: false,
            controller_ids: Vec::new(),
            formatter,
            cluster_id,
            registrations: RegistrationSettings {
                connect: self.connect.into(),
                session_timeout: self.session_timeout,
                kafka_chroot: CHROOT.into(),
            },
            security: Default::default(),
            controller_security: Default::default(),
        }
    }
}

/// TLS settings from PEM files, as the daemon builds them from `[kafka.security]`: the CA bundle, a client
/// certificate and key (mutual TLS), the name to verify.
pub fn tls_settings(
    ca: &Path,
    client: Option<(&Path, &Path)>,
    server_name: &str,
) -> berth_kafka::settings::TlsSettings {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certificates = |path: &Path| -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_file_iter(path)
            .expect("a PEM file")
            .collect::<Result<_, _>>()
            .expect("certificates")
    };
    berth_kafka::settings::TlsSettings {
        roots: certificates(ca),
        client: client.map(|(cert, key)| {
            let key = PrivateKeyDer::from_pem_file(key).expect("a private key");
            (certificates(cert), std::sync::Arc::new(key))
        }),
        server_name: server_name.into(),
    }
}
