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
//! [`GroupEvent`]s for whoever plays the group's control plane (the simulated fleet launches and kills hosts).
//! Time is an argument of every call.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::query::{ApiError, Params};

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
}

/// An instance refresh's status (DescribeInstanceRefreshes' `Status`; the values this model reaches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshStatus {
    /// `InProgress`
    InProgress,
    /// `Successful`
    Successful,
}

/// One replacement an instance refresh made: the old instance terminated, the new one launched in its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replacement {
    /// The instance replaced.
    pub old: String,
    /// When the refresh started terminating it (through the terminate hook).
    pub terminating_at: Instant,
    /// The instance launched in its place, once there is one.
    pub new: Option<String>,
    /// When the new instance went `InService` (its launch hook completed).
    pub in_service_at: Option<Instant>,
    /// When its warmup ended, and the refresh could move on.
    pub ready_at: Option<Instant>,
}

impl Replacement {
    /// From the old instance's termination to the new one's end of warmup, once it is over.
    pub fn step(&self) -> Option<Duration> {
        self.ready_at
            .map(|ready| ready.saturating_duration_since(self.terminating_at))
    }
}

/// An instance refresh (StartInstanceRefresh, `Strategy=Rolling`), as DescribeInstanceRefreshes shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRefresh {
    /// `InstanceRefreshId`.
    pub id: String,
    /// The group refreshed.
    pub group: String,
    /// `Status`.
    pub status: RefreshStatus,
    /// `Preferences.MinHealthyPercentage`.
    pub min_healthy_percentage: u32,
    /// `Preferences.MaxHealthyPercentage`.
    pub max_healthy_percentage: u32,
    /// `Preferences.InstanceWarmup`.
    pub instance_warmup: Duration,
    /// The group's capacity when the refresh started (every member pending or in service).
    pub capacity: usize,
    /// Instances still to replace, in the order they will be.
    pub remaining: Vec<String>,
    /// The replacements made so far, in order.
    pub replacements: Vec<Replacement>,
    /// `StartTime`.
    pub started_at: Instant,
    /// `EndTime`.
    pub ended_at: Option<Instant>,
}

impl InstanceRefresh {
    /// The longest replacement so far (termination to the new instance's end of warmup).
    pub fn max_step(&self) -> Duration {
        self.replacements
            .iter()
            .filter_map(Replacement::step)
            .max()
            .unwrap_or_default()
    }
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
            .filter(|r| r.status == RefreshStatus::InProgress)
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

    /// StartInstanceRefresh (`Strategy=Rolling`): replaces every member pending or in service now, in batches
    /// that keep `MinHealthyPercentage` of the group's capacity in service and warmed up, each old instance
    /// terminated through the terminate hook before its replacement is launched; the next batch starts once the
    /// group is back at capacity with every new instance `InService` (launch hook completed) and past its
    /// `InstanceWarmup`. Returns the `InstanceRefreshId`.
    pub fn start_instance_refresh(
        &mut self,
        params: &Params,
        now: Instant,
    ) -> Result<String, ApiError> {
        self.advance(now);
        let group = params.required("AutoScalingGroupName")?.to_owned();
        let Some(spec) = self.groups.get(&group) else {
            return Err(ApiError::validation(format!(
                "AutoScalingGroup name not found - {group}"
            )));
        };
        let preferences = RefreshPreferences::from_params(params, spec.health_check_grace_period)?;
        if self
            .refreshes
            .iter()
            .any(|r| r.group == group && r.status == RefreshStatus::InProgress)
        {
            return Err(ApiError {
                status: 400,
                code: "InstanceRefreshInProgress",
                message:
                    "An Instance Refresh is already in progress and blocks the execution of this \
                          Instance Refresh."
                        .into(),
            });
        }
        let remaining: Vec<String> = self
            .members
            .values()
            .filter(|slot| slot.member.group == group && active(&slot.member))
            .map(|slot| slot.member.instance_id.clone())
            .collect();
        self.tokens += 1;
        let id = format!("{:08x}-0000-4000-b000-{:012x}", self.tokens, self.tokens);
        self.record(
            "",
            format!(
                "Instance refresh {id} of {group} started: MinHealthyPercentage {}, MaxHealthyPercentage {}, \
                 InstanceWarmup {} s, {} instances to replace",
                preferences.min_healthy,
                preferences.max_healthy,
                preferences.warmup.as_secs(),
                remaining.len()
            ),
        );
        self.refreshes.push(InstanceRefresh {
            id: id.clone(),
            group,
            status: RefreshStatus::InProgress,
            min_healthy_percentage: preferences.min_healthy,
            max_healthy_percentage: preferences.max_healthy,
            instance_warmup: preferences.warmup,
            capacity: remaining.len(),
            remaining,
            replacements: Vec::new(),
            started_at: now,
            ended_at: None,
        });
        self.progress_refreshes(now);
        Ok(id)
    }

