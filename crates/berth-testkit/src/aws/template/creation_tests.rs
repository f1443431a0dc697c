//! The simulated CloudFormation's creation decisions against the shipped template (read from docs/examples/) and
//! copies of it changed where a rule is to be shown.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::creation::{
    groups, holds_first_launches, iso8601_duration, startable, GroupDeclaration,
};
use super::tests::{changed, operator, pseudo, Fake};
use super::{shipped, Stack, Template, TemplateError};
use crate::aws::autoscaling::{Hook, HookResult, Transition};
use crate::aws::cloudformation::{ResourceSignal, Stacks, Status};
use crate::aws::query::Params;

fn stack_of(template: &Template) -> Stack {
    template
        .instantiate(&operator(), pseudo())
        .expect("instantiates")
}

fn shipped_groups() -> (Stack, Vec<GroupDeclaration>) {
    let stack = stack_of(&Template::load(&shipped()).expect("parses"));
    let groups = groups(&stack, &Fake).expect("the shipped groups are modelled");
    (stack, groups)
}

/// The first group's declaration in a copy of the shipped template whose `BrokerGroup0` is changed by `change`.
fn group0_changed(change: impl FnOnce(&mut serde_yaml::Mapping)) -> Result<(), TemplateError> {
    let template = changed(|resources| {
        let group = resources
            .get_mut("BrokerGroup0")
            .and_then(serde_yaml::Value::as_mapping_mut)
            .expect("BrokerGroup0");
        change(group);
    });
    groups(&stack_of(&template), &Fake).map(drop)
}

fn properties(group: &mut serde_yaml::Mapping) -> &mut serde_yaml::Mapping {
    group
        .get_mut("Properties")
        .and_then(serde_yaml::Value::as_mapping_mut)
        .expect("Properties")
}

fn yaml(text: &str) -> serde_yaml::Value {
    serde_yaml::from_str(text).expect("YAML")
}

#[test]
fn the_shipped_templates_groups_are_read_as_cloudformation_creates_them() {
    let (_, groups) = shipped_groups();
    let ids: Vec<&str> = groups.iter().map(|g| g.logical_id.as_str()).collect();
    assert_eq!(ids, ["BrokerGroup0", "BrokerGroup1", "BrokerGroup2"]);
    for (n, group) in groups.iter().enumerate() {
        assert_eq!(group.spec.name, format!("events-broker-{n}"));
        assert_eq!(group.desired, 1);
        assert_eq!(group.subnets, [["subnet-a", "subnet-b", "subnet-c"][n]]);
        assert_eq!(
            group.spec.health_check_grace_period,
            Duration::from_secs(900)
        );
        let hook = |h: &Hook| {
            (
                h.name.clone(),
                h.transition,
                h.heartbeat_timeout.as_secs(),
                h.default_result,
            )
        };
        let at_creation: Vec<_> = group.spec.hooks.iter().map(hook).collect();
        assert_eq!(
            at_creation,
            [(
                "berth-terminate".to_owned(),
                Transition::Terminating,
                600,
                HookResult::Continue
            )]
        );
        let later: Vec<_> = group
            .later_hooks
            .iter()
            .map(|(id, h)| (id.clone(), hook(h)))
            .collect();
        assert_eq!(
            later,
            [(
                format!("BrokerLaunchHook{n}"),
                (
                    "berth-launch".to_owned(),
                    Transition::Launching,
                    600,
                    HookResult::Abandon
                )
            )]
        );
    }
    assert_eq!(groups[0].creation_signal, None);
    assert_eq!(groups[1].creation_signal, None);
    assert_eq!(
        groups[2].creation_signal,
        Some(ResourceSignal {
            count: 1,
            timeout: Duration::from_secs(2 * 3600)
        })
    );
    assert!(groups[1].depends_on.contains("BrokerGroup0"));
    assert!(groups[2].depends_on.contains("BrokerGroup1"));
}

