//! EC2, CloudFormation and Auto Scaling adapter for berth: IMDSv2 identity, ENI and EBS attachment by tag with
//! safe takeover, CloudFormation signal, Auto Scaling lifecycle.
//!
//! [`AwsCloud`] implements the ports [`berth_core::ports::Metadata`] (IMDS), [`berth_core::ports::Attachments`]
//! (EC2) and [`berth_core::ports::Signals`] (CloudFormation and Auto Scaling) on the official aws-sdk-rust. Its
//! parts, one job each: [`metadata`] (IMDSv2 only), [`discovery`] (one filtered, paginated describe per resource type),
//! [`attach`] (attach, takeover from dying owners only, detach), [`birth`] (the KRaft birth mark on the
//! controllers' volumes), [`claim`] (the `ec2` claim backend: an id is
//! claimed by attaching its ENI), [`signals`] (CloudFormation and Auto Scaling),
//! and [`error`] (the one place where failures become Retryable or Fatal). The SDK retries transient errors
//! itself (standard mode, jittered); what is still failing reaches the state machine as Retryable, so throttling
//! and 5xx never become Failed before the state's deadline. See docs/aws.md.

pub mod attach;
pub mod birth;
pub mod claim;
pub mod discovery;
pub mod error;
pub mod metadata;
pub mod signals;
pub mod takeover;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use berth_core::facts::{EniFacts, Identity, Inventory, VolumeFacts};
use berth_core::ports::{
    self, Deadline, Delivery, DrainReason, FailureReport, LaunchResult, StepError, Verdict,
    VolumeRequest,
};
use ipnet::Ipv4Net;

pub use attach::{AttachSettings, Attacher};
pub use birth::AwsBirthRecord;
pub use claim::Ec2Claim;
pub use discovery::DiscoverySpec;
pub use error::AwsError;
pub use metadata::Metadata;
pub use signals::{SignalSettings, Signaller};

/// Attempts per SDK call (first try included) before an error reaches the state machine.
const SDK_MAX_ATTEMPTS: u32 = 3;

/// berth's view of AWS: one per daemon.
#[derive(Debug)]
pub struct AwsCloud {
    ec2: aws_sdk_ec2::Client,
    metadata: Metadata,
    discovery: DiscoverySpec,
    attacher: Attacher,
    signaller: Signaller,
}

/// What the AWS adapter reads: where AWS and IMDS answer, how the cluster's resources are found and attached,
/// and which signals are on. The daemon builds it from `[aws]`, `[tags]` and `[cluster]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    /// The region; `None`: the instance's, from IMDS.
    pub region: Option<String>,
    /// Endpoint override for EC2, CloudFormation and Auto Scaling (tests, VPC endpoints); `None`: AWS's own.
    pub endpoint_url: Option<String>,
    /// The instance metadata service's base URL.
    pub imds_endpoint: String,
    /// How the cluster's ENIs and volumes are found.
    pub discovery: DiscoverySpec,
    /// How they are attached, and whose attachments may be taken over.
    pub attach: AttachSettings,
    /// CloudFormation's signal and the Auto Scaling lifecycle calls.
    pub signals: SignalSettings,
}

impl AwsCloud {
    /// Builds the clients: region as set or from IMDS, the endpoint override when set, credentials from the
    /// default chain (environment, profile, then the instance role through the configured IMDS endpoint).
    pub async fn new(settings: AwsSettings) -> Result<Self, AwsError> {
        Self::build(settings, None).await
    }

    /// Like [`new`](Self::new) with fixed credentials (tests, the simulated fleet).
    pub async fn with_credentials(
        settings: AwsSettings,
        credentials: Credentials,
    ) -> Result<Self, AwsError> {
        Self::build(settings, Some(credentials)).await
    }

    async fn build(
        settings: AwsSettings,
        credentials: Option<Credentials>,
    ) -> Result<Self, AwsError> {
        let metadata = Metadata::new(&settings.imds_endpoint)?;
        let region = match settings.region {
            Some(region) => region,
            None => metadata.get("placement/region").await?,
        };
        let region = Region::new(region);
        let credentials = match credentials {
            Some(credentials) => SharedCredentialsProvider::new(credentials),
            None => SharedCredentialsProvider::new(
                aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                    .region(region.clone())
                    .imds_client(metadata.client())
                    .build()
                    .await,
            ),
        };
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(region)
            .credentials_provider(credentials)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(SDK_MAX_ATTEMPTS)
                    .with_initial_backoff(Duration::from_millis(200))
                    .with_max_backoff(Duration::from_secs(5)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_attempt_timeout(Duration::from_secs(20))
                    .operation_timeout(Duration::from_secs(60))
                    .build(),
            );
        if let Some(endpoint_url) = &settings.endpoint_url {
            loader = loader.endpoint_url(endpoint_url);
        }
        let sdk: SdkConfig = loader.load().await;
        let ec2 = aws_sdk_ec2::Client::new(&sdk);
        let attacher = Attacher::new(ec2.clone(), settings.attach);
        let signaller = Signaller::new(
            settings.signals,
            ec2.clone(),
            aws_sdk_cloudformation::Client::new(&sdk),
            aws_sdk_autoscaling::Client::new(&sdk),
            metadata.clone(),
        );
        Ok(Self {
            ec2,
            metadata,
            discovery: settings.discovery,
            attacher,
            signaller,
        })
    }

