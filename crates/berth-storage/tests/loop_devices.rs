//! The storage adapter on real loop devices, each case in its own private mount namespace (root only).
//!
//! Device names are a fake Nitro tree (by-id links, sysfs model/serial) pointing at real loop devices; the
//! probe, mkfs, mount(2), mountinfo and meta.properties are all real. "Never formatted" is proven by the device's
//! bytes (a hash of the whole backing file) and the filesystem UUID staying the same.

mod common;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use berth_core::ports::MountPlan;
use berth_core::Filesystem;
use berth_core::{BrokerId, Deadline, ErrorKind, StepError, Storage, VolumeFacts};
use berth_storage::{BlockStorage, Route, StorageError, StorageSettings};
use berth_testkit::blockdev::{self, FakeDeviceTree, LoopDevice};
use berth_testkit::require_root;

const VOLUME: &str = "vol-0123456789abcdef0";
const SMALL: u64 = 64 << 20;

/// One test's world: a loop device, a fake device tree naming it, and a mount point; while it lives, no other
/// test of this process touches devices or spawns programs ([`blockdev::one_at_a_time`]).
struct World {
    disk: LoopDevice,
    tree: FakeDeviceTree,
    mount_dir: tempfile::TempDir,
    // Last, so it is released after the loop device is detached.
    _one_at_a_time: MutexGuard<'static, ()>,
}

impl World {
    fn new(size: u64) -> Self {
        let one_at_a_time = blockdev::one_at_a_time();
        let disk = LoopDevice::new(size).expect("loop device");
        let tree = FakeDeviceTree::new().expect("device tree");
        tree.add_ebs(1, VOLUME, disk.path(), true)
            .expect("by-id link");
        Self {
            disk,
            tree,
            mount_dir: tempfile::tempdir().expect("mount dir"),
            _one_at_a_time: one_at_a_time,
        }
    }

    fn mount_path(&self) -> PathBuf {
        self.mount_dir.path().join("kafka")
    }

    fn settings(&self, filesystem: Filesystem) -> StorageSettings {
        common::settings(&self.tree, &self.mount_path(), filesystem)
    }

    fn storage(&self, filesystem: Filesystem) -> BlockStorage {
        BlockStorage::new(self.settings(filesystem))
    }

    fn plan(&self) -> MountPlan {
        MountPlan {
            mount_path: self.mount_path(),
            log_dirs: vec![self.mount_path().join("data")],
        }
    }

    /// A hash of every byte of the device (through its backing file).
    fn fingerprint(&self) -> u64 {
        let bytes = std::fs::read(self.disk.backing_file()).expect("read backing file");
        let mut hasher = DefaultHasher::new();
        bytes.hash(&mut hasher);
        hasher.finish()
    }
}

fn volume() -> VolumeFacts {
    VolumeFacts {
        volume_id: VOLUME.into(),
        availability_zone: "az-a".into(),
        state: "in-use".into(),
        size_gib: 1,
        attachment: None,
    }
}

fn soon() -> Deadline {
    Deadline::after(Duration::from_secs(10))
}

fn mounted_at(path: &Path) -> Vec<berth_storage::MountEntry> {
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    berth_storage::mountinfo::read()
        .unwrap()
        .into_iter()
        .filter(|entry| entry.mount_point == canonical)
        .collect()
}

fn assert_fatal(error: &StepError, needles: &[&str]) {
    assert_eq!(error.kind, ErrorKind::Fatal, "{error}");
    assert_names(error, needles);
}

/// Asserts the error's message names every needle.
fn assert_names(error: &StepError, needles: &[&str]) {
    for needle in needles {
        assert!(
            error.message.contains(needle),
            "{needle:?} missing from: {}",
            error.message
        );
    }
}

/// Storage over `tree` for the cases that only resolve devices (its mount point is never used).
fn resolver(tree: &FakeDeviceTree, filesystem: Filesystem) -> BlockStorage {
    BlockStorage::new(common::settings(
        tree,
        Path::new("/nonexistent"),
        filesystem,
    ))
}

