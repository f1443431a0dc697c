//! berth's configuration: `/etc/berth/berth.toml` plus `BERTH_*` environment overrides.
//!
//! Parsing is separate from loading: [`parse`] takes the file's text and an environment (a list of pairs), so
//! every rule is tested without touching the process environment or the disk; [`load`] reads the real ones.
//! Everything is validated before the daemon does anything, and every error names the key and the reason
//! (`zookeeper.session_timeout: must be between 2s and 40s, got 500ms`), so `berth check-config` and the
//! daemon can refuse a bad file with exit status 78 (EX_CONFIG) before touching a resource.
//!
//! Environment overrides use `BERTH_<SECTION>__<KEY>` (double underscore between levels, since keys contain
//! single underscores), e.g. `BERTH_ZOOKEEPER__CONNECT=10.0.0.5:2181`. List keys take comma-separated values.

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use berth_core::machine::{CatchUpGate, Settings, StatePolicies};
use berth_core::ports::MountPlan;
use berth_core::retry::RetryPolicy;
use berth_core::routing::RouteNumbering;
use berth_core::serde_duration;
use berth_core::tag::TagTemplate;
use serde::{Deserialize, Serialize};

mod kafka_security;
pub mod secret;

pub use kafka_security::{KafkaSecurity, SaslMechanism, SecurityProtocol, TlsMaterial};
pub use secret::Secret;

/// The default location of the configuration file.
pub const DEFAULT_PATH: &str = "/etc/berth/berth.toml";

/// Auto Scaling's global timeout of a lifecycle action (48 hours): no wait berth makes may outlast it.
const MAX_HOOK_WAIT: Duration = Duration::from_secs(48 * 3600);

/// Longest interval between the caught-up gate's looks at the replication.
const CATCH_UP_POLL_MAX: Duration = Duration::from_secs(1);

/// The prefix of environment overrides.
pub const ENV_PREFIX: &str = "BERTH";

/// Keys whose environment override is a comma-separated list.
const LIST_KEYS: [&str; 6] = [
    "kafka.controller_ids",
    "storage.log_dirs",
    "storage.mkfs_options",
    "kafka.command",
    "kafka.format_command",
    "aws.takeover_owner_states",
];

/// A configuration that cannot be used, naming the key and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A key has a bad value (or is unknown, or missing).
    #[error("{key}: {reason}")]
    Invalid {
        /// Dotted key, e.g. `zookeeper.session_timeout`.
        key: String,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// The file could not be read.
    #[error("{path}: {reason}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(key: &str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.to_owned(),
            reason: reason.into(),
        }
    }

    /// The key concerned, when there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Invalid { key, .. } => Some(key),
            Self::Unreadable { .. } => None,
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The Kafka cluster berth manages on this host.
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Cluster name: lower-case letters, digits and dashes; used in ZooKeeper paths and the cluster tag.
    pub name: String,
    /// Number of broker ids: ids are `0..broker_count`.
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
    /// [`Config::claim_backend`]). [`parse`] fills it in, so the effective configuration names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<ClaimBackend>,
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
    /// Digest credentials `user:password` for claim ACLs; empty means open ACLs (a secret: see [`secret`]).
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
    /// Owner instance states in which berth may force-detach the id's ENI and volume.
    pub takeover_owner_states: Vec<String>,
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
    /// Heartbeat interval for the launch hook while booting; `0s` disables.
    #[serde(with = "serde_duration")]
    pub heartbeat_interval: Duration,
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

/// What to do with a volume that holds nothing at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Filesystem {
    /// XFS (Kafka's usual choice).
    Xfs,
    /// ext4.
    Ext4,
}

impl Filesystem {
    /// The kernel's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Filesystem::Xfs => "xfs",
            Filesystem::Ext4 => "ext4",
        }
    }
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

