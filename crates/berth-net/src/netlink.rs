//! [`NetlinkNetwork`]: the [`Network`] port over one rtnetlink socket.
//!
//! One socket, opened in the namespace of the thread that creates the adapter, carries both requests and the
//! link event subscription (RTNLGRP_LINK). A background task forwards every new-link event to a broadcast
//! channel; a waiter subscribes to it *before* it dumps the links, so a link that appears between the dump and
//! the wait is still seen (no race, no polling). Every request goes through one function that logs it, so a
//! configuration reports exactly which netlink requests it made.

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Instant;

use async_trait::async_trait;
use berth_core::facts::{MacAddr, RoutePlan};
use berth_core::{Deadline, Network, StepError};
use futures::StreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST,
};
use rtnetlink::{Handle, MulticastGroup};
use tokio::sync::broadcast;
use tokio::task::AbortHandle;

use crate::error::NetError;
use crate::state::{
    diff, host_net, subnet, teardown_actions, Action, AddressEntry, Link, RouteEntry,
    RouteObservation, RouteRole, Snapshot,
};

const EEXIST: i32 = 17;
const ENOENT: i32 = 2;
const ESRCH: i32 = 3;
const EADDRNOTAVAIL: i32 = 99;

/// Link events kept for slow waiters before they must re-dump.
const LINK_EVENT_BUFFER: usize = 256;

/// One netlink request as sent, for logs and reports: its message type and what it asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetlinkRequest {
    /// Message type, e.g. `RTM_NEWROUTE`.
    pub kind: &'static str,
    /// What it asked for, in `ip`'s words.
    pub detail: String,
    /// How the kernel answered: `ok`, or the tolerated errno (`EEXIST` on an add that raced).
    pub outcome: &'static str,
}

impl fmt::Display for NetlinkRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} -> {}", self.kind, self.detail, self.outcome)
    }
}

/// What one `configure` did: the link it routed and every netlink request it made, reads included.
#[derive(Debug, Clone)]
pub struct Configured {
    /// The ENI's link.
    pub link: Link,
    /// The requests, in order.
    pub requests: Vec<NetlinkRequest>,
    /// How many of them changed something (zero when everything was already right).
    pub changes: usize,
}

/// The real [`Network`] adapter: rtnetlink in the namespace it was created in.
pub struct NetlinkNetwork {
    handle: Handle,
    links: broadcast::Sender<LinkMessage>,
    tasks: Vec<AbortHandle>,
}

