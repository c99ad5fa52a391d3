//! LDAP and Active Directory sources: a simple bind (over `ldap://`,
//! StartTLS or `ldaps://`), paged subtree searches of the users and groups
//! bases, and the mapping of entries to the normalized model.
//!
//! Generic LDAP (OpenLDAP, 389-DS): ids from `entryUUID`, members from
//! `member` (groupOfNames), `uniqueMember` (groupOfUniqueNames) and
//! `memberUid` (posixGroup). Active Directory: ids from `objectGUID`, the
//! `userAccountControl` disabled bit, ranged retrieval of `member`
//! (`member;range=0-1499`…) for groups larger than the server's MaxValRange,
//! and incremental reads by `uSNChanged` (see [`AdCursor`]).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::controls::RawControl;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};
use roster_store::{Email, SourceKind, UserFields};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::SourceError;
use crate::snapshot::{
    Mappings, Source, SourceGroup, SourceMember, SourceRead, SourceSnapshot, SourceUser,
};

/// `userAccountControl` bit ACCOUNTDISABLE.
const UAC_DISABLED: u64 = 0x2;

/// LDAP_SERVER_EXTENDED_DN_OID: DN values come as
/// `<GUID=…>;<SID=…>;CN=…`, so an incremental read knows a member's
/// `objectGUID` without reading the member.
const EXTENDED_DN: &str = "1.2.840.113556.1.4.529";

/// The non-secret settings of an LDAP or AD source (stored as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LdapSettings {
    /// `ldap://host:389` or `ldaps://host:636`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS before binding.
    pub starttls: bool,
    /// A PEM file of CA certificates trusted, in addition to the system
    /// roots, for the server's certificate (`ldaps://` or StartTLS). Read at
    /// every connection, so a replaced file takes effect at the next sync.
    pub ca_file: String,
    pub bind_dn: String,
    pub users_base_dn: String,
    /// Empty: the kind's default.
    pub users_filter: String,
    pub groups_base_dn: String,
    pub groups_filter: String,
    /// Entries per page of the paged-results control.
    pub page_size: i32,
    /// The attribute that becomes `userName`; empty: `uid` (LDAP),
    /// `userPrincipalName` (AD).
    pub user_name_attribute: String,
    /// Generic LDAP has no standard "disabled": a user is inactive when
    /// this attribute holds one of `inactive_values` (or, with no values
    /// listed, merely exists — e.g. ppolicy's `pwdAccountLockedTime`).
    pub inactive_attribute: String,
    pub inactive_values: Vec<String>,
    /// Seconds for connecting and for each operation.
    pub timeout_secs: u64,
    /// Active Directory: every Nth sync reads everything (and so sees
    /// deletions and entries that left the scope); the others read only
    /// the entries whose `uSNChanged` passed the last watermark. 1: every
    /// sync is a full read.
    pub full_sync_every: u32,
}

impl Default for LdapSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            starttls: false,
            ca_file: String::new(),
            bind_dn: String::new(),
            users_base_dn: String::new(),
            users_filter: String::new(),
            groups_base_dn: String::new(),
            groups_filter: String::new(),
            page_size: 500,
            user_name_attribute: String::new(),
            inactive_attribute: String::new(),
            inactive_values: Vec::new(),
            timeout_secs: 30,
            full_sync_every: 48,
        }
    }
}

impl LdapSettings {
    pub fn validate(&self) -> Result<(), SourceError> {
        let bad = |what: &str| Err(SourceError::Settings(what.to_string()));
        if !(self.url.starts_with("ldap://") || self.url.starts_with("ldaps://")) {
            return bad("url must start with ldap:// or ldaps://");
        }
        if self.users_base_dn.is_empty() || self.groups_base_dn.is_empty() {
            return bad("users_base_dn and groups_base_dn are required");
        }
        if !(1..=10_000).contains(&self.page_size) {
            return bad("page_size must be between 1 and 10000");
        }
        if self.full_sync_every == 0 {
            return bad("full_sync_every must be at least 1");
        }
        let tls = self.url.starts_with("ldaps://") || self.starttls;
        if !self.ca_file.is_empty() && !tls {
            return bad("ca_file needs an ldaps:// url or starttls");
        }
        Ok(())
    }
}