/// How Kafka finds its controllers and registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaMode {
    /// ZooKeeper mode: `broker.id`, registration in `/brokers/ids`.
    Zookeeper,
    /// KRaft mode: `node.id`.
    Kraft,
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
    /// KRaft: render `controller.quorum.voters` from every id's ENI address.
    pub quorum_voters: bool,
    /// KRaft: the ids that are controllers (voters); empty means every id. Only these are listed in
    /// `controller.quorum.voters`, and asked about the quorum before a blank controller is formatted.
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
    /// Listen address of `/health`, `/state`, `/metrics`.
    pub listen: SocketAddr,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 9798)),
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

    fn policy(&self) -> RetryPolicy {
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
    fn each(&self) -> [(&'static str, &StateConfig); 6] {
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

/// Parses and validates a configuration from the file's text and an environment. Pure.
pub fn parse<'a>(
    toml_text: &str,
    environment: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Config, ConfigError> {
    parse_with_credentials(toml_text, environment, &secret::OutsideSecrets::default())
}

/// [`parse`], with the secrets of systemd credentials winning over the environment's and the file's.
fn parse_with_credentials<'a>(
    toml_text: &str,
    environment: impl IntoIterator<Item = (&'a str, &'a str)>,
    credentials: &secret::OutsideSecrets,
) -> Result<Config, ConfigError> {
    let mut overrides: config::Map<String, String> = environment
        .into_iter()
        // Only BERTH_<SECTION>__<KEY> is an override; BERTH_LOG and the like belong to the process, not the file.
        .filter(|(name, _)| {
            name.strip_prefix(ENV_PREFIX)
                .and_then(|rest| rest.strip_prefix('_'))
                .is_some_and(|key| key.contains("__"))
        })
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    let secrets = secret::take_from_environment(&mut overrides);
    let mut environment = config::Environment::with_prefix(ENV_PREFIX)
        .prefix_separator("_")
        .separator("__")
        .try_parsing(true)
        .list_separator(",")
        .source(Some(overrides));
    for key in LIST_KEYS {
        environment = environment.with_list_parse_key(key);
    }
    let layered = config::Config::builder()
        .add_source(config::File::from_str(toml_text, config::FileFormat::Toml))
        .add_source(environment)
        .build()
        .map_err(|error| from_config_error(&error))?;
    let mut config: Config = serde_path_to_error::deserialize(layered).map_err(|error| {
        let key = error.path().to_string();
        let reason = strip_key_suffix(&error.inner().to_string());
        ConfigError::Invalid {
            key: if key == "." {
                "(top level)".into()
            } else {
                key
            },
            reason,
        }
    })?;
    secret::apply(&mut config, credentials, &secrets)?;
    config.claim.backend = Some(config.claim_backend());
    config.validate()?;
    Ok(config)
}

/// Reads the file and the process environment, then [`parse`]s; see [`load_from`].
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let environment: Vec<(String, String)> = std::env::vars().collect();
    load_from(path, &environment)
}

/// Reads the file, the systemd credentials of `$CREDENTIALS_DIRECTORY` (named in `environment`) and the TLS files,
/// and [`parse`]s with `environment`. A secret in a file every user may read is refused.
pub fn load_from(path: &Path, environment: &[(String, String)]) -> Result<Config, ConfigError> {
    use std::os::unix::fs::PermissionsExt as _;
    let unreadable = |error: std::io::Error| ConfigError::Unreadable {
        path: path.to_owned(),
        reason: error.to_string(),
    };
    let text = std::fs::read_to_string(path).map_err(unreadable)?;
    let mode = std::fs::metadata(path)
        .map_err(unreadable)?
        .permissions()
        .mode();
    secret::refuse_world_readable(&text, mode)?;
    let credentials = match environment
        .iter()
        .find(|(name, _)| name == secret::CREDENTIALS_DIRECTORY)
    {
        Some((_, directory)) => secret::read_credentials(Path::new(directory))?,
        None => secret::OutsideSecrets::default(),
    };
    let config = parse_with_credentials(
        &text,
        environment.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        &credentials,
    )?;
    config.check_tls_files()?;
    Ok(config)
}

fn from_config_error(error: &config::ConfigError) -> ConfigError {
    match error {
        config::ConfigError::Type { key: Some(key), .. } => {
            ConfigError::invalid(key, strip_key_suffix(&error.to_string()))
        }
        config::ConfigError::FileParse { cause, .. } => {
            ConfigError::invalid("(file)", cause.to_string())
        }
        other => ConfigError::invalid("(file)", other.to_string()),
    }
}

/// The config crate appends " for key `x`" to type errors; the key is reported separately.
fn strip_key_suffix(message: &str) -> String {
    match message.find(" for key `") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

pub(crate) fn ensure(
    condition: bool,
    key: &str,
    reason: impl FnOnce() -> String,
) -> Result<(), ConfigError> {
    if condition {
        Ok(())
    } else {
        Err(ConfigError::invalid(key, reason()))
    }
}

/// `key`'s duration must be at least `least`.
fn ensure_at_least(value: Duration, least: Duration, key: &str) -> Result<(), ConfigError> {
    ensure(value >= least, key, || {
        format!(
            "must be at least {}",
            berth_core::duration::format_duration(least)
        )
    })
}

/// The `(key, value)` settings to check: each required one, and each optional one (`may_be_empty`) that is set.
fn set_or_required<'a, const N: usize>(
    settings: [(&'static str, &'a String, bool); N],
) -> impl Iterator<Item = (&'static str, &'a String)> {
    settings
        .into_iter()
        .filter(|(_, value, may_be_empty)| !(value.is_empty() && *may_be_empty))
        .map(|(key, value, _)| (key, value))
}

/// `kafka.format_command`'s default: Kafka's storage tool as a transient systemd unit, outside berth's sandbox.
/// Run as berth's child it would inherit berth.service's hardening, and the JVM cannot start under
/// `MemoryDenyWriteExecute=` (its JIT maps writable code: "Failed to mark memory page as executable"); the
/// files it writes as root are handed to Kafka's user by the documented kafka.service drop-in.
pub const DEFAULT_FORMAT_COMMAND: &[&str] = &[
    "systemd-run",
    "--wait",
    "--pipe",
    "--collect",
    "--quiet",
    "--service-type=exec",
    "/opt/kafka/bin/kafka-storage.sh",
    "format",
];

/// What Kafka generates for a cluster id (`Uuid.randomUuid().toString()`): 16 bytes in unpadded base64url, so 22
/// characters whose last one carries no stray bits, never starting with `-` (Kafka re-draws those, as its
/// command-line tools would read them as an option). Kafka's storage tool itself accepts any string (measured:
/// 3.9.2 and 4.4.0 format with `bad+id` or an empty id), so this is berth's check, not Kafka's.
pub fn is_kafka_cluster_id(id: &str) -> bool {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let digit = |b: u8| ALPHABET.iter().position(|&a| a == b);
    id.len() == 22
        && !id.starts_with('-')
        && id.bytes().all(|b| digit(b).is_some())
        // 22 characters hold 132 bits: the last character's low 4 bits are padding and must be zero.
        && digit(id.as_bytes()[21]).is_some_and(|value| value & 0b1111 == 0)
}

pub(crate) fn is_absolute_clean(path: &Path) -> bool {
    path.is_absolute()
        && path
            .components()
            .all(|c| !matches!(c, Component::ParentDir | Component::CurDir))
}

impl Config {
    /// Cross-field and range rules serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_cluster()?;
        ensure(!self.tags.key.trim().is_empty(), "tags.key", || {
            "must not be empty".into()
        })?;
        if self.claim_backend() == ClaimBackend::Zookeeper
            || self.kafka.mode == KafkaMode::Zookeeper
        {
            self.validate_zookeeper()?;
        }
        self.validate_aws()?;
        self.validate_storage()?;
        self.validate_kafka()?;
        self.validate_states()
    }

    /// The cluster's name, size and Kafka cluster id.
    fn validate_cluster(&self) -> Result<(), ConfigError> {
        let name = &self.cluster.name;
        ensure(
            !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !name.starts_with('-'),
            "cluster.name",
            || {
                format!("must be 1-64 lower-case letters, digits or dashes, not starting with a dash; got {name:?}")
            },
        )?;
        ensure(
            (1..=10_000).contains(&self.cluster.broker_count),
            "cluster.broker_count",
            || {
                format!(
                    "must be between 1 and 10000, got {}",
                    self.cluster.broker_count
                )
            },
        )?;
        match &self.cluster.kafka_cluster_id {
            Some(id) => ensure(is_kafka_cluster_id(id), "cluster.kafka_cluster_id", || {
                format!(
                        "must be a Kafka cluster id (a UUID in base64url: 22 characters of A-Z a-z 0-9 - _, \
                         not starting with '-', as `kafka-storage.sh random-uuid` prints), got {id:?}"
                    )
            })?,
            None => ensure(
                self.kafka.mode != KafkaMode::Kraft,
                "cluster.kafka_cluster_id",
                || {
                    "is required when kafka.mode = \"kraft\": berth formats blank storage with it \
                     (generate one with `kafka-storage.sh random-uuid`)"
                        .into()
                },
            )?,
        }
        Ok(())
    }

    /// Each state's deadline and backoff.
    fn validate_states(&self) -> Result<(), ConfigError> {
        for (state, settings) in self.states.each() {
            let key = |field: &str| format!("states.{state}.{field}");
            ensure(
                settings.deadline >= Duration::from_secs(1),
                &key("deadline"),
                || {
                    format!(
                        "must be at least 1s, got {}",
                        berth_core::duration::format_duration(settings.deadline)
                    )
                },
            )?;
            ensure(
                !settings.initial_backoff.is_zero(),
                &key("initial_backoff"),
                || "must be more than 0s".into(),
            )?;
            ensure(
                settings.max_backoff >= settings.initial_backoff,
                &key("max_backoff"),
                || "must not be smaller than initial_backoff".into(),
            )?;
            ensure(
                settings.max_backoff <= settings.deadline,
                &key("max_backoff"),
                || "must not be larger than the state's deadline".into(),
            )?;
        }
        Ok(())
    }

    fn validate_zookeeper(&self) -> Result<(), ConfigError> {
        let zk = &self.zookeeper;
        ensure(!zk.connect.trim().is_empty(), "zookeeper.connect", || {
            let needed_by = if self.kafka.mode == KafkaMode::Zookeeper {
                "kafka.mode = \"zookeeper\""
            } else {
                "claim.backend = \"zookeeper\""
            };
            format!("must list at least one host:port (needed by {needed_by})")
        })?;
        ensure(!zk.connect.contains('/'), "zookeeper.connect", || {
            "must not carry a chroot; set zookeeper.root (claims) and zookeeper.kafka_chroot (Kafka) instead".into()
        })?;
        for server in zk.connect.split(',') {
            let server = server.trim();
            let port_ok = server.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
            });
            ensure(port_ok, "zookeeper.connect", || {
                format!("{server:?} is not host:port")
            })?;
        }
        ensure(
            (Duration::from_secs(2)..=Duration::from_secs(40)).contains(&zk.session_timeout),
            "zookeeper.session_timeout",
            || {
                format!(
                    "must be between 2s and 40s, got {}",
                    berth_core::duration::format_duration(zk.session_timeout)
                )
            },
        )?;
        for (key, path) in set_or_required([
            ("zookeeper.root", &zk.root, false),
            ("zookeeper.kafka_chroot", &zk.kafka_chroot, true),
        ]) {
            let valid = path.starts_with('/')
                && (path == "/" || !path.ends_with('/'))
                && !path.contains("//")
                && path.split('/').all(|part| part != "." && part != "..");
            ensure(valid, key, || {
                format!("must be an absolute znode path like /berth, got {path:?}")
            })?;
        }
        if !zk.digest.is_empty() {
            let ok = zk
                .digest
                .expose()
                .split_once(':')
                .is_some_and(|(user, password)| !user.is_empty() && !password.is_empty());
            ensure(ok, "zookeeper.digest", || "must be user:password".into())?;
        }
        Ok(())
    }

    fn validate_aws(&self) -> Result<(), ConfigError> {
        let aws = &self.aws;
        ensure(
            aws.eni_device_index >= 1 && aws.eni_device_index <= 31,
            "aws.eni_device_index",
            || {
                format!(
                    "must be between 1 and 31 (0 is the primary interface), got {}",
                    aws.eni_device_index
                )
            },
        )?;
        ensure(aws.network_card <= 15, "aws.network_card", || {
            format!("must be between 0 and 15, got {}", aws.network_card)
        })?;
        let device_ok = aws.volume_device.strip_prefix("/dev/").is_some_and(|name| {
            let (prefix, letters) = if let Some(rest) = name.strip_prefix("xvd") {
                ("xvd", rest)
            } else if let Some(rest) = name.strip_prefix("sd") {
                ("sd", rest)
            } else {
                ("", "")
            };
            !prefix.is_empty()
                && (1..=2).contains(&letters.len())
                && letters.bytes().all(|b| b.is_ascii_lowercase())
                && !matches!(letters, "a" | "a1")
        });
        ensure(device_ok, "aws.volume_device", || {
            format!("must be an EC2 device name like /dev/xvdf or /dev/sdf (not the root device), got {:?}", aws.volume_device)
        })?;
        for state in &aws.takeover_owner_states {
            ensure(
                matches!(
                    state.as_str(),
                    "shutting-down" | "terminated" | "stopping" | "stopped"
                ),
                "aws.takeover_owner_states",
                || {
                    format!("{state:?} is not a state an owner may be taken over in; use shutting-down, terminated, stopping or stopped")
                },
            )?;
        }
        for (key, url) in set_or_required([
            ("aws.endpoint_url", &aws.endpoint_url, true),
            ("aws.imds_endpoint", &aws.imds_endpoint, false),
        ]) {
            ensure(
                url.starts_with("http://") || url.starts_with("https://"),
                key,
                || format!("must be an http:// or https:// URL, got {url:?}"),
            )?;
        }
        ensure_at_least(
            aws.termination_poll,
            Duration::from_millis(100),
            "aws.termination_poll",
        )?;
        let heartbeat = aws.autoscaling.heartbeat_interval;
        ensure(
            heartbeat.is_zero() || heartbeat >= Duration::from_secs(1),
            "aws.autoscaling.heartbeat_interval",
            || "must be 0s (off) or at least 1s".into(),
        )?;
        Ok(())
    }

    fn validate_storage(&self) -> Result<(), ConfigError> {
        let storage = &self.storage;
        for (key, path) in [
            ("storage.device_root", &storage.device_root),
            ("storage.sys_root", &storage.sys_root),
            ("storage.mount_path", &storage.mount_path),
        ] {
            ensure(is_absolute_clean(path), key, || {
                format!("must be an absolute path without . or .., got {path:?}")
            })?;
        }
        ensure(
            storage.mount_path != Path::new("/"),
            "storage.mount_path",
            || "must not be /".into(),
        )?;
        ensure(!storage.log_dirs.is_empty(), "storage.log_dirs", || {
            "must name at least one log dir".into()
        })?;
        for dir in &storage.log_dirs {
            let relative = dir.is_relative()
                && dir.components().all(|c| matches!(c, Component::Normal(_)))
                && dir.components().next().is_some();
            ensure(relative, "storage.log_dirs", || {
                format!(
                    "{dir:?} must be a relative path inside the mount point (no .., not absolute)"
                )
            })?;
        }
        ensure(
            !storage.mount_options.contains(char::is_whitespace),
            "storage.mount_options",
            || "must be comma-separated options without spaces, as in fstab".into(),
        )?;
        Ok(())
    }

    fn validate_kafka(&self) -> Result<(), ConfigError> {
        self.validate_kafka_process()?;
        self.validate_kafka_kraft()?;
        self.validate_kafka_waits()?;
        self.kafka.security.validate("kafka.security")?;
        if let Some(controller) = &self.kafka.controller_security {
            self.ensure_kraft_only(true, "kafka.controller_security")?;
            controller.validate("kafka.controller_security")?;
        }
        Ok(())
    }

    /// The controllers' listener's security: `kafka.controller_security`, else `kafka.security`.
    pub fn controller_security(&self) -> &KafkaSecurity {
        self.kafka
            .controller_security
            .as_ref()
            .unwrap_or(&self.kafka.security)
    }

    /// Reads every configured TLS file (certificates, keys), naming the key of the first that is unusable.
    pub fn check_tls_files(&self) -> Result<(), ConfigError> {
        self.kafka.security.tls_material("kafka.security")?;
        if let Some(controller) = &self.kafka.controller_security {
            controller.tls_material("kafka.controller_security")?;
        }
        Ok(())
    }

    /// How Kafka is run and reached.
    fn validate_kafka_process(&self) -> Result<(), ConfigError> {
        let kafka = &self.kafka;
        match kafka.supervisor {
            Supervisor::Systemd => ensure(
                kafka.unit.ends_with(".service") && kafka.unit.len() > ".service".len(),
                "kafka.unit",
                || {
                    format!(
                        "must be a systemd service name like kafka.service, got {:?}",
                        kafka.unit
                    )
                },
            )?,
            Supervisor::Process => ensure(!kafka.command.is_empty(), "kafka.command", || {
                "must name the program to run when kafka.supervisor = \"process\"".into()
            })?,
        }
        ensure(
            is_absolute_clean(&kafka.overlay_path),
            "kafka.overlay_path",
            || "must be an absolute path".into(),
        )?;
        ensure(kafka.port > 0, "kafka.port", || {
            "must be a port between 1 and 65535".into()
        })?;
        ensure(
            !kafka.listener_name.is_empty()
                && kafka
                    .listener_name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'),
            "kafka.listener_name",
            || {
                format!(
                    "must be an upper-case listener name like PLAINTEXT, got {:?}",
                    kafka.listener_name
                )
            },
        )?;
        Ok(())
    }

    /// KRaft storage and the controller quorum.
    fn validate_kafka_kraft(&self) -> Result<(), ConfigError> {
        let kafka = &self.kafka;
        if kafka.mode == KafkaMode::Kraft {
            ensure(
                kafka
                    .format_command
                    .first()
                    .is_some_and(|program| !program.trim().is_empty()),
                "kafka.format_command",
                || "must name the storage tool when kafka.mode = \"kraft\"".into(),
            )?;
            ensure(
                is_absolute_clean(&kafka.server_properties),
                "kafka.server_properties",
                || "must be an absolute path".into(),
            )?;
        }
        for id in &kafka.controller_ids {
            ensure(
                *id < self.cluster.broker_count,
                "kafka.controller_ids",
                || {
                    format!(
                        "{id} is not a broker id (ids are 0..{})",
                        self.cluster.broker_count
                    )
                },
            )?;
        }
        self.ensure_kraft_only(!kafka.controller_ids.is_empty(), "kafka.controller_ids")?;
        self.ensure_kraft_only(kafka.quorum_voters, "kafka.quorum_voters")?;
        if kafka.quorum_voters {
            ensure(
                kafka.controller_port != kafka.port,
                "kafka.controller_port",
                || "must differ from kafka.port".into(),
            )?;
        }
        Ok(())
    }

    /// A KRaft-only setting `key` must not be `set` in ZooKeeper mode.
    fn ensure_kraft_only(&self, set: bool, key: &str) -> Result<(), ConfigError> {
        ensure(!set || self.kafka.mode == KafkaMode::Kraft, key, || {
            "only applies when kafka.mode = \"kraft\"".into()
        })
    }

    /// The checks' interval and the gate's, the stop's and the drain's bounds.
    fn validate_kafka_waits(&self) -> Result<(), ConfigError> {
        let kafka = &self.kafka;
        ensure_at_least(
            kafka.check_interval,
            Duration::from_millis(100),
            "kafka.check_interval",
        )?;
        ensure_at_least(
            kafka.stop_timeout,
            Duration::from_secs(1),
            "kafka.stop_timeout",
        )?;
        ensure(
            (Duration::from_secs(1)..=MAX_HOOK_WAIT).contains(&kafka.caught_up_deadline),
            "kafka.caught_up_deadline",
            || "must be between 1s and 48h (Auto Scaling's longest lifecycle hook wait)".into(),
        )?;
        ensure(
            kafka.drain_wait <= MAX_HOOK_WAIT,
            "kafka.drain_wait",
            || {
                "must be between 0s (off) and 48h (Auto Scaling's longest lifecycle hook wait)"
                    .into()
            },
        )?;
        Ok(())
    }

    /// The claim backend: as configured, else `ec2` in KRaft mode (no ZooKeeper needed) and `zookeeper` in
    /// ZooKeeper mode.
    pub fn claim_backend(&self) -> ClaimBackend {
        self.claim.backend.unwrap_or(match self.kafka.mode {
            KafkaMode::Kraft => ClaimBackend::Ec2,
            KafkaMode::Zookeeper => ClaimBackend::Zookeeper,
        })
    }

    /// Broker ids this cluster has.
    pub fn broker_ids(&self) -> impl Iterator<Item = berth_core::BrokerId> {
        (0..self.cluster.broker_count).map(berth_core::BrokerId)
    }

    /// The claims' parent znode: `<root>/<cluster>/claims`.
    pub fn claims_path(&self) -> String {
        let root = self.zookeeper.root.trim_end_matches('/');
        format!("{root}/{}/claims", self.cluster.name)
    }

    /// The state machine's settings.
    pub fn machine_settings(&self) -> Settings {
        let aws = &self.aws;
        let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
        Settings {
            policies: StatePolicies {
                claim: self.states.claim.policy(),
                attach_eni: self.states.attach_eni.policy(),
                route: self.states.route.policy(),
                attach_ebs: self.states.attach_ebs.policy(),
                mount: self.states.mount.policy(),
                start_kafka: self.states.start_kafka.policy(),
            },
            check_interval: self.kafka.check_interval,
            unhealthy_after: nonzero(aws.autoscaling.mark_unhealthy_after)
                .unwrap_or(Duration::MAX / 4),
            heartbeat_interval: if aws.autoscaling.launch_hook.is_empty() {
                None
            } else {
                nonzero(aws.autoscaling.heartbeat_interval)
            },
            routing: RouteNumbering {
                network_card: aws.network_card,
                device_index: aws.eni_device_index,
                table: (self.network.table != 0).then_some(self.network.table),
                rule_priority: (self.network.rule_priority != 0)
                    .then_some(self.network.rule_priority),
            },
            mount: MountPlan {
                mount_path: self.storage.mount_path.clone(),
                log_dirs: self.storage.absolute_log_dirs(),
            },
            reclaim_attempt: berth_core::machine::DEFAULT_RECLAIM_ATTEMPT,
            catch_up: (self.kafka.healthy_when == HealthyWhen::CaughtUp).then(|| CatchUpGate {
                deadline: self.kafka.caught_up_deadline,
                poll: self.kafka.check_interval.min(CATCH_UP_POLL_MAX),
            }),
            drain_wait: nonzero(self.kafka.drain_wait),
            terminate_heartbeat_interval: if aws.autoscaling.terminate_hook.is_empty() {
                None
            } else {
                nonzero(aws.autoscaling.heartbeat_interval)
            },
        }
    }

    /// The effective configuration as TOML (secrets left out), for `berth check-config`.
    pub fn to_toml(&self) -> String {
        toml_render(self)
    }
}

fn toml_render(config: &Config) -> String {
    toml::to_string_pretty(config)
        .unwrap_or_else(|error| format!("# cannot render the configuration: {error}\n"))
}
