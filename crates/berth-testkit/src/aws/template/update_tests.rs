//! The simulated CloudFormation's rolling update decisions against the shipped template (read from
//! docs/examples/) and copies of it changed where a rule is to be shown. UpdatePolicy attribute reference:
//! <https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-attribute-updatepolicy.html>.

use std::collections::BTreeSet;
use std::time::Duration;

use super::tests::{changed, operator, pseudo, Fake};
use super::update::{
    next_step, policies, rollback_order, updatable, Batch, GroupUpdate, Member, RollingUpdate,
    Step, Tally,
};
use super::{shipped, Stack, Template, TemplateError};
use crate::aws::autoscaling::LifecycleState;

const HOUR: Duration = Duration::from_secs(3600);

fn stack_of(template: &Template) -> Stack {
    template
        .instantiate(&operator(), pseudo())
        .expect("instantiates")
}

fn shipped_stack() -> Stack {
    stack_of(&Template::load(&shipped()).expect("parses"))
}

/// `BrokerGroup0`'s policy in a copy of the shipped template whose `UpdatePolicy` is `update_policy` and whose
/// `MaxSize` is `max_size`.
fn policy0(update_policy: &str, max_size: &str) -> Result<Option<RollingUpdate>, TemplateError> {
    let template = changed(|resources| {
        let group = resources
            .get_mut("BrokerGroup0")
            .and_then(serde_yaml::Value::as_mapping_mut)
            .expect("BrokerGroup0");
        group.insert(
            "UpdatePolicy".into(),
            serde_yaml::from_str(update_policy).expect("YAML"),
        );
        let properties = group
            .get_mut("Properties")
            .and_then(serde_yaml::Value::as_mapping_mut)
            .expect("Properties");
        properties.insert("MaxSize".into(), max_size.into());
    });
    let policies = policies(&stack_of(&template), &Fake)?;
    Ok(policies[0].1)
}

fn refused(update_policy: &str, max_size: &str) -> String {
    match policy0(update_policy, max_size) {
        Err(e) => e.to_string(),
        Ok(policy) => panic!("{update_policy} was accepted as {policy:?}"),
    }
}

fn member(id: &str, state: LifecycleState, updated: bool) -> Member {
    Member {
        instance_id: id.into(),
        state,
        updated,
    }
}

fn old(id: &str) -> Member {
    member(id, LifecycleState::InService, false)
}

fn new(id: &str) -> Member {
    member(id, LifecycleState::InService, true)
}

fn ids(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

fn policy(batch: usize, min_in_service: usize, percent: u32, wait: bool) -> RollingUpdate {
    RollingUpdate {
        max_batch_size: batch,
        min_instances_in_service: min_in_service,
        min_successful_percent: percent,
        pause_time: HOUR,
        wait_on_resource_signals: wait,
    }
}

fn group<'a>(
    desired: usize,
    max_size: usize,
    members: &'a [Member],
    batch: Option<&'a Batch>,
) -> GroupUpdate<'a> {
    GroupUpdate {
        desired,
        max_size,
        members,
        batch,
        settled: Tally::default(),
    }
}

fn batch(launched: &[&str], successes: &[&str], failures: &[&str], elapsed: Duration) -> Batch {
    Batch {
        launched: launched.iter().map(|n| (*n).to_owned()).collect(),
        successes: ids(successes),
        failures: ids(failures),
        elapsed,
    }
}

