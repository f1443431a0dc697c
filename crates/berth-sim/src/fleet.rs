//! The simulated fleet: a region (namespace, bridges, strict moto behind the strict CloudFormation/Auto Scaling
//! endpoint and the fault proxy, and a ZooKeeper ensemble only when something needs one: the `zookeeper` claim
//! backend, or Kafka in ZooKeeper mode), the cluster's tagged ENIs and volumes, its stack
//! and Auto Scaling group, broker hosts running the real `berth run`, and the hot-plug that makes EC2's
//! attachments real inside the hosts. Hosts are launched by the simulated group ([`crate::asg`]), or by a test
//! that needs to place one by hand.
//!
//! A host is a network namespace with a primary interface in its zone's bridge, an instance in moto, its own
//! IMDSv2 endpoint on 169.254.169.254, a device tree and a sysfs tree. By default ([`HostKind::Systemd`]) it
//! boots real systemd in a container in that namespace ([`crate::container`]), where berth is installed from
//! its .deb and drives Kafka's unit ([`crate::systemd_host`]). A [`HostKind::Process`] host runs berth as a
//! plain process in the namespace (`nsenter --net`) with Kafka as its child, its mounts in the machine's mount
//! namespace. The hot-plug polls moto (the simulator may poll; berth may not) and, after the configured delay,
//! plugs a veth carrying the ENI's MAC or a loop device over the volume's backing file into the host the
//! resource is attached to; detach and terminate undo it.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use berth_config::ClaimBackend;
use berth_testkit::aws::{
    AwsEndpoint, Fault, FaultProxy, Imds, ImdsHost, ImdsInterface, StrictMoto,
};
use berth_testkit::blockdev::FakeDeviceTree;
use berth_testkit::kafka::security::{ClusterSecurity, SecuredListeners};
use berth_testkit::kafka::{Install, KafkaHarnessError};
use berth_testkit::zk::{ZkOptions, ZooKeeper};

use crate::asg::{self, AsgOptions};
use crate::container::Container;
use crate::devices::{self, PluggedVolume};
use crate::ec2::{Attachments, BrokerResources, Ec2, Instance};
use crate::layout;
use crate::region::{self, Region};
use crate::state::{self, StateView};
use crate::sys;
use crate::systemd_host;

/// How to build a fleet.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// Cluster name (ZooKeeper path, cluster tag).
    pub cluster: String,
    /// Availability zones (one subnet bridge each).
    pub zones: usize,
    /// Broker ids (each with a tagged ENI and volume in zone `id % zones`).
    pub brokers: u32,
    /// Delay between an ENI attach in moto and its link appearing in the host.
    pub eni_delay: Duration,
    /// Delay between a volume attach in moto and its block device appearing in the host.
    pub volume_delay: Duration,
    /// Startup delay of the Kafka stand-in.
    pub kafka_delay: Duration,
    /// berth's ZooKeeper session timeout.
    pub session_timeout: Duration,
    /// How often the hot-plug reads attachments from moto.
    pub hotplug_poll: Duration,
    /// Size of each volume's backing file.
    pub volume_mb: u64,
    /// Extra `BERTH_*` environment overrides for every berth.
    pub berth_env: Vec<(String, String)>,
    /// The Auto Scaling group and the stack's signal policy.
    pub asg: AsgOptions,
    /// What the hosts run berth on.
    pub host_kind: HostKind,
    /// What Kafka the systemd hosts run (process hosts always run the stand-in).
    pub kafka: SimKafka,
    /// Where the hosts' berths claim broker ids (`claim.backend`): `zookeeper` (the default, the card's claims)
    /// or `ec2` (the ENI attachment is the claim). With `ec2` and KRaft on systemd hosts the fleet starts no
    /// ZooKeeper at all.
    pub claim_backend: ClaimBackend,
    /// KRaft on systemd hosts: every listener secured (`SASL_SSL` with SCRAM-SHA-512, or mutual TLS, for clients
    /// and brokers; `SSL` with client certificates for controllers), with material the fleet makes
    /// ([`berth_testkit::kafka::security::ClusterSecurity`]); None: `PLAINTEXT`.
    pub security: Option<SecuredListeners>,
}

impl FleetOptions {
    /// Whether the fleet needs a ZooKeeper ensemble: for the `zookeeper` claim backend, or for Kafka in
    /// ZooKeeper mode (3.9, or the stand-in, which every process host runs).
    pub fn needs_zookeeper(&self) -> bool {
        self.claim_backend == ClaimBackend::Zookeeper
            || self.host_kind == HostKind::Process
            || self.kafka != SimKafka::Kraft
    }
}

/// The Kafka of the fleet's systemd hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimKafka {
    /// Apache Kafka 4.x (the newest in tests/kafka/versions), KRaft: every broker is also a controller, the
    /// voters are the ids' ENI addresses as berth renders them (the default).
    Kraft,
    /// Apache Kafka 3.9 in ZooKeeper mode, registering in the fleet's ensemble.
    ZooKeeperMode,
    /// `kafka-standin` (NOT Kafka): only where a test needs what real Kafka cannot give (a fixed start delay,
    /// a dozen brokers on two cores); named in docs/architecture.md.
    Standin,
}

impl SimKafka {
    /// `BERTHSIM_KAFKA` (`kraft`, `zookeeper` or `standin`), else [`SimKafka::Kraft`].
    pub fn from_env() -> Self {
        match std::env::var("BERTHSIM_KAFKA").as_deref() {
            Ok("zookeeper") => Self::ZooKeeperMode,
            Ok("standin") => Self::Standin,
            _ => Self::Kraft,
        }
    }

    /// The installed Apache Kafka this runs (None for the stand-in); a missing one names the setup command.
    pub fn install(self) -> Result<Option<Install>, KafkaHarnessError> {
        match self {
            Self::Kraft => Install::kraft().map(Some),
            Self::ZooKeeperMode => Install::zookeeper_mode().map(Some),
            Self::Standin => Ok(None),
        }
    }

    /// berth's `kafka.mode`.
    pub fn mode(self) -> &'static str {
        match self {
            Self::Kraft => "kraft",
            Self::ZooKeeperMode | Self::Standin => "zookeeper",
        }
    }
}

/// The KRaft cluster id of every simulated fleet (`cluster.kafka_cluster_id`; Kafka's own documentation example).
pub const KAFKA_CLUSTER_ID: &str = "MkU3OEVBNTcwNTJENDM2Qg";

