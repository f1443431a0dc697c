//! From the file's text and an environment to a validated [`Config`]: the TOML layered under `BERTH_*`
//! overrides, deserialized with the failing key named, then validated.

use std::path::Path;

use crate::{Config, ConfigError};

/// The prefix of environment overrides.
pub const ENV_PREFIX: &str = "BERTH";

/// Keys whose environment override is a comma-separated list.
const LIST_KEYS: [&str; 7] = [
    "claim.ids",
    "kafka.controller_ids",
    "storage.log_dirs",
    "storage.mkfs_options",
    "kafka.command",
    "kafka.format_command",
    "aws.takeover_owner_states",
];

/// Parses and validates a configuration from the file's text and an environment. Pure.
pub fn parse<'a>(
    toml_text: &str,
    environment: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Config, ConfigError> {
    let overrides: config::Map<String, String> = environment
        .into_iter()
        // Only BERTH_<SECTION>__<KEY> is an override; BERTH_LOG and the like belong to the process, not the file.
        .filter(|(name, _)| {
            name.strip_prefix(ENV_PREFIX)
                .and_then(|rest| rest.strip_prefix('_'))
                .is_some_and(|key| key.contains("__"))
        })
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    let mut environment = config::Environment::with_prefix(ENV_PREFIX)
        .prefix_separator("_")
        .separator("__")
        .try_parsing(true)
        .list_separator(",")
        .source(Some(overrides));
    for key in LIST_KEYS {
        environment = environment.with_list_parse_key(key);
    }
    let layered = config::Config::builder()
        .add_source(config::File::from_str(toml_text, config::FileFormat::Toml))
        .add_source(environment)
        .build()
        .map_err(|error| from_config_error(&error))?;
    let config: Config = serde_path_to_error::deserialize(layered).map_err(|error| {
        let key = error.path().to_string();
        let reason = strip_key_suffix(&error.inner().to_string());
        ConfigError::Invalid {
            key: if key == "." {
                "(top level)".into()
            } else {
                key
            },
            reason,
        }
    })?;
    let mut config = config;
    config.claim.backend = Some(config.claim_backend());
    config.validate()?;
    Ok(config)
}

/// Reads the file and the process environment, then [`parse`]s.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Unreadable {
        path: path.to_owned(),
        reason: error.to_string(),
    })?;
    let environment: Vec<(String, String)> = std::env::vars().collect();
    parse(
        &text,
        environment.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )
}

fn from_config_error(error: &config::ConfigError) -> ConfigError {
    match error {
        config::ConfigError::Type { key: Some(key), .. } => {
            ConfigError::invalid(key, strip_key_suffix(&error.to_string()))
        }
        config::ConfigError::FileParse { cause, .. } => {
            ConfigError::invalid("(file)", cause.to_string())
        }
        other => ConfigError::invalid("(file)", other.to_string()),
    }
}

/// The config crate appends " for key `x`" to type errors; the key is reported separately.
fn strip_key_suffix(message: &str) -> String {
    match message.find(" for key `") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}
