//! Translation of SCIM filters and sort keys into SQL.
//!
//! The reference semantics are those of `roster_scim::filter::matches` (the
//! evaluator); the store's tests check this translation against it. Every
//! value is a bound parameter (`$n` on PostgreSQL, `?n` on SQLite): nothing
//! from a filter is ever spliced into SQL text, except attribute names that
//! were first mapped to a fixed column or quoted into a JSON path that is
//! itself bound.
//!
//! Attributes with a column (userName, externalId, id, active, displayName,
//! name.givenName/familyName, title, emails, the enterprise employeeNumber,
//! department and manager, meta.created/lastModified, group members and the
//! groups of a user) are filtered on that column; anything else is looked up
//! in the stored SCIM JSON (`raw`). JSON keys are matched exactly in SQL, so
//! the lookup tries the RFC's canonical casing of the attribute (when the
//! schema knows it) and the casing as written in the filter; an attribute
//! stored in some third casing is not found (documented limitation).
//!
//! Type rules: comparing a typed attribute with a value of another type (a
//! string attribute with `true`, `active` with a string, ...), ordering a
//! boolean, `co`/`sw`/`ew` on a date, or a date operand that is not RFC 3339
//! is [`StoreError::InvalidFilter`] rather than silently matching nothing.
//! Values found in the JSON have no declared type and compare like the
//! evaluator (mismatched types simply do not match).

use chrono::{DateTime, Utc};
use roster_scim::filter::{AttrPath, CompValue, CompareOp, Filter};
use roster_scim::schema::{self, AttrType, AttributeDef, ResourceKind};

use crate::error::StoreError;

/// The table a filter applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResourceTable {
    Users,
    Groups,
}

impl ResourceTable {
    fn name(self) -> &'static str {
        match self {
            Self::Users => "users",
            Self::Groups => "groups",
        }
    }

    fn kind(self) -> ResourceKind {
        match self {
            Self::Users => ResourceKind::User,
            Self::Groups => ResourceKind::Group,
        }
    }
}

/// The SQL dialect to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Postgres,
    Sqlite,
}

/// A value bound to a placeholder of the produced SQL, in placeholder order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SqlArg {
    Text(String),
    Bool(bool),
    /// A JSON number; PostgreSQL binds it as text cast to `numeric`.
    Number(serde_json::Number),
    Timestamp(DateTime<Utc>),
    /// A list of strings (PostgreSQL `text[]`). Not produced by the
    /// translation today; backends' binders handle it.
    #[allow(dead_code, reason = "kept for the backends' exhaustive binders")]
    TextArray(Vec<String>),
}

/// A sort key: an SQL expression that is never NULL, and its type (needed to
/// bind a keyset continuation value).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SortKey {
    pub expr: String,
    pub ty: SortType,
}

/// Type of a sort key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SortType {
    Text,
    Bool,
    Timestamp,
}

/// Translates `filter` into a boolean SQL expression over `resource`'s table
/// (columns are qualified with the table name: select `FROM users` or
/// `FROM groups` without an alias). Values are appended to `args`;
/// placeholders are numbered after the values already in `args`.
pub(crate) fn to_sql(
    filter: &Filter,
    resource: ResourceTable,
    dialect: Dialect,
    args: &mut Vec<SqlArg>,
) -> Result<String, StoreError> {
    reject_nul_literals(filter)?;
    let sql = Translator {
        table: resource,
        dialect,
        args,
    }
    .filter(filter, None)?;
    if args.len() > MAX_FILTER_ARGS {
        return Err(invalid(format!(
            "the filter is too large: it compares more than {MAX_FILTER_ARGS} values"
        )));
    }
    Ok(sql)
}

/// Bound values one filter may produce. Both backends cap the parameters of
/// one statement (PostgreSQL at 65,535, SQLite at 32,766 by default); a
/// filter past this cap is the client's error, answered alike on both,
/// never a database error.
pub(crate) const MAX_FILTER_ARGS: usize = 30_000;

/// A NUL character cannot occur in stored text (PostgreSQL refuses it in
/// `text` and `jsonb`): a filter value containing one is an invalid filter,
/// rejected before any SQL runs.
fn reject_nul_literals(filter: &Filter) -> Result<(), StoreError> {
    let mut stack = vec![filter];
    while let Some(f) = stack.pop() {
        match f {
            Filter::And(l, r) | Filter::Or(l, r) => {
                stack.push(l);
                stack.push(r);
            }
            Filter::Not(inner) | Filter::ValuePath { filter: inner, .. } => stack.push(inner),
            Filter::Compare {
                value: CompValue::String(s),
                ..
            } if s.contains('\0') => {
                return Err(invalid(
                    "filter values must not contain the NUL (U+0000) character",
                ));
            }
            Filter::Compare { .. } | Filter::Present(_) => {}
        }
    }
    Ok(())
}

/// The ORDER BY expression for a SCIM `sortBy` path (never NULL: missing
/// values sort as the empty string, as SCIM leaves their place open).
pub(crate) fn sort_sql(
    path: &AttrPath,
    resource: ResourceTable,
    dialect: Dialect,
    args: &mut Vec<SqlArg>,
) -> Result<SortKey, StoreError> {
    Translator {
        table: resource,
        dialect,
        args,
    }
    .sort_key(path)
}

