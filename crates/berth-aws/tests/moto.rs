//! berth-aws against strict moto (real EC2 attach refusals), the strict CloudFormation/Auto Scaling endpoint (a
//! stand-in that refuses what AWS refuses), a fault-injecting proxy and an IMDSv2-only endpoint per host.

mod common;

use std::time::{Duration, Instant};

use berth_aws::AwsSettings;
use berth_core::birth::{self, BirthRecord};
use berth_core::facts::InventoryProblem;
use berth_core::ports::{
    Attachments, Deadline, Delivery, DrainReason, ErrorKind, FailureReport, LaunchResult, Metadata,
    Signals, Verdict, VolumeRequest,
};
use berth_core::BrokerId;
use berth_testkit::aws::world;
use berth_testkit::aws::{EniOnTerminate, Fault, Imds};
use common::*;

#[tokio::test]
async fn discovery_maps_ids_and_names_every_configuration_error() {
    // ids 0, 1 in zone a; id 2 in zone b (all fine so far).
    let env = env(&[ZONE_A, ZONE_A, ZONE_B]).await;
    seed_what_discovery_must_flag(&env).await;
    let me = env.instance(ZONE_A).await;
    let imds = env.imds(&me, &[]);
    let cloud = env.cloud(env.settings(&imds, 6)).await;
    let inventory = cloud.discover().await.expect("discovery");

    assert_eq!(
        env.proxy.counts().into_iter().collect::<Vec<_>>(),
        vec![
            ("DescribeNetworkInterfaces".to_owned(), 1),
            ("DescribeSubnets".to_owned(), 1),
            ("DescribeVolumes".to_owned(), 1)
        ],
        "one describe per resource type plus one for the subnets"
    );
    let zero = &inventory.ids[&BrokerId(0)];
    let eni = zero.eni.as_ref().unwrap();
    assert_eq!(eni.eni_id, env.ids[0].eni_id);
    assert_eq!(eni.private_ip, env.ids[0].ip);
    assert_eq!(eni.mac.to_string(), env.ids[0].mac.to_lowercase());
    assert_eq!(eni.subnet.to_string(), "10.0.1.0/24");
    assert_eq!(eni.availability_zone, ZONE_A);
    assert_eq!(eni.attachment, None);
    let volume = zero.volume.as_ref().unwrap();
    assert_eq!(
        (volume.volume_id.as_str(), volume.state.as_str()),
        (env.ids[0].volume_id.as_str(), "available")
    );
    assert_eq!(
        inventory.ids[&BrokerId(2)]
            .eni
            .as_ref()
            .unwrap()
            .subnet
            .to_string(),
        "10.0.2.0/24"
    );

    problems_name_the_ids(&env, &inventory);
    assert!(!inventory.ids.contains_key(&BrokerId(5)));
    assert!(!inventory.ids.contains_key(&BrokerId(7)));
}

/// The duplicate ENI, the zone mismatch and the missing volume are reported, naming what is wrong.
fn problems_name_the_ids(env: &Env, inventory: &berth_core::Inventory) {
    let problems: Vec<String> = inventory.problems.iter().map(ToString::to_string).collect();
    assert_eq!(inventory.problems.len(), 3, "{problems:#?}");
    assert!(matches!(
        &inventory.problems[0],
        InventoryProblem::DuplicateEni {
            id: BrokerId(1),
            count: 2,
            ..
        }
    ));
    assert!(matches!(
        &inventory.problems[1],
        InventoryProblem::ZoneMismatch { id: BrokerId(3), eni_az, volume_az, .. } if eni_az == ZONE_B && volume_az == ZONE_A
    ));
    assert_eq!(
        inventory.problems[2],
        InventoryProblem::Missing {
            id: BrokerId(4),
            missing: "volume".into()
        }
    );
    assert!(
        problems[0].contains(&env.ids[1].eni_id),
        "the duplicate names both ENIs: {}",
        problems[0]
    );
}

/// What discovery must flag or pass over: id 1 gets a second ENI, id 3 an ENI in b with its volume in a, id 4
/// only an ENI; another cluster's id 0, a non-canonical tag (`KAFKA-01`) and an id out of range are not ours.
async fn seed_what_discovery_must_flag(env: &Env) {
    let tagged = |name: &'static str| [("Name", name), (CLUSTER_KEY, CLUSTER)];
    // id 1 gets a second ENI; id 3 an ENI in b with its volume in a; id 4 only an ENI.
    world::eni(&env.ec2, &env.net, ZONE_A, &tagged("KAFKA-1"))
        .await
        .unwrap();
    world::eni(&env.ec2, &env.net, ZONE_B, &tagged("KAFKA-3"))
        .await
        .unwrap();
    world::volume(&env.ec2, ZONE_A, &tagged("KAFKA-3"))
        .await
        .unwrap();
    world::eni(&env.ec2, &env.net, ZONE_A, &tagged("KAFKA-4"))
        .await
        .unwrap();
    // Another cluster's id 0, a non-canonical tag and an id out of range are not ours.
    world::eni(
        &env.ec2,
        &env.net,
        ZONE_A,
        &[("Name", "KAFKA-0"), (CLUSTER_KEY, "other")],
    )
    .await
    .unwrap();
    world::volume(
        &env.ec2,
        ZONE_A,
        &[("Name", "KAFKA-0"), (CLUSTER_KEY, "other")],
    )
    .await
    .unwrap();
    world::eni(&env.ec2, &env.net, ZONE_A, &tagged("KAFKA-01"))
        .await
        .unwrap();
    world::eni(&env.ec2, &env.net, ZONE_A, &tagged("KAFKA-7"))
        .await
        .unwrap();
}

