//! Instance refreshes (StartInstanceRefresh with `Strategy=Rolling`, DescribeInstanceRefreshes,
//! CancelInstanceRefresh) in the Auto Scaling model: which members a refresh replaces, in what batches, when it
//! moves on, and how a cancellation stops it before the next replacement (never halfway through one).

use std::time::{Duration, Instant};

use super::{active, AutoScaling, LifecycleState, Slot};
use crate::aws::query::{ApiError, Params};

/// An instance refresh's status (DescribeInstanceRefreshes' `Status`; the values this model reaches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshStatus {
    /// `Pending`: created, no replacement started yet (the group is not settled at capacity).
    Pending,
    /// `InProgress`
    InProgress,
    /// `Successful`
    Successful,
    /// `Cancelling`: cancelled while a replacement is under way; it finishes that one, starts no other.
    Cancelling,
    /// `Cancelled`
    Cancelled,
}

impl RefreshStatus {
    /// As the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            RefreshStatus::Pending => "Pending",
            RefreshStatus::InProgress => "InProgress",
            RefreshStatus::Successful => "Successful",
            RefreshStatus::Cancelling => "Cancelling",
            RefreshStatus::Cancelled => "Cancelled",
        }
    }

    /// Not finished: blocks another refresh of the group.
    pub fn active(self) -> bool {
        matches!(
            self,
            RefreshStatus::Pending | RefreshStatus::InProgress | RefreshStatus::Cancelling
        )
    }
}

/// One replacement an instance refresh made: the old instance terminated, the new one launched in its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replacement {
    /// The instance replaced.
    pub old: String,
    /// When the refresh started terminating it (through the terminate hook).
    pub terminating_at: Instant,
    /// The instance launched in its place, once there is one.
    pub new: Option<String>,
    /// When the new instance went `InService` (its launch hook completed).
    pub in_service_at: Option<Instant>,
    /// When its warmup ended, and the refresh could move on.
    pub ready_at: Option<Instant>,
}

impl Replacement {
    /// From the old instance's termination to the new one's end of warmup, once it is over.
    pub fn step(&self) -> Option<Duration> {
        self.ready_at
            .map(|ready| ready.saturating_duration_since(self.terminating_at))
    }
}

/// An instance refresh (StartInstanceRefresh, `Strategy=Rolling`), as DescribeInstanceRefreshes shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRefresh {
    /// `InstanceRefreshId`.
    pub id: String,
    /// The group refreshed.
    pub group: String,
    /// `Status`.
    pub status: RefreshStatus,
    /// `Preferences.MinHealthyPercentage`.
    pub min_healthy_percentage: u32,
    /// `Preferences.MaxHealthyPercentage`.
    pub max_healthy_percentage: u32,
    /// `Preferences.InstanceWarmup`.
    pub instance_warmup: Duration,
    /// The group's capacity when the refresh started (every member pending or in service).
    pub capacity: usize,
    /// Instances still to replace, in the order they will be.
    pub remaining: Vec<String>,
    /// The replacements made so far, in order.
    pub replacements: Vec<Replacement>,
    /// `StartTime`.
    pub started_at: Instant,
    /// `EndTime`.
    pub ended_at: Option<Instant>,
    /// `StatusReason` (this stand-in's wording; AWS's varies).
    pub status_reason: Option<String>,
}

impl InstanceRefresh {
    /// The longest replacement so far (termination to the new instance's end of warmup).
    pub fn max_step(&self) -> Duration {
        self.replacements
            .iter()
            .filter_map(Replacement::step)
            .max()
            .unwrap_or_default()
    }

    /// `PercentageComplete`: the share of the instances to replace whose replacement is in service and warmed
    /// up (100 once `Successful`).
    pub fn percentage_complete(&self) -> u32 {
        if self.status == RefreshStatus::Successful {
            return 100;
        }
        let done = self
            .replacements
            .iter()
            .filter(|r| r.ready_at.is_some())
            .count();
        // Of the instances it set out to replace (a cancelled refresh's remainder still counts).
        let total = self.capacity.max(self.replacements.len());
        if total == 0 {
            return 0;
        }
        u32::try_from(done * 100 / total).unwrap_or(100)
    }
}

