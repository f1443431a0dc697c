//! A producer that keeps writing while something happens to the cluster (a roll, a replacement): kcat with
//! `acks=all` and idempotence reading numbered records ([`super::record_key`], [`super::record_value`]) from a
//! pipe at a steady rate, with what went wrong counted from what librdkafka itself says.
//!
//! Three counts, all read from kcat's stderr (librdkafka's `msg` debug context and kcat's verbosity 3 on), never
//! assumed:
//!
//! * **delivered**: records whose delivery report is a success ("Message delivered to partition P (offset O)"),
//!   with the partition and offset Kafka acknowledged. Only these are records an application was told are
//!   written; a record handed to kcat without any report (still queued when kcat exited) is neither.
//! * **failed produces**: records whose delivery report is an error ("Delivery failed for message: ..."), i.e.
//!   librdkafka gave up on them (retries exhausted or `message.timeout.ms` passed). An application would have
//!   seen these writes fail.
//! * **produce request errors**: every error a broker answered a ProduceRequest with ("MessageSet with N
//!   message(s) ... encountered error: <error> (actions ...)"), retried or not. A retried request that then
//!   succeeded loses nothing, but the count shows the cluster refused writes for a while (e.g. "Not enough
//!   in-sync replicas" while fewer than `min.insync.replicas` replicas were in sync).
//!
//! A consume afterwards ([`super::Client::consume`] with [`ProduceReport::sent`]) finds lost or duplicated
//! records.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{record_key, record_value, Client, KafkaHarnessError, Result};

/// librdkafka's words for a ProduceRequest answered with an error (debug context `msg`).
const REQUEST_ERROR: &str = "encountered error: ";
/// kcat's words for a record whose delivery report is an error.
const DELIVERY_FAILED: &str = "Delivery failed for message";
/// kcat's words (at verbosity 3) for a record whose delivery report is a success: the partition and offset.
const DELIVERED: &str = "Message delivered to partition ";

/// The producer running; [`SteadyProducer::finish`] stops it and reports.
#[derive(Debug)]
pub struct SteadyProducer {
    child: Child,
    command: String,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU32>,
    /// Partitions with at least one successful delivery report so far.
    acknowledged: Arc<Mutex<BTreeSet<u32>>>,
    /// Successful delivery reports so far.
    delivered: Arc<AtomicU32>,
    writer: JoinHandle<std::io::Result<()>>,
    reader: JoinHandle<Vec<String>>,
}

/// What a steady producer saw.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProduceReport {
    /// Records handed to kcat: numbers `0..sent`.
    pub sent: u32,
    /// Records whose delivery report is a success.
    pub delivered: u32,
    /// Per partition, the offsets Kafka acknowledged (successful delivery reports).
    pub acknowledged: BTreeMap<u32, Vec<i64>>,
    /// Records whose delivery report is an error.
    pub failed_produces: u32,
    /// ProduceRequests a broker answered with an error (retried or not).
    pub request_errors: u32,
    /// Each error's text (delivery or request) and how often it was seen.
    pub errors: BTreeMap<String, u32>,
}

impl ProduceReport {
    /// Records handed to kcat that got no delivery report at all (neither success nor error): an accounting that
    /// cannot tell what was acknowledged. Zero when kcat delivered or gave up on everything before it exited.
    pub fn unreported(&self) -> u32 {
        self.sent
            .saturating_sub(self.delivered + self.failed_produces)
    }

    /// Produce requests refused with an error whose text contains `error` (e.g. "Not enough in-sync replicas").
    pub fn refused(&self, error: &str) -> u32 {
        self.errors
            .iter()
            .filter(|(text, _)| !text.starts_with("delivery failed") && text.contains(error))
            .map(|(_, count)| count)
            .sum()
    }

    /// Reads kcat's stderr lines (only [`REQUEST_ERROR`], [`DELIVERY_FAILED`] and [`DELIVERED`] lines count).
    pub fn from_lines<'a>(sent: u32, lines: impl IntoIterator<Item = &'a str>) -> Self {
        let mut report = Self {
            sent,
            ..Self::default()
        };
        for line in lines {
            if let Some((_, rest)) = line.split_once(REQUEST_ERROR) {
                report.request_errors += 1;
                let error = rest.split(" (actions").next().unwrap_or(rest).trim();
                *report.errors.entry(error.to_owned()).or_default() += 1;
            } else if let Some((_, rest)) = line.split_once(DELIVERED) {
                // "P (offset O) on broker B"
                let mut numbers = rest
                    .split(|c: char| !c.is_ascii_digit() && c != '-')
                    .filter(|word| !word.is_empty());
                let partition = numbers.next().and_then(|p| p.parse().ok());
                let offset = numbers.next().and_then(|o| o.parse().ok());
                if let (Some(partition), Some(offset)) = (partition, offset) {
                    report.delivered += 1;
                    report
                        .acknowledged
                        .entry(partition)
                        .or_default()
                        .push(offset);
                }
            } else if let Some((_, rest)) = line.split_once(DELIVERY_FAILED) {
                report.failed_produces += 1;
                let error = format!("delivery failed{}", rest.trim_end());
                *report.errors.entry(error).or_default() += 1;
            }
        }
        report
    }
}

