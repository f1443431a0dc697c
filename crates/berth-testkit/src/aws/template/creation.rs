//! The simulated CloudFormation's decisions while it creates a stack from a template, pure so each is tested
//! against AWS's documentation: a template's Auto Scaling groups read as the region's groups (the same
//! [`GroupSpec`] the region's Auto Scaling control plane plays), which resource starts when, and when a group is
//! `CREATE_COMPLETE` or `CREATE_FAILED`.
//!
//! * A resource is created once every resource it depends on (`DependsOn`, `Ref`, `Fn::GetAtt`, `Fn::Sub`) is
//!   `CREATE_COMPLETE`; resources without a dependency between them are created in parallel (DependsOn attribute
//!   reference, <https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-attribute-dependson.html>).
//!   [`startable`].
//! * A group is `CREATE_COMPLETE` when its desired capacity is reached (AWS::AutoScaling::AutoScalingGroup,
//!   `DesiredCapacity`: "CloudFormation marks the Auto Scaling group as successful (by setting its status to
//!   CREATE_COMPLETE) when the desired capacity is reached"), read strictly: an instance counts once it is
//!   `InService`, not while a launch hook holds it in `Pending:Wait`; with a `CreationPolicy` `ResourceSignal`, also
//!   only once `Count` SUCCESS signals arrived. A FAILURE signal, or `Timeout` passing without them, fails it
//!   (CreationPolicy attribute reference,
//!   <https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-attribute-creationpolicy.html>; the
//!   timeout's reason is CloudFormation's "Failed to receive N resource signal(s) within the specified
//!   duration"). The stack model holds the rule ([`crate::aws::cloudformation::Stacks::start_group`]).
//! * A hook in the group's `LifecycleHookSpecificationList` holds every instance from the group's first launch;
//!   an `AWS::AutoScaling::LifecycleHook` resource is added to its group after the group is created, so it holds
//!   only instances launched after it (AWS::AutoScaling::AutoScalingGroup, `LifecycleHookSpecificationList`:
//!   hooks "added to the Auto Scaling group before instances are launched"; AWS::AutoScaling::LifecycleHook:
//!   "the lifecycle hook is added to the group after the group is created"). [`GroupDeclaration::later_hooks`].
//! * What the region cannot model is refused, never skipped: a group property it does not play, a
//!   `CapacityRebalance` of true, a `HealthCheckType` other than `EC2`, an `InstanceMaintenancePolicy` other than
//!   terminate-before-launch (0/100: the region's groups terminate before they launch), lifecycle hook
//!   notifications, and an `AutoScalingCreationPolicy`. What AWS itself refuses is refused with its rule: a
//!   desired capacity outside MinSize..MaxSize (CreateAutoScalingGroup: "Desired capacity:D must be between the
//!   specified min size:N and max size:X"), a hook's `HeartbeatTimeout` outside 30..7200 s and a
//!   `DefaultResult` other than CONTINUE or ABANDON (LifecycleHookSpecification), a `ResourceSignal` `Timeout`
//!   over PT12H (CreationPolicy: "The maximum time that can be specified for this property is 12 hours").
//!   [`groups`].

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use super::{Declared, Kind, Physical, Stack, TemplateError};
use crate::aws::autoscaling::group::{DeclaredGroup, GroupPlan};
use crate::aws::autoscaling::{GroupSpec, Hook, HookResult, Transition};
use crate::aws::cloudformation::ResourceSignal;

/// The group properties the region plays (anything else is refused).
const MODELLED: &[&str] = &[
    "AutoScalingGroupName",
    "MinSize",
    "MaxSize",
    "DesiredCapacity",
    "VPCZoneIdentifier",
    "LaunchTemplate",
    "HealthCheckType",
    "HealthCheckGracePeriod",
    "InstanceMaintenancePolicy",
    "CapacityRebalance",
    "LifecycleHookSpecificationList",
    "Tags",
];

/// A template's Auto Scaling group, as the region creates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDeclaration {
    /// Its logical id.
    pub logical_id: String,
    /// Its name, hooks and grace period, as the region's Auto Scaling model holds them.
    pub spec: GroupSpec,
    /// `VPCZoneIdentifier`: the subnets it launches into.
    pub subnets: Vec<String>,
    /// `DesiredCapacity` (`MinSize` when absent).
    pub desired: usize,
    /// `MaxSize`.
    pub max_size: usize,
    /// Its `AWS::AutoScaling::LifecycleHook` resources (logical id, hook): added once the group is created, so
    /// its first instances are not held by them.
    pub later_hooks: Vec<(String, Hook)>,
    /// Its `CreationPolicy` `ResourceSignal`, if it has one.
    pub creation_signal: Option<ResourceSignal>,
    /// What it is created after.
    pub depends_on: BTreeSet<String>,
}

