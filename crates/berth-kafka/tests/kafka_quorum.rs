//! The birth rule and the majority check before a blank controller is formatted, against real Kafka 4.x
//! quorums formed by berth's own `KafkaBroker`s (one cluster per test; each node on its own loopback address
//! with the same client and controller ports, as ENI addresses are). The birth record is a test double of the port
//! (`common::RecordedBirths`; its EC2 implementation is tested against strict moto in berth-aws).
//!
//! Static quorum of three, in one sequence: a staggered birth (node 1 formats while node 0 is a lone voter
//! without a leader, on the birth rule, not on silence), the birth marks written once the quorum commits, node 2
//! joining a born cluster on the majority; node 2 replaced blank while 0 and 1 run (majority, formatted); node 1
//! behind (refused, naming it); the other two down (refused: born, and nobody describes the quorum); the two
//! back (formatted on the majority). Dynamic quorum: formed by the first controller, joined by the next, and a
//! joiner that is not a voter (auto-join off) reported with the command that fixes it, which does.

mod common;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use berth_core::birth::{self, BirthRecord};
use berth_core::ports::{Broker, Deadline, StepError};
use berth_core::{BrokerId, ErrorKind, ServingEvidence};
use berth_kafka::client::{KafkaClient, Peer};
use berth_kafka::format::StorageState;
use berth_kafka::format_rule::{self, Role, StorageDecision};
use berth_kafka::quorum::{self, Quorum};
use berth_kafka::supervisor::ChildState;
use berth_kafka::KafkaBroker;
use common::real::{RealHost, START_DEADLINE};
use common::{RecordedBirths, CLUSTER_ID};

use berth_testkit::kafka::{Client, Install, NodeSpec, TopicSpec};

const ASK: Duration = Duration::from_secs(5);

/// One node of a berth-managed cluster: its host and berth's adapter for it.
struct Node {
    host: RealHost,
    broker: Arc<KafkaBroker>,
}

impl Node {
    async fn start(&self, id: u32, deadline: Duration) -> Result<ServingEvidence, StepError> {
        self.broker
            .start(&self.host.spec(id), Deadline::after(deadline))
            .await
    }

    async fn stop(&self) {
        self.broker
            .stop(Deadline::after(Duration::from_secs(60)))
            .await
            .expect("a clean stop");
    }

    /// The host's volume is lost: a blank one replaces it (no files, no birth mark).
    async fn lose_volume(&self, id: u32, births: &RecordedBirths) {
        self.stop().await;
        std::fs::remove_dir_all(self.host.log_dir()).unwrap();
        births.replace_volume(id);
    }
}

