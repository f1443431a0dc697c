//! The real-Kafka harness itself, on the scenario the demo and `make bench-kafka-replace` build on: a static
//! KRaft quorum of three nodes (Kafka 4.x), a topic with 6 partitions, replication factor 3 and
//! min.insync.replicas=2, keyed records produced with acks=all by kcat, one node killed, every record consumed
//! once, and the node started again on its own log dir; and a Kafka 3.9 broker in ZooKeeper mode.

use std::net::Ipv4Addr;
use std::time::Duration;

use berth_testkit::kafka::{
    Client, ClusterMode, ClusterOptions, Install, KafkaCluster, KafkaHarnessError, NodeSpec,
    TopicSpec,
};

#[test]
fn a_missing_version_names_the_command_that_installs_it() {
    let error = Install::find("0.0.1").unwrap_err();
    assert!(matches!(error, KafkaHarnessError::NotInstalled { .. }));
    assert!(error.to_string().contains("./scripts/setup.sh"), "{error}");
}

#[test]
fn three_node_quorum_keeps_every_record_when_a_node_is_killed() {
    let install = Install::kraft().unwrap_or_else(|error| panic!("{error}"));
    let nodes: Vec<NodeSpec> = (0..3)
        .map(|id| NodeSpec {
            id,
            host: Ipv4Addr::LOCALHOST,
            port: berth_testkit::free_port(),
            controller_port: berth_testkit::free_port(),
            rack: Some(format!("az-{id}")),
        })
        .collect();
    let mode = ClusterMode::Kraft {
        cluster_id: "MkU3OEVBNTcwNTJENDM2Qg".into(),
    };
    let cluster = KafkaCluster::start(&install, ClusterOptions::new(mode, nodes)).expect("cluster");
    for node in cluster.nodes() {
        let start = node.starts()[0];
        eprintln!(
            "node {} started in {:?} (Kafka's own log)",
            node.spec().id,
            start.kafka_start_time().unwrap()
        );
    }

    let client = Client::new(&install, cluster.bootstrap(), Vec::new());
    let topic = TopicSpec {
        name: "events".into(),
        partitions: 6,
        replication_factor: 3,
        configs: vec![("min.insync.replicas".into(), "2".into())],
    };
    client.create_topic(&topic).expect("topic created");
    let description = client.describe_topic("events").unwrap();
    assert!(
        description.contains("min.insync.replicas=2"),
        "{description}"
    );
    assert_eq!(
        description.matches("Replicas: ").count(),
        6,
        "{description}"
    );

    client
        .produce("events", 10_000)
        .expect("every record acknowledged");
    cluster.node(0).kill();
    let report = client.consume("events", 10_000).expect("consumed");
    assert_eq!(report.records.len(), 10_000);
    assert!(
        report.is_exact(),
        "missing {:?}, duplicated {:?}",
        report.missing,
        report.duplicated
    );

    let again = cluster
        .restart(0)
        .expect("node 0 starts on its own log dir");
    assert_eq!(cluster.node(0).starts().len(), 2);
    assert!(again.kafka_start_time().unwrap() > Duration::ZERO);
    assert!(
        cluster.node(1).stop(Duration::from_secs(60)),
        "controlled shutdown"
    );
}

#[test]
fn zookeeper_mode_broker_serves_a_real_client() {
    let install = Install::zookeeper_mode().unwrap_or_else(|error| panic!("{error}"));
    let zk = berth_testkit::zk::ZooKeeper::standalone().expect("Debian's ZooKeeper");
    let node = NodeSpec {
        id: 0,
        host: Ipv4Addr::LOCALHOST,
        port: berth_testkit::free_port(),
        controller_port: 0,
        rack: None,
    };
    let mode = ClusterMode::ZooKeeper {
        connect: format!("{}/kafka", zk.connect_string()),
    };
    let cluster =
        KafkaCluster::start(&install, ClusterOptions::new(mode, vec![node])).expect("broker");
    let start = cluster.node(0).starts()[0];
    eprintln!(
        "Kafka {} started in {:?}",
        install.version(),
        start.kafka_start_time().unwrap()
    );
    let client = Client::new(&install, cluster.bootstrap(), Vec::new());
    client
        .create_topic(&TopicSpec {
            name: "events".into(),
            partitions: 2,
            replication_factor: 1,
            configs: Vec::new(),
        })
        .expect("topic created");
    client.produce("events", 500).expect("acknowledged");
    let report = client.consume("events", 500).expect("consumed");
    assert!(
        report.is_exact(),
        "missing {:?}, duplicated {:?}",
        report.missing,
        report.duplicated
    );
    assert!(
        cluster.node(0).stop(Duration::from_secs(60)),
        "controlled shutdown"
    );
}

/// Setup's class-data-sharing archive for this machine's JVM exists and the launcher maps it: with `-Xshare:on`
/// the JVM exits with an error rather than run without an archive it was told to use.
#[test]
fn the_launcher_maps_setups_class_data_archive() {
    let install = Install::kraft().unwrap_or_else(|error| panic!("{error}"));
    let launcher = berth_testkit::kafka::launcher();
    let cds_dir = std::process::Command::new(&launcher)
        .args(["--version", install.version(), "cds-dir"])
        .output()
        .expect("run the launcher");
    assert!(cds_dir.status.success(), "{cds_dir:?}");
    let archive =
        std::path::PathBuf::from(String::from_utf8_lossy(&cds_dir.stdout).trim()).join("tools.jsa");
    assert!(
        archive.is_file(),
        "no archive {} (./scripts/setup.sh makes it)",
        archive.display()
    );
    let output = std::process::Command::new(&launcher)
        .args(["--version", install.version(), "storage", "random-uuid"])
        .env("KAFKA_OPTS", "-Xshare:on -Xlog:cds=info")
        .output()
        .expect("run the launcher");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&format!("Opened archive {}", archive.display())),
        "the launcher did not map {}: {stdout}",
        archive.display()
    );
}
