//! [`KafkaBroker`]: the [`Broker`] port over the overlay, the supervisor, the registration watch and the probe.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use berth_core::birth::{Birth, BirthRecord};
use berth_core::ports::{Broker, BrokerSpec, Deadline, StepError};
use berth_core::replication::ReplicationView;
use berth_core::retry::{stable_hash, Jitter, RetryPolicy};
use berth_core::{BrokerId, Classify, ErrorKind, KafkaMode, ServingEvidence};
use berth_zk::registration::{Registration, RegistrationWatch};
use berth_zk::ZkError;
use tokio::sync::watch;

use crate::client::KafkaClient;
use crate::format::{FormatError, ToolSettings};
use crate::kraft::Kraft;
use crate::listeners;
use crate::overlay::{self, OverlayInput};
use crate::probe::{self, ProbeError, ProbeReport, ProbeTarget};
use crate::quorum::Membership;
use crate::replication::{self, Question};
use crate::settings::{KafkaSettings, Supervision};
use crate::supervisor::{
    ChildState, ProcessSupervisor, RestartPolicy, SupervisorError, SystemdUnit, UnitAction,
};

/// Longest a single probe may take (a check never waits longer than this for a dead listener).
const PROBE_TIMEOUT_MAX: Duration = Duration::from_secs(2);
/// Time allowed for each broker asked about the replication (Metadata for every topic can be large).
const REPLICATION_TIMEOUT: Duration = Duration::from_secs(10);
/// Probe retries while starting: the core's backoff, 5 ms doubling up to 250 ms (KRaft mode has no registration
/// to watch, so the probe is retried). The step's deadline bounds the whole; the policy's own is unused.
const SERVING_BACKOFF: RetryPolicy = RetryPolicy {
    initial: Duration::from_millis(5),
    max: Duration::from_millis(250),
    multiplier: 2.0,
    deadline: Duration::MAX,
};

/// Lines of Kafka's output that mean it refuses this data or id for good (restarting cannot help). Kafka 3.9
/// (ZooKeeper mode) and 4.x (KRaft) print the same texts, from `MetaPropertiesEnsemble.verify` (measured on
/// 3.9.2 and 4.4.0; tests/kafka_*.rs prove each against real Kafka):
const REFUSALS: [&str; 3] = [
    // "java.lang.RuntimeException: Stored node id 2 doesn't match previous node id 1 in <dir>/meta.properties."
    "doesn't match previous node id",
    // "java.lang.RuntimeException: Invalid cluster.id in: <dir>/meta.properties. Expected <a>, but read <b>"
    "Invalid cluster.id in:",
    // KRaft, no log dir formatted: "java.lang.RuntimeException: No readable meta.properties files found."
    "No readable meta.properties files found",
];

