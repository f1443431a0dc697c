//! Twelve hosts (four per zone) start at one instant (`Fleet::launch_many`: every host installed first, then
//! all their berths released by one barrier) while EC2 answers bursts of throttling and server errors, and the
//! ZooKeeper leader is killed once `/state` shows half the hosts claiming, one of them with a session ZooKeeper
//! lists (`cons`). Every host ends Healthy with a unique id from its own zone, nothing duplicated. What the test
//! claims to have exercised is proven from the hosts' `/state` timelines placed on one clock
//! ([`berth_e2e::overlap`]): all twelve Claim stays share an instant; the kill lies inside the Claim of a host
//! ZooKeeper listed just before it, whose journal shows its claim's ZooKeeper work carried through the kill (its
//! session lost and regained, or its connects failed after the kill until a session opened); and each action was
//! answered with exactly as many faults as were injected on it.

use std::time::Duration;

use anyhow::Context;
use berth_e2e::overlap::{self, CarriedThrough, Moment, Stay, Want};
use berth_e2e::{
    all_healthy, assert_converged, assert_unique_ids, claim_stays, claimed_ids, while_claiming,
    Landed,
};
use berth_sim::systemd_host::{self, BERTH_UNIT};
use berth_sim::{Fleet, FleetOptions, SimKafka};
use berth_testkit::aws::Fault;

/// The faults of the ZooKeeper-backed mass boot: each action's calls answered with a fault, and how many times.
const FAULTS: [(&str, Fault, usize); 5] = [
    ("AttachNetworkInterface", Fault::Throttle, 8),
    ("AttachVolume", Fault::Throttle, 8),
    ("DescribeNetworkInterfaces", Fault::Throttle, 8),
    ("DescribeVolumes", Fault::Throttle, 8),
    ("DescribeVolumes", Fault::ServerError, 4),
];

/// When the leader is killed: half the hosts seen claiming (enough that the kill cannot miss them all), one of
/// them with a session ZooKeeper lists (its claim's ZooKeeper work under way).
const AT_THE_KILL: Want = Want {
    claiming: 6,
    in_zookeeper: 1,
};

#[test]
fn twelve_hosts_through_leader_loss_and_throttling() {
    if !berth_testkit::require_root("twelve_hosts_through_leader_loss_and_throttling") {
        return;
    }
    // Twelve JVMs of real Kafka (~370 MB and a busy core each while starting) do not fit this machine kind:
    // the stand-in (docs/architecture.md); the claims, attachments and convergence are what is tested.
    let options = FleetOptions {
        brokers: 12,
        kafka: SimKafka::Standin,
        ..FleetOptions::default()
    };
    berth_sim::with_fleet(options, |fleet| async move {
        for (action, fault, times) in FAULTS {
            fleet.inject(action, fault, times);
        }
        let zk = fleet.zookeeper().context("no ZooKeeper ensemble")?;
        let leader = zk.leader().context("no ZooKeeper leader")?;
        let zones: Vec<usize> = (0..12).map(|n| n % 3).collect();
        let hosts = fleet.launch_many(&zones).await?;
        let landed = while_claiming(
            &fleet,
            &hosts,
            AT_THE_KILL,
            Duration::from_secs(60),
            || zk.kill(leader),
        )
        .await?;
        let states = all_healthy(&fleet, &hosts, Duration::from_secs(240)).await?;
        assert_unique_ids(&states, 12)?;
        for (&host, state) in hosts.iter().zip(&states) {
            assert_converged(&fleet, host, state).await?;
        }
        anyhow::ensure!(
            claimed_ids(&fleet).await?.len() == 12,
            "claims after the mass boot"
        );
        let claims = claim_stays(&fleet, &hosts).await?;
        let together = assert_claimed_together(&claims, hosts.len())?;
        let hit = assert_killed_mid_claim(&fleet, &claims, &landed)?;
        assert_faults_consumed(&fleet, &FAULTS)?;
        let carried: Vec<String> = hit
            .iter()
            .filter_map(|(host, how)| how.map(|how| format!("{host}: {how:?}")))
            .collect();
        println!(
            "12 hosts Healthy; all claiming at once for {} ms; the leader killed inside the Claim of hosts \
             {:?} ({} seen claiming just before, {:?} of them in ZooKeeper), carried through by {carried:?}; \
             every injected fault consumed",
            together.latest - together.earliest,
            hit.iter().map(|(host, _)| host).collect::<Vec<_>>(),
            landed.claiming.len(),
            landed.in_zookeeper,
        );
        Ok(())
    })
    .expect("mass boot");
}

