//! What the decisions need besides observations: the retry policy of each boot state, the timers, the layout,
//! the caught-up gate and the drain's bound.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::State;
use crate::ports::MountPlan;
use crate::retry::RetryPolicy;
use crate::routing::RouteNumbering;

/// Retry policy per boot state.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StatePolicies {
    /// Claim.
    pub claim: RetryPolicy,
    /// AttachEni.
    pub attach_eni: RetryPolicy,
    /// Route.
    pub route: RetryPolicy,
    /// AttachEbs.
    pub attach_ebs: RetryPolicy,
    /// Mount.
    pub mount: RetryPolicy,
    /// StartKafka.
    pub start_kafka: RetryPolicy,
}

impl StatePolicies {
    /// The policy of a boot state (Claim's for the others, which do not retry against it).
    pub fn of(&self, state: State) -> &RetryPolicy {
        match state {
            State::AttachEni => &self.attach_eni,
            State::Route => &self.route,
            State::AttachEbs => &self.attach_ebs,
            State::Mount => &self.mount,
            State::StartKafka => &self.start_kafka,
            _ => &self.claim,
        }
    }
}

/// Everything the decisions need besides observations: policies, timers and layout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Backoff and deadline per boot state.
    pub policies: StatePolicies,
    /// Interval between health checks while Healthy.
    #[serde(with = "crate::serde_duration")]
    pub check_interval: Duration,
    /// How long Kafka may be lost while Healthy before Auto Scaling is told the instance is unhealthy.
    #[serde(with = "crate::serde_duration")]
    pub unhealthy_after: Duration,
    /// Launch lifecycle heartbeat interval while booting; `None` disables heartbeats.
    #[serde(default, with = "crate::serde_duration_option")]
    pub heartbeat_interval: Option<Duration>,
    /// Route table numbering.
    pub routing: RouteNumbering,
    /// Mount point and Kafka log dirs on the volume.
    pub mount: MountPlan,
    /// Time allowed for one attempt to re-claim the id after the session was lost (attempts repeat, with
    /// backoff, for as long as it takes).
    #[serde(default = "default_reclaim_attempt", with = "crate::serde_duration")]
    pub reclaim_attempt: Duration,
    /// The caught-up gate (`kafka.healthy_when = "caught_up"`); `None`: Healthy as soon as Kafka serves.
    #[serde(default)]
    pub catch_up: Option<CatchUpGate>,
    /// The safe drain's bound (`kafka.drain_wait`); `None`: a drain stops Kafka without checking.
    #[serde(default, with = "crate::serde_duration_option")]
    pub drain_wait: Option<Duration>,
    /// Terminating-hook heartbeat interval while a drain waits; `None` disables them.
    #[serde(default, with = "crate::serde_duration_option")]
    pub terminate_heartbeat_interval: Option<Duration>,
}

/// How long berth waits, after Kafka serves, for the partitions it hosts to be in sync again before Healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatchUpGate {
    /// Past this (from the first serving evidence), the boot fails (`kafka.caught_up_deadline`).
    #[serde(with = "crate::serde_duration")]
    pub deadline: Duration,
    /// Interval between looks at the replication (`kafka.check_interval`).
    #[serde(with = "crate::serde_duration")]
    pub poll: Duration,
}

/// The default of [`Settings::reclaim_attempt`]: long enough to open a session to a recovering ensemble.
pub const DEFAULT_RECLAIM_ATTEMPT: Duration = Duration::from_secs(30);

fn default_reclaim_attempt() -> Duration {
    DEFAULT_RECLAIM_ATTEMPT
}
