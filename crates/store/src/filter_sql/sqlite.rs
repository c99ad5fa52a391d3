//! SQLite: numbered placeholders, `json_each` / `json_extract`, operands
//! folded in Rust (its `lower()` folds ASCII only) and substring tests where
//! its LIKE would ignore case.

use chrono::{DateTime, Utc};
use roster_scim::filter::CompareOp;

use super::SqlArg;
use super::translate::{Bind, Scalar, SqlDialect};

pub(super) struct Sqlite;

/// SQLite's stored timestamp format (fixed width, so text order = time order).
pub(crate) fn sqlite_timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Case-exact `co` / `sw` / `ew` by substrings: SQLite's LIKE ignores ASCII case.
fn exact_affix(op: CompareOp, lhs: &str, p: &str) -> String {
    match op {
        CompareOp::Co => format!("(instr({lhs}, {p}) > 0)"),
        CompareOp::Sw => format!("(substr({lhs}, 1, length({p})) = {p})"),
        _ => format!("(length({p}) = 0 OR substr({lhs}, -length({p})) = {p})"),
    }
}

impl SqlDialect for Sqlite {
    fn placeholder(&self, n: usize, _arg: &SqlArg) -> String {
        format!("?{n}")
    }

    // The userName / displayName columns are Unicode-folded keys here.
    fn folds_operands(&self) -> bool {
        true
    }

    fn exact_affix(&self) -> Option<fn(CompareOp, &str, &str) -> String> {
        Some(exact_affix)
    }

    fn ordered_text(&self, lhs: &str, sql_op: &str, p: &str) -> String {
        // The default BINARY collation already compares bytes.
        format!("({lhs} {sql_op} {p})")
    }

    fn timestamp_arg(&self, at: DateTime<Utc>) -> SqlArg {
        SqlArg::Text(sqlite_timestamp(at))
    }

    fn json_non_empty(&self, s: &Scalar) -> String {
        format!(
            "({1} IS NOT NULL AND {1} <> 'null' AND NOT ({1} = 'text' AND {0} = '') \
             AND NOT ({1} IN ('array', 'object') AND {0} IN ('[]', '{{}}')))",
            s.expr, s.type_expr
        )
    }

    fn json_compared(&self, s: &Scalar) -> (String, String) {
        (s.expr.clone(), s.type_expr.clone())
    }

    fn json_text(&self, x: &str) -> String {
        x.to_string()
    }

    fn json_string_type(&self) -> &'static str {
        "text"
    }

    fn json_number(&self, t: &str, x: &str, sql_op: &str, p: &str) -> String {
        format!("({t} IN ('integer', 'real') AND {x} {sql_op} {p})")
    }

    fn json_bool(&self, t: &str, _x: &str, b: bool, _bind: Bind<'_>) -> String {
        format!("({t} = '{}')", if b { "true" } else { "false" })
    }

    fn id_text(&self, column: &str) -> String {
        column.to_string()
    }

    fn group_name_is_key(&self) -> bool {
        true
    }

    fn emails_from(&self, emails: &str) -> String {
        format!("json_each({emails}) AS el")
    }

    /// The leaf values under `keys` (arrays unwrapped at each step), as rows
    /// `(value, type)` = (SQL value, JSON type): the columns of `json_each`,
    /// so these rows and the `emails` rows are read alike.
    fn json_values(&self, raw: &str, keys: &[String], bind: Bind<'_>) -> String {
        // Wrap a non-array value in an array so json_each yields it once.
        let as_array = |doc: &str, path: &str| {
            format!(
                "(CASE json_type({doc}, {path}) WHEN 'array' THEN {doc} -> {path} ELSE json_array({doc} -> {path}) END)"
            )
        };
        let mut from = String::new();
        let mut current_doc = raw.to_string();
        for (i, key) in keys.iter().enumerate() {
            let quoted = key.replace('\\', "\\\\").replace('"', "\\\"");
            let p = bind(SqlArg::Text(format!("$.\"{quoted}\"")));
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
            "SELECT {last}.value AS value, {last}.type AS type FROM {from} WHERE {last}.type IS NOT NULL"
        )
    }

    fn email_primary(&self) -> &'static str {
        "(json_extract(el.value, '$.primary') = 1)"
    }

    fn json_element(&self, case_exact: bool) -> Scalar {
        Scalar::json("el.value", "el.type", case_exact)
    }

    fn json_member(&self, key: &str) -> Scalar {
        let key = key.replace('\'', "''").replace('"', "");
        Scalar::json(
            format!("json_extract(el.value, '$.\"{key}\"')"),
            format!("json_type(el.value, '$.\"{key}\"')"),
            false,
        )
    }

    fn sort_text(&self, expr: &str) -> String {
        format!("COALESCE(lower({expr}), '')")
    }

    fn json_element_text(&self) -> &'static str {
        "el.value"
    }
}
