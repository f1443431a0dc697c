//! The file's shape: every section and key, its type and default. What a value must be beyond its type is
//! the `validate` module's; what the daemon derives from the whole is the `derived` module's.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use berth_core::retry::RetryPolicy;
use berth_core::serde_duration;
use berth_core::tag::TagTemplate;
use berth_core::{Filesystem, KafkaMode};
use serde::{Deserialize, Serialize};

use crate::{KafkaSecurity, Secret};

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The Kafka cluster berth manages on this host (its name and size are required: validation names them).
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// How ENIs and volumes are tagged.
    #[serde(default)]
    pub tags: TagsConfig,
    /// Where broker id claims are held.
    #[serde(default)]
    pub claim: ClaimConfig,
    /// The ZooKeeper ensemble holding the claims (backend `zookeeper`) and Kafka's metadata (ZooKeeper mode);
    /// not needed with the `ec2` backend in KRaft mode.
    #[serde(default)]
    pub zookeeper: ZooKeeperConfig,
    /// EC2, CloudFormation and Auto Scaling.
    #[serde(default)]
    pub aws: AwsConfig,
    /// Policy routing for the broker ENI.
    #[serde(default)]
    pub network: NetworkConfig,
    /// The broker volume.
    #[serde(default)]
    pub storage: StorageConfig,
    /// Kafka itself.
    #[serde(default)]
    pub kafka: KafkaConfig,
    /// The health endpoint.
    #[serde(default)]
    pub health: HealthConfig,
    /// Retry policy and deadline per state.
    #[serde(default)]
    pub states: StatesConfig,
}

/// `[cluster]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Cluster name: lower-case letters, digits and dashes; used in ZooKeeper paths and the cluster tag.
    /// Required (empty is unset).
    #[serde(default)]
    pub name: String,
    /// Number of broker ids: ids are `0..broker_count`. Required (0 is unset).
    #[serde(default)]
    pub broker_count: u32,
    /// Kafka `cluster.id`: expected in `meta.properties` when set, and required in KRaft mode, where berth
    /// formats a blank volume's storage with it. Kafka's form: a UUID in base64url, 22 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_cluster_id: Option<String>,
}

/// `[tags]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TagsConfig {
    /// Tag key carrying the per-id value.
    pub key: String,
    /// Template of the ENI's tag value (`{id}` is the broker id).
    pub eni: TagTemplate,
    /// Template of the volume's tag value.
    pub volume: TagTemplate,
    /// Tag key whose value must equal the cluster name (several clusters per account); empty disables.
    pub cluster_key: String,
}

impl Default for TagsConfig {
    fn default() -> Self {
        let seed = TagTemplate::new("KAFKA-{id}").expect("the seed's template is valid");
        Self {
            key: "Name".into(),
            eni: seed.clone(),
            volume: seed,
            cluster_key: String::new(),
        }
    }
}

/// Where a broker id's claim is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", try_from = "String")]
pub enum ClaimBackend {
    /// An ephemeral znode per id, held by berth's ZooKeeper session.
    Zookeeper,
    /// The id's ENI attachment itself: EC2 attaches an ENI to at most one instance (docs/decisions/0002).
    Ec2,
}

impl TryFrom<String> for ClaimBackend {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        match value.as_str() {
            "zookeeper" => Ok(Self::Zookeeper),
            "ec2" => Ok(Self::Ec2),
            other => Err(format!("must be \"zookeeper\" or \"ec2\", got {other:?}")),
        }
    }
}

/// `[claim]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimConfig {
    /// The backend; unset means `ec2` when `kafka.mode = "kraft"` and `zookeeper` otherwise (see
    /// [`Config::claim_backend`]). [`parse`](fn@crate::parse) fills it in, so the effective configuration names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<ClaimBackend>,
    /// The ids this host may claim; empty means every id. Hosts of one group claim only that group's ids,
    /// e.g. a group of dedicated controllers `[0, 1, 2]` and a group of brokers `[3, 4, 5]`.
    pub ids: Vec<u32>,
}

/// `[zookeeper]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZooKeeperConfig {
    /// Connect string: `host:port,host:port,...` (no chroot; see `root`). Required when the claim backend is
    /// `zookeeper` or Kafka runs in ZooKeeper mode.
    #[serde(default)]
    pub connect: String,
    /// Session timeout (the server clamps it to 2..20 ticks).
    #[serde(with = "serde_duration", default = "default_session_timeout")]
    pub session_timeout: Duration,
    /// Root znode; claims live under `<root>/<cluster>/claims/<id>`.
    #[serde(default = "default_zk_root")]
    pub root: String,
    /// Digest credentials `user:password` for claim ACLs; empty means open ACLs (a secret: see [`crate::secret`]).
    #[serde(default, skip_serializing)]
    pub digest: Secret,
    /// Kafka's own chroot in this ensemble (where `/brokers/ids` lives), e.g. `/kafka`; empty is the root.
    #[serde(default)]
    pub kafka_chroot: String,
}

