//! LDAP and Active Directory sources: a simple bind (over `ldap://`,
//! StartTLS or `ldaps://`), paged subtree searches of the users and groups
//! bases, and the mapping of entries to the normalized model.
//!
//! Generic LDAP (OpenLDAP, 389-DS): ids from `entryUUID`, members from
//! `member` (groupOfNames), `uniqueMember` (groupOfUniqueNames) and
//! `memberUid` (posixGroup). Active Directory: ids from `objectGUID`, the
//! `userAccountControl` disabled bit, and ranged retrieval of `member`
//! (`member;range=0-1499`…) for groups larger than the server's MaxValRange.

use std::collections::HashMap;
use std::time::Duration;

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};
use roster_store::{Email, SourceKind, UserFields};
use serde::{Deserialize, Serialize};

use crate::error::SourceError;
use crate::snapshot::{Mappings, Source, SourceGroup, SourceMember, SourceSnapshot, SourceUser};

/// `userAccountControl` bit ACCOUNTDISABLE.
const UAC_DISABLED: u64 = 0x2;

/// The non-secret settings of an LDAP or AD source (stored as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LdapSettings {
    /// `ldap://host:389` or `ldaps://host:636`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS before binding.
    pub starttls: bool,
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
}

impl Default for LdapSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            starttls: false,
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
        let conn_settings = LdapConnSettings::new()
            .set_conn_timeout(timeout)
            .set_starttls(self.settings.starttls);
        let (conn, mut ldap) = LdapConnAsync::with_settings(conn_settings, &self.settings.url)
            .await
            .map_err(unavailable)?;
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

    /// Every entry under `base` matching `filter`, in pages.
    async fn search(
        &self,
        ldap: &mut Ldap,
        base: &str,
        filter: &str,
        attrs: Vec<String>,
    ) -> Result<Vec<SearchEntry>, SourceError> {
        let adapters: Vec<Box<dyn Adapter<'_, String, Vec<String>>>> = vec![
            Box::new(EntriesOnly::new()),
            Box::new(PagedResults::new(self.settings.page_size)),
        ];
        let mut stream = ldap
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
            let guid = entry.bin_attrs.get("objectGUID")?.first()?;
            guid_text(guid)
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
    /// `member;range=0-1499` and the rest must be asked for range by range.
    async fn ranged_members(
        &self,
        ldap: &mut Ldap,
        entry: &mut SearchEntry,
    ) -> Result<(), SourceError> {
        let Some(key) = entry
            .attrs
            .keys()
            .find(|k| k.to_ascii_lowercase().starts_with("member;range="))
            .cloned()
        else {
            return Ok(());
        };
        let mut values = entry.attrs.remove(&key).unwrap_or_default();
        let mut range_key = key;
        while let Some(next) = next_range_start(&range_key) {
            let attr = format!("member;range={next}-*");
            let (found, _) = ldap
                .search(&entry.dn, Scope::Base, "(objectClass=*)", vec![attr])
                .await
                .map_err(unavailable)?
                .success()
                .map_err(unavailable)?;
            let Some(found) = found.into_iter().next().map(SearchEntry::construct) else {
                break;
            };
            let Some((k, v)) = found
                .attrs
                .into_iter()
                .find(|(k, _)| k.to_ascii_lowercase().starts_with("member;range="))
            else {
                break;
            };
            values.extend(v);
            range_key = k;
        }
        entry.attrs.insert("member".into(), values);
        Ok(())
    }

    fn group_of(
        &self,
        entry: &SearchEntry,
        by_dn: &HashMap<String, SourceMember>,
        by_uid: &HashMap<String, String>,
    ) -> Option<SourceGroup> {
        let id = self.id_of(entry)?;
        let display_name = first(entry, "cn")?.to_string();
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
        members.sort();
        members.dedup();
        Some(SourceGroup {
            external_id: id,
            display_name,
            members,
        })
    }
}

#[async_trait::async_trait]
impl Source for LdapSource {
    #[tracing::instrument(skip(self), fields(kind = %self.kind, url = %self.settings.url))]
    async fn read(&self) -> Result<SourceSnapshot, SourceError> {
        let mut ldap = self.connect().await?;
        let s = &self.settings;
        let user_entries = self
            .search(
                &mut ldap,
                &s.users_base_dn,
                self.users_filter(),
                self.user_attrs(),
            )
            .await?;
        let group_attrs = [
            self.id_attribute(),
            "cn",
            "member",
            "uniqueMember",
            "memberUid",
        ];
        let mut group_entries = self
            .search(
                &mut ldap,
                &s.groups_base_dn,
                self.groups_filter(),
                group_attrs.map(str::to_owned).to_vec(),
            )
            .await?;
        if self.is_ad() {
            for entry in &mut group_entries {
                self.ranged_members(&mut ldap, entry).await?;
            }
        }
        let _ = ldap.unbind().await;

        let mut by_dn = HashMap::new();
        let mut by_uid = HashMap::new();
        let mut users = Vec::with_capacity(user_entries.len());
        for entry in &user_entries {
            let Some(user) = self.user_of(entry) else {
                tracing::warn!(dn = %entry.dn, "user entry without an id or a user name: skipped");
                continue;
            };
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
            .filter_map(|e| self.group_of(e, &by_dn, &by_uid))
            .collect();
        tracing::info!(users = users.len(), "source read");
        Ok(SourceSnapshot { users, groups })
    }
}

fn first<'a>(entry: &'a SearchEntry, attr: &str) -> Option<&'a str> {
    entry
        .attrs
        .get(attr)
        .and_then(|v| v.first())
        .map(String::as_str)
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
    }
}
