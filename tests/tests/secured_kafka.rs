//! Secured Kafka on the simulated fleet (issue 26): Apache Kafka 4.x in KRaft mode whose only listeners are
//! secured, under systemd, with certificates, SCRAM users and berth's credentials made by the test kit
//! (`berth_testkit::kafka::security::ClusterSecurity`) and given to berth as systemd credentials
//! (`LoadCredential=`). The test's clients (kcat, Kafka's tools) use the same security.
//!
//! * `SASL_SSL` (SCRAM-SHA-512) for clients and brokers, `SSL` with client certificates for controllers, one
//!   fleet through: the boot; a killed broker replaced by the same broker with every acks=all record read back
//!   once; an instance refresh of every group with a producer running, no write lost or refused; then an ACL
//!   that hides a topic every broker hosts from berth's principal: a drain is not judged safe and a replacement
//!   does not report caught up, each saying why in the journal and `/state`; the ACL removed, both complete.
//!   Last, no configured secret appears in any host's journal, `/state` or `berth check-config`.
//! * The same with mutual TLS (`SSL` with client certificates) for clients and brokers: boot, kill and
//!   replace, roll.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use berth_config::ClaimBackend;
use berth_sim::kafka::{self as fleet_kafka, blocking};
use berth_sim::roll::{self, RollOptions};
use berth_sim::{asg, Fleet, FleetOptions, HostKind, SimKafka, StateView};
use berth_testkit::kafka::security::SecuredListeners;
use berth_testkit::kafka::Client;

const BOOT: Duration = Duration::from_secs(240);
const TOPIC: &str = "secured-e2e";
/// Records produced before a kill, and while the broker is away.
const BATCH: u32 = 1_000;

fn options(listeners: SecuredListeners) -> FleetOptions {
    FleetOptions {
        host_kind: HostKind::Systemd,
        kafka: SimKafka::Kraft,
        claim_backend: ClaimBackend::Ec2,
        security: Some(listeners),
        ..FleetOptions::default()
    }
}

#[test]
fn a_sasl_ssl_fleet_boots_replaces_rolls_and_fails_closed_under_an_acl() {
    if !berth_testkit::require_root(
        "a_sasl_ssl_fleet_boots_replaces_rolls_and_fails_closed_under_an_acl",
    ) {
        return;
    }
    asg::with_group(options(SecuredListeners::SaslSsl), |fleet| async move {
        let started = Instant::now();
        let client = boot_replace_roll(&fleet).await?;
        acl_hides_a_hosted_topic(&fleet, &client).await?;
        no_secret_anywhere(&fleet).await?;
        println!(
            "SASL_SSL fleet: total {:.1}s",
            started.elapsed().as_secs_f64()
        );
        Ok(())
    })
    .expect("a SASL_SSL fleet");
}

#[test]
fn a_mutual_tls_fleet_boots_replaces_and_rolls() {
    if !berth_testkit::require_root("a_mutual_tls_fleet_boots_replaces_and_rolls") {
        return;
    }
    asg::with_group(options(SecuredListeners::MutualTls), |fleet| async move {
        let started = Instant::now();
        boot_replace_roll(&fleet).await?;
        println!("mTLS fleet: total {:.1}s", started.elapsed().as_secs_f64());
        Ok(())
    })
    .expect("a mutual TLS fleet");
}

