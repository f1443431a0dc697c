//! The shared ZooKeeper harness itself (berth_testkit::zk): a chosen bind address, a command prefix (as a
//! simulated fleet uses `ip netns exec <ns>`), leader kill and restart, and the black-hole proxy.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::time::Duration;

use berth_testkit::zk::{BlackHoleProxy, Mode, ZkOptions, ZooKeeper};

#[test]
fn prefix_and_bind_address_are_honoured() {
    let bind = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let options = ZkOptions {
        bind,
        command_prefix: vec!["env".into(), "LC_ALL=C".into()],
        ..ZkOptions::default()
    };
    let server = ZooKeeper::start(options).expect("start through a prefix");
    assert_eq!(server.client_address(0).ip(), bind);
    assert!(server.connect_string().starts_with("127.0.0.2:"));
    // The probe went through the prefix (bash /dev/tcp); the direct one agrees.
    assert_eq!(server.mode(0), Some(Mode::Standalone));
    let direct =
        berth_testkit::zk::four_letter_word(server.client_address(0), "srvr", &[]).expect("srvr");
    assert!(direct.contains("Mode: standalone"), "{direct}");
    let pid = server.pid(0).expect("running");
    drop(server);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "killed by PID on drop"
    );
}

#[test]
fn leader_is_found_killed_and_restarted() {
    let ensemble = ZooKeeper::ensemble(3).expect("start a 3-node ensemble");
    let leader = ensemble.leader().expect("a leader");
    ensemble.kill(leader);
    assert_eq!(ensemble.mode(leader), None);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let new_leader = loop {
        if let Some(found) = ensemble.leader() {
            break found;
        }
        assert!(std::time::Instant::now() < deadline, "no new leader");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_ne!(new_leader, leader);
    assert_eq!(ensemble.restart(leader).expect("restart"), Mode::Follower);
}

#[test]
fn black_hole_proxy_holds_bytes_until_resumed() {
    let server = ZooKeeper::standalone().expect("start ZooKeeper");
    let proxy = BlackHoleProxy::start(server.client_address(0)).expect("proxy");
    let ask = || {
        let mut stream = TcpStream::connect(proxy.address()).expect("connect to the proxy");
        stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        stream.write_all(b"ruok").unwrap();
        stream
    };
    let mut answer = String::new();
    ask()
        .read_to_string(&mut answer)
        .expect("answer through the proxy");
    assert_eq!(answer, "imok");

    proxy.pause();
    let mut held = ask();
    let mut buffer = [0u8; 4];
    let error = held
        .read(&mut buffer)
        .expect_err("nothing comes back while paused");
    assert!(
        matches!(
            error.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{error}"
    );
    proxy.resume();
    held.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = String::new();
    held.read_to_string(&mut answer)
        .expect("held bytes delivered after resume");
    assert_eq!(answer, "imok");
}
