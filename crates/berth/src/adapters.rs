//! Builds the production adapters from the configuration: IMDSv2/EC2/CloudFormation/Auto Scaling, the claim
//! backend (ZooKeeper, or EC2's ENI attachments), rtnetlink, block devices and mounts, and Kafka. Nothing here
//! decides anything; each adapter crate owns its job.
//!
//! This is the one place that knows both the configuration file and the adapters: each adapter takes its own
//! settings (what it reads, nothing more), mapped here from the validated [`Config`], so no adapter crate
//! depends on berth-config. The rtnetlink adapter reads no setting at all (its plan comes from the core).

use std::sync::Arc;

use anyhow::Context;
use berth_aws::{AttachSettings, AwsSettings, DiscoverySpec, SignalSettings};
use berth_config::{ClaimBackend, Config, ConfigError, KafkaSecurity, Salvage, Supervisor};
use berth_core::ports::{FailureReport, Verdict};
use berth_core::{BrokerId, Coordination};
use berth_kafka::format::Formatter;
use berth_kafka::settings::{ClientSettings, SaslSettings, TlsSettings};
use berth_kafka::{KafkaSettings, RegistrationSettings, Supervision};
use berth_storage::StorageSettings;
use berth_zk::ZkSettings;

use crate::daemon::Adapters;

/// The production adapters. Nothing is contacted yet except the instance metadata service, which the AWS SDK
/// configuration needs for the region when `aws.region` is empty.
pub async fn production(config: &Config) -> anyhow::Result<Adapters> {
    let cloud = berth_aws::AwsCloud::new(aws_settings(config))
        .await
        .context("AWS clients")?;
    let mut broker =
        berth_kafka::KafkaBroker::new(kafka_settings(config).context("Kafka settings")?)
            .context("Kafka adapter")?
            .with_birth_record(Arc::new(cloud.birth_record()));
    let coordination: Arc<dyn Coordination> = match config.claim_backend() {
        ClaimBackend::Zookeeper => {
            let zookeeper =
                berth_zk::ZkCoordination::new(zk_settings(config)).context("ZooKeeper adapter")?;
            broker = broker.borrowing_zookeeper_session(zookeeper.shared_session());
            Arc::new(zookeeper)
        }
        ClaimBackend::Ec2 => Arc::new(cloud.ec2_claim()),
    };
    let network = berth_net::NetlinkNetwork::new().context("netlink socket")?;
    let storage = berth_storage::BlockStorage::new(storage_settings(config));
    let cloud = Arc::new(cloud);
    Ok(Adapters {
        metadata: cloud.clone(),
        attachments: cloud.clone(),
        signals: cloud,
        coordination,
        network: Arc::new(network),
        storage: Arc::new(storage),
        broker: Arc::new(broker),
    })
}

/// berth-aws: `[aws]`, `[tags]` and the cluster's name and size. An empty region or endpoint is the instance's
/// region and AWS's own endpoint; SetInstanceHealth for a lost Kafka is off when `mark_unhealthy_after` is 0s.
pub fn aws_settings(config: &Config) -> AwsSettings {
    let aws = &config.aws;
    let tags = &config.tags;
    let set = |value: &String| (!value.is_empty()).then(|| value.clone());
    AwsSettings {
        region: set(&aws.region),
        endpoint_url: set(&aws.endpoint_url),
        imds_endpoint: aws.imds_endpoint.clone(),
        discovery: DiscoverySpec {
            key: tags.key.clone(),
            eni: tags.eni.clone(),
            volume: tags.volume.clone(),
            cluster_tag: set(&tags.cluster_key).map(|key| (key, config.cluster.name.clone())),
            broker_count: config.cluster.broker_count,
        },
        attach: AttachSettings {
            device_index: aws.eni_device_index as i32,
            network_card: aws.network_card as i32,
            volume_device: aws.volume_device.clone(),
            takeover_owner_states: aws.takeover_owner_states.clone(),
            takeover_wait: aws.takeover_wait,
        },
        signals: SignalSettings {
            cloudformation: aws.cloudformation.signal,
            stack: aws.cloudformation.stack.clone(),
            resource: aws.cloudformation.resource.clone(),
            group: aws.autoscaling.group.clone(),
            launch_hook: aws.autoscaling.launch_hook.clone(),
            terminate_hook: aws.autoscaling.terminate_hook.clone(),
            mark_unhealthy: !aws.autoscaling.mark_unhealthy_after.is_zero(),
        },
    }
}

