//! Parameters, conditions, rules and intrinsic functions, evaluated as CloudFormation evaluates them
//! (Intrinsic function reference,
//! <https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/intrinsic-function-reference.html>; Rule
//! functions, <https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/intrinsic-function-reference-rules.html>).
//! A function the region does not evaluate is refused, never passed through.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use serde_json::Value;

use super::{join, Physical, TemplateError};

/// Conditions may name conditions; deeper than this is a cycle.
const MAX_CONDITION_DEPTH: usize = 64;

/// The pseudo parameters of the stack being created (`AWS::Region`, `AWS::StackName` ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pseudo {
    /// `AWS::Region`
    pub region: String,
    /// `AWS::AccountId`
    pub account_id: String,
    /// `AWS::StackName`
    pub stack_name: String,
    /// `AWS::StackId`
    pub stack_id: String,
    /// What `Fn::GetAZs` returns: the region's zones.
    pub zones: Vec<String>,
}

impl Pseudo {
    fn get(&self, name: &str) -> Option<Value> {
        let text = match name {
            "AWS::Region" => self.region.clone(),
            "AWS::AccountId" => self.account_id.clone(),
            "AWS::StackName" => self.stack_name.clone(),
            "AWS::StackId" => self.stack_id.clone(),
            "AWS::Partition" => "aws".into(),
            "AWS::URLSuffix" => "amazonaws.com".into(),
            "AWS::NotificationARNs" => return Some(Value::Array(Vec::new())),
            _ => return None,
        };
        Some(Value::String(text))
    }
}

/// What intrinsic functions see: parameters, pseudo parameters, mappings and the conditions' values.
#[derive(Debug, Clone)]
pub struct Scope {
    parameters: BTreeMap<String, Value>,
    mappings: Value,
    pseudo: Pseudo,
    /// Each condition's value, once evaluated.
    pub conditions: BTreeMap<String, bool>,
}

/// No resource created yet: what parameters, rules and conditions may refer to.
struct Nothing;

impl Physical for Nothing {
    fn reference(&self, _: &str) -> Option<String> {
        None
    }
    fn attribute(&self, _: &str, _: &str) -> Option<Value> {
        None
    }
}

fn intrinsic(message: impl Into<String>) -> TemplateError {
    TemplateError::Intrinsic(message.into())
}

fn constraint(name: &str, constraint: impl Into<String>) -> TemplateError {
    TemplateError::Constraint {
        name: name.to_owned(),
        constraint: constraint.into(),
    }
}

/// A scalar as CloudFormation compares and substitutes it: as text.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The single intrinsic function an object is (`{"Ref": ...}`, `{"Fn::Sub": ...}`), if it is one.
fn function(value: &Value) -> Option<(&str, &Value)> {
    let object = value.as_object()?;
    if object.len() != 1 {
        return None;
    }
    let (key, argument) = object.iter().next()?;
    (key == "Ref" || key == "Condition" || key.starts_with("Fn::"))
        .then_some((key.as_str(), argument))
}

/// Each parameter's value: the operator's, else the declared `Default`, checked against its constraints.
pub fn parameters(
    declared: &[(String, Value)],
    given: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, Value>, TemplateError> {
    let unknown: Vec<&str> = given
        .keys()
        .filter(|name| !declared.iter().any(|(n, _)| n == *name))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(TemplateError::UnknownParameters(join(unknown)));
    }
    let mut values = BTreeMap::new();
    let mut missing = Vec::new();
    for (name, declaration) in declared {
        let value = match given.get(name) {
            Some(value) => value.clone(),
            None => match declaration.get("Default").and_then(text) {
                Some(default) => default,
                None => {
                    missing.push(name.as_str());
                    continue;
                }
            },
        };
        values.insert(name.clone(), checked(name, declaration, value)?);
    }
    if !missing.is_empty() {
        return Err(TemplateError::MissingParameters(join(missing)));
    }
    Ok(values)
}

