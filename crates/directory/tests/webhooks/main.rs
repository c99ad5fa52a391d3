//! Webhook delivery end to end: a real HTTP receiver (`roster_testkit::app::webhooks`)
//! receiving from the real directory service over a real store, on
//! PostgreSQL and SQLite. Signatures are checked with a verifier written
//! from the Standard Webhooks specification; waits poll a condition with a
//! deadline, never a bare sleep.

use std::sync::Arc;
use std::time::Duration;

use roster_directory::DirectoryConfig;
use roster_directory::webhooks::WebhookConfig;
use roster_proto::admin::admin_service_client::AdminServiceClient;
use roster_proto::admin::replay_webhook_endpoint_request::From as ReplayFrom;
use roster_proto::admin::*;
use roster_store::WebhookId;
use roster_testkit::app::webhooks::{Answer, Received, Receiver, verify_spec};
use roster_testkit::app::*;
use roster_testkit::{eventually, on_both_backends};
use roster_webhook::SealingKey;
use tonic::Code;
use tonic::transport::Channel;

const DEADLINE: Duration = Duration::from_secs(30);

fn sealing_key() -> Arc<SealingKey> {
    let text = SealingKey::generate_text().expect("key");
    Arc::new(SealingKey::parse(&text).expect("parse key"))
}

/// [`config`] with the key ring `current` + `previous`
/// (`ROSTER_SECRET_KEY`, `ROSTER_SECRET_KEY_PREVIOUS`).
fn keyed(current: &str, previous: &[&str]) -> DirectoryConfig {
    config(&Arc::new(
        SealingKey::parse_ring(current, previous).expect("key ring"),
    ))
}

/// Fast retries and a receiver on loopback over plain HTTP.
fn config(key: &Arc<SealingKey>) -> DirectoryConfig {
    DirectoryConfig {
        webhooks: WebhookConfig {
            sealing_key: Some(Arc::clone(key)),
            allow_http: true,
            allow_private: true,
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_millis(40),
            connect_timeout: Duration::from_millis(500),
            request_timeout: Duration::from_millis(400),
            scan_interval: Duration::from_millis(50),
            lease_ttl: Duration::from_secs(2),
            ..WebhookConfig::default()
        },
        ..test_config()
    }
}

async fn create_endpoint(
    admin: &mut AdminServiceClient<Channel>,
    directory_id: &str,
    url: &str,
    kinds: &[&str],
) -> (WebhookEndpoint, String) {
    let created = admin
        .create_webhook_endpoint(CreateWebhookEndpointRequest {
            directory_id: directory_id.into(),
            url: url.into(),
            kinds: kinds.iter().map(|k| k.to_string()).collect(),
            description: "test receiver".into(),
            disabled: false,
        })
        .await
        .expect("create endpoint")
        .into_inner();
    assert!(created.secret.starts_with("whsec_"));
    (created.endpoint.expect("endpoint"), created.secret)
}

async fn endpoint(admin: &mut AdminServiceClient<Channel>, id: &str) -> WebhookEndpoint {
    admin
        .get_webhook_endpoint(GetWebhookEndpointRequest { id: id.into() })
        .await
        .expect("get endpoint")
        .into_inner()
        .endpoint
        .expect("endpoint")
}

/// RotateWebhookSecret with an hour's overlap of the old and new secrets.
async fn rotate_secret(
    admin: &mut AdminServiceClient<Channel>,
    id: &str,
) -> RotateWebhookSecretResponse {
    let req = RotateWebhookSecretRequest {
        id: id.into(),
        overlap_seconds: 3600,
    };
    succeeded(admin.rotate_webhook_secret(req).await)
}

fn names(requests: &[Received]) -> Vec<String> {
    requests.iter().map(|r| r.user_name().to_owned()).collect()
}

/// Every request for an event arrives before any request for a later one.
fn assert_in_log_order(requests: &[Received]) {
    let revisions: Vec<i64> = requests.iter().map(Received::revision).collect();
    assert!(
        revisions.windows(2).all(|w| w[0] <= w[1]),
        "requests out of change-log order: {revisions:?}"
    );
}

