//! The cluster's replication as Kafka describes it: Metadata for every topic (each partition's leader, replicas
//! and ISR, and the live brokers), then DescribeConfigs for each topic's effective `min.insync.replicas`.
//!
//! This is what the caught-up gate and the safe drain decide from ([`berth_core::replication`]); here is only
//! the asking, on one connection ([`crate::client`]). Any broker can answer, so when this broker cannot be
//! reached, another one is asked.
//!
//! The reading fails closed. Kafka leaves out of an all-topics Metadata every topic the principal may not
//! describe, so berth compares the answer with the topics its own log dirs hold and asks for the missing ones by
//! name (Kafka then says `TopicAuthorizationFailed` instead of staying silent). A topic answered with an error,
//! a hosted partition with an error Kafka's clients do not wait out, a `min.insync.replicas` that cannot be read,
//! or an answer too large to read goes into the view's `cannot_judge`: not caught up, not safe to stop, with the
//! reason ([`berth_core::replication`]). Large answers are read (see [`crate::wire`]); DescribeConfigs goes in batches.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use berth_core::ports::BrokerSpec;
use berth_core::replication::{PartitionReplicas, ReplicationView};
use berth_core::BrokerId;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, DescribeConfigsRequest, DescribeConfigsResponse, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::client::{kafka_error, Connection, KafkaClient, Peer};
use crate::probe::{self, ProbeError, METADATA_MAX_VERSION};
use crate::wire::WireError;

/// The topic config the safe drain needs.
pub const MIN_INSYNC: &str = "min.insync.replicas";
/// DescribeConfigs versions berth speaks (Kafka 4 dropped v0; `kafka-protocol` knows v1-v4).
const DESCRIBE_CONFIGS_VERSIONS: std::ops::RangeInclusive<i16> = 1..=4;
/// ConfigResource type of a topic.
const TOPIC_RESOURCE: i8 = 2;
/// Topics per DescribeConfigs request (each answer stays small on a cluster of many topics).
const CONFIGS_BATCH: usize = 500;
/// Partition errors Kafka's clients wait out: no leader yet (5), a replica offline (9). Any other on a hosted
/// partition means berth does not know its state.
const PARTITION_STATES: [i16; 3] = [0, 5, 9];
/// UNKNOWN_TOPIC_OR_PARTITION: a topic named on disk that the cluster no longer has (deleted while away).
const UNKNOWN_TOPIC: i16 = 3;
/// Reasons a view keeps (then "and N more").
const REASONS: usize = 5;

/// What berth asks about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Question {
    /// This broker: only partitions it is a replica of are kept (the caught-up gate and the drain look at no
    /// others); None keeps every partition.
    pub me: Option<BrokerId>,
    /// The topics this broker's log dirs hold ([`topics_on_disk`]): each must be in the answer, or be named
    /// by Kafka as gone.
    pub on_disk: BTreeSet<String>,
}

impl Question {
    /// About the broker of `spec`: its id, and the topics its log dirs hold.
    pub fn about(spec: &BrokerSpec) -> std::io::Result<Self> {
        Ok(Self {
            me: Some(spec.broker_id),
            on_disk: topics_on_disk(&spec.log_dirs)?,
        })
    }
}

/// Whom to ask about `spec`'s broker: itself first, then every other voter (all on the client `port`).
pub fn peers(spec: &BrokerSpec, port: u16) -> Vec<Peer> {
    std::iter::once((spec.broker_id, spec.advertised_ip))
        .chain(
            spec.voters
                .iter()
                .filter(|(id, _)| **id != spec.broker_id)
                .map(|(id, ip)| (*id, *ip)),
        )
        .map(|(id, ip)| Peer::new(id.0, SocketAddr::from((ip, port))))
        .collect()
}

/// Asks `peers` in order (this broker first) and returns the first answer (one that cannot be judged included:
/// another broker would say the same), or why none could be asked.
pub async fn describe_any(
    client: &KafkaClient,
    peers: &[Peer],
    question: &Question,
    timeout: Duration,
) -> Result<ReplicationView, Vec<ProbeError>> {
    let mut failures = Vec::new();
    for peer in peers {
        match describe(client, *peer, question, timeout).await {
            Ok(view) => return Ok(view),
            Err(error) => failures.push(error),
        }
    }
    Err(failures)
}

