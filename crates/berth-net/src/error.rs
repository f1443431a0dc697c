//! The adapter's errors, with the MAC, address or request they concern, and their mapping to the state
//! machine's retryable/fatal split at the trait seam.

use std::io;

use berth_core::facts::MacAddr;
use berth_core::{Classify, ErrorKind};

/// Everything that can go wrong while finding the ENI's link or routing it.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The rtnetlink socket could not be opened or subscribed to link events.
    #[error("cannot open the rtnetlink socket")]
    Socket(#[source] io::Error),
    /// `NetlinkNetwork::new` was called outside a tokio runtime, which must drive the socket.
    #[error(
        "no tokio runtime to drive the rtnetlink socket: create NetlinkNetwork inside a runtime"
    )]
    NoRuntime,
    /// No link with this MAC appeared by the deadline.
    #[error("no network link with MAC {mac} appeared within {waited_ms} ms (is the ENI attached to this instance?)")]
    LinkTimeout {
        /// The ENI's MAC.
        mac: MacAddr,
        /// How long the wait lasted.
        waited_ms: u128,
    },
    /// The plan names the primary interface, which berth never touches.
    #[error("refusing to configure the primary interface (MAC {mac})")]
    PrimaryInterface {
        /// The primary interface's MAC.
        mac: MacAddr,
    },
    /// The link event subscription ended (the netlink connection died).
    #[error("the rtnetlink link event stream closed while waiting for MAC {mac}")]
    EventsClosed {
        /// The MAC being waited for.
        mac: MacAddr,
    },
    /// The kernel refused a request.
    #[error("netlink request {request} failed (errno {errno})")]
    Kernel {
        /// The request, as listed in a configuration's request log.
        request: String,
        /// The positive errno.
        errno: i32,
        /// The errno as an I/O error (its text).
        #[source]
        source: io::Error,
    },
    /// The request could not be sent or answered (connection closed) or got an unexpected reply.
    #[error("netlink request {request} failed")]
    Connection {
        /// The request.
        request: String,
        /// What happened.
        #[source]
        source: rtnetlink::Error,
    },
    /// After configuring, reading back still shows something not right (another agent is fighting us?).
    #[error("routing for MAC {mac} did not converge: {detail}")]
    NotConverged {
        /// The ENI's MAC.
        mac: MacAddr,
        /// What is still not right.
        detail: String,
    },
    /// Configuration did not finish by the deadline.
    #[error("configuring routing for MAC {mac} did not finish by the deadline")]
    Deadline {
        /// The ENI's MAC.
        mac: MacAddr,
    },
}

impl NetError {
    /// The positive errno when the kernel refused a request.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetError::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

impl Classify for NetError {
    /// Fatal when retrying cannot help: the plan names the primary interface, there is no runtime, or the
    /// kernel denies permission. Everything else (a link not there yet, a dying connection, a transient kernel
    /// refusal) is worth another attempt.
    fn kind(&self) -> ErrorKind {
        match self {
            NetError::PrimaryInterface { .. } | NetError::NoRuntime => ErrorKind::Fatal,
            NetError::Kernel {
                errno: EPERM | EACCES,
                ..
            } => ErrorKind::Fatal,
            _ => ErrorKind::Retryable,
        }
    }
}

const EPERM: i32 = 1;
const EACCES: i32 = 13;
