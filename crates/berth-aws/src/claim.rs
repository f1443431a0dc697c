//! The `ec2` claim backend: a broker id is claimed by attaching its ENI.
//!
//! EC2 attaches an ENI to at most one instance and refuses a second with `InvalidNetworkInterface.InUse`, so
//! an accepted `AttachNetworkInterface` is the claim, and the owner instance's life is its lease
//! (docs/decisions/0002-ec2-attachment-claims.md). No ZooKeeper is needed. The decisions (which id next,
//! takeover or wait) are [`berth_core::attachment_claim`]'s; this adapter observes and acts:
//!
//! * The first move uses discovery's view (the plan's ENIs): in a mass boot most hosts' spread picks are free
//!   and one call claims. An ENI attached here is a restart's claim: no call at all.
//! * `InUse` means another host won the id: after a short jittered pause ([`IN_USE_BACKOFF`], growing with
//!   each refusal), one filtered `DescribeNetworkInterfaces` refreshes who holds every candidate, then the next
//!   free one is tried. The pause lets a storm settle: a refresh taken at once still shows ids its racers are
//!   about to win (and EC2's describes lag its attaches), so each would cost another refused attach.
//! * When every candidate is held, one `DescribeInstances` tells dying owners (taken over, as the attach step
//!   does today) from live ones; with only live owners the claimer waits on EC2 with backoff (EC2 has no
//!   watches), saying which instances hold which ids, and looks again.
//!
//! The claim has no session: it never expires while the instance lives, `reclaim` only reports whether the
//! ENI is still attached here, and `release` detaches what the drain's `DetachEni` did not: any ENI it asked
//! EC2 to attach here that still is (a claim a drain cut short after EC2 accepted it).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_ec2::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_ec2::error::BoxError;
use berth_core::attachment_claim::{next_move, Holder, Move};
use berth_core::claim::ClaimPlan;
use berth_core::facts::{Attachment, EniFacts, Identity};
use berth_core::ports::{ClaimHolder, Coordination, Deadline, Reclaim, SessionEvent, StepError};
use berth_core::retry::{stable_hash, Jitter, RetryPolicy};
use berth_core::BrokerId;

use crate::attach::{AttachSettings, Attacher};
use crate::discovery::filter;
use crate::error::AwsError;
use crate::metadata::Metadata;

/// Backoff between looks while every candidate is held by a live instance.
pub const WAIT_POLICY: RetryPolicy = RetryPolicy {
    initial: Duration::from_secs(1),
    max: Duration::from_secs(15),
    multiplier: 2.0,
    deadline: Duration::MAX,
};

/// Pause after an `InvalidNetworkInterface.InUse` refusal, before looking again (the n-th refusal waits the
/// n-th delay, jittered per host).
pub const IN_USE_BACKOFF: RetryPolicy = RetryPolicy {
    initial: Duration::from_millis(300),
    max: Duration::from_secs(3),
    multiplier: 2.0,
    deadline: Duration::MAX,
};

/// Counts the requests this backend's client sends (every attempt, retries included).
#[derive(Debug, Clone, Default)]
struct CallCounter(Arc<AtomicU64>);

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "berth-ec2-claim-call-counter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _config: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// [`Coordination`] on EC2 ENI attachments.
#[derive(Debug)]
pub struct Ec2Claim {
    ec2: aws_sdk_ec2::Client,
    attacher: Attacher,
    metadata: Metadata,
    takeover_states: Vec<String>,
    calls: CallCounter,
    calls_when_waiting: AtomicU64,
    held: Mutex<Option<(BrokerId, EniFacts)>>,
    /// Every ENI this backend asked EC2 to attach here (recorded before the request): a claim cut short after
    /// EC2 accepted it (a drain cancels the step, or its answer comes too late to be used) is still released.
    asked: Mutex<BTreeMap<String, EniFacts>>,
}

impl Ec2Claim {
    /// A backend over `ec2`'s configuration (its own client, so that its calls are counted apart).
    pub fn new(ec2: &aws_sdk_ec2::Client, settings: AttachSettings, metadata: Metadata) -> Self {
        let calls = CallCounter::default();
        let config = ec2.config().to_builder().interceptor(calls.clone()).build();
        let ec2 = aws_sdk_ec2::Client::from_conf(config);
        Self {
            attacher: Attacher::new(ec2.clone(), settings.clone()),
            ec2,
            metadata,
            takeover_states: settings.takeover_owner_states,
            calls,
            calls_when_waiting: AtomicU64::new(0),
            held: Mutex::new(None),
            asked: Mutex::default(),
        }
    }

    /// EC2 requests sent so far by this backend.
    pub fn call_count(&self) -> u64 {
        self.calls.0.load(Ordering::Relaxed)
    }