/// Delivered in order despite a receiver that answers 500 twice, drops the
/// connection once and lets one request time out; every attempt signed.
async fn deliveries_arrive_in_order_through_failures(backend: Backend) {
    let key = sealing_key();
    let mut env = Env::on_with_config(backend, "hooks_order", config(&key)).await;
    let dir = env.directory("acme").await;
    let receiver = Receiver::start(Box::new(|r, times| match (r.user_name(), times) {
        ("u03", 0 | 1) => Answer::Status(500),
        ("u05", 0) => Answer::Drop,
        ("u07", 0) => Answer::Hang,
        _ => Answer::Status(202),
    }))
    .await;
    let (hook, secret) = create_endpoint(&mut env.admin, &dir, &receiver.url, &[]).await;
    let expected: Vec<String> = (0..10).map(|i| format!("u{i:02}")).collect();
    for name in &expected {
        env.user(&dir, name).await;
    }

    let delivered = receiver.wait_accepted(expected.len(), DEADLINE).await;
    assert_eq!(names(&delivered), expected, "each event once, in order");
    let all = receiver.requests();
    assert_in_log_order(&all);
    assert_eq!(all.len(), expected.len() + 4, "2 × 500, 1 drop, 1 timeout");
    for r in &all {
        assert!(verify_spec(&secret, r), "signature of {}", r.id);
        assert_eq!(r.json["data"]["event_id"].as_str(), Some(r.id.as_str()));
        assert_eq!(r.kind(), "user.created");
        assert_eq!(r.json["data"]["directory_id"].as_str(), Some(dir.as_str()));
    }

    let req = ListWebhookAttemptsRequest {
        id: hook.id.clone(),
        limit: 100,
    };
    let attempts = succeeded(env.admin.list_webhook_attempts(req).await).attempts;
    let failed: Vec<i32> = attempts
        .iter()
        .filter(|a| !a.succeeded)
        .map(|a| a.status_code)
        .collect();
    assert_eq!(failed.iter().filter(|s| **s == 500).count(), 2);
    assert_eq!(
        failed.iter().filter(|s| **s == 0).count(),
        2,
        "drop and timeout"
    );
    assert!(
        attempts
            .iter()
            .filter(|a| a.succeeded)
            .all(|a| a.status_code == 202 && a.detail == "receiver says hi")
    );
    let state = eventually("the endpoint caught up", DEADLINE, || {
        let mut admin = env.admin.clone();
        let id = hook.id.clone();
        async move {
            let e = endpoint(&mut admin, &id).await;
            (e.lag_revisions == 0).then_some(e)
        }
    })
    .await;
    assert_eq!(
        (state.attempts, state.status),
        (0, WebhookStatus::Active as i32)
    );
}
on_both_backends!(deliveries_arrive_in_order_through_failures);

/// 410 Gone turns the endpoint off after that one attempt.
async fn gone_disables_the_endpoint(backend: Backend) {
    let key = sealing_key();
    let mut env = Env::on_with_config(backend, "hooks_gone", config(&key)).await;
    let dir = env.directory("acme").await;
    let receiver = Receiver::answering(410).await;
    let (hook, _) = create_endpoint(&mut env.admin, &dir, &receiver.url, &[]).await;
    env.user(&dir, "u0").await;
    env.user(&dir, "u1").await;
    let off = eventually("the endpoint is disabled", DEADLINE, || {
        let mut admin = env.admin.clone();
        let id = hook.id.clone();
        async move {
            let e = endpoint(&mut admin, &id).await;
            (!e.enabled).then_some(e)
        }
    })
    .await;
    assert!(
        off.disabled_reason.contains("410"),
        "{}",
        off.disabled_reason
    );
    assert_eq!(receiver.requests().len(), 1, "nothing after the 410");
    assert_eq!(
        off.cursor_revision, hook.cursor_revision,
        "u0 was not delivered"
    );
}
on_both_backends!(gone_disables_the_endpoint);

