//! Google Workspace against an HTTP server in the test that reproduces the
//! documented Directory API and OAuth token endpoints: it verifies the
//! service-account JWT's RS256 signature and claims, pages users (as the
//! API may return fewer than maxResults), groups and members, and answers
//! with Google's error bodies (expired token, rate limit, insufficient
//! permissions).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use roster_connectors::google::SCOPES;
use roster_connectors::runner::{SyncerOptions, sync_directory};
use roster_connectors::{SourceError, SyncError, credentials};
use roster_store::*;
use roster_webhook::SealingKey;
use serde_json::{Value, json};

#[macro_use]
mod support;
use support::{Env, changes, kinds, user_named};

const KEY_PEM: &str = include_str!("fixtures/google-test-key.pem");
const PUBLIC_DER: &[u8] = include_bytes!("fixtures/google-test-key.pub.der");
const CLIENT_EMAIL: &str = "roster@project.iam.gserviceaccount.com";
const ADMIN: &str = "admin@example.com";
/// Smaller than maxResults, as the API may answer: paging is exercised.
const FAKE_PAGE: usize = 2;

#[derive(Default)]
struct Fake {
    base: String,
    users: Vec<Value>,
    /// (group, members)
    groups: Vec<(Value, Vec<Value>)>,
    tokens_issued: usize,
    live_token: Option<String>,
    /// The next API call answers this (status, error reason) once.
    fail_next: Option<(u16, &'static str)>,
    /// The query of the last `users.list` call.
    users_query: HashMap<String, String>,
}

type Shared = Arc<Mutex<Fake>>;

fn google_error(status: u16, reason: &str) -> Value {
    json!({"error": {"code": status, "message": reason,
        "errors": [{"domain": "global", "reason": reason, "message": reason}]}})
}

fn reply(status: u16, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("response")
}

fn query(req: &Request<Incoming>) -> HashMap<String, String> {
    url_pairs(req.uri().query().unwrap_or(""))
}

fn url_pairs(text: &str) -> HashMap<String, String> {
    text.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), percent_decode(v)))
        .collect()
}

fn percent_decode(v: &str) -> String {
    let bytes = v.replace('+', " ").into_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("hex");
            out.push(u8::from_str_radix(hex, 16).expect("hex"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("utf8")
}

/// Checks the assertion as Google's token endpoint does: RS256 signature by
/// the service account's key, and the claims of domain-wide delegation.
fn verify_assertion(fake: &Fake, assertion: &str) -> Result<(), &'static str> {
    let mut parts = assertion.split('.');
    let (Some(h), Some(c), Some(s)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("malformed");
    };
    let sig = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| "signature encoding")?;
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        PUBLIC_DER,
    )
    .verify(format!("{h}.{c}").as_bytes(), &sig)
    .map_err(|_| "bad signature")?;
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(c).unwrap()).unwrap();
    let now = chrono::Utc::now().timestamp();
    let ok = header["alg"] == "RS256"
        && claims["iss"] == CLIENT_EMAIL
        && claims["sub"] == ADMIN
        && claims["scope"] == SCOPES
        && claims["aud"] == format!("{}/token", fake.base)
        && claims["iat"]
            .as_i64()
            .is_some_and(|iat| (iat - now).abs() < 60)
        && claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0) <= 3600;
    if ok { Ok(()) } else { Err("bad claims") }
}

fn page(items: &[Value], field: &str, q: &HashMap<String, String>, max: usize) -> Value {
    let asked: usize = q
        .get("maxResults")
        .and_then(|m| m.parse().ok())
        .unwrap_or(100);
    assert!(
        asked <= max,
        "maxResults {asked} above the documented {max}"
    );
    let start: usize = q.get("pageToken").and_then(|t| t.parse().ok()).unwrap_or(0);
    let end = (start + FAKE_PAGE.min(asked)).min(items.len());
    let mut body = json!({ field: items[start..end].to_vec() });
    if end < items.len() {
        body["nextPageToken"] = json!(end.to_string());
    }
    body
}

