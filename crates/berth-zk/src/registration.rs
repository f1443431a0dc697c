//! Kafka's own registration of a broker in ZooKeeper: `<kafka chroot>/brokers/ids/<id>`.
//!
//! In ZooKeeper mode a broker is only part of the cluster once it has registered this ephemeral node, so berth
//! waits for it (with a watch, not a polling loop) before declaring the broker serving, checks that it
//! advertises the ENI's address, and notices when it disappears (Kafka stopped, or its session expired).
//!
//! ```no_run
//! use std::time::Duration;
//! use berth_core::{BrokerId, Deadline};
//! use berth_zk::registration::RegistrationWatch;
//!
//! # async fn example() -> Result<(), berth_zk::ZkError> {
//! let watch = RegistrationWatch::new("10.0.1.10:2181,10.0.2.10:2181", Duration::from_secs(6), "/kafka");
//! let registration = watch.wait_for(BrokerId(3), Deadline::after(Duration::from_secs(120))).await?;
//! let plaintext = registration.endpoint("PLAINTEXT").expect("a PLAINTEXT listener");
//! println!("broker 3 serves on {}:{} in {:?}", plaintext.host, plaintext.port, registration.rack);
//! // ... later, while Healthy: returns once Kafka's node is deleted.
//! watch.wait_gone(BrokerId(3)).await?;
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use berth_core::{BrokerId, Deadline};
use serde::Deserialize;
use zookeeper_client as zk;

use crate::session::{Connection, SharedSession};
use crate::ZkError;

/// One listener a broker advertises (`endpoints` in Kafka's JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Listener name, e.g. `PLAINTEXT` or `INTERNAL`.
    pub listener: String,
    /// Host or IP address (brackets of an IPv6 address removed).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Security protocol of the listener (from `listener_security_protocol_map`, else the listener name).
    pub security_protocol: String,
}

/// A broker's registration as Kafka wrote it (JSON versions 4 and 5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The broker id (from the znode's name).
    pub broker_id: BrokerId,
    /// Kafka's JSON version.
    pub version: u32,
    /// Every advertised listener.
    pub endpoints: Vec<Endpoint>,
    /// Legacy `host` field (the PLAINTEXT listener's host), absent without a PLAINTEXT listener.
    pub host: Option<String>,
    /// Legacy `port` field, absent (or -1 in the JSON) without a PLAINTEXT listener.
    pub port: Option<u16>,
    /// `broker.rack`, when set.
    pub rack: Option<String>,
    /// Listener name to security protocol.
    pub listener_security_protocol_map: BTreeMap<String, String>,
    /// Registration time (milliseconds since the epoch, as Kafka writes it), when present.
    pub timestamp_ms: Option<i64>,
}

#[derive(Deserialize)]
struct RawRegistration {
    version: u32,
    #[serde(default)]
    endpoints: Vec<String>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    port: Option<i32>,
    #[serde(default)]
    rack: Option<String>,
    #[serde(default)]
    listener_security_protocol_map: Option<BTreeMap<String, String>>,
    #[serde(default)]
    timestamp: Option<String>,
}

