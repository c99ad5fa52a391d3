//! Credentials: bearer tokens are stored only hashed, never logged (even at
//! trace level), and a revoked token stops working within the auth cache TTL;
//! the gRPC directory service with `ROSTER_INTERNAL_SECRET` rejects callers
//! without it while health checks stay open.

use roster_testkit::app;
use std::process::Command;
use std::time::Duration;

use roster_proto::admin::admin_service_client::AdminServiceClient;
use roster_proto::admin::{AuthenticateTokenRequest, ListDirectoriesRequest};
use roster_proto::directory::directory_service_client::DirectoryServiceClient;
use roster_proto::directory::watch_changes_request::Start;
use roster_proto::directory::{ListUsersRequest, WatchChangesRequest};
use roster_testkit::app::{
    BULK_REQUEST_SCHEMA, Reply, Scim, bare_user, connect, free_port, patch_op, spawn_gateway,
    wait_for_http,
};
use serde_json::json;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// The internal secret of the credential tests.
const INTERNAL_SECRET: &str = "internal-s3cret-for-tests-9f8e7d";

/// Every row of the database as SQL text (`pg_dump --data-only`).
fn dump_database(url: &str) -> String {
    let out = roster_testkit::run_ok(
        Command::new("pg_dump").args(["--data-only", "--no-owner", "--dbname", url]),
        "pg_dump (PostgreSQL client tools must be installed)",
    );
    String::from_utf8_lossy(&out).into_owned()
}

