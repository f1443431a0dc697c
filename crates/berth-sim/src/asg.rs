//! The simulated Auto Scaling groups: the control plane that launches, keeps and replaces the fleet's hosts, so
//! nobody launches a replacement by hand. As in docs/examples/berth-cluster.yaml there is one group per zone
//! (`<cluster>-broker-<zone index>`), each with the zone's desired capacity, and one stack resource awaiting a
//! signal per broker.
//!
//! The group's contract lives in the strict endpoint's model ([`berth_testkit::aws::autoscaling`]): lifecycle
//! states, hooks with their heartbeat timeouts and default results, health. This module plays the part of
//! Auto Scaling that acts on it, as AWS does:
//!
//! * desired capacity per zone: whenever a zone has fewer members pending or in service than desired, a host is
//!   launched there (an instance in moto, a namespace, IMDS, berth started) and joins the group, in
//!   `Pending:Wait` while the launch hook waits;
//! * an instance that leaves (ABANDON at launch, a completed or timed-out terminate hook, SetInstanceHealth
//!   Unhealthy after its terminate hook) is terminated: its host is given a moment to finish (berth exits on its
//!   own after a drain or a failure; its exit status goes into the group's history), then killed and its
//!   instance terminated in moto;
//! * an instance that dies (a host killed by a test or the demo) is noticed, leaves the group, and is replaced;
//! * while an instance's terminate hook waits, its IMDS `autoscaling/target-lifecycle-state` says `Terminated`.
//!
//! * an instance refresh ([`roll`]: StartInstanceRefresh on each zone's group in turn, as an operator upgrades
//!   the cluster) terminates members through their terminate hook; the group launches their replacements as
//!   above, and the endpoint's model moves the refresh on once they are in service and warmed up.
//!
//! The loop wakes on every change of the endpoint (an API call berth made, a timeout), at the next lifecycle
//! timeout, and on a short poll that notices dead hosts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_testkit::aws::autoscaling::{
    GroupEvent, GroupSpec, Hook, HookResult, InstanceRefresh, LifecycleState, Member,
    RefreshStatus, Transition,
};
use berth_testkit::aws::cloudformation::ResourceSignal;
use berth_testkit::aws::query::Params;

use crate::fleet::{Fleet, FleetError, FleetOptions};
use crate::layout;

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

/// Every group of a fleet, in zone order.
pub fn group_names(options: &FleetOptions) -> Vec<String> {
    (0..options.zones)
        .map(|az| group_name(&options.cluster, az))
        .collect()
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
        }
    }
}

/// A zone's group as CloudFormation creates it: a launch and a terminate hook.
pub fn group_spec(cluster: &str, az: usize, options: &AsgOptions) -> GroupSpec {
    GroupSpec {
        name: group_name(cluster, az),
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

/// Builds a fleet ([`crate::with_fleet`]), starts its Auto Scaling group, runs `body`, and stops the group
/// before the fleet is torn down, whatever `body` returned.
pub fn with_group<T, F, Fut>(options: FleetOptions, body: F) -> anyhow::Result<T>
where
    T: Send,
    F: FnOnce(Arc<Fleet>) -> Fut + Send,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    with_prepared_group(options, |_| Ok(()), body)
}

/// [`with_group`], with `prepare` run on the fleet before its group starts (to change the world the group's
/// first launches meet).
pub fn with_prepared_group<T, P, F, Fut>(
    options: FleetOptions,
    prepare: P,
    body: F,
) -> anyhow::Result<T>
where
    T: Send,
    P: FnOnce(&Fleet) -> anyhow::Result<()> + Send,
    F: FnOnce(Arc<Fleet>) -> Fut + Send,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    crate::with_fleet(options, |fleet| async move {
        prepare(&fleet)?;
        let fleet = Arc::new(fleet);
        let group = Asg::start(fleet.clone());
        let result = body(fleet).await;
        group.stop().await;
        result
    })
}

/// The running group; stops (without touching the hosts) when stopped or dropped.
pub struct Asg {
    task: tokio::task::JoinHandle<()>,
}

impl Asg {
    /// Starts the group's control loop over `fleet`.
    pub fn start(fleet: Arc<Fleet>) -> Self {
        Self {
            task: tokio::spawn(control_loop(fleet)),
        }
    }

