//! The strict CloudFormation and Auto Scaling endpoint (a stand-in, NOT AWS), in front of moto's EC2.
//!
//! moto lacks SignalResource, CompleteLifecycleAction and RecordLifecycleActionHeartbeat (it answers an HTML
//! 500), so this endpoint serves CloudFormation and Auto Scaling itself from the models in [`super::cloudformation`]
//! and [`super::autoscaling`], which accept a call only where AWS would and otherwise answer AWS's error, in
//! AWS's query-protocol shape ([`super::query`]). It also serves the instance-refresh and termination calls an
//! operator makes with the `aws` CLI (docs/operations.md), and refuses every other CloudFormation or Auto Scaling
//! action (`InvalidAction`) instead of letting moto answer it from a different world, and forwards EC2 (and
//! anything else) to moto unchanged, so one endpoint URL serves all three services as `aws.endpoint_url`
//! requires. Every answered call is recorded with its outcome, for assertions.
//!
//! The models live behind one lock ([`ControlPlane`]); whoever plays the control plane (the simulated fleet's
//! Auto Scaling group) changes them through [`AwsEndpoint::with`] and learns of every change through
//! [`AwsEndpoint::changed`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::watch;

use super::autoscaling::{self, AutoScaling};
use super::cloudformation::{self, Stacks};
use super::http::{forward, Handler, Request, Response, Server};
use super::query::{success_xml, ApiError, Params};

/// One call answered here, with its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCall {
    /// The `Action` parameter.
    pub action: String,
    /// Every parameter as sent (including `Action` and `Version`).
    pub params: BTreeMap<String, String>,
    /// `Ok` when accepted, else the error code and message sent back.
    pub outcome: Result<(), (String, String)>,
}

impl RecordedCall {
    /// One parameter's value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// True when the call was accepted.
    pub fn accepted(&self) -> bool {
        self.outcome.is_ok()
    }

    /// The refusal's message, when refused.
    pub fn refusal(&self) -> Option<&str> {
        self.outcome
            .as_ref()
            .err()
            .map(|(_, message)| message.as_str())
    }
}

/// CloudFormation's and Auto Scaling's state, and the calls answered.
#[derive(Debug)]
pub struct ControlPlane {
    /// The stacks.
    pub stacks: Stacks,
    /// The Auto Scaling groups.
    pub autoscaling: AutoScaling,
    calls: Vec<RecordedCall>,
}

impl ControlPlane {
    /// Applies the timeouts that have passed in both services.
    pub fn advance(&mut self, now: Instant) {
        self.stacks.expire(now);
        self.autoscaling.advance(now);
    }

    /// The earliest timeout pending in either service.
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.stacks.next_deadline(),
            self.autoscaling.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Answers `action`: `Some` result content for actions with an output shape, or AWS's refusal.
    fn answer(
        &mut self,
        action: &str,
        params: &Params,
        now: Instant,
    ) -> Result<Option<String>, ApiError> {
        match action {
            "SignalResource" => self.stacks.signal(params, now).map(|()| None),
            "CompleteLifecycleAction" => self
                .autoscaling
                .complete_lifecycle_action(params, now)
                .map(|()| Some(String::new())),
            "RecordLifecycleActionHeartbeat" => self
                .autoscaling
                .record_heartbeat(params, now)
                .map(|()| Some(String::new())),
            "SetInstanceHealth" => self
                .autoscaling
                .set_instance_health(params, now)
                .map(|()| None),
            other => self
                .autoscaling
                .answer_operator(other, params, now)
                .map(Some),
        }
    }
}

/// Which service an action belongs to, by the API version the SDK sends; EC2 (and the rest) is forwarded.
fn service(params: &BTreeMap<String, String>) -> Option<&'static str> {
    match params.get("Version").map(String::as_str) {
        Some(cloudformation::VERSION) => Some(cloudformation::NAMESPACE),
        Some(autoscaling::VERSION) => Some(autoscaling::NAMESPACE),
        _ => None,
    }
}

/// The running endpoint; stops when dropped.
#[derive(Debug)]
pub struct AwsEndpoint {
    server: Server,
    plane: Arc<Mutex<ControlPlane>>,
    changed: watch::Sender<u64>,
}