/// A token lifecycle through the SCIM surface: create, read, list, search,
/// patch, bulk and delete, plus a few rejected tokens.
async fn lifecycle(scim: &Scim) {
    let id = scim.create_user("lifecycle@example.com").await;
    scim.get(&format!("/Users/{id}")).await.expect(200, "get");
    scim.get("/Users?filter=userName%20eq%20%22lifecycle@example.com%22")
        .await
        .expect(200, "filter");
    scim.patch(
        &format!("/Users/{id}"),
        &patch_op(json!([{"op": "replace", "path": "title", "value": "t"}])),
    )
    .await
    .expect(200, "patch");
    let bulk = json!({"schemas": [BULK_REQUEST_SCHEMA], "Operations": [
        {"method": "POST", "path": "/Users", "bulkId": "b", "data": bare_user("bulk@example.com")}
    ]});
    scim.post("/Bulk", &bulk).await.expect(200, "bulk");
    scim.send(reqwest::Method::DELETE, &format!("/Users/{id}"), None)
        .await
        .expect(204, "delete");
    for bad in [format!("{}x", scim.token), "rst_guess".to_string()] {
        let wrong = Scim::new(&scim.base_url, &bad);
        wrong.get("/Users").await.expect(401, "wrong token");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_stored_hashed_and_never_logged_even_at_trace_level() {
    let served = app::serve_postgres_with(
        "tokens",
        &[
            ("ROSTER_LOG", "trace"),
            ("ROSTER_INTERNAL_SECRET", INTERNAL_SECRET),
        ],
    )
    .await;
    let url = served.database_url.clone().expect("database");
    let env = [("ROSTER_INTERNAL_SECRET", INTERNAL_SECRET)];
    let (id, token) = app::create_directory(&served.grpc, "tokens", &env);
    let scim = Scim::new(&format!("{}/scim/v2/{id}", served.http_root()), &token);
    lifecycle(&scim).await;

    let banner_token = served.token.clone().expect("banner token");
    let secrets = [token.as_str(), banner_token.as_str()];
    let dump = dump_database(&url);
    assert!(
        dump.contains("lifecycle@example.com"),
        "the dump is not of this database"
    );
    for secret in secrets {
        // The 8-character prefix is kept in clear on purpose (to recognise a
        // token in lists); the rest must not be stored.
        let hidden = &secret[8..];
        assert!(!dump.contains(hidden), "a token secret is stored in clear");
    }
    assert!(!dump.contains(INTERNAL_SECRET));

    let logs = served.logs();
    assert!(
        logs.len() > 10_000,
        "trace logging was not on: {} bytes",
        logs.len()
    );
    for secret in secrets.iter().chain([&INTERNAL_SECRET]) {
        assert!(!logs.contains(&secret[4..]), "a secret is in the logs");
    }
    assert!(
        !logs.contains("Bearer "),
        "an Authorization value is in the logs"
    );
    assert!(!logs.to_ascii_lowercase().contains("bearer rst_"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_token_stops_working_within_the_cache_ttl() {
    let served = app::serve_postgres("revoke").await;
    let dir = served.directory("generic", "delete");
    let endpoint = format!("http://{}", served.grpc);
    let second = app::admin(
        &endpoint,
        &["create-token", &dir.directory_id, "--name", "second"],
    );
    let second = second["secret"].as_str().expect("secret").to_string();
    let revoked = Scim::new(&dir.base_url, &dir.token);
    let kept = Scim::new(&dir.base_url, &second);
    // Warm the gateway's auth cache, so revocation has to outlive a cached "yes".
    revoked.get("/Users").await.expect(200, "before revocation");

    let tokens = app::admin(&endpoint, &["list-tokens", &dir.directory_id]);
    let listed_token = |prefix_of: &str| {
        tokens
            .as_array()
            .expect("tokens")
            .iter()
            .find(|t| prefix_of.starts_with(t["prefix"].as_str().unwrap_or("-")))
            .cloned()
            .unwrap_or_else(|| panic!("the token is not listed: {tokens}"))
    };
    let first = listed_token(&dir.token);
    let token_id = first["id"].as_str().expect("token id").to_string();
    // The operator's check before revoking: the IdP uses the new token, and
    // the old one shows when it was last used.
    assert!(first["last_used_at"].is_string(), "used token: {first}");
    assert!(
        listed_token(&second)["last_used_at"].is_null(),
        "unused token: {tokens}"
    );
    app::admin(&endpoint, &["revoke-token", &dir.directory_id, &token_id]);

    // The documented bound is the 5 s cache TTL; 2 s more for a loaded machine.
    roster_testkit::eventually(
        "the revoked token is refused",
        Duration::from_secs(7),
        || async { (revoked.get("/Users").await.status == 401).then_some(()) },
    )
    .await;
    kept.get("/Users")
        .await
        .expect(200, "the other token still works");
    let listed = app::admin(&endpoint, &["list-tokens", &dir.directory_id]);
    assert!(
        !listed.to_string().contains(&token_id),
        "a revoked token is still listed as live: {listed}"
    );
}

/// gRPC metadata carrying `secret` as the internal credential.
fn with_secret<T>(message: T, secret: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(secret) = secret {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {secret}").parse().expect("metadata"),
        );
    }
    request
}

#[tokio::test(flavor = "multi_thread")]
async fn the_directory_service_requires_the_internal_secret() {
    let served =
        app::serve_postgres_with("internal", &[("ROSTER_INTERNAL_SECRET", INTERNAL_SECRET)]).await;
    let channel = connect(&served.grpc).await.expect("gRPC");
    let mut directory = DirectoryServiceClient::new(channel.clone());
    let mut admin = AdminServiceClient::new(channel.clone());
    let list = || ListUsersRequest {
        directory_id: served.directory_id.clone(),
        options: None,
    };

    for secret in [None, Some("wrong"), Some(""), Some(&INTERNAL_SECRET[1..])] {
        let denied = directory.list_users(with_secret(list(), secret)).await;
        let denied = denied.expect_err("ListUsers without the secret");
        assert_eq!(
            denied.code(),
            tonic::Code::Unauthenticated,
            "secret {secret:?}"
        );
        // Marked as the caller's internal credential, not a token's fault.
        assert!(
            roster_proto::internal_auth::is_rejection(&denied),
            "secret {secret:?}: {:?}",
            denied.metadata()
        );
        let denied = admin
            .list_directories(with_secret(ListDirectoriesRequest::default(), secret))
            .await;
        assert_eq!(
            denied.expect_err("admin").code(),
            tonic::Code::Unauthenticated
        );
        let watch = WatchChangesRequest {
            directory_id: served.directory_id.clone(),
            kinds: vec![],
            start: Some(Start::AfterRevision(0)),
        };
        let denied = directory.watch_changes(with_secret(watch, secret)).await;
        assert_eq!(
            denied.expect_err("watch").code(),
            tonic::Code::Unauthenticated
        );
    }
    directory
        .list_users(with_secret(list(), Some(INTERNAL_SECRET)))
        .await
        .expect("ListUsers with the secret");
    // A bad IdP token with the right internal secret is UNAUTHENTICATED
    // without the mark: the gateway tells the two apart by it.
    let bad_token = AuthenticateTokenRequest {
        secret: "rst_no-such-token".into(),
    };
    let rejected = admin
        .authenticate_token(with_secret(bad_token, Some(INTERNAL_SECRET)))
        .await
        .expect_err("a made-up token");
    assert_eq!(rejected.code(), tonic::Code::Unauthenticated);
    assert!(!roster_proto::internal_auth::is_rejection(&rejected));

    // Health stays open (Kubernetes probes carry no credential).
    let health = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health without a secret");
    assert_eq!(health.into_inner().status(), ServingStatus::Serving);

    // The gateway configured with the secret works…
    let scim = served.scim();
    scim.create_user("through-the-gateway@example.com").await;

    // …and a gateway without it, or with another one, is misconfigured: an
    // outage for every IdP (503 + Retry-After), never a 401 with
    // WWW-Authenticate (which makes Okta and Entra quarantine the
    // integration), never remembered as the token's fault, and an ERROR in
    // its log that names the cause but not the secret.
    let grpc_port: u16 = served.grpc.rsplit(':').next().unwrap().parse().unwrap();
    let wrong = "not-the-internal-secret-42";
    for (what, env) in [
        ("no internal secret", vec![]),
        (
            "a wrong internal secret",
            vec![("ROSTER_INTERNAL_SECRET", wrong)],
        ),
    ] {
        let http_port = free_port();
        let rogue = spawn_gateway(grpc_port, http_port, &env);
        let root = format!("http://127.0.0.1:{http_port}");
        wait_for_http(&root).await;
        let scim = Scim::new(
            &format!("{root}/scim/v2/{}", served.directory_id),
            served.token.as_deref().unwrap(),
        );
        // Twice: the second answer must not come from a cached "bad token".
        for attempt in 1..=2 {
            let got = scim.get("/Users").await;
            assert_internal_auth_outage(&got, &format!("{what}, request {attempt}"));
            assert!(!got.text.contains("through-the-gateway"));
        }
        let logs = roster_testkit::eventually(
            "the gateway logs the rejected internal credential",
            Duration::from_secs(10),
            || async {
                let logs = rogue.logs();
                logs.contains("internal_credential_rejected")
                    .then_some(logs)
            },
        )
        .await;
        let line = logs
            .lines()
            .find(|l| l.contains("internal_credential_rejected"))
            .unwrap();
        assert!(line.contains("ERROR"), "{what}: not an ERROR: {line}");
        assert!(line.contains("ROSTER_INTERNAL_SECRET"), "{what}: {line}");
        assert!(!logs.contains(wrong), "{what}: the secret is in the log");
    }
}

/// The exact answer of a gateway whose internal credential the directory
/// service rejects.
fn assert_internal_auth_outage(got: &app::Reply, what: &str) {
    assert_eq!(got.status, 503, "{what}: {}", got.text);
    let retry_after = got.header("retry-after").unwrap_or_default();
    assert!(
        retry_after.parse::<u64>().is_ok_and(|s| s > 0),
        "{what}: Retry-After {retry_after:?}"
    );
    assert_eq!(got.header("www-authenticate"), None, "{what}");
    assert_eq!(got.body["schemas"][0], app::ERROR_SCHEMA, "{what}");
    assert_eq!(got.body["status"], "503", "{what}: {}", got.text);
}

/// The mistakes an IdP admin makes all get the same 401 (nothing for a
/// prober to learn), but the gateway's log names each one, without the
/// token, so the operator can say what to fix.
#[tokio::test(flavor = "multi_thread")]
async fn every_401_looks_the_same_but_the_log_says_which_mistake_it_was() {
    let served = app::serve_postgres("reasons").await;
    let token = served.token.clone().expect("banner token");
    let other = served.directory("generic", "delete");
    let root = served.http_root();
    let mistyped = format!("{root}/scim/v2/{}/Users", uuid::Uuid::new_v4());
    let users = format!("{}/Users", served.base_url);
    let cases: [(&str, &str, Option<String>); 6] = [
        ("missing_header", &users, None),
        ("malformed_header", &users, Some(format!("Basic {token}"))),
        (
            "doubled_bearer",
            &users,
            Some(format!("Bearer Bearer {token}")),
        ),
        (
            "unknown_or_revoked_token",
            &users,
            Some("Bearer rst_no-such-token".into()),
        ),
        (
            "token_of_another_directory",
            &users,
            Some(format!("Bearer {}", other.token)),
        ),
        (
            "unknown_directory",
            &mistyped,
            Some(format!("Bearer {token}")),
        ),
    ];
    let http = app::http_client();
    let mut first: Option<app::Reply> = None;
    for (reason, url, authorization) in cases {
        let mut request = http.get(url);
        if let Some(value) = &authorization {
            request = request.header("authorization", value);
        }
        let got = Reply::read(request.send().await.expect("request"))
            .await
            .expect("reply");
        assert_eq!(got.status, 401, "{reason}: {}", got.text);
        let same = first.get_or_insert_with(|| got.clone());
        assert_eq!(
            got.body, same.body,
            "{reason}: the body tells mistakes apart"
        );
        assert_eq!(
            got.header("www-authenticate"),
            same.header("www-authenticate"),
            "{reason}"
        );
        roster_testkit::eventually(
            &format!("the gateway logs reason {reason}"),
            Duration::from_secs(10),
            || async { served.logs().contains(reason).then_some(()) },
        )
        .await;
    }
    let logs = served.logs();
    for secret in [&token, &other.token] {
        assert!(!logs.contains(&secret[4..]), "a token is in the logs");
    }
}

/// The limits before authentication, configured through `ROSTER_*`: once an
/// address has spent its failed-authentication budget, guesses get 429 with
/// `Retry-After` and a SCIM error body without being checked, while the
/// IdP's known-valid token from the same address keeps working.
#[tokio::test(flavor = "multi_thread")]
async fn failed_authentications_per_address_are_limited_but_a_known_token_is_not() {
    let served = app::serve_postgres_with(
        "authlimit",
        &[
            ("ROSTER_AUTH_FAILURES_PER_ADDRESS", "1"),
            ("ROSTER_AUTH_FAILURE_BURST", "3"),
        ],
    )
    .await;
    let idp = served.scim();
    idp.get("/Users")
        .await
        .expect(200, "the IdP, first request");
    let guess = Scim::new(&served.base_url, "rst_guess");
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let got = guess.get("/Users").await;
        if got.status == 429 {
            assert!(
                got.header("retry-after").is_some(),
                "429 without Retry-After"
            );
            assert_eq!(got.body["schemas"][0], app::ERROR_SCHEMA);
            assert_eq!(got.header("www-authenticate"), None);
        }
        statuses.push(got.status);
    }
    // Three failures fit the burst; refilling at 1/s admits at most one more
    // while the loop runs.
    assert_eq!(&statuses[..3], &[401, 401, 401], "{statuses:?}");
    assert!(
        statuses[3..].iter().filter(|s| **s == 429).count() >= 2,
        "{statuses:?}"
    );
    idp.get("/Users")
        .await
        .expect(200, "the IdP from the same address");
}
