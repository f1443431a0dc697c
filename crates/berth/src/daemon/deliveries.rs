//! Deliveries: what berth tells CloudFormation and Auto Scaling (the stack signal, the lifecycle actions'
//! completions and heartbeats, the failure's report, instance health). Each is sent as a task of its own, so a
//! slow AWS never holds the loop, and every one is retried the same way ([`retry`](super::retry)'s jittered
//! backoff while it fails retryably) until it is accepted, refused as not awaited, or refused for good (named in
//! the journal), within its bound: the lifecycle hooks' global timeout for the completions and the signal (a
//! throttling burst must not let a healthy broker's hook expire), [`REPORT_BOUND`] for the failure's report (the
//! machine sends it again, and says so, for as long as it takes).
//!
//! What Auto Scaling answers about a lifecycle action goes back to the machine
//! ([`Input::HookAnswered`], [`Input::FailureReported`]), which keeps the action alive with heartbeats until then;
//! a heartbeat still being retried covers the next one. An answer that nothing awaits a signal is logged once at
//! info and never sent again. An exiting daemon waits for the deliveries still in flight (a FAILURE signal, a
//! completion) within [`DELIVERY_GRACE`]; heartbeats are dropped.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_core::machine::HookAnswer;
use berth_core::ports::{
    Deadline, Delivery, LaunchResult, LifecycleHook, Metadata, Signals, Verdict,
};
use berth_core::{ErrorKind, Identity, Input, StepError};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::retry::{retrying, Bound};

/// How far one failure report is retried before the machine hears it did not land (and sends it again later).
const REPORT_BOUND: Bound = Bound::Attempts(5);
/// How long an exiting daemon waits for deliveries still in flight.
const DELIVERY_GRACE: Duration = Duration::from_secs(15);

/// The deliveries in flight, and what a delivery task needs.
pub(super) struct Deliveries {
    post: Post,
    in_flight: Vec<JoinHandle<()>>,
    heartbeats: Vec<(LifecycleHook, JoinHandle<()>)>,
}

/// What a delivery task needs: the ports, the way back into the loop, the bound of a completion, and the calls
/// AWS answered "nothing awaits this" (said once, never sent again).
#[derive(Clone)]
struct Post {
    metadata: Arc<dyn Metadata>,
    signals: Arc<dyn Signals>,
    inputs: mpsc::Sender<Input>,
    bound: Duration,
    settled: Arc<Mutex<BTreeSet<&'static str>>>,
}

impl Deliveries {
    /// Deliveries through `signals`, answering the machine on `inputs`; a completion is retried for at most
    /// `bound` (the lifecycle hooks' global timeout).
    pub(super) fn new(
        metadata: Arc<dyn Metadata>,
        signals: Arc<dyn Signals>,
        inputs: mpsc::Sender<Input>,
        bound: Duration,
    ) -> Self {
        Self {
            post: Post {
                metadata,
                signals,
                inputs,
                bound,
                settled: Arc::default(),
            },
            in_flight: Vec::new(),
            heartbeats: Vec::new(),
        }
    }

    /// CloudFormation SignalResource with the verdict (the identity looked up when the boot failed before
    /// learning it).
    pub(super) fn signal_stack(&mut self, identity: Option<Identity>, verdict: Verdict) {
        let post = self.post.clone();
        self.spawn(async move {
            let Some(identity) = known_identity(post.metadata.as_ref(), identity).await else {
                return;
            };
            let _ = post
                .deliver("SignalResource", || {
                    post.signals.signal_stack(&identity, &verdict)
                })
                .await;
        });
    }

    /// CompleteLifecycleAction on the launch hook; its answer goes back to the machine.
    pub(super) fn complete_launch(&mut self, identity: Identity, result: LaunchResult) {
        let post = self.post.clone();
        self.spawn(async move {
            let answer = post
                .deliver("launch lifecycle action", || {
                    post.signals.complete_launch(&identity, result)
                })
                .await;
            post.answer(LifecycleHook::Launch, hook_answer(answer))
                .await;
        });
    }

    /// CompleteLifecycleAction CONTINUE on the terminate hook; its answer goes back to the machine.
    pub(super) fn complete_termination(&mut self, identity: Identity) {
        let post = self.post.clone();
        self.spawn(async move {
            let answer = post
                .deliver("terminate lifecycle action", || {
                    post.signals.complete_termination(&identity)
                })
                .await;
            post.answer(LifecycleHook::Terminate, hook_answer(answer))
                .await;
        });
    }

    /// A heartbeat on `hook`, unless the last one is still being retried (it covers this one); the machine
    /// hears when nothing awaits it.
    pub(super) fn heartbeat(&mut self, identity: Identity, hook: LifecycleHook) {
        self.heartbeats.retain(|(_, handle)| !handle.is_finished());
        if self.heartbeats.iter().any(|(running, _)| *running == hook) {
            return;
        }
        let post = self.post.clone();
        let handle = tokio::spawn(async move {
            let answer = match hook {
                LifecycleHook::Launch => {
                    post.deliver("launch lifecycle heartbeat", || {
                        post.signals.heartbeat(&identity)
                    })
                    .await
                }
                LifecycleHook::Terminate => {
                    post.deliver("terminate lifecycle heartbeat", || {
                        post.signals.heartbeat_termination(&identity)
                    })
                    .await
                }
            };
            if let Ok(Delivery::NotAwaited(why)) = answer {
                post.answer(hook, HookAnswer::NotAwaited(why)).await;
            }
        });
        self.heartbeats.push((hook, handle));
    }

