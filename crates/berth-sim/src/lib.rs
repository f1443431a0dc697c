//! berth-sim: an AWS region and broker hosts simulated on one machine with real parts, running the real `berth`.
//!
//! Why a simulator: berth's promises (unique ids under contention, same id/IP/data after a replacement,
//! convergence after a crash anywhere) are only proven end to end, with a real ZooKeeper ensemble, a moto that
//! refuses attachments as EC2 does, real network namespaces, veths and loop devices. This crate builds that
//! world ([`fleet`]), serves the demo ([`demo`]), and is the base of the end-to-end tests and fleet benchmarks.
//! The only stand-ins are the ones named in the test kit: the Kafka stand-in and the strict CloudFormation/Auto
//! Scaling endpoint, whose simulated Auto Scaling groups launch and terminate the fleet's hosts ([`asg`]), and
//! this crate's cloud-init stand-in ([`cloud_init`]), which runs a host's user data. It reads
//! berth from the outside only: `/state` through the `berth-state` crate, the claims through berth-zk's lister,
//! the journal through `journalctl`; it does not link the daemon.

pub mod asg;
pub mod bench;
pub mod claims;
pub mod cloud_init;
pub mod container;
pub mod demo;
pub mod devices;
pub mod ec2;
pub mod fleet;
pub mod kafka;
pub mod layout;
pub mod region;
pub mod roll;
pub mod security_groups;
pub mod stack;
pub mod stack_update;
pub mod state;
pub mod sys;
pub mod systemd_host;
pub mod timeline_svg;

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};

pub use fleet::{BerthBuild, Fleet, FleetError, FleetOptions, Host, HostRole, SimKafka};
pub use state::StateView;

/// A namespace prefix unique to this process and call, short enough for interface names.
fn unique_prefix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!(
        "{}{}{}",
        fleet::NS_PREFIX,
        std::process::id() % 100_000,
        (b'a' + (n % 26) as u8) as char
    )
}

/// Builds a fleet and runs `body` with it on a tokio runtime whose threads live in the region namespace (so the
/// simulator's clients reach ZooKeeper, moto and the hosts' health endpoints from inside the VPC), then tears
/// everything down, whatever `body` returned.
pub fn with_fleet<T, F, Fut>(options: FleetOptions, body: F) -> anyhow::Result<T>
where
    T: Send,
    F: FnOnce(Fleet) -> Fut + Send,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let prefix = unique_prefix();
    let region = region::Region::create(&format!("{prefix}-region"), options.zones)?;
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                region.enter()?;
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()?;
                runtime.block_on(async move {
                    let fleet = Fleet::start(options, &prefix, region).await?;
                    body(fleet).await
                })
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Removes what a crashed run left behind: `bsim*` namespaces and loop devices over files in `bsim*` directories.
pub fn cleanup_leftovers() -> Vec<String> {
    let mut removed = Vec::new();
    let namespaces = sys::ip(&["netns", "list"]).unwrap_or_default();
    for ns in namespaces
        .lines()
        .filter_map(|line| line.split_whitespace().next())
    {
        if ns.starts_with(fleet::NS_PREFIX) {
            for pid in sys::netns_pids(ns) {
                sys::signal(pid, nix::sys::signal::Signal::SIGKILL);
            }
            if sys::ip(&["netns", "del", ns]).is_ok() {
                removed.push(format!("namespace {ns}"));
            }
        }
    }
    let tmp = std::env::temp_dir();
    if let Ok(entries) = std::fs::read_dir(&tmp) {
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(fleet::NS_PREFIX)
            {
                sys::unmount_all(&entry.path());
            }
        }
    }
    let loops = sys::run("losetup", &["-a"]).unwrap_or_default();
    for line in loops.lines() {
        let Some((device, rest)) = line.split_once(':') else {
            continue;
        };
        if rest.contains(&format!("{}/{}", tmp.display(), fleet::NS_PREFIX))
            && sys::run("losetup", &["-d", device]).is_ok()
        {
            removed.push(format!("loop device {device}"));
        }
    }
    removed
}