impl AwsEndpoint {
    /// Starts on `bind` (port 0 for a free one) for `region`, forwarding EC2 to `upstream` when given.
    pub fn start(
        bind: SocketAddr,
        region: &str,
        upstream: Option<SocketAddr>,
    ) -> std::io::Result<Self> {
        Self::from_listener(std::net::TcpListener::bind(bind)?, region, upstream)
    }

    /// Like `start`, on a listener bound elsewhere (e.g. inside a network namespace).
    pub fn from_listener(
        listener: std::net::TcpListener,
        region: &str,
        upstream: Option<SocketAddr>,
    ) -> std::io::Result<Self> {
        let plane = Arc::new(Mutex::new(ControlPlane {
            stacks: Stacks::new(region),
            autoscaling: AutoScaling::default(),
            calls: Vec::new(),
        }));
        let (changed, _) = watch::channel(0u64);
        let handler = handler(plane.clone(), changed.clone(), upstream);
        Ok(Self {
            server: Server::from_listener(listener, handler)?,
            plane,
            changed,
        })
    }

    /// `http://<address>`, to use as `aws.endpoint_url`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The bound address.
    pub fn address(&self) -> SocketAddr {
        self.server.address()
    }

    /// Runs `f` on the control plane (the timeouts due now applied first) and announces the change.
    pub fn with<T>(&self, f: impl FnOnce(&mut ControlPlane) -> T) -> T {
        let result = {
            let mut plane = lock(&self.plane);
            plane.advance(Instant::now());
            f(&mut plane)
        };
        self.changed.send_modify(|count| *count += 1);
        result
    }

    /// Reads the control plane without changing it (no timeouts applied, no change announced).
    pub fn read<T>(&self, f: impl FnOnce(&ControlPlane) -> T) -> T {
        f(&lock(&self.plane))
    }

    /// Changes after every answered call and every [`AwsEndpoint::with`].
    pub fn changed(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Every call answered here, in arrival order.
    pub fn calls(&self) -> Vec<RecordedCall> {
        lock(&self.plane).calls.clone()
    }

    /// The calls of one action.
    pub fn calls_of(&self, action: &str) -> Vec<RecordedCall> {
        self.calls()
            .into_iter()
            .filter(|call| call.action == action)
            .collect()
    }

    /// The calls of one action naming one instance (`InstanceId` or `UniqueId`).
    pub fn calls_from(&self, action: &str, instance_id: &str) -> Vec<RecordedCall> {
        self.calls_of(action)
            .into_iter()
            .filter(|call| {
                call.param("InstanceId") == Some(instance_id)
                    || call.param("UniqueId") == Some(instance_id)
            })
            .collect()
    }
}

fn handler(
    plane: Arc<Mutex<ControlPlane>>,
    changed: watch::Sender<u64>,
    upstream: Option<SocketAddr>,
) -> Handler {
    let sequence = Arc::new(AtomicU64::new(1));
    Arc::new(move |request: Request| {
        let plane = plane.clone();
        let changed = changed.clone();
        let sequence = sequence.clone();
        Box::pin(async move {
            let params = request.params();
            let Some(namespace) = service(&params) else {
                return match upstream {
                    Some(upstream) => forward(upstream, &request).await.unwrap_or_else(|error| {
                        Response::text(502, format!("AWS endpoint: upstream {upstream}: {error}"))
                    }),
                    None => {
                        let action = params.get("Action").cloned().unwrap_or_default();
                        Response::xml(400, ApiError::invalid_action(&action).to_xml("", "0"))
                    }
                };
            };
            let request_id = format!(
                "00000000-0000-4000-8000-{:012x}",
                sequence.fetch_add(1, Ordering::Relaxed)
            );
            let action = params.get("Action").cloned().unwrap_or_default();
            let outcome = {
                let mut plane = lock(&plane);
                let outcome = plane.answer(&action, &Params(params.clone()), Instant::now());
                plane.calls.push(RecordedCall {
                    action: action.clone(),
                    params,
                    outcome: outcome
                        .as_ref()
                        .map(drop)
                        .map_err(|error| (error.code.to_owned(), error.message.clone())),
                });
                outcome
            };
            changed.send_modify(|count| *count += 1);
            match outcome {
                Ok(result) => Response::xml(
                    200,
                    success_xml(&action, namespace, result.as_deref(), &request_id),
                ),
                Err(error) => Response::xml(error.status, error.to_xml(namespace, &request_id)),
            }
        })
    })
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
