//! The AWS query protocol's answers, as CloudFormation and Auto Scaling send them: a `<Action>Response` with
//! `ResponseMetadata`, or an `ErrorResponse` with `Type`, `Code` and `Message`.
//!
//! Error codes and their HTTP statuses follow the services' "Common Errors" pages
//! (<https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/CommonErrors.html>,
//! <https://docs.aws.amazon.com/autoscaling/ec2/APIReference/CommonErrors.html>): `ValidationError` (400, "The
//! input fails to satisfy the constraints specified by an AWS service"), `InvalidAction` (400, "The action or
//! operation requested is invalid"). Parameter constraint failures read as AWS words them for every query
//! service ("1 validation error detected: Value null at 'uniqueId' failed to satisfy constraint: Member must
//! not be null").

use std::collections::BTreeMap;

/// A refusal: HTTP status, AWS error code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status (400 for client errors).
    pub status: u16,
    /// The AWS error code, e.g. `ValidationError`.
    pub code: &'static str,
    /// The message, worded as AWS words it.
    pub message: String,
}

impl ApiError {
    /// `ValidationError` (HTTP 400) with `message`.
    pub fn validation(message: impl Into<String>) -> Self {
        Self {
            status: 400,
            code: "ValidationError",
            message: message.into(),
        }
    }

    /// `InvalidAction` (HTTP 400): the service has no such action (or this stand-in does not serve it).
    pub fn invalid_action(action: &str) -> Self {
        Self {
            status: 400,
            code: "InvalidAction",
            message: format!(
                "The action or operation requested is invalid. Verify that the action is typed correctly. ({action})"
            ),
        }
    }

    /// The `ErrorResponse` document.
    pub fn to_xml(&self, namespace: &str, request_id: &str) -> String {
        let kind = if self.status >= 500 {
            "Receiver"
        } else {
            "Sender"
        };
        format!(
            "<ErrorResponse xmlns=\"{namespace}\"><Error><Type>{kind}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>",
            self.code,
            escape(&self.message)
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// The success document of `action`; `result` is the content of the `<ActionResult>` element that actions
/// with an output shape carry (`Some("")` for an empty one).
pub fn success_xml(
    action: &str,
    namespace: &str,
    result: Option<&str>,
    request_id: &str,
) -> String {
    let result = match result {
        Some("") => format!("<{action}Result/>"),
        Some(content) => format!("<{action}Result>{content}</{action}Result>"),
        None => String::new(),
    };
    format!(
        "<{action}Response xmlns=\"{namespace}\">{result}<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{action}Response>"
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The parameters of one query-protocol call, with AWS's constraint checks.
#[derive(Debug, Clone, Default)]
pub struct Params(pub BTreeMap<String, String>);

impl Params {
    /// Parameters from name-value pairs (tests, and a control plane calling a model directly).
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Self(
            pairs
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
        )
    }

    /// A required parameter: `ValidationError` "Value null at '<member>' ... must not be null" when absent,
    /// or "... must have length greater than or equal to 1" when empty. `member` is the lower-camel name AWS
    /// uses in the message (`stackName` for `StackName`).
    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        let member = lower_camel(name);
        match self.0.get(name).map(String::as_str) {
            None => Err(ApiError::validation(format!(
                "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
            ))),
            Some("") => Err(ApiError::validation(format!(
                "1 validation error detected: Value '' at '{member}' failed to satisfy constraint: Member must have length greater than or equal to 1"
            ))),
            Some(value) => Ok(value),
        }
    }

    /// An optional parameter.
    pub fn optional(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// A required parameter from a fixed set of values.
    pub fn one_of(&self, name: &str, allowed: &[&str]) -> Result<&str, ApiError> {
        let value = self.required(name)?;
        if allowed.contains(&value) {
            return Ok(value);
        }
        Err(ApiError::validation(format!(
            "1 validation error detected: Value '{value}' at '{}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
            lower_camel(name),
            allowed.join(", ")
        )))
    }

    /// A required parameter of at most `max` characters.
    pub fn bounded(&self, name: &str, max: usize) -> Result<&str, ApiError> {
        let value = self.required(name)?;
        if value.chars().count() <= max {
            return Ok(value);
        }
        Err(ApiError::validation(format!(
            "1 validation error detected: Value '{value}' at '{}' failed to satisfy constraint: Member must have length less than or equal to {max}",
            lower_camel(name)
        )))
    }
}

fn lower_camel(name: &str) -> String {
    let mut chars = name.chars();
    chars
        .next()
        .map(|first| first.to_ascii_lowercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraint_failures_read_as_aws_words_them() {
        let p = Params::from_pairs(&[("Status", "MAYBE"), ("UniqueId", ""), ("Long", "abcdef")]);
        assert_eq!(
            p.required("StackName").unwrap_err().message,
            "1 validation error detected: Value null at 'stackName' failed to satisfy constraint: Member must not be null"
        );
        assert!(p
            .required("UniqueId")
            .unwrap_err()
            .message
            .contains("greater than or equal to 1"));
        assert_eq!(
            p.one_of("Status", &["SUCCESS", "FAILURE"]).unwrap_err().message,
            "1 validation error detected: Value 'MAYBE' at 'status' failed to satisfy constraint: Member must satisfy enum value set: [SUCCESS, FAILURE]"
        );
        assert!(p
            .bounded("Long", 5)
            .unwrap_err()
            .message
            .ends_with("less than or equal to 5"));
        let xml = ApiError::validation("a < b").to_xml("urn:x", "r-1");
        assert!(
            xml.contains(
                "<Type>Sender</Type><Code>ValidationError</Code><Message>a &lt; b</Message>"
            ),
            "{xml}"
        );
    }
}
