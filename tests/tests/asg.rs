//! The Auto Scaling and CloudFormation contract, end to end on the simulated Auto Scaling group (strict
//! endpoint, real berth, real ZooKeeper ensemble, strict moto, namespaces, loop devices):
//!
//! * a replacement outside any stack update goes InService (its SignalResource is refused, its launch hook is
//!   completed all the same), though CompleteLifecycleAction is throttled for a minute from its first call
//!   (longer than the launch hook's heartbeat timeout): heartbeats keep the action, CONTINUE lands, never
//!   ABANDONed;
//! * SIGTERM stops berth and keeps the broker, and the restarted berth adopts it without restarting Kafka;
//! * a lifecycle `Terminated` state drains, and the terminate hook is completed; so does an operator's
//!   `berth drain`;
//! * a spot interruption drains (no wait for replicas), and the terminate hook is completed before EC2 would
//!   reclaim the instance;
//! * a refused volume leads to a replaced instance, with the volume's bytes unchanged, also when its ABANDON is
//!   refused (reported Unhealthy instead);
//! * a two-minute ZooKeeper outage keeps Kafka up, and the claim comes back.
//!
//! The tests share one binary so the long outage test runs beside the others.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use berth_e2e::{
    alive, all_healthy, assert_converged, assert_unique_ids, claimed_ids, data_path, kafka_pid,
    write_record,
};
use berth_sim::asg;
use berth_sim::{Fleet, FleetOptions, StateView};
use berth_testkit::aws::autoscaling::LifecycleState;
use berth_testkit::aws::Fault;
use nix::sys::signal::Signal;

const BOOT: Duration = Duration::from_secs(90);
/// How long CompleteLifecycleAction is throttled from its first call (AWS's burst during an AZ-wide replacement;
/// longer than the simulated launch hook's heartbeat timeout, 60 s).
const THROTTLE: Duration = Duration::from_secs(60);
/// How long each of a drain's detaches (volume, then ENI) is throttled from its first call: together longer than
/// twice the simulated hooks' heartbeat timeout (60 s), each within berth's limit for one teardown action (120 s).
const DETACH_THROTTLE: Duration = Duration::from_secs(65);

/// Waits until every zone's member is launched, Healthy and in service; returns their hosts' Healthy states, in
/// zone order.
async fn boot(fleet: &Fleet) -> anyhow::Result<(Vec<usize>, Vec<berth_sim::StateView>)> {
    let count = fleet.options().zones * fleet.options().asg.per_zone;
    asg::wait_members(fleet, "every zone launched", BOOT, |members| {
        members.len() == count
    })
    .await?;
    let hosts: Vec<usize> = asg::members(fleet)
        .iter()
        .filter_map(|m| {
            asg::host_of(fleet, &m.instance_id).map(|h| (m.availability_zone.clone(), h.index))
        })
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_values()
        .collect();
    let states = all_healthy(fleet, &hosts, BOOT).await?;
    asg::wait_all_in_service(fleet, BOOT).await?;
    Ok((hosts, states))
}

/// The member that replaced `old` in its zone, once there is one; its host index.
async fn replacement_of(fleet: &Fleet, old: &str, zone: &str) -> anyhow::Result<(String, usize)> {
    let members = asg::wait_members(fleet, "a replacement", BOOT, |members| {
        members
            .iter()
            .any(|m| m.availability_zone == zone && m.instance_id != old)
    })
    .await?;
    let instance = members
        .into_iter()
        .find(|m| m.availability_zone == zone && m.instance_id != old)
        .context("replacement")?
        .instance_id;
    let host = asg::host_of(fleet, &instance)
        .context("replacement host")?
        .index;
    Ok((instance, host))
}

async fn in_service(fleet: &Fleet, instance: &str) -> anyhow::Result<()> {
    in_service_within(fleet, instance, BOOT).await
}

async fn in_service_within(fleet: &Fleet, instance: &str, timeout: Duration) -> anyhow::Result<()> {
    asg::wait_members(
        fleet,
        &format!("{instance} in service"),
        timeout,
        |members| {
            members
                .iter()
                .any(|m| m.instance_id == instance && m.state == LifecycleState::InService)
        },
    )
    .await
    .map(drop)
}

#[test]
fn the_group_replaces_a_dead_broker_keeps_one_across_sigterm_and_drains_one_it_terminates() {
    if !berth_testkit::require_root("asg_replace_keep_drain") {
        return;
    }
    asg::with_group(FleetOptions::default(), |fleet| async move {
        replace_keep_drain(&fleet).await
    })
    .expect("replace, keep across SIGTERM, drain on Terminated");
}

