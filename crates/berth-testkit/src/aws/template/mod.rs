//! The simulated region's reader of CloudFormation templates: the shipped `docs/examples/berth-cluster.yaml` is
//! the region's source of truth, so the region reads that file itself instead of a copy of its values in Rust.
//!
//! The YAML is parsed by a real YAML library; CloudFormation's short forms (`!Ref`, `!Sub`, `!GetAtt`, `!If` ...)
//! arrive as YAML tags and are turned into their long forms (`Ref`, `Fn::Sub` ...) before anything reads them.
//! Instantiating a template with an operator's parameters does what CloudFormation does before it creates a
//! single resource, and refuses what it refuses, with its texts where AWS documents or returns one:
//!
//! * Parameters: a given parameter the template does not declare ("Parameters: [X] do not exist in the
//!   template"), a parameter with neither a value nor a `Default` ("Parameters: [X] must have values"), a value
//!   outside `AllowedValues`, not matching `AllowedPattern`, or a `Number` outside `MinValue`/`MaxValue` are
//!   refused (Parameters section reference,
//!   <https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/parameters-section-structure.html>).
//! * Rules: a rule whose `RuleCondition` holds and one of whose `Assertions` fails refuses the stack with that
//!   assertion's `AssertDescription` (Rules section reference,
//!   <https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/rules-section-structure.html>).
//! * Conditions decide which resources exist; a resource whose `Condition` is false is not created, and a `Ref`,
//!   `Fn::GetAtt`, `Fn::Sub` or `DependsOn` naming no parameter and no created resource is refused ("Template
//!   format error: Unresolved resource dependencies [X] in the Resources block of the template"), as is a cycle
//!   ("Circular dependency between resources: [...]") (Conditions section and DependsOn attribute references).
//! * A resource type the simulated region cannot model is refused loudly, never skipped ([`Kind`]).
//! * Resources are created in dependency order: after every resource named by `DependsOn`, `Ref`, `Fn::GetAtt`
//!   or `Fn::Sub` (DependsOn attribute reference).
//!
//! Property values are resolved on demand ([`Stack::properties`]), since `Ref` and `Fn::GetAtt` of a resource
//! need the physical ids of resources created before it ([`Physical`]).

pub mod creation;
#[cfg(test)]
mod creation_tests;
pub mod ec2;
#[cfg(test)]
mod ec2_tests;
mod eval;
pub mod ingress;
#[cfg(test)]
mod tests;
pub mod update;
#[cfg(test)]
mod update_tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

pub use eval::Pseudo;

/// A template the region refuses, or a value it cannot resolve.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    /// The file could not be read.
    #[error("template {path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// Not a YAML (or JSON) template CloudFormation would accept.
    #[error("Template format error: {0}")]
    Format(String),
    /// A given parameter the template does not declare.
    #[error("Parameters: [{0}] do not exist in the template")]
    UnknownParameters(String),
    /// Parameters with neither a value nor a default.
    #[error("Parameters: [{0}] must have values")]
    MissingParameters(String),
    /// A parameter value its constraints refuse.
    #[error("Parameter '{name}' {constraint}")]
    Constraint {
        /// The parameter.
        name: String,
        /// What it must be.
        constraint: String,
    },
    /// A rule's assertion failed: its `AssertDescription`.
    #[error("{description}")]
    Rule {
        /// The rule's name.
        rule: String,
        /// The assertion's description.
        description: String,
    },
    /// A reference to nothing the stack creates.
    #[error("Template format error: Unresolved resource dependencies [{0}] in the Resources block of the template")]
    Unresolved(String),
    /// A dependency cycle.
    #[error("Circular dependency between resources: [{0}]")]
    Circular(String),
    /// A resource type the simulated region has no model of.
    #[error("resource {logical_id}: the simulated region cannot model type {kind}; refusing the template rather than skipping it")]
    Unmodelled {
        /// The resource.
        logical_id: String,
        /// Its `Type`.
        kind: String,
    },
    /// A property the simulated region cannot enforce as declared.
    #[error("resource {logical_id}: the simulated region cannot enforce {what}; refusing the template rather than ignoring it")]
    Unenforced {
        /// The resource.
        logical_id: String,
        /// What.
        what: String,
    },
    /// An intrinsic function used wrongly, or one the region does not evaluate.
    #[error("Template error: {0}")]
    Intrinsic(String),
}

