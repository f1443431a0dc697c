//! What the kernel holds, parsed from rtnetlink dumps, compared with a [`RoutePlan`]: pure functions.
//!
//! Deciding is separate from doing so that the idempotence rules (right is left alone, wrong is replaced,
//! foreign state is never touched) are unit-tested without privileges, and so that observation for a restarted
//! daemon or `berth plan` is the very same comparison configure uses.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use berth_core::facts::{MacAddr, RoutePlan};
use ipnet::Ipv4Net;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::AddressFamily;
use serde::Serialize;

/// A network link as berth needs to know it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    /// Interface name, e.g. `eth1`.
    pub name: String,
    /// Interface index.
    pub index: u32,
    /// Its MAC.
    pub mac: MacAddr,
    /// Whether it is administratively up.
    pub up: bool,
}

impl Link {
    /// Parses a link message; `None` when it carries no 6-byte hardware address.
    pub fn from_message(message: &LinkMessage) -> Option<Link> {
        let mut mac = None;
        let mut name = None;
        for attribute in &message.attributes {
            match attribute {
                LinkAttribute::Address(bytes) => {
                    mac = <[u8; 6]>::try_from(bytes.as_slice()).ok().map(MacAddr);
                }
                LinkAttribute::IfName(text) => name = Some(text.clone()),
                _ => {}
            }
        }
        Some(Link {
            name: name.unwrap_or_default(),
            index: message.header.index,
            mac: mac?,
            up: message.header.flags.contains(LinkFlags::Up),
        })
    }
}

/// `Some` for IPv4 and `None` for every other family, which the parsers below skip with `?`.
fn ipv4(family: AddressFamily) -> Option<()> {
    (family == AddressFamily::Inet).then_some(())
}

/// One IPv4 address on a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressEntry {
    /// Link index.
    pub index: u32,
    /// The local address with its prefix length.
    pub address: Ipv4Net,
}

impl AddressEntry {
    /// Parses an address message; `None` for other families.
    pub fn from_message(message: &AddressMessage) -> Option<AddressEntry> {
        ipv4(message.header.family)?;
        let (mut local, mut address) = (None, None);
        for attribute in &message.attributes {
            match attribute {
                AddressAttribute::Local(IpAddr::V4(ip)) => local = local.or(Some(*ip)),
                AddressAttribute::Address(IpAddr::V4(ip)) => address = address.or(Some(*ip)),
                _ => {}
            }
        }
        let ip = local.or(address)?;
        Some(AddressEntry {
            index: message.header.index,
            address: Ipv4Net::new(ip, message.header.prefix_len).ok()?,
        })
    }
}

/// One IPv4 route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    /// Routing table id.
    pub table: u32,
    /// Destination prefix.
    pub destination: Ipv4Net,
    /// Next hop, when there is one.
    pub gateway: Option<Ipv4Addr>,
    /// Output link index.
    pub oif: Option<u32>,
    /// Route scope.
    pub scope: RouteScope,
    /// Route type (unicast, local, blackhole, ...).
    pub kind: RouteType,
    /// Metric, when set.
    pub priority: Option<u32>,
    /// Who installed it (berth installs `static`).
    pub protocol: RouteProtocol,
}

impl RouteEntry {
    /// Parses a route message; `None` for other families.
    pub fn from_message(message: &RouteMessage) -> Option<RouteEntry> {
        ipv4(message.header.address_family)?;
        let mut table = u32::from(message.header.table);
        let mut destination = Ipv4Addr::UNSPECIFIED;
        let mut entry = RouteEntry {
            table: 0,
            destination: Ipv4Net::default(),
            gateway: None,
            oif: None,
            scope: message.header.scope,
            kind: message.header.kind,
            priority: None,
            protocol: message.header.protocol,
        };
        for attribute in &message.attributes {
            match attribute {
                RouteAttribute::Table(id) => table = *id,
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => destination = *ip,
                RouteAttribute::Gateway(RouteAddress::Inet(ip)) => entry.gateway = Some(*ip),
                RouteAttribute::Oif(index) => entry.oif = Some(*index),
                RouteAttribute::Priority(metric) => entry.priority = Some(*metric),
                _ => {}
            }
        }
        entry.table = table;
        entry.destination =
            Ipv4Net::new(destination, message.header.destination_prefix_length).ok()?;
        Some(entry)
    }
}

