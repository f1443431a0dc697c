//! `berth`: run the daemon, check a configuration, show the daemon's status, plan (read-only), or drain.
//!
//! Errors are mapped to exit statuses here, at the edge: 78 (EX_CONFIG) for a bad configuration and 69
//! (EX_UNAVAILABLE) after Failed, which berth.service's RestartPreventExitStatus keeps systemd from retrying; 70
//! for a failure to start; 0 after a completed drain or a stop.
//!
//! Signals: SIGTERM and SIGINT stop berth and leave the broker running (Kafka, the mount, the routes, the
//! attachments, and the claim until its session times out), so `systemctl restart berth` or a package upgrade
//! costs Kafka nothing; the next berth adopts what is there. SIGUSR1 (what `berth drain` sends) drains.

mod commands;

use std::process::ExitCode;

use berth::cli::{Cli, Command};
use clap::Parser;

use crate::commands::{check_config, drain, plan, run, status};

fn main() -> ExitCode {
    // Crash points (tests only): armed by the FAILPOINTS environment variable.
    #[cfg(feature = "failpoints")]
    let _crash_points = fail::FailScenario::setup();
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { path, sources } => {
            check_config::check_config(&sources.sources(path.as_ref()))
        }
        Command::Run { sources } => run::run(&sources.sources(None)),
        Command::Status {
            daemon,
            json: _,
            watch: true,
        } => status::watch(&daemon),
        Command::Status { daemon, json, .. } => status::status(&daemon, json),
        Command::Plan {
            sources,
            json,
            no_zookeeper,
        } => plan::plan(&sources.sources(None), json, no_zookeeper),
        Command::Drain { daemon, timeout } => drain::drain(&daemon, timeout),
    }
}
