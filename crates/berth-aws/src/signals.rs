//! CloudFormation SignalResource and Auto Scaling lifecycle calls, each optional by configuration, each on its
//! own.
//!
//! The CloudFormation signal and the launch lifecycle hook are independent contracts, and neither waits for the
//! other: a SignalResource that CloudFormation refuses never keeps the launch hook from being completed. Both
//! refuse a call when nothing awaits it, and berth treats that answer as final ([`Delivery::NotAwaited`]):
//!
//! * CloudFormation accepts SignalResource only while a stack create or update awaits the resource's signals
//!   (its CreationPolicy, or an UpdatePolicy with `WaitOnResourceSignals`). Otherwise it answers
//!   `ValidationError` "Stack arn:... is in CREATE_COMPLETE state and cannot be signaled" (or "Resource X is in
//!   ... state and cannot be signaled"), which is every ordinary replacement. Sources: the SignalResource API
//!   reference ("You can use the SignalResource operation in conjunction with a creation policy or update
//!   policy", <https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_SignalResource.html>); the
//!   refusal's text as AWS returns it, e.g. aws-cloudformation/aws-cloudformation-templates#34 and #126,
//!   zalando-incubator/kubernetes-on-aws#538.
//! * Auto Scaling accepts CompleteLifecycleAction and RecordLifecycleActionHeartbeat only while the instance
//!   waits in `Pending:Wait` (or `Terminating:Wait`) for that hook; otherwise `ValidationError` "No active
//!   Lifecycle Action found with instance ID i-...". Sources: the CompleteLifecycleAction and
//!   RecordLifecycleActionHeartbeat API references and "Complete a lifecycle action"
//!   (<https://docs.aws.amazon.com/autoscaling/ec2/userguide/completing-lifecycle-hooks.html>); the text, e.g.
//!   convox/rack#2432, department-of-veterans-affairs/va.gov-cms#1719.
//!
//! A failed boot is reported by [`Signaller::report_failure`]: ABANDON when the launch action is pending
//! (Auto Scaling then terminates the instance and launches another), else SetInstanceHealth Unhealthy with
//! `ShouldRespectGracePeriod=false` (the same outcome for an instance already in service).
//!
//! Stack, logical id and group come from the configuration or, when empty, from the instance's own tags
//! (`aws:cloudformation:stack-name`, `aws:cloudformation:logical-id`, `aws:autoscaling:groupName`), read from
//! IMDS `tags/instance` when instance metadata tags are on, else with one DescribeTags call; the answer is
//! cached. A SignalResource that was taken is not sent again by this process.

use std::collections::BTreeMap;

use berth_core::facts::Identity;
use berth_core::ports::{Delivery, FailureReport, LaunchResult, Verdict};
use tokio::sync::Mutex;

use crate::discovery::filter;
use crate::error::AwsError;
use crate::metadata::Metadata;

const STACK_TAG: &str = "aws:cloudformation:stack-name";
const LOGICAL_ID_TAG: &str = "aws:cloudformation:logical-id";
const GROUP_TAG: &str = "aws:autoscaling:groupName";

/// Which signals are on, and the names configured for them (`aws.cloudformation`, `aws.autoscaling`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalSettings {
    /// SignalResource on.
    pub cloudformation: bool,
    /// Configured stack ("" = tag).
    pub stack: String,
    /// Configured logical id ("" = tag).
    pub resource: String,
    /// Configured group ("" = tag).
    pub group: String,
    /// Launch hook ("" = off).
    pub launch_hook: String,
    /// Terminating hook ("" = off).
    pub terminate_hook: String,
    /// SetInstanceHealth when Kafka is lost too long (a failed boot is always reported).
    pub mark_unhealthy: bool,
}

#[derive(Debug, Default)]
struct Progress {
    tags: Option<BTreeMap<String, String>>,
    cloudformation_sent: bool,
}

/// The refusal that means nothing awaits the call, when `error` is one (see the module docs for the sources).
pub fn not_awaited(error: &AwsError) -> Option<String> {
    let AwsError::Api {
        code: Some(code),
        message,
        ..
    } = error
    else {
        return None;
    };
    let refused = code == "ValidationError"
        && (message.ends_with("cannot be signaled")
            || message.starts_with("No active Lifecycle Action found"));
    refused.then(|| message.clone())
}

/// An API result where "nothing awaits this" is an answer, not an error.
fn delivered(result: Result<(), AwsError>) -> Result<Delivery, AwsError> {
    match result {
        Ok(()) => Ok(Delivery::Accepted),
        Err(error) => match not_awaited(&error) {
            Some(message) => Ok(Delivery::NotAwaited(message)),
            None => Err(error),
        },
    }
}

