//! `berth-sim demo`: the README's first command, the whole mission in under two minutes.
//!
//! By default the fleet is Kafka 4.x in KRaft mode with `claim.backend = "ec2"` and no ZooKeeper process
//! anywhere: the ENI attachments are the claims. `--zookeeper` runs the card's ZooKeeper claims instead (an
//! ensemble, `claim.backend = "zookeeper"`). Either way the demo says which backend holds the claims and shows
//! them, read from there ([`crate::claims`]), after the boot and after the replacement.
//!
//! The simulated Auto Scaling group launches three brokers in three zones; they boot concurrently to Healthy and
//! the stack's CreationPolicy completes. Data is written on each broker's volume; host 0 is killed, and the
//! group (not the demo) notices the dead instance and launches a replacement in its zone, which becomes broker 0
//! again, with the same address and the same data; its SignalResource is refused (no stack operation awaits it)
//! while its launch hook is completed, so it goes in service. A timeline per host (states and durations, read
//! from berth's `/state`) and the group's history show how, and so does a picture: the hosts' states as bars on
//! one time axis, the kill and the replacement marked ([`crate::timeline_svg`]), which `berth-sim demo` writes
//! to a file.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use berth_testkit::aws::autoscaling::LifecycleState;
use berth_testkit::kafka::Client;

use crate::asg;
use crate::claims;
use crate::fleet::{Fleet, FleetOptions};
use crate::kafka::blocking;
use crate::state::{render_timeline, StateView};
use crate::timeline_svg::{self, Mark, Row};

/// The demo's topic.
pub const TOPIC: &str = "demo";
/// Records produced before the kill.
const RECORDS: u32 = 10_000;
/// Records produced while broker 0 is away.
const WHILE_AWAY: u32 = 1_000;
/// Lines of each host's berth journal shown.
const JOURNAL_LINES: usize = 40;

const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// What the demo observed, for its summary and for tests.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// The final timeline text, one block per host, and the group's history.
    pub text: String,
    /// Time from the kill to the replacement's Healthy.
    pub replace: Duration,
    /// The replaced broker's id (0).
    pub broker_id: u32,
    /// The SVG timeline: one row per host, its states on one time axis, the kill and the replacement marked.
    pub svg: String,
}

/// Runs the demo on a fresh fleet; prints progress to stdout and returns the report.
pub fn run(options: FleetOptions) -> anyhow::Result<DemoReport> {
    asg::with_group(options, |fleet| async move { scenario(&fleet).await })
}

fn say(line: impl AsRef<str>) {
    println!("[berth-sim] {}", line.as_ref());
}

async fn scenario(fleet: &Fleet) -> anyhow::Result<DemoReport> {
    let started = Instant::now();
    let (hosts, booted) = boot(fleet).await?;
    let install = fleet
        .kafka()
        .context("the demo runs Apache Kafka (BERTHSIM_KAFKA=kraft, the default, or zookeeper)")?
        .clone();
    let client = crate::kafka::client(fleet, &install);
    blocking(|| client.create_topic(&crate::kafka::replicated_topic(TOPIC)))?;
    let mode = format!("{:?}", fleet.options().kafka.mode()).to_lowercase();
    say(format!(
        "Apache Kafka {} ({mode}): topic {TOPIC} created, 6 partitions, replication factor 3, min.insync.replicas=2",
        install.version(),
    ));
    blocking(|| client.produce_range(TOPIC, 0..RECORDS, 0))?;
    say(format!(
        "produced {RECORDS} keyed records with acks=all (kcat, librdkafka)"
    ));
    let victim = booted
        .iter()
        .position(|s| s.broker_id == Some(0))
        .context("no host is broker 0")?;
    let replaced = replace(fleet, &client, hosts[victim], &booted[victim], started).await?;
    show_claims(fleet, "after the replacement").await?;
    let report = crate::kafka::consume_exactly(&client, TOPIC, RECORDS + WHILE_AWAY)?;
    say(format!(
        "consumed every record: {} read of {} produced, 0 missing, 0 duplicated",
        report.records.len(),
        RECORDS + WHILE_AWAY
    ));
    say(format!(
        "broker 0 re-fetched {} bytes plus what the power loss took ({} bytes of volume blocks, log and \
         metadata alike): it held {} bytes of {TOPIC} before the kill and {} once in sync, so it fetched what \
         was produced while it was away and what its volume lost, not the partitions' size",
        replaced.held_after.saturating_sub(replaced.killed.held_before),
        replaced.killed.lost_at_death,
        replaced.killed.held_before,
        replaced.held_after,
    ));
    let refused = fleet
        .aws()
        .calls_from("SignalResource", &replaced.instance)
        .iter()
        .find_map(|call| call.refusal().map(str::to_owned))
        .unwrap_or_else(|| "-".into());
    say(format!(
        "its SignalResource was refused, as outside any stack update AWS refuses it: {refused}"
    ));
    let svg = picture(fleet, &hosts, &replaced, started).await?;
    let text = timelines(fleet, &hosts, &booted, &replaced, started)?;
    println!("\n{text}");
    say("cleaning up (processes, mounts, loop devices, namespaces, servers)");
    Ok(DemoReport {
        text,
        replace: replaced.healthy_after,
        broker_id: replaced.state.broker_id.unwrap_or(0),
        svg,
    })
}

