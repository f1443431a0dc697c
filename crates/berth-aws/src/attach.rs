//! Attaching and detaching the id's ENI and volume, with the takeover rule.
//!
//! An attachment is berth's second lock: EC2 refuses to attach what is in use. Each call starts by describing
//! the resource (so a restarted daemon converges), then:
//! * attached here: success;
//! * available: attach, then poll until `attached` (backoff 250 ms doubling to 2 s, jittered);
//! * attached to another instance: describe that instance and apply the takeover rule ([`crate::takeover`]):
//!   a terminated owner is force-detached at once, a shutting-down one after `aws.takeover_wait` unless it lets
//!   go first, an unknown one after [`UNKNOWN_OWNER_BOUND`]; a live owner is never touched. Until then the
//!   call fails Retryable naming the owner, and the state machine retries until its deadline.
//! * a volume with multi-attach enabled, or an attachment with DeleteOnTermination: refused (Fatal), named.
//!
//! A resource in another AZ than this instance is refused before any API call. ENI and volume share one loop;
//! only the three EC2 calls that differ are per kind.
//!
//! [`Attacher::request_volume`] is one pass of the same loop without the wait: it is sent while the ENI
//! attaches, so the volume's attachment runs alongside; `attach_volume` then observes it and waits.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use berth_core::facts::{Attachment, EniFacts, Identity, VolumeFacts};
use berth_core::ports::{Deadline, VolumeRequest};
use berth_core::retry::{stable_hash, Jitter, RetryPolicy};

use crate::discovery::{eni_facts, filter, volume_facts};
use crate::error::AwsError;
use crate::takeover::{attachment_hazard, OwnerWatch};
pub use crate::takeover::{judge_owner, OwnerVerdict, UNKNOWN_OWNER_BOUND};

/// How long a drain waits for its own detach to complete before reporting a retryable error.
const DETACH_WAIT: Duration = Duration::from_secs(60);

/// Poll backoff while waiting for an attachment state (deadline unused: the caller's deadline rules).
const ATTACH_POLL: RetryPolicy = RetryPolicy {
    initial: Duration::from_millis(250),
    max: Duration::from_secs(2),
    multiplier: 2.0,
    deadline: Duration::MAX,
};

/// Where the id's ENI and volume are attached, and whose attachments may be taken over (`aws.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachSettings {
    /// ENI device index.
    pub device_index: i32,
    /// ENI network card index.
    pub network_card: i32,
    /// Requested volume device name.
    pub volume_device: String,
    /// Owner states that allow a forced detach.
    pub takeover_owner_states: Vec<String>,
    /// How long a shutting-down owner is given to terminate or let go before the forced detach.
    pub takeover_wait: Duration,
}

/// The resource being attached.
#[derive(Debug, Clone, Copy)]
enum Target<'a> {
    Eni(&'a EniFacts),
    Volume(&'a VolumeFacts),
}

impl Target<'_> {
    fn id(&self) -> &str {
        match self {
            Target::Eni(eni) => &eni.eni_id,
            Target::Volume(volume) => &volume.volume_id,
        }
    }

    fn zone(&self) -> &str {
        match self {
            Target::Eni(eni) => &eni.availability_zone,
            Target::Volume(volume) => &volume.availability_zone,
        }
    }
}

/// What one describe showed; `hazard`: why berth must not use it ([`attachment_hazard`]).
#[derive(Debug, Clone)]
enum Observed {
    Eni {
        facts: EniFacts,
        attachment_id: Option<String>,
        hazard: Option<String>,
    },
    Volume {
        facts: VolumeFacts,
        hazard: Option<String>,
    },
}

impl Observed {
    fn attachment(&self) -> Option<&Attachment> {
        match self {
            Observed::Eni { facts, .. } => facts.attachment.as_ref(),
            Observed::Volume { facts, .. } => facts.attachment.as_ref(),
        }
    }

    fn hazard(&self) -> Option<&str> {
        match self {
            Observed::Eni { hazard, .. } | Observed::Volume { hazard, .. } => hazard.as_deref(),
        }
    }
}

/// What one pass of the attach rules found or did.
#[derive(Debug)]
enum Pass {
    /// Attached here.
    Attached(Observed),
    /// A request was sent (what), and the state it leaves.
    Acted { sent: String, state: String },
    /// Nothing sent; the state observed.
    Unchanged(String),
}

