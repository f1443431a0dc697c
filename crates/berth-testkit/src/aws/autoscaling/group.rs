//! The simulated Auto Scaling groups' control plane: the part of Auto Scaling that acts on the model, launching,
//! keeping and replacing the group's instances, so nobody launches a replacement by hand. As in
//! docs/examples/berth-cluster.yaml there is one group per zone (`<cluster>-broker-<zone index>`), each with the
//! zone's desired capacity, and one stack resource awaiting a signal per broker.
//!
//! The group's contract lives in the model ([`super::AutoScaling`]): lifecycle states, hooks with their heartbeat
//! timeouts and default results, health, instance refreshes. This module acts on it, as AWS does, through
//! [`Instances`] (the simulated fleet's hosts):
//!
//! * desired capacity per group: whenever a group has fewer members pending or in service than desired, an
//!   instance is launched in its zone and joins it, in `Pending:Wait` while the launch hook waits;
//! * groups created one after another: a group's desired capacity is 0 until [`GroupPlan::after_previous`]
//!   has passed since the previous group (in creation order) launched its first instance (CloudFormation
//!   creating the groups of a stack in turn launches their first instances at least that far apart);
//! * or, for groups a template declares ([`GroupPlan::declared`]), as CloudFormation creates them: a group is
//!   created once every group it depends on is `CREATE_COMPLETE` in the stack, which it is once its desired
//!   capacity is InService and its CreationPolicy's signals arrived; its `AWS::AutoScaling::LifecycleHook`
//!   resources are added then, so they hold only the instances launched after
//!   ([`crate::aws::template::creation`] holds the rules with their documents);
//! * an instance that leaves (ABANDON at launch, a completed or timed-out terminate hook, SetInstanceHealth
//!   Unhealthy after its terminate hook) is terminated: it is given a moment to finish (berth exits on its own
//!   after a drain or a failure; how it ended goes into the group's history), then killed;
//! * an instance that dies (a host killed by a test or the demo) is noticed, leaves the group, and is replaced;
//! * while an instance's terminate hook waits, its IMDS `autoscaling/target-lifecycle-state` says `Terminated`;
//! * a Spot interruption ([`super::AutoScaling::interrupt_spot`]) sets the instance's IMDS `spot/instance-action`,
//!   and when its notice runs out the instance is killed at once;
//! * an instance refresh ([`roll`]: StartInstanceRefresh on each zone's group in turn, as an operator upgrades
//!   the cluster) terminates members through their terminate hook; the group launches their replacements as
//!   above, and the model moves the refresh on once they are in service and warmed up.
//!
//! The loop wakes on every change of the endpoint (an API call berth made, a timeout), at the next lifecycle
//! timeout, and on a short poll that notices dead instances.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{GroupEvent, GroupSpec, Hook, HookResult, InstanceRefresh, LifecycleState, Member};
use super::{RefreshStatus, Transition};
use crate::aws::cloudformation::{ResourceSignal, Status};
use crate::aws::endpoint::{AwsEndpoint, ControlPlane};
use crate::aws::query::{ApiError, Params};

/// The launch hook berth completes.
pub const LAUNCH_HOOK: &str = "berth-launch";
/// The terminate hook berth completes after a drain.
pub const TERMINATE_HOOK: &str = "berth-terminate";
/// The stack's logical id of the group, which berth signals.
pub const STACK_RESOURCE: &str = "Brokers";

/// The name of a cluster's group in zone `az` (as the CloudFormation example names it).
pub fn group_name(cluster: &str, az: usize) -> String {
    format!("{cluster}-broker-{az}")
}

/// The name of a cluster's group of controller-only hosts in zone `az` (beside the broker groups).
pub fn controller_group_name(cluster: &str, az: usize) -> String {
    format!("{cluster}-controller-{az}")
}

/// The stack's name for a cluster.
pub fn stack_name(cluster: &str) -> String {
    format!("{cluster}-stack")
}