/// `users.list`'s `projection` (default `basic`: no custom fields;
/// `custom`: the schemas named in `customFieldMask`; `full`: all), as the
/// Directory API's discovery document defines them.
fn projected(users: &[Value], q: &HashMap<String, String>) -> Result<Vec<Value>, &'static str> {
    let mask: Option<Vec<&str>> = q.get("customFieldMask").map(|m| m.split(',').collect());
    let keep = |schema: &str| match (q.get("projection").map(String::as_str), &mask) {
        (None | Some("basic"), None) => Ok(false),
        (Some("full"), None) => Ok(true),
        (Some("custom"), Some(mask)) => Ok(mask.contains(&schema)),
        _ => Err("invalid"),
    };
    keep("")?;
    users
        .iter()
        .map(|user| {
            let mut user = user.clone();
            if let Some(schemas) = user["customSchemas"].as_object_mut() {
                let mut kept = serde_json::Map::new();
                for (name, fields) in std::mem::take(schemas) {
                    if keep(&name)? {
                        kept.insert(name, fields);
                    }
                }
                *schemas = kept;
            }
            Ok(user)
        })
        .collect()
}

async fn handle(fake: Shared, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let q = query(&req);
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = req.into_body().collect().await.expect("body").to_bytes();
    let mut f = fake.lock().unwrap();
    if path == "/token" {
        let form = url_pairs(std::str::from_utf8(&body).expect("form"));
        let grant = form.get("grant_type").map(String::as_str);
        if grant != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
            return Ok(reply(400, json!({"error": "unsupported_grant_type"})));
        }
        if let Err(why) = verify_assertion(&f, form.get("assertion").map_or("", |a| a)) {
            return Ok(reply(
                400,
                json!({"error": "invalid_grant", "error_description": why}),
            ));
        }
        f.tokens_issued += 1;
        let token = format!("ya29.token-{}", f.tokens_issued);
        f.live_token = Some(token.clone());
        return Ok(reply(
            200,
            json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}),
        ));
    }
    let bearer = auth.as_deref().and_then(|a| a.strip_prefix("Bearer "));
    if bearer.is_none() || bearer != f.live_token.as_deref() {
        return Ok(reply(401, google_error(401, "authError")));
    }
    if let Some((status, reason)) = f.fail_next.take() {
        return Ok(reply(status, google_error(status, reason)));
    }
    assert!(q.get("customer").is_none_or(|c| c == "my_customer"));
    let rest = path.strip_prefix("/admin/directory/v1/").unwrap_or("");
    let answer = match rest.split('/').collect::<Vec<_>>()[..] {
        ["users"] => {
            f.users_query = q.clone();
            match projected(&f.users, &q) {
                Ok(users) => page(&users, "users", &q, 500),
                Err(reason) => return Ok(reply(400, google_error(400, reason))),
            }
        }
        ["groups"] => {
            let groups: Vec<Value> = f.groups.iter().map(|(g, _)| g.clone()).collect();
            page(&groups, "groups", &q, 200)
        }
        ["groups", id, "members"] => match f.groups.iter().find(|(g, _)| g["id"] == id) {
            Some((_, members)) => page(members, "members", &q, 200),
            None => return Ok(reply(404, google_error(404, "notFound"))),
        },
        _ => return Ok(reply(404, google_error(404, "notFound"))),
    };
    Ok(reply(200, answer))
}

async fn start_fake() -> Shared {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let fake: Shared = Arc::new(Mutex::new(Fake {
        base: format!("http://{}", listener.local_addr().unwrap()),
        ..Fake::default()
    }));
    let shared = fake.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let fake = shared.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| handle(fake.clone(), req));
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    fake
}

fn user(id: &str, email: &str, given: &str) -> Value {
    json!({"kind": "admin#directory#user", "id": id, "primaryEmail": email,
        "name": {"givenName": given, "familyName": "Test", "fullName": format!("{given} Test")},
        "suspended": false, "archived": false, "orgUnitPath": "/Engineering",
        "organizations": [{"title": "Engineer", "department": "R&D", "primary": true}]})
}

fn member(id: &str, kind: &str) -> Value {
    json!({"kind": "admin#directory#member", "id": id, "type": kind, "role": "MEMBER", "status": "ACTIVE"})
}

fn key() -> SealingKey {
    SealingKey::from_bytes(&[5u8; 32]).expect("key")
}

