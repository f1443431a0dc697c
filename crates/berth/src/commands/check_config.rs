//! `berth check-config`: validate the configuration and print each effective value with its source.

use std::process::ExitCode;

use super::load_or_report;

pub(crate) fn check_config(sources: &berth_config::Sources) -> ExitCode {
    match load_or_report(sources) {
        Ok(loaded) => {
            println!("# berth's effective configuration (secrets omitted); after each value, where it came from");
            print!("{}", loaded.render_with_origins());
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}