/// Metadata for every topic, then the kept topics' `min.insync.replicas`, from one broker, within `timeout`.
pub async fn describe(
    client: &KafkaClient,
    peer: Peer,
    question: &Question,
    timeout: Duration,
) -> Result<ReplicationView, ProbeError> {
    let started = std::time::Instant::now();
    let connection = client.connect(peer.listener, peer.id, timeout).await?;
    let remaining = timeout.saturating_sub(started.elapsed());
    match probe::within(peer.listener, remaining, exchange(connection, question)).await {
        // An answer too large to read is an answer (every broker would give it), and no view: cannot judge.
        Err(ProbeError::Wire {
            source: source @ WireError::Size { .. },
            ..
        }) => Ok(ReplicationView {
            cannot_judge: vec![format!("Metadata: {source}")],
            ..ReplicationView::default()
        }),
        other => other,
    }
}

async fn exchange(
    mut connection: Connection,
    question: &Question,
) -> Result<ReplicationView, ProbeError> {
    let version = probe::metadata_version(&connection, METADATA_MAX_VERSION)?;
    let all: MetadataResponse = connection
        .round_trip(
            ApiKey::Metadata,
            version,
            &probe::metadata_request(version).with_topics(None),
        )
        .await?;
    let answered: BTreeSet<String> = all
        .topics
        .iter()
        .filter_map(|topic| topic.name.as_ref().map(|name| name.to_string()))
        .collect();
    let missing: Vec<String> = question.on_disk.difference(&answered).cloned().collect();
    let named = if missing.is_empty() {
        None
    } else {
        let request = probe::metadata_request(version).with_topics(Some(
            missing
                .iter()
                .map(|topic| {
                    MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(topic.clone()))))
                })
                .collect(),
        ));
        let answer: MetadataResponse = connection
            .round_trip(ApiKey::Metadata, version, &request)
            .await?;
        Some(answer)
    };
    let mut view = view_of(&all, named.as_ref(), question.me);
    let topics: BTreeSet<String> = view.partitions.iter().map(|p| p.topic.clone()).collect();
    if !topics.is_empty() {
        let version = connection.api_version(ApiKey::DescribeConfigs, DESCRIBE_CONFIGS_VERSIONS)?;
        let topics: Vec<String> = topics.into_iter().collect();
        let mut minimums = BTreeMap::new();
        for batch in topics.chunks(CONFIGS_BATCH) {
            let response: DescribeConfigsResponse = connection
                .round_trip(ApiKey::DescribeConfigs, version, &configs_request(batch))
                .await?;
            minimums.extend(min_insync(&response, batch, &mut view.cannot_judge));
        }
        view.partitions
            .retain(|partition| minimums.contains_key(&partition.topic));
        for partition in &mut view.partitions {
            partition.min_insync = minimums[&partition.topic];
        }
    }
    view.cannot_judge = summarized(std::mem::take(&mut view.cannot_judge));
    Ok(view)
}

/// At most [`REASONS`] reasons, then how many more (a cluster may hide thousands of topics).
fn summarized(mut reasons: Vec<String>) -> Vec<String> {
    if reasons.len() > REASONS {
        let more = reasons.len() - REASONS;
        reasons.truncate(REASONS);
        reasons.push(format!("and {more} more"));
    }
    reasons
}

fn configs_request(topics: &[String]) -> DescribeConfigsRequest {
    DescribeConfigsRequest::default().with_resources(
        topics
            .iter()
            .map(|topic| {
                DescribeConfigsResource::default()
                    .with_resource_type(TOPIC_RESOURCE)
                    .with_resource_name(StrBytes::from_string(topic.clone()))
                    .with_configuration_keys(Some(vec![StrBytes::from_static_str(MIN_INSYNC)]))
            })
            .collect(),
    )
}

