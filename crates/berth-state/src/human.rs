//! The `/state` document as an operator reads it (`berth status`).

use std::fmt::Write as _;
use std::time::Duration;

use crate::StateView;

impl StateView {
    /// A human summary for `berth status`.
    pub fn render_human(&self) -> String {
        let mut out = String::new();
        self.render_what(&mut out);
        self.render_progress(&mut out);
        out
    }

    /// What this broker is: state, id, instance, ENI, volume, listener.
    fn render_what(&self, out: &mut String) {
        let health = if self.healthy {
            "HEALTHY"
        } else {
            "not healthy"
        };
        let build = match self.build.as_str() {
            "" => String::new(),
            build => format!(" ({build} build)"),
        };
        let _ = writeln!(
            out,
            "state:       {} ({health}), berth {}{build}",
            self.state, self.version
        );
        let or_dash = |value: Option<String>| value.unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "broker id:   {}   claim: {}",
            or_dash(self.broker_id.map(|id| id.to_string())),
            self.claim
        );
        let _ = writeln!(
            out,
            "instance:    {} in {}",
            or_dash(self.instance_id.clone()),
            or_dash(self.availability_zone.clone())
        );
        if let Some(eni) = &self.eni {
            let link = eni.link.clone().unwrap_or_else(|| "not visible yet".into());
            let table = or_dash(self.route_table.map(|t| t.to_string()));
            let _ = writeln!(
                out,
                "eni:         {} {} ({}) link {link}, table {table}",
                eni.id, eni.ip, eni.mac
            );
        }
        if let Some(volume) = &self.volume {
            let _ = writeln!(
                out,
                "volume:      {} device {} mounted at {} ({})",
                volume.id,
                or_dash(volume.device.clone()),
                or_dash(volume.mount.clone()),
                or_dash(volume.filesystem.clone())
            );
        }
        if let Some(listener) = &self.listener {
            let _ = writeln!(out, "kafka:       serving on {listener}");
        }
    }

    /// How it got here, and what it waits for now.
    fn render_progress(&self, out: &mut String) {
        let _ = writeln!(out, "timeline:");
        for entry in &self.timeline {
            let _ = writeln!(
                out,
                "  {:<12} at {:>8} ms  took {:>8} ms  attempts {}",
                entry.state, entry.entered_ms, entry.duration_ms, entry.attempts
            );
        }
        if let Some(ms) = self.time_to_healthy_ms {
            let _ = writeln!(out, "time to healthy: {ms} ms");
        }
        if let Some(ms) = self.claim_lost_ms {
            let _ = writeln!(
                out,
                "claim lost:  {} ago, re-claiming (attempt {}); Kafka keeps running",
                berth_core::duration::format_duration(Duration::from_millis(ms)),
                self.reclaim_attempts
            );
        }
        if let Some(waiting) = &self.waiting {
            let _ = writeln!(
                out,
                "waiting:     {} for {}: {}",
                waiting.step,
                berth_core::duration::format_duration(Duration::from_millis(waiting.for_ms)),
                waiting.reason
            );
        }
        if let Some(progress) = &self.catch_up {
            let _ = writeln!(out, "catch-up:    {progress}");
        }
        if let Some(failure) = &self.failure {
            let _ = writeln!(out, "FAILED:      {failure}");
            if let Some(report) = &self.failure_report {
                let error = report.error.as_deref().unwrap_or("");
                let _ = writeln!(out, "reported:    {} {error}", report.status);
            }
        } else if let Some(error) = &self.last_error {
            let _ = writeln!(out, "last error:  {error}");
        }
        if let Some(reason) = &self.drain_reason {
            let _ = writeln!(out, "draining:    {reason}");
        }
        if let Some(wait) = &self.drain_wait {
            let waited =
                berth_core::duration::format_duration(Duration::from_millis(wait.waited_ms));
            match (&wait.outcome, &wait.unsafe_because) {
                (Some(outcome), _) => {
                    let _ = writeln!(out, "drain wait:  {waited}: {}", outcome.why());
                }
                (None, Some(why)) => {
                    let _ = writeln!(out, "drain wait:  {waited} (check {}): {why}", wait.checks);
                }
                (None, None) => {
                    let _ = writeln!(out, "drain wait:  {waited}: checking replicas");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_is_shown_when_the_daemon_reports_it() {
        let mut view = StateView::empty();
        let first = |view: &StateView| view.render_human().lines().next().map(str::to_owned);
        assert_eq!(
            first(&view).as_deref(),
            Some(
                format!(
                    "state:       starting (not healthy), berth {}",
                    view.version
                )
                .as_str()
            )
        );
        view.build = "release".into();
        assert_eq!(
            first(&view).as_deref(),
            Some(
                format!(
                    "state:       starting (not healthy), berth {} (release build)",
                    view.version
                )
                .as_str()
            )
        );
    }
}
