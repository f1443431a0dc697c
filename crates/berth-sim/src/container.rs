//! The systemd host kind: a simulated host that boots real systemd in `systemd-nspawn`.
//!
//! berth is a systemd daemon: operators meet it through `systemctl`, `journalctl` and its unit's hardening, and
//! only real systemd can say whether those work. A container boots the cached host image (Debian 12 with systemd,
//! built by `scripts/setup.sh`) through an overlay, so every host starts from a fresh root and none writes into
//! the image. It joins the host's existing network namespace, so the ENI hot-plug, the IMDS address and the
//! source/destination check stay as they are. Its `/dev` is its own: there is no udev in a container, so the
//! simulator creates a plugged volume's block-device node and udev's by-id link there from outside
//! ([`Container::path`] reaches the container's root through `/proc/<leader>/root`). Killing it SIGKILLs the
//! container's PID 1, which takes every process of its PID namespace along; its mounts vanish with its mount
//! namespace.
//!
//! PID 1 of this machine is not systemd, so nspawn runs unregistered (`--register=no --keep-unit`) and reports
//! its leader and readiness on a notify socket of our own (`--notify-ready=yes`), which makes the boot wait
//! event-driven.

use std::io::ErrorKind;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sys::SysError;

/// The host image berth-sim boots unless `BERTHSIM_HOST_IMAGE` names another (a link to the newest one that
/// `scripts/setup.sh` built).
pub const DEFAULT_IMAGE: &str = "/var/cache/berth/host-image/current";

/// How long a container may take to report READY.
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// A container that could not be booted or driven.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The host image is missing.
    #[error("no host image at {0} (run ./scripts/setup.sh, which builds it)")]
    NoImage(PathBuf),
    /// A file or mount operation failed.
    #[error("container {name}: {what}: {source}")]
    Io {
        /// The container.
        name: String,
        /// What was being done.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// nspawn exited or stayed silent before the container was up.
    #[error("container {name} did not boot: {why}\n--- console tail ---\n{console}")]
    Boot {
        /// The container.
        name: String,
        /// What went wrong.
        why: String,
        /// The last lines nspawn and the container printed.
        console: String,
    },
    /// A command inside the container failed.
    #[error("container {name}: {source}")]
    Exec {
        /// The container.
        name: String,
        /// The failed command.
        source: SysError,
    },
}

/// A directory bound into the container.
#[derive(Debug, Clone)]
pub struct Bind {
    /// The path on this machine.
    pub source: PathBuf,
    /// Where it appears inside the container.
    pub target: PathBuf,
}

/// What to boot.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// Machine name (unique on this machine: nspawn keeps per-name state under /run/systemd/nspawn).
    pub name: String,
    /// The host's hostname (written to `/etc/hostname` before boot).
    pub hostname: String,
    /// `/etc/hosts` (written before boot; the container's `/etc/resolv.conf` names no nameserver, so a name
    /// not in it fails at once instead of waiting on the build machine's resolver).
    pub hosts: String,
    /// The read-only lower layer.
    pub image: PathBuf,
    /// A directory of the host's own: the overlay's upper and work directories, the merged root, the console log.
    pub dir: PathBuf,
    /// The network namespace to join (`/run/netns/<name>`).
    pub netns: PathBuf,
    /// Read-only binds.
    pub binds: Vec<Bind>,
}

impl ContainerSpec {
    /// The host image to boot: `BERTHSIM_HOST_IMAGE`, else [`DEFAULT_IMAGE`].
    pub fn default_image() -> PathBuf {
        std::env::var_os("BERTHSIM_HOST_IMAGE").map_or_else(|| DEFAULT_IMAGE.into(), PathBuf::from)
    }
}

/// A booted container.
#[derive(Debug)]
pub struct Container {
    name: String,
    leader: u32,
    root: PathBuf,
    console: PathBuf,
    booted_in: Duration,
    nspawn: Mutex<Option<Child>>,
    /// The leader's start time (field 22 of /proc/<pid>/stat): with the pid, it names the process for good.
    leader_start: Option<u64>,
}

