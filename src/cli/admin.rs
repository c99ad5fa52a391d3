//! `roster admin`: directories and tokens through `AdminService`.

use anyhow::{Context, anyhow};
use roster_proto::admin::admin_service_client::AdminServiceClient;
use roster_proto::admin::*;
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::config::{AdminArgs, AdminCommand, ClientArgs, StoreArgs};

/// `admin.rpc(request)` through [`Admin::call`], as the reply's message.
macro_rules! call {
    ($admin:expr, $rpc:ident($req:expr)) => {
        $admin.call($req, async |mut c, r| c.$rpc(r).await).await?
    };
}

mod portal;
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
    let admin = Admin {
        client: AdminServiceClient::new(channel),
        secret: client.internal_secret.clone(),
    };
    let out = match command {
        AdminCommand::ListDirectories { organization } => {
            let req = ListDirectoriesRequest {
                organization: organization.unwrap_or_default(),
            };
            let r = call!(admin, list_directories(req));
            list(r.directories, directory_json)
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
            let r = call!(admin, create_directory(req));
            directory_json(&returned(r.directory, "directory")?)
        }
        AdminCommand::GetDirectory { id } => {
            let r = call!(admin, get_directory(GetDirectoryRequest { id }));
            directory_json(&returned(r.directory, "directory")?)
        }
        AdminCommand::DeleteDirectory { id } => {
            call!(
                admin,
                delete_directory(DeleteDirectoryRequest { id: id.clone() })
            );
            json!({ "deleted": id })
        }
        AdminCommand::MapAttribute {
            directory_id,
            source,
            target,
        } => admin.map_attribute(directory_id, source, target).await?,
        AdminCommand::CreateToken { directory_id, name } => {
            let r = call!(
                admin,
                create_token(CreateTokenRequest { directory_id, name })
            );
            with_secret(token_json(&returned(r.token, "token")?), r.secret)
        }
        AdminCommand::ListTokens {
            directory_id,
            include_revoked,
        } => {
            let req = ListTokensRequest {
                directory_id,
                include_revoked,
            };
            let r = call!(admin, list_tokens(req));
            list(r.tokens, token_json)
        }
        AdminCommand::RevokeToken {
            directory_id,
            token_id,
        } => {
            let req = RevokeTokenRequest {
                directory_id,
                token_id: token_id.clone(),
            };
            call!(admin, revoke_token(req));
            json!({ "revoked": token_id })
        }
        AdminCommand::CreateCredential { name, scope } => {
            let scope = match scope.to_ascii_lowercase().as_str() {
                "read" => CredentialScope::Read,
                "gateway" => CredentialScope::Gateway,
                "admin" => CredentialScope::Admin,
                other => return Err(anyhow!("unknown scope {other:?}: read, gateway or admin")),
            };
            let req = CreateServiceCredentialRequest {
                name,
                scope: scope as i32,
            };
            let r = call!(admin, create_service_credential(req));
            let credential = returned(r.credential, "credential")?;
            with_secret(credential_json(&credential), r.secret)
        }
        AdminCommand::ListCredentials { include_revoked } => {
            let r = call!(
                admin,
                list_service_credentials(ListServiceCredentialsRequest { include_revoked })
            );
            list(r.credentials, credential_json)
        }
        AdminCommand::RevokeCredential { id } => {
            call!(
                admin,
                revoke_service_credential(RevokeServiceCredentialRequest { id: id.clone() })
            );
            json!({ "revoked": id })
        }
        AdminCommand::NewEpoch { store } => new_epoch(&store).await?,
        AdminCommand::Reseal => {
            let r = call!(admin, reseal_secrets(ResealSecretsRequest {}));
            json!({
                "resealed": r.resealed,
                "current": r.current,
                "unopenable": r.unopenable,
            })
        }
        command @ (AdminCommand::Activity { .. }
        | AdminCommand::PortalLink { .. }
        | AdminCommand::RevokePortalLinks { .. }) => portal::run(&admin, command).await?,
        command @ (AdminCommand::SetSource { .. }
        | AdminCommand::GetSource { .. }
        | AdminCommand::SyncNow { .. }) => sources::run(&admin, command).await?,
        webhook => webhooks::run(&admin, webhook).await?,
    };
    Ok(out)
}

/// `roster admin new-epoch`: renews the change log's epoch in the database.
async fn new_epoch(args: &StoreArgs) -> anyhow::Result<Value> {
    let (store, _) = super::serve::open_store(args, super::serve::Use::Once).await?;
    let epoch = store
        .renew_log_epoch()
        .await
        .map_err(|e| anyhow!("cannot renew the change log's epoch: {e}"))?;
    Ok(json!({ "epoch": roster_directory::cursor::epoch_text(epoch) }))
}

/// The admin client every subcommand calls through.
struct Admin {
    client: AdminServiceClient<Channel>,
    secret: Option<String>,
}

impl Admin {
    /// One `AdminService` call: the request carries the internal secret, a
    /// refusal becomes the CLI's error text ([`status`]).
    async fn call<Req, Resp>(
        &self,
        body: Req,
        rpc: impl AsyncFnOnce(
            AdminServiceClient<Channel>,
            tonic::Request<Req>,
        ) -> Result<tonic::Response<Resp>, tonic::Status>,
    ) -> anyhow::Result<Resp> {
        let mut req = tonic::Request::new(body);
        super::authorize(&mut req, &self.secret)?;
        let reply = rpc(self.client.clone(), req).await;
        Ok(reply.map_err(status)?.into_inner())
    }

    /// Replaces the mapping of `source` (or adds it), keeping the others.
    async fn map_attribute(
        &self,
        id: String,
        source: String,
        target: String,
    ) -> anyhow::Result<Value> {
        let req = GetDirectoryRequest { id: id.clone() };
        let current = call!(self, get_directory(req));
        let current = returned(current.directory, "directory")?;
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
        let r = call!(self, update_directory(req));
        Ok(directory_json(&returned(r.directory, "directory")?))
    }
}

/// A message field of a reply (prost makes each one optional), which the
/// service always sets.
fn returned<T>(field: Option<T>, what: &str) -> anyhow::Result<T> {
    field.with_context(|| format!("no {what} returned"))
}

/// The object printed for a created credential, with its secret (shown
/// this once).
fn with_secret(mut object: Value, secret: String) -> Value {
    object["secret"] = json!(secret);
    object
}

/// The items of a list reply as a JSON array.
fn list<T>(items: Vec<T>, to_json: fn(&T) -> Value) -> Value {
    Value::Array(items.iter().map(to_json).collect())
}

/// A timestamp as RFC 3339 text, or null.
fn time<T: ToString>(t: &Option<T>) -> Option<String> {
    t.as_ref().map(ToString::to_string)
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
