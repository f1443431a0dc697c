//! From the file's text and an environment to a validated [`Config`]: the TOML layered under `BERTH_*`
//! overrides, deserialized with the failing key named, then validated.

use crate::{secret, Config, ConfigError};

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
    build(
        toml_text,
        overrides_of(environment),
        &secret::OutsideSecrets::default(),
    )
}

/// The dotted key a `BERTH_<SECTION>__<KEY>` variable overrides (`BERTH_AWS__CLOUDFORMATION__SIGNAL` is
/// `aws.cloudformation.signal`); `None` for any other variable (`BERTH_LOG` and the like belong to the process).
pub fn key_of_variable(name: &str) -> Option<String> {
    let rest = name.strip_prefix(ENV_PREFIX)?.strip_prefix('_')?;
    rest.contains("__")
        .then(|| rest.to_ascii_lowercase().replace("__", "."))
}

/// The `BERTH_<SECTION>__<KEY>` overrides among `environment` (a later one of the same name wins).
pub(crate) fn overrides_of<'a>(
    environment: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> config::Map<String, String> {
    environment
        .into_iter()
        .filter(|(name, _)| key_of_variable(name).is_some())
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

/// The TOML layered under `overrides`, deserialized (the failing key named), the secrets put in (systemd
/// `credentials` before the overrides' raw values, before the file's) and validated.
pub(crate) fn build(
    toml_text: &str,
    mut overrides: config::Map<String, String>,
    credentials: &secret::OutsideSecrets,
) -> Result<Config, ConfigError> {
    let secrets = secret::take_from_environment(&mut overrides);
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
    let mut config: Config = serde_path_to_error::deserialize(layered).map_err(|error| {
        let key = error.path().to_string();
        let reason = strip_key_suffix(&error.inner().to_string());
        match reason
            .strip_prefix("missing field `")
            .and_then(|r| r.strip_suffix('`'))
        {
            Some(field) if key == "." => ConfigError::required(field, "a required setting"),
            Some(field) => ConfigError::required(&format!("{key}.{field}"), "a required setting"),
            None => ConfigError::Invalid {
                key: if key == "." {
                    "(top level)".into()
                } else {
                    key
                },
                reason,
            },
        }
    })?;
    secret::apply(&mut config, credentials, &secrets)?;
    config.claim.backend = Some(config.claim_backend());
    config.validate()?;
    Ok(config)
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
