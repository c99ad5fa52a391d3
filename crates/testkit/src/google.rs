//! A Google Workspace Directory API and OAuth token endpoint over real HTTP,
//! reproducing the documented behaviour the connector relies on
//! (docs/connectors/google.md cites the pages): it verifies the
//! service-account JWT's RS256 signature and claims, pages users (fewer
//! than `maxResults`, as the API may), groups and members, applies
//! `projection`/`customFieldMask`, and answers with Google's error bodies
//! (expired token, rate limit, insufficient permissions).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use serde_json::{Value, json};

/// The throwaway service-account key the fake trusts (generated for the tests).
pub const KEY_PEM: &str = include_str!("../fixtures/google-test-key.pem");
const PUBLIC_DER: &[u8] = include_bytes!("../fixtures/google-test-key.pub.der");
pub const CLIENT_EMAIL: &str = "roster@project.iam.gserviceaccount.com";
/// The admin the delegation acts as.
pub const ADMIN: &str = "admin@example.com";
/// Smaller than maxResults, as the API may answer: paging is exercised.
const FAKE_PAGE: usize = 2;

/// The fake's state; tests change it between syncs.
#[derive(Default)]
pub struct Fake {
    pub base: String,
    /// The scopes the delegation grants.
    scope: String,
    pub users: Vec<Value>,
    /// (group, members)
    pub groups: Vec<(Value, Vec<Value>)>,
    pub tokens_issued: usize,
    pub live_token: Option<String>,
    /// The next API call answers this (status, error reason) once.
    pub fail_next: Option<(u16, &'static str)>,
    /// The query of the last `users.list` call.
    pub users_query: HashMap<String, String>,
}

pub type Shared = Arc<Mutex<Fake>>;

pub fn google_error(status: u16, reason: &str) -> Value {
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
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let ok = header["alg"] == "RS256"
        && claims["iss"] == CLIENT_EMAIL
        && claims["sub"] == ADMIN
        && claims["scope"] == fake.scope.as_str()
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

/// Starts the fake on a loopback port; `scope` is what the delegation grants
/// (the assertion must ask for exactly it).
pub async fn start(scope: &str) -> Shared {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let fake: Shared = Arc::new(Mutex::new(Fake {
        base: format!("http://{}", listener.local_addr().unwrap()),
        scope: scope.to_string(),
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

/// A User resource as `users.list` returns it.
pub fn user(id: &str, email: &str, given: &str) -> Value {
    json!({"kind": "admin#directory#user", "id": id, "primaryEmail": email,
        "name": {"givenName": given, "familyName": "Test", "fullName": format!("{given} Test")},
        "suspended": false, "archived": false, "orgUnitPath": "/Engineering",
        "organizations": [{"title": "Engineer", "department": "R&D", "primary": true}]})
}

/// A Member resource as `members.list` returns it.
pub fn member(id: &str, kind: &str) -> Value {
    json!({"kind": "admin#directory#member", "id": id, "type": kind, "role": "MEMBER", "status": "ACTIVE"})
}

/// A group as `groups.list` returns it.
pub fn group(id: &str, name: &str) -> Value {
    json!({"kind": "admin#directory#group", "id": id, "email": format!("{id}@example.com"), "name": name})
}

/// The service account's JSON key file, as Google hands it out.
pub fn key_json(base: &str) -> String {
    json!({"type": "service_account", "client_email": CLIENT_EMAIL,
        "private_key": KEY_PEM, "token_uri": format!("{base}/token")})
    .to_string()
}

/// A Google source's settings pointing at the fake at `base`.
pub fn settings(base: &str) -> Value {
    json!({"admin_email": ADMIN, "token_url": format!("{base}/token"), "api_base": base})
}
