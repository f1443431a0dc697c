//! One broker host for the adapter's fast tests: a real ZooKeeper (berth-testkit), the Kafka stand-in as a child
//! process, and the adapter's settings pointing at both.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_core::ports::BrokerSpec;
use berth_core::BrokerId;
use berth_kafka::format::Formatter;
use berth_kafka::{KafkaBroker, KafkaSettings};
use berth_testkit::zk::ZooKeeper;

use super::{broker_restarting_after, HostSettings, CHROOT};

/// The stand-in binary. `cargo test -p berth-kafka` does not build another package's binary, so `make test`
/// (and anyone running these tests) builds it first: `cargo build -p kafka-standin`.
pub fn standin_binary() -> PathBuf {
    berth_testkit::debug_binary("kafka-standin")
}

/// One broker host: a ZooKeeper, a directory for settings and data, a listener port.
pub struct Host {
    /// The real ZooKeeper.
    pub zk: ZooKeeper,
    /// Settings, overlay, log dirs.
    pub dir: tempfile::TempDir,
    /// Kafka's listener port.
    pub port: u16,
}

impl Host {
    /// A fresh ZooKeeper and directory.
    pub fn new() -> Self {
        let zk = ZooKeeper::standalone().expect("a real ZooKeeper (Debian's zookeeper package)");
        let dir = tempfile::Builder::new()
            .prefix("berth-kafka-")
            .tempdir()
            .unwrap();
        Self {
            zk,
            dir,
            port: berth_testkit::free_port(),
        }
    }

    /// The operator's server.properties, as an AMI would carry it.
    pub fn server_properties(&self, extra: &str) -> PathBuf {
        let path = self.dir.path().join("server.properties");
        let text = format!(
            "# the operator's file\nbroker.id=-1\nlisteners=PLAINTEXT://127.0.0.1:{port}\n\
             zookeeper.connect={zk}{CHROOT}\nzookeeper.session.timeout.ms=2000\nlog.dirs=/nonexistent\n{extra}",
            port = self.port,
            zk = self.zk.connect_string(),
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The overlay's path.
    pub fn overlay(&self) -> PathBuf {
        self.dir.path().join("conf/berth.properties")
    }

    /// The log dir on the "volume".
    pub fn log_dir(&self) -> PathBuf {
        self.dir.path().join("volume/data")
    }

    /// The adapter's settings running `command` (the overlay path is appended by the supervisor). In KRaft
    /// mode storage is formatted by the stand-in's `format` (Kafka's storage tool) with [`super::CLUSTER_ID`].
    pub fn settings(&self, mode: &str, command: &[String]) -> KafkaSettings {
        let kraft = (mode == "kraft").then(|| Formatter {
            command: vec![standin_binary().display().to_string(), "format".into()],
            server_properties: self.dir.path().join("server.properties"),
            unit: None,
        });
        HostSettings {
            connect: &self.zk.connect_string(),
            session_timeout: Duration::from_secs(4),
            command,
            overlay: &self.overlay(),
            port: self.port,
            check_interval: Duration::from_secs(1),
            stop_timeout: Duration::from_secs(5),
            kraft,
        }
        .settings()
    }

    /// The stand-in command line reading server.properties (plus `args`).
    pub fn standin_command(&self, server_properties: &Path, args: &[&str]) -> Vec<String> {
        let mut command = vec![standin_binary().display().to_string()];
        command.extend(args.iter().map(|arg| arg.to_string()));
        command.push(server_properties.display().to_string());
        command
    }

    /// The adapter over the stand-in in `mode` (`kraft` or `zookeeper`), reading the operator's
    /// server.properties with the `extra` lines, started with `args`.
    pub fn standin_broker(&self, mode: &str, extra: &str, args: &[&str]) -> KafkaBroker {
        let server = self.server_properties(extra);
        self.broker(self.settings(mode, &self.standin_command(&server, args)))
    }

    /// A broker adapter with a short restart delay (a test should not wait systemd's usual seconds).
    pub fn broker(&self, settings: KafkaSettings) -> KafkaBroker {
        broker_restarting_after(settings, Duration::from_millis(100))
    }

    /// The broker this host runs as.
    pub fn spec(&self, id: u32) -> BrokerSpec {
        BrokerSpec {
            voters: Default::default(),
            broker_id: BrokerId(id),
            advertised_ip: Ipv4Addr::LOCALHOST,
            rack: "az-a".into(),
            log_dirs: vec![self.log_dir()],
        }
    }

    /// A ZooKeeper client of the test's own, to look at what Kafka (the stand-in) wrote.
    pub async fn client(&self) -> zookeeper_client::Client {
        zookeeper_client::Client::connect(&self.zk.connect_string())
            .await
            .expect("test ZooKeeper client")
    }
}
