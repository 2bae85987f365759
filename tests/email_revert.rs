//! Taking an account back after its email was changed: the notice to the
//! old address carries a revert code that, for 7 days, puts that address
//! back, ends every session and locks the password until a reset.

mod common;

use common::mailbox::*;
use common::smtp::Received;
use common::{id_of, index_member, user_id, Reply};
use rocket::http::Status;
use serde_json::json;
use user_accounts::domain::{RevertCode, UserEmail};

const REVERT: &str = "/api/email-change/revert";
const OWNER: &str = "owner@example.com";
const THIEF: &str = "thief@example.net";
const CHANGED: &str = "email address of your";

/// A verified account whose email was changed to `THIEF` by a fresh
/// session, and that session's token. The sign-up's verification mail and
/// the change's two mails (a code to the new address, the notice to the
/// old) make three.
async fn stolen_account(mailed: &MailedApp) -> (String, String) {
    let id = verified_owner(mailed).await;
    let token = mailed.app.token_for(OWNER, PASSWORD).await;
    change_email(mailed, &id, &token, THIEF).await;
    (id, token)
}

async fn change_email(mailed: &MailedApp, id: &str, token: &str, email: &str) {
    let body = json!({"name": "Ada", "email": email});
    let reply = mailed.app.put_user_as(id, token, &body).await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
}

/// `OWNER`'s account with its email verified by the code of the first
/// mail.
async fn verified_owner(mailed: &MailedApp) -> String {
    let id = mailed.sign_up(OWNER).await;
    let code = mailed.code_for(OWNER, 1, "Verify").await;
    assert_eq!(
        confirm_email(&mailed.app, OWNER, &code).await.status,
        Status::Ok
    );
    id
}

/// Verifies `THIEF`, the address of a stolen account, with the code the
/// change sent it: its own later change then mails it a revert code.
async fn verify_thiefs_address(mailed: &MailedApp) {
    let code = mailed.code_for(THIEF, 3, "Verify").await;
    assert_eq!(
        confirm_email(&mailed.app, THIEF, &code).await.status,
        Status::Ok
    );
}

async fn revert(mailed: &MailedApp, email: &str, code: &str) -> Reply {
    mailed
        .app
        .post_json(REVERT, &json!({"email": email, "code": code}))
        .await
}

/// The latest notice of a change to `to`, once `count` mails came.
async fn notice(mailed: &MailedApp, to: &str, count: usize) -> Received {
    mailed.latest_mail(to, count, CHANGED).await
}

/// The revert code standing on a line of its own in the latest notice to
/// `to`, once `count` mails came.
async fn revert_code(mailed: &MailedApp, to: &str, count: usize) -> String {
    let text = notice(mailed, to, count).await.text();
    text.lines()
        .map(str::trim)
        .find(|line| RevertCode::parse(line).is_ok())
        .unwrap_or_else(|| panic!("no revert code in:\n{text}"))
        .to_owned()
}

/// A revert code, but not the one mailed.
fn other_than(code: &str) -> &'static str {
    if code == "AAAAAAAAAAAAAAAAAAAAAA" {
        "BBBBBBBBBBBBBBBBBBBBBA"
    } else {
        "AAAAAAAAAAAAAAAAAAAAAA"
    }
}

#[rocket::async_test]
async fn the_notice_to_the_old_address_carries_a_revert_code_and_its_link() {
    let mailed = MailedApp::spawn(&[]).await;
    stolen_account(&mailed).await;
    let code = revert_code(&mailed, OWNER, 3).await;
    let text = notice(&mailed, OWNER, 3).await.text();
    assert!(
        text.contains(&format!(
            "https://accounts.example.com/revert#email=owner%40example.com&code={code}"
        )),
        "{text}"
    );
}

#[rocket::async_test]
async fn a_revert_code_puts_the_old_email_back_verified() {
    let mailed = MailedApp::spawn(&[]).await;
    let (id, _) = stolen_account(&mailed).await;
    let code = revert_code(&mailed, OWNER, 3).await;
    let reply = revert(&mailed, OWNER, &code).await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
    let user = mailed.app.get_user(&id).await.json();
    assert_eq!(
        (user["email"].as_str(), &user["email_verified"]),
        (Some(OWNER), &json!(true))
    );
    assert_eq!(mailed.app.get_user(THIEF).await.status, Status::NotFound);
}

