//! Decision table and properties of the boot state machine.
//!
//! Every boot state is exercised with success, a retryable failure, a fatal failure and deadline expiry; then
//! Healthy's checks, claim loss and re-claim, drains and stops from every state, a failure's release, illegal
//! inputs, and random input sequences.

use std::time::Duration;

use berth_core::fixtures;
use berth_core::machine::{
    after_failure, AfterFailure, CatchUpGate, ClaimState, Event as MachineEvent,
    FailureReportState, HookAction, HookAnswer, Output,
};
use berth_core::ports::{
    DrainReason, ErrorKind, FailureReport, LaunchResult, LifecycleHook, StepError, Verdict,
};
use berth_core::replication::DrainOutcome;
use berth_core::{
    BrokerId, Effect, ExitReason, Input, Machine, ReclaimOutcome, State, Step, StepKind, StepTag,
    Teardown, TransitionError,
};
use proptest::prelude::*;

const DEADLINE: Duration = Duration::from_secs(60);

fn machine() -> Machine {
    Machine::new(fixtures::settings(DEADLINE), 7)
}

fn step(machine: &Machine, input: Input, now: Duration) -> (Machine, Vec<Effect>) {
    let decision = machine
        .decide(&input, now)
        .unwrap_or_else(|e| panic!("{input:?} in {}: {e}", machine.state()));
    (decision.machine, decision.effects)
}

fn success_output(state: State) -> Output {
    match state {
        State::Claim => Output::Claimed {
            identity: fixtures::identity(),
            broker_id: BrokerId(0),
            resources: fixtures::resources(0),
            peers: Default::default(),
        },
        State::AttachEni => Output::EniReady(fixtures::eni_attachment(0)),
        State::Route => Output::Routed,
        State::AttachEbs => Output::VolumeReady(fixtures::volume_attachment(0)),
        State::Mount => Output::Mounted(fixtures::mount_report()),
        State::StartKafka | State::Healthy => Output::Serving(fixtures::serving(0)),
        State::Draining | State::Failed => unreachable!("no step output in {state}"),
    }
}

fn retryable(message: &str) -> StepError {
    StepError::new(ErrorKind::Retryable, message)
}

fn fatal(message: &str) -> StepError {
    StepError::new(ErrorKind::Fatal, message)
}

/// A started machine driven by successes into `target`, at time `now` = 1 s per state.
fn drive_to(target: State) -> (Machine, Duration) {
    drive(machine(), target)
}

/// `machine` started and driven by successes into `target`, at time `now` = 1 s per state (a CONTINUE sent on
/// the way to Healthy is taken at once, as Auto Scaling does).
fn drive(machine: Machine, target: State) -> (Machine, Duration) {
    let (mut m, _) = step(&machine, Input::Start, Duration::ZERO);
    let mut now = Duration::ZERO;
    while m.state() != target {
        now += Duration::from_secs(1);
        let output = success_output(m.state());
        let (next, effects) = step(&m, done(&m, output), now);
        m = next;
        if effects
            .iter()
            .any(|e| matches!(e, Effect::CompleteLaunch { .. }))
        {
            m = step(&m, launch_completed(), now).0;
        }
    }
    (m, now)
}

/// Auto Scaling took the launch action's CONTINUE.
fn launch_completed() -> Input {
    Input::HookAnswered {
        hook: LifecycleHook::Launch,
        answer: HookAnswer::Completed,
    }
}

fn run_steps(effects: &[Effect]) -> Vec<&Step> {
    effects
        .iter()
        .filter_map(|e| {
            if let Effect::Run { step, .. } = e {
                Some(step)
            } else {
                None
            }
        })
        .collect()
}

fn step_name_of(state: State) -> &'static str {
    state.name()
}

fn teardown_of(effects: &[Effect]) -> Vec<&'static str> {
    effects
        .iter()
        .find_map(|e| match e {
            Effect::Teardown(actions) => Some(actions.iter().map(Teardown::name).collect()),
            _ => None,
        })
        .unwrap_or_default()
}

fn taken(m: &Machine, eni_held_here: bool) -> Input {
    reclaimed(
        m,
        ReclaimOutcome::Taken {
            holder: "instance i-0bbbbbbbbbbbbbbbb in az-a".into(),
            eni_held_here,
        },
    )
}

/// The running main step's success.
fn done(m: &Machine, output: Output) -> Input {
    Input::StepDone {
        tag: m.running_step().expect("a main step runs"),
        output,
    }
}

/// The running main step's failure.
fn failed(m: &Machine, error: StepError) -> Input {
    Input::StepFailed {
        tag: m.running_step().expect("a main step runs"),
        error,
    }
}

/// The running reclaim's answer.
fn reclaimed(m: &Machine, outcome: ReclaimOutcome) -> Input {
    Input::Reclaimed {
        tag: m.running_reclaim().expect("a reclaim runs"),
        outcome,
    }
}

/// The running reclaim's failure.
fn reclaim_failed(m: &Machine, error: StepError) -> Input {
    Input::ReclaimFailed {
        tag: m.running_reclaim().expect("a reclaim runs"),
        error,
    }
}

#[test]
fn start_runs_claim() {
    let (m, effects) = step(&machine(), Input::Start, Duration::ZERO);
    assert_eq!(m.state(), State::Claim);
    assert_eq!(run_steps(&effects), vec![&Step::Claim]);
}

#[test]
fn success_advances_each_boot_state_in_order() {
    for (index, state) in State::BOOT.iter().enumerate().take(6) {
        let (m, now) = drive_to(*state);
        let (next, effects) = step(
            &m,
            done(&m, success_output(*state)),
            now + Duration::from_millis(10),
        );
        let expected = State::BOOT[index + 1];
        assert_eq!(next.state(), expected, "success in {state}");
        if expected == State::Healthy {
            assert!(next.is_serving());
            assert!(effects.contains(&Effect::SignalStack {
                identity: Some(fixtures::identity()),
                verdict: Verdict::Success
            }));
            assert!(
                effects.contains(&Effect::CompleteLaunch {
                    identity: fixtures::identity(),
                    result: LaunchResult::Continue
                }),
                "the launch hook is told on its own, not through CloudFormation: {effects:?}"
            );
            assert!(run_steps(&effects).is_empty());
        } else {
            let steps = run_steps(&effects);
            assert_eq!(steps.len(), 1, "one step runs after {state}: {effects:?}");
            assert_eq!(steps[0].name(), step_name_of(expected));
            assert!(!next.is_serving());
        }
    }
}

#[test]
fn retryable_failure_backs_off_then_retries_the_same_step() {
    for state in State::BOOT.iter().take(6) {
        let (m, now) = drive_to(*state);
        let (waiting, effects) = step(&m, failed(&m, retryable("throttled")), now);
        assert_eq!(waiting.state(), *state);
        assert!(
            run_steps(&effects).is_empty(),
            "no immediate retry in {state}"
        );
        let wake = waiting.next_wake().expect("a retry is scheduled");
        assert!(
            wake > now && wake <= now + Duration::from_millis(250),
            "first backoff in {state}: {wake:?}"
        );
        let (early, effects) = step(&waiting, Input::Tick, wake - Duration::from_millis(1));
        assert!(
            run_steps(&effects).is_empty(),
            "not before the backoff in {state}"
        );
        let (retried, effects) = step(&early, Input::Tick, wake);
        assert_eq!(run_steps(&effects).len(), 1);
        assert_eq!(run_steps(&effects)[0].name(), step_name_of(*state));
        assert_eq!(retried.attempts(), 2);
        assert_eq!(
            retried.last_error(),
            Some(format!("{}: throttled", state.name()).as_str())
        );
    }
}

#[test]
fn fatal_failure_reports_lets_go_and_exits_non_zero() {
    for state in State::BOOT.iter().take(6) {
        let (m, now) = drive_to(*state);
        let (failed, effects) = step(
            &m,
            failed(&m, fatal("meta.properties says broker.id=2")),
            now,
        );
        assert_eq!(failed.state(), State::Failed, "fatal in {state}");
        let reason = failed.failure().expect("failure reason");
        assert!(
            reason.contains("meta.properties says broker.id=2") && reason.contains(state.name()),
            "{reason}"
        );
        assert!(effects.iter().any(
            |e| matches!(e, Effect::SignalStack { verdict: Verdict::Failure(r), .. } if r == reason)
        ));
        let teardown = teardown_of(&effects);
        assert_eq!(
            teardown.first() == Some(&"stop_kafka"),
            *state >= State::StartKafka,
            "Kafka stopped first once it may run ({state}): {teardown:?}"
        );
        assert_eq!(
            teardown.last(),
            Some(&"release_claim"),
            "the claim last; Auto Scaling is told after the release: {state}"
        );
        let refused = *state == State::Mount;
        assert_eq!(
            failed.failure_details().unwrap().volume_refused,
            refused,
            "{state}"
        );
        assert_eq!(
            teardown.contains(&"unmount"),
            *state > State::Mount,
            "unmounted only when mounted and not refused ({state}): {teardown:?}"
        );
        assert_eq!(
            teardown.contains(&"detach_volume"),
            *state >= State::AttachEni && !refused,
            "detached once its attachment was requested (alongside AttachEni); a refused volume is not even \
             detached ({state}): {teardown:?}"
        );
        let (released, effects) = step(&failed, Input::TeardownDone, now + Duration::from_secs(1));
        assert_eq!(
            effects,
            vec![Effect::ReportFailure {
                // Claim fails before the identity is a fact: the daemon looks it up.
                identity: (*state > State::Claim).then(fixtures::identity)
            }],
            "told last, once released: {state}"
        );
        let (_, effects) = step(
            &released,
            Input::FailureReported(Ok(FailureReport::Abandoned)),
            now + Duration::from_secs(2),
        );
        assert_eq!(effects, vec![Effect::Exit(ExitReason::Failed)], "{state}");
    }
}

