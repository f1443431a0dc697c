//! What an operator installs on a broker host, done to a [`Container`]: Kafka as `kafka.service`, the berth
//! `.deb` (`dpkg -i`, which neither enables nor starts berth: checked), berth's drop-in for `kafka.service` as the
//! package ships it (`/usr/share/berth/kafka.service.d/berth.conf`, installed as `docs/kafka.md` says),
//! `/etc/berth/berth.toml` and `/etc/berth/environment`, then `systemctl enable berth` and `systemctl start berth`
//! (several hosts' starts released at one instant: [`start_installed`]). berth then drives Kafka
//! through the container's real `systemctl` (`kafka.supervisor = "systemd"`, the production default). A later
//! version of the package is installed over it as an operator upgrades ([`upgrade`]).
//!
//! The package is what `make deb` builds (cargo-deb, the crate's `[package.metadata.deb]`), made from the
//! binary the fleet runs (`--no-build`) with fast gzip (cargo-deb's own gzip took minutes on the unstripped
//! debug binary; the system's takes seconds), once per binary and package inputs: it is cached next to the
//! binary under a name that hashes them (and the Debian revision: the same binary packaged as a later revision
//! is how a test upgrades berth).
//!
//! Kafka is Apache Kafka (the fleet's [`crate::fleet::SimKafka`]: 4.x in KRaft mode by default, 3.9 in ZooKeeper
//! mode as an option): its jars from the setup cache and our launcher (`tests/kafka`) are bound read-only into
//! the container, and `/opt/kafka/bin/kafka-server-start.sh` and `kafka-storage.sh` (what the documented drop-in
//! and berth's default `kafka.format_command` run) exec the launcher, with a 256 MiB heap. Where a test needs
//! what real Kafka cannot give, the launcher runs `kafka-standin` instead ([`STANDIN_LAUNCHER`], NOT Kafka).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use berth_testkit::kafka::security::{
    ClusterSecurity, HostFile, BERTH_SECRETS_DIR, BERTH_SECRETS_DROPIN,
};
use berth_testkit::kafka::Install;

use crate::container::{Bind, Container, ContainerError, ContainerSpec};
use crate::fleet::{Binaries, FleetOptions};
use crate::{ec2, layout, region};

/// Where the berth package is bound inside every container.
const PACKAGE_DIR: &str = "/run/berth-sim/packages";
/// Where the fleet's fake sysfs tree (NVMe model and serial of each plugged volume) is bound.
pub const SYS_ROOT: &str = "/run/berth-sim/sys";
/// Where the Kafka stand-in's binary is bound.
const STANDIN: &str = "/usr/local/lib/berth-sim/kafka-standin";
/// berth's unit.
pub const BERTH_UNIT: &str = "berth.service";
/// Kafka's unit.
pub const KAFKA_UNIT: &str = "kafka.service";

/// Where `tests/kafka` (our launcher and its log4j configurations) is bound inside every container.
const KAFKA_TOOLS: &str = "/usr/local/lib/berth-sim/kafka";
/// Where the setup cache keeps a version's jars, inside a container (the launcher's default cache root).
fn container_libs(version: &str) -> String {
    format!("/var/cache/berth/kafka/{version}/libs")
}

/// The Kafka stand-in's launcher (a stand-in that is NOT Kafka), for fleets that ask for it.
pub const STANDIN_LAUNCHER: &str = "#!/bin/sh
# kafka-server-start.sh of a berth-sim host. It runs kafka-standin, a stand-in that is NOT Kafka
# (crates/kafka-standin): Kafka's startup contract, registration and ApiVersions/Metadata, nothing more.
exec /usr/local/lib/berth-sim/kafka-standin \"$@\"
";

/// `/opt/kafka/bin/<script>` running our launcher's `subcommand` for Apache Kafka `version`.
fn kafka_launcher(version: &str, subcommand: &str) -> String {
    format!(
        "#!/bin/sh
# {subcommand} of Apache Kafka {version} on a berth-sim host: the jars from Maven Central (setup's cache, bound
# read-only) through berth's launcher (tests/kafka/bin/kafka), heap 256 MiB.
exec {KAFKA_TOOLS}/bin/kafka --version {version} {subcommand} \"$@\"
"
    )
}

