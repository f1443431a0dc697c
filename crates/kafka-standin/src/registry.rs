//! ZooKeeper mode: the cluster id and the broker's ephemeral registration, written as Kafka writes them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use zookeeper_client as zk;

use crate::settings::Settings;
use crate::Fatal;

/// A session to Kafka's ZooKeeper, paths under its chroot.
pub struct Registry {
    client: zk::Client,
    chroot: String,
}

fn keeper(op: &'static str, path: &str) -> impl FnOnce(zk::Error) -> Fatal {
    let path = path.to_owned();
    move |source| Fatal::ZooKeeper { op, path, source }
}

/// A random id shaped like Kafka's `Uuid` (22 characters of the URL-safe base64 alphabet), as Kafka makes
/// cluster and directory ids; only its uniqueness matters to the stand-in.
pub fn new_uuid() -> String {
    let mut bytes = [0u8; 16];
    if let Ok(mut urandom) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut urandom, &mut bytes);
    }
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits = u128::from_be_bytes(bytes);
    let mut sextets = Vec::with_capacity(22);
    for _ in 0..22 {
        sextets.push(ALPHABET[(bits & 0x3f) as usize] as char);
        bits >>= 6;
    }
    sextets.into_iter().rev().collect()
}

impl Registry {
    /// Opens a session and creates Kafka's persistent paths (chroot, `/brokers/ids`, `/cluster`) if absent.
    pub async fn connect(
        hosts: &str,
        chroot: &str,
        session_timeout: Duration,
    ) -> Result<Self, Fatal> {
        let client = zk::Client::connector()
            .with_session_timeout(session_timeout)
            .connect(hosts)
            .await
            .map_err(keeper("connect", hosts))?;
        let registry = Self {
            client,
            chroot: chroot.to_owned(),
        };
        let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
        for path in [registry.path("/brokers/ids"), registry.path("/cluster")] {
            registry
                .client
                .mkdir(&path, &persistent)
                .await
                .map_err(keeper("mkdir", &path))?;
        }
        Ok(registry)
    }

    fn path(&self, path: &str) -> String {
        format!("{}{path}", self.chroot)
    }

    /// The session's state changes (expiry ends the stand-in, as it would need a new registration).
    pub fn state_watcher(&self) -> zk::StateWatcher {
        self.client.state_watcher()
    }

    /// `/cluster/id`, created with a new id when absent (as the first Kafka broker of a cluster does).
    pub async fn cluster_id(&self) -> Result<String, Fatal> {
        let path = self.path("/cluster/id");
        loop {
            match self.client.get_data(&path).await {
                Ok((body, _)) => {
                    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    return value["id"].as_str().map(str::to_owned).ok_or_else(|| {
                        Fatal::ZooKeeper {
                            op: "parse",
                            path: path.clone(),
                            source: zk::Error::UnexpectedError(format!(
                                "not Kafka's cluster id JSON: {value}"
                            )),
                        }
                    });
                }
                Err(zk::Error::NoNode) => {
                    let body = json!({"version": "1", "id": new_uuid()}).to_string();
                    let options = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
                    match self.client.create(&path, body.as_bytes(), &options).await {
                        Ok(_) | Err(zk::Error::NodeExists) => continue,
                        Err(source) => {
                            return Err(Fatal::ZooKeeper {
                                op: "create",
                                path,
                                source,
                            })
                        }
                    }
                }
                Err(source) => {
                    return Err(Fatal::ZooKeeper {
                        op: "get_data",
                        path,
                        source,
                    })
                }
            }
        }
    }

    /// Registers `/brokers/ids/<id>` (ephemeral) with Kafka's version 5 JSON. A registration left by a previous,
    /// killed process lives until that session expires: wait for it to go (watched), for at most one session
    /// timeout, then give up as Kafka does.
    pub async fn register(&self, settings: &Settings) -> Result<String, Fatal> {
        let path = self.path(&format!("/brokers/ids/{}", settings.id));
        let body = registration_json(settings, now_millis()).to_string();
        let options = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
        let give_up = tokio::time::Instant::now() + self.client.session_timeout() * 2;
        loop {
            match self.client.create(&path, body.as_bytes(), &options).await {
                Ok(_) => return Ok(path),
                Err(zk::Error::NodeExists) => {
                    let (stat, watcher) = self
                        .client
                        .check_and_watch_stat(&path)
                        .await
                        .map_err(keeper("exists", &path))?;
                    if stat.is_some() {
                        println!(
                            "INFO [KafkaStandIn id={}] {path} exists (a previous session): waiting",
                            settings.id
                        );
                        if tokio::time::timeout_at(give_up, watcher.changed())
                            .await
                            .is_err()
                        {
                            return Err(Fatal::AlreadyRegistered { path });
                        }
                    }
                }
                Err(source) => {
                    return Err(Fatal::ZooKeeper {
                        op: "create",
                        path,
                        source,
                    })
                }
            }
        }
    }

    /// Deletes the registration (a controlled shutdown) and closes the session.
    pub async fn deregister(self, path: &str) {
        match self.client.delete(path, None).await {
            Ok(()) | Err(zk::Error::NoNode) => {}
            Err(error) => eprintln!("WARN [KafkaStandIn] deleting {path}: {error}"),
        }
    }
}

fn now_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

/// Kafka's broker registration, JSON version 5 (`BrokerIdZNode` since Kafka 2.7).
pub fn registration_json(settings: &Settings, timestamp_ms: u128) -> Value {
    let advertised = &settings.advertised;
    let protocol = settings
        .protocol_of(&advertised.name)
        .unwrap_or(&advertised.name)
        .to_owned();
    let endpoint = format!(
        "{}://{}:{}",
        advertised.name, advertised.host, advertised.port
    );
    let mut map = Map::new();
    map.insert("features".into(), json!({}));
    map.insert(
        "listener_security_protocol_map".into(),
        json!({ advertised.name.clone(): protocol.clone() }),
    );
    map.insert("endpoints".into(), json!([endpoint]));
    map.insert("jmx_port".into(), json!(-1));
    // The legacy host/port fields name the PLAINTEXT listener, if there is one.
    if protocol == "PLAINTEXT" {
        map.insert("port".into(), json!(advertised.port));
        map.insert("host".into(), json!(advertised.host));
    } else {
        map.insert("port".into(), json!(-1));
        map.insert("host".into(), Value::Null);
    }
    map.insert("version".into(), json!(5));
    map.insert("timestamp".into(), json!(timestamp_ms.to_string()));
    if let Some(rack) = &settings.rack {
        map.insert("rack".into(), json!(rack));
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;

    #[test]
    fn registration_has_kafkas_version_5_fields() {
        let properties = crate::settings::parse(
            "broker.id=1\nzookeeper.connect=127.0.0.1:2181\nadvertised.listeners=PLAINTEXT://10.0.0.5:9092\n\
             broker.rack=us-east-1a\n",
        );
        let settings = Settings::from_properties(&properties).unwrap();
        let json = registration_json(&settings, 1_700_000_000_000);
        assert_eq!(
            json,
            json!({"features":{},"listener_security_protocol_map":{"PLAINTEXT":"PLAINTEXT"},
                   "endpoints":["PLAINTEXT://10.0.0.5:9092"],"jmx_port":-1,"port":9092,"host":"10.0.0.5",
                   "version":5,"timestamp":"1700000000000","rack":"us-east-1a"})
        );
    }

    #[test]
    fn cluster_ids_look_like_kafkas() {
        let id = new_uuid();
        assert_eq!(id.len(), 22);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(id, new_uuid());
    }
}
