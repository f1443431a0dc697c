//! The quorum check before a blank controller is formatted, against a real 3-node Kafka 4.x static quorum (one
//! cluster for every assertion; each node on its own loopback address with the same controller port, as ENI
//! addresses are): silence before the cluster exists is a fresh cluster; while every voter runs, the others
//! hold a majority and node 2's blank storage may be formatted, and berth's KafkaBroker does so when node 2 is
//! replaced with a blank volume; once node 1 is stopped and the metadata log moves on without it, node 2's blank
//! storage is refused, naming node 1 as behind, and berth leaves Kafka stopped.

mod common;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use berth_core::ports::{Broker, Deadline};
use berth_core::{BrokerId, ErrorKind};
use berth_kafka::supervisor::ChildState;
use berth_kafka::KafkaBroker;
use common::real::{self, RealHost, START_DEADLINE};
use common::CLUSTER_ID;

use berth_kafka::client::{KafkaClient, Peer};
use berth_kafka::format::StorageState;
use berth_kafka::quorum::{self, Quorum, Role, StorageDecision};
use berth_testkit::kafka::{
    Client, ClusterMode, ClusterOptions, Install, KafkaCluster, NodeSpec, TopicSpec,
};

const ASK: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread")]
async fn a_blank_controller_is_formatted_only_while_the_other_voters_hold_a_majority() {
    let install = Install::kraft().expect("Kafka 4.x installed");
    let nodes = NodeSpec::loopback_trio(11);
    let controller_port = nodes[0].controller_port;
    let controllers: Vec<Peer> = nodes
        .iter()
        .map(|node| Peer::new(node.id, SocketAddr::from((node.host, controller_port))))
        .collect();
    let blank = StorageState::Blank;

    // Nothing answers yet: a fresh cluster.
    let silent = quorum::observe(&KafkaClient::plaintext(), &controllers, ASK).await;
    assert_eq!(silent, Quorum::Silent);
    assert!(matches!(
        quorum::decide(&blank, 2, Role::StaticController, &silent),
        StorageDecision::Format(_, _)
    ));

    let cluster = start_trio(&install, &nodes).await;
    a_running_quorum_lets_a_blank_node_2_format(&controllers).await;

    // Node 2's host is replaced and its volume comes back blank: berth (node 2's KafkaBroker, the ENI address
    // and ports of node 2) asks the quorum, 0 and 1 are current, so it formats and Kafka joins as voter 2.
    let cluster = real::on_blocking_thread(cluster, |cluster| {
        cluster.node(2).stop(Duration::from_secs(30));
    })
    .await;
    let voters: BTreeMap<BrokerId, Ipv4Addr> = nodes
        .iter()
        .map(|node| (BrokerId(node.id), node.host))
        .collect();
    let host = RealHost::kraft_member(2, voters, controller_port, nodes[2].port);
    let broker = host.broker();
    let spec = host.spec(2);
    broker
        .start(&spec, Deadline::after(START_DEADLINE))
        .await
        .expect("a blank controller formatted while 0 and 1 hold the metadata, and serving");
    let meta = std::fs::read_to_string(host.log_dir().join("meta.properties")).unwrap();
    assert!(
        meta.contains("node.id=2") && meta.contains(CLUSTER_ID),
        "{meta}"
    );

    // Node 1 stops; a topic is created by 0 and the new 2, so the committed metadata moves past node 1's log end.
    let bootstrap = nodes[0].bootstrap();
    let cluster = real::on_blocking_thread(cluster, move |cluster| {
        cluster.node(1).stop(Duration::from_secs(30));
        Client::new(&install, bootstrap, Vec::new())
            .create_topic(&TopicSpec {
                name: "after-node-1".into(),
                partitions: 1,
                replication_factor: 2,
                configs: Vec::new(),
            })
            .expect("create a topic with two of three nodes");
    })
    .await;
    let described = quorum::observe(&KafkaClient::plaintext(), &controllers, ASK).await;
    let decision = quorum::decide(&blank, 2, Role::StaticController, &described);
    let StorageDecision::Refuse(why) = &decision else {
        panic!("node 2 blank with node 1 behind must be refused: {described:?} {decision:?}");
    };
    assert!(why.contains("behind [1 (log end"), "{why}");

    a_blank_node_2_is_refused(&broker, &host).await;
    drop(cluster);
}

/// The 3-node KRaft cluster of `nodes` (a static quorum), started off the runtime.
async fn start_trio(install: &Install, nodes: &[NodeSpec]) -> KafkaCluster {
    tokio::task::spawn_blocking({
        let (install, nodes) = (install.clone(), nodes.to_vec());
        move || {
            KafkaCluster::start(
                &install,
                ClusterOptions::new(
                    ClusterMode::Kraft {
                        cluster_id: CLUSTER_ID.into(),
                    },
                    nodes,
                ),
            )
        }
    })
    .await
    .unwrap()
    .expect("3-node KRaft cluster")
}

