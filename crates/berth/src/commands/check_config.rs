//! `berth check-config`: validate a configuration and print the effective result.

use std::process::ExitCode;

use super::load_or_report;

pub(crate) fn check_config(path: &std::path::Path) -> ExitCode {
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
