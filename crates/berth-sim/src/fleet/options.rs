//! How to build a fleet: its size, the delays of its simulated hardware, what Kafka its hosts run and where their
//! berths claim broker ids.

use std::time::Duration;

use berth_config::ClaimBackend;
use berth_testkit::kafka::security::SecuredListeners;
use berth_testkit::kafka::{Install, KafkaHarnessError};

use crate::asg::AsgOptions;

/// How to build a fleet.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// Cluster name (ZooKeeper path, cluster tag).
    pub cluster: String,
    /// Availability zones (one subnet bridge each).
    pub zones: usize,
    /// Broker ids (each with a tagged ENI and volume in zone `id % zones`).
    pub brokers: u32,
    /// Delay between an ENI attach in moto and its link appearing in the host.
    pub eni_delay: Duration,
    /// Delay between a volume attach in moto and its block device appearing in the host.
    pub volume_delay: Duration,
    /// Startup delay of the Kafka stand-in.
    pub kafka_delay: Duration,
    /// berth's ZooKeeper session timeout.
    pub session_timeout: Duration,
    /// How often the hot-plug reads attachments from moto.
    pub hotplug_poll: Duration,
    /// Size of each volume's backing file.
    pub volume_mb: u64,
    /// Extra `BERTH_*` environment overrides for every berth.
    pub berth_env: Vec<(String, String)>,
    /// The Auto Scaling group and the stack's signal policy.
    pub asg: AsgOptions,
    /// What Kafka the hosts run.
    pub kafka: SimKafka,
    /// Where the hosts' berths claim broker ids (`claim.backend`): `zookeeper` (the default, the card's claims)
    /// or `ec2` (the ENI attachment is the claim). With `ec2` and KRaft the fleet starts no ZooKeeper at all.
    pub claim_backend: ClaimBackend,
    /// KRaft only: how many ids, the first ones, are dedicated controllers (`process.roles=controller`, in
    /// groups of their own, claiming only those ids); the others are brokers only. 0: every id is a combined
    /// broker and controller.
    pub controllers: u32,
    /// KRaft only: every listener secured (`SASL_SSL` with SCRAM-SHA-512, or mutual TLS, for clients and brokers;
    /// `SSL` with client certificates for controllers), with material the fleet makes
    /// ([`berth_testkit::kafka::security::ClusterSecurity`]); None: `PLAINTEXT`.
    pub security: Option<SecuredListeners>,
    /// Which berth the hosts install: the shipped build (the default) or, for the suites that inject crashes, the
    /// workspace's build with crash points.
    pub berth: BerthBuild,
    /// A CloudFormation template whose security groups the region enforces between the hosts
    /// ([`crate::security_groups`]): every broker ENI and every host is a member of each group, as the
    /// template's ENIs and launch template make them. None: no filter.
    pub security_groups: Option<std::path::PathBuf>,
    /// A CloudFormation template whose Auto Scaling groups the region's stack creates, in its `DependsOn` order
    /// with its hooks, grace periods and CreationPolicy ([`crate::asg::stack_groups`]); the hosts then name no
    /// stack, resource or group in berth's configuration and read them from the instance's tags, as AWS sets
    /// them. None: one group per zone built by the simulator ([`crate::asg::groups`]).
    pub stack: Option<std::path::PathBuf>,
}

impl FleetOptions {
    /// The controller ids (the static voter set): the dedicated controllers, or every id.
    pub fn controller_ids(&self) -> Vec<u32> {
        match self.controllers {
            0 => (0..self.brokers).collect(),
            controllers => (0..controllers).collect(),
        }
    }

    /// The ids that run a broker (and so serve clients): every id but the dedicated controllers.
    pub fn broker_ids(&self) -> Vec<u32> {
        (self.controllers..self.brokers).collect()
    }

    /// The role of a host no controller group launched (a broker group's, or one placed by hand).
    pub fn default_role(&self) -> HostRole {
        match self.controllers {
            0 => HostRole::Combined,
            _ => HostRole::Broker,
        }
    }

    /// The ids a host of `role` claims (`claim.ids`; empty: every id).
    pub fn claim_ids(&self, role: HostRole) -> Vec<u32> {
        match role {
            HostRole::Combined => Vec::new(),
            HostRole::Controller => self.controller_ids(),
            HostRole::Broker => self.broker_ids(),
        }
    }

