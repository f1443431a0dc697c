//! The overlay berth renders, byte for byte, in both modes (golden files in tests/golden/).
//! After an intended change, regenerate with `BERTH_BLESS=1 cargo test -p berth-kafka --test overlay_golden`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use berth_core::ports::BrokerSpec;
use berth_core::{BrokerId, KafkaMode};
use berth_kafka::format::Formatter;
use berth_kafka::{KafkaBroker, KafkaSettings, RegistrationSettings, Supervision};

/// The adapter's settings with the configuration's defaults (systemd, listener `PLAINTEXT` on 9092, controllers
/// on 9093) in `mode`; only the mode, listener, port and voters shape the overlay.
fn settings(mode: KafkaMode) -> KafkaSettings {
    KafkaSettings {
        mode,
        supervision: Supervision::Systemd {
            unit: "kafka.service".into(),
        },
        overlay_path: "/etc/kafka/berth.properties".into(),
        listener_name: "PLAINTEXT".into(),
        port: 9092,
        check_interval: Duration::from_secs(5),
        stop_timeout: Duration::from_secs(120),
        controller_port: 9093,
        quorum_voters: false,
        controller_ids: Vec::new(),
        broker_count: 3,
        formatter: Formatter {
            command: vec!["/opt/kafka/bin/kafka-storage.sh".into(), "format".into()],
            server_properties: "/etc/kafka/server.properties".into(),
            unit: None,
        },
        cluster_id: Some("MkU3OEVBNTcwNTJENDM2Qg".into()),
        registrations: RegistrationSettings {
            connect: "10.0.1.10:2181".into(),
            session_timeout: Duration::from_secs(6),
            kafka_chroot: String::new(),
        },
        security: Default::default(),
        controller_security: Default::default(),
    }
}

fn spec() -> BrokerSpec {
    BrokerSpec {
        voters: Default::default(),
        broker_id: BrokerId(1),
        advertised_ip: Ipv4Addr::new(10, 0, 2, 11),
        rack: "eu-west-1b".into(),
        log_dirs: vec![
            PathBuf::from("/var/lib/kafka/data"),
            PathBuf::from("/var/lib/kafka/data2"),
        ],
    }
}

fn assert_golden(name: &str, rendered: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("BERTH_BLESS").is_some() {
        std::fs::write(&path, rendered).unwrap();
    }
    let golden =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        rendered,
        golden,
        "{} differs from the rendering",
        path.display()
    );
}

#[test]
fn zookeeper_mode() {
    let broker = KafkaBroker::new(settings(KafkaMode::Zookeeper)).unwrap();
    assert_golden(
        "zookeeper.properties",
        &broker.render_overlay(&spec()).unwrap(),
    );
}

#[test]
fn kraft_mode_with_quorum_voters() {
    let broker = KafkaBroker::new(KafkaSettings {
        listener_name: "BROKER".into(),
        port: 9094,
        controller_port: 9093,
        quorum_voters: true,
        controller_ids: vec![BrokerId(0), BrokerId(1), BrokerId(2)],
        ..settings(KafkaMode::Kraft)
    })
    .unwrap();
    let error = broker
        .render_overlay(&spec())
        .expect_err("the controllers' addresses are needed");
    assert!(
        error
            .to_string()
            .contains("kafka.controller_ids names 0, 1, 2 but discovery found no ENI"),
        "{error}"
    );
    let voters: BTreeMap<BrokerId, Ipv4Addr> = (0..3)
        .map(|id| {
            (
                BrokerId(id),
                Ipv4Addr::new(10, 0, 1 + id as u8, 10 + id as u8),
            )
        })
        .collect();
    broker.set_quorum_voters(voters);
    assert_golden("kraft.properties", &broker.render_overlay(&spec()).unwrap());
}

#[test]
fn kraft_mode_without_quorum_voters_leaves_them_to_the_operator() {
    let broker = KafkaBroker::new(settings(KafkaMode::Kraft)).unwrap();
    let rendered = broker.render_overlay(&spec()).unwrap();
    assert!(
        rendered.contains("\nnode.id=1\n") && !rendered.contains("controller.quorum.voters"),
        "{rendered}"
    );
}