/// Every Auto Scaling group of the stack, in creation order, with its properties resolved by `created`.
pub fn groups(
    stack: &Stack,
    created: &dyn Physical,
) -> Result<Vec<GroupDeclaration>, TemplateError> {
    let mut groups = Vec::new();
    for resource in stack.resources() {
        let properties = stack.properties(&resource.logical_id, created)?;
        match resource.kind {
            Kind::AutoScalingGroup => groups.push(group(resource, &properties)?),
            Kind::LifecycleHook => {
                let id = &resource.logical_id;
                let name = properties["AutoScalingGroupName"].as_str();
                let group: &mut GroupDeclaration = groups
                    .iter_mut()
                    .find(|g| {
                        name.is_some()
                            && (Some(g.spec.name.as_str()) == name
                                || created.reference(&g.logical_id).as_deref() == name)
                    })
                    .ok_or_else(|| TemplateError::Unenforced {
                        logical_id: id.clone(),
                        what: format!("a hook for group {name:?}, which the stack does not create"),
                    })?;
                group
                    .later_hooks
                    .push((id.clone(), lifecycle_hook(id, &properties)?));
            }
            _ => {}
        }
    }
    Ok(groups)
}

/// One group from its declaration and resolved properties.
pub fn group(resource: &Declared, properties: &Value) -> Result<GroupDeclaration, TemplateError> {
    let id = resource.logical_id.as_str();
    let refuse = |what: String| TemplateError::Unenforced {
        logical_id: id.to_owned(),
        what,
    };
    if let Some(other) = properties
        .as_object()
        .into_iter()
        .flat_map(|p| p.keys())
        .find(|key| !MODELLED.contains(&key.as_str()))
    {
        return Err(refuse(format!("property {other}")));
    }
    refuse_unplayed(properties).map_err(refuse)?;
    let size = |key: &str| count(&properties[key]).ok_or_else(|| refuse(key.to_owned()));
    let (min, max) = (size("MinSize")?, size("MaxSize")?);
    let desired = match &properties["DesiredCapacity"] {
        Value::Null => min,
        value => count(value).ok_or_else(|| refuse("DesiredCapacity".into()))?,
    };
    if desired < min || desired > max {
        return Err(TemplateError::Intrinsic(format!(
            "{id}: Desired capacity:{desired} must be between the specified min size:{min} and max size:{max}"
        )));
    }
    let hooks = properties["LifecycleHookSpecificationList"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|hook| lifecycle_hook(id, hook))
        .collect::<Result<_, _>>()?;
    let grace = match &properties["HealthCheckGracePeriod"] {
        Value::Null => 0,
        value => count(value).ok_or_else(|| refuse("HealthCheckGracePeriod".into()))?,
    };
    Ok(GroupDeclaration {
        logical_id: id.to_owned(),
        spec: GroupSpec {
            name: properties["AutoScalingGroupName"]
                .as_str()
                .ok_or_else(|| refuse("a group without AutoScalingGroupName".into()))?
                .to_owned(),
            hooks,
            health_check_grace_period: Duration::from_secs(grace as u64),
        },
        subnets: properties["VPCZoneIdentifier"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect(),
        desired,
        max_size: max,
        later_hooks: Vec::new(),
        creation_signal: creation_signal(id, resource.creation_policy.as_ref())?,
        depends_on: resource.depends_on.clone(),
    })
}

/// What the region does not play, among the properties it reads: why, if any.
fn refuse_unplayed(properties: &Value) -> Result<(), String> {
    if properties["CapacityRebalance"] == Value::Bool(true)
        || properties["CapacityRebalance"] == Value::String("true".into())
    {
        return Err("CapacityRebalance true (the region does not rebalance Spot capacity)".into());
    }
    match properties["HealthCheckType"].as_str() {
        None | Some("EC2") => {}
        Some(other) => return Err(format!("HealthCheckType {other} (only EC2)")),
    }
    let policy = &properties["InstanceMaintenancePolicy"];
    if !policy.is_null()
        && (count(&policy["MinHealthyPercentage"]) != Some(0)
            || count(&policy["MaxHealthyPercentage"]) != Some(100))
    {
        return Err(format!(
            "InstanceMaintenancePolicy {policy} (the region's groups terminate before they launch: 0/100 only)"
        ));
    }
    Ok(())
}

/// Whether a group's first instances wait in `Pending:Wait` (a launch hook in its
/// `LifecycleHookSpecificationList`). Pure.
pub fn holds_first_launches(group: &GroupDeclaration) -> bool {
    group
        .spec
        .hooks
        .iter()
        .any(|hook| hook.transition == Transition::Launching)
}

/// A `LifecycleHookSpecification` (or an `AWS::AutoScaling::LifecycleHook`'s properties).
fn lifecycle_hook(id: &str, hook: &Value) -> Result<Hook, TemplateError> {
    let refuse = |what: String| TemplateError::Unenforced {
        logical_id: id.to_owned(),
        what,
    };
    for unplayed in ["NotificationTargetARN", "RoleARN", "NotificationMetadata"] {
        if !hook[unplayed].is_null() {
            return Err(refuse(format!("lifecycle hook {unplayed}")));
        }
    }
    let name = hook["LifecycleHookName"].as_str().unwrap_or_default();
    let transition = match hook["LifecycleTransition"].as_str() {
        Some("autoscaling:EC2_INSTANCE_LAUNCHING") => Transition::Launching,
        Some("autoscaling:EC2_INSTANCE_TERMINATING") => Transition::Terminating,
        other => {
            return Err(refuse(format!(
                "lifecycle hook {name}: transition {other:?}"
            )))
        }
    };
    let timeout = match &hook["HeartbeatTimeout"] {
        Value::Null => 3600,
        value => count(value).unwrap_or(0),
    };
    if !(30..=7200).contains(&timeout) {
        return Err(TemplateError::Intrinsic(format!(
            "{id}: lifecycle hook {name}: HeartbeatTimeout {timeout} is outside 30..7200 seconds"
        )));
    }
    let default_result = match hook["DefaultResult"].as_str() {
        None | Some("ABANDON") => HookResult::Abandon,
        Some("CONTINUE") => HookResult::Continue,
        Some(other) => {
            return Err(TemplateError::Intrinsic(format!(
                "{id}: lifecycle hook {name}: DefaultResult {other} (CONTINUE or ABANDON)"
            )))
        }
    };
    Ok(Hook {
        name: name.to_owned(),
        transition,
        heartbeat_timeout: Duration::from_secs(timeout as u64),
        default_result,
    })
}

/// A `CreationPolicy`'s `ResourceSignal` (Count defaults to 1, Timeout to PT5M; at most PT12H).
fn creation_signal(
    id: &str,
    policy: Option<&Value>,
) -> Result<Option<ResourceSignal>, TemplateError> {
    let Some(policy) = policy else {
        return Ok(None);
    };
    if !policy["AutoScalingCreationPolicy"].is_null() {
        return Err(TemplateError::Unenforced {
            logical_id: id.to_owned(),
            what: "CreationPolicy AutoScalingCreationPolicy".into(),
        });
    }
    let signal = &policy["ResourceSignal"];
    if signal.is_null() {
        return Ok(None);
    }
    let count = match &signal["Count"] {
        Value::Null => 1,
        value => self::count(value).ok_or_else(|| {
            TemplateError::Intrinsic(format!("{id}: CreationPolicy Count {value}"))
        })?,
    };
    let timeout = match signal["Timeout"].as_str() {
        None => Duration::from_secs(300),
        Some(text) => iso8601_duration(text).ok_or_else(|| {
            TemplateError::Intrinsic(format!(
                "{id}: CreationPolicy Timeout {text} (ISO 8601, PT#H#M#S)"
            ))
        })?,
    };
    if timeout > Duration::from_secs(12 * 3600) {
        return Err(TemplateError::Intrinsic(format!(
            "{id}: CreationPolicy Timeout {timeout:?}: the maximum time that can be specified for this property is 12 hours"
        )));
    }
    Ok(Some(ResourceSignal {
        count: count as u32,
        timeout,
    }))
}

/// A count given as a number or, as CloudFormation templates often give it, a string.
pub(super) fn count(value: &Value) -> Option<usize> {
    match value {
        Value::Number(n) => n.as_u64().map(|n| n as usize),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// An ISO 8601 duration of the form CloudFormation's policies take (`PT#H#M#S`, each part optional). Pure.
pub fn iso8601_duration(text: &str) -> Option<Duration> {
    let mut rest = text.strip_prefix("PT")?;
    if rest.is_empty() {
        return None;
    }
    let mut seconds = 0u64;
    for (unit, scale) in [('H', 3600), ('M', 60), ('S', 1)] {
        if let Some(at) = rest.find(unit) {
            let number: u64 = rest[..at].parse().ok()?;
            seconds += number * scale;
            rest = &rest[at + 1..];
        }
    }
    rest.is_empty().then(|| Duration::from_secs(seconds))
}

/// The resources to start creating now: not started yet, and every one they depend on complete. Pure.
pub fn startable<'a>(
    resources: &'a [Declared],
    complete: &BTreeSet<String>,
    started: &BTreeSet<String>,
) -> Vec<&'a str> {
    resources
        .iter()
        .filter(|r| !started.contains(&r.logical_id))
        .filter(|r| r.depends_on.iter().all(|d| complete.contains(d)))
        .map(|r| r.logical_id.as_str())
        .collect()
}

impl GroupDeclaration {
    /// The group as the region's Auto Scaling control plane plays it, in zone `az`: created after the groups
    /// of `stack_groups` it depends on (its other dependencies, the ENIs and volumes, exist before any group).
    pub fn plan(&self, az: usize, stack_groups: &[GroupDeclaration]) -> GroupPlan {
        let after = stack_groups
            .iter()
            .filter(|group| self.depends_on.contains(&group.logical_id))
            .map(|group| group.logical_id.clone())
            .collect();
        GroupPlan {
            declared: Some(DeclaredGroup {
                logical_id: self.logical_id.clone(),
                spec: self.spec.clone(),
                later_hooks: self
                    .later_hooks
                    .iter()
                    .map(|(_, hook)| hook.clone())
                    .collect(),
                creation_signal: self.creation_signal,
                after,
                max_size: self.max_size,
            }),
            ..GroupPlan::new(self.spec.name.clone(), az, self.desired)
        }
    }
}
