//! The states the machine names everywhere (logs, `/state`, metrics, `[states.*]` in the config), the timeline
//! of their visits, and the claim's state as the outside sees it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The daemon's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum State {
    /// Claim a broker id in ZooKeeper.
    Claim,
    /// Attach the id's ENI and wait for its Linux link.
    AttachEni,
    /// Install address, routes and rule for the ENI.
    Route,
    /// Attach the id's volume (its attachment already requested while AttachEni ran) and wait for its block
    /// device.
    AttachEbs,
    /// Probe, (only if blank and allowed) format, mount, and check Kafka's identity on the volume.
    Mount,
    /// Write Kafka's settings, start it, wait until it serves.
    StartKafka,
    /// Serving; keep checking.
    Healthy,
    /// Graceful stop in progress.
    Draining,
    /// Terminal: the retry budget ran out or a fatal error occurred.
    Failed,
}

impl State {
    /// The boot states in order.
    pub const BOOT: [State; 7] = [
        State::Claim,
        State::AttachEni,
        State::Route,
        State::AttachEbs,
        State::Mount,
        State::StartKafka,
        State::Healthy,
    ];

    /// Every state: the boot states, then Draining and Failed.
    pub const ALL: [State; 9] = {
        let boot = Self::BOOT;
        [
            boot[0],
            boot[1],
            boot[2],
            boot[3],
            boot[4],
            boot[5],
            boot[6],
            State::Draining,
            State::Failed,
        ]
    };

    /// The state a success leads to.
    pub fn next(self) -> Option<State> {
        let position = Self::BOOT.iter().position(|p| *p == self)?;
        Self::BOOT.get(position + 1).copied()
    }

    /// Lower-case name, as used in logs, `/state`, metrics and config keys.
    pub fn name(self) -> &'static str {
        match self {
            State::Claim => "claim",
            State::AttachEni => "attach_eni",
            State::Route => "route",
            State::AttachEbs => "attach_ebs",
            State::Mount => "mount",
            State::StartKafka => "start_kafka",
            State::Healthy => "healthy",
            State::Draining => "draining",
            State::Failed => "failed",
        }
    }

    /// True for the boot states before Healthy (where steps retry against a deadline).
    pub fn is_booting(self) -> bool {
        matches!(
            self,
            State::Claim
                | State::AttachEni
                | State::Route
                | State::AttachEbs
                | State::Mount
                | State::StartKafka
        )
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Time spent in one state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateTiming {
    /// The state.
    pub state: State,
    /// Entered, as time since start.
    #[serde(with = "crate::serde_duration")]
    pub entered: Duration,
    /// Left, as time since start (None while in it).
    #[serde(default, with = "crate::serde_duration_option")]
    pub left: Option<Duration>,
    /// Attempts made in it.
    pub attempts: u32,
}

/// Whether the claim is currently held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimState {
    /// Not claimed yet (Claim state).
    None,
    /// Held by this daemon's session.
    Held,
    /// The session expired; reclaiming.
    Lost,
}