/// One IPv4 policy rule, kept with its message so that deleting it sends back exactly what the kernel showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleEntry {
    /// Priority (the kernel always reports one).
    pub priority: u32,
    /// Table it looks up.
    pub table: u32,
    /// Source selector.
    pub source: Option<Ipv4Net>,
    /// Action (to-table, blackhole, unspec, ...).
    pub action: RuleAction,
    /// True when it selects on anything besides the source (destination, interface, mark, ...).
    pub other_selectors: bool,
    /// The message as dumped.
    pub message: RuleMessage,
}

impl RuleEntry {
    /// Parses a rule message; `None` for other families.
    pub fn from_message(message: &RuleMessage) -> Option<RuleEntry> {
        ipv4(message.header.family)?;
        let mut entry = RuleEntry {
            priority: 0,
            table: u32::from(message.header.table),
            source: None,
            action: message.header.action,
            other_selectors: message.header.dst_len != 0 || message.header.tos != 0,
            message: message.clone(),
        };
        for attribute in &message.attributes {
            match attribute {
                RuleAttribute::Priority(priority) => entry.priority = *priority,
                RuleAttribute::Table(table) => entry.table = *table,
                RuleAttribute::Source(IpAddr::V4(ip)) => {
                    entry.source = Ipv4Net::new(*ip, message.header.src_len).ok();
                }
                RuleAttribute::Destination(_)
                | RuleAttribute::Iifname(_)
                | RuleAttribute::Oifname(_)
                | RuleAttribute::FwMark(_)
                | RuleAttribute::IpProtocol(_)
                | RuleAttribute::SourcePortRange(_)
                | RuleAttribute::DestinationPortRange(_)
                | RuleAttribute::UidRange(_) => entry.other_selectors = true,
                _ => {}
            }
        }
        Some(entry)
    }
}

/// The kernel's IPv4 addresses, routes and rules at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// All IPv4 addresses.
    pub addresses: Vec<AddressEntry>,
    /// All IPv4 routes of all tables.
    pub routes: Vec<RouteEntry>,
    /// All IPv4 rules.
    pub rules: Vec<RuleEntry>,
}

/// How one piece of the plan stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "found")]
pub enum Check {
    /// Present and as planned.
    Right,
    /// Absent.
    Missing,
    /// Something else holds its place (described).
    Wrong(String),
}

impl Check {
    /// True when as planned.
    pub fn is_right(&self) -> bool {
        *self == Check::Right
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Check::Right => f.write_str("right"),
            Check::Missing => f.write_str("missing"),
            Check::Wrong(found) => write!(f, "wrong ({found})"),
        }
    }
}

/// Whether the ENI's link and each piece of its policy routing are present and right: what a restarted daemon
/// in Route and `berth plan` need to know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteObservation {
    /// The link with the plan's MAC, when present.
    pub link: Option<Link>,
    /// The ENI address with the subnet's prefix on that link.
    pub address: Check,
    /// The subnet route (scope link) in the ENI's table.
    pub subnet_route: Check,
    /// The default route via the gateway in the ENI's table.
    pub default_route: Check,
    /// `from <ip>/32 lookup <table>` at the plan's priority, action to-table.
    pub rule: Check,
}

impl RouteObservation {
    /// True when the link is up and everything is right: nothing to do.
    pub fn is_routed(&self) -> bool {
        self.link.as_ref().is_some_and(|link| link.up)
            && self.address.is_right()
            && self.subnet_route.is_right()
            && self.default_route.is_right()
            && self.rule.is_right()
    }

    /// A one-line description of everything that is not right (empty when routed).
    pub fn problems(&self) -> String {
        let mut problems = Vec::new();
        match &self.link {
            None => problems.push("link missing".to_owned()),
            Some(link) if !link.up => problems.push(format!("link {} down", link.name)),
            Some(_) => {}
        }
        for (name, check) in [
            ("address", &self.address),
            ("subnet route", &self.subnet_route),
            ("default route", &self.default_route),
            ("rule", &self.rule),
        ] {
            if !check.is_right() {
                problems.push(format!("{name} {check}"));
            }
        }
        problems.join(", ")
    }
}

