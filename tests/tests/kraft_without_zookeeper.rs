//! A KRaft fleet with no ZooKeeper process anywhere: Apache Kafka 4.x, three combined broker+controller nodes
//! launched by the simulated Auto Scaling group, `claim.backend = "ec2"` (the ENI attachment is the claim).
//! One fleet through the whole test, deployed from the shipped CloudFormation template, unchanged, on its default
//! parameters (KRaft):
//!
//! * the stack is created as CloudFormation creates it: the template's security groups, ENIs, volumes and
//!   launch template in moto, then its Auto Scaling groups in `DependsOn` order, each CREATE_COMPLETE once its
//!   instance is InService (the last once its broker's berth signalled), the first instances not held by a
//!   launch hook and every later launch held; each host boots the launch template's user data, run by the
//!   cloud-init stand-in, and its berth is configured by what that wrote;
//!
//! * the fleet boots under the security groups of a copy of the shipped template without its controller rule
//!   (`BrokerToBrokerController`): the controllers start and keep trying to reach each other on the controller
//!   port, the packet filter refuses those connections (counted on that port), every controller answers
//!   DescribeQuorum with NOT_LEADER_OR_FOLLOWER (no quorum), and no host is Healthy. The shipped template's
//!   groups are then enforced live, and the quorum forms and the fleet boots: the rule was the difference;
//! * after the boot, nothing in the fleet runs ZooKeeper or listens on its port, and no host's configuration
//!   names it; the claims are read from EC2 alone;
//! * one node's host killed as power loss in the middle of a produce load (kcat, acks=all and idempotence, its
//!   delivery reports read; the kill once 400 records are acknowledged, the load running on through the death
//!   and the replacement): its volume loses what was still in its page cache (asserted non-empty). The group's
//!   replacement becomes the same broker (id, ENI address, volume), the quorum is whole again (three voters,
//!   all caught up, read with DescribeQuorum), every record the load had acknowledged is read back at the
//!   partition and offset Kafka acknowledged, no record is read twice (idempotence; unacknowledged records may
//!   or may not be there), and every record of the produces before and after the kill is consumed exactly once.
//!   The replacement's fetches are refused until systemd's StatusText for berth.service has said
//!   `start_kafka broker 0: catching up: N of M hosted partitions not yet in sync: ...` (the catch-up, observed
//!   as an operator sees it on a real systemd host);
//! * two nodes killed in a row, the second before the first's replacement is Healthy, and the first one's
//!   volume comes back blank (a lost EBS volume replaced by an empty one for the same id): the blank controller
//!   is formatted only once the other two voters hold everything committed, so its Kafka starts after the
//!   other replacement's (the quorum rule of `berth_kafka::quorum`), while the other replacement, whose metadata
//!   log is intact, rejoins at once. Both become their brokers again, the quorum is whole, every record is
//!   consumed exactly once;
//! * every node's host killed at once and broker 0's volume coming back blank, while the other two zones have
//!   no capacity (their replacements cannot launch): broker 0's replacement does **not** format (the cluster
//!   was born and nobody describes its quorum), its log dir keeps no `meta.properties`, its Kafka never starts,
//!   and `/state` and the journal say why and what it waits for, on every retry. Once the other two return
//!   (with their volumes) it is formatted on the majority and the quorum is whole again, with every record
//!   acknowledged before the deaths (synced: `flush.messages=1`) read back exactly once. Its berth is killed
//!   (SIGKILL) while the storage tool runs (the tool's JVM seen in its unit and frozen there, the log dir
//!   still without `meta.properties`): the berth systemd restarts stops the leftover unit, formats again and
//!   serves. When Kafka's recovery leaves partitions without a leader, broker 0 their last known leader, berth
//!   does not start Kafka on the blank broker (it would lead an empty log the others truncate to) and names
//!   them, each one Kafka reports unavailable; the runbook's remedy is taken, then it serves;
//! * a stack update to a new launch template version rolls the brokers one group at a time under a produce
//!   load that loses and fails nothing; an update to a version whose configuration berth refuses (exit 78) is
//!   rolled back on its FAILURE signal, and every broker runs the previous version again, Healthy.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use berth_config::ClaimBackend;
use berth_kafka::client::{KafkaClient, Peer};
use berth_kafka::quorum::{self, Quorum, QuorumView};
use berth_sim::asg;
use berth_sim::kafka::{self as fleet_kafka, blocking};
use berth_sim::stack_update::{self, Updated};
use berth_sim::{layout, security_groups, systemd_host, Fleet, FleetOptions, SimKafka, StateView};
use berth_testkit::aws::autoscaling::LifecycleState;
use berth_testkit::aws::cloudformation::Status;
use berth_testkit::aws::template;
use berth_testkit::kafka::{Client, SteadyProducer, READ_BACK_FORMAT};

const BOOT: Duration = Duration::from_secs(180);
const TOPIC: &str = "kraft-e2e";
/// Records produced after the boot, again just before a node's death, and again while it is away.
const BATCH: u32 = 2_000;
/// The topic of the produce load that runs through broker 0's death, its rate, how many of its records are
/// acknowledged before the kill, and how long a record of it may wait for its acknowledgement.
const LOAD_TOPIC: &str = "kraft-e2e-load";
const LOAD_PER_SECOND: u32 = 200;
const LOAD_BEFORE_KILL: u32 = 400;
const LOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// ZooKeeper's client port, the one a ZooKeeper anywhere in the fleet would listen on.
const ZOOKEEPER_PORT: u16 = 2181;
/// A topic whose records Kafka syncs before acknowledging them (`flush.messages=1`): a power loss of every
/// replica keeps them. (Kafka does not sync by default and relies on replication: records only in the page
/// cache of every replica at once may be lost, and that is not berth's to prevent.)
const DURABLE: &str = "kraft-e2e-durable";
/// The storage tool's main class, as its JVM's command line names it.
const STORAGE_TOOL: &str = "kafka.tools.StorageTool";
/// The transient unit the storage tool runs in (`kafka.format_command`'s default).
const FORMAT_UNIT: &str = "berth-kafka-format.service";
/// The fleet's log dir (also the metadata log's) inside a host.
const LOG_DIR: &str = "/var/lib/kafka/data";
/// What berth's `/state` says when it refuses to format blank KRaft storage, and to start a blank broker.
const FORMAT_REFUSED: &str = "blank KRaft storage not formatted";
const BLANK_START_REFUSED: &str = "blank broker not started";
/// Kafka's eligible leader replicas feature (KIP-966), on by default from 4.0.
const ELR: &str = "eligible.leader.replicas.version";

#[test]
fn kraft_fleet_without_zookeeper_replaces_one_then_two_nodes() {
    if !berth_testkit::require_root("kraft_fleet_without_zookeeper_replaces_one_then_two_nodes") {
        return;
    }
    let copy = tempfile::tempdir().expect("a directory for the template's copy");
    let options = FleetOptions {
        kafka: SimKafka::Kraft,
        claim_backend: ClaimBackend::Ec2,
        security_groups: Some(without_controller_rule(copy.path()).expect("the template's copy")),
        stack: Some(template::shipped()),
        ..FleetOptions::default()
    };
    asg::with_group(options, |fleet| async move { scenario(&fleet).await })
        .expect("KRaft fleet without ZooKeeper");
}

