//! What an attacker can make the service mail, and how far codes can be
//! ground down: each test is one attack, and the bound that stops it.

mod common;

use std::time::Duration;

use common::mailbox::*;
use common::smtp::Received;
use common::{user_body, Reply};
use rocket::futures::future::join_all;
use rocket::http::{Method, Status};
use serde_json::json;

const VICTIM: &str = "victim@example.com";
const ATTACKER_TEXT: &str = "Security Team: call +1-555-0100 or visit evil.example now";

/// Waits for `count` messages, then a moment more, so that any message
/// beyond them would have arrived too; returns every message.
async fn settled_mails(mailed: &MailedApp, count: usize) -> Vec<Received> {
    mailed.mails(count).await;
    rocket::tokio::time::sleep(Duration::from_millis(400)).await;
    mailed.mails(count).await
}

fn addressed_to<'a>(mails: &'a [Received], to: &str) -> Vec<&'a Received> {
    mails
        .iter()
        .filter(|mail| mail.header("To").is_some_and(|header| header.contains(to)))
        .collect()
}

/// An account signed up as the attacker, with a fresh session.
async fn attacker(mailed: &MailedApp) -> (String, String) {
    let id = mailed.sign_up("attacker@example.net").await;
    let token = mailed.app.token_for("attacker@example.net", PASSWORD).await;
    (id, token)
}

async fn change_email(mailed: &MailedApp, id: &str, token: &str, email: &str) -> Reply {
    let body = json!({"name": ATTACKER_TEXT, "email": email});
    mailed.app.put_user_as(id, token, &body).await
}

/// Changes the attacker's email `times` times, alternating the victim's
/// address and a second one of the attacker's; every change is accepted.
async fn alternate_emails(mailed: &MailedApp, times: usize) {
    let (id, token) = attacker(mailed).await;
    for n in 0..times {
        let email = if n % 2 == 0 {
            VICTIM
        } else {
            "attacker+2@example.net"
        };
        let reply = change_email(mailed, &id, &token, email).await;
        assert_eq!(reply.status, Status::Ok, "change {n}: {}", reply.body);
    }
}

#[rocket::async_test]
async fn fifty_email_changes_mail_the_victim_no_more_than_the_recipient_bound() {
    let mailed = MailedApp::spawn(&[("EMAIL_CHANGES_MAX_PER_DAY", "100")]).await;
    alternate_emails(&mailed, 50).await;
    // The sign-up's code, the first change's notice to the attacker's
    // first address, and ten to each address the changes alternate.
    let mails = settled_mails(&mailed, 22).await;
    assert_eq!(addressed_to(&mails, VICTIM).len(), 10);
    assert_eq!(mails.len(), 22);
}

#[rocket::async_test]
async fn mail_to_an_unproven_address_carries_no_text_the_requester_chose() {
    let mailed = MailedApp::spawn(&[]).await;
    alternate_emails(&mailed, 4).await;
    let mails = settled_mails(&mailed, 6).await;
    let to_victim = addressed_to(&mails, VICTIM);
    assert_eq!(to_victim.len(), 4, "two codes and two notices");
    for mail in to_victim {
        for part in [
            mail.text(),
            mail.html(),
            mail.header("To").unwrap_or_default(),
        ] {
            assert!(!part.contains("Security Team"), "{part}");
        }
    }
}

#[rocket::async_test]
async fn email_changes_past_the_days_limit_get_429() {
    let mailed = MailedApp::spawn(&[]).await;
    let (id, token) = attacker(&mailed).await;
    for n in 0..5 {
        let reply = change_email(&mailed, &id, &token, &format!("a{n}@example.net")).await;
        assert_eq!(reply.status, Status::Ok, "change {n}: {}", reply.body);
    }
    let reply = change_email(&mailed, &id, &token, VICTIM).await;
    assert_eq!(reply.status, Status::TooManyRequests, "{}", reply.body);
    assert_eq!(reply.json()["type"], "/problems/too-many-email-changes");
    assert!(reply.header("Retry-After").is_some());
    let user = mailed.app.get_as(&format!("/api/users/{id}"), &token).await;
    assert_eq!(user.json()["email"], "a4@example.net", "nothing changed");
}