#[rocket::async_test]
async fn a_revert_ends_every_session_and_the_password_that_was_known() {
    let mailed = MailedApp::spawn(&[]).await;
    let (_, token) = stolen_account(&mailed).await;
    let code = revert_code(&mailed, OWNER, 3).await;
    revert(&mailed, OWNER, &code).await;
    mailed.app.assert_signed_out(&token).await;
    let login = mailed.app.login(OWNER, PASSWORD).await;
    assert_eq!(login.status, Status::Unauthorized, "{}", login.body);
}

#[rocket::async_test]
async fn a_revert_mails_the_old_address_a_reset_code_that_sets_a_new_password() {
    let mailed = MailedApp::spawn(&[]).await;
    stolen_account(&mailed).await;
    let code = revert_code(&mailed, OWNER, 3).await;
    revert(&mailed, OWNER, &code).await;
    let reset_code = mailed.code_for(OWNER, 4, "Reset").await;
    let reply = reset(&mailed.app, OWNER, &reset_code, NEW_PASSWORD).await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
    mailed.app.token_for(OWNER, NEW_PASSWORD).await;
}

#[rocket::async_test]
async fn a_revert_code_works_once() {
    let mailed = MailedApp::spawn(&[]).await;
    stolen_account(&mailed).await;
    let code = revert_code(&mailed, OWNER, 3).await;
    assert_eq!(revert(&mailed, OWNER, &code).await.status, Status::Ok);
    assert_invalid_code(&revert(&mailed, OWNER, &code).await);
}

#[rocket::async_test]
async fn a_wrong_revert_code_changes_nothing() {
    let mailed = MailedApp::spawn(&[]).await;
    let (id, token) = stolen_account(&mailed).await;
    let code = revert_code(&mailed, OWNER, 3).await;
    assert_invalid_code(&revert(&mailed, OWNER, other_than(&code)).await);
    assert_eq!(mailed.app.get_user(&id).await.json()["email"], THIEF);
    mailed.app.assert_signed_in(&token).await;
}

#[rocket::async_test]
async fn the_old_address_stays_reserved_while_its_revert_code_works() {
    let mailed = MailedApp::spawn(&[]).await;
    stolen_account(&mailed).await;
    let reply = mailed.app.sign_up("Twin", OWNER, PASSWORD).await;
    assert_eq!(reply.status, Status::Conflict, "{}", reply.body);
    let other = mailed.sign_up("other@example.com").await;
    let token = mailed.app.token_for("other@example.com", PASSWORD).await;
    let body = json!({"name": "Other", "email": OWNER});
    let reply = mailed.app.put_user_as(&other, &token, &body).await;
    assert_eq!(reply.status, Status::Conflict, "{}", reply.body);
}

#[rocket::async_test]
async fn the_account_may_take_its_own_reserved_address_back() {
    let mailed = MailedApp::spawn(&[]).await;
    let (id, token) = stolen_account(&mailed).await;
    change_email(&mailed, &id, &token, OWNER).await;
    assert_eq!(mailed.app.get_user(&id).await.json()["email"], OWNER);
}

#[rocket::async_test]
async fn a_second_change_does_not_spend_the_first_revert_code() {
    let mailed = MailedApp::spawn(&[]).await;
    let (id, token) = stolen_account(&mailed).await;
    let first = revert_code(&mailed, OWNER, 3).await;
    change_email(&mailed, &id, &token, "thief+2@example.net").await;
    let reply = revert(&mailed, OWNER, &first).await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
    assert_eq!(mailed.app.get_user(&id).await.json()["email"], OWNER);
}

#[rocket::async_test]
async fn a_revert_ends_the_revert_codes_the_later_addresses_got() {
    let mailed = MailedApp::spawn(&[]).await;
    let (id, token) = stolen_account(&mailed).await;
    let first = revert_code(&mailed, OWNER, 3).await;
    verify_thiefs_address(&mailed).await;
    change_email(&mailed, &id, &token, "thief+2@example.net").await;
    let thiefs = revert_code(&mailed, THIEF, 5).await;
    assert_eq!(revert(&mailed, OWNER, &first).await.status, Status::Ok);
    assert_invalid_code(&revert(&mailed, THIEF, &thiefs).await);
    assert_eq!(mailed.app.get_user(&id).await.json()["email"], OWNER);
}

