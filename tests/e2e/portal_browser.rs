//! The admin portal in a real browser (Debian's headless Chromium through
//! `chromedriver`): an IT admin opens a portal link, chooses Okta, copies
//! the SCIM URL, creates a token, the IdP sends real SCIM requests with it,
//! the admin watches them arrive and reads what the failures mean, sees the
//! users, rotates and revokes the token, and signs out. Screenshots of each
//! page go to `target/screenshots/portal/` (docs/portal.md shows them).

use std::path::PathBuf;
use std::time::Duration;

use roster_testkit::app::{self, user};
use serde_json::Value;

use crate::webdriver::Browser;

const OKTA: &str = "Okta SCIM Client 1.0.0";

/// Saves a screenshot of the current page after checking that it needs
/// nothing the strict Content-Security-Policy would block: no inline script
/// or style, no asset from another origin.
async fn shot_of(browser: &Browser, name: &str) {
    let offending = browser
        .execute(
            "return [...document.querySelectorAll('[style], script:not([src]), style, \
             [onclick], [onload], [onsubmit]')].length + \
             [...document.querySelectorAll('[src], link[href]')].filter(e => \
             new URL(e.src || e.href).origin !== location.origin).length;",
        )
        .await;
    assert_eq!(
        offending, 0,
        "{name}: inline script/style or a foreign asset"
    );
    browser.screenshot(&shot(name)).await;
}

fn shot(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/screenshots/portal")
        .join(format!("{name}.png"))
}

/// A portal link for `directory`, made as the SaaS backend would.
fn portal_link(served: &app::Served, directory: &str) -> String {
    let link = app::admin(
        &served.grpc,
        &[
            "portal-link",
            directory,
            "--expires",
            "1h",
            "--public-url",
            &served.http_root(),
        ],
    );
    link["url"].as_str().expect("link url").to_owned()
}