/// What the region holds once the fleet is up: the stack the template created, or the simulator's groups.
fn region_up(fleet: &Fleet, zookeeper: &str) -> String {
    let options = fleet.options();
    let groups = fleet.asg_groups().names().join(", ");
    let stack = asg::stack_name(&options.cluster);
    match &options.stack {
        Some(template) => format!(
            "region up: {zookeeper}, strict moto, {} zones; stack {stack} created from {}: its security groups \
             (enforced between the hosts), {} broker ids (tagged ENI + volume each) and launch template, then its \
             Auto Scaling groups {groups} one after another (DependsOn); each host runs the user data",
            options.zones,
            std::fs::canonicalize(template)
                .unwrap_or_else(|_| template.clone())
                .display(),
            options.brokers,
        ),
        None => format!(
            "region up: {zookeeper}, strict moto, {} zones, {} broker ids (tagged ENI + volume each); \
             Auto Scaling groups {groups} (one per zone) with launch and terminate hooks, stack {stack} awaiting \
             {} signals",
            options.zones, options.brokers, options.brokers,
        ),
    }
}

/// Waits until the group's hosts are Healthy with unique ids and InService; their indexes and states.
async fn boot(fleet: &Fleet) -> anyhow::Result<(Vec<usize>, Vec<StateView>)> {
    let options = fleet.options();
    let zookeeper = fleet.zookeeper().map_or_else(
        || "no ZooKeeper process anywhere".to_owned(),
        |zk| {
            let claims = options.claim_backend == berth_config::ClaimBackend::Zookeeper;
            let kafka = options.kafka != crate::SimKafka::Kraft;
            let holds = match (claims, kafka) {
                (true, true) => "the claims and Kafka's metadata",
                (true, false) => "the claims",
                _ => "Kafka's metadata (ZooKeeper mode)",
            };
            format!("ZooKeeper ensemble {} for {holds}", zk.connect_string())
        },
    );
    say(region_up(fleet, &zookeeper));
    let count = options.zones * options.asg.per_zone;
    asg::wait_members(fleet, "every zone launched", BOOT_TIMEOUT, |m| {
        m.len() >= count
    })
    .await?;
    let mut hosts: Vec<usize> = fleet.hosts().iter().map(|h| h.index).collect();
    hosts.sort_unstable();
    let held = if options.stack.is_some() {
        "the stack's first instances InService at launch, its launch hooks added after its groups"
    } else {
        "Pending:Wait on the launch hook"
    };
    say(format!(
        "the Auto Scaling groups launched {} hosts ({held}); waiting for Healthy",
        hosts.len()
    ));
    let mut booted: Vec<StateView> = Vec::new();
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
        say(format!(
            "host {host} ({}, {}) is broker {} at {}, Healthy",
            crate::layout::zone_name(h.az),
            h.instance.id,
            state.broker_id.context("Healthy without a broker id")?,
            state
                .eni
                .as_ref()
                .map(|e| e.ip.as_str())
                .unwrap_or_default(),
        ));
    }
    show_claims(fleet, "after the boot").await?;
    Ok((hosts, booted))
}