/// The shipped policy (UpdatePolicy attribute reference, the template's own values) and the DependsOn chain
/// (DependsOn attribute reference: a resource follows the one it depends on) rolled one group at a time.
#[test]
fn the_shipped_template_rolls_one_broker_at_a_time_waiting_an_hour_for_its_signal() {
    let stack = shipped_stack();
    let policies = policies(&stack, &Fake).expect("the shipped policies are modelled");
    let expected = RollingUpdate {
        max_batch_size: 1,
        min_instances_in_service: 0,
        min_successful_percent: 100,
        pause_time: HOUR,
        wait_on_resource_signals: true,
    };
    let groups: Vec<&str> = policies.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(groups, ["BrokerGroup0", "BrokerGroup1", "BrokerGroup2"]);
    assert!(policies.iter().all(|(_, p)| *p == Some(expected)));
    let changed = ids(&groups);
    let (mut complete, mut started) = (BTreeSet::new(), BTreeSet::new());
    let mut order = Vec::new();
    loop {
        let now = updatable(stack.resources(), &changed, &complete, &started);
        if now.is_empty() {
            break;
        }
        assert_eq!(now.len(), 1, "one group at a time, not {now:?}");
        order.push(now[0].to_owned());
        started.insert(now[0].to_owned());
        assert!(
            updatable(stack.resources(), &changed, &complete, &started).is_empty(),
            "nothing starts while {} updates",
            now[0]
        );
        complete.insert(now[0].to_owned());
    }
    assert_eq!(order, groups);
    assert_eq!(
        rollback_order(stack.resources(), "BrokerGroup2", &ids(&groups[..2])),
        ["BrokerGroup2", "BrokerGroup1", "BrokerGroup0"]
    );
}

/// DependsOn attribute reference: a group waits for the ones it depends on only while they are being updated;
/// one the update does not change does not hold it.
#[test]
fn a_group_whose_dependencies_are_unchanged_updates_at_once() {
    let stack = shipped_stack();
    let changed = ids(&["BrokerGroup1", "BrokerGroup2"]);
    let none = BTreeSet::new();
    assert_eq!(
        updatable(stack.resources(), &changed, &none, &none),
        ["BrokerGroup1"]
    );
    assert_eq!(
        updatable(
            stack.resources(),
            &changed,
            &ids(&["BrokerGroup1"]),
            &ids(&["BrokerGroup1"])
        ),
        ["BrokerGroup2"]
    );
}

/// UpdatePolicy attribute reference: MaxBatchSize "Default: 1", MinInstancesInService "Default: 0",
/// MinSuccessfulInstancesPercent "Default: 100", WaitOnResourceSignals "Default: false", PauseTime "PT0S (0
/// seconds). If the WaitOnResourceSignals property is set to true, the default is PT5M."
#[test]
fn an_empty_policy_takes_aws_defaults_and_pause_time_is_five_minutes_when_waiting_on_signals() {
    let plain = policy0("AutoScalingRollingUpdate: {}", "1").expect("accepted");
    assert_eq!(
        plain,
        Some(RollingUpdate {
            max_batch_size: 1,
            min_instances_in_service: 0,
            min_successful_percent: 100,
            pause_time: Duration::ZERO,
            wait_on_resource_signals: false,
        })
    );
    let waiting = policy0(
        "AutoScalingRollingUpdate: {WaitOnResourceSignals: true}",
        "1",
    )
    .expect("accepted")
    .expect("a policy");
    assert_eq!(waiting.pause_time, Duration::from_secs(300));
    assert!(waiting.wait_on_resource_signals);
    let strings = policy0(
        "AutoScalingRollingUpdate: {MaxBatchSize: \"2\", WaitOnResourceSignals: \"true\", PauseTime: PT10M}",
        "3",
    )
    .expect("accepted")
    .expect("a policy");
    assert_eq!(strings.max_batch_size, 2);
    assert_eq!(strings.pause_time, Duration::from_secs(600));
}

/// UpdatePolicy attribute reference, MinInstancesInService: "This value must be less than the MaxSize of the
/// Auto Scaling group."
#[test]
fn min_instances_in_service_not_below_max_size_is_refused() {
    let error = refused("AutoScalingRollingUpdate: {MinInstancesInService: 1}", "1");
    assert!(error.contains("must be less than the MaxSize"), "{error}");
    assert!(policy0("AutoScalingRollingUpdate: {MinInstancesInService: 1}", "2").is_ok());
}

