//! Seeding moto with what a berth cluster's CloudFormation stack would create: a VPC, one subnet per AZ,
//! tagged ENIs and volumes per broker id, and instances standing in for ASG members.
//!
//! The adapter tests and the simulated fleet build the same world through these functions (the fleet adds fixed
//! addresses, as its CloudFormation stack would), so the tagging scheme and the seeding are written once.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use aws_sdk_ec2::Client;

/// The error type of the seeding helpers (tests `expect` them).
pub type SeedError = Box<dyn std::error::Error + Send + Sync>;

/// An EC2 client for moto (or a proxy in front of it): static test credentials, the given region.
pub fn ec2_client(endpoint: &str, region: &str) -> Client {
    let config = aws_sdk_ec2::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "berth-testkit",
        ))
        .build();
    Client::from_conf(config)
}

/// The cluster's network: a VPC and one subnet per AZ (`10.0.<n+1>.0/24` for the n-th zone).
#[derive(Debug, Clone)]
pub struct Network {
    /// `vpc-...`
    pub vpc_id: String,
    /// Subnet id per AZ.
    pub subnets: BTreeMap<String, String>,
}

/// One broker id's resources as seeded.
#[derive(Debug, Clone)]
pub struct SeededId {
    /// `eni-...`
    pub eni_id: String,
    /// The ENI's MAC.
    pub mac: String,
    /// The ENI's fixed private IP.
    pub ip: Ipv4Addr,
    /// `vol-...`
    pub volume_id: String,
    /// Where both live.
    pub availability_zone: String,
}

/// An instance standing in for an ASG member.
#[derive(Debug, Clone)]
pub struct SeededInstance {
    /// `i-...`
    pub instance_id: String,
    /// Its AZ.
    pub availability_zone: String,
    /// Its primary ENI's MAC.
    pub primary_mac: String,
    /// Its primary ENI.
    pub primary_eni_id: String,
}

fn tags(kind: ResourceType, tags: &[(&str, &str)]) -> TagSpecification {
    let mut spec = TagSpecification::builder().resource_type(kind);
    for (key, value) in tags {
        spec = spec.tags(Tag::builder().key(*key).value(*value).build());
    }
    spec.build()
}

/// Creates a VPC (`10.0.0.0/16`) with one subnet per zone.
pub async fn network(client: &Client, zones: &[&str]) -> Result<Network, SeedError> {
    let vpc = client.create_vpc().cidr_block("10.0.0.0/16").send().await?;
    let vpc_id = vpc
        .vpc()
        .and_then(|v| v.vpc_id())
        .ok_or("no vpc id")?
        .to_owned();
    let mut subnets = BTreeMap::new();
    for (index, zone) in zones.iter().enumerate() {
        let subnet = client
            .create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block(format!("10.0.{}.0/24", index + 1))
            .availability_zone(*zone)
            .send()
            .await?;
        let id = subnet
            .subnet()
            .and_then(|s| s.subnet_id())
            .ok_or("no subnet id")?
            .to_owned();
        subnets.insert((*zone).to_owned(), id);
    }
    Ok(Network { vpc_id, subnets })
}

/// Creates an ENI in the zone's subnet with the given tags.
pub async fn eni(
    client: &Client,
    net: &Network,
    zone: &str,
    tag_list: &[(&str, &str)],
) -> Result<(String, String, Ipv4Addr), SeedError> {
    eni_at(client, net, zone, None, "", tag_list).await
}

/// Creates an ENI in the zone's subnet with the given tags, at `ip` when given (else the subnet picks one) and
/// with `description`: its id, MAC and address.
pub async fn eni_at(
    client: &Client,
    net: &Network,
    zone: &str,
    ip: Option<Ipv4Addr>,
    description: &str,
    tag_list: &[(&str, &str)],
) -> Result<(String, String, Ipv4Addr), SeedError> {
    let subnet = net
        .subnets
        .get(zone)
        .ok_or_else(|| format!("no subnet in {zone}"))?;
    let created = client
        .create_network_interface()
        .subnet_id(subnet)
        .set_private_ip_address(ip.map(|ip| ip.to_string()))
        .set_description((!description.is_empty()).then(|| description.to_owned()))
        .tag_specifications(tags(ResourceType::NetworkInterface, tag_list))
        .send()
        .await?;
    let eni = created.network_interface().ok_or("no interface")?;
    Ok((
        eni.network_interface_id().ok_or("no eni id")?.to_owned(),
        eni.mac_address().ok_or("no mac")?.to_owned(),
        eni.private_ip_address().ok_or("no ip")?.parse()?,
    ))
}

