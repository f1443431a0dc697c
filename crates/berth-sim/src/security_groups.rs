//! Security groups as packet filters between the simulated hosts: a port the template does not open is closed.
//!
//! The region namespace carries every packet between hosts (bridged within a zone, routed between zones), so
//! one nftables bridge table there filters them all: at the bridge's `forward` hook (host to host in a zone)
//! and `output` hook (routed between zones, or sent by the region's own servers). Each group is a set of member
//! addresses (its ENIs' and its instances' primary addresses, as the region registers them); a new TCP
//! connection (a SYN without ACK) to a member is accepted when one rule of any of the member's groups admits its
//! source and port, and dropped and counted otherwise. Security groups are stateful, so replies and established
//! connections are never filtered (Security group rules, Amazon VPC User Guide,
//! <https://docs.aws.amazon.com/vpc/latest/userguide/security-group-rules.html>: "Security groups are stateful";
//! an instance's rules are the union of its groups' rules). Only TCP rules exist
//! ([`berth_testkit::aws::template::ingress`] refuses others).

use std::collections::BTreeMap;
use std::path::Path;

use berth_testkit::aws::template::creation::{self, GroupDeclaration};
use berth_testkit::aws::template::ingress::{ingress, Ingress, Source};
use berth_testkit::aws::template::{Physical, Pseudo, Stack, Template, TemplateError};

use crate::layout;

/// The region namespace's bridge table holding the groups.
pub const NFT_TABLE: &str = "secgroups";

/// The nftables set of a group's member addresses.
pub fn set_name(group: &str) -> String {
    format!(
        "members_{}",
        group.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    )
}

/// The named counter of connections a group's members refused.
pub fn counter_name(group: &str) -> String {
    format!(
        "refused_{}",
        group.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    )
}

/// The nftables set counting, per destination port, the connections a group's members refused (each element a
/// port with its counter): which rule was missing, not just that one was.
pub fn refused_ports_name(group: &str) -> String {
    format!(
        "refused_ports_{}",
        group.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    )
}

/// Names every resource by its logical id: the packet filter needs the groups' identities, not EC2's ids (and a
/// launch template's user data names none).
pub struct ByLogicalId;

impl Physical for ByLogicalId {
    fn reference(&self, logical_id: &str) -> Option<String> {
        Some(logical_id.to_owned())
    }
    fn attribute(&self, logical_id: &str, attribute: &str) -> Option<serde_json::Value> {
        Some(format!("{logical_id}.{attribute}").into())
    }
}

/// The ingress rules of the template at `path`, instantiated for cluster `cluster` with the simulated region's
/// zones and broker addresses as an operator would give them (groups named by logical id).
pub fn template_rules(
    path: &Path,
    cluster: &str,
    zones: usize,
) -> Result<Vec<Ingress>, TemplateError> {
    ingress(
        &operator_stack(path, cluster, zones, &BTreeMap::new())?,
        &ByLogicalId,
    )
}

/// The Auto Scaling groups of the template at `path`, instantiated as [`template_rules`] does, in creation
/// order, each with the zone of its first subnet.
pub fn template_groups(
    path: &Path,
    cluster: &str,
    zones: usize,
) -> Result<Vec<(GroupDeclaration, usize)>, TemplateError> {
    let declared = creation::groups(
        &operator_stack(path, cluster, zones, &BTreeMap::new())?,
        &ByLogicalId,
    )?;
    declared
        .into_iter()
        .map(|group| {
            let az = group
                .subnets
                .first()
                .and_then(|subnet| subnet.strip_prefix(SUBNET_PREFIX))
                .and_then(|az| az.parse().ok())
                .filter(|az| *az < zones)
                .ok_or_else(|| TemplateError::Unenforced {
                    logical_id: group.logical_id.clone(),
                    what: format!(
                        "VPCZoneIdentifier {:?} (one subnet of the region)",
                        group.subnets
                    ),
                })?;
            Ok((group, az))
        })
        .collect()
}

/// The subnet ids the region's zones are given as (`subnet-<zone index>`).
const SUBNET_PREFIX: &str = "subnet-";

/// The template at `path` instantiated for cluster `cluster` with the simulated region's zones and broker
/// addresses as an operator would give them (the fleet's KRaft cluster id), `given` added or replacing them.
pub fn operator_stack(
    path: &Path,
    cluster: &str,
    zones: usize,
    given: &BTreeMap<String, String>,
) -> Result<Stack, TemplateError> {
    let template = Template::load(path)?;
    let mut parameters = BTreeMap::from([
        ("ClusterName".to_owned(), cluster.to_owned()),
        ("ImageId".to_owned(), "ami-00000000000000000".to_owned()),
        ("VpcId".to_owned(), "vpc-sim".to_owned()),
        (
            "KafkaClusterId".to_owned(),
            crate::fleet::KAFKA_CLUSTER_ID.to_owned(),
        ),
    ]);
    for (n, letter) in ["A", "B", "C"].into_iter().enumerate() {
        let az = n % zones;
        parameters.insert(format!("Zone{letter}"), layout::zone_name(az));
        parameters.insert(format!("Subnet{letter}"), format!("{SUBNET_PREFIX}{az}"));
        parameters.insert(
            format!("BrokerIp{n}"),
            layout::eni_ip(n as u32, zones).to_string(),
        );
    }
    let pseudo = Pseudo {
        region: layout::REGION.into(),
        account_id: "123456789012".into(),
        stack_name: cluster.into(),
        stack_id: cluster.into(),
        zones: (0..zones).map(layout::zone_name).collect(),
    };
    parameters.extend(given.clone());
    template.instantiate(&parameters, pseudo)
}

