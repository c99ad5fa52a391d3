//! The admin portal's side of `AdminService`: the audit trail of SCIM
//! requests (recorded by gateways, listed for operators and the portal) and
//! portal links and sessions (docs/portal.md).
//!
//! Link secrets are `rpl_…` and session secrets `rps_…` (32 random bytes in
//! base64url, like tokens); only their SHA-256 hashes are stored, found by
//! equality and compared again in constant time, and they are never logged.

use chrono::{DateTime, Duration, Utc};
use roster_proto::admin as pa;
use roster_proto::contract::Events;
use roster_store::portal::{
    Activity, ActivityQuery, LinkExchange, NewActivity, NewPortalLink, NewPortalSession,
    StatusClass,
};
use roster_store::{ChangeKind, DirectoryId, PortalLinkId};
use subtle::ConstantTimeEq;

use crate::admin::{AdminApi, hash_secret, new_secret};
use crate::convert::timestamp;
use crate::error::{ServiceError, ServiceResult, parse_id};
use crate::service::directory_id;

/// Prefix of portal link secrets.
pub const LINK_PREFIX: &str = "rpl_";
/// Prefix of portal session secrets.
pub const SESSION_PREFIX: &str = "rps_";
/// How long a link waits to be opened when the request does not say.
pub const DEFAULT_LINK_TTL: Duration = Duration::hours(24);
/// The longest a link may wait (Ory Polis's setup links last 3 days; a
/// month covers a customer's slow change process without living forever).
const MAX_LINK_TTL: Duration = Duration::days(30);
/// How long a session lasts after its link was opened unless configured
/// (`DirectoryConfig::portal_session`): a working day of setting up an IdP,
/// then the admin needs a new link.
pub const DEFAULT_SESSION_TTL: std::time::Duration = std::time::Duration::from_secs(8 * 3600);
/// Activity entries per page by default and at most.
const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 500;
/// Longest text kept of a free-form field (user agent, path, detail), so a
/// hostile client cannot make the audit trail expensive.
const MAX_TEXT: usize = 512;

const NO_SESSION: ServiceError = ServiceError::Unauthenticated("no such portal session");

impl AdminApi {
    pub async fn record_activity(
        &self,
        req: pa::RecordActivityRequest,
    ) -> ServiceResult<pa::RecordActivityResponse> {
        let entries: Vec<NewActivity> = req.entries.iter().filter_map(entry).collect();
        let recorded = self.store().record_activity(&entries).await?;
        Ok(pa::RecordActivityResponse {
            recorded: i64::try_from(recorded).unwrap_or(i64::MAX),
        })
    }

    pub async fn list_activity(
        &self,
        req: pa::ListActivityRequest,
    ) -> ServiceResult<pa::ListActivityResponse> {
        let directory = directory_id(&req.directory_id)?;
        let query = activity_query(directory, &req)?;
        let found = self.store().list_activity(&query).await?;
        // A full page may have a successor; a live poll (after_id) never pages.
        let next_page_token = match found.last() {
            Some(last) if query.after.is_none() && found.len() as i64 == query.limit => {
                last.id.to_string()
            }
            _ => String::new(),
        };
        Ok(pa::ListActivityResponse {
            entries: found.iter().map(activity).collect(),
            next_page_token,
        })
    }

    pub async fn create_portal_link(
        &self,
        req: pa::CreatePortalLinkRequest,
    ) -> ServiceResult<pa::CreatePortalLinkResponse> {
        let directory_id = directory_id(&req.directory_id)?;
        let ttl = link_ttl(req.expires_in_seconds)?;
        let (secret, _, hash) = new_secret(LINK_PREFIX);
        let new = NewPortalLink {
            directory_id,
            hash,
            expires_at: Utc::now() + ttl,
        };
        let link = self.store().create_portal_link(new).await?;
        tracing::info!(link = %link.id, directory = %directory_id, "portal link created");
        Ok(pa::CreatePortalLinkResponse {
            link: Some(pa::PortalLink {
                id: link.id.to_string(),
                directory_id: link.directory_id.to_string(),
                created_at: Some(timestamp(link.created_at)),
                expires_at: Some(timestamp(link.expires_at)),
                used_at: link.used_at.map(timestamp),
                revoked_at: link.revoked_at.map(timestamp),
            }),
            secret,
        })
    }