#[test]
fn deadline_expiry_fails_with_the_last_error() {
    for state in State::BOOT.iter().take(6) {
        let (mut m, mut now) = drive_to(*state);
        let entered = now;
        let mut attempts = 0;
        while m.state() == *state {
            attempts += 1;
            assert!(attempts < 1000, "{state} never gave up");
            let (next, _) = step(&m, failed(&m, retryable("owner i-123 still running")), now);
            m = next;
            // Tick through heartbeats until the retry runs (or the state has failed).
            while m.state() == *state {
                now = m.next_wake().expect("a retry is scheduled");
                let (next, effects) = step(&m, Input::Tick, now);
                m = next;
                if !run_steps(&effects).is_empty() {
                    break;
                }
            }
        }
        assert_eq!(m.state(), State::Failed);
        assert!(
            now <= entered + DEADLINE,
            "{state} failed after its deadline: {now:?}"
        );
        let reason = m.failure().unwrap();
        assert!(
            reason.contains("deadline") && reason.contains("owner i-123 still running"),
            "{reason}"
        );
    }
}

#[test]
fn healthy_check_failure_turns_unhealthy_then_marks_the_instance_after_grace() {
    let (m, now) = drive_to(State::Healthy);
    assert!(m.is_serving());
    let check_at = m.next_wake().unwrap();
    assert_eq!(check_at, now + Duration::from_secs(5));
    let (m, effects) = step(&m, Input::Tick, check_at);
    assert!(matches!(run_steps(&effects)[..], [Step::Check { .. }]));
    let (m, _) = step(&m, failed(&m, retryable("connection refused")), check_at);
    assert!(!m.is_serving(), "503 at once");
    assert_eq!(
        m.state(),
        State::Healthy,
        "a lost broker is not a boot failure"
    );
    let grace_end = check_at + Duration::from_secs(30);
    let mut now = check_at;
    let mut marked = 0;
    let mut m = m;
    while now < grace_end + Duration::from_secs(10) {
        now = m.next_wake().unwrap();
        let (next, effects) = step(&m, Input::Tick, now);
        marked += effects
            .iter()
            .filter(|e| matches!(e, Effect::MarkUnhealthy { .. }))
            .count();
        if effects
            .iter()
            .any(|e| matches!(e, Effect::MarkUnhealthy { .. }))
        {
            assert!(now >= grace_end, "marked before the grace period: {now:?}");
        }
        m = next;
        if !run_steps(&effects).is_empty() {
            m = step(&m, failed(&m, retryable("connection refused")), now).0;
        }
    }
    assert_eq!(marked, 1, "SetInstanceHealth exactly once");
    let check_at = m.next_wake().unwrap();
    let (m, _) = step(&m, Input::Tick, check_at);
    let (m, _) = step(
        &m,
        done(&m, Output::Serving(fixtures::serving(0))),
        check_at,
    );
    assert!(m.is_serving(), "back to 200 when Kafka is back");
}

#[test]
fn claim_loss_reclaims_and_recovers() {
    let (m, now) = drive_to(State::Healthy);
    let (lost, effects) = step(&m, Input::ClaimLost, now);
    assert_eq!(lost.claim_state(), ClaimState::Lost);
    assert!(!lost.is_serving(), "never report healthy without the claim");
    assert!(
        effects.iter().any(|e| matches!(
            e,
            Effect::Run { step: Step::Reclaim { broker_id: BrokerId(0) }, deadline, .. }
                if *deadline == now + berth_core::machine::DEFAULT_RECLAIM_ATTEMPT
        )),
        "one attempt, with an attempt's deadline: {effects:?}"
    );
    let (back, _) = step(
        &lost,
        reclaimed(&lost, ReclaimOutcome::Held),
        now + Duration::from_millis(50),
    );
    assert_eq!(back.claim_state(), ClaimState::Held);
    assert_eq!(
        back.next_wake(),
        Some(now + Duration::from_millis(50)),
        "re-check at once"
    );
}

#[test]
fn a_lost_claim_is_reclaimed_for_as_long_as_it_takes_and_kafka_is_never_stopped() {
    let (m, start) = drive_to(State::Healthy);
    let (mut m, _) = step(&m, Input::ClaimLost, start);
    let mut now = start;
    let mut attempts = 0;
    // Far past states.claim.deadline (60 s here): a ZooKeeper outage of hours.
    while now < start + Duration::from_secs(6 * 3600) {
        let (next, effects) = step(
            &m,
            reclaim_failed(&m, retryable("ZooKeeper unreachable")),
            now,
        );
        assert!(
            !effects.iter().any(|e| matches!(e, Effect::Teardown(_))),
            "nothing stopped or released after {:?}: {effects:?}",
            now - start
        );
        assert_eq!(next.state(), State::Healthy);
        let wake = next.next_wake().expect("a retry is scheduled");
        assert!(
            wake - now <= Duration::from_secs(10),
            "backoff capped at max_backoff"
        );
        let (next, effects) = step(&next, Input::Tick, wake);
        assert!(
            matches!(run_steps(&effects)[..], [Step::Reclaim { .. }]),
            "{effects:?}"
        );
        m = next;
        now = wake;
        attempts += 1;
    }
    assert!(attempts > 1000, "{attempts}");
    assert_eq!(m.claim_lost_since(), Some(start));
    let (back, _) = step(&m, reclaimed(&m, ReclaimOutcome::Held), now);
    assert_eq!(back.claim_state(), ClaimState::Held);
    assert_eq!(back.state(), State::Healthy);
}

#[test]
fn a_coordination_outage_longer_than_the_grace_never_marks_the_instance_unhealthy() {
    let (m, now) = drive_to(State::Healthy);
    let check_at = m.next_wake().unwrap();
    let (m, _) = step(&m, Input::Tick, check_at);
    // The check fails because ZooKeeper is gone (Kafka's registration cannot be read), then the claim goes too.
    let (m, _) = step(
        &m,
        failed(&m, retryable("registration: session expired")),
        check_at,
    );
    let (mut m, _) = step(&m, Input::ClaimLost, check_at);
    let mut at = check_at;
    while at < now + Duration::from_secs(600) {
        let (next, effects) = step(
            &m,
            reclaim_failed(&m, retryable("ZooKeeper unreachable")),
            at,
        );
        at = next.next_wake().unwrap();
        let (next, tick) = step(&next, Input::Tick, at);
        assert!(
            !effects
                .iter()
                .chain(&tick)
                .any(|e| matches!(e, Effect::MarkUnhealthy { .. })),
            "marked unhealthy {:?} into a ZooKeeper outage",
            at - check_at
        );
        m = next;
    }
    let (back, effects) = step(&m, reclaimed(&m, ReclaimOutcome::Held), at);
    assert!(effects.is_empty(), "{effects:?}");
    assert_eq!(back.next_wake(), Some(at), "Kafka is judged again at once");
}

#[test]
fn another_holder_is_waited_out_while_the_eni_is_held_here() {
    let (m, now) = drive_to(State::Healthy);
    let (lost, _) = step(&m, Input::ClaimLost, now);
    let (waiting, effects) = step(&lost, taken(&lost, true), now + Duration::from_secs(1));
    assert_eq!(waiting.state(), State::Healthy);
    assert!(effects.is_empty(), "{effects:?}");
    assert!(waiting
        .last_error()
        .unwrap()
        .contains("its ENI is still attached here"));
    let wake = waiting.next_wake().unwrap();
    let (_, effects) = step(&waiting, Input::Tick, wake);
    assert!(matches!(run_steps(&effects)[..], [Step::Reclaim { .. }]));
}

#[test]
fn another_holder_with_the_eni_gone_from_here_fails_and_stops_kafka_first() {
    let (m, now) = drive_to(State::Healthy);
    let (lost, _) = step(&m, Input::ClaimLost, now);
    let (failed, effects) = step(&lost, taken(&lost, false), now + Duration::from_secs(1));
    assert_eq!(failed.state(), State::Failed);
    assert_eq!(
        teardown_of(&effects).first(),
        Some(&"stop_kafka"),
        "{effects:?}"
    );
    assert!(failed.failure().unwrap().contains("i-0bbbbbbbbbbbbbbbb"));
}

#[test]
fn claim_loss_while_booting_pauses_the_boot_until_reclaimed() {
    let (m, now) = drive_to(State::AttachEbs);
    let (lost, _) = step(&m, Input::ClaimLost, now);
    let (after, effects) = step(
        &lost,
        done(&lost, success_output(State::AttachEbs)),
        now + Duration::from_millis(5),
    );
    assert_eq!(after.state(), State::Mount);
    assert!(
        run_steps(&effects).is_empty(),
        "no new boot step without the claim: {effects:?}"
    );
    let (resumed, effects) = step(
        &after,
        reclaimed(&after, ReclaimOutcome::Held),
        now + Duration::from_millis(10),
    );
    assert!(
        matches!(run_steps(&effects)[..], [Step::Mount { .. }]),
        "{effects:?}"
    );
    assert_eq!(resumed.state(), State::Mount);
}

