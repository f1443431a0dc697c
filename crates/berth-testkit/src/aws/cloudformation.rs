//! A stand-in for CloudFormation's side of resource signals (NOT CloudFormation): stacks whose resources await
//! `SignalResource` while a create or update waits for them, and refuse it otherwise, as AWS does.
//!
//! moto answers SignalResource with an HTML 500, so this model holds the contract instead. What it holds, and
//! where each rule comes from:
//!
//! * A resource with a CreationPolicy `ResourceSignal` (Count, Timeout) is `CREATE_IN_PROGRESS` until it has
//!   Count SUCCESS signals (one per UniqueId), then `CREATE_COMPLETE`; a FAILURE signal, or the timeout, fails it
//!   at once ("A failure signal causes CloudFormation to immediately fail the stack creation or update":
//!   SignalResource API reference; CreationPolicy attribute reference,
//!   <https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-attribute-creationpolicy.html>). An
//!   update with an UpdatePolicy that waits on resource signals (`WaitOnResourceSignals`, PauseTime) is the same
//!   with `UPDATE_*` states (UpdatePolicy attribute reference). The stacks are created with rollback disabled,
//!   so a failed resource stays `*_FAILED` instead of being deleted.
//! * Outside such a create or update, SignalResource is refused with `ValidationError`: "Stack <stack ARN> is in
//!   <STATUS> state and cannot be signaled" when the stack is not in progress, "Resource <LogicalId> is in
//!   <STATUS> state and cannot be signaled" when the stack is but the resource awaits nothing. The texts are
//!   AWS's as operators met them (aws-cloudformation/aws-cloudformation-templates#34 and #126,
//!   zalando-incubator/kubernetes-on-aws#538, convox/rack#2432).
//! * An unknown stack is refused with "Stack with id <name> does not exist" and an unknown resource with
//!   "Resource <LogicalId> does not exist for stack <name>", CloudFormation's texts for missing stacks and
//!   resources (DescribeStacks, DescribeStackResource).
//! * Parameters: StackName, LogicalResourceId, UniqueId (1 to 64 characters) and Status (`SUCCESS` |
//!   `FAILURE`) are required (SignalResource API reference), refused with AWS's constraint messages.
//!
//! Time is an argument of every call, so timeouts are tested without waiting.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::query::{ApiError, Params};

/// CloudFormation's XML namespace (API version 2010-05-15).
pub const NAMESPACE: &str = "http://cloudformation.amazonaws.com/doc/2010-05-15/";
/// The API version the SDK sends.
pub const VERSION: &str = "2010-05-15";

/// What a create or update waits for: a CreationPolicy `ResourceSignal`, or an UpdatePolicy waiting on signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceSignal {
    /// SUCCESS signals needed.
    pub count: u32,
    /// How long to wait for them.
    pub timeout: Duration,
}

/// A stack's or resource's status (the values of the API's `StackStatus` / `ResourceStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `CREATE_IN_PROGRESS`
    CreateInProgress,
    /// `CREATE_COMPLETE`
    CreateComplete,
    /// `CREATE_FAILED`
    CreateFailed,
    /// `UPDATE_IN_PROGRESS`
    UpdateInProgress,
    /// `UPDATE_COMPLETE`
    UpdateComplete,
    /// `UPDATE_FAILED`
    UpdateFailed,
    /// `UPDATE_ROLLBACK_IN_PROGRESS`
    UpdateRollbackInProgress,
    /// `UPDATE_ROLLBACK_COMPLETE`
    UpdateRollbackComplete,
}

