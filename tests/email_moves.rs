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

#[rocket::async_test]
async fn a_login_with_the_email_an_account_is_leaving_is_refused() {
    let app = TestApp::spawn().await;
    move_left_after_the_users_step(&app).await;
    let login = app.login("ada@example.com", PASSWORD).await;
    assert_eq!(login.status, Status::Unauthorized, "{}", login.body);
}

#[rocket::async_test]
async fn a_live_claim_of_another_change_of_the_account_is_neither_taken_over_nor_released() {
    let app = TestApp::spawn().await;
    let id = id_of(&app.create_user("Ada", "ada@example.com", PASSWORD).await).to_owned();
    let token = app.token_for("ada@example.com", PASSWORD).await;
    leave_claim(&app, "new@example.org", &user_id(&id), 1_000);
    let claim_key = app.keys_of_layout().email_claim(&email("new@example.org"));
    let before: String = redis::cmd("GET")
        .arg(&claim_key)
        .query(&mut app.redis())
        .expect("GET claim");
    let body = json!({"name": "Ada", "email": "new@example.org"});
    let changed = app.put_user_as(&id, &token, &body).await;
    assert_eq!(
        changed.status,
        Status::ServiceUnavailable,
        "{}",
        changed.body
    );
    let after: String = redis::cmd("GET")
        .arg(&claim_key)
        .query(&mut app.redis())
        .expect("GET claim");
    assert_eq!(after, before);
}

#[rocket::async_test]
async fn finishing_a_move_again_after_the_account_moved_back_changes_nothing() {
    let app = TestApp::spawn().await;
    let id = id_of(&app.create_user("Ada", "ada@example.com", PASSWORD).await).to_owned();
    let token = app.token_for("ada@example.com", PASSWORD).await;
    for address in ["new@example.org", "ada@example.com"] {
        let body = json!({"name": "Ada", "email": address});
        let changed = app.put_user_as(&id, &token, &body).await;
        assert_eq!(changed.status, Status::Ok, "{}", changed.body);
    }
    // The first move's record, as a request that stalled before its last
    // steps still holds it.
    redis::cmd("HSET")
        .arg(app.keys_of_layout().email_move(user_id(&id)))
        .arg("id")
        .arg("0123456789abcdef")
        .arg("old")
        .arg("ada@example.com")
        .arg("new")
        .arg("new@example.org")
        .exec(&mut app.redis())
        .expect("HSET move");
    let token = app.token_for("ada@example.com", PASSWORD).await;
    let body = json!({"name": "Ada L", "email": "ada@example.com"});
    let renamed = app.put_user_as(&id, &token, &body).await;
    assert_eq!(renamed.status, Status::Ok, "{}", renamed.body);
    assert_eq!(app.index_members(), [index_member("ada@example.com", &id)]);
    let bob = app.sign_up("Bob", "new@example.org", PASSWORD).await;
    assert_eq!(bob.status, Status::Created, "{}", bob.body);
}

#[rocket::async_test]
async fn finishing_a_revert_deletes_the_reservations_it_ended() {
    let app = TestApp::spawn().await;
    let id = id_of(&app.create_user("Ada", "ada@example.com", PASSWORD).await).to_owned();
    let keys = app.keys_of_layout();
    let reservation = keys.email_reserved(&email("other@example.net"));
    let mut redis = app.redis();
    redis::cmd("SET")
        .arg(&reservation)
        .arg(&id)
        .exec(&mut redis)
        .expect("SET reservation");
    // What a revert to ada@example.com that ended the reservation of
    // other@example.net leaves when it stops after its own step.
    redis::cmd("HSET")
        .arg(keys.email_move(user_id(&id)))
        .arg("id")
        .arg("0123456789abcdef")
        .arg("old")
        .arg("other@example.net")
        .arg("new")
        .arg("ada@example.com")
        .arg("ended")
        .arg(&reservation)
        .exec(&mut redis)
        .expect("HSET move");
    let token = app.token_for("ada@example.com", PASSWORD).await;
    let body = json!({"name": "Ada L", "email": "ada@example.com"});
    let renamed = app.put_user_as(&id, &token, &body).await;
    assert_eq!(renamed.status, Status::Ok, "{}", renamed.body);
    assert!(!app.exists(&reservation));
    assert!(!app.exists(&keys.email_move(user_id(&id))));
}

#[rocket::async_test]
async fn a_move_an_earlier_release_left_unfinished_frees_its_address_once_the_account_moves_on() {
    let app = TestApp::spawn().await;
    let id = id_of(&app.create_user("Ada", "ada@example.com", PASSWORD).await).to_owned();
    let keys = app.keys_of_layout();
    let mut redis = app.redis();
    // An earlier release's move: no id in its claim, its record or the hash.
    redis::cmd("HSET")
        .arg(app.user_key(&id))
        .arg("email")
        .arg("new@example.org")
        .exec(&mut redis)
        .expect("HSET email");
    redis::cmd("HSET")
        .arg(keys.email_move(user_id(&id)))
        .arg("old")
        .arg("ada@example.com")
        .arg("new")
        .arg("new@example.org")
        .exec(&mut redis)
        .expect("HSET move");
    redis::cmd("SET")
        .arg(keys.email_claim(&email("new@example.org")))
        .arg(format!("{id} 0"))
        .exec(&mut redis)
        .expect("SET claim");
    let token = app.token_for("new@example.org", PASSWORD).await;
    let body = json!({"name": "Ada", "email": "third@example.net"});
    let changed = app.put_user_as(&id, &token, &body).await;
    assert_eq!(changed.status, Status::Ok, "{}", changed.body);
    assert_eq!(
        app.index_members(),
        [index_member("third@example.net", &id)]
    );
    let bob = app.sign_up("Bob", "new@example.org", PASSWORD).await;
    assert_eq!(bob.status, Status::Created, "{}", bob.body);
}
