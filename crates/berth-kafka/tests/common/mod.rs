//! Shared set-up for the adapter's tests: [`standin`] runs the Kafka stand-in as a child process against a real
//! ZooKeeper, [`real`] runs real Apache Kafka; both write berth's configuration with [`HostConfig`] and read
//! what Kafka registered in ZooKeeper with the helpers here.
#![allow(dead_code)]

pub mod real;
pub mod standin;

use std::path::Path;
use std::time::Duration;

use berth_config::Config;
use berth_core::ports::{Broker, Deadline};
use berth_core::BrokerId;
use berth_kafka::supervisor::RestartPolicy;
use berth_kafka::KafkaBroker;

/// The cluster id of KRaft tests (as `kafka-storage.sh random-uuid` prints one).
pub const CLUSTER_ID: &str = "MkU3OEVBNTcwNTJENDM2Qg";

/// Kafka's chroot in the test ensemble (ZooKeeper mode).
pub const CHROOT: &str = "/kafka";

/// Where Kafka registers broker `id` in ZooKeeper mode.
pub fn registration_path(id: u32) -> String {
    format!("{CHROOT}/brokers/ids/{id}")
}

/// Broker `id`'s registration, read with a client of the test's own, and the stat of its node.
pub async fn registration(
    zk: &zookeeper_client::Client,
    id: u32,
) -> (berth_zk::Registration, zookeeper_client::Stat) {
    let (body, stat) = zk
        .get_data(&registration_path(id))
        .await
        .expect("registered");
    let registration = berth_zk::Registration::parse(BrokerId(id), &registration_path(id), &body)
        .expect("a registration Kafka wrote");
    (registration, stat)
}

/// Asserts broker `id` has no registration (`why` says when that is expected).
pub async fn assert_unregistered(zk: &zookeeper_client::Client, id: u32, why: &str) {
    assert_eq!(
        zk.check_stat(&registration_path(id)).await.unwrap(),
        None,
        "{why}"
    );
}

/// Stops Kafka, expecting a clean stop within `within`.
pub async fn stop_cleanly(broker: &KafkaBroker, within: Duration) {
    broker
        .stop(Deadline::after(within))
        .await
        .expect("clean stop");
}

/// The adapter over `config`, restarting a dead Kafka after `delay` (a test should not wait systemd's usual
/// seconds).
pub fn broker_restarting_after(config: &Config, delay: Duration) -> KafkaBroker {
    let policy = RestartPolicy {
        delay,
        ..RestartPolicy::default()
    };
    KafkaBroker::with_restart_policy(config, policy).expect("the Kafka adapter")
}

/// Words as a TOML array's items (`"a", "b"`).
pub fn toml_items(words: &[String]) -> String {
    words
        .iter()
        .map(|word| format!("{word:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// berth's configuration of one broker host run by the process supervisor; in KRaft mode with [`CLUSTER_ID`].
pub struct HostConfig<'a> {
    /// `kraft` or `zookeeper`.
    pub mode: &'a str,
    /// The ZooKeeper connect string (unused in KRaft mode, but the section is required).
    pub connect: &'a str,
    /// ZooKeeper's session timeout, e.g. `4s`.
    pub session_timeout: &'a str,
    /// The supervisor's command (the overlay path is appended by the supervisor).
    pub command: &'a [String],
    /// berth's overlay.
    pub overlay: &'a Path,
    /// Kafka's client port.
    pub port: u16,
    /// The health check's interval, e.g. `1s`.
    pub check_interval: &'a str,
    /// How long a stop may take, e.g. `5s`.
    pub stop_timeout: &'a str,
    /// The `[kafka]` lines of KRaft mode (empty in ZooKeeper mode), and any other `[kafka]` key.
    pub kraft: &'a str,
    /// Sections after `[kafka]` (e.g. `[kafka.security]`).
    pub sections: &'a str,
    /// Environment overrides (`BERTH_...`), as berth.service's environment file would give them.
    pub environment: &'a [(String, String)],
}

impl HostConfig<'_> {
    /// The parsed configuration.
    pub fn parse(&self) -> Config {
        let cluster_id = if self.mode == "kraft" {
            format!("kafka_cluster_id = \"{CLUSTER_ID}\"")
        } else {
            String::new()
        };
        let text = format!(
            r#"
[cluster]
name = "test"
broker_count = 3
{cluster_id}
[zookeeper]
connect = "{connect}"
session_timeout = "{session_timeout}"
root = "/berth"
kafka_chroot = "{CHROOT}"
[kafka]
mode = "{mode}"
supervisor = "process"
command = [{command}]
overlay_path = "{overlay}"
port = {port}
check_interval = "{check_interval}"
stop_timeout = "{stop_timeout}"
{kraft}
{sections}
"#,
            connect = self.connect,
            session_timeout = self.session_timeout,
            mode = self.mode,
            command = toml_items(self.command),
            overlay = self.overlay.display(),
            port = self.port,
            check_interval = self.check_interval,
            stop_timeout = self.stop_timeout,
            kraft = self.kraft,
            sections = self.sections,
        );
        let environment = self
            .environment
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()));
        berth_config::parse(&text, environment).expect("a valid test configuration")
    }
}
