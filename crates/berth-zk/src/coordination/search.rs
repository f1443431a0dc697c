//! Finding an id to claim: the order of tries, the optimistic first create, reading the claims after a
//! collision, waiting on a child watch when every candidate is taken, and a restarted instance's own claim.

use std::collections::BTreeSet;

use berth_core::claim::ClaimPlan;
use berth_core::ports::{ClaimHolder, Deadline};
use berth_core::BrokerId;
use zookeeper_client as zk;

use super::node::{claim_body, first_seed, ClaimBody, Created};
use super::{Held, ZkCoordination, LOSS_PAUSE};
use crate::ZkError;

/// Where one claim call stands between its tries.
struct ClaimSearch {
    /// The claim node's body.
    body: Vec<u8>,
    /// This host's seed for the order of tries.
    seed: u64,
    /// An id whose node may be this instance's own (from a previous session): looked at even when taken.
    look_at: Option<BrokerId>,
    /// Tries so far.
    round: u64,
    /// Whether the taken candidates were searched for this instance's own claim.
    searched_own: bool,
    /// Who holds the preferred id, once looked at.
    preferred_holder: Option<String>,
}

impl ZkCoordination {
    pub(super) async fn claim_inner(
        &self,
        plan: &ClaimPlan,
        holder: &ClaimHolder,
        deadline: Deadline,
    ) -> Result<BrokerId, ZkError> {
        if plan.candidates.is_empty() {
            let reason = plan.skipped_summary();
            return Err(ZkError::NoCandidates {
                reason: if reason.is_empty() {
                    "no ids configured".into()
                } else {
                    reason
                },
            });
        }
        let mut held = self.held.lock().await;
        if let (Some(_), Some(id)) = (held.live_client(), held.claim) {
            return Ok(id);
        }
        // A session without a known claim may still own a node whose create was cut short (an earlier call hit
        // its deadline or was cancelled mid-request): it is closed, which deletes any such node, never reused.
        self.keep(&mut held, None);
        let result = self.claim_on(&mut held, plan, holder, deadline).await;
        self.discard_on_error(&mut held, result)
    }

    async fn claim_on(
        &self,
        held: &mut Held,
        plan: &ClaimPlan,
        holder: &ClaimHolder,
        deadline: Deadline,
    ) -> Result<BrokerId, ZkError> {
        let mut search = ClaimSearch {
            body: claim_body(holder),
            seed: first_seed(&holder.instance_id),
            look_at: plan.preferred,
            round: 0,
            searched_own: false,
            preferred_holder: None,
        };
        loop {
            let client = self.session(held, deadline).await?;
            let attempt = self.claim_round(&client, plan, holder, &mut search);
            let outcome = match tokio::time::timeout(deadline.remaining(), attempt).await {
                Ok(outcome) => outcome,
                Err(_) => return Err(self.gave_up(plan, &search)),
            };
            match outcome {
                Ok(Ok(id)) => {
                    held.claim = Some(id);
                    tracing::info!(%id, path = %self.claim_path(id), "claimed broker id");
                    return Ok(id);
                }
                Ok(Err(None)) => {}
                Ok(Err(Some(watcher))) => {
                    let waiting = self.waiting_for(plan, &search);
                    berth_core::progress::report(waiting.clone());
                    tracing::info!(path = %self.claims_path, "{waiting}");
                    if tokio::time::timeout(deadline.remaining(), watcher.changed())
                        .await
                        .is_err()
                    {
                        return Err(self.gave_up(plan, &search));
                    }
                }
                Err(ZkError::Op {
                    source: zk::Error::ConnectionLoss,
                    ..
                }) => {
                    tokio::time::sleep(LOSS_PAUSE.min(deadline.remaining())).await;
                }
                // The session ended while claiming: nothing of it survives; start over on a new one.
                Err(ZkError::Op {
                    source: zk::Error::SessionExpired | zk::Error::ClientClosed,
                    ..
                }) => {
                    self.keep(held, None);
                    search.look_at = plan.preferred;
                }
                Err(error) => return Err(error),
            }
            if deadline.expired() {
                return Err(self.gave_up(plan, &search));
            }
        }
    }

