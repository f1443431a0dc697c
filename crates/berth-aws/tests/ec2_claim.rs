//! The `ec2` claim backend against strict moto (which refuses an in-use ENI as EC2 does, atomically): claims
//! stay unique and in the claimer's zone under concurrent claimers, a restart re-claims its own ENI without a
//! call, a dying owner's id is taken over, and a live owner's id is waited for, never touched.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use berth_aws::Ec2Claim;
use berth_core::claim::{plan_claim, ClaimPlan};
use berth_core::ports::{Attachments, ClaimHolder, Coordination, Deadline, ErrorKind, Metadata};
use berth_core::BrokerId;
use berth_testkit::aws::world::{self, SeededInstance};
use berth_testkit::aws::Imds;
use common::*;

/// One host's claim backend and plan (from its own discovery), with what keeps its IMDS alive.
struct Claimer {
    instance: SeededInstance,
    backend: Ec2Claim,
    plan: ClaimPlan,
    _imds: Imds,
}

async fn claimer(env: &Env, instance: SeededInstance) -> Claimer {
    claimer_with(env, instance, DEFAULT_TAKEOVER_WAIT).await
}

/// As [`claimer`], with this `aws.takeover_wait`.
async fn claimer_with(env: &Env, instance: SeededInstance, takeover_wait: Duration) -> Claimer {
    let imds = env.imds(&instance, &[]);
    let broker_count = env.ids.len() as u32;
    let mut settings = env.settings(&imds, broker_count);
    settings.attach.takeover_wait = takeover_wait;
    let cloud = env.cloud(settings).await;
    let identity = cloud.identity().await.expect("identity");
    let inventory = cloud.discover().await.expect("discover");
    let plan = plan_claim(&inventory, &identity, (0..broker_count).map(BrokerId));
    Claimer {
        instance,
        backend: cloud.ec2_claim(),
        plan,
        _imds: imds,
    }
}

fn holder(instance: &SeededInstance) -> ClaimHolder {
    ClaimHolder {
        instance_id: instance.instance_id.clone(),
        availability_zone: instance.availability_zone.clone(),
        host: format!("ip-{}", instance.instance_id),
        berth_version: berth_core::VERSION.into(),
    }
}

impl Claimer {
    async fn claim(&self, within: Duration) -> Result<BrokerId, berth_core::StepError> {
        self.backend
            .claim(&self.plan, &holder(&self.instance), Deadline::after(within))
            .await
    }
}

/// EC2's view: id -> the instance its ENI is attached to.
async fn eni_owners(env: &Env) -> BTreeMap<BrokerId, Option<String>> {
    let mut owners = BTreeMap::new();
    for index in 0..env.ids.len() {
        let (_, owner) = env.eni_of(index).await;
        owners.insert(BrokerId(index as u32), owner);
    }
    owners
}

#[tokio::test]
async fn concurrent_claimers_get_unique_ids_in_their_own_zone_and_the_rest_wait_naming_the_holders()
{
    // ids 0-3 in zone a, 4-5 in zone b; 7 claimers in a, 3 in b.
    let zones = [ZONE_A, ZONE_A, ZONE_A, ZONE_A, ZONE_B, ZONE_B];
    let env = env(&zones).await;
    let mut claimers = Vec::new();
    for zone in [ZONE_A; 7].into_iter().chain([ZONE_B; 3]) {
        let instance = env.instance(zone).await;
        claimers.push(claimer(&env, instance).await);
    }
    let results =
        futures::future::join_all(claimers.iter().map(|c| c.claim(Duration::from_secs(3)))).await;

    let mut won: BTreeMap<BrokerId, String> = BTreeMap::new();
    let mut waited = 0;
    for (claimer, result) in claimers.iter().zip(&results) {
        match result {
            Ok(id) => {
                let previous = won.insert(*id, claimer.instance.instance_id.clone());
                assert!(previous.is_none(), "id {id} claimed twice: {results:?}");
                assert_eq!(
                    zones[id.0 as usize], claimer.instance.availability_zone,
                    "id {id} claimed from another zone"
                );
                assert_eq!(claimer.backend.held(), Some(*id));
            }
            Err(error) => {
                waited += 1;
                assert_eq!(error.kind, ErrorKind::Retryable, "{error}");
                assert!(
                    error.message.contains("attached to a live instance")
                        && error.message.contains("running"),
                    "the waiting claimer says what it waits for: {error}"
                );
                assert!(claimer.backend.calls_before_waiting() > 0);
            }
        }
    }
    assert_eq!(won.len(), 6, "every id is claimed once: {results:?}");
    assert_eq!(waited, 4, "3 in zone a and 1 in zone b wait");
    let owners = eni_owners(&env).await;
    for (id, winner) in &won {
        assert_eq!(
            owners[id].as_ref(),
            Some(winner),
            "EC2 agrees who holds {id}"
        );
    }
}

