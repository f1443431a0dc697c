//! berth's two listeners as another machine in the VPC sees them: with the default configuration, `/health` and
//! `/metrics` answer on every address, and `/state` (which names the instance, its ENI, berth's pid and AWS's
//! error messages) answers on loopback only. Two network namespaces joined by a veth pair play the broker host
//! and a client on its subnet; the listeners are bound by the daemon's own code from `HealthConfig::default()`.

use std::net::{Ipv4Addr, SocketAddr};

use berth::health::{self, Endpoint};
use berth_testkit::netns::{veth_pair, NetNs};
use tokio::sync::watch;

const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);

/// The two namespaces, addressed and up.
fn host_and_client() -> (NetNs, NetNs) {
    let host = NetNs::new("bth-ep-host");
    let client = NetNs::new("bth-ep-client");
    veth_pair(&host, "eth0", None, &client, "eth0", None);
    for (ns, ip) in [(&host, HOST_IP), (&client, CLIENT_IP)] {
        ns.ip(&["address", "add", &format!("{ip}/24"), "dev", "eth0"]);
        ns.ip(&["link", "set", "eth0", "up"]);
    }
    (host, client)
}

/// The status code of GET `path` at `address`, or the connection's error.
async fn get(address: SocketAddr, path: &str) -> Result<u16, std::io::ErrorKind> {
    health::get(address, path)
        .await
        .map(|(status, _)| status)
        .map_err(|error| error.kind())
}

#[test]
fn state_is_refused_from_a_non_loopback_address_by_default() {
    if !berth_testkit::require_root("state_is_refused_from_a_non_loopback_address_by_default") {
        return;
    }
    let (host, client) = host_and_client();
    let config = berth_config::HealthConfig::default();
    let (public_port, state_port) = (config.listen.port(), config.state_listen.port());
    // The daemon's listeners, bound in the host's namespace as `berth run` binds them.
    let (stop, stopped) = watch::channel(false);
    let (bound_tx, bound_rx) = std::sync::mpsc::channel();
    let server = host.spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let (_feed_tx, feed) = watch::channel(None);
                let servers = health::start(&config, &Endpoint::new(feed), stopped).await;
                bound_tx.send(servers.is_ok()).unwrap();
                for server in servers.unwrap() {
                    server.await.unwrap();
                }
            })
    });
    assert!(bound_rx.recv().unwrap(), "the listeners bind");

    let from_the_subnet = client.run_async(move || async move {
        (
            get(SocketAddr::from((HOST_IP, public_port)), "/health").await,
            get(SocketAddr::from((HOST_IP, public_port)), "/metrics").await,
            get(SocketAddr::from((HOST_IP, public_port)), "/state").await,
            get(SocketAddr::from((HOST_IP, state_port)), "/state").await,
        )
    });
    let on_the_host = host.run_async(move || async move {
        get(
            SocketAddr::from((Ipv4Addr::LOCALHOST, state_port)),
            "/state",
        )
        .await
    });
    stop.send(true).unwrap();
    server.join().unwrap();

    let (health, metrics, state_public, state_local) = from_the_subnet;
    assert_eq!(
        health,
        Ok(503),
        "/health answers the subnet (not healthy yet)"
    );
    assert_eq!(metrics, Ok(200), "/metrics answers the subnet");
    assert_eq!(
        state_public,
        Ok(404),
        "the public listener does not serve /state"
    );
    assert_eq!(
        state_local,
        Err(std::io::ErrorKind::ConnectionRefused),
        "the /state listener is not reachable from the subnet"
    );
    assert_eq!(
        on_the_host,
        Ok(200),
        "/state answers on the host's loopback"
    );
}