#[tokio::test]
async fn happy_path_boot_stays_within_the_call_budget() {
    let env = env(&[ZONE_A]).await;
    let (me, imds, cloud) = env.launching_host().await;
    let deadline = Deadline::after(Duration::from_secs(30));
    let started = Instant::now();

    let identity = cloud.identity().await.unwrap();
    assert_eq!(identity.instance_id, me.instance_id);
    assert_eq!(identity.availability_zone, ZONE_A);
    assert_eq!(identity.region, REGION);
    assert_eq!(
        identity.primary_mac.to_string(),
        me.primary_mac.to_lowercase()
    );
    let inventory = cloud.discover().await.unwrap();
    let resources = &inventory.ids[&BrokerId(0)];
    let eni = cloud
        .attach_eni(&identity, resources.eni.as_ref().unwrap(), deadline)
        .await
        .unwrap();
    let (volume, device) = cloud
        .attach_volume(&identity, resources.volume.as_ref().unwrap(), deadline)
        .await
        .unwrap();
    assert_eq!(
        cloud
            .signal_stack(&identity, &Verdict::Success)
            .await
            .unwrap(),
        Delivery::Accepted
    );
    assert_eq!(
        cloud
            .complete_launch(&identity, LaunchResult::Continue)
            .await
            .unwrap(),
        Delivery::Accepted
    );
    assert_eq!(env.lifecycle_state(&me), Some("InService"));
    let elapsed = started.elapsed();

    let attachment = eni.attachment.as_ref().unwrap();
    assert_eq!(
        (
            attachment.instance_id.as_str(),
            attachment.state.as_str(),
            attachment.slot.as_str()
        ),
        (me.instance_id.as_str(), "attached", "1")
    );
    assert_eq!(device, "/dev/xvdf");
    assert_eq!(
        volume.attachment.as_ref().unwrap().instance_id,
        me.instance_id
    );
    assert_eq!(
        env.eni_of(0).await,
        ("in-use".into(), Some(me.instance_id.clone()))
    );
    assert_eq!(
        env.volume_of(0).await,
        ("in-use".into(), Some(me.instance_id.clone()))
    );

    within_the_call_budget(&env, elapsed);
    assert_eq!(imds.v1_refusals(), 0, "IMDSv1 must never be used");
    assert!(imds.token_requests() >= 1);

    signals_carry_exact_parameters(&env, &me.instance_id);
}

/// At most 15 EC2 calls for a happy boot, none of them a detach (printed as `aws-boot ec2_calls=..`).
fn within_the_call_budget(env: &Env, elapsed: Duration) {
    let ec2_calls = env.ec2_calls();
    println!(
        "aws-boot ec2_calls={ec2_calls} elapsed_ms={} calls={:?}",
        elapsed.as_millis(),
        env.proxy.counts()
    );
    assert!(
        ec2_calls <= 15,
        "happy-path boot made {ec2_calls} EC2 calls: {:?}",
        env.proxy.counts()
    );
    assert_eq!(
        env.proxy.calls("DetachNetworkInterface") + env.proxy.calls("DetachVolume"),
        0
    );
}

#[tokio::test]
async fn already_attached_here_is_success_without_attach_calls() {
    let env = env(&[ZONE_A]).await;
    let me = env.instance(ZONE_A).await;
    env.attach_id0(&me, "/dev/xvdg").await;
    let imds = env.imds(&me, &[]);
    let cloud = env.cloud(env.settings(&imds, 1)).await;
    let identity = cloud.identity().await.unwrap();
    let resources = cloud.discover().await.unwrap().ids[&BrokerId(0)].clone();
    let deadline = Deadline::after(Duration::from_secs(10));
    cloud
        .attach_eni(&identity, resources.eni.as_ref().unwrap(), deadline)
        .await
        .unwrap();
    let (_, device) = cloud
        .attach_volume(&identity, resources.volume.as_ref().unwrap(), deadline)
        .await
        .unwrap();
    assert_eq!(
        device, "/dev/xvdg",
        "the device it is really attached under"
    );
    assert_eq!(
        env.proxy.calls("AttachNetworkInterface") + env.proxy.calls("AttachVolume"),
        0
    );
}

/// The two signals of a boot, with their exact parameters, both accepted and nothing else sent.
fn signals_carry_exact_parameters(env: &Env, instance_id: &str) {
    let signal = &env.aws.calls_of("SignalResource")[0];
    assert_eq!(signal.param("StackName"), Some("kafka-stack"));
    assert_eq!(signal.param("LogicalResourceId"), Some("BrokerGroup"));
    assert_eq!(signal.param("UniqueId"), Some(instance_id));
    assert_eq!(signal.param("Status"), Some("SUCCESS"));
    let complete = &env.aws.calls_of("CompleteLifecycleAction")[0];
    assert_eq!(complete.param("AutoScalingGroupName"), Some("kafka-asg"));
    assert_eq!(complete.param("LifecycleHookName"), Some("berth-launch"));
    assert_eq!(complete.param("InstanceId"), Some(instance_id));
    assert_eq!(complete.param("LifecycleActionResult"), Some("CONTINUE"));
    assert_eq!(env.aws.calls().len(), 2);
    assert!(env.aws.calls().iter().all(|call| call.accepted()));
}

#[tokio::test]
async fn a_running_owner_is_never_touched_and_is_named() {
    let env = env(&[ZONE_A]).await;
    let owner = env.instance(ZONE_A).await;
    env.attach_id0(&owner, "/dev/xvdf").await;
    let me = env.instance(ZONE_A).await;
    let imds = env.imds(&me, &[]);
    let cloud = env.cloud(env.settings(&imds, 1)).await;
    let identity = cloud.identity().await.unwrap();
    let resources = cloud.discover().await.unwrap().ids[&BrokerId(0)].clone();

    // The early request (one pass, alongside AttachEni) refuses the same way, touching nothing.
    let error = cloud
        .request_volume(&identity, resources.volume.as_ref().unwrap())
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Retryable, "{error}");
    assert!(error.message.contains(&owner.instance_id), "{error}");
    // The state machine retries within its deadline; every attempt is Retryable and names the owner.
    let budget = Instant::now() + Duration::from_secs(3);
    let mut attempts = 0;
    while Instant::now() < budget {
        let deadline = Deadline::after(Duration::from_secs(1));
        let eni_error = cloud
            .attach_eni(&identity, resources.eni.as_ref().unwrap(), deadline)
            .await
            .unwrap_err();
        let volume_error = cloud
            .attach_volume(&identity, resources.volume.as_ref().unwrap(), deadline)
            .await
            .unwrap_err();
        for error in [eni_error, volume_error] {
            assert_eq!(error.kind, ErrorKind::Retryable, "{error}");
            assert!(
                error.message.contains(&owner.instance_id) && error.message.contains("running"),
                "{error}"
            );
        }
        attempts += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(attempts >= 2);
    assert_eq!(
        env.proxy.calls("DetachNetworkInterface") + env.proxy.calls("DetachVolume"),
        0,
        "never detached"
    );
    assert_eq!(
        env.proxy.calls("AttachNetworkInterface") + env.proxy.calls("AttachVolume"),
        0
    );
    assert_eq!(env.eni_of(0).await.1, Some(owner.instance_id.clone()));
    assert_eq!(env.volume_of(0).await.1, Some(owner.instance_id.clone()));
}

