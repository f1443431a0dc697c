//! The `/state` document's schema: what berth serves at `/state` and what `berth status`, the simulated fleet and
//! the tests read back. Fields added later carry `#[serde(default)]`, so a reader accepts an older daemon's
//! document, and unknown fields are ignored, so an older reader accepts a newer one.

use berth_core::replication::{CatchUpProgress, DrainOutcome};
use serde::{Deserialize, Serialize};

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

/// The `/state` document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateView {
    /// How the daemon was built: `release` for what the package ships (optimised, without crash points), else
    /// what differs (`debug`, `failpoints`); empty from a daemon older than this field.
    #[serde(default)]
    pub build: String,
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
    /// The lifecycle actions berth keeps alive and completes.
    #[serde(default)]
    pub lifecycle: Option<LifecycleView>,
    /// The failure's report to Auto Scaling, in Failed.
    #[serde(default)]
    pub failure_report: Option<FailureReportView>,
}

/// The lifecycle actions as `/state` shows them: `idle` (not begun), `pending` (heartbeats), `completing`
/// (completion sent, heartbeats until its answer), `over`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleView {
    /// The launch action.
    pub launch: String,
    /// The terminate action.
    pub terminate: String,
}

/// Where telling Auto Scaling about the failure stands, as `/state` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureReportView {
    /// `releasing`, `sending`, `not_landed` (sent again later), `abandoned` or `marked_unhealthy`.
    pub status: String,
    /// Reports sent so far.
    pub attempts: u32,
    /// Why the last one did not land.
    pub error: Option<String>,
    /// When the next is sent, in milliseconds from now.
    pub retry_in_ms: Option<u64>,
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
    /// Whether the drain stopped Kafka at its bound while stopping was still unsafe.
    pub fn bound_reached(&self) -> bool {
        matches!(self.outcome, Some(DrainOutcome::BoundReached(_)))
    }
}

/// One waiting reason as `/state` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingView {
    /// The step that waits (`attach_eni`, `start_kafka`, `reclaim`, ...).
    pub step: String,
    /// What it waits for: its last retryable reason.
    #[serde(rename = "for")]
    pub reason: String,
    /// How long this reason has been the answer, in milliseconds.
    pub for_ms: u64,
}

impl StateView {
    /// The view before the state loop has published anything.
    pub fn empty() -> Self {
        Self {
            build: String::new(),
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
            lifecycle: None,
            failure_report: None,
        }
    }
}
