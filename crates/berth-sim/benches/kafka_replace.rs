//! bench-kafka-replace: on a three-broker KRaft fleet running Apache Kafka, a topic (6 partitions, RF 3,
//! `min.insync.replicas=2`) filled with at least 64 MiB; broker 0's host is killed (SIGKILL, instance terminated)
//! and a replacement launched in its zone becomes broker 0 on the same ENI and volume. Measured:
//!
//! - `kill_to_healthy_ms`: kill to the replacement's Healthy; `kill_to_isr_full_ms`: kill to every partition's
//!   ISR equal to its replicas (kcat's metadata, polled every 100 ms);
//! - `refetched_bytes`: what broker 0's volume gained in the topic's partition logs between the kill and ISR full
//!   (it kept the rest), with `while_away_bytes` produced while it was away; `control_refetched_bytes`: the same
//!   after a second kill, with the volume replaced by a fresh blank one for the same id (full re-replication);
//! - the split (all on the wall clock: the hosts' journals and the bench share it): `launch_ms` = kill to systemd's
//!   "Starting berth.service" on the replacement (the simulated Auto Scaling: noticing, a container, `dpkg -i`,
//!   and the 1 000 records this bench produces meanwhile); `berth_to_healthy_ms` = that to Healthy;
//!   `kafka_ms` = systemd's "Started kafka.service" to Kafka's "Kafka Server started" (the JVM loading, then
//!   Kafka's start as Kafka logs it); `session_wait_ms` = the replacement's Claim before the dead owner's
//!   session could expire; `floor_ms` = `launch_ms` + `session_wait_ms` + max(ENI, volume) + `kafka_ms`;
//!   `overhead_ms` = `kill_to_healthy_ms` - `floor_ms`: berth's process start, claim, AWS calls, polls, routes,
//!   mount, `systemctl start` with its drop-in, the serving probe and the caught-up gate.
//!   `overhead_pct` is of `kill_to_healthy_ms` (the target's), `overhead_pct_of_berth` of `berth_to_healthy_ms`.

use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use berth_sim::bench::{self, ms_between, ms_in, Boot};
use berth_sim::kafka::blocking;
use berth_sim::{kafka as fleet_kafka, Fleet, FleetOptions, SimKafka};
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
    boot: Boot,
    launch_ms: u64,
    session_wait_ms: u64,
    kafka_start_ms: u64,
    jvm_before_first_log_ms: u64,
    aws: (u64, usize),
}

impl Replaced {
    /// The JVM loading and Kafka's start as Kafka logs it.
    fn kafka_ms(&self) -> u64 {
        self.jvm_before_first_log_ms + self.kafka_start_ms
    }

    fn floor_ms(&self) -> u64 {
        self.launch_ms + self.session_wait_ms + bench::attach_floor_ms(true) + self.kafka_ms()
    }

    fn overhead_ms(&self) -> i64 {
        self.kill_to_healthy_ms as i64 - self.floor_ms() as i64
    }

    /// The split of kill to Healthy (the module's doc defines each field).
    fn split(&self) -> String {
        let state = &self.boot.state;
        let overhead = self.overhead_ms();
        format!(
            "kill_to_healthy_ms={} launch_ms={} berth_to_healthy_ms={} floor_ms={} overhead_ms={overhead} \
             overhead_pct={:.2} overhead_pct_of_berth={:.2} process_start_ms={} claim_ms={} session_wait_ms={} \
             attach_eni_ms={} attach_ebs_ms={} aws_api_ms={} aws_calls={} kafka_ms={} \
             jvm_before_first_log_ms={} kafka_start_ms={}",
            self.kill_to_healthy_ms,
            self.launch_ms,
            self.boot.berth_ms(),
            self.floor_ms(),
            overhead as f64 * 100.0 / self.kill_to_healthy_ms.max(1) as f64,
            overhead as f64 * 100.0 / self.boot.berth_ms().max(1) as f64,
            self.boot.process_start_ms(),
            ms_in(state, "claim"),
            self.session_wait_ms,
            ms_in(state, "attach_eni"),
            ms_in(state, "attach_ebs"),
            self.aws.0,
            self.aws.1,
            self.kafka_ms(),
            self.jvm_before_first_log_ms,
            self.kafka_start_ms,
        )
    }
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
    let killed = SystemTime::now();
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
    anyhow::ensure!(state.broker_id == Some(0), "replacement is {state:?}");
    let boot = Boot::read(fleet, replacement, state)?;
    blocking(|| {
        fleet_kafka::wait_fully_replicated(client, TOPIC, BOOT).map_err(anyhow::Error::msg)
    })?;
    let kill_to_isr_full_ms = ms_between(killed, SystemTime::now());
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
        kill_to_healthy_ms: ms_between(killed, boot.healthy_at()),
        kill_to_isr_full_ms,
        refetched_bytes: held_after.saturating_sub(held_before),
        launch_ms: ms_between(killed, boot.starting),
        session_wait_ms: boot.session_wait_ms(killed, fleet.options().session_timeout),
        aws: boot.aws_api(fleet),
        boot,
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
    Ok(format!(
        "kafka-replace kafka={} topic_bytes={topic_bytes} produce_ms={produce_ms} while_away_bytes={} \
         kill_to_isr_full_ms={} refetched_bytes={} control_kill_to_isr_full_ms={} control_refetched_bytes={} \
         refetched_pct_of_control={:.2} missing={} duplicated={} {} berth={} {}",
        install.version(),
        u64::from(WHILE_AWAY) * (PADDING as u64 + 28),
        own.kill_to_isr_full_ms,
        own.refetched_bytes,
        control.kill_to_isr_full_ms,
        control.refetched_bytes,
        own.refetched_bytes as f64 * 100.0 / control.refetched_bytes.max(1) as f64,
        report.missing.len(),
        report.duplicated.len(),
        own.split(),
        bench::berth_profile(),
        berth_testkit::bench::load_field(),
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