#[rocket::async_test]
async fn a_burst_of_concurrent_email_changes_stays_within_the_days_limit() {
    let mailed = MailedApp::spawn(&[]).await;
    let (id, token) = attacker(&mailed).await;
    let changes = (0..20).map(|n| {
        let (id, token) = (id.clone(), token.clone());
        let mailed = &mailed;
        async move { change_email(mailed, &id, &token, &format!("b{n}@example.net")).await }
    });
    let replies = join_all(changes).await;
    let accepted = replies
        .iter()
        .filter(|reply| reply.status == Status::Ok)
        .count();
    assert_eq!(accepted, 5);
    assert!(replies
        .iter()
        .all(|reply| matches!(reply.status, Status::Ok | Status::TooManyRequests)));
}

#[rocket::async_test]
async fn signing_up_and_deleting_in_a_loop_mails_no_more_than_the_recipient_bound() {
    let mailed = MailedApp::spawn(&[]).await;
    for _ in 0..12 {
        let id = mailed.sign_up(VICTIM).await;
        let reply = mailed
            .app
            .delete_user(&id, &json!({"password": PASSWORD}))
            .await;
        assert_eq!(reply.status, Status::Ok, "{}", reply.body);
    }
    let mails = settled_mails(&mailed, 10).await;
    assert_eq!(mails.len(), 10);
}

