//! What the daemon shows the outside: the `/state` JSON document and the `/metrics` Prometheus text.
//!
//! The state loop publishes the machine after every decision ([`Published`], through a watch channel); the HTTP
//! server computes the documents from it when they are asked for, so durations, uptime and what berth waits for
//! are live, and the server never holds a lock the state loop needs.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use berth_core::drain_wait::DrainWait;
use berth_core::machine::ClaimState;
use berth_core::replication::{CatchUpProgress, DrainOutcome};
use berth_core::{EniFacts, Facts, Machine, State, VolumeFacts};
use serde::{Deserialize, Serialize};

use crate::daemon::{EarlyVolume, EarlyVolumeRecord};
use crate::waiting::{WaitingBoard, WaitingView};

/// The state loop's latest machine, and what is needed to show it live.
#[derive(Debug, Clone)]
pub struct Published {
    /// The machine after the latest decision.
    pub machine: Machine,
    /// When the daemon started (the machine's time zero).
    pub started: Instant,
    /// What the running step waits for.
    pub waiting: WaitingBoard,
    /// The volume's attach request sent beside the ENI's.
    pub early_volume: EarlyVolumeRecord,
}

impl Published {
    /// The `/state` document now.
    pub fn view(&self) -> StateView {
        StateView::of(
            &self.machine,
            self.started.elapsed(),
            self.waiting.view(),
            self.early_volume.get().as_ref(),
        )
    }
}

/// One state's time on the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// State name.
    pub state: String,
    /// Entered, milliseconds since the daemon started.
    pub entered_ms: u64,
    /// Time spent in it so far, in milliseconds.
    pub duration_ms: u64,
    /// Attempts made in it.
    pub attempts: u32,
}

/// The ENI as shown in `/state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EniView {
    /// `eni-...`
    pub id: String,
    /// Its fixed private address.
    pub ip: String,
    /// Its MAC.
    pub mac: String,
    /// Linux link name, once visible.
    pub link: Option<String>,
}

/// The volume as shown in `/state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeView {
    /// `vol-...`
    pub id: String,
    /// Canonical block device, once resolved.
    pub device: Option<String>,
    /// Mount point, once mounted.
    pub mount: Option<String>,
    /// Filesystem, once mounted.
    pub filesystem: Option<String>,
}

/// The volume's attachment requested alongside AttachEni, as shown in `/state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRequestView {
    /// Sent, milliseconds since the daemon started.
    pub requested_ms: u64,
    /// Answered, milliseconds since the daemon started (None while in flight).
    pub answered_ms: Option<u64>,
    /// The answer: what was sent, or why not.
    pub answer: Option<String>,
}

impl VolumeRequestView {
    fn of(early: &EarlyVolume) -> Self {
        Self {
            requested_ms: millis(early.requested),
            answered_ms: early.answer.as_ref().map(|(at, _)| millis(*at)),
            answer: early.answer.as_ref().map(|(_, answer)| match answer {
                Ok(request) => request.to_string(),
                Err(error) => format!("failed: {error}"),
            }),
        }
    }
}

/// The `/state` document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateView {
    /// berth's version.
    pub version: String,
    /// Current state name.
    pub state: String,
    /// True when `/health` answers 200.
    pub healthy: bool,
    /// `held`, `lost` or `none`.
    pub claim: String,
    /// The claimed broker id.
    pub broker_id: Option<u32>,
    /// This instance.
    pub instance_id: Option<String>,
    /// Its availability zone.
    pub availability_zone: Option<String>,
    /// The broker ENI.
    pub eni: Option<EniView>,
    /// Route table and rule priority, once planned.
    pub route_table: Option<u32>,
    /// The broker volume.
    pub volume: Option<VolumeView>,
    /// Kafka's advertised listener, once serving.
    pub listener: Option<String>,
    /// Per-state timings.
    pub timeline: Vec<TimelineEntry>,
    /// Milliseconds from start to Healthy, once reached.
    pub time_to_healthy_ms: Option<u64>,
    /// The most recent error.
    pub last_error: Option<String>,
    /// Why the daemon failed, in Failed.
    pub failure: Option<String>,
    /// Why it is draining, in Draining.
    pub drain_reason: Option<String>,
    /// State transitions so far.
    pub transitions: u64,
    /// Retries scheduled so far.
    pub retries: u64,
    /// Milliseconds since start.
    pub uptime_ms: u64,
    /// The daemon's process id (`berth drain` signals it).
    #[serde(default)]
    pub pid: u32,
    /// What the running step waits for, when it waits.
    #[serde(default)]
    pub waiting: Option<WaitingView>,
    /// Milliseconds since the claim was lost, while re-claiming.
    #[serde(default)]
    pub claim_lost_ms: Option<u64>,
    /// Re-claim attempts since the claim was lost.
    #[serde(default)]
    pub reclaim_attempts: u32,
    /// The volume's attachment requested alongside AttachEni, once it was.
    #[serde(default)]
    pub volume_request: Option<VolumeRequestView>,
    /// The caught-up gate's last look at the partitions this broker hosts (hosted, behind, leaderless).
    #[serde(default)]
    pub catch_up: Option<CatchUpProgress>,
    /// The drain's wait for a safe stop, once a drain began.
    #[serde(default)]
    pub drain_wait: Option<DrainWaitView>,
}