/// A parameter value checked against its declaration (Type, AllowedValues, AllowedPattern, lengths, bounds).
fn checked(name: &str, declaration: &Value, value: String) -> Result<Value, TemplateError> {
    let kind = declaration
        .get("Type")
        .and_then(Value::as_str)
        .unwrap_or("String");
    let described = |fallback: String| match declaration.get("ConstraintDescription").and_then(text)
    {
        Some(description) => format!("failed to satisfy constraint: {description}"),
        None => fallback,
    };
    if let Some(allowed) = declaration.get("AllowedValues").and_then(Value::as_array) {
        if !allowed.iter().filter_map(text).any(|a| a == value) {
            return Err(constraint(
                name,
                described("must be one of AllowedValues".into()),
            ));
        }
    }
    if let Some(pattern) = declaration.get("AllowedPattern").and_then(Value::as_str) {
        let anchored = regex::Regex::new(&format!("^(?:{pattern})$"))
            .map_err(|e| intrinsic(format!("Parameter '{name}': AllowedPattern: {e}")))?;
        if !anchored.is_match(&value) {
            return Err(constraint(
                name,
                described(format!("must match pattern {pattern}")),
            ));
        }
    }
    let bound = |key: &str| {
        declaration
            .get(key)
            .and_then(text)
            .and_then(|t| t.parse::<f64>().ok())
    };
    let length = value.chars().count() as f64;
    if bound("MinLength").is_some_and(|min| length < min) {
        return Err(constraint(
            name,
            described("is shorter than MinLength".into()),
        ));
    }
    if bound("MaxLength").is_some_and(|max| length > max) {
        return Err(constraint(
            name,
            described("is longer than MaxLength".into()),
        ));
    }
    if kind == "Number" {
        let number: f64 = value
            .parse()
            .map_err(|_| constraint(name, "must be a number"))?;
        if let Some(min) = bound("MinValue").filter(|min| number < *min) {
            return Err(constraint(
                name,
                described(format!("must be a number not less than {min}")),
            ));
        }
        if let Some(max) = bound("MaxValue").filter(|max| number > *max) {
            return Err(constraint(
                name,
                described(format!("must be a number not greater than {max}")),
            ));
        }
    }
    if kind == "CommaDelimitedList" || kind.starts_with("List<") {
        return Ok(Value::Array(
            value
                .split(',')
                .map(|s| Value::String(s.trim().to_owned()))
                .collect(),
        ));
    }
    Ok(Value::String(value))
}

/// Every condition's value.
pub fn conditions(
    declared: &BTreeMap<String, Value>,
    scope: &Scope,
) -> Result<BTreeMap<String, bool>, TemplateError> {
    declared
        .iter()
        .map(|(name, condition)| Ok((name.clone(), scope.truth(condition, declared, 0)?)))
        .collect()
}

/// Refuses the stack with the `AssertDescription` of the first failing assertion of a rule that applies.
pub fn check_rule(name: &str, rule: &Value, scope: &Scope) -> Result<(), TemplateError> {
    let none = BTreeMap::new();
    if let Some(condition) = rule.get("RuleCondition") {
        if !scope.truth(condition, &none, 0)? {
            return Ok(());
        }
    }
    let assertions = rule
        .get("Assertions")
        .and_then(Value::as_array)
        .ok_or_else(|| TemplateError::Format(format!("Rule {name} has no Assertions")))?;
    for assertion in assertions {
        let assert = assertion.get("Assert").ok_or_else(|| {
            TemplateError::Format(format!("Rule {name}: an assertion without Assert"))
        })?;
        if !scope.truth(assert, &none, 0)? {
            let description = assertion
                .get("AssertDescription")
                .and_then(text)
                .unwrap_or_else(|| format!("Rule {name}: an assertion failed"));
            return Err(TemplateError::Rule {
                rule: name.to_owned(),
                description,
            });
        }
    }
    Ok(())
}

impl Scope {
    /// A scope with the given parameters and no conditions evaluated yet.
    pub fn new(parameters: BTreeMap<String, Value>, mappings: Value, pseudo: Pseudo) -> Self {
        Self {
            parameters,
            mappings,
            pseudo,
            conditions: BTreeMap::new(),
        }
    }

    /// The stack's pseudo parameters.
    pub fn pseudo(&self) -> &Pseudo {
        &self.pseudo
    }

    /// A parameter's value.
    pub fn parameter(&self, name: &str) -> Option<&Value> {
        self.parameters.get(name)
    }

    /// Whether `name` is a parameter or a pseudo parameter (not a resource).
    pub fn is_parameter(&self, name: &str) -> bool {
        self.parameters.contains_key(name) || name.starts_with("AWS::")
    }

    /// An evaluated condition's value; an undeclared one is refused.
    pub fn condition(&self, name: &str) -> Result<bool, TemplateError> {
        self.conditions
            .get(name)
            .copied()
            .ok_or_else(|| TemplateError::Format(format!("Unresolved condition dependency {name}")))
    }