/// What a simulated host runs berth on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKind {
    /// Real systemd in `systemd-nspawn`: berth installed from its .deb as `berth.service`, Kafka as
    /// `kafka.service` with berth's drop-in, driven through `systemctl` (the default).
    Systemd,
    /// berth as a plain process in the host's network namespace with Kafka as its child
    /// (`kafka.supervisor = "process"`); kept only where systemd cannot give what a test needs
    /// (docs/architecture.md).
    Process,
}

impl HostKind {
    /// `BERTHSIM_HOST_KIND` (`systemd` or `process`), else [`HostKind::Systemd`].
    pub fn from_env() -> Self {
        match std::env::var("BERTHSIM_HOST_KIND").as_deref() {
            Ok("process") => Self::Process,
            _ => Self::Systemd,
        }
    }
}

impl Default for FleetOptions {
    fn default() -> Self {
        Self {
            cluster: "sim".into(),
            zones: 3,
            brokers: 3,
            eni_delay: Duration::from_millis(300),
            volume_delay: Duration::from_millis(300),
            kafka_delay: Duration::ZERO,
            session_timeout: Duration::from_secs(4),
            hotplug_poll: Duration::from_millis(100),
            volume_mb: 64,
            berth_env: Vec::new(),
            asg: AsgOptions::default(),
            host_kind: HostKind::from_env(),
            kafka: SimKafka::from_env(),
            claim_backend: ClaimBackend::Zookeeper,
            security: None,
        }
    }
}

