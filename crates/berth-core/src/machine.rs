//! The boot state machine: `Claim → AttachEni → Route → AttachEbs → Mount → StartKafka → Healthy`, plus
//! `Draining` (a drain: release everything, then exit) and `Failed` (after the retry budget or a fatal error:
//! report, let go of everything but a refused volume, ask Auto Scaling for a replacement, exit non-zero).
//!
//! Three ways out, each an [`ExitReason`]: a drain (only on a termination notice or an operator's request), a
//! failure's release, and a stop (SIGTERM), which leaves Kafka and everything berth set up in place for the next
//! berth to adopt. A claim lost while this host may be the broker is re-claimed for as long as it takes; only
//! another holder *and* the ENI gone from here make the machine let go (see [`ReclaimOutcome`]).
//!
//! [`Machine::decide`] is pure: it takes the current machine, one [`Input`] (a step's result, a timer, a
//! signal, a session event) and the time, and returns the next machine and the [`Effect`]s to run. It does no
//! I/O, reads no clock and draws no randomness of its own, so every decision is reproducible in a unit test.
//! The daemon runs the effects through the adapters and feeds their results back as inputs.
//!
//! Every step is idempotent and starts by observing reality, so the machine always starts at `Claim` and a
//! restarted daemon converges by re-running each step, which finds its work already done.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::drain_wait::DrainWait;
use crate::facts::{
    BrokerId, EniAttachment, EniFacts, Facts, IdResources, Identity, MountReport, RoutePlan,
    ServingEvidence, VolumeAttachment, VolumeFacts,
};
use crate::ports::{
    BrokerSpec, DrainReason, LaunchResult, LifecycleHook, MountPlan, StepError, Verdict,
};
use crate::replication::{
    bound_reached, catch_up, drain_start, stop_safety, DrainOutcome, DrainStart, ReplicationView,
};
use crate::retry::{Jitter, RetryPolicy};
use crate::routing::{plan_route, RouteNumbering};

/// The daemon's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum State {
    /// Claim a broker id in ZooKeeper.
    Claim,
    /// Attach the id's ENI and wait for its Linux link.
    AttachEni,
    /// Install address, routes and rule for the ENI.
    Route,
    /// Attach the id's volume and wait for its block device.
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

/// A unit of work the daemon runs through the adapters. Carries what the adapters need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Identity, discovery, claim plan, claim.
    Claim,
    /// Attach the ENI, wait for `attached` and for the link.
    AttachEni {
        /// This instance.
        identity: Identity,
        /// The ENI.
        eni: EniFacts,
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
    fn produces(self, output: &Output) -> bool {
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
                | (
                    StepKind::CatchUp | StepKind::DrainCheck,
                    Output::Replication(_)
                )
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
    /// The machine's count of step runs when this one started (unique within a machine).
    pub attempt: u64,
}

impl std::fmt::Display for StepTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (run {})", self.kind, self.attempt)
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
    /// The cluster's replication as Kafka describes it.
    Replication(ReplicationView),
}

/// Something that happened, fed to [`Machine::decide`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "input", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // one value per transition; boxing would only add noise
pub enum Input {
    /// The daemon has initialised; begin with Claim.
    Start,
    /// Time passed (a timer the machine asked for via [`Machine::next_wake`]).
    Tick,
    /// A main step succeeded.
    Done {
        /// The run it belongs to.
        tag: StepTag,
        /// What it learnt.
        output: Output,
    },
    /// A main step failed.
    Failed {
        /// The run it belongs to.
        tag: StepTag,
        /// Why.
        error: StepError,
    },
    /// The coordination session expired: the claim is gone.
    ClaimLost,
    /// The reclaim step got an answer.
    Reclaimed {
        /// The run it belongs to.
        tag: StepTag,
        /// The answer.
        outcome: ReclaimOutcome,
    },
    /// The reclaim step failed (ZooKeeper unreachable, a timeout): it is tried again, for as long as it takes.
    ReclaimFailed {
        /// The run it belongs to.
        tag: StepTag,
        /// Why.
        error: StepError,
    },
    /// Release everything and exit: a termination notice or an operator's `berth drain`.
    Drain(DrainReason),
    /// Exit, leaving Kafka, the mount, the routes, the attachments and the claim as they are (SIGTERM).
    Stop,
    /// The teardown (a drain's, or a failure's) has finished.
    Drained,
}

/// What a reclaim found, with what the daemon observed to judge it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ReclaimOutcome {
    /// The claim is ours again.
    Held,
    /// Another host holds the claim.
    Taken {
        /// Who, as its claim node says.
        holder: String,
        /// Whether EC2 still shows the id's ENI attached to this instance (then nobody else can serve the id,
        /// and berth keeps Kafka running and keeps re-claiming).
        eni_held_here: bool,
    },
}

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
    /// Run these teardown actions in order, then feed [`Input::Drained`].
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

/// Why the machine failed, and what that means for the teardown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The reason, for logs, `/state` and the STATUS line.
    pub reason: String,
    /// The volume was refused (a fatal Mount: another broker's data, not blank, another filesystem): nothing
    /// on it is touched, not even to unmount or detach it.
    pub volume_refused: bool,
}

