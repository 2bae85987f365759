//! Logging in and out, bearer sessions, login throttling, events.

mod common;

use std::time::Duration;

use common::{id_of, session_id, Reply, TestApp};
use rocket::http::{Header, Method, Status};
use serde_json::{json, Value};
use user_accounts::domain::{PasswordHash, Session, SessionToken, UserId};
use user_accounts::store::layout::session_fields;

const PASSWORD: &str = "correct horse battery";

async fn user_and_token(app: &TestApp, email: &str) -> (String, String) {
    let user = app.create_user("User", email, PASSWORD).await;
    let token = app.token_for(email, PASSWORD).await;
    (user["id"].as_str().expect("id").to_owned(), token)
}

// ---- logging in ----

#[rocket::async_test]
async fn login_returns_201_with_a_token_its_expiry_and_the_user() {
    let app = TestApp::spawn().await;
    let user = app.create_user("Ada", "ada@example.com", PASSWORD).await;
    let reply = app.login("ADA@example.com", PASSWORD).await;
    assert_eq!(reply.status, Status::Created, "{}", reply.body);
    let body = reply.json();
    let token = body["token"].as_str().expect("token");
    assert_eq!(token.len(), 43, "256 bits as unpadded base64");
    assert!(token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert!(body["expires_at"].as_str().is_some());
    assert_eq!(body["user"], user);
    assert!(!reply.body.contains(PASSWORD));
}

#[rocket::async_test]
async fn redis_keeps_only_the_sha256_of_the_token() {
    let app = TestApp::spawn().await;
    let (id, token) = user_and_token(&app, "ada@example.com").await;
    let session_key = app.session_key(&token);
    let fields: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg(&session_key)
        .query(&mut app.redis())
        .expect("HGETALL");
    assert_eq!(fields.get(session_fields::USER_ID), Some(&id));
    for key in app.keys() {
        assert!(!key.contains(&token), "{key} holds the token");
        let dump: Vec<u8> = redis::cmd("DUMP")
            .arg(&key)
            .query(&mut app.redis())
            .expect("DUMP");
        assert!(
            !String::from_utf8_lossy(&dump).contains(&token),
            "{key} holds the token"
        );
    }
}

#[rocket::async_test]
async fn unknown_email_and_wrong_password_get_the_same_401() {
    let app = TestApp::spawn().await;
    app.create_user("Ada", "ada@example.com", PASSWORD).await;
    let unknown = app.login("nobody@example.com", PASSWORD).await;
    let wrong = app.login("ada@example.com", "wrong password").await;
    unknown.assert_problem(Status::Unauthorized, "wrong email or password");
    assert_eq!(unknown.json()["type"], "/problems/invalid-credentials");
    assert_eq!(unknown.body, wrong.body);
    assert_eq!(unknown.header("WWW-Authenticate"), Some("Bearer"));
}

#[rocket::async_test]
async fn login_with_missing_fields_returns_422() {
    let app = TestApp::spawn().await;
    let reply = app
        .send_raw(
            Method::Post,
            "/api/sessions",
            Some(rocket::http::ContentType::JSON),
            "{}",
        )
        .await;
    assert_eq!(reply.status, Status::UnprocessableEntity);
    assert_eq!(reply.field_errors("email"), vec!["is required"]);
    assert_eq!(reply.field_errors("password"), vec!["is required"]);
}

// ---- the current session ----

#[rocket::async_test]
async fn the_current_session_returns_its_user_and_expiry() {
    let app = TestApp::spawn().await;
    let (id, token) = user_and_token(&app, "ada@example.com").await;
    let reply = app.current_session(&token).await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
    assert_eq!(reply.json()["user"]["id"], id);
    assert!(reply.json()["expires_at"].as_str().is_some());
}

#[rocket::async_test]
async fn no_credential_gets_401_saying_one_is_needed() {
    let app = TestApp::spawn().await;
    let reply = app.get("/api/sessions/current").await;
    reply.assert_problem(
        Status::Unauthorized,
        "this needs a credential: send Authorization: Bearer <session token or admin key>",
    );
    assert_eq!(reply.header("WWW-Authenticate"), Some("Bearer"));
}

#[rocket::async_test]
async fn an_unknown_or_malformed_token_gets_401_invalid_token() {
    let app = TestApp::spawn().await;
    for token in ["garbage", &"A".repeat(43), "uak_not-a-key"] {
        let reply = app.current_session(token).await;
        reply.assert_problem(
            Status::Unauthorized,
            "the credential is unknown, revoked or expired",
        );
        assert_eq!(
            reply.json()["type"],
            "/problems/invalid-token",
            "token {token}"
        );
        assert_eq!(
            reply.header("WWW-Authenticate"),
            Some(r#"Bearer error="invalid_token""#),
            "token {token}"
        );
    }
}

#[rocket::async_test]
async fn an_ended_session_gets_401_invalid_token() {
    let app = TestApp::spawn().await;
    let (_, token) = user_and_token(&app, "ada@example.com").await;
    app.with_token(Method::Delete, "/api/sessions/current", &token, None)
        .await;
    let reply = app.current_session(&token).await;
    assert_eq!(reply.json()["type"], "/problems/invalid-token");
}

#[rocket::async_test]
async fn a_credential_not_in_the_bearer_form_gets_401_saying_so() {
    let app = TestApp::spawn().await;
    let (_, token) = user_and_token(&app, "ada@example.com").await;
    let reply = Reply::read(
        app.client
            .get("/api/sessions/current")
            .header(Header::new("Authorization", token))
            .dispatch()
            .await,
    )
    .await;
    reply.assert_problem(
        Status::Unauthorized,
        "the Authorization header must read Bearer <session token or admin key>",
    );
}

#[rocket::async_test]
async fn an_admin_key_asking_for_its_session_gets_401_saying_it_has_none() {
    let app = TestApp::spawn().await;
    let key = app.admin_key().await.to_owned();
    let reply = app.current_session(&key).await;
    reply.assert_problem(
        Status::Unauthorized,
        "this needs a session token; an admin key has no session",
    );
}

#[rocket::async_test]
async fn logging_out_ends_the_session() {
    let app = TestApp::spawn().await;
    let (_, token) = user_and_token(&app, "ada@example.com").await;
    let reply = app
        .with_token(Method::Delete, "/api/sessions/current", &token, None)
        .await;
    assert_eq!(reply.status, Status::NoContent);
    app.assert_signed_out(&token).await;
}

#[rocket::async_test]
async fn an_idle_session_expires_and_use_renews_it() {
    let app = TestApp::spawn_with(&[("SESSION_IDLE_SECS", "2")]).await;
    let (_, token) = user_and_token(&app, "ada@example.com").await;
    for _ in 0..3 {
        tokio_sleep(Duration::from_millis(1200)).await;
        let reply = app.current_session(&token).await;
        assert_eq!(reply.status, Status::Ok, "each use renews the idle timeout");
    }
    tokio_sleep(Duration::from_millis(2300)).await;
    let reply = app.current_session(&token).await;
    assert_eq!(reply.status, Status::Unauthorized, "idle past the timeout");
}

/// The session's `last_seen`, as Redis holds it.
fn stored_last_seen(app: &TestApp, token: &str) -> String {
    redis::cmd("HGET")
        .arg(app.session_key(token))
        .arg(session_fields::LAST_SEEN)
        .query(&mut app.redis())
        .expect("HGET last_seen")
}

#[rocket::async_test]
async fn a_session_is_renewed_at_most_once_per_renewal_step() {
    // An idle timeout of 60 s: a renewal step of 1 s.
    let app = TestApp::spawn_with(&[("SESSION_IDLE_SECS", "60")]).await;
    let (_, token) = user_and_token(&app, "ada@example.com").await;
    // As if renewed just now, however long the login took.
    app.date_last_use_back(&token, Duration::ZERO);
    let renewed = stored_last_seen(&app, &token);

    for _ in 0..5 {
        assert_eq!(app.current_session(&token).await.status, Status::Ok);
    }
    assert_eq!(
        stored_last_seen(&app, &token),
        renewed,
        "uses within a second of the last renewal only read the session"
    );

    tokio_sleep(Duration::from_millis(1100)).await;
    assert_eq!(app.current_session(&token).await.status, Status::Ok);
    assert_ne!(
        stored_last_seen(&app, &token),
        renewed,
        "a use a renewal step later renews it"
    );
}

#[rocket::async_test]
async fn reading_its_own_user_renews_a_session_due_for_renewal() {
    let app = TestApp::spawn().await;
    let (id, token) = user_and_token(&app, "ada@example.com").await;
    app.date_last_use_back(&token, Duration::from_secs(60));
    let dated = stored_last_seen(&app, &token);

    let reply = app.get_as(&format!("/api/users/{id}"), &token).await;

    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
    assert_ne!(stored_last_seen(&app, &token), dated, "renewed");
}

#[rocket::async_test]
async fn a_session_idle_past_the_timeout_it_still_has_a_ttl_for_is_ended_and_not_listed() {
    // As after the idle timeout was lowered: the session's key outlives
    // its idle end, by the timeout as set now.
    let app = TestApp::spawn_with(&[("SESSION_IDLE_SECS", "5")]).await;
    let (id, old) = user_and_token(&app, "ada@example.com").await;
    let current = app.token_for("ada@example.com", PASSWORD).await;
    app.date_last_use_back(&old, Duration::from_secs(6));
    assert!(app.exists(&app.session_key(&old)), "its key is still there");

    let listing = app.list_sessions(&id, &current).await;
    assert_eq!(listed_ids(&listing), [session_id(&current)], "not listed");

    assert_eq!(app.current_session(&old).await.status, Status::Unauthorized);
    assert!(!app.exists(&app.session_key(&old)), "ended");
    assert_eq!(index_members(&app, &id), [session_id(&current)]);
}

#[rocket::async_test]
async fn no_renewal_extends_a_session_past_its_maximum_age() {
    let app =
        TestApp::spawn_with(&[("SESSION_IDLE_SECS", "60"), ("SESSION_MAX_AGE_SECS", "2")]).await;
    let (_, token) = user_and_token(&app, "ada@example.com").await;
    tokio_sleep(Duration::from_millis(1000)).await;
    let reply = app.current_session(&token).await;
    assert_eq!(reply.status, Status::Ok);
    tokio_sleep(Duration::from_millis(1300)).await;
    let reply = app.current_session(&token).await;
    assert_eq!(reply.status, Status::Unauthorized, "past the absolute cap");
}

#[rocket::async_test]
async fn a_session_past_its_end_is_refused_and_removed_even_if_redis_still_holds_it() {
    let app = TestApp::spawn().await;
    let (id, token) = user_and_token(&app, "ada@example.com").await;
    let session_id = session_id(&token);
    let session_key = app.session_key(&token);
    let mut redis = app.redis();
    let sessions_of = app.sessions_of_key(&id);
    let listed = |redis: &mut redis::Connection| -> bool {
        redis::cmd("ZSCORE")
            .arg(&sessions_of)
            .arg(&session_id)
            .query::<Option<f64>>(redis)
            .expect("ZSCORE")
            .is_some()
    };
    assert!(listed(&mut redis), "the user's sessions list it");
    // As when its key has not expired yet: the end is past, the key is not.
    redis::cmd("HSET")
        .arg(&session_key)
        .arg(session_fields::EXPIRES_AT)
        .arg(1_000)
        .exec(&mut redis)
        .expect("HSET");
    redis::cmd("PERSIST")
        .arg(&session_key)
        .exec(&mut redis)
        .expect("PERSIST");

    let reply = app.current_session(&token).await;

    assert_eq!(reply.status, Status::Unauthorized);
    assert!(!app.exists(&session_key), "the session is deleted");
    assert!(!listed(&mut redis), "and gone from the user's sessions");
}

async fn tokio_sleep(duration: Duration) {
    rocket::tokio::time::sleep(duration).await;
}

// ---- a user's sessions ----

#[rocket::async_test]
async fn a_user_lists_their_sessions_without_tokens() {
    let app = TestApp::spawn().await;
    let (id, token) = user_and_token(&app, "ada@example.com").await;
    let second = app
        .client
        .post("/api/sessions")
        .header(rocket::http::ContentType::JSON)
        .header(Header::new("User-Agent", "test-agent/1.0"))
        .remote("192.0.2.7:4000".parse().expect("an address"))
        .body(json!({"email": "ada@example.com", "password": PASSWORD}).to_string())
        .dispatch()
        .await;
    assert_eq!(second.status(), Status::Created);
    let body = second.into_string().await.expect("a body");
    let second_token = serde_json::from_str::<Value>(&body).expect("json")["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let reply = app.list_sessions(&id, &token).await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
    let sessions = reply.json();
    let sessions = sessions.as_array().expect("a list");
    assert_eq!(sessions.len(), 2);
    assert!(!reply.body.contains(&token) && !reply.body.contains(&second_token));
    let other = sessions
        .iter()
        .find(|s| s["current"] == false)
        .expect("the second session");
    assert_eq!(other["ip"], "192.0.2.7");
    assert_eq!(other["user_agent"], "test-agent/1.0");
    assert_eq!(other["id"], session_id(&second_token));
}

#[rocket::async_test]
async fn another_users_session_gets_403() {
    let app = TestApp::spawn().await;
    let (ada, _) = user_and_token(&app, "ada@example.com").await;
    let (_, bob_token) = user_and_token(&app, "bob@example.com").await;
    let reply = app.list_sessions(&ada, &bob_token).await;
    reply.assert_problem(Status::Forbidden, "this session belongs to another user");
    let hacked = json!({"name": "Hacked", "email": "ada@example.com"});
    let reply = app.put_user_as(&ada, &bob_token, &hacked).await;
    assert_eq!(reply.status, Status::Forbidden);
    let reply = app.delete_user_as(&ada, &bob_token).await;
    assert_eq!(reply.status, Status::Forbidden);
    assert_eq!(app.get_user(&ada).await.json()["name"], "User");
}

#[rocket::async_test]
async fn revoking_one_session_leaves_the_others() {
    let app = TestApp::spawn().await;
    let (id, first) = user_and_token(&app, "ada@example.com").await;
    let second = app.token_for("ada@example.com", PASSWORD).await;
    let uri = format!("/api/users/{id}/sessions/{}", session_id(&second));
    let reply = app.with_token(Method::Delete, &uri, &first, None).await;
    assert_eq!(reply.status, Status::NoContent, "{}", reply.body);
    app.assert_signed_out(&second).await;
    app.assert_signed_in(&first).await;
    let again = app.with_token(Method::Delete, &uri, &first, None).await;
    assert_eq!(again.status, Status::NotFound);
}

#[rocket::async_test]
async fn revoking_all_sessions_can_keep_the_current_one() {
    let app = TestApp::spawn().await;
    let (id, current) = user_and_token(&app, "ada@example.com").await;
    let other = app.token_for("ada@example.com", PASSWORD).await;
    let uri = format!("/api/users/{id}/sessions?keep_current=true");
    let reply = app.with_token(Method::Delete, &uri, &current, None).await;
    assert_eq!(reply.status, Status::NoContent);
    app.assert_signed_out(&other).await;
    app.assert_signed_in(&current).await;
    let uri = format!("/api/users/{id}/sessions");
    let reply = app.with_token(Method::Delete, &uri, &current, None).await;
    assert_eq!(reply.status, Status::NoContent);
    app.assert_signed_out(&current).await;
}

// ---- sessions instead of passwords ----

#[rocket::async_test]
async fn a_session_of_the_user_authorizes_put_without_password() {
    let app = TestApp::spawn().await;
    let (id, token) = user_and_token(&app, "ada@example.com").await;
    let body = json!({"name": "Ada L.", "email": "ada@example.com"});
    let reply = app.put_user_as(&id, &token, &body).await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
    assert_eq!(reply.json()["name"], "Ada L.");
}

#[rocket::async_test]
async fn a_password_change_revokes_every_session() {
    let app = TestApp::spawn().await;
    let (id, first) = user_and_token(&app, "ada@example.com").await;
    let second = app.token_for("ada@example.com", PASSWORD).await;
    let body = json!({"new_password": "a brand new passphrase"});
    let reply = app.patch_user_as(&id, &first, &body).await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
    for token in [&first, &second] {
        app.assert_signed_out(token).await;
    }
    app.assert_no_session_keys();
}

#[rocket::async_test]
async fn deleting_a_user_by_session_removes_the_user_and_its_sessions() {
    let app = TestApp::spawn().await;
    let (id, token) = user_and_token(&app, "ada@example.com").await;
    let reply = app.delete_user_as(&id, &token).await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
    assert_eq!(app.get_user(&id).await.status, Status::NotFound);
    app.assert_no_session_keys();
}

// ---- password hash upgrades ----

#[rocket::async_test]
async fn a_login_rehashes_a_password_hashed_with_other_parameters() {
    let old = TestApp::spawn().await;
    let user = old.create_user("Ada", "ada@example.com", PASSWORD).await;
    let id = user["id"].as_str().expect("id");
    let stored = |app: &TestApp| app.stored_password_hash(id);
    assert!(stored(&old).contains("m=1024,t=1,p=1"));
    let new = TestApp::spawn_with_prefix(
        &old.redis_url,
        &old.prefix,
        &[("ARGON2_MEMORY_KIB", "2048")],
    )
    .await;
    new.token_for("ada@example.com", PASSWORD).await;
    assert!(stored(&new).contains("m=2048,t=1,p=1"), "{}", stored(&new));
    new.token_for("ada@example.com", PASSWORD).await;
}

// ---- events ----

/// The entries of the event stream of the user `id`'s bucket.
fn stream_events(app: &TestApp, id: &str) -> Vec<std::collections::HashMap<String, String>> {
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(app.events_key(id))
        .arg("-")
        .arg("+")
        .query(&mut app.redis())
        .expect("XRANGE");
    entries
        .into_iter()
        .map(|(_, fields)| fields.into_iter().collect())
        .collect()
}

#[rocket::async_test]
async fn every_change_appends_an_event_without_secrets() {
    let app = TestApp::spawn().await;
    let (id, token) = user_and_token(&app, "ada@example.com").await;
    let renamed = json!({"name": "Ada L.", "email": "ada@example.com"});
    app.put_user_as(&id, &token, &renamed).await;
    let new_password = json!({"new_password": "another passphrase"});
    app.patch_user_as(&id, &token, &new_password).await;
    app.delete_user(&id, &json!({"password": "another passphrase"}))
        .await;
    let events = stream_events(&app, &id);
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "user.created",
            "user.updated",
            "user.password_changed",
            "user.deleted"
        ]
    );
    for event in &events {
        assert_eq!(event["user_id"], id);
        assert!(chrono::DateTime::parse_from_rfc3339(&event["at"]).is_ok());
        assert_eq!(event.len(), 3, "only type, user_id and at: {event:?}");
    }
}

#[rocket::async_test]
async fn the_event_streams_command_names_every_bucket_stream_the_events_go_to() {
    let app = TestApp::spawn().await;
    let ada = app.create_user("Ada", "ada@example.com", PASSWORD).await;
    let output = app.run_cli(&["event-streams"]);
    assert!(output.status.success());
    let streams = String::from_utf8_lossy(&output.stdout).into_owned();
    let streams: Vec<&str> = streams.lines().collect();
    assert_eq!(streams.len(), 64, "{streams:?}");
    assert!(streams.contains(&app.events_key(id_of(&ada)).as_str()));
}

#[rocket::async_test]
async fn a_rejected_write_appends_no_event() {
    let app = TestApp::spawn().await;
    let ada = app.create_user("Ada", "ada@example.com", PASSWORD).await;
    let reply = app.sign_up("Twin", "ada@example.com", PASSWORD).await;
    assert_eq!(reply.status, Status::Conflict);
    // A sign-up of the same email would be in the same bucket.
    assert_eq!(stream_events(&app, id_of(&ada)).len(), 1);
}

#[rocket::async_test]
async fn the_activity_feed_lists_the_users_events_newest_first() {
    let app = TestApp::spawn().await;
    let (id, token) = user_and_token(&app, "ada@example.com").await;
    let activity = format!("/api/users/{id}/activity");
    let renamed = json!({"name": "Ada L.", "email": "ada@example.com"});
    app.put_user_as(&id, &token, &renamed).await;
    let reply = app.get_as(&activity, &token).await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
    let kinds: Vec<String> = reply
        .json()
        .as_array()
        .expect("list")
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(kinds, ["user.updated", "user.created"]);
    let (_, bob_token) = user_and_token(&app, "bob@example.com").await;
    let reply = app.get_as(&activity, &bob_token).await;
    assert_eq!(reply.status, Status::Forbidden);
}

#[rocket::async_test]
async fn the_activity_feed_keeps_the_last_50_events() {
    let app = TestApp::spawn().await;
    let (id, token) = user_and_token(&app, "ada@example.com").await;
    for n in 0..55 {
        let renamed = json!({"name": format!("Ada {n}"), "email": "ada@example.com"});
        app.put_user_as(&id, &token, &renamed).await;
    }
    let reply = app
        .get_as(&format!("/api/users/{id}/activity"), &token)
        .await;
    assert_eq!(reply.json().as_array().expect("list").len(), 50);
}

#[rocket::async_test]
async fn concurrent_requests_with_one_session_all_succeed() {
    // Enough pooled connections for every request to renew the session at once.
    let app = TestApp::spawn_with(&[("REDIS_POOL_SIZE", "64")]).await;
    app.create_user("Ada", "ada@example.com", PASSWORD).await;
    let token = app.token_for("ada@example.com", PASSWORD).await;

    let replies =
        rocket::futures::future::join_all((0..512).map(|_| app.current_session(&token))).await;

    let statuses: Vec<Status> = replies.iter().map(|reply| reply.status).collect();
    assert!(
        statuses.iter().all(|status| *status == Status::Ok),
        "{statuses:?}"
    );
}

// ---- a login bound to the password it verified ----

/// Stores a new session of `user` as a login that verified the password
/// hash `verified` would: whether the store took it, and whether its key
/// exists afterwards.
async fn store_session_after_verifying(
    app: &TestApp,
    user: &str,
    verified: PasswordHash,
) -> (bool, bool) {
    let session = new_session(user);
    let session_key = app.keys_of_layout().session(&session.id);
    let stored = app
        .store()
        .connection()
        .create_session(session, verified, Duration::from_secs(3600), 50)
        .await
        .expect("Redis answers");
    (stored, app.exists(&session_key))
}

/// A session for `user` as a login would write it, opened now.
fn new_session(user: &str) -> Session {
    let now = chrono::Utc::now();
    Session {
        id: SessionToken::generate().id(),
        user_id: UserId::parse(user).expect("a user id"),
        created: now,
        last_seen: now,
        expires_at: now + chrono::Duration::hours(1),
        ip: "192.0.2.1".into(),
        user_agent: "test".into(),
    }
}

#[rocket::async_test]
async fn no_session_is_stored_when_the_password_changed_after_it_was_verified() {
    let app = TestApp::spawn().await;
    let user = app.create_user("Ada", "ada@example.com", PASSWORD).await;
    let id = id_of(&user);
    let verified = PasswordHash::from_phc(app.stored_password_hash(id));
    let body = json!({"password": PASSWORD, "new_password": "a brand new passphrase"});
    let reply = app.patch_user(id, &body).await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);

    let (stored, written) = store_session_after_verifying(&app, id, verified).await;

    assert!(!stored, "the verified hash is no longer the user's");
    assert!(!written, "no session was written");
}

