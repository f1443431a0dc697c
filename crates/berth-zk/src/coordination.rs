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

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use berth_core::claim::ClaimPlan;
use berth_core::ports::{ClaimHolder, Coordination, Deadline, Reclaim, SessionEvent, StepError};
use berth_core::retry::stable_hash;
use berth_core::BrokerId;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Mutex};
use zookeeper_client as zk;

use crate::session::{self, SessionSettings, SharedSession};
use crate::ZkError;

/// How long `release` waits for the server to confirm the session's close.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Pause after a lost connection before asking again (requests queue until the client reconnects anyway).
const LOSS_PAUSE: Duration = Duration::from_millis(50);

/// The JSON body of a claim node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimBody {
    /// Who holds the claim.
    #[serde(flatten)]
    pub holder: ClaimHolder,
    /// When it was claimed (milliseconds since the Unix epoch).
    pub claimed_at_ms: u64,
}

impl ClaimBody {
    /// A claim node's body, when it is one, and who holds the node, as logs and `berth plan` say it (the
    /// owning session included, which is all there is to say of an unreadable body).
    pub fn read(body: &[u8], session: i64) -> (Option<ClaimBody>, String) {
        let claim = serde_json::from_slice::<ClaimBody>(body).ok();
        let description = match &claim {
            Some(claim) => format!(
                "instance {} in {} on {}, berth {}, session {session:#x}",
                claim.holder.instance_id,
                claim.holder.availability_zone,
                claim.holder.host,
                claim.holder.berth_version,
            ),
            None => format!("session {session:#x} with an unreadable body"),
        };
        (claim, description)
    }
}

/// The seed of a host's first try order (`ClaimPlan::try_order`), from its instance id; `berth plan` shows the
/// order this seed gives.
pub fn first_seed(instance_id: &str) -> u64 {
    stable_hash(instance_id)
}

/// The claim this adapter holds, and the session it lives on.
#[derive(Default)]
struct Held {
    client: Option<zk::Client>,
    claim: Option<BrokerId>,
    /// Set once berth has declared this session lost (see [`watch_session`]): it is never used again.
    lost: Arc<AtomicBool>,
}

impl Held {
    fn live_client(&self) -> Option<zk::Client> {
        self.client
            .clone()
            .filter(|client| !client.state().is_terminated() && !self.lost.load(Ordering::SeqCst))
    }
}

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

