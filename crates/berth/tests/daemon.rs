//! The daemon loop over in-process adapters: Claim to Healthy, systemd notifications on a real unix datagram
//! socket, the health endpoint on a real TCP port, retries, Kafka loss and return, claim expiry and re-claim,
//! a real SIGTERM that stops berth and leaves the broker, a drain request, a restart that adopts a serving
//! Kafka, a failure that lets go and reports, and `/state` saying what a step waits for.

use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth::daemon::{DaemonExit, DaemonOptions, Request};
use berth::notify::Notifier;
use berth::view::StateView;
use berth_core::machine::CatchUpGate;
use berth_core::ports::DrainReason;
use berth_core::replication::DrainOutcome;
use berth_core::{BrokerId, ErrorKind};
use berth_testkit::fixtures;
use berth_testkit::inprocess::InProcessWorld;
use berth_testkit::BOOT_STATE_NAMES;
use tokio::sync::{mpsc, watch};

/// Reads `read` every 10 ms until `done` holds for what it returns, within 10 s.
async fn wait_for<T: std::fmt::Debug>(
    what: &str,
    read: impl AsyncFn() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let value = read().await;
        if done(&value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; got {value:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Collects systemd notifications from a real unix datagram socket on a thread, as systemd would.
#[derive(Clone)]
struct Notifications(Arc<std::sync::Mutex<Vec<String>>>);

impl Notifications {
    fn listen(socket: UnixDatagram) -> Self {
        let messages = Self(Arc::default());
        let sink = messages.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(read) = socket.recv(&mut buffer) {
                sink.0
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buffer[..read]).into_owned());
            }
        });
        messages
    }

    /// Waits until `done` holds for the messages so far, within a deadline.
    async fn wait(&self, what: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        wait_for(
            what,
            async || self.0.lock().unwrap().clone(),
            |messages| done(messages),
        )
        .await
    }
}

struct Running {
    world: InProcessWorld,
    health: std::net::SocketAddr,
    requests: mpsc::Sender<Request>,
    notify: Notifications,
    daemon: tokio::task::JoinHandle<DaemonExit>,
    _dir: tempfile::TempDir,
}

async fn start(world: InProcessWorld, check_interval: Duration) -> Running {
    start_with(world, check_interval, |_| {}).await
}

/// As [`start`], with the machine's settings adjusted by `adjust`.
async fn start_with(
    world: InProcessWorld,
    check_interval: Duration,
    adjust: impl FnOnce(&mut berth_core::Settings),
) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let notify = Notifications::listen(UnixDatagram::bind(&socket_path).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let health = listener.local_addr().unwrap();
    let (view_tx, view_rx) = watch::channel(None);
    let endpoint = berth::health::Endpoint::new(view_rx);
    tokio::spawn(berth::health::serve(
        listener,
        berth::health::Listener::Local,
        endpoint.clone(),
        std::future::pending(),
    ));
    let adapters = world.adapters();
    let mut settings = fixtures::settings(Duration::from_secs(30));
    settings.check_interval = check_interval;
    settings.unhealthy_after = Duration::from_millis(300);
    adjust(&mut settings);
    let options = DaemonOptions {
        settings,
        broker_ids: (0..3).map(berth_core::BrokerId).collect(),
        termination_poll: Duration::from_millis(50),
        stop_timeout: Duration::from_secs(5),
        teardown_timeout: Duration::from_secs(5),
        jitter_seed: 1,
        metrics: endpoint.metrics.clone(),
        claims: berth::metrics::Service::Zookeeper,
    };
    let (requests, requests_rx) = mpsc::channel(4);
    let notifier = Notifier::to_socket(&socket_path, Some(Duration::from_millis(200)));
    let daemon = tokio::spawn(berth::daemon::run(
        options,
        adapters,
        notifier,
        requests_rx,
        view_tx,
    ));
    Running {
        world,
        health,
        requests,
        notify,
        daemon,
        _dir: dir,
    }
}

