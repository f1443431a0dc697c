//! berth's Kafka client against real Apache Kafka 4.x whose every listener is secured, with certificates and
//! SCRAM users the test makes itself (openssl; the storage tool's `--add-scram` at format time).
//!
//! One broker-and-controller node, run by berth's process supervisor, serves the whole file (a JVM start costs
//! 5-30 s here): `INTERNAL` is `SASL_SSL` (SCRAM-SHA-512 for the brokers and berth, SCRAM-SHA-256 and PLAIN
//! enabled too) and the listener berth probes; `CLIENT` is `SSL` with client certificates required, bound to
//! every address; `CONTROLLER` is `SSL` with client certificates required. An authorizer (KRaft's
//! StandardAuthorizer) gives berth's principal only the ACLs the test grants.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use berth_core::ports::{Broker, BrokerSpec, StepError};
use berth_core::replication::{catch_up, stop_safety, ReplicationView, StopSafety};
use berth_core::security::{SaslMechanism, Secret, SecurityProtocol};
use berth_core::BrokerId;
use berth_core::ServingEvidence;
use berth_kafka::client::{KafkaClient, Peer};
use berth_kafka::probe::{self, ProbeError, ProbeTarget};
use berth_kafka::quorum::{self, Quorum};
use berth_kafka::settings::{ClientSettings, SaslSettings, TlsSettings};
use berth_kafka::KafkaBroker;
use berth_testkit::kafka::security::{add_scram_arguments, ClientAuth, Issued, Pki, ScramUser};
use berth_testkit::kafka::{Client, TopicSpec};
use common::real::{self, BerthSide, RealHost};
use common::stop_cleanly;

/// The brokers' own SCRAM-SHA-512 user (inter-broker), a super user.
const BROKER_PASSWORD: &str = "broker-secret-3f9a";
/// berth's SCRAM-SHA-512 password (given to berth as its environment file would).
const BERTH_PASSWORD: &str = "berth-secret-71c2";
/// berth's SCRAM-SHA-256 password (the same user, the other mechanism).
const BERTH_256_PASSWORD: &str = "berth-secret-256-e04d";
/// berth's PLAIN password (PLAIN's users live in the listener's JAAS settings).
const PLAIN_PASSWORD: &str = "berth-plain-5b18";
/// How long a probe may take (TLS and SASL included).
const ASK: Duration = Duration::from_secs(15);

/// Everything the node and its clients need.
struct Secured {
    host: RealHost,
    pki: Pki,
    broker_cert: Issued,
    berth_cert: Issued,
    client_port: u16,
}

impl Secured {
    fn new() -> Self {
        let mut host = RealHost::kraft();
        let client_port = berth_testkit::free_port();
        let pki = Pki::create(&host.dir.path().join("pki"), "berth test CA").expect("a CA");
        let loopback = [IpAddr::V4(Ipv4Addr::LOCALHOST)];
        let broker_cert = pki
            .issue("broker", &loopback, &["broker-1.kafka.test"])
            .expect("the broker's certificate");
        let berth_cert = pki
            .issue("berth", &[], &[])
            .expect("berth's client certificate");
        host.write_operator_properties(&operator_properties(
            &host,
            client_port,
            &pki,
            &broker_cert,
        ));
        let wrapper = format_wrapper(&host);
        host.berth = berth_side(&pki, &berth_cert, &wrapper);
        Self {
            host,
            pki,
            broker_cert,
            berth_cert,
            client_port,
        }
    }

    fn sasl(&self, mechanism: SaslMechanism, password: &str) -> KafkaClient {
        KafkaClient::new(&ClientSettings {
            protocol: SecurityProtocol::SaslSsl,
            sasl: Some(sasl_settings(mechanism, password)),
            tls: Some(tls_settings(&self.pki, None, "")),
        })
        .expect("a SASL_SSL client")
    }

    fn ssl(&self, certificate: Option<&Issued>) -> KafkaClient {
        KafkaClient::new(&ClientSettings {
            protocol: SecurityProtocol::Ssl,
            sasl: None,
            tls: Some(tls_settings(&self.pki, certificate, "")),
        })
        .expect("an SSL client")
    }

