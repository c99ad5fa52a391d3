//! Hostile input over the HTTP surface: malformed, truncated and mistyped
//! JSON, invalid UTF-8, oversized and deeply nested bodies, huge and deeply
//! nested filters, injection attempts, unknown schemas, absurd paging, header
//! abuse, bad PATCH paths and bad bulk requests.
//!
//! Every case must get a 4xx SCIM error body (never a 5xx, never a hang,
//! never a panic in the server's logs), and the stored data must be
//! byte-for-byte the same afterwards (full read-back before and after).

use reqwest::Method;
use reqwest::header::HeaderValue;
use roster_testkit::app;
use roster_testkit::app::SEARCH_REQUEST_SCHEMA;
use roster_testkit::app::{
    BULK_REQUEST_SCHEMA, ERROR_SCHEMA, GROUP_SCHEMA, PATCH_OP_SCHEMA, REQUEST_TIMEOUT, Reply, Scim,
    USER_SCHEMA, assert_scim_error, patch_op, truncated,
};
use serde_json::{Value, json};

/// What a hostile request must get.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// A 4xx SCIM error, with this `scimType` when the RFC defines one.
    Error(Option<&'static str>),
    /// A SCIM error with exactly this status.
    Status(u16),
    /// A well-formed request whose odd content must simply match nothing:
    /// 200 with `totalResults: 0`. (Injection attempts that are valid SCIM.)
    NoMatch,
    /// Valid but odd input the server may accept or refuse: anything but a
    /// 5xx, and a refusal must be a SCIM error.
    NotServerError,
    /// A bulk request whose every operation fails with a 4xx SCIM error (or
    /// the whole request is refused with one).
    BulkAllFail,
}

/// How the request authenticates.
#[derive(Debug, Clone)]
enum Auth {
    Valid,
    Raw(Vec<HeaderValue>),
}

/// One hostile request.
struct Case {
    name: String,
    method: Method,
    path: String,
    auth: Auth,
    headers: Vec<(&'static str, HeaderValue)>,
    body: Option<Vec<u8>>,
    expect: Expect,
}

impl Case {
    fn new(name: impl Into<String>, method: Method, path: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            method,
            path: path.into(),
            auth: Auth::Valid,
            headers: vec![],
            body: None,
            expect: Expect::Error(None),
        }
    }

    fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self.headers.push((
            "content-type",
            HeaderValue::from_static("application/scim+json"),
        ));
        self
    }

    fn json(self, body: &Value) -> Self {
        self.body(body.to_string())
    }

    fn header(mut self, name: &'static str, value: HeaderValue) -> Self {
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value));
        self
    }

    /// `n` extra header fields (hyper refuses a request with more than 100).
    fn padded_headers(mut self, n: usize) -> Self {
        for i in 0..n {
            let name: &'static str = Box::leak(format!("x-pad-{i}").into_boxed_str());
            self.headers.push((name, HeaderValue::from(i)));
        }
        self
    }

    fn auth(mut self, values: Vec<HeaderValue>) -> Self {
        self.auth = Auth::Raw(values);
        self
    }

    fn expect(mut self, expect: Expect) -> Self {
        self.expect = expect;
        self
    }

    fn scim_type(self, scim_type: &'static str) -> Self {
        self.expect(Expect::Error(Some(scim_type)))
    }

    fn status(self, status: u16) -> Self {
        self.expect(Expect::Status(status))
    }
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn filter_query(endpoint: &str, filter: &str) -> String {
    format!("{endpoint}?filter={}", encode(filter))
}

