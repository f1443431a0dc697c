//! What only real systemd can answer, asked as an operator asks it: on a simulated host that boots systemd
//! (systemd-nspawn) with berth installed from its .deb and Kafka as `kafka.service` with berth's documented
//! drop-in, `systemctl show`, `systemctl kill`, `systemctl stop` and `journalctl` are run inside the host.
//!
//! - the unit's states: `ActiveState`/`SubState`/`StatusText` follow berth's states; READY comes once berth
//!   answers; the hardened unit lets berth do every step (mkfs of a blank volume, mount, netlink, IMDS,
//!   `systemctl` to PID 1) with its capabilities, seccomp filter and no-new-privileges in force;
//! - a failed boot is in the journal with its structured fields (`journalctl -u berth BERTH_STATE=failed`);
//! - the watchdog: a frozen berth is killed and restarted by systemd, converges to the same broker, and Kafka
//!   keeps running (same pid);
//! - Kafka stopped by an operator stays stopped (systemd's `Restart=` never undoes an explicit stop) and
//!   `/health` says 503; Kafka crashing is restarted by its unit's `Restart=`; a log dir owned by another user
//!   crash-loops Kafka until docs/operations.md 4c's `chown -R kafka:kafka` and `systemctl restart kafka`;
//! - the drop-in: a berth restart is not propagated to Kafka by systemd (with `Requires=berth.service` it was);
//! - a package upgrade (`dpkg --install` of the next version; the package neither enabled nor started berth when it
//!   was first installed) restarts berth, which comes back as the same broker while Kafka keeps running (same
//!   pid), the ENI and volume attached: SIGTERM stops berth, not the broker, and the next berth adopts it;
//! - `systemctl poweroff` of a host whose lifecycle state is `Terminated`, during berth's drain: the shutdown lets
//!   berth finish, which releases everything and completes the terminate hook, even when the drain's teardown
//!   (a throttled detach) outlasts the unit's `TimeoutStopSec=`: berth extends it (`EXTEND_TIMEOUT_USEC`);
//! - the shipped template's user data, run as cloud-init runs it (berth-sim's stand-in,
//!   `berth_sim::cloud_init`), writes `/etc/berth/environment` and enables and starts berth, which reads it
//!   (`berth check-config` names the file as the source; the blank volume is formatted with the user data's
//!   cluster id); a later boot does not run it again, and a failing script is reported with its exit code.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use berth_e2e::{assert_converged, claimed_ids};
use berth_sim::container::Container;
use berth_sim::{layout, Fleet, FleetOptions, SimKafka, StateView};

const BOOT: Duration = Duration::from_secs(90);
/// The berth unit's stop timeout in the poweroff test (a drop-in; the shipped unit says 300 s).
const SHORT_STOP: Duration = Duration::from_secs(15);
/// How long the drain's DetachVolume is throttled there: twice [`SHORT_STOP`].
const DETACH_THROTTLE: Duration = Duration::from_secs(30);

fn options(brokers: u32) -> FleetOptions {
    FleetOptions {
        zones: 1,
        brokers,
        ..FleetOptions::default()
    }
}

fn container(fleet: &Fleet, index: usize) -> anyhow::Result<std::sync::Arc<berth_sim::Host>> {
    Ok(fleet.host(index)?)
}

/// Runs `body` with host `index`'s container.
fn on<T>(
    host: &berth_sim::Host,
    body: impl FnOnce(&Container) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    tokio::task::block_in_place(|| body(host.container()))
}

/// `systemctl show <unit> -p <properties>` inside the host.
fn show(
    host: &berth_sim::Host,
    unit: &str,
    properties: &[&str],
) -> anyhow::Result<BTreeMap<String, String>> {
    on(host, |c| Ok(c.show(unit, properties)?))
}

/// One property of a unit.
fn property(host: &berth_sim::Host, unit: &str, name: &str) -> anyhow::Result<String> {
    show(host, unit, &[name])?
        .remove(name)
        .with_context(|| format!("systemctl show {unit} has no {name}"))
}

/// `journalctl <args> -o json` inside the host, one JSON object per entry.
fn journal(host: &berth_sim::Host, args: &[&str]) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut argv = vec!["journalctl", "--no-pager", "--output=json"];
    argv.extend_from_slice(args);
    let text = on(host, |c| Ok(c.exec(&argv)?))?;
    text.lines()
        .map(|line| serde_json::from_str(line).with_context(|| format!("journal entry {line}")))
        .collect()
}

/// berth's and Kafka's journal tail, for failure messages.
fn tail(host: &berth_sim::Host) -> String {
    berth_sim::systemd_host::journal_tail(host.container(), 40)
}

fn field<'a>(entry: &'a serde_json::Value, name: &str) -> &'a str {
    entry[name].as_str().unwrap_or_default()
}

