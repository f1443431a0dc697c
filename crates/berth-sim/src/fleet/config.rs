//! What an operator configures on a broker host, for a simulated one: berth's `/etc/berth/berth.toml` and Kafka's
//! own `/etc/kafka/server.properties`.
//!
//! berth's configuration is a [`berth_config::Config`], the daemon's own type, rendered by its serializer and
//! validated by its parser before it is written, so the file cannot name a key berth does not know or hold a value
//! berth refuses. It carries what the fleet differs in from the production defaults: the simulated region's
//! endpoints, the stack and the zone's group, the compressed timings, ext4 (formatting a blank volume allowed),
//! the Kafka mode and, only when the fleet runs one, the ZooKeeper ensemble. On a secured fleet it names the
//! listener berth probes and how berth connects to it and to the controllers; its secrets (the SCRAM password, the
//! client key) come as systemd credentials, never in the file.

use std::time::Duration;

use berth_config::secret::env_name;
use berth_config::{
    AutoScalingConfig, AwsConfig, ClaimConfig, CloudFormationConfig, ClusterConfig, Config,
    ConfigError, Filesystem, HealthConfig, KafkaConfig, KafkaSecurity, SaslMechanism,
    SecurityProtocol, StorageConfig, Supervisor, TagsConfig, ZooKeeperConfig,
};
use berth_testkit::kafka::security::{
    ClusterSecurity, SecuredListeners, BERTH_PASSWORD, BERTH_TLS_DIR, KAFKA_TLS_DIR,
};

use super::{FleetOptions, HostRole, SimKafka, KAFKA_CLUSTER_ID};
use crate::{asg, layout, systemd_host};

/// What a host's configuration depends on besides the fleet's options.
#[derive(Debug, Clone)]
pub struct HostSettings<'a> {
    /// The host's index (named in the files' first line).
    pub index: usize,
    /// Its zone (which group it belongs to).
    pub az: usize,
    /// What it runs (which group it belongs to, the ids it claims, its `process.roles`).
    pub role: HostRole,
    /// The fleet's options.
    pub options: &'a FleetOptions,
    /// The ensemble's connect string, when the fleet runs one.
    pub zookeeper: Option<String>,
    /// The AWS endpoint berth is given (the fault proxy's URL).
    pub endpoint_url: String,
    /// A secured fleet's material (None: `PLAINTEXT`).
    pub security: Option<&'a ClusterSecurity>,
}

