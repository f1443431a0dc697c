//! A stand-in for Auto Scaling's instance lifecycle (NOT Auto Scaling): groups, lifecycle hooks, members'
//! lifecycle states and health, with the API calls berth makes and AWS's refusals of them.
//!
//! moto answers CompleteLifecycleAction and RecordLifecycleActionHeartbeat with an HTML 500, so this model holds
//! the contract. The rules, and where they come from:
//!
//! * A launch hook puts a new member in `Pending:Wait`; a terminate hook puts a leaving one in
//!   `Terminating:Wait`. It stays there until CompleteLifecycleAction or until the hook's heartbeat timeout
//!   passes, when the hook's `DefaultResult` applies; RecordLifecycleActionHeartbeat restarts the timeout, never
//!   past the global timeout of min(48 h, 100 x HeartbeatTimeout). CONTINUE on a launch puts the instance in
//!   service; ABANDON on a launch terminates it; on a termination both let it terminate. Sources: "How lifecycle
//!   hooks work" (<https://docs.aws.amazon.com/autoscaling/ec2/userguide/lifecycle-hooks-overview.html>),
//!   "Complete a lifecycle action" (completing-lifecycle-hooks.html), the PutLifecycleHook and LifecycleHook API
//!   references (HeartbeatTimeout, DefaultResult, GlobalTimeout).
//! * IMDS `autoscaling/target-lifecycle-state` names the steady state an instance is heading for: `InService`
//!   while it launches, `Terminated` once it is leaving ("Retrieve the target lifecycle state through instance
//!   metadata", retrieving-target-lifecycle-state-through-imds.html). [`AutoScaling::target_lifecycle_state`].
//! * SetInstanceHealth `Unhealthy` on an instance in service makes the group terminate it (through the terminate
//!   hook) and launch a replacement (API reference; "Health checks for instances in an Auto Scaling group").
//!   With `ShouldRespectGracePeriod` (the default) an instance younger than the group's grace period is
//!   refused: "The age of the instance (N seconds) is less than the configured grace period of G seconds"
//!   (the text as AWS returns it, aws/aws-cli#171).
//! * Refusals, all `ValidationError`: no pending action for the instance (or token) on that hook, "No active
//!   Lifecycle Action found with instance ID i-..." / "... with token <token>" (as AWS returns it:
//!   convox/rack#2432, department-of-veterans-affairs/va.gov-cms#1719,
//!   spacelift-io/terraform-aws-spacelift-workerpool-on-ec2#197); an instance not in any group, "Instance Id
//!   not found - No managed instance found for instance ID: i-..." (AWS's text for instances it does not
//!   manage); an unknown group, "AutoScalingGroup name not found - <name>" (the shape AWS uses,
//!   aws/aws-sdk-go#1151); missing parameters and values outside `CONTINUE | ABANDON` or `Healthy |
//!   Unhealthy`, AWS's constraint messages. Naming neither an instance nor a token is refused with "Either
//!   InstanceId or LifecycleActionToken must be specified" (our wording: AWS documents both as optional and
//!   one as needed, without the text).
//!
//! The model also keeps the group's activity history (as DescribeScalingActivities would show it) and queues
//! [`GroupEvent`]s for the group's control plane ([`group`], which launches and terminates the simulated
//! instances). Time is an argument of every call. Instance refreshes are modelled in `refresh.rs`, Spot
//! interruptions (the two minutes' notice, the terminate hook that cannot outlast it) in `spot.rs`, the calls an
//! operator makes with the `aws` CLI (DescribeInstanceRefreshes, TerminateInstanceInAutoScalingGroup) and their
//! XML answers in `api.rs`.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::query::{ApiError, Params};

mod api;
pub mod group;
mod refresh;
mod spot;
#[cfg(test)]
mod tests;

pub use refresh::{InstanceRefresh, RefreshStatus, Replacement};
pub use spot::spot_notice;

/// Auto Scaling's XML namespace (API version 2011-01-01).
pub const NAMESPACE: &str = "http://autoscaling.amazonaws.com/doc/2011-01-01/";
/// The API version the SDK sends.
pub const VERSION: &str = "2011-01-01";

