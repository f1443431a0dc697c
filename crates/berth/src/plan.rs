//! `berth plan`: what `berth run` would do on this host, worked out from the same facts and the same pure
//! functions the daemon uses, with nothing changed.
//!
//! An operator asks this before enabling berth on a host, or when a replacement does not become the broker they
//! expected. The plan reads only: IMDSv2 for the identity, one filtered describe per resource type for the
//! cluster's ENIs and volumes (through [`berth_core::ports::Metadata::identity`] and
//! [`berth_core::ports::Attachments::discover`], never an attach, detach or signal), ZooKeeper's claim nodes
//! (berth-zk's read-only [`list_claims`]: list and get, no create, not even the claims path; with the `ec2` claim
//! backend the ENI attachments discovery shows are the claims), and the current overlay file. The decisions come
//! from [`plan_claim`], [`ClaimPlan::try_order`] (seeded by the ZooKeeper adapter's own [`first_seed`]),
//! [`plan_route`], the configuration's mount plan and the Kafka adapter's overlay renderer, so the plan cannot
//! drift from what the daemon does.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use berth_config::{ClaimBackend, Config};
use berth_core::claim::{plan_claim, ClaimPlan};
use berth_core::ports::{Attachments, Metadata};
use berth_core::ports::{BrokerSpec, MountPlan};
use berth_core::routing::plan_route;
use berth_core::{Attachment, BrokerId, Identity, Inventory, RoutePlan, StepError};
use berth_zk::coordination::first_seed;
use berth_zk::listing::list_claims;
use serde::Serialize;

/// What ZooKeeper says about the cluster's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum ClaimsView {
    /// The claim nodes that exist, with who holds each (from the node's body).
    Read {
        /// Holder description by claimed id.
        taken: BTreeMap<BrokerId, ClaimOwner>,
    },
    /// ZooKeeper could not be read (or was not asked); the plan assumes nothing is claimed.
    Unknown {
        /// Why.
        reason: String,
    },
}

/// Who holds a claim node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClaimOwner {
    /// The holder's instance id, when the body names one.
    pub instance_id: Option<String>,
    /// A readable description (instance, zone, host, berth version, session).
    pub description: String,
}

impl ClaimsView {
    fn taken(&self) -> BTreeSet<BrokerId> {
        match self {
            ClaimsView::Read { taken } => taken.keys().copied().collect(),
            ClaimsView::Unknown { .. } => BTreeSet::new(),
        }
    }

    fn owner(&self, id: BrokerId) -> Option<&ClaimOwner> {
        match self {
            ClaimsView::Read { taken } => taken.get(&id),
            ClaimsView::Unknown { .. } => None,
        }
    }
}

/// With the `ec2` claim backend the claims are the ENI attachments discovery shows: an id is held by the
/// instance its ENI is attached to.
pub fn attachment_claims(inventory: &Inventory) -> ClaimsView {
    let taken = inventory
        .ids
        .iter()
        .filter_map(|(id, resources)| {
            let eni = resources.eni.as_ref()?;
            let attachment = eni.attachment.as_ref()?;
            Some((
                *id,
                ClaimOwner {
                    instance_id: Some(attachment.instance_id.clone()),
                    description: format!(
                        "ENI {} {} to {}",
                        eni.eni_id, attachment.state, attachment.instance_id
                    ),
                },
            ))
        })
        .collect();
    ClaimsView::Read { taken }
}

/// Reads the claim nodes under `<zookeeper.root>/<cluster>/claims` (list and get only), by `timeout`.
pub async fn read_claims(config: &Config, timeout: Duration) -> ClaimsView {
    match tokio::time::timeout(timeout, read_claims_inner(config)).await {
        Ok(Ok(taken)) => ClaimsView::Read { taken },
        Ok(Err(reason)) => ClaimsView::Unknown { reason },
        Err(_) => ClaimsView::Unknown {
            reason: format!(
                "ZooKeeper {} did not answer within {timeout:?}",
                config.zookeeper.connect
            ),
        },
    }
}

