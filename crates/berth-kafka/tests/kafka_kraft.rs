//! KafkaBroker against real Apache Kafka 4.x in KRaft mode (installed by scripts/setup.sh), run by berth's
//! process supervisor through the `awk 1` merge docs/kafka.md recommends and our launcher. One broker serves
//! the whole life cycle (JVM starts cost 5-10 s here); the refusals each start Kafka once, until it refuses. One
//! 3-node cluster serves the caught-up gate's and the drain check's reading of real under-replication.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_core::ports::{Broker, Deadline};
use berth_core::replication::{
    catch_up, stop_safety, PartitionReplicas, ReplicationView, StopSafety,
};
use berth_core::BrokerId;
use berth_kafka::client::{KafkaClient, Peer};
use berth_kafka::probe::{self, ProbeError, METADATA_MAX_VERSION, METADATA_MIN_VERSION};
use berth_kafka::replication::{self, Question};
use berth_kafka::supervisor::ChildState;
use berth_testkit::kafka::{
    Client, ClusterMode, ClusterOptions, Install, KafkaCluster, NodeSpec, TopicSpec,
};
use common::real::{self, RealHost, CLEAN_SHUTDOWN, RACK, START_DEADLINE};
use common::{stop_cleanly, CLUSTER_ID};

/// Sends Metadata in every version the probe may pick (v1 up to v12, as far as the broker goes) and checks
/// each answer lists the broker with the rack Java read from berth's overlay. Returns the versions answered.
pub async fn every_metadata_version(host: &RealHost, id: u32) -> Vec<i16> {
    let mut answered = Vec::new();
    for version in METADATA_MIN_VERSION..=METADATA_MAX_VERSION {
        match probe::probe_up_to(
            &host.kafka_client(),
            &host.target(id),
            Duration::from_secs(10),
            version,
        )
        .await
        {
            Ok(report) => {
                assert_eq!(report.metadata_version, version);
                let me = report.brokers.iter().find(|b| b.id == id as i32).unwrap();
                assert_eq!(
                    me.rack.as_deref(),
                    Some(RACK),
                    "v{version}: rack as Java read it"
                );
                answered.push(version);
            }
            // Kafka 4.0 dropped old versions (KIP-896): the probe refuses to pick below the broker's minimum.
            Err(ProbeError::ApiVersions { detail, .. }) if detail.contains("Metadata versions") => {
                let minimum: i16 = detail
                    .trim_start_matches("Metadata versions ")
                    .split("..")
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("{detail}"));
                assert!(version < minimum, "v{version} refused: {detail}");
            }
            Err(error) => panic!("Metadata v{version}: {error}"),
        }
    }
    answered
}

/// Runs Kafka's own storage tool for node 1 into `dir` (as a berth's format would, up to the point where it
/// was killed) and returns the directory id it wrote.
async fn format_by_hand(host: &RealHost, dir: &std::path::Path) -> String {
    let config = host.dir.path().join("by-hand.properties");
    let server = std::fs::read_to_string(host.server_properties()).unwrap();
    std::fs::write(
        &config,
        format!(
            "{server}\nnode.id=1\ncontroller.quorum.voters=1@127.0.0.1:{}\nlog.dirs={}\n",
            host.controller_port,
            dir.display()
        ),
    )
    .unwrap();
    let mut command = host.install.command("format");
    command.extend([
        "--cluster-id".into(),
        CLUSTER_ID.into(),
        "--config".into(),
        config.display().to_string(),
    ]);
    let output = tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    berth_logdir::read(dir)
        .unwrap()
        .and_then(|meta| meta.directory_id)
        .expect("formatted by hand")
}

/// What formats that were killed half way leave. In the log dir, Kafka's storage tool stopped between the
/// bootstrap snapshot and meta.properties (it writes them in that order); beside it, a staging dir of berth's
/// whose rename never happened. Returns the staging dir and its directory id.
async fn leave_interrupted_formats(host: &RealHost) -> (PathBuf, String) {
    format_by_hand(host, &host.log_dir()).await;
    std::fs::remove_file(host.log_dir().join("meta.properties")).unwrap();
    let snapshot = host
        .log_dir()
        .join("__cluster_metadata-0/00000000000000000000-0000000000.checkpoint");
    assert!(snapshot.exists(), "the bootstrap snapshot is left");
    let staged = berth_kafka::staging::dir_beside(&host.log_dir());
    let staged_id = format_by_hand(host, &staged).await;
    (staged, staged_id)
}