/// Polls `check` (every 20 ms) until it returns Some, up to `timeout`.
async fn until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let started = Instant::now();
    loop {
        if let Some(value) = check()? {
            return Ok(value);
        }
        ensure!(
            started.elapsed() < timeout,
            "{what} not seen within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn health(fleet: &Fleet, index: usize) -> anyhow::Result<u16> {
    let address = fleet.host(index)?.health_address();
    Ok(berth_sim::state::fetch_health(address).await?)
}

/// `systemctl <args>` inside the host, returning its output.
fn systemctl(host: &berth_sim::Host, args: &[&str]) -> anyhow::Result<String> {
    let mut argv = vec!["systemctl"];
    argv.extend_from_slice(args);
    on(host, |c| Ok(c.exec(&argv)?))
}

/// `systemctl restart berth` (what a package upgrade does); berth is Healthy again as the same broker.
async fn restart_berth(
    fleet: &Fleet,
    index: usize,
    before: &StateView,
) -> anyhow::Result<StateView> {
    systemctl(&*fleet.host(index)?, &["restart", "berth.service"])?;
    healthy_again(fleet, index, before, "the restart").await
}

/// berth on host `index` Healthy again as the broker it was `before` `what`.
async fn healthy_again(
    fleet: &Fleet,
    index: usize,
    before: &StateView,
    what: &str,
) -> anyhow::Result<StateView> {
    let after = fleet.wait_healthy(index, BOOT).await?;
    ensure!(
        after.broker_id == before.broker_id,
        "broker {:?} after {what}, {:?} before",
        after.broker_id,
        before.broker_id
    );
    Ok(after)
}

/// A KRaft cluster id of the user data's, not the fleet's (`kafka-storage.sh random-uuid`'s form).
const USER_DATA_CLUSTER_ID: &str = "hBB3UnPmR96_Xt5PjwD6Lw";

/// The shipped template's launch template user data, instantiated as an operator would for a KRaft cluster:
/// `KafkaMode` kraft, [`USER_DATA_CLUSTER_ID`], the cluster name of the fleet's hosts.
fn shipped_user_data(fleet: &Fleet) -> anyhow::Result<String> {
    let given = BTreeMap::from([
        ("KafkaMode".to_owned(), "kraft".to_owned()),
        ("KafkaClusterId".to_owned(), USER_DATA_CLUSTER_ID.to_owned()),
    ]);
    let stack = berth_sim::stack::instantiated_with(
        &berth_testkit::aws::template::shipped(),
        &fleet.options().cluster,
        fleet.options().zones,
        None,
        &given,
    )?;
    Ok(berth_sim::cloud_init::launch_template_user_data(
        &stack,
        &berth_sim::stack::ByLogicalId,
    )?)
}

#[test]
fn the_templates_user_data_runs_once_and_berth_reads_what_it_wrote() {
    if !berth_testkit::require_root(
        "the_templates_user_data_runs_once_and_berth_reads_what_it_wrote",
    ) {
        return;
    }
    // Three brokers' ENIs and volumes (one host is booted): the user data names controllers 0, 1 and 2, whose
    // addresses berth reads from their ENIs before it formats the volume.
    berth_sim::with_fleet(options(3), |fleet| async move {
        let started = Instant::now();
        let user_data = shipped_user_data(&fleet)?;
        let index = fleet.prepare_host(0).await?;
        let host = container(&fleet, index)?;
        let first =
            tokio::task::block_in_place(|| fleet.boot_with_user_data(index, Some(&user_data)))?;
        ensure!(
            first.ran && first.exit_code == Some(0) && !first.failed(),
            "the first boot's cloud-init run: {first:?}"
        );
        ensure!(
            first.instance_id == host.instance.id,
            "ran for {} on instance {}",
            first.instance_id,
            host.instance.id
        );
        berth_reads_the_user_datas_environment(&fleet, &host).await?;
        // A later boot: the stand-in's unit is started again as every boot starts it (the container itself is
        // not rebooted: its /run is kept), and the script does not run (its semaphore is the instance's).
        let again =
            tokio::task::block_in_place(|| fleet.boot_with_user_data(index, Some(&user_data)))?;
        ensure!(
            !again.ran && !again.failed() && again.instance_id == first.instance_id,
            "the second boot's cloud-init run: {again:?}"
        );
        let runs = again.output.matches("scripts_user: running").count();
        ensure!(runs == 1, "the script ran {runs} times:\n{}", again.output);
        a_failing_script_is_reported(&fleet).await?;
        println!("user data test body took {:?}", started.elapsed());
        Ok(())
    })
    .expect("the template's user data runs once and berth reads what it wrote");
}

/// The user data's `/etc/berth/environment` is what berth reads: the file holds the KRaft overrides, berth.service
/// was enabled and started by the script, `berth check-config` names the file as their source, and the daemon
/// formats the blank volume with the user data's cluster id (not the one in the fleet's berth.toml).
async fn berth_reads_the_user_datas_environment(
    fleet: &Fleet,
    host: &berth_sim::Host,
) -> anyhow::Result<()> {
    let environment = std::fs::read_to_string(host.container().path("/etc/berth/environment"))?;
    for line in [
        format!("BERTH_CLUSTER__NAME={}", fleet.options().cluster),
        format!("BERTH_CLUSTER__KAFKA_CLUSTER_ID={USER_DATA_CLUSTER_ID}"),
        "BERTH_KAFKA__MODE=kraft".to_owned(),
        "BERTH_KAFKA__CONTROLLER_IDS=0,1,2".to_owned(),
    ] {
        ensure!(
            environment.lines().any(|l| l == line),
            "{line} not in /etc/berth/environment:\n{environment}"
        );
    }
    let unit = show(
        host,
        "berth.service",
        &["UnitFileState", "ExecMainStartTimestampMonotonic"],
    )?;
    ensure!(
        unit["UnitFileState"] == "enabled" && unit["ExecMainStartTimestampMonotonic"] != "0",
        "berth.service after the user data: {unit:?}"
    );
    let checked = on(host, |c| {
        Ok(c.exec(&["berth", "check-config", "--config", "/etc/berth/berth.toml"])?)
    })?;
    for (key, value, variable) in [
        (
            "kafka_cluster_id",
            format!("\"{USER_DATA_CLUSTER_ID}\""),
            "BERTH_CLUSTER__KAFKA_CLUSTER_ID",
        ),
        (
            "controller_ids",
            "[0, 1, 2]".to_owned(),
            "BERTH_KAFKA__CONTROLLER_IDS",
        ),
    ] {
        // `key = value`, padded, then `# <its source>`.
        let (setting, source) = (
            format!("{key} = {value}"),
            format!("# {variable} in /etc/berth/environment"),
        );
        ensure!(
            checked
                .lines()
                .any(
                    |l| l.split_once(" #").map(|(v, _)| v.trim_end()) == Some(setting.as_str())
                        && l.ends_with(&source)
                ),
            "no `{setting}` from {source} in berth check-config:\n{checked}"
        );
    }
    let meta = host.mount_path().join("data/meta.properties");
    let wanted = format!("cluster.id={USER_DATA_CLUSTER_ID}");
    until(
        "the volume formatted with the user data's cluster id",
        BOOT,
        || {
            Ok(std::fs::read_to_string(&meta)
                .ok()
                .filter(|text| text.lines().any(|l| l == wanted)))
        },
    )
    .await
    .with_context(|| tail(host))?;
    Ok(())
}

/// A script that exits nonzero is reported, not hidden: the run says it ran and failed with its exit code, its
/// output is in cloud-init's log, and the stand-in's unit is failed.
async fn a_failing_script_is_reported(fleet: &Fleet) -> anyhow::Result<()> {
    let index = fleet.prepare_host(0).await?;
    let host = container(fleet, index)?;
    let script = "#!/bin/sh\necho half-way there\nexit 3\n";
    let run = tokio::task::block_in_place(|| fleet.boot_with_user_data(index, Some(script)))?;
    ensure!(
        run.ran && run.exit_code == Some(3) && run.failed(),
        "a failing script's run: {run:?}"
    );
    ensure!(
        run.output.contains("half-way there\n"),
        "the script's output is not in the log:\n{}",
        run.output
    );
    let state = property(&host, berth_sim::cloud_init::UNIT, "ActiveState")?;
    ensure!(
        state == "failed",
        "{} is {state}",
        berth_sim::cloud_init::UNIT
    );
    Ok(())
}

#[test]
fn systemd_follows_berth_through_a_hardened_boot() {
    if !berth_testkit::require_root("systemd_follows_berth_through_a_hardened_boot") {
        return;
    }
    // Delays that hold attach_eni and attach_ebs open long enough to be seen from outside (start_kafka is held
    // open by Kafka's storage tool and Kafka's own start, several seconds).
    let options = FleetOptions {
        eni_delay: Duration::from_millis(1500),
        // Longer than the ENI's: the volume is requested alongside it, so AttachEbs waits only for the remainder,
        // which must still be long enough for StatusText to show it.
        volume_delay: Duration::from_millis(3500),
        ..options(1)
    };
    berth_sim::with_fleet(options, |fleet| async move {
        let index = fleet.prepare_host(0).await?;
        let host = container(&fleet, index)?;
        let booted_in = host.container().booted_in();
        println!("container booted in {booted_in:?}");
        let installed = Instant::now();
        // `systemctl enable berth`, then `systemctl restart berth`, which returns once berth has sent READY
        // (Type=notify) ...
        fleet.start_berth(index)?;
        println!("installed and started in {:?}", installed.elapsed());
        // ... and by then berth answers: READY comes once it is up.
        let first = fleet
            .state(index)
            .await
            .context("/state right after READY")?;
        let unit = show(
            &host,
            "berth.service",
            &["ActiveState", "SubState", "StatusText"],
        )?;
        ensure!(
            unit["ActiveState"] == "active" && unit["SubState"] == "running",
            "berth.service right after its start: {unit:?}"
        );
        println!("first /state after READY: {}; unit {unit:?}", first.state);
        status_follows_the_states(&host).await?;
        // Every step happened under the hardened unit.
        booted_under_the_hardened_unit(&fleet, index, &host).await?;
        berth_runs_confined(&host)?;
        show_what_an_operator_sees(&host)
    })
    .expect("systemd follows berth through a hardened boot");
}

/// The status line (systemd's StatusText) follows the boot's states, in order, until `healthy broker 0`, and says
/// what a held step waits for.
async fn status_follows_the_states(host: &berth_sim::Host) -> anyhow::Result<()> {
    let mut seen: Vec<String> = Vec::new();
    let status = until("StatusText 'healthy broker 0'", BOOT, || {
        let unit = show(
            host,
            "berth.service",
            &["ActiveState", "SubState", "StatusText"],
        )?;
        ensure!(
            unit["ActiveState"] == "active" && unit["SubState"] == "running",
            "berth.service left active/running while booting: {unit:?}"
        );
        let text = unit["StatusText"].clone();
        if seen.last() != Some(&text) {
            seen.push(text.clone());
        }
        Ok(text.starts_with("healthy").then_some(text))
    })
    .await
    .with_context(|| format!("StatusText went {seen:?}\n{}", tail(host)))?;
    ensure!(status == "healthy broker 0", "status {status:?}");
    let mut states: Vec<&str> = seen
        .iter()
        .map(|s| s.split_whitespace().next().unwrap_or_default())
        .collect();
    // A state shows more than one line while what it waits for changes.
    states.dedup();
    let positions: Vec<usize> = states
        .iter()
        .map(|s| {
            berth_core::State::BOOT
                .iter()
                .position(|state| state.name() == *s)
                .unwrap_or(usize::MAX)
        })
        .collect();
    ensure!(
        positions.windows(2).all(|w| w[0] < w[1]) && positions.iter().all(|p| *p != usize::MAX),
        "status lines out of order: {seen:?}"
    );
    for held in ["attach_eni", "attach_ebs", "start_kafka"] {
        ensure!(
            states.contains(&held),
            "{held} never shown in StatusText: {seen:?}"
        );
    }
    // The held ENI attachment says what it waits for, not just the state's name.
    ensure!(
        seen.iter()
            .any(|s| s.starts_with("attach_eni broker 0: waiting: ")),
        "no waiting reason in StatusText: {seen:?}"
    );
    println!("StatusText went {seen:?}");
    Ok(())
}

/// The boot converged under the hardened unit: IMDS read, the blank volume formatted, Kafka started through
/// systemctl as its own user on a log dir handed over to it.
async fn booted_under_the_hardened_unit(
    fleet: &Fleet,
    index: usize,
    host: &berth_sim::Host,
) -> anyhow::Result<()> {
    let state = fleet.wait_healthy(index, BOOT).await?;
    assert_converged(fleet, index, &state).await?;
    ensure!(
        state.instance_id.as_deref() == Some(host.instance.id.as_str()),
        "IMDS: /state names instance {:?}",
        state.instance_id
    );
    let device = state
        .volume
        .as_ref()
        .and_then(|v| v.device.clone())
        .context("no volume device in /state")?;
    let filesystem = on(host, |c| {
        Ok(c.exec(&[
            "blkid",
            "--probe",
            "--match-tag",
            "TYPE",
            "--output",
            "value",
            &device,
        ])?)
    })?;
    ensure!(
        filesystem.trim() == "ext4",
        "the blank volume holds {filesystem:?} (mkfs)"
    );
    let kafka = show(
        host,
        "kafka.service",
        &["ActiveState", "SubState", "MainPID"],
    )?;
    ensure!(
        kafka["ActiveState"] == "active" && kafka["MainPID"] != "0",
        "kafka.service (started by berth through systemctl): {kafka:?}"
    );
    // Real Kafka 4.x in KRaft mode: berth formatted the blank storage as root under berth.service's
    // UMask=0077, and Kafka (User=kafka) started on it the first time: the drop-in handed the log dir over.
    let kafka_unit = show(host, "kafka.service", &["NRestarts", "User"])?;
    ensure!(
        kafka_unit["NRestarts"] == "0" && kafka_unit["User"] == "kafka",
        "kafka.service restarted (crash loop?): {kafka_unit:?}\n{}",
        tail(host)
    );
    let owners = on(host, |c| {
        Ok(c.exec(&[
            "find",
            "/var/lib/kafka/data",
            "-maxdepth",
            "2",
            "-printf",
            "%u:%g %m %P\\n",
        ])?)
    })?;
    println!("the log dir after berth's format and Kafka's start:\n{owners}");
    ensure!(
        owners.lines().any(|l| l.ends_with(" meta.properties"))
            && owners.lines().all(|l| l.starts_with("kafka:kafka ")),
        "the log dir is not all Kafka's:\n{owners}"
    );
    Ok(())
}

/// berth runs with CAP_NET_ADMIN and CAP_SYS_ADMIN only, under seccomp and no-new-privileges, and the hardening
/// refused nothing it did.
fn berth_runs_confined(host: &berth_sim::Host) -> anyhow::Result<()> {
    let pid = host.berth_pid().context("berth's pid")?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim)
            .unwrap_or_default()
            .to_owned()
    };
    // CAP_NET_ADMIN (12) and CAP_SYS_ADMIN (21) only; seccomp filter mode; no new privileges.
    ensure!(
        line("CapBnd:") == "0000000000201000" && line("CapEff:") == "0000000000201000",
        "berth's capabilities: bounding {}, effective {}",
        line("CapBnd:"),
        line("CapEff:")
    );
    ensure!(line("Seccomp:") == "2", "seccomp mode {}", line("Seccomp:"));
    ensure!(
        line("NoNewPrivs:") == "1",
        "NoNewPrivs {}",
        line("NoNewPrivs:")
    );
    let refused = journal(
        host,
        &[
            "--unit=berth.service",
            "--grep=(?i)permission|not permitted|denied",
        ],
    )
    .unwrap_or_default();
    ensure!(
        refused.is_empty(),
        "the hardening refused something: {:?}",
        refused
            .iter()
            .map(|e| field(e, "MESSAGE"))
            .collect::<Vec<_>>()
    );
    let devices = show(host, "berth.service", &["DevicePolicy", "DeviceAllow"])?;
    println!("device policy as systemd loaded it (not enforced in a container): {devices:?}");
    Ok(())
}