    /// Whether the fleet needs a ZooKeeper ensemble: for the `zookeeper` claim backend, or for Kafka in
    /// ZooKeeper mode (3.9, or the stand-in).
    pub fn needs_zookeeper(&self) -> bool {
        self.claim_backend == ClaimBackend::Zookeeper || self.kafka != SimKafka::Kraft
    }
}

impl Default for FleetOptions {
    fn default() -> Self {
        Self {
            cluster: "sim".into(),
            zones: 3,
            brokers: 3,
            eni_delay: Duration::from_millis(300),
            volume_delay: Duration::from_millis(300),
            kafka_delay: Duration::ZERO,
            session_timeout: Duration::from_secs(4),
            hotplug_poll: Duration::from_millis(100),
            volume_mb: 64,
            berth_env: Vec::new(),
            asg: AsgOptions::default(),
            kafka: SimKafka::from_env(),
            claim_backend: ClaimBackend::Zookeeper,
            security: None,
            security_groups: None,
            stack: None,
            controllers: 0,
            berth: BerthBuild::Shipped,
        }
    }
}

/// The berth build a fleet's hosts install (as the `.deb` cargo-deb makes of it, whichever it is).
///
/// Why two: the e2e crate turns berth's `failpoints` feature on, so a workspace build of the binaries has crash
/// points an operator's binary never has. The suites prove berth as shipped; only the ones that arm crash points
/// run the other build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BerthBuild {
    /// What the package ships: the `release` profile of berth built alone, so without crash points, at
    /// `<target>/release/berth` ([`SHIPPED_BUILD_COMMAND`], the build cargo-deb runs); `BERTHSIM_BIN_DIR`
    /// overrides the directory (a benchmark's own build, footprint's `dist`).
    Shipped,
    /// The workspace's debug build (`cargo build --workspace --bins`), with the crash points `FAILPOINTS` arms:
    /// only for the suites that inject crashes.
    Failpoints,
}

/// The command that builds the shipped berth (`make shipped`): the one cargo-deb runs for `cargo deb -p berth
/// --locked` (the `release` profile, the `berth` package and binary alone), so the package's build finds it done.
pub const SHIPPED_BUILD_COMMAND: &str =
    "cargo build --manifest-path crates/berth/Cargo.toml --release --locked --bin=berth";

impl BerthBuild {
    /// What berth of this build reports as its build (`/state`'s `build`).
    pub fn reported(self) -> &'static str {
        match self {
            Self::Shipped => "release",
            Self::Failpoints => "debug, failpoints",
        }
    }

    /// Where this build's berth is; a missing one is an error naming the command that builds it.
    pub fn berth(self) -> Result<std::path::PathBuf, super::FleetError> {
        let (path, command) = match self {
            Self::Shipped => {
                let dir = std::env::var_os("BERTHSIM_BIN_DIR")
                    .map(std::path::PathBuf::from)
                    .unwrap_or_else(|| berth_testkit::target_dir().join("release"));
                (dir.join("berth"), SHIPPED_BUILD_COMMAND)
            }
            Self::Failpoints => (
                berth_testkit::debug_dir().join("berth"),
                "cargo build --workspace --bins",
            ),
        };
        self.built(path, command)
    }

    /// `path` when it is a file, else the error naming `command`.
    fn built(
        self,
        path: std::path::PathBuf,
        command: &'static str,
    ) -> Result<std::path::PathBuf, super::FleetError> {
        if path.is_file() {
            Ok(path)
        } else {
            Err(super::FleetError::MissingBerth {
                build: self,
                path,
                command,
            })
        }
    }
}

/// What a KRaft host runs (`process.roles`), by the group that launched it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostRole {
    /// `broker,controller` (every id, when the fleet has no dedicated controllers).
    Combined,
    /// `controller` alone: a dedicated controller, launched by a controller group.
    Controller,
    /// `broker` alone, beside dedicated controllers.
    Broker,
}

impl HostRole {
    /// `process.roles`.
    pub fn process_roles(self) -> &'static str {
        match self {
            Self::Combined => "broker,controller",
            Self::Controller => "controller",
            Self::Broker => "broker",
        }
    }
}

