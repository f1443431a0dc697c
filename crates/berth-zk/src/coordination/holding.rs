//! Keeping a claim across sessions and letting it go: a re-claim always opens a new session (nothing may stay
//! tied to the old one), and a release deletes the node, then closes the session.

use std::time::Duration;

use berth_core::ports::{ClaimHolder, Deadline};
use berth_core::BrokerId;
use zookeeper_client as zk;

use super::node::{claim_body, Created};
use super::{Held, ZkCoordination, LOSS_PAUSE};
use crate::ZkError;

/// How long `release` waits for the server to confirm the session's close.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

impl ZkCoordination {
    pub(super) async fn reclaim_inner(
        &self,
        id: BrokerId,
        holder: &ClaimHolder,
        deadline: Deadline,
    ) -> Result<(), ZkError> {
        let mut held = self.held.lock().await;
        if held.live_client().is_some() && held.claim == Some(id) {
            return Ok(());
        }
        let result = self.reclaim_on(&mut held, id, holder, deadline).await;
        self.discard_on_error(&mut held, result)
    }

    async fn reclaim_on(
        &self,
        held: &mut Held,
        id: BrokerId,
        holder: &ClaimHolder,
        deadline: Deadline,
    ) -> Result<(), ZkError> {
        let body = claim_body(holder);
        let path = self.claim_path(id);
        loop {
            // Always a new session: the old one has ended, and nothing may stay tied to it.
            let client = self.new_session(held, deadline).await?;
            let attempt = tokio::time::timeout(
                deadline.remaining(),
                self.create_claim(&client, id, &body, holder, true),
            );
            match attempt.await {
                Err(_) => {
                    return Err(ZkError::Timeout {
                        path,
                        waiting_for: "the claim to be re-created",
                    })
                }
                Ok(Ok((Created::Ours, _))) => {
                    held.claim = Some(id);
                    tracing::info!(%id, %path, "re-claimed broker id on a new session");
                    return Ok(());
                }
                Ok(Ok((Created::Taken, holder_text))) => {
                    return Err(ZkError::TakenByOther {
                        id,
                        path,
                        holder: holder_text.unwrap_or_default(),
                    })
                }
                Ok(Err(ZkError::Op {
                    source: zk::Error::SessionExpired | zk::Error::ConnectionLoss,
                    ..
                })) if !deadline.expired() => {
                    tokio::time::sleep(LOSS_PAUSE).await;
                }
                Ok(Err(error)) => return Err(error),
            }
        }
    }

    pub(super) async fn release_inner(&self) -> Result<(), ZkError> {
        let mut held = self.held.lock().await;
        let claim = held.claim.take();
        let taken = held.client.take();
        self.shared.set(None);
        let Some(client) = taken else {
            return Ok(());
        };
        let mut result = Ok(());
        if let (Some(id), false) = (claim, client.state().is_terminated()) {
            let path = self.claim_path(id);
            self.count();
            match tokio::time::timeout(CLOSE_WAIT, client.delete(&path, None)).await {
                Ok(Ok(()) | Err(zk::Error::NoNode)) => {
                    tracing::info!(%id, %path, "released broker id")
                }
                Ok(Err(source)) => result = Err(ZkError::op("delete", &path, source)),
                Err(_) => {
                    result = Err(ZkError::Timeout {
                        path,
                        waiting_for: "the claim's deletion",
                    })
                }
            }
        }
        // Dropping the last client closes the session (which deletes the node anyway if the delete failed).
        let mut state = client.state_watcher();
        drop(client);
        let closed = async {
            while !state.state().is_terminated() {
                state.changed().await;
            }
        };
        let _ = tokio::time::timeout(CLOSE_WAIT, closed).await;
        result
    }
}
