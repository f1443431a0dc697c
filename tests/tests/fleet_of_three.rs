//! One three-broker fleet, the mission end to end: concurrent boot (unique ids, each in its zone), berth
//! SIGKILLed while Healthy and restarted (converges, nothing duplicated), ZooKeeper session expired while Healthy
//! (re-claims the same id), a host killed and replaced (same id, address and data), a graceful drain (everything
//! released, so a replacement starts at once). CloudFormation hears SUCCESS, the launch hook CONTINUE. Hosts are
//! placed by hand here; the Auto Scaling group's own replacements are tested in `asg.rs`.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use berth_e2e::{
    all_healthy, assert_converged, assert_shipped, assert_unique_ids, claimed_ids, data_path,
    write_record,
};
use berth_sim::{layout, Fleet, FleetOptions, StateView};
use nix::sys::signal::Signal;

const BOOT: Duration = Duration::from_secs(90);

#[test]
fn three_brokers_boot_crash_expire_replace_drain() {
    if !berth_testkit::require_root("three_brokers_boot_crash_expire_replace_drain") {
        return;
    }
    let session = Duration::from_secs(4);
    let options = FleetOptions {
        session_timeout: session,
        ..FleetOptions::default()
    };
    berth_sim::with_fleet(options, |fleet| async move {
        let (states, records) = boot_three(&fleet).await?;
        crash_and_restart(&fleet, &states[1]).await?;
        let id2 = states[2].broker_id.context("id")?;
        freeze_until_the_session_expires(&fleet, id2, session).await?;
        kill_and_replace(&fleet, &states[0], &records[0]).await?;
        drain_and_replace(&fleet, id2, &records[2]).await
    })
    .expect("three-broker fleet scenario");
}

/// Concurrent boot of three hosts, one per zone: unique ids, each in its zone at its ENI's address, claimed in
/// ZooKeeper; CloudFormation took SUCCESS and the launch hook was asked to CONTINUE by each. Their states, and the
/// record written on each one's volume.
async fn boot_three(fleet: &Fleet) -> anyhow::Result<(Vec<StateView>, Vec<String>)> {
    let hosts = fleet.launch_many(&[0, 1, 2]).await?;
    let states = all_healthy(fleet, &hosts, BOOT).await?;
    assert_unique_ids(&states, 3)?;
    let mut records = Vec::new();
    for (&host, state) in hosts.iter().zip(&states) {
        assert_converged(fleet, host, state).await?;
        assert_shipped(fleet, host, state)?;
        let id = state.broker_id.context("id")?;
        let eni_ip = state.eni.as_ref().map(|e| e.ip.clone()).unwrap_or_default();
        ensure!(
            eni_ip == layout::eni_ip(id, 3).to_string(),
            "broker {id} at {eni_ip}"
        );
        records.push(write_record(fleet, host, id)?);
    }
    ensure!(
        claimed_ids(fleet).await? == ["0", "1", "2"],
        "claims after boot"
    );
    // CloudFormation took "healthy" from each instance (the stack's creation awaited three signals). These hosts
    // were launched by hand, not by the group, so Auto Scaling has no launch action pending for them: berth's
    // first heartbeat (sent once it knows its identity, before Claim ends) is refused as not awaited, which ends
    // the action, so no CONTINUE follows.
    for &host in &hosts {
        let instance = fleet.host(host)?.instance.id.clone();
        let signals = fleet.aws().calls_from("SignalResource", &instance);
        ensure!(
            signals
                .iter()
                .any(|c| c.accepted() && c.param("Status") == Some("SUCCESS")),
            "no SignalResource SUCCESS taken from {instance}: {signals:?}"
        );
        let beats = fleet
            .aws()
            .calls_from("RecordLifecycleActionHeartbeat", &instance);
        ensure!(
            beats
                .iter()
                .any(|c| !c.accepted() && c.param("LifecycleHookName") == Some("berth-launch")),
            "no launch heartbeat refused as not awaited from {instance}: {beats:?}"
        );
        let hooks = fleet.aws().calls_from("CompleteLifecycleAction", &instance);
        ensure!(
            hooks.is_empty(),
            "a completion sent for an action nothing awaits, from {instance}: {hooks:?}"
        );
    }

    Ok((states, records))
}

