//! Tag templates that map a broker id to the `Name` (or other) tag of its ENI and volume.
//!
//! The seed's scheme is `KAFKA-{id}`; operators with several clusters per account want `events-kafka-{id}` and
//! the like. A template holds exactly one `{id}` placeholder, so rendering and parsing are exact inverses and a
//! tag such as `KAFKA-01` or `KAFKA-1x` never silently maps to an id.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::facts::BrokerId;

/// A tag value pattern with exactly one `{id}` placeholder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TagTemplate {
    prefix: String,
    suffix: String,
}

/// Why a tag template was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagTemplateError {
    /// No `{id}` placeholder.
    #[error("must contain the placeholder {{id}} exactly once, found none in {0:?}")]
    NoPlaceholder(String),
    /// More than one placeholder.
    #[error("must contain the placeholder {{id}} exactly once, found several in {0:?}")]
    SeveralPlaceholders(String),
    /// Characters EC2 filters treat as wildcards, which would make discovery ambiguous.
    #[error("must not contain the filter wildcards '*' or '?': {0:?}")]
    Wildcard(String),
}

impl TagTemplate {
    /// The placeholder replaced by the broker id.
    pub const PLACEHOLDER: &'static str = "{id}";

    /// Parses a template such as `KAFKA-{id}`.
    pub fn new(template: &str) -> Result<Self, TagTemplateError> {
        if template.contains(['*', '?']) {
            return Err(TagTemplateError::Wildcard(template.to_owned()));
        }
        let mut parts = template.split(Self::PLACEHOLDER);
        let prefix = parts.next().unwrap_or_default().to_owned();
        let suffix = parts
            .next()
            .ok_or_else(|| TagTemplateError::NoPlaceholder(template.to_owned()))?
            .to_owned();
        if parts.next().is_some() {
            return Err(TagTemplateError::SeveralPlaceholders(template.to_owned()));
        }
        Ok(Self { prefix, suffix })
    }

    /// The tag value for one id, e.g. `KAFKA-3`.
    pub fn render(&self, id: BrokerId) -> String {
        format!("{}{}{}", self.prefix, id.0, self.suffix)
    }

    /// An EC2 filter value matching every id's tag, e.g. `KAFKA-*`.
    pub fn wildcard(&self) -> String {
        format!("{}*{}", self.prefix, self.suffix)
    }

    /// The id a tag value names, if it matches exactly (canonical decimal, no leading zeros or signs).
    pub fn parse(&self, value: &str) -> Option<BrokerId> {
        let digits = value
            .strip_prefix(&self.prefix)?
            .strip_suffix(&self.suffix)?;
        let canonical = !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'));
        if !canonical {
            return None;
        }
        digits.parse().ok().map(BrokerId)
    }
}

impl TryFrom<String> for TagTemplate {
    type Error = TagTemplateError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(&value)
    }
}

impl From<TagTemplate> for String {
    fn from(value: TagTemplate) -> Self {
        value.to_string()
    }
}

impl fmt::Display for TagTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.prefix, Self::PLACEHOLDER, self.suffix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_scheme_round_trips() {
        let template = TagTemplate::new("KAFKA-{id}").unwrap();
        assert_eq!(template.render(BrokerId(7)), "KAFKA-7");
        assert_eq!(template.parse("KAFKA-7"), Some(BrokerId(7)));
        assert_eq!(template.wildcard(), "KAFKA-*");
        assert_eq!(template.to_string(), "KAFKA-{id}");
    }

    #[test]
    fn suffix_templates_parse() {
        let template = TagTemplate::new("events-{id}-data").unwrap();
        assert_eq!(template.parse("events-12-data"), Some(BrokerId(12)));
        assert_eq!(template.parse("events-12-datax"), None);
    }

    #[test]
    fn non_canonical_values_are_not_ids() {
        let template = TagTemplate::new("KAFKA-{id}").unwrap();
        for value in [
            "KAFKA-",
            "KAFKA-01",
            "KAFKA-1x",
            "KAFKA--1",
            "KAFKA-+1",
            "kafka-1",
            "KAFKA-99999999999",
        ] {
            assert_eq!(template.parse(value), None, "{value}");
        }
        assert_eq!(template.parse("KAFKA-0"), Some(BrokerId(0)));
    }

    #[test]
    fn bad_templates_are_refused() {
        assert!(matches!(
            TagTemplate::new("KAFKA"),
            Err(TagTemplateError::NoPlaceholder(_))
        ));
        assert!(matches!(
            TagTemplate::new("{id}-{id}"),
            Err(TagTemplateError::SeveralPlaceholders(_))
        ));
        assert!(matches!(
            TagTemplate::new("K*-{id}"),
            Err(TagTemplateError::Wildcard(_))
        ));
    }
}