/// UpdatePolicy attribute reference, PauseTime: "The maximum PauseTime is one hour (PT1H)"; and its format,
/// "ISO8601 duration format (in the format PT#H#M#S)".
#[test]
fn a_pause_time_over_an_hour_or_not_iso_8601_is_refused() {
    let error = refused("AutoScalingRollingUpdate: {PauseTime: PT1H1S}", "1");
    assert!(error.contains("maximum PauseTime is one hour"), "{error}");
    let error = refused("AutoScalingRollingUpdate: {PauseTime: 60}", "1");
    assert!(error.contains("PauseTime"), "{error}");
}

/// UpdatePolicy attribute reference, MinSuccessfulInstancesPercent: "You can specify a value from 0 to 100" and
/// "If you specify this property, you must also enable the WaitOnResourceSignals and PauseTime properties."
#[test]
fn min_successful_instances_percent_out_of_range_or_without_signals_is_refused() {
    let error = refused(
        "AutoScalingRollingUpdate: {MinSuccessfulInstancesPercent: 101, WaitOnResourceSignals: true}",
        "1",
    );
    assert!(error.contains("from 0 to 100"), "{error}");
    let error = refused(
        "AutoScalingRollingUpdate: {MinSuccessfulInstancesPercent: 50}",
        "1",
    );
    assert!(error.contains("WaitOnResourceSignals"), "{error}");
}

/// The region refuses what it does not model rather than skipping it (issue #24: "refused loudly, never
/// skipped"): suspended processes, the replacing and scheduled-action policies, unknown keys, an empty batch.
#[test]
fn what_the_region_does_not_model_is_refused() {
    for (policy, what) in [
        (
            "AutoScalingRollingUpdate: {SuspendProcesses: [HealthCheck]}",
            "SuspendProcesses",
        ),
        (
            "AutoScalingReplacingUpdate: {WillReplace: true}",
            "AutoScalingReplacingUpdate",
        ),
        (
            "AutoScalingScheduledAction: {IgnoreUnmodifiedGroupSizeProperties: true}",
            "AutoScalingScheduledAction",
        ),
        (
            "AutoScalingRollingUpdate: {MinActiveInstancesPercent: 50}",
            "MinActiveInstancesPercent",
        ),
        (
            "AutoScalingRollingUpdate: {MaxBatchSize: 0}",
            "MaxBatchSize",
        ),
    ] {
        let error = policy0(policy, "1").expect_err(policy);
        assert!(
            matches!(&error, TemplateError::Unenforced { logical_id, what: w }
                if logical_id == "BrokerGroup0" && w.contains(what)),
            "{policy}: {error}"
        );
    }
    assert_eq!(
        policy0("AutoScalingRollingUpdate: {SuspendProcesses: []}", "1").map(|p| p.is_some()),
        Ok(true)
    );
}

/// A group of one at MaxSize (the shipped groups): MinInstancesInService 0 lets the old instance go first, since
/// the group has no room for its replacement; the batch waits for the new instance's signal ("CloudFormation must
/// receive a signal from each new instance within the specified PauseTime before continuing the update").
#[test]
fn a_full_group_of_one_terminates_first_then_launches_and_waits_for_the_signal() {
    let shipped = policy(1, 0, 100, true);
    assert_eq!(
        next_step(&shipped, &group(1, 1, &[old("i-old")], None)),
        Step::Terminate(vec!["i-old".into()])
    );
    let leaving = [member("i-old", LifecycleState::TerminatingWait, false)];
    assert!(matches!(
        next_step(&shipped, &group(1, 1, &leaving, None)),
        Step::Wait(why) if why.contains("i-old") && why.contains("Terminating:Wait")
    ));
    assert_eq!(
        next_step(&shipped, &group(1, 1, &[], None)),
        Step::Launch(1)
    );
    let pending = [member("i-new", LifecycleState::PendingWait, true)];
    let waiting = batch(&["i-new"], &[], &[], Duration::from_secs(59 * 60));
    assert!(matches!(
        next_step(&shipped, &group(1, 1, &pending, Some(&waiting))),
        Step::Wait(why) if why.contains("0 of 1 SUCCESS signals")
    ));
    let signalled = batch(&["i-new"], &["i-new"], &[], Duration::from_secs(600));
    let in_service = [new("i-new")];
    assert_eq!(
        next_step(&shipped, &group(1, 1, &in_service, Some(&signalled))),
        Step::Settle(Tally {
            successes: 1,
            failures: 0
        })
    );
    let mut done = group(1, 1, &in_service, None);
    done.settled = Tally {
        successes: 1,
        failures: 0,
    };
    assert_eq!(next_step(&shipped, &done), Step::Complete);
}

