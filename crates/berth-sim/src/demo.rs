//! `berth-sim demo`: the README's first command, the whole mission in under two minutes.
//!
//! The simulated Auto Scaling group launches three brokers in three zones; they boot concurrently to Healthy and
//! the stack's CreationPolicy completes. Data is written on each broker's volume; host 0 is killed, and the
//! group (not the demo) notices the dead instance and launches a replacement in its zone, which becomes broker 0
//! again, with the same address and the same data; its SignalResource is refused (no stack operation awaits it)
//! while its launch hook is completed, so it goes in service. A timeline per host (states and durations, read
//! from berth's `/state`) and the group's history show how.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use berth_testkit::aws::autoscaling::LifecycleState;

use crate::asg;
use crate::fleet::{Fleet, FleetOptions};
use crate::state::{render_timeline, BerthState};

/// Where the demo writes each broker's data, relative to the broker's mount root (inside its Kafka log dir).
pub const DATA_FILE: &str = "data/berth-sim-demo.txt";

const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// What the demo observed, for its summary and for tests.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// The final timeline text, one block per host, and the group's history.
    pub text: String,
    /// Time from the kill to the replacement's Healthy.
    pub replace: Duration,
    /// The replaced broker's id (0).
    pub broker_id: u32,
}

/// Runs the demo on a fresh fleet; prints progress to stdout and returns the report.
pub fn run(options: FleetOptions) -> anyhow::Result<DemoReport> {
    asg::with_group(
        options,
        |_| Ok(()),
        |fleet| async move { scenario(&fleet).await },
    )
}

fn say(line: impl AsRef<str>) {
    println!("[berth-sim] {}", line.as_ref());
}

