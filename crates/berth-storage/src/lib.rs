//! Storage adapter for berth: volume to block device, never-format probe, mount, meta.properties identity check.
//!
//! Losing a broker's data is the one failure berth must never cause, so every step refuses rather than
//! guesses: the device is found by the volume's own serial and never an instance-store disk ([`resolve`]);
//! only a device whose probed regions are all zeros may be formatted, and only when configured ([`probe`]);
//! a device with another filesystem is refused, never reformatted; the volume is first mounted read-only and
//! its `meta.properties` checked against the claimed id and cluster before it is made writable (berth-logdir), so
//! a foreign volume is unmounted again with nothing written on it; a busy unmount is reported, never forced.
//! berth never writes inside the volume: missing log dirs are left for Kafka to create with its own user.
//!
//! The blocking work of a mount step (the probe's reads, mount(2)) runs on a thread spawned from the caller's,
//! which shares the caller's mount namespace (tests run each case in a private one), and mkfs is an awaited
//! child killed when the step is abandoned: the daemon's single thread never blocks on the volume.

pub mod error;
pub mod mount;
pub mod mountinfo;
pub mod probe;
pub mod resolve;

use std::fs::File;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use berth_core::ports::MountPlan;
use berth_core::{BrokerId, Deadline, Filesystem, MountReport, StepError, Storage, VolumeFacts};
use sys_mount::MountFlags;
use tracing::{info, warn};

pub use error::StorageError;
pub use mountinfo::MountEntry;
pub use probe::{Content, Finding, Probe, Signature};
pub use resolve::{Resolved, Resolver, Route};

/// How often the device tree is looked at while waiting for a volume to appear.
pub const POLL_PERIOD: Duration = Duration::from_millis(5);

/// What the storage adapter reads: where devices and sysfs are, how the volume is formatted and mounted
/// (`[storage]`), and the Kafka cluster id `meta.properties` must carry when one is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageSettings {
    /// Where block devices and `disk/by-id` live (tests point it elsewhere).
    pub device_root: PathBuf,
    /// Where sysfs lives (for the NVMe model/serial scan).
    pub sys_root: PathBuf,
    /// Mount point of the broker volume.
    pub mount_path: PathBuf,
    /// Mount options, comma separated as in fstab.
    pub mount_options: String,
    /// Filesystem to create on a blank volume, and expected on others.
    pub filesystem: Filesystem,
    /// Format a volume that is entirely blank (all zeros where signatures live). Never anything else.
    pub format_blank: bool,
    /// Extra options for mkfs.
    pub mkfs_options: Vec<String>,
    /// The Kafka cluster id every `meta.properties` must name, when set.
    pub cluster_id: Option<String>,
}

/// The real storage adapter: block devices, sysfs, mount(2).
#[derive(Debug, Clone)]
pub struct BlockStorage {
    resolver: Resolver,
    settings: StorageSettings,
    /// Held by the thread doing a mount step's blocking work (see [`BlockStorage::off_loop`]).
    work: Arc<Mutex<()>>,
}

/// What a mount step works on.
#[derive(Debug, Clone)]
struct MountRequest {
    device: PathBuf,
    plan: MountPlan,
    broker_id: BrokerId,
}

/// A device to mount, and how.
#[derive(Debug, Clone)]
struct ToMount {
    device: PathBuf,
    dev: (u64, u64),
    mount_path: PathBuf,
    fstype: &'static str,
    /// The device holds what an interrupted mkfs left: mkfs is told to overwrite it.
    redo_interrupted: bool,
}

/// What the read-only first half found.
#[derive(Debug)]
enum Prepared {
    /// Already mounted at the mount point, and checked.
    AlreadyMounted(MountReport),
    /// Holds the configured filesystem: mount it.
    Mount(ToMount),
    /// Blank, and formatting is allowed: format it, then mount it.
    Format(ToMount),
}

fn deadline_text(deadline: Deadline) -> String {
    let late = deadline.0.elapsed();
    format!(
        "the step's deadline ({} ago)",
        berth_core::duration::format_duration(late)
    )
}

