//! The time budgets berth's waits add up to, held against the lifecycle hooks' timeouts: the worst-case boot
//! (every state's deadline, and the caught-up gate's), the worst-case drain (the wait for a safe stop, Kafka's
//! stop, each other release action's limit), and the hooks' global timeout. `berth check-config` warns when they
//! cannot fit; `berth drain` waits as long as the worst-case drain; `berth run` retries a lifecycle completion
//! for at most the global timeout.
//!
//! Auto Scaling applies a hook's `DefaultResult` once `HeartbeatTimeout` passes without a heartbeat, and never
//! keeps an action longer than its global timeout, `min(48 h, 100 x HeartbeatTimeout)` (PutLifecycleHook and
//! LifecycleHook API references; "Amazon EC2 Auto Scaling lifecycle hooks"). berth heartbeats every pending
//! action at `aws.autoscaling.heartbeat_interval`, so a budget fits when heartbeats are on, come at most every
//! half timeout (one lost or throttled heartbeat is survived), and the worst case stays within the global
//! timeout.

use std::time::Duration;

use berth_core::duration::format_duration;

use crate::{Config, HealthyWhen, KafkaConfig};

/// Auto Scaling's longest wait for a lifecycle action (48 hours): no wait berth makes may outlast it.
pub(crate) const MAX_HOOK_WAIT: Duration = Duration::from_secs(48 * 3600);

/// Time allowed for each release action but Kafka's stop (unmount, routes, the two detaches, the claim).
pub const TEARDOWN_ACTION_TIMEOUT: Duration = Duration::from_secs(120);

/// The release actions besides Kafka's stop.
const RELEASE_ACTIONS: u32 = 5;

/// A budget that does not fit: the key to change and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetWarning {
    /// The key to change.
    pub key: &'static str,
    /// What cannot fit, with the numbers.
    pub message: String,
}

impl std::fmt::Display for BudgetWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl Config {
    /// The longest a boot can take before it fails: every state's deadline, and the caught-up gate's.
    pub fn boot_worst_case(&self) -> Duration {
        let states: Duration = self
            .states
            .each()
            .into_iter()
            .map(|(_, state)| state.deadline)
            .sum();
        let gate = if self.kafka.healthy_when == HealthyWhen::CaughtUp {
            self.kafka.caught_up_deadline
        } else {
            Duration::ZERO
        };
        states + gate
    }

    /// The longest a drain can take: see [`KafkaConfig::drain_worst_case`].
    pub fn drain_worst_case(&self) -> Duration {
        self.kafka.drain_worst_case()
    }

    /// The lifecycle hooks' global timeout: 100 times their heartbeat timeout, at most 48 hours.
    pub fn hook_global_timeout(&self) -> Duration {
        (self.aws.autoscaling.hook_timeout * 100).min(MAX_HOOK_WAIT)
    }

    /// What cannot fit the lifecycle hooks' timeouts, each with the key to change.
    pub fn budget_warnings(&self) -> Vec<BudgetWarning> {
        let autoscaling = &self.aws.autoscaling;
        let hooks = [
            (
                "launch",
                &autoscaling.launch_hook,
                "a boot",
                self.boot_worst_case(),
                "the states' deadlines and kafka.caught_up_deadline",
            ),
            (
                "terminate",
                &autoscaling.terminate_hook,
                "a drain",
                self.drain_worst_case(),
                "kafka.drain_wait, kafka.stop_timeout and the release",
            ),
        ];
        let (every, timeout, global) = (
            autoscaling.heartbeat_interval,
            autoscaling.hook_timeout,
            self.hook_global_timeout(),
        );
        let mut warnings = Vec::new();
        let warn = |warnings: &mut Vec<BudgetWarning>, key, message| {
            warnings.push(BudgetWarning { key, message })
        };
        for (hook, name, what, worst, made_of) in hooks {
            if name.is_empty() {
                continue;
            }
            let (worst_text, timeout_text) = (format_duration(worst), format_duration(timeout));
            if every.is_zero() && worst > timeout {
                warn(&mut warnings, "aws.autoscaling.heartbeat_interval", format!(
                    "is 0s (off), but {what} may take up to {worst_text} ({made_of}), longer than the {hook} \
                     hook's timeout (aws.autoscaling.hook_timeout = {timeout_text}): Auto Scaling would apply \
                     its DefaultResult meanwhile"
                ));
            }
            if worst > global {
                warn(&mut warnings, "aws.autoscaling.hook_timeout", format!(
                    "{what} may take up to {worst_text} ({made_of}), longer than the {hook} hook's global \
                     timeout ({}: 100 x {timeout_text}, at most 48h), which no heartbeat extends",
                    format_duration(global)
                ));
            }
        }
        let hooked = !autoscaling.launch_hook.is_empty() || !autoscaling.terminate_hook.is_empty();
        if hooked && !every.is_zero() && every * 2 > timeout {
            warn(&mut warnings, "aws.autoscaling.heartbeat_interval", format!(
                "is {}, more than half the hooks' timeout (aws.autoscaling.hook_timeout = {}): one lost or \
                 throttled heartbeat lets the action expire",
                format_duration(every),
                format_duration(timeout)
            ));
        }
        warnings
    }

    /// One line on the budgets, for `berth check-config`: the worst-case boot and drain against the hooks and
    /// the unit's stop timeout (`unit_stop_timeout`, which berth extends while it drains).
    pub fn budget_summary(&self, unit_stop_timeout: Duration) -> String {
        let autoscaling = &self.aws.autoscaling;
        let heartbeats = if autoscaling.heartbeat_interval.is_zero() {
            "off".to_owned()
        } else {
            format!("every {}", format_duration(autoscaling.heartbeat_interval))
        };
        format!(
            "budgets: a boot may take up to {}, a drain up to {}; lifecycle heartbeats {heartbeats} against a {} \
             hook timeout ({} global); berth.service's TimeoutStopSec={} is extended while berth drains \
             (EXTEND_TIMEOUT_USEC)",
            format_duration(self.boot_worst_case()),
            format_duration(self.drain_worst_case()),
            format_duration(autoscaling.hook_timeout),
            format_duration(self.hook_global_timeout()),
            format_duration(unit_stop_timeout),
        )
    }
}

impl KafkaConfig {
    /// The longest a drain can take: the wait for a safe stop, Kafka's stop, and each other release action's
    /// limit.
    pub fn drain_worst_case(&self) -> Duration {
        self.drain_wait + self.stop_timeout + TEARDOWN_ACTION_TIMEOUT * RELEASE_ACTIONS
    }
}
