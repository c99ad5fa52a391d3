//! A property-style HTTP fuzzer over the running gateway: a few thousand
//! randomly generated and mutated SCIM requests (methods, paths, query
//! strings, JSON bodies built from SCIM fragments, random bytes, PATCH
//! operations, bulk requests, headers), a quarter of them in SCIM 1.1 under
//! `/scim/v1/` (partial-resource PATCHes with `meta.attributes` and
//! `"operation": "delete"`, 1.1 URNs and path spellings). Properties: no
//! 5xx, every error is a SCIM error body of the request's version, no hang,
//! the server stays alive and logs no panic.
//!
//! Deterministic per seed: `ROSTER_FUZZ_SEED=<n>` replays a run (the seed is
//! printed on failure); `ROSTER_FUZZ_CASES=<n>` changes the number of requests.

use futures::StreamExt;
use reqwest::Method;
use roster_testkit::app;
use roster_testkit::app::{
    BULK_REQUEST_SCHEMA, ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, PATCH_OP_SCHEMA,
    SEARCH_REQUEST_SCHEMA, USER_SCHEMA,
};
use roster_testkit::app::{ERROR_SCHEMA, Reply, truncated};
use serde_json::{Value, json};

#[allow(dead_code)] // each includer takes what it needs
#[path = "../../crates/scim/fuzz/src/generate.rs"]
mod generate;
use generate::Rng;

const ATTRIBUTES: &[&str] = &[
    "userName",
    "id",
    "externalId",
    "displayName",
    "active",
    "title",
    "emails",
    "emails.value",
    "emails[type eq \"work\"].value",
    "name.givenName",
    "name.familyName",
    "members",
    "members.value",
    "groups",
    "meta.lastModified",
    "meta.created",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
    "schemas",
    "nope",
    "",
    "a.b.c.d",
];
const OPERATORS: &[&str] = &[
    "eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le", "pr", "EQ", "like", "=",
];
const VALUES: &[&str] = &[
    "\"x\"",
    "\"\"",
    "true",
    "false",
    "null",
    "5",
    "-1.5e300",
    "1e400",
    "\"2024-01-01T00:00:00Z\"",
    "\"\\\"\"",
    "\"'; DROP TABLE users; --\"",
    "\"%_\"",
    "\"\u{0}\"",
    "\"\u{202E}\"",
    "x",
    "\"unterminated",
];
const SCHEMAS: &[&str] = &[
    USER_SCHEMA,
    GROUP_SCHEMA,
    PATCH_OP_SCHEMA,
    BULK_REQUEST_SCHEMA,
    SEARCH_REQUEST_SCHEMA,
    ENTERPRISE_USER_SCHEMA,
    "urn:evil",
];

fn filter(rng: &mut Rng, depth: usize) -> String {
    if depth > 3 || rng.chance(50) {
        let attr = rng.pick(ATTRIBUTES);
        let op = rng.pick(OPERATORS);
        return if *op == "pr" {
            format!("{attr} pr")
        } else {
            format!("{attr} {op} {}", rng.pick(VALUES))
        };
    }
    match rng.below(5) {
        0 => format!("{} and {}", filter(rng, depth + 1), filter(rng, depth + 1)),
        1 => format!("{} or {}", filter(rng, depth + 1), filter(rng, depth + 1)),
        2 => format!("not ({})", filter(rng, depth + 1)),
        3 => format!("({})", filter(rng, depth + 1)),
        _ => format!("emails[{}]", filter(rng, depth + 1)),
    }
}

fn mutate_text(rng: &mut Rng, text: &str) -> String {
    let mut bytes: Vec<char> = text.chars().collect();
    for _ in 0..1 + rng.below(3) {
        if bytes.is_empty() {
            break;
        }
        let at = rng.below(bytes.len());
        match rng.below(3) {
            0 => {
                bytes.remove(at);
            }
            1 => bytes.insert(
                at,
                *rng.pick(&['(', ')', '"', '[', ']', '\\', ' ', '\u{0}', 'é', '{']),
            ),
            _ => bytes.truncate(at),
        }
    }
    bytes.into_iter().collect()
}