/// What a list is sorted by, as recorded in its page tokens: a token is
/// valid only for the sort it was issued for (both backends refuse others).
pub(crate) fn sort_fingerprint(sort: Option<&crate::model::Sort>) -> String {
    match sort {
        Some(s) => format!(
            "{}:{}",
            s.path.to_string().to_ascii_lowercase(),
            s.descending
        ),
        None => "created".to_string(),
    }
}

/// Escapes the LIKE wildcards `%` and `_` and the escape character `\`.
pub(crate) fn escape_like(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A JSON path literal (SQL/JSON `jsonpath`) reaching every leaf value of
/// the keys, unwrapping arrays at each step like the evaluator does.
fn json_path(keys: &[&str]) -> String {
    let mut out = String::from("$");
    for key in keys {
        out.push_str(".\"");
        for c in key.chars() {
            if matches!(c, '"' | '\\') {
                out.push('\\');
            }
            out.push(c);
        }
        out.push_str("\"[*]");
    }
    out
}

/// The type of a scalar SQL expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Text {
        case_exact: bool,
    },
    Bool,
    Timestamp,
    /// A key column holding `roster_scim::text::fold` of a case-insensitive
    /// name (userName on both backends, group displayName on SQLite):
    /// compared bytewise with the operand folded in Rust, so the result does
    /// not depend on the database's `lower()` or locale.
    Key,
    /// A JSON value of unknown type: `type_expr` gives its JSON type.
    Json {
        case_exact: bool,
    },
}

/// One value per row (a column), or any of a set of values (an element of a
/// multi-valued attribute): the latter compares with `EXISTS`.
#[derive(Debug, Clone)]
struct Scalar {
    expr: String,
    /// For [`Ty::Json`]: the expression of its JSON type name.
    type_expr: String,
    ty: Ty,
}

impl Scalar {
    fn column(expr: impl Into<String>, ty: Ty) -> Self {
        Self {
            expr: expr.into(),
            type_expr: String::new(),
            ty,
        }
    }
}

/// Rows of a multi-valued attribute, correlated to the outer row.
#[derive(Debug, Clone)]
struct ElementSet {
    /// `FROM` clause (with alias).
    from: String,
    /// Correlation with the outer row (may be `TRUE`).
    correlate: String,
    kind: ElementKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ElementKind {
    /// `users.emails` (normalized value/type/primary objects), alias `el`.
    Emails,
    /// `memberships` rows of a group, alias `m`.
    Members,
    /// `memberships` rows of a user (its groups), alias `m`.
    UserGroups,
    /// JSON values from `raw`, alias `el`.
    Json { case_exact: bool },
}

enum Operand {
    Scalar(Scalar),
    Set(ElementSet, Option<String>),
}

struct Translator<'a> {
    table: ResourceTable,
    dialect: Dialect,
    args: &'a mut Vec<SqlArg>,
}

const ENTERPRISE_PREFIX: &str = schema::ENTERPRISE_USER_SCHEMA;

fn invalid(msg: impl Into<String>) -> StoreError {
    StoreError::InvalidFilter(msg.into())
}

