//! The safe drain's wait, as the machine keeps it: since when it waits, when it looks again (with backoff), and
//! how the wait ended. (The terminate hook's heartbeats go on meanwhile, and through the teardown: the machine's
//! `lifecycle` module keeps them.)
//!
//! A drain that may stop Kafka right away does not wait at all; one whose check finds stopping unsafe looks
//! again with backoff until it is safe or `kafka.drain_wait` has passed, and then stops Kafka anyway (the
//! instance is going away: the terminate hook's own timeout would otherwise decide). Pure: time and jitter are
//! arguments.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::replication::{drain_verdict, DrainOutcome, DrainVerdict, StopSafety};
use crate::retry::{Jitter, RetryPolicy};

/// Backoff between safety checks: 1 s doubling to 15 s (its deadline is the wait's bound, not this one).
const CHECK_BACKOFF: RetryPolicy = RetryPolicy {
    initial: Duration::from_secs(1),
    max: Duration::from_secs(15),
    multiplier: 2.0,
    deadline: Duration::MAX,
};

/// One drain's wait for a safe stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainWait {
    /// When the drain began (time since start).
    #[serde(with = "crate::serde_duration")]
    pub since: Duration,
    /// When the wait ended, once it has.
    #[serde(default, with = "crate::serde_duration_option")]
    pub ended: Option<Duration>,
    /// Safety checks made.
    pub checks: u32,
    /// Why the last check found stopping unsafe.
    pub last: Option<String>,
    /// How it ended, once it has.
    pub outcome: Option<DrainOutcome>,
    #[serde(with = "crate::serde_duration")]
    bound: Duration,
    #[serde(default, with = "crate::serde_duration_option")]
    retry_at: Option<Duration>,
}

impl DrainWait {
    /// A wait of at most `bound` from `now`.
    pub fn begin(now: Duration, bound: Duration) -> Self {
        Self {
            since: now,
            ended: None,
            checks: 0,
            last: None,
            outcome: None,
            bound,
            retry_at: None,
        }
    }

    /// A drain that did not wait, and why.
    pub fn skipped(now: Duration, why: String) -> Self {
        let mut wait = Self::begin(now, Duration::ZERO);
        wait.end(DrainOutcome::Skipped(why), now);
        wait
    }

    /// True while the drain waits for a safe stop.
    pub fn active(&self) -> bool {
        self.ended.is_none()
    }

    /// Time waited by `now` (or in all, once ended).
    pub fn waited(&self, now: Duration) -> Duration {
        self.ended.unwrap_or(now).saturating_sub(self.since)
    }

    /// When the bound is reached.
    pub fn bound_at(&self) -> Duration {
        self.since.saturating_add(self.bound)
    }

    /// The wait's bound (`kafka.drain_wait`).
    pub fn bound(&self) -> Duration {
        self.bound
    }

    /// After a check at `now`: the outcome when Kafka may be stopped now, else `None` and the next check is
    /// scheduled (with backoff, never past the bound).
    pub fn checked(
        &mut self,
        checked: Result<&StopSafety, &str>,
        now: Duration,
        jitter: &mut Jitter,
    ) -> Option<DrainOutcome> {
        self.checks += 1;
        match drain_verdict(checked, self.waited(now), self.bound) {
            DrainVerdict::Proceed(outcome) => Some(outcome),
            DrainVerdict::Wait(why) => {
                self.last = Some(why);
                let delay = CHECK_BACKOFF.delay(self.checks, jitter);
                self.retry_at = Some((now + delay).min(self.bound_at()));
                None
            }
        }
    }

    /// The check is due at `now` (and none runs): clears the schedule, true when it is time.
    pub fn check_due(&mut self, now: Duration) -> bool {
        if self.active() && self.retry_at.is_some_and(|at| at <= now) {
            self.retry_at = None;
            return true;
        }
        false
    }

    /// Ends the wait with `outcome` at `now`.
    pub fn end(&mut self, outcome: DrainOutcome, now: Duration) {
        self.ended = Some(now);
        self.retry_at = None;
        self.outcome = Some(outcome);
    }

    /// When the machine must wake for this wait: the next check (unless one runs), the bound.
    pub fn next_wake(&self, check_running: bool) -> Option<Duration> {
        if !self.active() {
            return None;
        }
        let check = self.retry_at.filter(|_| !check_running);
        [check, Some(self.bound_at())].into_iter().flatten().min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_secs(60);

    fn unsafe_now() -> StopSafety {
        StopSafety::Unsafe {
            at_risk: vec!["events-0: 1/2".into()],
            never_safe: Vec::new(),
        }
    }

    #[test]
    fn checks_back_off_and_never_past_the_bound() {
        let mut wait = DrainWait::begin(Duration::from_secs(10), BOUND);
        let mut jitter = Jitter::new(3);
        let mut now = Duration::from_secs(10);
        let mut previous = Duration::ZERO;
        for _ in 0..5 {
            assert_eq!(wait.checked(Ok(&unsafe_now()), now, &mut jitter), None);
            let next = wait.next_wake(false).unwrap();
            assert!(next > now && next <= wait.bound_at(), "{next:?}");
            assert!(next - now >= previous / 2, "backoff grows");
            previous = next - now;
            assert!(!wait.check_due(next - Duration::from_millis(1)));
            assert!(wait.check_due(next));
            now = next;
        }
        assert_eq!(
            wait.last.as_deref().map(|l| l.contains("events-0")),
            Some(true)
        );
        let outcome = wait.checked(Ok(&unsafe_now()), wait.bound_at(), &mut jitter);
        assert!(
            matches!(outcome, Some(DrainOutcome::BoundReached(_))),
            "{outcome:?}"
        );
    }

    #[test]
    fn an_ended_wait_keeps_its_time_and_wakes_nobody() {
        let mut wait = DrainWait::begin(Duration::ZERO, BOUND);
        assert_eq!(wait.next_wake(false), Some(BOUND));
        wait.end(DrainOutcome::Safe("safe".into()), Duration::from_secs(12));
        assert_eq!(
            wait.waited(Duration::from_secs(99)),
            Duration::from_secs(12)
        );
        assert_eq!(wait.next_wake(false), None);
        let skipped = DrainWait::skipped(Duration::from_secs(3), "spot".into());
        assert!(!skipped.active());
        assert_eq!(skipped.waited(Duration::from_secs(9)), Duration::ZERO);
    }
}