fn json_cases(user_id: &str) -> Vec<Case> {
    let user = json!({"schemas": [USER_SCHEMA], "userName": "hostile@example.com"}).to_string();
    let half = &user[..user.len() / 2];
    let mut deep = String::from(r#"{"schemas":[""#);
    deep.push_str(USER_SCHEMA);
    deep.push_str(r#""],"userName":"deep@example.com","x":"#);
    deep.push_str(&"[".repeat(100_000));
    vec![
        Case::new("malformed JSON", Method::POST, "/Users")
            .body(r#"{"userName": "#)
            .scim_type("invalidSyntax"),
        Case::new("truncated JSON", Method::POST, "/Users")
            .body(half)
            .scim_type("invalidSyntax"),
        Case::new("JSON that is not an object", Method::POST, "/Users")
            .body("[1,2,3]"),
        Case::new("empty body", Method::POST, "/Users")
            .body("")
            .scim_type("invalidSyntax"),
        // `userName: 5` is read as "5" on purpose (crates/scim tolerance
        // `string_from_scalar`); values that cannot be strings must fail.
        Case::new("userName is an object", Method::POST, "/Users")
            .json(&json!({"schemas": [USER_SCHEMA], "userName": {"value": "x"}})),
        Case::new("userName is a boolean", Method::POST, "/Users")
            .json(&json!({"schemas": [USER_SCHEMA], "userName": true})),
        Case::new("userName is null", Method::POST, "/Users")
            .json(&json!({"schemas": [USER_SCHEMA], "userName": null})),
        Case::new("userName missing", Method::POST, "/Users")
            .json(&json!({"schemas": [USER_SCHEMA], "displayName": "no name"})),
        Case::new("active is \"maybe\"", Method::POST, "/Users")
            .json(&json!({"schemas": [USER_SCHEMA], "userName": "maybe@example.com", "active": "maybe"})),
        Case::new("members is a string", Method::POST, "/Groups")
            .json(&json!({"schemas": [GROUP_SCHEMA], "displayName": "g-str", "members": "x"})),
        Case::new("members reference a user that does not exist", Method::POST, "/Groups")
            .json(&json!({"schemas": [GROUP_SCHEMA], "displayName": "g-ghost", "members": [{"value": "00000000-0000-0000-0000-000000000000"}]})),
        Case::new("invalid UTF-8 body", Method::POST, "/Users")
            .body(b"{\"schemas\":[\"urn:ietf:params:scim:schemas:core:2.0:User\"],\"userName\":\"\xff\xfe\xfd\"}".to_vec())
            .scim_type("invalidSyntax"),
        Case::new("userName twice, in two cases", Method::POST, "/Users")
            .body(format!(r#"{{"schemas":["{USER_SCHEMA}"],"userName":"twice@example.com","USERNAME":"alice@example.com"}}"#))
            .scim_type("invalidSyntax"),
        Case::new("userName twice, in one case", Method::POST, "/Users")
            .body(format!(r#"{{"schemas":["{USER_SCHEMA}"],"userName":"once@example.com","userName":"alice@example.com"}}"#))
            .scim_type("invalidSyntax"),
        Case::new("a sub-attribute twice, in two cases", Method::POST, "/Users")
            .json(&json!({"schemas": [USER_SCHEMA], "userName": "sub@example.com", "name": {"givenName": "A", "GIVENNAME": "B"}}))
            .scim_type("invalidSyntax"),
        Case::new("a gzip-compressed body", Method::POST, "/Users")
            .body(vec![0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03])
            .header("content-encoding", HeaderValue::from_static("gzip"))
            .status(415),
        Case::new("NUL in userName", Method::POST, "/Users")
            .json(&json!({"schemas": [USER_SCHEMA], "userName": "nul\u{0}byte@example.com"})),
        Case::new("lone surrogate escape", Method::POST, "/Users")
            .body(format!(r#"{{"schemas":["{USER_SCHEMA}"],"userName":"\ud800@example.com"}}"#)),
        Case::new("10 MB body", Method::POST, "/Users")
            .body(format!(r#"{{"schemas":["{USER_SCHEMA}"],"userName":"{}"}}"#, "a".repeat(10 * 1024 * 1024)))
            .status(413),
        Case::new("100k nested arrays", Method::POST, "/Users")
            .body(deep)
            .scim_type("invalidSyntax"),
        Case::new("unknown schema", Method::POST, "/Users")
            .json(&json!({"schemas": ["urn:evil:schema"], "userName": "evil@example.com"})),
        Case::new("Group schema posted to /Users", Method::POST, "/Users")
            .json(&json!({"schemas": [GROUP_SCHEMA], "userName": "wrong@example.com"})),
        Case::new("PUT with a wrong type", Method::PUT, format!("/Users/{user_id}"))
            .json(&json!({"schemas": [USER_SCHEMA], "userName": ["a", "b"]})),
        Case::new("PUT of an unknown id", Method::PUT, "/Users/00000000-0000-0000-0000-000000000000")
            .json(&json!({"schemas": [USER_SCHEMA], "userName": "ghost@example.com"}))
            .status(404),
    ]
}

fn filter_cases() -> Vec<Case> {
    let parens = 10_000;
    let deep_filter = format!(
        "{}userName eq \"x\"{}",
        "(".repeat(parens),
        ")".repeat(parens)
    );
    let mut cases = vec![
        Case::new("60 KB unterminated filter", Method::GET, filter_query("/Users", &format!("userName eq \"{}", "a".repeat(60_000))))
            .scim_type("invalidFilter"),
        Case::new("1 MB filter in a search", Method::POST, "/Users/.search")
            .json(&json!({"schemas": [SEARCH_REQUEST_SCHEMA], "filter": format!("userName eq \"{}", "a".repeat(1_000_000))}))
            .scim_type("invalidFilter"),
        Case::new("10k nested parentheses", Method::GET, filter_query("/Users", &deep_filter))
            .scim_type("invalidFilter"),
        Case::new("10k nested not()", Method::POST, "/Groups/.search")
            .json(&json!({"schemas": [SEARCH_REQUEST_SCHEMA], "filter": format!("{}displayName eq \"x\"{}", "not (".repeat(10_000), ")".repeat(10_000))}))
            .scim_type("invalidFilter"),
        Case::new("SQL in a filter", Method::GET, filter_query("/Users", "'; DROP TABLE users; --"))
            .scim_type("invalidFilter"),
        Case::new("SQL after a filter", Method::GET, filter_query("/Users", "userName eq \"x\"; DROP TABLE users; --"))
            .scim_type("invalidFilter"),
        Case::new("unknown operator", Method::GET, filter_query("/Users", "userName like \"%\""))
            .scim_type("invalidFilter"),
        Case::new("filter on a bracket without close", Method::GET, filter_query("/Users", "emails[type eq \"work\""))
            .scim_type("invalidFilter"),
        // Decoded lossily (U+FFFD), so it matches nothing.
        Case::new("invalid UTF-8 in the query", Method::GET, "/Users?filter=userName%20eq%20%22%FF%FE%22")
            .expect(Expect::NoMatch),
        Case::new("SQL in sortBy", Method::GET, "/Users?sortBy=userName%3B%20DROP%20TABLE%20users")
            .expect(Expect::NotServerError),
        // Sort keys of attributes the resource does not have (found by the fuzzer:
        // their bind parameters once reached the count query: 503).
        Case::new("groups sorted by userName", Method::GET, "/Groups?sortBy=userName&filter=displayName%20pr")
            .expect(Expect::NotServerError),
        Case::new("users sorted by an extension attribute", Method::GET, "/Users?sortBy=urn:x:y:z:costCenter")
            .expect(Expect::NotServerError),
        Case::new("sortOrder sideways", Method::GET, "/Users?sortOrder=sideways")
            .scim_type("invalidValue"),
        Case::new("attributes full of SQL", Method::GET, "/Users?attributes=userName%27%3B--,%22%29")
            .expect(Expect::NotServerError),
    ];
    for (name, filter) in [
        ("escaped quote injection", r#"userName eq "x\" or 1=1 --""#),
        (
            "SQL string in a value",
            r#"userName eq "'; DROP TABLE users; --""#,
        ),
        ("LIKE wildcards in co", r#"userName co "%_%\\""#),
        (
            "fullwidth letters",
            "userName eq \"ａｌｉｃｅ@example.com\"",
        ),
        (
            "right-to-left override",
            "userName eq \"\u{202E}moc.elpmaxe@\"",
        ),
        ("zero-width joiner", "userName sw \"\u{200D}\""),
    ] {
        cases.push(
            Case::new(name, Method::GET, filter_query("/Users", filter)).expect(Expect::NoMatch),
        );
    }
    cases.push(
        Case::new(
            "quote-closing injection",
            Method::GET,
            filter_query("/Users", r#"userName eq "x" or "1" eq "1""#),
        )
        .scim_type("invalidFilter"),
    );
    // PostgreSQL text cannot hold NUL: refusing it is fine, a 500 is not.
    cases.push(
        Case::new(
            "NUL in a filter value",
            Method::GET,
            filter_query("/Users", "userName eq \"a\u{0}b\""),
        )
        .expect(Expect::NotServerError),
    );
    cases
}

fn paging_cases() -> Vec<Case> {
    let mut cases = vec![];
    for value in ["1e30", "abc", "1 OR 1=1", "1.5", "0x10", ""] {
        for param in ["count", "startIndex"] {
            if value.is_empty() && param == "count" {
                continue;
            }
            cases.push(
                Case::new(
                    format!("{param}={value}"),
                    Method::GET,
                    format!("/Users?{param}={}", encode(value)),
                )
                .scim_type("invalidValue"),
            );
        }
    }
    cases.retain(|c| c.path != "/Users?startIndex=");
    cases
}

fn header_cases(token: &str) -> Vec<Case> {
    let valid = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    let bogus = HeaderValue::from_static("Bearer rst_not_a_real_token");
    let huge = HeaderValue::from_str(&format!("Bearer {}", "a".repeat(64 * 1024))).unwrap();
    vec![
        Case::new("no Authorization", Method::GET, "/Users")
            .auth(vec![])
            .status(401),
        Case::new("Bearer with no token", Method::GET, "/Users")
            .auth(vec![HeaderValue::from_static("Bearer")])
            .status(401),
        Case::new("Bearer and a space", Method::GET, "/Users")
            .auth(vec![HeaderValue::from_static("Bearer ")])
            .status(401),
        Case::new("Basic credentials", Method::GET, "/Users")
            .auth(vec![HeaderValue::from_static("Basic YWRtaW46YWRtaW4=")])
            .status(401),
        Case::new("64 KB bearer token", Method::GET, "/Users")
            .auth(vec![huge])
            .status(401),
        Case::new(
            "duplicate Authorization, valid first",
            Method::GET,
            "/Users",
        )
        .auth(vec![valid.clone(), bogus.clone()])
        .status(401),
        Case::new("duplicate Authorization, valid last", Method::GET, "/Users")
            .auth(vec![bogus, valid])
            .status(401),
        Case::new("non-ASCII bearer token", Method::GET, "/Users")
            .auth(vec![
                HeaderValue::from_bytes(b"Bearer t\xf6k\xe9n").unwrap(),
            ])
            .status(401),
        Case::new("token with a NUL-like escape", Method::GET, "/Users")
            .auth(vec![HeaderValue::from_static("Bearer rst_%00")])
            .status(401),
        Case::new("120 header fields", Method::GET, "/Users")
            .padded_headers(120)
            .status(431),
        Case::new("text/plain body", Method::POST, "/Users")
            .json(&json!({"schemas": [USER_SCHEMA], "userName": "plain@example.com"}))
            .header("content-type", HeaderValue::from_static("text/plain"))
            .status(415),
        Case::new("XML body", Method::POST, "/Users")
            .body("<user><userName>x</userName></user>")
            .header("content-type", HeaderValue::from_static("application/xml"))
            .status(415),
        Case::new("form body", Method::POST, "/Users")
            .body("userName=form%40example.com")
            .header(
                "content-type",
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            )
            .status(415),
        Case::new("non-ASCII content type", Method::POST, "/Users")
            .json(&json!({"schemas": [USER_SCHEMA], "userName": "nonascii@example.com"}))
            .header(
                "content-type",
                HeaderValue::from_bytes(b"application/j\xf6son").unwrap(),
            )
            .status(415),
        Case::new(
            "non-ASCII request id and a body error",
            Method::POST,
            "/Users",
        )
        .body("{")
        .header(
            "x-request-id",
            HeaderValue::from_bytes(b"\xff\xfe-id").unwrap(),
        )
        .scim_type("invalidSyntax"),
        Case::new(
            "huge If-Match",
            Method::DELETE,
            "/Users/00000000-0000-0000-0000-000000000000",
        )
        .header(
            "if-match",
            HeaderValue::from_str(&format!("W/\"{}\"", "9".repeat(32 * 1024))).unwrap(),
        ),
    ]
}

fn patch_cases(user_id: &str, group_id: &str) -> Vec<Case> {
    let user = format!("/Users/{user_id}");
    let group = format!("/Groups/{group_id}");
    let op = |op: Value| patch_op(json!([op]));
    vec![
        Case::new("PATCH value naming userName twice", Method::PATCH, &user)
            .json(&op(json!({"op": "replace", "value": {"userName": "x@example.com", "UserName": "y@example.com"}})))
            .scim_type("invalidSyntax"),
        Case::new("PATCH path with an open bracket", Method::PATCH, &user)
            .json(&op(json!({"op": "replace", "path": "emails[type eq", "value": "x"})))
            .scim_type("invalidPath"),
        Case::new("PATCH path of an unknown attribute", Method::PATCH, &user)
            .json(&op(json!({"op": "replace", "path": "no.such.attribute.deep", "value": "x"}))),
        Case::new("PATCH path full of SQL", Method::PATCH, &user)
            .json(&op(json!({"op": "remove", "path": "userName'; DROP TABLE users; --"}))),
        Case::new("PATCH op explode", Method::PATCH, &user)
            .json(&op(json!({"op": "explode", "path": "title", "value": "x"}))),
        Case::new("PATCH remove without a path", Method::PATCH, &user)
            .json(&op(json!({"op": "remove"})))
            .scim_type("noTarget"),
        Case::new("PATCH remove of userName", Method::PATCH, &user)
            .json(&op(json!({"op": "remove", "path": "userName"}))),
        Case::new("PATCH replace id", Method::PATCH, &user)
            .json(&op(json!({"op": "replace", "path": "id", "value": "00000000-0000-0000-0000-000000000000"}))),
        Case::new("PATCH Operations not an array", Method::PATCH, &user)
            .json(&json!({"schemas": [PATCH_OP_SCHEMA], "Operations": "x"})),
        // A missing `schemas` is tolerated on purpose; an empty one is not.
        Case::new("PATCH with empty schemas", Method::PATCH, &user)
            .json(&json!({"schemas": [], "Operations": [{"op": "replace", "path": "title", "value": "x"}]})),
        Case::new("PATCH of a user with a Group schema", Method::PATCH, &user)
            .json(&json!({"schemas": [GROUP_SCHEMA], "Operations": [{"op": "replace", "path": "title", "value": "x"}]})),
        Case::new("PATCH value filter of 10k parentheses", Method::PATCH, &group)
            .json(&op(json!({"op": "remove", "path": format!("members[{}value eq \"x\"{}]", "(".repeat(10_000), ")".repeat(10_000))}))),
        Case::new("PATCH members add of a string", Method::PATCH, &group)
            .json(&op(json!({"op": "add", "path": "members", "value": "x"}))),
        Case::new("PATCH members add of a ghost", Method::PATCH, &group)
            .json(&op(json!({"op": "add", "path": "members", "value": [{"value": "00000000-0000-0000-0000-000000000000"}]}))),
        Case::new("PATCH members add of the group itself", Method::PATCH, &group)
            .json(&op(json!({"op": "add", "path": "members", "value": [{"value": group_id, "type": "Group"}]}))),
        Case::new("PATCH with a stale If-Match", Method::PATCH, &user)
            .json(&op(json!({"op": "replace", "path": "title", "value": "stale"})))
            .header("if-match", HeaderValue::from_static("W/\"999999\""))
            .status(412),
        Case::new("PATCH with a garbage If-Match", Method::PATCH, &user)
            .json(&op(json!({"op": "replace", "path": "title", "value": "garbage"})))
            .header("if-match", HeaderValue::from_static("not a tag"))
            .status(412),
    ]
}

fn bulk(ops: Value) -> Value {
    json!({"schemas": [BULK_REQUEST_SCHEMA], "Operations": ops})
}

fn bulk_cases(user_id: &str) -> Vec<Case> {
    let post = |bulk_id: &str, data: Value| json!({"method": "POST", "path": "/Groups", "bulkId": bulk_id, "data": data});
    let cyclic = bulk(json!([
        post(
            "a",
            json!({"schemas": [GROUP_SCHEMA], "displayName": "cycle-a", "members": [{"value": "bulkId:b", "type": "Group"}]})
        ),
        post(
            "b",
            json!({"schemas": [GROUP_SCHEMA], "displayName": "cycle-b", "members": [{"value": "bulkId:a", "type": "Group"}]})
        ),
    ]));
    let self_cycle = bulk(json!([post(
        "s",
        json!({"schemas": [GROUP_SCHEMA], "displayName": "cycle-self", "members": [{"value": "bulkId:s", "type": "Group"}]})
    ),]));
    let many: Vec<Value> = (0..100_000)
        .map(|i| json!({"method": "DELETE", "path": format!("/Users/x{i}")}))
        .collect();
    let just_over: Vec<Value> = (0..1001)
        .map(|i| json!({"method": "DELETE", "path": format!("/Users/x{i}")}))
        .collect();
    vec![
        Case::new("bulk with cyclic bulkIds", Method::POST, "/Bulk")
            .json(&cyclic)
            .expect(Expect::BulkAllFail),
        Case::new("bulk with a self-referencing bulkId", Method::POST, "/Bulk")
            .json(&self_cycle)
            .expect(Expect::BulkAllFail),
        Case::new("bulk with an undefined bulkId", Method::POST, "/Bulk")
            .json(&bulk(json!([{"method": "PATCH", "path": "/Groups/bulkId:nowhere", "data": patch_op(json!([{"op": "add", "path": "members", "value": [{"value": user_id}]}]))}])))
            .expect(Expect::BulkAllFail),
        Case::new("bulk of 100k operations", Method::POST, "/Bulk")
            .json(&bulk(Value::Array(many)))
            .status(413),
        Case::new("bulk of 1001 operations", Method::POST, "/Bulk")
            .json(&bulk(Value::Array(just_over)))
            .status(413),
        Case::new("bulk Operations not an array", Method::POST, "/Bulk")
            .json(&json!({"schemas": [BULK_REQUEST_SCHEMA], "Operations": "x"})),
        // The gateway does not insist on `schemas` in a BulkRequest.
        Case::new("bulk without schemas and no operations", Method::POST, "/Bulk")
            .json(&json!({"Operations": []}))
            .expect(Expect::NotServerError),
        Case::new("bulk with method TRACE", Method::POST, "/Bulk")
            .json(&bulk(json!([{"method": "TRACE", "path": "/Users"}])))
            .expect(Expect::BulkAllFail),
        Case::new("bulk with a path escaping the directory", Method::POST, "/Bulk")
            .json(&bulk(json!([{"method": "DELETE", "path": "/../../scim/v2/other/Users/x"}])))
            .expect(Expect::BulkAllFail),
        Case::new("bulk with a wrong-typed POST", Method::POST, "/Bulk")
            .json(&bulk(json!([{"method": "POST", "path": "/Users", "bulkId": "w", "data": {"schemas": [USER_SCHEMA], "userName": [true]}}])))
            .expect(Expect::BulkAllFail),
        Case::new("bulk with a negative failOnErrors", Method::POST, "/Bulk")
            .json(&json!({"schemas": [BULK_REQUEST_SCHEMA], "failOnErrors": -1, "Operations": [{"method": "DELETE", "path": "/Users/x"}]}))
            .expect(Expect::BulkAllFail),
    ]
}

fn routing_cases() -> Vec<Case> {
    vec![
        Case::new("unknown endpoint", Method::GET, "/Whatever").status(404),
        Case::new("DELETE of the collection", Method::DELETE, "/Users").status(405),
        Case::new("unknown schema id", Method::GET, "/Schemas/urn:evil").status(404),
        Case::new("unknown resource type", Method::GET, "/ResourceTypes/Evil").status(404),
        Case::new("SQL as a user id", Method::GET, "/Users/'%20OR%201=1%20--").status(404),
        Case::new(
            "dot-dot as a user id",
            Method::GET,
            "/Users/..%2F..%2Fetc%2Fpasswd",
        )
        .status(404),
        Case::new(
            "4 KB user id",
            Method::GET,
            format!("/Users/{}", "a".repeat(4096)),
        )
        .status(404),
        Case::new(
            "DELETE of a non-uuid group",
            Method::DELETE,
            "/Groups/not-a-uuid",
        )
        .status(404),
    ]
}

/// Sends `case` with `request_id`; a transport error is returned (the server
/// may refuse an oversized body and close while the client is still sending).
async fn send(scim: &Scim, case: &Case, request_id: &str) -> Result<Reply, String> {
    let mut request = scim
        .http
        .request(
            case.method.clone(),
            format!("{}{}", scim.base_url, case.path),
        )
        .header("x-request-id", request_id);
    match &case.auth {
        Auth::Valid => request = request.bearer_auth(&scim.token),
        Auth::Raw(values) => {
            let mut headers = reqwest::header::HeaderMap::new();
            for v in values {
                headers.append(reqwest::header::AUTHORIZATION, v.clone());
            }
            request = request.headers(headers);
        }
    }
    for (name, value) in &case.headers {
        request = request.header(*name, value.clone());
    }
    if let Some(body) = &case.body {
        request = request.body(body.clone());
    }
    let response = tokio::time::timeout(REQUEST_TIMEOUT, request.send())
        .await
        .unwrap_or_else(|_| panic!("{}: no answer within {REQUEST_TIMEOUT:?}", case.name))
        .map_err(|e| format!("{}: {:?}", case.name, e.without_url()))?;
    Reply::read(response)
        .await
        .map_err(|e| format!("{}: reading the answer: {e}", case.name))
}

/// `text` without ANSI colour sequences (the text log format colours field names).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// For a body the server refused before reading it all: the connection may
/// close under the client's feet (RFC 9112 §9.6 lets the server close), so the
/// server's own access log must show it answered `status` to `request_id`.
/// The answer names what the log held instead, for the failure message.
async fn answered_in_log(
    served: &app::Served,
    request_id: &str,
    status: u16,
) -> Result<(), String> {
    let needle = format!("request_id={request_id}");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let logs = strip_ansi(&served.logs());
        let line = logs
            .lines()
            .find(|l| l.contains(&needle) && l.contains("roster_gateway::access"));
        match line {
            Some(l) if l.contains(&format!("status={status}")) => return Ok(()),
            Some(l) => return Err(format!("the server logged {l}")),
            None if tokio::time::Instant::now() >= deadline => {
                let tail: Vec<&str> = logs.lines().rev().take(5).collect();
                return Err(format!(
                    "the server logged no answer to {request_id}; its last lines:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ));
            }
            None => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
}

fn check(case: &Case, got: &Reply) {
    let what = format!("{} ({} {})", case.name, case.method, truncated(&case.path));
    match case.expect {
        Expect::Error(scim_type) => {
            assert_scim_error(got, &what);
            if let Some(t) = scim_type {
                assert_eq!(got.body["scimType"], t, "{what}: {}", truncated(&got.text));
            }
        }
        Expect::Status(status) => {
            assert_scim_error(got, &what);
            assert_eq!(got.status, status, "{what}: {}", truncated(&got.text));
        }
        Expect::NoMatch => {
            assert_eq!(got.status, 200, "{what}: {}", truncated(&got.text));
            assert_eq!(
                got.body["totalResults"],
                0,
                "{what}: {}",
                truncated(&got.text)
            );
        }
        Expect::NotServerError if got.status < 400 => {}
        Expect::NotServerError => assert_scim_error(got, &what),
        Expect::BulkAllFail => check_bulk_failed(got, &what),
    }
}

fn check_bulk_failed(got: &Reply, what: &str) {
    if got.status != 200 {
        return assert_scim_error(got, what);
    }
    let ops = got.body["Operations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        !ops.is_empty(),
        "{what}: no operation results: {}",
        got.text
    );
    for op in ops {
        let status: u16 = op["status"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{what}: status must be a string: {op}"));
        assert!((400..500).contains(&status), "{what}: operation {op}");
        assert_eq!(op["response"]["schemas"][0], ERROR_SCHEMA, "{what}: {op}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_requests_get_4xx_scim_errors_and_change_nothing() {
    let served = app::serve_postgres("hostile").await;
    let token = served.token.clone().expect("token");
    let scim = Scim::new(&served.base_url, &token);
    let alice = scim.create_user("alice@example.com").await;
    let bob = scim.create_user("bob@example.com").await;
    let team = scim.create_group("team").await;
    scim.patch(
        &format!("/Groups/{team}"),
        &patch_op(
            json!([{"op": "add", "path": "members", "value": [{"value": alice}, {"value": bob}]}]),
        ),
    )
    .await;
    let before = scim.read_back().await;

    let cases: Vec<Case> = [
        json_cases(&alice),
        filter_cases(),
        paging_cases(),
        header_cases(&token),
        patch_cases(&alice, &team),
        bulk_cases(&alice),
        routing_cases(),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut failures = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        let request_id = format!("hostile-{n}");
        let got = match (send(&scim, case, &request_id).await, case.expect) {
            (Ok(got), _) => got,
            (Err(e), Expect::Status(status @ 413)) => {
                if let Err(log) = answered_in_log(&served, &request_id, status).await {
                    failures.push(format!("{e}, and {log}"));
                }
                continue;
            }
            (Err(e), _) => {
                failures.push(e);
                continue;
            }
        };
        if let Err(panic) = std::panic::catch_unwind(|| check(case, &got)) {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "check failed".into());
            failures.push(message);
        }
    }

    let health = scim
        .http
        .get(format!("{}/healthz", served.http_root()))
        .send()
        .await;
    assert!(health.is_ok_and(|r| r.status() == 200), "the server died");
    let logs = served.logs();
    assert!(
        !logs.contains("panicked"),
        "a panic in the server logs:\n{logs}"
    );
    assert!(
        failures.is_empty(),
        "{} of {} hostile cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(scim.read_back().await, before, "stored data changed");
}

/// Valid-but-absurd paging is read as the RFC says (§3.4.2.4): a negative
/// count as 0, a startIndex below 1 as 1, a huge count capped.
#[tokio::test(flavor = "multi_thread")]
async fn absurd_but_numeric_paging_is_clamped() {
    let served = app::serve_postgres("hostile_paging").await;
    let scim = served.scim();
    scim.create_user("only@example.com").await;
    for (query, items) in [
        ("count=-1", 0),
        ("count=0", 0),
        ("startIndex=-1", 1),
        ("startIndex=0", 1),
        ("count=2147483648", 1),
        ("startIndex=9223372036854775807", 0),
        (
            "startIndex=-9223372036854775808&count=-9223372036854775808",
            0,
        ),
        // Integers beyond i64 are clamped like any other out-of-range value.
        ("count=99999999999999999999", 1),
        ("count=-99999999999999999999", 0),
        ("startIndex=99999999999999999999", 0),
        ("startIndex=-99999999999999999999", 1),
    ] {
        let got = scim.get(&format!("/Users?{query}")).await;
        assert_eq!(got.status, 200, "{query}: {}", got.text);
        assert_eq!(got.body["totalResults"], 1, "{query}: {}", got.text);
        let returned = got.body["Resources"].as_array().map_or(0, Vec::len);
        assert_eq!(returned, items, "{query}: {}", got.text);
    }
    assert!(!served.logs().contains("panicked"));
}

/// A URI past hyper's 64 KiB limit is refused before routing (no HTTP
/// client library even sends one, hence the raw socket), and still gets a
/// SCIM error body with its 414 — in SCIM 1.1's form under `/scim/v1/`.
#[tokio::test(flavor = "multi_thread")]
async fn a_uri_too_long_for_http_gets_a_scim_error() {
    let served = app::serve_postgres("hostile_uri").await;
    let url = reqwest::Url::parse(&served.base_url).expect("base url");
    let token = served.token.clone().expect("token");
    let answer = too_long_a_uri(&url, url.path(), &token).await;
    let (head, body) = head_and_scim_error(&answer);
    assert!(head.starts_with("HTTP/1.1 414 "), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/scim+json"),
        "{head}"
    );
    assert_eq!(body["status"], "414", "{body}");

    let v1 = url.path().replacen("/scim/v2/", "/scim/v1/", 1);
    let answer = too_long_a_uri(&url, &v1, &token).await;
    let answer = String::from_utf8(answer).expect("text");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head");
    assert!(head.starts_with("HTTP/1.1 414 "), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let body: Value = serde_json::from_str(body).expect("a JSON body");
    assert_eq!(body["Errors"][0]["code"], "414", "{body}");
}

/// What the gateway answers to a GET of `{path}/Users` with a 70 kB filter.
async fn too_long_a_uri(url: &reqwest::Url, path: &str, token: &str) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let filter = encode(&format!("userName eq \"{}\"", "a".repeat(70_000)));
    let request = format!(
        "GET {path}/Users?filter={filter} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\r\n",
        url.authority()
    );
    let mut socket = raw_connection(url).await;
    socket.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    tokio::time::timeout(REQUEST_TIMEOUT, socket.read_to_end(&mut answer))
        .await
        .expect("an answer, then the connection closed")
        .expect("read");
    answer
}

/// A request answered before its body was read (here a 401 to a POST whose
/// body is still on its way) is answered with `Connection: close`, so the
/// client does not send its next request on a connection the server is
/// about to close (a lost POST cannot be retried).
#[tokio::test(flavor = "multi_thread")]
async fn an_answer_before_the_body_is_read_says_the_connection_closes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let served = app::serve_postgres("hostile_unread").await;
    let url = reqwest::Url::parse(&served.base_url).expect("base url");
    let head = format!(
        "POST {}/Users HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer not-a-token\r\nContent-Type: application/scim+json\r\nContent-Length: 300000\r\n\r\n",
        url.path(),
        url.authority()
    );
    let mut socket = raw_connection(&url).await;
    socket.write_all(head.as_bytes()).await.expect("send head");
    socket
        .write_all(&[b' '; 1000])
        .await
        .expect("send part of the body");
    let mut answer = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        while !whole_answer(&answer) {
            let n = socket.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed before a whole answer: {answer:?}");
            answer.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(REQUEST_TIMEOUT, read)
        .await
        .expect("an answer");
    let (head, _scim_error) = head_and_scim_error(&answer);
    assert!(head.starts_with("HTTP/1.1 401 "), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("\r\nconnection: close"),
        "{head}"
    );
}

/// A TCP connection to the gateway of `url`, for requests no HTTP client
/// library sends.
async fn raw_connection(url: &reqwest::Url) -> tokio::net::TcpStream {
    let addr = url.socket_addrs(|| None).expect("addr")[0];
    tokio::net::TcpStream::connect(addr).await.expect("connect")
}

/// The head of a raw HTTP answer and its body, which must be a SCIM error.
fn head_and_scim_error(answer: &[u8]) -> (String, Value) {
    let answer = std::str::from_utf8(answer).expect("text");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head");
    let body: Value = serde_json::from_str(body).expect("a JSON body");
    assert_eq!(body["schemas"][0], ERROR_SCHEMA, "{body}");
    (head.to_owned(), body)
}

/// Whether `answer` holds a whole HTTP/1.1 head and the body its
/// `content-length` announces.
fn whole_answer(answer: &[u8]) -> bool {
    let text = String::from_utf8_lossy(answer);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    body.len() >= length
}