/// Which of the two routes of the ENI's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteRole {
    /// `<subnet> dev <eni> scope link`.
    Subnet,
    /// `default via <gateway> dev <eni>`.
    Default,
}

/// One change to make, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Set the link administratively up (`true`) or down.
    SetLink(bool),
    /// Remove this address from the ENI link.
    DeleteAddress(AddressEntry),
    /// Add the plan's address to the ENI link.
    AddAddress,
    /// Remove this route.
    DeleteRoute(RouteEntry),
    /// Add one of the plan's routes.
    AddRoute(RouteRole),
    /// Remove this rule.
    DeleteRule(RuleEntry),
    /// Add the plan's rule.
    AddRule,
}

/// The subnet the plan's address lies in.
pub fn subnet(plan: &RoutePlan) -> Ipv4Net {
    plan.address.trunc()
}

fn describe_route(route: &RouteEntry) -> String {
    let mut text = format!("{}", route.destination);
    if let Some(gateway) = route.gateway {
        text.push_str(&format!(" via {gateway}"));
    }
    if let Some(oif) = route.oif {
        text.push_str(&format!(" oif {oif}"));
    }
    text.push_str(&format!(" scope {:?} type {:?}", route.scope, route.kind));
    if let Some(metric) = route.priority {
        text.push_str(&format!(" metric {metric}"));
    }
    text
}

fn describe_rule(rule: &RuleEntry) -> String {
    format!(
        "priority {} from {} lookup {} action {:?}{}",
        rule.priority,
        rule.source
            .map(|net| net.to_string())
            .unwrap_or_else(|| "all".to_owned()),
        rule.table,
        rule.action,
        if rule.other_selectors {
            " with other selectors"
        } else {
            ""
        }
    )
}

/// Whether a route does the planned route's job. Its metric and installer do not matter (a host that also runs
/// amazon-ec2-net-utils installs the same routes with a metric, and the two must not fight).
fn route_is_right(plan: &RoutePlan, link: &Link, role: RouteRole, route: &RouteEntry) -> bool {
    let common = route.kind == RouteType::Unicast && route.oif == Some(link.index);
    match role {
        RouteRole::Subnet => common && route.gateway.is_none() && route.scope == RouteScope::Link,
        RouteRole::Default => {
            common && route.gateway == Some(plan.gateway) && route.scope == RouteScope::Universe
        }
    }
}

fn role_destination(plan: &RoutePlan, role: RouteRole) -> Ipv4Net {
    match role {
        RouteRole::Subnet => subnet(plan),
        RouteRole::Default => Ipv4Net::default(),
    }
}

fn rule_is_right(plan: &RoutePlan, rule: &RuleEntry) -> bool {
    rule.priority == plan.rule_priority
        && rule.table == plan.table
        && rule.action == RuleAction::ToTable
        && !rule.other_selectors
        && rule.source == Some(host_net(plan.address.addr()))
}

/// The rules that claim the plan's place: same source address (/32) at the plan's priority or pointing at its
/// table. Rules from other addresses, or from this address at other priorities into other tables, are foreign.
fn rule_in_place(plan: &RoutePlan, rule: &RuleEntry) -> bool {
    rule.source == Some(host_net(plan.address.addr()))
        && (rule.priority == plan.rule_priority || rule.table == plan.table)
}

/// `ip/32`.
pub fn host_net(ip: Ipv4Addr) -> Ipv4Net {
    Ipv4Net::new(ip, 32).unwrap_or_default()
}

