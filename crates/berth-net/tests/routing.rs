//! NetlinkNetwork against the real kernel, in network namespaces of its own (root only).
//!
//! Every outcome is read back twice: through netlink (the adapter's own `observe`) and through `ip -j`, a
//! client we did not write. The packet test builds a subnet bridge with EC2's source/destination check and
//! proves with TCP that routing makes the ENI address reachable.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::time::{Duration, Instant};

use berth_core::facts::{MacAddr, RoutePlan};
use berth_core::{Deadline, ErrorKind, Network};
use berth_net::{Check, NetlinkNetwork};
use berth_testkit::netns::{in_fresh_netns, ip, ip_json, move_link, test_mac, NetNs, Subnet};
use berth_testkit::require_root;
use serde_json::Value;

const ENI_MAC: [u8; 4] = [0, 0, 0, 0x20];
const PRIMARY_MAC: [u8; 4] = [0, 0, 0, 0x10];

fn plan() -> RoutePlan {
    RoutePlan {
        mac: test_mac(ENI_MAC),
        primary_mac: test_mac(PRIMARY_MAC),
        address: "10.0.0.20/24".parse().unwrap(),
        gateway: "10.0.0.1".parse().unwrap(),
        table: 10001,
        rule_priority: 10001,
    }
}

fn deadline() -> Deadline {
    Deadline::after(Duration::from_secs(5))
}

/// In the current (fresh) namespace: a primary `eth0` (its own address and main default route: must never be
/// touched) and the ENI `eth1`, each a veth whose peer end is up so the link has carrier.
fn host_links() {
    let primary = test_mac(PRIMARY_MAC).to_string();
    let eni = test_mac(ENI_MAC).to_string();
    ip(&[
        "link", "add", "eth0", "address", &primary, "type", "veth", "peer", "name", "eth0p",
    ]);
    ip(&[
        "link", "add", "eth1", "address", &eni, "type", "veth", "peer", "name", "eth1p",
    ]);
    for link in ["eth0", "eth0p", "eth1p"] {
        ip(&["link", "set", link, "up"]);
    }
    ip(&["addr", "add", "10.0.0.10/24", "dev", "eth0"]);
    ip(&["route", "add", "default", "via", "10.0.0.1", "dev", "eth0"]);
    ip(&[
        "rule", "add", "from", "10.9.9.9", "lookup", "200", "priority", "200",
    ]);
}

/// Runs `scenario` in a fresh network namespace holding the host's links ([`host_links`]); root only.
fn on_a_host<F, Fut>(test: &str, scenario: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    if require_root(test) {
        in_fresh_netns(move || async move {
            host_links();
            scenario().await;
        });
    }
}

/// Everything IPv4 the namespace holds, through `ip -j`.
fn ip_state() -> Value {
    serde_json::json!({
        "addr": ip_json(&["-4", "addr"]),
        "route": ip_json(&["-4", "route", "show", "table", "all"]),
        "rule": ip_json(&["-4", "rule"]),
    })
}

/// Each link's name, flags and operational state, through `ip -j`.
fn link_flags() -> Vec<(Value, Value, Value)> {
    let links = ip_json(&["link"]);
    links
        .as_array()
        .unwrap()
        .iter()
        .map(|link| {
            (
                link["ifname"].clone(),
                link["flags"].clone(),
                link["operstate"].clone(),
            )
        })
        .collect()
}

