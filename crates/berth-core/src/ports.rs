//! The narrow seams between the daemon and the outside world.
//!
//! Each trait is one adapter's concern: the instance's metadata, EC2 attachments, signals to CloudFormation and
//! Auto Scaling, coordination, network, storage, broker. Real implementations live
//! in the adapter crates; the daemon test and the simulation plug in their own. Every method is idempotent and
//! starts by observing reality, so a restarted daemon that calls it again converges instead of duplicating.
//! Methods that wait (for an attachment, a link, a device, a claim) take a [`Deadline`] and must give up by it.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::claim::ClaimPlan;
use crate::facts::{
    BrokerId, EniFacts, Identity, Inventory, MacAddr, MountReport, RoutePlan, ServingEvidence,
    VolumeFacts,
};

/// Whether retrying a failed step can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Transient (throttling, 5xx, a resource still held by a dying instance, not yet visible): back off and retry.
    Retryable,
    /// Retrying cannot help (wrong volume, bad tagging, claim taken by another host): go to Failed.
    Fatal,
}

/// A step's failure as the state machine sees it: a kind and a message carrying the adapter's context
/// (ids, paths, znodes). Adapters keep rich `thiserror` enums and convert at the seam.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    /// Retryable or fatal.
    pub kind: ErrorKind,
    /// The error and its sources, joined with `: `.
    pub message: String,
}

impl StepError {
    /// A retryable failure from any error, keeping its source chain in the message.
    pub fn retryable(error: &(dyn std::error::Error + 'static)) -> Self {
        Self {
            kind: ErrorKind::Retryable,
            message: chain_message(error),
        }
    }

    /// A fatal failure from any error, keeping its source chain in the message.
    pub fn fatal(error: &(dyn std::error::Error + 'static)) -> Self {
        Self {
            kind: ErrorKind::Fatal,
            message: chain_message(error),
        }
    }

    /// A failure from a plain message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// True when retrying may help.
    pub fn is_retryable(&self) -> bool {
        self.kind == ErrorKind::Retryable
    }
}

/// Joins an error and its sources into one line, skipping a source whose text the parent already contains.
pub fn chain_message(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// The instant by which a waiting adapter call must return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline(pub Instant);

impl Deadline {
    /// A deadline `after` from now.
    pub fn after(after: Duration) -> Self {
        Self(Instant::now() + after)
    }

    /// Time left (zero when passed).
    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// True once the instant has passed.
    pub fn expired(&self) -> bool {
        Instant::now() >= self.0
    }
}

/// The boot's outcome as CloudFormation hears it (SignalResource `SUCCESS` / `FAILURE`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "verdict", content = "reason")]
pub enum Verdict {
    /// Kafka is serving as the claimed broker.
    Success,
    /// Boot failed for good, with the reason (SignalResource carries no reason: the adapter logs it).
    Failure(String),
}

/// What the launch lifecycle hook is told (CompleteLifecycleAction `LifecycleActionResult`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LaunchResult {
    /// Put the instance in service.
    Continue,
    /// Terminate it (the Auto Scaling group launches another).
    Abandon,
}

/// How AWS took a call that only makes sense while something awaits it (a signal, a lifecycle action).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "delivery", content = "detail")]
pub enum Delivery {
    /// Taken.
    Accepted,
    /// Refused because nothing awaits it (no stack create or update awaits this resource's signals, no
    /// lifecycle action is pending for this instance): the answer is final, retrying cannot change it.
    NotAwaited(String),
    /// Not sent: this part is not configured.
    NotConfigured,
}

/// How a failed boot was reported to Auto Scaling, so that the instance gets replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReport {
    /// The pending launch lifecycle action was completed with ABANDON.
    Abandoned,
    /// No launch action was pending: SetInstanceHealth Unhealthy.
    MarkedUnhealthy,
}

/// What a volume request ([`Attachments::request_volume`]) did: one pass of the attach rules, without waiting for
/// the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "request", content = "detail")]
pub enum VolumeRequest {
    /// Already attached here: nothing was sent.
    AlreadyAttached,
    /// A request was sent (AttachVolume, or the force-detach from an owner the takeover rule lets go of).
    Sent(String),
    /// Nothing was sent; the volume's state (attaching here, detaching from another instance, an attach that
    /// raced with another instance's): AttachEbs observes it again.
    NothingSent(String),
}

impl fmt::Display for VolumeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VolumeRequest::AlreadyAttached => f.write_str("already attached here"),
            VolumeRequest::Sent(what) => write!(f, "sent {what}"),
            VolumeRequest::NothingSent(state) => write!(f, "nothing sent: {state}"),
        }
    }
}