/// The resource types the simulated region models, and what it does with each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `AWS::EC2::SecurityGroup`: created in EC2 (moto); its ingress enforced between simulated hosts.
    SecurityGroup,
    /// `AWS::EC2::SecurityGroupIngress`: a rule added to its group.
    SecurityGroupIngress,
    /// `AWS::EC2::NetworkInterface`: created in EC2 with its fixed address, groups and tags.
    NetworkInterface,
    /// `AWS::EC2::Volume`: created in EC2 with its tags (a loop device backs it on the simulated host).
    Volume,
    /// `AWS::EC2::LaunchTemplate`: its user data is what each simulated host runs at boot.
    LaunchTemplate,
    /// `AWS::AutoScaling::AutoScalingGroup`: a simulated group with its lifecycle hooks and policies.
    AutoScalingGroup,
    /// `AWS::AutoScaling::LifecycleHook`: a hook added to its group once created, holding only the instances
    /// launched after it ([`creation`]).
    LifecycleHook,
    /// `AWS::IAM::Role`, `AWS::IAM::Policy`, `AWS::IAM::InstanceProfile`: given ids and ARNs; the simulated
    /// region does not evaluate IAM policies (moto does not either).
    Iam,
}

impl Kind {
    /// The kind of a template `Type`, or `None` for one the region cannot model.
    pub fn of(kind: &str) -> Option<Self> {
        Some(match kind {
            "AWS::EC2::SecurityGroup" => Kind::SecurityGroup,
            "AWS::EC2::SecurityGroupIngress" => Kind::SecurityGroupIngress,
            "AWS::EC2::NetworkInterface" => Kind::NetworkInterface,
            "AWS::EC2::Volume" => Kind::Volume,
            "AWS::EC2::LaunchTemplate" => Kind::LaunchTemplate,
            "AWS::AutoScaling::AutoScalingGroup" => Kind::AutoScalingGroup,
            "AWS::AutoScaling::LifecycleHook" => Kind::LifecycleHook,
            "AWS::IAM::Role" | "AWS::IAM::Policy" | "AWS::IAM::InstanceProfile" => Kind::Iam,
            _ => return None,
        })
    }
}

/// A parsed template: each section's entries in the template's order, intrinsic functions in long form.
#[derive(Debug, Clone)]
pub struct Template {
    parameters: Vec<(String, Value)>,
    rules: Vec<(String, Value)>,
    conditions: BTreeMap<String, Value>,
    mappings: Value,
    resources: Vec<(String, Value)>,
    outputs: Vec<(String, Value)>,
}

/// Where the resources created so far are: what `Ref` and `Fn::GetAtt` of a resource return.
pub trait Physical {
    /// `Ref` of a created resource (its physical id).
    fn reference(&self, logical_id: &str) -> Option<String>;
    /// `Fn::GetAtt` of a created resource.
    fn attribute(&self, logical_id: &str, attribute: &str) -> Option<Value>;
}

/// One resource the stack creates.
#[derive(Debug, Clone)]
pub struct Declared {
    /// Its logical id.
    pub logical_id: String,
    /// Its `Type`.
    pub kind: Kind,
    /// Every resource it depends on (`DependsOn` and the ones its properties name).
    pub depends_on: BTreeSet<String>,
    /// Its `CreationPolicy` (intrinsics unresolved), if any.
    pub creation_policy: Option<Value>,
    /// Its `UpdatePolicy` (intrinsics unresolved), if any.
    pub update_policy: Option<Value>,
}

/// A template instantiated with parameters: the resources to create, in creation order.
#[derive(Debug, Clone)]
pub struct Stack {
    template: Template,
    scope: eval::Scope,
    resources: Vec<Declared>,
}

/// The shipped template, `docs/examples/berth-cluster.yaml` in the source tree.
pub fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/berth-cluster.yaml")
}

/// The template text `text` with the resources `logical_ids` removed (parsed and written again as YAML, short
/// forms kept): a copy of a template missing something, for a test to show what that changes. Refuses a
/// logical id the template does not declare, so such a test cannot pass by removing nothing.
pub fn without_resources(text: &str, logical_ids: &[&str]) -> Result<String, TemplateError> {
    let mut yaml: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| TemplateError::Format(e.to_string()))?;
    let resources = yaml
        .get_mut("Resources")
        .and_then(serde_yaml::Value::as_mapping_mut)
        .ok_or_else(|| TemplateError::Format("no Resources mapping".into()))?;
    for logical_id in logical_ids {
        if resources.remove(*logical_id).is_none() {
            return Err(TemplateError::Unresolved((*logical_id).to_owned()));
        }
    }
    serde_yaml::to_string(&yaml).map_err(|e| TemplateError::Format(e.to_string()))
}

