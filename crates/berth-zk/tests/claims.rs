//! Claims against a real ZooKeeper: uniqueness under contention, preference, the AZ filter, waiting for a
//! release, and taking over this instance's own stale claim after a restart.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_core::claim::{plan_claim, ClaimPlan};
use berth_core::facts::{
    Attachment, EniFacts, IdResources, Identity, Inventory, InventoryProblem, VolumeFacts,
};
use berth_core::ports::{Coordination, Deadline, ErrorKind, SessionEvent};
use berth_core::BrokerId;
use berth_testkit::zk::ZooKeeper;
use berth_zk::coordination::ClaimBody;
use berth_zk::{ZkCoordination, ZkSettings};
use zookeeper_client as zk;

use common::{holder, plan, settings};

/// 50 claimers over 10 ids, 20 rounds: at no time do two claimers hold one id (checked against an owner table
/// and against the znodes themselves), and the 40 losers of each round wait and win as owners leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_claimers_over_ten_ids_never_share_an_owner() {
    let server = ZooKeeper::standalone().expect("start ZooKeeper");
    let connect = server.connect_string();
    let settings = settings(&connect, Duration::from_secs(4), "contention");
    let claims_path = settings.claims_path.clone();
    let checker = common::client(&connect).await;
    let claimers: Vec<Arc<ZkCoordination>> = (0..50)
        .map(|_| Arc::new(ZkCoordination::new(settings.clone()).expect("adapter")))
        .collect();
    let started = Instant::now();
    for round in 0..20 {
        let table: Arc<Mutex<HashMap<BrokerId, String>>> = Arc::default();
        let mut tasks = Vec::new();
        for (index, claimer) in claimers.iter().enumerate() {
            let (claimer, table, checker, claims_path) = (
                Arc::clone(claimer),
                Arc::clone(&table),
                checker.clone(),
                claims_path.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let me = format!("i-{round}-{index}");
                let id = common::claim_any(&claimer, 0..10, &me, Duration::from_secs(30))
                    .await
                    .unwrap_or_else(|error| panic!("{me}: {error}"));
                if let Some(other) = table.lock().unwrap().insert(id, me.clone()) {
                    panic!("id {id} claimed by {me} while {other} holds it");
                }
                // The znode agrees: our body, our session.
                let (body, stat) = checker
                    .get_data(&format!("{claims_path}/{id}"))
                    .await
                    .expect("claim node");
                let body: ClaimBody = serde_json::from_slice(&body).expect("claim JSON");
                assert_eq!(body.holder.instance_id, me);
                assert_eq!(Some(stat.ephemeral_owner), claimer.session_id().await);
                tokio::task::yield_now().await;
                table.lock().unwrap().remove(&id);
                claimer.release().await.expect("release");
                id
            }));
        }
        let mut per_id: BTreeMap<BrokerId, usize> = BTreeMap::new();
        for task in tasks {
            *per_id.entry(task.await.expect("claimer")).or_default() += 1;
        }
        assert_eq!(per_id.len(), 10, "round {round}: every id was used");
        assert_eq!(
            per_id.values().sum::<usize>(),
            50,
            "round {round}: all 50 claimers got an id"
        );
        assert!(
            common::owners(&checker, &claims_path).await.is_empty(),
            "round {round}: all released"
        );
    }
    eprintln!(
        "contention: 20 rounds of 50 claimers over 10 ids in {:?}",
        started.elapsed()
    );
}

