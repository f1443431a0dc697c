//! Reading a host's berth from the outside, as an operator would: its `/state` document and `/health` status over
//! HTTP, and a readable timeline of the states it went through.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use berth::view::{EniView, StateView, TimelineEntry, VolumeView};
pub use berth::waiting::WaitingView;

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

/// One HTTP/1.1 GET with `Connection: close`: the status code and body.
pub async fn http_get(address: SocketAddr, path: &str) -> Result<(u16, String), StateError> {
    let io = |source| StateError::Io {
        address,
        path: path.to_owned(),
        source,
    };
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(3), exchange)
        .await
        .map_err(|_| {
            io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no answer within 3s",
            ))
        })?
        .map_err(io)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        unchunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

fn unchunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || tail.len() < size {
            break;
        }
        out.push_str(&tail[..size]);
        rest = tail[size..].trim_start_matches("\r\n");
    }
    out
}

/// berth's `/state` at `address`.
pub async fn fetch_state(address: SocketAddr) -> Result<StateView, StateError> {
    let (_, body) = http_get(address, "/state").await?;
    serde_json::from_str(&body).map_err(|error| StateError::Decode {
        address,
        reason: format!("{error}: {body:.200}"),
    })
}

/// berth's `/health` status code at `address`.
pub async fn fetch_health(address: SocketAddr) -> Result<u16, StateError> {
    Ok(http_get(address, "/health").await?.0)
}

/// A host's timeline as aligned text: one line per state with when it was entered, how long it took and the
/// attempts made, e.g. `  attach_eni  +0.41s   2.03s  (1 attempt)`.
pub fn render_timeline(title: &str, state: &StateView) -> String {
    let mut out = String::new();
    let id = state
        .broker_id
        .map_or_else(|| "-".to_owned(), |id| id.to_string());
    let ip = state.eni.as_ref().map_or("-", |eni| eni.ip.as_str());
    let _ = writeln!(
        out,
        "{title}: broker {id}, ENI address {ip}, last seen {}",
        state.state
    );
    for entry in &state.timeline {
        let plural = if entry.attempts == 1 { "" } else { "s" };
        let _ = writeln!(
            out,
            "  {:<11} +{:>6.2}s  {:>6.2}s  ({} attempt{plural})",
            entry.state,
            entry.entered_ms as f64 / 1000.0,
            entry.duration_ms as f64 / 1000.0,
            entry.attempts,
        );
    }
    if let Some(ms) = state.time_to_healthy_ms {
        let _ = writeln!(out, "  time to Healthy: {:.2}s", ms as f64 / 1000.0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_timeline_and_reads_the_state_document() {
        let entry = |state: &str, entered_ms, duration_ms, attempts| TimelineEntry {
            state: state.into(),
            entered_ms,
            duration_ms,
            attempts,
        };
        let view = StateView {
            state: "healthy".into(),
            healthy: true,
            broker_id: Some(0),
            eni: Some(EniView {
                id: "eni-1".into(),
                ip: "10.0.1.100".into(),
                mac: "x".into(),
                link: None,
            }),
            timeline: vec![entry("claim", 0, 120, 1), entry("attach_eni", 120, 2040, 3)],
            time_to_healthy_ms: Some(7300),
            ..StateView::empty()
        };
        let mut json = serde_json::to_value(&view).expect("encodes");
        json["extra"] = 1.into();
        let state: StateView =
            serde_json::from_value(json).expect("decodes, ignoring unknown fields");
        assert_eq!(state, view);
        let text = render_timeline("host 0", &state);
        assert!(
            text.starts_with("host 0: broker 0, ENI address 10.0.1.100, last seen healthy"),
            "{text}"
        );
        assert!(
            text.contains("attach_eni  +  0.12s    2.04s  (3 attempts)"),
            "{text}"
        );
        assert!(text.contains("time to Healthy: 7.30s"), "{text}");
    }

    #[test]
    fn decodes_chunked_bodies() {
        assert_eq!(
            unchunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
    }
}