/// berth SIGKILLed while Healthy (Kafka keeps running), then restarted: same id, nothing duplicated.
async fn crash_and_restart(fleet: &Fleet, before: &StateView) -> anyhow::Result<()> {
    fleet.crash_berth(1).await?;
    fleet.start_berth(1)?;
    let again = fleet.wait_healthy(1, BOOT).await?;
    ensure!(
        again.broker_id == before.broker_id,
        "restart changed the id: {again:?}"
    );
    assert_converged(fleet, 1, &again).await?;

    Ok(())
}

/// berth frozen until its session expires: the claim vanishes; once thawed it re-claims the same id.
async fn freeze_until_the_session_expires(
    fleet: &Fleet,
    id2: u32,
    session: Duration,
) -> anyhow::Result<()> {
    fleet.signal_berth(2, Signal::SIGSTOP)?;
    let frozen = Instant::now();
    while claimed_ids(fleet).await?.contains(&id2.to_string()) {
        ensure!(
            frozen.elapsed() < session * 4,
            "claim {id2} survived its session while berth was frozen"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fleet.signal_berth(2, Signal::SIGCONT)?;
    let thawed = fleet
        .wait_for(2, "Healthy with its claim back", BOOT, |s| {
            s.state.eq_ignore_ascii_case("healthy") && s.broker_id == Some(id2)
        })
        .await?;
    let deadline = Instant::now() + BOOT;
    while !claimed_ids(fleet).await?.contains(&id2.to_string()) {
        ensure!(Instant::now() < deadline, "claim {id2} never re-created");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_converged(fleet, 2, &thawed).await?;

    Ok(())
}

/// Host 0 killed and replaced in its zone: same id, same address, same data.
async fn kill_and_replace(fleet: &Fleet, before: &StateView, record: &str) -> anyhow::Result<()> {
    let killed = Instant::now();
    fleet.kill_host(0, None).await?;
    let replacement = fleet.launch(0).await?;
    let replaced = fleet.wait_healthy(replacement, BOOT).await?;
    println!("replacement Healthy {:?} after the kill", killed.elapsed());
    ensure!(
        replaced.broker_id == before.broker_id,
        "replacement is {:?}",
        replaced.broker_id
    );
    ensure!(
        replaced.eni.as_ref().map(|e| &e.ip) == before.eni.as_ref().map(|e| &e.ip),
        "address changed"
    );
    let data = std::fs::read_to_string(data_path(fleet, replacement)?)?;
    ensure!(data == record, "data on the replacement: {data:?}");
    assert_converged(fleet, replacement, &replaced).await?;

    Ok(())
}

/// Graceful drain of host 2 (SIGUSR1, what `berth drain` sends): exit 0, ENI and volume available, claim gone;
/// a replacement starts at once.
async fn drain_and_replace(fleet: &Fleet, id2: u32, record: &str) -> anyhow::Result<()> {
    // Graceful drain of host 2 (SIGUSR1, what `berth drain` sends): exit 0, ENI and volume available, claim
    // gone; a replacement starts at once.
    fleet.signal_berth(2, Signal::SIGUSR1)?;
    let code = fleet.wait_berth_exit(2, Duration::from_secs(30)).await?;
    ensure!(code == Some(0), "drain exit code {code:?}");
    let resources = fleet.resources()[id2 as usize].clone();
    let attachments = fleet.ec2().attachments().await?;
    ensure!(
        attachments.enis.get(&resources.eni_id) == Some(&None),
        "ENI still attached after drain: {attachments:?}"
    );
    ensure!(
        attachments.volumes.get(&resources.volume_id) == Some(&None),
        "volume still attached after drain"
    );
    ensure!(
        !claimed_ids(fleet).await?.contains(&id2.to_string()),
        "claim {id2} left after drain"
    );
    ensure!(
        fleet.host(2)?.broker_mounts().is_empty(),
        "mount left after drain"
    );
    fleet.retire_host(2).await?;
    let drained = Instant::now();
    let after_drain = fleet.launch(2).await?;
    let state = fleet.wait_healthy(after_drain, BOOT).await?;
    println!(
        "replacement after drain Healthy {:?} after launch",
        drained.elapsed()
    );
    ensure!(
        state.broker_id == Some(id2),
        "replacement after drain is {:?}",
        state.broker_id
    );
    ensure!(
        std::fs::read_to_string(data_path(fleet, after_drain)?)? == record,
        "data after drain"
    );
    assert_converged(fleet, after_drain, &state).await?;
    Ok(())
}