/// Says which backend holds the claims and shows them, read from there.
async fn show_claims(fleet: &Fleet, when: &str) -> anyhow::Result<()> {
    let backend = match fleet.options().claim_backend {
        berth_config::ClaimBackend::Ec2 => {
            "claim.backend = \"ec2\": each id's ENI attachment is its claim"
        }
        berth_config::ClaimBackend::Zookeeper => {
            "claim.backend = \"zookeeper\": an ephemeral znode per id, held by berth's session"
        }
    };
    say(format!("claims {when} ({backend}):"));
    for claim in claims::held(fleet).await? {
        say(format!(
            "  broker {} held by {}: {}",
            claim.broker_id, claim.instance_id, claim.evidence
        ));
    }
    Ok(())
}

/// What the replacement of broker 0 showed.
struct Replaced {
    victim: usize,
    killed: Killed,
    host: usize,
    instance: String,
    state: StateView,
    healthy_after: Duration,
    held_after: u64,
}

/// The victim just before its kill, and the kill.
struct Killed {
    /// Its `/state`, read just before the kill, and when (on the demo's clock).
    view: StateView,
    read_ms: u64,
    /// When it was killed.
    at: Instant,
    at_ms: u64,
    /// Bytes of the topic on its volume.
    held_before: u64,
    /// Bytes of its volume written after its death (lost with the power).
    lost_at_death: u64,
    /// Its berth journal.
    journal: String,
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Reads what the picture and the summary need of host `victim`, then kills it: SIGKILL, mounts gone, instance
/// terminated.
async fn kill(fleet: &Fleet, victim: usize, started: Instant) -> anyhow::Result<Killed> {
    let victim_host = fleet.host(victim)?;
    let held_before = crate::kafka::topic_bytes(&victim_host.mount_path().join("data"), TOPIC);
    let journal = crate::kafka::berth_journal(victim_host.container(), JOURNAL_LINES);
    let view = fleet.state(victim).await?;
    let read_ms = millis(started.elapsed());
    say(format!(
        "killing host {victim} (broker 0, {}; it holds {held_before} bytes of {TOPIC}): power lost, SIGKILL, \
         mounts gone, instance terminated",
        victim_host.instance.id
    ));
    let at = Instant::now();
    fleet.kill_host(victim, None).await?;
    let lost_at_death = fleet.lost_at_death(victim).unwrap_or_default();
    say(format!(
        "its volume lost {lost_at_death} bytes with the power (written to the page cache, not yet to the \
         volume): Kafka recovers its log from what reached the volume"
    ));
    Ok(Killed {
        view,
        read_ms,
        at,
        at_ms: millis(at.duration_since(started)),
        held_before,
        lost_at_death,
        journal,
    })
}

/// Kills broker 0's host, produces while it is away, and waits for the group's replacement to be broker 0 on
/// the same address and for every partition to be fully in sync again.
async fn replace(
    fleet: &Fleet,
    client: &Client,
    victim: usize,
    before: &StateView,
    started: Instant,
) -> anyhow::Result<Replaced> {
    let victim_host = fleet.host(victim)?;
    let killed = kill(fleet, victim, started).await?;
    blocking(|| client.produce_range(TOPIC, RECORDS..RECORDS + WHILE_AWAY, 0))?;
    say(format!(
        "while broker 0 is away, produced {WHILE_AWAY} more records (acks=all: two in-sync replicas suffice)"
    ));
    let zone = crate::layout::zone_name(victim_host.az);
    let (instance, host) = asg::replacement_of(fleet, &victim_host, BOOT_TIMEOUT).await?;
    say(format!(
        "the Auto Scaling group noticed the dead instance and launched host {host} ({instance}) in {zone}"
    ));
    let state = fleet.wait_healthy(host, BOOT_TIMEOUT).await?;
    let healthy_after = killed.at.elapsed();
    asg::wait_members(fleet, "the replacement in service", BOOT_TIMEOUT, |m| {
        m.iter()
            .any(|m| m.instance_id == instance && m.state == LifecycleState::InService)
    })
    .await?;
    let ip = |s: &StateView| s.eni.as_ref().map(|e| e.ip.clone());
    ensure!(
        state.broker_id == before.broker_id && ip(&state) == ip(before),
        "replacement became broker {:?} at {:?}, not {:?} at {:?}",
        state.broker_id,
        ip(&state),
        before.broker_id,
        ip(before)
    );
    let synced = blocking(|| {
        crate::kafka::wait_fully_replicated(client, TOPIC, BOOT_TIMEOUT).map_err(anyhow::Error::msg)
    })?;
    let in_sync = killed.at.elapsed();
    let held_after = crate::kafka::topic_bytes(&fleet.host(host)?.mount_path().join("data"), TOPIC);
    say(format!(
        "replacement host {host} is broker {} at {} on volume {}, Healthy {:.1}s after the kill, InService; \
         every partition fully in sync {:.1}s after the kill ({} partitions, ISR = replicas)",
        state.broker_id.unwrap_or_default(),
        ip(&state).unwrap_or_default(),
        state.volume.as_ref().map_or("-", |v| v.id.as_str()),
        healthy_after.as_secs_f64(),
        in_sync.as_secs_f64(),
        synced.len(),
    ));
    Ok(Replaced {
        victim,
        killed,
        host,
        instance,
        state,
        healthy_after,
        held_after,
    })
}

/// The SVG timeline: the killed host until its kill, the others (the replacement last) until now, their `/state`
/// read again; the kill and the replacement's berth's start marked.
async fn picture(
    fleet: &Fleet,
    hosts: &[usize],
    replaced: &Replaced,
    started: Instant,
) -> anyhow::Result<String> {
    let broker = |view: &StateView| view.broker_id.map_or("-".into(), |id| id.to_string());
    let killed = &replaced.killed;
    let mut rows = vec![Row::of(
        format!(
            "host {} (broker {}, killed)",
            replaced.victim,
            broker(&killed.view)
        ),
        &killed.view,
        killed.read_ms,
    )
    .last_until(killed.at_ms)];
    let alive = hosts.iter().filter(|&&host| host != replaced.victim);
    for &host in alive.chain([&replaced.host]) {
        let view = fleet.state(host).await?;
        let role = if host == replaced.host {
            ", replacement"
        } else {
            ""
        };
        let label = format!("host {host} (broker {}{role})", broker(&view));
        rows.push(Row::of(label, &view, millis(started.elapsed())));
    }
    let replacement = rows.pop().context("the replacement's row")?;
    let marks = [
        Mark {
            at_ms: killed.at_ms,
            row: 0,
            label: "killed".into(),
            kill: true,
        },
        Mark {
            at_ms: replacement.start_ms().unwrap_or(killed.at_ms),
            row: rows.len(),
            label: "replacement's berth starts".into(),
            kill: false,
        },
    ];
    rows.push(replacement);
    let title = format!(
        "broker {} replaced: Healthy {:.1} s after the kill",
        broker(&replaced.state),
        replaced.healthy_after.as_secs_f64()
    );
    Ok(timeline_svg::render(&title, &rows, &marks))
}

/// Per host, the timeline from `/state` and berth's journal, then the group's history.
fn timelines(
    fleet: &Fleet,
    hosts: &[usize],
    booted: &[StateView],
    replaced: &Replaced,
    started: Instant,
) -> anyhow::Result<String> {
    let mut text = String::new();
    for (&host, state) in hosts.iter().zip(booted) {
        let title = if host == replaced.victim {
            format!("host {host} (killed)")
        } else {
            format!("host {host}")
        };
        text.push_str(&render_timeline(&title, state));
    }
    text.push_str(&render_timeline(
        &format!("host {} (replacement)", replaced.host),
        &replaced.state,
    ));
    let _ = writeln!(
        text,
        "journalctl -u berth on host {} (killed; read just before the kill):\n{}",
        replaced.victim, replaced.killed.journal
    );
    let _ = writeln!(
        text,
        "journalctl -u berth on host {} (replacement):\n{}",
        replaced.host,
        crate::kafka::berth_journal(fleet.host(replaced.host)?.container(), JOURNAL_LINES)
    );
    let _ = writeln!(text, "Auto Scaling group history:");
    for line in asg::history(fleet) {
        let _ = writeln!(text, "  {line}");
    }
    let _ = writeln!(
        text,
        "total demo time {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(text)
}
