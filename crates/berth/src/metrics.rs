//! `/metrics`: the Prometheus text exposition of the `/state` document, computed from it when asked for.

use std::fmt::Write as _;

use berth_core::State;
use berth_state::StateView;

/// One metric family of the exposition: its name, type, help and samples (labels, value).
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: Vec<(String, f64)>,
}

impl Family {
    fn new(
        name: &'static str,
        kind: &'static str,
        help: &'static str,
        samples: &[(String, f64)],
    ) -> Self {
        Self {
            name,
            kind,
            help,
            samples: samples.to_vec(),
        }
    }
}

/// The Prometheus text exposition of `view`.
pub fn exposition(view: &StateView) -> String {
    let mut out = String::new();
    for family in daemon_families(view)
        .into_iter()
        .chain(kafka_families(view))
    {
        let Family {
            name,
            kind,
            help,
            samples,
        } = family;
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    }
    out
}

/// The daemon's own metrics: state, health, claim, transitions, retries, times.
fn daemon_families(view: &StateView) -> Vec<Family> {
    let mut families = Vec::new();
    families.push(Family::new(
        "berth_state",
        "gauge",
        "1 for the daemon's current state, 0 for the others.",
        &state_samples(view),
    ));
    families.push(Family::new(
        "berth_healthy",
        "gauge",
        "1 when /health answers 200.",
        &[(String::new(), f64::from(u8::from(view.healthy)))],
    ));
    families.push(Family::new(
        "berth_claim_held",
        "gauge",
        "1 while the broker id claim is held.",
        &[(String::new(), f64::from(u8::from(view.claim == "held")))],
    ));
    if let Some(id) = view.broker_id {
        families.push(Family::new(
            "berth_broker_id",
            "gauge",
            "The claimed broker id.",
            &[(String::new(), f64::from(id))],
        ));
    }
    families.push(Family::new(
        "berth_transitions_total",
        "counter",
        "State transitions since start.",
        &[(String::new(), view.transitions as f64)],
    ));
    families.push(Family::new(
        "berth_retries_total",
        "counter",
        "Retries scheduled since start.",
        &[(String::new(), view.retries as f64)],
    ));
    families.push(Family::new(
        "berth_state_seconds",
        "gauge",
        "Time spent in each state since start.",
        &state_seconds(view),
    ));
    if let Some(ms) = view.time_to_healthy_ms {
        families.push(Family::new(
            "berth_time_to_healthy_seconds",
            "gauge",
            "Time from start to the first Healthy.",
            &[(String::new(), ms as f64 / 1000.0)],
        ));
    }
    families.push(Family::new(
        "berth_uptime_seconds",
        "gauge",
        "Time since the daemon started.",
        &[(String::new(), view.uptime_ms as f64 / 1000.0)],
    ));
    families
}

/// The caught-up gate's and the drain's metrics, once they have looked at Kafka.
fn kafka_families(view: &StateView) -> Vec<Family> {
    let mut families = Vec::new();
    if let Some(progress) = &view.catch_up {
        families.push(Family::new(
            "berth_kafka_partitions_behind",
            "gauge",
            "Partitions this broker hosts that are under-replicated because of it, at the caught-up gate's last look.",
            &[(String::new(), progress.behind.len() as f64)],
        ));
        families.push(Family::new(
            "berth_kafka_replication_unjudged",
            "gauge",
            "1 when the caught-up gate's last answer did not let berth judge (an ACL hides a hosted topic, a topic error, an unreadable min.insync.replicas): not caught up.",
            &[(String::new(), f64::from(u8::from(!progress.cannot_judge.is_empty())))],
        ));
    }
    if let Some(wait) = &view.drain_wait {
        families.push(Family::new(
            "berth_drain_wait_seconds",
            "gauge",
            "Time the drain has waited (or waited in all) for stopping Kafka to be safe.",
            &[(String::new(), wait.waited_ms as f64 / 1000.0)],
        ));
        families.push(Family::new(
            "berth_drain_wait_bound_reached",
            "gauge",
            "1 when the drain stopped Kafka at kafka.drain_wait while stopping was still unsafe.",
            &[(String::new(), f64::from(u8::from(wait.bound_reached())))],
        ));
    }
    families
}

/// `berth_state`'s samples: 1 for the current state, 0 for the others.
fn state_samples(view: &StateView) -> Vec<(String, f64)> {
    State::ALL
        .iter()
        .map(|p| {
            (
                format!("{{state=\"{}\"}}", p.name()),
                f64::from(u8::from(p.name() == view.state)),
            )
        })
        .collect()
}

/// `berth_state_seconds`' samples: the time spent in each state, summed over its visits.
fn state_seconds(view: &StateView) -> Vec<(String, f64)> {
    let mut durations: Vec<(String, f64)> = Vec::new();
    for entry in &view.timeline {
        let label = format!("{{state=\"{}\"}}", entry.state);
        match durations.iter_mut().find(|(l, _)| *l == label) {
            Some((_, total)) => *total += entry.duration_ms as f64 / 1000.0,
            None => durations.push((label, entry.duration_ms as f64 / 1000.0)),
        }
    }
    durations
}