impl AutoScaling {
    /// StartInstanceRefresh (`Strategy=Rolling`): replaces every member pending or in service now, in batches
    /// that keep `MinHealthyPercentage` of the group's capacity in service and warmed up, each old instance
    /// terminated through the terminate hook before its replacement is launched; the next batch starts once the
    /// group is back at capacity with every new instance `InService` (launch hook completed) and past its
    /// `InstanceWarmup`. Returns the `InstanceRefreshId`.
    pub fn start_instance_refresh(
        &mut self,
        params: &Params,
        now: Instant,
    ) -> Result<String, ApiError> {
        self.advance(now);
        let group = params.required("AutoScalingGroupName")?.to_owned();
        let Some(spec) = self.groups.get(&group) else {
            return Err(group_not_found(&group));
        };
        let preferences = RefreshPreferences::from_params(params, spec.health_check_grace_period)?;
        if self
            .refreshes
            .iter()
            .any(|r| r.group == group && r.status.active())
        {
            return Err(ApiError {
                status: 400,
                code: "InstanceRefreshInProgress",
                message:
                    "An Instance Refresh is already in progress and blocks the execution of this \
                          Instance Refresh."
                        .into(),
            });
        }
        let remaining: Vec<String> = self
            .members
            .values()
            .filter(|slot| slot.member.group == group && active(&slot.member))
            .map(|slot| slot.member.instance_id.clone())
            .collect();
        self.tokens += 1;
        let id = format!("{:08x}-0000-4000-b000-{:012x}", self.tokens, self.tokens);
        self.record(
            "",
            format!(
                "Instance refresh {id} of {group} started: MinHealthyPercentage {}, MaxHealthyPercentage {}, \
                 InstanceWarmup {} s, {} instances to replace",
                preferences.min_healthy,
                preferences.max_healthy,
                preferences.warmup.as_secs(),
                remaining.len()
            ),
        );
        self.refreshes.push(InstanceRefresh {
            id: id.clone(),
            group,
            status: RefreshStatus::Pending,
            min_healthy_percentage: preferences.min_healthy,
            max_healthy_percentage: preferences.max_healthy,
            instance_warmup: preferences.warmup,
            capacity: remaining.len(),
            remaining,
            replacements: Vec::new(),
            started_at: now,
            ended_at: None,
            status_reason: None,
        });
        self.progress_refreshes(now);
        Ok(id)
    }

    /// CancelInstanceRefresh: the group's unfinished refresh starts no further replacement; it is `Cancelled`
    /// at once when none is under way, else `Cancelling` until the one under way is in service and warmed up.
    /// Refused with `ActiveInstanceRefreshNotFound` when the group has no refresh `Pending` or `InProgress`.
    pub fn cancel_instance_refresh(
        &mut self,
        params: &Params,
        now: Instant,
    ) -> Result<String, ApiError> {
        self.advance(now);
        let group = params.required("AutoScalingGroupName")?.to_owned();
        if !self.groups.contains_key(&group) {
            return Err(group_not_found(&group));
        }
        let Some(refresh) = self.refreshes.iter_mut().find(|r| {
            r.group == group
                && matches!(r.status, RefreshStatus::Pending | RefreshStatus::InProgress)
        }) else {
            return Err(ApiError {
                status: 400,
                code: "ActiveInstanceRefreshNotFound",
                message: format!(
                    "The request failed because an active instance refresh for the specified Auto Scaling \
                     group {group} was not found."
                ),
            });
        };
        refresh.status = RefreshStatus::Cancelling;
        refresh.status_reason =
            Some("Cancelling: the replacement under way finishes, no other starts".into());
        let id = refresh.id.clone();
        let under_way = refresh.replacements.iter().any(|r| r.ready_at.is_none());
        self.record("", format!("Instance refresh {id} of {group} cancelling"));
        match self.refreshes.iter().position(|r| r.id == id) {
            Some(index) if !under_way => self.end_refresh(index, RefreshStatus::Cancelled, now),
            _ => self.progress_refreshes(now),
        }
        Ok(id)
    }

    /// The instance refreshes of `group`, oldest first (DescribeInstanceRefreshes).
    pub fn instance_refreshes(&self, group: &str) -> Vec<InstanceRefresh> {
        self.refreshes
            .iter()
            .filter(|r| r.group == group)
            .cloned()
            .collect()
    }