/// The upper bound of a lifecycle action's total wait (LifecycleHook `GlobalTimeout`).
const GLOBAL_TIMEOUT_MAX: Duration = Duration::from_secs(48 * 3600);

/// Which transition a hook pauses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// `autoscaling:EC2_INSTANCE_LAUNCHING`
    Launching,
    /// `autoscaling:EC2_INSTANCE_TERMINATING`
    Terminating,
}

/// A lifecycle action's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookResult {
    /// `CONTINUE`
    Continue,
    /// `ABANDON`
    Abandon,
}

impl HookResult {
    fn as_str(self) -> &'static str {
        match self {
            HookResult::Continue => "CONTINUE",
            HookResult::Abandon => "ABANDON",
        }
    }
}

/// A lifecycle hook (PutLifecycleHook).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// `LifecycleHookName`.
    pub name: String,
    /// `LifecycleTransition`.
    pub transition: Transition,
    /// `HeartbeatTimeout` (AWS allows 30 s to 2 h; the simulated fleet compresses it).
    pub heartbeat_timeout: Duration,
    /// `DefaultResult` (AWS's default is ABANDON).
    pub default_result: HookResult,
}

/// A group's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    /// `AutoScalingGroupName`.
    pub name: String,
    /// Its lifecycle hooks (one per transition at most).
    pub hooks: Vec<Hook>,
    /// `HealthCheckGracePeriod`.
    pub health_check_grace_period: Duration,
}

/// An instance's lifecycle state (the API's `LifecycleState` values this model uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleState {
    /// `Pending:Wait`
    PendingWait,
    /// `InService`
    InService,
    /// `Terminating:Wait`
    TerminatingWait,
    /// `Terminating:Proceed`
    TerminatingProceed,
}

impl LifecycleState {
    /// As the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleState::PendingWait => "Pending:Wait",
            LifecycleState::InService => "InService",
            LifecycleState::TerminatingWait => "Terminating:Wait",
            LifecycleState::TerminatingProceed => "Terminating:Proceed",
        }
    }
}

/// What the group's control plane must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupEvent {
    /// The instance is in service now.
    InService(String),
    /// The instance is leaving and may still act (its terminate hook waits): its IMDS says `Terminated`.
    Terminating(String),
    /// EC2 interrupts the Spot Instance: its IMDS `spot/instance-action` says `notice` from now on.
    SpotInterruption {
        /// The instance.
        instance_id: String,
        /// The notice, as IMDS serves it.
        notice: String,
    },
    /// EC2 reclaimed the interrupted Spot Instance: it is gone now (no shutdown grace).
    Reclaimed(String),
    /// Terminate the instance now and launch a replacement as capacity requires.
    Terminate {
        /// The instance.
        instance_id: String,
        /// Why, as the group's activity says it.
        cause: String,
    },
}

/// One member as the API would describe it (DescribeAutoScalingInstances).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// `InstanceId`.
    pub instance_id: String,
    /// `AutoScalingGroupName`.
    pub group: String,
    /// `AvailabilityZone`.
    pub availability_zone: String,
    /// `LifecycleState`.
    pub state: LifecycleState,
    /// `HealthStatus` is `Unhealthy`.
    pub unhealthy: bool,
}

#[derive(Debug, Clone)]
struct Action {
    hook: String,
    token: String,
    transition: Transition,
    timeout_at: Instant,
    global_at: Instant,
    heartbeat_timeout: Duration,
    default_result: HookResult,
}

#[derive(Debug, Clone)]
struct Slot {
    member: Member,
    launched: Instant,
    in_service_at: Option<Instant>,
    action: Option<Action>,
    /// When EC2 reclaims it (a Spot interruption's notice runs out).
    reclaim_at: Option<Instant>,
}

/// One activity of a group's history (DescribeScalingActivities' `Description`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    /// The instance concerned.
    pub instance_id: String,
    /// What happened.
    pub description: String,
}

