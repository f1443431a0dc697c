//! Real network namespaces for tests: fresh per-thread namespaces, named namespaces, veth pairs, and a subnet
//! bridge that behaves like an EC2 subnet (fixed gateway MAC, source/destination check).
//!
//! Why these shapes:
//! - A thread that calls `unshare(CLONE_NEWNET)` gets a private, empty namespace that dies with the thread
//!   ([`in_fresh_netns`]); sockets opened there (netlink included) stay bound to it. Child processes (`ip`)
//!   started from that thread run in it too.
//! - Several hosts talking to each other need namespaces that outlive one thread and can be named by `ip`:
//!   [`NetNs`] wraps `ip netns add` and deletes the namespace on drop.
//! - A simulated VPC must stay inside namespaces. [`Subnet`] is a namespace holding a bridge with a fixed MAC
//!   (a bridge otherwise takes its lowest port MAC, and hot-plugging a port would change the gateway's MAC under
//!   every host) and the gateway address; [`Subnet::plug`] connects a host interface to it with a veth pair;
//!   [`Subnet::enable_source_dest_check`] installs an nftables bridge filter that drops what EC2 drops: IPv4 and
//!   ARP entering from a port with a source address that is not the port's, and IPv4 unicast leaving to a port
//!   that is not addressed to it.
//!
//! Everything here panics with the failing command's stderr: these are test fixtures.

use std::fs::File;
use std::future::Future;
use std::net::Ipv4Addr;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use berth_core::facts::MacAddr;
use ipnet::Ipv4Net;
use nix::sched::{setns, unshare, CloneFlags};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique in this machine for the life of this process: `<prefix>-<pid>-<n>`, kept within 15 bytes when
/// used as an interface name by callers that pass a short prefix.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn run(program: &str, args: &[&str]) -> Result<Output, String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|error| format!("cannot run {program}: {error}"))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(format!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Runs `ip <args>` in the calling thread's namespace; its stdout, or the command and its stderr.
pub fn try_ip(args: &[&str]) -> Result<String, String> {
    run("ip", args).map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `ip <args>` in the calling thread's namespace and returns stdout; panics with stderr on failure.
pub fn ip(args: &[&str]) -> String {
    try_ip(args).unwrap_or_else(|error| panic!("{error}"))
}

/// Runs `ip -j <args>` in the calling thread's namespace and parses its JSON (an empty output is `[]`).
pub fn ip_json(args: &[&str]) -> serde_json::Value {
    let mut full = vec!["-j"];
    full.extend_from_slice(args);
    let text = ip(&full);
    if text.trim().is_empty() {
        return serde_json::Value::Array(Vec::new());
    }
    serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("ip {} gave bad JSON ({error}): {text}", full.join(" ")))
}

/// The calling thread's kernel id: `ip link set <dev> netns <tid>` moves a link into a [`in_fresh_netns`]
/// thread's namespace.
pub fn current_tid() -> i32 {
    nix::unistd::gettid().as_raw()
}

/// Brings loopback up and turns IPv6 off in the calling thread's namespace, so that only the IPv4 state a test
/// makes is there (no link-local addresses appearing when links go up).
fn prepare_current_namespace() {
    ip(&["link", "set", "lo", "up"]);
    for path in [
        "/proc/sys/net/ipv6/conf/all/disable_ipv6",
        "/proc/sys/net/ipv6/conf/default/disable_ipv6",
    ] {
        // Absent when IPv6 is compiled out: nothing to turn off then.
        let _ = std::fs::write(path, "1");
    }
}

fn join<T>(handle: std::thread::JoinHandle<T>) -> T {
    match handle.join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build a current-thread tokio runtime")
}

/// Runs `body` on a new thread in a fresh, empty network namespace (loopback up, IPv6 off) and returns its
/// result; the namespace disappears when the thread ends. Panics inside propagate to the caller.
pub fn in_fresh_netns_sync<T, F>(body: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    join(std::thread::spawn(move || {
        unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET) (needs root)");
        prepare_current_namespace();
        body()
    }))
}

