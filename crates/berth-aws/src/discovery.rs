//! Discovery: the cluster's ENIs and volumes by tag, in one filtered, paginated describe per resource type.
//!
//! A mass boot of dozens of hosts must not become an API storm, so each host asks EC2 once per type with
//! server-side filters (`tag:<key>` matching the template's wildcard, plus the cluster tag when configured) and
//! one DescribeSubnets for the CIDRs of the subnets involved. Grouping by id and spotting configuration errors
//! (two ENIs for one id, ENI and volume in different zones, one of them missing) is pure and unit-tested here.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{Filter, NetworkInterface, Tag, Volume};
use berth_core::facts::{
    Attachment, EniFacts, IdResources, Inventory, InventoryProblem, VolumeFacts,
};
use berth_core::tag::TagTemplate;
use berth_core::BrokerId;
use ipnet::Ipv4Net;

use crate::error::AwsError;

/// How the cluster's resources are found: tag key, templates, cluster tag, id range (`tags.*`, `cluster.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoverySpec {
    /// The tag whose value names the id.
    pub key: String,
    /// ENI tag value template.
    pub eni: TagTemplate,
    /// Volume tag value template.
    pub volume: TagTemplate,
    /// `(key, value)` every resource of this cluster carries, when configured.
    pub cluster_tag: Option<(String, String)>,
    /// Ids are `0..broker_count`.
    pub broker_count: u32,
}

impl DiscoverySpec {
    /// The server-side filters for one resource type.
    pub fn filters(&self, template: &TagTemplate) -> Vec<Filter> {
        let mut filters = vec![filter(format!("tag:{}", self.key), [template.wildcard()])];
        if let Some((key, value)) = &self.cluster_tag {
            filters.push(filter(format!("tag:{key}"), [value]));
        }
        filters
    }

    /// The id a resource's tags name under `template`, when in range and in this cluster.
    pub(crate) fn id_of(&self, template: &TagTemplate, tags: &[Tag]) -> Option<BrokerId> {
        let value = tags
            .iter()
            .find(|tag| tag.key() == Some(self.key.as_str()))?
            .value()?;
        let id = template.parse(value)?;
        let in_cluster = self.cluster_tag.as_ref().is_none_or(|(key, wanted)| {
            tags.iter()
                .any(|tag| tag.key() == Some(key.as_str()) && tag.value() == Some(wanted.as_str()))
        });
        (id.0 < self.broker_count && in_cluster).then_some(id)
    }

    /// The facts of the described resources of one kind that carry an id in range, grouped by that id.
    fn group_by_id<R, F>(
        &self,
        template: &TagTemplate,
        resources: &[R],
        tags: impl Fn(&R) -> &[Tag],
        facts: impl Fn(&R) -> Result<F, AwsError>,
    ) -> Result<BTreeMap<BrokerId, Vec<F>>, AwsError> {
        let mut groups: BTreeMap<BrokerId, Vec<F>> = BTreeMap::new();
        for resource in resources {
            if let Some(id) = self.id_of(template, tags(resource)) {
                groups.entry(id).or_default().push(facts(resource)?);
            }
        }
        Ok(groups)
    }
}

/// The subnet ids the ENIs live in (for the one DescribeSubnets call).
pub fn subnet_ids(enis: &[NetworkInterface]) -> Vec<String> {
    let ids: BTreeSet<&str> = enis.iter().filter_map(|eni| eni.subnet_id()).collect();
    ids.into_iter().map(str::to_owned).collect()
}

/// A kind of tagged resource: what a problem calls it, its EC2 id, and the problem when an id has several.
struct Kind<T> {
    what: &'static str,
    name: fn(&T) -> &str,
    several: fn(BrokerId, usize, String) -> InventoryProblem,
}

const ENI: Kind<EniFacts> = Kind {
    what: "ENI",
    name: |eni| &eni.eni_id,
    several: |id, count, ids| InventoryProblem::DuplicateEni { id, count, ids },
};

const VOLUME: Kind<VolumeFacts> = Kind {
    what: "volume",
    name: |volume| &volume.volume_id,
    several: |id, count, ids| InventoryProblem::DuplicateVolume { id, count, ids },
};

/// The one resource an id has of a kind; none, or several, is a problem.
fn the_one<T>(
    mut found: Vec<T>,
    id: BrokerId,
    kind: &Kind<T>,
    problems: &mut Vec<InventoryProblem>,
) -> Option<T> {
    match found.len() {
        0 => problems.push(InventoryProblem::Missing {
            id,
            missing: kind.what.into(),
        }),
        1 => return found.pop(),
        count => {
            let ids = found.iter().map(kind.name).collect::<Vec<_>>();
            problems.push((kind.several)(id, count, ids.join(", ")));
        }
    }
    None
}

/// A server-side filter: `name` matching any of `values`.
pub fn filter<V: Into<String>>(
    name: impl Into<String>,
    values: impl IntoIterator<Item = V>,
) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.into_iter().map(Into::into).collect()))
        .build()
}

