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

fn terminate_heartbeat(instance: &str) -> Params {
    Params::from_pairs(&[
        ("AutoScalingGroupName", GROUP),
        ("LifecycleHookName", "terminate"),
        ("InstanceId", instance),
    ])
}

/// i-1 in service, then interrupted with AWS's two minutes' notice; the group, the interruption's instant and
/// when EC2 reclaims it.
fn interrupted_in_service() -> (AutoScaling, Instant, Instant) {
    let (mut asg, launched) = launched_one(HookResult::Abandon);
    asg.complete_lifecycle_action(&complete("i-1", "launch", "CONTINUE"), launched)
        .unwrap();
    asg.take_events();
    let now = launched + Duration::from_secs(600);
    let reclaim = asg
        .interrupt_spot("i-1", Duration::from_secs(120), now)
        .unwrap();
    (asg, now, reclaim)
}

#[test]
fn a_spot_interruption_terminates_through_the_hook_which_cannot_outlast_the_notice() {
    let (mut asg, now, reclaim) = interrupted_in_service();
    assert_eq!(reclaim, now + Duration::from_secs(120));
    let events = asg.take_events();
    assert!(
        matches!(&events[..], [GroupEvent::SpotInterruption { instance_id, notice }, GroupEvent::Terminating(leaving)]
            if instance_id == "i-1" && notice.starts_with(r#"{"action": "terminate", "time": ""#) && leaving == "i-1"),
        "the notice in IMDS, then the terminate action: {events:?}"
    );
    assert_eq!(
        asg.member("i-1").unwrap().state,
        LifecycleState::TerminatingWait
    );
    assert_eq!(asg.target_lifecycle_state("i-1"), Some("Terminated"));
    // Heartbeats push the hook's own timeout past the notice, yet EC2 reclaims the instance at its time.
    for after in [50, 100] {
        asg.record_heartbeat(
            &terminate_heartbeat("i-1"),
            now + Duration::from_secs(after),
        )
        .unwrap();
    }
    assert_eq!(
        asg.next_deadline(),
        Some(reclaim),
        "the reclaim comes first"
    );
    asg.advance(reclaim - Duration::from_millis(1));
    assert_eq!(
        asg.member("i-1").unwrap().state,
        LifecycleState::TerminatingWait
    );
    asg.advance(reclaim);
    assert_eq!(
        asg.member("i-1").unwrap().state,
        LifecycleState::TerminatingProceed
    );
    assert_eq!(asg.take_events(), vec![GroupEvent::Reclaimed("i-1".into())]);
    assert!(asg
        .activities()
        .iter()
        .any(|a| a.description
            == "EC2 reclaimed Spot Instance i-1 (its lifecycle action still pending)"));
    let late = asg
        .complete_lifecycle_action(&complete("i-1", "terminate", "CONTINUE"), reclaim)
        .unwrap_err();
    assert_eq!(
        late.message,
        "No active Lifecycle Action found with instance ID i-1"
    );
    assert_eq!(asg.next_deadline(), None);
}

#[test]
fn a_spot_instance_whose_terminate_hook_is_completed_in_time_is_terminated_by_the_group() {
    let (mut asg, now, reclaim) = interrupted_in_service();
    asg.take_events();
    asg.complete_lifecycle_action(
        &complete("i-1", "terminate", "CONTINUE"),
        now + Duration::from_secs(20),
    )
    .unwrap();
    asg.advance(reclaim + Duration::from_secs(1));
    let events = asg.take_events();
    assert!(
        matches!(&events[..], [GroupEvent::Terminate { instance_id, cause }]
            if instance_id == "i-1" && cause == "terminated by the group"),
        "terminated once, by the group, not reclaimed: {events:?}"
    );
}

#[test]
fn a_spot_interruption_ends_a_pending_launch() {
    let (mut asg, now) = launched_one(HookResult::Continue);
    asg.interrupt_spot("i-1", Duration::from_secs(120), now)
        .unwrap();
    assert_eq!(
        asg.member("i-1").unwrap().state,
        LifecycleState::TerminatingWait
    );
    let over = asg
        .complete_lifecycle_action(&complete("i-1", "launch", "CONTINUE"), now)
        .unwrap_err();
    assert_eq!(
        over.message,
        "No active Lifecycle Action found with instance ID i-1"
    );
    assert_eq!(
        asg.interrupt_spot("i-9", Duration::from_secs(120), now),
        None
    );
}

/// Three members in service, a refresh (MinHealthyPercentage 66, no warmup) replacing i-1 first.
fn refreshing_three(t0: Instant) -> (AutoScaling, String) {
    let mut asg = group(HookResult::Abandon);
    for id in ["i-1", "i-2", "i-3"] {
        asg.launch(GROUP, id, "az-a", t0);
    }
    complete_launches(&mut asg, t0);
    let id = asg
        .start_instance_refresh(
            &refresh(&[
                ("Preferences.MinHealthyPercentage", "66"),
                ("Preferences.InstanceWarmup", "0"),
            ]),
            t0,
        )
        .unwrap();
    (asg, id)
}

#[test]
fn describe_instance_refreshes_answers_newest_first_with_its_progress() {
    let t0 = Instant::now();
    let (mut asg, id) = refreshing_three(t0);
    let missing = asg
        .answer_operator("DescribeInstanceRefreshes", &Params::default(), t0)
        .unwrap_err();
    assert_eq!(
        missing.message,
        "1 validation error detected: Value null at 'autoScalingGroupName' failed to satisfy constraint: \
         Member must not be null"
    );
    let describe = |asg: &mut AutoScaling, at| {
        asg.answer_operator("DescribeInstanceRefreshes", &refresh(&[]), at)
            .unwrap()
    };
    let first = describe(&mut asg, t0);
    assert!(first.contains(&format!("<InstanceRefreshId>{id}</InstanceRefreshId>")));
    assert!(first.contains("<Status>InProgress</Status>"), "{first}");
    assert!(first.contains("<PercentageComplete>0</PercentageComplete>"));
    let t1 = t0 + Duration::from_secs(10);
    replace(&mut asg, "i-1", "i-4", t1);
    complete_launches(&mut asg, t1);
    asg.advance(t1);
    let third = describe(&mut asg, t1);
    assert!(
        third.contains("<PercentageComplete>33</PercentageComplete>"),
        "{third}"
    );
    assert!(third.contains("<InstancesToUpdate>2</InstancesToUpdate>"));
    for (old, new) in [("i-2", "i-5"), ("i-3", "i-6")] {
        replace(&mut asg, old, new, t1);
        complete_launches(&mut asg, t1);
        asg.advance(t1);
    }
    let newer = asg.start_instance_refresh(&refresh(&[]), t1).unwrap();
    let both = describe(&mut asg, t1);
    let (newest, oldest) = (
        both.find(&newer).expect("the new refresh"),
        both.find(&id).expect("the old refresh"),
    );
    assert!(newest < oldest, "newest first: {both}");
    assert!(both.contains("<Status>Successful</Status>"));
    assert!(both.contains("<PercentageComplete>100</PercentageComplete>"));
}

#[test]
fn cancel_instance_refresh_finishes_the_replacement_under_way_and_starts_no_other() {
    let t0 = Instant::now();
    let mut asg = group(HookResult::Abandon);
    let none = asg.cancel_instance_refresh(&refresh(&[]), t0).unwrap_err();
    assert_eq!(none.code, "ActiveInstanceRefreshNotFound");
    let (mut asg, id) = refreshing_three(t0);
    assert_eq!(
        asg.cancel_instance_refresh(&Params::default(), t0)
            .unwrap_err()
            .code,
        "ValidationError"
    );
    assert_eq!(asg.cancel_instance_refresh(&refresh(&[]), t0).unwrap(), id);
    let status = |asg: &AutoScaling| asg.instance_refreshes(GROUP)[0].status;
    assert_eq!(status(&asg), RefreshStatus::Cancelling, "i-1 is leaving");
    let again = asg.cancel_instance_refresh(&refresh(&[]), t0).unwrap_err();
    assert_eq!(again.code, "ActiveInstanceRefreshNotFound");
    let t1 = t0 + Duration::from_secs(10);
    replace(&mut asg, "i-1", "i-4", t1);
    asg.advance(t1);
    assert_eq!(status(&asg), RefreshStatus::Cancelling, "i-4 is pending");
    complete_launches(&mut asg, t1);
    asg.advance(t1);
    assert_eq!(status(&asg), RefreshStatus::Cancelled);
    assert_eq!(asg.instance_refreshes(GROUP)[0].percentage_complete(), 33);
    assert!(
        asg.members(GROUP)
            .iter()
            .all(|m| m.state == LifecycleState::InService),
        "no other replacement started"
    );
    assert_eq!(asg.instance_refreshes(GROUP)[0].replacements.len(), 1);
    asg.start_instance_refresh(&refresh(&[]), t1)
        .expect("a cancelled refresh no longer blocks the next");
}

#[test]
fn a_cancelled_refresh_with_nothing_under_way_is_cancelled_at_once() {
    let t0 = Instant::now();
    let mut asg = group(HookResult::Abandon);
    asg.launch(GROUP, "i-1", "az-a", t0);
    asg.start_instance_refresh(&refresh(&[]), t0).unwrap();
    let status = |asg: &AutoScaling| asg.instance_refreshes(GROUP)[0].status;
    assert_eq!(
        status(&asg),
        RefreshStatus::Pending,
        "i-1 is not in service yet"
    );
    asg.cancel_instance_refresh(&refresh(&[]), t0).unwrap();
    assert_eq!(status(&asg), RefreshStatus::Cancelled);
    assert_eq!(
        asg.member("i-1").unwrap().state,
        LifecycleState::PendingWait,
        "untouched"
    );
}

#[test]
fn terminate_instance_keeping_capacity_goes_through_the_terminate_hook() {
    let (mut asg, now) = launched_one(HookResult::Abandon);
    complete_launches(&mut asg, now);
    asg.take_events();
    let terminate = |pairs: &[(&str, &str)]| Params::from_pairs(pairs);
    let call = |asg: &mut AutoScaling, params: &Params| {
        asg.answer_operator("TerminateInstanceInAutoScalingGroup", params, now)
    };
    let missing = call(&mut asg, &terminate(&[("InstanceId", "i-1")])).unwrap_err();
    assert!(
        missing
            .message
            .contains("Value null at 'shouldDecrementDesiredCapacity'"),
        "{missing}"
    );
    let unknown = terminate(&[
        ("InstanceId", "i-9"),
        ("ShouldDecrementDesiredCapacity", "false"),
    ]);
    assert_eq!(
        call(&mut asg, &unknown).unwrap_err().message,
        "Instance Id not found - No managed instance found for instance ID: i-9"
    );
    let decrement = terminate(&[
        ("InstanceId", "i-1"),
        ("ShouldDecrementDesiredCapacity", "true"),
    ]);
    assert!(call(&mut asg, &decrement).is_err(), "not modelled: refused");
    assert_eq!(asg.member("i-1").unwrap().state, LifecycleState::InService);
    let keep = terminate(&[
        ("InstanceId", "i-1"),
        ("ShouldDecrementDesiredCapacity", "false"),
    ]);
    let activity = call(&mut asg, &keep).unwrap();
    assert!(
        activity.contains("<Description>Terminating EC2 instance: i-1</Description>"),
        "{activity}"
    );
    assert_eq!(
        asg.member("i-1").unwrap().state,
        LifecycleState::TerminatingWait
    );
    assert_eq!(asg.take_events(), [GroupEvent::Terminating("i-1".into())]);
    asg.complete_lifecycle_action(&complete("i-1", "terminate", "CONTINUE"), now)
        .unwrap();
    assert_eq!(
        asg.take_events(),
        [GroupEvent::Terminate {
            instance_id: "i-1".into(),
            cause: "terminated by the group".into()
        }],
        "the control plane terminates it and launches a replacement at the fixed capacity"
    );
}
