//! The standard `process_*` metrics of the Prometheus client libraries ("Writing client libraries", process
//! metrics: `process_cpu_seconds_total`, `process_open_fds`, `process_max_fds`, `process_virtual_memory_bytes`,
//! `process_resident_memory_bytes`, `process_start_time_seconds`, plus `process_threads`), read from `/proc/self`
//! at each scrape. `prometheus-client` leaves these to the application; this is Linux's reading of them, as the
//! Go client's `processCollector` makes it.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

/// Encodes this process's metrics at each scrape; what cannot be read is left out (and logged at debug).
#[derive(Debug)]
pub struct ProcessCollector;

/// One reading of `/proc/self`.
#[derive(Debug, Clone, PartialEq)]
struct Reading {
    cpu_seconds: f64,
    start_time_seconds: f64,
    virtual_bytes: f64,
    resident_bytes: f64,
    threads: f64,
    open_fds: f64,
    max_fds: Option<f64>,
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let reading = match read() {
            Ok(reading) => reading,
            Err(error) => {
                tracing::debug!(%error, "cannot read this process's metrics from /proc/self");
                return Ok(());
            }
        };
        let metric = encoder.encode_descriptor(
            "process_cpu",
            "Total user and system CPU time spent in seconds.",
            Some(&Unit::Seconds),
            MetricType::Counter,
        )?;
        ConstCounter::new(reading.cpu_seconds).encode(metric)?;
        let mut gauges = vec![
            (
                "process_start_time",
                "Start time of the process since unix epoch in seconds.",
                Some(Unit::Seconds),
                reading.start_time_seconds,
            ),
            (
                "process_virtual_memory",
                "Virtual memory size in bytes.",
                Some(Unit::Bytes),
                reading.virtual_bytes,
            ),
            (
                "process_resident_memory",
                "Resident memory size in bytes.",
                Some(Unit::Bytes),
                reading.resident_bytes,
            ),
            (
                "process_threads",
                "Number of OS threads in the process.",
                None,
                reading.threads,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                None,
                reading.open_fds,
            ),
        ];
        if let Some(max) = reading.max_fds {
            gauges.push((
                "process_max_fds",
                "Maximum number of open file descriptors.",
                None,
                max,
            ));
        }
        for (name, help, unit, value) in gauges {
            let metric = encoder.encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?;
            ConstGauge::new(value).encode(metric)?;
        }
        Ok(())
    }
}

fn read() -> std::io::Result<Reading> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let status = std::fs::read_to_string("/proc/self/status")?;
    let boot = std::fs::read_to_string("/proc/stat")?;
    let limits = std::fs::read_to_string("/proc/self/limits")?;
    let open_fds = std::fs::read_dir("/proc/self/fd")?.count();
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|ticks| *ticks > 0)
        .ok_or_else(|| std::io::Error::other("sysconf(_SC_CLK_TCK) gave nothing"))?;
    // One fewer: read_dir's own descriptor is open while it lists.
    parse(
        &stat,
        &status,
        &boot,
        &limits,
        open_fds.saturating_sub(1),
        ticks as f64,
    )
    .ok_or_else(|| std::io::Error::other("unexpected /proc format"))
}

/// The reading from the texts of `/proc/self/stat`, `/proc/self/status`, `/proc/stat` and `/proc/self/limits`
/// (proc(5)), with `ticks` clock ticks per second.
fn parse(
    stat: &str,
    status: &str,
    boot: &str,
    limits: &str,
    open_fds: usize,
    ticks: f64,
) -> Option<Reading> {
    // The command name (field 2) is in parentheses and may hold spaces: fields are counted after its end.
    let after_name: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    // Field n of proc(5) is after_name[n - 3]: utime 14, stime 15, num_threads 20, starttime 22.
    let field = |n: usize| after_name.get(n - 3)?.parse::<f64>().ok();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .map(|kib| kib * 1024.0)
    };
    let boot_time = boot
        .lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|value| value.trim().parse::<f64>().ok())?;
    let max_fds = limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok());
    Some(Reading {
        cpu_seconds: (field(14)? + field(15)?) / ticks,
        start_time_seconds: boot_time + field(22)? / ticks,
        virtual_bytes: kib("VmSize:")?,
        resident_bytes: kib("VmRSS:")?,
        threads: field(20)?,
        open_fds: open_fds as f64,
        max_fds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_texts_are_read_as_proc5_describes_them() {
        let stat =
            "4242 (berth run (x)) S 1 4242 4242 0 -1 4194560 1500 0 0 0 250 50 0 0 20 0 3 0 \
                    123400 41943040 2048 18446744073709551615";
        let status = "Name:\tberth\nVmSize:\t   40960 kB\nVmRSS:\t    8192 kB\nThreads:\t3\n";
        let boot = "cpu  1 2 3\nbtime 1764580000\nprocesses 9\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            1024                 524288               files     \n";
        let reading = parse(stat, status, boot, limits, 9, 100.0).unwrap();
        assert_eq!(
            reading,
            Reading {
                cpu_seconds: 3.0,
                start_time_seconds: 1_764_580_000.0 + 1234.0,
                virtual_bytes: 40960.0 * 1024.0,
                resident_bytes: 8192.0 * 1024.0,
                threads: 3.0,
                open_fds: 9.0,
                max_fds: Some(1024.0),
            }
        );
        assert_eq!(parse("garbage", status, boot, limits, 0, 100.0), None);
    }

    #[test]
    fn this_process_reads_sensibly() {
        let reading = read().unwrap();
        assert!(reading.resident_bytes > 0.0 && reading.virtual_bytes >= reading.resident_bytes);
        assert!(reading.threads >= 1.0 && reading.open_fds >= 3.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            reading.start_time_seconds <= now + 1.0
                && reading.start_time_seconds > now - 86_400.0 * 365.0
        );
    }
}