/// A runtime for the cases that resolve devices, which need no private mount namespace.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn format_blank_and_mount(size: u64, filesystem: Filesystem) {
    let world = World::new(size);
    let storage = world.storage(filesystem);
    blockdev::block_on_in_private_mount_ns(|| async {
        let device = storage
            .resolve(&volume(), "/dev/sdf", soon())
            .await
            .expect("resolve");
        assert_eq!(device, world.disk.path());
        let report = storage
            .mount(&device, &world.plan(), BrokerId(3), soon())
            .await
            .expect("mount");
        assert!(report.formatted && !report.already_mounted, "{report:?}");
        assert_eq!(report.filesystem, filesystem.name());
        let entries = mounted_at(&world.mount_path());
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(entries[0].fstype, filesystem.name());
        assert!(
            entries[0].options.split(',').any(|o| o == "rw")
                && entries[0].options.contains("noatime")
        );
        // Writable, as Kafka needs it.
        std::fs::create_dir_all(world.mount_path().join("data"))
            .expect("write on the mounted volume");
        storage.unmount(&world.plan()).await.expect("unmount");
        assert!(mounted_at(&world.mount_path()).is_empty());
        storage
            .unmount(&world.plan())
            .await
            .expect("unmount again is a no-op");
    });
    let probe = berth_storage::probe::probe_device(world.disk.path()).expect("probe");
    assert!(
        matches!(probe.content(), berth_storage::Content::Filesystem(_)),
        "{probe:?}"
    );
}

#[test]
fn blank_device_is_formatted_ext4_and_mounted() {
    if require_root("blank_device_is_formatted_ext4_and_mounted") {
        format_blank_and_mount(SMALL, Filesystem::Ext4);
    }
}

#[test]
fn blank_device_is_formatted_xfs_and_mounted() {
    if require_root("blank_device_is_formatted_xfs_and_mounted") {
        format_blank_and_mount(blockdev::XFS_MIN_BYTES, Filesystem::Xfs);
    }
}

#[test]
fn blank_device_is_not_formatted_unless_configured() {
    if !require_root("blank_device_is_not_formatted_unless_configured") {
        return;
    }
    let world = World::new(SMALL);
    let mut settings = world.settings(Filesystem::Ext4);
    settings.format_blank = false;
    let storage = BlockStorage::new(settings);
    let error = blockdev::block_on_in_private_mount_ns(|| async {
        storage
            .mount(world.disk.path(), &world.plan(), BrokerId(0), soon())
            .await
            .unwrap_err()
    });
    assert_fatal(
        &error,
        &[
            "is blank",
            "format_blank is off",
            &world.disk.path().display().to_string(),
        ],
    );
    assert!(berth_storage::probe::probe_device(world.disk.path())
        .unwrap()
        .is_blank());
}

/// A device holding a filesystem with a sentinel file: refused under the other filesystem's configuration,
/// mounted (never formatted) under its own, and the sentinel and the filesystem UUID survive both.
fn sentinel_survives(size: u64, filesystem: Filesystem, other: Filesystem) {
    let world = World::new(size);
    blockdev::make_filesystem(world.disk.path(), filesystem.name()).expect("mkfs");
    let sentinel = blockdev::random_bytes(1 << 20).unwrap();
    blockdev::in_private_mount_ns(|| {
        let scratch = tempfile::tempdir().unwrap();
        sys_mount_simple(world.disk.path(), scratch.path(), filesystem.name());
        std::fs::create_dir(scratch.path().join("data")).unwrap();
        std::fs::write(scratch.path().join("data/sentinel"), &sentinel).unwrap();
        nix::mount::umount(scratch.path()).unwrap();
    });
    let uuid = blockdev::filesystem_uuid(world.disk.path()).unwrap();
    let before = world.fingerprint();

    let wrong = world.storage(other);
    let error = blockdev::block_on_in_private_mount_ns(|| async {
        wrong
            .mount(world.disk.path(), &world.plan(), BrokerId(1), soon())
            .await
            .unwrap_err()
    });
    let found = if filesystem == Filesystem::Xfs {
        "holds xfs (signature at offset 0)"
    } else {
        "(signature at offset 1080)"
    };
    assert_fatal(
        &error,
        &[
            found,
            &format!("storage.filesystem is {}", other.name()),
            "refusing to mount or reformat",
        ],
    );
    assert_eq!(world.fingerprint(), before, "refused device was written");

    let right = world.storage(filesystem);
    blockdev::block_on_in_private_mount_ns(|| async {
        let report = right
            .mount(world.disk.path(), &world.plan(), BrokerId(1), soon())
            .await
            .expect("mount");
        assert!(!report.formatted, "{report:?}");
        let read = std::fs::read(world.mount_path().join("data/sentinel")).expect("sentinel");
        assert!(read == sentinel, "sentinel changed");
        right.unmount(&world.plan()).await.expect("unmount");
    });
    assert_eq!(
        blockdev::filesystem_uuid(world.disk.path()).unwrap(),
        uuid,
        "filesystem was recreated"
    );
}

