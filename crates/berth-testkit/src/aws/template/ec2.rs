//! Creating a stack's resources as the simulated CloudFormation does: EC2's (security groups and their ingress
//! rules, ENIs, volumes, launch templates) in strict moto through the real SDK, in the stack's creation order,
//! each from its resolved properties (so the template, not Rust, says what exists). IAM resources get ids and
//! ARNs only (the region does not evaluate IAM); Auto Scaling groups are recorded with their resolved
//! properties for the region's Auto Scaling control plane ([`super::super::autoscaling::group`]), which plays
//! them (moto does not).
//!
//! What `Ref` and `Fn::GetAtt` return follows each type's "Return values" in the CloudFormation resource
//! reference (AWS::EC2::SecurityGroup: the group id when in a VPC, `GroupId`, `VpcId`; AWS::EC2::NetworkInterface:
//! the ENI id, `PrimaryPrivateIpAddress`; AWS::EC2::Volume: the volume id; AWS::EC2::LaunchTemplate: the
//! template id, `LaunchTemplateId`, `LatestVersionNumber`, `DefaultVersionNumber`; AWS::IAM::Role and
//! AWS::IAM::InstanceProfile: the name, `Arn`).

use std::collections::BTreeMap;

use aws_sdk_ec2::error::DisplayErrorContext;
use aws_sdk_ec2::types::{
    IpPermission, IpRange, RequestLaunchTemplateData, ResourceType, Tag, TagSpecification,
    UserIdGroupPair, VolumeType,
};
use aws_sdk_ec2::Client;
use serde_json::Value;

use super::{Kind, Physical, Stack, TemplateError};

/// A resource the simulated CloudFormation could not create.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// Its properties did not resolve.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// EC2 (moto) refused it, or a property it needs is missing.
    #[error("{logical_id}: {message}")]
    Resource {
        /// The resource.
        logical_id: String,
        /// EC2's error, with context.
        message: String,
    },
}

/// The stack's created resources: what `Ref` and `Fn::GetAtt` return for each, and the Auto Scaling groups.
#[derive(Debug, Clone, Default)]
pub struct Created {
    ids: BTreeMap<String, String>,
    attributes: BTreeMap<(String, String), Value>,
    /// Each Auto Scaling group's logical id and resolved properties, in creation order.
    pub groups: Vec<(String, Value)>,
}

impl Physical for Created {
    fn reference(&self, logical_id: &str) -> Option<String> {
        self.ids.get(logical_id).cloned()
    }
    fn attribute(&self, logical_id: &str, attribute: &str) -> Option<Value> {
        self.attributes
            .get(&(logical_id.to_owned(), attribute.to_owned()))
            .cloned()
    }
}

impl Created {
    fn set(&mut self, logical_id: &str, id: &str, attributes: &[(&str, Value)]) {
        self.ids.insert(logical_id.to_owned(), id.to_owned());
        for (name, value) in attributes {
            self.attributes
                .insert((logical_id.to_owned(), (*name).to_owned()), value.clone());
        }
    }
}

/// Creates every resource of `stack` in its creation order.
pub async fn create(client: &Client, stack: &Stack) -> Result<Created, CreateError> {
    let mut created = Created::default();
    let account = &stack.scope.pseudo().account_id;
    for resource in stack.resources() {
        let logical_id = resource.logical_id.as_str();
        let properties = stack.properties(logical_id, &created)?;
        let failed = |message: String| CreateError::Resource {
            logical_id: logical_id.to_owned(),
            message,
        };
        let physical = format!("{}-{logical_id}", stack.scope.pseudo().stack_name);
        match resource.kind {
            Kind::SecurityGroup => {
                security_group(client, &physical, &properties, logical_id, &mut created)
                    .await
                    .map_err(failed)?
            }
            Kind::SecurityGroupIngress => {
                let group = text(&properties, "GroupId").map_err(&failed)?;
                let id = authorize(client, &group, std::slice::from_ref(&properties))
                    .await
                    .map_err(failed)?;
                created.set(logical_id, &id, &[]);
            }
            Kind::NetworkInterface => {
                network_interface(client, &properties, logical_id, &mut created)
                    .await
                    .map_err(failed)?
            }
            Kind::Volume => volume(client, &properties, logical_id, &mut created)
                .await
                .map_err(failed)?,
            Kind::LaunchTemplate => {
                launch_template(client, &physical, &properties, logical_id, &mut created)
                    .await
                    .map_err(failed)?
            }
            Kind::Iam => {
                let arn = Value::String(format!("arn:aws:iam::{account}:role/{physical}"));
                created.set(logical_id, &physical, &[("Arn", arn)]);
            }
            Kind::LifecycleHook => {
                let name = text(&properties, "LifecycleHookName").map_err(&failed)?;
                created.set(logical_id, &name, &[]);
            }
            Kind::AutoScalingGroup => {
                let name = properties
                    .get("AutoScalingGroupName")
                    .and_then(Value::as_str)
                    .unwrap_or(&physical)
                    .to_owned();
                created.set(logical_id, &name, &[]);
                created.groups.push((logical_id.to_owned(), properties));
            }
        }
    }
    Ok(created)
}

