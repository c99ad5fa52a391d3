//! Google Workspace through the Admin SDK Directory API (read-only), with a
//! service account and domain-wide delegation: a JWT assertion signed with
//! the account's key (RS256) is exchanged for an access token acting as an
//! admin of the domain (`sub`), cached until shortly before it expires.
//!
//! The API has no delta query for users or groups, so a sync is a paged
//! full read (`users.list` 500 a page, `groups.list` and `members.list`
//! 200) and the diff writes only what changed. Suspended and archived users
//! are inactive. Quota answers (403 `userRateLimitExceeded`,
//! `rateLimitExceeded`, `quotaExceeded`, and 429) back off.
//! docs/connectors/google.md cites the pages this follows.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use roster_store::{Email, UserFields};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use crate::error::SourceError;
use crate::snapshot::{Mappings, Source, SourceGroup, SourceMember, SourceSnapshot, SourceUser};

/// The read-only Directory API scopes the delegation must grant.
pub const SCOPES: &str = "https://www.googleapis.com/auth/admin.directory.user.readonly \
https://www.googleapis.com/auth/admin.directory.group.readonly \
https://www.googleapis.com/auth/admin.directory.group.member.readonly";

const USERS_PAGE: &str = "500";
const GROUPS_PAGE: &str = "200";
/// A cached token is replaced this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(300);

/// The non-secret settings of a Google Workspace source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GoogleSettings {
    /// A super admin (or an admin with read rights on users and groups) the
    /// service account acts as.
    pub admin_email: String,
    /// `my_customer` (the admin's account) or a customer id.
    pub customer: String,
    /// Overridable for tests; Google's endpoints by default.
    pub token_url: String,
    pub api_base: String,
}

impl Default for GoogleSettings {
    fn default() -> Self {
        Self {
            admin_email: String::new(),
            customer: "my_customer".into(),
            token_url: "https://oauth2.googleapis.com/token".into(),
            api_base: "https://admin.googleapis.com".into(),
        }
    }
}

impl GoogleSettings {
    pub fn validate(&self) -> Result<(), SourceError> {
        if !self.admin_email.contains('@') {
            return Err(SourceError::Settings("admin_email is required".into()));
        }
        Ok(())
    }
}

/// The service-account key file's fields Roster uses.
#[derive(Deserialize)]
struct ServiceAccountKey {
    client_email: String,
    private_key: String,
}

#[derive(Clone)]
struct Token {
    value: String,
    until: Instant,
}

/// Access tokens by (service account, admin, token endpoint), shared by
/// the runs of this process: a source is built anew for every sync, and a
/// token lives an hour.
static TOKENS: LazyLock<Mutex<HashMap<String, Token>>> = LazyLock::new(Default::default);

/// A Google Workspace domain.
pub struct GoogleSource {
    settings: GoogleSettings,
    client_email: String,
    key: RsaKeyPair,
    http: reqwest::Client,
    mappings: Mappings,
}

impl std::fmt::Debug for GoogleSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleSource")
            .field("client_email", &self.client_email)
            .finish_non_exhaustive()
    }
}

