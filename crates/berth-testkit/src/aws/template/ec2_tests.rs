//! The shipped template's EC2 resources created in strict moto, read back through the SDK.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::Filter;
use base64::Engine as _;
use serde_json::Value;

use super::ec2::{create, Created};
use super::ingress::{ingress, Source};
use super::{shipped, Kind, Pseudo, Stack, Template};
use crate::aws::{world, StrictMoto};

const REGION: &str = "eu-west-1";
const ZONES: [&str; 3] = ["eu-west-1a", "eu-west-1b", "eu-west-1c"];

/// The operator's parameters for moto's network (the rest keep the template's defaults).
fn operator(net: &world::Network) -> BTreeMap<String, String> {
    let mut given: BTreeMap<String, String> = [
        ("ImageId", "ami-0123456789abcdef0".to_owned()),
        ("VpcId", net.vpc_id.clone()),
        ("KafkaClusterId", "MkU3OEVBNTcwNTJENDM2Qk".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (n, (zone, letter)) in ZONES.iter().zip(["A", "B", "C"]).enumerate() {
        given.insert(format!("Zone{letter}"), (*zone).to_owned());
        given.insert(format!("Subnet{letter}"), net.subnets[*zone].clone());
        given.insert(format!("BrokerIp{n}"), format!("10.0.{}.10", n + 1));
    }
    given
}

fn pseudo() -> Pseudo {
    Pseudo {
        region: REGION.into(),
        account_id: "123456789012".into(),
        stack_name: "berth".into(),
        stack_id: "arn:aws:cloudformation:eu-west-1:123456789012:stack/berth/1".into(),
        zones: ZONES.iter().map(|z| (*z).to_owned()).collect(),
    }
}

/// (port, source) of every ingress rule the stack declares: a CIDR, or `group` for its own security group.
fn declared_ingress(stack: &Stack, created: &Created) -> BTreeSet<(i64, String)> {
    let rules = ingress(stack, created).expect("every rule enforceable");
    rules
        .into_iter()
        .map(|rule| {
            let source = match rule.source {
                Source::Cidr(cidr) => cidr.to_string(),
                Source::Group(group) => {
                    assert_eq!(group, rule.group, "a self-referencing rule");
                    "group".to_owned()
                }
            };
            (i64::from(rule.from_port), source)
        })
        .collect()
}

async fn actual_ingress(ec2: &aws_sdk_ec2::Client, group: &str) -> BTreeSet<(i64, String)> {
    let groups = ec2
        .describe_security_groups()
        .group_ids(group)
        .send()
        .await
        .expect("describe");
    let mut rules = BTreeSet::new();
    for permission in groups.security_groups()[0].ip_permissions() {
        let port = i64::from(permission.from_port().expect("port"));
        for range in permission.ip_ranges() {
            rules.insert((port, range.cidr_ip().expect("cidr").to_owned()));
        }
        for pair in permission.user_id_group_pairs() {
            assert_eq!(pair.group_id(), Some(group), "a self-referencing rule");
            rules.insert((port, "group".to_owned()));
        }
    }
    rules
}

async fn create_in_moto(template: &Template) -> (StrictMoto, aws_sdk_ec2::Client, Stack, Created) {
    let moto = StrictMoto::start().expect("strict moto starts");
    let ec2 = world::ec2_client(moto.endpoint(), REGION);
    let net = world::network(&ec2, &ZONES).await.expect("network");
    let stack = template
        .instantiate(&operator(&net), pseudo())
        .expect("instantiate");
    let created = create(&ec2, &stack)
        .await
        .expect("the stack's resources are created");
    (moto, ec2, stack, created)
}

#[tokio::test]
async fn shipped_template_creates_its_ec2_resources_in_moto() {
    let template = Template::load(&shipped()).expect("parse");
    let (_moto, ec2, stack, created) = create_in_moto(&template).await;
    let group = stack
        .resources()
        .iter()
        .find(|r| r.kind == Kind::SecurityGroup)
        .and_then(|r| created_id(&created, &r.logical_id))
        .expect("a security group");
    let declared = declared_ingress(&stack, &created);
    assert!(
        declared.iter().any(|(_, source)| source == "group"),
        "{declared:?}"
    );
    assert_eq!(actual_ingress(&ec2, &group).await, declared);
    check_enis(&ec2, &stack, &created, &group).await;
    check_volumes(&ec2, &stack).await;
    check_launch_template_and_groups(&ec2, &stack, &created).await;
}

/// Each ENI has the template's address, group and tags.
async fn check_enis(ec2: &aws_sdk_ec2::Client, stack: &Stack, created: &Created, group: &str) {
    for resource in stack
        .resources()
        .iter()
        .filter(|r| r.kind == Kind::NetworkInterface)
    {
        let properties = stack
            .properties(&resource.logical_id, created)
            .expect("resolve");
        let id = created_id(created, &resource.logical_id).expect("created");
        let enis = ec2
            .describe_network_interfaces()
            .network_interface_ids(&id)
            .send()
            .await
            .expect("describe");
        let eni = &enis.network_interfaces()[0];
        assert_eq!(
            eni.private_ip_address(),
            properties["PrivateIpAddress"].as_str()
        );
        assert_eq!(eni.groups()[0].group_id(), Some(group));
        assert_eq!(
            tags(eni.tag_set()),
            tags_of(&properties),
            "{}",
            resource.logical_id
        );
    }
}

/// One volume per declared volume, tagged with the cluster, of the template's size.
async fn check_volumes(ec2: &aws_sdk_ec2::Client, stack: &Stack) {
    let volumes = stack
        .resources()
        .iter()
        .filter(|r| r.kind == Kind::Volume)
        .count();
    let cluster = stack
        .parameter("ClusterName")
        .and_then(Value::as_str)
        .expect("cluster");
    let filter = Filter::builder()
        .name("tag:berth:cluster")
        .values(cluster)
        .build();
    let tagged = ec2
        .describe_volumes()
        .filters(filter)
        .send()
        .await
        .expect("describe");
    assert_eq!(tagged.volumes().len(), volumes);
    let size = stack
        .parameter("VolumeSize")
        .and_then(Value::as_str)
        .expect("size");
    assert!(tagged
        .volumes()
        .iter()
        .all(|v| v.size().map(|s| s.to_string()).as_deref() == Some(size)));
}

/// The launch template carries the user data; the groups are recorded in creation order with its version.
async fn check_launch_template_and_groups(
    ec2: &aws_sdk_ec2::Client,
    stack: &Stack,
    created: &Created,
) {
    let launch = stack
        .resources()
        .iter()
        .find(|r| r.kind == Kind::LaunchTemplate)
        .expect("launch template");
    let id = created_id(created, &launch.logical_id).expect("created");
    let versions = ec2
        .describe_launch_template_versions()
        .launch_template_id(&id)
        .send()
        .await
        .expect("describe");
    let data = versions.launch_template_versions()[0]
        .launch_template_data()
        .expect("data");
    let script = base64::engine::general_purpose::STANDARD
        .decode(data.user_data().expect("user data"))
        .expect("b64");
    assert!(String::from_utf8(script)
        .expect("utf-8")
        .starts_with("#!/bin/sh"));

    let groups: Vec<&str> = created
        .groups
        .iter()
        .map(|(logical, _)| logical.as_str())
        .collect();
    let declared: Vec<&str> = stack
        .resources()
        .iter()
        .filter(|r| r.kind == Kind::AutoScalingGroup)
        .map(|r| r.logical_id.as_str())
        .collect();
    assert_eq!(groups, declared, "groups recorded in creation order");
    for (logical, properties) in &created.groups {
        let version = &properties["LaunchTemplate"]["Version"];
        assert_eq!(
            version,
            &Value::String("1".into()),
            "{logical}: GetAtt LatestVersionNumber"
        );
        assert!(properties["LifecycleHookSpecificationList"]
            .as_array()
            .is_some_and(|h| !h.is_empty()));
    }
}

#[tokio::test]
async fn without_the_controller_rule_the_group_leaves_the_controller_port_closed() {
    let text = std::fs::read_to_string(shipped()).expect("read");
    let mut yaml: serde_yaml::Value = serde_yaml::from_str(&text).expect("YAML");
    let resources = yaml["Resources"].as_mapping_mut().expect("Resources");
    let removed = resources
        .remove("BrokerToBrokerController")
        .expect("the controller rule");
    let port = removed["Properties"]["FromPort"]
        .as_i64()
        .expect("its port");
    let copy =
        Template::parse(&serde_yaml::to_string(&yaml).expect("YAML")).expect("parse the copy");
    let (_moto, ec2, stack, created) = create_in_moto(&copy).await;
    let group = stack
        .resources()
        .iter()
        .find(|r| r.kind == Kind::SecurityGroup)
        .and_then(|r| created_id(&created, &r.logical_id))
        .expect("a security group");
    let open: Vec<i64> = actual_ingress(&ec2, &group)
        .await
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert!(
        !open.is_empty() && !open.contains(&port),
        "{port} closed, open: {open:?}"
    );
}

fn created_id(created: &Created, logical_id: &str) -> Option<String> {
    use super::Physical;
    created.reference(logical_id)
}

fn tags(set: &[aws_sdk_ec2::types::Tag]) -> BTreeMap<String, String> {
    set.iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_owned(),
                t.value().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn tags_of(properties: &Value) -> BTreeMap<String, String> {
    properties["Tags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            (
                t["Key"].as_str().unwrap().to_owned(),
                t["Value"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}
