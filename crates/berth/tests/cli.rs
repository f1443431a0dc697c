//! The binary's edge: `berth check-config` prints the effective configuration or exits 78 (EX_CONFIG) naming the
//! key; `berth run` refuses a bad configuration the same way before touching anything; `berth status` and
//! `berth drain` say when the daemon cannot be reached; `berth drain` signals only a process that is berth.

use std::process::{Command, Output};

const BERTH: &str = env!("CARGO_BIN_EXE_berth");

/// Runs the berth binary with `args` in an empty environment plus `env`.
fn berth(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BERTH)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("run berth")
}

fn example() -> String {
    format!("{}/../../config/berth.toml", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn check_config_accepts_the_shipped_example() {
    let output = berth(&["check-config", &example()], &[]);
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
    let output = berth(&["check-config", &bad.display().to_string()], &[]);
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
    let output = berth(
        &["check-config", &example()],
        &[("BERTH_ZOOKEEPER__SESSION_TIMEOUT", "100ms")],
    );
    assert_eq!(output.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&output.stderr).contains("zookeeper.session_timeout"));
}

#[test]
fn run_refuses_a_bad_config_with_78_before_doing_anything() {
    let output = berth(&["run", "--config", "/nonexistent/berth.toml"], &[]);
    assert_eq!(output.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/berth.toml"));
}

#[test]
fn status_and_drain_report_an_unreachable_daemon() {
    for command in ["status", "drain"] {
        let port = berth_testkit::free_port();
        let output = berth(&[command, "--address", &format!("127.0.0.1:{port}")], &[]);
        assert_eq!(output.status.code(), Some(3), "{command}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("cannot reach the daemon"),
            "{command}"
        );
    }
}

/// A `/state` naming a process that is not berth (this test's own) is refused, and nothing is signalled: this
/// test process would die of SIGUSR1's default action if it were.
#[test]
fn drain_signals_only_a_berth_process() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let body = format!(
        "{{\"version\":\"0\",\"state\":\"healthy\",\"healthy\":true,\"claim\":\"held\",\"broker_id\":0,\
         \"instance_id\":null,\"availability_zone\":null,\"eni\":null,\"route_table\":null,\"volume\":null,\
         \"listener\":null,\"timeline\":[],\"time_to_healthy_ms\":null,\"last_error\":null,\"failure\":null,\
         \"drain_reason\":null,\"transitions\":0,\"retries\":0,\"uptime_ms\":1,\"pid\":{}}}",
        std::process::id()
    );
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut head = [0u8; 1024];
            let _ = stream.read(&mut head);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let output = berth(&["drain", "--address", &address.to_string()], &[]);
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("not berth; refusing to signal it"),
        "{stderr}"
    );
}
