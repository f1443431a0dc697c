//! The hosts' `/state` timelines on one clock, to prove what happened at the same time: that hosts claimed
//! together, and that a fault landed while a claim was in flight.
//!
//! A timeline counts from its own daemon's start; a `/state` read places that start on this machine's wall clock
//! within the read's round trip (the document's `uptime_ms` was taken between the request and its answer). Every
//! decision here holds only when it holds at both ends of those bounds: what is not sure is not claimed.

use std::time::{SystemTime, UNIX_EPOCH};

use berth_sim::StateView;

/// The timeline's name of the Claim state.
pub const CLAIM: &str = "claim";

/// An instant known within bounds, in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moment {
    /// It was not before this.
    pub earliest: u64,
    /// It was not after this.
    pub latest: u64,
}

impl Moment {
    /// The moment something took: from `before` (taken just before it began) to now.
    pub fn since(before: u64) -> Self {
        Self {
            earliest: before,
            latest: now_ms(),
        }
    }

    fn shifted(self, by: i64) -> Self {
        Self {
            earliest: self.earliest.saturating_add_signed(by),
            latest: self.latest.saturating_add_signed(by),
        }
    }
}

/// This machine's wall clock in milliseconds since the Unix epoch (the journal's clock too).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// One stay of a host in one state, on the wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stay {
    /// The host's index.
    pub host: usize,
    /// When it entered the state.
    pub began: Moment,
    /// When it left (for the state it is still in: when the document was read).
    pub ended: Moment,
}

impl Stay {
    /// Whether the whole of `moment` surely lies inside the stay.
    pub fn surely_contains(&self, moment: Moment) -> bool {
        self.began.latest <= moment.earliest && moment.latest <= self.ended.earliest
    }
}

/// Host `host`'s stays in `state` from its `/state` document `view`, read within `read`.
pub fn stays(host: usize, view: &StateView, read: Moment, state: &str) -> Vec<Stay> {
    let start = read.shifted(-(view.uptime_ms as i64));
    view.timeline
        .iter()
        .filter(|entry| entry.state == state)
        .map(|entry| Stay {
            host,
            began: start.shifted(entry.entered_ms as i64),
            ended: start.shifted((entry.entered_ms + entry.duration_ms) as i64),
        })
        .collect()
}

/// An instant surely inside every one of `stays` (the latest possible entry to the earliest possible exit), if
/// they all overlap; None for no stays.
pub fn common_instant(stays: &[Stay]) -> Option<Moment> {
    let earliest = stays.iter().map(|stay| stay.began.latest).max()?;
    let latest = stays.iter().map(|stay| stay.ended.earliest).min()?;
    (earliest <= latest).then_some(Moment { earliest, latest })
}

/// The hosts one of whose `stays` surely contains `moment`.
pub fn hosts_within(stays: &[Stay], moment: Moment) -> Vec<usize> {
    let mut hosts: Vec<usize> = stays
        .iter()
        .filter(|stay| stay.surely_contains(moment))
        .map(|stay| stay.host)
        .collect();
    hosts.dedup();
    hosts
}

/// What to do about a fault meant to land while claims are in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Aim {
    /// Inject it now: enough hosts are claiming (their indexes), enough of them in ZooKeeper already.
    Now {
        /// The hosts in Claim.
        claiming: Vec<usize>,
        /// Those of them with a session ZooKeeper lists.
        in_zookeeper: Vec<usize>,
    },
    /// Not yet, and some host has not claimed: look again.
    Wait,
    /// Too late: every host has left Claim.
    Missed,
}

/// When a fault is to land: at least `claiming` hosts in Claim, at least `in_zookeeper` of them with a session
/// ZooKeeper lists (their claims' ZooKeeper work under way), both seen at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    /// Hosts in Claim.
    pub claiming: usize,
    /// Of those, hosts with a session.
    pub in_zookeeper: usize,
}

