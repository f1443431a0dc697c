//! berth's configuration: `/etc/berth/berth.toml` plus `BERTH_*` overrides from the environment file
//! (`/etc/berth/environment`) and the process environment.
//!
//! Parsing is separate from loading: [`parse`] and [`parse_sources`] take the texts and environments (lists of
//! pairs), so every rule is tested without touching the process environment or the disk; [`load_sources`] reads
//! the real ones.
//! Everything is validated before the daemon does anything, and every error names the key and the reason
//! (`zookeeper.session_timeout: must be between 2s and 40s, got 500ms`), so `berth check-config` and the
//! daemon can refuse a bad file with exit status 78 (EX_CONFIG) before touching a resource.
//!
//! Environment overrides use `BERTH_<SECTION>__<KEY>` (double underscore between levels, since keys contain
//! single underscores), e.g. `BERTH_ZOOKEEPER__CONNECT=10.0.0.5:2181`. List keys take comma-separated values.
//!
//! One module per job: `schema` (sections, keys, defaults), `parse` (text and environment to a validated
//! [`Config`]), `validate` (the rules), `derived` (what the daemon derives from them), `budget` (the time budgets
//! against the lifecycle hooks), `salvage` (what a configuration that does not validate still says about where
//! to report that), `env_file` (systemd's `EnvironmentFile=` syntax), `sources` (the layers every command reads,
//! and where each value came from), `kafka_security` (`[kafka.security]`, its rules and TLS files), [`secret`]
//! (where secrets come from), `error`.

mod budget;
mod derived;
mod env_file;
mod error;
mod kafka_security;
mod parse;
mod salvage;
mod schema;
pub mod secret;
mod sources;
mod validate;

pub use berth_core::security::{SaslMechanism, SecurityProtocol};
pub use berth_core::{Filesystem, KafkaMode};
pub use budget::{BudgetWarning, TEARDOWN_ACTION_TIMEOUT};
pub use env_file::{missing_from_process, parse_env_file, read_env_file, DEFAULT_ENV_FILE};
pub use error::ConfigError;
pub use kafka_security::{KafkaSecurity, TlsMaterial};
pub use parse::{key_of_variable, parse, ENV_PREFIX};
pub use salvage::{salvage, Salvage};
pub use schema::*;
pub use secret::Secret;
pub use sources::{load_sources, load_sources_in, parse_sources, EnvFile, Loaded, Origin, Sources};
pub use validate::{is_kafka_cluster_id, transient_unit};

/// The default location of the configuration file.
pub const DEFAULT_PATH: &str = "/etc/berth/berth.toml";
