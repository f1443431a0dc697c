//! `[kafka.security]` and `[kafka.controller_security]`: how berth talks to the listener it probes (and to the
//! controllers' listener): Kafka's four security protocols, TLS with a CA bundle, an optional client certificate
//! and the name to verify, and SASL PLAIN or SCRAM-SHA-256/512.
//!
//! The names follow Kafka's own client settings (`security.protocol`, `sasl.mechanism`, `ssl.truststore.*`), so an
//! operator can copy them from a client configuration. Everything is checked when the configuration is loaded:
//! a missing or unreadable file, a bundle without a certificate, a key that every user may read, each refused
//! naming its key, so `berth check-config` finds them before a boot does.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::{Deserialize, Serialize};

use berth_core::security::{SaslMechanism, Secret, SecurityProtocol};

use crate::validate::{ensure, is_absolute_clean};
use crate::{Config, ConfigError};

/// How berth connects to one kind of Kafka listener.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSecurity {
    /// The listener's `security.protocol`.
    pub protocol: SecurityProtocol,
    /// SASL only: the mechanism.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sasl_mechanism: Option<SaslMechanism>,
    /// SASL only: berth's user name.
    pub sasl_username: String,
    /// SASL only: its password (a secret: see [`crate::secret`]).
    #[serde(skip_serializing)]
    pub sasl_password: Secret,
    /// TLS only: the PEM bundle of the CA certificates that signed the brokers' certificates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<PathBuf>,
    /// TLS only: berth's client certificate chain (PEM), for listeners that require one (`ssl.client.auth`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<PathBuf>,
    /// TLS only: its private key (PEM, not readable by every user); a systemd credential
    /// `<section>.tls_key` stands in when this is unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key_file: Option<PathBuf>,
    /// TLS only: the name the broker's certificate must carry; `{id}` is the broker id asked. Empty: the address
    /// berth connects to (the certificate then carries it as an IP subject alternative name).
    pub tls_server_name: String,
}

/// The certificates and key a TLS client needs, read from the configured files.
#[derive(Debug)]
pub struct TlsMaterial {
    /// Trusted CA certificates.
    pub roots: Vec<CertificateDer<'static>>,
    /// The client certificate chain and key, for mutual TLS.
    pub client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

impl KafkaSecurity {
    /// The name to verify for broker `id`, when one is configured.
    pub fn server_name_for(&self, id: u32) -> Option<String> {
        (!self.tls_server_name.is_empty())
            .then(|| self.tls_server_name.replace("{id}", &id.to_string()))
    }