/// The daemon's exit, within a deadline.
async fn ended(daemon: tokio::task::JoinHandle<DaemonExit>) -> DaemonExit {
    tokio::time::timeout(Duration::from_secs(20), daemon)
        .await
        .expect("the daemon exits in time")
        .expect("the daemon task completes")
}

/// Boots a world whose `step` fails fatally; the daemon must exit Failed. Returns the calls it made.
async fn journal_after_fatal(step: &str) -> Vec<String> {
    let world = InProcessWorld::new(3);
    world.fail(step, 1, ErrorKind::Fatal);
    let running = start(world, Duration::from_secs(3600)).await;
    let exit = ended(running.daemon).await;
    assert_eq!(exit, DaemonExit::Failed);
    running.world.journal()
}

/// Polls `/state` until `accept` holds, within a deadline.
async fn wait_state(
    health: std::net::SocketAddr,
    what: &str,
    accept: impl Fn(&StateView) -> bool,
) -> StateView {
    let read = async || {
        let (code, body) = berth::health::get(health, "/state").await.unwrap();
        assert_eq!(code, 200);
        serde_json::from_str::<StateView>(&body).unwrap()
    };
    wait_for(what, read, accept).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boots_to_healthy_notifies_systemd_and_serves_health() {
    let world = InProcessWorld::new(3);
    world.fail("attach_volume", 2, ErrorKind::Retryable);
    let running = start(world, Duration::from_secs(3600)).await;

    let (code, _) = berth::health::get(running.health, "/health").await.unwrap();
    assert_eq!(code, 503, "not healthy before Healthy");

    let view = wait_state(running.health, "healthy", |v| v.healthy).await;
    let (code, body) = berth::health::get(running.health, "/health").await.unwrap();
    assert_eq!((code, body.trim()), (200, "ok\nstate=healthy"));
    assert_eq!(view.state, "healthy");
    assert_eq!(
        view.broker_id,
        Some(0),
        "the only id in this instance's zone"
    );
    assert_eq!(view.claim, "held");
    assert_eq!(view.eni.as_ref().map(|e| e.ip.as_str()), Some("10.0.0.100"));
    assert_eq!(
        view.eni.as_ref().and_then(|e| e.link.as_deref()),
        Some("ens6")
    );
    assert_eq!(
        view.volume.as_ref().and_then(|v| v.mount.as_deref()),
        Some("/var/lib/kafka")
    );
    assert_eq!(view.route_table, Some(10_001));
    let states: Vec<&str> = view.timeline.iter().map(|t| t.state.as_str()).collect();
    assert_eq!(states, BOOT_STATE_NAMES);
    let attach_ebs = view
        .timeline
        .iter()
        .find(|t| t.state == "attach_ebs")
        .unwrap();
    assert_eq!(attach_ebs.attempts, 3, "two planned failures, then success");
    assert_eq!(view.retries, 2);
    assert!(view.time_to_healthy_ms.is_some());

    systemd_heard_ready_each_state_and_the_watchdog(&running.notify).await;
    let (code, metrics) = berth::health::get(running.health, "/metrics")
        .await
        .unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics.contains("berth_state{state=\"healthy\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("berth_healthy 1"));
    assert!(metrics.contains("berth_retries_total 2"));
    assert!(
        metrics.contains("berth_call_errors_total{service=\"aws\",kind=\"retryable\"} 2"),
        "AttachEbs' two failures counted against AWS: {metrics}"
    );

    let journal = running.world.journal();
    assert!(
        journal.contains(&"signal_stack:success".to_owned())
            && journal.contains(&"complete_launch:continue".to_owned()),
        "CloudFormation and the launch hook are each told: {journal:?}"
    );
    assert_eq!(
        journal
            .iter()
            .filter(|c| c.starts_with("attach_volume"))
            .count(),
        3
    );
    let _ = running
        .requests
        .send(Request::Drain(DrainReason::Requested))
        .await;
    assert_eq!(running.daemon.await.unwrap(), DaemonExit::Drained);
}

/// systemd heard READY first, then status lines through the states in order (one per state, more while a step
/// waits and its reason changes) until `healthy broker 0`, and the watchdog pinged.
async fn systemd_heard_ready_each_state_and_the_watchdog(notify: &Notifications) {
    let messages = notify
        .wait("STATUS=healthy", |m| {
            m.iter().any(|m| m.contains("STATUS=healthy"))
        })
        .await;
    assert!(
        messages[0].starts_with("READY=1\n"),
        "READY first: {messages:?}"
    );
    let mut statuses: Vec<&str> = messages
        .iter()
        .filter_map(|m| m.strip_prefix("STATUS="))
        .map(|line| line.split(':').next().unwrap_or_default())
        .collect();
    statuses.dedup();
    assert_eq!(
        statuses,
        [
            "attach_eni broker 0",
            "route broker 0",
            "attach_ebs broker 0",
            "mount broker 0",
            "start_kafka broker 0",
            "healthy broker 0"
        ]
    );
    let watchdog = notify
        .wait("WATCHDOG=1", |m| m.iter().any(|m| m == "WATCHDOG=1"))
        .await;
    assert!(
        watchdog.contains(&"WATCHDOG=1".to_owned()),
        "watchdog pinged from the loop"
    );
}

/// The calls after Kafka was started, without the routine ones (checks, signals, heartbeats).
fn after_start(journal: &[String]) -> Vec<&str> {
    let start = journal
        .iter()
        .position(|c| c.starts_with("start_kafka"))
        .expect("Kafka was started");
    journal[start..]
        .iter()
        .map(|c| c.split(':').next().unwrap())
        .filter(|c| {
            !matches!(
                *c,
                "check" | "signal_stack" | "complete_launch" | "start_kafka" | "heartbeat"
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_berth_and_leaves_the_broker_in_place() {
    let running = start(InProcessWorld::new(3), Duration::from_millis(50)).await;
    wait_state(running.health, "healthy", |v| v.healthy).await;
    // A real SIGTERM through the handler the binary installs: SIGTERM is a stop, not a drain.
    let (signal_tx, mut signal_rx) = mpsc::channel(1);
    let forward = running.requests.clone();
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        let _ = signal_tx.send(()).await;
        term.recv().await;
        let _ = forward.send(Request::Stop).await;
    });
    signal_rx.recv().await;
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM).unwrap();
    let exit = ended(running.daemon).await;
    assert_eq!(exit, DaemonExit::Stopped);
    let journal = running.world.journal();
    assert_eq!(
        after_start(&journal),
        Vec::<&str>::new(),
        "nothing stopped, unmounted, detached or released: {journal:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_berth_adopts_the_serving_kafka_without_starting_it() {
    let world = InProcessWorld::new(3);
    world.set_kafka_running(true);
    let running = start(world, Duration::from_millis(50)).await;
    let view = wait_state(running.health, "healthy", |v| v.healthy).await;
    assert_eq!(view.broker_id, Some(0));
    let journal = running.world.journal();
    assert!(
        !journal.iter().any(|c| c.starts_with("start_kafka")),
        "a serving Kafka is adopted, not started again: {journal:?}"
    );
    let _ = running.requests.send(Request::Stop).await;
    assert_eq!(running.daemon.await.unwrap(), DaemonExit::Stopped);
}

/// The teardown a drain runs after Kafka was started, in order.
const DRAIN_ORDER: [&str; 6] = [
    "stop_kafka",
    "unmount",
    "remove_routes",
    "detach_volume",
    "detach_eni",
    "release_claim",
];

/// Boots to Healthy, plans `failures` (operation, times; retryable), asks for a drain and waits for the exit.
/// Returns the exit, the calls after Kafka's start (see [`after_start`]) and systemd's notifications.
async fn drain_after(failures: &[(&str, u32)]) -> (DaemonExit, Vec<String>, Notifications) {
    let running = start(InProcessWorld::new(3), Duration::from_secs(3600)).await;
    wait_state(running.health, "healthy", |v| v.healthy).await;
    for (operation, times) in failures {
        running.world.fail(operation, *times, ErrorKind::Retryable);
    }
    let _ = running
        .requests
        .send(Request::Drain(DrainReason::Requested))
        .await;
    let exit = ended(running.daemon).await;
    let journal = running.world.journal();
    let calls = after_start(&journal)
        .into_iter()
        .map(str::to_owned)
        .collect();
    (exit, calls, running.notify)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_request_releases_in_order_and_exits() {
    let (exit, calls, notify) = drain_after(&[]).await;
    assert_eq!(exit, DaemonExit::Drained);
    assert_eq!(calls, DRAIN_ORDER);
    let messages = notify
        .wait("STOPPING=1", |m| m.iter().any(|m| m == "STOPPING=1"))
        .await;
    assert!(messages.contains(&"STOPPING=1".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_step_that_fails_retryably_is_retried_not_skipped() {
    // Throttled three times, as the SDK gives up after its own three attempts: the volume must still be detached
    // before the ENI, the claim and the exit.
    let (exit, calls, _) = drain_after(&[("detach_volume", 3)]).await;
    assert_eq!(exit, DaemonExit::Drained);
    let mut expected = DRAIN_ORDER.to_vec();
    expected.splice(3..3, ["detach_volume"; 3]);
    assert_eq!(calls, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_whose_unmount_fails_stops_before_the_eni_and_the_claim_and_says_so() {
    let running = start(InProcessWorld::new(3), Duration::from_secs(3600)).await;
    wait_state(running.health, "healthy", |v| v.healthy).await;
    running.world.fail("unmount", 1, ErrorKind::Fatal);
    let _ = running
        .requests
        .send(Request::Drain(DrainReason::LifecycleTerminated))
        .await;
    let exit = ended(running.daemon).await;
    assert_eq!(exit, DaemonExit::Drained);
    let journal = running.world.journal();
    // The mount may remain: neither the ENI nor the claim is let go; Auto Scaling is still told.
    assert_eq!(
        after_start(&journal),
        ["stop_kafka", "unmount", "complete_termination"]
    );
    let state = wait_state(running.health, "the stop in /state", |v| {
        v.last_error.is_some()
    })
    .await;
    let said = state.last_error.unwrap();
    assert!(
        said.contains("teardown stopped at unmount")
            && said.contains("remove_routes, detach_volume, detach_eni, release_claim"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_lets_go_of_everything_reports_last_and_exits_non_zero() {
    let journal = journal_after_fatal("start_kafka").await;
    assert!(
        journal.contains(&"signal_stack:failure:start_kafka: in-process start_kafka failure (planned by the test)".to_owned()),
        "{journal:?}"
    );
    assert_eq!(
        after_start(&journal),
        [&DRAIN_ORDER[..], &["report_failure"]].concat()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_volume_is_left_untouched_when_letting_go() {
    let journal = journal_after_fatal("mount").await;
    let mount = journal.iter().position(|c| c.starts_with("mount")).unwrap();
    let after: Vec<&str> = journal[mount + 1..]
        .iter()
        .map(|c| c.split(':').next().unwrap())
        .filter(|c| *c != "signal_stack")
        .collect();
    assert_eq!(
        after,
        [
            "remove_routes",
            "detach_eni",
            "release_claim",
            "report_failure"
        ],
        "neither unmounted nor detached: {journal:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_loss_turns_503_marks_unhealthy_and_recovers() {
    let running = start(InProcessWorld::new(3), Duration::from_millis(50)).await;
    wait_state(running.health, "healthy", |v| v.healthy).await;
    running.world.set_kafka_down(true);
    wait_state(running.health, "503 after a failed check", |v| {
        !v.healthy && v.state == "healthy"
    })
    .await;
    let (code, _) = berth::health::get(running.health, "/health").await.unwrap();
    assert_eq!(code, 503);
    wait_for(
        "SetInstanceHealth",
        async || running.world.journal(),
        |journal| journal.iter().any(|c| c == "mark_unhealthy"),
    )
    .await;
    running.world.set_kafka_down(false);
    wait_state(running.health, "200 again", |v| v.healthy).await;
    assert_eq!(
        running
            .world
            .journal()
            .iter()
            .filter(|c| *c == "mark_unhealthy")
            .count(),
        1
    );
    let _ = running
        .requests
        .send(Request::Drain(DrainReason::Requested))
        .await;
    running.daemon.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expiry_reclaims_and_lifecycle_termination_drains() {
    let running = start(InProcessWorld::new(3), Duration::from_millis(50)).await;
    wait_state(running.health, "healthy", |v| v.healthy).await;
    running.world.expire_session();
    wait_for(
        "a reclaim after expiry",
        async || running.world.journal(),
        |journal| journal.iter().any(|c| c == "reclaim:0"),
    )
    .await;
    let view = wait_state(running.health, "healthy again", |v| {
        v.healthy && v.claim == "held"
    })
    .await;
    assert_eq!(view.broker_id, Some(0));
    running
        .world
        .announce_termination(DrainReason::LifecycleTerminated);
    let exit = ended(running.daemon).await;
    assert_eq!(exit, DaemonExit::Drained);
    let journal = running.world.journal();
    assert_eq!(
        journal.last().map(String::as_str),
        Some("complete_termination"),
        "{journal:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_taken_elsewhere_is_waited_out_while_the_eni_is_here_and_fenced_once_it_is_not() {
    let running = start(InProcessWorld::new(3), Duration::from_millis(50)).await;
    wait_state(running.health, "healthy", |v| v.healthy).await;
    running
        .world
        .set_claim_taken_by(Some("instance i-0bbbbbbbbbbbbbbbb in az-a"));
    running.world.expire_session();
    let view = wait_state(running.health, "a second reclaim attempt", |v| {
        v.reclaim_attempts >= 2
    })
    .await;
    assert_eq!(view.claim, "lost");
    assert!(!view.healthy, "503 without the claim");
    let waiting = view.waiting.expect("says what it waits for");
    assert_eq!(waiting.step, "reclaim");
    assert!(
        waiting.reason.contains("i-0bbbbbbbbbbbbbbbb"),
        "{waiting:?}"
    );
    let (code, body) = berth::health::get(running.health, "/health").await.unwrap();
    assert_eq!(code, 503);
    assert!(body.contains("claim=lost"), "{body}");
    assert!(
        !running.world.journal().iter().any(|c| c == "stop_kafka"),
        "Kafka keeps running while the ENI is held here"
    );

    running.world.set_eni_here(false);
    let exit = ended(running.daemon).await;
    assert_eq!(exit, DaemonExit::Failed);
    let journal = running.world.journal();
    let fenced = journal
        .iter()
        .position(|c| c == "stop_kafka")
        .expect("fenced");
    assert!(
        journal[..fenced]
            .iter()
            .any(|c| c.starts_with("eni_attached_here")),
        "fenced only after observing the ENI gone: {journal:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_says_live_what_a_step_waits_for() {
    let world = InProcessWorld::new(3);
    let reason = "Kafka listener 10.0.0.100:9092: no Metadata yet: connection refused";
    world.wait_in("start_kafka", &[reason]);
    let running = start(world, Duration::from_secs(3600)).await;
    let first = wait_state(running.health, "waiting in start_kafka", |v| {
        v.waiting.is_some()
    })
    .await;
    let waiting = first.waiting.clone().unwrap();
    assert_eq!(
        (waiting.step.as_str(), waiting.reason.as_str()),
        ("start_kafka", reason)
    );
    // Durations are computed when asked: each one grows while the step waits (each is rounded to the
    // millisecond from its own start, so one may tick before the other; the wait is for both).
    let first_duration = first.timeline.last().unwrap().duration_ms;
    let later = wait_state(running.health, "durations to grow", |v| {
        v.uptime_ms > first.uptime_ms
            && v.waiting
                .as_ref()
                .is_some_and(|w| w.for_ms > waiting.for_ms)
            && v.timeline
                .last()
                .is_some_and(|entry| entry.duration_ms > first_duration)
    })
    .await;
    assert_eq!(later.timeline.last().unwrap().state, "start_kafka");
    running.world.release("start_kafka");
    let healthy = wait_state(running.health, "healthy", |v| v.healthy).await;
    assert_eq!(healthy.waiting, None);
    let _ = running.requests.send(Request::Stop).await;
    running.daemon.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_endpoint_survives_garbage() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let running = start(InProcessWorld::new(3), Duration::from_secs(3600)).await;
    for garbage in [
        &b"\x00\xff\xfe garbage\r\n\r\n"[..],
        b"POST /health HTTP/1.1\r\n\r\n",
        &[b'A'; 20_000][..],
    ] {
        let mut stream = tokio::net::TcpStream::connect(running.health)
            .await
            .unwrap();
        let _ = stream.write_all(garbage).await;
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        let text = String::from_utf8_lossy(&response);
        assert!(
            text.starts_with("HTTP/1.1 4"),
            "garbage answered with a 4xx: {text:?}"
        );
    }
    let (code, _) = berth::health::get(running.health, "/nope").await.unwrap();
    assert_eq!(code, 404);
    let (code, _) = berth::health::get(running.health, "/state").await.unwrap();
    assert_eq!(code, 200, "still serving after garbage");
    let _ = running
        .requests
        .send(Request::Drain(DrainReason::Requested))
        .await;
    running.daemon.await.unwrap();
}

/// The calls of the boot, by operation, up to the first of `until` (routine ones left out).
fn boot_calls<'a>(journal: &'a [String], until: &str) -> Vec<&'a str> {
    journal
        .iter()
        .map(|c| c.split(':').next().unwrap())
        .take_while(|c| *c != until)
        .filter(|c| !matches!(*c, "heartbeat" | "identity" | "discover"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_volume_is_requested_while_the_eni_attaches_and_a_drain_then_detaches_it() {
    let world = InProcessWorld::new(3);
    world.wait_in("wait_for_link", &["link with the ENI's MAC to appear"]);
    let running = start(world, Duration::from_secs(3600)).await;
    let view = wait_state(running.health, "the early volume request answered", |v| {
        v.volume_request
            .as_ref()
            .is_some_and(|r| r.answered_ms.is_some())
    })
    .await;
    assert_eq!(view.state, "attach_eni", "the ENI's link is still awaited");
    let before_drain = running.world.journal().len();
    let request = view.volume_request.unwrap();
    assert_eq!(request.answer.as_deref(), Some("sent an attach"));
    let journal = running.world.journal();
    let mut calls = boot_calls(&journal, "none");
    calls.sort_unstable();
    assert_eq!(
        calls,
        ["attach_eni", "claim", "request_volume", "wait_for_link"],
        "requested alongside the ENI's wait (the two tasks run in either order), before routes and AttachEbs: \
         {journal:?}"
    );
    let _ = running
        .requests
        .send(Request::Drain(DrainReason::Requested))
        .await;
    assert_eq!(ended(running.daemon).await, DaemonExit::Drained);
    let journal = running.world.journal();
    let after: Vec<&str> = journal[before_drain..]
        .iter()
        .map(|c| c.split(':').next().unwrap())
        .filter(|c| *c != "heartbeat")
        .collect();
    assert_eq!(
        after,
        ["detach_volume", "detach_eni", "release_claim"],
        "a volume requested before AttachEbs began is detached too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eni_step_waits_for_its_volume_request_in_flight_never_two_at_once() {
    let world = InProcessWorld::new(3);
    world.wait_in("request_volume", &["AttachVolume answered"]);
    let running = start(world, Duration::from_secs(3600)).await;
    let view = wait_state(
        running.health,
        "AttachEni waiting for the volume's request",
        |v| {
            v.waiting
                .as_ref()
                .is_some_and(|w| w.reason.contains("the volume's attach request"))
        },
    )
    .await;
    assert_eq!(
        view.state, "attach_eni",
        "the ENI is ready, and its step ends only once the volume's request is answered"
    );
    let journal = running.world.journal();
    assert!(
        !journal.iter().any(|c| c.starts_with("attach_volume")),
        "no second request while the first is in flight: {journal:?}"
    );
    running.world.release("request_volume");
    wait_state(running.health, "healthy", |v| v.healthy).await;
    let journal = running.world.journal();
    let calls = boot_calls(&journal, "resolve");
    let position = |call: &str| calls.iter().position(|c| *c == call).unwrap();
    assert!(
        position("claim") < position("request_volume")
            && position("request_volume") < position("attach_volume"),
        "requested once the claim is held; AttachEbs after it was answered: {journal:?}"
    );
    assert_eq!(
        calls.iter().filter(|c| **c == "attach_volume").count(),
        1,
        "{journal:?}"
    );
    let _ = running.requests.send(Request::Stop).await;
    assert_eq!(ended(running.daemon).await, DaemonExit::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_launch_hook_is_completed_only_once_caught_up_with_heartbeats_meanwhile() {
    let world = InProcessWorld::new(3);
    world.set_replication(fixtures::replication(&[1, 2]));
    let running = start_with(world, Duration::from_secs(3600), |settings| {
        settings.heartbeat_interval = Some(Duration::from_millis(100));
        settings.catch_up = Some(CatchUpGate {
            deadline: Duration::from_secs(60),
            poll: Duration::from_millis(50),
        });
    })
    .await;

    held_while_behind(&running).await;

    // In sync: Healthy, then SUCCESS and CONTINUE, after the last look that found it behind.
    running
        .world
        .set_replication(fixtures::replication(&[1, 2, 0]));
    let healthy = wait_state(running.health, "healthy", |v| v.healthy).await;
    assert_eq!(healthy.catch_up.as_ref().map(|p| p.behind.len()), Some(0));
    let journal = wait_for(
        "the launch hook's completion",
        async || running.world.journal(),
        |journal| journal.iter().any(|c| c == "complete_launch:continue"),
    )
    .await;
    let completed = journal
        .iter()
        .position(|c| c == "complete_launch:continue")
        .unwrap();
    let first_look = journal.iter().position(|c| c == "replication").unwrap();
    let heartbeats = journal[first_look..completed]
        .iter()
        .filter(|c| *c == "heartbeat")
        .count();
    assert!(
        heartbeats >= 3,
        "heartbeats between the first look and CONTINUE: {journal:?}"
    );
    let (_, metrics) = berth::health::get(running.health, "/metrics")
        .await
        .unwrap();
    assert!(
        metrics.contains("berth_kafka_partitions_behind 0.0"),
        "{metrics}"
    );
    let _ = running.requests.send(Request::Stop).await;
    running.daemon.await.unwrap();
}

/// Serving but behind: StartKafka, 503, the partition named in /state and /metrics, heartbeats flowing, nothing
/// reported to CloudFormation or the launch hook.
async fn held_while_behind(running: &Running) {
    let behind = wait_state(
        running.health,
        "the gate to report a partition behind",
        |v| v.catch_up.as_ref().is_some_and(|p| !p.caught_up()),
    )
    .await;
    assert_eq!(behind.state, "start_kafka");
    assert!(!behind.healthy);
    let waiting = wait_state(running.health, "the gate's wait in /state", |v| {
        v.waiting.as_ref().is_some_and(|w| w.step == "catch_up")
    })
    .await
    .waiting
    .unwrap();
    assert!(
        waiting
            .reason
            .contains("1 of 1 hosted partitions not yet in sync: events-0"),
        "{waiting:?}"
    );
    // systemd's status line carries the catch-up counts while the gate waits.
    running
        .notify
        .wait("STATUS= with the catch-up counts", |messages| {
            messages.iter().any(|m| {
                m == "STATUS=start_kafka broker 0: catching up: 1 of 1 hosted partitions not yet in sync: events-0"
            })
        })
        .await;
    let (_, metrics) = berth::health::get(running.health, "/metrics")
        .await
        .unwrap();
    assert!(
        metrics.contains("berth_kafka_partitions_behind 1.0"),
        "{metrics}"
    );
    wait_for(
        "heartbeats while the gate waits",
        async || running.world.journal(),
        |journal| journal.iter().filter(|c| *c == "heartbeat").count() >= 3,
    )
    .await;
    let journal = running.world.journal();
    assert!(
        !journal
            .iter()
            .any(|c| c.starts_with("complete_launch") || c.starts_with("signal_stack")),
        "nothing reported while behind: {journal:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsafe_drain_waits_with_heartbeats_then_stops_kafka_at_the_bound_with_the_metric() {
    let world = InProcessWorld::new(3);
    // Broker 0 leads events-0 with only 1 also in sync: stopping 0 would leave 1 of the 2 needed.
    let mut view = fixtures::replication(&[0, 1]);
    view.partitions[0].leader = Some(BrokerId(0));
    world.set_replication(view);
    let running = start_with(world, Duration::from_secs(3600), |settings| {
        settings.drain_wait = Some(Duration::from_millis(1500));
        settings.terminate_heartbeat_interval = Some(Duration::from_millis(100));
    })
    .await;
    wait_state(running.health, "healthy", |v| v.healthy).await;
    running
        .world
        .announce_termination(DrainReason::LifecycleTerminated);

    let waiting = wait_state(running.health, "the drain to wait for a safe stop", |v| {
        v.drain_wait
            .as_ref()
            .is_some_and(|w| w.waiting && w.checks >= 1)
    })
    .await;
    assert_eq!(waiting.state, "draining");
    let wait = waiting.drain_wait.unwrap();
    assert!(
        wait.unsafe_because
            .as_deref()
            .is_some_and(|w| w.contains("events-0: 1/2")),
        "{wait:?}"
    );
    assert!(
        !running.world.journal().iter().any(|c| c == "stop_kafka"),
        "Kafka still runs while stopping it is unsafe"
    );
    let (_, metrics) = berth::health::get(running.health, "/metrics")
        .await
        .unwrap();
    assert!(
        metrics.contains("berth_drain_wait_bound_reached 0"),
        "{metrics}"
    );

    assert_eq!(ended(running.daemon).await, DaemonExit::Drained);
    let journal = running.world.journal();
    let stopped = journal
        .iter()
        .position(|c| c == "stop_kafka")
        .expect("Kafka stopped");
    let checks = journal[..stopped]
        .iter()
        .filter(|c| *c == "replication")
        .count();
    let heartbeats = journal[..stopped]
        .iter()
        .filter(|c| *c == "heartbeat_termination")
        .count();
    assert!(checks >= 2, "looked again while waiting: {journal:?}");
    assert!(
        heartbeats >= 5,
        "the terminating hook heard from berth while waiting: {journal:?}"
    );
    assert_eq!(
        journal.last().map(String::as_str),
        Some("complete_termination")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_wait_shows_in_state_and_metrics_once_it_ended_at_the_bound() {
    let world = InProcessWorld::new(3);
    let mut view = fixtures::replication(&[0, 1]);
    view.partitions[0].leader = Some(BrokerId(0));
    world.set_replication(view);
    // Unmount blocks, so the daemon stays in Draining after Kafka stopped and /state can be read.
    world.wait_in("unmount", &["unmount held by the test"]);
    let running = start_with(world, Duration::from_secs(3600), |settings| {
        settings.drain_wait = Some(Duration::from_millis(500));
    })
    .await;
    wait_state(running.health, "healthy", |v| v.healthy).await;
    let _ = running
        .requests
        .send(Request::Drain(DrainReason::Requested))
        .await;
    let ended_wait = wait_state(running.health, "the drain wait to end at its bound", |v| {
        v.drain_wait.as_ref().is_some_and(|w| !w.waiting)
    })
    .await
    .drain_wait
    .unwrap();
    assert!(
        matches!(&ended_wait.outcome, Some(DrainOutcome::BoundReached(why)) if why.contains("events-0")),
        "{ended_wait:?}"
    );
    assert!(ended_wait.waited_ms >= 500, "{ended_wait:?}");
    let (_, metrics) = berth::health::get(running.health, "/metrics")
        .await
        .unwrap();
    assert!(
        metrics.contains("berth_drain_wait_bound_reached 1"),
        "{metrics}"
    );
    let waited: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("berth_drain_wait_seconds "))
        .expect("berth_drain_wait_seconds")
        .parse()
        .unwrap();
    assert!((0.5..5.0).contains(&waited), "{metrics}");
    running.world.release("unmount");
    assert_eq!(ended(running.daemon).await, DaemonExit::Drained);
}
