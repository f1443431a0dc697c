//! The strict moto server: moto 5.2.5 with real EC2's attach refusals, started from the project's virtualenv.
//!
//! `python/strict_moto.py` does the patching (see its docstring for the exact list); this module starts it on a
//! chosen address (port 0 by default, so the script picks a free port and reports it), waits for its `READY`
//! line, and kills it in `Drop`. A command prefix such as `ip netns exec <ns>` runs it inside a network
//! namespace, which is how the simulated fleet places it in its VPC.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::http::blocking_request;

/// Environment variable naming the Python interpreter that has `moto[server]==5.2.5` installed.
pub const PYTHON_ENV: &str = "BERTH_MOTO_PYTHON";

/// What happens to a terminated instance's secondary ENIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EniOnTerminate {
    /// Real EC2: detached once the instance leaves `shutting-down`.
    Detach,
    /// moto's own behaviour: left `in-use` on the dead instance.
    Keep,
}

impl EniOnTerminate {
    fn as_str(self) -> &'static str {
        match self {
            EniOnTerminate::Detach => "detach",
            EniOnTerminate::Keep => "keep",
        }
    }
}

/// Why the strict moto server could not be started or controlled.
#[derive(Debug, thiserror::Error)]
pub enum MotoError {
    /// The interpreter could not be spawned.
    #[error("cannot start {python:?} (set {PYTHON_ENV} or run scripts/setup.sh to create .venv)")]
    Spawn {
        /// The interpreter.
        python: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The script exited or never printed its READY line.
    #[error("strict moto did not become ready within {timeout:?}: {detail}")]
    NotReady {
        /// How long we waited.
        timeout: Duration,
        /// What was seen.
        detail: String,
    },
    /// The control endpoint refused a request.
    #[error("strict moto control {path}: {detail}")]
    Control {
        /// The control path.
        path: String,
        /// Status and body, or the I/O error.
        detail: String,
    },
}

/// How to start a strict moto server.
#[derive(Debug, Clone)]
pub struct StrictMotoBuilder {
    python: PathBuf,
    prefix: Vec<String>,
    host: IpAddr,
    port: u16,
    control_port: u16,
    eni_on_terminate: EniOnTerminate,
    terminate_hold: Duration,
    ready_timeout: Duration,
}

impl Default for StrictMotoBuilder {
    fn default() -> Self {
        Self {
            python: default_python(),
            prefix: Vec::new(),
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            control_port: 0,
            eni_on_terminate: EniOnTerminate::Detach,
            terminate_hold: Duration::ZERO,
            ready_timeout: Duration::from_secs(30),
        }
    }
}

/// `$BERTH_MOTO_PYTHON`, else `<workspace>/.venv/bin/python`, else `/opt/berth-venv/bin/python`.
pub fn default_python() -> PathBuf {
    if let Some(python) = std::env::var_os(PYTHON_ENV) {
        return python.into();
    }
    let venv = crate::workspace_root().join(".venv/bin/python");
    let fallback = PathBuf::from("/opt/berth-venv/bin/python");
    if !venv.exists() && fallback.exists() {
        fallback
    } else {
        venv
    }
}

/// The launcher script's path.
pub fn script_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/strict_moto.py")
}

impl StrictMotoBuilder {
    /// The Python interpreter (default: [`default_python`]).
    pub fn python(mut self, python: impl Into<PathBuf>) -> Self {
        self.python = python.into();
        self
    }

    /// A command prefix, e.g. `["ip", "netns", "exec", "vpc"]`.
    pub fn prefix<S: Into<String>>(mut self, prefix: impl IntoIterator<Item = S>) -> Self {
        self.prefix = prefix.into_iter().map(Into::into).collect();
        self
    }

    /// The address both endpoints bind (default 127.0.0.1).
    pub fn host(mut self, host: IpAddr) -> Self {
        self.host = host;
        self
    }

    /// The EC2 endpoint's port (default 0: a free one).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// The control endpoint's port (default 0: a free one).
    pub fn control_port(mut self, port: u16) -> Self {
        self.control_port = port;
        self
    }

    /// What termination does to secondary ENIs (default: detach, as real EC2).
    pub fn eni_on_terminate(mut self, mode: EniOnTerminate) -> Self {
        self.eni_on_terminate = mode;
        self
    }

    /// How long TerminateInstances keeps an instance in `shutting-down` (default: zero, straight to terminated).
    pub fn terminate_hold(mut self, hold: Duration) -> Self {
        self.terminate_hold = hold;
        self
    }

