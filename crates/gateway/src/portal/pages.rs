//! The portal's pages and forms. Each handler: the session (or the link),
//! a few gRPC calls on its behalf, one page.

use std::fmt::Write as _;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use roster_proto::admin as pa;
use roster_proto::directory as pd;
use serde::Deserialize;

use super::html::{Chrome, copyable, csrf_field, esc, layout, notice, time};
use super::providers::{PROVIDERS, Provider};
use super::{PortalError, Session, explain};
use crate::observe::CallMeta;
use crate::state::AppState;

type PageResult = Result<Response, PortalError>;

/// Entries the activity page shows at once.
const ACTIVITY_PAGE: i32 = 25;
/// Users or groups shown at once.
const DIRECTORY_PAGE: i32 = 50;

// ---------------------------------------------------------------- links

/// `GET /portal/open/{secret}`: a page whose button opens the session. A GET
/// changes nothing, so mail scanners that follow links cannot use it up.
pub async fn open_page(Path(secret): Path<String>) -> Response {
    let body = format!(
        "<p>This link gives you access to one directory connection: set up your identity \
         provider, manage its tokens and see what it sends. It works once; the session it \
         opens ends after a set time (a working day unless configured otherwise).</p>\
         <form method=\"post\" action=\"/portal/open\">\
         <input type=\"hidden\" name=\"secret\" value=\"{}\">\
         <button type=\"submit\" id=\"open\">Open the portal</button></form>",
        esc(&secret)
    );
    Html(layout("Connect your directory", None, &body)).into_response()
}

#[derive(Deserialize)]
pub struct OpenForm {
    secret: String,
}

/// `POST /portal/open`: exchanges the link for a session cookie.
pub async fn open(
    State(state): State<AppState>,
    call: Option<axum::Extension<CallMeta>>,
    Form(form): Form<OpenForm>,
) -> PageResult {
    use pa::PortalLinkOutcome as O;
    let call = call.map_or_else(CallMeta::generate, |c| c.0);
    let request = state.grpc(
        pa::OpenPortalLinkRequest {
            secret: form.secret,
        },
        &call,
    );
    let reply = state.admin().open_portal_link(request).await?.into_inner();
    let (status, title, text) = match reply.outcome() {
        O::Opened => return Ok(signed_in(&reply)),
        O::AlreadyUsed => (
            StatusCode::GONE,
            "This link was already used",
            "A portal link opens once. If you opened it in this browser, you may still be \
             signed in: <a href=\"/portal\">go to the portal</a>. Otherwise ask the \
             application's administrator for a new link.",
        ),
        O::Expired => (
            StatusCode::GONE,
            "This link has expired",
            "Portal links must be opened before they expire. Ask the application's \
             administrator for a new link.",
        ),
        O::Revoked => (
            StatusCode::GONE,
            "This link was revoked",
            "The application's administrator withdrew this link. Ask them for a new one.",
        ),
        O::Unknown | O::Unspecified => (
            StatusCode::NOT_FOUND,
            "This link is not valid",
            "Check that the whole link was copied, or ask for a new one.",
        ),
    };
    let body = notice("error", &format!("<p>{text}</p>"));
    Ok((status, Html(layout(title, None, &body))).into_response())
}

