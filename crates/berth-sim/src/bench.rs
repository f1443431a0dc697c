//! Shared pieces of the fleet benchmarks (`benches/`): the injected delays the targets are stated against, berth's
//! boot on the wall clock (systemd's journal and berth's timeline), and the split every figure uses (see
//! `docs/benchmarks.md`): the floor holds only what berth cannot control (injected delays, the simulated launch,
//! Kafka's JVM as Kafka logs it, a dead owner's session until it may expire); everything else berth's start to
//! Healthy takes (its process start, claim, API calls, polls and waits) is its overhead.

use std::time::{Duration, SystemTime};

use anyhow::Context;

use crate::state::StateView;
use crate::{Fleet, FleetOptions};

/// ENI hot-plug delay injected by the benchmarks.
pub const ENI_DELAY: Duration = Duration::from_secs(2);
/// Volume appearance delay injected by the benchmarks.
pub const VOLUME_DELAY: Duration = Duration::from_secs(3);
/// Kafka (stand-in) start delay injected by the benchmarks.
pub const KAFKA_DELAY: Duration = Duration::from_secs(2);

/// ENI hot-plug delay of the benchmarks that measure the attachments' overlap (`tth`, `kafka-replace`).
pub const OVERLAP_ENI_DELAY: Duration = Duration::from_secs(1);
/// Volume delay of those benchmarks: longer than the ENI's, as on EC2.
pub const OVERLAP_VOLUME_DELAY: Duration = Duration::from_secs(4);

/// The attachments' wait a boot cannot avoid, in milliseconds: the slower of the two when they overlap (berth's
/// order), their sum when one waits for the other.
pub fn attach_floor_ms(overlapping: bool) -> u64 {
    let (eni, volume) = (
        OVERLAP_ENI_DELAY.as_millis() as u64,
        OVERLAP_VOLUME_DELAY.as_millis() as u64,
    );
    if overlapping {
        eni.max(volume)
    } else {
        eni + volume
    }
}

/// The injected waits of a stand-in boot in berth's order (attachments overlapping): max(ENI, volume) + Kafka's
/// start, in milliseconds.
pub fn injected_floor_ms(options: &FleetOptions) -> u64 {
    (options.eni_delay.max(options.volume_delay) + options.kafka_delay).as_millis() as u64
}

/// Milliseconds from `from` to `to`, 0 when `to` is not later.
pub fn ms_between(from: SystemTime, to: SystemTime) -> u64 {
    to.duration_since(from).map_or(0, |d| d.as_millis() as u64)
}

/// Milliseconds covered by the union of `spans` (overlapping calls counted once).
pub fn union_ms(spans: &[(SystemTime, SystemTime)]) -> u64 {
    let mut sorted = spans.to_vec();
    sorted.sort();
    let mut total = 0;
    let mut current: Option<(SystemTime, SystemTime)> = None;
    for (begin, end) in sorted {
        current = match current {
            Some((b, e)) if begin <= e => Some((b, e.max(end))),
            Some((b, e)) => {
                total += ms_between(b, e);
                Some((begin, end))
            }
            None => Some((begin, end)),
        };
    }
    total + current.map_or(0, |(b, e)| ms_between(b, e))
}

/// One berth boot on the wall clock: systemd's "Starting berth.service" (the start job: exec, the runtime, the
/// configuration, the adapters), its "Started" (berth's READY=1, sent as its state machine starts: the origin of
/// its `/state` timeline) and the timeline to Healthy.
#[derive(Debug, Clone)]
pub struct Boot {
    /// systemd began starting berth.
    pub starting: SystemTime,
    /// berth said READY=1.
    pub ready: SystemTime,
    /// berth's `/state` at Healthy.
    pub state: StateView,
}

impl Boot {
    /// Host `host`'s last berth start, from PID 1's journal on it, with `state` (its `/state` at Healthy).
    pub fn read(fleet: &Fleet, host: usize, state: StateView) -> anyhow::Result<Self> {
        let on = fleet.host(host)?;
        let unit = crate::systemd_host::BERTH_UNIT;
        let logged = |verb| {
            crate::kafka::unit_logged(on.container(), unit, verb)
                .with_context(|| format!("systemd's '{verb} {unit}' on host {host}"))
        };
        anyhow::ensure!(
            state.time_to_healthy_ms.is_some(),
            "host {host} is not Healthy"
        );
        Ok(Self {
            starting: logged("Starting")?,
            ready: logged("Started")?,
            state,
        })
    }

    /// berth's process start: systemd's start job to READY=1.
    pub fn process_start_ms(&self) -> u64 {
        ms_between(self.starting, self.ready)
    }

    /// berth's start (systemd's start job) to Healthy.
    pub fn berth_ms(&self) -> u64 {
        self.process_start_ms() + self.state.time_to_healthy_ms.unwrap_or_default()
    }

    /// When berth reached Healthy.
    pub fn healthy_at(&self) -> SystemTime {
        self.ready + Duration::from_millis(self.state.time_to_healthy_ms.unwrap_or_default())
    }