/// Asserts through `ip -j` that the plan is installed exactly once.
fn assert_installed_per_ip(plan: &RoutePlan) {
    let addresses = ip_json(&["-4", "addr", "show", "dev", "eth1"]);
    let info = addresses[0]["addr_info"].as_array().expect("addr_info");
    assert_eq!(info.len(), 1, "one address on eth1: {addresses}");
    assert_eq!(info[0]["local"], "10.0.0.20");
    assert_eq!(info[0]["prefixlen"], 24);
    assert!(
        addresses[0]["flags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|flag| flag == "UP"),
        "{addresses}"
    );

    let mut routes = ip_json(&["-4", "route", "show", "table", &plan.table.to_string()]);
    let routes = routes.as_array_mut().expect("routes");
    routes.sort_by_key(|route| route["dst"].as_str().unwrap_or_default().to_owned());
    assert_eq!(routes.len(), 2, "two routes in the ENI table: {routes:?}");
    assert_eq!(routes[0]["dst"], "10.0.0.0/24");
    assert_eq!(routes[0]["dev"], "eth1");
    assert_eq!(routes[0]["scope"], "link");
    assert!(routes[0].get("gateway").is_none());
    assert_eq!(routes[1]["dst"], "default");
    assert_eq!(routes[1]["gateway"], "10.0.0.1");
    assert_eq!(routes[1]["dev"], "eth1");

    let rules = ip_json(&["-4", "rule"]);
    let ours: Vec<&Value> = rules
        .as_array()
        .unwrap()
        .iter()
        .filter(|rule| rule["src"] == "10.0.0.20")
        .collect();
    assert_eq!(ours.len(), 1, "one rule from the ENI address: {rules}");
    assert_eq!(ours[0]["priority"], 10001);
    assert_eq!(ours[0]["table"], "10001");
    assert_eq!(
        ours[0]["srclen"],
        Value::Null,
        "a /32 shows no srclen: {}",
        ours[0]
    );
    assert!(
        ours[0].get("action").is_none(),
        "to-table action shows no extra action: {}",
        ours[0]
    );

    // The kernel's own answer to where traffic goes: from the ENI address via the ENI, else via the primary.
    let from_eni = ip_json(&["-4", "route", "get", "192.0.2.7", "from", "10.0.0.20"]);
    assert_eq!(from_eni[0]["dev"], "eth1", "{from_eni}");
    assert_eq!(from_eni[0]["gateway"], "10.0.0.1", "{from_eni}");
    let from_primary = ip_json(&["-4", "route", "get", "192.0.2.7"]);
    assert_eq!(from_primary[0]["dev"], "eth0", "{from_primary}");
}

/// The primary interface's address and route are still there, untouched.
fn assert_primary_untouched() {
    let addresses = ip_json(&["-4", "addr", "show", "dev", "eth0"]);
    assert_eq!(
        addresses[0]["addr_info"][0]["local"], "10.0.0.10",
        "{addresses}"
    );
    let main = ip_json(&["-4", "route", "show", "table", "main", "default"]);
    assert_eq!(main[0]["dev"], "eth0", "{main}");
}

#[test]
fn configure_from_scratch_then_again_changes_nothing() {
    on_a_host(
        "configure_from_scratch_then_again_changes_nothing",
        || async {
            let plan = plan();
            let net = NetlinkNetwork::new().expect("netlink socket");

            let before = net.observe(&plan).await.unwrap();
            assert_eq!(before.address, Check::Missing);
            assert!(!before.is_routed());

            let first = net.apply(&plan, deadline()).await.expect("configure");
            assert_eq!(first.link.name, "eth1");
            assert_eq!(first.changes, 5, "{:#?}", first.requests);
            for request in &first.requests {
                eprintln!("configure request: {request}");
            }
            let observed = net.observe(&plan).await.unwrap();
            assert!(observed.is_routed(), "{}", observed.problems());
            assert_installed_per_ip(&plan);
            assert_primary_untouched();

            let state = ip_state();
            let second = net.apply(&plan, deadline()).await.expect("configure again");
            assert_eq!(second.changes, 0, "{:#?}", second.requests);
            assert!(
                second
                    .requests
                    .iter()
                    .all(|request| request.kind.starts_with("RTM_GET")),
                "{:#?}",
                second.requests
            );
            assert_eq!(ip_state(), state, "a second configure changes nothing");
            // Through the trait as the daemon calls it.
            net.configure(&plan, deadline())
                .await
                .expect("configure via the trait");
            assert_eq!(ip_state(), state);
        },
    );
}

#[test]
fn wrong_address_route_and_rule_are_corrected() {
    on_a_host("wrong_address_route_and_rule_are_corrected", || async {
        let plan = plan();
        // What a half-done or mistaken earlier setup leaves: the address with the wrong prefix, a default route
        // via the wrong gateway, and the rtnetlink pitfall rule (action unspec, which black-holes the source).
        ip(&["link", "set", "eth1", "up"]);
        ip(&["addr", "add", "10.0.0.20/16", "dev", "eth1"]);
        ip(&[
            "route",
            "add",
            "default",
            "via",
            "10.0.0.254",
            "dev",
            "eth1",
            "table",
            "10001",
        ]);
        let (connection, handle, _) = rtnetlink::new_connection().unwrap();
        tokio::spawn(connection);
        handle
            .rule()
            .add()
            .v4()
            .source_prefix("10.0.0.20".parse().unwrap(), 32)
            .table_id(10001)
            .priority(10001)
            .execute()
            .await
            .expect("add the pitfall rule");
        let unreachable = ip(&["-4", "rule"]);
        assert!(unreachable.contains("10001"), "{unreachable}");

        let net = NetlinkNetwork::new().unwrap();
        let before = net.observe(&plan).await.unwrap();
        assert!(
            matches!(before.address, Check::Wrong(ref found) if found == "10.0.0.20/16"),
            "{before:?}"
        );
        assert!(
            matches!(before.default_route, Check::Wrong(ref found) if found.contains("10.0.0.254"))
        );
        assert!(
            matches!(before.rule, Check::Wrong(ref found) if found.contains("Unspec")),
            "{before:?}"
        );

        let configured = net.apply(&plan, deadline()).await.expect("configure");
        for request in &configured.requests {
            eprintln!("correcting request: {request}");
        }
        assert!(net.observe(&plan).await.unwrap().is_routed());
        assert_installed_per_ip(&plan);
        assert_primary_untouched();
        let foreign = ip_json(&["-4", "rule"]);
        assert!(
            foreign
                .as_array()
                .unwrap()
                .iter()
                .any(|rule| rule["src"] == "10.9.9.9"),
            "foreign rule kept"
        );
    });
}

#[test]
fn a_link_that_appears_later_is_waited_for_by_events() {
    if !require_root("a_link_that_appears_later_is_waited_for_by_events") {
        return;
    }
    in_fresh_netns(|| async {
        let net = NetlinkNetwork::new().unwrap();
        let mac = test_mac(ENI_MAC);
        let started = Instant::now();
        // The ENI's link shows up 300 ms from now (a child process inherits this thread's namespace).
        let appear = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let status = tokio::process::Command::new("ip")
                .args([
                    "link",
                    "add",
                    "eth1",
                    "address",
                    &mac.to_string(),
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth1p",
                ])
                .status()
                .await
                .unwrap();
            assert!(status.success());
            Instant::now()
        });
        let (name, index) = net
            .wait_for_link(mac, deadline())
            .await
            .expect("link appears");
        let found = Instant::now();
        let created = appear.await.unwrap();
        assert_eq!(name, "eth1");
        assert!(index > 1);
        assert!(started.elapsed() >= Duration::from_millis(300));
        eprintln!(
            "link event to return: {:?}",
            found.saturating_duration_since(created)
        );
    });
}

