//! Session fate against a real ZooKeeper: expiry behind a black-holed connection is reported as Expired within
//! the session timeout plus a small margin (this test fails for a client that hides expiry, such as
//! zookeeper-async: see docs/decisions/0001-zookeeper-client.md), re-claiming after expiry, a leader killed
//! during claims, and ZooKeeper not yet up when the claim starts.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_core::ports::{Coordination, Deadline, ErrorKind, Reclaim, SessionEvent};
use berth_core::BrokerId;
use berth_testkit::zk::{BlackHoleProxy, ZkOptions, ZooKeeper};
use berth_zk::ZkCoordination;
use tokio::sync::mpsc;
use zookeeper_client as zk;

use common::{holder, plan, settings};

const SESSION_TIMEOUT: Duration = Duration::from_secs(2);
/// Allowed lateness of the Expired report beyond the session timeout, counted from the partition.
const MARGIN: Duration = Duration::from_millis(1500);

/// Forwards the adapter's session events, stamped with their arrival time.
fn session_events(
    adapter: &Arc<ZkCoordination>,
) -> mpsc::UnboundedReceiver<(SessionEvent, Instant)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let adapter = Arc::clone(adapter);
    tokio::spawn(async move {
        loop {
            let event = adapter.next_session_event().await;
            if tx.send((event, Instant::now())).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits for `wanted`, returning its arrival time and the events seen before it.
async fn wait_event(
    events: &mut mpsc::UnboundedReceiver<(SessionEvent, Instant)>,
    wanted: SessionEvent,
    within: Duration,
) -> (Instant, Vec<SessionEvent>) {
    let mut before = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some((event, at))) if event == wanted => return (at, before),
            Ok(Some((event, _))) => before.push(event),
            Ok(None) => panic!("event stream ended"),
            Err(_) => panic!("no {wanted:?} within {within:?}; saw {before:?}"),
        }
    }
}

/// When the server deletes `path` (its owner's session expired), seen through a direct watch.
async fn watch_deletion(checker: &zk::Client, path: &str) -> tokio::task::JoinHandle<Instant> {
    let (stat, watcher) = checker
        .check_and_watch_stat(path)
        .await
        .expect("watch claim");
    assert!(stat.is_some(), "{path} exists");
    tokio::spawn(async move {
        let event = watcher.changed().await;
        assert_eq!(event.event_type, zk::EventType::NodeDeleted);
        Instant::now()
    })
}

/// The partition case: the expiry is reported to the daemon as Expired within the bound, the claim is gone on
/// the server, and `reclaim` recreates it on a new session. A second host that took the id meanwhile is the
/// reclaim's answer (`TakenBy`, naming that host), not an error: what to do about it is the daemon's decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_is_reported_within_session_timeout_and_reclaimed() {
    let server = ZooKeeper::standalone().expect("start ZooKeeper");
    let direct = server.connect_string();
    let checker = common::client(&direct).await;
    let (free, taken) = tokio::join!(
        expiry_case(&server, &checker, "expire-free", false),
        expiry_case(&server, &checker, "expire-taken", true)
    );
    let (reported, deleted, paused) = free;
    eprintln!(
        "expiry: partition at 0 ms; server deleted the claim at {} ms; berth reported Expired at {} ms \
         ({:+} ms relative to the server)",
        deleted.duration_since(paused).as_millis(),
        reported.duration_since(paused).as_millis(),
        reported.duration_since(paused).as_millis() as i64 - deleted.duration_since(paused).as_millis() as i64,
    );
    let _ = taken;
}

async fn expiry_case(
    server: &ZooKeeper,
    checker: &zk::Client,
    cluster: &str,
    someone_takes_it: bool,
) -> (Instant, Instant, Instant) {
    let proxy = BlackHoleProxy::start(server.client_address(0)).expect("proxy");
    let settings = settings(&proxy.address().to_string(), SESSION_TIMEOUT, cluster);
    let adapter = Arc::new(ZkCoordination::new(settings.clone()).expect("adapter"));
    let mut events = session_events(&adapter);
    let me = holder("i-partitioned");
    let id = adapter
        .claim(
            &plan([0], None),
            &me,
            Deadline::after(Duration::from_secs(20)),
        )
        .await
        .expect("claim");
    let path = adapter.claim_path(id);
    let deleted = watch_deletion(checker, &path).await;

    // Another host waiting for the same id (directly connected) wins it once the server expires our session.
    let rival = someone_takes_it.then(|| {
        let settings = common::settings(&server.connect_string(), Duration::from_secs(4), cluster);
        tokio::spawn(async move {
            let rival = ZkCoordination::new(settings.clone()).expect("adapter");
            let id = common::claim_any(&rival, [0], "i-rival", Duration::from_secs(20)).await;
            (rival, id)
        })
    });

    let paused = Instant::now();
    proxy.pause();
    let (expired_at, before) =
        wait_event(&mut events, SessionEvent::Expired, SESSION_TIMEOUT + MARGIN).await;
    assert!(
        before.contains(&SessionEvent::Disconnected),
        "Disconnected is reported first: {before:?}"
    );
    let deleted_at = tokio::time::timeout(Duration::from_secs(10), deleted)
        .await
        .expect("server expired it")
        .unwrap();
    assert_eq!(
        adapter.held().await,
        None,
        "no claim is believed held after expiry"
    );

    proxy.resume();
    let result = adapter
        .reclaim(id, &me, Deadline::after(Duration::from_secs(10)))
        .await;
    if let Some(rival) = rival {
        let (rival, rival_id) = rival.await.unwrap();
        assert_eq!(rival_id.unwrap(), id);
        match result.expect("an answer") {
            Reclaim::TakenBy(holder) => {
                assert!(holder.contains("i-rival"), "names the holder: {holder}")
            }
            Reclaim::Held => panic!("the id is someone else's now"),
        }
        assert_eq!(adapter.held().await, None);
        drop(rival);
    } else {
        assert_eq!(result.expect("reclaim a free id"), Reclaim::Held);
        let (body, stat) = checker.get_data(&path).await.expect("claim recreated");
        assert_eq!(
            Some(stat.ephemeral_owner),
            adapter.session_id().await,
            "on the new session"
        );
        assert!(String::from_utf8_lossy(&body).contains("i-partitioned"));
        assert_eq!(adapter.held().await, Some(id));
    }
    (expired_at, deleted_at, paused)
}

