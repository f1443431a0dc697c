//! The KRaft side of the Kafka adapter: which controllers there are, whether blank storage may be formatted
//! (the birth rule and the majority check, [`crate::format_rule`]), the birth mark once the quorum has
//! committed, and what DescribeQuorum says of this node after it starts.
//!
//! * **Controllers** come from `kafka.controller_ids` (with `kafka.quorum_voters`, only from there; the
//!   configuration requires them) and their ENI addresses from discovery; a configured controller whose ENI
//!   discovery did not find fails closed, so a missing or duplicated tag can never shrink the voter set.
//! * **The voter set the cluster was born with** is kept: before writing the overlay, every birth mark on the
//!   controllers' volumes must name the same cluster and voters as this node would render
//!   ([`berth_core::birth::check_voters`]); otherwise Kafka is not started.
//! * **After Kafka serves**, a controller asks the quorum: it confirms that this (node id, directory id) is a
//!   voter (a dynamic quorum's auto-join is never assumed: when it is not, the journal and the step's report
//!   say so with the `kafka-metadata-quorum` commands that fix it), and once it is a voter at a committed high
//!   watermark it marks its own volume as born ([`BirthRecord::mark`]), which it also does from the health
//!   check until it succeeds (a Kafka adopted running, a quorum that had not committed at the start: clusters
//!   that predate the mark are marked this way); after a failed write it waits [`MARK_RETRY`].
//! * **A controller-only node** (`process.roles=controller`) has no broker listener: it serves when it is a
//!   voter at the quorum's high watermark ([`crate::quorum::at_high_watermark`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_core::birth::{self, Birth, BirthMark, BirthRecord, DYNAMIC_VOTERS};
use berth_core::ports::{BrokerSpec, Deadline};
use berth_core::{BrokerId, ServingEvidence};

use crate::broker::KafkaError;
use crate::client::{KafkaClient, Peer};
use crate::format::{self, Formatter, StorageState, ToolSettings, FORMAT_MIN_TIME};
use crate::format_rule::{self, Role, StorageDecision};
use crate::quorum::{self, Membership, Quorum, QuorumView, NO_DIRECTORY_ID};
use crate::settings::KafkaSettings;
use crate::staging;

/// How long each other controller is given to answer (connect and DescribeQuorum).
pub const QUORUM_ASK_TIMEOUT: Duration = Duration::from_secs(3);
/// After a birth mark that could not be written, how long before the health check tries again: a mark that
/// keeps failing (say, `ec2:CreateTags` not granted) must not cost EC2 calls at every check.
pub const MARK_RETRY: Duration = Duration::from_secs(60);

/// The KRaft settings and state of one broker adapter.
pub(crate) struct Kraft {
    formatter: Formatter,
    /// How the controllers' listener is reached (`kafka.controller_security`).
    client: KafkaClient,
    cluster_id: Option<String>,
    controller_port: u16,
    quorum_voters: bool,
    controller_ids: Vec<BrokerId>,
    broker_count: u32,
    overlay_path: PathBuf,
    birth: Option<Arc<dyn BirthRecord>>,
    marked: AtomicBool,
    formatted: Mutex<Option<String>>,
    last_failed_mark: Mutex<Option<std::time::Instant>>,
}

/// What a controller learnt from the quorum after its start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumReport {
    /// Whether this node is a voter, and if not, the fix.
    pub membership: Membership,
    /// The birth mark's outcome: written, already there, or why not yet.
    pub mark: String,
}

impl Kraft {
    pub(crate) fn new(settings: &KafkaSettings, client: KafkaClient) -> Self {
        Self {
            formatter: settings.formatter.clone(),
            client,
            cluster_id: settings.cluster_id.clone(),
            controller_port: settings.controller_port,
            quorum_voters: settings.quorum_voters,
            controller_ids: settings.controller_ids.clone(),
            broker_count: settings.broker_count,
            overlay_path: settings.overlay_path.clone(),
            birth: None,
            marked: AtomicBool::new(false),
            formatted: Mutex::new(None),
            last_failed_mark: Mutex::new(None),
        }
    }

    pub(crate) fn set_birth_record(&mut self, record: Arc<dyn BirthRecord>) {
        self.birth = Some(record);
    }

