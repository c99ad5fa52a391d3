//! `roster admin`: directories and tokens through `AdminService`.

use anyhow::{Context, anyhow};
use roster_proto::admin::admin_service_client::AdminServiceClient;
use roster_proto::admin::*;
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::config::{AdminArgs, AdminCommand, ClientArgs, StoreArgs};

mod sources;
mod webhooks;

/// Runs one admin command and prints its result as JSON.
pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let out = match args.command {
        AdminCommand::NewEpoch { store } => new_epoch(&store).await?,
        command => remote(&args.client, command).await?,
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// Runs a command through `AdminService`.
async fn remote(client: &ClientArgs, command: AdminCommand) -> anyhow::Result<Value> {
    let channel = super::connect(client).await?;
    let mut admin = Admin {
        client: AdminServiceClient::new(channel),
        secret: client.internal_secret.clone(),
    };
    let out = match command {
        AdminCommand::ListDirectories { organization } => {
            let r = admin.call_list(organization.unwrap_or_default()).await?;
            Value::Array(r.directories.iter().map(directory_json).collect())
        }
        AdminCommand::CreateDirectory {
            name,
            organization,
            provider,
            deprovision_policy,
        } => {
            let req = CreateDirectoryRequest {
                name,
                organization,
                provider: provider_kind(&provider)? as i32,
                deprovision_policy: policy(&deprovision_policy)? as i32,
                attribute_mappings: vec![],
            };
            let mut client = admin.client.clone();
            let r = client
                .create_directory(admin.request(req)?)
                .await
                .map_err(status)?
                .into_inner();
            directory_json(&r.directory.context("no directory returned")?)
        }
        AdminCommand::GetDirectory { id } => {
            let mut client = admin.client.clone();
            let r = client
                .get_directory(admin.request(GetDirectoryRequest { id })?)
                .await
                .map_err(status)?;
            directory_json(&r.into_inner().directory.context("no directory returned")?)
        }
        AdminCommand::DeleteDirectory { id } => {
            let mut client = admin.client.clone();
            client
                .delete_directory(admin.request(DeleteDirectoryRequest { id: id.clone() })?)
                .await
                .map_err(status)?;
            json!({ "deleted": id })
        }
        AdminCommand::MapAttribute {
            directory_id,
            source,
            target,
        } => admin.map_attribute(directory_id, source, target).await?,
        AdminCommand::CreateToken { directory_id, name } => {
            let mut client = admin.client.clone();
            let r = client
                .create_token(admin.request(CreateTokenRequest { directory_id, name })?)
                .await
                .map_err(status)?
                .into_inner();
            let mut t = token_json(&r.token.context("no token returned")?);
            t["secret"] = json!(r.secret);
            t
        }
        AdminCommand::ListTokens {
            directory_id,
            include_revoked,
        } => {
            let mut client = admin.client.clone();
            let r = client
                .list_tokens(admin.request(ListTokensRequest {
                    directory_id,
                    include_revoked,
                })?)
                .await
                .map_err(status)?;
            Value::Array(r.into_inner().tokens.iter().map(token_json).collect())
        }
        AdminCommand::RevokeToken {
            directory_id,
            token_id,
        } => {
            let mut client = admin.client.clone();
            client
                .revoke_token(admin.request(RevokeTokenRequest {
                    directory_id,
                    token_id: token_id.clone(),
                })?)
                .await
                .map_err(status)?;
            json!({ "revoked": token_id })
        }
        AdminCommand::CreateCredential { name, scope } => {
            let scope = match scope.to_ascii_lowercase().as_str() {
                "read" => CredentialScope::Read,
                "gateway" => CredentialScope::Gateway,
                "admin" => CredentialScope::Admin,
                other => return Err(anyhow!("unknown scope {other:?}: read, gateway or admin")),
            };
            let mut client = admin.client.clone();
            let r = client
                .create_service_credential(admin.request(CreateServiceCredentialRequest {
                    name,
                    scope: scope as i32,
                })?)
                .await
                .map_err(status)?
                .into_inner();
            let mut c = credential_json(&r.credential.context("no credential returned")?);
            c["secret"] = json!(r.secret);
            c
        }
        AdminCommand::ListCredentials { include_revoked } => {
            let mut client = admin.client.clone();
            let r = client
                .list_service_credentials(
                    admin.request(ListServiceCredentialsRequest { include_revoked })?,
                )
                .await
                .map_err(status)?;
            Value::Array(
                r.into_inner()
                    .credentials
                    .iter()
                    .map(credential_json)
                    .collect(),
            )
        }
        AdminCommand::RevokeCredential { id } => {
            let mut client = admin.client.clone();
            client
                .revoke_service_credential(
                    admin.request(RevokeServiceCredentialRequest { id: id.clone() })?,
                )
                .await
                .map_err(status)?;
            json!({ "revoked": id })
        }
        AdminCommand::NewEpoch { store } => new_epoch(&store).await?,
        command @ (AdminCommand::Activity { .. }
        | AdminCommand::PortalLink { .. }
        | AdminCommand::RevokePortalLinks { .. }) => {
            super::admin_portal::run(&mut admin.client, &admin.secret, command).await?
        }
        command @ (AdminCommand::SetSource { .. }
        | AdminCommand::GetSource { .. }
        | AdminCommand::SyncNow { .. }) => sources::run(&admin, command).await?,
        webhook => webhooks::run(&admin, webhook).await?,
    };
    Ok(out)
}

/// `roster admin new-epoch`: renews the change log's epoch in the database.
async fn new_epoch(args: &StoreArgs) -> anyhow::Result<Value> {
    let (store, _) = super::serve::open_store(args).await?;
    let epoch = store
        .renew_log_epoch()
        .await
        .map_err(|e| anyhow!("cannot renew the change log's epoch: {e}"))?;
    Ok(json!({ "epoch": roster_directory::cursor::epoch_text(epoch) }))
}

struct Admin {
    client: AdminServiceClient<Channel>,
    secret: Option<String>,
}

impl Admin {
    fn request<T>(&self, body: T) -> anyhow::Result<tonic::Request<T>> {
        let mut req = tonic::Request::new(body);
        super::authorize(&mut req, &self.secret)?;
        Ok(req)
    }

    async fn call_list(&mut self, organization: String) -> anyhow::Result<ListDirectoriesResponse> {
        let req = self.request(ListDirectoriesRequest { organization })?;
        Ok(self
            .client
            .list_directories(req)
            .await
            .map_err(status)?
            .into_inner())
    }

    /// Replaces the mapping of `source` (or adds it), keeping the others.
    async fn map_attribute(
        &mut self,
        id: String,
        source: String,
        target: String,
    ) -> anyhow::Result<Value> {
        let current = self
            .client
            .get_directory(self.request(GetDirectoryRequest { id: id.clone() })?)
            .await;
        let current = current
            .map_err(status)?
            .into_inner()
            .directory
            .context("no directory returned")?;
        let mut mappings: Vec<AttributeMapping> = current
            .attribute_mappings
            .into_iter()
            .filter(|m| !m.source.eq_ignore_ascii_case(&source))
            .collect();
        mappings.push(AttributeMapping { source, target });
        let req = UpdateDirectoryRequest {
            id,
            attribute_mappings: mappings,
            replace_attribute_mappings: true,
            ..Default::default()
        };
        let r = self
            .client
            .update_directory(self.request(req)?)
            .await
            .map_err(status)?;
        Ok(directory_json(
            &r.into_inner().directory.context("no directory returned")?,
        ))
    }
}

fn status(s: tonic::Status) -> anyhow::Error {
    anyhow!("{}: {}", code_name(s.code()), s.message())
}

fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::NotFound => "not found",
        tonic::Code::AlreadyExists => "already exists",
        tonic::Code::InvalidArgument => "invalid argument",
        tonic::Code::FailedPrecondition | tonic::Code::ResourceExhausted => "refused",
        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => "not allowed",
        tonic::Code::Unavailable => "unavailable",
        _ => "failed",
    }
}

