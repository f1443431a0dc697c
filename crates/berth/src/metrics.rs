//! `/metrics`: berth's Prometheus metrics, through the Prometheus client library (`prometheus-client`), by the
//! conventions (prometheus.io, "Metric and label naming", "Instrumentation"): base units in the names, counters
//! ending in `_total`, an `_info` metric for what identifies the broker (`berth_info{broker_id, instance_id, az,
//! version} 1`), the standard `process_*` metrics, and every series present from the start (NaN where a value is
//! not known yet and 0 would mislead).
//!
//! Two kinds of metric: what the state machine knows is computed from the `/state` view when scraped
//! ([`ViewCollector`]), so it is as live as `/state` and never out of step with it; failed calls, by service and
//! kind, are counted as they happen ([`Metrics::call_error`]): the daemon counts each failed step against the
//! service it calls ([`Service::of_step`]). The exposition is
//! OpenMetrics when the scraper asks for it (Prometheus does), else the Prometheus text format 0.0.4.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use berth_core::{ErrorKind, State, StepKind};

use crate::view::StateView;

/// The exposition formats `/metrics` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text (`application/openmetrics-text`), what Prometheus asks for first.
    OpenMetrics,
    /// Prometheus text format 0.0.4, for every other client.
    Prometheus,
}

impl Format {
    /// The format an `Accept` header asks for.
    pub fn negotiate(accept: Option<&str>) -> Self {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => Self::OpenMetrics,
            _ => Self::Prometheus,
        }
    }

    /// The response's `Content-Type`, charset included.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }
}

/// Whom a failed call was to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// EC2, IMDS, CloudFormation, Auto Scaling (and the `ec2` claim backend).
    Aws,
    /// The ZooKeeper ensemble (claims, Kafka's registration).
    Zookeeper,
    /// Kafka (its supervisor, protocol probe, replication reads, storage tool).
    Kafka,
    /// Netlink (links, addresses, routes, rules).
    Network,
    /// Block devices, filesystems, mounts.
    Storage,
}

impl Service {
    /// Every service, in the order of the exposition.
    pub const ALL: [Service; 5] = [
        Self::Aws,
        Self::Zookeeper,
        Self::Kafka,
        Self::Network,
        Self::Storage,
    ];

    /// What a failed step was calling: the claims' backend (`claims`) for claiming and re-claiming, AWS for the
    /// attachments, netlink for the routes, the volume for the mount, Kafka for its start, catch-up, checks and the
    /// drain's safety checks.
    pub fn of_step(step: StepKind, claims: Service) -> Self {
        match step {
            StepKind::Boot(State::Claim) | StepKind::Reclaim => claims,
            StepKind::Boot(State::AttachEni | State::AttachEbs) => Self::Aws,
            StepKind::Boot(State::Route) => Self::Network,
            StepKind::Boot(State::Mount) => Self::Storage,
            StepKind::Boot(_) | StepKind::CatchUp | StepKind::Check | StepKind::DrainCheck => {
                Self::Kafka
            }
        }
    }

    /// The `service` label's value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Aws => "aws",
            Self::Zookeeper => "zookeeper",
            Self::Kafka => "kafka",
            Self::Network => "network",
            Self::Storage => "storage",
        }
    }
}

/// The `kind` label's value.
fn kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Retryable => "retryable",
        ErrorKind::Fatal => "fatal",
    }
}

/// `berth_call_errors_total`'s labels: service, kind.
type CallLabels = [(&'static str, &'static str); 2];

