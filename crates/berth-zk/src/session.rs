//! Opening ZooKeeper sessions: one place for connect options, digest credentials and the retry until a deadline.
//!
//! A claim must know which session it lives on, so [`open`] only ever opens a new session and never hides a
//! replacement; [`Connection`] adds the lazy, self-renewing session that read-only watchers want.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_core::retry::{stable_hash, Jitter, RetryPolicy};
use berth_core::Deadline;
use zookeeper_client as zk;

use crate::ZkError;

/// Pauses between connection attempts: the core's backoff, 0.1 s doubling up to 1 s (the caller's deadline, if
/// any, bounds the whole; the policy's own is unused).
const CONNECT_BACKOFF: RetryPolicy = RetryPolicy {
    initial: Duration::from_millis(100),
    max: Duration::from_secs(1),
    multiplier: 2.0,
    deadline: Duration::MAX,
};

/// Where and how to open sessions.
#[derive(Debug, Clone)]
pub(crate) struct SessionSettings {
    /// `host:port,...`.
    pub connect: String,
    /// Requested session timeout (the server clamps it to 2..20 ticks).
    pub session_timeout: Duration,
    /// Digest credentials `user:password` (never printed: `Secret`'s `Debug` redacts it).
    pub digest: Option<berth_core::security::Secret>,
}

/// Opens a new session, retrying (with backoff) while no server answers, until the deadline (None: forever).
pub(crate) async fn open(
    settings: &SessionSettings,
    deadline: Option<Deadline>,
) -> Result<zk::Client, ZkError> {
    let mut jitter = Jitter::new(stable_hash(&settings.connect));
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut connector = zk::Client::connector()
            .with_session_timeout(settings.session_timeout)
            .with_fail_eagerly();
        if let Some(digest) = &settings.digest {
            connector = connector.with_auth("digest", digest.expose().as_bytes());
        }
        let connecting = connector.connect(&settings.connect);
        let result = match deadline {
            Some(deadline) => match tokio::time::timeout(deadline.remaining(), connecting).await {
                Ok(result) => result,
                Err(_) => Err(zk::Error::Timeout),
            },
            None => connecting.await,
        };
        let error = match result {
            Ok(client) => return Ok(client),
            Err(error @ (zk::Error::AuthFailed | zk::Error::BadArguments(_))) => {
                return Err(ZkError::Connect {
                    connect: settings.connect.clone(),
                    source: error,
                })
            }
            Err(error) => error,
        };
        let backoff = CONNECT_BACKOFF.delay(attempt, &mut jitter);
        let pause = match deadline {
            Some(deadline) if deadline.remaining() <= backoff => {
                return Err(ZkError::Connect {
                    connect: settings.connect.clone(),
                    source: error,
                });
            }
            _ => backoff,
        };
        tracing::debug!(connect = %settings.connect, %error, "ZooKeeper not reachable yet; retrying");
        tokio::time::sleep(pause).await;
    }
}

/// The claim adapter's session, lent to read-only users so one berth runs one ZooKeeper session (each session
/// has its own pings and client ticks, which is most of an idle berth's work).
///
/// The slot holds the session only while the claim adapter does: it is emptied the moment the adapter lets the
/// session go, so a borrower never keeps that session, or the ephemeral claim on it, alive.
#[derive(Clone, Default)]
pub struct SharedSession(Arc<Mutex<Option<zk::Client>>>);

impl SharedSession {
    pub(crate) fn set(&self, client: Option<zk::Client>) {
        *self.lock() = client;
    }

    /// The lent session while it lives.
    pub(crate) fn live(&self) -> Option<zk::Client> {
        self.lock()
            .clone()
            .filter(|client| !client.state().is_terminated())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<zk::Client>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl std::fmt::Debug for SharedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let session = self.lock().as_ref().map(|client| client.session_id().0);
        f.debug_tuple("SharedSession").field(&session).finish()
    }
}

/// A lazily opened session that is replaced when it ends (for read-only use: nothing may depend on its identity).
/// With a [`SharedSession`] it borrows that one while it lives and opens its own only in between.
pub(crate) struct Connection {
    settings: SessionSettings,
    current: Mutex<Option<zk::Client>>,
    shared: Option<SharedSession>,
}

impl Connection {
    pub fn new(
        connect: &str,
        session_timeout: Duration,
        digest: Option<berth_core::security::Secret>,
    ) -> Self {
        Self {
            settings: SessionSettings {
                connect: connect.to_owned(),
                session_timeout,
                digest,
            },
            current: Mutex::new(None),
            shared: None,
        }
    }

    /// Borrow `shared` whenever it holds a live session.
    pub fn borrowing(mut self, shared: SharedSession) -> Self {
        self.shared = Some(shared);
        self
    }

    /// The live session's client, opening a new session when there is none or it has ended.
    pub async fn client(&self, deadline: Option<Deadline>) -> Result<zk::Client, ZkError> {
        if let Some(client) = self.shared.as_ref().and_then(SharedSession::live) {
            // Our own session, if one was opened while there was nothing to borrow, is not needed any more.
            self.lock().take();
            return Ok(client);
        }
        self.forget_if_terminated();
        if let Some(client) = self.lock().clone() {
            return Ok(client);
        }
        let client = open(&self.settings, deadline).await?;
        Ok(self.lock().get_or_insert(client).clone())
    }

    /// Drop the session if it has ended (expired, closed, refused), so the next call opens another.
    pub fn forget_if_terminated(&self) {
        let mut current = self.lock();
        if current
            .as_ref()
            .is_some_and(|client| client.state().is_terminated())
        {
            *current = None;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<zk::Client>> {
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
