//! Mount options, mkfs and the mount/unmount system calls.
//!
//! Options come in fstab syntax; the ones that are mount(2) flags become flags, fstab-only ones (`auto`,
//! `nofail`, `x-*`, ...) are dropped, and the rest is passed to the filesystem as data. Options that would
//! change what kind of mount this is (`bind`, `move`, `remount`) are refused.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use sys_mount::{Mount, MountFlags, UnmountFlags};

use crate::error::StorageError;

/// Mount options split into flags and filesystem data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// mount(2) flags.
    pub flags: MountFlags,
    /// Filesystem-specific options, comma separated.
    pub data: String,
    /// The options as configured, for messages.
    pub text: String,
}

/// Parses fstab-style options (`noatime,nodev,logbsize=256k`).
pub fn parse_options(text: &str) -> Result<MountOptions, StorageError> {
    let mut flags = MountFlags::empty();
    let mut data = Vec::new();
    for option in text
        .split(',')
        .map(str::trim)
        .filter(|option| !option.is_empty())
    {
        match option {
            "defaults" | "rw" | "async" | "dev" | "exec" | "suid" | "auto" | "noauto"
            | "nofail" | "user" | "nouser" | "users" | "_netdev" | "atime" | "diratime" => {}
            _ if option.starts_with("x-") || option.starts_with("comment=") => {}
            "ro" => flags |= MountFlags::RDONLY,
            "noatime" => flags |= MountFlags::NOATIME,
            "nodiratime" => flags |= MountFlags::NODIRATIME,
            "relatime" => flags |= MountFlags::RELATIME,
            "strictatime" => flags |= MountFlags::STRICTATIME,
            "nodev" => flags |= MountFlags::NODEV,
            "noexec" => flags |= MountFlags::NOEXEC,
            "nosuid" => flags |= MountFlags::NOSUID,
            "sync" => flags |= MountFlags::SYNCHRONOUS,
            "dirsync" => flags |= MountFlags::DIRSYNC,
            "bind" | "rbind" | "move" | "remount" => {
                return Err(StorageError::BadMountOption {
                    option: option.to_owned(),
                    reason: "berth mounts the volume's device itself",
                })
            }
            other => data.push(other),
        }
    }
    Ok(MountOptions {
        flags,
        data: data.join(","),
        text: text.to_owned(),
    })
}

/// Mounts `device` at `target` as `fstype` with the options plus `extra` flags; `with_data` passes the
/// filesystem options too (a remount keeps those it was mounted with).
pub fn mount(
    device: &Path,
    target: &Path,
    fstype: &str,
    options: &MountOptions,
    extra: MountFlags,
    with_data: bool,
) -> Result<(), StorageError> {
    let mut builder = Mount::builder().fstype(fstype).flags(options.flags | extra);
    if with_data && !options.data.is_empty() {
        builder = builder.data(&options.data);
    }
    builder
        .mount(device, target)
        .map(drop)
        .map_err(|source| StorageError::Mount {
            device: device.to_owned(),
            path: target.to_owned(),
            filesystem: fstype.to_owned(),
            options: options.text.clone(),
            source,
        })
}

/// Unmounts `target`, never forced or lazy: a busy mount is [`StorageError::Busy`].
pub fn unmount(target: &Path) -> Result<(), StorageError> {
    sys_mount::unmount(target, UnmountFlags::empty()).map_err(|source| {
        if source.raw_os_error() == Some(nix::errno::Errno::EBUSY as i32) {
            StorageError::Busy {
                path: target.to_owned(),
            }
        } else {
            StorageError::Unmount {
                path: target.to_owned(),
                source,
            }
        }
    })
}

/// Finds `mkfs.<fs>` on PATH or in the sbin directories (daemons do not always have them on PATH).
fn mkfs_program(filesystem: &str) -> PathBuf {
    let name = format!("mkfs.{filesystem}");
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(&name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Runs mkfs on a device the probe found blank. Never passes a force flag of its own (mkfs's own checks stay
/// on as a second guard), except with `redo_interrupted`, for the superblock an interrupted mkfs.xfs left, which
/// mkfs would otherwise refuse. stdin is closed so an interactive question is answered "no". mkfs is killed
/// when it runs past `deadline` or the step is abandoned (the future dropped): what that leaves is an XFS
/// superblock with `sb_inprogress` set, which the probe recognises and a retry formats again (see
/// docs/operations.md for ext4). Returns the command line.
pub async fn mkfs(
    device: &Path,
    filesystem: &str,
    options: &[String],
    redo_interrupted: bool,
    deadline: berth_core::Deadline,
) -> Result<String, StorageError> {
    let program = mkfs_program(filesystem);
    let force: &[&str] = match (redo_interrupted, filesystem) {
        (false, _) => &[],
        (true, "xfs") => &["-f"],
        (true, _) => &["-F"],
    };
    let args: Vec<String> = force
        .iter()
        .map(|flag| (*flag).to_owned())
        .chain(options.iter().cloned())
        .collect();
    let command = std::iter::once(program.display().to_string())
        .chain(args.iter().cloned())
        .chain(std::iter::once(device.display().to_string()))
        .collect::<Vec<_>>()
        .join(" ");
    let error = |detail: String| StorageError::Mkfs {
        device: device.to_owned(),
        command: command.clone(),
        detail,
    };
    let run_failed = |source| StorageError::MkfsRun {
        device: device.to_owned(),
        command: command.clone(),
        source,
    };
    let child = tokio::process::Command::new(&program)
        .args(&args)
        .arg(device)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(run_failed)?;
    let until = tokio::time::Instant::from_std(deadline.0);
    let output = match tokio::time::timeout_at(until, child.wait_with_output()).await {
        Ok(output) => output.map_err(run_failed)?,
        // Dropping the child kills it.
        Err(_) => return Err(error("killed at the step's deadline".into())),
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(error(format!("{}: {}", output.status, stderr.trim())));
    }
    Ok(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_and_data() {
        let parsed =
            parse_options("defaults,noatime,nodev,logbsize=256k,nofail,x-systemd.device-timeout=5")
                .unwrap();
        assert_eq!(parsed.flags, MountFlags::NOATIME | MountFlags::NODEV);
        assert_eq!(parsed.data, "logbsize=256k");
        assert!(parse_options("bind").is_err());
        assert_eq!(parse_options("").unwrap().flags, MountFlags::empty());
    }
}