impl Container {
    /// Mounts the overlay, starts `systemd-nspawn --boot` and waits until the container's systemd reports READY
    /// (the boot transaction finished).
    pub fn boot(spec: &ContainerSpec) -> Result<Self, ContainerError> {
        let started = Instant::now();
        let name = spec.name.clone();
        let io = |what: &str| {
            let name = name.clone();
            let what = what.to_owned();
            move |source| ContainerError::Io { name, what, source }
        };
        if !spec.image.join("etc/os-release").is_file() {
            return Err(ContainerError::NoImage(spec.image.clone()));
        }
        let root = spec.dir.join("root");
        for dir in ["upper", "work", "root"] {
            std::fs::create_dir_all(spec.dir.join(dir))
                .map_err(io("create overlay directories"))?;
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            spec.image.display(),
            spec.dir.join("upper").display(),
            spec.dir.join("work").display()
        );
        nix::mount::mount(
            Some("overlay"),
            &root,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(options.as_str()),
        )
        .map_err(|errno| io("mount the overlay root")(errno.into()))?;
        let mut booted = Self::start(spec, &root).inspect_err(|_| {
            let _ = nix::mount::umount2(&root, nix::mount::MntFlags::MNT_DETACH);
        })?;
        booted.booted_in = started.elapsed();
        Ok(booted)
    }

    fn start(spec: &ContainerSpec, root: &Path) -> Result<Self, ContainerError> {
        let name = spec.name.clone();
        let io = |what: &'static str| {
            let name = name.clone();
            move |source| ContainerError::Io {
                name,
                what: what.into(),
                source,
            }
        };
        std::fs::write(root.join("etc/hostname"), format!("{}\n", spec.hostname))
            .map_err(io("write /etc/hostname"))?;
        std::fs::write(root.join("etc/hosts"), &spec.hosts).map_err(io("write /etc/hosts"))?;
        std::fs::write(
            root.join("etc/resolv.conf"),
            "# No nameserver: the simulated VPC's names are in /etc/hosts.\n",
        )
        .map_err(io("write /etc/resolv.conf"))?;
        let socket_path = spec.dir.join("notify.sock");
        let _ = std::fs::remove_file(&socket_path);
        let socket = UnixDatagram::bind(&socket_path).map_err(io("bind the notify socket"))?;
        let console = spec.dir.join("console.log");
        let log = std::fs::File::create(&console).map_err(io("create the console log"))?;
        let log2 = log.try_clone().map_err(io("create the console log"))?;
        let mut command = Command::new("systemd-nspawn");
        command
            .args(["--quiet", "--register=no", "--keep-unit", "--boot"])
            .args([
                "--console=passive",
                "--notify-ready=yes",
                "--resolv-conf=off",
            ])
            .arg(format!("--directory={}", root.display()))
            .arg(format!("--machine={}", spec.name))
            .arg(format!("--network-namespace-path={}", spec.netns.display()))
            // Not in nspawn's default set: berth configures links, addresses, routes and rules over netlink.
            .arg("--capability=CAP_NET_ADMIN");
        for bind in &spec.binds {
            command.arg(format!(
                "--bind-ro={}:{}",
                bind.source.display(),
                bind.target.display()
            ));
        }
        let child = command
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("NOTIFY_SOCKET", &socket_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(io("start systemd-nspawn"))?;
        let mut container = Self {
            name: spec.name.clone(),
            leader: 0,
            root: root.to_owned(),
            console,
            booted_in: Duration::ZERO,
            nspawn: Mutex::new(Some(child)),
            leader_start: None,
        };
        match container.await_ready(&socket) {
            Ok(leader) => {
                container.leader = leader;
                container.leader_start = start_time(leader);
                Ok(container)
            }
            Err(why) => {
                let console = container.console_tail(20);
                container.stop_nspawn(Duration::ZERO);
                Err(ContainerError::Boot {
                    name: spec.name.clone(),
                    why,
                    console,
                })
            }
        }
    }

