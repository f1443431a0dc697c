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

/// How long an unusable configuration's report may take before berth exits 78 anyway.
const REPORT_LIMIT: Duration = Duration::from_secs(60);

pub(crate) fn run(sources: &berth_config::Sources) -> ExitCode {
    let config = match load_or_report(sources) {
        Ok(loaded) => loaded.config,
        Err(code) => {
            report_unusable(sources);
            return code;
        }
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
        teardown_timeout: berth_config::TEARDOWN_ACTION_TIMEOUT,
        delivery_bound: config.hook_global_timeout(),
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

/// A configuration that does not validate: tells Auto Scaling the boot failed when what did parse names the launch
/// hook (see [`adapters::report_unusable_configuration`]), within [`REPORT_LIMIT`]; says what it did either way.
fn report_unusable(sources: &berth_config::Sources) {
    let reason = berth_config::load_sources(sources)
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
    let text = std::fs::read_to_string(&sources.file).unwrap_or_default();
    // The process environment before the environment file's lines: `salvage` takes the first match, and the
    // process environment overrides the environment file (as in every command's sources).
    let env_file = sources
        .env_file
        .as_ref()
        .and_then(|env_file| berth_config::read_env_file(&env_file.path).ok().flatten())
        .unwrap_or_default();
    let environment: Vec<(String, String)> = std::env::vars().chain(env_file).collect();
    let salvage = berth_config::salvage(
        &text,
        environment.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    if salvage.launch_hook.is_empty() {
        eprintln!(
            "berth: the launch hook is not known: the failure is not reported to Auto Scaling"
        );
        return;
    }
    logging::init();
    let Ok(runtime) = small_runtime() else {
        return;
    };
    let report = runtime.block_on(async {
        tokio::time::timeout(
            REPORT_LIMIT,
            adapters::report_unusable_configuration(&salvage, &reason),
        )
        .await
    });
    match report {
        Ok(Ok(Some(report))) => {
            tracing::error!(report = ?report, "invalid configuration: failure reported to Auto Scaling ({report:?}); exiting 78");
            eprintln!("berth: failure reported to Auto Scaling: {report:?}");
        }
        Ok(Ok(None)) => {}
        Ok(Err(error)) => {
            tracing::error!(
                error = format!("{error:#}"),
                "invalid configuration, and the failure could not be reported: {error:#}"
            );
            eprintln!("berth: the failure could not be reported to Auto Scaling: {error:#}");
        }
        Err(_) => eprintln!("berth: the failure's report did not finish within {REPORT_LIMIT:?}"),
    }
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
