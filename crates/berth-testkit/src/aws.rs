//! The AWS side of berth's tests: real moto with real EC2's attach checks, and stand-ins, at least as strict as
//! AWS, only for what moto lacks.
//!
//! * [`moto`]: the strict moto launcher (python/strict_moto.py), with switches for how termination releases ENIs
//!   and for holding an instance in `shutting-down`.
//! * [`endpoint`]: the strict CloudFormation/Auto Scaling endpoint (a stand-in): SignalResource, lifecycle
//!   actions and instance health held as AWS holds them ([`cloudformation`], [`autoscaling`]), each refusal
//!   with AWS's error ([`query`]); EC2 is forwarded to moto. [`autoscaling::group`] plays the groups' control
//!   plane on that model (capacity, replacements, terminations, instance refreshes) for whoever supplies the
//!   instances (the simulated fleet).
//! * [`proxy`]: a fault-injecting, call-counting proxy (RequestLimitExceeded, 500s).
//! * [`imds`]: an IMDSv2-only metadata endpoint per simulated host.
//! * [`template`]: the simulated CloudFormation's template reader (the shipped template, parameters, rules,
//!   conditions, intrinsic functions, creation order).
//! * [`world`]: seeding moto with a cluster's VPC, tagged ENIs and volumes, and instances (for the adapter tests
//!   and the simulated fleet alike).
//!
//! Every server binds any given address (port 0 picks a free one) and stops in `Drop`, so the simulated fleet
//! can place them inside network namespaces.

pub mod autoscaling;
pub mod cloudformation;
pub mod endpoint;
pub mod http;
pub mod imds;
pub mod moto;
pub mod proxy;
pub mod query;
pub mod template;
pub mod world;

pub use endpoint::{AwsEndpoint, ControlPlane, RecordedCall};
pub use imds::{Imds, ImdsHost, ImdsInterface, RoleCredentials};
pub use moto::{EniOnTerminate, MotoError, StrictMoto};
pub use proxy::{CallSpan, Fault, FaultProxy};

/// `127.0.0.1:0`: loopback on a free port, the usual bind address in adapter tests.
pub fn loopback_any_port() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 0))
}
