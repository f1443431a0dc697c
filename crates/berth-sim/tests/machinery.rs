//! The simulator's own machinery, without berth: hosts reach the region's servers through their zone bridge,
//! EC2's source/destination check drops spoofed traffic, and attachments made in moto appear in (and vanish
//! from) the host as a link with the ENI's MAC and a loop device behind the Nitro by-id link.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use berth_sim::{layout, security_groups, sys, Fleet, FleetOptions, Host};
use berth_testkit::aws::template::{self, ingress::Source};
use berth_testkit::aws::world;

fn poll(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < timeout,
            "{what} not seen within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `command` inside host namespace `ns`, returning its stdout.
fn in_host(ns: &str, command: &[&str]) -> Result<String, sys::SysError> {
    let mut all = vec!["netns", "exec", ns];
    all.extend_from_slice(command);
    sys::run("ip", &all)
}

/// Reads `path` from the host's own IMDS (IMDSv2: `header` carries the session token).
fn imds_in(ns: &str, header: &str, path: &str) -> Result<String, sys::SysError> {
    let url = format!("http://169.254.169.254/latest/{path}");
    in_host(ns, &["curl", "-sf", "-H", header, &url])
}

#[test]
fn hosts_reach_servers_and_attachments_hot_plug() {
    if !berth_testkit::require_root("hosts_reach_servers_and_attachments_hot_plug") {
        return;
    }
    let options = FleetOptions {
        eni_delay: Duration::from_millis(200),
        volume_delay: Duration::from_millis(200),
        ..FleetOptions::default()
    };
    berth_sim::with_fleet(options, |fleet| async move {
        let index = fleet.prepare_host(0).await?;
        let host = fleet.host(index)?;
        let zk = fleet
            .zookeeper()
            .context("the fleet's ZooKeeper ensemble")?
            .client_address(0);
        reaches_the_region(&host, zk)?;
        reads_its_own_imds_and_reaches_ec2(&fleet, &host)?;
        source_check_drops_spoofing(&fleet, &host, zk)?;
        security_groups_filter_new_connections(&fleet, &host)?;
        attachments_hot_plug(&fleet, index, &host).await?;
        killed_with_a_shutting_down_hold(&fleet, index, &host).await
    })
    .expect("fleet scenario");
}

async fn eni_attachment(client: &aws_sdk_ec2::Client, eni: &str) -> anyhow::Result<String> {
    let out = client
        .describe_network_interfaces()
        .network_interface_ids(eni)
        .send()
        .await?;
    out.network_interfaces()
        .first()
        .and_then(|e| e.attachment())
        .and_then(|a| a.attachment_id())
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("{eni} has no attachment"))
}

/// A host reaches ZooKeeper (in the region namespace) through its zone bridge and gateway.
fn reaches_the_region(host: &Host, zk: SocketAddr) -> anyhow::Result<()> {
    let probe = format!(
        "exec 3<>/dev/tcp/{}/{}; echo srvr >&3; cat <&3",
        zk.ip(),
        zk.port()
    );
    let out = in_host(&host.ns, &["bash", "-c", &probe])?;
    assert!(out.contains("Mode:"), "srvr from the host: {out}");

    Ok(())
}

/// Inside the host: its own IMDSv2 (token, then the instance id) and the EC2 endpoint berth is given.
fn reads_its_own_imds_and_reaches_ec2(fleet: &Fleet, host: &Host) -> anyhow::Result<()> {
    let token = in_host(
        &host.ns,
        &[
            "curl",
            "-sf",
            "-X",
            "PUT",
            "-H",
            "X-aws-ec2-metadata-token-ttl-seconds: 60",
            "http://169.254.169.254/latest/api/token",
        ],
    )?;
    let header = format!("X-aws-ec2-metadata-token: {}", token.trim());
    let instance = imds_in(&host.ns, &header, "meta-data/instance-id")?;
    assert_eq!(instance.trim(), host.instance.id);
    let zone = imds_in(&host.ns, &header, "meta-data/placement/availability-zone")?;
    assert_eq!(zone.trim(), layout::zone_name(0));
    let query = format!(
        "{}/?Action=DescribeAvailabilityZones&Version=2016-11-15",
        fleet.proxy().url()
    );
    let zones = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &host.ns,
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &query,
        ])
        .output()?;
    assert!(
        !String::from_utf8_lossy(&zones.stdout).starts_with('0'),
        "the EC2 endpoint is unreachable from the host"
    );

    Ok(())
}

