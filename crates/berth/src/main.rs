//! `berth`: run the daemon, check a configuration, show the daemon's status, plan (read-only), or drain.
//!
//! Errors are mapped to exit statuses here, at the edge: 78 (EX_CONFIG) for a bad configuration and 69
//! (EX_UNAVAILABLE) after Failed, which berth.service's RestartPreventExitStatus keeps systemd from retrying; 70
//! for a failure to start; 0 after a completed drain or a stop.
//!
//! Signals: SIGTERM and SIGINT stop berth and leave the broker running (Kafka, the mount, the routes, the
//! attachments, and the claim until its session times out), so `systemctl restart berth` or a package upgrade
//! costs Kafka nothing; the next berth adopts what is there. SIGUSR1 (what `berth drain` sends) drains.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use berth::daemon::{DaemonExit, DaemonOptions, Request};
use berth::notify::Notifier;
use berth::view::StateView;
use berth::{
    adapters, health, logging, EX_CONFIG, EX_FAILED, EX_NOT_DONE, EX_SOFTWARE, EX_UNREACHABLE,
};
use berth_core::ports::DrainReason;
use clap::{Parser, Subcommand};
use tokio::sync::{mpsc, watch};

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
        /// The health endpoint's address (default: from the configuration's health.listen, on loopback).
        #[arg(long)]
        address: Option<SocketAddr>,
        /// Configuration file, to find the endpoint.
        #[arg(long, short, default_value = berth_config::DEFAULT_PATH)]
        config: PathBuf,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Drain the running daemon: stop Kafka, unmount, remove routes, detach, release the claim; waits for it.
    Drain {
        /// The health endpoint's address (default: from the configuration's health.listen, on loopback).
        #[arg(long)]
        address: Option<SocketAddr>,
        /// Configuration file, to find the endpoint.
        #[arg(long, short, default_value = berth_config::DEFAULT_PATH)]
        config: PathBuf,
        /// How long to wait for the drain to finish.
        #[arg(long, default_value = "300s", value_parser = parse_duration_arg)]
        timeout: Duration,
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
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => check_config(&config),
        Command::Run { config } => run(&config),
        Command::Status {
            address,
            config,
            json,
        } => status(address, &config, json),
        Command::Plan {
            config,
            json,
            no_zookeeper,
        } => plan(&config, json, no_zookeeper),
        Command::Drain {
            address,
            config,
            timeout,
        } => drain(address, &config, timeout),
    }
}

fn parse_duration_arg(text: &str) -> Result<Duration, String> {
    berth_core::duration::parse_duration(text)
}

fn load_or_report(path: &std::path::Path) -> Result<berth_config::Config, ExitCode> {
    berth_config::load(path).map_err(|error| {
        eprintln!("berth: invalid configuration {}: {error}", path.display());
        ExitCode::from(EX_CONFIG)
    })
}

