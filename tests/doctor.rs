//! `user-accounts doctor`: each kind of inconsistency, made on purpose, is
//! reported, and `--repair` fixes the safe ones.

mod common;

use common::leftovers::{email, leave_claim, move_left_after_the_users_step};
use common::{index_member, user_id, TestApp};
use user_accounts::domain::UserId;
use user_accounts::store::layout::user_fields;

const PASSWORD: &str = "correct horse battery";

fn redis_cmd(app: &TestApp, args: &[&str]) {
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.exec(&mut *app.data()).expect("redis command");
}

async fn user(app: &TestApp, email: &str) -> String {
    let user = app.create_user("User", email, PASSWORD).await;
    user["id"].as_str().expect("id").to_owned()
}

#[rocket::async_test]
async fn consistent_data_passes() {
    let app = TestApp::spawn().await;
    user(&app, "ada@example.com").await;
    app.token_for("ada@example.com", PASSWORD).await;
    let run = app.doctor(false);
    assert!(run.success, "{}", run.stdout);
    assert!(run.stdout.contains("0 finding(s)"), "{}", run.stdout);
}

#[rocket::async_test]
async fn an_index_entry_without_a_user_is_reported_and_removed() {
    let app = TestApp::spawn().await;
    user(&app, "ada@example.com").await;
    let ghost = index_member("ghost@example.com", uuid::Uuid::new_v4());
    redis_cmd(
        &app,
        &["ZADD", &app.index_key_of("ghost@example.com"), "0", &ghost],
    );
    let run = app.doctor(false);
    assert!(!run.success);
    assert!(run.stdout.contains("has no user"), "{}", run.stdout);
    let run = app.doctor(true);
    assert!(run.success, "{}", run.stdout);
    assert_eq!(app.index_members().len(), 1);
    assert!(app.doctor(false).success);
}

#[rocket::async_test]
async fn a_malformed_index_entry_is_reported_and_removed() {
    let app = TestApp::spawn().await;
    redis_cmd(&app, &["ZADD", &app.index_key_of("x"), "0", "not-a-member"]);
    let run = app.doctor(false);
    assert!(
        run.stdout.contains("malformed index entry"),
        "{}",
        run.stdout
    );
    assert!(app.doctor(true).success);
    assert!(app.index_members().is_empty());
}

#[rocket::async_test]
async fn a_user_without_its_index_entry_is_reported_and_reindexed() {
    let app = TestApp::spawn().await;
    let id = user(&app, "ada@example.com").await;
    let member = index_member("ada@example.com", &id);
    redis_cmd(
        &app,
        &["ZREM", &app.index_key_of("ada@example.com"), &member],
    );
    let run = app.doctor(false);
    assert!(!run.success);
    assert!(run.stdout.contains("has no index entry"), "{}", run.stdout);
    assert!(app.doctor(true).success);
    assert_eq!(app.index_members(), vec![member]);
}

#[rocket::async_test]
async fn a_wrong_index_entry_is_replaced_by_the_right_one() {
    let app = TestApp::spawn().await;
    let id = user(&app, "ada@example.com").await;
    redis_cmd(
        &app,
        &[
            "HSET",
            &app.user_key(&id),
            user_fields::EMAIL,
            "lovelace@example.com",
        ],
    );
    let run = app.doctor(false);
    assert!(run.stdout.contains("is stale"), "{}", run.stdout);
    assert!(run.stdout.contains("has no index entry"), "{}", run.stdout);
    assert!(app.doctor(true).success);
    assert_eq!(
        app.index_members(),
        vec![index_member("lovelace@example.com", &id)]
    );
}