/// An LDAP or Active Directory server, read with one connection per sync.
pub struct LdapSource {
    kind: SourceKind,
    settings: LdapSettings,
    password: String,
    mappings: Mappings,
}

impl std::fmt::Debug for LdapSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapSource")
            .field("kind", &self.kind)
            .field("url", &self.settings.url)
            .finish_non_exhaustive()
    }
}

impl LdapSource {
    pub fn new(
        kind: SourceKind,
        settings: LdapSettings,
        password: String,
        mappings: Mappings,
    ) -> Result<Self, SourceError> {
        settings.validate()?;
        Ok(Self {
            kind,
            settings,
            password,
            mappings,
        })
    }

    fn is_ad(&self) -> bool {
        self.kind == SourceKind::ActiveDirectory
    }

    fn id_attribute(&self) -> &'static str {
        if self.is_ad() {
            "objectGUID"
        } else {
            "entryUUID"
        }
    }

    fn user_name_attribute(&self) -> &str {
        match (&self.settings.user_name_attribute, self.is_ad()) {
            (a, _) if !a.is_empty() => a,
            (_, true) => "userPrincipalName",
            (_, false) => "uid",
        }
    }

    fn users_filter(&self) -> &str {
        match (&self.settings.users_filter, self.is_ad()) {
            (f, _) if !f.is_empty() => f,
            (_, true) => "(&(objectClass=user)(objectCategory=person))",
            (_, false) => "(|(objectClass=inetOrgPerson)(objectClass=posixAccount))",
        }
    }

    fn groups_filter(&self) -> &str {
        match (&self.settings.groups_filter, self.is_ad()) {
            (f, _) if !f.is_empty() => f,
            (_, true) => "(objectClass=group)",
            (_, false) => {
                "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))"
            }
        }
    }

    async fn connect(&self) -> Result<Ldap, SourceError> {
        let timeout = Duration::from_secs(self.settings.timeout_secs.max(1));
        let mut conn_settings = LdapConnSettings::new()
            .set_conn_timeout(timeout)
            .set_starttls(self.settings.starttls);
        if !self.settings.ca_file.is_empty() {
            conn_settings = conn_settings.set_config(tls_config(&self.settings.ca_file)?);
        }
        let (conn, mut ldap) = LdapConnAsync::with_settings(conn_settings, &self.settings.url)
            .await
            .map_err(|e| self.connect_error(e))?;
        ldap3::drive!(conn);
        ldap.with_timeout(timeout);
        let bound = ldap
            .simple_bind(&self.settings.bind_dn, &self.password)
            .await
            .map_err(unavailable)?;
        // 49: invalidCredentials.
        if bound.rc == 49 {
            return Err(SourceError::Unauthorized(format!(
                "bind as {:?} refused",
                self.settings.bind_dn
            )));
        }
        bound.success().map_err(unavailable)?;
        Ok(ldap)
    }

    /// A refused certificate says so, and what to set: rustls' own words
    /// ("invalid peer certificate: UnknownIssuer") do not name the setting.
    fn connect_error(&self, e: ldap3::LdapError) -> SourceError {
        let rejected = match &e {
            ldap3::LdapError::Io { source } => source
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .is_some_and(|tls| matches!(tls, rustls::Error::InvalidCertificate(_))),
            _ => false,
        };
        if !rejected {
            return unavailable(e);
        }
        let trusted = match self.settings.ca_file.as_str() {
            "" => "the system roots (set ca_file to the CA that signs it)".to_string(),
            file => format!("the system roots and ca_file {file:?}"),
        };
        SourceError::Unavailable(format!(
            "TLS to {}: the server's certificate is not trusted by {trusted}: {e}",
            self.settings.url
        ))
    }

    /// Every entry under `base` matching `filter`, in pages.
    async fn search(
        &self,
        ldap: &mut Ldap,
        base: &str,
        filter: &str,
        attrs: Vec<String>,
        controls: Vec<RawControl>,
    ) -> Result<Vec<SearchEntry>, SourceError> {
        let adapters: Vec<Box<dyn Adapter<'_, String, Vec<String>>>> = vec![
            Box::new(EntriesOnly::new()),
            Box::new(PagedResults::new(self.settings.page_size)),
        ];
        let mut stream = ldap
            .with_controls(controls)
            .streaming_search_with(adapters, base, Scope::Subtree, filter, attrs)
            .await
            .map_err(unavailable)?;
        let mut entries = Vec::new();
        while let Some(entry) = stream.next().await.map_err(unavailable)? {
            entries.push(SearchEntry::construct(entry));
        }
        // 32: noSuchObject — the base DN does not exist: the source is
        // then empty, which the mass-deletion safeguard is there to catch.
        let done = stream.finish().await;
        if done.rc != 32 {
            done.success().map_err(unavailable)?;
        }
        Ok(entries)
    }
    fn id_of(&self, entry: &SearchEntry) -> Option<String> {
        if self.is_ad() {
            guid_text(&binary(entry, "objectGUID")?)
        } else {
            first(entry, "entryUUID").map(str::to_owned)
        }
    }

    fn user_of(&self, entry: &SearchEntry) -> Option<SourceUser> {
        let id = self.id_of(entry)?;
        let user_name = first(entry, self.user_name_attribute())?.to_string();
        let emails = entry
            .attrs
            .get("mail")
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, mail)| Email {
                value: mail.clone(),
                r#type: "work".into(),
                primary: i == 0,
            })
            .collect();
        let text = |name: &str| first(entry, name).map(str::to_owned);
        let department = if self.is_ad() {
            "department"
        } else {
            "departmentNumber"
        };
        let mut fields = UserFields {
            user_name,
            external_id: Some(id.clone()),
            active: self.active(entry),
            display_name: text("displayName").or_else(|| text("cn")),
            given_name: text("givenName"),
            family_name: text("sn"),
            emails,
            title: text("title"),
            department: text(department),
            employee_number: text("employeeNumber"),
            ..UserFields::default()
        };
        if !self.mappings.is_empty() {
            // The entry as `{attribute: [values]}`: mapping paths are
            // attribute names (matched case-insensitively).
            let record = serde_json::to_value(&entry.attrs).unwrap_or_default();
            self.mappings.apply(&record, &mut fields);
        }
        Some(SourceUser {
            external_id: id,
            fields,
        })
    }

    fn active(&self, entry: &SearchEntry) -> bool {
        if self.is_ad() {
            let uac = first(entry, "userAccountControl").and_then(|v| v.parse::<u64>().ok());
            return uac.is_none_or(|flags| flags & UAC_DISABLED == 0);
        }
        let attr = &self.settings.inactive_attribute;
        if attr.is_empty() {
            return true;
        }
        match entry.attrs.get(attr.as_str()) {
            None => true,
            Some(values) if self.settings.inactive_values.is_empty() => values.is_empty(),
            Some(values) => !values.iter().any(|v| {
                self.settings
                    .inactive_values
                    .iter()
                    .any(|x| x.eq_ignore_ascii_case(v))
            }),
        }
    }

    fn user_attrs(&self) -> Vec<String> {
        let mut attrs: Vec<String> = [
            self.id_attribute(),
            self.user_name_attribute(),
            "cn",
            "displayName",
            "givenName",
            "sn",
            "mail",
            "title",
            "employeeNumber",
            "department",
            "departmentNumber",
            "userAccountControl",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        if !self.settings.inactive_attribute.is_empty() {
            attrs.push(self.settings.inactive_attribute.clone());
        }
        // The attributes the directory's mappings read.
        attrs.extend(
            self.mappings
                .sources()
                .filter(|p| p.is_plain())
                .map(|p| p.names()[0].to_string()),
        );
        attrs
    }

    /// The values of `member` past the server's MaxValRange: AD returns
    /// `member;range=0-1499` and the rest must be asked for range by range
    /// (MS-ADTS 3.1.1.3.1.3.3), up to the range that ends in `*`.
    async fn ranged_members(
        &self,
        ldap: &mut Ldap,
        entry: &mut SearchEntry,
        controls: &[RawControl],
    ) -> Result<(), SourceError> {
        let Some(key) = range_key(&entry.attrs) else {
            return Ok(());
        };
        let mut values = entry.attrs.remove(&key).unwrap_or_default();
        let mut range_key_now = key;
        let dn = plain_dn(&entry.dn).to_string();
        while let Some(next) = next_range_start(&range_key_now) {
            let attr = format!("member;range={next}-*");
            let Some(mut found) = base_entry(ldap, &dn, vec![attr], controls).await? else {
                break;
            };
            let Some(k) = range_key(&found.attrs) else {
                break;
            };
            values.extend(found.attrs.remove(&k).unwrap_or_default());
            range_key_now = k;
        }
        entry.attrs.insert("member".into(), values);
        Ok(())
    }

    /// Every member value of `entry` that names someone: by DN (resolved
    /// through `by_dn`, which drops those outside the bases) or by
    /// `memberUid`.
    fn dn_members(
        entry: &SearchEntry,
        by_dn: &HashMap<String, SourceMember>,
        by_uid: &HashMap<String, String>,
    ) -> Vec<SourceMember> {
        let mut members: Vec<SourceMember> = ["member", "uniqueMember"]
            .into_iter()
            .flat_map(|a| entry.attrs.get(a).into_iter().flatten())
            // groupOfUniqueNames may append `#'0101'B` (an optional UID).
            .map(|dn| normalize_dn(dn.split('#').next().unwrap_or(dn)))
            .filter_map(|dn| by_dn.get(&dn).cloned())
            .collect();
        members.extend(
            entry
                .attrs
                .get("memberUid")
                .into_iter()
                .flatten()
                .filter_map(|uid| by_uid.get(uid).cloned().map(SourceMember::User)),
        );
        members
    }

    /// The members of a group read with the extended-DN control, by GUID.
    fn guid_members(entry: &SearchEntry) -> Vec<SourceMember> {
        entry
            .attrs
            .get("member")
            .into_iter()
            .flatten()
            .filter_map(|dn| extended_guid(dn).map(SourceMember::Any))
            .collect()
    }

    fn group_of(&self, entry: &SearchEntry, mut members: Vec<SourceMember>) -> Option<SourceGroup> {
        let id = self.id_of(entry)?;
        let display_name = first(entry, "cn")?.to_string();
        members.sort();
        members.dedup();
        Some(SourceGroup {
            external_id: id,
            display_name,
            members,
        })
    }

    /// The users and groups matching the filters (each ANDed with `extra`),
    /// groups with all their `member` values.
    async fn entries(
        &self,
        ldap: &mut Ldap,
        extra: &str,
        controls: Vec<RawControl>,
    ) -> Result<(Vec<SearchEntry>, Vec<SearchEntry>), SourceError> {
        let s = &self.settings;
        let filter = |f: &str| format!("(&{}{extra})", parenthesized(f));
        let users = self
            .search(
                ldap,
                &s.users_base_dn,
                &filter(self.users_filter()),
                self.user_attrs(),
                Vec::new(),
            )
            .await?;
        let group_attrs = [
            self.id_attribute(),
            "cn",
            "member",
            "uniqueMember",
            "memberUid",
        ];
        let mut groups = self
            .search(
                ldap,
                &s.groups_base_dn,
                &filter(self.groups_filter()),
                group_attrs.map(str::to_owned).to_vec(),
                controls.clone(),
            )
            .await?;
        if self.is_ad() {
            for entry in &mut groups {
                self.ranged_members(ldap, entry, &controls).await?;
            }
        }
        Ok((users, groups))
    }

    fn users_of<'e>(&self, entries: &'e [SearchEntry]) -> Vec<(&'e SearchEntry, SourceUser)> {
        entries
            .iter()
            .filter_map(|entry| {
                let user = self.user_of(entry);
                if user.is_none() {
                    tracing::warn!(dn = %entry.dn, "user entry without an id or a user name: skipped");
                }
                Some((entry, user?))
            })
            .collect()
    }

    /// Every user and group under the bases.
    async fn read_full(&self, ldap: &mut Ldap) -> Result<SourceSnapshot, SourceError> {
        let (user_entries, group_entries) = self.entries(ldap, "", Vec::new()).await?;
        let mut by_dn = HashMap::new();
        let mut by_uid = HashMap::new();
        let mut users = Vec::with_capacity(user_entries.len());
        for (entry, user) in self.users_of(&user_entries) {
            by_dn.insert(
                normalize_dn(&entry.dn),
                SourceMember::User(user.external_id.clone()),
            );
            if let Some(uid) = first(entry, "uid") {
                by_uid.insert(uid.to_string(), user.external_id.clone());
            }
            users.push(user);
        }
        for entry in &group_entries {
            if let Some(id) = self.id_of(entry) {
                by_dn.insert(normalize_dn(&entry.dn), SourceMember::Group(id));
            }
        }
        let groups = group_entries
            .iter()
            .filter_map(|e| self.group_of(e, Self::dn_members(e, &by_dn, &by_uid)))
            .collect();
        Ok(SourceSnapshot { users, groups })
    }

    /// The users and groups whose `uSNChanged` is above `usn`; group
    /// members by GUID (the extended-DN control), as the members
    /// themselves are mostly not read.
    async fn read_changes(&self, ldap: &mut Ldap, usn: u64) -> Result<SourceSnapshot, SourceError> {
        let control = RawControl {
            ctype: EXTENDED_DN.into(),
            crit: true,
            val: None,
        };
        let extra = format!("(uSNChanged>={})", usn.saturating_add(1));
        let (user_entries, group_entries) = self.entries(ldap, &extra, vec![control]).await?;
        let groups = group_entries
            .iter()
            .filter_map(|e| self.group_of(e, Self::guid_members(e)))
            .collect();
        Ok(SourceSnapshot {
            users: self
                .users_of(&user_entries)
                .into_iter()
                .map(|(_, u)| u)
                .collect(),
            groups,
        })
    }

    /// The DC's identity and highest committed USN, from the rootDSE and
    /// its NTDS Settings object.
    async fn dc_state(&self, ldap: &mut Ldap) -> Result<DcState, SourceError> {
        let attrs = vec!["highestCommittedUSN".into(), "dsServiceName".into()];
        let root = base_entry(ldap, "", attrs, &[]).await?;
        let root = root.ok_or_else(|| unavailable("the server returned no rootDSE"))?;
        let (Some(usn), Some(server)) = (
            first(&root, "highestCommittedUSN").and_then(|u| u.parse::<u64>().ok()),
            first(&root, "dsServiceName"),
        ) else {
            return Err(unavailable(
                "the rootDSE has no highestCommittedUSN or dsServiceName: not an Active Directory DC",
            ));
        };
        let ntds = base_entry(ldap, server, vec!["invocationId".into()], &[]).await?;
        let invocation_id = ntds
            .as_ref()
            .and_then(|e| binary(e, "invocationId"))
            .and_then(|b| guid_text(&b))
            .ok_or_else(|| unavailable(format!("no invocationId on {server}")))?;
        Ok(DcState {
            server: server.to_string(),
            invocation_id,
            usn,
        })
    }

    /// AD: a full read, or only the changes when the previous cursor
    /// still holds (same DC, same database, same settings, not yet time
    /// for the periodic full read).
    async fn read_ad(
        &self,
        ldap: &mut Ldap,
        cursor: Option<&Value>,
    ) -> Result<SourceRead, SourceError> {
        // Read before the searches: what changes during them is above the
        // watermark and read again next time.
        let dc = self.dc_state(ldap).await?;
        let previous = cursor.and_then(|c| serde_json::from_value::<AdCursor>(c.clone()).ok());
        let resume = match previous {
            Some(p) => match p.why_full(&dc, &self.settings) {
                None => Some(p),
                Some(why) => {
                    tracing::info!(reason = why, "full read");
                    None
                }
            },
            None => None,
        };
        let (snapshot, since_full) = match &resume {
            Some(p) => (self.read_changes(ldap, p.usn).await?, p.since_full + 1),
            None => (self.read_full(ldap).await?, 0),
        };
        let cursor = AdCursor {
            server: dc.server,
            invocation_id: dc.invocation_id,
            usn: dc.usn,
            since_full,
            settings: self.settings.clone(),
        };
        Ok(SourceRead {
            snapshot,
            complete: resume.is_none(),
            cursor: serde_json::to_value(cursor).ok(),
        })
    }
}