impl Default for ZooKeeperConfig {
    fn default() -> Self {
        Self {
            connect: String::new(),
            session_timeout: default_session_timeout(),
            root: default_zk_root(),
            digest: Secret::default(),
            kafka_chroot: String::new(),
        }
    }
}

fn default_session_timeout() -> Duration {
    Duration::from_secs(6)
}

fn default_zk_root() -> String {
    "/berth".into()
}

/// `[aws]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsConfig {
    /// Region; empty means the instance's region from IMDS.
    pub region: String,
    /// Endpoint override for EC2, CloudFormation and Auto Scaling (tests, VPC endpoints); empty for AWS.
    pub endpoint_url: String,
    /// Instance metadata service base URL.
    pub imds_endpoint: String,
    /// Device index the ENI is attached at.
    pub eni_device_index: u32,
    /// Network card index of the ENI.
    pub network_card: u32,
    /// Device name requested for the volume (Nitro exposes it as NVMe whatever is requested).
    pub volume_device: String,
    /// Owner instance states in which berth may force-detach the id's ENI and volume: `shutting-down`,
    /// `terminated` (never a state in which Kafka may still run or start again).
    pub takeover_owner_states: Vec<String>,
    /// How long a `shutting-down` owner is given to terminate or let go by itself (its Kafka may still be in
    /// its controlled shutdown) before berth force-detaches.
    #[serde(with = "serde_duration")]
    pub takeover_wait: Duration,
    /// Poll interval of IMDS for termination notices (lifecycle state, spot).
    #[serde(with = "serde_duration")]
    pub termination_poll: Duration,
    /// `[aws.cloudformation]`
    pub cloudformation: CloudFormationConfig,
    /// `[aws.autoscaling]`
    pub autoscaling: AutoScalingConfig,
}

impl Default for AwsConfig {
    fn default() -> Self {
        Self {
            region: String::new(),
            endpoint_url: String::new(),
            imds_endpoint: "http://169.254.169.254".into(),
            eni_device_index: 1,
            network_card: 0,
            volume_device: "/dev/xvdf".into(),
            takeover_owner_states: vec!["shutting-down".into(), "terminated".into()],
            takeover_wait: Duration::from_secs(120),
            termination_poll: Duration::from_secs(5),
            cloudformation: CloudFormationConfig::default(),
            autoscaling: AutoScalingConfig::default(),
        }
    }
}

/// `[aws.cloudformation]`
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CloudFormationConfig {
    /// Send SignalResource on Healthy / Failed.
    pub signal: bool,
    /// Stack name; empty means the instance's `aws:cloudformation:stack-name` tag.
    pub stack: String,
    /// Logical resource id; empty means the instance's `aws:cloudformation:logical-id` tag.
    pub resource: String,
}

/// `[aws.autoscaling]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoScalingConfig {
    /// Auto Scaling group name; empty means the instance's `aws:autoscaling:groupName` tag.
    pub group: String,
    /// Launch lifecycle hook to complete (CONTINUE on Healthy, ABANDON on Failed); empty disables.
    pub launch_hook: String,
    /// Terminating lifecycle hook to complete after a drain; empty disables.
    pub terminate_hook: String,
    /// Heartbeat interval of a pending lifecycle action (the launch action from the start until CONTINUE is
    /// answered, the terminate action from the notice until its CONTINUE is answered); `0s` disables.
    #[serde(with = "serde_duration")]
    pub heartbeat_interval: Duration,
    /// The lifecycle hooks' `HeartbeatTimeout`, as configured on the group: berth retries a completion for at
    /// most their global timeout (100 times this, at most 48 h), and `berth check-config` checks the heartbeat
    /// interval and the worst-case boot and drain against it.
    #[serde(with = "serde_duration")]
    pub hook_timeout: Duration,
    /// SetInstanceHealth Unhealthy after Kafka has been lost this long while Healthy; `0s` disables.
    #[serde(with = "serde_duration")]
    pub mark_unhealthy_after: Duration,
}

impl Default for AutoScalingConfig {
    fn default() -> Self {
        Self {
            group: String::new(),
            launch_hook: String::new(),
            terminate_hook: String::new(),
            heartbeat_interval: Duration::from_secs(60),
            hook_timeout: Duration::from_secs(600),
            mark_unhealthy_after: Duration::from_secs(300),
        }
    }
}

