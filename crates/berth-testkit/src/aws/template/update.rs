//! The simulated CloudFormation's decisions while it updates a stack's Auto Scaling groups under an
//! `UpdatePolicy` `AutoScalingRollingUpdate`, pure so each is tested against AWS's documentation. A rolling
//! update is how an operator changes berth's launch template version: it stops brokers, so a rule the region
//! plays loosely (a batch too large, a signal not waited for, a group rolled while another is) would let a
//! test pass that loses records on AWS.
//!
//! The policy ([`policy`]; UpdatePolicy attribute reference,
//! <https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-attribute-updatepolicy.html>):
//! * `MaxBatchSize` defaults to 1, `MinInstancesInService` to 0, `MinSuccessfulInstancesPercent` to 100,
//!   `WaitOnResourceSignals` to false, `PauseTime` to PT0S, and "If the WaitOnResourceSignals property is set to
//!   true, the default is PT5M".
//! * Refused as AWS refuses them: `MinInstancesInService` not below the group's `MaxSize` ("This value must be
//!   less than the MaxSize of the Auto Scaling group"), a `PauseTime` over an hour ("The maximum PauseTime is
//!   one hour (PT1H)"), a `MinSuccessfulInstancesPercent` outside 0..100 ("You can specify a value from 0 to
//!   100") or without `WaitOnResourceSignals` ("If you specify this property, you must also enable the
//!   WaitOnResourceSignals and PauseTime properties").
//! * Refused because the region does not model them, never skipped: a non-empty `SuspendProcesses`,
//!   `AutoScalingReplacingUpdate`, `AutoScalingScheduledAction`, any other key, and a `MaxBatchSize` of 0.
//!
//! One group's update ([`next_step`]): old instances are replaced a batch of at most `MaxBatchSize` at a time
//! ("Specifies the maximum number of instances that CloudFormation updates"), never leaving fewer than
//! `MinInstancesInService` in service ("the minimum number of instances that must be in service within the Auto
//! Scaling group while CloudFormation updates old instances"). A group with room under `MaxSize` launches the
//! batch first; one without room (`MaxSize` = desired, as each of the shipped template's groups of one)
//! terminates first and launches once the old instances are gone. With `WaitOnResourceSignals` the batch waits
//! for a signal from each new instance ("CloudFormation must receive a signal from each new instance within the
//! specified PauseTime before continuing the update"), else `PauseTime` passes. A signal not received within
//! `PauseTime` is a failure, with CloudFormation's event "Failed to receive N resource signal(s) for the current
//! batch. Each resource signal timeout is counted as a FAILURE."; the update fails once the failures leave
//! fewer than `MinSuccessfulInstancesPercent` of the group able to succeed ("if you update five instances with a
//! minimum successful percentage of 50, three instances must signal success"), with CloudFormation's reason
//! "Received S SUCCESS signal(s) out of N. Unable to satisfy P% MinSuccessfulInstancesPercent requirement"; a
//! FAILURE signal that does so fails it with "Received FAILURE signal with UniqueId ID" (CloudFormation's
//! wording for a resource's FAILURE signal, as AWS ParallelCluster's troubleshooting guide prints it,
//! <https://docs.aws.amazon.com/parallelcluster/latest/ug/troubleshooting.html>). No AWS document prints the
//! timeout and percentage texts: they are CloudFormation's stack events as operators quote them in public
//! issues, kept word for word.
//! A group's rollback is the same rolling update back to the previous launch template version ("CloudFormation
//! rolls back the stack with the same settings, including the same PauseTime value", AWS Knowledge Center,
//! <https://repost.aws/knowledge-center/auto-scaling-group-rolling-updates>).
//!
//! Across groups ([`updatable`], [`rollback_order`]): a resource is updated once every resource it depends on
//! and that the update changes has finished updating, so the shipped template's `DependsOn` chain rolls one
//! group at a time (DependsOn attribute reference,
//! <https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-attribute-dependson.html>: "you can use the
//! DependsOn attribute to specify that the creation of a specific resource follows another"; stack updates
//! follow the same dependency order). AWS documents no order for an update's rollback: the region rolls back
//! the group that failed first, then the groups already updated in reverse dependency order, the stricter
//! reading (no group returns to the old version before a group that depends on it).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use super::creation::{count, iso8601_duration};
use super::{Declared, Kind, Physical, Stack, TemplateError};
use crate::aws::autoscaling::LifecycleState;

/// The `AutoScalingRollingUpdate` keys the region plays.
const MODELLED: &[&str] = &[
    "MaxBatchSize",
    "MinInstancesInService",
    "MinSuccessfulInstancesPercent",
    "PauseTime",
    "WaitOnResourceSignals",
    "SuspendProcesses",
];

