//! The command line's shape, in the library so that the man pages and shell completions the package ships are
//! generated from it (and a test keeps them in step); `main.rs` runs what it parses.
//!
//! Every subcommand loads the configuration from the same sources as `berth run`: the file (`--config`), the
//! environment file (`--env-file`, `/etc/berth/environment` when present) and the process environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};

/// What `berth --help` and the man page say after the options: the files and the exit statuses.
const AFTER_HELP: &str = "\
Files: /etc/berth/berth.toml is the configuration (--config). /etc/berth/environment holds \
BERTH_<SECTION>__<KEY>=value overrides, read by berth.service and by every subcommand (--env-file, when present); \
the process environment overrides both. `berth check-config` shows where each value came from.

Exit statuses: 0 done (a drain completed, a stop, a valid configuration, a healthy broker); 1 not done (not \
healthy, or a drain that did not finish); 3 the daemon cannot be reached; 69 berth failed and let go of the broker; \
70 berth could not start; 78 the configuration is invalid (the message names the key and what to set).

Documentation: /usr/share/doc/berth/ (operations.md is the runbook).";

/// berth's command line.
#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about = "Makes a Kafka broker on an EC2 Auto Scaling Group self-healing",
    long_about = "Makes a Kafka broker on an EC2 Auto Scaling Group self-healing: at boot `berth run` (the \
                  berth.service unit) claims a broker id, attaches the id's ENI and EBS volume, routes, mounts, \
                  starts Kafka and reports it healthy; it drains on a termination notice or `berth drain`. The \
                  other subcommands check the configuration, show what berth would do, follow the running \
                  daemon, or drain it.",
    after_long_help = AFTER_HELP
)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: claim an id, attach and route its ENI, attach and mount its volume, start Kafka, stay healthy.
    Run {
        /// Where the configuration comes from.
        #[command(flatten)]
        sources: ConfigArgs,
    },
    /// Validate the configuration and print each effective value with its source; exit 78 naming the key when it
    /// is bad or missing.
    CheckConfig {
        /// Configuration file (the same as --config).
        #[arg(value_name = "CONFIG", conflicts_with = "config")]
        path: Option<PathBuf>,
        /// Where the configuration comes from.
        #[command(flatten)]
        sources: ConfigArgs,
    },
    /// Show the running daemon's state (reads its /state endpoint).
    Status {
        /// Where to find the daemon.
        #[command(flatten)]
        daemon: DaemonArgs,
        /// Print the raw JSON.
        #[arg(long, conflicts_with = "watch")]
        json: bool,
        /// Follow the daemon live: print a line whenever its state or what it waits for changes, until
        /// interrupted.
        #[arg(long, short)]
        watch: bool,
    },
    /// Drain the running daemon: stop Kafka, unmount, remove routes, detach, release the claim; waits for it.
    Drain {
        /// Where to find the daemon.
        #[command(flatten)]
        daemon: DaemonArgs,
        /// How long to wait for the drain to finish.
        #[arg(long, default_value = "300s", value_parser = parse_duration_arg)]
        timeout: Duration,
    },
    /// Show what `berth run` would do on this host (identity, ids, claim, route, mount, overlay); changes nothing.
    Plan {
        /// Where the configuration comes from.
        #[command(flatten)]
        sources: ConfigArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Do not read the claims from ZooKeeper (the plan then assumes no id is claimed).
        #[arg(long)]
        no_zookeeper: bool,
    },
}

/// Where the configuration comes from: the same sources for every subcommand.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// Configuration file.
    #[arg(long, short, value_name = "FILE", default_value = berth_config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// Environment file of BERTH_<SECTION>__<KEY>=value overrides [default: /etc/berth/environment, when
    /// present]. A file named here must exist.
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
}

impl ConfigArgs {
    /// The sources to load: `config` (or `path`, check-config's positional form), and the environment file.
    pub fn sources(&self, path: Option<&PathBuf>) -> berth_config::Sources {
        let env_file = match &self.env_file {
            Some(named) => berth_config::EnvFile {
                path: named.clone(),
                required: true,
            },
            None => berth_config::EnvFile {
                path: berth_config::DEFAULT_ENV_FILE.into(),
                required: false,
            },
        };
        berth_config::Sources {
            file: path.unwrap_or(&self.config).clone(),
            env_file: Some(env_file),
        }
    }
}

/// How `berth status` and `berth drain` find the running daemon.
#[derive(Debug, Clone, Args)]
pub struct DaemonArgs {
    /// The daemon's /state endpoint (default: the configuration's health.state_listen, on loopback).
    #[arg(long, value_name = "ADDRESS")]
    pub address: Option<SocketAddr>,
    /// Where the configuration comes from (to find the endpoint).
    #[command(flatten)]
    pub sources: ConfigArgs,
}

/// The command line as clap describes it (for the man pages and completions).
pub fn command() -> clap::Command {
    Cli::command()
}

fn parse_duration_arg(text: &str) -> Result<Duration, String> {
    berth_core::duration::parse_duration(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn check_config_takes_the_file_positionally_or_as_an_option() {
        let positional = Cli::try_parse_from(["berth", "check-config", "/tmp/a.toml"]).unwrap();
        let Command::CheckConfig { path, sources } = positional.command else {
            panic!("not check-config")
        };
        assert_eq!(
            sources.sources(path.as_ref()).file,
            PathBuf::from("/tmp/a.toml")
        );
        let option = Cli::try_parse_from(["berth", "check-config", "-c", "/tmp/b.toml"]).unwrap();
        let Command::CheckConfig { path, sources } = option.command else {
            panic!("not check-config")
        };
        assert_eq!(
            sources.sources(path.as_ref()).file,
            PathBuf::from("/tmp/b.toml")
        );
        assert!(
            Cli::try_parse_from(["berth", "check-config", "/tmp/a.toml", "-c", "/tmp/b.toml"])
                .is_err()
        );
    }

    #[test]
    fn the_environment_file_is_optional_by_default_and_required_when_named() {
        let parsed = Cli::try_parse_from(["berth", "plan"]).unwrap();
        let Command::Plan { sources, .. } = parsed.command else {
            panic!("not plan")
        };
        let default = sources.sources(None).env_file.unwrap();
        assert_eq!(default.path, PathBuf::from("/etc/berth/environment"));
        assert!(!default.required);
        let parsed = Cli::try_parse_from(["berth", "status", "--env-file", "/tmp/env"]).unwrap();
        let Command::Status { daemon, .. } = parsed.command else {
            panic!("not status")
        };
        let named = daemon.sources.sources(None).env_file.unwrap();
        assert_eq!(named.path, PathBuf::from("/tmp/env"));
        assert!(named.required);
    }
}
