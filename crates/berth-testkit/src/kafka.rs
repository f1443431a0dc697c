//! Real Apache Kafka for tests, the demo and benchmarks: installed versions, broker and controller processes,
//! topics, and a real client (kcat, librdkafka) to produce and consume records.
//!
//! `scripts/setup.sh` resolves each version of `tests/kafka/versions` from Maven Central into
//! `${BERTH_CACHE:-/var/cache/berth}/kafka/<version>/libs`; `tests/kafka/bin/kafka` (our launcher) runs the
//! broker, the storage tool and the command-line tools from there with a small heap. This module drives it:
//!
//! - [`Install`]: one installed version ([`Install::kraft`] is the newest 4.x, [`Install::zookeeper_mode`] the
//!   3.9 line); a missing one fails loudly with the command that installs it.
//! - [`KafkaCluster`]: N nodes on given addresses and ports, formatted and started as a static KRaft quorum
//!   (every node broker and controller) or as ZooKeeper-mode brokers; each node's output goes to its own log
//!   file, read back for Kafka's own start time ([`KafkaNode::starts`]). Stop (SIGTERM, Kafka's controlled
//!   shutdown), kill (SIGKILL) and start again per node; every process is killed by pid in `Drop`.
//! - [`Client`]: `TopicCommand` (create a topic with partitions, replicas and configs) and kcat (produce keyed
//!   records with `acks=all`, consume them all and report what is missing or duplicated).
//!
//! Every command can run behind a prefix (`ip netns exec <ns>`), so a simulated fleet can place each node and
//! the client in its own network namespace. Nodes started by berth itself (through its process supervisor)
//! use [`Install::command`] for the command line and [`parse_starts`] on the output it captured.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write as _};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub mod security;
mod steady;
pub use steady::{ProduceReport, ReadBack, SteadyProducer, READ_BACK_FORMAT};

/// The versions file shared with scripts/setup.sh and the launcher: `<version> <maven profile>` lines.
const VERSIONS: &str = include_str!("../../../tests/kafka/versions");
/// How long a node may take to log "started" (a JVM start on a loaded 2-core machine takes 5-10 s).
pub const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a tool (TopicCommand, kcat) may run.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

