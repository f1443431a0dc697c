//! `berth run`: the loop that drives the pure state machine through the adapters.
//!
//! The loop owns the [`Machine`] and only dispatches: it feeds it inputs (step results, timers, session events,
//! requests to stop or drain), hands each effect to the room that runs it, logs what the machine says happened
//! ([`journal`]), and publishes the machine after every decision for the health endpoint, which computes
//! `/state` from it when asked. systemd's STATUS= is [`crate::summary`]'s line of that view, sent whenever it
//! changes: after a decision, and when what a running step waits for changes (which needs no decision), so a
//! 30-minute catch-up shows its counts as they move, not just `start_kafka broker 1`. The rooms: [`steps`] runs a step as a task (so the loop keeps ticking while an
//! adapter waits: a watchdog ping from a stalled loop would be a lie), [`teardown`] runs a release in order,
//! [`deliveries`] sends the CloudFormation signal and the Auto Scaling calls, [`watchers`] forward the session's
//! events and the termination notice, and [`retry`] is the one backoff the teardown and the deliveries share.
//! Everything the daemon touches comes in through [`Adapters`] and [`DaemonOptions`], so tests run the same loop
//! over in-process adapters.

mod deliveries;
mod early_volume;
mod journal;
mod retry;
mod steps;
mod teardown;
mod watchers;

use std::sync::Arc;
use std::time::Duration;

use berth_core::machine::{ExitReason, Settings};
pub use berth_core::ports::Adapters;
use berth_core::ports::DrainReason;
use berth_core::{BrokerId, Effect, Input, Machine, State, TransitionError};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, error, info};

pub use early_volume::{EarlyVolume, EarlyVolumeRecord};

use crate::metrics::{Metrics, Service};
use crate::notify::Notifier;
use crate::view::{state_view, Published};
use crate::waiting::WaitingBoard;
use deliveries::Deliveries;

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
    /// Where failed steps are counted (`berth_call_errors_total`), by the service they call.
    pub metrics: Arc<Metrics>,
    /// The service the claims are made with (ZooKeeper, or AWS for the `ec2` backend).
    pub claims: Service,
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

