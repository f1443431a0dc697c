//! Broker id claims as EPHEMERAL znodes, held for the daemon's whole life.
//!
//! Creating `<root>/<cluster>/claims/<id>` is the claim; NodeExists means taken. The node lives exactly as long
//! as the ZooKeeper session that created it, so every claim is tied to one session here and the daemon hears
//! of that session's fate ([`SessionEvent`]) as it happens, including a loss it must infer itself (see
//! `watch_session`).
//!
//! Order of tries (`ClaimPlan::try_order`, seeded by the instance id, so a mass boot does not have every host
//! collide on the lowest id): first, optimistically and without reading anything, the preferred id or else the
//! host's seeded pick among all candidates; in a mass boot that pick is usually free, and one request claims.
//! If it is taken, the claims are read once and the first free id in the seeded order is tried; after a
//! collision they are read again (with a varied seed) rather than probed blindly. When every candidate is
//! taken, a child watch wakes the claimer, never a sleep loop. Measured by the `claim_storm` bench.
//!
//! An id whose ENI or volume is already attached here (the plan's preferred id) is the only one tried: when
//! another host holds it, the claimer waits for it, saying who holds it, until its deadline; taking another id
//! would strand what is attached here (the state machine then fails, and the replacement of this instance
//! finds them released by the termination).
//!
//! A restarted daemon may find its previous session's claim still present (the old session lives until its
//! timeout): a node whose body names this instance is that stale claim, and is replaced at once. The preferred
//! id's node is looked at first; without a preferred id, the taken candidates are read once when none is free
//! (a restart among as many hosts as ids), instead of waiting for the old session to time out. systemd runs one
//! berth per host, so the instance id identifies the claimer.
//!
//! The adapter is here; its parts are in submodules: `node` (the claim znodes: body, path, create),
//! `search` (finding an id to claim), `holding` (re-claiming on a new session, releasing) and `session_watch`
//! (a session's fate, reported to the daemon).

mod holding;
mod node;
mod search;
mod session_watch;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use berth_core::claim::ClaimPlan;
use berth_core::ports::{ClaimHolder, Coordination, Deadline, Reclaim, SessionEvent, StepError};
use berth_core::security::Secret;
use berth_core::BrokerId;
use tokio::sync::{mpsc, Mutex};
use zookeeper_client as zk;

use crate::session::{self, SessionSettings, SharedSession};
use crate::ZkError;

pub use node::{first_seed, ClaimBody};

/// Pause after a lost connection before asking again (requests queue until the client reconnects anyway).
const LOSS_PAUSE: Duration = Duration::from_millis(50);

/// What the claim adapter reads: the ensemble and its credentials (`[zookeeper]`) and where the cluster's claims
/// live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkSettings {
    /// The ensemble, `host:port,...`.
    pub connect: String,
    /// Requested session timeout (the server clamps it to 2..20 ticks).
    pub session_timeout: Duration,
    /// Digest credentials `user:password` for claim ACLs; empty means open ACLs (never printed).
    pub digest: Secret,
    /// The claims' parent znode, `<root>/<cluster>/claims`.
    pub claims_path: String,
}

/// The claim this adapter holds, and the session it lives on.
#[derive(Default)]
struct Held {
    client: Option<zk::Client>,
    claim: Option<BrokerId>,
    /// Set once berth has declared this session lost (see [`session_watch::watch_session`]): it is never used again.
    lost: Arc<AtomicBool>,
}

impl Held {
    fn live_client(&self) -> Option<zk::Client> {
        self.client
            .clone()
            .filter(|client| !client.state().is_terminated() && !self.lost.load(Ordering::SeqCst))
    }
}

/// [`Coordination`] on ZooKeeper: claims as ephemeral nodes, with session events surfaced to the daemon.
pub struct ZkCoordination {
    settings: SessionSettings,
    claims_path: String,
    acl: Vec<zk::Acl>,
    held: Mutex<Held>,
    generation: Arc<AtomicU64>,
    events_tx: mpsc::UnboundedSender<(u64, SessionEvent)>,
    events_rx: Mutex<mpsc::UnboundedReceiver<(u64, SessionEvent)>>,
    requests: AtomicU64,
    sessions: AtomicU64,
    shared: SharedSession,
}

impl ZkCoordination {
    /// An adapter for the ensemble and cluster; it connects lazily, in `claim`.
    pub fn new(settings: ZkSettings) -> Result<Self, ZkError> {
        let ZkSettings {
            connect,
            session_timeout,
            digest,
            claims_path,
        } = settings;
        let digest = if digest.is_empty() {
            None
        } else if digest
            .expose()
            .split_once(':')
            .is_some_and(|(user, password)| !user.is_empty() && !password.is_empty())
        {
            Some(digest)
        } else {
            return Err(ZkError::BadDigest);
        };
        // With credentials: full rights for whoever holds them (deleting a claim needs DELETE on its parent, so the
        // parents get the same ACL), read for everyone (operators, `zkCli.sh get`).
        let acl = if digest.is_some() {
            vec![
                zk::Acl::new(zk::Permission::ALL, zk::AuthId::authed()),
                zk::Acl::new(zk::Permission::READ, zk::AuthId::anyone()),
            ]
        } else {
            vec![zk::Acl::new(zk::Permission::ALL, zk::AuthId::anyone())]
        };
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        Ok(Self {
            settings: SessionSettings {
                connect,
                session_timeout,
                digest,
            },
            claims_path,
            acl,
            held: Mutex::new(Held::default()),
            generation: Arc::new(AtomicU64::new(0)),
            events_tx,
            events_rx: Mutex::new(events_rx),
            requests: AtomicU64::new(0),
            sessions: AtomicU64::new(0),
            shared: SharedSession::default(),
        })
    }

