//! The simulator's own view of EC2 (the strict moto server), through the real SDK: it lays the cluster out as the
//! CloudFormation example would (VPC, a subnet per zone, a tagged ENI with a fixed address and a tagged volume per
//! broker id), launches and terminates instances, and reads attachments so the hot-plug can mirror them.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use aws_sdk_ec2::types::{Filter, InstanceType, ResourceType, Tag, TagSpecification};
use aws_sdk_ec2::Client;
use berth_testkit::aws::world;

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
    /// The answer lacked a field the simulation needs.
    #[error("EC2 {operation} ({subject}) answered without {field}")]
    Missing {
        /// The API operation.
        operation: &'static str,
        /// The resource or zone concerned.
        subject: String,
        /// The missing field.
        field: &'static str,
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

/// A failed call of the test kit's seeding helpers (their message as it is).
fn seed_error(
    operation: &'static str,
    subject: impl Into<String>,
    error: &world::SeedError,
) -> Ec2Error {
    Ec2Error::Call {
        operation,
        subject: subject.into(),
        message: error.to_string(),
    }
}

/// Whether an attachment in `state` holds its ENI or volume (attaching counts: the device is on its way).
fn holds(state: &str) -> bool {
    matches!(state, "attaching" | "attached")
}

fn missing(operation: &'static str, subject: impl Into<String>, field: &'static str) -> Ec2Error {
    Ec2Error::Missing {
        operation,
        subject: subject.into(),
        field,
    }
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

fn tags(resource: ResourceType, pairs: &[(&str, &str)]) -> TagSpecification {
    let mut spec = TagSpecification::builder().resource_type(resource);
    for (key, value) in pairs {
        spec = spec.tags(Tag::builder().key(*key).value(*value).build());
    }
    spec.build()
}

/// Static credentials moto accepts (the test kit's client uses the same); also what berth gets in its environment.
pub const ACCESS_KEY: &str = "testing";
/// See [`ACCESS_KEY`].
pub const SECRET_KEY: &str = "testing";
/// An image id moto knows.
const IMAGE: &str = "ami-12c6146b";

impl Ec2 {
    /// A client for `endpoint` (e.g. `http://10.0.0.20:5000`) that reads and tags resources of `cluster`.
    pub fn connect(endpoint: &str, cluster: &str) -> Self {
        Self {
            client: world::ec2_client(endpoint, layout::REGION),
            cluster: cluster.to_owned(),
        }
    }

    /// The VPC and one subnet per zone (the test kit's seeding); returns the subnet ids by zone index.
    pub async fn create_network(&self, zones: usize) -> Result<Vec<String>, Ec2Error> {
        let names: Vec<String> = (0..zones).map(layout::zone_name).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let network = world::network(&self.client, &refs)
            .await
            .map_err(|e| seed_error("CreateVpc/CreateSubnet", names.join(","), &e))?;
        names
            .iter()
            .map(|zone| {
                network
                    .subnets
                    .get(zone)
                    .cloned()
                    .ok_or_else(|| missing("CreateSubnet", zone, "SubnetId"))
            })
            .collect()
    }

    /// A tagged ENI with its fixed address and a tagged 1 GiB volume for each id, in the id's zone.
    pub async fn create_broker_resources(
        &self,
        subnets: &[String],
        ids: u32,
    ) -> Result<Vec<BrokerResources>, Ec2Error> {
        let zones = subnets.len();
        let mut out = Vec::new();
        for id in 0..ids {
            let az = layout::zone_of_id(id, zones);
            let name = layout::name_tag(id);
            let pairs = [
                ("Name", name.as_str()),
                (layout::CLUSTER_TAG, self.cluster.as_str()),
            ];
            let ip = layout::eni_ip(id, zones);
            let eni = self
                .client
                .create_network_interface()
                .subnet_id(&subnets[az])
                .private_ip_address(ip.to_string())
                .description(format!("broker {id}"))
                .tag_specifications(tags(ResourceType::NetworkInterface, &pairs))
                .send()
                .await
                .map_err(|e| call_error("CreateNetworkInterface", &name, e))?;
            let eni = eni
                .network_interface()
                .ok_or_else(|| missing("CreateNetworkInterface", &name, "NetworkInterface"))?;
            let eni_id = eni
                .network_interface_id()
                .ok_or_else(|| missing("CreateNetworkInterface", &name, "Id"))?;
            let mac = eni
                .mac_address()
                .ok_or_else(|| missing("CreateNetworkInterface", &name, "MacAddress"))?;
            let volume_id = world::volume(&self.client, &layout::zone_name(az), &pairs)
                .await
                .map_err(|e| seed_error("CreateVolume", &name, &e))?;
            out.push(BrokerResources {
                id,
                az,
                eni_id: eni_id.to_owned(),
                mac: mac.to_lowercase(),
                ip,
                volume_id,
            });
        }
        Ok(out)
    }

    /// Launches one instance in `subnet` with primary address `ip`.
    pub async fn run_instance(
        &self,
        subnet: &str,
        ip: Ipv4Addr,
        host: &str,
    ) -> Result<Instance, Ec2Error> {
        let launched = self
            .client
            .run_instances()
            .image_id(IMAGE)
            .instance_type(InstanceType::M5Large)
            .min_count(1)
            .max_count(1)
            .subnet_id(subnet)
            .private_ip_address(ip.to_string())
            .tag_specifications(tags(
                ResourceType::Instance,
                &[("Name", host), (layout::CLUSTER_TAG, &self.cluster)],
            ))
            .send()
            .await
            .map_err(|e| call_error("RunInstances", host, e))?;
        let instance = launched
            .instances()
            .first()
            .ok_or_else(|| missing("RunInstances", host, "Instances"))?;
        let id = instance
            .instance_id()
            .ok_or_else(|| missing("RunInstances", host, "InstanceId"))?;
        let primary = instance
            .network_interfaces()
            .iter()
            .find(|eni| eni.attachment().and_then(|a| a.device_index()) == Some(0))
            .or_else(|| instance.network_interfaces().first())
            .ok_or_else(|| missing("RunInstances", host, "NetworkInterfaces"))?;
        Ok(Instance {
            id: id.to_owned(),
            primary_mac: primary
                .mac_address()
                .ok_or_else(|| missing("RunInstances", host, "MacAddress"))?
                .to_lowercase(),
            primary_eni: primary
                .network_interface_id()
                .unwrap_or_default()
                .to_owned(),
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

    /// Who holds each of the cluster's ENIs and volumes (two describe calls filtered by the cluster tag).
    pub async fn attachments(&self) -> Result<Attachments, Ec2Error> {
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

    /// The underlying SDK client (for tests that inspect more).
    pub fn client(&self) -> &Client {
        &self.client
    }
}
