//! A fault-injecting, call-counting HTTP proxy in front of moto (or the recording endpoint).
//!
//! Under a mass replacement EC2 answers `RequestLimitExceeded` (HTTP 503) and the odd 500; berth must back off
//! and never turn those into Failed. The proxy answers chosen actions with such faults a set number of times
//! ([`FaultProxy::inject`]), or every call of an action for a stretch of time from its first call on
//! ([`FaultProxy::sustain`]: an AZ-wide replacement throttles an account's calls for as long as the burst lasts;
//! the throttling codes are AWS's own: EC2's `RequestLimitExceeded`, "Request throttling for the Amazon EC2 API",
//! and the query services' `Throttling` "Rate exceeded", their Common Errors), then forwards them again; it also
//! counts every action it sees, which is how tests count API calls per boot.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use super::http::{forward, Handler, Request, Response, Server};

/// The EC2 API version the SDK sends; it tells EC2's error format from the query services'.
const EC2_VERSION: &str = "2016-11-15";

/// A fault to answer instead of forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// EC2: HTTP 503 `RequestLimitExceeded`; CloudFormation/Auto Scaling: HTTP 400 `Throttling`.
    Throttle,
    /// HTTP 500 `InternalError`.
    ServerError,
    /// Refused for good, as a role without the permission is: EC2's HTTP 403 `UnauthorizedOperation`, the query
    /// services' HTTP 403 `AccessDenied` (their Common Errors).
    AccessDenied,
}

/// A fault held on every call of an action (naming `instance`, when given) for `window` from the first such call.
#[derive(Debug)]
struct Sustained {
    fault: Fault,
    window: Duration,
    instance: Option<String>,
    began: Option<Instant>,
}

#[derive(Debug, Default)]
struct State {
    faults: BTreeMap<String, Vec<(Fault, usize)>>,
    sustained: BTreeMap<String, Vec<Sustained>>,
    seen: BTreeMap<String, usize>,
    faulted: BTreeMap<String, usize>,
    spans: Vec<CallSpan>,
}

/// One call through the proxy, from its request's arrival to its answer (a fault, or upstream's response).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSpan {
    /// The action (`AttachVolume`, ...).
    pub action: String,
    /// When the request arrived (wall clock, comparable with the hosts' journals).
    pub began: SystemTime,
    /// When the answer was ready.
    pub ended: SystemTime,
}

impl State {
    /// The fault for this call of `action`, if one is set: a counted one first, else a sustained one (whose
    /// window starts now if it has not yet).
    fn fault_for(&mut self, action: &str, params: &BTreeMap<String, String>) -> Option<Fault> {
        let counted = self.faults.get_mut(action).and_then(|queue| {
            let (fault, left) = queue.first_mut()?;
            let fault = *fault;
            *left -= 1;
            if *left == 0 {
                queue.remove(0);
            }
            Some(fault)
        });
        if counted.is_some() {
            return counted;
        }
        let now = Instant::now();
        let held = self.sustained.get_mut(action)?;
        held.retain(|sustained| sustained.began.is_none_or(|at| now < at + sustained.window));
        let instance = params.get("InstanceId");
        let sustained = held.iter_mut().find(|sustained| {
            sustained.instance.is_none() || sustained.instance.as_ref() == instance
        })?;
        sustained.began.get_or_insert(now);
        Some(sustained.fault)
    }
}

/// The running proxy; stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    server: Server,
    state: Arc<Mutex<State>>,
    answered: watch::Sender<u64>,
}

impl FaultProxy {
    /// Starts on `bind` (port 0 for a free one) in front of `upstream`.
    pub fn start(bind: SocketAddr, upstream: SocketAddr) -> std::io::Result<Self> {
        Self::from_listener(std::net::TcpListener::bind(bind)?, upstream)
    }