/// The scripts under `/opt/kafka/bin` (path, content) for Kafka `install` (None: the stand-in).
fn kafka_scripts(install: Option<&Install>) -> Vec<(&'static str, String)> {
    match install {
        Some(install) => vec![
            (
                "/opt/kafka/bin/kafka-server-start.sh",
                kafka_launcher(install.version(), "server"),
            ),
            (
                "/opt/kafka/bin/kafka-storage.sh",
                kafka_launcher(install.version(), "storage"),
            ),
        ],
        None => vec![(
            "/opt/kafka/bin/kafka-server-start.sh",
            STANDIN_LAUNCHER.to_owned(),
        )],
    }
}

/// The operator's own Kafka unit (what a Kafka package ships); berth's drop-in overrides its start.
fn kafka_unit(install: Option<&Install>, start_delay_ms: u128) -> String {
    let (what, delay) = match install {
        Some(install) => (format!("Apache Kafka {}", install.version()), String::new()),
        None if start_delay_ms == 0 => ("kafka-standin, a stand-in".to_owned(), String::new()),
        None => (
            "kafka-standin, a stand-in".to_owned(),
            format!("# Stretches the stand-in's startup, as log recovery does.\nEnvironment=KAFKA_STANDIN_START_DELAY={start_delay_ms}ms\n"),
        ),
    };
    format!(
        "# Kafka on a berth-sim host: /opt/kafka/bin/kafka-server-start.sh runs {what}.
[Unit]
Description=Apache Kafka broker (berth-sim: {what})
After=network-online.target

[Service]
User=kafka
Group=kafka
ExecStart=/opt/kafka/bin/kafka-server-start.sh /etc/kafka/server.properties
# The JVM exits 143 (128 + SIGTERM) after Kafka's shutdown hook completed a controlled shutdown.
SuccessExitStatus=143
{delay}
[Install]
WantedBy=multi-user.target
"
    )
}

/// Where the package ships berth's drop-in for `kafka.service`, and where the operator installs it.
const DROPIN_SHIPPED: &str = "/usr/share/berth/kafka.service.d/berth.conf";
const DROPIN_INSTALLED: &str = "/etc/systemd/system/kafka.service.d/berth.conf";

/// A step of the installation that failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The container refused a step.
    #[error(transparent)]
    Container(#[from] ContainerError),
    /// A secured host's material could not be read.
    #[error("a secured host's material: {0}")]
    Security(String),
    /// The package did what it must not (enable or start berth on install).
    #[error("the berth package {0}")]
    Package(String),
    /// The instance's user data could not be run (a script that ran and failed is not this: see
    /// [`crate::cloud_init::UserDataRun::errors`]).
    #[error(transparent)]
    UserData(#[from] crate::cloud_init::CloudInitError),
    /// The package could not be built.
    #[error("building the berth package (`{command}`): {why}")]
    Build {
        /// The command line.
        command: String,
        /// What it said.
        why: String,
    },
}

/// The operator's storage-tool wrapper on a secured host (formats with the cluster's SCRAM users).
pub const FORMAT_WRAPPER: &str = "/usr/local/sbin/kafka-storage-format";

/// What berth and Kafka on a host are configured with, as the fleet renders it.
pub struct Configured<'a> {
    /// `/etc/berth/berth.toml`.
    pub berth_toml: String,
    /// `/etc/kafka/server.properties`.
    pub server_properties: String,
    /// A secured fleet's material (certificates, keys, credentials, the format wrapper).
    pub security: Option<&'a ClusterSecurity>,
    /// Installed as the shipped template's AMI has berth: neither enabled nor given `/etc/berth/environment`,
    /// both left to the instance's user data ([`crate::cloud_init`]; AWS credentials then come from the
    /// instance role in IMDS). Otherwise as an operator installs it by hand: enabled, with the environment file.
    pub for_user_data: bool,
}