    /// The rules serde cannot express; keys are named under `section` (`kafka.security`).
    pub fn validate(&self, section: &str) -> Result<(), ConfigError> {
        let key = |field: &str| format!("{section}.{field}");
        let protocol = self.protocol.name();
        if self.protocol.sasl() {
            ensure(
                self.sasl_mechanism.is_some(),
                &key("sasl_mechanism"),
                || {
                    format!("is required with protocol = \"{protocol}\": PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
                },
            )?;
            ensure(
                !self.sasl_username.is_empty(),
                &key("sasl_username"),
                || format!("is required with protocol = \"{protocol}\""),
            )?;
            ensure(
                !self.sasl_password.is_empty(),
                &key("sasl_password"),
                || {
                    format!(
                    "is required with protocol = \"{protocol}\": a systemd credential \
                     ($CREDENTIALS_DIRECTORY/{section}.sasl_password), {} in the environment file, or the file \
                     itself when it is not world-readable",
                    crate::secret::env_name(&key("sasl_password"))
                )
                },
            )?;
        } else {
            let set = [
                ("sasl_mechanism", self.sasl_mechanism.is_some()),
                ("sasl_username", !self.sasl_username.is_empty()),
                ("sasl_password", !self.sasl_password.is_empty()),
            ];
            for (field, is_set) in set {
                ensure(!is_set, &key(field), || {
                    format!("only applies with protocol = \"SASL_PLAINTEXT\" or \"SASL_SSL\", not \"{protocol}\"")
                })?;
            }
        }
        self.validate_tls(section)
    }

    fn validate_tls(&self, section: &str) -> Result<(), ConfigError> {
        let key = |field: &str| format!("{section}.{field}");
        let protocol = self.protocol.name();
        let files = [
            ("tls_ca_file", &self.tls_ca_file),
            ("tls_cert_file", &self.tls_cert_file),
            ("tls_key_file", &self.tls_key_file),
        ];
        if !self.protocol.tls() {
            let server_name = ("tls_server_name", !self.tls_server_name.is_empty());
            for (field, is_set) in files
                .iter()
                .map(|(field, file)| (*field, file.is_some()))
                .chain([server_name])
            {
                ensure(!is_set, &key(field), || {
                    format!(
                        "only applies with protocol = \"SSL\" or \"SASL_SSL\", not \"{protocol}\""
                    )
                })?;
            }
            return Ok(());
        }
        ensure(self.tls_ca_file.is_some(), &key("tls_ca_file"), || {
            format!("is required with protocol = \"{protocol}\": the PEM bundle of the CA that signed the brokers' certificates")
        })?;
        for (field, file) in files {
            if let Some(path) = file {
                ensure(is_absolute_clean(path), &key(field), || {
                    format!("must be an absolute path, got {path:?}")
                })?;
            }
        }
        ensure(
            self.tls_cert_file.is_some() == self.tls_key_file.is_some(),
            &key(if self.tls_cert_file.is_some() {
                "tls_key_file"
            } else {
                "tls_cert_file"
            }),
            || "tls_cert_file and tls_key_file go together (mutual TLS needs both)".into(),
        )?;
        if let Some(name) = self.server_name_for(0) {
            ensure(
                ServerName::try_from(name.as_str()).is_ok(),
                &key("tls_server_name"),
                || {
                    format!("must be a DNS name or an IP address ({{id}} stands for the broker id), got {:?}", self.tls_server_name)
                },
            )?;
        }
        Ok(())
    }

    /// Reads the TLS files (None without TLS): every error names its key under `section`. Used by
    /// [`crate::load`] to check them, and by the Kafka adapter to build its TLS client.
    pub fn tls_material(&self, section: &str) -> Result<Option<TlsMaterial>, ConfigError> {
        if !self.protocol.tls() {
            return Ok(None);
        }
        let key = |field: &str| format!("{section}.{field}");
        let Some(ca_file) = &self.tls_ca_file else {
            return Err(ConfigError::invalid(&key("tls_ca_file"), "is required"));
        };
        let roots = certificates(ca_file, &key("tls_ca_file"))?;
        let client = match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert), Some(key_file)) => {
                let chain = certificates(cert, &key("tls_cert_file"))?;
                Some((chain, private_key(key_file, &key("tls_key_file"))?))
            }
            _ => None,
        };
        Ok(Some(TlsMaterial { roots, client }))
    }
}

impl Config {
    /// The controllers' listener's security: `kafka.controller_security`, else `kafka.security`.
    pub fn controller_security(&self) -> &KafkaSecurity {
        self.kafka
            .controller_security
            .as_ref()
            .unwrap_or(&self.kafka.security)
    }

    /// Reads every configured TLS file (certificates, keys), naming the key of the first that is unusable.
    pub fn check_tls_files(&self) -> Result<(), ConfigError> {
        self.kafka.security.tls_material("kafka.security")?;
        if let Some(controller) = &self.kafka.controller_security {
            controller.tls_material("kafka.controller_security")?;
        }
        Ok(())
    }
}

fn unreadable(key: &str, path: &Path, error: impl std::fmt::Display) -> ConfigError {
    ConfigError::invalid(key, format!("cannot read {}: {error}", path.display()))
}

/// Every certificate of a PEM file (at least one).
fn certificates(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let pem = std::fs::read(path).map_err(|error| unreadable(key, path, error))?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| unreadable(key, path, error))?;
    ensure(!certificates.is_empty(), key, || {
        format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )
    })?;
    Ok(certificates)
}

/// The private key of a PEM file, which every user may not read.
fn private_key(path: &Path, key: &str) -> Result<PrivateKeyDer<'static>, ConfigError> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path)
        .map_err(|error| unreadable(key, path, error))?
        .permissions()
        .mode();
    ensure(mode & 0o004 == 0, key, || {
        format!(
            "{} is a private key readable by every user (mode {:04o}): make it 0600 or 0640, or pass it as a \
             systemd credential",
            path.display(),
            mode & 0o7777
        )
    })?;
    let pem = std::fs::read(path).map_err(|error| unreadable(key, path, error))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|error| {
        ConfigError::invalid(
            key,
            format!(
                "{} holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {error}",
                path.display()
            ),
        )
    })
}