    /// A condition or rule expression's truth (`Fn::Equals`, `Fn::Not`, `Fn::And`, `Fn::Or`, `Condition`,
    /// `Fn::Contains`); `declared` are the conditions a `Condition` may name before they are evaluated.
    fn truth(
        &self,
        expression: &Value,
        declared: &BTreeMap<String, Value>,
        depth: usize,
    ) -> Result<bool, TemplateError> {
        if depth > MAX_CONDITION_DEPTH {
            return Err(TemplateError::Circular("conditions".into()));
        }
        if let Some(b) = expression.as_bool() {
            return Ok(b);
        }
        let (name, argument) = function(expression)
            .ok_or_else(|| intrinsic(format!("not a condition: {expression}")))?;
        let arguments = || argument.as_array().map(Vec::as_slice).unwrap_or_default();
        let each = |a: &Value| self.truth(a, declared, depth + 1);
        match name {
            "Condition" => {
                let condition = argument.as_str().unwrap_or_default();
                match (self.conditions.get(condition), declared.get(condition)) {
                    (Some(value), _) => Ok(*value),
                    (None, Some(definition)) => self.truth(definition, declared, depth + 1),
                    (None, None) => self.condition(condition),
                }
            }
            "Fn::Equals" => match arguments() {
                [a, b] => Ok(self.resolve(a, &Nothing)? == self.resolve(b, &Nothing)?
                    || self.text_of(a)? == self.text_of(b)?),
                _ => Err(intrinsic("Fn::Equals takes two values")),
            },
            "Fn::Not" => match arguments() {
                [a] => Ok(!each(a)?),
                _ => Err(intrinsic("Fn::Not takes one condition")),
            },
            "Fn::And" => arguments()
                .iter()
                .try_fold(true, |all, a| Ok(all && each(a)?)),
            "Fn::Or" => arguments()
                .iter()
                .try_fold(false, |any, a| Ok(any || each(a)?)),
            "Fn::Contains" => match arguments() {
                [list, value] => {
                    let list = self.resolve(list, &Nothing)?.unwrap_or(Value::Null);
                    let value = self.text_of(value)?;
                    Ok(list
                        .as_array()
                        .is_some_and(|l| l.iter().any(|i| text(i) == value)))
                }
                _ => Err(intrinsic("Fn::Contains takes a list and a value")),
            },
            other => Err(intrinsic(format!(
                "the simulated region does not evaluate {other} in a condition or rule"
            ))),
        }
    }

    fn text_of(&self, value: &Value) -> Result<Option<String>, TemplateError> {
        Ok(self.resolve(value, &Nothing)?.as_ref().and_then(text))
    }

    /// Every parameter and resource a value names (`Ref`, `Fn::GetAtt`, `Fn::Sub`), in the branches of `Fn::If`
    /// its conditions choose.
    pub fn names(&self, value: &Value, names: &mut BTreeSet<String>) -> Result<(), TemplateError> {
        match (function(value), value) {
            (Some(("Ref", Value::String(name))), _) if name.starts_with("AWS::") => {}
            (Some(("Ref", Value::String(name))), _) => {
                names.insert(name.clone());
            }
            (Some(("Fn::GetAtt", argument)), _) => {
                if let Some(resource) = get_att(argument)?.0 {
                    names.insert(resource);
                }
            }
            (Some(("Fn::If", argument)), _) => match argument.as_array().map(Vec::as_slice) {
                Some([condition, yes, no]) => {
                    let chosen = if self.condition(condition.as_str().unwrap_or_default())? {
                        yes
                    } else {
                        no
                    };
                    self.names(chosen, names)?;
                }
                _ => return Err(intrinsic("Fn::If takes a condition and two values")),
            },
            (Some(("Fn::Sub", argument)), _) => {
                let (template, variables) = sub_parts(argument)?;
                for variable in variables.values() {
                    self.names(variable, names)?;
                }
                for (name, _) in placeholders(template)? {
                    let name = name.split('.').next().unwrap_or_default();
                    if !name.starts_with("AWS::") && !variables.contains_key(name) {
                        names.insert(name.to_owned());
                    }
                }
            }
            (_, Value::Array(items)) => items.iter().try_for_each(|i| self.names(i, names))?,
            (_, Value::Object(entries)) => {
                entries.values().try_for_each(|v| self.names(v, names))?
            }
            _ => {}
        }
        Ok(())
    }

    /// A value with every intrinsic function resolved; `None` is `AWS::NoValue` (the property is left out).
    pub fn resolve(
        &self,
        value: &Value,
        physical: &dyn Physical,
    ) -> Result<Option<Value>, TemplateError> {
        if let Some((name, argument)) = function(value) {
            return self.call(name, argument, physical);
        }
        Ok(Some(match value {
            Value::Array(items) => {
                let mut resolved = Vec::with_capacity(items.len());
                for item in items {
                    resolved.extend(self.resolve(item, physical)?);
                }
                Value::Array(resolved)
            }
            Value::Object(entries) => {
                let mut resolved = serde_json::Map::new();
                for (key, item) in entries {
                    if let Some(item) = self.resolve(item, physical)? {
                        resolved.insert(key.clone(), item);
                    }
                }
                Value::Object(resolved)
            }
            scalar => scalar.clone(),
        }))
    }

