//! Shared checks of the end-to-end tests: what "converged" means on a simulated host, observed from outside berth
//! (moto's attachments, the host's addresses, routes, rules and mounts, ZooKeeper's claim nodes).

pub mod overlap;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use aws_sdk_ec2::types::Filter;
use berth_sim::ec2::BrokerResources;
use berth_sim::{layout, systemd_host, BerthBuild, Fleet, StateView};
use overlap::{Aim, Moment, Stay, Want};

/// The routing table and rule priority berth uses with the default numbering (10000 + 100 * card + index).
pub const TABLE: u32 = 10001;

/// Asserts that host `index` converged as broker `state.broker_id`: exactly one ENI and one volume of the cluster
/// attached to its instance (the id's own), the ENI address once on one link, one default route in the ENI's
/// table, one `from <ip>` rule, and one mount at or below the mount path (the host's own mount table).
pub async fn assert_converged(
    fleet: &Fleet,
    index: usize,
    state: &StateView,
) -> anyhow::Result<()> {
    let host = fleet.host(index)?;
    let id = state.broker_id.context("no broker id")?;
    let resources = fleet
        .resources()
        .get(id as usize)
        .context("unknown broker id")?
        .clone();
    ensure!(
        resources.az == host.az,
        "host {index} in zone {} became broker {id} of zone {}",
        host.az,
        resources.az
    );
    assert_attached_only(fleet, index, &resources).await?;
    assert_routed(fleet, index, &resources)?;
    let mounts = host.broker_mounts();
    ensure!(
        mounts.len() == 1,
        "host {index}: {} mounts at or below the mount path: {mounts:?}",
        mounts.len()
    );
    Ok(())
}

/// Asserts that EC2 shows exactly the id's ENI and volume of the cluster attached to host `index`'s instance.
async fn assert_attached_only(
    fleet: &Fleet,
    index: usize,
    resources: &BrokerResources,
) -> anyhow::Result<()> {
    let host = fleet.host(index)?;
    let client = fleet.ec2().client();
    let by_instance = Filter::builder()
        .name("attachment.instance-id")
        .values(&host.instance.id)
        .build();
    let cluster = Filter::builder()
        .name(format!("tag:{}", layout::CLUSTER_TAG))
        .values(&fleet.options().cluster)
        .build();
    let enis = client
        .describe_network_interfaces()
        .filters(by_instance.clone())
        .filters(cluster.clone())
        .send()
        .await?;
    let eni_ids: Vec<&str> = enis
        .network_interfaces()
        .iter()
        .filter_map(|e| e.network_interface_id())
        .collect();
    ensure!(
        eni_ids == [resources.eni_id.as_str()],
        "host {index}: ENIs attached {eni_ids:?}, want [{}]",
        resources.eni_id
    );
    let volumes = client
        .describe_volumes()
        .filters(by_instance)
        .filters(cluster)
        .send()
        .await?;
    let volume_ids: Vec<&str> = volumes
        .volumes()
        .iter()
        .filter_map(|v| v.volume_id())
        .collect();
    ensure!(
        volume_ids == [resources.volume_id.as_str()],
        "host {index}: volumes attached {volume_ids:?}, want [{}]",
        resources.volume_id
    );
    Ok(())
}

/// Asserts that inside host `index` the ENI's address is on one link (not eth0), its table has one default
/// route and one `from <ip>` rule leads there.
fn assert_routed(fleet: &Fleet, index: usize, resources: &BrokerResources) -> anyhow::Result<()> {
    let ip = resources.ip.to_string();
    let addresses = fleet.ip_on(index, &["-j", "addr", "show"])?;
    let addresses: serde_json::Value = serde_json::from_str(&addresses)?;
    let mut holders: Vec<String> = Vec::new();
    for link in addresses.as_array().into_iter().flatten() {
        for address in link["addr_info"].as_array().into_iter().flatten() {
            if address["local"].as_str() == Some(ip.as_str()) {
                holders.push(link["ifname"].as_str().unwrap_or_default().to_owned());
            }
        }
    }
    ensure!(
        holders.len() == 1 && holders[0] != "eth0",
        "host {index}: address {} on {holders:?}",
        resources.ip
    );
    let routes = fleet.ip_on(index, &["-j", "route", "show", "table", &TABLE.to_string()])?;
    let routes: serde_json::Value = serde_json::from_str(&routes)?;
    let defaults = routes
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["dst"].as_str() == Some("default"))
        .count();
    ensure!(
        defaults == 1,
        "host {index}: {defaults} default routes in table {TABLE}: {routes}"
    );
    let rules = fleet.ip_on(index, &["-j", "rule", "show"])?;
    let rules: serde_json::Value = serde_json::from_str(&rules)?;
    let from_eni = rules
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["src"].as_str() == Some(resources.ip.to_string().as_str()))
        .count();
    ensure!(
        from_eni == 1,
        "host {index}: {from_eni} rules from {}: {rules}",
        resources.ip
    );
    Ok(())
}

