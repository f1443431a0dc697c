//! From the file's text and an environment to a validated [`Config`]: the TOML layered under `BERTH_*`
//! overrides, deserialized with the failing key named, then validated.

use std::path::Path;

use crate::{secret, Config, ConfigError};

/// The prefix of environment overrides.
pub const ENV_PREFIX: &str = "BERTH";

/// Keys whose environment override is a comma-separated list.
const LIST_KEYS: [&str; 6] = [
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
    parse_with_credentials(toml_text, environment, &secret::OutsideSecrets::default())
}

/// [`parse`], with the secrets of systemd credentials winning over the environment's and the file's.
fn parse_with_credentials<'a>(
    toml_text: &str,
    environment: impl IntoIterator<Item = (&'a str, &'a str)>,
    credentials: &secret::OutsideSecrets,
) -> Result<Config, ConfigError> {
    let mut overrides: config::Map<String, String> = environment
        .into_iter()
        // Only BERTH_<SECTION>__<KEY> is an override; BERTH_LOG and the like belong to the process, not the file.
        .filter(|(name, _)| {
            name.strip_prefix(ENV_PREFIX)
                .and_then(|rest| rest.strip_prefix('_'))
                .is_some_and(|key| key.contains("__"))
        })
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
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
        ConfigError::Invalid {
            key: if key == "." {
                "(top level)".into()
            } else {
                key
            },
            reason,
        }
    })?;
    secret::apply(&mut config, credentials, &secrets)?;
    config.claim.backend = Some(config.claim_backend());
    config.validate()?;
    Ok(config)
}

/// Reads the file and the process environment, then [`parse`]s; see [`load_from`].
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let environment: Vec<(String, String)> = std::env::vars().collect();
    load_from(path, &environment)
}

/// Reads the file, the systemd credentials of `$CREDENTIALS_DIRECTORY` (named in `environment`) and the TLS files,
/// and [`parse`]s with `environment`. A secret in a file every user may read is refused.
pub fn load_from(path: &Path, environment: &[(String, String)]) -> Result<Config, ConfigError> {
    use std::os::unix::fs::PermissionsExt as _;
    let unreadable = |error: std::io::Error| ConfigError::Unreadable {
        path: path.to_owned(),
        reason: error.to_string(),
    };
    let text = std::fs::read_to_string(path).map_err(unreadable)?;
    let mode = std::fs::metadata(path)
        .map_err(unreadable)?
        .permissions()
        .mode();
    secret::refuse_world_readable(&text, mode)?;
    let credentials = match environment
        .iter()
        .find(|(name, _)| name == secret::CREDENTIALS_DIRECTORY)
    {
        Some((_, directory)) => secret::read_credentials(Path::new(directory))?,
        None => secret::OutsideSecrets::default(),
    };
    let config = parse_with_credentials(
        &text,
        environment.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        &credentials,
    )?;
    config.check_tls_files()?;
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