/// The preferred id is taken first. If another host holds it, no other id is claimed (that would strand the
/// ENI and volume attached here): the claimer waits for it, saying who holds it, until its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferred_id_first_and_release_frees_it_at_once_for_a_waiter() {
    let server = ZooKeeper::standalone().expect("start ZooKeeper");
    let settings = settings(
        &server.connect_string(),
        Duration::from_secs(6),
        "preferred",
    );
    let deadline = || Deadline::after(Duration::from_secs(20));

    let first = ZkCoordination::new(settings.clone()).expect("adapter");
    assert_eq!(
        first
            .claim(&plan(0..6, Some(4)), &holder("i-first"), deadline())
            .await
            .unwrap(),
        BrokerId(4)
    );
    let second = ZkCoordination::new(settings.clone()).expect("adapter");
    let mut preferring_4 = plan(0..6, Some(4));
    preferring_4.preferred_reason = Some("ENI eni-4 is already attached here".into());
    let refused = second
        .claim(
            &preferring_4,
            &holder("i-second"),
            Deadline::after(Duration::from_secs(2)),
        )
        .await
        .expect_err(
            "another host's claim on the preferred id is respected, and no other id is taken",
        );
    assert_eq!(refused.kind, ErrorKind::Retryable);
    assert!(
        refused.message.contains("i-first") && refused.message.contains("eni-4"),
        "names the holder and what is attached here: {refused}"
    );
    assert_eq!(second.held().await, None);

    // A waiter for id 4 alone wins it as soon as it is released, far sooner than a session timeout.
    let waiter = Arc::new(ZkCoordination::new(settings.clone()).expect("adapter"));
    let waiting = {
        let waiter = Arc::clone(&waiter);
        tokio::spawn(async move {
            let id = waiter
                .claim(&plan([4], None), &holder("i-waiter"), deadline())
                .await;
            (id, Instant::now())
        })
    };
    // Poll (with a deadline) until the waiter has a session and has asked for the claims.
    let polled = Instant::now();
    while waiter.request_count() < 1 {
        assert!(
            polled.elapsed() < Duration::from_secs(10),
            "waiter never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!waiting.is_finished());
    let released = Instant::now();
    first.release().await.expect("release");
    let closed = tokio::time::timeout(Duration::from_secs(5), first.next_session_event()).await;
    assert_eq!(
        closed.ok(),
        Some(SessionEvent::Closed),
        "release closes the session"
    );
    assert_eq!(first.held().await, None);
    let (id, won) = waiting.await.unwrap();
    assert_eq!(id.unwrap(), BrokerId(4));
    let delay = won.duration_since(released);
    eprintln!("release to waiter's claim: {delay:?}");
    assert!(
        delay < Duration::from_secs(2),
        "waiter won {delay:?} after the release (session timeout is 6 s)"
    );
}

fn eni(id: u32, zone: &str, attached_to: Option<&str>) -> EniFacts {
    EniFacts {
        eni_id: format!("eni-{id}"),
        mac: format!("02:00:00:00:00:{id:02x}").parse().unwrap(),
        private_ip: std::net::Ipv4Addr::new(10, 0, 0, 10 + id as u8),
        subnet: "10.0.0.0/24".parse().unwrap(),
        subnet_id: "subnet-1".into(),
        availability_zone: zone.into(),
        attachment: attached_to.map(|instance| Attachment {
            instance_id: instance.into(),
            state: "attached".into(),
            slot: "1".into(),
        }),
    }
}

fn volume(id: u32, zone: &str) -> VolumeFacts {
    VolumeFacts {
        volume_id: format!("vol-{id}"),
        availability_zone: zone.into(),
        state: "available".into(),
        size_gib: 10,
        attachment: None,
    }
}

/// Only ids whose ENI and volume are in this instance's AZ are ever claimed: with two such ids and three
/// claimers in that AZ, the third waits (and times out) rather than take an id from another AZ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn availability_zone_filter_is_honoured() {
    let server = ZooKeeper::standalone().expect("start ZooKeeper");
    let settings = settings(&server.connect_string(), Duration::from_secs(4), "zones");
    let inventory = ids_in_three_zones();
    let identity = |instance: &str| Identity {
        instance_id: instance.into(),
        region: "eu-west-1".into(),
        availability_zone: "eu-west-1a".into(),
        primary_mac: "02:00:00:00:01:00".parse().unwrap(),
        hostname: format!("host-{instance}"),
    };
    let plan = plan_claim(&inventory, &identity("i-a"), (0..5).map(BrokerId));
    assert_eq!(plan.candidates, vec![BrokerId(1), BrokerId(3)]);

    let adapters: Vec<ZkCoordination> = (0..3)
        .map(|_| ZkCoordination::new(settings.clone()).unwrap())
        .collect();
    let claims = futures::future::join_all(adapters.iter().enumerate().map(|(index, adapter)| {
        let plan = plan_claim(
            &inventory,
            &identity(&format!("i-{index}")),
            (0..5).map(BrokerId),
        );
        async move {
            adapter
                .claim(
                    &plan,
                    &holder(&format!("i-{index}")),
                    Deadline::after(Duration::from_millis(1500)),
                )
                .await
        }
    }))
    .await;
    let won: BTreeSet<BrokerId> = claims
        .iter()
        .filter_map(|claim| claim.as_ref().ok().copied())
        .collect();
    assert_eq!(won, BTreeSet::from([BrokerId(1), BrokerId(3)]));
    let lost: Vec<_> = claims
        .iter()
        .filter_map(|claim| claim.as_ref().err())
        .collect();
    assert_eq!(lost.len(), 1, "{claims:?}");
    assert_eq!(
        lost[0].kind,
        ErrorKind::Retryable,
        "all taken is worth retrying: {}",
        lost[0]
    );
    assert!(
        lost[0].message.contains("1,3"),
        "names the candidates: {}",
        lost[0]
    );
    let owners = common::owners(
        &common::client(&server.connect_string()).await,
        &settings.claims_path,
    )
    .await;
    assert_eq!(owners.keys().copied().collect::<Vec<_>>(), vec![1, 3]);
}