/// What is true right now, for a restarted daemon and `berth plan`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The volume's block device, if it is visible now.
    pub device: Option<Resolved>,
    /// Where that device is mounted (any mount point).
    pub device_mounted_at: Vec<PathBuf>,
    /// What is mounted at the configured mount point, if anything.
    pub at_mount_path: Option<MountEntry>,
    /// True when the volume's device is what is mounted at the mount point.
    pub mounted_here: bool,
    /// Candidates seen and refused (instance store, another volume).
    pub skipped: Vec<String>,
}

/// Opens a block device read-only with `O_EXCL`: the kernel refuses (EBUSY) while it is mounted or held.
pub(crate) fn open_exclusive(path: &Path) -> Result<File, StorageError> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_EXCL | nix::libc::O_CLOEXEC)
        .open(path)
        .map_err(|error| StorageError::io("open", path, error))
}

/// The canonical path and device number of a block device.
fn block_device(path: &Path) -> Result<(PathBuf, (u64, u64)), StorageError> {
    let canonical =
        std::fs::canonicalize(path).map_err(|e| StorageError::io("canonicalize", path, e))?;
    let metadata =
        std::fs::metadata(&canonical).map_err(|e| StorageError::io("stat", &canonical, e))?;
    if !metadata.file_type().is_block_device() {
        return Err(StorageError::NotBlockDevice { path: canonical });
    }
    let rdev = metadata.rdev();
    Ok((
        canonical,
        (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev)),
    ))
}

/// Whether a filesystem signature is the configured filesystem; the ext family is mounted by the ext4 driver.
fn mount_type(signature: Signature, configured: Filesystem) -> Option<&'static str> {
    match (signature, configured) {
        (Signature::Xfs, Filesystem::Xfs) => Some("xfs"),
        (Signature::Ext2 | Signature::Ext3 | Signature::Ext4, Filesystem::Ext4) => Some("ext4"),
        _ => None,
    }
}

impl BlockStorage {
    /// The adapter for these settings.
    pub fn new(settings: StorageSettings) -> Self {
        Self {
            resolver: Resolver::new(&settings.device_root, &settings.sys_root),
            settings,
            work: Arc::default(),
        }
    }

    /// Waits (polling every [`POLL_PERIOD`]) until the volume's device is visible, by the deadline.
    pub async fn resolve_volume(
        &self,
        volume_id: &str,
        requested_device: &str,
        deadline: Deadline,
    ) -> Result<Resolved, StorageError> {
        let serial = resolve::volume_serial(volume_id)?;
        let started = Instant::now();
        loop {
            let attempt = self.resolver.attempt(&serial, requested_device);
            if let Some(resolved) = attempt.resolved {
                info!(volume_id, device = %resolved.device.display(), route = ?resolved.route, "volume resolved");
                return Ok(resolved);
            }
            if deadline.expired() {
                return Err(StorageError::DeviceTimeout {
                    volume_id: volume_id.to_owned(),
                    requested: requested_device.to_owned(),
                    waited: started.elapsed(),
                    looked_at: self.resolver.looked_at(&serial, requested_device),
                    skipped: attempt
                        .skipped
                        .iter()
                        .map(|reason| format!("; skipped: {reason}"))
                        .collect(),
                });
            }
            tokio::time::sleep(POLL_PERIOD.min(deadline.remaining())).await;
        }
    }

