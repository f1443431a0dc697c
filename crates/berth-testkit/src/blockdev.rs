//! Real block devices for storage tests: loop devices, private mount namespaces, fake device and sysfs trees.
//!
//! The storage adapter is proven on real loop devices and real mounts, not on files pretending to be disks.
//! What cannot be real on a test host is EC2's naming: there is no NVMe EBS controller here, so
//! [`FakeDeviceTree`] builds a device root (`nvmeXn1`, `disk/by-id/...`, `xvdf`) and a sysfs root
//! (`class/nvme/nvmeX/{model,serial}`) whose names are symlinks to loop devices. Mounts happen in a private
//! mount namespace per test ([`in_private_mount_ns`]), so they neither leak into the host nor collide; loop
//! devices are global and are detached in `Drop`.

use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use tempfile::TempDir;

/// The NVMe model of an EBS volume on Nitro, as sysfs shows it (before padding).
pub const EBS_MODEL: &str = "Amazon Elastic Block Store";
/// The NVMe model of an instance-store disk.
pub const INSTANCE_STORE_MODEL: &str = "Amazon EC2 NVMe Instance Storage";
/// Smallest size mkfs.xfs accepts (it refuses below 300 MB).
pub const XFS_MIN_BYTES: u64 = 320 << 20;

/// Runs a command, failing with its stderr when it exits non-zero; returns stdout.
pub fn run(program: &str, args: &[&str]) -> io::Result<String> {
    let output = Command::new(program)
        .args(args)
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .stdin(Stdio::null())
        .output()
        .map_err(|error| io::Error::new(error.kind(), format!("{program}: {error}")))?;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "{program} {}: {}: {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Held by each test of a process that opens block devices exclusively or spawns programs while another does;
/// tests in one process take it so they run one at a time.
///
/// `fork` copies the whole descriptor table and `exec` closes the close-on-exec descriptors only afterwards, so a
/// child spawned by one test thread briefly holds every device another thread has open with `O_EXCL` (the
/// never-format probe, mkfs). A mount or mkfs of that device in that instant fails with EBUSY: measured, 5 of 31
/// runs of the storage suite on two cores. berth itself is one thread of work per host, and the
/// simulated hosts are separate processes, so only tests sharing a process need this.
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    static DEVICES: Mutex<()> = Mutex::new(());
    // A test that panicked while holding it poisoned nothing the next test relies on.
    DEVICES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A loop device over a sparse temporary file; detached (and the file removed) on drop.
#[derive(Debug)]
pub struct LoopDevice {
    path: PathBuf,
    backing: PathBuf,
    size: u64,
    _dir: TempDir,
}

impl LoopDevice {
    /// A blank (all zeros) loop device of `size` bytes.
    pub fn new(size: u64) -> io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("berth-loop-").tempdir()?;
        let backing = dir.path().join("disk.img");
        File::create(&backing)?.set_len(size)?;
        let backing_text = backing.to_string_lossy().into_owned();
        // losetup -f can race with another test taking the same free device: retry a few times.
        let mut last_error = None;
        for _ in 0..5 {
            match run("losetup", &["--find", "--show", &backing_text]) {
                Ok(stdout) => {
                    let path = PathBuf::from(stdout.trim());
                    return Ok(Self {
                        path,
                        backing,
                        size,
                        _dir: dir,
                    });
                }
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("losetup failed")))
    }

    /// The device node, e.g. `/dev/loop3`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The sparse file behind it.
    pub fn backing_file(&self) -> &Path {
        &self.backing
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        // On a device still in use (a mount in a namespace being torn down) the kernel sets autoclear instead.
        if let Err(error) = run("losetup", &["--detach", &self.path.to_string_lossy()]) {
            eprintln!("warning: could not detach {}: {error}", self.path.display());
        }
    }
}

