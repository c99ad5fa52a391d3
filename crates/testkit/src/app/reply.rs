use reqwest::header::HeaderMap;
use serde_json::Value;

/// One HTTP answer, read completely. `body` is `Value::Null` when the body
/// is empty or not JSON; `text` keeps it as sent, for messages and for
/// tests of malformed input.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    /// Reads `response` to the end.
    pub async fn read(response: reqwest::Response) -> Result<Reply, reqwest::Error> {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Reply {
            status,
            headers,
            body,
            text,
        })
    }

    /// Reads an answer of the gateway, which must be SCIM JSON.
    pub async fn scim(response: reqwest::Response) -> Reply {
        let reply = Self::read(response).await.expect("response body");
        reply.assert_scim_json();
        reply
    }

    /// Panics unless a non-empty body is JSON sent as `application/scim+json`
    /// (RFC 7644 §3.1), as every answer of the gateway must be.
    pub fn assert_scim_json(&self) {
        if self.text.is_empty() {
            return;
        }
        let content_type = self.header("content-type").unwrap_or("");
        assert!(
            content_type.starts_with("application/scim+json"),
            "content type {content_type}; body {}",
            truncated(&self.text)
        );
        assert!(
            !self.body.is_null(),
            "body is not JSON: {}",
            truncated(&self.text)
        );
    }

    /// Panics with the whole answer unless the status is `expected`.
    pub fn expect(self, expected: u16, what: &str) -> Self {
        assert_eq!(self.status, expected, "{what}: body {}", self.text);
        self
    }

    /// Panics unless the status is 2xx (IdPs accept 200 and 204 for PATCH).
    pub fn expect_success(self, what: &str) -> Self {
        assert!(
            (200..300).contains(&self.status),
            "{what}: status {}; body: {}",
            self.status,
            self.text
        );
        self
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `id` of the returned resource.
    pub fn id(&self) -> String {
        self.body["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no id in {}", self.text))
            .to_string()
    }

    /// The body's `scimType` (empty when absent).
    pub fn scim_type(&self) -> &str {
        self.body["scimType"].as_str().unwrap_or("")
    }

    /// The `Resources` of a ListResponse (empty when absent, as RFC 7644
    /// allows for zero results).
    pub fn resources(&self) -> Vec<Value> {
        self.body["Resources"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The text at `key` of each element of the array `list` (e.g. every
    /// bulk operation's `status`); panics where one is missing or not text.
    pub fn texts(&self, list: &str, key: &str) -> Vec<String> {
        let items = self.body[list].as_array();
        let items = items.unwrap_or_else(|| panic!("no array {list}: {}", self.text));
        items
            .iter()
            .map(|item| match item[key].as_str() {
                Some(text) => text.to_owned(),
                None => panic!("{list}[].{key} is not text: {item}"),
            })
            .collect()
    }

    /// `totalResults`, `itemsPerPage` and `startIndex` of a ListResponse.
    pub fn paging(&self) -> [Option<i64>; 3] {
        ["totalResults", "itemsPerPage", "startIndex"].map(|key| self.body[key].as_i64())
    }

    /// `totalResults` of a ListResponse, which IdPs require to be a JSON integer.
    pub fn total_results(&self) -> i64 {
        self.body["totalResults"]
            .as_i64()
            .unwrap_or_else(|| panic!("totalResults is not an integer: {}", self.text))
    }
}

/// At most 300 characters of `text`, for assertion messages.
pub fn truncated(text: &str) -> String {
    text.chars().take(300).collect()
}