impl HostSettings<'_> {
    /// berth's configuration for the host.
    pub fn berth_config(&self) -> Config {
        let o = self.options;
        Config {
            cluster: ClusterConfig {
                name: o.cluster.clone(),
                broker_count: o.brokers,
                kafka_cluster_id: (o.kafka == SimKafka::Kraft).then(|| KAFKA_CLUSTER_ID.to_owned()),
            },
            tags: TagsConfig {
                cluster_key: layout::CLUSTER_TAG.into(),
                ..TagsConfig::default()
            },
            claim: ClaimConfig {
                backend: Some(o.claim_backend),
                ids: o.claim_ids(self.role),
            },
            zookeeper: ZooKeeperConfig {
                connect: self.zookeeper.clone().unwrap_or_default(),
                session_timeout: o.session_timeout,
                ..ZooKeeperConfig::default()
            },
            aws: self.aws(),
            network: Default::default(),
            storage: StorageConfig {
                sys_root: systemd_host::SYS_ROOT.into(),
                filesystem: Filesystem::Ext4,
                format_blank: true,
                ..StorageConfig::default()
            },
            kafka: self.kafka(),
            health: HealthConfig {
                listen: ([0, 0, 0, 0], layout::HEALTH_PORT).into(),
                state_listen: ([0, 0, 0, 0], layout::STATE_PORT).into(),
            },
            states: Default::default(),
        }
    }

    /// `[aws]`: the simulated region's endpoints, the stack and the zone's group with its hooks.
    fn aws(&self) -> AwsConfig {
        let o = self.options;
        let stacked = o.stack.is_some();
        AwsConfig {
            region: layout::REGION.into(),
            endpoint_url: self.endpoint_url.clone(),
            imds_endpoint: format!("http://{}", layout::IMDS_ADDR),
            termination_poll: Duration::from_secs(1),
            // Compressed like the other timings: a shutting-down owner gets 5 s, not 2 min, to let go.
            takeover_wait: Duration::from_secs(5),
            // A stack's instances read these from their tags, as AWS sets them ([`FleetOptions::stack`]).
            cloudformation: CloudFormationConfig {
                signal: true,
                stack: if stacked {
                    String::new()
                } else {
                    asg::stack_name(&o.cluster)
                },
                resource: if stacked {
                    String::new()
                } else {
                    asg::STACK_RESOURCE.into()
                },
            },
            autoscaling: AutoScalingConfig {
                group: if stacked {
                    String::new()
                } else {
                    asg::group_of(o, self.role, self.az)
                },
                launch_hook: asg::LAUNCH_HOOK.into(),
                terminate_hook: asg::TERMINATE_HOOK.into(),
                heartbeat_interval: o.asg.launch_timeout / 2,
                hook_timeout: o.asg.launch_timeout,
                mark_unhealthy_after: Duration::ZERO,
            },
            ..AwsConfig::default()
        }
    }

    /// `[kafka]`: the fleet's mode through `systemctl`, KRaft's voters (every id) from the ENI addresses, a
    /// secured fleet's listener and security.
    fn kafka(&self) -> KafkaConfig {
        let kafka = self.options.kafka;
        let plain = KafkaConfig {
            mode: kafka.mode(),
            supervisor: Supervisor::Systemd,
            quorum_voters: kafka == SimKafka::Kraft,
            // The static voter set: every id of combined nodes, or the dedicated controllers.
            controller_ids: if kafka == SimKafka::Kraft {
                self.options.controller_ids()
            } else {
                Vec::new()
            },
            port: layout::KAFKA_PORT,
            check_interval: Duration::from_secs(1),
            // A real broker's controlled shutdown moves leadership away first: give it Kafka's own time.
            stop_timeout: Duration::from_secs(if kafka == SimKafka::Standin { 5 } else { 60 }),
            ..KafkaConfig::default()
        };
        match self.security {
            Some(security) => secured(plain, security.listeners),
            None => plain,
        }
    }

    /// `/etc/berth/berth.toml`: [`HostSettings::berth_config`] rendered and checked by berth's own parser; no
    /// `[zookeeper]` table when the fleet runs no ensemble.
    pub fn berth_toml(&self) -> Result<String, ConfigError> {
        let config = self.berth_config();
        let mut table = toml::Table::try_from(&config).expect("a configuration renders as TOML");
        if self.zookeeper.is_none() {
            table.remove("zookeeper");
        }
        let text = format!(
            "# berth on simulated host {} ({}), written by berth-sim\n{}",
            self.index,
            layout::zone_name(self.az),
            toml::to_string_pretty(&table).expect("a TOML table renders")
        );
        let credentials = self.credentials_for_a_check();
        berth_config::parse(
            &text,
            credentials.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )?;
        Ok(text)
    }

    /// What a secured host's systemd credentials give berth, as the environment overrides that stand them in for
    /// a check of the file here (a key credential for the key file's path on the host, the password's value).
    fn credentials_for_a_check(&self) -> Vec<(String, String)> {
        let Some(security) = self.security else {
            return Vec::new();
        };
        security
            .berth_credentials()
            .into_iter()
            .map(
                |(credential, path)| match credential.strip_suffix(".tls_key") {
                    Some(section) => (env_name(&format!("{section}.tls_key_file")), path),
                    None => (env_name(credential), BERTH_PASSWORD.to_owned()),
                },
            )
            .collect()
    }

    /// The operator's `server.properties` (what berth's overlay does not own): for real Kafka the listeners on
    /// every address (the ENI's appears later), KRaft's roles and controller listener or ZooKeeper's connect
    /// string, and replication settings that fit the fleet's size.
    pub fn server_properties(&self) -> String {
        let options = self.options;
        // Kafka in ZooKeeper mode (the only one that reads this) always has the fleet's ensemble.
        let zookeeper = self.zookeeper.as_ref().map_or_else(String::new, |connect| {
            format!(
                "zookeeper.connect={connect}\nzookeeper.session.timeout.ms={}\n",
                options.session_timeout.as_millis(),
            )
        });
        let mut text = format!(
            "# the operator's Kafka settings on simulated host {}\n",
            self.index
        );
        match options.kafka {
            SimKafka::Standin => return text + &zookeeper,
            SimKafka::Kraft => {
                text.push_str(&format!("process.roles={}\n", self.role.process_roles()));
                text.push_str(&self.kraft_listeners());
            }
            SimKafka::ZooKeeperMode => {
                text.push_str(&zookeeper);
                text.push_str(&format!(
                    "listeners=PLAINTEXT://0.0.0.0:{}\n",
                    layout::KAFKA_PORT
                ));
            }
        }
        let replicas = u32::try_from(options.broker_ids().len())
            .unwrap_or(u32::MAX)
            .min(3);
        text.push_str(&format!(
            "offsets.topic.replication.factor={replicas}\ntransaction.state.log.replication.factor={replicas}\n\
             transaction.state.log.min.isr={}\ngroup.initial.rebalance.delay.ms=0\n",
            replicas.min(2)
        ));
        text
    }

    /// KRaft's listeners, every one bound to every address: `PLAINTEXT` and `CONTROLLER` (a dedicated
    /// controller only `CONTROLLER`, a broker only `PLAINTEXT`), or a secured fleet's.
    fn kraft_listeners(&self) -> String {
        let (port, cport) = (layout::KAFKA_PORT, layout::KAFKA_CONTROLLER_PORT);
        let map = "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n";
        let names = "controller.listener.names=CONTROLLER\n";
        let brokers = "inter.broker.listener.name=PLAINTEXT\n";
        match (self.security, self.role) {
            (Some(security), _) => security.server_properties(port, cport),
            (None, HostRole::Combined) => format!(
                "listeners=PLAINTEXT://0.0.0.0:{port},CONTROLLER://0.0.0.0:{cport}\n{names}{brokers}{map}"
            ),
            (None, HostRole::Controller) => {
                format!("listeners=CONTROLLER://0.0.0.0:{cport}\n{names}{map}")
            }
            (None, HostRole::Broker) => {
                format!("listeners=PLAINTEXT://0.0.0.0:{port}\n{names}{brokers}{map}")
            }
        }
    }
}

