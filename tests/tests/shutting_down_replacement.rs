//! A replacement launched while the dead instance is still `shutting-down` (its ENI and volume still in use, as
//! EC2 keeps them): the replacement waits out the claim's session, takes the ENI and volume over from the
//! shutting-down owner, and becomes the same broker with the same data, before the old instance is gone. Then
//! the Auto Scaling drain path: IMDS's target-lifecycle-state turns Terminated and berth releases everything.

use std::time::Duration;

use anyhow::{ensure, Context};
use berth_e2e::{assert_converged, claimed_ids, data_path, write_record};
use berth_sim::FleetOptions;

const BOOT: Duration = Duration::from_secs(60);

#[test]
fn replacement_takes_over_from_a_shutting_down_instance() {
    if !berth_testkit::require_root("replacement_takes_over_from_a_shutting_down_instance") {
        return;
    }
    let options = FleetOptions {
        zones: 1,
        brokers: 1,
        ..FleetOptions::default()
    };
    berth_sim::with_fleet(options, |fleet| async move {
        let old = fleet.launch(0).await?;
        let booted = fleet.wait_healthy(old, BOOT).await?;
        let record = write_record(&fleet, old, booted.broker_id.context("id")?)?;
        let old_instance = fleet.host(old)?.instance.id.clone();

        // Held in shutting-down until told otherwise: the ENI and volume stay attached to it.
        fleet.kill_host(old, Some(Duration::ZERO)).await?;
        ensure!(
            fleet.ec2().instance_state(&old_instance).await? == "shutting-down",
            "old instance not shutting down"
        );
        let replacement = fleet.launch(0).await?;
        let state = fleet.wait_healthy(replacement, BOOT).await?;
        ensure!(
            state.broker_id == booted.broker_id,
            "replacement is broker {:?}",
            state.broker_id
        );
        ensure!(
            fleet.ec2().instance_state(&old_instance).await? == "shutting-down",
            "the old instance left shutting-down before the takeover"
        );
        ensure!(
            std::fs::read_to_string(data_path(&fleet, replacement)?)? == record,
            "data lost"
        );
        assert_converged(&fleet, replacement, &state).await?;
        fleet.moto().finish_termination(&old_instance)?;

        // The Auto Scaling path of a drain: IMDS says the instance is leaving; berth releases everything, exits 0,
        // and tells the terminating lifecycle action (which nothing awaits here: the host was placed by hand).
        let host = fleet.host(replacement)?;
        host.with_imds(|imds| imds.set_lifecycle_state("Terminated"));
        let code = fleet
            .wait_berth_exit(replacement, Duration::from_secs(30))
            .await?;
        ensure!(code == Some(0), "lifecycle drain exit code {code:?}");
        let resources = fleet.resources()[0].clone();
        let attachments = fleet.ec2().attachments().await?;
        ensure!(
            attachments.enis.get(&resources.eni_id) == Some(&None),
            "ENI attached after the lifecycle drain"
        );
        ensure!(
            attachments.volumes.get(&resources.volume_id) == Some(&None),
            "volume attached after the lifecycle drain"
        );
        ensure!(
            claimed_ids(&fleet).await?.is_empty(),
            "claim left after the lifecycle drain"
        );
        // The host was placed by hand, not by a group: its terminate action is not awaited by Auto Scaling.
        // berth told it at once (a heartbeat on the notice), heard "not awaited", and so sends no CONTINUE.
        let beats = fleet
            .aws()
            .calls_from("RecordLifecycleActionHeartbeat", &host.instance.id);
        ensure!(
            beats
                .iter()
                .any(|c| !c.accepted() && c.param("LifecycleHookName") == Some("berth-terminate")),
            "the terminating lifecycle action was not told: {beats:?}"
        );
        let hooks = fleet
            .aws()
            .calls_from("CompleteLifecycleAction", &host.instance.id);
        ensure!(
            !hooks
                .iter()
                .any(|c| c.param("LifecycleHookName") == Some("berth-terminate")),
            "a terminate completion sent for an action nothing awaits: {hooks:?}"
        );
        Ok(())
    })
    .expect("shutting-down replacement");
}