/// The drain's wait for a safe stop, as `/state` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainWaitView {
    /// True while the drain waits (Kafka not stopped yet).
    pub waiting: bool,
    /// Time waited so far (or in all), in milliseconds.
    pub waited_ms: u64,
    /// The bound (`kafka.drain_wait`), in milliseconds.
    pub bound_ms: u64,
    /// Safety checks made.
    pub checks: u32,
    /// Why the last check found stopping unsafe.
    pub unsafe_because: Option<String>,
    /// How the wait ended: `safe`, `skipped`, `bound_reached` or `cut_short`, with why.
    pub outcome: Option<DrainOutcome>,
}

impl DrainWaitView {
    fn of(wait: &DrainWait, now: Duration) -> Self {
        Self {
            waiting: wait.active(),
            waited_ms: millis(wait.waited(now)),
            bound_ms: millis(wait.bound()),
            checks: wait.checks,
            unsafe_because: wait.last.clone(),
            outcome: wait.outcome.clone(),
        }
    }

    fn bound_reached(&self) -> bool {
        matches!(self.outcome, Some(DrainOutcome::BoundReached(_)))
    }
}

/// Each state visit: when it began, how long it lasted (so far), in how many attempts.
fn timeline_view(machine: &Machine, now: Duration) -> Vec<TimelineEntry> {
    machine
        .timeline()
        .iter()
        .map(|entry| TimelineEntry {
            state: entry.state.name().into(),
            entered_ms: millis(entry.entered),
            duration_ms: millis(entry.left.unwrap_or(now).saturating_sub(entry.entered)),
            attempts: entry.attempts,
        })
        .collect()
}

impl EniView {
    /// The claimed id's ENI, with its Linux link once found.
    fn of(eni: &EniFacts, facts: &Facts) -> Self {
        Self {
            id: eni.eni_id.clone(),
            ip: eni.private_ip.to_string(),
            mac: eni.mac.to_string(),
            link: facts.eni.as_ref().map(|a| a.link_name.clone()),
        }
    }
}