/// What became of one create attempt.
enum Created {
    /// The node is ours, on the current session.
    Ours,
    /// Another session holds it.
    Taken,
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
    /// An adapter for the configured ensemble and cluster; it connects lazily, in `claim`.
    pub fn new(config: &berth_config::Config) -> Result<Self, ZkError> {
        let zk = &config.zookeeper;
        let digest = if zk.digest.is_empty() {
            None
        } else if zk
            .digest
            .expose()
            .split_once(':')
            .is_some_and(|(user, password)| !user.is_empty() && !password.is_empty())
        {
            Some(zk.digest.clone())
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
                connect: zk.connect.clone(),
                session_timeout: zk.session_timeout,
                digest,
            },
            claims_path: config.claims_path(),
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
        tokio::spawn(watch_session(
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

    /// Create the claims znode and its parents (persistent, with the configured ACL).
    async fn make_claims_path(&self, client: &zk::Client) -> Result<(), zk::Error> {
        let path = self.claims_path.as_str();
        let options = self.create_options(zk::CreateMode::Persistent);
        // Leaf first: usually only the leaf is missing. Walk up on NoNode, then down again.
        let mut end = path.len();
        loop {
            self.count();
            match client.create(&path[..end], &[], &options).await {
                Ok(_) | Err(zk::Error::NodeExists) if end == path.len() => return Ok(()),
                Ok(_) | Err(zk::Error::NodeExists) => {
                    end += 1 + path[end + 1..].find('/').unwrap_or(path.len() - end - 1);
                }
                Err(zk::Error::NoNode) => match path[..end].rfind('/') {
                    Some(slash) if slash > 0 => end = slash,
                    _ => return Err(zk::Error::NoNode),
                },
                Err(error) => return Err(error),
            }
        }
    }

    /// Lists the claimed ids (creating the claims path when missing) with a watch on the claims znode.
    async fn list_claims(
        &self,
        client: &zk::Client,
    ) -> Result<(BTreeSet<BrokerId>, zk::OneshotWatcher), ZkError> {
        let path = &self.claims_path;
        loop {
            self.count();
            match client.list_and_watch_children(path).await {
                Ok((children, watcher)) => {
                    let taken = children
                        .iter()
                        .filter_map(|name| name.parse().ok())
                        .map(BrokerId)
                        .collect();
                    return Ok((taken, watcher));
                }
                Err(zk::Error::NoNode) => self
                    .make_claims_path(client)
                    .await
                    .map_err(|source| ZkError::op("create", path, source))?,
                Err(source) => return Err(ZkError::op("list", path, source)),
            }
        }
    }

    /// Creates the claim node of `id`; when it exists, finds out whether it is ours (this session's, or this
    /// instance's stale one from a previous session, which is replaced) or another host's.
    async fn create_claim(
        &self,
        client: &zk::Client,
        id: BrokerId,
        body: &[u8],
        holder: &ClaimHolder,
        mut inspect: bool,
    ) -> Result<(Created, Option<String>), ZkError> {
        let path = self.claim_path(id);
        let options = self.create_options(zk::CreateMode::Ephemeral);
        let mut replaced_stale = false;
        loop {
            self.count();
            match client.create(&path, body, &options).await {
                Ok(_) => return Ok((Created::Ours, None)),
                // Most likely another host's (a collision): not worth a read unless it may be ours.
                Err(zk::Error::NodeExists) if !inspect => return Ok((Created::Taken, None)),
                Err(zk::Error::NodeExists) => {}
                // The create may have succeeded: the node must be looked at.
                Err(zk::Error::ConnectionLoss) => inspect = true,
                Err(zk::Error::NoNode) => {
                    self.make_claims_path(client)
                        .await
                        .map_err(|source| ZkError::op("create", &path, source))?;
                    continue;
                }
                Err(source) => return Err(ZkError::op("create", &path, source)),
            }
            // Taken, or unknown after a lost connection: look at the node.
            self.count();
            let (data, stat) = match client.get_data(&path).await {
                Ok(found) => found,
                Err(zk::Error::NoNode) => continue,
                Err(zk::Error::ConnectionLoss) => {
                    tokio::time::sleep(LOSS_PAUSE).await;
                    continue;
                }
                Err(source) => return Err(ZkError::op("get_data", &path, source)),
            };
            if stat.ephemeral_owner == client.session_id().0 {
                return Ok((Created::Ours, None));
            }
            let (owner, description) = ClaimBody::read(&data, stat.ephemeral_owner);
            if replaced_stale
                || owner.is_none_or(|owner| owner.holder.instance_id != holder.instance_id)
            {
                return Ok((Created::Taken, Some(description)));
            }
            tracing::warn!(%path, stale = %description, "replacing this instance's claim left by its previous session");
            replaced_stale = true;
            self.count();
            match client.delete(&path, Some(stat.version)).await {
                Ok(()) | Err(zk::Error::NoNode | zk::Error::BadVersion) => {}
                Err(source) => return Err(ZkError::op("delete", &path, source)),
            }
        }
    }

    async fn claim_inner(
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

    async fn reclaim_inner(
        &self,
        id: BrokerId,
        holder: &ClaimHolder,
        deadline: Deadline,
    ) -> Result<(), ZkError> {
        let mut held = self.held.lock().await;
        if held.live_client().is_some() && held.claim == Some(id) {
            return Ok(());
        }
        let result = self.reclaim_on(&mut held, id, holder, deadline).await;
        self.discard_on_error(&mut held, result)
    }

    async fn reclaim_on(
        &self,
        held: &mut Held,
        id: BrokerId,
        holder: &ClaimHolder,
        deadline: Deadline,
    ) -> Result<(), ZkError> {
        let body = claim_body(holder);
        let path = self.claim_path(id);
        loop {
            // Always a new session: the old one has ended, and nothing may stay tied to it.
            let client = self.new_session(held, deadline).await?;
            let attempt = tokio::time::timeout(
                deadline.remaining(),
                self.create_claim(&client, id, &body, holder, true),
            );
            match attempt.await {
                Err(_) => {
                    return Err(ZkError::Timeout {
                        path,
                        waiting_for: "the claim to be re-created",
                    })
                }
                Ok(Ok((Created::Ours, _))) => {
                    held.claim = Some(id);
                    tracing::info!(%id, %path, "re-claimed broker id on a new session");
                    return Ok(());
                }
                Ok(Ok((Created::Taken, holder_text))) => {
                    return Err(ZkError::TakenByOther {
                        id,
                        path,
                        holder: holder_text.unwrap_or_default(),
                    })
                }
                Ok(Err(ZkError::Op {
                    source: zk::Error::SessionExpired | zk::Error::ConnectionLoss,
                    ..
                })) if !deadline.expired() => {
                    tokio::time::sleep(LOSS_PAUSE).await;
                }
                Ok(Err(error)) => return Err(error),
            }
        }
    }

    async fn release_inner(&self) -> Result<(), ZkError> {
        let mut held = self.held.lock().await;
        let claim = held.claim.take();
        let taken = held.client.take();
        self.shared.set(None);
        let Some(client) = taken else {
            return Ok(());
        };
        let mut result = Ok(());
        if let (Some(id), false) = (claim, client.state().is_terminated()) {
            let path = self.claim_path(id);
            self.count();
            match tokio::time::timeout(CLOSE_WAIT, client.delete(&path, None)).await {
                Ok(Ok(()) | Err(zk::Error::NoNode)) => {
                    tracing::info!(%id, %path, "released broker id")
                }
                Ok(Err(source)) => result = Err(ZkError::op("delete", &path, source)),
                Err(_) => {
                    result = Err(ZkError::Timeout {
                        path,
                        waiting_for: "the claim's deletion",
                    })
                }
            }
        }
        // Dropping the last client closes the session (which deletes the node anyway if the delete failed).
        let mut state = client.state_watcher();
        drop(client);
        let closed = async {
            while !state.state().is_terminated() {
                state.changed().await;
            }
        };
        let _ = tokio::time::timeout(CLOSE_WAIT, closed).await;
        result
    }
}

/// Forwards one session's state changes to the daemon, tagged with its generation, until the session ends.
///
/// The server expires a session `timeout` after it last heard from the client; the client library only gives
/// up at 7/5 of that, which would leave a window where another host holds the id while this one still believes
/// it does. So berth declares the session lost itself once it has been disconnected long enough that the server
/// may have expired it: `timeout` after the last reply, i.e. 3/5 of it after Disconnected (the library reports
/// Disconnected when nothing arrived for 2/5 of the timeout, or sooner on a socket error), less one of the
/// library's ticks (1/20 of the timeout) by which it may notice the silence late. Erring early is safe:
/// the daemon re-claims, and its own claim on the old session, if still there, is replaced.
async fn watch_session(
    mut watcher: zk::StateWatcher,
    timeout: Duration,
    generation: u64,
    events: mpsc::UnboundedSender<(u64, SessionEvent)>,
    lost: Arc<AtomicBool>,
    session_id: i64,
) {
    let mut lost_at: Option<tokio::time::Instant> = None;
    loop {
        let state = match lost_at {
            Some(at) => match tokio::time::timeout_at(at, watcher.changed()).await {
                Ok(state) => state,
                Err(_) => {
                    lost.store(true, Ordering::SeqCst);
                    tracing::warn!(
                        session = format_args!("{session_id:#x}"),
                        "disconnected long enough for the server to expire the session: claim lost"
                    );
                    let _ = events.send((generation, SessionEvent::Expired));
                    return;
                }
            },
            None => watcher.changed().await,
        };
        let event = match state {
            zk::SessionState::SyncConnected => SessionEvent::Connected,
            // Read-only servers cannot keep a claim alive: treat as lost connection.
            zk::SessionState::Disconnected | zk::SessionState::ConnectedReadOnly => {
                SessionEvent::Disconnected
            }
            // Refused credentials end the session: the claim cannot be trusted any more.
            zk::SessionState::Expired | zk::SessionState::AuthFailed => SessionEvent::Expired,
            zk::SessionState::Closed => SessionEvent::Closed,
        };
        lost_at = match event {
            SessionEvent::Disconnected => {
                lost_at.or(Some(tokio::time::Instant::now() + timeout * 11 / 20))
            }
            _ => None,
        };
        tracing::info!(
            session = format_args!("{session_id:#x}"),
            ?state,
            "ZooKeeper session state"
        );
        if events.send((generation, event)).is_err() || state.is_terminated() {
            return;
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

fn claim_body(holder: &ClaimHolder) -> Vec<u8> {
    let claimed_at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    serde_json::to_vec(&ClaimBody {
        holder: holder.clone(),
        claimed_at_ms,
    })
    .expect("a claim body serializes")
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