/// `[network]`
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Route table for the ENI; 0 means 10000 + 100 * network card + device index.
    pub table: u32,
    /// Priority of the `from <eni-ip>` rule; 0 means the same number as the default table.
    pub rule_priority: u32,
}

/// `[storage]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Where block devices and `disk/by-id` live (tests point it elsewhere).
    pub device_root: PathBuf,
    /// Where sysfs lives (for the NVMe model/serial scan).
    pub sys_root: PathBuf,
    /// Mount point of the broker volume.
    pub mount_path: PathBuf,
    /// Mount options, comma separated as in fstab.
    pub mount_options: String,
    /// Filesystem to create on a blank volume, and expected on others.
    pub filesystem: Filesystem,
    /// Format a volume that is entirely blank (all zeros where signatures live). Never anything else.
    pub format_blank: bool,
    /// Extra options for mkfs.
    pub mkfs_options: Vec<String>,
    /// Kafka log dirs, relative to the mount point.
    pub log_dirs: Vec<PathBuf>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            device_root: "/dev".into(),
            sys_root: "/sys".into(),
            mount_path: "/var/lib/kafka".into(),
            mount_options: "noatime".into(),
            filesystem: Filesystem::Xfs,
            format_blank: false,
            mkfs_options: Vec::new(),
            log_dirs: vec!["data".into()],
        }
    }
}

impl StorageConfig {
    /// The absolute log dirs.
    pub fn absolute_log_dirs(&self) -> Vec<PathBuf> {
        self.log_dirs
            .iter()
            .map(|dir| self.mount_path.join(dir))
            .collect()
    }
}

/// How Kafka is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Supervisor {
    /// `systemctl start/stop <unit>` (production).
    Systemd,
    /// A child process of berth (hosts without systemd, the simulation).
    Process,
}

/// `[kafka]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// ZooKeeper or KRaft mode.
    pub mode: KafkaMode,
    /// systemd or child process.
    pub supervisor: Supervisor,
    /// The systemd unit.
    pub unit: String,
    /// The command line for the process supervisor (program and arguments).
    pub command: Vec<String>,
    /// Where berth writes the settings it owns (the overlay).
    pub overlay_path: PathBuf,
    /// Listener name in `advertised.listeners`.
    pub listener_name: String,
    /// Listener port.
    pub port: u16,
    /// KRaft: controller port, used to build `controller.quorum.voters` when `quorum_voters` is on.
    pub controller_port: u16,
    /// KRaft: render `controller.quorum.voters` from the controller ids' ENI addresses.
    pub quorum_voters: bool,
    /// KRaft: the ids that are controllers (voters); required with `quorum_voters` (the static voter set comes
    /// only from here), otherwise empty means every id. These are listed in `controller.quorum.voters`, asked
    /// about the quorum, and their volumes carry the cluster's birth mark.
    pub controller_ids: Vec<u32>,
    /// KRaft: the command that formats blank storage (Kafka's storage tool); berth appends
    /// `--cluster-id <cluster.kafka_cluster_id> --config <server_properties merged with the overlay>`.
    pub format_command: Vec<String>,
    /// The operator's `server.properties`: berth merges it with the overlay (as the documented `awk 1` drop-in
    /// does) into the file the format command reads. Only read in KRaft mode, when storage is blank.
    pub server_properties: PathBuf,
    /// Interval of health checks while Healthy.
    #[serde(with = "serde_duration")]
    pub check_interval: Duration,
    /// Time allowed for a controlled shutdown.
    #[serde(with = "serde_duration")]
    pub stop_timeout: Duration,
    /// When berth reports Healthy (signals SUCCESS, completes the launch hook).
    pub healthy_when: HealthyWhen,
    /// With `healthy_when = "caught_up"`: how long after Kafka serves its partitions may take to be in sync
    /// again before the boot fails.
    #[serde(with = "serde_duration")]
    pub caught_up_deadline: Duration,
    /// Before a drain stops Kafka: how long to wait, at most, until stopping it keeps every partition at its
    /// `min.insync.replicas`; `0s` stops without checking.
    #[serde(with = "serde_duration")]
    pub drain_wait: Duration,
    /// How berth connects to the listener it probes (`listener_name`), for every read it makes there.
    pub security: KafkaSecurity,
    /// KRaft: how berth connects to the controllers' listener (DescribeQuorum); absent: as `security`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub controller_security: Option<KafkaSecurity>,
}

