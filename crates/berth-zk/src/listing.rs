//! Who holds each broker id's claim, read and nothing else: `berth plan`, the simulated fleet and the claim storm
//! benchmarks list the claim nodes through this, so they all read them as the claimer writes them
//! ([`ClaimBody::read`]). A list and a get per node: no create, not even of the claims path, and no watch.

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
    /// The session that owns the node (0 for a node that is not ephemeral, which berth never creates).
    pub session: i64,
    /// Who holds it, as logs and `berth plan` say it (instance, zone, host, berth version, session).
    pub description: String,
}

/// [`read_claims`] on a session of its own, opened with `session_timeout`, that fails at once when no server of
/// `connect` answers.
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
    read_claims(&client, claims_path).await
}

/// The claims held now under `claims_path` (`<root>/<cluster>/claims`), by id, read through `client`: none when
/// the path does not exist; children that are not ids, and nodes released between the listing and their read, are
/// left out.
pub async fn read_claims(
    client: &zk::Client,
    claims_path: &str,
) -> Result<BTreeMap<BrokerId, ListedClaim>, ZkError> {
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
                session: stat.ephemeral_owner,
                description,
            },
        );
    }
    Ok(claims)
}