/// `[kafka]` of a secured fleet: berth probes the `INTERNAL` listener (`SASL_SSL` as user `berth` with
/// SCRAM-SHA-512, or mutual TLS), asks the controllers with its client certificate, and formats through the
/// operator's wrapper that adds the SCRAM users.
fn secured(kafka: KafkaConfig, listeners: SecuredListeners) -> KafkaConfig {
    let ca = Some(format!("{KAFKA_TLS_DIR}/ca.pem").into());
    let mutual = KafkaSecurity {
        protocol: SecurityProtocol::Ssl,
        tls_ca_file: ca.clone(),
        tls_cert_file: Some(format!("{BERTH_TLS_DIR}/berth.pem").into()),
        ..KafkaSecurity::default()
    };
    let security = match listeners {
        SecuredListeners::SaslSsl => KafkaSecurity {
            protocol: SecurityProtocol::SaslSsl,
            sasl_mechanism: Some(SaslMechanism::ScramSha512),
            sasl_username: "berth".into(),
            tls_ca_file: ca,
            ..KafkaSecurity::default()
        },
        SecuredListeners::MutualTls => mutual.clone(),
    };
    // The default's transient unit (systemd-run and its options), running the wrapper instead of the tool.
    let mut format_command: Vec<String> = berth_config::DEFAULT_FORMAT_COMMAND
        .iter()
        .take_while(|word| !word.starts_with('/'))
        .map(|&word| word.to_owned())
        .collect();
    format_command.push(systemd_host::FORMAT_WRAPPER.into());
    KafkaConfig {
        listener_name: "INTERNAL".into(),
        format_command,
        security,
        controller_security: Some(mutual),
        ..kafka
    }
}

#[cfg(test)]
mod tests {
    use berth_config::{ClaimBackend, KafkaMode};

    use super::*;

