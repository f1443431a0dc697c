//! The shipped example configuration parses, and environment overrides apply.

use std::time::Duration;

const EXAMPLE: &str = include_str!("../../../docs/examples/berth.toml");

#[test]
fn shipped_example_is_valid() {
    let config = berth_config::parse(EXAMPLE, []).expect("config/berth.toml must be valid");
    assert_eq!(config.cluster.name, "events");
    assert_eq!(config.claims_path(), "/berth/events/claims");
    assert_eq!(
        config.claimable_ids().len(),
        config.cluster.broker_count as usize
    );
    let controllers =
        berth_config::parse(EXAMPLE, [("BERTH_CLAIM__IDS", "0,2")]).expect("claim.ids 0,2");
    assert_eq!(
        controllers.claimable_ids(),
        [berth_core::BrokerId(0), berth_core::BrokerId(2)]
    );
    assert_eq!(config.machine_settings().routing.default_number(), 10_001);
}

#[test]
fn environment_overrides_file() {
    let config = berth_config::parse(
        EXAMPLE,
        [
            ("BERTH_ZOOKEEPER__CONNECT", "127.0.0.1:2181"),
            ("BERTH_ZOOKEEPER__SESSION_TIMEOUT", "4s"),
            ("BERTH_CLUSTER__BROKER_COUNT", "12"),
            ("BERTH_STORAGE__LOG_DIRS", "a,b"),
            ("OTHER_THING", "ignored"),
            ("BERTH_LOG", "debug"),
        ],
    )
    .unwrap();
    assert_eq!(config.zookeeper.connect, "127.0.0.1:2181");
    assert_eq!(config.zookeeper.session_timeout, Duration::from_secs(4));
    assert_eq!(config.cluster.broker_count, 12);
    assert_eq!(
        config.storage.log_dirs,
        vec![std::path::PathBuf::from("a"), "b".into()]
    );
}

#[test]
fn effective_config_round_trips_through_toml() {
    let config = berth_config::parse(EXAMPLE, []).unwrap();
    let rendered = config.to_toml();
    let again = berth_config::parse(&rendered, []).expect("rendered config must parse");
    assert_eq!(config, again);
}
