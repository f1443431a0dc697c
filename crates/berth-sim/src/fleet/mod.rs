//! The simulated fleet: a region (namespace, bridges, strict moto behind the strict CloudFormation/Auto Scaling
//! endpoint and the fault proxy, and a ZooKeeper ensemble only when something needs one: the `zookeeper` claim
//! backend, or Kafka in ZooKeeper mode), the cluster's tagged ENIs and volumes, its stack and Auto Scaling
//! groups, and broker hosts running the real `berth run`. Hosts are launched by the simulated groups
//! ([`crate::asg`]), or by a test that needs to place one by hand.
//!
//! Its rooms: this module is the world (what the fleet starts, holds and tears down); `host` provisions and
//! kills a host (a network namespace with a primary interface in its zone's bridge, an instance in moto, its own
//! IMDSv2 endpoint on 169.254.169.254, a device and a sysfs tree, and real systemd booted in a container in that
//! namespace, [`crate::container`], where berth is installed from its .deb and drives Kafka's unit,
//! [`crate::systemd_host`]); `config` renders a host's configuration through berth's own `Config`; `drive`
//! starts, signals and watches a host's berth; `hotplug` makes EC2's attachments real inside the hosts;
//! `power_loss` makes a host's death lose what a dead machine loses (its volumes keep only what reached them).

mod config;
mod drive;
mod host;
mod hotplug;
mod options;
mod power_loss;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use berth_testkit::aws::autoscaling::group::Groups;
use berth_testkit::aws::world::Network;
use berth_testkit::aws::{AwsEndpoint, Fault, FaultProxy, StrictMoto};
use berth_testkit::kafka::security::ClusterSecurity;
use berth_testkit::kafka::{Install, KafkaHarnessError};
use berth_testkit::zk::{ZkOptions, ZooKeeper};

pub use config::HostSettings;
pub use host::{Binaries, Host};
pub use options::{
    BerthBuild, FleetOptions, HostRole, SimKafka, KAFKA_CLUSTER_ID, SHIPPED_BUILD_COMMAND,
};

use crate::ec2::{BrokerResources, Ec2};
use crate::region::{self, Region};
use crate::{asg, devices, layout, security_groups, sys, systemd_host};

