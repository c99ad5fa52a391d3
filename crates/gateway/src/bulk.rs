//! `POST /Bulk` (RFC 7644 §3.7): operations run one after another;
//! `bulkId:` references are resolved as the operations that define them
//! succeed, forward references are deferred, and `failOnErrors` stops the
//! run after that many errors.

use std::collections::{HashMap, HashSet};

use axum::http::StatusCode;
use roster_scim::error::ScimError;
use roster_scim::resource::BULK_RESPONSE_SCHEMA;
use serde_json::{Map, Value, json};

use crate::body::BulkBody;
use crate::error::GatewayError;
use crate::etag::parse_if_match;
use crate::handlers::HandlerResult;
use crate::query::Projection;
use crate::render::{Kind, location};
use crate::resources::{Ctx, Outcome};
use crate::response::scim_json;

const BULK_ID_PREFIX: &str = "bulkId:";

/// HTTP methods a bulk operation may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Create.
    Post,
    /// Replace.
    Put,
    /// Modify.
    Patch,
    /// Delete.
    Delete,
}

impl Method {
    fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "POST" => Some(Self::Post),
            "PUT" => Some(Self::Put),
            "PATCH" => Some(Self::Patch),
            "DELETE" => Some(Self::Delete),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        }
    }
}

/// One operation as sent, before references are resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// Method as sent (echoed in the response even when unknown).
    pub method_text: String,
    /// Parsed method.
    pub method: Option<Method>,
    /// Client-chosen id of a created resource.
    pub bulk_id: Option<String>,
    /// ETag precondition.
    pub version: Option<String>,
    /// Resource path, e.g. `/Users` or `/Groups/bulkId:g1`.
    pub path: String,
    /// Resource or PatchOp body.
    pub data: Option<Value>,
}

/// A parsed bulk request.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkRequest {
    /// Errors after which processing stops; `None` processes everything.
    pub fail_on_errors: Option<usize>,
    /// The operations, in request order.
    pub operations: Vec<Operation>,
}

/// Where an operation's path points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Resource type.
    pub kind: Kind,
    /// Resource id, for everything but POST.
    pub id: Option<String>,
}

/// An operation ready to execute: references resolved, target parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadyOp {
    /// Method.
    pub method: Method,
    /// Target resource.
    pub target: Target,
    /// ETag precondition.
    pub version: Option<String>,
    /// Body with `bulkId:` references replaced by ids.
    pub data: Option<Value>,
}

/// The result of one operation as it appears in the BulkResponse.
#[derive(Debug, Clone, PartialEq)]
pub struct OpResult {
    /// HTTP status.
    pub status: u16,
    /// Resource URL.
    pub location: Option<String>,
    /// Resource ETag.
    pub version: Option<String>,
    /// Id of a created resource, for resolving references to it.
    pub created_id: Option<String>,
    /// SCIM error body of a failed operation.
    pub error: Option<Value>,
}

impl OpResult {
    fn failed(error: &ScimError) -> Self {
        Self {
            status: error.status,
            location: None,
            version: None,
            created_id: None,
            error: Some(error.to_json()),
        }
    }

    fn is_error(&self) -> bool {
        self.status >= 400
    }
}

/// Reads a BulkRequest (RFC 7644 §3.7.1); more operations than allowed is
/// 413 as §3.7.4 requires.
pub fn parse_request(body: &Value, max_operations: usize) -> Result<BulkRequest, ScimError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("a BulkRequest must be a JSON object"))?;
    let operations = member(obj, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::invalid_syntax("a BulkRequest needs an \"Operations\" array"))?;
    if operations.len() > max_operations {
        return Err(ScimError::payload_too_large(format!(
            "the bulk request has {} operations; maxOperations is {max_operations}",
            operations.len()
        )));
    }
    let fail_on_errors = match member(obj, "failOnErrors") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_i64() {
            Some(n) if n >= 1 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            _ => {
                return Err(ScimError::invalid_value(
                    "failOnErrors must be a positive integer",
                ));
            }
        },
    };
    let operations = operations.iter().map(parse_operation).collect();
    Ok(BulkRequest {
        fail_on_errors,
        operations,
    })
}