/// Why Kafka could not be started, stopped or shown serving.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// The overlay could not be written.
    #[error("writing Kafka's settings overlay {path}")]
    Overlay {
        /// The overlay file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS settings cannot be used (rustls refused the certificates or the key).
    #[error("{key}: {reason}")]
    Security {
        /// The setting, e.g. `kafka.security.tls_key_file`.
        key: String,
        /// rustls's reason.
        reason: String,
    },
    /// The operator's `server.properties` could not be read for its listeners.
    #[error("reading the listeners of kafka.server_properties {path}")]
    ServerProperties {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The operator's listeners do not fit berth's settings.
    #[error("advertised.listeners: {0}")]
    Listeners(String),
    /// The log dirs cannot be listed, so the partitions this broker hosts are unknown: not caught up, not safe to
    /// stop.
    #[error(
        "cannot judge the replication: the log dirs cannot be listed, so the partitions this broker hosts are unknown"
    )]
    LogDirsUnlisted(#[source] std::io::Error),
    /// `kafka.quorum_voters` is on but the daemon gave no voter addresses.
    #[error("kafka.quorum_voters is on but no voter addresses were given for broker {broker_id}")]
    MissingVoters {
        /// The broker being started.
        broker_id: BrokerId,
    },
    /// systemctl or the child process failed.
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    /// Kafka refused to start with this data or id (e.g. meta.properties names another broker).
    #[error("Kafka refused to start as broker {broker_id}: {reason}")]
    Refused {
        /// The broker id.
        broker_id: BrokerId,
        /// Kafka's own words.
        reason: String,
    },
    /// Kafka exited and is not being restarted.
    #[error("Kafka exited ({status}) and was not restarted: {reason}")]
    Exited {
        /// Exit status.
        status: String,
        /// Kafka's last words.
        reason: String,
    },
    /// Kafka is not running under berth (it exited, or was never started).
    #[error("Kafka is not running: {detail}")]
    NotRunning {
        /// What the supervisor knows.
        detail: String,
    },
    /// The registration znode could not be read or watched.
    #[error("Kafka's registration")]
    Registration(#[source] ZkError),
    /// `/brokers/ids/<id>` is absent.
    #[error("{path} is absent: broker {broker_id} is not registered")]
    NotRegistered {
        /// The broker id.
        broker_id: BrokerId,
        /// The znode.
        path: String,
    },
    /// `/brokers/ids/<id>` has no endpoint on the ENI address and port.
    #[error("{path} advertises [{seen}], not {listener}://{expected}")]
    WrongRegistration {
        /// The znode.
        path: String,
        /// Listener name expected.
        listener: String,
        /// `host:port` expected.
        expected: String,
        /// Endpoints registered.
        seen: String,
    },
    /// The protocol probe failed.
    #[error(transparent)]
    Probe(#[from] ProbeError),
    /// KRaft storage could not be formatted, or must not be.
    #[error("KRaft storage of broker {broker_id}: {source}")]
    Format {
        /// The broker being started.
        broker_id: BrokerId,
        /// What went wrong.
        #[source]
        source: FormatError,
    },
    /// A configured controller id has no ENI in discovery: the voter set cannot be rendered whole.
    #[error(
        "broker {broker_id}: kafka.controller_ids names {ids} but discovery found no ENI for it: the controllers' \
         addresses are incomplete, so nothing is rendered or asked (check the ENIs' tags)"
    )]
    ControllerEniMissing {
        /// The broker being started.
        broker_id: BrokerId,
        /// The controller ids without an ENI.
        ids: String,
    },
    /// The voter set this node would render is not the one the cluster was born with.
    #[error("broker {broker_id}: Kafka not started: {reason}")]
    VoterSetChanged {
        /// The broker being started.
        broker_id: BrokerId,
        /// The birth mark and what would be rendered.
        reason: String,
    },
    /// The controllers' volumes could not be read for the birth evidence.
    #[error("broker {broker_id}: reading the birth evidence (the controllers' volumes): {source}")]
    BirthEvidence {
        /// The broker being started.
        broker_id: BrokerId,
        /// What the record said.
        #[source]
        source: StepError,
    },
    /// A controller's storage is blank while formatting it could lose committed metadata.
    #[error("broker {broker_id}: blank KRaft storage not formatted: {reason}")]
    QuorumUnsafe {
        /// The broker being started.
        broker_id: BrokerId,
        /// What the quorum showed, and what would make it safe.
        reason: String,
    },
    /// Log dirs that hold no partition, in a cluster that exists, while Kafka could elect this broker leader
    /// of a partition whose data lives on other replicas.
    #[error("broker {broker_id}: blank broker not started: {reason}")]
    BlankStartUnsafe {
        /// The broker being started.
        broker_id: BrokerId,
        /// What the cluster showed, and what would make it safe.
        reason: String,
    },
    /// KRaft mode without `cluster.kafka_cluster_id` (the configuration check requires it).
    #[error("cluster.kafka_cluster_id is needed to format KRaft storage for broker {broker_id}")]
    MissingClusterId {
        /// The broker being started.
        broker_id: BrokerId,
    },
    /// The start deadline passed without the broker serving.
    #[error("broker {broker_id} was not serving by the deadline; last seen: {seen}")]
    NotServing {
        /// The broker id.
        broker_id: BrokerId,
        /// The last failed observation.
        seen: String,
    },
    /// No broker described the cluster's replication.
    #[error(
        "no broker described the cluster's replication: {}",
        each_failure(failures)
    )]
    Replication {
        /// Why each broker asked did not answer, in the order asked.
        failures: Vec<ProbeError>,
    },
    /// The registration was still there after the stop deadline.
    #[error("{path} still exists after stopping Kafka")]
    StillRegistered {
        /// The znode.
        path: String,
    },
}