/// Creates a 1 GiB volume in the zone with the given tags.
pub async fn volume(
    client: &Client,
    zone: &str,
    tag_list: &[(&str, &str)],
) -> Result<String, SeedError> {
    let created = client
        .create_volume()
        .availability_zone(zone)
        .size(1)
        .tag_specifications(tags(ResourceType::Volume, tag_list))
        .send()
        .await?;
    Ok(created.volume_id().ok_or("no volume id")?.to_owned())
}

/// Seeds broker ids `0..zones.len()`, id n in `zones[n]`, tagged `<key>=<template with id>` (template `{id}`
/// placeholder) and, when `cluster_tag` is given, `<cluster key>=<cluster name>`.
pub async fn broker_ids(
    client: &Client,
    net: &Network,
    zones: &[&str],
    key: &str,
    template: &str,
    cluster_tag: Option<(&str, &str)>,
) -> Result<Vec<SeededId>, SeedError> {
    let mut seeded = Vec::new();
    for (id, zone) in zones.iter().enumerate() {
        let value = template.replace("{id}", &id.to_string());
        let mut tag_list = vec![(key, value.as_str())];
        tag_list.extend(cluster_tag);
        seeded.push(broker_id(client, net, id, zone, None, &tag_list).await?);
    }
    Ok(seeded)
}

/// Seeds one broker id's resources in `zone`, both tagged `tag_list`: its ENI (described `broker <id>`, at `ip`
/// when given) and its 1 GiB volume. The adapter tests and the simulated fleet seed ids through this.
pub async fn broker_id(
    client: &Client,
    net: &Network,
    id: usize,
    zone: &str,
    ip: Option<Ipv4Addr>,
    tag_list: &[(&str, &str)],
) -> Result<SeededId, SeedError> {
    let description = format!("broker {id}");
    let (eni_id, mac, ip) = eni_at(client, net, zone, ip, &description, tag_list).await?;
    let volume_id = volume(client, zone, tag_list).await?;
    Ok(SeededId {
        eni_id,
        mac,
        ip,
        volume_id,
        availability_zone: zone.to_owned(),
    })
}

/// The seed's world: a network with a subnet in each of `network_zones`, and broker ids `0..id_zones.len()`
/// (id n in `id_zones[n]`) tagged with the seed's scheme `Name=KAFKA-{id}` and `<cluster key>=<cluster name>`.
pub async fn seed_world(
    client: &Client,
    network_zones: &[&str],
    id_zones: &[&str],
    cluster_tag: (&str, &str),
) -> Result<(Network, Vec<SeededId>), SeedError> {
    let net = network(client, network_zones).await?;
    let ids = broker_ids(
        client,
        &net,
        id_zones,
        "Name",
        "KAFKA-{id}",
        Some(cluster_tag),
    )
    .await?;
    Ok((net, ids))
}

/// Launches an instance in the zone's subnet, tagged as given.
pub async fn instance(
    client: &Client,
    net: &Network,
    zone: &str,
    tag_list: &[(&str, &str)],
) -> Result<SeededInstance, SeedError> {
    instance_at(client, net, zone, None, tag_list).await
}

