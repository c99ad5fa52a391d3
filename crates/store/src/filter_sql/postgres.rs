//! PostgreSQL: typed placeholders, `jsonb` and `jsonpath`, and the `"C"`
//! collation for the evaluator's byte order.

use chrono::{DateTime, Utc};
use roster_scim::filter::CompareOp;

use super::SqlArg;
use super::translate::{Bind, Scalar, SqlDialect};

pub(super) struct Postgres;

impl SqlDialect for Postgres {
    fn placeholder(&self, n: usize, arg: &SqlArg) -> String {
        let cast = match arg {
            SqlArg::Text(_) => "::text",
            SqlArg::Bool(_) => "::boolean",
            SqlArg::Number(_) => "::numeric",
            SqlArg::Timestamp(_) => "::timestamptz",
            SqlArg::TextArray(_) => "::text[]",
        };
        format!("${n}{cast}")
    }

    fn folds_operands(&self) -> bool {
        false
    }

    fn exact_affix(&self) -> Option<fn(CompareOp, &str, &str) -> String> {
        None
    }

    fn ordered_text(&self, lhs: &str, sql_op: &str, p: &str) -> String {
        format!("({lhs} COLLATE \"C\" {sql_op} {p})")
    }

    fn timestamp_arg(&self, at: DateTime<Utc>) -> SqlArg {
        SqlArg::Timestamp(at)
    }

    fn json_non_empty(&self, s: &Scalar) -> String {
        format!(
            "({0} IS NOT NULL AND {1} <> 'null' AND {0} NOT IN ('\"\"'::jsonb, '[]'::jsonb, '{{}}'::jsonb))",
            s.expr, s.type_expr
        )
    }

    fn json_compared(&self, s: &Scalar) -> (String, String) {
        let x = format!(
            "(CASE WHEN jsonb_typeof({0}) = 'object' THEN {0} -> 'value' ELSE {0} END)",
            s.expr
        );
        let t = format!("jsonb_typeof({x})");
        (x, t)
    }

    fn json_text(&self, x: &str) -> String {
        format!("({x} #>> '{{}}')")
    }

    fn json_string_type(&self) -> &'static str {
        "string"
    }

    fn json_number(&self, t: &str, x: &str, sql_op: &str, p: &str) -> String {
        format!("({t} = 'number' AND ({x} #>> '{{}}')::numeric {sql_op} {p})")
    }

    fn json_bool(&self, t: &str, x: &str, b: bool, bind: Bind<'_>) -> String {
        let p = bind(SqlArg::Bool(b));
        format!("({t} = 'boolean' AND ({x} #>> '{{}}')::boolean = {p})")
    }

    fn id_text(&self, column: &str) -> String {
        format!("{column}::text")
    }

    fn group_name_is_key(&self) -> bool {
        false
    }

    fn emails_from(&self, emails: &str) -> String {
        format!("jsonb_array_elements({emails}) AS el(j)")
    }

    fn json_values(&self, raw: &str, keys: &[String], bind: Bind<'_>) -> String {
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let p = bind(SqlArg::Text(json_path(&keys)));
        format!("SELECT jsonb_path_query({raw}, {p}::jsonpath) AS j")
    }

    fn email_primary(&self) -> &'static str {
        "((el.j ->> 'primary')::boolean)"
    }

    fn json_element(&self, case_exact: bool) -> Scalar {
        Scalar::json("el.j", "jsonb_typeof(el.j)", case_exact)
    }

    fn json_member(&self, key: &str) -> Scalar {
        let key = key.replace('\'', "''");
        let x = format!("(el.j -> '{key}')");
        Scalar::json(&x, format!("jsonb_typeof({x})"), false)
    }

    fn sort_text(&self, expr: &str) -> String {
        format!("COALESCE(lower({expr}), '') COLLATE \"C\"")
    }

    fn json_element_text(&self) -> &'static str {
        "(el.j #>> '{}')"
    }
}

/// A JSON path literal (SQL/JSON `jsonpath`) reaching every leaf value of
/// the keys, unwrapping arrays at each step like the evaluator does.
pub(super) fn json_path(keys: &[&str]) -> String {
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
