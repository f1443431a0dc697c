//! Where berth is and what it waits for, in one line: systemd's `STATUS=`, and the progress lines of
//! `berth status --watch` and `berth drain`. Computed from the `/state` view, so the daemon and the commands that
//! read `/state` say the same thing.
//!
//! The line leaves out how long berth has waited, so that it changes only when what berth waits for changes (a
//! new reason, another catch-up count, another drain check); the duration is `/state`'s (`waiting.for_ms`).

use berth_state::StateView;

/// The longest line: systemd shows `STATUS=` on one line of `systemctl status`.
const MAX_CHARS: usize = 300;

/// The view in one line: `start_kafka broker 1: catching up: 3 of 12 hosted partitions not yet in sync: ...`,
/// `attach_eni broker 1: waiting: eni-...: attached to i-... (running)`, `healthy broker 1`, `failed broker 1: ...`.
pub fn one_line(view: &StateView) -> String {
    let id = view
        .broker_id
        .map(|id| format!(" broker {id}"))
        .unwrap_or_default();
    let head = format!("{}{id}", view.state);
    let detail = detail(view);
    let line = match detail {
        Some(detail) => format!("{head}: {detail}"),
        None => head,
    };
    shortened(line)
}

/// What the state is about now, if anything beyond its name.
fn detail(view: &StateView) -> Option<String> {
    if let Some(failure) = &view.failure {
        return Some(failure.clone());
    }
    if view.claim_lost_ms.is_some() {
        let attempt = view.reclaim_attempts;
        return Some(format!(
            "claim lost, re-claiming (attempt {attempt}); Kafka keeps running"
        ));
    }
    if let Some(wait) = view.drain_wait.as_ref().filter(|wait| wait.waiting) {
        let why = wait
            .unsafe_because
            .as_deref()
            .unwrap_or("checking replicas");
        return Some(format!(
            "waiting for a safe stop (check {}): {why}",
            wait.checks
        ));
    }
    let catching_up = view.state == "start_kafka"
        && view
            .catch_up
            .as_ref()
            .is_some_and(|progress| !progress.caught_up());
    if let (true, Some(progress)) = (catching_up, &view.catch_up) {
        return Some(format!("catching up: {progress}"));
    }
    view.waiting.as_ref().map(|waiting| {
        if waiting.step == view.state {
            format!("waiting: {}", waiting.reason)
        } else {
            format!("{} waiting: {}", waiting.step, waiting.reason)
        }
    })
}

/// The lines worth printing while following a daemon: each new [`one_line`], and the first of a run of failed
/// reads (a berth restarting after an upgrade does not answer for a moment).
#[derive(Debug, Default)]
pub struct Changes {
    last: Option<String>,
}

impl Changes {
    /// The line for `view`, when it differs from the last one printed.
    pub fn view(&mut self, view: &StateView) -> Option<String> {
        self.changed(one_line(view))
    }

    /// The line for a failed read, when the last one printed was not the same failure.
    pub fn unreachable(&mut self, error: &dyn std::fmt::Display) -> Option<String> {
        self.changed(format!("not answering: {error}"))
    }

    fn changed(&mut self, line: String) -> Option<String> {
        (self.last.as_ref() != Some(&line)).then(|| {
            self.last = Some(line.clone());
            line
        })
    }
}

