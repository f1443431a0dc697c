//! How long from "the volume's device appears" to "resolved, probed, mounted and checked" (mkfs excluded).
//!
//! A real loop device holding the default filesystem (xfs, made once before timing) is announced by creating
//! its udev by-id link while `resolve` is already waiting; the clock runs from that moment until `mount`
//! returns (read-only mount, meta.properties check, remount read-write). Each run unmounts again. Runs in a
//! private mount namespace; needs root. Final line: `storage appear_to_mounted_ms=<median> ...`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use berth_core::ports::MountPlan;
use berth_core::Filesystem;
use berth_core::{BrokerId, Deadline};
use berth_storage::BlockStorage;
use berth_testkit::blockdev::{self, FakeDeviceTree, LoopDevice};

const RUNS: usize = 21;
const VOLUME: &str = "vol-0123456789abcdef0";

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    if !berth_testkit::require_root("storage bench") {
        println!(
            "storage error=\"needs root\" {}",
            berth_testkit::bench::load_field()
        );
        std::process::exit(1);
    }
    let disk = LoopDevice::new(blockdev::XFS_MIN_BYTES).expect("loop device");
    blockdev::make_filesystem(disk.path(), "xfs").expect("mkfs.xfs (not timed)");
    let mount_dir = tempfile::tempdir().expect("mount dir");
    let mount_path: PathBuf = mount_dir.path().join("kafka");
    let plan = MountPlan {
        mount_path: mount_path.clone(),
        log_dirs: vec![mount_path.join("data")],
    };

    let (mut total, mut resolve, mut mount) = (Vec::new(), Vec::new(), Vec::new());
    blockdev::block_on_in_private_mount_ns(|| async {
        for run in 0..RUNS {
            let tree = FakeDeviceTree::new().expect("device tree");
            let storage = BlockStorage::new(common::settings(&tree, &mount_path, Filesystem::Xfs));
            let deadline = Deadline::after(Duration::from_secs(10));
            let appear = async {
                // Let resolve start waiting first, then make the device appear.
                tokio::time::sleep(Duration::from_millis(20)).await;
                tree.add_ebs(1, VOLUME, disk.path(), true)
                    .expect("device appears");
                Instant::now()
            };
            let work = async {
                let resolved = storage
                    .resolve_volume(VOLUME, "/dev/sdf", deadline)
                    .await
                    .expect("resolve");
                let at_resolved = Instant::now();
                let report = storage
                    .mount_volume(
                        &resolved.device,
                        &plan,
                        BrokerId(1),
                        Deadline::after(Duration::from_secs(60)),
                    )
                    .await
                    .expect("mount");
                assert!(!report.formatted && !report.already_mounted, "{report:?}");
                (at_resolved, Instant::now())
            };
            let (appeared, (resolved, mounted)) = tokio::join!(appear, work);
            storage.unmount_volume(&plan).expect("unmount");
            if run == 0 {
                continue; // warm-up: first mount of this filesystem, cold caches
            }
            total.push(millis(mounted - appeared));
            resolve.push(millis(resolved.saturating_duration_since(appeared)));
            mount.push(millis(mounted - resolved));
        }
    });
    let max = total.iter().copied().fold(0.0, f64::max);
    println!(
        "storage appear_to_mounted_ms={:.1} max_ms={:.1} resolve_ms={:.1} probe_mount_check_ms={:.1} runs={} filesystem=xfs {}",
        median(&mut total),
        max,
        median(&mut resolve),
        median(&mut mount),
        total.len(),
        berth_testkit::bench::load_field()
    );
}
