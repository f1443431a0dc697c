//! What a configuration that does not validate still says about where to report that. `berth run` refuses a bad
//! configuration with exit 78 before touching anything, but an instance that exits so sits in `Pending:Wait`
//! until its launch hook times out (or, without one, in service with no broker): so it first tells Auto Scaling
//! the boot failed, when the parts that did parse name the launch hook. Each key is read on its own, from the
//! environment override or the file, and one that does not read as a string (or a bool) is left at its default.

use crate::{AwsConfig, ENV_PREFIX};

/// The keys a failure report needs, as far as they could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Salvage {
    /// `aws.region` ("" = the instance's).
    pub region: String,
    /// `aws.endpoint_url` ("" = AWS's).
    pub endpoint_url: String,
    /// `aws.imds_endpoint`.
    pub imds_endpoint: String,
    /// `aws.autoscaling.group` ("" = the instance's tag).
    pub group: String,
    /// `aws.autoscaling.launch_hook` ("" = not known: nothing is reported).
    pub launch_hook: String,
    /// `aws.cloudformation.signal`.
    pub signal: bool,
    /// `aws.cloudformation.stack` ("" = the instance's tag).
    pub stack: String,
    /// `aws.cloudformation.resource` ("" = the instance's tag).
    pub resource: String,
}

/// Reads what it can of the report's keys from the file's text (which may not even be TOML) and an environment.
pub fn salvage<'a>(
    toml_text: &str,
    environment: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Salvage {
    let file: toml::Table = toml_text.parse().unwrap_or_default();
    let environment: Vec<(&str, &str)> = environment.into_iter().collect();
    let read = |path: &[&str]| -> Option<toml::Value> {
        let name = format!("{ENV_PREFIX}_{}", path.join("__").to_uppercase());
        if let Some((_, value)) = environment.iter().find(|(key, _)| *key == name) {
            return Some(toml::Value::String((*value).to_owned()));
        }
        let (last, sections) = path.split_last()?;
        let mut table = &file;
        for section in sections {
            table = table.get(*section)?.as_table()?;
        }
        table.get(*last).cloned()
    };
    let text = |path: &[&str], default: &str| {
        read(path)
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_else(|| default.to_owned())
    };
    let defaults = AwsConfig::default();
    Salvage {
        region: text(&["aws", "region"], &defaults.region),
        endpoint_url: text(&["aws", "endpoint_url"], &defaults.endpoint_url),
        imds_endpoint: text(&["aws", "imds_endpoint"], &defaults.imds_endpoint),
        group: text(&["aws", "autoscaling", "group"], ""),
        launch_hook: text(&["aws", "autoscaling", "launch_hook"], ""),
        signal: read(&["aws", "cloudformation", "signal"])
            .is_some_and(|value| value.as_bool() == Some(true) || value.as_str() == Some("true")),
        stack: text(&["aws", "cloudformation", "stack"], ""),
        resource: text(&["aws", "cloudformation", "resource"], ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_parses_is_kept_and_the_environment_wins() {
        let text = r#"
[cluster]
name = "Not A Valid Name"
broker_count = "three"

[aws]
endpoint_url = "http://10.0.0.1:4566"
imds_endpoint = 42

[aws.autoscaling]
launch_hook = "berth-launch"

[aws.cloudformation]
signal = true
"#;
        let salvaged = salvage(text, [("BERTH_AWS__AUTOSCALING__GROUP", "events-broker-0")]);
        assert_eq!(salvaged.endpoint_url, "http://10.0.0.1:4566");
        assert_eq!(
            salvaged.imds_endpoint, "http://169.254.169.254",
            "a value of the wrong type is left at its default"
        );
        assert_eq!(salvaged.launch_hook, "berth-launch");
        assert_eq!(salvaged.group, "events-broker-0");
        assert!(salvaged.signal);
        assert_eq!(salvaged.region, "");
    }

    #[test]
    fn a_file_that_is_not_toml_leaves_the_environment() {
        let salvaged = salvage(
            "[aws\nthis is not toml",
            [("BERTH_AWS__AUTOSCALING__LAUNCH_HOOK", "launch")],
        );
        assert_eq!(salvaged.launch_hook, "launch");
        assert_eq!(salvaged.group, "");
        assert!(!salvaged.signal);
    }
}
