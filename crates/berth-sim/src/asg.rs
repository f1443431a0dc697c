//! The fleet's Auto Scaling groups: the simulated groups of the test kit
//! ([`berth_testkit::aws::autoscaling::group`], the model and the control plane that acts on it) launching and
//! terminating this fleet's hosts. A host launched by a group is an instance in moto, a namespace, IMDS and a
//! systemd container with berth started; a host terminated by it is given `shutdown_grace` for its berth to exit
//! on its own (its exit status and what EC2 says it still held go into the group's history), then killed.

use std::sync::Arc;
use std::time::Duration;

use berth_testkit::aws::autoscaling::group::{self, Ended, GroupPlan, Groups, Instances};
pub use berth_testkit::aws::autoscaling::group::{
    controller_group_name, creation_policy, group_name, group_spec, stack_name, Asg, AsgOptions,
    RefreshSettings, LAUNCH_HOOK, STACK_RESOURCE, TERMINATE_HOOK,
};
use berth_testkit::aws::autoscaling::{InstanceRefresh, LifecycleState, Member};
use berth_testkit::aws::AwsEndpoint;

use crate::fleet::{Fleet, FleetOptions, HostRole};
use crate::layout;

/// Every group of a fleet, in creation order.
pub fn group_names(options: &FleetOptions) -> Vec<String> {
    groups(options).names()
}

/// A fleet's groups as its stack creates them: one per zone, each launching `asg.stagger` after the previous
/// one's first launch; with dedicated controllers, a controller group in each zone that has controller ids (so
/// staggered), then, with the last of them, a broker group in each zone that has broker ids (a broker needs a
/// quorum to register with).
pub fn groups(options: &FleetOptions) -> Groups {
    let mut plans = Vec::new();
    let stagger = options.asg.stagger;
    if options.controllers == 0 {
        for az in 0..options.zones {
            plans.push(GroupPlan {
                after_previous: stagger,
                ..GroupPlan::new(group_name(&options.cluster, az), az, options.asg.per_zone)
            });
        }
    } else {
        let in_zone = |ids: &[u32], az: usize| {
            ids.iter()
                .filter(|id| layout::zone_of_id(**id, options.zones) == az)
                .count()
        };
        let controllers = options.controller_ids();
        for az in (0..options.zones).filter(|az| in_zone(&controllers, *az) > 0) {
            plans.push(GroupPlan {
                after_previous: stagger,
                ..GroupPlan::new(
                    controller_group_name(&options.cluster, az),
                    az,
                    in_zone(&controllers, az),
                )
            });
        }
        let brokers = options.broker_ids();
        for az in (0..options.zones).filter(|az| in_zone(&brokers, *az) > 0) {
            plans.push(GroupPlan::new(
                group_name(&options.cluster, az),
                az,
                in_zone(&brokers, az),
            ));
        }
    }
    Groups {
        cluster: options.cluster.clone(),
        zones: (0..options.zones).map(layout::zone_name).collect(),
        brokers: options.brokers,
        options: options.asg.clone(),
        plans,
    }
}

/// A fleet's groups as the stack of the template at `template` creates them
/// ([`berth_testkit::aws::template::creation`]): its `AWS::AutoScaling::AutoScalingGroup` resources in their
/// `DependsOn` order, each in the zone of its subnet, with the template's hooks, grace periods and CreationPolicy.
pub fn stack_groups(
    options: &FleetOptions,
    template: &std::path::Path,
) -> Result<Groups, berth_testkit::aws::template::TemplateError> {
    let declared = crate::stack::template_groups(template, &options.cluster, options.zones)?;
    let stack: Vec<_> = declared.iter().map(|(group, _)| group.clone()).collect();
    Ok(Groups {
        plans: declared
            .iter()
            .map(|(group, az)| group.plan(*az, &stack))
            .collect(),
        ..groups(options)
    })
}