/// Each failure with its causes, `; ` between them.
fn each_failure(failures: &[ProbeError]) -> String {
    failures
        .iter()
        .map(|failure| berth_core::ports::chain_message(failure))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Classify for KafkaError {
    /// Whether retrying can help. Refusals, unusable settings and a missing program are fatal.
    fn kind(&self) -> ErrorKind {
        match self {
            KafkaError::Refused { .. }
            | KafkaError::MissingVoters { .. }
            | KafkaError::ControllerEniMissing { .. }
            | KafkaError::VoterSetChanged { .. }
            | KafkaError::MissingClusterId { .. }
            | KafkaError::Security { .. }
            | KafkaError::Listeners(_) => ErrorKind::Fatal,
            KafkaError::BirthEvidence { source, .. } => source.kind,
            KafkaError::Format { source, .. } => source.kind(),
            KafkaError::Overlay { source, .. }
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                ErrorKind::Fatal
            }
            KafkaError::Supervisor(error) => error.kind(),
            KafkaError::Registration(error) => error.kind(),
            _ => ErrorKind::Retryable,
        }
    }
}

enum Runner {
    Systemd(SystemdUnit),
    Process(ProcessSupervisor),
}

/// Kafka on this host, as the [`Broker`] port.
pub struct KafkaBroker {
    mode: KafkaMode,
    listener_name: String,
    port: u16,
    overlay_path: PathBuf,
    server_properties: PathBuf,
    client: KafkaClient,
    stop_timeout: Duration,
    probe_timeout: Duration,
    runner: Runner,
    kraft: Option<Kraft>,
    registrations: Option<RegistrationWatch>,
    voters: Mutex<Option<BTreeMap<BrokerId, Ipv4Addr>>>,
    started_as: Mutex<Option<BrokerId>>,
    node: Mutex<Option<KraftNode>>,
}

/// What a KRaft node runs with, once known: the merged settings (roles, quorum kind) and the controllers.
#[derive(Debug, Clone)]
struct KraftNode {
    settings: ToolSettings,
    controllers: BTreeMap<BrokerId, Ipv4Addr>,
}

impl KraftNode {
    /// `process.roles=controller` alone: no broker listener to probe.
    fn controller_only(&self) -> bool {
        self.settings.controller && !self.settings.broker
    }
}

impl KafkaBroker {
    /// Kafka with these settings. Nothing is contacted until [`Broker::start`].
    pub fn new(settings: KafkaSettings) -> Result<Self, KafkaError> {
        Self::with_restart_policy(settings, RestartPolicy::default())
    }

    /// As [`KafkaBroker::new`], with the process supervisor's restart policy chosen (tests shorten its delay).
    pub fn with_restart_policy(
        settings: KafkaSettings,
        policy: RestartPolicy,
    ) -> Result<Self, KafkaError> {
        let client = KafkaClient::new(&settings.security).map_err(|(field, reason)| {
            KafkaError::Security {
                key: format!("kafka.security.{field}"),
                reason,
            }
        })?;
        let controller_client =
            KafkaClient::new(&settings.controller_security).map_err(|(field, reason)| {
                KafkaError::Security {
                    key: format!("kafka.controller_security.{field}"),
                    reason,
                }
            })?;
        let server_properties = settings.formatter.server_properties.clone();
        let kraft =
            (settings.mode == KafkaMode::Kraft).then(|| Kraft::new(&settings, controller_client));
        let runner = match settings.supervision {
            Supervision::Systemd { unit } => Runner::Systemd(SystemdUnit::new(unit)),
            Supervision::Process { command } => Runner::Process(ProcessSupervisor::new(
                command,
                settings.overlay_path.clone(),
                policy,
            )),
        };
        let registrations = (settings.mode == KafkaMode::Zookeeper).then(|| {
            let at = &settings.registrations;
            RegistrationWatch::new(&at.connect, at.session_timeout, &at.kafka_chroot)
        });
        Ok(Self {
            mode: settings.mode,
            listener_name: settings.listener_name,
            port: settings.port,
            overlay_path: settings.overlay_path,
            server_properties,
            client,
            stop_timeout: settings.stop_timeout,
            probe_timeout: settings.check_interval.min(PROBE_TIMEOUT_MAX),
            runner,
            kraft,
            registrations,
            voters: Mutex::new(None),
            started_as: Mutex::new(None),
            node: Mutex::new(None),
        })
    }

