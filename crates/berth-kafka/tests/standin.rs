//! KafkaBroker against a real ZooKeeper and the Kafka stand-in run as a child process: the fast tests of the
//! adapter's own logic (restarts, registration watch, deadlines). The stand-in honours Kafka's startup contract
//! and is no substitute for it: tests/kafka_kraft.rs and tests/kafka_zookeeper.rs meet real Kafka. Build the
//! stand-in first: `cargo build -p kafka-standin` (`make test` does).

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_core::ports::{Broker, Deadline};
use berth_core::replication::{catch_up, stop_safety, StopSafety};
use berth_core::{BrokerId, ErrorKind};
use berth_kafka::format::FORMAT_MIN_TIME;
use berth_kafka::supervisor::ChildState;
use common::standin::Host;
use common::{assert_unregistered, registration, registration_path, stop_cleanly, CLUSTER_ID};

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_detects_serving_soon_after_registration_and_stop_is_clean() {
    let host = Host::new();
    // The stand-in takes 1 s to "recover its log" before registering, as the fleet's Kafka does.
    let broker = host.standin_broker("zookeeper", "", &["--start-delay", "1s"]);
    let spec = host.spec(1);

    let evidence = broker
        .start(&spec, Deadline::after(Duration::from_secs(30)))
        .await
        .expect("serving");
    let detected_ms = wall_ms();
    assert_eq!(
        evidence.listener,
        format!("127.0.0.1:{}", host.port).parse().unwrap()
    );
    assert!(
        evidence
            .detail
            .contains("Metadata v12 lists broker 1 at 127.0.0.1"),
        "{}",
        evidence.detail
    );

    // What the stand-in registered, read with a client of the test's own.
    let zk = host.client().await;
    let (registration, stat) = registration(&zk, 1).await;
    assert_eq!(registration.version, 5);
    assert_eq!(registration.rack.as_deref(), Some("az-a"));
    assert!(registration.advertises_host("127.0.0.1"));
    assert!(stat.ephemeral_owner != 0, "ephemeral");
    let register_to_healthy = detected_ms - stat.ctime;
    eprintln!("register_to_healthy_ms={register_to_healthy}");
    assert!(
        register_to_healthy < 1_000,
        "registration to Healthy took {register_to_healthy} ms"
    );

    // The overlay is what Kafka read: meta.properties stamped with the id, in ZooKeeper mode's version 0.
    let meta = berth_logdir::read(&host.log_dir())
        .unwrap()
        .expect("stamped");
    assert_eq!(
        (meta.version.as_deref(), meta.broker_id.as_deref()),
        (Some("0"), Some("1"))
    );

    let checked = broker.check(&spec).await.expect("healthy check");
    assert!(checked.probe_micros > 0);

    // Starting again with the same settings is a no-op: same child, overlay untouched.
    let Some(ChildState::Running { pid, .. }) = broker.child_state() else {
        panic!("running")
    };
    let modified = std::fs::metadata(host.overlay())
        .unwrap()
        .modified()
        .unwrap();
    broker
        .start(&spec, Deadline::after(Duration::from_secs(10)))
        .await
        .expect("still serving");
    assert!(
        matches!(broker.child_state(), Some(ChildState::Running { pid: same, .. }) if same == pid)
    );
    assert_eq!(
        std::fs::metadata(host.overlay())
            .unwrap()
            .modified()
            .unwrap(),
        modified
    );

    stop_cleanly(&broker, Duration::from_secs(10)).await;
    assert_unregistered(&zk, 1, "deregistered").await;
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", host.port)).is_err(),
        "listener closed"
    );
    assert_eq!(broker.child_state(), None);
    assert!(broker.check(&spec).await.is_err(), "not serving after stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_registering_the_wrong_host_is_not_healthy() {
    let host = Host::new();
    let wrong = format!("advertised.listeners=PLAINTEXT://127.0.0.2:{}", host.port);
    let broker = host.standin_broker("zookeeper", "", &["--override", &wrong]);
    let spec = host.spec(1);

    let started = Instant::now();
    let error = broker
        .start(&spec, Deadline::after(Duration::from_secs(3)))
        .await
        .expect_err("not serving");
    assert_eq!(error.kind, ErrorKind::Retryable, "{error}");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "kept trying until the deadline"
    );
    assert!(
        error.message.contains("PLAINTEXT://127.0.0.2"),
        "reports what was seen: {error}"
    );
    let error = broker.check(&spec).await.expect_err("check fails too");
    assert!(error.message.contains("127.0.0.2"), "{error}");
    stop_cleanly(&broker, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_broker_fails_the_next_check_and_passes_once_restarted() {
    let host = Host::new();
    let broker = host.standin_broker("zookeeper", "", &[]);
    let spec = host.spec(2);
    broker
        .start(&spec, Deadline::after(Duration::from_secs(30)))
        .await
        .expect("serving");
    let Some(ChildState::Running { pid, starts: 1 }) = broker.child_state() else {
        panic!("running once")
    };

    // A crash: SIGKILL leaves its registration behind until its session expires; the listener dies at once.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let killed = Instant::now();
    loop {
        // The interval is 1 s: the first check after the kill must already fail.
        match broker.check(&spec).await {
            Err(error) => {
                eprintln!(
                    "check failed {:?} after the kill: {error}",
                    killed.elapsed()
                );
                break;
            }
            Ok(_) => assert!(
                killed.elapsed() < Duration::from_secs(1),
                "still healthy 1 s after the kill"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(killed.elapsed() < Duration::from_secs(1));

    // The supervisor restarts it (as systemd's Restart= would); the stand-in waits out its old session.
    let deadline = Instant::now() + Duration::from_secs(20);
    let evidence = loop {
        match broker.check(&spec).await {
            Ok(evidence) => break evidence,
            Err(error) => assert!(
                Instant::now() < deadline,
                "not back by the deadline: {error}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!(
        "healthy again {:?} after the kill: {}",
        killed.elapsed(),
        evidence.detail
    );
    assert!(matches!(
        broker.child_state(),
        Some(ChildState::Running { starts: 2, .. })
    ));
    stop_cleanly(&broker, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_of_another_broker_is_refused_with_kafkas_reason() {
    let host = Host::new();
    std::fs::create_dir_all(host.log_dir()).unwrap();
    std::fs::write(
        host.log_dir().join("meta.properties"),
        "version=0\nbroker.id=2\n",
    )
    .unwrap();
    let broker = host.standin_broker("zookeeper", "", &[]);

    let error = broker
        .start(&host.spec(1), Deadline::after(Duration::from_secs(30)))
        .await
        .expect_err("refused");
    assert_eq!(error.kind, ErrorKind::Fatal, "{error}");
    assert!(
        error
            .message
            .contains("Stored node id 2 doesn't match previous node id 1 in "),
        "{error}"
    );
    assert_eq!(broker.child_state(), None, "not left crash-looping");
    let meta = std::fs::read_to_string(host.log_dir().join("meta.properties")).unwrap();
    assert_eq!(
        meta, "version=0\nbroker.id=2\n",
        "the other broker's data is untouched"
    );
    assert_unregistered(&host.client().await, 1, "never registered").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kraft_mode_is_serving_on_the_protocol_alone() {
    let host = Host::new();
    let broker = host.standin_broker("kraft", "process.roles=broker\n", &[]);
    let spec = host.spec(0);
    // The storage tool is started only with its minimum time left in the deadline.
    let evidence = broker
        .start(&spec, Deadline::after(FORMAT_MIN_TIME * 2))
        .await
        .expect("serving");
    assert!(
        evidence.detail.starts_with("Metadata v12 lists broker 0"),
        "{}",
        evidence.detail
    );
    // Formatted by the configured storage tool (the stand-in's), with the configured cluster id.
    let meta = berth_logdir::read(&host.log_dir())
        .unwrap()
        .expect("formatted");
    assert_eq!(
        (meta.version.as_deref(), meta.node_id.as_deref()),
        (Some("1"), Some("0"))
    );
    assert_eq!(meta.cluster_id.as_deref(), Some(CLUSTER_ID));
    assert!(
        evidence.detail.contains(&format!(
            "cluster {CLUSTER_ID}); storage formatted on the broker rule"
        )),
        "{}",
        evidence.detail
    );
    broker.check(&spec).await.expect("healthy");
    // The stand-in has no topics: the caught-up gate and the drain check read an empty cluster of one broker
    // (so a fleet of stand-ins is caught up at once, and a drain there is the last broker's).
    let view = broker.replication(&spec).await.expect("replication read");
    assert!(view.partitions.is_empty(), "{view:?}");
    assert_eq!(view.live_brokers, [BrokerId(0)].into_iter().collect());
    assert!(catch_up(&view, BrokerId(0)).caught_up());
    assert_eq!(stop_safety(&view, BrokerId(0)), StopSafety::LastBroker);
    stop_cleanly(&broker, Duration::from_secs(10)).await;
    assert!(broker.check(&spec).await.is_err());
    let error = broker.replication(&spec).await.expect_err("nobody answers");
    assert_eq!(error.kind, ErrorKind::Retryable, "{error}");
    assert!(
        error
            .message
            .contains("no broker described the cluster's replication"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_registration_fails_the_check_even_with_the_listener_up() {
    let host = Host::new();
    let broker = host.standin_broker("zookeeper", "", &[]);
    let spec = host.spec(1);
    broker
        .start(&spec, Deadline::after(Duration::from_secs(30)))
        .await
        .expect("serving");

    // What a session expiry does to Kafka's registration, done by hand.
    host.client()
        .await
        .delete(&registration_path(1), None)
        .await
        .expect("delete the registration");
    let error = broker
        .check(&spec)
        .await
        .expect_err("not registered: not healthy");
    assert!(
        error.message.contains("/kafka/brokers/ids/1 is absent"),
        "{error}"
    );
    assert_eq!(error.kind, ErrorKind::Retryable);
    stop_cleanly(&broker, Duration::from_secs(10)).await;
}