fn sys_mount_simple(device: &Path, target: &Path, fstype: &str) {
    nix::mount::mount(
        Some(device),
        target,
        Some(fstype),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .expect("mount for the test's own setup");
}

#[test]
fn ext4_with_data_is_never_formatted() {
    if require_root("ext4_with_data_is_never_formatted") {
        sentinel_survives(SMALL, Filesystem::Ext4, Filesystem::Xfs);
    }
}

#[test]
fn xfs_with_data_is_never_formatted() {
    if require_root("xfs_with_data_is_never_formatted") {
        sentinel_survives(blockdev::XFS_MIN_BYTES, Filesystem::Xfs, Filesystem::Ext4);
    }
}

/// Plants something, then checks that mount refuses it (formatting on), names it, and writes nothing.
fn refused(name: &str, plant: impl FnOnce(&LoopDevice), needles: &[&str]) -> World {
    let world = World::new(SMALL);
    plant(&world.disk);
    let before = world.fingerprint();
    let storage = world.storage(Filesystem::Ext4);
    let error = blockdev::block_on_in_private_mount_ns(|| async {
        let error = storage
            .mount(world.disk.path(), &world.plan(), BrokerId(0), soon())
            .await
            .unwrap_err();
        assert!(
            mounted_at(&world.mount_path()).is_empty(),
            "{name}: something got mounted"
        );
        error
    });
    let device = world.disk.path().display().to_string();
    let mut all = vec!["not blank", "refusing to format or mount", device.as_str()];
    all.extend_from_slice(needles);
    assert_fatal(&error, &all);
    assert_eq!(
        world.fingerprint(),
        before,
        "{name}: the device was written"
    );
    world
}

#[test]
fn partition_tables_without_filesystem_are_never_formatted() {
    if !require_root("partition_tables_without_filesystem_are_never_formatted") {
        return;
    }
    refused(
        "gpt",
        |disk| blockdev::plant_gpt(disk.path()).unwrap(),
        &["GPT header at offset 512"],
    );
    refused(
        "mbr",
        |disk| blockdev::plant_mbr(disk.path(), disk.size()).unwrap(),
        &["MBR boot signature at offset 510"],
    );
}

#[test]
fn luks_and_lvm_are_never_formatted() {
    if !require_root("luks_and_lvm_are_never_formatted") {
        return;
    }
    refused(
        "luks",
        |disk| blockdev::plant_luks(disk.path()).unwrap(),
        &["LUKS2 header at offset 0"],
    );
    let world = refused(
        "lvm",
        |disk| blockdev::plant_lvm(disk.path()).unwrap(),
        &["LVM2 PV label at offset 512"],
    );
    blockdev::remove_lvm(world.disk.path()).expect("pvremove");
}

#[test]
fn random_data_is_never_formatted() {
    if !require_root("random_data_is_never_formatted") {
        return;
    }
    refused(
        "random",
        |disk| blockdev::plant_random(disk.path(), 0, 4096).unwrap(),
        &["non-zero byte"],
    );
    // A single byte deep in the probed head, and one in the tail, are enough.
    refused(
        "one byte",
        |disk| blockdev::write_at(disk.path(), 5 << 20, &[1]).unwrap(),
        &["offset 5242880"],
    );
    refused(
        "tail byte",
        |disk| blockdev::write_at(disk.path(), disk.size() - 1, &[0x80]).unwrap(),
        &[&format!("offset {}", SMALL - 1)],
    );
}

#[test]
fn late_device_is_waited_for_on_every_route() {
    if !require_root("late_device_is_waited_for_on_every_route") {
        return;
    }
    let _one_at_a_time = blockdev::one_at_a_time();
    let disk = LoopDevice::new(SMALL).unwrap();
    for route in ["by-id", "sysfs", "xen"] {
        let tree = FakeDeviceTree::new().unwrap();
        let storage = resolver(&tree, Filesystem::Ext4);
        let delay = Duration::from_millis(300);
        let started = Instant::now();
        let resolved = std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(delay); // the scenario: the device shows up late
                match route {
                    // The node first, then udev's link, and no sysfs identity: only the by-id route can
                    // resolve, so a resolver pass racing this plug cannot take the sysfs route instead.
                    "by-id" => tree
                        .add_name("nvme2n1", disk.path())
                        .and_then(|_| tree.add_by_id(VOLUME, 2))
                        .map(drop),
                    "sysfs" => tree.add_ebs(2, VOLUME, disk.path(), false).map(drop),
                    _ => tree.add_name("xvdf", disk.path()).map(drop),
                }
                .unwrap();
            });
            runtime()
                .block_on(storage.resolve_volume(VOLUME, "/dev/sdf", soon()))
                .expect("resolve")
        });
        assert!(
            started.elapsed() >= delay,
            "{route}: resolved before the device appeared"
        );
        assert_eq!(resolved.device, disk.path(), "{route}");
        let expected = match route {
            "by-id" => matches!(resolved.route, Route::ById(_)),
            "sysfs" => resolved.route == Route::Sysfs("nvme2".into()),
            _ => resolved.route == Route::Requested(tree.device_root().join("xvdf")),
        };
        assert!(expected, "{route}: {:?}", resolved.route);
    }
}