    /// ZooKeeper mode: read Kafka's registrations on berth's claim session (one session per berth) while it
    /// lives, instead of a session of the registration watch's own.
    pub fn borrowing_zookeeper_session(mut self, shared: berth_zk::SharedSession) -> Self {
        self.registrations = self
            .registrations
            .take()
            .map(|registrations| registrations.borrowing(shared));
        self
    }

    /// KRaft: where the cluster's birth is recorded (the controllers' volume tags in production). Without one,
    /// the birth is unknown and a blank controller is never formatted.
    pub fn with_birth_record(mut self, record: Arc<dyn BirthRecord>) -> Self {
        if let Some(kraft) = &mut self.kraft {
            kraft.set_birth_record(record);
        }
        self
    }

    /// KRaft: every id's ENI address, for `controller.quorum.voters` (the daemon carries discovery's in the
    /// spec; set here, these win).
    pub fn set_quorum_voters(&self, voters: BTreeMap<BrokerId, Ipv4Addr>) {
        *self.voters.lock().expect("voters lock") = Some(voters);
    }

    /// The controllers' ids and ENI addresses (KRaft): of the addresses set explicitly, else of the daemon's
    /// discovery result carried in the spec; `kafka.controller_ids`' each, or fail closed.
    fn controllers(&self, spec: &BrokerSpec) -> Result<BTreeMap<BrokerId, Ipv4Addr>, KafkaError> {
        let Some(kraft) = &self.kraft else {
            return Ok(BTreeMap::new());
        };
        let known = self
            .voters
            .lock()
            .expect("voters lock")
            .clone()
            .unwrap_or_else(|| spec.voters.clone());
        kraft.controllers(&known, spec.broker_id)
    }

    /// The overlay text for a broker.
    pub fn render_overlay(&self, spec: &BrokerSpec) -> Result<String, KafkaError> {
        let voters = match &self.kraft {
            Some(kraft) if kraft.renders_voters() => {
                let voters = self.controllers(spec)?;
                if voters.is_empty() {
                    return Err(KafkaError::MissingVoters {
                        broker_id: spec.broker_id,
                    });
                }
                Some(voters)
            }
            _ => None,
        };
        let operator =
            listeners::read_operator(&self.server_properties).map_err(|failure| match failure {
                listeners::ReadError::Io(source) => KafkaError::ServerProperties {
                    path: self.server_properties.clone(),
                    source,
                },
                listeners::ReadError::Listeners(reason) => KafkaError::Listeners(reason),
            })?;
        let advertised = listeners::advertised(
            &operator,
            &self.listener_name,
            self.port,
            spec.advertised_ip,
        )
        .map_err(KafkaError::Listeners)?;
        Ok(overlay::render(&OverlayInput {
            mode: self.mode,
            spec,
            advertised_listeners: &advertised,
            voters: voters.as_ref(),
            controller_port: self.kraft.as_ref().map_or(0, Kraft::controller_port),
        }))
    }

    /// The child Kafka's state (process supervisor only).
    pub fn child_state(&self) -> Option<ChildState> {
        match &self.runner {
            Runner::Process(process) => process.state(),
            Runner::Systemd(_) => None,
        }
    }

    fn target(&self, spec: &BrokerSpec) -> ProbeTarget {
        ProbeTarget {
            listener: SocketAddr::from((spec.advertised_ip, self.port)),
            broker_id: spec.broker_id.0 as i32,
            host: spec.advertised_ip.to_string(),
            port: self.port,
        }
    }

    /// Checks a registration against the ENI address and port.
    fn matches(
        &self,
        spec: &BrokerSpec,
        registration: &Registration,
        path: String,
    ) -> Result<(), KafkaError> {
        let host = spec.advertised_ip.to_string();
        match registration.endpoint(&self.listener_name) {
            Some(endpoint) if endpoint.host == host && endpoint.port == self.port => Ok(()),
            _ => {
                let seen: Vec<String> = registration
                    .endpoints
                    .iter()
                    .map(|e| format!("{}://{}:{}", e.listener, e.host, e.port))
                    .collect();
                Err(KafkaError::WrongRegistration {
                    path,
                    listener: self.listener_name.clone(),
                    expected: format!("{host}:{}", self.port),
                    seen: seen.join(", "),
                })
            }
        }
    }

