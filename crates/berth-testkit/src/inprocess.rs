//! In-process adapters: a fake world for the daemon's own tests (NOT EC2, ZooKeeper, netlink, a disk or Kafka).
//!
//! They implement the ports over shared memory, record every call in one ordered journal (so a test can
//! check that a drain stopped Kafka before unmounting, and released the claim last), and can be told to fail a
//! call a number of times, to hold Kafka "down", or to expire the claim. The adapters' real behaviour is tested
//! against real servers in their own crates; this exists to test the loop that drives them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use berth_core::claim::ClaimPlan;
use berth_core::ports::{
    Adapters, Attachments, BrokerSpec, ClaimHolder, Deadline, Delivery, DrainReason, FailureReport,
    LaunchResult, Metadata, MountPlan, Reclaim, SessionEvent, Signals, Verdict, VolumeRequest,
};
use berth_core::replication::ReplicationView;
use berth_core::{
    Broker, BrokerId, Coordination, EniFacts, ErrorKind, Identity, Inventory, MacAddr, MountReport,
    Network, RoutePlan, ServingEvidence, StepError, Storage, VolumeFacts,
};
use tokio::sync::{mpsc, Mutex as AsyncMutex};

use crate::fixtures;

#[derive(Default)]
struct WorldState {
    journal: Vec<String>,
    failures: BTreeMap<String, (u32, ErrorKind)>,
    kafka_down: bool,
    kafka_running: bool,
    claimed: Option<BrokerId>,
    termination: Option<DrainReason>,
    taken_by: Option<String>,
    eni_here: bool,
    launch_pending: bool,
    waits: BTreeMap<String, Vec<String>>,
    replication: ReplicationView,
    termination_completed: bool,
}

/// The shared fake world; clone it into each adapter.
#[derive(Clone)]
pub struct InProcessWorld {
    state: Arc<Mutex<WorldState>>,
    inventory: Inventory,
    identity: Identity,
    sessions: Arc<AsyncMutex<mpsc::UnboundedReceiver<SessionEvent>>>,
    session_tx: mpsc::UnboundedSender<SessionEvent>,
}

impl InProcessWorld {
    /// A world with the sample identity and an inventory of `count` ids (see [`fixtures`]).
    pub fn new(count: u32) -> Self {
        let (session_tx, session_rx) = mpsc::unbounded_channel();
        let state = WorldState {
            launch_pending: true,
            ..WorldState::default()
        };
        Self {
            state: Arc::new(Mutex::new(state)),
            inventory: fixtures::inventory(count),
            identity: fixtures::identity(),
            sessions: Arc::new(AsyncMutex::new(session_rx)),
            session_tx,
        }
    }

    /// Every call so far, in order, as `operation` or `operation:detail`.
    pub fn journal(&self) -> Vec<String> {
        self.lock().journal.clone()
    }

    /// Make the next `times` calls of `operation` fail with `kind`.
    pub fn fail(&self, operation: &str, times: u32, kind: ErrorKind) {
        self.lock()
            .failures
            .insert(operation.to_owned(), (times, kind));
    }

    /// Kafka stops (true) or resumes (false) answering checks.
    pub fn set_kafka_down(&self, down: bool) {
        self.lock().kafka_down = down;
    }

    /// Kafka runs already (as after berth was stopped and started again): a check finds it serving.
    pub fn set_kafka_running(&self, running: bool) {
        self.lock().kafka_running = running;
    }

    /// What Kafka answers about the cluster's replication from now on (empty until set: no partitions).
    pub fn set_replication(&self, view: ReplicationView) {
        self.lock().replication = view;
    }

    /// Announce a termination through the (fake) instance metadata.
    pub fn announce_termination(&self, reason: DrainReason) {
        self.lock().termination = Some(reason);
    }

    /// Expire the (fake) coordination session.
    pub fn expire_session(&self) {
        let _ = self.session_tx.send(SessionEvent::Expired);
    }

