//! `berth status`: the running daemon's `/state`, as text or JSON.

use std::process::ExitCode;

use berth::{EX_NOT_DONE, EX_SOFTWARE, EX_UNREACHABLE};
use berth_state::{client, StateView};

use super::{with_daemon, DaemonArgs};

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