/// [`Aim`] for hosts whose documents are `views` (None: not answering yet), `with_session` telling which of them
/// ZooKeeper lists a session from (read before the documents: a host that claims in between is not taken for
/// one still claiming).
pub fn aim(views: &[Option<StateView>], with_session: &[bool], want: Want) -> Aim {
    let claiming: Vec<usize> = views
        .iter()
        .enumerate()
        .filter(|(_, view)| view.as_ref().is_some_and(|view| view.state == CLAIM))
        .map(|(index, _)| index)
        .collect();
    let in_zookeeper: Vec<usize> = claiming
        .iter()
        .copied()
        .filter(|&index| with_session.get(index).copied().unwrap_or(false))
        .collect();
    if claiming.len() >= want.claiming && in_zookeeper.len() >= want.in_zookeeper {
        return Aim::Now {
            claiming,
            in_zookeeper,
        };
    }
    let all_claimed = views.iter().all(|view| {
        view.as_ref().is_some_and(|view| {
            view.state != CLAIM && view.timeline.iter().any(|entry| entry.state == CLAIM)
        })
    });
    if all_claimed {
        Aim::Missed
    } else {
        Aim::Wait
    }
}

/// The client addresses of the sessions a ZooKeeper server's `cons` answer lists (lines such as
/// ` /10.0.1.10:41234[1](queued=0,...,sid=0x1000...,...)`; the asking connection has no session id).
pub fn session_clients(answer: &str) -> Vec<std::net::IpAddr> {
    answer
        .lines()
        .filter(|line| line.contains("sid=0x"))
        .filter_map(|line| {
            let address = line.trim_start().strip_prefix('/')?;
            let address = &address[..address.find('[')?];
            address.parse::<std::net::SocketAddr>().ok().map(|a| a.ip())
        })
        .collect()
}

/// How a host's journal shows its claim's ZooKeeper work carried through a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CarriedThrough {
    /// Its session was disconnected after the fault, then connected again (or replaced by a new one).
    Reconnected,
    /// It was opening its session for a claim when the fault came: the client's connects failed after it
    /// (`failed` of them), then a session opened.
    ConnectRetried {
        /// Connect attempts that failed after the fault.
        failed: usize,
    },
}

/// What one journal entry says about the claim's ZooKeeper session, at which millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Claiming,
    Opened,
    Disconnected,
    Connected,
    ConnectFailed,
}

fn event(entry: &serde_json::Value) -> Option<(u64, Event)> {
    let at_us: u64 = entry["__REALTIME_TIMESTAMP"].as_str()?.parse().ok()?;
    let message = entry["MESSAGE"].as_str()?;
    let event = match (message, entry["STATE"].as_str()) {
        (CLAIMING_MESSAGE, _) => Event::Claiming,
        (SESSION_OPENED_MESSAGE, _) => Event::Opened,
        (SESSION_STATE_MESSAGE, Some("Disconnected")) => Event::Disconnected,
        (SESSION_STATE_MESSAGE, Some("SyncConnected")) => Event::Connected,
        (message, _) if message.starts_with(CONNECT_FAILED_MESSAGE) => Event::ConnectFailed,
        _ => return None,
    };
    Some((at_us / 1000, event))
}

/// Whether a host's berth journal (`journalctl -o json` entries, in order) shows its claim's ZooKeeper work
/// carried through a fault at `fault`, and how.
pub fn carried_through(entries: &[serde_json::Value], fault: Moment) -> Option<CarriedThrough> {
    let events: Vec<(u64, Event)> = entries.iter().filter_map(event).collect();
    let after: Vec<Event> = events
        .iter()
        .filter(|(at, _)| *at >= fault.earliest)
        .map(|(_, event)| *event)
        .collect();
    let lost = after.iter().position(|e| *e == Event::Disconnected);
    if lost.is_some_and(|lost| {
        after[lost..]
            .iter()
            .any(|e| matches!(e, Event::Connected | Event::Opened))
    }) {
        return Some(CarriedThrough::Reconnected);
    }
    // Claiming before the fault, with no session opened from then until the fault was over.
    let claiming = events
        .iter()
        .rposition(|(at, e)| *e == Event::Claiming && *at < fault.earliest)?;
    let connecting = events[claiming..]
        .iter()
        .all(|(at, e)| *e != Event::Opened || *at > fault.latest);
    let failed = after
        .iter()
        .take_while(|e| **e != Event::Opened)
        .filter(|e| **e == Event::ConnectFailed)
        .count();
    let opened = after.contains(&Event::Opened);
    (connecting && failed > 0 && opened).then_some(CarriedThrough::ConnectRetried { failed })
}