/// How the simulated group is set up (CloudFormation's view of it, compressed in time where noted).
#[derive(Debug, Clone)]
pub struct AsgOptions {
    /// Desired capacity of each zone.
    pub per_zone: usize,
    /// The launch hook's heartbeat timeout (AWS: 30 s to 2 h).
    pub launch_timeout: Duration,
    /// The launch hook's default result (AWS's default: ABANDON).
    pub launch_default: HookResult,
    /// The terminate hook's heartbeat timeout.
    pub terminate_timeout: Duration,
    /// The group's health check grace period.
    pub grace_period: Duration,
    /// The CreationPolicy's signal timeout (its count is the number of brokers).
    pub creation_timeout: Duration,
    /// How long a terminated host's berth may take to exit on its own before the host is killed.
    pub shutdown_grace: Duration,
    /// How often dead hosts are looked for (besides every change of the endpoint).
    pub poll: Duration,
    /// How far apart the stack's groups of voters start launching (CloudFormation creating them one after
    /// another); zero: all at once.
    pub stagger: Duration,
}

impl Default for AsgOptions {
    fn default() -> Self {
        Self {
            per_zone: 1,
            launch_timeout: Duration::from_secs(60),
            launch_default: HookResult::Abandon,
            terminate_timeout: Duration::from_secs(60),
            grace_period: Duration::from_secs(300),
            creation_timeout: Duration::from_secs(1800),
            shutdown_grace: Duration::from_secs(15),
            poll: Duration::from_millis(200),
            stagger: Duration::ZERO,
        }
    }
}

/// A zone's group as CloudFormation creates it: a launch and a terminate hook.
pub fn group_spec(cluster: &str, az: usize, options: &AsgOptions) -> GroupSpec {
    named_group_spec(group_name(cluster, az), options)
}

/// A group named `name` as CloudFormation creates it: a launch and a terminate hook.
fn named_group_spec(name: String, options: &AsgOptions) -> GroupSpec {
    GroupSpec {
        name,
        hooks: vec![
            Hook {
                name: LAUNCH_HOOK.into(),
                transition: Transition::Launching,
                heartbeat_timeout: options.launch_timeout,
                default_result: options.launch_default,
            },
            Hook {
                name: TERMINATE_HOOK.into(),
                transition: Transition::Terminating,
                heartbeat_timeout: options.terminate_timeout,
                default_result: HookResult::Continue,
            },
        ],
        health_check_grace_period: options.grace_period,
    }
}

/// The stack's CreationPolicy on the group: one SUCCESS signal per broker.
pub fn creation_policy(brokers: u32, options: &AsgOptions) -> ResourceSignal {
    ResourceSignal {
        count: brokers,
        timeout: options.creation_timeout,
    }
}

/// A cluster's groups as its stack creates them: the stack awaiting one signal per broker id, and its groups.
#[derive(Debug, Clone)]
pub struct Groups {
    /// The cluster's name.
    pub cluster: String,
    /// Each zone's name, by zone index (`us-east-1a`, ...).
    pub zones: Vec<String>,
    /// The broker count (the CreationPolicy's signal count).
    pub brokers: u32,
    /// The groups' settings.
    pub options: AsgOptions,
    /// Every group, in creation order.
    pub plans: Vec<GroupPlan>,
}

/// One group of the stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPlan {
    /// Its name.
    pub name: String,
    /// Its zone's index.
    pub az: usize,
    /// Its desired capacity once it has started.
    pub desired: usize,
    /// How long after the previous group (in creation order) launched its first instance this group's desired
    /// capacity is raised from 0 to `desired`; the first group starts at once. Unused for a declared group.
    pub after_previous: Duration,
    /// The stack resource this group is, when a template declares it (None: created with the stack).
    pub declared: Option<DeclaredGroup>,
}