#[rocket::async_test]
async fn a_session_is_stored_while_the_verified_hash_is_still_the_users() {
    let app = TestApp::spawn().await;
    let user = app.create_user("Ada", "ada@example.com", PASSWORD).await;
    let id = id_of(&user);
    let verified = PasswordHash::from_phc(app.stored_password_hash(id));

    let (stored, written) = store_session_after_verifying(&app, id, verified).await;

    assert!(stored);
    assert!(written, "the session was written");
}

// ---- the cap on a user's sessions ----

/// Logs in `count` times, a few milliseconds apart so that every login is
/// older than the next, and returns the tokens in order.
async fn tokens_in_order(app: &TestApp, email: &str, count: usize) -> Vec<String> {
    let mut tokens = Vec::new();
    for _ in 0..count {
        tokens.push(app.token_for(email, PASSWORD).await);
        tokio_sleep(Duration::from_millis(5)).await;
    }
    tokens
}

/// The milliseconds until the session index of `user` expires.
fn index_ttl_ms(app: &TestApp, user: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(app.sessions_of_key(user))
        .query(&mut app.redis())
        .expect("PTTL")
}

/// The ids of the sessions a listing shows, in its order.
fn listed_ids(reply: &Reply) -> Vec<String> {
    reply
        .json()
        .as_array()
        .expect("a list")
        .iter()
        .map(|session| session["id"].as_str().expect("an id").to_owned())
        .collect()
}

