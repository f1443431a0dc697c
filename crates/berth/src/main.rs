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

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::commands::{check_config, drain, plan, run, status, DaemonArgs};

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "Makes a Kafka broker on an EC2 Auto Scaling Group self-healing"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: claim an id, attach and route its ENI, attach and mount its volume, start Kafka, stay healthy.
    Run {
        /// Configuration file (BERTH_<SECTION>__<KEY> environment variables override it).
        #[arg(long, short, default_value = berth_config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Validate a configuration and print the effective result; exit 78 naming the key when it is bad.
    CheckConfig {
        /// Configuration file.
        #[arg(default_value = berth_config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Show the running daemon's state (reads its /state endpoint).
    Status {
        #[command(flatten)]
        daemon: DaemonArgs,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Drain the running daemon: stop Kafka, unmount, remove routes, detach, release the claim; waits for it.
    Drain {
        #[command(flatten)]
        daemon: DaemonArgs,
        /// How long to wait for the drain to finish (default: the configuration's worst-case drain,
        /// kafka.drain_wait + kafka.stop_timeout + the release, plus 30s).
        #[arg(long, value_parser = parse_duration_arg)]
        timeout: Option<Duration>,
    },
    /// Show what `berth run` would do on this host (identity, ids, claim, route, mount, overlay); changes nothing.
    Plan {
        /// Configuration file.
        #[arg(long, short, default_value = berth_config::DEFAULT_PATH)]
        config: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Do not read the claims from ZooKeeper (the plan then assumes no id is claimed).
        #[arg(long)]
        no_zookeeper: bool,
    },
}

fn main() -> ExitCode {
    // Crash points (tests only): armed by the FAILPOINTS environment variable.
    #[cfg(feature = "failpoints")]
    let _crash_points = fail::FailScenario::setup();
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => check_config::check_config(&config),
        Command::Run { config } => run::run(&config),
        Command::Status { daemon, json } => status::status(&daemon, json),
        Command::Plan {
            config,
            json,
            no_zookeeper,
        } => plan::plan(&config, json, no_zookeeper),
        Command::Drain { daemon, timeout } => drain::drain(&daemon, timeout),
    }
}

fn parse_duration_arg(text: &str) -> Result<Duration, String> {
    berth_core::duration::parse_duration(text)
}