/// Grace beyond a step's (or a teardown action's) deadline before the loop gives up on it (the adapter should
/// have returned).
const STEP_OVERRUN_GRACE: Duration = Duration::from_secs(5);

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
    daemon.notifier.ready(&daemon.status);
    let waiting = daemon.waiting.clone();
    info!(
        berth_state = State::Claim.name(),
        berth_version = berth_core::VERSION,
        "berth started"
    );
    let mut pending = vec![Input::Start];
    loop {
        for input in pending.drain(..) {
            if let Some(exit) = daemon.decide(&input) {
                daemon.deliveries.finish().await;
                return exit;
            }
        }
        daemon.background.retain(|handle| !handle.is_finished());
        daemon.deliveries.forget_finished();
        let wake = daemon.machine.next_wake().map(|at| daemon.start + at);
        tokio::select! {
            Some(input) = inputs.recv() => pending.push(input),
            Some(request) = requests.recv() => pending.push(daemon.accept(request)),
            _ = sleep_until_opt(wake) => pending.push(Input::Tick),
            _ = tick_opt(&mut watchdog) => daemon.notifier.watchdog(),
            _ = waiting.changed() => daemon.refresh_status(),
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
    early_volume: EarlyVolumeRecord,
    /// The STATUS= line systemd has last been sent.
    status: String,
    main_step: Option<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
    deliveries: Deliveries,
    watchers: Vec<JoinHandle<()>>,
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
            watchers::forward_session_events(adapters.coordination.clone(), inputs.clone()),
            watchers::poll_termination_notice(
                adapters.metadata.clone(),
                options.termination_poll,
                inputs.clone(),
            ),
        ];
        let start = Instant::now();
        Self {
            machine: Machine::new(options.settings.clone(), options.jitter_seed),
            deliveries: Deliveries::new(adapters.metadata.clone(), adapters.signals.clone()),
            options,
            adapters,
            notifier,
            start,
            inputs,
            published,
            waiting: WaitingBoard::default(),
            early_volume: EarlyVolumeRecord::new(start.into_std()),
            status: State::Claim.name().to_owned(),
            main_step: None,
            background: Vec::new(),
            watchers,
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

    /// Feeds one input to the machine, logs what happened and runs the effects; `Some` when the daemon must
    /// exit.
    fn decide(&mut self, input: &Input) -> Option<DaemonExit> {
        let now = self.start.elapsed();
        let state = self.machine.state();
        let decision = match self.machine.decide(input, now) {
            Ok(decision) => decision,
            Err(stale @ TransitionError::Stale { .. }) => {
                debug!(berth_state = state.name(), "result dropped: {stale}");
                return None;
            }
            Err(transition) => {
                error!(berth_state = state.name(), error = %transition, "input ignored: not valid in this state");
                return None;
            }
        };
        self.machine = decision.machine;
        for event in &decision.events {
            journal::record(event, &self.machine, &self.waiting);
            if let berth_core::Event::StepFailed { step, error, .. } = event {
                let service = Service::of_step(*step, self.options.claims);
                self.options.metrics.call_error(service, error.kind);
            }
        }
        self.refresh_status();
        let mut exit = None;
        for effect in decision.effects {
            exit = exit.or(self.apply(effect));
        }
        self.publish();
        exit
    }

    fn publish(&self) {
        let _ = self.published.send(Some(Arc::new(Published {
            machine: self.machine.clone(),
            started: self.start.into_std(),
            waiting: self.waiting.clone(),
            early_volume: self.early_volume.clone(),
        })));
    }

    /// Sends STATUS= when the one-line summary of `/state` changed since it was last sent.
    fn refresh_status(&mut self) {
        let view = state_view(
            &self.machine,
            self.start.elapsed(),
            self.waiting.view(),
            self.early_volume.get().as_ref(),
        );
        let line = crate::summary::one_line(&view);
        if line != self.status {
            self.notifier.status(&line);
            self.status = line;
        }
    }

    /// Hands one effect to the room that runs it.
    fn apply(&mut self, effect: Effect) -> Option<DaemonExit> {
        match effect {
            Effect::Run {
                tag,
                step,
                deadline,
            } => {
                let context = steps::StepContext {
                    facts: self.machine.facts().clone(),
                    broker_ids: self.options.broker_ids.clone(),
                    adapters: self.adapters.clone(),
                    waiting: self.waiting.clone(),
                    early_volume: self.early_volume.clone(),
                    state: self.machine.state(),
                };
                let deadline = self.start + deadline;
                let handle = steps::spawn(tag, step, deadline, context, self.inputs.clone());
                if tag.kind == berth_core::StepKind::Reclaim {
                    self.background.push(handle);
                } else {
                    self.main_step = Some(handle);
                }
            }
            Effect::Cancel => self.cancel(),
            Effect::SignalStack { identity, verdict } => {
                self.deliveries.signal_stack(identity, verdict)
            }
            Effect::CompleteLaunch { identity, result } => {
                self.deliveries.complete_launch(identity, result)
            }
            Effect::Heartbeat { identity, hook } => self.deliveries.heartbeat(identity, hook),
            Effect::MarkUnhealthy { identity } => self.deliveries.mark_unhealthy(identity),
            Effect::Teardown(actions) => {
                self.notifier.stopping();
                self.background.push(teardown::spawn(
                    actions,
                    self.machine.state(),
                    &self.options,
                    &self.adapters,
                    self.inputs.clone(),
                ));
            }
            Effect::Exit(reason) => return Some(self.exit(reason)),
        }
        None
    }

    fn cancel(&mut self) {
        if let Some(handle) = self.main_step.take() {
            handle.abort();
        }
    }

    fn exit(&mut self, reason: ExitReason) -> DaemonExit {
        journal::exit(reason, &self.machine);
        for handle in self.watchers.drain(..).chain(self.background.drain(..)) {
            handle.abort();
        }
        self.cancel();
        self.publish();
        reason.into()
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