/// Which lifecycle hook a heartbeat extends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleHook {
    /// The launch hook, while booting.
    Launch,
    /// The terminating hook, while a drain waits.
    Terminate,
}

/// Why the daemon is draining. A plain SIGTERM is not one of them: it stops berth, not the broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrainReason {
    /// An operator asked for it (`berth drain`, or SIGUSR1).
    Requested,
    /// IMDS `autoscaling/target-lifecycle-state` says `Terminated`.
    LifecycleTerminated,
    /// IMDS `spot/instance-action` carries an interruption notice.
    SpotInterruption,
}

impl fmt::Display for DrainReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DrainReason::Requested => "requested",
            DrainReason::LifecycleTerminated => "lifecycle-terminated",
            DrainReason::SpotInterruption => "spot-interruption",
        })
    }
}

/// This instance as the instance metadata service (IMDSv2) describes it: who it is, and whether it is going away.
#[async_trait]
pub trait Metadata: Send + Sync {
    /// This instance's identity.
    async fn identity(&self) -> Result<Identity, StepError>;
    /// Whether this instance's termination is announced (lifecycle state or spot notice).
    async fn termination_notice(&self) -> Result<Option<DrainReason>, StepError>;
}

/// The cluster's ENIs and volumes in EC2: discovery, and their attachments to this instance.
#[async_trait]
pub trait Attachments: Send + Sync {
    /// The cluster's ENIs and volumes by broker id: one filtered, paginated describe per resource type.
    async fn discover(&self) -> Result<Inventory, StepError>;
    /// Attach the ENI to this instance (already attached here is success), taking it over only from an owner
    /// that is shutting down or terminated; waits for `attached` by the deadline.
    async fn attach_eni(
        &self,
        identity: &Identity,
        eni: &EniFacts,
        deadline: Deadline,
    ) -> Result<EniFacts, StepError>;
    /// Attach the volume to this instance under the same rules; returns it with the requested device name.
    async fn attach_volume(
        &self,
        identity: &Identity,
        volume: &VolumeFacts,
        deadline: Deadline,
    ) -> Result<(VolumeFacts, String), StepError>;
    /// One pass of [`Attachments::attach_volume`]'s rules, without its wait: observe the volume, then request
    /// its attachment here (or the force-detach the takeover rule allows) and return. Sent by the AttachEni
    /// step beside the ENI's attach, so the volume's attachment runs alongside; AttachEbs still observes and
    /// waits for it.
    async fn request_volume(
        &self,
        identity: &Identity,
        volume: &VolumeFacts,
    ) -> Result<VolumeRequest, StepError>;
    /// Whether EC2 shows the ENI attached (or attaching) to this instance now.
    async fn eni_attached_here(
        &self,
        identity: &Identity,
        eni: &EniFacts,
    ) -> Result<bool, StepError>;
    /// Detach the ENI from this instance (not attached here is success).
    async fn detach_eni(&self, identity: &Identity, eni: &EniFacts) -> Result<(), StepError>;
    /// Detach the volume from this instance (not attached here is success).
    async fn detach_volume(
        &self,
        identity: &Identity,
        volume: &VolumeFacts,
    ) -> Result<(), StepError>;
}