/// Ids 0 to 3 with their ENI and volume in zones b, a, c and a; id 4's in two zones (a problem, never a candidate).
fn ids_in_three_zones() -> Inventory {
    let mut inventory = Inventory::default();
    for (id, zone) in [
        (0, "eu-west-1b"),
        (1, "eu-west-1a"),
        (2, "eu-west-1c"),
        (3, "eu-west-1a"),
    ] {
        inventory.ids.insert(
            BrokerId(id),
            IdResources {
                eni: Some(eni(id, zone, None)),
                volume: Some(volume(id, zone)),
            },
        );
    }
    inventory.problems.push(InventoryProblem::ZoneMismatch {
        id: BrokerId(4),
        eni_id: "eni-4".into(),
        eni_az: "eu-west-1a".into(),
        volume_id: "vol-4".into(),
        volume_az: "eu-west-1b".into(),
    });
    inventory
}

/// Claims left by "crashed" daemons: one detached session that nobody closes (it lives until its 10 s timeout)
/// holds a node per `(id, instance)`. Returns the session id.
async fn crashed_claims(connect: &str, claims_path: &str, claims: &[(u32, &str)]) -> i64 {
    let crashed = zk::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .with_detached()
        .connect(connect)
        .await
        .unwrap();
    crashed
        .mkdir(
            claims_path,
            &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()),
        )
        .await
        .unwrap();
    for (id, instance) in claims {
        let body = serde_json::to_vec(&ClaimBody {
            holder: holder(instance),
            claimed_at_ms: 0,
        })
        .unwrap();
        let ephemeral = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
        crashed
            .create(&format!("{claims_path}/{id}"), &body, &ephemeral)
            .await
            .unwrap();
    }
    crashed.session_id().0
}

/// The restarted daemon of `i-restarted` claims from `plan` while its crashed session's claim on id 2 stands: it
/// gets id 2 within `within` (well before that session's 10 s timeout), owned by its new session. Returned so
/// that the claim lives on.
async fn restart_takes_back_id_2(
    settings: &ZkSettings,
    plan: &ClaimPlan,
    within: Duration,
) -> ZkCoordination {
    let started = Instant::now();
    let restarted = ZkCoordination::new(settings.clone()).unwrap();
    let id = restarted
        .claim(
            plan,
            &holder("i-restarted"),
            Deadline::after(Duration::from_secs(20)),
        )
        .await;
    assert_eq!(id.unwrap(), BrokerId(2));
    assert!(
        started.elapsed() < within,
        "took {:?}; the old session lasts 10 s",
        started.elapsed()
    );
    let checker = common::client(&settings.connect).await;
    assert_eq!(
        common::owners(&checker, &settings.claims_path).await[&2],
        (
            "i-restarted".to_owned(),
            restarted.session_id().await.unwrap()
        )
    );
    restarted
}

