//! Email verification and password reset by one-time codes: the codes
//! travel by real mail (the mail directory), and each flow's rules hold.

mod common;

use std::time::Duration;

use common::mailbox::*;
use common::TestApp;
use rocket::http::{Method, Status};
use serde_json::{json, Value};
use user_accounts::domain::KeyScope;

// ---- verification ----

#[rocket::async_test]
async fn a_sign_up_is_unverified_and_its_mailed_code_verifies_the_email() {
    let mailed = MailedApp::spawn(&[]).await;
    let created = mailed
        .app
        .create_user("Ada", "ada@example.com", PASSWORD)
        .await;
    assert_eq!(created["email_verified"], false);
    let code = mailed.code_for("ada@example.com", 1, "Verify").await;
    let reply = confirm_email(&mailed.app, "ada@example.com", &code).await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
    assert_eq!(reply.json()["email_verified"], true);
    let id = created["id"].as_str().expect("id");
    assert_eq!(mailed.app.get_user(id).await.json()["email_verified"], true);
}

#[rocket::async_test]
async fn the_mail_shows_the_code_alone_on_its_line_and_a_link_with_it_in_the_fragment() {
    let mailed = MailedApp::spawn(&[]).await;
    mailed.sign_up("ada@example.com").await;
    let mail = mailed.mails(1).await.remove(0);
    let text = mail.text();
    let code = code_in(&text);
    let before_code = &text[..text.find(&code).expect("the code")];
    assert!(
        !before_code
            .split(|c: char| !c.is_ascii_digit())
            .any(|run| run.len() == 6),
        "no other six-digit number comes first:\n{text}"
    );
    let link = format!("https://accounts.example.com/verify#email=ada%40example.com&code={code}");
    assert!(text.contains(&link), "{link} in:\n{text}");
}

#[rocket::async_test]
async fn a_code_works_once() {
    let mailed = MailedApp::spawn(&[]).await;
    mailed.sign_up("ada@example.com").await;
    let code = mailed.code_for("ada@example.com", 1, "Verify").await;
    assert_eq!(
        confirm_email(&mailed.app, "ada@example.com", &code)
            .await
            .status,
        Status::Ok
    );
    assert_invalid_code(&confirm_email(&mailed.app, "ada@example.com", &code).await);
}

#[rocket::async_test]
async fn five_wrong_codes_kill_the_right_one() {
    let mailed = MailedApp::spawn(&[("LOGIN_MAX_FAILURES", "100")]).await;
    mailed.sign_up("ada@example.com").await;
    let code = mailed.code_for("ada@example.com", 1, "Verify").await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        assert_invalid_code(&confirm_email(&mailed.app, "ada@example.com", wrong).await);
    }
    assert_invalid_code(&confirm_email(&mailed.app, "ada@example.com", &code).await);
}

#[rocket::async_test]
async fn an_expired_code_is_refused() {
    let mailed = MailedApp::spawn(&[("CODE_TTL_SECS", "1")]).await;
    mailed.sign_up("ada@example.com").await;
    let code = mailed.code_for("ada@example.com", 1, "Verify").await;
    rocket::tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_invalid_code(&confirm_email(&mailed.app, "ada@example.com", &code).await);
}

#[rocket::async_test]
async fn the_code_is_stored_only_as_its_keyed_hash() {
    let mailed = MailedApp::spawn(&[]).await;
    mailed.sign_up("ada@example.com").await;
    let code = mailed.code_for("ada@example.com", 1, "Verify").await;
    mailed.app.assert_nowhere_in_redis(&code);
}

#[rocket::async_test]
async fn requests_for_codes_answer_alike_for_known_and_unknown_emails() {
    let mailed = MailedApp::spawn(&[]).await;
    mailed.sign_up("ada@example.com").await;
    for uri in [VERIFY, RESET] {
        let known = mailed
            .app
            .post_json(uri, &json!({"email": "ada@example.com"}))
            .await;
        let unknown = mailed
            .app
            .post_json(uri, &json!({"email": "nobody@example.com"}))
            .await;
        assert_eq!(known.status, Status::Accepted, "{uri}");
        assert_eq!(
            (known.status, &known.body),
            (unknown.status, &unknown.body),
            "{uri}"
        );
        assert_eq!(known.lasting_headers(), unknown.lasting_headers(), "{uri}");
    }
}

#[rocket::async_test]
async fn a_second_code_waits_for_the_resend_time() {
    let mailed = MailedApp::spawn(&[("MAIL_RESEND_SECS", "1")]).await;
    mailed.sign_up("ada@example.com").await;
    mailed.mails(1).await;
    let body = json!({"email": "ada@example.com"});
    assert_eq!(
        mailed.app.post_json(VERIFY, &body).await.status,
        Status::Accepted
    );
    rocket::tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        eml_files(&mailed.dir).len(),
        1,
        "held back within the resend time"
    );
    rocket::tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(
        mailed.app.post_json(VERIFY, &body).await.status,
        Status::Accepted
    );
    mailed.mails(2).await;
}