impl Status {
    /// As the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::CreateInProgress => "CREATE_IN_PROGRESS",
            Status::CreateComplete => "CREATE_COMPLETE",
            Status::CreateFailed => "CREATE_FAILED",
            Status::UpdateInProgress => "UPDATE_IN_PROGRESS",
            Status::UpdateComplete => "UPDATE_COMPLETE",
            Status::UpdateFailed => "UPDATE_FAILED",
            Status::UpdateRollbackInProgress => "UPDATE_ROLLBACK_IN_PROGRESS",
            Status::UpdateRollbackComplete => "UPDATE_ROLLBACK_COMPLETE",
        }
    }

    fn in_progress(self) -> bool {
        matches!(
            self,
            Status::CreateInProgress | Status::UpdateInProgress | Status::UpdateRollbackInProgress
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Create,
    Update,
}

impl Operation {
    fn complete(self) -> Status {
        match self {
            Operation::Create => Status::CreateComplete,
            Operation::Update => Status::UpdateComplete,
        }
    }

    fn failed(self) -> Status {
        match self {
            Operation::Create => Status::CreateFailed,
            Operation::Update => Status::UpdateFailed,
        }
    }
}

#[derive(Debug, Clone)]
struct Awaiting {
    operation: Operation,
    /// SUCCESS signals that complete the resource (None: its rolling update decides, [`Stacks::roll`]).
    count: Option<u32>,
    deadline: Instant,
    successes: BTreeSet<String>,
}

#[derive(Debug, Clone)]
struct Resource {
    status: Status,
    awaiting: Option<Awaiting>,
    /// An Auto Scaling group whose desired capacity is not yet InService: it stays in progress even once its
    /// signals arrived.
    awaiting_capacity: bool,
    signals: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
struct Stack {
    id: String,
    status: Status,
    operation: Operation,
    resources: BTreeMap<String, Resource>,
    /// Declared resources whose creation has not started (the stack is in progress while any is left).
    not_started: BTreeSet<String>,
    /// Every status the stack and its resources took, oldest first (DescribeStackEvents, oldest first).
    events: Vec<(String, Status)>,
    /// A rolling update drives the stack's status ([`Stacks::roll`]).
    rolling: bool,
}

/// The stacks of one simulated account and region.
#[derive(Debug, Clone)]
pub struct Stacks {
    region: String,
    account: String,
    stacks: BTreeMap<String, Stack>,
    created: u64,
}

impl Stacks {
    /// No stacks yet, in `region` of account `123456789012`.
    pub fn new(region: &str) -> Self {
        Self {
            region: region.to_owned(),
            account: "123456789012".into(),
            stacks: BTreeMap::new(),
            created: 0,
        }
    }

    /// Creates stack `name` with the given resources (those with a policy await signals); returns its ARN.
    pub fn create(
        &mut self,
        name: &str,
        resources: &[(&str, Option<ResourceSignal>)],
        now: Instant,
    ) -> String {
        self.create_with(name, resources, BTreeSet::new(), now)
    }

    fn create_with(
        &mut self,
        name: &str,
        resources: &[(&str, Option<ResourceSignal>)],
        not_started: BTreeSet<String>,
        now: Instant,
    ) -> String {
        self.created += 1;
        let id = format!(
            "arn:aws:cloudformation:{}:{}:stack/{name}/00000000-0000-4000-8000-{:012x}",
            self.region, self.account, self.created
        );
        let resources = resources
            .iter()
            .map(|(logical, policy)| {
                let awaiting = policy.map(|policy| awaiting(Operation::Create, policy, now));
                let status = if awaiting.is_some() {
                    Status::CreateInProgress
                } else {
                    Status::CreateComplete
                };
                let resource = Resource {
                    status,
                    awaiting,
                    awaiting_capacity: false,
                    signals: Vec::new(),
                };
                ((*logical).to_owned(), resource)
            })
            .collect();
        let mut stack = Stack {
            id: id.clone(),
            status: Status::CreateInProgress,
            operation: Operation::Create,
            resources,
            not_started,
            events: Vec::new(),
            rolling: false,
        };
        settle(&mut stack);
        self.stacks.insert(name.to_owned(), stack);
        id
    }

    /// Creates stack `name` from a template whose resources `declared` are created later, each when
    /// [`Stacks::start_group`] says so: `CREATE_IN_PROGRESS` until every one of them is complete.
    pub fn create_declared(&mut self, name: &str, declared: &[&str], now: Instant) -> String {
        let declared = declared.iter().map(|id| (*id).to_owned()).collect();
        self.create_with(name, &[], declared, now)
    }

    /// The creation of Auto Scaling group `logical_id` of stack `name` starts: `CREATE_IN_PROGRESS` until its
    /// desired capacity is InService ([`Stacks::capacity_reached`]) and, with a CreationPolicy, its signals
    /// arrived (the `DesiredCapacity` property and CreationPolicy attribute references).
    pub fn start_group(
        &mut self,
        name: &str,
        logical_id: &str,
        policy: Option<ResourceSignal>,
        now: Instant,
    ) -> Result<(), String> {
        let stack = self
            .stacks
            .get_mut(name)
            .ok_or_else(|| format!("no stack {name}"))?;
        if !stack.not_started.remove(logical_id) {
            return Err(format!(
                "{logical_id} is not a resource of {name} still to create"
            ));
        }
        let resource = Resource {
            status: Status::CreateInProgress,
            awaiting: policy.map(|policy| awaiting(Operation::Create, policy, now)),
            awaiting_capacity: true,
            signals: Vec::new(),
        };
        stack.resources.insert(logical_id.to_owned(), resource);
        settle(stack);
        Ok(())
    }

    /// Group `logical_id`'s desired capacity is InService: its creation completes once no signal is awaited.
    pub fn capacity_reached(&mut self, name: &str, logical_id: &str) {
        if let Some(stack) = self.stacks.get_mut(name) {
            if let Some(resource) = stack.resources.get_mut(logical_id) {
                resource.awaiting_capacity = false;
                if resource.status == Status::CreateInProgress && resource.awaiting.is_none() {
                    resource.status = Status::CreateComplete;
                }
            }
            settle(stack);
        }
    }

    /// Starts an update of stack `name` in which `logical_id` waits for `policy`'s signals (an UpdatePolicy
    /// with `WaitOnResourceSignals`). The stack must be complete.
    pub fn begin_update(
        &mut self,
        name: &str,
        logical_id: &str,
        policy: ResourceSignal,
        now: Instant,
    ) -> Result<(), String> {
        let stack = self
            .stacks
            .get_mut(name)
            .ok_or_else(|| format!("no stack {name}"))?;
        if stack.status.in_progress() {
            return Err(format!("stack {name} is {}", stack.status.as_str()));
        }
        let resource = stack
            .resources
            .get_mut(logical_id)
            .ok_or_else(|| format!("no resource {logical_id}"))?;
        resource.status = Status::UpdateInProgress;
        resource.awaiting = Some(awaiting(Operation::Update, policy, now));
        stack.status = Status::UpdateInProgress;
        stack.operation = Operation::Update;
        settle(stack);
        Ok(())
    }

    /// Stack `name`, complete, starts a rolling update whose decisions the caller makes (the simulated
    /// CloudFormation's [`crate::aws::template::update`]): `UPDATE_IN_PROGRESS` until [`Stacks::roll`] says
    /// otherwise.
    pub fn begin_rolling_update(&mut self, name: &str) -> Result<(), String> {
        let stack = self
            .stacks
            .get_mut(name)
            .ok_or_else(|| format!("no stack {name}"))?;
        if stack.status.in_progress() {
            return Err(format!("stack {name} is {}", stack.status.as_str()));
        }
        stack.status = Status::UpdateInProgress;
        stack.operation = Operation::Update;
        stack.rolling = true;
        settle(stack);
        Ok(())
    }

    /// A rolling update's step on stack `name`: `logical_id` (None: the stack itself) takes `status`. A resource
    /// set in progress takes every signal sent to it from now on (read with [`Stacks::signals`]) and decides
    /// nothing; the stack's end (`UPDATE_COMPLETE`, `UPDATE_ROLLBACK_COMPLETE`) ends the rolling update.
    pub fn roll(
        &mut self,
        name: &str,
        logical_id: Option<&str>,
        status: Status,
        now: Instant,
    ) -> Result<(), String> {
        let stack = self
            .stacks
            .get_mut(name)
            .filter(|stack| stack.rolling)
            .ok_or_else(|| format!("no rolling update of stack {name}"))?;
        match logical_id {
            None => {
                stack.status = status;
                stack.rolling = status.in_progress();
            }
            Some(id) => {
                let resource = stack
                    .resources
                    .get_mut(id)
                    .ok_or_else(|| format!("no resource {id} in {name}"))?;
                resource.status = status;
                resource.awaiting = status.in_progress().then(|| Awaiting {
                    operation: Operation::Update,
                    count: None,
                    deadline: now,
                    successes: BTreeSet::new(),
                });
            }
        }
        settle(stack);
        Ok(())
    }

    /// SignalResource, with AWS's refusals (see the module docs).
    pub fn signal(&mut self, params: &Params, now: Instant) -> Result<(), ApiError> {
        self.expire(now);
        let name = params.required("StackName")?;
        let logical = params.required("LogicalResourceId")?;
        let unique_id = params.bounded("UniqueId", 64)?;
        let status = params.one_of("Status", &["SUCCESS", "FAILURE"])?;
        // A stack is named by its name or its ARN.
        let key = if name.starts_with("arn:") {
            self.stacks
                .iter()
                .find(|(_, stack)| stack.id == name)
                .map(|(key, _)| key.clone())
        } else {
            Some(name.to_owned())
        };
        let stack = key
            .and_then(|key| self.stacks.get_mut(&key))
            .ok_or_else(|| ApiError::validation(format!("Stack with id {name} does not exist")))?;
        if !stack.status.in_progress() {
            return Err(ApiError::validation(format!(
                "Stack {} is in {} state and cannot be signaled",
                stack.id,
                stack.status.as_str()
            )));
        }
        let stack_name = name.rsplit('/').nth(1).unwrap_or(name).to_owned();
        let resource = stack.resources.get_mut(logical).ok_or_else(|| {
            ApiError::validation(format!(
                "Resource {logical} does not exist for stack {stack_name}"
            ))
        })?;
        let Some(awaiting) = resource.awaiting.as_mut() else {
            return Err(ApiError::validation(format!(
                "Resource {logical} is in {} state and cannot be signaled",
                resource.status.as_str()
            )));
        };
        resource
            .signals
            .push((unique_id.to_owned(), status.to_owned()));
        if status == "FAILURE" {
            if awaiting.count.is_some() {
                resource.status = awaiting.operation.failed();
                resource.awaiting = None;
            }
        } else {
            awaiting.successes.insert(unique_id.to_owned());
            if awaiting
                .count
                .is_some_and(|count| awaiting.successes.len() as u32 >= count)
            {
                if !resource.awaiting_capacity {
                    resource.status = awaiting.operation.complete();
                }
                resource.awaiting = None;
            }
        }
        settle(stack);
        Ok(())
    }

    /// Applies the timeouts that have passed: a resource still short of signals fails, and its stack with it
    /// ("Failed to receive N resource signal(s) ... Each resource signal timeout is counted as a FAILURE").
    pub fn expire(&mut self, now: Instant) {
        for stack in self.stacks.values_mut() {
            for resource in stack.resources.values_mut() {
                if let Some(awaiting) = &resource.awaiting {
                    if awaiting.count.is_some() && now >= awaiting.deadline {
                        resource.status = awaiting.operation.failed();
                        resource.awaiting = None;
                    }
                }
            }
            settle(stack);
        }
    }

    /// The earliest signal timeout still pending.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.stacks
            .values()
            .flat_map(|stack| stack.resources.values())
            .filter_map(|resource| resource.awaiting.as_ref())
            .filter(|a| a.count.is_some())
            .map(|a| a.deadline)
            .min()
    }

    /// A stack's status.
    pub fn status(&self, name: &str) -> Option<Status> {
        self.stacks.get(name).map(|stack| stack.status)
    }

    /// A resource's status.
    pub fn resource_status(&self, name: &str, logical_id: &str) -> Option<Status> {
        self.stacks
            .get(name)
            .and_then(|stack| stack.resources.get(logical_id))
            .map(|resource| resource.status)
    }

    /// The signals a resource took, in order: (UniqueId, Status).
    pub fn signals(&self, name: &str, logical_id: &str) -> Vec<(String, String)> {
        self.stacks
            .get(name)
            .and_then(|stack| stack.resources.get(logical_id))
            .map(|resource| resource.signals.clone())
            .unwrap_or_default()
    }

    /// Every status stack `name` and its resources took, oldest first: (logical id, status), the stack itself
    /// named by its name, as DescribeStackEvents lists them (newest first there).
    pub fn events(&self, name: &str) -> Vec<(String, Status)> {
        self.stacks
            .get(name)
            .map(|stack| stack.events.clone())
            .unwrap_or_default()
    }

    /// A stack's ARN.
    pub fn id(&self, name: &str) -> Option<String> {
        self.stacks.get(name).map(|stack| stack.id.clone())
    }
}

fn awaiting(operation: Operation, policy: ResourceSignal, now: Instant) -> Awaiting {
    Awaiting {
        operation,
        count: Some(policy.count),
        deadline: now + policy.timeout,
        successes: BTreeSet::new(),
    }
}

/// Records each status the stack or one of its resources took since the last event.
fn record_events(stack: &mut Stack) {
    let last = |events: &[(String, Status)], logical_id: &str| {
        events
            .iter()
            .rev()
            .find(|(id, _)| id == logical_id)
            .map(|(_, status)| *status)
    };
    let name = stack.id.rsplit('/').nth(1).unwrap_or_default().to_owned();
    let mut changed: Vec<(String, Status)> = stack
        .resources
        .iter()
        .filter(|(id, resource)| last(&stack.events, id) != Some(resource.status))
        .map(|(id, resource)| (id.clone(), resource.status))
        .collect();
    if last(&stack.events, &name) != Some(stack.status) {
        changed.push((name, stack.status));
    }
    stack.events.extend(changed);
}

/// The stack's status follows its resources: failed as soon as one failed, complete when every declared one
/// was created and none is still in progress.
fn settle(stack: &mut Stack) {
    record_events(stack);
    if !stack.status.in_progress() || stack.rolling {
        return;
    }
    let operation = stack.operation;
    if stack
        .resources
        .values()
        .any(|resource| resource.status == operation.failed())
    {
        stack.status = operation.failed();
    } else if stack.not_started.is_empty()
        && stack
            .resources
            .values()
            .all(|resource| !resource.status.in_progress())
    {
        stack.status = operation.complete();
    }
    record_events(stack);
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "kafka";

    fn signal(unique_id: &str, status: &str) -> Params {
        Params::from_pairs(&[
            ("StackName", NAME),
            ("LogicalResourceId", "Brokers"),
            ("UniqueId", unique_id),
            ("Status", status),
        ])
    }

    fn policy(count: u32, seconds: u64) -> ResourceSignal {
        ResourceSignal {
            count,
            timeout: Duration::from_secs(seconds),
        }
    }

    fn created(count: u32, now: Instant) -> Stacks {
        let mut stacks = Stacks::new("us-east-1");
        stacks.create(
            NAME,
            &[("Brokers", Some(policy(count, 900))), ("Eni0", None)],
            now,
        );
        stacks
    }

    #[test]
    fn a_create_takes_its_count_of_signals_then_refuses_more() {
        let now = Instant::now();
        let mut stacks = created(2, now);
        stacks.signal(&signal("i-1", "SUCCESS"), now).unwrap();
        stacks.signal(&signal("i-1", "SUCCESS"), now).unwrap();
        assert_eq!(
            stacks.status(NAME),
            Some(Status::CreateInProgress),
            "one UniqueId counts once"
        );
        stacks.signal(&signal("i-2", "SUCCESS"), now).unwrap();
        assert_eq!(stacks.status(NAME), Some(Status::CreateComplete));
        let refused = stacks.signal(&signal("i-3", "SUCCESS"), now).unwrap_err();
        assert_eq!(refused.code, "ValidationError");
        assert_eq!(
            refused.message,
            format!(
                "Stack {} is in CREATE_COMPLETE state and cannot be signaled",
                stacks.id(NAME).unwrap()
            )
        );
    }

    #[test]
    fn a_resource_that_awaits_nothing_is_refused_while_its_stack_updates() {
        let now = Instant::now();
        let mut stacks = created(1, now);
        stacks.signal(&signal("i-1", "SUCCESS"), now).unwrap();
        stacks
            .begin_update(NAME, "Eni0", policy(1, 60), now)
            .unwrap();
        let refused = stacks.signal(&signal("i-2", "SUCCESS"), now).unwrap_err();
        assert_eq!(
            refused.message,
            "Resource Brokers is in CREATE_COMPLETE state and cannot be signaled"
        );
    }

    #[test]
    fn an_update_waiting_on_signals_takes_them() {
        let now = Instant::now();
        let mut stacks = created(1, now);
        stacks.signal(&signal("i-1", "SUCCESS"), now).unwrap();
        stacks
            .begin_update(NAME, "Brokers", policy(1, 60), now)
            .unwrap();
        stacks.signal(&signal("i-2", "SUCCESS"), now).unwrap();
        assert_eq!(stacks.status(NAME), Some(Status::UpdateComplete));
        assert_eq!(
            stacks.resource_status(NAME, "Brokers"),
            Some(Status::UpdateComplete)
        );
    }

    #[test]
    fn failure_or_timeout_fails_the_create_and_later_signals_are_refused() {
        let now = Instant::now();
        let mut stacks = created(3, now);
        stacks.signal(&signal("i-1", "FAILURE"), now).unwrap();
        assert_eq!(stacks.status(NAME), Some(Status::CreateFailed));
        let refused = stacks.signal(&signal("i-2", "SUCCESS"), now).unwrap_err();
        assert!(refused
            .message
            .ends_with("is in CREATE_FAILED state and cannot be signaled"));

        let mut stacks = created(3, now);
        stacks.signal(&signal("i-1", "SUCCESS"), now).unwrap();
        assert_eq!(stacks.next_deadline(), Some(now + Duration::from_secs(900)));
        let late = now + Duration::from_secs(900);
        let refused = stacks.signal(&signal("i-2", "SUCCESS"), late).unwrap_err();
        assert!(refused.message.contains("CREATE_FAILED"), "{refused}");
        assert_eq!(
            stacks.resource_status(NAME, "Brokers"),
            Some(Status::CreateFailed)
        );
    }

    #[test]
    fn unknown_names_and_bad_parameters_are_refused_with_aws_texts() {
        let now = Instant::now();
        let mut stacks = created(1, now);
        let mut params = signal("i-1", "SUCCESS");
        params.0.insert("StackName".into(), "other".into());
        assert_eq!(
            stacks.signal(&params, now).unwrap_err().message,
            "Stack with id other does not exist"
        );
        let mut params = signal("i-1", "SUCCESS");
        params.0.insert("LogicalResourceId".into(), "Nope".into());
        assert_eq!(
            stacks.signal(&params, now).unwrap_err().message,
            "Resource Nope does not exist for stack kafka"
        );
        let refused = stacks.signal(&signal("i-1", "OK"), now).unwrap_err();
        assert!(
            refused
                .message
                .contains("enum value set: [SUCCESS, FAILURE]"),
            "{refused}"
        );
        let refused = stacks
            .signal(&signal(&"i".repeat(65), "SUCCESS"), now)
            .unwrap_err();
        assert!(
            refused.message.contains("less than or equal to 64"),
            "{refused}"
        );
        let mut params = signal("i-1", "SUCCESS");
        params.0.remove("UniqueId");
        assert!(stacks
            .signal(&params, now)
            .unwrap_err()
            .message
            .contains("Value null at 'uniqueId'"));
        let by_arn = stacks.id(NAME).unwrap();
        let mut params = signal("i-1", "SUCCESS");
        params.0.insert("StackName".into(), by_arn);
        stacks
            .signal(&params, now)
            .expect("a stack is named by its ARN too");
    }

    /// A stack created from a template: a group is in progress until its desired capacity is InService AND its
    /// CreationPolicy's signals arrived (either order), a group not yet started cannot be signalled, and the
    /// stack completes only once every declared group did (`DesiredCapacity` property; CreationPolicy).
    #[test]
    fn a_declared_group_completes_with_its_capacity_and_its_signals() {
        let now = Instant::now();
        let mut stacks = Stacks::new("us-east-1");
        stacks.create_declared(NAME, &["Group0", "Brokers"], now);
        assert_eq!(stacks.status(NAME), Some(Status::CreateInProgress));
        let refused = stacks.signal(&signal("i-1", "SUCCESS"), now).unwrap_err();
        assert_eq!(
            refused.message, "Resource Brokers does not exist for stack kafka",
            "a group whose creation has not started is not yet a resource of the stack"
        );
        stacks.start_group(NAME, "Group0", None, now).unwrap();
        assert_eq!(
            stacks.resource_status(NAME, "Group0"),
            Some(Status::CreateInProgress),
            "no signal awaited, but its capacity is not InService yet"
        );
        stacks.capacity_reached(NAME, "Group0");
        assert_eq!(
            stacks.resource_status(NAME, "Group0"),
            Some(Status::CreateComplete)
        );
        assert_eq!(
            stacks.status(NAME),
            Some(Status::CreateInProgress),
            "Brokers is declared and not created yet"
        );
        stacks
            .start_group(NAME, "Brokers", Some(policy(1, 900)), now)
            .unwrap();
        stacks.signal(&signal("i-1", "SUCCESS"), now).unwrap();
        assert_eq!(
            stacks.resource_status(NAME, "Brokers"),
            Some(Status::CreateInProgress),
            "its signal arrived before its capacity was InService"
        );
        stacks.capacity_reached(NAME, "Brokers");
        assert_eq!(
            stacks.resource_status(NAME, "Brokers"),
            Some(Status::CreateComplete)
        );
        assert_eq!(stacks.status(NAME), Some(Status::CreateComplete));
        assert!(
            stacks.start_group(NAME, "Brokers", None, now).is_err(),
            "created once"
        );
        let events: Vec<String> = stacks
            .events(NAME)
            .into_iter()
            .map(|(id, status)| format!("{id} {}", status.as_str()))
            .collect();
        assert_eq!(
            events,
            [
                "kafka CREATE_IN_PROGRESS",
                "Group0 CREATE_IN_PROGRESS",
                "Group0 CREATE_COMPLETE",
                "Brokers CREATE_IN_PROGRESS",
                "Brokers CREATE_COMPLETE",
                "kafka CREATE_COMPLETE",
            ]
        );
    }
}
