//! How the service gets past what a crash in the middle of an email change
//! or a deletion leaves in Redis: a claim, a recorded move or an entry of a
//! deleted account, written here by hand.

mod common;

use common::leftovers::{email, leave_claim, move_left_after_the_users_step, PASSWORD};
use common::{id_of, index_member, user_id, TestApp};
use rocket::http::Status;
use serde_json::json;
use user_accounts::domain::UserId;

#[rocket::async_test]
async fn a_young_claim_keeps_its_email_from_a_sign_up() {
    let app = TestApp::spawn().await;
    leave_claim(&app, "taken@example.com", &UserId::generate(), 1_000);
    let reply = app.sign_up("Bob", "taken@example.com", PASSWORD).await;
    assert_eq!(reply.status, Status::Conflict, "{}", reply.body);
}

#[rocket::async_test]
async fn a_claim_older_than_30_seconds_whose_account_never_took_the_email_is_taken_over() {
    let app = TestApp::spawn().await;
    leave_claim(&app, "free@example.com", &UserId::generate(), 31_000);
    let reply = app.sign_up("Bob", "free@example.com", PASSWORD).await;
    assert_eq!(reply.status, Status::Created, "{}", reply.body);
    assert!(!app.exists(&app.keys_of_layout().email_claim(&email("free@example.com"))));
}

#[rocket::async_test]
async fn an_old_claim_whose_account_took_the_email_keeps_it_and_becomes_its_entry() {
    let app = TestApp::spawn().await;
    let id = move_left_after_the_users_step(&app).await;
    leave_claim(&app, "new@example.org", &user_id(&id), 31_000);
    let reply = app.sign_up("Bob", "new@example.org", PASSWORD).await;
    assert_eq!(reply.status, Status::Conflict, "{}", reply.body);
    assert!(app
        .index_members()
        .contains(&index_member("new@example.org", &id)));
}

#[rocket::async_test]
async fn a_move_left_after_the_users_step_is_found_by_its_new_email() {
    let app = TestApp::spawn().await;
    move_left_after_the_users_step(&app).await;
    let login = app.login("new@example.org", PASSWORD).await;
    assert_eq!(login.status, Status::Created, "{}", login.body);
}

#[rocket::async_test]
async fn the_accounts_next_change_finishes_a_move_left_by_a_crash() {
    let app = TestApp::spawn().await;
    let id = move_left_after_the_users_step(&app).await;
    let token = app.token_for("new@example.org", PASSWORD).await;
    let body = json!({"name": "Ada L", "email": "new@example.org"});
    let renamed = app.put_user_as(&id, &token, &body).await;
    assert_eq!(renamed.status, Status::Ok, "{}", renamed.body);
    assert_eq!(app.index_members(), [index_member("new@example.org", &id)]);
    let keys = app.keys_of_layout();
    assert!(!app.exists(&keys.email_claim(&email("new@example.org"))));
    assert!(!app.exists(&keys.email_move(user_id(&id))));
}

#[rocket::async_test]
async fn an_entry_left_by_a_crashed_deletion_frees_its_email_at_the_next_sign_up() {
    let app = TestApp::spawn().await;
    let id = id_of(&app.create_user("Ada", "ada@example.com", PASSWORD).await).to_owned();
    redis::cmd("DEL")
        .arg(app.user_key(&id))
        .exec(&mut app.redis())
        .expect("DEL user");
    let reply = app.sign_up("Bob", "ada@example.com", PASSWORD).await;
    assert_eq!(reply.status, Status::Created, "{}", reply.body);
    let bob = id_of(&reply.json()).to_owned();
    assert_eq!(app.index_members(), [index_member("ada@example.com", &bob)]);
}