/// MaxBatchSize: "the maximum number of instances that CloudFormation updates"; MinInstancesInService: "the
/// minimum number of instances that must be in service within the Auto Scaling group while CloudFormation
/// updates old instances".
#[test]
fn a_batch_is_at_most_max_batch_size_and_keeps_min_instances_in_service() {
    let members = [old("i-1"), old("i-2"), old("i-3"), old("i-4")];
    assert_eq!(
        next_step(&policy(3, 2, 100, true), &group(4, 4, &members, None)),
        Step::Terminate(vec!["i-1".into(), "i-2".into()])
    );
    assert_eq!(
        next_step(&policy(1, 0, 100, true), &group(4, 4, &members, None)),
        Step::Terminate(vec!["i-1".into()])
    );
    let one_out = [
        old("i-1"),
        old("i-2"),
        member("i-3", LifecycleState::PendingWait, true),
    ];
    assert!(matches!(
        next_step(&policy(1, 2, 100, true), &group(3, 3, &one_out, None)),
        Step::Wait(why) if why.contains("MinInstancesInService (2)")
    ));
}

/// MaxBatchSize: a batch the group terminated first is replaced whole once its instances are gone, not one
/// instance at a time.
#[test]
fn a_terminated_batch_is_replaced_whole() {
    let rolling = policy(2, 0, 100, true);
    let members = [old("i-1"), old("i-2"), old("i-3")];
    assert_eq!(
        next_step(&rolling, &group(3, 3, &members, None)),
        Step::Terminate(vec!["i-1".into(), "i-2".into()])
    );
    assert_eq!(
        next_step(&rolling, &group(3, 3, &[old("i-3")], None)),
        Step::Launch(2)
    );
}

/// MinInstancesInService with room under MaxSize: the batch launches first, and the old instances it replaces
/// leave once it settled, never taking the group below MinInstancesInService.
#[test]
fn a_group_with_room_launches_the_batch_first_then_terminates_what_it_replaced() {
    let rolling = policy(1, 2, 100, true);
    let members = [old("i-1"), old("i-2")];
    assert_eq!(
        next_step(&rolling, &group(2, 3, &members, None)),
        Step::Launch(1)
    );
    let after = [old("i-1"), old("i-2"), new("i-3")];
    let mut settled = group(2, 3, &after, None);
    settled.settled = Tally {
        successes: 1,
        failures: 0,
    };
    assert_eq!(
        next_step(&rolling, &settled),
        Step::Terminate(vec!["i-1".into()])
    );
}

/// A FAILURE signal fails the update (CreationPolicy and UpdatePolicy: a failure signal fails the resource);
/// CloudFormation's reason names the instance ("Received FAILURE signal with UniqueId i-…").
#[test]
fn a_failure_signal_rolls_the_group_back() {
    let members = [member("i-new", LifecycleState::InService, true)];
    let failed = batch(&["i-new"], &[], &["i-new"], Duration::from_secs(60));
    assert_eq!(
        next_step(
            &policy(1, 0, 100, true),
            &group(1, 1, &members, Some(&failed))
        ),
        Step::RollBack("Received FAILURE signal with UniqueId i-new".into())
    );
}

