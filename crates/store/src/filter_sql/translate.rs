//! The SCIM-filter-to-SQL translator, written once for both dialects: it
//! resolves attribute paths to columns, element sets and JSON lookups, and
//! applies the type rules; what differs between PostgreSQL and SQLite is
//! asked of the [`SqlDialect`].

use chrono::{DateTime, Utc};
use roster_scim::filter::{AttrPath, CompValue, CompareOp, Filter};
use roster_scim::schema::{self, AttrType, AttributeDef};

use super::{ResourceTable, SortKey, SortType, SqlArg, escape_like};
use crate::error::StoreError;

/// The type of a scalar SQL expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ty {
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
pub(super) struct Scalar {
    pub(super) expr: String,
    /// For [`Ty::Json`]: the expression of its JSON type name.
    pub(super) type_expr: String,
    pub(super) ty: Ty,
}

/// Binds a value and returns its placeholder.
pub(super) type Bind<'a> = &'a mut dyn FnMut(SqlArg) -> String;

impl Scalar {
    pub(super) fn column(expr: impl Into<String>, ty: Ty) -> Self {
        Self {
            expr: expr.into(),
            type_expr: String::new(),
            ty,
        }
    }

    /// A JSON value, with the expression naming its JSON type.
    pub(super) fn json(
        expr: impl Into<String>,
        type_expr: impl Into<String>,
        case_exact: bool,
    ) -> Self {
        Self {
            expr: expr.into(),
            type_expr: type_expr.into(),
            ty: Ty::Json { case_exact },
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

/// Where the two SQL dialects differ; the translator above is written once
/// against this. Every method returns SQL text over the aliases the
/// translator sets up (`el` for JSON elements and emails, `m` for
/// memberships); values are bound through `bind`, never spliced.
pub(super) trait SqlDialect {
    /// The placeholder of the `n`th bound value.
    fn placeholder(&self, n: usize, arg: &SqlArg) -> String;
    /// Whether a case-insensitive operand is lowercased before it is bound
    /// (where the database's `lower()` folds less than Rust's).
    fn folds_operands(&self) -> bool;
    /// Case-exact `co`/`sw`/`ew` of `lhs` with the bound text `p`, where
    /// the dialect's LIKE ignores case; `None` where LIKE is exact.
    fn exact_affix(&self) -> Option<fn(CompareOp, &str, &str) -> String>;
    /// `lhs <sql_op> p` for text, ordered bytewise like the evaluator.
    fn ordered_text(&self, lhs: &str, sql_op: &str, p: &str) -> String;
    /// The bound form of a timestamp operand.
    fn timestamp_arg(&self, at: DateTime<Utc>) -> SqlArg;
    /// RFC 7644 `pr` of a JSON value.
    fn json_non_empty(&self, s: &Scalar) -> String;
    /// A JSON value compared through its `value` member when it is an
    /// object: `(value expression, JSON type expression)`.
    fn json_compared(&self, s: &Scalar) -> (String, String);
    /// A JSON string `x` of type `t` compared as text by `text`.
    fn json_text(&self, x: &str) -> String;
    /// The JSON type name of strings.
    fn json_string_type(&self) -> &'static str;
    /// `x` is a JSON number and `<sql_op> p` holds.
    fn json_number(&self, t: &str, x: &str, sql_op: &str, p: &str) -> String;
    /// `x` is the JSON boolean `b`.
    fn json_bool(&self, t: &str, x: &str, b: bool, bind: Bind<'_>) -> String;
    /// A uuid column as text.
    fn id_text(&self, column: &str) -> String;
    /// Whether a group's displayName is compared through its folded key
    /// column (where the column's collation cannot fold).
    fn group_name_is_key(&self) -> bool;
    /// The `FROM` item over the elements of the `emails` column.
    fn emails_from(&self, emails: &str) -> String;
    /// A `SELECT` of the JSON values under `keys` in the document `raw`.
    fn json_values(&self, raw: &str, keys: &[String], bind: Bind<'_>) -> String;
    /// An email element's `primary`, as a boolean (NULL when absent).
    fn email_primary(&self) -> &'static str;
    /// A JSON element itself.
    fn json_element(&self, case_exact: bool) -> Scalar;
    /// The member `key` of a JSON element.
    fn json_member(&self, key: &str) -> Scalar;
    /// A text sort key, never NULL, ordered bytewise.
    fn sort_text(&self, expr: &str) -> String;
    /// A JSON element as text, for sorting.
    fn json_element_text(&self) -> &'static str;
    /// An email element itself (for `pr`): the `emails` rows are the
    /// dialect's JSON elements.
    fn email_element(&self) -> Scalar {
        self.json_element(false)
    }
    /// An email element's text field `field`.
    fn email_field(&self, field: &str) -> String {
        self.json_text(&self.json_member(field).expr)
    }
    /// Orders email elements primary first.
    fn primary_email_first(&self) -> String {
        format!(" ORDER BY COALESCE({}, FALSE) DESC", self.email_primary())
    }
}

enum Operand {
    Scalar(Scalar),
    Set(ElementSet, Option<String>),
}

pub(super) struct Translator<'a> {
    pub(super) table: ResourceTable,
    pub(super) sql: &'static dyn SqlDialect,
    pub(super) args: &'a mut Vec<SqlArg>,
}

const ENTERPRISE_PREFIX: &str = schema::ENTERPRISE_USER_SCHEMA;

/// Appends `arg` to `args` and returns its placeholder in `sql`.
fn bind(sql: &dyn SqlDialect, args: &mut Vec<SqlArg>, arg: SqlArg) -> String {
    args.push(arg);
    sql.placeholder(args.len(), args.last().expect("just pushed"))
}

pub(super) fn invalid(msg: impl Into<String>) -> StoreError {
    StoreError::InvalidFilter(msg.into())
}

impl Translator<'_> {
    /// Appends a value and returns its placeholder.
    fn bind(&mut self, arg: SqlArg) -> String {
        bind(self.sql, self.args, arg)
    }

    fn col(&self, column: &str) -> String {
        format!("{}.{column}", self.table.name())
    }

    /// `parent` is the multi-valued attribute inside a value path.
    /// The whole filter as a boolean SQL expression.
    pub(super) fn condition(&mut self, filter: &Filter) -> Result<String, StoreError> {
        self.filter(filter, None)
    }

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
        match s.ty {
            Ty::Text { .. } | Ty::Key => {
                format!("({0} IS NOT NULL AND {0} <> '')", s.expr)
            }
            Ty::Bool | Ty::Timestamp => format!("({} IS NOT NULL)", s.expr),
            Ty::Json { .. } => self.sql.json_non_empty(s),
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
        let folded;
        let v = if !case_exact && self.sql.folds_operands() {
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
                if let Some(affix) = self.sql.exact_affix().filter(|_| case_exact) {
                    let p = self.bind(SqlArg::Text(v.to_string()));
                    return affix(op, &lhs, &p);
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
                if sql_op == "=" {
                    format!("({lhs} {sql_op} {p})")
                } else {
                    self.sql.ordered_text(&lhs, sql_op, &p)
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
        let p = self.bind(self.sql.timestamp_arg(at));
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
        let (x, t) = self.sql.json_compared(s);
        match value {
            CompValue::String(v) => {
                let text = self.compare_text(&self.sql.json_text(&x), case_exact, op, v);
                format!("({t} = '{}' AND {text})", self.sql.json_string_type())
            }
            CompValue::Number(n)
                if !matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew) =>
            {
                let p = self.bind(SqlArg::Number(n.clone()));
                self.sql.json_number(&t, &x, ordering_sql(op), &p)
            }
            CompValue::Bool(b) if op == CompareOp::Eq => {
                let (sql, args) = (self.sql, &mut *self.args);
                sql.json_bool(&t, &x, *b, &mut |arg| bind(sql, args, arg))
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
        match column {
            "id" => Scalar::column(self.sql.id_text(&qualified), ty),
            "user_name" => Scalar::column(self.col("user_name_key"), Ty::Key),
            "display_name"
                if self.table == ResourceTable::Groups && self.sql.group_name_is_key() =>
            {
                Scalar::column(self.col("display_name_key"), Ty::Key)
            }
            _ => Scalar::column(qualified, ty),
        }
    }

    fn emails_set(&self) -> ElementSet {
        ElementSet {
            from: self.sql.emails_from(&self.col("emails")),
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
        let raw = self.col("raw");
        let (sql, args) = (self.sql, &mut *self.args);
        let sources: Vec<String> = key_paths
            .iter()
            .map(|keys| sql.json_values(&raw, keys, &mut |arg| bind(sql, args, arg)))
            .collect();
        let set = ElementSet {
            from: format!("({}) AS el", sources.join(" UNION ALL ")),
            correlate: "TRUE".into(),
            kind: ElementKind::Json { case_exact },
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

    /// The value of an element (or of its sub-attribute) of a set.
    /// Without a sub-attribute, a comparison uses the element's `value`;
    /// presence (`pr`) checks the element itself.
    fn element_item(&self, set: &ElementSet, sub: Option<&str>, presence: bool) -> Scalar {
        let sub_lc = sub.map(str::to_ascii_lowercase);
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
                match field {
                    None => self.sql.email_element(),
                    Some("primary") => Scalar::column(self.sql.email_primary(), Ty::Bool),
                    Some(f) => {
                        Scalar::column(self.sql.email_field(f), Ty::Text { case_exact: false })
                    }
                }
            }
            ElementKind::Members | ElementKind::UserGroups => {
                let id_col = if set.kind == ElementKind::Members {
                    "m.member_id"
                } else {
                    "m.group_id"
                };
                let id_expr = self.sql.id_text(id_col);
                match sub_lc.as_deref() {
                    None | Some("value") => Scalar::column(id_expr, Ty::Text { case_exact: false }),
                    Some("type") if set.kind == ElementKind::Members => {
                        Scalar::column("m.member_kind", Ty::Text { case_exact: false })
                    }
                    // display, $ref, ...: not stored with the membership.
                    _ => Scalar::column("NULL", Ty::Text { case_exact: false }),
                }
            }
            ElementKind::Json { case_exact } => match sub {
                None => self.sql.json_element(case_exact),
                Some(s) => self.sql.json_member(s),
            },
        }
    }

    pub(super) fn sort_key(&mut self, path: &AttrPath) -> Result<SortKey, StoreError> {
        let sql = self.sql;
        let text = |expr: String| SortKey {
            expr: sql.sort_text(&expr),
            ty: SortType::Text,
        };
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
                _ => text(s.expr),
            }),
            Operand::Set(set, sub) => {
                if let ElementKind::Json { .. } = set.kind {
                    // The first value found, as text.
                    let value = self.sql.json_element_text();
                    let first = format!("(SELECT {value} FROM {} LIMIT 1)", set.from);
                    return Ok(text(first));
                }
                let item = self.element_item(&set, sub.as_deref(), false);
                // Multi-valued: sort by the primary value (RFC 7644 §3.4.2.3).
                let order = match set.kind {
                    ElementKind::Emails => self.sql.primary_email_first(),
                    _ => " ORDER BY 1".into(),
                };
                let first = format!(
                    "(SELECT {} FROM {} WHERE {}{order} LIMIT 1)",
                    item.expr, set.from, set.correlate
                );
                Ok(text(first))
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