#[test]
fn a_link_that_never_appears_times_out_naming_the_mac() {
    on_a_host(
        "a_link_that_never_appears_times_out_naming_the_mac",
        || async {
            let net = NetlinkNetwork::new().unwrap();
            let missing = MacAddr([0x02, 0xb3, 0xde, 0xad, 0xbe, 0xef]);
            let started = Instant::now();
            let error = net
                .wait_for_link(missing, Deadline::after(Duration::from_millis(300)))
                .await
                .expect_err("no such link");
            assert!(started.elapsed() < Duration::from_secs(2));
            assert_eq!(error.kind, ErrorKind::Retryable);
            assert!(
                error.message.contains("02:b3:de:ad:be:ef"),
                "{}",
                error.message
            );

            let mut plan = plan();
            plan.mac = missing;
            let error = net
                .configure(&plan, Deadline::after(Duration::from_millis(200)))
                .await
                .expect_err("no link");
            assert!(
                error.message.contains("02:b3:de:ad:be:ef"),
                "{}",
                error.message
            );
        },
    );
}

#[test]
fn the_primary_interface_is_never_configured() {
    on_a_host("the_primary_interface_is_never_configured", || async {
        let state = ip_state();
        let net = NetlinkNetwork::new().unwrap();
        let mut plan = plan();
        plan.mac = plan.primary_mac;
        let error = net
            .configure(&plan, deadline())
            .await
            .expect_err("primary refused");
        assert_eq!(error.kind, ErrorKind::Fatal);
        assert!(error.message.contains("primary"), "{}", error.message);
        let error = net.teardown(&plan).await.expect_err("primary refused");
        assert_eq!(error.kind, ErrorKind::Fatal);
        assert_eq!(ip_state(), state, "nothing changed");
    });
}

