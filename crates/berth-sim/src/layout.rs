//! The simulated region's address plan, in one pure place so the region, the hosts, the tests and the demo agree.
//!
//! One VPC `10.0.0.0/16`: services (ZooKeeper, moto) on `10.0.0.0/24` as local addresses of the region namespace,
//! and one `/24` subnet per availability zone (`10.0.<az+1>.0/24`) played by a bridge whose address `.1` is the
//! subnet's gateway, as on EC2. Broker id `k` lives in zone `k % zones`, its ENI at `.<100+k>`; host `n` takes
//! `.<10+n>` as its primary address.

use std::net::Ipv4Addr;

/// The simulated region's name (what IMDS and the SDK report).
pub const REGION: &str = "us-east-1";
/// Port the strict moto server listens on.
pub const MOTO_PORT: u16 = 5000;
/// ZooKeeper client port on each ensemble member.
pub const ZK_PORT: u16 = 2181;
/// berth's health endpoint port inside each host (`/health`, `/metrics`).
pub const HEALTH_PORT: u16 = 9798;
/// berth's `/state` port inside each host (`health.state_listen`; the simulated hosts open it to the region's
/// namespace, where the tests and the demo read it, as an operator's monitoring through a tunnel would).
pub const STATE_PORT: u16 = 9799;
/// The Kafka stand-in's listener port on the ENI address.
pub const KAFKA_PORT: u16 = 9092;
/// Kafka's controller listener (KRaft; berth's `kafka.controller_port` default).
pub const KAFKA_CONTROLLER_PORT: u16 = 9093;
/// The link-local address of the instance metadata service.
pub const IMDS_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

/// Zone `az` (0-based) by name: `us-east-1a`, `us-east-1b`, ...
pub fn zone_name(az: usize) -> String {
    format!("{REGION}{}", (b'a' + az as u8) as char)
}

/// The zone letter of `az` (`a`, `b`, ...), used in interface names.
pub fn zone_letter(az: usize) -> char {
    (b'a' + az as u8) as char
}

/// The third octet of zone `az`'s subnet.
fn subnet_octet(az: usize) -> u8 {
    u8::try_from(az + 1).expect("fewer than 255 zones")
}

/// Zone `az`'s subnet in CIDR notation.
pub fn subnet_cidr(az: usize) -> String {
    format!("10.0.{}.0/24", subnet_octet(az))
}

/// Zone `az`'s gateway (network address + 1, the bridge's address in the region namespace).
pub fn gateway(az: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, subnet_octet(az), 1)
}

/// The fixed MAC of zone `az`'s bridge (a bridge left alone takes its lowest port MAC, which changes on hot-plug).
pub fn bridge_mac(az: usize) -> String {
    format!("02:00:00:00:{:02x}:01", subnet_octet(az))
}

/// The zone broker id `id` belongs to in a cluster laid out over `zones` zones.
pub fn zone_of_id(id: u32, zones: usize) -> usize {
    id as usize % zones
}

/// Broker id `id`'s ENI address.
pub fn eni_ip(id: u32, zones: usize) -> Ipv4Addr {
    let host = u8::try_from(100 + id).expect("broker ids below 155");
    Ipv4Addr::new(10, 0, subnet_octet(zone_of_id(id, zones)), host)
}

/// A VPC address's private DNS name, as EC2's resolver answers for it (`ip-10-0-1-100.ec2.internal`).
pub fn private_dns_name(ip: Ipv4Addr) -> String {
    format!("ip-{}.ec2.internal", ip.to_string().replace('.', "-"))
}

/// A host's `/etc/hosts`, the simulated VPC's resolver: loopback, the host's own name and primary address, and
/// every broker's ENI address by its private DNS name. A lookup of a VPC address must answer at once, as EC2's
/// resolver does: Kafka's SASL server looks up the name of the address every connection came in on, and with
/// no answer in this file it would ask the nameserver the image inherited from the build machine, unreachable
/// from the fleet's namespaces (5 s per lookup: SCRAM authentications that take 5 or 10 s).
pub fn etc_hosts(hostname: &str, primary: Ipv4Addr, brokers: u32, zones: usize) -> String {
    let mut text = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{primary}\t{} {hostname}\n",
        private_dns_name(primary)
    );
    for id in 0..brokers {
        let ip = eni_ip(id, zones);
        text.push_str(&format!("{ip}\t{}\n", private_dns_name(ip)));
    }
    text
}

/// Host `n`'s primary address in zone `az`.
pub fn host_ip(n: usize, az: usize) -> Ipv4Addr {
    let host = u8::try_from(10 + n).expect("fewer than 90 hosts");
    Ipv4Addr::new(10, 0, subnet_octet(az), host)
}

/// ZooKeeper ensemble member `member`'s (0-based) address.
pub fn zk_ip(member: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, u8::try_from(11 + member).expect("small ensemble"))
}

/// The strict moto server's address.
pub fn moto_ip() -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, 20)
}

/// The ZooKeeper connect string for an ensemble of `members`.
pub fn zk_connect(members: usize) -> String {
    (0..members)
        .map(|m| format!("{}:{ZK_PORT}", zk_ip(m)))
        .collect::<Vec<_>>()
        .join(",")
}

/// The ENI/volume `Name` tag of broker id `id` (the seed's scheme).
pub fn name_tag(id: u32) -> String {
    format!("KAFKA-{id}")
}

/// The tag key marking a resource as part of a cluster.
pub const CLUSTER_TAG: &str = "berth:cluster";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_spread_over_zones_with_fixed_addresses() {
        assert_eq!(zone_name(0), "us-east-1a");
        assert_eq!(eni_ip(0, 3), Ipv4Addr::new(10, 0, 1, 100));
        assert_eq!(eni_ip(4, 3), Ipv4Addr::new(10, 0, 2, 104));
        assert_eq!(gateway(2), Ipv4Addr::new(10, 0, 3, 1));
        assert_eq!(host_ip(3, 0), Ipv4Addr::new(10, 0, 1, 13));
        assert_eq!(
            zk_connect(3),
            "10.0.0.11:2181,10.0.0.12:2181,10.0.0.13:2181"
        );
        assert_eq!(bridge_mac(0), "02:00:00:00:01:01");
    }

    #[test]
    fn etc_hosts_names_the_host_and_every_broker_address() {
        let hosts = etc_hosts("broker-host-4", host_ip(4, 1), 3, 3);
        let line = |ip: &str| hosts.lines().find(|l| l.split('\t').next() == Some(ip));
        assert_eq!(
            line("10.0.2.14"),
            Some("10.0.2.14\tip-10-0-2-14.ec2.internal broker-host-4")
        );
        for (ip, name) in [
            ("10.0.1.100", "ip-10-0-1-100.ec2.internal"),
            ("10.0.2.101", "ip-10-0-2-101.ec2.internal"),
            ("10.0.3.102", "ip-10-0-3-102.ec2.internal"),
        ] {
            assert_eq!(line(ip), Some(format!("{ip}\t{name}").as_str()));
        }
        assert!(line("127.0.0.1").is_some_and(|l| l.ends_with("localhost")));
    }
}
