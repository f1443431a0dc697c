//! The simulator's own view of EC2 (the strict moto server), through the real SDK: it lays the cluster out as the
//! CloudFormation example would (VPC, a subnet per zone, a tagged ENI with a fixed address and a tagged volume per
//! broker id; the test kit's seeding, [`berth_testkit::aws::world`], which the adapter tests use too), launches
//! and terminates instances, and reads attachments so the hot-plug can mirror them.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use aws_sdk_ec2::types::Filter;
use aws_sdk_ec2::Client;
use berth_testkit::aws::world::{self, Network};

use crate::layout;

/// A failed EC2 call, naming the operation and what it was about.
#[derive(Debug, thiserror::Error)]
pub enum Ec2Error {
    /// The SDK call failed.
    #[error("EC2 {operation} ({subject}) failed: {message}")]
    Call {
        /// The API operation.
        operation: &'static str,
        /// The resource or zone concerned.
        subject: String,
        /// The SDK's error, with its code when the service gave one.
        message: String,
    },
}

fn call_error<E: std::error::Error + 'static>(
    operation: &'static str,
    subject: impl Into<String>,
    error: E,
) -> Ec2Error {
    Ec2Error::Call {
        operation,
        subject: subject.into(),
        message: berth_core::ports::chain_message(&error),
    }
}

/// A failed call of the test kit's seeding helpers, with the SDK's chain of causes.
fn seed_error(
    operation: &'static str,
    subject: impl Into<String>,
    error: &world::SeedError,
) -> Ec2Error {
    Ec2Error::Call {
        operation,
        subject: subject.into(),
        message: berth_core::ports::chain_message(error.as_ref()),
    }
}

/// Whether an attachment in `state` holds its ENI or volume (attaching counts: the device is on its way).
fn holds(state: &str) -> bool {
    matches!(state, "attaching" | "attached")
}

/// One broker id's resources, as created for the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerResources {
    /// Broker id.
    pub id: u32,
    /// Zone index.
    pub az: usize,
    /// The ENI's id.
    pub eni_id: String,
    /// The ENI's MAC (what the hot-plugged link carries).
    pub mac: String,
    /// The ENI's fixed private address.
    pub ip: Ipv4Addr,
    /// The data volume's id.
    pub volume_id: String,
}

/// A launched instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Instance id.
    pub id: String,
    /// MAC of its primary interface (device 0).
    pub primary_mac: String,
    /// Id of its primary interface.
    pub primary_eni: String,
}

/// Who holds each of the cluster's ENIs and volumes right now (`None` = available).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attachments {
    /// ENI id to the instance it is attached (or attaching) to.
    pub enis: HashMap<String, Option<String>>,
    /// Volume id to the instance it is attached (or attaching) to.
    pub volumes: HashMap<String, Option<String>>,
}

/// An SDK client pointed at the simulated region's moto server.
#[derive(Debug, Clone)]
pub struct Ec2 {
    client: Client,
    cluster: String,
}

/// Static credentials moto accepts (the test kit's client uses the same); also what berth gets in its environment.
pub const ACCESS_KEY: &str = "testing";
/// See [`ACCESS_KEY`].
pub const SECRET_KEY: &str = "testing";
/// The instance role a host booted from the template's launch template has in its IMDS (carrying
/// [`ACCESS_KEY`]'s credentials): what berth's default credential chain finds there.
pub const INSTANCE_ROLE: &str = "berth-broker";
impl Ec2 {
    /// A client for `endpoint` (e.g. `http://10.0.0.20:5000`) that reads and tags resources of `cluster`.
    pub fn connect(endpoint: &str, cluster: &str) -> Self {
        Self {
            client: world::ec2_client(endpoint, layout::REGION),
            cluster: cluster.to_owned(),
        }
    }

    /// The VPC and one subnet per zone (the test kit's seeding).
    pub async fn create_network(&self, zones: usize) -> Result<Network, Ec2Error> {
        let names: Vec<String> = (0..zones).map(layout::zone_name).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        world::network(&self.client, &refs)
            .await
            .map_err(|e| seed_error("CreateVpc/CreateSubnet", names.join(","), &e))
    }

    /// A tagged ENI with its fixed address and a tagged 1 GiB volume for each id, in the id's zone (the test
    /// kit's seeding).
    pub async fn create_broker_resources(
        &self,
        net: &Network,
        zones: usize,
        ids: u32,
    ) -> Result<Vec<BrokerResources>, Ec2Error> {
        let mut out = Vec::new();
        for id in 0..ids {
            let az = layout::zone_of_id(id, zones);
            let name = layout::name_tag(id);
            let pairs = [
                ("Name", name.as_str()),
                (layout::CLUSTER_TAG, self.cluster.as_str()),
            ];
            let ip = layout::eni_ip(id, zones);
            let seeded = world::broker_id(
                &self.client,
                net,
                id as usize,
                &layout::zone_name(az),
                Some(ip),
                &pairs,
            )
            .await
            .map_err(|e| seed_error("CreateNetworkInterface/CreateVolume", &name, &e))?;
            out.push(BrokerResources {
                id,
                az,
                eni_id: seeded.eni_id,
                mac: seeded.mac.to_lowercase(),
                ip: seeded.ip,
                volume_id: seeded.volume_id,
            });
        }
        Ok(out)
    }