/// The source/destination check drops what leaves the host with an address that is not the port's.
fn source_check_drops_spoofing(fleet: &Fleet, host: &Host, zk: SocketAddr) -> anyhow::Result<()> {
    let before = fleet.region().dropped_by_source_check();
    sys::ip_in(&host.ns, &["addr", "add", "10.0.1.250/24", "dev", "eth0"])?;
    let spoof = format!("exec 3<>/dev/tcp/{}/{}", zk.ip(), zk.port());
    let spoofed = std::process::Command::new("ip")
        .args(["netns", "exec", &host.ns, "timeout", "2", "bash", "-c"])
        .arg(format!(
            "ip route replace default via {} src 10.0.1.250; {spoof}",
            layout::gateway(0)
        ))
        .output()?;
    assert!(
        !spoofed.status.success(),
        "a spoofed connection must not get through"
    );
    assert!(
        fleet.region().dropped_by_source_check() > before,
        "the bridge filter counted no drop"
    );
    sys::ip_in(
        &host.ns,
        &[
            "route",
            "replace",
            "default",
            "via",
            &layout::gateway(0).to_string(),
            "src",
            &host.ip.to_string(),
        ],
    )?;
    sys::ip_in(&host.ns, &["addr", "del", "10.0.1.250/24", "dev", "eth0"])?;

    Ok(())
}

