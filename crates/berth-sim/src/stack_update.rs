//! A stack update as the simulated CloudFormation plays it on a stack fleet: a new launch template version
//! rolled through the template's groups under their `UpdatePolicy` `AutoScalingRollingUpdate`, rolled back when a
//! group's update fails. The decisions are the test kit's, pure and tested against AWS's documentation
//! ([`berth_testkit::aws::template::update`]); this module applies them to the region: it terminates the
//! instances a step names (through their terminate hook, as Auto Scaling does), lets the group's control loop
//! launch their replacements from the version the group now launches, reads the batch's signals from the stack
//! and records each status in the stack's events.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use berth_testkit::aws::autoscaling::group::{stack_name, GroupPlan};
use berth_testkit::aws::autoscaling::LifecycleState;
use berth_testkit::aws::cloudformation::Status;
use berth_testkit::aws::template::update::{self, Batch, GroupUpdate, RollingUpdate, Step, Tally};

use crate::fleet::{Fleet, FleetError};

/// How a stack update ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Updated {
    /// `UPDATE_COMPLETE`: every group launches the new version.
    Complete {
        /// The new launch template version.
        version: String,
    },
    /// `UPDATE_ROLLBACK_COMPLETE`: a group's update failed for `reason` and every group it had reached
    /// launches the previous version again.
    RolledBack {
        /// The failed group's logical id.
        group: String,
        /// CloudFormation's reason.
        reason: String,
    },
}

/// Why a stack update could not be played.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The fleet failed (its launch template, its template).
    #[error(transparent)]
    Fleet(#[from] FleetError),
    /// The stack or a group refused a step, or the update outlasted its time.
    #[error("stack update: {0}")]
    Stack(String),
}

/// Updates the stack of `fleet` to a launch template version with `user_data`, rolling each group in turn (the
/// template's `DependsOn` order); `per_group` bounds each group's update (PauseTime bounds each batch).
pub async fn update_user_data(
    fleet: &Fleet,
    user_data: &str,
    per_group: Duration,
) -> Result<Updated, UpdateError> {
    let groups = stack_groups(fleet)?;
    let previous = fleet
        .launch_version(&groups[0].0.name)
        .await?
        .ok_or_else(|| UpdateError::Stack("a fleet without a stack".into()))?
        .number;
    let version = fleet.create_launch_version(user_data).await?;
    let stack = stack_name(&fleet.options().cluster);
    fleet
        .aws()
        .with(|plane| plane.stacks.begin_rolling_update(&stack))
        .map_err(UpdateError::Stack)?;
    let mut updated: Vec<&(GroupPlan, RollingUpdate)> = Vec::new();
    for group in &groups {
        updated.push(group);
        if let Err(reason) = roll_group(fleet, group, &version, per_group).await? {
            let logical_id = logical_id(&group.0).to_owned();
            roll(fleet, None, Status::UpdateRollbackInProgress)?;
            for back in updated.iter().rev() {
                roll_group(fleet, back, &previous, per_group)
                    .await?
                    .map_err(|why| UpdateError::Stack(format!("rolling back: {why}")))?;
            }
            roll(fleet, None, Status::UpdateRollbackComplete)?;
            return Ok(Updated::RolledBack {
                group: logical_id,
                reason,
            });
        }
    }
    roll(fleet, None, Status::UpdateComplete)?;
    Ok(Updated::Complete { version })
}