async fn replace_keep_drain(fleet: &Fleet) -> anyhow::Result<()> {
    let (hosts, states) = boot(fleet).await?;
    assert_unique_ids(&states, 3)?;
    let stack = asg::stack_name(&fleet.options().cluster);
    ensure!(
        fleet
            .aws()
            .read(|plane| plane.stacks.status(&stack))
            .map(|s| s.as_str())
            == Some("CREATE_COMPLETE"),
        "the CreationPolicy took one SUCCESS per broker"
    );
    let mut records = Vec::new();
    for (&host, state) in hosts.iter().zip(&states) {
        records.push(write_record(fleet, host, state.broker_id.context("id")?)?);
    }
    let step = Instant::now();
    fleet
        .proxy()
        .sustain("CompleteLifecycleAction", Fault::Throttle, THROTTLE, None);
    let (replacement, replaced) =
        replaced_outside_a_stack_update(fleet, hosts[0], &states[0], &records[0]).await?;
    println!("step replaced (CONTINUE throttled): {:?}", step.elapsed());
    sigterm_keeps_the_broker(fleet, hosts[1], &states[1]).await?;
    let step = Instant::now();
    terminated_drains_then_is_replaced(fleet, hosts[2], &states[2], &records[2]).await?;
    println!("step drained (detaches throttled): {:?}", step.elapsed());
    let step = Instant::now();
    spot_interruption_drains(fleet, hosts[1], &states[1]).await?;
    println!("step spot interruption: {:?}", step.elapsed());
    berth_drain(fleet, replacement, &replaced).await
}

/// A replacement outside any stack update: CloudFormation refuses its signal; the hook is completed anyway. The
/// replacement's host index and state.
async fn replaced_outside_a_stack_update(
    fleet: &Fleet,
    host: usize,
    state: &StateView,
    record: &str,
) -> anyhow::Result<(usize, StateView)> {
    let dead = fleet.host(host)?;
    fleet.kill_host(host, None).await?;
    let zone = berth_sim::layout::zone_name(dead.az);
    let (instance, replacement) = replacement_of(fleet, &dead.instance.id, &zone).await?;
    let replaced = fleet.wait_healthy(replacement, BOOT).await?;
    in_service_within(fleet, &instance, THROTTLE + BOOT).await?;
    throttled_continue_landed(fleet, &instance)?;
    ensure!(
        replaced.broker_id == state.broker_id,
        "replacement is {:?}",
        replaced.broker_id
    );
    let path = data_path(fleet, replacement)?;
    let read =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    ensure!(read == record, "data: read {read:?}, written {record:?}");
    let signals = fleet.aws().calls_from("SignalResource", &instance);
    ensure!(
        signals.iter().any(|c| c
            .refusal()
            .is_some_and(|m| m.ends_with("is in CREATE_COMPLETE state and cannot be signaled"))),
        "SignalResource refused outside a stack operation: {signals:?}"
    );
    ensure!(
        signals.len() == 1,
        "a refused signal is not retried: {signals:?}"
    );
    let hooks = fleet.aws().calls_from("CompleteLifecycleAction", &instance);
    ensure!(
        hooks.iter().any(|c| c.accepted()
            && c.param("LifecycleHookName") == Some(asg::LAUNCH_HOOK)
            && c.param("LifecycleActionResult") == Some("CONTINUE")),
        "launch hook completed CONTINUE: {hooks:?}"
    );
    assert_converged(fleet, replacement, &replaced).await?;

    Ok((replacement, replaced))
}

/// CompleteLifecycleAction was throttled for [`THROTTLE`] from the replacement's first CONTINUE: the launch
/// action outlived its heartbeat timeout on heartbeats, CONTINUE was retried until it landed, nothing ABANDONed.
fn throttled_continue_landed(fleet: &Fleet, instance: &str) -> anyhow::Result<()> {
    let throttled = fleet.proxy().faulted("CompleteLifecycleAction");
    ensure!(
        throttled >= 3,
        "CONTINUE throttled and retried: {throttled} throttled calls"
    );
    let hooks = fleet.aws().calls_from("CompleteLifecycleAction", instance);
    ensure!(
        hooks
            .iter()
            .all(|c| c.param("LifecycleActionResult") == Some("CONTINUE")),
        "never ABANDONed: {hooks:?}"
    );
    launch_action_kept(fleet, instance, 2, "CONTINUE was throttled")
}