#[tokio::test]
async fn an_early_volume_request_sends_one_attach_that_attach_volume_then_finds() {
    let env = env(&[ZONE_A]).await;
    let (me, identity, cloud, _imds, resources) = booting_in(&env, ZONE_A).await;
    let volume = resources.volume.as_ref().unwrap();
    env.proxy.reset_counts();

    let request = cloud.request_volume(&identity, volume).await.unwrap();
    assert!(
        matches!(&request, VolumeRequest::Sent(what) if what.contains(&identity.instance_id)),
        "{request:?}"
    );
    assert_eq!(
        (
            env.proxy.calls("DescribeVolumes"),
            env.proxy.calls("AttachVolume")
        ),
        (1, 1),
        "one pass: observe, request, no wait"
    );
    let (attached, device) = cloud
        .attach_volume(&identity, volume, Deadline::after(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(attached.attachment.unwrap().instance_id, me.instance_id);
    assert_eq!(device, "/dev/xvdf");
    assert_eq!(
        cloud.request_volume(&identity, volume).await.unwrap(),
        VolumeRequest::AlreadyAttached,
        "a restarted berth's early request finds it attached"
    );
    assert_eq!(
        env.proxy.calls("AttachVolume"),
        1,
        "never a second attach: {:?}",
        env.proxy.counts()
    );
}

/// The id of the ENI's current attachment, as EC2 shows it.
async fn eni_attachment_id(env: &Env, eni_id: &str) -> String {
    let described = env
        .ec2
        .describe_network_interfaces()
        .network_interface_ids(eni_id)
        .send()
        .await
        .unwrap();
    described.network_interfaces()[0]
        .attachment()
        .and_then(|a| a.attachment_id())
        .expect("attached")
        .to_owned()
}

#[tokio::test]
async fn a_shutting_down_owner_gets_the_takeover_wait_before_the_force() {
    let env = env(&[ZONE_A]).await;
    env.moto
        .set_terminate_hold(Duration::from_secs(120))
        .unwrap();
    let (owner, identity, cloud, _imds) =
        owned_by_other(&env, |attach| attach.takeover_wait = TAKEOVER_WAIT).await;
    let resources = cloud.discover().await.unwrap().ids[&BrokerId(0)].clone();

    let terminated_at = Instant::now();
    world::terminate(&env.ec2, &owner.instance_id)
        .await
        .unwrap();
    assert_eq!(
        world::instance_state(&env.ec2, &owner.instance_id)
            .await
            .unwrap(),
        "shutting-down"
    );
    let Attached {
        eni,
        volume,
        eni_errors,
        ..
    } = attach_both(&cloud, &identity, &resources, Duration::from_secs(30)).await;
    let takeover = terminated_at.elapsed();
    println!(
        "aws-takeover from=shutting-down takeover_ms={} waits={}",
        takeover.as_millis(),
        eni_errors.len()
    );
    assert!(
        eni_errors
            .iter()
            .all(|e| e.message.contains("shutting-down (for")
                && e.message.contains("aws.takeover_wait = 3s")),
        "{eni_errors:?}"
    );
    assert!(!eni_errors.is_empty(), "the owner was waited for first");
    assert!(
        takeover >= TAKEOVER_WAIT,
        "force-detached after {takeover:?}, before the wait"
    );
    assert_eq!(
        world::instance_state(&env.ec2, &owner.instance_id)
            .await
            .unwrap(),
        "shutting-down",
        "taken over during the hold, once the wait was over"
    );
    assert_eq!(eni.attachment.unwrap().instance_id, identity.instance_id);
    assert_eq!(volume.attachment.unwrap().instance_id, identity.instance_id);
    assert_eq!(env.proxy.calls("DetachNetworkInterface"), 1);
    assert_eq!(env.proxy.calls("DetachVolume"), 1);
    assert!(
        takeover < TAKEOVER_WAIT + Duration::from_secs(10),
        "takeover took {takeover:?}"
    );
}

#[tokio::test]
async fn a_shutting_down_owner_that_lets_go_within_the_wait_is_never_forced() {
    let env = env(&[ZONE_A]).await;
    env.moto
        .set_terminate_hold(Duration::from_secs(120))
        .unwrap();
    let (owner, identity, cloud, _imds) = owned_by_other(&env, |attach| {
        attach.takeover_wait = Duration::from_secs(300)
    })
    .await;
    let resources = cloud.discover().await.unwrap().ids[&BrokerId(0)].clone();
    world::terminate(&env.ec2, &owner.instance_id)
        .await
        .unwrap();
    let eni = resources.eni.as_ref().unwrap();
    let error = cloud
        .attach_eni(&identity, eni, Deadline::after(Duration::from_secs(1)))
        .await
        .unwrap_err();
    assert!(error.message.contains("shutting-down (for"), "{error}");
    // The owner's own drain lets go (its berth detaches, not forced).
    let (_, attachment) = world::eni_owner(&env.ec2, &env.ids[0].eni_id)
        .await
        .unwrap();
    assert_eq!(attachment.as_deref(), Some(owner.instance_id.as_str()));
    let attachment_id = eni_attachment_id(&env, &env.ids[0].eni_id).await;
    env.ec2
        .detach_network_interface()
        .attachment_id(attachment_id)
        .send()
        .await
        .unwrap();
    let (attached, errors, _) = until_ok(Duration::from_secs(30), || {
        cloud.attach_eni(&identity, eni, Deadline::after(Duration::from_secs(30)))
    })
    .await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        attached.attachment.unwrap().instance_id,
        identity.instance_id
    );
    assert_eq!(
        env.proxy.calls("DetachNetworkInterface"),
        0,
        "berth never forced: the owner let go within aws.takeover_wait"
    );
}

#[tokio::test]
async fn a_multi_attach_volume_or_a_delete_on_termination_eni_is_refused_by_name() {
    let env = env(&[ZONE_A]).await;
    let (_, identity, cloud, _imds, resources) = booting_in(&env, ZONE_A).await;
    let deadline = Deadline::after(Duration::from_secs(10));
    // A multi-attach volume tagged as id 0's (it replaces the seeded one's tag).
    let multi = env
        .ec2
        .create_volume()
        .availability_zone(ZONE_A)
        .size(10)
        .volume_type(aws_sdk_ec2::types::VolumeType::Io2)
        .iops(100)
        .multi_attach_enabled(true)
        .send()
        .await
        .unwrap()
        .volume_id()
        .unwrap()
        .to_owned();
    let mut volume = resources.volume.clone().unwrap();
    volume.volume_id = multi.clone();
    let error = cloud
        .attach_volume(&identity, &volume, deadline)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Fatal, "{error}");
    assert!(
        error
            .message
            .contains(&format!("{multi} has multi-attach enabled")),
        "{error}"
    );
    assert_eq!(
        env.proxy.calls("AttachVolume"),
        0,
        "refused before any attach"
    );

    // id 0's ENI attached here, then marked DeleteOnTermination (a launch template, or a person).
    let eni = resources.eni.as_ref().unwrap();
    cloud.attach_eni(&identity, eni, deadline).await.unwrap();
    let attachment_id = eni_attachment_id(&env, &eni.eni_id).await;
    env.ec2
        .modify_network_interface_attribute()
        .network_interface_id(&eni.eni_id)
        .attachment(
            aws_sdk_ec2::types::NetworkInterfaceAttachmentChanges::builder()
                .attachment_id(attachment_id)
                .delete_on_termination(true)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let error = cloud
        .attach_eni(&identity, eni, deadline)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Fatal, "{error}");
    assert!(
        error.message.contains(&format!(
            "{}'s attachment to {} has DeleteOnTermination set",
            eni.eni_id, identity.instance_id
        )),
        "{error}"
    );
    // Releasing it is never refused: the drain detaches what it must.
    cloud.detach_eni(&identity, eni).await.unwrap();
}