/// A 3-node ensemble loses its leader while 40 claimers are at work: every claim succeeds, no id has two owners,
/// and every returned claim is really held (its znode is owned by the claimer's session), after re-election.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_during_claims_loses_and_duplicates_nothing() {
    let ensemble = ZooKeeper::ensemble(3).expect("start a 3-node ensemble");
    let connect = ensemble.connect_string();
    let settings = settings(&connect, Duration::from_secs(6), "election");
    let spawn_claimers = |range: std::ops::Range<usize>| {
        range
            .map(|index| {
                let settings = settings.clone();
                tokio::spawn(async move {
                    let adapter = ZkCoordination::new(settings.clone()).expect("adapter");
                    let me = format!("i-{index}");
                    let id = common::claim_any(&adapter, 0..40, &me, Duration::from_secs(30))
                        .await
                        .unwrap_or_else(|error| panic!("{me}: {error}"));
                    (adapter, me, id)
                })
            })
            .collect::<Vec<_>>()
    };
    let mut tasks = spawn_claimers(0..20);
    let leader = ensemble.leader().expect("a leader");
    ensemble.kill(leader);
    tasks.extend(spawn_claimers(20..40));
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("claimer"));
    }
    let ids: BTreeSet<BrokerId> = results.iter().map(|(_, _, id)| *id).collect();
    assert_eq!(ids.len(), 40, "40 claimers, 40 distinct ids");
    let checker = common::client(&connect).await;
    let owners = common::owners(&checker, &settings.claims_path).await;
    for (adapter, me, id) in &results {
        let (owner, session) = &owners[&id.0];
        assert_eq!(owner, me, "id {id}");
        assert_eq!(
            Some(*session),
            adapter.session_id().await,
            "id {id} held on {me}'s live session"
        );
        assert_eq!(adapter.held().await, Some(*id));
    }
    assert!(ensemble.leader().is_some(), "a new leader was elected");
}

/// ZooKeeper is not up when the claim starts: it keeps trying and claims once the server is ready; with no
/// server at all it gives up at the deadline with a retryable error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_not_yet_up_then_claims() {
    let server = ZooKeeper::prepare(ZkOptions::default()).expect("configure ZooKeeper");
    let settings = settings(&server.connect_string(), SESSION_TIMEOUT, "late");
    let adapter = ZkCoordination::new(settings.clone()).expect("adapter (connects lazily)");

    let started = Instant::now();
    let error = common::claim_any(&adapter, 0..3, "i-early", Duration::from_millis(700))
        .await
        .expect_err("no server yet");
    assert_eq!(error.kind, ErrorKind::Retryable, "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "gave up at the deadline, took {:?}",
        started.elapsed()
    );

    let adapter = Arc::new(adapter);
    let claiming = {
        let adapter = Arc::clone(&adapter);
        tokio::spawn(async move {
            let id = common::claim_any(&adapter, 0..3, "i-early", Duration::from_secs(30)).await;
            (id, Instant::now())
        })
    };
    server.start_node(0).expect("start ZooKeeper");
    // The JVM has only just been forked: nothing answers yet, and the claim is still trying.
    assert!(
        !claiming.is_finished(),
        "the claim waits while ZooKeeper is down"
    );
    let (id, _) = claiming.await.unwrap();
    assert!(id.is_ok(), "claimed once ZooKeeper came up: {id:?}");
    assert!(server.mode(0).is_some(), "ZooKeeper is serving");
    assert_eq!(adapter.held().await, id.ok());
}

/// A short partition is only a Disconnected: once the connection is back the same session (and claim) goes on,
/// and the daemon hears Connected, never Expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_partition_keeps_the_claim() {
    let server = ZooKeeper::standalone().expect("start ZooKeeper");
    let proxy = BlackHoleProxy::start(server.client_address(0)).expect("proxy");
    let settings = settings(&proxy.address().to_string(), Duration::from_secs(4), "blip");
    let adapter = Arc::new(ZkCoordination::new(settings.clone()).expect("adapter"));
    let mut events = session_events(&adapter);
    let id = common::claim_any(&adapter, 0..2, "i-blip", Duration::from_secs(20))
        .await
        .expect("claim");
    let session = adapter.session_id().await;

    proxy.pause();
    wait_event(
        &mut events,
        SessionEvent::Disconnected,
        Duration::from_secs(4),
    )
    .await;
    proxy.resume();
    let (_, before) =
        wait_event(&mut events, SessionEvent::Connected, Duration::from_secs(4)).await;
    assert!(!before.contains(&SessionEvent::Expired), "{before:?}");
    assert_eq!(adapter.held().await, Some(id));
    assert_eq!(adapter.session_id().await, session, "same session");
    let checker = common::client(&server.connect_string()).await;
    let (_, stat) = checker
        .get_data(&adapter.claim_path(id))
        .await
        .expect("claim still there");
    assert_eq!(Some(stat.ephemeral_owner), session);
}