/// Which DC a sync talked to, and how far its database went.
struct DcState {
    /// `dsServiceName`: the DC's NTDS Settings DN.
    server: String,
    /// The DC database's `invocationID`: it changes when the database is
    /// restored, and USNs from before are then meaningless.
    invocation_id: String,
    /// `highestCommittedUSN`.
    usn: u64,
}

/// An AD watermark. `uSNChanged` is per DC and per database, so it is
/// valid only on the DC and `invocationID` it was read from; and only for
/// the settings it was read with (another base DN or filter needs a full
/// read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdCursor {
    pub server: String,
    pub invocation_id: String,
    pub usn: u64,
    /// Incremental reads since the last full one.
    pub since_full: u32,
    pub settings: LdapSettings,
}

impl AdCursor {
    /// Why the next read cannot continue from this cursor, if so.
    fn why_full(&self, dc: &DcState, settings: &LdapSettings) -> Option<&'static str> {
        if self.server != dc.server {
            Some("another domain controller")
        } else if self.invocation_id != dc.invocation_id {
            Some("the domain controller's invocationID changed (restored database)")
        } else if dc.usn < self.usn {
            Some("the domain controller's highestCommittedUSN went back")
        } else if &self.settings != settings {
            Some("the source settings changed")
        } else if self.since_full.saturating_add(1) >= settings.full_sync_every {
            Some("periodic full read (full_sync_every)")
        } else {
            None
        }
    }
}

