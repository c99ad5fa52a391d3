//! AdminService through real gRPC on a real PostgreSQL: directories,
//! tokens, the shared-secret check, health and reflection.

use roster_directory::DirectoryConfig;
use roster_proto::admin::*;
use roster_testkit::app::*;
use tonic::Code;

#[tokio::test]
async fn directories_can_be_created_listed_updated_and_deleted() {
    let mut env = Env::new("admin_dirs").await;
    let id = env.directory("first").await;
    let other = env
        .admin
        .create_directory(CreateDirectoryRequest {
            name: "second".into(),
            organization: "globex".into(),
            provider: ProviderKind::Entra as i32,
            deprovision_policy: DeprovisionPolicy::Deactivate as i32,
            attribute_mappings: vec![],
        })
        .await
        .unwrap()
        .into_inner()
        .directory
        .unwrap();
    assert_eq!(other.provider, ProviderKind::Entra as i32);
    assert_eq!(
        other.deprovision_policy,
        DeprovisionPolicy::Deactivate as i32
    );

    let globex = env
        .admin
        .list_directories(ListDirectoriesRequest {
            organization: "globex".into(),
        })
        .await
        .unwrap();
    let ids: Vec<_> = globex
        .into_inner()
        .directories
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids, vec![other.id.clone()]);

    let updated = env
        .admin
        .update_directory(UpdateDirectoryRequest {
            id: id.clone(),
            name: Some("renamed".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .directory
        .unwrap();
    assert_eq!(
        (updated.name.as_str(), updated.organization.as_str()),
        ("renamed", "acme")
    );

    let bad_mapping = set_mappings(&mut env.admin, &id, &[("title", "password")]).await;
    assert_eq!(failure_code(bad_mapping), Code::InvalidArgument);
    let empty_name = CreateDirectoryRequest {
        name: "  ".into(),
        ..Default::default()
    };
    assert_eq!(
        failure_code(env.admin.create_directory(empty_name).await),
        Code::InvalidArgument
    );

    env.admin
        .delete_directory(DeleteDirectoryRequest { id: id.clone() })
        .await
        .unwrap();
    assert_eq!(
        failure_code(
            env.admin
                .get_directory(GetDirectoryRequest { id: id.clone() })
                .await
        ),
        Code::NotFound
    );
}

#[tokio::test]
async fn tokens_authenticate_until_revoked_and_two_may_be_live() {
    let mut env = Env::new("admin_tokens").await;
    let d = env.directory("tokens").await;
    let create = |name: &str| CreateTokenRequest {
        directory_id: d.clone(),
        name: name.into(),
    };
    let first = env
        .admin
        .create_token(create("okta"))
        .await
        .unwrap()
        .into_inner();
    let token = first.token.clone().unwrap();
    assert!(first.secret.starts_with("rst_") && first.secret.len() == 47);
    assert_eq!(token.prefix, first.secret[..8]);

    let auth = env
        .admin
        .authenticate_token(AuthenticateTokenRequest {
            secret: first.secret.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (auth.directory_id.as_str(), auth.token_id.as_str()),
        (d.as_str(), token.id.as_str())
    );
    assert_eq!(auth.directory.unwrap().id, d);

    let wrong = AuthenticateTokenRequest {
        secret: format!("{}x", first.secret),
    };
    assert_eq!(
        failure_code(env.admin.authenticate_token(wrong).await),
        Code::Unauthenticated
    );
    let empty = AuthenticateTokenRequest {
        secret: String::new(),
    };
    assert_eq!(
        failure_code(env.admin.authenticate_token(empty).await),
        Code::Unauthenticated
    );

    // Rotation: a second live token is fine, a third is not.
    let second = env
        .admin
        .create_token(create("rotation"))
        .await
        .unwrap()
        .into_inner();
    let third = env
        .admin
        .create_token(create("too many"))
        .await
        .unwrap_err();
    assert_eq!(third.code(), Code::ResourceExhausted, "{third:?}");

    let listed = env
        .admin
        .list_tokens(ListTokensRequest {
            directory_id: d.clone(),
            include_revoked: false,
        })
        .await
        .unwrap();
    assert_eq!(listed.into_inner().tokens.len(), 2);

    env.admin
        .revoke_token(RevokeTokenRequest {
            directory_id: d.clone(),
            token_id: token.id.clone(),
        })
        .await
        .unwrap();
    let revoked = env
        .admin
        .authenticate_token(AuthenticateTokenRequest {
            secret: first.secret.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(revoked.code(), Code::Unauthenticated);
    let still = env
        .admin
        .authenticate_token(AuthenticateTokenRequest {
            secret: second.secret.clone(),
        })
        .await
        .unwrap();
    assert_eq!(still.into_inner().directory_id, d);

    // With one revoked, a new token fits again.
    env.admin.create_token(create("third")).await.unwrap();
    let all = env
        .admin
        .list_tokens(ListTokensRequest {
            directory_id: d.clone(),
            include_revoked: true,
        })
        .await
        .unwrap();
    let all = all.into_inner().tokens;
    assert_eq!(all.len(), 3);
    assert_eq!(all.iter().filter(|t| t.revoked_at.is_some()).count(), 1);

    // Deleting the directory revokes its tokens.
    env.admin
        .delete_directory(DeleteDirectoryRequest { id: d.clone() })
        .await
        .unwrap();
    assert_eq!(
        failure_code(
            env.admin
                .authenticate_token(AuthenticateTokenRequest {
                    secret: second.secret,
                })
                .await
        ),
        Code::Unauthenticated
    );
}

#[tokio::test]
async fn an_internal_secret_is_required_when_configured() {
    let config = DirectoryConfig {
        internal_secret: Some("internal-s3cret".into()),
        ..test_config()
    };
    let env = Env::with_config("admin_secret", config).await;
    let mut admin = env.admin.clone();
    assert_eq!(
        failure_code(
            admin
                .list_directories(ListDirectoriesRequest::default())
                .await
        ),
        Code::Unauthenticated
    );

    let mut wrong = tonic::Request::new(ListDirectoriesRequest::default());
    wrong
        .metadata_mut()
        .insert("authorization", "Bearer nope".parse().unwrap());
    assert_eq!(
        failure_code(admin.list_directories(wrong).await),
        Code::Unauthenticated
    );

    let mut right = tonic::Request::new(ListDirectoriesRequest::default());
    right
        .metadata_mut()
        .insert("authorization", "Bearer internal-s3cret".parse().unwrap());
    assert!(admin.list_directories(right).await.is_ok());

    // Health stays open for probes.
    let mut health = tonic_health::pb::health_client::HealthClient::new(env.server.channel().await);
    let reply = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "roster.directory.v1.DirectoryService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        reply.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

#[tokio::test]
async fn reflection_lists_both_services() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let env = Env::new("admin_reflection").await;
    let mut client = ServerReflectionClient::new(env.server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = client
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reflection reply {reply:?}");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "roster.directory.v1.DirectoryService",
        "roster.admin.v1.AdminService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
}
