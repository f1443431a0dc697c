//! One module per subcommand, and what they share: loading the configuration (exit 78 naming the key), finding
//! the daemon's endpoint, and the one runtime builder.

pub(crate) mod check_config;
pub(crate) mod drain;
pub(crate) mod plan;
pub(crate) mod run;
pub(crate) mod status;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use berth::{EX_CONFIG, EX_SOFTWARE};

pub(crate) fn load_or_report(path: &std::path::Path) -> Result<berth_config::Config, ExitCode> {
    berth_config::load(path).map_err(|error| {
        eprintln!("berth: invalid configuration {}: {error}", path.display());
        ExitCode::from(EX_CONFIG)
    })
}

/// How `berth status` and `berth drain` find the running daemon.
#[derive(clap::Args)]
pub(crate) struct DaemonArgs {
    /// The health endpoint's address (default: from the configuration's health.listen, on loopback).
    #[arg(long)]
    pub(crate) address: Option<SocketAddr>,
    /// Configuration file, to find the endpoint.
    #[arg(long, short, default_value = berth_config::DEFAULT_PATH)]
    pub(crate) config: PathBuf,
}

impl DaemonArgs {
    /// The daemon's health endpoint: `--address`, else the configuration's `health.listen` on loopback.
    fn endpoint(&self) -> Result<SocketAddr, ExitCode> {
        if let Some(address) = self.address {
            return Ok(address);
        }
        match berth_config::load(&self.config) {
            Ok(config) => {
                let mut address = config.health.listen;
                if address.ip().is_unspecified() {
                    address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                Ok(address)
            }
            Err(error) => {
                eprintln!("berth: cannot find the health endpoint: {error} (pass --address)");
                Err(ExitCode::from(EX_CONFIG))
            }
        }
    }
}

/// The one runtime of every subcommand: one thread is plenty for a daemon that mostly waits, and it keeps the
/// footprint small (no per-worker allocator arenas); the blocking work of a mount step runs on a thread of its
/// own (berth-storage), so nothing blocks the loop.
pub(crate) fn small_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| {
            eprintln!("berth: cannot start the runtime: {error}");
            ExitCode::from(EX_SOFTWARE)
        })
}

/// Runs `talk` against the running daemon (`berth status`, `berth drain`): its endpoint and a runtime, or the
/// exit status that says why there are none.
pub(crate) fn with_daemon(
    daemon: &DaemonArgs,
    talk: impl FnOnce(SocketAddr, tokio::runtime::Runtime) -> ExitCode,
) -> ExitCode {
    match (daemon.endpoint(), small_runtime()) {
        (Ok(address), Ok(runtime)) => talk(address, runtime),
        (Err(code), _) | (_, Err(code)) => code,
    }
}
