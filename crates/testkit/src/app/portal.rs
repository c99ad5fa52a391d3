//! The admin portal over plain HTTP, for tests that check its pages without
//! a browser.

/// Exchanges a portal link's secret for a session, as the link's button
/// does; `http` must not follow redirects. Returns the session cookie as
/// `name=value`.
pub async fn open_portal_session(http: &reqwest::Client, root: &str, secret: &str) -> String {
    let opened = post_portal_open(http, root, secret).await;
    assert_eq!(opened.status(), 303);
    let set_cookie = opened.headers()["set-cookie"].to_str().expect("cookie");
    set_cookie.split(';').next().expect("name=value").to_owned()
}

/// POSTs a link's secret to `/portal/open`, as the link's button does.
pub async fn post_portal_open(
    http: &reqwest::Client,
    root: &str,
    secret: &str,
) -> reqwest::Response {
    http.post(format!("{root}/portal/open"))
        .form(&[("secret", secret)])
        .send()
        .await
        .expect("POST /portal/open")
}

/// The CSRF token in a portal page's forms.
pub fn portal_csrf(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF field")
        .to_owned()
}