/// PauseTime with WaitOnResourceSignals: "If the PauseTime is exceeded before the Auto Scaling group receives
/// the required number of signals, the update fails", with CloudFormation's texts for the timeout and the
/// unsatisfied percentage.
#[test]
fn pause_time_passing_without_the_signal_rolls_the_group_back() {
    let members = [member("i-new", LifecycleState::PendingWait, true)];
    let silent = batch(&["i-new"], &[], &[], HOUR);
    assert_eq!(
        next_step(
            &policy(1, 0, 100, true),
            &group(1, 1, &members, Some(&silent))
        ),
        Step::RollBack(
            "Failed to receive 1 resource signal(s) for the current batch. Each resource signal timeout is \
             counted as a FAILURE. Received 0 SUCCESS signal(s) out of 1. Unable to satisfy 100% \
             MinSuccessfulInstancesPercent requirement"
                .into()
        )
    );
}

/// MinSuccessfulInstancesPercent: "if you update five instances with a minimum successful percentage of 50,
/// three instances must signal success. If an instance doesn't send a signal within the time specified in the
/// PauseTime property, CloudFormation assumes that the instance wasn't updated."
#[test]
fn min_successful_instances_percent_tolerates_the_failures_it_allows() {
    let half = policy(1, 0, 50, true);
    let members = [
        member("i-6", LifecycleState::PendingWait, true),
        old("i-2"),
        old("i-3"),
        old("i-4"),
        old("i-5"),
    ];
    let silent = batch(&["i-6"], &[], &[], HOUR);
    let mut update = group(5, 5, &members, Some(&silent));
    update.settled = Tally {
        successes: 0,
        failures: 1,
    };
    assert_eq!(
        next_step(&half, &update),
        Step::Settle(Tally {
            successes: 0,
            failures: 1
        })
    );
    update.settled.failures = 2;
    assert!(matches!(
        next_step(&half, &update),
        Step::RollBack(why) if why.ends_with("Received 0 SUCCESS signal(s) out of 5. Unable to satisfy 50% MinSuccessfulInstancesPercent requirement")
    ));
    let failed = batch(&["i-6"], &[], &["i-6"], Duration::from_secs(1));
    update.batch = Some(&failed);
    update.settled.failures = 1;
    assert!(matches!(next_step(&half, &update), Step::Settle(t) if t.failures == 1));
}

/// PauseTime without WaitOnResourceSignals: "The amount of time that CloudFormation pauses after making a
/// change to a batch of instances".
#[test]
fn without_signals_a_batch_settles_once_pause_time_passed() {
    let members = [new("i-new")];
    let paused = batch(&["i-new"], &[], &[], Duration::from_secs(59 * 60));
    let rolling = policy(1, 0, 100, false);
    assert!(matches!(
        next_step(&rolling, &group(1, 1, &members, Some(&paused))),
        Step::Wait(why) if why.contains("PauseTime")
    ));
    let passed = batch(&["i-new"], &[], &[], HOUR);
    assert_eq!(
        next_step(&rolling, &group(1, 1, &members, Some(&passed))),
        Step::Settle(Tally::default())
    );
}

/// A rollback is the same rolling update back to the previous version ("CloudFormation rolls back the stack
/// with the same settings, including the same PauseTime value", AWS Knowledge Center): instances of the version
/// rolled back to count as updated.
#[test]
fn a_rollback_rolls_the_group_back_under_the_same_policy() {
    let shipped = policy(1, 0, 100, true);
    let failed_new = [member("i-new", LifecycleState::InService, false)];
    assert_eq!(
        next_step(&shipped, &group(1, 1, &failed_new, None)),
        Step::Terminate(vec!["i-new".into()])
    );
}
