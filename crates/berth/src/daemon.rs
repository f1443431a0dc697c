//! `berth run`: the loop that drives the pure state machine through the adapters.
//!
//! The loop owns the [`Machine`]. It feeds it inputs (step results, timers, session events, requests to stop
//! or drain), runs the effects it returns, one method per effect, and publishes the machine after every
//! decision for the health endpoint, which computes `/state` from it when asked. Steps run as spawned tasks so
//! the loop keeps ticking while an adapter waits (a watchdog ping from a stalled loop would be a lie); a
//! cancelled step's task is aborted. Each step runs inside a [`berth_core::progress`] scope, so what an adapter
//! waits for reaches `/state` and the journal ([`WaitingBoard`]). The early volume request runs as a task of
//! its own beside the AttachEni step; it holds the volume's turn ([`VolumeTurn`]), which AttachEbs and a
//! teardown's detach take first, so berth never has two requests for the volume in flight. Everything the daemon touches comes in
//! through [`Adapters`] and [`DaemonOptions`], so tests run the same loop over in-process adapters.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_core::claim::plan_claim;
use berth_core::machine::{ExitReason, Output, ReclaimOutcome, Settings};
use berth_core::ports::{
    ClaimHolder, Deadline, Delivery, DrainReason, LaunchResult, LifecycleHook, Reclaim,
    SessionEvent, Verdict, VolumeRequest,
};
use berth_core::replication::DrainOutcome;
use berth_core::retry::{stable_hash, Jitter, RetryPolicy};
use berth_core::{
    Broker, BrokerId, Cloud, Coordination, Effect, EniAttachment, ErrorKind, Facts, Identity,
    Input, Machine, Network, State, Step, StepError, StepKind, StepTag, Storage, Teardown,
    TransitionError, VolumeAttachment, VolumeFacts,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::notify::Notifier;
use crate::view::Published;
use crate::waiting::WaitingBoard;

/// The five seams, as trait objects.
#[derive(Clone)]
pub struct Adapters {
    /// EC2, IMDS, CloudFormation, Auto Scaling.
    pub cloud: Arc<dyn Cloud>,
    /// The claim: ZooKeeper or the ENI attachment, as `claim.backend` says.
    pub coordination: Arc<dyn Coordination>,
    /// Links and policy routing (netlink).
    pub network: Arc<dyn Network>,
    /// Block device, filesystem, mount.
    pub storage: Arc<dyn Storage>,
    /// Kafka.
    pub broker: Arc<dyn Broker>,
}

/// What the loop needs besides the adapters.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// The machine's settings.
    pub settings: Settings,
    /// Every broker id of the cluster.
    pub broker_ids: Vec<BrokerId>,
    /// How often IMDS is asked about termination.
    pub termination_poll: Duration,
    /// Time allowed for Kafka's controlled shutdown.
    pub stop_timeout: Duration,
    /// Time allowed for each other teardown action.
    pub teardown_timeout: Duration,
    /// Seed of the retry jitter (differs per host).
    pub jitter_seed: u64,
}

/// What the outside asks of the daemon (signals in production, channels in tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// SIGTERM / SIGINT: exit and leave everything in place for the next berth to adopt.
    Stop,
    /// Release everything and exit (`berth drain`, SIGUSR1).
    Drain(DrainReason),
}

/// How the daemon ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaemonExit {
    /// A drain completed; exit 0.
    Drained,
    /// Stopped with everything left in place; exit 0.
    Stopped,
    /// Failed, let go and reported; exit [`crate::EX_FAILED`].
    Failed,
}

impl From<ExitReason> for DaemonExit {
    fn from(reason: ExitReason) -> Self {
        match reason {
            ExitReason::Drained => DaemonExit::Drained,
            ExitReason::Stopped => DaemonExit::Stopped,
            ExitReason::Failed => DaemonExit::Failed,
        }
    }
}

/// Grace beyond a step's deadline before the loop gives up on it (the adapter should have returned).
const STEP_OVERRUN_GRACE: Duration = Duration::from_secs(5);
/// Attempts at a signal or lifecycle call that fails retryably.
const DELIVERY_ATTEMPTS: u32 = 5;
/// Backoff between those attempts: the core's policy (0.5 s doubling, equal jitter; four waits stay under
/// [`DELIVERY_GRACE`]). Its deadline is unused: the attempts are counted.
const DELIVERY_BACKOFF: RetryPolicy = RetryPolicy {
    initial: Duration::from_millis(500),
    max: Duration::from_secs(4),
    multiplier: 2.0,
    deadline: Duration::from_secs(15),
};
/// Backoff between attempts at a teardown step that fails retryably (the core's policy; the step's own limit is
/// the deadline).
const TEARDOWN_BACKOFF: RetryPolicy = RetryPolicy {
    initial: Duration::from_millis(500),
    max: Duration::from_secs(10),
    multiplier: 2.0,
    deadline: Duration::from_secs(120),
};
/// Time allowed for the early volume request (one describe and one request, each retried by the SDK).
const VOLUME_REQUEST_LIMIT: Duration = Duration::from_secs(60);
/// How long an exiting daemon waits for signals and lifecycle calls still in flight.
const DELIVERY_GRACE: Duration = Duration::from_secs(15);