    fn evidence(
        &self,
        spec: &BrokerSpec,
        report: &ProbeReport,
        registered: bool,
    ) -> ServingEvidence {
        let target = self.target(spec);
        let registration = if registered {
            format!(
                "registered {}://{}:{} at {}; ",
                self.listener_name,
                target.host,
                self.port,
                self.registrations
                    .as_ref()
                    .map(|r| r.path(spec.broker_id))
                    .unwrap_or_default()
            )
        } else {
            String::new()
        };
        ServingEvidence {
            listener: target.listener,
            probe_micros: report.elapsed.as_micros() as u64,
            detail: format!(
                "{registration}Metadata v{} lists broker {} at {}:{} (controller {}, cluster {})",
                report.metadata_version,
                spec.broker_id,
                target.host,
                self.port,
                report.controller_id,
                report.cluster_id.as_deref().unwrap_or("-"),
            ),
        }
    }

    /// A child that exited: a refusal is fatal, an exit without restart is an error, a restart is awaited.
    fn judge_child(&self, spec: &BrokerSpec, state: &ChildState) -> Result<(), KafkaError> {
        match state {
            ChildState::Exited { reason, .. } if REFUSALS.iter().any(|r| reason.contains(r)) => {
                Err(KafkaError::Refused {
                    broker_id: spec.broker_id,
                    reason: reason.clone(),
                })
            }
            ChildState::Exited {
                status,
                reason,
                restarting: false,
            } => Err(KafkaError::Exited {
                status: status.clone(),
                reason: reason.clone(),
            }),
            ChildState::Stopped => Err(KafkaError::NotRunning {
                detail: "stopped".into(),
            }),
            _ => Ok(()),
        }
    }

    async fn launch(
        &self,
        changed: bool,
        deadline: Deadline,
    ) -> Result<Option<watch::Receiver<ChildState>>, KafkaError> {
        match &self.runner {
            Runner::Systemd(unit) => {
                // New settings need a restart; otherwise start is a no-op for a running unit.
                let action = if changed {
                    UnitAction::Restart
                } else {
                    UnitAction::Start
                };
                unit.run(action, deadline.remaining()).await?;
                Ok(None)
            }
            Runner::Process(process) => {
                // New settings, or a Kafka that gave up: stop what is there so the start below is fresh.
                let state = process.state();
                let gave_up = matches!(
                    state,
                    Some(
                        ChildState::Exited {
                            restarting: false,
                            ..
                        } | ChildState::Stopped
                    )
                );
                if state.is_some() && (changed || gave_up) {
                    process
                        .stop(self.stop_timeout.min(deadline.remaining()))
                        .await;
                }
                Ok(Some(process.start()?))
            }
        }
    }

    /// One look at whether the broker serves: the registration (ZooKeeper mode), then the probe.
    async fn serving_once(
        &self,
        spec: &BrokerSpec,
        deadline: Deadline,
    ) -> Result<ServingEvidence, KafkaError> {
        if let Some(registrations) = &self.registrations {
            let registration = registrations
                .wait_for(spec.broker_id, deadline)
                .await
                .map_err(KafkaError::Registration)?;
            if let Err(wrong) =
                self.matches(spec, &registration, registrations.path(spec.broker_id))
            {
                // Kafka writes its registration once per session: wait for it to go (a restart), not poll.
                let _ = tokio::time::timeout(
                    deadline.remaining(),
                    registrations.wait_gone(spec.broker_id),
                )
                .await;
                return Err(wrong);
            }
        }
        let remaining = deadline.remaining().max(Duration::from_millis(1));
        self.look(spec, self.probe_timeout.min(remaining)).await
    }

    /// The protocol evidence: Metadata on the broker listener, or, for a controller-only node (no broker
    /// listener), DescribeQuorum showing it a voter at the high watermark.
    async fn look(
        &self,
        spec: &BrokerSpec,
        timeout: Duration,
    ) -> Result<ServingEvidence, KafkaError> {
        if let (Some(kraft), Some(node)) = (&self.kraft, self.kraft_node(spec)?) {
            if node.controller_only() {
                return kraft
                    .controller_serving(spec, &node.settings, &node.controllers, timeout)
                    .await;
            }
        }
        let report = probe::probe(&self.client, &self.target(spec), timeout).await?;
        Ok(self.evidence(spec, &report, self.registrations.is_some()))
    }