/// Sends berth's verdicts to CloudFormation and Auto Scaling.
#[derive(Debug)]
pub struct Signaller {
    settings: SignalSettings,
    ec2: aws_sdk_ec2::Client,
    cloudformation: aws_sdk_cloudformation::Client,
    autoscaling: aws_sdk_autoscaling::Client,
    metadata: Metadata,
    progress: Mutex<Progress>,
}

impl Signaller {
    /// A signaller over the given clients.
    pub fn new(
        settings: SignalSettings,
        ec2: aws_sdk_ec2::Client,
        cloudformation: aws_sdk_cloudformation::Client,
        autoscaling: aws_sdk_autoscaling::Client,
        metadata: Metadata,
    ) -> Self {
        Self {
            settings,
            ec2,
            cloudformation,
            autoscaling,
            metadata,
            progress: Mutex::default(),
        }
    }

    /// SignalResource SUCCESS/FAILURE (when configured); `NotAwaited` when no create or update awaits it.
    pub async fn signal_stack(
        &self,
        me: &Identity,
        verdict: &Verdict,
    ) -> Result<Delivery, AwsError> {
        let status = match verdict {
            Verdict::Success => "SUCCESS",
            Verdict::Failure(reason) => {
                tracing::error!(instance_id = %me.instance_id, %reason, "reporting boot failure");
                "FAILURE"
            }
        };
        let mut progress = self.progress.lock().await;
        if !self.settings.cloudformation {
            return Ok(Delivery::NotConfigured);
        }
        if progress.cloudformation_sent {
            return Ok(Delivery::Accepted);
        }
        let stack = self
            .name(
                &mut progress,
                me,
                &self.settings.stack,
                STACK_TAG,
                "stack name",
                "aws.cloudformation.stack",
            )
            .await?;
        let resource = self
            .name(
                &mut progress,
                me,
                &self.settings.resource,
                LOGICAL_ID_TAG,
                "logical resource id",
                "aws.cloudformation.resource",
            )
            .await?;
        let sent = self
            .cloudformation
            .signal_resource()
            .stack_name(&stack)
            .logical_resource_id(&resource)
            .unique_id(&me.instance_id)
            .status(status.into())
            .send()
            .await
            .map(drop)
            .map_err(|e| AwsError::api("SignalResource", format!("{stack}/{resource}"), e));
        let delivery = delivered(sent)?;
        if delivery == Delivery::Accepted {
            tracing::info!(stack = %stack, resource = %resource, status, "CloudFormation signalled");
            progress.cloudformation_sent = true;
        }
        Ok(delivery)
    }

    /// CompleteLifecycleAction CONTINUE/ABANDON on the launch hook (when configured).
    pub async fn complete_launch(
        &self,
        me: &Identity,
        result: LaunchResult,
    ) -> Result<Delivery, AwsError> {
        if self.settings.launch_hook.is_empty() {
            return Ok(Delivery::NotConfigured);
        }
        let result = match result {
            LaunchResult::Continue => "CONTINUE",
            LaunchResult::Abandon => "ABANDON",
        };
        let mut progress = self.progress.lock().await;
        let hook = self.settings.launch_hook.clone();
        delivered(self.complete_hook(&mut progress, me, &hook, result).await)
    }

    /// RecordLifecycleActionHeartbeat for the launch hook (when configured).
    pub async fn heartbeat(&self, me: &Identity) -> Result<Delivery, AwsError> {
        let hook = self.settings.launch_hook.clone();
        self.record_heartbeat(me, &hook).await
    }

    /// RecordLifecycleActionHeartbeat for the terminating hook (when configured), while a drain waits.
    pub async fn heartbeat_termination(&self, me: &Identity) -> Result<Delivery, AwsError> {
        let hook = self.settings.terminate_hook.clone();
        self.record_heartbeat(me, &hook).await
    }

    async fn record_heartbeat(&self, me: &Identity, hook: &str) -> Result<Delivery, AwsError> {
        if hook.is_empty() {
            return Ok(Delivery::NotConfigured);
        }
        let mut progress = self.progress.lock().await;
        let group = self.group(&mut progress, me).await?;
        let sent = self
            .autoscaling
            .record_lifecycle_action_heartbeat()
            .auto_scaling_group_name(&group)
            .lifecycle_hook_name(hook)
            .instance_id(&me.instance_id)
            .send()
            .await
            .map(drop)
            .map_err(|e| {
                AwsError::api(
                    "RecordLifecycleActionHeartbeat",
                    format!("{group}/{hook}"),
                    e,
                )
            });
        delivered(sent)
    }