    /// EC2 requests sent before this backend first had to wait for a release (0: it never waited).
    pub fn calls_before_waiting(&self) -> u64 {
        self.calls_when_waiting.load(Ordering::Relaxed)
    }

    /// The id claimed, if any.
    pub fn held(&self) -> Option<BrokerId> {
        lock(&self.held).as_ref().map(|(id, _)| *id)
    }

    async fn claim_inner(
        &self,
        plan: &ClaimPlan,
        deadline: Deadline,
    ) -> Result<BrokerId, AwsError> {
        if plan.candidates.is_empty() {
            return Err(AwsError::NoCandidates);
        }
        let me = self.metadata.identity().await?;
        let mut plan = plan.clone();
        let seed = stable_hash(&me.instance_id);
        let mut holders = holders_seen(&plan, &me.instance_id);
        let mut owner_states = BTreeMap::new();
        let mut jitter = Jitter::new(seed);
        let (mut waits, mut refusals) = (0, 0);
        loop {
            let step = next_move(&plan, &holders, &owner_states, &self.takeover_states, seed);
            let wait = match step {
                Move::Held(id) => return Ok(self.hold(&plan, id)),
                Move::Attach(id) => {
                    let eni = self.asking(eni_of(&plan, id)?);
                    match self.attacher.request_eni_attach(&me, eni).await {
                        Ok(()) => return Ok(self.hold(&plan, id)),
                        Err(error) if error.code() == Some("InvalidNetworkInterface.InUse") => {
                            refusals += 1;
                            let pause = IN_USE_BACKOFF
                                .delay(refusals, &mut jitter)
                                .min(deadline.remaining());
                            tracing::debug!(%id, ?pause, "ENI attach refused: another instance holds it; looking again after a pause");
                            tokio::time::sleep(pause).await;
                            self.refresh(&me, &mut plan, &mut holders).await?;
                            continue;
                        }
                        Err(error) => return Err(error),
                    }
                }
                Move::TakeOver {
                    id,
                    owner,
                    owner_state,
                } => {
                    tracing::warn!(%id, %owner, %owner_state, "claiming by taking the ENI over from an instance that is {owner_state}");
                    let eni = self.asking(eni_of(&plan, id)?);
                    match self.attacher.attach_eni(&me, eni, deadline).await {
                        Ok(_) => return Ok(self.hold(&plan, id)),
                        // Another claimer took it over first, or the owner is given time to shut down
                        // (aws.takeover_wait): wait, then look again.
                        Err(error @ AwsError::OwnerAlive { .. }) => error.to_string(),
                        Err(error) => return Err(error),
                    }
                }
                Move::LookUpOwners(owners) => {
                    // An owner DescribeInstances does not return is unknown, not terminated: waited for.
                    let found = self.attacher.instance_states(&owners).await?;
                    for owner in owners {
                        let state = found.get(&owner).map_or("unknown", String::as_str);
                        owner_states.insert(owner.clone(), state.to_owned());
                    }
                    continue;
                }
                Move::Wait(why) => why,
            };
            waits += 1;
            self.pause(wait, waits, &mut jitter, deadline).await?;
            owner_states.clear();
            self.refresh(&me, &mut plan, &mut holders).await?;
        }
    }

    /// Says what it waits for (once in the log, every time to `/state`), then waits the `waits`-th backoff;
    /// at the deadline, the error names the holders.
    async fn pause(
        &self,
        why: String,
        waits: u32,
        jitter: &mut Jitter,
        deadline: Deadline,
    ) -> Result<(), AwsError> {
        if waits == 1 {
            self.calls_when_waiting
                .store(self.call_count(), Ordering::Relaxed);
            tracing::info!(waiting_for = %why, "every candidate id is held: waiting on EC2");
        }
        berth_core::progress::report(why.clone());
        if deadline.expired() {
            return Err(AwsError::AllHeld { detail: why });
        }
        tokio::time::sleep(WAIT_POLICY.delay(waits, jitter).min(deadline.remaining())).await;
        Ok(())
    }