/// The simulator's own rules for each group, not the template's: berth's `/state` port
/// ([`layout::STATE_PORT`]) and Kafka's controller port (the tests' quorum description) open to the region's
/// gateway addresses, where the tests and the demo read them (as an operator's tunnel would). The brokers reach
/// each other from their own addresses, never a gateway's, so only the template's rules admit them.
pub fn state_tunnel(groups: &[String], zones: usize) -> Vec<Ingress> {
    let mut rules = Vec::new();
    for group in groups {
        for (az, port) in (0..zones).flat_map(|az| {
            [layout::STATE_PORT, layout::KAFKA_CONTROLLER_PORT].map(|port| (az, port))
        }) {
            rules.push(Ingress {
                group: group.clone(),
                from_port: port,
                to_port: port,
                source: Source::Cidr(ipnet::Ipv4Net::from(layout::gateway(az))),
            });
        }
    }
    rules
}

/// The table enforcing `rules`: every accept rule first (a member's rules are the union of its groups'), then
/// one counted drop per group (counted in total and per destination port).
pub fn ruleset(rules: &[Ingress]) -> String {
    let mut groups: Vec<&str> = rules.iter().map(|r| r.group.as_str()).collect();
    groups.sort_unstable();
    groups.dedup();
    let mut table = format!("table bridge {NFT_TABLE} {{\n");
    for group in &groups {
        table.push_str(&format!(
            "  set {} {{ type ipv4_addr; }}\n  counter {} {{ }}\n  set {} {{ type inet_service; flags dynamic; counter; }}\n",
            set_name(group),
            counter_name(group),
            refused_ports_name(group)
        ));
    }
    for (chain, hook) in [("forwarded", "forward"), ("sent", "output")] {
        table.push_str(&format!(
            "  chain {chain} {{ type filter hook {hook} priority 0; policy accept; jump ingress; }}\n"
        ));
    }
    table.push_str(
        "  chain ingress {\n    ether type != ip return\n    ip protocol != tcp return\n",
    );
    table.push_str("    tcp flags & (syn | ack) != syn return\n");
    for rule in rules {
        let source = match &rule.source {
            Source::Cidr(cidr) => cidr.to_string(),
            Source::Group(group) => format!("@{}", set_name(group)),
        };
        let ports = if rule.from_port == rule.to_port {
            rule.from_port.to_string()
        } else {
            format!("{}-{}", rule.from_port, rule.to_port)
        };
        table.push_str(&format!(
            "    ip daddr @{} ip saddr {source} tcp dport {ports} accept\n",
            set_name(&rule.group)
        ));
    }
    for group in &groups {
        table.push_str(&format!(
            "    ip daddr @{} update @{} {{ tcp dport }} counter name {} drop\n",
            set_name(group),
            refused_ports_name(group),
            counter_name(group)
        ));
    }
    table.push_str("  }\n}\n");
    table
}

/// The connections refused on `port` in a listing of a group's [`refused_ports_name`] set
/// (`nft list set ...`: `elements = { 9093 counter packets 4 bytes 240, ... }`); 0 when none was. Pure.
pub fn refused_on_port(listing: &str, port: u16) -> u64 {
    let port = port.to_string();
    let words: Vec<&str> = listing
        .split(|c: char| c.is_whitespace() || c == ',' || c == '{' || c == '}')
        .filter(|w| !w.is_empty())
        .collect();
    words
        .windows(4)
        .find(|w| w[0] == port && w[1] == "counter" && w[2] == "packets")
        .and_then(|w| w[3].parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(group: &str, port: u16, source: Source) -> Ingress {
        Ingress {
            group: group.into(),
            from_port: port,
            to_port: port,
            source,
        }
    }

    #[test]
    fn accepts_come_before_every_drop_and_only_new_connections_are_filtered() {
        let rules = [
            rule("sg-1", 9092, Source::Cidr("10.0.0.0/16".parse().unwrap())),
            rule("sg-1", 9093, Source::Group("sg-1".into())),
            rule("sg-2", 22, Source::Group("sg-1".into())),
        ];
        let table = ruleset(&rules);
        let lines: Vec<&str> = table.lines().map(str::trim).collect();
        let syn_only = lines
            .iter()
            .position(|l| l.starts_with("tcp flags"))
            .unwrap();
        let last_accept = lines.iter().rposition(|l| l.ends_with("accept")).unwrap();
        let first_drop = lines.iter().position(|l| l.ends_with("drop")).unwrap();
        assert!(
            syn_only < last_accept && last_accept < first_drop,
            "{table}"
        );
        assert!(
            lines.contains(&"ip daddr @members_sg_1 ip saddr 10.0.0.0/16 tcp dport 9092 accept")
        );
        assert!(
            lines.contains(&"ip daddr @members_sg_1 ip saddr @members_sg_1 tcp dport 9093 accept")
        );
        assert!(lines.contains(
            &"ip daddr @members_sg_2 update @refused_ports_sg_2 { tcp dport } counter name refused_sg_2 drop"
        ));
        assert_eq!(
            lines.iter().filter(|l| l.ends_with("drop")).count(),
            2,
            "{table}"
        );
    }

    #[test]
    fn refused_connections_are_read_per_port() {
        let listing = "table bridge secgroups {\n\tset refused_ports_sg_1 {\n\t\ttype inet_service\n\t\tsize 65535\n\t\tflags dynamic\n\t\tcounter\n\t\telements = { 9093 counter packets 4 bytes 240, 9094 counter packets 2 bytes 120 }\n\t}\n}\n";
        assert_eq!(refused_on_port(listing, 9093), 4);
        assert_eq!(refused_on_port(listing, 9094), 2);
        assert_eq!(refused_on_port(listing, 9092), 0);
        assert_eq!(refused_on_port("", 9093), 0);
    }
}
