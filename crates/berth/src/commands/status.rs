//! `berth status`: the running daemon's `/state`, as text or JSON, or followed live (`--watch`).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use berth::{EX_NOT_DONE, EX_SOFTWARE, EX_UNREACHABLE};
use berth_state::{client, StateView};

use berth::cli::DaemonArgs;

use super::with_daemon;

/// `berth status`: the daemon's `/state`, as text or (`json`) as it came. Exit 0 when healthy, 1 when not, 3
/// when unreachable, 70 when it answered something else.
pub(crate) fn status(daemon: &DaemonArgs, json: bool) -> ExitCode {
    with_daemon(daemon, |address, runtime| {
        match runtime.block_on(client::get(address, "/state")) {
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
    })
}

/// How often `berth status --watch` reads `/state`.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// `berth status --watch`: reads `/state` every second and prints a line, prefixed by the time since the watch
/// began, whenever the state or what it waits for changes (a berth that stops answering, as during an upgrade,
/// is one line too); runs until interrupted.
pub(crate) fn watch(daemon: &DaemonArgs) -> ExitCode {
    with_daemon(daemon, |address, runtime| {
        let began = Instant::now();
        let mut changes = berth::summary::Changes::default();
        runtime.block_on(async {
            loop {
                let line = match client::get(address, "/state").await {
                    Ok((200, body)) => match serde_json::from_str::<StateView>(&body) {
                        Ok(view) => changes.view(&view),
                        Err(error) => changes.unreachable(&error),
                    },
                    Ok((code, _)) => {
                        changes.unreachable(&format!("{address}/state answered {code}"))
                    }
                    Err(error) => changes.unreachable(&format!("{address}: {error}")),
                };
                if let Some(line) = line {
                    println!("+{:6.1}s  {line}", began.elapsed().as_secs_f64());
                }
                tokio::time::sleep(WATCH_EVERY).await;
            }
        })
    })
}
