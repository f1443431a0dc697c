//! bench-tth: time to Healthy with injected delays that differ (ENI hot-plug 1 s, volume 4 s, Kafka start 2 s),
//! in both orders of the attachments, in one run:
//! * `overlap` (berth's order): the volume is requested alongside the ENI, so a boot waits for the slower of the
//!   two: `floor_ms` = max(ENI, volume) + Kafka start (the injected delays only);
//! * `sequential` (the order before it, for comparison): the early AttachVolume is refused (throttled three
//!   times at the fault proxy, as many as the SDK attempts), so the volume is requested when AttachEbs begins:
//!   `floor_ms` = ENI + volume + Kafka start.
//!
//! `tth_ms` = systemd's "Starting berth.service" to Healthy (berth's process start, then its timeline);
//! `overhead_ms` = `tth_ms` - `floor_ms`: all of berth's own time on the critical path (process start, claim,
//! EC2 round trips and polls, routes, mount, systemctl). Three boots of one host per order (drained between),
//! medians reported. The comparison switch lives here, in the fault proxy, and nowhere in berth's configuration.

use std::time::Duration;

use anyhow::Context;
use berth_sim::bench::{self, median, ms_in, Boot};
use berth_sim::Fleet;
use berth_testkit::aws::Fault;
use nix::sys::signal::Signal;

const RUNS: usize = 3;

/// The two orders measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    Overlap,
    Sequential,
}

impl Order {
    fn name(self) -> &'static str {
        match self {
            Order::Overlap => "overlap",
            Order::Sequential => "sequential",
        }
    }

    /// The injected waits a boot cannot avoid in this order, in milliseconds.
    fn injected_ms(self) -> u64 {
        bench::attach_floor_ms(self == Order::Overlap) + bench::KAFKA_DELAY.as_millis() as u64
    }
}

/// One order's medians.
struct Measured {
    tth_ms: u64,
    floor_ms: u64,
    all_ms: Vec<u64>,
    last: Boot,
    aws_api_ms: u64,
    aws_calls: usize,
}

impl Measured {
    fn overhead_ms(&self) -> i64 {
        self.tth_ms as i64 - self.floor_ms as i64
    }

    fn fields(&self, prefix: &str) -> String {
        let state = &self.last.state;
        format!(
            "{prefix}tth_ms={} {prefix}floor_ms={} {prefix}overhead_ms={} {prefix}overhead_pct={:.1} {prefix}all_ms={:?} {prefix}process_start_ms={} {prefix}claim_ms={} {prefix}aws_api_ms={} {prefix}aws_calls={} {prefix}attach_eni_ms={} {prefix}route_ms={} {prefix}attach_ebs_ms={} {prefix}mount_ms={} {prefix}start_kafka_ms={}",
            self.tth_ms,
            self.floor_ms,
            self.overhead_ms(),
            self.overhead_ms() as f64 * 100.0 / self.floor_ms.max(1) as f64,
            self.all_ms,
            self.last.process_start_ms(),
            ms_in(state, "claim"),
            self.aws_api_ms,
            self.aws_calls,
            ms_in(state, "attach_eni"),
            ms_in(state, "route"),
            ms_in(state, "attach_ebs"),
            ms_in(state, "mount"),
            ms_in(state, "start_kafka"),
        )
    }
}

async fn boots(fleet: &Fleet, order: Order) -> anyhow::Result<Measured> {
    let (mut tth, mut api, mut last) = (Vec::new(), Vec::new(), None);
    for _ in 0..RUNS {
        if order == Order::Sequential {
            fleet.inject("AttachVolume", Fault::Throttle, 3);
        }
        let host = fleet.launch(0).await?;
        let state = fleet.wait_healthy(host, Duration::from_secs(60)).await?;
        print!(
            "{}",
            berth_sim::state::render_timeline(&format!("{} host {host}", order.name()), &state)
        );
        let boot = Boot::read(fleet, host, state)?;
        tth.push(boot.berth_ms());
        api.push(boot.aws_api(fleet));
        last = Some(boot);
        fleet.signal_berth(host, Signal::SIGUSR1)?;
        fleet.wait_berth_exit(host, Duration::from_secs(30)).await?;
        fleet.retire_host(host).await?;
    }
    let last = last.context("no boot measured")?;
    let (aws_api_ms, aws_calls) = api.last().copied().unwrap_or_default();
    Ok(Measured {
        tth_ms: median(tth.clone()),
        floor_ms: order.injected_ms(),
        all_ms: tth,
        last,
        aws_api_ms,
        aws_calls,
    })
}

fn main() {
    if !bench::can_run("tth") {
        return;
    }
    let options = berth_sim::FleetOptions {
        eni_delay: bench::OVERLAP_ENI_DELAY,
        volume_delay: bench::OVERLAP_VOLUME_DELAY,
        ..bench::options(1, 1)
    };
    let result = berth_sim::with_fleet(options, |fleet| async move {
        let overlap = boots(&fleet, Order::Overlap).await?;
        let sequential = boots(&fleet, Order::Sequential).await?;
        Ok((overlap, sequential))
    });
    match result {
        Ok((overlap, sequential)) => println!(
            "tth eni_ms={} volume_ms={} kafka_ms={} {} {} runs={RUNS} berth={} {}",
            bench::OVERLAP_ENI_DELAY.as_millis(),
            bench::OVERLAP_VOLUME_DELAY.as_millis(),
            bench::KAFKA_DELAY.as_millis(),
            overlap.fields(""),
            sequential.fields("sequential_"),
            bench::berth_profile(),
            berth_testkit::bench::load_field(),
        ),
        Err(error) => bench::fail("tth", &error),
    }
}