#[test]
fn teardown_leaves_the_namespace_as_it_was() {
    on_a_host("teardown_leaves_the_namespace_as_it_was", || async {
        let plan = plan();
        let net = NetlinkNetwork::new().unwrap();
        let pristine = ip_state();
        let links = link_flags();

        net.configure(&plan, deadline()).await.expect("configure");
        assert_ne!(ip_state(), pristine);
        assert_eq!(
            ip_json(&["-6", "addr"]),
            serde_json::json!([]),
            "IPv6 is off in test namespaces"
        );
        net.teardown(&plan).await.expect("teardown");
        assert_eq!(
            ip_state(),
            pristine,
            "teardown removes exactly what configure added"
        );
        assert_eq!(
            link_flags(),
            links,
            "link flags restored (the qdisc a link gets once up stays: not ours)"
        );
        net.teardown(&plan)
            .await
            .expect("teardown again is a no-op");
        assert_eq!(ip_state(), pristine);
        let observed = net.observe(&plan).await.unwrap();
        assert_eq!(
            (
                observed.address,
                observed.subnet_route,
                observed.default_route,
                observed.rule
            ),
            (
                Check::Missing,
                Check::Missing,
                Check::Missing,
                Check::Missing
            )
        );

        // The ENI detached before teardown: its link took address and routes along, but the rule remains
        // until teardown removes it.
        net.configure(&plan, deadline()).await.expect("configure");
        ip(&["link", "del", "eth1"]);
        assert!(ip_json(&["-4", "rule"])
            .as_array()
            .unwrap()
            .iter()
            .any(|rule| rule["src"] == "10.0.0.20"));
        net.teardown(&plan)
            .await
            .expect("teardown without the link");
        let rules = ip_json(&["-4", "rule"]);
        assert!(
            !rules
                .as_array()
                .unwrap()
                .iter()
                .any(|rule| rule["src"] == "10.0.0.20"),
            "{rules}"
        );
        assert_primary_untouched();
    });
}

/// Time allowed for a connection that must fail.
const MUST_FAIL: Duration = Duration::from_secs(1);
/// Time allowed for a connection that must succeed. Attempts are repeated until then, as any client does: an
/// address resolution left over from an earlier failed attempt (1 s per ARP probe) may first run out, failing
/// the attempt queued behind it with "no route to host".
const MUST_SUCCEED: Duration = Duration::from_secs(8);

