//! Shared helpers of berth-zk's tests: settings, holders and plans, and a plain client for checking znodes.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use berth_core::claim::ClaimPlan;
use berth_core::ports::{ClaimHolder, Coordination, Deadline, StepError};
use berth_core::BrokerId;
use berth_zk::coordination::ClaimBody;
use berth_zk::{ZkCoordination, ZkSettings};
use zookeeper_client as zk;

/// The claim adapter's settings for `connect`, with the given session timeout, claims under
/// `/berth/<cluster>/claims`, open ACLs. The harness runs tickTime 500 ms, so sessions down to 1 s are honoured
/// (the configuration's check stops at 2 s for production; tests go below it to stay fast).
pub fn settings(connect: &str, session_timeout: Duration, cluster: &str) -> ZkSettings {
    ZkSettings {
        connect: connect.into(),
        session_timeout,
        digest: Default::default(),
        claims_path: format!("/berth/{cluster}/claims"),
    }
}

/// A claim holder for a made-up instance.
pub fn holder(instance: &str) -> ClaimHolder {
    ClaimHolder {
        instance_id: instance.to_owned(),
        availability_zone: "eu-west-1a".into(),
        host: format!("host-{instance}"),
        berth_version: berth_core::VERSION.into(),
    }
}

/// A plan over `candidates`, with an optional preferred id.
pub fn plan(candidates: impl IntoIterator<Item = u32>, preferred: Option<u32>) -> ClaimPlan {
    ClaimPlan {
        preferred: preferred.map(BrokerId),
        candidates: candidates.into_iter().map(BrokerId).collect(),
        ..ClaimPlan::default()
    }
}

/// `coordination` claiming one of `ids` (none preferred) for `instance`, by a deadline `within` from now.
pub async fn claim_any(
    coordination: &ZkCoordination,
    ids: impl IntoIterator<Item = u32>,
    instance: &str,
    within: Duration,
) -> Result<BrokerId, StepError> {
    coordination
        .claim(&plan(ids, None), &holder(instance), Deadline::after(within))
        .await
}

/// A plain client, for looking at znodes as an operator would.
pub async fn client(connect: &str) -> zk::Client {
    zk::Client::connector()
        .with_session_timeout(Duration::from_secs(4))
        .connect(connect)
        .await
        .expect("connect a checking client")
}

/// Owner table: id -> (instance id in the body, owning session), read from the claim znodes.
pub async fn owners(client: &zk::Client, claims_path: &str) -> BTreeMap<u32, (String, i64)> {
    let children = match client.list_children(claims_path).await {
        Ok(children) => children,
        Err(zk::Error::NoNode) => return BTreeMap::new(),
        Err(error) => panic!("list {claims_path}: {error}"),
    };
    let mut table = BTreeMap::new();
    for child in children {
        let path = format!("{claims_path}/{child}");
        let Ok((body, stat)) = client.get_data(&path).await else {
            continue;
        };
        let body: ClaimBody = serde_json::from_slice(&body).expect("claim body is JSON");
        assert_ne!(stat.ephemeral_owner, 0, "{path} must be ephemeral");
        table.insert(
            child.parse().expect("claim node is named by id"),
            (body.holder.instance_id, stat.ephemeral_owner),
        );
    }
    table
}
