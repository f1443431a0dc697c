//! `berth run`: the daemon, with its health endpoint and the signals that stop or drain it.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use berth::daemon::{DaemonExit, DaemonOptions, Request};
use berth::metrics::Service;
use berth::notify::Notifier;
use berth::{adapters, health, logging, EX_FAILED, EX_SOFTWARE};
use berth_core::ports::DrainReason;
use tokio::sync::{mpsc, watch};

use super::{load_or_report, small_runtime};

pub(crate) fn run(sources: &berth_config::Sources) -> ExitCode {
    let config = match load_or_report(sources) {
        Ok(loaded) => loaded.config,
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
    let (view_tx, view_rx) = watch::channel(None);
    let endpoint = health::Endpoint::new(view_rx);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let servers = health::start(&config.health, &endpoint, shutdown_rx).await?;
    let adapters = adapters::production(&config)
        .await
        .context("building the adapters")?;
    let (request_tx, request_rx) = mpsc::channel(4);
    tokio::spawn(forward_signals(request_tx));
    let options = DaemonOptions {
        settings: config.machine_settings(),
        broker_ids: config.claimable_ids(),
        termination_poll: config.aws.termination_poll,
        stop_timeout: config.kafka.stop_timeout,
        teardown_timeout: Duration::from_secs(120),
        jitter_seed: jitter_seed(),
        metrics: endpoint.metrics.clone(),
        claims: match config.claim_backend() {
            berth_config::ClaimBackend::Zookeeper => Service::Zookeeper,
            berth_config::ClaimBackend::Ec2 => Service::Aws,
        },
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
    for server in servers {
        let _ = server.await;
    }
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