/// A group as a template declares it, created by the stack when its dependencies are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredGroup {
    /// Its logical id in the stack.
    pub logical_id: String,
    /// Its name, the hooks of its `LifecycleHookSpecificationList` and its grace period.
    pub spec: GroupSpec,
    /// Its `AWS::AutoScaling::LifecycleHook` resources, added once it is `CREATE_COMPLETE`.
    pub later_hooks: Vec<Hook>,
    /// Its `CreationPolicy` `ResourceSignal`.
    pub creation_signal: Option<ResourceSignal>,
    /// The logical ids of the stack's groups it is created after.
    pub after: Vec<String>,
    /// Its `MaxSize` (a rolling update terminates first when the group has no room above its capacity).
    pub max_size: usize,
}

impl GroupPlan {
    /// Zone `az`'s group named `name`, `desired` instances from the start.
    pub fn new(name: String, az: usize, desired: usize) -> Self {
        Self {
            name,
            az,
            desired,
            after_previous: Duration::ZERO,
            declared: None,
        }
    }
}

impl Groups {
    /// Creates the stack and every zone's group in the endpoint's model; declared groups are created later, by
    /// the control loop, as their stack creates them.
    pub fn create(&self, aws: &AwsEndpoint) {
        let declared: Vec<&str> = self
            .plans
            .iter()
            .filter_map(|plan| plan.declared.as_ref().map(|d| d.logical_id.as_str()))
            .collect();
        if !declared.is_empty() {
            let stack = stack_name(&self.cluster);
            aws.with(|plane| {
                plane
                    .stacks
                    .create_declared(&stack, &declared, Instant::now())
            });
            return;
        }
        aws.with(|plane| {
            let policy = creation_policy(self.brokers, &self.options);
            plane.stacks.create(
                &stack_name(&self.cluster),
                &[(STACK_RESOURCE, Some(policy))],
                Instant::now(),
            );
            for plan in &self.plans {
                plane
                    .autoscaling
                    .create_group(named_group_spec(plan.name.clone(), &self.options));
            }
        });
    }

    /// Every group's name, in creation order.
    pub fn names(&self) -> Vec<String> {
        self.plans.iter().map(|plan| plan.name.clone()).collect()
    }

    /// The instances every group holds once all have started.
    pub fn capacity(&self) -> usize {
        self.plans.iter().map(|plan| plan.desired).sum()
    }

    /// The members of every group now, in creation order.
    pub fn members(&self, aws: &AwsEndpoint) -> Vec<Member> {
        let groups = self.names();
        aws.read(|plane| {
            groups
                .iter()
                .flat_map(|group| plane.autoscaling.members(group))
                .collect()
        })
    }
}

/// How a terminated instance ended, for the group's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// Whether it could be killed.
    pub killed: Result<(), String>,
    /// How its software ended and what it still held (e.g. "berth exited with status 0; held ENIs [], volumes []").
    pub notes: String,
}

/// The instances a group launches and terminates: the simulated fleet's hosts.
#[async_trait::async_trait]
pub trait Instances: Send + Sync + 'static {
    /// The endpoint whose model the group acts on.
    fn endpoint(&self) -> &AwsEndpoint;
    /// The group's settings and zones.
    fn groups(&self) -> &Groups;
    /// Whether the instance still runs.
    fn alive(&self, instance_id: &str) -> bool;
    /// Launches an instance for group `plan` (in its zone), its software not started yet; its id.
    async fn launch(
        &self,
        plan: &GroupPlan,
    ) -> Result<String, Box<dyn std::error::Error + Send + Sync>>;
    /// Starts the instance's software at its first boot (as its user data does), for group `plan`.
    async fn start(
        &self,
        plan: &GroupPlan,
        instance_id: &str,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
    /// The instance's IMDS says `autoscaling/target-lifecycle-state` = `Terminated` from now on.
    fn mark_terminating(&self, instance_id: &str);
    /// The instance's IMDS says `spot/instance-action` = `notice` from now on.
    fn mark_spot_interrupted(&self, instance_id: &str, notice: &str);
    /// Lets the instance's software finish for up to `grace`, then kills the instance.
    async fn terminate(&self, instance_id: &str, grace: Duration) -> Ended;
}