#[rocket::async_test]
async fn wrong_revert_codes_from_many_addresses_do_not_lock_the_owner_out() {
    let mailed = MailedApp::spawn(&[]).await;
    stolen_account(&mailed).await;
    let code = revert_code(&mailed, OWNER, 3).await;
    let body = json!({"email": OWNER, "code": other_than(&code)});
    for n in 2..32 {
        let address = format!("127.0.0.{}", n / 5 + 2);
        let reply = mailed.app.post_json_from(&address, REVERT, &body).await;
        assert_ne!(reply.status, Status::Ok, "{}", reply.body);
    }
    let body = json!({"email": OWNER, "code": code});
    let reply = mailed.app.post_json_from("127.0.0.99", REVERT, &body).await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
}

#[rocket::async_test]
async fn wrong_revert_codes_from_one_address_get_429_like_wrong_passwords() {
    let mailed = MailedApp::spawn(&[("LOGIN_MAX_FAILURES", "2")]).await;
    stolen_account(&mailed).await;
    let code = revert_code(&mailed, OWNER, 3).await;
    for _ in 0..2 {
        assert_invalid_code(&revert(&mailed, OWNER, other_than(&code)).await);
    }
    let reply = revert(&mailed, OWNER, &code).await;
    reply.assert_problem_status(Status::TooManyRequests);
    assert!(reply.header("Retry-After").is_some());
}

#[rocket::async_test]
async fn a_thiefs_revert_to_its_own_address_keeps_the_owners_revert_code() {
    let mailed = MailedApp::spawn(&[]).await;
    let (id, token) = stolen_account(&mailed).await;
    let owners = revert_code(&mailed, OWNER, 3).await;
    verify_thiefs_address(&mailed).await;
    change_email(&mailed, &id, &token, "thief+2@example.net").await;
    let thiefs = revert_code(&mailed, THIEF, 5).await;
    assert_eq!(revert(&mailed, THIEF, &thiefs).await.status, Status::Ok);
    let reply = revert(&mailed, OWNER, &owners).await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
    assert_eq!(mailed.app.get_user(&id).await.json()["email"], OWNER);
}

#[rocket::async_test]
async fn an_unverified_old_address_gets_no_revert_code() {
    let mailed = MailedApp::spawn(&[]).await;
    let id = mailed.sign_up("typo@example.com").await;
    let token = mailed.app.token_for("typo@example.com", PASSWORD).await;
    change_email(&mailed, &id, &token, OWNER).await;
    let text = notice(&mailed, "typo@example.com", 3).await.text();
    assert!(
        !text.lines().any(|line| RevertCode::parse(line).is_ok()),
        "{text}"
    );
    let reply = mailed
        .app
        .sign_up("Typo", "typo@example.com", PASSWORD)
        .await;
    assert_eq!(
        reply.status,
        Status::Created,
        "not reserved: {}",
        reply.body
    );
}

#[rocket::async_test]
async fn a_change_by_an_admin_key_mails_no_revert_code() {
    let mailed = MailedApp::spawn(&[]).await;
    let id = verified_owner(&mailed).await;
    let key = mailed.app.admin_key().await.to_owned();
    let body = json!({"name": "Ada", "email": THIEF});
    let reply = mailed.app.put_user_as(&id, &key, &body).await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
    let text = notice(&mailed, OWNER, 3).await.text();
    assert!(
        !text.lines().any(|line| RevertCode::parse(line).is_ok()),
        "{text}"
    );
}

#[rocket::async_test]
async fn the_notice_with_a_revert_code_goes_out_past_the_recipient_bound() {
    let mailed = MailedApp::spawn(&[("MAIL_MAX_PER_RECIPIENT", "2")]).await;
    let id = verified_owner(&mailed).await;
    mailed.app.post_json(RESET, &json!({"email": OWNER})).await;
    mailed.mails(2).await;
    let token = mailed.app.token_for(OWNER, PASSWORD).await;
    change_email(&mailed, &id, &token, THIEF).await;
    revert_code(&mailed, OWNER, 4).await;
}