/// What an operator sees: `systemctl status berth` and the journals (docs/operations.md quotes a run of this).
fn show_what_an_operator_sees(host: &berth_sim::Host) -> anyhow::Result<()> {
    on(host, |c| {
        let status = c
            .command(&[
                "systemctl",
                "status",
                "--no-pager",
                "--lines=0",
                "berth.service",
            ])
            .output()?;
        println!(
            "$ systemctl status berth\n{}",
            String::from_utf8_lossy(&status.stdout)
        );
        let journal = c.exec(&["journalctl", "--no-pager", "--unit=berth.service"])?;
        println!("$ journalctl -u berth\n{journal}");
        let verbose = c.exec(&[
            "journalctl",
            "--no-pager",
            "--unit=berth.service",
            "--output=verbose",
            "BERTH_STATE=healthy",
        ])?;
        println!("$ journalctl -u berth -o verbose BERTH_STATE=healthy\n{verbose}");
        let kafka = c.exec(&["journalctl", "--no-pager", "--unit=kafka.service"])?;
        println!("$ journalctl -u kafka\n{kafka}");
        Ok(())
    })
}

#[test]
fn a_failed_boot_is_in_the_journal_with_its_fields() {
    if !berth_testkit::require_root("a_failed_boot_is_in_the_journal_with_its_fields") {
        return;
    }
    berth_sim::with_fleet(options(1), |fleet| async move {
        // A volume that is not blank and holds no filesystem: berth must refuse it (never format it).
        let volume = fleet.resources()[0].volume_id.clone();
        berth_testkit::blockdev::plant_random(&fleet.volume_backing(&volume), 0, 4096)?;
        let index = fleet.launch(0).await?;
        let host = container(&fleet, index)?;
        let failed = fleet
            .wait_for(index, "Failed", BOOT, |s| {
                s.state.eq_ignore_ascii_case("failed")
            })
            .await?;
        let entries = journal(&host, &["--unit=berth.service", "BERTH_STATE=failed"])?;
        let entry = entries
            .iter()
            .find(|e| !field(e, "BERTH_FAILURE").is_empty())
            .with_context(|| format!("no entry with BERTH_FAILURE among {entries:?}"))?;
        println!("journalctl -u berth BERTH_STATE=failed -o json: {entry}");
        failure_fields_name_what_failed(&fleet, entry, &volume, &failed)?;
        // The runbook's "every failed attempt and what went wrong" shows the reason in plain text.
        let warnings = on(&host, |c| {
            Ok(c.exec(&[
                "journalctl",
                "--no-pager",
                "--unit=berth.service",
                "--output=cat",
                "--priority=warning",
            ])?)
        })?;
        println!("journalctl -u berth -o cat -p warning:\n{warnings}");
        let reason = failed.failure.clone().context("no failure in /state")?;
        ensure!(
            warnings.contains(&reason),
            "the failure is not in the plain journal: {warnings}"
        );
        let status = property(&host, "berth.service", "StatusText")?;
        ensure!(
            status.starts_with("failed broker 0: "),
            "StatusText after the failure: {status:?}"
        );
        // The refused volume was not touched: still no filesystem on it.
        let blkid = std::process::Command::new("blkid")
            .args(["--probe"])
            .arg(fleet.volume_backing(&volume))
            .output()?;
        ensure!(
            blkid.status.code() == Some(2),
            "blkid finds a signature on the refused volume"
        );
        Ok(())
    })
    .expect("a failed boot is in the journal");
}