    pub(crate) fn formatter(&self) -> &Formatter {
        &self.formatter
    }

    pub(crate) fn controller_port(&self) -> u16 {
        self.controller_port
    }

    /// Whether berth renders `controller.quorum.voters`.
    pub(crate) fn renders_voters(&self) -> bool {
        self.quorum_voters
    }

    /// Every controller id: `kafka.controller_ids`, or every id when none are configured.
    fn controller_set(&self) -> BTreeSet<BrokerId> {
        birth::controller_set(&self.controller_ids, (0..self.broker_count).map(BrokerId))
    }

    /// The controllers' ENI addresses among `known` (discovery's). A configured controller id without one
    /// fails closed.
    pub(crate) fn controllers(
        &self,
        known: &BTreeMap<BrokerId, Ipv4Addr>,
        broker_id: BrokerId,
    ) -> Result<BTreeMap<BrokerId, Ipv4Addr>, KafkaError> {
        let wanted = self.controller_set();
        let missing: Vec<String> = wanted
            .iter()
            .filter(|id| !known.contains_key(id))
            .map(ToString::to_string)
            .collect();
        if !self.controller_ids.is_empty() && !missing.is_empty() {
            return Err(KafkaError::ControllerEniMissing {
                broker_id,
                ids: missing.join(", "),
            });
        }
        Ok(known
            .iter()
            .filter(|(id, _)| wanted.contains(id))
            .map(|(id, ip)| (*id, *ip))
            .collect())
    }

    /// The voters as they would be recorded in a birth mark.
    pub(crate) fn voter_text(
        &self,
        controllers: &BTreeMap<BrokerId, Ipv4Addr>,
        settings: &ToolSettings,
    ) -> String {
        if self.quorum_voters {
            birth::render_voters(controllers, self.controller_port)
        } else if settings.dynamic {
            DYNAMIC_VOTERS.to_owned()
        } else {
            quorum_voters_of(&settings.merged).unwrap_or_default()
        }
    }

    /// The birth evidence, read now; without a record configured, unknown.
    pub(crate) async fn birth(&self, broker_id: BrokerId) -> Result<Birth, KafkaError> {
        let Some(record) = &self.birth else {
            return Ok(Birth::Unknown {
                reason: "no birth record is configured".into(),
            });
        };
        let evidence = record
            .read(&self.controller_set())
            .await
            .map_err(|source| KafkaError::BirthEvidence { broker_id, source })?;
        let birth = birth::judge(&evidence);
        if let Birth::Born { marked } = &birth {
            if marked.iter().any(|m| m.id == broker_id) {
                self.marked.store(true, Ordering::Relaxed);
            }
        }
        Ok(birth)
    }

    /// Refuses to start Kafka with a voter set other than the one the cluster was born with.
    pub(crate) fn check_voters(
        &self,
        broker_id: BrokerId,
        voters: &str,
        birth: &Birth,
    ) -> Result<(), KafkaError> {
        let cluster_id = self.cluster_id.as_deref().unwrap_or_default();
        birth::check_voters(cluster_id, voters, birth)
            .map_err(|reason| KafkaError::VoterSetChanged { broker_id, reason })
    }