/// The running group; stops (without touching the instances) when stopped or dropped.
pub struct Asg {
    task: tokio::task::JoinHandle<()>,
}

impl Asg {
    /// Starts the group's control loop over `instances`.
    pub fn start(instances: Arc<dyn Instances>) -> Self {
        Self {
            task: tokio::spawn(control_loop(instances)),
        }
    }

    /// Stops the control loop and waits until it has let go of the instances.
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Asg {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn control_loop(instances: Arc<dyn Instances>) {
    let aws = instances.endpoint();
    let plans = instances.groups().plans.clone();
    let stack = stack_name(&instances.groups().cluster);
    // When each group launched its first instance.
    let mut first_launch: Vec<Option<Instant>> = vec![None; plans.len()];
    // Each declared group's creation by the stack.
    let mut creation = vec![Creating::NotStarted; plans.len()];
    let mut changed = aws.changed();
    // Terminations in progress; dropped (and so aborted) with the loop.
    let mut terminations = tokio::task::JoinSet::new();
    loop {
        let events = aws.with(|plane| plane.autoscaling.take_events());
        for event in events {
            handle(&instances, event, &mut terminations);
        }
        while terminations.try_join_next().is_some() {}
        for (index, plan) in plans.iter().enumerate() {
            replace_dead(instances.as_ref(), &plan.name);
            let started = match &plan.declared {
                Some(declared) => {
                    create_declared(aws, &stack, declared, plan.desired, &mut creation[index])
                }
                None => {
                    starts_at(&plans, &first_launch, index).is_some_and(|at| at <= Instant::now())
                }
            };
            let desired = if started { plan.desired } else { 0 };
            match fill(instances.as_ref(), plan, desired).await {
                Ok(0) => {}
                Ok(_) => {
                    first_launch[index].get_or_insert_with(Instant::now);
                }
                Err(error) => {
                    let group = &plan.name;
                    eprintln!("berth-testkit: Auto Scaling group {group}: launch failed: {error}");
                }
            }
        }
        let next = aws.read(|plane| plane.next_deadline());
        let poll = Instant::now() + instances.groups().options.poll;
        let wake = next.map_or(poll, |at| at.min(poll));
        let wake = (0..plans.len())
            .filter(|index| plans[*index].declared.is_none())
            .filter_map(|index| starts_at(&plans, &first_launch, index))
            .filter(|at| *at > Instant::now())
            .fold(wake, Instant::min);
        // Our own changes above must not wake us; what changed since is caught by the poll at the latest.
        changed.borrow_and_update();
        tokio::select! {
            _ = tokio::time::sleep_until(wake.into()) => {}
            changed = changed.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

fn handle(
    instances: &Arc<dyn Instances>,
    event: GroupEvent,
    terminations: &mut tokio::task::JoinSet<()>,
) {
    match event {
        GroupEvent::InService(_) => {}
        GroupEvent::Terminating(instance_id) => instances.mark_terminating(&instance_id),
        GroupEvent::SpotInterruption {
            instance_id,
            notice,
        } => instances.mark_spot_interrupted(&instance_id, &notice),
        GroupEvent::Reclaimed(instance_id) => {
            let cause = "EC2 reclaimed the interrupted Spot Instance".to_owned();
            terminations.spawn(terminate(
                instances.clone(),
                instance_id,
                cause,
                Duration::ZERO,
            ));
        }
        GroupEvent::Terminate { instance_id, cause } => {
            let grace = instances.groups().options.shutdown_grace;
            terminations.spawn(terminate(instances.clone(), instance_id, cause, grace));
        }
    }
}

/// Terminates a member: lets its software finish within `grace` (how it ended goes into the history), then
/// kills it.
async fn terminate(
    instances: Arc<dyn Instances>,
    instance_id: String,
    cause: String,
    grace: Duration,
) {
    let outcome = if instances.alive(&instance_id) {
        let ended = instances.terminate(&instance_id, grace).await;
        match ended.killed {
            Ok(()) => format!("terminated ({cause}); {}", ended.notes),
            Err(error) => format!("termination failed ({cause}): {error}; {}", ended.notes),
        }
    } else {
        cause
    };
    instances
        .endpoint()
        .with(|plane| plane.autoscaling.remove(&instance_id, &outcome));
}

/// Members whose instance died leave the group (EC2's status checks would say the instance is gone).
fn replace_dead(instances: &dyn Instances, group: &str) {
    let aws = instances.endpoint();
    let members = aws.read(|plane| plane.autoscaling.members(group));
    for member in members {
        let dead = !instances.alive(&member.instance_id);
        let leaving = member.state == LifecycleState::TerminatingProceed;
        if dead && !leaving {
            aws.with(|plane| {
                plane.autoscaling.remove(
                    &member.instance_id,
                    "an EC2 health check indicated the instance was terminated",
                )
            });
        }
    }
}

/// Where a declared group's creation by its stack stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Creating {
    /// A group it depends on is not `CREATE_COMPLETE` yet.
    NotStarted,
    /// Created in the model, `CREATE_IN_PROGRESS` in the stack.
    InProgress,
    /// `CREATE_COMPLETE` (its later hooks added) or `CREATE_FAILED`: the stack has done with it.
    Done,
}

/// Moves a declared group's creation on (see the module docs); whether the group exists, so that it keeps its
/// desired capacity.
fn create_declared(
    aws: &AwsEndpoint,
    stack: &str,
    declared: &DeclaredGroup,
    desired: usize,
    creating: &mut Creating,
) -> bool {
    let status =
        |plane: &ControlPlane, logical_id: &str| plane.stacks.resource_status(stack, logical_id);
    match *creating {
        Creating::NotStarted => {
            let ready = aws.read(|plane| {
                declared
                    .after
                    .iter()
                    .all(|after| status(plane, after) == Some(Status::CreateComplete))
            });
            if !ready {
                return false;
            }
            let started = aws.with(|plane| {
                plane.autoscaling.create_group(declared.spec.clone());
                plane.stacks.start_group(
                    stack,
                    &declared.logical_id,
                    declared.creation_signal,
                    Instant::now(),
                )
            });
            if let Err(error) = started {
                eprintln!("berth-testkit: stack {stack}: {error}");
            }
            *creating = Creating::InProgress;
        }
        Creating::InProgress => aws.with(|plane| {
            let name = &declared.spec.name;
            let in_service = plane
                .autoscaling
                .members(name)
                .iter()
                .filter(|member| member.state == LifecycleState::InService)
                .count();
            if in_service >= desired {
                plane.stacks.capacity_reached(stack, &declared.logical_id);
            }
            match status(plane, &declared.logical_id) {
                Some(Status::CreateComplete) => {
                    let mut spec = declared.spec.clone();
                    spec.hooks.extend(declared.later_hooks.iter().cloned());
                    plane.autoscaling.create_group(spec);
                    *creating = Creating::Done;
                }
                Some(Status::CreateInProgress) => {}
                _ => *creating = Creating::Done,
            }
        }),
        Creating::Done => {}
    }
    true
}

/// When group `index` starts (its desired capacity raised from 0): the first at once, each other
/// [`GroupPlan::after_previous`] after the previous one's first launch; None while that has not happened.
fn starts_at(
    plans: &[GroupPlan],
    first_launch: &[Option<Instant>],
    index: usize,
) -> Option<Instant> {
    match index.checked_sub(1) {
        None => Some(Instant::now()),
        Some(previous) => first_launch[previous].map(|at| at + plans[index].after_previous),
    }
}

/// Launches instances until group `plan` has `desired` members pending or in service; how many it launched.
async fn fill(
    instances: &dyn Instances,
    plan: &GroupPlan,
    desired: usize,
) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
    let aws = instances.endpoint();
    let group = plan.name.as_str();
    let zone = &instances.groups().zones[plan.az];
    let mut launched = 0;
    loop {
        let members = aws.read(|plane| plane.autoscaling.members(group));
        if members.iter().filter(|m| counts(plan, m)).count() >= desired {
            return Ok(launched);
        }
        // The instance joins the group (in `Pending:Wait` while its launch hook waits) before its software
        // starts, as in AWS, where nothing on an instance runs before the group holds it: berth heartbeats the
        // launch action from its first second, and an action not there yet would be answered "not awaited".
        let instance_id = instances.launch(plan).await?;
        aws.with(|plane| {
            plane
                .autoscaling
                .launch(group, &instance_id, zone, Instant::now())
        });
        instances.start(plan, &instance_id).await?;
        launched += 1;
    }
}

/// Whether a member counts toward group `plan`'s capacity: pending or in service; in a declared group also
/// while it leaves, as the template's `InstanceMaintenancePolicy` 0/100 (terminate before launch: never above
/// 100% of the desired capacity) has it, so a replacement launches once the old instance has terminated, its
/// terminate hook done (the region refuses any other policy, [`crate::aws::template::creation`]).
fn counts(plan: &GroupPlan, member: &Member) -> bool {
    match member.state {
        LifecycleState::PendingWait | LifecycleState::InService => true,
        LifecycleState::TerminatingWait | LifecycleState::TerminatingProceed => {
            plan.declared.is_some()
        }
    }
}

/// A wait on the groups that failed.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// The awaited condition did not come in time.
    #[error("Auto Scaling group: {what} not reached within {timeout:?}; members {members:?}; history:\n  {history}")]
    NotReached {
        /// The awaited condition.
        what: String,
        /// How long it was awaited.
        timeout: Duration,
        /// The members at the end.
        members: Vec<Member>,
        /// The groups' history, one activity per line.
        history: String,
    },
    /// The model refused a call.
    #[error("{action} on {group}: {error}")]
    Refused {
        /// The call.
        action: &'static str,
        /// The group.
        group: String,
        /// AWS's refusal.
        error: ApiError,
    },
    /// A refresh that was started is no longer described.
    #[error("{0}: the refresh vanished")]
    Vanished(String),
}

/// The groups' history, oldest first, one line each.
pub fn history(aws: &AwsEndpoint) -> Vec<String> {
    aws.read(|plane| {
        plane
            .autoscaling
            .activities()
            .iter()
            .map(|activity| activity.description.clone())
            .collect()
    })
}

/// Waits (on the endpoint's changes, not a sleep loop) until `accept` holds for the groups' members, up to
/// `timeout`; returns them.
pub async fn wait_members(
    aws: &AwsEndpoint,
    groups: &Groups,
    what: &str,
    timeout: Duration,
    accept: impl Fn(&[Member]) -> bool,
) -> Result<Vec<Member>, GroupError> {
    let mut changed = aws.changed();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let now = groups.members(aws);
        if accept(&now) {
            return Ok(now);
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                return Err(GroupError::NotReached {
                    what: what.to_owned(),
                    timeout,
                    members: now,
                    history: history(aws).join("\n  "),
                });
            }
            _ = changed.changed() => {}
        }
    }
}