/// The files a host's berth and Kafka are configured with.
#[derive(Debug, Clone)]
struct HostFiles {
    /// `/etc/berth/berth.toml`.
    pub berth_toml: String,
    /// `/etc/berth/environment` (`KEY=value` lines).
    pub environment: String,
    /// `/etc/kafka/server.properties` (the operator's; berth's overlay is merged in by the drop-in).
    pub server_properties: String,
    /// The stand-in's startup delay.
    pub kafka_delay_ms: u128,
    /// Apache Kafka (None: the stand-in).
    pub kafka: Option<Install>,
    /// A secured fleet's files, berth's credentials drop-in and the storage-tool wrapper.
    pub security: Option<(Vec<HostFile>, String, String)>,
    /// Left to the user data: no environment file written, berth not enabled.
    pub for_user_data: bool,
}

/// Boots the container of the simulated host in network namespace `ns` (named after it, so unique on this
/// machine) from the host image, with the berth package, the Kafka stand-in, Apache Kafka's jars and launcher
/// (`kafka`, when the fleet runs it) and the host's fake sysfs bound read-only; the host's own files go under
/// `dir/container`; `hosts` is its `/etc/hosts` ([`crate::layout::etc_hosts`]).
pub fn boot(
    ns: &str,
    hostname: &str,
    hosts: String,
    dir: &Path,
    sys_root: &Path,
    binaries: &Binaries,
    kafka: Option<&Install>,
) -> Result<Container, InstallError> {
    let package = package(&binaries.berth)?;
    let bind = |source: &Path, target: &str| Bind {
        source: source.to_owned(),
        target: target.into(),
    };
    let mut binds = vec![
        bind(package.parent().unwrap_or(&package), PACKAGE_DIR),
        bind(&binaries.standin, STANDIN),
        bind(sys_root, SYS_ROOT),
    ];
    if let Some(install) = kafka {
        let tools = berth_testkit::kafka::launcher();
        let tools = tools.parent().and_then(Path::parent).unwrap_or(&tools);
        binds.push(bind(tools, KAFKA_TOOLS));
        binds.push(bind(install.libs(), &container_libs(install.version())));
    }
    let spec = ContainerSpec {
        name: ns.to_owned(),
        hostname: hostname.to_owned(),
        hosts,
        image: ContainerSpec::default_image(),
        dir: dir.join("container"),
        netns: region::netns_path(ns),
        binds,
    };
    Ok(Container::boot(&spec)?)
}

/// Whether berth is installed on the host.
fn installed(container: &Container) -> bool {
    container.path("/usr/bin/berth").is_file()
}

/// Installs berth on a host that has none, as an operator does ([`install_files`]), enabled but not started: the
/// AWS credentials, log filter and the fleet's `BERTH_*` overrides go to `/etc/berth/environment` (the simulated
/// instance has no instance role). A host that has berth is left as it is.
pub fn install(
    container: &Container,
    options: &FleetOptions,
    configured: Configured<'_>,
    berth: &Path,
    kafka: Option<&Install>,
) -> Result<(), InstallError> {
    if installed(container) {
        return Ok(());
    }
    let mut environment = format!(
        "AWS_ACCESS_KEY_ID={}\nAWS_SECRET_ACCESS_KEY={}\nAWS_REGION={}\nRUST_LOG={}\n",
        ec2::ACCESS_KEY,
        ec2::SECRET_KEY,
        layout::REGION,
        std::env::var("BERTHSIM_LOG").unwrap_or_else(|_| "info".into()),
    );
    for (key, value) in &options.berth_env {
        environment.push_str(&format!("{key}={value}\n"));
    }
    let security = match configured.security {
        Some(security) => Some((
            security
                .host_files()
                .map_err(|error| InstallError::Security(error.to_string()))?,
            security.berth_credentials_dropin(),
            security.format_wrapper("/opt/kafka/bin/kafka-storage.sh"),
        )),
        None => None,
    };
    let files = HostFiles {
        berth_toml: configured.berth_toml,
        environment,
        server_properties: configured.server_properties,
        kafka_delay_ms: options.kafka_delay.as_millis(),
        kafka: kafka.cloned(),
        security,
        for_user_data: configured.for_user_data,
    };
    install_files(container, &package(berth)?, &files)
}