    /// Formats blank storage when the birth rule or the majority allows it; formatted storage is left to Kafka.
    pub(crate) async fn prepare_storage(
        &self,
        spec: &BrokerSpec,
        settings: &ToolSettings,
        controllers: &BTreeMap<BrokerId, Ipv4Addr>,
        birth: &Birth,
        deadline: Deadline,
    ) -> Result<(), KafkaError> {
        let broker_id = spec.broker_id;
        let failed = |source| KafkaError::Format { broker_id, source };
        self.formatter
            .settle(deadline.remaining())
            .await
            .map_err(failed)?;
        let metadata_dir = settings.metadata_dir(&spec.log_dirs).map_err(failed)?;
        for done in staging::recover(&spec.log_dirs, &metadata_dir).map_err(failed)? {
            tracing::warn!(%broker_id, %done, "an interrupted format was found");
        }
        let storage = format::assess(&spec.log_dirs).map_err(failed)?;
        if storage == StorageState::Formatted {
            return Ok(());
        }
        if deadline.remaining() < FORMAT_MIN_TIME + QUORUM_ASK_TIMEOUT && settings.controller {
            return Err(failed(format::FormatError::TooLittleTime {
                left: deadline.remaining(),
                needed: FORMAT_MIN_TIME + QUORUM_ASK_TIMEOUT,
            }));
        }
        let (basis, why, arguments) = match self
            .decide(spec, settings, controllers, birth, &storage, deadline)
            .await
        {
            StorageDecision::LeaveAlone => return Ok(()),
            StorageDecision::Refuse(reason) => {
                tracing::info!(%broker_id, berth_birth = %birth, why = %reason, "blank KRaft storage not formatted");
                berth_core::progress::report(format!(
                    "blank KRaft storage not formatted: {reason}"
                ));
                return Err(KafkaError::QuorumUnsafe { broker_id, reason });
            }
            StorageDecision::Format {
                basis,
                why,
                arguments,
            } => (basis, why, arguments),
        };
        let cluster_id = self
            .cluster_id
            .as_deref()
            .ok_or(KafkaError::MissingClusterId { broker_id })?;
        tracing::info!(%broker_id, cluster_id, log_dirs = ?spec.log_dirs, berth_format_basis = basis.name(), berth_birth = %birth, why = %why, arguments = ?arguments, "every log dir is blank: formatting KRaft storage");
        self.formatter
            .format(
                cluster_id,
                &self.overlay_path,
                settings,
                &arguments,
                &spec.log_dirs,
                deadline.remaining(),
            )
            .await
            .map_err(failed)?;
        *self.formatted.lock().expect("formatted lock") =
            Some(format!("formatted on the {} rule: {why}", basis.name()));
        Ok(())
    }

    /// Asks the other controllers (a controller's blank storage only) and decides ([`format_rule::decide`]).
    async fn decide(
        &self,
        spec: &BrokerSpec,
        settings: &ToolSettings,
        controllers: &BTreeMap<BrokerId, Ipv4Addr>,
        birth: &Birth,
        storage: &StorageState,
        deadline: Deadline,
    ) -> StorageDecision {
        let broker_id = spec.broker_id;
        let others: Vec<Peer> = controllers
            .iter()
            .filter(|(id, _)| **id != broker_id)
            .map(|(id, ip)| Peer::new(id.0, SocketAddr::from((*ip, self.controller_port))))
            .collect();
        let role = match (settings.controller, settings.dynamic) {
            (false, _) => Role::Broker,
            (true, false) => Role::StaticController,
            (true, true) => Role::DynamicController {
                first: controllers.keys().all(|id| *id >= broker_id),
            },
        };
        let seen = match (
            role,
            quorum::ask_timeout(deadline.remaining(), QUORUM_ASK_TIMEOUT),
        ) {
            (Role::Broker, _) => Quorum::Silent,
            (_, Ok(timeout)) => quorum::observe(&self.client, &others, timeout).await,
            (_, Err(why)) => Quorum::NotAsked(why),
        };
        format_rule::decide(storage, broker_id.0 as i32, role, birth, &seen)
    }

    /// What the last start's format decided (once: the next look no longer says it).
    pub(crate) fn take_format_note(&self) -> Option<String> {
        self.formatted.lock().expect("formatted lock").take()
    }

    /// This node's directory id, as its metadata log dir's `meta.properties` has it.
    fn directory_id(&self, spec: &BrokerSpec, settings: &ToolSettings) -> String {
        settings
            .metadata_dir(&spec.log_dirs)
            .ok()
            .and_then(|dir| berth_logdir::read(&dir).ok().flatten())
            .and_then(|identity| identity.directory_id)
            .unwrap_or_else(|| NO_DIRECTORY_ID.to_owned())
    }

    /// The quorum as the controllers (this one first) describe it.
    async fn describe(
        &self,
        spec: &BrokerSpec,
        controllers: &BTreeMap<BrokerId, Ipv4Addr>,
        timeout: Duration,
    ) -> Result<QuorumView, String> {
        let peers: Vec<Peer> = std::iter::once((spec.broker_id, spec.advertised_ip))
            .chain(
                controllers
                    .iter()
                    .filter(|(id, _)| **id != spec.broker_id)
                    .map(|(id, ip)| (*id, *ip)),
            )
            .map(|(id, ip)| Peer::new(id.0, SocketAddr::from((ip, self.controller_port))))
            .collect();
        match quorum::observe(&self.client, &peers, timeout).await {
            Quorum::Described(view) => Ok(view),
            Quorum::Silent => Err("no controller accepts a connection".into()),
            Quorum::Undescribed(why) | Quorum::NotAsked(why) => Err(why),
        }
    }

