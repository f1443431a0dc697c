//! What berth waits for right now: the last retryable reason of the running step, kept for `/state` and logged
//! as the rule in [`berth_core::progress::LogGate`] says (at info when it changes, at most every 30 s while it
//! stays the same).
//!
//! Reasons arrive from two places: an adapter that decides to wait again reports why through
//! [`berth_core::progress`] while its step runs, and a step that failed with a retryable error leaves its error
//! as the reason until the retry. Both go through [`WaitingBoard::set`], so `/state` and the journal agree.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use berth_core::progress::{LogGate, Reporter, LOG_EVERY};
use berth_core::{State, StepKind};
pub use berth_state::WaitingView;

#[derive(Debug)]
struct Current {
    step: StepKind,
    reason: String,
    since: Instant,
}

#[derive(Debug)]
struct Board {
    current: Option<Current>,
    gate: LogGate,
    origin: Instant,
}

/// The shared record of what the daemon waits for; cheap to clone.
#[derive(Debug, Clone)]
pub struct WaitingBoard {
    board: Arc<Mutex<Board>>,
    /// Woken when the reason changes (the daemon then brings systemd's STATUS= up to date).
    changed: Arc<Notify>,
}

impl Default for WaitingBoard {
    fn default() -> Self {
        Self {
            board: Arc::new(Mutex::new(Board {
                current: None,
                gate: LogGate::new(LOG_EVERY),
                origin: Instant::now(),
            })),
            changed: Arc::new(Notify::new()),
        }
    }
}

impl WaitingBoard {
    /// `step` waits for `reason` (again): remembered, and logged when the gate admits it.
    pub fn set(&self, step: StepKind, reason: &str, state: State) {
        let mut board = self.lock();
        let now = Instant::now();
        let unchanged = board
            .current
            .as_ref()
            .is_some_and(|current| current.step == step && current.reason == reason);
        if !unchanged {
            board.current = Some(Current {
                step,
                reason: reason.to_owned(),
                since: now,
            });
            self.changed.notify_one();
        }
        let since = board.current.as_ref().map_or(now, |current| current.since);
        let at = now.saturating_duration_since(board.origin);
        if board.gate.admit(&format!("{step}: {reason}"), at) {
            let waited_ms = millis(now.saturating_duration_since(since));
            tracing::info!(
                berth_state = state.name(),
                berth_step = step.name(),
                berth_waiting_for = reason,
                berth_waited_ms = waited_ms,
                "waiting: {reason}"
            );
        }
    }

    /// `step` no longer waits (it succeeded, or it was given up).
    pub fn clear(&self, step: StepKind) {
        let mut board = self.lock();
        if board
            .current
            .as_ref()
            .is_some_and(|current| current.step == step)
        {
            board.current = None;
            board.gate.reset();
            self.changed.notify_one();
        }
    }

    /// A reporter for a step's adapters ([`berth_core::progress::scope`]).
    pub fn reporter(&self, step: StepKind, state: State) -> Reporter {
        let board = self.clone();
        Arc::new(move |reason: &str| board.set(step, reason, state))
    }

    /// The current reason with its live duration.
    pub fn view(&self) -> Option<WaitingView> {
        let board = self.lock();
        board.current.as_ref().map(|current| WaitingView {
            step: current.step.name().to_owned(),
            reason: current.reason.clone(),
            for_ms: millis(current.since.elapsed()),
        })
    }

    /// Returns once the reason has changed (set to another, or cleared) since the last return.
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Board> {
        self.board
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ATTACH_ENI: StepKind = StepKind::Boot(State::AttachEni);

    #[test]
    fn keeps_the_last_reason_with_the_time_it_was_first_seen() {
        let board = WaitingBoard::default();
        assert_eq!(board.view(), None);
        board.set(
            ATTACH_ENI,
            "eni-1 is attached to i-2 which is running",
            State::AttachEni,
        );
        let first = board.view().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        board.set(
            ATTACH_ENI,
            "eni-1 is attached to i-2 which is running",
            State::AttachEni,
        );
        let again = board.view().unwrap();
        assert_eq!(again.reason, first.reason);
        assert!(again.for_ms >= 20, "the duration is live: {again:?}");
        board.set(ATTACH_ENI, "eni-1: attaching", State::AttachEni);
        assert!(
            board.view().unwrap().for_ms < 20,
            "a new reason starts over"
        );
        board.clear(StepKind::Boot(State::Route));
        assert!(board.view().is_some(), "another step's clear leaves it");
        board.clear(ATTACH_ENI);
        assert_eq!(board.view(), None);
    }
}