    /// berth's own client with other TLS settings.
    fn berths_with(&self, tls: TlsSettings) -> KafkaClient {
        KafkaClient::new(&ClientSettings {
            tls: Some(tls),
            ..self.host.berth.security.clone()
        })
        .expect("a client")
    }

    fn target(&self, port: u16) -> ProbeTarget {
        ProbeTarget {
            listener: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            broker_id: 1,
            host: "127.0.0.1".into(),
            port,
        }
    }

    /// Kafka's tools as the super user, through the mTLS client listener.
    fn admin(&self) -> Client {
        let auth = ClientAuth::Ssl {
            ca: self.pki.ca(),
            client: self.broker_cert.clone(),
        };
        Client::new(
            &self.host.install,
            format!("127.0.0.1:{}", self.client_port),
            Vec::new(),
        )
        .secured(&auth, &self.host.dir.path().join("admin.properties"))
        .expect("an admin client")
    }
}

/// The operator's `server.properties`: every listener secured, an authorizer, the brokers as super users.
fn operator_properties(
    host: &RealHost,
    client_port: u16,
    pki: &Pki,
    broker_cert: &Issued,
) -> String {
    let jaas = |module: &str, options: &str| {
        format!("org.apache.kafka.common.security.{module} required{options};")
    };
    format!(
        "# the operator's file: every listener secured\n\
         process.roles=broker,controller\nnode.id=-1\n\
         listeners=INTERNAL://127.0.0.1:{port},CLIENT://0.0.0.0:{client_port},CONTROLLER://127.0.0.1:{cport}\n\
         controller.listener.names=CONTROLLER\ninter.broker.listener.name=INTERNAL\n\
         listener.security.protocol.map=INTERNAL:SASL_SSL,CLIENT:SSL,CONTROLLER:SSL\n\
         sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN\n\
         sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512\n\
         listener.name.internal.scram-sha-512.sasl.jaas.config={scram512}\n\
         listener.name.internal.scram-sha-256.sasl.jaas.config={scram256}\n\
         listener.name.internal.plain.sasl.jaas.config={plain}\n\
         ssl.keystore.type=PEM\nssl.keystore.location={keystore}\n\
         ssl.truststore.type=PEM\nssl.truststore.location={ca}\n\
         listener.name.client.ssl.client.auth=required\n\
         listener.name.controller.ssl.client.auth=required\n\
         authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\n\
         super.users=User:broker;User:CN=broker\n\
         log.dirs=/nonexistent\noffsets.topic.replication.factor=1\n\
         transaction.state.log.replication.factor=1\ntransaction.state.log.min.isr=1\n\
         group.initial.rebalance.delay.ms=0",
        port = host.port,
        cport = host.controller_port,
        scram512 = jaas(
            "scram.ScramLoginModule",
            &format!(" username=\"broker\" password=\"{BROKER_PASSWORD}\"")
        ),
        scram256 = jaas("scram.ScramLoginModule", ""),
        plain = jaas(
            "plain.PlainLoginModule",
            &format!(" user_berth=\"{PLAIN_PASSWORD}\"")
        ),
        keystore = broker_cert.bundle.display(),
        ca = pki.ca().display(),
    )
}

/// The operator's storage-tool wrapper, which adds the SCRAM users when berth formats the blank volume.
fn format_wrapper(host: &RealHost) -> std::path::PathBuf {
    let users = [
        ScramUser::new("SCRAM-SHA-512", "broker", BROKER_PASSWORD),
        ScramUser::new("SCRAM-SHA-512", "berth", BERTH_PASSWORD),
        ScramUser::new("SCRAM-SHA-256", "berth", BERTH_256_PASSWORD),
    ];
    let wrapper = host.dir.path().join("kafka-storage-format");
    let launcher: Vec<String> = host
        .install
        .command("format")
        .into_iter()
        .chain(add_scram_arguments(&users))
        .map(|word| format!("'{word}'"))
        .collect();
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nexec {} \"$@\"\n", launcher.join(" ")),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o700)).unwrap();
    wrapper
}

