//! A static 3-controller KRaft cluster born with its controllers' hosts launched a minute apart, as CloudFormation
//! creating the groups of a stack one after another launches them (the fleet's `asg.stagger`: a group's desired
//! capacity is raised from 0 only that long after the previous one's). Apache Kafka 4.x, `claim.backend = "ec2"`,
//! no ZooKeeper. Two fleets, one per layout, run side by side (most of their time is the stagger):
//!
//! * three combined broker+controller nodes;
//! * three dedicated controllers (`process.roles=controller`, a controller group per zone claiming ids 0..3) and
//!   two brokers (a broker group per zone claiming ids 3..5, launched with the last controller).
//!
//! In both the cluster forms and serves (a replicated topic, records produced with acks=all and every one consumed
//! back exactly once), and each controller host's journal shows the birth rule deciding its format on positive
//! evidence: the first controllers formatted as the cluster's birth while EC2 showed every controller volume
//! without the birth mark, and the last one, launched after the quorum had committed and marked its volumes,
//! formatted beside the majority of a born cluster. Each controller's volume carries the mark afterwards.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use berth_config::ClaimBackend;
use berth_kafka::client::{KafkaClient, Peer};
use berth_kafka::quorum::{self, Quorum, QuorumView};
use berth_sim::asg::{self, AsgOptions};
use berth_sim::kafka::{self as fleet_kafka, blocking};
use berth_sim::{systemd_host, Fleet, FleetOptions, HostRole, SimKafka};
use berth_testkit::kafka::TopicSpec;

/// How far apart the controllers' hosts are launched (the shape: 60 s or more).
const STAGGER: Duration = Duration::from_secs(60);
/// How long a host may take to be Healthy once launched.
const BOOT: Duration = Duration::from_secs(240);
const TOPIC: &str = "staggered-birth";
const RECORDS: u32 = 1_000;

#[test]
fn combined_controllers_launched_a_minute_apart_are_born_on_the_birth_rule_and_serve() {
    if !berth_testkit::require_root(
        "combined_controllers_launched_a_minute_apart_are_born_on_the_birth_rule_and_serve",
    ) {
        return;
    }
    asg::with_group(options(3, 0), |fleet| async move {
        staggered_birth(&fleet).await
    })
    .expect("combined nodes launched a minute apart");
}

#[test]
fn dedicated_controllers_launched_a_minute_apart_are_born_on_the_birth_rule_and_brokers_serve() {
    if !berth_testkit::require_root(
        "dedicated_controllers_launched_a_minute_apart_are_born_on_the_birth_rule_and_brokers_serve",
    ) {
        return;
    }
    asg::with_group(options(5, 3), |fleet| async move {
        staggered_birth(&fleet).await
    })
    .expect("dedicated controllers launched a minute apart, and two brokers");
}

/// A KRaft fleet on EC2 claims of `brokers` ids, the first `controllers` of them dedicated controllers (0: every
/// id a combined node), its voters' groups launching `STAGGER` apart.
fn options(brokers: u32, controllers: u32) -> FleetOptions {
    FleetOptions {
        kafka: SimKafka::Kraft,
        claim_backend: ClaimBackend::Ec2,
        brokers,
        controllers,
        asg: AsgOptions {
            stagger: STAGGER,
            ..AsgOptions::default()
        },
        ..FleetOptions::default()
    }
}

