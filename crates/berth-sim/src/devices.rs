//! The simulated hot-plug of an EBS volume: a loop device over the volume's backing file (which outlives hosts:
//! it *is* the volume's data) and the Nitro view of it in the host's device and sysfs trees.
//!
//! On Nitro a volume appears as `nvmeXn1` whatever name was requested, udev links
//! `disk/by-id/nvme-Amazon_Elastic_Block_Store_vol<id without dash>` to it, and sysfs carries the model
//! "Amazon Elastic Block Store" and the serial. The host's `storage.device_root` and `storage.sys_root` point at
//! these trees; the links lead to the real `/dev/loopN`, so berth mounts a real block device.

use std::path::{Path, PathBuf};

use berth_testkit::blockdev::FakeDeviceTree;

use crate::sys::{self, SysError};

/// A volume plugged into one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluggedVolume {
    /// The loop device (`/dev/loopN`).
    pub loop_device: PathBuf,
    /// The NVMe-style name in the host's tree (`nvme1n1`).
    pub name: String,
    /// Every file this plug created in the host's trees (removed on unplug).
    pub created: Vec<PathBuf>,
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SysError + 'a {
    move |source| SysError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

/// Creates a sparse, all-zero backing file of `size_mb` for a volume (a blank volume, as EC2 hands out).
pub fn create_backing(path: &Path, size_mb: u64) -> Result<(), SysError> {
    let file = std::fs::File::create(path).map_err(io("create", path))?;
    file.set_len(size_mb * 1024 * 1024)
        .map_err(io("truncate", path))
}

/// Plugs the volume backed by `backing` into a host's device tree as NVMe controller `controller`: a loop device,
/// the namespace link, the sysfs model/serial and udev's by-id link (the test kit's Nitro-shaped tree).
pub fn plug(
    backing: &Path,
    volume_id: &str,
    controller: u32,
    tree: &FakeDeviceTree,
) -> Result<PluggedVolume, SysError> {
    let loop_device = PathBuf::from(
        sys::run("losetup", &["-f", "--show", &backing.display().to_string()])?.trim(),
    );
    let name = format!("nvme{controller}n1");
    let plugged = PluggedVolume {
        loop_device: loop_device.clone(),
        name: name.clone(),
        created: vec![
            tree.by_id_path(volume_id),
            tree.device_root().join(&name),
            tree.sys_root()
                .join("class/nvme")
                .join(format!("nvme{controller}")),
        ],
    };
    if let Err(source) = tree.add_ebs(controller, volume_id, &loop_device, true) {
        unplug(&plugged);
        return Err(SysError::Io {
            what: "add to device tree",
            path: tree.device_root().display().to_string(),
            source,
        });
    }
    Ok(plugged)
}

/// Removes the host's view of the volume and detaches its loop device (the backing file, the data, stays).
pub fn unplug(plugged: &PluggedVolume) {
    for path in &plugged.created {
        let _ = std::fs::remove_file(path).or_else(|_| std::fs::remove_dir_all(path));
    }
    let _ = sys::run(
        "losetup",
        &["-d", &plugged.loop_device.display().to_string()],
    );
}