impl Translator<'_> {
    fn pg(&self) -> bool {
        self.dialect == Dialect::Postgres
    }

    /// Appends a value and returns its placeholder, typed on PostgreSQL.
    fn bind(&mut self, arg: SqlArg) -> String {
        let cast = match &arg {
            SqlArg::Text(_) => "::text",
            SqlArg::Bool(_) => "::boolean",
            SqlArg::Number(_) => "::numeric",
            SqlArg::Timestamp(_) => "::timestamptz",
            SqlArg::TextArray(_) => "::text[]",
        };
        self.args.push(arg);
        let n = self.args.len();
        match self.dialect {
            Dialect::Postgres => format!("${n}{cast}"),
            Dialect::Sqlite => format!("?{n}"),
        }
    }

    fn col(&self, column: &str) -> String {
        format!("{}.{column}", self.table.name())
    }

    /// `parent` is the multi-valued attribute inside a value path.
    fn filter(
        &mut self,
        filter: &Filter,
        parent: Option<(&ElementSet, &AttrPath)>,
    ) -> Result<String, StoreError> {
        Ok(match filter {
            Filter::And(l, r) => format!(
                "({} AND {})",
                self.filter(l, parent)?,
                self.filter(r, parent)?
            ),
            Filter::Or(l, r) => format!(
                "({} OR {})",
                self.filter(l, parent)?,
                self.filter(r, parent)?
            ),
            Filter::Not(inner) => format!("(NOT COALESCE({}, FALSE))", self.filter(inner, parent)?),
            Filter::Present(path) => {
                let operand = self.operand(path, parent, true)?;
                self.present(operand)
            }
            Filter::Compare { path, op, value } => {
                let operand = self.operand(path, parent, false)?;
                self.compare(operand, *op, value, path)?
            }
            Filter::ValuePath { attr, filter } => {
                if parent.is_some() {
                    return Err(invalid(
                        "a value path cannot be nested in another value path",
                    ));
                }
                self.value_path(attr, filter)?
            }
        })
    }

    fn value_path(&mut self, attr: &AttrPath, inner: &Filter) -> Result<String, StoreError> {
        if attr.sub_attr.is_some() {
            return Err(invalid(format!(
                "invalid value path on {attr}: it names a sub-attribute"
            )));
        }
        match self.operand(attr, None, true)? {
            Operand::Set(set, _) => {
                let cond = self.filter(inner, Some((&set, attr)))?;
                Ok(format!(
                    "EXISTS (SELECT 1 FROM {} WHERE {} AND {cond})",
                    set.from, set.correlate
                ))
            }
            // A single-valued complex attribute: `name[givenName eq "x"]` is
            // `name.givenName eq "x"`.
            Operand::Scalar(_) => {
                let rewritten = prefix_paths(inner, attr)?;
                self.filter(&rewritten, None)
            }
        }
    }

    fn present(&mut self, operand: Operand) -> String {
        match operand {
            Operand::Scalar(s) => self.non_empty(&s),
            Operand::Set(set, sub) => {
                let item = self.element_item(&set, sub.as_deref(), true);
                let cond = self.non_empty(&item);
                format!(
                    "EXISTS (SELECT 1 FROM {} WHERE {} AND {cond})",
                    set.from, set.correlate
                )
            }
        }
    }

    fn compare(
        &mut self,
        operand: Operand,
        op: CompareOp,
        value: &CompValue,
        path: &AttrPath,
    ) -> Result<String, StoreError> {
        if op == CompareOp::Ne {
            let eq = self.compare(operand, CompareOp::Eq, value, path)?;
            return Ok(format!("(NOT COALESCE({eq}, FALSE))"));
        }
        match operand {
            Operand::Scalar(s) => {
                if *value == CompValue::Null {
                    return Ok(self.is_null(&s, op));
                }
                self.compare_scalar(&s, op, value, path)
            }
            Operand::Set(set, sub) => {
                let item = self.element_item(&set, sub.as_deref(), false);
                if *value == CompValue::Null {
                    if op != CompareOp::Eq {
                        return Ok("FALSE".into());
                    }
                    let not_null = self.not_null(&item);
                    return Ok(format!(
                        "(NOT EXISTS (SELECT 1 FROM {} WHERE {} AND {not_null}))",
                        set.from, set.correlate
                    ));
                }
                let cond = self.compare_scalar(&item, op, value, path)?;
                Ok(format!(
                    "EXISTS (SELECT 1 FROM {} WHERE {} AND {cond})",
                    set.from, set.correlate
                ))
            }
        }
    }

    /// `eq null` (absent or null); other operators never match null.
    fn is_null(&mut self, s: &Scalar, op: CompareOp) -> String {
        if op != CompareOp::Eq {
            return "FALSE".into();
        }
        format!("(NOT COALESCE({}, FALSE))", self.not_null(s))
    }

    fn not_null(&self, s: &Scalar) -> String {
        match s.ty {
            Ty::Json { .. } => format!("({} IS NOT NULL AND {} <> 'null')", s.expr, s.type_expr),
            _ => format!("({} IS NOT NULL)", s.expr),
        }
    }

    /// RFC 7644 `pr`: a non-null, non-empty value.
    fn non_empty(&self, s: &Scalar) -> String {
        match (s.ty, self.dialect) {
            (Ty::Text { .. } | Ty::Key, _) => {
                format!("({0} IS NOT NULL AND {0} <> '')", s.expr)
            }
            (Ty::Bool | Ty::Timestamp, _) => format!("({} IS NOT NULL)", s.expr),
            (Ty::Json { .. }, Dialect::Postgres) => format!(
                "({0} IS NOT NULL AND {1} <> 'null' AND {0} NOT IN ('\"\"'::jsonb, '[]'::jsonb, '{{}}'::jsonb))",
                s.expr, s.type_expr
            ),
            (Ty::Json { .. }, Dialect::Sqlite) => format!(
                "({1} IS NOT NULL AND {1} <> 'null' AND NOT ({1} = 'text' AND {0} = '') \
                 AND NOT ({1} IN ('array', 'object') AND {0} IN ('[]', '{{}}')))",
                s.expr, s.type_expr
            ),
        }
    }

    fn compare_scalar(
        &mut self,
        s: &Scalar,
        op: CompareOp,
        value: &CompValue,
        path: &AttrPath,
    ) -> Result<String, StoreError> {
        match s.ty {
            Ty::Text { .. } | Ty::Key => match (value, s.ty) {
                (CompValue::String(v), Ty::Key) => {
                    let folded = roster_scim::text::fold(v);
                    Ok(self.compare_text(&s.expr, true, op, &folded))
                }
                (CompValue::String(v), Ty::Text { case_exact }) => {
                    Ok(self.compare_text(&s.expr, case_exact, op, v))
                }
                (other, _) => Err(invalid(format!(
                    "{path} is a string attribute and cannot be compared with {}",
                    describe(other)
                ))),
            },
            Ty::Bool => match (value, op) {
                (CompValue::Bool(b), CompareOp::Eq) => {
                    let p = self.bind(SqlArg::Bool(*b));
                    Ok(format!("({} = {p})", s.expr))
                }
                (CompValue::Bool(_), _) => Err(invalid(format!(
                    "{path} is a boolean: only eq and ne apply"
                ))),
                (other, _) => Err(invalid(format!(
                    "{path} is a boolean attribute and cannot be compared with {}",
                    describe(other)
                ))),
            },
            Ty::Timestamp => self.compare_timestamp(&s.expr, op, value, path),
            Ty::Json { case_exact } => Ok(self.compare_json(s, case_exact, op, value)),
        }
    }

    fn compare_text(&mut self, expr: &str, case_exact: bool, op: CompareOp, v: &str) -> String {
        // SQLite's lower() folds ASCII only: fold the operand in Rust (the
        // userName / displayName columns are Unicode-folded keys there).
        let folded;
        let v = if !case_exact && self.dialect == Dialect::Sqlite {
            folded = v.to_lowercase();
            folded.as_str()
        } else {
            v
        };
        let (lhs, fold) = if case_exact {
            (expr.to_string(), false)
        } else {
            (format!("lower({expr})"), true)
        };
        let wrap = |p: String| if fold { format!("lower({p})") } else { p };
        match op {
            CompareOp::Co | CompareOp::Sw | CompareOp::Ew => {
                if case_exact && self.dialect == Dialect::Sqlite {
                    // SQLite's LIKE ignores ASCII case: compare substrings.
                    let p = self.bind(SqlArg::Text(v.to_string()));
                    return match op {
                        CompareOp::Co => format!("(instr({lhs}, {p}) > 0)"),
                        CompareOp::Sw => format!("(substr({lhs}, 1, length({p})) = {p})"),
                        _ => format!("(length({p}) = 0 OR substr({lhs}, -length({p})) = {p})"),
                    };
                }
                let p = wrap(self.bind(SqlArg::Text(escape_like(v))));
                let pattern = match op {
                    CompareOp::Co => format!("'%' || {p} || '%'"),
                    CompareOp::Sw => format!("{p} || '%'"),
                    _ => format!("'%' || {p}"),
                };
                format!("({lhs} LIKE {pattern} ESCAPE '\\')")
            }
            _ => {
                let p = wrap(self.bind(SqlArg::Text(v.to_string())));
                let sql_op = ordering_sql(op);
                if self.pg() && sql_op != "=" {
                    // Byte order, like the evaluator's string comparison.
                    format!("({lhs} COLLATE \"C\" {sql_op} {p})")
                } else {
                    format!("({lhs} {sql_op} {p})")
                }
            }
        }
    }

    fn compare_timestamp(
        &mut self,
        expr: &str,
        op: CompareOp,
        value: &CompValue,
        path: &AttrPath,
    ) -> Result<String, StoreError> {
        let CompValue::String(v) = value else {
            return Err(invalid(format!(
                "{path} is a dateTime and cannot be compared with {}",
                describe(value)
            )));
        };
        if matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew) {
            return Err(invalid(format!(
                "{path} is a dateTime: co, sw and ew do not apply"
            )));
        }
        let at = DateTime::parse_from_rfc3339(v)
            .map_err(|_| {
                invalid(format!(
                    "{path} is a dateTime: {v:?} is not an RFC 3339 date-time"
                ))
            })?
            .with_timezone(&Utc);
        let p = match self.dialect {
            Dialect::Postgres => self.bind(SqlArg::Timestamp(at)),
            // SQLite stores fixed-width UTC text: text order is time order.
            Dialect::Sqlite => self.bind(SqlArg::Text(sqlite_timestamp(at))),
        };
        Ok(format!("({expr} {} {p})", ordering_sql(op)))
    }

    /// A JSON value: compared only with a value of the same JSON type, and a
    /// complex value through its `value` member (like the evaluator).
    fn compare_json(
        &mut self,
        s: &Scalar,
        case_exact: bool,
        op: CompareOp,
        value: &CompValue,
    ) -> String {
        let (x, t) = match self.dialect {
            Dialect::Postgres => {
                let x = format!(
                    "(CASE WHEN jsonb_typeof({0}) = 'object' THEN {0} -> 'value' ELSE {0} END)",
                    s.expr
                );
                let t = format!("jsonb_typeof({x})");
                (x, t)
            }
            Dialect::Sqlite => (s.expr.clone(), s.type_expr.clone()),
        };
        match (value, self.dialect) {
            (CompValue::String(v), Dialect::Postgres) => {
                let text = self.compare_text(&format!("({x} #>> '{{}}')"), case_exact, op, v);
                format!("({t} = 'string' AND {text})")
            }
            (CompValue::String(v), Dialect::Sqlite) => {
                let text = self.compare_text(&x, case_exact, op, v);
                format!("({t} = 'text' AND {text})")
            }
            (CompValue::Number(n), _)
                if !matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew) =>
            {
                let p = self.bind(SqlArg::Number(n.clone()));
                let sql_op = ordering_sql(op);
                match self.dialect {
                    Dialect::Postgres => {
                        format!("({t} = 'number' AND ({x} #>> '{{}}')::numeric {sql_op} {p})")
                    }
                    Dialect::Sqlite => format!("({t} IN ('integer', 'real') AND {x} {sql_op} {p})"),
                }
            }
            (CompValue::Bool(b), Dialect::Postgres) if op == CompareOp::Eq => {
                let p = self.bind(SqlArg::Bool(*b));
                format!("({t} = 'boolean' AND ({x} #>> '{{}}')::boolean = {p})")
            }
            (CompValue::Bool(b), Dialect::Sqlite) if op == CompareOp::Eq => {
                format!("({t} = '{}')", if *b { "true" } else { "false" })
            }
            _ => "FALSE".into(),
        }
    }

    /// Resolves a path (relative to `parent` inside a value path).
    fn operand(
        &mut self,
        path: &AttrPath,
        parent: Option<(&ElementSet, &AttrPath)>,
        presence: bool,
    ) -> Result<Operand, StoreError> {
        if let Some((set, parent_path)) = parent {
            if path.sub_attr.is_some() || path.schema.is_some() {
                return Err(invalid(format!(
                    "{path} inside {parent_path}[...] must be a plain sub-attribute name"
                )));
            }
            let _ = presence;
            return Ok(Operand::Scalar(self.element_item(
                set,
                Some(&path.name),
                false,
            )));
        }
        match self.table {
            ResourceTable::Users => self.user_operand(path),
            ResourceTable::Groups => self.group_operand(path),
        }
    }

    fn user_operand(&mut self, path: &AttrPath) -> Result<Operand, StoreError> {
        let name = path.name.to_ascii_lowercase();
        let sub = path.sub_attr.as_deref().map(str::to_ascii_lowercase);
        let text = |exact: bool| Ty::Text { case_exact: exact };
        let column = match path.schema.as_deref() {
            Some(urn) if urn.eq_ignore_ascii_case(ENTERPRISE_PREFIX) => {
                match (name.as_str(), sub.as_deref()) {
                    ("employeenumber", None) => Some(("employee_number", text(false))),
                    ("department", None) => Some(("department", text(false))),
                    ("manager", None | Some("value")) => Some(("manager_id", text(false))),
                    _ => None,
                }
            }
            Some(urn) if !urn.eq_ignore_ascii_case(schema::USER_SCHEMA) => None,
            _ => match (name.as_str(), sub.as_deref()) {
                ("id", None) => Some(("id", text(true))),
                ("externalid", None) => Some(("external_id", text(true))),
                ("username", None) => Some(("user_name", text(false))),
                ("displayname", None) => Some(("display_name", text(false))),
                ("title", None) => Some(("title", text(false))),
                ("active", None) => Some(("active", Ty::Bool)),
                ("name", Some("givenname")) => Some(("given_name", text(false))),
                ("name", Some("familyname")) => Some(("family_name", text(false))),
                ("meta", Some("created")) => Some(("created_at", Ty::Timestamp)),
                ("meta", Some("lastmodified")) => Some(("updated_at", Ty::Timestamp)),
                ("emails", _) => return Ok(Operand::Set(self.emails_set(), path.sub_attr.clone())),
                ("groups", _) => {
                    return Ok(Operand::Set(self.user_groups_set(), path.sub_attr.clone()));
                }
                _ => None,
            },
        };
        match column {
            Some((c, ty)) => Ok(Operand::Scalar(self.column_scalar(c, ty))),
            None => self.json_operand(path),
        }
    }

    fn group_operand(&mut self, path: &AttrPath) -> Result<Operand, StoreError> {
        if path
            .schema
            .as_deref()
            .is_some_and(|u| !u.eq_ignore_ascii_case(schema::GROUP_SCHEMA))
        {
            return self.json_operand(path);
        }
        let name = path.name.to_ascii_lowercase();
        let sub = path.sub_attr.as_deref().map(str::to_ascii_lowercase);
        let column = match (name.as_str(), sub.as_deref()) {
            ("id", None) => ("id", Ty::Text { case_exact: true }),
            ("externalid", None) => ("external_id", Ty::Text { case_exact: true }),
            ("displayname", None) => ("display_name", Ty::Text { case_exact: false }),
            ("meta", Some("created")) => ("created_at", Ty::Timestamp),
            ("meta", Some("lastmodified")) => ("updated_at", Ty::Timestamp),
            ("members", _) => return Ok(Operand::Set(self.members_set(), path.sub_attr.clone())),
            _ => return self.json_operand(path),
        };
        Ok(Operand::Scalar(self.column_scalar(column.0, column.1)))
    }

    fn column_scalar(&self, column: &str, ty: Ty) -> Scalar {
        let qualified = self.col(column);
        match (column, self.dialect) {
            ("id", Dialect::Postgres) => Scalar::column(format!("{qualified}::text"), ty),
            ("user_name", _) => Scalar::column(self.col("user_name_key"), Ty::Key),
            ("display_name", Dialect::Sqlite) if self.table == ResourceTable::Groups => {
                Scalar::column(self.col("display_name_key"), Ty::Key)
            }
            _ => Scalar::column(qualified, ty),
        }
    }

    fn emails_set(&self) -> ElementSet {
        let from = match self.dialect {
            Dialect::Postgres => format!("jsonb_array_elements({}) AS el(j)", self.col("emails")),
            Dialect::Sqlite => format!("json_each({}) AS el", self.col("emails")),
        };
        ElementSet {
            from,
            correlate: "TRUE".into(),
            kind: ElementKind::Emails,
        }
    }

    fn members_set(&self) -> ElementSet {
        ElementSet {
            from: "memberships AS m".into(),
            correlate: "m.group_id = groups.id".into(),
            kind: ElementKind::Members,
        }
    }

    fn user_groups_set(&self) -> ElementSet {
        ElementSet {
            from: "memberships AS m".into(),
            correlate: "m.member_id = users.id".into(),
            kind: ElementKind::UserGroups,
        }
    }

    /// An attribute without a column: its values in the stored JSON.
    fn json_operand(&mut self, path: &AttrPath) -> Result<Operand, StoreError> {
        let def = schema::attribute_def(self.table.kind(), path);
        let top = schema::top_level_def(self.table.kind(), path.schema.as_deref(), &path.name);
        let case_exact = def.is_some_and(|d| d.case_exact);
        if def.is_some_and(|d| d.ty == AttrType::DateTime) {
            // Only meta.created/lastModified are dateTimes, and they have columns.
            return Err(invalid(format!("{path} cannot be filtered")));
        }
        let key_paths = self.json_key_paths(path, top, def);
        let set = match self.dialect {
            Dialect::Postgres => {
                let sources: Vec<String> = key_paths
                    .iter()
                    .map(|keys| {
                        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                        let p = self.bind(SqlArg::Text(json_path(&keys)));
                        format!(
                            "SELECT jsonb_path_query({}, {p}::jsonpath) AS j",
                            self.col("raw")
                        )
                    })
                    .collect();
                ElementSet {
                    from: format!("({}) AS el", sources.join(" UNION ALL ")),
                    correlate: "TRUE".into(),
                    kind: ElementKind::Json { case_exact },
                }
            }
            Dialect::Sqlite => {
                let sources: Vec<String> = key_paths
                    .iter()
                    .map(|keys| self.sqlite_json_values(keys))
                    .collect();
                ElementSet {
                    from: format!("({}) AS el", sources.join(" UNION ALL ")),
                    correlate: "TRUE".into(),
                    kind: ElementKind::Json { case_exact },
                }
            }
        };
        Ok(Operand::Set(set, None))
    }

    /// The key lists to look the path up under: canonical casing and as written.
    fn json_key_paths(
        &self,
        path: &AttrPath,
        top: Option<&'static AttributeDef>,
        def: Option<&'static AttributeDef>,
    ) -> Vec<Vec<String>> {
        let extension = path.schema.as_deref().filter(|u| {
            !u.eq_ignore_ascii_case(schema::USER_SCHEMA)
                && !u.eq_ignore_ascii_case(schema::GROUP_SCHEMA)
        });
        let canonical_urn = extension.map(|u| {
            if u.eq_ignore_ascii_case(ENTERPRISE_PREFIX) {
                ENTERPRISE_PREFIX.to_string()
            } else {
                u.to_string()
            }
        });
        let build = |urn: Option<&str>, name: &str, sub: Option<&str>| {
            let mut keys = Vec::new();
            keys.extend(urn.map(str::to_string));
            keys.push(name.to_string());
            keys.extend(sub.map(str::to_string));
            keys
        };
        let canonical = build(
            canonical_urn.as_deref(),
            top.map_or(path.name.as_str(), |d| d.name),
            path.sub_attr.as_deref().map(|s| def.map_or(s, |d| d.name)),
        );
        let written = build(extension, &path.name, path.sub_attr.as_deref());
        if canonical == written {
            vec![canonical]
        } else {
            vec![canonical, written]
        }
    }

    /// SQLite: the leaf values under `keys` (arrays unwrapped at each step),
    /// as rows `(v, t)` = (SQL value, JSON type).
    fn sqlite_json_values(&mut self, keys: &[String]) -> String {
        let raw = self.col("raw");
        // Wrap a non-array value in an array so json_each yields it once.
        let as_array = |doc: &str, path: &str| {
            format!(
                "(CASE json_type({doc}, {path}) WHEN 'array' THEN {doc} -> {path} ELSE json_array({doc} -> {path}) END)"
            )
        };
        let mut from = String::new();
        let mut current_doc = raw;
        for (i, key) in keys.iter().enumerate() {
            let quoted = key.replace('\\', "\\\\").replace('"', "\\\"");
            let p = self.bind(SqlArg::Text(format!("$.\"{quoted}\"")));
            let alias = format!("s{i}");
            let source = as_array(&current_doc, &p);
            if i == 0 {
                from = format!("json_each({source}) AS {alias}");
            } else {
                from = format!("{from} JOIN json_each({source}) AS {alias}");
            }
            // The next key is looked up in objects only.
            current_doc =
                format!("(CASE WHEN {alias}.type = 'object' THEN {alias}.value ELSE '{{}}' END)");
        }
        let last = format!("s{}", keys.len() - 1);
        format!(
            "SELECT {last}.value AS v, {last}.type AS t FROM {from} WHERE {last}.type IS NOT NULL"
        )
    }

    /// The value of an element (or of its sub-attribute) of a set.
    /// Without a sub-attribute, a comparison uses the element's `value`;
    /// presence (`pr`) checks the element itself.
    fn element_item(&self, set: &ElementSet, sub: Option<&str>, presence: bool) -> Scalar {
        let sub_lc = sub.map(str::to_ascii_lowercase);
        let pg = self.pg();
        match set.kind {
            ElementKind::Emails => {
                let field = match sub_lc.as_deref() {
                    None if presence => None,
                    None => Some("value"),
                    Some(s) => Some(match s {
                        "value" => "value",
                        "type" => "type",
                        "primary" => "primary",
                        "display" => "display",
                        _ => "",
                    }),
                };
                match (field, pg) {
                    (None, true) => Scalar {
                        expr: "el.j".into(),
                        type_expr: "jsonb_typeof(el.j)".into(),
                        ty: Ty::Json { case_exact: false },
                    },
                    (None, false) => Scalar {
                        expr: "el.value".into(),
                        type_expr: "el.type".into(),
                        ty: Ty::Json { case_exact: false },
                    },
                    (Some("primary"), true) => {
                        Scalar::column("((el.j ->> 'primary')::boolean)", Ty::Bool)
                    }
                    (Some("primary"), false) => {
                        Scalar::column("(json_extract(el.value, '$.primary') = 1)", Ty::Bool)
                    }
                    (Some(f), true) => {
                        Scalar::column(format!("(el.j ->> '{f}')"), Ty::Text { case_exact: false })
                    }
                    (Some(f), false) => Scalar::column(
                        format!("json_extract(el.value, '$.{f}')"),
                        Ty::Text { case_exact: false },
                    ),
                }
            }
            ElementKind::Members | ElementKind::UserGroups => {
                let id_col = if set.kind == ElementKind::Members {
                    "m.member_id"
                } else {
                    "m.group_id"
                };
                let id_expr = if pg {
                    format!("{id_col}::text")
                } else {
                    id_col.to_string()
                };
                match sub_lc.as_deref() {
                    None | Some("value") => Scalar::column(id_expr, Ty::Text { case_exact: false }),
                    Some("type") if set.kind == ElementKind::Members => {
                        Scalar::column("m.member_kind", Ty::Text { case_exact: false })
                    }
                    // display, $ref, ...: not stored with the membership.
                    _ => Scalar::column("NULL", Ty::Text { case_exact: false }),
                }
            }
            ElementKind::Json { case_exact } => match (sub, pg) {
                (None, true) => Scalar {
                    expr: "el.j".into(),
                    type_expr: "jsonb_typeof(el.j)".into(),
                    ty: Ty::Json { case_exact },
                },
                (None, false) => Scalar {
                    expr: "el.v".into(),
                    type_expr: "el.t".into(),
                    ty: Ty::Json { case_exact },
                },
                (Some(s), true) => {
                    let key = s.replace('\'', "''");
                    let x = format!("(el.j -> '{key}')");
                    Scalar {
                        type_expr: format!("jsonb_typeof({x})"),
                        expr: x,
                        ty: Ty::Json { case_exact: false },
                    }
                }
                (Some(s), false) => {
                    let key = s.replace('\'', "''").replace('"', "");
                    Scalar {
                        expr: format!("json_extract(el.v, '$.\"{key}\"')"),
                        type_expr: format!("json_type(el.v, '$.\"{key}\"')"),
                        ty: Ty::Json { case_exact: false },
                    }
                }
            },
        }
    }

    fn sort_key(&mut self, path: &AttrPath) -> Result<SortKey, StoreError> {
        let text = |expr: String, pg: bool| SortKey {
            expr: if pg {
                format!("COALESCE(lower({expr}), '') COLLATE \"C\"")
            } else {
                format!("COALESCE(lower({expr}), '')")
            },
            ty: SortType::Text,
        };
        let pg = self.pg();
        match self.operand(path, None, false)? {
            Operand::Scalar(s) => Ok(match s.ty {
                Ty::Bool => SortKey {
                    expr: format!("COALESCE({}, FALSE)", s.expr),
                    ty: SortType::Bool,
                },
                Ty::Timestamp => SortKey {
                    expr: s.expr,
                    ty: SortType::Timestamp,
                },
                _ => text(s.expr, pg),
            }),
            Operand::Set(set, sub) => {
                if let ElementKind::Json { .. } = set.kind {
                    // The first value found, as text.
                    let value = if pg { "(el.j #>> '{}')" } else { "el.v" };
                    let first = format!("(SELECT {value} FROM {} LIMIT 1)", set.from);
                    return Ok(text(first, pg));
                }
                let item = self.element_item(&set, sub.as_deref(), false);
                // Multi-valued: sort by the primary value (RFC 7644 §3.4.2.3).
                let order = match (set.kind, pg) {
                    (ElementKind::Emails, true) => {
                        " ORDER BY COALESCE((el.j ->> 'primary')::boolean, FALSE) DESC"
                    }
                    (ElementKind::Emails, false) => {
                        " ORDER BY COALESCE(json_extract(el.value, '$.primary'), 0) DESC"
                    }
                    _ => " ORDER BY 1",
                };
                let first = format!(
                    "(SELECT {} FROM {} WHERE {}{order} LIMIT 1)",
                    item.expr, set.from, set.correlate
                );
                Ok(text(first, pg))
            }
        }
    }
}