/// Refuses a resource in another zone than this instance, before any API call.
fn check_zone(me: &Identity, target: Target<'_>) -> Result<(), AwsError> {
    if target.zone() == me.availability_zone {
        return Ok(());
    }
    Err(AwsError::WrongZone {
        resource: target.id().to_owned(),
        resource_az: target.zone().to_owned(),
        instance_id: me.instance_id.clone(),
        instance_az: me.availability_zone.clone(),
    })
}

/// Sleeps between polls with jittered exponential backoff, never past the deadline.
struct Poller {
    policy: RetryPolicy,
    jitter: Jitter,
    attempt: u32,
}

impl Poller {
    fn new(policy: RetryPolicy, seed: &str) -> Self {
        Self {
            policy,
            jitter: Jitter::new(stable_hash(seed)),
            attempt: 0,
        }
    }

    /// Starts the backoff over (after berth itself changed something, the next change comes soon).
    fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Waits before the next poll; false when the deadline has passed.
    async fn wait(&mut self, deadline: Deadline) -> bool {
        if deadline.expired() {
            return false;
        }
        self.attempt += 1;
        let delay = self
            .policy
            .delay(self.attempt, &mut self.jitter)
            .min(deadline.remaining());
        tokio::time::sleep(delay).await;
        true
    }
}

/// EC2 attachment operations for one instance's adapter.
#[derive(Debug, Clone)]
pub struct Attacher {
    ec2: aws_sdk_ec2::Client,
    settings: AttachSettings,
    /// Per resource: the attachment last seen with an owner unknown or shutting down, and since when.
    owners: Arc<OwnerWatch>,
}

impl Attacher {
    /// An attacher over an EC2 client.
    pub fn new(ec2: aws_sdk_ec2::Client, settings: AttachSettings) -> Self {
        Self {
            ec2,
            settings,
            owners: Arc::default(),
        }
    }

    /// The settings it was made with.
    pub fn settings(&self) -> &AttachSettings {
        &self.settings
    }

    /// Attaches the ENI here (see the module docs for the rules).
    pub async fn attach_eni(
        &self,
        me: &Identity,
        eni: &EniFacts,
        deadline: Deadline,
    ) -> Result<EniFacts, AwsError> {
        match self.attach(me, Target::Eni(eni), deadline).await? {
            Observed::Eni { facts, .. } => Ok(facts),
            Observed::Volume { .. } => unreachable!("an ENI target is observed as an ENI"),
        }
    }

    /// Attaches the volume here; returns it with the device name it is attached under.
    pub async fn attach_volume(
        &self,
        me: &Identity,
        volume: &VolumeFacts,
        deadline: Deadline,
    ) -> Result<(VolumeFacts, String), AwsError> {
        match self.attach(me, Target::Volume(volume), deadline).await? {
            Observed::Volume { facts, .. } => {
                let device = facts
                    .attachment
                    .as_ref()
                    .map(|a| a.slot.clone())
                    .filter(|slot| !slot.is_empty())
                    .unwrap_or_else(|| self.settings.volume_device.clone());
                Ok((facts, device))
            }
            Observed::Eni { .. } => unreachable!("a volume target is observed as a volume"),
        }
    }

    /// Whether EC2 shows the ENI attached or attaching to this instance now.
    pub async fn eni_attached_here(&self, me: &Identity, eni: &EniFacts) -> Result<bool, AwsError> {
        let observed = match self.describe(Target::Eni(eni)).await {
            Err(AwsError::NotFound { .. }) => return Ok(false),
            other => other?,
        };
        Ok(observed.attachment().is_some_and(|attachment| {
            attachment.instance_id == me.instance_id
                && matches!(attachment.state.as_str(), "attaching" | "attached")
        }))
    }

    /// Asks EC2 once to attach the ENI here, without waiting (the `ec2` claim backend's claim attempt): EC2
    /// refuses with `InvalidNetworkInterface.InUse` when another instance holds it.
    pub async fn request_eni_attach(&self, me: &Identity, eni: &EniFacts) -> Result<(), AwsError> {
        self.attach_call(me, Target::Eni(eni)).await
    }

