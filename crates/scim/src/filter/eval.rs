//! Evaluates a filter against a JSON resource (RFC 7644 §3.4.2.2).
//!
//! This is the reference semantics; the SQL translation in `roster-store`
//! is tested against it. Choices the RFC leaves open:
//!
//! * `ne` is exactly `not eq`: a resource *without* the attribute matches
//!   `x ne "v"`, and a multi-valued attribute matches `ne` only when *no*
//!   value equals the operand.
//! * `eq null` matches when the attribute is absent, null or an empty array
//!   (RFC 7643 §2.5 treats these as the same state); `ne null` is its
//!   negation.
//! * Ordering operators (`gt ge lt le`) on booleans, complex values or
//!   mismatched types are simply false (the parser already rejects ordering
//!   against `true`/`false`/`null`).
//! * `dateTime` attributes (e.g. `meta.lastModified`) compare
//!   chronologically when both sides parse as RFC 3339; otherwise as strings.
//! * A complex value compared without a sub-attribute (RFC 7644's own
//!   example `emails co "example.com"`) is compared through its `value`.
//! * String comparisons are case-sensitive only for `caseExact` attributes;
//!   unknown attributes compare case-insensitively.

use std::cmp::Ordering;

use serde_json::Value;

use super::ast::{AttrPath, CompValue, CompareOp, Filter};
use crate::json::values_at;
use crate::schema::{AttrType, AttributeDef, ResourceKind, attribute_def};

/// Evaluation context: the resource kind (for schema rules) and, inside a
/// value path, the multi-valued attribute the relative paths belong to.
#[derive(Clone, Copy)]
struct Ctx<'p> {
    kind: ResourceKind,
    parent: Option<&'p AttrPath>,
}

impl Ctx<'_> {
    fn definition(&self, path: &AttrPath) -> Option<&'static AttributeDef> {
        match self.parent {
            None => attribute_def(self.kind, path),
            Some(parent) => attribute_def(
                self.kind,
                &AttrPath {
                    schema: parent.schema.clone(),
                    name: parent.name.clone(),
                    sub_attr: Some(path.name.clone()),
                },
            ),
        }
    }
}

/// Whether `resource` matches `filter`. The kind (User or Group) is taken
/// from the resource's `schemas`.
pub(crate) fn matches(filter: &Filter, resource: &Value) -> bool {
    let ctx = Ctx {
        kind: ResourceKind::of_resource(resource),
        parent: None,
    };
    eval(filter, resource, ctx)
}

/// Like [`matches`] with an explicit kind.
pub(crate) fn matches_kind(filter: &Filter, resource: &Value, kind: ResourceKind) -> bool {
    eval(filter, resource, Ctx { kind, parent: None })
}

/// Evaluates a value filter against one element of `parent`.
pub(crate) fn matches_element(
    filter: &Filter,
    element: &Value,
    kind: ResourceKind,
    parent: &AttrPath,
) -> bool {
    eval(
        filter,
        element,
        Ctx {
            kind,
            parent: Some(parent),
        },
    )
}

fn eval(filter: &Filter, node: &Value, ctx: Ctx<'_>) -> bool {
    match filter {
        Filter::And(l, r) => eval(l, node, ctx) && eval(r, node, ctx),
        Filter::Or(l, r) => eval(l, node, ctx) || eval(r, node, ctx),
        Filter::Not(inner) => !eval(inner, node, ctx),
        Filter::Present(path) => values_at(node, path).into_iter().any(is_non_empty),
        Filter::Compare { path, op, value } => {
            let def = ctx.definition(path);
            compare_attribute(&values_at(node, path), *op, value, def)
        }
        Filter::ValuePath { attr, filter } => {
            let inner = Ctx {
                kind: ctx.kind,
                parent: Some(attr),
            };
            values_at(node, attr)
                .into_iter()
                .any(|element| eval(filter, element, inner))
        }
    }
}

/// RFC 7644 `pr`: a non-empty value, or a non-empty node for complex ones.
pub(crate) fn is_non_empty(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => a.iter().any(is_non_empty),
        Value::Object(o) => o.values().any(is_non_empty),
        Value::Bool(_) | Value::Number(_) => true,
    }
}

fn compare_attribute(
    values: &[&Value],
    op: CompareOp,
    operand: &CompValue,
    def: Option<&AttributeDef>,
) -> bool {
    match op {
        CompareOp::Ne => !compare_attribute(values, CompareOp::Eq, operand, def),
        CompareOp::Eq if *operand == CompValue::Null => values.iter().all(|v| v.is_null()),
        _ => values.iter().any(|v| compare_one(v, op, operand, def)),
    }
}

fn compare_one(
    actual: &Value,
    op: CompareOp,
    operand: &CompValue,
    def: Option<&AttributeDef>,
) -> bool {
    match (actual, operand) {
        // RFC 7644's own examples compare complex multi-valued attributes
        // directly (`emails co "example.com"`): use their `value`.
        (Value::Object(o), _) => crate::json::get_ci(o, "value").is_some_and(|v| {
            !v.is_object() && compare_one(v, op, operand, def.and_then(|d| d.sub("value")).or(def))
        }),
        (Value::String(a), CompValue::String(b)) => compare_strings(a, op, b, def),
        (Value::Number(a), CompValue::Number(b)) => {
            compare_numbers(a, b).is_some_and(|ord| ordering_matches(op, ord))
        }
        (Value::Bool(a), CompValue::Bool(b)) => op == CompareOp::Eq && a == b,
        _ => false,
    }
}

fn compare_strings(a: &str, op: CompareOp, b: &str, def: Option<&AttributeDef>) -> bool {
    if def.is_some_and(|d| d.ty == AttrType::DateTime)
        && let Some(ord) = compare_datetimes(a, b)
        && !matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew)
    {
        return ordering_matches(op, ord);
    }
    let case_exact = def.is_some_and(|d| d.case_exact);
    let (a, b) = if case_exact {
        (a.to_owned(), b.to_owned())
    } else {
        (crate::text::fold(a), crate::text::fold(b))
    };
    match op {
        CompareOp::Co => a.contains(&b),
        CompareOp::Sw => a.starts_with(&b),
        CompareOp::Ew => a.ends_with(&b),
        _ => ordering_matches(op, a.cmp(&b)),
    }
}

fn compare_datetimes(a: &str, b: &str) -> Option<Ordering> {
    let a = chrono::DateTime::parse_from_rfc3339(a).ok()?;
    let b = chrono::DateTime::parse_from_rfc3339(b).ok()?;
    Some(a.cmp(&b))
}

fn compare_numbers(a: &serde_json::Number, b: &serde_json::Number) -> Option<Ordering> {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return Some(x.cmp(&y));
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return Some(x.cmp(&y));
    }
    a.as_f64()?.partial_cmp(&b.as_f64()?)
}

fn ordering_matches(op: CompareOp, ord: Ordering) -> bool {
    match op {
        CompareOp::Eq => ord == Ordering::Equal,
        CompareOp::Ne => ord != Ordering::Equal,
        CompareOp::Gt => ord == Ordering::Greater,
        CompareOp::Ge => ord != Ordering::Less,
        CompareOp::Lt => ord == Ordering::Less,
        CompareOp::Le => ord != Ordering::Greater,
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}