async fn read_claims_inner(config: &Config) -> Result<BTreeMap<BrokerId, ClaimOwner>, String> {
    let listed = list_claims(
        &config.zookeeper.connect,
        config.zookeeper.session_timeout,
        &config.claims_path(),
    )
    .await
    .map_err(|error| berth_core::ports::chain_message(&error))?;
    Ok(listed
        .into_iter()
        .map(|(id, claim)| {
            let owner = ClaimOwner {
                instance_id: claim.instance_id,
                description: claim.description,
            };
            (id, owner)
        })
        .collect())
}

/// One broker id as discovered, for the table of ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdLine {
    /// The id.
    pub id: BrokerId,
    /// `eni-... 10.0.1.5 (eu-west-1a) attached to i-...` or what is missing.
    pub eni: String,
    /// `vol-... 100 GiB (eu-west-1a) available` or what is missing.
    pub volume: String,
    /// Who holds the claim in ZooKeeper.
    pub claim: String,
    /// Claimable from here, or why not.
    pub verdict: String,
}

/// The id berth would claim and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Choice {
    /// The id, when one would be claimed now.
    pub id: Option<BrokerId>,
    /// Why that id (or why none).
    pub reason: String,
    /// The order in which the claim step would try the candidates.
    pub try_order: Vec<BrokerId>,
}

/// The mount step, as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MountSummary {
    /// Where and which log dirs.
    pub plan: MountPlan,
    /// Where the block device is looked for (Nitro by-id link, then the requested name).
    pub device_hint: String,
    /// Filesystem expected (and created only on an all-zero device when allowed).
    pub filesystem: String,
    /// Whether an all-zero device may be formatted.
    pub format_blank: bool,
    /// Mount options.
    pub options: String,
}

/// The overlay berth would write before starting Kafka.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OverlaySummary {
    /// Where.
    pub path: PathBuf,
    /// The text.
    pub text: String,
    /// `absent`, `unchanged` or `would change`.
    pub on_disk: String,
}

/// What one state would do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatePlan {
    /// State name, as in logs and `/state`.
    pub state: &'static str,
    /// What it would do here.
    pub action: String,
}

/// The whole plan. Nothing in it was changed to make it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Cluster name.
    pub cluster: String,
    /// This instance.
    pub identity: Identity,
    /// What discovery found.
    pub inventory: Inventory,
    /// The claim plan (candidates, preferred, skipped).
    pub claim_plan: ClaimPlan,
    /// ZooKeeper's claims.
    pub claims: ClaimsView,
    /// One line per configured id.
    pub ids: Vec<IdLine>,
    /// The id berth would claim.
    pub choice: Choice,
    /// The policy routing for the chosen id's ENI, or why it cannot be made.
    pub route: Option<Result<RoutePlan, String>>,
    /// The mount step.
    pub mount: MountSummary,
    /// The overlay for the chosen id.
    pub overlay: Option<OverlaySummary>,
    /// What each state would do.
    pub states: Vec<StatePlan>,
}

/// Works out the plan: the identity through `metadata` and discovery through `attachments` (reads only), the rest
/// pure.
pub async fn make(
    config: &Config,
    metadata: &dyn Metadata,
    attachments: &dyn Attachments,
    claims: ClaimsView,
) -> Result<Plan, StepError> {
    let identity = metadata.identity().await?;
    let inventory = attachments.discover().await?;
    Ok(decide(config, identity, inventory, claims))
}