async fn staggered_birth(fleet: &Fleet) -> anyhow::Result<()> {
    let started = Instant::now();
    let launches = launches(fleet).await?;
    let controllers: Vec<&Launch> = launches
        .iter()
        .filter(|l| l.role != HostRole::Broker)
        .collect();
    for pair in controllers.windows(2) {
        let apart = pair[1].at - pair[0].at;
        ensure!(
            apart >= STAGGER,
            "controller hosts {} and {} launched only {apart:?} apart",
            pair[0].host,
            pair[1].host
        );
    }
    claimed_their_own_ids(fleet, &launches).await?;
    asg::wait_all_in_service(fleet, BOOT).await?;
    let stack = asg::stack_name(&fleet.options().cluster);
    let complete = || {
        fleet
            .aws()
            .read(|plane| plane.stacks.status(&stack))
            .is_some_and(|status| status.as_str() == "CREATE_COMPLETE")
    };
    asg::wait_members(
        fleet,
        "the stack CREATE_COMPLETE (a SUCCESS per host)",
        BOOT,
        |_| complete(),
    )
    .await?;
    let formed = started.elapsed();
    quorum_committed(fleet).await?;
    serves(fleet).await?;
    let decisions = birth_rule_decided(fleet, &controllers)?;
    for broker in launches.iter().filter(|l| l.role == HostRole::Broker) {
        let journal = journal(fleet, broker.host)?;
        let format = entry(&journal, "formatting KRaft storage")
            .with_context(|| format!("broker host {}: no format in its journal", broker.host))?;
        ensure!(
            format["BERTH_FORMAT_BASIS"].as_str() == Some("broker"),
            "broker host {} formatted on {}",
            broker.host,
            format["BERTH_FORMAT_BASIS"]
        );
    }
    println!(
        "{} hosts launched (controllers {:?} s after the first); all Healthy and in service {:.1}s after the \
         start, served {RECORDS} records exactly at {:.1}s; formats:\n{}",
        launches.len(),
        controllers
            .iter()
            .map(|l| (l.at - launches[0].at).as_secs())
            .collect::<Vec<_>>(),
        formed.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        decisions.join("\n")
    );
    Ok(())
}

/// One host the groups launched: its index, role and when the test first saw it a member.
struct Launch {
    host: usize,
    role: HostRole,
    at: Instant,
}

/// Follows the groups (on the endpoint's changes) until every group has launched its capacity; each launch in
/// order.
async fn launches(fleet: &Fleet) -> anyhow::Result<Vec<Launch>> {
    let capacity = asg::groups(fleet.options()).capacity();
    let timeout = STAGGER * 3 + BOOT;
    let mut seen: Vec<(String, Instant)> = Vec::new();
    while seen.len() < capacity {
        let known: Vec<String> = seen.iter().map(|(id, _)| id.clone()).collect();
        let members = asg::wait_members(fleet, "a new member", timeout, |members| {
            members.iter().any(|m| !known.contains(&m.instance_id))
        })
        .await?;
        let now = Instant::now();
        for member in members {
            if !seen.iter().any(|(id, _)| *id == member.instance_id) {
                seen.push((member.instance_id, now));
            }
        }
    }
    seen.into_iter()
        .map(|(instance, at)| {
            let host = asg::host_of(fleet, &instance)
                .with_context(|| format!("member {instance} has no live host"))?;
            Ok(Launch {
                host: host.index,
                role: host.role,
                at,
            })
        })
        .collect()
}

/// Waits until every launched host is Healthy; a controller host (combined or dedicated) holds a controller id
/// and a broker-only host a broker id, every id once.
async fn claimed_their_own_ids(fleet: &Fleet, launches: &[Launch]) -> anyhow::Result<()> {
    let options = fleet.options();
    let mut claimed = Vec::new();
    for launch in launches {
        let state = fleet.wait_healthy(launch.host, BOOT).await?;
        let id = state.broker_id.context("Healthy without an id")?;
        let allowed = match launch.role {
            HostRole::Broker => options.broker_ids(),
            HostRole::Combined | HostRole::Controller => options.controller_ids(),
        };
        ensure!(
            allowed.contains(&id),
            "host {} ({:?}) claimed {id}, not one of {allowed:?}",
            launch.host,
            launch.role
        );
        claimed.push(id);
    }
    claimed.sort_unstable();
    ensure!(
        claimed == (0..options.brokers).collect::<Vec<_>>(),
        "ids claimed {claimed:?}"
    );
    Ok(())
}