    /// Like `start`, on a listener bound elsewhere (e.g. inside a network namespace).
    pub fn from_listener(
        listener: std::net::TcpListener,
        upstream: SocketAddr,
    ) -> std::io::Result<Self> {
        let state: Arc<Mutex<State>> = Arc::default();
        let shared = state.clone();
        let (answered, _) = watch::channel(0u64);
        let announce = answered.clone();
        let handler: Handler = Arc::new(move |request: Request| {
            let shared = shared.clone();
            let announce = announce.clone();
            Box::pin(async move {
                let params = request.params();
                let action = params.get("Action").cloned().unwrap_or_default();
                let ec2 = params
                    .get("Version")
                    .is_some_and(|version| version == EC2_VERSION);
                let fault = {
                    let mut state = shared.lock().expect("proxy lock");
                    *state.seen.entry(action.clone()).or_default() += 1;
                    let fault = state.fault_for(&action, &params);
                    if fault.is_some() {
                        *state.faulted.entry(action.clone()).or_default() += 1;
                    }
                    fault
                };
                let began = SystemTime::now();
                let response = match fault {
                    Some(fault) => fault_response(fault, ec2),
                    None => {
                        let response = forward(upstream, &request).await.unwrap_or_else(|error| {
                            Response::text(
                                502,
                                format!("fault proxy: upstream {upstream}: {error}"),
                            )
                        });
                        announce.send_modify(|count| *count += 1);
                        response
                    }
                };
                let ended = SystemTime::now();
                let span = CallSpan {
                    action,
                    began,
                    ended,
                };
                shared.lock().expect("proxy lock").spans.push(span);
                response
            })
        });
        Ok(Self {
            server: Server::from_listener(listener, handler)?,
            state,
            answered,
        })
    }

    /// Changes each time upstream has answered a forwarded call, so a simulator reacts to an attachment the
    /// moment EC2 records it instead of on its next poll.
    pub fn answered(&self) -> watch::Receiver<u64> {
        self.answered.subscribe()
    }

    /// `http://<address>`, to use as `aws.endpoint_url`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The bound address.
    pub fn address(&self) -> SocketAddr {
        self.server.address()
    }

    /// Answers the next `times` calls of `action` with `fault` (queued after faults already set for it).
    pub fn inject(&self, action: &str, fault: Fault, times: usize) {
        if times > 0 {
            self.state
                .lock()
                .expect("proxy lock")
                .faults
                .entry(action.to_owned())
                .or_default()
                .push((fault, times));
        }
    }

    /// Answers every call of `action` with `fault` for `window`, counted from the first call that arrives after
    /// this (so "throttled for a minute from its first call"); with `instance`, only the calls naming it
    /// (`InstanceId`). Then `action` is forwarded again.
    pub fn sustain(&self, action: &str, fault: Fault, window: Duration, instance: Option<&str>) {
        self.state
            .lock()
            .expect("proxy lock")
            .sustained
            .entry(action.to_owned())
            .or_default()
            .push(Sustained {
                fault,
                window,
                instance: instance.map(str::to_owned),
                began: None,
            });
    }

    /// How many calls of `action` arrived (faulted ones included).
    pub fn calls(&self, action: &str) -> usize {
        self.state
            .lock()
            .expect("proxy lock")
            .seen
            .get(action)
            .copied()
            .unwrap_or(0)
    }

    /// How many calls of `action` were answered with a fault.
    pub fn faulted(&self, action: &str) -> usize {
        self.state
            .lock()
            .expect("proxy lock")
            .faulted
            .get(action)
            .copied()
            .unwrap_or(0)
    }

    /// Calls per action seen so far.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        self.state.lock().expect("proxy lock").seen.clone()
    }

    /// Every call that arrived in `[from, to]`, with its span, in arrival order.
    pub fn spans_between(&self, from: SystemTime, to: SystemTime) -> Vec<CallSpan> {
        let state = self.state.lock().expect("proxy lock");
        state
            .spans
            .iter()
            .filter(|span| span.began >= from && span.began <= to)
            .cloned()
            .collect()
    }

    /// Forgets the counts (pending faults stay).
    pub fn reset_counts(&self) {
        let mut state = self.state.lock().expect("proxy lock");
        state.seen.clear();
        state.faulted.clear();
        state.spans.clear();
    }
}