    /// A controller-only node's serving evidence: it is a voter at the quorum's committed high watermark.
    pub(crate) async fn controller_serving(
        &self,
        spec: &BrokerSpec,
        settings: &ToolSettings,
        controllers: &BTreeMap<BrokerId, Ipv4Addr>,
        timeout: Duration,
    ) -> Result<ServingEvidence, KafkaError> {
        let started = std::time::Instant::now();
        let listener = SocketAddr::from((spec.advertised_ip, self.controller_port));
        let not_serving = |seen: String| KafkaError::NotServing {
            broker_id: spec.broker_id,
            seen,
        };
        let view = self
            .describe(spec, controllers, timeout)
            .await
            .map_err(not_serving)?;
        let directory_id = self.directory_id(spec, settings);
        let detail = quorum::at_high_watermark(
            &view,
            spec.broker_id.0 as i32,
            &directory_id,
            settings.dynamic,
        )
        .map_err(not_serving)?;
        Ok(ServingEvidence {
            listener,
            probe_micros: started.elapsed().as_micros() as u64,
            detail: format!("controller {listener}: DescribeQuorum shows {detail}"),
        })
    }

    /// After Kafka serves (or while Healthy, until marked): confirms this node is a voter and marks its volume
    /// once the quorum has committed with it as a voter at the high watermark. Errors are reported, not raised.
    pub(crate) async fn confirm(
        &self,
        spec: &BrokerSpec,
        settings: &ToolSettings,
        controllers: &BTreeMap<BrokerId, Ipv4Addr>,
    ) -> Option<QuorumReport> {
        if !settings.controller {
            return None;
        }
        let broker_id = spec.broker_id;
        let view = match self.describe(spec, controllers, QUORUM_ASK_TIMEOUT).await {
            Ok(view) => view,
            Err(why) => {
                tracing::info!(%broker_id, %why, "the quorum could not be described after the start: asked again later");
                return None;
            }
        };
        let me = broker_id.0 as i32;
        let directory_id = self.directory_id(spec, settings);
        let membership = quorum::membership(&view, me, &directory_id, settings.dynamic);
        if let Membership::NotVoter { reason, fix } = &membership {
            tracing::warn!(%broker_id, berth_voter = false, %reason, %fix, "this controller is not a voter");
            berth_core::progress::report(format!("not a voter: {reason}; fix: {fix}"));
        }
        let mark = self
            .mark(spec, settings, controllers, &view, &directory_id)
            .await;
        Some(QuorumReport { membership, mark })
    }

    async fn mark(
        &self,
        spec: &BrokerSpec,
        settings: &ToolSettings,
        controllers: &BTreeMap<BrokerId, Ipv4Addr>,
        view: &QuorumView,
        directory_id: &str,
    ) -> String {
        let broker_id = spec.broker_id;
        if self.marked.load(Ordering::Relaxed) {
            return "already marked".into();
        }
        let Some(record) = &self.birth else {
            return "no birth record is configured".into();
        };
        let evidence = match quorum::at_high_watermark(
            view,
            broker_id.0 as i32,
            directory_id,
            settings.dynamic,
        ) {
            Ok(evidence) => evidence,
            Err(why) => return format!("not marked yet: {why}"),
        };
        let mark = BirthMark {
            cluster_id: self.cluster_id.clone().unwrap_or_default(),
            voters: self.voter_text(controllers, settings),
        };
        match record.mark(broker_id, &mark).await {
            Ok(volume_id) => {
                self.marked.store(true, Ordering::Relaxed);
                tracing::info!(%broker_id, %volume_id, berth_birth_mark = %mark.render(), %evidence, "the quorum has committed: this controller's volume is marked as born");
                format!("marked {volume_id}: {evidence}")
            }
            Err(error) => {
                *self.last_failed_mark.lock().expect("last_failed_mark lock") =
                    Some(std::time::Instant::now());
                tracing::warn!(%broker_id, %error, "the birth mark could not be written: tried again later");
                format!("not marked: {error}")
            }
        }
    }

