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
    let create = CreateDirectoryRequest {
        name: "second".into(),
        organization: "globex".into(),
        provider: ProviderKind::Entra as i32,
        deprovision_policy: DeprovisionPolicy::Deactivate as i32,
        attribute_mappings: vec![],
    };
    let other = succeeded(env.admin.create_directory(create).await)
        .directory
        .unwrap();
    assert_eq!(other.provider, ProviderKind::Entra as i32);
    assert_eq!(
        other.deprovision_policy,
        DeprovisionPolicy::Deactivate as i32
    );

    let of_globex = ListDirectoriesRequest {
        organization: "globex".into(),
    };
    let globex = succeeded(env.admin.list_directories(of_globex).await).directories;
    let ids: Vec<_> = globex.into_iter().map(|d| d.id).collect();
    assert_eq!(ids, vec![other.id.clone()]);

    let rename = UpdateDirectoryRequest {
        id: id.clone(),
        name: Some("renamed".into()),
        ..Default::default()
    };
    let updated = succeeded(env.admin.update_directory(rename).await)
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

    delete_directory(&mut env, &id).await;
    let get = GetDirectoryRequest { id: id.clone() };
    assert_eq!(
        failure_code(env.admin.get_directory(get).await),
        Code::NotFound
    );
}

/// DeleteDirectory of `id`, which must succeed.
async fn delete_directory(env: &mut Env, id: &str) {
    let req = DeleteDirectoryRequest { id: id.into() };
    succeeded(env.admin.delete_directory(req).await);
}

/// AuthenticateToken of `secret`.
async fn authenticate(
    env: &mut Env,
    secret: &str,
) -> Result<tonic::Response<AuthenticateTokenResponse>, tonic::Status> {
    let req = AuthenticateTokenRequest {
        secret: secret.into(),
    };
    env.admin.authenticate_token(req).await
}

/// The tokens of directory `d`, the revoked ones too if `include_revoked`.
async fn tokens(env: &mut Env, d: &str, include_revoked: bool) -> Vec<Token> {
    let req = ListTokensRequest {
        directory_id: d.into(),
        include_revoked,
    };
    succeeded(env.admin.list_tokens(req).await).tokens
}

#[tokio::test]
async fn tokens_authenticate_until_revoked_and_two_may_be_live() {
    let mut env = Env::new("admin_tokens").await;
    let d = env.directory("tokens").await;
    let create = |name: &str| CreateTokenRequest {
        directory_id: d.clone(),
        name: name.into(),
    };
    let first = succeeded(env.admin.create_token(create("okta")).await);
    let token = first.token.clone().unwrap();
    assert!(first.secret.starts_with("rst_") && first.secret.len() == 47);
    assert_eq!(token.prefix, first.secret[..8]);

    let auth = succeeded(authenticate(&mut env, &first.secret).await);
    assert_eq!(
        (auth.directory_id.as_str(), auth.token_id.as_str()),
        (d.as_str(), token.id.as_str())
    );
    assert_eq!(auth.directory.unwrap().id, d);

    let wrong = authenticate(&mut env, &format!("{}x", first.secret)).await;
    assert_eq!(failure_code(wrong), Code::Unauthenticated);
    let empty = authenticate(&mut env, "").await;
    assert_eq!(failure_code(empty), Code::Unauthenticated);

    // Rotation: a second live token is fine, a third is not.
    let second = succeeded(env.admin.create_token(create("rotation")).await);
    let third = env
        .admin
        .create_token(create("too many"))
        .await
        .unwrap_err();
    assert_eq!(third.code(), Code::ResourceExhausted, "{third:?}");
    assert_eq!(tokens(&mut env, &d, false).await.len(), 2);

    let revoke = RevokeTokenRequest {
        directory_id: d.clone(),
        token_id: token.id.clone(),
    };
    succeeded(env.admin.revoke_token(revoke).await);
    let revoked = authenticate(&mut env, &first.secret).await;
    assert_eq!(failure_code(revoked), Code::Unauthenticated);
    let still = succeeded(authenticate(&mut env, &second.secret).await);
    assert_eq!(still.directory_id, d);

    // With one revoked, a new token fits again.
    succeeded(env.admin.create_token(create("third")).await);
    let all = tokens(&mut env, &d, true).await;
    assert_eq!(all.len(), 3);
    assert_eq!(all.iter().filter(|t| t.revoked_at.is_some()).count(), 1);

    // Deleting the directory revokes its tokens.
    delete_directory(&mut env, &d).await;
    let after = authenticate(&mut env, &second.secret).await;
    assert_eq!(failure_code(after), Code::Unauthenticated);
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
