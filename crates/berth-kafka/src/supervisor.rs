//! Starting and stopping Kafka: through systemd in production, or as a supervised child process.
//!
//! Under systemd, berth only asks (`systemctl start|restart|stop <unit>`); the unit's `Restart=` restarts a
//! crashed Kafka and its `TimeoutStopSec=` bounds the controlled shutdown. PID 1 is not systemd here, so that
//! half stays thin and its command lines are unit-tested. Without systemd (other hosts, the simulation) berth
//! runs Kafka itself and mirrors what the unit would do: restart an exited Kafka after a delay, a bounded number
//! of times per interval (systemd's `RestartSec=`, `StartLimitBurst=`, `StartLimitIntervalSec=`), and stop it
//! with SIGTERM, then SIGKILL after the stop timeout. Kafka's output is forwarded to the log and its last lines
//! kept, so a Kafka that refuses to start is reported with its own reason.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_core::{Classify, ErrorKind};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// Environment variable naming the overlay for a child Kafka (it also gets the path as its last argument).
pub const OVERLAY_ENV: &str = "BERTH_KAFKA_OVERLAY";

/// Lines of Kafka's output kept to explain an exit.
const TAIL_LINES: usize = 40;

/// A supervisor operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// The program could not be started at all.
    #[error("starting {program:?}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// `systemctl` failed or refused.
    #[error("`{command}` failed ({status}): {output}")]
    Systemctl {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed.
        output: String,
    },
    /// `systemctl` did not finish by the deadline.
    #[error("`{command}` did not finish within {after:?}")]
    SystemctlTimeout {
        /// The command line.
        command: String,
        /// The time allowed.
        after: Duration,
    },
    /// No command line was configured for the process supervisor.
    #[error("kafka.command is empty")]
    NoCommand,
}

impl Classify for SupervisorError {
    /// Fatal when Kafka cannot be run at all (no program, or one that is missing or not executable).
    fn kind(&self) -> ErrorKind {
        match self {
            SupervisorError::Spawn { source, .. }
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
                ) =>
            {
                ErrorKind::Fatal
            }
            SupervisorError::NoCommand => ErrorKind::Fatal,
            _ => ErrorKind::Retryable,
        }
    }
}

/// What berth asks systemd to do with the Kafka unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitAction {
    /// Start (no-op when running).
    Start,
    /// Restart (new settings).
    Restart,
    /// Stop (controlled shutdown, bounded by the unit's TimeoutStopSec).
    Stop,
}

impl UnitAction {
    fn verb(self) -> &'static str {
        match self {
            UnitAction::Start => "start",
            UnitAction::Restart => "restart",
            UnitAction::Stop => "stop",
        }
    }
}

/// Kafka as a systemd unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemdUnit {
    unit: String,
    systemctl: PathBuf,
}

impl SystemdUnit {
    /// The unit (e.g. `kafka.service`), driven through `systemctl` on `PATH`.
    pub fn new(unit: impl Into<String>) -> Self {
        Self {
            unit: unit.into(),
            systemctl: "systemctl".into(),
        }
    }

    /// Drives the unit through another `systemctl` (a path), e.g. a recording fake where PID 1 is not systemd.
    pub fn with_systemctl(mut self, systemctl: impl Into<PathBuf>) -> Self {
        self.systemctl = systemctl.into();
        self
    }

    /// The command line for an action.
    pub fn command(&self, action: UnitAction) -> Vec<String> {
        vec![
            self.systemctl.display().to_string(),
            action.verb().into(),
            self.unit.clone(),
        ]
    }

    /// Runs an action, bounded by `timeout`.
    pub async fn run(&self, action: UnitAction, timeout: Duration) -> Result<(), SupervisorError> {
        let argv = self.command(action);
        let command = argv.join(" ");
        let output = output_within(&argv, timeout).await?;
        if output.status.success() {
            return Ok(());
        }
        let mut text = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        if text.is_empty() {
            text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        }
        Err(SupervisorError::Systemctl {
            command,
            status: output.status.to_string(),
            output: text,
        })
    }
}

/// Why a bounded command produced no output; each caller's error type takes it in with `From`.
#[derive(Debug)]
pub(crate) enum Bounded {
    /// It did not finish in time (it is killed).
    TimedOut { command: String, after: Duration },
    /// It could not be started.
    Spawn {
        program: String,
        source: std::io::Error,
    },
}

impl From<Bounded> for SupervisorError {
    fn from(failure: Bounded) -> Self {
        match failure {
            Bounded::TimedOut { command, after } => Self::SystemctlTimeout { command, after },
            Bounded::Spawn { program, source } => Self::Spawn { program, source },
        }
    }
}