#[test]
fn stop_exits_from_every_state_leaving_everything_in_place() {
    for state in State::BOOT {
        let (m, now) = drive_to(state);
        let (_, effects) = step(&m, Input::Stop, now);
        assert!(
            !effects.iter().any(|e| matches!(e, Effect::Teardown(_))),
            "nothing released on SIGTERM in {state}: {effects:?}"
        );
        assert_eq!(effects.last(), Some(&Effect::Exit(ExitReason::Stopped)));
        assert_eq!(
            effects.contains(&Effect::Cancel),
            state != State::Healthy,
            "{state}"
        );
    }
    let (m, now) = drive_to(State::Healthy);
    let (draining, _) = step(&m, Input::Drain(DrainReason::Requested), now);
    let (still, effects) = step(&draining, Input::Stop, now);
    assert!(
        effects.is_empty(),
        "a drain under way finishes: {effects:?}"
    );
    let (_, effects) = step(&still, Input::TeardownDone, now);
    assert_eq!(effects, vec![Effect::Exit(ExitReason::Drained)]);
}

#[test]
fn a_drain_during_a_failures_release_changes_nothing() {
    let (m, now) = drive_to(State::StartKafka);
    let (failed, _) = step(&m, failed(&m, fatal("Kafka refused")), now);
    let (same, effects) = step(&failed, Input::Drain(DrainReason::LifecycleTerminated), now);
    assert!(effects.is_empty(), "{effects:?}");
    assert_eq!(same.state(), State::Failed);
}

#[test]
fn drain_undoes_what_was_reached_in_reverse_and_releases_the_claim_last() {
    for state in State::BOOT {
        for reason in [DrainReason::Requested, DrainReason::LifecycleTerminated] {
            let (m, now) = drive_to(state);
            let (draining, effects) = step(&m, Input::Drain(reason.clone()), now);
            assert_eq!(draining.state(), State::Draining);
            assert!(!draining.is_serving());
            let teardown = effects
                .iter()
                .find_map(|e| {
                    if let Effect::Teardown(t) = e {
                        Some(t.clone())
                    } else {
                        None
                    }
                })
                .expect("teardown effect");
            let kinds: Vec<&str> = teardown.iter().map(Teardown::name).collect();
            let mut expected = Vec::new();
            if state >= State::StartKafka {
                expected.push("stop_kafka");
            }
            if state >= State::Mount {
                expected.push("unmount");
            }
            if state >= State::Route {
                expected.push("remove_routes");
            }
            // The volume's attachment is requested alongside AttachEni.
            if state >= State::AttachEni {
                expected.push("detach_volume");
            }
            if state >= State::AttachEni {
                expected.push("detach_eni");
            }
            expected.push("release_claim");
            assert_eq!(kinds, expected, "drain from {state} ({reason})");
            let running = state != State::Healthy;
            assert_eq!(
                effects.contains(&Effect::Cancel),
                running,
                "running step cancelled in {state}"
            );
            let (released, effects) =
                step(&draining, Input::TeardownDone, now + Duration::from_secs(1));
            if reason == DrainReason::LifecycleTerminated && state > State::Claim {
                assert_eq!(
                    effects,
                    vec![Effect::CompleteTermination {
                        identity: fixtures::identity()
                    }],
                    "the terminate action completed once released, its answer awaited ({state})"
                );
                let answer = Input::HookAnswered {
                    hook: LifecycleHook::Terminate,
                    answer: HookAnswer::Completed,
                };
                let (_, effects) = step(&released, answer, now + Duration::from_secs(2));
                assert_eq!(effects, vec![Effect::Exit(ExitReason::Drained)]);
            } else {
                // Requested, or before the claim: no identity to complete the action with.
                assert_eq!(effects, vec![Effect::Exit(ExitReason::Drained)], "{state}");
            }
        }
    }
}

/// The actions of the teardown `effects` start.
fn teardown_actions(effects: &[Effect]) -> Vec<Teardown> {
    effects
        .iter()
        .find_map(|e| match e {
            Effect::Teardown(actions) => Some(actions.clone()),
            _ => None,
        })
        .expect("a teardown")
}

#[test]
fn a_failed_action_before_the_enis_detach_stops_the_release_but_not_the_signal() {
    let (m, now) = drive_to(State::Healthy);
    let (draining, effects) = step(&m, Input::Drain(DrainReason::LifecycleTerminated), now);
    let actions = teardown_actions(&effects);
    let names = |actions: &[Teardown]| actions.iter().map(Teardown::name).collect::<Vec<_>>();
    // Kafka would not stop, the volume would not unmount or detach, the routes stayed: the id is kept here.
    for failed in ["stop_kafka", "unmount", "remove_routes", "detach_volume"] {
        let at = actions.iter().position(|a| a.name() == failed).unwrap();
        let AfterFailure::Stop { kept } = after_failure(&actions, at) else {
            panic!("{failed} failing must stop the release");
        };
        assert_eq!(names(&kept).last(), Some(&"release_claim"), "{failed}");
        assert!(names(&kept).contains(&"detach_eni"), "{failed}");
    }
    // Past the ENI's detach nothing more is held back.
    for failed in ["detach_eni", "release_claim"] {
        let at = actions.iter().position(|a| a.name() == failed).unwrap();
        assert_eq!(
            after_failure(&actions, at),
            AfterFailure::Continue,
            "{failed}"
        );
    }

    // The machine remembers it for /state and says it; the teardown still ends (the daemon sends Done).
    let stopped = Input::TeardownStopped {
        step: "stop_kafka".into(),
        error: "kafka.service did not stop within 2m".into(),
        kept: vec!["detach_eni".into(), "release_claim".into()],
    };
    let decision = draining.decide(&stopped, now).unwrap();
    assert!(decision.effects.is_empty(), "{:?}", decision.effects);
    assert!(matches!(
        decision.events.as_slice(),
        [MachineEvent::TeardownStopped { step, kept, .. }] if step == "stop_kafka" && kept.len() == 2
    ));
    let said = decision.machine.last_error().unwrap();
    assert!(
        said.contains("teardown stopped at stop_kafka: kafka.service did not stop")
            && said.contains("detach_eni, release_claim"),
        "{said}"
    );
    // Auto Scaling is still told: the terminate action is completed once the (stopped) release ends.
    let (_, effects) = step(&decision.machine, Input::TeardownDone, now);
    assert_eq!(
        effects,
        vec![Effect::CompleteTermination {
            identity: fixtures::identity()
        }]
    );
    // Outside a teardown it is a caller's bug, refused.
    assert!(matches!(
        m.decide(&stopped, now),
        Err(TransitionError::NotValidHere {
            input: "teardown_stopped",
            ..
        })
    ));
}

#[test]
fn a_failures_release_that_fails_before_the_enis_detach_still_reports_the_failure() {
    let (m, now) = drive_to(State::StartKafka);
    let (failed, effects) = step(&m, failed(&m, fatal("broken")), now);
    assert_eq!(failed.state(), State::Failed);
    let actions = teardown_actions(&effects);
    let at = actions.iter().position(|a| a.name() == "unmount").unwrap();
    let AfterFailure::Stop { kept } = after_failure(&actions, at) else {
        panic!("a failed unmount must stop the release");
    };
    let kept: Vec<_> = kept.iter().map(Teardown::name).collect();
    assert_eq!(
        kept,
        [
            "remove_routes",
            "detach_volume",
            "detach_eni",
            "release_claim"
        ]
    );
    // The failure is still reported once the (stopped) release ends.
    let (_, effects) = step(&failed, Input::TeardownDone, now + Duration::from_secs(1));
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::ReportFailure { .. })),
        "{effects:?}"
    );
}

#[test]
fn launch_heartbeats_begin_with_the_identity_before_the_claim_ends() {
    let (m, effects) = step(&machine(), Input::Start, Duration::ZERO);
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::Heartbeat { .. })),
        "no heartbeat before the identity is known"
    );
    assert_eq!(m.next_wake(), None, "nothing to wake for: no busy loop");
    // The instance metadata answers while Claim still waits (its predecessor drains): a heartbeat at once.
    let identified = Input::Identified(fixtures::identity());
    let (m, effects) = step(&m, identified, Duration::from_millis(300));
    assert_eq!(
        effects,
        vec![Effect::Heartbeat {
            identity: fixtures::identity(),
            hook: LifecycleHook::Launch
        }]
    );
    assert_eq!(m.state(), State::Claim);
    // ... and one every interval for as long as Claim waits, whatever runs.
    let mut m = m;
    let mut beats = Vec::new();
    while let Some(wake) = m.next_wake().filter(|at| *at <= Duration::from_secs(601)) {
        let (next, effects) = step(&m, Input::Tick, wake);
        if effects
            .iter()
            .any(|e| matches!(e, Effect::Heartbeat { .. }))
        {
            beats.push(wake.as_secs());
        }
        m = next;
    }
    assert_eq!(beats, [60, 120, 180, 240, 300, 360, 420, 480, 540, 600]);
    assert_eq!(m.state(), State::Claim);
}