#[test]
fn a_group_is_complete_once_its_desired_capacity_is_in_service_and_its_signals_arrived() {
    let (_, groups) = shipped_groups();
    let (plain, signalled) = (&groups[0], &groups[2]);
    let now = Instant::now();
    let ids: Vec<&str> = groups.iter().map(|g| g.logical_id.as_str()).collect();
    let stack = |stacks: &mut Stacks| {
        stacks.create_declared("s", &ids, now);
        for group in [plain, signalled] {
            stacks
                .start_group("s", &group.logical_id, group.creation_signal, now)
                .expect("starts");
        }
    };
    let status =
        |stacks: &Stacks, group: &GroupDeclaration| stacks.resource_status("s", &group.logical_id);
    let signal = |unique_id: &str, outcome: &str| {
        Params::from_pairs(&[
            ("StackName", "s"),
            ("LogicalResourceId", signalled.logical_id.as_str()),
            ("UniqueId", unique_id),
            ("Status", outcome),
        ])
    };
    let mut stacks = Stacks::new("us-east-1");
    stack(&mut stacks);
    assert_eq!(
        status(&stacks, plain),
        Some(Status::CreateInProgress),
        "Pending:Wait"
    );
    stacks.capacity_reached("s", &plain.logical_id);
    assert_eq!(status(&stacks, plain), Some(Status::CreateComplete));
    stacks.capacity_reached("s", &signalled.logical_id);
    assert_eq!(
        status(&stacks, signalled),
        Some(Status::CreateInProgress),
        "InService, and 0 of 1 SUCCESS signals"
    );
    stacks.signal(&signal("i-2", "SUCCESS"), now).unwrap();
    assert_eq!(status(&stacks, signalled), Some(Status::CreateComplete));
    let mut failed = Stacks::new("us-east-1");
    stack(&mut failed);
    failed.signal(&signal("i-2", "FAILURE"), now).unwrap();
    assert_eq!(status(&failed, signalled), Some(Status::CreateFailed));
    assert_eq!(failed.status("s"), Some(Status::CreateFailed));
    let mut late = Stacks::new("us-east-1");
    stack(&mut late);
    late.capacity_reached("s", &signalled.logical_id);
    late.expire(now + Duration::from_secs(2 * 3600));
    assert_eq!(
        status(&late, signalled),
        Some(Status::CreateFailed),
        "the shipped CreationPolicy's PT2H passed without the signal"
    );
}

#[test]
fn resources_start_once_everything_they_depend_on_is_complete() {
    let (stack, _) = shipped_groups();
    let resources = stack.resources();
    let none = BTreeSet::new();
    let first = startable(resources, &none, &none);
    assert!(first.contains(&"BrokerSecurityGroup") && first.contains(&"Volume0"));
    assert!(!first
        .iter()
        .any(|id| id.starts_with("BrokerGroup") || *id == "Eni0"));
    let mut complete: BTreeSet<String> = resources
        .iter()
        .map(|r| r.logical_id.clone())
        .filter(|id| !id.starts_with("BrokerGroup"))
        .collect();
    assert_eq!(startable(resources, &complete, &complete), ["BrokerGroup0"]);
    let mut started = complete.clone();
    started.insert("BrokerGroup0".into());
    assert!(startable(resources, &complete, &started).is_empty());
    complete.insert("BrokerGroup0".into());
    assert_eq!(startable(resources, &complete, &started), ["BrokerGroup1"]);
}

/// The shipped template's creation order read strictly cannot deadlock on its KRaft defaults: group 1 is created
/// only once group 0's instance is InService, and a KRaft broker whose controllers are the three brokers cannot be
/// Healthy (so cannot CONTINUE a launch hook) while it runs alone. No group's launch hook holds its first
/// instances (the hooks are resources added after their groups), so each group's first instance is InService at
/// launch and the next group is created; a group whose hook were in its LifecycleHookSpecificationList would hold
/// its first instance in Pending:Wait, and the next group would never be created.
#[test]
fn the_shipped_templates_groups_are_created_without_waiting_for_a_broker() {
    let (stack, groups) = shipped_groups();
    assert!(groups.iter().all(|g| !holds_first_launches(g)));
    let resources = stack.resources();
    let mut complete: BTreeSet<String> = resources
        .iter()
        .map(|r| r.logical_id.clone())
        .filter(|id| !id.starts_with("Broker") || id == "BrokerSecurityGroup")
        .collect();
    complete.extend(
        [
            "BrokerRole",
            "BrokerInstanceProfile",
            "BrokerLaunchTemplate",
        ]
        .map(String::from),
    );
    complete.extend(
        resources
            .iter()
            .filter(|r| r.logical_id.starts_with("BrokerToBroker"))
            .map(|r| r.logical_id.clone()),
    );
    let mut started = complete.clone();
    let mut stacks = Stacks::new("us-east-1");
    let ids: Vec<&str> = groups.iter().map(|g| g.logical_id.as_str()).collect();
    stacks.create_declared("s", &ids, Instant::now());
    for (n, group) in groups.iter().enumerate() {
        assert_eq!(
            startable(resources, &complete, &started),
            [group.logical_id.as_str()],
            "group {n} next"
        );
        started.insert(group.logical_id.clone());
        let id = &group.logical_id;
        stacks
            .start_group("s", id, group.creation_signal, Instant::now())
            .expect("starts");
        // Its first instance, not held by a hook, is InService at launch.
        stacks.capacity_reached("s", id);
        if group.creation_signal.is_none() {
            assert_eq!(
                stacks.resource_status("s", id),
                Some(Status::CreateComplete)
            );
            complete.insert(group.logical_id.clone());
            for (hook, _) in &group.later_hooks {
                complete.insert(hook.clone());
                started.insert(hook.clone());
            }
        }
    }
    let mut held = groups[0].clone();
    held.spec
        .hooks
        .extend(held.later_hooks.iter().map(|(_, h)| h.clone()));
    assert!(holds_first_launches(&held));
}

