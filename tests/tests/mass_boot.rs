//! Twelve hosts (four per zone) boot at once while the ZooKeeper leader is killed and EC2 answers bursts of
//! throttling and server errors: every host ends Healthy with a unique id from its own zone, nothing duplicated.

use std::time::Duration;

use berth_e2e::{all_healthy, assert_converged, assert_unique_ids, claimed_ids};
use berth_sim::{FleetOptions, SimKafka};
use berth_testkit::aws::Fault;

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
        for action in [
            "AttachNetworkInterface",
            "AttachVolume",
            "DescribeNetworkInterfaces",
            "DescribeVolumes",
        ] {
            fleet.inject(action, Fault::Throttle, 8);
        }
        fleet.inject("DescribeInstances", Fault::ServerError, 4);
        let zones: Vec<usize> = (0..12).map(|n| n % 3).collect();
        let hosts = fleet.launch_many(&zones).await?;
        // Kill the leader while the hosts are claiming.
        let zk = fleet
            .zookeeper()
            .ok_or_else(|| anyhow::anyhow!("no ZooKeeper ensemble"))?;
        let leader = zk
            .leader()
            .ok_or_else(|| anyhow::anyhow!("no ZooKeeper leader"))?;
        zk.kill(leader);
        let states = all_healthy(&fleet, &hosts, Duration::from_secs(240)).await?;
        assert_unique_ids(&states, 12)?;
        for (&host, state) in hosts.iter().zip(&states) {
            assert_converged(&fleet, host, state).await?;
        }
        anyhow::ensure!(
            claimed_ids(&fleet).await?.len() == 12,
            "claims after the mass boot"
        );
        let faulted: usize = [
            "AttachNetworkInterface",
            "AttachVolume",
            "DescribeNetworkInterfaces",
            "DescribeVolumes",
            "DescribeInstances",
        ]
        .iter()
        .map(|a| fleet.proxy().faulted(a))
        .sum();
        anyhow::ensure!(faulted > 0, "no fault was injected");
        println!("12 hosts Healthy through a leader kill and {faulted} injected faults");
        Ok(())
    })
    .expect("mass boot");
}

/// The same mass boot with `claim.backend = "ec2"`: the ENI attachment is the claim. Every host ends Healthy
/// with a unique id from its own zone, and no claim znode was written (ZooKeeper still runs, for the ZooKeeper-mode
/// Kafka stand-in only).
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
        for action in ["AttachNetworkInterface", "DescribeNetworkInterfaces"] {
            fleet.inject(action, Fault::Throttle, 8);
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
        println!("12 hosts Healthy, claimed by ENI attachment");
        Ok(())
    })
    .expect("mass boot with the ec2 claim backend");
}
