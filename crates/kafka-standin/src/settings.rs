//! The settings the stand-in takes from Kafka's properties, read as Kafka reads them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::Fatal;

/// Settings as read from properties files; later files win (see [`read_into`]).
pub type Properties = std::collections::HashMap<String, String>;

/// Reads Java properties text with the `java-properties` crate (ISO-8859-1, as `java.util.Properties.load`),
/// not berth's reader: the stand-in shares no properties code with the berth it tests.
pub fn read_into(bytes: &[u8], into: &mut Properties) -> Result<(), String> {
    let read =
        java_properties::read(std::io::Cursor::new(bytes)).map_err(|error| error.to_string())?;
    into.extend(read);
    Ok(())
}

/// Reads one properties text.
#[cfg(test)]
pub fn parse(text: &str) -> Properties {
    let mut properties = Properties::new();
    read_into(text.as_bytes(), &mut properties).expect("valid properties");
    properties
}

/// One `NAME://host:port` listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Listener name.
    pub name: String,
    /// Host (empty = all interfaces).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl Listener {
    fn parse(text: &str) -> Option<Self> {
        let (name, address) = text.trim().split_once("://")?;
        let (host, port) = address.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Some(Self {
            name: name.to_owned(),
            host: host.to_owned(),
            port: port.parse().ok()?,
        })
    }
}

/// How the stand-in finds its controllers, as Kafka decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// ZooKeeper mode: `zookeeper.connect`, registration in `/brokers/ids`.
    Zookeeper {
        /// Hosts (`host:port,...`).
        hosts: String,
        /// Kafka's chroot (`""` = root).
        chroot: String,
        /// Session timeout.
        session_timeout: Duration,
    },
    /// KRaft mode (`process.roles` is set): no registration the stand-in can make.
    Kraft,
}

/// The settings the stand-in honours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// ZooKeeper or KRaft.
    pub mode: Mode,
    /// `broker.id` (ZooKeeper mode) or `node.id` (KRaft).
    pub id: i32,
    /// The advertised listener (the first of `advertised.listeners`, else of `listeners`).
    pub advertised: Listener,
    /// Where to bind it (`listeners` entry of the same name, else the advertised address).
    pub bind: SocketAddr,
    /// `listener.security.protocol.map` (defaults: each standard protocol maps to itself).
    pub security_protocols: Vec<(String, String)>,
    /// `log.dirs` (else `log.dir`, else Kafka's default).
    pub log_dirs: Vec<PathBuf>,
    /// `broker.rack`.
    pub rack: Option<String>,
}

fn required<'a>(properties: &'a Properties, key: &str) -> Result<&'a str, Fatal> {
    properties
        .get(key)
        .map(|value| value.trim())
        .filter(|value| !value.is_empty())
        .ok_or_else(|| {
            Fatal::config(format!(
                "Missing required configuration \"{key}\" which has no default value."
            ))
        })
}

fn listeners(properties: &Properties, key: &str) -> Result<Vec<Listener>, Fatal> {
    let Some(text) = properties.get(key) else {
        return Ok(Vec::new());
    };
    text.split(',')
        .filter(|entry| !entry.trim().is_empty())
        .map(|entry| {
            Listener::parse(entry).ok_or_else(|| {
                Fatal::config(format!(
                    "Invalid value {entry} for configuration {key}: not NAME://host:port"
                ))
            })
        })
        .collect()
}

/// KRaft (`process.roles` set) or ZooKeeper mode with its ensemble, chroot and session timeout; and the key that
/// names the broker's id in that mode.
fn mode(properties: &Properties) -> Result<(&'static str, Mode), Fatal> {
    let kraft = properties
        .get("process.roles")
        .is_some_and(|roles| !roles.trim().is_empty());
    if kraft {
        return Ok(("node.id", Mode::Kraft));
    }
    let connect = required(properties, "zookeeper.connect")?;
    let (hosts, chroot) = match connect.find('/') {
        Some(slash) => (&connect[..slash], connect[slash..].trim_end_matches('/')),
        None => (connect, ""),
    };
    let millis: u64 = match properties.get("zookeeper.session.timeout.ms") {
        Some(text) => text.trim().parse().map_err(|_| {
            Fatal::config(format!(
                "Invalid value {text} for configuration zookeeper.session.timeout.ms"
            ))
        })?,
        None => 18_000,
    };
    let mode = Mode::Zookeeper {
        hosts: hosts.to_owned(),
        chroot: chroot.to_owned(),
        session_timeout: Duration::from_millis(millis),
    };
    Ok(("broker.id", mode))
}