/// A receiver down for the whole horizon dead-letters the endpoint; skip
/// gives up the stuck event, replay delivers again in order.
async fn dead_letter_then_skip_and_replay(backend: Backend) {
    let key = sealing_key();
    let mut cfg = config(&key);
    cfg.webhooks.retry_horizon = Duration::from_millis(300);
    let mut env = Env::on_with_config(backend, "hooks_dead", cfg).await;
    let dir = env.directory("acme").await;
    let receiver = Receiver::answering(503).await;
    let (hook, _) = create_endpoint(&mut env.admin, &dir, &receiver.url, &[]).await;
    for name in ["u0", "u1", "u2"] {
        env.user(&dir, name).await;
    }
    let dead = eventually("the endpoint is dead-lettered", DEADLINE, || {
        let mut admin = env.admin.clone();
        let id = hook.id.clone();
        async move {
            let e = endpoint(&mut admin, &id).await;
            (e.status == WebhookStatus::DeadLetter as i32).then_some(e)
        }
    })
    .await;
    assert!(dead.enabled);
    assert_eq!(dead.cursor_revision, hook.cursor_revision);
    assert!(dead.lag_revisions >= 3 && dead.failing_since.is_some());
    assert_eq!(dead.lag_events, 3, "u0, u1 and u2 wait");
    let tried = receiver.requests();
    assert!(tried.len() >= 2, "retried within the horizon");
    assert!(tried.iter().all(|r| r.user_name() == "u0"), "never past u0");

    receiver.set_script(Box::new(|_, _| Answer::Status(200)));
    let req = SkipWebhookEventRequest {
        id: hook.id.clone(),
    };
    let skipped = succeeded(env.admin.skip_webhook_event(req).await);
    assert!(skipped.skipped_revision > hook.cursor_revision);
    assert_eq!(
        names(&receiver.wait_accepted(2, DEADLINE).await),
        ["u1", "u2"]
    );

    env.admin
        .replay_webhook_endpoint(ReplayWebhookEndpointRequest {
            id: hook.id.clone(),
            from: Some(ReplayFrom::AfterCursor(dead.cursor.clone())),
        })
        .await
        .unwrap();
    let again = receiver.wait_accepted(5, DEADLINE).await;
    assert_eq!(names(&again), ["u1", "u2", "u0", "u1", "u2"]);
    assert_in_log_order(&again[2..]);
}
on_both_backends!(dead_letter_then_skip_and_replay);

/// A replica killed mid-delivery (its tasks aborted, its lease left to
/// expire) loses nothing: another replica resumes from the cursor and
/// duplicates at most the event that was in flight.
#[tokio::test]
async fn a_replica_killed_mid_delivery_loses_nothing() {
    let key = sealing_key();
    let (store, url) = pg_store("hooks_crash").await;
    let first = Server::start(store, config(&key)).await;
    let mut admin = first.admin().await;
    let mut dir_client = first.directory().await;
    let dir = create_directory_named(&mut admin, "acme").await;
    let receiver = Receiver::start(Box::new(|r, times| match (r.user_name(), times) {
        ("u2", 0) => Answer::Hang,
        _ => Answer::Status(200),
    }))
    .await;
    let (hook, secret) = create_endpoint(&mut admin, &dir, &receiver.url, &[]).await;
    // The first replica must not time the hung request out before it dies.
    for i in 0..5 {
        create_user(&mut dir_client, &dir, &format!("u{i}")).await;
    }
    receiver.wait_requests_for("u2", 1, DEADLINE).await;
    drop(first);

    let second = Server::start(replica_store(&url).await, config(&key)).await;
    let delivered = receiver.wait_accepted(5, DEADLINE).await;
    assert_eq!(names(&delivered), ["u0", "u1", "u2", "u3", "u4"]);
    let all = receiver.requests();
    assert_in_log_order(&all);
    assert_eq!(
        receiver.requests_for("u2"),
        2,
        "only the in-flight event is sent twice"
    );
    assert!(all.iter().all(|r| verify_spec(&secret, r)));
    let mut admin = second.admin().await;
    assert_eq!(endpoint(&mut admin, &hook.id).await.attempts, 0);
}

/// Two replicas over one database: exactly one delivers an endpoint, so
/// every event arrives once and in order.
#[tokio::test]
async fn two_replicas_deliver_each_event_once() {
    let key = sealing_key();
    let (store, url) = pg_store("hooks_lease").await;
    let one = Server::start(store, config(&key)).await;
    let two = Server::start(replica_store(&url).await, config(&key)).await;
    let mut admin = one.admin().await;
    let mut dir_client = two.directory().await;
    let dir = create_directory_named(&mut admin, "acme").await;
    let receiver = Receiver::answering(200).await;
    let (hook, _) = create_endpoint(&mut admin, &dir, &receiver.url, &[]).await;
    let expected: Vec<String> = (0..30).map(|i| format!("u{i:02}")).collect();
    for name in &expected {
        create_user(&mut dir_client, &dir, name).await;
    }
    let delivered = receiver.wait_accepted(expected.len(), DEADLINE).await;
    assert_eq!(names(&delivered), expected);
    assert_eq!(receiver.requests().len(), expected.len(), "no duplicates");
    let store = replica_store(&url).await;
    let id = hook.id.parse().unwrap();
    let leased = roster_store::Store::get_webhook(store.as_ref(), id)
        .await
        .unwrap();
    assert!(leased.lease_owner.is_some());
}

