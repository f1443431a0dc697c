//! What the machine asks the daemon to run ([`Step`]), how it tells one run from another ([`StepTag`]), and
//! what a run that succeeded learnt ([`Output`]).

use serde::{Deserialize, Serialize};

use super::State;
use crate::facts::{
    BrokerId, EniAttachment, EniFacts, IdResources, Identity, MountReport, RoutePlan,
    ServingEvidence, VolumeAttachment, VolumeFacts,
};
use crate::ports::{BrokerSpec, MountPlan};
use crate::replication::ReplicationView;

/// A unit of work the daemon runs through the adapters. Carries what the adapters need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Identity, discovery, claim plan, claim.
    Claim,
    /// Attach the ENI, wait for `attached` and for the link; on the boot's first run also request the volume's
    /// attachment (one pass of AttachEbs's rules, not waited for), so EC2 attaches both at once.
    AttachEni {
        /// This instance.
        identity: Identity,
        /// The ENI.
        eni: EniFacts,
        /// The claimed id's volume, whose attachment this run requests too (the boot's first run only).
        #[serde(default)]
        volume: Option<VolumeFacts>,
    },
    /// Configure policy routing.
    Route {
        /// What to install.
        plan: RoutePlan,
    },
    /// Attach the volume, wait for `attached` and for the block device.
    AttachEbs {
        /// This instance.
        identity: Identity,
        /// The volume.
        volume: VolumeFacts,
    },
    /// Probe, format if blank and allowed, mount, check meta.properties.
    Mount {
        /// Canonical block device.
        device: std::path::PathBuf,
        /// Where and which log dirs.
        plan: MountPlan,
        /// The claimed id the data must belong to.
        broker_id: BrokerId,
    },
    /// Render settings, start Kafka, wait until serving.
    StartKafka {
        /// What Kafka must be told.
        spec: BrokerSpec,
    },
    /// One look at the replication: is every partition this broker hosts in sync (the caught-up gate)?
    CatchUp {
        /// What Kafka was told.
        spec: BrokerSpec,
    },
    /// One health check while Healthy.
    Check {
        /// What Kafka was told.
        spec: BrokerSpec,
    },
    /// One look at the replication before a drain stops Kafka: would stopping it be safe?
    DrainCheck {
        /// What Kafka was told.
        spec: BrokerSpec,
    },
    /// Claim the same id again after the session expired.
    Reclaim {
        /// The id.
        broker_id: BrokerId,
    },
}

impl Step {
    /// Which step this is.
    pub fn kind(&self) -> StepKind {
        match self {
            Step::Claim => StepKind::Boot(State::Claim),
            Step::AttachEni { .. } => StepKind::Boot(State::AttachEni),
            Step::Route { .. } => StepKind::Boot(State::Route),
            Step::AttachEbs { .. } => StepKind::Boot(State::AttachEbs),
            Step::Mount { .. } => StepKind::Boot(State::Mount),
            Step::StartKafka { .. } => StepKind::Boot(State::StartKafka),
            Step::CatchUp { .. } => StepKind::CatchUp,
            Step::Check { .. } => StepKind::Check,
            Step::DrainCheck { .. } => StepKind::DrainCheck,
            Step::Reclaim { .. } => StepKind::Reclaim,
        }
    }

    /// Short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }
}

/// The kind of a [`Step`], without its data: what the machine remembers of the step it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// The step of a boot state (Claim to StartKafka).
    Boot(State),
    /// [`Step::CatchUp`], in StartKafka once Kafka serves.
    CatchUp,
    /// [`Step::Check`], while Healthy.
    Check,
    /// [`Step::DrainCheck`], while Draining waits for a safe stop.
    DrainCheck,
    /// [`Step::Reclaim`], after the claim was lost.
    Reclaim,
}

impl StepKind {
    /// Short name for logs and metrics: the boot state's name, `check` or `reclaim`.
    pub fn name(self) -> &'static str {
        match self {
            StepKind::Boot(state) => state.name(),
            StepKind::CatchUp => "catch_up",
            StepKind::Check => "check",
            StepKind::DrainCheck => "drain_check",
            StepKind::Reclaim => "reclaim",
        }
    }

    /// Whether `output` is what this step produces.
    pub(super) fn produces(self, output: &Output) -> bool {
        matches!(
            (self, output),
            (StepKind::Boot(State::Claim), Output::Claimed { .. })
                | (StepKind::Boot(State::AttachEni), Output::EniReady(_))
                | (StepKind::Boot(State::Route), Output::Routed)
                | (StepKind::Boot(State::AttachEbs), Output::VolumeReady(_))
                | (StepKind::Boot(State::Mount), Output::Mounted(_))
                | (
                    StepKind::Boot(State::StartKafka) | StepKind::Check,
                    Output::Serving(_)
                )
                | (StepKind::CatchUp, Output::CatchUpView(_))
                | (StepKind::DrainCheck, Output::DrainCheckView(_))
        )
    }
}

impl std::fmt::Display for StepKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One run of a step: its kind and the machine's sequence number of the run. A result carries the tag of the
/// run it belongs to, so a result of a run that was cancelled (a drain, a failure) or superseded is recognised
/// and dropped instead of being taken for the running one's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StepTag {
    /// Which step.
    pub kind: StepKind,
    /// The run's number: the machine's count of step runs when this one started (unique within a machine).
    pub run: u64,
}

impl std::fmt::Display for StepTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (run {})", self.kind, self.run)
    }
}

/// A step's successful result, carrying what it learnt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "output", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // one value per transition; boxing would only add noise
pub enum Output {
    /// Claim succeeded.
    Claimed {
        /// This instance.
        identity: Identity,
        /// The id now held.
        broker_id: BrokerId,
        /// The id's ENI and volume as discovered.
        resources: IdResources,
        /// Every discovered id's ENI address.
        peers: std::collections::BTreeMap<BrokerId, std::net::Ipv4Addr>,
    },
    /// ENI attached and its link visible.
    EniReady(EniAttachment),
    /// Routing installed.
    Routed,
    /// Volume attached and its device visible.
    VolumeReady(VolumeAttachment),
    /// Mounted and identity checked.
    Mounted(MountReport),
    /// Kafka serves as this broker.
    Serving(ServingEvidence),
    /// The cluster's replication as Kafka describes it, looked at by the caught-up gate ([`Step::CatchUp`]).
    CatchUpView(ReplicationView),
    /// The cluster's replication as Kafka describes it, looked at before a drain stops Kafka
    /// ([`Step::DrainCheck`]).
    DrainCheckView(ReplicationView),
}

impl Output {
    /// Short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Output::Claimed { .. } => "claimed",
            Output::EniReady(_) => "eni_ready",
            Output::Routed => "routed",
            Output::VolumeReady(_) => "volume_ready",
            Output::Mounted(_) => "mounted",
            Output::Serving(_) => "serving",
            Output::CatchUpView(_) => "catch_up_view",
            Output::DrainCheckView(_) => "drain_check_view",
        }
    }
}