/// berth's side: it probes `INTERNAL` (SASL_SSL, SCRAM-SHA-512), asks the controllers with its certificate and
/// formats through `wrapper`.
fn berth_side(pki: &Pki, berth_cert: &Issued, wrapper: &std::path::Path) -> BerthSide {
    let berth = ClientSettings {
        protocol: SecurityProtocol::SaslSsl,
        sasl: Some(sasl_settings(SaslMechanism::ScramSha512, BERTH_PASSWORD)),
        tls: Some(tls_settings(pki, None, "")),
    };
    BerthSide {
        listener_name: "INTERNAL".into(),
        security: berth,
        controller_security: ClientSettings {
            protocol: SecurityProtocol::Ssl,
            sasl: None,
            tls: Some(tls_settings(pki, Some(berth_cert), "")),
        },
        format_command: Some(vec![wrapper.display().to_string()]),
    }
}

/// Runs `acl` (AclCommand's arguments) as the super user.
async fn acl(secured: &Secured, arguments: &[&str]) {
    let admin = secured.admin();
    let arguments: Vec<String> = arguments.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let words: Vec<&str> = arguments.iter().map(String::as_str).collect();
        admin
            .acl(&words)
            .unwrap_or_else(|error| panic!("AclCommand {words:?}: {error}"))
    })
    .await
    .unwrap();
}

/// Allows berth's principal `operation` on every topic.
async fn allow_on_every_topic(secured: &Secured, operation: &str) {
    let arguments = [
        "--add",
        "--allow-principal",
        "User:berth",
        "--operation",
        operation,
    ];
    acl(secured, &[&arguments[..], &["--topic", "*"]].concat()).await;
}

