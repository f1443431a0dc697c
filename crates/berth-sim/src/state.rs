//! Reading a host's berth from the outside, as an operator would: its `/state` document and `/health` status over
//! HTTP, and a readable timeline of the states it went through.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One state on berth's timeline (the `/state` document's `timeline` entries).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct TimelineEntry {
    /// State name.
    pub state: String,
    /// Entered, in milliseconds since the daemon started.
    pub entered_ms: u64,
    /// Time spent in it so far.
    pub duration_ms: u64,
    /// Attempts made in it.
    pub attempts: u32,
}

/// The ENI part of `/state`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct EniState {
    /// ENI id.
    pub id: String,
    /// Its private address.
    pub ip: String,
    /// Its MAC.
    pub mac: String,
    /// The Linux link, once found.
    pub link: Option<String>,
}

/// The volume part of `/state`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct VolumeState {
    /// Volume id.
    pub id: String,
    /// Block device, once resolved.
    pub device: Option<String>,
    /// Mount point, once mounted.
    pub mount: Option<String>,
}

/// The volume's attachment requested alongside AttachEni (the `/state` document's `volume_request`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct VolumeRequestState {
    /// Sent, in milliseconds since the daemon started.
    pub requested_ms: u64,
    /// Answered, in milliseconds since the daemon started.
    pub answered_ms: Option<u64>,
    /// What was sent, or why not.
    pub answer: Option<String>,
}

/// The fields of berth's `/state` document the simulation reads (unknown fields are ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct BerthState {
    /// Current state name (`Claim`, ..., `Healthy`, `Failed`, `Draining`).
    pub state: String,
    /// True when `/health` answers 200.
    pub healthy: bool,
    /// The claimed broker id.
    pub broker_id: Option<u32>,
    /// The instance berth runs on.
    pub instance_id: Option<String>,
    /// Its zone.
    pub availability_zone: Option<String>,
    /// The broker ENI.
    pub eni: Option<EniState>,
    /// The broker volume.
    pub volume: Option<VolumeState>,
    /// Kafka's advertised listener, once serving.
    pub listener: Option<String>,
    /// Per-state timings.
    pub timeline: Vec<TimelineEntry>,
    /// Milliseconds from start to Healthy.
    pub time_to_healthy_ms: Option<u64>,
    /// The latest error.
    pub last_error: Option<String>,
    /// Why it failed, in Failed.
    pub failure: Option<String>,
    /// `held`, `lost` or `none`.
    pub claim: String,
    /// What the running step waits for.
    pub waiting: Option<WaitingState>,
    /// berth's process id.
    pub pid: u32,
    /// The volume's attachment requested alongside AttachEni.
    pub volume_request: Option<VolumeRequestState>,
}

/// What a waiting step waits for (the `/state` document's `waiting`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct WaitingState {
    /// The step.
    pub step: String,
    /// What it waits for.
    #[serde(rename = "for")]
    pub reason: String,
    /// For how long, in milliseconds.
    pub for_ms: u64,
}

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
pub async fn fetch_state(address: SocketAddr) -> Result<BerthState, StateError> {
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
/// attempts made, e.g. `  AttachEni   +0.41s   2.03s  (1 attempt)`; under AttachEni, the volume's request that
/// overlaps it (`    volume requested +0.42s, answered +0.47s: sent an attach to i-...`).
pub fn render_timeline(title: &str, state: &BerthState) -> String {
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
        if let (Some(request), "attach_eni") = (&state.volume_request, entry.state.as_str()) {
            let answered = request.answered_ms.map_or_else(
                || "in flight".to_owned(),
                |ms| format!("answered +{:.2}s", ms as f64 / 1000.0),
            );
            let _ = writeln!(
                out,
                "    volume requested +{:.2}s, {answered}: {}",
                request.requested_ms as f64 / 1000.0,
                request.answer.as_deref().unwrap_or("-"),
            );
        }
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
        let json = r#"{"state":"Healthy","healthy":true,"broker_id":0,"eni":{"id":"eni-1","ip":"10.0.1.100","mac":"x"},
            "timeline":[{"state":"claim","entered_ms":0,"duration_ms":120,"attempts":1},
                        {"state":"attach_eni","entered_ms":120,"duration_ms":2040,"attempts":3}],
            "volume_request":{"requested_ms":121,"answered_ms":170,"answer":"sent an attach to i-1"},
            "time_to_healthy_ms":7300,"extra":1}"#;
        let state: BerthState = serde_json::from_str(json).expect("decodes");
        let text = render_timeline("host 0", &state);
        assert!(
            text.starts_with("host 0: broker 0, ENI address 10.0.1.100, last seen Healthy"),
            "{text}"
        );
        assert!(
            text.contains("attach_eni  +  0.12s    2.04s  (3 attempts)\n    volume requested +0.12s, answered +0.17s: sent an attach to i-1\n"),
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