    /// Another host holds the claim from now on (`None`: nobody); a reclaim then answers `TakenBy`.
    pub fn set_claim_taken_by(&self, holder: Option<&str>) {
        self.lock().taken_by = holder.map(str::to_owned);
    }

    /// Whether EC2 shows the ENI attached here (true once attached, until a test says otherwise).
    pub fn set_eni_here(&self, here: bool) {
        self.lock().eni_here = here;
    }

    /// Whether a launch lifecycle action is pending (true until CONTINUE or ABANDON completes it).
    pub fn set_launch_pending(&self, pending: bool) {
        self.lock().launch_pending = pending;
    }

    /// Make `operation` report these waiting reasons (through `berth_core::progress`), then stay blocked on
    /// the last one until [`InProcessWorld::release`].
    pub fn wait_in(&self, operation: &str, reasons: &[&str]) {
        self.lock().waits.insert(
            operation.to_owned(),
            reasons.iter().map(|r| (*r).to_owned()).collect(),
        );
    }

    /// Let an operation blocked by [`InProcessWorld::wait_in`] continue.
    pub fn release(&self, operation: &str) {
        self.lock().waits.remove(operation);
    }

    /// Reports the planned waiting reasons of `operation`, then blocks while they are planned.
    async fn maybe_wait(&self, operation: &str) {
        let reasons = self.lock().waits.get(operation).cloned();
        let Some(reasons) = reasons else { return };
        for reason in &reasons {
            berth_core::progress::report(reason);
        }
        while self.lock().waits.contains_key(operation) {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// The adapters over this world.
    pub fn adapters(&self) -> Adapters {
        let world = Arc::new(self.clone());
        Adapters {
            metadata: world.clone(),
            attachments: world.clone(),
            signals: world.clone(),
            coordination: world.clone(),
            network: world.clone(),
            storage: world.clone(),
            broker: world,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WorldState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Journals the call and applies any planned failure.
    fn call(&self, operation: &str, detail: impl Into<String>) -> Result<(), StepError> {
        let detail = detail.into();
        let mut state = self.lock();
        state.journal.push(if detail.is_empty() {
            operation.to_owned()
        } else {
            format!("{operation}:{detail}")
        });
        if let Some((remaining, kind)) = state.failures.get_mut(operation) {
            if *remaining > 0 {
                *remaining -= 1;
                return Err(StepError::new(
                    *kind,
                    format!("in-process {operation} failure (planned by the test)"),
                ));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Metadata for InProcessWorld {
    async fn identity(&self) -> Result<Identity, StepError> {
        self.call("identity", "")?;
        Ok(self.identity.clone())
    }
    async fn termination_notice(&self) -> Result<Option<DrainReason>, StepError> {
        Ok(self.lock().termination.clone())
    }
}

#[async_trait]
impl Attachments for InProcessWorld {
    async fn discover(&self) -> Result<Inventory, StepError> {
        self.call("discover", "")?;
        Ok(self.inventory.clone())
    }
    async fn attach_eni(
        &self,
        _: &Identity,
        eni: &EniFacts,
        _: Deadline,
    ) -> Result<EniFacts, StepError> {
        self.call("attach_eni", &eni.eni_id)?;
        self.lock().eni_here = true;
        Ok(eni.clone())
    }
    async fn attach_volume(
        &self,
        _: &Identity,
        volume: &VolumeFacts,
        _: Deadline,
    ) -> Result<(VolumeFacts, String), StepError> {
        self.call("attach_volume", &volume.volume_id)?;
        self.maybe_wait("attach_volume").await;
        Ok((volume.clone(), "/dev/xvdf".into()))
    }
    async fn request_volume(
        &self,
        _: &Identity,
        volume: &VolumeFacts,
    ) -> Result<VolumeRequest, StepError> {
        self.call("request_volume", &volume.volume_id)?;
        self.maybe_wait("request_volume").await;
        Ok(VolumeRequest::Sent("an attach".into()))
    }
    async fn eni_attached_here(&self, _: &Identity, eni: &EniFacts) -> Result<bool, StepError> {
        self.call("eni_attached_here", &eni.eni_id)?;
        Ok(self.lock().eni_here)
    }
    async fn detach_eni(&self, _: &Identity, eni: &EniFacts) -> Result<(), StepError> {
        self.call("detach_eni", &eni.eni_id)?;
        self.lock().eni_here = false;
        Ok(())
    }
    async fn detach_volume(&self, _: &Identity, volume: &VolumeFacts) -> Result<(), StepError> {
        self.call("detach_volume", &volume.volume_id)
    }
}

#[async_trait]
impl Signals for InProcessWorld {
    async fn signal_stack(&self, _: &Identity, verdict: &Verdict) -> Result<Delivery, StepError> {
        let detail = match verdict {
            Verdict::Success => "success".to_owned(),
            Verdict::Failure(reason) => format!("failure:{reason}"),
        };
        self.call("signal_stack", detail)?;
        Ok(Delivery::Accepted)
    }
    async fn complete_launch(
        &self,
        _: &Identity,
        result: LaunchResult,
    ) -> Result<Delivery, StepError> {
        self.call("complete_launch", format!("{result:?}").to_lowercase())?;
        Ok(self.take_launch_action())
    }
    async fn heartbeat(&self, _: &Identity) -> Result<Delivery, StepError> {
        self.call("heartbeat", "")?;
        // As Auto Scaling: a heartbeat is taken only while the launch action is pending.
        Ok(if self.lock().launch_pending {
            Delivery::Accepted
        } else {
            Delivery::NotAwaited("no active lifecycle action (in-process)".into())
        })
    }
    async fn mark_unhealthy(&self, _: &Identity) -> Result<Delivery, StepError> {
        self.call("mark_unhealthy", "")?;
        Ok(Delivery::Accepted)
    }
    async fn report_failure(&self, _: &Identity) -> Result<FailureReport, StepError> {
        self.call("report_failure", "")?;
        Ok(match self.take_launch_action() {
            Delivery::Accepted => FailureReport::Abandoned,
            _ => FailureReport::MarkedUnhealthy,
        })
    }
    async fn heartbeat_termination(&self, _: &Identity) -> Result<Delivery, StepError> {
        self.call("heartbeat_termination", "")?;
        // As Auto Scaling: taken only while a terminating action is pending (announced, not yet completed).
        let state = self.lock();
        Ok(
            if state.termination == Some(DrainReason::LifecycleTerminated)
                && !state.termination_completed
            {
                Delivery::Accepted
            } else {
                Delivery::NotAwaited("no active lifecycle action (in-process)".into())
            },
        )
    }
    async fn complete_termination(&self, _: &Identity) -> Result<Delivery, StepError> {
        self.call("complete_termination", "")?;
        self.lock().termination_completed = true;
        Ok(Delivery::Accepted)
    }
}

impl InProcessWorld {
    /// Completes the pending launch action, if any: Accepted the first time, NotAwaited afterwards.
    fn take_launch_action(&self) -> Delivery {
        let mut state = self.lock();
        if std::mem::take(&mut state.launch_pending) {
            Delivery::Accepted
        } else {
            Delivery::NotAwaited("no active lifecycle action (in-process)".into())
        }
    }
}

#[async_trait]
impl Coordination for InProcessWorld {
    async fn claim(
        &self,
        plan: &ClaimPlan,
        _: &ClaimHolder,
        _: Deadline,
    ) -> Result<BrokerId, StepError> {
        let id = plan.try_order(&Default::default(), 0).first().copied();
        self.call("claim", id.map(|id| id.to_string()).unwrap_or_default())?;
        let id = id.ok_or_else(|| StepError::new(ErrorKind::Retryable, "no candidate"))?;
        self.lock().claimed = Some(id);
        Ok(id)
    }
    async fn reclaim(
        &self,
        id: BrokerId,
        _: &ClaimHolder,
        _: Deadline,
    ) -> Result<Reclaim, StepError> {
        self.call("reclaim", id.to_string())?;
        let mut state = self.lock();
        if let Some(holder) = state.taken_by.clone() {
            return Ok(Reclaim::TakenBy(holder));
        }
        state.claimed = Some(id);
        Ok(Reclaim::Held)
    }
    async fn release(&self) -> Result<(), StepError> {
        self.call("release_claim", "")?;
        self.lock().claimed = None;
        Ok(())
    }
    async fn next_session_event(&self) -> SessionEvent {
        let mut events = self.sessions.lock().await;
        match events.recv().await {
            Some(event) => event,
            None => std::future::pending().await,
        }
    }
}

#[async_trait]
impl Network for InProcessWorld {
    async fn wait_for_link(&self, mac: MacAddr, _: Deadline) -> Result<(String, u32), StepError> {
        self.call("wait_for_link", mac.to_string())?;
        self.maybe_wait("wait_for_link").await;
        Ok(("ens6".into(), 6))
    }
    async fn configure(&self, plan: &RoutePlan, _: Deadline) -> Result<(), StepError> {
        self.call(
            "configure_routes",
            format!("{} table {}", plan.address, plan.table),
        )
    }
    async fn teardown(&self, plan: &RoutePlan) -> Result<(), StepError> {
        self.call("remove_routes", plan.table.to_string())
    }
}

#[async_trait]
impl Storage for InProcessWorld {
    async fn resolve(
        &self,
        volume: &VolumeFacts,
        _: &str,
        _: Deadline,
    ) -> Result<PathBuf, StepError> {
        self.call("resolve", &volume.volume_id)?;
        Ok("/dev/nvme1n1".into())
    }
    async fn mount(
        &self,
        device: &Path,
        plan: &MountPlan,
        broker_id: BrokerId,
        _deadline: Deadline,
    ) -> Result<MountReport, StepError> {
        self.call(
            "mount",
            format!(
                "{} {} {broker_id}",
                device.display(),
                plan.mount_path.display()
            ),
        )?;
        Ok(MountReport {
            device: device.to_owned(),
            mount_path: plan.mount_path.clone(),
            filesystem: "xfs".into(),
            formatted: false,
            already_mounted: false,
        })
    }
    async fn unmount(&self, plan: &MountPlan) -> Result<(), StepError> {
        self.call("unmount", plan.mount_path.display().to_string())?;
        self.maybe_wait("unmount").await;
        Ok(())
    }
}

#[async_trait]
impl Broker for InProcessWorld {
    async fn start(&self, spec: &BrokerSpec, _: Deadline) -> Result<ServingEvidence, StepError> {
        self.call(
            "start_kafka",
            format!("{} {}", spec.broker_id, spec.advertised_ip),
        )?;
        self.maybe_wait("start_kafka").await;
        self.lock().kafka_running = true;
        Ok(ServingEvidence {
            listener: (spec.advertised_ip, 9092).into(),
            probe_micros: 100,
            detail: "in-process".into(),
        })
    }
    async fn check(&self, spec: &BrokerSpec) -> Result<ServingEvidence, StepError> {
        let (down, running) = {
            let state = self.lock();
            (state.kafka_down, state.kafka_running)
        };
        self.call("check", "")?;
        if !running {
            return Err(StepError::new(
                ErrorKind::Retryable,
                "in-process Kafka is not running",
            ));
        }
        if down {
            return Err(StepError::new(
                ErrorKind::Retryable,
                "in-process Kafka is down (planned by the test)",
            ));
        }
        Ok(ServingEvidence {
            listener: (spec.advertised_ip, 9092).into(),
            probe_micros: 100,
            detail: "in-process".into(),
        })
    }
    async fn replication(&self, _: &BrokerSpec) -> Result<ReplicationView, StepError> {
        self.call("replication", "")?;
        Ok(self.lock().replication.clone())
    }
    async fn stop(&self, _: Deadline) -> Result<(), StepError> {
        self.call("stop_kafka", "")?;
        self.lock().kafka_running = false;
        Ok(())
    }
}