/// An input that does not fit the machine's state: a bug in the caller, never silently ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The result of a step run that is no longer awaited (cancelled by a drain or a failure, or superseded).
    #[error("a result of {tag} arrived in {state}, which no longer awaits it")]
    Stale {
        /// Current state.
        state: State,
        /// The run the result belongs to.
        tag: StepTag,
    },
    /// `Start` after the machine has started.
    #[error("start arrived in {0} after the machine had started")]
    AlreadyStarted(State),
    /// `Drained` outside Draining, or a reclaim result with no reclaim running.
    #[error("{input} is not valid in {state}")]
    NotValidHere {
        /// Current state.
        state: State,
        /// The input's kind.
        input: &'static str,
    },
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

/// The current state, with the data that only it has.
#[derive(Debug, Clone, PartialEq)]
enum Current {
    /// Healthy, watching Kafka.
    Healthy(Watch),
    /// Any other state (the boot states' attempts and retry belong to the machine: every boot state has them).
    Other(State),
}

/// What Healthy keeps: whether Kafka serves, since when it has been lost, and when to check next.
#[derive(Debug, Clone, PartialEq, Default)]
struct Watch {
    serving: bool,
    /// When checks started failing while the claim was held.
    lost_since: Option<Duration>,
    /// Auto Scaling has been told the instance is unhealthy (once per loss).
    marked_unhealthy: bool,
    next_check_at: Option<Duration>,
}

/// The claim, with what a lost claim keeps while it is re-claimed.
#[derive(Debug, Clone, PartialEq)]
enum Claim {
    None,
    Held,
    Lost(Reclaiming),
}

/// The re-claiming of a lost claim.
#[derive(Debug, Clone, PartialEq)]
struct Reclaiming {
    /// When the claim was lost.
    since: Duration,
    /// Attempts so far.
    attempts: u32,
    /// When the next attempt starts, after a failed one.
    retry_at: Option<Duration>,
    /// The attempt running now.
    running: Option<StepTag>,
}

/// The daemon's whole decision state. Cheap to clone; [`Machine::decide`] returns a new one.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    settings: Settings,
    current: Current,
    furthest: State,
    started: bool,
    facts: Facts,
    attempts: u32,
    state_entered: Duration,
    retry_at: Option<Duration>,
    running: Option<StepTag>,
    runs: u64,
    last_error: Option<String>,
    failure: Option<Failure>,
    tearing_down: bool,
    claim: Claim,
    /// The session expired while a claim or reclaim was running: its result may name a node that is gone.
    session_suspect: bool,
    next_heartbeat_at: Option<Duration>,
    timeline: Vec<StateTiming>,
    jitter: Jitter,
    drain_reason: Option<DrainReason>,
    transitions: u64,
    retries: u64,
    /// When Kafka first served in StartKafka, while the caught-up gate waits.
    catch_up_since: Option<Duration>,
    /// The drain's wait for a safe stop (kept once ended, for `/state`).
    drain_wait: Option<DrainWait>,
}

/// The result of a decision: the next machine and what to do.
pub type Decision = (Machine, Vec<Effect>);

impl Machine {
    /// A machine at the start of Claim, not yet started.
    pub fn new(settings: Settings, jitter_seed: u64) -> Self {
        Self {
            settings,
            current: Current::Other(State::Claim),
            furthest: State::Claim,
            started: false,
            facts: Facts::default(),
            attempts: 0,
            state_entered: Duration::ZERO,
            retry_at: None,
            running: None,
            runs: 0,
            last_error: None,
            failure: None,
            tearing_down: false,
            claim: Claim::None,
            session_suspect: false,
            next_heartbeat_at: None,
            timeline: vec![StateTiming {
                state: State::Claim,
                entered: Duration::ZERO,
                left: None,
                attempts: 0,
            }],
            jitter: Jitter::new(jitter_seed),
            drain_reason: None,
            transitions: 0,
            retries: 0,
            catch_up_since: None,
            drain_wait: None,
        }
    }

    /// Current state.
    pub fn state(&self) -> State {
        match self.current {
            Current::Healthy(_) => State::Healthy,
            Current::Other(state) => state,
        }
    }

    /// Healthy's watch, when Healthy.
    fn watch(&mut self) -> Option<&mut Watch> {
        match &mut self.current {
            Current::Healthy(watch) => Some(watch),
            Current::Other(_) => None,
        }
    }

    /// The re-claiming, while the claim is lost.
    fn reclaiming(&mut self) -> Option<&mut Reclaiming> {
        match &mut self.claim {
            Claim::Lost(reclaiming) => Some(reclaiming),
            Claim::None | Claim::Held => None,
        }
    }

    /// What has been learnt so far.
    pub fn facts(&self) -> &Facts {
        &self.facts
    }

    /// The settings the machine decides with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// True when `/health` must answer 200: Healthy, Kafka serving, claim held.
    pub fn is_serving(&self) -> bool {
        matches!(&self.current, Current::Healthy(watch) if watch.serving)
            && self.claim == Claim::Held
    }

