//! Every key refuses its bad values with an error that names the key (what `berth check-config` prints before
//! exiting 78). Each case overrides one key of the shipped example through the environment, the way an operator's
//! drop-in would, or edits the file where the environment cannot express the value.

use berth_config::{parse, ConfigError};

const EXAMPLE: &str = include_str!("../../../docs/examples/berth.toml");

fn refused_env(name: &str, value: &str) -> ConfigError {
    match parse(EXAMPLE, [(name, value)]) {
        Ok(_) => panic!("{name}={value:?} was accepted"),
        Err(error) => error,
    }
}

/// (environment variable, bad value, the key the error must name): every key with the values it refuses.
const BAD_VALUES: &[(&str, &str, &str)] = &[
    ("BERTH_CLUSTER__NAME", "Events", "cluster.name"),
    ("BERTH_CLUSTER__NAME", "-events", "cluster.name"),
    ("BERTH_CLUSTER__BROKER_COUNT", "0", "cluster.broker_count"),
    (
        "BERTH_CLUSTER__BROKER_COUNT",
        "three",
        "cluster.broker_count",
    ),
    (
        "BERTH_CLUSTER__BROKER_COUNT",
        "20000",
        "cluster.broker_count",
    ),
    (
        "BERTH_CLUSTER__KAFKA_CLUSTER_ID",
        " ",
        "cluster.kafka_cluster_id",
    ),
    ("BERTH_TAGS__KEY", " ", "tags.key"),
    ("BERTH_CLAIM__IDS", "0,3", "claim.ids"),
    ("BERTH_CLAIM__IDS", "zero", "claim.ids[0]"),
    ("BERTH_TAGS__ENI", "KAFKA", "tags.eni"),
    ("BERTH_TAGS__ENI", "KAFKA-{id}-{id}", "tags.eni"),
    ("BERTH_TAGS__VOLUME", "KAFKA-*-{id}", "tags.volume"),
    ("BERTH_ZOOKEEPER__CONNECT", "", "zookeeper.connect"),
    (
        "BERTH_ZOOKEEPER__CONNECT",
        "zk1:2181/kafka",
        "zookeeper.connect",
    ),
    ("BERTH_ZOOKEEPER__CONNECT", "zk1", "zookeeper.connect"),
    ("BERTH_ZOOKEEPER__CONNECT", "zk1:0", "zookeeper.connect"),
    (
        "BERTH_ZOOKEEPER__SESSION_TIMEOUT",
        "500ms",
        "zookeeper.session_timeout",
    ),
    (
        "BERTH_ZOOKEEPER__SESSION_TIMEOUT",
        "5",
        "zookeeper.session_timeout",
    ),
    (
        "BERTH_ZOOKEEPER__SESSION_TIMEOUT",
        "2h",
        "zookeeper.session_timeout",
    ),
    ("BERTH_ZOOKEEPER__ROOT", "berth", "zookeeper.root"),
    ("BERTH_ZOOKEEPER__ROOT", "/berth/", "zookeeper.root"),
    ("BERTH_ZOOKEEPER__ROOT", "/a/../b", "zookeeper.root"),
    (
        "BERTH_ZOOKEEPER__KAFKA_CHROOT",
        "kafka",
        "zookeeper.kafka_chroot",
    ),
    ("BERTH_ZOOKEEPER__DIGEST", "justauser", "zookeeper.digest"),
    ("BERTH_ZOOKEEPER__DIGEST", "user:", "zookeeper.digest"),
    (
        "BERTH_AWS__ENDPOINT_URL",
        "localhost:5000",
        "aws.endpoint_url",
    ),
    (
        "BERTH_AWS__IMDS_ENDPOINT",
        "169.254.169.254",
        "aws.imds_endpoint",
    ),
    ("BERTH_AWS__ENI_DEVICE_INDEX", "0", "aws.eni_device_index"),
    ("BERTH_AWS__ENI_DEVICE_INDEX", "32", "aws.eni_device_index"),
    ("BERTH_AWS__ENI_DEVICE_INDEX", "one", "aws.eni_device_index"),
    ("BERTH_AWS__NETWORK_CARD", "16", "aws.network_card"),
    ("BERTH_AWS__VOLUME_DEVICE", "xvdf", "aws.volume_device"),
    ("BERTH_AWS__VOLUME_DEVICE", "/dev/xvda", "aws.volume_device"),
    (
        "BERTH_AWS__VOLUME_DEVICE",
        "/dev/nvme1n1",
        "aws.volume_device",
    ),
    (
        "BERTH_AWS__TAKEOVER_OWNER_STATES",
        "running",
        "aws.takeover_owner_states",
    ),
    (
        "BERTH_AWS__TAKEOVER_OWNER_STATES",
        "shutting-down,stopping",
        "aws.takeover_owner_states",
    ),
    (
        "BERTH_AWS__TAKEOVER_OWNER_STATES",
        "stopped",
        "aws.takeover_owner_states",
    ),
    ("BERTH_AWS__TAKEOVER_WAIT", "10m", "aws.takeover_wait"),
    ("BERTH_AWS__TAKEOVER_WAIT", "later", "aws.takeover_wait"),
    (
        "BERTH_AWS__TERMINATION_POLL",
        "10ms",
        "aws.termination_poll",
    ),
    (
        "BERTH_AWS__CLOUDFORMATION__SIGNAL",
        "maybe",
        "aws.cloudformation.signal",
    ),
    (
        "BERTH_AWS__AUTOSCALING__HEARTBEAT_INTERVAL",
        "500ms",
        "aws.autoscaling.heartbeat_interval",
    ),
    (
        "BERTH_AWS__AUTOSCALING__MARK_UNHEALTHY_AFTER",
        "soon",
        "aws.autoscaling.mark_unhealthy_after",
    ),
    ("BERTH_NETWORK__TABLE", "-1", "network.table"),
    (
        "BERTH_NETWORK__RULE_PRIORITY",
        "high",
        "network.rule_priority",
    ),
    ("BERTH_STORAGE__DEVICE_ROOT", "dev", "storage.device_root"),
    (
        "BERTH_STORAGE__SYS_ROOT",
        "/sys/../proc",
        "storage.sys_root",
    ),
    ("BERTH_STORAGE__MOUNT_PATH", "/", "storage.mount_path"),
    (
        "BERTH_STORAGE__MOUNT_PATH",
        "var/lib/kafka",
        "storage.mount_path",
    ),
    (
        "BERTH_STORAGE__MOUNT_OPTIONS",
        "noatime, nodev",
        "storage.mount_options",
    ),
    ("BERTH_STORAGE__FILESYSTEM", "zfs", "storage.filesystem"),
    (
        "BERTH_STORAGE__FORMAT_BLANK",
        "yes please",
        "storage.format_blank",
    ),
    ("BERTH_STORAGE__LOG_DIRS", "../escape", "storage.log_dirs"),
    ("BERTH_STORAGE__LOG_DIRS", "/abs", "storage.log_dirs"),
    ("BERTH_KAFKA__MODE", "raft", "kafka.mode"),
    ("BERTH_KAFKA__SUPERVISOR", "runit", "kafka.supervisor"),
    ("BERTH_KAFKA__UNIT", "kafka", "kafka.unit"),
    (
        "BERTH_KAFKA__OVERLAY_PATH",
        "berth.properties",
        "kafka.overlay_path",
    ),
    (
        "BERTH_KAFKA__LISTENER_NAME",
        "plaintext",
        "kafka.listener_name",
    ),
    ("BERTH_KAFKA__PORT", "0", "kafka.port"),
    ("BERTH_KAFKA__PORT", "70000", "kafka.port"),
    ("BERTH_KAFKA__QUORUM_VOTERS", "true", "kafka.quorum_voters"),
    ("BERTH_KAFKA__CHECK_INTERVAL", "1ms", "kafka.check_interval"),
    ("BERTH_KAFKA__STOP_TIMEOUT", "0s", "kafka.stop_timeout"),
    (
        "BERTH_AWS__AUTOSCALING__HOOK_TIMEOUT",
        "10s",
        "aws.autoscaling.hook_timeout",
    ),
    (
        "BERTH_AWS__AUTOSCALING__HOOK_TIMEOUT",
        "3h",
        "aws.autoscaling.hook_timeout",
    ),
    (
        "BERTH_KAFKA__HEALTHY_WHEN",
        "registered",
        "kafka.healthy_when",
    ),
    ("BERTH_KAFKA__DRAIN_WAIT", "49h", "kafka.drain_wait"),
    ("BERTH_KAFKA__DRAIN_WAIT", "soon", "kafka.drain_wait"),
    (
        "BERTH_KAFKA__CAUGHT_UP_DEADLINE",
        "0s",
        "kafka.caught_up_deadline",
    ),
    (
        "BERTH_KAFKA__CAUGHT_UP_DEADLINE",
        "49h",
        "kafka.caught_up_deadline",
    ),
    ("BERTH_HEALTH__LISTEN", "9798", "health.listen"),
    (
        "BERTH_STATES__CLAIM__DEADLINE",
        "0s",
        "states.claim.deadline",
    ),
    (
        "BERTH_STATES__ATTACH_ENI__INITIAL_BACKOFF",
        "0s",
        "states.attach_eni.initial_backoff",
    ),
    (
        "BERTH_STATES__ROUTE__MAX_BACKOFF",
        "10m",
        "states.route.max_backoff",
    ),
    (
        "BERTH_STATES__ATTACH_EBS__MAX_BACKOFF",
        "1ms",
        "states.attach_ebs.max_backoff",
    ),
    (
        "BERTH_STATES__MOUNT__DEADLINE",
        "forever",
        "states.mount.deadline",
    ),
    (
        "BERTH_STATES__START_KAFKA__INITIAL_BACKOFF",
        "x",
        "states.start_kafka.initial_backoff",
    ),
];