    /// SetInstanceHealth Unhealthy because Kafka was lost too long (when turned on).
    pub async fn mark_unhealthy(&self, me: &Identity) -> Result<Delivery, AwsError> {
        if !self.settings.mark_unhealthy {
            return Ok(Delivery::NotConfigured);
        }
        self.set_unhealthy(me).await?;
        Ok(Delivery::Accepted)
    }

    /// A failed boot: ABANDON the pending launch action, else (none pending, or no launch hook)
    /// SetInstanceHealth Unhealthy. Either way Auto Scaling terminates the instance and replaces it.
    pub async fn report_failure(&self, me: &Identity) -> Result<FailureReport, AwsError> {
        match self.complete_launch(me, LaunchResult::Abandon).await? {
            Delivery::Accepted => {
                tracing::warn!(instance_id = %me.instance_id, "launch lifecycle action abandoned");
                Ok(FailureReport::Abandoned)
            }
            Delivery::NotAwaited(_) | Delivery::NotConfigured => {
                self.set_unhealthy(me).await?;
                Ok(FailureReport::MarkedUnhealthy)
            }
        }
    }

    async fn set_unhealthy(&self, me: &Identity) -> Result<(), AwsError> {
        self.autoscaling
            .set_instance_health()
            .instance_id(&me.instance_id)
            .health_status("Unhealthy")
            .should_respect_grace_period(false)
            .send()
            .await
            .map_err(|e| AwsError::api("SetInstanceHealth", &me.instance_id, e))?;
        tracing::warn!(instance_id = %me.instance_id, "told Auto Scaling this instance is unhealthy");
        Ok(())
    }

    /// CompleteLifecycleAction CONTINUE for the terminating hook (when configured).
    pub async fn complete_termination(&self, me: &Identity) -> Result<Delivery, AwsError> {
        if self.settings.terminate_hook.is_empty() {
            return Ok(Delivery::NotConfigured);
        }
        let mut progress = self.progress.lock().await;
        let hook = self.settings.terminate_hook.clone();
        delivered(
            self.complete_hook(&mut progress, me, &hook, "CONTINUE")
                .await,
        )
    }

    async fn complete_hook(
        &self,
        progress: &mut Progress,
        me: &Identity,
        hook: &str,
        result: &str,
    ) -> Result<(), AwsError> {
        let group = self.group(progress, me).await?;
        self.autoscaling
            .complete_lifecycle_action()
            .auto_scaling_group_name(&group)
            .lifecycle_hook_name(hook)
            .instance_id(&me.instance_id)
            .lifecycle_action_result(result)
            .send()
            .await
            .map_err(|e| AwsError::api("CompleteLifecycleAction", format!("{group}/{hook}"), e))?;
        tracing::info!(group = %group, hook, result, "lifecycle action completed");
        Ok(())
    }

    async fn group(&self, progress: &mut Progress, me: &Identity) -> Result<String, AwsError> {
        self.name(
            progress,
            me,
            &self.settings.group,
            GROUP_TAG,
            "Auto Scaling group",
            "aws.autoscaling.group",
        )
        .await
    }

    /// A configured name, else the instance's tag (IMDS first, then one DescribeTags for all three tags).
    async fn name(
        &self,
        progress: &mut Progress,
        me: &Identity,
        configured: &str,
        tag: &'static str,
        what: &'static str,
        key: &'static str,
    ) -> Result<String, AwsError> {
        if !configured.is_empty() {
            return Ok(configured.to_owned());
        }
        if progress.tags.is_none() {
            progress.tags = Some(self.instance_tags(me).await?);
        }
        progress
            .tags
            .as_ref()
            .and_then(|tags| tags.get(tag).cloned())
            .ok_or_else(|| AwsError::MissingName {
                what,
                key,
                tag,
                instance_id: me.instance_id.clone(),
            })
    }

    async fn instance_tags(&self, me: &Identity) -> Result<BTreeMap<String, String>, AwsError> {
        let mut tags = BTreeMap::new();
        for tag in [STACK_TAG, LOGICAL_ID_TAG, GROUP_TAG] {
            if let Some(value) = self.metadata.instance_tag(tag).await? {
                tags.insert(tag.to_owned(), value);
            }
        }
        if tags.len() == 3 {
            return Ok(tags);
        }
        let output = self
            .ec2
            .describe_tags()
            .filters(filter("resource-id", [&me.instance_id]))
            .filters(filter("key", [STACK_TAG, LOGICAL_ID_TAG, GROUP_TAG]))
            .send()
            .await
            .map_err(|e| AwsError::api("DescribeTags", &me.instance_id, e))?;
        for tag in output.tags() {
            if let (Some(key), Some(value)) = (tag.key(), tag.value()) {
                tags.entry(key.to_owned())
                    .or_insert_with(|| value.to_owned());
            }
        }
        Ok(tags)
    }
}