impl Registration {
    /// Parses the body of `/brokers/ids/<id>`. Versions other than 4 and 5 are refused (older ones lack
    /// `endpoints` with listener names; newer ones are not known to berth).
    pub fn parse(broker_id: BrokerId, path: &str, body: &[u8]) -> Result<Self, ZkError> {
        let bad = |reason: String| ZkError::BadRegistration {
            path: path.to_owned(),
            reason,
        };
        let raw: RawRegistration =
            serde_json::from_slice(body).map_err(|source| ZkError::RegistrationJson {
                path: path.to_owned(),
                source,
            })?;
        if !(4..=5).contains(&raw.version) {
            return Err(bad(format!(
                "version {} is not supported (4 and 5 are)",
                raw.version
            )));
        }
        let map = raw.listener_security_protocol_map.unwrap_or_default();
        let endpoints = raw
            .endpoints
            .iter()
            .map(|text| {
                parse_endpoint(text, &map)
                    .ok_or_else(|| bad(format!("endpoint {text:?} is not LISTENER://host:port")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let port = raw
            .port
            .and_then(|port| u16::try_from(port).ok())
            .filter(|port| *port > 0);
        Ok(Self {
            broker_id,
            version: raw.version,
            endpoints,
            host: raw.host.filter(|host| !host.is_empty()),
            port,
            rack: raw.rack,
            listener_security_protocol_map: map,
            timestamp_ms: raw.timestamp.and_then(|t| t.parse().ok()),
        })
    }

    /// The endpoint of a listener, by name.
    pub fn endpoint(&self, listener: &str) -> Option<&Endpoint> {
        self.endpoints
            .iter()
            .find(|endpoint| endpoint.listener == listener)
    }

    /// True when some listener advertises this host (e.g. the ENI's IP address).
    pub fn advertises_host(&self, host: &str) -> bool {
        self.endpoints.iter().any(|endpoint| endpoint.host == host)
    }
}

fn parse_endpoint(text: &str, map: &BTreeMap<String, String>) -> Option<Endpoint> {
    let (listener, address) = text.split_once("://")?;
    let (host, port) = address.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if listener.is_empty() {
        return None;
    }
    Some(Endpoint {
        listener: listener.to_owned(),
        host: host.to_owned(),
        port: port.parse().ok()?,
        security_protocol: map
            .get(listener)
            .cloned()
            .unwrap_or_else(|| listener.to_owned()),
    })
}

/// Reads and watches Kafka's broker registrations, on its own ZooKeeper session (read-only, so a new session
/// is opened transparently when one expires: nothing is owned here).
pub struct RegistrationWatch {
    connection: Connection,
    ids_path: String,
}

impl RegistrationWatch {
    /// A watch on the ensemble `connect` (`host:port,...`), Kafka living under `kafka_chroot` (`""` or `/` is
    /// the root). Connects lazily, at the first call.
    pub fn new(connect: &str, session_timeout: Duration, kafka_chroot: &str) -> Self {
        let chroot = kafka_chroot.trim_end_matches('/');
        Self {
            connection: Connection::new(connect, session_timeout, None),
            ids_path: format!("{chroot}/brokers/ids"),
        }
    }

    /// Reads on the claim's session (`ZkCoordination::shared_session`) while it lives instead of opening a
    /// second one; a session of its own is opened only when there is none to borrow.
    pub fn borrowing(mut self, shared: SharedSession) -> Self {
        self.connection = self.connection.borrowing(shared);
        self
    }

    /// The partitions `id` replicates, each with its leader and ISR, and the live brokers, as Kafka records them
    /// in ZooKeeper ([`crate::partitions`]).
    pub async fn replicated_by(
        &self,
        id: BrokerId,
    ) -> Result<berth_core::replication::ReplicationView, ZkError> {
        let client = self.connection.client(None).await?;
        let brokers = self.ids_path.trim_end_matches("/ids");
        crate::partitions::replicated_by(&client, brokers, id).await
    }

    /// The znode of a broker's registration.
    pub fn path(&self, id: BrokerId) -> String {
        format!("{}/{id}", self.ids_path)
    }

    /// The registration of `id` now, if Kafka has one.
    pub async fn get(&self, id: BrokerId) -> Result<Option<Registration>, ZkError> {
        let path = self.path(id);
        let client = self.connection.client(None).await?;
        match client.get_data(&path).await {
            Ok((body, _)) => Registration::parse(id, &path, &body).map(Some),
            Err(zk::Error::NoNode) => Ok(None),
            Err(source) => Err(ZkError::op("get_data", &path, source)),
        }
    }

    /// Waits until `id` is registered and returns its registration; a watch wakes it, not a poll.
    pub async fn wait_for(
        &self,
        id: BrokerId,
        deadline: Deadline,
    ) -> Result<Registration, ZkError> {
        let path = self.path(id);
        loop {
            let client = self.connection.client(Some(deadline)).await?;
            let (stat, watcher) = within(
                deadline,
                &path,
                "exists",
                client.check_and_watch_stat(&path),
            )
            .await?;
            if stat.is_some() {
                match within(deadline, &path, "get_data", client.get_data(&path)).await {
                    Ok((body, _)) => return Registration::parse(id, &path, &body),
                    Err(ZkError::Op {
                        source: zk::Error::NoNode,
                        ..
                    }) => continue,
                    Err(error) => return Err(error),
                }
            }
            // The watch does not need the client: holding it could keep a borrowed session alive.
            drop(client);
            let event = tokio::time::timeout(deadline.remaining(), watcher.changed())
                .await
                .map_err(|_| ZkError::Timeout {
                    path: path.clone(),
                    waiting_for: "the broker's registration",
                })?;
            if event.event_type == zk::EventType::Session {
                self.connection.forget_if_terminated();
            }
        }
    }

    /// Returns once `id`'s registration is gone (at once if it is already absent); a watch wakes it.
    pub async fn wait_gone(&self, id: BrokerId) -> Result<(), ZkError> {
        let path = self.path(id);
        loop {
            let client = self.connection.client(None).await?;
            let (stat, watcher) = client
                .check_and_watch_stat(&path)
                .await
                .map_err(|source| ZkError::op("exists", &path, source))?;
            if stat.is_none() {
                return Ok(());
            }
            drop(client);
            let event = watcher.changed().await;
            match event.event_type {
                zk::EventType::NodeDeleted => return Ok(()),
                // An expired session cannot tell: look again on a new one (a broker's registration lives on
                // Kafka's session, not ours).
                zk::EventType::Session => self.connection.forget_if_terminated(),
                _ => {}
            }
        }
    }
}

/// Runs a ZooKeeper request, giving up at the deadline.
async fn within<T>(
    deadline: Deadline,
    path: &str,
    op: &'static str,
    request: impl std::future::Future<Output = Result<T, zk::Error>>,
) -> Result<T, ZkError> {
    match tokio::time::timeout(deadline.remaining(), request).await {
        Ok(result) => result.map_err(|source| ZkError::op(op, path, source)),
        Err(_) => Err(ZkError::Timeout {
            path: path.to_owned(),
            waiting_for: op,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_4_with_rack_and_two_listeners() {
        let body = br#"{"listener_security_protocol_map":{"PLAINTEXT":"PLAINTEXT","INTERNAL":"SSL"},
            "endpoints":["PLAINTEXT://10.0.0.5:9092","INTERNAL://[fd00::5]:9093"],"rack":"us-east-1a",
            "jmx_port":-1,"host":"10.0.0.5","timestamp":"1700000000000","port":9092,"version":4}"#;
        let registration =
            Registration::parse(BrokerId(3), "/brokers/ids/3", body).expect("parses");
        assert_eq!(registration.version, 4);
        assert_eq!(registration.host.as_deref(), Some("10.0.0.5"));
        assert_eq!(registration.port, Some(9092));
        assert_eq!(registration.rack.as_deref(), Some("us-east-1a"));
        assert_eq!(registration.timestamp_ms, Some(1_700_000_000_000));
        let internal = registration
            .endpoint("INTERNAL")
            .expect("INTERNAL listener");
        assert_eq!(
            (
                internal.host.as_str(),
                internal.port,
                internal.security_protocol.as_str()
            ),
            ("fd00::5", 9093, "SSL")
        );
        assert!(registration.advertises_host("10.0.0.5"));
    }

    #[test]
    fn version_5_without_plaintext_has_no_legacy_host() {
        let body = br#"{"features":{},"listener_security_protocol_map":{"SASL_SSL":"SASL_SSL"},
            "endpoints":["SASL_SSL://b1.example:9094"],"jmx_port":-1,"host":null,"timestamp":"1","port":-1,
            "version":5}"#;
        let registration =
            Registration::parse(BrokerId(1), "/brokers/ids/1", body).expect("parses");
        assert_eq!(
            (registration.host, registration.port, registration.rack),
            (None, None, None)
        );
        assert_eq!(registration.endpoints[0].host, "b1.example");
    }

    #[test]
    fn unknown_version_and_bad_endpoint_are_refused_with_the_path() {
        let old = br#"{"version":1,"host":"h","port":9092}"#;
        let error = Registration::parse(BrokerId(1), "/kafka/brokers/ids/1", old).unwrap_err();
        assert!(
            error.to_string().contains("/kafka/brokers/ids/1"),
            "{error}"
        );
        let bad = br#"{"version":4,"endpoints":["10.0.0.5:9092"]}"#;
        assert!(Registration::parse(BrokerId(1), "/brokers/ids/1", bad).is_err());
    }
}