/// The consume format [`ProduceReport::read_back`] reads (kcat `-f`): partition, offset, key and value.
pub const READ_BACK_FORMAT: &str = "%p %o %k:%s\\n";

/// What a consume of the whole topic holds of a steady producer's records.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReadBack {
    /// Records read.
    pub read: usize,
    /// Acknowledged (partition, offset) pairs at which no record was read: acknowledged writes lost.
    pub lost: Vec<(u32, i64)>,
    /// Record numbers read more than once.
    pub duplicated: Vec<u32>,
    /// Lines that are not one of the producer's records (`key-N:value-N`, `N` below [`ProduceReport::sent`]).
    pub corrupt: Vec<String>,
}

impl ReadBack {
    /// Every acknowledged record there, none twice, nothing foreign.
    pub fn is_whole(&self) -> bool {
        self.lost.is_empty() && self.duplicated.is_empty() && self.corrupt.is_empty()
    }
}

impl ProduceReport {
    /// Compares a consume of the topic (lines in [`READ_BACK_FORMAT`]) with what Kafka acknowledged.
    pub fn read_back(&self, consumed: &str) -> ReadBack {
        let mut back = ReadBack::default();
        let mut at = BTreeSet::new();
        let mut times = BTreeMap::<u32, u32>::new();
        for line in consumed.lines().filter(|line| !line.is_empty()) {
            back.read += 1;
            let parsed = line.split_once(' ').and_then(|(partition, rest)| {
                let (offset, record) = rest.split_once(' ')?;
                let (key, value) = record.split_once(':')?;
                let n: u32 = key.strip_prefix("key-")?.parse().ok()?;
                let valid = n < self.sent && value == record_value(n);
                valid.then_some((
                    partition.parse::<u32>().ok()?,
                    offset.parse::<i64>().ok()?,
                    n,
                ))
            });
            match parsed {
                Some((partition, offset, n)) => {
                    at.insert((partition, offset));
                    *times.entry(n).or_default() += 1;
                }
                None => back.corrupt.push(line.to_owned()),
            }
        }
        back.duplicated = times
            .into_iter()
            .filter(|(_, t)| *t > 1)
            .map(|(n, _)| n)
            .collect();
        back.lost = self
            .acknowledged
            .iter()
            .flat_map(|(&partition, offsets)| offsets.iter().map(move |&o| (partition, o)))
            .filter(|pair| !at.contains(pair))
            .collect();
        back
    }
}