    /// The states of these instances; one DescribeInstances does not return is absent (unknown, not terminated).
    pub async fn instance_states(
        &self,
        instance_ids: &[String],
    ) -> Result<std::collections::BTreeMap<String, String>, AwsError> {
        let output = self
            .ec2
            .describe_instances()
            .filters(filter("instance-id", instance_ids))
            .send()
            .await
            .map_err(|e| AwsError::api("DescribeInstances", instance_ids.join(","), e))?;
        let mut states = std::collections::BTreeMap::new();
        for instance in output.reservations().iter().flat_map(|r| r.instances()) {
            if let (Some(id), Some(state)) = (
                instance.instance_id(),
                instance.state().and_then(|s| s.name()),
            ) {
                states.insert(id.to_owned(), state.as_str().to_owned());
            }
        }
        Ok(states)
    }

    /// Detaches the ENI from this instance and waits until it has let go (not attached here is success).
    pub async fn detach_eni(&self, me: &Identity, eni: &EniFacts) -> Result<(), AwsError> {
        self.detach(me, Target::Eni(eni)).await
    }

    /// Detaches the volume from this instance and waits until it has let go (not attached here is success).
    pub async fn detach_volume(&self, me: &Identity, volume: &VolumeFacts) -> Result<(), AwsError> {
        self.detach(me, Target::Volume(volume)).await
    }

    async fn attach(
        &self,
        me: &Identity,
        target: Target<'_>,
        deadline: Deadline,
    ) -> Result<Observed, AwsError> {
        check_zone(me, target)?;
        let mut poller = Poller::new(ATTACH_POLL, &format!("{}/{}", me.instance_id, target.id()));
        loop {
            let last_state = match self.attach_pass(me, target).await? {
                Pass::Attached(observed) => return Ok(observed),
                Pass::Acted { state, .. } => {
                    poller.reset();
                    state
                }
                Pass::Unchanged(state) => state,
            };
            berth_core::progress::report(format!(
                "{}: {last_state}; waiting for it to be attached to {}",
                target.id(),
                me.instance_id
            ));
            if !poller.wait(deadline).await {
                return Err(AwsError::WaitTimeout {
                    resource: target.id().to_owned(),
                    state: last_state,
                    wanted: "attached",
                });
            }
        }
    }

    /// One pass of [`Attacher::attach`]'s rules, without waiting: observe the volume, then request its
    /// attachment here (or the force-detach the takeover rule allows from a dying owner). A live owner is an
    /// error, as in `attach_volume`; a volume in another zone is refused before any call.
    pub async fn request_volume(
        &self,
        me: &Identity,
        volume: &VolumeFacts,
    ) -> Result<VolumeRequest, AwsError> {
        let target = Target::Volume(volume);
        check_zone(me, target)?;
        Ok(match self.attach_pass(me, target).await? {
            Pass::Attached(_) => VolumeRequest::AlreadyAttached,
            Pass::Acted { sent, .. } => VolumeRequest::Sent(sent),
            Pass::Unchanged(state) => VolumeRequest::NothingSent(state),
        })
    }

    /// Observes the resource once and makes at most one request towards attaching it here.
    async fn attach_pass(&self, me: &Identity, target: Target<'_>) -> Result<Pass, AwsError> {
        let observed = self.describe(target).await?;
        if let Some(hazard) = observed.hazard() {
            return Err(AwsError::Unsafe {
                resource: target.id().to_owned(),
                reason: hazard.to_owned(),
            });
        }
        Ok(match observed.attachment() {
            Some(attachment) if attachment.instance_id == me.instance_id => {
                if attachment.state == "attached" {
                    return Ok(Pass::Attached(observed));
                }
                Pass::Unchanged(attachment.state.clone())
            }
            Some(attachment) => {
                let state = format!("{} on {}", attachment.state, attachment.instance_id);
                if attachment.state == "detaching" {
                    return Ok(Pass::Unchanged(state));
                }
                self.take_over(target, &observed, attachment).await?;
                Pass::Acted {
                    sent: format!("a forced detach from {}", attachment.instance_id),
                    state,
                }
            }
            None => match self.attach_call(me, target).await {
                Ok(()) => {
                    tracing::info!(resource = target.id(), instance_id = %me.instance_id, "attach requested");
                    Pass::Acted {
                        sent: format!("an attach to {}", me.instance_id),
                        state: "attaching".into(),
                    }
                }
                // Another host won a race since our describe: observe again after a pause.
                Err(error)
                    if matches!(
                        error.code(),
                        Some("InvalidNetworkInterface.InUse" | "VolumeInUse")
                    ) =>
                {
                    tracing::info!(resource = target.id(), %error, "attach raced with another instance");
                    Pass::Unchanged("in use by another instance (attach raced)".into())
                }
                Err(error) => return Err(error),
            },
        })
    }

