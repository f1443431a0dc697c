//! Secured Kafka on the simulated fleet (issue 26): Apache Kafka 4.x in KRaft mode whose only listeners are
//! secured, `SASL_SSL` with SCRAM-SHA-512 for clients and brokers and `SSL` with client certificates for
//! controllers, under systemd, with certificates, SCRAM users and berth's credentials made by the test kit
//! (`berth_testkit::kafka::security::ClusterSecurity`) and given to berth as systemd credentials
//! (`LoadCredential=`). The test's clients (kcat, Kafka's tools) use the same security, as a super user; berth's
//! principals get only the ACLs the test grants.
//!
//! One fleet per security mode (a secured boot costs what a plain one does), each through all its steps: the boot;
//! a killed broker replaced by the same broker with every acks=all record read back once; an instance refresh of
//! every group with a producer running (tests/tests/roll.rs's roll: every record acknowledged is read back once);
//! on the SASL_SSL fleet, an ACL that hides a topic every broker hosts from berth's principal: a drain is not
//! judged safe and a replacement does not report caught up, each saying why in the journal and `/state`; the ACL
//! removed, both complete. Then berth's SCRAM password rotated as docs/operations.md says (its "Secrets" drop-in
//! installed as written, then only the lines this cluster uses). Last, no configured secret appears in any host's
//! journal, `/state` or `berth check-config`.
//!
//! SCRAM needs the hosts' name lookups answered at once: Kafka's SASL server looks up the name of the address
//! each connection came in on, and the fleet's hosts answer that from `/etc/hosts`
//! ([`berth_sim::layout::etc_hosts`]), as EC2's resolver does; without it every SCRAM authentication waited 5 or
//! 10 s on an unreachable nameserver and the test's kcat gave up ("Broker transport failure").

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use berth_config::ClaimBackend;
use berth_sim::kafka::{self as fleet_kafka, blocking};
use berth_sim::roll::{self, RollOptions};
use berth_sim::{asg, Fleet, FleetOptions, SimKafka, StateView};
use berth_testkit::kafka::security::{
    ClientAuth, SecuredListeners, BERTH_PASSWORD, BERTH_ROTATED_PASSWORD, BERTH_SECRETS_DIR,
    BERTH_SECRETS_DROPIN,
};
use berth_testkit::kafka::Client;

const BOOT: Duration = Duration::from_secs(240);
const TOPIC: &str = "secured-e2e";
/// Records produced before a kill, and while the broker is away.
const BATCH: u32 = 1_000;

#[test]
fn a_sasl_ssl_fleet_boots_replaces_rolls_fails_closed_and_keeps_its_secrets() {
    secured_fleet(SecuredListeners::SaslSsl, |fleet| async move {
        let (client, states) = booted_with_client(&fleet).await?;
        replace_killed(&fleet, &client, &states).await?;
        rolled(&fleet).await?;
        acl_hides_a_hosted_topic(&fleet, &client).await?;
        rotated_password(&fleet, &client).await?;
        no_secret_anywhere(&fleet).await
    });
}

#[test]
fn a_mutual_tls_fleet_boots_replaces_rolls_and_keeps_its_secrets() {
    secured_fleet(SecuredListeners::MutualTls, |fleet| async move {
        let (client, states) = booted_with_client(&fleet).await?;
        replace_killed(&fleet, &client, &states).await?;
        rolled(&fleet).await?;
        no_secret_anywhere(&fleet).await
    });
}