    pub async fn revoke_portal_links(
        &self,
        req: pa::RevokePortalLinksRequest,
    ) -> ServiceResult<pa::RevokePortalLinksResponse> {
        let directory = directory_id(&req.directory_id)?;
        let link: Option<PortalLinkId> = match req.link_id.as_str() {
            "" => None,
            id => Some(parse_id(id, "portal link")?),
        };
        let revoked = self.store().revoke_portal_links(directory, link).await?;
        if link.is_some() && revoked == 0 {
            return Err(ServiceError::NotFound("portal link"));
        }
        tracing::info!(%directory, revoked, "portal links revoked");
        Ok(pa::RevokePortalLinksResponse {
            revoked: i64::try_from(revoked).unwrap_or(i64::MAX),
        })
    }

    pub async fn open_portal_link(
        &self,
        req: pa::OpenPortalLinkRequest,
    ) -> ServiceResult<pa::OpenPortalLinkResponse> {
        use pa::PortalLinkOutcome as O;
        let presented = hash_secret(&req.secret);
        let (session_secret, _, session_hash) = new_secret(SESSION_PREFIX);
        // An absurd configured lifetime saturates instead of failing the link.
        let ttl = Duration::from_std(self.portal_session()).unwrap_or(Duration::MAX);
        let session = NewPortalSession {
            hash: session_hash,
            expires_at: Utc::now()
                .checked_add_signed(ttl)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        };
        let exchange = self
            .store()
            .open_portal_link(presented, session, Utc::now())
            .await?;
        let refused = |outcome: O| pa::OpenPortalLinkResponse {
            outcome: outcome as i32,
            ..Default::default()
        };
        Ok(match exchange {
            LinkExchange::Opened(session, stored) if bool::from(presented.ct_eq(&stored)) => {
                tracing::info!(link = %session.link_id, session = %session.id, "portal link opened");
                pa::OpenPortalLinkResponse {
                    outcome: O::Opened as i32,
                    directory_id: session.directory_id.to_string(),
                    session_secret,
                    session_expires_at: Some(timestamp(session.expires_at)),
                }
            }
            LinkExchange::Opened(..) | LinkExchange::Unknown => refused(O::Unknown),
            LinkExchange::AlreadyUsed => refused(O::AlreadyUsed),
            LinkExchange::Expired => refused(O::Expired),
            LinkExchange::Revoked => refused(O::Revoked),
        })
    }

    pub async fn authenticate_portal_session(
        &self,
        req: pa::AuthenticatePortalSessionRequest,
    ) -> ServiceResult<pa::AuthenticatePortalSessionResponse> {
        let presented = hash_secret(&req.secret);
        let Some((session, stored)) = self.store().find_portal_session(presented).await? else {
            return Err(NO_SESSION);
        };
        if !bool::from(presented.ct_eq(&stored)) || session.expires_at <= Utc::now() {
            return Err(NO_SESSION);
        }
        Ok(pa::AuthenticatePortalSessionResponse {
            directory_id: session.directory_id.to_string(),
            expires_at: Some(timestamp(session.expires_at)),
        })
    }

    pub async fn end_portal_session(
        &self,
        req: pa::EndPortalSessionRequest,
    ) -> ServiceResult<pa::EndPortalSessionResponse> {
        self.store()
            .end_portal_session(hash_secret(&req.secret))
            .await?;
        Ok(pa::EndPortalSessionResponse {})
    }
}

fn link_ttl(seconds: i64) -> ServiceResult<Duration> {
    let ttl = match seconds {
        0 => DEFAULT_LINK_TTL,
        s if s > 0 => Duration::seconds(s),
        _ => {
            return Err(ServiceError::InvalidArgument(
                "expires_in_seconds must not be negative".into(),
            ));
        }
    };
    if ttl > MAX_LINK_TTL {
        return Err(ServiceError::InvalidArgument(format!(
            "a portal link lasts at most {} days",
            MAX_LINK_TTL.num_days()
        )));
    }
    Ok(ttl)
}

