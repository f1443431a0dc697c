//! Shared set-up for the adapter's tests: [`standin`] runs the Kafka stand-in as a child process against a real
//! ZooKeeper, [`real`] runs real Apache Kafka; both build the adapter's settings with [`HostSettings`] and read
//! what Kafka registered in ZooKeeper with the helpers here.
#![allow(dead_code)]

pub mod real;
pub mod standin;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use berth_core::birth::{BirthEvidence, BirthMark, BirthRecord, ControllerVolume};
use berth_core::ports::{Broker, Deadline, StepError};
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

/// A test double of berth-core's `BirthRecord` port (in production the `berth:kraft-born` tag on the
/// controllers' EBS volumes, `berth_aws::AwsBirthRecord`, tested against strict moto in berth-aws): one
/// "volume" per controller id, its mark kept in memory, so an adapter test can replace a controller's volume
/// with a blank one (no mark) as EC2 would.
#[derive(Debug, Default)]
pub struct RecordedBirths {
    volumes: Mutex<BTreeMap<BrokerId, (String, Option<String>)>>,
}

impl RecordedBirths {
    /// One unmarked volume per id.
    pub fn new(ids: impl IntoIterator<Item = u32>) -> Self {
        let volumes = ids
            .into_iter()
            .map(|id| (BrokerId(id), (format!("vol-{id}"), None)))
            .collect();
        Self {
            volumes: Mutex::new(volumes),
        }
    }

    /// Controller `id` gets a new, blank volume (the old one and its mark are gone).
    pub fn replace_volume(&self, id: u32) {
        let mut volumes = self.volumes.lock().unwrap();
        let (name, _) = volumes.get(&BrokerId(id)).cloned().expect("a known id");
        volumes.insert(BrokerId(id), (format!("{name}-new"), None));
    }

    /// The marked volumes' ids and their marks, by controller id.
    pub fn marks(&self) -> BTreeMap<u32, String> {
        self.volumes
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(id, (_, mark))| mark.clone().map(|mark| (id.0, mark)))
            .collect()
    }
}

#[async_trait]
impl BirthRecord for RecordedBirths {
    async fn read(&self, controllers: &BTreeSet<BrokerId>) -> Result<BirthEvidence, StepError> {
        let volumes = self.volumes.lock().unwrap();
        Ok(BirthEvidence {
            volumes: controllers
                .iter()
                .map(|id| {
                    let volume = match volumes.get(id) {
                        Some((volume_id, mark)) => ControllerVolume::One {
                            volume_id: volume_id.clone(),
                            mark: mark.clone(),
                        },
                        None => ControllerVolume::Missing,
                    };
                    (*id, volume)
                })
                .collect(),
        })
    }

    async fn mark(&self, id: BrokerId, mark: &BirthMark) -> Result<String, StepError> {
        let mut volumes = self.volumes.lock().unwrap();
        let (volume_id, marked) = volumes.get_mut(&id).expect("a known id");
        *marked = Some(mark.render());
        Ok(volume_id.clone())
    }
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
                    unit: None,
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
            broker_count: 3,
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
