//! `berth plan` against real parts: strict moto (EC2) behind the call-counting fault proxy, an IMDSv2 endpoint
//! for the host, and a real ZooKeeper holding another host's claim. The plan must show the right choice, route
//! and overlay, and must not change anything: every EC2 call it makes is a Describe*, every resource keeps its
//! attachments, no znode is created, no file is written.

use std::time::Duration;

use aws_credential_types::Credentials;
use berth::plan::{self, ClaimsView};
use berth_core::BrokerId;
use berth_testkit::aws::world;
use berth_testkit::aws::{
    loopback_any_port, FaultProxy, Imds, ImdsHost, ImdsInterface, StrictMoto,
};
use berth_testkit::zk::ZooKeeper;
use berth_testkit::BOOT_STATE_NAMES;
use berth_zk::coordination::ClaimBody;
use zookeeper_client as zk;

const REGION: &str = "eu-west-1";
const ZONE_A: &str = "eu-west-1a";
const ZONE_B: &str = "eu-west-1b";

/// ENI and volume status and attachment per id, straight from moto (a macro: the EC2 client type is the
/// testkit's, not named here).
macro_rules! snapshot_of {
    ($ec2:expr, $ids:expr) => {{
        let mut out = Vec::new();
        for id in $ids.iter() {
            let (eni_status, eni_owner) = world::eni_owner($ec2, &id.eni_id).await.expect("eni");
            let (volume_state, volume_owner) = world::volume_owner($ec2, &id.volume_id)
                .await
                .expect("volume");
            out.push((eni_status, eni_owner, volume_state, volume_owner));
        }
        out
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_reads_only_and_explains_the_choice() {
    let moto = StrictMoto::start().expect("strict moto starts");
    let proxy = FaultProxy::start(loopback_any_port(), moto.address()).expect("proxy");
    let ec2 = world::ec2_client(moto.endpoint(), REGION);
    // ids 0 and 1 in zone a, id 2 in zone b.
    let (net, ids) = world::seed_world(
        &ec2,
        &[ZONE_A, ZONE_B],
        &[ZONE_A, ZONE_A, ZONE_B],
        ("berth:cluster", "events"),
    )
    .await
    .expect("network and broker ids");
    let me = world::instance(&ec2, &net, ZONE_A, &[])
        .await
        .expect("instance");
    // A restart: id 1's volume is still attached to this instance.
    world::attach_volume(&ec2, &ids[1].volume_id, &me.instance_id, "/dev/xvdf")
        .await
        .expect("attach");
    // Another host holds id 0's claim.
    let server = ZooKeeper::standalone().expect("start ZooKeeper");
    let other = another_host_claims_id_0(&server).await;
    let imds = imds_of(&me);
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths {
        overlay: dir.path().join("kafka/berth.properties"),
        mount: dir.path().join("mnt/kafka"),
    };
    let text = configuration(&server.connect_string(), &proxy, &imds, &paths);
    let config = berth_config::parse(&text, std::iter::empty()).expect("valid configuration");
    let cloud = berth_aws::AwsCloud::with_credentials(
        berth::adapters::aws_settings(&config),
        Credentials::new("testing", "testing", None, None, "test"),
    )
    .await
    .expect("cloud");
    let before = snapshot_of!(&ec2, &ids);
    proxy.reset_counts();

    let claims = plan::read_claims(&config, Duration::from_secs(10)).await;
    let plan = plan::make(&config, &cloud, &cloud, claims)
        .await
        .expect("plan");

    explains_the_choice(&plan, &me.instance_id, &ids, &paths);

    // What it did: reads only.
    let counts = proxy.counts();
    assert!(
        counts.contains_key("DescribeNetworkInterfaces") && counts.contains_key("DescribeVolumes"),
        "{counts:?}"
    );
    let mutating: Vec<_> = counts
        .keys()
        .filter(|action| !action.starts_with("Describe"))
        .collect();
    assert!(
        mutating.is_empty(),
        "plan made non-Describe calls: {mutating:?} (all: {counts:?})"
    );
    assert_eq!(snapshot_of!(&ec2, &ids), before, "an ENI or volume changed");
    assert_eq!(imds.v1_refusals(), 0, "IMDSv1 was tried");
    assert!(
        !paths.overlay.exists() && !paths.overlay.parent().unwrap().exists(),
        "the overlay was written"
    );
    assert!(!paths.mount.exists(), "the mount point was created");
    let (children, _) = other.get_children(CLAIMS_PATH).await.expect("list claims");
    assert_eq!(children, vec!["0".to_owned()], "plan created a claim");
}

/// The IMDSv2 endpoint of instance `me` in zone a.
fn imds_of(me: &world::SeededInstance) -> Imds {
    Imds::start(
        loopback_any_port(),
        &ImdsHost {
            instance_id: me.instance_id.clone(),
            region: REGION.into(),
            availability_zone: ZONE_A.into(),
            hostname: "ip-10-0-1-20".into(),
            interfaces: vec![ImdsInterface {
                mac: me.primary_mac.clone(),
                device_number: 0,
                interface_id: me.primary_eni_id.clone(),
            }],
            tags: Default::default(),
        },
    )
    .expect("imds")
}

/// Where the plan's host keeps Kafka's overlay and mounts the volume (temporary paths, never to be created).
struct Paths {
    overlay: std::path::PathBuf,
    mount: std::path::PathBuf,
}

/// The claims path of cluster `events` under the default root.
const CLAIMS_PATH: &str = "/berth/events/claims";

/// Another host's session holding id 0's claim node (the session must outlive the plan).
async fn another_host_claims_id_0(server: &ZooKeeper) -> zk::Client {
    let other = zk::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .connect(&server.connect_string())
        .await
        .expect("connect");
    other
        .mkdir(
            CLAIMS_PATH,
            &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()),
        )
        .await
        .expect("mkdir");
    let body = serde_json::to_vec(&ClaimBody {
        holder: berth_core::ports::ClaimHolder {
            instance_id: "i-other".into(),
            availability_zone: ZONE_A.into(),
            host: "ip-10-0-1-9".into(),
            berth_version: "0.1.0".into(),
        },
        claimed_at_ms: 0,
    })
    .unwrap();
    other
        .create(
            &format!("{CLAIMS_PATH}/0"),
            &body,
            &zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all()),
        )
        .await
        .expect("claim id 0");
    other
}

/// The host's configuration: cluster `events`, the ensemble at `zookeeper`, the proxy in front of moto, its IMDS, `paths`.
fn configuration(zookeeper: &str, proxy: &FaultProxy, imds: &Imds, paths: &Paths) -> String {
    format!(
        r#"
[cluster]
name = "events"
broker_count = 3

[tags]
cluster_key = "berth:cluster"

[zookeeper]
connect = "{zk}"

[aws]
region = "{REGION}"
endpoint_url = "{endpoint}"
imds_endpoint = "{imds}"

[storage]
mount_path = "{mount}"

[kafka]
overlay_path = "{overlay}"
"#,
        zk = zookeeper,
        endpoint = proxy.url(),
        imds = imds.url(),
        mount = paths.mount.display(),
        overlay = paths.overlay.display(),
    )
}

/// What the plan says: the identity, who holds the claims, the choice of id 1 (its volume is attached here) and
/// why, the ids skipped or taken, the route, the overlay and the mount, every boot state.
fn explains_the_choice(
    plan: &plan::Plan,
    instance_id: &str,
    ids: &[world::SeededId],
    paths: &Paths,
) {
    assert_eq!(plan.identity.instance_id, instance_id);
    match &plan.claims {
        ClaimsView::Read { taken } => {
            assert_eq!(taken.keys().copied().collect::<Vec<_>>(), vec![BrokerId(0)]);
            assert!(
                taken[&BrokerId(0)].description.contains("i-other"),
                "{taken:?}"
            );
        }
        other => panic!("claims not read: {other:?}"),
    }
    assert_eq!(plan.claim_plan.candidates, vec![BrokerId(0), BrokerId(1)]);
    assert_eq!(plan.choice.id, Some(BrokerId(1)), "{}", plan.render_human());
    assert!(
        plan.choice.reason.contains(&ids[1].volume_id)
            && plan.choice.reason.contains("already attached here"),
        "{}",
        plan.choice.reason
    );
    assert_eq!(plan.choice.try_order.first(), Some(&BrokerId(1)));
    let skipped = plan.ids.iter().find(|line| line.id == BrokerId(2)).unwrap();
    assert!(
        skipped.verdict.starts_with("skipped") && skipped.verdict.contains(ZONE_B),
        "{skipped:?}"
    );
    let taken = plan.ids.iter().find(|line| line.id == BrokerId(0)).unwrap();
    assert!(taken.claim.contains("i-other"), "{taken:?}");
    assert_eq!(taken.verdict, "candidate, claimed by another host");
    let route = plan
        .route
        .clone()
        .expect("a route plan")
        .expect("a valid route plan");
    assert_eq!(route.address.addr(), ids[1].ip);
    assert_eq!(route.address.prefix_len(), 24);
    assert_eq!(route.gateway.to_string(), "10.0.1.1");
    assert_eq!((route.table, route.rule_priority), (10001, 10001));
    let overlay = plan.overlay.clone().expect("an overlay");
    assert_eq!(overlay.path, paths.overlay);
    assert_eq!(overlay.on_disk, "absent");
    assert!(overlay.text.contains("broker.id=1\n"), "{}", overlay.text);
    assert!(
        overlay.text.contains(&ids[1].ip.to_string()),
        "{}",
        overlay.text
    );
    assert_eq!(plan.mount.plan.mount_path, paths.mount);
    let human = plan.render_human();
    eprintln!("{human}");
    for state in BOOT_STATE_NAMES {
        assert!(
            plan.states.iter().any(|s| s.state == state),
            "state {state} missing:\n{human}"
        );
    }
    serde_json::to_string(&plan).expect("the plan serialises");
}

/// A ZooKeeper that cannot be reached does not stop the plan: the claims are reported unknown, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_zookeeper_is_reported_not_fatal() {
    let text = r#"
[cluster]
name = "events"
broker_count = 1

[zookeeper]
connect = "127.0.0.1:1"
"#;
    let config = berth_config::parse(text, std::iter::empty()).expect("valid configuration");
    match plan::read_claims(&config, Duration::from_secs(3)).await {
        ClaimsView::Unknown { reason } => assert!(reason.contains("127.0.0.1:1"), "{reason}"),
        other => panic!("claims read from nowhere: {other:?}"),
    }
}