    /// Stops the control loop and waits until it has let go of the fleet.
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

async fn control_loop(fleet: Arc<Fleet>) {
    let groups = group_names(fleet.options());
    let mut changed = fleet.aws().changed();
    // Terminations in progress; dropped (and so aborted) with the loop.
    let mut terminations = tokio::task::JoinSet::new();
    loop {
        let events = fleet.aws().with(|plane| plane.autoscaling.take_events());
        for event in events {
            handle(&fleet, event, &mut terminations);
        }
        while terminations.try_join_next().is_some() {}
        for (az, group) in groups.iter().enumerate() {
            replace_dead(&fleet, group);
            if let Err(error) = fill(&fleet, az, group).await {
                eprintln!("berth-sim: Auto Scaling group {group}: launch failed: {error}");
            }
        }
        let next = fleet.aws().read(|plane| plane.next_deadline());
        let poll = Instant::now() + fleet.options().asg.poll;
        let wake = next.map_or(poll, |at| at.min(poll));
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

fn handle(fleet: &Arc<Fleet>, event: GroupEvent, terminations: &mut tokio::task::JoinSet<()>) {
    match event {
        GroupEvent::InService(_) => {}
        GroupEvent::Terminating(instance_id) => {
            if let Some(host) = host_of(fleet, &instance_id) {
                host.with_imds(|imds| imds.set_lifecycle_state("Terminated"));
            }
        }
        GroupEvent::Terminate { instance_id, cause } => {
            terminations.spawn(terminate(fleet.clone(), instance_id, cause));
        }
    }
}

/// Terminates a member: lets its berth finish (its exit status goes into the history), then kills the host.
async fn terminate(fleet: Arc<Fleet>, instance_id: String, cause: String) {
    let Some(host) = host_of(&fleet, &instance_id) else {
        fleet
            .aws()
            .with(|plane| plane.autoscaling.remove(&instance_id, &cause));
        return;
    };
    let grace = fleet.options().asg.shutdown_grace;
    let exited = match fleet.wait_berth_exit(host.index, grace).await {
        Ok(Some(code)) => format!("berth exited with status {code}"),
        Ok(None) => "berth was not running".to_owned(),
        Err(_) => format!("berth still running after {grace:?}"),
    };
    let held = held_by(&fleet, &instance_id).await;
    let killed = fleet.kill_host(host.index, None).await;
    let outcome = match killed {
        Ok(()) => format!("terminated ({cause}); {exited}; {held}"),
        Err(error) => format!("termination failed ({cause}): {error}; {exited}; {held}"),
    };
    fleet
        .aws()
        .with(|plane| plane.autoscaling.remove(&instance_id, &outcome));
}

/// What the instance still held when it was terminated, as EC2 shows it: "held ENIs [..], volumes [..]".
async fn held_by(fleet: &Fleet, instance_id: &str) -> String {
    match fleet.ec2().attachments().await {
        Ok(attachments) => {
            let mine = |holders: &std::collections::HashMap<String, Option<String>>| {
                let mut ids: Vec<&str> = holders
                    .iter()
                    .filter(|(_, holder)| holder.as_deref() == Some(instance_id))
                    .map(|(id, _)| id.as_str())
                    .collect();
                ids.sort_unstable();
                ids.join(",")
            };
            format!(
                "held ENIs [{}], volumes [{}]",
                mine(&attachments.enis),
                mine(&attachments.volumes)
            )
        }
        Err(error) => format!("attachments unknown: {error}"),
    }
}

/// Members whose host died leave the group (EC2's status checks would say the instance is gone).
fn replace_dead(fleet: &Arc<Fleet>, group: &str) {
    let members = fleet.aws().read(|plane| plane.autoscaling.members(group));
    for member in members {
        let dead = host_of(fleet, &member.instance_id).is_none_or(|host| !host.alive());
        let leaving = member.state == LifecycleState::TerminatingProceed;
        if dead && !leaving {
            fleet.aws().with(|plane| {
                plane.autoscaling.remove(
                    &member.instance_id,
                    "an EC2 health check indicated the instance was terminated",
                )
            });
        }
    }
}

/// Launches hosts until zone `az`'s group has its desired capacity pending or in service.
async fn fill(fleet: &Arc<Fleet>, az: usize, group: &str) -> Result<(), FleetError> {
    let desired = fleet.options().asg.per_zone;
    let zone = layout::zone_name(az);
    loop {
        let members = fleet.aws().read(|plane| plane.autoscaling.members(group));
        if members.iter().filter(|m| counts(m)).count() >= desired {
            return Ok(());
        }
        let index = fleet.prepare_host(az).await?;
        let instance_id = fleet.host(index)?.instance.id.clone();
        // The instance joins the group once its berth has been started (as the instance's user data does at
        // boot), so a member always has a berth to watch; berth's first lifecycle call comes only after its
        // boot's first round trips, long after this.
        fleet.start_berth(index)?;
        fleet.aws().with(|plane| {
            plane
                .autoscaling
                .launch(group, &instance_id, &zone, Instant::now())
        });
    }
}

/// Whether a member counts toward capacity (pending or in service, not leaving).
fn counts(member: &Member) -> bool {
    matches!(
        member.state,
        LifecycleState::PendingWait | LifecycleState::InService
    )
}

/// The live host of an instance.
pub fn host_of(fleet: &Fleet, instance_id: &str) -> Option<Arc<crate::Host>> {
    fleet
        .hosts()
        .into_iter()
        .find(|host| host.instance.id == instance_id && host.alive())
}

/// The members of every group now, in zone order.
pub fn members(fleet: &Fleet) -> Vec<Member> {
    let groups = group_names(fleet.options());
    fleet.aws().read(|plane| {
        groups
            .iter()
            .flat_map(|group| plane.autoscaling.members(group))
            .collect()
    })
}

/// Waits (on the endpoint's changes, not a sleep loop) until `accept` holds for the groups' members, up to
/// `timeout`; returns them.
pub async fn wait_members(
    fleet: &Fleet,
    what: &str,
    timeout: Duration,
    accept: impl Fn(&[Member]) -> bool,
) -> anyhow::Result<Vec<Member>> {
    let mut changed = fleet.aws().changed();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let now = members(fleet);
        if accept(&now) {
            return Ok(now);
        }
        let history = || {
            fleet
                .aws()
                .read(|plane| plane.autoscaling.activities().to_vec())
                .iter()
                .map(|a| a.description.clone())
                .collect::<Vec<_>>()
                .join("\n  ")
        };
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                anyhow::bail!("Auto Scaling group: {what} not reached within {timeout:?}; members {now:?}; history:\n  {}", history())
            }
            _ = changed.changed() => {}
        }
    }
}

