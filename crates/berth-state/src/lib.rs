//! berth's `/state` document, apart from the daemon that serves it.
//!
//! `/state` is berth's contract with whoever watches a broker host: `berth status`, operators' scripts, the
//! simulated fleet and the end-to-end tests. Keeping its schema ([`StateView`] and its parts) and a client
//! ([`client`]) in a crate of their own lets those readers decode it without linking the daemon (its AWS SDK,
//! netlink, ZooKeeper client). The daemon builds the document from its state machine (`berth::view`) and serves
//! it (`berth::health`).

pub mod client;
mod human;
mod schema;

pub use client::StateError;
pub use schema::{
    DrainWaitView, EniView, StateView, TimelineEntry, VolumeRequestView, VolumeView, WaitingView,
};
