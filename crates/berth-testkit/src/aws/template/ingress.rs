//! A stack's security group ingress rules, resolved: what the simulated region enforces as packet filters
//! between its hosts. Only TCP is enforced (the protocol every berth template rule opens); a rule of another
//! protocol, or with a source the region cannot place (a prefix list, another account's group, IPv6), is refused
//! rather than left open or closed by accident.

use ipnet::Ipv4Net;
use serde_json::Value;

use super::{Kind, Physical, Stack, TemplateError};

/// Where a rule lets connections come from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// `CidrIp`
    Cidr(Ipv4Net),
    /// `SourceSecurityGroupId`: the addresses of the group's members.
    Group(String),
}

/// One ingress rule of one security group (physical ids).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ingress {
    /// The group whose members the rule admits connections to.
    pub group: String,
    /// First TCP port.
    pub from_port: u16,
    /// Last TCP port.
    pub to_port: u16,
    /// Who may connect.
    pub source: Source,
}

/// Every ingress rule of the stack's security groups: their inline `SecurityGroupIngress` and each
/// `AWS::EC2::SecurityGroupIngress` resource.
pub fn ingress(stack: &Stack, created: &dyn Physical) -> Result<Vec<Ingress>, TemplateError> {
    let mut rules = Vec::new();
    for resource in stack.resources() {
        let logical_id = resource.logical_id.as_str();
        let properties = stack.properties(logical_id, created)?;
        let (group, declared) = match resource.kind {
            Kind::SecurityGroup => (
                created.reference(logical_id),
                properties["SecurityGroupIngress"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            ),
            Kind::SecurityGroupIngress => (
                properties["GroupId"].as_str().map(str::to_owned),
                vec![properties],
            ),
            _ => continue,
        };
        let group = group.ok_or_else(|| TemplateError::Unresolved(logical_id.to_owned()))?;
        for rule in &declared {
            rules.push(one(logical_id, &group, rule)?);
        }
    }
    rules.sort();
    Ok(rules)
}

fn one(logical_id: &str, group: &str, rule: &Value) -> Result<Ingress, TemplateError> {
    let refuse = |what: String| TemplateError::Unenforced {
        logical_id: logical_id.to_owned(),
        what,
    };
    let protocol = rule["IpProtocol"].as_str().unwrap_or_default();
    if protocol != "tcp" && protocol != "6" {
        return Err(refuse(format!("IpProtocol {protocol} (only tcp)")));
    }
    let port = |key: &str| {
        let text = match &rule[key] {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            _ => String::new(),
        };
        text.parse::<u16>()
            .map_err(|_| refuse(format!("{key} {text}")))
    };
    let source = match (
        rule["CidrIp"].as_str(),
        rule["SourceSecurityGroupId"].as_str(),
    ) {
        (Some(cidr), None) => {
            Source::Cidr(cidr.parse().map_err(|_| refuse(format!("CidrIp {cidr}")))?)
        }
        (None, Some(group)) => Source::Group(group.to_owned()),
        _ => {
            return Err(refuse(
                "a source other than one CidrIp or SourceSecurityGroupId".into(),
            ))
        }
    };
    Ok(Ingress {
        group: group.to_owned(),
        from_port: port("FromPort")?,
        to_port: port("ToPort")?,
        source,
    })
}