/// `berth-sim stack update`: creates a stack fleet from `options`, waits for every broker Healthy and the
/// stack CREATE_COMPLETE, then updates it to a launch template version whose user data sets each `KEY=VALUE`
/// of `overrides` in `/etc/berth/environment`; prints the update's stack events once it has ended.
pub fn run_update(options: crate::FleetOptions, overrides: &[String]) -> anyhow::Result<Updated> {
    let overrides = overrides
        .iter()
        .map(|o| {
            o.split_once('=')
                .filter(|(key, _)| key.starts_with("BERTH_"))
                .map(|(key, value)| (key.to_owned(), value.to_owned()))
                .ok_or_else(|| anyhow::anyhow!("--set {o}: not BERTH_<SECTION>__<KEY>=VALUE"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    crate::asg::with_group(options, |fleet| async move {
        let stack = stack_name(&fleet.options().cluster);
        crate::asg::wait_members(
            &fleet,
            "the stack CREATE_COMPLETE",
            Duration::from_secs(300),
            |_| {
                fleet.aws().read(|plane| plane.stacks.status(&stack))
                    == Some(Status::CreateComplete)
            },
        )
        .await?;
        for host in fleet.hosts() {
            fleet
                .wait_healthy(host.index, Duration::from_secs(180))
                .await?;
        }
        println!("[berth-sim] stack {stack} CREATE_COMPLETE, every broker Healthy");
        let group = &fleet.asg_groups().plans[0].name;
        let current = fleet
            .launch_version(group)
            .await?
            .and_then(|v| v.user_data)
            .ok_or_else(|| anyhow::anyhow!("the launch template has no user data"))?;
        let user_data = with_overrides(&current, &overrides)?;
        let shown = fleet.aws().read(|plane| plane.stacks.events(&stack)).len();
        let updated = update_user_data(&fleet, &user_data, Duration::from_secs(600)).await?;
        for (id, status) in fleet
            .aws()
            .read(|plane| plane.stacks.events(&stack))
            .into_iter()
            .skip(shown)
        {
            println!("[berth-sim] {id} {}", status.as_str());
        }
        Ok(updated)
    })
}

/// The template's user data with each `(key, value)` set in the environment file it writes: an existing line
/// of the key replaced, a new one added before the file's end (`OVERRIDES`, the heredoc's terminator). Pure.
pub fn with_overrides(user_data: &str, overrides: &[(String, String)]) -> anyhow::Result<String> {
    const END: &str = "OVERRIDES";
    let mut lines: Vec<String> = user_data.lines().map(str::to_owned).collect();
    for (key, value) in overrides {
        let line = format!("{key}={value}");
        let prefix = format!("{key}=");
        if let Some(existing) = lines.iter_mut().find(|l| l.starts_with(&prefix)) {
            *existing = line;
            continue;
        }
        let end = lines.iter().rposition(|l| l == END).ok_or_else(|| {
            anyhow::anyhow!("the user data writes no {END} heredoc to add {key} to")
        })?;
        lines.insert(end, line);
    }
    Ok(lines.join("\n") + "\n")
}

/// The stack's groups with their rolling update policies, in creation order (each must have one).
fn stack_groups(fleet: &Fleet) -> Result<Vec<(GroupPlan, RollingUpdate)>, UpdateError> {
    let template = fleet
        .options()
        .stack
        .as_deref()
        .ok_or_else(|| UpdateError::Stack("a fleet without a stack".into()))?;
    let stack = crate::stack::instantiated(
        template,
        &fleet.options().cluster,
        fleet.options().zones,
        None,
    )
    .map_err(|e| UpdateError::Stack(e.to_string()))?;
    let policies = update::policies(&stack, &crate::stack::ByLogicalId)
        .map_err(|e| UpdateError::Stack(e.to_string()))?;
    fleet
        .asg_groups()
        .plans
        .iter()
        .map(|plan| {
            let id = logical_id(plan);
            let policy = policies
                .iter()
                .find(|(logical, _)| logical == id)
                .and_then(|(_, policy)| *policy)
                .ok_or_else(|| UpdateError::Stack(format!("{id}: no AutoScalingRollingUpdate")))?;
            // A group with room above its capacity would launch a batch before terminating: the region's groups
            // launch only up to their desired capacity, so it plays full groups (the template's groups of one).
            if plan.declared.as_ref().is_some_and(|d| d.max_size != plan.desired) {
                return Err(UpdateError::Stack(format!(
                    "{id}: MaxSize above DesiredCapacity (the region rolls full groups only: terminate first)"
                )));
            }
            Ok((plan.clone(), policy))
        })
        .collect()
}

fn logical_id(plan: &GroupPlan) -> &str {
    plan.declared
        .as_ref()
        .map_or(plan.name.as_str(), |d| d.logical_id.as_str())
}

/// The stack (None) or one of its resources takes `status`.
fn roll(fleet: &Fleet, logical_id: Option<&str>, status: Status) -> Result<(), UpdateError> {
    let stack = stack_name(&fleet.options().cluster);
    fleet
        .aws()
        .with(|plane| {
            plane
                .stacks
                .roll(&stack, logical_id, status, Instant::now())
        })
        .map_err(UpdateError::Stack)
}

/// One group's rolling update to launch template `version`: Ok(Err(reason)) when it failed (the group is
/// `UPDATE_FAILED`), Ok(Ok(())) when complete.
async fn roll_group(
    fleet: &Fleet,
    (plan, policy): &(GroupPlan, RollingUpdate),
    version: &str,
    per_group: Duration,
) -> Result<Result<(), String>, UpdateError> {
    let id = logical_id(plan);
    fleet.set_launch_version(&plan.name, version);
    roll(fleet, Some(id), Status::UpdateInProgress)?;
    let deadline = Instant::now() + per_group;
    // Instances there before the group's update began (the old version, or one leaving) are never its batch.
    let mut rolling = Rolling {
        batched: members(fleet, &plan.name, version)
            .into_iter()
            .map(|m| m.instance_id)
            .collect(),
        ..Rolling::default()
    };
    let mut changed = fleet.aws().changed();
    loop {
        let members = members(fleet, &plan.name, version);
        rolling.adopt(&members);
        let step = update::next_step(
            policy,
            &GroupUpdate {
                desired: plan.desired,
                max_size: plan.declared.as_ref().map_or(plan.desired, |d| d.max_size),
                members: &members,
                batch: rolling.batch(fleet, id).as_ref(),
                settled: rolling.settled,
            },
        );
        match &step {
            Step::Terminate(ids) => terminate(fleet, ids),
            // The group's control loop launches what the terminated instances left missing, from the version
            // the group now launches; they become the batch once they are there.
            Step::Launch(_) | Step::Wait(_) => {}
            Step::Settle(tally) => rolling.settle(*tally),
            Step::Complete => {
                roll(fleet, Some(id), Status::UpdateComplete)?;
                return Ok(Ok(()));
            }
            Step::RollBack(reason) => {
                roll(fleet, Some(id), Status::UpdateFailed)?;
                return Ok(Err(reason.clone()));
            }
        }
        if Instant::now() > deadline {
            return Err(UpdateError::Stack(format!(
                "{id}: not updated to version {version} within {per_group:?}: {step:?}"
            )));
        }
        changed.borrow_and_update();
        let _ = tokio::time::timeout(Duration::from_millis(500), changed.changed()).await;
    }
}

/// The group's members as the update sees them: updated when they launched `version`.
fn members(fleet: &Fleet, group: &str, version: &str) -> Vec<update::Member> {
    fleet
        .aws()
        .read(|plane| plane.autoscaling.members(group))
        .into_iter()
        .map(|member| update::Member {
            updated: fleet.instance_version(&member.instance_id).as_deref() == Some(version),
            instance_id: member.instance_id,
            state: member.state,
        })
        .collect()
}

/// Auto Scaling terminates `ids` for the update (each through its terminate hook).
fn terminate(fleet: &Fleet, ids: &[String]) {
    fleet.aws().with(|plane| {
        for id in ids {
            plane.autoscaling.terminate(
                id,
                "CloudFormation rolling update: replacing an instance of the previous launch template version",
                Instant::now(),
            );
        }
    });
}

/// A group's update in flight: its current batch and the settled batches' outcome.
#[derive(Debug, Default)]
struct Rolling {
    /// The current batch's instances and when they were seen launched.
    launched: Option<(Vec<String>, Instant)>,
    /// Instances already counted in a batch, or there before the update began.
    batched: BTreeSet<String>,
    settled: Tally,
}

impl Rolling {
    /// Instances of the new version the group launched since the last batch settled are the next batch.
    fn adopt(&mut self, members: &[update::Member]) {
        if self.launched.is_some() {
            return;
        }
        let new: Vec<String> = members
            .iter()
            .filter(|m| m.updated && !self.batched.contains(&m.instance_id))
            .filter(|m| {
                matches!(
                    m.state,
                    LifecycleState::PendingWait | LifecycleState::InService
                )
            })
            .map(|m| m.instance_id.clone())
            .collect();
        if !new.is_empty() {
            self.batched.extend(new.iter().cloned());
            self.launched = Some((new, Instant::now()));
        }
    }

    fn settle(&mut self, tally: Tally) {
        self.settled.successes += tally.successes;
        self.settled.failures += tally.failures;
        self.launched = None;
    }

    /// The current batch with the signals its instances sent group `logical_id`.
    fn batch(&self, fleet: &Fleet, logical_id: &str) -> Option<Batch> {
        let (launched, at) = self.launched.as_ref()?;
        let stack = stack_name(&fleet.options().cluster);
        let signals = fleet
            .aws()
            .read(|plane| plane.stacks.signals(&stack, logical_id));
        let sent = |status: &str| {
            signals
                .iter()
                .filter(|(id, s)| s == status && launched.contains(id))
                .map(|(id, _)| id.clone())
                .collect()
        };
        Some(Batch {
            launched: launched.clone(),
            successes: sent("SUCCESS"),
            failures: sent("FAILURE"),
            elapsed: at.elapsed(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_a_key_of_the_user_data_or_are_added_before_its_end() {
        let script = "#!/bin/sh\ncat > /etc/berth/environment <<'OVERRIDES'\nBERTH_A__B=1\nOVERRIDES\nsystemctl enable --now berth.service\n";
        let set = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        let changed =
            with_overrides(script, &[set("BERTH_A__B", "2"), set("BERTH_C__D", "x")]).unwrap();
        assert_eq!(
            changed,
            "#!/bin/sh\ncat > /etc/berth/environment <<'OVERRIDES'\nBERTH_A__B=2\nBERTH_C__D=x\nOVERRIDES\nsystemctl enable --now berth.service\n"
        );
        assert!(with_overrides("#!/bin/sh\ntrue\n", &[set("BERTH_C__D", "x")]).is_err());
    }
}
