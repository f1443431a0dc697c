//! The KRaft birth record on EC2: the `berth:kraft-born` tag on the controllers' volumes
//! ([ADR 0003](../../../docs/decisions/0003-kraft-birth-rule.md), [`berth_core::birth`]).
//!
//! Reading is one filtered, paginated `DescribeVolumes` (the controllers' volume tag values, and the cluster
//! tag when configured), made each time a decision needs it, never cached: a mark written a second ago counts.
//! Writing is that read for the one id, then `CreateTags` on its one volume (idempotent: the same key and value
//! again changes nothing). Which volume is which id's is discovery's rule ([`DiscoverySpec`]); grouping and
//! reading the mark are pure and unit-tested here.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use aws_sdk_ec2::types::{Tag, Volume};
use berth_core::birth::{BirthEvidence, BirthMark, BirthRecord, ControllerVolume, BIRTH_TAG};
use berth_core::ports::StepError;
use berth_core::BrokerId;

use crate::discovery::{filter, DiscoverySpec};
use crate::error::AwsError;

/// [`BirthRecord`] on EC2 volume tags.
#[derive(Debug, Clone)]
pub struct AwsBirthRecord {
    ec2: aws_sdk_ec2::Client,
    spec: DiscoverySpec,
}

impl AwsBirthRecord {
    /// A record over an EC2 client and discovery's tagging rules.
    pub fn new(ec2: aws_sdk_ec2::Client, spec: DiscoverySpec) -> Self {
        Self { ec2, spec }
    }

    /// The controllers' volumes and marks, read now.
    pub async fn evidence(
        &self,
        controllers: &BTreeSet<BrokerId>,
    ) -> Result<BirthEvidence, AwsError> {
        let values: Vec<String> = controllers
            .iter()
            .map(|id| self.spec.volume.render(*id))
            .collect();
        let mut filters = vec![filter(format!("tag:{}", self.spec.key), values.clone())];
        if let Some((key, value)) = &self.spec.cluster_tag {
            filters.push(filter(format!("tag:{key}"), [value]));
        }
        let mut volumes = Vec::new();
        let mut pages = self
            .ec2
            .describe_volumes()
            .set_filters(Some(filters))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::api("DescribeVolumes", values.join(","), e))?;
            volumes.extend(page.volumes().iter().cloned());
        }
        Ok(evidence_from(&self.spec, controllers, &volumes))
    }

    /// Tags controller `id`'s one volume with the mark; returns the volume's id.
    pub async fn write(&self, id: BrokerId, mark: &BirthMark) -> Result<String, AwsError> {
        let evidence = self.evidence(&BTreeSet::from([id])).await?;
        let volume_id = match evidence.volumes.get(&id) {
            Some(ControllerVolume::One { volume_id, .. }) => volume_id.clone(),
            other => {
                return Err(AwsError::NotFound {
                    resource: format!("the one volume of controller {id} ({other:?})"),
                })
            }
        };
        self.ec2
            .create_tags()
            .resources(&volume_id)
            .tags(Tag::builder().key(BIRTH_TAG).value(mark.render()).build())
            .send()
            .await
            .map_err(|e| AwsError::api("CreateTags", &volume_id, e))?;
        Ok(volume_id)
    }
}

/// Each controller id's volume among `volumes` (tagged by discovery's rule): missing, several, or one with
/// its mark. Pure.
pub fn evidence_from(
    spec: &DiscoverySpec,
    controllers: &BTreeSet<BrokerId>,
    volumes: &[Volume],
) -> BirthEvidence {
    let mut found: BTreeMap<BrokerId, Vec<&Volume>> = BTreeMap::new();
    for volume in volumes {
        if let Some(id) = spec.id_of(&spec.volume, volume.tags()) {
            found.entry(id).or_default().push(volume);
        }
    }
    let volumes = controllers
        .iter()
        .map(|id| {
            let volume = match found.get(id).map(Vec::as_slice) {
                None | Some([]) => ControllerVolume::Missing,
                Some([one]) => ControllerVolume::One {
                    volume_id: one.volume_id().unwrap_or_default().to_owned(),
                    mark: one
                        .tags()
                        .iter()
                        .find(|tag| tag.key() == Some(BIRTH_TAG))
                        .map(|tag| tag.value().unwrap_or_default().to_owned()),
                },
                Some(several) => ControllerVolume::Several {
                    volume_ids: several
                        .iter()
                        .map(|v| v.volume_id().unwrap_or_default().to_owned())
                        .collect(),
                },
            };
            (*id, volume)
        })
        .collect();
    BirthEvidence { volumes }
}

#[async_trait]
impl BirthRecord for AwsBirthRecord {
    async fn read(&self, controllers: &BTreeSet<BrokerId>) -> Result<BirthEvidence, StepError> {
        Ok(self.evidence(controllers).await?)
    }

    async fn mark(&self, id: BrokerId, mark: &BirthMark) -> Result<String, StepError> {
        Ok(self.write(id, mark).await?)
    }
}

#[cfg(test)]
mod tests {
    use berth_core::tag::TagTemplate;

    use super::*;

    fn spec() -> DiscoverySpec {
        let template = TagTemplate::new("KAFKA-{id}").unwrap();
        DiscoverySpec {
            key: "Name".into(),
            eni: template.clone(),
            volume: template,
            cluster_tag: Some(("berth:cluster".into(), "events".into())),
            broker_count: 6,
        }
    }

    fn volume(id: &str, name: &str, cluster: &str, mark: Option<&str>) -> Volume {
        let mut builder = Volume::builder()
            .volume_id(id)
            .tags(Tag::builder().key("Name").value(name).build())
            .tags(Tag::builder().key("berth:cluster").value(cluster).build());
        if let Some(mark) = mark {
            builder = builder.tags(Tag::builder().key(BIRTH_TAG).value(mark).build());
        }
        builder.build()
    }

    #[test]
    fn each_controller_has_its_one_volume_and_its_mark_or_is_named_missing_or_doubled() {
        let volumes = [
            volume("vol-0", "KAFKA-0", "events", Some("cluster=C voters=0@a:1")),
            volume("vol-1", "KAFKA-1", "events", None),
            volume("vol-2a", "KAFKA-2", "events", None),
            volume("vol-2b", "KAFKA-2", "events", None),
            volume("vol-3", "KAFKA-3", "other", None),
            volume("vol-4", "KAFKA-4", "events", None),
        ];
        let controllers: BTreeSet<BrokerId> = (0..4).map(BrokerId).collect();
        let evidence = evidence_from(&spec(), &controllers, &volumes);
        assert_eq!(
            evidence.volumes,
            BTreeMap::from([
                (
                    BrokerId(0),
                    ControllerVolume::One {
                        volume_id: "vol-0".into(),
                        mark: Some("cluster=C voters=0@a:1".into())
                    }
                ),
                (
                    BrokerId(1),
                    ControllerVolume::One {
                        volume_id: "vol-1".into(),
                        mark: None
                    }
                ),
                (
                    BrokerId(2),
                    ControllerVolume::Several {
                        volume_ids: vec!["vol-2a".into(), "vol-2b".into()]
                    }
                ),
                // Another cluster's volume is not this controller's.
                (BrokerId(3), ControllerVolume::Missing),
            ])
        );
    }
}