/// Runs the daemon until it exits. `requests` delivers stop and drain requests; `published` receives the
/// machine after every decision. After [`DaemonExit::Stopped`] the caller must not drop its own handles on the
/// adapters before the process exits: dropping the last one stops what they keep running (a supervised Kafka,
/// the ZooKeeper session holding the claim), which a stop leaves in place.
pub async fn run(
    options: DaemonOptions,
    adapters: Adapters,
    notifier: Notifier,
    mut requests: mpsc::Receiver<Request>,
    published: watch::Sender<Option<Arc<Published>>>,
) -> DaemonExit {
    let (input_tx, mut inputs) = mpsc::channel::<Input>(64);
    let mut daemon = Daemon::new(options, adapters, notifier, input_tx, published);
    let mut watchdog = daemon
        .notifier
        .watchdog_interval()
        .map(tokio::time::interval);
    daemon.notifier.ready(State::Claim.name());
    info!(
        berth_state = State::Claim.name(),
        berth_version = berth_core::VERSION,
        "berth started"
    );
    let mut pending = vec![Input::Start];
    loop {
        for input in pending.drain(..) {
            if let Some(exit) = daemon.decide(&input) {
                daemon.finish_deliveries().await;
                return exit;
            }
        }
        daemon.background.retain(|handle| !handle.is_finished());
        daemon.deliveries.retain(|handle| !handle.is_finished());
        let wake = daemon.machine.next_wake().map(|at| daemon.start + at);
        tokio::select! {
            Some(input) = inputs.recv() => pending.push(input),
            Some(request) = requests.recv() => pending.push(daemon.accept(request)),
            _ = sleep_until_opt(wake) => pending.push(Input::Tick),
            _ = tick_opt(&mut watchdog) => daemon.notifier.watchdog(),
        }
    }
}

/// The loop's state: the machine, the running tasks, and the channels back into the loop.
struct Daemon {
    options: DaemonOptions,
    adapters: Adapters,
    notifier: Notifier,
    start: Instant,
    machine: Machine,
    inputs: mpsc::Sender<Input>,
    published: watch::Sender<Option<Arc<Published>>>,
    waiting: WaitingBoard,
    main_step: Option<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
    deliveries: Vec<JoinHandle<()>>,
    watchers: Vec<JoinHandle<()>>,
    volume_turn: VolumeTurn,
    /// Deliveries AWS answered "nothing awaits this": said once, never sent again.
    settled: Arc<Mutex<BTreeSet<&'static str>>>,
}

impl Daemon {
    fn new(
        options: DaemonOptions,
        adapters: Adapters,
        notifier: Notifier,
        inputs: mpsc::Sender<Input>,
        published: watch::Sender<Option<Arc<Published>>>,
    ) -> Self {
        let watchers = vec![
            spawn_session_forwarder(adapters.coordination.clone(), inputs.clone()),
            spawn_termination_poller(
                adapters.cloud.clone(),
                options.termination_poll,
                inputs.clone(),
            ),
        ];
        Self {
            machine: Machine::new(options.settings.clone(), options.jitter_seed),
            options,
            adapters,
            notifier,
            start: Instant::now(),
            inputs,
            published,
            waiting: WaitingBoard::default(),
            main_step: None,
            background: Vec::new(),
            deliveries: Vec::new(),
            watchers,
            volume_turn: VolumeTurn::default(),
            settled: Arc::default(),
        }
    }

    fn accept(&self, request: Request) -> Input {
        match request {
            Request::Stop => {
                info!(berth_state = self.machine.state().name(), "SIGTERM: stopping berth; Kafka, the mount, the routes, the attachments and the claim stay");
                Input::Stop
            }
            Request::Drain(reason) => {
                info!(berth_drain_reason = %reason, "drain requested");
                Input::Drain(reason)
            }
        }
    }

    /// Feeds one input to the machine and runs the effects; `Some` when the daemon must exit.
    fn decide(&mut self, input: &Input) -> Option<DaemonExit> {
        let now = self.start.elapsed();
        let before = self.machine.state();
        let (next, effects) = match self.machine.decide(input, now) {
            Ok(decision) => decision,
            Err(stale @ TransitionError::Stale { .. }) => {
                debug!(berth_state = before.name(), "result dropped: {stale}");
                return None;
            }
            Err(transition) => {
                error!(berth_state = before.name(), error = %transition, "input ignored: not valid in this state");
                return None;
            }
        };
        self.log_input(input);
        let drain_decided = self.machine.drain_wait().is_some_and(|w| !w.active());
        self.machine = next;
        self.report_drain_wait(drain_decided);
        if matches!(input, Input::Done { tag, .. } if tag.kind == StepKind::CatchUp) {
            self.report_catch_up();
        }
        if self.machine.state() != before {
            log_transition(&self.machine, before);
            self.notifier.status(&status_line(&self.machine));
        }
        let mut exit = None;
        for effect in effects {
            exit = exit.or(self.apply(effect));
        }
        self.publish();
        exit
    }

