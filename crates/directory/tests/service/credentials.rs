//! Scoped service credentials through real gRPC, on both backends: a `read`
//! credential watches and lists but cannot write or administer, a `gateway`
//! one writes but cannot administer, the bootstrap secret does everything,
//! revoked credentials stop working, and rejections say what is expected.

use roster_directory::DirectoryConfig;
use roster_proto::admin::admin_service_client::AdminServiceClient;
use roster_proto::admin::*;
use roster_proto::directory::directory_service_client::DirectoryServiceClient;
use roster_proto::directory::*;
use roster_testkit::app::*;
use roster_testkit::on_both_backends;
use tonic::Code;
use tonic::transport::Channel;

const BOOTSTRAP: &str = "bootstrap-s3cret";

/// `message` with `authorization: Bearer <secret>`.
fn as_caller<T>(message: T, secret: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {secret}").parse().expect("metadata"),
    );
    request
}

async fn create_credential(
    admin: &mut AdminServiceClient<Channel>,
    scope: CredentialScope,
) -> String {
    let created = admin
        .create_service_credential(as_caller(
            CreateServiceCredentialRequest {
                name: format!("{scope:?}"),
                scope: scope as i32,
            },
            BOOTSTRAP,
        ))
        .await
        .expect("CreateServiceCredential")
        .into_inner();
    assert!(created.secret.starts_with("rsc_"), "{}", created.secret);
    let credential = created.credential.expect("credential");
    assert_eq!(credential.scope, scope as i32);
    assert!(created.secret.starts_with(&credential.prefix));
    created.secret
}

async fn scoped_credentials_limit_what_a_caller_may_do(backend: Backend) {
    let config = DirectoryConfig {
        internal_secret: Some(BOOTSTRAP.into()),
        ..test_config()
    };
    let env = Env::on_with_config(backend, "credentials", config).await;
    let mut admin = env.admin.clone();
    let mut dir = env.dir.clone();
    let directory_id = admin
        .create_directory(as_caller(
            CreateDirectoryRequest {
                name: "scoped".into(),
                ..Default::default()
            },
            BOOTSTRAP,
        ))
        .await
        .expect("the bootstrap secret administers")
        .into_inner()
        .directory
        .unwrap()
        .id;
    let reader = create_credential(&mut admin, CredentialScope::Read).await;
    let gateway = create_credential(&mut admin, CredentialScope::Gateway).await;

    let create_user = |dir: &mut DirectoryServiceClient<Channel>, secret: &str, name: &str| {
        let request = as_caller(
            CreateUserRequest {
                directory_id: directory_id.clone(),
                resource: user_json(name),
            },
            secret,
        );
        let mut dir = dir.clone();
        async move { dir.create_user(request).await }
    };
    // A gateway credential writes; a read one may not.
    create_user(&mut dir, &gateway, "written@example.com")
        .await
        .expect("a gateway credential creates users");
    let refused = create_user(&mut dir, &reader, "refused@example.com")
        .await
        .expect_err("a read credential cannot write");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("`read`"),
        "{}",
        refused.message()
    );

    let list_request = || ListUsersRequest {
        directory_id: directory_id.clone(),
        ..Default::default()
    };
    // A read credential lists and watches.
    let listed = dir
        .list_users(as_caller(list_request(), &reader))
        .await
        .expect("a read credential lists")
        .into_inner();
    assert_eq!(listed.users.len(), 1);
    let mut stream = dir
        .watch_changes(as_caller(
            WatchChangesRequest {
                directory_id: directory_id.clone(),
                start: Some(watch_changes_request::Start::AfterRevision(0)),
                ..Default::default()
            },
            &reader,
        ))
        .await
        .expect("a read credential watches")
        .into_inner();
    let first = tokio::time::timeout(PROMPTLY, stream.message())
        .await
        .expect("a change in time")
        .expect("stream")
        .expect("a message");
    assert!(first.payload.is_some());

    // Neither may administer; the gateway one may check IdP tokens.
    for secret in [&reader, &gateway] {
        let denied = admin
            .create_token(as_caller(
                CreateTokenRequest {
                    directory_id: directory_id.clone(),
                    name: "nope".into(),
                },
                secret,
            ))
            .await
            .expect_err("only admin credentials create tokens");
        assert_eq!(denied.code(), Code::PermissionDenied);
    }
    let checked = admin
        .authenticate_token(as_caller(
            AuthenticateTokenRequest {
                secret: "rst_unknown".into(),
            },
            &gateway,
        ))
        .await
        .expect_err("an unknown IdP token");
    assert_eq!(checked.code(), Code::Unauthenticated);
    assert!(
        !roster_proto::internal_auth::is_rejection(&checked),
        "the gateway credential itself was accepted"
    );

    // No credential, or an unknown one: the rejection names what is expected.
    let missing = dir
        .list_users(list_request())
        .await
        .expect_err("no credential");
    assert!(roster_proto::internal_auth::is_rejection(&missing));
    assert!(
        missing.message().contains("authorization: Bearer"),
        "{}",
        missing.message()
    );
    let unknown = dir
        .list_users(as_caller(list_request(), "rsc_not-a-credential"))
        .await
        .expect_err("unknown credential");
    assert!(roster_proto::internal_auth::is_rejection(&unknown));

    // Listed without secrets; revoked ones stop working within the cache TTL.
    let listed = admin
        .list_service_credentials(as_caller(
            ListServiceCredentialsRequest::default(),
            BOOTSTRAP,
        ))
        .await
        .unwrap()
        .into_inner()
        .credentials;
    assert_eq!(listed.len(), 2);
    let reader_id = listed
        .iter()
        .find(|c| reader.starts_with(&c.prefix))
        .expect("the read credential is listed")
        .id
        .clone();
    assert!(
        !format!("{listed:?}").contains(&reader[8..]),
        "a secret is listed"
    );
    admin
        .revoke_service_credential(as_caller(
            RevokeServiceCredentialRequest { id: reader_id },
            BOOTSTRAP,
        ))
        .await
        .expect("revoke");
    let request = || as_caller(list_request(), &reader);
    roster_testkit::eventually("the revoked credential is refused", PROMPTLY, || {
        let mut dir = dir.clone();
        let request = request();
        async move {
            let refused = dir.list_users(request).await.err()?;
            roster_proto::internal_auth::is_rejection(&refused).then_some(())
        }
    })
    .await;
}
on_both_backends!(scoped_credentials_limit_what_a_caller_may_do);
