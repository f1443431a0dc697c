//! The cluster's replication as Kafka describes it: Metadata for every topic (each partition's leader, replicas
//! and ISR, and the live brokers), then DescribeConfigs for each topic's effective `min.insync.replicas`.
//!
//! This is what the caught-up gate and the safe drain decide from ([`berth_core::replication`]); here is only
//! the asking, on one connection, through `kafka-protocol` and the probe's framing. Any broker can answer both
//! requests, so when this broker does not, another one is asked.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use berth_core::replication::{PartitionReplicas, ReplicationView};
use berth_core::BrokerId;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{
    ApiKey, DescribeConfigsRequest, DescribeConfigsResponse, MetadataRequest, MetadataResponse,
};
use kafka_protocol::protocol::StrBytes;
use tokio::net::TcpStream;

use crate::probe::{self, ProbeError, METADATA_MAX_VERSION, METADATA_MIN_VERSION};

/// The topic config the safe drain needs.
pub const MIN_INSYNC: &str = "min.insync.replicas";
/// DescribeConfigs versions berth speaks (Kafka 4 dropped v0; `kafka-protocol` knows v1-v4).
const DESCRIBE_CONFIGS_VERSIONS: std::ops::RangeInclusive<i16> = 1..=4;
/// ConfigResource type of a topic.
const TOPIC_RESOURCE: i8 = 2;
/// Kafka's default `min.insync.replicas`, for a topic whose config does not say.
const DEFAULT_MIN_INSYNC: u32 = 1;

/// Asks `listeners` in order (this broker first) and returns the first full answer, or every failure.
pub async fn describe_any(
    listeners: &[SocketAddr],
    timeout: Duration,
) -> Result<ReplicationView, Vec<ProbeError>> {
    let mut failures = Vec::new();
    for listener in listeners {
        match describe(*listener, timeout).await {
            Ok(view) => return Ok(view),
            Err(error) => failures.push(error),
        }
    }
    Err(failures)
}

/// Metadata for every topic, then the topics' `min.insync.replicas`, from one broker, within `timeout`.
pub async fn describe(
    listener: SocketAddr,
    timeout: Duration,
) -> Result<ReplicationView, ProbeError> {
    probe::within(listener, timeout, exchange(listener)).await
}

async fn exchange(listener: SocketAddr) -> Result<ReplicationView, ProbeError> {
    let (mut stream, versions) = probe::open(listener).await?;
    let version = probe::api_version(
        &versions,
        ApiKey::Metadata,
        METADATA_MIN_VERSION..=METADATA_MAX_VERSION,
        listener,
    )?;
    let request: MetadataRequest = probe::metadata_request(version).with_topics(None);
    let metadata: MetadataResponse = probe::round_trip(
        &mut stream,
        listener,
        (ApiKey::Metadata, version, 2),
        &request,
    )
    .await?;
    let mut view = view_of(&metadata);
    let topics: Vec<String> = metadata
        .topics
        .iter()
        .filter_map(|topic| topic.name.as_ref().map(|name| name.to_string()))
        .collect();
    if !topics.is_empty() {
        let version = probe::api_version(
            &versions,
            ApiKey::DescribeConfigs,
            DESCRIBE_CONFIGS_VERSIONS,
            listener,
        )?;
        let minimums = min_insync(&mut stream, listener, version, &topics).await?;
        for partition in &mut view.partitions {
            if let Some(min) = minimums.get(&partition.topic) {
                partition.min_insync = *min;
            }
        }
    }
    Ok(view)
}

/// Every topic's effective `min.insync.replicas`.
async fn min_insync(
    stream: &mut TcpStream,
    listener: SocketAddr,
    version: i16,
    topics: &[String],
) -> Result<BTreeMap<String, u32>, ProbeError> {
    let request = DescribeConfigsRequest::default().with_resources(
        topics
            .iter()
            .map(|topic| {
                DescribeConfigsResource::default()
                    .with_resource_type(TOPIC_RESOURCE)
                    .with_resource_name(StrBytes::from_string(topic.clone()))
                    .with_configuration_keys(Some(vec![StrBytes::from_static_str(MIN_INSYNC)]))
            })
            .collect(),
    );
    let response: DescribeConfigsResponse = probe::round_trip(
        stream,
        listener,
        (ApiKey::DescribeConfigs, version, 3),
        &request,
    )
    .await?;
    let mut minimums = BTreeMap::new();
    for result in &response.results {
        if result.error_code != 0 {
            // A topic deleted between the two requests, or one this client may not describe: its partitions
            // keep Kafka's default, the least demanding reading.
            continue;
        }
        let value = result
            .configs
            .iter()
            .find(|config| config.name.as_str() == MIN_INSYNC)
            .and_then(|config| config.value.as_ref())
            .and_then(|value| value.parse().ok());
        if let Some(min) = value {
            minimums.insert(result.resource_name.to_string(), min);
        }
    }
    Ok(minimums)
}

/// The live brokers and every partition, from a Metadata answer (`min.insync.replicas` still Kafka's default).
fn view_of(metadata: &MetadataResponse) -> ReplicationView {
    let id = |raw: i32| u32::try_from(raw).ok().map(BrokerId);
    let ids = |raw: &[kafka_protocol::messages::BrokerId]| -> Vec<BrokerId> {
        raw.iter().filter_map(|b| id(b.0)).collect()
    };
    let partitions = metadata
        .topics
        .iter()
        .filter(|topic| topic.error_code == 0)
        .flat_map(|topic| {
            let name = topic
                .name
                .as_ref()
                .map(|name| name.to_string())
                .unwrap_or_default();
            topic
                .partitions
                .iter()
                .map(move |partition| PartitionReplicas {
                    topic: name.clone(),
                    partition: partition.partition_index,
                    leader: id(partition.leader_id.0),
                    replicas: ids(&partition.replica_nodes),
                    isr: ids(&partition.isr_nodes),
                    min_insync: DEFAULT_MIN_INSYNC,
                })
        })
        .collect();
    ReplicationView {
        live_brokers: metadata
            .brokers
            .iter()
            .filter_map(|broker| id(broker.node_id.0))
            .collect(),
        partitions,
    }
}