#[rocket::async_test]
async fn mail_held_back_is_counted_in_the_metrics() {
    let mailed = MailedApp::spawn(&[("MAIL_MAX_PER_RECIPIENT", "1")]).await;
    let id = mailed.sign_up(VICTIM).await;
    let admin = mailed.app.admin_key().await.to_owned();
    let uri = format!("/api/users/{id}/password-reset");
    let reply = mailed
        .app
        .with_token(Method::Post, &uri, &admin, None)
        .await;
    assert_eq!(reply.status, Status::Accepted, "the caller is not told");
    assert_eq!(settled_mails(&mailed, 1).await.len(), 1);
    let metrics = mailed.app.get_as("/metrics", &admin).await.body;
    assert!(
        metrics.contains("mail_held_back_total 1"),
        "{}",
        metrics
            .lines()
            .filter(|line| line.contains("mail_"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

// ---- codes cannot be ground down ----

/// A reset code for `email` (whose account exists), and `wrong`, a code
/// that is not it.
async fn reset_code_and_a_wrong_one(mailed: &MailedApp, email: &str) -> (String, String) {
    let code = reset_code(mailed, email, 1).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    (code, wrong.to_owned())
}

/// Confirms `code` for `email` from the client address `127.0.0.{host}`.
async fn confirm_reset_from(mailed: &MailedApp, host: usize, email: &str, code: &str) -> Reply {
    let body = json!({"email": email, "code": code, "new_password": NEW_PASSWORD});
    mailed
        .app
        .post_json_from(&format!("127.0.0.{host}"), RESET_CONFIRM, &body)
        .await
}

/// Twenty wrong confirmations, four from each of five client addresses:
/// no address reaches its own limit.
async fn grind(mailed: &MailedApp, email: &str, wrong: &str) {
    for n in 0..20 {
        let reply = confirm_reset_from(mailed, 2 + n / 4, email, wrong).await;
        assert_invalid_code(&reply);
    }
}

#[rocket::async_test]
async fn wrong_codes_from_many_addresses_get_429_past_the_account_wide_limit() {
    let mailed = MailedApp::spawn(&[]).await;
    mailed.sign_up("ada@example.com").await;
    let (code, wrong) = reset_code_and_a_wrong_one(&mailed, "ada@example.com").await;
    grind(&mailed, "ada@example.com", &wrong).await;
    let reply = confirm_reset_from(&mailed, 20, "ada@example.com", &code).await;
    assert_eq!(reply.status, Status::TooManyRequests, "{}", reply.body);
    assert_eq!(reply.json()["type"], "/problems/too-many-wrong-codes");
    let retry_after: u64 = reply
        .header("Retry-After")
        .and_then(|value| value.parse().ok())
        .expect("Retry-After");
    assert!(
        retry_after > 86_000 && retry_after <= 86_400,
        "{retry_after}"
    );
}

#[rocket::async_test]
async fn an_email_without_an_account_is_refused_alike_past_the_limit() {
    let mailed = MailedApp::spawn(&[]).await;
    grind(&mailed, "nobody@example.com", "123456").await;
    let reply = confirm_reset_from(&mailed, 20, "nobody@example.com", "123456").await;
    assert_eq!(reply.status, Status::TooManyRequests, "{}", reply.body);
    assert_eq!(reply.json()["type"], "/problems/too-many-wrong-codes");
}

#[rocket::async_test]
async fn the_owners_password_still_logs_in_while_codes_are_refused() {
    let mailed = MailedApp::spawn(&[]).await;
    mailed.sign_up("ada@example.com").await;
    let (_, wrong) = reset_code_and_a_wrong_one(&mailed, "ada@example.com").await;
    grind(&mailed, "ada@example.com", &wrong).await;
    let reply = mailed.app.login("ada@example.com", PASSWORD).await;
    assert_eq!(reply.status, Status::Created, "{}", reply.body);
}

#[rocket::async_test]
async fn an_admin_key_clears_the_code_limits_of_an_account() {
    let mailed = MailedApp::spawn(&[]).await;
    let id = mailed.sign_up("ada@example.com").await;
    let (_, wrong) = reset_code_and_a_wrong_one(&mailed, "ada@example.com").await;
    grind(&mailed, "ada@example.com", &wrong).await;
    let uri = format!("/api/users/{id}/code-limits");
    let token = mailed.app.token_for("ada@example.com", PASSWORD).await;
    let reply = mailed
        .app
        .with_token(Method::Delete, &uri, &token, None)
        .await;
    assert_eq!(
        reply.status,
        Status::Forbidden,
        "not the user's own session"
    );
    let admin = mailed.app.admin_key().await.to_owned();
    let reply = mailed
        .app
        .with_token(Method::Delete, &uri, &admin, None)
        .await;
    assert_eq!(reply.status, Status::NoContent, "{}", reply.body);
    let send = format!("/api/users/{id}/password-reset");
    mailed
        .app
        .with_token(Method::Post, &send, &admin, None)
        .await;
    let code = mailed.code_for("ada@example.com", 3, "Reset").await;
    let reply = confirm_reset_from(&mailed, 30, "ada@example.com", &code).await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
}

#[rocket::async_test]
async fn no_more_codes_than_the_days_cap_are_issued_to_one_account() {
    let mailed = MailedApp::spawn(&[("CODE_MAX_PER_DAY", "3")]).await;
    let id = mailed.sign_up("ada@example.com").await;
    let admin = mailed.app.admin_key().await.to_owned();
    let uri = format!("/api/users/{id}/password-reset");
    for _ in 0..5 {
        let reply = mailed
            .app
            .with_token(Method::Post, &uri, &admin, None)
            .await;
        assert_eq!(reply.status, Status::Accepted);
    }
    let mails = settled_mails(&mailed, 4).await;
    assert_eq!(mails.len(), 4, "the sign-up's code and three reset codes");
}

// ---- codes die with the state they were made for ----

#[rocket::async_test]
async fn a_reset_code_dies_when_the_account_is_disabled_and_stays_dead_after_enabling() {
    let mailed = MailedApp::spawn(&[]).await;
    let id = mailed.sign_up("ada@example.com").await;
    let code = reset_code(&mailed, "ada@example.com", 1).await;
    let admin = mailed.app.admin_key().await.to_owned();
    for action in ["disable", "enable"] {
        let uri = format!("/api/users/{id}/{action}");
        let reply = mailed
            .app
            .with_token(Method::Post, &uri, &admin, None)
            .await;
        assert_eq!(reply.status, Status::Ok, "{action}: {}", reply.body);
    }
    assert_invalid_code(&reset(&mailed.app, "ada@example.com", &code, NEW_PASSWORD).await);
}

#[rocket::async_test]
async fn a_reset_code_dies_when_the_password_changes() {
    let mailed = MailedApp::spawn(&[]).await;
    let id = mailed.sign_up("ada@example.com").await;
    let code = reset_code(&mailed, "ada@example.com", 1).await;
    let body = json!({"password": PASSWORD, "new_password": "another fine passphrase"});
    let reply = mailed.app.patch_user(&id, &body).await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
    assert_invalid_code(&reset(&mailed.app, "ada@example.com", &code, NEW_PASSWORD).await);
}

#[rocket::async_test]
async fn a_reset_code_dies_when_the_email_changes() {
    let mailed = MailedApp::spawn(&[]).await;
    let id = mailed.sign_up("ada@example.com").await;
    let code = reset_code(&mailed, "ada@example.com", 1).await;
    let body = json!({"name": "Ada", "email": "lovelace@example.com", "password": PASSWORD});
    let reply = mailed.app.put_user(&id, &body).await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
    let body = json!({"name": "Ada", "email": "ada@example.com", "password": PASSWORD});
    let reply = mailed.app.put_user(&id, &body).await;
    assert_eq!(reply.status, Status::Ok, "back to the first address");
    assert_invalid_code(&reset(&mailed.app, "ada@example.com", &code, NEW_PASSWORD).await);
}

// ---- a notice for every security change ----

async fn assert_one_notice(mailed: &MailedApp, count: usize, subject: &str) {
    let mails = settled_mails(mailed, count).await;
    let notices: Vec<_> = mails
        .iter()
        .filter(|mail| {
            mail.header("Subject")
                .is_some_and(|header| header.contains(subject))
        })
        .collect();
    assert_eq!(notices.len(), 1, "one {subject:?} among {count} mails");
    assert!(notices[0]
        .header("To")
        .is_some_and(|to| to.contains("ada@example.com")));
}

#[rocket::async_test]
async fn a_password_changed_by_the_users_session_mails_a_notice() {
    let mailed = MailedApp::spawn(&[]).await;
    let id = mailed.sign_up("ada@example.com").await;
    let token = mailed.app.token_for("ada@example.com", PASSWORD).await;
    let body = json!({"new_password": "another fine passphrase"});
    let reply = mailed.app.patch_user_as(&id, &token, &body).await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
    assert_one_notice(&mailed, 2, "password was changed").await;
}

#[rocket::async_test]
async fn a_password_changed_by_an_admin_key_mails_a_notice() {
    let mailed = MailedApp::spawn(&[]).await;
    let id = mailed.sign_up("ada@example.com").await;
    let admin = mailed.app.admin_key().await.to_owned();
    let body = json!({"new_password": "another fine passphrase"});
    let reply = mailed.app.patch_user_as(&id, &admin, &body).await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
    assert_one_notice(&mailed, 2, "password was changed").await;
}

#[rocket::async_test]
async fn disabling_and_enabling_an_account_each_mail_a_notice() {
    let mailed = MailedApp::spawn(&[]).await;
    let id = mailed.sign_up("ada@example.com").await;
    let admin = mailed.app.admin_key().await.to_owned();
    let disable = format!("/api/users/{id}/disable");
    mailed
        .app
        .with_token(Method::Post, &disable, &admin, None)
        .await;
    assert_one_notice(&mailed, 2, "was disabled").await;
    let enable = format!("/api/users/{id}/enable");
    mailed
        .app
        .with_token(Method::Post, &enable, &admin, None)
        .await;
    assert_one_notice(&mailed, 3, "was enabled again").await;
}

/// Settings of a service whose sign-ups do not tell who has an account.
const NOTIFY: &[(&str, &str)] = &[("SIGNUP_EXISTING", "notify")];

/// A sign-up without a credential, with the attacker's text as the name.
async fn sign_up_as_stranger(mailed: &MailedApp, email: &str) -> Reply {
    mailed
        .app
        .post_user(&user_body(ATTACKER_TEXT, email, NEW_PASSWORD))
        .await
}

#[rocket::async_test]
async fn sign_ups_in_notify_mode_answer_alike_for_existing_and_new_emails() {
    let mailed = MailedApp::spawn(NOTIFY).await;
    mailed.verified_account("Victoria", VICTIM).await;
    let existing = sign_up_as_stranger(&mailed, VICTIM).await;
    let new = sign_up_as_stranger(&mailed, "newcomer@example.com").await;
    assert_eq!(existing.status, Status::Accepted, "{}", existing.body);
    assert_eq!((existing.status, &existing.body), (new.status, &new.body));
    assert_eq!(existing.lasting_headers(), new.lasting_headers());
}

#[rocket::async_test]
async fn sign_up_in_notify_mode_mails_the_owner_a_notice_without_the_requesters_text() {
    let mailed = MailedApp::spawn(NOTIFY).await;
    mailed.verified_account("Victoria", VICTIM).await;
    sign_up_as_stranger(&mailed, VICTIM).await;
    let mails = settled_mails(&mailed, 2).await;
    let notice = &addressed_to(&mails, VICTIM)[1];
    assert!(
        notice
            .header("Subject")
            .is_some_and(|subject| subject.contains("tried to sign up")),
        "{:?}",
        notice.header("Subject")
    );
    assert!(!notice.text().contains(ATTACKER_TEXT), "{}", notice.text());
    assert!(
        notice.text().contains("Hello Victoria"),
        "{}",
        notice.text()
    );
    mailed
        .app
        .assert_signed_in(&mailed.app.token_for(VICTIM, PASSWORD).await)
        .await;
}

#[rocket::async_test]
async fn sign_up_in_notify_mode_gives_a_new_email_an_account_that_logs_in_once_verified() {
    let mailed = MailedApp::spawn(NOTIFY).await;
    let email = "newcomer@example.com";
    sign_up_as_stranger(&mailed, email).await;
    let code = mailed.code_for(email, 1, "Verify").await;
    assert_eq!(
        confirm_email(&mailed.app, email, &code).await.status,
        Status::Ok
    );
    let login = mailed.app.login(email, NEW_PASSWORD).await;
    assert_eq!(login.status, Status::Created, "{}", login.body);
}

#[rocket::async_test]
async fn login_in_notify_mode_answers_an_unverified_account_like_a_wrong_password() {
    let mailed = MailedApp::spawn(NOTIFY).await;
    mailed.verified_account("Victoria", VICTIM).await;
    sign_up_as_stranger(&mailed, "squatter@example.com").await;
    mailed.code_for("squatter@example.com", 2, "Verify").await;
    let unverified = mailed.app.login("squatter@example.com", NEW_PASSWORD).await;
    let wrong = mailed.app.login(VICTIM, NEW_PASSWORD).await;
    assert_eq!(
        unverified.status,
        Status::Unauthorized,
        "{}",
        unverified.body
    );
    assert_eq!(
        (unverified.status, &unverified.body),
        (wrong.status, &wrong.body)
    );
}

#[rocket::async_test]
async fn an_admin_key_still_gets_201_and_409_in_notify_mode() {
    let mailed = MailedApp::spawn(NOTIFY).await;
    mailed.verified_account("Victoria", VICTIM).await;
    let key = mailed.app.admin_key().await.to_owned();
    let body = user_body("Ada", VICTIM, PASSWORD);
    let again = mailed
        .app
        .with_token(Method::Post, "/api/users", &key, Some(&body))
        .await;
    assert_eq!(again.status, Status::Conflict, "{}", again.body);
}
