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
