//! The reader against the shipped template itself (read from docs/examples/, its values never copied here), and
//! the evaluator's functions on small templates of their own.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{json, Value};

use super::*;

/// What the tests give for the parameters an operator must give (the rest keep the template's defaults).
pub(super) fn operator() -> BTreeMap<String, String> {
    [
        ("ImageId", "ami-0123456789abcdef0"),
        ("VpcId", "vpc-1"),
        ("ZoneA", "eu-west-1a"),
        ("SubnetA", "subnet-a"),
        ("BrokerIp0", "10.0.1.10"),
        ("ZoneB", "eu-west-1b"),
        ("SubnetB", "subnet-b"),
        ("BrokerIp1", "10.0.2.10"),
        ("ZoneC", "eu-west-1c"),
        ("SubnetC", "subnet-c"),
        ("BrokerIp2", "10.0.3.10"),
        ("KafkaClusterId", "MkU3OEVBNTcwNTJENDM2Qk"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

pub(super) fn pseudo() -> Pseudo {
    Pseudo {
        region: "eu-west-1".into(),
        account_id: "123456789012".into(),
        stack_name: "berth".into(),
        stack_id: "arn:aws:cloudformation:eu-west-1:123456789012:stack/berth/1".into(),
        zones: vec![
            "eu-west-1a".into(),
            "eu-west-1b".into(),
            "eu-west-1c".into(),
        ],
    }
}

/// Every created resource's physical id is `phys-<logical id>`, its attributes `<logical id>.<attribute>`.
pub(super) struct Fake;

impl Physical for Fake {
    fn reference(&self, logical_id: &str) -> Option<String> {
        Some(format!("phys-{logical_id}"))
    }
    fn attribute(&self, logical_id: &str, attribute: &str) -> Option<Value> {
        Some(Value::String(format!("{logical_id}.{attribute}")))
    }
}

fn shipped_template() -> Template {
    Template::load(&shipped()).expect("the shipped template parses")
}

/// The shipped template with its YAML changed by `change` (tags and all), parsed again.
pub(super) fn changed(change: impl FnOnce(&mut serde_yaml::Mapping)) -> Template {
    let text = std::fs::read_to_string(shipped()).expect("read the shipped template");
    let mut yaml: serde_yaml::Value = serde_yaml::from_str(&text).expect("YAML");
    let resources = yaml
        .get_mut("Resources")
        .and_then(serde_yaml::Value::as_mapping_mut)
        .expect("Resources");
    change(resources);
    Template::parse(&serde_yaml::to_string(&yaml).expect("YAML out"))
        .expect("the changed template parses")
}

fn contains_intrinsic(value: &Value) -> bool {
    match value {
        Value::Object(entries) => entries
            .iter()
            .any(|(k, v)| k == "Ref" || k.starts_with("Fn::") || contains_intrinsic(v)),
        Value::Array(items) => items.iter().any(contains_intrinsic),
        Value::String(s) => s.contains("${"),
        _ => false,
    }
}

fn default_of(template: &Template, name: &str) -> String {
    let declaration = template.parameter(name).expect("declared");
    declaration["Default"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| declaration["Default"].to_string())
}

#[test]
fn shipped_template_resolves_on_its_defaults() {
    let template = shipped_template();
    let given = operator();
    let stack = template
        .instantiate(&given, pseudo())
        .expect("the defaults instantiate");
    for (name, declaration) in &template.parameters {
        let value = stack.parameter(name).expect("every parameter has a value");
        let expected = match given.get(name) {
            Some(v) => v.clone(),
            None => default_of(&template, name),
        };
        assert_eq!(
            value,
            &Value::String(expected),
            "parameter {name} ({declaration})"
        );
    }
    assert!(!stack.resources().is_empty());
    for resource in stack.resources() {
        let properties = stack
            .properties(&resource.logical_id, &Fake)
            .expect("properties resolve");
        assert!(
            !contains_intrinsic(&properties),
            "{}: {properties}",
            resource.logical_id
        );
    }
}

#[test]
fn resources_exist_as_their_conditions_say_and_come_after_their_dependencies() {
    let template = shipped_template();
    let stack = template
        .instantiate(&operator(), pseudo())
        .expect("instantiate");
    let created: Vec<&str> = stack
        .resources()
        .iter()
        .map(|r| r.logical_id.as_str())
        .collect();
    for (logical_id, declaration) in &template.resources {
        let expected = match declaration.get("Condition").and_then(Value::as_str) {
            Some(condition) => stack.condition(condition).expect("declared condition"),
            None => true,
        };
        assert_eq!(
            created.contains(&logical_id.as_str()),
            expected,
            "{logical_id}"
        );
        let explicit = match declaration.get("DependsOn") {
            Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
            Some(Value::String(name)) => vec![name.as_str()],
            _ => vec![],
        };
        let Some(at) = created.iter().position(|c| c == logical_id) else {
            continue;
        };
        for dependency in explicit {
            let before = created
                .iter()
                .position(|c| *c == dependency)
                .expect("dependency created");
            assert!(
                before < at,
                "{logical_id} is created after its DependsOn {dependency}"
            );
        }
    }
    for resource in stack.resources() {
        let at = created
            .iter()
            .position(|c| *c == resource.logical_id)
            .expect("listed");
        for dependency in &resource.depends_on {
            assert!(
                created[..at].contains(&dependency.as_str()),
                "{} after {dependency}",
                resource.logical_id
            );
        }
    }
}

#[test]
fn launch_template_user_data_carries_the_parameters() {
    let template = shipped_template();
    let given = operator();
    let stack = template.instantiate(&given, pseudo()).expect("instantiate");
    let launch_template = stack
        .resources()
        .iter()
        .find(|r| r.kind == Kind::LaunchTemplate)
        .expect("a launch template");
    let properties = stack
        .properties(&launch_template.logical_id, &Fake)
        .expect("resolve");
    let encoded = properties["LaunchTemplateData"]["UserData"]
        .as_str()
        .expect("user data");
    let script = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .expect("base64"),
    )
    .expect("utf-8");
    assert!(script.starts_with("#!/bin/sh"), "{script}");
    assert!(
        script.contains(&format!("={}\n", default_of(&template, "ClusterName"))),
        "{script}"
    );
    assert!(
        script.contains(&format!("={}\n", default_of(&template, "KafkaMode"))),
        "{script}"
    );
    assert!(
        script.contains(&format!("={}\n", given["KafkaClusterId"])),
        "{script}"
    );
    assert!(!script.contains("${"), "{script}");
}

#[test]
fn a_failing_rule_is_refused_with_its_assert_description() {
    let template = shipped_template();
    let mut given = operator();
    given.remove("KafkaClusterId");
    let refused = template.instantiate(&given, pseudo()).expect_err("refused");
    let rule = "KraftNeedsAClusterId";
    let description = template.rule(rule).expect("the rule")["Assertions"][0]["AssertDescription"]
        .as_str()
        .expect("described")
        .to_owned();
    assert_eq!(
        refused,
        TemplateError::Rule {
            rule: rule.into(),
            description: description.clone()
        }
    );
    assert_eq!(refused.to_string(), description);

    let mut given = operator();
    given.insert("ClaimBackend".into(), "zookeeper".into());
    let refused = template.instantiate(&given, pseudo()).expect_err("refused");
    assert!(
        matches!(&refused, TemplateError::Rule { rule, .. } if rule == "ZooKeeperClaimsNeedAnEnsemble"),
        "{refused}"
    );
    given.insert("ZooKeeperConnect".into(), "10.0.0.1:2181".into());
    template
        .instantiate(&given, pseudo())
        .expect("the rule holds with an ensemble");
}

#[test]
fn missing_unknown_and_constrained_parameters_are_refused() {
    let template = shipped_template();
    let refused = template
        .instantiate(&BTreeMap::new(), pseudo())
        .expect_err("refused");
    let required: Vec<&str> = template
        .parameters
        .iter()
        .filter(|(_, d)| d.get("Default").is_none())
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(
        refused,
        TemplateError::MissingParameters(required.join(", "))
    );

    let mut given = operator();
    given.insert("Nope".into(), "x".into());
    assert_eq!(
        template
            .instantiate(&given, pseudo())
            .expect_err("refused")
            .to_string(),
        "Parameters: [Nope] do not exist in the template"
    );
    for (name, value, constraint) in [
        (
            "KafkaMode",
            "raft",
            "must be one of AllowedValues".to_owned(),
        ),
        (
            "ClusterName",
            "Events",
            format!(
                "must match pattern {}",
                template.parameter("ClusterName").unwrap()["AllowedPattern"]
                    .as_str()
                    .unwrap()
            ),
        ),
        (
            "VolumeSize",
            "0",
            format!(
                "must be a number not less than {}",
                template.parameter("VolumeSize").unwrap()["MinValue"]
            ),
        ),
        ("VolumeSize", "many", "must be a number".to_owned()),
    ] {
        let mut given = operator();
        given.insert(name.into(), value.into());
        let refused = template.instantiate(&given, pseudo()).expect_err("refused");
        assert_eq!(
            refused,
            TemplateError::Constraint {
                name: name.into(),
                constraint
            },
            "{name}={value}"
        );
    }
}

#[test]
fn a_resource_type_the_region_cannot_model_is_refused() {
    let template = changed(|resources| {
        let nat: serde_yaml::Value =
            serde_yaml::from_str("Type: AWS::EC2::NatGateway\nProperties: {}").unwrap();
        resources.insert("Nat".into(), nat);
    });
    let refused = template
        .instantiate(&operator(), pseudo())
        .expect_err("refused");
    assert_eq!(
        refused,
        TemplateError::Unmodelled {
            logical_id: "Nat".into(),
            kind: "AWS::EC2::NatGateway".into()
        }
    );
}

#[test]
fn dangling_references_and_cycles_are_refused() {
    let template = changed(|resources| {
        let rule =
            "Type: AWS::EC2::SecurityGroupIngress\nProperties:\n  GroupId: !Ref NoSuchGroup\n";
        resources.insert("Dangling".into(), serde_yaml::from_str(rule).unwrap());
    });
    let refused = template
        .instantiate(&operator(), pseudo())
        .expect_err("refused");
    assert_eq!(refused, TemplateError::Unresolved("NoSuchGroup".into()));

    let template = changed(|resources| {
        let groups: Vec<serde_yaml::Value> = resources
            .iter()
            .filter(|(_, r)| r["Type"].as_str() == Some("AWS::AutoScaling::AutoScalingGroup"))
            .map(|(name, _)| name.clone())
            .collect();
        let (first, last) = (
            groups.first().unwrap().clone(),
            groups.last().unwrap().clone(),
        );
        let first = resources.get_mut(&first).unwrap().as_mapping_mut().unwrap();
        first.insert("DependsOn".into(), serde_yaml::Value::Sequence(vec![last]));
    });
    let refused = template
        .instantiate(&operator(), pseudo())
        .expect_err("refused");
    assert!(matches!(refused, TemplateError::Circular(_)), "{refused}");
}

#[test]
fn intrinsic_functions_resolve_as_cloudformation_documents_them() {
    let template = Template::parse(
        r#"
Parameters:
  Names: {Type: CommaDelimitedList, Default: "a, b,c"}
  Env: {Type: String, Default: prod}
Mappings:
  Sizes: {prod: {Disk: 500}}
Conditions:
  IsProd: !Equals [!Ref Env, prod]
  NotProd: !Not [!Condition IsProd]
Resources:
  Group:
    Type: AWS::EC2::SecurityGroup
    Properties:
      Sub: !Sub "${AWS::Region}/${Env}/${!Literal}/${Group2.GroupId}"
      SubList: !Sub ["${X}-${Env}", {X: !Select [1, !Ref Names]}]
      Join: !Join ["+", !Ref Names]
      Zone: !Select [2, !GetAZs ""]
      Disk: !FindInMap [Sizes, !Ref Env, Disk]
      Split: !Split [",", "x,y"]
      Chosen: !If [NotProd, yes, !Ref AWS::NoValue]
      Kept: !If [IsProd, kept, dropped]
      List: [one, !Ref AWS::NoValue, two]
  Group2:
    Type: AWS::EC2::SecurityGroup
"#,
    )
    .expect("parses");
    let stack = template
        .instantiate(&BTreeMap::new(), pseudo())
        .expect("instantiate");
    let order: Vec<&str> = stack
        .resources()
        .iter()
        .map(|r| r.logical_id.as_str())
        .collect();
    assert_eq!(
        order,
        ["Group2", "Group"],
        "Fn::Sub's ${{Group2.GroupId}} makes a dependency"
    );
    assert_eq!(
        stack.properties("Group", &Fake).expect("resolve"),
        json!({
            "Sub": "eu-west-1/prod/${Literal}/Group2.GroupId",
            "SubList": "b-prod",
            "Join": "a+b+c",
            "Zone": "eu-west-1c",
            "Disk": 500,
            "Split": ["x", "y"],
            "Kept": "kept",
            "List": ["one", "two"],
        })
    );
}

#[test]
fn an_intrinsic_function_the_region_does_not_evaluate_is_refused() {
    let template = Template::parse(
        "Resources:\n  G:\n    Type: AWS::EC2::SecurityGroup\n    Properties:\n      X: !ImportValue other\n",
    )
    .expect("parses");
    let stack = template
        .instantiate(&BTreeMap::new(), pseudo())
        .expect("instantiate");
    let refused = stack.properties("G", &Fake).expect_err("refused");
    assert!(
        matches!(&refused, TemplateError::Intrinsic(m) if m.contains("Fn::ImportValue")),
        "{refused}"
    );
}

#[test]
fn ingress_rules_resolve_and_a_rule_the_region_cannot_enforce_is_refused() {
    use super::ingress::{ingress, Source};
    let stack = shipped_template()
        .instantiate(&operator(), pseudo())
        .expect("instantiate");
    let rules = ingress(&stack, &Fake).expect("enforceable");
    let client_cidr = default_of(&shipped_template(), "ClientCidr");
    assert!(
        rules
            .iter()
            .any(|r| r.source == Source::Cidr(client_cidr.parse().unwrap())),
        "{rules:?}"
    );
    assert!(
        rules
            .iter()
            .any(|r| matches!(&r.source, Source::Group(g) if *g == r.group)),
        "{rules:?}"
    );

    let template = changed(|resources| {
        let rule = "Type: AWS::EC2::SecurityGroupIngress\nProperties:\n  GroupId: !Ref BrokerSecurityGroup\n  IpProtocol: udp\n  FromPort: 53\n  ToPort: 53\n  CidrIp: 10.0.0.0/16\n";
        resources.insert("Udp".into(), serde_yaml::from_str(rule).unwrap());
    });
    let stack = template
        .instantiate(&operator(), pseudo())
        .expect("instantiate");
    let refused = ingress(&stack, &Fake).expect_err("refused");
    assert!(
        matches!(&refused, TemplateError::Unenforced { logical_id, .. } if logical_id == "Udp"),
        "{refused}"
    );
}

#[test]
fn a_copy_without_the_controller_rule_opens_no_controller_port() {
    let text = std::fs::read_to_string(shipped()).expect("read the shipped template");
    let opens_9093 = |text: &str| {
        let stack = Template::parse(text)
            .expect("parses")
            .instantiate(&operator(), pseudo())
            .expect("instantiates");
        ingress::ingress(&stack, &Fake)
            .expect("rules")
            .iter()
            .any(|rule| (rule.from_port..=rule.to_port).contains(&9093))
    };
    assert!(opens_9093(&text), "the shipped template opens 9093");
    let copy = without_resources(&text, &["BrokerToBrokerController"]).expect("removed");
    assert!(!opens_9093(&copy), "the copy still opens 9093");
    assert_eq!(
        without_resources(&text, &["NoSuchResource"]),
        Err(TemplateError::Unresolved("NoSuchResource".into()))
    );
}