#[tokio::test]
async fn the_birth_mark_is_read_and_written_on_the_controllers_volumes() {
    let env = env(&[ZONE_A, ZONE_A, ZONE_A]).await;
    let me = env.instance(ZONE_A).await;
    let imds = env.imds(&me, &[]);
    // Four ids configured; the world has volumes for 0-2 only.
    let cloud = env.cloud(env.settings(&imds, 4)).await;
    let record = cloud.birth_record();
    let controllers: std::collections::BTreeSet<BrokerId> = (0..3).map(BrokerId).collect();
    env.proxy.reset_counts();
    let evidence = record.read(&controllers).await.unwrap();
    assert_eq!(
        env.proxy.calls("DescribeVolumes"),
        1,
        "one filtered describe"
    );
    assert_eq!(
        birth::judge(&evidence),
        birth::Birth::Unborn {
            volumes: (0..3)
                .map(|id| (BrokerId(id), env.ids[id as usize].volume_id.clone()))
                .collect()
        }
    );

    let mark = birth::BirthMark {
        cluster_id: "MkU3OEVBNTcwNTJENDM2Qg".into(),
        voters: "0@10.0.1.10:9093,1@10.0.1.11:9093,2@10.0.1.12:9093".into(),
    };
    let volume = record.mark(BrokerId(1), &mark).await.unwrap();
    assert_eq!(volume, env.ids[1].volume_id);
    assert_eq!(env.proxy.calls("CreateTags"), 1);
    // EC2 itself shows the tag on the volume.
    let tags = env
        .ec2
        .describe_volumes()
        .volume_ids(&volume)
        .send()
        .await
        .unwrap()
        .volumes()[0]
        .tags()
        .to_vec();
    assert!(
        tags.iter().any(|tag| tag.key() == Some(birth::BIRTH_TAG)
            && tag.value() == Some(mark.render().as_str())),
        "{tags:?}"
    );
    let birth = birth::judge(&record.read(&controllers).await.unwrap());
    assert!(
        matches!(&birth, birth::Birth::Born { marked } if marked.len() == 1 && marked[0].id == BrokerId(1)),
        "{birth:?}"
    );
    assert_eq!(
        birth::check_voters(&mark.cluster_id, &mark.voters, &birth),
        Ok(())
    );

    // A controller whose volume does not exist, with no mark anywhere, cannot tell; one mark still can.
    let with_missing: std::collections::BTreeSet<BrokerId> = [0, 3].map(BrokerId).into();
    assert!(matches!(
        birth::judge(&record.read(&with_missing).await.unwrap()),
        birth::Birth::Unknown { reason } if reason.contains("no volume is tagged for controller 3")
    ));
    let error = record.mark(BrokerId(3), &mark).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Fatal, "{error}");
}

#[tokio::test]
async fn takeover_from_a_terminated_owner_that_moto_leaves_holding_the_eni() {
    let env = env_with(&[ZONE_A], EniOnTerminate::Keep).await;
    let (owner, identity, cloud, _imds) = owned_by_other(&env, |_| {}).await;
    world::terminate(&env.ec2, &owner.instance_id)
        .await
        .unwrap();
    assert_eq!(
        env.eni_of(0).await,
        ("in-use".into(), Some(owner.instance_id.clone()))
    );
    let resources = cloud.discover().await.unwrap().ids[&BrokerId(0)].clone();
    let deadline = Deadline::after(Duration::from_secs(30));
    let (eni, errors, _) = until_ok(Duration::from_secs(30), || {
        cloud.attach_eni(&identity, resources.eni.as_ref().unwrap(), deadline)
    })
    .await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(eni.attachment.unwrap().instance_id, identity.instance_id);
    assert_eq!(
        env.proxy.calls("DetachNetworkInterface"),
        1,
        "force-detached from the terminated owner"
    );
    // moto freed the volume on termination: a plain attach.
    cloud
        .attach_volume(&identity, resources.volume.as_ref().unwrap(), deadline)
        .await
        .unwrap();
    assert_eq!(env.proxy.calls("DetachVolume"), 0);
}