    /// KRaft: the node's settings and controllers, as the last start prepared them or, for a Kafka adopted
    /// running, as the overlay renders them now.
    fn kraft_node(&self, spec: &BrokerSpec) -> Result<Option<KraftNode>, KafkaError> {
        let Some(kraft) = &self.kraft else {
            return Ok(None);
        };
        let mut node = self.node.lock().expect("node lock");
        if node.is_none() {
            let text = self.render_overlay(spec)?;
            let settings =
                kraft
                    .formatter()
                    .settings(&text)
                    .map_err(|source| KafkaError::Format {
                        broker_id: spec.broker_id,
                        source,
                    })?;
            *node = Some(KraftNode {
                settings,
                controllers: self.controllers(spec)?,
            });
        }
        Ok(node.clone())
    }

    /// Waits until the registration (ZooKeeper mode) and the probe prove the broker serving, by the deadline.
    async fn wait_serving(
        &self,
        spec: &BrokerSpec,
        deadline: Deadline,
        mut child: Option<watch::Receiver<ChildState>>,
    ) -> Result<ServingEvidence, KafkaError> {
        let target = self.target(spec);
        let mut seen: String;
        let mut jitter = Jitter::new(stable_hash(&target.listener.to_string()));
        let mut attempt = 0;
        loop {
            if let Some(child) = &child {
                self.judge_child(spec, &child.borrow())?;
            }
            let step = self.serving_once(spec, deadline);
            let outcome = tokio::select! {
                outcome = step => Some(outcome),
                _ = child_exit(&mut child) => None,
            };
            match outcome {
                Some(Ok(evidence)) => return Ok(evidence),
                Some(Err(KafkaError::Registration(ZkError::Timeout { path, .. }))) => {
                    seen = format!("{path} absent: broker {} never registered", spec.broker_id)
                }
                Some(Err(error)) if error.kind() == ErrorKind::Fatal => return Err(error),
                Some(Err(error)) => seen = berth_core::ports::chain_message(&error),
                None => continue,
            }
            if deadline.expired() {
                return Err(KafkaError::NotServing {
                    broker_id: spec.broker_id,
                    seen,
                });
            }
            attempt += 1;
            berth_core::progress::report(format!(
                "Kafka listener {}: not serving yet: {seen}",
                target.listener
            ));
            tokio::select! {
                _ = tokio::time::sleep(SERVING_BACKOFF.delay(attempt, &mut jitter).min(deadline.remaining())) => {}
                _ = child_exit(&mut child) => {}
            }
            if deadline.expired() {
                return Err(KafkaError::NotServing {
                    broker_id: spec.broker_id,
                    seen,
                });
            }
        }
    }

    /// Writes the overlay; in KRaft mode first reads the birth evidence, refuses a voter set other than the
    /// one the cluster was born with, and after writing formats blank storage when the birth rule or the
    /// majority allows it ([`Kraft::prepare_storage`]). Returns whether the overlay changed.
    async fn prepare(
        &self,
        spec: &BrokerSpec,
        text: &str,
        deadline: Deadline,
    ) -> Result<bool, KafkaError> {
        let write = || {
            overlay::write_atomic(&self.overlay_path, text).map_err(|source| KafkaError::Overlay {
                path: self.overlay_path.clone(),
                source,
            })
        };
        let Some(kraft) = &self.kraft else {
            let changed = write()?;
            self.check_blank_start(spec).await?;
            return Ok(changed);
        };
        let broker_id = spec.broker_id;
        let settings = kraft
            .formatter()
            .settings(text)
            .map_err(|source| KafkaError::Format { broker_id, source })?;
        let controllers = self.controllers(spec)?;
        let birth = if kraft.renders_voters() || settings.controller {
            kraft.birth(broker_id).await?
        } else {
            Birth::Unknown {
                reason: "not read: a broker that renders no voters needs no birth evidence".into(),
            }
        };
        if kraft.renders_voters() {
            kraft.check_voters(
                broker_id,
                &kraft.voter_text(&controllers, &settings),
                &birth,
            )?;
        }
        let changed = write()?;
        kraft
            .prepare_storage(spec, &settings, &controllers, &birth, deadline)
            .await?;
        // A broker-only node is not checked: with every other broker down nothing positive would ever let a
        // split layout's first blank broker start (docs/kafka.md says what evidence that would need).
        if settings.controller && matches!(birth, Birth::Born { .. }) {
            self.check_blank_start(spec).await?;
        }
        *self.node.lock().expect("node lock") = Some(KraftNode {
            settings,
            controllers,
        });
        Ok(changed)
    }