/// Runs a short command (no stdin) to completion and returns its output, killing it at `timeout`.
pub(crate) async fn output_within(
    argv: &[String],
    timeout: Duration,
) -> Result<std::process::Output, Bounded> {
    let program = argv.first().ok_or_else(|| Bounded::Spawn {
        program: String::new(),
        source: std::io::ErrorKind::InvalidInput.into(),
    })?;
    let child = Command::new(program)
        .args(&argv[1..])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(timeout, child).await {
        Err(_) => Err(Bounded::TimedOut {
            command: argv.join(" "),
            after: timeout,
        }),
        Ok(result) => result.map_err(|source| Bounded::Spawn {
            program: program.clone(),
            source,
        }),
    }
}

/// How a child Kafka is restarted after it exits by itself (systemd's `Restart=always` semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Wait before a restart (`RestartSec=`).
    pub delay: Duration,
    /// Starts allowed per interval (`StartLimitBurst=`) before the supervisor gives up.
    pub burst: u32,
    /// The interval (`StartLimitIntervalSec=`).
    pub interval: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            delay: Duration::from_secs(1),
            burst: 5,
            interval: Duration::from_secs(60),
        }
    }
}

/// What the child Kafka is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildState {
    /// Running as `pid`; `starts` counts every start since the supervisor was started.
    Running {
        /// Its process id.
        pid: u32,
        /// Starts so far (1 = first).
        starts: u32,
    },
    /// Exited by itself; restarted after the policy's delay unless the start limit is hit.
    Exited {
        /// Exit status.
        status: String,
        /// Kafka's own explanation (its last error lines), or its last line.
        reason: String,
        /// Whether a restart follows.
        restarting: bool,
    },
    /// Stopped by berth.
    Stopped,
}

struct Running {
    stop: oneshot::Sender<Duration>,
    task: JoinHandle<Option<ExitStatus>>,
    state: watch::Receiver<ChildState>,
}

/// Kafka as a child process of berth.
pub struct ProcessSupervisor {
    command: Vec<String>,
    overlay: PathBuf,
    policy: RestartPolicy,
    running: Mutex<Option<Running>>,
}

impl ProcessSupervisor {
    /// Runs `command` with the overlay path appended as its last argument and in [`OVERLAY_ENV`].
    pub fn new(command: Vec<String>, overlay: PathBuf, policy: RestartPolicy) -> Self {
        Self {
            command,
            overlay,
            policy,
            running: Mutex::new(None),
        }
    }

    /// The command line a child is started with.
    pub fn command_line(&self) -> Vec<String> {
        let mut argv = self.command.clone();
        argv.push(self.overlay.display().to_string());
        argv
    }

    /// Starts the child unless one is already supervised; returns a view of its state.
    pub fn start(&self) -> Result<watch::Receiver<ChildState>, SupervisorError> {
        let mut running = self.running.lock().expect("supervisor lock");
        if let Some(current) = running.as_ref() {
            if !current.task.is_finished() {
                return Ok(current.state.clone());
            }
        }
        let argv = self.command_line();
        let child = spawn(&argv, &self.overlay)?;
        let pid = child.child.id().unwrap_or_default();
        let (state_tx, state_rx) = watch::channel(ChildState::Running { pid, starts: 1 });
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(supervise(
            argv,
            self.overlay.clone(),
            self.policy,
            child,
            state_tx,
            stop_rx,
        ));
        *running = Some(Running {
            stop: stop_tx,
            task,
            state: state_rx.clone(),
        });
        Ok(state_rx)
    }

    /// The supervised child's state, if one was started and not stopped.
    pub fn state(&self) -> Option<ChildState> {
        self.running
            .lock()
            .expect("supervisor lock")
            .as_ref()
            .map(|running| running.state.borrow().clone())
    }

    /// SIGTERM, then SIGKILL after `grace`; returns the last child's exit status (None when none was running).
    pub async fn stop(&self, grace: Duration) -> Option<ExitStatus> {
        let running = self.running.lock().expect("supervisor lock").take()?;
        let _ = running.stop.send(grace);
        running.task.await.ok().flatten()
    }
}

struct Spawned {
    child: Child,
    readers: Vec<JoinHandle<()>>,
    tail: Arc<Mutex<VecDeque<String>>>,
}

fn spawn(argv: &[String], overlay: &std::path::Path) -> Result<Spawned, SupervisorError> {
    let program = argv.first().ok_or(SupervisorError::NoCommand)?;
    let mut child = Command::new(program)
        .args(&argv[1..])
        .env(OVERLAY_ENV, overlay)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| SupervisorError::Spawn {
            program: program.clone(),
            source,
        })?;
    let pid = child.id().unwrap_or_default();
    tracing::info!(pid, command = %argv.join(" "), "kafka started as a child process");
    let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
    let mut readers = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        readers.push(tokio::spawn(forward(stdout, pid, tail.clone())));
    }
    if let Some(stderr) = child.stderr.take() {
        readers.push(tokio::spawn(forward(stderr, pid, tail.clone())));
    }
    Ok(Spawned {
        child,
        readers,
        tail,
    })
}

