//! What a running step waits for, reported from inside the adapter that waits.
//!
//! A step that waits (for a dying owner to let go of an ENI, for Kafka to answer Metadata, for a claim to be
//! released) knows best why it waits again; the daemon shows that reason in `/state` and the log. Threading a
//! reporter through every port method would put it into every signature, so the daemon instead runs each step
//! inside [`scope`], and an adapter calls [`report`] where it decides to wait once more. Outside a scope (a
//! test calling an adapter directly, `berth plan`) [`report`] does nothing.
//!
//! [`LogGate`] is the rule for logging such reasons: at once when the reason changes, and at most every
//! [`LOG_EVERY`] while it stays the same, so a ten-minute wait says what it waits for without flooding the
//! journal. It is pure (time is an argument) and unit-tested.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// Receives each reason a step reports.
pub type Reporter = Arc<dyn Fn(&str) + Send + Sync>;

thread_local! {
    /// The reporter of the scope being polled on this thread (set only while [`Scoped`] polls its future, so
    /// a task moved between threads finds it wherever it runs).
    static REPORTER: RefCell<Option<Reporter>> = const { RefCell::new(None) };
}

/// How often an unchanged waiting reason is logged again.
pub const LOG_EVERY: Duration = Duration::from_secs(30);

/// Reports why the running step waits (again); a no-op outside [`scope`].
pub fn report(reason: impl AsRef<str>) {
    let reporter = REPORTER
        .try_with(|current| current.borrow().clone())
        .ok()
        .flatten();
    if let Some(reporter) = reporter {
        reporter(reason.as_ref());
    }
}

/// Runs `future` with `reporter` receiving what it [`report`]s.
pub async fn scope<F: Future>(reporter: Reporter, future: F) -> F::Output {
    Scoped {
        reporter,
        future: Box::pin(future),
    }
    .await
}

/// A future polled with its reporter installed for the poll's duration (what `tokio::task_local!` does,
/// without tying the core to a runtime).
struct Scoped<F> {
    reporter: Reporter,
    future: Pin<Box<F>>,
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _installed = Installed::new(self.reporter.clone());
        self.future.as_mut().poll(cx)
    }
}

/// Installs a reporter on this thread and puts the previous one back when dropped (also on a panic).
struct Installed(Option<Reporter>);

impl Installed {
    fn new(reporter: Reporter) -> Self {
        Self(REPORTER.with(|current| current.replace(Some(reporter))))
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let previous = self.0.take();
        REPORTER.with(|current| *current.borrow_mut() = previous);
    }
}

/// Decides when a waiting reason is logged: when it differs from the last one logged, or when the same one
/// was last logged at least `every` ago.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogGate {
    every: Duration,
    last: Option<(String, Duration)>,
}

impl LogGate {
    /// A gate that repeats an unchanged reason at most every `every`.
    pub fn new(every: Duration) -> Self {
        Self { every, last: None }
    }

    /// True when `reason`, seen at `now` (any monotonic time), should be logged; remembers it if so.
    pub fn admit(&mut self, reason: &str, now: Duration) -> bool {
        let due = match &self.last {
            Some((last, at)) if last == reason => now >= *at + self.every,
            _ => true,
        };
        if due {
            self.last = Some((reason.to_owned(), now));
        }
        due
    }

    /// Forgets the last reason (the wait is over; the next reason is news).
    pub fn reset(&mut self) {
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn a_changed_reason_is_logged_at_once_an_unchanged_one_every_period() {
        let mut gate = LogGate::new(Duration::from_secs(30));
        let at = Duration::from_secs;
        assert!(gate.admit("owner i-1 is running", at(0)));
        assert!(!gate.admit("owner i-1 is running", at(10)));
        assert!(!gate.admit("owner i-1 is running", at(29)));
        assert!(gate.admit("owner i-1 is running", at(30)));
        assert!(!gate.admit("owner i-1 is running", at(59)));
        assert!(gate.admit("owner i-1 is shutting-down", at(60)));
        assert!(gate.admit("owner i-1 is running", at(61)));
        gate.reset();
        assert!(gate.admit("owner i-1 is running", at(62)));
    }

    /// Pending once, then ready: a suspension point, as an adapter's await is.
    struct YieldOnce(bool);

    impl Future for YieldOnce {
        type Output = ();

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if std::mem::replace(&mut self.0, true) {
                return Poll::Ready(());
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    /// Polls `future` to completion on this thread, between polls outside its scope.
    fn block_on<F: Future>(future: F) -> F::Output {
        let mut future = Box::pin(future);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        loop {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
            report("between polls: dropped");
        }
    }

    #[test]
    fn reports_reach_the_scope_and_nothing_else() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let reporter: Reporter =
            Arc::new(move |reason| sink.lock().unwrap().push(reason.to_owned()));
        let other: Reporter = Arc::new(|reason| panic!("reached the wrong scope: {reason}"));
        report("outside: dropped");
        block_on(scope(reporter, async {
            report("first");
            YieldOnce(false).await;
            report("second");
            // A nested scope has its own reporter, and the outer one is back after it.
            scope(Arc::new(|_: &str| {}), async { report("inner") }).await;
            report("third");
        }));
        block_on(scope(other, async {}));
        report("after: dropped");
        assert_eq!(*seen.lock().unwrap(), ["first", "second", "third"]);
    }
}