impl Drop for NetlinkNetwork {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl NetlinkNetwork {
    /// Opens the rtnetlink socket in the calling thread's network namespace, subscribed to link events, and
    /// spawns its driver on the current tokio runtime (which must exist).
    pub fn new() -> Result<Self, NetError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| NetError::NoRuntime)?;
        let (connection, handle, mut messages) =
            rtnetlink::new_multicast_connection(&[MulticastGroup::Link])
                .map_err(NetError::Socket)?;
        let (links, _) = broadcast::channel(LINK_EVENT_BUFFER);
        let sender = links.clone();
        let driver = runtime.spawn(connection).abort_handle();
        let forwarder = runtime
            .spawn(async move {
                while let Some((message, _)) = messages.next().await {
                    if let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) =
                        message.payload
                    {
                        // No subscriber is fine: nobody is waiting.
                        let _ = sender.send(link);
                    }
                }
            })
            .abort_handle();
        Ok(Self {
            handle,
            links,
            tasks: vec![driver, forwarder],
        })
    }

    /// Sends one request, logs it, and collects the messages it returns. `tolerated` errnos end the request
    /// without error and are recorded as its outcome.
    async fn request(
        &self,
        log: &mut Vec<NetlinkRequest>,
        kind: &'static str,
        detail: String,
        message: RouteNetlinkMessage,
        flags: u16,
        tolerated: &[(i32, &'static str)],
    ) -> Result<Vec<RouteNetlinkMessage>, NetError> {
        let mut request = NetlinkMessage::from(message);
        request.header.flags = flags;
        let mut handle = self.handle.clone();
        let mut responses = handle
            .request(request)
            .map_err(|source| NetError::Connection {
                request: format!("{kind} {detail}"),
                source,
            })?;
        let mut replies = Vec::new();
        let mut outcome = "ok";
        while let Some(response) = responses.next().await {
            match response.payload {
                NetlinkPayload::InnerMessage(inner) => replies.push(inner),
                NetlinkPayload::Error(error) if error.code.is_some() => {
                    let errno = error.raw_code().abs();
                    if let Some((_, name)) = tolerated.iter().find(|(code, _)| *code == errno) {
                        outcome = name;
                        break;
                    }
                    log.push(NetlinkRequest {
                        kind,
                        detail: detail.clone(),
                        outcome: "error",
                    });
                    return Err(NetError::Kernel {
                        request: format!("{kind} {detail}"),
                        errno,
                        source: error.to_io(),
                    });
                }
                _ => {}
            }
        }
        log.push(NetlinkRequest {
            kind,
            detail,
            outcome,
        });
        Ok(replies)
    }

    /// Dumps all links and returns the one with this MAC (the lowest index when several share it).
    async fn find_link(
        &self,
        mac: MacAddr,
        log: &mut Vec<NetlinkRequest>,
    ) -> Result<Option<Link>, NetError> {
        let replies = self
            .request(
                log,
                "RTM_GETLINK",
                "dump".to_owned(),
                RouteNetlinkMessage::GetLink(LinkMessage::default()),
                NLM_F_REQUEST | NLM_F_DUMP,
                &[],
            )
            .await?;
        Ok(replies
            .iter()
            .filter_map(|reply| match reply {
                RouteNetlinkMessage::NewLink(message) => Link::from_message(message),
                _ => None,
            })
            .filter(|link| link.mac == mac)
            .min_by_key(|link| link.index))
    }

    /// Returns the link with this MAC, waiting for it to appear (link events) until the deadline.
    pub async fn wait_link(
        &self,
        mac: MacAddr,
        deadline: Deadline,
        log: &mut Vec<NetlinkRequest>,
    ) -> Result<Link, NetError> {
        let started = Instant::now();
        let mut events = self.links.subscribe();
        loop {
            if let Some(link) = self.find_link(mac, log).await? {
                return Ok(link);
            }
            loop {
                let event = tokio::time::timeout_at(deadline.0.into(), events.recv()).await;
                match event {
                    Err(_elapsed) => {
                        return Err(NetError::LinkTimeout {
                            mac,
                            waited_ms: started.elapsed().as_millis(),
                        })
                    }
                    Ok(Ok(message)) => {
                        if let Some(link) =
                            Link::from_message(&message).filter(|link| link.mac == mac)
                        {
                            return Ok(link);
                        }
                    }
                    // Events were dropped: look again.
                    Ok(Err(broadcast::error::RecvError::Lagged(_))) => break,
                    Ok(Err(broadcast::error::RecvError::Closed)) => {
                        return Err(NetError::EventsClosed { mac })
                    }
                }
            }
        }
    }

    /// Dumps the IPv4 addresses, routes (all tables) and rules.
    async fn snapshot(&self, log: &mut Vec<NetlinkRequest>) -> Result<Snapshot, NetError> {
        let mut address_request = AddressMessage::default();
        address_request.header.family = AddressFamily::Inet;
        let mut route_request = RouteMessage::default();
        route_request.header.address_family = AddressFamily::Inet;
        let mut rule_request = RuleMessage::default();
        rule_request.header.family = AddressFamily::Inet;
        let dumps = [
            (
                "RTM_GETADDR",
                "dump inet",
                RouteNetlinkMessage::GetAddress(address_request),
            ),
            (
                "RTM_GETROUTE",
                "dump inet, all tables",
                RouteNetlinkMessage::GetRoute(route_request),
            ),
            (
                "RTM_GETRULE",
                "dump inet",
                RouteNetlinkMessage::GetRule(rule_request),
            ),
        ];
        let mut replies = Vec::new();
        for (kind, detail, message) in dumps {
            let flags = NLM_F_REQUEST | NLM_F_DUMP;
            replies.extend(
                self.request(log, kind, detail.into(), message, flags, &[])
                    .await?,
            );
        }
        Ok(Snapshot {
            addresses: replies
                .iter()
                .filter_map(|reply| match reply {
                    RouteNetlinkMessage::NewAddress(message) => AddressEntry::from_message(message),
                    _ => None,
                })
                .collect(),
            routes: replies
                .iter()
                .filter_map(|reply| match reply {
                    RouteNetlinkMessage::NewRoute(message) => RouteEntry::from_message(message),
                    _ => None,
                })
                .collect(),
            rules: replies
                .iter()
                .filter_map(|reply| match reply {
                    RouteNetlinkMessage::NewRule(message) => {
                        crate::state::RuleEntry::from_message(message)
                    }
                    _ => None,
                })
                .collect(),
        })
    }

    /// Reports whether the plan's link, address, routes and rule are present and right, changing nothing.
    pub async fn observe(&self, plan: &RoutePlan) -> Result<RouteObservation, NetError> {
        let mut log = Vec::new();
        let link = self.find_link(plan.mac, &mut log).await?;
        let snapshot = self.snapshot(&mut log).await?;
        Ok(diff(plan, link.as_ref(), &snapshot).0)
    }

    /// Configures the plan (waiting for its link until the deadline), then reads everything back and fails
    /// unless it is all right. Returns every request made.
    pub async fn apply(
        &self,
        plan: &RoutePlan,
        deadline: Deadline,
    ) -> Result<Configured, NetError> {
        if plan.mac == plan.primary_mac {
            return Err(NetError::PrimaryInterface {
                mac: plan.primary_mac,
            });
        }
        let work = async {
            let mut log = Vec::new();
            let link = self.wait_link(plan.mac, deadline, &mut log).await?;
            let snapshot = self.snapshot(&mut log).await?;
            let (_, actions) = diff(plan, Some(&link), &snapshot);
            for action in &actions {
                self.execute(plan, &link, action, &mut log).await?;
            }
            let changes = actions.len();
            if changes > 0 {
                let link = self.find_link(plan.mac, &mut log).await?;
                let snapshot = self.snapshot(&mut log).await?;
                let (observation, _) = diff(plan, link.as_ref(), &snapshot);
                if !observation.is_routed() {
                    return Err(NetError::NotConverged {
                        mac: plan.mac,
                        detail: observation.problems(),
                    });
                }
            }
            Ok(Configured {
                link,
                requests: log,
                changes,
            })
        };
        tokio::time::timeout_at(deadline.0.into(), work)
            .await
            .unwrap_or(Err(NetError::Deadline { mac: plan.mac }))
    }

    /// Removes exactly what [`apply`](Self::apply) installs; absent pieces are fine. Returns the requests made.
    pub async fn remove(&self, plan: &RoutePlan) -> Result<Vec<NetlinkRequest>, NetError> {
        if plan.mac == plan.primary_mac {
            return Err(NetError::PrimaryInterface {
                mac: plan.primary_mac,
            });
        }
        let mut log = Vec::new();
        let link = self.find_link(plan.mac, &mut log).await?;
        let snapshot = self.snapshot(&mut log).await?;
        let actions = teardown_actions(plan, link.as_ref(), &snapshot);
        // Without the link only its rule is left to remove, and a rule needs no link.
        let link = link.unwrap_or_else(|| Link {
            name: "(gone)".to_owned(),
            index: 0,
            mac: plan.mac,
            up: false,
        });
        for action in &actions {
            self.execute(plan, &link, action, &mut log).await?;
        }
        Ok(log)
    }

    /// Sends the request that performs one action.
    async fn execute(
        &self,
        plan: &RoutePlan,
        link: &Link,
        action: &Action,
        log: &mut Vec<NetlinkRequest>,
    ) -> Result<(), NetError> {
        let request = action_request(plan, link, action);
        let (flags, tolerated): (u16, &[(i32, &'static str)]) = match request.change {
            Change::Set => (NLM_F_REQUEST | NLM_F_ACK, &[]),
            Change::Add => (
                NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
                &[(EEXIST, "EEXIST, already present")],
            ),
            Change::Delete => (
                NLM_F_REQUEST | NLM_F_ACK,
                &[
                    (ENOENT, "ENOENT, already gone"),
                    (ESRCH, "ESRCH, already gone"),
                    (EADDRNOTAVAIL, "EADDRNOTAVAIL, already gone"),
                ],
            ),
        };
        self.request(
            log,
            request.kind,
            request.detail,
            request.message,
            flags,
            tolerated,
        )
        .await?;
        Ok(())
    }
}

/// What a request does to its object, which decides its flags and which errors mean "already done".
enum Change {
    /// Changes an object in place (link up or down).
    Set,
    /// Creates it: EEXIST means already present.
    Add,
    /// Deletes it: ENOENT, ESRCH and EADDRNOTAVAIL mean already gone.
    Delete,
}

/// The netlink request of one action.
struct ActionRequest {
    kind: &'static str,
    detail: String,
    message: RouteNetlinkMessage,
    change: Change,
}

/// Builds the request that performs `action`. Pure.
fn action_request(plan: &RoutePlan, link: &Link, action: &Action) -> ActionRequest {
    let request = |kind, detail, message, change| ActionRequest {
        kind,
        detail,
        message,
        change,
    };
    match action {
        Action::SetLink(up) => {
            let mut message = LinkMessage::default();
            message.header.index = link.index;
            message.header.change_mask = LinkFlags::Up;
            if *up {
                message.header.flags = LinkFlags::Up;
            }
            let detail = format!("dev {} {}", link.name, if *up { "up" } else { "down" });
            let message = RouteNetlinkMessage::SetLink(message);
            request("RTM_SETLINK", detail, message, Change::Set)
        }
        Action::AddAddress => {
            let message = address_message(link.index, plan.address, true);
            let detail = format!("{} dev {} noprefixroute", plan.address, link.name);
            let message = RouteNetlinkMessage::NewAddress(message);
            request("RTM_NEWADDR", detail, message, Change::Add)
        }
        Action::DeleteAddress(entry) => {
            let message = address_message(entry.index, entry.address, false);
            let detail = format!("{} dev {}", entry.address, link.name);
            let message = RouteNetlinkMessage::DelAddress(message);
            request("RTM_DELADDR", detail, message, Change::Delete)
        }
        Action::AddRoute(role) => {
            let (message, detail) = planned_route(plan, link, *role);
            let message = RouteNetlinkMessage::NewRoute(message);
            request("RTM_NEWROUTE", detail, message, Change::Add)
        }
        Action::DeleteRoute(entry) => {
            let (message, detail) = route_key(entry);
            let message = RouteNetlinkMessage::DelRoute(message);
            request("RTM_DELROUTE", detail, message, Change::Delete)
        }
        Action::AddRule => {
            let (message, detail) = planned_rule(plan);
            let message = RouteNetlinkMessage::NewRule(message);
            request("RTM_NEWRULE", detail, message, Change::Add)
        }
        Action::DeleteRule(entry) => {
            let source = entry
                .source
                .map(|net| net.to_string())
                .unwrap_or_else(|| "all".to_owned());
            let detail = format!(
                "from {source} priority {} lookup {} action {:?}",
                entry.priority, entry.table, entry.action
            );
            let message = RouteNetlinkMessage::DelRule(entry.message.clone());
            request("RTM_DELRULE", detail, message, Change::Delete)
        }
    }
}

/// An IPv4 address message; `new` adds the broadcast address and `noprefixroute` (the subnet route belongs in the
/// ENI's table only: a second main-table route to the subnet via the ENI would send the primary address's
/// traffic out of the wrong interface, which EC2's source/destination check drops).
fn address_message(index: u32, address: ipnet::Ipv4Net, new: bool) -> AddressMessage {
    let (ip, prefix_len) = (address.addr(), address.prefix_len());
    let mut message = AddressMessage::default();
    message.header.family = AddressFamily::Inet;
    message.header.prefix_len = prefix_len;
    message.header.index = index;
    message.attributes.push(AddressAttribute::Local(ip.into()));
    message
        .attributes
        .push(AddressAttribute::Address(ip.into()));
    if new {
        if prefix_len < 31 {
            let broadcast = Ipv4Addr::from(u32::from(ip) | (u32::MAX >> prefix_len));
            message
                .attributes
                .push(AddressAttribute::Broadcast(broadcast));
        }
        message
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Noprefixroute));
    }
    message
}

/// A route message addressed to `table` (ids above 255 travel in RTA_TABLE, as iproute2 sends them).
fn route_base(table: u32, destination: ipnet::Ipv4Net) -> RouteMessage {
    let mut message = RouteMessage::default();
    message.header.address_family = AddressFamily::Inet;
    message.header.destination_prefix_length = destination.prefix_len();
    message.header.table = u8::try_from(table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
    message.attributes.push(RouteAttribute::Table(table));
    if destination.prefix_len() > 0 {
        message
            .attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(
                destination.addr(),
            )));
    }
    message
}

