//! The binary's edge: `berth check-config` prints the effective configuration or exits 78 (EX_CONFIG) naming the
//! key; `berth run` refuses a bad configuration the same way before touching anything; `berth status` says when
//! the daemon cannot be reached.

use std::process::Command;

const BERTH: &str = env!("CARGO_BIN_EXE_berth");

fn example() -> String {
    format!("{}/../../config/berth.toml", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn check_config_accepts_the_shipped_example() {
    let output = Command::new(BERTH)
        .args(["check-config", &example()])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        printed.contains("[zookeeper]") && printed.contains("session_timeout = \"6s\""),
        "{printed}"
    );
    let reparsed: String = printed
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    berth_config::parse(&reparsed, []).expect("the printed configuration parses again");
}

#[test]
fn check_config_exits_78_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("berth.toml");
    let text = std::fs::read_to_string(example())
        .unwrap()
        .replace("eni_device_index = 1", "eni_device_index = 0");
    std::fs::write(&bad, text).unwrap();
    let output = Command::new(BERTH)
        .arg("check-config")
        .arg(&bad)
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("aws.eni_device_index") && stderr.contains("between 1 and 31"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn environment_override_is_validated_too() {
    let output = Command::new(BERTH)
        .args(["check-config", &example()])
        .env_clear()
        .env("BERTH_ZOOKEEPER__SESSION_TIMEOUT", "100ms")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&output.stderr).contains("zookeeper.session_timeout"));
}

#[test]
fn run_refuses_a_bad_config_with_78_before_doing_anything() {
    let output = Command::new(BERTH)
        .args(["run", "--config", "/nonexistent/berth.toml"])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/berth.toml"));
}

#[test]
fn status_reports_an_unreachable_daemon() {
    let port = berth_testkit::free_port();
    let output = Command::new(BERTH)
        .args(["status", "--address", &format!("127.0.0.1:{port}")])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot reach the daemon"));
}