    /// The claim znode of an id.
    pub fn claim_path(&self, id: BrokerId) -> String {
        format!("{}/{id}", self.claims_path)
    }

    /// ZooKeeper requests made so far (creates, deletes, reads, listings; not session handshakes).
    pub fn request_count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Sessions opened so far.
    pub fn session_count(&self) -> u64 {
        self.sessions.load(Ordering::Relaxed)
    }

    /// The id held now on a live session, if any.
    pub async fn held(&self) -> Option<BrokerId> {
        let held = self.held.lock().await;
        held.live_client().and(held.claim)
    }

    /// The id of the current session (for tests and logs).
    pub async fn session_id(&self) -> Option<i64> {
        self.held
            .lock()
            .await
            .client
            .as_ref()
            .map(|client| client.session_id().0)
    }

    /// The claim session, lent to read-only users (Kafka's registration watch) so that berth runs one
    /// ZooKeeper session, not one per reader.
    pub fn shared_session(&self) -> SharedSession {
        self.shared.clone()
    }

    /// Makes `client` the adapter's session (None: let it go, which closes it once no request is in flight).
    /// The shared slot follows, so a borrower never keeps a session, and the claim on it, alive.
    fn keep(&self, held: &mut Held, client: Option<zk::Client>) {
        self.shared.set(client.clone());
        held.client = client;
    }

    /// A claim or reclaim that failed: whatever a cut-short create left on its session goes with the session.
    fn discard_on_error<T>(
        &self,
        held: &mut Held,
        result: Result<T, ZkError>,
    ) -> Result<T, ZkError> {
        if result.is_err() {
            self.keep(held, None);
        }
        result
    }

    fn count(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    fn create_options(&self, mode: zk::CreateMode) -> zk::CreateOptions<'_> {
        mode.with_acls(zk::Acls::new(&self.acl))
    }

    /// The live session, or a new one (retried until the deadline). A new session starts a new generation:
    /// events of older sessions are no longer reported.
    async fn session(&self, held: &mut Held, deadline: Deadline) -> Result<zk::Client, ZkError> {
        if let Some(client) = held.live_client() {
            return Ok(client);
        }
        self.new_session(held, deadline).await
    }

    async fn new_session(
        &self,
        held: &mut Held,
        deadline: Deadline,
    ) -> Result<zk::Client, ZkError> {
        self.keep(held, None);
        held.claim = None;
        let client = session::open(&self.settings, Some(deadline)).await?;
        self.sessions.fetch_add(1, Ordering::Relaxed);
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let lost = Arc::new(AtomicBool::new(false));
        tokio::spawn(session_watch::watch_session(
            client.state_watcher(),
            client.session_timeout(),
            generation,
            self.events_tx.clone(),
            Arc::clone(&lost),
            client.session_id().0,
        ));
        let session_id = client.session_id().0;
        tracing::info!(
            session = format_args!("{session_id:#x}"),
            timeout_ms = client.session_timeout().as_millis() as u64,
            "ZooKeeper session opened"
        );
        self.keep(held, Some(client.clone()));
        held.lost = lost;
        Ok(client)
    }
}

#[async_trait]
impl Coordination for ZkCoordination {
    async fn claim(
        &self,
        plan: &ClaimPlan,
        holder: &ClaimHolder,
        deadline: Deadline,
    ) -> Result<BrokerId, StepError> {
        self.claim_inner(plan, holder, deadline)
            .await
            .map_err(StepError::from)
    }

    async fn reclaim(
        &self,
        id: BrokerId,
        holder: &ClaimHolder,
        deadline: Deadline,
    ) -> Result<Reclaim, StepError> {
        match self.reclaim_inner(id, holder, deadline).await {
            Ok(()) => Ok(Reclaim::Held),
            Err(ZkError::TakenByOther { holder, .. }) => Ok(Reclaim::TakenBy(holder)),
            Err(error) => Err(StepError::from(error)),
        }
    }

    async fn release(&self) -> Result<(), StepError> {
        self.release_inner().await.map_err(StepError::from)
    }

    async fn next_session_event(&self) -> SessionEvent {
        let mut events = self.events_rx.lock().await;
        loop {
            match events.recv().await {
                Some((generation, event))
                    if generation == self.generation.load(Ordering::SeqCst) =>
                {
                    return event
                }
                Some(_) => continue,
                // Unreachable while self holds a sender; pend rather than invent an event.
                None => std::future::pending::<()>().await,
            }
        }
    }
}