#[rocket::async_test]
async fn requests_for_codes_past_the_per_address_limit_get_429() {
    let mailed = MailedApp::spawn(&[("MAIL_MAX_PER_ADDRESS", "2")]).await;
    let body = json!({"email": "nobody@example.com"});
    for _ in 0..2 {
        assert_eq!(
            mailed.app.post_json(RESET, &body).await.status,
            Status::Accepted
        );
    }
    let reply = mailed.app.post_json(VERIFY, &body).await;
    assert_eq!(reply.status, Status::TooManyRequests, "{}", reply.body);
    assert!(reply.header("Retry-After").is_some());
}

#[rocket::async_test]
async fn an_email_change_unverifies_sends_the_new_address_a_code_and_tells_the_old_one() {
    let mailed = MailedApp::spawn(&[]).await;
    let id = mailed.sign_up("ada@example.com").await;
    let code = mailed.code_for("ada@example.com", 1, "Verify").await;
    confirm_email(&mailed.app, "ada@example.com", &code).await;
    let body = json!({"name": "Ada", "email": "lovelace@example.com", "password": PASSWORD});
    let reply = mailed.app.put_user(&id, &body).await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
    assert_eq!(reply.json()["email_verified"], false);
    let mails = mailed.mails(3).await;
    assert!(
        mails.iter().any(|mail| mail
            .header("To")
            .is_some_and(|to| to.contains("ada@example.com"))
            && mail
                .header("Subject")
                .is_some_and(|subject| subject.contains("was changed"))),
        "a notice to the old address"
    );
    let new_code = mailed.code_for("lovelace@example.com", 3, "Verify").await;
    let reply = confirm_email(&mailed.app, "lovelace@example.com", &new_code).await;
    assert_eq!(reply.json()["email_verified"], true);
}

#[rocket::async_test]
async fn a_verification_code_does_not_reset_a_password() {
    let mailed = MailedApp::spawn(&[]).await;
    mailed.sign_up("ada@example.com").await;
    let code = mailed.code_for("ada@example.com", 1, "Verify").await;
    assert_invalid_code(&reset(&mailed.app, "ada@example.com", &code, NEW_PASSWORD).await);
}

#[rocket::async_test]
async fn with_verified_emails_required_an_unverified_login_gets_403() {
    let mailed = MailedApp::spawn(&[("REQUIRE_VERIFIED_EMAIL", "true")]).await;
    mailed.sign_up("ada@example.com").await;
    let reply = mailed.app.login("ada@example.com", PASSWORD).await;
    assert_eq!(reply.status, Status::Forbidden, "{}", reply.body);
    assert_eq!(reply.json()["type"], "/problems/email-not-verified");
    let code = mailed.code_for("ada@example.com", 1, "Verify").await;
    confirm_email(&mailed.app, "ada@example.com", &code).await;
    assert_eq!(
        mailed.app.login("ada@example.com", PASSWORD).await.status,
        Status::Created
    );
}

// ---- password reset ----

#[rocket::async_test]
async fn a_reset_sets_the_password_ends_the_sessions_and_sends_a_notice() {
    let mailed = MailedApp::spawn(&[]).await;
    let id = mailed.sign_up("ada@example.com").await;
    let token = mailed.app.token_for("ada@example.com", PASSWORD).await;
    let code = reset_code(&mailed, "ada@example.com", 1).await;
    let reply = reset(&mailed.app, "ada@example.com", &code, NEW_PASSWORD).await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
    assert_eq!(reply.json(), json!({"message": "Password updated"}));
    assert_eq!(
        mailed.app.current_session(&token).await.status,
        Status::Unauthorized
    );
    assert_eq!(
        mailed.app.login("ada@example.com", PASSWORD).await.status,
        Status::Unauthorized
    );
    assert_eq!(
        mailed
            .app
            .login("ada@example.com", NEW_PASSWORD)
            .await
            .status,
        Status::Created
    );
    assert_eq!(
        mailed.app.get_user(&id).await.json()["email_verified"],
        true
    );
    mailed.mails(3).await;
}

#[rocket::async_test]
async fn a_weak_new_password_gets_422_and_leaves_the_code_usable() {
    let mailed = MailedApp::spawn(&[]).await;
    mailed.sign_up("ada@example.com").await;
    let code = reset_code(&mailed, "ada@example.com", 1).await;
    let reply = reset(&mailed.app, "ada@example.com", &code, "password123").await;
    assert_eq!(reply.status, Status::UnprocessableEntity);
    assert_eq!(
        reply.field_errors("new_password").len(),
        1,
        "{}",
        reply.body
    );
    let reply = reset(&mailed.app, "ada@example.com", &code, NEW_PASSWORD).await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
}