/// Polls (500 ms) until `check` is true of what the controllers say, or panics naming `what` after `within`.
async fn until(
    controllers: &[Peer],
    within: Duration,
    what: &str,
    check: impl Fn(&Quorum) -> bool,
) -> Quorum {
    let mut every = tokio::time::interval(Duration::from_millis(500));
    tokio::time::timeout(within, async {
        loop {
            every.tick().await;
            let seen = quorum::observe(&KafkaClient::plaintext(), controllers, ASK).await;
            if check(&seen) {
                return seen;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} within {within:?}"))
}

/// Asserts the serving evidence says each of `words`.
fn says(evidence: &ServingEvidence, words: &[&str]) {
    for word in words {
        assert!(
            evidence.detail.contains(word),
            "no {word:?} in: {}",
            evidence.detail
        );
    }
}

fn refusal(result: Result<ServingEvidence, StepError>) -> String {
    let error = result.expect_err("refused");
    assert_eq!(error.kind, ErrorKind::Retryable, "{error}");
    assert!(
        error.message.contains("blank KRaft storage not formatted"),
        "{error}"
    );
    error.message
}

/// A static trio of berth-managed nodes on loopback addresses, sharing one birth record.
struct Trio {
    specs: Vec<NodeSpec>,
    controllers: Vec<Peer>,
    births: Arc<RecordedBirths>,
    nodes: Vec<Node>,
}

impl Trio {
    fn new() -> Self {
        let specs = NodeSpec::loopback_trio(11);
        let controller_port = specs[0].controller_port;
        let controllers: Vec<Peer> = specs
            .iter()
            .map(|node| Peer::new(node.id, SocketAddr::from((node.host, controller_port))))
            .collect();
        let voters: BTreeMap<BrokerId, Ipv4Addr> = specs
            .iter()
            .map(|node| (BrokerId(node.id), node.host))
            .collect();
        let births = Arc::new(RecordedBirths::new(0..3));
        let nodes: Vec<Node> = specs
            .iter()
            .map(|spec| {
                let host =
                    RealHost::kraft_member(spec.id, voters.clone(), controller_port, spec.port);
                let broker = Arc::new(host.broker_with(births.clone()));
                Node { host, broker }
            })
            .collect();
        Self {
            specs,
            controllers,
            births,
            nodes,
        }
    }

    /// What the birth rule and the majority check decide for a blank node 2 now.
    async fn decision_for_a_blank_node_2(&self) -> StorageDecision {
        let evidence = self
            .births
            .read(&(0..3).map(BrokerId).collect())
            .await
            .unwrap();
        format_rule::decide(
            &StorageState::Blank,
            2,
            Role::StaticController,
            &birth::judge(&evidence),
            &quorum::observe(&KafkaClient::plaintext(), &self.controllers, ASK).await,
        )
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_is_born_on_evidence_and_a_blank_controller_joins_only_a_majority() {
    let install = Install::kraft().expect("Kafka 4.x installed");
    let trio = Trio::new();
    a_staggered_birth_is_decided_by_the_birth_rule(&trio).await;
    a_blank_controller_joins_a_born_cluster_on_the_majority(&trio).await;
    a_blank_controller_beside_a_behind_or_absent_majority_is_refused(&trio, &install).await;

    // The two come back on their own volumes (formatted: never formatted again), and then node 2 joins them.
    let nodes = &trio.nodes;
    let (zero, one) = tokio::join!(
        nodes[0].start(0, START_DEADLINE),
        nodes[1].start(1, START_DEADLINE)
    );
    zero.expect("node 0 back");
    one.expect("node 1 back");
    let rejoined = nodes[2]
        .start(2, START_DEADLINE)
        .await
        .expect("node 2 rejoins");
    says(&rejoined, &["formatted on the majority rule"]);
    for node in nodes {
        node.stop().await;
    }
}

/// Node 0 formats (nothing is marked, nobody leads) and starts alone: a lone voter of three elects no leader
/// and answers DescribeQuorum with NOT_LEADER_OR_FOLLOWER. Node 1 boots later and sees that answer, which used
/// to be a refusal; no volume carries the birth mark, so it is the cluster's birth and node 1 formats on that
/// evidence. Once the quorum has committed, each marks its own volume.
async fn a_staggered_birth_is_decided_by_the_birth_rule(trio: &Trio) {
    let (nodes, specs) = (&trio.nodes, &trio.specs);
    let first = tokio::spawn({
        let (broker, spec) = (nodes[0].broker.clone(), nodes[0].host.spec(0));
        async move { broker.start(&spec, Deadline::after(START_DEADLINE)).await }
    });
    until(
        &trio.controllers[..1],
        START_DEADLINE,
        "node 0 answers as a lone voter",
        |seen| matches!(seen, Quorum::Undescribed(why) if why.contains("error 6")),
    )
    .await;
    let second = nodes[1]
        .start(1, START_DEADLINE)
        .await
        .expect("node 1 formatted on the birth rule, and serving");
    says(
        &second,
        &[
            "formatted on the birth rule",
            "no controller volume carries berth:kraft-born",
            "error 6",
        ],
    );
    let first = first
        .await
        .unwrap()
        .expect("node 0 serving once node 1 joined");
    says(&first, &["formatted on the birth rule"]);
    // Node 0 perhaps marks at its next health check.
    nodes[0].broker.check(&nodes[0].host.spec(0)).await.unwrap();
    let marks = trio.births.marks();
    let port = specs[0].controller_port;
    let born = format!(
        "cluster={CLUSTER_ID} voters=0@{}:{port},1@{}:{port},2@{}:{port}",
        specs[0].host, specs[1].host, specs[2].host
    );
    assert_eq!(marks.get(&0), Some(&born), "{marks:?}");
    assert_eq!(marks.get(&1), Some(&born), "{marks:?}");
}

/// Node 2 boots into a born cluster: the majority decides, and it holds; its volume lost while 0 and 1 run,
/// the others are current, so it is formatted again and rejoins.
async fn a_blank_controller_joins_a_born_cluster_on_the_majority(trio: &Trio) {
    let nodes = &trio.nodes;
    let third = nodes[2]
        .start(2, START_DEADLINE)
        .await
        .expect("node 2 serving");
    says(&third, &["formatted on the majority rule"]);
    says(&third, &["quorum: a voter"]);
    until(&trio.controllers, START_DEADLINE, "three voters at the high watermark", |seen| {
        matches!(seen, Quorum::Described(view) if (0..3).all(|id| quorum::at_high_watermark(view, id, "", false).is_ok()))
    })
    .await;
    nodes[2].lose_volume(2, &trio.births).await;
    let replaced = nodes[2]
        .start(2, START_DEADLINE)
        .await
        .expect("node 2 back");
    says(&replaced, &["formatted on the majority rule"]);
}

/// Node 1 stops and a topic is created by 0 and 2, so the committed metadata moves past node 1's log end: a
/// blank node 2 would have one current voter of three, and is refused (Kafka left stopped). Node 0 goes down
/// too: node 2, blank, is alone with the marks of 0 and 1, and silence is not a birth.
async fn a_blank_controller_beside_a_behind_or_absent_majority_is_refused(
    trio: &Trio,
    install: &Install,
) {
    let nodes = &trio.nodes;
    nodes[1].stop().await;
    let (install, bootstrap) = (install.clone(), trio.specs[0].bootstrap());
    tokio::task::spawn_blocking(move || {
        Client::new(&install, bootstrap, Vec::new())
            .create_topic(&TopicSpec {
                name: "after-node-1".into(),
                partitions: 1,
                replication_factor: 2,
                configs: Vec::new(),
            })
            .expect("create a topic with two of three nodes")
    })
    .await
    .unwrap();
    let decision = trio.decision_for_a_blank_node_2().await;
    assert!(
        matches!(&decision, StorageDecision::Refuse(why) if why.contains("not current [1 (")),
        "{decision:?}"
    );
    nodes[2].lose_volume(2, &trio.births).await;
    refusal(nodes[2].start(2, Duration::from_secs(60)).await);
    assert!(!nodes[2].host.log_dir().join("meta.properties").exists());
    assert!(!matches!(
        nodes[2].broker.child_state(),
        Some(ChildState::Running { .. })
    ));

    nodes[0].stop().await;
    let why = refusal(nodes[2].start(2, Duration::from_secs(60)).await);
    assert!(
        why.contains(
            "the cluster was born (born: vol-0 (controller 0), vol-1 (controller 1) carry"
        ) && why.contains("no other controller accepts a connection"),
        "{why}"
    );
    assert!(!nodes[2].host.log_dir().join("meta.properties").exists());
}

/// The `kafka-metadata-quorum` command the evidence names as the fix.
fn fix_in(evidence: &ServingEvidence) -> &str {
    evidence
        .detail
        .split("fix: ")
        .nth(1)
        .and_then(|rest| rest.split(" (or set").next())
        .expect("the fix in the evidence")
}

/// Runs `fix` as printed on `host` (its merged settings as the command config, our launcher for the script).
async fn run_as_printed(host: &RealHost, fix: &str) {
    let merged = host.dir.path().join("run/server.properties");
    let mut command = host.install.command("quorum");
    command.extend(
        fix.replacen("kafka-metadata-quorum.sh ", "", 1)
            .replace(
                "<this node's server.properties>",
                &merged.display().to_string(),
            )
            .split(' ')
            .map(str::to_owned),
    );
    let output = tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{command:?}: {output:?}");
}

/// The directory id the format wrote into `host`'s log dir.
fn directory_id_of(host: &RealHost) -> String {
    let meta = std::fs::read_to_string(host.log_dir().join("meta.properties")).unwrap();
    meta.lines()
        .find_map(|line| line.strip_prefix("directory.id="))
        .expect("a directory id")
        .to_owned()
}

/// A dynamic quorum (KIP-853) formed and joined by berth on Kafka 4.x: node 0 (the lowest controller id) finds
/// nothing marked and no controller, and formats `--standalone`; node 1 finds 0 leading and formats
/// `--no-initial-controllers`. With auto-join off it stays an observer: berth reports it with the
/// `kafka-metadata-quorum` command that fixes it, and that command (run as printed, with our launcher in place
/// of the script) makes it a voter with the directory id its format wrote.
#[tokio::test(flavor = "multi_thread")]
async fn a_dynamic_quorum_is_formed_by_the_first_controller_and_a_joiner_is_confirmed_a_voter() {
    // One client port and one controller port on every node's own address, as ENI addresses are.
    let (port, controller_port) = (berth_testkit::free_port(), berth_testkit::free_port());
    let controllers: BTreeMap<BrokerId, Ipv4Addr> = (0..2u8)
        .map(|id| (BrokerId(id.into()), Ipv4Addr::new(127, 0, 0, 21 + id)))
        .collect();
    let births = Arc::new(RecordedBirths::new(0..2));
    let hosts: Vec<RealHost> = (0..2)
        .map(|id| {
            let mut host =
                RealHost::kraft_dynamic_member(id, controllers.clone(), controller_port, port);
            host.auto_join = false;
            host
        })
        .collect();
    for host in &hosts {
        host.write_server_properties();
    }
    let brokers: Vec<_> = hosts
        .iter()
        .map(|host| host.broker_with(births.clone()))
        .collect();
    let formed = brokers[0]
        .start(&hosts[0].spec(0), Deadline::after(START_DEADLINE))
        .await
        .expect("node 0 forms the quorum");
    says(&formed, &["formatted on the birth rule"]);
    says(&formed, &["quorum: a voter"]);
    let joined = brokers[1]
        .start(&hosts[1].spec(1), Deadline::after(START_DEADLINE))
        .await
        .expect("node 1 joins");
    says(&joined, &["formatted on the majority rule"]);
    // Auto-join is off: node 1 is an observer, and berth says so with the fix.
    says(&joined, &["NOT a voter", "add-controller"]);
    let fix = fix_in(&joined);
    let leader = format!("{}:{controller_port}", controllers[&BrokerId(0)]);
    assert_eq!(
        fix,
        format!(
            "kafka-metadata-quorum.sh --bootstrap-controller {leader} --command-config <this node's \
             server.properties> add-controller"
        )
    );
    run_as_printed(&hosts[1], fix).await;
    let directory_id = directory_id_of(&hosts[1]);
    let addresses: Vec<Peer> = controllers
        .iter()
        .map(|(id, ip)| Peer::new(id.0, SocketAddr::from((*ip, controller_port))))
        .collect();
    let seen = until(
        &addresses,
        Duration::from_secs(60),
        "node 1 a voter",
        |seen| matches!(seen, Quorum::Described(view) if view.voters.iter().any(|v| v.id == 1)),
    )
    .await;
    let Quorum::Described(view) = seen else {
        unreachable!()
    };
    assert_eq!(
        quorum::membership(&view, 1, &directory_id, true),
        quorum::Membership::Voter,
        "node 1 is a voter with the directory id its format wrote: {view:?}"
    );
    assert_eq!(view.voters.len(), 2, "{view:?}");
    for broker in &brokers {
        broker
            .stop(Deadline::after(Duration::from_secs(60)))
            .await
            .unwrap();
    }
}
