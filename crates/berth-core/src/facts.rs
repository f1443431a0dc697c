//! Facts about the world that the state machine reasons over.
//!
//! These are plain values: adapters observe them (IMDS, EC2, netlink, sysfs, ZooKeeper, Kafka) and the pure
//! code in this crate decides from them. Keeping them free of any client type is what lets the decisions be
//! unit-tested and lets `berth plan` print the same reasoning the daemon acts on.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// A Kafka broker id (ZooKeeper mode `broker.id`, KRaft mode `node.id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BrokerId(pub u32);

impl fmt::Display for BrokerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A 48-bit Ethernet address, compared case-insensitively by value (EC2 reports lower case, sysfs too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr(pub [u8; 6]);

/// A MAC address string that is not six colon-separated hex octets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a MAC address (expected six hex octets like 0a:1b:2c:3d:4e:5f): {0:?}")]
pub struct BadMac(pub String);

impl FromStr for MacAddr {
    type Err = BadMac;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut octets = [0u8; 6];
        let mut parts = text.trim().split([':', '-']);
        for octet in &mut octets {
            let part = parts.next().ok_or_else(|| BadMac(text.to_owned()))?;
            if part.len() != 2 {
                return Err(BadMac(text.to_owned()));
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| BadMac(text.to_owned()))?;
        }
        if parts.next().is_some() {
            return Err(BadMac(text.to_owned()));
        }
        Ok(MacAddr(octets))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Who this instance is, as the instance metadata service (IMDSv2) tells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// EC2 instance id, e.g. `i-0123456789abcdef0`.
    pub instance_id: String,
    /// Region, e.g. `eu-west-1`.
    pub region: String,
    /// Availability zone, e.g. `eu-west-1a`.
    pub availability_zone: String,
    /// MAC of the primary interface (device number 0); berth never touches it.
    pub primary_mac: MacAddr,
    /// Local hostname, for the claim node's body and logs.
    pub hostname: String,
}

/// An attachment of an ENI or a volume to some instance, as EC2 describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The instance the resource is attached to.
    pub instance_id: String,
    /// EC2's attachment state: `attaching`, `attached`, `detaching`, ...
    pub state: String,
    /// ENI device index or volume device name, as requested at attach time.
    pub slot: String,
}

/// One broker id's network interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EniFacts {
    /// `eni-...`
    pub eni_id: String,
    /// The MAC the Linux link will carry once attached.
    pub mac: MacAddr,
    /// The fixed primary private IPv4 address (the broker's advertised address).
    pub private_ip: Ipv4Addr,
    /// The subnet's CIDR (prefix length and gateway come from it).
    pub subnet: Ipv4Net,
    /// `subnet-...`
    pub subnet_id: String,
    /// Availability zone of the ENI.
    pub availability_zone: String,
    /// Current attachment, if any.
    pub attachment: Option<Attachment>,
}

/// One broker id's EBS data volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeFacts {
    /// `vol-...`
    pub volume_id: String,
    /// Availability zone of the volume.
    pub availability_zone: String,
    /// EC2's volume state: `available`, `in-use`, ...
    pub state: String,
    /// Size in GiB, for the operator's eyes.
    pub size_gib: i32,
    /// Current attachment, if any.
    pub attachment: Option<Attachment>,
}

/// The resources tagged for one broker id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdResources {
    /// The id's ENI, when exactly one is tagged.
    pub eni: Option<EniFacts>,
    /// The id's volume, when exactly one is tagged.
    pub volume: Option<VolumeFacts>,
}

/// Something wrong with how the cluster's resources are tagged; the id concerned is skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum InventoryProblem {
    /// More than one ENI carries the tag for this id.
    #[error("broker id {id}: {count} ENIs are tagged for it ({ids}); expected exactly one")]
    DuplicateEni {
        /// The id.
        id: BrokerId,
        /// How many.
        count: usize,
        /// Their ids, comma separated.
        ids: String,
    },
    /// More than one volume carries the tag for this id.
    #[error("broker id {id}: {count} volumes are tagged for it ({ids}); expected exactly one")]
    DuplicateVolume {
        /// The id.
        id: BrokerId,
        /// How many.
        count: usize,
        /// Their ids, comma separated.
        ids: String,
    },
    /// The id's ENI and volume are in different availability zones: no instance can use both.
    #[error(
        "broker id {id}: ENI {eni_id} is in {eni_az} but volume {volume_id} is in {volume_az}"
    )]
    ZoneMismatch {
        /// The id.
        id: BrokerId,
        /// The ENI.
        eni_id: String,
        /// The ENI's zone.
        eni_az: String,
        /// The volume.
        volume_id: String,
        /// The volume's zone.
        volume_az: String,
    },
    /// Only one of the two resources exists for an id in range.
    #[error("broker id {id}: no {missing} is tagged for it")]
    Missing {
        /// The id.
        id: BrokerId,
        /// `ENI` or `volume`.
        missing: String,
    },
}