/// Endpoints per directory and kind; rotation signs with both secrets;
/// the test event; the checks on URLs and on a server without a key.
async fn endpoints_filter_rotate_and_test(backend: Backend) {
    let key = sealing_key();
    let mut env = Env::on_with_config(backend, "hooks_admin", config(&key)).await;
    let acme = env.directory("acme").await;
    let globex = env.directory("globex").await;
    let receiver = Receiver::answering(200).await;
    let (groups_only, secret) =
        create_endpoint(&mut env.admin, &acme, &receiver.url, &["group.created"]).await;
    assert_eq!(groups_only.kinds, ["group.created"]);
    env.user(&acme, "not-a-group").await;
    env.group(&globex, "other directory", &[]).await;
    env.group(&acme, "engineering", &[]).await;
    let first = receiver.wait_accepted(1, DEADLINE).await;
    assert_eq!(first[0].kind(), "group.created");
    assert_eq!(
        first[0].json["data"]["resource"]["display_name"].as_str(),
        Some("engineering")
    );

    let rotated = rotate_secret(&mut env.admin, &groups_only.id).await;
    assert_ne!(rotated.secret, secret);
    assert!(
        rotated
            .endpoint
            .unwrap()
            .previous_secret_expires_at
            .is_some()
    );
    env.group(&acme, "sales", &[]).await;
    let second = receiver.wait_accepted(2, DEADLINE).await;
    let during = &second[1];
    assert_eq!(during.signature.split(' ').count(), 2);
    assert!(verify_spec(&secret, during) && verify_spec(&rotated.secret, during));

    let req = SendTestWebhookEventRequest {
        id: groups_only.id.clone(),
    };
    let test = succeeded(env.admin.send_test_webhook_event(req).await)
        .attempt
        .unwrap();
    assert!(test.succeeded && test.status_code == 200);
    let ping = receiver
        .requests()
        .into_iter()
        .find(|r| r.kind() == "test.ping")
        .expect("test event received");
    assert!(verify_spec(&rotated.secret, &ping));

    let req = ListWebhookEndpointsRequest {
        directory_id: globex.clone(),
    };
    let listed = succeeded(env.admin.list_webhook_endpoints(req).await).endpoints;
    assert!(listed.is_empty(), "acme's endpoint is not globex's");
    let req = UpdateWebhookEndpointRequest {
        id: groups_only.id.clone(),
        enabled: Some(false),
        description: Some("paused".into()),
        ..Default::default()
    };
    let updated = succeeded(env.admin.update_webhook_endpoint(req).await)
        .endpoint
        .unwrap();
    assert_eq!(
        (updated.enabled, updated.description.as_str()),
        (false, "paused")
    );
    env.admin
        .delete_webhook_endpoint(DeleteWebhookEndpointRequest {
            id: groups_only.id.clone(),
        })
        .await
        .unwrap();
    let gone = env
        .admin
        .get_webhook_endpoint(GetWebhookEndpointRequest {
            id: groups_only.id.clone(),
        })
        .await;
    assert_eq!(failure_code(gone), Code::NotFound);
}
on_both_backends!(endpoints_filter_rotate_and_test);

/// Plain http and private addresses are refused unless allowed; a server
/// without a sealing key refuses to create endpoints (no clear secrets).
#[tokio::test]
async fn unsafe_urls_and_keyless_servers_are_refused() {
    let key = sealing_key();
    let mut strict = config(&key);
    strict.webhooks.allow_http = false;
    strict.webhooks.allow_private = false;
    let mut env = Env::on_with_config(Backend::Sqlite, "hooks_strict", strict).await;
    let create = |url: &str| CreateWebhookEndpointRequest {
        url: url.into(),
        ..Default::default()
    };
    for url in [
        "http://hooks.example.com/x",
        "https://127.0.0.1/x",
        "https://169.254.169.254/latest",
        "https://[::1]/x",
        "not a url",
    ] {
        let refused = env.admin.create_webhook_endpoint(create(url)).await;
        assert_eq!(failure_code(refused), Code::InvalidArgument, "{url}");
    }
    let ok = env
        .admin
        .create_webhook_endpoint(create("https://hooks.example.com/x"))
        .await;
    assert!(ok.is_ok());

    let mut keyless = Env::on_with_config(Backend::Sqlite, "hooks_keyless", test_config()).await;
    let refused = keyless
        .admin
        .create_webhook_endpoint(create("https://hooks.example.com/x"))
        .await;
    assert_eq!(failure_code(refused), Code::FailedPrecondition);
}

