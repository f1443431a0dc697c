//! The simulated region: one network namespace that plays the VPC router, a bridge per zone subnet, EC2's
//! source/destination check, and the servers every host talks to (a ZooKeeper ensemble and strict moto).
//!
//! Nothing leaves namespaces: the servers listen on addresses of the region namespace's loopback (`10.0.0.0/24`),
//! hosts reach them through their zone bridge, whose address is the subnet gateway. The simulator's own threads
//! enter this namespace ([`Region::enter`]) so its EC2 client and probes talk to the servers from inside.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use berth_testkit::aws::template::ingress::Ingress;

use crate::layout;
use crate::security_groups;
use crate::sys::{self, SysError};

/// A region namespace that could not be built or entered.
#[derive(Debug, thiserror::Error)]
pub enum RegionError {
    /// A system tool failed.
    #[error("region {ns}: {source}")]
    Sys {
        /// The namespace.
        ns: String,
        /// The failed step.
        source: SysError,
    },
    /// The namespace could not be entered.
    #[error("cannot enter network namespace {ns}: {source}")]
    Enter {
        /// The namespace.
        ns: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The region namespace with its zone bridges; deleted (with everything left in it) on drop.
#[derive(Debug)]
pub struct Region {
    ns: String,
    zones: usize,
}

/// The first `packets N` of nft's listing (0 when absent).
fn packets(listing: &str) -> u64 {
    listing
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .find(|w| w[0] == "packets")
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(0)
}

/// Name of zone `az`'s bridge inside the region namespace.
pub fn bridge_name(az: usize) -> String {
    format!("br-{}", layout::zone_letter(az))
}

const NFT_TABLE: &str = "srcdst";

impl Region {
    /// Creates the namespace `ns`, its service addresses, forwarding, one bridge per zone with a fixed MAC and
    /// the gateway address, and the source/destination check (a bridge prerouting filter that lets a port send
    /// IPv4 only from the addresses registered for it with [`Region::allow_source`]).
    pub fn create(ns: &str, zones: usize) -> Result<Self, RegionError> {
        let fail = |source| RegionError::Sys {
            ns: ns.to_owned(),
            source,
        };
        let _ = sys::ip(&["netns", "del", ns]);
        sys::ip(&["netns", "add", ns]).map_err(fail)?;
        let region = Self {
            ns: ns.to_owned(),
            zones,
        };
        region.build().map_err(fail)?;
        Ok(region)
    }

    fn build(&self) -> Result<(), SysError> {
        let ns = self.ns.as_str();
        let mut commands = vec!["link set lo up".to_owned()];
        for service in (0..3).map(layout::zk_ip).chain([layout::moto_ip()]) {
            commands.push(format!("addr add {service}/32 dev lo"));
        }
        for az in 0..self.zones {
            let bridge = bridge_name(az);
            commands.extend([
                format!(
                    "link add {bridge} address {} type bridge",
                    layout::bridge_mac(az)
                ),
                format!("addr add {}/24 dev {bridge}", layout::gateway(az)),
                format!("link set {bridge} up"),
            ]);
        }
        sys::ip_batch(ns, &commands)?;
        sys::run(
            "ip",
            &[
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ],
        )?;
        self.load_source_check()
    }

    /// The source/destination check: a bridge prerouting filter that lets a port send IPv4 only from the
    /// addresses registered for it.
    fn load_source_check(&self) -> Result<(), SysError> {
        let rules = format!(
            "table bridge {NFT_TABLE} {{\n\
               set allowed {{ type ifname . ipv4_addr; }}\n\
               chain pre {{ type filter hook prerouting priority 0; policy accept;\n\
                 ether type ip iifname . ip saddr @allowed accept\n\
                 ether type ip counter drop\n\
               }}\n\
             }}\n"
        );
        self.load_nft(&rules)
    }

    /// Loads an nftables ruleset into the namespace.
    fn load_nft(&self, rules: &str) -> Result<(), SysError> {
        let ns = self.ns.as_str();
        let path = std::env::temp_dir().join(format!("{ns}-{}.nft", std::process::id()));
        std::fs::write(&path, rules).map_err(|source| SysError::Io {
            what: "write",
            path: path.display().to_string(),
            source,
        })?;
        let loaded = sys::run(
            "ip",
            &[
                "netns",
                "exec",
                ns,
                "nft",
                "-f",
                &path.display().to_string(),
            ],
        );
        let _ = std::fs::remove_file(&path);
        loaded.map(drop)
    }

    /// Enforces security group ingress rules between the hosts ([`security_groups`]), replacing any enforced
    /// before; groups start without members ([`Region::join_security_group`]).
    pub fn enforce_security_groups(&self, rules: &[Ingress]) -> Result<(), SysError> {
        self.lift_security_groups();
        self.load_nft(&security_groups::ruleset(rules))
    }

    /// Stops enforcing security groups (none enforced is fine).
    pub fn lift_security_groups(&self) {
        let _ = sys::run(
            "ip",
            &[
                "netns",
                "exec",
                &self.ns,
                "nft",
                "delete",
                "table",
                "bridge",
                security_groups::NFT_TABLE,
            ],
        );
    }

    /// Makes `addresses` (ENIs' or instances' primary addresses) members of `group`: protected by its rules
    /// and sources its self-referencing rules admit.
    pub fn join_security_group(
        &self,
        group: &str,
        addresses: &[std::net::Ipv4Addr],
    ) -> Result<(), SysError> {
        let listed: Vec<String> = addresses.iter().map(ToString::to_string).collect();
        let element = format!("{{ {} }}", listed.join(", "));
        let set = security_groups::set_name(group);
        sys::run(
            "ip",
            &[
                "netns",
                "exec",
                &self.ns,
                "nft",
                "add",
                "element",
                "bridge",
                security_groups::NFT_TABLE,
                &set,
                &element,
            ],
        )
        .map(drop)
    }

    /// New connections `group`'s rules refused so far (the drop rule's counter).
    pub fn refused_by_security_group(&self, group: &str) -> u64 {
        packets(&self.list_filter_object("counter", &security_groups::counter_name(group)))
    }

    /// `nft list <kind> bridge <table> <name>` of the security groups' filter in the region namespace (empty when
    /// the filter is not there).
    fn list_filter_object(&self, kind: &str, name: &str) -> String {
        sys::run(
            "ip",
            &[
                "netns",
                "exec",
                &self.ns,
                "nft",
                "list",
                kind,
                "bridge",
                security_groups::NFT_TABLE,
                name,
            ],
        )
        .unwrap_or_default()
    }

    /// New connections to `port` that `group`'s rules refused so far (its per-port drop counters).
    pub fn refused_on_port(&self, group: &str, port: u16) -> u64 {
        let set = security_groups::refused_ports_name(group);
        security_groups::refused_on_port(&self.list_filter_object("set", &set), port)
    }

    /// The namespace's name.
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// How many zones (bridges) the region has.
    pub fn zones(&self) -> usize {
        self.zones
    }

    /// The namespace's file, for `nsenter --net=` and `setns`.
    pub fn ns_path(&self) -> PathBuf {
        netns_path(&self.ns)
    }

    /// Moves the calling thread into the region namespace (threads and processes it starts afterwards inherit it).
    pub fn enter(&self) -> Result<(), RegionError> {
        enter_netns(&self.ns).map_err(|source| RegionError::Enter {
            ns: self.ns.clone(),
            source,
        })
    }

    /// Puts bridge port `port` on zone `az`'s bridge and brings it up.
    pub fn join_bridge(&self, port: &str, az: usize) -> Result<(), SysError> {
        sys::ip_in(
            &self.ns,
            &["link", "set", port, "master", &bridge_name(az), "up"],
        )
        .map(drop)
    }

    /// Lets bridge port `port` send IPv4 from `address` (EC2's source/destination check allows a NIC only its own
    /// addresses).
    pub fn allow_source(&self, port: &str, address: std::net::Ipv4Addr) -> Result<(), SysError> {
        let element = format!("{{ \"{port}\" . {address} }}");
        sys::run(
            "ip",
            &[
                "netns", "exec", &self.ns, "nft", "add", "element", "bridge", NFT_TABLE, "allowed",
                &element,
            ],
        )
        .map(drop)
    }

    /// Withdraws what [`Region::allow_source`] granted (absent is fine).
    pub fn deny_source(&self, port: &str, address: std::net::Ipv4Addr) {
        let element = format!("{{ \"{port}\" . {address} }}");
        let _ = sys::run(
            "ip",
            &[
                "netns", "exec", &self.ns, "nft", "delete", "element", "bridge", NFT_TABLE,
                "allowed", &element,
            ],
        );
    }

    /// Packets the source/destination check has dropped so far.
    pub fn dropped_by_source_check(&self) -> u64 {
        let out = sys::run(
            "ip",
            &[
                "netns", "exec", &self.ns, "nft", "list", "chain", "bridge", NFT_TABLE, "pre",
            ],
        )
        .unwrap_or_default();
        packets(&out)
    }

    /// The address the strict moto server listens on.
    pub fn moto_address(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(layout::moto_ip()), layout::MOTO_PORT)
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        let _ = sys::ip(&["netns", "del", &self.ns]);
    }
}

/// The file of a named network namespace.
pub fn netns_path(ns: &str) -> PathBuf {
    Path::new("/run/netns").join(ns)
}

/// Moves the calling thread into the named network namespace.
pub fn enter_netns(ns: &str) -> std::io::Result<()> {
    let file = std::fs::File::open(netns_path(ns))?;
    nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(std::io::Error::from)
}

/// Binds a TCP listener at `address` inside the named namespace (from a short-lived thread that enters it), so a
/// server in this process can serve that namespace.
pub fn bind_in_netns(ns: &str, address: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        enter_netns(&ns)?;
        std::net::TcpListener::bind(address)
    })
    .join()
    .map_err(|_| std::io::Error::other("the namespace thread panicked"))?
}
