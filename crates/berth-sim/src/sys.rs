//! Running the system tools the simulation drives (`ip`, `losetup`, `nft`), with errors that name the command.
//!
//! The simulator shapes the machine with the same tools an operator would type, so a failed step can be replayed
//! by hand from its error message.

use std::process::Command;

/// A tool that could not run or exited non-zero.
#[derive(Debug, thiserror::Error)]
pub enum SysError {
    /// The program could not be started.
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// The program exited non-zero.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Runs `program args...`, returning its stdout; a non-zero exit is an error carrying stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, SysError> {
    let command = format!("{program} {}", args.join(" "));
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| SysError::Spawn {
            command: command.clone(),
            source,
        })?;
    if !output.status.success() {
        return Err(SysError::Failed {
            command,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `ip args...`.
pub fn ip(args: &[&str]) -> Result<String, SysError> {
    run("ip", args)
}

/// Runs `ip -n <ns> args...` (inside a named namespace).
pub fn ip_in(ns: &str, args: &[&str]) -> Result<String, SysError> {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    run("ip", &all)
}

/// Runs `commands` (one `ip` command a line, without the leading `ip`) in one `ip -n <ns> -batch -`: a set-up
/// reads as the script an operator would type, and a failure names the script and the line that failed.
pub fn ip_batch(ns: &str, commands: &[String]) -> Result<(), SysError> {
    use std::io::Write as _;
    let script = commands.join("\n");
    let command = format!("ip -n {ns} -batch - <<EOF\n{script}\nEOF");
    let spawned = Command::new("ip")
        .args(["-n", ns, "-batch", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = spawned.map_err(|source| SysError::Spawn {
        command: command.clone(),
        source,
    })?;
    let written = child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(format!("{script}\n").as_bytes()));
    let output = child.wait_with_output().map_err(|source| SysError::Spawn {
        command: command.clone(),
        source,
    })?;
    if let Some(Err(source)) = written {
        return Err(SysError::Spawn { command, source });
    }
    if !output.status.success() {
        return Err(SysError::Failed {
            command,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// Sends `signal` to `pid`, ignoring a process that is already gone.
pub fn signal(pid: i32, signal: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
}

/// The pids of every process whose network namespace is the named one.
pub fn netns_pids(ns: &str) -> Vec<i32> {
    ip(&["netns", "pids", ns])
        .map(|out| {
            out.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The mount points at or below `root` in a mount table (`/proc/<pid>/mountinfo`), one per mount: a mount
/// stacked on another at the same point is listed twice.
pub fn mount_entries(
    mountinfo: &std::path::Path,
    root: &std::path::Path,
) -> Vec<std::path::PathBuf> {
    let Ok(text) = std::fs::read_to_string(mountinfo) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| std::path::PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(root))
        .collect()
}

/// Mount points at or below `root`, deepest first (the order to unmount them in).
pub fn mounts_under(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = mount_entries(std::path::Path::new("/proc/self/mountinfo"), root);
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// Lazily unmounts everything at or below `root`.
pub fn unmount_all(root: &std::path::Path) {
    for mount in mounts_under(root) {
        let _ = nix::mount::umount2(&mount, nix::mount::MntFlags::MNT_DETACH);
    }
}