    /// Whether the health check should confirm the quorum again: the birth mark is still to be written, and
    /// no attempt to write it failed in the last [`MARK_RETRY`].
    pub(crate) fn confirm_due(&self) -> bool {
        let failed = *self.last_failed_mark.lock().expect("last_failed_mark lock");
        !self.marked.load(Ordering::Relaxed) && failed.is_none_or(|at| at.elapsed() >= MARK_RETRY)
    }
}

/// `controller.quorum.voters` in the merged settings, when set.
fn quorum_voters_of(merged: &str) -> Option<String> {
    berth_logdir::parse(merged)
        .remove("controller.quorum.voters")
        .filter(|voters| !voters.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use berth_core::Classify;

    use super::*;

    fn kraft(controller_ids: &[u32], quorum_voters: bool) -> Kraft {
        let settings = KafkaSettings {
            mode: berth_core::KafkaMode::Kraft,
            supervision: crate::Supervision::Systemd {
                unit: "kafka.service".into(),
            },
            overlay_path: "/etc/kafka/berth.properties".into(),
            listener_name: "PLAINTEXT".into(),
            port: 9092,
            check_interval: Duration::from_secs(5),
            stop_timeout: Duration::from_secs(30),
            controller_port: 9093,
            quorum_voters,
            controller_ids: controller_ids.iter().copied().map(BrokerId).collect(),
            broker_count: 4,
            formatter: Formatter {
                command: vec!["kafka-storage.sh".into(), "format".into()],
                server_properties: "/etc/kafka/server.properties".into(),
                unit: None,
            },
            cluster_id: Some("MkU3OEVBNTcwNTJENDM2Qg".into()),
            registrations: crate::RegistrationSettings {
                connect: String::new(),
                session_timeout: Duration::from_secs(6),
                kafka_chroot: String::new(),
            },
            security: Default::default(),
            controller_security: Default::default(),
        };
        Kraft::new(&settings, KafkaClient::plaintext())
    }

    fn known(ids: &[u32]) -> BTreeMap<BrokerId, Ipv4Addr> {
        ids.iter()
            .map(|id| (BrokerId(*id), Ipv4Addr::new(10, 0, 0, 10 + *id as u8)))
            .collect()
    }

    #[test]
    fn static_voters_are_the_configured_controllers_and_a_missing_eni_fails_closed() {
        let ours = kraft(&[0, 1, 2], true);
        let voters = ours
            .controllers(&known(&[0, 1, 2, 3]), BrokerId(3))
            .unwrap();
        assert_eq!(voters.keys().map(|id| id.0).collect::<Vec<_>>(), [0, 1, 2]);
        let error = ours
            .controllers(&known(&[0, 2, 3]), BrokerId(3))
            .unwrap_err();
        assert!(
            matches!(&error, KafkaError::ControllerEniMissing { ids, .. } if ids == "1"),
            "{error}"
        );
        assert_eq!(error.kind(), berth_core::ErrorKind::Fatal);
        // Without configured ids (no voters rendered), every id discovery found is asked.
        assert_eq!(
            kraft(&[], false)
                .controllers(&known(&[0, 3]), BrokerId(0))
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn the_voters_a_mark_records_are_what_the_node_runs_with() {
        let ours = kraft(&[0, 1], true);
        let settings = ToolSettings::from_merged("process.roles=controller\n".into());
        assert_eq!(
            ours.voter_text(&known(&[0, 1]), &settings),
            "0@10.0.0.10:9093,1@10.0.0.11:9093"
        );
        let operator = kraft(&[0, 1], false);
        let dynamic = ToolSettings::from_merged(
            "process.roles=controller\ncontroller.quorum.bootstrap.servers=a:9093\n".into(),
        );
        assert_eq!(
            operator.voter_text(&known(&[0, 1]), &dynamic),
            DYNAMIC_VOTERS
        );
        let rendered = ToolSettings::from_merged(
            "process.roles=controller\ncontroller.quorum.voters=0@a:9093\n".into(),
        );
        assert_eq!(operator.voter_text(&known(&[0, 1]), &rendered), "0@a:9093");
    }
}