/// The pure part of [`make`].
pub fn decide(
    config: &Config,
    identity: Identity,
    inventory: Inventory,
    claims: ClaimsView,
) -> Plan {
    let settings = config.machine_settings();
    let claim_plan = plan_claim(&inventory, &identity, config.claimable_ids());
    let claims = match config.claim_backend() {
        ClaimBackend::Ec2 => attachment_claims(&inventory),
        ClaimBackend::Zookeeper => claims,
    };
    let choice = choose(&claim_plan, &claims, &identity);
    let ids = config
        .broker_ids()
        .map(|id| id_line(id, &inventory, &claim_plan, &claims, &identity))
        .collect();
    let eni = choice
        .id
        .and_then(|id| inventory.ids.get(&id))
        .and_then(|r| r.eni.clone());
    let volume = choice
        .id
        .and_then(|id| inventory.ids.get(&id))
        .and_then(|r| r.volume.clone());
    let route = eni
        .as_ref()
        .map(|eni| plan_route(&identity, eni, &settings.routing).map_err(|e| e.to_string()));
    let mount = mount_summary(config, &settings, volume.as_ref());
    let overlay = match (choice.id, &eni) {
        (Some(broker_id), Some(eni)) => Some(overlay(
            config,
            &inventory,
            &BrokerSpec {
                voters: Default::default(),
                broker_id,
                advertised_ip: eni.private_ip,
                rack: identity.availability_zone.clone(),
                log_dirs: settings.mount.log_dirs.clone(),
            },
        )),
        _ => None,
    };
    let mut plan = Plan {
        cluster: config.cluster.name.clone(),
        identity,
        inventory,
        claim_plan,
        claims,
        ids,
        choice,
        route,
        mount,
        overlay,
        states: Vec::new(),
    };
    plan.states = states(config, &plan);
    plan
}

/// How the claimed id's volume would be found and mounted.
fn mount_summary(
    config: &Config,
    settings: &berth_core::Settings,
    volume: Option<&berth_core::VolumeFacts>,
) -> MountSummary {
    let resolver =
        berth_storage::Resolver::new(&config.storage.device_root, &config.storage.sys_root);
    let device_hint = match volume.map(|v| berth_storage::resolve::volume_serial(&v.volume_id)) {
        Some(Ok(serial)) => format!(
            "{} (Nitro), else {} (Xen), never an instance-store disk",
            resolver.by_id_path(&serial).display(),
            config.aws.volume_device
        ),
        Some(Err(error)) => error.to_string(),
        None => format!(
            "the claimed id's volume, requested as {}",
            config.aws.volume_device
        ),
    };
    MountSummary {
        plan: settings.mount.clone(),
        device_hint,
        filesystem: config.storage.filesystem.name().into(),
        format_blank: config.storage.format_blank,
        options: config.storage.mount_options.clone(),
    }
}

fn choose(plan: &ClaimPlan, claims: &ClaimsView, identity: &Identity) -> Choice {
    let taken = claims.taken();
    let try_order = plan.try_order(&taken, first_seed(&identity.instance_id));
    let ours = |id: BrokerId| {
        claims.owner(id).and_then(|o| o.instance_id.as_deref())
            == Some(identity.instance_id.as_str())
    };
    let unknown = match claims {
        ClaimsView::Unknown { reason } => {
            format!(" (ZooKeeper not read: {reason}; assuming no claims)")
        }
        ClaimsView::Read { .. } => String::new(),
    };
    let first = try_order
        .iter()
        .copied()
        .find(|id| !taken.contains(id) || ours(*id));
    let (id, reason) = match first {
        None if plan.candidates.is_empty() => (
            None,
            format!(
                "no id can be claimed from {}: every configured id is skipped (see the table); berth would retry \
                 discovery until states.claim.deadline",
                identity.availability_zone
            ),
        ),
        None => (
            None,
            "every candidate is claimed by another host: berth would wait for a claim to be released (a ZooKeeper \
             watch, or with the ec2 backend EC2 looked at again with backoff), up to states.claim.deadline"
                .into(),
        ),
        Some(id) if Some(id) == plan.preferred => {
            let why = plan.preferred_reason.clone().unwrap_or_default();
            let stale = if ours(id) { "; its claim node is this instance's own, from a previous session" } else { "" };
            (Some(id), format!("preferred: {why} (a restart keeps its id){stale}{unknown}"))
        }
        Some(id) => (
            Some(id),
            format!(
                "the first free candidate in this host's try order (candidates in {} rotated by a hash of the \
                 instance id, so hosts booting together spread over the ids){unknown}",
                identity.availability_zone
            ),
        ),
    };
    Choice {
        id,
        reason,
        try_order,
    }
}

fn attachment_text(attachment: Option<&Attachment>, identity: &Identity) -> String {
    match attachment {
        None => "not attached".into(),
        Some(a) if a.instance_id == identity.instance_id => format!("{} to THIS instance", a.state),
        Some(a) => format!("{} to {}", a.state, a.instance_id),
    }
}

