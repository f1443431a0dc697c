//! The sources of a configuration, in increasing precedence: the defaults, the file (`/etc/berth/berth.toml`),
//! the environment file (`/etc/berth/environment`) and the process environment, each of the last two holding
//! `BERTH_<SECTION>__<KEY>` overrides. `berth run` and every subcommand load the same sources, and
//! `berth check-config` shows which one each effective value came from ([`Loaded::render_with_origins`]).
//!
//! Secrets have one more source, above all these: the unit's systemd credentials (`$CREDENTIALS_DIRECTORY`, named
//! by the process environment; [`crate::secret`]). They are read with the other sources, not after the merge, so
//! that a credential has an [`Origin`] like any value and one validation sees the finished configuration. A
//! secret's value is never rendered: `check-config` says only that it is set, and where from.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::env_file::read_env_file;
use crate::parse::{build, key_of_variable, overrides_of};
use crate::secret::{self, OutsideSecrets, SECRET_KEYS};
use crate::{Config, ConfigError};

/// Which files to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// The configuration file (must exist).
    pub file: PathBuf,
    /// The environment file, if one is read.
    pub env_file: Option<EnvFile>,
}

/// The environment file to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFile {
    /// Its path.
    pub path: PathBuf,
    /// True when it was named explicitly: then it must exist (the default location is optional, as the unit's
    /// `EnvironmentFile=-` is).
    pub required: bool,
}

/// Where an effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Nothing set it.
    Default,
    /// The configuration file.
    File(PathBuf),
    /// A variable in the environment file.
    EnvFile {
        /// `BERTH_<SECTION>__<KEY>`.
        variable: String,
        /// The file.
        path: PathBuf,
    },
    /// A variable in the process environment.
    Environment {
        /// `BERTH_<SECTION>__<KEY>`.
        variable: String,
    },
    /// Derived from another key when unset.
    Derived(&'static str),
    /// A systemd credential (a secret, or the file of a TLS key).
    Credential(PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::EnvFile { variable, path } => write!(f, "{variable} in {}", path.display()),
            Origin::Environment { variable } => write!(f, "{variable} in the process environment"),
            Origin::Derived(from) => write!(f, "default, from {from}"),
            Origin::Credential(path) => write!(f, "the systemd credential {}", path.display()),
        }
    }
}

/// A validated configuration and where each of its values came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    origins: BTreeMap<String, Origin>,
}

/// Keys whose default depends on another key, and that key.
const DERIVED: [(&str, &str); 1] = [("claim.backend", "kafka.mode")];

impl Loaded {
    /// Where `key` (dotted, e.g. `zookeeper.connect`) came from.
    pub fn origin(&self, key: &str) -> Origin {
        self.origins.get(key).cloned().unwrap_or_else(|| {
            DERIVED
                .iter()
                .find(|(derived, _)| *derived == key)
                .map_or(Origin::Default, |(_, from)| Origin::Derived(from))
        })
    }

    /// The effective configuration as TOML, secrets left out, each value followed by a comment naming its source.
    pub fn render_with_origins(&self) -> String {
        let text = toml::to_string(&self.config)
            .unwrap_or_else(|error| format!("# cannot render the configuration: {error}\n"));
        let mut out = String::new();
        let mut section = String::new();
        for line in text.lines() {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_owned();
                out.push_str(line);
            } else if let Some((key, _)) = line.split_once(" = ") {
                let origin = self.origin(&format!("{section}.{key}"));
                out.push_str(&format!("{line:<40} # {origin}"));
            } else {
                out.push_str(line);
            }
            out.push('\n');
        }
        for secret in SECRET_KEYS {
            if let Some(origin) = self.origins.get(secret) {
                out.push_str(&format!("# {secret} is set ({origin}), not shown\n"));
            }
        }
        out
    }
}

/// Reads the configuration file, the environment file (when one is named), the process environment and the
/// systemd credentials it names, then [`parse_sources`]; see [`load_sources_in`].
pub fn load_sources(sources: &Sources) -> Result<Loaded, ConfigError> {
    let process: Vec<(String, String)> = std::env::vars().collect();
    load_sources_in(sources, &process)
}

/// [`load_sources`] with `process` as the process environment: also reads the credentials of its
/// `$CREDENTIALS_DIRECTORY`, refuses a secret in a file every user may read, and checks the TLS files.
pub fn load_sources_in(
    sources: &Sources,
    process: &[(String, String)],
) -> Result<Loaded, ConfigError> {
    use std::os::unix::fs::PermissionsExt as _;
    let unreadable = |error: std::io::Error| ConfigError::Unreadable {
        path: sources.file.clone(),
        reason: error.to_string(),
    };
    let text = std::fs::read_to_string(&sources.file).map_err(unreadable)?;
    let mode = std::fs::metadata(&sources.file)
        .map_err(unreadable)?
        .permissions()
        .mode();
    secret::refuse_world_readable(&text, mode)?;
    let env_file = read_named_env_file(sources.env_file.as_ref())?;
    let credentials = match process
        .iter()
        .find(|(name, _)| name == secret::CREDENTIALS_DIRECTORY)
    {
        Some((_, directory)) => secret::read_credentials(Path::new(directory))?,
        None => OutsideSecrets::default(),
    };
    let env_file = env_file
        .as_ref()
        .map(|(path, pairs)| (path.as_path(), pairs.as_slice()));
    let loaded = parse_layers(&text, &sources.file, env_file, process, &credentials)?;
    loaded.config.check_tls_files()?;
    Ok(loaded)
}

