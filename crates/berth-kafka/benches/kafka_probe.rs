//! How fast berth sees Kafka serving, and what a health check costs, against a real ZooKeeper and the Kafka
//! stand-in of the same build (`make bench-build` builds both).
//!
//! - register_to_healthy_ms: from the registration znode's creation (its ZooKeeper ctime) to `start()`
//!   returning, median of several starts; berth is already waiting on its watch when the stand-in registers.
//! - check_ms: one `check()` (registration read + ApiVersions/Metadata), median over many, on loopback. The
//!   listener is reached through a counting TCP relay, so this includes the relay's hop (an upper bound).
//! - connections_per_check: TCP connections the relay accepted per check.
//!
//! Prints one line: `kafka-probe register_to_healthy_ms=.. check_ms=.. connections_per_check=..`.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_core::ports::{Broker, BrokerSpec, Deadline};
use berth_core::{BrokerId, KafkaMode};
use berth_kafka::format::Formatter;
use berth_kafka::supervisor::RestartPolicy;
use berth_kafka::{KafkaBroker, KafkaSettings, RegistrationSettings, Supervision};
use berth_testkit::zk::ZooKeeper;
use tokio::net::{TcpListener, TcpStream};

const STARTS: usize = 5;
const CHECKS: usize = 300;

/// The stand-in of this benchmark's own build (`make bench-build`), never a debug one.
fn standin() -> PathBuf {
    berth_testkit::bench::own_binary("kafka-standin").unwrap_or_else(|error| {
        println!(
            "kafka-probe error={error:?} {}",
            berth_testkit::bench::load_field()
        );
        std::process::exit(1)
    })
}

/// Relays every connection to `upstream`, counting them.
async fn relay(listener: TcpListener, upstream: u16, accepted: Arc<AtomicU64>) {
    while let Ok((mut inbound, _)) = listener.accept().await {
        accepted.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", upstream)).await {
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let zk = ZooKeeper::standalone().expect("a real ZooKeeper");
    let dir = tempfile::tempdir().unwrap();
    let advertised = berth_testkit::free_port();
    let real = berth_testkit::free_port();
    let accepted = Arc::new(AtomicU64::new(0));
    let listener = TcpListener::bind(("127.0.0.1", advertised)).await.unwrap();
    tokio::spawn(relay(listener, real, accepted.clone()));

    let settings = settings(&zk, dir.path(), advertised, real);
    let broker =
        KafkaBroker::with_restart_policy(settings, RestartPolicy::default()).expect("the adapter");
    let spec = BrokerSpec {
        voters: Default::default(),
        broker_id: BrokerId(0),
        advertised_ip: Ipv4Addr::LOCALHOST,
        rack: "az-a".into(),
        log_dirs: vec![dir.path().join("data")],
    };
    let client = zookeeper_client::Client::connect(&zk.connect_string())
        .await
        .unwrap();

    let register_to_healthy = register_to_healthy(&broker, &spec, &client).await;
    let (checks, connections) = check_times(&broker, &spec, &accepted).await;

    let max = register_to_healthy.iter().cloned().fold(f64::MIN, f64::max);
    let mut sorted = checks.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let p99 = sorted[(CHECKS * 99) / 100];
    println!(
        "kafka-probe register_to_healthy_ms={:.1} register_to_healthy_max_ms={max:.1} check_ms={:.2} \
         check_p99_ms={p99:.2} connections_per_check={:.2} starts={STARTS} checks={CHECKS} {}",
        median(register_to_healthy),
        median(checks),
        connections as f64 / CHECKS as f64,
        berth_testkit::bench::load_field()
    );
}

/// The broker's settings: the stand-in (300 ms start delay) as a child, binding `real` but advertising the relay's
/// port `advertised`, which berth probes; registrations under `/kafka` in `zk`.
fn settings(zk: &ZooKeeper, dir: &std::path::Path, advertised: u16, real: u16) -> KafkaSettings {
    let server = dir.join("server.properties");
    std::fs::write(
        &server,
        format!(
            "listeners=PLAINTEXT://127.0.0.1:{real}\nzookeeper.connect={}/kafka\nzookeeper.session.timeout.ms=2000\n",
            zk.connect_string()
        ),
    )
    .unwrap();
    KafkaSettings {
        mode: KafkaMode::Zookeeper,
        supervision: Supervision::Process {
            command: vec![
                standin().display().to_string(),
                "--start-delay".into(),
                "300ms".into(),
                server.display().to_string(),
            ],
        },
        overlay_path: dir.join("berth.properties"),
        listener_name: "PLAINTEXT".into(),
        port: advertised,
        check_interval: Duration::from_secs(1),
        stop_timeout: Duration::from_secs(5),
        controller_port: 9093,
        quorum_voters: false,
        controller_ids: Vec::new(),
        broker_count: 1,
        formatter: Formatter {
            command: Vec::new(),
            server_properties: PathBuf::new(),
            unit: None,
        },
        cluster_id: None,
        registrations: RegistrationSettings {
            connect: zk.connect_string(),
            session_timeout: Duration::from_secs(6),
            kafka_chroot: "/kafka".into(),
        },
        security: Default::default(),
        controller_security: Default::default(),
    }
}

/// Milliseconds from the registration znode's creation to `start()` returning, for each of [`STARTS`] starts.
async fn register_to_healthy(
    broker: &KafkaBroker,
    spec: &BrokerSpec,
    client: &zookeeper_client::Client,
) -> Vec<f64> {
    let mut register_to_healthy = Vec::new();
    for _ in 0..STARTS {
        broker
            .start(spec, Deadline::after(Duration::from_secs(30)))
            .await
            .expect("serving");
        let detected = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros() as f64
            / 1000.0;
        let (_, stat) = client
            .get_data("/kafka/brokers/ids/0")
            .await
            .expect("registered");
        register_to_healthy.push(detected - stat.ctime as f64);
        broker
            .stop(Deadline::after(Duration::from_secs(10)))
            .await
            .expect("stopped");
    }

    register_to_healthy
}

/// [`CHECKS`] checks of a serving broker after a warm-up, in milliseconds each, and the connections the relay
/// accepted for them.
async fn check_times(
    broker: &KafkaBroker,
    spec: &BrokerSpec,
    accepted: &AtomicU64,
) -> (Vec<f64>, u64) {
    broker
        .start(spec, Deadline::after(Duration::from_secs(30)))
        .await
        .expect("serving");
    for _ in 0..20 {
        broker.check(spec).await.expect("warm-up check");
    }
    let before = accepted.load(Ordering::SeqCst);
    let mut checks = Vec::with_capacity(CHECKS);
    for _ in 0..CHECKS {
        let started = Instant::now();
        broker.check(spec).await.expect("healthy");
        checks.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let connections = accepted.load(Ordering::SeqCst) - before;
    broker
        .stop(Deadline::after(Duration::from_secs(10)))
        .await
        .expect("stopped");

    (checks, connections)
}
