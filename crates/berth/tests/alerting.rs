//! What the package ships for monitoring, checked against what berth exports: the alert rules
//! (`docs/examples/berth-alerts.yaml`) pass `promtool check rules` and their unit tests (`promtool test rules
//! docs/examples/berth-alerts.test.yaml`, Debian's `prometheus` package, installed by scripts/setup.sh); the rules,
//! their tests' input series and the Grafana dashboard (`docs/examples/berth-dashboard.json`) name only metrics
//! `/metrics` exports (besides `up`, which Prometheus adds to every scrape).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth::metrics::{Format, Metrics};
use berth::view::StateView;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(examples().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Runs promtool with `args` in docs/examples; panics with its output unless it succeeds.
fn promtool(args: &[&str]) -> String {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(examples())
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool: {e} (Debian's prometheus package; ./scripts/setup.sh installs it)")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn promtool_checks_the_alert_rules_and_runs_their_unit_tests() {
    let checked = promtool(&["check", "rules", "berth-alerts.yaml"]);
    assert!(checked.contains("SUCCESS: 8 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "berth-alerts.test.yaml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

/// The series names `/metrics` exports (every series is there from the start).
fn exported() -> BTreeSet<String> {
    let text = Metrics::new().render(&StateView::empty(), Format::Prometheus);
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| line.split(['{', ' ']).next().unwrap_or_default().to_owned())
        .collect()
}

/// PromQL's binary operators, modifiers and aggregation operators (`sum by (x) (...)`): words, not names.
const KEYWORDS: [&str; 17] = [
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];
/// The clauses whose parenthesised list holds label names.
const GROUPING: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// `expr` with string literals, label matchers (`{...}`) and ranges (`[...]`) blanked out.
fn outside_matchers(expr: &str) -> String {
    let mut plain = String::new();
    let (mut depth, mut quote) = (0i32, None);
    for c in expr.chars() {
        match (quote, c) {
            (Some(q), _) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'' | '`') => quote = Some(c),
            (None, '{' | '[') => depth += 1,
            (None, '}' | ']') => depth -= 1,
            (None, _) if depth == 0 => {
                plain.push(c);
                continue;
            }
            (None, _) => {}
        }
        plain.push(' ');
    }
    plain
}

/// The metric names a PromQL expression selects: the identifiers outside label matchers, ranges, strings and
/// grouping clauses that are neither functions (followed by `(`) nor keywords.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let plain = outside_matchers(expr);
    let mut names = BTreeSet::new();
    let mut rest = plain.as_str();
    let in_word = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '$' | '.');
    while let Some(start) = rest.find(in_word) {
        let tail = &rest[start..];
        let end = tail.find(|c: char| !in_word(c)).unwrap_or(tail.len());
        let (word, after) = tail.split_at(end);
        let call = after.trim_start().starts_with('(');
        rest = after;
        if word.starts_with(|c: char| c.is_ascii_digit()) {
            // A number or a duration.
        } else if GROUPING.contains(&word) && call {
            // Skip the label list.
            rest = rest.split_once(')').map_or("", |(_, r)| r);
        } else if !call && !KEYWORDS.contains(&word) && !word.starts_with('$') {
            names.insert(word.to_owned());
        }
    }
    names
}

/// Every `expr`/`query` string of the dashboard (panels' targets, template variables).
fn dashboard_queries(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        // A data source variable's `query` is the plugin's type, not PromQL.
        serde_json::Value::Object(map)
            if map.get("type").and_then(|t| t.as_str()) == Some("datasource") => {}
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr" | "query" | "definition", serde_json::Value::String(text)) => {
                        // Grafana's label_values(<selector>, <label>): the selector is the query.
                        let query = text
                            .strip_prefix("label_values(")
                            .and_then(|inner| inner.rsplit_once(','))
                            .map_or(text.as_str(), |(selector, _)| selector);
                        out.push(query.to_owned())
                    }
                    _ => dashboard_queries(value, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| dashboard_queries(v, out)),
        _ => {}
    }
}

/// The names in `exprs` that berth does not export.
fn unknown(exprs: &[String]) -> Vec<(String, String)> {
    let exported = exported();
    exprs
        .iter()
        .flat_map(|expr| {
            metric_names(expr)
                .into_iter()
                .map(move |n| (n, expr.clone()))
        })
        .filter(|(name, _)| name != "up" && !exported.contains(name))
        .collect()
}

#[test]
fn the_name_reader_finds_metric_names_only() {
    let names = |expr: &str| metric_names(expr).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            "sum by (instance, job, service) (rate(berth_call_errors_total{kind=\"retryable\"}[5m])) > 0.2"
        ),
        ["berth_call_errors_total"]
    );
    assert_eq!(
        names("berth_healthy == 0 and on (instance, job) (time() - process_start_time_seconds) > 1800"),
        ["berth_healthy", "process_start_time_seconds"]
    );
    assert_eq!(
        names("max by(state)(berth_state) unless on(instance) berth_healthy offset 5m"),
        ["berth_healthy", "berth_state"]
    );
    assert_eq!(names("up{job=\"berth\"} == 0"), ["up"]);
    assert_eq!(
        names("nothing_berth_exports_total"),
        ["nothing_berth_exports_total"]
    );
}

#[test]
fn the_dashboard_and_the_rules_name_only_metrics_berth_exports() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("berth-dashboard.json")).expect("the dashboard is JSON");
    let mut queries = Vec::new();
    dashboard_queries(&dashboard, &mut queries);
    assert!(queries.len() >= 10, "{queries:?}");
    let unknown_names = unknown(&queries);
    assert!(
        unknown_names.is_empty(),
        "the dashboard names metrics berth does not export: {unknown_names:?}"
    );

    // The rules' expressions and the input series of their unit tests (one per line in both files).
    let rules = read("berth-alerts.yaml");
    let exprs: Vec<String> = rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix("expr: "))
        .map(str::to_owned)
        .collect();
    assert_eq!(exprs.len(), 8, "every rule's expr on one line");
    let tests = read("berth-alerts.test.yaml");
    let series: Vec<String> = tests
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- series: "))
        .map(|series| series.trim_matches('\'').to_owned())
        .collect();
    assert!(series.len() >= 10, "{series:?}");
    let unknown_names = unknown(&[exprs, series].concat());
    assert!(
        unknown_names.is_empty(),
        "the rules name metrics berth does not export: {unknown_names:?}"
    );
}
