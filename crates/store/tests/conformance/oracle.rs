//! The filter translation checked against the SCIM crate's evaluator: the
//! same users (and groups) are filtered in SQL and by
//! `roster_scim::filter::matches_kind` on their SCIM JSON; the sets must be
//! equal for every filter.

use std::collections::BTreeSet;

use roster_scim::ResourceKind;
use roster_store::*;
use serde_json::{Value, json};

use super::{directory, filter, member, query};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// (raw JSON, normalized fields) of the fixed test users. The normalized
/// fields are derived from the JSON the way the gateway does.
fn fixed_users() -> Vec<Value> {
    vec![
        json!({
            "userName": "Alice", "externalId": "ext-1", "active": true, "displayName": "Alice Smith",
            "name": {"givenName": "Alice", "familyName": "Smith"}, "title": "Engineer",
            "emails": [
                {"value": "alice@example.com", "type": "work", "primary": true},
                {"value": "alice@home.org", "type": "home"}
            ],
            "nickName": "Al", "phoneNumbers": [{"value": "555-1234", "type": "work"}], "loginCount": 5,
            ENTERPRISE: {"employeeNumber": "100", "department": "R&D", "manager": {"value": "m1"}}
        }),
        json!({
            "userName": "bob", "externalId": "EXT-2", "active": false, "displayName": "Bob",
            "name": {"givenName": "Bob", "familyName": "Jones"}, "title": "engineer",
            "emails": [{"value": "bob@example.com", "type": "work", "primary": true}],
            "loginCount": 12, ENTERPRISE: {"department": "Sales"}
        }),
        json!({"userName": "carol_50%", "active": true, "nickName": "C", "loginCount": 12.5}),
        json!({
            "userName": "dave.o'brien", "active": true, "title": "Manager",
            "emails": [{"value": "DAVE@EXAMPLE.COM", "type": "work", "primary": false}],
            "phoneNumbers": [{"value": "555-9999", "type": "mobile"}],
            ENTERPRISE: {"employeeNumber": "200", "manager": {"value": "M1"}}
        }),
    ]
}

