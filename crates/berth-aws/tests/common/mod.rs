//! The test world: strict moto behind the strict CloudFormation/Auto Scaling endpoint (a stand-in, named as such)
//! behind the fault proxy, which counts every call; one IMDSv2 endpoint per simulated host. A test creates the
//! stack and group its calls need ([`Env::stack`], [`Env::group`], [`Env::launching`]).

#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use berth_aws::{AttachSettings, AwsCloud, AwsSettings, DiscoverySpec, SignalSettings};
use berth_core::facts::{EniFacts, IdResources, Identity, VolumeFacts};
use berth_core::ports::{Attachments, Deadline, Metadata, StepError};
use berth_core::retry::{Jitter, RetryPolicy};
use berth_core::tag::TagTemplate;
use berth_core::BrokerId;
use berth_testkit::aws::autoscaling::{GroupSpec, Hook, HookResult, Transition};
use berth_testkit::aws::cloudformation::ResourceSignal;
use berth_testkit::aws::world::{self, Network, SeededId, SeededInstance};
use berth_testkit::aws::{
    loopback_any_port, AwsEndpoint, EniOnTerminate, FaultProxy, Imds, ImdsHost, ImdsInterface,
    StrictMoto,
};

pub const REGION: &str = "eu-west-1";
pub const ZONE_A: &str = "eu-west-1a";
pub const ZONE_B: &str = "eu-west-1b";
pub const CLUSTER: &str = "events";
pub const CLUSTER_KEY: &str = "berth:cluster";
/// `aws.takeover_wait`'s default (two minutes): how long a shutting-down owner is given before the force.
pub const DEFAULT_TAKEOVER_WAIT: Duration = Duration::from_secs(120);

/// The actions answered by the CloudFormation/Auto Scaling endpoint (not EC2).
pub const NOT_EC2: [&str; 4] = [
    "SignalResource",
    "CompleteLifecycleAction",
    "RecordLifecycleActionHeartbeat",
    "SetInstanceHealth",
];

pub struct Env {
    pub proxy: FaultProxy,
    pub aws: AwsEndpoint,
    pub moto: StrictMoto,
    /// Direct to moto (seeding and checks are not counted).
    pub ec2: aws_sdk_ec2::Client,
    pub net: Network,
    /// Broker ids 0.. in the zones given to [`env`].
    pub ids: Vec<SeededId>,
}

/// Strict moto with real EC2's ENI release, a network in zones a and b, and broker ids in `zones`.
pub async fn env(zones: &[&str]) -> Env {
    env_with(zones, EniOnTerminate::Detach).await
}

pub async fn env_with(zones: &[&str], eni_on_terminate: EniOnTerminate) -> Env {
    let moto = StrictMoto::builder()
        .eni_on_terminate(eni_on_terminate)
        .start()
        .expect("strict moto starts");
    let aws =
        AwsEndpoint::start(loopback_any_port(), REGION, Some(moto.address())).expect("endpoint");
    let proxy = FaultProxy::start(loopback_any_port(), aws.address()).expect("proxy");
    let ec2 = world::ec2_client(moto.endpoint(), REGION);
    let (net, ids) = world::seed_world(&ec2, &[ZONE_A, ZONE_B], zones, (CLUSTER_KEY, CLUSTER))
        .await
        .expect("network and broker ids");
    Env {
        proxy,
        aws,
        moto,
        ec2,
        net,
        ids,
    }
}

impl Env {
    /// A stack `name` being created, whose `resource` awaits `count` SUCCESS signals.
    pub fn stack(&self, name: &str, resource: &str, count: u32) {
        let policy = ResourceSignal {
            count,
            timeout: Duration::from_secs(3600),
        };
        self.aws.with(|plane| {
            plane
                .stacks
                .create(name, &[(resource, Some(policy))], Instant::now())
        });
    }

    /// An Auto Scaling group `name` with a launch and a terminate hook.
    pub fn group(&self, name: &str, launch_hook: &str, terminate_hook: &str) {
        let hook = |name: &str, transition| Hook {
            name: name.to_owned(),
            transition,
            heartbeat_timeout: Duration::from_secs(3600),
            default_result: HookResult::Abandon,
        };
        self.aws.with(|plane| {
            plane.autoscaling.create_group(GroupSpec {
                name: name.to_owned(),
                hooks: vec![
                    hook(launch_hook, Transition::Launching),
                    hook(terminate_hook, Transition::Terminating),
                ],
                health_check_grace_period: Duration::from_secs(300),
            })
        });
    }

    /// `instance` joins `group`, waiting on its launch hook.
    pub fn launching(&self, group: &str, instance: &SeededInstance) {
        self.aws.with(|plane| {
            plane.autoscaling.launch(
                group,
                &instance.instance_id,
                &instance.availability_zone,
                Instant::now(),
            )
        });
    }