/// The group a host of `role` in zone `az` belongs to.
pub fn group_of(options: &FleetOptions, role: HostRole, az: usize) -> String {
    match role {
        HostRole::Controller => controller_group_name(&options.cluster, az),
        HostRole::Combined | HostRole::Broker => group_name(&options.cluster, az),
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

#[async_trait::async_trait]
impl Instances for Fleet {
    fn endpoint(&self) -> &AwsEndpoint {
        self.aws()
    }

    fn groups(&self) -> &Groups {
        self.asg_groups()
    }

    fn alive(&self, instance_id: &str) -> bool {
        host_of(self, instance_id).is_some()
    }

    async fn launch(
        &self,
        plan: &GroupPlan,
    ) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
        if self.launches_held(plan.az) {
            return Err(format!(
                "InsufficientInstanceCapacity: no capacity in {} (held by the test)",
                layout::zone_name(plan.az)
            )
            .into());
        }
        let controllers = controller_group_name(&self.options().cluster, plan.az);
        let role = if plan.name == controllers {
            HostRole::Controller
        } else {
            self.options().default_role()
        };
        let index = self.prepare_host_as(plan.az, role).await?;
        let host = self.host(index)?;
        if let Some(declared) = &plan.declared {
            // The tags Auto Scaling and CloudFormation put on a stack's instances, which berth reads.
            let stack = stack_name(&self.options().cluster);
            host.with_imds(|imds| {
                for (key, value) in [
                    ("aws:cloudformation:stack-name", stack.as_str()),
                    (
                        "aws:cloudformation:logical-id",
                        declared.logical_id.as_str(),
                    ),
                    ("aws:autoscaling:groupName", plan.name.as_str()),
                ] {
                    imds.set(&format!("tags/instance/{key}"), value);
                }
            });
        }
        Ok(host.instance.id.clone())
    }

    async fn start(
        &self,
        plan: &GroupPlan,
        instance_id: &str,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let host = host_of(self, instance_id).ok_or_else(|| format!("{instance_id}: no host"))?;
        if plan.declared.is_none() {
            self.start_berth(host.index)?;
            return Ok(());
        }
        // A stack's instance boots its launch template's user data, run by cloud-init. A script that fails
        // leaves the instance running, as on EC2: its group's launch hook times out.
        let version = self
            .launch_version(&plan.name)
            .await?
            .ok_or("a stack fleet without a launch template")?;
        self.record_instance_version(instance_id, &version.number);
        let run = self.boot_with_user_data(host.index, version.user_data.as_deref())?;
        if run.failed() {
            eprintln!(
                "berth-sim: {instance_id}: its user data failed: {}",
                run.errors.join("; ")
            );
        }
        Ok(())
    }

    fn mark_terminating(&self, instance_id: &str) {
        if let Some(host) = host_of(self, instance_id) {
            host.with_imds(|imds| imds.set_lifecycle_state("Terminated"));
        }
    }

    fn mark_spot_interrupted(&self, instance_id: &str, notice: &str) {
        if let Some(host) = host_of(self, instance_id) {
            host.with_imds(|imds| imds.set_spot_action(notice));
        }
    }

    async fn terminate(&self, instance_id: &str, grace: Duration) -> Ended {
        let Some(host) = host_of(self, instance_id) else {
            return Ended {
                killed: Err("no live host".into()),
                notes: String::new(),
            };
        };
        let exited = match self.wait_berth_exit(host.index, grace).await {
            Ok(Some(code)) => format!("berth exited with status {code}"),
            Ok(None) => "berth was not running".to_owned(),
            Err(_) => format!("berth still running after {grace:?}"),
        };
        let held = held_by(self, instance_id).await;
        Ended {
            killed: self
                .kill_host(host.index, None)
                .await
                .map_err(|error| error.to_string()),
            notes: format!("{exited}; {held}"),
        }
    }
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

/// The live host of an instance.
pub fn host_of(fleet: &Fleet, instance_id: &str) -> Option<Arc<crate::Host>> {
    fleet
        .hosts()
        .into_iter()
        .find(|host| host.instance.id == instance_id && host.alive())
}

/// The members of every group now, in zone order.
pub fn members(fleet: &Fleet) -> Vec<Member> {
    fleet.asg_groups().members(fleet.aws())
}

/// Waits (on the endpoint's changes, not a sleep loop) until `accept` holds for the groups' members, up to
/// `timeout`; returns them.
pub async fn wait_members(
    fleet: &Fleet,
    what: &str,
    timeout: Duration,
    accept: impl Fn(&[Member]) -> bool,
) -> anyhow::Result<Vec<Member>> {
    Ok(group::wait_members(fleet.aws(), fleet.asg_groups(), what, timeout, accept).await?)
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
    Ok(group::wait_all_in_service(fleet.aws(), fleet.asg_groups(), timeout).await?)
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

/// The groups' history, oldest first, one line each.
pub fn history(fleet: &Fleet) -> Vec<String> {
    group::history(fleet.aws())
}

/// Rolls the fleet as an operator upgrades it ([`group::roll`]): an instance refresh of each zone's group, one
/// after another, each allowed `per_group`; every group's refresh, in zone order.
pub async fn roll(
    fleet: &Fleet,
    settings: RefreshSettings,
    per_group: Duration,
) -> anyhow::Result<Vec<InstanceRefresh>> {
    Ok(group::roll(fleet.aws(), fleet.asg_groups(), settings, per_group).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voters_groups_start_a_stagger_apart_and_brokers_with_the_last_controller() {
        let stagger = Duration::from_secs(60);
        let combined = FleetOptions {
            asg: AsgOptions {
                stagger,
                ..AsgOptions::default()
            },
            ..FleetOptions::default()
        };
        let plans: Vec<(String, usize, u64)> = groups(&combined)
            .plans
            .into_iter()
            .map(|p| (p.name, p.desired, p.after_previous.as_secs()))
            .collect();
        assert_eq!(
            plans,
            [
                ("sim-broker-0".into(), 1, 60),
                ("sim-broker-1".into(), 1, 60),
                ("sim-broker-2".into(), 1, 60)
            ]
        );
        let dedicated = FleetOptions {
            brokers: 5,
            controllers: 3,
            ..combined
        };
        let groups = groups(&dedicated);
        let plans: Vec<(String, usize, u64)> = groups
            .plans
            .iter()
            .map(|p| (p.name.clone(), p.desired, p.after_previous.as_secs()))
            .collect();
        assert_eq!(
            plans,
            [
                ("sim-controller-0".into(), 1, 60),
                ("sim-controller-1".into(), 1, 60),
                ("sim-controller-2".into(), 1, 60),
                ("sim-broker-0".into(), 1, 0),
                ("sim-broker-1".into(), 1, 0)
            ]
        );
        assert_eq!(groups.capacity(), 5);
        assert_eq!(
            group_of(&dedicated, HostRole::Controller, 2),
            "sim-controller-2"
        );
    }
}