/// A tagged resource as `describe` puts it, or that none is tagged.
fn tagged<T>(resource: Option<&T>, describe: impl FnOnce(&T) -> String) -> String {
    resource.map_or_else(|| "none tagged".into(), describe)
}

fn id_line(
    id: BrokerId,
    inventory: &Inventory,
    plan: &ClaimPlan,
    claims: &ClaimsView,
    identity: &Identity,
) -> IdLine {
    let resources = inventory.ids.get(&id);
    let eni = tagged(resources.and_then(|r| r.eni.as_ref()), |eni| {
        format!(
            "{} {} ({}) {}",
            eni.eni_id,
            eni.private_ip,
            eni.availability_zone,
            attachment_text(eni.attachment.as_ref(), identity)
        )
    });
    let volume = tagged(resources.and_then(|r| r.volume.as_ref()), |volume| {
        format!(
            "{} {} GiB ({}) {}, {}",
            volume.volume_id,
            volume.size_gib,
            volume.availability_zone,
            volume.state,
            attachment_text(volume.attachment.as_ref(), identity)
        )
    });
    let claim = match claims {
        ClaimsView::Unknown { .. } => "unknown".into(),
        ClaimsView::Read { taken } => match taken.get(&id) {
            Some(owner) => owner.description.clone(),
            None => "free".into(),
        },
    };
    let held_by_other = claims
        .owner(id)
        .is_some_and(|owner| owner.instance_id.as_deref() != Some(identity.instance_id.as_str()));
    let verdict = match plan.skipped.iter().find(|s| s.id == id) {
        Some(skipped) => format!("skipped: {}", skipped.reason),
        None if plan.preferred == Some(id) => "candidate (preferred)".into(),
        None if held_by_other => "candidate, claimed by another host".into(),
        None => "candidate".into(),
    };
    IdLine {
        id,
        eni,
        volume,
        claim,
        verdict,
    }
}

fn overlay(config: &Config, inventory: &Inventory, spec: &BrokerSpec) -> OverlaySummary {
    let path = config.kafka.overlay_path.clone();
    let broker = crate::adapters::kafka_settings(config)
        .map_err(|error| error.to_string())
        .and_then(|settings| berth_kafka::KafkaBroker::new(settings).map_err(|e| e.to_string()));
    let text = match broker {
        Ok(broker) => {
            let voters = inventory
                .ids
                .iter()
                .filter_map(|(id, r)| r.eni.as_ref().map(|eni| (*id, eni.private_ip)))
                .collect();
            broker.set_quorum_voters(voters);
            broker
                .render_overlay(spec)
                .unwrap_or_else(|error| format!("# cannot render: {error}\n"))
        }
        Err(error) => format!("# cannot render: {error}\n"),
    };
    let on_disk = match std::fs::read_to_string(&path) {
        Ok(current) if current == text => "unchanged".into(),
        Ok(_) => "would change".into(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => "absent".into(),
        Err(error) => format!("unreadable: {error}"),
    };
    OverlaySummary {
        path,
        text,
        on_disk,
    }
}

fn states(config: &Config, plan: &Plan) -> Vec<StatePlan> {
    let context = StateContext::new(config, plan);
    vec![
        context.state(berth_core::State::Claim, StateContext::claim),
        context.state(berth_core::State::AttachEni, StateContext::attach_eni),
        context.state(berth_core::State::Route, StateContext::route),
        context.state(berth_core::State::AttachEbs, StateContext::attach_ebs),
        context.state(berth_core::State::Mount, StateContext::mount),
        context.state(berth_core::State::StartKafka, StateContext::start_kafka),
        context.state(berth_core::State::Healthy, StateContext::healthy),
    ]
}

/// What the description of each state draws on.
struct StateContext<'a> {
    config: &'a Config,
    plan: &'a Plan,
    settings: berth_core::Settings,
    eni: Option<&'a berth_core::EniFacts>,
    volume: Option<&'a berth_core::VolumeFacts>,
    id: String,
}

