//! Network adapter for berth: the ENI's link by MAC and its policy routing, through rtnetlink.
//!
//! The seed wrote interface files and ran `ifup` from a shell script; berth talks to the kernel directly, with no
//! files and no shell, so every step can observe first and be repeated safely. [`state`] holds the pure part
//! (what the kernel shows compared with the [`RoutePlan`](berth_core::facts::RoutePlan)), [`NetlinkNetwork`]
//! the I/O.

mod error;
mod netlink;
pub mod state;

pub use error::NetError;
pub use netlink::{Configured, NetlinkNetwork, NetlinkRequest};
pub use state::{Check, Link, RouteObservation};