/// One of the plan's two routes.
fn planned_route(plan: &RoutePlan, link: &Link, role: RouteRole) -> (RouteMessage, String) {
    let destination = match role {
        RouteRole::Subnet => subnet(plan),
        RouteRole::Default => ipnet::Ipv4Net::default(),
    };
    let mut message = route_base(plan.table, destination);
    message.header.protocol = RouteProtocol::Static;
    message.header.kind = RouteType::Unicast;
    message.attributes.push(RouteAttribute::Oif(link.index));
    let detail = match role {
        RouteRole::Subnet => {
            message.header.scope = RouteScope::Link;
            format!(
                "{destination} dev {} scope link table {}",
                link.name, plan.table
            )
        }
        RouteRole::Default => {
            message.header.scope = RouteScope::Universe;
            message
                .attributes
                .push(RouteAttribute::Gateway(RouteAddress::Inet(plan.gateway)));
            format!(
                "default via {} dev {} table {}",
                plan.gateway, link.name, plan.table
            )
        }
    };
    (message, detail)
}

/// The fields that identify an existing route for deletion (scope "nowhere" and type/protocol unspec match any).
fn route_key(entry: &RouteEntry) -> (RouteMessage, String) {
    let mut message = route_base(entry.table, entry.destination);
    message.header.scope = RouteScope::NoWhere;
    let mut detail = format!("{} table {}", entry.destination, entry.table);
    if let Some(gateway) = entry.gateway {
        message
            .attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        detail.push_str(&format!(" via {gateway}"));
    }
    if let Some(oif) = entry.oif {
        message.attributes.push(RouteAttribute::Oif(oif));
        detail.push_str(&format!(" oif {oif}"));
    }
    if let Some(metric) = entry.priority {
        message.attributes.push(RouteAttribute::Priority(metric));
        detail.push_str(&format!(" metric {metric}"));
    }
    (message, detail)
}