impl GoogleSource {
    /// `key_json`: the service account's JSON key file; `mappings`: the
    /// directory's, applied to each User resource.
    pub fn new(
        settings: GoogleSettings,
        key_json: &str,
        mappings: Mappings,
    ) -> Result<Self, SourceError> {
        settings.validate()?;
        let bad = |what: &str| SourceError::Settings(format!("service-account key: {what}"));
        let key: ServiceAccountKey =
            serde_json::from_str(key_json).map_err(|_| bad("not a JSON key file"))?;
        let der = pem_body(&key.private_key).ok_or_else(|| bad("no PKCS#8 private key"))?;
        let pair = RsaKeyPair::from_pkcs8(&der).map_err(|_| bad("not an RSA PKCS#8 key"))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SourceError::Unavailable(e.to_string()))?;
        Ok(Self {
            settings,
            client_email: key.client_email,
            key: pair,
            http,
            mappings,
        })
    }

    /// The signed assertion (RFC 7523) for the token endpoint.
    fn assertion(&self) -> Result<String, SourceError> {
        let now = chrono::Utc::now().timestamp();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = serde_json::json!({
            "iss": self.client_email,
            "sub": self.settings.admin_email,
            "scope": SCOPES,
            "aud": self.settings.token_url,
            "iat": now,
            "exp": now + 3600,
        });
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let input = format!("{header}.{claims}");
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                input.as_bytes(),
                &mut sig,
            )
            .map_err(|_| {
                SourceError::Settings("cannot sign with the service-account key".into())
            })?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }

    /// The cached access token, or a new one.
    fn cache_key(&self) -> String {
        format!(
            "{}|{}|{}",
            self.client_email, self.settings.admin_email, self.settings.token_url
        )
    }

    fn tokens() -> std::sync::MutexGuard<'static, HashMap<String, Token>> {
        TOKENS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn token(&self) -> Result<String, SourceError> {
        let cached = Self::tokens().get(&self.cache_key()).cloned();
        if let Some(t) = cached.filter(|t| t.until > Instant::now() + TOKEN_MARGIN) {
            return Ok(t.value);
        }
        let form = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", &self.assertion()?),
        ];
        let response = self
            .http
            .post(&self.settings.token_url)
            .form(&form)
            .send()
            .await
            .map_err(unavailable)?;
        let status = response.status();
        let body: Value = response.json().await.map_err(unavailable)?;
        if !status.is_success() {
            // invalid_grant / unauthorized_client: the delegation or key is wrong.
            return Err(SourceError::Unauthorized(format!(
                "token endpoint answered {status}: {}",
                body["error"].as_str().unwrap_or("")
            )));
        }
        let value = body["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let expires_in = body["expires_in"].as_u64().unwrap_or(3600);
        let token = Token {
            value: value.clone(),
            until: Instant::now() + Duration::from_secs(expires_in),
        };
        Self::tokens().insert(self.cache_key(), token);
        Ok(value)
    }

    fn forget_token(&self) {
        Self::tokens().remove(&self.cache_key());
    }

    /// Every item of a paged list (`items` is the list's field).
    async fn list(
        &self,
        path: &str,
        query: &[(&str, &str)],
        items: &str,
    ) -> Result<Vec<Value>, SourceError> {
        let url = format!("{}/admin/directory/v1/{path}", self.settings.api_base);
        let mut all = Vec::new();
        let mut page_token = String::new();
        loop {
            let mut q: Vec<(&str, &str)> = query.to_vec();
            if !page_token.is_empty() {
                q.push(("pageToken", &page_token));
            }
            let page = self.get(&url, &q).await?;
            if let Some(list) = page[items].as_array() {
                all.extend(list.iter().cloned());
            }
            match page["nextPageToken"].as_str() {
                Some(next) if !next.is_empty() => page_token = next.to_string(),
                _ => return Ok(all),
            }
        }
    }

    /// One GET, retried once with a new token when the token was refused.
    async fn get(&self, url: &str, query: &[(&str, &str)]) -> Result<Value, SourceError> {
        for attempt in 0..2 {
            let token = self.token().await?;
            let response = self
                .http
                .get(url)
                .query(query)
                .bearer_auth(token)
                .send()
                .await
                .map_err(unavailable)?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .map(Duration::from_secs);
            let body: Value = response.json().await.unwrap_or(Value::Null);
            match status {
                200 => return Ok(body),
                401 if attempt == 0 => self.forget_token(),
                _ => return Err(api_error(status, &body, retry_after)),
            }
        }
        Err(SourceError::Unauthorized(
            "the access token was refused twice".into(),
        ))
    }

    /// The custom schemas the mappings read (`customSchemas.<schema>.…`):
    /// `users.list` returns those only with `projection=custom` and the
    /// schema named in `customFieldMask` (or with `projection=full`, every
    /// schema — more than Roster needs).
    fn custom_schemas(&self) -> Vec<String> {
        let mut schemas: Vec<String> = self
            .mappings
            .sources()
            .filter_map(|path| match path.names()[..] {
                [top, schema, ..] if top.eq_ignore_ascii_case("customSchemas") => {
                    Some(schema.to_string())
                }
                _ => None,
            })
            .collect();
        schemas.sort();
        schemas.dedup();
        schemas
    }

    fn user_of(&self, value: &Value) -> Option<SourceUser> {
        let id = value["id"].as_str()?.to_string();
        let primary = value["primaryEmail"].as_str()?.to_string();
        let text = |v: &Value| v.as_str().map(str::to_owned);
        let mut emails = vec![Email {
            value: primary.clone(),
            r#type: "work".into(),
            primary: true,
        }];
        for alias in value["aliases"].as_array().into_iter().flatten() {
            if let Some(alias) = alias.as_str() {
                emails.push(Email {
                    value: alias.into(),
                    r#type: "other".into(),
                    primary: false,
                });
            }
        }
        let org = value["organizations"].as_array().and_then(|o| {
            o.iter()
                .find(|o| o["primary"].as_bool() == Some(true))
                .or(o.first())
        });
        let inactive =
            value["suspended"].as_bool() == Some(true) || value["archived"].as_bool() == Some(true);
        let mut custom = std::collections::BTreeMap::new();
        if let Some(unit) = value["orgUnitPath"].as_str() {
            custom.insert("orgUnitPath".to_string(), unit.to_string());
        }
        let mut fields = UserFields {
            user_name: primary,
            external_id: Some(id.clone()),
            active: !inactive,
            display_name: text(&value["name"]["fullName"]),
            given_name: text(&value["name"]["givenName"]),
            family_name: text(&value["name"]["familyName"]),
            emails,
            title: org.and_then(|o| text(&o["title"])),
            department: org.and_then(|o| text(&o["department"])),
            custom_attributes: custom,
            ..UserFields::default()
        };
        self.mappings.apply(value, &mut fields);
        Some(SourceUser {
            external_id: id,
            fields,
        })
    }
}

