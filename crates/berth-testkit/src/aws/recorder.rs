//! A recording endpoint for the AWS query-protocol calls moto lacks.
//!
//! moto 5.2.5 answers CloudFormation `SignalResource` and Auto Scaling `CompleteLifecycleAction` /
//! `RecordLifecycleActionHeartbeat` with an HTML 500. This endpoint is a fake of those services (named as
//! such): it answers them (and `SetInstanceHealth`) with well-formed query-protocol XML, records every call's
//! parameters for assertions, and forwards any other action unchanged to an upstream (moto), so one endpoint
//! URL serves EC2, CloudFormation and Auto Scaling as `aws.endpoint_url` requires.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::http::{forward, Handler, Request, Response, Server};

const CLOUDFORMATION_NS: &str = "http://cloudformation.amazonaws.com/doc/2010-05-15/";
const AUTOSCALING_NS: &str = "http://autoscaling.amazonaws.com/doc/2011-01-01/";

/// The actions answered here: (action, XML namespace, whether the output shape has a `<...Result/>`).
const ANSWERED: [(&str, &str, bool); 4] = [
    ("SignalResource", CLOUDFORMATION_NS, false),
    ("CompleteLifecycleAction", AUTOSCALING_NS, true),
    ("RecordLifecycleActionHeartbeat", AUTOSCALING_NS, true),
    ("SetInstanceHealth", AUTOSCALING_NS, false),
];

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCall {
    /// The `Action` parameter.
    pub action: String,
    /// Every parameter as sent (including `Action` and `Version`).
    pub params: BTreeMap<String, String>,
}

impl RecordedCall {
    /// One parameter's value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// The running recording endpoint; stops when dropped.
#[derive(Debug)]
pub struct RecordingEndpoint {
    server: Server,
    calls: Arc<Mutex<Vec<RecordedCall>>>,
}

impl RecordingEndpoint {
    /// Starts on `bind` (port 0 for a free one), forwarding other actions to `upstream` when given.
    pub fn start(bind: SocketAddr, upstream: Option<SocketAddr>) -> std::io::Result<Self> {
        Self::from_listener(std::net::TcpListener::bind(bind)?, upstream)
    }

    /// Like `start`, on a listener bound elsewhere (e.g. inside a network namespace).
    pub fn from_listener(
        listener: std::net::TcpListener,
        upstream: Option<SocketAddr>,
    ) -> std::io::Result<Self> {
        let calls: Arc<Mutex<Vec<RecordedCall>>> = Arc::default();
        let recorded = calls.clone();
        let sequence = Arc::new(AtomicU64::new(1));
        let handler: Handler = Arc::new(move |request: Request| {
            let recorded = recorded.clone();
            let sequence = sequence.clone();
            Box::pin(async move {
                let params = request.params();
                let action = params.get("Action").cloned().unwrap_or_default();
                if let Some((_, namespace, has_result)) =
                    ANSWERED.iter().find(|(name, _, _)| *name == action)
                {
                    recorded.lock().expect("recorder lock").push(RecordedCall {
                        action: action.clone(),
                        params,
                    });
                    let id = format!(
                        "00000000-0000-4000-8000-{:012x}",
                        sequence.fetch_add(1, Ordering::Relaxed)
                    );
                    let result = if *has_result {
                        format!("<{action}Result/>")
                    } else {
                        String::new()
                    };
                    return Response::xml(
                        200,
                        format!(
                            "<{action}Response xmlns=\"{namespace}\">{result}<ResponseMetadata><RequestId>{id}</RequestId></ResponseMetadata></{action}Response>"
                        ),
                    );
                }
                match upstream {
                    Some(upstream) => forward(upstream, &request).await.unwrap_or_else(|error| {
                        Response::text(502, format!("recording endpoint: upstream {upstream}: {error}"))
                    }),
                    None => Response::xml(
                        400,
                        format!("<ErrorResponse><Error><Type>Sender</Type><Code>InvalidAction</Code><Message>recording endpoint does not implement {action:?}</Message></Error><RequestId>0</RequestId></ErrorResponse>"),
                    ),
                }
            })
        });
        Ok(Self {
            server: Server::from_listener(listener, handler)?,
            calls,
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

    /// Every call answered here, in arrival order.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.calls.lock().expect("recorder lock").clone()
    }

    /// The calls of one action.
    pub fn calls_of(&self, action: &str) -> Vec<RecordedCall> {
        self.calls()
            .into_iter()
            .filter(|call| call.action == action)
            .collect()
    }

    /// Forgets the recorded calls.
    pub fn clear(&self) {
        self.calls.lock().expect("recorder lock").clear();
    }
}