impl Template {
    /// Reads and parses a template file.
    pub fn load(path: &Path) -> Result<Self, TemplateError> {
        let text = std::fs::read_to_string(path).map_err(|e| TemplateError::Read {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Self::parse(&text)
    }

    /// Parses a YAML (or JSON) template.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let yaml: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|e| TemplateError::Format(e.to_string()))?;
        let top = match yaml {
            serde_yaml::Value::Mapping(top) => top,
            _ => return Err(TemplateError::Format("a template is a mapping".into())),
        };
        let mut sections = BTreeMap::new();
        for (key, value) in top {
            let key = scalar_key(&key)?;
            sections.insert(key, value);
        }
        let section = |name: &str| -> Result<Vec<(String, Value)>, TemplateError> {
            match sections.get(name) {
                None => Ok(Vec::new()),
                Some(serde_yaml::Value::Mapping(entries)) => entries
                    .iter()
                    .map(|(k, v)| Ok((scalar_key(k)?, long_form(v)?)))
                    .collect(),
                Some(_) => Err(TemplateError::Format(format!("{name} must be a mapping"))),
            }
        };
        let template = Self {
            parameters: section("Parameters")?,
            rules: section("Rules")?,
            conditions: section("Conditions")?.into_iter().collect(),
            mappings: Value::Object(section("Mappings")?.into_iter().collect()),
            resources: section("Resources")?,
            outputs: section("Outputs")?,
        };
        if template.resources.is_empty() {
            return Err(TemplateError::Format(
                "At least one Resources member must be defined.".into(),
            ));
        }
        Ok(template)
    }

    /// A parameter's declaration (`Type`, `Default` ...), if the template declares it.
    pub fn parameter(&self, name: &str) -> Option<&Value> {
        self.parameters
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, declaration)| declaration)
    }

    /// A resource's declaration as written (intrinsics in long form), if the template declares it.
    pub fn resource(&self, logical_id: &str) -> Option<&Value> {
        self.resources
            .iter()
            .find(|(n, _)| n == logical_id)
            .map(|(_, declaration)| declaration)
    }

    /// A rule's declaration, if the template declares it.
    pub fn rule(&self, name: &str) -> Option<&Value> {
        self.rules
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, declaration)| declaration)
    }

    /// Instantiates the template with the operator's parameter values: resolves parameters, evaluates the
    /// rules and conditions, checks every resource's type and orders the resources for creation.
    pub fn instantiate(
        &self,
        given: &BTreeMap<String, String>,
        pseudo: Pseudo,
    ) -> Result<Stack, TemplateError> {
        let parameters = eval::parameters(&self.parameters, given)?;
        let mut scope = eval::Scope::new(parameters, self.mappings.clone(), pseudo);
        scope.conditions = eval::conditions(&self.conditions, &scope)?;
        for (name, rule) in &self.rules {
            eval::check_rule(name, rule, &scope)?;
        }
        let resources = self.created(&scope)?;
        let resources = order(resources)?;
        Ok(Stack {
            template: self.clone(),
            scope,
            resources,
        })
    }

    /// The resources whose condition holds, with their dependencies; refuses unmodelled types and references
    /// to nothing.
    fn created(&self, scope: &eval::Scope) -> Result<Vec<Declared>, TemplateError> {
        let mut created = Vec::new();
        for (logical_id, declaration) in &self.resources {
            if let Some(condition) = declaration.get("Condition") {
                if !scope.condition(condition.as_str().unwrap_or_default())? {
                    continue;
                }
            }
            let kind = declaration
                .get("Type")
                .and_then(Value::as_str)
                .ok_or_else(|| TemplateError::Format(format!("{logical_id} has no Type")))?;
            let kind = Kind::of(kind).ok_or_else(|| TemplateError::Unmodelled {
                logical_id: logical_id.clone(),
                kind: kind.to_owned(),
            })?;
            let mut depends_on = match declaration.get("DependsOn") {
                None => BTreeSet::new(),
                Some(Value::String(one)) => BTreeSet::from([one.clone()]),
                Some(Value::Array(many)) => many
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                Some(_) => return Err(TemplateError::Format(format!("{logical_id}: DependsOn"))),
            };
            let mut named = BTreeSet::new();
            for section in ["Properties", "CreationPolicy", "UpdatePolicy"] {
                if let Some(value) = declaration.get(section) {
                    scope.names(value, &mut named)?;
                }
            }
            depends_on.extend(named.into_iter().filter(|n| !scope.is_parameter(n)));
            created.push(Declared {
                logical_id: logical_id.clone(),
                kind,
                depends_on,
                creation_policy: declaration.get("CreationPolicy").cloned(),
                update_policy: declaration.get("UpdatePolicy").cloned(),
            });
        }
        let exists: BTreeSet<&str> = created.iter().map(|r| r.logical_id.as_str()).collect();
        let unresolved: BTreeSet<&str> = created
            .iter()
            .flat_map(|r| r.depends_on.iter().map(String::as_str))
            .filter(|name| !exists.contains(name))
            .collect();
        if !unresolved.is_empty() {
            return Err(TemplateError::Unresolved(join(unresolved)));
        }
        Ok(created)
    }
}

