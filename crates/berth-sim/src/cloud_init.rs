//! A cloud-init stand-in (NOT cloud-init) on a simulated host: the instance's user data run as cloud-init's
//! `scripts_user` runs it, so berth reads the files the launch template's user data writes.
//!
//! Real cloud-init cannot run here: its ds-identify never finds the Ec2 datasource in a container (`dscheck_Ec2`
//! returns not-found when `is_container`; on a VM it wants EC2's `/sys/hypervisor/uuid` or DMI product uuid and
//! serial starting `ec2`), its Ec2 datasource reads versioned and dynamic paths (`/2009-04-04/meta-data/`,
//! `dynamic/instance-identity/document`) the simulated IMDS does not serve, and it is not in the host image. The stand-in, `sim-cloud-init` ([`SCRIPT`]), keeps the part of cloud-init's
//! contract the shipped template relies on: the user data read from the host's own IMDS with an IMDSv2 token
//! (404: none), a `#!` script run once per instance as root (the semaphore
//! `/var/lib/cloud/instances/<id>/sem/config_scripts_user` is written before it runs, so no later boot runs it
//! again), its output in `/var/log/cloud-init-output.log`, a failure in `/var/lib/cloud/data/result.json` and in
//! the unit's result. User data of another form (`#cloud-config`, MIME, gzip) is refused, never skipped.
//!
//! It runs as the oneshot unit [`UNIT`] (`Type=oneshot`, `RemainAfterExit=yes`, after `network-online.target`,
//! enabled for `multi-user.target`), as cloud-final runs scripts_user at every boot. The unit and script are
//! installed with the AMI's software ([`install`]) rather than baked into the host image: a simulated host boots
//! before its "AMI" (berth's package, Kafka's unit) is installed, and the user data (`systemctl enable --now
//! berth.service`) needs that software, so the fleet starts the unit once the AMI is complete ([`run`]), as the
//! first boot would. Running it again is what a later boot does ([`UserDataRun::ran`] then says false).

use base64::Engine as _;
use berth_testkit::aws::template::{Kind, Physical, Stack, TemplateError};

use crate::container::{Container, ContainerError};

/// The stand-in's unit.
pub const UNIT: &str = "sim-cloud-init.service";
/// The stand-in's script (Python 3, as cloud-init is; the host image has python3 through xfsprogs).
pub const SCRIPT: &str = include_str!("sim-cloud-init.py");
/// Where the script is installed inside the host.
const SCRIPT_PATH: &str = "/usr/local/lib/berth-sim/sim-cloud-init";
/// cloud-init's output log.
pub const OUTPUT_LOG: &str = "/var/log/cloud-init-output.log";
/// This boot's outcome, as the stand-in writes it.
const BOOT_RESULT: &str = "/run/sim-cloud-init/result.json";

/// The unit: a oneshot after the network, as cloud-final.
fn unit() -> String {
    format!(
        "# sim-cloud-init: the instance's user data as cloud-init's scripts_user runs it. A stand-in, NOT cloud-init
# (crates/berth-sim/src/cloud_init.rs says why and what of cloud-init's contract it keeps).
[Unit]
Description=sim-cloud-init: user data scripts, once per instance (a stand-in for cloud-init)
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={SCRIPT_PATH}
TimeoutSec=0
StandardOutput=journal

[Install]
WantedBy=multi-user.target
"
    )
}