    /// Reads nspawn's notifications until READY=1, returning the leader's pid.
    fn await_ready(&self, socket: &UnixDatagram) -> Result<u32, String> {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        let mut leader = None;
        let mut buffer = [0u8; 4096];
        // Short reads so an nspawn that dies early is noticed, not waited out.
        let _ = socket.set_read_timeout(Some(Duration::from_millis(200)));
        loop {
            if let Some(status) = lock(&self.nspawn)
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten())
            {
                return Err(format!("systemd-nspawn exited ({status})"));
            }
            if Instant::now() > deadline {
                return Err(format!("no READY within {BOOT_TIMEOUT:?}"));
            }
            let received = match socket.recv(&mut buffer) {
                Ok(n) => n,
                Err(error)
                    if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    continue
                }
                Err(error) => return Err(format!("notify socket: {error}")),
            };
            let message = String::from_utf8_lossy(&buffer[..received]);
            for line in message.lines() {
                if let Some(pid) = line.strip_prefix("X_NSPAWN_LEADER_PID=") {
                    leader = pid.trim().parse().ok();
                }
            }
            if message.lines().any(|line| line == "READY=1") {
                return leader.ok_or_else(|| "READY without X_NSPAWN_LEADER_PID".to_owned());
            }
        }
    }

    /// The machine name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The container's PID 1 as this machine sees it.
    pub fn leader(&self) -> u32 {
        self.leader
    }

    /// From `systemd-nspawn` starting to the container's READY.
    pub fn booted_in(&self) -> Duration {
        self.booted_in
    }

    /// A path inside the running container, reachable from this machine (through `/proc/<leader>/root`, which
    /// sees the container's own mounts: its /dev, /run and the broker volume).
    pub fn path(&self, inside: impl AsRef<Path>) -> PathBuf {
        let inside = inside.as_ref();
        PathBuf::from(format!("/proc/{}/root", self.leader))
            .join(inside.strip_prefix("/").unwrap_or(inside))
    }

    /// Writes a file inside the container (parents created) with `mode`.
    pub fn write(&self, inside: &str, content: &str, mode: u32) -> Result<(), ContainerError> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.path(inside);
        let io = |what: &str| {
            let name = self.name.clone();
            let what = format!("{what} {inside}");
            move |source| ContainerError::Io { name, what, source }
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io("create the directory of"))?;
        }
        std::fs::write(&path, content).map_err(io("write"))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(io("chmod"))
    }

    /// Runs `argv` inside the container (all its namespaces, a clean environment), returning stdout; a non-zero
    /// exit is an error carrying stderr.
    pub fn exec(&self, argv: &[&str]) -> Result<String, ContainerError> {
        let output = self
            .command(argv)
            .output()
            .map_err(|source| ContainerError::Exec {
                name: self.name.clone(),
                source: SysError::Spawn {
                    command: argv.join(" "),
                    source,
                },
            })?;
        if !output.status.success() {
            return Err(ContainerError::Exec {
                name: self.name.clone(),
                source: SysError::Failed {
                    command: argv.join(" "),
                    status: output.status.to_string(),
                    stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
                },
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The `nsenter` command that runs `argv` inside the container, for callers that need its exit status.
    pub fn command(&self, argv: &[&str]) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--target={}", self.leader))
            .args(["--all", "--"])
            .args(argv)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LANG", "C.UTF-8")
            .env("SYSTEMD_COLORS", "0")
            .env("SYSTEMD_PAGER", "")
            .stdin(Stdio::null());
        command
    }

    /// `systemctl show <unit> -p <properties>` as a map (values as systemctl prints them; a property listed on
    /// several lines, such as `DeviceAllow`, has its values joined with ", ").
    pub fn show(
        &self,
        unit: &str,
        properties: &[&str],
    ) -> Result<std::collections::BTreeMap<String, String>, ContainerError> {
        let list = properties.join(",");
        let text = self.exec(&["systemctl", "show", unit, "-p", &list])?;
        let mut shown = std::collections::BTreeMap::<String, String>::new();
        for (key, value) in text.lines().filter_map(|line| line.split_once('=')) {
            shown
                .entry(key.to_owned())
                .and_modify(|values| {
                    values.push_str(", ");
                    values.push_str(value);
                })
                .or_insert_with(|| value.to_owned());
        }
        Ok(shown)
    }

    /// The last `lines` of the console (nspawn's and the container's output).
    pub fn console_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.console).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Whether the container's PID 1 still runs (pid and start time, so a recycled pid is never mistaken for
    /// it).
    pub fn alive(&self) -> bool {
        self.leader_start.is_some() && start_time(self.leader) == self.leader_start
    }

    /// Whether systemd-nspawn still runs (the container has not powered off or been killed).
    pub fn running(&self) -> bool {
        lock(&self.nspawn)
            .as_mut()
            .is_some_and(|child| child.try_wait().ok().flatten().is_none())
    }

    /// Waits (up to `timeout`) for the container to end by itself, e.g. after `systemctl poweroff`; true if it
    /// did.
    pub fn wait_exit(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.running() {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// Kills the container as a dead instance dies: SIGKILL to its PID 1 (the kernel then kills every process
    /// of its PID namespace), nspawn reaped, the overlay root unmounted. Idempotent.
    pub fn kill(&self) {
        // (A leader of 0 would signal our own process group: only a booted container has one.)
        if self.leader > 1 && self.running() {
            let pid = nix::unistd::Pid::from_raw(self.leader as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        self.stop_nspawn(Duration::from_secs(10));
        let _ = nix::mount::umount2(&self.root, nix::mount::MntFlags::MNT_DETACH);
    }

    /// Waits up to `grace` for nspawn to exit (it does once the container's PID 1 is gone), then kills it.
    fn stop_nspawn(&self, grace: Duration) {
        let Some(mut child) = lock(&self.nspawn).take() else {
            return;
        };
        let deadline = Instant::now() + grace;
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A process's start time in clock ticks since boot (None when it is gone).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'; starttime is field 22.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