/// A group's `UpdatePolicy` `AutoScalingRollingUpdate`, defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollingUpdate {
    /// `MaxBatchSize` (default 1): the most instances replaced at once.
    pub max_batch_size: usize,
    /// `MinInstancesInService` (default 0).
    pub min_instances_in_service: usize,
    /// `MinSuccessfulInstancesPercent` (default 100).
    pub min_successful_percent: u32,
    /// `PauseTime` (default PT0S; PT5M with `WaitOnResourceSignals`).
    pub pause_time: Duration,
    /// `WaitOnResourceSignals` (default false).
    pub wait_on_resource_signals: bool,
}

/// Every Auto Scaling group's rolling update policy, in the stack's order (`None` for a group without one).
pub fn policies(
    stack: &Stack,
    created: &dyn Physical,
) -> Result<Vec<(String, Option<RollingUpdate>)>, TemplateError> {
    stack
        .resources()
        .iter()
        .filter(|r| r.kind == Kind::AutoScalingGroup)
        .map(|r| {
            let properties = stack.properties(&r.logical_id, created)?;
            Ok((r.logical_id.clone(), policy(r, &properties)?))
        })
        .collect()
}

/// A group's rolling update policy from its declaration and resolved properties (for its `MaxSize`).
pub fn policy(
    resource: &Declared,
    properties: &Value,
) -> Result<Option<RollingUpdate>, TemplateError> {
    let id = resource.logical_id.as_str();
    let refuse = |what: String| TemplateError::Unenforced {
        logical_id: id.to_owned(),
        what,
    };
    let Some(update_policy) = &resource.update_policy else {
        return Ok(None);
    };
    if let Some(other) = object_keys(update_policy).find(|k| *k != "AutoScalingRollingUpdate") {
        return Err(refuse(format!("UpdatePolicy {other}")));
    }
    let rolling = &update_policy["AutoScalingRollingUpdate"];
    if rolling.is_null() {
        return Ok(None);
    }
    if let Some(other) = object_keys(rolling).find(|k| !MODELLED.contains(k)) {
        return Err(refuse(format!("AutoScalingRollingUpdate {other}")));
    }
    match &rolling["SuspendProcesses"] {
        Value::Null => {}
        Value::Array(processes) if processes.is_empty() => {}
        processes => {
            return Err(refuse(format!(
                "SuspendProcesses {processes} (the region does not model suspended processes)"
            )))
        }
    }
    let policy = read(id, rolling)?;
    if policy.max_batch_size == 0 {
        return Err(refuse(
            "MaxBatchSize 0 (a batch replaces at least one instance)".into(),
        ));
    }
    let max_size = count(&properties["MaxSize"]).ok_or_else(|| refuse("MaxSize".into()))?;
    check(id, &policy, rolling, max_size)?;
    Ok(Some(policy))
}

fn object_keys(value: &Value) -> impl Iterator<Item = &str> {
    value
        .as_object()
        .into_iter()
        .flat_map(|o| o.keys())
        .map(String::as_str)
}

/// The policy's values, defaults applied.
fn read(id: &str, rolling: &Value) -> Result<RollingUpdate, TemplateError> {
    let bad = |key: &str| TemplateError::Intrinsic(format!("{id}: {key} {}", rolling[key]));
    let number = |key: &str, default: usize| match &rolling[key] {
        Value::Null => Ok(default),
        value => count(value).ok_or_else(|| bad(key)),
    };
    let wait_on_resource_signals = match &rolling["WaitOnResourceSignals"] {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::String(s) if s == "true" || s == "false" => s == "true",
        _ => return Err(bad("WaitOnResourceSignals")),
    };
    let pause_time = match &rolling["PauseTime"] {
        Value::Null if wait_on_resource_signals => Duration::from_secs(300),
        Value::Null => Duration::ZERO,
        Value::String(text) => iso8601_duration(text).ok_or_else(|| bad("PauseTime"))?,
        _ => return Err(bad("PauseTime")),
    };
    Ok(RollingUpdate {
        max_batch_size: number("MaxBatchSize", 1)?,
        min_instances_in_service: number("MinInstancesInService", 0)?,
        min_successful_percent: number("MinSuccessfulInstancesPercent", 100)? as u32,
        pause_time,
        wait_on_resource_signals,
    })
}