/// The user data could not be read or run.
#[derive(Debug, thiserror::Error)]
pub enum CloudInitError {
    /// The container refused a step.
    #[error(transparent)]
    Container(#[from] ContainerError),
    /// The template has no launch template with user data, or it could not be resolved.
    #[error("the launch template's user data: {0}")]
    Template(#[from] TemplateError),
    /// The user data is not base64 of UTF-8 text.
    #[error("the launch template's user data is not base64 of UTF-8 text: {0}")]
    Encoding(String),
    /// The stand-in left no readable outcome.
    #[error("sim-cloud-init left no outcome in {BOOT_RESULT}: {0}\n--- {OUTPUT_LOG} ---\n{1}")]
    NoOutcome(String, String),
}

/// What the stand-in did at this (simulated) boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserDataRun {
    /// The instance id it read from IMDS (the semaphore's directory).
    pub instance_id: String,
    /// Whether the script ran at this boot (false: it had run for this instance already, or there was none).
    pub ran: bool,
    /// The script's exit code, when it ran.
    pub exit_code: Option<i32>,
    /// What it reported as failed (cloud-init's `result.json` errors); empty on success.
    pub errors: Vec<String>,
    /// `/var/log/cloud-init-output.log` after this boot.
    pub output: String,
}

impl UserDataRun {
    /// Whether the run failed (a script exiting nonzero, user data of a form the stand-in refuses).
    pub fn failed(&self) -> bool {
        !self.errors.is_empty()
    }
}

/// Installs the stand-in (its script and enabled unit) on a host; idempotent.
pub fn install(container: &Container) -> Result<(), ContainerError> {
    container.write(SCRIPT_PATH, SCRIPT, 0o755)?;
    container.write(&format!("/etc/systemd/system/{UNIT}"), &unit(), 0o644)?;
    container.exec(&["systemctl", "daemon-reload"])?;
    container.exec(&["systemctl", "enable", UNIT])?;
    Ok(())
}

/// Runs the stand-in as a boot does (`systemctl restart` of its oneshot unit, which returns once it finished)
/// and returns what it did. A failing script is not an error here: it is in [`UserDataRun::errors`] (and the unit
/// is `failed`), for the caller to report.
pub fn run(container: &Container) -> Result<UserDataRun, CloudInitError> {
    let _ = std::fs::remove_file(container.path(BOOT_RESULT));
    // A nonzero exit of `systemctl restart` is the unit failing, which the outcome below describes.
    let _ = container.command(&["systemctl", "restart", UNIT]).output();
    let output = std::fs::read_to_string(container.path(OUTPUT_LOG)).unwrap_or_default();
    let outcome = std::fs::read_to_string(container.path(BOOT_RESULT))
        .map_err(|error| error.to_string())
        .and_then(|text| {
            serde_json::from_str::<serde_json::Value>(&text).map_err(|error| error.to_string())
        })
        .map_err(|why| {
            let journal = container
                .exec(&["journalctl", "--unit", UNIT, "--no-pager", "--lines", "20"])
                .unwrap_or_default();
            CloudInitError::NoOutcome(why, format!("{output}\n--- journal ---\n{journal}"))
        })?;
    Ok(UserDataRun {
        instance_id: outcome["instance_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        ran: outcome["ran"].as_bool().unwrap_or(false),
        exit_code: outcome["exit_code"]
            .as_i64()
            .and_then(|code| i32::try_from(code).ok()),
        errors: outcome["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .filter_map(|e| e.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        output,
    })
}

/// User data as EC2 takes it (`LaunchTemplateData.UserData`: base64), decoded.
pub fn decode_user_data(encoded: &str) -> Result<String, CloudInitError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|error| CloudInitError::Encoding(error.to_string()))?;
    String::from_utf8(bytes).map_err(|error| CloudInitError::Encoding(error.to_string()))
}

/// The user data of `stack`'s launch template, resolved (`Ref` and `Fn::GetAtt` through `physical`) and decoded.
pub fn launch_template_user_data(
    stack: &Stack,
    physical: &dyn Physical,
) -> Result<String, CloudInitError> {
    let launch_template = stack
        .resources()
        .iter()
        .find(|resource| resource.kind == Kind::LaunchTemplate)
        .ok_or_else(|| TemplateError::Format("no AWS::EC2::LaunchTemplate".into()))?;
    let properties = stack.properties(&launch_template.logical_id, physical)?;
    let encoded = properties["LaunchTemplateData"]["UserData"]
        .as_str()
        .ok_or_else(|| {
            TemplateError::Format(format!(
                "{} has no LaunchTemplateData.UserData",
                launch_template.logical_id
            ))
        })?;
    decode_user_data(encoded)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::stack::{instantiated_with, ByLogicalId};

    #[test]
    fn the_shipped_templates_user_data_decodes_to_a_script_carrying_the_kraft_parameters() {
        let path = berth_testkit::aws::template::shipped();
        let given = BTreeMap::from([
            ("KafkaMode".to_owned(), "kraft".to_owned()),
            (
                "KafkaClusterId".to_owned(),
                "VXNlckRhdGFJc0RlY29kZW".to_owned(),
            ),
        ]);
        let stack = instantiated_with(&path, "orders", 3, None, &given).expect("instantiate");
        let script = launch_template_user_data(&stack, &ByLogicalId).expect("user data");
        assert!(script.starts_with("#!/bin/sh\n"), "{script}");
        for line in [
            "BERTH_CLUSTER__NAME=orders",
            "BERTH_KAFKA__MODE=kraft",
            "BERTH_CLUSTER__KAFKA_CLUSTER_ID=VXNlckRhdGFJc0RlY29kZW",
            "systemctl enable --now berth.service",
        ] {
            assert!(script.lines().any(|l| l == line), "{line} in {script}");
        }
        assert!(!script.contains("${"), "{script}");
    }

    #[test]
    fn user_data_that_is_not_base64_of_text_is_refused() {
        assert_eq!(
            decode_user_data("IyEvYmluL3NoCnRydWUK").expect("decodes"),
            "#!/bin/sh\ntrue\n"
        );
        for bad in ["#!/bin/sh", "/w=="] {
            assert!(
                matches!(decode_user_data(bad), Err(CloudInitError::Encoding(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_unit_runs_the_script_once_per_boot_after_the_network() {
        let unit = unit();
        for line in [
            "Type=oneshot",
            "RemainAfterExit=yes",
            "After=network-online.target",
            "WantedBy=multi-user.target",
            &format!("ExecStart={SCRIPT_PATH}"),
        ] {
            assert!(unit.lines().any(|l| l == line), "{line} in {unit}");
        }
        assert!(SCRIPT.starts_with("#!/usr/bin/python3\n"));
    }
}
