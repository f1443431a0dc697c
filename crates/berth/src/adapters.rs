//! Builds the production adapters from the configuration: IMDSv2/EC2/CloudFormation/Auto Scaling, the claim
//! backend (ZooKeeper, or EC2's ENI attachments), rtnetlink, block devices and mounts, and Kafka. Nothing here
//! decides anything; each adapter crate owns its job.

use std::sync::Arc;

use anyhow::Context;
use berth_config::ClaimBackend;
use berth_core::Coordination;

use crate::daemon::Adapters;

/// The production adapters. Nothing is contacted yet except the instance metadata service, which the AWS SDK
/// configuration needs for the region when `aws.region` is empty.
pub async fn production(config: &berth_config::Config) -> anyhow::Result<Adapters> {
    let cloud = berth_aws::AwsCloud::new(config)
        .await
        .context("AWS clients")?;
    let mut broker = berth_kafka::KafkaBroker::new(config)
        .context("Kafka adapter")?
        .with_birth_record(Arc::new(cloud.birth_record()));
    let coordination: Arc<dyn Coordination> = match config.claim_backend() {
        ClaimBackend::Zookeeper => {
            let zookeeper = berth_zk::ZkCoordination::new(config).context("ZooKeeper adapter")?;
            broker = broker.borrowing_zookeeper_session(zookeeper.shared_session());
            Arc::new(zookeeper)
        }
        ClaimBackend::Ec2 => Arc::new(cloud.ec2_claim()),
    };
    let network = berth_net::NetlinkNetwork::new().context("netlink socket")?;
    let storage = berth_storage::BlockStorage::new(config);
    Ok(Adapters {
        cloud: Arc::new(cloud),
        coordination,
        network: Arc::new(network),
        storage: Arc::new(storage),
        broker: Arc::new(broker),
    })
}