/// Runs `scenario` on a fleet (KRaft, EC2 claims) whose listeners are all secured as `listeners` says, and prints
/// how long it took.
fn secured_fleet<F, Fut>(listeners: SecuredListeners, scenario: F)
where
    F: FnOnce(Arc<Fleet>) -> Fut + Send,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    if !berth_testkit::require_root(&format!("secured_kafka {listeners:?}")) {
        return;
    }
    let options = FleetOptions {
        kafka: SimKafka::Kraft,
        claim_backend: ClaimBackend::Ec2,
        security: Some(listeners),
        ..FleetOptions::default()
    };
    let started = Instant::now();
    asg::with_group(options, scenario).unwrap_or_else(|e| panic!("a {listeners:?} fleet: {e:?}"));
    println!(
        "{listeners:?}: total {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// The booted fleet's client (its grants made, the test's topic holding its first batch) and the hosts' states.
async fn booted_with_client(fleet: &Fleet) -> anyhow::Result<(Client, Vec<(usize, StateView)>)> {
    let started = Instant::now();
    let states = booted(fleet).await?;
    let client = granted_client(fleet)?;
    println!("booted in {:.1}s", started.elapsed().as_secs_f64());
    Ok((client, states))
}

/// Waits until every group's member is Healthy and in service; the hosts and their states.
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

/// The test's client, once berth's principals may read what berth reads (DESCRIBE and DESCRIBE_CONFIGS on every
/// topic on the client listener; DESCRIBE on the cluster, for DescribeQuorum, as its controller certificate's
/// principal) and the test's topic holds its first batch.
fn granted_client(fleet: &Fleet) -> anyhow::Result<Client> {
    let install = fleet.kafka().context("Apache Kafka installed")?.clone();
    let security = fleet.security().context("a secured fleet")?;
    let client = fleet_kafka::client(fleet, &install);
    let berth = security.berth_principal();
    let on_topics = [
        "--add",
        "--allow-principal",
        berth,
        "--operation",
        "Describe",
        "--operation",
        "DescribeConfigs",
        "--topic",
        "*",
    ];
    acl(&client, &on_topics)?;
    let on_cluster = [
        "--add",
        "--allow-principal",
        "User:CN=berth",
        "--operation",
        "Describe",
        "--cluster",
    ];
    acl(&client, &on_cluster)?;
    blocking(|| client.create_topic(&fleet_kafka::replicated_topic(TOPIC)))?;
    blocking(|| client.produce_range(TOPIC, 0..BATCH, 0))?;
    Ok(client)
}

/// A killed broker's host: the group's replacement becomes the same broker, and every acks=all record written
/// before and while it was away is read back once.
async fn replace_killed(
    fleet: &Fleet,
    client: &Client,
    states: &[(usize, StateView)],
) -> anyhow::Result<()> {
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
    // Every replica back in sync (kcat's metadata, polled) before the records are read back.
    blocking(|| {
        fleet_kafka::wait_fully_replicated(client, TOPIC, BOOT).map_err(anyhow::Error::msg)
    })?;
    fleet_kafka::consume_exactly(client, TOPIC, 2 * BATCH)?;
    println!(
        "broker {:?} replaced: Healthy {:.1}s after the kill; {} records read back once",
        after.broker_id,
        killed.elapsed().as_secs_f64(),
        2 * BATCH
    );
    Ok(())
}

/// An instance refresh of every group with a producer writing (`acks=all`) all along, as
/// tests/tests/roll.rs runs it on a plain fleet: every old instance drained, every replacement the same broker,
/// no write failed or refused, every record read back once.
async fn rolled(fleet: &Fleet) -> anyhow::Result<()> {
    let report = roll::run(fleet, &RollOptions::default()).await?;
    println!(
        "rolled: {} steps in {:.1}s, max step {:.1}s; {}",
        report.steps.len(),
        report.total.as_secs_f64(),
        report.max_step().as_secs_f64(),
        report.describe_writes()
    );
    report.verify(fleet)
}

/// docs/operations.md's rotation of berth's Kafka password, run as written on the live cluster: the new SCRAM
/// credential (kafka-configs.sh, as a super user) turns every host's `/health` 503 while Kafka keeps serving; the
/// credential file replaced and berth restarted on each host, every berth judges its broker caught up and Healthy
/// again through the new password (Kafka never restarted), and the old password is refused.
async fn rotated_password(fleet: &Fleet, client: &Client) -> anyhow::Result<()> {
    let started = Instant::now();
    let hosts = asg::in_service_hosts(fleet);
    let mut before = Vec::new();
    for &index in &hosts {
        before.push((index, fleet.state(index).await?, kafka_pid(fleet, index)?));
    }
    let credential = format!("SCRAM-SHA-512=[password={BERTH_ROTATED_PASSWORD}]");
    blocking(|| {
        client.tool(
            &["tool", "org.apache.kafka.tools.ConfigCommand"],
            &[
                "--alter",
                "--add-config",
                &credential,
                "--entity-type",
                "users",
                "--entity-name",
                "berth",
            ],
        )
    })?;
    for &index in &hosts {
        let refused = fleet
            .wait_for(index, "/health 503: the old password refused", BOOT, |s| {
                !s.healthy
                    && s.last_error
                        .as_deref()
                        .is_some_and(|e| e.contains("SaslAuthenticationFailed"))
            })
            .await?;
        println!("host {index} before its restart: {:?}", refused.last_error);
    }
    documented_dropin_needs_every_file(fleet, hosts[0]).await?;
    for (index, state, kafka) in &before {
        restarted_with_the_new_password(fleet, *index, state, kafka).await?;
    }
    old_password_refused(fleet)?;
    println!(
        "berth's password rotated on {} hosts in {:.1}s",
        hosts.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Kafka's main pid on host `index` (kafka.service's `MainPID`).
fn kafka_pid(fleet: &Fleet, index: usize) -> anyhow::Result<String> {
    let host = fleet.host(index)?;
    let shown = host.container().show("kafka.service", &["MainPID"])?;
    let pid = shown.get("MainPID").cloned().unwrap_or_default();
    ensure!(
        !pid.is_empty() && pid != "0",
        "kafka.service is not running on host {index}"
    );
    Ok(pid)
}

/// The "Secrets" drop-in exactly as docs/operations.md gives it names a ZooKeeper digest this KRaft cluster does
/// not have: systemd refuses to start berth (status 243/CREDENTIALS), as the doc warns. Put back with only the lines this cluster uses.
async fn documented_dropin_needs_every_file(fleet: &Fleet, index: usize) -> anyhow::Result<()> {
    let host = fleet.host(index)?;
    let container = host.container();
    let documented = berth_e2e::documented_secrets_dropin()?;
    container.write(BERTH_SECRETS_DROPIN, &documented, 0o644)?;
    container.exec(&["systemctl", "daemon-reload"])?;
    let refused = container.exec(&["systemctl", "restart", "berth.service"]);
    let unit = container.show(
        "berth.service",
        &["ActiveState", "Result", "ExecMainStatus"],
    )?;
    println!("berth.service with the documented drop-in as written: {unit:?}");
    ensure!(
        refused.is_err() && unit["ActiveState"] != "active" && unit["ExecMainStatus"] == "243",
        "berth started although a LoadCredential= file is missing: {unit:?}"
    );
    let used = fleet
        .security()
        .context("secured")?
        .berth_credentials_dropin();
    ensure!(
        used.lines()
            .skip(1)
            .all(|line| documented.lines().any(|l| l == line)),
        "the fleet's drop-in is not the documented one's lines:\n{used}\n{documented}"
    );
    container.write(BERTH_SECRETS_DROPIN, &used, 0o644)?;
    container.exec(&["systemctl", "daemon-reload"])?;
    Ok(())
}

/// The credential file replaced and `systemctl restart berth` on host `index`: a new berth judges its broker
/// caught up (a describe of every hosted partition, authenticated with the new password) and Healthy, as the
/// broker it was, and Kafka kept its pid.
async fn restarted_with_the_new_password(
    fleet: &Fleet,
    index: usize,
    before: &StateView,
    kafka: &str,
) -> anyhow::Result<()> {
    let host = fleet.host(index)?;
    let file = format!("{BERTH_SECRETS_DIR}/kafka-password");
    host.container()
        .write(&file, &format!("{BERTH_ROTATED_PASSWORD}\n"), 0o600)?;
    // The doc's restart; on the host whose drop-in was refused, systemd may be between automatic restarts.
    host.container()
        .exec(&["systemctl", "restart", "berth.service"])?;
    let after = fleet
        .wait_for(
            index,
            "a restarted berth caught up and Healthy",
            BOOT,
            |s| {
                s.pid != before.pid
                    && s.healthy
                    && s.catch_up
                        .as_ref()
                        .is_some_and(|c| c.hosted > 0 && c.caught_up())
            },
        )
        .await?;
    ensure!(
        after.broker_id == before.broker_id && kafka_pid(fleet, index)? == kafka,
        "host {index} after the restart: broker {:?} (was {:?}), Kafka pid {} (was {kafka})",
        after.broker_id,
        before.broker_id,
        kafka_pid(fleet, index)?
    );
    Ok(())
}

/// Kafka refuses berth's old password and takes the new one (Kafka's TopicCommand as `berth`).
fn old_password_refused(fleet: &Fleet) -> anyhow::Result<()> {
    let install = fleet.kafka().context("Apache Kafka installed")?.clone();
    let ca = fleet.security().context("secured")?.pki.ca();
    let as_berth = |password: &str, file: &str| {
        let auth = ClientAuth::SaslSsl {
            mechanism: "SCRAM-SHA-512".into(),
            user: "berth".into(),
            password: password.into(),
            ca: ca.clone(),
        };
        fleet_kafka::client(fleet, &install).secured(&auth, &fleet.work_dir().join(file))
    };
    let old = as_berth(BERTH_PASSWORD, "berth-old.properties")?;
    let refused = blocking(|| old.describe_topic(TOPIC));
    ensure!(
        refused.as_ref().is_err_and(|e| e
            .to_string()
            .to_lowercase()
            .contains("authentication failed")),
        "the old password: {refused:?}"
    );
    let new = as_berth(BERTH_ROTATED_PASSWORD, "berth-new.properties")?;
    blocking(|| new.describe_topic(TOPIC))?;
    Ok(())
}

/// Kafka's AclCommand, as the test's client (a super user).
fn acl(client: &Client, arguments: &[&str]) -> anyhow::Result<()> {
    blocking(|| client.acl(arguments))?;
    Ok(())
}

/// What a `/state` says about waiting (the step's wait, the drain's, the caught-up gate's), if it names every one
/// of `words`.
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

/// The words of a judgement the ACL prevents.
const UNJUDGED: [&str; 3] = ["cannot judge", "TopicAuthorizationFailed", TOPIC];

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
    let drain_says = drain_not_judged_safe(fleet, leaving).await?;
    fleet.kill_host(dying, None).await?;
    let (_, successor) = asg::replacement_of(fleet, &*fleet.host(dying)?, BOOT).await?;
    let gate_says = not_caught_up(fleet, successor).await?;
    println!("under the ACL, the drain: {drain_says}\nthe replacement: {gate_says}");

    acl(client, &[&["--remove", "--force"][..], &deny].concat())?;
    fleet.wait_healthy(successor, BOOT).await?;
    let (_, next) = asg::replacement_of(fleet, &leaving_host, BOOT).await?;
    fleet.wait_healthy(next, BOOT).await?;
    // Every replica back in sync (kcat's metadata, polled) before the records are read back.
    blocking(|| {
        fleet_kafka::wait_fully_replicated(client, TOPIC, BOOT).map_err(anyhow::Error::msg)
    })?;
    fleet_kafka::consume_exactly(client, TOPIC, 2 * BATCH)?;
    println!(
        "ACL removed: the replacement caught up, the drain completed and its broker was replaced, every record \
         there; {:.1}s in all",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Host `index`'s drain waits, not judging the stop safe, and says why in `/state` and its journal.
async fn drain_not_judged_safe(fleet: &Fleet, index: usize) -> anyhow::Result<String> {
    let drain = fleet
        .wait_for(index, "the drain not judged safe", BOOT, |s| {
            s.drain_wait.as_ref().is_some_and(|d| d.waiting) && says(s, &UNJUDGED).is_some()
        })
        .await?;
    let said = says(&drain, &UNJUDGED).unwrap_or_default();
    journal_says_why(fleet, index, &said)?;
    Ok(said)
}

/// Host `index`'s Kafka serves but berth does not report caught up (nor Healthy), saying why in `/state` and its
/// journal.
async fn not_caught_up(fleet: &Fleet, index: usize) -> anyhow::Result<String> {
    let gate = fleet
        .wait_for(index, "serving but not judged caught up", BOOT, |s| {
            s.catch_up
                .as_ref()
                .is_some_and(|c| !c.cannot_judge.is_empty())
                && says(s, &UNJUDGED).is_some()
        })
        .await?;
    ensure!(
        !gate.healthy && !gate.state.eq_ignore_ascii_case("healthy"),
        "Healthy while the gate cannot judge: {gate:?}"
    );
    let said = says(&gate, &UNJUDGED).unwrap_or_default();
    journal_says_why(fleet, index, &said)?;
    Ok(said)
}

/// berth's journal on host `index` names the judgement it could not make and why.
fn journal_says_why(fleet: &Fleet, index: usize, state_says: &str) -> anyhow::Result<()> {
    let journal = journal(fleet, index, "cat")?;
    ensure!(
        UNJUDGED.iter().all(|word| journal.contains(word)),
        "host {index}'s journal does not say why (its /state: {state_says})"
    );
    Ok(())
}

/// berth's journal on a host, in journalctl's `output` format.
fn journal(fleet: &Fleet, index: usize, output: &str) -> anyhow::Result<String> {
    let host = fleet.host(index)?;
    Ok(host.container().exec(&[
        "journalctl",
        "--unit",
        berth_sim::systemd_host::BERTH_UNIT,
        "--no-pager",
        &format!("--output={output}"),
    ])?)
}

/// No configured secret (the SCRAM passwords, the private keys) in any live host's journal (every field of every
/// entry), `/state` or `berth check-config` output.
async fn no_secret_anywhere(fleet: &Fleet) -> anyhow::Result<()> {
    let secrets = fleet.security().context("secured")?.secrets();
    ensure!(secrets.len() > 3, "secrets to look for: {secrets:?}");
    for host in fleet.hosts().iter().filter(|h| h.alive()) {
        let berth_journal = journal(fleet, host.index, "json")?;
        // check-config as an operator runs it on the host, with berth's credentials.
        let check = host.container().exec(&[
            "env",
            "CREDENTIALS_DIRECTORY=/run/credentials/berth.service",
            "berth",
            "check-config",
        ])?;
        let (_, state) = berth_sim::state::get(host.state_address(), "/state").await?;
        ensure!(
            state.contains("\"broker_id\"") && berth_journal.contains("\"MESSAGE\""),
            "host {}: /state and the journal were read: {state}",
            host.index
        );
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
    }
    Ok(())
}