/// The Kafka of the fleet's hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimKafka {
    /// Apache Kafka 4.x (the newest in tests/kafka/versions), KRaft: every broker is also a controller, the
    /// voters are the ids' ENI addresses as berth renders them (the default).
    Kraft,
    /// Apache Kafka 3.9 in ZooKeeper mode, registering in the fleet's ensemble.
    ZooKeeperMode,
    /// `kafka-standin` (NOT Kafka): only where a test needs what real Kafka cannot give (a fixed start delay,
    /// a dozen brokers on two cores); named in docs/architecture.md.
    Standin,
}

impl SimKafka {
    /// `BERTHSIM_KAFKA` (`kraft`, `zookeeper` or `standin`), else [`SimKafka::Kraft`].
    pub fn from_env() -> Self {
        match std::env::var("BERTHSIM_KAFKA").as_deref() {
            Ok("zookeeper") => Self::ZooKeeperMode,
            Ok("standin") => Self::Standin,
            _ => Self::Kraft,
        }
    }

    /// The installed Apache Kafka this runs (None for the stand-in); a missing one names the setup command.
    pub fn install(self) -> Result<Option<Install>, KafkaHarnessError> {
        match self {
            Self::Kraft => Install::kraft().map(Some),
            Self::ZooKeeperMode => Install::zookeeper_mode().map(Some),
            Self::Standin => Ok(None),
        }
    }

    /// berth's `kafka.mode`.
    pub fn mode(self) -> berth_config::KafkaMode {
        match self {
            Self::Kraft => berth_config::KafkaMode::Kraft,
            Self::ZooKeeperMode | Self::Standin => berth_config::KafkaMode::Zookeeper,
        }
    }
}

/// The KRaft cluster id of every simulated fleet (`cluster.kafka_cluster_id`; Kafka's own documentation example).
pub const KAFKA_CLUSTER_ID: &str = "MkU3OEVBNTcwNTJENDM2Qg";

#[cfg(test)]
mod tests {
    use super::*;

    fn options(claim_backend: ClaimBackend, kafka: SimKafka) -> FleetOptions {
        FleetOptions {
            claim_backend,
            kafka,
            ..FleetOptions::default()
        }
    }

    #[test]
    fn dedicated_controllers_claim_the_first_ids_and_brokers_the_rest() {
        let combined = FleetOptions::default();
        assert_eq!(combined.controller_ids(), [0, 1, 2]);
        assert_eq!(combined.broker_ids(), [0, 1, 2]);
        assert_eq!(combined.default_role(), HostRole::Combined);
        assert!(combined.claim_ids(HostRole::Combined).is_empty());
        let dedicated = FleetOptions {
            brokers: 5,
            controllers: 3,
            ..FleetOptions::default()
        };
        assert_eq!(dedicated.claim_ids(HostRole::Controller), [0, 1, 2]);
        assert_eq!(dedicated.claim_ids(HostRole::Broker), [3, 4]);
        assert_eq!(dedicated.default_role(), HostRole::Broker);
    }

    #[test]
    fn a_missing_build_fails_naming_the_command_that_builds_it() {
        let error = BerthBuild::Shipped
            .built("/nonexistent/release/berth".into(), SHIPPED_BUILD_COMMAND)
            .expect_err("no such file")
            .to_string();
        assert_eq!(
            error,
            format!(
                "the Shipped berth /nonexistent/release/berth is missing: `{SHIPPED_BUILD_COMMAND}` builds it \
                 (`make test` builds both)"
            )
        );
        assert_eq!(FleetOptions::default().berth, BerthBuild::Shipped);
    }

    #[test]
    fn only_kraft_with_ec2_claims_runs_without_zookeeper() {
        use ClaimBackend::{Ec2, Zookeeper};
        assert!(!options(Ec2, SimKafka::Kraft).needs_zookeeper());
        assert!(options(Zookeeper, SimKafka::Kraft).needs_zookeeper());
        assert!(options(Ec2, SimKafka::ZooKeeperMode).needs_zookeeper());
        assert!(options(Ec2, SimKafka::Standin).needs_zookeeper());
    }
}
