//! The partitions a broker replicates, as ZooKeeper-mode Kafka stores them: `<chroot>/brokers/topics/<topic>`
//! (each partition's assigned replicas) and `.../partitions/<p>/state` (its leader and ISR), with the live
//! brokers from `<chroot>/brokers/ids`.
//!
//! In ZooKeeper mode this is the cluster's own record, readable with no broker up, which is what a blank broker
//! needs before its Kafka starts ([`berth_core::replication::blank_start`]): whether another live broker leads
//! every partition it shares. The reading fails closed: a partition whose state cannot be read (a topic being
//! created or deleted, JSON Kafka does not write) goes into the view's `cannot_judge`.

use std::collections::{BTreeMap, BTreeSet};

use berth_core::replication::{PartitionReplicas, ReplicationView};
use berth_core::BrokerId;
use serde::Deserialize;
use zookeeper_client as zk;

use crate::ZkError;

/// `/brokers/topics/<topic>`: the assignment (partition index → replicas).
#[derive(Deserialize)]
struct TopicAssignment {
    partitions: BTreeMap<String, Vec<i32>>,
}

/// `/brokers/topics/<topic>/partitions/<p>/state`.
#[derive(Deserialize)]
struct PartitionState {
    leader: i32,
    isr: Vec<i32>,
}

/// The partitions `me` replicates, with the live brokers; `min_insync` is not read (0): the blank-start rule
/// does not use it.
pub(crate) async fn replicated_by(
    client: &zk::Client,
    brokers_path: &str,
    me: BrokerId,
) -> Result<ReplicationView, ZkError> {
    let ids_path = format!("{brokers_path}/ids");
    let live_brokers = children(client, &ids_path)
        .await?
        .iter()
        .filter_map(|child| child.parse().ok().map(BrokerId))
        .collect::<BTreeSet<_>>();
    let topics_path = format!("{brokers_path}/topics");
    let mut view = ReplicationView {
        live_brokers,
        ..ReplicationView::default()
    };
    for topic in children(client, &topics_path).await? {
        let path = format!("{topics_path}/{topic}");
        let Some(body) = data(client, &path).await? else {
            continue; // deleted since the listing
        };
        let Ok(assignment) = serde_json::from_slice::<TopicAssignment>(&body) else {
            view.cannot_judge
                .push(format!("{path}: not the assignment JSON Kafka writes"));
            continue;
        };
        for (index, replicas) in assignment.partitions {
            if !replicas.contains(&(me.0 as i32)) {
                continue;
            }
            let state_path = format!("{path}/partitions/{index}/state");
            let state = data(client, &state_path)
                .await?
                .and_then(|body| serde_json::from_slice::<PartitionState>(&body).ok());
            let (Some(state), Ok(partition)) = (state, index.parse()) else {
                view.cannot_judge
                    .push(format!("{state_path}: no partition state Kafka writes"));
                continue;
            };
            view.partitions.push(PartitionReplicas {
                topic: topic.clone(),
                partition,
                leader: broker(state.leader),
                replicas: replicas.into_iter().filter_map(broker).collect(),
                isr: state.isr.into_iter().filter_map(broker).collect(),
                min_insync: 0,
            });
        }
    }
    Ok(view)
}

fn broker(id: i32) -> Option<BrokerId> {
    u32::try_from(id).ok().map(BrokerId)
}

/// A node's children; none when it does not exist (no topic was ever created).
async fn children(client: &zk::Client, path: &str) -> Result<Vec<String>, ZkError> {
    match client.list_children(path).await {
        Ok(children) => Ok(children),
        Err(zk::Error::NoNode) => Ok(Vec::new()),
        Err(source) => Err(ZkError::op("list_children", path, source)),
    }
}

/// A node's data; None when it does not exist.
async fn data(client: &zk::Client, path: &str) -> Result<Option<Vec<u8>>, ZkError> {
    match client.get_data(path).await {
        Ok((body, _)) => Ok(Some(body)),
        Err(zk::Error::NoNode) => Ok(None),
        Err(source) => Err(ZkError::op("get_data", path, source)),
    }
}
