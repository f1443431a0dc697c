//! Builds the `/state` document ([`berth_state::StateView`], its schema in the `berth-state` crate) from the
//! state loop's machine.
//!
//! The state loop publishes the machine after every decision ([`Published`], through a watch channel); the HTTP
//! server computes the documents from it when they are asked for, so durations, uptime and what berth waits for
//! are live, and the server never holds a lock the state loop needs.

use std::time::{Duration, Instant};

use berth_core::drain_wait::DrainWait;
use berth_core::machine::{ClaimState, FailureReportState, HookAction};
use berth_core::ports::FailureReport;
use berth_core::{EniFacts, Facts, Machine, State, VolumeFacts};
pub use berth_state::{
    DrainWaitView, EniView, FailureReportView, LifecycleView, StateView, TimelineEntry,
    VolumeRequestView, VolumeView, WaitingView,
};

use crate::daemon::{EarlyVolume, EarlyVolumeRecord};
use crate::waiting::WaitingBoard;

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
        state_view(
            &self.machine,
            self.started.elapsed(),
            self.waiting.view(),
            self.early_volume.get().as_ref(),
        )
    }
}

/// The view of `machine` at `now` (time since the daemon started), with what it waits for and the volume's early
/// attach request.
pub fn state_view(
    machine: &Machine,
    now: Duration,
    waiting: Option<WaitingView>,
    early_volume: Option<&EarlyVolume>,
) -> StateView {
    let facts = machine.facts();
    let resources = facts.resources.as_ref();
    StateView {
        build: crate::BUILD.into(),
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
            .map(|eni| eni_view(eni, facts)),
        route_table: facts.route.as_ref().map(|r| r.table),
        volume: resources
            .and_then(|r| r.volume.as_ref())
            .map(|volume| volume_view(volume, facts)),
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
        volume_request: early_volume.map(volume_request_view),
        catch_up: facts.catch_up.clone(),
        drain_wait: machine.drain_wait().map(|wait| drain_wait_view(wait, now)),
        lifecycle: Some(lifecycle_view(machine.lifecycle())),
        failure_report: machine
            .failure_report()
            .map(|report| failure_report_view(report, now)),
    }
}

/// The launch and terminate actions, each `idle`, `pending`, `completing` or `over`.
fn lifecycle_view((launch, terminate): (HookAction, HookAction)) -> LifecycleView {
    let name = |action: HookAction| match action {
        HookAction::Idle => "idle",
        HookAction::Pending { .. } => "pending",
        HookAction::Completing { .. } => "completing",
        HookAction::Over => "over",
    };
    LifecycleView {
        launch: name(launch).into(),
        terminate: name(terminate).into(),
    }
}

/// Where the failure's report to Auto Scaling stands.
fn failure_report_view(report: &FailureReportState, now: Duration) -> FailureReportView {
    let (status, attempts, error, retry_in_ms) = match report {
        FailureReportState::Releasing => ("releasing", 0, None, None),
        FailureReportState::Sending { attempts } => ("sending", *attempts, None, None),
        FailureReportState::NotLanded {
            attempts,
            error,
            retry_at,
        } => (
            "not_landed",
            *attempts,
            Some(error.clone()),
            Some(millis(retry_at.saturating_sub(now))),
        ),
        FailureReportState::Landed(FailureReport::Abandoned) => ("abandoned", 0, None, None),
        FailureReportState::Landed(FailureReport::MarkedUnhealthy) => {
            ("marked_unhealthy", 0, None, None)
        }
    };
    FailureReportView {
        status: status.into(),
        attempts,
        error,
        retry_in_ms,
    }
}

fn volume_request_view(early: &EarlyVolume) -> VolumeRequestView {
    VolumeRequestView {
        requested_ms: millis(early.requested),
        answered_ms: early.answer.as_ref().map(|(at, _)| millis(*at)),
        answer: early.answer.as_ref().map(|(_, answer)| match answer {
            Ok(request) => request.to_string(),
            Err(error) => format!("failed: {error}"),
        }),
    }
}

fn drain_wait_view(wait: &DrainWait, now: Duration) -> DrainWaitView {
    DrainWaitView {
        waiting: wait.active(),
        waited_ms: millis(wait.waited(now)),
        bound_ms: millis(wait.bound()),
        checks: wait.checks,
        unsafe_because: wait.last.clone(),
        outcome: wait.outcome.clone(),
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

/// The claimed id's ENI, with its Linux link once found.
fn eni_view(eni: &EniFacts, facts: &Facts) -> EniView {
    EniView {
        id: eni.eni_id.clone(),
        ip: eni.private_ip.to_string(),
        mac: eni.mac.to_string(),
        link: facts.eni.as_ref().map(|a| a.link_name.clone()),
    }
}

/// The claimed id's volume, with its device and mount once known.
fn volume_view(volume: &VolumeFacts, facts: &Facts) -> VolumeView {
    VolumeView {
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

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
