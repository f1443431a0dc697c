//! One claim storm: N `ZkCoordination` claimers start at once against an ensemble and claim N ids; the report
//! line counts duplicates, latency percentiles and ZooKeeper requests per claim.
//!
//! Shared by berth-zk's `claim_storm` bench (its own 3-node ensemble) and berth-sim's `claim_storm_fleet` (the
//! simulated region's ensemble, reached from inside the region's network namespace).

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use berth_core::claim::ClaimPlan;
use berth_core::ports::{ClaimHolder, Coordination, Deadline};
use berth_core::BrokerId;
use berth_zk::{ZkCoordination, ZkSettings};
use zookeeper_client as zk;

/// Runs one storm in cluster `cluster` and returns its report line, starting with `name`.
pub async fn storm(name: &str, connect: &str, claimers: usize, ids: u32, cluster: &str) -> String {
    let settings = ZkSettings {
        connect: connect.into(),
        session_timeout: Duration::from_secs(6),
        digest: Default::default(),
        claims_path: format!("/berth/{cluster}/claims"),
    };
    // The claims path exists in any cluster that has ever had a claim; create it outside the measurement.
    let setup = zk::Client::connect(connect).await.expect("setup client");
    setup
        .mkdir(
            &settings.claims_path,
            &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()),
        )
        .await
        .expect("create the claims path");

    let plan = ClaimPlan {
        candidates: (0..ids).map(BrokerId).collect(),
        ..ClaimPlan::default()
    };
    let started = Instant::now();
    let results = claim_all(&settings, &plan, claimers).await;
    let wall = started.elapsed();

    let owners = owners(&setup, &settings.claims_path).await;
    let mut seen = HashSet::new();
    let (mut duplicates, mut failed) = (0usize, 0usize);
    let (mut requests, mut sessions) = (0u64, 0u64);
    let mut latencies = Vec::with_capacity(claimers);
    for (adapter, instance, id, latency) in &results {
        requests += adapter.request_count();
        sessions += adapter.session_count();
        latencies.push(*latency);
        match id {
            Ok(id) => {
                let owned = owners.get(&id.0)
                    == Some(&(instance.clone(), adapter.session_id().await.unwrap_or(0)));
                if !seen.insert(*id) || !owned {
                    duplicates += 1;
                }
            }
            Err(error) => {
                failed += 1;
                eprintln!("{instance}: {error}");
            }
        }
    }
    latencies.sort();
    let percentile =
        |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)].as_millis();
    let n = claimers as f64;
    eprintln!(
        "{name}: {claimers} claimers over {} ids in {wall:?}; failed={failed}; sessions_per_claim={:.2}",
        ids,
        sessions as f64 / n
    );
    format!(
        "{name} claimers={claimers} duplicates={duplicates} p50_ms={} p99_ms={} zk_ops_per_claim={:.2}",
        percentile(50),
        percentile(99),
        requests as f64 / n
    )
}

/// id -> (instance id in the body, owning session), read from the claim znodes by berth-zk's lister.
async fn owners(client: &zk::Client, claims_path: &str) -> BTreeMap<u32, (String, i64)> {
    berth_zk::listing::read_claims(client, claims_path)
        .await
        .expect("list claims")
        .into_iter()
        .map(|(id, claim)| (id.0, (claim.instance_id.unwrap_or_default(), claim.session)))
        .collect()
}

/// One claim's outcome: the adapter that made it, its instance, the id (or why none) and how long it took.
type Outcome = (
    ZkCoordination,
    String,
    Result<BrokerId, berth_core::StepError>,
    Duration,
);

/// `claimers` adapters, each for an instance of its own, claiming from `plan` at once.
async fn claim_all(settings: &ZkSettings, plan: &ClaimPlan, claimers: usize) -> Vec<Outcome> {
    let tasks: Vec<_> = (0..claimers)
        .map(|index| {
            let (settings, plan) = (settings.clone(), plan.clone());
            tokio::spawn(async move {
                let adapter = ZkCoordination::new(settings).expect("adapter");
                let holder = ClaimHolder {
                    instance_id: format!("i-{index:017x}"),
                    availability_zone: "eu-west-1a".into(),
                    host: format!("ip-10-0-0-{index}"),
                    berth_version: berth_core::VERSION.into(),
                };
                let begun = Instant::now();
                let id = adapter
                    .claim(&plan, &holder, Deadline::after(Duration::from_secs(60)))
                    .await;
                let latency = begun.elapsed();
                (adapter, holder.instance_id, id, latency)
            })
        })
        .collect();
    let mut results = Vec::with_capacity(claimers);
    for task in tasks {
        results.push(task.await.expect("claimer task"));
    }
    results
}
