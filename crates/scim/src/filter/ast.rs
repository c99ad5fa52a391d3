//! The filter AST (RFC 7644 §3.4.2.2). Shared by the evaluator, the PATCH
//! engine and the SQL translation in `roster-store`.

use std::fmt;

/// An attribute path: `[schemaURN ":"] name ["." subAttr]`.
///
/// Names keep the case they were written in; comparisons of names must be
/// case-insensitive (RFC 7643 §2.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttrPath {
    /// Schema URN prefix as written, e.g.
    /// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User`.
    pub schema: Option<String>,
    /// Top-level attribute name, e.g. `emails`.
    pub name: String,
    /// Sub-attribute name, e.g. `value` in `emails.value`.
    pub sub_attr: Option<String>,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    /// `eq`: equal.
    Eq,
    /// `ne`: not equal (evaluated as `not eq`).
    Ne,
    /// `co`: contains (strings only).
    Co,
    /// `sw`: starts with (strings only).
    Sw,
    /// `ew`: ends with (strings only).
    Ew,
    /// `gt`: greater than (strings, numbers, dateTimes).
    Gt,
    /// `ge`: greater than or equal.
    Ge,
    /// `lt`: less than.
    Lt,
    /// `le`: less than or equal.
    Le,
}

/// A comparison value (`compValue` in the RFC grammar).
#[derive(Debug, Clone, PartialEq)]
pub enum CompValue {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// A JSON number.
    Number(serde_json::Number),
    /// A JSON string (escapes already decoded).
    String(String),
}

/// A filter expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `attrPath compareOp compValue`
    Compare {
        path: AttrPath,
        op: CompareOp,
        value: CompValue,
    },
    /// `attrPath pr`
    Present(AttrPath),
    /// `filter and filter`. Parsed chains are balanced trees.
    And(Box<Filter>, Box<Filter>),
    /// `filter or filter`. Parsed chains are balanced trees.
    Or(Box<Filter>, Box<Filter>),
    /// `not (filter)`
    Not(Box<Filter>),
    /// `attrPath "[" valFilter "]"`, e.g. `emails[type eq "work"]`; the inner
    /// filter's paths are relative to the elements of `attr`.
    ValuePath { attr: AttrPath, filter: Box<Filter> },
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = &self.schema {
            write!(f, "{s}:")?;
        }
        write!(f, "{}", self.name)?;
        if let Some(s) = &self.sub_attr {
            write!(f, ".{s}")?;
        }
        Ok(())
    }
}

impl AttrPath {
    /// A path without schema or sub-attribute.
    pub fn new(name: impl Into<String>) -> Self {
        AttrPath {
            schema: None,
            name: name.into(),
            sub_attr: None,
        }
    }

    /// A path with a sub-attribute, e.g. `name.familyName`.
    pub fn with_sub(name: impl Into<String>, sub_attr: impl Into<String>) -> Self {
        AttrPath {
            schema: None,
            name: name.into(),
            sub_attr: Some(sub_attr.into()),
        }
    }

    /// True when `other` names the same attribute, ignoring case
    /// (RFC 7643 §2.1). Schema prefixes are compared only when both have one.
    pub fn eq_ignore_case(&self, other: &AttrPath) -> bool {
        let schema_ok = match (&self.schema, &other.schema) {
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            _ => true,
        };
        let sub_ok = match (&self.sub_attr, &other.sub_attr) {
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            (None, None) => true,
            _ => false,
        };
        schema_ok && sub_ok && self.name.eq_ignore_ascii_case(&other.name)
    }
}

impl CompareOp {
    /// The operator keyword in lower case.
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for CompValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompValue::Null => f.write_str("null"),
            CompValue::Bool(b) => write!(f, "{b}"),
            CompValue::Number(n) => write!(f, "{n}"),
            CompValue::String(s) => write_json_string(f, s),
        }
    }
}