#[rocket::async_test]
async fn two_users_with_one_email_are_reported_but_left_to_a_person() {
    let app = TestApp::spawn().await;
    user(&app, "ada@example.com").await;
    let bob = user(&app, "bob@example.com").await;
    redis_cmd(
        &app,
        &[
            "HSET",
            &app.user_key(&bob),
            user_fields::EMAIL,
            "ada@example.com",
        ],
    );
    redis_cmd(
        &app,
        &[
            "ZREM",
            &app.index_key_of("bob@example.com"),
            &index_member("bob@example.com", &bob),
        ],
    );
    redis_cmd(
        &app,
        &[
            "ZADD",
            &app.index_key_of("ada@example.com"),
            "0",
            &index_member("ada@example.com", &bob),
        ],
    );
    let run = app.doctor(true);
    assert!(!run.success, "{}", run.stdout);
    assert!(
        run.stdout
            .contains("email ada@example.com is held by 2 users"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("needs a person"), "{}", run.stdout);
}

#[rocket::async_test]
async fn a_malformed_user_hash_is_reported() {
    let app = TestApp::spawn().await;
    let id = user(&app, "ada@example.com").await;
    redis_cmd(&app, &["HDEL", &app.user_key(&id), "created"]);
    let run = app.doctor(true);
    assert!(!run.success);
    assert!(
        run.stdout.contains("field created is missing"),
        "{}",
        run.stdout
    );
}

#[rocket::async_test]
async fn a_session_set_naming_an_expired_session_is_cleaned() {
    let app = TestApp::spawn().await;
    let id = user(&app, "ada@example.com").await;
    app.token_for("ada@example.com", PASSWORD).await;
    let set = app.sessions_of_key(&id);
    let far_future = (chrono::Utc::now().timestamp_millis() + 3_600_000).to_string();
    redis_cmd(&app, &["ZADD", &set, &far_future, &"0".repeat(64)]);
    let run = app.doctor(false);
    assert!(!run.success);
    assert!(run.stdout.contains("which has expired"), "{}", run.stdout);
    assert!(app.doctor(true).success);
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg(&set)
        .arg(0)
        .arg(-1)
        .query(&mut app.redis())
        .expect("ZRANGE");
    assert_eq!(members.len(), 1, "the live session stays");
}

fn index_scores(app: &TestApp, id: &str) -> Vec<(String, f64)> {
    redis::cmd("ZRANGE")
        .arg(app.sessions_of_key(id))
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query(&mut app.redis())
        .expect("ZRANGE")
}

/// A user with one session in the index and, as an earlier version kept
/// them, a live one and an ended one in a legacy set. Returns the user and
/// the two live sessions' ids, the indexed one first.
async fn user_with_a_legacy_set(app: &TestApp) -> (String, String, String) {
    let id = user(app, "ada@example.com").await;
    let indexed = common::session_id(&app.token_for("ada@example.com", PASSWORD).await);
    let legacy = common::session_id(&app.token_for("ada@example.com", PASSWORD).await);
    redis_cmd(app, &["ZREM", &app.sessions_of_key(&id), &legacy]);
    let set = app.legacy_sessions_of_key(&id);
    redis_cmd(app, &["SADD", &set, &legacy, &"0".repeat(64)]);
    (id, indexed, legacy)
}

#[rocket::async_test]
async fn a_session_set_of_an_earlier_version_is_reported() {
    let app = TestApp::spawn().await;
    let (id, _, _) = user_with_a_legacy_set(&app).await;

    let run = app.doctor(false);

    assert!(!run.success, "{}", run.stdout);
    assert!(
        run.stdout.contains(&format!(
            "user {id} has a session set in the old format (2 session ids)"
        )),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("--repair fixes this"), "{}", run.stdout);
}

#[rocket::async_test]
async fn repairing_moves_the_live_sessions_of_an_old_set_into_the_index() {
    let app = TestApp::spawn().await;
    let (id, indexed, legacy) = user_with_a_legacy_set(&app).await;

    let run = app.doctor(true);

    assert!(run.success, "{}", run.stdout);
    let scores = index_scores(&app, &id);
    let mut ids: Vec<&str> = scores.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort_unstable();
    let mut expected = vec![indexed.as_str(), legacy.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected, "the ended session is dropped");
    let now = chrono::Utc::now().timestamp_millis() as f64;
    for (id, ends_at) in &scores {
        // The default idle timeout is an hour.
        assert!(
            (now..=now + 3_600_000.0).contains(ends_at),
            "{id} ends at {ends_at}"
        );
    }
    let exists: bool = redis::cmd("EXISTS")
        .arg(app.legacy_sessions_of_key(&id))
        .query(&mut app.redis())
        .expect("EXISTS");
    assert!(!exists, "the old set is gone");
    assert!(app.doctor(false).success);
}

fn stored_email(app: &TestApp, id: &str) -> String {
    redis::cmd("HGET")
        .arg(app.user_key(id))
        .arg(user_fields::EMAIL)
        .query(&mut app.redis())
        .expect("HGET")
}

/// A user whose hash and index entry hold `email`, written by hand as an
/// earlier version with other address rules would have stored it.
async fn user_stored_as(app: &TestApp, email: &str) -> String {
    let id = user(app, "v@example.com").await;
    redis_cmd(
        app,
        &["HSET", &app.user_key(&id), user_fields::EMAIL, email],
    );
    redis_cmd(
        app,
        &[
            "ZREM",
            &app.index_key_of("v@example.com"),
            &index_member("v@example.com", &id),
        ],
    );
    redis_cmd(
        app,
        &[
            "ZADD",
            &app.index_key_of(email),
            "0",
            &index_member(email, &id),
        ],
    );
    id
}

/// Stores a user with `stored` by hand, runs `doctor --repair`, and checks
/// that it reports the user with `finding` (after its id) and leaves it as
/// it was.
async fn assert_reported_and_left_alone(stored: &str, finding: &str) {
    let app = TestApp::spawn().await;
    let id = user_stored_as(&app, stored).await;

    let run = app.doctor(true);

    assert!(!run.success, "{}", run.stdout);
    let line = format!("user {id} ({stored}) {finding} (needs a person: not repaired)");
    assert!(run.stdout.contains(&line), "{line} in:\n{}", run.stdout);
    assert!(
        run.stdout.contains("1 finding(s), 0 repaired"),
        "{}",
        run.stdout
    );
    assert_eq!(stored_email(&app, &id), stored);
    assert_eq!(app.index_members(), vec![index_member(stored, &id)]);
}

#[rocket::async_test]
async fn a_stored_email_that_now_normalizes_differently_is_reported_and_left_alone() {
    assert_reported_and_left_alone(
        "v@ex\u{E4}mple.com",
        "has an email that the current rules store as v@xn--exmple-cua.com",
    )
    .await;
}

#[rocket::async_test]
async fn a_stored_email_that_the_rules_now_refuse_is_reported_and_left_alone() {
    assert_reported_and_left_alone(
        "\"q,1\"@example.com",
        "has an email that the current rules refuse: it must not have a quoted local part",
    )
    .await;
}

#[rocket::async_test]
async fn a_user_whose_stored_email_the_rules_now_refuse_is_still_read_as_stored() {
    let app = TestApp::spawn().await;
    let id = user_stored_as(&app, "\"q,1\"@example.com").await;
    let reply = app.get_as_admin(&format!("/api/users/{id}")).await;
    assert_eq!(reply.status, rocket::http::Status::Ok, "{}", reply.body);
    assert_eq!(reply.json()["email"], "\"q,1\"@example.com");
}

#[rocket::async_test]
async fn an_email_change_left_unfinished_by_a_crash_is_reported_and_finished() {
    let app = TestApp::spawn().await;
    let id = move_left_after_the_users_step(&app).await;
    let run = app.doctor(false);
    assert!(!run.success);
    assert!(
        run.stdout.contains("has steps left to run"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("1 finding(s)"), "{}", run.stdout);
    assert!(app.doctor(true).success);
    assert_eq!(app.index_members(), [index_member("new@example.org", &id)]);
    let keys = app.keys_of_layout();
    assert!(!app.exists(&keys.email_claim(&email("new@example.org"))));
    assert!(!app.exists(&keys.email_move(user_id(&id))));
    assert!(app.doctor(false).success);
}

#[rocket::async_test]
async fn a_claim_past_its_lifetime_is_reported_and_removed() {
    let app = TestApp::spawn().await;
    leave_claim(&app, "free@example.com", &UserId::generate(), 31_000);
    let run = app.doctor(false);
    assert!(!run.success);
    assert!(run.stdout.contains("past its lifetime"), "{}", run.stdout);
    assert!(app.doctor(true).success);
    assert!(!app.exists(&app.keys_of_layout().email_claim(&email("free@example.com"))));
}

#[rocket::async_test]
async fn a_claim_within_its_lifetime_is_a_change_under_way_not_a_finding() {
    let app = TestApp::spawn().await;
    leave_claim(&app, "taken@example.com", &UserId::generate(), 1_000);
    let run = app.doctor(true);
    assert!(run.success, "{}", run.stdout);
    assert!(run.stdout.contains("0 finding(s)"), "{}", run.stdout);
    assert!(app.exists(
        &app.keys_of_layout()
            .email_claim(&email("taken@example.com"))
    ));
}

#[rocket::async_test]
async fn an_entry_without_a_user_stored_in_an_earlier_form_is_removed() {
    let app = TestApp::spawn().await;
    let ghost = index_member("v@exämple.com", uuid::Uuid::new_v4());
    redis_cmd(
        &app,
        &["ZADD", &app.index_key_of("v@exämple.com"), "0", &ghost],
    );
    let run = app.doctor(true);
    assert!(run.success, "{}", run.stdout);
    assert!(app.index_members().is_empty());
}
