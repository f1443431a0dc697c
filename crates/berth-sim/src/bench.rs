//! Shared pieces of the fleet benchmarks (`benches/`): the injected delays the targets are stated against, and
//! reading a state's time from berth's own timeline.

use std::time::Duration;

use crate::state::StateView;
use crate::FleetOptions;

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

/// The sum of the injected delays (all on the boot's critical path).
pub fn injected() -> Duration {
    ENI_DELAY + VOLUME_DELAY + KAFKA_DELAY
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

/// The profile (`debug`/`release`) of the berth binary a fleet runs.
pub fn berth_profile() -> String {
    crate::fleet::Binaries::locate()
        .ok()
        .and_then(|b| {
            b.berth
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

/// True when the benchmark can run (root); otherwise prints the refusal under the benchmark's name and exits 1:
/// a benchmark that cannot measure fails (`make bench` with it).
pub fn can_run(name: &str) -> bool {
    if !nix::unistd::Uid::effective().is_root() {
        println!("{name} error=\"needs root\"");
        std::process::exit(1);
    }
    true
}

/// Prints the benchmark's error line under its name and exits 1, so `make bench` fails with it.
pub fn fail(name: &str, error: &anyhow::Error) -> ! {
    println!("{name} error={:?}", format!("{error:#}"));
    std::process::exit(1)
}