    /// The instance refreshes of `group`, oldest first (DescribeInstanceRefreshes).
    pub fn instance_refreshes(&self, group: &str) -> Vec<InstanceRefresh> {
        self.refreshes
            .iter()
            .filter(|r| r.group == group)
            .cloned()
            .collect()
    }

    /// Moves every refresh in progress on: notes the new instances and their warmups, and starts the next batch
    /// when the group is back at capacity, in service and warmed up.
    fn progress_refreshes(&mut self, now: Instant) {
        for index in 0..self.refreshes.len() {
            if self.refreshes[index].status != RefreshStatus::InProgress {
                continue;
            }
            self.note_replacements(index, now);
            let refresh = &self.refreshes[index];
            let members: Vec<&Slot> = self
                .members
                .values()
                .filter(|slot| slot.member.group == refresh.group)
                .collect();
            // In service, and past its warmup when the refresh launched it.
            let settled = |slot: &&&Slot| {
                let id = slot.member.instance_id.as_str();
                let launched_by_refresh = refresh
                    .replacements
                    .iter()
                    .any(|r| r.new.as_deref() == Some(id));
                slot.member.state == LifecycleState::InService
                    && (!launched_by_refresh
                        || slot
                            .in_service_at
                            .is_some_and(|at| at + refresh.instance_warmup <= now))
            };
            let ready = members.iter().filter(settled).count();
            if ready < members.len() || members.len() < refresh.capacity {
                continue;
            }
            let remaining: Vec<String> = refresh
                .remaining
                .iter()
                .filter(|id| self.members.contains_key(*id))
                .cloned()
                .collect();
            if remaining.is_empty() {
                let refresh = &mut self.refreshes[index];
                refresh.remaining.clear();
                refresh.status = RefreshStatus::Successful;
                refresh.ended_at = Some(now);
                let line = format!(
                    "Instance refresh {} of {} successful",
                    refresh.id, refresh.group
                );
                self.record("", line);
                continue;
            }
            let keep = (refresh.capacity * refresh.min_healthy_percentage as usize).div_ceil(100);
            // AWS: at 100 % the refresh still replaces one instance at a time.
            let batch = ready.saturating_sub(keep).max(1).min(remaining.len());
            let (now_replaced, later) = remaining.split_at(batch);
            let refresh = &mut self.refreshes[index];
            refresh.remaining = later.to_vec();
            for old in now_replaced {
                refresh.replacements.push(Replacement {
                    old: old.clone(),
                    terminating_at: now,
                    new: None,
                    in_service_at: None,
                    ready_at: None,
                });
            }
            let cause = format!("an instance refresh ({})", refresh.id);
            for old in now_replaced {
                self.terminate(old, &cause, now);
            }
        }
    }