/// A replay while an event is being retried takes effect at once: the
/// worker drops the event it was retrying and delivers from the replayed
/// position, in order.
async fn a_replay_during_retries_restarts_from_the_new_position(backend: Backend) {
    let key = sealing_key();
    let mut env = Env::on_with_config(backend, "hooks_replay", config(&key)).await;
    let dir = env.directory("acme").await;
    let receiver = Receiver::start(Box::new(|r, _| match r.user_name() {
        "u1" => Answer::Status(500),
        _ => Answer::Status(200),
    }))
    .await;
    let (hook, _) = create_endpoint(&mut env.admin, &dir, &receiver.url, &[]).await;
    for name in ["u0", "u1", "u2"] {
        env.user(&dir, name).await;
    }
    receiver.wait_requests_for("u1", 3, DEADLINE).await;
    env.admin
        .replay_webhook_endpoint(ReplayWebhookEndpointRequest {
            id: hook.id.clone(),
            from: Some(ReplayFrom::AfterRevision(hook.cursor_revision)),
        })
        .await
        .unwrap();
    assert_eq!(
        names(&receiver.wait_accepted(2, DEADLINE).await),
        ["u0", "u0"]
    );
    receiver.set_script(Box::new(|_, _| Answer::Status(200)));
    let delivered = receiver.wait_accepted(4, DEADLINE).await;
    assert_eq!(names(&delivered), ["u0", "u0", "u1", "u2"]);
}
on_both_backends!(a_replay_during_retries_restarts_from_the_new_position);

/// The acceptance run: 10,200 changes (100 users, 100 groups of
/// 100 members) to a receiver that answers 500, times out, drops the
/// connection and recovers, every 1,000 events: each event arrives exactly
/// once accepted, in change-log order, every request's signature verified.
#[tokio::test]
async fn ten_thousand_changes_arrive_in_order_through_failures() {
    let key = sealing_key();
    let mut env = Env::on_with_config(Backend::Postgres, "hooks_10k", config(&key)).await;
    let dir = env.directory("acme").await;
    let receiver = Receiver::start(Box::new(|r, times| match (r.revision() % 1_000, times) {
        (100, 0 | 1) => Answer::Status(500),
        (400, 0) => Answer::Hang,
        (700, 0) => Answer::Drop,
        _ => Answer::Status(200),
    }))
    .await;
    let (hook, secret) = create_endpoint(&mut env.admin, &dir, &receiver.url, &[]).await;
    let mut members = Vec::new();
    for i in 0..100 {
        members.push(env.user(&dir, &format!("u{i:03}")).await.id);
    }
    let members: Vec<&str> = members.iter().map(String::as_str).collect();
    for g in 0..100 {
        env.group(&dir, &format!("g{g:03}"), &members).await;
    }
    let total = 100 + 100 + 100 * 100;

    let started = std::time::Instant::now();
    let delivered = receiver
        .wait_accepted(total, Duration::from_secs(600))
        .await;
    eprintln!("delivered {total} events in {:?}", started.elapsed());
    let revisions: Vec<i64> = delivered.iter().map(Received::revision).collect();
    let first = hook.cursor_revision + 1;
    let expected: Vec<i64> = (first..first + total as i64).collect();
    assert_eq!(revisions, expected, "every change once, in order");
    let all = receiver.requests();
    assert_in_log_order(&all);
    let failures = all.len() - delivered.len();
    assert!(failures >= 40, "the scripted failures happened: {failures}");
    assert!(
        all.iter().all(|r| verify_spec(&secret, r)),
        "every signature verifies"
    );
    let kinds = |k: &str| delivered.iter().filter(|r| r.kind() == k).count();
    assert_eq!(
        (
            kinds("user.created"),
            kinds("group.created"),
            kinds("member.added")
        ),
        (100, 100, 10_000)
    );
}