/// Waits until the group has launched a replacement of dead host `dead` in its zone; the replacement's instance
/// id and host index.
pub async fn replacement_of(
    fleet: &Fleet,
    dead: &crate::Host,
    timeout: Duration,
) -> anyhow::Result<(String, usize)> {
    let zone = layout::zone_name(dead.az);
    let replacing = |m: &Member| m.availability_zone == zone && m.instance_id != dead.instance.id;
    let members = wait_members(fleet, &format!("a replacement in {zone}"), timeout, |m| {
        m.iter().any(replacing)
    })
    .await?;
    let instance = members
        .into_iter()
        .find(|m| replacing(m))
        .map(|m| m.instance_id)
        .ok_or_else(|| anyhow::anyhow!("no replacement in {zone}"))?;
    let host = host_of(fleet, &instance)
        .ok_or_else(|| anyhow::anyhow!("the replacement {instance} has no live host"))?
        .index;
    Ok((instance, host))
}

/// Waits until every zone's group has its desired capacity in service, up to `timeout`; returns the members.
pub async fn wait_all_in_service(fleet: &Fleet, timeout: Duration) -> anyhow::Result<Vec<Member>> {
    let count = fleet.options().zones * fleet.options().asg.per_zone;
    wait_members(fleet, "every member in service", timeout, |members| {
        members
            .iter()
            .filter(|m| m.state == LifecycleState::InService)
            .count()
            == count
    })
    .await
}

/// The host index of every member in service, in zone order.
pub fn in_service_hosts(fleet: &Fleet) -> Vec<usize> {
    let mut hosts: Vec<(String, usize)> = members(fleet)
        .into_iter()
        .filter(|m| m.state == LifecycleState::InService)
        .filter_map(|m| host_of(fleet, &m.instance_id).map(|h| (m.availability_zone, h.index)))
        .collect();
    hosts.sort();
    hosts.into_iter().map(|(_, index)| index).collect()
}

/// The group's history, oldest first, one line each.
pub fn history(fleet: &Fleet) -> Vec<String> {
    fleet.aws().read(|plane| {
        plane
            .autoscaling
            .activities()
            .iter()
            .map(|activity| activity.description.clone())
            .collect()
    })
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

/// Rolls the fleet as an operator upgrades it: an instance refresh of each zone's group, one group after
/// another (the next starts once the previous is `Successful`), each allowed `per_group`. Returns every
/// group's refresh as DescribeInstanceRefreshes shows it, in zone order.
pub async fn roll(
    fleet: &Fleet,
    settings: RefreshSettings,
    per_group: Duration,
) -> anyhow::Result<Vec<InstanceRefresh>> {
    let mut rolled = Vec::new();
    for group in group_names(fleet.options()) {
        let id = fleet
            .aws()
            .with(|plane| {
                plane
                    .autoscaling
                    .start_instance_refresh(&settings.params(&group), Instant::now())
            })
            .map_err(|error| anyhow::anyhow!("StartInstanceRefresh on {group}: {error}"))?;
        rolled.push(wait_refresh(fleet, &group, &id, per_group).await?);
    }
    Ok(rolled)
}

/// Waits (on the endpoint's changes) until refresh `id` of `group` is `Successful`, up to `timeout`.
async fn wait_refresh(
    fleet: &Fleet,
    group: &str,
    id: &str,
    timeout: Duration,
) -> anyhow::Result<InstanceRefresh> {
    let what = format!("instance refresh {id} of {group} successful");
    let refresh = || {
        fleet.aws().read(|plane| {
            plane
                .autoscaling
                .instance_refreshes(group)
                .into_iter()
                .find(|r| r.id == id)
        })
    };
    wait_members(fleet, &what, timeout, |_| {
        refresh().is_some_and(|r| r.status == RefreshStatus::Successful)
    })
    .await?;
    refresh().ok_or_else(|| anyhow::anyhow!("{what}: the refresh vanished"))
}