async fn scenario(fleet: &Fleet) -> anyhow::Result<()> {
    let started = Instant::now();
    no_quorum_without_the_controller_rule(fleet).await?;
    let enforced = Instant::now();
    let booted = boot(fleet).await?;
    println!(
        "every host Healthy and in service {:.1}s after the shipped groups were enforced",
        enforced.elapsed().as_secs_f64()
    );
    assert_stack_created(fleet, &booted).await?;
    assert_no_zookeeper(fleet)?;
    assert_claims_in_ec2(fleet, &booted).await?;
    let install = fleet.kafka().context("Apache Kafka installed")?.clone();
    let client = fleet_kafka::client(fleet, &install);
    blocking(|| client.create_topic(&fleet_kafka::replicated_topic(TOPIC)))?;
    blocking(|| client.produce_range(TOPIC, 0..BATCH, 0))?;
    let view = quorum_whole(fleet).await?;
    assert_security_group_enforced(fleet)?;
    println!(
        "booted in {:.1}s, no ZooKeeper; quorum leader {} epoch {}",
        started.elapsed().as_secs_f64(),
        view.leader_id,
        view.leader_epoch
    );
    replace_one(fleet, &client, &booted).await?;
    replace_two_one_blank(fleet, &client, &booted).await?;
    blank_while_the_others_are_down(fleet, &client, &booted).await?;
    assert_later_launches_held(fleet)?;
    stack_update_rolls_one_group_at_a_time(fleet, &client).await?;
    failed_stack_update_rolls_back(fleet, &client).await?;
    assert_no_zookeeper(fleet)?;
    println!("total {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The template's rule opening the controller port between the brokers.
const CONTROLLER_RULE: &str = "BrokerToBrokerController";
/// Kafka's NOT_LEADER_OR_FOLLOWER: a controller's answer to DescribeQuorum when it does not lead.
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
/// Connections to the controller port refused once every controller listens: the controllers kept trying to
/// reach each other (each of the three asks the other two), and were refused.
const REFUSED_WHILE_LISTENING: u64 = 6;

/// A copy of the shipped template without [`CONTROLLER_RULE`], written in `dir`.
fn without_controller_rule(dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let text = std::fs::read_to_string(template::shipped())?;
    let path = dir.join("berth-cluster-without-controller-rule.yaml");
    std::fs::write(
        &path,
        template::without_resources(&text, &[CONTROLLER_RULE])?,
    )?;
    Ok(path)
}

/// Under the copy without [`CONTROLLER_RULE`] no quorum forms: once every controller listens (answers
/// DescribeQuorum, each with NOT_LEADER_OR_FOLLOWER), the filter refuses at least
/// [`REFUSED_WHILE_LISTENING`] more connections to the controller port, after which every controller still
/// leads nothing and no host is Healthy. Then the shipped template's groups are enforced live (the boot that
/// follows shows the quorum forming).
async fn no_quorum_without_the_controller_rule(fleet: &Fleet) -> anyhow::Result<()> {
    let started = Instant::now();
    let zones = fleet.options().zones;
    let rules =
        security_groups::template_rules(&template::shipped(), &fleet.options().cluster, zones)?;
    let group = rules
        .first()
        .context("the template's ingress rules")?
        .group
        .clone();
    let refused = || {
        fleet
            .region()
            .refused_on_port(&group, layout::KAFKA_CONTROLLER_PORT)
    };
    while !every_controller_leads_nothing(fleet).await? {
        ensure!(
            started.elapsed() < BOOT,
            "the controllers never all listened"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (listening, listened_at) = (refused(), Instant::now());
    while refused() < listening + REFUSED_WHILE_LISTENING {
        ensure!(
            started.elapsed() < BOOT,
            "controller-port connections refused: {} once every controller listened, {} now: the controllers \
             stopped trying",
            listening,
            refused()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ensure!(
        every_controller_leads_nothing(fleet).await?,
        "a controller stopped answering"
    );
    for host in fleet.hosts() {
        let state = fleet.state(host.index).await?;
        ensure!(
            !state.state.eq_ignore_ascii_case("healthy"),
            "host {} Healthy without a quorum",
            host.index
        );
    }
    println!(
        "no quorum without {CONTROLLER_RULE}: {} controller-port connections refused; every controller \
         listened {:.1}s into the boot, and led nothing {:.1}s later",
        refused(),
        (listened_at - started).as_secs_f64(),
        listened_at.elapsed().as_secs_f64()
    );
    fleet.enforce_security_groups(&template::shipped())?;
    Ok(())
}

/// Asks every controller DescribeQuorum: true when each answered NOT_LEADER_OR_FOLLOWER, false when one did not
/// answer (not listening yet); an error when one described a quorum (it formed without the controller rule:
/// the filter is not real) or refused otherwise.
async fn every_controller_leads_nothing(fleet: &Fleet) -> anyhow::Result<bool> {
    let client = KafkaClient::plaintext();
    for (id, address) in fleet_kafka::controller_listeners(fleet) {
        let asked = quorum::describe(&client, Peer::new(id, address), Duration::from_secs(3)).await;
        match asked {
            Err(quorum::QuorumError::Refused { code, .. }) if code == NOT_LEADER_OR_FOLLOWER => {}
            Err(quorum::QuorumError::Unreachable(_)) => return Ok(false),
            Ok(view) => anyhow::bail!(
                "controller {id} describes a quorum without {CONTROLLER_RULE}: leader {} epoch {}",
                view.leader_id,
                view.leader_epoch
            ),
            Err(other) => anyhow::bail!("controller {id}: {other}"),
        }
    }
    Ok(true)
}

/// The quorum formed under the shipped template's security group, which is enforced: a connection to a
/// broker's ENI on a port no rule opens is dropped, and the drop counted.
fn assert_security_group_enforced(fleet: &Fleet) -> anyhow::Result<()> {
    let zones = fleet.options().zones;
    let rules =
        security_groups::template_rules(&template::shipped(), &fleet.options().cluster, zones)?;
    let group = &rules.first().context("the template's ingress rules")?.group;
    let closed = (1024..u16::MAX)
        .find(|p| {
            !rules.iter().any(|r| (r.from_port..=r.to_port).contains(p)) && *p != layout::STATE_PORT
        })
        .context("a port no rule opens")?;
    let refused = fleet.region().refused_by_security_group(group);
    let address = std::net::SocketAddr::from((layout::eni_ip(0, zones), closed));
    let connected = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(1));
    ensure!(connected.is_err(), "{address} is opened by no rule");
    ensure!(
        fleet.region().refused_by_security_group(group) > refused,
        "no drop counted for {address}"
    );
    Ok(())
}

/// One node killed as power loss in the middle of a produce load (acknowledged records still in its page cache,
/// lost from its volume): the group's replacement is the same broker, the quorum whole, every acknowledged record
/// there. The replacement's fetches from the other brokers are refused until systemd's status line has said that
/// berth waits for its catch-up (see [`replacement_held`]).
async fn replace_one(fleet: &Fleet, client: &Client, booted: &Booted) -> anyhow::Result<()> {
    let victim = host_of_broker(booted, 0)?;
    blocking(|| client.create_topic(&fleet_kafka::replicated_topic(LOAD_TOPIC)))?;
    let load = blocking(|| client.steady_producer(LOAD_TOPIC, LOAD_PER_SECOND, LOAD_TIMEOUT))?;
    blocking(|| client.produce_range(TOPIC, BATCH..2 * BATCH, 0))?;
    let before_kill = acknowledged_at_least(&load, LOAD_BEFORE_KILL).await?;
    let killed = Instant::now();
    fleet.kill_host(victim, None).await?;
    let lost = fleet.lost_at_death(victim).unwrap_or_default();
    ensure!(
        lost > 0,
        "the power loss took nothing from broker 0's volume: its page cache reached the volume"
    );
    let (host, hold) = replacement_held(fleet, victim).await?;
    blocking(|| client.produce_range(TOPIC, 2 * BATCH..3 * BATCH, 0))?;
    let status = catching_up_status(fleet, host, hold).await?;
    let state = fleet.wait_healthy(host, BOOT).await?;
    assert_same_broker(&booted[&0].1, &state)?;
    quorum_whole(fleet).await?;
    let load = blocking(|| load.finish(LOAD_TIMEOUT))?;
    ensure!(
        load.delivered > before_kill,
        "no record of the load acknowledged after the kill ({before_kill} before): it did not run through the death"
    );
    let consumed = blocking(|| client.consume_formatted(LOAD_TOPIC, READ_BACK_FORMAT))?;
    let back = load.read_back(&consumed);
    ensure!(
        back.is_whole(),
        "the load after the replacement: {} acknowledged records lost, {} read twice, {} not its records \
         (first lost {:?}, duplicated {:?}, foreign {:?}); produced {load:?}",
        back.lost.len(),
        back.duplicated.len(),
        back.corrupt.len(),
        back.lost.first(),
        back.duplicated.first(),
        back.corrupt.first()
    );
    fleet_kafka::consume_exactly(client, TOPIC, 3 * BATCH)?;
    println!(
        "broker 0 replaced by host {host} after losing {lost} bytes with the power, killed with {before_kill} of the \
         load's records acknowledged: Healthy {:.1}s after the kill, quorum whole, {} records exact; the load \
         sent {}, {} acknowledged (all read back once), {} failed, {} unreported, {} read in all; while held \
         behind, systemd's status said {status:?}",
        killed.elapsed().as_secs_f64(),
        3 * BATCH,
        load.sent,
        load.delivered,
        load.failed_produces,
        load.unreported(),
        back.read
    );
    Ok(())
}

/// Waits (polling) until the load has `count` records acknowledged; how many it had then.
async fn acknowledged_at_least(load: &SteadyProducer, count: u32) -> anyhow::Result<u32> {
    let started = Instant::now();
    loop {
        let delivered = load.delivered();
        if delivered >= count {
            return Ok(delivered);
        }
        ensure!(
            started.elapsed() < BOOT,
            "the load had {delivered} records acknowledged after {BOOT:?}, not {count} ({} sent)",
            load.sent()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The group's replacement of dead host `old`, its Kafka's fetches from the other brokers refused (a netfilter
/// rule in its namespace, put in as soon as the host is there and before its Kafka starts): its host index and
/// the hold.
async fn replacement_held(fleet: &Fleet, old: usize) -> anyhow::Result<(usize, FetchHold)> {
    let index = launched_for(fleet, old).await?;
    let host = fleet.host(index)?;
    let zones = fleet.options().zones;
    let peers: Vec<String> = (1..fleet.options().brokers)
        .map(|id| layout::eni_ip(id, zones).to_string())
        .collect();
    let hold = FetchHold::new(&host.ns, &peers)?;
    let kafka = blocking(|| host.container().show("kafka.service", &["ActiveState"]))?;
    ensure!(
        kafka.get("ActiveState").map(String::as_str) == Some("inactive"),
        "the replacement's Kafka had started before its fetches were held: {kafka:?}"
    );
    Ok((index, hold))
}

/// Polls berth.service's StatusText (`systemctl show`) on host `index` until it says that berth waits for the
/// catch-up and how many partitions are behind, then lets go of `hold`; the status line.
async fn catching_up_status(
    fleet: &Fleet,
    index: usize,
    hold: FetchHold,
) -> anyhow::Result<String> {
    let host = fleet.host(index)?;
    let started = Instant::now();
    let status = loop {
        let shown = blocking(|| host.container().show("berth.service", &["StatusText"]))?;
        let text = shown.get("StatusText").cloned().unwrap_or_default();
        if text.starts_with("start_kafka broker 0: catching up: ")
            && text.contains("not yet in sync")
        {
            break text;
        }
        ensure!(
            started.elapsed() < BOOT,
            "berth.service's StatusText never named the catch-up while held behind; last {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    drop(hold);
    Ok(status)
}

/// A netfilter table in a host's network namespace refusing (TCP reset) its connections to other brokers' Kafka
/// port, so its Kafka cannot fetch from their leaders; removed when dropped.
struct FetchHold {
    ns: String,
}

/// The hold's nftables table.
const HOLD_TABLE: &str = "berth-e2e-fetch-hold";

impl FetchHold {
    fn new(ns: &str, peers: &[String]) -> anyhow::Result<Self> {
        let hold = Self { ns: ns.to_owned() };
        let port = layout::KAFKA_PORT.to_string();
        let peers = format!("{{ {} }}", peers.join(", "));
        hold.nft(&["add", "table", "inet", HOLD_TABLE])?;
        hold.nft(&[
            "add", "chain", "inet", HOLD_TABLE, "out", "{", "type", "filter", "hook", "output",
            "priority", "0", ";", "}",
        ])?;
        hold.nft(&[
            "add", "rule", "inet", HOLD_TABLE, "out", "ip", "daddr", &peers, "tcp", "dport", &port,
            "reject", "with", "tcp", "reset",
        ])?;
        Ok(hold)
    }

    fn nft(&self, args: &[&str]) -> anyhow::Result<String> {
        let net = format!(
            "--net={}",
            berth_sim::region::netns_path(&self.ns).display()
        );
        let argv: Vec<&str> = [net.as_str(), "nft"]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        Ok(berth_sim::sys::run("nsenter", &argv)?)
    }
}

impl Drop for FetchHold {
    fn drop(&mut self) {
        if let Err(error) = self.nft(&["delete", "table", "inet", HOLD_TABLE]) {
            eprintln!("removing the fetch hold in {}: {error}", self.ns);
        }
    }
}

/// Two nodes killed in a row, broker 1's volume coming back blank: both replaced as the same brokers, the blank
/// controller formatted only once the other voters hold a majority, every record there.
async fn replace_two_one_blank(
    fleet: &Fleet,
    client: &Client,
    booted: &Booted,
) -> anyhow::Result<()> {
    let first = host_of_broker(booted, 1)?;
    let second = host_of_broker(booted, 2)?;
    let killed = Instant::now();
    fleet.kill_host(first, None).await?;
    blank_volume(fleet, 1)?;
    fleet.kill_host(second, None).await?;
    let zone = layout::zone_name(fleet.host(first)?.az);
    let old = fleet.host(first)?.instance.id.clone();
    ensure!(
        !asg::members(fleet)
            .iter()
            .any(|m| m.availability_zone == zone
                && m.instance_id != old
                && m.state == LifecycleState::InService),
        "the first replacement was in service before the second kill"
    );
    let waits = Mutex::new(QuorumWaits::default());
    let ((blank_host, blank), (kept_host, kept)) = tokio::try_join!(
        replacement_watching(fleet, first, &waits),
        replacement(fleet, second)
    )?;
    assert_same_broker(&booted[&1].1, &blank)?;
    assert_same_broker(&booted[&2].1, &kept)?;
    quorum_whole(fleet).await?;
    blocking(|| {
        fleet_kafka::wait_fully_replicated(client, TOPIC, BOOT).map_err(anyhow::Error::msg)
    })?;
    fleet_kafka::consume_exactly(client, TOPIC, 3 * BATCH)?;
    let blank_kafka = kafka_started(fleet, blank_host)?;
    let kept_kafka = kafka_started(fleet, kept_host)?;
    ensure!(
        blank_kafka > kept_kafka,
        "the blank controller's Kafka started ({blank_kafka:?}) before the other replacement's \
         ({kept_kafka:?}): formatted without a majority of the other voters"
    );
    let why = format_reason(fleet, blank_host)?;
    ensure!(
        why.contains("2 of 3 voters, a majority"),
        "the blank controller was formatted for another reason: {why}"
    );
    let waits = waits.into_inner().unwrap_or_default();
    println!(
        "brokers 1 (blank volume) and 2 replaced: Healthy {:.1}s after the first kill; the blank controller's \
         Kafka started {:.1}s after the other's; its /state first showed the quorum refusal {:.1}s after the first \
         kill ({})",
        killed.elapsed().as_secs_f64(),
        blank_kafka
            .duration_since(kept_kafka)
            .unwrap_or_default()
            .as_secs_f64(),
        waits
            .seen
            .map_or(0.0, |seen| (seen - killed).as_secs_f64()),
        waits.first.as_deref().unwrap_or("not seen")
    );
    Ok(())
}

/// Every node's host killed at once, broker 0's volume coming back blank, the other two zones without capacity:
/// broker 0's replacement refuses to format until the others return, and its berth, killed while the storage
/// tool runs, is followed by one that formats and serves; every synced acknowledged record is there.
async fn blank_while_the_others_are_down(
    fleet: &Fleet,
    client: &Client,
    booted: &Booted,
) -> anyhow::Result<()> {
    let phase = Instant::now();
    let hosts = live_hosts_by_broker(fleet).await?;
    blocking(|| client.create_topic(&durable_topic()))?;
    blocking(|| client.produce_range(DURABLE, 0..BATCH, 0))?;
    let others = [host_of(&hosts, 1)?, host_of(&hosts, 2)?];
    let zones = [fleet.host(others[0])?.az, fleet.host(others[1])?.az];
    for az in zones {
        fleet.hold_launches(az, true);
    }
    // All three at once, as one power loss. Kafka's recovery may still leave partitions without a leader and
    // broker 0 their last known leader: then berth does not start the blank broker (it would lead an empty
    // log) until the runbook's remedy ([`healthy_or_remedied`]).
    let killed = Instant::now();
    let old = host_of(&hosts, 0)?;
    tokio::try_join!(
        fleet.kill_host(others[0], None),
        fleet.kill_host(others[1], None),
        fleet.kill_host(old, None)
    )?;
    blank_volume(fleet, 0)?;
    let blank = launched_for(fleet, old).await?;
    let refusal = refused_while_down(fleet, blank).await?;
    let refused = killed.elapsed();
    let (interrupted, returned) = tokio::try_join!(interrupt_format(fleet, blank), async {
        for az in zones {
            fleet.hold_launches(az, false);
        }
        tokio::try_join!(replacement(fleet, others[0]), replacement(fleet, others[1]))
    })?;
    let (state, remedied) = healthy_or_remedied(fleet, client, blank).await?;
    for (id, state) in [(0, &state), (1, &returned.0 .1), (2, &returned.1 .1)] {
        assert_same_broker(&booted[&id].1, state)?;
    }
    quorum_whole(fleet).await?;
    blocking(|| {
        fleet_kafka::wait_fully_replicated(client, DURABLE, BOOT).map_err(anyhow::Error::msg)
    })?;
    durable_records_back(client).await?;
    let formats = assert_formatted_after_the_others(fleet, blank, [returned.0 .0, returned.1 .0])?;
    assert_format_resumed(fleet, blank, &interrupted, &formats)?;
    println!(
        "every host killed, broker 0 blank: refused while the others were down ({:.1}s after the kill: {refusal}); \
         berth killed {:.1}s after the kill while the storage tool ran (pid {}); {}Healthy again {:.1}s after \
         the kill, formatted by berth pid {} ({}), {BATCH} synced records exact; this phase {:.1}s",
        refused.as_secs_f64(),
        (interrupted.at - killed).as_secs_f64(),
        interrupted.tool,
        remedied.map_or_else(
            || "every partition it shares had another leader; ".to_owned(),
            |why| format!("Kafka not started on the blank broker until the runbook's remedy ({why}); ")
        ),
        killed.elapsed().as_secs_f64(),
        formats.last().map_or(0, |f| f.0),
        formats.last().map_or("", |f| f.1.as_str()),
        phase.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Waits until host `index` is Healthy. When instead its berth refuses to start Kafka on the blank broker (after
/// every replica lost its power Kafka may keep a partition's last known leader, and a blank one would lead an
/// empty log that the others truncate to), asserts its Kafka never started and that every partition it names is
/// one Kafka reports without a leader, then does the runbook's remedy (eligible leader replicas off, an unclean
/// election of those partitions among the live replicas, eligible leader replicas on again). The state, and
/// the refusal the remedy answered.
async fn healthy_or_remedied(
    fleet: &Fleet,
    client: &Client,
    index: usize,
) -> anyhow::Result<(StateView, Option<String>)> {
    let started = Instant::now();
    let (refusal, leaderless) = loop {
        let state = fleet
            .wait_for(
                index,
                "Healthy, or the blank broker's refusal",
                BOOT,
                |state| {
                    state.state.eq_ignore_ascii_case("healthy")
                        || refusal_of(state, BLANK_START_REFUSED)
                            .is_some_and(|why| why.contains("no live leader"))
                },
            )
            .await?;
        let Some(refusal) =
            refusal_of(&state, BLANK_START_REFUSED).filter(|why| why.contains("no live leader"))
        else {
            return Ok((state, None));
        };
        if blank_start_passed(fleet, index)? {
            // A refusal `/state` still shows as its last error, from before berth's check passed (its journal
            // says so) and berth started Kafka: what remains is the catch-up.
            return Ok((fleet.wait_healthy(index, BOOT).await?, None));
        }
        let unavailable =
            blocking(|| client.tool(&["topics"], &["--describe", "--unavailable-partitions"]))?;
        let leaderless = unavailable_partitions(&unavailable);
        let named = named_partitions(&refusal).context("the refusal names no partition")?;
        let missing: Vec<_> = named
            .iter()
            .filter(|name| !leaderless.iter().any(|(t, p)| format!("{t}-{p}") == **name))
            .collect();
        if missing.is_empty() {
            break (refusal, leaderless);
        }
        // Kafka may still have been electing when berth looked: the refusal must then clear by itself.
        ensure!(
            started.elapsed() < BOOT,
            "berth kept refusing for {missing:?}, which Kafka does not report without a leader: {unavailable}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    ensure!(
        fleet_kafka::kafka_unit_started(fleet.host(index)?.container()).is_none(),
        "host {index}: Kafka started on the blank broker it refused: {refusal}"
    );
    let elections = tempfile::NamedTempFile::new()?;
    let partitions: Vec<_> = leaderless
        .iter()
        .map(|(topic, partition)| serde_json::json!({"topic": topic, "partition": partition}))
        .collect();
    std::fs::write(
        elections.path(),
        serde_json::json!({ "partitions": partitions }).to_string(),
    )?;
    let path = elections.path().display().to_string();
    let features = ["tool", "org.apache.kafka.tools.FeatureCommand"];
    blocking(|| client.tool(&features, &["disable", "--feature", ELR]))?;
    blocking(|| {
        client.tool(
            &["tool", "org.apache.kafka.tools.LeaderElectionCommand"],
            &["--election-type", "unclean", "--path-to-json-file", &path],
        )
    })?;
    blocking(|| client.tool(&features, &["upgrade", "--feature", &format!("{ELR}=1")]))?;
    let state = fleet.wait_healthy(index, BOOT).await?;
    Ok((
        state,
        Some(format!(
            "{} partitions elected: {refusal}",
            leaderless.len()
        )),
    ))
}

/// Whether berth's journal on host `index` says its blank-start check passed (every shared partition had
/// another live leader), which it says only before it starts Kafka.
fn blank_start_passed(fleet: &Fleet, index: usize) -> anyhow::Result<bool> {
    let host = fleet.host(index)?;
    let entries = systemd_host::journal_entries(host.container(), systemd_host::BERTH_UNIT, &[])?;
    Ok(entries.iter().any(|entry| {
        entry["MESSAGE"].as_str().is_some_and(|m| {
            m.contains("every partition shared with other replicas has another live leader")
        })
    }))
}

/// The partitions a blank broker's refusal names (at most five: the rest are "and N more").
fn named_partitions(refusal: &str) -> Option<Vec<String>> {
    let (_, rest) = refusal.split_once("no live leader but it: ")?;
    let (names, _) = rest.split_once(';')?;
    let names = names.split(" and ").next().unwrap_or(names);
    Some(names.split(", ").map(str::to_owned).collect())
}

/// The (topic, partition) pairs of TopicCommand's `--describe --unavailable-partitions`.
fn unavailable_partitions(described: &str) -> Vec<(String, u32)> {
    described
        .lines()
        .filter_map(|line| {
            let field = |name: &str| {
                line.split('\t')
                    .find_map(|f| f.trim().strip_prefix(name).map(str::trim))
            };
            Some((
                field("Topic:")?.to_owned(),
                field("Partition:")?.parse().ok()?,
            ))
        })
        .collect()
}

/// Waits (polling) until every synced record of the DURABLE topic is readable exactly once. After every replica
/// lost its power, a partition's high watermark restarts from its last checkpoint and reaches the log end only
/// as the followers fetch again, so a read just after the return may end early; records that never come back
/// fail the wait at its deadline, naming what is missing.
async fn durable_records_back(client: &Client) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        match fleet_kafka::consume_exactly(client, DURABLE, BATCH) {
            Ok(_) => return Ok(()),
            Err(error) if started.elapsed() > BOOT => return Err(error),
            Err(_) => tokio::time::sleep(Duration::from_secs(2)).await,
        }
    }
}

/// The DURABLE topic: the replicated topic's layout, each record synced before it is acknowledged.
fn durable_topic() -> berth_testkit::kafka::TopicSpec {
    let mut spec = fleet_kafka::replicated_topic(DURABLE);
    spec.configs.push(("flush.messages".into(), "1".into()));
    spec
}

/// Replaces broker `id`'s volume by a blank one of the same id (a lost EBS volume replaced by an empty one).
fn blank_volume(fleet: &Fleet, id: usize) -> anyhow::Result<()> {
    let backing = fleet.volume_backing(&fleet.resources()[id].volume_id);
    std::fs::remove_file(&backing).with_context(|| format!("remove {}", backing.display()))?;
    berth_sim::devices::create_backing(&backing, fleet.options().volume_mb)?;
    Ok(())
}

/// The live host of each broker now, as their `/state` says.
async fn live_hosts_by_broker(fleet: &Fleet) -> anyhow::Result<BTreeMap<u32, usize>> {
    let mut hosts = BTreeMap::new();
    for host in fleet.hosts().iter().filter(|h| h.alive()) {
        let id = fleet.state(host.index).await?.broker_id;
        let id = id.with_context(|| format!("host {} reports no id", host.index))?;
        ensure!(hosts.insert(id, host.index).is_none(), "broker {id} twice");
    }
    Ok(hosts)
}

fn host_of(hosts: &BTreeMap<u32, usize>, id: u32) -> anyhow::Result<usize> {
    hosts
        .get(&id)
        .copied()
        .with_context(|| format!("no live broker {id}"))
}

/// What `/state` (its wait, or its last error) says that contains `refused`, if it says it.
fn refusal_of(state: &StateView, refused: &str) -> Option<String> {
    [
        state.waiting.as_ref().map(|w| w.reason.clone()),
        state.last_error.clone(),
    ]
    .into_iter()
    .flatten()
    .find(|text| text.contains(refused))
}

/// Waits until host `index` refuses to format its blank controller storage because the cluster was born and
/// nobody describes its quorum, and its journal shows the refusal again on a retry; asserts its log dir holds
/// no `meta.properties` and its Kafka never started. The refusal `/state` showed.
async fn refused_while_down(fleet: &Fleet, index: usize) -> anyhow::Result<String> {
    let state = fleet
        .wait_for(index, "the blank controller's refusal", BOOT, |state| {
            refusal_of(state, FORMAT_REFUSED).is_some_and(|why| why.contains("was born"))
        })
        .await?;
    let refusal = refusal_of(&state, FORMAT_REFUSED).unwrap_or_default();
    ensure!(
        refusal.contains("no leader describes its quorum")
            && refusal.contains("waiting for the other controllers"),
        "the refusal does not say why or what it waits for: {refusal}"
    );
    let host = fleet.host(index)?;
    let started = Instant::now();
    let refusals = loop {
        let refusals = journal_entries(fleet, index, "blank KRaft storage not formatted")?;
        if refusals.len() >= 2 {
            break refusals;
        }
        ensure!(
            started.elapsed() < BOOT,
            "host {index}: the refusal was not repeated within {BOOT:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    ensure!(
        refusals
            .iter()
            .all(|(_, why)| why.contains("was born") && why.contains("waiting for the other controllers")),
        "host {index}: the journal's refusals do not all say the cluster was born and what they wait for: \
         {refusals:?}"
    );
    let listing =
        host.container()
            .exec(&["sh", "-c", &format!("ls -A {LOG_DIR} 2>/dev/null; true")])?;
    ensure!(
        !listing.lines().any(|entry| entry == "meta.properties"),
        "host {index}: the blank controller's log dir was formatted while the others were down: {listing}"
    );
    ensure!(
        fleet_kafka::kafka_unit_started(host.container()).is_none(),
        "host {index}: Kafka started on the blank controller while the others were down"
    );
    Ok(refusal)
}

/// A storage tool run cut short: its process (frozen, then stopped by the next berth), the berth killed
/// (this machine's pid), and when.
struct Interrupted {
    tool: i32,
    berth: u32,
    at: Instant,
}

/// Waits for the storage tool's JVM to run on host `index` (in its transient unit), freezes it where it stands
/// (SIGSTOP, as a stalled disk would hold it), checks the log dir holds no `meta.properties` yet, and SIGKILLs
/// berth (systemd restarts it).
async fn interrupt_format(fleet: &Fleet, index: usize) -> anyhow::Result<Interrupted> {
    let host = fleet.host(index)?;
    let started = Instant::now();
    let tool = loop {
        if let Some(pid) = storage_tool(&host.ns) {
            break pid;
        }
        ensure!(
            started.elapsed() < 2 * BOOT,
            "host {index}: the storage tool did not run within {:?}",
            2 * BOOT
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    berth_sim::sys::signal(tool, nix::sys::signal::Signal::SIGSTOP);
    let cgroup = std::fs::read_to_string(format!("/proc/{tool}/cgroup"))?;
    ensure!(
        cgroup.contains(FORMAT_UNIT),
        "the storage tool runs outside {FORMAT_UNIT}: {cgroup}"
    );
    let meta = std::path::PathBuf::from(format!("/proc/{tool}/root{LOG_DIR}/meta.properties"));
    ensure!(
        !meta.exists(),
        "the format had committed before the storage tool was frozen"
    );
    let berth = host.berth_pid().context("berth not running")?;
    fleet.crash_berth(index).await?;
    Ok(Interrupted {
        tool,
        berth,
        at: Instant::now(),
    })
}

/// The storage tool's JVM among the processes of namespace `ns`.
fn storage_tool(ns: &str) -> Option<i32> {
    berth_sim::sys::netns_pids(ns).into_iter().find(|pid| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|command| String::from_utf8_lossy(&command).contains(STORAGE_TOOL))
    })
}

/// The blank controller was formatted, and its Kafka started, only after both others' Kafka started, on the
/// majority. Every "formatting KRaft storage" entry of its journal: (berth's pid in the host, WHY).
fn assert_formatted_after_the_others(
    fleet: &Fleet,
    blank: usize,
    others: [usize; 2],
) -> anyhow::Result<Vec<(u64, String)>> {
    let formats = journal_entries(fleet, blank, "formatting KRaft storage")?;
    let blank_kafka = kafka_started(fleet, blank)?;
    for other in others {
        let other_kafka = kafka_started(fleet, other)?;
        ensure!(
            blank_kafka > other_kafka,
            "the blank controller's Kafka started ({blank_kafka:?}) before host {other}'s ({other_kafka:?})"
        );
    }
    ensure!(
        !formats.is_empty()
            && formats
                .iter()
                .all(|(_, why)| why.contains("2 of 3 voters, a majority")),
        "the blank controller was formatted for another reason: {formats:?}"
    );
    Ok(formats)
}

/// After the kill: the frozen tool is gone (its unit stopped by the next berth, which systemd started), a
/// second berth formatted, the log dir is formatted, and Kafka started once, after the kill.
fn assert_format_resumed(
    fleet: &Fleet,
    blank: usize,
    interrupted: &Interrupted,
    formats: &[(u64, String)],
) -> anyhow::Result<()> {
    let host = fleet.host(blank)?;
    ensure!(
        !std::path::Path::new(&format!("/proc/{}", interrupted.tool)).exists(),
        "the frozen storage tool (pid {}) still runs",
        interrupted.tool
    );
    let now = host.berth_pid().context("berth not running")?;
    ensure!(
        now != interrupted.berth,
        "berth (pid {now}) was not restarted"
    );
    let pids: std::collections::BTreeSet<u64> = formats.iter().map(|(pid, _)| *pid).collect();
    ensure!(
        pids.len() >= 2,
        "one berth formatted (pids {pids:?}): the killed berth's format was not followed by another"
    );
    let units = systemd_host::journal_entries(host.container(), FORMAT_UNIT, &["_PID=1"])?;
    let jobs: Vec<String> = units
        .into_iter()
        .filter_map(|entry| entry["JOB_TYPE"].as_str().map(str::to_owned))
        .collect();
    ensure!(
        jobs.iter().filter(|job| *job == "start").count() >= 2
            && jobs.iter().any(|job| job == "stop"),
        "{FORMAT_UNIT}: systemd's jobs {jobs:?}, not two starts and the leftover's stop"
    );
    let listing = host.container().exec(&["ls", "-A", LOG_DIR])?;
    ensure!(
        listing.lines().any(|entry| entry == "meta.properties"),
        "{LOG_DIR} is not formatted: {listing}"
    );
    let started = host.container().exec(&[
        "journalctl",
        "--unit",
        "kafka.service",
        "--no-pager",
        "_PID=1",
    ])?;
    let starts = started
        .lines()
        .filter(|line| line.contains(" Started kafka.service"))
        .count();
    ensure!(
        starts == 1,
        "Kafka started {starts} times on the formatted controller"
    );
    Ok(())
}

/// The decisions in host `index`'s berth journal (entries with a `WHY`) whose message contains `message`:
/// (berth's pid in the host, WHY).
fn journal_entries(
    fleet: &Fleet,
    index: usize,
    message: &str,
) -> anyhow::Result<Vec<(u64, String)>> {
    let host = fleet.host(index)?;
    let entries = systemd_host::journal_entries(host.container(), systemd_host::BERTH_UNIT, &[])?;
    Ok(entries
        .into_iter()
        .filter(|entry| {
            entry["MESSAGE"]
                .as_str()
                .is_some_and(|m| m.contains(message))
        })
        .filter_map(|entry| {
            let pid = entry["_PID"].as_str().and_then(|p| p.parse().ok());
            let why = entry["WHY"].as_str()?.to_owned();
            Some((pid.unwrap_or(0), why))
        })
        .collect())
}

/// The booted hosts by broker id: (host index, Healthy state).
type Booted = std::collections::BTreeMap<u32, (usize, StateView)>;

/// Waits until the group's three members are Healthy and in service; their states by broker id.
async fn boot(fleet: &Fleet) -> anyhow::Result<Booted> {
    let count = fleet.options().zones * fleet.options().asg.per_zone;
    asg::wait_members(fleet, "every zone launched", BOOT, |m| m.len() == count).await?;
    let mut booted = Booted::new();
    for host in fleet.hosts() {
        let state = fleet.wait_healthy(host.index, BOOT).await?;
        berth_e2e::assert_shipped(fleet, host.index, &state)?;
        let id = state.broker_id.context("Healthy without an id")?;
        ensure!(
            booted.insert(id, (host.index, state)).is_none(),
            "broker {id} twice"
        );
    }
    ensure!(booted.len() == count, "ids {:?}", booted.keys());
    asg::wait_members(fleet, "every member in service", BOOT, |m| {
        m.iter()
            .filter(|m| m.state == LifecycleState::InService)
            .count()
            == count
    })
    .await?;
    Ok(booted)
}

/// The stack was created from the shipped template as CloudFormation creates it: each group only once the one
/// it depends on was CREATE_COMPLETE (its instance InService), the last one once its broker's berth signalled
/// SUCCESS (its CreationPolicy), then the stack; the first instances were not held by a launch hook (the
/// template's hooks are resources created after their groups).
async fn assert_stack_created(fleet: &Fleet, booted: &Booted) -> anyhow::Result<()> {
    let stack = asg::stack_name(&fleet.options().cluster);
    let status = || fleet.aws().read(|plane| plane.stacks.status(&stack));
    asg::wait_members(fleet, "the stack CREATE_COMPLETE", BOOT, |_| {
        status() == Some(Status::CreateComplete)
    })
    .await?;
    let declared = berth_sim::stack::template_groups(
        &template::shipped(),
        &fleet.options().cluster,
        fleet.options().zones,
    )?;
    let mut expected = vec![format!("{stack} CREATE_IN_PROGRESS")];
    for (group, _) in &declared {
        expected.push(format!("{} CREATE_IN_PROGRESS", group.logical_id));
        expected.push(format!("{} CREATE_COMPLETE", group.logical_id));
    }
    expected.push(format!("{stack} CREATE_COMPLETE"));
    let events = stack_events(fleet);
    ensure!(events == expected, "stack events {events:#?}");
    let (last, _) = declared.last().context("the template's groups")?;
    let signals = fleet
        .aws()
        .read(|plane| plane.stacks.signals(&stack, &last.logical_id));
    let signalled = fleet
        .hosts()
        .into_iter()
        .find(|host| signals.contains(&(host.instance.id.clone(), "SUCCESS".to_owned())));
    let host = signalled.with_context(|| format!("{} took {signals:?}", last.logical_id))?;
    ensure!(
        booted.values().any(|(index, _)| *index == host.index),
        "{} signalled by host {}, not a booted broker",
        last.logical_id,
        host.index
    );
    let history = asg::history(fleet);
    let first: Vec<&String> = history
        .iter()
        .filter(|a| a.starts_with("Launching"))
        .collect();
    ensure!(
        first.len() == declared.len() && first.iter().all(|a| a.ends_with("(InService)")),
        "the first launches: {first:#?}"
    );
    assert_resources_from_the_template(fleet).await?;
    for (index, _) in booted.values() {
        assert_configured_by_user_data(fleet, *index)?;
    }
    println!("stack created from the template: {}", events.join(", "));
    Ok(())
}

/// Host `index`'s berth was configured by the launch template's user data, which cloud-init ran: its output
/// is in cloud-init's log and `/etc/berth/environment` carries the template's overrides for this stack.
fn assert_configured_by_user_data(fleet: &Fleet, index: usize) -> anyhow::Result<()> {
    let host = fleet.host(index)?;
    let container = host.container();
    let environment = std::fs::read_to_string(container.path("/etc/berth/environment"))?;
    let cluster = format!("BERTH_CLUSTER__NAME={}", fleet.options().cluster);
    for line in [
        cluster.as_str(),
        "BERTH_KAFKA__MODE=kraft",
        "BERTH_KAFKA__CONTROLLER_IDS=0,1,2",
        "BERTH_AWS__CLOUDFORMATION__SIGNAL=true",
    ] {
        ensure!(
            environment.lines().any(|l| l == line),
            "host {index}: {line} not in /etc/berth/environment:\n{environment}"
        );
    }
    let result = std::fs::read_to_string(container.path("/var/lib/cloud/data/result.json"))?;
    let result: serde_json::Value = serde_json::from_str(&result)?;
    ensure!(
        result["v1"]["errors"].as_array().is_some_and(Vec::is_empty),
        "host {index}: cloud-init's result {result}"
    );
    Ok(())
}

/// How long one group's rolling update may take (a broker drained, replaced and Healthy again).
const PER_GROUP: Duration = Duration::from_secs(300);
/// A line of the template's user data, and the versions of it the stack updates roll out.
const USER_DATA_LINE: &str = "BERTH_KAFKA__CAUGHT_UP_DEADLINE=15m";
const UPDATED_LINE: &str = "BERTH_KAFKA__CAUGHT_UP_DEADLINE=16m";
/// A value berth refuses (its configuration exits 78).
const REFUSED_LINE: &str = "BERTH_KAFKA__CAUGHT_UP_DEADLINE=soon";

/// A stack update to a launch template version with changed user data rolls the brokers one group at a time
/// (each group UPDATE_COMPLETE before the next starts, as the template's DependsOn chain orders it), under a
/// produce load (acks=all, idempotence) that loses nothing and fails nothing; every broker then runs the new
/// version with its user data, Healthy, and the quorum is whole.
async fn stack_update_rolls_one_group_at_a_time(
    fleet: &Fleet,
    client: &Client,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let topic = "kraft-e2e-update";
    blocking(|| client.create_topic(&fleet_kafka::replicated_topic(topic)))?;
    let load = blocking(|| client.steady_producer(topic, LOAD_PER_SECOND, LOAD_TIMEOUT))?;
    acknowledged_at_least(&load, LOAD_BEFORE_KILL).await?;
    let updated = user_data_with(fleet, USER_DATA_LINE, UPDATED_LINE).await?;
    let outcome = stack_update::update_user_data(fleet, &updated, PER_GROUP).await?;
    let Updated::Complete { version } = outcome else {
        anyhow::bail!("the stack update did not complete: {outcome:?}");
    };
    let events = update_events(fleet);
    let mut expected = vec![format!("{} UPDATE_IN_PROGRESS", stack_of(fleet))];
    for plan in &fleet.asg_groups().plans {
        let id = &plan
            .declared
            .as_ref()
            .context("a declared group")?
            .logical_id;
        expected.push(format!("{id} UPDATE_IN_PROGRESS"));
        expected.push(format!("{id} UPDATE_COMPLETE"));
    }
    expected.push(format!("{} UPDATE_COMPLETE", stack_of(fleet)));
    ensure!(events == expected, "the update's events {events:#?}");
    for index in healthy_on_version(fleet, &version).await? {
        let host = fleet.host(index)?;
        let environment = std::fs::read_to_string(host.container().path("/etc/berth/environment"))?;
        ensure!(
            environment.lines().any(|l| l == UPDATED_LINE),
            "host {index}: {environment}"
        );
    }
    quorum_whole(fleet).await?;
    let load = blocking(|| load.finish(LOAD_TIMEOUT))?;
    let back = load.read_back(&blocking(|| {
        client.consume_formatted(topic, READ_BACK_FORMAT)
    })?);
    ensure!(
        load.failed_produces == 0 && back.is_whole(),
        "the load through the update: {} failed produces, {} acknowledged records lost, {} read twice",
        load.failed_produces,
        back.lost.len(),
        back.duplicated.len()
    );
    println!(
        "stack updated to launch template version {version} one group at a time in {:.1}s: the load sent {}, \
         {} acknowledged (all read back once), 0 failed",
        started.elapsed().as_secs_f64(),
        load.sent,
        load.delivered
    );
    Ok(())
}

/// A stack update to a version whose configuration berth refuses (exit 78, after its FAILURE signal) fails the
/// first group and is rolled back: the stack ends UPDATE_ROLLBACK_COMPLETE, every broker runs the previous
/// version again, Healthy, the quorum is whole and the synced records written before are all there.
async fn failed_stack_update_rolls_back(fleet: &Fleet, client: &Client) -> anyhow::Result<()> {
    let started = Instant::now();
    let first = &fleet.asg_groups().plans[0];
    let previous = fleet
        .launch_version(&first.name)
        .await?
        .context("the stack's launch template")?
        .number;
    let refused = user_data_with(fleet, UPDATED_LINE, REFUSED_LINE).await?;
    let outcome = stack_update::update_user_data(fleet, &refused, PER_GROUP).await?;
    let Updated::RolledBack { group, reason } = outcome else {
        anyhow::bail!("a version berth refuses was not rolled back: {outcome:?}");
    };
    let first_id = &first
        .declared
        .as_ref()
        .context("a declared group")?
        .logical_id;
    ensure!(
        &group == first_id && reason.starts_with("Received FAILURE signal with UniqueId i-"),
        "rolled back for {group}: {reason}"
    );
    let events = update_events(fleet);
    ensure!(
        events.last().map(String::as_str)
            == Some(format!("{} UPDATE_ROLLBACK_COMPLETE", stack_of(fleet)).as_str())
            && events.contains(&format!("{first_id} UPDATE_FAILED")),
        "the failed update's events {events:#?}"
    );
    healthy_on_version(fleet, &previous).await?;
    quorum_whole(fleet).await?;
    durable_records_back(client).await?;
    println!(
        "a version berth refuses rolled back in {:.1}s ({group}: {reason}); every broker on version {previous} again",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Every broker (one per group) is Healthy on a host that launched launch template version `version`; the
/// hosts.
async fn healthy_on_version(fleet: &Fleet, version: &str) -> anyhow::Result<Vec<usize>> {
    let hosts: Vec<usize> = live_hosts_by_broker(fleet).await?.into_values().collect();
    ensure!(
        hosts.len() == fleet.asg_groups().plans.len(),
        "brokers on hosts {hosts:?}"
    );
    for &index in &hosts {
        fleet.wait_healthy(index, BOOT).await?;
        let launched = fleet.instance_version(&fleet.host(index)?.instance.id);
        ensure!(
            launched.as_deref() == Some(version),
            "host {index} runs launch template version {launched:?}, not {version}"
        );
    }
    Ok(hosts)
}

/// The user data the stack's groups launch now, with `line` replaced by `with`.
async fn user_data_with(fleet: &Fleet, line: &str, with: &str) -> anyhow::Result<String> {
    let group = &fleet.asg_groups().plans[0].name;
    let current = fleet
        .launch_version(group)
        .await?
        .and_then(|v| v.user_data)
        .context("the launch template's user data")?;
    ensure!(
        current.lines().any(|l| l == line),
        "{line} not in the user data:\n{current}"
    );
    Ok(current.replace(line, with))
}

fn stack_of(fleet: &Fleet) -> String {
    asg::stack_name(&fleet.options().cluster)
}

/// The stack's events, oldest first: "<logical id> <status>".
fn stack_events(fleet: &Fleet) -> Vec<String> {
    let stack = stack_of(fleet);
    fleet
        .aws()
        .read(|plane| plane.stacks.events(&stack))
        .into_iter()
        .map(|(id, status)| format!("{id} {}", status.as_str()))
        .collect()
}

/// The stack's events since its last update began.
fn update_events(fleet: &Fleet) -> Vec<String> {
    let stack = stack_of(fleet);
    let events = stack_events(fleet);
    let began = format!("{stack} UPDATE_IN_PROGRESS");
    let from = events.iter().rposition(|e| *e == began).unwrap_or(0);
    events[from..].to_vec()
}

/// The brokers' ENIs are the template's (its description, in its security group), not the simulator's.
async fn assert_resources_from_the_template(fleet: &Fleet) -> anyhow::Result<()> {
    let cluster = &fleet.options().cluster;
    for resource in fleet.resources() {
        let described = fleet
            .ec2()
            .client()
            .describe_network_interfaces()
            .network_interface_ids(&resource.eni_id)
            .send()
            .await?;
        let eni = described
            .network_interfaces()
            .first()
            .with_context(|| format!("{} described", resource.eni_id))?;
        let expected = format!("Kafka broker {} of {cluster} (berth)", resource.id);
        ensure!(
            eni.description() == Some(expected.as_str()) && !eni.groups().is_empty(),
            "broker {}'s ENI {:?} is not the template's (in groups {:?})",
            resource.id,
            eni.description(),
            eni.groups()
        );
    }
    Ok(())
}

/// Every launch after the stack's first instances waited in Pending:Wait for berth: the template's launch hooks
/// were added to their groups once the groups were created.
fn assert_later_launches_held(fleet: &Fleet) -> anyhow::Result<()> {
    let groups = fleet.asg_groups().plans.len();
    let launches: Vec<String> = asg::history(fleet)
        .into_iter()
        .filter(|a| a.starts_with("Launching"))
        .collect();
    ensure!(
        launches.len() > groups,
        "no launch after the first: {launches:#?}"
    );
    ensure!(
        launches[groups..]
            .iter()
            .all(|a| a.ends_with("(Pending:Wait)")),
        "a later launch not held by the launch hook: {launches:#?}"
    );
    Ok(())
}

fn host_of_broker(booted: &Booted, id: u32) -> anyhow::Result<usize> {
    Ok(booted
        .get(&id)
        .with_context(|| format!("no broker {id}"))?
        .0)
}

/// No ZooKeeper in the fleet: no ensemble, no ZooKeeper server process and nothing listening on its port in the
/// region's namespace or any live host's, and no zookeeper key in any host's berth.toml or Kafka settings.
fn assert_no_zookeeper(fleet: &Fleet) -> anyhow::Result<()> {
    ensure!(fleet.zookeeper().is_none(), "the fleet started ZooKeeper");
    let mut namespaces = vec![(
        fleet.region().ns().to_owned(),
        fleet.region().ns_path().display().to_string(),
    )];
    for host in fleet.hosts().iter().filter(|h| h.alive()) {
        namespaces.push((
            host.ns.clone(),
            berth_sim::region::netns_path(&host.ns)
                .display()
                .to_string(),
        ));
        let container = host.container();
        for file in ["/etc/berth/berth.toml", "/etc/kafka/server.properties"] {
            let text = std::fs::read_to_string(container.path(file))
                .with_context(|| format!("host {}: {file}", host.index))?;
            ensure!(
                !text.to_lowercase().contains("zookeeper"),
                "host {}: {file} names ZooKeeper:\n{text}",
                host.index
            );
        }
        let config = std::fs::read_to_string(container.path("/etc/berth/berth.toml"))?;
        ensure!(
            config.contains("backend = \"ec2\""),
            "host {}: claim backend not ec2",
            host.index
        );
    }
    for (ns, path) in &namespaces {
        for pid in berth_sim::sys::netns_pids(ns) {
            let command = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let command = String::from_utf8_lossy(&command).replace('\0', " ");
            ensure!(
                !command.contains("org.apache.zookeeper.server"),
                "ZooKeeper runs in {ns}: pid {pid}: {command}"
            );
        }
        let port = format!("sport = :{ZOOKEEPER_PORT}");
        let listening =
            berth_sim::sys::run("nsenter", &[&format!("--net={path}"), "ss", "-Hltn", &port])?;
        ensure!(
            listening.trim().is_empty(),
            "something listens on {ZOOKEEPER_PORT} in {ns}: {listening}"
        );
    }
    Ok(())
}

/// The claims read from EC2 (the ENI attachments) name exactly the instances the hosts report for their ids.
async fn assert_claims_in_ec2(fleet: &Fleet, booted: &Booted) -> anyhow::Result<()> {
    let claims = berth_sim::claims::held(fleet).await?;
    let held: Vec<(u32, String)> = claims
        .iter()
        .map(|c| (c.broker_id, c.instance_id.clone()))
        .collect();
    let reported: Vec<(u32, String)> = booted
        .iter()
        .map(|(id, (_, state))| (*id, state.instance_id.clone().unwrap_or_default()))
        .collect();
    ensure!(
        held == reported,
        "claims in EC2 {claims:?}, hosts report {reported:?}"
    );
    Ok(())
}

/// The group's replacement of dead host `old`: its host index and Healthy state.
async fn replacement(fleet: &Fleet, old: usize) -> anyhow::Result<(usize, StateView)> {
    let host = launched_for(fleet, old).await?;
    Ok((host, fleet.wait_healthy(host, BOOT).await?))
}

/// What a replacement's `/state` said while its StartKafka waited for the quorum.
#[derive(Debug, Default)]
struct QuorumWaits {
    /// The first refusal.
    first: Option<String>,
    /// When it was first seen.
    seen: Option<Instant>,
}

/// As [`replacement`], keeping what `/state` said while its step waited for the quorum.
async fn replacement_watching(
    fleet: &Fleet,
    old: usize,
    waits: &Mutex<QuorumWaits>,
) -> anyhow::Result<(usize, StateView)> {
    let host = launched_for(fleet, old).await?;
    let state = fleet
        .wait_for(host, "Healthy", BOOT, |state| {
            let said = [
                state.last_error.clone(),
                state.waiting.as_ref().map(|w| w.reason.clone()),
            ];
            for text in said.into_iter().flatten() {
                if text.contains("blank KRaft storage not formatted") {
                    let mut waits = waits.lock().unwrap_or_else(|e| e.into_inner());
                    waits.seen.get_or_insert_with(Instant::now);
                    waits.first.get_or_insert(text);
                }
            }
            state.state.eq_ignore_ascii_case("healthy")
        })
        .await?;
    Ok((host, state))
}

async fn launched_for(fleet: &Fleet, old: usize) -> anyhow::Result<usize> {
    Ok(asg::replacement_of(fleet, &*fleet.host(old)?, BOOT)
        .await?
        .1)
}

/// The replacement is the same broker: id, ENI address and volume.
fn assert_same_broker(before: &StateView, after: &StateView) -> anyhow::Result<()> {
    let eni = |s: &StateView| s.eni.as_ref().map(|e| e.ip.clone());
    let volume = |s: &StateView| s.volume.as_ref().map(|v| v.id.clone());
    ensure!(
        after.broker_id == before.broker_id
            && eni(after) == eni(before)
            && volume(after) == volume(before),
        "replacement is broker {:?} at {:?} on {:?}, not {:?} at {:?} on {:?}",
        after.broker_id,
        eni(after),
        volume(after),
        before.broker_id,
        eni(before),
        volume(before)
    );
    Ok(())
}

/// Polls DescribeQuorum (every 200 ms, as `kafka-metadata-quorum describe --replication` asks it) until the
/// quorum has a leader and three voters, each fetched up to the high watermark.
async fn quorum_whole(fleet: &Fleet) -> anyhow::Result<QuorumView> {
    let controllers: Vec<Peer> = fleet_kafka::controller_listeners(fleet)
        .into_iter()
        .map(|(id, address)| Peer::new(id, address))
        .collect();
    let started = Instant::now();
    loop {
        let seen = quorum::observe(
            &KafkaClient::plaintext(),
            &controllers,
            Duration::from_secs(3),
        )
        .await;
        if let Quorum::Described(view) = &seen {
            if view.leader_id >= 0
                && view.voters.len() == 3
                && view
                    .voters
                    .iter()
                    .all(|v| v.log_end_offset >= view.high_watermark)
            {
                return Ok(view.clone());
            }
        }
        ensure!(
            started.elapsed() < BOOT,
            "quorum not whole within {BOOT:?}: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Why berth formatted host `index`'s KRaft storage: the `WHY` field of its journal entry
/// (`journalctl -u berth -o json`).
fn format_reason(fleet: &Fleet, index: usize) -> anyhow::Result<String> {
    journal_entries(fleet, index, "formatting KRaft storage")?
        .into_iter()
        .map(|(_, why)| why)
        .next()
        .with_context(|| {
            format!("host {index}: no 'formatting KRaft storage' entry with a WHY in its journal")
        })
}

/// When systemd started `kafka.service` on host `index` (last time).
fn kafka_started(fleet: &Fleet, index: usize) -> anyhow::Result<std::time::SystemTime> {
    let host = fleet.host(index)?;
    fleet_kafka::kafka_unit_started(host.container())
        .with_context(|| format!("host {index}: no 'Started kafka.service' in its journal"))
}