/// SIGTERM stops berth, not the broker; a restarted berth adopts it without restarting Kafka.
async fn sigterm_keeps_the_broker(
    fleet: &Fleet,
    kept: usize,
    kept_state: &StateView,
) -> anyhow::Result<()> {
    let kafka = kafka_pid(fleet, kept)?.context("Kafka runs")?;
    fleet.signal_berth(kept, Signal::SIGTERM)?;
    let code = fleet.wait_berth_exit(kept, Duration::from_secs(30)).await?;
    ensure!(code == Some(0), "SIGTERM exit code {code:?}");
    let id = kept_state.broker_id.context("id")?;
    ensure!(
        claimed_ids(fleet).await?.contains(&id.to_string()),
        "the claim outlives berth (until its session times out)"
    );
    ensure!(alive(kafka), "Kafka (pid {kafka}) stopped with berth");
    assert_converged(fleet, kept, kept_state)
        .await
        .context("ENI, volume, address, routes, rule and mount all left in place")?;
    let restarted = Instant::now();
    fleet.start_berth(kept)?;
    let adopted = fleet.wait_healthy(kept, BOOT).await?;
    println!(
        "restarted berth Healthy {:?} after its start (time_to_healthy {:?} ms), Kafka pid {kafka} kept",
        restarted.elapsed(),
        adopted.time_to_healthy_ms
    );
    ensure!(
        adopted.broker_id == Some(id),
        "adopted as {:?}",
        adopted.broker_id
    );
    ensure!(
        kafka_pid(fleet, kept)? == Some(kafka),
        "Kafka was restarted"
    );
    assert_converged(fleet, kept, &adopted).await?;

    Ok(())
}

/// A lifecycle Terminated state drains: everything released, the terminate hook completed, replaced at once.
/// The drain's detaches are throttled for [`DETACH_THROTTLE`] each, so its teardown outlasts the terminate hook's
/// heartbeat timeout (kept by heartbeats) and the replacement waits in Claim for twice the launch hook's (kept
/// by heartbeats from its first second).
async fn terminated_drains_then_is_replaced(
    fleet: &Fleet,
    host: usize,
    state: &StateView,
    record: &str,
) -> anyhow::Result<()> {
    let leaving = fleet.host(host)?;
    for detach in ["DetachVolume", "DetachNetworkInterface"] {
        fleet
            .proxy()
            .sustain(detach, Fault::Throttle, DETACH_THROTTLE, None);
    }
    fleet.aws().with(|plane| {
        plane
            .autoscaling
            .terminate(&leaving.instance.id, "a test scales in", Instant::now())
    });
    let zone = berth_sim::layout::zone_name(leaving.az);
    let (instance, successor) = replacement_of(fleet, &leaving.instance.id, &zone).await?;
    let after = fleet
        .wait_healthy(successor, DETACH_THROTTLE * 2 + BOOT)
        .await?;
    in_service(fleet, &instance).await?;
    claim_waited_twice_the_hook_timeout(fleet, &instance, &after)?;
    let completed = fleet
        .aws()
        .calls_from("CompleteLifecycleAction", &leaving.instance.id);
    ensure!(
        completed.iter().any(|c| c.accepted()
            && c.param("LifecycleHookName") == Some(asg::TERMINATE_HOOK)
            && c.param("LifecycleActionResult") == Some("CONTINUE")),
        "terminate hook completed by the drained berth: {completed:?}"
    );
    let history = asg::history(fleet);
    ensure!(
        history
            .iter()
            .any(|line| line.contains(&leaving.instance.id)
                && line.contains("berth exited with status 0")
                && line.contains("held ENIs [], volumes []")),
        "the drained berth released both and exited 0 before its instance was terminated: {history:#?}"
    );
    ensure!(
        after.broker_id == state.broker_id,
        "successor is {:?}",
        after.broker_id
    );
    let attempts = |state: &str| {
        after
            .timeline
            .iter()
            .find(|t| t.state == state)
            .map(|t| t.attempts)
    };
    ensure!(
        attempts("attach_eni") == Some(1) && attempts("attach_ebs") == Some(1),
        "the drain released the ENI and volume, so the successor attached them at once: {:?}",
        after.timeline
    );
    ensure!(
        std::fs::read_to_string(data_path(fleet, successor)?)? == record,
        "data"
    );
    assert_converged(fleet, successor, &after).await?;
    Ok(())
}

