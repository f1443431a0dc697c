//! `berth-sim demo`: the README's first command, the whole mission in under two minutes.
//!
//! Three brokers in three zones boot concurrently to Healthy; data is written on each broker's volume; host 0 is
//! killed and a replacement launched in its zone becomes broker 0 again, with the same address and the same data.
//! A timeline per host (states and durations, read from berth's `/state`) shows how each got there.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};

use crate::fleet::{Fleet, FleetOptions};
use crate::state::{render_timeline, BerthState};

/// Where the demo writes each broker's data, relative to the broker's mount root (inside its Kafka log dir).
pub const DATA_FILE: &str = "data/berth-sim-demo.txt";

const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// What the demo observed, for its summary and for tests.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// The final timeline text, one block per host.
    pub text: String,
    /// Time from the kill to the replacement's Healthy.
    pub replace: Duration,
    /// The replaced broker's id (0).
    pub broker_id: u32,
}

/// Runs the demo on a fresh fleet; prints progress to stdout and returns the report.
pub fn run(options: FleetOptions) -> anyhow::Result<DemoReport> {
    crate::with_fleet(options, |fleet| async move { scenario(&fleet).await })
}

fn say(line: impl AsRef<str>) {
    println!("[berth-sim] {}", line.as_ref());
}

async fn scenario(fleet: &Fleet) -> anyhow::Result<DemoReport> {
    let started = Instant::now();
    say(format!(
        "region up: ZooKeeper ensemble {}, strict moto, {} zones, {} broker ids (tagged ENI + volume each)",
        fleet.zookeeper().connect_string(),
        fleet.options().zones,
        fleet.options().brokers
    ));
    let zones: Vec<usize> = (0..fleet.options().brokers as usize)
        .map(|n| n % fleet.options().zones)
        .collect();
    let hosts = fleet.launch_many(&zones).await?;
    say(format!(
        "launched {} hosts concurrently; waiting for Healthy",
        hosts.len()
    ));
    let mut booted: Vec<BerthState> = Vec::new();
    for &host in &hosts {
        let state = fleet.wait_healthy(host, BOOT_TIMEOUT).await?;
        booted.push(state);
    }
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
            "host {host} ({}) is broker {id} at {ip}, Healthy",
            crate::layout::zone_name(h.az)
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
    let victim_az = fleet.host(victim)?.az;
    say(format!(
        "killing host {victim} (broker {:?}): SIGKILL, mounts gone, instance terminated",
        before.broker_id
    ));
    let killed = Instant::now();
    fleet.kill_host(victim, None).await?;
    let replacement = fleet.launch(victim_az).await?;
    say(format!(
        "replacement host {replacement} launched in {}",
        crate::layout::zone_name(victim_az)
    ));
    let after = fleet.wait_healthy(replacement, BOOT_TIMEOUT).await?;
    let replace = killed.elapsed();
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
    say(format!(
        "replacement host {replacement} is broker {:?} at {}, Healthy {:.1}s after the kill; its volume holds: {}",
        after.broker_id,
        ip(&after).unwrap_or_default(),
        replace.as_secs_f64(),
        data.trim()
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