/// What berth tells CloudFormation and Auto Scaling about this instance.
#[async_trait]
pub trait Signals: Send + Sync {
    /// CloudFormation SignalResource with the verdict, when configured. Independent of the lifecycle hook.
    async fn signal_stack(
        &self,
        identity: &Identity,
        verdict: &Verdict,
    ) -> Result<Delivery, StepError>;
    /// CompleteLifecycleAction on the launch hook, when configured. Independent of CloudFormation.
    async fn complete_launch(
        &self,
        identity: &Identity,
        result: LaunchResult,
    ) -> Result<Delivery, StepError>;
    /// Extend the launch lifecycle hook's timeout while booting is slow.
    async fn heartbeat(&self, identity: &Identity) -> Result<Delivery, StepError>;
    /// Extend the terminating lifecycle hook's timeout while a drain waits for a safe stop.
    async fn heartbeat_termination(&self, identity: &Identity) -> Result<Delivery, StepError>;
    /// Tell Auto Scaling this instance is unhealthy because Kafka was lost too long (when configured).
    async fn mark_unhealthy(&self, identity: &Identity) -> Result<Delivery, StepError>;
    /// Tell Auto Scaling a boot failed for good: ABANDON when the launch action is pending, else
    /// SetInstanceHealth Unhealthy, so the instance is replaced.
    async fn report_failure(&self, identity: &Identity) -> Result<FailureReport, StepError>;
    /// Complete the terminating lifecycle action after a drain.
    async fn complete_termination(&self, identity: &Identity) -> Result<Delivery, StepError>;
}

/// The claim body written into the lock node: who holds the id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimHolder {
    /// This instance.
    pub instance_id: String,
    /// Its availability zone.
    pub availability_zone: String,
    /// Its hostname.
    pub host: String,
    /// berth's version.
    pub berth_version: String,
}

/// State of the coordination session as the daemon must know it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEvent {
    /// Connected (again) within the same session: the claim still stands.
    Connected,
    /// Connection lost; the session (and claim) may still be alive. Keep going.
    Disconnected,
    /// The session expired: the ephemeral claim is gone.
    Expired,
    /// The session was closed by us (release).
    Closed,
}

/// What a reclaim found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reclaim", content = "holder")]
pub enum Reclaim {
    /// The claim is ours again, on a new session.
    Held,
    /// Another host holds it (the holder, as its claim node names it).
    TakenBy(String),
}

/// Exclusive ownership of a broker id (ZooKeeper ephemeral nodes in production).
#[async_trait]
pub trait Coordination: Send + Sync {
    /// Claim one id of the plan: preferred first, then free ones; when all are taken, wait (watches, not polls)
    /// for one to be released, by the deadline.
    async fn claim(
        &self,
        plan: &ClaimPlan,
        holder: &ClaimHolder,
        deadline: Deadline,
    ) -> Result<BrokerId, StepError>;
    /// After expiry: claim the same id again on a new session. Another host holding it is an answer, not an
    /// error: the daemon then decides with what else it knows (whether this instance still holds the ENI).
    async fn reclaim(
        &self,
        id: BrokerId,
        holder: &ClaimHolder,
        deadline: Deadline,
    ) -> Result<Reclaim, StepError>;
    /// Delete the claim node and close the session.
    async fn release(&self) -> Result<(), StepError>;
    /// The next session state change; pends until there is one.
    async fn next_session_event(&self) -> SessionEvent;
}

/// The Linux side of the ENI: finding its link and policy routing.
#[async_trait]
pub trait Network: Send + Sync {
    /// Wait (link events, not polls) until a link with this MAC exists; returns its name and index.
    async fn wait_for_link(
        &self,
        mac: MacAddr,
        deadline: Deadline,
    ) -> Result<(String, u32), StepError>;
    /// Bring the link up and install address, routes and rule; what is right is left alone.
    async fn configure(&self, plan: &RoutePlan, deadline: Deadline) -> Result<(), StepError>;
    /// Remove exactly what `configure` installs.
    async fn teardown(&self, plan: &RoutePlan) -> Result<(), StepError>;
}