    /// What the group says of `instance` (`Pending:Wait`, `InService`, ...).
    pub fn lifecycle_state(&self, instance: &SeededInstance) -> Option<&'static str> {
        self.aws.with(|plane| {
            plane
                .autoscaling
                .member(&instance.instance_id)
                .map(|member| member.state.as_str())
        })
    }

    /// Broker id `index`'s ENI as EC2 has it: (status, the instance it is attached to).
    pub async fn eni_of(&self, index: usize) -> (String, Option<String>) {
        world::eni_owner(&self.ec2, &self.ids[index].eni_id)
            .await
            .expect("eni owner")
    }

    /// Broker id `index`'s volume as EC2 has it: (state, the instance it is attached to).
    pub async fn volume_of(&self, index: usize) -> (String, Option<String>) {
        world::volume_owner(&self.ec2, &self.ids[index].volume_id)
            .await
            .expect("volume owner")
    }

    /// Broker id 0's ENI (device index 1) and volume (at `device`) attached to `instance`, seeded directly.
    pub async fn attach_id0(&self, instance: &SeededInstance, device: &str) {
        world::attach_eni(&self.ec2, &self.ids[0].eni_id, &instance.instance_id, 1)
            .await
            .expect("seed ENI attachment");
        world::attach_volume(
            &self.ec2,
            &self.ids[0].volume_id,
            &instance.instance_id,
            device,
        )
        .await
        .expect("seed volume attachment");
    }

    /// A host launching into group `kafka-asg` (launch hook pending) of stack `kafka-stack`, with its IMDS and
    /// its adapter configured to signal both.
    pub async fn launching_host(&self) -> (SeededInstance, Imds, AwsCloud) {
        let me = self.instance(ZONE_A).await;
        self.stack("kafka-stack", "BrokerGroup", 1);
        self.group("kafka-asg", "berth-launch", "berth-terminate");
        self.launching("kafka-asg", &me);
        let imds = self.imds(&me, &[]);
        let cloud = self
            .cloud(AwsSettings {
                signals: signals_configured(),
                ..self.settings(&imds, 1)
            })
            .await;
        (me, imds, cloud)
    }

    /// A running instance in `zone` with the CloudFormation/Auto Scaling tags.
    pub async fn instance(&self, zone: &str) -> SeededInstance {
        world::instance(&self.ec2, &self.net, zone, &[])
            .await
            .expect("instance")
    }

    /// The IMDS of a host, serving the instance's identity (and the given instance tags).
    pub fn imds(&self, instance: &SeededInstance, tags: &[(&str, &str)]) -> Imds {
        let host = ImdsHost {
            instance_id: instance.instance_id.clone(),
            region: REGION.into(),
            availability_zone: instance.availability_zone.clone(),
            hostname: format!("ip-{}", instance.instance_id),
            interfaces: vec![ImdsInterface {
                mac: instance.primary_mac.clone(),
                device_number: 0,
                interface_id: instance.primary_eni_id.clone(),
            }],
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        Imds::start(loopback_any_port(), &host).expect("imds")
    }

    /// The adapter's settings for a host of this world: ids `0..broker_count` tagged `KAFKA-{id}` in this
    /// cluster, the ENI at device index 1, takeover from terminated owners and (after `aws.takeover_wait`'s
    /// default) shutting-down ones, no signals.
    pub fn settings(&self, imds: &Imds, broker_count: u32) -> AwsSettings {
        let template = TagTemplate::new("KAFKA-{id}").expect("a valid template");
        AwsSettings {
            region: Some(REGION.into()),
            endpoint_url: Some(self.proxy.url()),
            imds_endpoint: imds.url(),
            discovery: DiscoverySpec {
                key: "Name".into(),
                eni: template.clone(),
                volume: template,
                cluster_tag: Some((CLUSTER_KEY.into(), CLUSTER.into())),
                broker_count,
            },
            attach: AttachSettings {
                device_index: 1,
                network_card: 0,
                volume_device: "/dev/xvdf".into(),
                takeover_owner_states: vec!["shutting-down".into(), "terminated".into()],
                takeover_wait: DEFAULT_TAKEOVER_WAIT,
            },
            signals: signals(false, "", ""),
        }
    }

    pub async fn cloud(&self, settings: AwsSettings) -> AwsCloud {
        AwsCloud::with_credentials(
            settings,
            Credentials::new("testing", "testing", None, None, "test"),
        )
        .await
        .expect("cloud")
    }

    /// EC2 calls counted by the proxy so far.
    pub fn ec2_calls(&self) -> usize {
        self.proxy
            .counts()
            .iter()
            .filter(|(action, _)| !NOT_EC2.contains(&action.as_str()))
            .map(|(_, n)| n)
            .sum()
    }
}