    /// Launches one instance in zone `az` with primary address `ip`, named `host`.
    pub async fn run_instance(
        &self,
        net: &Network,
        az: usize,
        ip: Ipv4Addr,
        host: &str,
    ) -> Result<Instance, Ec2Error> {
        let tags = [("Name", host), (layout::CLUSTER_TAG, self.cluster.as_str())];
        let seeded = world::instance_at(&self.client, net, &layout::zone_name(az), Some(ip), &tags)
            .await
            .map_err(|e| seed_error("RunInstances", host, &e))?;
        Ok(Instance {
            id: seeded.instance_id,
            primary_mac: seeded.primary_mac.to_lowercase(),
            primary_eni: seeded.primary_eni_id,
        })
    }

    /// Terminates an instance (moto may hold it in shutting-down when the strict launcher is told to).
    pub async fn terminate(&self, instance: &str) -> Result<(), Ec2Error> {
        world::terminate(&self.client, instance)
            .await
            .map_err(|e| seed_error("TerminateInstances", instance, &e))
    }

    /// An instance's state name (`running`, `shutting-down`, `terminated`, ...).
    pub async fn instance_state(&self, instance: &str) -> Result<String, Ec2Error> {
        world::instance_state(&self.client, instance)
            .await
            .map_err(|e| seed_error("DescribeInstances", instance, &e))
    }

    /// The cluster's ENIs and volumes (two describe calls filtered by the cluster tag).
    async fn described(
        &self,
    ) -> Result<
        (
            aws_sdk_ec2::operation::describe_network_interfaces::DescribeNetworkInterfacesOutput,
            aws_sdk_ec2::operation::describe_volumes::DescribeVolumesOutput,
        ),
        Ec2Error,
    > {
        let filter = Filter::builder()
            .name(format!("tag:{}", layout::CLUSTER_TAG))
            .values(&self.cluster)
            .build();
        let enis = self
            .client
            .describe_network_interfaces()
            .filters(filter.clone())
            .send()
            .await
            .map_err(|e| call_error("DescribeNetworkInterfaces", &self.cluster, e))?;
        let volumes = self
            .client
            .describe_volumes()
            .filters(filter)
            .send()
            .await
            .map_err(|e| call_error("DescribeVolumes", &self.cluster, e))?;
        Ok((enis, volumes))
    }

    /// Who holds each of the cluster's ENIs and volumes (two describe calls filtered by the cluster tag).
    pub async fn attachments(&self) -> Result<Attachments, Ec2Error> {
        let (enis, volumes) = self.described().await?;
        let mut out = Attachments::default();
        for eni in enis.network_interfaces() {
            let Some(id) = eni.network_interface_id() else {
                continue;
            };
            let holder = eni
                .attachment()
                .filter(|a| a.status().is_some_and(|s| holds(s.as_str())))
                .and_then(|a| a.instance_id())
                .map(str::to_owned);
            out.enis.insert(id.to_owned(), holder);
        }
        for volume in volumes.volumes() {
            let Some(id) = volume.volume_id() else {
                continue;
            };
            let holder = volume
                .attachments()
                .iter()
                .find(|a| a.state().is_some_and(|s| holds(s.as_str())))
                .and_then(|a| a.instance_id())
                .map(str::to_owned);
            out.volumes.insert(id.to_owned(), holder);
        }
        Ok(out)
    }

    /// Broker ids `0..ids`' ENIs and volumes as EC2 holds them, found as berth finds them: by the cluster tag and
    /// the seed's scheme `Name=KAFKA-<id>` (a stack created them; [`crate::stack`]). An id missing either is an
    /// error naming it.
    pub async fn tagged_broker_resources(
        &self,
        net: &Network,
        ids: u32,
    ) -> Result<Vec<BrokerResources>, Ec2Error> {
        let (enis, volumes) = self.described().await?;
        let named = |tags: &[aws_sdk_ec2::types::Tag], id: u32| {
            tags.iter().any(|t| {
                t.key() == Some("Name") && t.value() == Some(layout::name_tag(id).as_str())
            })
        };
        let missing = |what: &str, id: u32| Ec2Error::Call {
            operation: "DescribeNetworkInterfaces/DescribeVolumes",
            subject: layout::name_tag(id),
            message: format!(
                "no {what} tagged Name={} in cluster {}",
                layout::name_tag(id),
                self.cluster
            ),
        };
        (0..ids)
            .map(|id| {
                let eni = enis
                    .network_interfaces()
                    .iter()
                    .find(|eni| named(eni.tag_set(), id))
                    .ok_or_else(|| missing("ENI", id))?;
                let volume = volumes
                    .volumes()
                    .iter()
                    .find(|volume| named(volume.tags(), id))
                    .ok_or_else(|| missing("volume", id))?;
                let subnet = eni.subnet_id().unwrap_or_default();
                let az = net
                    .subnets
                    .iter()
                    .find(|(_, s)| s.as_str() == subnet)
                    .and_then(|(zone, _)| {
                        (0..net.subnets.len()).find(|az| layout::zone_name(*az) == *zone)
                    })
                    .ok_or_else(|| missing("ENI in a subnet of the region", id))?;
                Ok(BrokerResources {
                    id,
                    az,
                    eni_id: eni.network_interface_id().unwrap_or_default().to_owned(),
                    mac: eni.mac_address().unwrap_or_default().to_lowercase(),
                    ip: eni
                        .private_ip_address()
                        .and_then(|ip| ip.parse().ok())
                        .ok_or_else(|| missing("ENI with a private address", id))?,
                    volume_id: volume.volume_id().unwrap_or_default().to_owned(),
                })
            })
            .collect()
    }

    /// The underlying SDK client (for tests that inspect more).
    pub fn client(&self) -> &Client {
        &self.client
    }
}