/// Prefixes the paths of a value-path filter on a single-valued complex
/// attribute: `name[givenName eq "x"]` → `name.givenName eq "x"`.
fn prefix_paths(filter: &Filter, parent: &AttrPath) -> Result<Filter, StoreError> {
    let nest = |p: &AttrPath| -> Result<AttrPath, StoreError> {
        if p.sub_attr.is_some() || p.schema.is_some() {
            return Err(invalid(format!(
                "{p} inside {parent}[...] must be a plain sub-attribute name"
            )));
        }
        Ok(AttrPath {
            schema: parent.schema.clone(),
            name: parent.name.clone(),
            sub_attr: Some(p.name.clone()),
        })
    };
    Ok(match filter {
        Filter::Compare { path, op, value } => Filter::Compare {
            path: nest(path)?,
            op: *op,
            value: value.clone(),
        },
        Filter::Present(path) => Filter::Present(nest(path)?),
        Filter::And(l, r) => Filter::And(
            Box::new(prefix_paths(l, parent)?),
            Box::new(prefix_paths(r, parent)?),
        ),
        Filter::Or(l, r) => Filter::Or(
            Box::new(prefix_paths(l, parent)?),
            Box::new(prefix_paths(r, parent)?),
        ),
        Filter::Not(inner) => Filter::Not(Box::new(prefix_paths(inner, parent)?)),
        Filter::ValuePath { .. } => {
            return Err(invalid(
                "a value path cannot be nested in another value path",
            ));
        }
    })
}

