//! The fleet's Apache Kafka as a client and an operator see it: a client of every broker's ENI address (Kafka's
//! TopicCommand and kcat, run from the region namespace), the bytes a broker holds of a topic on its volume,
//! waiting until every partition is fully in sync again, and Kafka's own start time from `journalctl -u kafka`.
//! Shared by the demo and `make bench-kafka-replace`.

use std::path::Path;
use std::time::{Duration, Instant};

use berth_testkit::kafka::{
    self, Client, ConsumeReport, Install, PartitionState, StartRecord, TopicSpec,
};

use crate::container::Container;
use crate::fleet::{Fleet, FleetError};
use crate::layout;
use crate::systemd_host::KAFKA_UNIT;

/// The fleet's controllers and their controller listeners (`id`, ENI address : controller port): whom a test
/// asks DescribeQuorum.
pub fn controller_listeners(fleet: &Fleet) -> Vec<(u32, std::net::SocketAddr)> {
    let zones = fleet.options().zones;
    fleet
        .options()
        .controller_ids()
        .into_iter()
        .map(|id| {
            let address = (layout::eni_ip(id, zones), layout::KAFKA_CONTROLLER_PORT);
            (id, std::net::SocketAddr::from(address))
        })
        .collect()
}

/// A client of the fleet's brokers (every broker id's ENI address; a dedicated controller serves no client), run from the region namespace (the simulator's
/// threads live there, and its children with them); on a secured fleet it authenticates as the test's client
/// (a super user).
pub fn client(fleet: &Fleet, install: &Install) -> Client {
    let zones = fleet.options().zones;
    let bootstrap: Vec<String> = (fleet.options().broker_ids().into_iter())
        .map(|id| format!("{}:{}", layout::eni_ip(id, zones), layout::KAFKA_PORT))
        .collect();
    let client = Client::new(install, bootstrap.join(","), Vec::new());
    match fleet.security() {
        Some(security) => client
            .secured(
                &security.client_auth(),
                &fleet.work_dir().join("client.properties"),
            )
            .unwrap_or_else(|error| panic!("a secured fleet's client: {error}")),
        None => client,
    }
}

/// Runs a blocking client call (a JVM tool or kcat) from the simulator's runtime.
pub fn blocking<T, E: Into<anyhow::Error>>(
    call: impl FnOnce() -> Result<T, E>,
) -> anyhow::Result<T> {
    tokio::task::block_in_place(call).map_err(Into::into)
}

/// Consumes `topic` from the beginning and requires every one of the `produced` records exactly once (none
/// missing, duplicated or corrupt).
pub fn consume_exactly(
    client: &Client,
    topic: &str,
    produced: u32,
) -> anyhow::Result<ConsumeReport> {
    let report = blocking(|| client.consume(topic, produced))?;
    anyhow::ensure!(
        report.is_exact(),
        "consumed {} records of {produced}: {} missing, {} duplicated, {} corrupt",
        report.records.len(),
        report.missing.len(),
        report.duplicated.len(),
        report.corrupt.len()
    );
    Ok(report)
}

/// The topic of the demo and the benchmark: 6 partitions, replication factor 3, `min.insync.replicas=2` (a
/// write with `acks=all` survives one broker away).
pub fn replicated_topic(name: &str) -> TopicSpec {
    TopicSpec {
        name: name.into(),
        partitions: 6,
        replication_factor: 3,
        configs: vec![("min.insync.replicas".into(), "2".into())],
    }
}

/// The bytes of `topic`'s partition logs (`*.log` segments) under a broker's log dir.
pub fn topic_bytes(log_dir: &Path, topic: &str) -> u64 {
    let prefix = format!("{topic}-");
    let Ok(entries) = std::fs::read_dir(log_dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|entry| {
            entry.file_name().to_str().is_some_and(|name| {
                name.strip_prefix(&prefix)
                    .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
            })
        })
        .flat_map(|partition| std::fs::read_dir(partition.path()).into_iter().flatten())
        .flatten()
        .filter(|file| file.path().extension().is_some_and(|ext| ext == "log"))
        .filter_map(|file| file.metadata().ok())
        .map(|meta| meta.len())
        .sum()
}

/// Polls the cluster's metadata (kcat `-L`, every 100 ms) until every partition of `topic` has all its replicas
/// in sync; returns the partitions as last seen.
pub fn wait_fully_replicated(
    client: &Client,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<PartitionState>, String> {
    let started = Instant::now();
    let mut last;
    loop {
        match client.partitions(topic) {
            Ok(partitions)
                if !partitions.is_empty()
                    && partitions.iter().all(PartitionState::fully_replicated) =>
            {
                return Ok(partitions)
            }
            Ok(partitions) => last = format!("{partitions:?}"),
            Err(error) => last = error.to_string(),
        }
        if started.elapsed() > timeout {
            return Err(format!(
                "{topic} not fully replicated within {timeout:?}; last: {last}"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Kafka's runs on a host, from its unit's journal (the launcher's log4j lines carry Kafka's own timestamps).
pub fn kafka_starts(container: &Container) -> Result<Vec<StartRecord>, FleetError> {
    let text = container
        .exec(&[
            "journalctl",
            "--unit",
            KAFKA_UNIT,
            "--output=cat",
            "--no-pager",
        ])
        .map_err(|source| FleetError::Io {
            what: format!("journalctl -u {KAFKA_UNIT} on {}", container.name()),
            source: std::io::Error::other(source.to_string()),
        })?;
    Ok(kafka::parse_starts(&text))
}

/// When systemd last logged "Started kafka.service" on a host (the launcher exec'd; the JVM then loads for a
/// while before Kafka logs its first line).
pub fn kafka_unit_started(container: &Container) -> Option<std::time::SystemTime> {
    unit_logged(container, KAFKA_UNIT, "Started")
}

/// When systemd (PID 1) last logged `<verb> <unit>` on a host ("Starting": the start job began; "Started": the
/// process exec'd, or for `Type=notify` sent READY=1), from its journal's wall-clock timestamps.
pub fn unit_logged(container: &Container, unit: &str, verb: &str) -> Option<std::time::SystemTime> {
    let text = container
        .exec(&[
            "journalctl",
            "--unit",
            unit,
            "--output=short-unix",
            "--no-pager",
            "_PID=1",
        ])
        .ok()?;
    let needle = format!(" {verb} {unit}");
    let line = text.lines().rev().find(|line| line.contains(&needle))?;
    let seconds: f64 = line.split_whitespace().next()?.parse().ok()?;
    Some(std::time::UNIX_EPOCH + Duration::from_secs_f64(seconds))
}

/// berth's journal on a host as an operator reads it (`journalctl -u berth -o short-precise`), keeping the
/// lines that mark a state, a wait or an action: the timeline in berth's own words.
pub fn berth_journal(container: &Container, lines: usize) -> String {
    let text = container
        .exec(&[
            "journalctl",
            "--unit",
            crate::systemd_host::BERTH_UNIT,
            "--output=short-precise",
            "--no-pager",
            "--no-hostname",
        ])
        .unwrap_or_else(|error| format!("(journalctl failed: {error})"));
    let kept: Vec<&str> = text.lines().collect();
    kept[kept.len().saturating_sub(lines)..].join("\n")
}