/// A harness failure, naming what was missing or what failed, with its output.
#[derive(Debug, thiserror::Error)]
pub enum KafkaHarnessError {
    /// The version's jars are not in the cache.
    #[error("Apache Kafka {version} is not installed in {libs}: run ./scripts/setup.sh (make test runs it)")]
    NotInstalled {
        /// The version looked for.
        version: String,
        /// Where its jars should be.
        libs: PathBuf,
    },
    /// A program the harness needs is missing.
    #[error("{program} is missing: run ./scripts/setup.sh (it installs {package})")]
    MissingProgram {
        /// The program.
        program: String,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// No version of the wanted line is listed in tests/kafka/versions.
    #[error("tests/kafka/versions lists no Kafka {line} version")]
    NoVersion {
        /// `4.x` or `3.x`.
        line: &'static str,
    },
    /// A file could not be written or read.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A command could not be started.
    #[error("cannot start {command}")]
    Spawn {
        /// The command line.
        command: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A command failed or ran out of time.
    #[error("`{command}` failed ({status}): {output}")]
    Failed {
        /// The command line.
        command: String,
        /// Exit status, or "timed out after ...".
        status: String,
        /// Its last lines of output.
        output: String,
    },
    /// A node did not log that it started in time, or exited first.
    #[error("node {id} did not start within {waited:?}: {reason} (log: {log})")]
    NotStarted {
        /// The node id.
        id: u32,
        /// How long we waited.
        waited: Duration,
        /// What was seen.
        reason: String,
        /// Its log file.
        log: PathBuf,
    },
    /// A temporary directory could not be created.
    #[error("cannot create a temporary directory for Kafka")]
    TempDir(#[source] io::Error),
}

type Result<T> = std::result::Result<T, KafkaHarnessError>;

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> KafkaHarnessError + '_ {
    move |source| KafkaHarnessError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Where scripts/setup.sh caches downloads: `$BERTH_CACHE`, else `/var/cache/berth`.
pub fn cache_root() -> PathBuf {
    std::env::var_os("BERTH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/berth"))
}

/// The versions berth is tested against, newest line first (tests/kafka/versions).
pub fn versions() -> Vec<String> {
    VERSIONS
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Our launcher, `tests/kafka/bin/kafka` (it finds its log4j configurations beside itself).
pub fn launcher() -> PathBuf {
    crate::workspace_root().join("tests/kafka/bin/kafka")
}

/// One installed Kafka version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Install {
    version: String,
    libs: PathBuf,
    launcher: PathBuf,
}

impl Install {
    /// The installed `version`, or an error naming the command that installs it.
    pub fn find(version: &str) -> Result<Self> {
        let libs = cache_root().join("kafka").join(version).join("libs");
        if !libs.join(format!("kafka_2.13-{version}.jar")).exists() {
            return Err(KafkaHarnessError::NotInstalled {
                version: version.to_owned(),
                libs,
            });
        }
        Ok(Self {
            version: version.to_owned(),
            libs,
            launcher: launcher(),
        })
    }

    fn first_of(line: &'static str, prefix: &str) -> Result<Self> {
        let version = versions()
            .into_iter()
            .find(|version| version.starts_with(prefix))
            .ok_or(KafkaHarnessError::NoVersion { line })?;
        Self::find(&version)
    }

    /// The newest 4.x berth is tested against (KRaft only).
    pub fn kraft() -> Result<Self> {
        Self::first_of("4.x", "4.")
    }

    /// The 3.9 line: the last with ZooKeeper mode.
    pub fn zookeeper_mode() -> Result<Self> {
        Self::first_of("3.x", "3.")
    }

    /// The version, e.g. `4.4.0`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Where its jars are.
    pub fn libs(&self) -> &Path {
        &self.libs
    }

    /// Whether this version has ZooKeeper mode (before 4.0).
    pub fn has_zookeeper_mode(&self) -> bool {
        self.version.starts_with("3.")
    }

    /// The launcher command line for a subcommand: `server` (then the properties file), `format` (then
    /// `--cluster-id ID --config FILE`: what `kafka.format_command` should be), `topics`, `quorum`, `tool CLASS`.
    pub fn command(&self, subcommand: &str) -> Vec<String> {
        vec![
            self.launcher.display().to_string(),
            "--version".into(),
            self.version.clone(),
            subcommand.into(),
        ]
    }
}

/// Starts `words` behind `prefix` with `stdin` and `stdout`, stderr piped; the child and its command line.
fn spawn(
    prefix: &[String],
    words: &[String],
    stdin: Stdio,
    stdout: Stdio,
) -> Result<(Child, String)> {
    let argv: Vec<&String> = prefix.iter().chain(words).collect();
    let command = argv
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let child = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| KafkaHarnessError::Spawn {
            command: command.clone(),
            source,
        })?;
    Ok((child, command))
}

/// Runs `words` (behind `prefix`) with `input` on stdin, by `timeout`; its output, or an error with it.
fn run(
    prefix: &[String],
    words: &[String],
    input: Option<&[u8]>,
    timeout: Duration,
) -> Result<Output> {
    let stdin = if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    };
    let (mut child, command) = spawn(prefix, words, stdin, Stdio::piped())?;
    let writer = match (input, child.stdin.take()) {
        (Some(input), Some(mut stdin)) => {
            let input = input.to_vec();
            Some(std::thread::spawn(move || stdin.write_all(&input)))
        }
        _ => None,
    };
    let pid = child.id();
    // A watchdog kills the child at the timeout; wait_with_output then returns what it printed.
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        let timed_out = done_rx.recv_timeout(timeout).is_err();
        if timed_out {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        timed_out
    });
    let output = child
        .wait_with_output()
        .map_err(|source| KafkaHarnessError::Spawn {
            command: command.clone(),
            source,
        })?;
    let _ = done_tx.send(());
    let timed_out = watchdog.join().unwrap_or(false);
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    if timed_out || !output.status.success() {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        return Err(KafkaHarnessError::Failed {
            command,
            status: if timed_out {
                format!("timed out after {timeout:?}")
            } else {
                output.status.to_string()
            },
            output: lines[lines.len().saturating_sub(10)..].join(" | "),
        });
    }
    Ok(output)
}

/// One node: its id, where it listens and advertises, and its rack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// `node.id` (KRaft) or `broker.id` (ZooKeeper mode).
    pub id: u32,
    /// The address it listens on and advertises.
    pub host: Ipv4Addr,
    /// The client listener's port.
    pub port: u16,
    /// The controller listener's port (KRaft).
    pub controller_port: u16,
    /// `broker.rack`, if any.
    pub rack: Option<String>,
}