#[async_trait::async_trait]
impl Source for LdapSource {
    async fn read(&self) -> Result<SourceSnapshot, SourceError> {
        Ok(self.read_since(None).await?.snapshot)
    }

    #[tracing::instrument(skip(self, cursor), fields(kind = %self.kind, url = %self.settings.url))]
    async fn read_since(&self, cursor: Option<&Value>) -> Result<SourceRead, SourceError> {
        let mut ldap = self.connect().await?;
        let read = if self.is_ad() {
            self.read_ad(&mut ldap, cursor).await
        } else {
            self.read_full(&mut ldap).await.map(|snapshot| SourceRead {
                snapshot,
                complete: true,
                cursor: None,
            })
        };
        let _ = ldap.unbind().await;
        let read = read?;
        tracing::info!(
            users = read.snapshot.users.len(),
            groups = read.snapshot.groups.len(),
            complete = read.complete,
            "source read"
        );
        Ok(read)
    }
}

/// The entry at `dn` itself (`""`: the rootDSE), if it exists.
async fn base_entry(
    ldap: &mut Ldap,
    dn: &str,
    attrs: Vec<String>,
    controls: &[RawControl],
) -> Result<Option<SearchEntry>, SourceError> {
    let (found, _) = ldap
        .with_controls(controls.to_vec())
        .search(dn, Scope::Base, "(objectClass=*)", attrs)
        .await
        .map_err(unavailable)?
        .success()
        .map_err(unavailable)?;
    Ok(found.into_iter().next().map(SearchEntry::construct))
}