/// Installs Kafka's unit and berth's drop-in, then berth from its package, writes its configuration and (unless
/// that is left to the user data) its environment file, and runs `systemctl enable berth` (started later: [`start_again`], or [`start_installed`] for hosts started together).
fn install_files(
    container: &Container,
    package: &Path,
    files: &HostFiles,
) -> Result<(), InstallError> {
    // Kafka, as the operator's image has it: its user, launcher, unit (not enabled), settings.
    container.exec(&[
        "useradd",
        "--system",
        "--no-create-home",
        "--home-dir",
        "/var/lib/kafka",
        "--shell",
        "/usr/sbin/nologin",
        "kafka",
    ])?;
    for (path, script) in kafka_scripts(files.kafka.as_ref()) {
        container.write(path, &script, 0o755)?;
    }
    container.write(
        "/etc/systemd/system/kafka.service",
        &kafka_unit(files.kafka.as_ref(), files.kafka_delay_ms),
        0o644,
    )?;
    container.write(
        "/etc/kafka/server.properties",
        &files.server_properties,
        0o640,
    )?;
    container.exec(&["chown", "root:kafka", "/etc/kafka/server.properties"])?;
    if let Some((host_files, dropin, wrapper)) = &files.security {
        // As docs/operations.md ("Secrets") makes it: root's alone.
        container.exec(&["install", "-d", "-m", "0700", BERTH_SECRETS_DIR])?;
        for file in host_files {
            container.write(&file.path, &file.content, file.mode)?;
            container.exec(&["chown", file.owner, &file.path])?;
        }
        container.write(BERTH_SECRETS_DROPIN, dropin, 0o644)?;
        container.write(FORMAT_WRAPPER, wrapper, 0o700)?;
    }
    // berth, as an operator installs it: the package, which leaves berth disabled and stopped, then the drop-in it
    // ships for kafka.service and the host's configuration.
    container.exec(&["dpkg", "--install", &packaged(package)])?;
    let unit = container.show(BERTH_UNIT, &["UnitFileState", "ActiveState"])?;
    let field = |key: &str| unit.get(key).map(String::as_str).unwrap_or_default();
    if field("UnitFileState") != "disabled" || field("ActiveState") != "inactive" {
        return Err(InstallError::Package(format!(
            "left berth.service {} and {} on install (it must be neither enabled nor started)",
            field("UnitFileState"),
            field("ActiveState")
        )));
    }
    container.exec(&[
        "install",
        "-D",
        "--mode=644",
        DROPIN_SHIPPED,
        DROPIN_INSTALLED,
    ])?;
    container.write("/etc/berth/berth.toml", &files.berth_toml, 0o640)?;
    container.exec(&["systemctl", "daemon-reload"])?;
    if !files.for_user_data {
        container.write("/etc/berth/environment", &files.environment, 0o600)?;
        container.exec(&["systemctl", "enable", BERTH_UNIT])?;
    }
    Ok(())
}

/// `systemctl start berth` on an installed host, nothing asked first (it returns once berth has sent READY): the
/// one call between a barrier and berth's start when hosts start together.
pub fn start_installed(container: &Container) -> Result<(), ContainerError> {
    container
        .exec(&["systemctl", "start", BERTH_UNIT])
        .map(drop)
}

/// Starts berth again on an installed host: `systemctl restart` when its main process is gone (also cutting a
/// pending `Restart=` hold-off short), nothing when it runs.
pub fn start_again(container: &Container) -> Result<(), ContainerError> {
    if main_pid(container, BERTH_UNIT)?.is_none() {
        container.exec(&["systemctl", "restart", BERTH_UNIT])?;
    }
    Ok(())
}