#[rocket::async_test]
async fn a_reset_clears_the_limits_that_locked_the_account() {
    let mailed = MailedApp::spawn(&[("LOGIN_MAX_ACCOUNT_FAILURES", "3")]).await;
    mailed.sign_up("ada@example.com").await;
    for n in 1..=3 {
        let address = format!("198.51.100.{n}");
        let reply = mailed
            .app
            .login_from(&address, &[], "ada@example.com", "wrong")
            .await;
        assert_eq!(reply.status, Status::Unauthorized);
    }
    let locked = mailed
        .app
        .login_from("192.0.2.9", &[], "ada@example.com", PASSWORD)
        .await;
    assert_eq!(
        locked.status,
        Status::TooManyRequests,
        "the account is locked"
    );
    let code = reset_code(&mailed, "ada@example.com", 1).await;
    let reply = reset(&mailed.app, "ada@example.com", &code, NEW_PASSWORD).await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
    for address in ["192.0.2.9", "198.51.100.1"] {
        let reply = mailed
            .app
            .login_from(address, &[], "ada@example.com", NEW_PASSWORD)
            .await;
        assert_eq!(
            reply.status,
            Status::Created,
            "from {address}: {}",
            reply.body
        );
    }
}

#[rocket::async_test]
async fn a_disabled_account_gets_no_reset_code() {
    let mailed = MailedApp::spawn(&[]).await;
    let id = mailed.sign_up("ada@example.com").await;
    let admin = mailed.app.admin_key().await.to_owned();
    let uri = format!("/api/users/{id}/disable");
    mailed
        .app
        .with_token(Method::Post, &uri, &admin, None)
        .await;
    mailed.mails(2).await;
    let reply = mailed
        .app
        .post_json(RESET, &json!({"email": "ada@example.com"}))
        .await;
    assert_eq!(reply.status, Status::Accepted);
    rocket::tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        eml_files(&mailed.dir).len(),
        2,
        "the sign-up's code and the notice of the disable, no reset mail"
    );
}

#[rocket::async_test]
async fn an_admin_key_sends_a_user_a_reset_code_and_other_callers_may_not() {
    let mailed = MailedApp::spawn(&[]).await;
    let id = mailed.sign_up("ada@example.com").await;
    let uri = format!("/api/users/{id}/password-reset");
    let reader = mailed.app.key(KeyScope::Read).await;
    assert_eq!(
        mailed
            .app
            .send_raw(Method::Post, &uri, None, "")
            .await
            .status,
        Status::Unauthorized
    );
    let reply = mailed
        .app
        .with_token(Method::Post, &uri, &reader, None)
        .await;
    assert_eq!(reply.status, Status::Forbidden);
    let admin = mailed.app.admin_key().await.to_owned();
    let reply = mailed
        .app
        .with_token(Method::Post, &uri, &admin, None)
        .await;
    assert_eq!(reply.status, Status::Accepted, "{}", reply.body);
    let code = mailed.code_for("ada@example.com", 2, "Reset").await;
    let reply = reset(&mailed.app, "ada@example.com", &code, NEW_PASSWORD).await;
    assert_eq!(reply.status, Status::Ok, "{}", reply.body);
}

#[rocket::async_test]
async fn without_mail_nothing_is_queued_and_requests_still_answer_202() {
    let app = TestApp::spawn_with(&[("TOKEN_SECRET", SECRET)]).await;
    app.create_user("Ada", "ada@example.com", PASSWORD).await;
    let reply = app
        .post_json(RESET, &json!({"email": "ada@example.com"}))
        .await;
    assert_eq!(reply.status, Status::Accepted);
    let mail_keys: Vec<String> = app
        .keys()
        .into_iter()
        .filter(|key| key.contains("}mail:"))
        .collect();
    assert!(mail_keys.is_empty(), "{mail_keys:?}");
    let _: Value = reply.json();
}

#[rocket::async_test]
async fn an_eml_file_keeps_crlf_line_ends_with_the_code_on_a_line_of_its_own() {
    let mailed = MailedApp::spawn(&[]).await;
    mailed.sign_up("ada@example.com").await;
    let code = mailed.code_for("ada@example.com", 1, "Verify").await;
    let file = eml_files(&mailed.dir).remove(0);
    let raw = std::fs::read_to_string(file).expect("the .eml file");
    assert!(
        raw.split('\n')
            .all(|line| line.is_empty() || line.ends_with('\r')),
        "every line ends in CRLF"
    );
    assert!(raw.contains(&format!("\r\n{code}\r\n")), "{raw}");
}
