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

mod postgres;
mod sqlite;
mod translate;

use chrono::{DateTime, Utc};
use roster_scim::filter::{AttrPath, CompValue, Filter};
use roster_scim::schema::ResourceKind;

pub(crate) use sqlite::sqlite_timestamp;
use translate::{SqlDialect, Translator, invalid};

use crate::error::StoreError;

/// The table a filter applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResourceTable {
    Users,
    Groups,
}

impl ResourceTable {
    /// The table's name in SQL.
    pub(crate) fn name(self) -> &'static str {
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

impl Dialect {
    fn sql(self) -> &'static dyn SqlDialect {
        match self {
            Self::Postgres => &postgres::Postgres,
            Self::Sqlite => &sqlite::Sqlite,
        }
    }
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
        sql: dialect.sql(),
        args,
    }
    .condition(filter)?;
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
        sql: dialect.sql(),
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

#[cfg(test)]
mod tests {
    use super::postgres::json_path;
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