/// What discovery found: every id in the configured range with its resources, plus tagging problems.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// Resources by broker id (ids with problems are absent or incomplete).
    pub ids: BTreeMap<BrokerId, IdResources>,
    /// Problems found, each naming its id.
    pub problems: Vec<InventoryProblem>,
}

/// The ENI once attached here and visible to Linux.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EniAttachment {
    /// The ENI as described after attaching.
    pub eni: EniFacts,
    /// Linux interface name (e.g. `ens6`).
    pub link_name: String,
    /// Linux interface index.
    pub link_index: u32,
}

/// The volume once attached here and visible as a block device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeAttachment {
    /// The volume as described after attaching.
    pub volume: VolumeFacts,
    /// The device name requested from EC2 (e.g. `/dev/xvdf`); on Nitro the kernel name differs.
    pub requested_device: String,
    /// The block device it resolved to, canonical (e.g. `/dev/nvme1n1`).
    pub device: PathBuf,
}

/// The volume mounted and checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountReport {
    /// Canonical block device.
    pub device: PathBuf,
    /// Where it is mounted.
    pub mount_path: PathBuf,
    /// Filesystem type found or created.
    pub filesystem: String,
    /// Whether berth formatted it in this step (only ever a blank device, only when configured).
    pub formatted: bool,
    /// Whether it was already mounted there before this step.
    pub already_mounted: bool,
}

/// Evidence that Kafka is serving as this broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServingEvidence {
    /// The advertised listener the protocol check reached.
    pub listener: SocketAddr,
    /// Round-trip time of the protocol check, in microseconds.
    pub probe_micros: u64,
    /// Human summary of what was seen (registration, metadata).
    pub detail: String,
}

/// Everything the daemon has learnt so far on its way to Healthy; shown in `/state`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    /// This instance.
    pub identity: Option<Identity>,
    /// The claimed id.
    pub broker_id: Option<BrokerId>,
    /// The claimed id's resources as discovered at claim time.
    pub resources: Option<IdResources>,
    /// Every discovered id's ENI address (for KRaft `controller.quorum.voters`).
    #[serde(default)]
    pub peers: BTreeMap<BrokerId, Ipv4Addr>,
    /// The ENI once attached.
    pub eni: Option<EniAttachment>,
    /// The route configuration once applied.
    pub route: Option<RoutePlan>,
    /// The volume once attached.
    pub volume: Option<VolumeAttachment>,
    /// The mount once done.
    pub mount: Option<MountReport>,
    /// The latest serving evidence.
    pub serving: Option<ServingEvidence>,
    /// The caught-up gate's last look at the partitions this broker hosts.
    #[serde(default)]
    pub catch_up: Option<crate::replication::CatchUpProgress>,
}

/// The policy routing berth installs for the broker ENI, derived purely from the ENI and the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutePlan {
    /// The ENI link's MAC.
    pub mac: MacAddr,
    /// The primary interface's MAC, which must never be configured.
    pub primary_mac: MacAddr,
    /// ENI address with the subnet's prefix length.
    pub address: Ipv4Net,
    /// Subnet gateway (network address + 1, as on EC2).
    pub gateway: Ipv4Addr,
    /// Routing table for this ENI.
    pub table: u32,
    /// Priority of the `from <address> lookup <table>` rule.
    pub rule_priority: u32,
}

/// The filesystem of a broker volume: what berth creates on a blank one and expects on every other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Filesystem {
    /// XFS (Kafka's usual choice).
    Xfs,
    /// ext4.
    Ext4,
}

impl Filesystem {
    /// The kernel's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Filesystem::Xfs => "xfs",
            Filesystem::Ext4 => "ext4",
        }
    }
}

/// How Kafka finds its controllers and registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaMode {
    /// ZooKeeper mode: `broker.id`, registration in `/brokers/ids`.
    Zookeeper,
    /// KRaft mode: `node.id`.
    Kraft,
}
