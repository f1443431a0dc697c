//! `berth check-config`: validate a configuration and print the effective result, with the time budgets it
//! adds up to; warn (on stderr, exit 0) when they cannot fit the lifecycle hooks' timeouts.

use std::process::ExitCode;

use berth::UNIT_TIMEOUT_STOP;

use super::load_or_report;

pub(crate) fn check_config(path: &std::path::Path) -> ExitCode {
    match load_or_report(path) {
        Ok(config) => {
            println!(
                "# effective configuration of {} (secrets omitted)",
                path.display()
            );
            println!("# {}", config.budget_summary(UNIT_TIMEOUT_STOP));
            print!("{}", config.to_toml());
            for warning in config.budget_warnings() {
                eprintln!("berth: warning: {warning}");
            }
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}