/// berth's environment for its next starts only, as a runtime drop-in (gone when the container stops), e.g.
/// `FAILPOINTS` for a berth built with the `failpoints` feature; an empty list removes it. The unit reads it at
/// each start, so a restart by systemd after the drop-in is gone runs without it.
pub fn set_start_environment(
    container: &Container,
    extra: &[(&str, &str)],
) -> Result<(), ContainerError> {
    const DROPIN: &str = "/run/systemd/system/berth.service.d/start-environment.conf";
    if extra.is_empty() {
        match std::fs::remove_file(container.path(DROPIN)) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(ContainerError::Io {
                    name: container.name().to_owned(),
                    what: format!("remove {DROPIN}"),
                    source,
                })
            }
        }
    } else {
        let lines: String = extra
            .iter()
            .map(|(key, value)| format!("Environment=\"{key}={value}\"\n"))
            .collect();
        container.write(DROPIN, &format!("[Service]\n{lines}"), 0o644)?;
    }
    container.exec(&["systemctl", "daemon-reload"])?;
    Ok(())
}

/// A unit's main process as the container numbers it (None when it has none).
pub fn main_pid(container: &Container, unit: &str) -> Result<Option<u32>, ContainerError> {
    let shown = container.show(unit, &["MainPID"])?;
    Ok(shown
        .get("MainPID")
        .and_then(|pid| pid.parse().ok())
        .filter(|pid| *pid != 0))
}

/// How berth's main process ended, once it has: `Some(code)` for an exit, `None` for a signal; `Err` while it
/// runs or while a `systemctl` query fails.
pub fn berth_exit(container: &Container) -> Result<Option<i32>, String> {
    let shown = container
        .show(
            BERTH_UNIT,
            &["MainPID", "ActiveState", "ExecMainCode", "ExecMainStatus"],
        )
        .map_err(|e| e.to_string())?;
    let field = |key: &str| shown.get(key).map(String::as_str).unwrap_or_default();
    if field("MainPID") != "0" || matches!(field("ActiveState"), "active" | "reloading") {
        return Err(format!(
            "berth.service is {} (main pid {})",
            field("ActiveState"),
            field("MainPID")
        ));
    }
    // ExecMainCode is the waitid() code: 1 = exited, 2 = killed, 3 = dumped core.
    Ok((field("ExecMainCode") == "1")
        .then(|| field("ExecMainStatus").parse().ok())
        .flatten())
}

/// Why berth will not answer again by itself: its unit is inactive or failed with no restart pending (None while
/// it runs, starts or waits to be restarted, and before its first start: a launching instance joins its group
/// before its software starts).
pub fn stopped(container: &Container) -> Option<String> {
    let shown = container
        .show(
            BERTH_UNIT,
            &[
                "ActiveState",
                "SubState",
                "Result",
                "ExecMainStartTimestampMonotonic",
            ],
        )
        .ok()?;
    let field = |key: &str| shown.get(key).map(String::as_str).unwrap_or_default();
    let started = !matches!(field("ExecMainStartTimestampMonotonic"), "" | "0");
    (started && matches!(field("ActiveState"), "inactive" | "failed")).then(|| {
        format!(
            "berth.service is {} ({}, result {})",
            field("ActiveState"),
            field("SubState"),
            field("Result")
        )
    })
}

/// `systemctl kill --kill-whom=main --signal=<signal> berth.service`: what an operator types to signal the daemon.
pub fn signal_berth(
    container: &Container,
    signal: nix::sys::signal::Signal,
) -> Result<(), ContainerError> {
    container
        .exec(&[
            "systemctl",
            "kill",
            "--kill-whom=main",
            &format!("--signal={}", signal.as_str()),
            BERTH_UNIT,
        ])
        .map(drop)
}

/// The pid (as this machine numbers it) of the container's process `inner` (as the container numbers it).
pub fn outer_pid(container: &Container, inner: u32) -> Option<u32> {
    let namespace = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    let leader_ns = namespace(&container.leader().to_string())?;
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|entry| entry.file_name().to_str().map(str::to_owned))
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| namespace(pid).as_ref() == Some(&leader_ns))
        .find_map(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let ids: Vec<u32> = status
                .lines()
                .find_map(|line| line.strip_prefix("NSpid:"))?
                .split_whitespace()
                .filter_map(|id| id.parse().ok())
                .collect();
            (ids.last() == Some(&inner)).then(|| ids[0])
        })
}

