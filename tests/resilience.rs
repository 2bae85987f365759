//! Races on the email index, and Redis going away and coming back.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{free_port, index_member, unknown_key, RedisServer, TestApp};
use rocket::futures::future::join_all;
use rocket::http::Status;
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery";

/// How long a request may take beyond the configured Redis timeout.
const SLACK: Duration = Duration::from_millis(1500);

/// The last answer came within `timeout_ms`, with `SLACK` for a loaded machine.
fn assert_answered_within(started: Instant, timeout_ms: u64) {
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(timeout_ms) + SLACK,
        "the last answer came after {took:?}"
    );
}

/// A 503 for Redis, whatever the cause.
fn assert_unavailable(reply: &common::Reply) {
    assert_eq!(reply.status, Status::ServiceUnavailable, "{}", reply.body);
    assert_eq!(
        reply.json()["type"],
        "/problems/unavailable",
        "{}",
        reply.body
    );
}

/// A 503 that names `cause`.
fn assert_unavailable_because(reply: &common::Reply, cause: &str) {
    reply.assert_problem(
        Status::ServiceUnavailable,
        &format!("the user store is unavailable ({cause}); retry later"),
    );
}

/// Far longer than a Redis that turns the service down takes to say so.
const LONG_TIMEOUT_MS: u64 = 8000;

/// Against a Redis at `url` that turns every connection down, a read, a
/// transaction and the readiness check each answer `503` naming `cause`,
/// long before the timeout: first while the cause is new, then once it is
/// known.
async fn assert_turned_down_at_once(url: &str, cause: &str) {
    let app = TestApp::spawn_on(url, &[("REDIS_TIMEOUT_MS", &LONG_TIMEOUT_MS.to_string())]).await;
    let at_once = Duration::from_millis(LONG_TIMEOUT_MS / 4);
    for round in ["while new", "once known"] {
        let started = Instant::now();
        let health = app.get("/health/ready").await;
        assert_eq!(health.status, Status::ServiceUnavailable, "{}", health.body);
        assert_eq!(health.json()["reason"], cause, "{round}");
        let read = app
            .get_as(
                &format!("/api/users/{}", uuid::Uuid::new_v4()),
                &unknown_key(),
            )
            .await;
        assert_unavailable_because(&read, cause);
        let body = json!({"name": "Ada", "email": "ada@example.com", "password": PASSWORD});
        let write = app.post_user(&body).await;
        assert_unavailable_because(&write, cause);
        let took = started.elapsed();
        assert!(took < at_once, "{round}: three answers took {took:?}");
    }
}

#[rocket::async_test]
async fn a_refused_connection_is_named_at_once_rather_than_after_the_timeout() {
    let closed = format!("redis://127.0.0.1:{}/", free_port());
    assert_turned_down_at_once(&closed, "Redis refused the connection").await;
}

#[rocket::async_test]
async fn a_wrong_redis_password_is_named_at_once_rather_than_after_the_timeout() {
    let server = RedisServer::start_with_password("right-password");
    let wrong = server.url_with_password("wrong-password");
    assert_turned_down_at_once(&wrong, "Redis refused the credentials").await;
}

#[rocket::async_test]
async fn a_missing_redis_password_is_named_at_once_rather_than_after_the_timeout() {
    let server = RedisServer::start_with_password("right-password");
    let missing = server.url_with_password("");
    assert_turned_down_at_once(&missing, "Redis refused the credentials").await;
}

#[rocket::async_test]
async fn a_database_out_of_range_is_named_at_once_rather_than_after_the_timeout() {
    let server = RedisServer::start();
    let database_99 = format!("{}99", server.url());
    assert_turned_down_at_once(
        &database_99,
        "Redis has no database of the configured number",
    )
    .await;
}

#[rocket::async_test]
async fn a_command_the_acl_user_may_not_run_is_named_in_the_503() {
    let server = RedisServer::start();
    redis::cmd("ACL")
        .arg(&["SETUSER", "pinger", "on", ">pinger-password", "~*"])
        .arg(&["+ping", "+hello", "+client", "+auth", "+select"])
        .exec(
            &mut redis::Client::open(server.url())
                .expect("a URL")
                .get_connection()
                .expect("a connection"),
        )
        .expect("ACL SETUSER");
    let url = server
        .url()
        .replace("redis://", "redis://pinger:pinger-password@");
    let app = TestApp::spawn_on(&url, &[]).await;
    let read = app
        .get_as(
            &format!("/api/users/{}", uuid::Uuid::new_v4()),
            &unknown_key(),
        )
        .await;
    assert_unavailable_because(&read, "Redis refused a command to the configured ACL user");
}

