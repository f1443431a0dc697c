//! The read-only HTTP endpoints lifecycle hooks, load balancers, Prometheus and operators poll.
//!
//! Two listeners ([`Listener`]): the public one (`health.listen`, `0.0.0.0:9798` by default) answers `/health`
//! (200/503) and `/metrics`, what a load balancer and Prometheus need; the local one (`health.state_listen`,
//! `127.0.0.1:9799` by default) answers those and `/state`, the JSON view, which names the instance, its ENI,
//! berth's pid and AWS's error messages, so it is not served to the VPC. All are computed from the state loop's
//! latest machine when asked for, so durations and what berth waits for are live. It speaks just enough HTTP/1.1
//! for that: GET or HEAD, one request per connection, a bounded request head, a read timeout and a cap on
//! concurrent connections, so garbage, slow clients or a flood cannot stall or starve the daemon.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

pub use berth_state::client::get;

use crate::metrics::{Format, Metrics};
use crate::view::{Published, StateView};

/// What the state loop publishes for the endpoint: nothing before its first decision.
pub type Feed = watch::Receiver<Option<Arc<Published>>>;

/// Which paths a listener answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// `/health` and `/metrics` (`health.listen`).
    Public,
    /// `/state` too (`health.state_listen`, loopback by default).
    Local,
}

/// What both listeners serve from: the state loop's feed and the metrics.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The state loop's latest machine.
    pub feed: Feed,
    /// The metrics registry (call errors are counted into it as they happen).
    pub metrics: Arc<Metrics>,
}

impl Endpoint {
    /// An endpoint over `feed` with fresh metrics.
    pub fn new(feed: Feed) -> Self {
        Self {
            feed,
            metrics: Arc::new(Metrics::new()),
        }
    }
}

/// Largest request head accepted.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Time allowed to send the request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more wait in the accept queue.
pub const MAX_CONNECTIONS: usize = 64;

/// A listener that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("binding {key} on {address}: {source}")]
pub struct BindError {
    /// The configuration key (`health.listen`, `health.state_listen`).
    pub key: &'static str,
    /// The address.
    pub address: SocketAddr,
    /// Why.
    pub source: std::io::Error,
}

/// Binds both listeners as `config` says (the public one on `listen`, the local one on `state_listen`) and
/// serves them until `shutdown` turns true; the tasks end then.
pub async fn start(
    config: &berth_config::HealthConfig,
    endpoint: &Endpoint,
    shutdown: watch::Receiver<bool>,
) -> Result<Vec<JoinHandle<()>>, BindError> {
    let mut servers = Vec::new();
    for (key, address, paths) in [
        ("health.listen", config.listen, Listener::Public),
        ("health.state_listen", config.state_listen, Listener::Local),
    ] {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| BindError {
                key,
                address,
                source,
            })?;
        let mut shutdown = shutdown.clone();
        servers.push(tokio::spawn(serve(
            listener,
            paths,
            endpoint.clone(),
            async move {
                let _ = shutdown.wait_for(|stop| *stop).await;
            },
        )));
    }
    Ok(servers)
}

/// Serves `paths` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    paths: Listener,
    endpoint: Endpoint,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => return,
            permit = permits.clone().acquire_owned() => match permit { Ok(p) => p, Err(_) => return },
        };
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let endpoint = endpoint.clone();
                tokio::spawn(async move {
                    let _ = handle(stream, paths, endpoint).await;
                    drop(permit);
                });
            }
            Err(error) => {
                tracing::warn!(%error, "health endpoint accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn handle(mut stream: TcpStream, paths: Listener, endpoint: Endpoint) -> std::io::Result<()> {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(Some(head))) => head,
        Ok(Ok(None)) => {
            return respond(&mut stream, 431, TEXT, b"request head too large\n", false).await
        }
        Ok(Err(error)) => return Err(error),
        Err(_) => return respond(&mut stream, 408, TEXT, b"request timeout\n", false).await,
    };
    let request_line = head.lines().next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return respond(&mut stream, 405, TEXT, b"only GET and HEAD\n", false).await;
    }
    let path = target.split('?').next().unwrap_or_default();
    let published = endpoint.feed.borrow().clone();
    let snapshot = published.map_or_else(StateView::empty, |published| published.view());
    match (path, paths) {
        ("/health", _) => {
            let status = if snapshot.healthy { 200 } else { 503 };
            let body = health_body(&snapshot);
            respond(&mut stream, status, TEXT, body.as_bytes(), head_only).await
        }
        ("/state", Listener::Local) => {
            let body = serde_json::to_vec_pretty(&snapshot).unwrap_or_default();
            respond(&mut stream, 200, "application/json", &body, head_only).await
        }
        ("/metrics", _) => {
            let format = Format::negotiate(header(&head, "accept"));
            let body = endpoint.metrics.render(&snapshot, format);
            respond(
                &mut stream,
                200,
                format.content_type(),
                body.as_bytes(),
                head_only,
            )
            .await
        }
        ("/state", Listener::Public) => {
            respond(
                &mut stream,
                404,
                TEXT,
                b"not found: /state is served on the local listener (health.state_listen)\n",
                head_only,
            )
            .await
        }
        _ => {
            let body: &[u8] = match paths {
                Listener::Public => b"not found: try /health or /metrics\n",
                Listener::Local => b"not found: try /health, /state or /metrics\n",
            };
            respond(&mut stream, 404, TEXT, body, head_only).await
        }
    }
}

/// The plain text responses' content type.
const TEXT: &str = "text/plain; charset=utf-8";

/// A request header's value (`name` in lower case).
fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// `/health`'s text: the verdict, the state, and while not healthy the step berth waits in (what it waits for,
/// which may name instances and carry AWS's messages, is `/state`'s).
fn health_body(view: &StateView) -> String {
    let mut body = format!(
        "{}\nstate={}\n",
        if view.healthy { "ok" } else { "unhealthy" },
        view.state
    );
    if view.claim_lost_ms.is_some() {
        body.push_str("claim=lost (re-claiming; Kafka keeps running)\n");
    }
    if let (false, Some(waiting)) = (view.healthy, &view.waiting) {
        body.push_str(&format!("waiting={}\n", waiting.step));
    }
    body
}

/// Reads up to the blank line ending the head; `None` when it exceeds [`MAX_REQUEST_BYTES`].
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut buffer = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            break;
        }
        buffer.extend_from_slice(&chunk[..read]);
        if buffer.windows(4).any(|w| w == b"\r\n\r\n") || buffer.windows(2).any(|w| w == b"\n\n") {
            break;
        }
        if buffer.len() > MAX_REQUEST_BYTES {
            return Ok(None);
        }
    }
    Ok(Some(String::from_utf8_lossy(&buffer).into_owned()))
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let mut response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        response.extend_from_slice(body);
    }
    stream.write_all(&response).await?;
    stream.shutdown().await
}