#[test]
fn what_the_region_cannot_play_or_aws_refuses_is_refused() {
    let unenforced = |what: &str| {
        Err(TemplateError::Unenforced {
            logical_id: "BrokerGroup0".into(),
            what: what.into(),
        })
    };
    assert_eq!(
        group0_changed(|g| {
            properties(g).insert("MixedInstancesPolicy".into(), yaml("{}"));
        }),
        unenforced("property MixedInstancesPolicy")
    );
    assert_eq!(
        group0_changed(|g| {
            properties(g).insert("CapacityRebalance".into(), yaml("true"));
        }),
        unenforced("CapacityRebalance true (the region does not rebalance Spot capacity)")
    );
    assert_eq!(
        group0_changed(|g| {
            properties(g).insert("HealthCheckType".into(), yaml("ELB"));
        }),
        unenforced("HealthCheckType ELB (only EC2)")
    );
    assert!(matches!(
        group0_changed(|g| {
            properties(g).insert("InstanceMaintenancePolicy".into(), yaml("{MinHealthyPercentage: 100, MaxHealthyPercentage: 200}"));
        }),
        Err(TemplateError::Unenforced { what, .. }) if what.starts_with("InstanceMaintenancePolicy")
    ));
    assert_eq!(
        group0_changed(|g| {
            properties(g).insert("DesiredCapacity".into(), yaml("\"2\""));
        }),
        Err(TemplateError::Intrinsic(
            "BrokerGroup0: Desired capacity:2 must be between the specified min size:1 and max size:1".into()
        ))
    );
    assert!(matches!(
        group0_changed(|g| {
            g.insert("CreationPolicy".into(), yaml("{ResourceSignal: {Count: 1, Timeout: PT13H}}"));
        }),
        Err(TemplateError::Intrinsic(why)) if why.contains("12 hours")
    ));
    assert_eq!(
        group0_changed(|g| {
            g.insert(
                "CreationPolicy".into(),
                yaml("{AutoScalingCreationPolicy: {MinSuccessfulInstancesPercent: 50}}"),
            );
        }),
        unenforced("CreationPolicy AutoScalingCreationPolicy")
    );
    let hook = |extra: &str| {
        group0_changed(|g| {
            let hook = yaml(&format!(
                "{{LifecycleHookName: h, LifecycleTransition: 'autoscaling:EC2_INSTANCE_LAUNCHING', {extra}}}"
            ));
            properties(g).insert(
                "LifecycleHookSpecificationList".into(),
                serde_yaml::Value::Sequence(vec![hook]),
            );
        })
    };
    assert_eq!(
        hook("NotificationTargetARN: arn:aws:sns:x"),
        unenforced("lifecycle hook NotificationTargetARN")
    );
    assert!(
        matches!(hook("HeartbeatTimeout: 10"), Err(TemplateError::Intrinsic(why)) if why.contains("30..7200"))
    );
    assert!(
        matches!(hook("DefaultResult: MAYBE"), Err(TemplateError::Intrinsic(why)) if why.contains("CONTINUE or ABANDON"))
    );
    assert_eq!(hook("DefaultResult: CONTINUE"), Ok(()));
}

#[test]
fn policy_durations_are_read_as_iso_8601() {
    assert_eq!(iso8601_duration("PT2H"), Some(Duration::from_secs(7200)));
    assert_eq!(iso8601_duration("PT1H30M"), Some(Duration::from_secs(5400)));
    assert_eq!(iso8601_duration("PT5M10S"), Some(Duration::from_secs(310)));
    assert_eq!(iso8601_duration("PT"), None);
    assert_eq!(iso8601_duration("P1D"), None);
    assert_eq!(iso8601_duration("PT5X"), None);
}