impl VolumeView {
    /// The claimed id's volume, with its device and mount once known.
    fn of(volume: &VolumeFacts, facts: &Facts) -> Self {
        Self {
            id: volume.volume_id.clone(),
            device: facts
                .volume
                .as_ref()
                .map(|v| v.device.display().to_string()),
            mount: facts
                .mount
                .as_ref()
                .map(|m| m.mount_path.display().to_string()),
            filesystem: facts.mount.as_ref().map(|m| m.filesystem.clone()),
        }
    }
}

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

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl StateView {
    /// The view before the state loop has published anything.
    pub fn empty() -> Self {
        Self {
            version: berth_core::VERSION.into(),
            state: "starting".into(),
            healthy: false,
            claim: "none".into(),
            broker_id: None,
            instance_id: None,
            availability_zone: None,
            eni: None,
            route_table: None,
            volume: None,
            listener: None,
            timeline: Vec::new(),
            time_to_healthy_ms: None,
            last_error: None,
            failure: None,
            drain_reason: None,
            transitions: 0,
            retries: 0,
            uptime_ms: 0,
            pid: std::process::id(),
            waiting: None,
            claim_lost_ms: None,
            reclaim_attempts: 0,
            volume_request: None,
            catch_up: None,
            drain_wait: None,
        }
    }

    /// The view of `machine` at `now` (time since the daemon started), with what it waits for and the volume's
    /// early attach request.
    pub fn of(
        machine: &Machine,
        now: Duration,
        waiting: Option<WaitingView>,
        early_volume: Option<&EarlyVolume>,
    ) -> Self {
        let facts = machine.facts();
        let resources = facts.resources.as_ref();
        Self {
            version: berth_core::VERSION.into(),
            state: machine.state().name().into(),
            healthy: machine.is_serving(),
            claim: match machine.claim_state() {
                ClaimState::None => "none",
                ClaimState::Held => "held",
                ClaimState::Lost => "lost",
            }
            .into(),
            broker_id: facts.broker_id.map(|id| id.0),
            instance_id: facts.identity.as_ref().map(|i| i.instance_id.clone()),
            availability_zone: facts.identity.as_ref().map(|i| i.availability_zone.clone()),
            eni: resources
                .and_then(|r| r.eni.as_ref())
                .map(|eni| EniView::of(eni, facts)),
            route_table: facts.route.as_ref().map(|r| r.table),
            volume: resources
                .and_then(|r| r.volume.as_ref())
                .map(|volume| VolumeView::of(volume, facts)),
            listener: facts.serving.as_ref().map(|s| s.listener.to_string()),
            timeline: timeline_view(machine, now),
            time_to_healthy_ms: machine
                .timeline()
                .iter()
                .find(|entry| entry.state == State::Healthy)
                .map(|entry| millis(entry.entered)),
            last_error: machine.last_error().map(str::to_owned),
            failure: machine.failure().map(str::to_owned),
            drain_reason: machine.drain_reason().map(|r| r.to_string()),
            transitions: machine.transitions(),
            retries: machine.retries(),
            uptime_ms: millis(now),
            pid: std::process::id(),
            waiting,
            claim_lost_ms: machine
                .claim_lost_since()
                .map(|since| millis(now.saturating_sub(since))),
            reclaim_attempts: machine.reclaim_attempts(),
            volume_request: early_volume.map(VolumeRequestView::of),
            catch_up: facts.catch_up.clone(),
            drain_wait: machine
                .drain_wait()
                .map(|wait| DrainWaitView::of(wait, now)),
        }
    }

    /// The Prometheus text exposition of this view.
    pub fn metrics(&self) -> String {
        let mut out = String::new();
        for family in self
            .daemon_families()
            .into_iter()
            .chain(self.kafka_families())
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
    fn daemon_families(&self) -> Vec<Family> {
        let mut families = Vec::new();
        families.push(Family::new(
            "berth_state",
            "gauge",
            "1 for the daemon's current state, 0 for the others.",
            &self.state_samples(),
        ));
        families.push(Family::new(
            "berth_healthy",
            "gauge",
            "1 when /health answers 200.",
            &[(String::new(), f64::from(u8::from(self.healthy)))],
        ));
        families.push(Family::new(
            "berth_claim_held",
            "gauge",
            "1 while the broker id claim is held.",
            &[(String::new(), f64::from(u8::from(self.claim == "held")))],
        ));
        if let Some(id) = self.broker_id {
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
            &[(String::new(), self.transitions as f64)],
        ));
        families.push(Family::new(
            "berth_retries_total",
            "counter",
            "Retries scheduled since start.",
            &[(String::new(), self.retries as f64)],
        ));
        families.push(Family::new(
            "berth_state_seconds",
            "gauge",
            "Time spent in each state since start.",
            &self.state_seconds(),
        ));
        if let Some(ms) = self.time_to_healthy_ms {
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
            &[(String::new(), self.uptime_ms as f64 / 1000.0)],
        ));
        families
    }

    /// The caught-up gate's and the drain's metrics, once they have looked at Kafka.
    fn kafka_families(&self) -> Vec<Family> {
        let mut families = Vec::new();
        if let Some(progress) = &self.catch_up {
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
        if let Some(wait) = &self.drain_wait {
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
    fn state_samples(&self) -> Vec<(String, f64)> {
        State::ALL
            .iter()
            .map(|p| {
                (
                    format!("{{state=\"{}\"}}", p.name()),
                    f64::from(u8::from(p.name() == self.state)),
                )
            })
            .collect()
    }

    /// `berth_state_seconds`' samples: the time spent in each state, summed over its visits.
    fn state_seconds(&self) -> Vec<(String, f64)> {
        let mut durations: Vec<(String, f64)> = Vec::new();
        for entry in &self.timeline {
            let label = format!("{{state=\"{}\"}}", entry.state);
            match durations.iter_mut().find(|(l, _)| *l == label) {
                Some((_, total)) => *total += entry.duration_ms as f64 / 1000.0,
                None => durations.push((label, entry.duration_ms as f64 / 1000.0)),
            }
        }
        durations
    }

    /// A human summary for `berth status`.
    pub fn render_human(&self) -> String {
        let mut out = String::new();
        self.render_what(&mut out);
        self.render_progress(&mut out);
        out
    }

    /// What this broker is: state, id, instance, ENI, volume, listener.
    fn render_what(&self, out: &mut String) {
        let health = if self.healthy {
            "HEALTHY"
        } else {
            "not healthy"
        };
        let _ = writeln!(
            out,
            "state:       {} ({health}), berth {}",
            self.state, self.version
        );
        let or_dash = |value: Option<String>| value.unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "broker id:   {}   claim: {}",
            or_dash(self.broker_id.map(|id| id.to_string())),
            self.claim
        );
        let _ = writeln!(
            out,
            "instance:    {} in {}",
            or_dash(self.instance_id.clone()),
            or_dash(self.availability_zone.clone())
        );
        if let Some(eni) = &self.eni {
            let link = eni.link.clone().unwrap_or_else(|| "not visible yet".into());
            let table = or_dash(self.route_table.map(|t| t.to_string()));
            let _ = writeln!(
                out,
                "eni:         {} {} ({}) link {link}, table {table}",
                eni.id, eni.ip, eni.mac
            );
        }
        if let Some(volume) = &self.volume {
            let _ = writeln!(
                out,
                "volume:      {} device {} mounted at {} ({})",
                volume.id,
                or_dash(volume.device.clone()),
                or_dash(volume.mount.clone()),
                or_dash(volume.filesystem.clone())
            );
        }
        if let Some(listener) = &self.listener {
            let _ = writeln!(out, "kafka:       serving on {listener}");
        }
    }

    /// How it got here, and what it waits for now.
    fn render_progress(&self, out: &mut String) {
        let _ = writeln!(out, "timeline:");
        for entry in &self.timeline {
            let _ = writeln!(
                out,
                "  {:<12} at {:>8} ms  took {:>8} ms  attempts {}",
                entry.state, entry.entered_ms, entry.duration_ms, entry.attempts
            );
        }
        if let Some(ms) = self.time_to_healthy_ms {
            let _ = writeln!(out, "time to healthy: {ms} ms");
        }
        if let Some(ms) = self.claim_lost_ms {
            let _ = writeln!(
                out,
                "claim lost:  {} ago, re-claiming (attempt {}); Kafka keeps running",
                berth_core::duration::format_duration(Duration::from_millis(ms)),
                self.reclaim_attempts
            );
        }
        if let Some(waiting) = &self.waiting {
            let _ = writeln!(
                out,
                "waiting:     {} for {}: {}",
                waiting.step,
                berth_core::duration::format_duration(Duration::from_millis(waiting.for_ms)),
                waiting.reason
            );
        }
        if let Some(progress) = &self.catch_up {
            let _ = writeln!(out, "catch-up:    {progress}");
        }
        if let Some(failure) = &self.failure {
            let _ = writeln!(out, "FAILED:      {failure}");
        } else if let Some(error) = &self.last_error {
            let _ = writeln!(out, "last error:  {error}");
        }
        if let Some(reason) = &self.drain_reason {
            let _ = writeln!(out, "draining:    {reason}");
        }
        if let Some(wait) = &self.drain_wait {
            let waited =
                berth_core::duration::format_duration(Duration::from_millis(wait.waited_ms));
            match (&wait.outcome, &wait.unsafe_because) {
                (Some(outcome), _) => {
                    let _ = writeln!(out, "drain wait:  {waited}: {}", outcome.why());
                }
                (None, Some(why)) => {
                    let _ = writeln!(out, "drain wait:  {waited} (check {}): {why}", wait.checks);
                }
                (None, None) => {
                    let _ = writeln!(out, "drain wait:  {waited}: checking replicas");
                }
            }
        }
    }
}
