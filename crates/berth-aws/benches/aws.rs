//! API calls per happy-path boot and the takeover time from a shutting-down owner, against strict moto.
//! Prints one final line: `aws ec2_calls=<n> boot_ms=<ms> takeover_ms=<ms> takeover_wait_ms=<ms>
//! takeover_overhead_ms=<ms>` (medians of a few runs; the overhead is the takeover beyond `aws.takeover_wait`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use berth_core::ports::{Attachments, Deadline, LaunchResult, Metadata, Signals, Verdict};
use berth_core::BrokerId;
use berth_testkit::aws::world;
use common::*;

const RUNS: usize = 5;

async fn boot() -> (usize, Duration) {
    let env = env(&[ZONE_A]).await;
    let (_me, _imds, cloud) = env.launching_host().await;
    let deadline = Deadline::after(Duration::from_secs(30));
    let started = Instant::now();
    let identity = cloud.identity().await.expect("identity");
    let resources = cloud.discover().await.expect("discover").ids[&BrokerId(0)].clone();
    cloud
        .attach_eni(&identity, resources.eni.as_ref().unwrap(), deadline)
        .await
        .expect("eni");
    cloud
        .attach_volume(&identity, resources.volume.as_ref().unwrap(), deadline)
        .await
        .expect("volume");
    cloud
        .signal_stack(&identity, &Verdict::Success)
        .await
        .expect("signal");
    cloud
        .complete_launch(&identity, LaunchResult::Continue)
        .await
        .expect("launch hook");
    (env.ec2_calls(), started.elapsed())
}

/// From the owner's termination (it stays `shutting-down`, held by moto) to both attachments on the replacement:
/// `aws.takeover_wait` ([`TAKEOVER_WAIT`], the policy's wait for the owner to let go, a floor berth is told to
/// keep) and then berth's force-detach and attach.
async fn takeover() -> Duration {
    let env = env(&[ZONE_A]).await;
    env.moto
        .set_terminate_hold(Duration::from_secs(120))
        .expect("hold");
    let (owner, identity, cloud, _imds) =
        owned_by_other(&env, |attach| attach.takeover_wait = TAKEOVER_WAIT).await;
    let resources = cloud.discover().await.expect("discover").ids[&BrokerId(0)].clone();
    let started = Instant::now();
    world::terminate(&env.ec2, &owner.instance_id)
        .await
        .expect("terminate");
    attach_both(
        &cloud,
        &identity,
        &resources,
        TAKEOVER_WAIT + Duration::from_secs(30),
    )
    .await;
    started.elapsed()
}

fn median(mut values: Vec<Duration>) -> u128 {
    values.sort();
    values[values.len() / 2].as_millis()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut calls = Vec::new();
        let mut boots = Vec::new();
        let mut takeovers = Vec::new();
        for _ in 0..RUNS {
            let (n, elapsed) = boot().await;
            calls.push(n);
            boots.push(elapsed);
            takeovers.push(takeover().await);
        }
        let max_calls = calls.iter().max().copied().unwrap_or_default();
        let takeover_ms = median(takeovers);
        let wait_ms = TAKEOVER_WAIT.as_millis();
        println!(
            "aws ec2_calls={max_calls} boot_ms={} takeover_ms={takeover_ms} takeover_wait_ms={wait_ms} \
             takeover_overhead_ms={} {}",
            median(boots),
            takeover_ms.saturating_sub(wait_ms),
            berth_testkit::bench::load_field()
        );
    });
}