fn check_config(path: &std::path::Path) -> ExitCode {
    match load_or_report(path) {
        Ok(config) => {
            println!(
                "# effective configuration of {} (secrets omitted)",
                path.display()
            );
            print!("{}", config.to_toml());
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn run(path: &std::path::Path) -> ExitCode {
    let config = match load_or_report(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    logging::init();
    let runtime = match small_runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(run_daemon(config)) {
        Ok(DaemonExit::Drained | DaemonExit::Stopped) => ExitCode::SUCCESS,
        Ok(DaemonExit::Failed) => ExitCode::from(EX_FAILED),
        Err(error) => {
            tracing::error!(
                error = format!("{error:#}"),
                "berth could not start: {error:#}"
            );
            ExitCode::from(EX_SOFTWARE)
        }
    }
}

async fn run_daemon(config: berth_config::Config) -> anyhow::Result<DaemonExit> {
    let listener = tokio::net::TcpListener::bind(config.health.listen)
        .await
        .with_context(|| format!("binding the health endpoint on {}", config.health.listen))?;
    let (view_tx, view_rx) = watch::channel(None);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut shutdown = shutdown_rx.clone();
    let server = tokio::spawn(health::serve(listener, view_rx, async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    }));
    let adapters = adapters::production(&config)
        .await
        .context("building the adapters")?;
    let (request_tx, request_rx) = mpsc::channel(4);
    tokio::spawn(forward_signals(request_tx));
    let options = DaemonOptions {
        settings: config.machine_settings(),
        broker_ids: config.broker_ids().collect(),
        termination_poll: config.aws.termination_poll,
        stop_timeout: config.kafka.stop_timeout,
        teardown_timeout: Duration::from_secs(120),
        jitter_seed: jitter_seed(),
    };
    let exit = berth::daemon::run(
        options,
        adapters.clone(),
        Notifier::from_env(),
        request_rx,
        view_tx,
    )
    .await;
    if exit == DaemonExit::Stopped {
        // Leave at once, with the adapters still alive: dropping them would stop what they keep running (Kafka as a
        // child of the process supervisor) and close the ZooKeeper session, whose claim must outlive this process
        // until the session times out, so nobody takes the id before the next berth replaces it as its own.
        std::process::exit(0);
    }
    let _ = shutdown_tx.send(true);
    let _ = server.await;
    Ok(exit)
}

/// SIGTERM and SIGINT stop berth (the broker stays); SIGUSR1 drains it.
async fn forward_signals(requests: mpsc::Sender<Request>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut usr1)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::user_defined1()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    loop {
        let request = tokio::select! {
            _ = term.recv() => Request::Stop,
            _ = int.recv() => Request::Stop,
            _ = usr1.recv() => Request::Drain(DrainReason::Requested),
        };
        if requests.send(request).await.is_err() {
            return;
        }
    }
}

fn jitter_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    (nanos as u64) ^ (u64::from(std::process::id()) << 32)
}

/// The daemon's health endpoint: `--address`, else the configuration's `health.listen` on loopback.
fn endpoint(address: Option<SocketAddr>, config: &std::path::Path) -> Result<SocketAddr, ExitCode> {
    if let Some(address) = address {
        return Ok(address);
    }
    match berth_config::load(config) {
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

/// The one runtime of every subcommand: one thread is plenty for a daemon that mostly waits, and it keeps the
/// footprint small (no per-worker allocator arenas); the blocking work of a mount step runs on a thread of its
/// own (berth-storage), so nothing blocks the loop.
fn small_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| {
            eprintln!("berth: cannot start the runtime: {error}");
            ExitCode::from(EX_SOFTWARE)
        })
}

fn status(address: Option<SocketAddr>, config: &std::path::Path, json: bool) -> ExitCode {
    let (address, runtime) = match (endpoint(address, config), small_runtime()) {
        (Ok(address), Ok(runtime)) => (address, runtime),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    match runtime.block_on(health::get(address, "/state")) {
        Ok((200, body)) if json => {
            print!("{body}");
            ExitCode::SUCCESS
        }
        Ok((200, body)) => match serde_json::from_str::<StateView>(&body) {
            Ok(view) => {
                print!("{}", view.render_human());
                if view.healthy {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(EX_NOT_DONE)
                }
            }
            Err(error) => {
                eprintln!("berth: unexpected /state from {address}: {error}");
                ExitCode::from(EX_SOFTWARE)
            }
        },
        Ok((code, body)) => {
            eprintln!("berth: {address}/state answered {code}: {body}");
            ExitCode::from(EX_SOFTWARE)
        }
        Err(error) => {
            eprintln!(
                "berth: cannot reach the daemon at {address}: {error} (is berth.service running?)"
            );
            ExitCode::from(EX_UNREACHABLE)
        }
    }
}

fn plan(path: &std::path::Path, json: bool, no_zookeeper: bool) -> ExitCode {
    let config = match load_or_report(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let runtime = match small_runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        let cloud = berth_aws::AwsCloud::new(&config)
            .await
            .context("AWS clients")?;
        let claims = if config.claim_backend() == berth_config::ClaimBackend::Ec2 {
            berth::plan::ClaimsView::Unknown {
                reason: "claim.backend = \"ec2\": the ENI attachments are the claims".into(),
            }
        } else if no_zookeeper {
            berth::plan::ClaimsView::Unknown {
                reason: "--no-zookeeper".into(),
            }
        } else {
            berth::plan::read_claims(&config, Duration::from_secs(10)).await
        };
        berth::plan::make(&config, &cloud, claims)
            .await
            .context("identity and discovery")
    });
    match result {
        Ok(plan) if json => match serde_json::to_string_pretty(&plan) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("berth: {error}");
                ExitCode::from(EX_SOFTWARE)
            }
        },
        Ok(plan) => {
            print!("{}", plan.render_human());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("berth plan: {error:#}");
            ExitCode::from(EX_SOFTWARE)
        }
    }
}

/// `berth drain`: asks the daemon (SIGUSR1 to the pid its `/state` names) to drain, then follows it until it is
/// gone. Exit 0 when it drained, 1 when it ended otherwise or did not finish in time, 3 when unreachable.
fn drain(address: Option<SocketAddr>, config: &std::path::Path, timeout: Duration) -> ExitCode {
    let (address, runtime) = match (endpoint(address, config), small_runtime()) {
        (Ok(address), Ok(runtime)) => (address, runtime),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    match runtime.block_on(berth::drain::request(address, timeout)) {
        Ok(outcome) => {
            println!("berth drain: {outcome}");
            if outcome.drained() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EX_NOT_DONE)
            }
        }
        Err(error) => {
            eprintln!("berth drain: {error}");
            ExitCode::from(EX_UNREACHABLE)
        }
    }
}