async fn scenario(fleet: &Fleet) -> anyhow::Result<DemoReport> {
    let started = Instant::now();
    let options = fleet.options();
    say(format!(
        "region up: ZooKeeper ensemble {}, strict moto, {} zones, {} broker ids (tagged ENI + volume each); \
         Auto Scaling group {} with launch and terminate hooks, stack {} awaiting {} signals",
        fleet.zookeeper().connect_string(),
        options.zones,
        options.brokers,
        asg::group_name(&options.cluster),
        asg::stack_name(&options.cluster),
        options.brokers,
    ));
    let count = options.zones * options.asg.per_zone;
    asg::wait_members(fleet, "every zone launched", BOOT_TIMEOUT, |m| {
        m.len() >= count
    })
    .await?;
    let mut hosts: Vec<usize> = fleet.hosts().iter().map(|h| h.index).collect();
    hosts.sort_unstable();
    say(format!(
        "the Auto Scaling group launched {} hosts (Pending:Wait on the launch hook); waiting for Healthy",
        hosts.len()
    ));
    let mut booted: Vec<BerthState> = Vec::new();
    for &host in &hosts {
        booted.push(fleet.wait_healthy(host, BOOT_TIMEOUT).await?);
    }
    asg::wait_members(fleet, "every member in service", BOOT_TIMEOUT, |m| {
        m.iter()
            .filter(|m| m.state == LifecycleState::InService)
            .count()
            >= count
    })
    .await?;
    let stack = fleet
        .aws()
        .read(|plane| plane.stacks.status(&asg::stack_name(&options.cluster)))
        .map_or("-", |status| status.as_str());
    say(format!("every host InService; stack {stack}"));
    let mut ids: Vec<u32> = booted.iter().filter_map(|s| s.broker_id).collect();
    ids.sort_unstable();
    ids.dedup();
    ensure!(
        ids.len() == hosts.len(),
        "duplicate or missing broker ids: {booted:?}"
    );
    for (&host, state) in hosts.iter().zip(&booted) {
        let h = fleet.host(host)?;
        let id = state.broker_id.context("Healthy without a broker id")?;
        let ip = state.eni.as_ref().map(|e| e.ip.clone()).unwrap_or_default();
        say(format!(
            "host {host} ({}, {}) is broker {id} at {ip}, Healthy",
            crate::layout::zone_name(h.az),
            h.instance.id
        ));
        let path = h.mount_path().join(DATA_FILE);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        std::fs::write(&path, format!("written on broker {id} by host {host}\n"))
            .with_context(|| format!("write {}", path.display()))?;
    }
    let victim = hosts[0];
    let before = booted[0].clone();
    let victim_host = fleet.host(victim)?;
    say(format!(
        "killing host {victim} (broker {}, {}): SIGKILL, mounts gone, instance terminated",
        before.broker_id.unwrap_or_default(),
        victim_host.instance.id
    ));
    let killed = Instant::now();
    fleet.kill_host(victim, None).await?;
    let zone = crate::layout::zone_name(victim_host.az);
    let members = asg::wait_members(fleet, "a replacement launched", BOOT_TIMEOUT, |m| {
        m.iter()
            .any(|m| m.availability_zone == zone && m.instance_id != victim_host.instance.id)
    })
    .await?;
    let new_instance = members
        .iter()
        .find(|m| m.availability_zone == zone && m.instance_id != victim_host.instance.id)
        .map(|m| m.instance_id.clone())
        .context("replacement member")?;
    let replacement = asg::host_of(fleet, &new_instance)
        .context("the replacement's host")?
        .index;
    say(format!(
        "the Auto Scaling group noticed the dead instance and launched host {replacement} ({new_instance}) in {zone}"
    ));
    let after = fleet.wait_healthy(replacement, BOOT_TIMEOUT).await?;
    let replace = killed.elapsed();
    asg::wait_members(fleet, "the replacement in service", BOOT_TIMEOUT, |m| {
        m.iter()
            .any(|m| m.instance_id == new_instance && m.state == LifecycleState::InService)
    })
    .await?;
    let data = std::fs::read_to_string(fleet.host(replacement)?.mount_path().join(DATA_FILE))
        .unwrap_or_default();
    ensure!(
        after.broker_id == before.broker_id,
        "replacement became broker {:?}, not {:?}",
        after.broker_id,
        before.broker_id
    );
    let ip = |s: &BerthState| s.eni.as_ref().map(|e| e.ip.clone());
    ensure!(
        ip(&after) == ip(&before),
        "replacement's address {:?} differs from {:?}",
        ip(&after),
        ip(&before)
    );
    ensure!(
        data.contains(&format!("broker {}", before.broker_id.unwrap_or(0))),
        "data not found on the replacement: {data:?}"
    );
    let refused = fleet
        .aws()
        .calls_from("SignalResource", &new_instance)
        .iter()
        .find_map(|call| call.refusal().map(str::to_owned))
        .unwrap_or_else(|| "-".into());
    say(format!(
        "replacement host {replacement} is broker {} at {}, Healthy {:.1}s after the kill, InService; its volume \
         holds: {}",
        after.broker_id.unwrap_or_default(),
        ip(&after).unwrap_or_default(),
        replace.as_secs_f64(),
        data.trim()
    ));
    say(format!(
        "its SignalResource was refused, as outside any stack update AWS refuses it: {refused}"
    ));
    let mut text = String::new();
    for (&host, state) in hosts.iter().zip(&booted) {
        let title = if host == victim {
            format!("host {host} (killed)")
        } else {
            format!("host {host}")
        };
        text.push_str(&render_timeline(&title, state));
    }
    text.push_str(&render_timeline(
        &format!("host {replacement} (replacement)"),
        &after,
    ));
    let _ = writeln!(text, "Auto Scaling group history:");
    for line in asg::history(fleet) {
        let _ = writeln!(text, "  {line}");
    }
    let _ = writeln!(
        text,
        "total demo time {:.1}s",
        started.elapsed().as_secs_f64()
    );
    println!("\n{text}");
    say("cleaning up (processes, mounts, loop devices, namespaces, servers)");
    Ok(DemoReport {
        text,
        replace,
        broker_id: after.broker_id.unwrap_or(0),
    })
}