/// The replacement waited in Claim (its predecessor draining) for twice the launch hook's heartbeat timeout, and
/// its launch action was kept: heartbeats from the first second, never timed out.
fn claim_waited_twice_the_hook_timeout(
    fleet: &Fleet,
    instance: &str,
    after: &StateView,
) -> anyhow::Result<()> {
    let hook_timeout = fleet.options().asg.launch_timeout;
    let claim = after
        .timeline
        .iter()
        .find(|t| t.state == "claim")
        .context("a claim on the timeline")?;
    ensure!(
        Duration::from_millis(claim.duration_ms) >= hook_timeout * 2,
        "the replacement waited in Claim {} ms, not twice the launch hook's {hook_timeout:?}",
        claim.duration_ms
    );
    launch_action_kept(fleet, instance, 4, "Claim waited")
}

/// `instance`'s launch action heard at least `beats` accepted heartbeats (while `meanwhile`) and never timed out.
fn launch_action_kept(
    fleet: &Fleet,
    instance: &str,
    beats: usize,
    meanwhile: &str,
) -> anyhow::Result<()> {
    let heard = fleet
        .aws()
        .calls_from("RecordLifecycleActionHeartbeat", instance);
    ensure!(
        heard.iter().filter(|c| c.accepted()).count() >= beats,
        "the launch action heard heartbeats while {meanwhile}: {heard:?}"
    );
    let history = asg::history(fleet);
    ensure!(
        !history
            .iter()
            .any(|line| line.contains(instance) && line.contains("timed out")),
        "the launch action never timed out: {history:#?}"
    );
    Ok(())
}

/// A spot interruption (AWS's two minutes' notice, then the group's terminate action): berth drains at once,
/// releases everything, completes the terminate hook and exits 0 before EC2 would reclaim the instance; the
/// group's replacement takes the broker back.
async fn spot_interruption_drains(
    fleet: &Fleet,
    host: usize,
    state: &StateView,
) -> anyhow::Result<()> {
    let interrupted = fleet.host(host)?;
    let leaving = interrupted.instance.id.clone();
    let zone = berth_sim::layout::zone_name(interrupted.az);
    fleet
        .aws()
        .with(|plane| {
            let notice = Duration::from_secs(120);
            plane
                .autoscaling
                .interrupt_spot(&leaving, notice, Instant::now())
        })
        .context("the interrupted instance is a member")?;
    let (instance, successor) = replacement_of(fleet, &leaving, &zone).await?;
    let after = fleet.wait_healthy(successor, BOOT).await?;
    in_service(fleet, &instance).await?;
    let completed = fleet.aws().calls_from("CompleteLifecycleAction", &leaving);
    ensure!(
        completed.iter().any(|c| c.accepted()
            && c.param("LifecycleHookName") == Some(asg::TERMINATE_HOOK)
            && c.param("LifecycleActionResult") == Some("CONTINUE")),
        "terminate hook completed after the spot drain: {completed:?}"
    );
    let history = asg::history(fleet);
    let mine = |text: &str| {
        history
            .iter()
            .any(|line| line.contains(&leaving) && line.contains(text))
    };
    ensure!(
        mine("berth exited with status 0; held ENIs [], volumes []") && !mine("EC2 reclaimed"),
        "released everything and exited 0 before EC2 reclaimed the instance: {history:#?}"
    );
    ensure!(
        after.broker_id == state.broker_id,
        "successor is {:?}",
        after.broker_id
    );
    assert_converged(fleet, successor, &after).await
}

/// An operator's `berth drain` on the host (inside its systemd container): the command prints what the drain
/// waits for as it changes, the daemon releases everything and exits 0, and the command reports it drained.
async fn berth_drain(
    fleet: &Fleet,
    index: usize,
    state: &berth_sim::StateView,
) -> anyhow::Result<()> {
    let host = fleet.host(index)?;
    let mut command = host.container().command(&["berth", "drain"]);
    let output = tokio::task::spawn_blocking(move || command.output()).await??;
    let said = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success() && said.contains("drained"),
        "berth drain: {:?} {said} {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    // What the drain waits for, printed as it changes, before the verdict.
    let id = state.broker_id.context("id")?;
    ensure!(
        said.lines()
            .any(|line| line.starts_with(&format!("berth drain: draining broker {id}"))),
        "berth drain printed no progress: {said}"
    );
    let code = fleet
        .wait_berth_exit(index, Duration::from_secs(30))
        .await?;
    ensure!(code == Some(0), "drained berth exit code {code:?}");
    let resources = &fleet.resources()[state.broker_id.context("id")? as usize];
    let attachments = fleet.ec2().attachments().await?;
    ensure!(
        attachments.enis.get(&resources.eni_id) == Some(&None)
            && attachments.volumes.get(&resources.volume_id) == Some(&None),
        "ENI and volume released by berth drain: {attachments:?}"
    );
    ensure!(
        !claimed_ids(fleet)
            .await?
            .contains(&resources.id.to_string()),
        "claim released by berth drain"
    );
    println!("berth drain: {}", said.trim());
    Ok(())
}

