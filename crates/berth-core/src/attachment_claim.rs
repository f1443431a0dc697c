//! The `ec2` claim backend's decisions: which id's ENI to attach next, given who holds each candidate's ENI.
//!
//! EC2 attaches an ENI to at most one instance, so an accepted `AttachNetworkInterface` is the claim and the
//! owner instance's life is its lease (the reasoning: docs/decisions/0002-ec2-attachment-claims.md). The
//! adapter (berth-aws `claim`) observes EC2 and acts; this module decides, so every rule is unit-tested:
//! 1. a candidate whose ENI is attached (or attaching) here is this host's claim: a restart, no call needed;
//! 2. else the first free candidate in the host's spread order ([`ClaimPlan::try_order`]) is attached;
//! 3. else a candidate whose owner is in a takeover state (shutting-down, terminated) is taken over;
//! 4. else, if some owner's state is unknown, the owners are looked up (one call for all);
//! 5. else every candidate is held by a live instance: wait, saying which.

use std::collections::{BTreeMap, BTreeSet};

use crate::claim::ClaimPlan;
use crate::facts::{Attachment, BrokerId};

/// Who holds a candidate's ENI, as last observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// Not attached anywhere.
    Free,
    /// Attached or attaching to this instance.
    Here,
    /// Attached, attaching or detaching on another instance (or detaching from this one).
    Other(String),
}

impl Holder {
    /// The holder an attachment shows, seen from `instance_id`.
    pub fn from_attachment(attachment: Option<&Attachment>, instance_id: &str) -> Self {
        match attachment {
            None => Holder::Free,
            Some(a) if a.state == "detached" => Holder::Free,
            Some(a) if a.instance_id == instance_id && a.state != "detaching" => Holder::Here,
            Some(a) => Holder::Other(a.instance_id.clone()),
        }
    }
}

/// What the claimer does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Move {
    /// The id's ENI is attached here: the id is this host's.
    Held(BrokerId),
    /// Attach the id's ENI (EC2 refuses with `InvalidNetworkInterface.InUse` if another instance won it).
    Attach(BrokerId),
    /// Force-detach the id's ENI from its dying owner, then attach it here.
    TakeOver {
        /// The id.
        id: BrokerId,
        /// The owner instance.
        owner: String,
        /// Its state (one of the takeover states).
        owner_state: String,
    },
    /// Describe these owner instances (their states decide between takeover and waiting).
    LookUpOwners(Vec<String>),
    /// Every candidate is held by a live instance: wait (what for, for the log and `/state`).
    Wait(String),
}

/// Decides the next move. `owner_states` maps instance ids to their EC2 state (an instance EC2 does not
/// return is `unknown`, never taken over); `seed` spreads hosts over the free ids. Pure.
pub fn next_move(
    plan: &ClaimPlan,
    holders: &BTreeMap<BrokerId, Holder>,
    owner_states: &BTreeMap<String, String>,
    takeover_states: &[String],
    seed: u64,
) -> Move {
    let holder = |id: &BrokerId| holders.get(id).unwrap_or(&Holder::Free);
    let taken: BTreeSet<BrokerId> = plan
        .candidates
        .iter()
        .filter(|id| *holder(id) != Holder::Free)
        .copied()
        .collect();
    let order = plan.try_order(&taken, seed);
    if let Some(id) = order.iter().find(|id| *holder(id) == Holder::Here) {
        return Move::Held(*id);
    }
    if let Some(id) = order.iter().find(|id| *holder(id) == Holder::Free) {
        return Move::Attach(*id);
    }
    let owned: Vec<(BrokerId, &String)> = order
        .iter()
        .filter_map(|id| match holder(id) {
            Holder::Other(owner) => Some((*id, owner)),
            _ => None,
        })
        .collect();
    for (id, owner) in &owned {
        if let Some(state) = owner_states.get(*owner) {
            if takeover_states.contains(state) {
                return Move::TakeOver {
                    id: *id,
                    owner: (*owner).clone(),
                    owner_state: state.clone(),
                };
            }
        }
    }
    let unknown: BTreeSet<String> = owned
        .iter()
        .filter(|(_, owner)| !owner_states.contains_key(*owner))
        .map(|(_, owner)| (*owner).clone())
        .collect();
    if !unknown.is_empty() {
        return Move::LookUpOwners(unknown.into_iter().collect());
    }
    Move::Wait(waiting_for(plan, &owned, owner_states))
}