/// The Auto Scaling groups of one simulated account and region.
#[derive(Debug, Default)]
pub struct AutoScaling {
    groups: BTreeMap<String, GroupSpec>,
    members: BTreeMap<String, Slot>,
    events: VecDeque<GroupEvent>,
    activities: Vec<Activity>,
    refreshes: Vec<InstanceRefresh>,
    tokens: u64,
}

impl AutoScaling {
    /// Creates (or replaces) a group.
    pub fn create_group(&mut self, spec: GroupSpec) {
        self.groups.insert(spec.name.clone(), spec);
    }

    /// A new instance joins `group` in `zone`: `Pending:Wait` with a launch hook, else `InService`.
    pub fn launch(&mut self, group: &str, instance_id: &str, zone: &str, now: Instant) {
        let member = Member {
            instance_id: instance_id.to_owned(),
            group: group.to_owned(),
            availability_zone: zone.to_owned(),
            state: LifecycleState::InService,
            unhealthy: false,
        };
        let action = self.hook_action(group, Transition::Launching, now);
        let state = if action.is_some() {
            LifecycleState::PendingWait
        } else {
            LifecycleState::InService
        };
        self.members.insert(
            instance_id.to_owned(),
            Slot {
                member: Member { state, ..member },
                launched: now,
                in_service_at: (state == LifecycleState::InService).then_some(now),
                action,
                reclaim_at: None,
            },
        );
        self.record(
            instance_id,
            format!(
                "Launching a new EC2 instance: {instance_id} ({})",
                state.as_str()
            ),
        );
        if state == LifecycleState::InService {
            self.events
                .push_back(GroupEvent::InService(instance_id.to_owned()));
        }
    }

    /// The group starts terminating `instance_id` for `cause`: `Terminating:Wait` with a terminate hook,
    /// else at once.
    pub fn terminate(&mut self, instance_id: &str, cause: &str, now: Instant) {
        let Some(group) = self
            .members
            .get(instance_id)
            .map(|slot| slot.member.group.clone())
        else {
            return;
        };
        let action = self.hook_action(&group, Transition::Terminating, now);
        let Some(slot) = self.members.get_mut(instance_id) else {
            return;
        };
        if matches!(
            slot.member.state,
            LifecycleState::TerminatingWait | LifecycleState::TerminatingProceed
        ) {
            return;
        }
        self.record(
            instance_id,
            format!("Terminating EC2 instance: {instance_id} ({cause})"),
        );
        match action {
            Some(action) => {
                let slot = self.members.get_mut(instance_id).expect("member present");
                slot.member.state = LifecycleState::TerminatingWait;
                slot.action = Some(action);
                self.events
                    .push_back(GroupEvent::Terminating(instance_id.to_owned()));
            }
            None => self.proceed_to_terminate(instance_id, cause),
        }
    }

    /// The instance is gone (terminated outside the group's control): it leaves the group.
    pub fn remove(&mut self, instance_id: &str, cause: &str) {
        if self.members.remove(instance_id).is_some() {
            self.record(
                instance_id,
                format!("Instance {instance_id} left the group: {cause}"),
            );
        }
    }

    /// Applies the lifecycle timeouts that have passed (the hook's `DefaultResult`).
    pub fn advance(&mut self, now: Instant) {
        let due: Vec<(String, HookResult, bool)> = self
            .members
            .iter()
            .filter_map(|(id, slot)| {
                let action = slot.action.as_ref()?;
                let global = now >= action.global_at;
                (now >= action.timeout_at || global)
                    .then(|| (id.clone(), action.default_result, global))
            })
            .collect();
        for (instance_id, result, global) in due {
            let which = if global {
                "global timeout"
            } else {
                "heartbeat timeout"
            };
            self.record(
                &instance_id,
                format!(
                    "Lifecycle action for {instance_id} timed out ({which}): DefaultResult {}",
                    result.as_str()
                ),
            );
            self.finish_action(&instance_id, result, now);
        }
        self.reclaim_interrupted(now);
        self.progress_refreshes(now);
    }

    /// Events for the group's control plane, oldest first.
    pub fn take_events(&mut self) -> Vec<GroupEvent> {
        self.events.drain(..).collect()
    }