    /// Force-detaches from an owner in a takeover state; refuses (Retryable) for any other owner.
    /// Applies the takeover rule to the owner of `attachment`: why it may be force-detached, or the error that
    /// says why not.
    async fn may_take_over(
        &self,
        target: Target<'_>,
        observed: &Observed,
        attachment: &Attachment,
    ) -> Result<String, AwsError> {
        let owner = &attachment.instance_id;
        let owner_state = if owner.is_empty() {
            None
        } else {
            self.instance_state(owner).await?
        };
        let identity = match observed {
            Observed::Eni { attachment_id, .. } => attachment_id.clone().unwrap_or_default(),
            Observed::Volume { .. } => String::new(),
        };
        // The clock runs while the same attachment stands with its owner unknown, or shutting down.
        let watched = match owner_state.as_deref() {
            None => Some("unknown"),
            Some("shutting-down") => Some("shutting-down"),
            Some(_) => None,
        };
        let seen_for = self.owners.seen_for(
            target.id(),
            watched.map(|state| format!("{owner} {} {identity} {state}", attachment.slot)),
        );
        match judge_owner(
            owner_state.as_deref(),
            &self.settings.takeover_owner_states,
            seen_for,
            self.settings.takeover_wait,
        ) {
            OwnerVerdict::TakeOver(reason) => {
                self.owners.seen_for(target.id(), None);
                Ok(reason)
            }
            OwnerVerdict::Wait(owner_state) => Err(AwsError::OwnerAlive {
                resource: target.id().to_owned(),
                owner: owner.clone(),
                owner_state,
            }),
        }
    }

    async fn take_over(
        &self,
        target: Target<'_>,
        observed: &Observed,
        attachment: &Attachment,
    ) -> Result<(), AwsError> {
        let owner = &attachment.instance_id;
        let reason = self.may_take_over(target, observed, attachment).await?;
        tracing::warn!(
            resource = target.id(),
            owner = %owner,
            "taking over: force-detaching from {owner}: {reason}"
        );
        self.detach_call(owner, observed, attachment, true).await
    }

    async fn detach(&self, me: &Identity, target: Target<'_>) -> Result<(), AwsError> {
        let deadline = Deadline::after(DETACH_WAIT);
        let mut poller = Poller::new(
            ATTACH_POLL,
            &format!("{}/{}/detach", me.instance_id, target.id()),
        );
        let mut requested = false;
        loop {
            let observed = match self.describe(target).await {
                Err(AwsError::NotFound { .. }) => return Ok(()),
                other => other?,
            };
            let Some(attachment) = observed
                .attachment()
                .filter(|a| a.instance_id == me.instance_id)
            else {
                return Ok(());
            };
            if !requested && attachment.state != "detaching" {
                self.detach_call(&me.instance_id, &observed, attachment, false)
                    .await?;
                tracing::info!(resource = target.id(), instance_id = %me.instance_id, "detach requested");
                requested = true;
            }
            let state = attachment.state.clone();
            if !poller.wait(deadline).await {
                return Err(AwsError::WaitTimeout {
                    resource: target.id().to_owned(),
                    state,
                    wanted: "detached",
                });
            }
        }
    }

