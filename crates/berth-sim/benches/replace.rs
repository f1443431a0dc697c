//! bench-replace: a Healthy host taken away -> its replacement Healthy, with a drain (SIGUSR1, what `berth drain`
//! sends: berth releases everything) and without (SIGKILL + terminate: the replacement waits for the claim's
//! session to expire, by a watch, and takes the ENI and volume over). Injected: ENI 2 s, volume 3 s, Kafka
//! (stand-in) 2 s; the attachments overlap, so they cost max(ENI, volume).
//!
//! Per case (`drain_` / `nodrain_`), all on the wall clock (the hosts' journals and the bench share it):
//! - `ms`: the host taken away (SIGUSR1, or the kill) to the replacement's Healthy;
//! - `release_ms`: SIGUSR1 to berth's exit (its drain; 0 without);
//! - `launch_ms`: berth gone to systemd's "Starting berth.service" on the replacement (the simulated launch);
//! - `session_wait_ms`: the replacement's Claim before the dead owner's session could expire (without drain);
//! - `floor_ms` = `launch_ms` + `session_wait_ms` + max(ENI, volume) + Kafka; `overhead_ms` = `ms` - `floor_ms`
//!   (berth's drain, process start, claim, API calls, polls, routes, mount, systemctl);
//! - `zk_wait_ms`: the replacement's time in Claim; `aws_api_ms`: the union of its AWS calls' spans (READY to
//!   Healthy, through the fleet's proxy), `aws_calls` their number.

use std::time::{Duration, SystemTime};

use berth_sim::bench::{self, ms_between, ms_in, Boot};
use berth_sim::Fleet;
use nix::sys::signal::Signal;

const BOOT: Duration = Duration::from_secs(90);

/// One replacement, measured.
struct Replaced {
    boot: Boot,
    total_ms: u64,
    release_ms: u64,
    launch_ms: u64,
    session_wait_ms: u64,
    aws: (u64, usize),
}

impl Replaced {
    fn floor_ms(&self, fleet_floor_ms: u64) -> u64 {
        self.launch_ms + self.session_wait_ms + fleet_floor_ms
    }

    fn fields(&self, prefix: &str, injected_ms: u64) -> String {
        let floor = self.floor_ms(injected_ms);
        format!(
            "{prefix}ms={} {prefix}floor_ms={floor} {prefix}overhead_ms={} {prefix}release_ms={} {prefix}launch_ms={} \
             {prefix}session_wait_ms={} {prefix}process_start_ms={} {prefix}zk_wait_ms={} {prefix}aws_api_ms={} \
             {prefix}aws_calls={}",
            self.total_ms,
            self.total_ms as i64 - floor as i64,
            self.release_ms,
            self.launch_ms,
            self.session_wait_ms,
            self.boot.process_start_ms(),
            ms_in(&self.boot.state, "claim"),
            self.aws.0,
            self.aws.1,
        )
    }
}

async fn replace(fleet: &Fleet, victim: usize, drain: bool) -> anyhow::Result<Replaced> {
    let started = SystemTime::now();
    if drain {
        fleet.signal_berth(victim, Signal::SIGUSR1)?;
        fleet
            .wait_berth_exit(victim, Duration::from_secs(30))
            .await?;
    }
    let gone = SystemTime::now();
    fleet.kill_host(victim, None).await?;
    let az = fleet.host(victim)?.az;
    let replacement = fleet.launch(az).await?;
    let state = fleet.wait_healthy(replacement, BOOT).await?;
    let boot = Boot::read(fleet, replacement, state)?;
    let session_wait_ms = if drain {
        0
    } else {
        boot.session_wait_ms(gone, fleet.options().session_timeout)
    };
    Ok(Replaced {
        total_ms: ms_between(started, boot.healthy_at()),
        release_ms: ms_between(started, gone),
        launch_ms: ms_between(gone, boot.starting),
        session_wait_ms,
        aws: boot.aws_api(fleet),
        boot,
    })
}

fn main() {
    if !bench::can_run("replace") {
        return;
    }
    let options = bench::options(1, 1);
    let session_ms = options.session_timeout.as_millis() as u64;
    let injected_ms = bench::injected_floor_ms(&options);
    let result = berth_sim::with_fleet(options, |fleet| async move {
        let first = fleet.launch(0).await?;
        fleet.wait_healthy(first, BOOT).await?;
        let drained = replace(&fleet, first, true).await?;
        let second = fleet.hosts().len() - 1;
        let killed = replace(&fleet, second, false).await?;
        Ok((drained, killed))
    });
    match result {
        Ok((drained, killed)) => println!(
            "replace {} {} session_timeout_ms={session_ms} injected_ms={injected_ms} berth={} {}",
            drained.fields("drain_", injected_ms),
            killed.fields("nodrain_", injected_ms),
            bench::berth_profile(),
            berth_testkit::bench::load_field(),
        ),
        Err(error) => bench::fail("replace", &error),
    }
}
