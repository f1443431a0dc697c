//! Secrets: the values berth must use but never show (the ZooKeeper digest, the Kafka SASL passwords).
//!
//! A [`Secret`] prints as `<redacted>` in `Debug` and `Display` and cannot be serialized at all (its fields are
//! `skip_serializing`), so neither a log line, `/state`, nor `berth check-config` can carry one by accident.
//!
//! Where a secret comes from, first found wins:
//! 1. a systemd credential: the file `$CREDENTIALS_DIRECTORY/<key>` (`LoadCredential=kafka.security.sasl_password:
//!    /etc/berth/secrets/kafka-password` in berth.service), one trailing newline dropped;
//! 2. the environment (`BERTH_KAFKA__SECURITY__SASL_PASSWORD`, from the unit's `EnvironmentFile=`, mode 0600),
//!    taken byte for byte (never parsed as a number or a list, as other overrides are);
//! 3. `berth.toml` itself, but only while that file is not readable by every user: a secret in a world-readable
//!    file is refused, naming the key.
//!
//! The same directory may carry `kafka.security.tls_key` (and `kafka.controller_security.tls_key`): the client
//! key of mutual TLS, used when `tls_key_file` is not set.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use berth_core::security::Secret;

use crate::{Config, ConfigError, ENV_PREFIX};

/// The keys whose values are secrets.
pub const SECRET_KEYS: [&str; 3] = [
    "zookeeper.digest",
    "kafka.security.sasl_password",
    "kafka.controller_security.sasl_password",
];

/// Credentials that name a file rather than hold a value: `(credential, the key it fills)`.
const KEY_FILE_CREDENTIALS: [(&str, &str); 2] = [
    ("kafka.security.tls_key", "kafka.security.tls_key_file"),
    (
        "kafka.controller_security.tls_key",
        "kafka.controller_security.tls_key_file",
    ),
];

/// The environment variable systemd sets to the directory of the unit's credentials.
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

/// The environment variable that overrides `key` (`zookeeper.digest` → `BERTH_ZOOKEEPER__DIGEST`).
pub fn env_name(key: &str) -> String {
    format!(
        "{ENV_PREFIX}_{}",
        key.replace('.', "__").to_ascii_uppercase()
    )
}

/// The secret field of `config` that `key` names (None: the section it belongs to is absent).
fn slot<'a>(config: &'a mut Config, key: &str) -> Option<&'a mut Secret> {
    match key {
        "zookeeper.digest" => Some(&mut config.zookeeper.digest),
        "kafka.security.sasl_password" => Some(&mut config.kafka.security.sasl_password),
        "kafka.controller_security.sasl_password" => config
            .kafka
            .controller_security
            .as_mut()
            .map(|security| &mut security.sasl_password),
        _ => None,
    }
}

/// The secrets found in systemd credentials, by key, and the credential files that stand for a key file.
#[derive(Default)]
pub(crate) struct OutsideSecrets {
    /// `$CREDENTIALS_DIRECTORY`.
    pub directory: PathBuf,
    /// `key` → value, from `$CREDENTIALS_DIRECTORY`.
    pub credentials: BTreeMap<String, Secret>,
    /// Credential files that stand for a key file: `tls_key_file` key → path.
    pub key_files: BTreeMap<&'static str, PathBuf>,
}

impl OutsideSecrets {
    /// The keys of `config` these credentials set, and the credential file of each.
    pub(crate) fn used_by(&self, config: &Config) -> Vec<(&'static str, PathBuf)> {
        let mut used: Vec<(&'static str, PathBuf)> = SECRET_KEYS
            .into_iter()
            .filter(|key| self.credentials.contains_key(*key))
            .map(|key| (key, self.directory.join(key)))
            .collect();
        for (key, path) in &self.key_files {
            let security = match *key {
                "kafka.security.tls_key_file" => Some(&config.kafka.security),
                _ => config.kafka.controller_security.as_ref(),
            };
            if security.and_then(|s| s.tls_key_file.as_ref()) == Some(path) {
                used.push((key, path.clone()));
            }
        }
        used
    }
}

/// Takes the secrets' variables out of `overrides` (they are applied raw, after parsing): `key` → value.
pub(crate) fn take_from_environment(
    overrides: &mut config::Map<String, String>,
) -> BTreeMap<&'static str, Secret> {
    SECRET_KEYS
        .iter()
        .filter_map(|key| {
            overrides
                .remove(&env_name(key))
                .map(|value| (*key, Secret::new(value)))
        })
        .collect()
}