/// Polls DescribeQuorum (every 200 ms) until a leader describes the controller ids as the voters, at a known
/// high watermark, each fetched up to it.
async fn quorum_committed(fleet: &Fleet) -> anyhow::Result<()> {
    let ids = fleet.options().controller_ids();
    let controllers: Vec<Peer> = fleet_kafka::controller_listeners(fleet)
        .into_iter()
        .map(|(id, address)| Peer::new(id, address))
        .collect();
    let started = Instant::now();
    loop {
        let client = KafkaClient::plaintext();
        let seen = quorum::observe(&client, &controllers, Duration::from_secs(3)).await;
        if let Quorum::Described(view) = &seen {
            if view.leader_id >= 0
                && view.high_watermark > 0
                && voter_ids(view) == ids.iter().map(|id| i64::from(*id)).collect::<Vec<_>>()
                && view
                    .voters
                    .iter()
                    .all(|v| v.log_end_offset >= view.high_watermark)
            {
                return Ok(());
            }
        }
        ensure!(
            started.elapsed() < BOOT,
            "quorum not committed within {BOOT:?}: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The voters' ids, in order.
fn voter_ids(view: &QuorumView) -> Vec<i64> {
    let mut ids: Vec<i64> = view.voters.iter().map(|v| i64::from(v.id)).collect();
    ids.sort_unstable();
    ids
}

/// The brokers serve: a topic replicated on every broker (at most three), records produced with acks=all, every
/// one consumed back exactly once.
async fn serves(fleet: &Fleet) -> anyhow::Result<()> {
    let install = fleet.kafka().context("Apache Kafka installed")?.clone();
    let client = fleet_kafka::client(fleet, &install);
    let replicas = fleet.options().broker_ids().len().min(3);
    let topic = TopicSpec {
        name: TOPIC.into(),
        partitions: 6,
        replication_factor: u32::try_from(replicas)?,
        configs: vec![("min.insync.replicas".into(), replicas.min(2).to_string())],
    };
    blocking(|| client.create_topic(&topic))?;
    blocking(|| client.produce_range(TOPIC, 0..RECORDS, 0))?;
    fleet_kafka::consume_exactly(&client, TOPIC, RECORDS)?;
    Ok(())
}

/// Each controller's format, read from its journal (`journalctl -u berth -o json`), was decided by the birth
/// rule on positive evidence: the first launched formatted as the birth with every controller volume seen
/// unmarked, the last beside a majority of the born cluster; every controller marked its volume born after.
/// The decisions, one line each.
fn birth_rule_decided(fleet: &Fleet, controllers: &[&Launch]) -> anyhow::Result<Vec<String>> {
    let count = controllers.len();
    let mut decisions = Vec::new();
    for (order, launch) in controllers.iter().enumerate() {
        let journal = journal(fleet, launch.host)?;
        let format = entry(&journal, "formatting KRaft storage")
            .with_context(|| format!("host {}: no format in its journal", launch.host))?;
        let field = |name: &str| format[name].as_str().unwrap_or_default().to_owned();
        let (basis, birth, why) = (
            field("BERTH_FORMAT_BASIS"),
            field("BERTH_BIRTH"),
            field("WHY"),
        );
        let every_volume = (0..3).all(|id| birth.contains(&format!("(controller {id})")));
        match order {
            0 => ensure!(
                basis == "birth" && birth.starts_with("unborn: ") && every_volume,
                "host {} (launched first) formatted on {basis:?} with birth evidence {birth:?}: {why}",
                launch.host
            ),
            _ if order == count - 1 => ensure!(
                basis == "majority" && birth.starts_with("born: "),
                "host {} (launched last) formatted on {basis:?} with birth evidence {birth:?}: {why}",
                launch.host
            ),
            _ => ensure!(
                basis == "birth" && birth.starts_with("unborn: ") && every_volume
                    || basis == "majority" && birth.starts_with("born: "),
                "host {} formatted on {basis:?} with birth evidence {birth:?}: {why}",
                launch.host
            ),
        }
        let mark = entry(&journal, "this controller's volume is marked as born")
            .with_context(|| format!("host {}: its volume was never marked born", launch.host))?;
        decisions.push(format!(
            "  host {} ({:?}): {basis}: {why} | then {}",
            launch.host,
            launch.role,
            mark["BERTH_BIRTH_MARK"].as_str().unwrap_or_default()
        ));
    }
    Ok(decisions)
}

/// Host `index`'s berth journal, one JSON entry per line.
fn journal(fleet: &Fleet, index: usize) -> anyhow::Result<Vec<serde_json::Value>> {
    let host = fleet.host(index)?;
    Ok(systemd_host::journal_entries(
        host.container(),
        systemd_host::BERTH_UNIT,
        &[],
    )?)
}

/// The first journal entry whose message contains `message`.
fn entry<'a>(journal: &'a [serde_json::Value], message: &str) -> Option<&'a serde_json::Value> {
    journal.iter().find(|entry| {
        entry["MESSAGE"]
            .as_str()
            .is_some_and(|m| m.contains(message))
    })
}
