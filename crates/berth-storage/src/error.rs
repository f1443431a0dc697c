//! What can go wrong between a volume id and a checked mount, with the context an operator needs.
//!
//! Every refusal names what was found where (device, offset, signature, path, both values). The mapping to
//! [`berth_core::StepError`] decides Retryable vs Fatal in one place ([`Classify::kind`]): anything that protects data (a non-blank device, the
//! wrong filesystem, a foreign `meta.properties`) is Fatal, because retrying cannot make it right; anything that
//! time or the kernel may fix (a device not there yet, a busy mount, an I/O error) is Retryable.

use std::path::PathBuf;
use std::time::Duration;

use berth_core::{Classify, ErrorKind};
use berth_logdir::LogDirError;

/// A storage step's failure.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The volume id is not of the form `vol-<hex>`.
    #[error("volume id {volume_id:?} is not of the form vol-<hex>")]
    InvalidVolumeId {
        /// The id given.
        volume_id: String,
    },
    /// A mount step's blocking work (the probe, mount(2)) did not finish by the step's deadline; it goes on in
    /// the background, and a retry waits for it.
    #[error(
        "{what} did not finish by {waited}; it goes on in the background and a retry waits for it"
    )]
    Abandoned {
        /// What was running.
        what: &'static str,
        /// The deadline, described.
        waited: String,
    },
    /// The volume's block device did not appear by the deadline.
    #[error(
        "volume {volume_id} (requested as {requested}) did not appear as a block device within {waited:?}; \
         looked at {looked_at}{skipped}"
    )]
    DeviceTimeout {
        /// The volume.
        volume_id: String,
        /// The device name requested from EC2.
        requested: String,
        /// How long it was waited for.
        waited: Duration,
        /// The places looked at, comma separated.
        looked_at: String,
        /// Candidates seen but refused (instance store, another volume), with the reason; empty or `; ...`.
        skipped: String,
    },
    /// A path that must be a block device is not one.
    #[error("{path} is not a block device")]
    NotBlockDevice {
        /// The path.
        path: PathBuf,
    },
    /// An operating-system call failed.
    #[error("{operation} {path}: {source}")]
    Io {
        /// What was being done (`open`, `read`, `canonicalize`, ...).
        operation: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The device is held by someone else (mounted elsewhere, part of a device-mapper or RAID set).
    #[error("device {device} is in use{where_mounted}: refusing to probe, format or mount it")]
    DeviceInUse {
        /// The device.
        device: PathBuf,
        /// ` (mounted at ...)` when mountinfo shows it, else empty.
        where_mounted: String,
    },
    /// The device holds something that is not a mountable filesystem of the configured type (or is ambiguous):
    /// it is never formatted and never mounted.
    #[error("device {device} is not blank and holds no {configured} filesystem berth may mount: {found}; refusing to format or mount it")]
    NotBlank {
        /// The device.
        device: PathBuf,
        /// The configured filesystem.
        configured: &'static str,
        /// What was found where (signatures and offsets, or the first non-zero byte).
        found: String,
    },
    /// The device holds a filesystem other than the configured one: refused, never reformatted.
    #[error("device {device} holds {found} (signature at offset {offset}) but storage.filesystem is {configured}; refusing to mount or reformat it")]
    WrongFilesystem {
        /// The device.
        device: PathBuf,
        /// The filesystem found.
        found: &'static str,
        /// Where its signature is.
        offset: u64,
        /// The configured filesystem.
        configured: &'static str,
    },
    /// The device is blank but formatting is not enabled.
    #[error("device {device} is blank (all zeros in the first {head} and last {tail} bytes) and storage.format_blank is off; refusing to format it")]
    BlankNotAllowed {
        /// The device.
        device: PathBuf,
        /// Bytes probed at the start.
        head: u64,
        /// Bytes probed at the end.
        tail: u64,
    },
    /// mkfs failed, or was killed at the deadline.
    #[error("{command} failed on {device}: {detail}")]
    Mkfs {
        /// The device.
        device: PathBuf,
        /// The command line.
        command: String,
        /// Exit status and output, or why it was killed.
        detail: String,
    },
    /// mkfs could not be started, or not waited for.
    #[error("{command} failed on {device}")]
    MkfsRun {
        /// The device.
        device: PathBuf,
        /// The command line.
        command: String,
        /// The spawn or wait error.
        #[source]
        source: std::io::Error,
    },
    /// After mkfs the probe did not find the filesystem just made.
    #[error("after {command} the probe of {device} found {found} instead of {configured}")]
    MkfsUnverified {
        /// The device.
        device: PathBuf,
        /// The command line.
        command: String,
        /// What the probe saw.
        found: String,
        /// The configured filesystem.
        configured: &'static str,
    },
    /// The mount system call failed.
    #[error("mount {device} at {path} as {filesystem} with {options:?}: {source}")]
    Mount {
        /// The device.
        device: PathBuf,
        /// The mount point.
        path: PathBuf,
        /// The filesystem type.
        filesystem: String,
        /// The options.
        options: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Something other than the volume's device is mounted at the mount point.
    #[error("{path} already has {source_device} ({fstype}) mounted on it, not {device}; refusing to mount over it")]
    OtherMounted {
        /// The mount point.
        path: PathBuf,
        /// What is mounted there.
        source_device: String,
        /// Its filesystem type.
        fstype: String,
        /// The device that should be there.
        device: PathBuf,
    },
    /// A mount option berth cannot pass on.
    #[error("storage.mount_options: {option:?} cannot be used here ({reason})")]
    BadMountOption {
        /// The option.
        option: String,
        /// Why.
        reason: &'static str,
    },
    /// A log dir's `meta.properties` is not this broker's, or could not be read.
    #[error(transparent)]
    LogDir(#[from] LogDirError),
    /// The mount is busy (open files, a process's cwd): reported, never forced.
    #[error("cannot unmount {path}: it is busy (open files or a process inside); not forcing it")]
    Busy {
        /// The mount point.
        path: PathBuf,
    },
    /// The unmount system call failed otherwise.
    #[error("unmount {path}: {source}")]
    Unmount {
        /// The mount point.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl Classify for StorageError {
    /// Whether retrying can help.
    fn kind(&self) -> ErrorKind {
        match self {
            StorageError::DeviceTimeout { .. }
            | StorageError::Abandoned { .. }
            | StorageError::Io { .. }
            | StorageError::DeviceInUse { .. }
            | StorageError::Mkfs { .. }
            | StorageError::MkfsRun { .. }
            | StorageError::Mount { .. }
            | StorageError::Busy { .. }
            | StorageError::Unmount { .. } => ErrorKind::Retryable,
            StorageError::InvalidVolumeId { .. }
            | StorageError::NotBlockDevice { .. }
            | StorageError::NotBlank { .. }
            | StorageError::WrongFilesystem { .. }
            | StorageError::BlankNotAllowed { .. }
            | StorageError::MkfsUnverified { .. }
            | StorageError::OtherMounted { .. }
            | StorageError::BadMountOption { .. } => ErrorKind::Fatal,
            StorageError::LogDir(error) => error.kind(),
        }
    }
}

impl StorageError {
    /// An I/O error on a path.
    pub(crate) fn io(
        operation: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        StorageError::Io {
            operation,
            path: path.into(),
            source,
        }
    }
}
