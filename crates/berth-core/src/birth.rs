//! A KRaft cluster's birth, decided on durable evidence ([ADR 0003](../../../docs/decisions/0003-kraft-birth-rule.md)).
//!
//! A blank controller may be formatted in two cases only: as part of the cluster's birth, or beside a majority
//! of voters that hold everything committed (berth-kafka's majority check). Telling the two apart from what the
//! network shows is unsound: a refused connection, a timeout or a lone voter without a leader look the same
//! whether the cluster has never existed or every other controller is down. So the birth is recorded where it
//! outlives any host: once a controller has seen its quorum with a leader and a committed high watermark, berth
//! tags that controller's EBS volume with [`BIRTH_TAG`] (a [`BirthMark`]: the Kafka cluster id and the voter set
//! it was born with). The mark lives with the data: a volume replaced by a blank one carries none, a wiped
//! volume keeps it.
//!
//! [`judge`] reads the controllers' volumes as EC2 shows them ([`BirthEvidence`]):
//! * some controller volume carries the mark: the cluster is born, a blank controller needs the majority;
//! * every controller volume was found and none carries it: the cluster is unborn, and blank controllers may
//!   be formatted as its birth, however far apart their hosts boot;
//! * a controller volume is missing or tagged twice: berth cannot tell, and refuses.
//!
//! [`check_voters`] keeps a static quorum on the voter set it was born with. The reading and tagging are the
//! [`BirthRecord`] port's (berth-aws); everything here is pure.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::facts::BrokerId;
use crate::ports::StepError;

/// The EC2 tag key of the birth mark on a controller's volume.
pub const BIRTH_TAG: &str = "berth:kraft-born";

/// The voter set of a dynamic quorum (KIP-853) in a mark: it lives in the metadata log, not in settings.
pub const DYNAMIC_VOTERS: &str = "dynamic";

/// What a birth mark records: the cluster and the voter set it was born with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BirthMark {
    /// Kafka's `cluster.id`.
    pub cluster_id: String,
    /// `controller.quorum.voters` as rendered at birth, or [`DYNAMIC_VOTERS`].
    pub voters: String,
}

impl BirthMark {
    /// The tag value: `cluster=<id> voters=<voters>` (at most 256 characters, EC2's limit for a tag value).
    pub fn render(&self) -> String {
        format!("cluster={} voters={}", self.cluster_id, self.voters)
    }

    /// Reads a tag value written by [`BirthMark::render`].
    pub fn parse(value: &str) -> Result<Self, String> {
        let mut cluster_id = None;
        let mut voters = None;
        for field in value.split_whitespace() {
            match field.split_once('=') {
                Some(("cluster", id)) if !id.is_empty() => cluster_id = Some(id.to_owned()),
                Some(("voters", list)) if !list.is_empty() => voters = Some(list.to_owned()),
                _ => return Err(format!("unexpected field {field:?}")),
            }
        }
        match (cluster_id, voters) {
            (Some(cluster_id), Some(voters)) => Ok(Self { cluster_id, voters }),
            _ => Err("expected `cluster=<id> voters=<list>`".into()),
        }
    }
}

/// `controller.quorum.voters` of a static quorum: `<id>@<address>:<port>` for every controller, by id.
pub fn render_voters(voters: &BTreeMap<BrokerId, Ipv4Addr>, controller_port: u16) -> String {
    voters
        .iter()
        .map(|(id, ip)| format!("{id}@{ip}:{controller_port}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// One controller id's volume, as EC2 shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "found")]
pub enum ControllerVolume {
    /// No volume carries the id's tag.
    Missing,
    /// More than one does (their ids).
    Several {
        /// The volumes.
        volume_ids: Vec<String>,
    },
    /// Exactly one.
    One {
        /// The volume.
        volume_id: String,
        /// Its [`BIRTH_TAG`] value, when it carries one.
        mark: Option<String>,
    },
}

/// The controllers' volumes, read from EC2 when a blank controller is about to be formatted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BirthEvidence {
    /// Every controller id asked about (an id EC2 returned nothing for is [`ControllerVolume::Missing`]).
    pub volumes: BTreeMap<BrokerId, ControllerVolume>,
}

/// A controller volume that carries the birth mark.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marked {
    /// The controller id.
    pub id: BrokerId,
    /// Its volume.
    pub volume_id: String,
    /// The tag's value as read.
    pub mark: String,
}

/// What the evidence says about the cluster's birth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "birth")]
pub enum Birth {
    /// Every controller volume was found and none carries the mark: blank controllers form the cluster.
    Unborn {
        /// The controller volumes read, by id.
        volumes: BTreeMap<BrokerId, String>,
    },
    /// At least one controller volume carries the mark: the cluster exists.
    Born {
        /// The marked volumes.
        marked: Vec<Marked>,
    },
    /// The evidence is incomplete: why.
    Unknown {
        /// What is missing.
        reason: String,
    },
}

impl fmt::Display for Birth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Birth::Unborn { volumes } => {
                let volumes = volumes
                    .iter()
                    .map(|(id, volume)| format!("{volume} (controller {id})"))
                    .collect::<Vec<_>>()
                    .join(", ");
                write!(
                    f,
                    "unborn: no controller volume carries {BIRTH_TAG} ({volumes})"
                )
            }
            Birth::Born { marked } => {
                let marked = marked
                    .iter()
                    .map(|m| format!("{} (controller {})", m.volume_id, m.id))
                    .collect::<Vec<_>>()
                    .join(", ");
                write!(f, "born: {marked} carry {BIRTH_TAG}")
            }
            Birth::Unknown { reason } => write!(f, "unknown: {reason}"),
        }
    }
}