/// The `member;range=…` key of a ranged answer.
fn range_key(attrs: &HashMap<String, Vec<String>>) -> Option<String> {
    attrs
        .keys()
        .find(|k| k.to_ascii_lowercase().starts_with("member;range="))
        .cloned()
}

/// An attribute's first value as bytes, wherever `SearchEntry` put it (a
/// binary value that happens to be valid UTF-8 lands in `attrs`), by a
/// case-insensitive name.
fn binary(entry: &SearchEntry, attr: &str) -> Option<Vec<u8>> {
    let bin = entry
        .bin_attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(attr));
    if let Some(v) = bin.and_then(|(_, v)| v.first()) {
        return Some(v.clone());
    }
    let text = entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(attr));
    text.and_then(|(_, v)| v.first())
        .map(|v| v.as_bytes().to_vec())
}

fn parenthesized(filter: &str) -> String {
    if filter.starts_with('(') {
        filter.to_string()
    } else {
        format!("({filter})")
    }
}

/// `<GUID=…>;<SID=…>;CN=x,…` → `CN=x,…` (a plain DN is returned as is).
fn plain_dn(dn: &str) -> &str {
    dn.rsplit_once(">;").map_or(dn, |(_, rest)| rest)
}

/// The GUID of an extended DN (`<GUID=` 32 hex digits of the raw bytes
/// `>;…`) in the text form of [`guid_text`].
fn extended_guid(dn: &str) -> Option<String> {
    let hex = dn.strip_prefix("<GUID=")?.split_once('>')?.0;
    if hex.len() != 32 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..16)
        .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    guid_text(&bytes?)
}