/// Puts the secrets found outside the file into `config`, credentials before the environment.
pub(crate) fn apply(
    config: &mut Config,
    outside: &OutsideSecrets,
    environment: &BTreeMap<&'static str, Secret>,
) -> Result<(), ConfigError> {
    for key in SECRET_KEYS {
        let Some(value) = outside
            .credentials
            .get(key)
            .or_else(|| environment.get(key))
        else {
            continue;
        };
        let Some(field) = slot(config, key) else {
            return Err(ConfigError::invalid(
                key,
                "is set but its section is absent (without [kafka.controller_security] the controller \
                 listener uses [kafka.security])",
            ));
        };
        *field = value.clone();
    }
    for (key, path) in &outside.key_files {
        let security = match *key {
            "kafka.security.tls_key_file" => Some(&mut config.kafka.security),
            _ => config.kafka.controller_security.as_mut(),
        };
        if let Some(security) = security {
            security.tls_key_file.get_or_insert_with(|| path.clone());
        }
    }
    Ok(())
}

/// Reads the credentials berth knows from `directory` (`$CREDENTIALS_DIRECTORY`); absent ones are skipped.
pub(crate) fn read_credentials(directory: &Path) -> Result<OutsideSecrets, ConfigError> {
    let mut found = OutsideSecrets {
        directory: directory.to_owned(),
        ..OutsideSecrets::default()
    };
    for key in SECRET_KEYS {
        let path = directory.join(key);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let value = text
                    .strip_suffix('\n')
                    .map(|t| t.strip_suffix('\r').unwrap_or(t))
                    .unwrap_or(&text);
                found.credentials.insert(key.to_owned(), Secret::new(value));
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(ConfigError::Unreadable {
                    path,
                    reason: error.to_string(),
                })
            }
        }
    }
    for (credential, key) in KEY_FILE_CREDENTIALS {
        let path = directory.join(credential);
        if path.is_file() {
            found.key_files.insert(key, path);
        }
    }
    Ok(found)
}

/// The secret keys `toml_text` sets to a non-empty value (a file that may hold none when others can read it).
pub fn secrets_in_file(toml_text: &str) -> Vec<&'static str> {
    let Ok(document) = toml_text.parse::<toml::Table>() else {
        return Vec::new();
    };
    SECRET_KEYS
        .into_iter()
        .filter(|key| {
            let mut value: Option<&toml::Value> = None;
            for (i, part) in key.split('.').enumerate() {
                value = if i == 0 {
                    document.get(part)
                } else {
                    value.and_then(|v| v.get(part))
                };
            }
            value.is_some_and(|v| v.as_str().is_none_or(|s| !s.is_empty()))
        })
        .collect()
}

/// Refuses a file readable by every user (`mode`) that holds a secret.
pub(crate) fn refuse_world_readable(toml_text: &str, mode: u32) -> Result<(), ConfigError> {
    if mode & 0o004 == 0 {
        return Ok(());
    }
    match secrets_in_file(toml_text).first() {
        Some(key) => Err(ConfigError::invalid(
            key,
            format!(
                "is a secret, and this file is readable by every user (mode {:04o}): make the file mode 0640 \
                 or 0600, or move the value to a systemd credential ($CREDENTIALS_DIRECTORY/{key}) or to {} \
                 in the unit's environment file",
                mode & 0o7777,
                env_name(key)
            ),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_names_follow_the_override_scheme() {
        assert_eq!(env_name("zookeeper.digest"), "BERTH_ZOOKEEPER__DIGEST");
        assert_eq!(
            env_name("kafka.controller_security.sasl_password"),
            "BERTH_KAFKA__CONTROLLER_SECURITY__SASL_PASSWORD"
        );
    }

    #[test]
    fn secrets_in_a_world_readable_file_are_refused_by_key() {
        let text = "[zookeeper]\nconnect = \"a:1\"\n[kafka.security]\nsasl_password = \"pw\"\n";
        assert_eq!(secrets_in_file(text), ["kafka.security.sasl_password"]);
        assert!(refuse_world_readable(text, 0o640).is_ok());
        let error = refuse_world_readable(text, 0o644).unwrap_err();
        assert_eq!(error.key(), Some("kafka.security.sasl_password"));
        assert!(error.to_string().contains("mode 0644"), "{error}");
        assert!(
            !error.to_string().contains("pw\""),
            "the value is not repeated: {error}"
        );
        assert!(secrets_in_file("[zookeeper]\ndigest = \"\"\n").is_empty());
    }

    #[test]
    fn credentials_are_read_by_key_without_their_final_newline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("zookeeper.digest"), "berth:pw\n").unwrap();
        std::fs::write(dir.path().join("kafka.security.sasl_password"), "p w\r\n\n").unwrap();
        std::fs::write(dir.path().join("kafka.security.tls_key"), "KEY").unwrap();
        let found = read_credentials(dir.path()).unwrap();
        assert_eq!(found.credentials["zookeeper.digest"].expose(), "berth:pw");
        assert_eq!(
            found.credentials["kafka.security.sasl_password"].expose(),
            "p w\r\n",
            "only one final newline is dropped"
        );
        assert_eq!(
            found.key_files["kafka.security.tls_key_file"],
            dir.path().join("kafka.security.tls_key")
        );
    }
}