/// A lost sealing key: the endpoint's secret no longer opens, nothing is
/// sent; rotating under the new key brings delivery back, signed with the
/// new secret only.
#[tokio::test]
async fn rotating_after_a_lost_sealing_key_resumes_delivery() {
    let (store, url) = pg_store("hooks_lost_key").await;
    let old = Server::start(store, config(&sealing_key())).await;
    let mut admin = old.admin().await;
    let dir = create_directory_named(&mut admin, "acme").await;
    let receiver = Receiver::answering(200).await;
    let (hook, _) = create_endpoint(&mut admin, &dir, &receiver.url, &[]).await;
    drop(old);

    let new = Server::start(replica_store(&url).await, config(&sealing_key())).await;
    let mut admin = new.admin().await;
    let mut dir_client = new.directory().await;
    create_user(&mut dir_client, &dir, "u0").await;
    let rotated = rotate_secret(&mut admin, &hook.id).await;
    let delivered = receiver.wait_accepted(1, DEADLINE).await;
    assert_eq!(names(&delivered), ["u0"]);
    assert_eq!(delivered[0].signature.split(' ').count(), 1);
    assert!(verify_spec(&rotated.secret, &delivered[0]));
}

/// The endpoint's sealed secrets as stored: current and previous.
async fn stored_secrets(env: &Env, id: &str) -> (Vec<u8>, Option<Vec<u8>>) {
    let hook = env.store.get_webhook(WebhookId(id.parse().unwrap())).await;
    let hook = hook.expect("stored endpoint");
    (hook.sealed_secret, hook.sealed_previous_secret)
}

/// Rotating the server's sealing key (docs/operations.md): the signing
/// secrets sealed under key A (the current one and, after a signing-secret
/// rotation, the previous one) still sign after a restart with B current and
/// A previous; `ResealSecrets` seals both under B, after which B alone signs
/// with both; under an unrelated key alone nothing is signed, the test event
/// says which setting to fix, the stored secrets are left as they were, and
/// the right key delivers what waited, in order.
async fn deliveries_survive_a_sealing_key_rotation(backend: Backend) {
    let [a, b, wrong] = [(); 3].map(|()| SealingKey::generate_text().expect("key"));
    let mut env = Env::on_with_config(backend, "hooks_keyrot", keyed(&a, &[])).await;
    let acme = env.directory("acme").await;
    let receiver = Receiver::answering(200).await;
    let (hook, first) = create_endpoint(&mut env.admin, &acme, &receiver.url, &[]).await;
    let rotate = RotateWebhookSecretRequest {
        id: hook.id.clone(),
        overlap_seconds: 3600,
    };
    let second = env.admin.rotate_webhook_secret(rotate).await.unwrap();
    let second = second.into_inner().secret;
    env.user(&acme, "u0").await;
    receiver.wait_accepted(1, DEADLINE).await;
    let both_sign = |r: &Received| verify_spec(&first, r) && verify_spec(&second, r);

    let mut env = env.restart(keyed(&b, &[&a])).await;
    env.user(&acme, "u1").await;
    assert!(both_sign(&receiver.wait_accepted(2, DEADLINE).await[1]));
    assert_eq!(env.reseal().await, (2, 0, vec![]));
    assert_eq!(env.reseal().await, (0, 2, vec![]), "nothing left under A");
    let under_b = stored_secrets(&env, &hook.id).await;

    let mut env = env.restart(keyed(&b, &[])).await;
    env.user(&acme, "u2").await;
    assert!(both_sign(&receiver.wait_accepted(3, DEADLINE).await[2]));

    let mut env = env.restart(keyed(&wrong, &[])).await;
    let test = SendTestWebhookEventRequest {
        id: hook.id.clone(),
    };
    let refused = env.admin.send_test_webhook_event(test).await;
    let refused = refused.expect_err("no key opens the secret");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("ROSTER_SECRET_KEY_PREVIOUS"));
    let webhook = format!("webhook {}", hook.id);
    let lost = vec![format!("{webhook} (previous secret)"), webhook];
    assert_eq!(env.reseal().await, (0, 0, lost));
    env.user(&acme, "u3").await;
    assert_eq!(stored_secrets(&env, &hook.id).await, under_b);

    let env = env.restart(keyed(&b, &[])).await;
    let got = receiver.wait_accepted(4, DEADLINE).await;
    assert_eq!(names(&got), ["u0", "u1", "u2", "u3"]);
    assert!(got.iter().all(both_sign));
    drop(env);
}

on_both_backends!(deliveries_survive_a_sealing_key_rotation);