    /// The part of berth's Claim spent before a dead owner's session could expire: that owner was gone at `gone`
    /// and ZooKeeper keeps its session for `session_timeout` (not berth's to shorten); the rest of Claim is
    /// berth's.
    pub fn session_wait_ms(&self, gone: SystemTime, session_timeout: Duration) -> u64 {
        let Some(claim) = self.state.timeline.iter().find(|e| e.state == "claim") else {
            return 0;
        };
        let entered = self.ready + Duration::from_millis(claim.entered_ms);
        ms_between(entered, gone + session_timeout).min(claim.duration_ms)
    }

    /// The AWS API calls made through the fleet's proxy between READY and Healthy: the time they cover (the union
    /// of their spans, so overlapping calls count once) and how many.
    pub fn aws_api(&self, fleet: &Fleet) -> (u64, usize) {
        let spans: Vec<_> = fleet
            .proxy()
            .spans_between(self.ready, self.healthy_at())
            .into_iter()
            .map(|span| (span.began, span.ended))
            .collect();
        (union_ms(&spans), spans.len())
    }
}

/// Fleet options with the benchmark delays and a fast hot-plug poll (so the simulator's own latency stays out
/// of berth's overhead). Kafka is the stand-in: its start takes exactly the injected delay, which the targets
/// are stated against (Apache Kafka's start varies by seconds with the machine's load; `kafka-replace` measures
/// it instead).
pub fn options(zones: usize, brokers: u32) -> FleetOptions {
    FleetOptions {
        kafka: crate::SimKafka::Standin,
        zones,
        brokers,
        eni_delay: ENI_DELAY,
        volume_delay: VOLUME_DELAY,
        kafka_delay: KAFKA_DELAY,
        hotplug_poll: Duration::from_millis(20),
        ..FleetOptions::default()
    }
}

/// Milliseconds berth spent in `state` (first visit), from its `/state` timeline.
pub fn ms_in(state: &StateView, name: &str) -> u64 {
    state
        .timeline
        .iter()
        .filter(|e| e.state == name)
        .map(|e| e.duration_ms)
        .sum()
}

/// The profile directory (`release`, `dist`, ...) of the berth binary a fleet runs.
pub fn berth_profile() -> String {
    crate::BerthBuild::Shipped
        .berth()
        .ok()
        .and_then(|berth| {
            berth
                .parent()
                .and_then(|d| d.file_name())
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Median of a non-empty list.
pub fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

/// True when the benchmark can run (root, and berth and the stand-in of its own build); otherwise prints the
/// refusal under the benchmark's name and exits 1: a benchmark that cannot measure fails (`make bench` with it).
/// The fleet runs the binaries of the benchmark's own build (`target/release`, built with it by `make
/// bench-build`) unless `BERTHSIM_BIN_DIR` names others (footprint's `dist`): never the debug ones.
pub fn can_run(name: &str) -> bool {
    if !nix::unistd::Uid::effective().is_root() {
        println!(
            "{name} error=\"needs root\" {}",
            berth_testkit::bench::load_field()
        );
        std::process::exit(1);
    }
    let dir = match std::env::var_os("BERTHSIM_BIN_DIR") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => match berth_testkit::bench::own_build_dir() {
            Ok(dir) => dir,
            Err(error) => fail(name, &anyhow::anyhow!(error)),
        },
    };
    for binary in ["berth", "kafka-standin"] {
        if !dir.join(binary).is_file() {
            fail(
                name,
                &anyhow::anyhow!(
                    "{} is missing (`make bench-build` builds it)",
                    dir.join(binary).display()
                ),
            );
        }
    }
    std::env::set_var("BERTHSIM_BIN_DIR", &dir);
    true
}

/// Prints the benchmark's error line under its name and exits 1, so `make bench` fails with it.
pub fn fail(name: &str, error: &anyhow::Error) -> ! {
    println!(
        "{name} error={:?} {}",
        format!("{error:#}"),
        berth_testkit::bench::load_field()
    );
    std::process::exit(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn overlapping_calls_count_once() {
        let spans = [
            (at(0), at(100)),
            (at(50), at(120)),
            (at(200), at(250)),
            (at(210), at(220)),
        ];
        assert_eq!(union_ms(&spans), 120 + 50);
        assert_eq!(union_ms(&[]), 0);
    }

    #[test]
    fn session_wait_is_claim_before_the_expiry() {
        let mut state = StateView::empty();
        state.time_to_healthy_ms = Some(5_000);
        state.timeline.push(crate::state::TimelineEntry {
            state: "claim".into(),
            entered_ms: 100,
            duration_ms: 3_000,
            attempts: 1,
        });
        let boot = Boot {
            starting: at(900),
            ready: at(1_000),
            state,
        };
        // gone at 0 with a 4 s session: claim entered at 1.1 s, the session may expire at 4 s.
        assert_eq!(boot.session_wait_ms(at(0), Duration::from_secs(4)), 2_900);
        assert_eq!(boot.session_wait_ms(at(0), Duration::from_secs(1)), 0);
        assert_eq!(boot.session_wait_ms(at(0), Duration::from_secs(60)), 3_000);
        assert_eq!(boot.process_start_ms(), 100);
        assert_eq!(boot.berth_ms(), 5_100);
    }
}
