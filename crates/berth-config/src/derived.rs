//! What the daemon derives from a validated [`Config`]: the claim backend, the ids and the claims path, the
//! state machine's settings, and the effective file `berth check-config` prints.

use std::time::Duration;

use berth_core::machine::{CatchUpGate, Settings, StatePolicies};
use berth_core::ports::MountPlan;
use berth_core::routing::RouteNumbering;

use crate::{ClaimBackend, Config, HealthyWhen, KafkaMode};

/// Longest interval between the caught-up gate's looks at the replication.
const CATCH_UP_POLL_MAX: Duration = Duration::from_secs(1);

impl Config {
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

    /// The ids this host may claim: `claim.ids`, or every id.
    pub fn claimable_ids(&self) -> Vec<berth_core::BrokerId> {
        if self.claim.ids.is_empty() {
            self.broker_ids().collect()
        } else {
            self.claim
                .ids
                .iter()
                .copied()
                .map(berth_core::BrokerId)
                .collect()
        }
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