    /// The earliest lifecycle timeout still pending, or the end of a refreshed instance's warmup.
    pub fn next_deadline(&self) -> Option<Instant> {
        let warmups = self
            .refreshes
            .iter()
            .filter(|r| r.status.active())
            .flat_map(|r| {
                r.replacements
                    .iter()
                    .filter(|step| step.ready_at.is_none())
                    .filter_map(move |step| step.in_service_at.map(|at| at + r.instance_warmup))
            });
        self.members
            .values()
            .filter_map(|slot| slot.action.as_ref())
            .map(|action| action.timeout_at.min(action.global_at))
            .chain(warmups)
            .chain(self.next_reclaim())
            .min()
    }

    /// One member.
    pub fn member(&self, instance_id: &str) -> Option<Member> {
        self.members
            .get(instance_id)
            .map(|slot| slot.member.clone())
    }

    /// Every member of `group`.
    pub fn members(&self, group: &str) -> Vec<Member> {
        self.members
            .values()
            .filter(|slot| slot.member.group == group)
            .map(|slot| slot.member.clone())
            .collect()
    }

    /// The group's history, oldest first.
    pub fn activities(&self) -> &[Activity] {
        &self.activities
    }

    /// What IMDS `autoscaling/target-lifecycle-state` says for the instance.
    pub fn target_lifecycle_state(&self, instance_id: &str) -> Option<&'static str> {
        self.members
            .get(instance_id)
            .map(|slot| match slot.member.state {
                LifecycleState::PendingWait | LifecycleState::InService => "InService",
                LifecycleState::TerminatingWait | LifecycleState::TerminatingProceed => {
                    "Terminated"
                }
            })
    }

    /// CompleteLifecycleAction.
    pub fn complete_lifecycle_action(
        &mut self,
        params: &Params,
        now: Instant,
    ) -> Result<(), ApiError> {
        self.advance(now);
        let result = match params.one_of("LifecycleActionResult", &["CONTINUE", "ABANDON"])? {
            "CONTINUE" => HookResult::Continue,
            _ => HookResult::Abandon,
        };
        let instance_id = self.pending_action(params)?;
        self.record(
            &instance_id,
            format!(
                "Lifecycle action for {instance_id} completed: {}",
                result.as_str()
            ),
        );
        self.finish_action(&instance_id, result, now);
        Ok(())
    }

    /// RecordLifecycleActionHeartbeat: the timeout starts over, never past the global timeout.
    pub fn record_heartbeat(&mut self, params: &Params, now: Instant) -> Result<(), ApiError> {
        self.advance(now);
        let instance_id = self.pending_action(params)?;
        if let Some(action) = self
            .members
            .get_mut(&instance_id)
            .and_then(|slot| slot.action.as_mut())
        {
            action.timeout_at = (now + action.heartbeat_timeout).min(action.global_at);
        }
        Ok(())
    }

    /// SetInstanceHealth.
    pub fn set_instance_health(&mut self, params: &Params, now: Instant) -> Result<(), ApiError> {
        self.advance(now);
        let instance_id = params.required("InstanceId")?.to_owned();
        let health = params.one_of("HealthStatus", &["Healthy", "Unhealthy"])?;
        let respect = params.optional("ShouldRespectGracePeriod") != Some("false");
        let slot = self
            .members
            .get(&instance_id)
            .ok_or_else(|| not_managed(&instance_id))?;
        let grace = self
            .groups
            .get(&slot.member.group)
            .map_or(Duration::ZERO, |group| group.health_check_grace_period);
        let age = now.saturating_duration_since(slot.launched);
        if respect && age < grace {
            return Err(ApiError::validation(format!(
                "The age of the instance ({} seconds) is less than the configured grace period of {} seconds",
                age.as_secs(),
                grace.as_secs()
            )));
        }
        let unhealthy = health == "Unhealthy";
        let in_service = slot.member.state == LifecycleState::InService;
        if let Some(slot) = self.members.get_mut(&instance_id) {
            slot.member.unhealthy = unhealthy;
        }
        if unhealthy && in_service {
            self.terminate(
                &instance_id,
                "an instance was taken out of service in response to a user health-check",
                now,
            );
        }
        Ok(())
    }

    /// The instance whose action the parameters name (group, hook, and instance or token), or AWS's refusal.
    fn pending_action(&self, params: &Params) -> Result<String, ApiError> {
        let group = params.required("AutoScalingGroupName")?;
        let hook = params.required("LifecycleHookName")?;
        if !self.groups.contains_key(group) {
            return Err(ApiError::validation(format!(
                "AutoScalingGroup name not found - {group}"
            )));
        }
        let matches = |slot: &&Slot, pick: &dyn Fn(&Action) -> bool| {
            slot.member.group == group
                && slot
                    .action
                    .as_ref()
                    .is_some_and(|action| action.hook == hook && pick(action))
        };
        if let Some(token) = params.optional("LifecycleActionToken") {
            return self
                .members
                .values()
                .find(|slot| matches(slot, &|action| action.token == token))
                .map(|slot| slot.member.instance_id.clone())
                .ok_or_else(|| {
                    ApiError::validation(format!(
                        "No active Lifecycle Action found with token {token}"
                    ))
                });
        }
        let instance_id = params.optional("InstanceId").ok_or_else(|| {
            ApiError::validation("Either InstanceId or LifecycleActionToken must be specified")
        })?;
        self.members
            .get(instance_id)
            .filter(|slot| matches(slot, &|_| true))
            .map(|slot| slot.member.instance_id.clone())
            .ok_or_else(|| {
                ApiError::validation(format!(
                    "No active Lifecycle Action found with instance ID {instance_id}"
                ))
            })
    }

    fn hook_action(&mut self, group: &str, transition: Transition, now: Instant) -> Option<Action> {
        let hook = self
            .groups
            .get(group)?
            .hooks
            .iter()
            .find(|hook| hook.transition == transition)?
            .clone();
        self.tokens += 1;
        Some(Action {
            token: format!("00000000-0000-4000-a000-{:012x}", self.tokens),
            transition,
            timeout_at: now + hook.heartbeat_timeout,
            global_at: now + (hook.heartbeat_timeout * 100).min(GLOBAL_TIMEOUT_MAX),
            heartbeat_timeout: hook.heartbeat_timeout,
            default_result: hook.default_result,
            hook: hook.name,
        })
    }

    fn finish_action(&mut self, instance_id: &str, result: HookResult, now: Instant) {
        let Some(slot) = self.members.get_mut(instance_id) else {
            return;
        };
        let Some(action) = slot.action.take() else {
            return;
        };
        match (action.transition, result) {
            (Transition::Launching, HookResult::Continue) => {
                slot.member.state = LifecycleState::InService;
                slot.in_service_at = Some(now);
                self.events
                    .push_back(GroupEvent::InService(instance_id.to_owned()));
            }
            (Transition::Launching, HookResult::Abandon) => {
                self.record(
                    instance_id,
                    format!("Terminating EC2 instance: {instance_id} (launch abandoned)"),
                );
                self.proceed_to_terminate(instance_id, "its launch lifecycle action was abandoned");
            }
            (Transition::Terminating, _) => {
                self.proceed_to_terminate(instance_id, "terminated by the group");
            }
        }
    }

    fn proceed_to_terminate(&mut self, instance_id: &str, cause: &str) {
        if let Some(slot) = self.members.get_mut(instance_id) {
            slot.member.state = LifecycleState::TerminatingProceed;
            slot.action = None;
            self.events.push_back(GroupEvent::Terminate {
                instance_id: instance_id.to_owned(),
                cause: cause.to_owned(),
            });
        }
    }

    fn record(&mut self, instance_id: &str, description: String) {
        self.activities.push(Activity {
            instance_id: instance_id.to_owned(),
            description,
        });
    }
}

/// Pending or in service: counts toward the group's capacity.
fn active(member: &Member) -> bool {
    matches!(
        member.state,
        LifecycleState::PendingWait | LifecycleState::InService
    )
}

pub(super) fn not_managed(instance_id: &str) -> ApiError {
    ApiError::validation(format!(
        "Instance Id not found - No managed instance found for instance ID: {instance_id}"
    ))
}
