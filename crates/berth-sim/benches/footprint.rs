//! bench-footprint: berth's peak RSS (VmHWM from /proc) through boot to Healthy, and the CPU seconds it uses
//! over 60 s of Healthy idling (utime + stime from /proc/<pid>/stat), with production settings (Kafka check and
//! termination poll every 5 s, 6 s ZooKeeper session). `make bench-footprint` runs it on the shipped `dist`
//! build (through BERTHSIM_BIN_DIR); run directly, it uses `target/release/berth` when built.

use std::time::Duration;

use berth_sim::bench;

const IDLE: Duration = Duration::from_secs(60);

fn status_kib(pid: u32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn cpu_ticks(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = text
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| {
        fields
            .get(n)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12) // utime, stime (fields 14 and 15 of stat)
}

fn main() {
    if !bench::can_run("footprint") {
        return;
    }
    // Production intervals while idling (the fleet's own defaults check every second to keep tests fast).
    let berth_env = [
        ("BERTH_KAFKA__CHECK_INTERVAL", "5s"),
        ("BERTH_AWS__TERMINATION_POLL", "5s"),
    ];
    let options = berth_sim::FleetOptions {
        zones: 1,
        brokers: 1,
        // The shipped default (config/berth.toml): ZooKeeper's client ticks and pings scale with it.
        session_timeout: Duration::from_secs(6),
        berth_env: berth_env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..berth_sim::FleetOptions::default()
    };

    let result = berth_sim::with_fleet(options, |fleet| async move {
        let host = fleet.launch(0).await?;
        fleet.wait_healthy(host, Duration::from_secs(60)).await?;
        let pid = fleet
            .host(host)?
            .berth_pid()
            .ok_or_else(|| anyhow::anyhow!("berth not running"))?;
        let boot_hwm = status_kib(pid, "VmHWM:");
        let before = cpu_ticks(pid);
        tokio::time::sleep(IDLE).await;
        let after = cpu_ticks(pid);
        let state = fleet.state(host).await?;
        anyhow::ensure!(
            state.healthy,
            "berth left Healthy while idling: {}",
            state.state
        );
        Ok((
            boot_hwm,
            status_kib(pid, "VmHWM:"),
            status_kib(pid, "VmRSS:"),
            after.saturating_sub(before),
        ))
    });
    match result {
        Ok((boot_hwm, hwm, rss, ticks)) => {
            let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
                .ok()
                .flatten()
                .unwrap_or(100) as f64;
            let cpu = ticks as f64 / hz;
            println!(
                "footprint peak_rss_boot_kib={boot_hwm} peak_rss_kib={hwm} peak_rss_mib={:.1} rss_idle_kib={rss} idle_cpu_s={cpu:.3} idle_s={} cpu_s_per_idle_min={:.3} berth={} {}",
                hwm as f64 / 1024.0,
                IDLE.as_secs(),
                cpu * 60.0 / IDLE.as_secs_f64(),
                bench::berth_profile(),
                berth_testkit::bench::load_field(),
            );
        }
        Err(error) => bench::fail("footprint", &error),
    }
}
