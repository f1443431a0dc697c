//! The cluster upgraded as operators upgrade it: an instance refresh of each zone's Auto Scaling group, one
//! group after another, with real Apache Kafka and a producer writing with `acks=all` all along. Shared by the
//! e2e test (tests/tests/roll.rs) and `make bench-roll`.
//!
//! What is measured, never assumed: the producer's failed deliveries and the produce requests brokers refused
//! ([`berth_testkit::kafka::SteadyProducer`]), every record read back once ([`Client::consume`]), and for every
//! replacement the broker id it became and the volume and ENI it holds, as EC2 and its `/state` show them.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use berth_testkit::aws::autoscaling::InstanceRefresh;
use berth_testkit::kafka::{Client, ConsumeReport, ProduceReport, SteadyProducer};

use crate::asg::{self, RefreshSettings};
use crate::kafka::{self as fleet_kafka, blocking};
use crate::Fleet;

/// The topic written through the roll: 6 partitions, replication factor 3, `min.insync.replicas=2`.
pub const TOPIC: &str = "roll";
/// Kafka's refusal of an `acks=all` write while fewer than `min.insync.replicas` replicas are in sync (as
/// librdkafka words `NOT_ENOUGH_REPLICAS`): what a roll that stops a broker before the previous one is back in
/// the ISR causes. librdkafka retries it, so it shows here before it becomes a failed produce.
pub const NOT_ENOUGH_REPLICAS: &str = "Not enough in-sync replicas";

/// How the roll is run.
#[derive(Debug, Clone)]
pub struct RollOptions {
    /// The refresh's preferences for every group.
    pub refresh: RefreshSettings,
    /// Records per second the producer writes.
    pub per_second: u32,
    /// When the producer gives a record up (a failed produce).
    pub message_timeout: Duration,
    /// How long the boot, each group's refresh, and the final catch-up may take.
    pub step_timeout: Duration,
}

impl Default for RollOptions {
    fn default() -> Self {
        Self {
            // No warmup: berth completes the launch hook only once its broker is back, which is what a warmup
            // would otherwise guess at.
            refresh: RefreshSettings::group_of_one(Duration::ZERO),
            per_second: 100,
            message_timeout: Duration::from_secs(30),
            step_timeout: Duration::from_secs(300),
        }
    }
}

/// A broker as EC2, the group and berth show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The instance.
    pub instance_id: String,
    /// The broker id its berth reports.
    pub broker_id: Option<u32>,
    /// The volumes attached to it.
    pub volumes: Vec<String>,
    /// The ENIs attached to it (besides its primary one).
    pub enis: Vec<String>,
}

/// One replacement of the roll.
#[derive(Debug, Clone)]
pub struct Step {
    /// The zone's group.
    pub group: String,
    /// The instance replaced, as it was.
    pub old: Placement,
    /// Its replacement, as it is after the roll.
    pub new: Placement,
    /// The old instance's termination to the new one's end of warmup (the refresh moved on).
    pub step: Duration,
}

/// What the roll did.
#[derive(Debug, Clone)]
pub struct RollReport {
    /// Every replacement, in order.
    pub steps: Vec<Step>,
    /// The first refresh's start to the last one's end.
    pub total: Duration,
    /// What the producer saw.
    pub produced: ProduceReport,
    /// What was read back.
    pub consumed: ConsumeReport,
}

impl RollReport {
    /// Produce requests refused because too few replicas were in sync.
    pub fn not_enough_replicas(&self) -> u32 {
        self.produced.refused(NOT_ENOUGH_REPLICAS)
    }

    /// The longest step.
    pub fn max_step(&self) -> Duration {
        self.steps.iter().map(|s| s.step).max().unwrap_or_default()
    }

