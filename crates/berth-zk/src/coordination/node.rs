//! The claim znodes: a claim's JSON body, the claims path (created on first use), and creating a claim node,
//! which tells this session's node and this instance's stale one (left by its previous session, replaced at
//! once) from another host's.

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use berth_core::ports::ClaimHolder;
use berth_core::retry::stable_hash;
use berth_core::BrokerId;
use serde::{Deserialize, Serialize};
use zookeeper_client as zk;

use super::{ZkCoordination, LOSS_PAUSE};
use crate::ZkError;

/// The JSON body of a claim node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimBody {
    /// Who holds the claim.
    #[serde(flatten)]
    pub holder: ClaimHolder,
    /// When it was claimed (milliseconds since the Unix epoch).
    pub claimed_at_ms: u64,
}

impl ClaimBody {
    /// A claim node's body, when it is one, and who holds the node, as logs and `berth plan` say it (the
    /// owning session included, which is all there is to say of an unreadable body).
    pub fn read(body: &[u8], session: i64) -> (Option<ClaimBody>, String) {
        let claim = serde_json::from_slice::<ClaimBody>(body).ok();
        let description = match &claim {
            Some(claim) => format!(
                "instance {} in {} on {}, berth {}, session {session:#x}",
                claim.holder.instance_id,
                claim.holder.availability_zone,
                claim.holder.host,
                claim.holder.berth_version,
            ),
            None => format!("session {session:#x} with an unreadable body"),
        };
        (claim, description)
    }
}

/// The seed of a host's first try order (`ClaimPlan::try_order`), from its instance id; `berth plan` shows the
/// order this seed gives.
pub fn first_seed(instance_id: &str) -> u64 {
    stable_hash(instance_id)
}

/// What became of one create attempt.
pub(super) enum Created {
    /// The node is ours, on the current session.
    Ours,
    /// Another session holds it.
    Taken,
}

pub(super) fn claim_body(holder: &ClaimHolder) -> Vec<u8> {
    let claimed_at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    serde_json::to_vec(&ClaimBody {
        holder: holder.clone(),
        claimed_at_ms,
    })
    .expect("a claim body serializes")
}

impl ZkCoordination {
    /// Create the claims znode and its parents (persistent, with the configured ACL).
    async fn make_claims_path(&self, client: &zk::Client) -> Result<(), zk::Error> {
        let path = self.claims_path.as_str();
        let options = self.create_options(zk::CreateMode::Persistent);
        // Leaf first: usually only the leaf is missing. Walk up on NoNode, then down again.
        let mut end = path.len();
        loop {
            self.count();
            match client.create(&path[..end], &[], &options).await {
                Ok(_) | Err(zk::Error::NodeExists) if end == path.len() => return Ok(()),
                Ok(_) | Err(zk::Error::NodeExists) => {
                    end += 1 + path[end + 1..].find('/').unwrap_or(path.len() - end - 1);
                }
                Err(zk::Error::NoNode) => match path[..end].rfind('/') {
                    Some(slash) if slash > 0 => end = slash,
                    _ => return Err(zk::Error::NoNode),
                },
                Err(error) => return Err(error),
            }
        }
    }

    /// Lists the claimed ids (creating the claims path when missing) with a watch on the claims znode.
    pub(super) async fn list_claims(
        &self,
        client: &zk::Client,
    ) -> Result<(BTreeSet<BrokerId>, zk::OneshotWatcher), ZkError> {
        let path = &self.claims_path;
        loop {
            self.count();
            match client.list_and_watch_children(path).await {
                Ok((children, watcher)) => {
                    let taken = children
                        .iter()
                        .filter_map(|name| name.parse().ok())
                        .map(BrokerId)
                        .collect();
                    return Ok((taken, watcher));
                }
                Err(zk::Error::NoNode) => self
                    .make_claims_path(client)
                    .await
                    .map_err(|source| ZkError::op("create", path, source))?,
                Err(source) => return Err(ZkError::op("list", path, source)),
            }
        }
    }

    /// Creates the claim node of `id`; when it exists, finds out whether it is ours (this session's, or this
    /// instance's stale one from a previous session, which is replaced) or another host's.
    pub(super) async fn create_claim(
        &self,
        client: &zk::Client,
        id: BrokerId,
        body: &[u8],
        holder: &ClaimHolder,
        mut inspect: bool,
    ) -> Result<(Created, Option<String>), ZkError> {
        let path = self.claim_path(id);
        let options = self.create_options(zk::CreateMode::Ephemeral);
        let mut replaced_stale = false;
        loop {
            self.count();
            match client.create(&path, body, &options).await {
                Ok(_) => return Ok((Created::Ours, None)),
                // Most likely another host's (a collision): not worth a read unless it may be ours.
                Err(zk::Error::NodeExists) if !inspect => return Ok((Created::Taken, None)),
                Err(zk::Error::NodeExists) => {}
                // The create may have succeeded: the node must be looked at.
                Err(zk::Error::ConnectionLoss) => inspect = true,
                Err(zk::Error::NoNode) => {
                    self.make_claims_path(client)
                        .await
                        .map_err(|source| ZkError::op("create", &path, source))?;
                    continue;
                }
                Err(source) => return Err(ZkError::op("create", &path, source)),
            }
            // Taken, or unknown after a lost connection: look at the node.
            self.count();
            let (data, stat) = match client.get_data(&path).await {
                Ok(found) => found,
                Err(zk::Error::NoNode) => continue,
                Err(zk::Error::ConnectionLoss) => {
                    tokio::time::sleep(LOSS_PAUSE).await;
                    continue;
                }
                Err(source) => return Err(ZkError::op("get_data", &path, source)),
            };
            if stat.ephemeral_owner == client.session_id().0 {
                return Ok((Created::Ours, None));
            }
            let (owner, description) = ClaimBody::read(&data, stat.ephemeral_owner);
            if replaced_stale
                || owner.is_none_or(|owner| owner.holder.instance_id != holder.instance_id)
            {
                return Ok((Created::Taken, Some(description)));
            }
            tracing::warn!(%path, stale = %description, "replacing this instance's claim left by its previous session");
            replaced_stale = true;
            self.count();
            match client.delete(&path, Some(stat.version)).await {
                Ok(()) | Err(zk::Error::NoNode | zk::Error::BadVersion) => {}
                Err(source) => return Err(ZkError::op("delete", &path, source)),
            }
        }
    }
}