/// A pulled Google directory reading the fake at `base`, with `mappings`;
/// no mass-deletion safeguard (the scenarios remove on purpose).
async fn google_directory(store: &dyn Store, base: &str, mappings: &[(&str, &str)]) -> DirectoryId {
    let attribute_mappings = mappings
        .iter()
        .map(|(source, target)| AttributeMapping {
            source: source.to_string(),
            target: target.to_string(),
        })
        .collect();
    let dir = store
        .create_directory(NewDirectory {
            name: "workspace".into(),
            organization: "example".into(),
            provider: ProviderKind::Google,
            deprovision_policy: DeprovisionPolicy::Delete,
            attribute_mappings,
        })
        .await
        .expect("directory")
        .id;
    let key_json = json!({"type": "service_account", "client_email": CLIENT_EMAIL,
        "private_key": KEY_PEM, "token_uri": format!("{base}/token")});
    store
        .put_source(dir, SourceSettings {
            kind: SourceKind::Google,
            settings: json!({"admin_email": ADMIN, "token_url": format!("{base}/token"), "api_base": base}),
            sealed_credentials: Some(credentials::seal(&key(), dir, &key_json.to_string()).unwrap()),
            interval_secs: 1800,
            mass_delete_percent: 100,
        })
        .await
        .expect("source");
    dir
}

async fn sync(store: &Arc<dyn Store>, dir: DirectoryId) -> Result<Option<SyncStatus>, SyncError> {
    let options = SyncerOptions {
        owner: "replica-a".into(),
        ..SyncerOptions::default()
    };
    sync_directory(store, &key(), &options, dir).await
}

/// The done-when scenario for Google: add, archive, suspend, remove →
/// the ordered events of a SCIM directory; a token cached and renewed; the
/// API's error answers.
async fn google_workspace_is_pulled_and_reconciled(env: Env) {
    let fake = start_fake().await;
    let base = {
        let mut f = fake.lock().unwrap();
        f.users = vec![
            user("101", "alice@example.com", "Alice"),
            user("102", "bob@example.com", "Bob"),
            user("103", "carol@example.com", "Carol"),
        ];
        f.users[2]["archived"] = json!(true);
        f.groups = vec![(
            json!({"kind": "admin#directory#group", "id": "g1", "email": "eng@example.com", "name": "Engineering"}),
            vec![
                member("101", "USER"),
                member("102", "USER"),
                member("C0abc", "CUSTOMER"),
            ],
        )];
        f.base.clone()
    };
    let store = env.store;
    // This scenario suspends and removes 2 of 2 active users on purpose.
    let dir = google_directory(store.as_ref(), &base, &[]).await;

    let status = sync(&store, dir).await.expect("first sync").expect("lease");
    assert_eq!((status.created, status.updated, status.removed), (4, 0, 0));
    let first = changes(store.as_ref(), dir, 0).await;
    assert_eq!(
        kinds(&first),
        [
            "directory.created",
            "user.created",
            "user.created",
            "user.created",
            "group.created",
            "member.added",
            "member.added"
        ]
    );
    let carol = user_named(store.as_ref(), dir, "carol@example.com").await;
    assert!(!carol.fields.active, "archived is inactive");
    assert_eq!(carol.fields.department.as_deref(), Some("R&D"));
    let asked = fake.lock().unwrap().users_query.clone();
    assert_eq!(asked.get("projection").map(String::as_str), Some("basic"));
    assert_eq!(
        asked.get("customFieldMask"),
        None,
        "no custom schema mapped"
    );
    let head = first.last().unwrap().revision;

    // Suspend alice, remove bob (and his membership); the token is reused.
    {
        let mut f = fake.lock().unwrap();
        f.users[0]["suspended"] = json!(true);
        f.users.remove(1);
        f.groups[0].1.remove(1);
    }
    sync(&store, dir).await.expect("sync").expect("lease");
    let events = changes(store.as_ref(), dir, head).await;
    assert_eq!(
        kinds(&events),
        ["user.deactivated", "member.removed", "user.deleted"]
    );
    assert_eq!(fake.lock().unwrap().tokens_issued, 1, "the token is cached");
    let head = events.last().unwrap().revision;

    // An expired token is replaced; nothing changed: nothing written.
    fake.lock().unwrap().live_token = None;
    sync(&store, dir).await.expect("sync").expect("lease");
    assert_eq!(fake.lock().unwrap().tokens_issued, 2);
    assert!(changes(store.as_ref(), dir, head).await.is_empty());

    // A rate-limit answer backs off; an insufficient scope is unauthorized.
    fake.lock().unwrap().fail_next = Some((403, "userRateLimitExceeded"));
    let limited = sync(&store, dir).await;
    assert!(
        matches!(&limited, Err(SyncError::Source(SourceError::RateLimited { reason, .. })) if reason == "userRateLimitExceeded"),
        "{limited:?}"
    );
    let source = store.get_source(dir).await.unwrap();
    assert_eq!(source.status.failures, 1);
    let wait = source.next_run_at.unwrap() - chrono::Utc::now();
    assert!(
        wait <= chrono::Duration::seconds(31),
        "backoff, not the interval: {wait}"
    );
    fake.lock().unwrap().fail_next = Some((403, "insufficientPermissions"));
    let refused = sync(&store, dir).await;
    assert!(
        matches!(
            refused,
            Err(SyncError::Source(SourceError::Unauthorized(_)))
        ),
        "{refused:?}"
    );
    assert!(changes(store.as_ref(), dir, head).await.is_empty());
}