/// Asks the adapter for the replication until `done` holds (ACLs reach the broker on Kafka's schedule).
async fn replication_until(
    broker: &berth_kafka::KafkaBroker,
    spec: &berth_core::ports::BrokerSpec,
    what: &str,
    done: impl Fn(&Result<ReplicationView, StepError>) -> bool,
) -> Result<ReplicationView, StepError> {
    let mut last = String::new();
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let seen = broker.replication(spec).await;
            if done(&seen) {
                return seen;
            }
            last = format!("{seen:?}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("{what} within 60 s; last seen: {last}"))
}

/// An answer that cannot be judged, for a reason with `words`.
fn unjudged(seen: &Result<ReplicationView, StepError>, words: &str) -> bool {
    matches!(seen, Ok(view) if view.cannot_judge.iter().any(|reason| reason.contains(words)))
}

/// Neither caught up nor safe to stop, and the reasons say why (`words`).
fn assert_fails_closed(view: &ReplicationView, words: &str) {
    let progress = catch_up(view, BrokerId(1));
    assert!(!progress.caught_up(), "{progress}");
    assert!(progress.to_string().contains(words), "{progress}");
    let safety = stop_safety(view, BrokerId(1));
    assert!(
        matches!(&safety, StopSafety::CannotJudge { reasons } if reasons.iter().any(|r| r.contains(words))),
        "{safety}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_berth_makes_speaks_the_clusters_security_and_fails_closed() {
    let secured = Secured::new();
    let broker = secured.host.broker();
    let spec = secured.host.spec(1);
    let evidence = formatted_and_serving(&secured, &broker, &spec).await;
    other_mechanisms_and_what_must_fail(&secured).await;
    the_client_listener_wants_a_certificate(&secured).await;
    describe_quorum_over_mutual_tls(&secured).await;
    replication_fails_closed_until_berth_may_read(&secured, &broker, &spec).await;
    an_acl_hiding_a_hosted_topic_fails_closed(&secured, &broker, &spec, &evidence.detail).await;
    stop_cleanly(&broker, Duration::from_secs(60)).await;
}

/// berth formats the blank volume through the operator's wrapper (SCRAM users added), starts Kafka and proves it
/// serving through SASL_SSL with SCRAM-SHA-512; every operator listener is advertised; the format's file is gone.
async fn formatted_and_serving(
    secured: &Secured,
    broker: &KafkaBroker,
    spec: &BrokerSpec,
) -> ServingEvidence {
    let host = &secured.host;
    let evidence = real::serving(broker, spec).await;
    assert!(
        evidence.detail.starts_with(&format!(
            "Metadata v12 lists broker 1 at 127.0.0.1:{}",
            host.port
        )),
        "{}",
        evidence.detail
    );
    // Every operator listener is advertised: CLIENT (bound to all addresses) and CONTROLLER on the ENI address.
    let overlay = std::fs::read_to_string(host.overlay()).unwrap();
    let advertised = format!(
        "advertised.listeners=INTERNAL://127.0.0.1:{},CLIENT://127.0.0.1:{},CONTROLLER://127.0.0.1:{}\n",
        host.port, secured.client_port, host.controller_port
    );
    assert!(overlay.contains(&advertised), "{overlay}");
    let leftovers: Vec<String> = std::fs::read_dir(host.overlay().parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".berth-format"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "the storage tool's file is removed: {leftovers:?}"
    );
    broker
        .check(spec)
        .await
        .expect("the health check speaks SASL_SSL too");

    evidence
}

/// SCRAM-SHA-256 and PLAIN serve too; a wrong password, an unknown CA and a name the certificate lacks are refused,
/// each named, no password shown.
async fn other_mechanisms_and_what_must_fail(secured: &Secured) {
    let host = &secured.host;
    let internal = secured.target(host.port);
    for (mechanism, password) in [
        (SaslMechanism::ScramSha256, BERTH_256_PASSWORD),
        (SaslMechanism::Plain, PLAIN_PASSWORD),
    ] {
        probe::probe(&secured.sasl(mechanism, password), &internal, ASK)
            .await
            .unwrap_or_else(|error| panic!("{mechanism:?}: {error}"));
    }
    let wrong = probe::probe(
        &secured.sasl(SaslMechanism::ScramSha512, "not-the-password"),
        &internal,
        ASK,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&wrong, ProbeError::Authentication { detail, .. } if detail.contains("SaslAuthenticationFailed")),
        "{wrong}"
    );
    assert!(!wrong.to_string().contains("not-the-password"), "{wrong}");
    let other_ca = Pki::create(&host.dir.path().join("other-pki"), "another CA").unwrap();
    let untrusted = secured.berths_with(tls_settings(&other_ca, None, ""));
    let error = probe::probe(&untrusted, &internal, ASK).await.unwrap_err();
    assert!(matches!(error, ProbeError::Tls { .. }), "{error}");
    let named = |name: &str| secured.berths_with(tls_settings(&secured.pki, None, name));
    probe::probe(&named("broker-{id}.kafka.test"), &internal, ASK)
        .await
        .expect("the certificate's DNS name for broker 1");
    let error = probe::probe(&named("broker-{id}.elsewhere.test"), &internal, ASK)
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProbeError::Tls { .. })
            && error.to_string().contains("certificate not valid for name"),
        "{error}"
    );
}

/// The client listener wants a client certificate.
async fn the_client_listener_wants_a_certificate(secured: &Secured) {
    let client_listener = secured.target(secured.client_port);
    probe::probe(
        &secured.ssl(Some(&secured.berth_cert)),
        &client_listener,
        ASK,
    )
    .await
    .expect("mutual TLS");
    let anonymous = probe::probe(&secured.ssl(None), &client_listener, ASK).await;
    assert!(
        anonymous.is_err(),
        "no client certificate, no answer: {anonymous:?}"
    );
}

/// DescribeQuorum on the controllers' listener (SSL, client certificate), as berth asks before formatting: refused
/// until berth may describe the cluster, then answered; a controller berth cannot talk to is never silence.
async fn describe_quorum_over_mutual_tls(secured: &Secured) {
    let host = &secured.host;
    let controller = Peer::new(
        1,
        SocketAddr::from((Ipv4Addr::LOCALHOST, host.controller_port)),
    );
    let with_certificate = secured.ssl(Some(&secured.berth_cert));
    let refused = quorum::describe(&with_certificate, controller, ASK)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("error 31"),
        "DescribeQuorum needs DESCRIBE on the cluster (CLUSTER_AUTHORIZATION_FAILED): {refused}"
    );
    acl(
        secured,
        &[
            "--add",
            "--allow-principal",
            "User:CN=berth",
            "--operation",
            "Describe",
            "--cluster",
        ],
    )
    .await;
    let view = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match quorum::describe(&with_certificate, controller, ASK).await {
                Ok(view) => return view,
                Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
            }
        }
    })
    .await
    .expect("DescribeQuorum through mutual TLS once berth may describe the cluster");
    assert_eq!(view.leader_id, 1);
    // A controller berth cannot talk to answers all the same: never silence, never a fresh cluster.
    let seen = quorum::observe(&secured.ssl(None), &[controller], ASK).await;
    assert!(matches!(seen, Quorum::Undescribed(_)), "{seen:?}");
    let seen = quorum::observe(&KafkaClient::plaintext(), &[controller], ASK).await;
    assert!(matches!(seen, Quorum::Undescribed(_)), "{seen:?}");
}