    /// Probes, formats a blank device when allowed, mounts (read-only first), checks `meta.properties`, then
    /// makes the mount writable. Already mounted at the mount point is success (checked, left as found).
    ///
    /// The blocking parts (the probe's reads, mount(2), which may replay an XFS log for a long time after an
    /// unclean death) run on a thread of their own ([`BlockStorage::off_loop`]) and mkfs is an awaited child,
    /// so the caller's thread (the daemon's only one) keeps serving ZooKeeper, `/health` and the watchdog. All
    /// of it is bounded by `deadline`.
    pub async fn mount_volume(
        &self,
        device: &Path,
        plan: &MountPlan,
        broker_id: BrokerId,
        deadline: Deadline,
    ) -> Result<MountReport, StorageError> {
        let (device, plan) = (device.to_owned(), plan.clone());
        let request = MountRequest {
            device,
            plan,
            broker_id,
        };
        let prepared = {
            let request = request.clone();
            self.off_loop("probe", deadline, move |storage| storage.prepare(&request))
                .await?
        };
        let (mount, formatted) = match prepared {
            Prepared::AlreadyMounted(report) => return Ok(report),
            Prepared::Mount(mount) => (mount, false),
            Prepared::Format(target) => (self.format(target, deadline).await?, true),
        };
        self.off_loop("mount", deadline, move |storage| {
            storage.mount_checked(&request, &mount, formatted)
        })
        .await
    }