#[test]
fn healthy_keeps_the_launch_action_alive_until_continue_is_answered() {
    let (m, _) = drive_to(State::StartKafka);
    let now = Duration::from_secs(30);
    let (healthy, effects) = step(&m, done(&m, success_output(State::StartKafka)), now);
    assert!(effects.contains(&Effect::CompleteLaunch {
        identity: fixtures::identity(),
        result: LaunchResult::Continue
    }));
    assert!(matches!(
        healthy.lifecycle().0,
        HookAction::Completing { .. }
    ));
    // CONTINUE is retried (throttled): the action hears a heartbeat meanwhile (one interval after the one sent
    // when the claim made the identity known, at 1 s).
    let (still, effects) = step(&healthy, Input::Tick, Duration::from_secs(61));
    assert!(
        effects.iter().any(|e| matches!(
            e,
            Effect::Heartbeat {
                hook: LifecycleHook::Launch,
                ..
            }
        )),
        "{effects:?}"
    );
    let (done_with_it, _) = step(&still, launch_completed(), Duration::from_secs(70));
    assert_eq!(done_with_it.lifecycle().0, HookAction::Over);
    let (_, effects) = step(&done_with_it, Input::Tick, Duration::from_secs(600));
    assert!(!effects
        .iter()
        .any(|e| matches!(e, Effect::Heartbeat { .. })));
}

#[test]
fn a_heartbeat_nothing_awaits_ends_the_launch_action_and_continue_is_not_sent() {
    // A restarted berth on an instance in service: its first heartbeat is answered "no active action".
    let (m, now) = drive_to(State::Mount);
    let answer = Input::HookAnswered {
        hook: LifecycleHook::Launch,
        answer: HookAnswer::NotAwaited("No active Lifecycle Action found".into()),
    };
    let (m, _) = step(&m, answer, now);
    let now = now + Duration::from_secs(1);
    let (m, _) = step(&m, done(&m, success_output(State::Mount)), now);
    let (healthy, effects) = step(&m, done(&m, success_output(State::StartKafka)), now);
    assert_eq!(healthy.state(), State::Healthy);
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::CompleteLaunch { .. } | Effect::Heartbeat { .. })),
        "{effects:?}"
    );
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::SignalStack { .. })));
}

#[test]
fn launch_heartbeats_stop_once_the_boot_failed_so_the_hook_can_end_it() {
    let (m, now) = drive_to(State::AttachEbs);
    let (failed, _) = step(&m, failed(&m, fatal("wrong zone")), now);
    let (_, effects) = step(&failed, Input::Tick, Duration::from_secs(3600));
    assert!(!effects
        .iter()
        .any(|e| matches!(e, Effect::Heartbeat { .. })));
}

#[test]
fn illegal_inputs_are_typed_errors() {
    let fresh = machine();
    let (started, _) = step(&fresh, Input::Start, Duration::ZERO);
    assert!(matches!(
        started.decide(&Input::Start, Duration::ZERO),
        Err(TransitionError::AlreadyStarted(_))
    ));
    let claim_run = started.running_step().unwrap();
    assert!(matches!(
        fresh.decide(
            &Input::StepDone {
                tag: claim_run,
                output: success_output(State::Claim)
            },
            Duration::ZERO
        ),
        Err(TransitionError::Stale { .. })
    ));
    assert!(matches!(
        started.decide(&Input::TeardownDone, Duration::ZERO),
        Err(TransitionError::NotValidHere {
            input: "teardown_done",
            ..
        })
    ));
    assert!(matches!(
        started.decide(
            &Input::Reclaimed {
                tag: StepTag {
                    kind: StepKind::Reclaim,
                    run: claim_run.run
                },
                outcome: ReclaimOutcome::Held
            },
            Duration::ZERO
        ),
        Err(TransitionError::Stale { .. })
    ));
}

/// Random observations, chosen among those that could plausibly arrive next.
#[derive(Debug, Clone)]
enum Event {
    Succeed,
    FailRetryable,
    FailFatal,
    Wait(u64),
    LoseClaim,
    ReclaimOk,
    ReclaimFail,
    ReclaimTaken(bool),
    Drain,
    Stop,
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        8 => Just(Event::Succeed),
        6 => Just(Event::FailRetryable),
        1 => Just(Event::FailFatal),
        4 => (1u64..20_000).prop_map(Event::Wait),
        1 => Just(Event::LoseClaim),
        1 => Just(Event::ReclaimOk),
        1 => Just(Event::ReclaimFail),
        1 => any::<bool>().prop_map(Event::ReclaimTaken),
        1 => Just(Event::Drain),
        1 => Just(Event::Stop),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_observations_never_skip_or_go_back_and_always_finish(events in proptest::collection::vec(event(), 0..200), seed in any::<u64>()) {
        let mut m = Machine::new(fixtures::settings(Duration::from_secs(30)), seed);
        let mut now = Duration::ZERO;
        let started = m.decide(&Input::Start, now).unwrap();
        m = started.machine;
        assert!(!started.effects.is_empty());
        let mut draining_sent = false;
        let mut exited = false;
        let check = |before: State, after: State| {
            if after == before || matches!(after, State::Draining | State::Failed) {
                return Ok(());
            }
            prop_assert_eq!(before.next(), Some(after), "skipped or went back: {} -> {}", before, after);
            Ok(())
        };
        // Random state, then drive time forward with failures until the machine finishes.
        // (A lost claim is re-claimed for as long as it takes, so the tail lets ZooKeeper come back.)
        let tail = [Event::FailRetryable, Event::ReclaimOk].into_iter().cycle().take(4_000);
        for event in events.into_iter().chain(tail) {
            let (running, reclaiming) = (m.running_step().is_some(), m.running_reclaim().is_some());
            if exited || matches!(m.state(), State::Failed | State::Draining) || (m.state() == State::Healthy && !reclaiming) {
                break;
            }
            let input = match event {
                Event::Succeed if running => done(&m, success_output(m.state())),
                Event::FailRetryable if running => failed(&m, retryable("transient")),
                Event::FailFatal if running => failed(&m, fatal("broken")),
                Event::FailRetryable if reclaiming => reclaim_failed(&m, retryable("zk down")),
                Event::LoseClaim => Input::ClaimLost,
                Event::ReclaimOk if reclaiming => reclaimed(&m, ReclaimOutcome::Held),
                Event::ReclaimFail if reclaiming => reclaim_failed(&m, retryable("zk down")),
                Event::ReclaimTaken(eni_held_here) if reclaiming => reclaimed(&m, ReclaimOutcome::Taken { holder: "another".into(), eni_held_here }),
                Event::Drain if !draining_sent => { draining_sent = true; Input::Drain(DrainReason::Requested) }
                Event::Stop => Input::Stop,
                Event::Wait(ms) => { now += Duration::from_millis(ms); Input::Tick }
                _ => { now = m.next_wake().unwrap_or(now).max(now); Input::Tick }
            };
            let before = m.state();
            let decision = m.decide(&input, now).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let (next, effects) = (decision.machine, decision.effects);
            check(before, next.state())?;
            if effects.iter().any(|e| matches!(e, Effect::Exit(_))) { exited = true; }
            m = next;
        }
        prop_assert!(
            exited || matches!(m.state(), State::Healthy | State::Draining | State::Failed),
            "ended in {} at {:?}", m.state(), now
        );
        if m.state() == State::Failed {
            prop_assert!(m.failure().is_some());
        }
    }
}

#[test]
fn a_session_expiry_during_the_claim_step_is_not_forgotten() {
    let (m, _) = step(&machine(), Input::Start, Duration::ZERO);
    // The session the claim step works on expires before its result arrives: the node it created may be gone.
    let (m, _) = step(&m, Input::ClaimLost, Duration::from_millis(5));
    let (claimed, effects) = step(
        &m,
        done(&m, success_output(State::Claim)),
        Duration::from_millis(10),
    );
    assert_eq!(
        claimed.claim_state(),
        ClaimState::Lost,
        "no Held without a node"
    );
    assert!(
        matches!(
            run_steps(&effects)[..],
            [Step::Reclaim {
                broker_id: BrokerId(0)
            }]
        ),
        "the id is re-claimed before anything is attached: {effects:?}"
    );
    assert!(
        volume_request_of(&effects).is_none() && !claimed.volume_requested(),
        "nor the volume requested: {effects:?}"
    );
    let (resumed, effects) = step(
        &claimed,
        reclaimed(&claimed, ReclaimOutcome::Held),
        Duration::from_millis(20),
    );
    assert_eq!(resumed.claim_state(), ClaimState::Held);
    assert!(
        matches!(run_steps(&effects)[..], [Step::AttachEni { .. }]),
        "{effects:?}"
    );
    assert!(
        volume_request_of(&effects).is_some() && resumed.volume_requested(),
        "the volume is requested once the claim is held: {effects:?}"
    );
}

#[test]
fn a_session_expiry_during_a_reclaim_is_not_forgotten() {
    let (m, now) = drive_to(State::Healthy);
    let (lost, _) = step(&m, Input::ClaimLost, now);
    // The reclaim's new session expires too before the reclaim reports.
    let (lost_again, effects) = step(&lost, Input::ClaimLost, now + Duration::from_millis(5));
    assert!(
        run_steps(&effects).is_empty(),
        "one reclaim at a time: {effects:?}"
    );
    let (after, effects) = step(
        &lost_again,
        reclaimed(&lost_again, ReclaimOutcome::Held),
        now + Duration::from_millis(10),
    );
    assert_eq!(
        after.claim_state(),
        ClaimState::Lost,
        "no Held without a node"
    );
    assert!(!after.is_serving());
    assert!(
        matches!(run_steps(&effects)[..], [Step::Reclaim { .. }]),
        "re-claimed again at once: {effects:?}"
    );
}

