//! Which broker ids this host may claim, and in which order it tries them.
//!
//! Only ids whose ENI and volume are both in this instance's availability zone can be served from here (EC2
//! refuses cross-AZ attachments). An id whose resources are already attached to this instance is preferred:
//! that is a restart, and taking any other id would strand those attachments. Hosts try the remaining free
//! ids in an order rotated by a per-host seed, so a mass boot does not have every host collide on the lowest id.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::facts::{BrokerId, EniFacts, Identity, Inventory};

/// An id that cannot be claimed from this host, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedId {
    /// The id.
    pub id: BrokerId,
    /// Why it is skipped.
    pub reason: String,
}

/// The ids this host may claim.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimPlan {
    /// An id whose ENI or volume is already attached to this instance (a restart), if any.
    pub preferred: Option<BrokerId>,
    /// Every claimable id (preferred included), ascending.
    pub candidates: Vec<BrokerId>,
    /// Ids in range that cannot be claimed here, with the reason.
    pub skipped: Vec<SkippedId>,
    /// Why the preferred id was chosen (for logs and `berth plan`).
    pub preferred_reason: Option<String>,
    /// Each candidate's ENI as discovered (the `ec2` claim backend claims an id by attaching it).
    #[serde(skip)]
    pub enis: BTreeMap<BrokerId, EniFacts>,
}

/// Works out the claim plan for this instance from the discovered resources. Pure.
pub fn plan_claim(
    inventory: &Inventory,
    identity: &Identity,
    ids: impl IntoIterator<Item = BrokerId>,
) -> ClaimPlan {
    let mut plan = ClaimPlan::default();
    let zone = identity.availability_zone.as_str();
    for id in ids {
        let problem = inventory.problems.iter().find(|p| problem_id(p) == id);
        let resources = inventory.ids.get(&id);
        let skip = |reason: String| SkippedId { id, reason };
        let (eni, volume) = match (problem, resources) {
            (Some(problem), _) => {
                plan.skipped.push(skip(problem.to_string()));
                continue;
            }
            (None, Some(r)) => match (&r.eni, &r.volume) {
                (Some(eni), Some(volume)) => (eni, volume),
                (None, _) => {
                    plan.skipped.push(skip("no ENI is tagged for it".into()));
                    continue;
                }
                (_, None) => {
                    plan.skipped.push(skip("no volume is tagged for it".into()));
                    continue;
                }
            },
            (None, None) => {
                plan.skipped
                    .push(skip("no ENI or volume is tagged for it".into()));
                continue;
            }
        };
        if eni.availability_zone != zone || volume.availability_zone != zone {
            plan.skipped.push(skip(format!(
                "its ENI {} and volume {} are in {}, this instance is in {zone}",
                eni.eni_id, volume.volume_id, eni.availability_zone
            )));
            continue;
        }
        let mine = |owner: Option<&crate::facts::Attachment>| {
            owner.is_some_and(|a| a.instance_id == identity.instance_id)
        };
        if plan.preferred.is_none() {
            if mine(eni.attachment.as_ref()) {
                plan.preferred = Some(id);
                plan.preferred_reason =
                    Some(format!("ENI {} is already attached here", eni.eni_id));
            } else if mine(volume.attachment.as_ref()) {
                plan.preferred = Some(id);
                plan.preferred_reason = Some(format!(
                    "volume {} is already attached here",
                    volume.volume_id
                ));
            }
        }
        plan.candidates.push(id);
        plan.enis.insert(id, eni.clone());
    }
    plan
}

fn problem_id(problem: &crate::facts::InventoryProblem) -> BrokerId {
    use crate::facts::InventoryProblem::*;
    match problem {
        DuplicateEni { id, .. }
        | DuplicateVolume { id, .. }
        | ZoneMismatch { id, .. }
        | Missing { id, .. } => *id,
    }
}

impl ClaimPlan {
    /// The order in which to try ids, given those known to be taken: the preferred id first (even if it looks
    /// taken: it may be this host's own stale claim), then the free candidates rotated by `seed`, then the
    /// taken ones (they may be released while we try).
    pub fn try_order(&self, taken: &BTreeSet<BrokerId>, seed: u64) -> Vec<BrokerId> {
        let mut order: Vec<BrokerId> = self.preferred.into_iter().collect();
        let others = || {
            self.candidates
                .iter()
                .copied()
                .filter(|id| Some(*id) != self.preferred)
        };
        let free: Vec<BrokerId> = others().filter(|id| !taken.contains(id)).collect();
        if !free.is_empty() {
            let start = (seed % free.len() as u64) as usize;
            order.extend(free[start..].iter().chain(&free[..start]));
        }
        order.extend(others().filter(|id| taken.contains(id)));
        order
    }

    /// The skipped ids and why, as `id: reason` joined with `; ` (empty when none is skipped).
    pub fn skipped_summary(&self) -> String {
        self.skipped
            .iter()
            .map(|s| format!("{}: {}", s.id, s.reason))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_summary_names_each_id_and_reason() {
        let mut plan = ClaimPlan::default();
        assert_eq!(plan.skipped_summary(), "");
        plan.skipped = vec![
            SkippedId {
                id: BrokerId(2),
                reason: "no ENI is tagged for it".into(),
            },
            SkippedId {
                id: BrokerId(5),
                reason: "no volume is tagged for it".into(),
            },
        ];
        assert_eq!(
            plan.skipped_summary(),
            "2: no ENI is tagged for it; 5: no volume is tagged for it"
        );
    }
}