fn fault_response(fault: Fault, ec2: bool) -> Response {
    let (status, code, message) = match (fault, ec2) {
        (Fault::Throttle, true) => (503, "RequestLimitExceeded", "Request limit exceeded."),
        (Fault::Throttle, false) => (400, "Throttling", "Rate exceeded"),
        (Fault::ServerError, _) => (500, "InternalError", "An internal error has occurred"),
        (Fault::AccessDenied, true) => (
            403,
            "UnauthorizedOperation",
            "You are not authorized to perform this operation.",
        ),
        (Fault::AccessDenied, false) => (
            403,
            "AccessDenied",
            "User is not authorized to perform this action (fault proxy)",
        ),
    };
    let body = if ec2 {
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>fault-proxy</RequestID></Response>")
    } else {
        let kind = if status >= 500 { "Receiver" } else { "Sender" };
        format!("<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>fault-proxy</RequestId></ErrorResponse>")
    };
    Response::xml(status, body)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::aws::autoscaling::{GroupSpec, Hook, HookResult, Transition};
    use crate::aws::http::blocking_request;
    use crate::aws::{loopback_any_port, AwsEndpoint};

    /// A heartbeat for `instance` through `proxy`: the HTTP status and the error code, if any.
    fn heartbeat(proxy: &FaultProxy, instance: &str) -> (u16, Option<String>) {
        let url = format!(
            "{}/?Action=RecordLifecycleActionHeartbeat&Version=2011-01-01&AutoScalingGroupName=g\
             &LifecycleHookName=launch&InstanceId={instance}",
            proxy.url()
        );
        let response = blocking_request(&url, "POST", "").expect("an answer");
        let body = String::from_utf8_lossy(&response.body).into_owned();
        let code = body
            .split_once("<Code>")
            .and_then(|(_, rest)| rest.split_once("</Code>"))
            .map(|(code, _)| code.to_owned());
        (response.status, code)
    }

    #[test]
    fn a_sustained_throttle_holds_from_the_first_call_for_its_window_then_lets_calls_through() {
        let aws = AwsEndpoint::start(loopback_any_port(), "eu-west-1", None).unwrap();
        let now = Instant::now();
        aws.with(|plane| {
            plane.autoscaling.create_group(GroupSpec {
                name: "g".into(),
                hooks: vec![Hook {
                    name: "launch".into(),
                    transition: Transition::Launching,
                    heartbeat_timeout: Duration::from_secs(600),
                    default_result: HookResult::Abandon,
                }],
                health_check_grace_period: Duration::ZERO,
            });
            plane.autoscaling.launch("g", "i-1", "eu-west-1a", now);
            plane.autoscaling.launch("g", "i-2", "eu-west-1a", now);
        });
        let proxy = FaultProxy::start(loopback_any_port(), aws.address()).unwrap();
        let window = Duration::from_millis(600);
        proxy.sustain(
            "RecordLifecycleActionHeartbeat",
            Fault::Throttle,
            window,
            Some("i-1"),
        );
        // Armed, not started: another instance's call passes, and the window waits for i-1's first call.
        assert_eq!(heartbeat(&proxy, "i-2"), (200, None));
        std::thread::sleep(window);
        let first = Instant::now();
        let mut throttled = 0;
        while heartbeat(&proxy, "i-1") == (400, Some("Throttling".into())) {
            throttled += 1;
            assert!(first.elapsed() < window * 3, "the window ends");
        }
        let held = first.elapsed();
        assert!(throttled >= 2, "every call in the window: {throttled}");
        assert!(
            held >= window,
            "held {held:?} of {window:?}, counted from the first call"
        );
        assert_eq!(heartbeat(&proxy, "i-1"), (200, None), "forwarded again");
        assert_eq!(proxy.faulted("RecordLifecycleActionHeartbeat"), throttled);
        assert_eq!(
            aws.calls_of("RecordLifecycleActionHeartbeat").len(),
            3,
            "the throttled calls never reached the endpoint"
        );
    }
}