#[test]
fn a_result_that_fits_no_running_step_does_not_leave_it_running() {
    let (m, now) = drive_to(State::AttachEni);
    let later = now + Duration::from_millis(5);
    let decision = m
        .decide(&done(&m, Output::Routed), later)
        .expect("a misfit result is a failure of the running step, not an ignored input");
    let (next, effects) = (decision.machine, decision.effects);
    assert!(run_steps(&effects).is_empty(), "{effects:?}");
    assert_eq!(next.running_step(), None);
    assert!(
        next.last_error().unwrap().contains("routed"),
        "{:?}",
        next.last_error()
    );
    let wake = next.next_wake().expect("the step is retried");
    let (_, effects) = step(&next, Input::Tick, wake);
    assert!(
        matches!(run_steps(&effects)[..], [Step::AttachEni { .. }]),
        "{effects:?}"
    );
}

#[test]
fn a_result_of_a_cancelled_run_is_stale() {
    let (m, now) = drive_to(State::Mount);
    let mount_run = m.running_step().unwrap();
    let (draining, effects) = step(&m, Input::Drain(DrainReason::Requested), now);
    assert!(effects.contains(&Effect::Cancel));
    let late = Input::StepDone {
        tag: mount_run,
        output: success_output(State::Mount),
    };
    assert_eq!(
        draining.decide(&late, now + Duration::from_millis(5)),
        Err(TransitionError::Stale {
            state: State::Draining,
            tag: mount_run
        })
    );
    // A retry's result is told from the earlier run's, which the retry superseded.
    let (m, now) = drive_to(State::AttachEni);
    let first = m.running_step().unwrap();
    let (waiting, _) = step(&m, failed(&m, retryable("throttled")), now);
    let (retrying, _) = step(&waiting, Input::Tick, waiting.next_wake().unwrap());
    let second = retrying.running_step().unwrap();
    assert_ne!(first, second);
    assert!(matches!(
        retrying.decide(
            &Input::StepFailed {
                tag: first,
                error: retryable("late")
            },
            now
        ),
        Err(TransitionError::Stale { .. })
    ));
}

/// The volume whose attachment an AttachEni run in `effects` requests too, with that run's tag.
fn volume_request_of(effects: &[Effect]) -> Option<(StepTag, &str)> {
    effects.iter().find_map(|e| match e {
        Effect::Run {
            tag,
            step:
                Step::AttachEni {
                    volume: Some(volume),
                    ..
                },
            ..
        } => Some((*tag, volume.volume_id.as_str())),
        _ => None,
    })
}

#[test]
fn the_volume_is_requested_alongside_attach_eni_once_the_claim_is_held() {
    let (m, now) = drive_to(State::Claim);
    let (attaching, effects) = step(&m, done(&m, success_output(State::Claim)), now);
    assert_eq!(attaching.state(), State::AttachEni);
    // One step: the ENI's attach, which sends the volume's request beside it; nothing waits before either.
    let kinds: Vec<&str> = run_steps(&effects).iter().map(|s| s.name()).collect();
    assert_eq!(kinds, ["attach_eni"]);
    let (tag, volume) = volume_request_of(&effects).expect("requested");
    assert_eq!(tag.kind, StepKind::Boot(State::AttachEni));
    assert_eq!(
        volume,
        fixtures::volume(0).volume_id,
        "the claimed id's volume"
    );
    assert!(attaching.volume_requested(), "recorded");
}

#[test]
fn attach_ebs_still_runs_its_own_step_after_the_request() {
    let (m, now) = drive_to(State::Claim);
    let (attaching, _) = step(&m, done(&m, success_output(State::Claim)), now);
    let later = now + Duration::from_millis(40);
    // ENI ready, routed: AttachEbs runs its own step (it observes the volume again), and no second request.
    let (routing, effects) = step(
        &attaching,
        done(&attaching, success_output(State::AttachEni)),
        later,
    );
    assert!(volume_request_of(&effects).is_none());
    let (ebs, effects) = step(&routing, done(&routing, Output::Routed), later);
    assert_eq!(ebs.state(), State::AttachEbs);
    assert!(
        matches!(run_steps(&effects)[..], [Step::AttachEbs { .. }]),
        "{effects:?}"
    );
    assert!(volume_request_of(&effects).is_none());
}

#[test]
fn the_volume_is_requested_once_per_boot_not_per_attach_eni_attempt() {
    let (m, now) = drive_to(State::AttachEni);
    let (waiting, _) = step(&m, failed(&m, retryable("link not yet visible")), now);
    let wake = waiting.next_wake().unwrap();
    let (retried, effects) = step(&waiting, Input::Tick, wake);
    assert!(matches!(run_steps(&effects)[..], [Step::AttachEni { .. }]));
    assert!(volume_request_of(&effects).is_none(), "{effects:?}");
    assert_eq!(retried.volume_requested(), m.volume_requested());
}

#[test]
fn a_drain_or_failure_in_attach_eni_detaches_the_early_requested_volume() {
    let (m, now) = drive_to(State::AttachEni);
    let (_, effects) = step(&m, Input::Drain(DrainReason::Requested), now);
    assert_eq!(
        teardown_of(&effects),
        ["detach_volume", "detach_eni", "release_claim"]
    );
    let (_, effects) = step(&m, failed(&m, fatal("ENI in another zone")), now);
    assert_eq!(
        teardown_of(&effects),
        ["detach_volume", "detach_eni", "release_claim"]
    );
}

/// The fixture settings with the caught-up gate on (a 1 s look interval, a 30 s deadline).
fn gated() -> Machine {
    let mut settings = fixtures::settings(DEADLINE);
    settings.catch_up = Some(CatchUpGate {
        deadline: Duration::from_secs(30),
        poll: Duration::from_secs(1),
    });
    Machine::new(settings, 7)
}

/// A gated machine driven to StartKafka and given Kafka's serving evidence.
fn serving_behind_the_gate() -> (Machine, Vec<Effect>, Duration) {
    let (m, now) = drive(gated(), State::StartKafka);
    let now = now + Duration::from_secs(1);
    let (m, effects) = step(&m, done(&m, Output::Serving(fixtures::serving(0))), now);
    (m, effects, now)
}

#[test]
fn the_gate_reports_healthy_only_once_this_broker_is_in_sync() {
    let (m, effects, now) = serving_behind_the_gate();
    assert_eq!(m.state(), State::StartKafka, "serving is not caught up");
    assert!(matches!(run_steps(&effects)[..], [Step::CatchUp { .. }]));
    assert!(!effects.iter().any(|e| matches!(
        e,
        Effect::SignalStack { .. } | Effect::CompleteLaunch { .. }
    )));

    // Behind: still StartKafka, nothing reported, the next look after the interval.
    let now = now + Duration::from_millis(200);
    let (m, effects) = step(
        &m,
        done(&m, Output::CatchUpView(fixtures::replication(&[1, 2]))),
        now,
    );
    assert_eq!(m.state(), State::StartKafka);
    assert!(effects.is_empty(), "{effects:?}");
    let progress = m
        .facts()
        .catch_up
        .clone()
        .expect("progress kept for /state");
    assert_eq!(progress.behind, ["events-0"]);
    assert_eq!(m.next_wake(), Some(now + Duration::from_secs(1)));
    let (m, effects) = step(&m, Input::Tick, now + Duration::from_secs(1));
    assert!(matches!(run_steps(&effects)[..], [Step::CatchUp { .. }]));

    // In sync: Healthy, SUCCESS and the launch hook's CONTINUE, in that decision.
    let (m, effects) = step(
        &m,
        done(&m, Output::CatchUpView(fixtures::replication(&[1, 2, 0]))),
        now + Duration::from_secs(2),
    );
    assert_eq!(m.state(), State::Healthy);
    assert!(m.is_serving());
    assert!(effects.contains(&Effect::SignalStack {
        identity: Some(fixtures::identity()),
        verdict: Verdict::Success
    }));
    assert!(effects.contains(&Effect::CompleteLaunch {
        identity: fixtures::identity(),
        result: LaunchResult::Continue
    }));
}

#[test]
fn heartbeats_keep_the_launch_hook_alive_while_the_gate_waits() {
    let mut settings = fixtures::settings(DEADLINE);
    settings.heartbeat_interval = Some(Duration::from_secs(5));
    settings.catch_up = Some(CatchUpGate {
        deadline: Duration::from_secs(30),
        poll: Duration::from_secs(1),
    });
    // With a 5 s heartbeat interval, the launch hook hears from berth throughout the wait.
    let (m, mut now) = drive(Machine::new(settings, 7), State::StartKafka);
    let mut m = step(&m, done(&m, Output::Serving(fixtures::serving(0))), now).0;
    let mut beats = Vec::new();
    for _ in 0..20 {
        let (next, effects) = step(
            &m,
            done(&m, Output::CatchUpView(fixtures::replication(&[1]))),
            now,
        );
        now += Duration::from_secs(1);
        let (next, tick) = step(&next, Input::Tick, now);
        if effects
            .iter()
            .chain(&tick)
            .any(|e| matches!(e, Effect::Heartbeat { .. }))
        {
            beats.push(now);
        }
        m = next;
    }
    assert!(
        beats.len() >= 3,
        "a heartbeat every 5 s of a 20 s wait: {beats:?}"
    );
}