    fn resolved(&self, value: &Value, physical: &dyn Physical) -> Result<Value, TemplateError> {
        self.resolve(value, physical)?
            .ok_or_else(|| intrinsic("AWS::NoValue where a value is needed"))
    }

    fn resolved_text(
        &self,
        value: &Value,
        physical: &dyn Physical,
        what: &str,
    ) -> Result<String, TemplateError> {
        text(&self.resolved(value, physical)?)
            .ok_or_else(|| intrinsic(format!("{what} needs a string")))
    }

    fn call(
        &self,
        name: &str,
        argument: &Value,
        physical: &dyn Physical,
    ) -> Result<Option<Value>, TemplateError> {
        let arguments = || argument.as_array().map(Vec::as_slice).unwrap_or_default();
        let value = match name {
            "Ref" => return self.reference(argument.as_str().unwrap_or_default(), physical),
            "Fn::GetAtt" => {
                let (resource, attribute) = get_att(argument)?;
                let (resource, attribute) =
                    (resource.unwrap_or_default(), attribute.unwrap_or_default());
                physical
                    .attribute(&resource, &attribute)
                    .ok_or_else(|| TemplateError::Unresolved(format!("{resource}.{attribute}")))?
            }
            "Fn::Sub" => Value::String(self.sub(argument, physical)?),
            "Fn::If" => match arguments() {
                [condition, yes, no] => {
                    let chosen = if self.condition(condition.as_str().unwrap_or_default())? {
                        yes
                    } else {
                        no
                    };
                    return self.resolve(chosen, physical);
                }
                _ => return Err(intrinsic("Fn::If takes a condition and two values")),
            },
            "Fn::Base64" => Value::String(
                base64::engine::general_purpose::STANDARD
                    .encode(self.resolved_text(argument, physical, name)?),
            ),
            "Fn::Join" | "Fn::Select" | "Fn::Split" => {
                self.list_function(name, arguments(), physical)?
            }
            "Fn::GetAZs" => Value::Array(
                self.pseudo
                    .zones
                    .iter()
                    .cloned()
                    .map(Value::String)
                    .collect(),
            ),
            "Fn::FindInMap" => self.find_in_map(arguments(), physical)?,
            other => {
                return Err(intrinsic(format!(
                    "the simulated region does not evaluate {other} in a value"
                )))
            }
        };
        Ok(Some(value))
    }

    /// `Fn::Join`, `Fn::Select` and `Fn::Split`.
    fn list_function(
        &self,
        name: &str,
        arguments: &[Value],
        physical: &dyn Physical,
    ) -> Result<Value, TemplateError> {
        Ok(match name {
            "Fn::Join" => match arguments {
                [delimiter, list] => {
                    let delimiter = self.resolved_text(delimiter, physical, name)?;
                    let list = self.resolved(list, physical)?;
                    let items = list
                        .as_array()
                        .ok_or_else(|| intrinsic("Fn::Join needs a list"))?;
                    let items: Option<Vec<String>> = items.iter().map(text).collect();
                    Value::String(
                        items
                            .ok_or_else(|| intrinsic("Fn::Join needs strings"))?
                            .join(&delimiter),
                    )
                }
                _ => return Err(intrinsic("Fn::Join takes a delimiter and a list")),
            },
            "Fn::Select" => match arguments {
                [index, list] => {
                    let index: usize = self
                        .resolved_text(index, physical, name)?
                        .parse()
                        .map_err(|_| intrinsic("Fn::Select needs an index"))?;
                    let list = self.resolved(list, physical)?;
                    list.as_array()
                        .and_then(|l| l.get(index).cloned())
                        .ok_or_else(|| intrinsic(format!("Fn::Select: no item {index}")))?
                }
                _ => return Err(intrinsic("Fn::Select takes an index and a list")),
            },
            "Fn::Split" => match arguments {
                [delimiter, source] => {
                    let delimiter = self.resolved_text(delimiter, physical, name)?;
                    let source = self.resolved_text(source, physical, name)?;
                    Value::Array(
                        source
                            .split(delimiter.as_str())
                            .map(|s| Value::String(s.into()))
                            .collect(),
                    )
                }
                _ => return Err(intrinsic("Fn::Split takes a delimiter and a string")),
            },
            _ => return Err(intrinsic(format!("{name} is not a list function"))),
        })
    }