    /// What the caught-up gate saw: a wait reason for `/state` and the journal while behind, one line once in
    /// sync.
    fn report_catch_up(&self) {
        let Some(progress) = &self.machine.facts().catch_up else {
            return;
        };
        let state = self.machine.state();
        if progress.caught_up() {
            info!(
                berth_state = state.name(),
                berth_partitions_hosted = progress.hosted,
                "caught up: {progress}"
            );
        } else if state == State::StartKafka {
            self.waiting
                .set(StepKind::CatchUp, &progress.to_string(), state);
        }
    }

    /// The drain's wait: what it waits for while it does (for `/state` and the journal), and, once, how it
    /// ended (`already_decided`: it had ended before this decision).
    fn report_drain_wait(&self, already_decided: bool) {
        let Some(wait) = self.machine.drain_wait() else {
            return;
        };
        let state = self.machine.state();
        match (&wait.outcome, &wait.last) {
            (None, Some(why)) => self.waiting.set(StepKind::DrainCheck, why, state),
            (Some(outcome), _) if !already_decided => {
                self.waiting.clear(StepKind::DrainCheck);
                let waited_ms = millis(wait.waited(self.start.elapsed()));
                log_drain_outcome(outcome, state.name(), waited_ms);
            }
            _ => {}
        }
    }

    fn publish(&self) {
        let _ = self.published.send(Some(Arc::new(Published {
            machine: self.machine.clone(),
            started: self.start.into_std(),
            waiting: self.waiting.clone(),
        })));
    }

    fn apply(&mut self, effect: Effect) -> Option<DaemonExit> {
        match effect {
            Effect::Run {
                tag,
                step,
                deadline,
            } => self.run_step(tag, step, deadline),
            Effect::RequestVolume {
                tag,
                identity,
                volume,
            } => self.request_volume(tag, identity, volume),
            Effect::Cancel => self.cancel(),
            Effect::SignalStack { identity, verdict } => self.signal_stack(identity, verdict),
            Effect::CompleteLaunch { identity, result } => self.complete_launch(identity, result),
            Effect::Heartbeat { identity, hook } => self.heartbeat(identity, hook),
            Effect::MarkUnhealthy { identity } => self.mark_unhealthy(identity),
            Effect::Teardown(actions) => self.teardown(actions),
            Effect::Exit(reason) => return Some(self.exit(reason)),
        }
        None
    }

    fn run_step(&mut self, tag: StepTag, step: Step, deadline: Duration) {
        let deadline = Deadline((self.start + deadline).into_std());
        let is_reclaim = tag.kind == StepKind::Reclaim;
        let handle = spawn_step(
            tag,
            step,
            deadline,
            StepContext {
                facts: self.machine.facts().clone(),
                broker_ids: self.options.broker_ids.clone(),
                adapters: self.adapters.clone(),
                waiting: self.waiting.clone(),
                state: self.machine.state(),
                volume_turn: self.volume_turn.clone(),
            },
            self.inputs.clone(),
        );
        if is_reclaim {
            self.background.push(handle);
        } else {
            self.main_step = Some(handle);
        }
    }

    /// Sends the volume's attach request beside the running AttachEni step, holding the volume's turn from now
    /// (taken before the task starts, so AttachEbs cannot overtake it) until it is answered.
    fn request_volume(&mut self, tag: StepTag, identity: Identity, volume: VolumeFacts) {
        let cloud = self.adapters.cloud.clone();
        let turn = self.volume_turn.clone();
        let held = turn.0.clone().try_lock_owned().ok();
        let inputs = self.inputs.clone();
        self.background.push(tokio::spawn(async move {
            let _turn = match held {
                Some(guard) => guard,
                None => turn.0.lock_owned().await,
            };
            let request = cloud.request_volume(&identity, &volume);
            let result = tokio::time::timeout(VOLUME_REQUEST_LIMIT, request)
                .await
                .unwrap_or_else(|_| {
                    Err(StepError::new(
                        ErrorKind::Retryable,
                        format!(
                            "{}: no answer within {VOLUME_REQUEST_LIMIT:?}",
                            volume.volume_id
                        ),
                    ))
                });
            let _ = inputs.send(Input::VolumeRequested { tag, result }).await;
        }));
    }

    fn cancel(&mut self) {
        if let Some(handle) = self.main_step.take() {
            handle.abort();
        }
    }

    fn signal_stack(&mut self, identity: Option<Identity>, verdict: Verdict) {
        let cloud = self.adapters.cloud.clone();
        let settled = self.settled.clone();
        self.deliveries.push(tokio::spawn(async move {
            let Some(identity) = known_identity(&cloud, identity).await else {
                return;
            };
            deliver("SignalResource", &settled, || {
                cloud.signal_stack(&identity, &verdict)
            })
            .await;
        }));
    }

