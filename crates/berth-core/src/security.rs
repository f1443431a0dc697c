//! Kafka security, as the configuration names it and the Kafka adapter uses it: the listener's security protocol,
//! the SASL mechanism, and [`Secret`], the type of every value berth must use but never show (the ZooKeeper
//! digest, the SASL passwords). Here because both sides need them and neither depends on the other.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Kafka's `security.protocol` of a listener.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum SecurityProtocol {
    /// Neither TLS nor SASL.
    #[default]
    Plaintext,
    /// TLS (with a client certificate when the listener requires one).
    Ssl,
    /// SASL on a plain connection.
    SaslPlaintext,
    /// SASL inside TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// Kafka's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }

    /// Whether the connection is TLS.
    pub fn tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    /// Whether the client authenticates with SASL.
    pub fn sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

impl TryFrom<String> for SecurityProtocol {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        [Self::Plaintext, Self::Ssl, Self::SaslPlaintext, Self::SaslSsl]
            .into_iter()
            .find(|protocol| protocol.name() == value)
            .ok_or_else(|| {
                format!(
                    "must be PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (Kafka's security.protocol), got {value:?}"
                )
            })
    }
}

impl From<SecurityProtocol> for String {
    fn from(protocol: SecurityProtocol) -> Self {
        protocol.name().into()
    }
}

/// Kafka's `sasl.mechanism`, of those berth speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum SaslMechanism {
    /// User name and password in the clear (inside TLS, please).
    Plain,
    /// RFC 5802/7677 with SHA-256.
    ScramSha256,
    /// RFC 5802 with SHA-512.
    ScramSha512,
}

impl SaslMechanism {
    /// Kafka's (IANA's) name for it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl TryFrom<String> for SaslMechanism {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        [Self::Plain, Self::ScramSha256, Self::ScramSha512]
            .into_iter()
            .find(|mechanism| mechanism.name() == value)
            .ok_or_else(|| format!("must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, got {value:?}"))
    }
}

impl From<SaslMechanism> for String {
    fn from(mechanism: SaslMechanism) -> Self {
        mechanism.name().into()
    }
}

/// A value never to be shown: `Debug` and `Display` say `<redacted>` (or `""` when empty, which tells an
/// operator it is unset without telling anything else).
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that uses it (an authentication exchange). Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether it is unset.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("<redacted>")
        }
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_shows_its_value() {
        let secret = Secret::new("s3cret");
        assert_eq!(format!("{secret:?} {secret}"), "<redacted> <redacted>");
        assert_eq!(format!("{:?}", Secret::default()), "\"\"");
        assert_eq!(secret.expose(), "s3cret");
    }

    #[test]
    fn names_are_kafkas() {
        for name in ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] {
            assert_eq!(
                SecurityProtocol::try_from(name.to_owned()).unwrap().name(),
                name
            );
        }
        for name in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
            assert_eq!(
                SaslMechanism::try_from(name.to_owned()).unwrap().name(),
                name
            );
        }
        assert!(SecurityProtocol::try_from("TLS".to_owned())
            .unwrap_err()
            .contains("SASL_SSL"));
    }
}