/// AWS's own refusals of a rolling update policy.
fn check(
    id: &str,
    policy: &RollingUpdate,
    rolling: &Value,
    max_size: usize,
) -> Result<(), TemplateError> {
    let refuse = |why: String| Err(TemplateError::Intrinsic(format!("{id}: {why}")));
    if policy.min_instances_in_service >= max_size {
        return refuse(format!(
            "MinInstancesInService {} must be less than the MaxSize of the Auto Scaling group ({max_size})",
            policy.min_instances_in_service
        ));
    }
    if policy.pause_time > Duration::from_secs(3600) {
        return refuse(format!(
            "PauseTime {:?}: the maximum PauseTime is one hour (PT1H)",
            policy.pause_time
        ));
    }
    if policy.min_successful_percent > 100 {
        return refuse(format!(
            "MinSuccessfulInstancesPercent {}: you can specify a value from 0 to 100",
            policy.min_successful_percent
        ));
    }
    if !rolling["MinSuccessfulInstancesPercent"].is_null() && !policy.wait_on_resource_signals {
        return refuse("MinSuccessfulInstancesPercent: if you specify this property, you must also enable the WaitOnResourceSignals and PauseTime properties".into());
    }
    Ok(())
}

/// One instance of a group being updated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its instance id.
    pub instance_id: String,
    /// Its lifecycle state.
    pub state: LifecycleState,
    /// Whether it runs the launch template version the update rolls to.
    pub updated: bool,
}

/// The batch of replacements launched last, while it is not settled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// The instances launched for it.
    pub launched: Vec<String>,
    /// The instances that sent a SUCCESS signal.
    pub successes: BTreeSet<String>,
    /// The instances that sent a FAILURE signal.
    pub failures: BTreeSet<String>,
    /// How long ago its instances launched.
    pub elapsed: Duration,
}

/// The signal outcomes of the update's settled batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Instances that signalled SUCCESS.
    pub successes: usize,
    /// Instances that signalled FAILURE or whose signal timed out.
    pub failures: usize,
}

/// A group's rolling update as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupUpdate<'a> {
    /// The group's desired capacity.
    pub desired: usize,
    /// The group's `MaxSize`.
    pub max_size: usize,
    /// Its instances (terminated ones left out).
    pub members: &'a [Member],
    /// The batch launched last, if it is not settled yet.
    pub batch: Option<&'a Batch>,
    /// The settled batches' signals.
    pub settled: Tally,
}

/// What a group's rolling update does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Terminate these old instances (the batch, or the old ones a launched batch replaced).
    Terminate(Vec<String>),
    /// Launch this many instances of the new version: the next batch.
    Launch(usize),
    /// Nothing to do yet: what it waits for.
    Wait(String),
    /// The current batch is settled with this outcome (add it to [`GroupUpdate::settled`], clear the batch).
    Settle(Tally),
    /// Every instance runs the new version: `UPDATE_COMPLETE`.
    Complete,
    /// The update failed: CloudFormation's reason; the group returns to the previous version.
    RollBack(String),
}

/// The next step of one group's rolling update. Pure.
///
/// The caller applies each step and asks again: on [`Step::Launch`] it records the instances launched as the
/// [`GroupUpdate::batch`]; on [`Step::Settle`] it adds the tally to [`GroupUpdate::settled`] and clears the
/// batch; on [`Step::RollBack`] it rolls the group back by the same decisions, with the previous version's
/// instances as the [`Member::updated`] ones.
pub fn next_step(policy: &RollingUpdate, group: &GroupUpdate) -> Step {
    if let Some(batch) = group.batch {
        return batch_step(policy, group, batch);
    }
    let leaving = |m: &&Member| {
        matches!(
            m.state,
            LifecycleState::TerminatingWait | LifecycleState::TerminatingProceed
        )
    };
    if let Some(member) = group.members.iter().find(leaving) {
        return Step::Wait(format!(
            "instance {} to leave the group ({})",
            member.instance_id,
            member.state.as_str()
        ));
    }
    let old: Vec<&Member> = group.members.iter().filter(|m| !m.updated).collect();
    let in_service = group
        .members
        .iter()
        .filter(|m| m.state == LifecycleState::InService)
        .count();
    let may_leave = in_service.saturating_sub(policy.min_instances_in_service);
    let live = group.members.len();
    if live > group.desired && !old.is_empty() {
        let surplus = (live - group.desired).min(may_leave);
        return terminate(&old, surplus, policy);
    }
    if old.is_empty() && live >= group.desired {
        return completion(policy, group);
    }
    let room = group.max_size.saturating_sub(live);
    if live < group.desired {
        let replacing = group.desired - live;
        return Step::Launch(replacing.min(policy.max_batch_size).min(room));
    }
    let batch = policy.max_batch_size.min(old.len());
    if room > 0 {
        return Step::Launch(batch.min(room));
    }
    terminate(&old, batch.min(may_leave), policy)
}

