//! Who holds each broker id, read where the fleet's berths claim it: the id's ENI attachment in EC2 (the `ec2`
//! backend, docs/decisions/0002) or the id's claim znode in the ZooKeeper ensemble (the `zookeeper` backend).
//! The demo shows them, and a fleet without ZooKeeper answers "who holds broker id X" from EC2 alone.

use std::time::Duration;

use berth_config::ClaimBackend;
use berth_zk::listing::list_claims;

use crate::fleet::Fleet;

/// One held claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The broker id.
    pub broker_id: u32,
    /// The instance holding it.
    pub instance_id: String,
    /// Where the claim was read, as an operator would find it (the ENI and its attachment, or the znode).
    pub evidence: String,
}

/// Why the claims could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ClaimsError {
    /// EC2 did not answer.
    #[error("reading the ENI attachments: {0}")]
    Ec2(#[from] crate::ec2::Ec2Error),
    /// The `zookeeper` backend without an ensemble (cannot happen with [`crate::FleetOptions::needs_zookeeper`]).
    #[error("claim.backend = \"zookeeper\" but the fleet runs no ZooKeeper ensemble")]
    NoEnsemble,
    /// ZooKeeper did not answer.
    #[error("reading the claims in ZooKeeper: {}", berth_core::ports::chain_message(.0))]
    ZooKeeper(#[from] berth_zk::ZkError),
}

/// The claims held now, by broker id, from the fleet's claim backend.
pub async fn held(fleet: &Fleet) -> Result<Vec<Claim>, ClaimsError> {
    match fleet.options().claim_backend {
        ClaimBackend::Ec2 => held_in_ec2(fleet).await,
        ClaimBackend::Zookeeper => held_in_zookeeper(fleet).await,
    }
}

/// The `ec2` backend's claims: each id's ENI and the instance it is attached (or attaching) to.
async fn held_in_ec2(fleet: &Fleet) -> Result<Vec<Claim>, ClaimsError> {
    let attachments = fleet.ec2().attachments().await?;
    Ok(fleet
        .resources()
        .iter()
        .filter_map(|resource| {
            let instance = attachments.enis.get(&resource.eni_id)?.clone()?;
            Some(Claim {
                broker_id: resource.id,
                evidence: format!(
                    "EC2: {} ({}) attached to {instance}",
                    resource.eni_id, resource.ip
                ),
                instance_id: instance,
            })
        })
        .collect())
}

/// The `zookeeper` backend's claims: the ephemeral nodes under `/berth/<cluster>/claims`, read by berth-zk's
/// read-only lister (what `berth plan` reads them with), their bodies and owning sessions.
pub async fn held_in_zookeeper(fleet: &Fleet) -> Result<Vec<Claim>, ClaimsError> {
    let ensemble = fleet.zookeeper().ok_or(ClaimsError::NoEnsemble)?;
    let root = format!("/berth/{}/claims", fleet.options().cluster);
    let listed = list_claims(&ensemble.connect_string(), Duration::from_secs(4), &root).await?;
    Ok(listed
        .into_iter()
        .map(|(id, claim)| Claim {
            broker_id: id.0,
            instance_id: claim.instance_id.unwrap_or_default(),
            evidence: format!("ZooKeeper: {} held by {}", claim.path, claim.description),
        })
        .collect())
}