impl NodeSpec {
    /// Three nodes (ids 0, 1, 2) on 127.0.0.`first_octet`.. `+2`, sharing one free client port and one free
    /// controller port (each listens on its own address, as brokers on their ENI addresses do): a 3-node
    /// combined KRaft cluster on loopback.
    pub fn loopback_trio(first_octet: u8) -> Vec<NodeSpec> {
        let (port, controller_port) = (crate::free_port(), crate::free_port());
        (0..3u8)
            .map(|id| NodeSpec {
                id: id.into(),
                host: Ipv4Addr::new(127, 0, 0, first_octet + id),
                port,
                controller_port,
                rack: None,
            })
            .collect()
    }

    /// `host:port` of the client listener.
    pub fn bootstrap(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// How the nodes find their controllers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterMode {
    /// Static KRaft quorum: every node is broker and controller, formatted with this cluster id.
    Kraft {
        /// The cluster id (22 characters, as `kafka-storage.sh random-uuid` prints).
        cluster_id: String,
    },
    /// ZooKeeper mode (Kafka 3.9): `zookeeper.connect` (with Kafka's chroot).
    ZooKeeper {
        /// `host:port,.../chroot`.
        connect: String,
    },
}

/// What to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterOptions {
    /// KRaft or ZooKeeper mode.
    pub mode: ClusterMode,
    /// The nodes.
    pub nodes: Vec<NodeSpec>,
    /// Per node id, words put before the launcher (e.g. `ip netns exec host-0`); none when absent.
    pub command_prefix: BTreeMap<u32, Vec<String>>,
    /// Per node id, the log dir (e.g. on a mounted volume); a directory of the cluster's own when absent.
    pub log_dirs: BTreeMap<u32, PathBuf>,
    /// Properties appended to every node's file (later keys win).
    pub extra_properties: String,
}

impl ClusterOptions {
    /// A cluster of `nodes` in `mode` with nothing else set.
    pub fn new(mode: ClusterMode, nodes: Vec<NodeSpec>) -> Self {
        Self {
            mode,
            nodes,
            command_prefix: BTreeMap::new(),
            log_dirs: BTreeMap::new(),
            extra_properties: String::new(),
        }
    }
}

/// One run of a node, from its own log: when Kafka logged its first line and when it logged "started".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartRecord {
    /// The first line of the run (log4j's registration, right after the JVM came up).
    pub first_line: SystemTime,
    /// "Kafka Server started" (KRaft) or "[KafkaServer id=N] started" (ZooKeeper mode), if reached.
    pub started: Option<SystemTime>,
}

impl StartRecord {
    /// Kafka's own start time, as it logs it: first line to "started".
    pub fn kafka_start_time(&self) -> Option<Duration> {
        self.started
            .and_then(|started| started.duration_since(self.first_line).ok())
    }
}

/// The line every run of Kafka (3.9 and 4.x) logs first: log4j's controller MBean.
const FIRST_LINE: &str = "Log4jController";
/// "started" lines: `[KafkaRaftServer nodeId=1] Kafka Server started (kafka.server.KafkaRaftServer)` (4.x),
/// `[KafkaServer id=1] started (kafka.server.KafkaServer)` (3.9 ZooKeeper mode).
const STARTED_LINES: [&str; 2] = [
    "Kafka Server started (kafka.server.KafkaRaftServer)",
    "] started (kafka.server.KafkaServer)",
];

/// The runs in a node's output (the launcher's log4j pattern, UTC: `[2026-12-01 10:00:00,123] INFO ...`).
pub fn parse_starts(log: &str) -> Vec<StartRecord> {
    let mut runs: Vec<StartRecord> = Vec::new();
    for line in log.lines() {
        let Some(at) = log_time(line) else { continue };
        if line.contains(FIRST_LINE) && line.contains("MBean") {
            runs.push(StartRecord {
                first_line: at,
                started: None,
            });
        } else if STARTED_LINES.iter().any(|started| line.contains(started)) {
            if let Some(run) = runs.last_mut() {
                run.started.get_or_insert(at);
            }
        }
    }
    runs
}

