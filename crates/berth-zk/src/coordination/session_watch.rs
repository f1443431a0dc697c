//! A session's fate, reported to the daemon as it happens, including the loss berth must infer itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use berth_core::ports::SessionEvent;
use tokio::sync::mpsc;
use zookeeper_client as zk;

/// Forwards one session's state changes to the daemon, tagged with its generation, until the session ends.
///
/// The server expires a session `timeout` after it last heard from the client; the client library only gives
/// up at 7/5 of that, which would leave a window where another host holds the id while this one still believes
/// it does. So berth declares the session lost itself once it has been disconnected long enough that the server
/// may have expired it: `timeout` after the last reply, i.e. 3/5 of it after Disconnected (the library reports
/// Disconnected when nothing arrived for 2/5 of the timeout, or sooner on a socket error), less one of the
/// library's ticks (1/20 of the timeout) by which it may notice the silence late. Erring early is safe:
/// the daemon re-claims, and its own claim on the old session, if still there, is replaced.
pub(super) async fn watch_session(
    mut watcher: zk::StateWatcher,
    timeout: Duration,
    generation: u64,
    events: mpsc::UnboundedSender<(u64, SessionEvent)>,
    lost: Arc<AtomicBool>,
    session_id: i64,
) {
    let mut lost_at: Option<tokio::time::Instant> = None;
    loop {
        let state = match lost_at {
            Some(at) => match tokio::time::timeout_at(at, watcher.changed()).await {
                Ok(state) => state,
                Err(_) => {
                    lost.store(true, Ordering::SeqCst);
                    tracing::warn!(
                        session = format_args!("{session_id:#x}"),
                        "disconnected long enough for the server to expire the session: claim lost"
                    );
                    let _ = events.send((generation, SessionEvent::Expired));
                    return;
                }
            },
            None => watcher.changed().await,
        };
        let event = match state {
            zk::SessionState::SyncConnected => SessionEvent::Connected,
            // Read-only servers cannot keep a claim alive: treat as lost connection.
            zk::SessionState::Disconnected | zk::SessionState::ConnectedReadOnly => {
                SessionEvent::Disconnected
            }
            // Refused credentials end the session: the claim cannot be trusted any more.
            zk::SessionState::Expired | zk::SessionState::AuthFailed => SessionEvent::Expired,
            zk::SessionState::Closed => SessionEvent::Closed,
        };
        lost_at = match event {
            SessionEvent::Disconnected => {
                lost_at.or(Some(tokio::time::Instant::now() + timeout * 11 / 20))
            }
            _ => None,
        };
        tracing::info!(
            session = format_args!("{session_id:#x}"),
            ?state,
            "ZooKeeper session state"
        );
        if events.send((generation, event)).is_err() || state.is_terminated() {
            return;
        }
    }
}