/// Formatted by Kafka's own storage tool, with the configured cluster id and the overlay's node id, afresh
/// (not the stale staging dir moved in, which is gone); returns the directory id.
fn formatted_again(host: &RealHost, staged: &Path, staged_id: &str) -> String {
    let meta = berth_logdir::read(&host.log_dir())
        .unwrap()
        .expect("formatted");
    assert_eq!(meta.version.as_deref(), Some("1"));
    assert_eq!(meta.node_id.as_deref(), Some("1"));
    assert_eq!(meta.cluster_id.as_deref(), Some(CLUSTER_ID));
    let directory_id = meta.directory_id.expect("a directory.id (KIP-858)");
    assert_ne!(
        directory_id, staged_id,
        "formatted again, not the stale staging dir moved in"
    );
    assert!(!staged.exists(), "the stale staging dir is gone");
    directory_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blank_storage_is_formatted_then_kafka_serves_stops_cleanly_and_restarts_unformatted() {
    let host = RealHost::kraft();
    let broker = host.broker();
    let spec = host.spec(1);
    let (staged, staged_id) = leave_interrupted_formats(&host).await;

    let evidence = real::serving(&broker, &spec).await;
    assert!(
        evidence
            .detail
            .starts_with("Metadata v12 lists broker 1 at 127.0.0.1")
            && evidence.detail.contains(&format!(
                "(controller 1, cluster {CLUSTER_ID}); storage formatted"
            )),
        "{}",
        evidence.detail
    );

    let directory_id = formatted_again(&host, &staged, &staged_id);
    assert!(
        evidence
            .detail
            .contains("storage formatted on the birth rule"),
        "{}",
        evidence.detail
    );
    // What Kafka read is the merge of the operator's file and the overlay.
    let merged = std::fs::read_to_string(host.dir.path().join("run/server.properties")).unwrap();
    assert!(
        merged.contains("group.initial.rebalance.delay.ms=0\n# Written by berth"),
        "awk 1 ended the operator's last line: {merged}"
    );
    assert!(!host.log_dir().join(CLEAN_SHUTDOWN).exists(), "running");

    // Every Metadata version the probe may pick, as real Kafka answers it, with the rack read back by Java.
    let answered = every_metadata_version(&host, 1).await;
    eprintln!(
        "Metadata versions answered by Kafka {}: {answered:?}",
        host.install.version()
    );
    assert!(
        answered.contains(&4) && answered.contains(&12),
        "{answered:?}"
    );

    broker.check(&spec).await.expect("healthy");
    // Same settings again: no restart, no format.
    let Some(ChildState::Running { pid, .. }) = broker.child_state() else {
        panic!("running")
    };
    broker
        .start(&spec, Deadline::after(START_DEADLINE))
        .await
        .expect("still serving");
    assert!(
        matches!(broker.child_state(), Some(ChildState::Running { pid: same, .. }) if same == pid)
    );

    // Controlled shutdown: Kafka stops by itself on SIGTERM and marks its log dir clean.
    stop_cleanly(&broker, Duration::from_secs(60)).await;
    assert_eq!(broker.child_state(), None);
    assert!(
        host.log_dir().join(CLEAN_SHUTDOWN).exists(),
        "Kafka marked its log dir cleanly shut down"
    );
    assert!(broker.check(&spec).await.is_err(), "not serving after stop");

    // Started again on its own data: not formatted again (same directory id), serving.
    let broker = host.broker();
    broker
        .start(&spec, Deadline::after(START_DEADLINE))
        .await
        .unwrap_or_else(|error| panic!("serving again: {error}"));
    let meta = berth_logdir::read(&host.log_dir()).unwrap().unwrap();
    assert_eq!(
        meta.directory_id.as_deref(),
        Some(directory_id.as_str()),
        "never reformatted"
    );
    stop_cleanly(&broker, Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_dir_with_data_but_no_meta_properties_is_never_formatted() {
    let host = RealHost::kraft();
    let segment = host.log_dir().join("events-0/00000000000000000000.log");
    std::fs::create_dir_all(segment.parent().unwrap()).unwrap();
    std::fs::write(&segment, b"records of a broker").unwrap();
    let broker = host.broker();
    let error = real::refused(&broker, &host.spec(1)).await;
    assert!(
        error.message.contains(&format!(
            "log dir {} holds data (events-0) but no meta.properties",
            host.log_dir().display()
        )),
        "{error}"
    );
    assert!(
        !host.log_dir().join("meta.properties").exists(),
        "not formatted"
    );
    assert_eq!(std::fs::read(&segment).unwrap(), b"records of a broker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_meta_properties_is_refused_with_kafkas_words() {
    let host = RealHost::kraft();
    let theirs = format!(
        "version=1\nnode.id=2\ndirectory.id=nL10qEMsD-0SnRmf7nY11w\ncluster.id={CLUSTER_ID}\n"
    );
    real::foreign_node_is_refused(&host, &theirs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_cluster_id_is_refused_with_kafkas_words() {
    let host = RealHost::kraft();
    host.stamp(
        &host.log_dir(),
        &format!(
            "version=1\nnode.id=1\ndirectory.id=nL10qEMsD-0SnRmf7nY11w\ncluster.id={CLUSTER_ID}\n"
        ),
    );
    host.stamp(
        &host.second_log_dir(),
        "version=1\nnode.id=1\ndirectory.id=AAAAAAAAAAAAAAAAAAAAAQ\ncluster.id=T3RoZXJDbHVzdGVySWRBQQ\n",
    );
    let broker = host.broker();
    let spec = host.spec_with(1, vec![host.log_dir(), host.second_log_dir()]);
    let error = real::refused(&broker, &spec).await;
    assert!(
        error.message.contains("Invalid cluster.id in: ")
            && error.message.contains("but read T3RoZXJDbHVzdGVySWRBQQ"),
        "Kafka's own words: {error}"
    );
}

/// Asks `listeners` about the replication until `done` holds for the view, within `within`: Kafka shrinks
/// and expands ISRs on its own schedule, so the test observes until it has, or gives up.
async fn replication_until(
    listeners: &[Peer],
    what: &str,
    within: Duration,
    done: impl Fn(&ReplicationView) -> bool,
) -> ReplicationView {
    let mut every = tokio::time::interval(Duration::from_millis(200));
    let mut last = None;
    let found = tokio::time::timeout(within, async {
        loop {
            every.tick().await;
            match replication::describe_any(
                &KafkaClient::plaintext(),
                listeners,
                &Question::default(),
                Duration::from_secs(10),
            )
            .await
            {
                Ok(view) if done(&view) => return view,
                Ok(view) => last = Some(format!("{view:?}")),
                Err(errors) => last = Some(format!("{errors:?}")),
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("{what} within {within:?}; last seen: {last:?}"))
}

/// The caught-up gate and the safe drain read a real 3-node Kafka 4.x cluster: a topic with replication
/// factor 3 and `min.insync.replicas=2` (read back through DescribeConfigs). With every node running, every
/// broker is caught up and any one may stop. Node 2 stops: its partitions leave the ISR, so node 2 (were it
/// booting) is behind, and stopping node 0 would leave one in-sync replica, which the drain check calls unsafe;
/// a broker that does not answer is passed over for the next. Node 2 restarts and catches up: both clear.
#[tokio::test(flavor = "multi_thread")]
async fn the_gate_and_the_drain_check_read_under_replication_from_a_real_cluster() {
    let install = Install::kraft().expect("Kafka 4.x installed");
    let nodes = NodeSpec::loopback_trio(31);
    let listeners: Vec<Peer> = nodes
        .iter()
        .map(|node| Peer::new(node.id, SocketAddr::from((node.host, node.port))))
        .collect();
    let bootstrap = nodes[0].bootstrap();
    let cluster = start_with_orders(&install, &nodes, bootstrap).await;
    every_broker_caught_up_and_free_to_stop(&listeners).await;

    // Node 2 stops (controlled shutdown): the controller takes it out of every ISR.
    let cluster = real::on_blocking_thread(cluster, |cluster| {
        cluster.node(2).stop(Duration::from_secs(60));
    })
    .await;
    node_2_behind_and_node_0_unsafe(&listeners).await;

    // Node 2 comes back on its data and catches up: the gate opens and node 0 may stop again.
    let cluster = real::on_blocking_thread(cluster, |cluster| {
        cluster.restart(2).expect("node 2 restarts");
    })
    .await;
    let recovered = replication_until(&listeners, "node 2 caught up", START_DEADLINE, |view| {
        catch_up(view, BrokerId(2)).caught_up()
    })
    .await;
    assert!(matches!(
        stop_safety(&recovered, BrokerId(0)),
        StopSafety::Safe { .. }
    ));
    drop(cluster);
}

/// The 3-node KRaft cluster of `nodes`, started off the runtime, with topic `orders` (3 partitions, replication
/// factor 3, `min.insync.replicas=2`).
async fn start_with_orders(
    install: &Install,
    nodes: &[NodeSpec],
    bootstrap: String,
) -> KafkaCluster {
    tokio::task::spawn_blocking({
        let (install, nodes) = (install.clone(), nodes.to_vec());
        move || {
            let cluster = KafkaCluster::start(
                &install,
                ClusterOptions::new(
                    ClusterMode::Kraft {
                        cluster_id: CLUSTER_ID.into(),
                    },
                    nodes,
                ),
            )
            .expect("3-node KRaft cluster");
            Client::new(&install, bootstrap, Vec::new())
                .create_topic(&TopicSpec {
                    name: "orders".into(),
                    partitions: 3,
                    replication_factor: 3,
                    configs: vec![("min.insync.replicas".into(), "2".into())],
                })
                .expect("topic created");
            cluster
        }
    })
    .await
    .unwrap()
}

/// The partitions of topic `orders` in `view`.
fn orders(view: &ReplicationView) -> Vec<PartitionReplicas> {
    view.partitions
        .iter()
        .filter(|p| p.topic == "orders")
        .cloned()
        .collect()
}

/// With every node running and in sync (`min.insync.replicas` read through DescribeConfigs), every broker is
/// caught up and any one may stop.
async fn every_broker_caught_up_and_free_to_stop(listeners: &[Peer]) {
    let full = replication_until(listeners, "orders fully in sync", START_DEADLINE, |view| {
        let orders = orders(view);
        orders.len() == 3 && orders.iter().all(|p| p.isr.len() == 3)
    })
    .await;
    assert_eq!(
        full.live_brokers,
        [0, 1, 2].map(BrokerId).into_iter().collect()
    );
    assert!(
        orders(&full).iter().all(|p| p.min_insync == 2),
        "min.insync.replicas read through DescribeConfigs: {full:?}"
    );
    for id in 0..3 {
        let progress = catch_up(&full, BrokerId(id));
        assert!(
            progress.caught_up() && progress.hosted >= 3,
            "{id}: {progress}"
        );
        assert!(
            matches!(stop_safety(&full, BrokerId(id)), StopSafety::Safe { .. }),
            "{id} may stop while all three are in sync"
        );
    }
}

/// Node 2 out of every ISR: it is behind (the gate would hold it) and stopping node 0 would leave one replica in
/// sync; a broker that does not answer (node 2, asked first) is passed over for the next.
async fn node_2_behind_and_node_0_unsafe(listeners: &[Peer]) {
    let dead_first = [listeners[2], listeners[0], listeners[1]];
    let degraded = replication_until(
        &dead_first,
        "node 2 out of the ISRs",
        START_DEADLINE,
        |view| orders(view).iter().all(|p| !p.isr.contains(&BrokerId(2))),
    )
    .await;
    assert!(
        !degraded.live_brokers.contains(&BrokerId(2)),
        "{degraded:?}"
    );
    let behind = catch_up(&degraded, BrokerId(2));
    assert!(
        !behind.caught_up()
            && behind
                .behind
                .iter()
                .filter(|p| p.starts_with("orders-"))
                .count()
                == 3,
        "the gate would hold node 2: {behind}"
    );
    let StopSafety::Unsafe { at_risk, .. } = stop_safety(&degraded, BrokerId(0)) else {
        panic!("stopping node 0 with node 2 out of sync leaves one replica in sync");
    };
    assert!(
        ["orders-0: 1/2", "orders-1: 1/2", "orders-2: 1/2"]
            .iter()
            .all(|p| at_risk.iter().any(|r| r == p)),
        "{at_risk:?}"
    );
}
