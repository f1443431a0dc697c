//! Shared by the storage tests and the storage bench: the adapter's settings over a fake device tree.

use std::path::Path;

use berth_core::Filesystem;
use berth_storage::StorageSettings;
use berth_testkit::blockdev::FakeDeviceTree;

/// The shipped example's `[storage]` (`config/berth.toml`: `noatime`, no mkfs options, formatting blank
/// volumes) over `tree`, mounting at `mount_path` and formatting with `filesystem`; no cluster id.
pub fn settings(
    tree: &FakeDeviceTree,
    mount_path: &Path,
    filesystem: Filesystem,
) -> StorageSettings {
    StorageSettings {
        device_root: tree.device_root(),
        sys_root: tree.sys_root(),
        mount_path: mount_path.to_owned(),
        mount_options: "noatime".into(),
        filesystem,
        format_blank: true,
        mkfs_options: Vec::new(),
        cluster_id: None,
    }
}
