//! The README's walkthrough, verbatim: `roster serve` on the embedded store,
//! create a user with an HTTP POST, see it with `roster watch`.

use roster_testkit::app;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn readme_walkthrough_creates_a_user_and_watch_shows_it() {
    let data = app::temp_dir("walkthrough");
    let served = app::serve(&data);
    let token = served.token.clone().expect("first start prints a token");

    // The README's curl.
    let body = r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"bjensen@example.com","name":{"givenName":"Barbara","familyName":"Jensen"},"emails":[{"value":"bjensen@example.com","type":"work","primary":true}]}"#;
    let created = reqwest::Client::new()
        .post(format!("{}/Users", served.base_url))
        .bearer_auth(&token)
        .header("content-type", "application/scim+json")
        .body(body)
        .send()
        .await
        .expect("POST /Users");
    assert_eq!(created.status(), 201);
    let user: Value = created.json().await.expect("json");
    assert_eq!(user["userName"], "bjensen@example.com");

    // The README's `roster watch`.
    let out = roster_testkit::run_ok(
        app::roster()
            .args(["watch", "--endpoint", &format!("http://{}", served.grpc)])
            .args([
                "--directory",
                &served.directory_id,
                "--after-revision",
                "0",
                "--kinds",
                "user.created",
                "--count",
                "1",
            ]),
        "roster watch",
    );
    let line: Value = serde_json::from_slice(out.split(|b| *b == b'\n').next().unwrap_or_default())
        .expect("one JSON line");
    assert_eq!(line["change"]["kind"], "user.created");
    assert_eq!(
        line["change"]["resource"]["user_name"],
        "bjensen@example.com"
    );
    assert_eq!(line["change"]["resource_id"], user["id"]);
    assert!(line["cursor"].as_str().is_some_and(|c| !c.is_empty()));
}

#[tokio::test(flavor = "multi_thread")]
async fn second_start_reuses_the_directory_and_does_not_reprint_the_token() {
    let data = app::temp_dir("restart");
    let first = app::serve(&data);
    let directory = first.directory_id.clone();
    assert!(first.token.is_some());
    drop(first);
    let second = app::serve(&data);
    assert_eq!(second.directory_id, directory);
    assert!(
        second.token.is_none(),
        "token printed again: {:?}",
        second.banner
    );
}
