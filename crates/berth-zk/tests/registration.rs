//! Kafka registration watch against a real ZooKeeper: waits for `/brokers/ids/<id>` under a chroot, parses it,
//! and notices its deletion, all through watches.

mod common;

use std::time::{Duration, Instant};

use berth_core::ports::Coordination;
use berth_core::{BrokerId, Deadline};
use berth_testkit::zk::ZooKeeper;
use berth_zk::registration::RegistrationWatch;
use berth_zk::ZkCoordination;
use zookeeper_client as zk;

const KAFKA_JSON: &str = r#"{"features":{},"listener_security_protocol_map":{"PLAINTEXT":"PLAINTEXT"},"endpoints":["PLAINTEXT://10.0.0.5:9092"],"jmx_port":-1,"host":"10.0.0.5","timestamp":"1700000000000","port":9092,"rack":"eu-west-1a","version":5}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_registration_then_notices_its_deletion() {
    let server = ZooKeeper::standalone().expect("start ZooKeeper");
    let connect = server.connect_string();
    let watch = RegistrationWatch::new(&connect, Duration::from_secs(2), "/kafka");
    assert_eq!(
        watch.get(BrokerId(5)).await.expect("get"),
        None,
        "nothing registered yet"
    );

    // Kafka's side: an ephemeral registration on its own session, created while berth waits.
    let kafka = common::client(&connect).await;
    let waiter = tokio::spawn(async move {
        let started = Instant::now();
        let registration = watch
            .wait_for(BrokerId(5), Deadline::after(Duration::from_secs(20)))
            .await;
        (watch, registration, started)
    });
    let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    kafka
        .mkdir("/kafka/brokers/ids", &persistent)
        .await
        .expect("mkdir");
    let ephemeral = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    let created = Instant::now();
    kafka
        .create("/kafka/brokers/ids/5", KAFKA_JSON.as_bytes(), &ephemeral)
        .await
        .expect("register");
    let (watch, registration, started) = waiter.await.expect("waiter");
    let registration = registration.expect("registration seen");
    assert!(
        started.elapsed() >= created.elapsed(),
        "returned only after the node was created"
    );
    assert_eq!(registration.broker_id, BrokerId(5));
    assert_eq!(registration.rack.as_deref(), Some("eu-west-1a"));
    let plaintext = registration
        .endpoint("PLAINTEXT")
        .expect("PLAINTEXT endpoint");
    assert_eq!(
        (plaintext.host.as_str(), plaintext.port),
        ("10.0.0.5", 9092)
    );
    assert!(registration.advertises_host("10.0.0.5"));
    assert_eq!(
        watch
            .get(BrokerId(5))
            .await
            .expect("get")
            .map(|r| r.version),
        Some(5)
    );

    // Kafka stops: its session closes and the registration goes; wait_gone notices.
    let gone = tokio::spawn(async move { watch.wait_gone(BrokerId(5)).await });
    drop(kafka);
    tokio::time::timeout(Duration::from_secs(10), gone)
        .await
        .expect("deletion noticed in time")
        .unwrap()
        .expect("wait_gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_gives_up_at_the_deadline() {
    let server = ZooKeeper::standalone().expect("start ZooKeeper");
    let watch = RegistrationWatch::new(&server.connect_string(), Duration::from_secs(2), "");
    // Connected first: on a loaded machine the session's setup alone can outlast the deadline, and this test
    // is about the wait for the registration.
    assert_eq!(watch.get(BrokerId(1)).await.expect("connect"), None);
    let started = Instant::now();
    let error = watch
        .wait_for(BrokerId(1), Deadline::after(Duration::from_millis(800)))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("/brokers/ids/1"), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "gave up late: {:?}",
        started.elapsed()
    );
}