    /// Runs `work` on a thread of its own and waits for it until `deadline`. The thread is spawned from the
    /// calling thread, so it shares its mount namespace (tests run each case in a private one). An abandoned
    /// thread (mount(2) cannot be interrupted) finishes on its own; it holds the adapter's work lock until
    /// then, so a retry's work waits for it instead of racing it on the same device.
    async fn off_loop<T: Send + 'static>(
        &self,
        what: &'static str,
        deadline: Deadline,
        work: impl FnOnce(&BlockStorage) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let storage = self.clone();
        std::thread::Builder::new()
            .name(format!("berth-{what}"))
            .spawn(move || {
                let _exclusive = storage
                    .work
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let _ = done.send(work(&storage));
            })
            .map_err(|e| StorageError::io("spawn a thread for", what, e))?;
        match tokio::time::timeout_at(tokio::time::Instant::from_std(deadline.0), result).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(StorageError::io(
                "run",
                what,
                std::io::Error::other("the worker thread panicked"),
            )),
            Err(_) => Err(StorageError::Abandoned {
                what,
                waited: deadline_text(deadline),
            }),
        }
    }

    /// The first, read-only half: what is at the mount point, and what is on the device.
    fn prepare(&self, request: &MountRequest) -> Result<Prepared, StorageError> {
        let MountRequest {
            device,
            plan,
            broker_id,
        } = request;
        let (device, dev) = block_device(device)?;
        let options = mount::parse_options(&self.settings.mount_options)?;
        std::fs::create_dir_all(&plan.mount_path)
            .map_err(|e| StorageError::io("create", &plan.mount_path, e))?;
        let mount_path = std::fs::canonicalize(&plan.mount_path)
            .map_err(|e| StorageError::io("canonicalize", &plan.mount_path, e))?;
        let entries = mountinfo::read()?;
        if let Some(top) = mountinfo::top_at(&entries, &mount_path) {
            return self
                .adopt(top, &device, dev, &mount_path, &options, plan, *broker_id)
                .map(Prepared::AlreadyMounted);
        }
        let configured = self.settings.filesystem;
        let probe = self.probe(&device, dev, &entries)?;
        let target = || ToMount {
            device: device.clone(),
            dev,
            mount_path: mount_path.clone(),
            fstype: configured.name(),
            redo_interrupted: false,
        };
        match probe.content() {
            Content::Blank | Content::InterruptedFormat(_) if !self.settings.format_blank => {
                Err(StorageError::BlankNotAllowed {
                    device,
                    head: probe.head_len,
                    tail: probe.tail_len,
                })
            }
            Content::Blank => Ok(Prepared::Format(target())),
            Content::InterruptedFormat(found) => {
                warn!(device = %device.display(), found = %found, "an interrupted mkfs.xfs left this superblock (sb_inprogress set): formatting again");
                Ok(Prepared::Format(ToMount {
                    redo_interrupted: true,
                    ..target()
                }))
            }
            Content::Filesystem(found) => match mount_type(found.signature, configured) {
                Some(fstype) => Ok(Prepared::Mount(ToMount { fstype, ..target() })),
                None => Err(StorageError::WrongFilesystem {
                    device,
                    found: found.signature.name(),
                    offset: found.offset,
                    configured: configured.name(),
                }),
            },
            Content::Other => Err(StorageError::NotBlank {
                device,
                configured: configured.name(),
                found: probe.describe(),
            }),
        }
    }

    /// The volume is already mounted at the mount point (a restarted daemon): checked, and left as found
    /// (made writable when a daemon died between the read-only mount and the remount).
    #[allow(clippy::too_many_arguments)] // one call site; a struct for it would only rename the arguments
    fn adopt(
        &self,
        top: &MountEntry,
        device: &Path,
        dev: (u64, u64),
        mount_path: &Path,
        options: &mount::MountOptions,
        plan: &MountPlan,
        broker_id: BrokerId,
    ) -> Result<MountReport, StorageError> {
        if !top.is_device(device, dev) {
            return Err(StorageError::OtherMounted {
                path: mount_path.to_owned(),
                source_device: top.source.clone(),
                fstype: top.fstype.clone(),
                device: device.to_owned(),
            });
        }
        berth_logdir::check(
            &plan.log_dirs,
            broker_id,
            self.settings.cluster_id.as_deref(),
        )?;
        let read_only = top.options.split(',').any(|option| option == "ro");
        if read_only && !options.flags.contains(MountFlags::RDONLY) {
            mount::mount(
                device,
                mount_path,
                &top.fstype,
                options,
                MountFlags::REMOUNT,
                false,
            )?;
        }
        info!(device = %device.display(), mount_path = %mount_path.display(), "volume already mounted");
        Ok(MountReport {
            device: device.to_owned(),
            mount_path: mount_path.to_owned(),
            filesystem: top.fstype.clone(),
            formatted: false,
            already_mounted: true,
        })
    }

    /// Formats a device the probe found blank (mkfs is killed if the step is abandoned), then probes it again:
    /// only the configured filesystem may be found.
    async fn format(&self, target: ToMount, deadline: Deadline) -> Result<ToMount, StorageError> {
        let configured = self.settings.filesystem;
        let command = mount::mkfs(
            &target.device,
            configured.name(),
            &self.settings.mkfs_options,
            target.redo_interrupted,
            deadline,
        )
        .await?;
        info!(device = %target.device.display(), command, "formatted blank volume");
        self.off_loop("probe after mkfs", deadline, move |storage| {
            let after = storage.probe(&target.device, target.dev, &mountinfo::read()?)?;
            let fstype = match after.content() {
                Content::Filesystem(found) => mount_type(found.signature, configured),
                _ => None,
            };
            match fstype {
                Some(fstype) => Ok(ToMount { fstype, ..target }),
                None => Err(StorageError::MkfsUnverified {
                    device: target.device,
                    command,
                    found: after.describe(),
                    configured: configured.name(),
                }),
            }
        })
        .await
    }

    /// The second half: mount read-only, check `meta.properties` (a foreign volume is unmounted again with
    /// nothing written), then make the mount writable.
    fn mount_checked(
        &self,
        request: &MountRequest,
        target: &ToMount,
        formatted: bool,
    ) -> Result<MountReport, StorageError> {
        let options = mount::parse_options(&self.settings.mount_options)?;
        let ToMount {
            device,
            mount_path,
            fstype,
            ..
        } = target;
        mount::mount(
            device,
            mount_path,
            fstype,
            &options,
            MountFlags::RDONLY,
            true,
        )?;
        let checked = berth_logdir::check(
            &request.plan.log_dirs,
            request.broker_id,
            self.settings.cluster_id.as_deref(),
        );
        if let Err(error) = checked {
            if let Err(unmount) = mount::unmount(mount_path) {
                warn!(error = %unmount, "could not unmount the refused volume");
            }
            return Err(error.into());
        }
        if !options.flags.contains(MountFlags::RDONLY) {
            let remount = mount::mount(
                device,
                mount_path,
                fstype,
                &options,
                MountFlags::REMOUNT,
                false,
            );
            if let Err(error) = remount {
                let _ = mount::unmount(mount_path);
                return Err(error);
            }
        }
        info!(device = %device.display(), mount_path = %mount_path.display(), fstype, formatted, "volume mounted");
        Ok(MountReport {
            device: device.clone(),
            mount_path: mount_path.clone(),
            filesystem: (*fstype).to_owned(),
            formatted,
            already_mounted: false,
        })
    }

    /// Probes a device that must not be in use; EBUSY names where it is mounted.
    fn probe(
        &self,
        device: &Path,
        dev: (u64, u64),
        entries: &[MountEntry],
    ) -> Result<Probe, StorageError> {
        match probe::probe_device(device) {
            Err(StorageError::Io { source, .. })
                if source.raw_os_error() == Some(nix::errno::Errno::EBUSY as i32) =>
            {
                let mounts: Vec<String> = entries
                    .iter()
                    .filter(|entry| entry.is_device(device, dev))
                    .map(|entry| entry.mount_point.display().to_string())
                    .collect();
                let where_mounted = if mounts.is_empty() {
                    String::new()
                } else {
                    format!(" (mounted at {})", mounts.join(", "))
                };
                Err(StorageError::DeviceInUse {
                    device: device.to_owned(),
                    where_mounted,
                })
            }
            other => other,
        }
    }

    /// Unmounts the mount point (not forced). Returns whether something was mounted there.
    pub fn unmount_volume(&self, plan: &MountPlan) -> Result<bool, StorageError> {
        let mount_path = match std::fs::canonicalize(&plan.mount_path) {
            Ok(path) => path,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(error) => return Err(StorageError::io("canonicalize", &plan.mount_path, error)),
        };
        if mountinfo::top_at(&mountinfo::read()?, &mount_path).is_none() {
            return Ok(false);
        }
        mount::unmount(&mount_path)?;
        info!(mount_path = %mount_path.display(), "volume unmounted");
        Ok(true)
    }

    /// Looks once, without waiting or changing anything: is the volume visible, and what is mounted where.
    pub fn observe(
        &self,
        volume_id: &str,
        requested_device: &str,
    ) -> Result<Observation, StorageError> {
        let serial = resolve::volume_serial(volume_id)?;
        let attempt = self.resolver.attempt(&serial, requested_device);
        let entries = mountinfo::read()?;
        let mount_path = std::fs::canonicalize(&self.settings.mount_path)
            .unwrap_or_else(|_| self.settings.mount_path.clone());
        let at_mount_path = mountinfo::top_at(&entries, &mount_path).cloned();
        let device = attempt
            .resolved
            .as_ref()
            .and_then(|resolved| block_device(&resolved.device).ok());
        let (device_mounted_at, mounted_here) = match &device {
            Some((path, dev)) => (
                entries
                    .iter()
                    .filter(|e| e.is_device(path, *dev))
                    .map(|e| e.mount_point.clone())
                    .collect(),
                at_mount_path
                    .as_ref()
                    .is_some_and(|top| top.is_device(path, *dev)),
            ),
            None => (Vec::new(), false),
        };
        Ok(Observation {
            device: attempt.resolved,
            device_mounted_at,
            at_mount_path,
            mounted_here,
            skipped: attempt.skipped,
        })
    }
}

#[async_trait]
impl Storage for BlockStorage {
    async fn resolve(
        &self,
        volume: &VolumeFacts,
        requested_device: &str,
        deadline: Deadline,
    ) -> Result<PathBuf, StepError> {
        Ok(self
            .resolve_volume(&volume.volume_id, requested_device, deadline)
            .await?
            .device)
    }

    async fn mount(
        &self,
        device: &Path,
        plan: &MountPlan,
        broker_id: BrokerId,
        deadline: Deadline,
    ) -> Result<MountReport, StepError> {
        Ok(self.mount_volume(device, plan, broker_id, deadline).await?)
    }

    async fn unmount(&self, plan: &MountPlan) -> Result<(), StepError> {
        self.unmount_volume(plan)?;
        Ok(())
    }
}
