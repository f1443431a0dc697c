//! Benchmark: from the ENI link's appearance to a routed, verified configuration.
//!
//! Each run takes a fresh network namespace with a primary interface, starts `NetlinkNetwork::apply` while the
//! ENI's link does not exist yet (so it parks on link events), then creates the link with the ENI's MAC through
//! rtnetlink and times from just before that request until `apply` returns: link event, four dumps, link up,
//! address, two routes, rule, and four read-back dumps that verify it. Prints p50 and max over the runs; the
//! final line is `route appear_to_routed_ms=<p50> ...`.

use std::time::{Duration, Instant};

use berth_core::facts::RoutePlan;
use berth_core::Deadline;
use berth_net::NetlinkNetwork;
use berth_testkit::netns::{in_fresh_netns, ip, test_mac};
use rtnetlink::LinkVeth;

const RUNS: usize = 20;

/// One run: milliseconds from the link's creation to the verified configuration, whether the waiter learned of
/// the link from an event (not from a dump), and how many netlink requests `apply` made.
fn run_once() -> (f64, bool, usize) {
    in_fresh_netns(|| async {
        let plan = RoutePlan {
            mac: test_mac([0, 0, 0, 0x20]),
            primary_mac: test_mac([0, 0, 0, 0x10]),
            address: "10.0.0.20/24".parse().unwrap(),
            gateway: "10.0.0.1".parse().unwrap(),
            table: 10001,
            rule_priority: 10001,
        };
        ip(&[
            "link",
            "add",
            "eth0",
            "address",
            &plan.primary_mac.to_string(),
            "type",
            "veth",
            "peer",
            "name",
            "eth0p",
        ]);
        ip(&["addr", "add", "10.0.0.10/24", "dev", "eth0"]);
        ip(&["link", "set", "eth0", "up"]);

        let net = NetlinkNetwork::new().expect("netlink socket");
        let (connection, handle, _) = rtnetlink::new_connection().expect("second netlink socket");
        tokio::spawn(connection);

        let waiter_plan = plan.clone();
        let configured = async move {
            let configured = net
                .apply(&waiter_plan, Deadline::after(Duration::from_secs(5)))
                .await;
            (Instant::now(), configured)
        };
        let hotplug = async {
            // Let the waiter dump the links and park on events: the link must be new to it.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let appeared = Instant::now();
            handle
                .link()
                .add(
                    LinkVeth::new("eth1", "eth1p")
                        .address(plan.mac.0.to_vec())
                        .build(),
                )
                .execute()
                .await
                .expect("create the ENI link");
            appeared
        };
        let ((routed, configured), appeared) = tokio::join!(configured, hotplug);
        let configured = configured.expect("configure");
        let dumps_before_change = configured
            .requests
            .iter()
            .take_while(|request| request.kind.starts_with("RTM_GET"))
            .filter(|request| request.kind == "RTM_GETLINK")
            .count();
        let millis = routed.duration_since(appeared).as_secs_f64() * 1000.0;
        (millis, dumps_before_change == 1, configured.requests.len())
    })
}

fn main() {
    if !berth_testkit::require_root("bench route") {
        println!(
            "route error=\"needs root\" {}",
            berth_testkit::bench::load_field()
        );
        std::process::exit(1);
    }
    let mut samples = Vec::with_capacity(RUNS);
    let mut by_event = 0;
    let mut requests = 0;
    for run in 0..RUNS {
        let (millis, event, count) = run_once();
        println!("run {run}: appear_to_routed_ms={millis:.3} via_event={event} requests={count}");
        samples.push(millis);
        by_event += usize::from(event);
        requests = count;
    }
    samples.sort_by(f64::total_cmp);
    let p50 = samples[samples.len() / 2];
    let max = samples[samples.len() - 1];
    println!(
        "route appear_to_routed_ms={p50:.3} p50_ms={p50:.3} max_ms={max:.3} runs={RUNS} via_event={by_event}/{RUNS} \
         requests={requests} target_ms=50 {}",
        berth_testkit::bench::load_field()
    );
}