fn index_members(app: &TestApp, user: &str) -> Vec<String> {
    redis::cmd("ZRANGE")
        .arg(app.sessions_of_key(user))
        .arg(0)
        .arg(-1)
        .query(&mut app.redis())
        .expect("ZRANGE")
}

#[rocket::async_test]
async fn a_login_past_the_cap_ends_the_session_with_the_oldest_login() {
    let app = TestApp::spawn_with(&[("SESSIONS_MAX_PER_USER", "3")]).await;
    app.create_user("Ada", "ada@example.com", PASSWORD).await;

    let tokens = tokens_in_order(&app, "ada@example.com", 4).await;

    let statuses: Vec<Status> =
        rocket::futures::future::join_all(tokens.iter().map(|token| app.current_session(token)))
            .await
            .iter()
            .map(|reply| reply.status)
            .collect();
    assert_eq!(
        statuses,
        [Status::Unauthorized, Status::Ok, Status::Ok, Status::Ok],
        "the first login's session ended"
    );
}

#[rocket::async_test]
async fn the_listing_shows_the_sessions_within_the_cap_oldest_login_first() {
    let app = TestApp::spawn_with(&[("SESSIONS_MAX_PER_USER", "3")]).await;
    let user = app.create_user("Ada", "ada@example.com", PASSWORD).await;
    let tokens = tokens_in_order(&app, "ada@example.com", 4).await;

    let reply = app.list_sessions(id_of(&user), &tokens[3]).await;

    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
    let expected: Vec<String> = tokens[1..].iter().map(|token| session_id(token)).collect();
    assert_eq!(listed_ids(&reply), expected);
}