    /// One try: `Ok(id)` claimed; `Err(None)` try again at once; `Err(Some(watcher))` nothing to try until the
    /// claims change.
    async fn claim_round(
        &self,
        client: &zk::Client,
        plan: &ClaimPlan,
        holder: &ClaimHolder,
        search: &mut ClaimSearch,
    ) -> Result<Result<BrokerId, Option<zk::OneshotWatcher>>, ZkError> {
        // The first try is optimistic: the id this host would pick from an empty listing, created straight
        // away. In a mass boot most such picks are free, which saves the listing; when it is taken, the claims
        // are read and the free ones tried.
        let (taken, watcher) = if search.round == 0 {
            (BTreeSet::new(), None)
        } else {
            let (taken, watcher) = self.list_claims(client).await?;
            (taken, Some(watcher))
        };
        // The first listing uses the host's own seed (as `berth plan` does); later ones vary it, so claimers
        // that just collided do not pick alike again.
        let seed = search.seed
            ^ search
                .round
                .saturating_sub(1)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        search.round += 1;
        let mut candidate = match plan.preferred {
            // What is attached here belongs to the preferred id: no other id is tried.
            Some(preferred) => (!taken.contains(&preferred) || search.look_at == Some(preferred))
                .then_some(preferred),
            None => plan
                .try_order(&taken, seed)
                .into_iter()
                .find(|id| !taken.contains(id) || Some(*id) == search.look_at),
        };
        if candidate.is_none() && plan.preferred.is_none() && !search.searched_own {
            // Every candidate is taken: one of them may be this instance's own claim from its previous
            // session (a restart), which is taken back rather than waited out. Looked for once per claim.
            search.searched_own = true;
            let taken_candidates = plan.candidates.iter().filter(|id| taken.contains(id));
            candidate = self.own_claim(client, taken_candidates, holder).await?;
            search.look_at = candidate;
        }
        let Some(id) = candidate else {
            return Ok(Err(watcher));
        };
        let inspect = search.look_at == Some(id);
        search.look_at = None;
        let (created, holder_text) = self
            .create_claim(client, id, &search.body, holder, inspect)
            .await?;
        match created {
            Created::Ours => Ok(Ok(id)),
            Created::Taken => {
                tracing::debug!(%id, holder = holder_text.as_deref(), "id taken; reading the claims again");
                if Some(id) == plan.preferred {
                    search.preferred_holder = holder_text;
                }
                Ok(Err(None))
            }
        }
    }

    /// The first of `ids` whose claim node names this instance (a claim left by its previous session).
    async fn own_claim(
        &self,
        client: &zk::Client,
        ids: impl Iterator<Item = &BrokerId>,
        holder: &ClaimHolder,
    ) -> Result<Option<BrokerId>, ZkError> {
        for id in ids {
            let path = self.claim_path(*id);
            self.count();
            match client.get_data(&path).await {
                Ok((data, _)) => {
                    let body = serde_json::from_slice::<ClaimBody>(&data).ok();
                    if body.is_some_and(|body| body.holder.instance_id == holder.instance_id) {
                        return Ok(Some(*id));
                    }
                }
                Err(zk::Error::NoNode) => {}
                Err(source) => return Err(ZkError::op("get_data", &path, source)),
            }
        }
        Ok(None)
    }

    /// What a claimer with nothing to try waits for.
    fn waiting_for(&self, plan: &ClaimPlan, search: &ClaimSearch) -> String {
        match preferred_taken(plan, search) {
            Some(error) => error.to_string(),
            None => format!(
                "every candidate id under {} is claimed; waiting for one to be released",
                self.claims_path
            ),
        }
    }

    /// The error of a claim that ran out of time.
    fn gave_up(&self, plan: &ClaimPlan, search: &ClaimSearch) -> ZkError {
        preferred_taken(plan, search).unwrap_or_else(|| self.all_taken(plan))
    }

    fn all_taken(&self, plan: &ClaimPlan) -> ZkError {
        ZkError::AllTaken {
            path: self.claims_path.clone(),
            candidates: plan
                .candidates
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

/// With a preferred id, why the claimer waits: who holds it, and what is attached here.
fn preferred_taken(plan: &ClaimPlan, search: &ClaimSearch) -> Option<ZkError> {
    Some(ZkError::PreferredTaken {
        id: plan.preferred?,
        holder: search
            .preferred_holder
            .clone()
            .unwrap_or_else(|| "another host".into()),
        why: plan
            .preferred_reason
            .clone()
            .unwrap_or_else(|| "its ENI or volume is attached here".into()),
    })
}
