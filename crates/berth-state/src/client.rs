//! Reading a berth's health endpoint from the outside, as an operator does: one `GET` per connection
//! (`Connection: close`), the status code and the body, each bounded in time.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::StateView;

/// How long the connection, and then the whole response, may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// A `/state` or `/health` request that failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// No answer (connection refused, timeout, reset).
    #[error("GET http://{address}{path}: {source}")]
    Io {
        /// The endpoint.
        address: SocketAddr,
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The answer was not a `/state` document.
    #[error("GET http://{address}/state: not a state document: {reason}")]
    Decode {
        /// The endpoint.
        address: SocketAddr,
        /// Why.
        reason: String,
    },
}

/// Fetches `path` from the health endpoint at `address`: its status code and body.
pub async fn get(address: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let timed_out = |what: &str| std::io::Error::new(std::io::ErrorKind::TimedOut, what.to_owned());
    let mut stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(address))
        .await
        .map_err(|_| timed_out("connect timed out"))??;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut response = Vec::new();
    tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut response))
        .await
        .map_err(|_| timed_out("response timed out"))??;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// [`get`], with the endpoint and path named in its error.
async fn get_named(address: SocketAddr, path: &str) -> Result<(u16, String), StateError> {
    get(address, path).await.map_err(|source| StateError::Io {
        address,
        path: path.to_owned(),
        source,
    })
}

/// The `/state` document at `address`.
pub async fn fetch_state(address: SocketAddr) -> Result<StateView, StateError> {
    let (_, body) = get_named(address, "/state").await?;
    serde_json::from_str(&body).map_err(|error| StateError::Decode {
        address,
        reason: format!("{error}: {body:.200}"),
    })
}

/// `/health`'s status code at `address` (200 when Healthy, 503 otherwise).
pub async fn fetch_health(address: SocketAddr) -> Result<u16, StateError> {
    Ok(get_named(address, "/health").await?.0)
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A one-connection-per-answer endpoint on loopback answering every request with `status` and `body`.
    async fn answering(status: &'static str, body: String) -> SocketAddr {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut head = [0u8; 1024];
                let _ = stream.read(&mut head).await;
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            }
        });
        address
    }

    #[tokio::test]
    async fn reads_the_document_of_an_older_daemon_and_ignores_unknown_fields() {
        // What a daemon that predates the later (defaulted) fields serves, plus a field this reader lacks.
        let body = serde_json::json!({
            "version": "0.0.9", "state": "healthy", "healthy": true, "claim": "held", "broker_id": 2,
            "instance_id": "i-1", "availability_zone": "eu-west-1a", "eni": null, "route_table": 10001,
            "volume": null, "listener": null, "timeline": [], "time_to_healthy_ms": 7000, "last_error": null,
            "failure": null, "drain_reason": null, "transitions": 6, "retries": 0, "uptime_ms": 9000,
            "from_the_future": {"x": 1}
        });
        let address = answering("200 OK", body.to_string()).await;
        let state = fetch_state(address).await.expect("decodes");
        assert_eq!((state.broker_id, state.healthy), (Some(2), true));
        assert_eq!(state.waiting, None);
        assert_eq!(state.reclaim_attempts, 0);
        assert_eq!(fetch_health(address).await.expect("answers"), 200);
    }

    #[tokio::test]
    async fn names_the_endpoint_when_it_cannot_read_a_document() {
        let address = answering("503 Service Unavailable", "unhealthy\n".into()).await;
        assert_eq!(fetch_health(address).await.expect("answers"), 503);
        let error = fetch_state(address).await.unwrap_err();
        assert!(
            matches!(&error, StateError::Decode { address: at, .. } if *at == address),
            "{error}"
        );
        let closed = TcpListener::bind(("127.0.0.1", 0))
            .await
            .and_then(|listener| listener.local_addr())
            .expect("a port that was free");
        let error = fetch_state(closed).await.unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with(&format!("GET http://{closed}/state: ")),
            "{error}"
        );
    }
}