#[tokio::test]
async fn conservative_takeover_waits_for_termination_then_attaches_what_ec2_released() {
    let env = env(&[ZONE_A]).await;
    env.moto
        .set_terminate_hold(Duration::from_secs(120))
        .unwrap();
    let (owner, identity, cloud, _imds) = owned_by_other(&env, |attach| {
        attach.takeover_owner_states = vec!["terminated".into()]
    })
    .await;
    let resources = cloud.discover().await.unwrap().ids[&BrokerId(0)].clone();
    world::terminate(&env.ec2, &owner.instance_id)
        .await
        .unwrap();

    let deadline = Deadline::after(Duration::from_secs(1));
    let error = cloud
        .attach_eni(&identity, resources.eni.as_ref().unwrap(), deadline)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Retryable);
    assert!(
        error.message.contains(&owner.instance_id) && error.message.contains("shutting-down"),
        "{error}"
    );

    // While the owner is shutting down, retries never detach anything.
    let waiting_until = Instant::now() + Duration::from_millis(1500);
    let mut errors = Vec::new();
    while Instant::now() < waiting_until {
        let deadline = Deadline::after(Duration::from_millis(300));
        match cloud
            .attach_eni(&identity, resources.eni.as_ref().unwrap(), deadline)
            .await
        {
            Ok(_) => panic!("attached while the owner was still shutting down"),
            Err(error) => errors.push(error),
        }
    }
    assert_eq!(
        env.proxy.calls("DetachNetworkInterface") + env.proxy.calls("DetachVolume"),
        0,
        "nothing is detached from a shutting-down owner when only terminated owners may be taken over"
    );

    // The owner finishes shutting down; EC2 releases (or berth may now force-detach) and the takeover completes.
    let finished_at = Instant::now();
    berth_testkit::aws::http::blocking_request(
        &format!("{}/finish", env.moto.control_url()),
        "POST",
        &format!("{{\"instance_id\": \"{}\"}}", owner.instance_id),
    )
    .expect("finish");
    attach_both(&cloud, &identity, &resources, Duration::from_secs(30)).await;
    let takeover = finished_at.elapsed();
    println!(
        "aws-takeover from=terminated(real-ec2-release) takeover_ms={} retries={}",
        takeover.as_millis(),
        errors.len()
    );
    assert!(
        !errors.is_empty(),
        "the replacement had to wait for the owner"
    );
    assert!(takeover < Duration::from_secs(10), "{takeover:?}");
}

#[tokio::test]
async fn wrong_zone_is_refused_before_any_call() {
    let env = env(&[ZONE_B]).await;
    let (_, identity, cloud, _imds, resources) = booting_in(&env, ZONE_A).await;
    env.proxy.reset_counts();
    let deadline = Deadline::after(Duration::from_secs(5));
    let error = cloud
        .attach_eni(&identity, resources.eni.as_ref().unwrap(), deadline)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Fatal);
    assert!(
        error.message.contains(ZONE_B) && error.message.contains(ZONE_A),
        "{error}"
    );
    let error = cloud
        .attach_volume(&identity, resources.volume.as_ref().unwrap(), deadline)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Fatal);
    let error = cloud
        .request_volume(&identity, resources.volume.as_ref().unwrap())
        .await
        .unwrap_err();
    assert_eq!(
        error.kind,
        ErrorKind::Fatal,
        "the early request too: {error}"
    );
    assert!(
        env.proxy.counts().is_empty(),
        "no API call at all: {:?}",
        env.proxy.counts()
    );
}

#[tokio::test]
async fn throttling_bursts_and_500s_are_survived() {
    let env = env(&[ZONE_A]).await;
    let (me, _imds, cloud) = env.launching_host().await;
    let identity = cloud.identity().await.unwrap();
    // More faults than the SDK's own attempts, so some reach the state machine, which must see Retryable.
    env.proxy
        .inject("DescribeNetworkInterfaces", Fault::Throttle, 5);
    env.proxy.inject("DescribeVolumes", Fault::ServerError, 4);
    env.proxy
        .inject("AttachNetworkInterface", Fault::Throttle, 2);
    env.proxy
        .inject("AttachNetworkInterface", Fault::ServerError, 2);
    env.proxy.inject("AttachVolume", Fault::ServerError, 3);
    env.proxy.inject("SignalResource", Fault::Throttle, 4);
    env.proxy
        .inject("CompleteLifecycleAction", Fault::ServerError, 4);
    let budget = Duration::from_secs(60);
    let (inventory, discover_errors, _) = until_ok(budget, || cloud.discover()).await;
    let resources = inventory.ids[&BrokerId(0)].clone();
    let Attached {
        eni_errors,
        volume_errors,
        ..
    } = attach_both(&cloud, &identity, &resources, budget).await;
    let (_, mut signal_errors, _) =
        until_ok(budget, || cloud.signal_stack(&identity, &Verdict::Success)).await;
    let (_, hook_errors, _) = until_ok(budget, || {
        cloud.complete_launch(&identity, LaunchResult::Continue)
    })
    .await;
    signal_errors.extend(hook_errors);
    for action in [
        "DescribeNetworkInterfaces",
        "DescribeVolumes",
        "AttachNetworkInterface",
        "AttachVolume",
        "SignalResource",
        "CompleteLifecycleAction",
    ] {
        assert_eq!(
            env.proxy.faulted(action),
            match action {
                "DescribeNetworkInterfaces" => 5,
                "DescribeVolumes"
                | "AttachNetworkInterface"
                | "SignalResource"
                | "CompleteLifecycleAction" => 4,
                _ => 3,
            },
            "{action}"
        );
    }
    assert!(
        !discover_errors.is_empty() && !signal_errors.is_empty(),
        "faults outlasted the SDK's retries"
    );
    let all: Vec<_> = discover_errors
        .iter()
        .chain(&eni_errors)
        .chain(&volume_errors)
        .chain(&signal_errors)
        .collect();
    assert!(
        all.iter()
            .any(|e| e.message.contains("RequestLimitExceeded")),
        "{all:?}"
    );
    assert!(
        all.iter().any(|e| e.message.contains("HTTP 500")),
        "{all:?}"
    );
    // Exactly one signal and one hook completion got through, despite the retries, and both were taken.
    assert_eq!(env.aws.calls_of("SignalResource").len(), 1);
    assert_eq!(env.aws.calls_of("CompleteLifecycleAction").len(), 1);
    assert!(env.aws.calls().iter().all(|call| call.accepted()));
    assert_eq!(env.eni_of(0).await.1, Some(me.instance_id.clone()));
}

/// The world of an instance named by its tags (IMDS instance metadata tags): stack `tagged-stack` whose
/// `TaggedGroup` awaits one signal, group `tagged-asg` with hooks `launch` and `terminate`.
async fn tagged(
    env: &Env,
) -> (
    world::SeededInstance,
    berth_testkit::aws::Imds,
    berth_aws::AwsCloud,
) {
    let me = env.instance(ZONE_A).await;
    let imds = env.imds(
        &me,
        &[
            ("aws:cloudformation:stack-name", "tagged-stack"),
            ("aws:cloudformation:logical-id", "TaggedGroup"),
            ("aws:autoscaling:groupName", "tagged-asg"),
        ],
    );
    env.stack("tagged-stack", "TaggedGroup", 1);
    env.group("tagged-asg", "launch", "terminate");
    let signals = signals(true, "launch", "terminate");
    let cloud = env
        .cloud(AwsSettings {
            signals,
            ..env.settings(&imds, 1)
        })
        .await;
    (me, imds, cloud)
}