/// The failure's journal entry carries berth's fields (the broker, its volume and ENI, the state it failed from,
/// `/state`'s failure) and journald's (an error, berth's identifier and unit).
fn failure_fields_name_what_failed(
    fleet: &Fleet,
    entry: &serde_json::Value,
    volume: &str,
    failed: &StateView,
) -> anyhow::Result<()> {
    ensure!(
        field(entry, "BERTH_BROKER_ID") == "0",
        "BERTH_BROKER_ID in {entry}"
    );
    ensure!(
        field(entry, "BERTH_VOLUME_ID") == volume,
        "BERTH_VOLUME_ID in {entry}"
    );
    ensure!(
        field(entry, "BERTH_ENI_ID") == fleet.resources()[0].eni_id,
        "BERTH_ENI_ID in {entry}"
    );
    ensure!(
        field(entry, "BERTH_PREVIOUS_STATE") == "mount",
        "BERTH_PREVIOUS_STATE in {entry}"
    );
    ensure!(
        Some(field(entry, "BERTH_FAILURE")) == failed.failure.as_deref(),
        "BERTH_FAILURE {:?} is not /state's failure {:?}",
        field(entry, "BERTH_FAILURE"),
        failed.failure
    );
    ensure!(
        field(entry, "PRIORITY") == "3",
        "an error is priority 3: {entry}"
    );
    ensure!(
        field(entry, "SYSLOG_IDENTIFIER") == "berth",
        "identifier in {entry}"
    );
    ensure!(
        field(entry, "_SYSTEMD_UNIT") == "berth.service",
        "unit in {entry}"
    );
    Ok(())
}