impl Stack {
    /// The resources to create, in creation order (each after everything it depends on).
    pub fn resources(&self) -> &[Declared] {
        &self.resources
    }

    /// The resolved value of a parameter.
    pub fn parameter(&self, name: &str) -> Option<&Value> {
        self.scope.parameter(name)
    }

    /// A condition's value.
    pub fn condition(&self, name: &str) -> Option<bool> {
        self.scope.conditions.get(name).copied()
    }

    /// A resource's `Properties` with every intrinsic function resolved (`AWS::NoValue` removed); `Ref` and
    /// `Fn::GetAtt` of resources come from `physical` (the resources created so far).
    pub fn properties(
        &self,
        logical_id: &str,
        physical: &dyn Physical,
    ) -> Result<Value, TemplateError> {
        let declaration = self
            .template
            .resource(logical_id)
            .ok_or_else(|| TemplateError::Unresolved(logical_id.to_owned()))?;
        match declaration.get("Properties") {
            None => Ok(Value::Object(Default::default())),
            Some(properties) => Ok(self
                .scope
                .resolve(properties, physical)?
                .unwrap_or(Value::Null)),
        }
    }

    /// The stack's outputs, resolved.
    pub fn outputs(
        &self,
        physical: &dyn Physical,
    ) -> Result<BTreeMap<String, Value>, TemplateError> {
        let mut outputs = BTreeMap::new();
        for (name, output) in &self.template.outputs {
            if let Some(condition) = output.get("Condition").and_then(Value::as_str) {
                if !self.scope.condition(condition)? {
                    continue;
                }
            }
            let value = output.get("Value").unwrap_or(&Value::Null);
            if let Some(value) = self.scope.resolve(value, physical)? {
                outputs.insert(name.clone(), value);
            }
        }
        Ok(outputs)
    }
}

/// Orders resources so each comes after its dependencies (Kahn's algorithm, ties in template order).
fn order(mut pending: Vec<Declared>) -> Result<Vec<Declared>, TemplateError> {
    let mut ordered: Vec<Declared> = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        let ready = pending.iter().position(|r| {
            r.depends_on
                .iter()
                .all(|d| ordered.iter().any(|o| &o.logical_id == d))
        });
        match ready {
            Some(index) => ordered.push(pending.remove(index)),
            None => {
                return Err(TemplateError::Circular(join(
                    pending.iter().map(|r| r.logical_id.as_str()),
                )))
            }
        }
    }
    Ok(ordered)
}

fn join<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names.into_iter().collect::<Vec<_>>().join(", ")
}

fn scalar_key(key: &serde_yaml::Value) -> Result<String, TemplateError> {
    match key {
        serde_yaml::Value::String(s) => Ok(s.clone()),
        serde_yaml::Value::Number(n) => Ok(n.to_string()),
        serde_yaml::Value::Bool(b) => Ok(b.to_string()),
        other => Err(TemplateError::Format(format!(
            "a mapping key must be a scalar, not {other:?}"
        ))),
    }
}

/// A YAML value as JSON, every short form (`!Ref X`, `!GetAtt A.B`, `!Sub ...`) in its long form.
fn long_form(value: &serde_yaml::Value) -> Result<Value, TemplateError> {
    use serde_yaml::Value as Y;
    Ok(match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(*b),
        Y::Number(n) => {
            serde_json::to_value(n).map_err(|e| TemplateError::Format(e.to_string()))?
        }
        Y::String(s) => Value::String(s.clone()),
        Y::Sequence(items) => Value::Array(items.iter().map(long_form).collect::<Result<_, _>>()?),
        Y::Mapping(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| Ok((scalar_key(k)?, long_form(v)?)))
                .collect::<Result<_, TemplateError>>()?,
        ),
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let inner = long_form(&tagged.value)?;
            let (key, inner) = match (name, inner) {
                ("Ref" | "Condition", inner) => (name.to_owned(), inner),
                ("GetAtt", Value::String(dotted)) => {
                    let (resource, attribute) = dotted.split_once('.').ok_or_else(|| {
                        TemplateError::Format(format!("!GetAtt {dotted}: no attribute"))
                    })?;
                    (
                        "Fn::GetAtt".into(),
                        serde_json::json!([resource, attribute]),
                    )
                }
                (name, inner) => (format!("Fn::{name}"), inner),
            };
            Value::Object([(key, inner)].into_iter().collect())
        }
    })
}
