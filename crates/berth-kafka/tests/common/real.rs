//! Shared set-up for the adapter's tests against real Apache Kafka (installed by scripts/setup.sh; see
//! berth-testkit's `kafka` module): one broker host with the operator's server.properties, berth's overlay and
//! the `awk 1` merge docs/kafka.md recommends, run by berth's process supervisor through our launcher.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_core::ports::{Broker, BrokerSpec, Deadline, StepError};
use berth_core::{BrokerId, ErrorKind, ServingEvidence};
use berth_kafka::client::KafkaClient;
use berth_kafka::format::Formatter;
use berth_kafka::probe::ProbeTarget;
use berth_kafka::settings::ClientSettings;
use berth_kafka::{KafkaBroker, KafkaSettings};
use berth_testkit::kafka::{Install, KafkaCluster};
use berth_testkit::zk::ZooKeeper;

use super::{broker_restarting_after, HostSettings, RecordedBirths, CHROOT};

/// A rack Java must read back as written: non-ASCII, and outside the BMP too (a surrogate pair).
pub const RACK: &str = "zone-ä-東京-😀";
/// A start on a loaded 2-core machine (JVM, log4j, quorum) takes 5-10 s; this bounds a stuck one.
pub const START_DEADLINE: Duration = Duration::from_secs(120);

/// Kafka's own marker of a clean (controlled) shutdown, written into each log dir as it stops and removed
/// when it starts (3.9 and 4.x).
pub const CLEAN_SHUTDOWN: &str = ".kafka_cleanshutdown";

/// One broker host against real Kafka.
pub struct RealHost {
    /// The Kafka version.
    pub install: Install,
    /// ZooKeeper mode: Debian's ZooKeeper.
    pub zk: Option<ZooKeeper>,
    /// Settings, overlay, merged file, log dirs.
    pub dir: tempfile::TempDir,
    /// Client listener port.
    pub port: u16,
    /// Controller listener port (KRaft).
    pub controller_port: u16,
    /// The address it listens on and advertises (its "ENI address").
    pub address: Ipv4Addr,
    /// KRaft: the voters' addresses (this host alone unless it joins a cluster).
    pub voters: BTreeMap<BrokerId, Ipv4Addr>,
    /// KRaft: a dynamic quorum (KIP-853): `controller.quorum.bootstrap.servers` from `voters`, no
    /// `controller.quorum.voters`.
    pub dynamic: bool,
    /// KRaft, dynamic: `controller.quorum.auto.join.enable`.
    pub auto_join: bool,
    /// How berth talks to this host's Kafka (a secured host's settings; plaintext by default).
    pub berth: BerthSide,
}

/// berth's side of a host: the listener it probes, how it reaches it and the controllers, and the storage tool.
#[derive(Debug, Clone, Default)]
pub struct BerthSide {
    /// `kafka.listener_name` (`PLAINTEXT` when empty).
    pub listener_name: String,
    /// `[kafka.security]`.
    pub security: ClientSettings,
    /// `[kafka.controller_security]`.
    pub controller_security: ClientSettings,
    /// `kafka.format_command` instead of the launcher's `format`.
    pub format_command: Option<Vec<String>>,
}

impl RealHost {
    /// A KRaft host (Kafka 4.x, broker and controller in one process, a one-voter static quorum of node 1).
    pub fn kraft() -> Self {
        let install = Install::kraft().unwrap_or_else(|error| panic!("{error}"));
        let mut host = Self::with(install, None);
        host.voters = BTreeMap::from([(BrokerId(1), host.address)]);
        host.write_server_properties();
        host
    }

    /// A KRaft host that is node `id` of a static quorum of `voters` (all on `controller_port`), listening on
    /// its voter address, with replication settings for three nodes.
    pub fn kraft_member(
        id: u32,
        voters: BTreeMap<BrokerId, Ipv4Addr>,
        controller_port: u16,
        port: u16,
    ) -> Self {
        let mut host = Self::kraft();
        host.address = voters[&BrokerId(id)];
        host.voters = voters;
        host.controller_port = controller_port;
        host.port = port;
        host.write_server_properties();
        host
    }

    /// As [`RealHost::kraft_member`], in a dynamic quorum whose bootstrap servers are the `controllers`.
    pub fn kraft_dynamic_member(
        id: u32,
        controllers: BTreeMap<BrokerId, Ipv4Addr>,
        controller_port: u16,
        port: u16,
    ) -> Self {
        let mut host = Self::kraft_member(id, controllers, controller_port, port);
        host.dynamic = true;
        host.auto_join = true;
        host.write_server_properties();
        host
    }

    /// A ZooKeeper-mode host (Kafka 3.9) with its own ZooKeeper.
    pub fn zookeeper() -> Self {
        let install = Install::zookeeper_mode().unwrap_or_else(|error| panic!("{error}"));
        let zk = ZooKeeper::standalone().expect("a real ZooKeeper (Debian's zookeeper package)");
        Self::with(install, Some(zk))
    }

