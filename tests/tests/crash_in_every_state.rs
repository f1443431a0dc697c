//! berth SIGKILLed in each boot state (and inside its attach waits), then restarted: it converges to Healthy as
//! the same broker with exactly one attachment each, one address/route/rule, one mount, and the data intact.
//!
//! Each state is held open long enough to be caught from outside: Claim by another host still holding the only
//! id, AttachEni and AttachEbs by throttling bursts at the fault proxy, Route and Mount by the hot-plug delays
//! (berth waits there for the link / the block device), StartKafka by the stand-in's start delay.

use std::time::Duration;

use anyhow::{ensure, Context};
use berth_e2e::{assert_converged, data_path, write_record};
use berth_sim::{Fleet, FleetOptions};
use berth_testkit::aws::Fault;
use nix::sys::signal::Signal;

const BOOT: Duration = Duration::from_secs(60);

async fn drain(fleet: &Fleet, host: usize) -> anyhow::Result<()> {
    fleet.signal_berth(host, Signal::SIGTERM)?;
    let code = fleet.wait_berth_exit(host, Duration::from_secs(30)).await?;
    ensure!(code == Some(0), "host {host}: drain exit code {code:?}");
    fleet.retire_host(host).await?;
    Ok(())
}

async fn crash_in(fleet: &Fleet, host: usize, state: &str) -> anyhow::Result<()> {
    fleet
        .wait_for(host, state, BOOT, |s| s.state == state)
        .await?;
    fleet.crash_berth(host).await?;
    fleet.start_berth(host)?;
    Ok(())
}

#[test]
fn sigkill_in_every_state_then_restart_converges() {
    if !berth_testkit::require_root("sigkill_in_every_state_then_restart_converges") {
        return;
    }
    let options = FleetOptions {
        zones: 1,
        brokers: 1,
        eni_delay: Duration::from_millis(2000),
        volume_delay: Duration::from_millis(2000),
        kafka_delay: Duration::from_millis(2000),
        ..FleetOptions::default()
    };
    berth_sim::with_fleet(options, |fleet| async move {
        let first = fleet.launch(0).await?;
        let booted = fleet.wait_healthy(first, BOOT).await?;
        assert_converged(&fleet, first, &booted).await?;
        let record = write_record(&fleet, first, booted.broker_id.context("id")?)?;

        // Claim: a second host waits for the only id, which the first still holds.
        let mut current = fleet.launch(0).await?;
        crash_in(&fleet, current, "claim").await?;
        drain(&fleet, first).await?;
        let state = fleet.wait_healthy(current, BOOT).await?;
        assert_converged(&fleet, current, &state).await?;

        for target in ["attach_eni", "route", "attach_ebs", "mount", "start_kafka"] {
            drain(&fleet, current).await?;
            match target {
                "attach_eni" => fleet.inject("AttachNetworkInterface", Fault::Throttle, 6),
                "attach_ebs" => fleet.inject("AttachVolume", Fault::Throttle, 6),
                _ => {}
            }
            current = fleet.launch(0).await?;
            crash_in(&fleet, current, target)
                .await
                .with_context(|| format!("catching {target}"))?;
            let state = fleet
                .wait_healthy(current, BOOT)
                .await
                .with_context(|| format!("after a crash in {target}"))?;
            ensure!(
                state.broker_id == booted.broker_id,
                "crash in {target}: id {:?}",
                state.broker_id
            );
            assert_converged(&fleet, current, &state)
                .await
                .with_context(|| format!("after a crash in {target}"))?;
            let data = std::fs::read_to_string(data_path(&fleet, current)?)?;
            ensure!(data == record, "crash in {target}: data {data:?}");
        }
        Ok(())
    })
    .expect("crash in every state");
}
