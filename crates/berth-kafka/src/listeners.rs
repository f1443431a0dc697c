//! `advertised.listeners` for every listener of the operator's, not only the one berth probes.
//!
//! The overlay's `advertised.listeners` replaces the operator's value whole (the overlay is read last), so it must
//! name every listener Kafka should advertise: a broker with an inter-broker, a client and a controller listener
//! that advertised only berth's would lose the others. So berth reads `listeners` (and `advertised.listeners`)
//! from the operator's `server.properties` and renders, in the operator's order:
//! * the listener berth probes (`kafka.listener_name`): on the ENI address, at its port (which must be
//!   `kafka.port`);
//! * a listener the operator advertises already (a DNS name, a load balancer): as the operator wrote it;
//! * a listener that needs the broker's address (bound to all addresses, `0.0.0.0`, `::` or no host, or to the
//!   ENI address itself): on the ENI address at its own port, under its own name;
//! * any other (bound to a particular address, e.g. `127.0.0.1`): as bound.
//!
//! Kafka 4.x accepts controller listeners in `advertised.listeners` (KIP-853 gives controllers advertised
//! endpoints); they are rendered like the others. Without an operator's file berth advertises only its own
//! listener, as before.

use std::net::Ipv4Addr;
use std::path::Path;

/// One `NAME://host:port` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// The listener name, e.g. `INTERNAL`.
    pub name: String,
    /// The host as written (empty, an address, `[::1]`, a name).
    pub host: String,
    /// The port.
    pub port: u16,
}

impl Listener {
    fn render(&self) -> String {
        format!("{}://{}:{}", self.name, self.host, self.port)
    }

    /// Bound to every address (or none given), so only the broker knows its own.
    fn wildcard(&self) -> bool {
        matches!(self.host.as_str(), "" | "0.0.0.0" | "::" | "[::]")
    }
}

/// Parses Kafka's listener list (`NAME://host:port,...`).
pub fn parse(value: &str) -> Result<Vec<Listener>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let bad = || format!("{entry:?} is not NAME://host:port");
            let (name, address) = entry.split_once("://").ok_or_else(bad)?;
            let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
            Ok(Listener {
                name: name.trim().to_owned(),
                host: host.to_owned(),
                port: port.parse().map_err(|_| bad())?,
            })
        })
        .collect()
}

/// What the operator's `server.properties` says about listeners.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperatorListeners {
    /// `listeners`.
    pub listeners: Vec<Listener>,
    /// `advertised.listeners`.
    pub advertised: Vec<Listener>,
    /// `process.roles` is `controller` alone: the node has no broker listener for berth to probe.
    pub controller_only: bool,
}

/// Why the operator's listeners could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The file could not be read.
    Io(std::io::Error),
    /// A listener list is malformed.
    Listeners(String),
}

/// `listeners` and `advertised.listeners` of the operator's `server.properties` at `path` (none when it is
/// absent), read as Java reads properties files.
pub fn read_operator(path: &Path) -> Result<OperatorListeners, ReadError> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(OperatorListeners::default())
        }
        Err(error) => return Err(ReadError::Io(error)),
    };
    let properties = java_properties::read(std::io::BufReader::new(file)).map_err(|error| {
        ReadError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, error))
    })?;
    let list = |key: &str| {
        parse(properties.get(key).map(String::as_str).unwrap_or_default()).map_err(|reason| {
            ReadError::Listeners(format!("{key} in {}: {reason}", path.display()))
        })
    };
    Ok(OperatorListeners {
        listeners: list("listeners")?,
        advertised: list("advertised.listeners")?,
        controller_only: properties
            .get("process.roles")
            .is_some_and(|roles| roles.split(',').map(str::trim).eq(["controller"])),
    })
}