    /// Records that this ENI's attachment here is about to be asked for.
    fn asking<'a>(&self, eni: &'a EniFacts) -> &'a EniFacts {
        lock(&self.asked).insert(eni.eni_id.clone(), eni.clone());
        eni
    }

    fn hold(&self, plan: &ClaimPlan, id: BrokerId) -> BrokerId {
        if let Some(eni) = plan.enis.get(&id) {
            *lock(&self.held) = Some((id, self.asking(eni).clone()));
        }
        tracing::info!(%id, eni = plan.enis.get(&id).map(|e| e.eni_id.as_str()), "claimed broker id: its ENI is attached here");
        id
    }

    /// One `DescribeNetworkInterfaces` of every candidate's ENI: who holds each now. A candidate whose ENI no
    /// longer exists is dropped from the plan.
    async fn refresh(
        &self,
        me: &Identity,
        plan: &mut ClaimPlan,
        holders: &mut BTreeMap<BrokerId, Holder>,
    ) -> Result<(), AwsError> {
        let ids: Vec<String> = plan.enis.values().map(|eni| eni.eni_id.clone()).collect();
        let output = self
            .ec2
            .describe_network_interfaces()
            .filters(filter("network-interface-id", &ids))
            .send()
            .await
            .map_err(|e| AwsError::api("DescribeNetworkInterfaces", ids.join(","), e))?;
        let attachments: BTreeMap<&str, Option<Attachment>> = output
            .network_interfaces()
            .iter()
            .filter_map(|eni| Some((eni.network_interface_id()?, attachment_of(eni))))
            .collect();
        let gone: Vec<BrokerId> = plan
            .enis
            .iter()
            .filter(|(_, eni)| !attachments.contains_key(eni.eni_id.as_str()))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            tracing::warn!(%id, "the id's ENI no longer exists: not a candidate any more");
            plan.enis.remove(&id);
            plan.candidates.retain(|candidate| *candidate != id);
        }
        for (id, eni) in &plan.enis {
            let attachment = attachments.get(eni.eni_id.as_str()).cloned().flatten();
            holders.insert(
                *id,
                Holder::from_attachment(attachment.as_ref(), &me.instance_id),
            );
        }
        Ok(())
    }
}

impl Ec2Claim {
    async fn release_asked(&self) -> Result<(), AwsError> {
        let asked: Vec<EniFacts> = lock(&self.asked).values().cloned().collect();
        if asked.is_empty() {
            return Ok(());
        }
        let me = self.metadata.identity().await?;
        for eni in asked {
            if self.attacher.eni_attached_here(&me, &eni).await? {
                tracing::warn!(eni = %eni.eni_id, "releasing the claim: an ENI it asked for is still attached here");
                self.attacher.detach_eni(&me, &eni).await?;
            }
            lock(&self.asked).remove(&eni.eni_id);
        }
        Ok(())
    }
}

/// Who holds each candidate's ENI as discovery saw it, seen from `instance_id`.
fn holders_seen(plan: &ClaimPlan, instance_id: &str) -> BTreeMap<BrokerId, Holder> {
    plan.enis
        .iter()
        .map(|(id, eni)| {
            (
                *id,
                Holder::from_attachment(eni.attachment.as_ref(), instance_id),
            )
        })
        .collect()
}

fn attachment_of(eni: &aws_sdk_ec2::types::NetworkInterface) -> Option<Attachment> {
    let attachment = eni.attachment()?;
    Some(Attachment {
        instance_id: attachment.instance_id().unwrap_or_default().to_owned(),
        state: attachment
            .status()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        slot: attachment
            .device_index()
            .map(|i| i.to_string())
            .unwrap_or_default(),
    })
}

fn eni_of(plan: &ClaimPlan, id: BrokerId) -> Result<&EniFacts, AwsError> {
    plan.enis.get(&id).ok_or_else(|| AwsError::NotFound {
        resource: format!("the ENI of broker id {id}"),
    })
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[async_trait]
impl Coordination for Ec2Claim {
    async fn claim(
        &self,
        plan: &ClaimPlan,
        _holder: &ClaimHolder,
        deadline: Deadline,
    ) -> Result<BrokerId, StepError> {
        Ok(self.claim_inner(plan, deadline).await?)
    }

    /// The claim cannot expire (no session), so the daemon never asks; answered honestly all the same.
    async fn reclaim(
        &self,
        id: BrokerId,
        _holder: &ClaimHolder,
        _deadline: Deadline,
    ) -> Result<Reclaim, StepError> {
        let held = lock(&self.held).clone();
        let Some((_, eni)) = held.filter(|(held, _)| *held == id) else {
            return Ok(Reclaim::TakenBy(format!(
                "broker id {id} was never claimed here"
            )));
        };
        let me = self.metadata.identity().await?;
        if self.attacher.eni_attached_here(&me, &eni).await? {
            Ok(Reclaim::Held)
        } else {
            Ok(Reclaim::TakenBy(format!(
                "{} is no longer attached here",
                eni.eni_id
            )))
        }
    }

    /// The claim ends when the teardown's `DetachEni` lets the ENI go (or the instance ends); this detaches
    /// any ENI this backend asked for that is still attached here, such as one whose claim a drain cut short
    /// after EC2 accepted it (the machine never learnt the id, so its teardown has no `DetachEni`).
    async fn release(&self) -> Result<(), StepError> {
        Ok(self.release_asked().await?)
    }

    /// The claim has no session: no event ever comes.
    async fn next_session_event(&self) -> SessionEvent {
        std::future::pending().await
    }
}