    /// Starts the server and waits for it to listen.
    pub fn start(self) -> Result<StrictMoto, MotoError> {
        let mut command = match self.prefix.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&self.python);
                command
            }
            None => Command::new(&self.python),
        };
        command
            .arg(script_path())
            .args(["--host", &self.host.to_string()])
            .args(["--port", &self.port.to_string()])
            .args(["--control-port", &self.control_port.to_string()])
            .args(["--eni-on-terminate", self.eni_on_terminate.as_str()])
            .args([
                "--terminate-hold-seconds",
                &self.terminate_hold.as_secs_f64().to_string(),
            ])
            // The script exits when its stdin closes, so a test process killed without running Drop leaves
            // no moto behind.
            .arg("--exit-on-stdin-eof")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().map_err(|source| MotoError::Spawn {
            python: self.python.clone(),
            source,
        })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = std::time::Instant::now() + self.ready_timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match received.recv_timeout(left) {
                Ok(line) => {
                    if let Some(json) = line.strip_prefix("READY ") {
                        let endpoint = json_field(json, "endpoint");
                        let control = json_field(json, "control");
                        if let (Some(endpoint), Some(control)) = (endpoint, control) {
                            let stdin = child.stdin.take();
                            return Ok(StrictMoto {
                                child,
                                _stdin: stdin,
                                endpoint,
                                control,
                            });
                        }
                    }
                    seen.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                    return Err(MotoError::NotReady {
                        timeout: self.ready_timeout,
                        detail: format!("exit {status}; stdout: {}", seen.join(" | ")),
                    });
                }
            }
        }
    }
}

/// A `"key": "value"` string field of the READY line (flat JSON written by our own script).
fn json_field(json: &str, key: &str) -> Option<String> {
    let start = json.find(&format!("\"{key}\": \""))? + key.len() + 5;
    let end = json[start..].find('"')? + start;
    Some(json[start..end].to_owned())
}

/// A running strict moto server; killed in `Drop`.
#[derive(Debug)]
pub struct StrictMoto {
    child: Child,
    /// Held open for the server's lifetime; closing it (even by our death) stops the server.
    _stdin: Option<std::process::ChildStdin>,
    endpoint: String,
    control: String,
}

impl StrictMoto {
    /// A builder with the defaults (127.0.0.1, free ports, real EC2 ENI release, no shutting-down hold).
    pub fn builder() -> StrictMotoBuilder {
        StrictMotoBuilder::default()
    }

    /// Starts one with the defaults.
    pub fn start() -> Result<Self, MotoError> {
        Self::builder().start()
    }

    /// The EC2 (and any moto service) endpoint URL, e.g. `http://127.0.0.1:40941`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The endpoint as a socket address (for proxies).
    pub fn address(&self) -> SocketAddr {
        self.endpoint
            .trim_start_matches("http://")
            .parse()
            .expect("the script reports ip:port")
    }

    /// The control endpoint URL.
    pub fn control_url(&self) -> &str {
        &self.control
    }

    /// Sets how long TerminateInstances holds an instance in `shutting-down` from now on.
    pub fn set_terminate_hold(&self, hold: Duration) -> Result<(), MotoError> {
        self.control_post(
            "/config",
            &format!("{{\"terminate_hold_seconds\": {}}}", hold.as_secs_f64()),
        )
    }

    /// Switches between real EC2's ENI release on termination and moto's behaviour.
    pub fn set_eni_on_terminate(&self, mode: EniOnTerminate) -> Result<(), MotoError> {
        self.control_post(
            "/config",
            &format!("{{\"eni_on_terminate\": \"{}\"}}", mode.as_str()),
        )
    }

    /// Puts a running instance into `shutting-down` (attachments kept) for `hold`, or until
    /// [`finish_termination`](Self::finish_termination) when `None`.
    pub fn begin_shutting_down(
        &self,
        instance_id: &str,
        hold: Option<Duration>,
    ) -> Result<(), MotoError> {
        let seconds = hold.map_or(0.0, |hold| hold.as_secs_f64());
        self.control_post(
            "/shutting-down",
            &format!("{{\"instance_id\": \"{instance_id}\", \"seconds\": {seconds}}}"),
        )
    }

    /// Ends a `shutting-down` hold now: the instance becomes `terminated` (and its ENIs are released when so
    /// configured).
    pub fn finish_termination(&self, instance_id: &str) -> Result<(), MotoError> {
        self.control_post(
            "/finish",
            &format!("{{\"instance_id\": \"{instance_id}\"}}"),
        )
    }

    fn control_post(&self, path: &str, body: &str) -> Result<(), MotoError> {
        let url = format!("{}{path}", self.control);
        match blocking_request(&url, "POST", body) {
            Ok(response) if response.status == 200 => Ok(()),
            Ok(response) => Err(MotoError::Control {
                path: path.into(),
                detail: format!(
                    "HTTP {}: {}",
                    response.status,
                    String::from_utf8_lossy(&response.body)
                ),
            }),
            Err(error) => Err(MotoError::Control {
                path: path.into(),
                detail: error.to_string(),
            }),
        }
    }
}

impl Drop for StrictMoto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