async fn forward(stream: impl AsyncRead + Unpin, pid: u32, tail: Arc<Mutex<VecDeque<String>>>) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(target: "kafka", pid, "{line}");
        let mut tail = tail.lock().expect("tail lock");
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

/// Kafka's explanation of an exit: its last lines naming an exception or error, else its last line.
fn exit_reason(tail: &VecDeque<String>) -> String {
    let explaining: Vec<&str> = tail
        .iter()
        .map(|line| line.trim())
        .filter(|line| {
            line.contains("Exception") || line.contains("ERROR") || line.contains("FATAL")
        })
        .collect();
    match explaining.as_slice() {
        [] => tail
            .back()
            .map(|line| line.trim().to_owned())
            .unwrap_or_else(|| "no output".into()),
        lines => lines[lines.len().saturating_sub(3)..].join(" | "),
    }
}

async fn settle(spawned: &mut Spawned) -> String {
    // The pipes close when the child exits (unless a grandchild holds them): give the readers a moment.
    for reader in spawned.readers.drain(..) {
        let _ = tokio::time::timeout(Duration::from_millis(500), reader).await;
    }
    exit_reason(&spawned.tail.lock().expect("tail lock"))
}

async fn terminate(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Some(pid) = child.id() {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status.ok(),
        Err(_) => {
            tracing::warn!(
                ?grace,
                "kafka did not stop within the stop timeout: SIGKILL"
            );
            let _ = child.start_kill();
            child.wait().await.ok()
        }
    }
}