/// berth's message when its claim turns to the coordination backend (after EC2's inventory).
pub const CLAIMING_MESSAGE: &str = "claiming a broker id";

/// The message berth-zk logs each ZooKeeper session state change with (its `state` field the new state).
pub const SESSION_STATE_MESSAGE: &str = "ZooKeeper session state";

/// The message berth-zk logs when it has opened a new session.
pub const SESSION_OPENED_MESSAGE: &str = "ZooKeeper session opened";

/// How the ZooKeeper client (zookeeper-client 0.11) logs each failed attempt to open a session on a server.
pub const CONNECT_FAILED_MESSAGE: &str = "fails to establish session to ";

#[cfg(test)]
mod tests {
    use berth_sim::state::TimelineEntry;

    use super::*;

    fn view(state: &str, uptime_ms: u64, timeline: &[(&str, u64, u64)]) -> StateView {
        StateView {
            state: state.into(),
            uptime_ms,
            timeline: timeline
                .iter()
                .map(|&(state, entered_ms, duration_ms)| TimelineEntry {
                    state: state.into(),
                    entered_ms,
                    duration_ms,
                    attempts: 1,
                })
                .collect(),
            ..StateView::empty()
        }
    }

    fn moment(earliest: u64, latest: u64) -> Moment {
        Moment { earliest, latest }
    }

    #[test]
    fn places_a_timeline_on_the_wall_clock_within_the_read() {
        // Read between 10_000 and 10_020 with 5_000 ms uptime: the daemon started between 5_000 and 5_020.
        let v = view(
            "healthy",
            5_000,
            &[("claim", 10, 400), ("attach_eni", 410, 90)],
        );
        let claims = stays(3, &v, moment(10_000, 10_020), CLAIM);
        assert_eq!(
            claims,
            [Stay {
                host: 3,
                began: moment(5_010, 5_030),
                ended: moment(5_410, 5_430),
            }]
        );
        assert!(claims[0].surely_contains(moment(5_030, 5_410)));
        assert!(
            !claims[0].surely_contains(moment(5_029, 5_100)),
            "may precede the claim"
        );
        assert!(
            !claims[0].surely_contains(moment(5_100, 5_411)),
            "may outlast the claim"
        );
    }

    #[test]
    fn claims_overlap_only_when_one_instant_is_surely_in_all() {
        let stay = |host, began: u64, ended: u64| Stay {
            host,
            began: moment(began, began + 10),
            ended: moment(ended, ended + 10),
        };
        let together = [stay(0, 0, 500), stay(1, 100, 300), stay(2, 250, 900)];
        assert_eq!(common_instant(&together), Some(moment(260, 300)));
        let apart = [stay(0, 0, 500), stay(1, 495, 900)];
        assert_eq!(common_instant(&apart), None, "bounds blur the touch");
        assert_eq!(common_instant(&[]), None);
        assert_eq!(hosts_within(&together, moment(280, 290)), [0, 1, 2]);
        assert_eq!(hosts_within(&together, moment(400, 420)), [0, 2]);
        assert_eq!(
            hosts_within(&together, moment(950, 960)),
            Vec::<usize>::new()
        );
    }

