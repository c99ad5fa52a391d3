//! The admin portal (docs/portal.md): server-rendered pages under `/portal`
//! where a customer's IT admin connects their identity provider to one
//! directory and sees what it sent.
//!
//! Access: a single-use link (`/portal/open/{secret}`, made with
//! `AdminService.CreatePortalLink`) is exchanged, by a POST from the page it
//! opens (so a link scanner that only GETs cannot use it up), for a session
//! cookie: HttpOnly, Secure, SameSite=Strict, scoped to `/portal`, bounded
//! by the session's lifetime. Every page checks the session with
//! `AuthenticatePortalSession`; every form carries a CSRF token derived from
//! the session secret and checked in constant time. Responses carry a
//! strict Content-Security-Policy (own scripts and styles only), no-store
//! and no-referrer (a link's secret must not leak through `Referer`).
//!
//! The gateway acts for the session with its own credential, so with an
//! internal secret the gateway's credential needs the admin scope for the
//! portal's token and directory calls.

mod explain;
mod html;
mod pages;
mod providers;
mod sync;

use axum::Router;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use roster_proto::admin::AuthenticatePortalSessionRequest;
use sha2::{Digest, Sha256};

use crate::error::GatewayError;
use crate::observe::CallMeta;
use crate::state::AppState;

pub use explain::{Explanation, explain};

/// The session cookie's name.
pub const COOKIE: &str = "roster_portal";

/// The strict policy: nothing but this origin's own files, no inline
/// script or style, no framing, forms only to this origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The `/portal` routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/portal", get(pages::setup))
        .route("/portal/open/{secret}", get(pages::open_page))
        .route("/portal/open", post(pages::open))
        .route("/portal/provider", post(pages::choose_provider))
        .route(
            "/portal/tokens",
            get(pages::tokens).post(pages::create_token),
        )
        .route("/portal/tokens/rotate", post(pages::rotate_token))
        .route("/portal/tokens/revoke", post(pages::revoke_token))
        .route("/portal/test", get(pages::test))
        .route("/portal/test/rows", get(pages::test_rows))
        .route("/portal/sync", get(sync::sync))
        .route("/portal/activity", get(pages::activity))
        .route("/portal/directory", get(pages::directory))
        .route(
            "/portal/mappings",
            get(pages::mappings).post(pages::add_mapping),
        )
        .route("/portal/mappings/remove", post(pages::remove_mapping))
        .route("/portal/signout", post(pages::sign_out))
        .route("/portal/static/portal.css", get(stylesheet))
        .route("/portal/static/portal.js", get(script))
        .layer(from_fn(security_headers))
}

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let set = |headers: &mut HeaderMap, name, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(headers, header::CONTENT_SECURITY_POLICY, CSP);
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, header::CACHE_CONTROL, "no-store");
    }
    response
}

async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", include_str!("portal.css"))
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", include_str!("portal.js"))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    response
}

/// Why a portal request failed; rendered once, as a page, here.
#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    /// No cookie, or its session ended (expired, revoked, signed out).
    #[error("no portal session")]
    NoSession,
    /// A form without the session's CSRF token.
    #[error("the form's CSRF token is missing or wrong")]
    Csrf,
    /// A form value the portal cannot use.
    #[error("{0}")]
    Invalid(String),
    /// The directory service refused or failed.
    #[error(transparent)]
    Upstream(#[from] GatewayError),
}

impl From<tonic::Status> for PortalError {
    fn from(status: tonic::Status) -> Self {
        match status.code() {
            // The directory service's words for a refused request are meant
            // for its caller ("at most two live tokens", "not found").
            tonic::Code::InvalidArgument
            | tonic::Code::NotFound
            | tonic::Code::FailedPrecondition
            | tonic::Code::ResourceExhausted
            | tonic::Code::AlreadyExists => Self::Invalid(status.message().to_owned()),
            _ => Self::Upstream(GatewayError::from(status)),
        }
    }
}