fn signed_in(reply: &pa::OpenPortalLinkResponse) -> Response {
    let now = chrono::Utc::now().timestamp();
    let max_age = reply
        .session_expires_at
        .as_ref()
        .map_or(0, |t| (t.seconds - now).max(0));
    let mut response = Redirect::to("/portal").into_response();
    if let Ok(cookie) = HeaderValue::from_str(&super::session_cookie_header(
        &reply.session_secret,
        max_age,
    )) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

/// `POST /portal/signout`: ends the session and clears its cookie.
pub async fn sign_out(session: Session, Form(form): Form<CsrfForm>) -> PageResult {
    session.check_csrf(&form.csrf)?;
    let request = session.grpc(pa::EndPortalSessionRequest {
        secret: session.secret.clone(),
    });
    session.state().admin().end_portal_session(request).await?;
    let body = "<p>You are signed out. Open a new portal link to come back.</p>";
    let mut response = Html(layout("Signed out", None, body)).into_response();
    if let Ok(cookie) = HeaderValue::from_str(&super::cleared_cookie_header()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

// ---------------------------------------------------------------- shared

/// The session's directory, and its source when Roster pulls it (LDAP,
/// Active Directory, Google Workspace) instead of receiving SCIM.
pub(super) struct Dir {
    pub info: pa::Directory,
    pub source: Option<pa::DirectorySource>,
}

pub(super) async fn load_directory(session: &Session) -> Result<Dir, PortalError> {
    let directory = session.grpc(pa::GetDirectoryRequest {
        id: session.directory_id.clone(),
    });
    let source = session.grpc(pa::GetDirectorySourceRequest {
        directory_id: session.directory_id.clone(),
    });
    let (mut admin, mut sources) = (session.state().admin(), session.state().admin());
    let (directory, source) = tokio::join!(
        admin.get_directory(directory),
        sources.get_directory_source(source)
    );
    let info = directory?
        .into_inner()
        .directory
        .ok_or_else(|| PortalError::Invalid("the directory no longer exists".into()))?;
    let source = match source {
        Ok(reply) => reply.into_inner().source,
        // A directory without a source receives SCIM from its IdP.
        Err(status) if status.code() == tonic::Code::NotFound => None,
        Err(status) => return Err(status.into()),
    };
    Ok(Dir { info, source })
}

/// Refuses the SCIM-only pages (tokens, the connection test) for a pulled
/// directory: no IdP sends it anything.
fn scim_only(dir: &Dir) -> Result<(), PortalError> {
    match &dir.source {
        Some(source) => Err(PortalError::Invalid(format!(
            "this directory is pulled from {} by Roster: it has no SCIM tokens and no              connection to test; see its sync status instead",
            super::sync::source_name(source.kind)
        ))),
        None => Ok(()),
    }
}

pub(super) fn page(
    session: &Session,
    dir: &Dir,
    current: &str,
    title: &str,
    body: &str,
) -> Response {
    let chrome = Chrome {
        directory: &dir.info.name,
        current,
        csrf: &session.csrf,
        pulled: dir.source.is_some(),
    };
    Html(layout(title, Some(&chrome), body)).into_response()
}

// ---------------------------------------------------------------- set up

/// `GET /portal`: choose the provider, follow its steps, copy the URL.
pub async fn setup(session: Session) -> PageResult {
    let dir = load_directory(&session).await?;
    if let Some(source) = &dir.source {
        let body = super::sync::pulled_setup(source);
        return Ok(page(&session, &dir, "/portal", "Your directory", &body));
    }
    let provider = Provider::of(dir.info.provider);
    let scim_url = session.state().config().scim_base(&session.directory_id);
    let mut body = String::new();
    let _ = write!(
        body,
        "<section aria-labelledby=\"choose\"><h2 id=\"choose\">1. Your identity provider</h2>\
         <form method=\"post\" action=\"/portal/provider\">{csrf}<fieldset>\
         <legend>Which identity provider will send your users and groups?</legend><div class=\"choices\">",
        csrf = csrf_field(&session.csrf)
    );
    for p in &PROVIDERS {
        let checked = if p.kind as i32 == dir.info.provider {
            " checked"
        } else {
            ""
        };
        let _ = write!(
            body,
            "<label class=\"choice\"><input type=\"radio\" name=\"provider\" value=\"{slug}\" \
             id=\"provider-{slug}\"{checked}> {name}</label>",
            slug = p.slug,
            name = esc(p.name)
        );
    }
    let _ = write!(
        body,
        "</div></fieldset><button type=\"submit\" id=\"save-provider\">Save provider</button></form></section>\
         <section aria-labelledby=\"values\"><h2 id=\"values\">2. The values to paste</h2>\
         <p><strong>SCIM base URL</strong> (Okta: SCIM connector base URL; Entra: Tenant URL):</p>{url}\
         <p><strong>Token</strong>: create one on the <a href=\"/portal/tokens\">Tokens</a> page; \
         it is shown once. Paste only the <code>rst_…</code> value, never the word Bearer.</p></section>\
         <section aria-labelledby=\"steps\"><h2 id=\"steps\">3. Steps in {name}</h2>{steps}</section>\
         <section aria-labelledby=\"trouble\"><h2 id=\"trouble\">If the connection test fails</h2>{trouble}\
         <p>The <a href=\"/portal/test\">Test the connection</a> page shows each request as it \
         arrives, with what went wrong and how to fix it.</p></section>",
        url = copyable("scim-url", &scim_url),
        name = esc(provider.name),
        steps = provider.setup_html(),
        trouble = provider.troubleshooting_html(),
    );
    Ok(page(
        &session,
        &dir,
        "/portal",
        "Connect your identity provider",
        &body,
    ))
}

#[derive(Deserialize)]
pub struct ProviderForm {
    csrf: String,
    #[serde(default)]
    provider: String,
}

/// `POST /portal/provider`.
pub async fn choose_provider(session: Session, Form(form): Form<ProviderForm>) -> PageResult {
    session.check_csrf(&form.csrf)?;
    let provider = Provider::by_slug(&form.provider)
        .ok_or_else(|| PortalError::Invalid("choose one of the listed providers".into()))?;
    let request = session.grpc(pa::UpdateDirectoryRequest {
        id: session.directory_id.clone(),
        provider: Some(provider.kind as i32),
        ..Default::default()
    });
    session.state().admin().update_directory(request).await?;
    Ok(Redirect::to("/portal#steps").into_response())
}

// ---------------------------------------------------------------- tokens

#[derive(Deserialize)]
pub struct TokensQuery {
    #[serde(default)]
    done: String,
}

/// `GET /portal/tokens`.
pub async fn tokens(session: Session, Query(query): Query<TokensQuery>) -> PageResult {
    let shown = match query.done.as_str() {
        "revoked" => notice("ok", "<p>Token revoked. The IdP can no longer use it.</p>"),
        _ => String::new(),
    };
    tokens_page(&session, &shown).await
}

async fn tokens_page(session: &Session, top: &str) -> PageResult {
    let dir = load_directory(session).await?;
    scim_only(&dir)?;
    let tokens = live_tokens(session).await?;
    let mut body = top.to_owned();
    body.push_str(
        "<p>Your identity provider authenticates with a token. A connection holds at most two \
         live tokens, so you can <strong>rotate</strong> without a gap: rotate creates a second \
         token; paste it into the IdP, run its connection test, and once <em>Last used</em> shows \
         the new token in use, revoke the old one.</p>",
    );
    body.push_str(&token_table(session, &tokens));
    let _ = write!(
        body,
        "<h2>Create a token</h2><form method=\"post\" action=\"/portal/tokens\" class=\"inline\">{}\
         <label for=\"token-name\">Name</label>\
         <input id=\"token-name\" name=\"name\" maxlength=\"100\" placeholder=\"okta-prod\">\
         <button type=\"submit\" id=\"create-token\">Create token</button></form>",
        csrf_field(&session.csrf)
    );
    Ok(page(session, &dir, "/portal/tokens", "Tokens", &body))
}

/// The directory's tokens that are not revoked.
async fn live_tokens(session: &Session) -> Result<Vec<pa::Token>, PortalError> {
    let request = session.grpc(pa::ListTokensRequest {
        directory_id: session.directory_id.clone(),
        include_revoked: false,
    });
    let reply = session.state().admin().list_tokens(request).await?;
    Ok(reply.into_inner().tokens)
}

fn token_table(session: &Session, tokens: &[pa::Token]) -> String {
    if tokens.is_empty() {
        return "<p id=\"no-tokens\">No live token yet.</p>".to_owned();
    }
    let mut out = String::from(
        "<table id=\"tokens\"><caption>Live tokens (secrets are never shown again)</caption>\
         <thead><tr><th scope=\"col\">Name</th><th scope=\"col\">Starts with</th>\
         <th scope=\"col\">Created</th><th scope=\"col\">Last used</th>\
         <th scope=\"col\">Actions</th></tr></thead><tbody>",
    );
    for t in tokens {
        let form = |action: &str, label: &str| {
            format!(
                "<form method=\"post\" action=\"/portal/tokens/{action}\" class=\"inline\">{}\
                 <input type=\"hidden\" name=\"token_id\" value=\"{id}\">\
                 <button type=\"submit\" class=\"{action}\" aria-label=\"{label} {name}\">{label}</button></form>",
                csrf_field(&session.csrf),
                id = esc(&t.id),
                name = esc(&t.name),
            )
        };
        let _ = write!(
            out,
            "<tr><td>{name}</td><td><code>{prefix}…</code></td><td>{created}</td><td>{used}</td>\
             <td>{rotate} {revoke}</td></tr>",
            name = esc(&t.name),
            prefix = esc(&t.prefix),
            created = time(t.created_at.as_ref()),
            used = t
                .last_used_at
                .as_ref()
                .map_or_else(|| "never".to_owned(), |at| time(Some(at))),
            rotate = form("rotate", "Rotate"),
            revoke = form("revoke", "Revoke"),
        );
    }
    out.push_str("</tbody></table>");
    out
}

#[derive(Deserialize)]
pub struct NameForm {
    csrf: String,
    #[serde(default)]
    name: String,
}

/// `POST /portal/tokens`: the new secret, shown once, on the answer itself
/// (never in a URL).
pub async fn create_token(session: Session, Form(form): Form<NameForm>) -> PageResult {
    session.check_csrf(&form.csrf)?;
    let name = Some(form.name.trim().to_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "portal".to_owned());
    new_token(&session, name, None).await
}

async fn new_token(session: &Session, name: String, replaces: Option<&str>) -> PageResult {
    scim_only(&load_directory(session).await?)?;
    let request = session.grpc(pa::CreateTokenRequest {
        directory_id: session.directory_id.clone(),
        name,
    });
    let created = session
        .state()
        .admin()
        .create_token(request)
        .await?
        .into_inner();
    let then = match replaces {
        Some(old) => format!(
            "<p>Paste it into your IdP in place of <strong>{}</strong> and run its connection \
             test; once the new token shows a <em>Last used</em> time, revoke the old one.</p>",
            esc(old)
        ),
        None => "<p>Paste it into your IdP's token field now.</p>".to_owned(),
    };
    let shown = notice(
        "warn",
        &format!(
            "<p><strong>Copy this token now: it is shown only once.</strong></p>{}{then}",
            copyable("new-token", &created.secret)
        ),
    );
    tokens_page(session, &shown).await
}

#[derive(Deserialize)]
pub struct TokenForm {
    csrf: String,
    token_id: String,
}

/// `POST /portal/tokens/rotate`: a second token, named after the first.
pub async fn rotate_token(session: Session, Form(form): Form<TokenForm>) -> PageResult {
    session.check_csrf(&form.csrf)?;
    let tokens = live_tokens(&session).await?;
    let old = tokens
        .iter()
        .find(|t| t.id == form.token_id)
        .ok_or_else(|| PortalError::Invalid("that token is not live any more".into()))?;
    let today = chrono::Utc::now().format("%Y-%m-%d");
    let name = format!("{} (rotated {today})", old.name);
    new_token(&session, name, Some(&old.name)).await
}

/// `POST /portal/tokens/revoke`.
pub async fn revoke_token(session: Session, Form(form): Form<TokenForm>) -> PageResult {
    session.check_csrf(&form.csrf)?;
    scim_only(&load_directory(&session).await?)?;
    let request = session.grpc(pa::RevokeTokenRequest {
        directory_id: session.directory_id.clone(),
        token_id: form.token_id,
    });
    session.state().admin().revoke_token(request).await?;
    Ok(Redirect::to("/portal/tokens?done=revoked").into_response())
}

// ---------------------------------------------------------------- activity

async fn list_activity(
    session: &Session,
    request: pa::ListActivityRequest,
) -> Result<pa::ListActivityResponse, PortalError> {
    let request = session.grpc(pa::ListActivityRequest {
        directory_id: session.directory_id.clone(),
        ..request
    });
    Ok(session
        .state()
        .admin()
        .list_activity(request)
        .await?
        .into_inner())
}

/// One request as a table row, with its explanation.
fn activity_row(a: &pa::Activity) -> String {
    let e = explain(a.status, &a.scim_type, &a.detail);
    let path = ["v2", "v1"]
        .iter()
        .find_map(|v| {
            a.path
                .strip_prefix(&format!("/scim/{v}/{}", a.directory_id))
        })
        .filter(|p| !p.is_empty())
        .unwrap_or(&a.path);
    let class = match a.status {
        200..=399 => "ok",
        400..=499 => "client",
        _ => "server",
    };
    let detail = if a.detail.is_empty() || a.status == 401 {
        String::new()
    } else {
        format!("<br><small>Roster said: {}</small>", esc(&a.detail))
    };
    let fix = if e.fix.is_empty() {
        String::new()
    } else {
        format!("<br><strong>Fix:</strong> {}", esc(e.fix))
    };
    let scim_type = if a.scim_type.is_empty() {
        String::new()
    } else {
        format!(" <code>{}</code>", esc(&a.scim_type))
    };
    format!(
        "<tr data-id=\"{id}\" class=\"{class}\"><td data-label=\"Time\">{at}</td>\
         <td data-label=\"Sent by\">{agent}</td>\
         <td data-label=\"Request\"><code>{method} {path}</code></td>\
         <td data-label=\"Status\"><span class=\"status\">{status}</span>{scim_type}</td>\
         <td data-label=\"Resource\">{resource}{events}</td>\
         <td data-label=\"What it means\">{what}{fix}{detail}<br><small>Request id {rid} · {ms} ms</small></td></tr>",
        id = a.id,
        at = time(a.time.as_ref()),
        agent = esc(if a.user_agent.is_empty() {
            "—"
        } else {
            &a.user_agent
        }),
        method = esc(&a.method),
        path = esc(path),
        status = a.status,
        resource = esc(&format!("{} {}", a.resource_type, a.resource_id)),
        events = events_list(a),
        what = esc(e.what),
        rid = esc(&a.request_id),
        ms = a.duration_ms,
    )
}

/// The change-log events a request produced, as the applications that
/// follow the directory see them: `user.created @ 1042`.
fn events_list(a: &pa::Activity) -> String {
    if a.events.is_empty() && a.events_omitted == 0 {
        return String::new();
    }
    let mut items: String = a
        .events
        .iter()
        .map(|e| {
            let text = match e.count {
                1 => format!("{} @ {}", e.kind, e.revision),
                n => format!("{n} × {} @ {}–{}", e.kind, e.revision, e.revision + n - 1),
            };
            format!("<li><code>{}</code></li>", esc(&text))
        })
        .collect();
    if a.events_omitted > 0 {
        items.push_str(&format!("<li>and {} more</li>", a.events_omitted));
    }
    format!("<ul class=\"events\" aria-label=\"Events it produced\">{items}</ul>")
}

fn activity_table(id: &str, live: Option<i64>, rows: &str) -> String {
    let live = live.map_or_else(String::new, |after| {
        format!(" data-live=\"/portal/test/rows\" data-after=\"{after}\" aria-live=\"polite\"")
    });
    format!(
        "<div class=\"scroll\"><table id=\"{id}\" class=\"cards\"><thead><tr><th scope=\"col\">Time</th>\
         <th scope=\"col\">Sent by</th><th scope=\"col\">Request</th><th scope=\"col\">Status</th>\
         <th scope=\"col\">Resource and events</th><th scope=\"col\">What it means</th></tr></thead>\
         <tbody{live}>{rows}</tbody></table></div>"
    )
}

#[derive(Deserialize)]
pub struct ActivityQuery {
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    resource: String,
    #[serde(default)]
    page_token: String,
}

const OUTCOMES: [(&str, &str, pa::ActivityOutcome); 4] = [
    ("", "All", pa::ActivityOutcome::Unspecified),
    ("failure", "Failed", pa::ActivityOutcome::Failure),
    ("success", "Succeeded", pa::ActivityOutcome::Success),
    (
        "server-error",
        "Roster errors (5xx)",
        pa::ActivityOutcome::ServerError,
    ),
];
const RESOURCES: [(&str, &str); 5] = [
    ("", "All"),
    ("User", "Users"),
    ("Group", "Groups"),
    ("Bulk", "Bulk"),
    ("Discovery", "Discovery"),
];

/// `GET /portal/activity`: every SCIM request, filtered and paged.
pub async fn activity(session: Session, Query(query): Query<ActivityQuery>) -> PageResult {
    let dir = load_directory(&session).await?;
    let outcome = OUTCOMES
        .iter()
        .find(|(value, ..)| *value == query.outcome)
        .map_or(pa::ActivityOutcome::Unspecified, |(.., o)| *o);
    let reply = list_activity(
        &session,
        pa::ListActivityRequest {
            outcome: outcome as i32,
            resource_type: query.resource.clone(),
            page_size: ACTIVITY_PAGE,
            page_token: query.page_token.clone(),
            ..Default::default()
        },
    )
    .await?;
    let mut body = String::from(
        "<p>Every SCIM request your identity provider sent to this connection, newest first, \
         with what each answer means and how to fix failures on the IdP's side. Request bodies \
         and tokens are never recorded.</p>",
    );
    body.push_str(&filter_form(&query));
    let rows: String = reply.entries.iter().map(activity_row).collect();
    if rows.is_empty() {
        body.push_str("<p id=\"no-activity\">No request matches.</p>");
    } else {
        body.push_str(&activity_table("activity", None, &rows));
    }
    if !reply.next_page_token.is_empty() {
        let _ = write!(
            body,
            "<p><a href=\"/portal/activity?outcome={}&amp;resource={}&amp;page_token={}\" rel=\"next\">Older requests</a></p>",
            esc(&query.outcome),
            esc(&query.resource),
            esc(&reply.next_page_token)
        );
    }
    Ok(page(&session, &dir, "/portal/activity", "Activity", &body))
}

fn filter_form(query: &ActivityQuery) -> String {
    let options = |items: &[(&str, &str)], selected: &str| -> String {
        items
            .iter()
            .map(|(value, label)| {
                let sel = if *value == selected { " selected" } else { "" };
                format!("<option value=\"{value}\"{sel}>{label}</option>")
            })
            .collect()
    };
    let outcomes: Vec<(&str, &str)> = OUTCOMES.iter().map(|(v, l, _)| (*v, *l)).collect();
    format!(
        "<form method=\"get\" action=\"/portal/activity\" class=\"inline filters\">\
         <label for=\"outcome\">Outcome</label><select id=\"outcome\" name=\"outcome\">{}</select>\
         <label for=\"resource\">Resource</label><select id=\"resource\" name=\"resource\">{}</select>\
         <button type=\"submit\">Filter</button></form>",
        options(&outcomes, &query.outcome),
        options(&RESOURCES, &query.resource),
    )
}

/// `GET /portal/test`: the newest requests, and (with the script) new ones
/// as they arrive.
pub async fn test(session: Session) -> PageResult {
    let dir = load_directory(&session).await?;
    scim_only(&dir)?;
    let provider = Provider::of(dir.info.provider);
    let reply = list_activity(
        &session,
        pa::ListActivityRequest {
            page_size: 10,
            ..Default::default()
        },
    )
    .await?;
    let newest = reply.entries.first().map_or(0, |a| a.id);
    let rows: String = reply.entries.iter().map(activity_row).collect();
    let body = format!(
        "<p>Run your identity provider's connection test now ({name}: see step 3 of \
         <a href=\"/portal#steps\">Set up</a>). Each request it sends appears below as it \
         arrives, newest first, with its outcome.</p>\
         <p class=\"nojs\"><a href=\"/portal/test\">Refresh</a> to see new requests.</p>\
         <p id=\"live-status\" class=\"live\" hidden>Watching for new requests…</p>{table}",
        name = esc(provider.name),
        table = activity_table("live-activity", Some(newest), &rows),
    );
    Ok(page(
        &session,
        &dir,
        "/portal/test",
        "Test the connection",
        &body,
    ))
}

#[derive(Deserialize)]
pub struct RowsQuery {
    #[serde(default)]
    after: i64,
}

/// `GET /portal/test/rows?after=<id>`: the rows of requests after `after`,
/// newest first, for the test page's script.
pub async fn test_rows(session: Session, Query(query): Query<RowsQuery>) -> PageResult {
    let reply = list_activity(
        &session,
        pa::ListActivityRequest {
            after_id: query.after.max(0),
            page_size: 100,
            ..Default::default()
        },
    )
    .await?;
    let rows: String = reply.entries.iter().rev().map(activity_row).collect();
    let mut response = Html(rows).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

// ---------------------------------------------------------------- directory

#[derive(Deserialize)]
pub struct DirectoryQuery {
    #[serde(default)]
    users_page: String,
    #[serde(default)]
    groups_page: String,
}

fn list_options(page_token: &str) -> Option<pd::ListOptions> {
    Some(pd::ListOptions {
        count: DIRECTORY_PAGE,
        page_token: page_token.to_owned(),
        omit_cursor: true,
        ..Default::default()
    })
}

/// `GET /portal/directory`: the users and groups the IdP provisioned.
pub async fn directory_view(session: &Session, query: &DirectoryQuery) -> PageResult {
    let dir = load_directory(session).await?;
    let client = session.state().directory();
    let users = client
        .list_users(session.grpc(pd::ListUsersRequest {
            directory_id: session.directory_id.clone(),
            options: list_options(&query.users_page),
        }))
        .await?
        .into_inner();
    let groups = client
        .list_groups(session.grpc(pd::ListGroupsRequest {
            directory_id: session.directory_id.clone(),
            options: list_options(&query.groups_page),
            exclude_members: true,
        }))
        .await?
        .into_inner();
    let mut body = format!("<h2 id=\"users\">Users ({})</h2>", users.total_results);
    body.push_str(&users_table(&users.users));
    more_link(&mut body, "users", &users.next_page_token);
    let _ = write!(
        body,
        "<h2 id=\"groups\">Groups ({})</h2>",
        groups.total_results
    );
    body.push_str(&groups_table(&groups.groups));
    more_link(&mut body, "groups", &groups.next_page_token);
    Ok(page(
        session,
        &dir,
        "/portal/directory",
        "Users and groups",
        &body,
    ))
}

/// `GET /portal/directory`.
pub async fn directory(session: Session, Query(query): Query<DirectoryQuery>) -> PageResult {
    directory_view(&session, &query).await
}

/// The link to the next page of the directory page's `users` or `groups`.
fn more_link(body: &mut String, list: &str, next_page_token: &str) {
    if !next_page_token.is_empty() {
        let _ = write!(
            body,
            "<p><a href=\"/portal/directory?{list}_page={}#{list}\">More {list}</a></p>",
            esc(next_page_token)
        );
    }
}

fn users_table(users: &[pd::User]) -> String {
    if users.is_empty() {
        return "<p id=\"no-users\">No user provisioned yet.</p>".to_owned();
    }
    let mut out = String::from(
        "<div class=\"scroll\"><table id=\"user-list\"><thead><tr><th scope=\"col\">userName</th>\
         <th scope=\"col\">Name</th><th scope=\"col\">State</th><th scope=\"col\">Groups</th>\
         <th scope=\"col\">Last change</th></tr></thead><tbody>",
    );
    for u in users {
        let name = if u.display_name.is_empty() {
            format!("{} {}", u.given_name, u.family_name)
        } else {
            u.display_name.clone()
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&u.user_name),
            esc(name.trim()),
            if u.active { "Active" } else { "Inactive" },
            u.group_ids.len(),
            time(u.meta.as_ref().and_then(|m| m.last_modified.as_ref())),
        );
    }
    out.push_str("</tbody></table></div>");
    out
}

fn groups_table(groups: &[pd::Group]) -> String {
    if groups.is_empty() {
        return "<p id=\"no-groups\">No group provisioned yet.</p>".to_owned();
    }
    let mut out = String::from(
        "<div class=\"scroll\"><table id=\"group-list\"><thead><tr><th scope=\"col\">Name</th>\
         <th scope=\"col\">Members</th><th scope=\"col\">Last change</th></tr></thead><tbody>",
    );
    for g in groups {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&g.display_name),
            g.member_count,
            time(g.meta.as_ref().and_then(|m| m.last_modified.as_ref())),
        );
    }
    out.push_str("</tbody></table></div>");
    out
}

// ---------------------------------------------------------------- mappings

/// `GET /portal/mappings`: the directory's attribute mappings.
pub async fn mappings(session: Session) -> PageResult {
    let dir = load_directory(&session).await?;
    let mut body = String::from(
        "<p>Attributes your IdP sends that have no standard place can be mapped onto a \
         normalized field (<code>department</code>, <code>title</code>, \
         <code>employee_number</code>, …) or kept as a custom attribute \
         (<code>custom:&lt;key&gt;</code>). Changes apply to requests received from now on.</p>",
    );
    if dir.info.attribute_mappings.is_empty() {
        body.push_str("<p id=\"no-mappings\">No mapping yet.</p>");
    } else {
        body.push_str(
            "<table id=\"mapping-list\"><thead><tr><th scope=\"col\">IdP attribute</th>\
             <th scope=\"col\">Becomes</th><th scope=\"col\">Actions</th></tr></thead><tbody>",
        );
        for m in &dir.info.attribute_mappings {
            let _ = write!(
                body,
                "<tr><td><code>{source}</code></td><td><code>{target}</code></td><td>\
                 <form method=\"post\" action=\"/portal/mappings/remove\" class=\"inline\">{csrf}\
                 <input type=\"hidden\" name=\"source\" value=\"{source}\">\
                 <button type=\"submit\" aria-label=\"Remove the mapping of {source}\">Remove</button>\
                 </form></td></tr>",
                source = esc(&m.source),
                target = esc(&m.target),
                csrf = csrf_field(&session.csrf),
            );
        }
        body.push_str("</tbody></table>");
    }
    let _ = write!(
        body,
        "<h2>Add or change a mapping</h2><form method=\"post\" action=\"/portal/mappings\">{}\
         <p><label for=\"source\">IdP attribute (SCIM path)</label>\
         <input id=\"source\" name=\"source\" required size=\"60\" \
         placeholder=\"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter\"></p>\
         <p><label for=\"target\">Becomes</label>\
         <input id=\"target\" name=\"target\" required placeholder=\"custom:cost_center\"></p>\
         <button type=\"submit\">Save mapping</button></form>",
        csrf_field(&session.csrf)
    );
    Ok(page(
        &session,
        &dir,
        "/portal/mappings",
        "Attribute mapping",
        &body,
    ))
}

#[derive(Deserialize)]
pub struct MappingForm {
    csrf: String,
    source: String,
    #[serde(default)]
    target: String,
}

/// `POST /portal/mappings`: adds a mapping, replacing one of the same source.
pub async fn add_mapping(session: Session, Form(form): Form<MappingForm>) -> PageResult {
    session.check_csrf(&form.csrf)?;
    let source = form.source.trim().to_owned();
    let target = form.target.trim().to_owned();
    edit_mappings(&session, &source, Some(target)).await
}

/// `POST /portal/mappings/remove`.
pub async fn remove_mapping(session: Session, Form(form): Form<MappingForm>) -> PageResult {
    session.check_csrf(&form.csrf)?;
    edit_mappings(&session, form.source.trim(), None).await
}

/// Replaces the mapping of `source` with `target` (none: removes it), the
/// way `roster admin map-attribute` does.
async fn edit_mappings(session: &Session, source: &str, target: Option<String>) -> PageResult {
    let dir = load_directory(session).await?;
    let mut mappings: Vec<pa::AttributeMapping> = dir
        .info
        .attribute_mappings
        .into_iter()
        .filter(|m| !m.source.eq_ignore_ascii_case(source))
        .collect();
    if let Some(target) = target {
        mappings.push(pa::AttributeMapping {
            source: source.to_owned(),
            target,
        });
    }
    let request = session.grpc(pa::UpdateDirectoryRequest {
        id: session.directory_id.clone(),
        attribute_mappings: mappings,
        replace_attribute_mappings: true,
        ..Default::default()
    });
    session.state().admin().update_directory(request).await?;
    Ok(Redirect::to("/portal/mappings").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_links_name_their_list_and_escape_the_token() {
        let mut body = String::new();
        more_link(&mut body, "users", "");
        assert_eq!(body, "", "the last page has no link");
        more_link(&mut body, "groups", "a&b");
        assert_eq!(
            body,
            "<p><a href=\"/portal/directory?groups_page=a&amp;b#groups\">More groups</a></p>"
        );
    }
}
