//! `berth drain`: ask the running daemon to drain and follow it until it is gone.

use std::process::ExitCode;
use std::time::Duration;

use berth::{EX_NOT_DONE, EX_UNREACHABLE};

use berth::cli::DaemonArgs;

use super::with_daemon;

/// `berth drain`: asks the daemon (SIGUSR1 to the pid its `/state` names) to drain, then follows it until it is
/// gone, printing what it waits for whenever that changes. Exit 0 when it drained, 1 when it ended otherwise or did
/// not finish in time, 3 when unreachable.
pub(crate) fn drain(daemon: &DaemonArgs, timeout: Duration) -> ExitCode {
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