    fn with(install: Install, zk: Option<ZooKeeper>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("berth-real-kafka-")
            .tempdir()
            .unwrap();
        let host = Self {
            install,
            zk,
            dir,
            port: berth_testkit::free_port(),
            controller_port: berth_testkit::free_port(),
            address: Ipv4Addr::LOCALHOST,
            voters: BTreeMap::new(),
            dynamic: false,
            auto_join: false,
            berth: BerthSide::default(),
        };
        std::fs::create_dir_all(host.dir.path().join("run")).unwrap();
        host.write_server_properties();
        host
    }

    /// The operator's server.properties, as an AMI would carry it (no final newline, so the merge is tested);
    /// written again after a change to the host's fields.
    pub fn write_server_properties(&self) {
        let mut text = String::from("# the operator's file\n");
        match &self.zk {
            Some(zk) => text.push_str(&format!(
                "broker.id=-1\nlisteners=PLAINTEXT://{address}:{port}\nzookeeper.connect={zk}{CHROOT}\n\
                 zookeeper.session.timeout.ms=6000\n",
                address = self.address,
                port = self.port,
                zk = zk.connect_string(),
            )),
            None => text.push_str(&format!(
                "process.roles=broker,controller\nnode.id=-1\n\
                 listeners=PLAINTEXT://{address}:{port},CONTROLLER://{address}:{cport}\n\
                 controller.listener.names=CONTROLLER\ninter.broker.listener.name=PLAINTEXT\n\
                 listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n",
                address = self.address,
                port = self.port,
                cport = self.controller_port,
            )),
        }
        if self.dynamic {
            let servers: Vec<String> = self
                .voters
                .values()
                .map(|address| format!("{address}:{}", self.controller_port))
                .collect();
            text.push_str(&format!(
                "controller.quorum.bootstrap.servers={}\ncontroller.quorum.auto.join.enable={}\n",
                servers.join(","),
                self.auto_join
            ));
        }
        let replication = self.voters.len().clamp(1, 3);
        text.push_str(&format!(
            "log.dirs=/nonexistent\noffsets.topic.replication.factor={replication}\n\
             transaction.state.log.replication.factor={replication}\ntransaction.state.log.min.isr=1\n\
             group.initial.rebalance.delay.ms=0",
        ));
        std::fs::write(self.server_properties(), text).unwrap();
    }

    /// The operator's file.
    pub fn server_properties(&self) -> PathBuf {
        self.dir.path().join("server.properties")
    }

    /// berth's overlay.
    pub fn overlay(&self) -> PathBuf {
        self.dir.path().join("conf/berth.properties")
    }

    /// The first log dir ("on the volume").
    pub fn log_dir(&self) -> PathBuf {
        self.dir.path().join("volume/data")
    }

    /// A second log dir.
    pub fn second_log_dir(&self) -> PathBuf {
        self.dir.path().join("volume/data2")
    }

    /// The process supervisor's command: docs/kafka.md's `awk 1` merge, then our launcher in place of
    /// kafka-server-start.sh (berth appends the overlay's path as `$1`).
    pub fn command(&self) -> Vec<String> {
        let merged = self.dir.path().join("run/server.properties");
        let server = self.install.command("server");
        let quoted: Vec<String> = server.iter().map(|word| format!("'{word}'")).collect();
        vec![
            "/bin/sh".into(),
            "-c".into(),
            format!(
                "awk 1 '{server}' \"$1\" > '{merged}' && exec {launch} '{merged}'",
                server = self.server_properties().display(),
                merged = merged.display(),
                launch = quoted.join(" "),
            ),
            "kafka".into(),
        ]
    }

    /// The adapter's settings for this host.
    pub fn settings(&self) -> KafkaSettings {
        let connect = match &self.zk {
            Some(zk) => zk.connect_string(),
            None => "127.0.0.1:1".to_owned(),
        };
        let kraft = self.zk.is_none().then(|| Formatter {
            command: self
                .berth
                .format_command
                .clone()
                .unwrap_or_else(|| self.install.command("format")),
            server_properties: self.server_properties(),
            unit: None,
        });
        let mut settings = HostSettings {
            connect: &connect,
            session_timeout: Duration::from_secs(6),
            command: &self.command(),
            overlay: &self.overlay(),
            port: self.port,
            check_interval: Duration::from_secs(2),
            stop_timeout: Duration::from_secs(60),
            kraft,
        }
        .settings();
        if self.zk.is_none() {
            settings.controller_port = self.controller_port;
            settings.quorum_voters = !self.dynamic;
            settings.controller_ids = self.voters.keys().copied().collect();
        }
        if !self.berth.listener_name.is_empty() {
            settings.listener_name = self.berth.listener_name.clone();
        }
        settings.security = self.berth.security.clone();
        settings.controller_security = self.berth.controller_security.clone();
        settings
    }