/// Waits until every group has its desired capacity in service, up to `timeout`; returns the members.
pub async fn wait_all_in_service(
    aws: &AwsEndpoint,
    groups: &Groups,
    timeout: Duration,
) -> Result<Vec<Member>, GroupError> {
    let count = groups.capacity();
    wait_members(aws, groups, "every member in service", timeout, |members| {
        members
            .iter()
            .filter(|m| m.state == LifecycleState::InService)
            .count()
            == count
    })
    .await
}

/// An instance refresh's preferences (StartInstanceRefresh `Preferences`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshSettings {
    /// `MinHealthyPercentage`.
    pub min_healthy_percentage: u32,
    /// `MaxHealthyPercentage`.
    pub max_healthy_percentage: u32,
    /// `InstanceWarmup`.
    pub instance_warmup: Duration,
}

impl RefreshSettings {
    /// The settings for a group of one broker: `MaxHealthyPercentage` 100, so the old instance is terminated
    /// (and berth's drain releases the ENI and the volume) before its replacement is launched, which could not
    /// attach them while the old one held them; `MinHealthyPercentage` 0, since the group's only instance must
    /// leave. Kafka's availability is kept by rolling the groups one after another and by berth (it completes
    /// the launch hook only once the broker is back, and drains only when stopping it leaves every partition
    /// enough in-sync replicas), not by the group.
    pub fn group_of_one(instance_warmup: Duration) -> Self {
        Self {
            min_healthy_percentage: 0,
            max_healthy_percentage: 100,
            instance_warmup,
        }
    }

