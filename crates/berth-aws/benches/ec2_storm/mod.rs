//! One claim storm on the `ec2` backend: N claimers in one zone boot at once against strict moto (whose
//! attach refuses an in-use ENI atomically, as EC2 does) and claim M ids by attaching their ENIs.
//!
//! Each claimer discovers first (as the daemon's claim step does; those 3 describes per boot are the `aws`
//! bench's), then every claimer's backend claims at once. Reported: duplicates (an id won twice, or EC2 showing
//! an id's ENI on another instance than its winner), ids claimed, the winners' latency, and EC2 calls per
//! claimer: every request a backend sent until it had its answer (an id, or "every candidate is held by a live
//! instance", when it starts waiting with backoff). Used by berth-zk's `claim_storm` bench, whose line reports
//! both backends.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use berth_core::claim::plan_claim;
use berth_core::ports::{Attachments, ClaimHolder, Coordination, Deadline, Metadata};
use berth_core::BrokerId;
use berth_testkit::aws::world;

use crate::common::{env, ZONE_A};

/// How long a claimer that finds every id held waits before the storm is over.
const LOSER_WAIT: Duration = Duration::from_secs(3);

/// Runs one storm and returns its `key=value` fields (prefixed `ec2_`).
pub async fn storm(claimers: usize, ids: usize) -> String {
    let env = env(&vec![ZONE_A; ids]).await;
    let mut hosts = Vec::with_capacity(claimers);
    for _ in 0..claimers {
        let instance = env.instance(ZONE_A).await;
        let imds = env.imds(&instance, &[]);
        let cloud = env.cloud(env.settings(&imds, ids as u32)).await;
        let identity = cloud.identity().await.expect("identity");
        let inventory = cloud.discover().await.expect("discover");
        let plan = plan_claim(&inventory, &identity, (0..ids as u32).map(BrokerId));
        let holder = ClaimHolder {
            instance_id: identity.instance_id.clone(),
            availability_zone: identity.availability_zone.clone(),
            host: identity.hostname.clone(),
            berth_version: berth_core::VERSION.into(),
        };
        hosts.push((cloud.ec2_claim(), plan, holder, imds));
    }
    let claims = hosts.iter().map(|(backend, plan, holder, _)| async move {
        let begun = Instant::now();
        let result = backend
            .claim(plan, holder, Deadline::after(LOSER_WAIT))
            .await;
        (result, begun.elapsed())
    });
    let results = futures::future::join_all(claims).await;

    let mut won: BTreeMap<BrokerId, Vec<String>> = BTreeMap::new();
    let mut latencies = Vec::new();
    let mut calls = 0;
    for ((backend, _, holder, _), (result, latency)) in hosts.iter().zip(&results) {
        match result {
            Ok(id) => {
                won.entry(*id).or_default().push(holder.instance_id.clone());
                latencies.push(*latency);
                calls += backend.call_count();
            }
            Err(_) => calls += backend.calls_before_waiting(),
        }
    }
    let mut duplicates = won.values().filter(|winners| winners.len() > 1).count();
    for (id, winners) in &won {
        let (_, owner) = world::eni_owner(&env.ec2, &env.ids[id.0 as usize].eni_id)
            .await
            .expect("eni owner");
        if owner.as_ref() != winners.first() {
            duplicates += 1;
        }
    }
    latencies.sort();
    let percentile = |p: usize| {
        latencies
            .get((latencies.len() * p / 100).min(latencies.len().saturating_sub(1)))
            .map_or(0, Duration::as_millis)
    };
    format!(
        "ec2_claimers={claimers} ec2_ids={ids} ec2_claimed={} ec2_duplicates={duplicates} ec2_p50_ms={} \
         ec2_p99_ms={} ec2_calls_per_claim={:.2}",
        won.len(),
        percentile(50),
        percentile(99),
        calls as f64 / claimers as f64
    )
}
