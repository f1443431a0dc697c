//! One simulated broker host: how it is provisioned (an instance in moto, a network namespace with its primary
//! interface in the zone's bridge, its own IMDSv2 endpoint, device and sysfs trees, and a systemd container booted
//! in that namespace) and how it dies (as a dead instance does: power lost, so its volumes keep only what had reached
//! them, every process killed, its mounts and devices gone, its instance terminated in moto).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_testkit::aws::{Imds, ImdsHost, ImdsInterface};
use berth_testkit::blockdev::FakeDeviceTree;

use super::{io_error, lock, Fleet, FleetError, Inner};
use crate::container::Container;
use crate::ec2::Instance;
use crate::{layout, region, sys, systemd_host};

/// `storage.mount_path` on a host (the production default).
const MOUNT_PATH: &str = "/var/lib/kafka";

/// The binaries a host runs: berth and the Kafka stand-in.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `berth`.
    pub berth: PathBuf,
    /// `kafka-standin`.
    pub standin: PathBuf,
}

impl Binaries {
    /// berth of `build` ([`super::BerthBuild::berth`]), and the stand-in next to the running executable
    /// (`target/<profile>/`, or its parent for tests and benches) or under the workspace's `target/debug/`;
    /// `BERTHSIM_BIN_DIR` overrides.
    pub fn locate(build: super::BerthBuild) -> Result<Self, FleetError> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        if let Some(dir) = std::env::var_os("BERTHSIM_BIN_DIR") {
            dirs.push(dir.into());
        }
        if let Ok(exe) = std::env::current_exe() {
            if let Some(dir) = exe.parent() {
                dirs.push(dir.to_owned());
                if let Some(parent) = dir.parent() {
                    dirs.push(parent.to_owned());
                }
            }
        }
        dirs.push(berth_testkit::debug_dir());
        let standin = dirs
            .iter()
            .map(|dir| dir.join("kafka-standin"))
            .find(|path| path.is_file())
            .ok_or_else(|| FleetError::MissingBinary {
                name: "kafka-standin",
                looked: dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        Ok(Self {
            berth: build.berth()?,
            standin,
        })
    }
}

/// One simulated broker host.
#[derive(Debug)]
pub struct Host {
    /// Index in the fleet (also names its namespace and picks its primary address).
    pub index: usize,
    /// Zone index.
    pub az: usize,
    /// What it runs (by the group that launched it).
    pub role: super::HostRole,
    /// Network namespace name.
    pub ns: String,
    /// Primary address.
    pub ip: Ipv4Addr,
    /// Its instance in moto.
    pub instance: Instance,
    /// Its directory: `container/` (the overlay root and the console log of its container).
    pub dir: PathBuf,
    pub(super) tree: FakeDeviceTree,
    container: Container,
    imds: Mutex<Option<Imds>>,
    alive: AtomicBool,
    next_slot: AtomicU32,
}

impl Host {
    /// The host's device root as this machine reaches it (the container's own /dev).
    pub fn dev_root(&self) -> PathBuf {
        self.container.path("/dev")
    }

    /// `storage.sys_root` as this machine reaches it (bound into the container at [`systemd_host::SYS_ROOT`]).
    pub fn sys_root(&self) -> PathBuf {
        self.tree.sys_root()
    }

    /// `storage.mount_path` as this machine reaches it (inside the container).
    pub fn mount_path(&self) -> PathBuf {
        self.container.path(MOUNT_PATH)
    }

    /// The mounts at or below the broker's mount path in the host's mount table (one per mount).
    pub fn broker_mounts(&self) -> Vec<PathBuf> {
        sys::mount_entries(
            &PathBuf::from(format!("/proc/{}/mountinfo", self.container.leader())),
            Path::new(MOUNT_PATH),
        )
    }

    /// The host's systemd container.
    pub fn container(&self) -> &Container {
        &self.container
    }

    /// berth's health endpoint (`/health`, `/metrics`), reachable from the region namespace.
    pub fn health_address(&self) -> SocketAddr {
        SocketAddr::from((self.ip, layout::HEALTH_PORT))
    }

    /// berth's `/state` endpoint, reachable from the region namespace (the hosts' `health.state_listen` is not
    /// the loopback default).
    pub fn state_address(&self) -> SocketAddr {
        SocketAddr::from((self.ip, layout::STATE_PORT))
    }