fn query(rng: &mut Rng) -> String {
    let mut params = Vec::new();
    for _ in 0..rng.below(4) {
        let (name, value) = match rng.below(8) {
            0 | 1 => {
                let f = filter(rng, 0);
                (
                    "filter",
                    if rng.chance(30) {
                        mutate_text(rng, &f)
                    } else {
                        f
                    },
                )
            }
            2 => (
                "count",
                rng.pick(&[
                    "-1",
                    "0",
                    "1",
                    "1000",
                    "1e30",
                    "abc",
                    "99999999999999999999",
                    "",
                ])
                .to_string(),
            ),
            3 => (
                "startIndex",
                rng.pick(&["-5", "0", "1", "2", "9223372036854775807", "x"])
                    .to_string(),
            ),
            4 => ("sortBy", rng.pick(ATTRIBUTES).to_string()),
            5 => (
                "sortOrder",
                rng.pick(&["ascending", "descending", "up", ""]).to_string(),
            ),
            6 => ("attributes", rng.pick(ATTRIBUTES).to_string()),
            _ => ("excludedAttributes", rng.pick(ATTRIBUTES).to_string()),
        };
        params.push(format!("{name}={}", app::percent_encode(&value)));
    }
    if params.is_empty() {
        String::new()
    } else {
        format!("?{}", params.join("&"))
    }
}

fn scalar(rng: &mut Rng) -> Value {
    match rng.below(8) {
        0 => json!(null),
        1 => json!(rng.chance(50)),
        2 => json!(rng.next_u64() as i64),
        3 => json!(1.5e300),
        4 => json!(format!("fuzz{}@example.com", rng.below(50))),
        5 => json!(""),
        6 => json!("\u{0}\u{202E}'\";--"),
        _ => json!({"value": format!("v{}", rng.below(9))}),
    }
}

fn resource(rng: &mut Rng, ids: &[String]) -> Value {
    let mut doc = serde_json::Map::new();
    if rng.chance(85) {
        doc.insert("schemas".into(), json!([rng.pick(SCHEMAS)]));
    }
    for _ in 0..rng.below(6) {
        let key = rng.pick(&[
            "userName",
            "displayName",
            "active",
            "title",
            "externalId",
            "emails",
            "members",
            "name",
            "id",
            "meta",
            "groups",
            "password",
        ]);
        let value = match *key {
            "members" if rng.chance(60) => json!([{"value": rng.pick(ids)}]),
            "emails" if rng.chance(60) => {
                json!([{"value": "a@b.c", "type": "work", "primary": "true"}])
            }
            _ => scalar(rng),
        };
        doc.insert(key.to_string(), value);
    }
    Value::Object(doc)
}

fn patch(rng: &mut Rng, ids: &[String]) -> Value {
    let ops: Vec<Value> = (0..1 + rng.below(3))
        .map(|_| {
            let mut op = serde_json::Map::new();
            op.insert(
                "op".into(),
                json!(rng.pick(&["add", "remove", "replace", "Replace", "move", ""])),
            );
            if rng.chance(80) {
                let path = match rng.below(4) {
                    0 => format!("members[value eq \"{}\"]", rng.pick(ids)),
                    1 => filter(rng, 2),
                    2 => {
                        let attr = *rng.pick(ATTRIBUTES);
                        mutate_text(rng, attr)
                    }
                    _ => rng.pick(ATTRIBUTES).to_string(),
                };
                op.insert("path".into(), json!(path));
            }
            if rng.chance(80) {
                let value = if rng.chance(40) {
                    json!([{"value": rng.pick(ids)}])
                } else {
                    scalar(rng)
                };
                op.insert("value".into(), value);
            }
            Value::Object(op)
        })
        .collect();
    json!({"schemas": [SCHEMAS[2]], "Operations": ops})
}

fn bulk(rng: &mut Rng, ids: &[String]) -> Value {
    let ops: Vec<Value> = (0..rng.below(6))
        .map(|i| {
            let method = *rng.pick(&["POST", "PUT", "PATCH", "DELETE", "GET", "nope"]);
            let path = match rng.below(4) {
                0 => "/Users".to_string(),
                1 => "/Groups".to_string(),
                2 => format!("/Users/{}", rng.pick(ids)),
                _ => format!("/Groups/bulkId:b{}", rng.below(4)),
            };
            let data = if method == "PATCH" {
                patch(rng, ids)
            } else {
                resource(rng, ids)
            };
            json!({"method": method, "path": path, "bulkId": format!("b{i}"), "data": data})
        })
        .collect();
    json!({"schemas": [SCHEMAS[3]], "failOnErrors": rng.below(3), "Operations": ops})
}

fn body(rng: &mut Rng, ids: &[String]) -> Option<Vec<u8>> {
    let doc = match rng.below(8) {
        0 => return None,
        1 => {
            let n = rng.below(200);
            return Some((0..n).map(|_| rng.next_u64() as u8).collect());
        }
        2 => patch(rng, ids),
        3 => bulk(rng, ids),
        4 => {
            json!({"schemas": [SCHEMAS[4]], "filter": filter(rng, 0), "count": scalar(rng), "startIndex": scalar(rng)})
        }
        _ => resource(rng, ids),
    };
    Some(sometimes_mutated(rng, 20, doc.to_string()))
}