#[rocket::async_test]
async fn concurrent_logins_never_leave_more_sessions_than_the_cap() {
    // Each login in flight counts against the limiter until it succeeds.
    let app = TestApp::spawn_with(&[
        ("SESSIONS_MAX_PER_USER", "5"),
        ("REDIS_POOL_SIZE", "32"),
        ("LOGIN_MAX_FAILURES", "100"),
        ("LOGIN_MAX_ACCOUNT_FAILURES", "100"),
    ])
    .await;
    let user = app.create_user("Ada", "ada@example.com", PASSWORD).await;

    let replies =
        rocket::futures::future::join_all((0..20).map(|_| app.login("ada@example.com", PASSWORD)))
            .await;

    let statuses: Vec<Status> = replies.iter().map(|reply| reply.status).collect();
    assert!(
        statuses.iter().all(|status| *status == Status::Created),
        "{statuses:?}"
    );
    let sessions = app
        .keys()
        .into_iter()
        .filter(|key| app.keys_of_layout().session_id_of(key).is_some())
        .count();
    assert_eq!(sessions, 5, "sessions stored");
    assert_eq!(
        index_members(&app, id_of(&user)).len(),
        5,
        "sessions indexed"
    );
}

#[rocket::async_test]
async fn a_login_drops_the_ended_sessions_from_the_index_which_expires_with_the_last_one() {
    let app = TestApp::spawn_with(&[("SESSION_IDLE_SECS", "3")]).await;
    let user = app.create_user("Ada", "ada@example.com", PASSWORD).await;
    let id = id_of(&user);
    for _ in 0..29 {
        app.token_for("ada@example.com", PASSWORD).await;
    }
    // A login halfway keeps the index alive after the first 29 have ended.
    tokio_sleep(Duration::from_millis(1500)).await;
    let bridge = app.token_for("ada@example.com", PASSWORD).await;
    tokio_sleep(Duration::from_millis(1600)).await;

    let last = app.token_for("ada@example.com", PASSWORD).await;

    let mut indexed = index_members(&app, id);
    indexed.sort();
    let mut live = vec![session_id(&bridge), session_id(&last)];
    live.sort();
    assert_eq!(indexed, live, "only the sessions that have not ended");
    let ttl = index_ttl_ms(&app, id);
    assert!(
        (2000..=3000).contains(&ttl),
        "the index expires with its last session: PTTL {ttl}"
    );
}