#[tokio::test]
async fn a_refused_signal_is_an_answer_and_never_keeps_the_launch_hook_waiting() {
    let env = env(&[ZONE_A]).await;
    let (me, imds, cloud) = tagged(&env).await;
    let other = env.instance(ZONE_A).await;
    env.launching("tagged-asg", &me);
    // Another instance's signal completed the stack's creation: ours is an ordinary replacement.
    let done = env.aws.with(|plane| {
        plane.stacks.signal(
            &berth_testkit::aws::query::Params::from_pairs(&[
                ("StackName", "tagged-stack"),
                ("LogicalResourceId", "TaggedGroup"),
                ("UniqueId", other.instance_id.as_str()),
                ("Status", "SUCCESS"),
            ]),
            Instant::now(),
        )
    });
    done.expect("the first signal is taken");
    let identity = cloud.identity().await.unwrap();
    let refused = cloud
        .signal_stack(&identity, &Verdict::Success)
        .await
        .unwrap();
    let Delivery::NotAwaited(answer) = refused else {
        panic!("CloudFormation refused it; the adapter must say so: {refused:?}")
    };
    assert!(
        answer.ends_with("is in CREATE_COMPLETE state and cannot be signaled"),
        "{answer}"
    );
    assert_eq!(
        cloud
            .complete_launch(&identity, LaunchResult::Continue)
            .await
            .unwrap(),
        Delivery::Accepted,
        "the hook does not depend on CloudFormation"
    );
    assert_eq!(env.lifecycle_state(&me), Some("InService"));
    assert!(matches!(
        cloud.heartbeat(&identity).await.unwrap(),
        Delivery::NotAwaited(answer) if answer == format!("No active Lifecycle Action found with instance ID {}", me.instance_id)
    ));
    assert!(matches!(
        cloud
            .complete_launch(&identity, LaunchResult::Continue)
            .await
            .unwrap(),
        Delivery::NotAwaited(_)
    ));
    assert_eq!(env.ec2_calls(), 0, "names came from IMDS tags");
    assert_eq!(imds.v1_refusals(), 0);
}

#[tokio::test]
async fn failure_abandons_a_pending_launch_else_marks_the_instance_unhealthy() {
    let env = env(&[ZONE_A]).await;
    let (me, _imds, cloud) = tagged(&env).await;
    env.launching("tagged-asg", &me);
    let identity = cloud.identity().await.unwrap();
    cloud.heartbeat(&identity).await.unwrap();
    assert_eq!(
        cloud
            .signal_stack(&identity, &Verdict::Failure("volume refused".into()))
            .await
            .unwrap(),
        Delivery::Accepted
    );
    assert_eq!(
        cloud.report_failure(&identity).await.unwrap(),
        FailureReport::Abandoned
    );
    assert_eq!(env.lifecycle_state(&me), Some("Terminating:Proceed"));
    let id = Some(me.instance_id.as_str());
    let calls = env.aws.calls();
    let actions: Vec<_> = calls.iter().map(|c| c.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "RecordLifecycleActionHeartbeat",
            "SignalResource",
            "CompleteLifecycleAction"
        ]
    );
    assert_eq!(
        (
            calls[0].param("AutoScalingGroupName"),
            calls[0].param("LifecycleHookName"),
            calls[0].param("InstanceId")
        ),
        (Some("tagged-asg"), Some("launch"), id)
    );
    assert_eq!(
        (
            calls[1].param("StackName"),
            calls[1].param("LogicalResourceId"),
            calls[1].param("UniqueId"),
            calls[1].param("Status")
        ),
        (
            Some("tagged-stack"),
            Some("TaggedGroup"),
            id,
            Some("FAILURE")
        )
    );
    assert_eq!(calls[2].param("LifecycleActionResult"), Some("ABANDON"));
    assert!(calls.iter().all(|call| call.accepted()));

    an_instance_in_service_is_marked_unhealthy(&env).await;
}

/// An instance already in service has no launch action: it is marked unhealthy, which a fresh instance (younger
/// than the group's grace period) allows only without respecting that period; its terminate hook then waits for
/// the drain.
async fn an_instance_in_service_is_marked_unhealthy(env: &Env) {
    let serving = env.instance(ZONE_A).await;
    env.launching("tagged-asg", &serving);
    let imds = env.imds(&serving, &[("aws:autoscaling:groupName", "tagged-asg")]);
    let signals = signals(false, "launch", "terminate");
    let serving_cloud = env
        .cloud(AwsSettings {
            signals,
            ..env.settings(&imds, 1)
        })
        .await;
    let serving_id = serving_cloud.identity().await.unwrap();
    serving_cloud
        .complete_launch(&serving_id, LaunchResult::Continue)
        .await
        .unwrap();
    assert_eq!(
        serving_cloud.report_failure(&serving_id).await.unwrap(),
        FailureReport::MarkedUnhealthy
    );
    let health = env
        .aws
        .calls_from("SetInstanceHealth", &serving.instance_id);
    assert_eq!(
        (
            health[0].param("HealthStatus"),
            health[0].param("ShouldRespectGracePeriod"),
            health[0].accepted()
        ),
        (Some("Unhealthy"), Some("false"), true)
    );
    assert_eq!(env.lifecycle_state(&serving), Some("Terminating:Wait"));
    assert_eq!(
        serving_cloud
            .complete_termination(&serving_id)
            .await
            .unwrap(),
        Delivery::Accepted,
        "the terminate hook waits for the drain"
    );
    let last = env.aws.calls().pop().unwrap();
    assert_eq!(
        (
            last.param("LifecycleHookName"),
            last.param("LifecycleActionResult"),
            last.accepted()
        ),
        (Some("terminate"), Some("CONTINUE"), true)
    );
}