/// `text` as bytes, mutated by [`mutate_text`] in `percent`% of the cases.
fn sometimes_mutated(rng: &mut Rng, percent: usize, text: String) -> Vec<u8> {
    if rng.chance(percent) {
        mutate_text(rng, &text)
    } else {
        text
    }
    .into_bytes()
}

const V1_CORE: &str = "urn:scim:schemas:core:1.0";
const V1_ENTERPRISE: &str = "urn:scim:schemas:extension:enterprise:1.0";

/// A SCIM 1.1 body: a resource or a partial one, with the 1.1 forms.
fn v1_body(rng: &mut Rng, ids: &[String]) -> Option<Vec<u8>> {
    let mut doc = match body(rng, ids).and_then(|b| serde_json::from_slice::<Value>(&b).ok()) {
        Some(Value::Object(o)) => o,
        _ => return body(rng, ids),
    };
    doc.remove("Operations");
    if rng.chance(80) {
        doc.insert("schemas".into(), json!([V1_CORE]));
    }
    if rng.chance(40) {
        let names: Vec<&str> = (0..rng.below(3)).map(|_| *rng.pick(ATTRIBUTES)).collect();
        doc.insert("meta".into(), json!({"attributes": names}));
    }
    if rng.chance(40) {
        let operation = *rng.pick(&["delete", "Delete", "merge", ""]);
        let member = json!({"value": rng.pick(ids), "operation": operation});
        let key = *rng.pick(&["members", "emails", "addresses"]);
        doc.insert(
            key.into(),
            json!([member, {"value": "a@b.c", "primary": true}]),
        );
    }
    if rng.chance(20) {
        doc.insert(
            V1_ENTERPRISE.into(),
            json!({"employeeNumber": scalar(rng), "manager": {"managerId": rng.pick(ids)}}),
        );
    }
    Some(sometimes_mutated(rng, 15, Value::Object(doc).to_string()))
}

/// A 1.1 path: the 2.0 ones, 1.1 discovery, and the `/v1` and `.json`
/// spellings of 1.1 clients.
fn v1_path(rng: &mut Rng, ids: &[String]) -> String {
    let path = match rng.below(6) {
        0 => rng
            .pick(&[
                "/ServiceProviderConfigs",
                "/Schemas/Users",
                "/Schemas/Groups",
            ])
            .to_string(),
        _ => path(rng, ids),
    };
    match rng.below(6) {
        0 => format!("/v1{path}"),
        1 if !path.is_empty() => format!("{path}.json"),
        _ => path,
    }
}

fn path(rng: &mut Rng, ids: &[String]) -> String {
    let id = if rng.chance(70) {
        rng.pick(ids).clone()
    } else {
        {
            let base = rng.pick(ids).clone();
            mutate_text(rng, &base)
        }
    };
    match rng.below(14) {
        0 | 1 => "/Users".into(),
        2 | 3 => "/Groups".into(),
        4 | 5 => format!("/Users/{}", app::percent_encode(&id)),
        6 | 7 => format!("/Groups/{}", app::percent_encode(&id)),
        8 => "/Bulk".into(),
        9 => rng
            .pick(&["/.search", "/Users/.search", "/Groups/.search"])
            .to_string(),
        10 => rng
            .pick(&[
                "/ServiceProviderConfig",
                "/Schemas",
                "/ResourceTypes",
                "/ResourceTypes/User",
                "/Me",
            ])
            .to_string(),
        11 => {
            let schema = *rng.pick(SCHEMAS);
            format!("/Schemas/{}", app::percent_encode(schema))
        }
        12 => format!("/{}", app::percent_encode(&mutate_text(rng, "Users/x/y"))),
        _ => String::new(),
    }
}