/// A boot whose configuration does not validate, reported before berth exits 78, when the parts that parsed name
/// the launch hook (the group may come from the instance's tag): FAILURE to CloudFormation when signals are on,
/// then ABANDON (else SetInstanceHealth Unhealthy), so Auto Scaling replaces the instance at once instead of
/// waiting out the hook. `None` when the launch hook is not known: nothing is sent.
pub async fn report_unusable_configuration(
    salvage: &Salvage,
    reason: &str,
) -> anyhow::Result<Option<FailureReport>> {
    if salvage.launch_hook.is_empty() {
        return Ok(None);
    }
    let set = |value: &String| (!value.is_empty()).then(|| value.clone());
    let signals = SignalSettings {
        cloudformation: salvage.signal,
        stack: salvage.stack.clone(),
        resource: salvage.resource.clone(),
        group: salvage.group.clone(),
        launch_hook: salvage.launch_hook.clone(),
        terminate_hook: String::new(),
        mark_unhealthy: false,
    };
    let (metadata, signaller) = berth_aws::AwsCloud::signals_only(
        set(&salvage.region),
        set(&salvage.endpoint_url),
        &salvage.imds_endpoint,
        signals,
    )
    .await
    .context("AWS clients")?;
    let identity = metadata
        .identity()
        .await
        .context("the instance's identity")?;
    let verdict = Verdict::Failure(format!("invalid configuration: {reason}"));
    if let Err(error) = signaller.signal_stack(&identity, &verdict).await {
        tracing::warn!(error = %error, "SignalResource FAILURE not sent: {error}");
    }
    let report = signaller
        .report_failure(&identity)
        .await
        .context("reporting the failure to Auto Scaling")?;
    Ok(Some(report))
}

/// berth-zk's claims: `[zookeeper]`'s ensemble and credentials, and the cluster's claims path.
pub fn zk_settings(config: &Config) -> ZkSettings {
    let zookeeper = &config.zookeeper;
    ZkSettings {
        connect: zookeeper.connect.clone(),
        session_timeout: zookeeper.session_timeout,
        digest: zookeeper.digest.clone(),
        claims_path: config.claims_path(),
    }
}

/// berth-storage: `[storage]` and the Kafka cluster id `meta.properties` must name.
pub fn storage_settings(config: &Config) -> StorageSettings {
    let storage = &config.storage;
    StorageSettings {
        device_root: storage.device_root.clone(),
        sys_root: storage.sys_root.clone(),
        mount_path: storage.mount_path.clone(),
        mount_options: storage.mount_options.clone(),
        filesystem: storage.filesystem,
        format_blank: storage.format_blank,
        mkfs_options: storage.mkfs_options.clone(),
        cluster_id: config.cluster.kafka_cluster_id.clone(),
    }
}

/// berth-kafka: `[kafka]` (with `[kafka.security]` and `[kafka.controller_security]`, whose TLS files are read
/// here), the Kafka cluster id, and where Kafka registers in ZooKeeper mode.
pub fn kafka_settings(config: &Config) -> Result<KafkaSettings, ConfigError> {
    let kafka = &config.kafka;
    let zookeeper = &config.zookeeper;
    Ok(KafkaSettings {
        mode: kafka.mode,
        supervision: match kafka.supervisor {
            Supervisor::Systemd => Supervision::Systemd {
                unit: kafka.unit.clone(),
            },
            Supervisor::Process => Supervision::Process {
                command: kafka.command.clone(),
            },
        },
        overlay_path: kafka.overlay_path.clone(),
        listener_name: kafka.listener_name.clone(),
        port: kafka.port,
        check_interval: kafka.check_interval,
        stop_timeout: kafka.stop_timeout,
        controller_port: kafka.controller_port,
        quorum_voters: kafka.quorum_voters,
        controller_ids: kafka.controller_ids.iter().copied().map(BrokerId).collect(),
        broker_count: config.cluster.broker_count,
        formatter: Formatter {
            command: kafka.format_command.clone(),
            server_properties: kafka.server_properties.clone(),
            // Validated: a systemd-run command names its unit.
            unit: berth_config::transient_unit(&kafka.format_command)
                .ok()
                .flatten(),
        },
        cluster_id: config.cluster.kafka_cluster_id.clone(),
        registrations: RegistrationSettings {
            connect: zookeeper.connect.clone(),
            session_timeout: zookeeper.session_timeout,
            kafka_chroot: zookeeper.kafka_chroot.clone(),
        },
        security: client_settings(&kafka.security, "kafka.security")?,
        controller_security: match &kafka.controller_security {
            Some(security) => client_settings(security, "kafka.controller_security")?,
            None => client_settings(&kafka.security, "kafka.security")?,
        },
    })
}

