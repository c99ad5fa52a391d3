//! Tenant isolation: a token of directory A reaches nothing of directory B —
//! not through B's base URL, not by guessing B's ids under A's base URL, not
//! through filters, searches, bulk operations or discovery — and
//! `WatchChanges` for A never carries B's events.

use reqwest::Method;
use roster_proto::directory::{Change, change};
use roster_testkit::app;
use roster_testkit::app::{
    BULK_REQUEST_SCHEMA, Reply, Scim, USER_SCHEMA, assert_scim_error, bare_user, changes_up_to,
    group, head_revision, patch_op,
};
use roster_testkit::app::{GROUP_SCHEMA, SEARCH_REQUEST_SCHEMA};
use serde_json::{Value, json};

/// B's resources, as A might guess or see them.
struct Foreign {
    user: String,
    user_name: String,
    group: String,
    group_name: String,
    directory: String,
}

impl Foreign {
    /// Whether B's data (not merely an id the caller itself sent) is in `text`.
    fn leaked_in(&self, text: &str) -> bool {
        text.contains(&self.user_name) || text.contains(&self.group_name)
    }

    /// `text` with B's ids replaced by a placeholder, to compare the answer
    /// about B's id with the answer about an id that exists nowhere.
    fn anonymized(&self, text: &str, ghost: &str) -> String {
        text.replace(&self.user, "<id>")
            .replace(&self.group, "<id>")
            .replace(ghost, "<id>")
    }
}

/// An id that exists in no directory.
const GHOST: &str = "00000000-0000-4000-8000-000000000000";

async fn send(scim: &Scim, method: Method, path: &str, body: Option<&Value>) -> Reply {
    scim.try_send(method.clone(), path, body, &[])
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {}", e.without_url()))
}

/// Asserts that `reply` is a 401 or 404 SCIM error that reveals nothing of B.
fn denied(reply: &Reply, foreign: &Foreign, what: &str) {
    assert_scim_error(reply, what);
    assert!(
        matches!(reply.status, 401 | 404),
        "{what}: {} {}",
        reply.status,
        reply.text
    );
    assert!(
        !foreign.leaked_in(&reply.text),
        "{what}: leaks B: {}",
        reply.text
    );
}

/// Asserts a 200 list/search answer that matches nothing and reveals nothing of B.
fn empty(reply: &Reply, foreign: &Foreign, what: &str) {
    assert_eq!(reply.status, 200, "{what}: {}", reply.text);
    assert_eq!(reply.body["totalResults"], 0, "{what}: {}", reply.text);
    assert!(
        !foreign.leaked_in(&reply.text),
        "{what}: leaks B: {}",
        reply.text
    );
}

/// One SCIM call: method, path and body.
type Call = (Method, String, Option<Value>);

/// Reads and writes of user `u` and group `g` by their ids.
fn by_id(u: &str, g: &str) -> Vec<Call> {
    let deactivate = json!([{"op": "replace", "path": "active", "value": false}]);
    let no_members = json!([{"op": "remove", "path": "members"}]);
    vec![
        (Method::GET, format!("/Users/{u}"), None),
        (
            Method::PUT,
            format!("/Users/{u}"),
            Some(bare_user("stolen@example.com")),
        ),
        (
            Method::PATCH,
            format!("/Users/{u}"),
            Some(patch_op(deactivate)),
        ),
        (Method::DELETE, format!("/Users/{u}"), None),
        (Method::GET, format!("/Groups/{g}"), None),
        (
            Method::PUT,
            format!("/Groups/{g}"),
            Some(group("stolen", &[])),
        ),
        (
            Method::PATCH,
            format!("/Groups/{g}"),
            Some(patch_op(no_members)),
        ),
        (Method::DELETE, format!("/Groups/{g}"), None),
    ]
}