/// Terminate up to `n` old instances, or wait if `MinInstancesInService` allows none.
fn terminate(old: &[&Member], n: usize, policy: &RollingUpdate) -> Step {
    if n == 0 {
        return Step::Wait(format!(
            "an instance may leave service only while more than MinInstancesInService ({}) are InService",
            policy.min_instances_in_service
        ));
    }
    Step::Terminate(old.iter().take(n).map(|m| m.instance_id.clone()).collect())
}

/// Every instance is new: complete, unless too few signalled success.
fn completion(policy: &RollingUpdate, group: &GroupUpdate) -> Step {
    let settled = group.settled;
    if policy.wait_on_resource_signals && settled.failures > tolerated(policy, group.desired) {
        return Step::RollBack(unsatisfied(policy, settled.successes, group.desired));
    }
    Step::Complete
}

/// The settling of the batch launched last.
fn batch_step(policy: &RollingUpdate, group: &GroupUpdate, batch: &Batch) -> Step {
    let tolerated = tolerated(policy, group.desired);
    let failed = group.settled.failures + batch.failures.len();
    if policy.wait_on_resource_signals && failed > tolerated {
        let id = batch.failures.iter().next().cloned().unwrap_or_default();
        return Step::RollBack(format!("Received FAILURE signal with UniqueId {id}"));
    }
    if !policy.wait_on_resource_signals {
        return if batch.elapsed >= policy.pause_time {
            Step::Settle(Tally::default())
        } else {
            Step::Wait(format!(
                "PauseTime {:?} after the batch launched ({:?} so far)",
                policy.pause_time, batch.elapsed
            ))
        };
    }
    let signalled = |id: &&String| batch.successes.contains(*id) || batch.failures.contains(*id);
    let missing = batch.launched.iter().filter(|id| !signalled(id)).count();
    let successes = batch
        .launched
        .iter()
        .filter(|id| batch.successes.contains(*id))
        .count();
    if missing == 0 {
        return Step::Settle(Tally {
            successes,
            failures: batch.failures.len(),
        });
    }
    if batch.elapsed < policy.pause_time {
        return Step::Wait(format!(
            "{successes} of {} SUCCESS signals for the current batch (PauseTime {:?}, {:?} so far)",
            batch.launched.len(),
            policy.pause_time,
            batch.elapsed
        ));
    }
    let timed_out = format!(
        "Failed to receive {missing} resource signal(s) for the current batch. Each resource signal timeout is counted as a FAILURE."
    );
    if failed + missing > tolerated {
        let successes = group.settled.successes + successes;
        return Step::RollBack(format!(
            "{timed_out} {}",
            unsatisfied(policy, successes, group.desired)
        ));
    }
    Step::Settle(Tally {
        successes,
        failures: batch.failures.len() + missing,
    })
}

/// How many of `n` instances may fail: `MinSuccessfulInstancesPercent` of them, rounded up, must succeed.
fn tolerated(policy: &RollingUpdate, n: usize) -> usize {
    let required = (n * policy.min_successful_percent as usize).div_ceil(100);
    n - required.min(n)
}

fn unsatisfied(policy: &RollingUpdate, successes: usize, n: usize) -> String {
    format!(
        "Received {successes} SUCCESS signal(s) out of {n}. Unable to satisfy {}% MinSuccessfulInstancesPercent requirement",
        policy.min_successful_percent
    )
}

/// The groups whose update may start now: changed by the update, not started, and every resource they depend
/// on that the update changes finished updating. Pure.
pub fn updatable<'a>(
    resources: &'a [Declared],
    changed: &BTreeSet<String>,
    complete: &BTreeSet<String>,
    started: &BTreeSet<String>,
) -> Vec<&'a str> {
    resources
        .iter()
        .filter(|r| changed.contains(&r.logical_id) && !started.contains(&r.logical_id))
        .filter(|r| {
            r.depends_on
                .iter()
                .all(|d| !changed.contains(d) || complete.contains(d))
        })
        .map(|r| r.logical_id.as_str())
        .collect()
}

/// The order in which a failed update rolls its groups back to the previous version: the one that failed
/// first, then those already updated, in reverse dependency order. Pure.
pub fn rollback_order<'a>(
    resources: &'a [Declared],
    failed: &str,
    complete: &BTreeSet<String>,
) -> Vec<&'a str> {
    let first = resources
        .iter()
        .filter(|r| r.logical_id == failed)
        .map(|r| r.logical_id.as_str());
    let updated = resources
        .iter()
        .rev()
        .filter(|r| complete.contains(&r.logical_id) && r.logical_id != failed)
        .map(|r| r.logical_id.as_str());
    first.chain(updated).collect()
}
