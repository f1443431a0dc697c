//! `berth check-config`: validate the configuration and print each effective value with its source, with the
//! time budgets it adds up to; warn (on stderr, exit 0) when they cannot fit the lifecycle hooks' timeouts.

use std::process::ExitCode;

use berth::UNIT_TIMEOUT_STOP;

use super::load_or_report;

pub(crate) fn check_config(sources: &berth_config::Sources) -> ExitCode {
    match load_or_report(sources) {
        Ok(loaded) => {
            println!("# berth's effective configuration (secrets omitted); after each value, where it came from");
            println!("# {}", loaded.config.budget_summary(UNIT_TIMEOUT_STOP));
            print!("{}", loaded.render_with_origins());
            for warning in loaded.config.budget_warnings() {
                eprintln!("berth: warning: {warning}");
            }
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}