/// Judges the cluster's birth from the controllers' volumes. A mark anywhere is positive evidence of a born
/// cluster, whatever else is missing; "unborn" needs every controller's one volume found without a mark. Pure.
pub fn judge(evidence: &BirthEvidence) -> Birth {
    let mut marked = Vec::new();
    let mut unmarked = BTreeMap::new();
    let mut problems = Vec::new();
    for (id, volume) in &evidence.volumes {
        match volume {
            ControllerVolume::One {
                volume_id,
                mark: Some(mark),
            } => marked.push(Marked {
                id: *id,
                volume_id: volume_id.clone(),
                mark: mark.clone(),
            }),
            ControllerVolume::One {
                volume_id,
                mark: None,
            } => {
                unmarked.insert(*id, volume_id.clone());
            }
            ControllerVolume::Missing => {
                problems.push(format!("no volume is tagged for controller {id}"))
            }
            ControllerVolume::Several { volume_ids } => problems.push(format!(
                "{} volumes are tagged for controller {id} ({})",
                volume_ids.len(),
                volume_ids.join(", ")
            )),
        }
    }
    if !marked.is_empty() {
        return Birth::Born { marked };
    }
    if evidence.volumes.is_empty() {
        problems.push("no controller id was asked about".into());
    }
    if problems.is_empty() {
        Birth::Unborn { volumes: unmarked }
    } else {
        Birth::Unknown {
            reason: format!(
                "{}: whether the cluster was born cannot be told",
                problems.join("; ")
            ),
        }
    }
}

/// Whether this node may render `voters` (a static quorum's `controller.quorum.voters`, or
/// [`DYNAMIC_VOTERS`]) for cluster `cluster_id`: every birth mark must name the same cluster and voter set.
/// A mark berth cannot read fails closed. Pure.
pub fn check_voters(cluster_id: &str, voters: &str, birth: &Birth) -> Result<(), String> {
    let Birth::Born { marked } = birth else {
        return Ok(());
    };
    for Marked {
        id,
        volume_id,
        mark,
    } in marked
    {
        let born = BirthMark::parse(mark).map_err(|why| {
            format!(
                "volume {volume_id} (controller {id}) carries {BIRTH_TAG}={mark:?}, which berth cannot read \
                 ({why}): the voter set the cluster was born with is unknown; restore the tag as berth wrote it"
            )
        })?;
        if born.cluster_id != cluster_id {
            return Err(format!(
                "volume {volume_id} (controller {id}) was born in Kafka cluster {}, not the configured {cluster_id} \
                 (cluster.kafka_cluster_id)",
                born.cluster_id
            ));
        }
        if born.voters != voters {
            return Err(format!(
                "the cluster was born with controller.quorum.voters={} (the mark on volume {volume_id}, controller \
                 {id}) but this configuration renders {voters}: berth never renders a voter set other than the one \
                 the cluster was born with (two voter sets can elect two leaders). Check kafka.controller_ids and \
                 the controllers' ENIs; a static voter set changes only by migrating to a dynamic quorum (Kafka 4.1+)",
                born.voters
            ));
        }
    }
    Ok(())
}

/// The controllers asked about: `ids`, or every id in `all` when none are configured.
pub fn controller_set(ids: &[BrokerId], all: impl Iterator<Item = BrokerId>) -> BTreeSet<BrokerId> {
    if ids.is_empty() {
        all.collect()
    } else {
        ids.iter().copied().collect()
    }
}

/// Where the birth is recorded: EC2 tags on the controllers' volumes in production (berth-aws).
#[async_trait]
pub trait BirthRecord: Send + Sync {
    /// The volumes of these controller ids and their marks, read now (never from a cache).
    async fn read(&self, controllers: &BTreeSet<BrokerId>) -> Result<BirthEvidence, StepError>;
    /// Marks controller `id`'s volume with `mark` (idempotent); returns the volume's id.
    async fn mark(&self, id: BrokerId, mark: &BirthMark) -> Result<String, StepError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(volume: &str, mark: Option<&str>) -> ControllerVolume {
        ControllerVolume::One {
            volume_id: volume.into(),
            mark: mark.map(str::to_owned),
        }
    }