#[test]
fn a_refused_volume_gets_its_host_replaced_and_is_left_byte_for_byte_untouched() {
    if !berth_testkit::require_root("asg_refused_volume") {
        return;
    }
    let options = FleetOptions {
        zones: 1,
        brokers: 1,
        ..FleetOptions::default()
    };
    let before = std::sync::Mutex::new(Vec::new());
    let before = &before;
    let prepare = move |fleet: &Fleet| {
        let backing = fleet.volume_backing(&fleet.resources()[0].volume_id);
        foreign_broker_volume(&backing)?;
        *before.lock().unwrap() = std::fs::read(&backing)?;
        fleet
            .proxy()
            .inject("CompleteLifecycleAction", Fault::AccessDenied, 1);
        Ok(())
    };
    asg::with_prepared_group(options, prepare, |fleet| async move {
        refused_volume(&fleet).await?;
        let backing = fleet.volume_backing(&fleet.resources()[0].volume_id);
        ensure!(
            std::fs::read(&backing)? == *before.lock().unwrap(),
            "the refused volume's bytes changed"
        );
        Ok(())
    })
    .expect("refused volume");
}

/// Another broker's volume: ext4 (the filesystem berth expects) whose log dir names broker 7.
fn foreign_broker_volume(backing: &std::path::Path) -> anyhow::Result<()> {
    let content = tempfile::tempdir()?;
    std::fs::create_dir_all(content.path().join("data"))?;
    std::fs::write(
        content.path().join("data/meta.properties"),
        "version=0\nbroker.id=7\ncluster.id=AnotherClusterXXXXXXXX\n",
    )?;
    let status = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(content.path())
        .arg(backing)
        .status()?;
    ensure!(status.success(), "mkfs.ext4 -d failed");
    Ok(())
}

/// The first instance's ABANDON is refused for good (the proxy answers AccessDenied once): berth reports it
/// Unhealthy instead, and the group replaces it when its launch action expires. The second one's ABANDON lands:
/// abandoned, berth exits 69. Neither touched the refused volume.
async fn refused_volume(fleet: &Fleet) -> anyhow::Result<()> {
    let first = asg::wait_members(fleet, "the first launch", BOOT, |m| !m.is_empty()).await?[0]
        .instance_id
        .clone();
    let zone = berth_sim::layout::zone_name(0);
    let (second, _) = replacement_of(fleet, &first, &zone).await?;
    abandon_refused_marked_unhealthy(fleet, &first)?;
    asg::wait_members(fleet, "both failed instances gone", BOOT, |m| {
        !m.iter()
            .any(|m| m.instance_id == first || m.instance_id == second)
    })
    .await?;
    let history = asg::history(fleet);
    ensure!(
        history
            .iter()
            .any(|line| line.contains(&second) && line.contains("berth exited with status 69")),
        "berth exited non-zero on its own before its instance was terminated: {history:#?}"
    );
    let hooks = fleet.aws().calls_from("CompleteLifecycleAction", &second);
    ensure!(
        hooks
            .iter()
            .any(|c| c.accepted() && c.param("LifecycleActionResult") == Some("ABANDON")),
        "ABANDON while the launch was pending: {hooks:?}"
    );
    // The first instance's FAILURE failed the stack's creation; the second's finds it over.
    let signals = fleet.aws().calls_from("SignalResource", &first);
    ensure!(
        signals
            .iter()
            .any(|c| c.accepted() && c.param("Status") == Some("FAILURE")),
        "CloudFormation heard FAILURE: {signals:?}"
    );
    let held = format!("held ENIs [], volumes [{}]", fleet.resources()[0].volume_id);
    for instance in [&first, &second] {
        ensure!(
            history.iter().any(|line| line.contains(instance) && line.contains(&held)),
            "at its termination {instance} had let go of the ENI and left the refused volume attached \
             ({held}): {history:#?}"
        );
    }
    println!("refused volume: {first} reported unhealthy, {second} abandoned");
    Ok(())
}