fn provider_kind(s: &str) -> anyhow::Result<ProviderKind> {
    let name = format!("PROVIDER_KIND_{}", s.to_ascii_uppercase());
    ProviderKind::from_str_name(&name)
        .filter(|k| *k != ProviderKind::Unspecified)
        .ok_or_else(|| anyhow!("unknown provider {s:?}: use okta, entra, onelogin, jumpcloud, google, pingone, rippling or generic"))
}

fn policy(s: &str) -> anyhow::Result<DeprovisionPolicy> {
    let name = format!("DEPROVISION_POLICY_{}", s.to_ascii_uppercase());
    DeprovisionPolicy::from_str_name(&name)
        .filter(|p| *p != DeprovisionPolicy::Unspecified)
        .ok_or_else(|| anyhow!("unknown deprovision policy {s:?}: use delete or deactivate"))
}

fn enum_suffix(name: &str, prefix: &str) -> String {
    name.trim_start_matches(prefix).to_ascii_lowercase()
}

fn directory_json(d: &Directory) -> Value {
    let provider = ProviderKind::try_from(d.provider).unwrap_or(ProviderKind::Unspecified);
    let policy =
        DeprovisionPolicy::try_from(d.deprovision_policy).unwrap_or(DeprovisionPolicy::Unspecified);
    json!({
        "id": d.id,
        "name": d.name,
        "organization": d.organization,
        "provider": enum_suffix(provider.as_str_name(), "PROVIDER_KIND_"),
        "deprovision_policy": enum_suffix(policy.as_str_name(), "DEPROVISION_POLICY_"),
        "attribute_mappings": d.attribute_mappings.iter().map(|m| json!({"source": m.source, "target": m.target})).collect::<Vec<_>>(),
        "created_at": d.created_at.as_ref().map(ToString::to_string),
    })
}

fn credential_json(c: &ServiceCredential) -> Value {
    let scope = CredentialScope::try_from(c.scope).unwrap_or(CredentialScope::Unspecified);
    json!({
        "id": c.id,
        "name": c.name,
        "scope": enum_suffix(scope.as_str_name(), "CREDENTIAL_SCOPE_"),
        "prefix": c.prefix,
        "created_at": c.created_at.as_ref().map(ToString::to_string),
        "revoked_at": c.revoked_at.as_ref().map(ToString::to_string),
    })
}

fn token_json(t: &Token) -> Value {
    json!({
        "id": t.id,
        "directory_id": t.directory_id,
        "name": t.name,
        "prefix": t.prefix,
        "created_at": t.created_at.as_ref().map(ToString::to_string),
        "revoked_at": t.revoked_at.as_ref().map(ToString::to_string),
        "last_used_at": t.last_used_at.as_ref().map(ToString::to_string),
    })
}