/// Asserts the states hold distinct broker ids covering exactly `expected` ids.
pub fn assert_unique_ids(states: &[StateView], expected: usize) -> anyhow::Result<()> {
    let ids: BTreeSet<u32> = states.iter().filter_map(|s| s.broker_id).collect();
    ensure!(
        ids.len() == expected && states.len() == expected,
        "ids {ids:?} from {} hosts",
        states.len()
    );
    Ok(())
}

/// The ids claimed now in ZooKeeper (the claim nodes under the cluster's claims node, in id order), read by
/// berth-zk's read-only lister through [`berth_sim::claims`].
pub async fn claimed_ids(fleet: &Fleet) -> anyhow::Result<Vec<String>> {
    let claims = berth_sim::claims::held_in_zookeeper(fleet)
        .await
        .context("claimed_ids reads the zookeeper backend's claims")?;
    Ok(claims
        .iter()
        .map(|claim| claim.broker_id.to_string())
        .collect())
}

/// Waits for every host in `hosts` to be Healthy and returns their states in order.
pub async fn all_healthy(
    fleet: &Fleet,
    hosts: &[usize],
    timeout: Duration,
) -> anyhow::Result<Vec<StateView>> {
    let mut states = Vec::new();
    for &host in hosts {
        states.push(fleet.wait_healthy(host, timeout).await?);
    }
    Ok(states)
}

/// Asserts that host `index` runs berth as shipped and as an operator installs it: the daemon answering `/state`
/// (`state`, read from it) reports the `release` build (optimised, without crash points) and is berth.service's
/// main process, which runs `/usr/bin/berth` from the berth package, byte for byte the shipped build's binary.
pub fn assert_shipped(fleet: &Fleet, index: usize, state: &StateView) -> anyhow::Result<()> {
    let shipped = BerthBuild::Shipped;
    ensure!(
        state.build == shipped.reported(),
        "host {index}: berth reports the {:?} build, not the shipped {:?}",
        state.build,
        shipped.reported()
    );
    let host = fleet.host(index)?;
    let container = host.container();
    let pid = systemd_host::main_pid(container, systemd_host::BERTH_UNIT)?
        .with_context(|| format!("host {index}: berth.service has no main process"))?;
    ensure!(
        state.pid == pid,
        "host {index}: /state answered from pid {}, berth.service's main process is {pid}",
        state.pid
    );
    const INSTALLED: &str = "/usr/bin/berth";
    let exe = container.exec(&["readlink", &format!("/proc/{pid}/exe")])?;
    ensure!(
        exe.trim() == INSTALLED,
        "host {index}: berth.service runs {exe:?}"
    );
    let owner = container.exec(&["dpkg-query", "--search", INSTALLED])?;
    ensure!(
        owner.trim() == format!("berth: {INSTALLED}"),
        "host {index}: {INSTALLED} belongs to {owner:?}"
    );
    let binary = shipped.berth()?;
    let same = std::fs::read(container.path(INSTALLED))? == std::fs::read(&binary)?;
    ensure!(
        same,
        "host {index}: {INSTALLED} differs from the shipped {}",
        binary.display()
    );
    Ok(())
}

/// A file under the host's mount root, written by a test before a kill and read back after a replacement.
pub fn data_path(fleet: &Fleet, index: usize) -> anyhow::Result<std::path::PathBuf> {
    Ok(fleet.host(index)?.mount_path().join("data/e2e-record.txt"))
}

/// Writes a record naming broker `id` on host `index`'s volume.
pub fn write_record(fleet: &Fleet, index: usize, id: u32) -> anyhow::Result<String> {
    let path = data_path(fleet, index)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let record = format!("record of broker {id} written by host {index}");
    // Synced, as an acknowledged write is: a host's death is a power loss, which takes what is only cached.
    let mut file = std::fs::File::create(&path)?;
    std::io::Write::write_all(&mut file, record.as_bytes())?;
    file.sync_all()?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(record)
}

/// The process id (as this machine numbers it) of Kafka on host `index`, if it runs: `kafka.service`'s main
/// process.
pub fn kafka_pid(fleet: &Fleet, index: usize) -> anyhow::Result<Option<i32>> {
    use berth_sim::systemd_host::{main_pid, outer_pid, KAFKA_UNIT};
    let host = fleet.host(index)?;
    let container = host.container();
    Ok(main_pid(container, KAFKA_UNIT)?
        .and_then(|inner| outer_pid(container, inner))
        .map(|pid| pid as i32))
}