#[async_trait::async_trait]
impl Source for GoogleSource {
    #[tracing::instrument(skip(self), fields(client = %self.client_email))]
    async fn read(&self) -> Result<SourceSnapshot, SourceError> {
        let customer = self.settings.customer.as_str();
        let mut query = vec![("customer", customer), ("maxResults", USERS_PAGE)];
        let mask = self.custom_schemas().join(",");
        if mask.is_empty() {
            query.push(("projection", "basic"));
        } else {
            query.extend([("projection", "custom"), ("customFieldMask", &mask)]);
        }
        let users = self.list("users", &query, "users").await?;
        let users: Vec<SourceUser> = users.iter().filter_map(|u| self.user_of(u)).collect();
        let groups = self
            .list(
                "groups",
                &[("customer", customer), ("maxResults", GROUPS_PAGE)],
                "groups",
            )
            .await?;
        let mut out = Vec::with_capacity(groups.len());
        for group in &groups {
            let (Some(id), Some(name)) = (group["id"].as_str(), group["name"].as_str()) else {
                continue;
            };
            let path = format!("groups/{id}/members");
            let members = self
                .list(&path, &[("maxResults", GROUPS_PAGE)], "members")
                .await?;
            out.push(SourceGroup {
                external_id: id.to_string(),
                display_name: name.to_string(),
                // CUSTOMER members ("everyone in the domain") and external
                // addresses have no user in the snapshot: the diff drops them.
                members: members
                    .iter()
                    .filter_map(|m| {
                        let id = m["id"].as_str()?.to_string();
                        match m["type"].as_str() {
                            Some("GROUP") => Some(SourceMember::Group(id)),
                            Some("USER") => Some(SourceMember::User(id)),
                            _ => None,
                        }
                    })
                    .collect(),
            });
        }
        tracing::info!(users = users.len(), groups = out.len(), "source read");
        Ok(SourceSnapshot { users, groups: out })
    }
}

/// The Directory API's error body: `{"error": {"code", "message",
/// "errors": [{"reason", …}]}}`.
fn api_error(status: u16, body: &Value, retry_after: Option<Duration>) -> SourceError {
    let reason = body["error"]["errors"][0]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let message = body["error"]["message"].as_str().unwrap_or_default();
    let rate_limited = matches!(
        reason.as_str(),
        "userRateLimitExceeded" | "rateLimitExceeded" | "quotaExceeded"
    );
    match status {
        429 => SourceError::RateLimited {
            reason,
            retry_after,
        },
        403 if rate_limited => SourceError::RateLimited {
            reason,
            retry_after,
        },
        401 | 403 => SourceError::Unauthorized(format!("{status} {reason}: {message}")),
        _ => SourceError::Unavailable(format!("{status} {reason}: {message}")),
    }
}

fn unavailable(e: reqwest::Error) -> SourceError {
    // Without the URL: it may carry a page token.
    SourceError::Unavailable(e.without_url().to_string())
}

/// The DER inside a `-----BEGIN PRIVATE KEY-----` PEM block.
fn pem_body(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN PRIVATE KEY-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    STANDARD.decode(body.trim()).ok()
}
