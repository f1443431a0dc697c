//! A configuration that cannot be used, naming the key and the reason.

use std::path::PathBuf;

/// A configuration that cannot be used, naming the key and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A key has a bad value (or is unknown, or missing).
    #[error("{key}: {reason}")]
    Invalid {
        /// Dotted key, e.g. `zookeeper.session_timeout`.
        key: String,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// The file could not be read.
    #[error("{path}: {reason}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(key: &str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.to_owned(),
            reason: reason.into(),
        }
    }

    /// A required key that is not set: the reason says what it is and where to set it (the file's section, or
    /// the environment file's variable).
    pub(crate) fn required(key: &str, what: &str) -> Self {
        let (section, leaf) = key.rsplit_once('.').unwrap_or(("", key));
        let place = if section.is_empty() {
            "at the top of the configuration file".to_owned()
        } else {
            format!("under [{section}] in the configuration file")
        };
        let variable = format!(
            "{}_{}",
            crate::ENV_PREFIX,
            key.to_ascii_uppercase().replace('.', "__")
        );
        Self::invalid(
            key,
            format!("not set; it is {what}: set `{leaf} = ...` {place}, or {variable}=... in the environment file"),
        )
    }

    /// The key concerned, when there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Invalid { key, .. } => Some(key),
            Self::Unreadable { .. } => None,
        }
    }
}