/// Like [`in_fresh_netns_sync`], with a current-thread tokio runtime inside the namespace driving the future
/// `make()` returns (so netlink sockets and tasks stay in it).
pub fn in_fresh_netns<T, F, Fut>(make: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
{
    in_fresh_netns_sync(move || current_thread_runtime().block_on(make()))
}

/// A named network namespace (`ip netns add`), deleted on drop. Loopback is up, IPv6 is off.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates `<prefix>-<pid>-<n>`.
    pub fn new(prefix: &str) -> NetNs {
        let name = unique_name(prefix);
        ip(&["netns", "add", &name]);
        let namespace = NetNs { name };
        namespace.run(prepare_current_namespace);
        namespace
    }

    /// Its name, as `ip -n` and `ip netns exec` take it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its bind-mounted namespace file.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// Runs `ip -n <name> <args>`; stdout or the error text.
    pub fn try_ip(&self, args: &[&str]) -> Result<String, String> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        try_ip(&full)
    }

    /// Runs `ip -n <name> <args>`; panics on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        self.try_ip(args).unwrap_or_else(|error| panic!("{error}"))
    }

    /// Runs `ip -n <name> -j <args>` and parses its JSON.
    pub fn ip_json(&self, args: &[&str]) -> serde_json::Value {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        ip_json(&full)
    }

    /// Runs any program inside the namespace; its output or the error text.
    pub fn try_exec(&self, program: &str, args: &[&str]) -> Result<Output, String> {
        let mut full = vec!["netns", "exec", self.name.as_str(), program];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Runs any program inside the namespace (`ip netns exec`); panics unless it succeeds.
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        self.try_exec(program, args)
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// Moves the calling thread into this namespace (for good: use on threads you own).
    pub fn enter_current_thread(&self) {
        let file =
            File::open(self.path()).unwrap_or_else(|error| panic!("open {}: {error}", self.path()));
        setns(&file, CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|error| panic!("setns into {}: {error}", self.name));
    }

    /// Starts `body` on a new thread inside this namespace (for servers and listeners that live on).
    pub fn spawn<T, F>(&self, body: F) -> std::thread::JoinHandle<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let file =
            File::open(self.path()).unwrap_or_else(|error| panic!("open {}: {error}", self.path()));
        let name = self.name.clone();
        std::thread::spawn(move || {
            setns(&file, CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|error| panic!("setns into {name}: {error}"));
            drop(file);
            body()
        })
    }

    /// Runs `body` on a thread inside this namespace and returns its result.
    pub fn run<T, F>(&self, body: F) -> T
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        join(self.spawn(body))
    }

    /// Runs the future `make()` returns on a current-thread tokio runtime inside this namespace.
    pub fn run_async<T, F, Fut>(&self, make: F) -> T
    where
        T: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T>,
    {
        self.run(move || current_thread_runtime().block_on(make()))
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(error) = try_ip(&["netns", "del", &self.name]) {
            eprintln!("warning: {error}");
        }
    }
}

/// Creates a veth pair: `a` in namespace `a_ns` and `b` in `b_ns`, each with the given MAC (or a random one),
/// both down.
pub fn veth_pair(
    a_ns: &NetNs,
    a: &str,
    a_mac: Option<MacAddr>,
    b_ns: &NetNs,
    b: &str,
    b_mac: Option<MacAddr>,
) {
    let a_mac = a_mac.map(|mac| mac.to_string());
    let b_mac = b_mac.map(|mac| mac.to_string());
    let mut args = vec!["link", "add", a];
    if let Some(mac) = &a_mac {
        args.extend(["address", mac.as_str()]);
    }
    args.extend(["type", "veth", "peer", "name", b]);
    if let Some(mac) = &b_mac {
        args.extend(["address", mac.as_str()]);
    }
    args.extend(["netns", b_ns.name()]);
    a_ns.ip(&args);
}

/// Moves a link from one namespace to another (an ENI detaching from one host and attaching to the next):
/// the target sees a new-link event, as a host sees a hot-plugged ENI.
pub fn move_link(from: &NetNs, link: &str, to: &NetNs) {
    from.ip(&["link", "set", link, "netns", to.name()]);
}

/// A locally administered unicast MAC `02:b3:<a>:<b>:<c>:<d>` (handy fixed MACs for tests).
pub fn test_mac(tail: [u8; 4]) -> MacAddr {
    MacAddr([0x02, 0xb3, tail[0], tail[1], tail[2], tail[3]])
}

/// One interface plugged into a [`Subnet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// The bridge-side veth name (in the subnet's namespace).
    pub bridge_port: String,
    /// The host-side interface name (in the host's namespace).
    pub interface: String,
    /// The host-side interface's MAC.
    pub mac: MacAddr,
    /// The address EC2 assigned to it: the only source it may send from and the only unicast destination it
    /// receives for, when the source/destination check is on.
    pub ip: Ipv4Addr,
}

/// A namespace playing a VPC subnet: bridge `br0` with a fixed MAC and the gateway address (network + 1).
#[derive(Debug)]
pub struct Subnet {
    namespace: NetNs,
    cidr: Ipv4Net,
    gateway: Ipv4Addr,
    ports: Mutex<Vec<Port>>,
    checking: Mutex<bool>,
}

/// nftables table holding the source/destination check.
const CHECK_TABLE: &str = "berth_src_dst_check";