/// Custom schemas and Google's own fields reach the normalized user
/// through the directory's attribute mappings; `users.list` asks for the
/// mapped schemas only (`projection=custom`, `customFieldMask`).
async fn custom_schemas_and_fields_are_mapped(env: Env) {
    let fake = start_fake().await;
    let base = {
        let mut f = fake.lock().unwrap();
        let mut ann = user("201", "ann@example.com", "Ann");
        ann["organizations"][0]["costCenter"] = json!("CC-ORG");
        ann["customSchemas"] = json!({
            "EmployeeData": {"badge": "B-7", "projects": [{"type": "work", "value": "apollo"}]},
            "Payroll": {"grade": "secret"}
        });
        f.users = vec![ann, user("202", "ben@example.com", "Ben")];
        f.base.clone()
    };
    let store = env.store;
    let mappings = [
        ("customSchemas.EmployeeData.badge", "employee_number"),
        ("customSchemas.EmployeeData.projects", "custom:project"),
        ("organizations.costCenter", "custom:cost_center"),
    ];
    let dir = google_directory(store.as_ref(), &base, &mappings).await;

    sync(&store, dir).await.expect("sync").expect("lease");
    let asked = fake.lock().unwrap().users_query.clone();
    assert_eq!(asked.get("projection").map(String::as_str), Some("custom"));
    assert_eq!(
        asked.get("customFieldMask").map(String::as_str),
        Some("EmployeeData"),
        "only the mapped schema is fetched"
    );
    let ann = user_named(store.as_ref(), dir, "ann@example.com").await;
    assert_eq!(ann.fields.employee_number.as_deref(), Some("B-7"));
    let custom = |k: &str| ann.fields.custom_attributes.get(k).cloned();
    assert_eq!(custom("project").as_deref(), Some("apollo"));
    assert_eq!(custom("cost_center").as_deref(), Some("CC-ORG"));
    assert_eq!(custom("orgUnitPath").as_deref(), Some("/Engineering"));
    assert_eq!(ann.fields.custom_attributes.len(), 3, "{:?}", ann.fields);
    let ben = user_named(store.as_ref(), dir, "ben@example.com").await;
    assert_eq!(ben.fields.employee_number, None, "nothing to map");
    let head = changes(store.as_ref(), dir, 0)
        .await
        .last()
        .unwrap()
        .revision;

    // A changed custom field is an update like any other.
    fake.lock().unwrap().users[0]["customSchemas"]["EmployeeData"]["badge"] = json!("B-8");
    sync(&store, dir).await.expect("sync").expect("lease");
    let events = changes(store.as_ref(), dir, head).await;
    assert_eq!(kinds(&events), ["user.updated"]);
    let ann = user_named(store.as_ref(), dir, "ann@example.com").await;
    assert_eq!(ann.fields.employee_number.as_deref(), Some("B-8"));
}

on_both_stores! {
    google_workspace_is_pulled_and_reconciled =>
        google_on_postgres, google_on_sqlite;
    custom_schemas_and_fields_are_mapped =>
        custom_schemas_on_postgres, custom_schemas_on_sqlite;
}