/// Boots host 0 to Healthy and returns its state and Kafka's main pid.
async fn healthy_host(fleet: &Fleet) -> anyhow::Result<(usize, StateView, String)> {
    let index = fleet.launch(0).await?;
    let state = fleet.wait_healthy(index, BOOT).await?;
    let kafka = property(&*container(fleet, index)?, "kafka.service", "MainPID")?;
    ensure!(kafka != "0", "kafka.service has no main process");
    Ok((index, state, kafka))
}

#[test]
fn the_watchdog_restarts_a_frozen_berth_while_kafka_runs_on() {
    if !berth_testkit::require_root("the_watchdog_restarts_a_frozen_berth_while_kafka_runs_on") {
        return;
    }
    berth_sim::with_fleet(options(1), |fleet| async move {
        let index = fleet.prepare_host(0).await?;
        let host = container(&fleet, index)?;
        fleet.start_berth(index)?;
        // A shorter watchdog than the unit's 60 s, as an operator's drop-in would set it.
        on(&host, |c| {
            c.write(
                "/etc/systemd/system/berth.service.d/watchdog.conf",
                "[Service]\nWatchdogSec=4s\n",
                0o644,
            )?;
            c.exec(&["systemctl", "daemon-reload"])?;
            c.exec(&["systemctl", "restart", "berth.service"])?;
            Ok(())
        })?;
        let before = fleet.wait_healthy(index, BOOT).await?;
        let kafka = property(&host, "kafka.service", "MainPID")?;
        let berth = property(&host, "berth.service", "MainPID")?;
        ensure!(
            property(&host, "berth.service", "WatchdogUSec")? == "4s",
            "watchdog not set"
        );

        on(&host, |c| {
            Ok(c.exec(&[
                "systemctl",
                "kill",
                "--kill-whom=main",
                "--signal=SIGSTOP",
                "berth.service",
            ])?)
        })?;
        let frozen = Instant::now();
        let restarted = until("berth restarted by systemd", BOOT, || {
            let unit = show(&host, "berth.service", &["MainPID", "NRestarts"])?;
            Ok(
                (unit["MainPID"] != berth && unit["MainPID"] != "0" && unit["NRestarts"] != "0")
                    .then_some(unit),
            )
        })
        .await?;
        println!(
            "frozen berth replaced after {:?}: {restarted:?}",
            frozen.elapsed()
        );
        let timeouts = journal(&host, &["--unit=berth.service", "--grep=Watchdog timeout"])?;
        ensure!(!timeouts.is_empty(), "systemd logged no watchdog timeout");
        let systemd_said = journal(&host, &["--unit=berth.service", "_PID=1"])?;
        for entry in &systemd_said {
            println!("systemd: {}", field(entry, "MESSAGE"));
        }
        let after = fleet.wait_healthy(index, BOOT).await?;
        ensure!(
            after.broker_id == before.broker_id,
            "the restarted berth is broker {:?}, not {:?}",
            after.broker_id,
            before.broker_id
        );
        assert_converged(&fleet, index, &after).await?;
        let kafka_after = property(&host, "kafka.service", "MainPID")?;
        ensure!(
            kafka_after == kafka,
            "Kafka's pid changed from {kafka} to {kafka_after}"
        );
        Ok(())
    })
    .expect("the watchdog restarts a frozen berth");
}

#[test]
fn kafka_stopped_stays_stopped_and_kafka_crashed_comes_back() {
    if !berth_testkit::require_root("kafka_stopped_stays_stopped_and_kafka_crashed_comes_back") {
        return;
    }
    berth_sim::with_fleet(options(1), |fleet| async move {
        let (index, _, kafka) = healthy_host(&fleet).await?;
        let host = container(&fleet, index)?;
        ensure!(health(&fleet, index).await? == 200, "/health while Healthy");

        stopped_kafka_stays_stopped(&fleet, index, &host).await?;
        crashed_kafka_comes_back(&fleet, index, &host, &kafka).await?;
        wrong_owner_fixed_as_documented(&fleet, index, &host).await
    })
    .expect("Kafka stopped and crashed under a Healthy berth");
}