    /// SetInstanceHealth Unhealthy: Kafka was lost too long.
    pub(super) fn mark_unhealthy(&mut self, identity: Identity) {
        let post = self.post.clone();
        self.spawn(async move {
            warn!(berth_instance_id = %identity.instance_id, "Kafka lost for too long: marking the instance unhealthy");
            let _ = post
                .deliver("SetInstanceHealth", || post.signals.mark_unhealthy(&identity))
                .await;
        });
    }

    /// The failure's report (ABANDON, else SetInstanceHealth Unhealthy), retried within [`REPORT_BOUND`]; how it
    /// ended goes back to the machine.
    pub(super) fn report_failure(&mut self, identity: Option<Identity>) {
        let post = self.post.clone();
        self.spawn(async move {
            let report = match known_identity(post.metadata.as_ref(), identity).await {
                Some(identity) => {
                    retrying(
                        "failure report",
                        REPORT_BOUND,
                        || post.signals.report_failure(&identity),
                        |error, attempt, pause| {
                            warn!(berth_delivery = "failure report", error = %error, attempt, "failure not reported to Auto Scaling yet, retrying in {pause:?}: {error}");
                        },
                    )
                    .await
                }
                None => Err(StepError::new(
                    ErrorKind::Retryable,
                    "the instance's identity is unknown (instance metadata unreachable)",
                )),
            };
            match &report {
                Ok(report) => {
                    warn!(berth_delivery = "failure report", report = ?report, "failure reported to Auto Scaling: {report:?}")
                }
                Err(error) => {
                    error!(berth_delivery = "failure report", error = %error, "failure not reported to Auto Scaling (neither ABANDON nor SetInstanceHealth landed): {error}")
                }
            }
            let _ = post.inputs.send(Input::FailureReported(report)).await;
        });
    }

    fn spawn(&mut self, delivery: impl Future<Output = ()> + Send + 'static) {
        self.in_flight.push(tokio::spawn(delivery));
    }

    /// Drops the handles of deliveries that have finished.
    pub(super) fn forget_finished(&mut self) {
        self.in_flight.retain(|handle| !handle.is_finished());
        self.heartbeats.retain(|(_, handle)| !handle.is_finished());
    }

    /// Lets deliveries still in flight finish (a FAILURE signal must not be lost to the exit), within
    /// [`DELIVERY_GRACE`]; heartbeats are dropped.
    pub(super) async fn finish(&mut self) {
        for (_, heartbeat) in self.heartbeats.drain(..) {
            heartbeat.abort();
        }
        let pending = std::mem::take(&mut self.in_flight);
        let all = async {
            for delivery in pending {
                let _ = delivery.await;
            }
        };
        if tokio::time::timeout(DELIVERY_GRACE, all).await.is_err() {
            warn!("signals still in flight after {DELIVERY_GRACE:?}; exiting without them");
        }
    }
}

impl Post {
    /// Sends one signal or lifecycle call, retried within the completions' bound while it fails retryably; an
    /// answer that nothing awaits it is logged once at info and never sent again.
    async fn deliver<F, Fut>(&self, what: &'static str, call: F) -> Result<Delivery, StepError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Delivery, StepError>>,
    {
        if lock(&self.settled).contains(what) {
            return Ok(Delivery::NotAwaited("answered before".into()));
        }
        let bound = Bound::Until(Deadline::after(self.bound));
        let answer = retrying(what, bound, call, |error, attempt, pause| {
            warn!(berth_delivery = what, error = %error, attempt, "{what} failed, retrying in {pause:?}: {error}");
        })
        .await;
        match &answer {
            Ok(Delivery::Accepted) => info!(berth_delivery = what, "{what}: delivered"),
            Ok(Delivery::NotConfigured) => {}
            Ok(Delivery::NotAwaited(why)) => {
                if lock(&self.settled).insert(what) {
                    info!(berth_delivery = what, answer = %why, "{what}: nothing awaits it, not sent again");
                }
            }
            Err(error) if error.is_retryable() => {
                error!(berth_delivery = what, error = %error, "{what} given up: still failing after {:?}: {error}", self.bound)
            }
            Err(error) => {
                error!(berth_delivery = what, error = %error, "{what} refused for good: {error}")
            }
        }
        answer
    }

    /// Tells the machine how Auto Scaling took a lifecycle call.
    async fn answer(&self, hook: LifecycleHook, answer: HookAnswer) {
        let _ = self.inputs.send(Input::HookAnswered { hook, answer }).await;
    }
}

/// A completion's end as the machine hears it.
fn hook_answer(answer: Result<Delivery, StepError>) -> HookAnswer {
    match answer {
        Ok(Delivery::Accepted) => HookAnswer::Completed,
        Ok(Delivery::NotAwaited(why)) => HookAnswer::NotAwaited(why),
        Ok(Delivery::NotConfigured) => HookAnswer::NotAwaited("no hook configured".into()),
        Err(error) => HookAnswer::GaveUp(error.to_string()),
    }
}

/// The identity to report with, looked up when the boot failed before learning it.
pub(super) async fn known_identity(
    metadata: &dyn Metadata,
    identity: Option<Identity>,
) -> Option<Identity> {
    if identity.is_some() {
        return identity;
    }
    match metadata.identity().await {
        Ok(identity) => Some(identity),
        Err(error) => {
            error!(error = %error, "cannot report to AWS: instance identity unknown: {error}");
            None
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