fn first<'a>(entry: &'a SearchEntry, attr: &str) -> Option<&'a str> {
    entry
        .attrs
        .get(attr)
        .and_then(|v| v.first())
        .map(String::as_str)
}

/// The system roots, read once per process (as ldap3 does for its default).
static SYSTEM_ROOTS: LazyLock<RootCertStore> = LazyLock::new(|| {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(%error, "reading the system CA certificates");
    }
    roots.add_parsable_certificates(found.certs);
    roots
});

/// The system roots plus the CA certificates of `ca_file`.
fn tls_config(ca_file: &str) -> Result<Arc<ClientConfig>, SourceError> {
    let bad = |why: String| SourceError::Settings(format!("ca_file {ca_file:?}: {why}"));
    let pem = std::fs::read(ca_file).map_err(|e| bad(e.to_string()))?;
    let mut roots = SYSTEM_ROOTS.clone();
    let mut added = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots
            .add(cert.map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?;
        added += 1;
    }
    if added == 0 {
        return Err(bad("no PEM certificate in it".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn unavailable(e: impl std::fmt::Display) -> SourceError {
    SourceError::Unavailable(e.to_string())
}

/// DNs compare case-insensitively and without the spaces some servers
/// keep after commas (`uid=a, ou=People` = `uid=a,ou=people`).
fn normalize_dn(dn: &str) -> String {
    dn.split(',')
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(",")
        .to_lowercase()
}

/// `member;range=0-1499` → `Some(1500)`; `member;range=1500-*` (the last
/// range) → `None`.
fn next_range_start(key: &str) -> Option<u64> {
    let range = key.rsplit_once('=')?.1;
    let (_, end) = range.split_once('-')?;
    end.parse::<u64>().ok().map(|end| end + 1)
}

/// The GUID in its usual text form: the first three fields are stored
/// little-endian.
fn guid_text(bytes: &[u8]) -> Option<String> {
    let b: [u8; 16] = bytes.try_into().ok()?;
    Some(format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[3],
        b[2],
        b[1],
        b[0],
        b[5],
        b[4],
        b[7],
        b[6],
        b[8],
        b[9],
        b[10],
        b[11],
        b[12],
        b[13],
        b[14],
        b[15]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_guids_and_dns() {
        assert_eq!(next_range_start("member;range=0-1499"), Some(1500));
        assert_eq!(next_range_start("member;range=1500-*"), None);
        let guid = [
            0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ];
        assert_eq!(
            guid_text(&guid).as_deref(),
            Some("00112233-4455-6677-8899-aabbccddeeff")
        );
        assert_eq!(normalize_dn("uid=A, ou=People"), "uid=a,ou=people");
        // Samba's answer for alice with the extended-DN control (no value).
        let extended =
            "<GUID=6e9556e2f29c3147af4d660b29d128fd>;<SID=0105>;CN=alice,CN=Users,DC=corp";
        assert_eq!(
            extended_guid(extended).as_deref(),
            Some("e256956e-9cf2-4731-af4d-660b29d128fd")
        );
        assert_eq!(plain_dn(extended), "CN=alice,CN=Users,DC=corp");
        assert_eq!(plain_dn("CN=bob,DC=corp"), "CN=bob,DC=corp");
        assert_eq!(extended_guid("CN=bob,DC=corp"), None);
        assert_eq!(parenthesized("cn=x"), "(cn=x)");
    }

    /// A `ca_file` that cannot work is a settings error naming the file,
    /// as is one on a connection that never uses TLS.
    #[test]
    fn unusable_ca_files_are_settings_errors() {
        let dir = std::env::temp_dir().join(format!("roster-ca-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let not_pem = dir.join("not.pem");
        std::fs::write(&not_pem, "not a certificate\n").unwrap();
        let missing = dir.join("missing.pem");
        for (file, why) in [(&missing, "No such file"), (&not_pem, "no PEM certificate")] {
            let file = file.to_str().unwrap();
            let err = tls_config(file).expect_err("refused");
            assert!(
                matches!(&err, SourceError::Settings(m) if m.contains(file) && m.contains(why)),
                "{err}"
            );
        }
        let plain = LdapSettings {
            url: "ldap://ldap.example:389".into(),
            users_base_dn: "ou=people".into(),
            groups_base_dn: "ou=groups".into(),
            ca_file: not_pem.to_str().unwrap().into(),
            ..LdapSettings::default()
        };
        assert!(matches!(plain.validate(), Err(SourceError::Settings(m)) if m.contains("ca_file")));
        let starttls = LdapSettings {
            starttls: true,
            ..plain
        };
        assert!(starttls.validate().is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