/// When a broker counts as Healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthyWhen {
    /// Registered and answering Metadata.
    Serving,
    /// Serving, and none of the partitions it hosts is under-replicated because of it.
    CaughtUp,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            mode: KafkaMode::Zookeeper,
            supervisor: Supervisor::Systemd,
            unit: "kafka.service".into(),
            command: Vec::new(),
            overlay_path: "/etc/kafka/berth.properties".into(),
            listener_name: "PLAINTEXT".into(),
            port: 9092,
            controller_port: 9093,
            quorum_voters: false,
            controller_ids: Vec::new(),
            format_command: DEFAULT_FORMAT_COMMAND.iter().map(|&w| w.into()).collect(),
            server_properties: "/etc/kafka/server.properties".into(),
            check_interval: Duration::from_secs(5),
            stop_timeout: Duration::from_secs(120),
            healthy_when: HealthyWhen::CaughtUp,
            caught_up_deadline: Duration::from_secs(30 * 60),
            drain_wait: Duration::from_secs(5 * 60),
            security: KafkaSecurity::default(),
            controller_security: None,
        }
    }
}

/// `[health]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Listen address of `/health` (load balancers, lifecycle checks) and `/metrics` (Prometheus).
    pub listen: SocketAddr,
    /// Listen address of `/state` (with `/health` and `/metrics`), which names the instance, its ENI, berth's pid
    /// and AWS's error messages: loopback by default, for `berth status`, `berth drain` and the operator.
    pub state_listen: SocketAddr,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 9798)),
            state_listen: SocketAddr::from(([127, 0, 0, 1], 9799)),
        }
    }
}

/// `[states.<state>]`: backoff and deadline of one state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// Total time the state may take.
    #[serde(with = "serde_duration")]
    pub deadline: Duration,
    /// First retry delay.
    #[serde(with = "serde_duration", default = "default_initial_backoff")]
    pub initial_backoff: Duration,
    /// Largest retry delay.
    #[serde(with = "serde_duration", default = "default_max_backoff")]
    pub max_backoff: Duration,
}

fn default_initial_backoff() -> Duration {
    Duration::from_millis(250)
}

fn default_max_backoff() -> Duration {
    Duration::from_secs(10)
}

impl StateConfig {
    fn with_deadline(deadline: Duration) -> Self {
        Self {
            deadline,
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
        }
    }

    pub(crate) fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            initial: self.initial_backoff,
            max: self.max_backoff,
            multiplier: 2.0,
            deadline: self.deadline,
        }
    }
}

/// `[states]`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatesConfig {
    /// Claim (includes waiting for a free id).
    pub claim: StateConfig,
    /// AttachEni (includes waiting for a dying owner to let go).
    pub attach_eni: StateConfig,
    /// Route.
    pub route: StateConfig,
    /// AttachEbs.
    pub attach_ebs: StateConfig,
    /// Mount.
    pub mount: StateConfig,
    /// StartKafka (Kafka may replay a large log on start).
    pub start_kafka: StateConfig,
}

impl Default for StatesConfig {
    fn default() -> Self {
        let minutes = |m: u64| StateConfig::with_deadline(Duration::from_secs(60 * m));
        Self {
            claim: minutes(30),
            attach_eni: minutes(10),
            route: minutes(2),
            attach_ebs: minutes(10),
            mount: minutes(5),
            start_kafka: minutes(30),
        }
    }
}

impl StatesConfig {
    pub(crate) fn each(&self) -> [(&'static str, &StateConfig); 6] {
        [
            ("claim", &self.claim),
            ("attach_eni", &self.attach_eni),
            ("route", &self.route),
            ("attach_ebs", &self.attach_ebs),
            ("mount", &self.mount),
            ("start_kafka", &self.start_kafka),
        ]
    }
}

/// `kafka.format_command`'s default: Kafka's storage tool as a transient systemd unit, outside berth's sandbox.
/// Run as berth's child it would inherit berth.service's hardening, and the JVM cannot start under
/// `MemoryDenyWriteExecute=` (its JIT maps writable code: "Failed to mark memory page as executable"); the
/// files it writes as root are handed to Kafka's user by the documented kafka.service drop-in.
/// The unit is named, so a run that outlives a berth (killed, or past its deadline) can be stopped before the
/// next one looks at the log dirs.
pub const DEFAULT_FORMAT_COMMAND: &[&str] = &[
    "systemd-run",
    "--unit=berth-kafka-format",
    "--wait",
    "--pipe",
    "--collect",
    "--quiet",
    "--service-type=exec",
    "/opt/kafka/bin/kafka-storage.sh",
    "format",
];