/// Every asked topic's effective `min.insync.replicas`; why each other one cannot be read goes to `cannot_judge`.
fn min_insync(
    response: &DescribeConfigsResponse,
    asked: &[String],
    cannot_judge: &mut Vec<String>,
) -> BTreeMap<String, u32> {
    let mut minimums = BTreeMap::new();
    for result in &response.results {
        let topic = result.resource_name.to_string();
        if result.error_code != 0 {
            cannot_judge.push(format!(
                "DescribeConfigs of topic {topic} answered {}{}",
                kafka_error(result.error_code),
                result
                    .error_message
                    .as_ref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ));
            continue;
        }
        let value = result
            .configs
            .iter()
            .find(|config| config.name.as_str() == MIN_INSYNC)
            .and_then(|config| config.value.as_ref())
            .and_then(|value| value.parse().ok());
        match value {
            Some(min) => {
                minimums.insert(topic, min);
            }
            None => cannot_judge.push(format!(
                "DescribeConfigs of topic {topic} did not give its {MIN_INSYNC}"
            )),
        }
    }
    for topic in asked {
        let answered = response
            .results
            .iter()
            .any(|r| r.resource_name.as_str() == topic);
        if !answered {
            cannot_judge.push(format!("DescribeConfigs did not answer for topic {topic}"));
        }
    }
    minimums
}

/// The live brokers and the kept partitions (`min.insync.replicas` not yet known), with why any topic or hosted
/// partition cannot be judged. `named` answers the topics on disk that `all` left out.
fn view_of(
    all: &MetadataResponse,
    named: Option<&MetadataResponse>,
    me: Option<BrokerId>,
) -> ReplicationView {
    let id = |raw: i32| u32::try_from(raw).ok().map(BrokerId);
    let ids = |raw: &[kafka_protocol::messages::BrokerId]| -> Vec<BrokerId> {
        raw.iter().filter_map(|b| id(b.0)).collect()
    };
    let mut view = ReplicationView {
        live_brokers: all
            .brokers
            .iter()
            .filter_map(|broker| id(broker.node_id.0))
            .collect(),
        ..ReplicationView::default()
    };
    let topics = all.topics.iter().map(|topic| (topic, false));
    let named_topics = named
        .into_iter()
        .flat_map(|n| n.topics.iter().map(|topic| (topic, true)));
    for (topic, on_disk_only) in topics.chain(named_topics) {
        let name = topic
            .name
            .as_ref()
            .map(|name| name.to_string())
            .unwrap_or_default();
        match topic.error_code {
            0 => {}
            UNKNOWN_TOPIC if on_disk_only => continue,
            code if on_disk_only => {
                view.cannot_judge.push(format!(
                    "this broker's log dirs hold topic {name}, which Metadata leaves out; asked by name, \
                     Kafka answers {} (berth's principal needs DESCRIBE and DESCRIBE_CONFIGS on every topic)",
                    kafka_error(code)
                ));
                continue;
            }
            code => {
                view.cannot_judge.push(format!(
                    "Metadata answers topic {name} with {}",
                    kafka_error(code)
                ));
                continue;
            }
        }
        for partition in &topic.partitions {
            let replicas = ids(&partition.replica_nodes);
            if me.is_some_and(|me| !replicas.contains(&me)) {
                continue;
            }
            if !PARTITION_STATES.contains(&partition.error_code) {
                view.cannot_judge.push(format!(
                    "Metadata answers partition {name}-{} with {}",
                    partition.partition_index,
                    kafka_error(partition.error_code)
                ));
                continue;
            }
            view.partitions.push(PartitionReplicas {
                topic: name.clone(),
                partition: partition.partition_index,
                leader: id(partition.leader_id.0),
                replicas,
                isr: ids(&partition.isr_nodes),
                min_insync: 0,
            });
        }
    }
    view
}

/// The topics whose partitions the log dirs hold (`<topic>-<partition>` directories; Kafka's renamed ones,
/// `-delete`, `-future`, `-stray`, and the metadata log are not hosted partitions).
pub fn topics_on_disk(log_dirs: &[PathBuf]) -> std::io::Result<BTreeSet<String>> {
    let mut topics = BTreeSet::new();
    for dir in log_dirs {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        for entry in entries {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            if let Some(topic) = entry.file_name().to_str().and_then(partition_topic) {
                topics.insert(topic.to_owned());
            }
        }
    }
    Ok(topics)
}

