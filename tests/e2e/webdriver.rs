//! A small W3C WebDriver client over HTTP (reqwest + serde), enough to drive
//! Debian's Chromium through `chromedriver`: navigate, find, click, type,
//! read text, cookies, screenshots. `chromedriver` and its browser are
//! stopped when the [`Browser`] is dropped.

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

/// The key under which WebDriver returns an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A headless Chromium session through a chromedriver of its own.
pub struct Browser {
    driver: Child,
    http: reqwest::Client,
    session: String,
}

/// An element of the current page.
pub struct Element<'a> {
    browser: &'a Browser,
    id: String,
}

impl Browser {
    /// Starts `chromedriver` on a free port and a headless session in it.
    pub async fn start() -> Browser {
        let port = roster_testkit::app::free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            // Its own process group, so a failed test can stop the driver
            // and every browser process it started, by the group's id.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "cannot run chromedriver: install Chromium and its driver \
                 (Debian: apt-get install chromium chromium-driver)",
            );
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        roster_testkit::eventually("chromedriver", Duration::from_secs(20), || {
            let status = http.get(format!("{base}/status")).send();
            async move { status.await.ok().filter(|r| r.status().is_success()) }
        })
        .await;
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000"]
            }
        }}});
        let reply: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .expect("new WebDriver session")
            .json()
            .await
            .expect("session JSON");
        let session = reply["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {reply}"))
            .to_owned();
        Browser {
            driver,
            http,
            session: format!("{base}/session/{session}"),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        match self.try_call(method, path, body).await {
            Ok(value) => value,
            Err(error) => panic!("WebDriver {path}: {error}"),
        }
    }

    /// A call, or the WebDriver error it answered.
    async fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let reply: Value = request
            .send()
            .await
            .expect("WebDriver call")
            .json()
            .await
            .expect("WebDriver JSON");
        if let Some(error) = reply["value"]["error"].as_str() {
            return Err(format!("{error}: {}", reply["value"]["message"]));
        }
        Ok(reply["value"].clone())
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// Opens `url` and waits for the page to load.
    pub async fn go(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    /// The current page's title.
    pub async fn title(&self) -> String {
        self.get("/title")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The current page's URL.
    pub async fn url(&self) -> String {
        self.get("/url")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The visible text of the whole page. A click that submits a form
    /// returns before the next page replaced this one, so a read that finds
    /// the old page's body gone is tried again.
    pub async fn text(&self) -> String {
        roster_testkit::eventually("the page's text", Duration::from_secs(10), || async {
            let body = self
                .try_call(
                    reqwest::Method::POST,
                    "/element",
                    Some(json!({"using": "css selector", "value": "body"})),
                )
                .await
                .ok()?;
            let id = body[ELEMENT].as_str()?.to_owned();
            let text = self
                .try_call(reqwest::Method::GET, &format!("/element/{id}/text"), None)
                .await
                .ok()?;
            text.as_str().map(str::to_owned)
        })
        .await
    }

    /// The first element matching the CSS `selector` (panics if none).
    pub async fn find(&self, selector: &str) -> Element<'_> {
        let found = self
            .post(
                "/element",
                json!({"using": "css selector", "value": selector}),
            )
            .await;
        Element {
            browser: self,
            id: found[ELEMENT]
                .as_str()
                .unwrap_or_else(|| panic!("{selector}: {found}"))
                .to_owned(),
        }
    }

    /// Marks the current document, so [`Browser::wait_for_new_page`] can
    /// tell when another one replaced it.
    async fn mark_page(&self) {
        self.execute("window.__rosterOldPage = true;").await;
    }

    /// Waits until the marked document was replaced and the new one loaded.
    async fn wait_for_new_page(&self) {
        roster_testkit::eventually("the next page", Duration::from_secs(10), || async {
            let state = self
                .try_call(
                    reqwest::Method::POST,
                    "/execute/sync",
                    Some(json!({
                        "script": "return window.__rosterOldPage ? 'old' : document.readyState;",
                        "args": []
                    })),
                )
                .await
                .ok()?;
            (state == "complete").then_some(())
        })
        .await;
    }

    /// The text of the element `selector` finds.
    pub async fn text_of(&self, selector: &str) -> String {
        self.find(selector).await.text().await
    }

    /// Types `text` into the element `selector` finds.
    pub async fn type_into(&self, selector: &str, text: &str) {
        self.find(selector).await.type_text(text).await;
    }

    /// Clicks the element `selector` finds, which loads another page, and
    /// waits for that page.
    pub async fn click_to_load(&self, selector: &str) {
        self.find(selector).await.click_to_load().await;
    }

    /// How many elements match `selector`.
    pub async fn count(&self, selector: &str) -> usize {
        let found = self
            .post(
                "/elements",
                json!({"using": "css selector", "value": selector}),
            )
            .await;
        found.as_array().map_or(0, Vec::len)
    }

    /// Presses a key (a WebDriver key code, e.g. Tab = `\u{E004}`) on
    /// whatever has the focus.
    pub async fn press(&self, key: &str) {
        let actions = json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
            {"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}
        ]}]});
        self.post("/actions", actions).await;
    }

    /// Resizes the window (a phone: 390 × 844).
    pub async fn resize(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({"width": width, "height": height}))
            .await;
    }

    /// The browser's cookie named `name`, as WebDriver describes it.
    pub async fn cookie(&self, name: &str) -> Value {
        self.get(&format!("/cookie/{name}")).await
    }

    /// Saves a PNG of the viewport to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let png = self.get("/screenshot").await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("base64 screenshot"))
            .expect("PNG");
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("screenshot folder");
        std::fs::write(path, bytes).expect("write screenshot");
    }

    /// Runs `script` in the page and returns its result.
    pub async fn execute(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": []}))
            .await
    }
}

impl Element<'_> {
    /// Clicks something that loads another page (a submit button, a link)
    /// and waits for that page.
    pub async fn click_to_load(&self) {
        self.browser.mark_page().await;
        self.click().await;
        self.browser.wait_for_new_page().await;
    }

    pub async fn click(&self) {
        self.browser
            .post(&format!("/element/{}/click", self.id), json!({}))
            .await;
    }

    /// Types `text` into the element.
    pub async fn type_text(&self, text: &str) {
        self.browser
            .post(
                &format!("/element/{}/value", self.id),
                json!({ "text": text }),
            )
            .await;
    }

    pub async fn text(&self) -> String {
        let text = self
            .browser
            .get(&format!("/element/{}/text", self.id))
            .await;
        text.as_str().unwrap_or_default().to_owned()
    }
}

impl Browser {
    /// Ends the session, which closes its Chromium.
    pub async fn quit(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // After quit, or when a test failed before it, the driver and any
        // browser left in its process group go too.
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.wait();
    }
}