    fn reference(
        &self,
        name: &str,
        physical: &dyn Physical,
    ) -> Result<Option<Value>, TemplateError> {
        if name == "AWS::NoValue" {
            return Ok(None);
        }
        if let Some(value) = self
            .pseudo
            .get(name)
            .or_else(|| self.parameters.get(name).cloned())
        {
            return Ok(Some(value));
        }
        physical
            .reference(name)
            .map(|id| Some(Value::String(id)))
            .ok_or_else(|| TemplateError::Unresolved(name.to_owned()))
    }

    fn find_in_map(
        &self,
        arguments: &[Value],
        physical: &dyn Physical,
    ) -> Result<Value, TemplateError> {
        let [map, top, second] = arguments else {
            return Err(intrinsic(
                "Fn::FindInMap takes a map, a top-level key and a second-level key",
            ));
        };
        let keys = [map, top, second]
            .into_iter()
            .map(|k| self.resolved_text(k, physical, "Fn::FindInMap"))
            .collect::<Result<Vec<_>, _>>()?;
        keys.iter()
            .try_fold(&self.mappings, |at, key| at.get(key))
            .cloned()
            .ok_or_else(|| intrinsic(format!("Fn::FindInMap: no {}", keys.join("."))))
    }

    fn sub(&self, argument: &Value, physical: &dyn Physical) -> Result<String, TemplateError> {
        let (template, declared) = sub_parts(argument)?;
        let mut variables = BTreeMap::new();
        for (name, value) in declared {
            variables.insert(
                name.clone(),
                self.resolved_text(value, physical, "Fn::Sub")?,
            );
        }
        let mut out = String::new();
        let mut cursor = 0;
        for (name, (start, end)) in placeholders(template)? {
            out.push_str(&template[cursor..start].replace("${!", "${"));
            let value = match variables.get(&name) {
                Some(value) => Some(Value::String(value.clone())),
                None => match name.split_once('.') {
                    Some((resource, attribute)) if !self.is_parameter(resource) => {
                        physical.attribute(resource, attribute)
                    }
                    _ => self.reference(&name, physical)?,
                },
            };
            let value = value.as_ref().and_then(text);
            out.push_str(&value.ok_or_else(|| TemplateError::Unresolved(name.clone()))?);
            cursor = end;
        }
        out.push_str(&template[cursor..].replace("${!", "${"));
        Ok(out)
    }
}

/// `Fn::Sub`'s string and its variables (the list form), or the string alone.
fn sub_parts(argument: &Value) -> Result<(&str, BTreeMap<String, &Value>), TemplateError> {
    match argument {
        Value::String(template) => Ok((template, BTreeMap::new())),
        Value::Array(parts) => match parts.as_slice() {
            [Value::String(template), Value::Object(variables)] => Ok((
                template,
                variables.iter().map(|(k, v)| (k.clone(), v)).collect(),
            )),
            _ => Err(intrinsic(
                "Fn::Sub takes a string, or a string and a map of variables",
            )),
        },
        _ => Err(intrinsic("Fn::Sub takes a string")),
    }
}

/// A `${Name}` of an `Fn::Sub` string: the name and its byte span.
type Placeholder = (String, (usize, usize));

/// The `${Name}` placeholders of an `Fn::Sub` string with their byte spans (`${!Literal}` is not one).
fn placeholders(template: &str) -> Result<Vec<Placeholder>, TemplateError> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(offset) = template[from..].find("${") {
        let start = from + offset;
        let close = template[start..]
            .find('}')
            .ok_or_else(|| intrinsic("Fn::Sub: an unclosed ${"))?;
        let end = start + close + 1;
        let name = &template[start + 2..end - 1];
        if !name.starts_with('!') {
            found.push((name.to_owned(), (start, end)));
        }
        from = end;
    }
    Ok(found)
}

/// `Fn::GetAtt`'s resource and attribute (`[A, B]`, or `"A.B"`).
fn get_att(argument: &Value) -> Result<(Option<String>, Option<String>), TemplateError> {
    match argument {
        Value::Array(parts) => match parts.as_slice() {
            [Value::String(resource), Value::String(attribute)] => {
                Ok((Some(resource.clone()), Some(attribute.clone())))
            }
            _ => Err(intrinsic("Fn::GetAtt takes a resource and an attribute")),
        },
        Value::String(dotted) => match dotted.split_once('.') {
            Some((resource, attribute)) => Ok((Some(resource.into()), Some(attribute.into()))),
            None => Err(intrinsic("Fn::GetAtt takes a resource and an attribute")),
        },
        _ => Err(intrinsic("Fn::GetAtt takes a resource and an attribute")),
    }
}