fn ordering_sql(op: CompareOp) -> &'static str {
    match op {
        CompareOp::Gt => ">",
        CompareOp::Ge => ">=",
        CompareOp::Lt => "<",
        CompareOp::Le => "<=",
        _ => "=",
    }
}

fn describe(v: &CompValue) -> &'static str {
    match v {
        CompValue::Null => "null",
        CompValue::Bool(_) => "a boolean",
        CompValue::Number(_) => "a number",
        CompValue::String(_) => "a string",
    }
}

/// SQLite's stored timestamp format (fixed width, so text order = time order).
pub(crate) fn sqlite_timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use roster_scim::filter::parse;

    fn pg(filter: &str, table: ResourceTable) -> (String, Vec<SqlArg>) {
        let mut args = Vec::new();
        let sql = to_sql(&parse(filter).unwrap(), table, Dialect::Postgres, &mut args).unwrap();
        (sql, args)
    }

    #[test]
    fn values_are_bound_never_spliced() {
        let evil = r#"userName eq "x'; DROP TABLE users; --""#;
        let (sql, args) = pg(evil, ResourceTable::Users);
        assert!(!sql.contains("DROP"), "{sql}");
        // userName compares by its folded key: the operand is folded in Rust.
        assert_eq!(args, vec![SqlArg::Text("x'; drop table users; --".into())]);
        assert_eq!(sql, "(users.user_name_key = $1::text)");
    }

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(escape_like(r"50%_off\"), r"50\%\_off\\");
        let (sql, args) = pg(r#"displayName co "a%b""#, ResourceTable::Users);
        assert!(
            sql.contains("LIKE '%' || lower($1::text) || '%' ESCAPE '\\'"),
            "{sql}"
        );
        assert_eq!(args, vec![SqlArg::Text(r"a\%b".into())]);
    }

    #[test]
    fn placeholders_continue_after_existing_args() {
        let mut args = vec![SqlArg::Text("dir".into())];
        let sql = to_sql(
            &parse(r#"externalId eq "e" and active eq true"#).unwrap(),
            ResourceTable::Users,
            Dialect::Sqlite,
            &mut args,
        )
        .unwrap();
        assert_eq!(sql, "((users.external_id = ?2) AND (users.active = ?3))");
    }

    #[test]
    fn type_mismatches_are_invalid_filters() {
        for f in [
            "userName eq true",
            "active eq \"yes\"",
            "active gt \"x\"",
            "meta.created eq 3",
            "meta.created gt \"yesterday\"",
            "meta.created co \"2020\"",
            "displayName lt 5",
        ] {
            let mut args = Vec::new();
            let err = to_sql(
                &parse(f).unwrap(),
                ResourceTable::Users,
                Dialect::Postgres,
                &mut args,
            );
            assert!(
                matches!(err, Err(StoreError::InvalidFilter(_))),
                "{f}: {err:?}"
            );
        }
    }

    #[test]
    fn json_paths_quote_keys() {
        assert_eq!(json_path(&["a\"b", "c"]), r#"$."a\"b"[*]."c"[*]"#);
    }

    #[test]
    fn unknown_attributes_use_canonical_and_written_keys() {
        let (_, args) = pg(r#"NICKNAME eq "bob""#, ResourceTable::Users);
        assert_eq!(
            args[..2],
            [
                SqlArg::Text(r#"$."nickName"[*]"#.into()),
                SqlArg::Text(r#"$."NICKNAME"[*]"#.into())
            ]
        );
    }
}