impl Subnet {
    /// Creates the namespace, the bridge with `bridge_mac`, and the gateway address on it.
    pub fn new(prefix: &str, cidr: Ipv4Net, bridge_mac: MacAddr) -> Subnet {
        let namespace = NetNs::new(prefix);
        let gateway = Ipv4Addr::from(u32::from(cidr.network()) + 1);
        let mac = bridge_mac.to_string();
        namespace.ip(&["link", "add", "br0", "address", &mac, "type", "bridge"]);
        namespace.ip(&["link", "set", "br0", "up"]);
        namespace.ip(&[
            "addr",
            "add",
            &format!("{gateway}/{}", cidr.prefix_len()),
            "dev",
            "br0",
        ]);
        Subnet {
            namespace,
            cidr,
            gateway,
            ports: Mutex::new(Vec::new()),
            checking: Mutex::new(false),
        }
    }

    /// The subnet's namespace.
    pub fn namespace(&self) -> &NetNs {
        &self.namespace
    }

    /// The subnet's CIDR.
    pub fn cidr(&self) -> Ipv4Net {
        self.cidr
    }

    /// Its gateway (network + 1, as on EC2), answered by the bridge.
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// Connects a new interface `interface` (MAC `mac`, down, no address) in `host` to the bridge, and assigns it
    /// `ip` for the source/destination check. The host configures the interface itself.
    pub fn plug(&self, host: &NetNs, interface: &str, mac: MacAddr, ip: Ipv4Addr) -> Port {
        let bridge_port = unique_name("bp").replace('-', "");
        let bridge_port: String = bridge_port.chars().take(15).collect();
        veth_pair(
            &self.namespace,
            &bridge_port,
            None,
            host,
            interface,
            Some(mac),
        );
        self.namespace
            .ip(&["link", "set", &bridge_port, "master", "br0"]);
        self.namespace.ip(&["link", "set", &bridge_port, "up"]);
        let port = Port {
            bridge_port,
            interface: interface.to_owned(),
            mac,
            ip,
        };
        self.ports.lock().expect("ports lock").push(port.clone());
        if *self.checking.lock().expect("check lock") {
            self.install_check();
        }
        port
    }

    /// The ports plugged so far.
    pub fn ports(&self) -> Vec<Port> {
        self.ports.lock().expect("ports lock").clone()
    }

    /// Emulates EC2's source/destination check on the bridge from now on (ports plugged later included).
    pub fn enable_source_dest_check(&self) {
        *self.checking.lock().expect("check lock") = true;
        self.install_check();
    }

    /// The nftables ruleset of the check, for the ports plugged so far.
    pub fn check_ruleset(&self) -> String {
        let broadcast = self.cidr.broadcast();
        let mut rules = String::new();
        for port in self.ports.lock().expect("ports lock").iter() {
            let (name, ip) = (&port.bridge_port, port.ip);
            rules.push_str(&format!(
                "    iifname \"{name}\" ether type ip ip saddr != {ip} counter drop\n\
                 \x20   iifname \"{name}\" ether type arp arp saddr ip != {ip} counter drop\n"
            ));
        }
        let mut forward = rules.clone();
        for port in self.ports.lock().expect("ports lock").iter() {
            let (name, ip) = (&port.bridge_port, port.ip);
            forward.push_str(&format!(
                "    oifname \"{name}\" ether type ip ip daddr != {{ {ip}, {broadcast}, 255.255.255.255, 224.0.0.0/4 }} counter drop\n"
            ));
        }
        format!(
            "table bridge {CHECK_TABLE} {{\n\
             \x20 chain forward {{\n    type filter hook forward priority 0; policy accept;\n{forward}  }}\n\
             \x20 chain input {{\n    type filter hook input priority 0; policy accept;\n{rules}  }}\n}}\n"
        )
    }

    fn install_check(&self) {
        // Replace the whole table atomically: create (so the delete cannot fail), delete, define.
        let script = format!(
            "add table bridge {CHECK_TABLE}\ndelete table bridge {CHECK_TABLE}\n{}",
            self.check_ruleset()
        );
        let path = std::env::temp_dir().join(format!("{}.nft", unique_name("berth-check")));
        std::fs::write(&path, script).expect("write nft script");
        let path_text = path.to_string_lossy().into_owned();
        let result = self.namespace.try_exec("nft", &["-f", &path_text]);
        let _ = std::fs::remove_file(&path);
        result.unwrap_or_else(|error| panic!("{error}"));
    }

    /// Packets the check dropped so far (sum of its counters).
    pub fn dropped_packets(&self) -> u64 {
        let output = self
            .namespace
            .exec("nft", &["-j", "list", "table", "bridge", CHECK_TABLE]);
        let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
        value["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item["rule"]["expr"].as_array())
            .flatten()
            .filter_map(|expr| expr["counter"]["packets"].as_u64())
            .sum()
    }
}