async fn supervise(
    argv: Vec<String>,
    overlay: PathBuf,
    policy: RestartPolicy,
    first: Spawned,
    state: watch::Sender<ChildState>,
    mut stop: oneshot::Receiver<Duration>,
) -> Option<ExitStatus> {
    let mut starts: VecDeque<Instant> = VecDeque::from([Instant::now()]);
    let mut total = 1u32;
    let mut current = first;
    loop {
        let exited = tokio::select! {
            status = current.child.wait() => status,
            grace = &mut stop => {
                let status = terminate(&mut current.child, grace.unwrap_or(Duration::from_secs(30))).await;
                settle(&mut current).await;
                tracing::info!(status = ?status, "kafka stopped");
                state.send_replace(ChildState::Stopped);
                return status;
            }
        };
        let reason = settle(&mut current).await;
        let status = exited
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_else(|e| e.to_string());
        while starts
            .front()
            .is_some_and(|at| at.elapsed() > policy.interval)
        {
            starts.pop_front();
        }
        let restarting = (starts.len() as u32) < policy.burst;
        tracing::warn!(%status, %reason, restarting, "kafka exited");
        state.send_replace(ChildState::Exited {
            status,
            reason: reason.clone(),
            restarting,
        });
        if !restarting {
            let _ = stop.await;
            state.send_replace(ChildState::Stopped);
            return exited.ok();
        }
        tokio::select! {
            _ = tokio::time::sleep(policy.delay) => {}
            _ = &mut stop => {
                state.send_replace(ChildState::Stopped);
                return exited.ok();
            }
        }
        match spawn(&argv, &overlay) {
            Ok(next) => {
                current = next;
                total += 1;
                starts.push_back(Instant::now());
                let pid = current.child.id().unwrap_or_default();
                state.send_replace(ChildState::Running { pid, starts: total });
            }
            Err(error) => {
                tracing::error!(%error, "kafka could not be restarted");
                state.send_replace(ChildState::Exited {
                    status: "not restarted".into(),
                    reason: error.to_string(),
                    restarting: false,
                });
                let _ = stop.await;
                state.send_replace(ChildState::Stopped);
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The child's signal handler is in place once it has created this file.
    async fn wait_for_file(path: &std::path::Path) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !path.exists() {
            assert!(
                Instant::now() < deadline,
                "{} never appeared",
                path.display()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[test]
    fn systemd_commands_name_the_unit() {
        let unit = SystemdUnit::new("kafka.service");
        assert_eq!(
            unit.command(UnitAction::Start),
            ["systemctl", "start", "kafka.service"]
        );
        assert_eq!(
            unit.command(UnitAction::Restart),
            ["systemctl", "restart", "kafka.service"]
        );
        assert_eq!(
            unit.command(UnitAction::Stop),
            ["systemctl", "stop", "kafka.service"]
        );
    }

    /// PID 1 is not systemd here: a fake `systemctl` (a shell script) records its arguments and answers as
    /// systemctl does for a unit that exists (`start`) and one that fails (`stop`).
    #[tokio::test]
    async fn systemctl_runs_the_command_and_reports_its_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("calls");
        let fake = dir.path().join("fake-systemctl");
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\necho \"$@\" >> {}\nif [ \"$1\" = stop ]; then echo 'Job for kafka.service failed.' >&2; exit 1; fi\n",
                log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let unit = SystemdUnit::new("kafka.service").with_systemctl(&fake);
        unit.run(UnitAction::Start, Duration::from_secs(5))
            .await
            .expect("start succeeds");
        let error = unit
            .run(UnitAction::Stop, Duration::from_secs(5))
            .await
            .expect_err("stop fails");
        let text = error.to_string();
        assert!(
            text.contains("stop kafka.service") && text.contains("Job for kafka.service failed."),
            "{text}"
        );
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "start kafka.service\nstop kafka.service\n"
        );
    }

    #[test]
    fn the_exit_reason_is_kafkas_error_line() {
        let tail: VecDeque<String> = [
            "INFO starting",
            "ERROR Fatal error during KafkaServer startup. Prepare to shutdown",
            "kafka.common.InconsistentBrokerIdException: Configured broker.id 1 doesn't match stored broker.id Some(2)",
            "INFO shut down completed",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        let reason = exit_reason(&tail);
        assert!(
            reason.contains("InconsistentBrokerIdException: Configured broker.id 1"),
            "{reason}"
        );
        assert_eq!(exit_reason(&VecDeque::from(["bye".to_string()])), "bye");
    }

    #[tokio::test]
    async fn a_child_that_exits_is_restarted_within_the_start_limit_and_stop_terminates_it() {
        let dir = tempfile::tempdir().unwrap();
        let count = dir.path().join("count");
        // Exits at once twice, then stays up until SIGTERM.
        let script = format!(
            "echo x >> {c}; n=$(wc -l < {c}); echo \"start $n overlay $1 env ${OVERLAY_ENV}\"; \
             if [ $n -lt 3 ]; then echo 'ERROR boom' >&2; exit 3; fi; trap 'exit 0' TERM; touch {r}; \
             while :; do sleep 0.05; done",
            c = count.display(),
            r = dir.path().join("ready").display()
        );
        let policy = RestartPolicy {
            delay: Duration::from_millis(10),
            burst: 5,
            interval: Duration::from_secs(60),
        };
        let supervisor = ProcessSupervisor::new(
            vec!["/bin/sh".into(), "-c".into(), script, "kafka".into()],
            dir.path().join("berth.properties"),
            policy,
        );
        let mut state = supervisor.start().unwrap();
        let running = state
            .wait_for(|s| matches!(s, ChildState::Running { starts: 3, .. }))
            .await
            .unwrap()
            .clone();
        assert!(matches!(running, ChildState::Running { starts: 3, .. }));
        wait_for_file(&dir.path().join("ready")).await;
        let status = supervisor
            .stop(Duration::from_secs(5))
            .await
            .expect("an exit status");
        assert!(status.success(), "SIGTERM handled by the child: {status}");
        assert_eq!(std::fs::read_to_string(&count).unwrap().lines().count(), 3);
        assert_eq!(supervisor.state(), None);
    }

    #[tokio::test]
    async fn the_start_limit_stops_restarts_and_keeps_the_reason() {
        let policy = RestartPolicy {
            delay: Duration::from_millis(1),
            burst: 2,
            interval: Duration::from_secs(60),
        };
        let supervisor = ProcessSupervisor::new(
            vec![
                "/bin/sh".into(),
                "-c".into(),
                "echo 'ERROR refused' >&2; exit 1".into(),
                "kafka".into(),
            ],
            "/nonexistent/berth.properties".into(),
            policy,
        );
        let mut state = supervisor.start().unwrap();
        let gave_up = state
            .wait_for(|s| {
                matches!(
                    s,
                    ChildState::Exited {
                        restarting: false,
                        ..
                    }
                )
            })
            .await
            .unwrap()
            .clone();
        assert_eq!(
            gave_up,
            ChildState::Exited {
                status: "exit status: 1".into(),
                reason: "ERROR refused".into(),
                restarting: false
            }
        );
        supervisor.stop(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn a_child_ignoring_sigterm_is_killed_after_the_grace() {
        let dir = tempfile::tempdir().unwrap();
        let ready = dir.path().join("ready");
        let script = format!(
            "trap '' TERM; touch {}; while :; do sleep 0.05; done",
            ready.display()
        );
        let supervisor = ProcessSupervisor::new(
            vec!["/bin/sh".into(), "-c".into(), script],
            "/tmp/unused".into(),
            RestartPolicy::default(),
        );
        supervisor.start().unwrap();
        wait_for_file(&ready).await;
        let started = Instant::now();
        let status = supervisor
            .stop(Duration::from_millis(300))
            .await
            .expect("status");
        assert!(!status.success());
        assert!(started.elapsed() >= Duration::from_millis(300));
    }
}
