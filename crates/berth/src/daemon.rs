//! `berth run`: the loop that drives the pure state machine through the adapters.
//!
//! The loop owns the [`Machine`]. It feeds it inputs (step results, timers, session events, drain requests),
//! runs the effects it returns, and publishes a [`StateView`] for the health endpoint after every decision.
//! Steps run as spawned tasks so the loop keeps ticking while an adapter waits (a watchdog ping from a stalled
//! loop would be a lie); a cancelled step's task is aborted. Everything the daemon touches comes in through
//! [`Adapters`] and [`DaemonOptions`], so tests run the same loop over in-process adapters.

use std::sync::Arc;
use std::time::Duration;

use berth_core::claim::plan_claim;
use berth_core::machine::{Output, Settings};
use berth_core::ports::{ClaimHolder, Deadline, DrainReason, SessionEvent, Verdict};
use berth_core::{
    Broker, BrokerId, Cloud, Coordination, Effect, EniAttachment, Facts, Input, Machine, Network,
    Phase, Step, StepError, Storage, Teardown, VolumeAttachment,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::notify::Notifier;
use crate::view::StateView;

/// The five seams, as trait objects.
#[derive(Clone)]
pub struct Adapters {
    /// EC2, IMDS, CloudFormation, Auto Scaling.
    pub cloud: Arc<dyn Cloud>,
    /// The claim (ZooKeeper).
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

/// How the daemon ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonExit {
    /// A drain completed; exit 0.
    Drained,
}

/// Grace beyond a step's deadline before the loop gives up on it (the adapter should have returned).
const STEP_OVERRUN_GRACE: Duration = Duration::from_secs(5);

/// Runs the daemon until a drain completes. `drain` delivers drain requests (signals, tests); `view` receives
/// the state after every decision.
pub async fn run(
    options: DaemonOptions,
    adapters: Adapters,
    notifier: Notifier,
    mut drain: mpsc::Receiver<DrainReason>,
    view: watch::Sender<Arc<StateView>>,
) -> DaemonExit {
    let start = Instant::now();
    let since_start = move || start.elapsed();
    let (input_tx, mut inputs) = mpsc::channel::<Input>(64);
    let mut machine = Machine::new(options.settings.clone(), options.jitter_seed);
    let mut main_step: Option<JoinHandle<()>> = None;
    let mut background: Vec<JoinHandle<()>> = Vec::new();

    let session_events = spawn_session_forwarder(adapters.coordination.clone(), input_tx.clone());
    let termination = spawn_termination_poller(
        adapters.cloud.clone(),
        options.termination_poll,
        input_tx.clone(),
    );
    let mut watchdog = notifier.watchdog_interval().map(tokio::time::interval);

    notifier.ready("claim");
    info!(
        berth_state = "claim",
        berth_version = berth_core::VERSION,
        "berth started"
    );
    let mut pending = vec![Input::Start];

    loop {
        for input in pending.drain(..) {
            let now = since_start();
            let before = machine.phase();
            let (next, effects) = match machine.decide(&input, now) {
                Ok(decision) => decision,
                Err(transition) => {
                    error!(berth_state = before.name(), error = %transition, "input ignored: not valid in this state");
                    continue;
                }
            };
            log_input(&machine, &input, &next);
            machine = next;
            if machine.phase() != before {
                log_transition(&machine, before);
                notifier.status(&status_line(&machine));
            }
            for effect in effects {
                match effect {
                    Effect::Run { step, deadline } => {
                        let deadline = Deadline((start + deadline).into_std());
                        let task = spawn_step(
                            step,
                            deadline,
                            machine.facts().clone(),
                            &options,
                            &adapters,
                            input_tx.clone(),
                        );
                        match task {
                            SpawnedStep::Main(handle) => main_step = Some(handle),
                            SpawnedStep::Side(handle) => background.push(handle),
                        }
                    }
                    Effect::Cancel => {
                        if let Some(handle) = main_step.take() {
                            handle.abort();
                        }
                    }
                    Effect::Signal { identity, verdict } => {
                        background.push(spawn_signal(adapters.cloud.clone(), identity, verdict));
                    }
                    Effect::Heartbeat { identity } => {
                        let cloud = adapters.cloud.clone();
                        background.push(tokio::spawn(async move {
                            if let Err(error) = cloud.heartbeat(&identity).await {
                                warn!(error = %error, "lifecycle heartbeat failed: {error}");
                            }
                        }));
                    }
                    Effect::MarkUnhealthy { identity } => {
                        let cloud = adapters.cloud.clone();
                        background.push(tokio::spawn(async move {
                            warn!(berth_instance_id = %identity.instance_id, "Kafka lost for too long: marking the instance unhealthy");
                            if let Err(error) = cloud.mark_unhealthy(&identity).await {
                                error!(error = %error, "SetInstanceHealth failed: {error}");
                            }
                        }));
                    }
                    Effect::Fence => {
                        let broker = adapters.broker.clone();
                        let stop = Deadline::after(options.stop_timeout);
                        background.push(tokio::spawn(async move {
                            warn!("fencing: stopping Kafka because this host no longer holds its broker id");
                            if let Err(error) = broker.stop(stop).await {
                                error!(error = %error, "fencing Kafka failed: {error}");
                            }
                        }));
                    }
                    Effect::Teardown(actions) => {
                        notifier.stopping();
                        background.push(spawn_teardown(
                            actions,
                            &options,
                            &adapters,
                            input_tx.clone(),
                        ));
                    }
                    Effect::Exit => {
                        info!(berth_state = "draining", "drain complete; exiting");
                        session_events.abort();
                        termination.abort();
                        for handle in background {
                            handle.abort();
                        }
                        let _ = view.send(Arc::new(StateView::of(&machine, since_start())));
                        return DaemonExit::Drained;
                    }
                }
            }
            let _ = view.send(Arc::new(StateView::of(&machine, since_start())));
        }
        background.retain(|handle| !handle.is_finished());

        let wake = machine.next_wake().map(|at| start + at);
        tokio::select! {
            Some(input) = inputs.recv() => pending.push(input),
            Some(reason) = drain.recv() => {
                info!(berth_drain_reason = %reason, "drain requested");
                pending.push(Input::Drain(reason));
            }
            _ = sleep_until_opt(wake) => pending.push(Input::Tick),
            _ = tick_opt(&mut watchdog) => notifier.watchdog(),
        }
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
        None => format!("{}{id}", machine.phase()),
    }
}

fn log_transition(machine: &Machine, before: Phase) {
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
    let state = machine.phase().name();
    match machine.phase() {
        Phase::Failed => error!(
            berth_state = state,
            berth_previous_state = before.name(),
            berth_broker_id = broker_id,
            berth_eni_id = eni_id,
            berth_volume_id = volume_id,
            berth_failure = machine.failure().unwrap_or_default(),
            "boot failed: {}",
            machine.failure().unwrap_or_default()
        ),
        _ => info!(
            berth_state = state,
            berth_previous_state = before.name(),
            berth_broker_id = broker_id,
            berth_eni_id = eni_id,
            berth_volume_id = volume_id,
            "entered {state}"
        ),
    }
}

fn log_input(machine: &Machine, input: &Input, next: &Machine) {
    let state = machine.phase().name();
    let broker_id = machine.facts().broker_id.map(|id| id.0);
    match input {
        Input::Failed(error) | Input::ReclaimFailed(error) => warn!(
            berth_state = state,
            berth_broker_id = broker_id,
            berth_error_kind = ?error.kind,
            berth_attempt = machine.attempts(),
            berth_retry_in_ms = next.next_wake().map(|w| w.as_millis() as u64),
            error = %error,
            "step failed: {error}"
        ),
        Input::ClaimLost => warn!(
            berth_state = state,
            berth_broker_id = broker_id,
            "ZooKeeper session expired: claim lost, re-claiming"
        ),
        Input::Reclaimed => info!(
            berth_state = state,
            berth_broker_id = broker_id,
            "claim re-established on a new session"
        ),
        _ => {}
    }
}

enum SpawnedStep {
    Main(JoinHandle<()>),
    Side(JoinHandle<()>),
}

fn spawn_step(
    step: Step,
    deadline: Deadline,
    facts: Facts,
    options: &DaemonOptions,
    adapters: &Adapters,
    inputs: mpsc::Sender<Input>,
) -> SpawnedStep {
    let adapters = adapters.clone();
    let broker_ids = options.broker_ids.clone();
    let is_reclaim = matches!(step, Step::Reclaim { .. });
    let name = step.name();
    let overrun = tokio::time::Instant::from_std(deadline.0) + STEP_OVERRUN_GRACE;
    let handle = tokio::spawn(async move {
        let began = Instant::now();
        let result = tokio::time::timeout_at(
            overrun,
            execute(step, deadline, &facts, &broker_ids, &adapters),
        )
        .await
        .unwrap_or_else(|_| {
            Err(StepError::new(
                berth_core::ErrorKind::Retryable,
                format!("{name}: step overran its deadline"),
            ))
        });
        let elapsed_ms = began.elapsed().as_millis() as u64;
        let input = match (result, is_reclaim) {
            (Ok(Some(output)), _) => {
                tracing::debug!(
                    berth_step = name,
                    berth_step_ms = elapsed_ms,
                    "step succeeded"
                );
                Input::Done(output)
            }
            (Ok(None), true) => Input::Reclaimed,
            (Ok(None), false) => Input::Done(Output::Routed),
            (Err(error), true) => Input::ReclaimFailed(error),
            (Err(error), false) => Input::Failed(error),
        };
        let _ = inputs.send(input).await;
    });
    if is_reclaim {
        SpawnedStep::Side(handle)
    } else {
        SpawnedStep::Main(handle)
    }
}

/// Runs one step through the adapters. `Ok(None)` is success without an output (route, reclaim).
async fn execute(
    step: Step,
    deadline: Deadline,
    facts: &Facts,
    broker_ids: &[BrokerId],
    adapters: &Adapters,
) -> Result<Option<Output>, StepError> {
    match step {
        Step::Claim => {
            let identity = adapters.cloud.identity().await?;
            let inventory = adapters.cloud.discover().await?;
            for problem in &inventory.problems {
                warn!(berth_state = "claim", berth_broker_id = problem_id(problem), problem = %problem, "tagging problem: id skipped");
            }
            let plan = plan_claim(&inventory, &identity, broker_ids.iter().copied());
            if plan.candidates.is_empty() {
                return Err(StepError::new(
                    berth_core::ErrorKind::Retryable,
                    format!(
                        "no broker id can be claimed from {} ({} ids skipped: {})",
                        identity.availability_zone,
                        plan.skipped.len(),
                        plan.skipped
                            .iter()
                            .map(|s| format!("{}: {}", s.id, s.reason))
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                ));
            }
            info!(
                berth_state = "claim",
                berth_instance_id = %identity.instance_id,
                berth_availability_zone = %identity.availability_zone,
                candidates = ?plan.candidates.iter().map(|id| id.0).collect::<Vec<_>>(),
                preferred = ?plan.preferred.map(|id| id.0),
                "claiming a broker id"
            );
            let holder = holder(&identity);
            let broker_id = adapters
                .coordination
                .claim(&plan, &holder, deadline)
                .await?;
            let resources = inventory.ids.get(&broker_id).cloned().unwrap_or_default();
            let peers = inventory
                .ids
                .iter()
                .filter_map(|(id, r)| r.eni.as_ref().map(|eni| (*id, eni.private_ip)))
                .collect();
            Ok(Some(Output::Claimed {
                identity,
                broker_id,
                resources,
                peers,
            }))
        }
        Step::AttachEni { identity, eni } => {
            let eni = adapters.cloud.attach_eni(&identity, &eni, deadline).await?;
            let (link_name, link_index) = adapters.network.wait_for_link(eni.mac, deadline).await?;
            Ok(Some(Output::EniReady(EniAttachment {
                eni,
                link_name,
                link_index,
            })))
        }
        Step::Route { plan } => {
            adapters.network.configure(&plan, deadline).await?;
            Ok(None)
        }
        Step::AttachEbs { identity, volume } => {
            let (volume, requested_device) = adapters
                .cloud
                .attach_volume(&identity, &volume, deadline)
                .await?;
            let device = adapters
                .storage
                .resolve(&volume, &requested_device, deadline)
                .await?;
            Ok(Some(Output::VolumeReady(VolumeAttachment {
                volume,
                requested_device,
                device,
            })))
        }
        Step::Mount {
            device,
            plan,
            broker_id,
        } => Ok(Some(Output::Mounted(
            adapters.storage.mount(&device, &plan, broker_id).await?,
        ))),
        Step::StartKafka { spec } => Ok(Some(Output::Serving(
            adapters.broker.start(&spec, deadline).await?,
        ))),
        Step::Check { spec } => Ok(Some(Output::Serving(adapters.broker.check(&spec).await?))),
        Step::Reclaim { broker_id } => {
            let identity = facts.identity.as_ref().ok_or_else(|| {
                StepError::new(
                    berth_core::ErrorKind::Fatal,
                    "internal: reclaim without a known identity",
                )
            })?;
            adapters
                .coordination
                .reclaim(broker_id, &holder(identity), deadline)
                .await?;
            Ok(None)
        }
    }
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

fn holder(identity: &berth_core::Identity) -> ClaimHolder {
    ClaimHolder {
        instance_id: identity.instance_id.clone(),
        availability_zone: identity.availability_zone.clone(),
        host: identity.hostname.clone(),
        berth_version: berth_core::VERSION.into(),
    }
}

fn spawn_signal(
    cloud: Arc<dyn Cloud>,
    identity: Option<berth_core::Identity>,
    verdict: Verdict,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let identity = match identity {
            Some(identity) => identity,
            None => match cloud.identity().await {
                Ok(identity) => identity,
                Err(error) => {
                    error!(error = %error, ?verdict, "cannot signal: instance identity unknown: {error}");
                    return;
                }
            },
        };
        // Signals matter (a CreationPolicy or lifecycle hook waits on them): retry transient failures a few times.
        let mut delay = Duration::from_millis(500);
        for attempt in 1..=5 {
            match cloud.signal(&identity, &verdict).await {
                Ok(()) => {
                    info!(berth_signal = ?verdict, "signalled CloudFormation / Auto Scaling");
                    return;
                }
                Err(error) if error.is_retryable() && attempt < 5 => {
                    warn!(error = %error, attempt, "signal failed, retrying: {error}");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(error) => {
                    error!(error = %error, ?verdict, "signal failed: {error}");
                    return;
                }
            }
        }
    })
}

fn spawn_teardown(
    actions: Vec<Teardown>,
    options: &DaemonOptions,
    adapters: &Adapters,
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
            let deadline = Deadline::after(limit);
            let outcome = tokio::time::timeout(
                limit + STEP_OVERRUN_GRACE,
                undo(action, deadline, &adapters),
            )
            .await;
            match outcome {
                Ok(Ok(())) => info!(
                    berth_state = "draining",
                    berth_teardown = name,
                    "teardown step done"
                ),
                Ok(Err(error)) => {
                    error!(berth_state = "draining", berth_teardown = name, error = %error, "teardown step {name} failed, continuing: {error}")
                }
                Err(_) => error!(
                    berth_state = "draining",
                    berth_teardown = name,
                    "teardown step timed out; continuing"
                ),
            }
        }
        let _ = inputs.send(Input::Drained).await;
    })
}

async fn undo(action: Teardown, deadline: Deadline, adapters: &Adapters) -> Result<(), StepError> {
    match action {
        Teardown::StopKafka => adapters.broker.stop(deadline).await,
        Teardown::Unmount(plan) => adapters.storage.unmount(&plan).await,
        Teardown::RemoveRoutes(plan) => adapters.network.teardown(&plan).await,
        Teardown::DetachVolume { identity, volume } => {
            adapters.cloud.detach_volume(&identity, &volume).await
        }
        Teardown::DetachEni { identity, eni } => adapters.cloud.detach_eni(&identity, &eni).await,
        Teardown::ReleaseClaim => adapters.coordination.release().await,
        Teardown::CompleteTermination { identity } => {
            adapters.cloud.complete_termination(&identity).await
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
