//! A fault-injecting, call-counting HTTP proxy in front of moto (or the recording endpoint).
//!
//! Under a mass replacement EC2 answers `RequestLimitExceeded` (HTTP 503) and the odd 500; berth must back off
//! and never turn those into Failed. The proxy answers chosen actions with such faults a set number of times,
//! then forwards them again; it also counts every action it sees, which is how tests count API calls per boot.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

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
}

#[derive(Debug, Default)]
struct State {
    faults: BTreeMap<String, Vec<(Fault, usize)>>,
    seen: BTreeMap<String, usize>,
    faulted: BTreeMap<String, usize>,
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
                    let fault = state.faults.get_mut(&action).and_then(|queue| {
                        let (fault, left) = queue.first_mut()?;
                        let fault = *fault;
                        *left -= 1;
                        if *left == 0 {
                            queue.remove(0);
                        }
                        Some(fault)
                    });
                    if fault.is_some() {
                        *state.faulted.entry(action.clone()).or_default() += 1;
                    }
                    fault
                };
                match fault {
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
                }
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

    /// Forgets the counts (pending faults stay).
    pub fn reset_counts(&self) {
        let mut state = self.state.lock().expect("proxy lock");
        state.seen.clear();
        state.faulted.clear();
    }
}

fn fault_response(fault: Fault, ec2: bool) -> Response {
    let (status, code, message) = match (fault, ec2) {
        (Fault::Throttle, true) => (503, "RequestLimitExceeded", "Request limit exceeded."),
        (Fault::Throttle, false) => (400, "Throttling", "Rate exceeded"),
        (Fault::ServerError, _) => (500, "InternalError", "An internal error has occurred"),
    };
    let body = if ec2 {
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>fault-proxy</RequestID></Response>")
    } else {
        let kind = if status >= 500 { "Receiver" } else { "Sender" };
        format!("<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>fault-proxy</RequestId></ErrorResponse>")
    };
    Response::xml(status, body)
}