/// Where and how the broker volume is mounted, and which log dirs Kafka uses on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountPlan {
    /// Mount point.
    pub mount_path: PathBuf,
    /// Kafka log dirs (absolute, under the mount point).
    pub log_dirs: Vec<PathBuf>,
}

/// The block device, its filesystem and mount, and the identity check of Kafka's data on it.
#[async_trait]
pub trait Storage: Send + Sync {
    /// Resolve the attached volume to its block device, waiting for it to appear by the deadline.
    async fn resolve(
        &self,
        volume: &VolumeFacts,
        requested_device: &str,
        deadline: Deadline,
    ) -> Result<PathBuf, StepError>;
    /// Probe, format only a blank device when allowed, mount; then check `meta.properties` against the id.
    async fn mount(
        &self,
        device: &std::path::Path,
        plan: &MountPlan,
        broker_id: BrokerId,
        deadline: Deadline,
    ) -> Result<MountReport, StepError>;
    /// Unmount (a busy mount is an error, never forced).
    async fn unmount(&self, plan: &MountPlan) -> Result<(), StepError>;
}

/// What Kafka must be told about the broker it runs as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerSpec {
    /// broker.id / node.id.
    pub broker_id: BrokerId,
    /// The ENI address Kafka advertises.
    pub advertised_ip: std::net::Ipv4Addr,
    /// broker.rack (the availability zone).
    pub rack: String,
    /// log.dirs on the mounted volume.
    pub log_dirs: Vec<PathBuf>,
    /// Every broker id's ENI address (KRaft `controller.quorum.voters`), from discovery.
    #[serde(default)]
    pub voters: std::collections::BTreeMap<BrokerId, std::net::Ipv4Addr>,
}

/// Kafka itself: settings, start and stop, and the proof that it serves.
#[async_trait]
pub trait Broker: Send + Sync {
    /// Write the settings overlay, start Kafka, and wait until it serves as this broker, by the deadline.
    async fn start(
        &self,
        spec: &BrokerSpec,
        deadline: Deadline,
    ) -> Result<ServingEvidence, StepError>;
    /// One health check while Healthy.
    async fn check(&self, spec: &BrokerSpec) -> Result<ServingEvidence, StepError>;
    /// The cluster's replication (every partition's replicas and ISR, each topic's `min.insync.replicas`, the
    /// live brokers), asked of this broker, or of another when this one does not answer.
    async fn replication(
        &self,
        spec: &BrokerSpec,
    ) -> Result<crate::replication::ReplicationView, StepError>;
    /// Controlled shutdown, by the deadline.
    async fn stop(&self, deadline: Deadline) -> Result<(), StepError>;
}

/// The ports, one adapter each, as trait objects: what the daemon reaches the world through (the production
/// adapters, or the in-process ones of its tests).
#[derive(Clone)]
pub struct Adapters {
    /// IMDS: this instance's identity, and whether it is going away.
    pub metadata: Arc<dyn Metadata>,
    /// EC2: discovery, and the ENI's and the volume's attachments.
    pub attachments: Arc<dyn Attachments>,
    /// CloudFormation and Auto Scaling: the signal, the lifecycle calls, instance health.
    pub signals: Arc<dyn Signals>,
    /// The claim: ZooKeeper or the ENI attachment, as `claim.backend` says.
    pub coordination: Arc<dyn Coordination>,
    /// Links and policy routing (netlink).
    pub network: Arc<dyn Network>,
    /// Block device, filesystem, mount.
    pub storage: Arc<dyn Storage>,
    /// Kafka.
    pub broker: Arc<dyn Broker>,
}