/// Session ids the server has open connections for (from `cons`; the asking connection has none yet).
fn open_sessions(server: &ZooKeeper) -> std::collections::BTreeSet<i64> {
    let cons = server.four_letter(0, "cons").expect("cons");
    cons.lines()
        .filter_map(|line| line.split("sid=0x").nth(1))
        .filter_map(|rest| rest.split([',', ')']).next())
        .filter_map(|hex| i64::from_str_radix(hex, 16).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_on_the_claim_session_and_opens_its_own_only_without_one() {
    let server = ZooKeeper::standalone().expect("start ZooKeeper");
    let connect = server.connect_string();
    let kafka = common::client(&connect).await;
    let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    kafka
        .mkdir("/brokers/ids", &persistent)
        .await
        .expect("mkdir");
    let ephemeral = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    kafka
        .create("/brokers/ids/3", KAFKA_JSON.as_bytes(), &ephemeral)
        .await
        .expect("register");

    let settings = common::settings(&connect, Duration::from_secs(2), "shared");
    let coordination = ZkCoordination::new(settings.clone()).expect("adapter");
    let claimed = common::claim_any(&coordination, 3..4, "i-shared", Duration::from_secs(20))
        .await
        .expect("claim");
    assert_eq!(claimed, BrokerId(3));
    let claim_session = coordination.session_id().await.expect("claim session");
    let watch = RegistrationWatch::new(&connect, Duration::from_secs(2), "")
        .borrowing(coordination.shared_session());

    let seen = watch
        .get(BrokerId(3))
        .await
        .expect("get on the claim session");
    assert_eq!(seen.map(|r| r.broker_id), Some(BrokerId(3)));
    let kafka_session = kafka.session_id().0;
    assert_eq!(
        open_sessions(&server),
        [kafka_session, claim_session].into_iter().collect(),
        "berth reads on its claim session: no second session"
    );

    // Without a claim session the watch still works, on a session of its own.
    coordination.release().await.expect("release");
    let seen = watch
        .get(BrokerId(3))
        .await
        .expect("get on its own session");
    assert_eq!(seen.map(|r| r.broker_id), Some(BrokerId(3)));
    let sessions = open_sessions(&server);
    assert!(
        !sessions.contains(&claim_session),
        "claim session closed: {sessions:?}"
    );
    assert_eq!(
        sessions.len(),
        2,
        "Kafka's and the watch's own: {sessions:?}"
    );
}

/// The partitions a broker replicates, read as ZooKeeper-mode Kafka writes them (the JSON of Kafka 3.9's
/// `TopicZNode` and `TopicPartitionStateZNode`), feed the blank-start rule: before any topic nothing holds the
/// start; a partition whose only in-sync replica is the blank broker, without a live leader, refuses it; once
/// another live broker leads it, the start goes on; a state Kafka did not write cannot be judged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_partitions_a_blank_broker_shares_are_read_from_kafkas_record() {
    use berth_core::replication::blank_start;

    let server = ZooKeeper::standalone().expect("start ZooKeeper");
    let connect = server.connect_string();
    let watch = RegistrationWatch::new(&connect, Duration::from_secs(2), "/kafka");
    let nothing = watch.replicated_by(BrokerId(0)).await.expect("read");
    assert_eq!(blank_start(&nothing, BrokerId(0)), Ok(0), "no topic yet");

    let kafka = common::client(&connect).await;
    write_orders_as_kafka_does(&kafka).await;

    let view = watch.replicated_by(BrokerId(0)).await.expect("read");
    assert_eq!(view.live_brokers.len(), 2, "{view:?}");
    assert_eq!(
        view.partitions.len(),
        1,
        "only the partitions broker 0 replicates: {view:?}"
    );
    let refusal = blank_start(&view, BrokerId(0))
        .expect_err("broker 0 is the only in-sync replica of orders-0");
    assert_eq!(refusal.unled, ["orders-0"]);

    kafka
        .set_data(
            "/kafka/brokers/topics/orders/partitions/0/state",
            partition_state(2, "2").as_bytes(),
            None,
        )
        .await
        .expect("led by 2");
    let view = watch.replicated_by(BrokerId(0)).await.expect("read");
    assert_eq!(blank_start(&view, BrokerId(0)), Ok(1));

    kafka
        .set_data(
            "/kafka/brokers/topics/orders/partitions/0/state",
            b"{}",
            None,
        )
        .await
        .expect("unreadable state");
    let view = watch.replicated_by(BrokerId(0)).await.expect("read");
    let refusal = blank_start(&view, BrokerId(0)).expect_err("cannot judge");
    assert_eq!(
        refusal.cannot_judge,
        ["/kafka/brokers/topics/orders/partitions/0/state: no partition state Kafka writes"]
    );
}

/// Topic `orders` as Kafka 3.9 writes it: partition 0 on brokers 0-2, broker 0 its only in-sync replica and no
/// leader; partition 1 on brokers 1-2, led by 1; brokers 1 and 2 registered.
async fn write_orders_as_kafka_does(kafka: &zk::Client) {
    let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let ephemeral = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    for dir in [
        "/kafka/brokers/ids",
        "/kafka/brokers/topics/orders/partitions/0",
        "/kafka/brokers/topics/orders/partitions/1",
    ] {
        kafka.mkdir(dir, &persistent).await.expect("mkdir");
    }
    kafka
        .set_data(
            "/kafka/brokers/topics/orders",
            br#"{"partitions":{"0":[0,1,2],"1":[1,2]},"topic_id":"vTl3XtVwRRqCXSDIaWdsRw","adding_replicas":{},"removing_replicas":{},"version":3}"#,
            None,
        )
        .await
        .expect("assignment");
    kafka
        .create(
            "/kafka/brokers/topics/orders/partitions/0/state",
            partition_state(-1, "0").as_bytes(),
            &persistent,
        )
        .await
        .expect("state 0");
    kafka
        .create(
            "/kafka/brokers/topics/orders/partitions/1/state",
            partition_state(1, "1,2").as_bytes(),
            &persistent,
        )
        .await
        .expect("state 1");
    for id in [1, 2] {
        kafka
            .create(
                &format!("/kafka/brokers/ids/{id}"),
                KAFKA_JSON.as_bytes(),
                &ephemeral,
            )
            .await
            .expect("register");
    }
}

/// A partition's `state` znode as Kafka writes it.
fn partition_state(leader: i32, isr: &str) -> String {
    format!(
        r#"{{"controller_epoch":2,"leader":{leader},"version":1,"leader_epoch":4,"isr":[{isr}]}}"#
    )
}