/// `berth plan` run from a shell with no AWS credentials of its own finds them in the environment file, as the
/// daemon does through `EnvironmentFile=`: it reaches EC2 (through the proxy, counted) and prints the plan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_takes_aws_credentials_from_the_environment_file() {
    let moto = StrictMoto::start().expect("strict moto starts");
    let proxy = FaultProxy::start(loopback_any_port(), moto.address()).expect("proxy");
    let ec2 = world::ec2_client(moto.endpoint(), REGION);
    let (net, _ids) = world::seed_world(&ec2, &[ZONE_A], &[ZONE_A], ("berth:cluster", "events"))
        .await
        .expect("network and broker ids");
    let me = world::instance(&ec2, &net, ZONE_A, &[])
        .await
        .expect("instance");
    let imds = imds_of(&me);
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths {
        overlay: dir.path().join("kafka/berth.properties"),
        mount: dir.path().join("mnt/kafka"),
    };
    let config = dir.path().join("berth.toml");
    std::fs::write(&config, configuration("127.0.0.1:1", &proxy, &imds, &paths)).unwrap();
    let env_file = dir.path().join("environment");
    std::fs::write(
        &env_file,
        "# written by the launch template's user data\nAWS_ACCESS_KEY_ID=testing\nAWS_SECRET_ACCESS_KEY=\"testing\"\n",
    )
    .unwrap();
    proxy.reset_counts();
    let home = dir.path().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", &home)
            .args(["plan", "--no-zookeeper", "--json", "--config"])
            .arg(&config)
            .arg("--env-file")
            .arg(&env_file)
            .output()
            .expect("run berth plan")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "berth plan failed: {stderr}");
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).expect("the plan as JSON");
    assert!(
        plan.to_string().contains(&me.instance_id),
        "the plan does not name this instance: {plan}"
    );
    assert!(
        proxy.counts().contains_key("DescribeNetworkInterfaces"),
        "the plan never reached EC2: {:?}",
        proxy.counts()
    );
}