    /// On log dirs that hold no partition and that Kafka has never run on (a lost volume replaced by a blank one;
    /// in KRaft mode only a combined node in a born cluster), Kafka starts only when the cluster's record shows
    /// that this broker cannot become leader of an empty log ([`berth_core::replication::blank_start`]):
    /// ZooKeeper's in ZooKeeper mode, another broker's Metadata in KRaft mode. No answer is no evidence. Not asked
    /// when its own Kafka already answers (a step run again), nor in KRaft mode when this is the only broker
    /// configured. Log dirs Kafka has run on are not blank even without partitions: otherwise a whole cluster
    /// that hosts none, restarted at once, would wait for itself.
    async fn check_blank_start(&self, spec: &BrokerSpec) -> Result<(), KafkaError> {
        let broker_id = spec.broker_id;
        let question = Question::about(spec).map_err(KafkaError::LogDirsUnlisted)?;
        if !question.on_disk.is_empty() || replication::kafka_has_run(&spec.log_dirs) {
            return Ok(());
        }
        let (own, others): (Vec<_>, Vec<_>) = replication::peers(spec, self.port)
            .into_iter()
            .partition(|peer| peer.id == Some(broker_id.0));
        if self.registrations.is_none() && others.is_empty() {
            // The only broker there is: no replica elsewhere holds anything an empty log could overwrite.
            return Ok(());
        }
        for peer in own {
            if replication::describe(&self.client, peer, &question, REPLICATION_TIMEOUT)
                .await
                .is_ok()
            {
                return Ok(());
            }
        }
        let view = match &self.registrations {
            Some(zookeeper) => zookeeper.replicated_by(broker_id).await.map_err(|error| {
                format!(
                    "ZooKeeper could not be read, so nothing shows this blank broker cannot lead an empty \
                     log: {}",
                    berth_core::ports::chain_message(&error)
                )
            }),
            None => replication::describe_any(&self.client, &others, &question, REPLICATION_TIMEOUT)
                .await
                .map_err(|failures| {
                    format!(
                        "no other broker answered Metadata, so nothing shows this blank broker cannot lead \
                         an empty log: {}",
                        each_failure(&failures)
                    )
                }),
        };
        let decided = view.and_then(|view| {
            berth_core::replication::blank_start(&view, broker_id)
                .map_err(|refusal| refusal.to_string())
        });
        match decided {
            Ok(checked) => {
                tracing::info!(%broker_id, checked, "log dirs hold no partition: every partition shared with other replicas has another live leader");
                Ok(())
            }
            Err(reason) => {
                tracing::warn!(%broker_id, why = %reason, "blank broker not started");
                berth_core::progress::report(format!("blank broker not started: {reason}"));
                Err(KafkaError::BlankStartUnsafe { broker_id, reason })
            }
        }
    }

    /// KRaft, a controller: after the start (or while Healthy, until its volume is marked), what the quorum says
    /// of this node, for the serving evidence.
    async fn confirm_quorum(&self, spec: &BrokerSpec) -> Option<String> {
        let kraft = self.kraft.as_ref()?;
        let node = self.kraft_node(spec).ok()??;
        let report = kraft
            .confirm(spec, &node.settings, &node.controllers)
            .await?;
        Some(match report.membership {
            Membership::Voter => format!("a voter; birth mark: {}", report.mark),
            Membership::NotVoter { reason, fix } => {
                format!(
                    "NOT a voter: {reason}; fix: {fix}; birth mark: {}",
                    report.mark
                )
            }
        })
    }