fn waiting_for(
    plan: &ClaimPlan,
    owned: &[(BrokerId, &String)],
    owner_states: &BTreeMap<String, String>,
) -> String {
    if owned.is_empty() {
        return "no candidate id can be claimed from this zone".into();
    }
    let held = owned
        .iter()
        .map(|(id, owner)| {
            let eni = plan.enis.get(id).map_or("?", |eni| eni.eni_id.as_str());
            let state = owner_states.get(*owner).map_or("unknown", String::as_str);
            format!("{id} ({eni} on {owner}, {state})")
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "every candidate id's ENI is attached to a live instance: {held}; waiting for one to be released"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(ids: &[u32], preferred: Option<u32>) -> ClaimPlan {
        ClaimPlan {
            preferred: preferred.map(BrokerId),
            candidates: ids.iter().copied().map(BrokerId).collect(),
            ..ClaimPlan::default()
        }
    }

    fn holders(list: &[(u32, Holder)]) -> BTreeMap<BrokerId, Holder> {
        list.iter()
            .map(|(id, holder)| (BrokerId(*id), holder.clone()))
            .collect()
    }

    fn states(list: &[(&str, &str)]) -> BTreeMap<String, String> {
        list.iter()
            .map(|(i, s)| ((*i).to_owned(), (*s).to_owned()))
            .collect()
    }

    fn takeover() -> Vec<String> {
        vec!["shutting-down".into(), "terminated".into()]
    }

    fn other(instance: &str) -> Holder {
        Holder::Other(instance.into())
    }

    #[test]
    fn an_eni_attached_here_is_this_hosts_claim_after_a_restart() {
        let plan = plan(&[0, 1, 2], Some(1));
        let seen = holders(&[(0, Holder::Free), (1, Holder::Here), (2, Holder::Free)]);
        assert_eq!(
            next_move(&plan, &seen, &BTreeMap::new(), &takeover(), 0),
            Move::Held(BrokerId(1))
        );
    }

    #[test]
    fn free_ids_are_tried_in_the_hosts_spread_order_and_taken_ones_skipped() {
        let plan = plan(&[0, 1, 2, 3], None);
        let all_free = holders(&[]);
        let spread: BTreeSet<String> = (0..4)
            .map(|seed| {
                format!(
                    "{:?}",
                    next_move(&plan, &all_free, &BTreeMap::new(), &takeover(), seed)
                )
            })
            .collect();
        assert_eq!(
            spread.len(),
            4,
            "four seeds pick four different ids: {spread:?}"
        );
        let seen = holders(&[(0, other("i-a")), (1, other("i-b")), (2, Holder::Free)]);
        for seed in 0..8 {
            let pick = next_move(&plan, &seen, &BTreeMap::new(), &takeover(), seed);
            assert!(
                matches!(pick, Move::Attach(BrokerId(2 | 3))),
                "seed {seed}: {pick:?}"
            );
        }
    }

    #[test]
    fn owners_are_looked_up_once_then_dying_ones_are_taken_over_and_live_ones_waited_for() {
        let plan = plan(&[0, 1], None);
        let seen = holders(&[(0, other("i-a")), (1, other("i-b"))]);
        assert_eq!(
            next_move(&plan, &seen, &BTreeMap::new(), &takeover(), 0),
            Move::LookUpOwners(vec!["i-a".into(), "i-b".into()])
        );
        let dying = states(&[("i-a", "running"), ("i-b", "shutting-down")]);
        assert_eq!(
            next_move(&plan, &seen, &dying, &takeover(), 0),
            Move::TakeOver {
                id: BrokerId(1),
                owner: "i-b".into(),
                owner_state: "shutting-down".into()
            }
        );
        let live = states(&[("i-a", "running"), ("i-b", "stopping")]);
        let Move::Wait(why) = next_move(&plan, &seen, &live, &takeover(), 0) else {
            panic!("a live owner is never taken over");
        };
        assert!(
            why.contains("i-a, running") && why.contains("i-b, stopping"),
            "{why}"
        );
    }

    #[test]
    fn a_preferred_id_won_by_another_host_yields_to_a_free_one() {
        let plan = plan(&[0, 1, 2], Some(0));
        let seen = holders(&[(0, other("i-a"))]);
        let pick = next_move(&plan, &seen, &BTreeMap::new(), &takeover(), 5);
        assert!(matches!(pick, Move::Attach(BrokerId(1 | 2))), "{pick:?}");
    }

    #[test]
    fn attachments_read_as_holders() {
        let attachment = |instance: &str, state: &str| Attachment {
            instance_id: instance.into(),
            state: state.into(),
            slot: "1".into(),
        };
        let me = "i-me";
        assert_eq!(Holder::from_attachment(None, me), Holder::Free);
        assert_eq!(
            Holder::from_attachment(Some(&attachment(me, "attaching")), me),
            Holder::Here
        );
        assert_eq!(
            Holder::from_attachment(Some(&attachment(me, "detaching")), me),
            other(me)
        );
        assert_eq!(
            Holder::from_attachment(Some(&attachment("i-x", "attached")), me),
            other("i-x")
        );
        assert_eq!(
            Holder::from_attachment(Some(&attachment("i-x", "detached")), me),
            Holder::Free
        );
    }
}