#[rocket::async_test]
async fn using_a_session_moves_the_index_expiry_to_its_new_end() {
    let app = TestApp::spawn_with(&[("SESSION_IDLE_SECS", "2")]).await;
    let (id, token) = user_and_token(&app, "ada@example.com").await;
    tokio_sleep(Duration::from_millis(1200)).await;

    assert_eq!(app.current_session(&token).await.status, Status::Ok);

    let ttl = index_ttl_ms(&app, &id);
    assert!(
        (1500..=2000).contains(&ttl),
        "the index lives as long as the renewed session: PTTL {ttl}"
    );
}

// ---- another user's session ids ----

#[rocket::async_test]
async fn revoking_another_users_session_id_answers_404_and_leaves_that_session() {
    let app = TestApp::spawn().await;
    let (ada, ada_token) = user_and_token(&app, "ada@example.com").await;
    let (_, bob_token) = user_and_token(&app, "bob@example.com").await;
    let uri = format!("/api/users/{ada}/sessions/{}", session_id(&bob_token));

    let reply = app.with_token(Method::Delete, &uri, &ada_token, None).await;

    reply.assert_problem(
        Status::NotFound,
        &format!("session {} not found", session_id(&bob_token)),
    );
    app.assert_signed_in(&bob_token).await;
}

