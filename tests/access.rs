//! Who may do what: the credentials each route takes, and the answer to
//! each one it does not (401 without a credential, 403 with one that may
//! not do this).

mod common;

use std::time::Duration;

use common::{index_member, session_id, Reply, TestApp};
use rocket::http::{Method, Status};
use serde_json::{json, Value};
use user_accounts::domain::KeyScope;

const PASSWORD: &str = "correct horse battery";

/// A user and a session of theirs.
struct Member {
    id: String,
    email: String,
    token: String,
}

async fn member(app: &TestApp, email: &str) -> Member {
    let user = app.create_user("Member", email, PASSWORD).await;
    Member {
        id: user["id"].as_str().expect("id").to_owned(),
        email: email.to_owned(),
        token: app.token_for(email, PASSWORD).await,
    }
}

/// A `401` for a credential that names nothing.
fn assert_invalid_token(reply: &Reply) {
    reply.assert_problem(
        Status::Unauthorized,
        "the credential is unknown, revoked or expired",
    );
    assert_eq!(reply.json()["type"], "/problems/invalid-token");
    assert_eq!(
        reply.header("WWW-Authenticate"),
        Some(r#"Bearer error="invalid_token""#)
    );
}

fn assert_needs_a_credential(reply: &Reply) {
    reply.assert_problem(
        Status::Unauthorized,
        "this needs a credential: send Authorization: Bearer <session token or admin key>",
    );
    assert_eq!(reply.json()["type"], "/problems/unauthenticated");
    assert_eq!(reply.header("WWW-Authenticate"), Some("Bearer"));
}

fn assert_forbidden(reply: &Reply, problem_type: &str) {
    assert_eq!(reply.status, Status::Forbidden, "{}", reply.body);
    assert_eq!(reply.json()["type"], problem_type, "{}", reply.body);
}

async fn send(app: &TestApp, method: Method, uri: &str, credential: &str, body: Value) -> Reply {
    app.with_token(method, uri, credential, Some(&body)).await
}

/// Asserts that `GET uri` answers 401 without a credential, 403 to the
/// session `token` and to a key of scope `refused`, and 200 to a key of
/// each scope in `allowed`; the replies to those keys.
async fn assert_only_keys_may_get(
    app: &TestApp,
    uri: &str,
    token: &str,
    refused: KeyScope,
    allowed: [KeyScope; 2],
) -> Vec<Reply> {
    assert_needs_a_credential(&app.get(uri).await);
    assert_forbidden(&app.get_as(uri, token).await, "/problems/forbidden");
    let key = app.key(refused).await;
    assert_forbidden(&app.get_as(uri, &key).await, "/problems/forbidden");
    let mut replies = Vec::new();
    for scope in allowed {
        let reply = app.get_as(uri, &app.key(scope).await).await;
        assert_eq!(reply.status, Status::Ok, "{scope}");
        replies.push(reply);
    }
    replies
}

/// Asserts that an admin key's `DELETE uri` answers 204 and ends the
/// session of `token`.
async fn assert_an_admin_key_ends(app: &TestApp, uri: &str, token: &str) {
    let reply = app
        .with_token(Method::Delete, uri, app.admin_key().await, None)
        .await;
    assert_eq!(reply.status, Status::NoContent);
    app.assert_signed_out(token).await;
}

// ---- reading ----

#[rocket::async_test]
async fn the_user_list_needs_an_admin_or_read_key() {
    let app = TestApp::spawn().await;
    let ada = member(&app, "ada@example.com").await;
    let readers = [KeyScope::Read, KeyScope::Admin];
    let replies =
        assert_only_keys_may_get(&app, "/api/users", &ada.token, KeyScope::Metrics, readers).await;
    for reply in replies {
        assert_eq!(reply.json()["total"], 1);
    }
}

#[rocket::async_test]
async fn a_lookup_by_email_needs_a_key_or_a_session_looking_up_its_own_email() {
    let app = TestApp::spawn().await;
    let ada = member(&app, "ada@example.com").await;
    member(&app, "bob@example.com").await;
    assert_needs_a_credential(&app.get("/api/users/bob@example.com").await);
    let own = app.get_as("/api/users/ada@example.com", &ada.token).await;
    assert_eq!(own.status, Status::Ok);
    assert_eq!(own.json()["id"], ada.id.as_str());
    let reader = app.key(KeyScope::Read).await;
    assert_eq!(
        app.get_as("/api/users/bob@example.com", &reader)
            .await
            .status,
        Status::Ok
    );
}

#[rocket::async_test]
async fn a_session_looking_up_another_email_learns_nothing_of_whether_it_exists() {
    let app = TestApp::spawn().await;
    let ada = member(&app, "ada@example.com").await;
    member(&app, "bob@example.com").await;
    let taken = app.get_as("/api/users/bob@example.com", &ada.token).await;
    let free = app
        .get_as("/api/users/nobody@example.com", &ada.token)
        .await;
    let malformed = app.get_as("/api/users/not-an-email", &ada.token).await;
    assert_forbidden(&taken, "/problems/forbidden");
    assert_eq!((taken.status, taken.json()), (free.status, free.json()));
    assert_eq!(
        (taken.status, taken.json()),
        (malformed.status, malformed.json())
    );
}

#[rocket::async_test]
async fn a_user_by_id_is_read_by_its_own_session_or_a_key() {
    let app = TestApp::spawn().await;
    let ada = member(&app, "ada@example.com").await;
    let bob = member(&app, "bob@example.com").await;
    let uri = format!("/api/users/{}", ada.id);
    assert_needs_a_credential(&app.get(&uri).await);
    assert_eq!(app.get_as(&uri, &ada.token).await.status, Status::Ok);
    assert_forbidden(&app.get_as(&uri, &bob.token).await, "/problems/forbidden");
    let reader = app.key(KeyScope::Read).await;
    assert_eq!(app.get_as(&uri, &reader).await.status, Status::Ok);
}

#[rocket::async_test]
async fn sessions_and_activity_are_read_by_their_user_or_a_key() {
    let app = TestApp::spawn().await;
    let ada = member(&app, "ada@example.com").await;
    let bob = member(&app, "bob@example.com").await;
    let reader = app.key(KeyScope::Read).await;
    for uri in [
        format!("/api/users/{}/sessions", ada.id),
        format!("/api/users/{}/activity", ada.id),
    ] {
        assert_needs_a_credential(&app.get(&uri).await);
        assert_eq!(
            app.get_as(&uri, &ada.token).await.status,
            Status::Ok,
            "{uri}"
        );
        assert_forbidden(&app.get_as(&uri, &bob.token).await, "/problems/forbidden");
        assert_eq!(app.get_as(&uri, &reader).await.status, Status::Ok, "{uri}");
    }
}

#[rocket::async_test]
async fn an_unknown_or_malformed_credential_counts_as_none_and_gets_invalid_token() {
    let app = TestApp::spawn().await;
    let ada = member(&app, "ada@example.com").await;
    let uri = format!("/api/users/{}", ada.id);
    for credential in [
        "not-a-token",
        &"a".repeat(43),
        &common::unknown_key(),
        "uak_short",
    ] {
        assert_invalid_token(&app.get_as(&uri, credential).await);
    }
    let signup = json!({"name": "Bob", "email": "bob@example.com", "password": PASSWORD});
    let reply = send(&app, Method::Post, "/api/users", "not-a-token", signup).await;
    assert_eq!(
        reply.status,
        Status::Created,
        "anyone may sign up: {}",
        reply.body
    );
}

#[rocket::async_test]
async fn metrics_need_an_admin_or_metrics_key() {
    let app = TestApp::spawn().await;
    let ada = member(&app, "ada@example.com").await;
    let scrapers = [KeyScope::Metrics, KeyScope::Admin];
    assert_only_keys_may_get(&app, "/metrics", &ada.token, KeyScope::Read, scrapers).await;
}

#[rocket::async_test]
async fn health_ping_and_docs_need_no_credential() {
    let app = TestApp::spawn().await;
    for uri in [
        "/ping",
        "/health/live",
        "/health/ready",
        "/docs",
        "/api/openapi.json",
    ] {
        assert_eq!(app.get(uri).await.status, Status::Ok, "{uri}");
    }
}

// ---- changing ----

#[rocket::async_test]
async fn the_password_in_the_body_is_the_proof_whatever_session_the_header_carries() {
    let app = TestApp::spawn().await;
    let ada = member(&app, "ada@example.com").await;
    let bob = member(&app, "bob@example.com").await;
    let uri = format!("/api/users/{}", ada.id);
    let body = json!({"name": "Ada L.", "email": ada.email, "password": PASSWORD});
    let reply = send(&app, Method::Put, &uri, &bob.token, body).await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
    let wrong = json!({"name": "Ada", "email": ada.email, "password": "wrong"});
    let reply = send(&app, Method::Put, &uri, &ada.token, wrong).await;
    assert_eq!(
        reply.status,
        Status::Unauthorized,
        "a wrong password is wrong"
    );
}

#[rocket::async_test]
async fn a_read_key_changes_nothing() {
    let app = TestApp::spawn().await;
    let ada = member(&app, "ada@example.com").await;
    let reader = app.key(KeyScope::Read).await;
    let uri = format!("/api/users/{}", ada.id);
    let body = json!({"name": "Mallory", "email": ada.email});
    assert_forbidden(
        &send(&app, Method::Put, &uri, &reader, body).await,
        "/problems/forbidden",
    );
    assert_eq!(app.get_user(&ada.id).await.json()["name"], "Member");
}

#[rocket::async_test]
async fn an_admin_key_changes_a_password_without_the_old_one_and_ends_the_sessions() {
    let app = TestApp::spawn().await;
    let ada = member(&app, "ada@example.com").await;
    let admin = app.admin_key().await.to_owned();
    let uri = format!("/api/users/{}", ada.id);
    let reply = send(
        &app,
        Method::Patch,
        &uri,
        &admin,
        json!({"new_password": "a new passphrase"}),
    )
    .await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
    app.assert_signed_out(&ada.token).await;
    assert_eq!(
        app.login("ada@example.com", "a new passphrase")
            .await
            .status,
        Status::Created
    );
}

#[rocket::async_test]
async fn an_old_session_may_rename_but_not_change_email_password_or_delete() {
    let app = TestApp::spawn_with(&[("SESSION_REAUTH_SECS", "1")]).await;
    let ada = member(&app, "ada@example.com").await;
    rocket::tokio::time::sleep(Duration::from_millis(1100)).await;
    let uri = format!("/api/users/{}", ada.id);
    let rename = json!({"name": "Ada L.", "email": ada.email});
    let reply = send(&app, Method::Put, &uri, &ada.token, rename).await;
    assert_eq!(reply.status, Status::Ok, "a name needs no recent login");
    for (method, body) in [
        (
            Method::Put,
            json!({"name": "Ada", "email": "new@example.com"}),
        ),
        (Method::Patch, json!({"new_password": "a new passphrase"})),
        (Method::Delete, json!({})),
    ] {
        let reply = send(&app, method, &uri, &ada.token, body).await;
        assert_forbidden(&reply, "/problems/reauthentication-required");
    }
    let user = app.get_user(&ada.id).await.json();
    assert_eq!(user["email"], "ada@example.com", "nothing changed");
}

#[rocket::async_test]
async fn a_fresh_session_may_change_the_email() {
    let app = TestApp::spawn().await;
    let ada = member(&app, "ada@example.com").await;
    let uri = format!("/api/users/{}", ada.id);
    let body = json!({"name": "Ada", "email": "lovelace@example.com"});
    let reply = send(&app, Method::Put, &uri, &ada.token, body).await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
    assert_eq!(
        app.index_members(),
        vec![index_member("lovelace@example.com", &ada.id)]
    );
}

#[rocket::async_test]
async fn a_put_that_changes_nothing_records_no_event() {
    let app = TestApp::spawn().await;
    let ada = member(&app, "ada@example.com").await;
    let uri = format!("/api/users/{}", ada.id);
    let same = json!({"name": "Member", "email": ada.email});
    assert_eq!(
        send(&app, Method::Put, &uri, &ada.token, same).await.status,
        Status::Ok
    );
    let activity = app
        .get_as(&format!("{uri}/activity"), &ada.token)
        .await
        .json();
    assert_eq!(
        activity.as_array().map(Vec::len),
        Some(1),
        "only user.created: {activity}"
    );
}

// ---- admin operations ----

#[rocket::async_test]
async fn only_an_admin_key_disables_a_user() {
    let app = TestApp::spawn().await;
    let ada = member(&app, "ada@example.com").await;
    let uri = format!("/api/users/{}/disable", ada.id);
    assert_needs_a_credential(&app.send_raw(Method::Post, &uri, None, "").await);
    let reader = app.key(KeyScope::Read).await;
    for credential in [&ada.token, &reader] {
        let reply = app.with_token(Method::Post, &uri, credential, None).await;
        assert_forbidden(&reply, "/problems/forbidden");
    }
}

#[rocket::async_test]
async fn a_disabled_user_loses_its_sessions_and_cannot_log_in_until_enabled() {
    let app = TestApp::spawn().await;
    let ada = member(&app, "ada@example.com").await;
    let admin = app.admin_key().await.to_owned();
    let disable = format!("/api/users/{}/disable", ada.id);
    let reply = app.with_token(Method::Post, &disable, &admin, None).await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
    assert_eq!(reply.json()["disabled"], true);
    app.assert_signed_out(&ada.token).await;
    assert_forbidden(
        &app.login("ada@example.com", PASSWORD).await,
        "/problems/account-disabled",
    );
    assert_eq!(app.get_user(&ada.id).await.json()["disabled"], true);

    let enable = format!("/api/users/{}/enable", ada.id);
    let reply = app.with_token(Method::Post, &enable, &admin, None).await;
    assert_eq!(reply.json()["disabled"], false);
    assert_eq!(
        app.login("ada@example.com", PASSWORD).await.status,
        Status::Created
    );
}

#[rocket::async_test]
async fn a_wrong_password_for_a_disabled_user_is_just_wrong() {
    let app = TestApp::spawn().await;
    let ada = member(&app, "ada@example.com").await;
    let admin = app.admin_key().await.to_owned();
    let disable = format!("/api/users/{}/disable", ada.id);
    app.with_token(Method::Post, &disable, &admin, None).await;
    let reply = app.login("ada@example.com", "wrong password").await;
    reply.assert_problem(Status::Unauthorized, "wrong email or password");
}

#[rocket::async_test]
async fn ending_all_of_a_users_sessions_takes_the_user_or_an_admin_key() {
    let app = TestApp::spawn().await;
    let ada = member(&app, "ada@example.com").await;
    let bob = member(&app, "bob@example.com").await;
    let uri = format!("/api/users/{}/sessions", ada.id);
    let reply = app.with_token(Method::Delete, &uri, &bob.token, None).await;
    assert_forbidden(&reply, "/problems/forbidden");
    assert_an_admin_key_ends(&app, &uri, &ada.token).await;
}

#[rocket::async_test]
async fn an_admin_key_ends_one_session_of_a_user() {
    let app = TestApp::spawn().await;
    let ada = member(&app, "ada@example.com").await;
    let uri = format!("/api/users/{}/sessions/{}", ada.id, session_id(&ada.token));
    assert_an_admin_key_ends(&app, &uri, &ada.token).await;
}

#[rocket::async_test]
async fn with_sign_up_closed_only_an_admin_key_creates_users() {
    let app = TestApp::spawn_with(&[("SIGNUP", "closed")]).await;
    let body = json!({"name": "Ada", "email": "ada@example.com", "password": PASSWORD});
    assert_forbidden(&app.post_user(&body).await, "/problems/signup-closed");
    let reader = app.key(KeyScope::Read).await;
    let reply = send(&app, Method::Post, "/api/users", &reader, body.clone()).await;
    assert_forbidden(&reply, "/problems/signup-closed");
    let admin = app.admin_key().await.to_owned();
    let reply = send(&app, Method::Post, "/api/users", &admin, body).await;
    assert_eq!(reply.status, Status::Created, "{}", reply.body);
}

#[rocket::async_test]
async fn a_revoked_key_stops_working_within_five_seconds() {
    let app = TestApp::spawn().await;
    let key = app.key(KeyScope::Read).await;
    assert_eq!(app.get_as("/api/users", &key).await.status, Status::Ok);
    let accounts = app.accounts();
    let names = accounts.admin_keys().await.expect("listed");
    for info in names {
        accounts.revoke_admin_key(info.name).await.expect("revoked");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while app.get_as("/api/users", &key).await.status == Status::Ok {
        assert!(
            std::time::Instant::now() < deadline,
            "still accepted after 5 s"
        );
        rocket::tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_invalid_token(&app.get_as("/api/users", &key).await);
}

#[rocket::async_test]
async fn a_malformed_email_looked_up_without_a_credential_gets_401_not_404() {
    let app = TestApp::spawn().await;
    assert_needs_a_credential(&app.get("/api/users/not-an-email").await);
}

#[rocket::async_test]
async fn a_malformed_list_query_without_a_credential_gets_401_not_422() {
    let app = TestApp::spawn().await;
    assert_needs_a_credential(&app.get("/api/users?limit=0").await);
    let reader = app.key(KeyScope::Read).await;
    let reply = app.get_as("/api/users?limit=0", &reader).await;
    assert_eq!(reply.status, Status::UnprocessableEntity, "{}", reply.body);
}

#[rocket::async_test]
async fn a_key_of_too_narrow_a_scope_is_told_which_keys_may() {
    let app = TestApp::spawn().await;
    let reader = app.key(KeyScope::Read).await;
    let reply = app.get_as("/metrics", &reader).await;
    reply.assert_problem(
        Status::Forbidden,
        "only an admin or metrics key may do this",
    );
    let metrics = app.key(KeyScope::Metrics).await;
    let reply = app.get_as("/api/users", &metrics).await;
    reply.assert_problem(Status::Forbidden, "only an admin or read key may do this");
}

#[rocket::async_test]
async fn a_closed_sign_up_with_a_credential_that_names_nothing_gets_invalid_token() {
    let app = TestApp::spawn_with(&[("SIGNUP", "closed")]).await;
    let body = json!({"name": "Ada", "email": "ada@example.com", "password": PASSWORD});
    let reply = send(
        &app,
        Method::Post,
        "/api/users",
        &common::unknown_key(),
        body,
    )
    .await;
    assert_invalid_token(&reply);
}

#[rocket::async_test]
async fn a_read_key_changing_a_user_is_told_who_may() {
    let app = TestApp::spawn().await;
    let ada = member(&app, "ada@example.com").await;
    let reader = app.key(KeyScope::Read).await;
    let body = json!({"name": "Eve", "email": "ada@example.com"});
    let reply = send(
        &app,
        Method::Put,
        &format!("/api/users/{}", ada.id),
        &reader,
        body,
    )
    .await;
    reply.assert_problem(
        Status::Forbidden,
        "only the user's own session or password, or an admin key, may do this",
    );
}