#[tokio::test]
async fn an_abandon_that_fails_falls_back_to_set_instance_health_and_neither_is_named() {
    let env = env(&[ZONE_A]).await;
    let (me, _imds, cloud) = tagged(&env).await;
    env.launching("tagged-asg", &me);
    let identity = cloud.identity().await.unwrap();
    // ABANDON throttled past the SDK's own three attempts: the failure still reaches the group.
    env.proxy
        .inject("CompleteLifecycleAction", Fault::Throttle, 3);
    assert_eq!(
        cloud.report_failure(&identity).await.unwrap(),
        FailureReport::MarkedUnhealthy
    );
    let health = env.aws.calls_from("SetInstanceHealth", &me.instance_id);
    assert_eq!(
        (
            health.len(),
            health[0].param("HealthStatus"),
            health[0].accepted()
        ),
        (1, Some("Unhealthy"), true)
    );
    let member = env
        .aws
        .read(|plane| plane.autoscaling.member(&me.instance_id))
        .unwrap();
    assert!(member.unhealthy, "{member:?}");
    // Both throttled: one error naming both, retryable (the daemon reports again later).
    env.proxy
        .inject("CompleteLifecycleAction", Fault::Throttle, 3);
    env.proxy.inject("SetInstanceHealth", Fault::Throttle, 3);
    let error = cloud.report_failure(&identity).await.unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
    assert!(
        error.message.contains("ABANDON failed")
            && error.message.contains("CompleteLifecycleAction")
            && error.message.contains("SetInstanceHealth"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn names_fall_back_to_describe_tags_and_missing_ones_are_fatal() {
    let env = env(&[ZONE_A]).await;
    let tagged = world::instance(
        &env.ec2,
        &env.net,
        ZONE_A,
        &[
            ("aws:cloudformation:stack-name", "s1"),
            ("aws:cloudformation:logical-id", "L1"),
            ("aws:autoscaling:groupName", "g1"),
        ],
    )
    .await
    .unwrap();
    env.stack("s1", "L1", 1);
    env.group("g1", "launch", "terminate");
    env.launching("g1", &tagged);
    let imds = env.imds(&tagged, &[]);
    let settings = |imds: &Imds| AwsSettings {
        signals: signals(true, "launch", ""),
        ..env.settings(imds, 1)
    };
    let cloud = env.cloud(settings(&imds)).await;
    let identity = cloud.identity().await.unwrap();
    cloud
        .signal_stack(&identity, &Verdict::Success)
        .await
        .unwrap();
    cloud
        .complete_launch(&identity, LaunchResult::Continue)
        .await
        .unwrap();
    assert_eq!(env.proxy.calls("DescribeTags"), 1);
    let signal = &env.aws.calls_of("SignalResource")[0];
    assert_eq!(
        (signal.param("StackName"), signal.param("LogicalResourceId")),
        (Some("s1"), Some("L1"))
    );
    assert_eq!(
        env.aws.calls_of("CompleteLifecycleAction")[0].param("AutoScalingGroupName"),
        Some("g1")
    );
    assert!(env.aws.calls().iter().all(|call| call.accepted()));

    let untagged = env.instance(ZONE_A).await;
    let imds = env.imds(&untagged, &[]);
    let cloud = env.cloud(settings(&imds)).await;
    let identity = cloud.identity().await.unwrap();
    let error = cloud
        .signal_stack(&identity, &Verdict::Success)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Fatal);
    assert!(
        error.message.contains("aws.cloudformation.stack")
            && error.message.contains(&untagged.instance_id),
        "{error}"
    );
}

#[tokio::test]
async fn detach_on_drain_releases_both_and_is_idempotent() {
    let env = env(&[ZONE_A]).await;
    let me = env.instance(ZONE_A).await;
    let imds = env.imds(&me, &[]);
    let cloud = env.cloud(env.settings(&imds, 1)).await;
    let identity = cloud.identity().await.unwrap();
    let resources = cloud.discover().await.unwrap().ids[&BrokerId(0)].clone();
    let deadline = Deadline::after(Duration::from_secs(10));
    let eni = cloud
        .attach_eni(&identity, resources.eni.as_ref().unwrap(), deadline)
        .await
        .unwrap();
    let (volume, _) = cloud
        .attach_volume(&identity, resources.volume.as_ref().unwrap(), deadline)
        .await
        .unwrap();
    cloud.detach_volume(&identity, &volume).await.unwrap();
    cloud.detach_eni(&identity, &eni).await.unwrap();
    assert_eq!(env.eni_of(0).await, ("available".into(), None));
    assert_eq!(env.volume_of(0).await, ("available".into(), None));
    cloud.detach_volume(&identity, &volume).await.unwrap();
    cloud.detach_eni(&identity, &eni).await.unwrap();
    assert_eq!(
        env.proxy.calls("DetachNetworkInterface") + env.proxy.calls("DetachVolume"),
        2
    );
}

#[tokio::test]
async fn termination_notices_come_from_imds_v2_only() {
    let env = env(&[ZONE_A]).await;
    let me = env.instance(ZONE_A).await;
    let imds = env.imds(&me, &[]);
    let cloud = env.cloud(env.settings(&imds, 1)).await;
    assert_eq!(cloud.termination_notices().await.unwrap(), []);
    imds.set_lifecycle_state("InService");
    assert_eq!(cloud.termination_notices().await.unwrap(), []);
    imds.set_spot_action(r#"{"action": "terminate", "time": "2026-11-25T03:00:00Z"}"#);
    assert_eq!(
        cloud.termination_notices().await.unwrap(),
        [DrainReason::SpotInterruption]
    );
    // The group's terminate action follows the spot notice: both are announced, the spot notice first.
    imds.set_lifecycle_state("Terminated");
    assert_eq!(
        cloud.termination_notices().await.unwrap(),
        [
            DrainReason::SpotInterruption,
            DrainReason::LifecycleTerminated
        ]
    );
    assert_eq!(imds.v1_refusals(), 0, "berth never tried IMDSv1");

    // The test IMDS really refuses v1: a plain GET without a token is a 401 (and is counted).
    let v1 = berth_testkit::aws::http::blocking_request(
        &format!("{}/latest/meta-data/instance-id", imds.url()),
        "GET",
        "",
    )
    .unwrap();
    assert_eq!(v1.status, 401);
    assert_eq!(imds.v1_refusals(), 1);
}

#[tokio::test]
async fn strict_moto_refuses_attachments_as_real_ec2_does() {
    let env = env(&[ZONE_A]).await;
    let first = env.instance(ZONE_A).await;
    let second = env.instance(ZONE_A).await;
    let in_b = env.instance(ZONE_B).await;
    let (eni, volume) = (&env.ids[0].eni_id, &env.ids[0].volume_id);
    world::attach_eni(&env.ec2, eni, &first.instance_id, 1)
        .await
        .unwrap();
    world::attach_volume(&env.ec2, volume, &first.instance_id, "/dev/xvdf")
        .await
        .unwrap();

    let err = world::attach_eni(&env.ec2, eni, &second.instance_id, 1)
        .await
        .unwrap_err();
    assert_eq!(error_code(err), "InvalidNetworkInterface.InUse");
    let err = world::attach_volume(&env.ec2, volume, &second.instance_id, "/dev/xvdf")
        .await
        .unwrap_err();
    assert_eq!(error_code(err), "VolumeInUse");

    let (spare_eni, _, _) = world::eni(&env.ec2, &env.net, ZONE_A, &[("Name", "spare")])
        .await
        .unwrap();
    let spare_volume = world::volume(&env.ec2, ZONE_A, &[("Name", "spare")])
        .await
        .unwrap();
    let err = world::attach_eni(&env.ec2, &spare_eni, &first.instance_id, 1)
        .await
        .unwrap_err();
    assert_eq!(
        error_code(err),
        "InvalidParameterValue",
        "device index 1 is taken"
    );
    let err = world::attach_volume(&env.ec2, &spare_volume, &first.instance_id, "/dev/xvdf")
        .await
        .unwrap_err();
    assert_eq!(
        error_code(err),
        "InvalidParameterValue",
        "device name /dev/xvdf is taken"
    );
    let err = world::attach_eni(&env.ec2, &spare_eni, &in_b.instance_id, 1)
        .await
        .unwrap_err();
    assert_eq!(
        error_code(err),
        "InvalidParameterCombination",
        "ENI in another AZ"
    );
    let err = world::attach_volume(&env.ec2, &spare_volume, &in_b.instance_id, "/dev/xvdf")
        .await
        .unwrap_err();
    assert_eq!(error_code(err), "InvalidVolume.ZoneMismatch");

    attaching_to_a_leaving_instance_is_refused(&env, &second, &spare_eni, &spare_volume).await;

    // Termination releases the secondary ENI once shutting-down ends (real EC2), and frees the data volume.
    world::terminate(&env.ec2, &first.instance_id)
        .await
        .unwrap();
    assert_eq!(
        world::eni_owner(&env.ec2, eni).await.unwrap(),
        ("available".into(), None)
    );
    assert_eq!(
        world::volume_owner(&env.ec2, volume).await.unwrap(),
        ("available".into(), None)
    );
}

/// The EC2 error code of a seeding call that attached an ENI or a volume.
fn error_code(error: world::SeedError) -> String {
    let error = error.downcast::<aws_sdk_ec2::error::SdkError<
        aws_sdk_ec2::operation::attach_network_interface::AttachNetworkInterfaceError,
    >>();
    match error {
        Ok(error) => aws_sdk_ec2::error::ProvideErrorMetadata::code(&*error)
            .unwrap_or_default()
            .to_owned(),
        Err(other) => {
            match other.downcast::<aws_sdk_ec2::error::SdkError<
                aws_sdk_ec2::operation::attach_volume::AttachVolumeError,
            >>() {
                Ok(error) => aws_sdk_ec2::error::ProvideErrorMetadata::code(&*error)
                    .unwrap_or_default()
                    .to_owned(),
                Err(other) => panic!("unexpected error {other}"),
            }
        }
    }
}

/// An instance shutting down, then terminated, takes no attachment (`IncorrectInstanceState`).
async fn attaching_to_a_leaving_instance_is_refused(
    env: &Env,
    second: &world::SeededInstance,
    spare_eni: &str,
    spare_volume: &str,
) {
    env.moto
        .begin_shutting_down(&second.instance_id, None)
        .unwrap();
    assert_eq!(
        world::instance_state(&env.ec2, &second.instance_id)
            .await
            .unwrap(),
        "shutting-down"
    );
    let err = world::attach_eni(&env.ec2, spare_eni, &second.instance_id, 1)
        .await
        .unwrap_err();
    assert_eq!(error_code(err), "IncorrectInstanceState");
    env.moto.finish_termination(&second.instance_id).unwrap();
    let err = world::attach_volume(&env.ec2, spare_volume, &second.instance_id, "/dev/xvdg")
        .await
        .unwrap_err();
    assert_eq!(error_code(err), "IncorrectInstanceState");
}

/// The strict endpoint's refusals reach the SDK as AWS's do: the error code and message of the query
/// protocol's `ErrorResponse`, for calls berth never makes wrongly itself (what berth's own calls meet is tested
/// above).
#[tokio::test]
async fn the_endpoint_refuses_as_aws_does_through_the_sdk() {
    let env = env(&[ZONE_A]).await;
    let me = env.instance(ZONE_A).await;
    env.stack("kafka-stack", "BrokerGroup", 1);
    env.group("kafka-asg", "berth-launch", "berth-terminate");
    env.launching("kafka-asg", &me);
    let sdk = sdk_config(&env).await;
    let autoscaling = aws_sdk_autoscaling::Client::new(&sdk);
    let cloudformation = aws_sdk_cloudformation::Client::new(&sdk);
    let young = autoscaling
        .set_instance_health()
        .instance_id(&me.instance_id)
        .health_status("Unhealthy")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    let (code, message) = code_and_message(&young);
    assert_eq!(code, "ValidationError");
    assert!(
        message.ends_with("is less than the configured grace period of 300 seconds"),
        "ShouldRespectGracePeriod defaults to true: {message}"
    );
    let unknown = cloudformation
        .signal_resource()
        .stack_name("no-such-stack")
        .logical_resource_id("BrokerGroup")
        .unique_id(&me.instance_id)
        .status("SUCCESS".into())
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(
        code_and_message(&unknown),
        (
            "ValidationError".into(),
            "Stack with id no-such-stack does not exist".into()
        )
    );
    let wrong_hook = autoscaling
        .complete_lifecycle_action()
        .auto_scaling_group_name("kafka-asg")
        .lifecycle_hook_name("berth-terminate")
        .instance_id(&me.instance_id)
        .lifecycle_action_result("CONTINUE")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(
        code_and_message(&wrong_hook),
        (
            "ValidationError".into(),
            format!(
                "No active Lifecycle Action found with instance ID {}",
                me.instance_id
            )
        )
    );
    let not_served = autoscaling
        .describe_auto_scaling_groups()
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(code_and_message(&not_served).0, "InvalidAction");
    assert_eq!(
        env.lifecycle_state(&me),
        Some("Pending:Wait"),
        "refused calls change nothing"
    );
    assert!(env.aws.calls().iter().all(|call| !call.accepted()));
}

/// The SDK's configuration for the proxy in front of the endpoint, with moto's static credentials.
async fn sdk_config(env: &Env) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(env.proxy.url())
        .credentials_provider(aws_credential_types::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await
}

/// A service error's code and message, as the SDK reads them.
fn code_and_message(
    error: &dyn aws_sdk_autoscaling::error::ProvideErrorMetadata,
) -> (String, String) {
    (
        error.code().unwrap_or_default().to_owned(),
        error.message().unwrap_or_default().to_owned(),
    )
}