// ---- sessions listed in the set of earlier versions ----

/// Moves the session of `token` from the user's index into a legacy set, as
/// a version before the index would have listed it, and dates its last use
/// a minute back, as such an old session's would be.
fn list_in_legacy_set(app: &TestApp, user: &str, token: &str) {
    let id = session_id(token);
    redis::pipe()
        .cmd("ZREM")
        .arg(app.sessions_of_key(user))
        .arg(&id)
        .cmd("SADD")
        .arg(app.legacy_sessions_of_key(user))
        .arg(&id)
        .exec(&mut app.redis())
        .expect("ZREM, SADD");
    app.date_last_use_back(token, Duration::from_secs(60));
}

#[rocket::async_test]
async fn a_password_change_also_ends_the_sessions_of_a_legacy_set() {
    let app = TestApp::spawn().await;
    let (id, token) = user_and_token(&app, "ada@example.com").await;
    list_in_legacy_set(&app, &id, &token);

    let body = json!({"password": PASSWORD, "new_password": "a brand new passphrase"});
    let reply = app.patch_user(&id, &body).await;

    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
    app.assert_signed_out(&token).await;
    app.assert_no_session_keys();
}

#[rocket::async_test]
async fn deleting_a_user_also_ends_the_sessions_of_a_legacy_set() {
    let app = TestApp::spawn().await;
    let (id, token) = user_and_token(&app, "ada@example.com").await;
    list_in_legacy_set(&app, &id, &token);

    let reply = app.delete_user(&id, &json!({"password": PASSWORD})).await;

    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
    app.assert_signed_out(&token).await;
    app.assert_no_session_keys();
}

