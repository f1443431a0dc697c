//! `berth-sim`: the simulated region's command line (`demo`, `cleanup`).

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// A simulated AWS region with broker hosts running the real berth.
#[derive(Debug, Parser)]
#[command(name = "berth-sim", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// 3 brokers in 3 zones boot concurrently, host 0 is killed and replaced: same id, same IP, same data. KRaft
    /// with the ec2 claim backend and no ZooKeeper, unless --zookeeper.
    Demo {
        /// The card's ZooKeeper claims: a ZooKeeper ensemble and `claim.backend = "zookeeper"`.
        #[arg(long)]
        zookeeper: bool,
        /// Delay before a hot-plugged ENI appears in the host.
        #[arg(long, default_value = "300", value_name = "MS")]
        eni_delay_ms: u64,
        /// Delay before an attached volume's block device appears in the host.
        #[arg(long, default_value = "300", value_name = "MS")]
        volume_delay_ms: u64,
        /// Where the SVG timeline of the replacement is written (one row per host, its states on one time axis).
        #[arg(long, default_value = "target/demo-timeline.svg", value_name = "PATH")]
        timeline: std::path::PathBuf,
    },
    /// The shipped CloudFormation template's stack on the simulated region.
    Stack {
        #[command(subcommand)]
        command: StackCommand,
    },
    /// Remove namespaces and loop devices a crashed run left behind.
    Cleanup,
}

#[derive(Debug, Subcommand)]
enum StackCommand {
    /// Creates the stack (three KRaft brokers), then updates it to a launch template version whose user data sets
    /// each KEY=VALUE (berth's BERTH_<SECTION>__<KEY> overrides), rolling the brokers one group at a time; a
    /// version that cannot become Healthy is rolled back. Prints the update's stack events; fails on a rollback.
    Update {
        /// An override the new version's user data writes to /etc/berth/environment (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE", required = true)]
        overrides: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!(
            "berth-sim needs root (network namespaces, loop devices, mounts); try: sudo make demo"
        );
        return ExitCode::from(77);
    }
    match cli.command {
        Command::Demo {
            zookeeper,
            eni_delay_ms,
            volume_delay_ms,
            timeline,
        } => {
            let options = berth_sim::FleetOptions {
                eni_delay: Duration::from_millis(eni_delay_ms),
                volume_delay: Duration::from_millis(volume_delay_ms),
                claim_backend: if zookeeper {
                    berth_config::ClaimBackend::Zookeeper
                } else {
                    berth_config::ClaimBackend::Ec2
                },
                ..berth_sim::FleetOptions::default()
            };
            // The KRaft default deploys the shipped CloudFormation template's stack, as an operator does.
            let options = if zookeeper {
                options
            } else {
                berth_sim::stack::deployed(options)
            };
            match berth_sim::demo::run(options) {
                Ok(report) => {
                    match std::fs::write(&timeline, &report.svg) {
                        Ok(()) => println!("timeline: {}", timeline.display()),
                        Err(error) => {
                            eprintln!("demo FAILED: writing {}: {error}", timeline.display());
                            return ExitCode::FAILURE;
                        }
                    }
                    println!(
                        "demo OK: broker {} replaced in {:.1}s",
                        report.broker_id,
                        report.replace.as_secs_f64()
                    );
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("demo FAILED: {error:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Stack {
            command: StackCommand::Update { overrides },
        } => stack_update(&overrides),
        Command::Cleanup => {
            for item in berth_sim::cleanup_leftovers() {
                println!("removed {item}");
            }
            ExitCode::SUCCESS
        }
    }
}

/// `berth-sim stack update`: success when the update completed, failure on a rollback or an error.
fn stack_update(overrides: &[String]) -> ExitCode {
    let options = berth_sim::stack::deployed(berth_sim::FleetOptions {
        claim_backend: berth_config::ClaimBackend::Ec2,
        ..berth_sim::FleetOptions::default()
    });
    match berth_sim::stack_update::run_update(options, overrides) {
        Ok(outcome) => {
            println!("stack update: {outcome:?}");
            match outcome {
                berth_sim::stack_update::Updated::Complete { .. } => ExitCode::SUCCESS,
                berth_sim::stack_update::Updated::RolledBack { .. } => ExitCode::FAILURE,
            }
        }
        Err(error) => {
            eprintln!("stack update FAILED: {error:#}");
            ExitCode::FAILURE
        }
    }
}