/// One TCP connection attempt from `namespace` to `to` (bound to source `from` first, as Kafka binds its
/// advertised address), within `limit`.
fn connect(
    namespace: &NetNs,
    to: SocketAddrV4,
    from: Option<Ipv4Addr>,
    limit: Duration,
) -> Result<(), String> {
    namespace.run_async(move || async move {
        let socket = tokio::net::TcpSocket::new_v4().map_err(|error| error.to_string())?;
        if let Some(source) = from {
            socket
                .bind(SocketAddrV4::new(source, 0).into())
                .map_err(|error| format!("bind {source}: {error}"))?;
        }
        match tokio::time::timeout(limit, socket.connect(to.into())).await {
            Ok(Ok(_stream)) => Ok(()),
            Ok(Err(error)) => Err(format!("connect {to}: {error}")),
            Err(_) => Err(format!("connect {to}: timed out")),
        }
    })
}

/// Connection attempts from `namespace` to `to` until one succeeds or [`MUST_SUCCEED`] has passed; the
/// failures seen on the way.
fn connect_eventually(
    namespace: &NetNs,
    to: SocketAddrV4,
    from: Option<Ipv4Addr>,
) -> Result<(), String> {
    let deadline = Instant::now() + MUST_SUCCEED;
    let mut failures = Vec::new();
    while Instant::now() < deadline {
        let limit = deadline.saturating_duration_since(Instant::now());
        match connect(namespace, to, from, limit) {
            Ok(()) => return Ok(()),
            Err(error) => failures.push(error),
        }
    }
    Err(failures.join("; "))
}

/// Neighbour tables, links and the check's counters, for a failure message.
fn diagnose(subnet: &Subnet, host: &NetNs, peer: &NetNs) -> String {
    let nft = subnet.namespace().exec("nft", &["list", "ruleset"]);
    format!(
        "peer neigh:\n{}host neigh:\n{}host links:\n{}host rules:\n{}bridge links:\n{}nft:\n{}",
        peer.ip(&["neigh"]),
        host.ip(&["neigh"]),
        host.ip(&["-br", "link"]),
        host.ip(&["rule"]),
        subnet.namespace().ip(&["-d", "-br", "link"]),
        String::from_utf8_lossy(&nft.stdout)
    )
}

fn listen(namespace: &NetNs) -> (TcpListener, u16) {
    namespace.run(|| {
        let listener = TcpListener::bind(("0.0.0.0", 0)).expect("listen");
        let port = listener.local_addr().unwrap().port();
        (listener, port)
    })
}

#[test]
fn real_packets_reach_the_eni_address_only_after_configure() {
    if !require_root("real_packets_reach_the_eni_address_only_after_configure") {
        return;
    }
    let (subnet, host, peer, parking) = subnet_with_host_peer_and_parked_eni();
    assert_eq!(
        host.ip_json(&["-6", "addr"]),
        serde_json::json!([]),
        "IPv6 is off in named namespaces"
    );
    let (_host_listener, host_port) = listen(&host);
    let (_peer_listener, peer_port) = listen(&peer);
    let eni = SocketAddrV4::new("10.0.0.20".parse().unwrap(), host_port);
    let primary = SocketAddrV4::new("10.0.0.10".parse().unwrap(), host_port);
    let peer_address = SocketAddrV4::new("10.0.0.30".parse().unwrap(), peer_port);

    connect_eventually(&peer, primary, None)
        .expect("the subnet works: peer reaches the primary address");
    assert!(
        connect(&peer, eni, None, MUST_FAIL).is_err(),
        "ENI address unreachable before the ENI is attached"
    );
    move_link(&parking, "eth1", &host);
    assert!(
        connect(&peer, eni, None, MUST_FAIL).is_err(),
        "ENI address unreachable before berth routes it"
    );

    // berth in the host: configure (waiting for the link by MAC), as the daemon does.
    host.run_async(|| async {
        let net = NetlinkNetwork::new().expect("netlink socket in the host namespace");
        let (name, _) = net
            .wait_for_link(plan().mac, deadline())
            .await
            .expect("ENI link");
        assert_eq!(name, "eth1");
        net.configure(&plan(), deadline()).await
    })
    .expect("configure");

    if let Err(error) = connect_eventually(&peer, eni, None) {
        panic!(
            "peer cannot reach the ENI address after configure: {error}\n{}",
            diagnose(&subnet, &host, &peer)
        );
    }
    connect_eventually(&host, peer_address, Some("10.0.0.20".parse().unwrap()))
        .expect("traffic from the ENI address leaves through the ENI");
    connect_eventually(&host, peer_address, None)
        .expect("traffic from the primary address still works");
    assert!(
        subnet.dropped_packets() > 0,
        "the source/destination check is active (it dropped the primary's ARP answer for the ENI address)"
    );

    the_rule_makes_the_address_work(&subnet, &host, &peer, eni);

    host.run_async(|| async { NetlinkNetwork::new().unwrap().teardown(&plan()).await })
        .expect("teardown");
    assert!(
        connect(&peer, eni, None, MUST_FAIL).is_err(),
        "unreachable again after teardown"
    );
    connect_eventually(&peer, primary, None).expect("primary unaffected by teardown");
}