/// Every voter runs: only the leader describes the quorum (followers refuse); observe finds it, and the others
/// hold a majority, so node 2's blank storage may be formatted.
async fn a_running_quorum_lets_a_blank_node_2_format(controllers: &[Peer]) {
    let blank = StorageState::Blank;
    let described = quorum::observe(&KafkaClient::plaintext(), controllers, ASK).await;
    let Quorum::Described(view) = &described else {
        panic!("a running quorum is described: {described:?}");
    };
    assert!(view.leader_id >= 0, "{view:?}");
    let mut ids: Vec<i32> = view.voters.iter().map(|v| v.id).collect();
    ids.sort();
    assert_eq!(ids, [0, 1, 2], "{view:?}");
    let decision = quorum::decide(&blank, 2, Role::StaticController, &described);
    assert!(
        matches!(decision, StorageDecision::Format(_, _)),
        "{decision:?}"
    );
}

/// Node 2 is lost again and comes back blank while node 1 is behind: berth refuses to format it, Kafka stays
/// stopped, and the error says why (retryable: the start is tried again until the state's deadline).
async fn a_blank_node_2_is_refused(broker: &KafkaBroker, host: &RealHost) {
    let spec = host.spec(2);
    broker
        .stop(Deadline::after(Duration::from_secs(60)))
        .await
        .unwrap();
    std::fs::remove_dir_all(host.log_dir()).unwrap();
    let error = broker
        .start(&spec, Deadline::after(Duration::from_secs(30)))
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Retryable, "{error}");
    assert!(
        error.message.contains("blank KRaft storage not formatted"),
        "{error}"
    );
    assert!(!host.log_dir().join("meta.properties").exists());
    assert!(!matches!(
        broker.child_state(),
        Some(ChildState::Running { .. })
    ));
}

/// A dynamic quorum (KIP-853) formed and joined by berth on Kafka 4.x: node 0 (the lowest controller id) finds
/// no controller and formats `--standalone`; node 1 finds 0 leading, formats `--no-initial-controllers`, and
/// Kafka's auto-join (4.2+) makes it a voter with the directory id its format wrote.
#[tokio::test(flavor = "multi_thread")]
async fn a_dynamic_quorum_is_formed_by_the_first_controller_and_joined_by_the_next() {
    let controller_port = berth_testkit::free_port();
    let controllers: BTreeMap<BrokerId, Ipv4Addr> = (0..2u8)
        .map(|id| (BrokerId(id.into()), Ipv4Addr::new(127, 0, 0, 21 + id)))
        .collect();
    let hosts: Vec<RealHost> = (0..2)
        .map(|id| {
            RealHost::kraft_dynamic_member(
                id,
                controllers.clone(),
                controller_port,
                berth_testkit::free_port(),
            )
        })
        .collect();
    let brokers: Vec<_> = hosts.iter().map(RealHost::broker).collect();
    for (id, (host, broker)) in hosts.iter().zip(&brokers).enumerate() {
        broker
            .start(&host.spec(id as u32), Deadline::after(START_DEADLINE))
            .await
            .unwrap_or_else(|error| panic!("node {id}: {error}"));
    }
    let addresses: Vec<Peer> = controllers
        .iter()
        .map(|(id, ip)| Peer::new(id.0, SocketAddr::from((*ip, controller_port))))
        .collect();
    let meta = std::fs::read_to_string(hosts[1].log_dir().join("meta.properties")).unwrap();
    let directory_id = meta
        .lines()
        .find_map(|line| line.strip_prefix("directory.id="))
        .expect("a directory id")
        .to_owned();
    // Auto-join is Kafka's own, asynchronous step: look until the voter set shows node 1, or give up.
    let mut every = tokio::time::interval(Duration::from_millis(500));
    let joined = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            every.tick().await;
            if let Quorum::Described(view) =
                quorum::observe(&KafkaClient::plaintext(), &addresses, ASK).await
            {
                if view.voters.iter().any(|v| v.id == 1) {
                    return view;
                }
            }
        }
    })
    .await
    .expect("node 1 auto-joined the voter set");
    let voter = joined.voters.iter().find(|v| v.id == 1).unwrap();
    assert_eq!(
        voter.directory_id, directory_id,
        "node 1 is a voter with the directory id its format wrote: {joined:?}"
    );
    assert_eq!(joined.voters.len(), 2, "{joined:?}");
    for broker in &brokers {
        broker
            .stop(Deadline::after(Duration::from_secs(60)))
            .await
            .unwrap();
    }
}