/// `from <ip>/32 lookup <table> priority <priority>`, action to-table (the default, unspec, black-holes).
fn planned_rule(plan: &RoutePlan) -> (RuleMessage, String) {
    let source = host_net(plan.address.addr());
    let mut message = RuleMessage::default();
    message.header.family = AddressFamily::Inet;
    message.header.src_len = 32;
    message.header.action = RuleAction::ToTable;
    message.header.table = u8::try_from(plan.table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
    message
        .attributes
        .push(RuleAttribute::Source(source.addr().into()));
    message.attributes.push(RuleAttribute::Table(plan.table));
    message
        .attributes
        .push(RuleAttribute::Priority(plan.rule_priority));
    let detail = format!(
        "from {source} lookup {} priority {} action to-table",
        plan.table, plan.rule_priority
    );
    (message, detail)
}

#[async_trait]
impl Network for NetlinkNetwork {
    async fn wait_for_link(
        &self,
        mac: MacAddr,
        deadline: Deadline,
    ) -> Result<(String, u32), StepError> {
        let link = self.wait_link(mac, deadline, &mut Vec::new()).await?;
        Ok((link.name, link.index))
    }

    async fn configure(&self, plan: &RoutePlan, deadline: Deadline) -> Result<(), StepError> {
        let configured = self.apply(plan, deadline).await?;
        tracing::info!(
            mac = %plan.mac,
            link = %configured.link.name,
            address = %plan.address,
            table = plan.table,
            changes = configured.changes,
            requests = configured.requests.len(),
            "policy routing configured"
        );
        for request in &configured.requests {
            tracing::debug!(mac = %plan.mac, %request, "netlink request");
        }
        Ok(())
    }

    async fn teardown(&self, plan: &RoutePlan) -> Result<(), StepError> {
        let requests = self.remove(plan).await?;
        tracing::info!(mac = %plan.mac, address = %plan.address, requests = requests.len(), "policy routing removed");
        Ok(())
    }
}
