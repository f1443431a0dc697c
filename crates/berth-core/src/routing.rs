//! The policy routing plan for the broker ENI, derived from the ENI and the numbering configuration.
//!
//! Traffic from the ENI address must leave through the ENI (EC2 drops it elsewhere: source/destination check),
//! so the ENI gets its own table with a default route via the subnet gateway and a `from <eni-ip>` rule. The
//! default numbering matches amazon-ec2-net-utils (10000 + 100 * network card + device index) so hosts that also
//! run it do not collide.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::facts::{EniFacts, Identity, RoutePlan};

/// How route tables and rule priorities are numbered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteNumbering {
    /// EC2 network card index of the ENI (0 on all but the largest instance types).
    pub network_card: u32,
    /// Device index the ENI is attached at.
    pub device_index: u32,
    /// Explicit table id; `None` means 10000 + 100 * card + index.
    pub table: Option<u32>,
    /// Explicit rule priority; `None` means the same number as the default table.
    pub rule_priority: Option<u32>,
}

/// Why no route plan can be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutePlanError {
    /// The ENI's address is not inside its subnet.
    #[error("ENI {eni_id} address {ip} is not inside its subnet {subnet}")]
    AddressOutsideSubnet {
        /// The ENI.
        eni_id: String,
        /// Its address.
        ip: Ipv4Addr,
        /// Its subnet.
        subnet: Ipv4Net,
    },
    /// The ENI carries the primary interface's MAC.
    #[error("ENI {eni_id} has the primary interface's MAC {mac}; refusing to touch the primary interface")]
    PrimaryInterface {
        /// The ENI.
        eni_id: String,
        /// The MAC.
        mac: String,
    },
    /// The subnet is too small to have a gateway.
    #[error("subnet {0} has no room for a gateway")]
    NoGateway(Ipv4Net),
}

impl RouteNumbering {
    /// The default table and priority number.
    pub fn default_number(&self) -> u32 {
        10_000 + 100 * self.network_card + self.device_index
    }
}

/// Derives the route plan for an ENI on this instance. Pure.
pub fn plan_route(
    identity: &Identity,
    eni: &EniFacts,
    numbering: &RouteNumbering,
) -> Result<RoutePlan, RoutePlanError> {
    if eni.mac == identity.primary_mac {
        return Err(RoutePlanError::PrimaryInterface {
            eni_id: eni.eni_id.clone(),
            mac: eni.mac.to_string(),
        });
    }
    let subnet = eni.subnet.trunc();
    if !subnet.contains(&eni.private_ip) {
        return Err(RoutePlanError::AddressOutsideSubnet {
            eni_id: eni.eni_id.clone(),
            ip: eni.private_ip,
            subnet,
        });
    }
    if subnet.prefix_len() > 30 {
        return Err(RoutePlanError::NoGateway(subnet));
    }
    let gateway = Ipv4Addr::from(u32::from(subnet.network()) + 1);
    let address = Ipv4Net::new(eni.private_ip, subnet.prefix_len())
        .map_err(|_| RoutePlanError::NoGateway(subnet))?;
    let number = numbering.default_number();
    Ok(RoutePlan {
        mac: eni.mac,
        primary_mac: identity.primary_mac,
        address,
        gateway,
        table: numbering.table.unwrap_or(number),
        rule_priority: numbering.rule_priority.unwrap_or(number),
    })
}