#[test]
fn the_gate_fails_the_boot_at_its_deadline_saying_what_is_behind() {
    let (mut m, _, start) = serving_behind_the_gate();
    let mut now = start;
    let effects = loop {
        let (next, effects) = step(
            &m,
            done(&m, Output::CatchUpView(fixtures::replication(&[1, 2]))),
            now,
        );
        m = next;
        if m.state() == State::Failed {
            break effects;
        }
        now += Duration::from_secs(1);
        m = step(&m, Input::Tick, now).0;
    };
    assert!(now < start + Duration::from_secs(31), "{now:?}");
    let reason = m.failure().unwrap();
    assert!(
        reason.contains("kafka.caught_up_deadline (30s)") && reason.contains("events-0"),
        "{reason}"
    );
    assert!(teardown_of(&effects).starts_with(&["stop_kafka"]));
}

#[test]
fn an_unreadable_replication_is_looked_at_again_not_taken_for_caught_up() {
    let (m, _, now) = serving_behind_the_gate();
    let (m, effects) = step(&m, failed(&m, fatal("connection refused")), now);
    assert_eq!(m.state(), State::StartKafka);
    assert!(effects.is_empty(), "{effects:?}");
    assert!(m
        .last_error()
        .unwrap()
        .contains("catch_up: connection refused"));
    let (_, effects) = step(&m, Input::Tick, now + Duration::from_secs(1));
    assert!(matches!(run_steps(&effects)[..], [Step::CatchUp { .. }]));
}

#[test]
fn without_the_gate_serving_is_healthy_at_once() {
    let (m, _) = drive_to(State::Healthy);
    assert!(m.facts().catch_up.is_none());
}

/// A Healthy machine whose drains wait up to `bound` for a safe stop, heartbeating the terminating hook every
/// 10 s.
fn healthy_with_drain_wait(bound: Duration) -> (Machine, Duration) {
    let mut settings = fixtures::settings(DEADLINE);
    settings.drain_wait = Some(bound);
    settings.terminate_heartbeat_interval = Some(Duration::from_secs(10));
    drive(Machine::new(settings, 7), State::Healthy)
}

/// Broker 0 is in sync for `events-0` with `isr`; stopping it is unsafe unless two others are in sync.
fn drain_view(isr: &[u32]) -> Output {
    let mut view = fixtures::replication(isr);
    view.partitions[0].leader = Some(BrokerId(0));
    Output::DrainCheckView(view)
}

#[test]
fn a_drain_checks_first_and_stops_kafka_at_once_when_safe() {
    let (m, now) = healthy_with_drain_wait(Duration::from_secs(300));
    let (m, effects) = step(&m, Input::Drain(DrainReason::LifecycleTerminated), now);
    assert_eq!(m.state(), State::Draining);
    assert!(matches!(run_steps(&effects)[..], [Step::DrainCheck { .. }]));
    assert!(
        teardown_of(&effects).is_empty(),
        "Kafka is not stopped before the check"
    );
    let (m, effects) = step(&m, done(&m, drain_view(&[0, 1, 2])), now);
    assert_eq!(teardown_of(&effects)[0], "stop_kafka");
    assert!(teardown_of(&effects).ends_with(&["release_claim"]));
    let wait = m.drain_wait().unwrap();
    assert!(!wait.active());
    assert!(matches!(wait.outcome, Some(DrainOutcome::Safe(_))));
}

#[test]
fn an_unsafe_drain_waits_with_backoff_and_heartbeats_then_proceeds_at_the_bound() {
    let bound = Duration::from_secs(60);
    let (mut m, start) = healthy_with_drain_wait(bound);
    m = step(&m, Input::Drain(DrainReason::LifecycleTerminated), start).0;
    let mut now = start;
    let (mut checks, mut heartbeats, mut gaps) = (0, 0, Vec::new());
    let effects = loop {
        let mut effects = Vec::new();
        if m.running_step().is_some() {
            checks += 1;
            let (next, answer) = step(&m, done(&m, drain_view(&[0, 1])), now);
            m = next;
            effects.extend(answer);
        }
        if !teardown_of(&effects).is_empty() {
            break effects;
        }
        let wake = m.next_wake().expect("the wait wakes the machine");
        gaps.push(wake - now);
        now = wake;
        let (next, tick) = step(&m, Input::Tick, now);
        heartbeats += tick
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    Effect::Heartbeat {
                        hook: LifecycleHook::Terminate,
                        ..
                    }
                )
            })
            .count();
        m = next;
        if !teardown_of(&tick).is_empty() {
            break tick;
        }
    };
    assert_eq!(now, start + bound, "proceeds exactly at the bound");
    assert!(checks >= 4, "looked again while waiting: {checks}");
    assert_eq!(
        heartbeats, 6,
        "the terminate hook heard from berth every 10 s (and goes on hearing through the teardown)"
    );
    assert_eq!(teardown_of(&effects)[0], "stop_kafka");
    let wait = m.drain_wait().unwrap();
    let Some(DrainOutcome::BoundReached(why)) = &wait.outcome else {
        panic!("the bound was reached: {wait:?}");
    };
    assert!(why.contains("events-0: 1/2"), "{why}");
    assert_eq!(wait.waited(now + Duration::from_secs(100)), bound);
    assert!(m.running_step().is_none());
}

#[test]
fn a_failed_check_is_waited_on_like_an_unsafe_one() {
    let (m, now) = healthy_with_drain_wait(Duration::from_secs(300));
    let (m, _) = step(&m, Input::Drain(DrainReason::Requested), now);
    let (m, effects) = step(&m, failed(&m, retryable("connection refused")), now);
    assert!(teardown_of(&effects).is_empty());
    assert!(m
        .drain_wait()
        .unwrap()
        .last
        .as_deref()
        .unwrap()
        .contains("connection refused"));
    let (m, effects) = step(&m, Input::Tick, m.next_wake().unwrap());
    assert!(matches!(run_steps(&effects)[..], [Step::DrainCheck { .. }]));
    let (_, effects) = step(
        &m,
        done(&m, drain_view(&[0, 1, 2])),
        now + Duration::from_secs(5),
    );
    assert_eq!(teardown_of(&effects)[0], "stop_kafka");
}

#[test]
fn a_spot_interruption_skips_the_wait_or_cuts_it_short() {
    let (m, now) = healthy_with_drain_wait(Duration::from_secs(300));
    let (spot, effects) = step(&m, Input::Drain(DrainReason::SpotInterruption), now);
    assert!(run_steps(&effects).is_empty(), "no check on a spot notice");
    assert_eq!(teardown_of(&effects)[0], "stop_kafka");
    assert!(matches!(
        &spot.drain_wait().unwrap().outcome,
        Some(DrainOutcome::Skipped(why)) if why.contains("spot interruption")
    ));

    // A lifecycle drain waiting when the spot notice arrives: the check is abandoned, Kafka stops now.
    let (m, _) = step(&m, Input::Drain(DrainReason::LifecycleTerminated), now);
    let (m, _) = step(&m, done(&m, drain_view(&[0, 1])), now);
    let (m, effects) = step(
        &m,
        Input::Drain(DrainReason::SpotInterruption),
        now + Duration::from_secs(2),
    );
    assert_eq!(teardown_of(&effects)[0], "stop_kafka");
    assert!(matches!(
        m.drain_wait().unwrap().outcome,
        Some(DrainOutcome::CutShort(_))
    ));
    // ...and the teardown, once started, is not started again.
    let (_, effects) = step(
        &m,
        Input::Drain(DrainReason::Requested),
        now + Duration::from_secs(3),
    );
    assert!(effects.is_empty());
}

#[test]
fn a_stop_while_the_drain_waits_finishes_the_drain() {
    let (m, now) = healthy_with_drain_wait(Duration::from_secs(300));
    let (m, _) = step(&m, Input::Drain(DrainReason::LifecycleTerminated), now);
    let (m, effects) = step(&m, Input::Stop, now + Duration::from_secs(1));
    assert!(effects.contains(&Effect::Cancel));
    assert_eq!(teardown_of(&effects)[0], "stop_kafka");
    assert!(!effects.contains(&Effect::Exit(ExitReason::Stopped)));
    let (_, effects) = step(&m, Input::TeardownDone, now + Duration::from_secs(2));
    assert_eq!(
        effects,
        vec![
            Effect::CompleteTermination {
                identity: fixtures::identity()
            },
            Effect::Exit(ExitReason::Drained)
        ],
        "after a stop, the completion is sent and the daemon exits without its answer"
    );
}

#[test]
fn a_drain_before_kafka_started_does_not_check() {
    let mut settings = fixtures::settings(DEADLINE);
    settings.drain_wait = Some(Duration::from_secs(300));
    let (m, _) = step(&Machine::new(settings, 7), Input::Start, Duration::ZERO);
    let (m, effects) = step(
        &m,
        Input::Drain(DrainReason::LifecycleTerminated),
        Duration::from_secs(1),
    );
    assert!(run_steps(&effects).is_empty());
    assert_eq!(teardown_of(&effects), ["release_claim"]);
    assert!(matches!(
        m.drain_wait().unwrap().outcome,
        Some(DrainOutcome::Skipped(_))
    ));
}

/// The events of `input` at `now`, with the next machine.
fn events(machine: &Machine, input: Input, now: Duration) -> (Machine, Vec<MachineEvent>) {
    let decision = machine.decide(&input, now).expect("valid input");
    (decision.machine, decision.events)
}

