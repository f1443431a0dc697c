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
    /// KRaft only: every listener secured (`SASL_SSL` with SCRAM-SHA-512, or mutual TLS, for clients and brokers;
    /// `SSL` with client certificates for controllers), with material the fleet makes
    /// ([`berth_testkit::kafka::security::ClusterSecurity`]); None: `PLAINTEXT`.
    pub security: Option<SecuredListeners>,
    /// A CloudFormation template whose security groups the region enforces between the hosts
    /// ([`crate::security_groups`]): every broker ENI and every host is a member of each group, as the
    /// template's ENIs and launch template make them. None: no filter.
    pub security_groups: Option<std::path::PathBuf>,
}

impl FleetOptions {
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
    fn only_kraft_with_ec2_claims_runs_without_zookeeper() {
        use ClaimBackend::{Ec2, Zookeeper};
        assert!(!options(Ec2, SimKafka::Kraft).needs_zookeeper());
        assert!(options(Zookeeper, SimKafka::Kraft).needs_zookeeper());
        assert!(options(Ec2, SimKafka::ZooKeeperMode).needs_zookeeper());
        assert!(options(Ec2, SimKafka::Standin).needs_zookeeper());
    }
}
