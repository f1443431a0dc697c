//! bench-roll: the cluster upgraded as operators upgrade it: an instance refresh of each zone's Auto Scaling group
//! (MinHealthyPercentage 0, MaxHealthyPercentage 100, InstanceWarmup 0: each group of one terminates its broker
//! through berth's drain, then launches the replacement), one group after another, on a three-broker KRaft fleet
//! running Apache Kafka, with a producer writing 100 records/s (`acks=all`, RF 3, `min.insync.replicas=2`)
//! throughout. Measured:
//!
//! - `total_ms`: the first refresh's start to the last one's end; `max_step_ms` and `step_ms`: each old
//!   instance's termination to its replacement in service (launch hook completed by berth);
//! - `failed_produces`: records whose delivery report is an error (given up after 30 s); `produce_request_errors`:
//!   produce requests a broker refused, retried or not, and `not_enough_replicas` those refused because fewer than
//!   `min.insync.replicas` replicas were in sync; `lost` / `duplicated`: records read back 0 / 2+ times;
//! - `same_brokers`: every replacement is the broker it replaced, on the same volume and ENI.

use berth_sim::bench;
use berth_sim::roll::{self, RollOptions};
use berth_sim::{asg, FleetOptions, SimKafka};

fn main() {
    if !bench::can_run("roll") {
        return;
    }
    let options = FleetOptions {
        kafka: SimKafka::Kraft,
        ..FleetOptions::default()
    };
    let brokers = options.brokers;
    let roll_options = RollOptions::default();
    let per_second = roll_options.per_second;
    let outcome = asg::with_group(options, |fleet| async move {
        let report = roll::run(&fleet, &roll_options).await?;
        let kafka = fleet.kafka().map_or("-", |i| i.version()).to_owned();
        eprintln!("{}", report.describe_steps());
        let steps: Vec<String> = report
            .steps
            .iter()
            .map(|s| s.step.as_millis().to_string())
            .collect();
        Ok(format!(
            "roll brokers={brokers} total_ms={} max_step_ms={} failed_produces={} lost={} duplicated={} \
             produce_request_errors={} not_enough_replicas={} records={} per_second={per_second} step_ms={} same_brokers={} kafka={kafka} \
             berth={} {}",
            report.total.as_millis(),
            report.max_step().as_millis(),
            report.produced.failed_produces,
            report.consumed.missing.len(),
            report.consumed.duplicated.len(),
            report.produced.request_errors,
            report.not_enough_replicas(),
            report.produced.sent,
            steps.join(","),
            report.same_brokers(),
            bench::berth_profile(),
            berth_testkit::bench::load_field(),
        ))
    });
    match outcome {
        Ok(line) => println!("{line}"),
        Err(error) => bench::fail("roll", &error),
    }
}