/// The value of `advertised.listeners` for a broker at `eni`, probed on listener `probed` at `port`. A
/// controller-only node has no such listener (berth judges it on its controller listener): its own listeners
/// are advertised at `eni`.
pub fn advertised(
    operator: &OperatorListeners,
    probed: &str,
    port: u16,
    eni: Ipv4Addr,
) -> Result<String, String> {
    let berths = format!("{probed}://{eni}:{port}");
    if operator.listeners.is_empty() {
        return Ok(berths);
    }
    let names: Vec<&str> = operator.listeners.iter().map(|l| l.name.as_str()).collect();
    let mut entries = Vec::with_capacity(operator.listeners.len());
    for listener in &operator.listeners {
        if listener.name == probed {
            if listener.port != port {
                return Err(format!(
                    "kafka.port is {port} but the operator's listener {probed} is on port {} ({})",
                    listener.port,
                    listener.render()
                ));
            }
            entries.push(berths.clone());
        } else if let Some(theirs) = operator.advertised.iter().find(|a| a.name == listener.name) {
            entries.push(theirs.render());
        } else if listener.wildcard() || listener.host == eni.to_string() {
            entries.push(format!("{}://{eni}:{}", listener.name, listener.port));
        } else {
            entries.push(listener.render());
        }
    }
    if !names.contains(&probed) && !operator.controller_only {
        return Err(format!(
            "kafka.listener_name {probed} is not one of the operator's listeners [{}]",
            names.join(", ")
        ));
    }
    Ok(entries.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENI: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 11);

    fn operator(listeners: &str, advertised: &str) -> OperatorListeners {
        OperatorListeners {
            listeners: parse(listeners).unwrap(),
            advertised: parse(advertised).unwrap(),
            controller_only: false,
        }
    }

    #[test]
    fn every_listener_that_needs_the_brokers_address_gets_the_eni_address() {
        let two = operator(
            "INTERNAL://0.0.0.0:9094,CLIENT://:9092,CONTROLLER://10.0.2.11:9093,ADMIN://127.0.0.1:9095",
            "",
        );
        assert_eq!(
            advertised(&two, "INTERNAL", 9094, ENI).unwrap(),
            "INTERNAL://10.0.2.11:9094,CLIENT://10.0.2.11:9092,CONTROLLER://10.0.2.11:9093,ADMIN://127.0.0.1:9095"
        );
    }

    #[test]
    fn a_controller_only_node_advertises_its_controller_listener_without_the_probed_one() {
        let controller = OperatorListeners {
            controller_only: true,
            ..operator("CONTROLLER://0.0.0.0:9093", "")
        };
        assert_eq!(
            advertised(&controller, "PLAINTEXT", 9092, ENI).unwrap(),
            "CONTROLLER://10.0.2.11:9093"
        );
        let broker = operator("CONTROLLER://0.0.0.0:9093", "");
        assert!(advertised(&broker, "PLAINTEXT", 9092, ENI)
            .unwrap_err()
            .contains("kafka.listener_name PLAINTEXT is not one of the operator's listeners"));
    }

    #[test]
    fn the_operators_own_advertised_entries_are_kept_but_berths_listener_is_the_eni_address() {
        let listeners = operator(
            "INTERNAL://0.0.0.0:9094,EXTERNAL://0.0.0.0:9096",
            "INTERNAL://old-host:9094,EXTERNAL://kafka-1.example.com:19096",
        );
        assert_eq!(
            advertised(&listeners, "INTERNAL", 9094, ENI).unwrap(),
            "INTERNAL://10.0.2.11:9094,EXTERNAL://kafka-1.example.com:19096"
        );
    }

    #[test]
    fn the_operators_file_is_read_as_java_reads_it_and_may_be_absent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.properties");
        assert_eq!(read_operator(&path).unwrap(), OperatorListeners::default());
        std::fs::write(
            &path,
            "listeners = INTERNAL://0.0.0.0:9094,\\\n   CLIENT://:9092\n#advertised.listeners=X://y:1\n",
        )
        .unwrap();
        let read = read_operator(&path).unwrap();
        assert_eq!(
            read.listeners,
            parse("INTERNAL://0.0.0.0:9094,CLIENT://:9092").unwrap()
        );
        assert!(read.advertised.is_empty(), "a comment is not a setting");
        assert!(!read.controller_only);
        for (roles, only) in [
            ("controller", true),
            (" controller ", true),
            ("broker,controller", false),
        ] {
            std::fs::write(&path, format!("process.roles={roles}\n")).unwrap();
            assert_eq!(
                read_operator(&path).unwrap().controller_only,
                only,
                "{roles}"
            );
        }
        std::fs::write(&path, "listeners=PLAINTEXT:9092\n").unwrap();
        assert!(matches!(read_operator(&path), Err(ReadError::Listeners(_))));
    }

    #[test]
    fn without_the_operators_listeners_only_berths_is_advertised() {
        assert_eq!(
            advertised(&OperatorListeners::default(), "PLAINTEXT", 9092, ENI).unwrap(),
            "PLAINTEXT://10.0.2.11:9092"
        );
    }

    #[test]
    fn a_probed_listener_that_is_absent_or_on_another_port_is_refused() {
        let listeners = operator("CLIENT://0.0.0.0:9092", "");
        let absent = advertised(&listeners, "INTERNAL", 9094, ENI).unwrap_err();
        assert!(
            absent.contains("not one of the operator's listeners [CLIENT]"),
            "{absent}"
        );
        let port = advertised(&listeners, "CLIENT", 9094, ENI).unwrap_err();
        assert!(port.contains("kafka.port is 9094 but"), "{port}");
        assert!(parse("PLAINTEXT:9092").is_err());
        assert_eq!(parse("A://[::1]:1").unwrap()[0].host, "[::1]");
    }
}