    #[test]
    fn aims_while_enough_hosts_claim_some_in_zookeeper_and_knows_when_it_missed() {
        let claiming = Some(view("claim", 50, &[("claim", 0, 50)]));
        let claimed = Some(view(
            "attach_eni",
            90,
            &[("claim", 0, 60), ("attach_eni", 60, 30)],
        ));
        let starting = Some(view("starting", 1, &[]));
        let want = Want {
            claiming: 2,
            in_zookeeper: 1,
        };
        let two_claiming = [claiming.clone(), claimed.clone(), claiming.clone()];
        assert_eq!(
            aim(&two_claiming, &[false, true, true], want),
            Aim::Now {
                claiming: vec![0, 2],
                in_zookeeper: vec![2]
            }
        );
        assert_eq!(
            aim(&two_claiming, &[false, true, false], want),
            Aim::Wait,
            "the only session is a claimed host's"
        );
        assert_eq!(
            aim(&[claiming.clone(), claimed.clone(), None], &[true; 3], want),
            Aim::Wait
        );
        assert_eq!(
            aim(&[starting, claimed.clone()], &[true; 2], want),
            Aim::Wait
        );
        assert_eq!(
            aim(&[claimed.clone(), claimed], &[true; 2], want),
            Aim::Missed
        );
    }

    #[test]
    fn reads_the_session_clients_zookeeper_lists() {
        let cons = " /10.0.1.10:41234[1](queued=0,recved=5,sent=5,sid=0x100018,lop=PING,est=1,to=4000)\n \
                    /10.0.2.11:41000[1](queued=0,recved=2,sent=2,sid=0x100019,lop=CREA,est=1,to=4000)\n \
                    /10.0.0.1:5555[0](queued=0,recved=1,sent=0)\n\n";
        let ip = |text: &str| text.parse::<std::net::IpAddr>().expect("an address");
        assert_eq!(session_clients(cons), [ip("10.0.1.10"), ip("10.0.2.11")]);
        assert!(session_clients("").is_empty());
    }

    #[test]
    fn a_claim_carried_through_only_by_what_came_after_the_fault() {
        let entry = |at_ms: u64, message: &str, state: Option<&str>| {
            let mut entry = serde_json::json!({
                "MESSAGE": message,
                "__REALTIME_TIMESTAMP": (at_ms * 1000).to_string(),
            });
            if let Some(state) = state {
                entry["STATE"] = state.into();
            }
            entry
        };
        let fault = moment(2_000, 2_010);
        let failed = "fails to establish session to tcp://10.0.0.11:2181 due to connection lost";
        let retried = [
            entry(1_500, CLAIMING_MESSAGE, None),
            entry(2_100, failed, None),
            entry(2_200, failed, None),
            entry(2_900, SESSION_OPENED_MESSAGE, None),
        ];
        assert_eq!(
            carried_through(&retried, fault),
            Some(CarriedThrough::ConnectRetried { failed: 2 })
        );
        assert_eq!(carried_through(&retried[..3], fault), None, "never opened");
        let no_failure = [retried[0].clone(), retried[3].clone()];
        assert_eq!(carried_through(&no_failure, fault), None, "no retry seen");
        let late = moment(1_400, 1_410);
        assert_eq!(
            carried_through(&retried, late),
            None,
            "claimed after the fault"
        );
        let had_session = [
            entry(1_500, CLAIMING_MESSAGE, None),
            entry(1_600, SESSION_OPENED_MESSAGE, None),
            entry(2_100, failed, None),
            entry(2_900, SESSION_OPENED_MESSAGE, None),
        ];
        assert_eq!(
            carried_through(&had_session, fault),
            None,
            "its session predates the fault and was not lost"
        );
        let lost = [
            entry(1_600, SESSION_OPENED_MESSAGE, None),
            entry(2_050, SESSION_STATE_MESSAGE, Some("Disconnected")),
            entry(2_900, SESSION_STATE_MESSAGE, Some("SyncConnected")),
        ];
        assert_eq!(
            carried_through(&lost, fault),
            Some(CarriedThrough::Reconnected)
        );
        assert_eq!(
            carried_through(&lost[..2], fault),
            None,
            "never connected again"
        );
        assert_eq!(
            carried_through(&lost, moment(2_060, 2_070)),
            None,
            "lost before the fault"
        );
    }
}
