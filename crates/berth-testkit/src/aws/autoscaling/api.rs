//! The Auto Scaling calls an operator makes (docs/operations.md: `aws autoscaling start-instance-refresh`,
//! `describe-instance-refreshes`, `cancel-instance-refresh`, `terminate-instance-in-auto-scaling-group`) and
//! their query-protocol results, so the real `aws` CLI can be pointed at the stand-in.
//!
//! Parameters as the API reference has them: DescribeInstanceRefreshes requires `AutoScalingGroupName` and
//! takes `InstanceRefreshIds` and `MaxRecords` (1-100), newest refresh first (so
//! `InstanceRefreshes[0]` is the latest); TerminateInstanceInAutoScalingGroup requires `InstanceId` (at most 19
//! characters) and `ShouldDecrementDesiredCapacity`, and answers the scaling activity it started. Stricter than
//! AWS (named as the stand-in's): `ShouldDecrementDesiredCapacity=true` is refused, since the simulated group's
//! desired capacity is fixed (a terminated member is always replaced); `NextToken` is refused.

use std::time::{Instant, SystemTime};

use super::refresh::{group_not_found, stand_in_refuses};
use super::spot::utc_seconds;
use super::{not_managed, AutoScaling, InstanceRefresh};
use crate::aws::query::{ApiError, Params};

impl AutoScaling {
    /// Serves one operator call: the `<Action>Result` element's content, or AWS's refusal.
    pub fn answer_operator(
        &mut self,
        action: &str,
        params: &Params,
        now: Instant,
    ) -> Result<String, ApiError> {
        match action {
            "StartInstanceRefresh" => self
                .start_instance_refresh(params, now)
                .map(|id| format!("<InstanceRefreshId>{id}</InstanceRefreshId>")),
            "CancelInstanceRefresh" => self
                .cancel_instance_refresh(params, now)
                .map(|id| format!("<InstanceRefreshId>{id}</InstanceRefreshId>")),
            "DescribeInstanceRefreshes" => self.describe_instance_refreshes(params, now),
            "TerminateInstanceInAutoScalingGroup" => self.terminate_on_request(params, now),
            other => Err(ApiError::invalid_action(other)),
        }
    }

    /// DescribeInstanceRefreshes: the group's refreshes, newest first.
    fn describe_instance_refreshes(
        &mut self,
        params: &Params,
        now: Instant,
    ) -> Result<String, ApiError> {
        self.advance(now);
        let group = params.required("AutoScalingGroupName")?;
        if !self.groups.contains_key(group) {
            return Err(group_not_found(group));
        }
        if params.optional("NextToken").is_some() {
            return Err(stand_in_refuses("NextToken"));
        }
        let max = match params.optional("MaxRecords") {
            None => 50,
            Some(text) => match text.parse::<usize>() {
                Ok(max @ 1..=100) => max,
                _ => {
                    return Err(ApiError::validation(format!(
                        "1 validation error detected: Value '{text}' at 'maxRecords' failed to satisfy \
                         constraint: Member must have value between 1 and 100"
                    )))
                }
            },
        };
        let wanted: Vec<&str> = params
            .0
            .iter()
            .filter(|(key, _)| key.starts_with("InstanceRefreshIds.member."))
            .map(|(_, value)| value.as_str())
            .collect();
        let members: String = self
            .instance_refreshes(group)
            .iter()
            .rev()
            .filter(|r| wanted.is_empty() || wanted.contains(&r.id.as_str()))
            .take(max)
            .map(|r| refresh_xml(r, now))
            .collect();
        Ok(format!("<InstanceRefreshes>{members}</InstanceRefreshes>"))
    }

    /// TerminateInstanceInAutoScalingGroup with `ShouldDecrementDesiredCapacity=false`: the member leaves
    /// through its terminate hook and the group launches a replacement.
    fn terminate_on_request(&mut self, params: &Params, now: Instant) -> Result<String, ApiError> {
        self.advance(now);
        let instance_id = params.bounded("InstanceId", 19)?.to_owned();
        let decrement = params.one_of("ShouldDecrementDesiredCapacity", &["true", "false"])?;
        if decrement == "true" {
            return Err(stand_in_refuses("ShouldDecrementDesiredCapacity=true"));
        }
        let group = self
            .member(&instance_id)
            .ok_or_else(|| not_managed(&instance_id))?
            .group;
        let started = utc_seconds(SystemTime::now());
        let cause = format!(
            "At {started} instance {instance_id} was taken out of service in response to a user request."
        );
        self.terminate(&instance_id, "user request", now);
        self.tokens += 1;
        Ok(format!(
            "<Activity><ActivityId>{:08x}-0000-4000-c000-{:012x}</ActivityId>\
             <AutoScalingGroupName>{group}</AutoScalingGroupName>\
             <Description>Terminating EC2 instance: {instance_id}</Description><Cause>{cause}</Cause>\
             <StartTime>{started}</StartTime><StatusCode>InProgress</StatusCode><Progress>0</Progress>\
             </Activity>",
            self.tokens, self.tokens
        ))
    }
}

/// One `InstanceRefresh` member of DescribeInstanceRefreshes' result.
fn refresh_xml(refresh: &InstanceRefresh, now: Instant) -> String {
    let wall = |at: Instant| utc_seconds(SystemTime::now() - now.saturating_duration_since(at));
    let reason = refresh
        .status_reason
        .as_ref()
        .map(|reason| format!("<StatusReason>{reason}</StatusReason>"))
        .unwrap_or_default();
    let ended = refresh
        .ended_at
        .map(|at| format!("<EndTime>{}</EndTime>", wall(at)))
        .unwrap_or_default();
    let to_update = refresh.remaining.len()
        + refresh
            .replacements
            .iter()
            .filter(|r| r.ready_at.is_none())
            .count();
    format!(
        "<member><InstanceRefreshId>{}</InstanceRefreshId><AutoScalingGroupName>{}</AutoScalingGroupName>\
         <Status>{}</Status>{reason}<StartTime>{}</StartTime>{ended}\
         <PercentageComplete>{}</PercentageComplete><InstancesToUpdate>{to_update}</InstancesToUpdate>\
         <Preferences><MinHealthyPercentage>{}</MinHealthyPercentage>\
         <MaxHealthyPercentage>{}</MaxHealthyPercentage><InstanceWarmup>{}</InstanceWarmup></Preferences>\
         <Strategy>Rolling</Strategy></member>",
        refresh.id,
        refresh.group,
        refresh.status.as_str(),
        wall(refresh.started_at),
        refresh.percentage_complete(),
        refresh.min_healthy_percentage,
        refresh.max_healthy_percentage,
        refresh.instance_warmup.as_secs(),
    )
}
