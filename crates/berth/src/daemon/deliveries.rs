//! Deliveries: what berth tells CloudFormation and Auto Scaling (the stack signal, the launch action's
//! completion, lifecycle heartbeats, instance health). Each is sent as a task of its own, so a slow AWS never
//! holds the loop; a call that fails retryably is retried with [`retry`](super::retry)'s backoff within
//! [`DELIVERY_BOUND`]; an answer that nothing awaits the call is logged once at info and never sent again. An
//! exiting daemon waits for those still in flight (a FAILURE signal must not be lost to the exit), within
//! [`DELIVERY_GRACE`].

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_core::ports::{Delivery, LaunchResult, LifecycleHook, Metadata, Signals, Verdict};
use berth_core::{Identity, StepError};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::retry::{retrying, Bound};

/// How far a delivery that fails retryably is retried: five attempts (the waits between them stay under
/// [`DELIVERY_GRACE`]).
const DELIVERY_BOUND: Bound = Bound::Attempts(5);
/// How long an exiting daemon waits for deliveries still in flight.
const DELIVERY_GRACE: Duration = Duration::from_secs(15);

/// The deliveries in flight, and what a delivery task needs.
pub(super) struct Deliveries {
    post: Post,
    in_flight: Vec<JoinHandle<()>>,
}

/// What a delivery task needs: the ports, and the calls AWS answered "nothing awaits this" (said once, never
/// sent again).
#[derive(Clone)]
struct Post {
    metadata: Arc<dyn Metadata>,
    signals: Arc<dyn Signals>,
    settled: Arc<Mutex<BTreeSet<&'static str>>>,
}

impl Deliveries {
    pub(super) fn new(metadata: Arc<dyn Metadata>, signals: Arc<dyn Signals>) -> Self {
        Self {
            post: Post {
                metadata,
                signals,
                settled: Arc::default(),
            },
            in_flight: Vec::new(),
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
            post.deliver("SignalResource", || {
                post.signals.signal_stack(&identity, &verdict)
            })
            .await;
        });
    }

    /// CompleteLifecycleAction on the launch hook.
    pub(super) fn complete_launch(&mut self, identity: Identity, result: LaunchResult) {
        let post = self.post.clone();
        self.spawn(async move {
            post.deliver("launch lifecycle action", || {
                post.signals.complete_launch(&identity, result)
            })
            .await;
        });
    }

    /// A heartbeat on the launch hook (booting) or the terminating hook (a drain waiting).
    pub(super) fn heartbeat(&mut self, identity: Identity, hook: LifecycleHook) {
        let post = self.post.clone();
        self.spawn(async move {
            match hook {
                LifecycleHook::Launch => {
                    post.deliver("lifecycle heartbeat", || post.signals.heartbeat(&identity))
                        .await
                }
                LifecycleHook::Terminate => {
                    post.deliver("terminating lifecycle heartbeat", || {
                        post.signals.heartbeat_termination(&identity)
                    })
                    .await
                }
            }
        });
    }

    /// SetInstanceHealth Unhealthy: Kafka was lost too long.
    pub(super) fn mark_unhealthy(&mut self, identity: Identity) {
        let post = self.post.clone();
        self.spawn(async move {
            warn!(berth_instance_id = %identity.instance_id, "Kafka lost for too long: marking the instance unhealthy");
            post.deliver("SetInstanceHealth", || post.signals.mark_unhealthy(&identity))
                .await;
        });
    }

    fn spawn(&mut self, delivery: impl Future<Output = ()> + Send + 'static) {
        self.in_flight.push(tokio::spawn(delivery));
    }

    /// Drops the handles of deliveries that have finished.
    pub(super) fn forget_finished(&mut self) {
        self.in_flight.retain(|handle| !handle.is_finished());
    }

    /// Lets deliveries still in flight finish (a FAILURE signal must not be lost to the exit), within
    /// [`DELIVERY_GRACE`].
    pub(super) async fn finish(&mut self) {
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
    /// Sends one signal or lifecycle call, retried within [`DELIVERY_BOUND`] while it fails retryably; an
    /// answer that nothing awaits it is logged once at info and never sent again.
    async fn deliver<F, Fut>(&self, what: &'static str, call: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Delivery, StepError>>,
    {
        if lock(&self.settled).contains(what) {
            return;
        }
        let answer = retrying(what, DELIVERY_BOUND, call, |error, attempt, _| {
            warn!(berth_delivery = what, error = %error, attempt, "{what} failed, retrying: {error}");
        })
        .await;
        match answer {
            Ok(Delivery::Accepted) => info!(berth_delivery = what, "{what}: delivered"),
            Ok(Delivery::NotConfigured) => {}
            Ok(Delivery::NotAwaited(answer)) => {
                if lock(&self.settled).insert(what) {
                    info!(berth_delivery = what, answer = %answer, "{what}: nothing awaits it, not sent again");
                }
            }
            Err(error) => error!(berth_delivery = what, error = %error, "{what} failed: {error}"),
        }
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