fn sdk(action: &str, error: impl std::error::Error) -> String {
    format!("{action}: {}", DisplayErrorContext(error))
}

fn text(properties: &Value, key: &str) -> Result<String, String> {
    match properties.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => Err(format!("property {key} is missing")),
    }
}

fn number(properties: &Value, key: &str) -> Result<i32, String> {
    text(properties, key)?
        .parse()
        .map_err(|_| format!("property {key} is not a number"))
}

fn strings(properties: &Value, key: &str) -> Vec<String> {
    properties
        .get(key)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The `Tags` property (`[{Key, Value}]`) as an EC2 tag specification.
fn tag_specification(kind: ResourceType, properties: &Value) -> TagSpecification {
    let mut spec = TagSpecification::builder().resource_type(kind);
    for tag in properties
        .get("Tags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let (Some(key), Some(value)) = (tag["Key"].as_str(), tag["Value"].as_str()) else {
            continue;
        };
        spec = spec.tags(Tag::builder().key(key).value(value).build());
    }
    spec.build()
}

/// One ingress rule (the properties of `AWS::EC2::SecurityGroupIngress`, or an entry of a group's
/// `SecurityGroupIngress`) as an EC2 permission.
fn permission(rule: &Value) -> Result<IpPermission, String> {
    let description = rule.get("Description").and_then(Value::as_str);
    let mut permission = IpPermission::builder()
        .ip_protocol(text(rule, "IpProtocol")?)
        .from_port(number(rule, "FromPort")?)
        .to_port(number(rule, "ToPort")?);
    if let Ok(cidr) = text(rule, "CidrIp") {
        permission = permission.ip_ranges(
            IpRange::builder()
                .cidr_ip(cidr)
                .set_description(description.map(str::to_owned))
                .build(),
        );
    }
    if let Ok(group) = text(rule, "SourceSecurityGroupId") {
        permission = permission.user_id_group_pairs(
            UserIdGroupPair::builder()
                .group_id(group)
                .set_description(description.map(str::to_owned))
                .build(),
        );
    }
    Ok(permission.build())
}

/// Authorizes ingress rules on `group`; the first rule's id.
async fn authorize(client: &Client, group: &str, rules: &[Value]) -> Result<String, String> {
    let permissions = rules
        .iter()
        .map(permission)
        .collect::<Result<Vec<_>, _>>()?;
    let authorized = client
        .authorize_security_group_ingress()
        .group_id(group)
        .set_ip_permissions(Some(permissions))
        .send()
        .await
        .map_err(|e| sdk("AuthorizeSecurityGroupIngress", e))?;
    Ok(authorized
        .security_group_rules()
        .first()
        .and_then(|r| r.security_group_rule_id())
        .unwrap_or(group)
        .to_owned())
}