    /// StartInstanceRefresh's parameters for `group`.
    pub fn params(&self, group: &str) -> Params {
        let min = self.min_healthy_percentage.to_string();
        let max = self.max_healthy_percentage.to_string();
        let warmup = self.instance_warmup.as_secs().to_string();
        Params::from_pairs(&[
            ("AutoScalingGroupName", group),
            ("Strategy", "Rolling"),
            ("Preferences.MinHealthyPercentage", &min),
            ("Preferences.MaxHealthyPercentage", &max),
            ("Preferences.InstanceWarmup", &warmup),
        ])
    }
}

/// Rolls the cluster as an operator upgrades it: an instance refresh of each zone's group, one group after
/// another (the next starts once the previous is `Successful`), each allowed `per_group`. Returns every
/// group's refresh as DescribeInstanceRefreshes shows it, in zone order.
pub async fn roll(
    aws: &AwsEndpoint,
    groups: &Groups,
    settings: RefreshSettings,
    per_group: Duration,
) -> Result<Vec<InstanceRefresh>, GroupError> {
    let mut rolled = Vec::new();
    for group in groups.names() {
        let id = aws
            .with(|plane| {
                plane
                    .autoscaling
                    .start_instance_refresh(&settings.params(&group), Instant::now())
            })
            .map_err(|error| GroupError::Refused {
                action: "StartInstanceRefresh",
                group: group.clone(),
                error,
            })?;
        rolled.push(wait_refresh(aws, groups, &group, &id, per_group).await?);
    }
    Ok(rolled)
}