    fn settings<'a>(options: &'a FleetOptions, zookeeper: Option<&str>) -> HostSettings<'a> {
        HostSettings {
            index: 4,
            az: 1,
            role: options.default_role(),
            options,
            zookeeper: zookeeper.map(str::to_owned),
            endpoint_url: "http://10.0.0.20:41000".into(),
            security: None,
        }
    }

    #[test]
    fn the_written_configuration_is_what_berth_reads() {
        let options = FleetOptions {
            kafka: SimKafka::ZooKeeperMode,
            ..FleetOptions::default()
        };
        let host = settings(&options, Some("10.0.0.11:2181"));
        let text = host.berth_toml().expect("validates");
        assert!(
            text.starts_with("# berth on simulated host 4 (us-east-1b), written by berth-sim\n")
        );
        let read = berth_config::parse(&text, []).expect("parses");
        assert_eq!(read.zookeeper.connect, "10.0.0.11:2181");
        assert_eq!(read.zookeeper.session_timeout, options.session_timeout);
        assert_eq!(read.aws.autoscaling.group, "sim-broker-1");
        assert_eq!(read.aws.cloudformation.stack, "sim-stack");
        assert_eq!(read.aws.endpoint_url, "http://10.0.0.20:41000");
        assert_eq!(read.kafka.mode, KafkaMode::Zookeeper);
        assert_eq!(read.kafka.stop_timeout, Duration::from_secs(60));
        assert_eq!(read.cluster.kafka_cluster_id, None);
        assert_eq!(read.claim_backend(), ClaimBackend::Zookeeper);
    }

    #[test]
    fn a_kraft_fleet_on_ec2_claims_names_no_zookeeper() {
        let options = FleetOptions {
            kafka: SimKafka::Kraft,
            claim_backend: ClaimBackend::Ec2,
            ..FleetOptions::default()
        };
        let host = settings(&options, None);
        let text = host.berth_toml().expect("validates");
        assert!(!text.to_lowercase().contains("zookeeper"), "{text}");
        assert!(text.contains("backend = \"ec2\""), "{text}");
        let read = berth_config::parse(&text, []).expect("parses");
        assert_eq!(read.kafka.mode, KafkaMode::Kraft);
        assert!(read.kafka.quorum_voters);
        assert_eq!(
            read.cluster.kafka_cluster_id.as_deref(),
            Some(KAFKA_CLUSTER_ID)
        );
        assert!(!host.server_properties().contains("zookeeper"));
    }

    #[test]
    fn dedicated_controllers_and_brokers_claim_their_own_ids_in_their_own_groups() {
        let options = FleetOptions {
            kafka: SimKafka::Kraft,
            claim_backend: ClaimBackend::Ec2,
            brokers: 5,
            controllers: 3,
            ..FleetOptions::default()
        };
        let controller = HostSettings {
            role: HostRole::Controller,
            ..settings(&options, None)
        };
        let read = berth_config::parse(&controller.berth_toml().expect("validates"), []).unwrap();
        assert_eq!(read.claim.ids, [0, 1, 2]);
        assert_eq!(read.kafka.controller_ids, [0, 1, 2]);
        assert_eq!(read.aws.autoscaling.group, "sim-controller-1");
        let properties = controller.server_properties();
        assert!(
            properties.contains("process.roles=controller\nlisteners=CONTROLLER://0.0.0.0:9093\n")
        );
        assert!(!properties.contains("PLAINTEXT://"), "{properties}");
        assert!(properties.contains("offsets.topic.replication.factor=2\n"));
        let broker = settings(&options, None);
        let read = berth_config::parse(&broker.berth_toml().expect("validates"), []).unwrap();
        assert_eq!(read.claim.ids, [3, 4]);
        assert_eq!(read.kafka.controller_ids, [0, 1, 2]);
        assert_eq!(read.aws.autoscaling.group, "sim-broker-1");
        let properties = broker.server_properties();
        assert!(properties.contains("process.roles=broker\nlisteners=PLAINTEXT://0.0.0.0:9092\n"));
    }

    #[test]
    fn a_secured_fleets_configuration_validates_with_its_credentials_and_holds_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        for listeners in [SecuredListeners::SaslSsl, SecuredListeners::MutualTls] {
            let security = ClusterSecurity::create(
                &dir.path().join(format!("{listeners:?}")),
                listeners,
                &[std::net::Ipv4Addr::new(10, 0, 1, 10).into()],
            )
            .expect("the test's CA and certificates");
            let options = FleetOptions {
                kafka: SimKafka::Kraft,
                claim_backend: ClaimBackend::Ec2,
                security: Some(listeners),
                ..FleetOptions::default()
            };
            let host = HostSettings {
                security: Some(&security),
                ..settings(&options, None)
            };
            let text = host
                .berth_toml()
                .expect("validates with the credentials stood in");
            for secret in security.secrets() {
                assert!(!text.contains(&secret), "{listeners:?}: {text}");
            }
            let credentials = host.credentials_for_a_check();
            let read = berth_config::parse(
                &text,
                credentials.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .unwrap();
            assert_eq!(read.kafka.listener_name, "INTERNAL");
            assert_eq!(read.controller_security().protocol, SecurityProtocol::Ssl);
            let protocol = read.kafka.security.protocol;
            assert_eq!(
                protocol == SecurityProtocol::SaslSsl,
                listeners == SecuredListeners::SaslSsl,
                "{protocol:?}"
            );
            assert!(host
                .server_properties()
                .contains("listener.security.protocol.map=INTERNAL:"));
        }
    }
}
