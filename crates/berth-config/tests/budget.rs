//! The time budgets against the lifecycle hooks: the shipped example fits; heartbeats off, heartbeats too rare,
//! or a worst case past the hooks' global timeout are each warned about, naming the key.

use std::time::Duration;

const EXAMPLE: &str = include_str!("../../../docs/examples/berth.toml");

fn with(environment: &[(&str, &str)]) -> berth_config::Config {
    berth_config::parse(EXAMPLE, environment.iter().copied()).expect("valid")
}

fn keys(config: &berth_config::Config) -> Vec<&'static str> {
    config.budget_warnings().iter().map(|w| w.key).collect()
}

#[test]
fn the_shipped_example_fits_its_hooks() {
    let config = with(&[]);
    assert_eq!(config.budget_warnings(), []);
    // 30m + 10m + 2m + 10m + 5m + 30m of state deadlines, and the caught-up gate's 30m.
    assert_eq!(config.boot_worst_case(), Duration::from_secs(117 * 60));
    // The wait for a safe stop (5m), Kafka's stop (2m) and five release actions of 2m each.
    assert_eq!(config.drain_worst_case(), Duration::from_secs(17 * 60));
    assert_eq!(config.hook_global_timeout(), Duration::from_secs(60_000));
    let summary = config.budget_summary(Duration::from_secs(300));
    assert!(
        summary.contains("a boot may take up to 1h57m") && summary.contains("TimeoutStopSec=5m"),
        "{summary}"
    );
}

#[test]
fn heartbeats_off_with_a_boot_longer_than_the_hook_is_warned_about() {
    let config = with(&[("BERTH_AWS__AUTOSCALING__HEARTBEAT_INTERVAL", "0s")]);
    let warnings = config.budget_warnings();
    assert_eq!(
        keys(&config),
        [
            "aws.autoscaling.heartbeat_interval",
            "aws.autoscaling.heartbeat_interval"
        ],
        "{warnings:?}"
    );
    assert!(
        warnings[0].message.contains("launch hook")
            && warnings[1].message.contains("terminate hook"),
        "{warnings:?}"
    );
}

#[test]
fn heartbeats_rarer_than_half_the_hook_timeout_are_warned_about() {
    let config = with(&[("BERTH_AWS__AUTOSCALING__HEARTBEAT_INTERVAL", "5m1s")]);
    assert_eq!(keys(&config), ["aws.autoscaling.heartbeat_interval"]);
    let fits = with(&[("BERTH_AWS__AUTOSCALING__HEARTBEAT_INTERVAL", "5m")]);
    assert_eq!(fits.budget_warnings(), []);
}

#[test]
fn a_boot_longer_than_the_global_timeout_is_warned_about() {
    // 100 x 30s = 50m, shorter than the example's 1h 57m boot; the drain (17m) still fits.
    let config = with(&[
        ("BERTH_AWS__AUTOSCALING__HOOK_TIMEOUT", "30s"),
        ("BERTH_AWS__AUTOSCALING__HEARTBEAT_INTERVAL", "10s"),
    ]);
    let warnings = config.budget_warnings();
    assert_eq!(
        keys(&config),
        ["aws.autoscaling.hook_timeout"],
        "{warnings:?}"
    );
    assert!(
        warnings[0].message.contains("global timeout (50m"),
        "{warnings:?}"
    );
    // Without hooks, nothing to fit.
    let unhooked = with(&[
        ("BERTH_AWS__AUTOSCALING__HOOK_TIMEOUT", "30s"),
        ("BERTH_AWS__AUTOSCALING__LAUNCH_HOOK", ""),
        ("BERTH_AWS__AUTOSCALING__TERMINATE_HOOK", ""),
    ]);
    assert_eq!(unhooked.budget_warnings(), []);
}
