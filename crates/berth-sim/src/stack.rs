//! The CloudFormation template deployed in the simulated region as an operator deploys it, so the template, not
//! the simulator, says what exists: its parameters given from the region (the cluster's name, the zones and
//! their subnets, the brokers' addresses, the KRaft cluster id), its EC2 resources (security groups, ENIs,
//! volumes, the launch template) created in moto by the test kit's simulated CloudFormation
//! ([`berth_testkit::aws::template::ec2`]), and its Auto Scaling groups read for the region's groups
//! ([`crate::asg::stack_groups`]).

use std::collections::BTreeMap;
use std::path::Path;

use berth_testkit::aws::template::creation::{self, GroupDeclaration};
use berth_testkit::aws::template::TemplateError;
use berth_testkit::aws::template::{ec2 as template_ec2, Kind, Physical, Pseudo, Stack, Template};
use berth_testkit::aws::world::Network;

use crate::ec2::{BrokerResources, Ec2, Ec2Error};
use crate::{asg, layout};

/// The letters of the template's per-zone parameters (`ZoneA`, `SubnetA`, ...), one per broker id.
const ZONE_LETTERS: [&str; 3] = ["A", "B", "C"];

/// Names every resource by its logical id: the packet filter and the groups need the resources' identities,
/// not EC2's ids.
pub struct ByLogicalId;

impl Physical for ByLogicalId {
    fn reference(&self, logical_id: &str) -> Option<String> {
        Some(logical_id.to_owned())
    }
    fn attribute(&self, logical_id: &str, attribute: &str) -> Option<serde_json::Value> {
        Some(format!("{logical_id}.{attribute}").into())
    }
}

/// The parameters an operator gives the template for cluster `cluster` in the region's `zones` zones: broker id
/// n in zone `n % zones`, at its fixed address; the subnets are `network`'s, or `subnet-<zone index>` when the
/// resources are not created (the packet filter and the groups name them only).
pub fn parameters(
    cluster: &str,
    zones: usize,
    network: Option<&Network>,
) -> BTreeMap<String, String> {
    let mut given = BTreeMap::from([
        ("ClusterName".to_owned(), cluster.to_owned()),
        ("ImageId".to_owned(), "ami-00000000000000000".to_owned()),
        (
            "VpcId".to_owned(),
            network.map_or("vpc-sim".to_owned(), |n| n.vpc_id.clone()),
        ),
        (
            "KafkaClusterId".to_owned(),
            crate::fleet::KAFKA_CLUSTER_ID.to_owned(),
        ),
    ]);
    for (n, letter) in ZONE_LETTERS.into_iter().enumerate() {
        let az = n % zones;
        let zone = layout::zone_name(az);
        let subnet = network
            .and_then(|n| n.subnets.get(&zone).cloned())
            .unwrap_or_else(|| format!("subnet-{az}"));
        given.insert(format!("Zone{letter}"), zone);
        given.insert(format!("Subnet{letter}"), subnet);
        given.insert(
            format!("BrokerIp{n}"),
            layout::eni_ip(n as u32, zones).to_string(),
        );
    }
    given
}

/// The template at `path` instantiated with [`parameters`], as stack [`asg::stack_name`] of the region.
pub fn instantiated(
    path: &Path,
    cluster: &str,
    zones: usize,
    network: Option<&Network>,
) -> Result<Stack, TemplateError> {
    instantiated_with(path, cluster, zones, network, &BTreeMap::new())
}

/// [`instantiated`], with the parameters `given` added or replacing [`parameters`]'.
pub fn instantiated_with(
    path: &Path,
    cluster: &str,
    zones: usize,
    network: Option<&Network>,
    given: &BTreeMap<String, String>,
) -> Result<Stack, TemplateError> {
    let template = Template::load(path)?;
    let name = asg::stack_name(cluster);
    let pseudo = Pseudo {
        region: layout::REGION.into(),
        account_id: "123456789012".into(),
        stack_id: format!(
            "arn:aws:cloudformation:{}:123456789012:stack/{name}/sim",
            layout::REGION
        ),
        stack_name: name,
        zones: (0..zones).map(layout::zone_name).collect(),
    };
    let mut parameters = parameters(cluster, zones, network);
    parameters.extend(given.clone());
    template.instantiate(&parameters, pseudo)
}

/// The Auto Scaling groups of the template at `path`, in creation order, each with the zone index of its first
/// subnet (a group of the template spans one zone: the ENI and the volume it serves are zonal).
pub fn template_groups(
    path: &Path,
    cluster: &str,
    zones: usize,
) -> Result<Vec<(GroupDeclaration, usize)>, TemplateError> {
    let given = parameters(cluster, zones, None);
    let zone_of_subnet = |subnet: &str| {
        ZONE_LETTERS.iter().enumerate().find_map(|(n, letter)| {
            (given.get(&format!("Subnet{letter}")).map(String::as_str) == Some(subnet))
                .then_some(n % zones)
        })
    };
    let declared = creation::groups(&instantiated(path, cluster, zones, None)?, &ByLogicalId)?;
    declared
        .into_iter()
        .map(|group| {
            let az = group
                .subnets
                .first()
                .and_then(|subnet| zone_of_subnet(subnet))
                .ok_or_else(|| TemplateError::Unenforced {
                    logical_id: group.logical_id.clone(),
                    what: format!(
                        "VPCZoneIdentifier {:?} (a subnet of the region)",
                        group.subnets
                    ),
                })?;
            Ok((group, az))
        })
        .collect()
}

/// `options` for a fleet deployed from the shipped template: its stack creates the groups and resources and its
/// security groups are enforced between the hosts.
pub fn deployed(options: crate::FleetOptions) -> crate::FleetOptions {
    crate::FleetOptions {
        stack: Some(berth_testkit::aws::template::shipped()),
        security_groups: Some(berth_testkit::aws::template::shipped()),
        ..options
    }
}

/// Why the template's resources could not be created.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// The template did not instantiate, or CloudFormation's creation of a resource failed.
    #[error("creating the stack's resources: {0}")]
    Create(#[from] template_ec2::CreateError),
    /// The template did not instantiate.
    #[error("the template: {0}")]
    Template(#[from] TemplateError),
    /// The created ENIs and volumes could not be read back.
    #[error(transparent)]
    Ec2(#[from] Ec2Error),
}

/// What a stack's creation left in EC2 for the fleet.
#[derive(Debug, Clone)]
pub struct Deployed {
    /// Broker ids `0..brokers`' ENIs and volumes as EC2 holds them.
    pub resources: Vec<BrokerResources>,
    /// The launch template the groups launch from (its id in moto).
    pub launch_template: String,
}

/// Creates the EC2 resources of the template at `path` in `network` (moto, through the SDK).
pub async fn create_resources(
    ec2: &Ec2,
    path: &Path,
    cluster: &str,
    zones: usize,
    network: &Network,
    brokers: u32,
) -> Result<Deployed, StackError> {
    let stack = instantiated(path, cluster, zones, Some(network))?;
    let created = template_ec2::create(ec2.client(), &stack).await?;
    let launch_template = stack
        .resources()
        .iter()
        .filter(|r| r.kind == Kind::LaunchTemplate)
        .find_map(|r| created.reference(&r.logical_id))
        .ok_or_else(|| TemplateError::Unenforced {
            logical_id: "AWS::EC2::LaunchTemplate".into(),
            what: "a stack without a launch template, which its groups launch from".into(),
        })?;
    Ok(Deployed {
        resources: ec2.tagged_broker_resources(network, brokers).await?,
        launch_template,
    })
}