/// berth's metrics: the registry of what is counted as it happens (call errors, the process), and the view's
/// metrics added at each scrape.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    call_errors: Family<CallLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every series at zero.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let call_errors = Family::<CallLabels, Counter>::default();
        for service in Service::ALL {
            for kind in [ErrorKind::Retryable, ErrorKind::Fatal] {
                let _ = call_errors.get_or_create(&labels(service, kind));
            }
        }
        registry.register(
            "berth_call_errors",
            "Failed steps by the service they call (AWS, ZooKeeper, Kafka, netlink, the volume) and by kind \
             (retryable or fatal)",
            call_errors.clone(),
        );
        registry.register_collector(Box::new(crate::process_metrics::ProcessCollector));
        Self {
            registry,
            call_errors,
        }
    }

    /// Counts a failed call to `service`.
    pub fn call_error(&self, service: Service, kind: ErrorKind) {
        self.call_errors.get_or_create(&labels(service, kind)).inc();
    }

    /// The exposition of `view` and the counted metrics, in `format`.
    pub fn render(&self, view: &StateView, format: Format) -> String {
        let mut scrape = Registry::default();
        scrape.register_collector(Box::new(ViewCollector(view.clone())));
        let mut out = String::new();
        let encoded = match format {
            Format::OpenMetrics => {
                use prometheus_client::encoding::text::{encode_eof, encode_registry};
                encode_registry(&mut out, &scrape)
                    .and_then(|()| encode_registry(&mut out, &self.registry))
                    .and_then(|()| encode_eof(&mut out))
            }
            Format::Prometheus => {
                use prometheus_client::encoding::prometheus_text::encode;
                encode(&mut out, &scrape).and_then(|()| encode(&mut out, &self.registry))
            }
        };
        if let Err(error) = encoded {
            tracing::warn!(%error, "cannot encode the metrics");
        }
        out
    }
}

fn labels(service: Service, kind: ErrorKind) -> CallLabels {
    [("service", service.name()), ("kind", kind_name(kind))]
}

/// What the `/state` view tells, as metrics, encoded at each scrape.
#[derive(Debug)]
struct ViewCollector(StateView);

/// Seconds from milliseconds.
fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// 1 or 0.
fn flag(value: bool) -> i64 {
    i64::from(value)
}

impl Collector for ViewCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let view = &self.0;
        let identity = [
            (
                "broker_id",
                view.broker_id.map(|id| id.to_string()).unwrap_or_default(),
            ),
            ("instance_id", view.instance_id.clone().unwrap_or_default()),
            ("az", view.availability_zone.clone().unwrap_or_default()),
            ("version", view.version.clone()),
        ];
        let info = Info::new(identity);
        let metric = encoder.encode_descriptor(
            "berth",
            "This broker host: its claimed broker id, instance, availability zone and berth's version (empty \
             until known).",
            None,
            MetricType::Info,
        )?;
        info.encode(metric)?;
        encode_states(view, &mut encoder)?;
        let gauges = [
            (
                "berth_healthy",
                "1 when /health answers 200.",
                flag(view.healthy),
            ),
            (
                "berth_claim_held",
                "1 while the broker id claim is held.",
                flag(view.claim == "held"),
            ),
            (
                "berth_failure_not_reported",
                "1 while a failed boot's report to Auto Scaling has not landed (berth keeps trying).",
                flag(
                    view.failure_report
                        .as_ref()
                        .is_some_and(|report| report.status == "not_landed"),
                ),
            ),
        ];
        for (name, help, value) in gauges {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(value).encode(metric)?;
        }
        let counters = [
            (
                "berth_transitions",
                "State transitions since berth started.",
                view.transitions,
            ),
            (
                "berth_retries",
                "Retries scheduled since berth started.",
                view.retries,
            ),
        ];
        for (name, help, value) in counters {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(value).encode(metric)?;
        }
        encode_timings(view, &mut encoder)
    }
}