    fn evidence(volumes: Vec<(u32, ControllerVolume)>) -> BirthEvidence {
        BirthEvidence {
            volumes: volumes
                .into_iter()
                .map(|(id, volume)| (BrokerId(id), volume))
                .collect(),
        }
    }

    const MARK: &str = "cluster=MkU3OEVBNTcwNTJENDM2Qg voters=0@10.0.1.10:9093,1@10.0.2.10:9093";

    #[test]
    fn a_mark_round_trips_and_fits_an_ec2_tag_value() {
        let mark = BirthMark {
            cluster_id: "MkU3OEVBNTcwNTJENDM2Qg".into(),
            voters: render_voters(
                &(0..7)
                    .map(|id| (BrokerId(id), Ipv4Addr::new(100, 100, 100, 100 + id as u8)))
                    .collect(),
                65535,
            ),
        };
        let value = mark.render();
        assert!(value.len() <= 256, "{} characters", value.len());
        assert_eq!(BirthMark::parse(&value), Ok(mark));
        assert!(BirthMark::parse("cluster=x").is_err());
        assert!(BirthMark::parse("yes").is_err());
    }

    #[test]
    fn every_volume_found_unmarked_is_unborn() {
        let birth = judge(&evidence(vec![
            (0, one("vol-0", None)),
            (1, one("vol-1", None)),
        ]));
        assert_eq!(
            birth,
            Birth::Unborn {
                volumes: [(BrokerId(0), "vol-0".into()), (BrokerId(1), "vol-1".into())].into()
            }
        );
        assert!(
            birth.to_string().contains("vol-0 (controller 0)"),
            "{birth}"
        );
    }

    #[test]
    fn one_mark_anywhere_is_a_born_cluster_even_with_volumes_missing() {
        let birth = judge(&evidence(vec![
            (0, ControllerVolume::Missing),
            (1, one("vol-1", Some(MARK))),
            (2, one("vol-2", None)),
        ]));
        assert!(
            matches!(&birth, Birth::Born { marked } if marked.len() == 1 && marked[0].volume_id == "vol-1"),
            "{birth:?}"
        );
    }

    #[test]
    fn a_missing_or_doubled_volume_without_any_mark_cannot_tell() {
        let missing = judge(&evidence(vec![
            (0, one("vol-0", None)),
            (1, ControllerVolume::Missing),
        ]));
        assert!(
            matches!(&missing, Birth::Unknown { reason } if reason.contains("no volume is tagged for controller 1")),
            "{missing:?}"
        );
        let doubled = judge(&evidence(vec![(
            0,
            ControllerVolume::Several {
                volume_ids: vec!["vol-a".into(), "vol-b".into()],
            },
        )]));
        assert!(
            matches!(&doubled, Birth::Unknown { reason } if reason.contains("vol-a, vol-b")),
            "{doubled:?}"
        );
        assert!(matches!(
            judge(&BirthEvidence::default()),
            Birth::Unknown { .. }
        ));
    }

    #[test]
    fn only_the_voter_set_the_cluster_was_born_with_may_be_rendered() {
        let born = judge(&evidence(vec![(0, one("vol-0", Some(MARK)))]));
        let voters = "0@10.0.1.10:9093,1@10.0.2.10:9093";
        assert_eq!(
            check_voters("MkU3OEVBNTcwNTJENDM2Qg", voters, &born),
            Ok(())
        );
        let wider = "0@10.0.1.10:9093,1@10.0.2.10:9093,2@10.0.3.10:9093";
        let refused = check_voters("MkU3OEVBNTcwNTJENDM2Qg", wider, &born).unwrap_err();
        assert!(
            refused
                .contains("born with controller.quorum.voters=0@10.0.1.10:9093,1@10.0.2.10:9093")
                && refused.contains("vol-0"),
            "{refused}"
        );
        let other_cluster = check_voters("AAAAAAAAAAAAAAAAAAAAAA", voters, &born).unwrap_err();
        assert!(
            other_cluster.contains("born in Kafka cluster"),
            "{other_cluster}"
        );
        let unreadable = judge(&evidence(vec![(0, one("vol-0", Some("true")))]));
        assert!(check_voters("MkU3OEVBNTcwNTJENDM2Qg", voters, &unreadable)
            .unwrap_err()
            .contains("cannot read"));
        let unborn = judge(&evidence(vec![(0, one("vol-0", None))]));
        assert_eq!(check_voters("x", wider, &unborn), Ok(()));
    }

    #[test]
    fn controllers_are_the_configured_ids_or_every_id() {
        let all = || (0..4).map(BrokerId);
        assert_eq!(
            controller_set(&[BrokerId(2), BrokerId(0)], all()),
            [BrokerId(0), BrokerId(2)].into()
        );
        assert_eq!(controller_set(&[], all()).len(), 4);
    }
}