#[tokio::test]
async fn a_restart_reclaims_its_own_eni_without_a_call_and_a_live_owner_is_never_touched() {
    let env = env(&[ZONE_A, ZONE_A]).await;
    let first = claimer(&env, env.instance(ZONE_A).await).await;
    let id = first
        .claim(Duration::from_secs(5))
        .await
        .expect("first claim");
    assert_eq!(
        first.backend.call_count(),
        1,
        "a free id is one AttachNetworkInterface"
    );

    // berth restarts on the same instance: discovery shows the ENI attached here; claiming it needs no call.
    let restarted = claimer(&env, first.instance.clone()).await;
    assert_eq!(restarted.plan.preferred, Some(id));
    assert_eq!(restarted.claim(Duration::from_secs(5)).await.unwrap(), id);
    assert_eq!(restarted.backend.call_count(), 0);

    // Another host takes the other id, then a third finds both held by running instances: it waits.
    let second = claimer(&env, env.instance(ZONE_A).await).await;
    let other = second.claim(Duration::from_secs(5)).await.unwrap();
    assert_ne!(other, id);
    let third = claimer(&env, env.instance(ZONE_A).await).await;
    let error = third.claim(Duration::from_secs(2)).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Retryable);
    assert!(
        error.message.contains(&first.instance.instance_id)
            && error.message.contains(&second.instance.instance_id),
        "{error}"
    );
    assert_eq!(env.proxy.calls("DetachNetworkInterface"), 0);
    let owners = eni_owners(&env).await;
    assert_eq!(
        owners[&id].as_deref(),
        Some(first.instance.instance_id.as_str())
    );
    assert_eq!(
        owners[&other].as_deref(),
        Some(second.instance.instance_id.as_str())
    );
}

#[tokio::test]
async fn a_dying_owners_id_is_taken_over_while_the_claimer_waits() {
    let env = env(&[ZONE_A]).await;
    // The owner stays in shutting-down (holding its ENI, as EC2 does) until the test ends it.
    env.moto
        .set_terminate_hold(Duration::from_secs(3600))
        .expect("hold");
    let owner = claimer(&env, env.instance(ZONE_A).await).await;
    let id = owner.claim(Duration::from_secs(5)).await.unwrap();
    let replacement = claimer_with(&env, env.instance(ZONE_A).await, Duration::from_secs(2)).await;

    // The replacement reports what it waits for (as /state shows it); the owner starts dying only then.
    let (said, mut heard) = tokio::sync::mpsc::unbounded_channel::<String>();
    let reporter: berth_core::progress::Reporter = std::sync::Arc::new(move |reason: &str| {
        let _ = said.send(reason.to_owned());
    });
    let waiting = berth_core::progress::scope(reporter, replacement.claim(Duration::from_secs(60)));
    let kill = async {
        let reason = heard.recv().await.expect("a waiting reason");
        assert!(
            reason.contains(&owner.instance.instance_id) && reason.contains("running"),
            "{reason}"
        );
        world::terminate(&env.ec2, &owner.instance.instance_id)
            .await
            .expect("terminate");
        let dying = std::time::Instant::now();
        // Shutting down, it is waited for (aws.takeover_wait), not forced at once.
        loop {
            let reason = heard.recv().await.expect("a waiting reason");
            if reason.contains("shutting-down (for") {
                assert!(reason.contains("aws.takeover_wait = 2s"), "{reason}");
                break;
            }
        }
        dying
    };
    let (claimed, dying) = tokio::join!(waiting, kill);
    assert_eq!(claimed.expect("taken over"), id);
    assert!(
        dying.elapsed() >= Duration::from_secs(2),
        "forced after {:?}, within aws.takeover_wait",
        dying.elapsed()
    );
    assert_eq!(
        world::instance_state(&env.ec2, &owner.instance.instance_id)
            .await
            .unwrap(),
        "shutting-down",
        "taken over while the owner was still shutting down"
    );
    assert_eq!(
        env.proxy.calls("DetachNetworkInterface"),
        1,
        "one forced detach"
    );
    assert_eq!(
        eni_owners(&env).await[&id].as_deref(),
        Some(replacement.instance.instance_id.as_str())
    );
}

#[tokio::test]
async fn a_claim_cut_short_after_ec2_accepted_it_is_released_by_the_teardown() {
    let env = env(&[ZONE_A, ZONE_A]).await;
    let claimer = claimer(&env, env.instance(ZONE_A).await).await;
    env.proxy.reset_counts();
    // A drain cancels the claim step once EC2 has been asked to attach: the machine never learns the id, so
    // its teardown has no DetachEni; only the claim's release remains.
    let claim = claimer.claim(Duration::from_secs(10));
    tokio::pin!(claim);
    let asked = async {
        while env.proxy.calls("AttachNetworkInterface") == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::select! {
        claimed = &mut claim => { claimed.expect("claimed before the drain came"); }
        () = asked => {}
    }
    // EC2 finishes what it accepted, however the step ended.
    let mine = Some(claimer.instance.instance_id.clone());
    let attached_here = |owners: BTreeMap<BrokerId, Option<String>>| {
        owners.values().filter(|owner| **owner == mine).count()
    };
    let accepted = tokio::time::timeout(Duration::from_secs(10), async {
        while attached_here(eni_owners(&env).await) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    accepted
        .await
        .expect("EC2 attached the ENI the claim asked for");
    claimer.backend.release().await.expect("released");
    assert_eq!(
        attached_here(eni_owners(&env).await),
        0,
        "no ENI left attached to the drained instance"
    );
    assert_eq!(env.proxy.calls("DetachNetworkInterface"), 1);
    // Released again (a retried teardown step): nothing left to do.
    claimer.backend.release().await.expect("released twice");
    assert_eq!(env.proxy.calls("DetachNetworkInterface"), 1);
}
