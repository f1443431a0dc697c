//! Who holds each broker id's claim, read and nothing else: `berth plan` and the simulated fleet list the claim
//! nodes through this, so they read them as the claimer writes them ([`ClaimBody::read`]). A list and a get per
//! node, on a session of its own: no create, not even of the claims path, and no watch.

use std::collections::BTreeMap;
use std::time::Duration;

use berth_core::BrokerId;
use zookeeper_client as zk;

use crate::coordination::ClaimBody;
use crate::ZkError;

/// One claim node, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedClaim {
    /// The node (`<root>/<cluster>/claims/<id>`).
    pub path: String,
    /// The holder's instance id, when the node's body names one.
    pub instance_id: Option<String>,
    /// Who holds it, as logs and `berth plan` say it (instance, zone, host, berth version, session).
    pub description: String,
}

/// The claims held now under `claims_path` (`<root>/<cluster>/claims`), by id: none when the path does not exist;
/// children that are not ids, and nodes released between the listing and their read, are left out. The session
/// is opened with `session_timeout` and fails at once when no server of `connect` answers.
pub async fn list_claims(
    connect: &str,
    session_timeout: Duration,
    claims_path: &str,
) -> Result<BTreeMap<BrokerId, ListedClaim>, ZkError> {
    let client = zk::Client::connector()
        .with_session_timeout(session_timeout)
        .with_fail_eagerly()
        .connect(connect)
        .await
        .map_err(|source| ZkError::Connect {
            connect: connect.to_owned(),
            source,
        })?;
    let children = match client.list_children(claims_path).await {
        Ok(children) => children,
        Err(zk::Error::NoNode) => Vec::new(),
        Err(error) => return Err(ZkError::op("list_children", claims_path, error)),
    };
    let mut claims = BTreeMap::new();
    for child in children {
        let Ok(id) = child.parse::<u32>() else {
            continue;
        };
        let path = format!("{claims_path}/{child}");
        let (body, stat) = match client.get_data(&path).await {
            Ok(node) => node,
            Err(zk::Error::NoNode) => continue,
            Err(error) => return Err(ZkError::op("get_data", &path, error)),
        };
        let (claim, description) = ClaimBody::read(&body, stat.ephemeral_owner);
        claims.insert(
            BrokerId(id),
            ListedClaim {
                path,
                instance_id: claim.map(|claim| claim.holder.instance_id),
                description,
            },
        );
    }
    Ok(claims)
}
