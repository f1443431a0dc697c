//! The binary's edge: `berth check-config` prints the effective configuration with each value's source or exits
//! 78 (EX_CONFIG) naming the key; every subcommand reads the same sources as `berth run`, the environment file
//! included; the packaged configuration fails until its required keys are set, saying what to set; `berth run`
//! refuses a bad configuration before touching anything; `berth status` and `berth drain` say when the daemon
//! cannot be reached; `berth drain` signals only a process that is berth.

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

/// The standard output of a run that exited 0 (else the test fails showing its standard error).
fn succeeded(output: &Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn example() -> String {
    format!(
        "{}/../../docs/examples/berth.toml",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// The configuration file the package installs.
fn packaged() -> String {
    format!("{}/../../config/berth.toml", env!("CARGO_MANIFEST_DIR"))
}

/// An environment file with `text` in a temporary directory.
fn env_file(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("environment");
    std::fs::write(&path, text).unwrap();
    let path = path.display().to_string();
    (dir, path)
}

/// Serves `body` as every answer on a loopback port (a stand-in for a daemon's `/state`), forever.
fn serve_state(body: String) -> std::net::SocketAddr {
    serve_states(vec![body])
}

/// Serves `bodies` in turn, one per request, the last one for good (a daemon going through states).
fn serve_states(bodies: Vec<String>) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for (answered, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { return };
            let mut head = [0u8; 1024];
            let _ = stream.read(&mut head);
            let body = &bodies[answered.min(bodies.len() - 1)];
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    address
}

/// A `/state` document naming `pid`.
fn state_document(pid: u32) -> String {
    format!(
        "{{\"version\":\"0\",\"state\":\"healthy\",\"healthy\":true,\"claim\":\"held\",\"broker_id\":0,\
         \"instance_id\":null,\"availability_zone\":null,\"eni\":null,\"route_table\":null,\"volume\":null,\
         \"listener\":null,\"timeline\":[],\"time_to_healthy_ms\":null,\"last_error\":null,\"failure\":null,\
         \"drain_reason\":null,\"transitions\":0,\"retries\":0,\"uptime_ms\":1,\"pid\":{pid}}}"
    )
}

#[test]
fn every_subcommand_reads_the_environment_file() {
    let (_dir, env) = env_file("# written by user data\nBERTH_AWS__ENI_DEVICE_INDEX=0\n");
    let config = example();
    for command in ["run", "check-config", "plan", "status", "drain"] {
        let output = berth(&[command, "--config", &config, "--env-file", &env], &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(78), "{command}: {stderr}");
        assert!(
            stderr.contains("aws.eni_device_index")
                && stderr.contains(&format!("set by BERTH_AWS__ENI_DEVICE_INDEX in {env}")),
            "{command}: {stderr}"
        );
    }
    // The process environment comes last, as under systemd's Environment= and in an operator's shell.
    let output = berth(
        &["check-config", &config, "--env-file", &env],
        &[("BERTH_AWS__ENI_DEVICE_INDEX", "2")],
    );
    let stdout = succeeded(&output);
    assert!(
        stdout
            .lines()
            .any(|line| line.starts_with("eni_device_index = 2 ")
                && line.ends_with("# BERTH_AWS__ENI_DEVICE_INDEX in the process environment")),
        "{stdout}"
    );
    let output = berth(
        &[
            "plan",
            "--config",
            &config,
            "--env-file",
            "/nonexistent/environment",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/environment"));
}

#[test]
fn status_finds_the_daemon_where_the_environment_file_puts_it() {
    let address = serve_state(state_document(1));
    let (_dir, env) = env_file(&format!("BERTH_HEALTH__STATE_LISTEN={address}\n"));
    let output = berth(&["status", "--config", &example(), "--env-file", &env], &[]);
    let stdout = succeeded(&output);
    assert!(
        stdout.contains("state:       healthy (HEALTHY)"),
        "{stdout}"
    );
}

#[test]
fn the_packaged_configuration_says_what_to_set_then_shows_where_each_value_came_from() {
    let (_dir, empty) = env_file("");
    let output = berth(&["check-config", &packaged(), "--env-file", &empty], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("cluster.name: not set")
            && stderr.contains("under [cluster]")
            && stderr.contains("BERTH_CLUSTER__NAME="),
        "{stderr}"
    );
    let (_dir, partial) = env_file("BERTH_CLUSTER__NAME=events\nBERTH_CLUSTER__BROKER_COUNT=3\n");
    let output = berth(&["check-config", &packaged(), "--env-file", &partial], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("zookeeper.connect: not set")
            && stderr.contains("BERTH_ZOOKEEPER__CONNECT="),
        "{stderr}"
    );
    let (_dir, complete) = env_file(
        "BERTH_CLUSTER__NAME=events\nBERTH_CLUSTER__BROKER_COUNT=3\n\
         BERTH_ZOOKEEPER__CONNECT=\"10.0.1.10:2181,10.0.2.10:2181\"\n",
    );
    let output = berth(&["check-config", &packaged(), "--env-file", &complete], &[]);
    let stdout = succeeded(&output);
    let line = |key: &str| {
        stdout
            .lines()
            .find(|line| line.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no {key} in {stdout}"))
    };
    assert!(line("name").ends_with(&format!("# BERTH_CLUSTER__NAME in {complete}")));
    assert!(line("connect").contains("\"10.0.1.10:2181,10.0.2.10:2181\""));
    assert!(line("format_blank").ends_with("# default"), "{stdout}");
    assert!(
        line("backend").ends_with("# default, from kafka.mode"),
        "{stdout}"
    );
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
    let address = serve_state(state_document(std::process::id()));
    let output = berth(&["drain", "--address", &address.to_string()], &[]);
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("not berth; refusing to signal it"),
        "{stderr}"
    );
}

/// `berth status --watch` prints a line each time the state or what it waits for changes, and nothing while it
/// stays the same (the daemon here answers each read with its next document).
#[test]
fn status_watch_follows_the_states_as_they_change() {
    use std::io::BufRead;
    let document = |state: &str, adjust: &dyn Fn(&mut berth_state::StateView)| {
        let mut view = berth_state::StateView::empty();
        view.state = state.into();
        adjust(&mut view);
        serde_json::to_string(&view).unwrap()
    };
    let waiting = |reason: &str| {
        let reason = reason.to_owned();
        move |view: &mut berth_state::StateView| {
            view.broker_id = Some(0);
            view.waiting = Some(berth_state::WaitingView {
                step: "attach_eni".into(),
                reason: reason.clone(),
                for_ms: 1_000,
            })
        }
    };
    let attaching = document("attach_eni", &waiting("attaching to i-1"));
    let healthy = document("healthy", &|view| view.broker_id = Some(0));
    let address = serve_states(vec![
        attaching.clone(),
        attaching,
        document("attach_eni", &waiting("attached; waiting for the link")),
        healthy,
    ]);
    let mut child = Command::new(BERTH)
        .args(["status", "--watch", "--address", &address.to_string()])
        .env_clear()
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let _ = lines_tx.send(line.unwrap_or_default());
        }
    });
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match lines.recv_timeout(std::time::Duration::from_secs(20)) {
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    // Nothing more: the last document repeats.
    let more = lines.recv_timeout(std::time::Duration::from_millis(2_500));
    child.kill().unwrap();
    let _ = child.wait();
    let said: Vec<&str> = seen
        .iter()
        .map(|line| {
            line.split_once("s  ")
                .map_or(line.as_str(), |(_, rest)| rest)
        })
        .collect();
    assert_eq!(
        said,
        [
            "attach_eni broker 0: waiting: attaching to i-1",
            "attach_eni broker 0: waiting: attached; waiting for the link",
            "healthy broker 0",
        ],
        "{seen:?}"
    );
    assert!(seen.iter().all(|line| line.starts_with('+')), "{seen:?}");
    assert!(more.is_err(), "a line while nothing changed: {more:?}");
}