/// Maps one described ENI to its facts; the subnet CIDR comes from `cidrs`.
pub fn eni_facts(
    eni: &NetworkInterface,
    cidrs: &BTreeMap<String, Ipv4Net>,
) -> Result<EniFacts, AwsError> {
    const OP: &str = "DescribeNetworkInterfaces";
    let eni_id = eni.network_interface_id().unwrap_or_default().to_owned();
    let malformed = |field| AwsError::malformed(OP, &eni_id, field);
    let mac = eni
        .mac_address()
        .and_then(|mac| mac.parse().ok())
        .ok_or_else(|| malformed("MacAddress"))?;
    let private_ip = eni
        .private_ip_address()
        .and_then(|ip| ip.parse().ok())
        .ok_or_else(|| malformed("PrivateIpAddress"))?;
    let subnet_id = eni
        .subnet_id()
        .ok_or_else(|| malformed("SubnetId"))?
        .to_owned();
    let subnet = *cidrs
        .get(&subnet_id)
        .ok_or_else(|| malformed("subnet CIDR (DescribeSubnets)"))?;
    let availability_zone = eni
        .availability_zone()
        .ok_or_else(|| malformed("AvailabilityZone"))?
        .to_owned();
    let attachment = eni.attachment().and_then(|attachment| {
        live_attachment(
            attachment.instance_id(),
            attachment.status().map(|s| s.as_str()),
            attachment
                .device_index()
                .map(|index| index.to_string())
                .unwrap_or_default(),
        )
    });
    Ok(EniFacts {
        eni_id,
        mac,
        private_ip,
        subnet,
        subnet_id,
        availability_zone,
        attachment,
    })
}

/// Maps one described volume to its facts.
pub fn volume_facts(volume: &Volume) -> Result<VolumeFacts, AwsError> {
    let volume_id = volume.volume_id().unwrap_or_default().to_owned();
    let availability_zone = volume
        .availability_zone()
        .ok_or_else(|| AwsError::malformed("DescribeVolumes", &volume_id, "AvailabilityZone"))?
        .to_owned();
    let attachment = volume.attachments().iter().find_map(|attachment| {
        live_attachment(
            attachment.instance_id(),
            attachment.state().map(|s| s.as_str()),
            attachment.device().unwrap_or_default().to_owned(),
        )
    });
    Ok(VolumeFacts {
        volume_id,
        availability_zone,
        state: volume
            .state()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        size_gib: volume.size().unwrap_or_default(),
        attachment,
    })
}

/// An attachment as EC2 describes it; `None` once `detached` (EC2 keeps listing those for a while).
fn live_attachment(
    instance_id: Option<&str>,
    state: Option<&str>,
    slot: String,
) -> Option<Attachment> {
    let state = state.unwrap_or_default();
    (state != "detached").then(|| Attachment {
        instance_id: instance_id.unwrap_or_default().to_owned(),
        state: state.to_owned(),
        slot,
    })
}

