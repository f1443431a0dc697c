//! KafkaBroker against real Apache Kafka 3.9 in ZooKeeper mode (installed by scripts/setup.sh) and Debian's
//! ZooKeeper, run by berth's process supervisor through the `awk 1` merge docs/kafka.md recommends and our
//! launcher. No storage formatting in this mode: Kafka stamps its log dir itself (version 0).

mod common;

use std::time::Duration;

use berth_core::ports::Broker;
use berth_kafka::probe::{self, METADATA_MAX_VERSION, METADATA_MIN_VERSION};
use common::real::{self, RealHost, CLEAN_SHUTDOWN, RACK};
use common::{assert_unregistered, registration, registration_path, stop_cleanly, CHROOT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_registers_serves_and_deregisters_on_a_controlled_shutdown() {
    let host = RealHost::zookeeper();
    let broker = host.broker();
    let spec = host.spec(1);

    let evidence = real::serving(&broker, &spec).await;
    assert!(
        evidence.detail.starts_with(&format!(
            "registered PLAINTEXT://127.0.0.1:{} at {}; Metadata v12 lists broker 1",
            host.port,
            registration_path(1)
        )),
        "{}",
        evidence.detail
    );

    // Kafka's own registration, read with a client of the test's own: the overlay's address and rack.
    let zk = host.client().await;
    let (registration, stat) = registration(&zk, 1).await;
    assert!(registration.advertises_host("127.0.0.1"));
    assert_eq!(
        registration.rack.as_deref(),
        Some(RACK),
        "rack as Java read it"
    );
    assert!(stat.ephemeral_owner != 0);

    // Not formatted by berth: Kafka stamped version 0 with broker.id and ZooKeeper's cluster id.
    let meta = berth_logdir::read(&host.log_dir())
        .unwrap()
        .expect("stamped by Kafka");
    assert_eq!(
        (
            meta.version.as_deref(),
            meta.broker_id.as_deref(),
            meta.node_id.as_deref()
        ),
        (Some("0"), Some("1"), None)
    );
    let (cluster, _) = zk.get_data(&format!("{CHROOT}/cluster/id")).await.unwrap();
    let cluster: serde_json::Value = serde_json::from_slice(&cluster).unwrap();
    assert_eq!(meta.cluster_id.as_deref(), cluster["id"].as_str());

    // Every Metadata version the probe may pick (Kafka 3.9 answers v0-v12 and more).
    for version in METADATA_MIN_VERSION..=METADATA_MAX_VERSION {
        let report = probe::probe_up_to(
            &host.kafka_client(),
            &host.target(1),
            Duration::from_secs(10),
            version,
        )
        .await
        .unwrap_or_else(|error| panic!("Metadata v{version}: {error}"));
        assert_eq!(report.metadata_version, version);
        let me = report.brokers.iter().find(|b| b.id == 1).unwrap();
        assert_eq!(me.rack.as_deref(), Some(RACK), "v{version}");
    }

    broker.check(&spec).await.expect("healthy");
    assert!(!host.log_dir().join(CLEAN_SHUTDOWN).exists(), "running");

    // Controlled shutdown: berth's stop returns once the registration is gone; the log dir is marked clean.
    stop_cleanly(&broker, Duration::from_secs(60)).await;
    assert_unregistered(&zk, 1, "deregistered").await;
    assert!(
        host.log_dir().join(CLEAN_SHUTDOWN).exists(),
        "Kafka shut down cleanly"
    );
    assert_eq!(broker.child_state(), None);
    assert!(broker.check(&spec).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_meta_properties_is_refused_with_kafkas_words() {
    let host = RealHost::zookeeper();
    let theirs = "version=0\nbroker.id=2\n";
    real::foreign_node_is_refused(&host, theirs).await;
    assert_unregistered(&host.client().await, 1, "never registered").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_cluster_id_is_refused_with_kafkas_words() {
    let host = RealHost::zookeeper();
    // A volume of another cluster: this ZooKeeper's cluster id (created by Kafka as it starts) differs.
    host.stamp(
        &host.log_dir(),
        "version=0\nbroker.id=1\ncluster.id=T3RoZXJDbHVzdGVySWRBQQ\n",
    );
    let broker = host.broker();
    let error = real::refused(&broker, &host.spec(1)).await;
    assert!(
        error.message.contains(&format!(
            "Invalid cluster.id in: {}",
            host.log_dir().join("meta.properties").display()
        )) && error.message.contains("but read T3RoZXJDbHVzdGVySWRBQQ"),
        "Kafka's own words: {error}"
    );
}