fn fields_of(raw: &Value) -> UserFields {
    let s = |v: &Value| v.as_str().map(str::to_string);
    let ent = &raw[ENTERPRISE];
    UserFields {
        user_name: raw["userName"].as_str().unwrap().to_string(),
        external_id: s(&raw["externalId"]),
        active: raw["active"].as_bool().unwrap_or(false),
        display_name: s(&raw["displayName"]),
        given_name: s(&raw["name"]["givenName"]),
        family_name: s(&raw["name"]["familyName"]),
        emails: raw["emails"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| Email {
                        value: e["value"].as_str().unwrap_or_default().to_string(),
                        r#type: e["type"].as_str().unwrap_or_default().to_string(),
                        primary: e["primary"].as_bool().unwrap_or(false),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        title: s(&raw["title"]),
        department: s(&ent["department"]),
        manager_id: s(&ent["manager"]["value"]),
        employee_number: s(&ent["employeeNumber"]),
        custom_attributes: Default::default(),
    }
}

/// The SCIM JSON the evaluator sees: the stored JSON plus id, meta, groups.
fn user_json(u: &User) -> Value {
    let mut v = u.raw.to_value();
    v["schemas"] = json!(["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE]);
    v["id"] = json!(u.id.to_string());
    v["meta"] = json!({
        "resourceType": "User",
        "created": u.created_at.to_rfc3339(),
        "lastModified": u.updated_at.to_rfc3339(),
    });
    if !u.group_ids.is_empty() {
        v["groups"] = json!(
            u.group_ids
                .iter()
                .map(|g| json!({"value": g.to_string()}))
                .collect::<Vec<_>>()
        );
    }
    v
}

fn group_json(g: &Group) -> Value {
    let mut v = g.raw.to_value();
    v["id"] = json!(g.id.to_string());
    v["displayName"] = json!(g.display_name);
    if let Some(e) = &g.external_id {
        v["externalId"] = json!(e);
    }
    let members = g.members.clone().unwrap_or_default();
    if !members.is_empty() {
        v["members"] = json!(
            members
                .iter()
                .map(|m| json!({"value": m.id.to_string(), "type": if m.kind == MemberKind::User { "User" } else { "Group" }}))
                .collect::<Vec<_>>()
        );
    }
    v
}

fn user_filters(alice: &User, group: &Group) -> Vec<String> {
    let mut f: Vec<String> = [
        r#"userName eq "alice""#,
        r#"USERNAME eq "ALICE""#,
        r#"userName ne "bob""#,
        r#"userName co "A""#,
        r#"userName sw "c""#,
        r#"userName ew "N""#,
        r#"userName gt "bob""#,
        r#"userName ge "bob""#,
        r#"userName lt "c""#,
        r#"userName le "carol_50%""#,
        r#"userName co "50%""#,
        r#"userName co "_""#,
        r#"userName co "'""#,
        r#"userName co "%""#,
        r#"userName pr"#,
        r#"externalId eq "ext-1""#,
        r#"externalId eq "EXT-1""#,
        r#"externalId sw "EXT""#,
        r#"externalId pr"#,
        r#"externalId eq null"#,
        r#"externalId ne null"#,
        r#"active eq true"#,
        r#"active eq false"#,
        r#"active ne true"#,
        r#"displayName co "smith""#,
        r#"name.givenName eq "bob""#,
        r#"name.familyName sw "J""#,
        r#"name.formatted pr"#,
        r#"name[givenName eq "Alice"]"#,
        r#"title eq "engineer""#,
        r#"title pr"#,
        r#"not (title pr)"#,
        r#"title gt "F""#,
        r#"emails.value co "example.com""#,
        r#"emails co "example""#,
        r#"emails[type eq "work" and value co "alice"]"#,
        r#"emails[type eq "home"]"#,
        r#"emails[not (primary eq true)]"#,
        r#"emails.type eq "home""#,
        r#"emails.primary eq true"#,
        r#"emails pr"#,
        r#"emails.value ew ".COM""#,
        r#"emails.value ne "bob@example.com""#,
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "r&d""#,
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber pr"#,
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber gt "150""#,
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "m1""#,
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager eq "M1""#,
        r#"nickName eq "al""#,
        r#"NICKNAME eq "AL""#,
        r#"nickName pr"#,
        r#"phoneNumbers[type eq "mobile"]"#,
        r#"phoneNumbers.value sw "555""#,
        r#"phoneNumbers.type eq "WORK""#,
        r#"loginCount gt 10"#,
        r#"loginCount eq 5"#,
        r#"loginCount le 12"#,
        r#"loginCount pr"#,
        r#"loginCount eq "5""#,
        r#"meta.created gt "2000-01-01T00:00:00Z""#,
        r#"meta.lastModified lt "2000-01-01T00:00:00Z""#,
        r#"(userName eq "alice" or userName eq "bob") and active eq true"#,
        r#"not (active eq true) or title eq "Manager""#,
        r#"userName eq "x" or not (emails pr)"#,
        r#"not (not (userName sw "a"))"#,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    f.push(format!(r#"id eq "{}""#, alice.id));
    f.push(format!(
        r#"id eq "{}""#,
        alice.id.to_string().to_uppercase()
    ));
    f.push(format!(r#"groups.value eq "{}""#, group.id));
    f.push(format!(r#"groups[value eq "{}"]"#, group.id));
    f.push(r#"groups pr"#.into());
    f
}

pub async fn check_filters_against_evaluator(store: &dyn Store) {
    let dir = directory(store, "oracle").await;
    let mut created = Vec::new();
    for raw in fixed_users() {
        let write = UserWrite {
            fields: fields_of(&raw),
            raw,
        };
        created.push(
            store
                .create_user(dir.id, write)
                .await
                .expect("create oracle user"),
        );
    }
    let mut team = super::group("Team");
    team.external_id = Some("T-1".into());
    team.raw["externalId"] = json!("T-1");
    team.members = Some(vec![member(&created[0]), member(&created[3])]);
    let team = store.create_group(dir.id, team).await.unwrap();
    let empty = store
        .create_group(dir.id, super::group("empty"))
        .await
        .unwrap();
    let users: Vec<User> = {
        let mut out = Vec::new();
        for u in &created {
            out.push(store.get_user(dir.id, u.id).await.unwrap());
        }
        out
    };
    let groups = [
        store.get_group(dir.id, team.id, true).await.unwrap(),
        store.get_group(dir.id, empty.id, true).await.unwrap(),
    ];

    let mut failures = Vec::new();
    for text in user_filters(&users[0], &team) {
        let expected = evaluated(&text, &users, ResourceKind::User, user_json, |u| u.id);
        match store.list_users(dir.id, &query(Some(&text))).await {
            Ok(page) => {
                let got: BTreeSet<UserId> = page.items.iter().map(|u| u.id).collect();
                if got != expected || page.total != expected.len() as i64 {
                    failures.push(format!(
                        "{text}: SQL {} vs evaluator {}",
                        names(&users, &got),
                        names(&users, &expected)
                    ));
                }
            }
            Err(e) => failures.push(format!("{text}: error {e:?}")),
        }
    }
    let group_filters = [
        r#"displayName eq "team""#.to_string(),
        r#"displayName co "MP""#.to_string(),
        r#"externalId pr"#.to_string(),
        r#"externalId eq "t-1""#.to_string(),
        r#"members pr"#.to_string(),
        r#"not (members pr)"#.to_string(),
        format!(r#"members.value eq "{}""#, users[3].id),
        format!(r#"members[value eq "{}"]"#, users[1].id),
        r#"members[type eq "User"]"#.to_string(),
    ];
    for text in group_filters {
        let expected = evaluated(&text, &groups, ResourceKind::Group, group_json, |g| g.id);
        match store.list_groups(dir.id, &query(Some(&text))).await {
            Ok(page) => {
                let got: BTreeSet<GroupId> = page.items.iter().map(|g| g.id).collect();
                if got != expected {
                    failures.push(format!("{text}: SQL {got:?} vs evaluator {expected:?}"));
                }
            }
            Err(e) => failures.push(format!("{text}: error {e:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "SQL and evaluator disagree:\n{}",
        failures.join("\n")
    );
}

/// The ids of the `items` that the SCIM crate's evaluator finds `text`
/// matches, the answer SQL must agree with.
fn evaluated<T, I: Ord>(
    text: &str,
    items: &[T],
    kind: ResourceKind,
    json: fn(&T) -> Value,
    id: fn(&T) -> I,
) -> BTreeSet<I> {
    let f = filter(text);
    items
        .iter()
        .filter(|item| roster_scim::filter::matches_kind(&f, &json(item), kind))
        .map(id)
        .collect()
}

fn names(users: &[User], ids: &BTreeSet<UserId>) -> String {
    let n: Vec<&str> = users
        .iter()
        .filter(|u| ids.contains(&u.id))
        .map(|u| u.fields.user_name.as_str())
        .collect();
    format!("{n:?}")
}
