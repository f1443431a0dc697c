//! [`KafkaBroker`]: the [`Broker`] port over the overlay, the supervisor, the registration watch and the probe.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use berth_core::ports::{Broker, BrokerSpec, Deadline, StepError};
use berth_core::replication::ReplicationView;
use berth_core::retry::{stable_hash, Jitter, RetryPolicy};
use berth_core::{BrokerId, Classify, ErrorKind, KafkaMode, ServingEvidence};
use berth_zk::registration::{Registration, RegistrationWatch};
use berth_zk::ZkError;
use tokio::sync::watch;

use crate::client::{KafkaClient, Peer};
use crate::format::{self, FormatError, Formatter, StorageState};
use crate::listeners;
use crate::overlay::{self, OverlayInput};
use crate::probe::{self, ProbeError, ProbeReport, ProbeTarget};
use crate::quorum::{self, Quorum, Role, StorageDecision};
use crate::replication::{self, Question};
use crate::settings::{KafkaSettings, Supervision};
use crate::supervisor::{
    ChildState, ProcessSupervisor, RestartPolicy, SupervisorError, SystemdUnit, UnitAction,
};

/// Longest a single probe may take (a check never waits longer than this for a dead listener).
const PROBE_TIMEOUT_MAX: Duration = Duration::from_secs(2);
/// How long each other controller is given to answer (connect and DescribeQuorum) before a blank controller
/// is formatted.
const QUORUM_ASK_TIMEOUT: Duration = Duration::from_secs(3);
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
    /// A controller's storage is blank while formatting it could lose committed metadata.
    #[error("broker {broker_id}: blank KRaft storage not formatted: {reason}")]
    QuorumUnsafe {
        /// The broker being started.
        broker_id: BrokerId,
        /// What the quorum showed, and what would make it safe.
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
            | KafkaError::MissingClusterId { .. }
            | KafkaError::Security { .. }
            | KafkaError::Listeners(_) => ErrorKind::Fatal,
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
    controller_port: u16,
    quorum_voters: bool,
    controller_ids: Option<std::collections::BTreeSet<BrokerId>>,
    overlay_path: PathBuf,
    server_properties: PathBuf,
    client: KafkaClient,
    controller_client: KafkaClient,
    stop_timeout: Duration,
    probe_timeout: Duration,
    runner: Runner,
    formatter: Option<Formatter>,
    cluster_id: Option<String>,
    registrations: Option<RegistrationWatch>,
    voters: Mutex<Option<BTreeMap<BrokerId, Ipv4Addr>>>,
    started_as: Mutex<Option<BrokerId>>,
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
        let runner = match settings.supervision {
            Supervision::Systemd { unit } => Runner::Systemd(SystemdUnit::new(unit)),
            Supervision::Process { command } => Runner::Process(ProcessSupervisor::new(
                command,
                settings.overlay_path.clone(),
                policy,
            )),
        };
        let (registrations, formatter) = match settings.mode {
            KafkaMode::Zookeeper => {
                let at = &settings.registrations;
                let watch =
                    RegistrationWatch::new(&at.connect, at.session_timeout, &at.kafka_chroot);
                (Some(watch), None)
            }
            KafkaMode::Kraft => (None, Some(settings.formatter)),
        };
        Ok(Self {
            mode: settings.mode,
            listener_name: settings.listener_name,
            port: settings.port,
            controller_port: settings.controller_port,
            quorum_voters: settings.quorum_voters,
            controller_ids: (!settings.controller_ids.is_empty())
                .then(|| settings.controller_ids.into_iter().collect()),
            overlay_path: settings.overlay_path,
            server_properties,
            client,
            controller_client,
            stop_timeout: settings.stop_timeout,
            probe_timeout: settings.check_interval.min(PROBE_TIMEOUT_MAX),
            runner,
            formatter,
            cluster_id: settings.cluster_id,
            registrations,
            voters: Mutex::new(None),
            started_as: Mutex::new(None),
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

    /// KRaft: every voter's id and ENI address, for `controller.quorum.voters` (needed when
    /// `kafka.quorum_voters` is on; the daemon takes them from discovery).
    pub fn set_quorum_voters(&self, voters: BTreeMap<BrokerId, Ipv4Addr>) {
        *self.voters.lock().expect("voters lock") = Some(voters);
    }

    /// The controllers' ids and ENI addresses: voters set explicitly win, otherwise the daemon's discovery
    /// result carried in the spec; only `kafka.controller_ids` when set.
    fn controllers(&self, spec: &BrokerSpec) -> Option<BTreeMap<BrokerId, Ipv4Addr>> {
        let mut voters = self
            .voters
            .lock()
            .expect("voters lock")
            .clone()
            .or_else(|| (!spec.voters.is_empty()).then(|| spec.voters.clone()))?;
        if let Some(ids) = &self.controller_ids {
            voters.retain(|id, _| ids.contains(id));
        }
        Some(voters)
    }

    /// The overlay text for a broker.
    pub fn render_overlay(&self, spec: &BrokerSpec) -> Result<String, KafkaError> {
        let voters = self.controllers(spec);
        let voters = match (self.mode, self.quorum_voters) {
            (KafkaMode::Kraft, true) => Some(voters.ok_or(KafkaError::MissingVoters {
                broker_id: spec.broker_id,
            })?),
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
            controller_port: self.controller_port,
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
            let step = async {
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
                let report =
                    probe::probe(&self.client, &target, self.probe_timeout.min(remaining)).await?;
                Ok(self.evidence(spec, &report, self.registrations.is_some()))
            };
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

    /// KRaft: formats blank storage before Kafka's first start on it; formatted storage is left to Kafka's own
    /// checks. The one place that decides whether this node's storage may be formatted: a controller's blank
    /// storage only in a fresh cluster or while the other voters hold a majority ([`quorum`]).
    async fn prepare_storage(
        &self,
        spec: &BrokerSpec,
        overlay: &str,
        deadline: Deadline,
    ) -> Result<(), KafkaError> {
        let Some(formatter) = &self.formatter else {
            return Ok(());
        };
        let broker_id = spec.broker_id;
        let failed = |source| KafkaError::Format { broker_id, source };
        let storage = format::assess(&spec.log_dirs).map_err(failed)?;
        if storage == StorageState::Formatted {
            return Ok(());
        }
        let settings = formatter.settings(overlay).map_err(failed)?;
        let others: Vec<(BrokerId, SocketAddr)> = self
            .controllers(spec)
            .unwrap_or_default()
            .into_iter()
            .filter(|(id, _)| *id != broker_id)
            .map(|(id, ip)| (id, SocketAddr::from((ip, self.controller_port))))
            .collect();
        let role = match (settings.controller, settings.dynamic) {
            (false, _) => Role::Broker,
            (true, false) => Role::StaticController,
            (true, true) => Role::DynamicController {
                first: others.iter().all(|(id, _)| *id > broker_id),
            },
        };
        let seen = if settings.controller {
            let peers: Vec<Peer> = others.iter().map(|(id, a)| Peer::new(id.0, *a)).collect();
            let timeout = QUORUM_ASK_TIMEOUT.min(deadline.remaining());
            quorum::observe(&self.controller_client, &peers, timeout).await
        } else {
            Quorum::Silent
        };
        let (why, arguments) = match quorum::decide(&storage, broker_id.0 as i32, role, &seen) {
            StorageDecision::LeaveAlone => return Ok(()),
            StorageDecision::Refuse(reason) => {
                berth_core::progress::report(format!(
                    "blank KRaft storage not formatted: {reason}"
                ));
                return Err(KafkaError::QuorumUnsafe { broker_id, reason });
            }
            StorageDecision::Format(why, arguments) => (why, arguments),
        };
        let cluster_id = self
            .cluster_id
            .as_deref()
            .ok_or(KafkaError::MissingClusterId { broker_id })?;
        tracing::info!(%broker_id, cluster_id, log_dirs = ?spec.log_dirs, why = %why, arguments = ?arguments, "every log dir is blank: formatting KRaft storage");
        formatter
            .format(
                cluster_id,
                &self.overlay_path,
                &settings.merged,
                &arguments,
                &spec.log_dirs,
                deadline.remaining(),
            )
            .await
            .map_err(failed)?;
        Ok(())
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
        let report = probe::probe(&self.client, &self.target(spec), self.probe_timeout).await?;
        Ok(self.evidence(spec, &report, self.registrations.is_some()))
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
        let changed = overlay::write_atomic(&self.overlay_path, &text).map_err(|source| {
            KafkaError::Overlay {
                path: self.overlay_path.clone(),
                source,
            }
        })?;
        self.prepare_storage(spec, &text, deadline).await?;
        tracing::info!(broker_id = %spec.broker_id, overlay = %self.overlay_path.display(), changed, "starting kafka");
        let child = self.launch(changed, deadline).await?;
        match self.wait_serving(spec, deadline, child).await {
            Ok(evidence) => {
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
        Ok(self.check_once(spec).await?)
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
