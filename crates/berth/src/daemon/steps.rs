//! Step execution: each [`Step`] runs as a task through the adapters, inside a [`berth_core::progress`] scope
//! (so what an adapter waits for reaches `/state` and the journal through the [`WaitingBoard`]), bounded by its
//! deadline plus a grace, and its result goes back to the loop as an input carrying the run's tag.
//!
//! The AttachEni step also sends the volume's attach request on the boot's first run (one pass of AttachEbs's
//! rules, not waited for), beside the ENI's attach and link wait, so EC2 attaches both at once. The step ends
//! only once the request is answered: AttachEbs, which observes the volume again, never overlaps it, and no
//! request for the volume is ever left in flight by a finished step.

use std::pin::pin;
use std::time::Duration;

use berth_core::claim::plan_claim;
use berth_core::machine::{Output, ReclaimOutcome};
use berth_core::ports::{BrokerSpec, ClaimHolder, Deadline, Reclaim};
use berth_core::{
    BrokerId, EniAttachment, EniFacts, ErrorKind, Facts, Identity, Input, State, Step, StepError,
    StepKind, StepTag, VolumeAttachment, VolumeFacts,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{Adapters, EarlyVolumeRecord, STEP_OVERRUN_GRACE};
use crate::waiting::WaitingBoard;

/// Time allowed for the volume's attach request (one describe and one request, each retried by the SDK).
const VOLUME_REQUEST_LIMIT: Duration = Duration::from_secs(60);

/// What a step task needs from the loop.
pub(super) struct StepContext {
    pub(super) facts: Facts,
    pub(super) broker_ids: Vec<BrokerId>,
    pub(super) adapters: Adapters,
    pub(super) waiting: WaitingBoard,
    pub(super) early_volume: EarlyVolumeRecord,
    pub(super) state: State,
}

/// A finished step's result (one value per step, short-lived: boxing would only add noise).
#[allow(clippy::large_enum_variant)]
enum StepResult {
    Output(Output),
    Reclaimed(ReclaimOutcome),
}

/// Runs the step `tag` as a task, due by `deadline`; its result comes back on `inputs`.
pub(super) fn spawn(
    tag: StepTag,
    step: Step,
    deadline: Instant,
    context: StepContext,
    inputs: mpsc::Sender<Input>,
) -> JoinHandle<()> {
    let name = tag.kind.name();
    let overrun = deadline + STEP_OVERRUN_GRACE;
    let deadline = Deadline(deadline.into_std());
    tokio::spawn(async move {
        let began = Instant::now();
        let reporter = context.waiting.reporter(tag.kind, context.state);
        let work = async {
            match step {
                Step::Reclaim { broker_id } => reclaim(broker_id, deadline, &context)
                    .await
                    .map(StepResult::Reclaimed),
                step => execute(step, deadline, &context)
                    .await
                    .map(StepResult::Output),
            }
        };
        let result = tokio::time::timeout_at(overrun, berth_core::progress::scope(reporter, work))
            .await
            .unwrap_or_else(|_| {
                Err(StepError::new(
                    ErrorKind::Retryable,
                    format!("{name}: step overran its deadline"),
                ))
            });
        debug!(
            berth_step = name,
            berth_step_ms = began.elapsed().as_millis() as u64,
            ok = result.is_ok(),
            "step finished"
        );
        let input = match result {
            Ok(StepResult::Output(output)) => Input::StepDone { tag, output },
            Ok(StepResult::Reclaimed(outcome)) => Input::Reclaimed { tag, outcome },
            Err(error) if tag.kind == StepKind::Reclaim => Input::ReclaimFailed { tag, error },
            Err(error) => Input::StepFailed { tag, error },
        };
        let _ = inputs.send(input).await;
    })
}

/// Runs one step (not the reclaim) through the adapters.
async fn execute(
    step: Step,
    deadline: Deadline,
    context: &StepContext,
) -> Result<Output, StepError> {
    let adapters = &context.adapters;
    match step {
        Step::Claim => claim(deadline, context).await,
        Step::AttachEni {
            identity,
            eni,
            volume,
        } => attach_eni(&identity, &eni, volume.as_ref(), deadline, context).await,
        Step::Route { plan } => {
            adapters.network.configure(&plan, deadline).await?;
            crash_point("route");
            Ok(Output::Routed)
        }
        Step::AttachEbs { identity, volume } => {
            let (volume, requested_device) = adapters
                .attachments
                .attach_volume(&identity, &volume, deadline)
                .await?;
            let device = adapters
                .storage
                .resolve(&volume, &requested_device, deadline)
                .await?;
            Ok(Output::VolumeReady(VolumeAttachment {
                volume,
                requested_device,
                device,
            }))
        }
        Step::Mount {
            device,
            plan,
            broker_id,
        } => {
            let report = adapters
                .storage
                .mount(&device, &plan, broker_id, deadline)
                .await?;
            crash_point("mount");
            Ok(Output::Mounted(report))
        }
        Step::StartKafka { spec } => start_kafka(&spec, deadline, adapters).await,
        Step::Check { spec } => Ok(Output::Serving(adapters.broker.check(&spec).await?)),
        Step::CatchUp { spec } => Ok(Output::CatchUpView(
            adapters.broker.replication(&spec).await?,
        )),
        Step::DrainCheck { spec } => Ok(Output::DrainCheckView(
            adapters.broker.replication(&spec).await?,
        )),
        Step::Reclaim { .. } => Err(StepError::new(
            ErrorKind::Fatal,
            "internal: reclaim is not a main step",
        )),
    }
}

/// Attaches the ENI and waits for its link; with `volume`, sends the volume's attach request beside it and
/// returns only once that is answered too (saying so when the ENI was ready first).
async fn attach_eni(
    identity: &Identity,
    eni: &EniFacts,
    volume: Option<&VolumeFacts>,
    deadline: Deadline,
    context: &StepContext,
) -> Result<Output, StepError> {
    let adapters = &context.adapters;
    let mut attach = pin!(async {
        let eni = adapters
            .attachments
            .attach_eni(identity, eni, deadline)
            .await?;
        let (link_name, link_index) = adapters.network.wait_for_link(eni.mac, deadline).await?;
        Ok(Output::EniReady(EniAttachment {
            eni,
            link_name,
            link_index,
        }))
    });
    let Some(volume) = volume else {
        return attach.await;
    };
    let mut request = pin!(request_volume(identity, volume, context));
    let mut answered = false;
    let ready = loop {
        // The request is polled first: it goes out with the ENI's attach, never after the ENI is ready.
        tokio::select! {
            biased;
            () = &mut request, if !answered => answered = true,
            ready = &mut attach => break ready,
        }
    };
    if !answered {
        berth_core::progress::report(
            "the volume's attach request, sent beside the ENI's, to be answered",
        );
        request.await;
    }
    ready
}

/// The volume's attach request: recorded for `/state` and logged, never the step's failure (AttachEbs observes
/// the volume again, so a lost or refused request costs only time).
async fn request_volume(identity: &Identity, volume: &VolumeFacts, context: &StepContext) {
    context.early_volume.requested();
    let request = context
        .adapters
        .attachments
        .request_volume(identity, volume);
    let result = tokio::time::timeout(VOLUME_REQUEST_LIMIT, request)
        .await
        .unwrap_or_else(|_| {
            Err(StepError::new(
                ErrorKind::Retryable,
                format!(
                    "{}: no answer within {VOLUME_REQUEST_LIMIT:?}",
                    volume.volume_id
                ),
            ))
        });
    let (state, volume_id) = (context.state.name(), volume.volume_id.as_str());
    let broker_id = context.facts.broker_id.map(|id| id.0);
    match &result {
        Ok(request) => info!(
            berth_state = state,
            berth_broker_id = broker_id,
            berth_volume_id = volume_id,
            "volume requested alongside the ENI: {request}"
        ),
        Err(error) => warn!(
            berth_state = state,
            berth_broker_id = broker_id,
            berth_volume_id = volume_id,
            error = %error,
            "early volume request failed (AttachEbs attaches it): {error}"
        ),
    }
    context.early_volume.answered(result);
}

/// A crash point, for the crash test only: built with the `failpoints` feature and started with
/// `FAILPOINTS=<name>=return`, berth is SIGKILLed here, where a state's work is done and its result not yet
/// taken (a window too short to hit from outside). Without the feature it is nothing.
fn crash_point(name: &'static str) {
    #[cfg(feature = "failpoints")]
    fail::fail_point!(name, |_| {
        tracing::warn!(berth_crash_point = name, "crash point reached: SIGKILL");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        std::process::abort()
    });
    let _ = name;
}

/// Observe first: a Kafka already serving as this broker (berth was stopped and started again) is adopted, not
/// restarted; otherwise it is started.
async fn start_kafka(
    spec: &BrokerSpec,
    deadline: Deadline,
    adapters: &Adapters,
) -> Result<Output, StepError> {
    if let Ok(evidence) = adapters.broker.check(spec).await {
        info!(berth_state = State::StartKafka.name(), berth_broker_id = spec.broker_id.0, detail = %evidence.detail, "Kafka is already serving as this broker: adopted, not restarted");
        return Ok(Output::Serving(evidence));
    }
    Ok(Output::Serving(
        adapters.broker.start(spec, deadline).await?,
    ))
}

async fn claim(deadline: Deadline, context: &StepContext) -> Result<Output, StepError> {
    let adapters = &context.adapters;
    let identity = adapters.metadata.identity().await?;
    let inventory = adapters.attachments.discover().await?;
    for problem in &inventory.problems {
        warn!(berth_state = State::Claim.name(), berth_broker_id = problem_id(problem), problem = %problem, "tagging problem: id skipped");
    }
    let plan = plan_claim(&inventory, &identity, context.broker_ids.iter().copied());
    if plan.candidates.is_empty() {
        return Err(StepError::new(
            ErrorKind::Retryable,
            format!(
                "no broker id can be claimed from {} ({} ids skipped: {})",
                identity.availability_zone,
                plan.skipped.len(),
                plan.skipped_summary()
            ),
        ));
    }
    info!(
        berth_state = State::Claim.name(),
        berth_instance_id = %identity.instance_id,
        berth_availability_zone = %identity.availability_zone,
        candidates = ?plan.candidates.iter().map(|id| id.0).collect::<Vec<_>>(),
        preferred = ?plan.preferred.map(|id| id.0),
        "claiming a broker id"
    );
    let broker_id = adapters
        .coordination
        .claim(&plan, &holder(&identity), deadline)
        .await?;
    let resources = inventory.ids.get(&broker_id).cloned().unwrap_or_default();
    let peers = inventory
        .ids
        .iter()
        .filter_map(|(id, r)| r.eni.as_ref().map(|eni| (*id, eni.private_ip)))
        .collect();
    Ok(Output::Claimed {
        identity,
        broker_id,
        resources,
        peers,
    })
}

/// Re-claims the id; when another host holds it, observes whether the id's ENI is still attached here, which
/// the machine needs to decide between waiting and letting go.
async fn reclaim(
    broker_id: BrokerId,
    deadline: Deadline,
    context: &StepContext,
) -> Result<ReclaimOutcome, StepError> {
    let identity = context.facts.identity.as_ref().ok_or_else(|| {
        StepError::new(
            ErrorKind::Fatal,
            "internal: reclaim without a known identity",
        )
    })?;
    let answer = context
        .adapters
        .coordination
        .reclaim(broker_id, &holder(identity), deadline)
        .await?;
    let holder = match answer {
        Reclaim::Held => return Ok(ReclaimOutcome::Held),
        Reclaim::TakenBy(holder) => holder,
    };
    let eni = context
        .facts
        .resources
        .as_ref()
        .and_then(|resources| resources.eni.as_ref());
    let eni_held_here = match eni {
        Some(eni) => {
            context
                .adapters
                .attachments
                .eni_attached_here(identity, eni)
                .await?
        }
        None => false,
    };
    Ok(ReclaimOutcome::Taken {
        holder,
        eni_held_here,
    })
}

fn problem_id(problem: &berth_core::InventoryProblem) -> u32 {
    use berth_core::InventoryProblem::*;
    match problem {
        DuplicateEni { id, .. }
        | DuplicateVolume { id, .. }
        | ZoneMismatch { id, .. }
        | Missing { id, .. } => id.0,
    }
}

fn holder(identity: &Identity) -> ClaimHolder {
    ClaimHolder {
        instance_id: identity.instance_id.clone(),
        availability_zone: identity.availability_zone.clone(),
        host: identity.hostname.clone(),
        berth_version: berth_core::VERSION.into(),
    }
}