#[test]
fn every_key_names_itself_when_its_value_is_bad() {
    for (name, value, key) in BAD_VALUES {
        let error = refused_env(name, value);
        assert_eq!(error.key(), Some(*key), "{name}={value:?} gave: {error}");
        let text = error.to_string();
        assert!(
            text.starts_with(&format!("{key}: ")) && text.len() > key.len() + 6,
            "no reason given: {text}"
        );
    }
}

#[test]
fn process_supervisor_needs_a_command() {
    let error = refused_env("BERTH_KAFKA__SUPERVISOR", "process");
    assert_eq!(error.key(), Some("kafka.command"), "{error}");
}

#[test]
fn unknown_keys_and_missing_sections_are_named() {
    let typo = EXAMPLE.replace("session_timeout = \"6s\"", "session_timeuot = \"6s\"");
    let error = parse(&typo, []).unwrap_err();
    assert_eq!(error.key(), Some("zookeeper.session_timeuot"), "{error}");
    assert!(error.to_string().contains("session_timeuot"), "{error}");

    let error = parse("[cluster]\nname = \"a\"\nbroker_count = 3\n", []).unwrap_err();
    assert!(error.to_string().contains("zookeeper"), "{error}");

    let error = parse("[cluster\nname = 1", []).unwrap_err();
    assert_eq!(error.key(), Some("(file)"), "{error}");
}