/// The checkpoint Kafka's log manager creates in every log dir it opens, at its start.
pub const RECOVERY_CHECKPOINT: &str = "recovery-point-offset-checkpoint";

/// Whether Kafka has ever run on these log dirs: one of them holds [`RECOVERY_CHECKPOINT`]. Storage berth (or an
/// operator) formatted and Kafka never opened has none.
pub fn kafka_has_run(log_dirs: &[PathBuf]) -> bool {
    log_dirs
        .iter()
        .any(|dir| dir.join(RECOVERY_CHECKPOINT).exists())
}

/// The topic of a partition directory name, as Kafka names them (`orders-0`), if it is one.
fn partition_topic(name: &str) -> Option<&str> {
    if ["-delete", "-future", "-stray"]
        .iter()
        .any(|s| name.ends_with(s))
    {
        return None;
    }
    let (topic, partition) = name.rsplit_once('-')?;
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    (!topic.is_empty()
        && topic.chars().all(legal)
        && topic != "__cluster_metadata"
        && !partition.is_empty()
        && partition.bytes().all(|b| b.is_ascii_digit()))
    .then_some(topic)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };

    fn topic(
        name: &str,
        error: i16,
        partitions: &[(i32, i16, &[i32], &[i32])],
    ) -> MetadataResponseTopic {
        let ids = |raw: &[i32]| {
            raw.iter()
                .map(|&b| kafka_protocol::messages::BrokerId(b))
                .collect()
        };
        MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(name.into()))))
            .with_error_code(error)
            .with_partitions(
                partitions
                    .iter()
                    .map(|(index, error, replicas, isr)| {
                        MetadataResponsePartition::default()
                            .with_partition_index(*index)
                            .with_error_code(*error)
                            .with_leader_id(kafka_protocol::messages::BrokerId(replicas[0]))
                            .with_replica_nodes(ids(replicas))
                            .with_isr_nodes(ids(isr))
                    })
                    .collect(),
            )
    }

    fn metadata(topics: Vec<MetadataResponseTopic>) -> MetadataResponse {
        MetadataResponse::default()
            .with_brokers(
                (0..3)
                    .map(|id| {
                        MetadataResponseBroker::default()
                            .with_node_id(kafka_protocol::messages::BrokerId(id))
                    })
                    .collect(),
            )
            .with_topics(topics)
    }

    #[test]
    fn only_partitions_this_broker_hosts_are_kept() {
        let all = metadata(vec![topic(
            "orders",
            0,
            &[
                (0, 0, &[0, 1], &[0, 1]),
                (1, 0, &[1, 2], &[1, 2]),
                (2, 5, &[2, 0], &[]),
            ],
        )]);
        let view = view_of(&all, None, Some(BrokerId(0)));
        let kept: Vec<i32> = view.partitions.iter().map(|p| p.partition).collect();
        assert_eq!(
            kept,
            [0, 2],
            "a leaderless hosted partition is kept (the rules name it)"
        );
        assert_eq!(view.live_brokers.len(), 3);
        assert!(view.cannot_judge.is_empty());
        assert_eq!(view_of(&all, None, None).partitions.len(), 3);
    }

    #[test]
    fn errors_in_the_answer_are_cannot_judge_not_silence() {
        let reasons = |view: ReplicationView| view.cannot_judge.join(" | ");
        let refused = view_of(&metadata(vec![topic("orders", 29, &[])]), None, None);
        assert!(reasons(refused).contains("topic orders with error 29 (TopicAuthorizationFailed)"));
        let hosted = metadata(vec![topic("orders", 0, &[(0, 72, &[0, 1], &[0, 1])])]);
        let error = reasons(view_of(&hosted, None, Some(BrokerId(0))));
        assert!(
            error.contains("partition orders-0 with error 72"),
            "{error}"
        );
        assert!(
            view_of(&hosted, None, Some(BrokerId(2)))
                .cannot_judge
                .is_empty(),
            "a partition this broker does not host does not matter"
        );
        let hidden = metadata(vec![topic("secret", 29, &[])]);
        let error = reasons(view_of(&metadata(vec![]), Some(&hidden), Some(BrokerId(0))));
        assert!(
            error.contains("log dirs hold topic secret, which Metadata leaves out")
                && error.contains("TopicAuthorizationFailed"),
            "{error}"
        );
        let deleted = metadata(vec![topic("gone", UNKNOWN_TOPIC, &[])]);
        assert!(
            view_of(&metadata(vec![]), Some(&deleted), Some(BrokerId(0)))
                .cannot_judge
                .is_empty(),
            "a topic the cluster no longer has is not hosted"
        );
        let many: Vec<String> = (0..9).map(|n| format!("r{n}")).collect();
        assert_eq!(summarized(many).last().unwrap(), "and 4 more");
    }

    #[test]
    fn a_missing_or_refused_min_insync_cannot_be_judged() {
        use kafka_protocol::messages::describe_configs_response::{
            DescribeConfigsResourceResult, DescribeConfigsResult,
        };
        let result = |topic: &str, error: i16, value: Option<&str>| {
            DescribeConfigsResult::default()
                .with_resource_name(StrBytes::from_string(topic.into()))
                .with_error_code(error)
                .with_configs(
                    value
                        .map(|v| {
                            vec![DescribeConfigsResourceResult::default()
                                .with_name(StrBytes::from_static_str(MIN_INSYNC))
                                .with_value(Some(StrBytes::from_string(v.into())))]
                        })
                        .unwrap_or_default(),
                )
        };
        let asked = ["a".to_owned(), "b".to_owned()];
        let read = |results| {
            let mut reasons = Vec::new();
            let minimums = min_insync(
                &DescribeConfigsResponse::default().with_results(results),
                &asked,
                &mut reasons,
            );
            (minimums, reasons.join(" | "))
        };
        let (ok, none) = read(vec![result("a", 0, Some("2")), result("b", 0, Some("1"))]);
        assert_eq!(ok, [("a".into(), 2), ("b".into(), 1)].into_iter().collect());
        assert!(none.is_empty());
        let (_, refused) = read(vec![result("a", 0, Some("2")), result("b", 29, None)]);
        assert!(refused.contains("topic b answered error 29"), "{refused}");
        let (_, missing) = read(vec![result("a", 0, Some("2")), result("b", 0, None)]);
        assert!(
            missing.contains("did not give its min.insync.replicas"),
            "{missing}"
        );
        let (_, unanswered) = read(vec![result("a", 0, Some("2"))]);
        assert!(
            unanswered.contains("did not answer for topic b"),
            "{unanswered}"
        );
    }

    #[test]
    fn partition_directories_name_their_topics() {
        assert_eq!(partition_topic("orders-0"), Some("orders"));
        assert_eq!(partition_topic("my-topic.v2-17"), Some("my-topic.v2"));
        assert_eq!(
            partition_topic("__consumer_offsets-49"),
            Some("__consumer_offsets")
        );
        for not_hosted in [
            "orders-0.a1b2c3-delete",
            "orders-0.a1b2c3-future",
            "orders-0.a1b2c3-stray",
            "__cluster_metadata-0",
            "lost+found",
            "orders",
            "orders-x",
        ] {
            assert_eq!(partition_topic(not_hosted), None, "{not_hosted}");
        }
        let root = tempfile::tempdir().unwrap();
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        for dir in [
            a.join("orders-0"),
            a.join("orders-3"),
            b.join("events-1"),
            b.join("__cluster_metadata-0"),
        ] {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(a.join("meta.properties"), "").unwrap();
        let topics = topics_on_disk(&[a, b, root.path().join("absent")]).unwrap();
        assert_eq!(
            topics,
            ["events".to_owned(), "orders".to_owned()]
                .into_iter()
                .collect()
        );
    }

    #[test]
    fn kafka_has_run_where_its_log_manager_left_the_recovery_checkpoint() {
        let root = tempfile::tempdir().unwrap();
        let (formatted, opened) = (root.path().join("formatted"), root.path().join("opened"));
        for dir in [&formatted, &opened] {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join("meta.properties"), "").unwrap();
        }
        assert!(!kafka_has_run(std::slice::from_ref(&formatted)));
        std::fs::write(opened.join(RECOVERY_CHECKPOINT), "0\n0\n").unwrap();
        assert!(kafka_has_run(&[formatted, opened]));
    }
}