/// The timestamp of a log line `[YYYY-MM-DD HH:MM:SS,mmm] ...` (UTC).
pub fn log_time(line: &str) -> Option<SystemTime> {
    let stamp = line.strip_prefix('[')?.get(..23)?;
    let number = |range: std::ops::Range<usize>| stamp.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second, milli) = (
        number(11..13)?,
        number(14..16)?,
        number(17..19)?,
        number(20..23)?,
    );
    // Days from the civil date (Howard Hinnant's algorithm), then seconds since the epoch.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let millis = ((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + milli;
    Some(UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).ok()?))
}

/// One Kafka process of a [`KafkaCluster`].
pub struct KafkaNode {
    spec: NodeSpec,
    dir: PathBuf,
    log_dir: PathBuf,
    prefix: Vec<String>,
    child: Mutex<Option<Child>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl KafkaNode {
    /// What it was started as.
    pub fn spec(&self) -> &NodeSpec {
        &self.spec
    }

    /// Its properties file.
    pub fn properties(&self) -> PathBuf {
        self.dir.join("server.properties")
    }

    /// Its log dir.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// The file its output goes to (appended across restarts).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("kafka.log")
    }

    /// Its output so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Every run so far, from its log.
    pub fn starts(&self) -> Vec<StartRecord> {
        parse_starts(&self.log())
    }

    /// Its process id, while running.
    pub fn pid(&self) -> Option<u32> {
        lock(&self.child).as_ref().map(Child::id)
    }