#[rocket::async_test]
async fn revoking_all_sessions_ends_those_of_a_legacy_set() {
    let app = TestApp::spawn().await;
    let (id, current) = user_and_token(&app, "ada@example.com").await;
    let old = app.token_for("ada@example.com", PASSWORD).await;
    list_in_legacy_set(&app, &id, &old);
    let uri = format!("/api/users/{id}/sessions?keep_current=true");

    let reply = app.with_token(Method::Delete, &uri, &current, None).await;

    assert_eq!(reply.status, Status::NoContent, "{}", reply.body);
    app.assert_signed_out(&old).await;
    app.assert_signed_in(&current).await;
}

#[rocket::async_test]
async fn the_listing_includes_the_sessions_of_a_legacy_set() {
    let app = TestApp::spawn().await;
    let (id, old) = user_and_token(&app, "ada@example.com").await;
    tokio_sleep(Duration::from_millis(5)).await;
    let current = app.token_for("ada@example.com", PASSWORD).await;
    list_in_legacy_set(&app, &id, &old);

    let reply = app.list_sessions(&id, &current).await;

    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
    assert_eq!(listed_ids(&reply), [session_id(&old), session_id(&current)]);
}

#[rocket::async_test]
async fn using_a_session_of_a_legacy_set_moves_it_into_the_index() {
    let app = TestApp::spawn().await;
    let (id, token) = user_and_token(&app, "ada@example.com").await;
    list_in_legacy_set(&app, &id, &token);

    assert_eq!(app.current_session(&token).await.status, Status::Ok);

    assert_eq!(index_members(&app, &id), [session_id(&token)]);
    let legacy_set = app.legacy_sessions_of_key(&id);
    assert!(!app.exists(&legacy_set), "the legacy set emptied and went");
}

#[rocket::async_test]
async fn a_change_by_a_session_that_ended_after_its_check_is_refused() {
    let app = TestApp::spawn().await;
    let (id, token) = user_and_token(&app, "ada@example.com").await;
    let accounts = app.accounts();
    let caller = accounts.caller(&token).await.expect("the session checks");
    let logout = app
        .with_token(Method::Delete, "/api/sessions/current", &token, None)
        .await;
    assert_eq!(logout.status, Status::NoContent, "{}", logout.body);
    let client = user_accounts::domain::ClientAddress::resolve(
        std::net::Ipv4Addr::LOCALHOST.into(),
        None,
        None,
        &[],
    );
    let changed = accounts
        .update_profile(
            &caller,
            &client,
            UserId::parse(&id).expect("an id"),
            None,
            user_accounts::domain::UserName::parse("Eve").expect("a name"),
            user_accounts::domain::UserEmail::parse("eve@example.net").expect("an email"),
        )
        .await;
    assert!(
        matches!(
            changed,
            Err(user_accounts::accounts::AccountError::Unauthenticated(_))
        ),
        "{changed:?}"
    );
    assert_eq!(app.get_user(&id).await.json()["email"], "ada@example.com");
}
