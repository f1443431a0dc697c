//! Upgrading the cluster as operators do (issue 16): an instance refresh of each zone's Auto Scaling group, one
//! after another, on a three-broker KRaft fleet running Apache Kafka under systemd, with a producer writing
//! (`acks=all`, topic RF 3, `min.insync.replicas=2`) all along. Every old instance leaves through berth's drain
//! (its terminate hook), every replacement becomes the same broker on the same volume and ENI, no write fails,
//! no write is even refused for want of in-sync replicas (a broker stopped before the previous one was back in
//! the ISR: librdkafka retries that, so it would not show as a failed produce until it lasts longer than the
//! producer's message timeout), and every record is read back exactly once. The step times are printed.

use berth_sim::roll::{self, RollOptions};
use berth_sim::{asg, Fleet, FleetOptions, SimKafka};

#[test]
fn an_instance_refresh_of_every_group_fails_and_loses_no_write() {
    if !berth_testkit::require_root("roll") {
        return;
    }
    let options = FleetOptions {
        kafka: SimKafka::Kraft,
        ..FleetOptions::default()
    };
    asg::with_group(options, |fleet| async move { rolled(&fleet).await })
        .expect("an instance refresh of every group with a producer running");
}

async fn rolled(fleet: &Fleet) -> anyhow::Result<()> {
    let report = roll::run(fleet, &RollOptions::default()).await?;
    println!(
        "roll: {} steps, total {} ms, max step {} ms\n{}\n{}",
        report.steps.len(),
        report.total.as_millis(),
        report.max_step().as_millis(),
        report.describe_steps(),
        report.describe_writes()
    );
    report.verify(fleet)?;
    // Every replacement (each installed from the package, as the old ones were) runs the shipped berth.
    for host in fleet.hosts().iter().filter(|host| host.alive()) {
        let state = fleet.state(host.index).await?;
        berth_e2e::assert_shipped(fleet, host.index, &state)?;
    }
    Ok(())
}