    fn complete_launch(&mut self, identity: Identity, result: LaunchResult) {
        let cloud = self.adapters.cloud.clone();
        let settled = self.settled.clone();
        self.deliveries.push(tokio::spawn(async move {
            deliver("launch lifecycle action", &settled, || {
                cloud.complete_launch(&identity, result)
            })
            .await;
        }));
    }

    fn heartbeat(&mut self, identity: Identity, hook: LifecycleHook) {
        let cloud = self.adapters.cloud.clone();
        let settled = self.settled.clone();
        self.deliveries.push(tokio::spawn(async move {
            match hook {
                LifecycleHook::Launch => {
                    deliver("lifecycle heartbeat", &settled, || {
                        cloud.heartbeat(&identity)
                    })
                    .await
                }
                LifecycleHook::Terminate => {
                    deliver("terminating lifecycle heartbeat", &settled, || {
                        cloud.heartbeat_termination(&identity)
                    })
                    .await
                }
            }
        }));
    }

    fn mark_unhealthy(&mut self, identity: Identity) {
        let cloud = self.adapters.cloud.clone();
        let settled = self.settled.clone();
        self.deliveries.push(tokio::spawn(async move {
            warn!(berth_instance_id = %identity.instance_id, "Kafka lost for too long: marking the instance unhealthy");
            deliver("SetInstanceHealth", &settled, || cloud.mark_unhealthy(&identity)).await;
        }));
    }

    fn teardown(&mut self, actions: Vec<Teardown>) {
        self.notifier.stopping();
        self.background.push(spawn_teardown(
            actions,
            self.machine.state(),
            &self.options,
            &self.adapters,
            self.volume_turn.clone(),
            self.inputs.clone(),
        ));
    }

    fn exit(&mut self, reason: ExitReason) -> DaemonExit {
        let state = self.machine.state();
        match reason {
            ExitReason::Drained => info!(berth_state = state.name(), "drain complete; exiting"),
            ExitReason::Stopped => info!(
                berth_state = state.name(),
                "stopped; everything left in place for the next berth to adopt"
            ),
            ExitReason::Failed => error!(
                berth_state = state.name(),
                berth_failure = self.machine.failure().unwrap_or_default(),
                "failed: released what it held and asked Auto Scaling for a replacement; exiting"
            ),
        }
        for handle in self.watchers.drain(..).chain(self.background.drain(..)) {
            handle.abort();
        }
        self.cancel();
        self.publish();
        reason.into()
    }

    /// Lets signals and lifecycle calls still in flight finish (a FAILURE signal must not be lost to the exit),
    /// within a bound.
    async fn finish_deliveries(&mut self) {
        let pending = std::mem::take(&mut self.deliveries);
        let all = async {
            for delivery in pending {
                let _ = delivery.await;
            }
        };
        if tokio::time::timeout(DELIVERY_GRACE, all).await.is_err() {
            warn!("signals still in flight after {DELIVERY_GRACE:?}; exiting without them");
        }
    }

    fn log_input(&self, input: &Input) {
        let machine = &self.machine;
        let state = machine.state();
        let broker_id = machine.facts().broker_id.map(|id| id.0);
        match input {
            Input::Failed { tag, error } if error.is_retryable() => {
                // The reason alone (no attempt count): an unchanged reason is logged at most every 30 s.
                self.waiting.set(tag.kind, &error.to_string(), state);
            }
            Input::ReclaimFailed { error, .. } => {
                self.waiting
                    .set(StepKind::Reclaim, &error.to_string(), state)
            }
            Input::Reclaimed {
                outcome:
                    ReclaimOutcome::Taken {
                        holder,
                        eni_held_here: true,
                    },
                ..
            } => self.waiting.set(
                StepKind::Reclaim,
                &format!(
                    "broker id {} is claimed by {holder}, while its ENI is still attached here",
                    broker_id.unwrap_or_default()
                ),
                state,
            ),
            Input::Failed { error, .. } => warn!(
                berth_state = state.name(),
                berth_broker_id = broker_id,
                berth_error_kind = ?error.kind,
                berth_attempt = machine.attempts(),
                error = %error,
                "step failed: {error}"
            ),
            Input::ClaimLost => warn!(
                berth_state = state.name(),
                berth_broker_id = broker_id,
                "ZooKeeper session expired: claim lost, re-claiming (Kafka keeps running)"
            ),
            Input::Reclaimed {
                outcome: ReclaimOutcome::Held,
                ..
            } => {
                self.waiting.clear(StepKind::Reclaim);
                info!(
                    berth_state = state.name(),
                    berth_broker_id = broker_id,
                    "claim re-established on a new session"
                )
            }
            Input::Done { tag, .. } => self.waiting.clear(tag.kind),
            Input::VolumeRequested { result, .. } => log_volume_request(machine, result),
            _ => {}
        }
    }
}

