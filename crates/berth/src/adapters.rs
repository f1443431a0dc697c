//! Builds the production adapters from the configuration: IMDSv2/EC2/CloudFormation/Auto Scaling, ZooKeeper,
//! rtnetlink, block devices and mounts, and Kafka. Nothing here decides anything; each adapter crate owns its job.

use std::sync::Arc;

use anyhow::Context;

use crate::daemon::Adapters;

/// The production adapters. Nothing is contacted yet except the instance metadata service, which the AWS SDK
/// configuration needs for the region when `aws.region` is empty.
pub async fn production(config: &berth_config::Config) -> anyhow::Result<Adapters> {
    let cloud = berth_aws::AwsCloud::new(config)
        .await
        .context("AWS clients")?;
    let coordination = berth_zk::ZkCoordination::new(config).context("ZooKeeper adapter")?;
    let network = berth_net::NetlinkNetwork::new().context("netlink socket")?;
    let storage = berth_storage::BlockStorage::new(config);
    let broker = berth_kafka::KafkaBroker::new(config)
        .context("Kafka adapter")?
        .borrowing_zookeeper_session(coordination.shared_session());
    Ok(Adapters {
        cloud: Arc::new(cloud),
        coordination: Arc::new(coordination),
        network: Arc::new(network),
        storage: Arc::new(storage),
        broker: Arc::new(broker),
    })
}