/// Compares the kernel's state with the plan: the observation and the changes that make it right, in the order
/// they must be made (link, address, subnet route, default route, rule last so traffic from the address turns to
/// the table only once the table is complete). What is right is left alone; what holds the plan's place wrongly
/// is deleted before the right thing is added; anything else is not berth's and never touched.
pub fn diff(
    plan: &RoutePlan,
    link: Option<&Link>,
    snapshot: &Snapshot,
) -> (RouteObservation, Vec<Action>) {
    let mut comparison = Comparison {
        plan,
        link,
        snapshot,
        actions: Vec::new(),
    };
    let address = comparison.address();
    let subnet_route = comparison.route(RouteRole::Subnet);
    let default_route = comparison.route(RouteRole::Default);
    let rule = comparison.rule();
    let mut actions = comparison.actions;
    if link.is_some_and(|link| !link.up) {
        actions.insert(0, Action::SetLink(true));
    }
    let observation = RouteObservation {
        link: link.cloned(),
        address,
        subnet_route,
        default_route,
        rule,
    };
    (observation, actions)
}

/// One [`diff`]: what it compares, and the changes it collects in order.
struct Comparison<'a> {
    plan: &'a RoutePlan,
    link: Option<&'a Link>,
    snapshot: &'a Snapshot,
    actions: Vec<Action>,
}

impl Comparison<'_> {
    /// The ENI's address: a same-IP address with another prefix is replaced.
    fn address(&mut self) -> Check {
        let Some(link) = self.link else {
            return Check::Missing;
        };
        let ip = self.plan.address.addr();
        let same_ip: Vec<&AddressEntry> = self
            .snapshot
            .addresses
            .iter()
            .filter(|entry| entry.index == link.index && entry.address.addr() == ip)
            .collect();
        if same_ip
            .iter()
            .any(|entry| entry.address == self.plan.address)
        {
            return Check::Right;
        }
        self.actions.extend(
            same_ip
                .iter()
                .map(|entry| Action::DeleteAddress((*entry).clone())),
        );
        self.actions.push(Action::AddAddress);
        match same_ip.first() {
            Some(wrong) => Check::Wrong(wrong.address.to_string()),
            None => Check::Missing,
        }
    }

    /// One of the table's two routes: wrong ones at its destination are deleted before the right one is added.
    fn route(&mut self, role: RouteRole) -> Check {
        let Some(link) = self.link else {
            return Check::Missing;
        };
        let plan = self.plan;
        let destination = role_destination(plan, role);
        let in_place = self
            .snapshot
            .routes
            .iter()
            .filter(|route| route.table == plan.table && route.destination == destination);
        let (right, wrong): (Vec<&RouteEntry>, Vec<&RouteEntry>) =
            in_place.partition(|route| route_is_right(plan, link, role, route));
        self.actions.extend(
            wrong
                .iter()
                .map(|route| Action::DeleteRoute((*route).clone())),
        );
        if right.is_empty() {
            self.actions.push(Action::AddRoute(role));
        }
        judged(!right.is_empty(), wrong.first().copied(), describe_route)
    }

    /// The rule, last: judged even without the link (a rule survives it), changed only with it.
    fn rule(&mut self) -> Check {
        let plan = self.plan;
        let in_place = self
            .snapshot
            .rules
            .iter()
            .filter(|rule| rule_in_place(plan, rule));
        let (right, wrong): (Vec<&RuleEntry>, Vec<&RuleEntry>) =
            in_place.partition(|rule| rule_is_right(plan, rule));
        if self.link.is_some() {
            let deletes = wrong.iter().map(|rule| Action::DeleteRule((*rule).clone()));
            self.actions.extend(deletes);
            if right.is_empty() {
                self.actions.push(Action::AddRule);
            }
        }
        judged(!right.is_empty(), wrong.first().copied(), describe_rule)
    }
}

/// The check of a place: wrong while a wrong entry holds it (described), else right when the right one is there.
fn judged<T>(right: bool, wrong: Option<&T>, describe: fn(&T) -> String) -> Check {
    match (right, wrong) {
        (true, None) => Check::Right,
        (_, Some(entry)) => Check::Wrong(describe(entry)),
        (false, None) => Check::Missing,
    }
}