/// The boot (berth's principal then granted what it needs), a killed broker replaced, and a roll of every group;
/// returns the test's client.
async fn boot_replace_roll(fleet: &Fleet) -> anyhow::Result<Client> {
    let started = Instant::now();
    let install = fleet.kafka().context("Apache Kafka installed")?.clone();
    let security = fleet.security().context("a secured fleet")?.clone();
    let states = booted(fleet).await?;
    println!("booted in {:.1}s", started.elapsed().as_secs_f64());
    let client = fleet_kafka::client(fleet, &install);
    // berth's principal reads the replication (DESCRIBE, DESCRIBE_CONFIGS on every topic) and the quorum
    // (DESCRIBE on the cluster, as its controller certificate's principal).
    let berth = security.berth_principal();
    acl(
        &client,
        &[
            "--add",
            "--allow-principal",
            berth,
            "--operation",
            "Describe",
            "--operation",
            "DescribeConfigs",
            "--topic",
            "*",
        ],
    )?;
    acl(
        &client,
        &[
            "--add",
            "--allow-principal",
            "User:CN=berth",
            "--operation",
            "Describe",
            "--cluster",
        ],
    )?;
    blocking(|| client.create_topic(&fleet_kafka::replicated_topic(TOPIC)))?;
    blocking(|| client.produce_range(TOPIC, 0..BATCH, 0))?;

    let killed = Instant::now();
    let (victim, before) = states.first().context("a host")?.clone();
    fleet.kill_host(victim, None).await?;
    blocking(|| client.produce_range(TOPIC, BATCH..2 * BATCH, 0))?;
    let (_, successor) = asg::replacement_of(fleet, &*fleet.host(victim)?, BOOT).await?;
    let after = fleet.wait_healthy(successor, BOOT).await?;
    ensure!(
        after.broker_id == before.broker_id,
        "the replacement is broker {:?}, not {:?}",
        after.broker_id,
        before.broker_id
    );
    fleet_kafka::consume_exactly(&client, TOPIC, 2 * BATCH)?;
    println!(
        "broker {:?} replaced: Healthy {:.1}s after the kill; {} records read back once",
        after.broker_id,
        killed.elapsed().as_secs_f64(),
        2 * BATCH
    );

    let rolling = Instant::now();
    let report = roll::run(fleet, &RollOptions::default()).await?;
    ensure!(
        report.same_brokers() && report.steps.len() == fleet.options().zones,
        "every replacement is the broker it replaced:\n{}",
        report.describe_steps()
    );
    ensure!(
        report.produced.sent > 0
            && report.produced.unreported() == 0
            && report.produced.failed_produces == 0
            && report.not_enough_replicas() == 0,
        "the producer during the roll: {:?}",
        report.produced
    );
    ensure!(
        report.consumed.is_exact(),
        "lost {:?}, duplicated {:?}",
        report.consumed.missing,
        report.consumed.duplicated
    );
    println!(
        "rolled every group in {:.1}s: {} records acknowledged, 0 lost\n{}",
        rolling.elapsed().as_secs_f64(),
        report.produced.delivered,
        report.describe_steps()
    );
    Ok(client)
}

/// Waits until every group's member is Healthy; the hosts and their states.
async fn booted(fleet: &Fleet) -> anyhow::Result<Vec<(usize, StateView)>> {
    let count = fleet.options().zones * fleet.options().asg.per_zone;
    asg::wait_members(fleet, "every zone launched", BOOT, |m| m.len() == count).await?;
    let mut states = Vec::new();
    for host in fleet.hosts() {
        states.push((host.index, fleet.wait_healthy(host.index, BOOT).await?));
    }
    asg::wait_all_in_service(fleet, BOOT).await?;
    Ok(states)
}

/// Kafka's AclCommand, as the test's client (a super user).
fn acl(client: &Client, arguments: &[&str]) -> anyhow::Result<()> {
    blocking(|| client.tool(&["tool", "org.apache.kafka.tools.AclCommand"], arguments))?;
    Ok(())
}

/// The reason a `/state` gives for waiting, if it names `words`.
fn says(state: &StateView, words: &[&str]) -> Option<String> {
    let texts = [
        state.waiting.as_ref().map(|w| w.reason.clone()),
        state
            .drain_wait
            .as_ref()
            .and_then(|d| d.unsafe_because.clone()),
        state.catch_up.as_ref().map(|c| c.to_string()),
    ];
    texts
        .into_iter()
        .flatten()
        .find(|text| words.iter().all(|w| text.contains(w)))
}

