//! berth's configuration: `/etc/berth/berth.toml` plus `BERTH_*` environment overrides.
//!
//! Parsing is separate from loading: [`parse`] takes the file's text and an environment (a list of pairs), so
//! every rule is tested without touching the process environment or the disk; [`load`] reads the real ones.
//! Everything is validated before the daemon does anything, and every error names the key and the reason
//! (`zookeeper.session_timeout: must be between 2s and 40s, got 500ms`), so `berth check-config` and the
//! daemon can refuse a bad file with exit status 78 (EX_CONFIG) before touching a resource.
//!
//! Environment overrides use `BERTH_<SECTION>__<KEY>` (double underscore between levels, since keys contain
//! single underscores), e.g. `BERTH_ZOOKEEPER__CONNECT=10.0.0.5:2181`. List keys take comma-separated values.
//!
//! One module per job: `schema` (sections, keys, defaults), `parse` (text and environment to a validated
//! [`Config`]), `validate` (the rules), `derived` (what the daemon derives from them), `error`,
//! `kafka_security` (`[kafka.security]`, its rules and TLS files), [`secret`] (where secrets come from).

mod derived;
mod error;
mod kafka_security;
mod parse;
mod schema;
pub mod secret;
mod validate;

pub use berth_core::security::{SaslMechanism, SecurityProtocol};
pub use berth_core::{Filesystem, KafkaMode};
pub use error::ConfigError;
pub use kafka_security::{KafkaSecurity, TlsMaterial};
pub use parse::{load, load_from, parse, ENV_PREFIX};
pub use schema::*;
pub use secret::Secret;
pub use validate::is_kafka_cluster_id;

/// The default location of the configuration file.
pub const DEFAULT_PATH: &str = "/etc/berth/berth.toml";