impl<'a> StateContext<'a> {
    fn new(config: &'a Config, plan: &'a Plan) -> Self {
        let resources = plan.choice.id.and_then(|id| plan.inventory.ids.get(&id));
        Self {
            config,
            plan,
            settings: config.machine_settings(),
            eni: resources.and_then(|r| r.eni.as_ref()),
            volume: resources.and_then(|r| r.volume.as_ref()),
            id: plan
                .choice
                .id
                .map(|id| id.to_string())
                .unwrap_or_else(|| "-".into()),
        }
    }

    fn state(&self, state: berth_core::State, describe: fn(&Self) -> String) -> StatePlan {
        StatePlan {
            state: state.name(),
            action: describe(self),
        }
    }

    fn deadline(&self, state: berth_core::State) -> String {
        berth_core::duration::format_duration(self.settings.policies.of(state).deadline)
    }

    fn claim(&self) -> String {
        format!(
            "create the EPHEMERAL node {}/{} (try order {:?}); deadline {}",
            self.config.claims_path(),
            self.id,
            self.plan
                .choice
                .try_order
                .iter()
                .map(|id| id.0)
                .collect::<Vec<_>>(),
            self.deadline(berth_core::State::Claim)
        )
    }

    fn attach_eni(&self) -> String {
        let Some(eni) = self.eni else {
            return "nothing (no id chosen)".into();
        };
        format!(
            "attach {} at device index {} ({}), then wait for the link with MAC {}; a running owner is never \
             touched, an owner in {:?} is detached first; deadline {}",
            eni.eni_id,
            self.config.aws.eni_device_index,
            attachment_text(eni.attachment.as_ref(), &self.plan.identity),
            eni.mac,
            self.config.aws.takeover_owner_states,
            self.deadline(berth_core::State::AttachEni)
        )
    }

    fn route(&self) -> String {
        match &self.plan.route {
            Some(Ok(route)) => format!(
                "link up; address {}; default via {} in table {}; rule `from {} lookup {}` priority {}; deadline {}",
                route.address,
                route.gateway,
                route.table,
                route.address.addr(),
                route.table,
                route.rule_priority,
                self.deadline(berth_core::State::Route)
            ),
            Some(Err(error)) => format!("cannot plan: {error}"),
            None => "nothing (no id chosen)".into(),
        }
    }

    fn attach_ebs(&self) -> String {
        let Some(volume) = self.volume else {
            return "nothing (no id chosen)".into();
        };
        format!(
            "attach {} as {} ({}), then find its block device at {}; deadline {}",
            volume.volume_id,
            self.config.aws.volume_device,
            attachment_text(volume.attachment.as_ref(), &self.plan.identity),
            self.plan.mount.device_hint,
            self.deadline(berth_core::State::AttachEbs)
        )
    }

    fn mount(&self) -> String {
        let mount = &self.plan.mount;
        let blank = if mount.format_blank {
            format!("an all-zero device gets mkfs.{}", mount.filesystem)
        } else {
            "a blank device is refused (storage.format_blank is off)".into()
        };
        let log_dirs = mount
            .plan
            .log_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "probe the device: any signature means never format; {blank}; mount {} at {} with {}; check \
             meta.properties in {log_dirs} names broker.id {}; deadline {}",
            mount.filesystem,
            mount.plan.mount_path.display(),
            mount.options,
            self.id,
            self.deadline(berth_core::State::Mount)
        )
    }

    fn start_kafka(&self) -> String {
        let kafka = &self.config.kafka;
        let start = match kafka.supervisor {
            berth_config::Supervisor::Systemd => format!("systemctl start {}", kafka.unit),
            berth_config::Supervisor::Process => format!("run {:?} as a child", kafka.command),
        };
        let Some(overlay) = &self.plan.overlay else {
            return "nothing (no id chosen)".into();
        };
        format!(
            "write {} ({}), {start}, wait until it serves as broker {} on {}:{}; deadline {}",
            overlay.path.display(),
            overlay.on_disk,
            self.id,
            self.eni
                .map(|e| e.private_ip.to_string())
                .unwrap_or_default(),
            kafka.port,
            self.deadline(berth_core::State::StartKafka)
        )
    }

    fn healthy(&self) -> String {
        let aws = &self.config.aws;
        let hook = aws.autoscaling.launch_hook.as_str();
        format!(
            "signal CloudFormation ({}) and the launch hook ({}); /health 200 on {}; check every {}",
            if aws.cloudformation.signal { "on" } else { "off" },
            if hook.is_empty() { "none" } else { hook },
            self.config.health.listen,
            berth_core::duration::format_duration(self.config.kafka.check_interval)
        )
    }
}