/// A DENY that hides a topic every broker hosts from berth's principal: the drain of a terminated instance is not
/// judged safe, and a killed broker's replacement serves but does not report caught up; the journal and `/state`
/// say why. The ACL removed, the replacement becomes Healthy and the drain completes.
async fn acl_hides_a_hosted_topic(fleet: &Fleet, client: &Client) -> anyhow::Result<()> {
    let started = Instant::now();
    let berth = fleet.security().context("secured")?.berth_principal();
    let deny = [
        "--deny-principal",
        berth,
        "--operation",
        "Describe",
        "--topic",
        TOPIC,
    ];
    acl(client, &[&["--add"][..], &deny].concat())?;
    let hosts = asg::in_service_hosts(fleet);
    let (leaving, dying) = (hosts[0], hosts[1]);
    let leaving_host = fleet.host(leaving)?;
    fleet.aws().with(|plane| {
        plane.autoscaling.terminate(
            &leaving_host.instance.id,
            "a test scales in",
            Instant::now(),
        )
    });
    let words = ["cannot judge", "TopicAuthorizationFailed", TOPIC];
    let drain = fleet
        .wait_for(leaving, "the drain not judged safe", BOOT, |s| {
            says(s, &words).is_some()
        })
        .await?;
    let drain_says = says(&drain, &words).unwrap_or_default();
    ensure!(
        drain.drain_wait.as_ref().is_some_and(|d| d.waiting),
        "the drain waits: {drain_says}"
    );
    fleet.kill_host(dying, None).await?;
    let (_, successor) = asg::replacement_of(fleet, &*fleet.host(dying)?, BOOT).await?;
    let gate = fleet
        .wait_for(successor, "serving but not caught up", BOOT, |s| {
            s.state == "start_kafka"
                && s.catch_up
                    .as_ref()
                    .is_some_and(|c| !c.cannot_judge.is_empty())
        })
        .await?;
    let gate_says = says(&gate, &words).context("the gate says why")?;
    for (host, said) in [(leaving, &drain_says), (successor, &gate_says)] {
        let journal = journal(fleet, host)?;
        ensure!(
            journal.contains("cannot judge") && journal.contains("TopicAuthorizationFailed"),
            "host {host}'s journal does not say why (its /state: {said})"
        );
    }
    println!("under the ACL, the drain: {drain_says}\nthe replacement: {gate_says}");

    acl(client, &[&["--remove", "--force"][..], &deny].concat())?;
    fleet.wait_healthy(successor, BOOT).await?;
    let zone = berth_sim::layout::zone_name(leaving_host.az);
    let (_, next) = asg::replacement_of(fleet, &*leaving_host, BOOT).await?;
    fleet.wait_healthy(next, BOOT).await?;
    println!(
        "ACL removed: the replacement caught up, the drain completed, {zone} replaced; {:.1}s in all",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// berth's journal on a host.
fn journal(fleet: &Fleet, index: usize) -> anyhow::Result<String> {
    let host = fleet.host(index)?;
    let container = host.container().context("a systemd host")?;
    Ok(container.exec(&[
        "journalctl",
        "-u",
        "berth.service",
        "--no-pager",
        "-o",
        "cat",
    ])?)
}

/// No configured secret (the SCRAM passwords, the private keys) in any live host's journal (berth's and Kafka's
/// units), `/state` or `berth check-config` output.
async fn no_secret_anywhere(fleet: &Fleet) -> anyhow::Result<()> {
    let secrets = fleet.security().context("secured")?.secrets();
    ensure!(secrets.len() > 3, "secrets to look for: {secrets:?}");
    for host in fleet.hosts().iter().filter(|h| h.alive()) {
        let container = host.container().context("a systemd host")?;
        let berth_journal = container.exec(&[
            "journalctl",
            "-u",
            "berth.service",
            "--no-pager",
            "-o",
            "json",
        ])?;
        // check-config as an operator runs it on the host, with berth's credentials.
        let check = container.exec(&[
            "env",
            "CREDENTIALS_DIRECTORY=/run/credentials/berth.service",
            "berth",
            "check-config",
        ])?;
        let (_, state) = berth_sim::state::http_get(host.health_address(), "/state").await?;
        for (what, text) in [
            ("journal", &berth_journal),
            ("check-config", &check),
            ("/state", &state),
        ] {
            for secret in &secrets {
                ensure!(
                    !text.contains(secret.as_str()),
                    "host {}: its {what} shows a secret",
                    host.index
                );
            }
        }
        ensure!(
            state.contains("\"broker_id\""),
            "host {}: /state was read: {state}",
            host.index
        );
    }
    Ok(())
}
