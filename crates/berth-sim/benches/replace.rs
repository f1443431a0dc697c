//! bench-replace: a Healthy host taken away -> its replacement Healthy, with a drain (SIGUSR1, what `berth drain`
//! sends: berth releases everything) and without (SIGKILL + terminate: the replacement waits for the claim's
//! session to expire, by a watch, and takes the ENI and volume over). Reports the replacement's time in Claim
//! (waiting on ZooKeeper) and in AttachEni + AttachEbs (waiting on EC2), with the benchmark's injected delays
//! (2 s + 3 s + 2 s).

use std::time::{Duration, Instant};

use berth_sim::bench::{self, injected, ms_in};
use berth_sim::{Fleet, StateView};
use nix::sys::signal::Signal;

const BOOT: Duration = Duration::from_secs(90);

async fn replace(fleet: &Fleet, victim: usize, drain: bool) -> anyhow::Result<(u64, StateView)> {
    let started = Instant::now();
    if drain {
        fleet.signal_berth(victim, Signal::SIGUSR1)?;
        fleet
            .wait_berth_exit(victim, Duration::from_secs(30))
            .await?;
    }
    fleet.kill_host(victim, None).await?;
    let az = fleet.host(victim)?.az;
    let replacement = fleet.launch(az).await?;
    let state = fleet.wait_healthy(replacement, BOOT).await?;
    Ok((started.elapsed().as_millis() as u64, state))
}

fn main() {
    if !bench::can_run("replace") {
        return;
    }
    let options = bench::options(1, 1);
    let session_ms = options.session_timeout.as_millis() as u64;
    let result = berth_sim::with_fleet(options, |fleet| async move {
        let first = fleet.launch(0).await?;
        fleet.wait_healthy(first, BOOT).await?;
        let (drained_ms, drained) = replace(&fleet, first, true).await?;
        let second = fleet.hosts().len() - 1;
        let (killed_ms, killed) = replace(&fleet, second, false).await?;
        Ok((drained_ms, drained, killed_ms, killed))
    });
    match result {
        Ok((drained_ms, drained, killed_ms, killed)) => {
            // AttachEni / AttachEbs include the injected hot-plug waits; the rest is EC2 API time.
            let hot_plug = (bench::ENI_DELAY + bench::VOLUME_DELAY).as_millis() as u64;
            let ec2 = |s: &StateView| {
                (ms_in(s, "attach_eni") + ms_in(s, "attach_ebs")).saturating_sub(hot_plug)
            };
            println!(
                "replace drain_ms={drained_ms} drain_zk_wait_ms={} drain_ec2_api_ms={} nodrain_ms={killed_ms} nodrain_zk_wait_ms={} nodrain_ec2_api_ms={} session_timeout_ms={session_ms} injected_ms={} berth={}",
                ms_in(&drained, "claim"),
                ec2(&drained),
                ms_in(&killed, "claim"),
                ec2(&killed),
                injected().as_millis(),
                bench::berth_profile(),
            );
        }
        Err(error) => bench::fail("replace", &error),
    }
}
