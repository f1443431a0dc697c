//! `berth drain`: ask the running daemon to drain and follow it until it is gone, for as long as the
//! configuration says a drain may take.

use std::process::ExitCode;
use std::time::Duration;

use berth::{EX_NOT_DONE, EX_UNREACHABLE};
use berth_config::KafkaConfig;

use berth::cli::DaemonArgs;

use super::with_daemon;

/// Beyond the worst-case drain: the daemon's exit grace for what it still sends, and some slack.
const DRAIN_MARGIN: Duration = Duration::from_secs(30);

/// `berth drain`: asks the daemon (SIGUSR1 to the pid its `/state` names) to drain, then follows it until it is
/// gone, for `timeout` or else the configuration's worst-case drain, printing what it waits for whenever that
/// changes. Exit 0 when it drained, 1 when it ended otherwise or did not finish in time, 3 when unreachable.
pub(crate) fn drain(daemon: &DaemonArgs, timeout: Option<Duration>) -> ExitCode {
    let timeout = timeout.unwrap_or_else(|| derived_wait(daemon));
    with_daemon(daemon, |address, runtime| {
        let mut changes = berth::summary::Changes::default();
        let progress = |view: &berth_state::StateView| {
            if let Some(line) = changes.view(view) {
                println!("berth drain: {line}");
            }
        };
        match runtime.block_on(berth::drain::request(address, timeout, progress)) {
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
    })
}

/// How long a drain may take as the configuration has it (`kafka.drain_wait`, `kafka.stop_timeout`, each release
/// action's limit), plus [`DRAIN_MARGIN`]; the defaults' when the configuration cannot be read.
fn derived_wait(daemon: &DaemonArgs) -> Duration {
    let worst = match berth_config::load_sources(&daemon.sources.sources(None)) {
        Ok(loaded) => loaded.config.drain_worst_case(),
        Err(error) => {
            eprintln!(
                "berth drain: {error}; waiting as long as the defaults' worst-case drain (or pass --timeout)"
            );
            KafkaConfig::default().drain_worst_case()
        }
    };
    worst + DRAIN_MARGIN
}