/// The early volume request's answer: what was sent, or why not (AttachEbs observes the volume again).
fn log_volume_request(machine: &Machine, result: &Result<VolumeRequest, StepError>) {
    let state = machine.state().name();
    let broker_id = machine.facts().broker_id.map(|id| id.0);
    let volume_id = machine
        .facts()
        .resources
        .as_ref()
        .and_then(|r| r.volume.as_ref())
        .map(|v| v.volume_id.as_str());
    match result {
        Ok(request) => info!(
            berth_state = state,
            berth_broker_id = broker_id,
            berth_volume_id = volume_id,
            "volume requested alongside the ENI: {request}"
        ),
        Err(error) => warn!(
            berth_state = state,
            berth_broker_id = broker_id,
            berth_volume_id = volume_id,
            error = %error,
            "early volume request failed (AttachEbs attaches it): {error}"
        ),
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// How a drain's wait ended: info when safe, a warning when skipped or cut short, an error when the bound was
/// reached while stopping was still unsafe.
fn log_drain_outcome(outcome: &DrainOutcome, state: &'static str, waited_ms: u64) {
    // The outcomes that waited: the same fields, at the outcome's level.
    macro_rules! waited {
        ($level:ident, $outcome:literal, $message:literal) => {
            $level!(
                berth_state = state,
                berth_drain_waited_ms = waited_ms,
                berth_drain_outcome = $outcome,
                $message
            )
        };
    }
    match outcome {
        DrainOutcome::Safe(why) => waited!(info, "safe", "drain: stopping Kafka: {why}"),
        DrainOutcome::Skipped(why) => warn!(
            berth_state = state,
            berth_drain_outcome = "skipped",
            "drain: replicas not checked: {why}"
        ),
        DrainOutcome::CutShort(why) => waited!(warn, "cut_short", "drain: wait cut short: {why}"),
        DrainOutcome::BoundReached(why) => waited!(
            error,
            "bound_reached",
            "drain: stopping Kafka although it is not safe: {why}"
        ),
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn tick_opt(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn status_line(machine: &Machine) -> String {
    let id = machine
        .facts()
        .broker_id
        .map(|id| format!(" broker {id}"))
        .unwrap_or_default();
    match machine.failure() {
        Some(failure) => format!("failed{id}: {failure}"),
        None => format!("{}{id}", machine.state()),
    }
}

fn log_transition(machine: &Machine, before: State) {
    let facts = machine.facts();
    let broker_id = facts.broker_id.map(|id| id.0);
    let eni_id = facts
        .resources
        .as_ref()
        .and_then(|r| r.eni.as_ref())
        .map(|e| e.eni_id.as_str());
    let volume_id = facts
        .resources
        .as_ref()
        .and_then(|r| r.volume.as_ref())
        .map(|v| v.volume_id.as_str());
    let state = machine.state();
    match machine.state() {
        State::Failed => error!(
            berth_state = state.name(),
            berth_previous_state = before.name(),
            berth_broker_id = broker_id,
            berth_eni_id = eni_id,
            berth_volume_id = volume_id,
            berth_failure = machine.failure().unwrap_or_default(),
            "boot failed: {}",
            machine.failure().unwrap_or_default()
        ),
        _ => info!(
            berth_state = state.name(),
            berth_previous_state = before.name(),
            berth_broker_id = broker_id,
            berth_eni_id = eni_id,
            berth_volume_id = volume_id,
            "entered {state}"
        ),
    }
}

/// The identity to report with, looked up when the boot failed before learning it.
async fn known_identity(cloud: &Arc<dyn Cloud>, identity: Option<Identity>) -> Option<Identity> {
    if identity.is_some() {
        return identity;
    }
    match cloud.identity().await {
        Ok(identity) => Some(identity),
        Err(error) => {
            error!(error = %error, "cannot report to AWS: instance identity unknown: {error}");
            None
        }
    }
}

/// Sends one signal or lifecycle call: retried a few times while it fails retryably; an answer that nothing
/// awaits it is logged once at info and never sent again.
async fn deliver<F, Fut>(what: &'static str, settled: &Mutex<BTreeSet<&'static str>>, call: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Delivery, StepError>>,
{
    if lock(settled).contains(what) {
        return;
    }
    let mut jitter = Jitter::new(stable_hash(what));
    for attempt in 1..=DELIVERY_ATTEMPTS {
        match call().await {
            Ok(Delivery::Accepted) => {
                info!(berth_delivery = what, "{what}: delivered");
                return;
            }
            Ok(Delivery::NotConfigured) => return,
            Ok(Delivery::NotAwaited(answer)) => {
                if lock(settled).insert(what) {
                    info!(berth_delivery = what, answer = %answer, "{what}: nothing awaits it, not sent again");
                }
                return;
            }
            Err(error) if error.is_retryable() && attempt < DELIVERY_ATTEMPTS => {
                warn!(berth_delivery = what, error = %error, attempt, "{what} failed, retrying: {error}");
                tokio::time::sleep(DELIVERY_BACKOFF.delay(attempt, &mut jitter)).await;
            }
            Err(error) => {
                error!(berth_delivery = what, error = %error, "{what} failed: {error}");
                return;
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The volume's turn: whoever changes the volume's attachment (the early request, AttachEbs, a teardown's
/// detach) holds it, so two requests for the volume are never in flight at once.
#[derive(Clone, Default)]
struct VolumeTurn(Arc<tokio::sync::Mutex<()>>);

impl VolumeTurn {
    /// Waits for the turn, saying so while the early request still holds it.
    async fn take(&self) -> tokio::sync::OwnedMutexGuard<()> {
        if let Ok(guard) = self.0.clone().try_lock_owned() {
            return guard;
        }
        berth_core::progress::report("the early volume request to be answered");
        self.0.clone().lock_owned().await
    }
}

/// What a step task needs from the loop.
struct StepContext {
    facts: Facts,
    broker_ids: Vec<BrokerId>,
    adapters: Adapters,
    waiting: WaitingBoard,
    state: State,
    volume_turn: VolumeTurn,
}

fn spawn_step(
    tag: StepTag,
    step: Step,
    deadline: Deadline,
    context: StepContext,
    inputs: mpsc::Sender<Input>,
) -> JoinHandle<()> {
    let name = tag.kind.name();
    let overrun = tokio::time::Instant::from_std(deadline.0) + STEP_OVERRUN_GRACE;
    tokio::spawn(async move {
        let began = Instant::now();
        let reporter = context.waiting.reporter(tag.kind, context.state);
        let work = async {
            match step {
                Step::Reclaim { broker_id } => reclaim(broker_id, deadline, &context)
                    .await
                    .map(StepDone::Reclaimed),
                step => execute(step, deadline, &context)
                    .await
                    .map(StepDone::Output),
            }
        };
        let result = tokio::time::timeout_at(overrun, berth_core::progress::scope(reporter, work))
            .await
            .unwrap_or_else(|_| {
                Err(StepError::new(
                    ErrorKind::Retryable,
                    format!("{name}: step overran its deadline"),
                ))
            });
        debug!(
            berth_step = name,
            berth_step_ms = began.elapsed().as_millis() as u64,
            ok = result.is_ok(),
            "step finished"
        );
        let input = match result {
            Ok(StepDone::Output(output)) => Input::Done { tag, output },
            Ok(StepDone::Reclaimed(outcome)) => Input::Reclaimed { tag, outcome },
            Err(error) if tag.kind == StepKind::Reclaim => Input::ReclaimFailed { tag, error },
            Err(error) => Input::Failed { tag, error },
        };
        let _ = inputs.send(input).await;
    })
}

/// A finished step's result (one value per step, short-lived: boxing would only add noise).
#[allow(clippy::large_enum_variant)]
enum StepDone {
    Output(Output),
    Reclaimed(ReclaimOutcome),
}

/// Runs one main step through the adapters.
async fn execute(
    step: Step,
    deadline: Deadline,
    context: &StepContext,
) -> Result<Output, StepError> {
    let adapters = &context.adapters;
    match step {
        Step::Claim => claim(deadline, context).await,
        Step::AttachEni { identity, eni } => {
            let eni = adapters.cloud.attach_eni(&identity, &eni, deadline).await?;
            let (link_name, link_index) = adapters.network.wait_for_link(eni.mac, deadline).await?;
            Ok(Output::EniReady(EniAttachment {
                eni,
                link_name,
                link_index,
            }))
        }
        Step::Route { plan } => {
            adapters.network.configure(&plan, deadline).await?;
            crash_point("route");
            Ok(Output::Routed)
        }
        Step::AttachEbs { identity, volume } => {
            let turn = context.volume_turn.take().await;
            let (volume, requested_device) = adapters
                .cloud
                .attach_volume(&identity, &volume, deadline)
                .await?;
            drop(turn);
            let device = adapters
                .storage
                .resolve(&volume, &requested_device, deadline)
                .await?;
            Ok(Output::VolumeReady(VolumeAttachment {
                volume,
                requested_device,
                device,
            }))
        }
        Step::Mount {
            device,
            plan,
            broker_id,
        } => {
            let report = adapters
                .storage
                .mount(&device, &plan, broker_id, deadline)
                .await?;
            crash_point("mount");
            Ok(Output::Mounted(report))
        }
        Step::StartKafka { spec } => start_kafka(&spec, deadline, adapters).await,
        Step::Check { spec } => Ok(Output::Serving(adapters.broker.check(&spec).await?)),
        Step::CatchUp { spec } | Step::DrainCheck { spec } => Ok(Output::Replication(
            adapters.broker.replication(&spec).await?,
        )),
        Step::Reclaim { .. } => Err(StepError::new(
            ErrorKind::Fatal,
            "internal: reclaim is not a main step",
        )),
    }
}

/// A crash point, for the crash test only: built with the `failpoints` feature and started with
/// `FAILPOINTS=<name>=return`, berth is SIGKILLed here, where a state's work is done and its result not yet
/// taken (a window too short to hit from outside). Without the feature it is nothing.
fn crash_point(name: &'static str) {
    #[cfg(feature = "failpoints")]
    fail::fail_point!(name, |_| {
        tracing::warn!(berth_crash_point = name, "crash point reached: SIGKILL");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        std::process::abort()
    });
    let _ = name;
}

/// Observe first: a Kafka already serving as this broker (berth was stopped and started again) is adopted, not
/// restarted; otherwise it is started.
async fn start_kafka(
    spec: &berth_core::ports::BrokerSpec,
    deadline: Deadline,
    adapters: &Adapters,
) -> Result<Output, StepError> {
    if let Ok(evidence) = adapters.broker.check(spec).await {
        info!(berth_state = State::StartKafka.name(), berth_broker_id = spec.broker_id.0, detail = %evidence.detail, "Kafka is already serving as this broker: adopted, not restarted");
        return Ok(Output::Serving(evidence));
    }
    Ok(Output::Serving(
        adapters.broker.start(spec, deadline).await?,
    ))
}

async fn claim(deadline: Deadline, context: &StepContext) -> Result<Output, StepError> {
    let adapters = &context.adapters;
    let identity = adapters.cloud.identity().await?;
    let inventory = adapters.cloud.discover().await?;
    for problem in &inventory.problems {
        warn!(berth_state = State::Claim.name(), berth_broker_id = problem_id(problem), problem = %problem, "tagging problem: id skipped");
    }
    let plan = plan_claim(&inventory, &identity, context.broker_ids.iter().copied());
    if plan.candidates.is_empty() {
        return Err(StepError::new(
            ErrorKind::Retryable,
            format!(
                "no broker id can be claimed from {} ({} ids skipped: {})",
                identity.availability_zone,
                plan.skipped.len(),
                plan.skipped_summary()
            ),
        ));
    }
    info!(
        berth_state = State::Claim.name(),
        berth_instance_id = %identity.instance_id,
        berth_availability_zone = %identity.availability_zone,
        candidates = ?plan.candidates.iter().map(|id| id.0).collect::<Vec<_>>(),
        preferred = ?plan.preferred.map(|id| id.0),
        "claiming a broker id"
    );
    let broker_id = adapters
        .coordination
        .claim(&plan, &holder(&identity), deadline)
        .await?;
    let resources = inventory.ids.get(&broker_id).cloned().unwrap_or_default();
    let peers = inventory
        .ids
        .iter()
        .filter_map(|(id, r)| r.eni.as_ref().map(|eni| (*id, eni.private_ip)))
        .collect();
    Ok(Output::Claimed {
        identity,
        broker_id,
        resources,
        peers,
    })
}

/// Re-claims the id; when another host holds it, observes whether the id's ENI is still attached here, which
/// the machine needs to decide between waiting and letting go.
async fn reclaim(
    broker_id: BrokerId,
    deadline: Deadline,
    context: &StepContext,
) -> Result<ReclaimOutcome, StepError> {
    let identity = context.facts.identity.as_ref().ok_or_else(|| {
        StepError::new(
            ErrorKind::Fatal,
            "internal: reclaim without a known identity",
        )
    })?;
    let answer = context
        .adapters
        .coordination
        .reclaim(broker_id, &holder(identity), deadline)
        .await?;
    let holder = match answer {
        Reclaim::Held => return Ok(ReclaimOutcome::Held),
        Reclaim::TakenBy(holder) => holder,
    };
    let eni = context
        .facts
        .resources
        .as_ref()
        .and_then(|resources| resources.eni.as_ref());
    let eni_held_here = match eni {
        Some(eni) => {
            context
                .adapters
                .cloud
                .eni_attached_here(identity, eni)
                .await?
        }
        None => false,
    };
    Ok(ReclaimOutcome::Taken {
        holder,
        eni_held_here,
    })
}

fn problem_id(problem: &berth_core::InventoryProblem) -> u32 {
    use berth_core::InventoryProblem::*;
    match problem {
        DuplicateEni { id, .. }
        | DuplicateVolume { id, .. }
        | ZoneMismatch { id, .. }
        | Missing { id, .. } => id.0,
    }
}

fn holder(identity: &Identity) -> ClaimHolder {
    ClaimHolder {
        instance_id: identity.instance_id.clone(),
        availability_zone: identity.availability_zone.clone(),
        host: identity.hostname.clone(),
        berth_version: berth_core::VERSION.into(),
    }
}

fn spawn_teardown(
    actions: Vec<Teardown>,
    state: State,
    options: &DaemonOptions,
    adapters: &Adapters,
    volume_turn: VolumeTurn,
    inputs: mpsc::Sender<Input>,
) -> JoinHandle<()> {
    let adapters = adapters.clone();
    let (stop_timeout, each) = (options.stop_timeout, options.teardown_timeout);
    tokio::spawn(async move {
        for action in actions {
            let name = action.name();
            let limit = if matches!(action, Teardown::StopKafka) {
                stop_timeout
            } else {
                each
            };
            let outcome = tokio::time::timeout(
                limit + STEP_OVERRUN_GRACE,
                undo_until(
                    action,
                    state,
                    Deadline::after(limit),
                    &adapters,
                    &volume_turn,
                ),
            )
            .await;
            match outcome {
                Ok(Ok(done)) => info!(berth_state = state.name(), berth_teardown = name, "{done}"),
                Ok(Err(error)) => {
                    error!(berth_state = state.name(), berth_teardown = name, error = %error, "teardown step {name} failed, continuing: {error}")
                }
                Err(_) => error!(
                    berth_state = state.name(),
                    berth_teardown = name,
                    "teardown step timed out; continuing"
                ),
            }
        }
        let _ = inputs.send(Input::Drained).await;
    })
}

/// Runs one teardown action, again with the core's backoff while it fails retryably and its deadline allows: a
/// throttled detach must not leave the volume attached when the drain moves on.
async fn undo_until(
    action: Teardown,
    state: State,
    deadline: Deadline,
    adapters: &Adapters,
    volume_turn: &VolumeTurn,
) -> Result<String, StepError> {
    let name = action.name();
    // An early volume request still in flight lands before the detach observes the volume.
    let _turn = match action {
        Teardown::DetachVolume { .. } => Some(volume_turn.take().await),
        _ => None,
    };
    let mut jitter = Jitter::new(stable_hash(name));
    let mut attempt = 0;
    loop {
        attempt += 1;
        match undo(action.clone(), deadline, adapters).await {
            Err(error) if error.is_retryable() && !deadline.expired() => {
                let pause = TEARDOWN_BACKOFF
                    .delay(attempt, &mut jitter)
                    .min(deadline.remaining());
                warn!(berth_state = state.name(), berth_teardown = name, error = %error, attempt, "teardown step {name} failed, retrying in {pause:?}: {error}");
                tokio::time::sleep(pause).await;
            }
            outcome => return outcome,
        }
    }
}

/// Runs one teardown action; what it did, for the log.
async fn undo(
    action: Teardown,
    deadline: Deadline,
    adapters: &Adapters,
) -> Result<String, StepError> {
    let done = |what: &str| Ok(format!("teardown step done: {what}"));
    match action {
        Teardown::StopKafka => {
            adapters.broker.stop(deadline).await?;
            done("Kafka stopped")
        }
        Teardown::Unmount(plan) => {
            adapters.storage.unmount(&plan).await?;
            done("unmounted")
        }
        Teardown::RemoveRoutes(plan) => {
            adapters.network.teardown(&plan).await?;
            done("routes removed")
        }
        Teardown::DetachVolume { identity, volume } => {
            adapters.cloud.detach_volume(&identity, &volume).await?;
            done("volume detached")
        }
        Teardown::DetachEni { identity, eni } => {
            adapters.cloud.detach_eni(&identity, &eni).await?;
            done("ENI detached")
        }
        Teardown::ReleaseClaim => {
            adapters.coordination.release().await?;
            done("claim released")
        }
        Teardown::CompleteTermination { identity } => {
            let delivery = adapters.cloud.complete_termination(&identity).await?;
            Ok(format!("terminating lifecycle action: {delivery:?}"))
        }
        Teardown::ReportFailure { identity } => {
            let Some(identity) = known_identity(&adapters.cloud, identity).await else {
                return Err(StepError::new(
                    ErrorKind::Retryable,
                    "failure not reported to Auto Scaling: identity unknown",
                ));
            };
            let report = adapters.cloud.report_failure(&identity).await?;
            Ok(format!("failure reported to Auto Scaling: {report:?}"))
        }
    }
}

fn spawn_session_forwarder(
    coordination: Arc<dyn Coordination>,
    inputs: mpsc::Sender<Input>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match coordination.next_session_event().await {
                SessionEvent::Expired => {
                    if inputs.send(Input::ClaimLost).await.is_err() {
                        return;
                    }
                }
                SessionEvent::Disconnected => {
                    warn!("ZooKeeper connection lost; the session (and claim) may still be alive")
                }
                SessionEvent::Connected => info!("ZooKeeper connected"),
                SessionEvent::Closed => info!("ZooKeeper session closed"),
            }
        }
    })
}

fn spawn_termination_poller(
    cloud: Arc<dyn Cloud>,
    every: Duration,
    inputs: mpsc::Sender<Input>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            match cloud.termination_notice().await {
                Ok(Some(reason)) => {
                    info!(berth_drain_reason = %reason, "instance metadata announces termination");
                    let _ = inputs.send(Input::Drain(reason)).await;
                    return;
                }
                Ok(None) => {}
                Err(error) => tracing::debug!(error = %error, "termination notice poll failed"),
            }
        }
    })
}