#[test]
fn missing_device_times_out_naming_the_volume() {
    let tree = FakeDeviceTree::new().unwrap();
    let storage = resolver(&tree, Filesystem::Xfs);
    let runtime = runtime();
    let started = Instant::now();
    let error = runtime
        .block_on(storage.resolve(
            &volume(),
            "/dev/sdf",
            Deadline::after(Duration::from_millis(200)),
        ))
        .unwrap_err();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    assert_eq!(error.kind, ErrorKind::Retryable);
    assert_names(
        &error,
        &[
            VOLUME,
            "/dev/sdf",
            "did not appear",
            "nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0",
            "xvdf",
        ],
    );
}

#[test]
fn instance_store_and_other_volumes_are_never_chosen() {
    if !require_root("instance_store_and_other_volumes_are_never_chosen") {
        return;
    }
    let _one_at_a_time = blockdev::one_at_a_time();
    let disk = LoopDevice::new(SMALL).unwrap();
    let tree = FakeDeviceTree::new().unwrap();
    // An instance-store disk that even carries the volume's serial, and the requested name pointing at it.
    tree.add_instance_store(0, &blockdev::nitro_serial(VOLUME), disk.path())
        .unwrap();
    tree.add_name("xvdf", Path::new("nvme0n1")).unwrap();
    // Another EBS volume behind the Xen twin name.
    tree.add_ebs(3, "vol-0fffffffffffffff0", disk.path(), true)
        .unwrap();
    tree.add_name("sdf", Path::new("nvme3n1")).unwrap();
    let storage = resolver(&tree, Filesystem::Xfs);
    let runtime = runtime();
    let error = runtime
        .block_on(storage.resolve(
            &volume(),
            "/dev/sdf",
            Deadline::after(Duration::from_millis(100)),
        ))
        .unwrap_err();
    assert_names(
        &error,
        &[
            "instance-store disk (nvme0n1",
            "EBS volume vol0fffffffffffffff0, not vol0123456789abcdef0",
        ],
    );
    let observed = storage.observe(VOLUME, "/dev/sdf").unwrap();
    assert_eq!(observed.device, None);
    assert_eq!(observed.skipped.len(), 2, "{:?}", observed.skipped);
}