    /// False once the host has been killed or removed.
    pub fn alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// berth's process id (as this machine numbers it) while it runs.
    pub fn berth_pid(&self) -> Option<u32> {
        systemd_host::main_pid(&self.container, systemd_host::BERTH_UNIT)
            .ok()
            .flatten()
            .and_then(|inner| systemd_host::outer_pid(&self.container, inner))
    }

    /// Runs `f` with the host's IMDS endpoint (absent once the host is gone).
    pub fn with_imds<T>(&self, f: impl FnOnce(&Imds) -> T) -> Option<T> {
        lock(&self.imds).as_ref().map(f)
    }

    /// The last lines of berth's and Kafka's journal, for error messages.
    pub(super) fn log_tail(&self) -> String {
        systemd_host::journal_tail(&self.container, 15)
    }

    /// The next free device slot (an ENI's link number, a volume's NVMe controller).
    pub(super) fn next_slot(&self) -> u32 {
        self.next_slot.fetch_add(1, Ordering::SeqCst)
    }

    /// Kills every process of the host: its container's PID 1 (and with it its PID namespace), then whatever
    /// else is left in its network namespace.
    fn kill_processes(&self) {
        self.container.kill();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let pids = sys::netns_pids(&self.ns);
            if pids.is_empty() || Instant::now() > deadline {
                break;
            }
            for pid in pids {
                sys::signal(pid, nix::sys::signal::Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the host as power loss does: not alive any more, no process, no mount.
    pub(super) fn stop(&self) {
        self.alive.store(false, Ordering::SeqCst);
        self.kill_processes();
        sys::unmount_all(&self.dir);
    }

    /// Removes what is left of a stopped host: its IMDS endpoint and its network namespace.
    pub(super) fn remove(&self) {
        lock(&self.imds).take();
        let _ = sys::ip(&["netns", "del", &self.ns]);
    }
}

impl Fleet {
    /// Creates a host (instance, namespace, primary interface, IMDS, trees, booted container) without starting
    /// berth, in the fleet's default role ([`super::FleetOptions::default_role`]).
    pub async fn prepare_host(&self, az: usize) -> Result<usize, FleetError> {
        self.prepare_host_as(az, self.options().default_role())
            .await
    }

    /// [`Fleet::prepare_host`] for a host of `role`.
    pub async fn prepare_host_as(
        &self,
        az: usize,
        role: super::HostRole,
    ) -> Result<usize, FleetError> {
        let inner = &self.inner;
        let _preparing = inner.preparing.lock().await;
        let index = lock(&inner.hosts).len();
        let ns = format!("{}-h{index}", inner.prefix);
        let ip = layout::host_ip(index, az);
        let hostname = format!("broker-host-{index}");
        let binaries = Binaries::locate(inner.options.berth)?;
        let instance = inner
            .ec2
            .run_instance(&inner.network, az, ip, &hostname)
            .await?;
        let provisioned = match provision(inner, index, az, &ns, &hostname, &instance, &binaries) {
            Ok(provisioned) => provisioned,
            Err(error) => {
                // An instance whose host could not be made is terminated, as a failed launch is: left running
                // it would hold the host's address, and every later launch of this index would be refused.
                let _ = sys::ip_in(inner.region.ns(), &["link", "del", &format!("h{index}")]);
                let _ = sys::ip(&["netns", "del", &ns]);
                let _ = inner.ec2.terminate(&instance.id).await;
                return Err(error);
            }
        };
        let Provisioned {
            dir,
            tree,
            imds,
            container,
        } = provisioned;
        lock(&inner.hosts).push(Arc::new(Host {
            index,
            az,
            role,
            ns,
            ip,
            instance,
            dir,
            tree,
            container,
            imds: Mutex::new(Some(imds)),
            alive: AtomicBool::new(true),
            next_slot: AtomicU32::new(1),
        }));
        Ok(index)
    }

    /// Kills host `index` as a dead instance dies: as power loss (its volumes keep only what had reached them,
    /// [`super::power_loss`]), every process in its namespace killed, its mounts gone, its devices unplugged,
    /// its instance terminated in moto. With `shutting_down`, the instance stays in
    /// `shutting-down` that long (`Some(Duration::ZERO)`: until
    /// [`berth_testkit::aws::StrictMoto::finish_termination`]), keeping its ENI and volume in use, as EC2 does.
    pub async fn kill_host(
        &self,
        index: usize,
        shutting_down: Option<Duration>,
    ) -> Result<(), FleetError> {
        let host = self.host(index)?;
        host.freeze();
        let at_death = self.inner.volumes_at_death(index)?;
        host.stop();
        self.inner.unplug_host(index);
        self.inner.restore_at_death(index, at_death)?;
        match shutting_down {
            Some(hold) => {
                let hold = (!hold.is_zero()).then_some(hold);
                let moto = &self.inner.moto;
                let instance = host.instance.id.clone();
                tokio::task::block_in_place(|| moto.begin_shutting_down(&instance, hold))?;
            }
            None => self.inner.ec2.terminate(&host.instance.id).await?,
        }
        host.remove();
        Ok(())
    }

    /// Removes a host whose berth has drained (exited): its processes, namespace and instance.
    pub async fn retire_host(&self, index: usize) -> Result<(), FleetError> {
        self.kill_host(index, None).await
    }
}

/// What a host is made of besides its instance.
struct Provisioned {
    dir: PathBuf,
    tree: FakeDeviceTree,
    imds: Imds,
    container: Container,
}

/// Makes host `index` for `instance`: its directory, device tree, namespace with its primary interface, IMDS and
/// booted systemd container.
fn provision(
    inner: &Inner,
    index: usize,
    az: usize,
    ns: &str,
    hostname: &str,
    instance: &Instance,
    binaries: &Binaries,
) -> Result<Provisioned, FleetError> {
    let dir = inner.work.join(format!("h{index}"));
    std::fs::create_dir_all(&dir).map_err(io_error(format!("host {index} directory")))?;
    let tree = FakeDeviceTree::new().map_err(io_error(format!("host {index} device tree")))?;
    plug_primary_interface(inner, index, az, ns, instance)?;
    let imds = start_imds(index, az, ns, hostname, instance)?;
    let hosts = layout::etc_hosts(
        hostname,
        layout::host_ip(index, az),
        inner.options.brokers,
        inner.options.zones,
    );
    let container = systemd_host::boot(
        ns,
        hostname,
        hosts,
        &dir,
        &tree.sys_root(),
        binaries,
        inner.kafka.as_ref(),
    )
    .map_err(|source| FleetError::Systemd {
        host: index,
        source,
    })?;
    Ok(Provisioned {
        dir,
        tree,
        imds,
        container,
    })
}

/// Host `index`'s network namespace `ns` with its primary interface `eth0` (the instance's MAC and address) on
/// zone `az`'s bridge, the IMDS address on its loopback, and its default route through the zone's gateway.
fn plug_primary_interface(
    inner: &Inner,
    index: usize,
    az: usize,
    ns: &str,
    instance: &Instance,
) -> Result<(), FleetError> {
    let ip = layout::host_ip(index, az);
    let port = format!("h{index}");
    let _ = sys::ip(&["netns", "del", ns]);
    sys::ip(&["netns", "add", ns])?;
    sys::ip_batch(
        inner.region.ns(),
        &[format!(
            "link add {port} type veth peer name eth0 netns {ns}"
        )],
    )?;
    sys::ip_batch(
        ns,
        &[
            "link set lo up".to_owned(),
            format!("addr add {}/32 dev lo", layout::IMDS_ADDR),
            format!("link set eth0 address {} up", instance.primary_mac),
            format!("addr add {ip}/24 dev eth0"),
            format!("route add default via {}", layout::gateway(az)),
        ],
    )?;
    inner.region.join_bridge(&port, az)?;
    inner.region.allow_source(&port, ip)?;
    Ok(())
}

/// The host's own IMDSv2 endpoint on 169.254.169.254 inside its namespace, saying `InService`.
fn start_imds(
    index: usize,
    az: usize,
    ns: &str,
    hostname: &str,
    instance: &Instance,
) -> Result<Imds, FleetError> {
    let imds_host = ImdsHost {
        instance_id: instance.id.clone(),
        region: layout::REGION.into(),
        availability_zone: layout::zone_name(az),
        hostname: hostname.to_owned(),
        interfaces: vec![ImdsInterface {
            mac: instance.primary_mac.clone(),
            device_number: 0,
            interface_id: instance.primary_eni.clone(),
        }],
        tags: BTreeMap::new(),
    };
    let imds_ns = ns.to_owned();
    let imds = std::thread::spawn(move || {
        region::enter_netns(&imds_ns)?;
        Imds::start(SocketAddr::from((layout::IMDS_ADDR, 80)), &imds_host)
    })
    .join()
    .map_err(|_| FleetError::Io {
        what: "IMDS thread".into(),
        source: std::io::Error::other("panicked"),
    })?
    .map_err(io_error(format!("IMDS of host {index}")))?;
    imds.set_lifecycle_state("InService");
    Ok(imds)
}