async fn security_group(
    client: &Client,
    name: &str,
    properties: &Value,
    logical_id: &str,
    created: &mut Created,
) -> Result<(), String> {
    let vpc = text(properties, "VpcId")?;
    let group = client
        .create_security_group()
        .group_name(
            properties
                .get("GroupName")
                .and_then(Value::as_str)
                .unwrap_or(name),
        )
        .description(text(properties, "GroupDescription")?)
        .vpc_id(&vpc)
        .tag_specifications(tag_specification(ResourceType::SecurityGroup, properties))
        .send()
        .await
        .map_err(|e| sdk("CreateSecurityGroup", e))?;
    let id = group
        .group_id()
        .ok_or("CreateSecurityGroup: no group id")?
        .to_owned();
    let rules = properties
        .get("SecurityGroupIngress")
        .and_then(Value::as_array);
    if let Some(rules) = rules.filter(|r| !r.is_empty()) {
        authorize(client, &id, rules).await?;
    }
    let attributes = [
        ("GroupId", Value::String(id.clone())),
        ("VpcId", Value::String(vpc)),
    ];
    created.set(logical_id, &id, &attributes);
    Ok(())
}

async fn network_interface(
    client: &Client,
    properties: &Value,
    logical_id: &str,
    created: &mut Created,
) -> Result<(), String> {
    let eni = client
        .create_network_interface()
        .subnet_id(text(properties, "SubnetId")?)
        .set_private_ip_address(text(properties, "PrivateIpAddress").ok())
        .set_description(text(properties, "Description").ok())
        .set_groups(Some(strings(properties, "GroupSet")))
        .tag_specifications(tag_specification(
            ResourceType::NetworkInterface,
            properties,
        ))
        .send()
        .await
        .map_err(|e| sdk("CreateNetworkInterface", e))?;
    let eni = eni
        .network_interface()
        .ok_or("CreateNetworkInterface: no interface")?;
    let id = eni.network_interface_id().ok_or("no interface id")?;
    let address = Value::String(eni.private_ip_address().unwrap_or_default().to_owned());
    created.set(logical_id, id, &[("PrimaryPrivateIpAddress", address)]);
    Ok(())
}

async fn volume(
    client: &Client,
    properties: &Value,
    logical_id: &str,
    created: &mut Created,
) -> Result<(), String> {
    let volume = client
        .create_volume()
        .availability_zone(text(properties, "AvailabilityZone")?)
        .size(number(properties, "Size")?)
        .set_volume_type(
            text(properties, "VolumeType")
                .ok()
                .map(|t| VolumeType::from(t.as_str())),
        )
        .set_encrypted(properties.get("Encrypted").and_then(Value::as_bool))
        .set_kms_key_id(text(properties, "KmsKeyId").ok())
        .tag_specifications(tag_specification(ResourceType::Volume, properties))
        .send()
        .await
        .map_err(|e| sdk("CreateVolume", e))?;
    created.set(
        logical_id,
        volume.volume_id().ok_or("CreateVolume: no volume id")?,
        &[],
    );
    Ok(())
}

async fn launch_template(
    client: &Client,
    name: &str,
    properties: &Value,
    logical_id: &str,
    created: &mut Created,
) -> Result<(), String> {
    let data = properties.get("LaunchTemplateData").unwrap_or(&Value::Null);
    let request = RequestLaunchTemplateData::builder()
        .set_image_id(text(data, "ImageId").ok())
        .set_instance_type(text(data, "InstanceType").ok().map(|t| t.as_str().into()))
        .set_user_data(text(data, "UserData").ok())
        .set_security_group_ids(Some(strings(data, "SecurityGroupIds")))
        .build();
    let template = client
        .create_launch_template()
        .launch_template_name(name)
        .launch_template_data(request)
        .send()
        .await
        .map_err(|e| sdk("CreateLaunchTemplate", e))?;
    let template = template
        .launch_template()
        .ok_or("CreateLaunchTemplate: no template")?;
    let id = template.launch_template_id().ok_or("no template id")?;
    let version = |v: Option<i64>| Value::String(v.unwrap_or(1).to_string());
    let attributes = [
        ("LaunchTemplateId", Value::String(id.to_owned())),
        (
            "LatestVersionNumber",
            version(template.latest_version_number()),
        ),
        (
            "DefaultVersionNumber",
            version(template.default_version_number()),
        ),
    ];
    created.set(logical_id, id, &attributes);
    Ok(())
}