impl Plan {
    /// The plan as an operator reads it.
    pub fn render_human(&self) -> String {
        let mut out = String::new();
        let identity = &self.identity;
        let _ = writeln!(
            out,
            "berth plan for cluster {:?} (read-only: nothing was changed)",
            self.cluster
        );
        let _ = writeln!(
            out,
            "this host: {} in {} ({}), host {}, primary MAC {}",
            identity.instance_id,
            identity.availability_zone,
            identity.region,
            identity.hostname,
            identity.primary_mac
        );
        if let ClaimsView::Unknown { reason } = &self.claims {
            let _ = writeln!(out, "ZooKeeper claims: unknown ({reason})");
        }
        let _ = writeln!(out, "\nbroker ids:");
        for line in &self.ids {
            let _ = writeln!(out, "  {:>3}  {}", line.id.0, line.verdict);
            let _ = writeln!(out, "       ENI:    {}", line.eni);
            let _ = writeln!(out, "       volume: {}", line.volume);
            let _ = writeln!(out, "       claim:  {}", line.claim);
        }
        if !self.inventory.problems.is_empty() {
            let _ = writeln!(out, "\ntagging problems (these ids are skipped):");
            for problem in &self.inventory.problems {
                let _ = writeln!(out, "  - {problem}");
            }
        }
        let _ = writeln!(
            out,
            "\nwould claim: {}",
            self.choice
                .id
                .map(|id| id.to_string())
                .unwrap_or_else(|| "nothing".into())
        );
        let _ = writeln!(out, "  why: {}", self.choice.reason);
        let _ = writeln!(out, "\nstates:");
        for state in &self.states {
            let _ = writeln!(out, "  {:<12} {}", state.state, state.action);
        }
        if let Some(overlay) = &self.overlay {
            let _ = writeln!(
                out,
                "\nKafka overlay {} ({}):",
                overlay.path.display(),
                overlay.on_disk
            );
            for line in overlay.text.lines() {
                let _ = writeln!(out, "  | {line}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use berth_core::Attachment;
    use berth_testkit::fixtures;

    use super::*;

    #[test]
    fn with_the_ec2_backend_the_eni_attachments_are_the_claims_and_zookeeper_is_not_needed() {
        let config = berth_config::parse(
            "[cluster]\nname = \"events\"\nbroker_count = 6\nkafka_cluster_id = \"MkU3OEVBNTcwNTJENDM2Qg\"\n\
             [kafka]\nmode = \"kraft\"\n",
            [],
        )
        .expect("KRaft without ZooKeeper");
        // ids 0 and 3 are in this host's zone; 0's ENI is attached to another instance.
        let mut inventory = fixtures::inventory(6);
        let eni = inventory
            .ids
            .get_mut(&BrokerId(0))
            .unwrap()
            .eni
            .as_mut()
            .unwrap();
        eni.attachment = Some(Attachment {
            instance_id: "i-other".into(),
            state: "attached".into(),
            slot: "1".into(),
        });
        let plan = decide(
            &config,
            fixtures::identity(),
            inventory,
            ClaimsView::Unknown {
                reason: "not read".into(),
            },
        );
        let ClaimsView::Read { taken } = &plan.claims else {
            panic!("the attachments are read as claims: {:?}", plan.claims);
        };
        assert_eq!(taken[&BrokerId(0)].instance_id.as_deref(), Some("i-other"));
        assert_eq!(taken.len(), 1);
        assert_eq!(plan.choice.id, Some(BrokerId(3)), "{}", plan.choice.reason);
    }
}
