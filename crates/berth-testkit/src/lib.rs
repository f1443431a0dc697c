//! Test support shared by berth's crates: the real parts tests run against.
//!
//! One place for harnesses so no crate copies another's: a real ZooKeeper from Debian's package ([`zk`]), real
//! Apache Kafka from Maven Central with a real client ([`kafka`]),
//! a strict moto server and AWS-protocol fakes for the calls moto lacks ([`aws`]), network namespaces
//! ([`netns`]) and loop devices with private mount namespaces ([`blockdev`]). Each starts on free ports or
//! fresh names and cleans up in `Drop`. Tests needing root call [`require_root`], which fails them without it.

pub mod aws;
pub mod bench;
pub mod blockdev;
pub use berth_core::fixtures;
pub mod inprocess;
pub mod kafka;
pub mod netns;
pub mod zk;

/// The boot path's state names in order, as `/state`, `berth plan` and the logs spell them: written out here, not
/// taken from `State::name`, so that a test comparing against them pins the contract.
pub const BOOT_STATE_NAMES: [&str; 7] = [
    "claim",
    "attach_eni",
    "route",
    "attach_ebs",
    "mount",
    "start_kafka",
    "healthy",
];

/// Fails the test loudly unless it runs as root: a privileged test must never pass by not running. Returns true,
/// so callers read `if !require_root(..) { return; }` as a guard.
pub fn require_root(test: &str) -> bool {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "{test}: needs root (network namespaces, mounts, loop devices); run the tests as root"
    );
    true
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("bind an ephemeral port on 127.0.0.1")
}

/// The workspace root (for locating the moto virtualenv, scripts and built binaries).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// The workspace's target directory (`$CARGO_TARGET_DIR`, else `<workspace>/target`).
pub fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The workspace's debug build directory (`<target>/debug`), where `make test` builds every binary before the
/// tests run.
pub fn debug_dir() -> std::path::PathBuf {
    target_dir().join("debug")
}

/// A binary of another package of the workspace, built in debug; panics with the command that builds it when it
/// is missing (`cargo test -p X` does not build other packages' binaries).
pub fn debug_binary(name: &str) -> std::path::PathBuf {
    let binary = debug_dir().join(name);
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build -p {name}` (or `make build`) first",
        binary.display()
    );
    binary
}