/// Signals, hooks: everything named in the settings.
pub fn signals_configured() -> SignalSettings {
    SignalSettings {
        stack: "kafka-stack".into(),
        resource: "BrokerGroup".into(),
        group: "kafka-asg".into(),
        ..signals(true, "berth-launch", "berth-terminate")
    }
}

/// The signals on (`cloudformation`) or named (the hooks, empty for none); stack, logical id and group are
/// the instance's tags; a lost Kafka marks the instance unhealthy.
pub fn signals(cloudformation: bool, launch_hook: &str, terminate_hook: &str) -> SignalSettings {
    SignalSettings {
        cloudformation,
        stack: String::new(),
        resource: String::new(),
        group: String::new(),
        launch_hook: launch_hook.into(),
        terminate_hook: terminate_hook.into(),
        mark_unhealthy: true,
    }
}

/// A new instance in `zone` with its cloud adapter: (instance, identity, cloud, imds, id 0's resources).
pub async fn booting_in(
    env: &Env,
    zone: &str,
) -> (SeededInstance, Identity, AwsCloud, Imds, IdResources) {
    let me = env.instance(zone).await;
    let imds = env.imds(&me, &[]);
    let cloud = env.cloud(env.settings(&imds, 1)).await;
    let identity = cloud.identity().await.unwrap();
    let resources = cloud.discover().await.unwrap().ids[&BrokerId(0)].clone();
    (me, identity, cloud, imds, resources)
}

/// `aws.takeover_wait` in the takeover tests and the `aws` bench: long enough to see the wait, short for a test.
pub const TAKEOVER_WAIT: Duration = Duration::from_secs(3);

/// Owner and replacement set up with the ENI and volume on the owner, the replacement's attach settings
/// changed by `attach`; returns (owner, me, cloud, imds).
pub async fn owned_by_other(
    env: &Env,
    attach: impl FnOnce(&mut AttachSettings),
) -> (SeededInstance, Identity, AwsCloud, Imds) {
    let owner = env.instance(ZONE_A).await;
    env.attach_id0(&owner, "/dev/xvdf").await;
    let me = env.instance(ZONE_A).await;
    let imds = env.imds(&me, &[]);
    let mut settings = env.settings(&imds, 1);
    attach(&mut settings.attach);
    let cloud = env.cloud(settings).await;
    let identity = cloud.identity().await.unwrap();
    (owner, identity, cloud, imds)
}

/// An id's ENI and volume attached through the adapter, and the Retryable errors each step met first.
pub struct Attached {
    pub eni: EniFacts,
    pub volume: VolumeFacts,
    pub eni_errors: Vec<StepError>,
    pub volume_errors: Vec<StepError>,
}

/// AttachEni then AttachEbs of `resources` as the state machine runs them: each retried ([`until_ok`]) within
/// `budget`, with one deadline of `budget` for both.
pub async fn attach_both(
    cloud: &AwsCloud,
    identity: &Identity,
    resources: &IdResources,
    budget: Duration,
) -> Attached {
    let deadline = Deadline::after(budget);
    let eni = resources.eni.as_ref().expect("the id has an ENI");
    let volume = resources.volume.as_ref().expect("the id has a volume");
    let (eni, eni_errors, _) = until_ok(budget, || cloud.attach_eni(identity, eni, deadline)).await;
    let ((volume, _), volume_errors, _) =
        until_ok(budget, || cloud.attach_volume(identity, volume, deadline)).await;
    Attached {
        eni,
        volume,
        eni_errors,
        volume_errors,
    }
}

/// What the state machine does with a retryable step: back off (250 ms doubling to 2 s, jittered) and call it
/// again until it succeeds or `budget` runs out. Panics on a Fatal error. Returns the value, the retryable
/// errors seen and the time taken.
pub async fn until_ok<T, F, Fut>(budget: Duration, mut step: F) -> (T, Vec<StepError>, Duration)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StepError>>,
{
    let policy = RetryPolicy {
        initial: Duration::from_millis(250),
        max: Duration::from_secs(2),
        multiplier: 2.0,
        deadline: budget,
    };
    let mut jitter = Jitter::new(7);
    let start = Instant::now();
    let mut errors = Vec::new();
    loop {
        match step().await {
            Ok(value) => return (value, errors, start.elapsed()),
            Err(error) => {
                assert!(
                    error.is_retryable(),
                    "a Fatal error where only Retryable ones are allowed: {error}"
                );
                errors.push(error);
                assert!(
                    start.elapsed() < budget,
                    "still failing after {budget:?}: {:?}",
                    errors.last()
                );
                tokio::time::sleep(policy.delay(errors.len() as u32, &mut jitter)).await;
            }
        }
    }
}
