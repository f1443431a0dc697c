//! berth's pure core.
//!
//! berth makes a Kafka broker on an EC2 Auto Scaling Group self-healing: a replacement instance claims the dead
//! broker's id, attaches its ENI and EBS volume, routes and mounts them, and starts Kafka as the same broker.
//! This crate holds everything about that which can be decided without touching the world: the facts, the
//! state machine and its retry policy, the claim and routing plans, and the traits ([`ports`]) through which
//! the daemon reaches the world. It does no I/O, so every decision is unit-tested; its one use of a runtime is
//! the task-local through which a waiting adapter reports why it waits ([`progress`]).

pub mod attachment_claim;
pub mod birth;
pub mod claim;
pub mod classify;
pub mod drain_wait;
pub mod duration;
pub mod facts;
#[cfg(feature = "fixtures")]
pub mod fixtures;
pub mod machine;
pub mod ports;
pub mod progress;
pub mod replication;
pub mod retry;
pub mod routing;
pub mod security;
pub mod tag;

pub use classify::Classify;
pub use duration::{serde_duration, serde_duration_option};
pub use facts::*;
pub use machine::{
    Decision, Effect, Event, ExitReason, Failure, Input, Machine, Output, ReclaimOutcome, Settings,
    State, Step, StepKind, StepTag, Teardown, TransitionError,
};
pub use ports::{
    Attachments, Broker, Coordination, Deadline, ErrorKind, Metadata, Network, Signals, StepError,
    Storage,
};

/// berth's version, written into claim nodes and reported by `/state`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