/// Kafka crashes: /health turns 503 and the unit's Restart= brings it back as a new process; the broker is
/// healthy again.
async fn crashed_kafka_comes_back(
    fleet: &Fleet,
    index: usize,
    host: &berth_sim::Host,
    kafka: &str,
) -> anyhow::Result<()> {
    // Kafka crashes (its JVM, the unit's main process, is SIGKILLed; systemd then stops the rest of the cgroup):
    // /health turns 503 and the unit's Restart= brings it back (a new process). Only the main process: a
    // signal to the whole cgroup can fail with EIO on a process that is already exiting (seen once here).
    let running = property(host, "kafka.service", "MainPID")?;
    ensure!(
        running != kafka,
        "systemctl start did not start a new Kafka"
    );
    on(host, |c| {
        Ok(c.exec(&[
            "systemctl",
            "kill",
            "--kill-whom=main",
            "--signal=SIGKILL",
            "kafka.service",
        ])?)
    })?;
    let started = Instant::now();
    while health(fleet, index).await? != 503 {
        ensure!(
            started.elapsed() < BOOT,
            "/health never turned 503 after the crash"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let back = until("kafka.service restarted by Restart=", BOOT, || {
        let unit = show(
            host,
            "kafka.service",
            &["ActiveState", "MainPID", "NRestarts"],
        )?;
        Ok((unit["ActiveState"] == "active"
            && unit["NRestarts"] == "1"
            && unit["MainPID"] != running)
            .then_some(unit))
    })
    .await?;
    println!("kafka.service after the crash: {back:?}");
    fleet
        .wait_for(index, "/health 200 after Kafka's restart", BOOT, |s| {
            s.healthy
        })
        .await?;
    Ok(())
}

/// docs/operations.md 4c, run as written: a log dir whose files belong to another user (copied or restored under
/// another uid; the drop-in hands over only root's) makes Kafka as `User=kafka` fail to read it and `Restart=` loop
/// it; the doc's `chown -R kafka:kafka <log dir>` and `systemctl restart kafka` make it serve again.
async fn wrong_owner_fixed_as_documented(
    fleet: &Fleet,
    index: usize,
    host: &berth_sim::Host,
) -> anyhow::Result<()> {
    const LOG_DIR: &str = "/var/lib/kafka/data";
    let started = Instant::now();
    let restarts: u32 = property(host, "kafka.service", "NRestarts")?.parse()?;
    let since = on(host, |c| {
        c.exec(&["systemctl", "stop", "kafka.service"])?;
        c.exec(&["chown", "-R", "nobody:nogroup", LOG_DIR])?;
        let since = format!("--since=@{}", c.exec(&["date", "+%s"])?.trim());
        c.exec(&["systemctl", "start", "kafka.service"])?;
        Ok(since)
    })?;
    let mut said = String::new();
    // The messages docs/operations.md 4c lists (Kafka 4.4 says the first for a checkpoint it cannot read).
    let unreadable = [
        "Could not read file /var/lib/kafka/data/",
        "AccessDeniedException: /var/lib/kafka/data/",
        "No readable meta.properties files found",
    ];
    while !unreadable.iter().any(|message| said.contains(message)) {
        ensure!(
            started.elapsed() < BOOT,
            "Kafka on a log dir owned by nobody never said it could not read it:\n{said}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        said = on(host, |c| {
            Ok(c.exec(&[
                "journalctl",
                "--unit=kafka.service",
                "--no-pager",
                "--output=cat",
                &since,
            ])?)
        })?;
    }
    let looping = until("kafka.service restarted by Restart=", BOOT, || {
        let n: u32 = property(host, "kafka.service", "NRestarts")?.parse()?;
        Ok((n > restarts).then_some(n))
    })
    .await?;
    ensure!(
        health(fleet, index).await? == 503,
        "/health 200 while Kafka cannot read its log dir"
    );
    on(host, |c| {
        c.exec(&["chown", "-R", "kafka:kafka", LOG_DIR])?;
        Ok(c.exec(&["systemctl", "restart", "kafka.service"])?)
    })?;
    fleet
        .wait_for(index, "/health 200 after the doc's chown", BOOT, |s| {
            s.healthy
        })
        .await?;
    ensure!(
        property(host, "kafka.service", "ActiveState")? == "active",
        "kafka.service after the doc's chown and restart"
    );
    println!(
        "a log dir owned by nobody: Kafka restarted {} times; chown -R kafka:kafka fixed it, {:.1}s in all",
        looping - restarts,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// An operator stops Kafka: /health turns 503, and systemd leaves it stopped (no restart pending); started again,
/// the broker is healthy again.
async fn stopped_kafka_stays_stopped(
    fleet: &Fleet,
    index: usize,
    host: &berth_sim::Host,
) -> anyhow::Result<()> {
    // An operator stops Kafka: /health turns 503, and systemd leaves it stopped (no restart pending).
    on(host, |c| {
        Ok(c.exec(&["systemctl", "stop", "kafka.service"])?)
    })?;
    let stopped = show(
        host,
        "kafka.service",
        &["ActiveState", "SubState", "NRestarts"],
    )?;
    ensure!(
        stopped["ActiveState"] == "inactive" && stopped["SubState"] == "dead",
        "kafka.service after systemctl stop: {stopped:?}"
    );
    let started = Instant::now();
    while health(fleet, index).await? != 503 {
        ensure!(started.elapsed() < BOOT, "/health never turned 503");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ensure!(
        property(host, "kafka.service", "SubState")? == "dead",
        "systemd restarted a Kafka the operator stopped"
    );
    on(host, |c| {
        Ok(c.exec(&["systemctl", "start", "kafka.service"])?)
    })?;
    fleet
        .wait_for(
            index,
            "/health 200 after systemctl start kafka",
            BOOT,
            |s| s.healthy,
        )
        .await?;
    Ok(())
}

/// systemd's own log lines about a job of `unit` of type `job_type` (e.g. a restart propagated to it).
fn jobs(host: &berth_sim::Host, unit: &str, job_type: &str) -> anyhow::Result<Vec<String>> {
    let entries = journal(
        host,
        &[
            "_PID=1",
            &format!("UNIT={unit}"),
            &format!("JOB_TYPE={job_type}"),
        ],
    )?;
    Ok(entries
        .iter()
        .map(|e| field(e, "MESSAGE").to_owned())
        .collect())
}

#[test]
fn a_berth_restart_is_not_propagated_to_kafka() {
    if !berth_testkit::require_root("a_berth_restart_is_not_propagated_to_kafka") {
        return;
    }
    berth_sim::with_fleet(options(1), |fleet| async move {
        let (index, before, _) = healthy_host(&fleet).await?;
        let host = container(&fleet, index)?;
        restart_berth(&fleet, index, &before).await?;
        let restarted = jobs(&host, "kafka.service", "restart")?;
        ensure!(
            restarted.is_empty(),
            "systemd restarted kafka.service with berth: {restarted:?}"
        );

        // The control: with the drop-in's former Requires=berth.service, systemd restarts Kafka with berth.
        on(&host, |c| {
            c.write(
                "/etc/systemd/system/kafka.service.d/requires.conf",
                "[Unit]\nRequires=berth.service\n",
                0o644,
            )?;
            c.exec(&["systemctl", "daemon-reload"])?;
            Ok(())
        })?;
        restart_berth(&fleet, index, &before).await?;
        let restarted = jobs(&host, "kafka.service", "restart")?;
        ensure!(
            !restarted.is_empty(),
            "with Requires=berth.service, systemd did not restart kafka.service with berth"
        );
        println!("with Requires=berth.service, systemd restarted Kafka with berth: {restarted:?}");
        println!(
            "{}",
            on(&host, |c| Ok(c.exec(&[
                "journalctl",
                "--no-pager",
                "--unit=kafka.service",
                "--output=short-precise"
            ])?))?
        );
        Ok(())
    })
    .expect("a berth restart is not propagated to Kafka");
}

/// The package upgraded as an operator does it (`dpkg --install` of a later version over the running one): its
/// maintainer scripts restart berth (a new process, the new version installed), which comes back Healthy as the
/// same broker while Kafka keeps running (same pid) and the ENI and volume stay attached.
#[test]
fn a_package_upgrade_restarts_berth_and_leaves_kafka_running() {
    if !berth_testkit::require_root("a_package_upgrade_restarts_berth_and_leaves_kafka_running") {
        return;
    }
    berth_sim::with_fleet(options(1), |fleet| async move {
        let (index, before, kafka) = healthy_host(&fleet).await?;
        let host = container(&fleet, index)?;
        let berth_before = property(&host, "berth.service", "MainPID")?;
        let installed = |host: &berth_sim::Host| {
            on(host, |c| {
                Ok(c.exec(&["dpkg-query", "--show", "--showformat=${Version}", "berth"])?)
            })
        };
        let version_before = installed(&host)?;
        let berth = fleet.options().berth.berth()?;
        on(&host, |c| Ok(berth_sim::systemd_host::upgrade(c, &berth, 2)?))?;
        let version_after = installed(&host)?;
        ensure!(
            version_before.ends_with("-1") && version_after.ends_with("-2"),
            "installed {version_before}, then {version_after}"
        );
        let berth_after = property(&host, "berth.service", "MainPID")?;
        ensure!(
            berth_after != berth_before && berth_after != "0",
            "berth's pid {berth_before} before the upgrade, {berth_after} after: not restarted"
        );
        let after = healthy_again(&fleet, index, &before, "the upgrade").await?;
        let kafka_after = property(&host, "kafka.service", "MainPID")?;
        ensure!(
            kafka_after == kafka,
            "Kafka's pid changed from {kafka} to {kafka_after}"
        );
        let resources = fleet.resources()[0].clone();
        let attachments = fleet.ec2().attachments().await?;
        ensure!(
            attachments.enis.get(&resources.eni_id) == Some(&Some(host.instance.id.clone())),
            "ENI not attached to the host after the upgrade: {attachments:?}"
        );
        ensure!(
            attachments.volumes.get(&resources.volume_id) == Some(&Some(host.instance.id.clone())),
            "volume not attached to the host after the upgrade: {attachments:?}"
        );
        assert_converged(&fleet, index, &after).await?;
        ensure!(
            layout::eni_ip(0, 1).to_string() == after.eni.map(|e| e.ip).unwrap_or_default(),
            "ENI address"
        );
        poweroff_while_terminating(&fleet, index).await
    })
    .expect("a package upgrade restarts berth and leaves Kafka running; a poweroff while terminating drains first");
}

/// The instance's lifecycle state turns `Terminated` (Auto Scaling scales it in) and berth starts draining;
/// `systemctl poweroff` comes while the drain is under way (its first step, Kafka's controlled shutdown, takes a
/// second or more). The unit's `TimeoutStopSec=` is cut to [`SHORT_STOP`] and the drain's DetachVolume throttled
/// for twice that, so the drain outlasts the stop timeout and finishes only because berth extends it. The
/// shutdown lets berth finish: its journal has "drain complete" more than `SHORT_STOP` after the poweroff was
/// requested and then berth.service deactivated successfully (not killed at `TimeoutStopSec=`), the host powers
/// off, everything was released and the terminate hook completed.
///
/// Nothing enters the container once the poweroff is under way: systemd-shutdown SIGSTOPs every process of the
/// container, `nsenter` then stops itself beside its stopped child and never reaps it, and the shutdown waits on
/// that zombie. The journal files are read from outside (`journalctl --directory`, through `/proc/<pid>/root`).
async fn poweroff_while_terminating(fleet: &Fleet, index: usize) -> anyhow::Result<()> {
    let host = container(fleet, index)?;
    short_stop_timeout(&host)?;
    let stop_timeout = property(&host, "berth.service", "TimeoutStopUSec")?;
    ensure!(stop_timeout == "15s", "TimeoutStopSec {stop_timeout}");
    fleet.proxy().sustain(
        "DetachVolume",
        berth_testkit::aws::Fault::Throttle,
        DETACH_THROTTLE,
        None,
    );
    member_terminating(fleet, &host);
    host.with_imds(|imds| imds.set_lifecycle_state("Terminated"))
        .context("the host's IMDS")?;
    until("berth draining", BOOT, || {
        let status = property(&host, "berth.service", "StatusText")?;
        Ok(status.starts_with("draining").then_some(()))
    })
    .await
    .with_context(|| tail(&host))?;
    systemctl(&host, &["poweroff", "--no-block"])?;
    let requested = std::time::SystemTime::now();
    let container = host.container();
    let journal_dir = container.path("/run/log/journal");
    let powered_off = Instant::now();
    let journal = berth_journal_until_off(container, &journal_dir, powered_off).await;
    ensure!(
        container.wait_exit(Duration::ZERO),
        "the host did not power off within 330 s (berth.service TimeoutStopSec {stop_timeout})"
    );
    let messages: Vec<&str> = journal.iter().map(|e| field(e, "MESSAGE")).collect();
    let drained = messages
        .iter()
        .rposition(|m| m.starts_with("drain complete"))
        .with_context(|| format!("no drain in berth's journal: {messages:#?}"))?;
    let drained_at: u128 = field(&journal[drained], "__REALTIME_TIMESTAMP").parse()?;
    let requested_at = requested.duration_since(std::time::UNIX_EPOCH)?.as_micros();
    ensure!(
        requested_at + SHORT_STOP.as_micros() < drained_at,
        "the drain completed ({drained_at}) within TimeoutStopSec of the poweroff ({requested_at}): the \
         extension was not tested"
    );
    let after = &messages[drained..];
    ensure!(
        after.iter().any(|m| m.contains("Deactivated successfully"))
            && !after
                .iter()
                .any(|m| m.contains("timed out") || m.contains("Killing process")),
        "berth.service did not end by itself after its drain: {after:#?}"
    );
    println!(
        "poweroff while terminating: requested {:.2} s before berth's drain completed; the host was off {:?} \
         after `systemctl poweroff` (berth.service TimeoutStopSec {stop_timeout})",
        (drained_at - requested_at) as f64 / 1e6,
        powered_off.elapsed()
    );
    released_by_the_drain(fleet, &host.instance.id).await
}

/// The host's instance joins its zone's group and leaves it at once: `Terminating:Wait`, its terminate action
/// pending (this fleet has no group control plane; the test plays it and sets the IMDS lifecycle state).
fn member_terminating(fleet: &Fleet, host: &berth_sim::Host) {
    let group = berth_sim::asg::group_names(fleet.options())[host.az].clone();
    let zone = layout::zone_name(host.az);
    fleet.aws().with(|plane| {
        let now = Instant::now();
        plane
            .autoscaling
            .launch(&group, &host.instance.id, &zone, now);
        plane
            .autoscaling
            .terminate(&host.instance.id, "a test scales in", now);
        plane.autoscaling.take_events();
    });
}

/// A drop-in cutting berth.service's `TimeoutStopSec=` to [`SHORT_STOP`] (in /run, gone at the poweroff).
fn short_stop_timeout(host: &berth_sim::Host) -> anyhow::Result<()> {
    let dir = host.container().path("/run/systemd/system/berth.service.d");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("50-short-stop.conf"),
        format!("[Service]\nTimeoutStopSec={}s\n", SHORT_STOP.as_secs()),
    )?;
    systemctl(host, &["daemon-reload"])?;
    Ok(())
}

/// berth's journal (as JSON entries), read from outside through the container's root (`journal_dir`) while the
/// container runs, for at most 330 s after `powered_off`: the last read before it stopped.
async fn berth_journal_until_off(
    container: &Container,
    journal_dir: &std::path::Path,
    powered_off: Instant,
) -> Vec<serde_json::Value> {
    let mut journal: Vec<serde_json::Value> = Vec::new();
    while container.running() && powered_off.elapsed() < Duration::from_secs(330) {
        let read = tokio::task::block_in_place(|| {
            std::process::Command::new("journalctl")
                .arg(format!("--directory={}", journal_dir.display()))
                .args(["--no-pager", "--output=json", "--unit=berth.service"])
                .output()
        });
        if let Some(output) = read
            .ok()
            .filter(|o| o.status.success() && !o.stdout.is_empty())
        {
            journal = String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter_map(|line| serde_json::from_str(line).ok())
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    journal
}

/// The drain released broker 0's ENI, volume and claim, and completed the terminate hook of `instance`.
async fn released_by_the_drain(fleet: &Fleet, instance: &str) -> anyhow::Result<()> {
    let resources = fleet.resources()[0].clone();
    let attachments = fleet.ec2().attachments().await?;
    ensure!(
        attachments.enis.get(&resources.eni_id) == Some(&None)
            && attachments.volumes.get(&resources.volume_id) == Some(&None),
        "ENI and volume released by the drain before the poweroff completed: {attachments:?}"
    );
    ensure!(
        claimed_ids(fleet).await?.is_empty(),
        "claim released by the drain"
    );
    let completed = fleet.aws().calls_from("CompleteLifecycleAction", instance);
    ensure!(
        completed.iter().any(|c| c.accepted()
            && c.param("LifecycleHookName") == Some(berth_sim::asg::TERMINATE_HOOK)
            && c.param("LifecycleActionResult") == Some("CONTINUE")),
        "the terminate hook completed by the draining berth: {completed:?}"
    );
    Ok(())
}

#[test]
fn a_zookeeper_mode_host_runs_kafka_3_9_registered_in_the_ensemble() {
    if !berth_testkit::require_root(
        "a_zookeeper_mode_host_runs_kafka_3_9_registered_in_the_ensemble",
    ) {
        return;
    }
    let options = FleetOptions {
        kafka: SimKafka::ZooKeeperMode,
        ..options(1)
    };
    berth_sim::with_fleet(options, |fleet| async move {
        let (index, state, _) = healthy_host(&fleet).await?;
        let host = container(&fleet, index)?;
        let install = fleet.kafka().context("Apache Kafka")?.clone();
        ensure!(
            install.has_zookeeper_mode(),
            "the fleet runs Kafka {}",
            install.version()
        );
        let unit = show(&host, "kafka.service", &["NRestarts", "Description"])?;
        ensure!(
            unit["NRestarts"] == "0" && unit["Description"].contains(install.version()),
            "kafka.service: {unit:?}"
        );
        // Kafka 3.9 registered itself under /brokers/ids in the fleet's ensemble, at the ENI's address.
        let zk = zookeeper_client::Client::connector()
            .with_session_timeout(Duration::from_secs(4))
            .connect(
                &fleet
                    .zookeeper()
                    .context("the fleet's ZooKeeper ensemble")?
                    .connect_string(),
            )
            .await?;
        let (registration, _) = zk.get_data("/brokers/ids/0").await?;
        let registration = String::from_utf8_lossy(&registration).into_owned();
        let eni_ip = state.eni.as_ref().map(|e| e.ip.clone()).unwrap_or_default();
        ensure!(
            registration.contains(&format!("PLAINTEXT://{eni_ip}:{}", layout::KAFKA_PORT)),
            "registration {registration}"
        );
        // A real client produces and reads back through it.
        let client = berth_sim::kafka::client(&fleet, &install);
        tokio::task::block_in_place(|| client.produce("zk-mode", 100))?;
        let report = tokio::task::block_in_place(|| client.consume("zk-mode", 100))?;
        ensure!(report.is_exact(), "consumed {report:?}");
        Ok(())
    })
    .expect("a ZooKeeper-mode host runs Kafka 3.9");
}