/// `berth_state{state}` (1 for the current state) and `berth_state_seconds_total{state}` (time spent in each),
/// every state from the start.
fn encode_states(view: &StateView, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(
        "berth_state",
        "1 for berth's current state, 0 for the others.",
        None,
        MetricType::Gauge,
    )?;
    for state in State::ALL {
        let labels = [("state", state.name())];
        ConstGauge::new(flag(state.name() == view.state)).encode(metric.encode_family(&labels)?)?;
    }
    let mut metric = encoder.encode_descriptor(
        "berth_state",
        "Time spent in each state since berth started.",
        Some(&Unit::Seconds),
        MetricType::Counter,
    )?;
    for state in State::ALL {
        let spent: u64 = view
            .timeline
            .iter()
            .filter(|entry| entry.state == state.name())
            .map(|entry| entry.duration_ms)
            .sum();
        let labels = [("state", state.name())];
        ConstCounter::new(seconds(spent)).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// The boot's, the caught-up gate's and the drain's gauges.
fn encode_timings(
    view: &StateView,
    encoder: &mut DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
    let unknown = f64::NAN;
    let drain = view.drain_wait.as_ref();
    let gauges = [
        (
            "berth_time_to_healthy",
            "Time from berth's start to its first Healthy (NaN before).",
            Some(Unit::Seconds),
            view.time_to_healthy_ms.map_or(unknown, seconds),
        ),
        (
            "berth_kafka_partitions_behind",
            "Partitions this broker hosts that are under-replicated because of it, at the caught-up gate's last \
             look (NaN before the first).",
            None,
            view.catch_up
                .as_ref()
                .map_or(unknown, |progress| progress.behind.len() as f64),
        ),
        (
            "berth_kafka_replication_unjudged",
            "1 when the caught-up gate's last answer did not let berth judge (an ACL hides a hosted topic, a topic \
             error, an unreadable min.insync.replicas): not caught up (NaN before the first look).",
            None,
            view.catch_up.as_ref().map_or(unknown, |progress| {
                f64::from(u8::from(!progress.cannot_judge.is_empty()))
            }),
        ),
        (
            "berth_drain_wait",
            "Time the drain has waited (or waited in all) for stopping Kafka to be safe (0 before a drain).",
            Some(Unit::Seconds),
            drain.map_or(0.0, |wait| seconds(wait.waited_ms)),
        ),
    ];
    for (name, help, unit, value) in gauges {
        let metric = encoder.encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?;
        ConstGauge::new(value).encode(metric)?;
    }
    let bound_reached = drain.is_some_and(|wait| {
        matches!(
            wait.outcome,
            Some(berth_core::replication::DrainOutcome::BoundReached(_))
        )
    });
    let metric = encoder.encode_descriptor(
        "berth_drain_wait_bound_reached",
        "1 when the drain stopped Kafka at kafka.drain_wait while stopping was still unsafe.",
        None,
        MetricType::Gauge,
    )?;
    ConstGauge::new(flag(bound_reached)).encode(metric)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(name_and_labels)?.strip_prefix(' '))
            .map(|value| value.parse().expect("a number"))
    }

    #[test]
    fn a_failed_step_counts_against_the_service_it_calls() {
        let zookeeper = Service::Zookeeper;
        assert_eq!(
            Service::of_step(StepKind::Boot(State::Claim), zookeeper),
            zookeeper
        );
        assert_eq!(
            Service::of_step(StepKind::Reclaim, Service::Aws),
            Service::Aws
        );
        for (state, service) in [
            (State::AttachEni, Service::Aws),
            (State::Route, Service::Network),
            (State::AttachEbs, Service::Aws),
            (State::Mount, Service::Storage),
            (State::StartKafka, Service::Kafka),
        ] {
            assert_eq!(Service::of_step(StepKind::Boot(state), zookeeper), service);
        }
        for step in [StepKind::CatchUp, StepKind::Check, StepKind::DrainCheck] {
            assert_eq!(Service::of_step(step, zookeeper), Service::Kafka);
        }
        let metrics = Metrics::new();
        metrics.call_error(Service::Aws, ErrorKind::Retryable);
        metrics.call_error(Service::Aws, ErrorKind::Retryable);
        let text = metrics.render(&StateView::empty(), Format::Prometheus);
        assert_eq!(
            sample(
                &text,
                "berth_call_errors_total{service=\"aws\",kind=\"retryable\"}"
            ),
            Some(2.0),
            "{text}"
        );
    }

    #[test]
    fn every_series_is_there_from_the_start() {
        let metrics = Metrics::new();
        let text = metrics.render(&StateView::empty(), Format::Prometheus);
        for state in State::ALL {
            let labels = format!("{{state=\"{}\"}}", state.name());
            assert_eq!(
                sample(&text, &format!("berth_state{labels}")),
                Some(0.0),
                "{text}"
            );
            assert_eq!(
                sample(&text, &format!("berth_state_seconds_total{labels}")),
                Some(0.0),
                "{text}"
            );
        }
        for service in Service::ALL {
            for kind in ["retryable", "fatal"] {
                let series = format!(
                    "berth_call_errors_total{{service=\"{}\",kind=\"{kind}\"}}",
                    service.name()
                );
                assert_eq!(sample(&text, &series), Some(0.0), "{series} in {text}");
            }
        }
        assert!(sample(&text, "berth_time_to_healthy_seconds").is_some_and(f64::is_nan));
        assert!(sample(&text, "berth_kafka_partitions_behind").is_some_and(f64::is_nan));
        assert!(sample(&text, "berth_kafka_replication_unjudged").is_some_and(f64::is_nan));
        assert_eq!(sample(&text, "berth_drain_wait_seconds"), Some(0.0));
        assert_eq!(sample(&text, "berth_transitions_total"), Some(0.0));
        let info = format!(
            "berth_info{{broker_id=\"\",instance_id=\"\",az=\"\",version=\"{}\"}}",
            berth_core::VERSION
        );
        assert_eq!(sample(&text, &info), Some(1.0), "{text}");
        assert!(sample(&text, "process_cpu_seconds_total").is_some_and(|v| v >= 0.0));
        for process in [
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            assert!(
                sample(&text, process).is_some_and(|v| v > 0.0),
                "{process} in {text}"
            );
        }
    }

    #[test]
    fn counters_end_in_total_and_call_errors_count_by_service_and_kind() {
        let metrics = Metrics::new();
        metrics.call_error(Service::Aws, ErrorKind::Retryable);
        metrics.call_error(Service::Aws, ErrorKind::Retryable);
        metrics.call_error(Service::Zookeeper, ErrorKind::Fatal);
        let text = metrics.render(&StateView::empty(), Format::Prometheus);
        let series = |service: &str, kind: &str| {
            sample(
                &text,
                &format!("berth_call_errors_total{{service=\"{service}\",kind=\"{kind}\"}}"),
            )
        };
        assert_eq!(series("aws", "retryable"), Some(2.0));
        assert_eq!(series("zookeeper", "fatal"), Some(1.0));
        assert_eq!(series("kafka", "fatal"), Some(0.0));
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let words: Vec<&str> = line.split(' ').collect();
            assert_eq!(
                words[3] == "counter",
                words[2].ends_with("_total"),
                "a counter's name ends in _total, no other's does: {line}"
            );
        }
    }

    #[test]
    fn the_identity_is_an_info_metric_and_states_add_up() {
        let mut view = StateView::empty();
        view.state = "healthy".into();
        view.broker_id = Some(2);
        view.instance_id = Some("i-0abc".into());
        view.availability_zone = Some("eu-west-1b".into());
        view.time_to_healthy_ms = Some(31_500);
        view.timeline = ["claim", "start_kafka", "claim", "healthy"]
            .iter()
            .map(|state| crate::view::TimelineEntry {
                state: (*state).into(),
                entered_ms: 0,
                duration_ms: 1_250,
                attempts: 1,
            })
            .collect();
        let text = Metrics::new().render(&view, Format::Prometheus);
        let info = format!(
            "berth_info{{broker_id=\"2\",instance_id=\"i-0abc\",az=\"eu-west-1b\",version=\"{}\"}}",
            berth_core::VERSION
        );
        assert_eq!(sample(&text, &info), Some(1.0), "{text}");
        assert_eq!(sample(&text, "berth_state{state=\"healthy\"}"), Some(1.0));
        assert_eq!(sample(&text, "berth_state{state=\"claim\"}"), Some(0.0));
        assert_eq!(
            sample(&text, "berth_state_seconds_total{state=\"claim\"}"),
            Some(2.5)
        );
        assert_eq!(sample(&text, "berth_time_to_healthy_seconds"), Some(31.5));
    }

    #[test]
    fn openmetrics_when_asked_with_its_end_marker_and_charsets_always() {
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
            )),
            Format::OpenMetrics
        );
        assert_eq!(Format::negotiate(Some("*/*")), Format::Prometheus);
        assert_eq!(Format::negotiate(None), Format::Prometheus);
        for format in [Format::OpenMetrics, Format::Prometheus] {
            assert!(format.content_type().ends_with("charset=utf-8"));
        }
        let text = Metrics::new().render(&StateView::empty(), Format::OpenMetrics);
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1);
        assert!(text.contains("# TYPE berth info\n"), "{text}");
        assert!(text.contains("\nberth_transitions_total 0\n"), "{text}");
    }
}