/// A subnet (with EC2's source/destination check) holding a host (`eth0`, 10.0.0.10, default route through the
/// gateway), a peer (10.0.0.30) and, parked in a namespace of its own, the ENI (`eth1`, 10.0.0.20) that is
/// hot-plugged into the host later.
fn subnet_with_host_peer_and_parked_eni() -> (Subnet, NetNs, NetNs, NetNs) {
    let subnet = Subnet::new(
        "bsub",
        "10.0.0.0/24".parse().unwrap(),
        test_mac([0xff, 0, 0, 1]),
    );
    let host = NetNs::new("bhost");
    let peer = NetNs::new("bpeer");
    let parking = NetNs::new("bpark");
    subnet.plug(
        &host,
        "eth0",
        test_mac(PRIMARY_MAC),
        "10.0.0.10".parse().unwrap(),
    );
    // The ENI starts detached (in a parking namespace) and is hot-plugged into the host later.
    subnet.plug(
        &parking,
        "eth1",
        test_mac(ENI_MAC),
        "10.0.0.20".parse().unwrap(),
    );
    subnet.plug(
        &peer,
        "eth0",
        test_mac([0, 0, 0, 0x30]),
        "10.0.0.30".parse().unwrap(),
    );
    subnet.enable_source_dest_check();
    host.ip(&["addr", "add", "10.0.0.10/24", "dev", "eth0"]);
    host.ip(&["link", "set", "eth0", "up"]);
    host.ip(&["route", "add", "default", "via", "10.0.0.1", "dev", "eth0"]);
    peer.ip(&["addr", "add", "10.0.0.30/24", "dev", "eth0"]);
    peer.ip(&["link", "set", "eth0", "up"]);

    (subnet, host, peer, parking)
}

/// Without the rule, answers from the ENI address leave by the primary interface and the check drops them: the
/// policy routing is what makes the address work. Configuring again restores it.
fn the_rule_makes_the_address_work(subnet: &Subnet, host: &NetNs, peer: &NetNs, eni: SocketAddrV4) {
    let dropped = subnet.dropped_packets();
    host.ip(&[
        "rule",
        "del",
        "from",
        "10.0.0.20",
        "lookup",
        "10001",
        "priority",
        "10001",
    ]);
    assert!(
        connect(peer, eni, None, MUST_FAIL).is_err(),
        "unreachable without the rule"
    );
    assert!(
        subnet.dropped_packets() > dropped,
        "the answer left by the wrong interface and was dropped"
    );
    host.run_async(|| async {
        NetlinkNetwork::new()
            .unwrap()
            .configure(&plan(), deadline())
            .await
    })
    .expect("configure restores the rule");
    connect_eventually(peer, eni, None).expect("reachable again");
}