impl Client {
    /// Starts producing records `0, 1, 2, ...` to `topic` at `per_second`, each given up after
    /// `message_timeout` (then counted as a failed produce).
    pub fn steady_producer(
        &self,
        topic: &str,
        per_second: u32,
        message_timeout: Duration,
    ) -> Result<SteadyProducer> {
        let mut words = self.kcat_producer(topic, message_timeout)?;
        // `-v -v`: kcat's verbosity 3 prints every successful delivery report.
        words.extend(["-X", "debug=msg", "-v", "-v"].map(String::from));
        let (mut child, command) =
            super::spawn(&self.prefix, &words, Stdio::piped(), Stdio::null())?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stderr = child.stderr.take().expect("piped stderr");
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU32::new(0));
        let interval = Duration::from_secs(1) / per_second.max(1);
        let writer = {
            let (stop, sent) = (stop.clone(), sent.clone());
            std::thread::spawn(move || write_records(stdin, interval, &stop, &sent))
        };
        let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
        let delivered = Arc::new(AtomicU32::new(0));
        let reader = {
            let (acknowledged, delivered) = (acknowledged.clone(), delivered.clone());
            std::thread::spawn(move || {
                BufReader::new(stderr)
                    .lines()
                    .map_while(std::result::Result::ok)
                    .filter(|line| {
                        line.contains(REQUEST_ERROR)
                            || line.contains(DELIVERY_FAILED)
                            || line.contains(DELIVERED)
                    })
                    .inspect(|line| {
                        let report = ProduceReport::from_lines(0, [line.as_str()]);
                        if let Some(&partition) = report.acknowledged.keys().next() {
                            acknowledged.lock().expect("not poisoned").insert(partition);
                            delivered.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                    .collect()
            })
        };
        Ok(SteadyProducer {
            child,
            command,
            stop,
            sent,
            acknowledged,
            delivered,
            writer,
            reader,
        })
    }
}

/// Writes one record per `interval` (paced against the clock, so a slow write does not slow the rate) until
/// told to stop, then closes kcat's stdin so it delivers what it holds and exits.
fn write_records(
    mut stdin: std::process::ChildStdin,
    interval: Duration,
    stop: &AtomicBool,
    sent: &AtomicU32,
) -> std::io::Result<()> {
    let started = Instant::now();
    let mut n = 0u32;
    while !stop.load(Ordering::Relaxed) {
        writeln!(stdin, "{}:{}", record_key(n), record_value(n))?;
        stdin.flush()?;
        n += 1;
        sent.store(n, Ordering::Relaxed);
        // Pacing the load, not waiting for anything to happen.
        let due = started + interval * n;
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    Ok(())
}

impl SteadyProducer {
    /// Records handed to kcat so far.
    pub fn sent(&self) -> u32 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Records acknowledged (a successful delivery report) so far.
    pub fn delivered(&self) -> u32 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// How many partitions have had a record acknowledged (a successful delivery report) so far.
    pub fn acknowledged_partitions(&self) -> usize {
        self.acknowledged.lock().expect("not poisoned").len()
    }

    /// Stops writing, lets kcat deliver what it holds (up to `timeout`; its message timeout bounds it) and
    /// reports. kcat exiting non-zero with no failed delivery to explain it, or the pipe breaking before the
    /// stop, fails the call; failed deliveries are counted in the report (`failed_produces`).
    pub fn finish(mut self, timeout: Duration) -> Result<ProduceReport> {
        self.stop.store(true, Ordering::Relaxed);
        let sent = self.sent.clone();
        let written = self
            .writer
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the writer thread panicked")));
        let deadline = Instant::now() + timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    // kcat flushes its queue after stdin closes; poll its exit at a short interval.
                    std::thread::sleep(Duration::from_millis(50));
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
            }
        };
        let lines = self.reader.join().unwrap_or_default();
        let report = ProduceReport::from_lines(
            sent.load(Ordering::Relaxed),
            lines.iter().map(String::as_str),
        );
        let failure = match (&written, status) {
            (Err(error), _) => Some(format!("writing records failed: {error}")),
            (_, None) => Some(format!("still delivering after {timeout:?}; killed")),
            // kcat exits 1 when a delivery failed: those are counted in the report, for its caller to judge.
            (_, Some(status)) if !status.success() && report.failed_produces == 0 => {
                Some(status.to_string())
            }
            _ => None,
        };
        match failure {
            Some(status) => Err(KafkaHarnessError::Failed {
                command: self.command,
                status,
                output: format!("{report:?}"),
            }),
            None => Ok(report),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_errors_and_failed_deliveries_are_counted_apart() {
        let lines = [
            "%7|1764590000.123|MSGSET|rdkafka#producer-1| [thrd:10.0.0.5:9092/1]: 10.0.0.5:9092/1: roll [3]: \
             MessageSet with 2 message(s) (MsgId 41, BaseSeq 40) encountered error: Broker: Not enough in-sync \
             replicas (actions Retry,MsgNotPersisted)",
            "%7|1764590000.200|MSGSET|rdkafka#producer-1| [thrd:10.0.0.5:9092/1]: 10.0.0.5:9092/1: roll [4]: \
             MessageSet with 1 message(s) (MsgId 42, BaseSeq 12) encountered error: Broker: Not enough in-sync \
             replicas (actions Retry,MsgNotPersisted)",
            "% Delivery failed for message: Local: Message timed out",
            "% Message delivered to partition 3 (offset 17) on broker 1",
            "% Message delivered to partition 3 (offset 18) on broker 2",
            "% Message delivered to partition 0 (offset 0) on broker 0",
            "%7|1764590000.300|PRODUCE|rdkafka#producer-1| roll [3]: Produce MessageSet with 5 message(s)",
        ];
        let report = ProduceReport::from_lines(100, lines);
        assert_eq!(report.sent, 100);
        assert_eq!(report.request_errors, 2);
        assert_eq!(report.failed_produces, 1);
        assert_eq!(report.delivered, 3);
        assert_eq!(report.unreported(), 96, "100 handed, 3 delivered, 1 failed");
        assert_eq!(report.acknowledged.get(&3), Some(&vec![17, 18]));
        assert_eq!(report.acknowledged.get(&0), Some(&vec![0]));
        assert_eq!(report.refused("Not enough in-sync replicas"), 2);
        assert_eq!(report.refused("Message timed out"), 0, "a delivery error");
        assert_eq!(
            report
                .errors
                .get("delivery failed: Local: Message timed out"),
            Some(&1)
        );
    }

    #[test]
    fn a_read_back_finds_lost_acknowledgements_duplicates_and_strangers() {
        let report = ProduceReport::from_lines(
            4,
            [
                "% Message delivered to partition 0 (offset 0) on broker 1",
                "% Message delivered to partition 1 (offset 0) on broker 2",
                "% Message delivered to partition 1 (offset 1) on broker 2",
            ],
        );
        let whole = "0 0 key-000000:value-000000\n1 0 key-000001:value-000001\n1 1 key-000002:value-000002\n\
                     0 1 key-000003:value-000003\n";
        let back = report.read_back(whole);
        assert!(back.is_whole(), "{back:?}");
        assert_eq!(back.read, 4, "an unacknowledged record may be there too");
        let broken = "0 0 key-000000:value-000000\n1 0 key-000001:value-000001\n1 2 key-000001:value-000001\n\
                      0 1 key-000009:value-000009\n0 2 key-000003:value-000004\n";
        let back = report.read_back(broken);
        assert_eq!(back.lost, vec![(1, 1)]);
        assert_eq!(back.duplicated, vec![1]);
        assert_eq!(
            back.corrupt.len(),
            2,
            "a record never sent, a value of another key"
        );
    }
}
