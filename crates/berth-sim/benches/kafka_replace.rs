//! bench-kafka-replace: on a three-broker KRaft fleet running Apache Kafka, a topic (6 partitions, RF 3,
//! `min.insync.replicas=2`) filled with at least 64 MiB; broker 0's host is killed (SIGKILL, instance terminated)
//! and a replacement launched in its zone becomes broker 0 on the same ENI and volume. Measured:
//!
//! - `kill_to_healthy_ms`: kill to the replacement's Healthy; `kill_to_isr_full_ms`: kill to every partition's
//!   ISR equal to its replicas (kcat's metadata, polled every 100 ms);
//! - `refetched_bytes`: what broker 0's volume gained in the topic's partition logs between the kill and ISR full
//!   (it kept the rest), with `while_away_bytes` produced while it was away; `control_refetched_bytes`: the same
//!   after a second kill, with the volume replaced by a fresh blank one for the same id (full re-replication);
//! - `berth_overhead_ms`: berth's start to Healthy minus what it waits for: the claim (the dead owner's session),
//!   the ENI and volume attachments (EC2 and the hot-plug), and Kafka's own start as Kafka logs it (first line to
//!   "Kafka Server started", from `journalctl -u kafka`). `launch_ms` (kill to berth's start: the instance's
//!   replacement and boot) is the simulated Auto Scaling's, not berth's. `jvm_before_first_log_ms` (systemd's
//!   "Started kafka.service" to Kafka's first log line: the JVM loading Kafka) is inside `berth_overhead_ms` but
//!   not berth's either; `berth_own_ms` is the overhead without it.
//! - the same split as `bench-tth`, with Kafka's start read from its log: the ENI and volume delays differ (1 s,
//!   4 s) and their attachments overlap, so `floor_ms` = claim + max(ENI, volume) + Kafka's start, and
//!   `floor_overhead_ms` = berth's start to Healthy - `floor_ms`.

use std::time::{Duration, Instant};

use anyhow::Context;
use berth_sim::bench::{self, ms_in};
use berth_sim::kafka::blocking;
use berth_sim::{kafka as fleet_kafka, Fleet, FleetOptions, SimKafka, StateView};
use berth_testkit::kafka::Client;

const BOOT: Duration = Duration::from_secs(240);
const TOPIC: &str = "replace";
/// Records before the kill (1 KiB of padding each: ~71 MiB in the topic).
const RECORDS: u32 = 70_000;
/// Records produced while broker 0 is away.
const WHILE_AWAY: u32 = 1_000;
const PADDING: usize = 1_024;

/// One kill and replacement of broker 0; the volume wiped in between when `blank`.
struct Replaced {
    kill_to_healthy_ms: u64,
    kill_to_isr_full_ms: u64,
    refetched_bytes: u64,
    state: StateView,
    kafka_start_ms: u64,
    jvm_before_first_log_ms: u64,
}

async fn replace(
    fleet: &Fleet,
    client: &Client,
    victim: usize,
    produce_from: u32,
    blank: bool,
) -> anyhow::Result<Replaced> {
    let host = fleet.host(victim)?;
    let held_before = if blank {
        0
    } else {
        fleet_kafka::topic_bytes(&host.mount_path().join("data"), TOPIC)
    };
    let killed = Instant::now();
    fleet.kill_host(victim, None).await?;
    if blank {
        let volume = &fleet.resources()[0].volume_id;
        let backing = fleet.volume_backing(volume);
        std::fs::remove_file(&backing).with_context(|| format!("remove {}", backing.display()))?;
        berth_sim::devices::create_backing(&backing, fleet.options().volume_mb)?;
    }
    blocking(|| client.produce_range(TOPIC, produce_from..produce_from + WHILE_AWAY, PADDING))?;
    let replacement = fleet.launch(host.az).await?;
    let state = fleet.wait_healthy(replacement, BOOT).await?;
    let kill_to_healthy_ms = killed.elapsed().as_millis() as u64;
    anyhow::ensure!(state.broker_id == Some(0), "replacement is {state:?}");
    blocking(|| {
        fleet_kafka::wait_fully_replicated(client, TOPIC, BOOT).map_err(anyhow::Error::msg)
    })?;
    let kill_to_isr_full_ms = killed.elapsed().as_millis() as u64;
    let new_host = fleet.host(replacement)?;
    let held_after = fleet_kafka::topic_bytes(&new_host.mount_path().join("data"), TOPIC);
    let container = new_host.container();
    let run = fleet_kafka::kafka_starts(container)?
        .last()
        .copied()
        .context("Kafka's run in journalctl -u kafka")?;
    let kafka_start_ms = run
        .kafka_start_time()
        .context("Kafka's start in journalctl -u kafka")?
        .as_millis() as u64;
    let jvm_before_first_log_ms = fleet_kafka::kafka_unit_started(container)
        .and_then(|started| run.first_line.duration_since(started).ok())
        .context("systemd's 'Started kafka.service' before Kafka's first line")?
        .as_millis() as u64;
    Ok(Replaced {
        kill_to_healthy_ms,
        kill_to_isr_full_ms,
        refetched_bytes: held_after.saturating_sub(held_before),
        state,
        kafka_start_ms,
        jvm_before_first_log_ms,
    })
}