#[test]
fn digest_is_never_printed() {
    let config = parse(EXAMPLE, [("BERTH_ZOOKEEPER__DIGEST", "berth:s3cret")]).unwrap();
    assert_eq!(config.zookeeper.digest.expose(), "berth:s3cret");
    assert!(!config.to_toml().contains("s3cret"));
    let debug = format!("{config:?} {:#?}", config.zookeeper);
    assert!(
        !debug.contains("s3cret") && debug.contains("digest: <redacted>"),
        "{debug}"
    );
}

#[test]
fn kraft_mode_needs_a_cluster_id_in_kafkas_form() {
    let error = refused_env("BERTH_KAFKA__MODE", "kraft");
    assert_eq!(error.key(), Some("cluster.kafka_cluster_id"), "{error}");
    assert!(error.to_string().contains("required"), "{error}");

    let kraft = |id: &str| {
        parse(
            EXAMPLE,
            [
                ("BERTH_KAFKA__MODE", "kraft"),
                ("BERTH_CLUSTER__KAFKA_CLUSTER_ID", id),
            ],
        )
    };
    // What `kafka-storage.sh random-uuid` prints is accepted, and is what the storage tool is given.
    let config = kraft("MkU3OEVBNTcwNTJENDM2Qg").expect("a Kafka cluster id");
    assert_eq!(
        config.cluster.kafka_cluster_id.as_deref(),
        Some("MkU3OEVBNTcwNTJENDM2Qg")
    );
    assert_eq!(
        config.kafka.format_command,
        berth_config::DEFAULT_FORMAT_COMMAND
    );
    for bad in [
        " ",
        "bad+id",
        "MkU3OEVBNTcwNTJENDM2Q",    // 21 characters
        "MkU3OEVBNTcwNTJENDM2Qg==", // padded
        "MkU3OEVBNTcwNTJENDM2Q/",   // not base64url
        "MkU3OEVBNTcwNTJENDM2Qh",   // stray bits: not 16 bytes
        "-kU3OEVBNTcwNTJENDM2Qg",   // Kafka never generates these: tools would read an option
    ] {
        let error = kraft(bad).expect_err(bad);
        assert_eq!(
            error.key(),
            Some("cluster.kafka_cluster_id"),
            "{bad}: {error}"
        );
    }
    // Set in ZooKeeper mode, it is checked the same way (Kafka generates it the same way there).
    let error = refused_env("BERTH_CLUSTER__KAFKA_CLUSTER_ID", "ClusterOne");
    assert_eq!(error.key(), Some("cluster.kafka_cluster_id"), "{error}");
}