    /// Moves every refresh in progress on: notes the new instances and their warmups, and starts the next batch
    /// when the group is back at capacity, in service and warmed up.
    pub(super) fn progress_refreshes(&mut self, now: Instant) {
        for index in 0..self.refreshes.len() {
            if !self.refreshes[index].status.active() {
                continue;
            }
            self.note_replacements(index, now);
            let refresh = &self.refreshes[index];
            let members: Vec<&Slot> = self
                .members
                .values()
                .filter(|slot| slot.member.group == refresh.group)
                .collect();
            // In service, and past its warmup when the refresh launched it.
            let settled = |slot: &&&Slot| {
                let id = slot.member.instance_id.as_str();
                let launched_by_refresh = refresh
                    .replacements
                    .iter()
                    .any(|r| r.new.as_deref() == Some(id));
                slot.member.state == LifecycleState::InService
                    && (!launched_by_refresh
                        || slot
                            .in_service_at
                            .is_some_and(|at| at + refresh.instance_warmup <= now))
            };
            let ready = members.iter().filter(settled).count();
            if ready < members.len() || members.len() < refresh.capacity {
                continue;
            }
            if refresh.status == RefreshStatus::Cancelling {
                self.end_refresh(index, RefreshStatus::Cancelled, now);
                continue;
            }
            let remaining: Vec<String> = refresh
                .remaining
                .iter()
                .filter(|id| self.members.contains_key(*id))
                .cloned()
                .collect();
            if remaining.is_empty() {
                self.end_refresh(index, RefreshStatus::Successful, now);
                continue;
            }
            let keep = (refresh.capacity * refresh.min_healthy_percentage as usize).div_ceil(100);
            // AWS: at 100 % the refresh still replaces one instance at a time.
            let batch = ready.saturating_sub(keep).max(1).min(remaining.len());
            let (now_replaced, later) = remaining.split_at(batch);
            let refresh = &mut self.refreshes[index];
            refresh.status = RefreshStatus::InProgress;
            refresh.remaining = later.to_vec();
            for old in now_replaced {
                refresh.replacements.push(Replacement {
                    old: old.clone(),
                    terminating_at: now,
                    new: None,
                    in_service_at: None,
                    ready_at: None,
                });
            }
            let cause = format!("an instance refresh ({})", refresh.id);
            for old in now_replaced {
                self.terminate(old, &cause, now);
            }
        }
    }

    /// Ends refresh `index` with `status` (`Successful` or `Cancelled`): nothing remains to replace.
    fn end_refresh(&mut self, index: usize, status: RefreshStatus, now: Instant) {
        let refresh = &mut self.refreshes[index];
        refresh.remaining.clear();
        refresh.status = status;
        refresh.ended_at = Some(now);
        refresh.status_reason = (status == RefreshStatus::Cancelled)
            .then(|| "Cancelled by CancelInstanceRefresh".into());
        let line = format!(
            "Instance refresh {} of {} {}",
            refresh.id,
            refresh.group,
            status.as_str().to_lowercase()
        );
        self.record("", line);
    }

    /// Attributes new members to the refresh's open replacements and records when they went in service and
    /// warmed up.
    fn note_replacements(&mut self, index: usize, now: Instant) {
        let refresh = &self.refreshes[index];
        let known: Vec<&str> = refresh
            .replacements
            .iter()
            .flat_map(|r| [Some(r.old.as_str()), r.new.as_deref()])
            .flatten()
            .chain(refresh.remaining.iter().map(String::as_str))
            .collect();
        let mut newcomers: Vec<(Instant, String)> = self
            .members
            .values()
            .filter(|slot| {
                slot.member.group == refresh.group
                    && !known.contains(&slot.member.instance_id.as_str())
                    && slot.launched >= refresh.started_at
            })
            .map(|slot| (slot.launched, slot.member.instance_id.clone()))
            .collect();
        newcomers.sort();
        let warmup = refresh.instance_warmup;
        let refresh = &mut self.refreshes[index];
        for (_, id) in newcomers {
            if let Some(open) = refresh.replacements.iter_mut().find(|r| r.new.is_none()) {
                open.new = Some(id);
            }
        }
        for replacement in &mut refresh.replacements {
            let Some(slot) = replacement.new.as_ref().and_then(|id| self.members.get(id)) else {
                continue;
            };
            replacement.in_service_at = slot.in_service_at;
            if replacement.ready_at.is_none() {
                replacement.ready_at = slot
                    .in_service_at
                    .map(|at| at + warmup)
                    .filter(|ready| *ready <= now);
            }
        }
    }
}