async fn scim(
    base: &str,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> u16 {
    let mut request = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .header("authorization", token)
        .header("user-agent", OKTA)
        .header("content-type", "application/scim+json");
    if let Some(body) = body {
        request = request.json(body);
    }
    request
        .send()
        .await
        .expect("SCIM request")
        .status()
        .as_u16()
}

/// Waits until the page's text (after `reload`, if given) contains `needle`.
async fn page_shows(browser: &Browser, reload: Option<&str>, needle: &str) {
    roster_testkit::eventually(needle, Duration::from_secs(20), || async {
        if let Some(url) = reload {
            browser.go(url).await;
        }
        browser.text().await.contains(needle).then_some(())
    })
    .await;
}

/// Asserts that the element `selector` finds shows `needle` now.
async fn element_shows(browser: &Browser, selector: &str, needle: &str) {
    let text = browser.text_of(selector).await;
    assert!(text.contains(needle), "{selector}: {text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_it_admin_connects_okta_alone_and_sees_what_happened() {
    let served = app::serve_postgres("portal_browser").await;
    let root = served.http_root();
    let created = app::admin(
        &served.grpc,
        &[
            "create-directory",
            "--name",
            "Acme Corp",
            "--organization",
            "acme",
        ],
    );
    let dir = created["id"].as_str().expect("directory id").to_owned();
    let link = portal_link(&served, &dir);
    let browser = Browser::start().await;

    // The link opens a page; its button exchanges the link for a session.
    browser.go(&link).await;
    assert_eq!(
        browser.title().await,
        "Connect your directory · Directory sync"
    );
    shot_of(&browser, "01-open-link").await;
    browser.click_to_load("#open").await;
    assert_eq!(browser.url().await, format!("{root}/portal"));
    let cookie = browser.cookie("roster_portal").await;
    assert_eq!(cookie["httpOnly"], true, "{cookie}");
    assert_eq!(cookie["secure"], true, "{cookie}");
    assert_eq!(cookie["sameSite"], "Strict", "{cookie}");
    assert_eq!(cookie["path"], "/portal");
    assert!(browser.text().await.contains("Acme Corp"));

    // The keyboard's first stop is the skip link, which leads to the content.
    browser.press("\u{E004}").await;
    let focused = browser
        .execute("return document.activeElement.textContent;")
        .await;
    assert_eq!(focused, "Skip to content");
    let labelled = browser
        .execute(
            "return [...document.querySelectorAll('input:not([type=hidden]), select')]\
             .every(e => e.labels.length > 0);",
        )
        .await;
    assert_eq!(labelled, true, "every field has a label");

    // Choose Okta: its steps from docs/idp/okta.md appear.
    browser.find("#provider-okta").await.click().await;
    browser.click_to_load("#save-provider").await;
    let text = browser.text().await;
    assert!(text.contains("3. Steps in Okta"), "{text}");
    assert!(text.contains("SCIM connector base URL"));
    assert!(text.contains("Test Connector Configuration"));
    shot_of(&browser, "02-setup-okta").await;

    // The SCIM base URL, with a copy button the script reveals.
    let scim_url = browser.text_of("#scim-url").await;
    assert_eq!(scim_url, format!("{root}/scim/v2/{dir}"));
    let copy = browser.find("button[data-copy=\"scim-url\"]").await;
    copy.click().await;
    // The clipboard answers asynchronously: wait for the button to say how
    // it went (copied, or the text selected for the keyboard).
    roster_testkit::eventually(
        "the copy button's answer",
        Duration::from_secs(10),
        || async {
            let label = copy.text().await;
            ["Copied", "Press Ctrl+C"]
                .contains(&label.as_str())
                .then_some(())
        },
    )
    .await;

    // Create a token: shown once.
    browser.go(&format!("{root}/portal/tokens")).await;
    browser.type_into("#token-name", "okta-prod").await;
    browser.click_to_load("#create-token").await;
    let token = browser.text_of("#new-token").await;
    assert!(token.starts_with("rst_"), "{token}");
    assert!(browser.text().await.contains("shown only once"));
    shot_of(&browser, "03-token-created").await;
    browser.go(&format!("{root}/portal/tokens")).await;
    assert!(
        !browser.text().await.contains(&token),
        "the secret is shown once"
    );

    // Test the connection: the IdP's requests appear live (the script polls).
    browser.go(&format!("{root}/portal/test")).await;
    element_shows(&browser, "#live-status", "Watching").await;
    let bearer = format!("Bearer {token}");
    // Created, then refused as a duplicate: a success and a failure to show.
    for expected in [201, 409] {
        let jdoe = user("jdoe@acme.example");
        let status = scim(
            &scim_url,
            &bearer,
            reqwest::Method::POST,
            "/Users",
            Some(&jdoe),
        )
        .await;
        assert_eq!(status, expected);
    }
    let doubled = format!("Bearer Bearer {token}");
    assert_eq!(
        scim(&scim_url, &doubled, reqwest::Method::GET, "/Users", None).await,
        401
    );
    roster_testkit::eventually("live rows", Duration::from_secs(20), || async {
        (browser.count("#live-activity tbody tr").await >= 3).then_some(())
    })
    .await;
    let live = browser.text_of("#live-activity").await;
    assert!(
        live.contains("POST /Users") && live.contains("201"),
        "{live}"
    );
    shot_of(&browser, "04-test-connection-live").await;

    // Activity: each request with its explanation and fix.
    browser.go(&format!("{root}/portal/activity")).await;
    let text = browser.text().await;
    assert!(text.contains("already exists in this directory"), "{text}");
    assert!(
        text.contains("Remove \"Bearer\" from the token field"),
        "{text}"
    );
    assert!(text.contains(OKTA));
    assert!(!text.contains(&token), "no secret in activity");
    // The events each request produced, with the revisions `roster admin
    // activity` reports: the creation's `user.created`, none for the 409.
    let listed = app::admin(&served.grpc, &["activity", &dir, "--outcome", "success"]);
    let creation = listed["entries"]
        .as_array()
        .and_then(|entries| entries.iter().find(|e| e["status"] == 201))
        .expect("the creation in roster admin activity");
    assert_eq!(creation["events"][0]["kind"], "user.created", "{creation}");
    let revision = creation["events"][0]["revision"]
        .as_i64()
        .expect("revision");
    assert_eq!(creation["revision"], revision);
    assert!(
        text.contains(&format!("user.created @ {revision}")),
        "{text}"
    );
    assert_eq!(browser.count("#activity ul.events li").await, 1);
    shot_of(&browser, "05-activity").await;
    // Readable on a phone: the same page at 390 px.
    browser.resize(390, 844).await;
    shot_of(&browser, "05b-activity-phone").await;
    browser.resize(1280, 1000).await;
    browser
        .find("#outcome option[value=\"failure\"]")
        .await
        .click()
        .await;
    browser.click_to_load("form.filters button").await;
    let failures = browser.count("#activity tbody tr").await;
    assert_eq!(failures, 2, "{}", browser.text().await);

    // The users the IdP provisioned.
    browser.go(&format!("{root}/portal/directory")).await;
    element_shows(&browser, "#user-list", "jdoe@acme.example").await;
    shot_of(&browser, "06-users-and-groups").await;

    // Attribute mapping.
    browser.go(&format!("{root}/portal/mappings")).await;
    browser
        .type_into(
            "#source",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter",
        )
        .await;
    browser.type_into("#target", "custom:cost_center").await;
    browser
        .click_to_load("form[action=\"/portal/mappings\"] button")
        .await;
    element_shows(&browser, "#mapping-list", "custom:cost_center").await;
    shot_of(&browser, "07-attribute-mapping").await;

    // Rotate: a second live token; the IdP switches; revoke the old one.
    browser.go(&format!("{root}/portal/tokens")).await;
    browser
        .click_to_load("button[aria-label=\"Rotate okta-prod\"]")
        .await;
    let rotated = browser.text_of("#new-token").await;
    assert!(rotated.starts_with("rst_") && rotated != token);
    assert_eq!(browser.count("#tokens tbody tr").await, 2);
    shot_of(&browser, "08-token-rotated").await;
    let new_bearer = format!("Bearer {rotated}");
    assert_eq!(
        scim(&scim_url, &new_bearer, reqwest::Method::GET, "/Users", None).await,
        200
    );
    browser
        .click_to_load("button[aria-label=\"Revoke okta-prod\"]")
        .await;
    assert!(browser.text().await.contains("Token revoked"));
    assert_eq!(browser.count("#tokens tbody tr").await, 1);
    shot_of(&browser, "09-token-revoked").await;
    roster_testkit::eventually("the old token refused", Duration::from_secs(20), || {
        let (url, bearer) = (scim_url.clone(), bearer.clone());
        async move {
            (scim(&url, &bearer, reqwest::Method::GET, "/Users", None).await == 401).then_some(())
        }
    })
    .await;
    assert_eq!(
        scim(&scim_url, &new_bearer, reqwest::Method::GET, "/Users", None).await,
        200
    );
    page_shows(
        &browser,
        Some(&format!("{root}/portal/activity")),
        "mistyped, or revoked",
    )
    .await;

    // A form without the session's CSRF token is refused, even with the cookie.
    let cookie_value = cookie["value"].as_str().expect("cookie value");
    let forged = reqwest::Client::new()
        .post(format!("{root}/portal/tokens"))
        .header("cookie", format!("roster_portal={cookie_value}"))
        .form(&[("csrf", "forged"), ("name", "evil")])
        .send()
        .await
        .expect("forged POST");
    assert_eq!(forged.status(), 403);

    // Signing out ends the session; the link stays used.
    browser.click_to_load(".signout button").await;
    assert!(browser.text().await.contains("You are signed out"));
    browser.go(&format!("{root}/portal")).await;
    assert!(browser.text().await.contains("Your session has ended"));
    browser.go(&link).await;
    browser.click_to_load("#open").await;
    assert!(browser.text().await.contains("This link was already used"));
    shot_of(&browser, "10-link-already-used").await;
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn revoking_portal_links_ends_their_sessions() {
    let served = app::serve_postgres("portal_revoke").await;
    let created = app::admin(&served.grpc, &["create-directory", "--name", "Revoked"]);
    let dir = created["id"].as_str().expect("directory id").to_owned();
    let link = portal_link(&served, &dir);
    let secret = link.rsplit('/').next().expect("secret");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let root = served.http_root();
    let cookie = open_session(&http, &root, &link).await;
    let page = |cookie: String| {
        let request = http.get(format!("{root}/portal")).header("cookie", cookie);
        async move { request.send().await.expect("GET /portal").status().as_u16() }
    };
    assert_eq!(page(cookie.clone()).await, 200);
    assert_eq!(page("roster_portal=rps_guessed".into()).await, 401);

    let revoked = app::admin(&served.grpc, &["revoke-portal-links", &dir]);
    assert_eq!(revoked["revoked"], 1);
    assert_eq!(page(cookie).await, 401, "the session ended with its link");
    let reopened = app::post_portal_open(&http, &root, secret).await;
    assert_eq!(reopened.status(), 410);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_portal_can_have_a_listener_of_its_own() {
    let served =
        app::serve_postgres_with("portal_listener", &[("ROSTER_PORTAL_ADDR", "127.0.0.1:0")]).await;
    let portal_root =
        roster_testkit::eventually("the portal's address", Duration::from_secs(20), || {
            let logs = served.logs();
            async move {
                let line = logs
                    .lines()
                    .find(|l| l.contains("admin portal listening"))?;
                let start = line.find("http://")?;
                let url = &line[start..];
                let end = url.find("/portal")?;
                Some(url[..end].to_owned())
            }
        })
        .await;
    let http = reqwest::Client::new();
    let status = |url: String| {
        let request = http.get(url);
        async move { request.send().await.expect("GET").status().as_u16() }
    };
    assert_eq!(
        status(format!("{portal_root}/portal/open/rpl_x")).await,
        200
    );
    assert_eq!(
        status(format!("{portal_root}/portal/static/portal.css")).await,
        200
    );
    assert_eq!(
        status(format!("{}/portal/open/rpl_x", served.http_root())).await,
        404,
        "not on the SCIM listener"
    );
    assert_eq!(
        status(format!("{portal_root}/scim/v2/x/Users")).await,
        404,
        "no SCIM on the portal's"
    );
    let idp = served.scim();
    assert_eq!(idp.get("/Users").await.status, 200);
}

/// Opens a portal link over plain HTTP: the session cookie (`name=value`).
async fn open_session(http: &reqwest::Client, root: &str, link: &str) -> String {
    let secret = link.rsplit('/').next().expect("secret");
    app::open_portal_session(http, root, secret).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_portal_session_reaches_only_its_own_directory() {
    let served = app::serve_postgres("portal_isolation").await;
    let root = served.http_root();
    let ours = served.directory("okta", "delete");
    let theirs = served.directory("entra", "delete");
    let their_tokens = app::admin(&served.grpc, &["list-tokens", &theirs.directory_id]);
    let their_token = their_tokens[0]["id"].as_str().expect("token id").to_owned();
    // Something of theirs in the audit trail, recorded before we look.
    let agent = "Their IdP 1.0";
    assert_eq!(
        theirs
            .with_header("user-agent", agent)
            .get("/Users")
            .await
            .status,
        200
    );
    let grpc = served.grpc.clone();
    let their_dir = theirs.directory_id.clone();
    roster_testkit::eventually("their activity", Duration::from_secs(20), || {
        let out = app::admin(&grpc, &["activity", &their_dir]);
        async move {
            out["entries"]
                .as_array()
                .is_some_and(|e| !e.is_empty())
                .then_some(())
        }
    })
    .await;

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let cookie = open_session(&http, &root, &portal_link(&served, &ours.directory_id)).await;
    let get = |path: &str| {
        let request = http
            .get(format!("{root}{path}"))
            .header("cookie", cookie.clone());
        async move {
            request
                .send()
                .await
                .expect("GET")
                .text()
                .await
                .expect("page")
        }
    };
    let activity = get("/portal/activity").await;
    assert!(
        !activity.contains(agent),
        "another directory's activity shown"
    );
    let tokens = get("/portal/tokens").await;
    let csrf = app::portal_csrf(&tokens);

    // Their token id, posted from our session, revokes nothing.
    let revoke = http
        .post(format!("{root}/portal/tokens/revoke"))
        .header("cookie", cookie.clone())
        .form(&[("csrf", csrf.as_str()), ("token_id", their_token.as_str())])
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoke.status(), 400);
    assert_eq!(
        theirs.get("/Users").await.status,
        200,
        "their token still works"
    );
}

/// A directory Roster pulls from LDAP: the portal shows its sync status —
/// here a real failure, the LDAP server unreachable — and no token pages.
#[tokio::test(flavor = "multi_thread")]
async fn a_pulled_directory_shows_its_sync_status() {
    let key = roster_webhook::SealingKey::generate_text().expect("key");
    let served = app::serve_postgres_with(
        "portal_sync",
        &[("ROSTER_SECRET_KEY", &key), ("ROSTER_SYNC_POLL_SECS", "1")],
    )
    .await;
    let created = app::admin(&served.grpc, &["create-directory", "--name", "Corp LDAP"]);
    let dir = created["id"].as_str().expect("directory id").to_owned();
    // Nothing listens on this port: the sync fails, as a wrong URL would.
    let settings = serde_json::json!({
        "url": format!("ldap://127.0.0.1:{}", app::free_port()),
        "bind_dn": "cn=roster,dc=corp,dc=example",
        "users_base_dn": "ou=people,dc=corp,dc=example",
        "groups_base_dn": "ou=groups,dc=corp,dc=example",
    })
    .to_string();
    app::set_ldap_source(&served.grpc, &dir, &settings, "not-the-password", &[]);
    let grpc = served.grpc.clone();
    let source = roster_testkit::eventually("a failed sync", Duration::from_secs(60), || {
        let source = app::admin(&grpc, &["get-source", &dir]);
        async move { (source["status"]["failures"].as_i64() >= Some(1)).then_some(source) }
    })
    .await;
    let error = source["status"]["last_error"].as_str().expect("last error");
    assert!(!error.is_empty(), "{source}");

    let browser = Browser::start().await;
    browser.go(&portal_link(&served, &dir)).await;
    browser.click_to_load("#open").await;
    assert!(browser.text().await.contains("no token to paste"));
    browser
        .go(&format!("{}/portal/sync", served.http_root()))
        .await;
    let text = browser.text().await;
    assert!(text.contains("The last run failed"), "{text}");
    assert!(text.contains(error), "{error:?} not in {text}");
    let nav = browser.text_of("nav").await;
    assert!(
        nav.contains("Sync status") && !nav.contains("Tokens"),
        "{nav}"
    );
    shot_of(&browser, "11-sync-status").await;
}