#[test]
fn already_mounted_is_a_no_op_and_foreign_mounts_are_refused() {
    if !require_root("already_mounted_is_a_no_op_and_foreign_mounts_are_refused") {
        return;
    }
    let world = World::new(SMALL);
    let storage = world.storage(Filesystem::Ext4);
    blockdev::block_on_in_private_mount_ns(|| async {
        let first = storage
            .mount(world.disk.path(), &world.plan(), BrokerId(2), soon())
            .await
            .unwrap();
        assert!(first.formatted);
        // Through the by-id name this time: the same device.
        let by_id = world.tree.by_id_path(VOLUME);
        let second = storage
            .mount(&by_id, &world.plan(), BrokerId(2), soon())
            .await
            .unwrap();
        assert!(second.already_mounted && !second.formatted, "{second:?}");
        assert_eq!(mounted_at(&world.mount_path()).len(), 1);
        storage.unmount(&world.plan()).await.unwrap();

        // Something else on the mount point.
        nix::mount::mount(
            Some("tmpfs"),
            &world.mount_path(),
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        let error = storage
            .mount(world.disk.path(), &world.plan(), BrokerId(2), soon())
            .await
            .unwrap_err();
        assert_fatal(&error, &["tmpfs", "refusing to mount over it"]);
        nix::mount::umount(&world.mount_path()).unwrap();

        // The device mounted somewhere else: in use, not probed, not formatted.
        let elsewhere = tempfile::tempdir().unwrap();
        sys_mount_simple(world.disk.path(), elsewhere.path(), "ext4");
        let error = storage
            .mount(world.disk.path(), &world.plan(), BrokerId(2), soon())
            .await
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::Retryable, "{error}");
        assert!(
            error.message.contains("in use")
                && error
                    .message
                    .contains(&elsewhere.path().display().to_string())
        );
        nix::mount::umount(elsewhere.path()).unwrap();
    });
}

#[test]
fn foreign_meta_properties_is_refused_and_nothing_is_written() {
    if !require_root("foreign_meta_properties_is_refused_and_nothing_is_written") {
        return;
    }
    let world = World::new(SMALL);
    let mut settings = world.settings(Filesystem::Ext4);
    settings.cluster_id = Some("ClusterOne".into());
    let storage = BlockStorage::new(settings.clone());
    let meta = world.mount_path().join("data/meta.properties");
    blockdev::block_on_in_private_mount_ns(|| async {
        storage
            .mount(world.disk.path(), &world.plan(), BrokerId(7), soon())
            .await
            .unwrap();
        std::fs::create_dir_all(world.mount_path().join("data")).unwrap();
        std::fs::write(&meta, "version=0\nbroker.id=7\ncluster.id=ClusterOne\n").unwrap();
        storage.unmount(&world.plan()).await.unwrap();
    });
    let before = world.fingerprint();
    let meta_path = meta.display().to_string();
    for (id, cluster, needles) in [
        (
            3,
            "ClusterOne",
            vec![
                "broker.id is 7",
                "claimed broker id is 3",
                meta_path.as_str(),
            ],
        ),
        (
            7,
            "ClusterTwo",
            vec![
                "cluster.id is ClusterOne",
                "cluster.kafka_cluster_id is ClusterTwo",
                meta_path.as_str(),
            ],
        ),
    ] {
        let mut settings = settings.clone();
        settings.cluster_id = Some(cluster.into());
        let storage = BlockStorage::new(settings);
        blockdev::block_on_in_private_mount_ns(|| async {
            let error = storage
                .mount(world.disk.path(), &world.plan(), BrokerId(id), soon())
                .await
                .unwrap_err();
            assert_fatal(&error, &needles);
            assert!(
                mounted_at(&world.mount_path()).is_empty(),
                "the refused volume stays mounted"
            );
        });
        assert_eq!(
            world.fingerprint(),
            before,
            "the refused volume was written"
        );
    }
}