/// Groups described resources by id and names every tagging problem. Pure.
pub fn build_inventory(
    spec: &DiscoverySpec,
    enis: &[NetworkInterface],
    volumes: &[Volume],
    cidrs: &BTreeMap<String, Ipv4Net>,
) -> Result<Inventory, AwsError> {
    let mut eni_groups = spec.group_by_id(&spec.eni, enis, NetworkInterface::tag_set, |eni| {
        eni_facts(eni, cidrs)
    })?;
    let mut volume_groups = spec.group_by_id(&spec.volume, volumes, Volume::tags, volume_facts)?;
    let mut inventory = Inventory::default();
    for id in (0..spec.broker_count).map(BrokerId) {
        let enis = eni_groups.remove(&id).unwrap_or_default();
        let volumes = volume_groups.remove(&id).unwrap_or_default();
        if enis.is_empty() && volumes.is_empty() {
            continue;
        }
        let eni = the_one(enis, id, &ENI, &mut inventory.problems);
        let volume = the_one(volumes, id, &VOLUME, &mut inventory.problems);
        let resources = IdResources { eni, volume };
        if let (Some(eni), Some(volume)) = (&resources.eni, &resources.volume) {
            if eni.availability_zone != volume.availability_zone {
                inventory.problems.push(InventoryProblem::ZoneMismatch {
                    id,
                    eni_id: eni.eni_id.clone(),
                    eni_az: eni.availability_zone.clone(),
                    volume_id: volume.volume_id.clone(),
                    volume_az: volume.availability_zone.clone(),
                });
            }
        }
        inventory.ids.insert(id, resources);
    }
    Ok(inventory)
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::types::{NetworkInterfaceAttachment, NetworkInterfaceStatus, VolumeState};

    use super::*;

    fn spec(cluster: Option<&str>) -> DiscoverySpec {
        let template = TagTemplate::new("KAFKA-{id}").unwrap();
        DiscoverySpec {
            key: "Name".into(),
            eni: template.clone(),
            volume: template,
            cluster_tag: cluster.map(|c| ("berth:cluster".into(), c.into())),
            broker_count: 3,
        }
    }

    fn tag(key: &str, value: &str) -> Tag {
        Tag::builder().key(key).value(value).build()
    }

    fn eni(id: &str, name: &str, zone: &str, cluster: &str) -> NetworkInterface {
        eni_builder(id, name, zone, cluster).build()
    }

    fn eni_builder(
        id: &str,
        name: &str,
        zone: &str,
        cluster: &str,
    ) -> aws_sdk_ec2::types::builders::NetworkInterfaceBuilder {
        NetworkInterface::builder()
            .network_interface_id(id)
            .mac_address("0a:00:00:00:00:01")
            .private_ip_address("10.0.1.10")
            .subnet_id("subnet-1")
            .availability_zone(zone)
            .status(NetworkInterfaceStatus::Available)
            .tag_set(tag("Name", name))
            .tag_set(tag("berth:cluster", cluster))
    }

    fn volume(id: &str, name: &str, zone: &str) -> Volume {
        Volume::builder()
            .volume_id(id)
            .availability_zone(zone)
            .state(VolumeState::Available)
            .size(10)
            .tags(tag("Name", name))
            .tags(tag("berth:cluster", "events"))
            .build()
    }

    fn cidrs() -> BTreeMap<String, Ipv4Net> {
        BTreeMap::from([("subnet-1".to_owned(), "10.0.1.0/24".parse().unwrap())])
    }

    #[test]
    fn groups_by_id_and_names_problems() {
        let enis = [
            eni("eni-0", "KAFKA-0", "eu-west-1a", "events"),
            eni("eni-1a", "KAFKA-1", "eu-west-1a", "events"),
            eni("eni-1b", "KAFKA-1", "eu-west-1a", "events"),
            eni("eni-2", "KAFKA-2", "eu-west-1b", "events"),
            eni("eni-x", "KAFKA-01", "eu-west-1a", "events"),
            eni("eni-9", "KAFKA-9", "eu-west-1a", "events"),
            eni("eni-other", "KAFKA-0", "eu-west-1a", "other"),
        ];
        let volumes = [
            volume("vol-0", "KAFKA-0", "eu-west-1a"),
            volume("vol-1", "KAFKA-1", "eu-west-1a"),
            volume("vol-2", "KAFKA-2", "eu-west-1a"),
        ];
        let inventory = build_inventory(&spec(Some("events")), &enis, &volumes, &cidrs()).unwrap();
        let zero = &inventory.ids[&BrokerId(0)];
        assert_eq!(zero.eni.as_ref().unwrap().eni_id, "eni-0");
        assert_eq!(
            zero.eni.as_ref().unwrap().subnet,
            "10.0.1.0/24".parse::<Ipv4Net>().unwrap()
        );
        assert_eq!(zero.volume.as_ref().unwrap().volume_id, "vol-0");
        assert_eq!(
            inventory.problems,
            vec![
                InventoryProblem::DuplicateEni {
                    id: BrokerId(1),
                    count: 2,
                    ids: "eni-1a, eni-1b".into()
                },
                InventoryProblem::ZoneMismatch {
                    id: BrokerId(2),
                    eni_id: "eni-2".into(),
                    eni_az: "eu-west-1b".into(),
                    volume_id: "vol-2".into(),
                    volume_az: "eu-west-1a".into(),
                },
            ]
        );
    }

    #[test]
    fn missing_halves_are_named() {
        let enis = [eni("eni-0", "KAFKA-0", "eu-west-1a", "events")];
        let volumes = [volume("vol-1", "KAFKA-1", "eu-west-1a")];
        let inventory = build_inventory(&spec(None), &enis, &volumes, &cidrs()).unwrap();
        assert_eq!(
            inventory.problems,
            vec![
                InventoryProblem::Missing {
                    id: BrokerId(0),
                    missing: "volume".into()
                },
                InventoryProblem::Missing {
                    id: BrokerId(1),
                    missing: "ENI".into()
                },
            ]
        );
    }

    #[test]
    fn attachments_are_mapped_and_detached_ones_ignored() {
        let attached = eni_builder("eni-0", "KAFKA-0", "eu-west-1a", "events")
            .attachment(
                NetworkInterfaceAttachment::builder()
                    .instance_id("i-1")
                    .device_index(1)
                    .status(aws_sdk_ec2::types::AttachmentStatus::Attached)
                    .build(),
            )
            .build();
        let facts = eni_facts(&attached, &cidrs()).unwrap();
        let attachment = facts.attachment.unwrap();
        assert_eq!(
            (
                attachment.instance_id.as_str(),
                attachment.state.as_str(),
                attachment.slot.as_str()
            ),
            ("i-1", "attached", "1")
        );
        let filters = spec(Some("events")).filters(&TagTemplate::new("KAFKA-{id}").unwrap());
        assert_eq!(filters[0].name(), Some("tag:Name"));
        assert_eq!(filters[0].values(), ["KAFKA-*"]);
        assert_eq!(filters[1].name(), Some("tag:berth:cluster"));
    }
}