    /// The `ec2` claim backend over this adapter's EC2 configuration and IMDS.
    pub fn ec2_claim(&self) -> Ec2Claim {
        Ec2Claim::new(
            &self.ec2,
            self.attacher.settings().clone(),
            self.metadata.clone(),
        )
    }

    /// The KRaft birth record: the birth mark on the controllers' volumes (docs/decisions/0003).
    pub fn birth_record(&self) -> AwsBirthRecord {
        AwsBirthRecord::new(self.ec2.clone(), self.discovery.clone())
    }

    /// The IMDS client (identity, interfaces, notices).
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Discovery as a typed result (the trait method converts the error).
    pub async fn inventory(&self) -> Result<Inventory, AwsError> {
        let spec = &self.discovery;
        let mut enis = Vec::new();
        let mut pages = self
            .ec2
            .describe_network_interfaces()
            .set_filters(Some(spec.filters(&spec.eni)))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page
                .map_err(|e| AwsError::api("DescribeNetworkInterfaces", spec.eni.wildcard(), e))?;
            enis.extend(page.network_interfaces().iter().cloned());
        }
        let mut volumes = Vec::new();
        let mut pages = self
            .ec2
            .describe_volumes()
            .set_filters(Some(spec.filters(&spec.volume)))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| AwsError::api("DescribeVolumes", spec.volume.wildcard(), e))?;
            volumes.extend(page.volumes().iter().cloned());
        }
        let subnet_ids = discovery::subnet_ids(&enis);
        let mut cidrs: BTreeMap<String, Ipv4Net> = BTreeMap::new();
        if !subnet_ids.is_empty() {
            let output = self
                .ec2
                .describe_subnets()
                .set_subnet_ids(Some(subnet_ids.clone()))
                .send()
                .await
                .map_err(|e| AwsError::api("DescribeSubnets", subnet_ids.join(","), e))?;
            for subnet in output.subnets() {
                if let (Some(id), Some(cidr)) = (
                    subnet.subnet_id(),
                    subnet.cidr_block().and_then(|c| c.parse().ok()),
                ) {
                    cidrs.insert(id.to_owned(), cidr);
                }
            }
        }
        let inventory = discovery::build_inventory(spec, &enis, &volumes, &cidrs)?;
        for problem in &inventory.problems {
            tracing::error!(%problem, "tagging problem: this id is skipped");
        }
        Ok(inventory)
    }
}

#[async_trait]
impl ports::Metadata for AwsCloud {
    async fn identity(&self) -> Result<Identity, StepError> {
        Ok(self.metadata.identity().await?)
    }

    async fn termination_notice(&self) -> Result<Option<DrainReason>, StepError> {
        Ok(self.metadata.termination_notice().await?)
    }
}

#[async_trait]
impl ports::Attachments for AwsCloud {
    async fn discover(&self) -> Result<Inventory, StepError> {
        Ok(self.inventory().await?)
    }

    async fn attach_eni(
        &self,
        identity: &Identity,
        eni: &EniFacts,
        deadline: Deadline,
    ) -> Result<EniFacts, StepError> {
        Ok(self.attacher.attach_eni(identity, eni, deadline).await?)
    }

    async fn attach_volume(
        &self,
        identity: &Identity,
        volume: &VolumeFacts,
        deadline: Deadline,
    ) -> Result<(VolumeFacts, String), StepError> {
        Ok(self
            .attacher
            .attach_volume(identity, volume, deadline)
            .await?)
    }

    async fn request_volume(
        &self,
        identity: &Identity,
        volume: &VolumeFacts,
    ) -> Result<VolumeRequest, StepError> {
        Ok(self.attacher.request_volume(identity, volume).await?)
    }

    async fn eni_attached_here(
        &self,
        identity: &Identity,
        eni: &EniFacts,
    ) -> Result<bool, StepError> {
        Ok(self.attacher.eni_attached_here(identity, eni).await?)
    }

    async fn detach_eni(&self, identity: &Identity, eni: &EniFacts) -> Result<(), StepError> {
        Ok(self.attacher.detach_eni(identity, eni).await?)
    }

    async fn detach_volume(
        &self,
        identity: &Identity,
        volume: &VolumeFacts,
    ) -> Result<(), StepError> {
        Ok(self.attacher.detach_volume(identity, volume).await?)
    }
}

#[async_trait]
impl ports::Signals for AwsCloud {
    async fn signal_stack(
        &self,
        identity: &Identity,
        verdict: &Verdict,
    ) -> Result<Delivery, StepError> {
        Ok(self.signaller.signal_stack(identity, verdict).await?)
    }

    async fn complete_launch(
        &self,
        identity: &Identity,
        result: LaunchResult,
    ) -> Result<Delivery, StepError> {
        Ok(self.signaller.complete_launch(identity, result).await?)
    }

    async fn heartbeat(&self, identity: &Identity) -> Result<Delivery, StepError> {
        Ok(self.signaller.heartbeat(identity).await?)
    }

    async fn heartbeat_termination(&self, identity: &Identity) -> Result<Delivery, StepError> {
        Ok(self.signaller.heartbeat_termination(identity).await?)
    }

    async fn mark_unhealthy(&self, identity: &Identity) -> Result<Delivery, StepError> {
        Ok(self.signaller.mark_unhealthy(identity).await?)
    }

    async fn report_failure(&self, identity: &Identity) -> Result<FailureReport, StepError> {
        Ok(self.signaller.report_failure(identity).await?)
    }

    async fn complete_termination(&self, identity: &Identity) -> Result<Delivery, StepError> {
        Ok(self.signaller.complete_termination(identity).await?)
    }
}