/// An environment file's path and its assignments.
type EnvAssignments = (PathBuf, Vec<(String, String)>);

/// The environment file's assignments, when one is named and present (a required one must be).
fn read_named_env_file(env_file: Option<&EnvFile>) -> Result<Option<EnvAssignments>, ConfigError> {
    let Some(env_file) = env_file else {
        return Ok(None);
    };
    match read_env_file(&env_file.path)? {
        Some(pairs) => Ok(Some((env_file.path.clone(), pairs))),
        None if env_file.required => Err(ConfigError::Unreadable {
            path: env_file.path.clone(),
            reason: "no such file".into(),
        }),
        None => Ok(None),
    }
}

/// Parses and validates the layered sources (pure): the file's text (read from `file`), the environment file's
/// assignments (from `env_file`'s path) and the process environment, later ones winning.
pub fn parse_sources(
    text: &str,
    file: &Path,
    env_file: Option<(&Path, &[(String, String)])>,
    process: &[(String, String)],
) -> Result<Loaded, ConfigError> {
    parse_layers(text, file, env_file, process, &OutsideSecrets::default())
}

/// [`parse_sources`], with the secrets of systemd `credentials` above every other source.
fn parse_layers(
    text: &str,
    file: &Path,
    env_file: Option<(&Path, &[(String, String)])>,
    process: &[(String, String)],
    credentials: &OutsideSecrets,
) -> Result<Loaded, ConfigError> {
    let mut origins = origins_of(text, file, env_file, process);
    let env_pairs = env_file.map_or(&[][..], |(_, pairs)| pairs);
    let layered = env_pairs.iter().chain(process);
    let config = build(
        text,
        overrides_of(layered.map(|(k, v)| (k.as_str(), v.as_str()))),
        credentials,
    )
    .map_err(|error| match error {
        // A bad value says where it was set.
        ConfigError::Invalid { key, reason } if origins.contains_key(&key) => {
            let reason = format!("{reason} (set by {})", origins[&key]);
            ConfigError::Invalid { key, reason }
        }
        other => other,
    })?;
    for (key, path) in credentials.used_by(&config) {
        origins.insert(key.to_owned(), Origin::Credential(path));
    }
    Ok(Loaded { config, origins })
}

/// Which source set each key: the file's keys, then the environment file's variables, then the process's.
fn origins_of(
    text: &str,
    file: &Path,
    env_file: Option<(&Path, &[(String, String)])>,
    process: &[(String, String)],
) -> BTreeMap<String, Origin> {
    let mut origins = BTreeMap::new();
    if let Ok(table) = text.parse::<toml::Table>() {
        file_keys(&table, "", &mut |key| {
            origins.insert(key, Origin::File(file.to_owned()));
        });
    }
    if let Some((path, pairs)) = env_file {
        for (variable, _) in pairs {
            if let Some(key) = key_of_variable(variable) {
                let origin = Origin::EnvFile {
                    variable: variable.clone(),
                    path: path.to_owned(),
                };
                origins.insert(key, origin);
            }
        }
    }
    for (variable, _) in process {
        if let Some(key) = key_of_variable(variable) {
            let origin = Origin::Environment {
                variable: variable.clone(),
            };
            origins.insert(key, origin);
        }
    }
    origins
}