    /// Detaches the observed resource from `owner` (forced when taking over from a dying owner); an
    /// attachment already gone by the time it is asked for is success (observe again).
    async fn detach_call(
        &self,
        owner: &str,
        observed: &Observed,
        attachment: &Attachment,
        force: bool,
    ) -> Result<(), AwsError> {
        let result = match observed {
            Observed::Eni {
                facts,
                attachment_id,
                ..
            } => {
                let context = format!("{} from {owner}", facts.eni_id);
                let Some(attachment_id) = attachment_id else {
                    return Err(AwsError::malformed(
                        "DescribeNetworkInterfaces",
                        &facts.eni_id,
                        "Attachment.AttachmentId",
                    ));
                };
                self.ec2
                    .detach_network_interface()
                    .attachment_id(attachment_id)
                    .force(force)
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| AwsError::api("DetachNetworkInterface", context, e))
            }
            Observed::Volume { facts, .. } => {
                let context = format!("{} from {owner}", facts.volume_id);
                self.ec2
                    .detach_volume()
                    .volume_id(&facts.volume_id)
                    .instance_id(owner)
                    .device(&attachment.slot)
                    .force(force)
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| AwsError::api("DetachVolume", context, e))
            }
        };
        match result {
            Err(error)
                if matches!(
                    error.code(),
                    Some("InvalidAttachmentID.NotFound" | "IncorrectState")
                ) =>
            {
                Ok(())
            }
            other => other,
        }
    }

    async fn attach_call(&self, me: &Identity, target: Target<'_>) -> Result<(), AwsError> {
        match target {
            Target::Eni(eni) => {
                let mut call = self
                    .ec2
                    .attach_network_interface()
                    .network_interface_id(&eni.eni_id)
                    .instance_id(&me.instance_id)
                    .device_index(self.settings.device_index);
                if self.settings.network_card != 0 {
                    call = call.network_card_index(self.settings.network_card);
                }
                call.send().await.map(drop).map_err(|e| {
                    AwsError::api(
                        "AttachNetworkInterface",
                        format!("{} to {}", eni.eni_id, me.instance_id),
                        e,
                    )
                })
            }
            Target::Volume(volume) => self
                .ec2
                .attach_volume()
                .volume_id(&volume.volume_id)
                .instance_id(&me.instance_id)
                .device(&self.settings.volume_device)
                .send()
                .await
                .map(drop)
                .map_err(|e| {
                    AwsError::api(
                        "AttachVolume",
                        format!("{} to {}", volume.volume_id, me.instance_id),
                        e,
                    )
                }),
        }
    }

    async fn describe(&self, target: Target<'_>) -> Result<Observed, AwsError> {
        match target {
            Target::Eni(eni) => {
                let id = &eni.eni_id;
                let answer = self
                    .ec2
                    .describe_network_interfaces()
                    .network_interface_ids(id)
                    .send();
                let found = one_described(answer.await, "DescribeNetworkInterfaces", id, |o| {
                    o.network_interfaces()
                })?;
                let cidrs = [(eni.subnet_id.clone(), eni.subnet)].into_iter().collect();
                let attachment = found.attachment();
                let attachment_id = attachment
                    .and_then(|a| a.attachment_id())
                    .map(str::to_owned);
                let deleted_with = attachment
                    .filter(|a| a.delete_on_termination() == Some(true))
                    .map(|a| a.instance_id().unwrap_or("its instance"));
                Ok(Observed::Eni {
                    hazard: attachment_hazard(id, false, deleted_with),
                    facts: eni_facts(&found, &cidrs)?,
                    attachment_id,
                })
            }
            Target::Volume(volume) => {
                let id = &volume.volume_id;
                let answer = self.ec2.describe_volumes().volume_ids(id).send();
                let found = one_described(answer.await, "DescribeVolumes", id, |o| o.volumes())?;
                let deleted_with = found
                    .attachments()
                    .iter()
                    .find(|a| a.delete_on_termination() == Some(true))
                    .map(|a| a.instance_id().unwrap_or("its instance"));
                Ok(Observed::Volume {
                    hazard: attachment_hazard(
                        id,
                        found.multi_attach_enabled() == Some(true),
                        deleted_with,
                    ),
                    facts: volume_facts(&found)?,
                })
            }
        }
    }

    /// The owner's state; `None` when DescribeInstances does not return the instance.
    async fn instance_state(&self, instance_id: &str) -> Result<Option<String>, AwsError> {
        let states = self.instance_states(&[instance_id.to_owned()]).await?;
        Ok(states.get(instance_id).cloned())
    }
}

/// The one resource a Describe by id answered with, taken from the answer by `items`; EC2's `*.NotFound`, or
/// an empty answer, is [`AwsError::NotFound`].
fn one_described<O, T: Clone, E>(
    answer: Result<O, SdkError<E, HttpResponse>>,
    operation: &'static str,
    resource: &str,
    items: impl FnOnce(&O) -> &[T],
) -> Result<T, AwsError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let output = answer
        .map_err(|error| not_found_or(AwsError::api(operation, resource, error), resource))?;
    items(&output)
        .first()
        .cloned()
        .ok_or_else(|| AwsError::NotFound {
            resource: resource.to_owned(),
        })
}

fn not_found_or(error: AwsError, resource: &str) -> AwsError {
    match error.code() {
        Some(code) if code.ends_with(".NotFound") => AwsError::NotFound {
            resource: resource.to_owned(),
        },
        _ => error,
    }
}