/// Asserts every one of the `hosts` hosts stayed in Claim once and all those stays share an instant; returns it.
fn assert_claimed_together(claims: &[Stay], hosts: usize) -> anyhow::Result<Moment> {
    anyhow::ensure!(
        claims.len() == hosts,
        "{} Claim stays from {hosts} hosts: {claims:?}",
        claims.len()
    );
    overlap::common_instant(claims)
        .with_context(|| format!("no instant inside every host's Claim: {claims:?}"))
}

/// Asserts the kill lies inside the Claim stay of a host ZooKeeper listed a session from just before it, and that
/// this host's journal shows its claim's ZooKeeper work carried through the kill (its session lost and regained,
/// or connects failed after the kill until a session opened); returns the hosts claiming across the kill and how
/// each of them carried through.
fn assert_killed_mid_claim(
    fleet: &Fleet,
    claims: &[Stay],
    landed: &Landed,
) -> anyhow::Result<Vec<(usize, Option<CarriedThrough>)>> {
    let kill = landed.at;
    let hit = overlap::hosts_within(claims, kill);
    let mut carried = Vec::new();
    for &index in &hit {
        let host = fleet.host(index)?;
        let journal = systemd_host::journal_entries(host.container(), BERTH_UNIT, &[])?;
        carried.push((index, overlap::carried_through(&journal, kill)));
    }
    anyhow::ensure!(
        carried
            .iter()
            .any(|(host, how)| how.is_some() && landed.in_zookeeper.contains(host)),
        "no host in ZooKeeper at the kill ({:?}) was claiming across it (at {kill:?}) and carried its \
         ZooKeeper work through: {carried:?}; Claim stays {claims:?}",
        landed.in_zookeeper
    );
    Ok(carried)
}

/// Asserts each action was answered with a fault exactly as many times as faults were injected on it.
fn assert_faults_consumed(fleet: &Fleet, faults: &[(&str, Fault, usize)]) -> anyhow::Result<()> {
    let mut injected = std::collections::BTreeMap::<&str, usize>::new();
    for &(action, _, times) in faults {
        *injected.entry(action).or_default() += times;
    }
    for (action, times) in injected {
        let faulted = fleet.proxy().faulted(action);
        anyhow::ensure!(
            faulted == times,
            "{action}: {faulted} calls answered with a fault, {times} injected"
        );
    }
    Ok(())
}

/// The same mass boot with `claim.backend = "ec2"`: the ENI attachment is the claim. Every host ends Healthy
/// with a unique id from its own zone, and no claim znode was written (ZooKeeper still runs, for the ZooKeeper-mode
/// Kafka stand-in only).
/// The faults of the ec2-backed mass boot.
const EC2_FAULTS: [(&str, Fault, usize); 2] = [
    ("AttachNetworkInterface", Fault::Throttle, 8),
    ("DescribeNetworkInterfaces", Fault::Throttle, 8),
];

#[test]
fn twelve_hosts_claim_by_eni_attachment_through_throttling() {
    if !berth_testkit::require_root("twelve_hosts_claim_by_eni_attachment_through_throttling") {
        return;
    }
    let options = FleetOptions {
        brokers: 12,
        // The stand-in, as above (twelve JVMs do not fit); it runs in ZooKeeper mode, so the ensemble still runs
        // for Kafka's metadata, but the claims are the ENI attachments.
        kafka: SimKafka::Standin,
        berth_env: vec![("BERTH_CLAIM__BACKEND".into(), "ec2".into())],
        ..FleetOptions::default()
    };
    berth_sim::with_fleet(options, |fleet| async move {
        for (action, fault, times) in EC2_FAULTS {
            fleet.inject(action, fault, times);
        }
        let zones: Vec<usize> = (0..12).map(|n| n % 3).collect();
        let hosts = fleet.launch_many(&zones).await?;
        let states = all_healthy(&fleet, &hosts, Duration::from_secs(240)).await?;
        assert_unique_ids(&states, 12)?;
        for (&host, state) in hosts.iter().zip(&states) {
            assert_converged(&fleet, host, state).await?;
        }
        anyhow::ensure!(
            claimed_ids(&fleet).await?.is_empty(),
            "the ec2 backend writes no claim znode"
        );
        assert_faults_consumed(&fleet, &EC2_FAULTS)?;
        println!("12 hosts Healthy, claimed by ENI attachment; every injected fault consumed");
        Ok(())
    })
    .expect("mass boot with the ec2 claim backend");
}