/// The first instance: ABANDON refused, SetInstanceHealth Unhealthy landed instead, the launch action left to
/// expire (no heartbeats after the failure), the instance replaced.
fn abandon_refused_marked_unhealthy(fleet: &Fleet, first: &str) -> anyhow::Result<()> {
    ensure!(
        fleet.proxy().faulted("CompleteLifecycleAction") == 1,
        "the first ABANDON was refused"
    );
    let hooks = fleet.aws().calls_from("CompleteLifecycleAction", first);
    ensure!(
        !hooks.iter().any(|c| c.accepted()),
        "no ABANDON landed for {first}: {hooks:?}"
    );
    let health = fleet.aws().calls_from("SetInstanceHealth", first);
    ensure!(
        health
            .iter()
            .any(|c| c.accepted() && c.param("HealthStatus") == Some("Unhealthy")),
        "reported Unhealthy instead: {health:?}"
    );
    let history = asg::history(fleet);
    ensure!(
        history.iter().any(|line| line.contains(first)
            && line.contains("timed out (heartbeat timeout): DefaultResult ABANDON")),
        "the failed launch's action expired and the instance was replaced: {history:#?}"
    );
    Ok(())
}

#[test]
fn a_two_minute_zookeeper_outage_keeps_kafka_up_and_the_claim_comes_back() {
    if !berth_testkit::require_root("asg_zookeeper_outage") {
        return;
    }
    let options = FleetOptions {
        zones: 1,
        brokers: 1,
        // The outage lasts four times the claim deadline, which before governed re-claims too.
        berth_env: vec![("BERTH_STATES__CLAIM__DEADLINE".into(), "30s".into())],
        ..FleetOptions::default()
    };
    asg::with_group(
        options,
        |fleet| async move { zookeeper_outage(&fleet).await },
    )
    .expect("ZooKeeper outage");
}

async fn zookeeper_outage(fleet: &Fleet) -> anyhow::Result<()> {
    const OUTAGE: Duration = Duration::from_secs(120);
    let (hosts, states) = boot(fleet).await?;
    let host = hosts[0];
    let kafka = kafka_pid(fleet, host)?.context("Kafka runs")?;
    ensure!(claimed_ids(fleet).await? == ["0"], "claimed");
    let zk = fleet
        .zookeeper()
        .context("the fleet's ZooKeeper ensemble")?;
    let began = Instant::now();
    for member in 0..zk.len() {
        zk.kill(member);
    }
    let lost = fleet
        .wait_for(host, "the claim lost", BOOT, |s| s.claim == "lost")
        .await?;
    let waiting = lost.waiting.clone();
    println!(
        "claim lost {:?} into the outage; waiting: {waiting:?}",
        began.elapsed()
    );
    // Hold the outage for its full length, checking all along that Kafka runs and that berth says why it waits.
    let mut every = tokio::time::interval(Duration::from_secs(5));
    let mut said = None;
    while began.elapsed() < OUTAGE {
        every.tick().await;
        ensure!(
            alive(kafka),
            "Kafka stopped {:?} into the outage",
            began.elapsed()
        );
        let state = fleet.state(host).await?;
        ensure!(
            state.state == "healthy" && state.claim == "lost",
            "{state:?}"
        );
        if let Some(waiting) = state.waiting.filter(|w| w.step == "reclaim") {
            said = Some(waiting.reason);
        }
    }
    let said = said.context("/state never said the re-claim was waiting")?;
    println!("while ZooKeeper was down, /state said: reclaim waits for {said:?}");
    for member in 0..zk.len() {
        zk.start_node(member)?;
    }
    let back = Instant::now();
    let held = fleet
        .wait_for(host, "the claim back", BOOT, |s| {
            s.claim == "held" && s.healthy
        })
        .await?;
    println!(
        "ZooKeeper down {:?}; claim back {:?} after it returned",
        back - began,
        back.elapsed()
    );
    ensure!(held.broker_id == states[0].broker_id, "same id");
    ensure!(
        kafka_pid(fleet, host)? == Some(kafka),
        "Kafka was restarted"
    );
    ensure!(claimed_ids(fleet).await? == ["0"], "claim node back");
    assert_converged(fleet, host, &held).await?;
    Ok(())
}
