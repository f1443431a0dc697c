//! Sample facts and settings for tests of the state machine and the daemon: one instance in `az-a` and a
//! three-id inventory, one id per zone, the way the CloudFormation example lays a cluster out. Behind the
//! `fixtures` feature, so that production builds do not carry them and the core's own tests need no test kit
//! (which brings the AWS SDK and tokio).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use crate::machine::{Settings, StatePolicies};
use crate::ports::MountPlan;
use crate::retry::RetryPolicy;
use crate::routing::RouteNumbering;
use crate::{
    BrokerId, EniAttachment, EniFacts, IdResources, Identity, Inventory, MacAddr, MountReport,
    ServingEvidence, VolumeAttachment, VolumeFacts,
};

/// This test instance: `i-0000000000000000a` in `az-a`.
pub fn identity() -> Identity {
    Identity {
        instance_id: "i-0000000000000000a".into(),
        region: "test-region-1".into(),
        availability_zone: "az-a".into(),
        primary_mac: MacAddr([0x02, 0, 0, 0, 0, 0x01]),
        hostname: "broker-host-a".into(),
    }
}

/// The zone of broker id `id` in the sample layout (`az-a`, `az-b`, `az-c`, round robin).
pub fn zone_of(id: u32) -> String {
    format!("az-{}", (b'a' + (id % 3) as u8) as char)
}

/// The ENI of broker id `id`: `10.0.<id%3>.<100+id>/24`, MAC `02:e0:00:00:00:<id>`.
pub fn eni(id: u32) -> EniFacts {
    let subnet = (id % 3) as u8;
    EniFacts {
        eni_id: format!("eni-{id:08x}"),
        mac: MacAddr([0x02, 0xe0, 0, 0, 0, id as u8]),
        private_ip: Ipv4Addr::new(10, 0, subnet, 100 + id as u8),
        subnet: format!("10.0.{subnet}.0/24").parse().expect("valid subnet"),
        subnet_id: format!("subnet-{subnet}"),
        availability_zone: zone_of(id),
        attachment: None,
    }
}

/// The volume of broker id `id`.
pub fn volume(id: u32) -> VolumeFacts {
    VolumeFacts {
        volume_id: format!("vol-{id:017x}"),
        availability_zone: zone_of(id),
        state: "available".into(),
        size_gib: 100,
        attachment: None,
    }
}

/// Both resources of broker id `id`.
pub fn resources(id: u32) -> IdResources {
    IdResources {
        eni: Some(eni(id)),
        volume: Some(volume(id)),
    }
}

/// An inventory of ids `0..count`, each with its ENI and volume.
pub fn inventory(count: u32) -> Inventory {
    Inventory {
        ids: (0..count).map(|id| (BrokerId(id), resources(id))).collect(),
        problems: Vec::new(),
    }
}

/// The ENI of `id` attached here as `ens6`.
pub fn eni_attachment(id: u32) -> EniAttachment {
    EniAttachment {
        eni: eni(id),
        link_name: "ens6".into(),
        link_index: 6,
    }
}

/// The volume of `id` attached here as `/dev/nvme1n1`.
pub fn volume_attachment(id: u32) -> VolumeAttachment {
    VolumeAttachment {
        volume: volume(id),
        requested_device: "/dev/xvdf".into(),
        device: "/dev/nvme1n1".into(),
    }
}

/// The mount report for the sample mount plan.
pub fn mount_report() -> MountReport {
    MountReport {
        device: "/dev/nvme1n1".into(),
        mount_path: "/var/lib/kafka".into(),
        filesystem: "xfs".into(),
        formatted: false,
        already_mounted: false,
    }
}

/// Serving evidence for `id`.
pub fn serving(id: u32) -> ServingEvidence {
    ServingEvidence {
        listener: (eni(id).private_ip, 9092).into(),
        probe_micros: 900,
        detail: format!("broker {id} registered and answering metadata"),
    }
}

/// A retry policy: `initial` doubling up to `max`, within `deadline`.
pub fn policy(initial_ms: u64, max_ms: u64, deadline: Duration) -> RetryPolicy {
    RetryPolicy {
        initial: Duration::from_millis(initial_ms),
        max: Duration::from_millis(max_ms),
        multiplier: 2.0,
        deadline,
    }
}

/// Settings with every state's deadline at `deadline` (250 ms first backoff, 2 s max), 5 s checks, 30 s grace.
pub fn settings(deadline: Duration) -> Settings {
    let each = policy(250, 2_000, deadline);
    Settings {
        policies: StatePolicies {
            claim: each,
            attach_eni: each,
            route: each,
            attach_ebs: each,
            mount: each,
            start_kafka: each,
        },
        check_interval: Duration::from_secs(5),
        unhealthy_after: Duration::from_secs(30),
        heartbeat_interval: Some(Duration::from_secs(60)),
        routing: RouteNumbering {
            network_card: 0,
            device_index: 1,
            table: None,
            rule_priority: None,
        },
        mount: MountPlan {
            mount_path: PathBuf::from("/var/lib/kafka"),
            log_dirs: vec![PathBuf::from("/var/lib/kafka/data")],
        },
        reclaim_attempt: crate::machine::DEFAULT_RECLAIM_ATTEMPT,
        catch_up: None,
        drain_wait: None,
        terminate_heartbeat_interval: None,
        terminate_hook: false,
    }
}

/// A three-broker cluster where broker 0 hosts `events-0` (replicas 0, 1, 2; leader 1;
/// `min.insync.replicas=2`) with `isr` in sync.
pub fn replication(isr: &[u32]) -> crate::replication::ReplicationView {
    crate::replication::ReplicationView {
        live_brokers: [0, 1, 2].map(BrokerId).into_iter().collect(),
        partitions: vec![crate::replication::PartitionReplicas {
            topic: "events".into(),
            partition: 0,
            leader: Some(BrokerId(1)),
            replicas: [0, 1, 2].map(BrokerId).to_vec(),
            isr: isr.iter().copied().map(BrokerId).collect(),
            min_insync: 2,
        }],
        cannot_judge: Vec::new(),
    }
}
