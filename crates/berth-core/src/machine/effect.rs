//! What the daemon must do as a result of a decision ([`Effect`]): run or cancel a step, report to AWS, tear
//! down ([`Teardown`], in order), exit ([`ExitReason`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Step, StepTag};
use crate::facts::{EniFacts, Identity, RoutePlan, VolumeFacts};
use crate::ports::{LaunchResult, LifecycleHook, MountPlan, Verdict};

/// One teardown action of a drain, in the order they must run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "teardown", rename_all = "snake_case")]
pub enum Teardown {
    /// Controlled shutdown of Kafka.
    StopKafka,
    /// Unmount the volume.
    Unmount(MountPlan),
    /// Remove the ENI's address, routes and rule.
    RemoveRoutes(RoutePlan),
    /// Detach the volume.
    DetachVolume {
        /// This instance.
        identity: Identity,
        /// The volume.
        volume: VolumeFacts,
    },
    /// Detach the ENI.
    DetachEni {
        /// This instance.
        identity: Identity,
        /// The ENI.
        eni: EniFacts,
    },
    /// Delete the claim node and close the session (last, so a replacement finds everything free).
    ReleaseClaim,
    /// Complete the terminating lifecycle action.
    CompleteTermination {
        /// This instance.
        identity: Identity,
    },
    /// Tell Auto Scaling the boot failed for good (ABANDON the pending launch, else SetInstanceHealth
    /// Unhealthy), last, once everything is released, so the replacement finds it free.
    ReportFailure {
        /// This instance, when known.
        identity: Option<Identity>,
    },
}

impl Teardown {
    /// Short name for logs and tests.
    pub fn name(&self) -> &'static str {
        match self {
            Teardown::StopKafka => "stop_kafka",
            Teardown::Unmount(_) => "unmount",
            Teardown::RemoveRoutes(_) => "remove_routes",
            Teardown::DetachVolume { .. } => "detach_volume",
            Teardown::DetachEni { .. } => "detach_eni",
            Teardown::ReleaseClaim => "release_claim",
            Teardown::CompleteTermination { .. } => "complete_termination",
            Teardown::ReportFailure { .. } => "report_failure",
        }
    }
}

/// What the daemon must do as a result of a decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // a few values per decision; boxing would only add noise
pub enum Effect {
    /// Start a step now; it must finish by `deadline` (time since the daemon started).
    Run {
        /// The run, to be carried by its result.
        tag: StepTag,
        /// The step.
        step: Step,
        /// Deadline, as time since start.
        #[serde(with = "crate::serde_duration")]
        deadline: Duration,
    },
    /// Abandon the running main step (its result will not be used).
    Cancel,
    /// Report the verdict to CloudFormation (SignalResource), independently of the lifecycle hook.
    SignalStack {
        /// This instance (looked up when not known yet).
        identity: Option<Identity>,
        /// Success or failure with reason.
        verdict: Verdict,
    },
    /// Complete the launch lifecycle action, independently of CloudFormation.
    CompleteLaunch {
        /// This instance.
        identity: Identity,
        /// CONTINUE or ABANDON.
        result: LaunchResult,
    },
    /// Extend a lifecycle hook (the launch hook while booting, the terminating hook while a drain waits).
    Heartbeat {
        /// This instance.
        identity: Identity,
        /// Which hook.
        hook: LifecycleHook,
    },
    /// Tell Auto Scaling the instance is unhealthy.
    MarkUnhealthy {
        /// This instance.
        identity: Identity,
    },
    /// Run these teardown actions in order, then feed [`Input::TeardownDone`](super::Input::TeardownDone).
    Teardown(Vec<Teardown>),
    /// The daemon is done: exit.
    Exit(ExitReason),
}

/// Why the daemon exits; the binary maps it to an exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    /// A drain released everything (status 0).
    Drained,
    /// Stopped by SIGTERM with everything left in place (status 0); a restarted berth adopts it.
    Stopped,
    /// Failed, let go of what it held and told Auto Scaling (non-zero, so systemd shows it).
    Failed,
}