impl IntoResponse for PortalError {
    fn into_response(self) -> Response {
        let (status, title, body) = match &self {
            Self::NoSession => (
                StatusCode::UNAUTHORIZED,
                "Your session has ended",
                "<p>Portal sessions last a limited time (a working day unless configured \
                 otherwise) and end when you sign out. Ask the application's administrator \
                 for a new portal link.</p>"
                    .to_owned(),
            ),
            Self::Csrf => (
                StatusCode::FORBIDDEN,
                "This form has expired",
                "<p>Go back, reload the page and submit the form again.</p>".to_owned(),
            ),
            Self::Invalid(message) => (
                StatusCode::BAD_REQUEST,
                "That did not work",
                format!(
                    "{}<p><a href=\"/portal\">Back to the portal</a></p>",
                    html::notice("error", &html::esc(message))
                ),
            ),
            Self::Upstream(error) => {
                tracing::warn!(%error, "portal request failed");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Temporarily unavailable",
                    "<p>The directory service did not answer. Try again in a moment.</p>"
                        .to_owned(),
                )
            }
        };
        (status, Html(html::layout(title, None, &body))).into_response()
    }
}

/// A request's valid portal session: the one directory it may see.
#[derive(Clone)]
pub struct Session {
    pub directory_id: String,
    /// The CSRF token of this session's forms.
    pub csrf: String,
    secret: String,
    pub call: CallMeta,
    state: AppState,
}

impl Session {
    /// The shared state.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// A gRPC request on behalf of this session.
    pub fn grpc<T>(&self, message: T) -> tonic::Request<T> {
        self.state.grpc(message, &self.call)
    }

    /// Rejects a form whose CSRF token is not this session's.
    pub fn check_csrf(&self, presented: &str) -> Result<(), PortalError> {
        use subtle::ConstantTimeEq;
        let same = presented.len() == self.csrf.len()
            && bool::from(presented.as_bytes().ct_eq(self.csrf.as_bytes()));
        same.then_some(()).ok_or(PortalError::Csrf)
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = PortalError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let secret = session_cookie(&parts.headers).ok_or(PortalError::NoSession)?;
        let call = parts
            .extensions
            .get::<CallMeta>()
            .cloned()
            .unwrap_or_else(CallMeta::generate);
        let request = state.grpc(
            AuthenticatePortalSessionRequest {
                secret: secret.clone(),
            },
            &call,
        );
        let session = match state.admin().authenticate_portal_session(request).await {
            Ok(reply) => reply.into_inner(),
            Err(status) if status.code() == tonic::Code::Unauthenticated => {
                return Err(PortalError::NoSession);
            }
            Err(status) => return Err(PortalError::Upstream(status.into())),
        };
        Ok(Session {
            directory_id: session.directory_id,
            csrf: csrf_token(&secret),
            secret,
            call,
            state: state.clone(),
        })
    }
}

/// The session secret from the `Cookie` header(s).
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|v| !v.is_empty())
}

/// The CSRF token of a session: a hash of its secret (so it needs no
/// storage, and knowing it reveals nothing of the cookie).
fn csrf_token(session_secret: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"roster-portal-csrf\0")
        .chain_update(session_secret.as_bytes())
        .finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The `Set-Cookie` value of a new session lasting `max_age_secs`.
fn session_cookie_header(secret: &str, max_age_secs: i64) -> String {
    format!(
        "{COOKIE}={secret}; Path=/portal; Max-Age={max_age_secs}; HttpOnly; Secure; SameSite=Strict"
    )
}

/// The `Set-Cookie` value that removes the session cookie.
fn cleared_cookie_header() -> String {
    format!("{COOKIE}=; Path=/portal; Max-Age=0; HttpOnly; Secure; SameSite=Strict")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; roster_portal=rps_x; b=2"),
        );
        assert_eq!(session_cookie(&headers).as_deref(), Some("rps_x"));
        headers.insert(header::COOKIE, HeaderValue::from_static("roster_portal="));
        assert_eq!(session_cookie(&headers), None);
    }

    #[test]
    fn cookies_are_http_only_secure_and_strict() {
        let set = session_cookie_header("rps_x", 60);
        for part in [
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Path=/portal",
            "Max-Age=60",
        ] {
            assert!(set.contains(part), "{set}");
        }
        assert!(cleared_cookie_header().contains("Max-Age=0"));
    }

    #[test]
    fn csrf_tokens_are_per_session_and_not_the_secret() {
        let a = csrf_token("rps_a");
        assert_eq!(a.len(), 32);
        assert_ne!(a, csrf_token("rps_b"));
        assert!(!a.contains("rps_a"));
    }
}