    /// A client of its probed listener, as berth's.
    pub fn kafka_client(&self) -> KafkaClient {
        KafkaClient::new(&self.berth.security).expect("a client")
    }

    /// Replaces the operator's file (a host whose listeners are not the usual ones).
    pub fn write_operator_properties(&self, text: &str) {
        std::fs::write(self.server_properties(), text).unwrap();
    }

    /// The adapter (a short restart delay: a test should not wait systemd's usual seconds), its birth record a
    /// fresh one in which no controller volume is marked (KRaft: blank controllers form the cluster).
    pub fn broker(&self) -> KafkaBroker {
        let ids = self.voters.keys().map(|id| id.0);
        self.broker_with(Arc::new(RecordedBirths::new(ids)))
    }

    /// The adapter with the given birth record.
    pub fn broker_with(&self, births: Arc<RecordedBirths>) -> KafkaBroker {
        broker_restarting_after(self.settings(), Duration::from_millis(200))
            .with_birth_record(births)
    }

    /// A ZooKeeper client of the test's own (ZooKeeper mode), to look at what Kafka wrote.
    pub async fn client(&self) -> zookeeper_client::Client {
        let zk = self.zk.as_ref().expect("a ZooKeeper-mode host");
        zookeeper_client::Client::connect(&zk.connect_string())
            .await
            .expect("test ZooKeeper client")
    }

    /// Broker `id` on this host's address in rack [`RACK`], with the given log dirs (KRaft: the only voter
    /// unless the host was made a member of a quorum).
    pub fn spec_with(&self, id: u32, log_dirs: Vec<PathBuf>) -> BrokerSpec {
        let voters: BTreeMap<BrokerId, Ipv4Addr> = if self.voters.is_empty() {
            [(BrokerId(id), self.address)].into_iter().collect()
        } else {
            self.voters.clone()
        };
        BrokerSpec {
            voters,
            broker_id: BrokerId(id),
            advertised_ip: self.address,
            rack: RACK.into(),
            log_dirs,
        }
    }

    /// Broker `id` on the first log dir.
    pub fn spec(&self, id: u32) -> BrokerSpec {
        self.spec_with(id, vec![self.log_dir()])
    }

    /// What the probe looks for.
    pub fn target(&self, id: u32) -> ProbeTarget {
        ProbeTarget {
            listener: (self.address, self.port).into(),
            broker_id: id as i32,
            host: self.address.to_string(),
            port: self.port,
        }
    }

    /// Writes a meta.properties as Kafka would have (a volume from elsewhere).
    pub fn stamp(&self, dir: &std::path::Path, text: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("meta.properties"), text).unwrap();
    }
}

/// Runs `work` (stops, restarts, tool runs: they wait on processes) on a blocking thread and hands the cluster
/// back.
pub async fn on_blocking_thread(
    cluster: KafkaCluster,
    work: impl FnOnce(&KafkaCluster) + Send + 'static,
) -> KafkaCluster {
    tokio::task::spawn_blocking(move || {
        work(&cluster);
        cluster
    })
    .await
    .expect("the cluster's blocking work completes")
}

/// Starts Kafka and waits until it serves, printing its evidence.
pub async fn serving(broker: &KafkaBroker, spec: &BrokerSpec) -> ServingEvidence {
    let evidence = broker
        .start(spec, Deadline::after(START_DEADLINE))
        .await
        .unwrap_or_else(|error| panic!("serving: {error}"));
    eprintln!("serving: {}", evidence.detail);
    evidence
}

/// Starts Kafka expecting it to refuse for good: a fatal error, and no Kafka left running or crash-looping.
pub async fn refused(broker: &KafkaBroker, spec: &BrokerSpec) -> StepError {
    let error = broker
        .start(spec, Deadline::after(START_DEADLINE))
        .await
        .expect_err("refused");
    eprintln!("{error}");
    assert_eq!(error.kind, ErrorKind::Fatal, "{error}");
    assert_eq!(broker.child_state(), None, "not left running");
    error
}

/// Stamps the log dir for node 2 (`theirs`), starts node 1 and checks Kafka's own refusal (the same words in
/// 3.9 and 4.x) and that the other node's file is untouched.
pub async fn foreign_node_is_refused(host: &RealHost, theirs: &str) {
    host.stamp(&host.log_dir(), theirs);
    let error = refused(&host.broker(), &host.spec(1)).await;
    let meta = host.log_dir().join("meta.properties");
    let words = format!(
        "Stored node id 2 doesn't match previous node id 1 in {}",
        meta.display()
    );
    assert!(error.message.contains(&words), "Kafka's own words: {error}");
    assert_eq!(std::fs::read_to_string(&meta).unwrap(), theirs, "untouched");
}