/// Calls `found` with the dotted path of every value `table` sets.
fn file_keys(table: &toml::Table, prefix: &str, found: &mut impl FnMut(String)) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(inner) => file_keys(inner, &path, found),
            _ => found(path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str =
        "[cluster]\nname = \"events\"\nbroker_count = 3\n\n[kafka]\nmode = \"kraft\"\n\
                        port = 9092\n";

    fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn loaded(env_file: &[(&str, &str)], process: &[(&str, &str)]) -> Loaded {
        parse_sources(
            FILE,
            Path::new("/etc/berth/berth.toml"),
            Some((Path::new("/etc/berth/environment"), &owned(env_file))),
            &owned(process),
        )
        .unwrap()
    }

    #[test]
    fn each_value_names_its_source_and_later_sources_win() {
        let loaded = loaded(
            &[
                ("BERTH_CLUSTER__KAFKA_CLUSTER_ID", "MkU3OEVBNTcwNTJENDM2Qg"),
                ("BERTH_KAFKA__PORT", "9094"),
                ("BERTH_LOG", "debug"),
            ],
            &[("BERTH_KAFKA__PORT", "9095"), ("HOME", "/root")],
        );
        assert_eq!(loaded.config.kafka.port, 9095);
        assert_eq!(
            loaded.origin("cluster.name"),
            Origin::File("/etc/berth/berth.toml".into())
        );
        assert_eq!(
            loaded.origin("cluster.kafka_cluster_id"),
            Origin::EnvFile {
                variable: "BERTH_CLUSTER__KAFKA_CLUSTER_ID".into(),
                path: "/etc/berth/environment".into()
            }
        );
        assert_eq!(
            loaded.origin("kafka.port"),
            Origin::Environment {
                variable: "BERTH_KAFKA__PORT".into()
            }
        );
        assert_eq!(loaded.origin("kafka.check_interval"), Origin::Default);
        assert_eq!(
            loaded.origin("claim.backend"),
            Origin::Derived("kafka.mode")
        );
    }

    #[test]
    fn a_bad_value_says_where_it_was_set() {
        let error = parse_sources(
            FILE,
            Path::new("/etc/berth/berth.toml"),
            Some((
                Path::new("/etc/berth/environment"),
                &owned(&[
                    ("BERTH_CLUSTER__KAFKA_CLUSTER_ID", "MkU3OEVBNTcwNTJENDM2Qg"),
                    ("BERTH_AWS__ENI_DEVICE_INDEX", "0"),
                ]),
            )),
            &[],
        )
        .unwrap_err();
        assert_eq!(error.key(), Some("aws.eni_device_index"));
        assert!(
            error
                .to_string()
                .ends_with("(set by BERTH_AWS__ENI_DEVICE_INDEX in /etc/berth/environment)"),
            "{error}"
        );
    }

    #[test]
    fn a_credential_is_a_source_of_secrets_above_the_others_and_never_rendered() {
        let file = format!(
            "{FILE}\n[kafka.security]\nprotocol = \"SASL_PLAINTEXT\"\nsasl_mechanism = \"PLAIN\"\n\
             sasl_username = \"berth\"\n"
        );
        let mut credentials = OutsideSecrets {
            directory: "/run/credentials/berth.service".into(),
            ..OutsideSecrets::default()
        };
        credentials.credentials.insert(
            "kafka.security.sasl_password".into(),
            secret::Secret::new("from-systemd"),
        );
        let loaded = parse_layers(
            &file,
            Path::new("/etc/berth/berth.toml"),
            Some((
                Path::new("/etc/berth/environment"),
                &owned(&[
                    ("BERTH_CLUSTER__KAFKA_CLUSTER_ID", "MkU3OEVBNTcwNTJENDM2Qg"),
                    ("BERTH_KAFKA__SECURITY__SASL_PASSWORD", "from-the-env-file"),
                ]),
            )),
            &[],
            &credentials,
        )
        .unwrap();
        let password = &loaded.config.kafka.security.sasl_password;
        assert_eq!(password.expose(), "from-systemd", "a credential wins");
        let credential = "/run/credentials/berth.service/kafka.security.sasl_password";
        assert_eq!(
            loaded.origin("kafka.security.sasl_password"),
            Origin::Credential(credential.into())
        );
        let text = loaded.render_with_origins();
        let debug = format!("{loaded:?}");
        for shown in [&text, &debug] {
            assert!(!shown.contains("from-systemd"), "{shown}");
            assert!(!shown.contains("from-the-env-file"), "{shown}");
        }
        assert!(
            text.contains(&format!(
                "# kafka.security.sasl_password is set (the systemd credential {credential}), not shown"
            )),
            "{text}"
        );
    }

    #[test]
    fn the_rendering_annotates_every_value_and_parses_again() {
        let loaded = loaded(
            &[
                ("BERTH_CLUSTER__KAFKA_CLUSTER_ID", "MkU3OEVBNTcwNTJENDM2Qg"),
                ("BERTH_ZOOKEEPER__DIGEST", "berth:s3cret"),
            ],
            &[],
        );
        let text = loaded.render_with_origins();
        assert!(!text.contains("s3cret"), "{text}");
        let line = |start: &str| {
            text.lines()
                .find(|line| line.starts_with(start))
                .unwrap_or_else(|| panic!("no {start} in {text}"))
                .to_owned()
        };
        assert!(line("name = ").ends_with("# /etc/berth/berth.toml"));
        assert!(line("kafka_cluster_id = ")
            .ends_with("# BERTH_CLUSTER__KAFKA_CLUSTER_ID in /etc/berth/environment"));
        assert!(line("check_interval = ").ends_with("# default"));
        assert!(line("backend = ").ends_with("# default, from kafka.mode"));
        assert!(line("# zookeeper.digest is set")
            .contains("BERTH_ZOOKEEPER__DIGEST in /etc/berth/environment"));
        let every_value_annotated = text
            .lines()
            .filter(|line| line.contains(" = "))
            .all(|line| line.contains(" # "));
        assert!(every_value_annotated, "{text}");
        let reparsed = crate::parse(&text, []).unwrap();
        assert_eq!(reparsed.kafka, loaded.config.kafka);
        assert_eq!(reparsed.cluster, loaded.config.cluster);
    }
}
