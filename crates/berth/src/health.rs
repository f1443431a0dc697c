//! The read-only HTTP endpoint lifecycle hooks, load balancers and operators poll.
//!
//! `/health` answers 200 only when Healthy (Kafka serving, claim held) and 503 otherwise; `/state` is the JSON
//! view; `/metrics` the Prometheus text. All three are computed from the state loop's latest machine when they
//! are asked for, so durations and what berth waits for are live. It speaks just enough HTTP/1.1 for that: GET or HEAD, one request per
//! connection, a bounded request head, a read timeout and a cap on concurrent connections, so garbage, slow
//! clients or a flood cannot stall or starve the daemon.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

pub use berth_state::client::get;

use crate::metrics;
use crate::view::{Published, StateView};

/// What the state loop publishes for the endpoint: nothing before its first decision.
pub type Feed = watch::Receiver<Option<Arc<Published>>>;

/// Largest request head accepted.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Time allowed to send the request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more wait in the accept queue.
pub const MAX_CONNECTIONS: usize = 64;

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    view: Feed,
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
                let view = view.clone();
                tokio::spawn(async move {
                    let _ = handle(stream, view).await;
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

async fn handle(mut stream: TcpStream, view: Feed) -> std::io::Result<()> {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(Some(head))) => head,
        Ok(Ok(None)) => {
            return respond(
                &mut stream,
                431,
                "text/plain",
                b"request head too large\n",
                false,
            )
            .await
        }
        Ok(Err(error)) => return Err(error),
        Err(_) => {
            return respond(&mut stream, 408, "text/plain", b"request timeout\n", false).await
        }
    };
    let request_line = head.lines().next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return respond(
            &mut stream,
            405,
            "text/plain",
            b"only GET and HEAD\n",
            false,
        )
        .await;
    }
    let path = target.split('?').next().unwrap_or_default();
    let published = view.borrow().clone();
    let snapshot = published.map_or_else(StateView::empty, |published| published.view());
    match path {
        "/health" => {
            let status = if snapshot.healthy { 200 } else { 503 };
            let body = health_body(&snapshot);
            respond(
                &mut stream,
                status,
                "text/plain",
                body.as_bytes(),
                head_only,
            )
            .await
        }
        "/state" => {
            let body = serde_json::to_vec_pretty(&snapshot).unwrap_or_default();
            respond(&mut stream, 200, "application/json", &body, head_only).await
        }
        "/metrics" => {
            respond(
                &mut stream,
                200,
                "text/plain; version=0.0.4",
                metrics::exposition(&snapshot).as_bytes(),
                head_only,
            )
            .await
        }
        _ => {
            respond(
                &mut stream,
                404,
                "text/plain",
                b"not found: try /health, /state or /metrics\n",
                head_only,
            )
            .await
        }
    }
}

/// `/health`'s text: the verdict, the state, and while not healthy what berth waits for.
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
        body.push_str(&format!("waiting={}: {}\n", waiting.step, waiting.reason));
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