/// A listener on `address` inside `ns`, or `None` when something on the host already listens there.
fn listen(ns: &str, address: SocketAddr) -> std::io::Result<Option<std::net::TcpListener>> {
    match berth_sim::region::bind_in_netns(ns, address) {
        Ok(listener) => Ok(Some(listener)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether a TCP connection from the region namespace (the test's threads live there) to `address` opens.
fn connects(address: SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok()
}

/// The template's security group enforced between the region and a host: the port open to `ClientCidr`
/// connects, the self-referencing controller port is refused (and counted) until the region's address is a
/// member too, and a port the template never opens is refused to members as well.
fn security_groups_filter_new_connections(fleet: &Fleet, host: &Host) -> anyhow::Result<()> {
    let rules = security_groups::template_rules(&template::shipped(), "sim", 3)?;
    let open_to_cidr = |port: u16| {
        rules.iter().any(|r| {
            matches!(r.source, Source::Cidr(_)) && (r.from_port..=r.to_port).contains(&port)
        })
    };
    // the controller port: open between members only
    let by_group = rules.iter().find(|r| {
        matches!(&r.source, Source::Group(g) if *g == r.group) && !open_to_cidr(r.from_port)
    });
    let by_cidr = rules.iter().find(|r| matches!(r.source, Source::Cidr(_)));
    let (by_group, by_cidr) = (
        by_group.context("a self-referencing rule")?,
        by_cidr.context("a CIDR rule")?,
    );
    let group = by_group.group.clone();
    let closed = (1024..u16::MAX)
        .find(|p| !rules.iter().any(|r| (r.from_port..=r.to_port).contains(p)))
        .context("a port no rule opens")?;
    let region = fleet.region();
    region.enforce_security_groups(&rules)?;
    region.join_security_group(&group, &[host.ip])?;
    let listeners: Vec<_> = [by_cidr.from_port, by_group.from_port, closed]
        .into_iter()
        .map(|port| listen(&host.ns, SocketAddr::from((host.ip, port))))
        .collect::<Result<_, _>>()?;
    let at = |port| SocketAddr::from((host.ip, port));
    assert!(
        connects(at(by_cidr.from_port)),
        "{} is open to ClientCidr",
        by_cidr.from_port
    );
    let refused = region.refused_by_security_group(&group);
    assert!(
        !connects(at(by_group.from_port)),
        "{} is open only to members",
        by_group.from_port
    );
    assert!(
        region.refused_by_security_group(&group) > refused,
        "the drop rule counted no refusal"
    );
    region.join_security_group(&group, &[layout::gateway(host.az)])?;
    assert!(
        connects(at(by_group.from_port)),
        "a member reaches {}",
        by_group.from_port
    );
    let refused = region.refused_by_security_group(&group);
    assert!(!connects(at(closed)), "{closed} is opened by no rule");
    assert!(
        region.refused_by_security_group(&group) > refused,
        "the drop rule counted no refusal"
    );
    region.lift_security_groups();
    assert!(connects(at(closed)), "lifted, the filter is gone");
    drop(listeners);
    Ok(())
}

/// Attach in moto: after the delay, a link with the ENI's MAC and the volume's by-id link appear; detach in moto:
/// both disappear and the loop device is released.
async fn attachments_hot_plug(fleet: &Fleet, index: usize, host: &Host) -> anyhow::Result<()> {
    // Attach in moto: after the delay, a link with the ENI's MAC and the volume's by-id link appear.
    let id0 = fleet.resources()[0].clone();
    let client = fleet.ec2().client().clone();
    let attached = Instant::now();
    world::attach_eni(&client, &id0.eni_id, &host.instance.id, 1)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    world::attach_volume(&client, &id0.volume_id, &host.instance.id, "/dev/xvdf")
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let ns = host.ns.clone();
    let mac = id0.mac.clone();
    let backing = format!("{}.img", id0.volume_id);
    let by_id = host.dev_root().join("disk/by-id").join(format!(
        "nvme-Amazon_Elastic_Block_Store_{}",
        id0.volume_id.replace('-', "")
    ));
    let (ns2, mac2, by_id2) = (ns.clone(), mac.clone(), by_id.clone());
    tokio::task::spawn_blocking(move || {
        poll("ENI link", Duration::from_secs(5), || {
            sys::ip_in(&ns2, &["-br", "link"])
                .unwrap_or_default()
                .contains(&mac2)
        });
        poll("volume device", Duration::from_secs(5), || by_id2.exists());
    })
    .await?;
    assert!(
        attached.elapsed() >= Duration::from_millis(200),
        "appeared before the configured delay"
    );
    // The by-id link leads to a block device with the numbers of the loop device over the volume's file.
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let device = std::fs::metadata(&by_id)?;
    assert!(
        device.file_type().is_block_device(),
        "by-id leads to {device:?}"
    );
    let loops = sys::run("losetup", &["-a"])?;
    let loop_device = loops
        .lines()
        .find(|line| line.contains(&backing))
        .and_then(|line| line.split(':').next())
        .expect("a loop device over the volume's backing file");
    assert_eq!(
        device.rdev(),
        std::fs::metadata(loop_device)?.rdev(),
        "by-id does not lead to {loop_device}"
    );
    assert_eq!(fleet.plugged_into(index).0, vec![id0.mac.clone()]);

    // Detach in moto: both disappear; the loop device is released.
    client
        .detach_network_interface()
        .attachment_id(eni_attachment(&client, &id0.eni_id).await?)
        .force(true)
        .send()
        .await?;
    client
        .detach_volume()
        .volume_id(&id0.volume_id)
        .instance_id(&host.instance.id)
        .send()
        .await?;
    tokio::task::spawn_blocking(move || {
        poll("ENI link removal", Duration::from_secs(5), || {
            !sys::ip_in(&ns, &["-br", "link"])
                .unwrap_or_default()
                .contains(&mac)
        });
        poll("volume removal", Duration::from_secs(5), || !by_id.exists());
        // The loop device over this volume's backing file is released (the backing file, the data, stays).
        poll("loop device release", Duration::from_secs(5), || {
            !sys::run("losetup", &["-a"])
                .unwrap_or_default()
                .contains(&backing)
        });
    })
    .await?;

    Ok(())
}

/// Killing the host with a shutting-down hold: its namespace goes, the instance stays shutting-down until the
/// hold ends.
async fn killed_with_a_shutting_down_hold(
    fleet: &Fleet,
    index: usize,
    host: &Host,
) -> anyhow::Result<()> {
    fleet.kill_host(index, Some(Duration::ZERO)).await?;
    assert_eq!(
        fleet.ec2().instance_state(&host.instance.id).await?,
        "shutting-down"
    );
    assert!(
        !sys::ip(&["netns", "list"])?.contains(&host.ns),
        "host namespace left behind"
    );
    fleet.moto().finish_termination(&host.instance.id)?;
    assert_eq!(
        fleet.ec2().instance_state(&host.instance.id).await?,
        "terminated"
    );
    Ok(())
}