/// Every endpoint of B's base URL, called with A's token: all 401.
async fn b_base_url_with_a_token(a_on_b: &Scim, foreign: &Foreign) {
    let (u, g) = (&foreign.user, &foreign.group);
    let mut calls = by_id(u, g);
    calls.extend([
        (Method::GET, "/Users".into(), None),
        (
            Method::POST,
            "/Users".into(),
            Some(bare_user("planted@example.com")),
        ),
        (Method::GET, "/Groups".into(), None),
        (Method::POST, "/Groups".into(), Some(group("planted", &[]))),
        (
            Method::POST,
            "/.search".into(),
            Some(json!({"schemas": [SEARCH_REQUEST_SCHEMA]})),
        ),
        (
            Method::POST,
            "/Users/.search".into(),
            Some(json!({"schemas": [SEARCH_REQUEST_SCHEMA]})),
        ),
        (
            Method::POST,
            "/Bulk".into(),
            Some(
                json!({"schemas": [BULK_REQUEST_SCHEMA], "Operations": [{"method": "DELETE", "path": format!("/Users/{u}")}]}),
            ),
        ),
        (Method::GET, "/ServiceProviderConfig".into(), None),
        (Method::GET, "/Schemas".into(), None),
        (Method::GET, "/ResourceTypes".into(), None),
        (Method::GET, "/ResourceTypes/User".into(), None),
        (Method::GET, "/Me".into(), None),
    ]);
    for (method, path, body) in calls {
        let what = format!("A's token on B's {method} {path}");
        let got = send(a_on_b, method, &path, body.as_ref()).await;
        assert_eq!(got.status, 401, "{what}: {}", got.text);
        denied(&got, foreign, &what);
    }
}

/// B's ids used under A's own base URL: 404 (or empty results), never B's data.
async fn b_ids_under_a_base_url(a: &Scim, a_group: &str, foreign: &Foreign) {
    let (u, g) = (&foreign.user, &foreign.group);
    let mut not_found = by_id(u, g);
    not_found.extend([
        // B's group id used as if it were a user and vice versa.
        (Method::GET, format!("/Users/{g}"), None),
        (Method::GET, format!("/Groups/{u}"), None),
    ]);
    for (method, path, body) in not_found {
        let what = format!("A's base URL, B's id: {method} {path}");
        let got = send(a, method.clone(), &path, body.as_ref()).await;
        denied(&got, foreign, &what);
        // No existence oracle: B's id is answered exactly like an id that exists nowhere.
        let ghost_path = path.replace(u.as_str(), GHOST).replace(g.as_str(), GHOST);
        let ghost = send(a, method, &ghost_path, body.as_ref()).await;
        assert_eq!(got.status, ghost.status, "{what}: differs from a ghost id");
        assert_eq!(
            foreign.anonymized(&got.text, GHOST),
            foreign.anonymized(&ghost.text, GHOST),
            "{what}: differs from a ghost id"
        );
    }

    for filter in [
        format!("id eq \"{u}\""),
        format!("userName eq \"{}\"", foreign.user_name),
        format!("userName co \"{}\"", &foreign.user_name[..6]),
        format!("groups.value eq \"{g}\""),
    ] {
        let url = format!("/Users?filter={}", app::percent_encode(&filter));
        empty(&send(a, Method::GET, &url, None).await, foreign, &filter);
    }
    for filter in [
        format!("id eq \"{g}\""),
        format!("members.value eq \"{u}\""),
    ] {
        let url = format!("/Groups?filter={}", app::percent_encode(&filter));
        empty(&send(a, Method::GET, &url, None).await, foreign, &filter);
    }
    let search = json!({"schemas": [SEARCH_REQUEST_SCHEMA], "filter": format!("id eq \"{u}\" or id eq \"{g}\"")});
    empty(
        &send(a, Method::POST, "/.search", Some(&search)).await,
        foreign,
        "/.search of B's ids",
    );

    // A's group cannot take B's user as a member, nor can a new group of A.
    let add = patch_op(json!([{"op": "add", "path": "members", "value": [{"value": u}]}]));
    let got = send(a, Method::PATCH, &format!("/Groups/{a_group}"), Some(&add)).await;
    assert_scim_error(&got, "adding B's user to A's group");
    let planted =
        json!({"schemas": [GROUP_SCHEMA], "displayName": "with-b", "members": [{"value": u}]});
    let got = send(a, Method::POST, "/Groups", Some(&planted)).await;
    assert_scim_error(&got, "creating A's group with B's user");

    let bulk = json!({"schemas": [BULK_REQUEST_SCHEMA], "Operations": [
        {"method": "DELETE", "path": format!("/Users/{u}")},
        {"method": "PUT", "path": format!("/Users/{u}"), "data": {"schemas": [USER_SCHEMA], "userName": "stolen@example.com"}},
        {"method": "PATCH", "path": format!("/Groups/{g}"), "data": patch_op(json!([{"op": "remove", "path": "members"}]))},
        {"method": "DELETE", "path": format!("/Groups/{g}")},
        {"method": "PATCH", "path": format!("/Groups/{a_group}"), "data": add},
        {"method": "DELETE", "path": format!("/scim/v2/{}/Users/{u}", foreign.directory)},
    ]});
    let got = send(a, Method::POST, "/Bulk", Some(&bulk)).await;
    assert_eq!(got.status, 200, "bulk: {}", got.text);
    for op in got.body["Operations"].as_array().expect("bulk results") {
        let status = op["status"].as_str().unwrap_or_default();
        assert!(
            status.starts_with('4'),
            "bulk op on B's ids succeeded: {op}"
        );
        assert!(
            !foreign.leaked_in(&op["response"].to_string()),
            "bulk leaks B: {op}"
        );
    }
}