#[test]
fn kraft_mode_needs_a_format_command_and_an_absolute_server_properties() {
    let kraft = |name: &str, value: &str| {
        parse(
            EXAMPLE,
            [
                ("BERTH_KAFKA__MODE", "kraft"),
                ("BERTH_CLUSTER__KAFKA_CLUSTER_ID", "MkU3OEVBNTcwNTJENDM2Qg"),
                (name, value),
            ],
        )
    };
    let error = kraft("BERTH_KAFKA__FORMAT_COMMAND", "").unwrap_err();
    assert_eq!(error.key(), Some("kafka.format_command"), "{error}");
    let error = kraft("BERTH_KAFKA__SERVER_PROPERTIES", "server.properties").unwrap_err();
    assert_eq!(error.key(), Some("kafka.server_properties"), "{error}");
    let config = kraft(
        "BERTH_KAFKA__FORMAT_COMMAND",
        "runuser,-u,kafka,--,/opt/kafka/bin/kafka-storage.sh,format",
    )
    .unwrap();
    assert_eq!(config.kafka.format_command.len(), 6);
}

#[test]
fn claim_backend_defaults_by_kafka_mode_and_refuses_unknown_values() {
    use berth_config::ClaimBackend;
    let zookeeper_mode = parse(EXAMPLE, []).unwrap();
    assert_eq!(zookeeper_mode.claim_backend(), ClaimBackend::Zookeeper);

    // KRaft with no [zookeeper] section at all: claims are EC2's, nothing asks for ZooKeeper.
    let kraft = "[cluster]\nname = \"events\"\nbroker_count = 3\nkafka_cluster_id = \"MkU3OEVBNTcwNTJENDM2Qg\"\n\
                 [kafka]\nmode = \"kraft\"\n";
    let config = parse(kraft, []).expect("KRaft needs no ZooKeeper");
    assert_eq!(config.claim_backend(), ClaimBackend::Ec2);
    assert!(
        config.to_toml().contains("backend = \"ec2\""),
        "the effective configuration names the backend: {}",
        config.to_toml()
    );
    assert_eq!(parse(&config.to_toml(), []).unwrap(), config);

    // KRaft with the ZooKeeper backend asked for, but no ensemble: the key that is missing is named.
    let error = parse(kraft, [("BERTH_CLAIM__BACKEND", "zookeeper")]).unwrap_err();
    assert_eq!(error.key(), Some("zookeeper.connect"), "{error}");
    assert!(error.to_string().contains("claim.backend"), "{error}");

    // ZooKeeper-mode Kafka still needs the ensemble with the ec2 backend (Kafka's metadata lives there).
    let error = parse(
        &EXAMPLE.replace("connect = \"10.0.1.10", "connect = \"\"#"),
        [("BERTH_CLAIM__BACKEND", "ec2")],
    )
    .unwrap_err();
    assert_eq!(error.key(), Some("zookeeper.connect"), "{error}");
    assert!(error.to_string().contains("kafka.mode"), "{error}");

    for bad in ["etcd", "EC2", ""] {
        let error = refused_env("BERTH_CLAIM__BACKEND", bad);
        assert_eq!(error.key(), Some("claim.backend"), "{bad:?}: {error}");
        assert!(error.to_string().contains("ec2"), "{bad:?}: {error}");
    }
}

