//! Kafka adapter for berth: the settings overlay, start and stop (systemd or a supervised child), and the
//! proof that Kafka serves as the claimed broker.
//!
//! The seed signalled CloudFormation when its script ended, whether Kafka served or not. Here "serving" is
//! evidence: in ZooKeeper mode Kafka's own registration `/brokers/ids/<id>` carries an endpoint on the ENI
//! address and port (watched, not polled, so it is seen within milliseconds), and in both modes a Kafka
//! protocol exchange (ApiVersions, then Metadata) on the advertised listener lists this broker id with the ENI
//! host. The same evidence, cheaply re-taken, is the health check while Healthy.
//!
//! In KRaft mode the first start on blank storage formats it first ([`format`]), with the configured cluster id.
//!
//! - [`overlay`]: rendering and atomically writing the settings berth owns.
//! - [`format`]: KRaft storage, formatted only when every log dir is blank, beside the log dirs ([`staging`]).
//! - [`format_rule`]: whether blank storage may be formatted (the birth rule and the majority check);
//!   [`quorum`]: DescribeQuorum and what berth reads from it; [`kraft`]: the adapter's KRaft side.
//! - [`supervisor`]: `systemctl` or a child process with systemd-like restarts.
//! - [`client`]: the one way to a listener (TCP, TLS through rustls, ApiVersions, SASL through [`sasl`]) for the
//!   probe, the replication read and DescribeQuorum.
//! - [`probe`]: the ApiVersions + Metadata round trip; [`wire`]: Kafka framing, client side only.
//! - [`listeners`]: `advertised.listeners` for every listener of the operator's.
//! - [`replication`]: every partition's replicas and ISR and each topic's `min.insync.replicas`, for the
//!   caught-up gate and the safe drain.
//! - [`properties`]: writing Java properties values as Kafka reads them (ISO-8859-1).
//! - [`settings`]: what the adapter reads, built by the daemon from its configuration.

pub mod client;
pub mod format;
pub mod format_rule;
pub mod kraft;
pub mod listeners;
pub mod overlay;
pub mod probe;
pub mod properties;
pub mod quorum;
pub mod replication;
pub mod sasl;
pub mod settings;
pub mod staging;
pub mod supervisor;
pub mod wire;

mod broker;

pub use broker::{KafkaBroker, KafkaError};
pub use settings::{KafkaSettings, RegistrationSettings, Supervision};