/// A fleet operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// A system tool failed.
    #[error(transparent)]
    Sys(#[from] sys::SysError),
    /// A secured fleet's security material could not be made.
    #[error("making the fleet's security material: {0}")]
    Security(KafkaHarnessError),
    /// The region could not be built.
    #[error(transparent)]
    Region(#[from] region::RegionError),
    /// An EC2 call failed.
    #[error(transparent)]
    Ec2(#[from] crate::ec2::Ec2Error),
    /// The security groups template could not be read or instantiated.
    #[error("security groups template: {0}")]
    SecurityGroups(String),
    /// The template's resources or Auto Scaling groups could not be created.
    #[error("the stack: {0}")]
    Stack(String),
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
    /// The berth build the fleet asked for was not built.
    #[error("the {build:?} berth {path} is missing: `{command}` builds it (`make test` builds both)", path = path.display())]
    MissingBerth {
        /// The build asked for.
        build: BerthBuild,
        /// Where it should be.
        path: std::path::PathBuf,
        /// The command that builds it.
        command: &'static str,
    },
    /// A host did not reach the awaited condition in time (or its berth stopped for good first).
    #[error("host {host}: {what} not reached within {waited:?}; last state: {last}")]
    Timeout {
        /// Host index.
        host: usize,
        /// The awaited condition.
        what: String,
        /// How long we waited.
        waited: Duration,
        /// berth's last `/state` (or why it could not be read), and the tail of its journal.
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
    /// A host's container could not be booted, installed or driven.
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

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Inner {
    options: FleetOptions,
    groups: Groups,
    prefix: String,
    work: PathBuf,
    ec2: Ec2,
    network: Network,
    resources: Vec<BrokerResources>,
    /// A stack fleet's launch template, and the version each group launches (absent: `$Latest`).
    launch_template: Option<String>,
    launch_versions: Mutex<std::collections::BTreeMap<String, String>>,
    /// The launch template version each stack instance launched.
    instance_versions: Mutex<std::collections::BTreeMap<String, String>>,
    hosts: Mutex<Vec<Arc<Host>>>,
    /// Held while a host is prepared: its index is the hosts' count, so two groups launching at once would
    /// otherwise prepare the same host (same name, same address).
    preparing: tokio::sync::Mutex<()>,
    plugged: Mutex<hotplug::Plugged>,
    /// Zones where the groups' launches fail for now ([`Fleet::hold_launches`]).
    held_zones: Mutex<std::collections::BTreeSet<usize>>,
    proxy: FaultProxy,
    aws: AwsEndpoint,
    moto: StrictMoto,
    zk: Option<ZooKeeper>,
    region: Region,
    kafka: Option<Install>,
    security: Option<ClusterSecurity>,
    _work: tempfile::TempDir,
}

/// A launch template version a stack's group launches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchVersion {
    /// Its number.
    pub number: String,
    /// Its user data, decoded (None: it has none).
    pub user_data: Option<String>,
}

/// A running simulated fleet; everything it created is removed when it is dropped.
pub struct Fleet {
    inner: Arc<Inner>,
    hotplug: tokio::task::JoinHandle<()>,
}

/// The region namespace names of a run start with this, so leftovers of a crashed run are recognisable.
pub const NS_PREFIX: &str = "bsim";

/// The AWS side of a fleet as it starts: moto, the CloudFormation/Auto Scaling endpoint with the stack and groups,
/// the fault proxy in front of both, and the cluster's network, ENIs and volumes in moto.
struct Cloud {
    moto: StrictMoto,
    aws: AwsEndpoint,
    proxy: FaultProxy,
    ec2: Ec2,
    network: Network,
    resources: Vec<BrokerResources>,
    launch_template: Option<String>,
}

impl Cloud {
    async fn start(options: &FleetOptions, groups: &Groups) -> Result<Self, FleetError> {
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
        groups.create(&aws);
        let proxy = FaultProxy::start(SocketAddr::from((layout::moto_ip(), 0)), aws.address())
            .map_err(io_error("fault proxy"))?;
        let ec2 = Ec2::connect(moto.endpoint(), &options.cluster);
        let network = ec2.create_network(options.zones).await?;
        let (resources, launch_template) = match &options.stack {
            Some(template) => {
                let deployed = crate::stack::create_resources(
                    &ec2,
                    template,
                    &options.cluster,
                    options.zones,
                    &network,
                    options.brokers,
                )
                .await
                .map_err(|e| FleetError::Stack(e.to_string()))?;
                (deployed.resources, Some(deployed.launch_template))
            }
            None => {
                let resources = ec2
                    .create_broker_resources(&network, options.zones, options.brokers)
                    .await?;
                (resources, None)
            }
        };
        Ok(Self {
            moto,
            aws,
            proxy,
            ec2,
            network,
            resources,
            launch_template,
        })
    }
}

impl Fleet {
    /// Builds the region's servers and the cluster's resources and starts the hot-plug. Must run on a thread
    /// (and tokio runtime) inside the region namespace: use [`crate::with_fleet`].
    pub async fn start(
        options: FleetOptions,
        prefix: &str,
        region: Region,
    ) -> Result<Self, FleetError> {
        let kafka = options.kafka.install()?;
        let work = tempfile::Builder::new()
            .prefix(&format!("{prefix}-"))
            .tempdir()
            .map_err(io_error("work directory"))?;
        let zk = if options.needs_zookeeper() {
            Some(start_ensemble().await?)
        } else {
            None
        };
        let security = make_security(&options, work.path())?;
        let groups = match &options.stack {
            Some(template) => asg::stack_groups(&options, template)
                .map_err(|e| FleetError::Stack(e.to_string()))?,
            None => asg::groups(&options),
        };
        let cloud = Cloud::start(&options, &groups).await?;
        if let Some(template) = &options.security_groups {
            enforce_security_groups(&region, template, &options, &cloud.resources)?;
        }
        let volumes = work.path().join("volumes");
        std::fs::create_dir_all(&volumes).map_err(io_error("volumes directory"))?;
        for resource in &cloud.resources {
            devices::create_backing(
                &volumes.join(format!("{}.img", resource.volume_id)),
                options.volume_mb,
            )?;
        }
        let inner = Arc::new(Inner {
            prefix: prefix.to_owned(),
            work: work.path().to_owned(),
            ec2: cloud.ec2,
            network: cloud.network,
            resources: cloud.resources,
            launch_template: cloud.launch_template,
            launch_versions: Mutex::default(),
            instance_versions: Mutex::default(),
            hosts: Mutex::new(Vec::new()),
            preparing: tokio::sync::Mutex::new(()),
            plugged: Mutex::new(hotplug::Plugged::default()),
            held_zones: Mutex::default(),
            proxy: cloud.proxy,
            aws: cloud.aws,
            moto: cloud.moto,
            zk,
            region,
            options,
            groups,
            kafka,
            security,
            _work: work,
        });
        let hotplug = tokio::spawn(hotplug::hotplug_loop(inner.clone()));
        Ok(Self { inner, hotplug })
    }

    /// The options the fleet was built with.
    pub fn options(&self) -> &FleetOptions {
        &self.inner.options
    }

    /// The fleet's Auto Scaling groups (one per zone) as its stack created them.
    pub fn asg_groups(&self) -> &Groups {
        &self.inner.groups
    }

    /// The Apache Kafka the hosts run (None: the stand-in).
    pub fn kafka(&self) -> Option<&Install> {
        self.inner.kafka.as_ref()
    }

    /// The security of a secured fleet's Kafka (None: `PLAINTEXT`).
    pub fn security(&self) -> Option<&ClusterSecurity> {
        self.inner.security.as_ref()
    }

    /// The fleet's work directory (removed with the fleet).
    pub fn work_dir(&self) -> &std::path::Path {
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

    /// Enforces the security groups of the template at `template` from now on, replacing the ones enforced so
    /// far (as a stack update changing the groups' rules would; connections already open stay open, since
    /// groups are stateful).
    pub fn enforce_security_groups(&self, template: &std::path::Path) -> Result<(), FleetError> {
        enforce_security_groups(
            &self.inner.region,
            template,
            &self.inner.options,
            &self.inner.resources,
        )
    }

    /// The launch template version group `group` launches now (None: a fleet without a stack): its number and
    /// its user data, decoded.
    pub async fn launch_version(&self, group: &str) -> Result<Option<LaunchVersion>, FleetError> {
        let Some(template) = &self.inner.launch_template else {
            return Ok(None);
        };
        let version = lock(&self.inner.launch_versions)
            .get(group)
            .cloned()
            .unwrap_or_else(|| "$Latest".into());
        let failed = |message: String| {
            FleetError::Stack(format!(
                "launch template {template} version {version}: {message}"
            ))
        };
        let described = self
            .ec2()
            .client()
            .describe_launch_template_versions()
            .launch_template_id(template)
            .versions(&version)
            .send()
            .await
            .map_err(|e| failed(berth_core::ports::chain_message(&e)))?;
        let described = described
            .launch_template_versions()
            .first()
            .ok_or_else(|| failed("not described".into()))?;
        let user_data = described
            .launch_template_data()
            .and_then(|data| data.user_data())
            .map(crate::cloud_init::decode_user_data)
            .transpose()
            .map_err(|e| failed(e.to_string()))?;
        Ok(Some(LaunchVersion {
            number: described.version_number().unwrap_or_default().to_string(),
            user_data,
        }))
    }

    /// Creates a version of the stack's launch template with `user_data` (from the latest one): its number.
    pub async fn create_launch_version(&self, user_data: &str) -> Result<String, FleetError> {
        use base64::Engine as _;
        let template = self.inner.launch_template.as_deref().ok_or_else(|| {
            FleetError::Stack("a fleet without a stack has no launch template".into())
        })?;
        let data = aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
            .user_data(base64::engine::general_purpose::STANDARD.encode(user_data))
            .build();
        let created = self
            .ec2()
            .client()
            .create_launch_template_version()
            .launch_template_id(template)
            .source_version("$Latest")
            .launch_template_data(data)
            .send()
            .await
            .map_err(|e| {
                FleetError::Stack(format!(
                    "CreateLaunchTemplateVersion {template}: {}",
                    berth_core::ports::chain_message(&e)
                ))
            })?;
        created
            .launch_template_version()
            .and_then(|v| v.version_number())
            .map(|n| n.to_string())
            .ok_or_else(|| FleetError::Stack("CreateLaunchTemplateVersion: no version".into()))
    }

    /// From now on group `group` launches launch template version `version` (a stack update's).
    pub fn set_launch_version(&self, group: &str, version: &str) {
        lock(&self.inner.launch_versions).insert(group.to_owned(), version.to_owned());
    }

    /// Records that instance `instance_id` launched launch template version `version`.
    pub fn record_instance_version(&self, instance_id: &str, version: &str) {
        lock(&self.inner.instance_versions).insert(instance_id.to_owned(), version.to_owned());
    }

    /// The launch template version instance `instance_id` launched (None: not a stack's instance).
    pub fn instance_version(&self, instance_id: &str) -> Option<String> {
        lock(&self.inner.instance_versions)
            .get(instance_id)
            .cloned()
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

    /// Launches one host per entry of `zones` (zone indexes), then starts all their berths at one instant
    /// ([`Fleet::start_berths_together`]), as instances launched together boot together.
    pub async fn launch_many(&self, zones: &[usize]) -> Result<Vec<usize>, FleetError> {
        let mut indexes = Vec::new();
        for &az in zones {
            indexes.push(self.prepare_host(az).await?);
        }
        self.start_berths_together(&indexes).await?;
        Ok(indexes)
    }

    /// Launches one host in zone `az` and starts its berth.
    pub async fn launch(&self, az: usize) -> Result<usize, FleetError> {
        let index = self.prepare_host(az).await?;
        self.start_berth(index)?;
        Ok(index)
    }

    /// While `held`, the Auto Scaling groups' launches in zone `az` fail as EC2 fails them when a zone has no
    /// capacity (`InsufficientInstanceCapacity`); the groups try again at every pass, and launch once released.
    /// Hosts launched by hand ([`Fleet::launch`]) are not held.
    pub fn hold_launches(&self, az: usize, held: bool) {
        let mut zones = lock(&self.inner.held_zones);
        if held {
            zones.insert(az);
        } else {
            zones.remove(&az);
        }
    }

    /// Whether the groups' launches in zone `az` are held ([`Fleet::hold_launches`]).
    pub fn launches_held(&self, az: usize) -> bool {
        lock(&self.inner.held_zones).contains(&az)
    }

    /// Injects `times` faults of `fault` on EC2/CloudFormation/Auto Scaling `action` at the proxy berth uses.
    pub fn inject(&self, action: &str, fault: Fault, times: usize) {
        self.inner.proxy.inject(action, fault, times);
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
            host.stop();
            host.remove();
        }
        self.inner.unplug_all();
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Hosts whose addresses join the template's groups in each zone (every host the fleet may launch there).
const GROUP_HOSTS_PER_ZONE: usize = 80;

/// Enforces the template's security groups between the hosts; every broker ENI and every host address is a
/// member of each group (the template's ENIs and launch template name the groups for all of them). Some rules
/// are the fleet's, not the template's ([`security_groups::state_tunnel`]): the tests' and the demo's way in.
fn enforce_security_groups(
    region: &Region,
    template: &std::path::Path,
    options: &FleetOptions,
    resources: &[BrokerResources],
) -> Result<(), FleetError> {
    let mut rules = security_groups::template_rules(template, &options.cluster, options.zones)
        .map_err(|e| FleetError::SecurityGroups(e.to_string()))?;
    let mut groups: Vec<String> = rules.iter().map(|r| r.group.clone()).collect();
    groups.dedup();
    rules.extend(security_groups::state_tunnel(&groups, options.zones));
    region.enforce_security_groups(&rules)?;
    let hosts = (0..options.zones)
        .flat_map(|az| (0..GROUP_HOSTS_PER_ZONE).map(move |n| layout::host_ip(n, az)));
    let members: Vec<_> = resources.iter().map(|r| r.ip).chain(hosts).collect();
    for group in &groups {
        region.join_security_group(group, &members)?;
    }
    Ok(())
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

/// A secured KRaft fleet's certificates and users, in `work` (None: `PLAINTEXT`, or not KRaft).
fn make_security(
    options: &FleetOptions,
    work: &std::path::Path,
) -> Result<Option<ClusterSecurity>, FleetError> {
    let Some(listeners) = options
        .security
        .filter(|_| options.kafka == SimKafka::Kraft)
    else {
        return Ok(None);
    };
    let addresses: Vec<std::net::IpAddr> = (0..options.brokers)
        .map(|id| layout::eni_ip(id, options.zones).into())
        .collect();
    ClusterSecurity::create(&work.join("pki"), listeners, &addresses)
        .map(Some)
        .map_err(FleetError::Security)
}