/// Writes `s` as a JSON string literal (the filter grammar uses JSON
/// string rules, so the output parses back to the same string).
fn write_json_string(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    use fmt::Write;
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if (c as u32) < 0x20 => write!(f, "\\u{:04x}", c as u32)?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

impl Filter {
    /// How many nodes deep the tree goes (a leaf is 1). Parsed `and`/`or`
    /// chains are balanced, so this grows with the log of their length:
    /// what keeps evaluating and dropping a long filter off the stack's limit.
    pub fn depth(&self) -> usize {
        match self {
            Filter::And(l, r) | Filter::Or(l, r) => 1 + l.depth().max(r.depth()),
            Filter::Not(inner) => 1 + inner.depth(),
            Filter::ValuePath { filter, .. } => 1 + filter.depth(),
            Filter::Compare { .. } | Filter::Present(_) => 1,
        }
    }

    /// Whether this node is `and`/`or`, which needs parentheses when nested
    /// to keep the exact tree shape on re-parse.
    fn is_binary(&self) -> bool {
        matches!(self, Filter::And(..) | Filter::Or(..))
    }

    fn fmt_operand(&self, f: &mut fmt::Formatter<'_>, parent_is_or: bool) -> fmt::Result {
        // `and` under `or` needs no parentheses (precedence); every other
        // nested binary node does, so that parse(render(f)) == f exactly.
        let bare = !self.is_binary() || (parent_is_or && matches!(self, Filter::And(..)));
        if bare {
            write!(f, "{self}")
        } else {
            write!(f, "({self})")
        }
    }
}

/// Renders filter syntax; `parse(&f.to_string()) == Ok(f)` for every
/// filter the parser can produce (and every well-formed AST).
impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::Compare { path, op, value } => write!(f, "{path} {op} {value}"),
            Filter::Present(path) => write!(f, "{path} pr"),
            Filter::And(..) => self.fmt_chain(f, false),
            Filter::Or(..) => self.fmt_chain(f, true),
            Filter::Not(inner) => write!(f, "not ({inner})"),
            Filter::ValuePath { attr, filter } => write!(f, "{attr}[{filter}]"),
        }
    }
}

impl Filter {
    /// Collects the operands of a maximal chain of `and` (or `or`) nodes.
    /// Iterative, so deep hand-built chains cannot overflow the stack here.
    fn chain_operands(&self, is_or: bool) -> Vec<&Filter> {
        let mut out = Vec::new();
        let mut stack = vec![self];
        while let Some(node) = stack.pop() {
            match (node, is_or) {
                (Filter::Or(l, r), true) | (Filter::And(l, r), false) => {
                    stack.push(r);
                    stack.push(l);
                }
                (other, _) => out.push(other),
            }
        }
        out
    }

    /// Renders an `and`/`or` chain flat (`a or b or c`) when re-parsing the
    /// flat text rebuilds exactly this tree (always true for parser output);
    /// otherwise nested same-operator nodes get parentheses to keep the shape.
    fn fmt_chain(&self, f: &mut fmt::Formatter<'_>, is_or: bool) -> fmt::Result {
        let operands = self.chain_operands(is_or);
        if let [first, rest @ ..] = operands.as_slice() {
            let combine = if is_or { Filter::Or } else { Filter::And };
            let rebuilt = super::parser::balanced(
                (*first).clone(),
                rest.iter().map(|o| (*o).clone()).collect(),
                combine,
            );
            if rebuilt == *self {
                let keyword = if is_or { " or " } else { " and " };
                for (i, operand) in operands.iter().enumerate() {
                    if i > 0 {
                        f.write_str(keyword)?;
                    }
                    operand.fmt_operand(f, is_or)?;
                }
                return Ok(());
            }
        }
        let (Filter::And(l, r) | Filter::Or(l, r)) = self else {
            return write!(f, "{self}");
        };
        let keyword = if is_or { " or " } else { " and " };
        l.fmt_operand(f, is_or)?;
        f.write_str(keyword)?;
        r.fmt_operand(f, is_or)
    }
}
