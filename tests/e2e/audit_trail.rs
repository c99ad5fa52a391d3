//! The audit trail (docs/portal.md): every SCIM request to a directory is
//! recorded by the gateway — outcome, SCIM error, user agent, resource —
//! without bodies or credentials, and `roster admin activity` lists it,
//! filtered and paged.

use std::time::Duration;

use roster_testkit::app::{self, user};
use serde_json::Value;

const OKTA: &str = "Okta SCIM Client 1.0.0";

/// `roster admin activity <dir> <args>` once it lists at least `n` entries.
async fn activity(served: &app::Served, dir: &str, args: &[&str], n: usize) -> Vec<Value> {
    let grpc = served.grpc.clone();
    roster_testkit::eventually("the audit trail", Duration::from_secs(20), || {
        let mut all = vec!["activity", dir];
        all.extend_from_slice(args);
        let out = app::admin(&grpc, &all);
        let entries = out["entries"].as_array().cloned().unwrap_or_default();
        async move { (entries.len() >= n).then_some(entries) }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn every_scim_request_is_recorded_without_secrets_or_bodies() {
    let served = app::serve_postgres("audit_trail").await;
    let idp = served
        .directory("okta", "delete")
        .with_headers(&[("user-agent", OKTA)]);

    let created = idp.post("/Users", &user("barbara@example.com")).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["id"].as_str().expect("id").to_owned();
    let duplicate = idp.post("/Users", &user("barbara@example.com")).await;
    assert_eq!(duplicate.status, 409);
    let wrong_token = idp.with_token("rst_not-a-real-token").get("/Users").await;
    assert_eq!(wrong_token.status, 401);
    let read = idp.get(&format!("/Users/{id}")).await;
    assert_eq!(read.status, 200);
    // SCIM 1.1 clients are recorded the same way.
    let v1 = format!("{}/scim/v1/{}/Users", served.http_root(), idp.directory_id);
    let listed = reqwest::Client::new()
        .get(&v1)
        .bearer_auth(&idp.token)
        .header("user-agent", OKTA)
        .send()
        .await
        .expect("SCIM 1.1 list");
    assert_eq!(listed.status(), 200);

    let entries = activity(&served, &idp.directory_id, &[], 5).await;
    let statuses: Vec<i64> = entries
        .iter()
        .map(|e| e["status"].as_i64().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [200, 200, 401, 409, 201],
        "newest first: {entries:#?}"
    );
    assert_eq!(
        entries[0]["path"],
        format!("/scim/v1/{}/Users", idp.directory_id)
    );
    assert_eq!(entries[0]["resource_type"], "User");
    let entries = entries[1..].to_vec();

    let created = &entries[3];
    assert_eq!(created["method"], "POST");
    assert_eq!(
        created["path"],
        format!("/scim/v2/{}/Users", idp.directory_id)
    );
    assert_eq!(created["resource_type"], "User");
    assert_eq!(
        created["resource_id"],
        id.as_str(),
        "the created id, from Location"
    );
    assert_eq!(created["user_agent"], OKTA);
    assert_eq!(created["client_address"], "127.0.0.1");
    assert!(
        created["request_id"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );

    let conflict = &entries[2];
    assert_eq!(conflict["scim_type"], "uniqueness");
    assert!(conflict["detail"].as_str().is_some_and(|d| !d.is_empty()));
    // A 401 says which mistake it was, never the token.
    assert_eq!(entries[1]["detail"], "unknown_or_revoked_token");
    assert_eq!(entries[0]["resource_id"], id.as_str());

    let recorded = serde_json::to_string(&entries).unwrap();
    for secret in [
        idp.token.as_str(),
        "rst_not-a-real-token",
        "Given",
        "ext-barbara",
    ] {
        assert!(
            !recorded.contains(secret),
            "{secret:?} recorded: {recorded}"
        );
    }

    // Filtered by outcome and resource type; paged.
    let failures = activity(&served, &idp.directory_id, &["--outcome", "failure"], 2).await;
    let statuses: Vec<i64> = failures
        .iter()
        .map(|e| e["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, [401, 409]);
    let first = app::admin(
        &served.grpc,
        &["activity", &idp.directory_id, "--limit", "4"],
    );
    assert_eq!(first["entries"].as_array().unwrap().len(), 4);
    let token = first["next_page_token"]
        .as_str()
        .expect("a full page has a next page");
    let rest = app::admin(
        &served.grpc,
        &[
            "activity",
            &idp.directory_id,
            "--limit",
            "3",
            "--page-token",
            token,
        ],
    );
    let rest = rest["entries"].as_array().unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["status"], 201);
    let groups = app::admin(
        &served.grpc,
        &["activity", &idp.directory_id, "--resource", "Group"],
    );
    assert!(groups["entries"].as_array().unwrap().is_empty());

    // Another directory sees none of it.
    let other = served.directory("generic", "delete");
    let none = app::admin(&served.grpc, &["activity", &other.directory_id]);
    assert!(none["entries"].as_array().unwrap().is_empty());
}