#[test]
fn remount_after_a_daemon_restart() {
    if !require_root("remount_after_a_daemon_restart") {
        return;
    }
    let world = World::new(SMALL);
    blockdev::block_on_in_private_mount_ns(|| async {
        {
            let first_daemon = world.storage(Filesystem::Ext4);
            let device = first_daemon
                .resolve(&volume(), "/dev/sdf", soon())
                .await
                .unwrap();
            first_daemon
                .mount(&device, &world.plan(), BrokerId(4), soon())
                .await
                .unwrap();
            std::fs::create_dir_all(world.mount_path().join("data")).unwrap();
            std::fs::write(
                world.mount_path().join("data/meta.properties"),
                "broker.id=4\n",
            )
            .unwrap();
        }
        // The daemon restarts: it observes, then converges without formatting.
        let restarted = world.storage(Filesystem::Ext4);
        let observed = restarted.observe(VOLUME, "/dev/sdf").unwrap();
        assert_eq!(
            observed.device.as_ref().map(|r| r.device.clone()),
            Some(world.disk.path().to_owned())
        );
        assert!(observed.mounted_here, "{observed:?}");
        let canonical_mount = std::fs::canonicalize(world.mount_path()).unwrap();
        assert_eq!(observed.device_mounted_at, vec![canonical_mount]);
        let device = restarted
            .resolve(&volume(), "/dev/sdf", soon())
            .await
            .unwrap();
        let report = restarted
            .mount(&device, &world.plan(), BrokerId(4), soon())
            .await
            .unwrap();
        assert!(report.already_mounted && !report.formatted);

        // Restart after an unmount (e.g. a drain that stopped half way): mounted again, not formatted.
        restarted.unmount(&world.plan()).await.unwrap();
        assert!(!restarted.observe(VOLUME, "/dev/sdf").unwrap().mounted_here);
        let report = restarted
            .mount(&device, &world.plan(), BrokerId(4), soon())
            .await
            .unwrap();
        assert!(!report.already_mounted && !report.formatted, "{report:?}");
        let meta =
            std::fs::read_to_string(world.mount_path().join("data/meta.properties")).unwrap();
        assert_eq!(meta, "broker.id=4\n");
        restarted.unmount(&world.plan()).await.unwrap();

        // A daemon that died between the read-only mount and the remount: the restart makes it writable.
        nix::mount::mount(
            Some(world.disk.path()),
            &world.mount_path(),
            Some("ext4"),
            nix::mount::MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .unwrap();
        let report = restarted
            .mount(&device, &world.plan(), BrokerId(4), soon())
            .await
            .unwrap();
        assert!(report.already_mounted, "{report:?}");
        let entries = mounted_at(&world.mount_path());
        assert!(
            entries[0].options.split(',').any(|o| o == "rw"),
            "{entries:?}"
        );
        std::fs::write(world.mount_path().join("data/written-after-restart"), "ok")
            .expect("writable");
        restarted.unmount(&world.plan()).await.unwrap();
    });
}

#[test]
fn busy_unmount_is_reported_not_forced() {
    if !require_root("busy_unmount_is_reported_not_forced") {
        return;
    }
    let world = World::new(SMALL);
    let storage = world.storage(Filesystem::Ext4);
    blockdev::block_on_in_private_mount_ns(|| async {
        storage
            .mount(world.disk.path(), &world.plan(), BrokerId(0), soon())
            .await
            .unwrap();
        let open = std::fs::File::create(world.mount_path().join("held-open")).unwrap();
        let error = storage.unmount(&world.plan()).await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::Retryable);
        assert!(
            error.message.contains("busy") && error.message.contains("not forcing"),
            "{error}"
        );
        assert_eq!(mounted_at(&world.mount_path()).len(), 1, "still mounted");
        drop(open);
        storage.unmount(&world.plan()).await.unwrap();
        assert!(mounted_at(&world.mount_path()).is_empty());
    });
}

