//! Races through the real gateway and PostgreSQL: concurrent membership
//! PATCHes, concurrent conditional writes (If-Match), unconditional
//! last-writer-wins checked against the change stream, and concurrent
//! creates of one userName.

use futures::StreamExt;
use reqwest::Method;
use roster_proto::directory::{Change, ChangeKind, change};
use roster_testkit::app;
use roster_testkit::app::{
    Reply, Scim, bare_user, changes_up_to, group, head_revision, member_ids, patch_op,
};
use serde_json::{Value, json};

/// Requests in flight at once (the machine has 2 cores; the point is overlap).
const CONCURRENCY: usize = 8;

async fn serve(prefix: &str) -> (app::Served, Scim) {
    let served = app::serve_postgres_with(prefix, &[("ROSTER_PROGRESS_INTERVAL_MS", "200")]).await;
    let scim = served.scim();
    (served, scim)
}

/// Sends all `requests` with [`CONCURRENCY`] in flight; answers in request order.
async fn concurrently(
    scim: &Scim,
    requests: Vec<(Method, String, Value, Option<String>)>,
) -> Vec<Reply> {
    let mut answers: Vec<(usize, Reply)> = futures::stream::iter(requests.into_iter().enumerate())
        .map(|(i, (method, path, body, if_match))| async move {
            let headers: Vec<(&str, &str)> =
                if_match.iter().map(|v| ("if-match", v.as_str())).collect();
            let reply = scim
                .try_send(method, &path, Some(&body), &headers)
                .await
                .unwrap_or_else(|e| panic!("{path}: {}", e.without_url()));
            (i, reply)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    answers.sort_by_key(|(i, _)| *i);
    answers.into_iter().map(|(_, r)| r).collect()
}

/// The resource version from `meta.version` (`W/"<n>"`).
fn version(resource: &Value) -> i64 {
    resource["meta"]["version"]
        .as_str()
        .and_then(|v| v.trim_start_matches("W/").trim_matches('"').parse().ok())
        .unwrap_or_else(|| panic!("no version in {resource}"))
}

/// [`serve`] with one user `user_name`; also returns its id and path.
async fn serve_with_user(prefix: &str, user_name: &str) -> (app::Served, Scim, String, String) {
    let (served, scim) = serve(prefix).await;
    let id = scim.create_user(user_name).await;
    let path = format!("/Users/{id}");
    (served, scim, id, path)
}

/// Every change of `directory_id` up to the current head, in stream order.
async fn stream(grpc: &str, directory_id: &str) -> Vec<Change> {
    changes_up_to(grpc, directory_id, head_revision(grpc, directory_id).await).await
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_member_patches_sum_up_exactly() {
    let (served, scim) = serve("conc_members").await;
    let users = scim.create_users("member", 60).await;
    let group_id = scim.create_group("crowd").await;
    let path = format!("/Groups/{group_id}");
    let initial: Vec<Value> = users[..30].iter().map(|id| json!({"value": id})).collect();
    let first = scim
        .patch(
            &path,
            &patch_op(json!([{"op": "add", "path": "members", "value": initial}])),
        )
        .await;
    assert!(first.status < 300, "{}", first.text);

    // Adds of 30..60 and removes of 0..15, interleaved, all at once.
    let mut requests = Vec::new();
    for i in 0..30 {
        let added = &users[30 + i];
        requests.push(patch_op(
            json!([{"op": "add", "path": "members", "value": [{"value": added}]}]),
        ));
        if i < 15 {
            let removed = &users[i];
            requests.push(patch_op(
                json!([{"op": "remove", "path": format!("members[value eq \"{removed}\"]")}]),
            ));
        }
    }
    let answers = concurrently(
        &scim,
        requests
            .into_iter()
            .map(|b| (Method::PATCH, path.clone(), b, None))
            .collect(),
    )
    .await;
    for a in &answers {
        assert!(
            (200..300).contains(&a.status),
            "a membership PATCH failed: {} {}",
            a.status,
            a.text
        );
    }

    let mut expected: Vec<String> = users[15..].to_vec();
    expected.sort();
    let stored = scim.get(&path).await.expect(200, "group");
    assert_eq!(
        member_ids(&stored.body),
        expected,
        "membership is not the sum of the PATCHes"
    );

    // The stream agrees: replaying its member events gives the same set.
    let mut replayed = std::collections::BTreeSet::new();
    for c in stream(&served.grpc, &served.directory_id).await {
        if let Some(change::Resource::Membership(m)) = &c.resource {
            if m.group_id != group_id {
                continue;
            }
            match ChangeKind::try_from(c.kind) {
                Ok(ChangeKind::MemberAdded) => {
                    assert!(replayed.insert(m.member_id.clone()), "added twice: {c:?}")
                }
                Ok(ChangeKind::MemberRemoved) => {
                    assert!(replayed.remove(&m.member_id), "removed absent: {c:?}")
                }
                _ => {}
            }
        }
    }
    assert_eq!(
        replayed.into_iter().collect::<Vec<_>>(),
        expected,
        "stream replay differs"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn if_match_lets_exactly_one_writer_win_per_version() {
    let (served, scim, id, path) = serve_with_user("conc_ifmatch", "contended@example.com").await;
    let rounds = 5;
    let mut winners = Vec::new();
    for round in 0..rounds {
        let current = scim.get(&path).await.expect(200, "get");
        let tag = current.header("etag").expect("ETag").to_string();
        let requests = (0..CONCURRENCY)
            .map(|k| {
                let title = format!("round{round}-writer{k}");
                if k % 2 == 0 {
                    let mut body = bare_user("contended@example.com");
                    body["title"] = json!(title);
                    (Method::PUT, path.clone(), body, Some(tag.clone()))
                } else {
                    let body =
                        patch_op(json!([{"op": "replace", "path": "title", "value": title}]));
                    (Method::PATCH, path.clone(), body, Some(tag.clone()))
                }
            })
            .collect();
        let answers = concurrently(&scim, requests).await;
        let won: Vec<&Reply> = answers.iter().filter(|a| a.status == 200).collect();
        let lost = answers.iter().filter(|a| a.status == 412).count();
        assert_eq!(
            won.len(),
            1,
            "round {round}: winners {:?}",
            answers.iter().map(|a| a.status).collect::<Vec<_>>()
        );
        assert_eq!(lost, CONCURRENCY - 1, "round {round}: every loser gets 412");
        for a in answers.iter().filter(|a| a.status == 412) {
            assert_eq!(a.body["schemas"][0], app::ERROR_SCHEMA);
        }
        let winner = won[0];
        assert_eq!(
            version(&winner.body),
            version(&current.body) + 1,
            "round {round}"
        );
        let stored = scim.get(&path).await.expect(200, "get");
        assert_eq!(
            stored.body["title"], winner.body["title"],
            "round {round}: the winner is stored"
        );
        winners.push(winner.body["title"].as_str().unwrap().to_string());
    }

    // None silently lost, none invented: one update event per winner, in order.
    let updates: Vec<String> = stream(&served.grpc, &served.directory_id)
        .await
        .into_iter()
        .filter(|c| c.resource_id == id && c.kind == ChangeKind::UserUpdated as i32)
        .map(|c| match c.resource {
            Some(change::Resource::User(u)) => u.title,
            _ => panic!("user.updated without a user"),
        })
        .collect();
    assert_eq!(updates, winners);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_if_match_the_last_writer_wins_consistently_with_the_stream() {
    let (served, scim, id, path) = serve_with_user("conc_lww", "lww@example.com").await;
    let writers = 16;
    let requests = (0..writers)
        .map(|k| {
            let body = patch_op(json!([
                {"op": "replace", "path": "title", "value": format!("title-{k}")},
                {"op": "replace", "path": "displayName", "value": format!("name-{k}")},
            ]));
            (Method::PATCH, path.clone(), body, None)
        })
        .collect();
    for a in concurrently(&scim, requests).await {
        assert_eq!(a.status, 200, "{}", a.text);
    }
    let stored = scim.get_ok(&path).await;
    assert_eq!(
        version(&stored),
        1 + writers as i64,
        "every write bumped the version once"
    );
    let suffix = stored["title"]
        .as_str()
        .unwrap()
        .trim_start_matches("title-")
        .to_string();
    assert_eq!(
        stored["displayName"],
        format!("name-{suffix}"),
        "a PATCH was applied half-way"
    );

    let events: Vec<Change> = stream(&served.grpc, &served.directory_id)
        .await
        .into_iter()
        .filter(|c| c.resource_id == id)
        .collect();
    let versions: Vec<i64> = events.iter().map(|c| c.version).collect();
    assert_eq!(
        versions,
        (1..=1 + writers as i64).collect::<Vec<_>>(),
        "versions in the stream"
    );
    let Some(change::Resource::User(last)) = &events.last().expect("events").resource else {
        panic!("the last event carries no user");
    };
    assert_eq!(
        last.title,
        stored["title"].as_str().unwrap(),
        "stream and store disagree"
    );
    assert_eq!(last.display_name, stored["displayName"].as_str().unwrap());
    assert_eq!(
        last.meta.as_ref().map(|m| m.version),
        Some(version(&stored))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_creates_of_one_name_yield_exactly_one_resource() {
    let (_served, scim) = serve("conc_create").await;
    let attempts = 16;
    // Spelled in different cases: userName is unique case-insensitively.
    let users = (0..attempts)
        .map(|k| {
            let name = if k % 2 == 0 {
                "Twin@Example.com"
            } else {
                "twin@example.com"
            };
            (Method::POST, "/Users".to_string(), bare_user(name), None)
        })
        .collect();
    let groups = (0..attempts)
        .map(|_| {
            (
                Method::POST,
                "/Groups".to_string(),
                group("twins", &[]),
                None,
            )
        })
        .collect();
    for (what, requests, endpoint) in [("user", users, "/Users"), ("group", groups, "/Groups")] {
        let answers = concurrently(&scim, requests).await;
        let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
        assert_eq!(
            statuses.iter().filter(|s| **s == 201).count(),
            1,
            "{what}: {statuses:?}"
        );
        for a in answers.iter().filter(|a| a.status != 201) {
            assert_eq!(a.status, 409, "{what}: {}", a.text);
            assert_eq!(a.body["scimType"], "uniqueness", "{what}: {}", a.text);
        }
        assert_eq!(
            scim.list_all(endpoint).await.len(),
            1,
            "{what}: stored once"
        );
    }
}

/// Users in the membership-versus-delete race.
const LEAVERS: usize = 60;

/// The measured deadlock (docs/reliability.md, "one lock order"): each user, a member of two of
/// four groups, is raced by three PATCHes adding it (to both its groups and
/// one more) and its own DELETE, four requests in flight. No request may
/// answer 5xx: a PATCH that loses the race to the DELETE is `400
/// invalidValue` (unknown member), and no group keeps a deleted user.
#[tokio::test(flavor = "multi_thread")]
async fn membership_patches_racing_user_deletes_never_answer_5xx() {
    let (_served, scim) = serve("conc_leavers").await;
    let groups = scim.create_groups("team", 4).await;
    let add =
        |id: &str| patch_op(json!([{"op": "add", "path": "members", "value": [{"value": id}]}]));
    let mut users = Vec::new();
    for i in 0..LEAVERS {
        let id = scim.create_user(&format!("leaver{i}@example.com")).await;
        for g in [&groups[i % 4], &groups[(i + 1) % 4]] {
            let joined = scim.patch(&format!("/Groups/{g}"), &add(&id)).await;
            assert!(joined.status < 300, "{}", joined.text);
        }
        users.push(id);
    }
    let mut requests = Vec::new();
    for (i, id) in users.iter().enumerate() {
        for g in [&groups[i % 4], &groups[(i + 1) % 4], &groups[(i + 2) % 4]] {
            requests.push((Method::PATCH, format!("/Groups/{g}"), Some(add(id))));
        }
        requests.push((Method::DELETE, format!("/Users/{id}"), None));
    }
    let answers: Vec<(String, Reply)> = futures::stream::iter(requests)
        .map(|(method, path, body)| {
            let scim = &scim;
            async move {
                let reply = scim
                    .try_send(method, &path, body.as_ref(), &[])
                    .await
                    .unwrap_or_else(|e| panic!("{path}: {}", e.without_url()));
                (path, reply)
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let failed: Vec<String> = answers
        .iter()
        .filter(|(_, r)| {
            r.status >= 300 && !(r.status == 400 && r.body["scimType"] == "invalidValue")
        })
        .map(|(path, r)| format!("{path}: {} {}", r.status, r.text))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:#?}",
        failed.len(),
        answers.len()
    );
    for g in &groups {
        let stored = scim.get(&format!("/Groups/{g}")).await.expect(200, "group");
        let left: Vec<String> = member_ids(&stored.body)
            .into_iter()
            .filter(|m| users.contains(m))
            .collect();
        assert!(left.is_empty(), "group {g} keeps deleted users {left:?}");
    }
}