#[test]
fn a_decision_says_what_happened_in_order() {
    let (m, now) = drive_to(State::Route);
    let (m, said) = events(&m, done(&m, Output::Routed), now);
    assert_eq!(
        said,
        [
            MachineEvent::StepDone {
                step: StepKind::Boot(State::Route)
            },
            MachineEvent::Transition {
                from: State::Route,
                to: State::AttachEbs
            }
        ]
    );
    let (m, said) = events(&m, failed(&m, retryable("throttled")), now);
    assert_eq!(
        said,
        [MachineEvent::StepFailed {
            step: StepKind::Boot(State::AttachEbs),
            error: retryable("throttled"),
            state: State::AttachEbs,
            attempts: 1
        }],
        "a retry is no transition"
    );
    let retry_at = m.next_wake().unwrap();
    let (m, _) = step(&m, Input::Tick, retry_at);
    let (_, said) = events(&m, failed(&m, fatal("vol-0 in another zone")), retry_at);
    assert!(
        matches!(
            &said[..],
            [
                MachineEvent::StepFailed { attempts: 2, .. },
                MachineEvent::Transition {
                    from: State::AttachEbs,
                    to: State::Failed
                }
            ]
        ),
        "{said:?}"
    );
}

#[test]
fn the_claims_loss_and_return_are_said() {
    let (m, now) = drive_to(State::Healthy);
    let (lost, said) = events(&m, Input::ClaimLost, now);
    assert_eq!(said, [MachineEvent::ClaimLost]);
    let (waiting, said) = events(&lost, taken(&lost, true), now);
    assert!(
        matches!(&said[..], [MachineEvent::Waiting { step: StepKind::Reclaim, reason }] if reason.contains("still attached here")),
        "{said:?}"
    );
    let (retrying, _) = step(&waiting, Input::Tick, waiting.next_wake().unwrap());
    let (_, said) = events(&retrying, reclaimed(&retrying, ReclaimOutcome::Held), now);
    assert_eq!(said, [MachineEvent::ClaimReestablished]);
}

#[test]
fn the_gate_and_the_drain_say_what_they_wait_for_and_how_it_ended() {
    let (m, _, now) = serving_behind_the_gate();
    let (m, said) = events(
        &m,
        done(&m, Output::CatchUpView(fixtures::replication(&[1, 2]))),
        now,
    );
    assert!(
        matches!(
            &said[..],
            [MachineEvent::StepDone { step: StepKind::CatchUp }, MachineEvent::Waiting { step: StepKind::CatchUp, reason }]
                if reason.contains("events-0")
        ),
        "{said:?}"
    );
    let (m, _) = step(&m, Input::Tick, m.next_wake().unwrap());
    let (_, said) = events(
        &m,
        done(&m, Output::CatchUpView(fixtures::replication(&[1, 2, 0]))),
        now + Duration::from_secs(2),
    );
    assert!(
        matches!(
            &said[..],
            [
                MachineEvent::StepDone { .. },
                MachineEvent::CaughtUp(progress),
                MachineEvent::Transition { to: State::Healthy, .. }
            ] if progress.caught_up()
        ),
        "{said:?}"
    );

    let (m, now) = healthy_with_drain_wait(Duration::from_secs(300));
    let (m, said) = events(&m, Input::Drain(DrainReason::LifecycleTerminated), now);
    assert_eq!(
        said,
        [MachineEvent::Transition {
            from: State::Healthy,
            to: State::Draining
        }]
    );
    let (m, said) = events(&m, done(&m, drain_view(&[0, 1])), now);
    assert!(
        matches!(&said[1..], [MachineEvent::Waiting { step: StepKind::DrainCheck, reason }] if reason.contains("events-0")),
        "{said:?}"
    );
    let later = now + Duration::from_secs(3);
    let (m, _) = step(&m, Input::Tick, m.next_wake().unwrap());
    let (_, said) = events(&m, done(&m, drain_view(&[0, 1, 2])), later);
    assert!(
        matches!(
            &said[1..],
            [MachineEvent::DrainDecided { outcome: DrainOutcome::Safe(_), waited }] if *waited == Duration::from_secs(3)
        ),
        "{said:?}"
    );
}

/// A Healthy machine with a terminate hook whose action hears a heartbeat every 10 s.
fn healthy_with_terminate_hook() -> (Machine, Duration) {
    let mut settings = fixtures::settings(DEADLINE);
    settings.terminate_heartbeat_interval = Some(Duration::from_secs(10));
    settings.terminate_hook = true;
    drive(Machine::new(settings, 7), State::Healthy)
}

fn terminate_heartbeats(effects: &[Effect]) -> usize {
    effects
        .iter()
        .filter(|e| {
            matches!(
                e,
                Effect::Heartbeat {
                    hook: LifecycleHook::Terminate,
                    ..
                }
            )
        })
        .count()
}

fn terminate_answered(answer: HookAnswer) -> Input {
    Input::HookAnswered {
        hook: LifecycleHook::Terminate,
        answer,
    }
}

/// Ticks `m` every second from `from` to `to`; the terminate heartbeats sent meanwhile.
fn tick_through(m: Machine, from: Duration, to: Duration) -> (Machine, usize) {
    let (mut m, mut now, mut beats) = (m, from, 0);
    while now < to {
        now += Duration::from_secs(1);
        let (next, effects) = step(&m, Input::Tick, now);
        beats += terminate_heartbeats(&effects);
        m = next;
    }
    (m, beats)
}

#[test]
fn the_terminate_action_is_kept_alive_through_the_teardown_and_completed_once_released() {
    let (m, now) = healthy_with_terminate_hook();
    let (m, effects) = step(&m, Input::Drain(DrainReason::LifecycleTerminated), now);
    assert_eq!(terminate_heartbeats(&effects), 1, "a heartbeat at once");
    assert!(
        !teardown_of(&effects).is_empty(),
        "no drain wait configured"
    );
    // A teardown of 60 s (Kafka's stop, a throttled detach): the action hears from berth all along.
    let (m, beats) = tick_through(m, now, now + Duration::from_secs(60));
    assert_eq!(beats, 6, "every 10 s while the teardown runs");
    let (m, effects) = step(&m, Input::TeardownDone, now + Duration::from_secs(61));
    assert_eq!(
        effects,
        vec![Effect::CompleteTermination {
            identity: fixtures::identity()
        }]
    );
    // CONTINUE is retried (throttled) for a minute: heartbeats go on, the daemon waits for the answer.
    let (m, beats) = tick_through(
        m,
        now + Duration::from_secs(61),
        now + Duration::from_secs(121),
    );
    assert_eq!(beats, 6, "heartbeats while CONTINUE is retried");
    let (m, effects) = step(
        &m,
        terminate_answered(HookAnswer::Completed),
        now + Duration::from_secs(122),
    );
    assert_eq!(effects, vec![Effect::Exit(ExitReason::Drained)]);
    assert_eq!(m.lifecycle().1, HookAction::Over);
}

#[test]
fn a_lifecycle_notice_during_a_spot_drain_completes_the_terminate_hook_too() {
    let (m, now) = healthy_with_terminate_hook();
    let (spot, effects) = step(&m, Input::Drain(DrainReason::SpotInterruption), now);
    assert_eq!(teardown_of(&effects)[0], "stop_kafka");
    assert_eq!(terminate_heartbeats(&effects), 0, "no terminate action yet");
    // The group puts the instance in Terminating:Wait while the spot drain tears down.
    let later = now + Duration::from_secs(5);
    let (m, effects) = step(&spot, Input::Drain(DrainReason::LifecycleTerminated), later);
    assert!(teardown_of(&effects).is_empty(), "one teardown only");
    assert_eq!(terminate_heartbeats(&effects), 1);
    let (m, effects) = step(&m, Input::TeardownDone, later + Duration::from_secs(1));
    assert_eq!(
        effects,
        vec![Effect::CompleteTermination {
            identity: fixtures::identity()
        }]
    );
    let answer = terminate_answered(HookAnswer::NotAwaited("no action".into()));
    let (_, effects) = step(&m, answer, later + Duration::from_secs(2));
    assert_eq!(effects, vec![Effect::Exit(ExitReason::Drained)]);
}

#[test]
fn a_heartbeat_nothing_awaits_ends_the_terminate_action_and_no_continue_follows() {
    let (m, now) = healthy_with_terminate_hook();
    let (m, _) = step(&m, Input::Drain(DrainReason::LifecycleTerminated), now);
    let answer = terminate_answered(HookAnswer::NotAwaited("expired".into()));
    let (m, _) = step(&m, answer, now + Duration::from_secs(1));
    let (m, beats) = tick_through(
        m,
        now + Duration::from_secs(1),
        now + Duration::from_secs(40),
    );
    assert_eq!(beats, 0);
    let (_, effects) = step(&m, Input::TeardownDone, now + Duration::from_secs(41));
    assert_eq!(effects, vec![Effect::Exit(ExitReason::Drained)]);
}

/// A machine failed in Mount (the volume refused) and released, its report sent: the report's effects.
fn failed_and_released(settings: berth_core::Settings) -> (Machine, Duration) {
    let (m, now) = drive(Machine::new(settings, 7), State::Mount);
    let (m, _) = step(&m, failed(&m, fatal("not blank")), now);
    let (m, effects) = step(&m, Input::TeardownDone, now + Duration::from_secs(1));
    assert!(
        matches!(effects[..], [Effect::ReportFailure { .. }]),
        "{effects:?}"
    );
    (m, now + Duration::from_secs(1))
}