#[rocket::async_test]
async fn the_service_serves_once_redis_stops_refusing_the_credentials() {
    let server = RedisServer::start_with_password("right-password");
    let app = TestApp::spawn_on(&server.url_with_password("new-password"), &[]).await;
    let refused = app.get("/health/ready").await;
    assert_eq!(refused.json()["reason"], "Redis refused the credentials");
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("new-password")
        .exec(
            &mut redis::Client::open(server.url())
                .expect("a URL")
                .get_connection()
                .expect("a connection"),
        )
        .expect("CONFIG SET requirepass");
    assert_eq!(app.get("/health/ready").await.status, Status::Ok);
    app.create_user("Ada", "ada@example.com", PASSWORD).await;
}

#[rocket::async_test]
async fn concurrent_creates_with_one_email_admit_exactly_one() {
    let app = TestApp::spawn().await;
    let attempts = (0..32).map(|n| {
        let body =
            json!({"name": format!("User {n}"), "email": "same@example.com", "password": PASSWORD});
        let app = &app;
        async move { app.post_user(&body).await }
    });
    let replies = join_all(attempts).await;
    let created = replies
        .iter()
        .filter(|r| r.status == Status::Created)
        .count();
    let conflicts = replies
        .iter()
        .filter(|r| r.status == Status::Conflict)
        .count();
    assert_eq!(
        (created, conflicts),
        (1, 31),
        "statuses: {:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(app.index_members().len(), 1);
    let layout = app.keys_of_layout();
    let user_hashes = app
        .keys()
        .into_iter()
        .filter(|key| layout.user_id_of(key).is_some())
        .count();
    assert_eq!(user_hashes, 1, "one user hash: {:?}", app.keys());
}

#[rocket::async_test]
async fn concurrent_creates_with_distinct_emails_all_succeed() {
    let app = TestApp::spawn().await;
    let statuses = sign_up_at_once(&app, 32).await;
    assert!(
        statuses.iter().all(|status| *status == Status::Created),
        "statuses: {statuses:?}"
    );
    assert_eq!(app.index_members().len(), 32);
}

/// Signs up `count` users with distinct emails, all at once; their statuses.
async fn sign_up_at_once(app: &TestApp, count: usize) -> Vec<Status> {
    let attempts = (0..count).map(|n| {
        let body =
            json!({"name": "User", "email": format!("user{n}@example.com"), "password": PASSWORD});
        async move { app.post_user(&body).await.status }
    });
    join_all(attempts).await
}

/// Creates `count` users, one after the other, with the emails
/// `{prefix}{n}@example.com`; their ids.
async fn create_users(app: &TestApp, prefix: &str, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for n in 0..count {
        let user = app
            .create_user("User", &format!("{prefix}{n}@example.com"), PASSWORD)
            .await;
        ids.push(user["id"].as_str().expect("id").to_owned());
    }
    ids
}

/// A client that adds and removes an index member of its own in every
/// bucket, nonstop, as sign-ups and email changes of other emails would.
struct IndexChurn {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl IndexChurn {
    fn start(app: &TestApp) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (mut conn, indexes, stopped) = (app.redis(), app.index_keys(), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let member = "churn@example.com\0not-a-user";
            while !stopped.load(Ordering::Relaxed) {
                let mut churn = redis::pipe();
                for index in &indexes {
                    churn
                        .cmd("ZADD")
                        .arg(index)
                        .arg(0)
                        .arg(member)
                        .cmd("ZREM")
                        .arg(index)
                        .arg(member);
                }
                churn.exec(&mut conn).expect("index churn");
            }
        });
        Self { stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("churn thread");
    }
}

#[rocket::async_test]
async fn sign_ups_succeed_while_other_emails_keep_changing_the_index() {
    let app = TestApp::spawn().await;
    let churn = IndexChurn::start(&app);
    let statuses = sign_up_at_once(&app, 8).await;
    churn.stop();
    assert!(
        statuses.iter().all(|status| *status == Status::Created),
        "statuses: {statuses:?}"
    );
}

#[rocket::async_test]
async fn email_changes_succeed_while_other_emails_keep_changing_the_index() {
    let app = TestApp::spawn().await;
    let ids = create_users(&app, "before", 8).await;
    let churn = IndexChurn::start(&app);
    let changes = ids.iter().enumerate().map(|(n, id)| {
        let body =
            json!({"name": "User", "email": format!("after{n}@example.com"), "password": PASSWORD});
        let app = &app;
        async move { app.put_user(id, &body).await }
    });
    let replies = join_all(changes).await;
    churn.stop();
    let statuses: Vec<Status> = replies.iter().map(|r| r.status).collect();
    assert!(
        statuses.iter().all(|status| *status == Status::Ok),
        "statuses: {statuses:?}"
    );
    assert_index_matches_users(&app, &ids);
}

/// Reads every user hash and the index, and checks they describe the same
/// set of (email, id) pairs with no email held twice.
fn assert_index_matches_users(app: &TestApp, ids: &[String]) {
    let mut conn = app.redis();
    let mut from_users = HashSet::new();
    let mut owners: HashMap<String, String> = HashMap::new();
    for id in ids {
        let email: Option<String> = redis::cmd("HGET")
            .arg(app.user_key(id))
            .arg(user_accounts::store::layout::user_fields::EMAIL)
            .query(&mut conn)
            .expect("HGET");
        let email = email.expect("every user still exists");
        if let Some(other) = owners.insert(email.clone(), id.clone()) {
            panic!("{email} is held by both {other} and {id}");
        }
        from_users.insert(index_member(&email, id));
    }
    let from_index: HashSet<String> = app.index_members().into_iter().collect();
    assert_eq!(
        from_index, from_users,
        "the index matches the users exactly"
    );
}

#[rocket::async_test]
async fn concurrent_email_changes_never_leave_two_users_with_one_email() {
    let app = TestApp::spawn().await;
    let ids = create_users(&app, "start", 8).await;
    // Every user tries to take each of three contested emails at once.
    let changes = ids.iter().flat_map(|id| {
        (0..3).map(move |target| (id.clone(), format!("contested{target}@example.com")))
    });
    let app_ref = &app;
    let replies = join_all(changes.map(|(id, email)| async move {
        app_ref
            .put_user(
                &id,
                &json!({"name": "User", "email": email, "password": PASSWORD}),
            )
            .await
    }))
    .await;
    for reply in &replies {
        assert!(
            matches!(reply.status, Status::Ok | Status::Conflict),
            "unexpected {}: {}",
            reply.status,
            reply.body
        );
    }
    assert!(replies.iter().any(|r| r.status == Status::Ok));
    assert_index_matches_users(&app, &ids);
}

async fn create_status(app: &TestApp, email: &str) -> (Status, Value, Option<String>) {
    let reply = app
        .post_user(&json!({"name": "Ada", "email": email, "password": PASSWORD}))
        .await;
    let retry_after = reply.header("Retry-After").map(str::to_owned);
    (reply.status, reply.json(), retry_after)
}

#[rocket::async_test]
async fn sign_ups_beyond_the_hashing_queue_answer_503_and_create_nothing() {
    // One hashing thread and one waiting place; each hash takes long enough
    // that the later of four simultaneous sign-ups find both taken.
    let app = TestApp::spawn_on(
        &common::shared_redis_url(),
        &[
            ("HASHING_CONCURRENCY", "1"),
            ("HASHING_QUEUE_LIMIT", "1"),
            ("ARGON2_MEMORY_KIB", "65536"),
            ("ARGON2_ITERATIONS", "4"),
        ],
    )
    .await;
    let emails = [
        "a@example.com",
        "b@example.com",
        "c@example.com",
        "d@example.com",
    ];
    let replies = join_all(emails.map(|email| create_status(&app, email))).await;
    let mut created = 0;
    let mut refused = 0;
    for (email, (status, body, retry_after)) in emails.iter().zip(replies) {
        let lookup = app.get_user(email).await.status;
        if status == Status::Created {
            created += 1;
            assert_eq!(lookup, Status::Ok, "{email}");
        } else {
            refused += 1;
            assert_eq!(status, Status::ServiceUnavailable, "{body}");
            assert_eq!(body["type"], "/problems/unavailable");
            assert_eq!(retry_after.as_deref(), Some("1"));
            assert_eq!(lookup, Status::NotFound, "{email} was refused yet exists");
        }
    }
    assert!(
        created >= 1 && refused >= 1,
        "{created} created, {refused} refused"
    );
}

#[rocket::async_test]
async fn the_service_starts_without_redis_and_answers_503_within_the_timeout() {
    let unreachable = format!("redis://127.0.0.1:{}/", free_port());
    let app = TestApp::spawn_on(&unreachable, &[("REDIS_TIMEOUT_MS", "300")]).await;
    let uri = format!("/api/users/{}", uuid::Uuid::new_v4());
    let started = Instant::now();
    let reply = app.get_as(&uri, &unknown_key()).await;
    assert_answered_within(started, 300);
    assert_unavailable(&reply);
    assert_eq!(reply.header("Retry-After"), Some("1"));
}

#[rocket::async_test]
async fn writes_answer_503_when_redis_is_unreachable() {
    let unreachable = format!("redis://127.0.0.1:{}/", free_port());
    let app = TestApp::spawn_on(&unreachable, &[("REDIS_TIMEOUT_MS", "300")]).await;
    let started = Instant::now();
    let (status, body, retry_after) = create_status(&app, "ada@example.com").await;
    assert_answered_within(started, 300);
    assert_eq!(status, Status::ServiceUnavailable, "{body}");
    assert_eq!(retry_after.as_deref(), Some("1"));
}

#[rocket::async_test]
async fn a_redis_that_refuses_the_credentials_gives_503_on_reads_and_writes() {
    let server = RedisServer::start_with_password("right-password");
    // WRONGPASS, then NOAUTH.
    for password in ["wrong-password", ""] {
        let app = TestApp::spawn_on(&server.url_with_password(password), &[]).await;
        for uri in [
            format!("/api/users/{}", uuid::Uuid::new_v4()),
            "/api/users/ada@example.com".to_owned(),
            "/api/users".to_owned(),
        ] {
            let reply = app.get_as(&uri, &unknown_key()).await;
            assert_unavailable(&reply);
            assert_eq!(reply.header("Retry-After"), Some("1"), "{uri}");
        }
        let (status, body, _) = create_status(&app, "ada@example.com").await;
        assert_eq!(status, Status::ServiceUnavailable, "{body}");
    }
}

#[rocket::async_test]
async fn a_redis_outage_gives_503_and_the_service_recovers_by_itself() {
    let mut server = RedisServer::start();
    let app = TestApp::spawn_on(&server.url(), &[("REDIS_TIMEOUT_MS", "500")]).await;
    let user = app.create_user("Ada", "ada@example.com", PASSWORD).await;
    let id = user["id"].as_str().expect("id");

    server.stop();
    for _ in 0..3 {
        let started = Instant::now();
        let reply = app
            .get_as(&format!("/api/users/{id}"), &unknown_key())
            .await;
        assert_answered_within(started, 500);
        assert_unavailable(&reply);
    }
    let (status, _, _) = create_status(&app, "bob@example.com").await;
    assert_eq!(status, Status::ServiceUnavailable);

    // The throwaway server keeps nothing on disk: it comes back empty.
    server.restart();
    let (status, body, _) = create_status(&app, "bob@example.com").await;
    assert_eq!(
        status,
        Status::Created,
        "the first request after the restart succeeds: {body}"
    );
    assert_eq!(app.get_user("bob@example.com").await.status, Status::Ok);
}

#[rocket::async_test]
async fn a_read_after_redis_closed_every_connection_succeeds() {
    let server = RedisServer::start();
    let app = TestApp::spawn_on(&server.url(), &[]).await;
    let user = app.create_user("Ada", "ada@example.com", PASSWORD).await;
    let id = user["id"].as_str().expect("id");
    assert_eq!(app.get_user(id).await.status, Status::Ok);

    // As after a restart or an idle timeout: Redis drops every client.
    let closed: u32 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query(&mut app.redis())
        .expect("CLIENT KILL");
    assert!(closed > 0, "the service had connections open");

    let reply = app.get_user(id).await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
    assert_eq!(
        app.get_user("ada@example.com").await.status,
        Status::Ok,
        "and by email"
    );
    let metrics = app.get_as_admin("/metrics").await.body;
    assert!(
        metrics.contains("redis_read_connections_opened_total 2"),
        "one new read connection after the old one was closed:\n{metrics}"
    );
}

#[rocket::async_test]
async fn concurrent_reads_from_a_redis_that_never_answers_all_get_503_within_the_timeout() {
    // Takes connections (the kernel completes them) but never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let url = format!("redis://{}/", silent.local_addr().expect("an address"));
    let app = TestApp::spawn_on(&url, &[("REDIS_TIMEOUT_MS", "300")]).await;
    let id = uuid::Uuid::new_v4().to_string();

    let uri = format!("/api/users/{id}");
    let key = unknown_key();
    let started = Instant::now();
    let replies = join_all((0..8).map(|_| app.get_as(&uri, &key))).await;
    assert_answered_within(started, 300);
    for reply in &replies {
        assert_unavailable_because(reply, "Redis did not answer within the timeout");
    }
    let health = app.get("/health/ready").await;
    assert_eq!(
        health.json()["reason"],
        "Redis did not answer within the timeout"
    );
}

#[rocket::async_test]
async fn readiness_answers_503_when_redis_is_down_and_liveness_stays_200() {
    let unreachable = format!("redis://127.0.0.1:{}/", free_port());
    let app = TestApp::spawn_on(&unreachable, &[("REDIS_TIMEOUT_MS", "300")]).await;
    let started = Instant::now();
    let reply = app.get("/health/ready").await;
    assert_answered_within(started, 300);
    assert_eq!(reply.status, Status::ServiceUnavailable);
    assert_eq!(reply.json()["status"], "unavailable");
    assert!(reply.json()["reason"].is_string());
    assert_eq!(app.get("/health/live").await.status, Status::Ok);
}

#[rocket::async_test]
async fn readiness_names_the_failing_component_without_raw_error_text() {
    let unreachable_port = free_port();
    let unreachable = format!("redis://:hunter2@127.0.0.1:{unreachable_port}/");
    let app = TestApp::spawn_on(&unreachable, &[("REDIS_TIMEOUT_MS", "300")]).await;
    let reply = app.get("/health/ready").await;
    assert_eq!(reply.json()["component"], "redis");
    let reason = reply.json()["reason"].as_str().map(str::to_owned);
    assert!(
        reason.is_some_and(|reason| reason.starts_with("Redis ")),
        "{}",
        reply.body
    );
    for raw in [
        "hunter2",
        &unreachable_port.to_string(),
        "os error",
        "Connection refused",
    ] {
        assert!(!reply.body.contains(raw), "{raw} in {}", reply.body);
    }
}

#[rocket::async_test]
async fn an_exhausted_pool_answers_503_within_the_timeout_and_health_says_why() {
    let server = RedisServer::start();
    let app = TestApp::spawn_on(
        &server.url(),
        &[("REDIS_POOL_SIZE", "2"), ("REDIS_TIMEOUT_MS", "400")],
    )
    .await;
    app.create_user("Ada", "ada@example.com", PASSWORD).await;
    let token = app.token_for("ada@example.com", PASSWORD).await;

    // Redis stops answering for a while: the two pooled connections stay
    // busy waiting for replies, and further requests find no connection.
    // (Each authenticated request reads its session.) The pause
    // outlasts the timeout by far, so that a loaded machine's delays end
    // neither the pause before the requests time out nor before the health
    // check.
    let pause = Duration::from_millis(3000);
    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(pause.as_millis().to_string())
        .exec(&mut app.redis())
        .expect("CLIENT PAUSE");
    let started = Instant::now();
    let replies = join_all((0..10).map(|_| app.current_session(&token))).await;
    assert_answered_within(started, 400);
    for reply in &replies {
        assert_unavailable(reply);
    }
    let health = app.get("/health/ready").await;
    assert_eq!(health.status, Status::ServiceUnavailable);
    assert!(health.json()["reason"].is_string(), "{}", health.body);

    let pause_over =
        (started + pause + Duration::from_millis(100)).saturating_duration_since(Instant::now());
    rocket::tokio::time::sleep(pause_over).await;
    assert_eq!(
        app.current_session(&token).await.status,
        Status::Ok,
        "the service recovers"
    );
    assert_eq!(app.get("/health/ready").await.status, Status::Ok);
}

#[rocket::async_test]
async fn reads_are_answered_while_every_pooled_connection_waits_on_a_write() {
    let server = RedisServer::start();
    let app = TestApp::spawn_on(
        &server.url(),
        &[("REDIS_POOL_SIZE", "2"), ("REDIS_TIMEOUT_MS", "1000")],
    )
    .await;
    let user = app.create_user("Ada", "ada@example.com", PASSWORD).await;
    let id = user["id"].as_str().expect("id");
    let token = app.token_for("ada@example.com", PASSWORD).await;
    app.admin_key().await;
    // Its next uses renew the session: a write each.
    app.date_last_use_back(&token, Duration::from_secs(60));

    // Writes wait while reads go on. The pause outlasts the timeout by far,
    // so that a loaded machine's delays cannot end it before the writes
    // time out.
    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(3000)
        .arg("WRITE")
        .exec(&mut app.redis())
        .expect("CLIENT PAUSE WRITE");
    let writes = join_all((0..4).map(|_| app.current_session(&token)));
    let read = async {
        rocket::tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        (app.get_user(id).await, started.elapsed())
    };
    let (writes, (read, took)) = rocket::tokio::join!(writes, read);

    assert!(
        writes
            .iter()
            .all(|reply| reply.status == Status::ServiceUnavailable),
        "every write found Redis or the pool busy: {:?}",
        writes.iter().map(|reply| reply.status).collect::<Vec<_>>()
    );
    assert_eq!(read.status, Status::Ok, "{}", read.body);
    assert!(took < Duration::from_millis(500), "the read took {took:?}");
}
