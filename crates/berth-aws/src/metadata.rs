//! This instance's identity and termination notices from the instance metadata service, IMDSv2 only.
//!
//! aws-config's IMDS client always fetches a session token (`PUT /latest/api/token`) and sends it with every
//! GET; it never falls back to IMDSv1, which is what a hardened instance (`HttpTokens=required`) demands. The
//! endpoint is configurable so tests and the simulated fleet can serve each host its own metadata.

use std::time::Duration;

use aws_config::imds;
use berth_core::ports::DrainReason;
use berth_core::{Identity, MacAddr};

use crate::error::AwsError;

const META: &str = "/latest/meta-data/";

/// One network interface as IMDS lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataInterface {
    /// Its MAC.
    pub mac: MacAddr,
    /// `device-number` (0 is the primary interface).
    pub device_number: u32,
    /// `interface-id`.
    pub interface_id: String,
}

/// An IMDSv2 client bound to one endpoint.
#[derive(Debug, Clone)]
pub struct Metadata {
    client: imds::Client,
}

impl Metadata {
    /// A client for `endpoint` (e.g. `http://169.254.169.254`).
    pub fn new(endpoint: &str) -> Result<Self, AwsError> {
        let client = imds::Client::builder()
            .endpoint(endpoint)
            .map_err(|source| AwsError::Config {
                key: "aws.imds_endpoint",
                source,
            })?
            .max_attempts(3)
            .connect_timeout(Duration::from_secs(1))
            .read_timeout(Duration::from_secs(2))
            .build();
        Ok(Self { client })
    }

    /// The underlying client (shared with the SDK's credentials chain).
    pub fn client(&self) -> imds::Client {
        self.client.clone()
    }

    /// A metadata value under `/latest/meta-data/`; 404 is `None`.
    pub async fn get_optional(&self, path: &str) -> Result<Option<String>, AwsError> {
        match self.client.get(format!("{META}{path}")).await {
            Ok(value) => Ok(Some(value.as_ref().trim().to_owned())),
            Err(imds::client::error::ImdsError::ErrorResponse(response))
                if response.response().status().as_u16() == 404 =>
            {
                Ok(None)
            }
            Err(source) => Err(AwsError::Imds {
                path: path.to_owned(),
                source: Box::new(source),
            }),
        }
    }

    /// A metadata value that must exist.
    pub async fn get(&self, path: &str) -> Result<String, AwsError> {
        self.get_optional(path)
            .await?
            .ok_or_else(|| AwsError::ImdsMissing {
                path: path.to_owned(),
            })
    }

    /// Instance id, region, AZ, primary MAC and hostname.
    pub async fn identity(&self) -> Result<Identity, AwsError> {
        let instance_id = self.get("instance-id").await?;
        let region = self.get("placement/region").await?;
        let availability_zone = self.get("placement/availability-zone").await?;
        let mac_text = self.get("mac").await?;
        let primary_mac = mac_text
            .parse()
            .map_err(|error: berth_core::facts::BadMac| AwsError::ImdsValue {
                path: "mac".into(),
                value: mac_text.clone(),
                source: error.into(),
            })?;
        let hostname = self
            .get_optional("local-hostname")
            .await?
            .unwrap_or_else(|| instance_id.clone());
        Ok(Identity {
            instance_id,
            region,
            availability_zone,
            primary_mac,
            hostname,
        })
    }

    /// The instance's interfaces: MAC, device number, interface id.
    pub async fn interfaces(&self) -> Result<Vec<MetadataInterface>, AwsError> {
        let listing = self
            .get_optional("network/interfaces/macs/")
            .await?
            .unwrap_or_default();
        let mut interfaces = Vec::new();
        for entry in listing
            .lines()
            .map(|line| line.trim().trim_end_matches('/'))
            .filter(|l| !l.is_empty())
        {
            let mac =
                entry
                    .parse()
                    .map_err(|error: berth_core::facts::BadMac| AwsError::ImdsValue {
                        path: "network/interfaces/macs/".into(),
                        value: entry.to_owned(),
                        source: error.into(),
                    })?;
            let base = format!("network/interfaces/macs/{entry}");
            let device_path = format!("{base}/device-number");
            let device_text = self.get(&device_path).await?;
            let device_number =
                device_text
                    .parse::<u32>()
                    .map_err(|error| AwsError::ImdsValue {
                        path: device_path,
                        value: device_text.clone(),
                        source: error.into(),
                    })?;
            let interface_id = self.get(&format!("{base}/interface-id")).await?;
            interfaces.push(MetadataInterface {
                mac,
                device_number,
                interface_id,
            });
        }
        Ok(interfaces)
    }

    /// An instance tag from `tags/instance/<key>` (needs instance metadata tags enabled); `None` when absent.
    pub async fn instance_tag(&self, key: &str) -> Result<Option<String>, AwsError> {
        self.get_optional(&format!("tags/instance/{key}")).await
    }

    /// `Terminated` lifecycle state or a spot interruption notice, if IMDS announces one.
    pub async fn termination_notice(&self) -> Result<Option<DrainReason>, AwsError> {
        let lifecycle = self
            .get_optional("autoscaling/target-lifecycle-state")
            .await?;
        if lifecycle.as_deref() == Some("Terminated") {
            return Ok(Some(DrainReason::LifecycleTerminated));
        }
        let spot = self.get_optional("spot/instance-action").await?;
        Ok(spot
            .filter(|notice| !notice.is_empty())
            .map(|_| DrainReason::SpotInterruption))
    }
}