/// Launches an instance in the zone's subnet, tagged as given, with primary address `ip` when given (else the
/// subnet picks one).
pub async fn instance_at(
    client: &Client,
    net: &Network,
    zone: &str,
    ip: Option<Ipv4Addr>,
    tag_list: &[(&str, &str)],
) -> Result<SeededInstance, SeedError> {
    let subnet = net
        .subnets
        .get(zone)
        .ok_or_else(|| format!("no subnet in {zone}"))?;
    let mut run = client
        .run_instances()
        .image_id("ami-12c6146b")
        .min_count(1)
        .max_count(1)
        .subnet_id(subnet)
        .set_private_ip_address(ip.map(|ip| ip.to_string()));
    if !tag_list.is_empty() {
        run = run.tag_specifications(tags(ResourceType::Instance, tag_list));
    }
    let output = run.send().await?;
    let instance = output.instances().first().ok_or("no instance")?;
    let primary = instance
        .network_interfaces()
        .iter()
        .find(|eni| eni.attachment().and_then(|a| a.device_index()) == Some(0))
        .or_else(|| instance.network_interfaces().first())
        .ok_or("no primary interface")?;
    Ok(SeededInstance {
        instance_id: instance.instance_id().ok_or("no instance id")?.to_owned(),
        availability_zone: zone.to_owned(),
        primary_mac: primary.mac_address().ok_or("no mac")?.to_owned(),
        primary_eni_id: primary
            .network_interface_id()
            .ok_or("no eni id")?
            .to_owned(),
    })
}

/// The instance's state name (`running`, `shutting-down`, `terminated`, ...).
pub async fn instance_state(client: &Client, instance_id: &str) -> Result<String, SeedError> {
    let output = client
        .describe_instances()
        .instance_ids(instance_id)
        .send()
        .await?;
    let instance = output
        .reservations()
        .first()
        .and_then(|r| r.instances().first())
        .ok_or("no such instance")?;
    Ok(instance
        .state()
        .and_then(|s| s.name())
        .map(|n| n.as_str().to_owned())
        .ok_or("no state")?)
}

/// The ENI's status and the instance it is attached to.
pub async fn eni_owner(
    client: &Client,
    eni_id: &str,
) -> Result<(String, Option<String>), SeedError> {
    let output = client
        .describe_network_interfaces()
        .network_interface_ids(eni_id)
        .send()
        .await?;
    let eni = output.network_interfaces().first().ok_or("no such eni")?;
    let status = eni
        .status()
        .map(|s| s.as_str().to_owned())
        .unwrap_or_default();
    Ok((
        status,
        eni.attachment()
            .and_then(|a| a.instance_id())
            .map(str::to_owned),
    ))
}

/// The volume's state and the instance it is attached to.
pub async fn volume_owner(
    client: &Client,
    volume_id: &str,
) -> Result<(String, Option<String>), SeedError> {
    let output = client
        .describe_volumes()
        .volume_ids(volume_id)
        .send()
        .await?;
    let volume = output.volumes().first().ok_or("no such volume")?;
    let state = volume
        .state()
        .map(|s| s.as_str().to_owned())
        .unwrap_or_default();
    Ok((
        state,
        volume
            .attachments()
            .first()
            .and_then(|a| a.instance_id())
            .map(str::to_owned),
    ))
}

/// Attaches an ENI directly (setting up "owned by another instance" situations).
pub async fn attach_eni(
    client: &Client,
    eni_id: &str,
    instance_id: &str,
    device_index: i32,
) -> Result<(), SeedError> {
    client
        .attach_network_interface()
        .network_interface_id(eni_id)
        .instance_id(instance_id)
        .device_index(device_index)
        .send()
        .await?;
    Ok(())
}

/// Attaches a volume directly.
pub async fn attach_volume(
    client: &Client,
    volume_id: &str,
    instance_id: &str,
    device: &str,
) -> Result<(), SeedError> {
    client
        .attach_volume()
        .volume_id(volume_id)
        .instance_id(instance_id)
        .device(device)
        .send()
        .await?;
    Ok(())
}

/// Terminates an instance through the API (moto then holds it in shutting-down when so configured).
pub async fn terminate(client: &Client, instance_id: &str) -> Result<(), SeedError> {
    client
        .terminate_instances()
        .instance_ids(instance_id)
        .send()
        .await?;
    Ok(())
}