    /// The most recent error (retryable or not), for `/state`.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Why the machine failed, when in Failed.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_ref().map(|failure| failure.reason.as_str())
    }

    /// The failure with what it means for the teardown, when in Failed.
    pub fn failure_details(&self) -> Option<&Failure> {
        self.failure.as_ref()
    }

    /// True while a teardown (a drain's or a failure's) runs.
    pub fn tearing_down(&self) -> bool {
        self.tearing_down
    }

    /// When the claim was lost (time since start), while re-claiming.
    pub fn claim_lost_since(&self) -> Option<Duration> {
        match &self.claim {
            Claim::Lost(reclaiming) => Some(reclaiming.since),
            Claim::None | Claim::Held => None,
        }
    }

    /// Re-claim attempts since the claim was lost.
    pub fn reclaim_attempts(&self) -> u32 {
        match &self.claim {
            Claim::Lost(reclaiming) => reclaiming.attempts,
            Claim::None | Claim::Held => 0,
        }
    }

    /// Claim state.
    pub fn claim_state(&self) -> ClaimState {
        match self.claim {
            Claim::None => ClaimState::None,
            Claim::Held => ClaimState::Held,
            Claim::Lost(_) => ClaimState::Lost,
        }
    }

    /// Per-state timeline.
    pub fn timeline(&self) -> &[StateTiming] {
        &self.timeline
    }

    /// Number of state transitions so far.
    pub fn transitions(&self) -> u64 {
        self.transitions
    }

    /// Number of retries scheduled so far.
    pub fn retries(&self) -> u64 {
        self.retries
    }

    /// The furthest boot state reached (Healthy included).
    pub fn furthest(&self) -> State {
        self.furthest
    }

    /// Attempts made in the current state.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The main step running now, if any.
    pub fn running_step(&self) -> Option<StepTag> {
        self.running
    }

    /// The reclaim running now, if any.
    pub fn running_reclaim(&self) -> Option<StepTag> {
        match &self.claim {
            Claim::Lost(reclaiming) => reclaiming.running,
            Claim::None | Claim::Held => None,
        }
    }

    /// Why the daemon is draining, when it is.
    pub fn drain_reason(&self) -> Option<&DrainReason> {
        self.drain_reason.as_ref()
    }

    /// The drain's wait for a safe stop: while it waits, and how it ended.
    pub fn drain_wait(&self) -> Option<&DrainWait> {
        self.drain_wait.as_ref()
    }

    /// When the machine next needs a [`Input::Tick`] (time since start), if ever.
    pub fn next_wake(&self) -> Option<Duration> {
        let mut wakes = Vec::new();
        // While the claim is lost the boot is paused: a due retry waits for the reclaim, not for a timer.
        let watch = match &self.current {
            Current::Healthy(watch) => Some(watch),
            Current::Other(_) => None,
        };
        if self.running.is_none() && !matches!(self.claim, Claim::Lost(_)) {
            wakes.extend(self.retry_at);
            if self.claim == Claim::Held {
                wakes.extend(watch.and_then(|watch| watch.next_check_at));
            }
        }
        if self.state().is_booting() {
            wakes.extend(self.next_heartbeat_at);
        }
        if let Claim::Lost(reclaiming) = &self.claim {
            if reclaiming.running.is_none() {
                wakes.extend(reclaiming.retry_at);
            }
        }
        if let Some(wait) = &self.drain_wait {
            wakes.extend(wait.next_wake(self.running.is_some()));
        }
        if let Some(watch) = watch.filter(|watch| !watch.marked_unhealthy) {
            wakes.extend(
                watch
                    .lost_since
                    .map(|since| since + self.settings.unhealthy_after),
            );
        }
        wakes.into_iter().min()
    }

    /// The pure decision: the next machine and the effects of `input` at time `now` (time since start).
    pub fn decide(&self, input: &Input, now: Duration) -> Result<Decision, TransitionError> {
        let mut next = self.clone();
        let mut effects = Vec::new();
        next.apply(input, now, &mut effects)?;
        next.housekeeping(now, &mut effects);
        Ok((next, effects))
    }

    fn apply(
        &mut self,
        input: &Input,
        now: Duration,
        effects: &mut Vec<Effect>,
    ) -> Result<(), TransitionError> {
        match input {
            Input::Start => {
                if self.started {
                    return Err(TransitionError::AlreadyStarted(self.state()));
                }
                self.started = true;
                self.state_entered = now;
                self.timeline[0].entered = now;
                self.next_heartbeat_at = self.settings.heartbeat_interval.map(|every| now + every);
                self.run_state_step(now, effects);
            }
            Input::Tick => self.on_tick(now, effects),
            Input::Done { tag, output } => {
                self.finish_main(*tag)?;
                self.on_done(*tag, output, now, effects);
            }
            Input::Failed { tag, error } => {
                self.finish_main(*tag)?;
                self.on_failed(tag.kind, error, now, effects);
            }
            Input::ClaimLost => self.on_claim_lost(now, effects),
            Input::Reclaimed { tag, outcome } => {
                self.finish_reclaim(*tag)?;
                self.on_reclaimed(outcome, now, effects);
            }
            Input::ReclaimFailed { tag, error } => {
                self.finish_reclaim(*tag)?;
                self.on_reclaim_failed(error, now);
            }
            Input::Drain(reason) => self.on_drain(reason, now, effects),
            Input::Stop => self.on_stop(now, effects),
            Input::Drained => {
                if !self.tearing_down {
                    return Err(TransitionError::NotValidHere {
                        state: self.state(),
                        input: "drained",
                    });
                }
                self.tearing_down = false;
                effects.push(Effect::Exit(if self.state() == State::Failed {
                    ExitReason::Failed
                } else {
                    ExitReason::Drained
                }));
            }
        }
        Ok(())
    }

    /// Accepts the result of the main step run `tag`; any other run's result is stale.
    fn finish_main(&mut self, tag: StepTag) -> Result<(), TransitionError> {
        let state = self.state();
        accept(&mut self.running, tag, state)
    }

    /// Accepts the result of the reclaim run `tag`; any other run's result is stale.
    fn finish_reclaim(&mut self, tag: StepTag) -> Result<(), TransitionError> {
        let state = self.state();
        match self.reclaiming() {
            Some(reclaiming) => accept(&mut reclaiming.running, tag, state),
            None => Err(TransitionError::Stale { state, tag }),
        }
    }

    /// A new tag for a run of `kind`.
    fn next_tag(&mut self, kind: StepKind) -> StepTag {
        self.runs += 1;
        StepTag {
            kind,
            attempt: self.runs,
        }
    }

    fn on_reclaimed(&mut self, outcome: &ReclaimOutcome, now: Duration, effects: &mut Vec<Effect>) {
        if !matches!(self.claim, Claim::Lost(_)) {
            return;
        }
        match outcome {
            // The session the reclaim created its node on expired before the answer came: claim again.
            ReclaimOutcome::Held if self.session_suspect => self.start_reclaim(now, effects),
            ReclaimOutcome::Held => {
                self.claim = Claim::Held;
                if let Some(watch) = self.watch() {
                    watch.next_check_at = Some(now);
                } else if self.state().is_booting()
                    && self.running.is_none()
                    && self.retry_at.is_none()
                {
                    self.run_state_step(now, effects);
                }
            }
            ReclaimOutcome::Taken {
                holder,
                eni_held_here: true,
            } => {
                // Nobody else can serve the id while its ENI is attached here: keep Kafka and keep asking.
                let id = self.broker_id_text();
                let error = StepError::new(
                    crate::ports::ErrorKind::Retryable,
                    format!("broker id {id} is claimed by {holder}, but its ENI is still attached here, so nobody else can serve it; re-claiming"),
                );
                self.schedule_reclaim(&error, now);
            }
            ReclaimOutcome::Taken {
                holder,
                eni_held_here: false,
            } => {
                let id = self.broker_id_text();
                self.fail(
                    format!("broker id {id} is claimed by {holder} and its ENI is no longer attached here: another host is this broker now"),
                    now,
                    effects,
                );
            }
        }
    }

    fn on_reclaim_failed(&mut self, error: &StepError, now: Duration) {
        if matches!(self.claim, Claim::Lost(_)) {
            self.schedule_reclaim(error, now);
        }
    }

    /// Re-claim again after a backoff. No deadline: while this host may be the broker, the claim is worth
    /// waiting for (the claim deadline governs only the first claim at boot).
    fn schedule_reclaim(&mut self, error: &StepError, now: Duration) {
        self.last_error = Some(format!("reclaim: {error}"));
        let policy = self.settings.policies.claim;
        let Claim::Lost(reclaiming) = &mut self.claim else {
            return;
        };
        reclaiming.attempts += 1;
        let delay = policy.delay(reclaiming.attempts, &mut self.jitter);
        reclaiming.retry_at = Some(now + delay);
        self.retries += 1;
    }

    fn broker_id_text(&self) -> String {
        self.facts
            .broker_id
            .map(|id| id.0.to_string())
            .unwrap_or_else(|| "?".into())
    }

    fn on_drain(&mut self, reason: &DrainReason, now: Duration, effects: &mut Vec<Effect>) {
        // A drain or a failure's release is already under way: it finishes, and then the daemon exits.
        if self.tearing_down {
            return;
        }
        if self.drain_wait.as_ref().is_some_and(DrainWait::active) {
            // Waiting for a safe stop: only a spot notice (two minutes) cuts the wait short.
            if *reason == DrainReason::SpotInterruption {
                self.drain_reason = Some(reason.clone());
                let why =
                    "a spot interruption notice arrived while the drain waited: stopping Kafka now";
                self.end_drain_wait(DrainOutcome::CutShort(why.into()), now, effects);
            }
            return;
        }
        if self.running.take().is_some() {
            effects.push(Effect::Cancel);
        }
        self.drain_reason = Some(reason.clone());
        self.enter(State::Draining, now);
        self.stop_reclaim_retries();
        let kafka_started = self.furthest >= State::StartKafka && self.broker_spec().is_some();
        match drain_start(reason, self.settings.drain_wait.is_some(), kafka_started) {
            DrainStart::Check => {
                let bound = self.settings.drain_wait.unwrap_or_default();
                let heartbeat = self
                    .settings
                    .terminate_heartbeat_interval
                    .filter(|_| *reason == DrainReason::LifecycleTerminated);
                self.drain_wait = Some(DrainWait::begin(now, bound, heartbeat));
                self.run_drain_check(now, effects);
            }
            DrainStart::Skip(why) => {
                self.drain_wait = Some(DrainWait::skipped(now, why));
                self.begin_teardown(effects);
            }
        }
    }

    /// The drain's release plan (and, on a lifecycle termination, completing its action), now.
    fn begin_teardown(&mut self, effects: &mut Vec<Effect>) {
        let mut teardown = self.release_plan(false);
        if let (Some(DrainReason::LifecycleTerminated), Some(identity)) =
            (&self.drain_reason, self.facts.identity.clone())
        {
            teardown.push(Teardown::CompleteTermination { identity });
        }
        self.tearing_down = true;
        effects.push(Effect::Teardown(teardown));
    }

    fn run_drain_check(&mut self, now: Duration, effects: &mut Vec<Effect>) {
        let (Some(spec), Some(wait)) = (self.broker_spec(), &self.drain_wait) else {
            return;
        };
        let deadline = wait.bound_at().max(now);
        let tag = self.next_tag(StepKind::DrainCheck);
        self.running = Some(tag);
        effects.push(Effect::Run {
            tag,
            step: Step::DrainCheck { spec },
            deadline,
        });
    }

    /// A drain check's result (the replication, or why it could not be read): stop Kafka now, or look again.
    fn on_drain_check(
        &mut self,
        checked: Result<&ReplicationView, &StepError>,
        now: Duration,
        effects: &mut Vec<Effect>,
    ) {
        let me = self
            .facts
            .broker_id
            .unwrap_or(crate::facts::BrokerId(u32::MAX));
        let safety = checked.map(|view| stop_safety(view, me));
        let Some(wait) = self.drain_wait.as_mut().filter(|wait| wait.active()) else {
            return;
        };
        let outcome = match &safety {
            Ok(safety) => wait.checked(Ok(safety), now, &mut self.jitter),
            Err(error) => wait.checked(Err(&error.message), now, &mut self.jitter),
        };
        if let Some(outcome) = outcome {
            self.end_drain_wait(outcome, now, effects);
        }
    }

    /// Ends the drain's wait with `outcome` (a check still running is abandoned) and starts the teardown.
    fn end_drain_wait(&mut self, outcome: DrainOutcome, now: Duration, effects: &mut Vec<Effect>) {
        if self.running.take().is_some() {
            effects.push(Effect::Cancel);
        }
        if let Some(wait) = self.drain_wait.as_mut() {
            wait.end(outcome, now);
        }
        self.begin_teardown(effects);
    }

    /// While the drain waits: the bound ends it; a due check runs.
    fn on_drain_wait_tick(&mut self, now: Duration, effects: &mut Vec<Effect>) {
        let Some(wait) = self.drain_wait.as_mut().filter(|wait| wait.active()) else {
            return;
        };
        if now >= wait.bound_at() {
            let why = wait
                .last
                .clone()
                .unwrap_or_else(|| "the first check had not answered".into());
            let outcome = bound_reached(wait.bound(), &why);
            return self.end_drain_wait(outcome, now, effects);
        }
        if self.running.is_none() && wait.check_due(now) {
            self.run_drain_check(now, effects);
        }
    }

    fn on_stop(&mut self, now: Duration, effects: &mut Vec<Effect>) {
        // A teardown in progress is finished first: half-released resources help nobody.
        if self.tearing_down {
            return;
        }
        if self.drain_wait.as_ref().is_some_and(DrainWait::active) {
            // The drain was decided: a stop ends its wait, and the drain finishes before the daemon exits.
            let why =
                "berth was asked to stop while the drain waited: stopping Kafka now, then exiting";
            return self.end_drain_wait(DrainOutcome::CutShort(why.into()), now, effects);
        }
        if self.running.take().is_some() {
            effects.push(Effect::Cancel);
        }
        self.stop_reclaim_retries();
        effects.push(Effect::Exit(ExitReason::Stopped));
    }

    fn on_tick(&mut self, now: Duration, effects: &mut Vec<Effect>) {
        if self.drain_wait.as_ref().is_some_and(DrainWait::active) {
            return self.on_drain_wait_tick(now, effects);
        }
        if let Some(reclaiming) = self.reclaiming() {
            if reclaiming.running.is_none() && reclaiming.retry_at.is_some_and(|at| at <= now) {
                reclaiming.retry_at = None;
                self.start_reclaim(now, effects);
            }
        }
        if self.running.is_some() || matches!(self.claim, Claim::Lost(_)) {
            return;
        }
        if let Some(at) = self.retry_at {
            if at <= now {
                self.retry_at = None;
                self.run_state_step(now, effects);
            }
            return;
        }
        let check_due = self
            .watch()
            .filter(|watch| watch.next_check_at.is_some_and(|at| at <= now));
        if let Some(watch) = check_due {
            watch.next_check_at = None;
            if let Some(spec) = self.broker_spec() {
                let tag = self.next_tag(StepKind::Check);
                self.running = Some(tag);
                let deadline = now + self.settings.check_interval.max(Duration::from_secs(1));
                effects.push(Effect::Run {
                    tag,
                    step: Step::Check { spec },
                    deadline,
                });
            }
        }
    }

    fn on_done(&mut self, tag: StepTag, output: &Output, now: Duration, effects: &mut Vec<Effect>) {
        if !tag.kind.produces(output) {
            // A bug in an adapter or the daemon; failing the run (retried like any failure) keeps the boot going.
            let error = StepError::new(
                crate::ports::ErrorKind::Retryable,
                format!("internal: {} returned {}", tag.kind, output_name(output)),
            );
            return self.on_failed(tag.kind, &error, now, effects);
        }
        match output {
            Output::Claimed {
                identity,
                broker_id,
                resources,
                peers,
            } => {
                self.facts.identity = Some(identity.clone());
                self.facts.broker_id = Some(*broker_id);
                self.facts.resources = Some(resources.clone());
                self.facts.peers = peers.clone();
                self.claim = Claim::Held;
                if self.session_suspect {
                    // The session the claim was made on expired before this result: the node may be gone.
                    self.lose_claim(now);
                }
            }
            Output::EniReady(attachment) => self.facts.eni = Some(attachment.clone()),
            Output::Routed => {}
            Output::VolumeReady(attachment) => self.facts.volume = Some(attachment.clone()),
            Output::Mounted(report) => self.facts.mount = Some(report.clone()),
            Output::Serving(evidence) => {
                self.facts.serving = Some(evidence.clone());
                let next_check_at = Some(now + self.settings.check_interval);
                if let Some(watch) = self.watch() {
                    *watch = Watch {
                        serving: true,
                        next_check_at,
                        ..Watch::default()
                    };
                    return;
                }
                if self.settings.catch_up.is_some() {
                    // Serving is not caught up: look at the replication until this broker is in sync.
                    self.catch_up_since = Some(now);
                    if !matches!(self.claim, Claim::Lost(_)) {
                        self.run_state_step(now, effects);
                    }
                    return;
                }
            }
            Output::Replication(view) if tag.kind == StepKind::DrainCheck => {
                return self.on_drain_check(Ok(view), now, effects)
            }
            Output::Replication(view) => return self.on_replication(view, now, effects),
        }
        self.advance(now, effects);
        if matches!(output, Output::Claimed { .. }) && matches!(self.claim, Claim::Lost(_)) {
            self.start_reclaim(now, effects);
        }
    }

    fn on_failed(
        &mut self,
        kind: StepKind,
        error: &StepError,
        now: Duration,
        effects: &mut Vec<Effect>,
    ) {
        self.last_error = Some(format!("{kind}: {error}"));
        if kind == StepKind::DrainCheck {
            return self.on_drain_check(Err(error), now, effects);
        }
        if kind == StepKind::CatchUp {
            // Not reading the replication is no verdict on Kafka: look again until the gate's deadline.
            self.retries += 1;
            return self.wait_for_catch_up(error.to_string(), now, effects);
        }
        if kind == StepKind::Check {
            let held = self.claim == Claim::Held;
            let next_check_at = Some(now + self.settings.check_interval);
            if let Some(watch) = self.watch() {
                watch.serving = false;
                if held {
                    watch.lost_since.get_or_insert(now);
                }
                watch.next_check_at = next_check_at;
            }
            return;
        }
        if kind == StepKind::Boot(State::Claim) {
            // The next claim starts on a session of its own.
            self.session_suspect = false;
        }
        if !error.is_retryable() {
            // A fatal Mount is the volume's refusal (another broker's data, not blank, another filesystem).
            let volume_refused = self.state() == State::Mount;
            self.fail_with(
                format!("{}: {error}", self.state()),
                volume_refused,
                now,
                effects,
            );
            return;
        }
        let policy = *self.settings.policies.of(self.state());
        let delay = policy.delay(self.attempts, &mut self.jitter);
        if now + delay >= self.state_entered + policy.deadline {
            self.fail(
                format!(
                    "{} did not succeed within its deadline of {} ({} attempts); last error: {error}",
                    self.state(),
                    crate::duration::format_duration(policy.deadline),
                    self.attempts
                ),
                now,
                effects,
            );
        } else {
            self.retries += 1;
            self.retry_at = Some(now + delay);
        }
    }

    fn on_claim_lost(&mut self, now: Duration, effects: &mut Vec<Effect>) {
        if matches!(self.state(), State::Draining | State::Failed) {
            return;
        }
        match self.claim {
            Claim::Held => {
                self.lose_claim(now);
                self.start_reclaim(now, effects);
            }
            // A claim or reclaim in flight may have created its node on the session that just expired: its
            // result is not trusted as Held (see `on_done` and `on_reclaimed`).
            Claim::None
                if self
                    .running
                    .is_some_and(|t| t.kind == StepKind::Boot(State::Claim)) =>
            {
                self.session_suspect = true;
            }
            Claim::Lost(Reclaiming {
                running: Some(_), ..
            }) => self.session_suspect = true,
            Claim::None | Claim::Lost(_) => {}
        }
    }

    /// The claim is gone: pause the boot (or the checks) until it is re-claimed.
    fn lose_claim(&mut self, now: Duration) {
        self.claim = Claim::Lost(Reclaiming {
            since: now,
            attempts: 0,
            retry_at: None,
            running: None,
        });
        self.last_error = Some("coordination session expired: the claim is gone".into());
        // Checks are not run (and a failed one not held against Kafka) while coordination is lost: in ZooKeeper
        // mode Kafka's registration cannot even be read. Asking for a replacement would turn a ZooKeeper outage
        // into a Kafka outage; the first check after the re-claim judges Kafka again.
        if let Some(watch) = self.watch() {
            watch.lost_since = None;
        }
    }

    /// No further re-claim attempts: the daemon is leaving.
    fn stop_reclaim_retries(&mut self) {
        if let Some(reclaiming) = self.reclaiming() {
            reclaiming.retry_at = None;
        }
    }

    fn start_reclaim(&mut self, now: Duration, effects: &mut Vec<Effect>) {
        let Some(broker_id) = self.facts.broker_id else {
            return;
        };
        self.session_suspect = false;
        let tag = self.next_tag(StepKind::Reclaim);
        let Some(reclaiming) = self.reclaiming() else {
            return;
        };
        reclaiming.running = Some(tag);
        effects.push(Effect::Run {
            tag,
            step: Step::Reclaim { broker_id },
            deadline: now + self.settings.reclaim_attempt,
        });
    }

    fn housekeeping(&mut self, now: Duration, effects: &mut Vec<Effect>) {
        if let (Some(wait), Some(identity)) = (self.drain_wait.as_mut(), &self.facts.identity) {
            if wait.heartbeat_due(now) {
                effects.push(Effect::Heartbeat {
                    identity: identity.clone(),
                    hook: LifecycleHook::Terminate,
                });
            }
        }
        if let (true, Some(at), Some(every)) = (
            self.state().is_booting(),
            self.next_heartbeat_at,
            self.settings.heartbeat_interval,
        ) {
            if at <= now {
                self.next_heartbeat_at = Some(now + every);
                if let Some(identity) = &self.facts.identity {
                    effects.push(Effect::Heartbeat {
                        identity: identity.clone(),
                        hook: LifecycleHook::Launch,
                    });
                }
            }
        }
        let (held, unhealthy_after) = (self.claim == Claim::Held, self.settings.unhealthy_after);
        let identity = self.facts.identity.clone();
        if let (true, Some(watch), Some(identity)) = (held, self.watch(), identity) {
            let lost_too_long = watch
                .lost_since
                .is_some_and(|since| now >= since + unhealthy_after);
            if lost_too_long && !watch.marked_unhealthy {
                watch.marked_unhealthy = true;
                effects.push(Effect::MarkUnhealthy { identity });
            }
        }
    }

    fn advance(&mut self, now: Duration, effects: &mut Vec<Effect>) {
        let Some(next) = self.state().next() else {
            return;
        };
        self.enter(next, now);
        let next_check_at = Some(now + self.settings.check_interval);
        if let Some(watch) = self.watch() {
            watch.serving = true;
            watch.next_check_at = next_check_at;
            // Two independent reports: a refused signal must never keep the launch hook waiting.
            effects.push(Effect::SignalStack {
                identity: self.facts.identity.clone(),
                verdict: Verdict::Success,
            });
            if let Some(identity) = self.facts.identity.clone() {
                effects.push(Effect::CompleteLaunch {
                    identity,
                    result: LaunchResult::Continue,
                });
            }
        } else if !matches!(self.claim, Claim::Lost(_)) {
            self.run_state_step(now, effects);
        }
    }

    fn enter(&mut self, state: State, now: Duration) {
        if let Some(current) = self.timeline.last_mut() {
            current.left = Some(now);
            current.attempts = self.attempts;
        }
        self.timeline.push(StateTiming {
            state,
            entered: now,
            left: None,
            attempts: 0,
        });
        self.current = if state == State::Healthy {
            Current::Healthy(Watch::default())
        } else {
            Current::Other(state)
        };
        if state.is_booting() || state == State::Healthy {
            self.furthest = self.furthest.max(state);
        }
        self.state_entered = now;
        self.attempts = 0;
        self.retry_at = None;
        self.catch_up_since = None;
        self.transitions += 1;
    }

    /// A look at the replication during the caught-up gate: Healthy once in sync, else look again.
    fn on_replication(&mut self, view: &ReplicationView, now: Duration, effects: &mut Vec<Effect>) {
        let Some(me) = self.facts.broker_id else {
            return self.fail(
                "internal: catch_up without a broker id".into(),
                now,
                effects,
            );
        };
        let progress = catch_up(view, me);
        let caught_up = progress.caught_up();
        let why = progress.to_string();
        self.facts.catch_up = Some(progress);
        if caught_up {
            self.advance(now, effects);
        } else {
            self.wait_for_catch_up(why, now, effects);
        }
    }

    /// Looks again after the gate's interval, or fails once that would pass its deadline.
    fn wait_for_catch_up(&mut self, why: String, now: Duration, effects: &mut Vec<Effect>) {
        let (Some(gate), Some(since)) = (self.settings.catch_up, self.catch_up_since) else {
            return self.fail(
                format!("internal: catch_up outside the gate: {why}"),
                now,
                effects,
            );
        };
        if now + gate.poll >= since + gate.deadline {
            self.fail(
                format!(
                    "Kafka serves but did not catch up within kafka.caught_up_deadline ({}): {why}",
                    crate::duration::format_duration(gate.deadline)
                ),
                now,
                effects,
            );
        } else {
            self.retry_at = Some(now + gate.poll);
        }
    }

    /// Failed, from any state: report FAILURE to CloudFormation at once; then let go of everything (Kafka
    /// stopped, the volume left untouched when it was refused) and, last, ask Auto Scaling for a replacement.
    fn fail(&mut self, reason: String, now: Duration, effects: &mut Vec<Effect>) {
        self.fail_with(reason, false, now, effects);
    }

    /// [`Machine::fail`], saying whether the failure is the volume's refusal.
    fn fail_with(
        &mut self,
        reason: String,
        volume_refused: bool,
        now: Duration,
        effects: &mut Vec<Effect>,
    ) {
        if self.running.take().is_some() {
            effects.push(Effect::Cancel);
        }
        self.failure = Some(Failure {
            reason: reason.clone(),
            volume_refused,
        });
        self.last_error = Some(reason.clone());
        self.stop_reclaim_retries();
        self.enter(State::Failed, now);
        effects.push(Effect::SignalStack {
            identity: self.facts.identity.clone(),
            verdict: Verdict::Failure(reason),
        });
        let mut teardown = self.release_plan(volume_refused);
        teardown.push(Teardown::ReportFailure {
            identity: self.facts.identity.clone(),
        });
        self.tearing_down = true;
        effects.push(Effect::Teardown(teardown));
    }

    /// The step for the current boot state, built from the facts gathered so far.
    fn state_step(&self) -> Result<Step, String> {
        let missing = |what: &str| {
            format!(
                "internal: {} needs {what}, which is not known",
                self.state()
            )
        };
        let identity = || {
            self.facts
                .identity
                .clone()
                .ok_or_else(|| missing("the identity"))
        };
        let resources = || {
            self.facts
                .resources
                .clone()
                .ok_or_else(|| missing("the claimed resources"))
        };
        Ok(match self.state() {
            State::Claim => Step::Claim,
            State::AttachEni => Step::AttachEni {
                identity: identity()?,
                eni: resources()?.eni.ok_or_else(|| missing("the ENI"))?,
            },
            State::Route => {
                let eni = self
                    .facts
                    .eni
                    .as_ref()
                    .ok_or_else(|| missing("the attached ENI"))?;
                let plan = plan_route(&identity()?, &eni.eni, &self.settings.routing)
                    .map_err(|e| e.to_string())?;
                Step::Route { plan }
            }
            State::AttachEbs => Step::AttachEbs {
                identity: identity()?,
                volume: resources()?.volume.ok_or_else(|| missing("the volume"))?,
            },
            State::Mount => Step::Mount {
                device: self
                    .facts
                    .volume
                    .as_ref()
                    .ok_or_else(|| missing("the attached volume"))?
                    .device
                    .clone(),
                plan: self.settings.mount.clone(),
                broker_id: self
                    .facts
                    .broker_id
                    .ok_or_else(|| missing("the broker id"))?,
            },
            State::StartKafka => {
                let spec = self.broker_spec().ok_or_else(|| missing("the ENI"))?;
                if self.catch_up_since.is_some() {
                    Step::CatchUp { spec }
                } else {
                    Step::StartKafka { spec }
                }
            }
            State::Healthy | State::Draining | State::Failed => {
                return Err(missing("a boot state"))
            }
        })
    }

    fn run_state_step(&mut self, now: Duration, effects: &mut Vec<Effect>) {
        match self.state_step() {
            Ok(step) => {
                if let Step::Route { plan } = &step {
                    self.facts.route = Some(plan.clone());
                }
                self.attempts += 1;
                if let Some(current) = self.timeline.last_mut() {
                    current.attempts = self.attempts;
                }
                let tag = self.next_tag(step.kind());
                self.running = Some(tag);
                let deadline = match (self.catch_up_since, self.settings.catch_up) {
                    (Some(since), Some(gate)) => since + gate.deadline,
                    _ => self.state_entered + self.settings.policies.of(self.state()).deadline,
                };
                effects.push(Effect::Run {
                    tag,
                    step,
                    deadline,
                });
            }
            Err(reason) => self.fail(reason, now, effects),
        }
    }

    /// What Kafka must be told, once the id, the ENI and the identity are known.
    pub fn broker_spec(&self) -> Option<BrokerSpec> {
        Some(BrokerSpec {
            broker_id: self.facts.broker_id?,
            advertised_ip: self.facts.eni.as_ref()?.eni.private_ip,
            rack: self.facts.identity.as_ref()?.availability_zone.clone(),
            log_dirs: self.settings.mount.log_dirs.clone(),
            voters: self.facts.peers.clone(),
        })
    }

    /// What releases everything reached, in reverse (a step that was running may have done part of its work,
    /// so its undo is included; each undo is a no-op when nothing is there), the claim last. With
    /// `keep_volume` the volume is neither unmounted nor detached.
    fn release_plan(&self, keep_volume: bool) -> Vec<Teardown> {
        let reached = |state: State| self.furthest >= state;
        let resources = self.facts.resources.clone().unwrap_or_default();
        let mut steps = Vec::new();
        if reached(State::StartKafka) {
            steps.push(Teardown::StopKafka);
        }
        if reached(State::Mount) && !keep_volume {
            steps.push(Teardown::Unmount(self.settings.mount.clone()));
        }
        if let Some(plan) = self.facts.route.clone() {
            steps.push(Teardown::RemoveRoutes(plan));
        }
        if let Some(identity) = &self.facts.identity {
            if let (true, false, Some(volume)) =
                (reached(State::AttachEbs), keep_volume, resources.volume)
            {
                steps.push(Teardown::DetachVolume {
                    identity: identity.clone(),
                    volume,
                });
            }
            if let (true, Some(eni)) = (reached(State::AttachEni), resources.eni) {
                steps.push(Teardown::DetachEni {
                    identity: identity.clone(),
                    eni,
                });
            }
        }
        steps.push(Teardown::ReleaseClaim);
        steps
    }
}

/// Clears `running` when it is the run `tag`; a result of any other run is stale.
fn accept(
    running: &mut Option<StepTag>,
    tag: StepTag,
    state: State,
) -> Result<(), TransitionError> {
    if *running != Some(tag) {
        return Err(TransitionError::Stale { state, tag });
    }
    *running = None;
    Ok(())
}

fn output_name(output: &Output) -> &'static str {
    match output {
        Output::Claimed { .. } => "claimed",
        Output::EniReady(_) => "eni_ready",
        Output::Routed => "routed",
        Output::VolumeReady(_) => "volume_ready",
        Output::Mounted(_) => "mounted",
        Output::Serving(_) => "serving",
        Output::Replication(_) => "replication",
    }
}