/// The changes that remove exactly what configure installs, in order: the rule first (traffic from the address
/// falls back to the main table), then the default and subnet routes, the address, and the link goes down.
/// Only entries that match the plan exactly are removed (routes: also without metric and installed as `static`,
/// as berth installs them); a rule survives the link, so it is removed even when
/// the link is already gone.
pub fn teardown_actions(plan: &RoutePlan, link: Option<&Link>, snapshot: &Snapshot) -> Vec<Action> {
    let mut actions: Vec<Action> = snapshot
        .rules
        .iter()
        .filter(|rule| rule_is_right(plan, rule))
        .map(|rule| Action::DeleteRule(rule.clone()))
        .collect();
    let Some(link) = link else {
        return actions;
    };
    for role in [RouteRole::Default, RouteRole::Subnet] {
        let destination = role_destination(plan, role);
        actions.extend(
            snapshot
                .routes
                .iter()
                .filter(|route| {
                    route.table == plan.table
                        && route.destination == destination
                        && route_is_right(plan, link, role, route)
                        && route.priority.is_none()
                        && route.protocol == RouteProtocol::Static
                })
                .map(|route| Action::DeleteRoute(route.clone())),
        );
    }
    actions.extend(
        snapshot
            .addresses
            .iter()
            .filter(|entry| entry.index == link.index && entry.address == plan.address)
            .map(|entry| Action::DeleteAddress(entry.clone())),
    );
    if link.up {
        actions.push(Action::SetLink(false));
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> RoutePlan {
        RoutePlan {
            mac: MacAddr([2, 0, 0, 0, 0, 0x20]),
            primary_mac: MacAddr([2, 0, 0, 0, 0, 0x10]),
            address: "10.0.0.20/24".parse().unwrap(),
            gateway: "10.0.0.1".parse().unwrap(),
            table: 10001,
            rule_priority: 10001,
        }
    }

    /// An address message names the local address (IFA_LOCAL) before the peer's (IFA_ADDRESS), as `ip` reads
    /// it; an IPv6 one is skipped.
    #[test]
    fn an_address_entry_is_the_local_ipv4_address_with_its_prefix() {
        let mut message = AddressMessage::default();
        message.header.family = AddressFamily::Inet;
        message.header.index = 7;
        message.header.prefix_len = 24;
        message.attributes = vec![
            AddressAttribute::Address(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9))),
            AddressAttribute::Local(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 20))),
        ];
        let entry = AddressEntry::from_message(&message).unwrap();
        assert_eq!(
            (entry.index, entry.address.to_string()),
            (7, "10.0.0.20/24".into())
        );
        message.attributes.remove(1);
        let entry = AddressEntry::from_message(&message).unwrap();
        assert_eq!(entry.address.to_string(), "10.0.0.9/24");
        message.header.family = AddressFamily::Inet6;
        assert_eq!(AddressEntry::from_message(&message), None);
    }

    fn link(up: bool) -> Link {
        Link {
            name: "eth1".into(),
            index: 7,
            mac: plan().mac,
            up,
        }
    }

    fn route(destination: &str, gateway: Option<&str>, scope: RouteScope) -> RouteEntry {
        RouteEntry {
            table: 10001,
            destination: destination.parse().unwrap(),
            gateway: gateway.map(|text| text.parse().unwrap()),
            oif: Some(7),
            scope,
            kind: RouteType::Unicast,
            priority: None,
            protocol: RouteProtocol::Static,
        }
    }

    fn rule(priority: u32, table: u32, action: RuleAction) -> RuleEntry {
        RuleEntry {
            priority,
            table,
            source: Some("10.0.0.20/32".parse().unwrap()),
            action,
            other_selectors: false,
            message: RuleMessage::default(),
        }
    }

    fn configured() -> Snapshot {
        Snapshot {
            addresses: vec![AddressEntry {
                index: 7,
                address: "10.0.0.20/24".parse().unwrap(),
            }],
            routes: vec![
                route("10.0.0.0/24", None, RouteScope::Link),
                route("0.0.0.0/0", Some("10.0.0.1"), RouteScope::Universe),
            ],
            rules: vec![rule(10001, 10001, RuleAction::ToTable)],
        }
    }

    #[test]
    fn from_scratch_adds_everything_in_order() {
        let (observation, actions) = diff(&plan(), Some(&link(false)), &Snapshot::default());
        assert_eq!(
            actions,
            vec![
                Action::SetLink(true),
                Action::AddAddress,
                Action::AddRoute(RouteRole::Subnet),
                Action::AddRoute(RouteRole::Default),
                Action::AddRule
            ]
        );
        assert!(!observation.is_routed());
        assert_eq!(observation.address, Check::Missing);
    }

    #[test]
    fn configured_state_needs_nothing() {
        let (observation, actions) = diff(&plan(), Some(&link(true)), &configured());
        assert!(actions.is_empty(), "{actions:?}");
        assert!(observation.is_routed(), "{}", observation.problems());
    }

    #[test]
    fn wrong_prefix_and_gateway_and_unspec_rule_are_replaced() {
        let mut snapshot = configured();
        snapshot.addresses[0].address = "10.0.0.20/16".parse().unwrap();
        snapshot.routes[1].gateway = Some("10.0.0.254".parse().unwrap());
        snapshot.rules[0].action = RuleAction::Unspec;
        let (observation, actions) = diff(&plan(), Some(&link(true)), &snapshot);
        assert_eq!(
            actions,
            vec![
                Action::DeleteAddress(snapshot.addresses[0].clone()),
                Action::AddAddress,
                Action::DeleteRoute(snapshot.routes[1].clone()),
                Action::AddRoute(RouteRole::Default),
                Action::DeleteRule(snapshot.rules[0].clone()),
                Action::AddRule
            ]
        );
        assert!(
            matches!(observation.default_route, Check::Wrong(ref text) if text.contains("10.0.0.254"))
        );
        assert!(observation.subnet_route.is_right());
    }

    #[test]
    fn foreign_state_is_left_alone() {
        let mut snapshot = configured();
        snapshot.addresses.push(AddressEntry {
            index: 7,
            address: "10.0.0.99/24".parse().unwrap(),
        });
        snapshot.addresses.push(AddressEntry {
            index: 2,
            address: "10.0.0.10/24".parse().unwrap(),
        });
        let mut main_default = route("0.0.0.0/0", Some("10.0.0.1"), RouteScope::Universe);
        main_default.table = 254;
        main_default.oif = Some(2);
        snapshot.routes.push(main_default);
        let mut other = rule(100, 100, RuleAction::ToTable);
        other.source = Some("10.0.0.10/32".parse().unwrap());
        snapshot.rules.push(other);
        let (observation, actions) = diff(&plan(), Some(&link(true)), &snapshot);
        assert!(actions.is_empty(), "{actions:?}");
        assert!(observation.is_routed());
        assert_eq!(
            teardown_actions(&plan(), Some(&link(true)), &snapshot).len(),
            5
        );
    }

    #[test]
    fn an_equivalent_route_with_a_metric_is_right_but_not_ours_to_remove() {
        let mut snapshot = configured();
        snapshot.routes[1].priority = Some(512);
        snapshot.routes[1].protocol = RouteProtocol::Dhcp;
        let (observation, actions) = diff(&plan(), Some(&link(true)), &snapshot);
        assert!(actions.is_empty(), "{actions:?}");
        assert!(observation.default_route.is_right());
        let teardown = teardown_actions(&plan(), Some(&link(true)), &snapshot);
        assert!(
            !teardown.contains(&Action::DeleteRoute(snapshot.routes[1].clone())),
            "{teardown:?}"
        );
    }

    #[test]
    fn teardown_removes_exactly_the_plan_in_reverse_order() {
        let snapshot = configured();
        let actions = teardown_actions(&plan(), Some(&link(true)), &snapshot);
        assert_eq!(
            actions,
            vec![
                Action::DeleteRule(snapshot.rules[0].clone()),
                Action::DeleteRoute(snapshot.routes[1].clone()),
                Action::DeleteRoute(snapshot.routes[0].clone()),
                Action::DeleteAddress(snapshot.addresses[0].clone()),
                Action::SetLink(false)
            ]
        );
        assert_eq!(
            teardown_actions(&plan(), None, &snapshot),
            vec![Action::DeleteRule(snapshot.rules[0].clone())],
            "a rule outlives its link"
        );
    }

    #[test]
    fn missing_link_observes_everything_missing_and_changes_nothing() {
        let (observation, actions) = diff(&plan(), None, &configured());
        assert!(actions.is_empty());
        assert_eq!(observation.address, Check::Missing);
        assert!(observation.problems().starts_with("link missing"));
    }
}