/// How berth reaches a listener, from its section of the configuration (`section` names it in errors).
fn client_settings(security: &KafkaSecurity, section: &str) -> Result<ClientSettings, ConfigError> {
    let tls = security.tls_material(section)?.map(|material| TlsSettings {
        roots: material.roots,
        client: material
            .client
            .map(|(chain, key)| (chain, std::sync::Arc::new(key))),
        server_name: security.tls_server_name.clone(),
    });
    let sasl = match (security.protocol.sasl(), security.sasl_mechanism) {
        (true, Some(mechanism)) => Some(SaslSettings {
            mechanism,
            username: security.sasl_username.clone(),
            password: security.sasl_password.clone(),
        }),
        _ => None,
    };
    Ok(ClientSettings {
        protocol: security.protocol,
        sasl,
        tls,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use berth_core::KafkaMode;

    use super::*;

    const EXAMPLE: &str = include_str!("../../../docs/examples/berth.toml");

    #[test]
    fn each_adapter_reads_what_the_file_says() {
        let config = berth_config::parse(EXAMPLE, []).expect("the example parses");
        let aws = aws_settings(&config);
        assert_eq!(
            (aws.region, aws.endpoint_url),
            (None, None),
            "empty: IMDS's and AWS's own"
        );
        assert_eq!(
            aws.discovery.cluster_tag,
            Some(("berth:cluster".into(), "events".into()))
        );
        assert_eq!(
            (aws.discovery.broker_count, aws.attach.device_index),
            (3, 1)
        );
        assert!(aws.signals.cloudformation && aws.signals.mark_unhealthy);
        assert_eq!(aws.signals.launch_hook, "berth-launch");
        let zk = zk_settings(&config);
        assert_eq!(zk.claims_path, "/berth/events/claims");
        assert_eq!(zk.session_timeout, Duration::from_secs(6));
        let kafka = kafka_settings(&config).unwrap();
        assert_eq!(kafka.mode, KafkaMode::Zookeeper);
        assert_eq!(
            kafka.supervision,
            Supervision::Systemd {
                unit: "kafka.service".into()
            }
        );
        assert_eq!(kafka.registrations.connect, config.zookeeper.connect);
        assert_eq!(
            storage_settings(&config).mount_path,
            config.storage.mount_path
        );
    }

    #[test]
    fn kafka_security_maps_to_the_clients_settings_and_the_controllers_default_to_it() {
        let plain = kafka_settings(&berth_config::parse(EXAMPLE, []).unwrap()).unwrap();
        assert_eq!(plain.security, ClientSettings::default(), "PLAINTEXT");
        let environment = [
            ("BERTH_KAFKA__SECURITY__PROTOCOL", "SASL_PLAINTEXT"),
            ("BERTH_KAFKA__SECURITY__SASL_MECHANISM", "SCRAM-SHA-512"),
            ("BERTH_KAFKA__SECURITY__SASL_USERNAME", "berth"),
            ("BERTH_KAFKA__SECURITY__SASL_PASSWORD", "pw"),
        ];
        let config = berth_config::parse(EXAMPLE, environment).unwrap();
        let kafka = kafka_settings(&config).unwrap();
        let sasl = kafka.security.sasl.clone().expect("SASL settings");
        assert_eq!(
            (
                sasl.mechanism,
                sasl.username.as_str(),
                sasl.password.expose()
            ),
            (
                berth_core::security::SaslMechanism::ScramSha512,
                "berth",
                "pw"
            )
        );
        assert_eq!(kafka.security.tls, None);
        assert_eq!(kafka.controller_security, kafka.security);
    }

    #[test]
    fn unset_and_zero_values_mean_off_and_process_runs_the_command() {
        let environment = [
            ("BERTH_AWS__REGION", "eu-west-1"),
            ("BERTH_TAGS__CLUSTER_KEY", ""),
            ("BERTH_AWS__AUTOSCALING__MARK_UNHEALTHY_AFTER", "0s"),
            ("BERTH_KAFKA__SUPERVISOR", "process"),
            (
                "BERTH_KAFKA__COMMAND",
                "/opt/kafka/bin/kafka-server-start.sh,/etc/kafka/server.properties",
            ),
            ("BERTH_KAFKA__MODE", "kraft"),
            ("BERTH_KAFKA__CONTROLLER_IDS", "0,2"),
            ("BERTH_CLUSTER__KAFKA_CLUSTER_ID", "MkU3OEVBNTcwNTJENDM2Qg"),
        ];
        let config = berth_config::parse(EXAMPLE, environment).expect("a valid configuration");
        let aws = aws_settings(&config);
        assert_eq!(aws.region.as_deref(), Some("eu-west-1"));
        assert_eq!(aws.discovery.cluster_tag, None);
        assert!(!aws.signals.mark_unhealthy);
        let kafka = kafka_settings(&config).unwrap();
        assert_eq!(
            kafka.supervision,
            Supervision::Process {
                command: vec![
                    "/opt/kafka/bin/kafka-server-start.sh".into(),
                    "/etc/kafka/server.properties".into()
                ]
            }
        );
        assert_eq!(kafka.controller_ids, [BrokerId(0), BrokerId(2)]);
        assert_eq!(kafka.cluster_id.as_deref(), Some("MkU3OEVBNTcwNTJENDM2Qg"));
        assert_eq!(
            storage_settings(&config).cluster_id.as_deref(),
            Some("MkU3OEVBNTcwNTJENDM2Qg")
        );
    }
}