/// The last `lines` of berth's and Kafka's journal, for error messages.
pub fn journal_tail(container: &Container, lines: usize) -> String {
    container
        .exec(&[
            "journalctl",
            "--unit",
            BERTH_UNIT,
            "--unit",
            KAFKA_UNIT,
            "--no-pager",
            "--lines",
            &lines.to_string(),
        ])
        .unwrap_or_else(|error| format!("(journalctl failed: {error})"))
}

/// A unit's journal on a host as structured entries (`journalctl -u <unit> -o json`, narrowed by `matches` such
/// as `_PID=1` for systemd's own lines about the unit): the fields berth logs (`WHY`, `BERTH_*`) as written.
pub fn journal_entries(
    container: &Container,
    unit: &str,
    matches: &[&str],
) -> Result<Vec<serde_json::Value>, crate::container::ContainerError> {
    let mut argv = vec!["journalctl", "--unit", unit, "--output=json", "--no-pager"];
    argv.extend_from_slice(matches);
    Ok(container
        .exec(&argv)?
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect())
}

/// Installs revision `revision` (above the fleet's 1) of the package of the binary at `berth` over the one a host
/// has, as an operator upgrades: `dpkg --install`, whose maintainer scripts restart berth if it runs.
pub fn upgrade(container: &Container, berth: &Path, revision: u32) -> Result<(), InstallError> {
    let package = package_revision(berth, revision)?;
    container.exec(&["dpkg", "--install", &packaged(&package)])?;
    Ok(())
}

/// The package's path inside a container (the packages' directory is bound there).
fn packaged(package: &Path) -> String {
    let name = package
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{PACKAGE_DIR}/{name}")
}

/// The berth `.deb` of the binary at `berth` (built by cargo-deb from it, cached next to it).
pub fn package(berth: &Path) -> Result<PathBuf, InstallError> {
    package_revision(berth, 1)
}

/// The berth `.deb` of the binary at `berth` with Debian revision `revision` (`0.1.0-<revision>`).
fn package_revision(berth: &Path, revision: u32) -> Result<PathBuf, InstallError> {
    static BUILT: Mutex<Vec<(PathBuf, u32, PathBuf)>> = Mutex::new(Vec::new());
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, _, deb)) = built
        .iter()
        .find(|(binary, rev, deb)| binary == berth && *rev == revision && deb.is_file())
    {
        return Ok(deb.clone());
    }
    let deb = build_package(berth, revision)?;
    built.push((berth.to_owned(), revision, deb.clone()));
    Ok(deb)
}

fn build_package(berth: &Path, revision: u32) -> Result<PathBuf, InstallError> {
    let workspace = berth_testkit::workspace_root();
    let bin_dir = berth.parent().unwrap_or(Path::new("."));
    // cargo-deb knows profiles by name; Cargo builds the `dev` profile into target/debug.
    let profile = match bin_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let dir = bin_dir.join("berth-sim-packages");
    let deb = dir.join(format!(
        "berth-{:016x}-{revision}.deb",
        package_inputs(berth, &workspace)
    ));
    if deb.is_file() {
        return Ok(deb);
    }
    let partial = dir.join(format!(".building-{}.deb", std::process::id()));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let revision = revision.to_string();
    let args = [
        "deb",
        "--package",
        "berth",
        "--locked",
        "--deb-revision",
        &revision,
        "--profile",
        profile,
        "--no-build",
        "--fast",
        "--compress-type",
        "gz",
        "--compress-system",
        "--no-dbgsym",
        "--quiet",
        "--output",
    ];
    let command_line = format!(
        "{} {} {}",
        PathBuf::from(&cargo).display(),
        args.join(" "),
        partial.display()
    );
    let failed = |why: String| InstallError::Build {
        command: command_line.clone(),
        why,
    };
    std::fs::create_dir_all(&dir).map_err(|e| failed(e.to_string()))?;
    let output = Command::new(&cargo)
        .args(args)
        .arg(&partial)
        .current_dir(&workspace)
        .output()
        .map_err(|e| {
            failed(format!(
                "{e} (is cargo-deb installed? ./scripts/setup.sh installs it)"
            ))
        })?;
    if !output.status.success() {
        return Err(failed(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ));
    }
    std::fs::rename(&partial, &deb).map_err(|e| failed(e.to_string()))?;
    Ok(deb)
}