/// After a crash, this instance's claim from its previous session is still there until that session times out.
/// The restarted daemon replaces it at once; another instance's lingering claim is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_stale_claim_is_taken_over_at_once() {
    let server = ZooKeeper::standalone().expect("start ZooKeeper");
    let connect = server.connect_string();
    let settings = settings(&connect, Duration::from_secs(10), "restart");
    let claims_path = settings.claims_path.clone();

    // Two "crashed" daemons: a session that nobody closes, holding their claims.
    let stale_session = crashed_claims(
        &connect,
        &claims_path,
        &[(2, "i-restarted"), (3, "i-other")],
    )
    .await;

    let _restarted =
        restart_takes_back_id_2(&settings, &plan(0..4, Some(2)), Duration::from_secs(3)).await;
    let checker = common::client(&connect).await;
    assert_ne!(
        common::owners(&checker, &claims_path).await[&2].1,
        stale_session
    );

    // Another instance preferring id 3 (say its ENI is still attached) must not take i-other's live-looking
    // claim, nor another id: it waits.
    let intruder = ZkCoordination::new(settings.clone()).unwrap();
    let refused = intruder
        .claim(
            &plan(0..4, Some(3)),
            &holder("i-intruder"),
            Deadline::after(Duration::from_secs(2)),
        )
        .await
        .expect_err("waits for id 3");
    assert!(refused.message.contains("i-other"), "{refused}");
    assert_eq!(
        common::owners(&checker, &claims_path).await[&3],
        ("i-other".to_owned(), stale_session)
    );
}

/// With zookeeper.digest, claims carry ACLs: anyone may read them, only berth's credentials may delete them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_acl_protects_claims() {
    let server = ZooKeeper::standalone().expect("start ZooKeeper");
    let connect = server.connect_string();
    let mut settings = settings(&connect, Duration::from_secs(4), "secured");
    settings.digest = "berth:s3cret".into();
    let adapter = ZkCoordination::new(settings.clone()).unwrap();
    let id = common::claim_any(&adapter, 0..3, "i-acl", Duration::from_secs(20))
        .await
        .unwrap();
    let path = adapter.claim_path(id);

    let stranger = common::client(&connect).await;
    assert!(
        stranger.get_data(&path).await.is_ok(),
        "world may read a claim"
    );
    assert_eq!(
        stranger.delete(&path, None).await,
        Err(zk::Error::NoAuth),
        "a stranger cannot delete a claim"
    );
    let stranger_claim = stranger
        .create(
            &format!("{}/9", settings.claims_path),
            b"{}",
            &zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all()),
        )
        .await;
    assert_eq!(
        stranger_claim.err(),
        Some(zk::Error::NoAuth),
        "a stranger cannot claim"
    );

    let mut bad = settings.clone();
    bad.digest = "no-colon".into();
    assert!(ZkCoordination::new(bad).is_err());
    adapter.release().await.unwrap();
    assert_eq!(
        stranger.check_stat(&path).await.unwrap(),
        None,
        "released by berth itself"
    );
}

/// A restarted daemon's own claim from its previous session is recognised for any id, not only for one whose
/// ENI or volume is attached here: with every id taken, it takes its own back at once instead of waiting for the
/// old session to time out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_stale_claim_on_any_id_is_taken_back_at_once() {
    let server = ZooKeeper::standalone().expect("start ZooKeeper");
    let connect = server.connect_string();
    let settings = settings(&connect, Duration::from_secs(10), "restart-any");
    let claims_path = settings.claims_path.clone();
    let others: Vec<String> = (0..4).map(|id| format!("i-other-{id}")).collect();
    let claims: Vec<(u32, &str)> = (0..4)
        .map(|id| {
            (
                id,
                if id == 2 {
                    "i-restarted"
                } else {
                    others[id as usize].as_str()
                },
            )
        })
        .collect();
    crashed_claims(&connect, &claims_path, &claims).await;

    restart_takes_back_id_2(&settings, &plan(0..4, None), Duration::from_secs(5)).await;
}