/// True while process `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
    })
}

/// Every host's `/state` now, read all at once (None: not answering yet), each with the moment it was read.
pub async fn read_states(
    fleet: &Fleet,
    hosts: &[usize],
) -> anyhow::Result<Vec<(Option<StateView>, Moment)>> {
    let mut reads = tokio::task::JoinSet::new();
    for (order, &index) in hosts.iter().enumerate() {
        let address = fleet.host(index)?.state_address();
        reads.spawn(async move {
            let before = overlap::now_ms();
            let view = berth_sim::state::fetch_state(address).await.ok();
            (order, view, Moment::since(before))
        });
    }
    let mut views = vec![(None, Moment::since(0)); hosts.len()];
    while let Some(read) = reads.join_next().await {
        let (order, view, moment) = read?;
        views[order] = (view, moment);
    }
    Ok(views)
}

/// Every host's stays in Claim on the wall clock, from a read of its `/state` now (a host that does not answer
/// is an error).
pub async fn claim_stays(fleet: &Fleet, hosts: &[usize]) -> anyhow::Result<Vec<Stay>> {
    let mut stays = Vec::new();
    for ((view, read), &index) in read_states(fleet, hosts).await?.into_iter().zip(hosts) {
        let view = view.with_context(|| format!("host {index}'s /state"))?;
        stays.extend(overlap::stays(index, &view, read, overlap::CLAIM));
    }
    Ok(stays)
}

/// The client addresses of the sessions ZooKeeper's servers list now (`cons` on each server that answers).
pub fn zookeeper_session_clients(zk: &berth_testkit::zk::ZooKeeper) -> BTreeSet<std::net::IpAddr> {
    (0..zk.len())
        .filter_map(|node| zk.four_letter(node, "cons").ok())
        .flat_map(|answer| overlap::session_clients(&answer))
        .collect()
}

/// Where a fault aimed by [`while_claiming`] landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Landed {
    /// When the fault took.
    pub at: Moment,
    /// The hosts seen claiming just before.
    pub claiming: Vec<usize>,
    /// Those of them ZooKeeper listed a session from.
    pub in_zookeeper: Vec<usize>,
}

/// Runs `fault` as soon as `/state` shows enough of `hosts` claiming, enough of them with a session ZooKeeper
/// lists (from the host's own address, [`Want`]). Fails when every host has claimed first, or after `timeout`.
pub async fn while_claiming(
    fleet: &Fleet,
    hosts: &[usize],
    want: Want,
    timeout: Duration,
    fault: impl FnOnce(),
) -> anyhow::Result<Landed> {
    let zk = fleet.zookeeper().context("no ZooKeeper ensemble")?;
    let addresses: Vec<std::net::IpAddr> = hosts
        .iter()
        .map(|&index| fleet.host(index).map(|host| host.ip.into()))
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    loop {
        let clients = tokio::task::block_in_place(|| zookeeper_session_clients(zk));
        let with_session: Vec<bool> = addresses.iter().map(|ip| clients.contains(ip)).collect();
        let views: Vec<Option<StateView>> = read_states(fleet, hosts)
            .await?
            .into_iter()
            .map(|(view, _)| view)
            .collect();
        match overlap::aim(&views, &with_session, want) {
            Aim::Now {
                claiming,
                in_zookeeper,
            } => {
                let before = overlap::now_ms();
                fault();
                let at = Moment::since(before);
                let named =
                    |orders: Vec<usize>| orders.into_iter().map(|order| hosts[order]).collect();
                return Ok(Landed {
                    at,
                    claiming: named(claiming),
                    in_zookeeper: named(in_zookeeper),
                });
            }
            Aim::Missed => anyhow::bail!("every host claimed before {want:?} was seen"),
            Aim::Wait => {}
        }
        ensure!(
            started.elapsed() < timeout,
            "{want:?} not seen within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// berth.service's secrets drop-in exactly as docs/operations.md gives it: the code block its path heads, each line
/// unindented, so the secured e2e installs the operator's example as written.
pub fn documented_secrets_dropin() -> anyhow::Result<String> {
    // The block's header line: a comment naming where the drop-in goes.
    let header = format!("# {}", berth_testkit::kafka::security::BERTH_SECRETS_DROPIN);
    let path = berth_testkit::workspace_root().join("docs/operations.md");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    let block: Vec<&str> = text
        .lines()
        .map(str::trim)
        .skip_while(|line| *line != header)
        .take_while(|line| *line != "```")
        .collect();
    ensure!(
        block.iter().any(|line| line.starts_with("LoadCredential=")),
        "docs/operations.md has no drop-in headed {header}"
    );
    Ok(block.join("\n") + "\n")
}