/// A hash of what goes into the package: the binary (size, mtime) and every asset source file (size, mtime).
fn package_inputs(berth: &Path, workspace: &Path) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut stamp = |path: &Path| {
        if let Ok(meta) = std::fs::metadata(path) {
            path.hash(&mut hasher);
            meta.len().hash(&mut hasher);
            meta.modified().ok().hash(&mut hasher);
        }
    };
    stamp(berth);
    let mut files = vec![
        workspace.join("crates/berth/Cargo.toml"),
        workspace.join("README.md"),
    ];
    for dir in [
        "systemd",
        "systemd/kafka.service.d",
        "config",
        "docs",
        "docs/examples",
        "crates/berth/debian",
        "crates/berth/debian/man",
        "crates/berth/debian/completions",
    ] {
        if let Ok(entries) = std::fs::read_dir(workspace.join(dir)) {
            files.extend(entries.flatten().map(|entry| entry.path()));
        }
    }
    files.sort();
    for file in &files {
        stamp(file);
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The drop-in the package ships (`systemd/kafka.service.d/berth.conf`), which the hosts install.
    const SHIPPED_DROPIN: &str = include_str!("../../../systemd/kafka.service.d/berth.conf");

    #[test]
    fn the_shipped_dropin_orders_kafka_after_berth_and_is_what_the_docs_show() {
        let dropin = SHIPPED_DROPIN;
        assert!(dropin.contains("\n[Unit]\n"), "{dropin}");
        assert!(dropin.contains("\nAfter=berth.service\n"), "{dropin}");
        // Requires=/BindsTo=/PartOf= would propagate a berth restart (or stop) to Kafka.
        for key in ["Requires=", "BindsTo=", "PartOf="] {
            assert!(
                !dropin.lines().any(|line| line.starts_with(key)),
                "{key} in {dropin}"
            );
        }
        assert!(dropin.contains("\nExecStart=\nExecStart=/opt/kafka/bin/kafka-server-start.sh "));
        // What berth's storage tool wrote as root is handed to Kafka's user before every start.
        assert!(
            dropin.contains(
                "\nExecStartPre=+/bin/chown -R --from=root kafka:kafka /var/lib/kafka/data\n"
            ),
            "{dropin}"
        );
        assert!(dropin.contains(DROPIN_SHIPPED) && dropin.contains(DROPIN_INSTALLED));
        const DOC: &str = include_str!("../../../docs/kafka.md");
        assert!(
            DOC.contains(&format!("```ini\n{dropin}```")),
            "docs/kafka.md shows the shipped drop-in as it is"
        );
    }

    #[test]
    fn kafkas_scripts_exec_our_launcher_with_their_version() {
        for (subcommand, line) in [
            (
                "server",
                "exec /usr/local/lib/berth-sim/kafka/bin/kafka --version 4.4.0 server \"$@\"",
            ),
            (
                "storage",
                "exec /usr/local/lib/berth-sim/kafka/bin/kafka --version 4.4.0 storage \"$@\"",
            ),
        ] {
            let script = kafka_launcher("4.4.0", subcommand);
            let commands: Vec<&str> = script.lines().filter(|l| !l.starts_with('#')).collect();
            assert_eq!(commands, [line], "{script}");
        }
        assert_eq!(container_libs("3.9.2"), "/var/cache/berth/kafka/3.9.2/libs");
    }

    #[test]
    fn the_stand_in_launcher_is_the_one_line_naming_the_stand_in() {
        let naming: Vec<&str> = STANDIN_LAUNCHER
            .lines()
            .filter(|line| !line.starts_with('#') && line.contains("kafka-standin"))
            .collect();
        assert_eq!(naming, [format!("exec {STANDIN} \"$@\"")]);
    }
}