fn touches(change: &Change, ids: &[&str]) -> bool {
    let membership = match &change.resource {
        Some(change::Resource::Membership(m)) => vec![m.group_id.clone(), m.member_id.clone()],
        _ => vec![],
    };
    ids.iter()
        .any(|id| change.resource_id == *id || membership.iter().any(|m| m == id))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_of_one_directory_reaches_nothing_of_another() {
    let served = app::serve_postgres("isolation").await;
    let dir_a = served.directory("generic", "delete");
    let dir_b = served.directory("generic", "delete");
    let a = Scim::new(&dir_a.base_url, &dir_a.token);
    let b = Scim::new(&dir_b.base_url, &dir_b.token);

    let a_user = a.create_user("alice@a.example").await;
    let a_group = a.create_group("a-team").await;
    let b_user_name = "secret-bob@b.example";
    let b_user = b.create_user(b_user_name).await;
    let b_group = b.create_group("b-team").await;
    b.patch(
        &format!("/Groups/{b_group}"),
        &patch_op(json!([{"op": "add", "path": "members", "value": [{"value": b_user}]}])),
    )
    .await;
    let foreign = Foreign {
        user: b_user.clone(),
        user_name: b_user_name.to_string(),
        group: b_group.clone(),
        group_name: "b-team".to_string(),
        directory: dir_b.directory_id.clone(),
    };
    let b_before = b.read_back().await;
    let a_before = a.read_back().await;

    let a_on_b = Scim::new(&dir_b.base_url, &dir_a.token);
    b_base_url_with_a_token(&a_on_b, &foreign).await;
    b_ids_under_a_base_url(&a, &a_group, &foreign).await;

    // Unknown and malformed directory ids and path tricks: 401, nothing leaks.
    let root = served.http_root();
    for base in [
        format!("{root}/scim/v2/00000000-0000-0000-0000-000000000000"),
        format!(
            "{root}/scim/v2/{}%2F..%2F{}",
            dir_a.directory_id, dir_b.directory_id
        ),
        format!("{root}/scim/v2/{}", dir_b.directory_id.to_uppercase()),
        format!("{root}/scim/v2/{}%20", dir_b.directory_id),
    ] {
        let got = Scim::new(&base, &dir_a.token).get("/Users").await;
        denied(&got, &foreign, &format!("A's token on {base}"));
    }

    assert_eq!(b.read_back().await, b_before, "B changed through A's token");
    assert_eq!(a.read_back().await, a_before, "A gained B's data");

    // A's change stream carries only A's events.
    let head = head_revision(&served.grpc, &dir_a.directory_id).await;
    let events = changes_up_to(&served.grpc, &dir_a.directory_id, head).await;
    assert!(
        events.iter().any(|c| c.resource_id == a_user),
        "A's own events are missing"
    );
    for change in &events {
        assert_eq!(
            change.directory_id, dir_a.directory_id,
            "foreign event on A's stream: {change:?}"
        );
        assert!(
            !touches(change, &[&b_user, &b_group]),
            "B's resource on A's stream: {change:?}"
        );
    }
    assert!(!served.logs().contains("panicked"));
}
