//! Upgrading the cluster as operators do (issue 16): an instance refresh of each zone's Auto Scaling group, one
//! after another, on a three-broker KRaft fleet running Apache Kafka under systemd, with a producer writing
//! (`acks=all`, topic RF 3, `min.insync.replicas=2`) all along. Every old instance leaves through berth's drain
//! (its terminate hook), every replacement becomes the same broker on the same volume and ENI, no write fails,
//! no write is even refused for want of in-sync replicas (a broker stopped before the previous one was back in
//! the ISR: librdkafka retries that, so it would not show as a failed produce until it lasts longer than the
//! producer's message timeout), and every record is read back exactly once. The step times are printed.

use anyhow::ensure;
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
        "roll: {} steps, total {} ms, max step {} ms\n{}",
        report.steps.len(),
        report.total.as_millis(),
        report.max_step().as_millis(),
        report.describe_steps()
    );
    println!(
        "producer: {} records sent, {} delivered, {} failed produces, {} produce requests refused {:?}; read back: {} missing, \
         {} duplicated",
        report.produced.sent,
        report.produced.delivered,
        report.produced.failed_produces,
        report.produced.request_errors,
        report.produced.errors,
        report.consumed.missing.len(),
        report.consumed.duplicated.len()
    );
    ensure!(
        report.steps.len() == fleet.options().zones,
        "one replacement per group: {}",
        report.describe_steps()
    );
    ensure!(
        report.same_brokers(),
        "every replacement is the broker it replaced, on its volume and ENI:\n{}",
        report.describe_steps()
    );
    ensure!(report.produced.sent > 0, "the producer wrote nothing");
    // A record counts as written only once its delivery report said so; every record handed to kcat must have
    // a report (success or error), else the read-back below would compare with records nobody acknowledged.
    ensure!(
        report.produced.unreported() == 0,
        "{} records handed to kcat got no delivery report ({} delivered, {} failed)",
        report.produced.unreported(),
        report.produced.delivered,
        report.produced.failed_produces
    );
    ensure!(
        report.produced.failed_produces == 0,
        "failed produces: {:?}",
        report.produced
    );
    ensure!(
        report.not_enough_replicas() == 0,
        "{} produce requests refused with \"{}\": a broker was stopped while the previous one was not back in \
         the ISR",
        report.not_enough_replicas(),
        roll::NOT_ENOUGH_REPLICAS
    );
    ensure!(
        report.consumed.is_exact(),
        "lost {:?}, duplicated {:?}, corrupt {:?}",
        report.consumed.missing,
        report.consumed.duplicated,
        report.consumed.corrupt
    );
    let history = asg::history(fleet);
    for step in &report.steps {
        let old = &step.old.instance_id;
        let drained = fleet
            .aws()
            .calls_from("CompleteLifecycleAction", old)
            .iter()
            .any(|c| c.accepted() && c.param("LifecycleHookName") == Some(asg::TERMINATE_HOOK));
        ensure!(drained, "{old}'s berth completed its terminate hook");
        ensure!(
            history.iter().any(|line| line.contains(old)
                && line.contains("berth exited with status 0")
                && line.contains("held ENIs [], volumes []")),
            "{old} was drained (ENI and volume released, berth exited 0) before it was terminated: \
             {history:#?}"
        );
    }
    Ok(())
}