/// The listener clients are told of (the first advertised one, else the first bound one) and the address the
/// stand-in binds for it (its bound listener of the same name, `0.0.0.0` for an empty host).
fn advertised_and_bind(properties: &Properties) -> Result<(Listener, SocketAddr), Fatal> {
    let bound = listeners(properties, "listeners")?;
    let advertised = listeners(properties, "advertised.listeners")?
        .into_iter()
        .next()
        .or_else(|| bound.first().cloned())
        .ok_or_else(|| {
            Fatal::config("no listener: set advertised.listeners or listeners".into())
        })?;
    let bind_listener = bound
        .iter()
        .find(|l| l.name == advertised.name)
        .unwrap_or(&advertised);
    let bind_host = if bind_listener.host.is_empty() {
        "0.0.0.0"
    } else {
        bind_listener.host.as_str()
    };
    let bind: SocketAddr = format!("{bind_host}:{}", bind_listener.port)
        .parse()
        .map_err(|_| {
            Fatal::config(format!(
                "the stand-in binds IP addresses only, not {bind_host:?}"
            ))
        })?;
    Ok((advertised, bind))
}

impl Settings {
    /// Reads the settings from merged properties.
    pub fn from_properties(properties: &Properties) -> Result<Self, Fatal> {
        let (id_key, mode) = mode(properties)?;
        let id_text = required(properties, id_key)?;
        let id: i32 = id_text.parse().ok().filter(|id| *id >= 0).ok_or_else(|| {
            Fatal::config(format!(
                "Invalid value {id_text} for configuration {id_key}"
            ))
        })?;
        let (advertised, bind) = advertised_and_bind(properties)?;
        let mut security_protocols: Vec<(String, String)> =
            ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
                .into_iter()
                .map(|p| (p.to_owned(), p.to_owned()))
                .collect();
        if let Some(map) = properties.get("listener.security.protocol.map") {
            security_protocols = map
                .split(',')
                .filter_map(|pair| pair.split_once(':'))
                .map(|(name, protocol)| (name.trim().to_owned(), protocol.trim().to_owned()))
                .collect();
        }
        let dirs = properties
            .get("log.dirs")
            .or_else(|| properties.get("log.dir"))
            .map(String::as_str);
        let log_dirs = dirs
            .unwrap_or("/tmp/kafka-logs")
            .split(',')
            .map(str::trim)
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from)
            .collect();
        let rack = properties
            .get("broker.rack")
            .map(|rack| rack.trim().to_owned())
            .filter(|rack| !rack.is_empty());
        Ok(Self {
            mode,
            id,
            advertised,
            bind,
            security_protocols,
            log_dirs,
            rack,
        })
    }

    /// The security protocol of a listener name.
    pub fn protocol_of(&self, listener: &str) -> Option<&str> {
        self.security_protocols
            .iter()
            .find(|(name, _)| name == listener)
            .map(|(_, protocol)| protocol.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overlay_wins_over_the_operators_file() {
        let mut properties = Properties::new();
        read_into(
            b"broker.id=-1\nlisteners=PLAINTEXT://:9092\nzookeeper.connect=127.0.0.1:2181/kafka\nlog.dirs=/tmp/x\n",
            &mut properties,
        )
        .unwrap();
        read_into(
            b"broker.id=2\nadvertised.listeners=PLAINTEXT://10.0.0.5:9092\nlog.dirs=/var/lib/kafka/data\nbroker.rack=az-b\n",
            &mut properties,
        )
        .unwrap();
        let settings = Settings::from_properties(&properties).unwrap();
        assert_eq!(settings.id, 2);
        assert_eq!(
            settings.advertised,
            Listener {
                name: "PLAINTEXT".into(),
                host: "10.0.0.5".into(),
                port: 9092
            }
        );
        assert_eq!(settings.bind, "0.0.0.0:9092".parse().unwrap());
        assert_eq!(settings.log_dirs, [PathBuf::from("/var/lib/kafka/data")]);
        assert_eq!(settings.rack.as_deref(), Some("az-b"));
        assert_eq!(
            settings.mode,
            Mode::Zookeeper {
                hosts: "127.0.0.1:2181".into(),
                chroot: "/kafka".into(),
                session_timeout: Duration::from_secs(18)
            }
        );
    }

    #[test]
    fn kraft_mode_needs_node_id() {
        let properties = parse("process.roles=broker\nlisteners=PLAINTEXT://127.0.0.1:9092\n");
        let error = Settings::from_properties(&properties).unwrap_err();
        assert!(error.to_string().contains("node.id"), "{error}");
    }
}