fn activity_query(
    directory: DirectoryId,
    req: &pa::ListActivityRequest,
) -> ServiceResult<ActivityQuery> {
    use pa::ActivityOutcome as O;
    let status = match O::try_from(req.outcome).unwrap_or(O::Unspecified) {
        O::Unspecified => None,
        O::Success => Some(StatusClass::Success),
        O::Failure => Some(StatusClass::Failure),
        O::ClientError => Some(StatusClass::ClientError),
        O::ServerError => Some(StatusClass::ServerError),
    };
    let before = match req.page_token.as_str() {
        "" => None,
        token => Some(token.parse::<i64>().map_err(|_| {
            ServiceError::InvalidArgument("page_token is not one this service issued".into())
        })?),
    };
    let limit = match i64::from(req.page_size) {
        n if n <= 0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    };
    Ok(ActivityQuery {
        directory,
        status,
        resource_type: Some(req.resource_type.clone()).filter(|r| !r.is_empty()),
        before,
        after: (req.after_id > 0).then_some(req.after_id),
        limit,
    })
}

/// A recorded entry from a gateway's, or `None` when it names no directory
/// (a mistyped id in a URL is nobody's activity).
fn entry(a: &pa::Activity) -> Option<NewActivity> {
    let directory_id = a.directory_id.parse().ok()?;
    let text = |s: &str| Some(clip(s)).filter(|s| !s.is_empty());
    Some(NewActivity {
        directory_id,
        at: a
            .time
            .as_ref()
            .and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?))
            .unwrap_or_else(Utc::now),
        request_id: clip(&a.request_id),
        method: clip(&a.method),
        path: clip(&a.path),
        status: a.status,
        scim_type: text(&a.scim_type),
        detail: text(&a.detail),
        user_agent: text(&a.user_agent),
        client_address: text(&a.client_address),
        resource_type: text(&a.resource_type),
        resource_id: text(&a.resource_id),
        revision: (a.revision > 0).then_some(a.revision),
        duration_ms: a.duration_ms.max(0),
        events: recorded_events(a),
    })
}

/// The events of a gateway's entry in the contract's text form, rebuilt
/// through [`Events`] so that only well-formed, bounded runs are stored.
fn recorded_events(a: &pa::Activity) -> Option<String> {
    let mut events = Events::default();
    // Runs that are not the change log's (an unknown kind, no revision) are
    // not stored.
    for run in a.events.iter().filter(|r| r.revision > 0 && r.count > 0) {
        if let Ok(kind) = run.kind.parse::<ChangeKind>() {
            events.push(kind.as_str(), run.revision, run.count);
        }
    }
    events.omitted = a.events_omitted.max(0);
    Some(events.encode()).filter(|text| !text.is_empty())
}

/// At most [`MAX_TEXT`] bytes, cut at a character boundary.
fn clip(s: &str) -> String {
    if s.len() <= MAX_TEXT {
        return s.to_owned();
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

fn activity(a: &Activity) -> pa::Activity {
    let e = &a.entry;
    // Stored by `recorded_events`, so always decodable.
    let events = e
        .events
        .as_deref()
        .and_then(Events::decode)
        .unwrap_or_default();
    let text = |s: &Option<String>| s.clone().unwrap_or_default();
    pa::Activity {
        id: a.id,
        directory_id: e.directory_id.to_string(),
        time: Some(timestamp(e.at)),
        request_id: e.request_id.clone(),
        method: e.method.clone(),
        path: e.path.clone(),
        status: e.status,
        scim_type: text(&e.scim_type),
        detail: text(&e.detail),
        user_agent: text(&e.user_agent),
        client_address: text(&e.client_address),
        resource_type: text(&e.resource_type),
        resource_id: text(&e.resource_id),
        revision: e.revision.unwrap_or(0),
        duration_ms: e.duration_ms,
        events: events.runs,
        events_omitted: events.omitted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_fields_are_clipped_at_a_character_boundary() {
        let long = "é".repeat(400);
        let clipped = clip(&long);
        assert!(clipped.len() <= MAX_TEXT);
        assert!(clipped.chars().all(|c| c == 'é'));
        assert_eq!(clip("short"), "short");
    }

    #[test]
    fn link_lifetimes_are_bounded() {
        assert_eq!(link_ttl(0).unwrap(), DEFAULT_LINK_TTL);
        assert_eq!(link_ttl(300).unwrap(), Duration::minutes(5));
        assert!(link_ttl(-1).is_err());
        assert!(link_ttl(31 * 24 * 3600).is_err());
    }
}