    async fn check_once(&self, spec: &BrokerSpec) -> Result<ServingEvidence, KafkaError> {
        if let Some(state) = self.child_state() {
            if !matches!(state, ChildState::Running { .. }) {
                return Err(KafkaError::NotRunning {
                    detail: format!("{state:?}"),
                });
            }
        }
        if let Some(registrations) = &self.registrations {
            let path = registrations.path(spec.broker_id);
            match registrations
                .get(spec.broker_id)
                .await
                .map_err(KafkaError::Registration)?
            {
                Some(registration) => self.matches(spec, &registration, path)?,
                None => {
                    return Err(KafkaError::NotRegistered {
                        broker_id: spec.broker_id,
                        path,
                    })
                }
            }
        }
        self.look(spec, self.probe_timeout).await
    }

    async fn stop_inner(&self, deadline: Deadline) -> Result<(), KafkaError> {
        match &self.runner {
            Runner::Systemd(unit) => unit.run(UnitAction::Stop, deadline.remaining()).await?,
            Runner::Process(process) => {
                process
                    .stop(self.stop_timeout.min(deadline.remaining()))
                    .await;
            }
        }
        // Kafka deregisters on a controlled shutdown (its session closes): confirm it, watch-driven.
        let id = *self.started_as.lock().expect("started_as lock");
        if let (Some(registrations), Some(id)) = (&self.registrations, id) {
            let path = registrations.path(id);
            match tokio::time::timeout(deadline.remaining(), registrations.wait_gone(id)).await {
                Ok(result) => result.map_err(KafkaError::Registration)?,
                Err(_) => return Err(KafkaError::StillRegistered { path }),
            }
        }
        Ok(())
    }
}

/// Resolves at the child's next change to a state other than running (an exit already seen does not count
/// again, so a restart delay is not a busy loop); pends forever without a child.
async fn child_exit(child: &mut Option<watch::Receiver<ChildState>>) {
    let Some(receiver) = child else {
        return std::future::pending().await;
    };
    loop {
        if receiver.changed().await.is_err() {
            return std::future::pending().await;
        }
        if !matches!(*receiver.borrow_and_update(), ChildState::Running { .. }) {
            return;
        }
    }
}

#[async_trait]
impl Broker for KafkaBroker {
    async fn start(
        &self,
        spec: &BrokerSpec,
        deadline: Deadline,
    ) -> Result<ServingEvidence, StepError> {
        let started = Instant::now();
        *self.started_as.lock().expect("started_as lock") = Some(spec.broker_id);
        let text = self.render_overlay(spec)?;
        let changed = self.prepare(spec, &text, deadline).await?;
        tracing::info!(broker_id = %spec.broker_id, overlay = %self.overlay_path.display(), changed, "starting kafka");
        let child = self.launch(changed, deadline).await?;
        match self.wait_serving(spec, deadline, child).await {
            Ok(mut evidence) => {
                if let Some(formatted) = self.kraft.as_ref().and_then(Kraft::take_format_note) {
                    evidence.detail.push_str(&format!("; storage {formatted}"));
                }
                if let Some(quorum) = self.confirm_quorum(spec).await {
                    evidence.detail.push_str(&format!("; quorum: {quorum}"));
                }
                tracing::info!(broker_id = %spec.broker_id, elapsed = ?started.elapsed(), detail = %evidence.detail, "kafka serving");
                Ok(evidence)
            }
            Err(error) => {
                if error.kind() == ErrorKind::Fatal {
                    // Kafka refused for good: do not leave it crash-looping.
                    let _ = self.stop_inner(Deadline::after(self.stop_timeout)).await;
                }
                Err(error.into())
            }
        }
    }

    async fn check(&self, spec: &BrokerSpec) -> Result<ServingEvidence, StepError> {
        let evidence = self.check_once(spec).await?;
        if self.kraft.as_ref().is_some_and(Kraft::confirm_due) {
            // A Kafka adopted running (or one whose quorum had not committed at its start): mark it once it has.
            self.confirm_quorum(spec).await;
        }
        Ok(evidence)
    }

    async fn stop(&self, deadline: Deadline) -> Result<(), StepError> {
        self.stop_inner(deadline).await?;
        Ok(())
    }

    async fn replication(&self, spec: &BrokerSpec) -> Result<ReplicationView, StepError> {
        let question = Question::about(spec).map_err(KafkaError::LogDirsUnlisted)?;
        let peers = replication::peers(spec, self.port);
        replication::describe_any(&self.client, &peers, &question, REPLICATION_TIMEOUT)
            .await
            .map_err(|failures| KafkaError::Replication { failures }.into())
    }
}
