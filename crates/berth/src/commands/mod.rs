//! One module per subcommand, and what they share: loading the configuration from the sources every command
//! reads (exit 78 naming the key), finding the daemon's endpoint, and the one runtime builder.

pub(crate) mod check_config;
pub(crate) mod drain;
pub(crate) mod plan;
pub(crate) mod run;
pub(crate) mod status;

use std::net::SocketAddr;
use std::process::ExitCode;

use berth::cli::DaemonArgs;
use berth::{EX_CONFIG, EX_SOFTWARE};

/// Loads the configuration from `sources` (the file, the environment file, the process environment), or prints
/// why not (the key and what to set) and returns exit status 78.
pub(crate) fn load_or_report(
    sources: &berth_config::Sources,
) -> Result<berth_config::Loaded, ExitCode> {
    berth_config::load_sources(sources).map_err(|error| {
        eprintln!(
            "berth: invalid configuration ({}): {error}",
            describe(sources)
        );
        ExitCode::from(EX_CONFIG)
    })
}

/// The files a configuration was loaded from, for messages: `/etc/berth/berth.toml, /etc/berth/environment`.
fn describe(sources: &berth_config::Sources) -> String {
    let mut files = sources.file.display().to_string();
    if let Some(env_file) = &sources.env_file {
        if env_file.required || env_file.path.exists() {
            files.push_str(&format!(", {}", env_file.path.display()));
        }
    }
    files
}

/// The running daemon's `/state` endpoint: `--address`, else the configuration's `health.state_listen`
/// (an unspecified address means loopback).
fn endpoint(daemon: &DaemonArgs) -> Result<SocketAddr, ExitCode> {
    if let Some(address) = daemon.address {
        return Ok(address);
    }
    let sources = daemon.sources.sources(None);
    match berth_config::load_sources(&sources) {
        Ok(loaded) => {
            let mut address = loaded.config.health.state_listen;
            if address.ip().is_unspecified() {
                address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            Ok(address)
        }
        Err(error) => {
            eprintln!(
                "berth: cannot find the daemon's /state endpoint: invalid configuration ({}): {error} \
                 (or pass --address)",
                describe(&sources)
            );
            Err(ExitCode::from(EX_CONFIG))
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
    match (endpoint(daemon), small_runtime()) {
        (Ok(address), Ok(runtime)) => talk(address, runtime),
        (Err(code), _) | (_, Err(code)) => code,
    }
}