#[test]
fn a_failure_report_that_does_not_land_is_sent_again_with_backoff_for_as_long_as_it_takes() {
    let (mut m, mut now) = failed_and_released(fixtures::settings(DEADLINE));
    let mut gaps = Vec::new();
    for attempt in 1..=8u32 {
        let error = retryable("ABANDON: Throttling; SetInstanceHealth: Throttling");
        let (next, effects) = step(&m, Input::FailureReported(Err(error)), now);
        assert!(
            !effects.iter().any(|e| matches!(e, Effect::Exit(_))),
            "never exits into silence: {effects:?}"
        );
        let Some(FailureReportState::NotLanded {
            attempts,
            error,
            retry_at,
        }) = next.failure_report().cloned()
        else {
            panic!("{:?}", next.failure_report());
        };
        assert_eq!(attempts, attempt);
        assert!(error.contains("SetInstanceHealth"), "{error}");
        assert_eq!(next.next_wake(), Some(retry_at));
        let (early, effects) = step(&next, Input::Tick, retry_at - Duration::from_millis(1));
        assert!(effects.is_empty(), "{effects:?}");
        let (sent, effects) = step(&early, Input::Tick, retry_at);
        assert!(
            matches!(effects[..], [Effect::ReportFailure { .. }]),
            "{effects:?}"
        );
        gaps.push(retry_at - now);
        (m, now) = (sent, retry_at);
    }
    assert!(
        gaps[0] >= Duration::from_secs(15) && gaps[0] <= Duration::from_secs(30),
        "{gaps:?}"
    );
    assert!(
        gaps.iter().all(|gap| *gap <= Duration::from_secs(300)),
        "{gaps:?}"
    );
    assert!(
        gaps.last().unwrap() >= &Duration::from_secs(150),
        "backs off: {gaps:?}"
    );
    let (_, effects) = step(
        &m,
        Input::FailureReported(Ok(FailureReport::MarkedUnhealthy)),
        now,
    );
    assert_eq!(
        effects,
        vec![Effect::Exit(ExitReason::Failed)],
        "no terminate hook: exits"
    );
}

#[test]
fn reported_unhealthy_with_a_terminate_hook_waits_for_the_notice_and_completes_it() {
    let mut settings = fixtures::settings(DEADLINE);
    settings.terminate_hook = true;
    settings.terminate_heartbeat_interval = Some(Duration::from_secs(10));
    let (m, now) = failed_and_released(settings);
    let (waiting, effects) = step(
        &m,
        Input::FailureReported(Ok(FailureReport::MarkedUnhealthy)),
        now,
    );
    assert!(
        effects.is_empty(),
        "waits for the group to terminate it: {effects:?}"
    );
    let later = now + Duration::from_secs(7);
    let (m, effects) = step(
        &waiting,
        Input::Drain(DrainReason::LifecycleTerminated),
        later,
    );
    assert!(teardown_of(&effects).is_empty(), "released already");
    assert!(effects.contains(&Effect::CompleteTermination {
        identity: fixtures::identity()
    }));
    let (_, effects) = step(&m, terminate_answered(HookAnswer::Completed), later);
    assert_eq!(effects, vec![Effect::Exit(ExitReason::Failed)]);
    // A SIGTERM while it waits (the host shuts down): it exits non-zero.
    let (_, effects) = step(&waiting, Input::Stop, later);
    assert_eq!(effects, vec![Effect::Exit(ExitReason::Failed)]);
}

#[test]
fn a_termination_notice_during_a_failures_release_is_completed_after_it() {
    let mut settings = fixtures::settings(DEADLINE);
    settings.terminate_heartbeat_interval = Some(Duration::from_secs(10));
    let (m, now) = drive(Machine::new(settings, 7), State::StartKafka);
    let (m, _) = step(&m, failed(&m, fatal("Kafka refused")), now);
    let (m, effects) = step(&m, Input::Drain(DrainReason::LifecycleTerminated), now);
    assert!(teardown_of(&effects).is_empty(), "one release: {effects:?}");
    assert_eq!(terminate_heartbeats(&effects), 1, "kept alive meanwhile");
    let (m, effects) = step(&m, Input::TeardownDone, now + Duration::from_secs(1));
    assert_eq!(
        effects,
        vec![
            Effect::ReportFailure {
                identity: Some(fixtures::identity())
            },
            Effect::CompleteTermination {
                identity: fixtures::identity()
            }
        ]
    );
    let (m, effects) = step(
        &m,
        Input::FailureReported(Ok(FailureReport::Abandoned)),
        now,
    );
    assert!(
        effects.is_empty(),
        "the terminate action's answer is awaited: {effects:?}"
    );
    let (_, effects) = step(&m, terminate_answered(HookAnswer::Completed), now);
    assert_eq!(effects, vec![Effect::Exit(ExitReason::Failed)]);
}

#[test]
fn a_stop_during_a_release_exits_once_released_without_waiting_for_auto_scaling() {
    let (m, now) = drive_to(State::StartKafka);
    let (m, _) = step(&m, failed(&m, fatal("broken")), now);
    let (m, effects) = step(&m, Input::Stop, now);
    assert!(
        effects.is_empty(),
        "the release finishes first: {effects:?}"
    );
    let (_, effects) = step(&m, Input::TeardownDone, now + Duration::from_secs(1));
    assert_eq!(
        effects,
        vec![
            Effect::ReportFailure {
                identity: Some(fixtures::identity())
            },
            Effect::Exit(ExitReason::Failed)
        ],
        "the report is sent (the daemon's exit grace lets it land) and the daemon exits"
    );
}

/// A machine whose claim was lost while `target` ran (a reclaim runs), then left: drained (Healthy) or failed
/// (the running Mount step refused the volume). Both start a teardown.
fn leaving_with_a_reclaim_running(leave: &str) -> (Machine, Duration) {
    let target = if leave == "drain" {
        State::Healthy
    } else {
        State::Mount
    };
    let (m, now) = drive_to(target);
    let (m, _) = step(&m, Input::ClaimLost, now);
    assert!(m.running_reclaim().is_some());
    let (m, effects) = if leave == "drain" {
        step(&m, Input::Drain(DrainReason::Requested), now)
    } else {
        step(&m, failed(&m, fatal("not blank")), now)
    };
    assert!(!teardown_of(&effects).is_empty(), "{leave}: {effects:?}");
    assert!(m.running_reclaim().is_some(), "the reclaim still runs");
    (m, now)
}

#[test]
fn a_reclaim_answering_while_the_daemon_leaves_starts_no_second_teardown_and_no_reclaim() {
    for leave in ["drain", "failure"] {
        let expected = if leave == "drain" {
            State::Draining
        } else {
            State::Failed
        };
        // Taken, and the ENI gone from here: before, this failed the machine again (a second teardown).
        let (m, now) = leaving_with_a_reclaim_running(leave);
        let (after, effects) = step(&m, taken(&m, false), now + Duration::from_secs(1));
        assert_eq!(after.state(), expected, "{leave}");
        assert!(effects.is_empty(), "{leave}: recorded only: {effects:?}");
        // Taken while the ENI is here: before, this scheduled another reclaim during the teardown.
        let (m, now) = leaving_with_a_reclaim_running(leave);
        let (after, _) = step(&m, taken(&m, true), now + Duration::from_secs(1));
        assert_eq!(after.next_wake(), None, "{leave}: nothing scheduled");
        let (_, effects) = step(&after, Input::Tick, now + Duration::from_secs(120));
        assert!(run_steps(&effects).is_empty(), "{leave}: {effects:?}");
        // A reclaim that fails while leaving is not tried again either.
        let (m, now) = leaving_with_a_reclaim_running(leave);
        let (after, _) = step(&m, reclaim_failed(&m, retryable("zk down")), now);
        assert_eq!(after.next_wake(), None, "{leave}");
        assert_eq!(after.state(), expected);
    }
}

/// A view in which everything is in sync, but that does not let berth judge (an ACL hides a topic this broker
/// hosts): the gate stays shut and the drain waits, each saying why.
#[test]
fn an_answer_that_cannot_be_judged_holds_the_gate_and_the_drain() {
    let unjudged = |isr: &[u32]| {
        let mut view = fixtures::replication(isr);
        view.cannot_judge =
            vec!["this broker's log dirs hold topic secret, which Metadata leaves out".into()];
        view
    };
    let (m, _, now) = serving_behind_the_gate();
    let (m, said) = events(&m, done(&m, Output::CatchUpView(unjudged(&[0, 1, 2]))), now);
    assert!(
        matches!(
            &said[..],
            [MachineEvent::StepDone { .. }, MachineEvent::Waiting { step: StepKind::CatchUp, reason }]
                if reason.starts_with("cannot judge whether this broker is caught up: this broker's log dirs hold topic secret")
        ),
        "{said:?}"
    );
    assert_eq!(m.state(), State::StartKafka, "not Healthy");
    let progress = m.facts().catch_up.clone().expect("progress in /state");
    assert!(!progress.caught_up() && progress.cannot_judge.len() == 1);

    let (m, now) = healthy_with_drain_wait(Duration::from_secs(300));
    let m = step(&m, Input::Drain(DrainReason::LifecycleTerminated), now).0;
    let mut view = unjudged(&[0, 1, 2]);
    view.partitions[0].leader = Some(BrokerId(0));
    let (m, said) = events(&m, done(&m, Output::DrainCheckView(view)), now);
    assert!(
        matches!(&said[1..], [MachineEvent::Waiting { step: StepKind::DrainCheck, reason }]
            if reason.starts_with("cannot judge whether stopping this broker is safe")),
        "{said:?}"
    );
    let wait = m.drain_wait().unwrap();
    assert!(wait.active(), "Kafka is not stopped");
    assert!(wait.last.as_deref().unwrap().contains("topic secret"));
}