fn parse_operation(op: &Value) -> Operation {
    let text = |name: &str| {
        op.as_object()
            .and_then(|o| member(o, name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let method_text = text("method").unwrap_or_default();
    Operation {
        method: Method::parse(&method_text),
        method_text,
        bulk_id: text("bulkId"),
        version: text("version"),
        path: text("path").unwrap_or_default(),
        data: op.as_object().and_then(|o| member(o, "data")).cloned(),
    }
}

/// A member of a JSON object, by case-insensitive name (RFC 7643 §2.1).
fn member<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// Parses `/Users`, `/Groups/{id}` and the like.
pub fn parse_target(path: &str) -> Option<Target> {
    let trimmed = path.trim().trim_start_matches('/');
    let mut parts = trimmed.splitn(2, '/');
    let kind = match parts.next()? {
        "Users" => Kind::User,
        "Groups" => Kind::Group,
        _ => return None,
    };
    let id = match parts.next() {
        None => None,
        Some(id) if !id.is_empty() && !id.contains('/') => Some(id.to_owned()),
        Some(_) => return None,
    };
    Some(Target { kind, id })
}

/// Every `bulkId:` reference in an operation's path and data.
pub fn references(op: &Operation) -> HashSet<String> {
    let mut refs = HashSet::new();
    for segment in op.path.split('/') {
        if let Some(id) = segment.strip_prefix(BULK_ID_PREFIX) {
            refs.insert(id.to_owned());
        }
    }
    if let Some(data) = &op.data {
        collect_references(data, &mut refs);
    }
    refs
}

fn collect_references(value: &Value, refs: &mut HashSet<String>) {
    match value {
        Value::String(s) => {
            if let Some(id) = s.strip_prefix(BULK_ID_PREFIX) {
                refs.insert(id.to_owned());
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_references(v, refs)),
        Value::Object(obj) => obj.values().for_each(|v| collect_references(v, refs)),
        _ => {}
    }
}

/// Replaces every `bulkId:x` in `value` with the id created for `x`.
fn substitute(value: &mut Value, ids: &HashMap<String, String>) {
    match value {
        Value::String(s) => {
            if let Some(id) = s.strip_prefix(BULK_ID_PREFIX).and_then(|b| ids.get(b)) {
                *s = id.clone();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| substitute(v, ids)),
        Value::Object(obj) => obj.values_mut().for_each(|v| substitute(v, ids)),
        _ => {}
    }
}

fn substitute_path(path: &str, ids: &HashMap<String, String>) -> String {
    path.split('/')
        .map(|seg| {
            seg.strip_prefix(BULK_ID_PREFIX)
                .and_then(|b| ids.get(b))
                .map_or(seg, String::as_str)
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Checks an operation and resolves its references into a [`ReadyOp`].
fn prepare(op: &Operation, ids: &HashMap<String, String>) -> Result<ReadyOp, ScimError> {
    let method = op.method.ok_or_else(|| {
        ScimError::invalid_value(format!(
            "unsupported bulk method {:?}; use POST, PUT, PATCH or DELETE",
            op.method_text
        ))
    })?;
    let path = substitute_path(&op.path, ids);
    let target = parse_target(&path)
        .filter(|t| (method == Method::Post) == t.id.is_none())
        .ok_or_else(|| {
            ScimError::invalid_path(format!("invalid bulk operation path {:?}", op.path))
        })?;
    let mut data = op.data.clone();
    if method != Method::Delete && !data.as_ref().is_some_and(Value::is_object) {
        return Err(ScimError::invalid_syntax(format!(
            "bulk {} operation needs a \"data\" object",
            method.as_str()
        )));
    }
    if let Some(d) = data.as_mut() {
        substitute(d, ids);
    }
    Ok(ReadyOp {
        method,
        target,
        version: op.version.clone(),
        data,
    })
}

/// Most user creations of one request sent at once (see [`run`]).
const CONCURRENT_CREATES: usize = 100;

/// Runs the operations through `execute` and returns, in request order,
/// the results of those that were processed.
///
/// Consecutive user creations that reference no `bulkId` do not depend on
/// each other, so they are sent together (up to [`CONCURRENT_CREATES`], and
/// never more than `failOnErrors` still allows to fail): the directory
/// service then writes them in one transaction (group commit). Their
/// results are recorded in request order, as if run one by one.
pub async fn run<F, Fut>(request: &BulkRequest, mut execute: F) -> Vec<(usize, OpResult)>
where
    F: FnMut(ReadyOp) -> Fut,
    Fut: Future<Output = OpResult>,
{
    let ops = &request.operations;
    let defined_by: HashMap<&str, usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, op)| op.method == Some(Method::Post))
        .filter_map(|(i, op)| op.bulk_id.as_deref().map(|b| (b, i)))
        .collect();
    let mut results: Vec<Option<OpResult>> = vec![None; ops.len()];
    let mut created: HashMap<String, String> = HashMap::new();
    let mut errors = 0usize;
    let mut progressed = true;
    'passes: while progressed {
        progressed = false;
        let mut i = 0;
        while i < ops.len() {
            let budget = request
                .fail_on_errors
                .map_or(usize::MAX, |limit| limit - errors);
            let together = free_creations(
                ops,
                i,
                &results,
                &defined_by,
                budget.min(CONCURRENT_CREATES),
            );
            let outcomes: Vec<(usize, OpResult)> = if together > 1 {
                let ready: Vec<_> = (i..i + together)
                    .map(|k| (k, prepare(&ops[k], &created)))
                    .collect();
                let runs = ready.into_iter().map(|(k, prepared)| {
                    let run = prepared.map(&mut execute);
                    async move {
                        match run {
                            Ok(run) => (k, run.await),
                            Err(e) => (k, OpResult::failed(&e)),
                        }
                    }
                });
                futures::future::join_all(runs).await
            } else if results[i].is_some() {
                Vec::new()
            } else {
                let op = &ops[i];
                let result = match resolution(op, i, &defined_by, &created, &results) {
                    Resolution::Wait => None,
                    Resolution::Unresolvable(bulk_id) => {
                        Some(OpResult::failed(&unresolved(&bulk_id)))
                    }
                    Resolution::Ready => Some(match duplicate_bulk_id(op, i, &defined_by) {
                        Some(e) => OpResult::failed(&e),
                        None => match prepare(op, &created) {
                            Ok(ready) => execute(ready).await,
                            Err(e) => OpResult::failed(&e),
                        },
                    }),
                };
                result.map(|r| (i, r)).into_iter().collect()
            };
            i += together.max(1);
            for (k, result) in outcomes {
                progressed = true;
                if let (Some(bulk_id), Some(id)) = (&ops[k].bulk_id, &result.created_id) {
                    created.insert(bulk_id.clone(), id.clone());
                }
                errors += usize::from(result.is_error());
                results[k] = Some(result);
                if request.fail_on_errors.is_some_and(|limit| errors >= limit) {
                    break 'passes;
                }
            }
        }
    }
    if request.fail_on_errors.is_none_or(|limit| errors < limit) {
        // What is still waiting references itself in a cycle (§3.7.1).
        for (i, slot) in results.iter_mut().enumerate() {
            if slot.is_none() {
                *slot = Some(OpResult::failed(&ScimError::new(
                    409,
                    Some(roster_scim::error::ScimType::InvalidValue),
                    format!("operation {i} is part of a circular bulkId reference"),
                )));
            }
        }
    }
    results
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| r.map(|r| (i, r)))
        .collect()
}

/// How many operations from `start` on are user creations that nothing
/// in them references (no `bulkId:` in path or data) and no earlier
/// operation already answered, at most `cap`.
fn free_creations(
    ops: &[Operation],
    start: usize,
    results: &[Option<OpResult>],
    defined_by: &HashMap<&str, usize>,
    cap: usize,
) -> usize {
    ops[start..]
        .iter()
        .enumerate()
        .take(cap)
        .take_while(|(n, op)| {
            let i = start + n;
            results[i].is_none()
                && op.method == Some(Method::Post)
                && parse_target(&op.path).is_some_and(|t| t.kind == Kind::User && t.id.is_none())
                && references(op).is_empty()
                && duplicate_bulk_id(op, i, defined_by).is_none()
        })
        .count()
}

enum Resolution {
    Ready,
    Wait,
    Unresolvable(String),
}

fn resolution(
    op: &Operation,
    index: usize,
    defined_by: &HashMap<&str, usize>,
    created: &HashMap<String, String>,
    results: &[Option<OpResult>],
) -> Resolution {
    let mut wait = false;
    for bulk_id in references(op) {
        if created.contains_key(&bulk_id) {
            continue;
        }
        match defined_by.get(bulk_id.as_str()) {
            Some(&def) if def != index && results[def].is_none() => wait = true,
            _ => return Resolution::Unresolvable(bulk_id),
        }
    }
    if wait {
        Resolution::Wait
    } else {
        Resolution::Ready
    }
}

fn duplicate_bulk_id(
    op: &Operation,
    index: usize,
    defined_by: &HashMap<&str, usize>,
) -> Option<ScimError> {
    let bulk_id = op.bulk_id.as_deref()?;
    let first = defined_by.get(bulk_id).copied()?;
    // `defined_by` keeps the last POST with an id; any other one is a duplicate.
    (op.method == Some(Method::Post) && first != index).then(|| {
        ScimError::invalid_value(format!(
            "bulkId {bulk_id:?} is used by more than one operation"
        ))
    })
}

fn unresolved(bulk_id: &str) -> ScimError {
    ScimError::new(
        409,
        Some(roster_scim::error::ScimType::InvalidValue),
        format!("bulkId {bulk_id:?} does not refer to a resource created by this request"),
    )
}

/// Runs one prepared operation against the directory service.
async fn execute(ctx: &Ctx, op: ReadyOp) -> OpResult {
    let kind = op.target.kind;
    let if_match = op.version.as_deref().map(parse_if_match);
    let none = Projection::default();
    // A bulk response carries no resource bodies: POST and PUT never read
    // group members back (a default PATCH of a group reads nothing anyway).
    let no_members = Projection::without_members();
    let id = op.target.id.clone().unwrap_or_default();
    let data = op.data.unwrap_or(Value::Null);
    let outcome: Result<Outcome, GatewayError> = match op.method {
        Method::Post => ctx.create(kind, &data, &no_members).await,
        Method::Put => ctx.replace(kind, &id, &data, if_match, &no_members).await,
        Method::Patch => ctx.patch(kind, &id, &data, if_match, &none).await,
        Method::Delete => ctx.delete(kind, &id, if_match).await,
    };
    match outcome {
        Ok(outcome) => OpResult {
            status: outcome.status.as_u16(),
            location: outcome.location.or_else(|| {
                op.target
                    .id
                    .as_ref()
                    .map(|id| location(ctx.scim_base(), kind, id))
            }),
            version: outcome.etag,
            created_id: (op.method == Method::Post)
                .then(|| {
                    outcome
                        .body
                        .as_ref()?
                        .get("id")?
                        .as_str()
                        .map(str::to_owned)
                })
                .flatten(),
            error: None,
        },
        Err(e) => {
            if let GatewayError::Internal(detail) | GatewayError::Unavailable(detail) = &e {
                tracing::warn!(error = %detail, "bulk operation failed");
            }
            let mut result = OpResult::failed(&e.to_scim());
            result.location = op
                .target
                .id
                .as_ref()
                .map(|id| location(ctx.scim_base(), kind, id));
            result
        }
    }
}

/// Renders processed operations as a BulkResponse (RFC 7644 §3.7.3).
pub fn bulk_response(request: &BulkRequest, results: &[(usize, OpResult)]) -> Value {
    let operations: Vec<Value> = results
        .iter()
        .map(|(i, result)| {
            let op = &request.operations[*i];
            let mut entry = Map::new();
            entry.insert(
                "method".into(),
                json!(
                    op.method
                        .map_or(op.method_text.clone(), |m| m.as_str().to_owned())
                ),
            );
            if let Some(b) = &op.bulk_id {
                entry.insert("bulkId".into(), json!(b));
            }
            if let Some(l) = &result.location {
                entry.insert("location".into(), json!(l));
            }
            if let Some(v) = &result.version {
                entry.insert("version".into(), json!(v));
            }
            entry.insert("status".into(), json!(result.status.to_string()));
            if let Some(e) = &result.error {
                entry.insert("response".into(), e.clone());
            }
            Value::Object(entry)
        })
        .collect();
    json!({ "schemas": [BULK_RESPONSE_SCHEMA], "Operations": operations })
}

/// `POST /Bulk`.
pub async fn handle(ctx: Ctx, BulkBody(body): BulkBody) -> HandlerResult {
    let request = parse_request(&body, ctx.state().config().bulk_max_operations)?;
    let results = run(&request, |op| execute(&ctx, op)).await;
    Ok(scim_json(
        StatusCode::OK,
        &bulk_response(&request, &results),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: Value) -> BulkRequest {
        parse_request(&body, 10).unwrap()
    }

    /// Executes against an in-memory counter: POSTs create ids "id-N",
    /// operations on "/Users/missing" fail with 404.
    async fn run_fake(req: &BulkRequest) -> (Vec<(usize, OpResult)>, Vec<ReadyOp>) {
        let mut seen = Vec::new();
        let mut next = 0;
        let results = run(req, |op: ReadyOp| {
            seen.push(op.clone());
            let result = if op.target.id.as_deref() == Some("missing") {
                OpResult::failed(&ScimError::not_found("no such user"))
            } else {
                next += 1;
                let created = (op.method == Method::Post).then(|| format!("id-{next}"));
                let status = if created.is_some() { 201 } else { 200 };
                OpResult {
                    status,
                    location: None,
                    version: None,
                    created_id: created,
                    error: None,
                }
            };
            std::future::ready(result)
        })
        .await;
        (results, seen)
    }

    #[test]
    fn parses_limits_and_shapes() {
        assert_eq!(parse_request(&json!([]), 10).unwrap_err().status, 400);
        assert_eq!(parse_request(&json!({}), 10).unwrap_err().status, 400);
        let ops: Vec<Value> = (0..11)
            .map(|_| json!({"method":"DELETE","path":"/Users/x"}))
            .collect();
        assert_eq!(
            parse_request(&json!({"Operations": ops}), 10)
                .unwrap_err()
                .status,
            413
        );
        assert_eq!(
            parse_request(&json!({"Operations": [], "failOnErrors": "x"}), 10)
                .unwrap_err()
                .status,
            400
        );
        let r = request(
            json!({"operations": [{"method":"post","path":"/Users","bulkId":"a","data":{}}], "failOnErrors": 2}),
        );
        assert_eq!(r.fail_on_errors, Some(2));
        assert_eq!(r.operations[0].method, Some(Method::Post));
    }

    #[test]
    fn parses_targets() {
        assert_eq!(
            parse_target("/Users"),
            Some(Target {
                kind: Kind::User,
                id: None
            })
        );
        assert_eq!(
            parse_target("Groups/g1"),
            Some(Target {
                kind: Kind::Group,
                id: Some("g1".into())
            })
        );
        assert_eq!(parse_target("/Users/a/b"), None);
        assert_eq!(parse_target("/Other"), None);
        assert_eq!(parse_target("/Users/"), None);
    }

    #[tokio::test]
    async fn resolves_forward_references() {
        let req = request(json!({"Operations": [
            {"method":"POST","path":"/Groups","bulkId":"g","data":{"displayName":"G","members":[{"value":"bulkId:u"}]}},
            {"method":"PATCH","path":"/Groups/bulkId:g","data":{"Operations":[{"op":"add","path":"members","value":[{"value":"bulkId:u"}]}]}},
            {"method":"POST","path":"/Users","bulkId":"u","data":{"userName":"u"}}
        ]}));
        let (results, seen) = run_fake(&req).await;
        // The user is created first, then the group that references it.
        assert_eq!(seen[0].target.kind, Kind::User);
        assert_eq!(
            seen[1].data.as_ref().unwrap()["members"][0]["value"],
            "id-1"
        );
        assert_eq!(seen[2].target.id.as_deref(), Some("id-2"));
        assert_eq!(
            seen[2].data.as_ref().unwrap()["Operations"][0]["value"][0]["value"],
            "id-1"
        );
        let statuses: Vec<u16> = results.iter().map(|(_, r)| r.status).collect();
        assert_eq!(statuses, vec![201, 200, 201]);
        assert_eq!(
            results.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
    }

    #[tokio::test]
    async fn unknown_and_circular_references_fail_with_409() {
        let req = request(json!({"Operations": [
            {"method":"POST","path":"/Groups","bulkId":"a","data":{"members":[{"value":"bulkId:b"}]}},
            {"method":"POST","path":"/Groups","bulkId":"b","data":{"members":[{"value":"bulkId:a"}]}},
            {"method":"DELETE","path":"/Users/bulkId:nope"}
        ]}));
        let (results, seen) = run_fake(&req).await;
        assert!(seen.is_empty());
        assert!(results.iter().all(|(_, r)| r.status == 409), "{results:?}");
        assert_eq!(
            results[0].1.error.as_ref().unwrap()["scimType"],
            "invalidValue"
        );
    }

    #[tokio::test]
    async fn references_to_failed_creates_fail() {
        let req = request(json!({"Operations": [
            {"method":"POST","path":"/Users","bulkId":"u","data":"not an object"},
            {"method":"DELETE","path":"/Users/bulkId:u"}
        ]}));
        let (results, _) = run_fake(&req).await;
        assert_eq!(results[0].1.status, 400);
        assert_eq!(results[1].1.status, 409);
    }

    #[tokio::test]
    async fn stops_after_fail_on_errors() {
        let req = request(json!({"failOnErrors": 1, "Operations": [
            {"method":"DELETE","path":"/Users/missing"},
            {"method":"POST","path":"/Users","bulkId":"x","data":{"userName":"x"}}
        ]}));
        let (results, seen) = run_fake(&req).await;
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].1.status, 404);
        assert_eq!(seen.len(), 1);
    }

    #[tokio::test]
    async fn rejects_bad_operations_individually() {
        let req = request(json!({"Operations": [
            {"method":"GET","path":"/Users/x"},
            {"method":"POST","path":"/Users/x","data":{}},
            {"method":"PUT","path":"/Users/x"},
            {"method":"POST","path":"/Users","bulkId":"d","data":{}},
            {"method":"POST","path":"/Users","bulkId":"d","data":{}},
            {"method":"DELETE","path":"/Users/x"}
        ]}));
        let (results, _) = run_fake(&req).await;
        let statuses: Vec<u16> = results.iter().map(|(_, r)| r.status).collect();
        assert_eq!(statuses, vec![400, 400, 400, 400, 201, 200]);
        let body = bulk_response(&req, &results);
        assert_eq!(body["Operations"][0]["method"], "GET");
        assert_eq!(body["Operations"][0]["status"], "400");
        assert_eq!(body["Operations"][4]["bulkId"], "d");
        assert!(body["Operations"][5].get("response").is_none());
    }
}