/// Waits (on the endpoint's changes) until refresh `id` of `group` is `Successful`, up to `timeout`.
async fn wait_refresh(
    aws: &AwsEndpoint,
    groups: &Groups,
    group: &str,
    id: &str,
    timeout: Duration,
) -> Result<InstanceRefresh, GroupError> {
    let what = format!("instance refresh {id} of {group} successful");
    let refresh = || {
        aws.read(|plane| {
            plane
                .autoscaling
                .instance_refreshes(group)
                .into_iter()
                .find(|r| r.id == id)
        })
    };
    wait_members(aws, groups, &what, timeout, |_| {
        refresh().is_some_and(|r| r.status == RefreshStatus::Successful)
    })
    .await?;
    refresh().ok_or(GroupError::Vanished(what))
}

#[cfg(test)]
mod plan_tests {
    use super::*;

    #[test]
    fn a_group_starts_its_delay_after_the_previous_groups_first_launch() {
        let later = GroupPlan {
            after_previous: Duration::from_secs(60),
            ..GroupPlan::new("second".into(), 1, 1)
        };
        let plans = [GroupPlan::new("first".into(), 0, 1), later];
        let before = Instant::now();
        let first = starts_at(&plans, &[None, None], 0).expect("the first group starts at once");
        assert!(first >= before && first <= Instant::now());
        assert_eq!(
            starts_at(&plans, &[None, None], 1),
            None,
            "not before the first launch"
        );
        let launched = Instant::now();
        assert_eq!(
            starts_at(&plans, &[Some(launched), None], 1),
            Some(launched + Duration::from_secs(60))
        );
    }
}