/// StartInstanceRefresh's preferences this model holds, checked as AWS checks them.
struct RefreshPreferences {
    min_healthy: u32,
    max_healthy: u32,
    warmup: Duration,
}

impl RefreshPreferences {
    /// AWS's ranges: MinHealthyPercentage 0-100 (default 90), MaxHealthyPercentage 100-200 and only with
    /// MinHealthyPercentage, at most 100 above it; InstanceWarmup 0-172800 s (default: the group's health check
    /// grace period). Stricter than AWS (named as this stand-in's): a strategy other than `Rolling`, a
    /// MaxHealthyPercentage above 100 (launching before terminating is not modelled) and any other preference
    /// or a desired configuration are refused.
    fn from_params(params: &Params, grace: Duration) -> Result<Self, ApiError> {
        if let Some(strategy) = params.optional("Strategy") {
            params.one_of("Strategy", &["Rolling", "ReplaceRootVolume"])?;
            if strategy != "Rolling" {
                return Err(stand_in_refuses(&format!("Strategy {strategy}")));
            }
        }
        if let Some(other) = params.0.keys().find(|key| {
            (key.starts_with("Preferences.") || key.starts_with("DesiredConfiguration"))
                && !matches!(
                    key.as_str(),
                    "Preferences.MinHealthyPercentage"
                        | "Preferences.MaxHealthyPercentage"
                        | "Preferences.InstanceWarmup"
                )
        }) {
            return Err(stand_in_refuses(other));
        }
        let number = |name: &str,
                      range: std::ops::RangeInclusive<u32>|
         -> Result<Option<u32>, ApiError> {
            let Some(text) = params.optional(name) else {
                return Ok(None);
            };
            let member = name.rsplit('.').next().unwrap_or(name);
            let member = format!("{}{}", member[..1].to_lowercase(), &member[1..]);
            match text.parse::<u32>() {
                Ok(value) if value < *range.start() => Err(ApiError::validation(format!(
                    "1 validation error detected: Value '{value}' at 'preferences.{member}' failed to satisfy \
                     constraint: Member must have value greater than or equal to {}",
                    range.start()
                ))),
                Ok(value) if value > *range.end() => Err(ApiError::validation(format!(
                    "1 validation error detected: Value '{value}' at 'preferences.{member}' failed to satisfy \
                     constraint: Member must have value less than or equal to {}",
                    range.end()
                ))),
                Ok(value) => Ok(Some(value)),
                Err(_) => Err(ApiError::validation(format!(
                    "Invalid value '{text}' for preferences.{member}: not an integer"
                ))),
            }
        };
        let min = number("Preferences.MinHealthyPercentage", 0..=100)?;
        let max = number("Preferences.MaxHealthyPercentage", 100..=200)?;
        let warmup = number("Preferences.InstanceWarmup", 0..=172_800)?;
        if let Some(max) = max {
            let Some(min) = min else {
                return Err(ApiError::validation(
                    "You must specify MinHealthyPercentage when you specify MaxHealthyPercentage.",
                ));
            };
            if max - min > 100 {
                return Err(ApiError::validation(
                    "The difference between MaxHealthyPercentage and MinHealthyPercentage cannot be greater \
                     than 100.",
                ));
            }
            if max > 100 {
                return Err(stand_in_refuses("MaxHealthyPercentage above 100"));
            }
        }
        Ok(Self {
            min_healthy: min.unwrap_or(90),
            max_healthy: max.unwrap_or(100),
            warmup: warmup.map_or(grace, |s| Duration::from_secs(u64::from(s))),
        })
    }
}

/// A preference AWS accepts and this stand-in does not model: refused rather than ignored.
pub(super) fn stand_in_refuses(what: &str) -> ApiError {
    ApiError::validation(format!(
        "{what} is not modelled by this Auto Scaling stand-in (it is NOT AWS); the call is refused rather than \
         half-served"
    ))
}

/// AWS's refusal of a group that does not exist.
pub(super) fn group_not_found(group: &str) -> ApiError {
    ApiError::validation(format!("AutoScalingGroup name not found - {group}"))
}
