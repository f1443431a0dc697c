//! Reading a host's berth from the outside, as an operator would: its `/state` document and `/health` status over
//! HTTP (the `berth-state` crate's schema and client, re-exported here), and a readable timeline of the states it
//! went through.

use std::fmt::Write as _;

pub use berth_state::client::{fetch_health, fetch_state, get, StateError};
pub use berth_state::{
    EniView, StateView, TimelineEntry, VolumeRequestView, VolumeView, WaitingView,
};

/// A host's timeline as aligned text: one line per state with when it was entered, how long it took and the
/// attempts made, e.g. `  attach_eni  +0.41s   2.03s  (1 attempt)`; under attach_eni, the volume's request that
/// overlaps it (`    volume requested +0.42s, answered +0.47s: sent an attach to i-...`).
pub fn render_timeline(title: &str, state: &StateView) -> String {
    let mut out = String::new();
    let id = state
        .broker_id
        .map_or_else(|| "-".to_owned(), |id| id.to_string());
    let ip = state.eni.as_ref().map_or("-", |eni| eni.ip.as_str());
    let _ = writeln!(
        out,
        "{title}: broker {id}, ENI address {ip}, last seen {}",
        state.state
    );
    for entry in &state.timeline {
        let plural = if entry.attempts == 1 { "" } else { "s" };
        let _ = writeln!(
            out,
            "  {:<11} +{:>6.2}s  {:>6.2}s  ({} attempt{plural})",
            entry.state,
            entry.entered_ms as f64 / 1000.0,
            entry.duration_ms as f64 / 1000.0,
            entry.attempts,
        );
        if let (Some(request), "attach_eni") = (&state.volume_request, entry.state.as_str()) {
            let answered = request.answered_ms.map_or_else(
                || "in flight".to_owned(),
                |ms| format!("answered +{:.2}s", ms as f64 / 1000.0),
            );
            let _ = writeln!(
                out,
                "    volume requested +{:.2}s, {answered}: {}",
                request.requested_ms as f64 / 1000.0,
                request.answer.as_deref().unwrap_or("-"),
            );
        }
    }
    if let Some(ms) = state.time_to_healthy_ms {
        let _ = writeln!(out, "  time to Healthy: {:.2}s", ms as f64 / 1000.0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_timeline_and_reads_the_state_document() {
        let entry = |state: &str, entered_ms, duration_ms, attempts| TimelineEntry {
            state: state.into(),
            entered_ms,
            duration_ms,
            attempts,
        };
        let view = StateView {
            state: "healthy".into(),
            healthy: true,
            broker_id: Some(0),
            eni: Some(EniView {
                id: "eni-1".into(),
                ip: "10.0.1.100".into(),
                mac: "x".into(),
                link: None,
            }),
            timeline: vec![entry("claim", 0, 120, 1), entry("attach_eni", 120, 2040, 3)],
            time_to_healthy_ms: Some(7300),
            volume_request: Some(VolumeRequestView {
                requested_ms: 121,
                answered_ms: Some(170),
                answer: Some("sent an attach to i-1".into()),
            }),
            ..StateView::empty()
        };
        let mut json = serde_json::to_value(&view).expect("encodes");
        json["extra"] = 1.into();
        let state: StateView =
            serde_json::from_value(json).expect("decodes, ignoring unknown fields");
        assert_eq!(state, view);
        let text = render_timeline("host 0", &state);
        assert!(
            text.starts_with("host 0: broker 0, ENI address 10.0.1.100, last seen healthy"),
            "{text}"
        );
        assert!(
            text.contains("attach_eni  +  0.12s    2.04s  (3 attempts)\n    volume requested +0.12s, answered +0.17s: sent an attach to i-1\n"),
            "{text}"
        );
        assert!(text.contains("time to Healthy: 7.30s"), "{text}");
    }
}
