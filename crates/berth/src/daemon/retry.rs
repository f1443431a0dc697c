//! The one retry policy for what the daemon sends on its own, outside the steps: teardown actions and
//! deliveries. A call that fails retryably is tried again after the core's jittered backoff ([`BACKOFF`]) until
//! it succeeds, fails for good, or reaches its [`Bound`]; only the bound differs by use.

use std::future::Future;
use std::time::Duration;

use berth_core::ports::Deadline;
use berth_core::retry::{stable_hash, Jitter, RetryPolicy};
use berth_core::StepError;

/// Backoff between attempts: 0.5 s doubling to 10 s, equal jitter. Its deadline is unused: the [`Bound`] rules.
pub(super) const BACKOFF: RetryPolicy = RetryPolicy {
    initial: Duration::from_millis(500),
    max: Duration::from_secs(10),
    multiplier: 2.0,
    deadline: Duration::MAX,
};

/// How far a retried call goes.
#[derive(Debug, Clone, Copy)]
pub(super) enum Bound {
    /// At most this many attempts.
    Attempts(u32),
    /// Attempts until the deadline (a pause never runs past it).
    Until(Deadline),
}

impl Bound {
    /// Whether another attempt may follow attempt number `attempt`.
    fn allows_after(self, attempt: u32) -> bool {
        match self {
            Bound::Attempts(attempts) => attempt < attempts,
            Bound::Until(deadline) => !deadline.expired(),
        }
    }

    /// The pause before the next attempt, kept within the bound.
    fn pause(self, delay: Duration) -> Duration {
        match self {
            Bound::Attempts(_) => delay,
            Bound::Until(deadline) => delay.min(deadline.remaining()),
        }
    }
}

/// Calls `call` until it succeeds, fails for good, or `bound` is reached, pausing [`BACKOFF`] (jitter seeded by
/// `what`) between retryable failures; `on_retry` hears each failure that is retried, with the attempt's number
/// and the pause.
pub(super) async fn retrying<T, F, Fut>(
    what: &str,
    bound: Bound,
    call: F,
    on_retry: impl FnMut(&StepError, u32, Duration),
) -> Result<T, StepError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StepError>>,
{
    retrying_with(&BACKOFF, what, bound, call, on_retry).await
}

/// [`retrying`] with another backoff (tests).
async fn retrying_with<T, F, Fut>(
    backoff: &RetryPolicy,
    what: &str,
    bound: Bound,
    mut call: F,
    mut on_retry: impl FnMut(&StepError, u32, Duration),
) -> Result<T, StepError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StepError>>,
{
    let mut jitter = Jitter::new(stable_hash(what));
    let mut attempt = 0;
    loop {
        attempt += 1;
        match call().await {
            Err(error) if error.is_retryable() && bound.allows_after(attempt) => {
                let pause = bound.pause(backoff.delay(attempt, &mut jitter));
                on_retry(&error, attempt, pause);
                tokio::time::sleep(pause).await;
            }
            outcome => return outcome,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::ErrorKind;
    use std::cell::Cell;

    /// [`BACKOFF`]'s shape in milliseconds, so the tests take no time to speak of.
    const QUICK: RetryPolicy = RetryPolicy {
        initial: Duration::from_millis(2),
        max: Duration::from_millis(8),
        multiplier: 2.0,
        deadline: Duration::MAX,
    };

    fn throttled() -> StepError {
        StepError::new(ErrorKind::Retryable, "throttled")
    }

    /// Retries a call that always answers `answer`, within `bound`: the result, the calls made and the pauses.
    async fn always(
        bound: Bound,
        answer: Result<u8, StepError>,
    ) -> (Result<u8, StepError>, u32, Vec<Duration>) {
        let calls = Cell::new(0);
        let mut pauses = Vec::new();
        let result = retrying_with(
            &QUICK,
            "x",
            bound,
            || {
                calls.set(calls.get() + 1);
                let answer = answer.clone();
                async move { answer }
            },
            |_, _, pause| pauses.push(pause),
        )
        .await;
        (result, calls.get(), pauses)
    }

    #[tokio::test]
    async fn attempts_bound_the_calls_and_the_last_error_is_returned() {
        let (result, calls, pauses) = always(Bound::Attempts(5), Err(throttled())).await;
        assert_eq!((result, calls), (Err(throttled()), 5));
        assert_eq!(
            pauses.len(),
            4,
            "a pause between attempts, none after the last"
        );
        for (index, pause) in pauses.iter().enumerate() {
            let base = (2.0 * 2f64.powi(index as i32)).min(8.0);
            let ms = pause.as_secs_f64() * 1000.0;
            assert!(ms >= base / 2.0 - 1e-6 && ms <= base + 1e-6, "{pauses:?}");
        }
    }

    #[tokio::test]
    async fn a_fatal_error_or_a_success_ends_at_once() {
        let fatal = StepError::new(ErrorKind::Fatal, "refused");
        let (result, calls, _) = always(Bound::Attempts(5), Err(fatal.clone())).await;
        assert_eq!((result, calls), (Err(fatal), 1));
        let (result, calls, _) = always(Bound::Attempts(5), Ok(7)).await;
        assert_eq!((result, calls), (Ok(7), 1));
    }

    #[tokio::test]
    async fn a_deadline_bounds_the_retries_and_no_pause_passes_it() {
        let deadline = Deadline::after(Duration::from_millis(50));
        let (result, calls, pauses) = always(Bound::Until(deadline), Err(throttled())).await;
        assert_eq!(result, Err(throttled()));
        assert!(deadline.expired(), "retried until the deadline");
        assert!(calls >= 4, "{calls} calls");
        assert!(pauses
            .iter()
            .all(|pause| *pause <= Duration::from_millis(8)));
    }
}
