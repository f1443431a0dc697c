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

/// id -> (instance id in the body, owning session), read from the claim znodes.
async fn owners(client: &zk::Client, claims_path: &str) -> BTreeMap<u32, (String, i64)> {
    let mut table = BTreeMap::new();
    for child in client
        .list_children(claims_path)
        .await
        .expect("list claims")
    {
        let path = format!("{claims_path}/{child}");
        let (body, stat) = client.get_data(&path).await.expect("read claim");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("claim JSON");
        let instance = body["instance_id"].as_str().unwrap_or_default().to_owned();
        table.insert(child.parse().expect("id"), (instance, stat.ephemeral_owner));
    }
    table
}