/// One random request: `(SCIM 1.1?, method, path+query, headers, body)`.
type Request = (
    bool,
    Method,
    String,
    Vec<(&'static str, String)>,
    Option<Vec<u8>>,
);

fn request(rng: &mut Rng, ids: &[String]) -> Request {
    let v1 = rng.chance(25);
    let method = rng
        .pick(&[
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
            Method::GET,
            Method::POST,
            Method::PATCH,
        ])
        .clone();
    let url = match v1 {
        true => format!("{}{}", v1_path(rng, ids), query(rng)),
        false => format!("{}{}", path(rng, ids), query(rng)),
    };
    let mut headers = Vec::new();
    if rng.chance(70) {
        let ct = *rng.pick(&[
            "application/scim+json",
            "application/json",
            "application/scim+json; charset=utf-8",
            "text/plain",
            "application/xml",
            "",
        ]);
        if !ct.is_empty() {
            headers.push(("content-type", ct.to_string()));
        }
    }
    if rng.chance(15) {
        headers.push((
            "if-match",
            rng.pick(&["*", "W/\"1\"", "W/\"x\"", "\"2\"", "garbage"])
                .to_string(),
        ));
    }
    if rng.chance(5) {
        headers.push(("if-none-match", "*".to_string()));
    }
    let body = match v1 {
        true => v1_body(rng, ids),
        false => body(rng, ids),
    };
    (v1, method, url, headers, body)
}

/// The properties every answer must have; `/Me` (2.0) and `/Bulk` (1.1)
/// answer 501 by design (docs/scim.md).
fn check(got: &app::Reply, v1: bool, method: &Method, url: &str, seed: u64) -> Result<(), String> {
    let version = if v1 { "1.1" } else { "2.0" };
    let what = format!("seed {seed}: {version} {method} {}", truncated(url));
    let by_design = match v1 {
        false => url.starts_with("/Me"),
        true => url.trim_start_matches("/v1").starts_with("/Bulk"),
    };
    if got.status >= 500 && !(by_design && got.status == 501) {
        return Err(format!("{what}: {} {}", got.status, truncated(&got.text)));
    }
    let status = got.status.to_string();
    let scim_error = match v1 {
        false => got.body["schemas"][0] == ERROR_SCHEMA && got.body["status"] == *status,
        true => got.body["Errors"][0]["code"] == *status && got.body.get("schemas").is_none(),
    };
    if got.status >= 400 && !scim_error {
        return Err(format!(
            "{what}: not a SCIM error: {}",
            truncated(&got.text)
        ));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn thousands_of_random_scim_requests_get_no_5xx() {
    let seed: u64 = std::env::var("ROSTER_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let cases: usize = std::env::var("ROSTER_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    let served = app::serve_postgres("fuzz").await;
    let scim = served.scim();
    let mut ids = scim.create_users("seed", 5).await;
    ids.push(scim.create_group("seeded").await);
    ids.push("00000000-0000-0000-0000-000000000000".to_string());
    ids.push("not-a-uuid".to_string());

    let mut rng = Rng(seed);
    let requests: Vec<Request> = (0..cases).map(|_| request(&mut rng, &ids)).collect();
    let v1_cases = requests.iter().filter(|r| r.0).count();
    let results: Vec<Result<(bool, u16), String>> = futures::stream::iter(requests)
        .map(|(v1, method, url, headers, body)| {
            let scim = scim.clone();
            async move {
                let base = match v1 {
                    true => scim.base_url.replace("/scim/v2/", "/scim/v1/"),
                    false => scim.base_url.clone(),
                };
                let mut req = scim
                    .http
                    .request(method.clone(), format!("{base}{url}"))
                    .bearer_auth(&scim.token);
                for (name, value) in &headers {
                    req = req.header(*name, value);
                }
                if let Some(body) = body {
                    req = req.body(body);
                }
                let got = match req.send().await {
                    Ok(response) => Reply::read(response).await.map_err(|e| e.to_string())?,
                    Err(e) => {
                        return Err(format!(
                            "seed {seed}: {method} {}: {}",
                            truncated(&url),
                            e.without_url()
                        ));
                    }
                };
                check(&got, v1, &method, &url, seed).map(|()| (v1, got.status))
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let accepted = results
        .iter()
        .filter(|r| matches!(r, Ok((_, 200..=299))))
        .count();
    let accepted_v1 = results
        .iter()
        .filter(|r| matches!(r, Ok((true, 200..=299))))
        .count();
    let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    // A fuzzer that only ever hits the front door proves little.
    assert!(
        accepted * 20 > cases,
        "seed {seed}: only {accepted} of {cases} requests got past validation"
    );
    assert!(
        accepted_v1 * 20 > v1_cases,
        "seed {seed}: only {accepted_v1} of {v1_cases} SCIM 1.1 requests got past validation"
    );

    let health = scim
        .http
        .get(format!("{}/healthz", served.http_root()))
        .send()
        .await;
    assert!(
        health.is_ok_and(|r| r.status() == 200),
        "seed {seed}: the server died"
    );
    assert!(
        !served.logs().contains("panicked"),
        "seed {seed}: a panic in the logs:\n{}",
        served.logs()
    );
    assert!(
        failures.is_empty(),
        "seed {seed}: {} of {cases} requests broke a property, e.g.:\n{}",
        failures.len(),
        failures
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