/// A fleet operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// A system tool failed.
    #[error(transparent)]
    Sys(#[from] sys::SysError),
    /// A secured fleet's security material could not be made.
    #[error("making the fleet's security material: {0}")]
    Security(String),
    /// The region could not be built.
    #[error(transparent)]
    Region(#[from] region::RegionError),
    /// An EC2 call failed.
    #[error(transparent)]
    Ec2(#[from] crate::ec2::Ec2Error),
    /// ZooKeeper did not start.
    #[error("ZooKeeper ensemble: {0}")]
    ZooKeeper(#[from] berth_testkit::zk::ZkHarnessError),
    /// moto did not start or refused a control request.
    #[error("strict moto: {0}")]
    Moto(#[from] berth_testkit::aws::MotoError),
    /// A server or file could not be set up.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// A binary the fleet runs was not built.
    #[error("binary {name} not found (looked in {looked}); run `cargo build --workspace --bins`")]
    MissingBinary {
        /// Its name.
        name: &'static str,
        /// Where we looked.
        looked: String,
    },
    /// A host did not reach the awaited condition in time (or its berth exited first).
    #[error("host {host}: {what} not reached within {waited:?}; last state: {last}")]
    Timeout {
        /// Host index.
        host: usize,
        /// The awaited condition.
        what: String,
        /// How long we waited.
        waited: Duration,
        /// berth's last `/state` (or why it could not be read), and the tail of its log.
        last: String,
    },
    /// The configuration written for berth does not validate.
    #[error("berth configuration of host {host}: {source}")]
    Config {
        /// Host index.
        host: usize,
        /// What berth-config rejected.
        source: berth_config::ConfigError,
    },
    /// There is no such host.
    #[error("no host {0}")]
    NoHost(usize),
    /// The fleet's Apache Kafka is not installed.
    #[error("the fleet's Kafka: {0}")]
    Kafka(#[from] KafkaHarnessError),
    /// A systemd host could not be booted, installed or driven.
    #[error("host {host}: {source}")]
    Systemd {
        /// Host index.
        host: usize,
        /// What failed.
        source: systemd_host::InstallError,
    },
}

fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> FleetError {
    let what = what.into();
    move |source| FleetError::Io { what, source }
}

/// The binaries a host runs: berth and the Kafka stand-in.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `berth`.
    pub berth: PathBuf,
    /// `kafka-standin`.
    pub standin: PathBuf,
}

impl Binaries {
    /// Finds them next to the running executable (`target/<profile>/`, or its parent for tests and benches) or
    /// under the workspace's `target/debug/`; `BERTHSIM_BIN_DIR` overrides.
    pub fn locate() -> Result<Self, FleetError> {
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
        let find = |name: &'static str| {
            dirs.iter()
                .map(|dir| dir.join(name))
                .find(|path| path.is_file())
                .ok_or_else(|| FleetError::MissingBinary {
                    name,
                    looked: dirs
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
        };
        Ok(Self {
            berth: find("berth")?,
            standin: find("kafka-standin")?,
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
    /// Network namespace name.
    pub ns: String,
    /// Primary address.
    pub ip: Ipv4Addr,
    /// Its instance in moto.
    pub instance: Instance,
    /// Its directory: `kafka/` (mount root), `berth.toml`, `berth.log`, `berth.properties` (process hosts);
    /// `container/` (the overlay root and the console log of systemd hosts).
    pub dir: PathBuf,
    tree: FakeDeviceTree,
    container: Option<Container>,
    imds: Mutex<Option<Imds>>,
    berth: Mutex<Option<Child>>,
    alive: AtomicBool,
    next_slot: AtomicU32,
}

impl Host {
    /// The host's device root as this machine reaches it (`storage.device_root` of a process host; the
    /// container's own /dev on a systemd host).
    pub fn dev_root(&self) -> PathBuf {
        match &self.container {
            Some(container) => container.path("/dev"),
            None => self.tree.device_root(),
        }
    }

    /// `storage.sys_root`.
    pub fn sys_root(&self) -> PathBuf {
        self.tree.sys_root()
    }

    /// `storage.mount_path` as this machine reaches it (inside the container on a systemd host).
    pub fn mount_path(&self) -> PathBuf {
        match &self.container {
            Some(container) => container.path(SYSTEMD_MOUNT_PATH),
            None => self.dir.join("kafka"),
        }
    }

    /// The mounts at or below the broker's mount path in the host's mount table (one per mount).
    pub fn broker_mounts(&self) -> Vec<PathBuf> {
        match &self.container {
            Some(container) => sys::mount_entries(
                &PathBuf::from(format!("/proc/{}/mountinfo", container.leader())),
                Path::new(SYSTEMD_MOUNT_PATH),
            ),
            None => sys::mount_entries(Path::new("/proc/self/mountinfo"), &self.mount_path()),
        }
    }

    /// The host's systemd container (None on a process host).
    pub fn container(&self) -> Option<&Container> {
        self.container.as_ref()
    }

    /// berth's configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("berth.toml")
    }

    /// berth's output (every run appended).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("berth.log")
    }

    /// berth's health endpoint, reachable from the region namespace.
    pub fn health_address(&self) -> SocketAddr {
        SocketAddr::from((self.ip, layout::HEALTH_PORT))
    }

    /// False once the host has been killed or removed.
    pub fn alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// berth's process id (as this machine numbers it) while it runs.
    pub fn berth_pid(&self) -> Option<u32> {
        match &self.container {
            Some(container) => systemd_host::main_pid(container, systemd_host::BERTH_UNIT)
                .ok()
                .flatten()
                .and_then(|inner| systemd_host::outer_pid(container, inner)),
            None => lock(&self.berth).as_ref().map(Child::id),
        }
    }

    /// Runs `f` with the host's IMDS endpoint (absent once the host is gone).
    pub fn with_imds<T>(&self, f: impl FnOnce(&Imds) -> T) -> Option<T> {
        lock(&self.imds).as_ref().map(f)
    }

    fn log_tail(&self) -> String {
        if let Some(container) = &self.container {
            return systemd_host::journal_tail(container, 15);
        }
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Debug, Clone)]
struct PluggedEni {
    host: usize,
    port: String,
    mac: String,
    ip: Ipv4Addr,
}

#[derive(Debug, Default)]
struct Plugged {
    enis: HashMap<String, PluggedEni>,
    volumes: HashMap<String, (usize, PluggedVolume)>,
    pending: HashMap<String, (usize, Instant)>,
}

struct Inner {
    options: FleetOptions,
    prefix: String,
    work: PathBuf,
    ec2: Ec2,
    subnets: Vec<String>,
    resources: Vec<BrokerResources>,
    hosts: Mutex<Vec<Arc<Host>>>,
    plugged: Mutex<Plugged>,
    proxy: FaultProxy,
    aws: AwsEndpoint,
    moto: StrictMoto,
    zk: Option<ZooKeeper>,
    region: Region,
    kafka: Option<Install>,
    security: Option<ClusterSecurity>,
    _work: tempfile::TempDir,
}

/// A running simulated fleet; everything it created is removed when it is dropped.
pub struct Fleet {
    inner: Arc<Inner>,
    hotplug: tokio::task::JoinHandle<()>,
}

/// The region namespace names of a run start with this, so leftovers of a crashed run are recognisable.
pub const NS_PREFIX: &str = "bsim";

/// `storage.mount_path` on a systemd host (the production default).
const SYSTEMD_MOUNT_PATH: &str = "/var/lib/kafka";

impl Fleet {
    /// Builds the region and the cluster's resources and starts the hot-plug. Must run on a thread (and tokio
    /// runtime) inside the region namespace: use [`crate::run_in_region`].
    pub async fn start(
        options: FleetOptions,
        prefix: &str,
        region: Region,
    ) -> Result<Self, FleetError> {
        let kafka = match options.host_kind {
            HostKind::Systemd => options.kafka.install()?,
            HostKind::Process => None,
        };
        let work = tempfile::Builder::new()
            .prefix(&format!("{prefix}-"))
            .tempdir()
            .map_err(io_error("work directory"))?;
        let zk = if options.needs_zookeeper() {
            Some(start_ensemble().await?)
        } else {
            None
        };
        let moto = StrictMoto::builder()
            .host(layout::moto_ip().into())
            .port(layout::MOTO_PORT)
            .start()?;
        let aws = AwsEndpoint::start(
            SocketAddr::from((layout::moto_ip(), 0)),
            layout::REGION,
            Some(moto.address()),
        )
        .map_err(io_error("CloudFormation/Auto Scaling endpoint"))?;
        aws.with(|plane| {
            let policy = asg::creation_policy(options.brokers, &options.asg);
            let stack = asg::stack_name(&options.cluster);
            plane.stacks.create(
                &stack,
                &[(asg::STACK_RESOURCE, Some(policy))],
                Instant::now(),
            );
            for az in 0..options.zones {
                plane
                    .autoscaling
                    .create_group(asg::group_spec(&options.cluster, az, &options.asg));
            }
        });
        let proxy = FaultProxy::start(SocketAddr::from((layout::moto_ip(), 0)), aws.address())
            .map_err(io_error("fault proxy"))?;
        let ec2 = Ec2::connect(moto.endpoint(), &options.cluster);
        let subnets = ec2.create_network(options.zones).await?;
        let resources = ec2
            .create_broker_resources(&subnets, options.brokers)
            .await?;
        let security = match options.security {
            Some(listeners) if kafka.is_some() && options.kafka == SimKafka::Kraft => {
                let addresses: Vec<std::net::IpAddr> = (0..options.brokers)
                    .map(|id| layout::eni_ip(id, options.zones).into())
                    .collect();
                Some(
                    ClusterSecurity::create(&work.path().join("pki"), listeners, &addresses)
                        .map_err(|error| FleetError::Security(error.to_string()))?,
                )
            }
            _ => None,
        };
        let volumes = work.path().join("volumes");
        std::fs::create_dir_all(&volumes).map_err(io_error("volumes directory"))?;
        for resource in &resources {
            devices::create_backing(
                &volumes.join(format!("{}.img", resource.volume_id)),
                options.volume_mb,
            )?;
        }
        let inner = Arc::new(Inner {
            prefix: prefix.to_owned(),
            work: work.path().to_owned(),
            ec2,
            subnets,
            resources,
            hosts: Mutex::new(Vec::new()),
            plugged: Mutex::new(Plugged::default()),
            proxy,
            aws,
            moto,
            zk,
            region,
            options,
            kafka,
            security,
            _work: work,
        });
        let hotplug = tokio::spawn(hotplug_loop(inner.clone()));
        Ok(Self { inner, hotplug })
    }

    /// The options the fleet was built with.
    pub fn options(&self) -> &FleetOptions {
        &self.inner.options
    }

    /// The Apache Kafka the systemd hosts run (None: the stand-in).
    pub fn kafka(&self) -> Option<&Install> {
        self.inner.kafka.as_ref()
    }

    /// The security of a secured fleet's Kafka (None: `PLAINTEXT`).
    pub fn security(&self) -> Option<&ClusterSecurity> {
        self.inner.security.as_ref()
    }

    /// The fleet's work directory (removed with the fleet).
    pub fn work_dir(&self) -> &Path {
        &self.inner.work
    }

    /// The cluster's ENIs and volumes by broker id.
    pub fn resources(&self) -> &[BrokerResources] {
        &self.inner.resources
    }

    /// The file behind volume `volume_id`: its data, which outlives every host it is plugged into.
    pub fn volume_backing(&self, volume_id: &str) -> PathBuf {
        self.inner.volume_backing(volume_id)
    }

    /// The simulator's EC2 client.
    pub fn ec2(&self) -> &Ec2 {
        &self.inner.ec2
    }

    /// The ZooKeeper ensemble (None: the fleet runs none, see [`FleetOptions::needs_zookeeper`]).
    pub fn zookeeper(&self) -> Option<&ZooKeeper> {
        self.inner.zk.as_ref()
    }

    /// The strict moto server (control endpoint: shutting-down holds).
    pub fn moto(&self) -> &StrictMoto {
        &self.inner.moto
    }

    /// The fault proxy every berth talks to (inject throttling, count calls).
    pub fn proxy(&self) -> &FaultProxy {
        &self.inner.proxy
    }

    /// The strict CloudFormation / Auto Scaling endpoint: the stack, the group, and the calls berth made.
    pub fn aws(&self) -> &AwsEndpoint {
        &self.inner.aws
    }

    /// The region namespace.
    pub fn region(&self) -> &Region {
        &self.inner.region
    }

    /// Host `index`.
    pub fn host(&self, index: usize) -> Result<Arc<Host>, FleetError> {
        lock(&self.inner.hosts)
            .get(index)
            .cloned()
            .ok_or(FleetError::NoHost(index))
    }

    /// Every host ever launched (dead ones included), by index.
    pub fn hosts(&self) -> Vec<Arc<Host>> {
        lock(&self.inner.hosts).clone()
    }

    /// Launches one host per entry of `zones` (zone indexes), then starts all their berths together.
    pub async fn launch_many(&self, zones: &[usize]) -> Result<Vec<usize>, FleetError> {
        let mut indexes = Vec::new();
        for &az in zones {
            indexes.push(self.prepare_host(az).await?);
        }
        for &index in &indexes {
            self.start_berth(index)?;
        }
        Ok(indexes)
    }

    /// Launches one host in zone `az` and starts its berth.
    pub async fn launch(&self, az: usize) -> Result<usize, FleetError> {
        let index = self.prepare_host(az).await?;
        self.start_berth(index)?;
        Ok(index)
    }

    /// Creates a host (instance, namespace, primary interface, IMDS, trees, configuration) without starting berth.
    pub async fn prepare_host(&self, az: usize) -> Result<usize, FleetError> {
        let inner = &self.inner;
        let index = lock(&inner.hosts).len();
        let ns = format!("{}-h{index}", inner.prefix);
        let ip = layout::host_ip(index, az);
        let hostname = format!("broker-host-{index}");
        let instance = inner
            .ec2
            .run_instance(&inner.subnets[az], ip, &hostname)
            .await?;
        let dir = inner.work.join(format!("h{index}"));
        std::fs::create_dir_all(dir.join("kafka"))
            .map_err(io_error(format!("host {index} directory")))?;
        let tree = FakeDeviceTree::new().map_err(io_error(format!("host {index} device tree")))?;
        let _ = sys::ip(&["netns", "del", &ns]);
        sys::ip(&["netns", "add", &ns])?;
        sys::ip_in(&ns, &["link", "set", "lo", "up"])?;
        sys::ip_in(
            &ns,
            &[
                "addr",
                "add",
                &format!("{}/32", layout::IMDS_ADDR),
                "dev",
                "lo",
            ],
        )?;
        let port = format!("h{index}");
        let region_ns = inner.region.ns();
        sys::ip_in(
            region_ns,
            &[
                "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ],
        )?;
        sys::ip_in(
            &ns,
            &[
                "link",
                "set",
                "eth0",
                "address",
                &instance.primary_mac,
                "up",
            ],
        )?;
        sys::ip_in(&ns, &["addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
        sys::ip_in(
            &ns,
            &[
                "route",
                "add",
                "default",
                "via",
                &layout::gateway(az).to_string(),
            ],
        )?;
        inner.region.join_bridge(&port, az)?;
        inner.region.allow_source(&port, ip)?;
        let imds_host = ImdsHost {
            instance_id: instance.id.clone(),
            region: layout::REGION.into(),
            availability_zone: layout::zone_name(az),
            hostname: hostname.clone(),
            interfaces: vec![ImdsInterface {
                mac: instance.primary_mac.clone(),
                device_number: 0,
                interface_id: instance.primary_eni.clone(),
            }],
            tags: BTreeMap::new(),
        };
        let imds_ns = ns.clone();
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
        let container = match inner.options.host_kind {
            HostKind::Systemd => Some(
                systemd_host::boot(
                    &ns,
                    &hostname,
                    &dir,
                    &tree.sys_root(),
                    &Binaries::locate()?,
                    inner.kafka.as_ref(),
                )
                .map_err(|source| FleetError::Systemd {
                    host: index,
                    source,
                })?,
            ),
            HostKind::Process => None,
        };
        let host = Arc::new(Host {
            index,
            az,
            ns,
            ip,
            instance,
            dir,
            tree,
            container,
            imds: Mutex::new(Some(imds)),
            berth: Mutex::new(None),
            alive: AtomicBool::new(true),
            next_slot: AtomicU32::new(1),
        });
        lock(&inner.hosts).push(host);
        Ok(index)
    }

    /// The `[storage]` and `[kafka]` sections of a host's berth.toml: production paths and the systemd supervisor
    /// on a systemd host; the fleet's trees and a child Kafka on a process host.
    fn storage_and_kafka(&self, host: &Host, binaries: &Binaries) -> String {
        if host.container.is_some() {
            let kafka = self.inner.options.kafka;
            // A real broker's controlled shutdown moves leadership away first: give it Kafka's own time.
            let stop_timeout = if self.inner.kafka.is_some() { 60 } else { 5 };
            let secured = self.inner.security.as_ref().map_or_else(String::new, |_| {
                format!(
                    "listener_name = \"INTERNAL\"\nformat_command = [\"systemd-run\", \"--wait\", \"--pipe\", \
                     \"--collect\", \"--quiet\", \"--service-type=exec\", \"{}\"]\n",
                    systemd_host::FORMAT_WRAPPER
                )
            });
            return format!(
                "[storage]\nsys_root = \"{}\"\nfilesystem = \"ext4\"\nformat_blank = true\n\n[kafka]\nmode = \"{}\"\nsupervisor = \"systemd\"\nquorum_voters = {}\nstop_timeout = \"{stop_timeout}s\"\n{secured}",
                systemd_host::SYS_ROOT,
                kafka.mode(),
                kafka == SimKafka::Kraft,
            );
        }
        let o = &self.inner.options;
        // The operator's own server.properties (what berth's overlay does not own); berth appends its overlay.
        let mut command = vec![binaries.standin.display().to_string()];
        if !o.kafka_delay.is_zero() {
            command.push("--start-delay".into());
            command.push(format!("{}ms", o.kafka_delay.as_millis()));
        }
        command.push(host.dir.join("server.properties").display().to_string());
        let command = command
            .iter()
            .map(|w| format!("{w:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            r#"[storage]
device_root = "{dev}"
sys_root = "{sys}"
mount_path = "{mount}"
filesystem = "ext4"
format_blank = true

[kafka]
mode = "zookeeper"
supervisor = "process"
command = [{command}]
overlay_path = "{overlay}"
stop_timeout = "5s"
"#,
            dev = host.dev_root().display(),
            sys = host.sys_root().display(),
            mount = host.mount_path().display(),
            overlay = host.dir.join("berth.properties").display(),
        )
    }

    /// The operator's `server.properties` on host `index` (what berth's overlay does not own): for real Kafka
    /// the listeners on every address (the ENI's appears later), KRaft's roles and controller listener or
    /// ZooKeeper's connect string, and replication settings that fit the fleet's size.
    fn server_properties(&self, index: usize, systemd: bool) -> String {
        let options = &self.inner.options;
        // Kafka in ZooKeeper mode (the only one that reads this) always has the fleet's ensemble.
        let zookeeper = self.inner.zk.as_ref().map_or_else(String::new, |zk| {
            format!(
                "zookeeper.connect={}\nzookeeper.session.timeout.ms={}\n",
                zk.connect_string(),
                options.session_timeout.as_millis(),
            )
        });
        let mut text = format!("# the operator's Kafka settings on simulated host {index}\n");
        let kafka = if systemd {
            options.kafka
        } else {
            SimKafka::Standin
        };
        match kafka {
            SimKafka::Standin => return text + &zookeeper,
            SimKafka::Kraft => match &self.inner.security {
                Some(security) => text.push_str(&format!(
                    "process.roles=broker,controller\n{}",
                    security.server_properties(layout::KAFKA_PORT, layout::KAFKA_CONTROLLER_PORT)
                )),
                None => text.push_str(&format!(
                    "process.roles=broker,controller\n\
                     listeners=PLAINTEXT://0.0.0.0:{port},CONTROLLER://0.0.0.0:{cport}\n\
                     controller.listener.names=CONTROLLER\ninter.broker.listener.name=PLAINTEXT\n\
                     listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n",
                    port = layout::KAFKA_PORT,
                    cport = layout::KAFKA_CONTROLLER_PORT,
                )),
            },
            SimKafka::ZooKeeperMode => {
                text.push_str(&zookeeper);
                text.push_str(&format!(
                    "listeners=PLAINTEXT://0.0.0.0:{}\n",
                    layout::KAFKA_PORT
                ));
            }
        }
        let replicas = options.brokers.min(3);
        text.push_str(&format!(
            "offsets.topic.replication.factor={replicas}\ntransaction.state.log.replication.factor={replicas}\n\
             transaction.state.log.min.isr={}\ngroup.initial.rebalance.delay.ms=0\n",
            replicas.min(2)
        ));
        text
    }

    /// berth's configuration for a host.
    fn berth_config(&self, host: &Host, binaries: &Binaries) -> String {
        let o = &self.inner.options;
        format!(
            r#"# berth on simulated host {index} ({zone}), written by berth-sim
[cluster]
name = "{cluster}"
broker_count = {brokers}
{cluster_id}
[claim]
backend = "{claim_backend}"

[tags]
key = "Name"
eni = "KAFKA-{{id}}"
volume = "KAFKA-{{id}}"
cluster_key = "{cluster_tag}"
{zookeeper}
[aws]
region = "{region}"
endpoint_url = "{endpoint}"
imds_endpoint = "http://{imds}"
termination_poll = "1s"

[aws.cloudformation]
signal = true
stack = "{stack}"
resource = "{resource}"

[aws.autoscaling]
group = "{group}"
launch_hook = "{launch_hook}"
terminate_hook = "{terminate_hook}"
heartbeat_interval = "{heartbeat}ms"
mark_unhealthy_after = "0s"

{storage_and_kafka}port = {kafka_port}
check_interval = "1s"

{security_sections}[health]
listen = "0.0.0.0:{health}"
"#,
            index = host.index,
            zone = layout::zone_name(host.az),
            cluster = o.cluster,
            stack = asg::stack_name(&o.cluster),
            resource = asg::STACK_RESOURCE,
            group = asg::group_name(&o.cluster, host.az),
            launch_hook = asg::LAUNCH_HOOK,
            terminate_hook = asg::TERMINATE_HOOK,
            heartbeat = (o.asg.launch_timeout / 2).as_millis(),
            brokers = o.brokers,
            cluster_id = if host.container.is_some() && self.inner.options.kafka == SimKafka::Kraft
            {
                format!("kafka_cluster_id = \"{KAFKA_CLUSTER_ID}\"\n")
            } else {
                String::new()
            },
            cluster_tag = layout::CLUSTER_TAG,
            claim_backend = match o.claim_backend {
                ClaimBackend::Zookeeper => "zookeeper",
                ClaimBackend::Ec2 => "ec2",
            },
            // No ZooKeeper in the fleet: no zookeeper key in any host's configuration.
            zookeeper = self
                .inner
                .zk
                .as_ref()
                .map_or_else(String::new, |zk| format!(
                "\n[zookeeper]\nconnect = \"{}\"\nsession_timeout = \"{}ms\"\nroot = \"/berth\"\n",
                zk.connect_string(),
                o.session_timeout.as_millis()
            )),
            region = layout::REGION,
            endpoint = self.inner.proxy.url(),
            imds = layout::IMDS_ADDR,
            storage_and_kafka = self.storage_and_kafka(host, binaries),
            security_sections = match (&self.inner.security, &host.container) {
                (Some(security), Some(_)) => security.berth_sections() + "\n",
                _ => String::new(),
            },
            kafka_port = layout::KAFKA_PORT,
            health = layout::HEALTH_PORT,
        )
    }

    /// Starts (or restarts) berth on host `index`, in the host's network namespace only.
    pub fn start_berth(&self, index: usize) -> Result<u32, FleetError> {
        self.start_berth_with_env(index, &[])
    }

    /// [`Fleet::start_berth`] with extra environment for this start only (e.g. `FAILPOINTS` for a berth built
    /// with the `failpoints` feature). On a systemd host it stays for systemd's restarts until the next start without it.
    pub fn start_berth_with_env(
        &self,
        index: usize,
        extra_env: &[(&str, &str)],
    ) -> Result<u32, FleetError> {
        let host = self.host(index)?;
        if let Some(container) = &host.container {
            systemd_host::set_start_environment(container, extra_env).map_err(|source| {
                FleetError::Systemd {
                    host: index,
                    source: source.into(),
                }
            })?;
        }
        let binaries = Binaries::locate()?;
        let config = self.berth_config(&host, &binaries);
        // A secured host's password and client key come as systemd credentials: the check stands them in.
        let credentials = self
            .inner
            .security
            .as_ref()
            .map(|security| security.credentials_for_a_check())
            .unwrap_or_default();
        let credentials = credentials.iter().map(|(k, v)| (*k, v.as_str()));
        berth_config::parse(&config, credentials).map_err(|source| FleetError::Config {
            host: index,
            source,
        })?;
        let server_properties = self.server_properties(index, host.container.is_some());
        if let Some(container) = &host.container {
            let options = &self.inner.options;
            systemd_host::start(
                container,
                options,
                systemd_host::Configured {
                    berth_toml: config,
                    server_properties,
                    security: self.inner.security.as_ref(),
                },
                &binaries.berth,
                self.inner.kafka.as_ref(),
            )
            .map_err(|source| FleetError::Systemd {
                host: index,
                source,
            })?;
            return Ok(host.berth_pid().unwrap_or(0));
        }
        std::fs::write(host.config_path(), config).map_err(io_error("berth.toml"))?;
        std::fs::write(host.dir.join("server.properties"), server_properties)
            .map_err(io_error("server.properties"))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(host.log_path())
            .map_err(io_error(format!("host {index} log")))?;
        let log2 = log
            .try_clone()
            .map_err(io_error(format!("host {index} log")))?;
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net={}", region::netns_path(&host.ns).display()))
            .arg("--")
            .arg(&binaries.berth)
            .args(["run", "--config"])
            .arg(host.config_path())
            .env("AWS_ACCESS_KEY_ID", crate::ec2::ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", crate::ec2::SECRET_KEY)
            .env("AWS_REGION", layout::REGION)
            .env(
                "RUST_LOG",
                std::env::var("BERTHSIM_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        // berth reads every BERTH_* variable as a configuration override: pass only the fleet's own.
        for (key, _) in std::env::vars().filter(|(key, _)| key.starts_with("BERTH_")) {
            command.env_remove(key);
        }
        command.envs(
            self.inner
                .options
                .berth_env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        command.envs(extra_env.iter().copied());
        let child = command
            .spawn()
            .map_err(io_error(format!("start berth on host {index}")))?;
        let pid = child.id();
        *lock(&host.berth) = Some(child);
        Ok(pid)
    }

    /// Sends `signal` to host `index`'s berth (`systemctl kill --kill-whom=main` on a systemd host).
    pub fn signal_berth(
        &self,
        index: usize,
        signal: nix::sys::signal::Signal,
    ) -> Result<(), FleetError> {
        let host = self.host(index)?;
        if let Some(container) = &host.container {
            return systemd_host::signal_berth(container, signal).map_err(|e| {
                FleetError::Systemd {
                    host: index,
                    source: e.into(),
                }
            });
        }
        if let Some(pid) = host.berth_pid() {
            sys::signal(pid as i32, signal);
        }
        Ok(())
    }

    /// Waits for host `index`'s berth to exit and returns its exit code (None when killed by a signal).
    pub async fn wait_berth_exit(
        &self,
        index: usize,
        timeout: Duration,
    ) -> Result<Option<i32>, FleetError> {
        let host = self.host(index)?;
        let started = Instant::now();
        loop {
            if let Some(container) = &host.container {
                match systemd_host::berth_exit(container) {
                    Ok(code) => return Ok(code),
                    Err(running) if started.elapsed() > timeout => {
                        return Err(FleetError::Timeout {
                            host: index,
                            what: "berth exit".into(),
                            waited: timeout,
                            last: format!("{running}\n{}", host.log_tail()),
                        })
                    }
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                }
            }
            let status = lock(&host.berth)
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten());
            if let Some(status) = status {
                lock(&host.berth).take();
                return Ok(status.code());
            }
            if lock(&host.berth).is_none() {
                return Ok(None);
            }
            if started.elapsed() > timeout {
                return Err(FleetError::Timeout {
                    host: index,
                    what: "berth exit".into(),
                    waited: timeout,
                    last: host.log_tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILLs berth alone on host `index` (its Kafka child keeps running, as after a daemon crash) and reaps it.
    pub async fn crash_berth(&self, index: usize) -> Result<(), FleetError> {
        self.signal_berth(index, nix::sys::signal::Signal::SIGKILL)?;
        self.wait_berth_exit(index, Duration::from_secs(5))
            .await
            .map(drop)
    }

    /// berth's `/state` on host `index`.
    pub async fn state(&self, index: usize) -> Result<StateView, state::StateError> {
        let address = self
            .host(index)
            .map(|h| h.health_address())
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        state::fetch_state(address).await
    }

    /// Polls host `index`'s `/state` until `accept` holds, up to `timeout`.
    pub async fn wait_for(
        &self,
        index: usize,
        what: &str,
        timeout: Duration,
        accept: impl Fn(&StateView) -> bool,
    ) -> Result<StateView, FleetError> {
        let host = self.host(index)?;
        let started = Instant::now();
        let mut last;
        loop {
            let exited = lock(&host.berth)
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten());
            if let Some(status) = exited {
                return Err(FleetError::Timeout {
                    host: index,
                    what: what.into(),
                    waited: started.elapsed(),
                    last: format!(
                        "berth exited ({status})\n--- berth.log tail ---\n{}",
                        host.log_tail()
                    ),
                });
            }
            match state::fetch_state(host.health_address()).await {
                Ok(state) if accept(&state) => return Ok(state),
                Ok(state) => last = format!("{} (last error: {:?})", state.state, state.last_error),
                Err(error) => {
                    last = error.to_string();
                    if let Some(stopped) = host.container.as_ref().and_then(systemd_host::stopped) {
                        return Err(FleetError::Timeout {
                            host: index,
                            what: what.into(),
                            waited: started.elapsed(),
                            last: format!("{stopped}\n--- journal tail ---\n{}", host.log_tail()),
                        });
                    }
                }
            }
            if started.elapsed() > timeout {
                return Err(FleetError::Timeout {
                    host: index,
                    what: what.into(),
                    waited: timeout,
                    last: format!("{last}\n--- berth.log tail ---\n{}", host.log_tail()),
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until host `index` reports Healthy.
    pub async fn wait_healthy(
        &self,
        index: usize,
        timeout: Duration,
    ) -> Result<StateView, FleetError> {
        self.wait_for(index, "Healthy", timeout, |s| {
            s.state.eq_ignore_ascii_case("healthy")
        })
        .await
    }

    /// Kills host `index` as a dead instance dies: SIGKILL to every process in its namespace, its mounts gone,
    /// its devices unplugged, its instance terminated in moto. With `shutting_down`, the instance stays in
    /// `shutting-down` that long (`Some(Duration::ZERO)`: until [`StrictMoto::finish_termination`]), keeping its
    /// ENI and volume in use, as EC2 does.
    pub async fn kill_host(
        &self,
        index: usize,
        shutting_down: Option<Duration>,
    ) -> Result<(), FleetError> {
        let host = self.host(index)?;
        host.alive.store(false, Ordering::SeqCst);
        self.kill_processes(&host);
        sys::unmount_all(&host.dir);
        self.inner.unplug_host(index);
        match shutting_down {
            Some(hold) => {
                let hold = (!hold.is_zero()).then_some(hold);
                let moto = &self.inner.moto;
                let instance = host.instance.id.clone();
                tokio::task::block_in_place(|| moto.begin_shutting_down(&instance, hold))?;
            }
            None => self.inner.ec2.terminate(&host.instance.id).await?,
        }
        lock(&host.imds).take();
        let _ = sys::ip(&["netns", "del", &host.ns]);
        Ok(())
    }

    /// Removes a host whose berth has drained (exited): its processes, namespace and instance.
    pub async fn retire_host(&self, index: usize) -> Result<(), FleetError> {
        self.kill_host(index, None).await
    }

    fn kill_processes(&self, host: &Host) {
        if let Some(container) = &host.container {
            container.kill();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let pids = sys::netns_pids(&host.ns);
            if pids.is_empty() || Instant::now() > deadline {
                break;
            }
            for pid in pids {
                sys::signal(pid, nix::sys::signal::Signal::SIGKILL);
            }
            if let Some(child) = lock(&host.berth).as_mut() {
                let _ = child.try_wait();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(mut child) = lock(&host.berth).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Injects `times` faults of `fault` on EC2/CloudFormation/Auto Scaling `action` at the proxy berth uses.
    pub fn inject(&self, action: &str, fault: Fault, times: usize) {
        self.inner.proxy.inject(action, fault, times);
    }

    /// The region's loop devices and links currently plugged into host `index`: (ENI MACs, loop devices).
    pub fn plugged_into(&self, index: usize) -> (Vec<String>, Vec<PathBuf>) {
        let plugged = lock(&self.inner.plugged);
        let enis = plugged
            .enis
            .values()
            .filter(|p| p.host == index)
            .map(|p| p.mac.clone())
            .collect();
        let volumes = plugged
            .volumes
            .values()
            .filter(|(h, _)| *h == index)
            .map(|(_, v)| v.loop_device.clone())
            .collect();
        (enis, volumes)
    }

    /// Runs `ip <args>` inside host `index`'s namespace (e.g. `-j addr show`), returning stdout.
    pub fn ip_on(&self, index: usize, args: &[&str]) -> Result<String, FleetError> {
        let host = self.host(index)?;
        Ok(sys::ip_in(&host.ns, args)?)
    }

    /// Stops everything: every host killed, devices unplugged, servers stopped, namespaces deleted.
    pub fn teardown(&self) {
        self.hotplug.abort();
        for host in self.hosts() {
            host.alive.store(false, Ordering::SeqCst);
            self.kill_processes(&host);
            sys::unmount_all(&host.dir);
            lock(&host.imds).take();
            let _ = sys::ip(&["netns", "del", &host.ns]);
        }
        self.inner.unplug_all();
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.teardown();
    }
}

impl Inner {
    fn volume_backing(&self, volume_id: &str) -> PathBuf {
        self.work.join("volumes").join(format!("{volume_id}.img"))
    }

    fn live_host_of(&self, instance: &str) -> Option<Arc<Host>> {
        lock(&self.hosts)
            .iter()
            .find(|h| h.instance.id == instance && h.alive())
            .cloned()
    }

    fn host(&self, index: usize) -> Option<Arc<Host>> {
        lock(&self.hosts).get(index).cloned()
    }

    /// Makes the hosts' devices follow moto's attachments (after the configured delays).
    fn reconcile(&self, attachments: &Attachments) {
        let now = Instant::now();
        for resource in &self.resources {
            let eni_host = self.live_holder(&attachments.enis, &resource.eni_id);
            self.follow(
                &resource.eni_id,
                eni_host,
                self.options.eni_delay,
                now,
                |host| self.plug_eni(resource, host),
            );
            let volume_host = self.live_holder(&attachments.volumes, &resource.volume_id);
            self.follow(
                &resource.volume_id,
                volume_host,
                self.options.volume_delay,
                now,
                |host| self.plug_volume(resource, host),
            );
        }
    }

    /// The index of the live host that moto says holds `id` (an ENI or a volume), if any.
    fn live_holder(&self, holders: &HashMap<String, Option<String>>, id: &str) -> Option<usize> {
        let instance = holders.get(id)?.as_deref()?;
        self.live_host_of(instance).map(|h| h.index)
    }

    fn current_host(&self, key: &str) -> Option<usize> {
        let plugged = lock(&self.plugged);
        plugged
            .enis
            .get(key)
            .map(|p| p.host)
            .or_else(|| plugged.volumes.get(key).map(|(h, _)| *h))
    }

    fn follow(
        &self,
        key: &str,
        desired: Option<usize>,
        delay: Duration,
        now: Instant,
        plug: impl FnOnce(usize),
    ) {
        let current = self.current_host(key);
        if current == desired {
            lock(&self.plugged).pending.remove(key);
            return;
        }
        if current.is_some() {
            self.unplug(key);
        }
        let Some(host) = desired else {
            lock(&self.plugged).pending.remove(key);
            return;
        };
        let due = {
            let mut plugged = lock(&self.plugged);
            match plugged.pending.get(key) {
                Some(&(pending_host, due)) if pending_host == host => due,
                _ => {
                    plugged.pending.insert(key.to_owned(), (host, now + delay));
                    now + delay
                }
            }
        };
        if now >= due {
            lock(&self.plugged).pending.remove(key);
            plug(host);
        }
    }

    fn plug_eni(&self, resource: &BrokerResources, index: usize) {
        let Some(host) = self.host(index) else { return };
        let suffix = &resource.eni_id[resource.eni_id.len().saturating_sub(8)..];
        let port = format!("e{suffix}");
        let link = format!("ens{}", 5 + host.next_slot.fetch_add(1, Ordering::SeqCst));
        let region_ns = self.region.ns();
        let result = (|| {
            let _ = sys::ip_in(region_ns, &["link", "del", &port]);
            sys::ip_in(
                region_ns,
                &[
                    "link", "add", &port, "type", "veth", "peer", "name", &link, "netns", &host.ns,
                ],
            )?;
            sys::ip_in(&host.ns, &["link", "set", &link, "address", &resource.mac])?;
            self.region.join_bridge(&port, host.az)?;
            self.region.allow_source(&port, resource.ip)
        })();
        match result {
            Ok(()) => {
                host.with_imds(|imds| {
                    imds.add_interface(&ImdsInterface {
                        mac: resource.mac.clone(),
                        device_number: 1,
                        interface_id: resource.eni_id.clone(),
                    })
                });
                lock(&self.plugged).enis.insert(
                    resource.eni_id.clone(),
                    PluggedEni {
                        host: index,
                        port,
                        mac: resource.mac.clone(),
                        ip: resource.ip,
                    },
                );
            }
            Err(error) => eprintln!(
                "berth-sim: hot-plug of {} into host {index} failed: {error}",
                resource.eni_id
            ),
        }
    }

    fn plug_volume(&self, resource: &BrokerResources, index: usize) {
        let Some(host) = self.host(index) else { return };
        let backing = self.volume_backing(&resource.volume_id);
        let slot = host.next_slot.fetch_add(1, Ordering::SeqCst);
        match devices::plug(
            &backing,
            &resource.volume_id,
            slot,
            &host.tree,
            host.container.as_ref(),
        ) {
            Ok(plugged) => {
                lock(&self.plugged)
                    .volumes
                    .insert(resource.volume_id.clone(), (index, plugged));
            }
            Err(error) => eprintln!(
                "berth-sim: hot-plug of {} into host {index} failed: {error}",
                resource.volume_id
            ),
        }
    }

    fn unplug(&self, key: &str) {
        let (eni, volume) = {
            let mut plugged = lock(&self.plugged);
            (plugged.enis.remove(key), plugged.volumes.remove(key))
        };
        if let Some(eni) = eni {
            let _ = sys::ip_in(self.region.ns(), &["link", "del", &eni.port]);
            self.region.deny_source(&eni.port, eni.ip);
            if let Some(host) = self.host(eni.host) {
                host.with_imds(|imds| imds.remove_interface(&eni.mac));
            }
        }
        if let Some((index, volume)) = volume {
            let host = self.host(index);
            devices::unplug(&volume, host.as_ref().and_then(|h| h.container.as_ref()));
        }
    }

    fn unplug_host(&self, index: usize) {
        let keys: Vec<String> = {
            let plugged = lock(&self.plugged);
            let enis = plugged
                .enis
                .iter()
                .filter(|(_, p)| p.host == index)
                .map(|(k, _)| k.clone());
            let volumes = plugged
                .volumes
                .iter()
                .filter(|(_, (h, _))| *h == index)
                .map(|(k, _)| k.clone());
            enis.chain(volumes).collect()
        };
        for key in keys {
            self.unplug(&key);
        }
    }

    fn unplug_all(&self) {
        let keys: Vec<String> = {
            let plugged = lock(&self.plugged);
            plugged
                .enis
                .keys()
                .chain(plugged.volumes.keys())
                .cloned()
                .collect()
        };
        for key in keys {
            self.unplug(&key);
        }
    }
}

/// The region's three-member ZooKeeper ensemble (Debian's server), started off the runtime's threads.
async fn start_ensemble() -> Result<ZooKeeper, FleetError> {
    let zk_options = ZkOptions {
        nodes: 3,
        bind: layout::zk_ip(0).into(),
        ..ZkOptions::default()
    };
    tokio::task::spawn_blocking(move || ZooKeeper::start(zk_options))
        .await
        .map_err(|e| FleetError::Io {
            what: "ZooKeeper start".into(),
            source: std::io::Error::other(e),
        })?
        .map_err(FleetError::from)
}

async fn hotplug_loop(inner: Arc<Inner>) {
    // Woken by every API call the proxy answered (an attach or detach takes effect then, as in EC2), with the
    // poll as a backstop for changes made behind the proxy (terminations driven through moto's control port).
    let mut answered = inner.proxy.answered();
    loop {
        match inner.ec2.attachments().await {
            Ok(attachments) => {
                let worker = inner.clone();
                let _ = tokio::task::spawn_blocking(move || worker.reconcile(&attachments)).await;
            }
            Err(error) => eprintln!("berth-sim: hot-plug cannot read attachments: {error}"),
        }
        // Plug exactly when the earliest pending delay runs out, not on the next poll after it.
        let next_due = lock(&inner.plugged)
            .pending
            .values()
            .map(|&(_, due)| due)
            .min();
        let poll = tokio::time::Instant::now() + inner.options.hotplug_poll;
        let wake = next_due.map_or(poll, |due| poll.min(due.into()));
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            changed = answered.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// Reads a file under host `index`'s mount root (e.g. the data written before a kill), if present.
pub fn read_under(root: &Path, relative: &str) -> Option<String> {
    std::fs::read_to_string(root.join(relative)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(claim_backend: ClaimBackend, kafka: SimKafka, host_kind: HostKind) -> FleetOptions {
        FleetOptions {
            claim_backend,
            kafka,
            host_kind,
            ..FleetOptions::default()
        }
    }

    #[test]
    fn only_kraft_with_ec2_claims_on_systemd_hosts_runs_without_zookeeper() {
        use ClaimBackend::{Ec2, Zookeeper};
        let systemd = HostKind::Systemd;
        assert!(!options(Ec2, SimKafka::Kraft, systemd).needs_zookeeper());
        assert!(options(Zookeeper, SimKafka::Kraft, systemd).needs_zookeeper());
        assert!(options(Ec2, SimKafka::ZooKeeperMode, systemd).needs_zookeeper());
        assert!(options(Ec2, SimKafka::Standin, systemd).needs_zookeeper());
        assert!(options(Ec2, SimKafka::Kraft, HostKind::Process).needs_zookeeper());
    }
}