#[test]
fn errors_convert_with_the_right_kind() {
    let fatal: StepError = StorageError::InvalidVolumeId {
        volume_id: "x".into(),
    }
    .into();
    assert_eq!(fatal.kind, ErrorKind::Fatal);
    let retry: StepError = StorageError::Busy { path: "/m".into() }.into();
    assert_eq!(retry.kind, ErrorKind::Retryable);
}

/// A mkfs.xfs killed part-way (an abandoned Mount step, or the instance dying) leaves an XFS superblock with
/// `sb_inprogress` set, which the kernel refuses to mount. Nothing was ever stored in it, so berth formats it
/// again when formatting is allowed, rather than refusing the volume forever; it is refused when it is not.
#[test]
fn an_interrupted_xfs_format_is_formatted_again() {
    if !require_root("an_interrupted_xfs_format_is_formatted_again") {
        return;
    }
    let world = World::new(blockdev::XFS_MIN_BYTES);
    blockdev::make_filesystem(world.disk.path(), "xfs").expect("mkfs");
    // What mkfs.xfs leaves until its last write: sb_inprogress (byte 126 of the superblock) set.
    {
        use std::os::unix::fs::FileExt;
        let device = std::fs::OpenOptions::new()
            .write(true)
            .open(world.disk.path())
            .unwrap();
        device.write_all_at(&[1], 126).unwrap();
        device.sync_all().unwrap();
    }
    let probe = berth_storage::probe::probe_device(world.disk.path()).unwrap();
    assert!(
        matches!(
            probe.content(),
            berth_storage::Content::InterruptedFormat(_)
        ),
        "{probe:?}"
    );
    let mut refusing = world.settings(Filesystem::Xfs);
    refusing.format_blank = false;
    let error = blockdev::block_on_in_private_mount_ns(|| async {
        BlockStorage::new(refusing)
            .mount(world.disk.path(), &world.plan(), BrokerId(0), soon())
            .await
            .unwrap_err()
    });
    assert_fatal(&error, &["format_blank is off"]);
    let storage = world.storage(Filesystem::Xfs);
    blockdev::block_on_in_private_mount_ns(|| async {
        let report = storage
            .mount(world.disk.path(), &world.plan(), BrokerId(0), soon())
            .await
            .expect("formatted again and mounted");
        assert!(report.formatted, "{report:?}");
        assert_eq!(mounted_at(&world.mount_path()).len(), 1);
        storage.unmount(&world.plan()).await.expect("unmount");
    });
}

/// mkfs is bounded by the Mount step's deadline and killed when it runs past it: a stuck mkfs (here a stand-in
/// that never finishes, first on PATH) neither holds the step forever nor lingers after it.
#[test]
fn an_mkfs_past_the_deadline_is_killed() {
    if !require_root("an_mkfs_past_the_deadline_is_killed") {
        return;
    }
    let world = World::new(SMALL);
    let bin = tempfile::tempdir().unwrap();
    let pid_file = bin.path().join("pid");
    let script = bin.path().join("mkfs.ext4");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho $$ > {}\nexec sleep 600\n",
            pid_file.display()
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // PATH is read only when a program is spawned, and the World keeps every other test of this process
    // from spawning one while it lives.
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![bin.path().to_owned()];
    dirs.extend(std::env::split_paths(&path));
    std::env::set_var("PATH", std::env::join_paths(dirs).unwrap());
    let storage = world.storage(Filesystem::Ext4);
    let started = Instant::now();
    let error = blockdev::block_on_in_private_mount_ns(|| async {
        storage
            .mount(
                world.disk.path(),
                &world.plan(),
                BrokerId(0),
                Deadline::after(Duration::from_secs(2)),
            )
            .await
            .unwrap_err()
    });
    std::env::set_var("PATH", path);
    assert_eq!(error.kind, ErrorKind::Retryable, "{error}");
    assert!(error.message.contains("killed"), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let stat = format!("/proc/{}/stat", pid.trim());
    let polled = Instant::now();
    // Killed: gone, or a zombie until it is reaped.
    while std::fs::read_to_string(&stat).is_ok_and(|stat| !stat.contains(") Z ")) {
        assert!(
            polled.elapsed() < Duration::from_secs(10),
            "mkfs {pid} still runs"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