#[test]
fn controller_ids_must_be_broker_ids_in_kraft_mode() {
    let kraft = |ids: &str| {
        parse(
            EXAMPLE,
            [
                ("BERTH_KAFKA__MODE", "kraft"),
                ("BERTH_CLUSTER__KAFKA_CLUSTER_ID", "MkU3OEVBNTcwNTJENDM2Qg"),
                ("BERTH_KAFKA__CONTROLLER_IDS", ids),
            ],
        )
    };
    assert_eq!(kraft("0,2").unwrap().kafka.controller_ids, vec![0, 2]);
    let error = kraft("0,3").unwrap_err();
    assert_eq!(error.key(), Some("kafka.controller_ids"), "{error}");
    assert!(
        error.to_string().contains("3 is not a broker id"),
        "{error}"
    );
    // ZooKeeper mode has no controllers (a list: one id alone would be refused as the wrong type).
    let error = refused_env("BERTH_KAFKA__CONTROLLER_IDS", "0,1");
    assert_eq!(error.key(), Some("kafka.controller_ids"), "{error}");
    assert!(error.to_string().contains("only applies"), "{error}");
}

#[test]
fn static_voters_come_only_from_the_controller_ids() {
    let kraft = |extra: &[(&'static str, &'static str)]| {
        let mut env = vec![
            ("BERTH_KAFKA__MODE", "kraft"),
            ("BERTH_CLUSTER__KAFKA_CLUSTER_ID", "MkU3OEVBNTcwNTJENDM2Qg"),
            ("BERTH_KAFKA__QUORUM_VOTERS", "true"),
        ];
        env.extend_from_slice(extra);
        parse(EXAMPLE, env)
    };
    let error = kraft(&[]).unwrap_err();
    assert_eq!(error.key(), Some("kafka.controller_ids"), "{error}");
    assert!(
        error
            .to_string()
            .contains("must list the controller ids when kafka.quorum_voters is on"),
        "{error}"
    );
    let config = kraft(&[("BERTH_KAFKA__CONTROLLER_IDS", "0,1,2")]).unwrap();
    assert_eq!(config.kafka.controller_ids, vec![0, 1, 2]);
}

