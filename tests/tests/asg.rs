//! The Auto Scaling and CloudFormation contract, end to end on the simulated Auto Scaling group (strict
//! endpoint, real berth, real ZooKeeper ensemble, strict moto, namespaces, loop devices):
//!
//! * a replacement outside any stack update goes InService (its SignalResource is refused, its launch hook is
//!   completed all the same);
//! * SIGTERM stops berth and keeps the broker, and the restarted berth adopts it without restarting Kafka;
//! * a lifecycle `Terminated` state drains, and the terminate hook is completed; so does an operator's
//!   `berth drain`;
//! * a refused volume leads to a replaced instance, with the volume's bytes unchanged;
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
use nix::sys::signal::Signal;

const BOOT: Duration = Duration::from_secs(90);

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
    asg::wait_members(fleet, &format!("{instance} in service"), BOOT, |members| {
        members
            .iter()
            .any(|m| m.instance_id == instance && m.state == LifecycleState::InService)
    })
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
    let (replacement, replaced) =
        replaced_outside_a_stack_update(fleet, hosts[0], &states[0], &records[0]).await?;
    sigterm_keeps_the_broker(fleet, hosts[1], &states[1]).await?;
    terminated_drains_then_is_replaced(fleet, hosts[2], &states[2], &records[2]).await?;
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
    in_service(fleet, &instance).await?;
    ensure!(
        replaced.broker_id == state.broker_id,
        "replacement is {:?}",
        replaced.broker_id
    );
    ensure!(
        std::fs::read_to_string(data_path(fleet, replacement)?)? == record,
        "data"
    );
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
async fn terminated_drains_then_is_replaced(
    fleet: &Fleet,
    host: usize,
    state: &StateView,
    record: &str,
) -> anyhow::Result<()> {
    let leaving = fleet.host(host)?;
    fleet.aws().with(|plane| {
        plane
            .autoscaling
            .terminate(&leaving.instance.id, "a test scales in", Instant::now())
    });
    let zone = berth_sim::layout::zone_name(leaving.az);
    let (instance, successor) = replacement_of(fleet, &leaving.instance.id, &zone).await?;
    let after = fleet.wait_healthy(successor, BOOT).await?;
    in_service(fleet, &instance).await?;
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

async fn refused_volume(fleet: &Fleet) -> anyhow::Result<()> {
    let first = asg::wait_members(fleet, "the first launch", BOOT, |m| !m.is_empty()).await?[0]
        .instance_id
        .clone();
    let zone = berth_sim::layout::zone_name(0);
    let (second, _) = replacement_of(fleet, &first, &zone).await?;
    let history = asg::history(fleet);
    ensure!(
        history
            .iter()
            .any(|line| line.contains(&first) && line.contains("launch abandoned")),
        "the failed instance's launch was abandoned: {history:#?}"
    );
    asg::wait_members(fleet, "the failed instance gone", BOOT, |m| {
        !m.iter().any(|m| m.instance_id == first)
    })
    .await?;
    let history = asg::history(fleet);
    ensure!(
        history
            .iter()
            .any(|line| line.contains(&first) && line.contains("berth exited with status 69")),
        "berth exited non-zero on its own before its instance was terminated: {history:#?}"
    );
    let hooks = fleet.aws().calls_from("CompleteLifecycleAction", &first);
    ensure!(
        hooks
            .iter()
            .any(|c| c.accepted() && c.param("LifecycleActionResult") == Some("ABANDON")),
        "ABANDON while the launch was pending: {hooks:?}"
    );
    let signals = fleet.aws().calls_from("SignalResource", &first);
    ensure!(
        signals
            .iter()
            .any(|c| c.accepted() && c.param("Status") == Some("FAILURE")),
        "CloudFormation heard FAILURE: {signals:?}"
    );
    let resources = &fleet.resources()[0];
    let held = format!("held ENIs [], volumes [{}]", resources.volume_id);
    ensure!(
        history.iter().any(|line| line.contains(&first) && line.contains(&held)),
        "at its termination the failed instance had let go of the ENI and left the refused volume attached \
         ({held}): {history:#?}"
    );
    println!("refused volume: {first} abandoned and replaced by {second}");
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