    /// Every step kept its broker's id, volume and ENI.
    pub fn same_brokers(&self) -> bool {
        self.steps.iter().all(|s| {
            s.old.instance_id != s.new.instance_id
                && s.new.broker_id.is_some()
                && s.new.broker_id == s.old.broker_id
                && !s.new.volumes.is_empty()
                && s.new.volumes == s.old.volumes
                && s.new.enis == s.old.enis
        })
    }

    /// One line per step, for a test's output.
    pub fn describe_steps(&self) -> String {
        self.steps
            .iter()
            .map(|s| {
                format!(
                    "{}: {} -> {} broker {:?} volumes {:?} ENIs {:?}: {} ms",
                    s.group,
                    s.old.instance_id,
                    s.new.instance_id,
                    s.new.broker_id,
                    s.new.volumes,
                    s.new.enis,
                    s.step.as_millis()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl RollReport {
    /// What every roll must show (the e2e tests' assertions): one replacement per group, each the broker it
    /// replaced on its volume and ENI; every record handed to the producer reported, none failed nor refused for
    /// want of in-sync replicas, every one read back once; every old instance drained through its terminate hook.
    pub fn verify(&self, fleet: &Fleet) -> anyhow::Result<()> {
        ensure!(
            self.steps.len() == fleet.options().zones,
            "one replacement per group: {}",
            self.describe_steps()
        );
        ensure!(
            self.same_brokers(),
            "every replacement is the broker it replaced, on its volume and ENI:\n{}",
            self.describe_steps()
        );
        self.verify_writes()?;
        self.verify_drains(fleet)
    }

    fn verify_writes(&self) -> anyhow::Result<()> {
        let produced = &self.produced;
        ensure!(produced.sent > 0, "the producer wrote nothing");
        // A record counts as written only once its delivery report said so; every record handed to kcat must have
        // a report (success or error), else the read-back would compare with records nobody acknowledged.
        ensure!(
            produced.unreported() == 0,
            "{} records handed to kcat got no delivery report ({} delivered, {} failed)",
            produced.unreported(),
            produced.delivered,
            produced.failed_produces
        );
        ensure!(
            produced.failed_produces == 0,
            "failed produces: {produced:?}"
        );
        ensure!(
            self.not_enough_replicas() == 0,
            "{} produce requests refused with \"{NOT_ENOUGH_REPLICAS}\": a broker was stopped while the previous \
             one was not back in the ISR",
            self.not_enough_replicas(),
        );
        ensure!(
            self.consumed.is_exact(),
            "lost {:?}, duplicated {:?}, corrupt {:?}",
            self.consumed.missing,
            self.consumed.duplicated,
            self.consumed.corrupt
        );
        Ok(())
    }

    /// Every old instance's berth completed its terminate hook, released its ENI and volume and exited 0 before
    /// the instance was terminated.
    fn verify_drains(&self, fleet: &Fleet) -> anyhow::Result<()> {
        let history = asg::history(fleet);
        for step in &self.steps {
            let old = &step.old.instance_id;
            let drained = fleet
                .aws()
                .calls_from("CompleteLifecycleAction", old)
                .iter()
                .any(|c| c.accepted() && c.param("LifecycleHookName") == Some(asg::TERMINATE_HOOK));
            ensure!(drained, "{old}'s berth completed its terminate hook");
            ensure!(
                history.iter().any(|line| line.contains(old)
                    && line.contains("berth exited with status 0")
                    && line.contains("held ENIs [], volumes []")),
                "{old} was drained (ENI and volume released, berth exited 0) before it was terminated: \
                 {history:#?}"
            );
        }
        Ok(())
    }

    /// The producer's and the read-back's counts, for a test's output.
    pub fn describe_writes(&self) -> String {
        let (produced, consumed) = (&self.produced, &self.consumed);
        format!(
            "producer: {} records sent, {} delivered, {} failed produces, {} produce requests refused {:?}; read \
             back: {} missing, {} duplicated",
            produced.sent,
            produced.delivered,
            produced.failed_produces,
            produced.request_errors,
            produced.errors,
            consumed.missing.len(),
            consumed.duplicated.len()
        )
    }
}

/// Boots the group's brokers (every zone's member Healthy and in service), writes through an instance refresh
/// of every group, and reads everything back.
pub async fn run(fleet: &Fleet, options: &RollOptions) -> anyhow::Result<RollReport> {
    let install = fleet
        .kafka()
        .context("a fleet running Apache Kafka")?
        .clone();
    let before = boot(fleet, options.step_timeout).await?;
    let client = fleet_kafka::client(fleet, &install);
    blocking(|| client.create_topic(&fleet_kafka::replicated_topic(TOPIC)))?;
    fully_replicated(&client, options.step_timeout)?;
    let producer =
        blocking(|| client.steady_producer(TOPIC, options.per_second, options.message_timeout))?;
    // A new partition's ISR is every replica from the moment KRaft creates it, before any follower has fetched:
    // "fully replicated" by metadata is nominal until a record written with acks=all has been acknowledged. The
    // roll starts on a cluster that is really replicating every partition (as an operator's cluster is), so the
    // first drain does not race the followers' first fetch.
    let topic = fleet_kafka::replicated_topic(TOPIC);
    wait_acknowledged_everywhere(&producer, topic.partitions as usize, options.step_timeout)
        .await?;
    let started = Instant::now();
    let rolled = asg::roll(fleet, options.refresh, options.step_timeout).await;
    let total = started.elapsed();
    let caught_up = fully_replicated(&client, options.step_timeout);
    let produced = blocking(|| producer.finish(options.message_timeout * 2))?;
    let rolled = rolled?;
    caught_up?;
    let consumed = blocking(|| client.consume(TOPIC, produced.sent))?;
    if !consumed.is_exact() {
        eprintln!(
            "roll: records missing or duplicated; {}",
            partitions_read(&client, &consumed, &produced)
        );
    }
    let steps = steps(fleet, &before, &rolled).await?;
    Ok(RollReport {
        steps,
        total,
        produced,
        consumed,
    })
}

/// Per partition: the first offset read, how many records, and which of the `missing` keys' neighbours it holds
/// (where a loss happened, for the failure's message).
fn partitions_read(client: &Client, consumed: &ConsumeReport, produced: &ProduceReport) -> String {
    let text = match client.consume_formatted(TOPIC, "%p %o %k\\n") {
        Ok(text) => text,
        Err(error) => return format!("reading partitions failed: {error}"),
    };
    let mut partitions: std::collections::BTreeMap<&str, (String, u32, Vec<&str>)> =
        std::collections::BTreeMap::new();
    let mut read: std::collections::BTreeSet<(u32, i64)> = std::collections::BTreeSet::new();
    for line in text.lines() {
        let mut words = line.split(' ');
        let (Some(partition), Some(offset), Some(key)) = (words.next(), words.next(), words.next())
        else {
            continue;
        };
        let entry = partitions
            .entry(partition)
            .or_insert_with(|| (offset.to_owned(), 0, Vec::new()));
        entry.1 += 1;
        if let (Ok(p), Ok(o)) = (partition.parse(), offset.parse()) {
            read.insert((p, o));
        }
        if entry.2.len() < 12 {
            entry.2.push(key);
        }
    }
    let described = client
        .describe_topic(TOPIC)
        .unwrap_or_else(|error| error.to_string());
    // Offsets Kafka acknowledged (a successful delivery report) but not read back: a loss in Kafka's log, as
    // opposed to a record never acknowledged.
    let unread: std::collections::BTreeMap<u32, Vec<i64>> = produced
        .acknowledged
        .iter()
        .map(|(&p, offsets)| {
            let gone = offsets.iter().filter(|&&o| !read.contains(&(p, o)));
            (p, gone.take(20).copied().collect::<Vec<_>>())
        })
        .filter(|(_, gone)| !gone.is_empty())
        .collect();
    // Offsets read but never acknowledged: a record Kafka kept whose delivery report was lost or went to another
    // copy (a duplicate written by a client re-sending, not by Kafka acknowledging twice).
    let acked: std::collections::BTreeSet<(u32, i64)> = produced
        .acknowledged
        .iter()
        .flat_map(|(&p, offsets)| offsets.iter().map(move |&o| (p, o)))
        .collect();
    let unacknowledged: Vec<&(u32, i64)> = read.difference(&acked).take(20).collect();
    let acknowledged: std::collections::BTreeMap<u32, (Option<&i64>, usize)> = produced
        .acknowledged
        .iter()
        .map(|(&p, offsets)| (p, (offsets.iter().min(), offsets.len())))
        .collect();
    format!(
        "missing {:?}, duplicated {:?}; per partition (first offset, records, first keys) read: {partitions:?}; \
         acknowledged (lowest offset, count): {acknowledged:?}; acknowledged offsets not read: {unread:?}; \
         (partition, offset) read but not acknowledged: {unacknowledged:?}; {described}",
        consumed.missing, consumed.duplicated
    )
}

/// Waits until the producer has had a record acknowledged on each of the topic's `partitions`.
async fn wait_acknowledged_everywhere(
    producer: &SteadyProducer,
    partitions: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while producer.acknowledged_partitions() < partitions {
        anyhow::ensure!(
            Instant::now() < deadline,
            "waiting for an acknowledged record on each of {partitions} partitions: {} after {timeout:?}",
            producer.acknowledged_partitions()
        );
        // Polling the producer's delivery reports for the condition above.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn fully_replicated(client: &Client, timeout: Duration) -> anyhow::Result<()> {
    blocking(|| {
        fleet_kafka::wait_fully_replicated(client, TOPIC, timeout).map_err(anyhow::Error::msg)
    })
    .map(drop)
}

/// Waits until every zone's member is in service with a Healthy berth; returns where each broker is.
async fn boot(fleet: &Fleet, timeout: Duration) -> anyhow::Result<Vec<Placement>> {
    let members = asg::wait_all_in_service(fleet, timeout).await?;
    for member in &members {
        let host = asg::host_of(fleet, &member.instance_id).context("a member's host")?;
        fleet.wait_healthy(host.index, timeout).await?;
    }
    let mut placements = Vec::new();
    for member in members {
        placements.push(placement(fleet, &member.instance_id).await?);
    }
    Ok(placements)
}

/// Where an instance's broker is now.
async fn placement(fleet: &Fleet, instance_id: &str) -> anyhow::Result<Placement> {
    let host = asg::host_of(fleet, instance_id).with_context(|| format!("{instance_id}'s host"))?;
    let state = fleet.state(host.index).await?;
    let attachments = fleet.ec2().attachments().await?;
    let held = |holders: &std::collections::HashMap<String, Option<String>>| {
        let mut ids: Vec<String> = holders
            .iter()
            .filter(|(_, holder)| holder.as_deref() == Some(instance_id))
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    };
    Ok(Placement {
        instance_id: instance_id.to_owned(),
        broker_id: state.broker_id,
        volumes: held(&attachments.volumes),
        enis: held(&attachments.enis),
    })
}

async fn steps(
    fleet: &Fleet,
    before: &[Placement],
    rolled: &[InstanceRefresh],
) -> anyhow::Result<Vec<Step>> {
    let mut steps = Vec::new();
    for refresh in rolled {
        for replacement in &refresh.replacements {
            let old = before
                .iter()
                .find(|p| p.instance_id == replacement.old)
                .with_context(|| format!("{} was not a member before the roll", replacement.old))?;
            let new = replacement
                .new
                .as_deref()
                .context("a replacement launched")?;
            steps.push(Step {
                group: refresh.group.clone(),
                old: old.clone(),
                new: placement(fleet, new).await?,
                step: replacement.step().context("a replacement warmed up")?,
            });
        }
    }
    Ok(steps)
}
