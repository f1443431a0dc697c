//! `berth plan`: what `berth run` would do on this host; changes nothing.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use berth::EX_SOFTWARE;

use super::{load_or_report, small_runtime};

pub(crate) fn plan(sources: &berth_config::Sources, json: bool, no_zookeeper: bool) -> ExitCode {
    adopt_environment_file(sources);
    let config = match load_or_report(sources) {
        Ok(loaded) => loaded.config,
        Err(code) => return code,
    };
    let runtime = match small_runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        let cloud = berth_aws::AwsCloud::new(berth::adapters::aws_settings(&config))
            .await
            .context("AWS clients")?;
        let claims = if config.claim_backend() == berth_config::ClaimBackend::Ec2 {
            berth::plan::ClaimsView::Unknown {
                reason: "claim.backend = \"ec2\": the ENI attachments are the claims".into(),
            }
        } else if no_zookeeper {
            berth::plan::ClaimsView::Unknown {
                reason: "--no-zookeeper".into(),
            }
        } else {
            berth::plan::read_claims(&config, Duration::from_secs(10)).await
        };
        berth::plan::make(&config, &cloud, &cloud, claims)
            .await
            .context("identity and discovery")
    });
    match result {
        Ok(plan) if json => match serde_json::to_string_pretty(&plan) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("berth: {error}");
                ExitCode::from(EX_SOFTWARE)
            }
        },
        Ok(plan) => {
            print!("{}", plan.render_human());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("berth plan: {error:#}");
            ExitCode::from(EX_SOFTWARE)
        }
    }
}

/// Gives this process the environment file's variables it lacks (AWS credentials, region or proxy), as
/// `EnvironmentFile=` gives them to the daemon, so the plan reaches AWS as `berth run` would. Runs before any
/// thread exists (setting the environment is not thread-safe); a file that cannot be read is reported by the
/// configuration's loading that follows.
fn adopt_environment_file(sources: &berth_config::Sources) {
    let Some(env_file) = &sources.env_file else {
        return;
    };
    let Ok(Some(assignments)) = berth_config::read_env_file(&env_file.path) else {
        return;
    };
    for (name, value) in
        berth_config::missing_from_process(assignments, |name| std::env::var_os(name).is_some())
    {
        std::env::set_var(name, value);
    }
}
