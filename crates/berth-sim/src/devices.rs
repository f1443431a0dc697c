//! The simulated hot-plug of an EBS volume: a loop device over the volume's backing file (which outlives hosts:
//! it *is* the volume's data) and the Nitro view of it in the host's device and sysfs trees.
//!
//! On Nitro a volume appears as `nvmeXn1` whatever name was requested, udev links
//! `disk/by-id/nvme-Amazon_Elastic_Block_Store_vol<id without dash>` to it, and sysfs carries the model
//! "Amazon Elastic Block Store" and the serial, in the host's sysfs tree (its `storage.sys_root`). The host's
//! container has its own /dev (and no udev): there the namespace is a block-device node with the numbers of the
//! real `/dev/loopN`, so berth mounts a real block device, and the by-id link is made next to it, as udev would.

use std::path::{Path, PathBuf};

use berth_testkit::blockdev::FakeDeviceTree;

use crate::container::Container;
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
    /// The files it created inside the host's container, as the container names them (removed on unplug while
    /// the container lives; they vanish with it otherwise).
    pub in_container: Vec<PathBuf>,
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
/// the namespace link, the sysfs model/serial and udev's by-id link (the test kit's Nitro-shaped tree), and the
/// namespace as a block-device node in the host `container`'s /dev, with its by-id link.
pub fn plug(
    backing: &Path,
    volume_id: &str,
    controller: u32,
    tree: &FakeDeviceTree,
    container: &Container,
) -> Result<PluggedVolume, SysError> {
    let loop_device = PathBuf::from(
        sys::run("losetup", &["-f", "--show", &backing.display().to_string()])?.trim(),
    );
    let name = format!("nvme{controller}n1");
    let mut plugged = PluggedVolume {
        loop_device: loop_device.clone(),
        name: name.clone(),
        created: vec![
            tree.by_id_path(volume_id),
            tree.device_root().join(&name),
            tree.sys_root()
                .join("class/nvme")
                .join(format!("nvme{controller}")),
        ],
        in_container: Vec::new(),
    };
    // The by-id link's name, relative to a device root.
    let by_id = tree
        .by_id_path(volume_id)
        .strip_prefix(tree.device_root())
        .map(Path::to_owned)
        .unwrap_or_default();
    let result = tree
        .add_ebs(controller, volume_id, &loop_device, true)
        .map(drop)
        .map_err(|source| (tree.device_root(), source))
        .and_then(|()| {
            let dev = Path::new("/dev");
            plugged.in_container = vec![dev.join(&by_id), dev.join(&name)];
            let (link, node) = (
                container.path(dev.join(&by_id)),
                container.path(dev.join(&name)),
            );
            node_with_link(&loop_device, &node, &link).map_err(|source| (node, source))
        });
    if let Err((root, source)) = result {
        unplug(&plugged, Some(container));
        return Err(SysError::Io {
            what: "add to device tree",
            path: root.display().to_string(),
            source,
        });
    }
    Ok(plugged)
}

/// A block-device node at `node` with `device`'s numbers, and a relative symlink to it at `link`.
fn node_with_link(device: &Path, node: &Path, link: &Path) -> std::io::Result<()> {
    use nix::sys::stat::{mknod, Mode, SFlag};
    use std::os::unix::fs::MetadataExt;
    let rdev = std::fs::metadata(device)?.rdev();
    let _ = std::fs::remove_file(node);
    mknod(node, SFlag::S_IFBLK, Mode::from_bits_truncate(0o660), rdev)?;
    let parent = link.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(parent)?;
    let _ = std::fs::remove_file(link);
    // From <dev>/disk/by-id, as udev writes it.
    let depth = link
        .strip_prefix(node.parent().unwrap_or(Path::new("/")))
        .map(|relative| relative.components().count().saturating_sub(1))
        .unwrap_or(0);
    let mut target = PathBuf::new();
    for _ in 0..depth {
        target.push("..");
    }
    target.push(node.file_name().unwrap_or_default());
    std::os::unix::fs::symlink(target, link)
}

/// Removes the host's view of the volume and detaches its loop device (the backing file, the data, stays).
pub fn unplug(plugged: &PluggedVolume, container: Option<&Container>) {
    for path in &plugged.created {
        let _ = std::fs::remove_file(path).or_else(|_| std::fs::remove_dir_all(path));
    }
    // Only through a container known to live: a dead one's /proc/<pid> may name another process by now.
    if let Some(container) = container.filter(|c| c.alive()) {
        for path in &plugged.in_container {
            let _ = std::fs::remove_file(container.path(path));
        }
    }
    let _ = sys::run(
        "losetup",
        &["-d", &plugged.loop_device.display().to_string()],
    );
}