/// The replication read fails closed while berth's principal may not see what this broker hosts (no DESCRIBE,
/// then no DESCRIBE_CONFIGS), and reads once it may.
async fn replication_fails_closed_until_berth_may_read(
    secured: &Secured,
    broker: &KafkaBroker,
    spec: &BrokerSpec,
) {
    let admin = secured.admin();
    tokio::task::spawn_blocking(move || {
        admin
            .create_topic(&TopicSpec {
                name: "orders".into(),
                partitions: 2,
                replication_factor: 1,
                configs: vec![("min.insync.replicas".into(), "1".into())],
            })
            .expect("topic created")
    })
    .await
    .unwrap();
    let hidden = replication_until(broker, spec, "orders hidden from berth", |seen| {
        unjudged(seen, "log dirs hold topic orders")
    })
    .await
    .unwrap();
    assert_fails_closed(&hidden, "error 29 (TopicAuthorizationFailed)");

    allow_on_every_topic(secured, "Describe").await;
    let no_configs = replication_until(broker, spec, "orders described", |seen| {
        unjudged(seen, "DescribeConfigs of topic orders answered error 29")
    })
    .await
    .unwrap();
    assert_fails_closed(&no_configs, "DescribeConfigs of topic orders");

    allow_on_every_topic(secured, "DescribeConfigs").await;
    let view = replication_until(broker, spec, "the replication readable", Result::is_ok)
        .await
        .unwrap();
    let progress = catch_up(&view, BrokerId(1));
    assert!(
        progress.caught_up() && progress.hosted == 2,
        "{progress} {view:?}"
    );
    assert!(
        view.partitions.iter().all(|p| p.min_insync == 1),
        "{view:?}"
    );
}

/// An ACL that hides a topic this broker hosts: not caught up, not safe to stop, and why; no secret in what is
/// shown.
async fn an_acl_hiding_a_hosted_topic_fails_closed(
    secured: &Secured,
    broker: &KafkaBroker,
    spec: &BrokerSpec,
    evidence: &str,
) {
    acl(
        secured,
        &[
            "--add",
            "--deny-principal",
            "User:berth",
            "--operation",
            "Describe",
            "--topic",
            "orders",
        ],
    )
    .await;
    let denied = replication_until(broker, spec, "orders denied to berth", |seen| {
        unjudged(seen, "log dirs hold topic orders")
    })
    .await
    .unwrap();
    assert_fails_closed(&denied, "TopicAuthorizationFailed");
    let shown = format!("{denied:?} {}", evidence);
    for secret in [
        BROKER_PASSWORD,
        BERTH_PASSWORD,
        BERTH_256_PASSWORD,
        PLAIN_PASSWORD,
    ] {
        assert!(!shown.contains(secret));
    }
}

fn sasl_settings(mechanism: SaslMechanism, password: &str) -> SaslSettings {
    SaslSettings {
        mechanism,
        username: "berth".into(),
        password: Secret::new(password),
    }
}

/// TLS trusting `pki`'s CA, showing `client`'s certificate if any, verifying `server_name` (empty: the address).
fn tls_settings(pki: &Pki, client: Option<&Issued>, server_name: &str) -> TlsSettings {
    common::tls_settings(
        &pki.ca(),
        client.map(|c| (c.cert.as_path(), c.key.as_path())),
        server_name,
    )
}