/// Runs `work` on a new thread in its own mount namespace (with `/` made recursively private), so every
/// mount it makes stays invisible to the host and disappears with the thread.
pub fn in_private_mount_ns<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        let handle = scope.spawn(|| {
            unshare(CloneFlags::CLONE_NEWNS).expect("unshare(CLONE_NEWNS) (needs root)");
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .expect("make / rprivate in the new mount namespace");
            work()
        });
        handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// [`in_private_mount_ns`] for async work: builds a current-thread tokio runtime inside the namespace's thread,
/// so every task (and every mount it makes) runs in that namespace.
pub fn block_on_in_private_mount_ns<F>(make: impl FnOnce() -> F + Send) -> F::Output
where
    F: Future,
    F::Output: Send,
{
    in_private_mount_ns(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("build a tokio runtime");
        runtime.block_on(make())
    })
}

/// The NVMe serial of an EBS volume: its id without the dash.
pub fn nitro_serial(volume_id: &str) -> String {
    volume_id.replacen('-', "", 1)
}

/// A device root and a sysfs root shaped like a Nitro instance's, whose device names point at loop devices.
#[derive(Debug)]
pub struct FakeDeviceTree {
    dir: TempDir,
}

impl FakeDeviceTree {
    /// Empty `dev/` (with `disk/by-id/`) and `sys/class/nvme/` trees.
    pub fn new() -> io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("berth-devtree-")
            .tempdir()?;
        fs::create_dir_all(dir.path().join("dev/disk/by-id"))?;
        fs::create_dir_all(dir.path().join("sys/class/nvme"))?;
        Ok(Self { dir })
    }

    /// Use as `storage.device_root`.
    pub fn device_root(&self) -> PathBuf {
        self.dir.path().join("dev")
    }

    /// Use as `storage.sys_root`.
    pub fn sys_root(&self) -> PathBuf {
        self.dir.path().join("sys")
    }

    /// An NVMe controller `nvme<controller>` with this model and serial (space padded as in sysfs) and its
    /// namespace `nvme<controller>n1`, a device-root symlink to `target`. Returns the namespace's path.
    pub fn add_nvme(
        &self,
        controller: u32,
        model: &str,
        serial: &str,
        target: &Path,
    ) -> io::Result<PathBuf> {
        let name = format!("nvme{controller}");
        let sys = self.sys_root().join("class/nvme").join(&name);
        fs::create_dir_all(sys.join(format!("{name}n1")))?;
        fs::write(sys.join("model"), format!("{model:<40}\n"))?;
        fs::write(sys.join("serial"), format!("{serial:<20}\n"))?;
        let namespace = self.device_root().join(format!("{name}n1"));
        replace_symlink(target, &namespace)?;
        Ok(namespace)
    }

    /// An EBS volume on controller `nvme<controller>` (sysfs model and serial, namespace link to `target`),
    /// with udev's by-id link when `by_id`. Returns the namespace's path.
    pub fn add_ebs(
        &self,
        controller: u32,
        volume_id: &str,
        target: &Path,
        by_id: bool,
    ) -> io::Result<PathBuf> {
        // The link first, dangling until the node exists: no pass ever sees a node without its link.
        if by_id {
            self.add_by_id(volume_id, controller)?;
        }
        self.add_nvme(controller, EBS_MODEL, &nitro_serial(volume_id), target)
    }

    /// udev's `disk/by-id/nvme-Amazon_Elastic_Block_Store_vol...` link to `../../nvme<controller>n1`.
    pub fn add_by_id(&self, volume_id: &str, controller: u32) -> io::Result<PathBuf> {
        let link = self.by_id_path(volume_id);
        replace_symlink(Path::new(&format!("../../nvme{controller}n1")), &link)?;
        Ok(link)
    }

    /// Where udev's by-id link for this volume lives.
    pub fn by_id_path(&self, volume_id: &str) -> PathBuf {
        self.device_root().join("disk/by-id").join(format!(
            "nvme-Amazon_Elastic_Block_Store_{}",
            nitro_serial(volume_id)
        ))
    }

    /// An instance-store NVMe disk on controller `nvme<controller>` pointing at `target`.
    pub fn add_instance_store(
        &self,
        controller: u32,
        serial: &str,
        target: &Path,
    ) -> io::Result<PathBuf> {
        self.add_nvme(controller, INSTANCE_STORE_MODEL, serial, target)
    }

    /// A plain device name (`xvdf`) in the device root, as a symlink to `target` (a loop device or a name in
    /// the same root).
    pub fn add_name(&self, name: &str, target: &Path) -> io::Result<PathBuf> {
        let link = self.device_root().join(name);
        replace_symlink(target, &link)?;
        Ok(link)
    }
}