async fn scenario(fleet: Fleet) -> anyhow::Result<String> {
    let install = fleet
        .kafka()
        .context("a fleet running Apache Kafka")?
        .clone();
    let hosts = fleet.launch_many(&[0, 1, 2]).await?;
    let mut victim = None;
    for &host in &hosts {
        let state = fleet.wait_healthy(host, BOOT).await?;
        if state.broker_id == Some(0) {
            victim = Some(host);
        }
    }
    let victim = victim.context("no host is broker 0")?;
    let client = fleet_kafka::client(&fleet, &install);
    blocking(|| client.create_topic(&fleet_kafka::replicated_topic(TOPIC)))?;
    let produced = Instant::now();
    blocking(|| client.produce_range(TOPIC, 0..RECORDS, PADDING))?;
    let produce_ms = produced.elapsed().as_millis() as u64;
    let topic_bytes =
        fleet_kafka::topic_bytes(&fleet.host(victim)?.mount_path().join("data"), TOPIC);
    let own = replace(&fleet, &client, victim, RECORDS, false).await?;
    let second = fleet.hosts().len() - 1;
    let control = replace(&fleet, &client, second, RECORDS + WHILE_AWAY, true).await?;
    let report = blocking(|| client.consume(TOPIC, RECORDS + 2 * WHILE_AWAY))?;
    let waits = ms_in(&own.state, "claim")
        + ms_in(&own.state, "attach_eni")
        + ms_in(&own.state, "attach_ebs")
        + own.kafka_start_ms;
    let berth_ms = own.state.time_to_healthy_ms.unwrap_or_default();
    let overhead = berth_ms.saturating_sub(waits);
    let floor_ms = ms_in(&own.state, "claim") + bench::attach_floor_ms(true) + own.kafka_start_ms;
    Ok(format!(
        "kafka-replace kafka={} topic_bytes={topic_bytes} produce_ms={produce_ms} while_away_bytes={} \
         kill_to_healthy_ms={} kill_to_isr_full_ms={} refetched_bytes={} control_kill_to_isr_full_ms={} \
         control_refetched_bytes={} refetched_pct_of_control={:.2} launch_ms={} berth_to_healthy_ms={berth_ms} \
         claim_wait_ms={} attach_wait_ms={} kafka_start_ms={} berth_overhead_ms={overhead} \
         berth_overhead_pct={:.2} jvm_before_first_log_ms={} berth_own_ms={} berth_own_pct={:.2} missing={} \
         duplicated={} floor_ms={floor_ms} floor_overhead_ms={} floor_overhead_pct={:.1} \
         attach_eni_ms={} attach_ebs_ms={} berth={}",
        install.version(),
        u64::from(WHILE_AWAY) * (PADDING as u64 + 28),
        own.kill_to_healthy_ms,
        own.kill_to_isr_full_ms,
        own.refetched_bytes,
        control.kill_to_isr_full_ms,
        control.refetched_bytes,
        own.refetched_bytes as f64 * 100.0 / control.refetched_bytes.max(1) as f64,
        own.kill_to_healthy_ms.saturating_sub(berth_ms),
        ms_in(&own.state, "claim"),
        ms_in(&own.state, "attach_eni") + ms_in(&own.state, "attach_ebs"),
        own.kafka_start_ms,
        overhead as f64 * 100.0 / own.kill_to_healthy_ms.max(1) as f64,
        own.jvm_before_first_log_ms,
        overhead.saturating_sub(own.jvm_before_first_log_ms),
        overhead.saturating_sub(own.jvm_before_first_log_ms) as f64 * 100.0
            / own.kill_to_healthy_ms.max(1) as f64,
        report.missing.len(),
        report.duplicated.len(),
        berth_ms as i64 - floor_ms as i64,
        (berth_ms as f64 - floor_ms as f64) * 100.0 / floor_ms.max(1) as f64,
        ms_in(&own.state, "attach_eni"),
        ms_in(&own.state, "attach_ebs"),
        bench::berth_profile(),
    ))
}

fn main() {
    if !bench::can_run("kafka-replace") {
        return;
    }
    let options = FleetOptions {
        zones: 3,
        brokers: 3,
        volume_mb: 512,
        kafka: SimKafka::Kraft,
        hotplug_poll: Duration::from_millis(20),
        eni_delay: bench::OVERLAP_ENI_DELAY,
        volume_delay: bench::OVERLAP_VOLUME_DELAY,
        ..FleetOptions::default()
    };
    match berth_sim::with_fleet(options, scenario) {
        Ok(line) => println!("{line}"),
        Err(error) => bench::fail("kafka-replace", &error),
    }
}