#[rocket::async_test]
async fn no_revert_code_is_kept_in_clear_in_redis() {
    let mailed = MailedApp::spawn(&[]).await;
    stolen_account(&mailed).await;
    let code = revert_code(&mailed, OWNER, 3).await;
    mailed.app.assert_nowhere_in_redis(&code);
}

#[rocket::async_test]
async fn deleting_the_account_frees_the_address_it_reserved() {
    let mailed = MailedApp::spawn(&[]).await;
    let (id, token) = stolen_account(&mailed).await;
    let reply = mailed.app.delete_user_as(&id, &token).await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
    let created = mailed.app.create_user("Ada", OWNER, PASSWORD).await;
    assert_ne!(id_of(&created), id);
}

#[rocket::async_test]
async fn a_sign_up_for_a_reserved_address_in_notify_mode_mails_nobody() {
    let mailed = MailedApp::spawn(&[("SIGNUP_EXISTING", "notify")]).await;
    let id = mailed.verified_account("Ada", OWNER).await;
    let token = mailed.app.token_for(OWNER, PASSWORD).await;
    change_email(&mailed, &id, &token, THIEF).await;
    let stranger = common::user_body("Stranger", OWNER, NEW_PASSWORD);
    assert_eq!(
        mailed.app.post_user(&stranger).await.status,
        Status::Accepted
    );
    mailed.mails(3).await;
    rocket::tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(mailed.mails(3).await.len(), 3, "no notice to anyone");
}

#[rocket::async_test]
async fn a_thiefs_revert_to_a_later_address_keeps_the_owners_address_reserved() {
    let mailed = MailedApp::spawn(&[]).await;
    let (id, token) = stolen_account(&mailed).await;
    let owners = revert_code(&mailed, OWNER, 3).await;
    verify_thiefs_address(&mailed).await;
    change_email(&mailed, &id, &token, OWNER).await;
    let thiefs = revert_code(&mailed, THIEF, 5).await;
    change_email(&mailed, &id, &token, "thief+3@example.net").await;
    assert_eq!(revert(&mailed, THIEF, &thiefs).await.status, Status::Ok);
    let squat = mailed.app.sign_up("Squatter", OWNER, PASSWORD).await;
    assert_eq!(squat.status, Status::Conflict, "{}", squat.body);
    let reply = revert(&mailed, OWNER, &owners).await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
    assert_eq!(mailed.app.get_user(&id).await.json()["email"], OWNER);
}

#[rocket::async_test]
async fn a_revert_code_works_before_the_changes_last_steps_ran() {
    let mailed = MailedApp::spawn(&[]).await;
    let app = &mailed.app;
    let (id, _) = stolen_account(&mailed).await;
    let code = revert_code(&mailed, OWNER, 3).await;
    // Undo the change's last step, as a crash before it would have left
    // things: the old entry back, its revert code and reservation not yet
    // stored, the move recorded.
    let keys = app.keys_of_layout();
    let owner = UserEmail::parse(OWNER).expect("an email");
    let mut redis = app.redis();
    let code_key: String = redis::cmd("SCAN")
        .cursor_arg(0)
        .arg("MATCH")
        .arg(format!("{}*email_revert:{OWNER}:*", app.prefix))
        .arg("COUNT")
        .arg(1000)
        .clone()
        .iter::<String>(&mut redis)
        .expect("SCAN")
        .next()
        .and_then(Result::ok)
        .expect("the revert code's key");
    let digest = code_key.rsplit(':').next().expect("a digest").to_owned();
    redis::cmd("DEL")
        .arg(&code_key)
        .arg(keys.email_reserved(&owner))
        .exec(&mut redis)
        .expect("DEL");
    redis::cmd("ZADD")
        .arg(keys.email_index_of(OWNER))
        .arg(0)
        .arg(index_member(OWNER, &id))
        .exec(&mut redis)
        .expect("ZADD");
    redis::cmd("HSET")
        .arg(keys.email_move(user_id(&id)))
        .arg("old")
        .arg(OWNER)
        .arg("new")
        .arg(THIEF)
        .arg("revert_digest")
        .arg(&digest)
        .exec(&mut redis)
        .expect("HSET move");
    let reply = revert(&mailed, OWNER, &code).await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
    assert_eq!(app.get_user(&id).await.json()["email"], OWNER);
    assert_eq!(app.index_members(), [index_member(OWNER, &id)]);
}