fn shortened(line: String) -> String {
    match line.char_indices().nth(MAX_CHARS) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use berth_core::replication::CatchUpProgress;

    use super::*;
    use berth_state::{DrainWaitView, WaitingView};

    fn view(state: &str) -> StateView {
        let mut view = StateView::empty();
        view.state = state.into();
        view.broker_id = Some(1);
        view
    }

    fn waiting(step: &str, reason: &str) -> Option<WaitingView> {
        Some(WaitingView {
            step: step.into(),
            reason: reason.into(),
            for_ms: 42_000,
        })
    }

    #[test]
    fn a_wait_says_what_it_waits_for_without_its_duration() {
        let mut attaching = view("attach_eni");
        attaching.waiting = waiting("attach_eni", "eni-1: attached to i-2 (running)");
        assert_eq!(
            one_line(&attaching),
            "attach_eni broker 1: waiting: eni-1: attached to i-2 (running)"
        );
        attaching.waiting.as_mut().unwrap().for_ms = 43_000;
        assert_eq!(
            one_line(&attaching),
            "attach_eni broker 1: waiting: eni-1: attached to i-2 (running)",
            "the same wait a second later is the same line"
        );
        let mut claiming = StateView::empty();
        claiming.state = "claim".into();
        claiming.waiting = waiting("claim", "every candidate id is held");
        assert_eq!(
            one_line(&claiming),
            "claim: waiting: every candidate id is held"
        );
        assert_eq!(one_line(&view("healthy")), "healthy broker 1");
    }

    #[test]
    fn a_catch_up_carries_its_counts() {
        let mut starting = view("start_kafka");
        starting.waiting = waiting("catch_up", "3 of 12 hosted partitions not yet in sync");
        starting.catch_up = Some(CatchUpProgress {
            hosted: 12,
            behind: vec!["orders-0".into(), "orders-3".into(), "orders-5".into()],
            leaderless: Vec::new(),
            cannot_judge: Vec::new(),
        });
        assert_eq!(
            one_line(&starting),
            "start_kafka broker 1: catching up: 3 of 12 hosted partitions not yet in sync: orders-0, orders-3, \
             orders-5"
        );
        starting.catch_up = Some(CatchUpProgress {
            hosted: 12,
            behind: Vec::new(),
            leaderless: Vec::new(),
            cannot_judge: Vec::new(),
        });
        starting.waiting = None;
        assert_eq!(one_line(&starting), "start_kafka broker 1");
    }

    #[test]
    fn a_follower_prints_only_what_changed() {
        let mut changes = Changes::default();
        let mut attaching = view("attach_eni");
        attaching.waiting = waiting("attach_eni", "attaching");
        assert_eq!(
            changes.view(&attaching).as_deref(),
            Some("attach_eni broker 1: waiting: attaching")
        );
        attaching.waiting.as_mut().unwrap().for_ms += 1_000;
        assert_eq!(changes.view(&attaching), None);
        let refused = "connection refused";
        assert_eq!(
            changes.unreachable(&refused).as_deref(),
            Some("not answering: connection refused")
        );
        assert_eq!(changes.unreachable(&refused), None);
        assert_eq!(
            changes.view(&view("healthy")).as_deref(),
            Some("healthy broker 1")
        );
    }

    #[test]
    fn failures_lost_claims_and_drain_waits_come_first() {
        let mut failed = view("failed");
        failed.failure = Some("mount: volume holds another broker's data".into());
        failed.waiting = waiting("mount", "ignored");
        assert_eq!(
            one_line(&failed),
            "failed broker 1: mount: volume holds another broker's data"
        );
        let mut lost = view("healthy");
        lost.claim_lost_ms = Some(5_000);
        lost.reclaim_attempts = 3;
        assert_eq!(
            one_line(&lost),
            "healthy broker 1: claim lost, re-claiming (attempt 3); Kafka keeps running"
        );
        let mut draining = view("draining");
        draining.drain_wait = Some(DrainWaitView {
            waiting: true,
            waited_ms: 9_000,
            bound_ms: 300_000,
            checks: 4,
            unsafe_because: Some(
                "orders-0 would have 1 in sync, below min.insync.replicas 2".into(),
            ),
            outcome: None,
        });
        assert_eq!(
            one_line(&draining),
            "draining broker 1: waiting for a safe stop (check 4): orders-0 would have 1 in sync, below \
             min.insync.replicas 2"
        );
        let mut long = view("attach_ebs");
        long.waiting = waiting("attach_ebs", &"x".repeat(1_000));
        assert_eq!(one_line(&long).chars().count(), MAX_CHARS + 1);
    }
}