    fn spawn(&self, install: &Install) -> Result<()> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(io_error(&self.dir))?;
        let err = log.try_clone().map_err(io_error(&self.dir))?;
        let mut words = self.prefix.clone();
        words.extend(install.command("server"));
        words.push(self.properties().display().to_string());
        let child = Command::new(&words[0])
            .args(&words[1..])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|source| KafkaHarnessError::Spawn {
                command: words.join(" "),
                source,
            })?;
        *lock(&self.child) = Some(child);
        Ok(())
    }

    /// Waits until the log holds more than `started_before` "started" lines (this run's); fails early when the
    /// process exits.
    fn wait_started(&self, started_before: usize, timeout: Duration) -> Result<StartRecord> {
        let begun = Instant::now();
        loop {
            let starts = self.starts();
            let started: Vec<&StartRecord> =
                starts.iter().filter(|r| r.started.is_some()).collect();
            if started.len() > started_before {
                return Ok(*started[started.len() - 1]);
            }
            let exited = lock(&self.child)
                .as_mut()
                .map(|child| child.try_wait().ok().flatten());
            let reason = match exited {
                None => Some("not running".to_owned()),
                Some(Some(status)) => Some(format!("exited ({status})")),
                Some(None) if begun.elapsed() > timeout => Some("no \"started\" line".to_owned()),
                Some(None) => None,
            };
            if let Some(reason) = reason {
                return Err(KafkaHarnessError::NotStarted {
                    id: self.spec.id,
                    waited: begun.elapsed(),
                    reason,
                    log: self.log_path(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM (Kafka's controlled shutdown), then SIGKILL after `grace`; returns whether it exited by itself.
    pub fn stop(&self, grace: Duration) -> bool {
        let Some(mut child) = lock(&self.child).take() else {
            return true;
        };
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let begun = Instant::now();
        while begun.elapsed() < grace {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// SIGKILL, as a host that dies.
    pub fn kill(&self) {
        if let Some(mut child) = lock(&self.child).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for KafkaNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Kafka nodes started by the harness; every process is killed by pid when this is dropped.
pub struct KafkaCluster {
    install: Install,
    nodes: Vec<KafkaNode>,
    _dir: tempfile::TempDir,
}

impl KafkaCluster {
    /// Writes every node's properties, formats KRaft storage (blank log dirs only), starts every node and
    /// waits until each has logged "started".
    pub fn start(install: &Install, options: ClusterOptions) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("berth-kafka-")
            .tempdir()
            .map_err(KafkaHarnessError::TempDir)?;
        let mut nodes = Vec::with_capacity(options.nodes.len());
        for spec in &options.nodes {
            let node_dir = dir.path().join(format!("node{}", spec.id));
            fs::create_dir_all(&node_dir).map_err(io_error(&node_dir))?;
            let log_dir = options
                .log_dirs
                .get(&spec.id)
                .cloned()
                .unwrap_or_else(|| node_dir.join("data"));
            let node = KafkaNode {
                spec: spec.clone(),
                dir: node_dir,
                log_dir,
                prefix: options
                    .command_prefix
                    .get(&spec.id)
                    .cloned()
                    .unwrap_or_default(),
                child: Mutex::new(None),
            };
            let text = properties(&options, spec, &node.log_dir);
            fs::write(node.properties(), text).map_err(io_error(&node.properties()))?;
            if let ClusterMode::Kraft { cluster_id } = &options.mode {
                if meta_absent(&node.log_dir) {
                    let mut words = install.command("format");
                    words.extend([
                        "--cluster-id".into(),
                        cluster_id.clone(),
                        "--config".into(),
                        node.properties().display().to_string(),
                    ]);
                    run(&node.prefix, &words, None, TOOL_TIMEOUT)?;
                }
            }
            nodes.push(node);
        }
        let cluster = Self {
            install: install.clone(),
            nodes,
            _dir: dir,
        };
        for node in &cluster.nodes {
            node.spawn(install)?;
        }
        for node in &cluster.nodes {
            node.wait_started(0, START_TIMEOUT)?;
        }
        Ok(cluster)
    }

    /// The nodes.
    pub fn nodes(&self) -> &[KafkaNode] {
        &self.nodes
    }

    /// The node with `id`.
    pub fn node(&self, id: u32) -> &KafkaNode {
        self.nodes
            .iter()
            .find(|node| node.spec.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    /// `host:port,...` of every node's client listener.
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|node| node.spec.bootstrap())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts node `id` again (on its existing log dir) and waits for its "started" line.
    pub fn restart(&self, id: u32) -> Result<StartRecord> {
        let node = self.node(id);
        let before = node.starts().iter().filter(|r| r.started.is_some()).count();
        node.spawn(&self.install)?;
        node.wait_started(before, START_TIMEOUT)
    }
}

fn meta_absent(log_dir: &Path) -> bool {
    !log_dir.join("meta.properties").exists()
}

/// A node's properties: listeners on its address, the quorum or ZooKeeper, replication settings that fit
/// the cluster's size, then the caller's extra properties.
fn properties(options: &ClusterOptions, spec: &NodeSpec, log_dir: &Path) -> String {
    let count = options.nodes.len();
    let mut text = String::from("# Written by berth-testkit's Kafka harness.\n");
    match &options.mode {
        ClusterMode::Kraft { .. } => {
            let voters: Vec<String> = options
                .nodes
                .iter()
                .map(|n| format!("{}@{}:{}", n.id, n.host, n.controller_port))
                .collect();
            let _ = write!(
                text,
                "process.roles=broker,controller\nnode.id={id}\ncontroller.quorum.voters={voters}\n\
                 listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport}\n\
                 controller.listener.names=CONTROLLER\ninter.broker.listener.name=PLAINTEXT\n\
                 listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n",
                id = spec.id,
                voters = voters.join(","),
                host = spec.host,
                port = spec.port,
                cport = spec.controller_port,
            );
        }
        ClusterMode::ZooKeeper { connect } => {
            let _ = write!(
                text,
                "broker.id={id}\nzookeeper.connect={connect}\nzookeeper.session.timeout.ms=6000\n\
                 listeners=PLAINTEXT://{host}:{port}\n",
                id = spec.id,
                host = spec.host,
                port = spec.port,
            );
        }
    }
    let _ = write!(
        text,
        "advertised.listeners=PLAINTEXT://{host}:{port}\nlog.dirs={log_dir}\n\
         offsets.topic.replication.factor={rf}\ntransaction.state.log.replication.factor={rf}\n\
         transaction.state.log.min.isr={isr}\ngroup.initial.rebalance.delay.ms=0\n",
        host = spec.host,
        port = spec.port,
        log_dir = log_dir.display(),
        rf = count.min(3),
        isr = count.min(2),
    );
    if let Some(rack) = &spec.rack {
        let _ = writeln!(text, "broker.rack={rack}");
    }
    text.push_str(&options.extra_properties);
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Its name.
    pub name: String,
    /// Partitions.
    pub partitions: u32,
    /// Replication factor.
    pub replication_factor: u32,
    /// Topic configs, e.g. `("min.insync.replicas", "2")`.
    pub configs: Vec<(String, String)>,
}

/// What a consumer read back from a topic produced by [`Client::produce`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsumeReport {
    /// Records read (key, value), in the order read.
    pub records: Vec<(String, String)>,
    /// Record numbers produced but not read.
    pub missing: Vec<u32>,
    /// Record numbers read more than once.
    pub duplicated: Vec<u32>,
    /// Records whose value does not belong to their key.
    pub corrupt: Vec<(String, String)>,
}

impl ConsumeReport {
    /// Every record once, none changed.
    pub fn is_exact(&self) -> bool {
        self.missing.is_empty() && self.duplicated.is_empty() && self.corrupt.is_empty()
    }
}

/// A client of the cluster: Kafka's TopicCommand and kcat (librdkafka), behind an optional prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    install: Install,
    bootstrap: String,
    prefix: Vec<String>,
    secured: Option<security::Secured>,
}

/// The key of record `n`, as [`Client::produce`] writes it.
pub fn record_key(n: u32) -> String {
    format!("key-{n:06}")
}

/// The value of record `n`.
pub fn record_value(n: u32) -> String {
    format!("value-{n:06}")
}

impl Client {
    /// A client of `bootstrap` (`host:port,...`), running its tools behind `prefix`.
    pub fn new(install: &Install, bootstrap: impl Into<String>, prefix: Vec<String>) -> Self {
        Self {
            install: install.clone(),
            bootstrap: bootstrap.into(),
            prefix,
            secured: None,
        }
    }

    fn kcat() -> Result<&'static str> {
        if Path::new("/usr/bin/kcat").exists() {
            Ok("/usr/bin/kcat")
        } else {
            Err(KafkaHarnessError::MissingProgram {
                program: "/usr/bin/kcat".into(),
                package: "Debian's kcat",
            })
        }
    }

    /// TopicCommand's words for `action` (`--create`, `--describe`) on topic `name`.
    fn topic_command(&self, action: &str, name: &str) -> Vec<String> {
        let mut words = self.install.command("topics");
        words.extend(["--bootstrap-server".into(), self.bootstrap.clone()]);
        if let Some(secured) = &self.secured {
            words.extend(secured.command_config());
        }
        words.extend([action.into(), "--topic".into(), name.into()]);
        words
    }

    /// Creates a topic with Kafka's own TopicCommand.
    pub fn create_topic(&self, topic: &TopicSpec) -> Result<()> {
        let mut words = self.topic_command("--create", &topic.name);
        words.extend([
            "--partitions".into(),
            topic.partitions.to_string(),
            "--replication-factor".into(),
            topic.replication_factor.to_string(),
        ]);
        for (key, value) in &topic.configs {
            words.extend(["--config".into(), format!("{key}={value}")]);
        }
        run(&self.prefix, &words, None, TOOL_TIMEOUT).map(|_| ())
    }

    /// Describes a topic with TopicCommand (its text: leaders, replicas, ISRs).
    pub fn describe_topic(&self, name: &str) -> Result<String> {
        let words = self.topic_command("--describe", name);
        let output = run(&self.prefix, &words, None, TOOL_TIMEOUT)?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Produces records `0..count` (keys [`record_key`], values [`record_value`]) with `acks=all` through
    /// kcat; an undelivered record fails the call (kcat exits non-zero and says which).
    pub fn produce(&self, topic: &str, count: u32) -> Result<()> {
        self.produce_range(topic, 0..count, 0)
    }

    /// Produces records `range` as [`Client::produce`] does, each value padded with `padding` bytes (a
    /// benchmark's volume of data; [`compare`] reads padded values back as the same record).
    pub fn produce_range(
        &self,
        topic: &str,
        range: std::ops::Range<u32>,
        padding: usize,
    ) -> Result<()> {
        let pad = ".".repeat(padding);
        let mut input = String::with_capacity(range.len() * (28 + padding));
        for n in range {
            let _ = writeln!(input, "{}:{}{pad}", record_key(n), record_value(n));
        }
        let words = self.kcat_producer(topic, Duration::from_secs(60))?;
        let output = run(&self.prefix, &words, Some(input.as_bytes()), TOOL_TIMEOUT)?;
        // kcat's words for a record not delivered ("Delivery failed for message", "Failed to produce message"); a
        // broker that is down shows as transport errors while librdkafka delivers through the others.
        let errors = String::from_utf8_lossy(&output.stderr);
        if errors.contains("Delivery failed") || errors.contains("Failed to produce") {
            return Err(KafkaHarnessError::Failed {
                command: words.join(" "),
                status: "delivery errors".into(),
                output: errors.lines().take(10).collect::<Vec<_>>().join(" | "),
            });
        }
        Ok(())
    }

    /// kcat producing `key:value` lines from its stdin to `topic` with `acks=all` and idempotence, each record
    /// given up (a delivery error) after `message_timeout`.
    fn kcat_producer(&self, topic: &str, message_timeout: Duration) -> Result<Vec<String>> {
        let timeout = format!("message.timeout.ms={}", message_timeout.as_millis());
        let mut words = self.kcat_words()?;
        words.extend(
            [
                "-P",
                "-b",
                &self.bootstrap,
                "-t",
                topic,
                "-K",
                ":",
                "-X",
                "acks=all",
                "-X",
                "enable.idempotence=true",
                "-X",
                &timeout,
            ]
            .map(str::to_owned),
        );
        Ok(words)
    }

    /// The topic's partitions as the cluster's metadata has them (kcat `-L`): leader, replicas, in-sync replicas.
    pub fn partitions(&self, topic: &str) -> Result<Vec<PartitionState>> {
        let mut words = self.kcat_words()?;
        words.extend(["-L", "-b", &self.bootstrap, "-t", topic].map(str::to_owned));
        let output = run(&self.prefix, &words, None, TOOL_TIMEOUT)?;
        Ok(parse_partitions(&String::from_utf8_lossy(&output.stdout)))
    }

    /// Consumes the topic from the beginning to its end (kcat `-e`) and compares with records `0..produced`.
    pub fn consume(&self, topic: &str, produced: u32) -> Result<ConsumeReport> {
        let text = self.consume_formatted(topic, "%k:%s\\n")?;
        Ok(compare(&text, produced))
    }

    /// Every record of the topic from the beginning to its end, each printed with kcat's `-f` `format` (`%p`
    /// partition, `%o` offset, `%k` key, `%s` value).
    pub fn consume_formatted(&self, topic: &str, format: &str) -> Result<String> {
        let mut words = self.kcat_words()?;
        words.extend(
            [
                "-C",
                "-b",
                &self.bootstrap,
                "-t",
                topic,
                "-o",
                "beginning",
                "-e",
                "-q",
                "-f",
                format,
            ]
            .map(str::to_owned),
        );
        let output = run(&self.prefix, &words, None, TOOL_TIMEOUT)?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// One partition in the cluster's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    /// The partition number.
    pub partition: u32,
    /// Its leader (-1 when it has none).
    pub leader: i64,
    /// Its replicas.
    pub replicas: Vec<u32>,
    /// Its in-sync replicas.
    pub isrs: Vec<u32>,
}

impl PartitionState {
    /// Every replica in sync.
    pub fn fully_replicated(&self) -> bool {
        let mut replicas = self.replicas.clone();
        let mut isrs = self.isrs.clone();
        replicas.sort_unstable();
        isrs.sort_unstable();
        !replicas.is_empty() && replicas == isrs
    }
}

/// Reads kcat's `-L` lines `partition 0, leader 1, replicas: 1,2,0, isrs: 1,2,0`.
pub fn parse_partitions(metadata: &str) -> Vec<PartitionState> {
    let ids = |list: &str| -> Vec<u32> {
        list.split(',')
            .filter_map(|id| id.trim().parse().ok())
            .collect()
    };
    metadata
        .lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("partition ")?;
            let (partition, rest) = rest.split_once(", leader ")?;
            let (leader, rest) = rest.split_once(", replicas: ")?;
            let (replicas, isrs) = rest.split_once(", isrs: ")?;
            // kcat may append ", <error>" after the list.
            let end = isrs
                .find(|c: char| !(c.is_ascii_digit() || c == ','))
                .unwrap_or(isrs.len());
            let isrs = isrs[..end].trim_end_matches(',');
            Some(PartitionState {
                partition: partition.trim().parse().ok()?,
                leader: leader.trim().parse().ok()?,
                replicas: ids(replicas),
                isrs: ids(isrs),
            })
        })
        .collect()
}

/// Compares consumed `key:value` lines with records `0..produced`.
pub fn compare(consumed: &str, produced: u32) -> ConsumeReport {
    let mut report = ConsumeReport::default();
    let mut seen = vec![0u32; produced as usize];
    for line in consumed.lines().filter(|line| !line.is_empty()) {
        let (key, value) = line.split_once(':').unwrap_or((line, ""));
        report.records.push((key.to_owned(), value.to_owned()));
        let number = key
            .strip_prefix("key-")
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|&n| n < produced);
        // A padded value (Client::produce_range) is the record's value followed by dots.
        let unpadded = value.trim_end_matches('.');
        match number {
            Some(n) if unpadded == record_value(n) => seen[n as usize] += 1,
            _ => report.corrupt.push((key.to_owned(), value.to_owned())),
        }
    }
    for (n, times) in seen.iter().enumerate() {
        match times {
            0 => report.missing.push(n as u32),
            1 => {}
            _ => report.duplicated.push(n as u32),
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_times_are_kafkas_utc_stamps() {
        let at =
            log_time("[2026-12-01 04:21:07,358] INFO started (kafka.server.KafkaServer)").unwrap();
        assert_eq!(
            at.duration_since(UNIX_EPOCH).unwrap().as_millis(),
            1_796_098_867_358
        );
        assert_eq!(log_time("\tat kafka.Kafka.main(Kafka.scala)"), None);
    }

    #[test]
    fn runs_are_split_at_the_first_line_and_end_at_started() {
        let log = "[2026-12-01 04:21:00,000] INFO Registered `kafka:type=kafka.Log4jController` MBean (x)\n\
                   [2026-12-01 04:21:07,500] INFO [KafkaRaftServer nodeId=1] Kafka Server started (kafka.server.KafkaRaftServer)\n\
                   [2026-12-01 04:22:00,000] INFO Registered kafka:type=kafka.Log4jController MBean (y)\n\
                   [2026-12-01 04:22:03,250] INFO [KafkaServer id=1] started (kafka.server.KafkaServer)\n\
                   [2026-12-01 04:23:00,000] INFO Registered kafka:type=kafka.Log4jController MBean (y)\n";
        let runs = parse_starts(log);
        assert_eq!(runs.len(), 3);
        assert_eq!(
            runs[0].kafka_start_time(),
            Some(Duration::from_millis(7_500))
        );
        assert_eq!(
            runs[1].kafka_start_time(),
            Some(Duration::from_millis(3_250))
        );
        assert_eq!(runs[2].started, None);
    }

    #[test]
    fn consumed_records_are_compared_with_what_was_produced() {
        let consumed = format!(
            "{k0}:{v0}\n{k2}:{v2}\n{k2}:{v2}\n{k1}:wrong\n",
            k0 = record_key(0),
            v0 = record_value(0),
            k1 = record_key(1),
            k2 = record_key(2),
            v2 = record_value(2)
        );
        let report = compare(&consumed, 4);
        assert_eq!(report.missing, [1, 3]);
        assert_eq!(report.duplicated, [2]);
        assert_eq!(report.corrupt, [(record_key(1), "wrong".to_owned())]);
        assert!(!report.is_exact());
        let exact = compare(&format!("{}:{}\n", record_key(0), record_value(0)), 1);
        assert!(exact.is_exact());
    }

    #[test]
    fn kcat_metadata_lines_give_leaders_replicas_and_isrs() {
        let metadata = "Metadata for demo (from broker 1: 10.0.1.20:9092/1):\n 3 brokers:\n  broker 0 at 10.0.0.20:9092\n \
                        1 topics:\n  topic \"demo\" with 2 partitions:\n    partition 0, leader 1, replicas: 0,1,2, isrs: 1,2\n    \
                        partition 1, leader 2, replicas: 2,0,1, isrs: 2,0,1\n";
        let partitions = parse_partitions(metadata);
        assert_eq!(partitions.len(), 2);
        assert_eq!(partitions[0].leader, 1);
        assert_eq!(partitions[0].replicas, [0, 1, 2]);
        assert_eq!(partitions[0].isrs, [1, 2]);
        assert!(!partitions[0].fully_replicated());
        assert!(partitions[1].fully_replicated());
        let padded = format!("{}:{}...\n", record_key(0), record_value(0));
        assert!(compare(&padded, 1).is_exact());
    }

    #[test]
    fn the_versions_file_names_a_kraft_and_a_zookeeper_mode_version() {
        let versions = versions();
        assert!(versions.iter().any(|v| v.starts_with("4.")), "{versions:?}");
        assert!(
            versions.iter().any(|v| v.starts_with("3.9")),
            "{versions:?}"
        );
    }
}