    /// Attributes new members to the refresh's open replacements and records when they went in service and
    /// warmed up.
    fn note_replacements(&mut self, index: usize, now: Instant) {
        let refresh = &self.refreshes[index];
        let known: Vec<&str> = refresh
            .replacements
            .iter()
            .flat_map(|r| [Some(r.old.as_str()), r.new.as_deref()])
            .flatten()
            .chain(refresh.remaining.iter().map(String::as_str))
            .collect();
        let mut newcomers: Vec<(Instant, String)> = self
            .members
            .values()
            .filter(|slot| {
                slot.member.group == refresh.group
                    && !known.contains(&slot.member.instance_id.as_str())
                    && slot.launched >= refresh.started_at
            })
            .map(|slot| (slot.launched, slot.member.instance_id.clone()))
            .collect();
        newcomers.sort();
        let warmup = refresh.instance_warmup;
        let refresh = &mut self.refreshes[index];
        for (_, id) in newcomers {
            if let Some(open) = refresh.replacements.iter_mut().find(|r| r.new.is_none()) {
                open.new = Some(id);
            }
        }
        for replacement in &mut refresh.replacements {
            let Some(slot) = replacement.new.as_ref().and_then(|id| self.members.get(id)) else {
                continue;
            };
            replacement.in_service_at = slot.in_service_at;
            if replacement.ready_at.is_none() {
                replacement.ready_at = slot
                    .in_service_at
                    .map(|at| at + warmup)
                    .filter(|ready| *ready <= now);
            }
        }
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

/// StartInstanceRefresh's preferences this model holds, checked as AWS checks them.
struct RefreshPreferences {
    min_healthy: u32,
    max_healthy: u32,
    warmup: Duration,
}

impl RefreshPreferences {
    /// AWS's ranges: MinHealthyPercentage 0-100 (default 90), MaxHealthyPercentage 100-200 and only with
    /// MinHealthyPercentage, at most 100 above it; InstanceWarmup 0-172800 s (default: the group's health check
    /// grace period). Stricter than AWS (named as this stand-in's): a strategy other than `Rolling`, a
    /// MaxHealthyPercentage above 100 (launching before terminating is not modelled) and any other preference
    /// or a desired configuration are refused.
    fn from_params(params: &Params, grace: Duration) -> Result<Self, ApiError> {
        if let Some(strategy) = params.optional("Strategy") {
            params.one_of("Strategy", &["Rolling", "ReplaceRootVolume"])?;
            if strategy != "Rolling" {
                return Err(stand_in_refuses(&format!("Strategy {strategy}")));
            }
        }
        if let Some(other) = params.0.keys().find(|key| {
            (key.starts_with("Preferences.") || key.starts_with("DesiredConfiguration"))
                && !matches!(
                    key.as_str(),
                    "Preferences.MinHealthyPercentage"
                        | "Preferences.MaxHealthyPercentage"
                        | "Preferences.InstanceWarmup"
                )
        }) {
            return Err(stand_in_refuses(other));
        }
        let number = |name: &str,
                      range: std::ops::RangeInclusive<u32>|
         -> Result<Option<u32>, ApiError> {
            let Some(text) = params.optional(name) else {
                return Ok(None);
            };
            let member = name.rsplit('.').next().unwrap_or(name);
            let member = format!("{}{}", member[..1].to_lowercase(), &member[1..]);
            match text.parse::<u32>() {
                Ok(value) if value < *range.start() => Err(ApiError::validation(format!(
                    "1 validation error detected: Value '{value}' at 'preferences.{member}' failed to satisfy \
                     constraint: Member must have value greater than or equal to {}",
                    range.start()
                ))),
                Ok(value) if value > *range.end() => Err(ApiError::validation(format!(
                    "1 validation error detected: Value '{value}' at 'preferences.{member}' failed to satisfy \
                     constraint: Member must have value less than or equal to {}",
                    range.end()
                ))),
                Ok(value) => Ok(Some(value)),
                Err(_) => Err(ApiError::validation(format!(
                    "Invalid value '{text}' for preferences.{member}: not an integer"
                ))),
            }
        };
        let min = number("Preferences.MinHealthyPercentage", 0..=100)?;
        let max = number("Preferences.MaxHealthyPercentage", 100..=200)?;
        let warmup = number("Preferences.InstanceWarmup", 0..=172_800)?;
        if let Some(max) = max {
            let Some(min) = min else {
                return Err(ApiError::validation(
                    "You must specify MinHealthyPercentage when you specify MaxHealthyPercentage.",
                ));
            };
            if max - min > 100 {
                return Err(ApiError::validation(
                    "The difference between MaxHealthyPercentage and MinHealthyPercentage cannot be greater \
                     than 100.",
                ));
            }
            if max > 100 {
                return Err(stand_in_refuses("MaxHealthyPercentage above 100"));
            }
        }
        Ok(Self {
            min_healthy: min.unwrap_or(90),
            max_healthy: max.unwrap_or(100),
            warmup: warmup.map_or(grace, |s| Duration::from_secs(u64::from(s))),
        })
    }
}

/// A preference AWS accepts and this stand-in does not model: refused rather than ignored.
fn stand_in_refuses(what: &str) -> ApiError {
    ApiError::validation(format!(
        "{what} is not modelled by this Auto Scaling stand-in (it is NOT AWS); the call is refused rather than \
         half-served"
    ))
}

/// Pending or in service: counts toward the group's capacity.
fn active(member: &Member) -> bool {
    matches!(
        member.state,
        LifecycleState::PendingWait | LifecycleState::InService
    )
}

fn not_managed(instance_id: &str) -> ApiError {
    ApiError::validation(format!(
        "Instance Id not found - No managed instance found for instance ID: {instance_id}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GROUP: &str = "kafka-asg";

    fn complete(instance: &str, hook: &str, result: &str) -> Params {
        Params::from_pairs(&[
            ("AutoScalingGroupName", GROUP),
            ("LifecycleHookName", hook),
            ("InstanceId", instance),
            ("LifecycleActionResult", result),
        ])
    }

    fn heartbeat(instance: &str) -> Params {
        Params::from_pairs(&[
            ("AutoScalingGroupName", GROUP),
            ("LifecycleHookName", "launch"),
            ("InstanceId", instance),
        ])
    }

    fn health(instance: &str, status: &str, respect: Option<&str>) -> Params {
        let mut pairs = vec![("InstanceId", instance), ("HealthStatus", status)];
        if let Some(respect) = respect {
            pairs.push(("ShouldRespectGracePeriod", respect));
        }
        Params::from_pairs(&pairs)
    }

    /// A [`group`] in which instance i-1 launched in az-a now (waiting on its launch hook); returns the group and
    /// the launch's instant.
    fn launched_one(launch_default: HookResult) -> (AutoScaling, Instant) {
        let now = Instant::now();
        let mut asg = group(launch_default);
        asg.launch(GROUP, "i-1", "az-a", now);
        (asg, now)
    }

    fn group(launch_default: HookResult) -> AutoScaling {
        let mut asg = AutoScaling::default();
        asg.create_group(GroupSpec {
            name: GROUP.into(),
            hooks: vec![
                Hook {
                    name: "launch".into(),
                    transition: Transition::Launching,
                    heartbeat_timeout: Duration::from_secs(60),
                    default_result: launch_default,
                },
                Hook {
                    name: "terminate".into(),
                    transition: Transition::Terminating,
                    heartbeat_timeout: Duration::from_secs(60),
                    default_result: HookResult::Continue,
                },
            ],
            health_check_grace_period: Duration::from_secs(300),
        });
        asg
    }

    #[test]
    fn a_launch_waits_for_its_hook_and_continue_puts_it_in_service() {
        let (mut asg, now) = launched_one(HookResult::Abandon);
        assert_eq!(
            asg.member("i-1").unwrap().state,
            LifecycleState::PendingWait
        );
        assert_eq!(asg.target_lifecycle_state("i-1"), Some("InService"));
        asg.complete_lifecycle_action(&complete("i-1", "launch", "CONTINUE"), now)
            .unwrap();
        assert_eq!(asg.member("i-1").unwrap().state, LifecycleState::InService);
        assert_eq!(asg.take_events(), vec![GroupEvent::InService("i-1".into())]);
        let refused = asg
            .complete_lifecycle_action(&complete("i-1", "launch", "CONTINUE"), now)
            .unwrap_err();
        assert_eq!(refused.code, "ValidationError");
        assert_eq!(
            refused.message,
            "No active Lifecycle Action found with instance ID i-1"
        );
    }

    #[test]
    fn the_default_result_applies_at_the_timeout_and_heartbeats_push_it_out() {
        let (mut asg, now) = launched_one(HookResult::Abandon);
        let later = now + Duration::from_secs(50);
        asg.record_heartbeat(&heartbeat("i-1"), later).unwrap();
        asg.advance(now + Duration::from_secs(100));
        assert_eq!(
            asg.member("i-1").unwrap().state,
            LifecycleState::PendingWait,
            "extended to 110 s"
        );
        assert_eq!(asg.next_deadline(), Some(later + Duration::from_secs(60)));
        asg.advance(later + Duration::from_secs(60));
        assert_eq!(
            asg.member("i-1").unwrap().state,
            LifecycleState::TerminatingProceed
        );
        assert!(
            matches!(&asg.take_events()[..], [GroupEvent::Terminate { instance_id, .. }] if instance_id == "i-1")
        );
        let refused = asg
            .record_heartbeat(&heartbeat("i-1"), later + Duration::from_secs(61))
            .unwrap_err();
        assert_eq!(
            refused.message,
            "No active Lifecycle Action found with instance ID i-1"
        );
    }

    #[test]
    fn heartbeats_never_outlast_the_global_timeout() {
        let (mut asg, now) = launched_one(HookResult::Continue);
        let mut at = now;
        while asg.member("i-1").unwrap().state == LifecycleState::PendingWait {
            at += Duration::from_secs(30);
            let _ = asg.record_heartbeat(&heartbeat("i-1"), at);
            asg.advance(at);
        }
        assert_eq!(
            at,
            now + Duration::from_secs(6000),
            "100 x the heartbeat timeout"
        );
        assert_eq!(asg.member("i-1").unwrap().state, LifecycleState::InService);
    }

    #[test]
    fn abandon_terminates_a_launch_without_its_terminate_hook() {
        let (mut asg, now) = launched_one(HookResult::Continue);
        asg.complete_lifecycle_action(&complete("i-1", "launch", "ABANDON"), now)
            .unwrap();
        assert_eq!(
            asg.member("i-1").unwrap().state,
            LifecycleState::TerminatingProceed
        );
        assert!(matches!(
            &asg.take_events()[..],
            [GroupEvent::Terminate { .. }]
        ));
    }

    #[test]
    fn unhealthy_in_service_goes_through_the_terminate_hook() {
        let (mut asg, now) = launched_one(HookResult::Continue);
        asg.complete_lifecycle_action(&complete("i-1", "launch", "CONTINUE"), now)
            .unwrap();
        asg.take_events();
        let young = asg
            .set_instance_health(
                &health("i-1", "Unhealthy", None),
                now + Duration::from_secs(10),
            )
            .unwrap_err();
        assert_eq!(
            young.message,
            "The age of the instance (10 seconds) is less than the configured grace period of 300 seconds"
        );
        asg.set_instance_health(
            &health("i-1", "Unhealthy", Some("false")),
            now + Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(
            asg.member("i-1").unwrap().state,
            LifecycleState::TerminatingWait
        );
        assert_eq!(asg.target_lifecycle_state("i-1"), Some("Terminated"));
        assert_eq!(
            asg.take_events(),
            vec![GroupEvent::Terminating("i-1".into())]
        );
        let wrong_hook = asg
            .complete_lifecycle_action(&complete("i-1", "launch", "CONTINUE"), now)
            .unwrap_err();
        assert_eq!(
            wrong_hook.message,
            "No active Lifecycle Action found with instance ID i-1"
        );
        asg.complete_lifecycle_action(&complete("i-1", "terminate", "CONTINUE"), now)
            .unwrap();
        assert!(matches!(
            &asg.take_events()[..],
            [GroupEvent::Terminate { .. }]
        ));
    }

    #[test]
    fn names_instances_tokens_and_values_are_checked() {
        let (mut asg, now) = launched_one(HookResult::Continue);
        let mut wrong_group = complete("i-1", "launch", "CONTINUE");
        wrong_group
            .0
            .insert("AutoScalingGroupName".into(), "other".into());
        assert_eq!(
            asg.complete_lifecycle_action(&wrong_group, now)
                .unwrap_err()
                .message,
            "AutoScalingGroup name not found - other"
        );
        let bad_result = asg
            .complete_lifecycle_action(&complete("i-1", "launch", "OK"), now)
            .unwrap_err();
        assert!(
            bad_result
                .message
                .contains("enum value set: [CONTINUE, ABANDON]"),
            "{bad_result}"
        );
        let mut by_token = complete("i-1", "launch", "CONTINUE");
        by_token.0.remove("InstanceId");
        by_token.0.insert(
            "LifecycleActionToken".into(),
            "00000000-0000-4000-a000-00000000ffff".into(),
        );
        assert_eq!(
            asg.complete_lifecycle_action(&by_token, now)
                .unwrap_err()
                .message,
            "No active Lifecycle Action found with token 00000000-0000-4000-a000-00000000ffff"
        );
        by_token.0.remove("LifecycleActionToken");
        assert!(asg
            .complete_lifecycle_action(&by_token, now)
            .unwrap_err()
            .message
            .starts_with("Either InstanceId"));
        assert_eq!(
            asg.set_instance_health(&health("i-9", "Unhealthy", Some("false")), now)
                .unwrap_err()
                .message,
            "Instance Id not found - No managed instance found for instance ID: i-9"
        );
        let bad_health = asg
            .set_instance_health(&health("i-1", "Sick", Some("false")), now)
            .unwrap_err();
        assert!(
            bad_health.message.contains("[Healthy, Unhealthy]"),
            "{bad_health}"
        );
        let mut token = complete("i-1", "launch", "CONTINUE");
        token.0.remove("InstanceId");
        token.0.insert(
            "LifecycleActionToken".into(),
            "00000000-0000-4000-a000-000000000001".into(),
        );
        asg.complete_lifecycle_action(&token, now)
            .expect("the launch action's own token");
    }
    fn refresh(pairs: &[(&str, &str)]) -> Params {
        let mut all = vec![("AutoScalingGroupName", GROUP)];
        all.extend_from_slice(pairs);
        Params::from_pairs(&all)
    }

    /// Completes the launch hook of every member pending.
    fn complete_launches(asg: &mut AutoScaling, now: Instant) -> Vec<String> {
        let pending: Vec<String> = asg
            .members(GROUP)
            .into_iter()
            .filter(|m| m.state == LifecycleState::PendingWait)
            .map(|m| m.instance_id)
            .collect();
        for id in &pending {
            asg.complete_lifecycle_action(&complete(id, "launch", "CONTINUE"), now)
                .unwrap();
        }
        pending
    }

    /// Plays the group's control plane for one terminating instance: its terminate hook completed, the instance
    /// gone, and a replacement launched in its place.
    fn replace(asg: &mut AutoScaling, old: &str, new: &str, now: Instant) {
        asg.complete_lifecycle_action(&complete(old, "terminate", "CONTINUE"), now)
            .unwrap();
        asg.remove(old, "terminated");
        asg.launch(GROUP, new, "az-a", now);
    }

    #[test]
    fn a_refresh_of_a_group_of_one_terminates_first_and_waits_for_service_and_warmup() {
        let (mut asg, t0) = launched_one(HookResult::Abandon);
        complete_launches(&mut asg, t0);
        let id = asg
            .start_instance_refresh(
                &refresh(&[
                    ("Preferences.MinHealthyPercentage", "0"),
                    ("Preferences.MaxHealthyPercentage", "100"),
                    ("Preferences.InstanceWarmup", "10"),
                ]),
                t0,
            )
            .unwrap();
        assert_eq!(
            asg.member("i-1").unwrap().state,
            LifecycleState::TerminatingWait,
            "a group of one at MaxHealthyPercentage 100 terminates before it launches"
        );
        let again = asg.start_instance_refresh(&refresh(&[]), t0).unwrap_err();
        assert_eq!(again.code, "InstanceRefreshInProgress");
        let t1 = t0 + Duration::from_secs(5);
        replace(&mut asg, "i-1", "i-2", t1);
        asg.advance(t1);
        let status = |asg: &AutoScaling| asg.instance_refreshes(GROUP)[0].status;
        assert_eq!(status(&asg), RefreshStatus::InProgress, "i-2 is pending");
        let t2 = t0 + Duration::from_secs(20);
        complete_launches(&mut asg, t2);
        asg.advance(t2 + Duration::from_secs(9));
        assert_eq!(status(&asg), RefreshStatus::InProgress, "still warming up");
        assert_eq!(asg.next_deadline(), Some(t2 + Duration::from_secs(10)));
        asg.advance(t2 + Duration::from_secs(10));
        let done = &asg.instance_refreshes(GROUP)[0];
        assert_eq!(
            (done.id.as_str(), done.status),
            (id.as_str(), RefreshStatus::Successful)
        );
        assert_eq!(done.replacements.len(), 1);
        assert_eq!(done.replacements[0].new.as_deref(), Some("i-2"));
        assert_eq!(
            done.max_step(),
            Duration::from_secs(30),
            "terminating to warmed up"
        );
        asg.start_instance_refresh(&refresh(&[]), t2 + Duration::from_secs(11))
            .expect("a finished refresh no longer blocks the next");
    }

    #[test]
    fn a_refresh_keeps_min_healthy_percentage_in_service() {
        let t0 = Instant::now();
        let mut asg = group(HookResult::Abandon);
        for id in ["i-1", "i-2", "i-3"] {
            asg.launch(GROUP, id, "az-a", t0);
        }
        complete_launches(&mut asg, t0);
        asg.start_instance_refresh(
            &refresh(&[
                ("Preferences.MinHealthyPercentage", "66"),
                ("Preferences.InstanceWarmup", "0"),
            ]),
            t0,
        )
        .unwrap();
        let leaving = |asg: &AutoScaling| {
            asg.members(GROUP)
                .into_iter()
                .filter(|m| m.state == LifecycleState::TerminatingWait)
                .map(|m| m.instance_id)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            leaving(&asg),
            ["i-1"],
            "ceil(66 % of 3) = 2 stay in service"
        );
        for (n, (old, new)) in [("i-1", "i-4"), ("i-2", "i-5"), ("i-3", "i-6")]
            .iter()
            .enumerate()
        {
            let at = t0 + Duration::from_secs(10 * (n as u64 + 1));
            assert_eq!(leaving(&asg), [*old]);
            replace(&mut asg, old, new, at);
            asg.advance(at);
            assert!(
                leaving(&asg).is_empty(),
                "nothing more leaves while {new} is pending"
            );
            complete_launches(&mut asg, at);
            asg.advance(at);
        }
        let done = &asg.instance_refreshes(GROUP)[0];
        assert_eq!(done.status, RefreshStatus::Successful);
        assert_eq!(done.replacements.len(), 3);
    }

    #[test]
    fn start_instance_refresh_refuses_what_aws_refuses() {
        let now = Instant::now();
        let mut asg = group(HookResult::Abandon);
        let refused = |asg: &mut AutoScaling, pairs: &[(&str, &str)]| {
            asg.start_instance_refresh(&refresh(pairs), now)
                .unwrap_err()
                .message
        };
        let mut unknown = refresh(&[]);
        unknown
            .0
            .insert("AutoScalingGroupName".into(), "other".into());
        assert_eq!(
            asg.start_instance_refresh(&unknown, now)
                .unwrap_err()
                .message,
            "AutoScalingGroup name not found - other"
        );
        assert!(
            refused(&mut asg, &[("Preferences.MinHealthyPercentage", "101")])
                .contains("less than or equal to 100")
        );
        assert!(
            refused(&mut asg, &[("Preferences.MaxHealthyPercentage", "100")])
                .contains("must specify MinHealthyPercentage")
        );
        assert!(refused(
            &mut asg,
            &[
                ("Preferences.MinHealthyPercentage", "90"),
                ("Preferences.MaxHealthyPercentage", "99")
            ]
        )
        .contains("greater than or equal to 100"));
        assert!(refused(
            &mut asg,
            &[
                ("Preferences.MinHealthyPercentage", "0"),
                ("Preferences.MaxHealthyPercentage", "150")
            ]
        )
        .contains("cannot be greater than 100"));
        assert!(refused(&mut asg, &[("Strategy", "Fast")]).contains("[Rolling, ReplaceRootVolume]"));
        for (name, value) in [
            ("Strategy", "ReplaceRootVolume"),
            ("Preferences.CheckpointPercentages.member.1", "50"),
        ] {
            assert!(
                refused(&mut asg, &[(name, value)]).contains("NOT AWS"),
                "{name}"
            );
        }
        assert!(refused(
            &mut asg,
            &[
                ("Preferences.MinHealthyPercentage", "90"),
                ("Preferences.MaxHealthyPercentage", "110")
            ]
        )
        .contains("NOT AWS"));
        assert!(
            asg.instance_refreshes(GROUP).is_empty(),
            "nothing refused started"
        );
    }
}
