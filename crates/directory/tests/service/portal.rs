//! The admin portal's side of AdminService through real gRPC on a real
//! PostgreSQL: how long a session lasts (docs/portal.md).

use std::time::Duration;

use roster_proto::admin::*;
use roster_testkit::app::*;
use tonic::Code;

/// Creates a link for a new directory, valid for five minutes, and opens
/// it; returns the session's secret and expiry.
async fn open_session(env: &mut Env) -> (String, prost_types::Timestamp) {
    let directory_id = env.directory("portal").await;
    let link = env
        .admin
        .create_portal_link(CreatePortalLinkRequest {
            directory_id,
            expires_in_seconds: 300,
        })
        .await
        .expect("link")
        .into_inner();
    let opened = env
        .admin
        .open_portal_link(OpenPortalLinkRequest {
            secret: link.secret,
        })
        .await
        .expect("open")
        .into_inner();
    assert_eq!(opened.outcome, PortalLinkOutcome::Opened as i32);
    (
        opened.session_secret,
        opened.session_expires_at.expect("expiry"),
    )
}

async fn authenticate(env: &mut Env, secret: &str) -> Result<(), tonic::Status> {
    env.admin
        .authenticate_portal_session(AuthenticatePortalSessionRequest {
            secret: secret.to_owned(),
        })
        .await
        .map(drop)
}

#[tokio::test]
async fn a_session_lasts_the_configured_lifetime() {
    let config = roster_directory::DirectoryConfig {
        portal_session: Duration::from_secs(600),
        ..test_config()
    };
    let mut env = Env::with_config("portal_session_life", config).await;
    // Counted from the opening, whatever the link's own expiry (5 minutes).
    let before = chrono::Utc::now().timestamp();
    let (secret, expires) = open_session(&mut env).await;
    let after = chrono::Utc::now().timestamp();
    assert!(
        (before + 600..=after + 600).contains(&expires.seconds),
        "expires {} for a session opened in [{before}, {after}]",
        expires.seconds
    );
    authenticate(&mut env, &secret)
        .await
        .expect("a live session");
}

#[tokio::test]
async fn a_session_past_its_lifetime_is_refused() {
    // A lifetime of zero: the session is past it as soon as it exists, so
    // no test has to wait for a clock.
    let config = roster_directory::DirectoryConfig {
        portal_session: Duration::ZERO,
        ..test_config()
    };
    let mut env = Env::with_config("portal_session_past", config).await;
    let (secret, _) = open_session(&mut env).await;
    let refused = authenticate(&mut env, &secret).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
}