fn replace_symlink(target: &Path, link: &Path) -> io::Result<()> {
    match fs::remove_file(link) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    symlink(target, link)
}

/// Writes `bytes` at `offset` of a device (or file) and syncs it.
pub fn write_at(device: &Path, offset: u64, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).open(device)?;
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Reads `len` bytes at `offset`.
pub fn read_at(device: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut file = File::open(device)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut buffer = vec![0; len];
    file.read_exact(&mut buffer)?;
    Ok(buffer)
}

/// `len` bytes from the kernel's random source.
pub fn random_bytes(len: usize) -> io::Result<Vec<u8>> {
    let mut buffer = vec![0; len];
    File::open("/dev/urandom")?.read_exact(&mut buffer)?;
    Ok(buffer)
}

/// Fills `len` bytes at `offset` with random data.
pub fn plant_random(device: &Path, offset: u64, len: usize) -> io::Result<()> {
    write_at(device, offset, &random_bytes(len)?)
}

/// A DOS partition table with one Linux partition from sector 2048 (no filesystem inside).
pub fn plant_mbr(device: &Path, size: u64) -> io::Result<()> {
    let mut sector = [0u8; 512];
    let entry = &mut sector[446..462];
    entry[4] = 0x83; // Linux
    let start: u32 = 2048;
    let sectors = u32::try_from(size / 512 - u64::from(start)).unwrap_or(u32::MAX);
    entry[8..12].copy_from_slice(&start.to_le_bytes());
    entry[12..16].copy_from_slice(&sectors.to_le_bytes());
    sector[510] = 0x55;
    sector[511] = 0xAA;
    write_at(device, 0, &sector)
}

/// A GPT with one partition and no filesystem, made by `sgdisk` (gdisk package).
pub fn plant_gpt(device: &Path) -> io::Result<()> {
    run(
        "sgdisk",
        &["--clear", "--new=1:2048:0", &device.to_string_lossy()],
    )
    .map(drop)
}

/// A LUKS2 header made by `cryptsetup luksFormat` (fast PBKDF settings, a random key file in a temp dir).
pub fn plant_luks(device: &Path) -> io::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("key");
    fs::write(&key, random_bytes(32)?)?;
    run(
        "cryptsetup",
        &[
            "luksFormat",
            "--batch-mode",
            "--type",
            "luks2",
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
            "--key-file",
            &key.to_string_lossy(),
            &device.to_string_lossy(),
        ],
    )
    .map(drop)
}

/// An LVM2 physical volume label made by `pvcreate`.
pub fn plant_lvm(device: &Path) -> io::Result<()> {
    run("pvcreate", &["--yes", &device.to_string_lossy()]).map(drop)
}

/// Removes the LVM label again (so LVM's caches forget the device before it is detached).
pub fn remove_lvm(device: &Path) -> io::Result<()> {
    run("pvremove", &["--yes", &device.to_string_lossy()]).map(drop)
}

/// Makes a filesystem (`ext4` or `xfs`) with the real mkfs, quietly.
pub fn make_filesystem(device: &Path, filesystem: &str) -> io::Result<()> {
    run(
        &format!("mkfs.{filesystem}"),
        &["-q", &device.to_string_lossy()],
    )
    .map(drop)
}

/// The filesystem UUID as `blkid` reads it from the device (low-level probe, no cache).
pub fn filesystem_uuid(device: &Path) -> io::Result<String> {
    run(
        "blkid",
        &[
            "--probe",
            "--match-tag",
            "UUID",
            "--output",
            "value",
            &device.to_string_lossy(),
        ],
    )
    .map(|uuid| uuid.trim().to_owned())
}