#[test]
fn a_transient_format_unit_must_be_named() {
    let kraft = |command: &'static str| {
        parse(
            EXAMPLE,
            [
                ("BERTH_KAFKA__MODE", "kraft"),
                ("BERTH_CLUSTER__KAFKA_CLUSTER_ID", "MkU3OEVBNTcwNTJENDM2Qg"),
                ("BERTH_KAFKA__FORMAT_COMMAND", command),
            ],
        )
    };
    let error =
        kraft("systemd-run,--wait,--pipe,/opt/kafka/bin/kafka-storage.sh,format").unwrap_err();
    assert_eq!(error.key(), Some("kafka.format_command"), "{error}");
    assert!(error.to_string().contains("--unit=NAME"), "{error}");
    let named =
        kraft("/usr/bin/systemd-run,-u,fmt,--wait,/opt/kafka/bin/kafka-storage.sh,format").unwrap();
    assert_eq!(
        berth_config::transient_unit(&named.kafka.format_command),
        Ok(Some("fmt".into()))
    );
    // Not systemd-run: the tool runs as berth's child, no unit.
    let child = kraft("/opt/kafka/bin/kafka-storage.sh,format").unwrap();
    assert_eq!(
        berth_config::transient_unit(&child.kafka.format_command),
        Ok(None)
    );
    // The default names its unit.
    let default =
        kraft("systemd-run,--unit=berth-kafka-format,--wait,kafka-storage.sh,format").unwrap();
    assert_eq!(
        berth_config::transient_unit(&default.kafka.format_command),
        Ok(Some("berth-kafka-format".into()))
    );
    assert!(berth_config::DEFAULT_FORMAT_COMMAND.contains(&"--unit=berth-kafka-format"));
}

#[test]
fn lower_bounds_and_kraft_only_keys_say_why() {
    let cases = [
        (
            "BERTH_AWS__TERMINATION_POLL",
            "99ms",
            "aws.termination_poll: must be at least 100ms",
        ),
        (
            "BERTH_KAFKA__CHECK_INTERVAL",
            "99ms",
            "kafka.check_interval: must be at least 100ms",
        ),
        (
            "BERTH_KAFKA__STOP_TIMEOUT",
            "999ms",
            "kafka.stop_timeout: must be at least 1s",
        ),
        (
            "BERTH_KAFKA__QUORUM_VOTERS",
            "true",
            "kafka.quorum_voters: only applies when kafka.mode = \"kraft\"",
        ),
        (
            "BERTH_KAFKA__CONTROLLER_IDS",
            "0,1",
            "kafka.controller_ids: only applies when kafka.mode = \"kraft\"",
        ),
    ];
    for (name, value, message) in cases {
        assert_eq!(
            refused_env(name, value).to_string(),
            message,
            "{name}={value:?}"
        );
    }
    for (name, value) in [
        ("BERTH_AWS__TERMINATION_POLL", "100ms"),
        ("BERTH_KAFKA__CHECK_INTERVAL", "100ms"),
        ("BERTH_KAFKA__STOP_TIMEOUT", "1s"),
    ] {
        assert!(
            parse(EXAMPLE, [(name, value)]).is_ok(),
            "{name}={value:?} was refused"
        );
    }
}

#[test]
fn optional_paths_and_urls_may_be_empty_required_ones_may_not() {
    for empty in ["kafka_chroot = \"\"", "endpoint_url = \"\""] {
        assert!(EXAMPLE.contains(empty), "the example no longer has {empty}");
    }
    parse(EXAMPLE, []).expect("the example, with its empty optional settings, parses");
    for (from, to, key) in [
        ("root = \"/berth\"", "root = \"\"", "zookeeper.root"),
        (
            "imds_endpoint = \"http://169.254.169.254\"",
            "imds_endpoint = \"\"",
            "aws.imds_endpoint",
        ),
    ] {
        assert!(EXAMPLE.contains(from), "the example has no {from}");
        let error = parse(&EXAMPLE.replace(from, to), []).unwrap_err();
        assert_eq!(error.key(), Some(key), "{error}");
    }
}
